//! Wompi (Colombia): cards, Nequi, PSE, Bancolombia transfer, Bancolombia QR and Daviplata
//! through its REST API, checksum-signed webhooks and the checkout widget's integrity
//! signature.

pub mod client;
mod sources;
pub mod webhook;

use std::sync::Arc;

pub use client::*;
use secrecy::ExposeSecret;
pub use webhook::*;

use crate::registry::{Connector, ConnectorConfig, Lookup, Parts};
use crate::ProviderConfigError;

pub const NAME: &str = WompiProvider::NAME;

pub fn configure(lookup: Lookup<'_>) -> Box<dyn ConnectorConfig> {
    Box::new(WompiConfig::from_lookup(lookup))
}

impl ConnectorConfig for WompiConfig {
    fn problems(&self, production: bool) -> Vec<String> {
        WompiConfig::problems(self, production)
    }

    fn setting(&self, var: &str) -> Option<String> {
        let value = match var {
            ENV_BASE_URL => self.base_url.as_str(),
            ENV_PUBLIC_KEY => self.public_key.as_str(),
            ENV_PRIVATE_KEY => self.private_key.expose_secret(),
            ENV_EVENTS_SECRET => self.events_secret.expose_secret(),
            ENV_INTEGRITY_SECRET => self.integrity_secret.expose_secret(),
            _ => return None,
        };
        Some(value.to_owned())
    }

    fn connect(self: Box<Self>) -> Result<Box<dyn Connector>, ProviderConfigError> {
        let verifier = Arc::new(WompiWebhookVerifier::from_config(&self));
        let provider = Arc::new(WompiProvider::new((*self).clone())?);
        let widget = provider.clone();
        Ok(Box::new(
            Parts::new(&*self, provider, verifier)
                .public_key(Some(self.public_key.clone()))
                .widget(Box::new(move |payment, amount| {
                    serde_json::to_value(widget.checkout_widget(payment, amount)).ok()
                })),
        ))
    }
}
