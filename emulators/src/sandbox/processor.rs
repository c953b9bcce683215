//! The sandbox as a card processor: how it decides the payments whose token does not name
//! their outcome (a card BIN token, `tok_bin_<6 digits>`). Credit and debit cards, a seeded
//! success rate, realistic decline reasons and a processing delay, each drawn from a hash of
//! the seed and the payment id, so the same payments get the same outcomes in every run
//! whatever order they arrive in.

use std::ops::RangeInclusive;
use std::time::Duration;

use domain::{CaptureMode, PaymentId};
use rust_decimal::Decimal;
use sha2::{Digest, Sha256};

/// The environment variables the processor reads.
pub const ENV_SUCCESS_RATE: &str = "SANDBOX_SUCCESS_RATE";
pub const ENV_SEED: &str = "SANDBOX_SEED";
pub const ENV_PROCESSING_DELAY_MS: &str = "SANDBOX_PROCESSING_DELAY_MS";

/// Prefix of a card BIN token: `tok_bin_424242`.
pub const BIN_TOKEN_PREFIX: &str = "tok_bin_";
/// Basis points in one: rates are whole basis points, never floats.
const BASIS_POINTS: u64 = 10_000;
/// The longest processing delay a setting may ask for.
const DELAY_MS_MAX: u64 = 60_000;

/// Whether a card draws on credit or on the cardholder's account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Funding {
    Credit,
    Debit,
}

/// A card the processor knows by its BIN (the first six digits), as a test token names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bin {
    pub bin: &'static str,
    pub brand: &'static str,
    pub funding: Funding,
    /// The last four digits of the public test number with this BIN, for display.
    pub last_four: &'static str,
}

/// The BINs the sandbox issues: one credit and one debit card per brand, after the public
/// test numbers processors document.
pub const BINS: &[Bin] = &[
    Bin {
        bin: "424242",
        brand: "VISA",
        funding: Funding::Credit,
        last_four: "4242",
    },
    Bin {
        bin: "400005",
        brand: "VISA",
        funding: Funding::Debit,
        last_four: "5556",
    },
    Bin {
        bin: "555555",
        brand: "MASTERCARD",
        funding: Funding::Credit,
        last_four: "4444",
    },
    Bin {
        bin: "520082",
        brand: "MASTERCARD",
        funding: Funding::Debit,
        last_four: "8210",
    },
    Bin {
        bin: "378282",
        brand: "AMEX",
        funding: Funding::Credit,
        last_four: "0005",
    },
];

/// The card a BIN token names; `None` for any other token.
pub fn bin_of(token: &str) -> Option<&'static Bin> {
    let digits = token.strip_prefix(BIN_TOKEN_PREFIX)?;
    BINS.iter().find(|bin| bin.bin == digits)
}

/// Decline reasons of a credit card, most frequent first, with their weights (of 100).
const CREDIT_DECLINES: &[(&str, u64)] = &[
    ("card_declined", 45),
    ("do_not_honor", 25),
    ("insufficient_funds", 20),
    ("expired_card", 10),
];
/// A debit card is declined mostly for the money not being there.
const DEBIT_DECLINES: &[(&str, u64)] = &[
    ("insufficient_funds", 60),
    ("card_declined", 25),
    ("do_not_honor", 15),
];

/// How the processor behaves; every figure comes from settings and defaults to a realistic
/// day (95 % approved).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Processor {
    success_rate_bp: u64,
    seed: u64,
    /// `None`: outcomes follow the webhook delay of the sandbox's configuration.
    delay_ms: Option<RangeInclusive<u64>>,
}

impl Default for Processor {
    fn default() -> Self {
        Processor {
            success_rate_bp: 9_500,
            seed: 0,
            delay_ms: None,
        }
    }
}

/// What the processor decided for one BIN payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Approve,
    Decline(&'static str),
}

impl Processor {
    /// Reads `SANDBOX_SUCCESS_RATE` (a fraction from 0 to 1, `0.95`), `SANDBOX_SEED` (an
    /// unsigned integer) and `SANDBOX_PROCESSING_DELAY_MS` (`1000-3000`, or one number);
    /// unset ones take the defaults. The error names the variable, never echoes its value.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Processor, String> {
        let mut processor = Processor::default();
        if let Some(text) = lookup(ENV_SUCCESS_RATE) {
            processor.success_rate_bp = parse_rate(&text)
                .ok_or_else(|| format!("{ENV_SUCCESS_RATE} must be a fraction from 0 to 1"))?;
        }
        if let Some(text) = lookup(ENV_SEED) {
            processor.seed = text
                .trim()
                .parse()
                .map_err(|_| format!("{ENV_SEED} must be an unsigned integer"))?;
        }
        if let Some(text) = lookup(ENV_PROCESSING_DELAY_MS) {
            processor.delay_ms = Some(parse_delay(&text).ok_or_else(|| {
                format!(
                    "{ENV_PROCESSING_DELAY_MS} must be milliseconds or a range `low-high`, at most {DELAY_MS_MAX}"
                )
            })?);
        }
        Ok(processor)
    }

    pub fn with_success_rate_bp(mut self, success_rate_bp: u64) -> Processor {
        self.success_rate_bp = success_rate_bp.min(BASIS_POINTS);
        self
    }

    pub fn with_seed(mut self, seed: u64) -> Processor {
        self.seed = seed;
        self
    }

    /// Approved with the success rate; else declined for a reason drawn by the card's funding.
    pub fn verdict(&self, payment: PaymentId, funding: Funding) -> Verdict {
        if self.draw(payment, b"outcome") % BASIS_POINTS < self.success_rate_bp {
            return Verdict::Approve;
        }
        let reasons = match funding {
            Funding::Credit => CREDIT_DECLINES,
            Funding::Debit => DEBIT_DECLINES,
        };
        let total: u64 = reasons.iter().map(|(_, weight)| weight).sum();
        let mut pick = self.draw(payment, b"reason") % total.max(1);
        for (reason, weight) in reasons {
            if pick < *weight {
                return Verdict::Decline(reason);
            }
            pick -= weight;
        }
        Verdict::Decline("card_declined")
    }

    /// How long the processor takes to decide `payment`; `None` when no delay is configured.
    pub fn delay(&self, payment: PaymentId) -> Option<Duration> {
        let range = self.delay_ms.as_ref()?;
        let span = range.end() - range.start() + 1;
        Some(Duration::from_millis(
            range.start() + self.draw(payment, b"delay") % span,
        ))
    }

    /// Whether the card can be authorized now and captured later: debit cards are charged
    /// at once, as many issuers require.
    pub fn takes_capture(funding: Funding, capture: CaptureMode) -> bool {
        capture == CaptureMode::Automatic || funding == Funding::Credit
    }

    /// A number drawn from the seed, the payment and what it is for.
    fn draw(&self, payment: PaymentId, purpose: &[u8]) -> u64 {
        let digest = Sha256::new()
            .chain_update(self.seed.to_le_bytes())
            .chain_update(payment.as_uuid().as_bytes())
            .chain_update(purpose)
            .finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        u64::from_le_bytes(first)
    }
}

fn parse_rate(text: &str) -> Option<u64> {
    let rate: Decimal = text.trim().parse().ok()?;
    if rate < Decimal::ZERO || rate > Decimal::ONE {
        return None;
    }
    let points = (rate * Decimal::from(BASIS_POINTS)).round();
    u64::try_from(points).ok()
}

fn parse_delay(text: &str) -> Option<RangeInclusive<u64>> {
    let (low, high) = match text.trim().split_once('-') {
        Some((low, high)) => (low.trim().parse().ok()?, high.trim().parse().ok()?),
        None => {
            let both: u64 = text.trim().parse().ok()?;
            (both, both)
        }
    };
    (low <= high && high <= DELAY_MS_MAX).then_some(low..=high)
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn settings(vars: &[(&str, &str)]) -> Result<Processor, String> {
        Processor::from_lookup(|name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    fn payment(n: u128) -> PaymentId {
        PaymentId::from_uuid(Uuid::from_u128(n))
    }

    #[test]
    fn settings_parse_and_a_bad_one_names_its_variable_only() {
        let processor = settings(&[
            (ENV_SUCCESS_RATE, "0.9"),
            (ENV_SEED, "42"),
            (ENV_PROCESSING_DELAY_MS, "1000-3000"),
        ])
        .unwrap();
        assert_eq!(processor.success_rate_bp, 9_000);
        assert_eq!(processor.seed, 42);
        assert_eq!(processor.delay_ms, Some(1_000..=3_000));
        assert_eq!(settings(&[]).unwrap(), Processor::default());
        assert_eq!(
            settings(&[(ENV_PROCESSING_DELAY_MS, "250")])
                .unwrap()
                .delay_ms,
            Some(250..=250)
        );
        for (var, bad) in [
            (ENV_SUCCESS_RATE, "1.5"),
            (ENV_SUCCESS_RATE, "-0.1"),
            (ENV_SUCCESS_RATE, "95%"),
            (ENV_SEED, "-1"),
            (ENV_PROCESSING_DELAY_MS, "3000-1000"),
            (ENV_PROCESSING_DELAY_MS, "0-999999"),
        ] {
            let error = settings(&[(var, bad)]).unwrap_err();
            assert!(error.starts_with(var), "{error}");
            assert!(!error.contains(bad), "{error}");
        }
    }

    #[test]
    fn bin_tokens_name_credit_and_debit_cards_and_nothing_else() {
        assert_eq!(bin_of("tok_bin_424242").unwrap().funding, Funding::Credit);
        assert_eq!(bin_of("tok_bin_400005").unwrap().funding, Funding::Debit);
        assert_eq!(bin_of("tok_bin_520082").unwrap().brand, "MASTERCARD");
        for other in [
            "tok_bin_411111",
            "tok_bin_",
            "tok_sandbox_approved",
            "424242",
        ] {
            assert_eq!(bin_of(other), None, "{other}");
        }
    }

    #[test]
    fn debit_cards_take_no_authorization_hold() {
        assert!(Processor::takes_capture(
            Funding::Credit,
            CaptureMode::Manual
        ));
        assert!(Processor::takes_capture(
            Funding::Debit,
            CaptureMode::Automatic
        ));
        assert!(!Processor::takes_capture(
            Funding::Debit,
            CaptureMode::Manual
        ));
    }

    #[test]
    fn the_same_seed_and_payment_give_the_same_verdict_and_delay() {
        let processor = settings(&[(ENV_PROCESSING_DELAY_MS, "1000-3000")]).unwrap();
        let other_seed = processor.clone().with_seed(7);
        let mut differ = 0;
        for n in 0..200 {
            let verdict = processor.verdict(payment(n), Funding::Credit);
            assert_eq!(verdict, processor.verdict(payment(n), Funding::Credit));
            let delay = processor.delay(payment(n)).unwrap();
            assert_eq!(Some(delay), processor.delay(payment(n)));
            assert!((1_000..=3_000).contains(&(delay.as_millis() as u64)));
            if verdict != other_seed.verdict(payment(n), Funding::Credit) {
                differ += 1;
            }
        }
        assert!(differ > 0, "another seed is another run");
    }

    #[test]
    fn the_extremes_of_the_rate_always_or_never_approve() {
        let never = Processor::default().with_success_rate_bp(0);
        let always = Processor::default().with_success_rate_bp(BASIS_POINTS);
        for n in 0..500 {
            assert_eq!(always.verdict(payment(n), Funding::Debit), Verdict::Approve);
            assert!(matches!(
                never.verdict(payment(n), Funding::Debit),
                Verdict::Decline(_)
            ));
        }
    }

    #[test]
    fn declines_follow_the_cards_funding() {
        let never = Processor::default().with_success_rate_bp(0);
        let reasons = |funding| -> Vec<&'static str> {
            (0..2_000)
                .map(|n| match never.verdict(payment(n), funding) {
                    Verdict::Decline(reason) => reason,
                    Verdict::Approve => "approved",
                })
                .collect()
        };
        let share = |all: &[&str], reason: &str| {
            all.iter().filter(|r| **r == reason).count() * 100 / all.len()
        };
        let debit = reasons(Funding::Debit);
        let credit = reasons(Funding::Credit);
        // Weights 60 % and 20 %: far apart whatever the draw.
        assert!(share(&debit, "insufficient_funds") > 50, "{debit:?}");
        assert!(share(&credit, "insufficient_funds") < 30, "{credit:?}");
        assert!(!debit.contains(&"expired_card"));
        assert!(credit.contains(&"expired_card"));
    }
}
