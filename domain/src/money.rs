//! Money: an exact decimal amount with its ISO 4217 currency. Never a float.

use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// Largest amount accepted for one payment, in the currency's major unit (10^12).
pub const AMOUNT_MAX_MAJOR_UNITS: i64 = 1_000_000_000_000;

/// The currencies payledger settles. Each carries its minor-unit scale, which every amount
/// in that currency must respect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Currency {
    COP,
    PHP,
    USD,
    EUR,
    MXN,
    BRL,
    PEN,
    CLP,
    JPY,
}

impl Currency {
    pub const ALL: [Currency; 9] = [
        Currency::COP,
        Currency::PHP,
        Currency::USD,
        Currency::EUR,
        Currency::MXN,
        Currency::BRL,
        Currency::PEN,
        Currency::CLP,
        Currency::JPY,
    ];

    /// Number of decimal places of the currency's minor unit (ISO 4217).
    pub fn scale(self) -> u32 {
        match self {
            Currency::JPY | Currency::CLP => 0,
            _ => 2,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Currency::COP => "COP",
            Currency::PHP => "PHP",
            Currency::USD => "USD",
            Currency::EUR => "EUR",
            Currency::MXN => "MXN",
            Currency::BRL => "BRL",
            Currency::PEN => "PEN",
            Currency::CLP => "CLP",
            Currency::JPY => "JPY",
        }
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl FromStr for Currency {
    type Err = MoneyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Currency::ALL
            .into_iter()
            .find(|c| c.code() == s)
            .ok_or_else(|| MoneyError::UnknownCurrency(s.chars().take(8).collect()))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("unknown currency `{0}`")]
    UnknownCurrency(String),
    #[error("amount must be a decimal string of ASCII digits with an optional `.`")]
    Malformed,
    #[error("amount has more decimals than {currency} allows ({scale})")]
    TooManyDecimals { currency: Currency, scale: u32 },
    #[error("amount must be greater than zero")]
    NotPositive,
    #[error("amount exceeds the maximum of 10^12")]
    TooLarge,
    #[error("currencies differ: {0} and {1}")]
    CurrencyMismatch(Currency, Currency),
    #[error("arithmetic overflow")]
    Overflow,
}

/// A non-negative amount in one currency, always held at the currency's scale.
///
/// Serialized as `{"amount":"129000.00","currency":"COP"}`: the amount is a string so that
/// no JSON parser on the way can turn it into a float.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Money {
    #[serde(with = "rust_decimal::serde::str")]
    amount: Decimal,
    currency: Currency,
}

impl Money {
    /// Parses a strict decimal string: ASCII digits, at most one `.`, digits on both sides of
    /// it, at most the currency's scale of decimals, above zero and at most 10^12.
    /// No sign, exponent, whitespace or thousands separators.
    pub fn parse(text: &str, currency: Currency) -> Result<Money, MoneyError> {
        const TEXT_LEN_MAX: usize = 32;
        if text.is_empty() || text.len() > TEXT_LEN_MAX {
            return Err(MoneyError::Malformed);
        }
        let (whole, fraction) = match text.split_once('.') {
            Some((w, f)) => (w, Some(f)),
            None => (text, None),
        };
        let digits_only = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !digits_only(whole) || fraction.is_some_and(|f| !digits_only(f)) {
            return Err(MoneyError::Malformed);
        }
        let decimals = fraction.map_or(0, str::len);
        if decimals > currency.scale() as usize {
            return Err(MoneyError::TooManyDecimals {
                currency,
                scale: currency.scale(),
            });
        }
        let amount = Decimal::from_str(text).map_err(|_| MoneyError::Malformed)?;
        Money::new(amount, currency)
    }

    /// Builds a positive amount from an exact decimal; refuses amounts finer than the
    /// currency's minor unit instead of rounding them away.
    pub fn new(amount: Decimal, currency: Currency) -> Result<Money, MoneyError> {
        if amount <= Decimal::ZERO {
            return Err(MoneyError::NotPositive);
        }
        if amount > Decimal::from(AMOUNT_MAX_MAJOR_UNITS) {
            return Err(MoneyError::TooLarge);
        }
        let mut scaled = amount.normalize();
        if scaled.scale() > currency.scale() {
            return Err(MoneyError::TooManyDecimals {
                currency,
                scale: currency.scale(),
            });
        }
        scaled.rescale(currency.scale());
        Ok(Money {
            amount: scaled,
            currency,
        })
    }

    /// Zero in a currency: the neutral element for totals (never a payment amount).
    pub fn zero(currency: Currency) -> Money {
        let mut amount = Decimal::ZERO;
        amount.rescale(currency.scale());
        Money { amount, currency }
    }

    pub fn amount(&self) -> Decimal {
        self.amount
    }

    pub fn currency(&self) -> Currency {
        self.currency
    }

    pub fn is_zero(&self) -> bool {
        self.amount.is_zero()
    }

    pub fn checked_add(self, other: Money) -> Result<Money, MoneyError> {
        self.same_currency(other)?;
        let mut amount = self
            .amount
            .checked_add(other.amount)
            .ok_or(MoneyError::Overflow)?;
        amount.rescale(self.currency.scale());
        Ok(Money {
            amount,
            currency: self.currency,
        })
    }

    /// `self - other`, refusing a negative result.
    pub fn checked_sub(self, other: Money) -> Result<Money, MoneyError> {
        self.same_currency(other)?;
        let mut amount = self
            .amount
            .checked_sub(other.amount)
            .ok_or(MoneyError::Overflow)?;
        if amount.is_sign_negative() && !amount.is_zero() {
            return Err(MoneyError::Overflow);
        }
        amount.rescale(self.currency.scale());
        Ok(Money {
            amount,
            currency: self.currency,
        })
    }

    fn same_currency(&self, other: Money) -> Result<(), MoneyError> {
        if self.currency == other.currency {
            Ok(())
        } else {
            Err(MoneyError::CurrencyMismatch(self.currency, other.currency))
        }
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.amount, self.currency)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_strict_decimal_strings_at_the_currency_scale() {
        let m = Money::parse("129000.00", Currency::COP).unwrap();
        assert_eq!(m.amount().to_string(), "129000.00");
        assert_eq!(
            Money::parse("5", Currency::USD)
                .unwrap()
                .amount()
                .to_string(),
            "5.00"
        );
        assert_eq!(
            Money::parse("5.1", Currency::USD)
                .unwrap()
                .amount()
                .to_string(),
            "5.10"
        );
        assert_eq!(
            Money::parse("1500", Currency::JPY)
                .unwrap()
                .amount()
                .to_string(),
            "1500"
        );
    }

    #[test]
    fn refuses_anything_but_plain_digits() {
        for bad in [
            "", "-1", "+1", "1e3", "1.", ".5", " 1", "1 ", "1,000", "1_000", "0x10", "1.2.3", "١",
            "NaN",
        ] {
            assert_eq!(
                Money::parse(bad, Currency::USD),
                Err(MoneyError::Malformed),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn refuses_more_decimals_than_the_currency_has() {
        assert!(matches!(
            Money::parse("1.001", Currency::USD),
            Err(MoneyError::TooManyDecimals { .. })
        ));
        assert!(matches!(
            Money::parse("1.5", Currency::JPY),
            Err(MoneyError::TooManyDecimals { .. })
        ));
    }

    #[test]
    fn refuses_zero_and_amounts_above_the_maximum() {
        assert_eq!(
            Money::parse("0", Currency::USD),
            Err(MoneyError::NotPositive)
        );
        assert_eq!(
            Money::parse("0.00", Currency::USD),
            Err(MoneyError::NotPositive)
        );
        assert!(Money::parse("1000000000000", Currency::USD).is_ok());
        assert_eq!(
            Money::parse("1000000000000.01", Currency::USD),
            Err(MoneyError::TooLarge)
        );
    }

    #[test]
    fn currency_codes_are_exact() {
        assert_eq!("COP".parse::<Currency>(), Ok(Currency::COP));
        assert!("cop".parse::<Currency>().is_err());
        assert!("XXX".parse::<Currency>().is_err());
    }

    #[test]
    fn serializes_amount_as_a_string_and_refuses_json_numbers() {
        let m = Money::parse("10.10", Currency::PHP).unwrap();
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(json, r#"{"amount":"10.10","currency":"PHP"}"#);
        assert!(serde_json::from_str::<Money>(r#"{"amount":10.1,"currency":"PHP"}"#).is_err());
    }

    #[test]
    fn arithmetic_refuses_mixed_currencies_and_negative_results() {
        let a = Money::parse("10", Currency::USD).unwrap();
        let b = Money::parse("3", Currency::USD).unwrap();
        let c = Money::parse("3", Currency::COP).unwrap();
        assert_eq!(a.checked_sub(b).unwrap().amount().to_string(), "7.00");
        assert!(a.checked_add(c).is_err());
        assert!(b.checked_sub(a).is_err());
    }
}
