//! GCash (through PayMongo) end to end: payledger over real HTTP, its PayMongo adapter talking
//! HTTP to the in-process PayMongo emulator (Payment Intent workflow), and the emulator's
//! `Paymongo-Signature`-signed `payment.paid` / `payment.failed` events coming back to
//! `POST /v1/webhooks/gcash`.
//!
//! Signatures are recomputed here with an HMAC-SHA256 the tests write out (`e2e::independent`,
//! checked against FIPS 180 and RFC 4231 vectors and a PayMongo-shaped vector computed with
//! `openssl dgst` and Python's `hmac`), never with the code under test. `webhook_deliveries` keeps
//! bodies, not headers, so a recorded delivery is re-sent with a `Paymongo-Signature` made here.

use e2e::independent::{hex, hmac_sha256, sha256};
use e2e::support::{events_json, id_of, json_of, problem, stored_events};
use secrecy::ExposeSecret;
use std::time::Duration;

use chrono::Utc;
use connectors::maya::MayaConfig;
use connectors::paymongo::PaymongoConfig;
use e2e::TestApp;
use serde_json::{json, Value};

use super::common::{
    self, customer_action, deliveries, delivery_digests, delivery_where, digest_of, emulator_read,
    emulator_root, expected_fee, kept_of_unverified, payment_to, pending_at, set_fault, start,
    start_with, sync, PAYMENTS, PHILIPPINES,
};

// ---------------------------------------------------------------------------------------------
// An independent SHA-256 (FIPS 180-4) and HMAC (RFC 2104).
// ---------------------------------------------------------------------------------------------

/// PayMongo's signature, computed here: hex HMAC-SHA256 under the webhook secret of
/// `t + "." + raw body`.
fn paymongo_signature(secret: &str, t: i64, body: &[u8]) -> String {
    let mut message = format!("{t}.").into_bytes();
    message.extend_from_slice(body);
    hex(&hmac_sha256(secret.as_bytes(), &message))
}

/// A test-mode `Paymongo-Signature`: the signature in `te`, `li` empty.
fn test_mode_header(secret: &str, t: i64, body: &[u8]) -> String {
    format!("t={t},te={},li=", paymongo_signature(secret, t, body))
}

#[test]
fn the_test_hmac_reproduces_fips_rfc_4231_and_paymongo_vectors() {
    assert_eq!(
        hex(&sha256(b"abc")),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    // RFC 4231, test case 2.
    assert_eq!(
        hex(&hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
    // RFC 4231, test case 6 (a key longer than the block).
    assert_eq!(
        hex(&hmac_sha256(
            &[0xaa; 131],
            b"Test Using Larger Than Block-Size Key - Hash Key First"
        )),
        "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
    );
    // `printf '%s' '1700000000.{"data":{"id":"evt_kat"}}' | openssl dgst -sha256 -hmac
    // 'whsk_payledger_test_000000000000000000000000'` (and the same with Python's hmac).
    assert_eq!(
        paymongo_signature(
            "whsk_payledger_test_000000000000000000000000",
            1_700_000_000,
            br#"{"data":{"id":"evt_kat"}}"#
        ),
        "480ecd7d573351beae94b0522312657b6b50678f6898fa4c8a4fe181239c7c1c"
    );
}

// ---------------------------------------------------------------------------------------------
// Harness helpers
// ---------------------------------------------------------------------------------------------

/// `http://addr` of the PayMongo emulator.
fn paymongo_root(app: &TestApp) -> String {
    emulator_root(app, "gcash")
}
fn gcash_payment(amount: &str, reference: &str) -> Value {
    let mut body = payment_to("gcash", amount, reference, json!({"type": "GCASH"}));
    body["return_url"] = json!("https://shop.example/return");
    body
}

fn fee_json(amount: &str) -> Value {
    common::fee_json("gcash", "GCASH", amount)
}

/// The payment intent a PayMongo event body is about.
fn intent_of_event(payload: &[u8]) -> Option<String> {
    let event: Value = serde_json::from_slice(payload).ok()?;
    event["data"]["attributes"]["data"]["attributes"]["payment_intent_id"]
        .as_str()
        .map(str::to_owned)
}

/// Polls until `webhook_deliveries` holds a `recorded` GCash delivery about the payment
/// intent `intent` and returns its raw payload.
async fn recorded_delivery(app: &TestApp, intent: &str) -> Vec<u8> {
    delivery_where(app, "gcash", "recorded", |p| {
        intent_of_event(p).as_deref() == Some(intent)
    })
    .await
}

async fn post_webhook(app: &TestApp, body: Vec<u8>, signature: Option<&str>) -> reqwest::Response {
    let signature = signature.map(|s| ("Paymongo-Signature", s));
    common::post_webhook(app, "gcash", "application/json", body, signature).await
}

/// A customer action on the GCash page (`authorize`, `fail`, `expire`), asserting `200`;
/// returns the payment intent as it now is.
async fn customer(app: &TestApp, intent: &str, action: &str) -> Value {
    let url = format!("{}/_sandbox/gcash/{intent}/{action}", paymongo_root(app));
    customer_action(app, url).await["data"].clone()
}

/// The payment intent at PayMongo, read with the secret key as payledger's adapter does.
async fn intent_at_paymongo(app: &TestApp, intent: &str) -> Value {
    let request = app
        .http
        .get(format!(
            "{}/v1/payment_intents/{intent}",
            paymongo_root(app)
        ))
        .basic_auth(
            PaymongoConfig::from_env()
                .secret_key
                .expose_secret()
                .to_owned(),
            Some(""),
        );
    emulator_read(request).await["data"].clone()
}

/// A pending GCash payment with its redirect: (payment JSON, payment intent id).
async fn pending(app: &TestApp, key: &str, amount: &str) -> (Value, String) {
    let body = gcash_payment(amount, &format!("order-{key}"));
    pending_at(app, "gcash", key, &body).await
}

/// A GCash payment the customer authorized, APPROVED by its `payment.paid` event:
/// (payment id, payment intent id).
async fn approved(app: &TestApp, key: &str, amount: &str) -> (String, String) {
    let (created, intent) = pending(app, key, amount).await;
    let id = id_of(&created);
    customer(app, &intent, "authorize").await;
    app.wait_for_status(&id, "APPROVED").await;
    (id, intent)
}

/// The `payment.paid` event PayMongo would send for `intent` (whose customer authorized),
/// built from the paid payment as PayMongo holds it.
async fn paid_event(app: &TestApp, intent: &str, event_id: &str) -> Vec<u8> {
    let at_paymongo = intent_at_paymongo(app, intent).await;
    let payment = at_paymongo["attributes"]["payments"][0].clone();
    assert_eq!(payment["attributes"]["status"], "paid", "{at_paymongo}");
    serde_json::to_vec(&json!({
        "data": {
            "id": event_id,
            "type": "event",
            "attributes": {
                "type": "payment.paid",
                "livemode": false,
                "data": payment,
                "previous_data": {},
                "created_at": Utc::now().timestamp(),
                "updated_at": Utc::now().timestamp(),
            }
        }
    }))
    .unwrap()
}

// ---------------------------------------------------------------------------------------------
// Outcomes
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn gcash_is_pending_with_a_redirect_then_approved_by_payment_paid_with_fees() {
    let app = start(PHILIPPINES).await;
    let (created, intent) = pending(&app, "g-ok", "1234.60").await;
    let id = id_of(&created);
    assert!(intent.starts_with("pi_"), "the payment intent: {intent}");
    assert_eq!(created["next_action"]["type"], "redirect", "{created}");
    let url = created["next_action"]["url"]
        .as_str()
        .expect("redirect url");
    assert_eq!(
        url,
        format!("{}/_sandbox/gcash/{intent}", paymongo_root(&app)),
        "the redirect is this intent's GCash page"
    );
    let page = app.http.get(url).send().await.expect("GCash page");
    assert_eq!(page.status(), 200);
    // PayMongo holds the intent, for this payment, in centavos, awaiting the customer.
    let at_paymongo = intent_at_paymongo(&app, &intent).await;
    let a = &at_paymongo["attributes"];
    assert_eq!(a["status"], "awaiting_next_action", "{at_paymongo}");
    assert_eq!(a["amount"], 123_460);
    assert_eq!(a["currency"], "PHP");
    assert_eq!(a["payment_method_allowed"], json!(["gcash"]));
    assert_eq!(a["metadata"]["payment_id"], id.as_str(), "{at_paymongo}");
    assert_eq!(
        a["next_action"]["redirect"]["return_url"], "https://shop.example/return",
        "the merchant's return_url reached PayMongo"
    );
    let view = app
        .read_at_least(&id, created["version"].as_i64().unwrap())
        .await;
    assert_eq!(view["status"], "PENDING");
    assert_eq!(view["next_action"], created["next_action"]);

    let paid = customer(&app, &intent, "authorize").await;
    assert_eq!(paid["attributes"]["status"], "succeeded", "{paid}");
    let approved = app.wait_for_status(&id, "APPROVED").await;
    assert_eq!(approved["provider"], "gcash");
    assert_eq!(approved["provider_reference"], intent.as_str());
    assert_eq!(approved["captured_amount"], "1234.60");
    let fee = expected_fee("gcash", "GCASH", "1234.60");
    assert_eq!(
        fee, "30.87",
        "2.50% of 1234.60 = 30.865, half away from zero"
    );
    assert_eq!(
        approved["fees"],
        json!({"amount": fee, "currency": "PHP"}),
        "{approved}"
    );
    assert!(approved["next_action"].is_null(), "{approved}");
    assert_eq!(
        app.event_types(&id).await,
        [
            "PaymentInitiated",
            "ProviderAttemptStarted",
            "ProviderTransactionCreated",
            "PaymentApproved"
        ]
    );
    let events = events_json(&app, &id).await;
    let approval = &events[3]["data"]["PaymentApproved"];
    assert_eq!(approval["provider"], "gcash", "{approval}");
    assert_eq!(approval["provider_transaction_id"], intent.as_str());
    assert_eq!(
        approval["fee"],
        json!({"amount": fee, "currency": "PHP"}),
        "the fee is fixed in the event: {approval}"
    );
    // It came by a verified webhook whose event id is PayMongo's.
    let payload = recorded_delivery(&app, &intent).await;
    let event: Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(event["data"]["attributes"]["type"], "payment.paid");
    assert_eq!(
        approval["provider_event_id"], event["data"]["id"],
        "{approval}"
    );
}

#[tokio::test]
async fn gcash_failed_by_the_customer_ends_declined_with_the_reason() {
    let app = start(PHILIPPINES).await;
    let (created, intent) = pending(&app, "g-fail", "500.00").await;
    let id = id_of(&created);
    customer(&app, &intent, "fail").await;
    let declined = app.wait_for_status(&id, "DECLINED").await;
    assert_eq!(declined["provider"], "gcash");
    assert_eq!(
        declined["failure_reason"], "gcash_generic_decline",
        "PayMongo's failed_code: {declined}"
    );
    assert!(declined["fees"].is_null(), "{declined}");
    assert_eq!(declined["captured_amount"], "0.00");
    assert_eq!(
        app.event_types(&id).await,
        [
            "PaymentInitiated",
            "ProviderAttemptStarted",
            "ProviderTransactionCreated",
            "PaymentDeclined"
        ]
    );
    let decline = &stored_events(&app, &id, "PaymentDeclined").await[0]["PaymentDeclined"];
    assert_eq!(decline["provider_transaction_id"], intent.as_str());
    let payload = recorded_delivery(&app, &intent).await;
    let event: Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(event["data"]["attributes"]["type"], "payment.failed");
}

#[tokio::test]
async fn gcash_authorization_window_that_lapses_ends_expired_by_sync() {
    let app = start(PHILIPPINES).await;
    let (created, intent) = pending(&app, "g-exp", "650.00").await;
    let id = id_of(&created);
    customer(&app, &intent, "expire").await;
    // PayMongo sends no event when the GCash window lapses: the ledger learns it by asking.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(deliveries(&app, "gcash").await.is_empty());
    assert_eq!(
        app.event_types(&id).await,
        [
            "PaymentInitiated",
            "ProviderAttemptStarted",
            "ProviderTransactionCreated"
        ]
    );
    let synced = sync(&app, &id).await;
    assert_eq!(synced["status"], "EXPIRED", "{synced}");
    assert!(synced["fees"].is_null(), "{synced}");
    assert_eq!(
        app.event_types(&id).await,
        [
            "PaymentInitiated",
            "ProviderAttemptStarted",
            "ProviderTransactionCreated",
            "PaymentExpired"
        ]
    );
    app.wait_for_status(&id, "EXPIRED").await;
}

#[tokio::test]
async fn gcash_server_error_leaves_the_payment_pending_with_its_outcome_unknown() {
    let app = start(PHILIPPINES).await;
    set_fault(&app, "gcash", "server_error").await;
    let created = app
        .create_payment("g-5xx", &gcash_payment("800.00", "order-g-5xx"))
        .await;
    let id = id_of(&created);
    // A 5xx may follow a charge: the payment stays the provider's until it says.
    assert_eq!(created["status"], "PENDING", "{created}");
    assert_eq!(created["provider_outcome"], "unknown", "{created}");
    assert_eq!(created["provider"], "gcash", "{created}");
    assert!(created["provider_reference"].is_null(), "{created}");
    assert!(created["next_action"].is_null(), "{created}");
    app.wait_for_status(&id, "PENDING").await;
    assert_eq!(
        app.event_types(&id).await,
        [
            "PaymentInitiated",
            "ProviderAttemptStarted",
            "ProviderOutcomeUnknown"
        ]
    );
    let attempt = &stored_events(&app, &id, "ProviderOutcomeUnknown").await[0];
    assert_eq!(attempt["ProviderOutcomeUnknown"]["provider"], "gcash");
    assert_eq!(attempt["ProviderOutcomeUnknown"]["kind"], "server_error");
    let detail = attempt["ProviderOutcomeUnknown"]["detail"].to_string();
    let config = PaymongoConfig::from_env();
    assert!(
        !detail.contains(&config.secret_key.expose_secret().to_owned())
            && !detail.contains(&config.webhook_secret.expose_secret().to_owned()),
        "no secret in the recorded detail: {detail}"
    );

    set_fault(&app, "gcash", "none").await;
    let (next, _) = pending(&app, "g-5xx-next", "800.00").await;
    assert_eq!(
        app.event_types(&id_of(&next)).await,
        [
            "PaymentInitiated",
            "ProviderAttemptStarted",
            "ProviderTransactionCreated"
        ]
    );
}

#[tokio::test]
async fn gcash_below_paymongos_minimum_is_not_left_pending() {
    let app = start(PHILIPPINES).await;
    let response = app
        .post(
            PAYMENTS,
            &app.checkout_key,
            Some("g-min"),
            &gcash_payment("19.99", "order-g-min"),
        )
        .await;
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    // PayMongo refuses intents under PHP 20.00: either payledger refuses the request up front
    // or records PayMongo's refusal; never a payment waiting for a customer who cannot pay.
    if status == 201 {
        assert_eq!(body["status"], "FAILED", "{body}");
        assert!(body["next_action"].is_null(), "{body}");
        let id = id_of(&body);
        let attempts = stored_events(&app, &id, "ProviderAttemptFailed").await;
        assert_eq!(attempts.len(), 1, "{attempts:?}");
        assert_eq!(attempts[0]["ProviderAttemptFailed"]["kind"], "rejected");
    } else {
        assert!((400..500).contains(&status), "{status} {body}");
    }
}

// ---------------------------------------------------------------------------------------------
// Refunds; no manual capture
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn gcash_refunds_partially_then_fully() {
    let app = start(PHILIPPINES).await;
    let (id, intent) = approved(&app, "g-ref", "1500.00").await;

    let (status, first) = json_of(
        app.post(
            &format!("{PAYMENTS}/{id}/refunds"),
            &app.checkout_key,
            Some("g-ref-1"),
            &json!({"amount": "400.50", "reason": "customer request"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201, "{first}");
    assert_eq!(first["status"], "SUCCEEDED", "{first}");
    assert_eq!(first["payment"]["status"], "PARTIALLY_REFUNDED", "{first}");

    let (status, second) = json_of(
        app.post(
            &format!("{PAYMENTS}/{id}/refunds"),
            &app.checkout_key,
            Some("g-ref-2"),
            &json!({"amount": "1099.50"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201, "{second}");
    assert_eq!(second["status"], "SUCCEEDED", "{second}");
    let view = app
        .read_at_least(&id, second["payment"]["version"].as_i64().unwrap())
        .await;
    assert_eq!(view["status"], "REFUNDED");
    assert_eq!(view["refunded_amount"], "1500.00");
    assert_eq!(view["fees"], fee_json("1500.00"), "fees stay as approved");

    // Retrying the first refund (same Idempotency-Key) moves no more money.
    let (status, again) = json_of(
        app.post(
            &format!("{PAYMENTS}/{id}/refunds"),
            &app.checkout_key,
            Some("g-ref-1"),
            &json!({"amount": "400.50", "reason": "customer request"}),
        )
        .await,
    )
    .await;
    assert!(status == 200 || status == 201, "{status} {again}");
    assert_eq!(again["id"], first["id"], "{again}");

    let before = app.event_types(&id).await;
    problem(
        app.post(
            &format!("{PAYMENTS}/{id}/refunds"),
            &app.checkout_key,
            Some("g-ref-3"),
            &json!({"amount": "1.00"}),
        )
        .await,
        409,
        "refund of a fully refunded payment",
    )
    .await;
    assert_eq!(app.event_types(&id).await, before);
    assert_eq!(
        before,
        [
            "PaymentInitiated",
            "ProviderAttemptStarted",
            "ProviderTransactionCreated",
            "PaymentApproved",
            "RefundRequested",
            "PaymentRefunded",
            "RefundRequested",
            "PaymentRefunded"
        ]
    );

    // PayMongo made exactly these two refunds, in centavos, on the paid payment.
    let at_paymongo = intent_at_paymongo(&app, &intent).await;
    let payments = at_paymongo["attributes"]["payments"].as_array().unwrap();
    assert_eq!(payments.len(), 1, "{at_paymongo}");
    let refunds = payments[0]["attributes"]["refunds"].as_array().unwrap();
    let amounts: Vec<i64> = refunds
        .iter()
        .filter_map(|r| r["attributes"]["amount"].as_i64())
        .collect();
    assert_eq!(amounts, [40_050, 109_950], "{at_paymongo}");
    let recorded: Vec<Value> = stored_events(&app, &id, "PaymentRefunded")
        .await
        .iter()
        .map(|e| e["PaymentRefunded"]["provider_refund_id"].clone())
        .collect();
    let at_provider: Vec<Value> = refunds.iter().map(|r| r["id"].clone()).collect();
    assert_eq!(recorded, at_provider);
}

#[tokio::test]
async fn gcash_manual_capture_is_refused_up_front_and_appends_nothing() {
    let app = start(PHILIPPINES).await;
    let mut body = gcash_payment("1000.00", "order-g-hold");
    body["capture"] = json!("manual");
    let response = app
        .post(PAYMENTS, &app.checkout_key, Some("g-hold"), &body)
        .await;
    let status = response.status().as_u16();
    let answer = response.text().await.unwrap();
    // What must hold whatever the answer: no payment intent left for a customer to pay.
    let intents: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE event_type = 'ProviderTransactionCreated'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(intents, 0, "{status} {answer}");

    // What a payments engineer expects: GCash has no manual capture and no other configured
    // provider takes GCASH, so this request can never succeed. Like a method no provider
    // takes, it is a 4xx problem that appends nothing and leaves the merchant's reference free
    // (the adapter refuses it without calling PayMongo, so nothing was ever at a provider).
    let mut deviations = Vec::new();
    if !(400..500).contains(&status) {
        deviations.push(format!("answered {status}, not a 4xx"));
    }
    let appended = app.event_count().await;
    if appended != 0 {
        let trail: Vec<String> =
            sqlx::query_scalar("SELECT event_type FROM events ORDER BY global_position")
                .fetch_all(&app.pool)
                .await
                .unwrap();
        deviations.push(format!("{appended} events appended: {trail:?}"));
    }
    let retry = app
        .post(
            PAYMENTS,
            &app.checkout_key,
            Some("g-hold-auto"),
            &gcash_payment("1000.00", "order-g-hold"),
        )
        .await;
    let retry_status = retry.status().as_u16();
    if retry_status != 201 {
        deviations.push(format!(
            "the same reference with automatic capture then answers {retry_status}: {}",
            retry.text().await.unwrap()
        ));
    }
    assert!(
        deviations.is_empty(),
        "GCash payment with capture=manual: {deviations:#?}\nanswer: {status} {answer}"
    );
}

// ---------------------------------------------------------------------------------------------
// Webhook authentication
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn gcash_duplicate_webhook_answers_200_and_appends_nothing() {
    let app = start(PHILIPPINES).await;
    let (id, intent) = approved(&app, "g-dup", "900.00").await;
    let payload = recorded_delivery(&app, &intent).await;
    let secret = PaymongoConfig::from_env()
        .webhook_secret
        .expose_secret()
        .to_owned();
    let events_before = app.event_count().await;
    let trail = app.event_types(&id).await;

    for _ in 0..2 {
        let header = test_mode_header(&secret, Utc::now().timestamp(), &payload);
        let (status, body) =
            json_of(post_webhook(&app, payload.clone(), Some(&header)).await).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["result"], "duplicate", "{body}");
    }
    assert_eq!(app.event_count().await, events_before);
    assert_eq!(app.event_types(&id).await, trail);
    assert_eq!(
        deliveries(&app, "gcash")
            .await
            .iter()
            .filter(|(valid, result, body)| *valid && result == "duplicate" && *body == payload)
            .count(),
        2,
        "both redeliveries are logged as verified duplicates"
    );
}

#[tokio::test]
async fn gcash_tampered_body_with_the_old_signature_is_401_logged_and_appends_nothing() {
    let app = start(PHILIPPINES).await;
    let (id, intent) = approved(&app, "g-tamper", "900.00").await;
    let payload = recorded_delivery(&app, &intent).await;
    let secret = PaymongoConfig::from_env()
        .webhook_secret
        .expose_secret()
        .to_owned();
    // The signature PayMongo would have sent for these bytes, now.
    let old = test_mode_header(&secret, Utc::now().timestamp(), &payload);

    let mut event: Value = serde_json::from_slice(&payload).unwrap();
    let amount = &mut event["data"]["attributes"]["data"]["attributes"]["amount"];
    *amount = json!(amount.as_i64().unwrap() * 10);
    let tampered = serde_json::to_vec(&event).unwrap();
    // The same JSON re-serialized with other whitespace: not the signed bytes either.
    let mut reformatted = b" ".to_vec();
    reformatted.extend_from_slice(&payload);
    let events_before = app.event_count().await;

    for (body, case) in [
        (tampered.clone(), "amount x10, old signature"),
        (reformatted.clone(), "same JSON, other bytes"),
    ] {
        let answer = problem(post_webhook(&app, body, Some(&old)).await, 401, case).await;
        assert!(!answer.to_string().contains(&secret), "{answer}");
    }
    assert_eq!(app.event_count().await, events_before, "nothing appended");
    assert_eq!(
        app.event_types(&id).await,
        [
            "PaymentInitiated",
            "ProviderAttemptStarted",
            "ProviderTransactionCreated",
            "PaymentApproved"
        ]
    );
    let view = app.wait_for_status(&id, "APPROVED").await;
    assert_eq!(view["captured_amount"], "900.00");
    let rows = delivery_digests(&app, "gcash").await;
    for body in [&tampered, &reformatted] {
        let logged: Vec<_> = rows
            .iter()
            .filter(|(_, _, _, d)| *d == digest_of(body))
            .collect();
        assert_eq!(logged.len(), 1, "each forged delivery is logged once");
        assert!(!logged[0].0, "signature_valid = false");
        assert_eq!(logged[0].1, "refused");
    }

    // Control: the old signature does verify the bytes it was made for.
    let (status, body) = json_of(post_webhook(&app, payload, Some(&old)).await).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"], "duplicate", "{body}");
}

#[tokio::test]
async fn gcash_webhook_with_a_wrong_secret_misplaced_or_missing_signature_is_401() {
    let app = start(PHILIPPINES).await;
    let (id, intent) = approved(&app, "g-secret", "900.00").await;
    let payload = recorded_delivery(&app, &intent).await;
    let secret = PaymongoConfig::from_env()
        .webhook_secret
        .expose_secret()
        .to_owned();
    let now = Utc::now().timestamp();
    let events_before = app.event_count().await;

    let wrong = test_mode_header("whsk_someone_else_entirely_000000000000000", now, &payload);
    let right_sig = paymongo_signature(&secret, now, &payload);
    let cases = [
        (Some(wrong.clone()), "signed with another secret"),
        // Test mode compares `te`: a correct signature offered only as `li` is not accepted.
        (
            Some(format!("t={now},te=,li={right_sig}")),
            "signature in li",
        ),
        // The signature made for another timestamp.
        (
            Some(format!("t={},te={right_sig},li=", now - 1)),
            "t changed",
        ),
        (Some(format!("te={right_sig},li=")), "no t"),
        (Some("garbage".to_owned()), "unparseable header"),
        (None, "no header"),
    ];
    for (header, case) in &cases {
        problem(
            post_webhook(&app, payload.clone(), header.as_deref()).await,
            401,
            case,
        )
        .await;
    }
    assert_eq!(app.event_count().await, events_before);
    assert_eq!(app.event_types(&id).await.len(), 4);
    let refused = deliveries(&app, "gcash")
        .await
        .into_iter()
        .filter(|(valid, result, body)| {
            !*valid && result == "refused" && *body == kept_of_unverified(&payload)
        })
        .count();
    assert_eq!(refused, cases.len(), "every refusal is logged");

    // Control: the real secret, same construction, verifies (a redelivery: nothing appended).
    let header = test_mode_header(&secret, now, &payload);
    let (status, body) = json_of(post_webhook(&app, payload, Some(&header)).await).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"], "duplicate", "{body}");
    assert_eq!(app.event_count().await, events_before);
}

#[tokio::test]
async fn gcash_webhook_with_a_stale_timestamp_is_401_even_when_correctly_signed() {
    // Pending, with its `payment.paid` lost, so a replayed old event would approve it.
    let app = start_with(PHILIPPINES, |s| s.sandbox.deliver_webhooks = false).await;
    let (created, intent) = pending(&app, "g-stale", "900.00").await;
    let id = id_of(&created);
    customer(&app, &intent, "authorize").await;
    let event = paid_event(&app, &intent, "evt_payledgerstaletest000001").await;
    let secret = PaymongoConfig::from_env()
        .webhook_secret
        .expose_secret()
        .to_owned();
    let now = Utc::now().timestamp();
    let events_before = app.event_count().await;

    for (t, case) in [
        (now - 301, "301 s old"),
        (now - 3600, "an hour old"),
        (now + 3600, "an hour in the future"),
    ] {
        problem(
            post_webhook(
                &app,
                event.clone(),
                Some(&test_mode_header(&secret, t, &event)),
            )
            .await,
            401,
            case,
        )
        .await;
    }
    assert_eq!(app.event_count().await, events_before);
    assert_eq!(
        app.event_types(&id).await,
        [
            "PaymentInitiated",
            "ProviderAttemptStarted",
            "ProviderTransactionCreated"
        ]
    );
    assert_eq!(
        deliveries(&app, "gcash")
            .await
            .iter()
            .filter(|(valid, result, body)| !*valid
                && result == "refused"
                && *body == kept_of_unverified(&event))
            .count(),
        3,
        "each stale delivery is logged with signature_valid=false"
    );

    // Control: the same body and secret with a fresh `t` verifies and approves.
    let (status, body) = json_of(
        post_webhook(
            &app,
            event.clone(),
            Some(&test_mode_header(&secret, now - 5, &event)),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"], "recorded", "{body}");
    let approved = app.wait_for_status(&id, "APPROVED").await;
    assert_eq!(approved["fees"], fee_json("900.00"));
}

// ---------------------------------------------------------------------------------------------
// Lost webhooks: sync and the reconciler
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn gcash_lost_webhook_sync_brings_the_payment_to_paymongos_status() {
    let app = start_with(PHILIPPINES, |s| s.sandbox.deliver_webhooks = false).await;
    let (paid, paid_intent) = pending(&app, "g-lost-ok", "1234.60").await;
    let (failed, failed_intent) = pending(&app, "g-lost-ko", "400.00").await;
    let (paid, failed) = (id_of(&paid), id_of(&failed));
    customer(&app, &paid_intent, "authorize").await;
    customer(&app, &failed_intent, "fail").await;

    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(
        deliveries(&app, "gcash").await.is_empty(),
        "nothing was delivered"
    );
    for id in [&paid, &failed] {
        assert_eq!(
            app.event_types(id).await,
            [
                "PaymentInitiated",
                "ProviderAttemptStarted",
                "ProviderTransactionCreated"
            ]
        );
    }

    let synced = sync(&app, &paid).await;
    assert_eq!(synced["status"], "APPROVED", "{synced}");
    assert_eq!(synced["captured_amount"], "1234.60", "{synced}");
    assert_eq!(synced["fees"], fee_json("1234.60"), "{synced}");
    let view = app
        .read_at_least(&paid, synced["version"].as_i64().unwrap())
        .await;
    assert_eq!(view["status"], "APPROVED");
    assert_eq!(
        app.event_types(&paid).await,
        [
            "PaymentInitiated",
            "ProviderAttemptStarted",
            "ProviderTransactionCreated",
            "PaymentApproved"
        ]
    );

    let synced = sync(&app, &failed).await;
    assert_eq!(synced["status"], "DECLINED", "{synced}");
    assert_eq!(
        synced["failure_reason"], "gcash_generic_decline",
        "{synced}"
    );

    let again = sync(&app, &paid).await;
    assert_eq!(again["version"], view["version"]);
    assert_eq!(app.event_types(&paid).await.len(), 4);

    // The `payment.paid` arrives late after all (its event id is not the sync's):
    // acknowledged, and the payment is not approved twice.
    let late = paid_event(&app, &paid_intent, "evt_payledgerlatetest00000001").await;
    let header = test_mode_header(
        PaymongoConfig::from_env().webhook_secret.expose_secret(),
        Utc::now().timestamp(),
        &late,
    );
    let (status, body) = json_of(post_webhook(&app, late, Some(&header)).await).await;
    assert_eq!(status, 200, "{body}");
    assert_ne!(body["result"], "recorded", "{body}");
    assert_eq!(app.event_types(&paid).await.len(), 4);
    let view = app.wait_for_status(&paid, "APPROVED").await;
    assert_eq!(view["captured_amount"], "1234.60");
}

#[tokio::test]
async fn gcash_lost_webhook_reconciler_settles_stuck_pending_payments() {
    let app = start_with(PHILIPPINES, |s| {
        s.sandbox.deliver_webhooks = false;
        s.routing.reconcile_after_ms = 200;
        s.routing.reconcile_interval_ms = 100;
    })
    .await;
    let (paid, paid_intent) = pending(&app, "g-rec-ok", "950.00").await;
    let (lapsed, lapsed_intent) = pending(&app, "g-rec-exp", "950.00").await;
    let (waiting, _) = pending(&app, "g-rec-wait", "950.00").await;
    let (paid, lapsed, waiting) = (id_of(&paid), id_of(&lapsed), id_of(&waiting));
    customer(&app, &paid_intent, "authorize").await;
    customer(&app, &lapsed_intent, "expire").await;

    let approved = app.wait_for_status(&paid, "APPROVED").await;
    assert_eq!(approved["fees"], fee_json("950.00"));
    app.wait_for_status(&lapsed, "EXPIRED").await;
    assert!(
        deliveries(&app, "gcash").await.is_empty(),
        "no webhook was delivered"
    );
    assert_eq!(
        app.event_types(&waiting).await,
        [
            "PaymentInitiated",
            "ProviderAttemptStarted",
            "ProviderTransactionCreated"
        ],
        "still awaiting the customer at PayMongo, so still pending here"
    );
}

// ---------------------------------------------------------------------------------------------
// Lost create answers: the intent exists at PayMongo, the ledger did not hear of it
// ---------------------------------------------------------------------------------------------

/// The payment intents the emulator holds for one of our payments (its test control route,
/// matching `metadata.payment_id`).
async fn intents_at_paymongo(app: &TestApp, payment_id: &str) -> Vec<Value> {
    let response = app
        .http
        .get(format!(
            "{}/_sandbox/payment_intents?payment_id={payment_id}",
            paymongo_root(app)
        ))
        .send()
        .await
        .expect("read the emulator");
    let (status, body) = json_of(response).await;
    assert_eq!(status, 200, "{body}");
    body["data"].as_array().expect("a list of intents").clone()
}

#[tokio::test]
async fn gcash_lost_create_answers_are_recovered_by_a_same_key_retry_without_a_second_intent() {
    let app = start_with(PHILIPPINES, |s| {
        s.routing.provider_attempt_timeout_ms = 1_500
    })
    .await;
    for (fault, key, amount) in [
        ("approved_timeout", "g-lost-timeout", "640.00"),
        ("approved_503", "g-lost-503", "320.50"),
    ] {
        let body = gcash_payment(amount, &format!("order-{key}"));
        set_fault(&app, "gcash", fault).await;
        let created = app.create_payment(key, &body).await;
        set_fault(&app, "gcash", "none").await;
        let id = id_of(&created);
        assert_eq!(created["status"], "PENDING", "{fault}: {created}");
        assert_eq!(created["provider"], "gcash", "{fault}: {created}");
        assert_eq!(created["provider_outcome"], "unknown", "{fault}: {created}");
        assert!(
            created["provider_reference"].is_null(),
            "{fault}: {created}"
        );

        // PayMongo made the intent and attached GCash to it: it waits for the customer.
        let held = intents_at_paymongo(&app, &id).await;
        assert_eq!(held.len(), 1, "{fault}: {held:?}");
        let intent = held[0]["id"].as_str().expect("intent id").to_owned();
        assert_eq!(
            held[0]["attributes"]["status"], "awaiting_next_action",
            "{fault}"
        );

        // PayMongo cannot be asked by reference, but keeps our payment id as the create's
        // Idempotency-Key: a retry with the same key sends the create again and PayMongo
        // answers the first intent, with the redirect the lost answer carried.
        let (status, retried) = json_of(
            app.post(PAYMENTS, &app.checkout_key, Some(key), &body)
                .await,
        )
        .await;
        assert_eq!(status, 200, "{fault}: {retried}");
        assert_eq!(id_of(&retried), id);
        assert_eq!(retried["status"], "PENDING", "{fault}: {retried}");
        assert!(retried["provider_outcome"].is_null(), "{fault}: {retried}");
        assert_eq!(
            retried["provider_reference"].as_str(),
            Some(intent.as_str()),
            "{fault}: {retried}"
        );
        assert_eq!(
            retried["next_action"]["type"], "redirect",
            "{fault}: {retried}"
        );
        assert_eq!(intents_at_paymongo(&app, &id).await.len(), 1, "{fault}");
        assert_eq!(
            app.event_types(&id).await,
            [
                "PaymentInitiated",
                "ProviderAttemptStarted",
                "ProviderOutcomeUnknown",
                "ProviderAttemptStarted",
                "ProviderTransactionCreated"
            ],
            "{fault}"
        );

        // The customer authorizes it: `payment.paid` names our payment and the intent.
        customer(&app, &intent, "authorize").await;
        let approved = app.wait_for_status(&id, "APPROVED").await;
        assert_eq!(approved["provider"], "gcash", "{approved}");
        assert_eq!(
            approved["provider_reference"].as_str(),
            Some(intent.as_str())
        );
        assert_eq!(approved["captured_amount"], amount, "{approved}");
        assert_eq!(approved["fees"], fee_json(amount), "{approved}");
        assert!(approved["provider_outcome"].is_null(), "{approved}");
        recorded_delivery(&app, &intent).await;
        assert_eq!(
            app.event_types(&id).await,
            [
                "PaymentInitiated",
                "ProviderAttemptStarted",
                "ProviderOutcomeUnknown",
                "ProviderAttemptStarted",
                "ProviderTransactionCreated",
                "PaymentApproved"
            ],
            "{fault}"
        );
        // The same attempt, sent twice: one provider, one attempt id.
        let attempts = stored_events(&app, &id, "ProviderAttemptStarted").await;
        assert_eq!(attempts.len(), 2, "{attempts:?}");
        for attempt in &attempts {
            assert_eq!(attempt["ProviderAttemptStarted"]["provider"], "gcash");
            assert_eq!(
                attempt["ProviderAttemptStarted"]["attempt_id"],
                attempts[0]["ProviderAttemptStarted"]["attempt_id"]
            );
        }
        let held = intents_at_paymongo(&app, &id).await;
        assert_eq!(held.len(), 1, "{fault}: {held:?}");
        assert_eq!(held[0]["attributes"]["status"], "succeeded", "{fault}");
    }
}

// ---------------------------------------------------------------------------------------------
// Public configuration
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn public_config_shows_gcash_methods_and_no_paymongo_or_maya_secret() {
    let app = start(PHILIPPINES).await;
    let response = app
        .http
        .get(format!("{}/v1/config", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    let paymongo = PaymongoConfig::from_env();
    for (name, value) in [
        (
            "PAYMONGO_SECRET_KEY",
            paymongo.secret_key.expose_secret().to_owned(),
        ),
        (
            "PAYMONGO_WEBHOOK_SECRET",
            paymongo.webhook_secret.expose_secret().to_owned(),
        ),
        (
            "MAYA_SECRET_KEY",
            MayaConfig::from_env().secret_key.expose_secret().to_owned(),
        ),
    ] {
        assert!(!value.is_empty(), "{name} is empty in this environment");
        assert!(!text.contains(&value), "/v1/config exposes {name}: {text}");
    }
    let config: Value = serde_json::from_str(&text).unwrap();
    let gcash = config["providers"]
        .as_array()
        .expect("providers")
        .iter()
        .find(|p| p["provider"] == "gcash")
        .unwrap_or_else(|| panic!("gcash missing: {text}"))
        .clone();
    assert_eq!(gcash["methods"], json!(["GCASH"]), "{text}");
    assert_eq!(gcash["public_key"], json!(paymongo.public_key), "{text}");
    let maya = config["providers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["provider"] == "maya")
        .unwrap_or_else(|| panic!("maya missing: {text}"))
        .clone();
    assert_eq!(
        maya["public_key"],
        MayaConfig::from_env().public_key.as_str()
    );
    assert_eq!(maya["methods"], json!(["MAYA"]), "{text}");
}
