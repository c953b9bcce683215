//! Routing between providers: a lost answer keeps the payment with its provider (no
//! fallback), the circuit breaker opening after the configured failures and closing after
//! its cool-down, and lost webhooks caught up by the reconciler.

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

/// The stored payload of the payment's only event of `event_type`.
async fn payload(app: &TestApp, id: &str, event_type: &str) -> Value {
    sqlx::query_scalar(
        "SELECT payload::jsonb FROM events WHERE aggregate_id = $1 AND event_type = $2",
    )
    .bind(id)
    .bind(event_type)
    .fetch_one(&app.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn a_5xx_keeps_the_payment_with_its_provider_and_the_open_breaker_sends_new_ones_on() {
    let app = spawn_wompi_then_payu(|_| {}).await;
    set_fault(&app, "wompi", "server_error").await;

    // Wompi may have taken it: the payment stays Wompi's, its outcome unknown, PayU unasked.
    let first = app.create_payment("fb-1", &pse("fb-1")).await;
    assert_eq!(first["provider"], "wompi", "{first}");
    assert_eq!(first["status"], "PENDING");
    assert_eq!(first["provider_outcome"], "unknown", "{first}");
    let id = first["id"].as_str().unwrap();
    assert_eq!(
        app.event_types(id).await,
        [
            "PaymentInitiated",
            "ProviderAttemptStarted",
            "ProviderOutcomeUnknown"
        ]
    );
    let unknown = payload(&app, id, "ProviderOutcomeUnknown").await;
    assert_eq!(unknown["ProviderOutcomeUnknown"]["provider"], "wompi");
    assert_eq!(unknown["ProviderOutcomeUnknown"]["kind"], "server_error");
    assert_eq!(breaker_of(&app, "wompi").await, "closed");

    // A second 5xx reaches the threshold (2): the breaker opens.
    let second = app.create_payment("fb-2", &pse("fb-2")).await;
    assert_eq!(second["provider"], "wompi");
    assert_eq!(breaker_of(&app, "wompi").await, "open");

    // While open, Wompi is not even offered new payments: PayU takes them.
    let third = app.create_payment("fb-3", &pse("fb-3")).await;
    assert_eq!(third["provider"], "payu");
    assert_eq!(
        app.event_types(third["id"].as_str().unwrap()).await,
        [
            "PaymentInitiated",
            "ProviderAttemptStarted",
            "ProviderTransactionCreated"
        ]
    );

    // After the cool-down one trial goes through; Wompi has recovered, so it closes.
    set_fault(&app, "wompi", "none").await;
    tokio::time::sleep(Duration::from_millis(450)).await;
    let fourth = app.create_payment("fb-4", &pse("fb-4")).await;
    assert_eq!(fourth["provider"], "wompi", "{fourth}");
    assert_eq!(breaker_of(&app, "wompi").await, "closed");

    // The payment PayU took completes at PayU's bank page and is approved there.
    let transaction = third["provider_reference"].as_str().unwrap();
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
    let approved = app
        .wait_for_status(third["id"].as_str().unwrap(), "APPROVED")
        .await;
    assert_eq!(approved["provider"], "payu");
}

#[tokio::test]
async fn a_provider_that_times_out_keeps_the_payment_and_answers_within_the_attempt_timeout() {
    let app = spawn_wompi_then_payu(|_| {}).await;
    set_fault(&app, "wompi", "timeout").await;
    let started = Instant::now();
    let created = app.create_payment("to-1", &pse("to-1")).await;
    let took = started.elapsed();
    assert_eq!(created["provider"], "wompi", "{created}");
    assert_eq!(created["provider_outcome"], "unknown", "{created}");
    assert!(took < Duration::from_secs(5), "the command waited {took:?}");
    let unknown = payload(
        &app,
        created["id"].as_str().unwrap(),
        "ProviderOutcomeUnknown",
    )
    .await;
    assert_eq!(unknown["ProviderOutcomeUnknown"]["kind"], "timeout");
}

#[tokio::test]
async fn an_unknown_outcome_never_falls_back_even_when_every_provider_fails() {
    let app = spawn_wompi_then_payu(|_| {}).await;
    set_fault(&app, "wompi", "server_error").await;
    set_fault(&app, "payu", "server_error").await;
    let created = app.create_payment("all-1", &pse("all-1")).await;
    assert_eq!(created["status"], "PENDING");
    assert_eq!(created["provider"], "wompi");
    assert_eq!(
        app.event_types(created["id"].as_str().unwrap()).await,
        [
            "PaymentInitiated",
            "ProviderAttemptStarted",
            "ProviderOutcomeUnknown"
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
