//! paymongo adapter.
