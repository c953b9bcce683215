//! `GET /metrics`: Prometheus text for operator and admin keys only, parsed here with an
//! exposition-format parser of its own (`prometheus-parse`), as a scraper would. The server
//! is a process of its own (the release binary): a process has one metrics recorder, and
//! the counts asserted must be this server's alone.

use api::auth::{create_key, Role};
use e2e::process::Served;
use e2e::{payment_body, spawn_app};
use prometheus_parse::{Scrape, Value};

async fn scrape(server: &Served, key: &str) -> Scrape {
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
    let server = Served::start(None).await;
    let operator = create_key(&server.pool, Role::Operator, None)
        .await
        .expect("operator key");
    let merchant = domain::MerchantId::parse(e2e::MERCHANT).expect("merchant");
    let checkout = create_key(&server.pool, Role::Checkout, Some(&merchant))
        .await
        .expect("checkout key");
    // A customer's commands are counted beside the payments'. First: the payments
    // settled after it mean the relay has published it too.
    let customer = server
        .http
        .post(format!("{}/v1/customers", server.base))
        .bearer_auth(&checkout)
        .json(&serde_json::json!({"reference": "m-customer"}))
        .send()
        .await
        .expect("answers");
    assert_eq!(customer.status(), 201);
    for i in 0..3 {
        let reference = format!("m-{i}");
        server
            .payment(&checkout, &reference, "tok_sandbox_approved", "APPROVED")
            .await;
    }
    server
        .payment(&checkout, "m-declined", "tok_sandbox_declined", "DECLINED")
        .await;

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
    assert_eq!(created, Some(4.0), "four creates answered 201");
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
            "payledger_commands_total",
            &[
                ("command", "Initiate"),
                ("source", "api"),
                ("outcome", "appended")
            ],
        ),
        Some(4.0)
    );
    assert_eq!(
        value(
            &scrape,
            "payledger_commands_total",
            &[
                ("command", "CreateCustomer"),
                ("source", "api"),
                ("outcome", "appended")
            ],
        ),
        Some(1.0)
    );
    for (outcome, count) in [("approved", 3.0), ("declined", 1.0)] {
        assert_eq!(
            value(
                &scrape,
                "payledger_payments_decided_total",
                &[
                    ("provider", "sandbox"),
                    ("method", "CARD"),
                    ("outcome", outcome)
                ],
            ),
            Some(count),
            "{outcome}"
        );
    }

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
        Some(4.0)
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
        Some(4.0),
        "each answer arrived by a verified webhook"
    );
    assert_eq!(value(&scrape, "payledger_relay_lag_events", &[]), Some(0.0));
    let published = value(&scrape, "payledger_relay_published_events_total", &[]);
    assert_eq!(
        published,
        Some(17.0),
        "four events a payment, one for the customer"
    );
    assert_eq!(
        value(
            &scrape,
            "payledger_projection_applied_events_total",
            &[("projection", "status")]
        ),
        Some(16.0),
        "the status projection applied every payment event"
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

#[tokio::test]
async fn failed_merchant_webhook_deliveries_are_counted_for_operators() {
    let server = Served::start(None).await;
    let operator = create_key(&server.pool, Role::Operator, None)
        .await
        .expect("operator key");
    let merchant = domain::MerchantId::parse(e2e::MERCHANT).expect("merchant");
    let checkout = create_key(&server.pool, Role::Checkout, Some(&merchant))
        .await
        .expect("checkout key");
    // An endpoint where nothing listens: every POST to it goes unanswered.
    let closed = e2e::process::free_port();
    let registered = server
        .http
        .post(format!("{}/v1/webhook-endpoints", server.base))
        .bearer_auth(&checkout)
        .json(&serde_json::json!({"url": format!("http://127.0.0.1:{closed}/hooks"), "events": ["PaymentApproved"]}))
        .send()
        .await
        .expect("register");
    assert_eq!(registered.status(), 201);
    server
        .payment(&checkout, "mw-1", "tok_sandbox_approved", "APPROVED")
        .await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let scrape = scrape(&server, &operator).await;
        let unreachable = value(
            &scrape,
            "payledger_merchant_webhook_attempts_total",
            &[("outcome", "unreachable")],
        );
        if unreachable.is_some_and(|v| v >= 1.0) {
            assert_eq!(
                value(
                    &scrape,
                    "payledger_merchant_webhook_attempts_total",
                    &[("outcome", "succeeded")]
                ),
                None,
                "nothing was delivered"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the failed attempt was never counted"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}
