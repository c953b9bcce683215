//! GCash through EBANX end to end: payledger over real HTTP, its EBANX adapter talking HTTP to
//! the in-process EBANX emulator (Direct API), and the emulator's notifications, which only
//! name payment hashes, coming back to `POST /v1/webhooks/ebanx`, where every hash is asked of
//! EBANX before anything is appended. Also routing GCash between PayMongo (`gcash`) and EBANX:
//! a fall back only when the first provider provably never got the create.
//!
//! EBANX is read here with the test's own requests (`/ws/query` with the integration key the
//! adapter uses), never through the code under test.

use std::time::Duration;

use connectors::ebanx::EbanxConfig;
use e2e::support::{attempts, events_json, expected_fee, id_of, json_of, stored_events};
use e2e::TestApp;
use secrecy::ExposeSecret;
use serde_json::{json, Value};

use super::common::{
    self, customer_action, deliveries, delivery_where, emulator_root, pending_at, set_fault, start,
    start_with, sync, PAYMENTS,
};

/// PayMongo and EBANX, both taking GCash in PHP, PayMongo first.
const GCASH_RAILS: [&str; 2] = ["gcash", "ebanx"];
/// The same, EBANX first.
const EBANX_FIRST: [&str; 2] = ["ebanx", "gcash"];

fn gcash_payment(provider: Option<&str>, amount: &str, reference: &str) -> Value {
    let mut body = json!({
        "amount": amount,
        "currency": "PHP",
        "reference": reference,
        "payment_method": {"type": "GCASH"},
        "return_url": "https://shop.example/return",
    });
    if let Some(provider) = provider {
        body["provider"] = json!(provider);
    }
    body
}

fn fee_json(amount: &str) -> Value {
    json!({"amount": expected_fee("ebanx", "GCASH", "PHP", amount), "currency": "PHP"})
}

fn ebanx_root(app: &TestApp) -> String {
    emulator_root(app, "ebanx")
}

/// A `/ws` call at EBANX with the integration key payledger's adapter uses.
async fn ebanx_api(app: &TestApp, path: &str, mut body: Value) -> Value {
    body["integration_key"] = json!(EbanxConfig::from_env()
        .integration_key
        .expose_secret()
        .to_owned());
    let response = app
        .http
        .post(format!("{}/ws/{path}", ebanx_root(app)))
        .json(&body)
        .send()
        .await
        .expect("ask EBANX");
    let (status, answer) = json_of(response).await;
    assert_eq!(status, 200, "{answer}");
    answer
}

/// The payment EBANX holds under `hash`.
async fn at_ebanx(app: &TestApp, hash: &str) -> Value {
    let answer = ebanx_api(app, "query", json!({ "hash": hash })).await;
    assert_eq!(answer["status"], "SUCCESS", "{answer}");
    answer["payment"].clone()
}

/// The payment EBANX holds for one of ours (its `merchant_payment_code`), if any: EBANX keeps
/// at most one per code.
async fn at_ebanx_for(app: &TestApp, payment_id: &str) -> Option<Value> {
    let answer = ebanx_api(app, "query", json!({ "merchant_payment_code": payment_id })).await;
    (answer["status"] == "SUCCESS").then(|| answer["payment"].clone())
}

/// The payment intents PayMongo holds for one of ours.
async fn intents_at_paymongo(app: &TestApp, payment_id: &str) -> Vec<Value> {
    let response = app
        .http
        .get(format!(
            "{}/_sandbox/payment_intents?payment_id={payment_id}",
            emulator_root(app, "gcash")
        ))
        .send()
        .await
        .expect("ask PayMongo");
    let (status, body) = json_of(response).await;
    assert_eq!(status, 200, "{body}");
    body["data"].as_array().expect("a list of intents").clone()
}

/// What the customer does on the GCash page (`complete`, `fail`, `cancel`, `expire`).
async fn customer(app: &TestApp, hash: &str, action: &str) -> Value {
    let url = format!("{}/_sandbox/payments/{hash}/{action}", ebanx_root(app));
    customer_action(app, url).await["payment"].clone()
}

/// EBANX sends one more notification naming `hashes`.
async fn notify(app: &TestApp, hashes: &[&str]) {
    let response = app
        .http
        .post(format!("{}/_sandbox/notify", ebanx_root(app)))
        .json(&json!({ "hash_codes": hashes }))
        .send()
        .await
        .expect("notify");
    assert_eq!(response.status(), 200);
}

/// A pending GCash payment at EBANX: (payment JSON, EBANX hash).
async fn pending(app: &TestApp, key: &str, amount: &str) -> (Value, String) {
    let body = gcash_payment(Some("ebanx"), amount, &format!("order-{key}"));
    pending_at(app, "ebanx", key, &body).await
}

/// A GCash payment the customer confirmed, APPROVED: (payment id, hash).
async fn approved(app: &TestApp, key: &str, amount: &str) -> (String, String) {
    let (created, hash) = pending(app, key, amount).await;
    let id = id_of(&created);
    customer(app, &hash, "complete").await;
    app.wait_for_status(&id, "APPROVED").await;
    (id, hash)
}

/// A notification body as EBANX posts it.
fn notification(kind: &str, hashes: &str) -> String {
    format!("operation=payment_status_change&notification_type={kind}&hash_codes={hashes}")
}

async fn post_notification(app: &TestApp, body: String) -> (u16, Value) {
    json_of(
        common::post_webhook(
            app,
            "ebanx",
            "application/x-www-form-urlencoded",
            body.into_bytes(),
            None,
        )
        .await,
    )
    .await
}

/// Polls until the webhook log holds an EBANX delivery with `result` naming `hash`.
async fn delivery_naming(app: &TestApp, result: &str, hash: &str) -> Vec<u8> {
    delivery_where(app, "ebanx", result, |body| {
        String::from_utf8_lossy(body).contains(hash)
    })
    .await
}

const CREATED: [&str; 3] = [
    "PaymentInitiated",
    "ProviderAttemptStarted",
    "ProviderTransactionCreated",
];

// ---------------------------------------------------------------------------------------------
// Outcomes
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn ebanx_gcash_is_pending_with_a_redirect_then_approved_by_a_notification_it_asked_about() {
    let app = start(GCASH_RAILS).await;
    let (created, hash) = pending(&app, "x-ok", "1234.60").await;
    let id = id_of(&created);
    assert_eq!(created["next_action"]["type"], "redirect", "{created}");
    let url = created["next_action"]["url"]
        .as_str()
        .expect("redirect url");
    assert_eq!(url, format!("{}/_sandbox/gcash/{hash}", ebanx_root(&app)));
    assert_eq!(app.http.get(url).send().await.unwrap().status(), 200);
    // EBANX holds it under our payment id, in PHP, waiting for the customer.
    let held = at_ebanx(&app, &hash).await;
    assert_eq!(held["merchant_payment_code"], id.as_str(), "{held}");
    assert_eq!(held["status"], "PE");
    assert_eq!(held["amount_ext"], "1234.60");
    assert_eq!(held["currency_ext"], "PHP");
    assert_eq!(held["payment_type_code"], "gcash");
    assert_eq!(held["order_number"], "order-x-ok");

    customer(&app, &hash, "complete").await;
    let approved = app.wait_for_status(&id, "APPROVED").await;
    assert_eq!(approved["provider"], "ebanx");
    assert_eq!(approved["provider_reference"], hash.as_str());
    assert_eq!(approved["captured_amount"], "1234.60");
    let fee = expected_fee("ebanx", "GCASH", "PHP", "1234.60");
    assert_eq!(fee, "40.80", "2.90% of 1234.60 = 35.80, plus PHP 5.00");
    assert_eq!(approved["fees"], fee_json("1234.60"), "{approved}");
    assert!(approved["next_action"].is_null(), "{approved}");
    let mut types = CREATED.to_vec();
    types.push("PaymentApproved");
    assert_eq!(app.event_types(&id).await, types);
    let events = events_json(&app, &id).await;
    let approval = &events[3]["data"]["PaymentApproved"];
    assert_eq!(approval["provider_transaction_id"], hash.as_str());
    assert_eq!(
        approval["provider_event_id"],
        format!("ebanx:{hash}:APPROVED"),
        "{approval}"
    );
    // The notification that brought it named the payment and said nothing more.
    let payload = delivery_naming(&app, "recorded", &hash).await;
    assert_eq!(
        String::from_utf8(payload).unwrap(),
        notification("update", &hash)
    );
}

#[tokio::test]
async fn ebanx_gcash_turned_down_ends_declined_and_a_lapsed_window_expired() {
    let app = start(GCASH_RAILS).await;
    for (key, action, status, reason) in [
        ("x-fail", "fail", "DECLINED", Some("ebanx_not_accepted")),
        (
            "x-cancel",
            "cancel",
            "DECLINED",
            Some("ebanx_cancelled_by_the_customer"),
        ),
        ("x-exp", "expire", "EXPIRED", None),
    ] {
        let (created, hash) = pending(&app, key, "500.00").await;
        let id = id_of(&created);
        customer(&app, &hash, action).await;
        let ended = app.wait_for_status(&id, status).await;
        assert_eq!(ended["provider"], "ebanx", "{ended}");
        assert!(ended["fees"].is_null(), "{action}: {ended}");
        assert_eq!(ended["captured_amount"], "0.00", "{action}");
        if let Some(reason) = reason {
            assert_eq!(ended["failure_reason"], reason, "{ended}");
        }
        let mut types = CREATED.to_vec();
        types.push(if status == "DECLINED" {
            "PaymentDeclined"
        } else {
            "PaymentExpired"
        });
        assert_eq!(app.event_types(&id).await, types, "{action}");
        delivery_naming(&app, "recorded", &hash).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Notifications that must not move money
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn ebanx_duplicate_notifications_append_nothing() {
    let app = start(GCASH_RAILS).await;
    let (id, hash) = approved(&app, "x-dup", "300.00").await;
    let recorded = delivery_naming(&app, "recorded", &hash).await;
    let events_before = app.event_count().await;

    // EBANX notifies the same payment again, once naming it twice.
    notify(&app, &[&hash]).await;
    notify(&app, &[&hash, &hash]).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while deliveries(&app, "ebanx")
        .await
        .iter()
        .filter(|(_, result, _)| result == "duplicate")
        .count()
        < 2
    {
        assert!(
            std::time::Instant::now() < deadline,
            "redeliveries not logged"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The recorded body posted once more.
    let (status, body) = post_notification(&app, String::from_utf8(recorded).unwrap()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"], "duplicate", "{body}");

    assert_eq!(app.event_count().await, events_before);
    assert_eq!(app.event_types(&id).await.len(), 4);
    let view = app.wait_for_status(&id, "APPROVED").await;
    assert_eq!(view["captured_amount"], "300.00");
    assert_eq!(view["fees"], fee_json("300.00"));
}

#[tokio::test]
async fn ebanx_forged_or_unchanged_notifications_append_nothing_only_ebanx_answer_counts() {
    // Notifications lost on purpose: only what the test posts arrives.
    let app = start_with(GCASH_RAILS, |s| s.sandbox.deliver_webhooks = false).await;
    let (created, hash) = pending(&app, "x-forged", "750.00").await;
    let id = id_of(&created);
    let events_before = app.event_count().await;

    // A hash EBANX does not know, dressed with the status and amount a forger would add.
    let unknown = "ab".repeat(24);
    let forged = format!(
        "{}&status=CO&amount_total=750.00&merchant_payment_code={id}",
        notification("update", &unknown)
    );
    // The real payment's hash, while EBANX still has it waiting for the customer.
    let unchanged = notification("update", &hash);
    for body in [forged, unchanged.clone()] {
        let (status, answer) = post_notification(&app, body).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["result"], "ignored", "{answer}");
    }
    // Bodies that cannot name a payment are refused.
    let many = (0..21)
        .map(|i| format!("{:0>48}", i))
        .collect::<Vec<_>>()
        .join(",");
    for body in [
        notification("update", "../../etc/passwd"),
        notification("update", &many),
        format!("operation=payment_status_change&hash_codes={hash}"),
        r#"{"hash_codes":"x"}"#.to_owned(),
    ] {
        let (status, answer) = post_notification(&app, body.clone()).await;
        assert_eq!(status, 422, "{body}: {answer}");
    }
    assert_eq!(app.event_count().await, events_before, "nothing appended");
    assert_eq!(app.event_types(&id).await, CREATED);
    let logged = deliveries(&app, "ebanx").await;
    let results: Vec<&str> = logged.iter().map(|(_, r, _)| r.as_str()).collect();
    assert_eq!(
        results,
        ["ignored", "ignored", "refused", "refused", "refused", "refused"]
    );

    // The customer pays at EBANX; the same body now stands for a confirmed payment, because
    // EBANX says so.
    customer(&app, &hash, "complete").await;
    let (status, answer) = post_notification(&app, unchanged).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["result"], "recorded", "{answer}");
    let approved = app.wait_for_status(&id, "APPROVED").await;
    assert_eq!(approved["captured_amount"], "750.00");
    assert_eq!(approved["fees"], fee_json("750.00"));
}

// ---------------------------------------------------------------------------------------------
// Refunds
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn ebanx_refunds_are_made_once_at_ebanx_under_our_refund_id() {
    let app = start(GCASH_RAILS).await;
    let (id, hash) = approved(&app, "x-ref", "1000.00").await;
    let refund_body = json!({"amount": "400.00", "reason": "customer request"});
    let (status, first) = json_of(
        app.post(
            &format!("{PAYMENTS}/{id}/refunds"),
            &app.checkout_key,
            Some("x-ref-1"),
            &refund_body,
        )
        .await,
    )
    .await;
    assert_eq!(status, 201, "{first}");
    assert_eq!(first["status"], "SUCCEEDED", "{first}");
    assert_eq!(first["payment"]["status"], "PARTIALLY_REFUNDED", "{first}");
    let (status, again) = json_of(
        app.post(
            &format!("{PAYMENTS}/{id}/refunds"),
            &app.checkout_key,
            Some("x-ref-1"),
            &refund_body,
        )
        .await,
    )
    .await;
    assert!(status == 200 || status == 201, "{status} {again}");
    assert_eq!(again["id"], first["id"], "{again}");

    let view = app
        .read_at_least(&id, first["payment"]["version"].as_i64().unwrap())
        .await;
    assert_eq!(view["refunded_amount"], "400.00");
    assert_eq!(view["fees"], fee_json("1000.00"));
    let refunded = &stored_events(&app, &id, "PaymentRefunded").await[0]["PaymentRefunded"];
    // EBANX made exactly one refund, keyed by our refund id, the one payledger recorded.
    let held = at_ebanx(&app, &hash).await;
    let refunds = held["refunds"].as_array().expect("refunds").clone();
    assert_eq!(refunds.len(), 1, "{held}");
    assert_eq!(refunds[0]["amount_ext"], "400.00");
    assert_eq!(refunds[0]["merchant_refund_code"], refunded["refund_id"]);
    assert_eq!(refunds[0]["id"], refunded["provider_refund_id"]);

    // EBANX notifies the refund: the payment is still confirmed there, so nothing is appended.
    let types = app.event_types(&id).await;
    let notified = delivery_where(&app, "ebanx", "duplicate", |body| {
        String::from_utf8_lossy(body).contains("notification_type=refund")
    })
    .await;
    assert!(String::from_utf8_lossy(&notified).contains(&hash));
    assert_eq!(app.event_types(&id).await, types);
    assert_eq!(
        types,
        [
            "PaymentInitiated",
            "ProviderAttemptStarted",
            "ProviderTransactionCreated",
            "PaymentApproved",
            "RefundRequested",
            "PaymentRefunded"
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// Routing GCash between PayMongo and EBANX
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn gcash_falls_back_to_ebanx_when_paymongo_is_down_before_the_create() {
    let app = start(GCASH_RAILS).await;
    app.stop_emulator("gcash").await;
    // No preference: PayMongo first; its port refuses the connection, so it never got it.
    let body = gcash_payment(None, "640.00", "order-x-fb");
    let created = app.create_payment("x-fb", &body).await;
    let id = id_of(&created);
    assert_eq!(created["status"], "PENDING", "{created}");
    assert_eq!(created["provider"], "ebanx", "{created}");
    assert_eq!(created["next_action"]["type"], "redirect", "{created}");
    assert!(created["provider_outcome"].is_null(), "{created}");
    assert_eq!(attempts(&app, &id).await, ["gcash", "ebanx"]);
    assert_eq!(
        app.event_types(&id).await,
        [
            "PaymentInitiated",
            "ProviderAttemptStarted",
            "ProviderAttemptFailed",
            "ProviderAttemptStarted",
            "ProviderTransactionCreated"
        ]
    );
    let failed = &stored_events(&app, &id, "ProviderAttemptFailed").await[0];
    assert_eq!(failed["ProviderAttemptFailed"]["provider"], "gcash");
    assert_eq!(failed["ProviderAttemptFailed"]["kind"], "connection");
    let hash = created["provider_reference"]
        .as_str()
        .expect("hash")
        .to_owned();
    customer(&app, &hash, "complete").await;
    let approved = app.wait_for_status(&id, "APPROVED").await;
    assert_eq!(approved["provider"], "ebanx");
    assert_eq!(
        approved["fees"],
        fee_json("640.00"),
        "EBANX's fee, not PayMongo's"
    );
}

#[tokio::test]
async fn gcash_falls_back_to_paymongo_when_ebanx_is_down_before_the_create() {
    let app = start(EBANX_FIRST).await;
    app.stop_emulator("ebanx").await;
    let created = app
        .create_payment("x-fb-pm", &gcash_payment(None, "640.00", "order-x-fb-pm"))
        .await;
    let id = id_of(&created);
    assert_eq!(created["status"], "PENDING", "{created}");
    assert_eq!(created["provider"], "gcash", "{created}");
    assert_eq!(attempts(&app, &id).await, ["ebanx", "gcash"]);
    assert_eq!(intents_at_paymongo(&app, &id).await.len(), 1);
}

#[tokio::test]
async fn an_ebanx_create_cut_after_sending_never_falls_back_and_is_resolved_by_lookup() {
    let app = start_with(EBANX_FIRST, |s| {
        s.routing.provider_attempt_timeout_ms = 1_500
    })
    .await;
    for (fault, key, amount, resolve_by_sync) in [
        ("approved_timeout", "x-lost-timeout", "640.00", true),
        ("approved_503", "x-lost-503", "320.50", false),
    ] {
        let body = gcash_payment(None, amount, &format!("order-{key}"));
        set_fault(&app, "ebanx", fault).await;
        let created = app.create_payment(key, &body).await;
        set_fault(&app, "ebanx", "none").await;
        let id = id_of(&created);
        // EBANX may have made it: the payment stays with EBANX, PayMongo is never asked.
        assert_eq!(created["status"], "PENDING", "{fault}: {created}");
        assert_eq!(created["provider"], "ebanx", "{fault}: {created}");
        assert_eq!(created["provider_outcome"], "unknown", "{fault}: {created}");
        assert!(created["provider_reference"].is_null(), "{fault}");
        assert_eq!(attempts(&app, &id).await, ["ebanx"], "{fault}");
        assert!(intents_at_paymongo(&app, &id).await.is_empty(), "{fault}");
        let held = at_ebanx_for(&app, &id).await.expect("EBANX made it");
        assert_eq!(held["status"], "PE", "{fault}");
        let hash = held["hash"].as_str().unwrap().to_owned();

        // Asked by our payment id, EBANX names the payment: recorded, nothing sent again.
        let resolved = if resolve_by_sync {
            sync(&app, &id).await
        } else {
            let (status, retried) = json_of(
                app.post(PAYMENTS, &app.checkout_key, Some(key), &body)
                    .await,
            )
            .await;
            assert_eq!(status, 200, "{fault}: {retried}");
            retried
        };
        assert_eq!(resolved["status"], "PENDING", "{fault}: {resolved}");
        assert_eq!(resolved["provider_reference"], hash.as_str(), "{fault}");
        assert!(
            resolved["provider_outcome"].is_null(),
            "{fault}: {resolved}"
        );
        assert_eq!(
            app.event_types(&id).await,
            [
                "PaymentInitiated",
                "ProviderAttemptStarted",
                "ProviderOutcomeUnknown",
                "ProviderTransactionCreated"
            ],
            "{fault}"
        );

        customer(&app, &hash, "complete").await;
        let approved = app.wait_for_status(&id, "APPROVED").await;
        assert_eq!(approved["provider"], "ebanx", "{fault}");
        assert_eq!(approved["captured_amount"], amount, "{fault}");
        assert_eq!(approved["fees"], fee_json(amount), "{fault}");
        // One charge: one payment at EBANX, none at PayMongo, one attempt.
        assert_eq!(at_ebanx(&app, &hash).await["status"], "CO");
        assert!(intents_at_paymongo(&app, &id).await.is_empty(), "{fault}");
        assert_eq!(attempts(&app, &id).await, ["ebanx"], "{fault}");
    }
}

#[tokio::test]
async fn an_ebanx_server_error_keeps_the_payment_with_ebanx_until_ebanx_says() {
    let app = start(EBANX_FIRST).await;
    set_fault(&app, "ebanx", "server_error").await;
    let body = gcash_payment(None, "800.00", "order-x-5xx");
    let created = app.create_payment("x-5xx", &body).await;
    set_fault(&app, "ebanx", "none").await;
    let id = id_of(&created);
    // A 5xx may follow a payment: no fall back to PayMongo.
    assert_eq!(created["status"], "PENDING", "{created}");
    assert_eq!(created["provider"], "ebanx", "{created}");
    assert_eq!(created["provider_outcome"], "unknown", "{created}");
    assert_eq!(attempts(&app, &id).await, ["ebanx"]);
    assert!(intents_at_paymongo(&app, &id).await.is_empty());
    let unknown = &stored_events(&app, &id, "ProviderOutcomeUnknown").await[0];
    let detail = unknown["ProviderOutcomeUnknown"]["detail"].to_string();
    let key = EbanxConfig::from_env()
        .integration_key
        .expose_secret()
        .to_owned();
    assert!(
        !detail.contains(&key),
        "no key in the recorded detail: {detail}"
    );

    // EBANX, asked by our payment id, holds nothing: the same attempt is sent again, to EBANX.
    assert!(at_ebanx_for(&app, &id).await.is_none());
    let (status, retried) = json_of(
        app.post(PAYMENTS, &app.checkout_key, Some("x-5xx"), &body)
            .await,
    )
    .await;
    assert_eq!(status, 200, "{retried}");
    assert_eq!(retried["status"], "PENDING", "{retried}");
    assert_eq!(retried["provider"], "ebanx", "{retried}");
    assert_eq!(retried["next_action"]["type"], "redirect", "{retried}");
    assert_eq!(attempts(&app, &id).await, ["ebanx", "ebanx"]);
    assert!(intents_at_paymongo(&app, &id).await.is_empty());
    let held = at_ebanx_for(&app, &id).await.expect("made by the resend");
    assert_eq!(retried["provider_reference"], held["hash"]);
}
