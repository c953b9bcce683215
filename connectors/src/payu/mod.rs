//! PayU Latam (Colombia): cards, PSE and Efecty cash through its `service.cgi` API, and its
//! signed, form-encoded confirmations.

pub mod client;
pub mod signing;
pub mod tokens;
pub mod webhook;

use std::sync::Arc;

pub use client::*;
use secrecy::ExposeSecret;
pub use signing::*;
pub use webhook::*;

use crate::registry::{Connector, ConnectorConfig, Lookup, Parts};
use crate::ProviderConfigError;

pub const NAME: &str = PayuProvider::NAME;

pub fn configure(lookup: Lookup<'_>) -> Box<dyn ConnectorConfig> {
    Box::new(PayuConfig::from_lookup(lookup))
}

impl ConnectorConfig for PayuConfig {
    fn problems(&self, production: bool) -> Vec<String> {
        PayuConfig::problems(self, production)
    }

    fn setting(&self, var: &str) -> Option<String> {
        let value = match var {
            ENV_BASE_URL => self.base_url.as_str(),
            ENV_API_KEY => self.api_key.expose_secret(),
            ENV_API_LOGIN => self.api_login.as_str(),
            ENV_MERCHANT_ID => self.merchant_id.as_str(),
            ENV_ACCOUNT_ID => self.account_id.as_str(),
            ENV_SIGNATURE_ALGORITHM => self.signature_algorithm.as_str(),
            ENV_SIGNATURE_SECRET => self.signature_secret.expose_secret(),
            ENV_NOTIFY_URL => return self.notify_url.clone(),
            _ => return None,
        };
        Some(value.to_owned())
    }

    fn connect(self: Box<Self>) -> Result<Box<dyn Connector>, ProviderConfigError> {
        let verifier = Arc::new(PayuWebhookVerifier::new(&self)?);
        let provider = Arc::new(PayuProvider::new((*self).clone())?);
        Ok(Box::new(Parts::new(&*self, provider, verifier)))
    }
}
