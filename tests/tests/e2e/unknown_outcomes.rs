//! Lost provider answers: a charge taken at a provider is in the ledger exactly once, whether
//! the answer was held past the timeout, answered 5xx, cut on the socket, or never followed
//! by a webhook; the payment never falls back to another provider meanwhile. Captures, voids
//! and refunds whose answers are lost end in the provider's true state. A transaction the
//! payment does not hold is recorded as an orphan and given back.

use std::time::{Duration, Instant};

use api::config::ServeRole;
use e2e::fault_proxy::{FaultProxy, Loss};
use e2e::independent::{sandbox_signature, SANDBOX_SIGNATURE_HEADER};
use e2e::support::{attempts, id_of, journal_balances, json_of, sandbox_transactions};
use e2e::{payment_body, spawn_app_configured, TestApp};
use rust_decimal::Decimal;
use serde_json::{json, Value};

const ATTEMPT_TIMEOUT_MS: u64 = 600;

fn settings(s: &mut api::Settings) {
    // Two providers take cards in COP: the second must never be asked while the first may
    // hold the charge.
    s.routing.providers = vec!["sandbox".into(), "wompi".into()];
    s.routing.provider_attempt_timeout_ms = ATTEMPT_TIMEOUT_MS;
    s.routing.reconcile_after_ms = 0;
    s.routing.reconcile_interval_ms = 200;
}

async fn start() -> TestApp {
    spawn_app_configured(ServeRole::All, settings).await
}

/// An app whose adapters reach their emulators through `proxy`.
async fn start_behind(proxy: &FaultProxy) -> TestApp {
    let url = proxy.url();
    let app = spawn_app_configured(ServeRole::All, |s| {
        settings(s);
        s.sandbox.emulator_gateway = Some(url);
    })
    .await;
    proxy.route_to(&app.emulators);
    app
}

async fn sandbox_transaction(app: &TestApp, id: &str) -> Value {
    let response = app
        .http
        .get(format!("{}/v1/transactions/{id}", app.emulators["sandbox"]))
        .bearer_auth(&app.settings.sandbox.api_key)
        .send()
        .await
        .unwrap();
    let (status, body) = json_of(response).await;
    assert_eq!(status, 200, "{body}");
    body
}

fn balance(balances: &[(String, Decimal)], account: &str) -> Decimal {
    balances
        .iter()
        .find(|(a, _)| a == account)
        .map_or(Decimal::ZERO, |(_, b)| *b)
}

/// One charge of `amount` at the sandbox: captured once, owed to the merchant once, and
/// every entry of the payment balanced.
fn assert_charged_once(balances: &[(String, Decimal)], amount: &str) {
    let amount: Decimal = amount.parse().unwrap();
    let total: Decimal = balances.iter().map(|(_, b)| *b).sum();
    assert_eq!(total, Decimal::ZERO, "unbalanced: {balances:?}");
    assert_eq!(
        balance(balances, "provider:sandbox:clearing"),
        amount,
        "{balances:?}"
    );
    // Owed to the merchant, less the fee taken once.
    assert_eq!(
        balance(balances, "merchant:merchant-a:payable") + balance(balances, "platform:fees"),
        -amount,
        "{balances:?}"
    );
    assert_eq!(balance(balances, "provider:wompi:clearing"), Decimal::ZERO);
}

async fn lost_answer_token_ends_approved_once_at_the_first_provider(
    token: &str,
    unknown_first: bool,
) {
    let app = start().await;
    let reference = format!("order-{token}");
    let created = app
        .create_payment(
            &format!("key-{token}"),
            &payment_body("150000.00", "COP", &reference, token, "automatic"),
        )
        .await;
    assert_eq!(created["provider"], "sandbox", "{created}");
    if unknown_first {
        assert_eq!(created["status"], "PENDING", "{created}");
        assert_eq!(created["provider_outcome"], "unknown", "{created}");
    }
    let id = id_of(&created);
    let approved = app.wait_for_status(&id, "APPROVED").await;
    assert_eq!(approved["provider"], "sandbox");
    assert!(approved.get("provider_outcome").is_none(), "{approved}");
    assert_eq!(
        attempts(&app, &id).await,
        ["sandbox"],
        "the second provider was asked"
    );
    let held = sandbox_transactions(&app, &reference).await;
    assert_eq!(held.len(), 1, "{held:?}");
    assert_eq!(held[0]["status"], "APPROVED");
    assert_eq!(held[0]["payment_id"], id.as_str());
    assert_eq!(approved["provider_reference"], held[0]["id"]);
    assert_charged_once(&journal_balances(&app, &id).await, "150000.00");
}

#[tokio::test]
async fn a_charge_whose_answer_is_held_past_the_timeout_is_approved_once_by_its_webhook() {
    lost_answer_token_ends_approved_once_at_the_first_provider(
        "tok_sandbox_approved_timeout",
        true,
    )
    .await;
}

#[tokio::test]
async fn a_charge_answered_503_is_approved_once_by_its_webhook() {
    lost_answer_token_ends_approved_once_at_the_first_provider("tok_sandbox_approved_503", true)
        .await;
}

#[tokio::test]
async fn a_charge_whose_webhook_never_comes_is_approved_once_by_the_resolver() {
    lost_answer_token_ends_approved_once_at_the_first_provider(
        "tok_sandbox_approved_silent",
        false,
    )
    .await;
}

#[tokio::test]
async fn a_create_cut_on_the_socket_stays_with_its_provider_and_its_webhook_settles_it() {
    let proxy = FaultProxy::start().await;
    let app = start_behind(&proxy).await;
    proxy.lose("sandbox", "POST", "/v1/transactions", Loss::Cut, 1);
    let created = app
        .create_payment(
            "cut-1",
            &payment_body(
                "75000.00",
                "COP",
                "cut-1",
                "tok_sandbox_approved",
                "automatic",
            ),
        )
        .await;
    assert_eq!(created["status"], "PENDING", "{created}");
    assert_eq!(created["provider_outcome"], "unknown", "{created}");
    let id = id_of(&created);
    app.wait_for_status(&id, "APPROVED").await;
    assert_eq!(proxy.count("sandbox", "POST", "/v1/transactions"), 1);
    assert_eq!(proxy.count("wompi", "POST", "/transactions"), 0);
    assert_eq!(sandbox_transactions(&app, "cut-1").await.len(), 1);
    assert_charged_once(&journal_balances(&app, &id).await, "75000.00");
}

#[tokio::test]
async fn a_same_key_retry_after_a_lost_answer_finds_the_charge_instead_of_making_another() {
    let proxy = FaultProxy::start().await;
    let app = start_behind(&proxy).await;
    // The answer is held past the timeout; the webhook is lost with the reconciler off, so
    // only the retry's lookup by reference can tell.
    proxy.lose(
        "sandbox",
        "POST",
        "/v1/transactions",
        Loss::Hold(Duration::from_secs(5)),
        1,
    );
    let body = payment_body(
        "20.00",
        "USD",
        "retry-1",
        "tok_sandbox_approved",
        "automatic",
    );
    let created = app.create_payment("retry-1", &body).await;
    assert_eq!(created["provider_outcome"], "unknown", "{created}");
    let response = app
        .post("/v1/payments", &app.checkout_key, Some("retry-1"), &body)
        .await;
    let (status, again) = json_of(response).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["id"], created["id"]);
    assert!(again["provider_reference"].is_string(), "{again}");
    let id = id_of(&created);
    app.wait_for_status(&id, "APPROVED").await;
    assert_eq!(
        proxy.count("sandbox", "POST", "/v1/transactions"),
        1,
        "no second create"
    );
    assert_eq!(sandbox_transactions(&app, "retry-1").await.len(), 1);
}

async fn authorized(app: &TestApp, key: &str) -> String {
    let created = app
        .create_payment(
            key,
            &payment_body("300.00", "USD", key, "tok_sandbox_approved", "manual"),
        )
        .await;
    let id = id_of(&created);
    app.wait_for_status(&id, "AUTHORIZED").await;
    id
}

#[tokio::test]
async fn a_capture_whose_answer_is_lost_is_the_same_capture_on_retry() {
    let proxy = FaultProxy::start().await;
    let app = start_behind(&proxy).await;
    let id = authorized(&app, "cap-1").await;
    proxy.lose(
        "sandbox",
        "POST",
        "/capture",
        Loss::Hold(Duration::from_secs(5)),
        1,
    );
    let capture = json!({"amount": "120.00"});
    let path = format!("/v1/payments/{id}/capture");
    let first = app
        .post(&path, &app.checkout_key, Some("cap-key"), &capture)
        .await;
    let (status, problem) = json_of(first).await;
    assert_eq!(status, 504, "{problem}");
    assert_eq!(
        problem["type"]
            .as_str()
            .map(|t| t.ends_with("provider-outcome-unknown")),
        Some(true),
        "{problem}"
    );
    // The intent is in the stream and nothing failed it: the capture may have happened (the
    // provider's webhook may already have said so, on a busy machine before this read).
    let events = app.event_types(&id).await;
    assert!(events.iter().any(|e| e == "CaptureRequested"), "{events:?}");
    assert!(
        matches!(
            events.last().map(String::as_str),
            Some("CaptureRequested" | "PaymentApproved")
        ),
        "{events:?}"
    );
    // The same capture again: the provider already made it and answers it; 200, not 422.
    let retry = app
        .post(&path, &app.checkout_key, Some("cap-key"), &capture)
        .await;
    let (status, captured) = json_of(retry).await;
    assert_eq!(status, 200, "{captured}");
    assert_eq!(captured["status"], "APPROVED");
    assert_eq!(captured["captured_amount"], "120.00");
    let at_provider =
        sandbox_transaction(&app, captured["provider_reference"].as_str().unwrap()).await;
    assert_eq!(at_provider["captured_amount"], "120.00");
    assert_eq!(proxy.count("sandbox", "POST", "/capture"), 2);
    let events = app.event_types(&id).await;
    assert_eq!(
        events.iter().filter(|e| *e == "PaymentApproved").count(),
        1,
        "{events:?}"
    );
}

#[tokio::test]
async fn a_void_whose_answer_is_cut_is_finished_by_the_resolver() {
    let proxy = FaultProxy::start().await;
    let app = start_behind(&proxy).await;
    let id = authorized(&app, "void-1").await;
    proxy.lose("sandbox", "POST", "/void", Loss::Cut, 1);
    let response = app
        .post(
            &format!("/v1/payments/{id}/void"),
            &app.checkout_key,
            None,
            &json!({}),
        )
        .await;
    assert_eq!(response.status(), 504);
    let voided = app.wait_for_status(&id, "VOIDED").await;
    let at_provider =
        sandbox_transaction(&app, voided["provider_reference"].as_str().unwrap()).await;
    assert_eq!(at_provider["status"], "VOIDED");
    let events = app.event_types(&id).await;
    assert_eq!(
        events.iter().filter(|e| *e == "VoidRequested").count(),
        1,
        "{events:?}"
    );
    assert_eq!(events.last().map(String::as_str), Some("PaymentVoided"));
}

#[tokio::test]
async fn a_refund_whose_answer_is_cut_is_finished_once_by_the_resolver() {
    let proxy = FaultProxy::start().await;
    let app = start_behind(&proxy).await;
    let created = app
        .create_payment(
            "rf-1",
            &payment_body("90.00", "USD", "rf-1", "tok_sandbox_approved", "automatic"),
        )
        .await;
    let id = id_of(&created);
    app.wait_for_status(&id, "APPROVED").await;
    proxy.lose("sandbox", "POST", "/refunds", Loss::Cut, 1);
    let response = app
        .post(
            &format!("/v1/payments/{id}/refunds"),
            &app.checkout_key,
            Some("rf-key"),
            &json!({"amount": "40.00"}),
        )
        .await;
    let (status, refund) = json_of(response).await;
    assert_eq!(status, 202, "{refund}");
    assert_eq!(refund["status"], "PENDING", "{refund}");
    let refunded = app.wait_for_status(&id, "PARTIALLY_REFUNDED").await;
    assert_eq!(refunded["refunded_amount"], "40.00");
    let at_provider =
        sandbox_transaction(&app, refunded["provider_reference"].as_str().unwrap()).await;
    assert_eq!(
        at_provider["refunded_amount"], "40.00",
        "refunded once at the provider"
    );
    assert_eq!(proxy.count("sandbox", "POST", "/refunds"), 2);
}

/// A card payment Wompi approved (preferred, with a Wompi card token): its id.
async fn approved_at_wompi(app: &TestApp, reference: &str) -> String {
    let public_key = connectors::wompi::WompiConfig::from_env().public_key;
    let token: Value = app
        .http
        .post(format!("{}/tokens/cards", app.emulators["wompi"]))
        .bearer_auth(public_key)
        .json(
            &json!({"number": "4242424242424242", "cvc": "123", "exp_month": "12",
                      "exp_year": "35", "card_holder": "Pedro Pérez"}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let body = json!({
        "amount": "50000.00", "currency": "COP", "reference": reference,
        "payment_method": {"type": "CARD", "token": token["data"]["id"]},
        "provider": "wompi", "customer_email": "payer@example.com",
    });
    let created = app.create_payment(reference, &body).await;
    let id = id_of(&created);
    let approved = app.wait_for_status(&id, "APPROVED").await;
    assert_eq!(approved["provider"], "wompi");
    id
}

/// A payment Wompi took, and a transaction of the sandbox for the same payment (forced by
/// creating it directly there, with `capture`): the payment's id, and the orphan's event once
/// its compensation is recorded.
async fn orphan_at_the_sandbox(app: &TestApp, reference: &str, capture: &str) -> (String, Value) {
    let id = approved_at_wompi(app, reference).await;

    // The sandbox, too, takes a charge for this payment and reports it.
    let response = app
        .http
        .post(format!("{}/v1/transactions", app.emulators["sandbox"]))
        .bearer_auth(&app.settings.sandbox.api_key)
        .json(&json!({
            "payment_id": id, "reference": reference, "amount": "50000.00",
            "currency": "COP", "method": "CARD", "token": "tok_sandbox_approved",
            "capture": capture,
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);

    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let events = app.event_types(&id).await;
        if events.iter().any(|e| e == "OrphanCompensated") {
            assert!(
                events.iter().any(|e| e == "ProviderTransactionOrphaned"),
                "{events:?}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "never compensated: {events:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let orphans = orphans_of(app, &id).await;
    assert_eq!(orphans.len(), 1, "{orphans:?}");
    // The payment itself is untouched: still Wompi's, approved.
    let shown = app
        .get(&format!("/v1/payments/{id}"), &app.checkout_key)
        .await;
    let (_, shown) = json_of(shown).await;
    assert_eq!(
        (shown["status"].as_str(), shown["provider"].as_str()),
        (Some("APPROVED"), Some("wompi"))
    );
    (id, orphans[0]["ProviderTransactionOrphaned"].clone())
}

/// Journal lines of a payment on `account`.
async fn lines_on(app: &TestApp, id: &str, account: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM journal_entries WHERE payment_id = $1::uuid AND account = $2",
    )
    .bind(id)
    .bind(account)
    .fetch_one(&app.pool)
    .await
    .unwrap()
}

async fn orphan_app() -> TestApp {
    spawn_app_configured(ServeRole::All, |s| {
        s.routing.providers = vec!["sandbox".into(), "wompi".into()];
        s.routing.reconcile_after_ms = 0;
        s.routing.reconcile_interval_ms = 200;
    })
    .await
}

/// The `ProviderTransactionOrphaned` payloads of a payment.
async fn orphans_of(app: &TestApp, id: &str) -> Vec<Value> {
    sqlx::query_scalar(
        "SELECT payload::jsonb FROM events WHERE aggregate_id = $1
            AND event_type = 'ProviderTransactionOrphaned'",
    )
    .bind(id)
    .fetch_all(&app.pool)
    .await
    .unwrap()
}

/// A verified notification of a transaction the payment does not hold is answered 2xx only
/// once the orphan is in the stream: a provider that hears 2xx never sends it again, so
/// nothing it said may still be in flight then.
#[tokio::test]
async fn an_orphan_is_in_the_stream_before_its_notification_is_answered() {
    let app = orphan_app().await;
    let id = approved_at_wompi(&app, "orphan-notified").await;
    let body = serde_json::to_vec(&json!({
        "id": "evt_orphan_notified",
        "type": "transaction.updated",
        "created_at": "2026-11-21T00:00:00Z",
        "data": {
            "transaction_id": "sbx_tx_orphan_notified",
            "payment_id": id,
            "status": "APPROVED",
            "amount": "50000.00",
            "currency": "COP",
            "reason": null
        }
    }))
    .unwrap();
    let signature = sandbox_signature(app.settings.sandbox.webhook_secret.as_bytes(), &body);
    let deliver = || {
        app.http
            .post(format!("{}/v1/webhooks/sandbox", app.address))
            .header("Content-Type", "application/json")
            .header(SANDBOX_SIGNATURE_HEADER, &signature)
            .body(body.clone())
            .send()
    };
    let answered = deliver().await.unwrap();
    assert!(answered.status().is_success(), "{}", answered.status());
    // Read at once, with no wait: the answer came after the append.
    let orphans = orphans_of(&app, &id).await;
    assert_eq!(orphans.len(), 1, "{orphans:?}");
    let orphan = &orphans[0]["ProviderTransactionOrphaned"];
    assert_eq!(
        (
            orphan["provider"].as_str(),
            orphan["provider_transaction_id"].as_str(),
            orphan["status"].as_str()
        ),
        (
            Some("sandbox"),
            Some("sbx_tx_orphan_notified"),
            Some("APPROVED")
        ),
        "{orphan}"
    );
    // Told again, it is the same orphan.
    assert!(deliver().await.unwrap().status().is_success());
    assert_eq!(orphans_of(&app, &id).await.len(), 1);
}

/// A captured transaction of a provider the payment does not use is recorded and refunded
/// there.
#[tokio::test]
async fn an_orphaned_charge_is_recorded_refunded_at_its_provider_and_cleared_in_the_ledger() {
    let app = orphan_app().await;
    let (id, orphan) = orphan_at_the_sandbox(&app, "orphan-1", "automatic").await;
    assert_eq!(orphan["provider"], "sandbox");
    assert_eq!(orphan["status"], "APPROVED");
    assert_eq!(orphan["compensation"], "refund");
    let at_sandbox =
        sandbox_transaction(&app, orphan["provider_transaction_id"].as_str().unwrap()).await;
    assert_eq!(
        at_sandbox["refunded_amount"], "50000.00",
        "given back at the sandbox"
    );
    let balances = journal_balances(&app, &id).await;
    assert_eq!(
        balance(&balances, "orphans:clearing"),
        Decimal::ZERO,
        "{balances:?}"
    );
    assert_eq!(
        balance(&balances, "provider:sandbox:clearing"),
        Decimal::ZERO,
        "{balances:?}"
    );
    assert_eq!(
        lines_on(&app, &id, "orphans:clearing").await,
        2,
        "held, then returned"
    );
}

/// An authorization of a provider the payment does not use is recorded and voided there:
/// the hold it placed is released, at the provider and in the ledger.
#[tokio::test]
async fn an_orphaned_authorization_is_recorded_voided_at_its_provider_and_released_in_the_ledger() {
    let app = orphan_app().await;
    let (id, orphan) = orphan_at_the_sandbox(&app, "orphan-hold-1", "manual").await;
    assert_eq!(orphan["provider"], "sandbox");
    assert_eq!(orphan["status"], "AUTHORIZED");
    assert_eq!(orphan["compensation"], "void");
    let at_sandbox =
        sandbox_transaction(&app, orphan["provider_transaction_id"].as_str().unwrap()).await;
    assert_eq!(
        (
            at_sandbox["status"].as_str(),
            at_sandbox["captured_amount"].as_str()
        ),
        (Some("VOIDED"), Some("0.00")),
        "released at the sandbox: {at_sandbox}"
    );
    let balances = journal_balances(&app, &id).await;
    assert_eq!(
        balance(&balances, "provider:sandbox:authorizations"),
        Decimal::ZERO,
        "{balances:?}"
    );
    assert_eq!(
        balance(&balances, "provider:sandbox:clearing"),
        Decimal::ZERO,
        "nothing captured at the sandbox: {balances:?}"
    );
    assert_eq!(
        lines_on(&app, &id, "provider:sandbox:authorizations").await,
        2,
        "held, then released"
    );
    assert_eq!(lines_on(&app, &id, "orphans:clearing").await, 0);
}

/// A provider without a lookup that never says what became of a create: the payment stays
/// pending with its outcome unknown, and past the review horizon an operator is told.
#[tokio::test]
async fn an_attempt_nobody_can_resolve_is_flagged_for_review_listed_and_counted() {
    let app = spawn_app_configured(ServeRole::All, |s| {
        s.routing.providers = vec!["gcash".into()];
        s.routing.provider_attempt_timeout_ms = ATTEMPT_TIMEOUT_MS;
        s.routing.reconcile_after_ms = 0;
        s.routing.reconcile_interval_ms = 100;
        s.routing.reconcile_review_after_ms = 300;
    })
    .await;
    let root = app.emulators["gcash"].trim_end_matches('/').to_owned();
    let fault = app
        .http
        .post(format!("{root}/_sandbox/faults"))
        .json(&json!({ "create": "server_error" }))
        .send()
        .await
        .unwrap();
    assert!(fault.status().is_success());
    let created = app
        .create_payment(
            "review-1",
            &json!({
                "amount": "800.00", "currency": "PHP", "reference": "review-1",
                "payment_method": {"type": "GCASH"},
                "return_url": "https://shop.example/return",
            }),
        )
        .await;
    assert_eq!(created["provider_outcome"], "unknown", "{created}");
    let id = id_of(&created);

    let deadline = Instant::now() + Duration::from_secs(10);
    let listed = loop {
        let response = app
            .get("/v1/payments?status=needs_review", &app.checkout_key)
            .await;
        let (status, page) = json_of(response).await;
        assert_eq!(status, 200, "{page}");
        let items = page["data"].as_array().cloned().unwrap_or_default();
        if !items.is_empty() {
            break items;
        }
        assert!(Instant::now() < deadline, "never flagged: {page}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"], id.as_str());
    assert_eq!(listed[0]["needs_review"], "attempt");
    assert_eq!(listed[0]["status"], "PENDING");
    assert_eq!(listed[0]["provider_outcome"], "unknown");
    let events = app.event_types(&id).await;
    assert_eq!(
        events.iter().filter(|e| *e == "PaymentNeedsReview").count(),
        1,
        "flagged once, not once per round: {events:?}"
    );
    let health: Value = app
        .http
        .get(format!("{}/health", app.address))
        .bearer_auth(&app.admin_key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["intents"]["needs_review"], 1, "{health}");
    assert_eq!(health["intents"]["provider_outcome_unknown"], 1, "{health}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let failures: Option<i64> = sqlx::query_scalar(
            "SELECT count FROM payment_failures WHERE reason = 'needs_review:attempt'",
        )
        .fetch_optional(&app.pool)
        .await
        .unwrap();
        if failures == Some(1) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not in the failures read model: {failures:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
