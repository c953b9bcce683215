//! Routing between providers: fallback on a retryable failure (one `ProviderAttemptFailed`),
//! the circuit breaker opening after the configured failures and closing after its
//! cool-down, and lost webhooks caught up by the reconciler.

use std::time::{Duration, Instant};

use api::config::ServeRole;
use e2e::{spawn_app_configured, TestApp};
use serde_json::{json, Value};

fn pse(reference: &str) -> Value {
    json!({
        "amount": "150000.00",
        "currency": "COP",
        "reference": reference,
        "payment_method": {
            "type": "PSE",
            "financial_institution_code": "1",
            "user_type": 0,
            "user_legal_id_type": "CC",
            "user_legal_id": "1999888777"
        },
        "customer_email": "payer@example.com"
    })
}

/// The emulator's root (Wompi's base URL ends in `/v1`).
fn emulator_root(app: &TestApp, provider: &str) -> String {
    app.emulators[provider].trim_end_matches("/v1").to_owned()
}

async fn set_fault(app: &TestApp, provider: &str, fault: &str) {
    let response = app
        .http
        .post(format!("{}/_sandbox/faults", emulator_root(app, provider)))
        .json(&json!({ "create": fault }))
        .send()
        .await
        .unwrap();
    assert!(
        response.status().is_success(),
        "fault injection at {provider}"
    );
}

async fn breaker_of(app: &TestApp, provider: &str) -> String {
    let health: Value = app
        .http
        .get(format!("{}/health/providers", app.address))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    health["providers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["provider"] == provider)
        .map(|p| p["breaker"].as_str().unwrap().to_owned())
        .unwrap()
}

async fn spawn_wompi_then_payu(configure: impl FnOnce(&mut api::Settings)) -> TestApp {
    spawn_app_configured(ServeRole::All, |s| {
        s.routing.providers = vec!["wompi".into(), "payu".into()];
        s.routing.breaker_failures_to_open = 2;
        s.routing.breaker_cool_down_ms = 400;
        s.routing.provider_attempt_timeout_ms = 500;
        configure(s);
    })
    .await
}

#[tokio::test]
async fn a_failing_provider_hands_the_payment_to_the_next_and_the_breaker_opens_then_closes() {
    let app = spawn_wompi_then_payu(|_| {}).await;
    set_fault(&app, "wompi", "server_error").await;

    // Wompi (first by priority) fails: PayU takes the payment, one failed attempt recorded.
    let first = app.create_payment("fb-1", &pse("fb-1")).await;
    assert_eq!(first["provider"], "payu", "{first}");
    assert_eq!(first["status"], "PENDING");
    assert_eq!(first["next_action"]["type"], "redirect");
    let id = first["id"].as_str().unwrap();
    assert_eq!(
        app.event_types(id).await,
        [
            "PaymentInitiated",
            "ProviderAttemptFailed",
            "ProviderTransactionCreated"
        ]
    );
    let attempt: Value = sqlx::query_scalar(
        "SELECT payload::jsonb FROM events WHERE aggregate_id = $1 AND event_type = 'ProviderAttemptFailed'",
    )
    .bind(id)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(attempt["ProviderAttemptFailed"]["provider"], "wompi");
    assert_eq!(attempt["ProviderAttemptFailed"]["kind"], "server_error");
    assert_eq!(breaker_of(&app, "wompi").await, "closed");

    // A second failure reaches the threshold (2): the breaker opens.
    let second = app.create_payment("fb-2", &pse("fb-2")).await;
    assert_eq!(second["provider"], "payu");
    assert_eq!(breaker_of(&app, "wompi").await, "open");

    // While open, Wompi is not even tried.
    let third = app.create_payment("fb-3", &pse("fb-3")).await;
    assert_eq!(third["provider"], "payu");
    assert_eq!(
        app.event_types(third["id"].as_str().unwrap()).await,
        ["PaymentInitiated", "ProviderTransactionCreated"]
    );

    // After the cool-down one trial goes through; Wompi has recovered, so it closes.
    set_fault(&app, "wompi", "none").await;
    tokio::time::sleep(Duration::from_millis(450)).await;
    let fourth = app.create_payment("fb-4", &pse("fb-4")).await;
    assert_eq!(fourth["provider"], "wompi", "{fourth}");
    assert_eq!(breaker_of(&app, "wompi").await, "closed");

    // The payment PayU took completes at PayU's bank page and is approved there.
    let transaction = first["provider_reference"].as_str().unwrap();
    let payu_transaction = transaction.rsplit(':').next().unwrap();
    let completed = app
        .http
        .post(format!(
            "{}/_sandbox/pse/{payu_transaction}/complete",
            emulator_root(&app, "payu")
        ))
        .send()
        .await
        .unwrap();
    assert!(completed.status().is_success());
    let approved = app.wait_for_status(id, "APPROVED").await;
    assert_eq!(approved["provider"], "payu");
}

#[tokio::test]
async fn a_provider_that_times_out_is_left_within_the_attempt_timeout() {
    let app = spawn_wompi_then_payu(|_| {}).await;
    set_fault(&app, "wompi", "timeout").await;
    let started = Instant::now();
    let created = app.create_payment("to-1", &pse("to-1")).await;
    let took = started.elapsed();
    assert_eq!(created["provider"], "payu", "{created}");
    assert!(took < Duration::from_secs(5), "the command waited {took:?}");
    let attempt: Value = sqlx::query_scalar(
        "SELECT payload::jsonb FROM events WHERE aggregate_id = $1 AND event_type = 'ProviderAttemptFailed'",
    )
    .bind(created["id"].as_str().unwrap())
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(attempt["ProviderAttemptFailed"]["kind"], "timeout");
}

#[tokio::test]
async fn when_every_provider_fails_the_payment_fails_with_each_attempt_recorded() {
    let app = spawn_wompi_then_payu(|_| {}).await;
    set_fault(&app, "wompi", "server_error").await;
    set_fault(&app, "payu", "server_error").await;
    let created = app.create_payment("all-1", &pse("all-1")).await;
    assert_eq!(created["status"], "FAILED");
    assert_eq!(created["failure_reason"], "provider_unavailable");
    assert_eq!(
        app.event_types(created["id"].as_str().unwrap()).await,
        [
            "PaymentInitiated",
            "ProviderAttemptFailed",
            "ProviderAttemptFailed",
            "PaymentFailed"
        ]
    );
}

#[tokio::test]
async fn a_method_no_provider_takes_is_refused_before_anything_is_appended() {
    let app = spawn_wompi_then_payu(|_| {}).await;
    let gcash = json!({
        "amount": "100.00", "currency": "PHP", "reference": "ph-1",
        "payment_method": {"type": "GCASH"}
    });
    let response = app
        .post("/v1/payments", &app.checkout_key, Some("ph-1"), &gcash)
        .await;
    assert_eq!(response.status(), 422);
    assert_eq!(app.event_count().await, 0);
}

#[tokio::test]
async fn the_reconciler_brings_a_payment_whose_webhook_was_lost_to_the_provider_status() {
    let app = spawn_wompi_then_payu(|s| {
        s.sandbox.deliver_webhooks = false;
        s.routing.reconcile_after_ms = 0;
        s.routing.reconcile_interval_ms = 200;
    })
    .await;
    let created = app.create_payment("lost-1", &pse("lost-1")).await;
    assert_eq!(created["provider"], "wompi");
    let id = created["id"].as_str().unwrap();
    let transaction = created["provider_reference"].as_str().unwrap();
    let completed = app
        .http
        .post(format!(
            "{}/_sandbox/pse/{transaction}/complete",
            emulator_root(&app, "wompi")
        ))
        .send()
        .await
        .unwrap();
    assert!(completed.status().is_success());
    // No webhook will come: only the reconciler's sync can approve it.
    let approved = app.wait_for_status(id, "APPROVED").await;
    assert_eq!(approved["provider"], "wompi");
    let deliveries: i64 = sqlx::query_scalar("SELECT count(*) FROM webhook_deliveries")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(deliveries, 0, "the approval came from sync, not a webhook");
}
