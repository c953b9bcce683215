//! Webhook signature verification and parsing, per provider.
