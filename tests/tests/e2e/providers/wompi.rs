//! Wompi end to end: payledger over real HTTP, its Wompi adapter talking HTTP to the in-process
//! Wompi emulator, and the emulator's signed `transaction.updated` webhooks coming back to
//! `POST /v1/webhooks/wompi`. Checksums and integrity signatures are recomputed here with a
//! SHA-256 the tests write out (`e2e::independent`, checked against FIPS 180-2 vectors), never
//! with the code under test.

use e2e::independent::{sha256_hex, wompi_signed};
use e2e::support::{self, events_json, id_of, json_of};
use secrecy::ExposeSecret;
use std::time::Duration;

use chrono::Utc;
use connectors::payu::PayuConfig;
use connectors::wompi::WompiConfig;
use e2e::TestApp;
use reqwest::header::CONTENT_TYPE;
use serde_json::{json, Value};

use super::common::{
    self, card, customer_action, deliveries, delivery_digests, delivery_where, digest_of,
    emulator_read, expected_fee, kept_of_unverified, payment_to, pse, set_fault, start, start_with,
    sync, COLOMBIA, PAYMENTS,
};

// ---------------------------------------------------------------------------------------------
// An independent SHA-256 (FIPS 180-4), so the checksums below do not come from payledger.
// ---------------------------------------------------------------------------------------------

#[test]
fn the_test_sha256_reproduces_fips_180_vectors() {
    assert_eq!(
        sha256_hex(""),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    assert_eq!(
        sha256_hex("abc"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    assert_eq!(
        sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
    );
}

// ---------------------------------------------------------------------------------------------
// Harness helpers
// ---------------------------------------------------------------------------------------------

const APPROVED_CARD: &str = "4242424242424242";
const DECLINED_CARD: &str = "4111111111111111";
/// Luhn-valid, neither of the two above: Wompi's sandbox answers `ERROR`.
const ERROR_CARD: &str = "5555555555554444";

/// `http://addr` of the Wompi emulator.
fn wompi_root(app: &TestApp) -> String {
    common::emulator_root(app, "wompi")
}

fn content_type(response: &reqwest::Response) -> String {
    response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

/// Asserts an `application/problem+json` answer with `status` and its RFC 9457 members.
async fn problem(response: reqwest::Response, status: u16, case: &str) -> Value {
    let body = support::problem(response, status, case).await;
    for member in ["type", "title", "detail"] {
        assert!(
            body[member].as_str().is_some_and(|s| !s.is_empty()),
            "{case}: `{member}` missing: {body}"
        );
    }
    body
}

/// A card token from the emulator's `POST /v1/tokens/cards`, with the public key, as a
/// front end would get it.
async fn card_token(app: &TestApp, number: &str) -> String {
    let public_key = WompiConfig::from_env().public_key;
    let response = app
        .http
        .post(format!("{}/tokens/cards", app.emulators["wompi"]))
        .bearer_auth(public_key)
        .json(&json!({
            "number": number,
            "cvc": "123",
            "exp_month": "12",
            "exp_year": "35",
            "card_holder": "Pedro Pérez",
        }))
        .send()
        .await
        .expect("tokenize");
    let (status, body) = json_of(response).await;
    assert_eq!(status, 201, "tokenize {number}: {body}");
    body["data"]["id"].as_str().expect("token id").to_owned()
}

fn card_payment(amount: &str, reference: &str, token: &str) -> Value {
    payment_to("wompi", amount, reference, card(token))
}

fn pse_payment(amount: &str, reference: &str, bank: &str) -> Value {
    payment_to("wompi", amount, reference, pse(bank))
}
/// Polls until `webhook_deliveries` holds a `recorded` Wompi delivery for `transaction_id`
/// and returns its raw payload.
async fn recorded_delivery(app: &TestApp, transaction_id: &str) -> Vec<u8> {
    delivery_where(app, "wompi", "recorded", |p| {
        serde_json::from_slice::<Value>(p)
            .is_ok_and(|v| v["data"]["transaction"]["id"].as_str() == Some(transaction_id))
    })
    .await
}

async fn post_webhook(app: &TestApp, body: Vec<u8>, checksum: Option<&str>) -> reqwest::Response {
    let checksum = checksum.map(|c| ("X-Event-Checksum", c));
    common::post_webhook(app, "wompi", "application/json", body, checksum).await
}

/// A Wompi PSE payment (bank "1") completed at the emulator and APPROVED by its webhook.
/// Returns (payment id, wompi transaction id).
async fn approved_pse(app: &TestApp, key: &str) -> (String, String) {
    let created = app
        .create_payment(key, &pse_payment("250000.00", &format!("order-{key}"), "1"))
        .await;
    assert_eq!(created["status"], "PENDING", "{created}");
    let id = id_of(&created);
    let transaction = created["provider_reference"]
        .as_str()
        .expect("provider_reference")
        .to_owned();
    complete_pse(app, &transaction).await;
    app.wait_for_status(&id, "APPROVED").await;
    (id, transaction)
}

async fn complete_pse(app: &TestApp, transaction: &str) -> Value {
    let url = format!("{}/_sandbox/pse/{transaction}/complete", wompi_root(app));
    customer_action(app, url).await
}

async fn emulator_transaction(app: &TestApp, transaction: &str) -> Value {
    let request = app
        .http
        .get(format!(
            "{}/transactions/{transaction}",
            app.emulators["wompi"]
        ))
        .bearer_auth(
            WompiConfig::from_env()
                .private_key
                .expose_secret()
                .to_owned(),
        );
    emulator_read(request).await["data"].clone()
}

// ---------------------------------------------------------------------------------------------
// Outcomes
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn wompi_card_approved_with_provider_reference_fees_and_event_trail() {
    let app = start(COLOMBIA).await;
    let token = card_token(&app, APPROVED_CARD).await;
    let created = app
        .create_payment("w-ok", &card_payment("129000.00", "order-w-ok", &token))
        .await;
    assert_eq!(
        created["status"], "PENDING",
        "Wompi answers PENDING: {created}"
    );
    assert_eq!(created["provider"], "wompi", "{created}");
    let id = id_of(&created);

    let approved = app.wait_for_status(&id, "APPROVED").await;
    assert_eq!(approved["provider"], "wompi");
    assert_eq!(approved["captured_amount"], "129000.00");
    let reference = approved["provider_reference"]
        .as_str()
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| panic!("provider_reference missing: {approved}"));
    assert_eq!(reference, created["provider_reference"]);
    let fee = expected_fee("wompi", "CARD", "129000.00");
    assert_eq!(fee, "4118.50", "2.65% of 129000.00 + 700.00");
    assert_eq!(
        approved["fees"],
        json!({"amount": fee, "currency": "COP"}),
        "{approved}"
    );
    assert!(approved["next_action"].is_null(), "{approved}");

    // The emulator (the "provider") holds the same transaction, for this payment.
    let at_wompi = emulator_transaction(&app, reference).await;
    assert_eq!(at_wompi["status"], "APPROVED");
    assert_eq!(at_wompi["reference"], id.as_str());
    assert_eq!(at_wompi["amount_in_cents"], 12_900_000);

    assert_eq!(
        app.event_types(&id).await,
        [
            "PaymentInitiated",
            "ProviderAttemptStarted",
            "ProviderTransactionCreated",
            "PaymentApproved"
        ]
    );
    // The fee is fixed in the event itself, so replays never recompute it.
    let events = events_json(&app, &id).await;
    let approval = &events[3]["data"]["PaymentApproved"];
    assert_eq!(
        approval["fee"],
        json!({"amount": fee, "currency": "COP"}),
        "{approval}"
    );
    assert_eq!(approval["provider"], "wompi");
    assert_eq!(approval["provider_transaction_id"], reference);
}

/// What Wompi holds for one of our payments (searched by reference, with the private key).
async fn wompi_transactions_for(app: &TestApp, payment_id: &str) -> Vec<Value> {
    let request = app
        .http
        .get(format!("{}/v1/transactions", wompi_root(app)))
        .query(&[("reference", payment_id)])
        .bearer_auth(WompiConfig::from_env().private_key.expose_secret());
    emulator_read(request).await["data"]
        .as_array()
        .expect("a list")
        .clone()
}

/// Wompi takes and approves the charge and its answer is lost (held past the attempt's
/// bound, a 503), or it answers and never sends the webhook: the payment stays with Wompi,
/// PayU is never offered it, and it ends approved once, by the webhook or the resolver.
#[tokio::test]
async fn wompi_charges_whose_answer_or_webhook_is_lost_end_approved_once_and_payu_is_never_asked() {
    let app = start_with(COLOMBIA, |s| {
        s.routing.provider_attempt_timeout_ms = 1_500;
        s.routing.reconcile_after_ms = 0;
        s.routing.reconcile_interval_ms = 200;
    })
    .await;
    for (fault, key, unknown) in [
        ("approved_timeout", "w-lost-timeout", true),
        ("approved_503", "w-lost-503", true),
        ("approved_silent", "w-lost-silent", false),
    ] {
        let token = card_token(&app, APPROVED_CARD).await;
        set_fault(&app, "wompi", fault).await;
        let created = app
            .create_payment(
                key,
                &card_payment("50000.00", &format!("order-{key}"), &token),
            )
            .await;
        set_fault(&app, "wompi", "none").await;
        let id = id_of(&created);
        assert_eq!(created["status"], "PENDING", "{fault}: {created}");
        assert_eq!(created["provider"], "wompi", "{fault}: {created}");
        assert_eq!(
            created["provider_outcome"] == "unknown",
            unknown,
            "{fault}: {created}"
        );

        let approved = app.wait_for_status(&id, "APPROVED").await;
        assert_eq!(approved["provider"], "wompi", "{fault}");
        assert_eq!(approved["captured_amount"], "50000.00", "{fault}");
        assert!(
            approved["provider_outcome"].is_null(),
            "{fault}: {approved}"
        );
        // One charge: one transaction at Wompi, the one the ledger names; one attempt.
        let held = wompi_transactions_for(&app, &id).await;
        assert_eq!(held.len(), 1, "{fault}: {held:?}");
        assert_eq!(held[0]["status"], "APPROVED", "{fault}");
        assert_eq!(approved["provider_reference"], held[0]["id"], "{fault}");
        assert_eq!(support::attempts(&app, &id).await, ["wompi"], "{fault}");
        let types = app.event_types(&id).await;
        let count = |t: &str| types.iter().filter(|e| *e == t).count();
        assert_eq!(
            (
                count("PaymentApproved"),
                count("ProviderAttemptFailed"),
                count("ProviderOutcomeUnknown")
            ),
            (1, 0, usize::from(unknown)),
            "{fault}: {types:?}"
        );
    }
}

#[tokio::test]
async fn wompi_card_declined_ends_declined_with_a_reason() {
    let app = start(COLOMBIA).await;
    let token = card_token(&app, DECLINED_CARD).await;
    let created = app
        .create_payment("w-dec", &card_payment("50000.00", "order-w-dec", &token))
        .await;
    let id = id_of(&created);
    let declined = app.wait_for_status(&id, "DECLINED").await;
    assert_eq!(declined["provider"], "wompi");
    assert!(
        declined["failure_reason"]
            .as_str()
            .is_some_and(|r| !r.is_empty()),
        "a decline carries its reason: {declined}"
    );
    assert!(
        declined["fees"].is_null(),
        "no fee without a capture: {declined}"
    );
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
    let events = events_json(&app, &id).await;
    assert!(
        events[3]["data"]["PaymentDeclined"]["reason"]
            .as_str()
            .is_some_and(|r| !r.is_empty()),
        "{}",
        events[2]
    );
}

#[tokio::test]
async fn wompi_card_error_ends_failed_without_trying_another_provider() {
    let app = start(COLOMBIA).await;
    let token = card_token(&app, ERROR_CARD).await;
    let created = app
        .create_payment("w-err", &card_payment("50000.00", "order-w-err", &token))
        .await;
    let id = id_of(&created);
    let failed = app.wait_for_status(&id, "FAILED").await;
    assert_eq!(
        failed["provider"], "wompi",
        "an ERROR answer is not a fallback: {failed}"
    );
    assert!(
        failed["failure_reason"]
            .as_str()
            .is_some_and(|r| !r.is_empty()),
        "{failed}"
    );
    assert!(failed["fees"].is_null(), "{failed}");
    // Wompi took the transaction, then reported ERROR for it: no ProviderAttemptFailed.
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
async fn wompi_pse_is_pending_with_a_redirect_until_the_bank_completes_then_approved() {
    let app = start(COLOMBIA).await;
    let created = app
        .create_payment("w-pse", &pse_payment("250000.00", "order-w-pse", "1"))
        .await;
    assert_eq!(created["status"], "PENDING", "{created}");
    let id = id_of(&created);
    let transaction = created["provider_reference"]
        .as_str()
        .expect("provider_reference")
        .to_owned();
    assert_eq!(created["next_action"]["type"], "redirect", "{created}");
    let url = created["next_action"]["url"]
        .as_str()
        .expect("redirect url");
    assert!(
        url.starts_with(&wompi_root(&app))
            && url.ends_with(&format!("/_sandbox/pse/{transaction}")),
        "the redirect is the bank page of this transaction: {url}"
    );
    // The projection shows the same next action while the customer is at the bank.
    let pending = app
        .read_at_least(&id, created["version"].as_i64().unwrap())
        .await;
    assert_eq!(pending["status"], "PENDING");
    assert_eq!(pending["next_action"], created["next_action"]);
    // The "bank page" is really there.
    let page = app.http.get(url).send().await.expect("bank page");
    assert_eq!(page.status(), 200);

    complete_pse(&app, &transaction).await;
    let approved = app.wait_for_status(&id, "APPROVED").await;
    let fee = expected_fee("wompi", "PSE", "250000.00");
    assert_eq!(fee, "4500.00", "1.20% of 250000.00 + 1500.00");
    assert_eq!(
        approved["fees"],
        json!({"amount": fee, "currency": "COP"}),
        "{approved}"
    );
    assert!(
        approved["next_action"].is_null(),
        "nothing left for the customer to do once approved: {approved}"
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
    let delivered = deliveries(&app, "wompi").await;
    assert!(
        delivered
            .iter()
            .any(|(valid, result, _)| *valid && result == "recorded"),
        "the approval came by a verified webhook: {:?}",
        delivered.iter().map(|(v, r, _)| (v, r)).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn wompi_pse_abandoned_at_the_bank_ends_failed() {
    let app = start(COLOMBIA).await;
    let created = app
        .create_payment("w-pse-ab", &pse_payment("80000.00", "order-w-pse-ab", "1"))
        .await;
    let id = id_of(&created);
    let transaction = created["provider_reference"].as_str().unwrap().to_owned();
    let response = app
        .http
        .post(format!(
            "{}/_sandbox/pse/{transaction}/abandon",
            wompi_root(&app)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let failed = app.wait_for_status(&id, "FAILED").await;
    assert!(
        failed["failure_reason"]
            .as_str()
            .is_some_and(|r| !r.is_empty()),
        "{failed}"
    );
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

// ---------------------------------------------------------------------------------------------
// Refunds: Wompi has no refund API
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn wompi_refund_is_refused_with_a_problem_and_appends_nothing() {
    let app = start(COLOMBIA).await;
    let token = card_token(&app, APPROVED_CARD).await;
    let created = app
        .create_payment("w-ref", &card_payment("129000.00", "order-w-ref", &token))
        .await;
    let id = id_of(&created);
    app.wait_for_status(&id, "APPROVED").await;
    let before = app.event_types(&id).await;
    let total_before = app.event_count().await;

    let response = app
        .post(
            &format!("{PAYMENTS}/{id}/refunds"),
            &app.checkout_key,
            Some("w-ref-1"),
            &json!({"amount": "29000.00"}),
        )
        .await;
    let status = response.status().as_u16();
    let kind = content_type(&response);
    let body = response.text().await.unwrap();
    // What must hold whatever the shape of the answer: no success, no money moved.
    assert!(
        (400..600).contains(&status),
        "a refund Wompi cannot make must not look like success: {status} {body}"
    );
    let view = app.wait_for_status(&id, "APPROVED").await;
    assert_eq!(view["refunded_amount"], "0.00", "{view}");

    // What a payments engineer expects of a refund the adapter knows Wompi cannot make
    // (no refund API; nothing was ever sent to Wompi): a clear client error as
    // problem+json, and a ledger left untouched.
    let after = app.event_types(&id).await;
    let mut deviations = Vec::new();
    if !kind.starts_with("application/problem+json") {
        deviations.push(format!(
            "content type is `{kind}`, not application/problem+json"
        ));
    }
    if !(400..500).contains(&status) {
        deviations.push(format!(
            "status {status}: a 5xx says the provider failed, but the request can never succeed"
        ));
    }
    if after != before || app.event_count().await != total_before {
        deviations.push(format!("events appended: {:?}", &after[before.len()..]));
    }
    assert!(
        deviations.is_empty(),
        "refund of a Wompi payment: {deviations:#?}\nanswer: {status} {body}"
    );
    assert!(
        body.to_lowercase().contains("wompi"),
        "the answer should say Wompi does not refund through the API: {body}"
    );
}

// ---------------------------------------------------------------------------------------------
// Webhook authentication
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn wompi_duplicate_webhook_answers_200_and_appends_nothing() {
    let app = start(COLOMBIA).await;
    let (id, transaction) = approved_pse(&app, "w-dup").await;
    let payload = recorded_delivery(&app, &transaction).await;
    let event: Value = serde_json::from_slice(&payload).unwrap();
    let sum = event["signature"]["checksum"].as_str().unwrap().to_owned();
    let events_before = app.event_count().await;
    let trail = app.event_types(&id).await;

    for _ in 0..2 {
        let (status, body) = json_of(post_webhook(&app, payload.clone(), Some(&sum)).await).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["result"], "duplicate", "{body}");
    }
    assert_eq!(app.event_count().await, events_before);
    assert_eq!(app.event_types(&id).await, trail);
    let rows = deliveries(&app, "wompi").await;
    assert_eq!(
        rows.iter()
            .filter(|(valid, result, body)| *valid && result == "duplicate" && *body == payload)
            .count(),
        2,
        "both redeliveries are logged as verified duplicates"
    );
}

#[tokio::test]
async fn wompi_tampered_amount_with_the_old_checksum_is_401_logged_and_appends_nothing() {
    let app = start(COLOMBIA).await;
    let (id, transaction) = approved_pse(&app, "w-tamper").await;
    let payload = recorded_delivery(&app, &transaction).await;
    let mut event: Value = serde_json::from_slice(&payload).unwrap();
    let old_sum = event["signature"]["checksum"].as_str().unwrap().to_owned();
    let cents = event["data"]["transaction"]["amount_in_cents"]
        .as_i64()
        .unwrap();
    event["data"]["transaction"]["amount_in_cents"] = json!(cents * 10);
    let tampered = serde_json::to_vec(&event).unwrap();
    let events_before = app.event_count().await;

    let body = problem(
        post_webhook(&app, tampered.clone(), Some(&old_sum)).await,
        401,
        "tampered amount, header and body checksum",
    )
    .await;
    assert!(!body.to_string().contains(
        &WompiConfig::from_env()
            .events_secret
            .expose_secret()
            .to_owned()
    ));
    // The same with only the body's checksum (no header).
    problem(
        post_webhook(&app, tampered.clone(), None).await,
        401,
        "tampered, no header",
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
    let rows = delivery_digests(&app, "wompi").await;
    let refused: Vec<_> = rows
        .iter()
        .filter(|(valid, _, _, digest)| !*valid && *digest == digest_of(&tampered))
        .collect();
    assert_eq!(
        refused.len(),
        2,
        "each forged delivery is logged with signature_valid=false"
    );
    assert!(refused.iter().all(|(_, result, _, _)| result == "refused"));
}

#[tokio::test]
async fn wompi_changed_header_checksum_or_missing_signature_is_401() {
    let app = start(COLOMBIA).await;
    let (_, transaction) = approved_pse(&app, "w-hdr").await;
    let payload = recorded_delivery(&app, &transaction).await;
    let events_before = app.event_count().await;
    let other = sha256_hex("not the checksum");
    problem(
        post_webhook(&app, payload.clone(), Some(&other)).await,
        401,
        "header mismatch",
    )
    .await;
    let mut unsigned: Value = serde_json::from_slice(&payload).unwrap();
    unsigned.as_object_mut().unwrap().remove("signature");
    problem(
        post_webhook(&app, serde_json::to_vec(&unsigned).unwrap(), None).await,
        401,
        "no signature at all",
    )
    .await;
    assert_eq!(app.event_count().await, events_before);
}

#[tokio::test]
async fn wompi_webhook_signed_with_another_secret_is_401() {
    let app = start(COLOMBIA).await;
    let (_, transaction) = approved_pse(&app, "w-secret").await;
    let payload = recorded_delivery(&app, &transaction).await;
    let event: Value = serde_json::from_slice(&payload).unwrap();
    let now = Utc::now().timestamp();
    let events_before = app.event_count().await;

    let (forged, forged_sum) = wompi_signed(
        &event,
        now,
        "test_events_someone_else_entirely_000000000000",
    );
    problem(
        post_webhook(&app, forged.clone(), Some(&forged_sum)).await,
        401,
        "other secret",
    )
    .await;
    assert_eq!(app.event_count().await, events_before);
    assert!(
        deliveries(&app, "wompi")
            .await
            .iter()
            .any(|(valid, result, body)| !*valid
                && result == "refused"
                && *body == kept_of_unverified(&forged)),
        "the forged delivery is logged"
    );

    // Control: the same construction with the real events secret verifies (so the 401 above
    // is the secret, not this test's checksum code); it is a redelivery, so nothing appends.
    let real = WompiConfig::from_env()
        .events_secret
        .expose_secret()
        .to_owned();
    let (genuine, sum) = wompi_signed(&event, now, &real);
    let (status, body) = json_of(post_webhook(&app, genuine, Some(&sum)).await).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"], "duplicate", "{body}");
    // Hex case does not matter.
    let (genuine, sum) = wompi_signed(&event, now, &real);
    let (status, body) =
        json_of(post_webhook(&app, genuine, Some(&sum.to_uppercase())).await).await;
    assert_eq!(status, 200, "upper-case hex checksum header: {body}");
    assert_eq!(app.event_count().await, events_before);
}

#[tokio::test]
async fn wompi_webhook_with_a_stale_timestamp_is_401_even_when_correctly_signed() {
    let app = start(COLOMBIA).await;
    let (_, transaction) = approved_pse(&app, "w-stale").await;
    let payload = recorded_delivery(&app, &transaction).await;
    let event: Value = serde_json::from_slice(&payload).unwrap();
    let secret = WompiConfig::from_env()
        .events_secret
        .expose_secret()
        .to_owned();
    let events_before = app.event_count().await;
    let now = Utc::now().timestamp();

    // Older than payledger's ten minutes for a Wompi event: a replay, or a late redelivery.
    let (stale, stale_sum) = wompi_signed(&event, now - 11 * 60, &secret);
    problem(
        post_webhook(&app, stale.clone(), Some(&stale_sum)).await,
        401,
        "stale",
    )
    .await;
    // Far in the future is refused too.
    let (future, future_sum) = wompi_signed(&event, now + 3600, &secret);
    problem(
        post_webhook(&app, future, Some(&future_sum)).await,
        401,
        "future",
    )
    .await;
    assert_eq!(app.event_count().await, events_before);
    assert!(deliveries(&app, "wompi")
        .await
        .iter()
        .any(|(valid, result, body)| !*valid
            && result == "refused"
            && *body == kept_of_unverified(&stale)));

    // Control: the same body and secret with a fresh timestamp verifies.
    let (fresh, fresh_sum) = wompi_signed(&event, now, &secret);
    let (status, body) = json_of(post_webhook(&app, fresh, Some(&fresh_sum)).await).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"], "duplicate", "{body}");
    assert_eq!(app.event_count().await, events_before);
}

// ---------------------------------------------------------------------------------------------
// Lost webhooks: sync and the reconciler
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn wompi_lost_webhook_sync_brings_the_payment_to_the_provider_status() {
    let app = start_with(COLOMBIA, |s| s.sandbox.deliver_webhooks = false).await;
    let created = app
        .create_payment("w-lost", &pse_payment("250000.00", "order-w-lost", "1"))
        .await;
    let id = id_of(&created);
    let transaction = created["provider_reference"].as_str().unwrap().to_owned();
    let completed = complete_pse(&app, &transaction).await;
    assert_eq!(completed["data"]["status"], "APPROVED", "{completed}");
    assert_eq!(
        emulator_transaction(&app, &transaction).await["status"],
        "APPROVED"
    );

    // The webhook is lost: the ledger still says PENDING.
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(
        deliveries(&app, "wompi").await.is_empty(),
        "no webhook was delivered"
    );
    assert_eq!(
        app.event_types(&id).await,
        [
            "PaymentInitiated",
            "ProviderAttemptStarted",
            "ProviderTransactionCreated"
        ]
    );

    let synced = sync(&app, &id).await;
    assert_eq!(synced["status"], "APPROVED", "{synced}");
    let fee = expected_fee("wompi", "PSE", "250000.00");
    assert_eq!(synced["fees"], json!({"amount": fee, "currency": "COP"}));
    let view = app
        .read_at_least(&id, synced["version"].as_i64().unwrap())
        .await;
    assert_eq!(view["status"], "APPROVED");
    assert_eq!(view["fees"], json!({"amount": fee, "currency": "COP"}));
    assert_eq!(
        app.event_types(&id).await,
        [
            "PaymentInitiated",
            "ProviderAttemptStarted",
            "ProviderTransactionCreated",
            "PaymentApproved"
        ]
    );

    // Syncing again appends nothing.
    let (status, again) = json_of(
        app.post(
            &format!("{PAYMENTS}/{id}/sync"),
            &app.checkout_key,
            None,
            &json!({}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["version"], synced["version"]);
    assert_eq!(app.event_types(&id).await.len(), 4);
}

#[tokio::test]
async fn wompi_lost_webhook_reconciler_settles_a_stuck_pending_payment() {
    let app = start_with(COLOMBIA, |s| {
        s.sandbox.deliver_webhooks = false;
        s.routing.reconcile_after_ms = 200;
        s.routing.reconcile_interval_ms = 100;
    })
    .await;
    let token = card_token(&app, DECLINED_CARD).await;
    let created = app
        .create_payment(
            "w-recon",
            &card_payment("50000.00", "order-w-recon", &token),
        )
        .await;
    let id = id_of(&created);
    // Nobody calls sync: the reconciler finds it PENDING past its age and asks Wompi.
    let declined = app.wait_for_status(&id, "DECLINED").await;
    assert!(declined["failure_reason"]
        .as_str()
        .is_some_and(|r| !r.is_empty()));
    assert!(
        deliveries(&app, "wompi").await.is_empty(),
        "no webhook was delivered"
    );
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

// ---------------------------------------------------------------------------------------------
// Widget and public configuration
// ---------------------------------------------------------------------------------------------

fn all_secrets() -> Vec<(&'static str, String)> {
    let wompi = WompiConfig::from_env();
    let payu = PayuConfig::from_env();
    vec![
        (
            "WOMPI_PRIVATE_KEY",
            wompi.private_key.expose_secret().to_owned(),
        ),
        (
            "WOMPI_EVENTS_SECRET",
            wompi.events_secret.expose_secret().to_owned(),
        ),
        (
            "WOMPI_INTEGRITY_SECRET",
            wompi.integrity_secret.expose_secret().to_owned(),
        ),
        ("PAYU_API_KEY", payu.api_key.expose_secret().to_owned()),
        ("PAYU_API_LOGIN", payu.api_login),
        (
            "PAYU_SIGNATURE_SECRET",
            payu.signature_secret.expose_secret().to_owned(),
        ),
    ]
}

fn assert_no_secret(text: &str, what: &str) {
    for (name, value) in all_secrets() {
        assert!(!value.is_empty(), "{name} is empty in this environment");
        assert!(!text.contains(&value), "{what} exposes {name}: {text}");
    }
}

#[tokio::test]
async fn wompi_checkout_widget_has_the_public_key_and_a_correct_integrity_signature_only() {
    let app = start(COLOMBIA).await;
    let created = app
        .create_payment("w-widget", &pse_payment("129000.50", "order-w-widget", "1"))
        .await;
    assert_eq!(created["status"], "PENDING");
    let id = id_of(&created);

    let response = app
        .get(&format!("/v1/checkout/wompi/{id}"), &app.checkout_key)
        .await;
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    let widget: Value = serde_json::from_str(&text).unwrap();
    let config = WompiConfig::from_env();
    assert_eq!(widget["public_key"], config.public_key.as_str(), "{text}");
    assert_eq!(widget["reference"], id.as_str(), "{text}");
    assert_eq!(widget["amount_in_cents"], 12_900_050, "{text}");
    assert_eq!(widget["currency"], "COP", "{text}");
    let expected = sha256_hex(&format!(
        "{id}12900050COP{}",
        config.integrity_secret.expose_secret().to_owned()
    ));
    assert_eq!(widget["signature_integrity"], expected.as_str(), "{text}");
    assert_no_secret(&text, "the widget endpoint");

    // No widget without a checkout key, nor for another merchant's payment.
    let anonymous = app
        .http
        .get(format!("{}/v1/checkout/wompi/{id}", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    let stranger = app.key_for("merchant-b").await;
    let other = app
        .get(&format!("/v1/checkout/wompi/{id}"), &stranger)
        .await;
    assert_eq!(other.status(), 404);
}

#[tokio::test]
async fn wompi_checkout_widget_is_refused_once_the_payment_is_approved() {
    let app = start(COLOMBIA).await;
    let (id, _) = approved_pse(&app, "w-widget-done").await;
    problem(
        app.get(&format!("/v1/checkout/wompi/{id}"), &app.checkout_key)
            .await,
        409,
        "widget for an approved payment",
    )
    .await;
}

#[tokio::test]
async fn wompi_checkout_widget_is_refused_for_a_payment_another_provider_holds() {
    let app = start(COLOMBIA).await;
    // A pending PayU Efecty payment: opening Wompi's widget for it would let the customer pay
    // the same payment a second time, at another provider.
    let created = app
        .create_payment(
            "w-widget-payu",
            &json!({
                "amount": "150000.00",
                "currency": "COP",
                "reference": "order-w-widget-payu",
                "provider": "payu",
                "payment_method": {"type": "EFECTY"},
            }),
        )
        .await;
    assert_eq!(created["provider"], "payu", "{created}");
    assert_eq!(created["status"], "PENDING", "{created}");
    let id = id_of(&created);
    let response = app
        .get(&format!("/v1/checkout/wompi/{id}"), &app.checkout_key)
        .await;
    let status = response.status().as_u16();
    let body = response.text().await.unwrap();
    assert!(
        (400..500).contains(&status),
        "a Wompi widget signature for a payment PayU holds must be refused, got {status}: {body}"
    );
}

#[tokio::test]
async fn public_config_shows_public_keys_and_methods_and_no_secret() {
    let app = start(COLOMBIA).await;
    let response = app
        .http
        .get(format!("{}/v1/config", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    assert_no_secret(&text, "/v1/config");
    let config: Value = serde_json::from_str(&text).unwrap();
    let providers = config["providers"].as_array().expect("providers");
    let wompi = providers
        .iter()
        .find(|p| p["provider"] == "wompi")
        .unwrap_or_else(|| panic!("wompi missing: {text}"));
    assert_eq!(
        wompi["public_key"],
        WompiConfig::from_env().public_key.as_str()
    );
    let methods: Vec<&str> = wompi["methods"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for method in ["CARD", "NEQUI", "PSE"] {
        assert!(methods.contains(&method), "{text}");
    }
    let payu = providers
        .iter()
        .find(|p| p["provider"] == "payu")
        .unwrap_or_else(|| panic!("payu missing: {text}"));
    let methods: Vec<&str> = payu["methods"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for method in ["CARD", "EFECTY", "PSE"] {
        assert!(methods.contains(&method), "{text}");
    }

    // Nor do the other public catalog endpoints leak anything.
    for path in [
        "/v1/payment-methods?currency=COP&amount=100000.00",
        "/v1/pse/banks",
        "/health/providers",
    ] {
        let response = app
            .http
            .get(format!("{}{path}", app.address))
            .send()
            .await
            .unwrap();
        let text = response.text().await.unwrap();
        assert_no_secret(&text, path);
    }
}

#[tokio::test]
async fn wompi_nequi_approved_and_declined_by_phone_number() {
    let app = start(COLOMBIA).await;
    let nequi = |phone: &str, reference: &str| {
        json!({
            "amount": "40000.00",
            "currency": "COP",
            "reference": reference,
            "provider": "wompi",
            "payment_method": {"type": "NEQUI", "phone_number": phone},
        })
    };
    let ok = id_of(
        &app.create_payment("w-nq-ok", &nequi("3991111111", "order-nq-ok"))
            .await,
    );
    let ko = id_of(
        &app.create_payment("w-nq-ko", &nequi("3992222222", "order-nq-ko"))
            .await,
    );
    let approved = app.wait_for_status(&ok, "APPROVED").await;
    assert_eq!(
        approved["fees"],
        json!({"amount": expected_fee("wompi", "NEQUI", "40000.00"), "currency": "COP"})
    );
    app.wait_for_status(&ko, "DECLINED").await;
}
