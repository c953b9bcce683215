//! The pure payment model. Nothing in this crate does I/O: time, ids and provider answers
//! arrive inside commands, so every decision here is deterministic and testable.

pub mod ids;
pub mod money;
pub mod payment;

pub use ids::{AttemptId, CaptureId, IdempotencyKey, MerchantId, PaymentId, Reference, RefundId};
pub use money::{Currency, Money, MoneyError};
pub use payment::{
    CaptureMode, Payment, PaymentCommand, PaymentError, PaymentEvent, PaymentMethodType,
    PaymentStatus, ProviderFailureKind,
};
