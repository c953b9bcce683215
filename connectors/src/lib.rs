//! Payment providers, one folder each: its configuration, HTTP client, wire types, webhook
//! verification and signing together, behind the [`Connector`] trait. The write side talks to
//! a provider only through [`PaymentProvider`] and [`WebhookVerifier`]; [`registry`] builds the
//! configured connectors.

mod http;
mod provider;
mod webhook;

pub mod registry;

pub mod maya;
pub mod paymongo;
pub mod payu;
pub mod sandbox;
pub mod wompi;

pub use provider::*;
pub use registry::{Connector, ConnectorConfig, PublicConfig, Registry};
pub use webhook::*;
