//! `GET /metrics`: Prometheus text for operator and admin keys only, parsed here with an
//! exposition-format parser of its own (`prometheus-parse`), as a scraper would. The server
//! is a process of its own (the release binary): a process has one metrics recorder, and
//! the counts asserted must be this server's alone.

use std::time::{Duration, Instant};

use api::auth::{create_key, Role};
use e2e::process::{free_port, serve, wait_ready};
use e2e::{fresh_database, payment_body, spawn_app};
use prometheus_parse::{Scrape, Value};
use serde_json::Value as Json;
use sqlx::PgPool;
use tokio::process::Child;

struct Server {
    base: String,
    pool: PgPool,
    http: reqwest::Client,
    _process: Child,
}

impl Server {
    async fn start() -> Server {
        let database = std::env::var("DATABASE_URL").expect("DATABASE_URL names the test server");
        let (url, name) = fresh_database(&database).await;
        let port = free_port();
        let prefix = format!("test.{name}");
        let process = serve(
            &["--sandbox"],
            port,
            &[
                ("DATABASE_URL", url.as_str()),
                ("AMQP_PREFIX", prefix.as_str()),
                ("PROVIDERS", "sandbox"),
            ],
        );
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("http client");
        wait_ready(&http, &base).await;
        let pool = PgPool::connect(&url).await.expect("the server's database");
        Server {
            base,
            pool,
            http,
            _process: process,
        }
    }

    async fn get(&self, path: &str, key: Option<&str>) -> reqwest::Response {
        let request = self.http.get(format!("{}{path}", self.base));
        let request = match key {
            Some(key) => request.bearer_auth(key),
            None => request,
        };
        request.send().await.expect("answers")
    }

    /// Creates an automatically captured sandbox payment and waits until it is approved.
    async fn approved_payment(&self, key: &str, reference: &str) {
        let created: Json = self
            .http
            .post(format!("{}/v1/payments", self.base))
            .bearer_auth(key)
            .header("Idempotency-Key", reference)
            .json(&payment_body(
                "15.00",
                "USD",
                reference,
                "tok_sandbox_approved",
                "automatic",
            ))
            .send()
            .await
            .expect("answers")
            .json()
            .await
            .expect("json");
        let id = created["id"].as_str().expect("created").to_owned();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let payment: Json = self
                .get(&format!("/v1/payments/{id}"), Some(key))
                .await
                .json()
                .await
                .expect("json");
            if payment["status"] == "APPROVED" {
                return;
            }
            assert!(Instant::now() < deadline, "{payment}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn scrape(server: &Server, key: &str) -> Scrape {
    let response = server.get("/metrics", Some(key)).await;
    assert_eq!(response.status(), 200);
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    let text = response.text().await.expect("body");
    Scrape::parse(text.lines().map(|line| Ok(line.to_owned()))).expect("valid exposition format")
}

/// The value of the one sample of `metric` whose labels include `labels`.
fn value(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == metric)
        .find(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .and_then(|s| match s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => Some(v),
            _ => None,
        })
}

#[tokio::test]
async fn operators_scrape_request_counts_lags_and_payments_by_status() {
    let server = Server::start().await;
    let operator = create_key(&server.pool, Role::Operator, None)
        .await
        .expect("operator key");
    let merchant = domain::MerchantId::parse(e2e::MERCHANT).expect("merchant");
    let checkout = create_key(&server.pool, Role::Checkout, Some(&merchant))
        .await
        .expect("checkout key");
    for i in 0..3 {
        server.approved_payment(&checkout, &format!("m-{i}")).await;
    }

    let scrape = scrape(&server, &operator).await;
    let created = value(
        &scrape,
        "payledger_http_requests_total",
        &[
            ("method", "POST"),
            ("route", "/v1/payments"),
            ("status", "201"),
        ],
    );
    assert_eq!(created, Some(3.0), "three creates answered 201");
    assert!(
        scrape
            .samples
            .iter()
            .any(|s| s.metric == "payledger_http_request_duration_seconds"
                && matches!(s.value, Value::Histogram(_))),
        "request latency is a histogram"
    );
    assert_eq!(
        value(&scrape, "payledger_payments", &[("status", "APPROVED")]),
        Some(3.0)
    );

    assert_eq!(
        value(
            &scrape,
            "payledger_provider_calls_total",
            &[
                ("provider", "sandbox"),
                ("operation", "create_transaction"),
                ("outcome", "ok")
            ],
        ),
        Some(3.0)
    );
    assert_eq!(
        value(
            &scrape,
            "payledger_provider_breaker_open",
            &[("provider", "sandbox")]
        ),
        Some(0.0)
    );
    assert_eq!(
        value(
            &scrape,
            "payledger_webhooks_received_total",
            &[("provider", "sandbox"), ("verdict", "recorded")],
        ),
        Some(3.0),
        "each approval arrived by a verified webhook"
    );
    assert_eq!(value(&scrape, "payledger_relay_lag_events", &[]), Some(0.0));
    assert_eq!(
        value(&scrape, "payledger_relay_published_events_total", &[]),
        Some(12.0),
        "four events a payment"
    );
    assert_eq!(
        value(
            &scrape,
            "payledger_projection_lag_events",
            &[("projection", "status")]
        ),
        Some(0.0)
    );
    assert_eq!(
        value(
            &scrape,
            "payledger_projection_dead_letters",
            &[("projection", "ledger")]
        ),
        Some(0.0)
    );
    assert_eq!(value(&scrape, "payledger_database_up", &[]), Some(1.0));
    assert_eq!(value(&scrape, "payledger_broker_up", &[]), Some(1.0));
    assert!(
        value(
            &scrape,
            "payledger_db_pool_connections",
            &[("state", "open")]
        ) >= Some(1.0)
    );
    // An id in the path is never a label: the route pattern is.
    assert!(scrape
        .samples
        .iter()
        .filter_map(|s| s.labels.get("route"))
        .all(|route| !route.contains('-') || route.contains('{')));

    // Admins may scrape too; nobody else.
    let admin = create_key(&server.pool, Role::Admin, None)
        .await
        .expect("key");
    assert_eq!(server.get("/metrics", Some(&admin)).await.status(), 200);
    assert_eq!(server.get("/metrics", Some(&checkout)).await.status(), 403);
    let analyst = create_key(&server.pool, Role::Analyst, None)
        .await
        .expect("key");
    assert_eq!(server.get("/metrics", Some(&analyst)).await.status(), 403);
    assert_eq!(server.get("/metrics", None).await.status(), 401);
}

#[tokio::test]
async fn an_operator_key_issues_no_command_and_reads_no_payment() {
    let app = spawn_app().await;
    let operator = create_key(&app.pool, Role::Operator, None)
        .await
        .expect("operator key");
    let create = app
        .post(
            "/v1/payments",
            &operator,
            Some("op-1"),
            &payment_body("5.00", "USD", "op-1", "tok_sandbox_approved", "automatic"),
        )
        .await;
    assert_eq!(create.status(), 403);
    assert_eq!(app.get("/v1/payments", &operator).await.status(), 403);
    assert_eq!(app.get("/v1/audit/head", &operator).await.status(), 403);
    assert_eq!(
        app.get("/v1/analytics/daily", &operator).await.status(),
        200
    );
    assert_eq!(app.event_count().await, 0, "nothing appended");
}
