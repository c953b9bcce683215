//! GCash through EBANX (Philippines): EBANX's Direct API with the `gcash` payment type, a
//! redirect for the customer, and notifications that only name payments, each confirmed by
//! querying EBANX before anything is appended.

pub mod client;
pub mod webhook;

use std::sync::Arc;

pub use client::*;
use secrecy::ExposeSecret;
pub use webhook::*;

use crate::registry::{Connector, ConnectorConfig, Lookup, Parts};
use crate::ProviderConfigError;

pub const NAME: &str = EbanxProvider::NAME;

pub fn configure(lookup: Lookup<'_>) -> Box<dyn ConnectorConfig> {
    Box::new(EbanxConfig::from_lookup(lookup))
}

impl ConnectorConfig for EbanxConfig {
    fn problems(&self, production: bool) -> Vec<String> {
        EbanxConfig::problems(self, production)
    }

    fn setting(&self, var: &str) -> Option<String> {
        match var {
            ENV_BASE_URL => Some(self.base_url.clone()),
            ENV_INTEGRATION_KEY => Some(self.integration_key.expose_secret().to_owned()),
            ENV_PUBLIC_INTEGRATION_KEY => self.public_integration_key.clone(),
            _ => None,
        }
    }

    fn connect(self: Box<Self>) -> Result<Box<dyn Connector>, ProviderConfigError> {
        // The verifier asks EBANX through the same client: one key, one connection pool.
        let provider = Arc::new(EbanxProvider::new((*self).clone())?);
        let verifier = Arc::new(EbanxWebhookVerifier::new(provider.clone()));
        Ok(Box::new(
            Parts::new(&*self, provider, verifier).public_key(self.public_integration_key.clone()),
        ))
    }
}
