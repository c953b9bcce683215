//! Configuration from the environment (12-factor), with defaults that match `make services`.

use std::env;

use connectors::sandbox;
use projections::topology::QueueType;

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
    /// `false`: the in-process emulators drop every webhook (lost-webhook drills; sync and
    /// the reconciler must then catch up).
    pub deliver_webhooks: bool,
    /// Adapters reach their in-process emulators through this HTTP gateway
    /// (`<gateway>/<provider>/...`) instead of directly: where fault drills put a proxy that
    /// loses, delays or cuts answers (`SANDBOX_EMULATOR_GATEWAY`).
    pub emulator_gateway: Option<String>,
}

#[derive(Debug, Clone)]
pub struct RoutingSettings {
    /// Provider names in priority order (`PROVIDERS=wompi,payu,sandbox`).
    pub providers: Vec<String>,
    pub provider_budget_ms: u64,
    pub provider_attempt_timeout_ms: u64,
    pub breaker_failures_to_open: u32,
    pub breaker_cool_down_ms: u64,
    /// A fee schedule file; unset: the schedule bundled with the binary.
    pub fees_file: Option<String>,
    /// Payments pending longer than this are synced by the reconciler.
    pub reconcile_after_ms: u64,
    pub reconcile_interval_ms: u64,
    /// An intent without an outcome this long is flagged `PaymentNeedsReview`.
    pub reconcile_review_after_ms: u64,
}

#[derive(Clone)]
pub struct Settings {
    /// The primary: commands, the relay and the projectors write here.
    pub database_url: String,
    /// A streaming replica for readers that can be a moment behind (reports, the audit
    /// routes, `audit verify`); unset: they read the primary (`DATABASE_READ_URL`).
    pub database_read_url: Option<String>,
    /// One node, or every node of a cluster separated by commas.
    pub amqp_url: String,
    pub amqp_queue_type: QueueType,
    /// Namespace of the RabbitMQ exchange and queues (`payledger` -> `payledger.events`).
    pub amqp_prefix: String,
    pub listen_addr: String,
    pub role: ServeRole,
    /// The projections a projector process runs (`serve --projection`; all by default).
    pub projection: String,
    pub db_pool_max: u32,
    /// Threads serving HTTP (`HTTP_WORKERS`, 1..=64).
    pub http_workers: usize,
    /// Load balancers whose `X-Forwarded-For` names the client (`TRUSTED_PROXIES`: IPs and
    /// CIDR ranges; empty: none, the TCP peer is the client).
    pub trusted_proxies: String,
    /// The tables' owner, for migrations (`DATABASE_OWNER_URL`); unset: `database_url`.
    pub database_owner_url: Option<String>,
    /// What create fingerprints are keyed with (`FINGERPRINT_SECRET`, 32 bytes at least;
    /// unset: a test secret that production refuses).
    pub fingerprint_secret: String,
    /// `PAYLEDGER_ENV=production`: test keys and test credentials are refused.
    pub production: bool,
    /// Tokens from an auth service beside API keys (`JWT_*`); `None`: API keys only.
    pub jwt: Option<crate::jwt::JwtSettings>,
    /// Per key and per client address, by route class (`RATE_LIMIT_*`).
    pub rate_limits: crate::rate_limit::RateLimitSettings,
    pub sandbox: SandboxSettings,
    pub routing: RoutingSettings,
    pub merchant_webhooks: MerchantWebhookSettings,
}

/// How merchant webhooks are retried (`MERCHANT_WEBHOOK_*`).
#[derive(Debug, Clone)]
pub struct MerchantWebhookSettings {
    /// The wait after a first failed delivery; it doubles per failure.
    pub backoff_base_ms: u64,
    pub backoff_max_ms: u64,
    /// How long a delivery and an endpoint may keep failing before being given up and
    /// disabled (default three days).
    pub horizon_s: u64,
    pub timeout_ms: u64,
    /// Loopback, private and link-local targets, and plain http: allowed outside production.
    pub allow_private_targets: bool,
}

impl std::fmt::Debug for Settings {
    /// Secrets and credentials stay out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("listen_addr", &self.listen_addr)
            .field("amqp_prefix", &self.amqp_prefix)
            .field("role", &self.role)
            .field("projection", &self.projection)
            .field("amqp_queue_type", &self.amqp_queue_type)
            .field("read_replica", &self.database_read_url.is_some())
            .field("db_pool_max", &self.db_pool_max)
            .field("http_workers", &self.http_workers)
            .field("trusted_proxies", &self.trusted_proxies)
            .field("production", &self.production)
            .field("rate_limits", &self.rate_limits)
            .field("jwt", &self.jwt)
            .field("sandbox_in_process", &self.sandbox.in_process)
            .field("routing", &self.routing)
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

/// At most this many HTTP worker threads, whatever is asked.
pub const HTTP_WORKERS_MAX: usize = 64;

/// HTTP worker threads: as asked (`value`, clamped to 1..=HTTP_WORKERS_MAX), else one per
/// core but one. The relay and the projectors run on their own runtime beside the HTTP
/// workers; on two cores one HTTP worker served 3-14 % more commands a second than two (four
/// alternated pairs, 2026-12-04; bench/HISTORY.md): fewer threads to wake for the same work.
pub fn http_workers(value: Option<&str>, cores: usize) -> usize {
    value
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or_else(|| cores.saturating_sub(1))
        .clamp(1, HTTP_WORKERS_MAX)
}

pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:55432/payledger";
pub const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:55672/%2f";

impl Settings {
    /// Where readers that can be a moment behind connect: the replica when there is one.
    pub fn read_database_url(&self) -> &str {
        self.database_read_url
            .as_deref()
            .unwrap_or(&self.database_url)
    }

    /// A provider connector's setting by variable name: the sandbox's from these settings
    /// (tests set them in code), every other from the environment. A value that is not
    /// UTF-8 reads as empty, so `check-config` reports it.
    pub fn connector_setting(&self, var: &str) -> Option<String> {
        match var {
            sandbox::ENV_BASE_URL => Some(self.sandbox.base_url.clone()),
            sandbox::ENV_API_KEY => Some(self.sandbox.api_key.clone()),
            sandbox::ENV_WEBHOOK_SECRET => Some(self.sandbox.webhook_secret.clone()),
            sandbox::ENV_TIMEOUT_MS => Some(self.sandbox.timeout_ms.to_string()),
            _ => match env::var(var) {
                Ok(value) => Some(value),
                Err(env::VarError::NotPresent) => None,
                Err(env::VarError::NotUnicode(_)) => Some(String::new()),
            },
        }
    }

    pub fn from_env() -> Settings {
        Settings {
            database_url: var("DATABASE_URL", DEFAULT_DATABASE_URL),
            database_read_url: env::var("DATABASE_READ_URL")
                .ok()
                .filter(|url| !url.trim().is_empty()),
            amqp_url: var("AMQP_URL", DEFAULT_AMQP_URL),
            // An unknown value is reported by `check-config`, which `serve` runs first.
            amqp_queue_type: env::var("AMQP_QUEUE_TYPE")
                .ok()
                .and_then(|v| QueueType::parse(&v))
                .unwrap_or_default(),
            amqp_prefix: var("AMQP_PREFIX", eventstore::published::DEFAULT_AMQP_PREFIX),
            listen_addr: var("LISTEN_ADDR", "127.0.0.1:8080"),
            role: ServeRole::All,
            projection: "all".to_owned(),
            db_pool_max: number("DATABASE_POOL_MAX", 16) as u32,
            http_workers: http_workers(
                env::var("HTTP_WORKERS").ok().as_deref(),
                std::thread::available_parallelism().map_or(1, |n| n.get()),
            ),
            trusted_proxies: var("TRUSTED_PROXIES", ""),
            jwt: crate::jwt::JwtSettings::from_lookup(|n| env::var(n).ok())
                .ok()
                .flatten(),
            database_owner_url: env::var("DATABASE_OWNER_URL")
                .ok()
                .filter(|url| !url.trim().is_empty()),
            fingerprint_secret: var(
                "FINGERPRINT_SECRET",
                commands::payments::TEST_FINGERPRINT_SECRET,
            ),
            production: env::var("PAYLEDGER_ENV").is_ok_and(|e| e == "production"),
            // A value that does not parse is reported by `check-config`, which `serve` runs
            // first; the defaults stand in for it meanwhile.
            rate_limits: crate::rate_limit::RateLimitSettings::from_lookup(|n| env::var(n).ok())
                .unwrap_or_default(),
            sandbox: SandboxSettings {
                in_process: false,
                base_url: var(sandbox::ENV_BASE_URL, sandbox::DEFAULT_BASE_URL),
                api_key: var(sandbox::ENV_API_KEY, sandbox::DEFAULT_API_KEY),
                webhook_secret: var(sandbox::ENV_WEBHOOK_SECRET, sandbox::DEFAULT_WEBHOOK_SECRET),
                webhook_delay_ms: number("SANDBOX_WEBHOOK_DELAY_MS", 20),
                timeout_ms: number(sandbox::ENV_TIMEOUT_MS, sandbox::DEFAULT_TIMEOUT_MS),
                deliver_webhooks: env::var("SANDBOX_DELIVER_WEBHOOKS")
                    .map_or(true, |v| v != "false"),
                emulator_gateway: env::var("SANDBOX_EMULATOR_GATEWAY").ok(),
            },
            merchant_webhooks: MerchantWebhookSettings {
                backoff_base_ms: number("MERCHANT_WEBHOOK_BACKOFF_BASE_MS", 10_000),
                backoff_max_ms: number("MERCHANT_WEBHOOK_BACKOFF_MAX_MS", 3_600_000),
                horizon_s: number("MERCHANT_WEBHOOK_HORIZON_S", 3 * 24 * 3_600),
                timeout_ms: number("MERCHANT_WEBHOOK_TIMEOUT_MS", 10_000),
                allow_private_targets: !env::var("PAYLEDGER_ENV").is_ok_and(|e| e == "production"),
            },
            routing: RoutingSettings {
                providers: env::var("PROVIDERS")
                    .ok()
                    .map(|v| {
                        v.split(',')
                            .map(|p| p.trim().to_owned())
                            .filter(|p| !p.is_empty())
                            .collect()
                    })
                    .unwrap_or_else(|| vec!["sandbox".to_owned()]),
                provider_budget_ms: number("PROVIDER_BUDGET_MS", 15_000),
                provider_attempt_timeout_ms: number("PROVIDER_ATTEMPT_TIMEOUT_MS", 5_000),
                breaker_failures_to_open: number("BREAKER_FAILURES_TO_OPEN", 5) as u32,
                breaker_cool_down_ms: number("BREAKER_COOL_DOWN_MS", 30_000),
                fees_file: env::var("FEES_FILE").ok(),
                reconcile_after_ms: number("RECONCILE_AFTER_MS", 15 * 60 * 1_000),
                reconcile_interval_ms: number("RECONCILE_INTERVAL_MS", 60_000),
                reconcile_review_after_ms: number(
                    "RECONCILE_REVIEW_AFTER_MS",
                    24 * 60 * 60 * 1_000,
                ),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_workers_default_to_one_per_core_but_one_and_stay_bounded() {
        assert_eq!(http_workers(None, 2), 1);
        assert_eq!(http_workers(None, 1), 1);
        assert_eq!(http_workers(None, 8), 7);
        assert_eq!(http_workers(Some("3"), 2), 3);
        assert_eq!(http_workers(Some("0"), 8), 1);
        assert_eq!(http_workers(Some("500"), 2), HTTP_WORKERS_MAX);
        assert_eq!(http_workers(Some("many"), 4), 3);
    }
}
