//! `--sandbox`: each configured provider's emulator runs in this process, and the connector
//! is pointed at it through the settings the emulator hands back.

use std::collections::BTreeMap;
use std::net::TcpListener;

use commands::sandbox::maya::{self as maya_sandbox, MayaSandboxConfig};
use commands::sandbox::paymongo::{self as paymongo_sandbox, PaymongoSandboxConfig};
use commands::sandbox::payu::{self as payu_sandbox, PayuSandboxConfig};
use commands::sandbox::wompi::{self as wompi_sandbox, WompiSandboxConfig};
use commands::sandbox::{self, SandboxConfig};
use connectors::registry::ConnectorConfig;
use connectors::{maya, paymongo, payu, wompi};
use futures::future::BoxFuture;

use crate::config::Settings;
use crate::startup::StartupError;

/// Stops an in-process emulator.
pub type StopEmulator = Box<dyn FnOnce() -> BoxFuture<'static, ()> + Send>;

/// A running emulator and the settings that point its connector at it.
pub struct Emulated {
    /// Where the emulator listens (tests drive customer actions there).
    pub url: String,
    /// Settings that replace the connector's own (its base URL, at least).
    pub overrides: BTreeMap<&'static str, String>,
    pub stop: StopEmulator,
}

/// Starts the emulator of the provider `config` belongs to, playing it with that
/// configuration's keys and posting its webhooks to `webhook_url`.
pub async fn start(
    name: &str,
    config: &dyn ConnectorConfig,
    settings: &Settings,
    webhook_url: String,
) -> Result<Emulated, StartupError> {
    let lookup = |var: &str| config.setting(var);
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let mut overrides = BTreeMap::new();
    let (url, stop, base_url_var): (String, StopEmulator, &'static str) = match name {
        connectors::sandbox::NAME => {
            let secret = lookup(connectors::sandbox::ENV_WEBHOOK_SECRET).unwrap_or_default();
            let handle = sandbox::start(
                listener,
                SandboxConfig {
                    api_key: lookup(connectors::sandbox::ENV_API_KEY).unwrap_or_default(),
                    webhook_url,
                    webhook_secret: secret,
                    webhook_delay_ms: settings.sandbox.webhook_delay_ms,
                },
            )
            .await?;
            let url = format!("http://{}", handle.addr());
            (
                url,
                Box::new(move || Box::pin(handle.stop())),
                connectors::sandbox::ENV_BASE_URL,
            )
        }
        wompi::NAME => {
            let mut emulated = WompiSandboxConfig::for_client(
                &wompi::WompiConfig::from_lookup(lookup),
                webhook_url,
            );
            emulated.deliver_webhooks = settings.sandbox.deliver_webhooks;
            emulated.webhook_delay_ms = settings.sandbox.webhook_delay_ms;
            let handle = wompi_sandbox::start(listener, emulated).await?;
            (
                handle.base_url(),
                Box::new(move || Box::pin(handle.stop())),
                wompi::ENV_BASE_URL,
            )
        }
        payu::NAME => {
            let mut emulated = PayuSandboxConfig::from_provider_config(
                &payu::PayuConfig::from_lookup(lookup),
                webhook_url,
            )?;
            emulated.deliver_webhooks = settings.sandbox.deliver_webhooks;
            emulated.webhook_delay_ms = settings.sandbox.webhook_delay_ms;
            let handle = payu_sandbox::start(listener, emulated).await?;
            (
                handle.base_url(),
                Box::new(move || Box::pin(handle.stop())),
                payu::ENV_BASE_URL,
            )
        }
        maya::NAME => {
            let mut emulated =
                MayaSandboxConfig::for_client(&maya::MayaConfig::from_lookup(lookup), webhook_url);
            emulated.deliver_webhooks = settings.sandbox.deliver_webhooks;
            emulated.webhook_delay_ms = settings.sandbox.webhook_delay_ms;
            let handle = maya_sandbox::start(listener, emulated).await?;
            if std::env::var(maya::ENV_WEBHOOK_SOURCES).is_err() {
                // The emulator posts from this machine.
                overrides.insert(maya::ENV_WEBHOOK_SOURCES, "127.0.0.1/32,::1/128".to_owned());
            }
            (
                handle.base_url(),
                Box::new(move || Box::pin(handle.stop())),
                maya::ENV_BASE_URL,
            )
        }
        paymongo::NAME => {
            let mut emulated = PaymongoSandboxConfig::for_client(
                &paymongo::PaymongoConfig::from_lookup(lookup),
                webhook_url,
            );
            emulated.deliver_webhooks = settings.sandbox.deliver_webhooks;
            emulated.webhook_delay_ms = settings.sandbox.webhook_delay_ms;
            let handle = paymongo_sandbox::start(listener, emulated).await?;
            (
                handle.base_url(),
                Box::new(move || Box::pin(handle.stop())),
                paymongo::ENV_BASE_URL,
            )
        }
        other => return Err(format!("no emulator for provider `{other}`").into()),
    };
    overrides.insert(base_url_var, via_gateway(settings, name, &url));
    Ok(Emulated {
        url,
        overrides,
        stop,
    })
}

/// Where a connector reaches its in-process emulator at `url`: directly, or through
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
