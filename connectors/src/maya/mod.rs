//! Maya (Philippines): wallet and card payments through Maya Checkout, cards saved in Maya
//! Vault and charged in one click, with webhooks authenticated by their source address and
//! confirmed by asking Maya.

pub mod client;
pub mod vault;
pub mod webhook;

use std::sync::Arc;

pub use client::*;
use secrecy::ExposeSecret;
pub use webhook::*;

use crate::registry::{Connector, ConnectorConfig, Lookup, Parts};
use crate::ProviderConfigError;

pub const NAME: &str = MayaProvider::NAME;

pub fn configure(lookup: Lookup<'_>) -> Box<dyn ConnectorConfig> {
    Box::new(MayaConfig::from_lookup(lookup))
}

impl ConnectorConfig for MayaConfig {
    fn problems(&self, production: bool) -> Vec<String> {
        MayaConfig::problems(self, production)
    }

    fn setting(&self, var: &str) -> Option<String> {
        let value = match var {
            ENV_BASE_URL => self.base_url.as_str(),
            ENV_PUBLIC_KEY => self.public_key.as_str(),
            ENV_SECRET_KEY => self.secret_key.expose_secret(),
            ENV_WEBHOOK_SOURCES => self.webhook_sources.as_str(),
            _ => return None,
        };
        Some(value.to_owned())
    }

    fn connect(self: Box<Self>) -> Result<Box<dyn Connector>, ProviderConfigError> {
        let verifier = Arc::new(MayaWebhookVerifier::new(&self)?);
        let provider = Arc::new(MayaProvider::new((*self).clone())?);
        Ok(Box::new(
            Parts::new(&*self, provider, verifier).public_key(Some(self.public_key.clone())),
        ))
    }
}
