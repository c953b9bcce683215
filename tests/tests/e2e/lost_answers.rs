//! Lost answers at every provider's emulator, on the socket: a gateway between payledger and
//! the emulators forwards each request (the emulator acts on it) and then cuts the answer or
//! holds it past payledger's bound. For every create, capture, void and refund a provider
//! supports (Wompi's void only compensates orphans: it takes no manual capture), what a user checks afterwards:
//! - the payment ends in the state the provider holds (asked here, over HTTP, with the test's
//!   own requests), and payledger's view, event stream and journal agree with it;
//! - the provider got the write as many times as expected: never a second create after an
//!   unknown outcome, one capture/void/refund at the provider whatever was re-sent;
//! - the next provider that takes the method is never asked after an unknown create;
//! - without a lookup by reference (GCash through PayMongo) a same-key retry makes nothing new.

use std::str::FromStr;
use std::time::{Duration, Instant};

use api::config::ServeRole;
use connectors::ebanx::EbanxConfig;
use connectors::maya::MayaConfig;
use connectors::paymongo::PaymongoConfig;
use connectors::payu::PayuConfig;
use connectors::wompi::WompiConfig;
use e2e::fault_proxy::{FaultProxy, Loss};
use e2e::support::{
    attempts, expected_fee, id_of, journal_balances, json_of, sandbox_transactions,
};
use e2e::{spawn_app_configured, TestApp};
use rust_decimal::Decimal;
use secrecy::ExposeSecret;
use serde_json::{json, Value};

const PAYMENTS: &str = "/v1/payments";
/// The bound of one create attempt.
const ATTEMPT_TIMEOUT_MS: u64 = 600;
/// The bound of one command's provider calls: what a capture, void or refund waits at most.
const BUDGET_MS: u64 = 2_000;
/// Longer than both bounds: a held answer comes after payledger gave up on it.
const HOLD: Duration = Duration::from_secs(8);
/// How long any state is waited for.
const WAIT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------

/// payledger with `providers` (in priority order), its adapters reaching their emulators
/// through `proxy`, a short attempt timeout and budget, and a resolver that runs every 200 ms
/// for every open intent.
async fn start_behind(proxy: &FaultProxy, providers: &[&str]) -> TestApp {
    let gateway = proxy.url();
    let app = spawn_app_configured(ServeRole::All, |s| {
        s.routing.providers = providers.iter().map(|p| (*p).to_owned()).collect();
        s.routing.provider_attempt_timeout_ms = ATTEMPT_TIMEOUT_MS;
        s.routing.provider_budget_ms = BUDGET_MS;
        s.routing.reconcile_after_ms = 0;
        s.routing.reconcile_interval_ms = 200;
        s.sandbox.emulator_gateway = Some(gateway);
    })
    .await;
    proxy.route_to(&app.emulators);
    app
}

/// Polls the payment (the status projection) until `done` holds, for at most [`WAIT`].
async fn view_until(app: &TestApp, id: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let (status, view) = json_of(
            app.get(&format!("{PAYMENTS}/{id}"), &app.checkout_key)
                .await,
        )
        .await;
        if status == 200 && done(&view) {
            return view;
        }
        assert!(Instant::now() < deadline, "never {what}: {status} {view}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Requests relayed to `provider` with `method` whose path is exactly `path`.
fn sent_exactly(proxy: &FaultProxy, provider: &str, method: &str, path: &str) -> usize {
    proxy
        .relayed()
        .iter()
        .filter(|r| r.provider == provider && r.method == method && r.path == path)
        .count()
}

/// The gateway lost exactly one answer: the one to `method` on `provider`'s `path`.
fn assert_lost_once(proxy: &FaultProxy, provider: &str, method: &str, path: &str) {
    let lost: Vec<String> = proxy
        .relayed()
        .iter()
        .filter(|r| r.lost)
        .map(|r| format!("{} {} {}", r.provider, r.method, r.path))
        .collect();
    assert_eq!(
        lost,
        [format!("{provider} {method} {path}")],
        "answers lost"
    );
}

/// Every request relayed to `provider`, as `METHOD path`.
fn relayed_to(proxy: &FaultProxy, provider: &str) -> Vec<String> {
    proxy
        .relayed()
        .iter()
        .filter(|r| r.provider == provider)
        .map(|r| format!("{} {}", r.method, r.path))
        .collect()
}

fn dec(text: &str) -> Decimal {
    Decimal::from_str(text).unwrap_or_else(|_| panic!("not a decimal: {text}"))
}

/// A JSON amount that may be a number or a string.
fn dec_of(value: &Value) -> Decimal {
    match value {
        Value::String(s) => dec(s),
        Value::Number(n) => dec(&n.to_string()),
        other => panic!("not an amount: {other}"),
    }
}

async fn count_events(app: &TestApp, id: &str, event_type: &str) -> usize {
    app.event_types(id)
        .await
        .iter()
        .filter(|t| *t == event_type)
        .count()
}

/// A create whose answer was lost: `201`, PENDING at `provider`, its outcome unknown.
/// The provider an intent of the payment (`CaptureRequested`, `VoidRequested`) names.
async fn intent_provider(app: &TestApp, id: &str, event_type: &str) -> String {
    let payload: Value = sqlx::query_scalar(
        "SELECT payload::jsonb FROM events WHERE aggregate_id = $1 AND event_type = $2",
    )
    .bind(id)
    .bind(event_type)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    payload[event_type]["provider"]
        .as_str()
        .unwrap_or_else(|| panic!("{event_type} names no provider: {payload}"))
        .to_owned()
}

fn assert_created_unknown(created: &Value, provider: &str) {
    assert_eq!(created["status"], "PENDING", "{created}");
    assert_eq!(created["provider"], provider, "{created}");
    assert_eq!(created["provider_outcome"], "unknown", "{created}");
    assert!(created["provider_reference"].is_null(), "{created}");
}

/// After an unknown create: every intent at `provider` (a re-send is the same attempt), none
/// failed over; no other provider (the next in line among them) was sent anything at all.
async fn assert_never_fell_back(app: &TestApp, proxy: &FaultProxy, id: &str, provider: &str) {
    let attempts = attempts(app, id).await;
    assert!(
        !attempts.is_empty() && attempts.iter().all(|p| p == provider),
        "attempts only at {provider}: {attempts:?}"
    );
    assert_eq!(count_events(app, id, "ProviderAttemptFailed").await, 0);
    for other in ["sandbox", "wompi", "payu", "maya", "gcash", "ebanx"] {
        if other != provider {
            assert_eq!(
                relayed_to(proxy, other),
                Vec::<String>::new(),
                "{other} was asked"
            );
        }
    }
}

/// The same Idempotency-Key and body again.
async fn retry_create(app: &TestApp, key: &str, body: &Value) -> (u16, Value) {
    json_of(app.post(PAYMENTS, &app.checkout_key, Some(key), body).await).await
}

/// A `504 provider-outcome-unknown` problem.
async fn assert_outcome_unknown(response: reqwest::Response, what: &str) {
    let (status, problem) = json_of(response).await;
    assert_eq!(status, 504, "{what}: {problem}");
    assert!(
        problem["type"]
            .as_str()
            .is_some_and(|t| t.ends_with("provider-outcome-unknown")),
        "{what}: {problem}"
    );
}

async fn capture(app: &TestApp, id: &str, key: &str, amount: &str) -> reqwest::Response {
    app.post(
        &format!("{PAYMENTS}/{id}/capture"),
        &app.checkout_key,
        Some(key),
        &json!({ "amount": amount }),
    )
    .await
}

async fn void(app: &TestApp, id: &str) -> reqwest::Response {
    app.post(
        &format!("{PAYMENTS}/{id}/void"),
        &app.checkout_key,
        None,
        &json!({}),
    )
    .await
}

/// A refund whose answer was lost: accepted, `PENDING`, its amount reserved; then found at
/// the provider once, settled once, one request and one refund in the stream. The payment as
/// it ends.
async fn refund_lost_then_found_once(app: &TestApp, id: &str, key: &str, amount: &str) -> Value {
    let response = app
        .post(
            &format!("{PAYMENTS}/{id}/refunds"),
            &app.checkout_key,
            Some(key),
            &json!({ "amount": amount }),
        )
        .await;
    let (status, refund) = json_of(response).await;
    assert!(status == 201 || status == 202, "{status} {refund}");
    assert_eq!(refund["status"], "PENDING", "{refund}");
    assert_eq!(refund["amount"], amount, "{refund}");

    let refunded = app.wait_for_status(id, "PARTIALLY_REFUNDED").await;
    assert_eq!(refunded["refunded_amount"], amount, "{refunded}");
    assert_settled_once(app, id, &refunded).await;
    assert_eq!(count_events(app, id, "RefundRequested").await, 1);
    assert_eq!(count_events(app, id, "PaymentRefunded").await, 1);
    refunded
}

/// What a payment settled at `provider` must leave in its journal: `captured` owed by the
/// provider less `refunded`, the merchant owed that less the fee the schedule implies for
/// `captured`, no hold left open, and no account of any other provider.
async fn assert_journal(
    app: &TestApp,
    id: &str,
    provider: &str,
    method: &str,
    currency: &str,
    captured: &str,
    refunded: &str,
) {
    let balances = journal_balances(app, id).await;
    let balance = |account: &str| {
        balances
            .iter()
            .find(|(a, _)| a == account)
            .map_or(Decimal::ZERO, |(_, b)| *b)
    };
    let captured = dec(captured);
    let net = captured - dec(refunded);
    let fee = if captured.is_zero() {
        Decimal::ZERO
    } else {
        dec(&expected_fee(
            provider,
            method,
            currency,
            &captured.to_string(),
        ))
    };
    let total: Decimal = balances.iter().map(|(_, b)| *b).sum();
    assert_eq!(total, Decimal::ZERO, "unbalanced: {balances:?}");
    let clearing = format!("provider:{provider}:clearing");
    let holds = format!("provider:{provider}:authorizations");
    assert_eq!(balance(&clearing), net, "{balances:?}");
    assert_eq!(
        balance("merchant:merchant-a:payable"),
        -(net - fee),
        "{balances:?}"
    );
    assert_eq!(balance("platform:fees"), -fee, "{balances:?}");
    assert_eq!(balance(&holds), Decimal::ZERO, "{balances:?}");
    assert_eq!(
        balance("customer:funds_in_flight"),
        Decimal::ZERO,
        "{balances:?}"
    );
    let known = [
        clearing.as_str(),
        holds.as_str(),
        "merchant:merchant-a:payable",
        "platform:fees",
        "customer:funds_in_flight",
    ];
    for (account, _) in &balances {
        assert!(
            known.contains(&account.as_str()),
            "unexpected account {account}: {balances:?}"
        );
    }
}

/// What `/health` says an operator must look at: `unknown` provider calls without an outcome,
/// nothing flagged for review, nothing dead-lettered by any projection.
async fn assert_health(app: &TestApp, unknown: u64) {
    let (status, health) = json_of(
        app.http
            .get(format!("{}/health", app.address))
            .bearer_auth(&app.admin_key)
            .send()
            .await
            .expect("health"),
    )
    .await;
    assert_eq!(status, 200, "{health}");
    assert_eq!(
        health["intents"],
        json!({"needs_review": 0, "provider_outcome_unknown": unknown}),
        "{health}"
    );
    for projection in health["projections"].as_array().expect("projections") {
        assert_eq!(projection["dead_lettered"], 0, "{health}");
    }
}

/// Once settled: exactly one approval, no orphan, no outcome or action left open.
async fn assert_settled_once(app: &TestApp, id: &str, view: &Value) {
    let events = app.event_types(id).await;
    let count = |t: &str| events.iter().filter(|e| *e == t).count();
    assert_eq!(count("PaymentApproved"), 1, "{events:?}");
    assert!(count("ProviderTransactionCreated") <= 1, "{events:?}");
    assert_eq!(count("ProviderTransactionOrphaned"), 0, "{events:?}");
    assert_eq!(count("CaptureFailed"), 0, "{events:?}");
    assert_eq!(count("RefundFailed"), 0, "{events:?}");
    assert!(view["provider_outcome"].is_null(), "{view}");
    assert!(view["pending_action"].is_null(), "{view}");
}

// ---------------------------------------------------------------------------------------------
// Wompi: create only (no manual capture, so nothing to capture or void; refunds only in its
// dashboard)
// ---------------------------------------------------------------------------------------------

/// Wompi's sandbox test cards: approved, declined.
const WOMPI_APPROVED_CARD: &str = "4242424242424242";
const WOMPI_DECLINED_CARD: &str = "4111111111111111";

/// A card token from the Wompi emulator, with the public key, as a checkout gets it.
async fn wompi_card_token(app: &TestApp, number: &str) -> String {
    let response = app
        .http
        .post(format!("{}/tokens/cards", app.emulators["wompi"]))
        .bearer_auth(WompiConfig::from_env().public_key)
        .json(&json!({
            "number": number, "cvc": "123", "exp_month": "12",
            "exp_year": "35", "card_holder": "Pedro Pérez",
        }))
        .send()
        .await
        .expect("tokenize");
    let (status, body) = json_of(response).await;
    assert_eq!(status, 201, "{body}");
    body["data"]["id"].as_str().expect("token id").to_owned()
}

/// Every transaction Wompi holds with `payment_id` as its reference (private key).
async fn wompi_transactions(app: &TestApp, payment_id: &str) -> Vec<Value> {
    let response = app
        .http
        .get(format!("{}/transactions", app.emulators["wompi"]))
        .query(&[("reference", payment_id)])
        .bearer_auth(WompiConfig::from_env().private_key.expose_secret())
        .send()
        .await
        .expect("search wompi");
    let (status, body) = json_of(response).await;
    assert_eq!(status, 200, "{body}");
    body["data"].as_array().expect("a list").clone()
}

#[tokio::test]
async fn wompi_create_cut_after_sending_is_approved_once_and_payu_is_never_asked() {
    let proxy = FaultProxy::start().await;
    let app = start_behind(&proxy, &["wompi", "payu"]).await;
    let token = wompi_card_token(&app, WOMPI_APPROVED_CARD).await;
    proxy.lose("wompi", "POST", "/v1/transactions", Loss::Cut, 1);
    // No preference: PayU, next in line, takes cards in COP too.
    let body = json!({
        "amount": "129000.00", "currency": "COP", "reference": "wl-create",
        "payment_method": {"type": "CARD", "token": token},
        "customer_email": "payer@example.com",
    });
    let created = app.create_payment("wl-create", &body).await;
    assert_created_unknown(&created, "wompi");
    let id = id_of(&created);

    let approved = app.wait_for_status(&id, "APPROVED").await;
    assert_eq!(approved["provider"], "wompi", "{approved}");
    assert_eq!(approved["captured_amount"], "129000.00", "{approved}");
    assert_settled_once(&app, &id, &approved).await;

    // Wompi holds one transaction for the payment, approved, the one the ledger names.
    let held = wompi_transactions(&app, &id).await;
    assert_eq!(held.len(), 1, "{held:?}");
    assert_eq!(held[0]["status"], "APPROVED", "{held:?}");
    assert_eq!(held[0]["amount_in_cents"], 12_900_000, "{held:?}");
    assert_eq!(approved["provider_reference"], held[0]["id"], "{approved}");
    assert_eq!(sent_exactly(&proxy, "wompi", "POST", "/v1/transactions"), 1);
    assert_never_fell_back(&app, &proxy, &id, "wompi").await;
    assert_lost_once(&proxy, "wompi", "POST", "/v1/transactions");
    assert_journal(&app, &id, "wompi", "CARD", "COP", "129000.00", "0").await;
    assert_health(&app, 0).await;
}

#[tokio::test]
async fn wompi_declined_create_cut_after_sending_ends_declined_and_payu_is_never_asked() {
    let proxy = FaultProxy::start().await;
    let app = start_behind(&proxy, &["wompi", "payu"]).await;
    let token = wompi_card_token(&app, WOMPI_DECLINED_CARD).await;
    proxy.lose("wompi", "POST", "/v1/transactions", Loss::Cut, 1);
    let body = json!({
        "amount": "64000.00", "currency": "COP", "reference": "wl-declined",
        "payment_method": {"type": "CARD", "token": token},
        "customer_email": "payer@example.com",
    });
    let created = app.create_payment("wl-declined", &body).await;
    assert_created_unknown(&created, "wompi");
    let id = id_of(&created);

    // Wompi declined it: so does the ledger, and nothing is charged or tried elsewhere.
    let declined = app.wait_for_status(&id, "DECLINED").await;
    assert_eq!(declined["provider"], "wompi", "{declined}");
    assert_eq!(declined["captured_amount"], "0.00", "{declined}");
    assert!(declined["provider_outcome"].is_null(), "{declined}");
    let held = wompi_transactions(&app, &id).await;
    assert_eq!(held.len(), 1, "{held:?}");
    assert_eq!(held[0]["status"], "DECLINED", "{held:?}");
    assert_eq!(declined["provider_reference"], held[0]["id"], "{declined}");
    let events = app.event_types(&id).await;
    let count = |t: &str| events.iter().filter(|e| *e == t).count();
    assert_eq!(
        (
            count("PaymentDeclined"),
            count("PaymentApproved"),
            count("PaymentFailed")
        ),
        (1, 0, 0),
        "{events:?}"
    );
    assert_eq!(sent_exactly(&proxy, "wompi", "POST", "/v1/transactions"), 1);
    assert_never_fell_back(&app, &proxy, &id, "wompi").await;
    assert_lost_once(&proxy, "wompi", "POST", "/v1/transactions");
    assert_journal(&app, &id, "wompi", "CARD", "COP", "0", "0").await;
    assert_health(&app, 0).await;
}

// ---------------------------------------------------------------------------------------------
// PayU: create, capture, void, refund (every call is a POST to one of two command URLs)
// ---------------------------------------------------------------------------------------------

const PAYU_PAYMENTS_API: &str = "/payments-api/4.0/service.cgi";

fn payu_card(amount: &str, reference: &str, capture: &str) -> Value {
    json!({
        "amount": amount, "currency": "COP", "reference": reference,
        "payment_method": {"type": "CARD", "token": "tok_payu_approved"},
        "capture": capture, "customer_email": "payer@example.com",
    })
}

/// Every order PayU holds with `payment_id` as its `referenceCode`, asked over HTTP with the
/// account's keys (`ORDER_DETAIL_BY_REFERENCE_CODE`).
async fn payu_orders(app: &TestApp, payment_id: &str) -> Vec<Value> {
    let config = PayuConfig::from_env();
    let root = app.emulators["payu"].trim_end_matches('/').to_owned();
    let response = app
        .http
        .post(format!("{root}/reports-api/4.0/service.cgi"))
        .header("Accept", "application/json")
        .json(&json!({
            "language": "es",
            "command": "ORDER_DETAIL_BY_REFERENCE_CODE",
            "merchant": {"apiKey": config.api_key.expose_secret(), "apiLogin": config.api_login},
            "details": {"referenceCode": payment_id},
            "test": false,
        }))
        .send()
        .await
        .expect("ORDER_DETAIL_BY_REFERENCE_CODE");
    let (status, body) = json_of(response).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["code"], "SUCCESS", "{body}");
    match &body["result"]["payload"] {
        Value::Null => Vec::new(),
        Value::Array(orders) => orders.clone(),
        other => panic!("not a list of orders: {other}"),
    }
}

/// The one order PayU holds for the payment.
async fn payu_order(app: &TestApp, payment_id: &str) -> Value {
    let orders = payu_orders(app, payment_id).await;
    assert_eq!(orders.len(), 1, "one order at PayU: {orders:?}");
    orders[0].clone()
}

/// The order's approved transactions of `kind` (`CAPTURE`, `VOID`, `REFUND`, ...).
fn payu_approved(order: &Value, kind: &str) -> Vec<Value> {
    order["transactions"]
        .as_array()
        .expect("transactions")
        .iter()
        .filter(|t| t["type"] == kind && t["transactionResponse"]["state"] == "APPROVED")
        .cloned()
        .collect()
}

fn payu_amount(transaction: &Value) -> Decimal {
    dec_of(&transaction["additionalValues"]["TX_VALUE"]["value"])
}

/// A PayU card authorization (manual capture), AUTHORIZED in the ledger.
async fn payu_authorized(app: &TestApp, key: &str, amount: &str) -> String {
    let created = app
        .create_payment(key, &payu_card(amount, key, "manual"))
        .await;
    assert_eq!(created["provider"], "payu", "{created}");
    let id = id_of(&created);
    app.wait_for_status(&id, "AUTHORIZED").await;
    id
}

#[tokio::test]
async fn payu_create_held_past_the_attempt_timeout_is_approved_once_and_wompi_is_never_asked() {
    let proxy = FaultProxy::start().await;
    let app = start_behind(&proxy, &["payu", "wompi"]).await;
    proxy.lose("payu", "POST", PAYU_PAYMENTS_API, Loss::Hold(HOLD), 1);
    let started = Instant::now();
    // No preference: Wompi, next in line, takes cards in COP too.
    let created = app
        .create_payment(
            "pl-create",
            &payu_card("129000.00", "pl-create", "automatic"),
        )
        .await;
    assert!(
        started.elapsed() < Duration::from_millis(ATTEMPT_TIMEOUT_MS + 2_000),
        "the create waited {:?}",
        started.elapsed()
    );
    assert_created_unknown(&created, "payu");
    let id = id_of(&created);

    let approved = app.wait_for_status(&id, "APPROVED").await;
    assert_eq!(approved["provider"], "payu", "{approved}");
    assert_eq!(approved["captured_amount"], "129000.00", "{approved}");
    assert_settled_once(&app, &id, &approved).await;

    let order = payu_order(&app, &id).await;
    assert_eq!(order["status"], "CAPTURED", "{order}");
    let payments = payu_approved(&order, "AUTHORIZATION_AND_CAPTURE");
    assert_eq!(payments.len(), 1, "{order}");
    assert_eq!(
        approved["provider_reference"],
        format!("{}:{}", order["id"], payments[0]["id"].as_str().unwrap()),
        "{approved}"
    );
    assert_eq!(sent_exactly(&proxy, "payu", "POST", PAYU_PAYMENTS_API), 1);
    assert_never_fell_back(&app, &proxy, &id, "payu").await;
    assert_lost_once(&proxy, "payu", "POST", PAYU_PAYMENTS_API);
    assert_journal(&app, &id, "payu", "CARD", "COP", "129000.00", "0").await;
    assert_health(&app, 0).await;
}

#[tokio::test]
async fn payu_capture_held_past_the_budget_is_made_once_at_payu_and_recorded_once() {
    let proxy = FaultProxy::start().await;
    let app = start_behind(&proxy, &["payu", "wompi"]).await;
    let id = payu_authorized(&app, "pl-capture", "129000.00").await;
    let before = sent_exactly(&proxy, "payu", "POST", PAYU_PAYMENTS_API);
    proxy.lose("payu", "POST", PAYU_PAYMENTS_API, Loss::Hold(HOLD), 1);

    assert_outcome_unknown(
        capture(&app, &id, "pl-capture-1", "100000.00").await,
        "capture",
    )
    .await;
    let captured = view_until(&app, &id, "captured", |v| {
        v["status"] == "APPROVED" && v["pending_action"].is_null()
    })
    .await;
    assert_eq!(captured["captured_amount"], "100000.00", "{captured}");
    assert_eq!(captured["authorized_amount"], "129000.00", "{captured}");
    assert_settled_once(&app, &id, &captured).await;
    assert_eq!(count_events(&app, &id, "CaptureRequested").await, 1);
    assert_eq!(intent_provider(&app, &id, "CaptureRequested").await, "payu");

    // PayU made one capture, of that amount. It takes no idempotency key: the capture was
    // sent once more (by the resolver) and PayU answered it with the one it had made.
    let order = payu_order(&app, &id).await;
    let captures = payu_approved(&order, "CAPTURE");
    assert_eq!(captures.len(), 1, "{order}");
    assert_eq!(payu_amount(&captures[0]), dec("100000.00"), "{order}");
    assert_eq!(
        sent_exactly(&proxy, "payu", "POST", PAYU_PAYMENTS_API) - before,
        2
    );
    assert_lost_once(&proxy, "payu", "POST", PAYU_PAYMENTS_API);
    assert_journal(&app, &id, "payu", "CARD", "COP", "100000.00", "0").await;
    assert_health(&app, 0).await;
}

#[tokio::test]
async fn payu_void_cut_after_sending_is_finished_by_the_resolver() {
    let proxy = FaultProxy::start().await;
    let app = start_behind(&proxy, &["payu", "wompi"]).await;
    let id = payu_authorized(&app, "pl-void", "85000.00").await;
    let before = sent_exactly(&proxy, "payu", "POST", PAYU_PAYMENTS_API);
    proxy.lose("payu", "POST", PAYU_PAYMENTS_API, Loss::Cut, 1);

    assert_outcome_unknown(void(&app, &id).await, "void").await;
    let voided = app.wait_for_status(&id, "VOIDED").await;
    assert!(voided["pending_action"].is_null(), "{voided}");
    assert_eq!(voided["captured_amount"], "0.00", "{voided}");
    let events = app.event_types(&id).await;
    let count = |t: &str| events.iter().filter(|e| *e == t).count();
    assert_eq!(
        (
            count("VoidRequested"),
            count("PaymentVoided"),
            count("VoidFailed")
        ),
        (1, 1, 0),
        "{events:?}"
    );
    assert_eq!(intent_provider(&app, &id, "VoidRequested").await, "payu");

    let order = payu_order(&app, &id).await;
    assert_eq!(order["status"], "CANCELLED", "{order}");
    assert_eq!(payu_approved(&order, "VOID").len(), 1, "{order}");
    assert!(payu_approved(&order, "CAPTURE").is_empty(), "{order}");
    assert_eq!(
        sent_exactly(&proxy, "payu", "POST", PAYU_PAYMENTS_API) - before,
        2,
        "the void, then the resolver's"
    );
    assert_lost_once(&proxy, "payu", "POST", PAYU_PAYMENTS_API);
    assert_journal(&app, &id, "payu", "CARD", "COP", "0", "0").await;
    assert_health(&app, 0).await;
}

#[tokio::test]
async fn payu_refund_held_past_the_budget_is_found_at_payu_and_not_made_twice() {
    let proxy = FaultProxy::start().await;
    let app = start_behind(&proxy, &["payu", "wompi"]).await;
    let created = app
        .create_payment(
            "pl-refund",
            &payu_card("129000.00", "pl-refund", "automatic"),
        )
        .await;
    let id = id_of(&created);
    app.wait_for_status(&id, "APPROVED").await;
    let before = sent_exactly(&proxy, "payu", "POST", PAYU_PAYMENTS_API);
    proxy.lose("payu", "POST", PAYU_PAYMENTS_API, Loss::Hold(HOLD), 1);

    let refunded = refund_lost_then_found_once(&app, &id, "pl-refund-1", "29000.00").await;
    assert_eq!(refunded["captured_amount"], "129000.00", "{refunded}");

    let order = payu_order(&app, &id).await;
    let refunds = payu_approved(&order, "REFUND");
    assert_eq!(refunds.len(), 1, "{order}");
    assert_eq!(payu_amount(&refunds[0]), dec("29000.00"), "{order}");
    assert_eq!(
        sent_exactly(&proxy, "payu", "POST", PAYU_PAYMENTS_API) - before,
        1,
        "the refund PayU made was found, not sent again"
    );
    assert_lost_once(&proxy, "payu", "POST", PAYU_PAYMENTS_API);
    assert_journal(&app, &id, "payu", "CARD", "COP", "129000.00", "29000.00").await;
    assert_health(&app, 0).await;
}

// ---------------------------------------------------------------------------------------------
// Maya: create, capture, void, refund
// ---------------------------------------------------------------------------------------------

fn maya_payment(amount: &str, reference: &str, capture: &str) -> Value {
    json!({
        "amount": amount, "currency": "PHP", "reference": reference,
        "payment_method": {"type": "MAYA"}, "capture": capture,
    })
}

/// `GET {path}` on Maya's Payments API with the secret key: (status, body).
async fn maya_get(app: &TestApp, path: &str) -> (u16, Value) {
    let root = app.emulators["maya"].trim_end_matches('/').to_owned();
    let response = app
        .http
        .get(format!("{root}{path}"))
        .basic_auth(MayaConfig::from_env().secret_key.expose_secret(), Some(""))
        .send()
        .await
        .expect("read maya");
    json_of(response).await
}

/// Every Maya payment whose `requestReferenceNumber` is `rrn` (Maya answers `404` for none).
async fn maya_by_reference(app: &TestApp, rrn: &str) -> Vec<Value> {
    let (status, body) = maya_get(app, &format!("/payments/v1/payment-rrns/{rrn}")).await;
    match status {
        200 => body.as_array().expect("a list").clone(),
        404 => Vec::new(),
        _ => panic!("payment-rrns/{rrn}: {status} {body}"),
    }
}

async fn maya_payment_at_maya(app: &TestApp, maya_id: &str) -> Value {
    let (status, body) = maya_get(app, &format!("/payments/v1/payments/{maya_id}")).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// The customer pays at the Maya checkout page.
async fn maya_customer_pays(app: &TestApp, checkout: &str) {
    let root = app.emulators["maya"].trim_end_matches('/').to_owned();
    let response = app
        .http
        .post(format!("{root}/_sandbox/checkouts/{checkout}/complete"))
        .send()
        .await
        .expect("complete the checkout");
    let (status, body) = json_of(response).await;
    assert_eq!(status, 200, "{body}");
}

/// A Maya payment the customer paid (automatic) or authorized (manual), in that state in the
/// ledger: (payment id, Maya checkout id).
async fn maya_paid(app: &TestApp, key: &str, amount: &str, capture: &str) -> (String, String) {
    let created = app
        .create_payment(key, &maya_payment(amount, key, capture))
        .await;
    assert_eq!(created["provider"], "maya", "{created}");
    let id = id_of(&created);
    let view = view_until(app, &id, "given its checkout", |v| {
        v["provider_reference"].is_string()
    })
    .await;
    let checkout = view["provider_reference"].as_str().unwrap().to_owned();
    maya_customer_pays(app, &checkout).await;
    let status = if capture == "manual" {
        "AUTHORIZED"
    } else {
        "APPROVED"
    };
    app.wait_for_status(&id, status).await;
    (id, checkout)
}

#[tokio::test]
async fn maya_create_cut_after_sending_is_found_by_reference_and_paid_once() {
    let proxy = FaultProxy::start().await;
    let app = start_behind(&proxy, &["maya", "gcash"]).await;
    proxy.lose("maya", "POST", "/checkout/v1/checkouts", Loss::Cut, 1);
    let created = app
        .create_payment(
            "ml-create",
            &maya_payment("730.00", "ml-create", "automatic"),
        )
        .await;
    assert_created_unknown(&created, "maya");
    let id = id_of(&created);

    // Maya made the checkout: the resolver finds it by reference and records it.
    let found = view_until(&app, &id, "given the checkout", |v| {
        v["provider_reference"].is_string()
    })
    .await;
    assert_eq!(found["status"], "PENDING", "{found}");
    let checkout = found["provider_reference"].as_str().unwrap().to_owned();
    let held = maya_by_reference(&app, &id).await;
    assert_eq!(held.len(), 1, "{held:?}");
    assert_eq!(held[0]["id"].as_str(), Some(checkout.as_str()), "{held:?}");

    maya_customer_pays(&app, &checkout).await;
    let approved = app.wait_for_status(&id, "APPROVED").await;
    assert_eq!(approved["captured_amount"], "730.00", "{approved}");
    assert_eq!(approved["provider_reference"], checkout.as_str());
    assert_settled_once(&app, &id, &approved).await;
    assert_eq!(
        maya_payment_at_maya(&app, &checkout).await["status"],
        "PAYMENT_SUCCESS"
    );
    assert_eq!(maya_by_reference(&app, &id).await.len(), 1);
    assert_eq!(
        sent_exactly(&proxy, "maya", "POST", "/checkout/v1/checkouts"),
        1
    );
    assert_never_fell_back(&app, &proxy, &id, "maya").await;
    assert_lost_once(&proxy, "maya", "POST", "/checkout/v1/checkouts");
    assert_journal(&app, &id, "maya", "MAYA", "PHP", "730.00", "0").await;
    assert_health(&app, 0).await;
}

#[tokio::test]
async fn maya_capture_cut_after_sending_is_the_same_capture_on_a_same_key_retry() {
    let proxy = FaultProxy::start().await;
    let app = start_behind(&proxy, &["maya", "gcash"]).await;
    let (id, checkout) = maya_paid(&app, "ml-capture", "1000.00", "manual").await;
    proxy.lose("maya", "POST", "/capture", Loss::Cut, 1);

    assert_outcome_unknown(
        capture(&app, &id, "ml-capture-1", "600.00").await,
        "capture",
    )
    .await;
    // The same capture again (or the resolver first): the one Maya made, recorded once.
    let (status, again) = json_of(capture(&app, &id, "ml-capture-1", "600.00").await).await;
    assert!(status == 200 || status == 201, "{status} {again}");
    assert_eq!(again["status"], "APPROVED", "{again}");
    assert_eq!(again["captured_amount"], "600.00", "{again}");
    let captured = app.wait_for_status(&id, "APPROVED").await;
    assert_eq!(captured["captured_amount"], "600.00", "{captured}");
    assert_eq!(captured["authorized_amount"], "1000.00", "{captured}");
    assert_settled_once(&app, &id, &captured).await;
    assert_eq!(count_events(&app, &id, "CaptureRequested").await, 1);
    assert_eq!(intent_provider(&app, &id, "CaptureRequested").await, "maya");

    // Maya holds one capture payment of 600.00 (named after the payment, as payledger names
    // its captures), and the authorization is done.
    let simple = uuid::Uuid::parse_str(&id).unwrap().simple().to_string();
    let captures = maya_by_reference(&app, &format!("{simple}-cap")).await;
    assert_eq!(captures.len(), 1, "{captures:?}");
    assert_eq!(
        dec_of(&captures[0]["amount"]),
        dec("600.00"),
        "{captures:?}"
    );
    assert_eq!(
        maya_payment_at_maya(&app, &checkout).await["status"],
        "DONE"
    );
    let capture_path = format!("/payments/v1/payments/{checkout}/capture");
    assert_eq!(sent_exactly(&proxy, "maya", "POST", &capture_path), 1);
    assert_lost_once(&proxy, "maya", "POST", &capture_path);
    assert_journal(&app, &id, "maya", "MAYA", "PHP", "600.00", "0").await;
    assert_health(&app, 0).await;
}

#[tokio::test]
async fn maya_void_held_past_the_budget_is_finished_by_the_resolver() {
    let proxy = FaultProxy::start().await;
    let app = start_behind(&proxy, &["maya", "gcash"]).await;
    let (id, checkout) = maya_paid(&app, "ml-void", "750.00", "manual").await;
    proxy.lose("maya", "POST", "/voids", Loss::Hold(HOLD), 1);

    assert_outcome_unknown(void(&app, &id).await, "void").await;
    let voided = app.wait_for_status(&id, "VOIDED").await;
    assert!(voided["pending_action"].is_null(), "{voided}");
    assert_eq!(voided["captured_amount"], "0.00", "{voided}");
    let events = app.event_types(&id).await;
    let count = |t: &str| events.iter().filter(|e| *e == t).count();
    assert_eq!(
        (
            count("VoidRequested"),
            count("PaymentVoided"),
            count("VoidFailed")
        ),
        (1, 1, 0),
        "{events:?}"
    );
    assert_eq!(
        maya_payment_at_maya(&app, &checkout).await["status"],
        "VOIDED"
    );
    let void_path = format!("/payments/v1/payments/{checkout}/voids");
    assert_eq!(sent_exactly(&proxy, "maya", "POST", &void_path), 1);
    assert_lost_once(&proxy, "maya", "POST", &void_path);
    assert_journal(&app, &id, "maya", "MAYA", "PHP", "0", "0").await;
    assert_health(&app, 0).await;
}

#[tokio::test]
async fn maya_refund_cut_after_sending_is_found_at_maya_and_not_made_twice() {
    let proxy = FaultProxy::start().await;
    let app = start_behind(&proxy, &["maya", "gcash"]).await;
    let (id, checkout) = maya_paid(&app, "ml-refund", "900.00", "automatic").await;
    proxy.lose("maya", "POST", "/refunds", Loss::Cut, 1);

    refund_lost_then_found_once(&app, &id, "ml-refund-1", "250.00").await;

    let (status, refunds) =
        maya_get(&app, &format!("/payments/v1/payments/{checkout}/refunds")).await;
    assert_eq!(status, 200, "{refunds}");
    let refunds = refunds.as_array().expect("a list");
    assert_eq!(refunds.len(), 1, "{refunds:?}");
    assert_eq!(
        dec_of(&refunds[0]["totalAmount"]["amount"]),
        dec("250.00"),
        "{refunds:?}"
    );
    let refund_path = format!("/payments/v1/payments/{checkout}/refunds");
    assert_eq!(sent_exactly(&proxy, "maya", "POST", &refund_path), 1);
    assert_lost_once(&proxy, "maya", "POST", &refund_path);
    assert_journal(&app, &id, "maya", "MAYA", "PHP", "900.00", "250.00").await;
    assert_health(&app, 0).await;
}

// ---------------------------------------------------------------------------------------------
// GCash through PayMongo: create (intent, payment method, attach), refund; no lookup by
// reference, no capture, no void
// ---------------------------------------------------------------------------------------------

fn gcash_payment(amount: &str, reference: &str) -> Value {
    json!({
        "amount": amount, "currency": "PHP", "reference": reference,
        "payment_method": {"type": "GCASH"},
        "return_url": "https://shop.example/return",
    })
}

fn paymongo_root(app: &TestApp) -> String {
    app.emulators["gcash"].trim_end_matches('/').to_owned()
}

/// Every payment intent PayMongo holds for `payment_id` (the emulator's test listing).
async fn paymongo_intents(app: &TestApp, payment_id: &str) -> Vec<Value> {
    let response = app
        .http
        .get(format!("{}/_sandbox/payment_intents", paymongo_root(app)))
        .query(&[("payment_id", payment_id)])
        .send()
        .await
        .expect("list intents");
    let (status, body) = json_of(response).await;
    assert_eq!(status, 200, "{body}");
    body["data"].as_array().expect("a list").clone()
}

/// The intent as PayMongo's API shows it (secret key).
async fn paymongo_intent(app: &TestApp, intent: &str) -> Value {
    let response = app
        .http
        .get(format!(
            "{}/v1/payment_intents/{intent}",
            paymongo_root(app)
        ))
        .basic_auth(
            PaymongoConfig::from_env().secret_key.expose_secret(),
            Some(""),
        )
        .send()
        .await
        .expect("read the intent");
    let (status, body) = json_of(response).await;
    assert_eq!(status, 200, "{body}");
    body["data"].clone()
}

/// The customer authorizes at the GCash page: (status, body).
async fn gcash_customer_authorizes(app: &TestApp, intent: &str) -> (u16, Value) {
    let response = app
        .http
        .post(format!(
            "{}/_sandbox/gcash/{intent}/authorize",
            paymongo_root(app)
        ))
        .send()
        .await
        .expect("authorize");
    json_of(response).await
}

/// PayMongo cannot be asked by reference, but it answers a repeated create with the same
/// `Idempotency-Key` (our payment id) with the first intent: a same-key retry sends the
/// create again and gets the intent, and its redirect, that the lost answer carried.
async fn gcash_retry_recovers_the_intent(
    lost_path: &str,
    loss: Loss,
    key: &str,
    amount: &str,
    minor_units: i64,
) {
    let proxy = FaultProxy::start().await;
    let app = start_behind(&proxy, &["gcash", "maya"]).await;
    proxy.lose("gcash", "POST", lost_path, loss, 1);
    let body = gcash_payment(amount, key);
    let created = app.create_payment(key, &body).await;
    assert_created_unknown(&created, "gcash");
    let id = id_of(&created);

    let (status, again) = retry_create(&app, key, &body).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["id"], created["id"]);
    assert!(again.get("provider_outcome").is_none(), "{again}");
    assert_eq!(again["next_action"]["type"], "redirect", "{again}");
    let intent = again["provider_reference"]
        .as_str()
        .expect("the intent is recorded")
        .to_owned();
    let held = paymongo_intents(&app, &id).await;
    assert_eq!(held.len(), 1, "one intent at PayMongo: {held:?}");
    assert_eq!(held[0]["id"], intent.as_str());
    // The create was sent twice; PayMongo's key made the second the first.
    assert_eq!(
        sent_exactly(&proxy, "gcash", "POST", "/v1/payment_intents"),
        2
    );

    let (status, paid) = gcash_customer_authorizes(&app, &intent).await;
    assert_eq!(status, 200, "{paid}");
    let approved = app.wait_for_status(&id, "APPROVED").await;
    assert_eq!(approved["captured_amount"], amount, "{approved}");
    assert_eq!(
        approved["provider_reference"],
        intent.as_str(),
        "{approved}"
    );
    assert_settled_once(&app, &id, &approved).await;
    let at_paymongo = paymongo_intent(&app, &intent).await;
    assert_eq!(at_paymongo["attributes"]["status"], "succeeded");
    let payments = at_paymongo["attributes"]["payments"]
        .as_array()
        .expect("payments");
    assert_eq!(payments.len(), 1, "{at_paymongo}");
    assert_eq!(payments[0]["attributes"]["amount"], minor_units);
    assert_eq!(paymongo_intents(&app, &id).await.len(), 1);
    assert_never_fell_back(&app, &proxy, &id, "gcash").await;
    assert_journal(&app, &id, "gcash", "GCASH", "PHP", amount, "0").await;
    assert_health(&app, 0).await;
}

#[tokio::test]
async fn gcash_create_whose_attach_answer_is_cut_is_recovered_by_a_same_key_retry_and_paid_once() {
    gcash_retry_recovers_the_intent("/attach", Loss::Cut, "gl-attach", "1500.00", 150_000).await;
}

#[tokio::test]
async fn gcash_create_whose_intent_answer_is_held_is_recovered_by_a_same_key_retry_and_paid_once() {
    gcash_retry_recovers_the_intent(
        "/v1/payment_intents",
        Loss::Hold(HOLD),
        "gl-intent",
        "800.00",
        80_000,
    )
    .await;
}

#[tokio::test]
async fn gcash_refund_held_past_the_budget_is_found_at_paymongo_and_not_made_twice() {
    let proxy = FaultProxy::start().await;
    let app = start_behind(&proxy, &["gcash", "maya"]).await;
    let created = app
        .create_payment("gl-refund", &gcash_payment("1500.00", "gl-refund"))
        .await;
    let id = id_of(&created);
    let view = view_until(&app, &id, "given its intent", |v| {
        v["provider_reference"].is_string()
    })
    .await;
    let intent = view["provider_reference"].as_str().unwrap().to_owned();
    let (status, paid) = gcash_customer_authorizes(&app, &intent).await;
    assert_eq!(status, 200, "{paid}");
    app.wait_for_status(&id, "APPROVED").await;
    proxy.lose("gcash", "POST", "/v1/refunds", Loss::Hold(HOLD), 1);

    refund_lost_then_found_once(&app, &id, "gl-refund-1", "400.00").await;

    let at_paymongo = paymongo_intent(&app, &intent).await;
    let refunds = at_paymongo["attributes"]["payments"][0]["attributes"]["refunds"]
        .as_array()
        .expect("refunds")
        .clone();
    assert_eq!(refunds.len(), 1, "{at_paymongo}");
    assert_eq!(refunds[0]["attributes"]["amount"], 40_000, "{refunds:?}");
    assert_eq!(sent_exactly(&proxy, "gcash", "POST", "/v1/refunds"), 1);
    assert_lost_once(&proxy, "gcash", "POST", "/v1/refunds");
    assert_journal(&app, &id, "gcash", "GCASH", "PHP", "1500.00", "400.00").await;
    assert_health(&app, 0).await;
}

// ---------------------------------------------------------------------------------------------
// EBANX (GCash): create and refund (EBANX holds one payment per merchant_payment_code and one
// refund per merchant_refund_code)
// ---------------------------------------------------------------------------------------------

fn ebanx_root(app: &TestApp) -> String {
    app.emulators["ebanx"].trim_end_matches('/').to_owned()
}

/// The payment EBANX holds for one of ours, asked with the integration key.
async fn at_ebanx_for(app: &TestApp, payment_id: &str) -> Value {
    let response = app
        .http
        .post(format!("{}/ws/query", ebanx_root(app)))
        .json(&json!({
            "integration_key": EbanxConfig::from_env().integration_key.expose_secret(),
            "merchant_payment_code": payment_id,
        }))
        .send()
        .await
        .expect("ask EBANX");
    let (status, answer) = json_of(response).await;
    assert_eq!(
        (status, answer["status"].as_str()),
        (200, Some("SUCCESS")),
        "{answer}"
    );
    answer["payment"].clone()
}

/// The customer confirms at EBANX's GCash page.
async fn ebanx_customer_completes(app: &TestApp, hash: &str) {
    let url = format!("{}/_sandbox/payments/{hash}/complete", ebanx_root(app));
    let response = app.http.post(&url).send().await.expect("complete");
    assert_eq!(response.status(), 200, "POST {url}");
}

#[tokio::test]
async fn ebanx_create_cut_after_sending_is_found_by_its_code_and_paymongo_is_never_asked() {
    let proxy = FaultProxy::start().await;
    let app = start_behind(&proxy, &["ebanx", "gcash"]).await;
    proxy.lose("ebanx", "POST", "/ws/direct", Loss::Cut, 1);
    let body = gcash_payment("2500.00", "el-create");
    let created = app.create_payment("el-create", &body).await;
    assert_created_unknown(&created, "ebanx");
    let id = id_of(&created);

    // The resolver asks EBANX by our payment id and records the payment it holds.
    let found = view_until(&app, &id, "found at EBANX", |v| {
        v["provider_reference"].is_string()
    })
    .await;
    let hash = found["provider_reference"].as_str().unwrap().to_owned();
    ebanx_customer_completes(&app, &hash).await;
    let approved = app.wait_for_status(&id, "APPROVED").await;
    assert_eq!(approved["provider"], "ebanx", "{approved}");
    assert_eq!(approved["captured_amount"], "2500.00", "{approved}");
    assert_settled_once(&app, &id, &approved).await;

    let held = at_ebanx_for(&app, &id).await;
    assert_eq!(held["hash"], hash.as_str(), "{held}");
    assert_eq!(held["status"], "CO", "{held}");
    assert_eq!(sent_exactly(&proxy, "ebanx", "POST", "/ws/direct"), 1);
    assert_never_fell_back(&app, &proxy, &id, "ebanx").await;
    assert_lost_once(&proxy, "ebanx", "POST", "/ws/direct");
    assert_journal(&app, &id, "ebanx", "GCASH", "PHP", "2500.00", "0").await;
    assert_health(&app, 0).await;
}

#[tokio::test]
async fn ebanx_refund_held_past_the_budget_is_found_at_ebanx_and_not_made_twice() {
    let proxy = FaultProxy::start().await;
    let app = start_behind(&proxy, &["ebanx", "gcash"]).await;
    let created = app
        .create_payment("el-refund", &gcash_payment("1800.00", "el-refund"))
        .await;
    let id = id_of(&created);
    let hash = created["provider_reference"]
        .as_str()
        .expect("a hash")
        .to_owned();
    ebanx_customer_completes(&app, &hash).await;
    app.wait_for_status(&id, "APPROVED").await;
    proxy.lose("ebanx", "POST", "/ws/refund", Loss::Hold(HOLD), 1);

    refund_lost_then_found_once(&app, &id, "el-refund-1", "700.00").await;

    let held = at_ebanx_for(&app, &id).await;
    let refunds = held["refunds"].as_array().expect("refunds").clone();
    assert_eq!(refunds.len(), 1, "{held}");
    assert_eq!(refunds[0]["amount_ext"], "700.00", "{refunds:?}");
    assert_eq!(sent_exactly(&proxy, "ebanx", "POST", "/ws/refund"), 1);
    assert_lost_once(&proxy, "ebanx", "POST", "/ws/refund");
    assert_journal(&app, &id, "ebanx", "GCASH", "PHP", "1800.00", "700.00").await;
    assert_health(&app, 0).await;
}

// ---------------------------------------------------------------------------------------------
// The bundled sandbox: create, capture, void, refund
// ---------------------------------------------------------------------------------------------

fn sandbox_card(amount: &str, reference: &str, capture: &str) -> Value {
    json!({
        "amount": amount, "currency": "COP", "reference": reference,
        "payment_method": {"type": "CARD", "token": "tok_sandbox_approved"},
        "capture": capture,
    })
}

/// The one transaction the sandbox holds for `reference`.
async fn sandbox_transaction(app: &TestApp, reference: &str) -> Value {
    let held = sandbox_transactions(app, reference).await;
    assert_eq!(held.len(), 1, "{held:?}");
    held[0].clone()
}

/// A sandbox card payment in COP, AUTHORIZED (manual) or APPROVED in the ledger; returns its
/// id and its transaction at the sandbox.
async fn sandbox_paid(app: &TestApp, key: &str, amount: &str, capture: &str) -> (String, String) {
    let created = app
        .create_payment(key, &sandbox_card(amount, key, capture))
        .await;
    assert_eq!(created["provider"], "sandbox", "{created}");
    let id = id_of(&created);
    let status = if capture == "manual" {
        "AUTHORIZED"
    } else {
        "APPROVED"
    };
    let view = app.wait_for_status(&id, status).await;
    let transaction = view["provider_reference"]
        .as_str()
        .expect("transaction id")
        .to_owned();
    (id, transaction)
}

#[tokio::test]
async fn sandbox_create_held_past_the_attempt_timeout_is_approved_once_and_wompi_is_never_asked() {
    let proxy = FaultProxy::start().await;
    let app = start_behind(&proxy, &["sandbox", "wompi"]).await;
    proxy.lose("sandbox", "POST", "/v1/transactions", Loss::Hold(HOLD), 1);
    // COP: Wompi, next in line, takes cards in COP too.
    let created = app
        .create_payment(
            "sl-create",
            &sandbox_card("80000.00", "sl-create", "automatic"),
        )
        .await;
    assert_created_unknown(&created, "sandbox");
    let id = id_of(&created);

    let approved = app.wait_for_status(&id, "APPROVED").await;
    assert_eq!(approved["captured_amount"], "80000.00", "{approved}");
    assert_settled_once(&app, &id, &approved).await;
    let held = sandbox_transaction(&app, "sl-create").await;
    assert_eq!(held["status"], "APPROVED", "{held}");
    assert_eq!(held["payment_id"], id.as_str(), "{held}");
    assert_eq!(approved["provider_reference"], held["id"], "{approved}");
    assert_eq!(
        sent_exactly(&proxy, "sandbox", "POST", "/v1/transactions"),
        1
    );
    assert_never_fell_back(&app, &proxy, &id, "sandbox").await;
    assert_lost_once(&proxy, "sandbox", "POST", "/v1/transactions");
    assert_journal(&app, &id, "sandbox", "CARD", "COP", "80000.00", "0").await;
    assert_health(&app, 0).await;
}

#[tokio::test]
async fn sandbox_capture_cut_after_sending_is_made_once_and_recorded_once() {
    let proxy = FaultProxy::start().await;
    let app = start_behind(&proxy, &["sandbox", "wompi"]).await;
    let (id, transaction) = sandbox_paid(&app, "sl-capture", "80000.00", "manual").await;
    proxy.lose("sandbox", "POST", "/capture", Loss::Cut, 1);

    assert_outcome_unknown(
        capture(&app, &id, "sl-capture-1", "60000.00").await,
        "capture",
    )
    .await;
    let captured = view_until(&app, &id, "captured", |v| {
        v["status"] == "APPROVED" && v["pending_action"].is_null()
    })
    .await;
    assert_eq!(captured["captured_amount"], "60000.00", "{captured}");
    assert_settled_once(&app, &id, &captured).await;
    assert_eq!(count_events(&app, &id, "CaptureRequested").await, 1);
    assert_eq!(
        intent_provider(&app, &id, "CaptureRequested").await,
        "sandbox"
    );

    let held = sandbox_transaction(&app, "sl-capture").await;
    assert_eq!(held["captured_amount"], "60000.00", "{held}");
    // Sent again by the resolver with the same capture id: the sandbox answers the first.
    let capture_path = format!("/v1/transactions/{transaction}/capture");
    assert_eq!(sent_exactly(&proxy, "sandbox", "POST", &capture_path), 2);
    assert_lost_once(&proxy, "sandbox", "POST", &capture_path);
    assert_journal(&app, &id, "sandbox", "CARD", "COP", "60000.00", "0").await;
    assert_health(&app, 0).await;
}

#[tokio::test]
async fn sandbox_void_held_past_the_budget_is_finished_by_the_resolver() {
    let proxy = FaultProxy::start().await;
    let app = start_behind(&proxy, &["sandbox", "wompi"]).await;
    let (id, transaction) = sandbox_paid(&app, "sl-void", "80000.00", "manual").await;
    proxy.lose("sandbox", "POST", "/void", Loss::Hold(HOLD), 1);

    assert_outcome_unknown(void(&app, &id).await, "void").await;
    let voided = app.wait_for_status(&id, "VOIDED").await;
    assert!(voided["pending_action"].is_null(), "{voided}");
    let events = app.event_types(&id).await;
    let count = |t: &str| events.iter().filter(|e| *e == t).count();
    assert_eq!(
        (
            count("VoidRequested"),
            count("PaymentVoided"),
            count("VoidFailed")
        ),
        (1, 1, 0),
        "{events:?}"
    );
    let held = sandbox_transaction(&app, "sl-void").await;
    assert_eq!(held["status"], "VOIDED", "{held}");
    assert_eq!(held["captured_amount"], "0.00", "{held}");
    let void_path = format!("/v1/transactions/{transaction}/void");
    assert_eq!(sent_exactly(&proxy, "sandbox", "POST", &void_path), 2);
    assert_lost_once(&proxy, "sandbox", "POST", &void_path);
    assert_journal(&app, &id, "sandbox", "CARD", "COP", "0", "0").await;
    assert_health(&app, 0).await;
}

#[tokio::test]
async fn sandbox_refund_held_past_the_budget_is_the_same_refund_when_sent_again() {
    let proxy = FaultProxy::start().await;
    let app = start_behind(&proxy, &["sandbox", "wompi"]).await;
    let (id, transaction) = sandbox_paid(&app, "sl-refund", "80000.00", "automatic").await;
    proxy.lose("sandbox", "POST", "/refunds", Loss::Hold(HOLD), 1);

    refund_lost_then_found_once(&app, &id, "sl-refund-1", "30000.00").await;

    let held = sandbox_transaction(&app, "sl-refund").await;
    assert_eq!(held["refunded_amount"], "30000.00", "refunded once: {held}");
    let refund_path = format!("/v1/transactions/{transaction}/refunds");
    assert_eq!(sent_exactly(&proxy, "sandbox", "POST", &refund_path), 2);
    assert_lost_once(&proxy, "sandbox", "POST", &refund_path);
    assert_journal(&app, &id, "sandbox", "CARD", "COP", "80000.00", "30000.00").await;
    assert_health(&app, 0).await;
}
