//! The providers payledger can talk to, by the name `PROVIDERS` and the events use, and how
//! each is built from its settings. Adding a provider is one folder and one line in
//! the `providers!` list of `lib.rs`.

use std::sync::Arc;

use domain::{Money, PaymentId};

use crate::{PaymentProvider, ProviderConfigError, WebhookVerifier};

/// Reads one setting by its variable name (`WOMPI_PRIVATE_KEY`); `None` when unset.
pub type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// A provider's configuration as read from its settings, before any client exists: what
/// `check-config` judges, and what an emulator needs to stand in for the provider.
pub trait ConnectorConfig: Send {
    /// Every problem that keeps this configuration from use in production (`true`) or in a
    /// test environment; each names the setting, never its value.
    fn problems(&self, production: bool) -> Vec<String>;

    /// The value in effect (defaults applied) of one of its settings, by variable name.
    fn setting(&self, var: &str) -> Option<String>;

    /// Builds the client and the webhook verifier.
    fn connect(self: Box<Self>) -> Result<Box<dyn Connector>, ProviderConfigError>;
}

/// One configured provider: everything the service needs from it.
pub trait Connector: Send + Sync {
    /// The name in `PROVIDERS` and in events (`"gcash"` for GCash through PayMongo).
    fn name(&self) -> &'static str;

    /// The client command services call.
    fn provider(&self) -> Arc<dyn PaymentProvider>;

    /// Authenticates and parses the provider's webhooks.
    fn verifier(&self) -> Arc<dyn WebhookVerifier>;

    /// What a checkout page may know about this provider.
    fn public_config(&self) -> PublicConfig;

    /// [`ConnectorConfig::problems`] of the configuration it was built from.
    fn problems(&self, production: bool) -> Vec<String>;

    /// What a front end needs to open the provider's own payment widget for a pending
    /// payment (public values only), for providers that have one.
    fn checkout_widget(&self, _payment: PaymentId, _amount: Money) -> Option<serde_json::Value> {
        None
    }
}

/// A provider's public settings (safe to hand to a browser).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct PublicConfig {
    pub public_key: Option<String>,
}

/// A connector assembled from its parts; what every provider's `connect` returns.
pub(crate) struct Parts {
    provider: Arc<dyn PaymentProvider>,
    verifier: Arc<dyn WebhookVerifier>,
    public: PublicConfig,
    /// `problems(false)` and `problems(true)` of the configuration, judged once.
    problems: [Vec<String>; 2],
    widget: Option<Widget>,
}

type Widget = Box<dyn Fn(PaymentId, Money) -> Option<serde_json::Value> + Send + Sync>;

impl Parts {
    pub(crate) fn new(
        config: &dyn ConnectorConfig,
        provider: Arc<dyn PaymentProvider>,
        verifier: Arc<dyn WebhookVerifier>,
    ) -> Self {
        debug_assert_eq!(provider.name(), verifier.provider());
        Parts {
            provider,
            verifier,
            public: PublicConfig::default(),
            problems: [config.problems(false), config.problems(true)],
            widget: None,
        }
    }

    pub(crate) fn public_key(mut self, key: Option<String>) -> Self {
        self.public.public_key = key;
        self
    }

    pub(crate) fn widget(mut self, widget: Widget) -> Self {
        self.widget = Some(widget);
        self
    }
}

impl Connector for Parts {
    fn name(&self) -> &'static str {
        self.provider.name()
    }

    fn provider(&self) -> Arc<dyn PaymentProvider> {
        self.provider.clone()
    }

    fn verifier(&self) -> Arc<dyn WebhookVerifier> {
        self.verifier.clone()
    }

    fn public_config(&self) -> PublicConfig {
        self.public.clone()
    }

    fn problems(&self, production: bool) -> Vec<String> {
        self.problems[usize::from(production)].clone()
    }

    fn checkout_widget(&self, payment: PaymentId, amount: Money) -> Option<serde_json::Value> {
        self.widget
            .as_ref()
            .and_then(|widget| widget(payment, amount))
    }
}

/// How a provider's configuration is read from its settings.
pub(crate) type Configure = fn(Lookup<'_>) -> Box<dyn ConnectorConfig>;

/// The names of every provider payledger knows.
pub fn known() -> impl Iterator<Item = &'static str> {
    crate::CONNECTORS.iter().map(|(name, _)| *name)
}

/// Reads the configuration of the provider called `name`; `None` for an unknown name.
pub fn configure(name: &str, lookup: Lookup<'_>) -> Option<Box<dyn ConnectorConfig>> {
    crate::CONNECTORS
        .iter()
        .find(|(known, _)| *known == name)
        .map(|(_, configure)| configure(lookup))
}

/// The configured connectors, in priority order.
#[derive(Default)]
pub struct Registry {
    connectors: Vec<Box<dyn Connector>>,
}

impl Registry {
    pub fn push(&mut self, connector: Box<dyn Connector>) {
        self.connectors.push(connector);
    }

    pub fn is_empty(&self) -> bool {
        self.connectors.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &dyn Connector> {
        self.connectors.iter().map(|c| c.as_ref())
    }

    pub fn get(&self, name: &str) -> Option<&dyn Connector> {
        self.iter().find(|c| c.name() == name)
    }

    /// The clients, in priority order (the router tries them in this order).
    pub fn providers(&self) -> Vec<Arc<dyn PaymentProvider>> {
        self.iter().map(|c| c.provider()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_known_provider_builds_from_its_test_defaults_under_its_own_name() {
        let unset = |_: &str| None;
        for name in known() {
            let config = configure(name, &unset).expect("known");
            let connector = config.connect().expect("test defaults connect");
            assert_eq!(connector.name(), name);
            assert_eq!(connector.provider().name(), name);
            assert_eq!(connector.verifier().provider(), name);
        }
        assert!(configure("stripe", &unset).is_none());
    }
}
