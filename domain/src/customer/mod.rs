//! The `Customer` aggregate: a merchant's customer and the payment methods saved for them at
//! providers. Only what identifies a saved method to the customer (type, provider, brand, last
//! four, expiry, a masked phone) is in its events; the provider's source id, which buys a
//! charge, and the customer's email are kept outside the immutable stream, where they can be
//! erased.

mod aggregate;
mod display;
mod events;

#[cfg(test)]
mod aggregate_tests;

pub use aggregate::{Customer, CustomerCommand, CustomerError, SavedMethod, SAVED_METHODS_MAX};
pub use display::{MethodDisplay, MethodDisplayError};
pub use events::CustomerEvent;
