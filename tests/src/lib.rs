//! Test harness: each test gets its own database and its own RabbitMQ names, and a real
//! payledger (HTTP server, in-process sandbox provider, relay, status projector) on port 0.

pub mod browser;
pub mod customers;
pub mod fault_proxy;
pub mod independent;
pub mod process;
pub mod service_role;
pub mod support;
pub mod tcp_proxy;

use std::time::{Duration, Instant};

use api::auth::{create_key, Role};
use api::config::{ServeRole, Settings};
use api::Application;
use domain::MerchantId;
use serde_json::{json, Value};
use sqlx::{Connection, PgConnection, PgPool};
use uuid::Uuid;

pub const MERCHANT: &str = "merchant-a";

fn base_settings() -> Settings {
    let mut settings = Settings::from_env();
    settings.listen_addr = "127.0.0.1:0".into();
    settings.sandbox.in_process = true;
    settings.sandbox.webhook_delay_ms = 5;
    settings.db_pool_max = 12;
    // Tests drive one key from one address far past a merchant's limits; the limits have
    // tests of their own.
    settings.rate_limits = api::rate_limit::RateLimitSettings::off();
    settings
}

/// Test databases are named `t_<unix seconds>_<uuid>`; those older than this are dropped by
/// later runs, so a developer's cluster does not fill up with them.
const TEST_DATABASE_KEEP_SECS: u64 = 3_600;

/// Drops old test databases (once per test process; best effort: one still in use stays).
async fn drop_stale_databases(admin: &mut PgConnection) {
    static SWEPT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if SWEPT.swap(true, std::sync::atomic::Ordering::SeqCst) {
        return;
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let names: Vec<String> =
        sqlx::query_scalar(r"SELECT datname FROM pg_database WHERE datname LIKE 't\_%\_%'")
            .fetch_all(&mut *admin)
            .await
            .unwrap_or_default();
    for name in names {
        let created = name.split('_').nth(1).and_then(|s| s.parse::<u64>().ok());
        if created.is_some_and(|c| c + TEST_DATABASE_KEEP_SECS < now) {
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name}"))
                .execute(&mut *admin)
                .await;
        }
    }
}

/// Creates an empty database next to `DATABASE_URL`'s and returns its URL.
pub async fn fresh_database(base_url: &str) -> (String, String) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let name = format!("t_{now}_{}", Uuid::new_v4().simple());
    let mut admin = PgConnection::connect(base_url)
        .await
        .expect("DATABASE_URL must point at a running PostgreSQL (make services)");
    drop_stale_databases(&mut admin).await;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .expect("create test database");
    let (prefix, _) = base_url
        .rsplit_once('/')
        .expect("DATABASE_URL has a database name");
    (format!("{prefix}/{name}"), name)
}

pub struct TestApp {
    pub address: String,
    pub pool: PgPool,
    pub http: reqwest::Client,
    pub checkout_key: String,
    pub admin_key: String,
    pub settings: Settings,
    /// Base URL of each in-process provider emulator, by provider name.
    pub emulators: std::collections::BTreeMap<String, String>,
    /// How to stop each in-process emulator, until `stop_emulator` takes it.
    emulator_stops:
        std::sync::Mutex<std::collections::BTreeMap<&'static str, api::emulated::StopEmulator>>,
    shutdown: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(server) = self.shutdown.take() {
            server.abort();
        }
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with_role(ServeRole::All).await
}

/// Starts payledger in `role` on a fresh database; tests that control the relay themselves
/// start it with `ServeRole::Api` plus their own projector/relay.
pub async fn spawn_app_with_role(role: ServeRole) -> TestApp {
    spawn_app_configured(role, |_| {}).await
}

/// A fresh app whose settings `configure` adjusts first (providers, breaker, budget...).
pub async fn spawn_app_configured(
    role: ServeRole,
    configure: impl FnOnce(&mut Settings),
) -> TestApp {
    if std::env::var("TEST_LOG").is_ok() {
        api::telemetry::init(false);
    }
    let mut settings = fresh_settings(role).await;
    configure(&mut settings);
    spawn_with_settings(settings).await
}

/// Settings as `spawn_app_configured` makes them (a fresh database, its own broker prefix),
/// for a test that builds the application itself.
pub async fn fresh_settings(role: ServeRole) -> Settings {
    let mut settings = base_settings();
    let (url, name) = fresh_database(&settings.database_url).await;
    settings.database_url = url;
    settings.amqp_prefix = format!("test.{name}");
    settings.role = role;
    settings
}

pub async fn spawn_with_settings(settings: Settings) -> TestApp {
    let mut app = Application::build(settings.clone())
        .await
        .expect("application starts");
    let emulator_stops = std::sync::Mutex::new(app.take_emulators());
    let address = format!("http://127.0.0.1:{}", app.port());
    let pool = app.pool().clone();
    let emulators = app
        .emulator_urls()
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect();
    let server = tokio::spawn(app.run_until_stopped());
    let merchant = MerchantId::parse(MERCHANT).expect("merchant id");
    let checkout_key = create_key(&pool, Role::Checkout, Some(&merchant))
        .await
        .expect("checkout key");
    let admin_key = create_key(&pool, Role::Admin, None)
        .await
        .expect("admin key");
    TestApp {
        address,
        pool,
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("http client"),
        checkout_key,
        admin_key,
        settings,
        emulators,
        emulator_stops,
        shutdown: Some(server),
    }
}

impl TestApp {
    /// Stops `provider`'s in-process emulator while the ledger keeps running: its port then
    /// refuses connections, as a provider that is down.
    pub async fn stop_emulator(&self, provider: &str) {
        let stop = self
            .emulator_stops
            .lock()
            .expect("emulator stops")
            .remove(provider)
            .unwrap_or_else(|| panic!("no running emulator for {provider}"));
        stop().await;
    }
}

pub fn payment_body(
    amount: &str,
    currency: &str,
    reference: &str,
    token: &str,
    capture: &str,
) -> Value {
    json!({
        "amount": amount,
        "currency": currency,
        "reference": reference,
        "payment_method": {"type": "CARD", "token": token},
        "capture": capture,
    })
}

impl TestApp {
    pub async fn key_for(&self, merchant: &str) -> String {
        let merchant = MerchantId::parse(merchant).expect("merchant id");
        create_key(&self.pool, Role::Checkout, Some(&merchant))
            .await
            .expect("checkout key")
    }

    pub async fn post(
        &self,
        path: &str,
        key: &str,
        idempotency_key: Option<&str>,
        body: &Value,
    ) -> reqwest::Response {
        self.post_raw(
            path,
            key,
            idempotency_key,
            serde_json::to_vec(body).expect("json"),
        )
        .await
    }

    pub async fn post_raw(
        &self,
        path: &str,
        key: &str,
        idempotency_key: Option<&str>,
        body: Vec<u8>,
    ) -> reqwest::Response {
        let mut request = self
            .http
            .post(format!("{}{}", self.address, path))
            .bearer_auth(key)
            .header("Content-Type", "application/json")
            .body(body);
        if let Some(k) = idempotency_key {
            request = request.header("Idempotency-Key", k);
        }
        request.send().await.expect("request sent")
    }

    pub async fn get(&self, path: &str, key: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{}", self.address, path))
            .bearer_auth(key)
            .send()
            .await
            .expect("request sent")
    }

    /// Creates a payment and returns its JSON (asserting `201`).
    pub async fn create_payment(&self, idempotency_key: &str, body: &Value) -> Value {
        let response = self
            .post(
                "/v1/payments",
                &self.checkout_key,
                Some(idempotency_key),
                body,
            )
            .await;
        let status = response.status();
        let json: Value = response.json().await.expect("json body");
        assert_eq!(status, 201, "create payment: {json}");
        json
    }

    /// Polls the status projection until the payment shows `status` (or 10 s pass).
    pub async fn wait_for_status(&self, id: &str, status: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let response = self
                .get(&format!("/v1/payments/{id}"), &self.checkout_key)
                .await;
            if response.status() == 200 {
                let json: Value = response.json().await.expect("json");
                if json["status"] == status {
                    return json;
                }
                assert!(
                    Instant::now() < deadline,
                    "payment {id} never reached {status}: {json}"
                );
            } else {
                assert!(
                    Instant::now() < deadline,
                    "payment {id} never appeared: {}",
                    response.status()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The payment as the projection shows it once it has caught up with `version`.
    pub async fn read_at_least(&self, id: &str, version: i64) -> Value {
        let response = self
            .get(
                &format!("/v1/payments/{id}?min_version={version}"),
                &self.checkout_key,
            )
            .await;
        assert_eq!(response.status(), 200);
        let json: Value = response.json().await.expect("json");
        assert!(
            json["version"].as_i64() >= Some(version),
            "projection behind: {json}"
        );
        json
    }

    pub async fn event_count(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM events")
            .fetch_one(&self.pool)
            .await
            .expect("count events")
    }

    pub async fn event_types(&self, payment_id: &str) -> Vec<String> {
        sqlx::query_scalar(
            "SELECT event_type FROM events WHERE aggregate_id = $1 ORDER BY sequence",
        )
        .bind(payment_id)
        .fetch_all(&self.pool)
        .await
        .expect("event types")
    }
}
