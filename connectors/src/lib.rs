//! Payment providers, one folder each: its configuration, HTTP client, wire types, webhook
//! verification and signing together, behind the [`Connector`] trait. The write side talks to
//! a provider only through [`PaymentProvider`] and [`WebhookVerifier`]; [`registry`] builds the
//! configured connectors.

mod http;
mod json_amount;
mod provider;
mod webhook;

pub mod sources;

pub mod registry;

/// Declares each provider's folder and registers it by its `NAME` and `configure`: adding a
/// provider is its folder and its name in the list below.
macro_rules! providers {
    ($($provider:ident),+ $(,)?) => {
        $(pub mod $provider;)+

        /// Every provider payledger knows, by name, in the order a demo lists them.
        const CONNECTORS: &[(&str, registry::Configure)] =
            &[$(($provider::NAME, $provider::configure)),+];
    };
}

providers!(sandbox, wompi, payu, maya, paymongo, ebanx);

pub use provider::*;
pub use registry::{Connector, ConnectorConfig, PublicConfig, Registry};
pub use sources::SourceList;
pub use webhook::*;
