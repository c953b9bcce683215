//! payu adapter.
