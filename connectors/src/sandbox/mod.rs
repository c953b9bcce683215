//! The bundled sandbox provider: a test processor reached over HTTP like any other, with
//! HMAC-signed webhooks. Refused in production by `check-config`.

pub mod client;
pub mod webhook;

use std::sync::Arc;

pub use client::*;
use secrecy::{ExposeSecret, SecretString};
pub use webhook::*;

use crate::registry::{Connector, ConnectorConfig, Lookup, Parts};
use crate::ProviderConfigError;

pub const NAME: &str = SandboxProvider::NAME;

pub const ENV_BASE_URL: &str = "SANDBOX_BASE_URL";
pub const ENV_API_KEY: &str = "SANDBOX_API_KEY";
pub const ENV_WEBHOOK_SECRET: &str = "SANDBOX_WEBHOOK_SECRET";
pub const ENV_TIMEOUT_MS: &str = "SANDBOX_TIMEOUT_MS";

/// Where a standalone `payledger sandbox` listens by default.
pub const DEFAULT_BASE_URL: &str = "http://127.0.0.1:8090";
pub const DEFAULT_API_KEY: &str = "sbx_test_api_key";
pub const DEFAULT_WEBHOOK_SECRET: &str = "sbx_test_webhook_secret_0123456789";
pub const DEFAULT_TIMEOUT_MS: u64 = 5_000;
/// Shortest webhook secret `check-config` accepts.
pub const WEBHOOK_SECRET_LEN_MIN: usize = 32;

/// The sandbox client's settings and the secret its webhooks are signed with.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    pub client: SandboxClientConfig,
    pub webhook_secret: SecretString,
}

impl SandboxConfig {
    /// Reads `SANDBOX_BASE_URL`, `SANDBOX_API_KEY`, `SANDBOX_WEBHOOK_SECRET` and
    /// `SANDBOX_TIMEOUT_MS`; unset ones (and an unreadable timeout) take the defaults above.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        SandboxConfig {
            client: SandboxClientConfig {
                base_url: lookup(ENV_BASE_URL).unwrap_or_else(|| DEFAULT_BASE_URL.to_owned()),
                api_key: lookup(ENV_API_KEY)
                    .unwrap_or_else(|| DEFAULT_API_KEY.to_owned())
                    .into(),
                timeout_ms: lookup(ENV_TIMEOUT_MS)
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(DEFAULT_TIMEOUT_MS),
            },
            webhook_secret: lookup(ENV_WEBHOOK_SECRET)
                .unwrap_or_else(|| DEFAULT_WEBHOOK_SECRET.to_owned())
                .into(),
        }
    }
}

pub fn configure(lookup: Lookup<'_>) -> Box<dyn ConnectorConfig> {
    Box::new(SandboxConfig::from_lookup(lookup))
}

impl ConnectorConfig for SandboxConfig {
    fn problems(&self, production: bool) -> Vec<String> {
        if production {
            return vec!["PROVIDERS names `sandbox`, a test provider, in production".to_owned()];
        }
        let mut problems = Vec::new();
        if self.webhook_secret.expose_secret().len() < WEBHOOK_SECRET_LEN_MIN {
            problems.push(format!(
                "{ENV_WEBHOOK_SECRET} is shorter than {WEBHOOK_SECRET_LEN_MIN} characters"
            ));
        }
        if self.client.api_key.expose_secret().is_empty() {
            problems.push(format!("{ENV_API_KEY} is empty"));
        }
        problems
    }

    fn setting(&self, var: &str) -> Option<String> {
        match var {
            ENV_BASE_URL => Some(self.client.base_url.clone()),
            ENV_API_KEY => Some(self.client.api_key.expose_secret().to_owned()),
            ENV_WEBHOOK_SECRET => Some(self.webhook_secret.expose_secret().to_owned()),
            ENV_TIMEOUT_MS => Some(self.client.timeout_ms.to_string()),
            _ => None,
        }
    }

    fn connect(self: Box<Self>) -> Result<Box<dyn Connector>, ProviderConfigError> {
        let verifier = Arc::new(SandboxWebhookVerifier::new(
            self.webhook_secret.expose_secret(),
        ));
        let provider = Arc::new(SandboxProvider::new(self.client.clone())?);
        Ok(Box::new(Parts::new(&*self, provider, verifier)))
    }
}
