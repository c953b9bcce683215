use crate::money::{Currency, MoneyError};
use crate::payment::PaymentStatus;

/// Why the aggregate refused a command. Each maps to one HTTP status at the edge.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PaymentError {
    #[error("payment not found")]
    NotFound,
    #[error("this Idempotency-Key was already used with a different request")]
    IdempotencyMismatch,
    #[error("cannot {action} a payment that is {status}")]
    InvalidTransition {
        action: &'static str,
        status: PaymentStatus,
    },
    #[error("amount is in {given}, the payment is in {expected}")]
    CurrencyMismatch { expected: Currency, given: Currency },
    #[error("capture of {requested} exceeds the authorized {authorized}")]
    CaptureExceedsAuthorized {
        requested: String,
        authorized: String,
    },
    #[error("refund of {requested} exceeds the refundable {refundable}")]
    RefundExceedsCaptured {
        requested: String,
        refundable: String,
    },
    #[error("refund not found")]
    RefundNotFound,
    #[error("the provider's amount {reported} differs from the payment's {expected}")]
    ProviderAmountMismatch { expected: String, reported: String },
    #[error("{0}")]
    Money(#[from] MoneyError),
}
