//! The `Payment` aggregate: its commands, its events (the ledger itself) and its rules.

mod aggregate;
mod commands;
mod error;
mod events;
mod method;
mod refund_reason;
mod status;

#[cfg(test)]
mod aggregate_tests;
#[cfg(test)]
mod intent_tests;

pub use aggregate::{OpenAttempt, Orphan, Payment, PendingCapture, RefundState, RefundStatus};
pub use commands::{CaptureMode, CaptureModeError, NextAction, PaymentCommand};
pub use error::PaymentError;
pub use events::{Compensation, PaymentEvent, ProviderFailureKind, EVENT_VERSION};
pub use method::{
    CardToken, MethodDetail, PaymentDescription, PaymentDescriptionError, PaymentMethodType,
    PrintableTextError, PseUserType, PseUserTypeError, UnknownMethodType,
};
pub use refund_reason::{RefundReason, RefundReasonError};
pub use status::PaymentStatus;
