//! Identifiers. Payment, capture and refund ids are derived (UUID v5) from the caller's
//! `Idempotency-Key`, so a retried request lands on the same aggregate or the same refund.

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Namespace for every id payledger derives. Changing it would re-key every payment.
const PAYLEDGER_NAMESPACE: Uuid = Uuid::from_u128(0x6a1f_3c2e_8b4d_4e7a_9c10_5d2b_7f3e_1a90);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} {problem}")]
pub struct IdError {
    pub field: &'static str,
    pub problem: &'static str,
}

fn check_text(
    field: &'static str,
    value: &str,
    len_max: usize,
    allowed: impl Fn(char) -> bool,
) -> Result<(), IdError> {
    if value.is_empty() {
        return Err(IdError {
            field,
            problem: "must not be empty",
        });
    }
    if value.len() > len_max {
        return Err(IdError {
            field,
            problem: "is too long",
        });
    }
    if !value.chars().all(allowed) {
        return Err(IdError {
            field,
            problem: "contains characters that are not allowed",
        });
    }
    Ok(())
}

macro_rules! text_newtype {
    ($(#[$doc:meta])* $name:ident, $field:literal, $len_max:expr, $allowed:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub const LEN_MAX: usize = $len_max;

            pub fn parse(value: &str) -> Result<Self, IdError> {
                check_text($field, value, Self::LEN_MAX, $allowed)?;
                Ok(Self(value.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

text_newtype!(
    /// A merchant: letters, digits, `-` and `_`, at most 64.
    MerchantId,
    "merchant_id",
    64,
    |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_'
);
text_newtype!(
    /// The merchant's own order reference, unique per merchant: printable ASCII, at most 128.
    Reference,
    "reference",
    128,
    |c: char| c.is_ascii_graphic() || c == ' '
);
text_newtype!(
    /// The caller's `Idempotency-Key`: printable ASCII, at most 255.
    IdempotencyKey,
    "Idempotency-Key",
    255,
    |c: char| c.is_ascii_graphic()
);

macro_rules! uuid_newtype {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            pub fn from_uuid(id: Uuid) -> Self {
                Self(id)
            }

            pub fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl std::str::FromStr for $name {
            type Err = uuid::Error;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }
    };
}

uuid_newtype!(
    /// One payment, one aggregate, one event stream.
    PaymentId
);
uuid_newtype!(
    /// One capture of a payment.
    CaptureId
);
uuid_newtype!(
    /// One refund of a payment.
    RefundId
);
uuid_newtype!(
    /// One offer of a payment to one provider: the name of its intent in the stream.
    AttemptId
);

uuid_newtype!(
    /// One of a merchant's customers: one aggregate, one event stream.
    CustomerId
);

uuid_newtype!(
    /// One payment method saved for a customer at a provider.
    SavedMethodId
);

impl CustomerId {
    /// A merchant's reference names one customer, so creating it again finds the same one.
    pub fn derive(merchant: &MerchantId, reference: &Reference) -> CustomerId {
        let name = format!(
            "customer\u{0}{}\u{0}{}",
            merchant.as_str(),
            reference.as_str()
        );
        CustomerId(Uuid::new_v5(&PAYLEDGER_NAMESPACE, name.as_bytes()))
    }
}

impl SavedMethodId {
    /// A retried save (same customer, same `Idempotency-Key`) names the same method.
    pub fn derive(customer: CustomerId, key: &IdempotencyKey) -> SavedMethodId {
        let name = format!("saved-method\u{0}{customer}\u{0}{}", key.as_str());
        SavedMethodId(Uuid::new_v5(&PAYLEDGER_NAMESPACE, name.as_bytes()))
    }
}

impl PaymentId {
    /// The same (merchant, key) always names the same payment, so a retry cannot create a
    /// second one.
    pub fn derive(merchant: &MerchantId, key: &IdempotencyKey) -> PaymentId {
        let name = format!("payment\u{0}{}\u{0}{}", merchant.as_str(), key.as_str());
        PaymentId(Uuid::new_v5(&PAYLEDGER_NAMESPACE, name.as_bytes()))
    }
}

impl CaptureId {
    pub fn derive(payment: PaymentId, key: &IdempotencyKey) -> CaptureId {
        let name = format!("capture\u{0}{}\u{0}{}", payment, key.as_str());
        CaptureId(Uuid::new_v5(&PAYLEDGER_NAMESPACE, name.as_bytes()))
    }
}

impl AttemptId {
    /// A payment is offered to each provider at most once, so (payment, provider) names the
    /// attempt: a re-submission after a lost answer is the same attempt, never a new one.
    pub fn derive(payment: PaymentId, provider: &str) -> AttemptId {
        let name = format!("attempt\u{0}{payment}\u{0}{provider}");
        AttemptId(Uuid::new_v5(&PAYLEDGER_NAMESPACE, name.as_bytes()))
    }
}

impl RefundId {
    pub fn derive(payment: PaymentId, key: &IdempotencyKey) -> RefundId {
        let name = format!("refund\u{0}{}\u{0}{}", payment, key.as_str());
        RefundId(Uuid::new_v5(&PAYLEDGER_NAMESPACE, name.as_bytes()))
    }

    /// The refund that gives back an orphaned transaction's capture: one per orphan, so a
    /// retried compensation is the same refund at the provider.
    pub fn derive_for_orphan(payment: PaymentId, provider_transaction_id: &str) -> RefundId {
        let name = format!("orphan-refund\u{0}{payment}\u{0}{provider_transaction_id}");
        RefundId(Uuid::new_v5(&PAYLEDGER_NAMESPACE, name.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_merchant_and_key_give_the_same_payment_id() {
        let m = MerchantId::parse("m-1").unwrap();
        let k = IdempotencyKey::parse("key-1").unwrap();
        assert_eq!(PaymentId::derive(&m, &k), PaymentId::derive(&m, &k));
        let other_merchant = MerchantId::parse("m-2").unwrap();
        assert_ne!(
            PaymentId::derive(&m, &k),
            PaymentId::derive(&other_merchant, &k)
        );
    }

    #[test]
    fn refund_and_capture_ids_differ_for_the_same_key() {
        let m = MerchantId::parse("m").unwrap();
        let k = IdempotencyKey::parse("k").unwrap();
        let p = PaymentId::derive(&m, &k);
        assert_ne!(
            RefundId::derive(p, &k).as_uuid(),
            CaptureId::derive(p, &k).as_uuid()
        );
    }

    #[test]
    fn text_ids_are_bounded_and_restricted() {
        assert!(MerchantId::parse("").is_err());
        assert!(MerchantId::parse("has space").is_err());
        assert!(MerchantId::parse(&"a".repeat(65)).is_err());
        assert!(IdempotencyKey::parse(&"k".repeat(255)).is_ok());
        assert!(IdempotencyKey::parse(&"k".repeat(256)).is_err());
        assert!(Reference::parse(&"r".repeat(129)).is_err());
        assert!(Reference::parse("order 1").is_ok());
        assert!(Reference::parse("order\n1").is_err());
    }
}
