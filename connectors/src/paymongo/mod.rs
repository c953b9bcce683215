//! GCash through PayMongo (Philippines): payment intents with a GCash payment method, a
//! redirect for the customer, and `Paymongo-Signature` webhooks.

pub mod client;
pub mod webhook;

use std::sync::Arc;

pub use client::*;
use secrecy::ExposeSecret;
pub use webhook::*;

use crate::registry::{Connector, ConnectorConfig, Lookup, Parts};
use crate::ProviderConfigError;

/// PayMongo is reached as the `gcash` provider: GCash is the only method taken through it.
pub const NAME: &str = PaymongoProvider::NAME;

pub fn configure(lookup: Lookup<'_>) -> Box<dyn ConnectorConfig> {
    Box::new(PaymongoConfig::from_lookup(lookup))
}

impl ConnectorConfig for PaymongoConfig {
    fn problems(&self, production: bool) -> Vec<String> {
        PaymongoConfig::problems(self, production)
    }

    fn setting(&self, var: &str) -> Option<String> {
        match var {
            ENV_BASE_URL => Some(self.base_url.clone()),
            ENV_SECRET_KEY => Some(self.secret_key.expose_secret().to_owned()),
            ENV_PUBLIC_KEY => self.public_key.clone(),
            ENV_WEBHOOK_SECRET => Some(self.webhook_secret.expose_secret().to_owned()),
            ENV_WEBHOOK_TOLERANCE_SECS => Some(self.webhook_tolerance_secs.to_string()),
            _ => None,
        }
    }

    fn connect(self: Box<Self>) -> Result<Box<dyn Connector>, ProviderConfigError> {
        let verifier = Arc::new(PaymongoWebhookVerifier::new(&self)?);
        let provider = Arc::new(PaymongoProvider::new((*self).clone())?);
        Ok(Box::new(
            Parts::new(&*self, provider, verifier).public_key(self.public_key.clone()),
        ))
    }
}
