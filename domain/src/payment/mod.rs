//! The `Payment` aggregate: its commands, its events (the ledger itself) and its rules.

mod aggregate;
mod commands;
mod error;
mod events;
mod status;

#[cfg(test)]
mod aggregate_tests;
#[cfg(test)]
mod intent_tests;

pub use aggregate::{OpenAttempt, Orphan, Payment, PendingCapture, RefundState, RefundStatus};
pub use commands::{CaptureMode, NextAction, PaymentCommand, PaymentMethodType};
pub use error::PaymentError;
pub use events::{Compensation, PaymentEvent, ProviderFailureKind, EVENT_VERSION};
pub use status::PaymentStatus;
