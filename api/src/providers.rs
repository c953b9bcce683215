//! Builds the configured providers, in priority order, with their webhook verifiers; under
//! `--sandbox` also starts each provider's emulator in process (see [`crate::emulated`]) and
//! points the adapter at it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use commands::breaker::BreakerConfig;
use commands::fees::FeeSchedule;
use commands::providers::maya::{MayaConfig, MayaProvider};
use commands::providers::paymongo::{PaymongoConfig, PaymongoProvider};
use commands::providers::payu::{PayuConfig, PayuProvider};
use commands::providers::wompi::{WompiConfig, WompiProvider};
use commands::providers::{PaymentProvider, SandboxClientConfig, SandboxProvider};
use commands::router::Router;
use commands::webhooks::maya::MayaWebhookVerifier;
use commands::webhooks::paymongo::PaymongoWebhookVerifier;
use commands::webhooks::payu::PayuWebhookVerifier;
use commands::webhooks::sandbox::SandboxWebhookVerifier;
use commands::webhooks::wompi::WompiWebhookVerifier;

use crate::config::Settings;
use crate::emulated;
pub use crate::emulated::StopEmulator;
use crate::routes::catalog::PublicProviderConfig;
use crate::routes::webhooks::WebhookVerifiers;
use crate::startup::StartupError;

/// The fee schedule shipped with the binary, used when `FEES_FILE` is unset.
const BUNDLED_FEES: &str = include_str!("../../config/fees.json");

/// Wompi's widget needs the concrete adapter (its integrity signature).
#[derive(Clone)]
pub struct WompiCheckout(pub Option<Arc<WompiProvider>>);

pub struct Providers {
    pub wompi: WompiCheckout,
    pub router: Arc<Router>,
    pub verifiers: WebhookVerifiers,
    pub emulators: Vec<StopEmulator>,
    /// Base URL of each in-process emulator, by provider (tests drive customer actions there).
    pub emulator_urls: BTreeMap<&'static str, String>,
    pub public: BTreeMap<&'static str, PublicProviderConfig>,
}

pub fn fee_schedule(settings: &Settings) -> Result<FeeSchedule, StartupError> {
    let text = match &settings.routing.fees_file {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read FEES_FILE {path}: {e}"))?,
        None => BUNDLED_FEES.to_owned(),
    };
    Ok(FeeSchedule::from_json(&text)?)
}

/// Where an adapter reaches its in-process emulator at `url`: directly, or through
/// `SandboxSettings::emulator_gateway` as `<gateway>/<provider><path of url>`.
fn via_gateway(settings: &Settings, provider: &str, url: &str) -> String {
    let Some(gateway) = &settings.sandbox.emulator_gateway else {
        return url.to_owned();
    };
    let path = url
        .strip_prefix("http://")
        .and_then(|rest| rest.find('/').map(|i| &rest[i..]))
        .unwrap_or("");
    format!("{}/{provider}{path}", gateway.trim_end_matches('/'))
}

/// `webhook_base`: where this process receives webhooks (`http://127.0.0.1:8080`).
pub async fn build(settings: &Settings, webhook_base: &str) -> Result<Providers, StartupError> {
    if settings.sandbox.in_process {
        emulated::available()?;
    }
    let mut verifiers = WebhookVerifiers::default();
    let mut emulators: Vec<StopEmulator> = Vec::new();
    let mut providers: Vec<Arc<dyn PaymentProvider>> = Vec::new();
    let mut emulator_urls = BTreeMap::new();
    let mut public = BTreeMap::new();
    let mut wompi = None;
    for name in &settings.routing.providers {
        match name.as_str() {
            "sandbox" => {
                let base_url = if settings.sandbox.in_process {
                    let started = emulated::sandbox(settings, webhook_base).await?;
                    emulators.push(started.stop);
                    emulator_urls.insert("sandbox", started.url.clone());
                    via_gateway(settings, "sandbox", &started.url)
                } else {
                    settings.sandbox.base_url.clone()
                };
                providers.push(Arc::new(SandboxProvider::new(SandboxClientConfig {
                    base_url,
                    api_key: settings.sandbox.api_key.clone(),
                    timeout_ms: settings.sandbox.timeout_ms,
                })?));
                verifiers.add(Arc::new(SandboxWebhookVerifier::new(
                    &settings.sandbox.webhook_secret,
                )));
                public.insert("sandbox", PublicProviderConfig::default());
            }
            "wompi" => {
                let mut config = WompiConfig::from_env();
                if settings.sandbox.in_process {
                    let started = emulated::wompi(&config, settings, webhook_base).await?;
                    config.base_url = via_gateway(settings, "wompi", &started.url);
                    emulator_urls.insert("wompi", started.url);
                    emulators.push(started.stop);
                }
                verifiers.add(Arc::new(WompiWebhookVerifier::from_config(&config)));
                public.insert(
                    "wompi",
                    PublicProviderConfig {
                        public_key: Some(config.public_key.clone()),
                        problems: config.problems(false),
                    },
                );
                let provider = Arc::new(WompiProvider::new(config)?);
                wompi = Some(provider.clone());
                providers.push(provider);
            }
            "payu" => {
                let mut config = PayuConfig::from_env();
                if settings.sandbox.in_process {
                    let started = emulated::payu(&config, settings, webhook_base).await?;
                    config.base_url = via_gateway(settings, "payu", &started.url);
                    emulator_urls.insert("payu", started.url);
                    emulators.push(started.stop);
                }
                verifiers.add(Arc::new(PayuWebhookVerifier::new(&config)?));
                public.insert(
                    "payu",
                    PublicProviderConfig {
                        public_key: None,
                        problems: config.problems(false),
                    },
                );
                providers.push(Arc::new(PayuProvider::new(config)?));
            }
            "maya" => {
                let mut config = MayaConfig::from_env();
                if settings.sandbox.in_process {
                    let started = emulated::maya(&config, settings, webhook_base).await?;
                    config.base_url = via_gateway(settings, "maya", &started.url);
                    if std::env::var("MAYA_WEBHOOK_SOURCES").is_err() {
                        // The emulator posts from this machine.
                        config.webhook_sources = "127.0.0.1/32,::1/128".to_owned();
                    }
                    emulator_urls.insert("maya", started.url);
                    emulators.push(started.stop);
                }
                verifiers.add(Arc::new(MayaWebhookVerifier::new(&config)?));
                public.insert(
                    "maya",
                    PublicProviderConfig {
                        public_key: Some(config.public_key.clone()),
                        problems: config.problems(false),
                    },
                );
                providers.push(Arc::new(MayaProvider::new(config)?));
            }
            "gcash" => {
                let mut config = PaymongoConfig::from_env();
                if settings.sandbox.in_process {
                    let started = emulated::paymongo(&config, settings, webhook_base).await?;
                    config.base_url = via_gateway(settings, "gcash", &started.url);
                    emulator_urls.insert("gcash", started.url);
                    emulators.push(started.stop);
                }
                verifiers.add(Arc::new(PaymongoWebhookVerifier::new(&config)?));
                public.insert(
                    "gcash",
                    PublicProviderConfig {
                        public_key: config.public_key.clone(),
                        problems: config.problems(false),
                    },
                );
                providers.push(Arc::new(PaymongoProvider::new(config)?));
            }
            other => return Err(format!("unknown provider `{other}` in PROVIDERS").into()),
        }
    }
    if providers.is_empty() {
        return Err("PROVIDERS names no provider".into());
    }
    let router = Router::new(
        providers,
        BreakerConfig {
            failures_to_open: settings.routing.breaker_failures_to_open.max(1),
            cool_down: Duration::from_millis(settings.routing.breaker_cool_down_ms),
        },
    );
    Ok(Providers {
        wompi: WompiCheckout(wompi),
        router: Arc::new(router),
        verifiers,
        emulators,
        emulator_urls,
        public,
    })
}
