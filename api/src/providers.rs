//! Builds the configured connectors, in priority order, from the settings; under `--sandbox`
//! also starts each provider's emulator in process and points its connector at it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use commands::breaker::BreakerConfig;
use commands::fees::FeeSchedule;
use commands::router::Router;
use connectors::registry::{self, Registry};

use crate::config::Settings;
use crate::emulated::{self, StopEmulator};
use crate::startup::StartupError;

/// The fee schedule shipped with the binary, used when `FEES_FILE` is unset.
const BUNDLED_FEES: &str = include_str!("../../config/fees.json");

pub struct Providers {
    pub connectors: Arc<Registry>,
    pub router: Arc<Router>,
    /// Each in-process emulator's stop, by provider.
    pub emulators: BTreeMap<&'static str, StopEmulator>,
    /// Base URL of each in-process emulator, by provider (tests drive customer actions there).
    pub emulator_urls: BTreeMap<&'static str, String>,
}

pub fn fee_schedule(settings: &Settings) -> Result<FeeSchedule, StartupError> {
    let text = match &settings.routing.fees_file {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read FEES_FILE {path}: {e}"))?,
        None => BUNDLED_FEES.to_owned(),
    };
    Ok(FeeSchedule::from_json(&text)?)
}

/// `webhook_base`: where this process receives webhooks (`http://127.0.0.1:8080`).
pub async fn build(settings: &Settings, webhook_base: &str) -> Result<Providers, StartupError> {
    if settings.sandbox.in_process {
        emulated::available()?;
    }
    let mut connectors = Registry::default();
    let mut emulators = BTreeMap::new();
    let mut emulator_urls = BTreeMap::new();
    let lookup = |var: &str| settings.connector_setting(var);
    for name in &settings.routing.providers {
        let unknown = || format!("unknown provider `{name}` in PROVIDERS");
        let mut config = registry::configure(name, &lookup).ok_or_else(unknown)?;
        let mut emulator_url = None;
        if settings.sandbox.in_process {
            let webhook_url = format!("{webhook_base}/v1/webhooks/{name}");
            let emulator = emulated::start(name, &*config, settings, webhook_url).await?;
            let overrides = emulator.overrides;
            let pointed = |var: &str| overrides.get(var).cloned().or_else(|| lookup(var));
            config = registry::configure(name, &pointed).ok_or_else(unknown)?;
            emulator_url = Some((emulator.url, emulator.stop));
        }
        let connector = config.connect()?;
        if let Some((url, stop)) = emulator_url {
            emulator_urls.insert(connector.name(), url);
            emulators.insert(connector.name(), stop);
        }
        connectors.push(connector);
    }
    if connectors.is_empty() {
        return Err("PROVIDERS names no provider".into());
    }
    let router = Router::new(
        connectors.providers(),
        BreakerConfig {
            failures_to_open: settings.routing.breaker_failures_to_open.max(1),
            cool_down: Duration::from_millis(settings.routing.breaker_cool_down_ms),
        },
    );
    Ok(Providers {
        connectors: Arc::new(connectors),
        router: Arc::new(router),
        emulators,
        emulator_urls,
    })
}
