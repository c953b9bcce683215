//! The `Payment` aggregate: its commands, its events (the ledger itself) and its rules.

mod aggregate;
mod commands;
mod error;
mod events;
mod status;

#[cfg(test)]
mod aggregate_tests;

pub use aggregate::{Payment, RefundState, RefundStatus};
pub use commands::{CaptureMode, NextAction, PaymentCommand, PaymentMethodType};
pub use error::PaymentError;
pub use events::{PaymentEvent, ProviderFailureKind, EVENT_VERSION};
pub use status::PaymentStatus;
