//! PayU Latam end to end: payledger over real HTTP, its PayU adapter talking HTTP to the
//! in-process PayU emulator, and the emulator's signed, form-encoded confirmations coming back
//! to `POST /v1/webhooks/payu`. Cards, Efecty cash codes and PSE; refunds; confirmation
//! authentication; lost confirmations; the payment-method and PSE-bank catalogs.
//!
//! Signatures are recomputed here with an HMAC-SHA256 the tests write out (`e2e::independent`,
//! checked against FIPS 180 and RFC 4231 vectors), never with the code under test. PayU's
//! confirmation carries no signed timestamp, so there is no stale-timestamp case for PayU.

use e2e::independent::{hex, hmac_sha256, sha256};
use e2e::support::{self, events_json, id_of, json_of, problem};
use secrecy::ExposeSecret;
use std::str::FromStr;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use connectors::payu::PayuConfig;
use e2e::TestApp;
use reqwest::Url;
use rust_decimal::Decimal;
use serde_json::{json, Value};

use super::common::{
    self, card, customer_action, deliveries, delivery_digests, delivery_where, digest_of,
    emulator_read, emulator_root, expected_fee, fee_json, kept_of_unverified, payment_to, pse,
    set_fault, start, start_with, sync, COLOMBIA, PAYMENTS,
};

// ---------------------------------------------------------------------------------------------
// An independent SHA-256 (FIPS 180-4) and HMAC (RFC 2104).
// ---------------------------------------------------------------------------------------------

#[test]
fn the_test_hmac_reproduces_fips_and_rfc_4231_vectors() {
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
}

/// PayU's `new_value`: one decimal when the second is zero (`150.00` -> `150.0`), else two.
fn new_value(value: &str) -> String {
    let mut amount = Decimal::from_str(value).expect("decimal value");
    amount.rescale(2);
    let text = amount.to_string();
    match text.strip_suffix('0') {
        Some(one_decimal) => one_decimal.to_owned(),
        None => text,
    }
}

#[test]
fn new_value_follows_payus_rule() {
    assert_eq!(new_value("150.00"), "150.0");
    assert_eq!(new_value("150.25"), "150.25");
    assert_eq!(new_value("150.20"), "150.2");
    assert_eq!(new_value("150000.00"), "150000.0");
}

// ---------------------------------------------------------------------------------------------
// Harness helpers
// ---------------------------------------------------------------------------------------------

/// `http://addr` of the PayU emulator.
fn payu_root(app: &TestApp) -> String {
    emulator_root(app, "payu")
}
fn payment(amount: &str, reference: &str, method: Value) -> Value {
    payment_to("payu", amount, reference, method)
}

fn efecty() -> Value {
    json!({"type": "EFECTY"})
}

/// Decoded form pairs, in order.
fn form_pairs(body: &[u8]) -> Vec<(String, String)> {
    let text = std::str::from_utf8(body).expect("a form is ASCII");
    Url::parse(&format!("http://form.invalid/?{text}"))
        .expect("form")
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn encode_form(pairs: &[(String, String)]) -> Vec<u8> {
    let mut url = Url::parse("http://form.invalid/").unwrap();
    url.query_pairs_mut().extend_pairs(pairs);
    url.query().unwrap_or_default().as_bytes().to_vec()
}

fn field<'a>(pairs: &'a [(String, String)], name: &str) -> &'a str {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("confirmation without `{name}`"))
}

fn with_field(pairs: &[(String, String)], name: &str, value: &str) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| {
            if k == name {
                (k.clone(), value.to_owned())
            } else {
                (k.clone(), v.clone())
            }
        })
        .collect()
}

/// The confirmation's `sign`, computed here: HMAC-SHA256 under `secret` of
/// `ApiKey~merchant_id~reference_sale~new_value~currency~state_pol`.
fn payu_sign(pairs: &[(String, String)], api_key: &str, secret: &str) -> String {
    let message = format!(
        "{api_key}~{}~{}~{}~{}~{}",
        field(pairs, "merchant_id"),
        field(pairs, "reference_sale"),
        new_value(field(pairs, "value")),
        field(pairs, "currency"),
        field(pairs, "state_pol"),
    );
    hex(&hmac_sha256(secret.as_bytes(), message.as_bytes()))
}

/// Polls until `webhook_deliveries` holds a PayU delivery with `result` about `payment_id`.
async fn delivery_for(app: &TestApp, payment_id: &str, result: &str) -> Vec<u8> {
    delivery_where(app, "payu", result, |body| {
        form_pairs(body)
            .iter()
            .any(|(k, v)| k == "reference_sale" && v == payment_id)
    })
    .await
}

async fn post_confirmation(app: &TestApp, body: Vec<u8>) -> reqwest::Response {
    common::post_webhook(app, "payu", "application/x-www-form-urlencoded", body, None).await
}

/// Runs a customer action at the emulator (`/_sandbox/...`), asserting `200`.
async fn customer(app: &TestApp, path: &str) -> Value {
    customer_action(app, format!("{}{path}", payu_root(app))).await
}

/// A pending Efecty payment: returns (payment JSON, cash code).
async fn pending_efecty(app: &TestApp, key: &str, amount: &str) -> (Value, String) {
    let created = app
        .create_payment(key, &payment(amount, &format!("order-{key}"), efecty()))
        .await;
    assert_eq!(created["status"], "PENDING", "{created}");
    assert_eq!(created["provider"], "payu", "{created}");
    assert_eq!(created["next_action"]["type"], "cash_code", "{created}");
    let code = created["next_action"]["code"]
        .as_str()
        .expect("cash code")
        .to_owned();
    (created, code)
}

/// An Efecty payment paid at the emulator and APPROVED by its confirmation.
async fn approved_efecty(app: &TestApp, key: &str) -> String {
    let (created, code) = pending_efecty(app, key, "150000.00").await;
    let id = id_of(&created);
    customer(app, &format!("/_sandbox/efecty/{code}/pay")).await;
    app.wait_for_status(&id, "APPROVED").await;
    id
}

/// A query to PayU's reports API (`command` with `details`), asked over HTTP with the
/// account's keys as payledger's adapter does; returns its `result.payload`.
async fn payu_report(app: &TestApp, command: &str, details: Value) -> Value {
    let config = PayuConfig::from_env();
    let request = app
        .http
        .post(format!("{}/reports-api/4.0/service.cgi", payu_root(app)))
        .header("Accept", "application/json")
        .json(&json!({
            "language": "es",
            "command": command,
            "merchant": {"apiKey": config.api_key.expose_secret().to_owned(), "apiLogin": config.api_login},
            "details": details,
            "test": false,
        }));
    let body = emulator_read(request).await;
    assert_eq!(body["code"], "SUCCESS", "{body}");
    body["result"]["payload"].clone()
}

async fn payu_order(app: &TestApp, order_id: u64) -> Value {
    payu_report(app, "ORDER_DETAIL", json!({"orderId": order_id})).await
}

fn order_id(provider_reference: &str) -> u64 {
    provider_reference
        .split_once(':')
        .and_then(|(order, _)| order.parse().ok())
        .unwrap_or_else(|| panic!("provider_reference `{provider_reference}` is not order:tx"))
}

// ---------------------------------------------------------------------------------------------
// Cards
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn payu_card_approved_with_provider_reference_fees_and_event_trail() {
    let app = start(COLOMBIA).await;
    let created = app
        .create_payment(
            "p-ok",
            &payment("129000.00", "order-p-ok", card("tok_payu_approved")),
        )
        .await;
    assert_eq!(created["provider"], "payu", "{created}");
    let id = id_of(&created);
    let approved = app.wait_for_status(&id, "APPROVED").await;
    assert_eq!(approved["provider"], "payu");
    assert_eq!(approved["captured_amount"], "129000.00");
    let reference = approved["provider_reference"]
        .as_str()
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| panic!("provider_reference missing: {approved}"))
        .to_owned();
    let fee = expected_fee("payu", "CARD", "129000.00");
    assert_eq!(fee, "5402.10", "3.49% of 129000.00 + 900.00");
    assert_eq!(
        approved["fees"],
        fee_json("payu", "CARD", "129000.00"),
        "{approved}"
    );

    // PayU holds that order, for this payment, approved.
    let order = payu_order(&app, order_id(&reference)).await;
    assert_eq!(order["referenceCode"], id.as_str(), "{order}");
    assert_eq!(
        order["transactions"][0]["transactionResponse"]["state"], "APPROVED",
        "{order}"
    );

    // PayU decides cards in the create's answer and confirms later too: the confirmation
    // must not append a second approval.
    let confirmation = delivery_for(&app, &id, "ignored").await;
    assert_eq!(field(&form_pairs(&confirmation), "state_pol"), "4");
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
    assert_eq!(
        approval["fee"],
        fee_json("payu", "CARD", "129000.00"),
        "{approval}"
    );
    assert_eq!(approval["provider_transaction_id"], reference.as_str());
}

#[tokio::test]
async fn payu_card_declined_ends_declined_with_a_reason() {
    let app = start(COLOMBIA).await;
    let created = app
        .create_payment(
            "p-dec",
            &payment("50000.00", "order-p-dec", card("tok_payu_declined")),
        )
        .await;
    let id = id_of(&created);
    let declined = app.wait_for_status(&id, "DECLINED").await;
    assert_eq!(declined["provider"], "payu");
    assert_eq!(declined["failure_reason"], "ENTITY_DECLINED", "{declined}");
    assert!(declined["fees"].is_null(), "{declined}");
    assert_eq!(
        app.event_types(&id).await,
        [
            "PaymentInitiated",
            "ProviderAttemptStarted",
            "ProviderTransactionCreated",
            "PaymentDeclined"
        ]
    );
}

#[tokio::test]
async fn payu_card_error_ends_failed_without_trying_another_provider() {
    let app = start(COLOMBIA).await;
    let created = app
        .create_payment(
            "p-err",
            &payment("50000.00", "order-p-err", card("tok_payu_error")),
        )
        .await;
    let id = id_of(&created);
    let failed = app.wait_for_status(&id, "FAILED").await;
    assert_eq!(
        failed["provider"], "payu",
        "an ERROR answer is not a fallback: {failed}"
    );
    assert!(
        failed["failure_reason"]
            .as_str()
            .is_some_and(|r| !r.is_empty()),
        "{failed}"
    );
    assert!(failed["fees"].is_null(), "{failed}");
    // The later confirmation (state_pol 104) appends nothing more.
    let confirmation = delivery_for(&app, &id, "duplicate").await;
    assert_eq!(field(&form_pairs(&confirmation), "state_pol"), "104");
    assert_eq!(
        app.event_types(&id).await,
        [
            "PaymentInitiated",
            "ProviderAttemptStarted",
            "ProviderTransactionCreated",
            "PaymentFailed"
        ]
    );
}

#[tokio::test]
async fn payu_card_refunds_partially_then_fully() {
    let app = start(COLOMBIA).await;
    let created = app
        .create_payment(
            "p-ref",
            &payment("129000.00", "order-p-ref", card("tok_payu_approved")),
        )
        .await;
    let id = id_of(&created);
    app.wait_for_status(&id, "APPROVED").await;

    let first = app
        .post(
            &format!("{PAYMENTS}/{id}/refunds"),
            &app.checkout_key,
            Some("p-ref-1"),
            &json!({"amount": "29000.00", "reason": "customer request"}),
        )
        .await;
    let (status, first) = json_of(first).await;
    assert_eq!(status, 201, "{first}");
    assert_eq!(first["status"], "SUCCEEDED", "{first}");
    assert_eq!(first["payment"]["status"], "PARTIALLY_REFUNDED", "{first}");
    let view = app
        .read_at_least(&id, first["payment"]["version"].as_i64().unwrap())
        .await;
    assert_eq!(view["status"], "PARTIALLY_REFUNDED");
    assert_eq!(view["refunded_amount"], "29000.00");

    let second = app
        .post(
            &format!("{PAYMENTS}/{id}/refunds"),
            &app.checkout_key,
            Some("p-ref-2"),
            &json!({"amount": "100000.00"}),
        )
        .await;
    let (status, second) = json_of(second).await;
    assert_eq!(status, 201, "{second}");
    assert_eq!(second["status"], "SUCCEEDED", "{second}");
    let view = app
        .read_at_least(&id, second["payment"]["version"].as_i64().unwrap())
        .await;
    assert_eq!(view["status"], "REFUNDED");
    assert_eq!(view["refunded_amount"], "129000.00");
    assert_eq!(view["captured_amount"], "129000.00");
    // Fees stay what approval fixed.
    assert_eq!(view["fees"], fee_json("payu", "CARD", "129000.00"));

    // Nothing is left to refund: refused, nothing appended.
    let before = app.event_types(&id).await;
    problem(
        app.post(
            &format!("{PAYMENTS}/{id}/refunds"),
            &app.checkout_key,
            Some("p-ref-3"),
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

    // PayU itself made both refunds against the order.
    let reference = view["provider_reference"].as_str().unwrap();
    let order = payu_order(&app, order_id(reference)).await;
    let refunds = order["transactions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["type"] == "REFUND")
        .count();
    assert_eq!(refunds, 2, "{order}");
}

// ---------------------------------------------------------------------------------------------
// Efecty and PSE: pending until the customer acts, then a confirmation
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn payu_efecty_is_pending_with_a_cash_code_until_paid_then_approved() {
    let app = start(COLOMBIA).await;
    let (created, code) = pending_efecty(&app, "p-efecty", "150000.00").await;
    let id = id_of(&created);
    assert!(
        code.len() == 10 && code.bytes().all(|b| b.is_ascii_digit()),
        "a 10-digit payment code: {code}"
    );
    let expires: DateTime<Utc> = created["next_action"]["expires_at"]
        .as_str()
        .expect("expires_at")
        .parse()
        .expect("an RFC 3339 expiry");
    let ahead = expires - Utc::now();
    assert!(
        ahead > chrono::Duration::days(6) && ahead <= chrono::Duration::days(7),
        "PayU's default Efecty expiry is 7 days: {expires}"
    );
    let pending = app
        .read_at_least(&id, created["version"].as_i64().unwrap())
        .await;
    assert_eq!(pending["status"], "PENDING");
    assert_eq!(pending["next_action"], created["next_action"]);
    assert!(pending["fees"].is_null());

    customer(&app, &format!("/_sandbox/efecty/{code}/pay")).await;
    let approved = app.wait_for_status(&id, "APPROVED").await;
    let fee = expected_fee("payu", "EFECTY", "150000.00");
    assert_eq!(fee, "3500.00", "0% + 3500.00");
    assert_eq!(
        approved["fees"],
        fee_json("payu", "EFECTY", "150000.00"),
        "{approved}"
    );
    assert!(
        approved["next_action"].is_null(),
        "the cash code is spent once approved: {approved}"
    );
    assert_eq!(
        app.event_types(&id).await,
        [
            "PaymentInitiated",
            "ProviderAttemptStarted",
            "ProviderTransactionCreated",
            "PaymentApproved"
        ]
    );
    let confirmation = delivery_for(&app, &id, "recorded").await;
    assert_eq!(field(&form_pairs(&confirmation), "state_pol"), "4");
}

#[tokio::test]
async fn payu_efecty_code_that_expires_ends_expired() {
    let app = start(COLOMBIA).await;
    let (created, code) = pending_efecty(&app, "p-expire", "60000.00").await;
    let id = id_of(&created);
    customer(&app, &format!("/_sandbox/efecty/{code}/expire")).await;
    let expired = app.wait_for_status(&id, "EXPIRED").await;
    assert!(expired["fees"].is_null(), "{expired}");
    assert_eq!(expired["captured_amount"], "0.00");
    assert_eq!(
        app.event_types(&id).await,
        [
            "PaymentInitiated",
            "ProviderAttemptStarted",
            "ProviderTransactionCreated",
            "PaymentExpired"
        ]
    );
    let confirmation = delivery_for(&app, &id, "recorded").await;
    assert_eq!(field(&form_pairs(&confirmation), "state_pol"), "5");
    // An expired code cannot be paid any more.
    let late = app
        .http
        .post(format!("{}/_sandbox/efecty/{code}/pay", payu_root(&app)))
        .send()
        .await
        .unwrap();
    assert_eq!(late.status(), 409);
}

#[tokio::test]
async fn payu_efecty_codes_differ_per_payment() {
    let app = start(COLOMBIA).await;
    let mut codes = std::collections::BTreeSet::new();
    for i in 0..5 {
        let (_, code) = pending_efecty(&app, &format!("p-codes-{i}"), "25000.00").await;
        assert!(codes.insert(code.clone()), "code {code} reused");
    }
}

#[tokio::test]
async fn payu_pse_is_pending_with_a_bank_redirect_then_approved() {
    let app = start(COLOMBIA).await;
    // With the payer's details PayU asks for (its IP address goes as PSE_REFERENCE1, which
    // the emulator checks is one).
    let mut body = payment("250000.00", "order-p-pse", pse("1"));
    body["customer"] = json!({
        "full_name": "Ana María Pérez",
        "phone": "+573001234567",
        "ip_address": "190.24.8.77",
        "user_agent": "Mozilla/5.0 (X11; Linux x86_64)",
        "device_session_id": "vghs6tvkcle931686k1900o6e1",
    });
    let created = app.create_payment("p-pse", &body).await;
    let id = id_of(&created);
    let (status, again) = json_of(
        app.post("/v1/payments", &app.checkout_key, Some("p-pse"), &body)
            .await,
    )
    .await;
    assert_eq!(
        status, 200,
        "the same request again is the same payment: {again}"
    );
    assert_eq!(id_of(&again), id, "{again}");
    assert_eq!(
        created["status"],
        "PENDING",
        "a PSE payment through PayU waits for the bank: {created} (events: {:?})",
        events_json(&app, &id).await
    );
    assert_eq!(created["provider"], "payu", "{created}");
    assert_eq!(created["next_action"]["type"], "redirect", "{created}");
    let url = created["next_action"]["url"]
        .as_str()
        .expect("redirect url")
        .to_owned();
    assert!(url.starts_with(&payu_root(&app)), "{url}");
    let page = app.http.get(&url).send().await.expect("bank page");
    assert_eq!(page.status(), 200);

    let path = url.trim_start_matches(&payu_root(&app)).to_owned();
    customer(&app, &format!("{path}/complete")).await;
    let approved = app.wait_for_status(&id, "APPROVED").await;
    assert_eq!(
        approved["fees"],
        fee_json("payu", "PSE", "250000.00"),
        "{approved}"
    );
    assert_eq!(
        app.event_types(&id).await,
        [
            "PaymentInitiated",
            "ProviderAttemptStarted",
            "ProviderTransactionCreated",
            "PaymentApproved"
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// Confirmation authentication
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn payu_duplicate_confirmation_answers_200_and_appends_nothing() {
    let app = start(COLOMBIA).await;
    let id = approved_efecty(&app, "p-dup").await;
    let original = delivery_for(&app, &id, "recorded").await;
    let events_before = app.event_count().await;
    let trail = app.event_types(&id).await;

    for _ in 0..2 {
        let (status, body) = json_of(post_confirmation(&app, original.clone()).await).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["result"], "duplicate", "{body}");
    }
    // PayU changes the unsigned `attempts` between redeliveries: still the same event.
    let pairs = form_pairs(&original);
    let redelivery = encode_form(&with_field(&pairs, "attempts", "7"));
    let (status, body) = json_of(post_confirmation(&app, redelivery).await).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"], "duplicate", "{body}");

    assert_eq!(app.event_count().await, events_before);
    assert_eq!(app.event_types(&id).await, trail);
}

/// `sign` leaves `transaction_id` and `reference_pol` out: a genuine confirmation replayed
/// with another order's ids still verifies. What is appended comes from PayU's record of the
/// named order, which belongs to another payment: nothing is appended.
#[tokio::test]
async fn payu_confirmation_replayed_with_another_orders_ids_appends_nothing() {
    let app = start(COLOMBIA).await;
    let approved = approved_efecty(&app, "p-ids-a").await;
    let (pending, _) = pending_efecty(&app, "p-ids-b", "90000.00").await;
    let other = id_of(&pending);
    // Read once the projection holds what the create answered (the order it made).
    let version = pending["version"].as_i64().expect("a version");
    let other_reference = app.read_at_least(&other, version).await["provider_reference"]
        .as_str()
        .expect("the pending order's reference")
        .to_owned();
    let (other_order, other_transaction) =
        other_reference.split_once(':').expect("order:transaction");
    let original = delivery_for(&app, &approved, "recorded").await;
    let pairs = form_pairs(&original);
    let replayed = with_field(
        &with_field(&pairs, "reference_pol", other_order),
        "transaction_id",
        other_transaction,
    );
    let events_before = app.event_count().await;
    let (trail_a, trail_b) = (
        app.event_types(&approved).await,
        app.event_types(&other).await,
    );

    let response = post_confirmation(&app, encode_form(&replayed)).await;
    let (status, body) = json_of(response).await;
    assert_ne!(body["result"], "recorded", "{status}: {body}");
    assert_eq!(app.event_count().await, events_before, "{status}: {body}");
    assert_eq!(app.event_types(&approved).await, trail_a);
    assert_eq!(app.event_types(&other).await, trail_b);
    assert_eq!(
        app.wait_for_status(&other, "PENDING").await["status"],
        "PENDING"
    );
}

#[tokio::test]
async fn payu_tampered_amount_with_the_old_sign_is_401_logged_and_appends_nothing() {
    let app = start(COLOMBIA).await;
    let (created, code) = pending_efecty(&app, "p-tamper", "150000.00").await;
    let id = id_of(&created);
    customer(&app, &format!("/_sandbox/efecty/{code}/pay")).await;
    app.wait_for_status(&id, "APPROVED").await;
    let original = delivery_for(&app, &id, "recorded").await;
    let pairs = form_pairs(&original);
    assert_eq!(field(&pairs, "value"), "150000.00");
    let tampered = encode_form(&with_field(&pairs, "value", "1500.00"));
    let events_before = app.event_count().await;

    problem(
        post_confirmation(&app, tampered.clone()).await,
        401,
        "tampered value",
    )
    .await;
    // A declined payment turned into an approval by editing state_pol: refused too.
    let flipped = encode_form(&with_field(&pairs, "state_pol", "6"));
    problem(
        post_confirmation(&app, flipped).await,
        401,
        "tampered state_pol",
    )
    .await;

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
    let logged = delivery_digests(&app, "payu").await;
    let refused: Vec<_> = logged
        .iter()
        .filter(|(valid, _, _, digest)| !*valid && *digest == digest_of(&tampered))
        .collect();
    assert_eq!(
        refused.len(),
        1,
        "the forged delivery is logged with signature_valid=false"
    );
    assert_eq!(refused[0].1, "refused");
}

#[tokio::test]
async fn payu_confirmation_signed_with_another_secret_is_401() {
    let app = start(COLOMBIA).await;
    let config = PayuConfig::from_env();
    assert_eq!(
        config
            .signature_algorithm
            .to_ascii_uppercase()
            .replace('-', "_"),
        "HMAC_SHA256",
        "this test signs with HMAC-SHA256, the test default"
    );
    let id = approved_efecty(&app, "p-secret").await;
    let original = delivery_for(&app, &id, "recorded").await;
    let pairs = form_pairs(&original);
    let events_before = app.event_count().await;

    // Control: this test's own signature of the genuine confirmation is PayU's.
    assert_eq!(
        payu_sign(
            &pairs,
            config.api_key.expose_secret(),
            config.signature_secret.expose_secret()
        ),
        field(&pairs, "sign"),
        "the test's HMAC reproduces the emulator's sign"
    );

    let other = payu_sign(
        &pairs,
        config.api_key.expose_secret(),
        "test_payu_someone_elses_secret_0000000",
    );
    let forged = encode_form(&with_field(&pairs, "sign", &other));
    problem(
        post_confirmation(&app, forged.clone()).await,
        401,
        "other secret",
    )
    .await;
    // Signed with the API key as HMAC key (a common mistake), not the signature secret.
    let api_keyed = payu_sign(
        &pairs,
        config.api_key.expose_secret(),
        config.api_key.expose_secret(),
    );
    let forged_too = encode_form(&with_field(&pairs, "sign", &api_keyed));
    problem(
        post_confirmation(&app, forged_too).await,
        401,
        "api key as secret",
    )
    .await;
    // Without any sign.
    let unsigned: Vec<_> = pairs.iter().filter(|(k, _)| k != "sign").cloned().collect();
    problem(
        post_confirmation(&app, encode_form(&unsigned)).await,
        401,
        "no sign",
    )
    .await;

    assert_eq!(app.event_count().await, events_before);
    assert!(deliveries(&app, "payu")
        .await
        .iter()
        .any(|(valid, result, body)| !*valid
            && result == "refused"
            && *body == kept_of_unverified(&forged)));

    // And the genuine signature, upper-cased, still verifies (hex case does not matter).
    let upper = encode_form(&with_field(
        &pairs,
        "sign",
        &field(&pairs, "sign").to_uppercase(),
    ));
    let (status, body) = json_of(post_confirmation(&app, upper).await).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"], "duplicate", "{body}");
}

// ---------------------------------------------------------------------------------------------
// Lost confirmations: sync and the reconciler
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn payu_lost_confirmation_sync_brings_the_payment_to_the_provider_status() {
    let app = start_with(COLOMBIA, |s| s.sandbox.deliver_webhooks = false).await;
    let (paid, paid_code) = pending_efecty(&app, "p-lost-pay", "150000.00").await;
    let (lapsed, lapsed_code) = pending_efecty(&app, "p-lost-exp", "70000.00").await;
    let (paid, lapsed) = (id_of(&paid), id_of(&lapsed));
    customer(&app, &format!("/_sandbox/efecty/{paid_code}/pay")).await;
    customer(&app, &format!("/_sandbox/efecty/{lapsed_code}/expire")).await;

    // The confirmations are lost: the ledger still says PENDING.
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(
        deliveries(&app, "payu").await.is_empty(),
        "nothing was delivered"
    );
    for id in [&paid, &lapsed] {
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
    assert_eq!(synced["fees"], fee_json("payu", "EFECTY", "150000.00"));
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

    let synced = sync(&app, &lapsed).await;
    assert_eq!(synced["status"], "EXPIRED", "{synced}");
    assert_eq!(
        app.event_types(&lapsed).await,
        [
            "PaymentInitiated",
            "ProviderAttemptStarted",
            "ProviderTransactionCreated",
            "PaymentExpired"
        ]
    );

    // A second sync appends nothing.
    let again = sync(&app, &paid).await;
    assert_eq!(again["status"], "APPROVED");
    assert_eq!(app.event_types(&paid).await.len(), 4);
}

#[tokio::test]
async fn payu_lost_confirmation_reconciler_settles_a_stuck_pending_payment() {
    let app = start_with(COLOMBIA, |s| {
        s.sandbox.deliver_webhooks = false;
        s.routing.reconcile_after_ms = 200;
        s.routing.reconcile_interval_ms = 100;
    })
    .await;
    let (created, code) = pending_efecty(&app, "p-recon", "150000.00").await;
    let id = id_of(&created);
    customer(&app, &format!("/_sandbox/efecty/{code}/pay")).await;
    let approved = app.wait_for_status(&id, "APPROVED").await;
    assert_eq!(approved["fees"], fee_json("payu", "EFECTY", "150000.00"));
    assert!(
        deliveries(&app, "payu").await.is_empty(),
        "nothing was delivered"
    );
}

// ---------------------------------------------------------------------------------------------
// Lost answers: PayU made and approved the order, payledger never heard the answer
// ---------------------------------------------------------------------------------------------

/// Every order the emulator holds with `payment_id` as its `referenceCode`
/// (`ORDER_DETAIL_BY_REFERENCE_CODE`, asked over HTTP with the account's keys).
async fn payu_orders_for(app: &TestApp, payment_id: &str) -> Vec<Value> {
    let details = json!({"referenceCode": payment_id});
    match payu_report(app, "ORDER_DETAIL_BY_REFERENCE_CODE", details).await {
        Value::Null => Vec::new(),
        Value::Array(orders) => orders,
        other => panic!("not a list of orders: {other}"),
    }
}

/// Every `provider` named anywhere in `value`.
fn providers_named(value: &Value, found: &mut Vec<String>) {
    match value {
        Value::Object(fields) => {
            for (key, field) in fields {
                if key == "provider" {
                    found.push(field.as_str().unwrap_or_default().to_owned());
                }
                providers_named(field, found);
            }
        }
        Value::Array(items) => items.iter().for_each(|item| providers_named(item, found)),
        _ => {}
    }
}

/// The payment made exactly one attempt, at PayU, and named no other provider; PayU holds
/// exactly one order for it, approved. Returns that order's `<orderId>:<transactionId>`.
async fn one_attempt_and_one_approved_order(app: &TestApp, id: &str) -> String {
    let attempts: Vec<String> = support::stored_events(app, id, "ProviderAttemptStarted")
        .await
        .iter()
        .map(|e| {
            e["ProviderAttemptStarted"]["provider"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(attempts, ["payu"], "one attempt, at PayU");
    let payloads: Vec<Value> =
        sqlx::query_scalar("SELECT payload::jsonb FROM events WHERE aggregate_id = $1")
            .bind(id)
            .fetch_all(&app.pool)
            .await
            .expect("read events");
    let mut named = Vec::new();
    payloads.iter().for_each(|p| providers_named(p, &mut named));
    assert!(
        !named.is_empty() && named.iter().all(|p| p == "payu"),
        "only PayU is named: {named:?}"
    );
    assert!(
        !app.event_types(id)
            .await
            .iter()
            .any(|t| t == "ProviderAttemptFailed"),
        "no attempt failed over"
    );

    let orders = payu_orders_for(app, id).await;
    assert_eq!(orders.len(), 1, "one order at PayU: {orders:?}");
    let order = &orders[0];
    assert_eq!(order["referenceCode"], id, "{order}");
    assert_eq!(order["status"], "CAPTURED", "{order}");
    let payment = &order["transactions"][0];
    assert_eq!(payment["type"], "AUTHORIZATION_AND_CAPTURE", "{order}");
    assert_eq!(
        payment["transactionResponse"]["state"], "APPROVED",
        "{order}"
    );
    format!(
        "{}:{}",
        order["id"],
        payment["id"].as_str().expect("transaction id")
    )
}

/// The payment as the create answered: PENDING at PayU, outcome unknown, no transaction yet.
fn assert_left_unknown(created: &Value) {
    assert_eq!(created["status"], "PENDING", "{created}");
    assert_eq!(created["provider"], "payu", "{created}");
    assert_eq!(created["provider_outcome"], "unknown", "{created}");
    assert!(created["provider_reference"].is_null(), "{created}");
}

async fn unknown_kinds(app: &TestApp, id: &str) -> Vec<String> {
    support::stored_events(app, id, "ProviderOutcomeUnknown")
        .await
        .iter()
        .map(|e| {
            e["ProviderOutcomeUnknown"]["kind"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

/// A lost answer stays with PayU; its confirmation approves the payment.
async fn lost_answer_then_confirmed(fault: &str, key: &str, kind: &str) {
    let app = start_with(COLOMBIA, |s| s.routing.provider_attempt_timeout_ms = 500).await;
    set_fault(&app, "payu", fault).await;
    let started = Instant::now();
    let created = app
        .create_payment(
            key,
            &payment(
                "129000.00",
                &format!("order-{key}"),
                card("tok_payu_approved"),
            ),
        )
        .await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the create waited {:?}",
        started.elapsed()
    );
    assert_left_unknown(&created);
    let id = id_of(&created);
    assert_eq!(unknown_kinds(&app, &id).await, [kind]);

    let approved = app.wait_for_status(&id, "APPROVED").await;
    let held = one_attempt_and_one_approved_order(&app, &id).await;
    assert_eq!(approved["provider_reference"], held.as_str(), "{approved}");
    assert!(approved["provider_outcome"].is_null(), "{approved}");
    assert_eq!(approved["captured_amount"], "129000.00");
    assert_eq!(approved["fees"], fee_json("payu", "CARD", "129000.00"));
    // The confirmation is what approved it.
    let confirmation = delivery_for(&app, &id, "recorded").await;
    assert_eq!(field(&form_pairs(&confirmation), "state_pol"), "4");
    assert_eq!(
        app.event_types(&id).await,
        [
            "PaymentInitiated",
            "ProviderAttemptStarted",
            "ProviderOutcomeUnknown",
            "PaymentApproved"
        ]
    );
}

#[tokio::test]
async fn payu_answer_held_past_the_timeout_stays_with_payu_and_its_confirmation_approves() {
    lost_answer_then_confirmed("approved_timeout", "p-lost-timeout", "timeout").await;
}

#[tokio::test]
async fn payu_503_after_the_order_was_made_stays_with_payu_and_its_confirmation_approves() {
    lost_answer_then_confirmed("approved_503", "p-lost-503", "server_error").await;
}

#[tokio::test]
async fn payu_silent_approval_is_settled_by_the_reconciler() {
    let app = start_with(COLOMBIA, |s| {
        s.routing.reconcile_after_ms = 0;
        s.routing.reconcile_interval_ms = 200;
    })
    .await;
    set_fault(&app, "payu", "approved_silent").await;

    // An approved card is decided by the answer itself, confirmation or not.
    let decided = app
        .create_payment(
            "p-silent-ok",
            &payment("64000.00", "order-p-silent-ok", card("tok_payu_approved")),
        )
        .await;
    let decided = id_of(&decided);
    app.wait_for_status(&decided, "APPROVED").await;
    one_attempt_and_one_approved_order(&app, &decided).await;

    // A card in review: PayU approves it later and never says so; only asking PayU can tell.
    let created = app
        .create_payment(
            "p-silent-review",
            &payment(
                "51000.00",
                "order-p-silent-review",
                card("tok_payu_pending"),
            ),
        )
        .await;
    assert_eq!(created["status"], "PENDING", "{created}");
    assert!(created["provider_outcome"].is_null(), "{created}");
    let id = id_of(&created);
    let approved = app.wait_for_status(&id, "APPROVED").await;
    let held = one_attempt_and_one_approved_order(&app, &id).await;
    assert_eq!(created["provider_reference"], held.as_str(), "{created}");
    assert_eq!(approved["provider_reference"], held.as_str(), "{approved}");
    assert_eq!(approved["fees"], fee_json("payu", "CARD", "51000.00"));
    assert_eq!(
        app.event_types(&id).await,
        [
            "PaymentInitiated",
            "ProviderAttemptStarted",
            "ProviderTransactionCreated",
            "PaymentApproved"
        ]
    );
    assert!(
        deliveries(&app, "payu").await.is_empty(),
        "no confirmation was ever sent"
    );
}

#[tokio::test]
async fn payu_same_key_retry_of_an_unknown_outcome_records_the_order_payu_holds() {
    let app = start_with(COLOMBIA, |s| s.sandbox.deliver_webhooks = false).await;
    set_fault(&app, "payu", "approved_503").await;
    let body = payment("99000.00", "order-p-retry", card("tok_payu_approved"));
    let created = app.create_payment("p-retry", &body).await;
    assert_left_unknown(&created);
    let id = id_of(&created);

    // The fault still holds: a create sent again would only get another 503. The retry asks
    // PayU by reference instead, and records the order it made.
    let (status, again) = json_of(
        app.post(PAYMENTS, &app.checkout_key, Some("p-retry"), &body)
            .await,
    )
    .await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(id_of(&again), id, "{again}");
    let held = one_attempt_and_one_approved_order(&app, &id).await;
    assert_eq!(again["provider_reference"], held.as_str(), "{again}");
    assert_eq!(again["status"], "APPROVED", "{again}");
    assert!(again["provider_outcome"].is_null(), "{again}");
    assert_eq!(again["captured_amount"], "99000.00", "{again}");
    assert_eq!(
        app.event_types(&id).await,
        [
            "PaymentInitiated",
            "ProviderAttemptStarted",
            "ProviderOutcomeUnknown",
            "ProviderTransactionCreated",
            "PaymentApproved"
        ]
    );
    assert_eq!(unknown_kinds(&app, &id).await, ["server_error"]);
    assert!(
        deliveries(&app, "payu").await.is_empty(),
        "no confirmation helped"
    );
}

// ---------------------------------------------------------------------------------------------
// Catalog: payment methods with fees, PSE banks
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn payment_methods_list_both_providers_with_their_methods_and_fees() {
    let app = start(COLOMBIA).await;
    let amount = "100000.00";
    let response = app
        .http
        .get(format!(
            "{}/v1/payment-methods?currency=COP&amount={amount}",
            app.address
        ))
        .send()
        .await
        .unwrap();
    let (status, body) = json_of(response).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["currency"], "COP");
    let providers = body["providers"].as_array().expect("providers");
    let expected: [(&str, &[&str]); 2] = [
        (
            "wompi",
            &[
                "CARD",
                "NEQUI",
                "PSE",
                "BANCOLOMBIA_TRANSFER",
                "BANCOLOMBIA_QR",
                "DAVIPLATA",
            ],
        ),
        ("payu", &["CARD", "EFECTY", "PSE"]),
    ];
    for (provider, methods) in expected {
        let entry = providers
            .iter()
            .find(|p| p["provider"] == provider)
            .unwrap_or_else(|| panic!("{provider} missing: {body}"));
        assert_eq!(entry["available"], true, "{entry}");
        let offered = entry["methods"].as_array().expect("methods");
        assert_eq!(offered.len(), methods.len(), "{entry}");
        for &method in methods {
            let offer = offered
                .iter()
                .find(|m| m["type"] == method)
                .unwrap_or_else(|| panic!("{provider} {method} missing: {entry}"));
            assert_eq!(
                offer["fee"],
                fee_json(provider, method, amount),
                "{provider} {method}: {offer}"
            );
        }
    }
    // Spot-check the schedule arithmetic itself.
    assert_eq!(expected_fee("wompi", "CARD", amount), "3350.00");
    assert_eq!(expected_fee("payu", "CARD", amount), "4390.00");
    assert_eq!(expected_fee("payu", "EFECTY", amount), "3500.00");

    // A currency nobody configured takes no COP provider.
    let response = app
        .http
        .get(format!(
            "{}/v1/payment-methods?currency=PHP&amount=100.00",
            app.address
        ))
        .send()
        .await
        .unwrap();
    let (status, body) = json_of(response).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["providers"], json!([]), "{body}");
}

#[tokio::test]
async fn catalog_marks_providers_that_are_down_unavailable_instead_of_failing() {
    // No emulators: both adapters point at their unset base URL (`http://127.0.0.1:0`),
    // where nothing listens.
    let app = start_with(COLOMBIA, |s| s.sandbox.in_process = false).await;
    assert!(app.emulators.is_empty());
    let response = app
        .http
        .get(format!("{}/v1/payment-methods?currency=COP", app.address))
        .send()
        .await
        .unwrap();
    let (status, body) = json_of(response).await;
    assert_eq!(
        status, 200,
        "a provider that is down must not fail the call: {body}"
    );
    let providers = body["providers"].as_array().unwrap();
    assert_eq!(providers.len(), 2, "{body}");
    for entry in providers {
        assert_eq!(entry["available"], false, "{entry}");
        for offer in entry["methods"].as_array().unwrap() {
            assert!(offer["fee"].is_null(), "no amount, no fee quote: {offer}");
        }
    }
    let response = app
        .http
        .get(format!("{}/v1/pse/banks", app.address))
        .send()
        .await
        .unwrap();
    let (status, body) = json_of(response).await;
    assert_eq!(status, 200, "{body}");
    for list in body["providers"].as_array().unwrap() {
        assert_eq!(list["available"], false, "{list}");
        assert_eq!(list["banks"], json!([]), "{list}");
    }
}

#[tokio::test]
async fn pse_banks_are_listed_for_both_providers() {
    let app = start(COLOMBIA).await;
    let response = app
        .http
        .get(format!("{}/v1/pse/banks", app.address))
        .send()
        .await
        .unwrap();
    let (status, body) = json_of(response).await;
    assert_eq!(status, 200, "{body}");
    let lists = body["providers"].as_array().expect("providers");
    for provider in ["wompi", "payu"] {
        let list = lists
            .iter()
            .find(|l| l["provider"] == provider)
            .unwrap_or_else(|| panic!("{provider} missing: {body}"));
        assert_eq!(list["available"], true, "{list}");
        let codes: Vec<&str> = list["banks"]
            .as_array()
            .expect("banks")
            .iter()
            .map(|b| {
                assert!(
                    b["name"].as_str().is_some_and(|n| !n.is_empty()),
                    "a bank has a name: {b}"
                );
                b["code"].as_str().expect("code")
            })
            .collect();
        assert!(
            codes.contains(&"1") && codes.contains(&"2"),
            "{provider}: {list}"
        );
        assert!(
            !codes.contains(&"0"),
            "PayU's 'select your bank' placeholder is not a bank: {list}"
        );
    }
}
