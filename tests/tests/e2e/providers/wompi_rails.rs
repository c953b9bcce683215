//! Wompi's Bancolombia transfer, Bancolombia QR and Daviplata end to end: payledger over real
//! HTTP, its Wompi adapter talking to the in-process emulator, the customer acting where Wompi
//! sends them (Bancolombia's page, their bank app after scanning the QR, Daviplata's page for
//! the code sent by SMS), and the emulator's signed `transaction.updated` webhooks coming back.
//! Checksums and signatures are computed here with the tests' own SHA-256
//! (`e2e::independent`), never with the code under test.

use std::time::{Duration, Instant};

use base64::Engine;
use chrono::{DateTime, Utc};
use connectors::wompi::WompiConfig;
use e2e::independent::{sha256_hex, wompi_checksum, wompi_signed};
use e2e::support::{self, events_json, id_of, json_of};
use e2e::TestApp;
use secrecy::ExposeSecret;
use serde_json::{json, Value};

use super::common::{
    self, customer_action, deliveries, delivery_digests, delivery_where, digest_of, emulator_read,
    expected_fee, payment_to, start, sync, COLOMBIA, PAYMENTS,
};

const TRANSFER: &str = "BANCOLOMBIA_TRANSFER";
const QR: &str = "BANCOLOMBIA_QR";
const DAVIPLATA: &str = "DAVIPLATA";

/// Wompi's Daviplata sandbox codes.
const OTP_APPROVED: &str = "574829";
const OTP_DECLINED: &str = "932015";

const CREATED: [&str; 3] = [
    "PaymentInitiated",
    "ProviderAttemptStarted",
    "ProviderTransactionCreated",
];

// ---------------------------------------------------------------------------------------------
// Known answers, computed outside this code (python3 hashlib.sha256, sha256sum)
// ---------------------------------------------------------------------------------------------

#[test]
fn wompi_rails_known_answer_vectors_hold_for_the_tests_own_sha256() {
    // The event checksum of a rail's transition: id + status + amount_in_cents + timestamp +
    // events secret.
    // printf '%s' "112233-1772379000-00042DECLINED50000001772379060test_events_payledger_kat_0123456789abcdef" | sha256sum
    assert_eq!(
        sha256_hex(
            "112233-1772379000-00042DECLINED50000001772379060\
             test_events_payledger_kat_0123456789abcdef"
        ),
        "e1b9b731314ebc75862a04dec471daa923207a51c1d8f279bca8cb0af533b9b5"
    );
    assert_eq!(
        sha256_hex(
            "112233-1772379000-00042APPROVED50000001772379060\
             test_events_payledger_kat_0123456789abcdef"
        ),
        "57d49cda9dfc2cb3ea93026f7391d3e0b106092bedbca2d2a5e72b458765a8be"
    );
    // The integrity signature of a rail's create: reference + amount_in_cents + currency +
    // expiration_time + integrity secret.
    assert_eq!(
        sha256_hex(
            "0d7f6c3e-2a41-4b7e-9a55-8c2f4e1b7a6325000000COP2026-03-01T15:30:00.000Z\
             test_integrity_payledger_kat_0123456789abcdef"
        ),
        "bc5da3a5e1b254a3ec57bc8c4713321a91eba4b027c0f0e4bc7a036932101c7e"
    );
}

// ---------------------------------------------------------------------------------------------
// Harness helpers
// ---------------------------------------------------------------------------------------------

fn transfer() -> Value {
    json!({"type": TRANSFER, "user_type": 0, "payment_description": "Pedido de prueba 42"})
}

fn qr() -> Value {
    json!({"type": QR})
}

fn daviplata() -> Value {
    json!({"type": DAVIPLATA, "user_legal_id_type": "CC", "user_legal_id": "1134568019"})
}

fn method_of(rail: &str) -> Value {
    match rail {
        TRANSFER => transfer(),
        QR => qr(),
        DAVIPLATA => daviplata(),
        other => panic!("no rail {other}"),
    }
}

/// `http://addr` of the Wompi emulator.
fn wompi_root(app: &TestApp) -> String {
    common::emulator_root(app, "wompi")
}

/// The transaction as Wompi (the emulator) holds it, read with the adapter's private key.
async fn at_wompi(app: &TestApp, transaction: &str) -> Value {
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

/// A payment on `rail` that Wompi leaves PENDING with the customer's next step: returns
/// (payment JSON, payment id, Wompi transaction id).
async fn pending(app: &TestApp, key: &str, rail: &str, amount: &str) -> (Value, String, String) {
    let body = payment_to("wompi", amount, &format!("order-{key}"), method_of(rail));
    let created = app.create_payment(key, &body).await;
    assert_eq!(created["status"], "PENDING", "{created}");
    assert_eq!(created["provider"], "wompi", "{created}");
    assert_eq!(created["payment_method"]["type"], rail, "{created}");
    let transaction = support::reference_of(&created);
    (created.clone(), id_of(&created), transaction)
}

/// What the customer does at Bancolombia's page or in their bank app: `approve`, `decline`
/// or `error`.
async fn answer(app: &TestApp, rail: &str, transaction: &str, decision: &str) -> Value {
    let place = match rail {
        TRANSFER => "bancolombia",
        QR => "qr",
        other => panic!("{other} is not decided by a choice"),
    };
    let url = format!(
        "{}/_sandbox/{place}/{transaction}/{decision}",
        wompi_root(app)
    );
    customer_action(app, url).await
}

/// The customer types `code` on Daviplata's page (sent with its `url_services.token`, as
/// that page does).
async fn type_code(app: &TestApp, transaction: &str, code: &str) -> reqwest::Response {
    let extra = &at_wompi(app, transaction).await["payment_method"]["extra"];
    let validate = extra["url_services"]["code_otp_validate"]
        .as_str()
        .unwrap_or_else(|| panic!("no code_otp_validate: {extra}"))
        .to_owned();
    let token = extra["url_services"]["token"].as_str().expect("token");
    app.http
        .post(validate)
        .json(&json!({"code": code, "token": token}))
        .send()
        .await
        .expect("code sent")
}

/// The customer pays (`approved`) or is refused (`declined`) on `rail`.
async fn settle(app: &TestApp, rail: &str, transaction: &str, approved: bool) {
    match rail {
        DAVIPLATA => {
            let code = if approved { OTP_APPROVED } else { OTP_DECLINED };
            let (status, body) = json_of(type_code(app, transaction, code).await).await;
            assert_eq!(status, 200, "{body}");
        }
        _ => {
            let decision = if approved { "approve" } else { "decline" };
            answer(app, rail, transaction, decision).await;
        }
    }
}

/// The sandbox's clock reaches the transaction's `expiration_time` now.
async fn expire(app: &TestApp, transaction: &str) -> Value {
    let url = format!(
        "{}/_sandbox/transactions/{transaction}/expire",
        wompi_root(app)
    );
    customer_action(app, url).await
}

/// The raw payload of the `recorded` Wompi delivery of `transaction`'s move to `status`.
async fn recorded(app: &TestApp, transaction: &str, status: &str) -> Vec<u8> {
    delivery_where(app, "wompi", "recorded", |p| {
        serde_json::from_slice::<Value>(p).is_ok_and(|v| {
            v["data"]["transaction"]["id"].as_str() == Some(transaction)
                && v["data"]["transaction"]["status"].as_str() == Some(status)
        })
    })
    .await
}

async fn post_event(app: &TestApp, body: Vec<u8>, checksum: Option<&str>) -> reqwest::Response {
    let header = checksum.map(|c| ("X-Event-Checksum", c));
    common::post_webhook(app, "wompi", "application/json", body, header).await
}

fn events_secret() -> String {
    WompiConfig::from_env()
        .events_secret
        .expose_secret()
        .to_owned()
}

/// The trail of a payment Wompi took and then decided with `last`.
async fn assert_trail(app: &TestApp, id: &str, last: &str) {
    let mut expected: Vec<&str> = CREATED.to_vec();
    expected.push(last);
    assert_eq!(app.event_types(id).await, expected);
}

/// The customer's step as payledger answers it, checked against what Wompi shows.
async fn assert_next_action(app: &TestApp, rail: &str, payment: &Value, transaction: &str) {
    let action = &payment["next_action"];
    let root = wompi_root(app);
    match rail {
        TRANSFER => {
            assert_eq!(action["type"], "redirect", "{payment}");
            assert_eq!(
                action["url"],
                format!("{root}/_sandbox/bancolombia/{transaction}"),
                "Bancolombia's page for this transaction: {payment}"
            );
            let wompi = at_wompi(app, transaction).await;
            assert_eq!(
                wompi["payment_method"]["extra"]["async_payment_url"],
                action["url"]
            );
            assert_eq!(wompi["payment_method"]["user_type"], "PERSON");
            assert_eq!(
                wompi["payment_method"]["payment_description"],
                "Pedido de prueba 42"
            );
        }
        QR => {
            assert_eq!(action["type"], "qr_code", "{payment}");
            let image = action["image"].as_str().expect("image");
            let encoded = image
                .strip_prefix("data:image/svg+xml;base64,")
                .unwrap_or_else(|| panic!("an SVG data URL: {image}"));
            let svg = base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .expect("base64");
            let svg = String::from_utf8(svg).expect("utf-8");
            assert!(
                svg.contains("<svg") && svg.contains(transaction),
                "the QR of this transaction: {svg}"
            );
            let wompi = at_wompi(app, transaction).await;
            assert_eq!(wompi["payment_method"]["extra"]["qr_image"], encoded);
            assert!(wompi["payment_method"]["extra"]["qr_id"].is_string());
        }
        DAVIPLATA => {
            assert_eq!(action["type"], "otp", "{payment}");
            assert_eq!(
                action["url"],
                format!("{root}/_sandbox/daviplata/{transaction}"),
                "Daviplata's page for the code: {payment}"
            );
            let wompi = at_wompi(app, transaction).await;
            assert_eq!(wompi["payment_method"]["extra"]["url"], action["url"]);
            assert_eq!(wompi["payment_method"]["user_legal_id_type"], "CC");
        }
        other => panic!("{other}"),
    }
    if rail != TRANSFER {
        // The deadline payledger gave Wompi, about half an hour from now.
        let expires_at: DateTime<Utc> = action["expires_at"]
            .as_str()
            .unwrap_or_else(|| panic!("expires_at: {payment}"))
            .parse()
            .expect("a time");
        let left = expires_at - Utc::now();
        assert!(
            left > chrono::Duration::minutes(25) && left <= chrono::Duration::minutes(30),
            "{expires_at}"
        );
    }
    // The page the customer is sent to is really there.
    if let Some(url) = action["url"].as_str() {
        let page = app.http.get(url).send().await.expect("page");
        assert_eq!(page.status(), 200, "{url}");
    }
}

// ---------------------------------------------------------------------------------------------
// Approved, declined, pending then approved, expired: the same story on each rail
// ---------------------------------------------------------------------------------------------

async fn approved(rail: &str, amount: &str, fee: &str) {
    let app = start(COLOMBIA).await;
    let key = format!("{}-ok", rail.to_lowercase());
    let (created, id, transaction) = pending(&app, &key, rail, amount).await;
    assert_next_action(&app, rail, &created, &transaction).await;

    settle(&app, rail, &transaction, true).await;
    let approved = app.wait_for_status(&id, "APPROVED").await;
    assert_eq!(approved["captured_amount"], amount, "{approved}");
    assert_eq!(expected_fee("wompi", rail, amount), fee, "the schedule");
    assert_eq!(
        approved["fees"],
        json!({"amount": fee, "currency": "COP"}),
        "{approved}"
    );
    assert!(approved["next_action"].is_null(), "{approved}");
    assert_trail(&app, &id, "PaymentApproved").await;
    let events = events_json(&app, &id).await;
    let approval = &events[3]["data"]["PaymentApproved"];
    assert_eq!(approval["fee"], json!({"amount": fee, "currency": "COP"}));
    assert_eq!(approval["provider_transaction_id"], transaction.as_str());
    // Wompi holds the same transaction for this payment; the approval came by its webhook.
    let wompi = at_wompi(&app, &transaction).await;
    assert_eq!(wompi["status"], "APPROVED");
    assert_eq!(wompi["reference"], id.as_str());
    assert_eq!(wompi["payment_method_type"], rail);
    recorded(&app, &transaction, "APPROVED").await;
    // Nothing personal was kept: the legal id and the description went to Wompi only.
    let trail = serde_json::to_string(&events).expect("json");
    for private in ["1134568019", "Pedido de prueba"] {
        assert!(!trail.contains(private), "{private} in the events: {trail}");
    }
}

async fn declined(rail: &str) {
    let app = start(COLOMBIA).await;
    let key = format!("{}-ko", rail.to_lowercase());
    let (_, id, transaction) = pending(&app, &key, rail, "50000.00").await;
    settle(&app, rail, &transaction, false).await;
    let declined = app.wait_for_status(&id, "DECLINED").await;
    assert!(
        declined["failure_reason"]
            .as_str()
            .is_some_and(|r| !r.is_empty()),
        "a decline carries its reason: {declined}"
    );
    assert!(declined["fees"].is_null(), "{declined}");
    assert_eq!(declined["captured_amount"], "0.00");
    assert!(declined["next_action"].is_null(), "{declined}");
    assert_trail(&app, &id, "PaymentDeclined").await;
    assert_eq!(at_wompi(&app, &transaction).await["status"], "DECLINED");
}

async fn pending_then_approved(rail: &str) {
    let app = start(COLOMBIA).await;
    let key = format!("{}-wait", rail.to_lowercase());
    let (created, id, transaction) = pending(&app, &key, rail, "120000.00").await;
    assert_next_action(&app, rail, &created, &transaction).await;
    // The projection shows the same step while the customer has not acted.
    let view = app
        .read_at_least(&id, created["version"].as_i64().expect("version"))
        .await;
    assert_eq!(view["status"], "PENDING");
    assert_eq!(view["next_action"], created["next_action"]);
    // Asking Wompi meanwhile changes nothing: it is still waiting for the customer.
    let before = app.event_count().await;
    let synced = sync(&app, &id).await;
    assert_eq!(synced["status"], "PENDING", "{synced}");
    assert_eq!(synced["next_action"], created["next_action"]);
    assert_eq!(
        app.event_count().await,
        before,
        "a pending sync appends nothing"
    );
    assert_eq!(at_wompi(&app, &transaction).await["status"], "PENDING");

    settle(&app, rail, &transaction, true).await;
    let approved = app.wait_for_status(&id, "APPROVED").await;
    assert!(approved["next_action"].is_null(), "{approved}");
    assert_trail(&app, &id, "PaymentApproved").await;
}

async fn expired(rail: &str) {
    let app = start(COLOMBIA).await;
    let key = format!("{}-late", rail.to_lowercase());
    let (_, id, transaction) = pending(&app, &key, rail, "70000.00").await;
    let closed = expire(&app, &transaction).await;
    // Wompi has no EXPIRED: the unpaid transaction ends DECLINED at its deadline.
    assert_eq!(closed["data"]["status"], "DECLINED", "{closed}");
    assert_eq!(
        closed["data"]["finalized_at"], closed["data"]["expiration_time"],
        "{closed}"
    );
    let expired = app.wait_for_status(&id, "EXPIRED").await;
    assert!(expired["fees"].is_null(), "{expired}");
    assert_eq!(expired["captured_amount"], "0.00");
    assert!(expired["next_action"].is_null(), "{expired}");
    assert_trail(&app, &id, "PaymentExpired").await;
    // It came by the verified webhook of the DECLINED transition, confirmed with Wompi.
    recorded(&app, &transaction, "DECLINED").await;
    // Too late for the customer now.
    let late = match rail {
        DAVIPLATA => type_code_after_close(&app, &transaction).await,
        _ => {
            let place = if rail == TRANSFER {
                "bancolombia"
            } else {
                "qr"
            };
            app.http
                .post(format!(
                    "{}/_sandbox/{place}/{transaction}/approve",
                    wompi_root(&app)
                ))
                .send()
                .await
                .expect("late answer")
                .status()
                .as_u16()
        }
    };
    assert_eq!(late, 409, "a closed transaction takes no answer");
    assert_eq!(app.event_types(&id).await.len(), 4);
}

/// A code typed once Daviplata's transaction is closed (its token is gone with its step).
async fn type_code_after_close(app: &TestApp, transaction: &str) -> u16 {
    app.http
        .post(format!(
            "{}/_sandbox/daviplata/{transaction}/otp/validate",
            wompi_root(app)
        ))
        .json(&json!({"code": OTP_APPROVED, "token": "whatever"}))
        .send()
        .await
        .expect("late code")
        .status()
        .as_u16()
}

#[tokio::test]
async fn wompi_bancolombia_transfer_approved_at_bancolombias_page() {
    // 1.90 % of 250000.00 + 700.00
    approved(TRANSFER, "250000.00", "5450.00").await;
}

#[tokio::test]
async fn wompi_bancolombia_transfer_declined() {
    declined(TRANSFER).await;
}

#[tokio::test]
async fn wompi_bancolombia_transfer_pending_then_approved() {
    pending_then_approved(TRANSFER).await;
}

#[tokio::test]
async fn wompi_bancolombia_transfer_expired() {
    expired(TRANSFER).await;
}

#[tokio::test]
async fn wompi_bancolombia_qr_approved_once_scanned() {
    // 1.50 % of 80000.00 + 300.00
    approved(QR, "80000.00", "1500.00").await;
}

#[tokio::test]
async fn wompi_bancolombia_qr_declined() {
    declined(QR).await;
}

#[tokio::test]
async fn wompi_bancolombia_qr_pending_then_approved() {
    pending_then_approved(QR).await;
}

#[tokio::test]
async fn wompi_bancolombia_qr_expired() {
    expired(QR).await;
}

#[tokio::test]
async fn wompi_daviplata_approved_with_the_test_code() {
    // 2.00 % of 60000.00 + 500.00
    approved(DAVIPLATA, "60000.00", "1700.00").await;
}

#[tokio::test]
async fn wompi_daviplata_declined() {
    declined(DAVIPLATA).await;
}

#[tokio::test]
async fn wompi_daviplata_pending_then_approved() {
    pending_then_approved(DAVIPLATA).await;
}

#[tokio::test]
async fn wompi_daviplata_expired() {
    expired(DAVIPLATA).await;
}

// ---------------------------------------------------------------------------------------------
// Daviplata's code: a wrong one is refused and the payment waits; the third declines it
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn wompi_daviplata_wrong_codes_are_refused_then_decline_after_three() {
    let app = start(COLOMBIA).await;
    let (_, id, transaction) = pending(&app, "dp-wrong", DAVIPLATA, "45000.00").await;

    // Without the transaction's token, no code is taken at all.
    let status = app
        .http
        .post(format!(
            "{}/_sandbox/daviplata/{transaction}/otp/validate",
            wompi_root(&app)
        ))
        .json(&json!({"code": OTP_APPROVED, "token": "not-the-token"}))
        .send()
        .await
        .expect("code")
        .status();
    assert_eq!(status, 403);

    for left in [2, 1] {
        let (status, body) = json_of(type_code(&app, &transaction, "123456").await).await;
        assert_eq!(status, 422, "{body}");
        let messages = &body["error"]["messages"]["code"];
        assert!(
            messages.to_string().contains(&format!("quedan {left}")),
            "{body}"
        );
        assert_eq!(at_wompi(&app, &transaction).await["status"], "PENDING");
    }
    // Still waiting at payledger too: nothing was decided.
    let events = app.event_count().await;
    let synced = sync(&app, &id).await;
    assert_eq!(synced["status"], "PENDING", "{synced}");
    assert_eq!(synced["next_action"]["type"], "otp", "{synced}");
    assert_eq!(app.event_count().await, events);

    let (status, body) = json_of(type_code(&app, &transaction, "000000").await).await;
    assert_eq!(status, 200, "the third wrong code decides: {body}");
    assert_eq!(body["data"]["status"], "DECLINED", "{body}");
    let declined = app.wait_for_status(&id, "DECLINED").await;
    assert!(
        declined["failure_reason"]
            .as_str()
            .is_some_and(|r| r.contains("intentos")),
        "{declined}"
    );
    assert_trail(&app, &id, "PaymentDeclined").await;
}

// ---------------------------------------------------------------------------------------------
// Webhooks: a redelivery is recorded once, a tampered one is refused
// ---------------------------------------------------------------------------------------------

async fn duplicate_and_tampered(rail: &str) {
    let app = start(COLOMBIA).await;
    let key = format!("{}-hooks", rail.to_lowercase());
    let (_, id, transaction) = pending(&app, &key, rail, "99000.00").await;
    settle(&app, rail, &transaction, true).await;
    app.wait_for_status(&id, "APPROVED").await;
    let payload = recorded(&app, &transaction, "APPROVED").await;
    let event: Value = serde_json::from_slice(&payload).expect("json");
    assert_eq!(event["data"]["transaction"]["payment_method_type"], rail);
    let secret = events_secret();
    // The emulator's checksum is Wompi's, recomputed here.
    assert_eq!(
        event["signature"]["checksum"].as_str(),
        Some(wompi_checksum(&event, &secret).as_str())
    );
    let events_before = app.event_count().await;
    let trail = app.event_types(&id).await;

    // Redelivered as sent, and re-signed here with a fresh timestamp: the same transition.
    let sum = event["signature"]["checksum"].as_str().expect("checksum");
    let (fresh, fresh_sum) = wompi_signed(&event, Utc::now().timestamp(), &secret);
    for (body, checksum) in [(payload.clone(), sum.to_owned()), (fresh, fresh_sum)] {
        let (status, answer) = json_of(post_event(&app, body, Some(&checksum)).await).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["result"], "duplicate", "{answer}");
    }
    assert_eq!(app.event_count().await, events_before, "recorded once");
    assert_eq!(app.event_types(&id).await, trail);

    // Tampered: a tenfold amount under the old checksum, and a DECLINED signed with a secret
    // that is not Wompi's.
    let mut richer = event.clone();
    let cents = event["data"]["transaction"]["amount_in_cents"]
        .as_i64()
        .expect("cents");
    richer["data"]["transaction"]["amount_in_cents"] = json!(cents * 10);
    let richer = serde_json::to_vec(&richer).expect("json");
    let mut reversed = event.clone();
    reversed["data"]["transaction"]["status"] = json!("DECLINED");
    let (forged, forged_sum) = wompi_signed(
        &reversed,
        Utc::now().timestamp(),
        "test_events_not_wompis_secret_000000000000000",
    );
    for (body, checksum, case) in [
        (
            richer.clone(),
            sum.to_owned(),
            "tenfold amount, old checksum",
        ),
        (forged.clone(), forged_sum, "declined, another secret"),
    ] {
        let refused =
            support::problem(post_event(&app, body, Some(&checksum)).await, 401, case).await;
        assert!(!refused.to_string().contains(&secret), "{refused}");
    }
    assert_eq!(app.event_count().await, events_before, "nothing appended");
    assert_eq!(app.event_types(&id).await, trail);
    let logged = delivery_digests(&app, "wompi").await;
    for body in [&richer, &forged] {
        assert!(
            logged.iter().any(|(valid, result, _, digest)| !*valid
                && result == "refused"
                && *digest == digest_of(body)),
            "each forged delivery is logged as refused"
        );
    }
    assert_eq!(
        deliveries(&app, "wompi")
            .await
            .iter()
            .filter(|(valid, result, _)| *valid && result == "recorded")
            .count(),
        1,
        "one transition, recorded once"
    );
}

#[tokio::test]
async fn wompi_bancolombia_transfer_duplicate_webhook_recorded_once_tampered_refused() {
    duplicate_and_tampered(TRANSFER).await;
}

#[tokio::test]
async fn wompi_bancolombia_qr_duplicate_webhook_recorded_once_tampered_refused() {
    duplicate_and_tampered(QR).await;
}

#[tokio::test]
async fn wompi_daviplata_duplicate_webhook_recorded_once_tampered_refused() {
    duplicate_and_tampered(DAVIPLATA).await;
}

// ---------------------------------------------------------------------------------------------
// What payledger refuses before anything reaches Wompi
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn wompi_rails_bad_bodies_are_refused_by_field_name_and_append_nothing() {
    let app = start(COLOMBIA).await;
    let events = app.event_count().await;
    let cases = [
        (
            json!({"type": TRANSFER, "user_type": 0}),
            "payment_method.payment_description",
        ),
        (
            json!({"type": TRANSFER, "user_type": 3, "payment_description": "x"}),
            "payment_method.user_type",
        ),
        (
            json!({"type": TRANSFER, "user_type": 0, "payment_description": "it's mine"}),
            "payment_method.payment_description",
        ),
        (
            json!({"type": QR, "phone_number": "3991111111"}),
            "payment_method.phone_number",
        ),
        (
            json!({"type": QR, "payment_description": "q".repeat(65)}),
            "payment_method.payment_description",
        ),
        (
            json!({"type": DAVIPLATA, "user_legal_id_type": "CC"}),
            "payment_method.user_legal_id",
        ),
        (
            json!({"type": DAVIPLATA, "user_legal_id_type": "CC", "user_legal_id": "1",
                "payment_description": "d".repeat(31)}),
            "payment_method.payment_description",
        ),
        (
            json!({"type": DAVIPLATA, "user_legal_id_type": "CC", "user_legal_id": "1",
                "financial_institution_code": "1"}),
            "payment_method.financial_institution_code",
        ),
        (
            json!({"type": "PSE", "financial_institution_code": "1", "user_type": 0,
                "user_legal_id_type": "CC", "user_legal_id": "1", "payment_description": "x"}),
            "payment_method.payment_description",
        ),
    ];
    for (n, (method, field)) in cases.into_iter().enumerate() {
        let body = payment_to(
            "wompi",
            "10000.00",
            &format!("order-bad-{n}"),
            method.clone(),
        );
        let response = app
            .post(
                PAYMENTS,
                &app.checkout_key,
                Some(&format!("bad-{n}")),
                &body,
            )
            .await;
        let problem = support::problem(response, 422, &method.to_string()).await;
        let named: Vec<&str> = problem["errors"]
            .as_array()
            .unwrap_or_else(|| panic!("errors: {problem}"))
            .iter()
            .filter_map(|e| e["field"].as_str())
            .collect();
        assert_eq!(named, [field], "{method}: {problem}");
        assert!(
            !problem.to_string().contains("1134568019"),
            "no personal data echoed: {problem}"
        );
    }
    assert_eq!(app.event_count().await, events, "nothing appended");
}

#[tokio::test]
async fn wompi_bancolombia_transfer_for_a_company_is_refused_before_reaching_wompi() {
    let app = start(COLOMBIA).await;
    let method = json!({"type": TRANSFER, "user_type": 1, "payment_description": "Factura 9"});
    let created = app
        .create_payment(
            "tr-company",
            &payment_to("wompi", "30000.00", "order-tr-company", method),
        )
        .await;
    assert_eq!(created["status"], "FAILED", "{created}");
    assert!(created["provider_reference"].is_null(), "{created}");
    let id = id_of(&created);
    let events = events_json(&app, &id).await;
    let failed = events
        .iter()
        .find_map(|e| e["data"].get("ProviderAttemptFailed"))
        .unwrap_or_else(|| panic!("an attempt refused: {events:?}"));
    assert!(
        failed["detail"]
            .as_str()
            .is_some_and(|d| d.contains("natural persons")),
        "{failed}"
    );
    // Wompi never saw it.
    let search = app
        .http
        .get(format!("{}/transactions", app.emulators["wompi"]))
        .query(&[("reference", id.as_str())])
        .bearer_auth(
            WompiConfig::from_env()
                .private_key
                .expose_secret()
                .to_owned(),
        );
    assert_eq!(emulator_read(search).await["data"], json!([]));
}

#[tokio::test]
async fn wompi_rails_are_offered_in_cop_with_their_fees_and_refunds_are_refused() {
    let app = start(COLOMBIA).await;
    let response = app
        .http
        .get(format!(
            "{}/v1/payment-methods?currency=COP&amount=100000.00",
            app.address
        ))
        .send()
        .await
        .expect("catalog");
    let (status, body) = json_of(response).await;
    assert_eq!(status, 200, "{body}");
    let wompi = body["providers"]
        .as_array()
        .expect("providers")
        .iter()
        .find(|p| p["provider"] == "wompi")
        .unwrap_or_else(|| panic!("wompi: {body}"))
        .clone();
    for rail in [TRANSFER, QR, DAVIPLATA] {
        let offer = wompi["methods"]
            .as_array()
            .expect("methods")
            .iter()
            .find(|m| m["type"] == rail)
            .unwrap_or_else(|| panic!("{rail}: {wompi}"))
            .clone();
        assert_eq!(
            offer["fee"],
            json!({"amount": expected_fee("wompi", rail, "100000.00"), "currency": "COP"}),
            "{offer}"
        );
    }
    let payu = body["providers"]
        .as_array()
        .expect("providers")
        .iter()
        .find(|p| p["provider"] == "payu")
        .unwrap_or_else(|| panic!("payu: {body}"));
    assert!(
        !payu.to_string().contains(TRANSFER) && !payu.to_string().contains(DAVIPLATA),
        "PayU takes none of Wompi's rails: {payu}"
    );

    // An approved Bancolombia transfer: Wompi refunds only through its dashboard.
    let (_, id, transaction) = pending(&app, "tr-refund", TRANSFER, "90000.00").await;
    settle(&app, TRANSFER, &transaction, true).await;
    app.wait_for_status(&id, "APPROVED").await;
    let before = app.event_count().await;
    let refused = app
        .post(
            &format!("{PAYMENTS}/{id}/refunds"),
            &app.checkout_key,
            Some("tr-refund-1"),
            &json!({"amount": "90000.00"}),
        )
        .await;
    let status = refused.status().as_u16();
    let text = refused.text().await.expect("body");
    assert!((400..500).contains(&status), "{status} {text}");
    assert!(text.to_lowercase().contains("wompi"), "{text}");
    assert_eq!(app.event_count().await, before, "nothing appended");
}

// ---------------------------------------------------------------------------------------------
// The emulator checks a rail's create like Wompi: the signature covers expiration_time
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn wompi_rail_create_signature_must_cover_its_expiration_time() {
    let app = start(COLOMBIA).await;
    let config = WompiConfig::from_env();
    let merchant = emulator_read(app.http.get(format!(
        "{}/merchants/{}",
        app.emulators["wompi"], config.public_key
    )))
    .await;
    let acceptance = merchant["data"]["presigned_acceptance"]["acceptance_token"].clone();
    let personal = merchant["data"]["presigned_personal_data_auth"]["acceptance_token"].clone();
    let until = (Utc::now() + chrono::Duration::minutes(10))
        .format("%Y-%m-%dT%H:%M:%S.000Z")
        .to_string();
    let integrity = config.integrity_secret.expose_secret().to_owned();
    let create = |reference: &str, signature: String| {
        json!({
            "acceptance_token": acceptance, "accept_personal_auth": personal,
            "amount_in_cents": 2_500_000, "currency": "COP",
            "customer_email": "ana@example.co", "reference": reference,
            "expiration_time": until, "signature": signature,
            "payment_method": {"type": QR, "payment_description": "Mesa 4"},
        })
    };
    let send = |body: Value| {
        app.http
            .post(format!("{}/transactions", app.emulators["wompi"]))
            .bearer_auth(config.public_key.clone())
            .json(&body)
            .send()
    };
    // Signed without the time: refused on `signature`.
    let without = sha256_hex(&format!("rail-sig-12500000COP{integrity}"));
    let (status, body) = json_of(send(create("rail-sig-1", without)).await.expect("sent")).await;
    assert_eq!(status, 422, "{body}");
    assert!(body["error"]["messages"]["signature"].is_array(), "{body}");
    // Signed with it, as Wompi documents: taken, PENDING, the deadline kept.
    let with = sha256_hex(&format!("rail-sig-22500000COP{until}{integrity}"));
    let (status, body) = json_of(send(create("rail-sig-2", with)).await.expect("sent")).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["data"]["status"], "PENDING");
    assert_eq!(body["data"]["expiration_time"], until.as_str());
    // The QR is published after the create's answer, as Wompi does: poll for it, bounded.
    assert_eq!(body["data"]["payment_method"]["extra"], json!({}), "{body}");
    let id = body["data"]["id"].as_str().expect("id").to_owned();
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let extra = at_wompi(&app, &id).await["payment_method"]["extra"].clone();
        if extra["qr_image"].is_string() {
            break;
        }
        assert!(Instant::now() < deadline, "no QR published: {extra}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
