//! The provider emulators (the `emulators` crate), started in process under `--sandbox` with
//! the keys and secrets of the connector that will talk to each, and the sandbox provider on
//! its own (`payledger sandbox`).
//!
//! They are compiled in only with the `sandbox` feature (on by default). A production build
//! (`--no-default-features`) carries no emulator; there every function here is an error
//! naming the missing feature, so asking for the sandbox fails at startup, never later.

use std::collections::BTreeMap;

use futures::future::BoxFuture;

use crate::config::Settings;
use crate::startup::StartupError;

/// Stops an in-process emulator.
pub type StopEmulator = Box<dyn FnOnce() -> BoxFuture<'static, ()> + Send>;

/// A running emulator and the settings that point its connector at it.
pub struct Emulated {
    /// Where the emulator listens (tests drive customer actions there).
    pub url: String,
    /// Settings that replace the connector's own: its base URL, and whatever else the
    /// emulator needs the connector to believe.
    pub overrides: BTreeMap<&'static str, String>,
    pub stop: StopEmulator,
}

#[cfg(feature = "sandbox")]
pub use present::*;

#[cfg(not(feature = "sandbox"))]
pub use absent::*;

#[cfg(feature = "sandbox")]
mod present {
    use std::collections::BTreeMap;
    use std::net::TcpListener;

    use connectors::registry::ConnectorConfig;
    use connectors::{ebanx, maya, paymongo, payu, sandbox, wompi};
    use emulators::ebanx::EbanxSandboxConfig;
    use emulators::maya::MayaSandboxConfig;
    use emulators::paymongo::PaymongoSandboxConfig;
    use emulators::payu::{PayuSandboxConfig, SignatureAlgorithm};
    use emulators::sandbox::SandboxConfig;
    use emulators::wompi::WompiSandboxConfig;
    use emulators::EmulatorHandle;
    use secrecy::SecretString;

    use super::{Emulated, Settings, StartupError};

    /// The emulators are compiled in.
    pub fn available() -> Result<(), StartupError> {
        Ok(())
    }

    /// Starts the emulator of provider `name`, playing it with the keys of `config` (the
    /// connector's, defaults applied) and posting its webhooks to `webhook_url`.
    pub async fn start(
        name: &str,
        config: &dyn ConnectorConfig,
        settings: &Settings,
        webhook_url: String,
    ) -> Result<Emulated, StartupError> {
        let get = |var: &str| config.setting(var).unwrap_or_default();
        let secret = |var: &str| SecretString::from(get(var));
        let delay_ms = settings.sandbox.webhook_delay_ms;
        let deliver = settings.sandbox.deliver_webhooks;
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let mut overrides = BTreeMap::new();
        let (handle, base_url_var) = match name {
            sandbox::NAME => {
                let processor = sandbox_processor()?;
                let config = SandboxConfig {
                    api_key: secret(sandbox::ENV_API_KEY),
                    webhook_url,
                    webhook_secret: secret(sandbox::ENV_WEBHOOK_SECRET),
                    webhook_delay_ms: delay_ms,
                    processor,
                };
                let handle = emulators::sandbox::start(listener, config).await?;
                (handle, sandbox::ENV_BASE_URL)
            }
            wompi::NAME => {
                let config = WompiSandboxConfig {
                    public_key: get(wompi::ENV_PUBLIC_KEY),
                    private_key: secret(wompi::ENV_PRIVATE_KEY),
                    events_secret: secret(wompi::ENV_EVENTS_SECRET),
                    integrity_secret: secret(wompi::ENV_INTEGRITY_SECRET),
                    webhook_url,
                    webhook_delay_ms: delay_ms,
                    deliver_webhooks: deliver,
                };
                let handle = emulators::wompi::start(listener, config).await?;
                (handle, wompi::ENV_BASE_URL)
            }
            payu::NAME => {
                let signature_algorithm = match get(payu::ENV_SIGNATURE_ALGORITHM).as_str() {
                    "MD5" => SignatureAlgorithm::Md5,
                    "HMAC_SHA256" => SignatureAlgorithm::HmacSha256,
                    other => return Err(format!("PayU signature algorithm `{other}`").into()),
                };
                let config = PayuSandboxConfig {
                    api_key: secret(payu::ENV_API_KEY),
                    api_login: get(payu::ENV_API_LOGIN),
                    merchant_id: get(payu::ENV_MERCHANT_ID),
                    account_id: get(payu::ENV_ACCOUNT_ID),
                    signature_algorithm,
                    signature_secret: secret(payu::ENV_SIGNATURE_SECRET),
                    webhook_url,
                    webhook_delay_ms: delay_ms,
                    deliver_webhooks: deliver,
                    efecty_expiry: emulators::payu::EFECTY_EXPIRY_DEFAULT,
                };
                let handle = emulators::payu::start(listener, config).await?;
                (handle, payu::ENV_BASE_URL)
            }
            maya::NAME => {
                let config = MayaSandboxConfig {
                    public_key: get(maya::ENV_PUBLIC_KEY),
                    secret_key: secret(maya::ENV_SECRET_KEY),
                    webhook_url,
                    webhook_delay_ms: delay_ms,
                    deliver_webhooks: deliver,
                };
                let handle = emulators::maya::start(listener, config).await?;
                if std::env::var(maya::ENV_WEBHOOK_SOURCES).is_err() {
                    // The emulator posts from this machine.
                    overrides.insert(maya::ENV_WEBHOOK_SOURCES, "127.0.0.1/32,::1/128".to_owned());
                }
                (handle, maya::ENV_BASE_URL)
            }
            paymongo::NAME => {
                let config = PaymongoSandboxConfig {
                    secret_key: secret(paymongo::ENV_SECRET_KEY),
                    public_key: config.setting(paymongo::ENV_PUBLIC_KEY),
                    webhook_secret: secret(paymongo::ENV_WEBHOOK_SECRET),
                    webhook_url,
                    webhook_delay_ms: delay_ms,
                    deliver_webhooks: deliver,
                };
                let handle = emulators::paymongo::start(listener, config).await?;
                (handle, paymongo::ENV_BASE_URL)
            }
            ebanx::NAME => {
                let config = EbanxSandboxConfig {
                    integration_key: secret(ebanx::ENV_INTEGRATION_KEY),
                    webhook_url,
                    webhook_delay_ms: delay_ms,
                    deliver_webhooks: deliver,
                };
                let handle = emulators::ebanx::start(listener, config).await?;
                (handle, ebanx::ENV_BASE_URL)
            }
            other => return Err(format!("no emulator for provider `{other}`").into()),
        };
        let url = handle.base_url();
        overrides.insert(base_url_var, via_gateway(settings, name, &url));
        Ok(Emulated {
            url,
            overrides,
            stop: stopper(handle),
        })
    }

    fn stopper(handle: EmulatorHandle) -> super::StopEmulator {
        Box::new(move || Box::pin(handle.stop()))
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

    /// How the sandbox processes payments by card BIN (`SANDBOX_SUCCESS_RATE`, `SANDBOX_SEED`,
    /// `SANDBOX_PROCESSING_DELAY_MS`).
    fn sandbox_processor() -> Result<emulators::sandbox::Processor, StartupError> {
        emulators::sandbox::Processor::from_lookup(|name| std::env::var(name).ok())
            .map_err(StartupError::from)
    }

    /// `payledger sandbox`: the sandbox provider alone on `listen` until Ctrl-C.
    pub async fn serve_sandbox(
        settings: &Settings,
        listen: &str,
        webhook_url: String,
    ) -> Result<(), StartupError> {
        let processor = sandbox_processor()?;
        let config = SandboxConfig {
            api_key: settings.sandbox.api_key.clone().into(),
            webhook_url,
            webhook_secret: settings.sandbox.webhook_secret.clone().into(),
            webhook_delay_ms: settings.sandbox.webhook_delay_ms,
            processor,
        };
        let handle = emulators::sandbox::start(TcpListener::bind(listen)?, config).await?;
        eprintln!("sandbox provider listening on {}", handle.addr());
        tokio::signal::ctrl_c().await?;
        handle.stop().await;
        Ok(())
    }
}

#[cfg(not(feature = "sandbox"))]
mod absent {
    use connectors::registry::ConnectorConfig;

    use super::{Emulated, Settings, StartupError};

    const NOT_BUILT: &str = "this payledger was built without the `sandbox` feature, so it \
        has no sandbox provider and no provider emulators; build it with the default features \
        for `serve --sandbox` and `payledger sandbox`";

    /// The emulators are not compiled in.
    pub fn available() -> Result<(), StartupError> {
        Err(NOT_BUILT.into())
    }

    pub async fn start(
        _: &str,
        _: &dyn ConnectorConfig,
        _: &Settings,
        _: String,
    ) -> Result<Emulated, StartupError> {
        Err(NOT_BUILT.into())
    }

    pub async fn serve_sandbox(_: &Settings, _: &str, _: String) -> Result<(), StartupError> {
        Err(NOT_BUILT.into())
    }
}
