//! Provider fees: a percentage plus a fixed amount, per provider x method x currency, with the
//! date each schedule takes effect. Computed once, at approval, and recorded in the event:
//! replays never recompute them, so a later change of schedule cannot rewrite history.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use domain::{Currency, Money, PaymentMethodType};
use rust_decimal::{Decimal, RoundingStrategy};
use serde::Deserialize;

/// Schedules one file may hold: a bound on what startup reads.
const SCHEDULES_MAX: usize = 10_000;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeeRule {
    pub provider: String,
    pub method: PaymentMethodType,
    pub currency: Currency,
    /// Percent of the amount, e.g. `"2.65"`.
    #[serde(with = "rust_decimal::serde::str")]
    pub percentage: Decimal,
    /// In the currency, e.g. `"700.00"`.
    #[serde(with = "rust_decimal::serde::str")]
    pub fixed: Decimal,
    pub effective_from: DateTime<Utc>,
}

#[derive(Debug, thiserror::Error)]
pub enum FeeScheduleError {
    #[error("fee schedule is not valid JSON of the expected shape: {0}")]
    Malformed(#[from] serde_json::Error),
    #[error("fee schedule has more than {SCHEDULES_MAX} rules")]
    TooLarge,
    #[error("fee rule {index} is invalid: {problem}")]
    Invalid { index: usize, problem: &'static str },
}

#[derive(Debug, Clone, Default)]
pub struct FeeSchedule {
    /// Per (provider, method, currency), rules sorted by `effective_from`.
    rules: HashMap<(String, PaymentMethodType, Currency), Vec<FeeRule>>,
}

impl FeeSchedule {
    pub fn from_json(text: &str) -> Result<FeeSchedule, FeeScheduleError> {
        let rules: Vec<FeeRule> = serde_json::from_str(text)?;
        if rules.len() > SCHEDULES_MAX {
            return Err(FeeScheduleError::TooLarge);
        }
        let mut schedule = FeeSchedule::default();
        for (index, rule) in rules.into_iter().enumerate() {
            if rule.percentage < Decimal::ZERO || rule.percentage > Decimal::ONE_HUNDRED {
                return Err(FeeScheduleError::Invalid {
                    index,
                    problem: "percentage must be between 0 and 100",
                });
            }
            if rule.fixed < Decimal::ZERO || rule.fixed.scale() > rule.currency.scale() {
                return Err(FeeScheduleError::Invalid {
                    index,
                    problem: "fixed must be non-negative at the currency's scale",
                });
            }
            schedule
                .rules
                .entry((rule.provider.clone(), rule.method, rule.currency))
                .or_default()
                .push(rule);
        }
        for rules in schedule.rules.values_mut() {
            rules.sort_by_key(|r| r.effective_from);
        }
        Ok(schedule)
    }

    /// The rule in force at `at`, if any.
    pub fn rule(
        &self,
        provider: &str,
        method: PaymentMethodType,
        currency: Currency,
        at: DateTime<Utc>,
    ) -> Option<&FeeRule> {
        self.rules
            .get(&(provider.to_owned(), method, currency))?
            .iter()
            .rev()
            .find(|r| r.effective_from <= at)
    }

    /// `amount x percentage / 100 + fixed`, rounded half away from zero to the currency's
    /// scale and never more than the amount itself. `None` where no rule applies.
    pub fn fee(
        &self,
        provider: &str,
        method: PaymentMethodType,
        amount: Money,
        at: DateTime<Utc>,
    ) -> Option<Money> {
        let rule = self.rule(provider, method, amount.currency(), at)?;
        let scale = amount.currency().scale();
        let variable = (amount.amount() * rule.percentage / Decimal::ONE_HUNDRED)
            .round_dp_with_strategy(scale, RoundingStrategy::MidpointAwayFromZero);
        let total = (variable + rule.fixed).min(amount.amount());
        if total.is_zero() {
            return Some(Money::zero(amount.currency()));
        }
        Money::new(total, amount.currency()).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCHEDULE: &str = r#"[
        {"provider":"wompi","method":"CARD","currency":"COP","percentage":"2.65","fixed":"700.00","effective_from":"2026-01-01T00:00:00Z"},
        {"provider":"wompi","method":"CARD","currency":"COP","percentage":"2.99","fixed":"900.00","effective_from":"2026-07-01T00:00:00Z"},
        {"provider":"gcash","method":"GCASH","currency":"PHP","percentage":"2.5","fixed":"0","effective_from":"2026-01-01T00:00:00Z"}
    ]"#;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    #[test]
    fn the_rule_in_force_on_the_day_decides() {
        let schedule = FeeSchedule::from_json(SCHEDULE).unwrap();
        let amount = Money::parse("129000.00", Currency::COP).unwrap();
        let march = schedule
            .fee(
                "wompi",
                PaymentMethodType::Card,
                amount,
                at("2026-03-01T00:00:00Z"),
            )
            .unwrap();
        // 129000 x 2.65% = 3418.50, + 700 = 4118.50
        assert_eq!(march.amount().to_string(), "4118.50");
        let august = schedule
            .fee(
                "wompi",
                PaymentMethodType::Card,
                amount,
                at("2026-08-01T00:00:00Z"),
            )
            .unwrap();
        // 129000 x 2.99% = 3857.10, + 900 = 4757.10
        assert_eq!(august.amount().to_string(), "4757.10");
        assert!(schedule
            .fee(
                "wompi",
                PaymentMethodType::Card,
                amount,
                at("2025-12-31T23:59:59Z")
            )
            .is_none());
        assert!(schedule
            .fee(
                "payu",
                PaymentMethodType::Card,
                amount,
                at("2026-03-01T00:00:00Z")
            )
            .is_none());
    }

    #[test]
    fn rounds_half_away_from_zero_and_never_exceeds_the_amount() {
        let schedule = FeeSchedule::from_json(SCHEDULE).unwrap();
        // 0.10 PHP x 2.5% = 0.0025 -> 0.00
        let tiny = Money::parse("0.10", Currency::PHP).unwrap();
        let fee = schedule
            .fee(
                "gcash",
                PaymentMethodType::Gcash,
                tiny,
                at("2026-03-01T00:00:00Z"),
            )
            .unwrap();
        assert_eq!(fee.amount().to_string(), "0.00");
        // 0.30 PHP x 2.5% = 0.0075 -> 0.01
        let small = Money::parse("0.30", Currency::PHP).unwrap();
        let fee = schedule
            .fee(
                "gcash",
                PaymentMethodType::Gcash,
                small,
                at("2026-03-01T00:00:00Z"),
            )
            .unwrap();
        assert_eq!(fee.amount().to_string(), "0.01");
        // A fixed fee above the amount is capped at the amount.
        let cheap = Money::parse("500.00", Currency::COP).unwrap();
        let fee = schedule
            .fee(
                "wompi",
                PaymentMethodType::Card,
                cheap,
                at("2026-03-01T00:00:00Z"),
            )
            .unwrap();
        assert_eq!(fee.amount().to_string(), "500.00");
    }

    #[test]
    fn refuses_bad_schedules() {
        assert!(FeeSchedule::from_json("{}").is_err());
        let negative = r#"[{"provider":"p","method":"CARD","currency":"USD","percentage":"-1","fixed":"0","effective_from":"2026-01-01T00:00:00Z"}]"#;
        assert!(FeeSchedule::from_json(negative).is_err());
        let too_fine = r#"[{"provider":"p","method":"CARD","currency":"JPY","percentage":"1","fixed":"0.5","effective_from":"2026-01-01T00:00:00Z"}]"#;
        assert!(FeeSchedule::from_json(too_fine).is_err());
        let number = r#"[{"provider":"p","method":"CARD","currency":"USD","percentage":1,"fixed":"0","effective_from":"2026-01-01T00:00:00Z"}]"#;
        assert!(FeeSchedule::from_json(number).is_err());
    }
}
