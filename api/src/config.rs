//! Configuration from the environment (12-factor), with defaults that match `make services`.

use std::env;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ServeRole {
    /// API, relay and projectors in one process.
    All,
    Api,
    Relay,
    Projector,
}

#[derive(Clone)]
pub struct SandboxSettings {
    /// Run the sandbox provider inside this process (`serve --sandbox`).
    pub in_process: bool,
    /// Where a standalone sandbox listens (ignored when in process).
    pub base_url: String,
    pub api_key: String,
    pub webhook_secret: String,
    pub webhook_delay_ms: u64,
    pub timeout_ms: u64,
}

#[derive(Clone)]
pub struct Settings {
    pub database_url: String,
    pub amqp_url: String,
    /// Namespace of the RabbitMQ exchange and queues (`payledger` -> `payledger.events`).
    pub amqp_prefix: String,
    pub listen_addr: String,
    pub role: ServeRole,
    pub db_pool_max: u32,
    pub sandbox: SandboxSettings,
}

impl std::fmt::Debug for Settings {
    /// Secrets and credentials stay out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("listen_addr", &self.listen_addr)
            .field("amqp_prefix", &self.amqp_prefix)
            .field("role", &self.role)
            .field("db_pool_max", &self.db_pool_max)
            .field("sandbox_in_process", &self.sandbox.in_process)
            .finish_non_exhaustive()
    }
}

fn var(name: &str, default: &str) -> String {
    env::var(name).unwrap_or_else(|_| default.to_owned())
}

fn number(name: &str, default: u64) -> u64 {
    env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:55432/payledger";
pub const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:55672/%2f";

impl Settings {
    pub fn from_env() -> Settings {
        Settings {
            database_url: var("DATABASE_URL", DEFAULT_DATABASE_URL),
            amqp_url: var("AMQP_URL", DEFAULT_AMQP_URL),
            amqp_prefix: var("AMQP_PREFIX", domain::published::DEFAULT_AMQP_PREFIX),
            listen_addr: var("LISTEN_ADDR", "127.0.0.1:8080"),
            role: ServeRole::All,
            db_pool_max: number("DATABASE_POOL_MAX", 16) as u32,
            sandbox: SandboxSettings {
                in_process: false,
                base_url: var("SANDBOX_BASE_URL", "http://127.0.0.1:8090"),
                api_key: var("SANDBOX_API_KEY", "sbx_test_api_key"),
                webhook_secret: var(
                    "SANDBOX_WEBHOOK_SECRET",
                    "sbx_test_webhook_secret_0123456789",
                ),
                webhook_delay_ms: number("SANDBOX_WEBHOOK_DELAY_MS", 20),
                timeout_ms: number("SANDBOX_TIMEOUT_MS", 5_000),
            },
        }
    }
}
