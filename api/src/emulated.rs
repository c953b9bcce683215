//! The provider emulators (the `emulators` crate), started in process under `--sandbox` with
//! the keys and secrets of the adapter that will talk to each, and the sandbox provider on
//! its own (`payledger sandbox`).
//!
//! They are compiled in only with the `sandbox` feature (on by default). A production build
//! (`--no-default-features`) carries no emulator; there every function here is an error
//! naming the missing feature, so asking for the sandbox fails at startup, never later.

use futures::future::BoxFuture;

use crate::config::Settings;
use crate::startup::StartupError;

/// Stops an in-process emulator.
pub type StopEmulator = Box<dyn FnOnce() -> BoxFuture<'static, ()> + Send>;

/// An emulator running in process.
pub struct Started {
    /// Its base URL, as its provider's client takes it.
    pub url: String,
    pub stop: StopEmulator,
}

#[cfg(feature = "sandbox")]
pub use present::*;

#[cfg(not(feature = "sandbox"))]
pub use absent::*;

#[cfg(feature = "sandbox")]
mod present {
    use std::net::TcpListener;

    use commands::providers::maya::MayaConfig;
    use commands::providers::paymongo::PaymongoConfig;
    use commands::providers::payu::PayuConfig;
    use commands::providers::wompi::WompiConfig;
    use commands::webhooks::payu::SignatureAlgorithm;
    use emulators::maya::MayaSandboxConfig;
    use emulators::paymongo::PaymongoSandboxConfig;
    use emulators::payu::PayuSandboxConfig;
    use emulators::sandbox::SandboxConfig;
    use emulators::wompi::WompiSandboxConfig;
    use emulators::EmulatorHandle;

    use super::{Settings, Started, StartupError};

    /// The emulators are compiled in.
    pub fn available() -> Result<(), StartupError> {
        Ok(())
    }

    fn started(handle: EmulatorHandle) -> Started {
        Started {
            url: handle.base_url(),
            stop: Box::new(move || Box::pin(handle.stop())),
        }
    }

    fn local() -> std::io::Result<TcpListener> {
        TcpListener::bind("127.0.0.1:0")
    }

    fn sandbox_config(settings: &Settings, webhook_url: String) -> SandboxConfig {
        SandboxConfig {
            api_key: settings.sandbox.api_key.clone(),
            webhook_url,
            webhook_secret: settings.sandbox.webhook_secret.clone(),
            webhook_delay_ms: settings.sandbox.webhook_delay_ms,
        }
    }

    /// `webhook_base`: where this process receives webhooks (`http://127.0.0.1:8080`).
    pub async fn sandbox(settings: &Settings, webhook_base: &str) -> Result<Started, StartupError> {
        let config = sandbox_config(settings, format!("{webhook_base}/v1/webhooks/sandbox"));
        Ok(started(emulators::sandbox::start(local()?, config).await?))
    }

    pub async fn wompi(
        client: &WompiConfig,
        settings: &Settings,
        webhook_base: &str,
    ) -> Result<Started, StartupError> {
        let config = WompiSandboxConfig {
            public_key: client.public_key.clone(),
            private_key: client.private_key.clone(),
            events_secret: client.events_secret.clone(),
            integrity_secret: client.integrity_secret.clone(),
            webhook_url: format!("{webhook_base}/v1/webhooks/wompi"),
            webhook_delay_ms: settings.sandbox.webhook_delay_ms,
            deliver_webhooks: settings.sandbox.deliver_webhooks,
        };
        Ok(started(emulators::wompi::start(local()?, config).await?))
    }

    pub async fn payu(
        client: &PayuConfig,
        settings: &Settings,
        webhook_base: &str,
    ) -> Result<Started, StartupError> {
        let config = PayuSandboxConfig {
            api_key: client.api_key.clone(),
            api_login: client.api_login.clone(),
            merchant_id: client.merchant_id.clone(),
            account_id: client.account_id.clone(),
            signature_algorithm: match client.algorithm()? {
                SignatureAlgorithm::Md5 => emulators::payu::SignatureAlgorithm::Md5,
                SignatureAlgorithm::HmacSha256 => emulators::payu::SignatureAlgorithm::HmacSha256,
            },
            signature_secret: client.signature_secret.clone(),
            webhook_url: format!("{webhook_base}/v1/webhooks/payu"),
            webhook_delay_ms: settings.sandbox.webhook_delay_ms,
            deliver_webhooks: settings.sandbox.deliver_webhooks,
            efecty_expiry: emulators::payu::EFECTY_EXPIRY_DEFAULT,
        };
        Ok(started(emulators::payu::start(local()?, config).await?))
    }

    pub async fn maya(
        client: &MayaConfig,
        settings: &Settings,
        webhook_base: &str,
    ) -> Result<Started, StartupError> {
        let config = MayaSandboxConfig {
            public_key: client.public_key.clone(),
            secret_key: client.secret_key.clone(),
            webhook_url: format!("{webhook_base}/v1/webhooks/maya"),
            webhook_delay_ms: settings.sandbox.webhook_delay_ms,
            deliver_webhooks: settings.sandbox.deliver_webhooks,
        };
        Ok(started(emulators::maya::start(local()?, config).await?))
    }

    /// PayMongo's emulator, for the `gcash` provider.
    pub async fn paymongo(
        client: &PaymongoConfig,
        settings: &Settings,
        webhook_base: &str,
    ) -> Result<Started, StartupError> {
        let config = PaymongoSandboxConfig {
            secret_key: client.secret_key.clone(),
            public_key: client.public_key.clone(),
            webhook_secret: client.webhook_secret.clone(),
            webhook_url: format!("{webhook_base}/v1/webhooks/gcash"),
            webhook_delay_ms: settings.sandbox.webhook_delay_ms,
            deliver_webhooks: settings.sandbox.deliver_webhooks,
        };
        Ok(started(emulators::paymongo::start(local()?, config).await?))
    }

    /// `payledger sandbox`: the sandbox provider alone on `listen` until Ctrl-C.
    pub async fn serve_sandbox(
        settings: &Settings,
        listen: &str,
        webhook_url: String,
    ) -> Result<(), StartupError> {
        let handle = emulators::sandbox::start(
            TcpListener::bind(listen)?,
            sandbox_config(settings, webhook_url),
        )
        .await?;
        eprintln!("sandbox provider listening on {}", handle.addr());
        tokio::signal::ctrl_c().await?;
        handle.stop().await;
        Ok(())
    }
}

#[cfg(not(feature = "sandbox"))]
mod absent {
    use commands::providers::maya::MayaConfig;
    use commands::providers::paymongo::PaymongoConfig;
    use commands::providers::payu::PayuConfig;
    use commands::providers::wompi::WompiConfig;

    use super::{Settings, Started, StartupError};

    const NOT_BUILT: &str = "this payledger was built without the `sandbox` feature, so it \
        has no sandbox provider and no provider emulators; build it with the default features \
        for `serve --sandbox` and `payledger sandbox`";

    /// The emulators are not compiled in.
    pub fn available() -> Result<(), StartupError> {
        Err(NOT_BUILT.into())
    }

    pub async fn sandbox(_: &Settings, _: &str) -> Result<Started, StartupError> {
        Err(NOT_BUILT.into())
    }

    pub async fn wompi(_: &WompiConfig, _: &Settings, _: &str) -> Result<Started, StartupError> {
        Err(NOT_BUILT.into())
    }

    pub async fn payu(_: &PayuConfig, _: &Settings, _: &str) -> Result<Started, StartupError> {
        Err(NOT_BUILT.into())
    }

    pub async fn maya(_: &MayaConfig, _: &Settings, _: &str) -> Result<Started, StartupError> {
        Err(NOT_BUILT.into())
    }

    pub async fn paymongo(
        _: &PaymongoConfig,
        _: &Settings,
        _: &str,
    ) -> Result<Started, StartupError> {
        Err(NOT_BUILT.into())
    }

    pub async fn serve_sandbox(_: &Settings, _: &str, _: String) -> Result<(), StartupError> {
        Err(NOT_BUILT.into())
    }
}
