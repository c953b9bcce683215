//! Maya end to end: payledger over real HTTP, its Maya adapter talking HTTP to the in-process
//! Maya emulator (Checkout + Payments API), and the emulator's unsigned webhooks coming back to
//! `POST /v1/webhooks/maya`.
//!
//! Maya does not sign online-payment webhooks, so a webhook is authenticated by its source
//! address and then confirmed by fetching the payment from Maya before anything is appended.
//! These tests drive the customer at the emulator (`/_sandbox/checkouts/{id}/...`), forge and
//! replay webhooks from this machine, and send one from a loopback address payledger's source
//! list does not hold (127.0.0.2: the whole of 127/8 is this machine, but only 127.0.0.1 and
//! ::1 are listed under the in-process sandbox).

use secrecy::ExposeSecret;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use connectors::maya::MayaConfig;
use connectors::paymongo::PaymongoConfig;
use e2e::support::{events_json, id_of, json_of, problem, reference_of, stored_events};
use e2e::TestApp;
use reqwest::header::CONTENT_TYPE;
use serde_json::{json, Value};

use super::common::{
    self, customer_action, deliveries_with_peer, delivery_digests, delivery_where, digest_of,
    emulator_read, emulator_root, expected_fee, payment_to, pending_at, set_fault, start,
    start_with, sync, PAYMENTS, PHILIPPINES,
};

// ---------------------------------------------------------------------------------------------
// Harness helpers
// ---------------------------------------------------------------------------------------------

/// `http://addr` of the Maya emulator.
fn maya_root(app: &TestApp) -> String {
    emulator_root(app, "maya")
}
fn maya_payment(amount: &str, reference: &str) -> Value {
    payment_to("maya", amount, reference, json!({"type": "MAYA"}))
}

fn fee_json(amount: &str) -> Value {
    common::fee_json("maya", "MAYA", amount)
}

/// Polls until `webhook_deliveries` holds a `recorded` Maya delivery for the Maya payment
/// `maya_id` and returns its raw payload.
async fn recorded_delivery(app: &TestApp, maya_id: &str) -> Vec<u8> {
    delivery_where(app, "maya", "recorded", |payload| {
        serde_json::from_slice::<Value>(payload).is_ok_and(|v| v["id"].as_str() == Some(maya_id))
    })
    .await
}

/// POSTs a webhook body to payledger from this test (127.0.0.1, a listed source).
async fn post_webhook(app: &TestApp, body: Vec<u8>) -> reqwest::Response {
    common::post_webhook(app, "maya", "application/json", body, None).await
}

/// A customer action at the Maya checkout page (`complete`, `fail`, `expire`, `cancel`),
/// asserting `200`; returns Maya's payment as it now is.
async fn customer(app: &TestApp, checkout: &str, action: &str) -> Value {
    let url = format!("{}/_sandbox/checkouts/{checkout}/{action}", maya_root(app));
    customer_action(app, url).await
}

/// `GET {path}` on Maya's Payments API with the secret key, as payledger's adapter does.
async fn maya_api(app: &TestApp, path: &str) -> Value {
    let request = app
        .http
        .get(format!("{}{path}", maya_root(app)))
        .basic_auth(
            MayaConfig::from_env().secret_key.expose_secret().to_owned(),
            Some(""),
        );
    emulator_read(request).await
}

async fn maya_payment_at_maya(app: &TestApp, maya_id: &str) -> Value {
    maya_api(app, &format!("/payments/v1/payments/{maya_id}")).await
}

/// A pending Maya payment with its checkout redirect: (payment JSON, Maya checkout id).
async fn pending(app: &TestApp, key: &str, amount: &str) -> (Value, String) {
    let body = maya_payment(amount, &format!("order-{key}"));
    pending_at(app, "maya", key, &body).await
}

/// A Maya payment the customer paid, APPROVED by Maya's webhook: (payment id, checkout id).
async fn approved(app: &TestApp, key: &str, amount: &str) -> (String, String) {
    let (created, checkout) = pending(app, key, amount).await;
    let id = id_of(&created);
    customer(app, &checkout, "complete").await;
    app.wait_for_status(&id, "APPROVED").await;
    (id, checkout)
}

// ---------------------------------------------------------------------------------------------
// Outcomes
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn maya_checkout_is_pending_with_a_redirect_then_approved_by_webhook_with_fees() {
    let app = start(PHILIPPINES).await;
    let (created, checkout) = pending(&app, "m-ok", "1234.50").await;
    let id = id_of(&created);
    assert_eq!(created["next_action"]["type"], "redirect", "{created}");
    let url = created["next_action"]["url"]
        .as_str()
        .expect("redirect url");
    assert_eq!(
        url,
        format!("{}/_sandbox/checkouts/{checkout}", maya_root(&app)),
        "the redirect is this checkout's page at Maya"
    );
    // The checkout page is really there, and Maya holds the payment as pending, for us.
    let page = app.http.get(url).send().await.expect("checkout page");
    assert_eq!(page.status(), 200);
    let at_maya = maya_payment_at_maya(&app, &checkout).await;
    assert_eq!(at_maya["status"], "PENDING_TOKEN", "{at_maya}");
    assert_eq!(at_maya["requestReferenceNumber"], id.as_str());
    assert_eq!(at_maya["amount"], "1234.50");
    assert_eq!(at_maya["currency"], "PHP");
    let view = app
        .read_at_least(&id, created["version"].as_i64().unwrap())
        .await;
    assert_eq!(view["status"], "PENDING");
    assert_eq!(view["next_action"], created["next_action"]);
    assert!(view["fees"].is_null(), "{view}");

    let paid = customer(&app, &checkout, "complete").await;
    assert_eq!(paid["status"], "PAYMENT_SUCCESS", "{paid}");
    let approved = app.wait_for_status(&id, "APPROVED").await;
    assert_eq!(approved["provider"], "maya");
    assert_eq!(approved["provider_reference"], checkout.as_str());
    assert_eq!(approved["captured_amount"], "1234.50");
    let fee = expected_fee("maya", "MAYA", "1234.50");
    assert_eq!(fee, "24.69", "2.00% of 1234.50");
    assert_eq!(
        approved["fees"],
        json!({"amount": fee, "currency": "PHP"}),
        "{approved}"
    );
    assert!(
        approved["next_action"].is_null(),
        "nothing left for the customer once approved: {approved}"
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
    let events = events_json(&app, &id).await;
    let approval = &events[3]["data"]["PaymentApproved"];
    assert_eq!(approval["provider"], "maya", "{approval}");
    assert_eq!(approval["provider_transaction_id"], checkout.as_str());
    assert_eq!(
        approval["fee"],
        json!({"amount": fee, "currency": "PHP"}),
        "the fee is fixed in the event: {approval}"
    );
    assert_eq!(
        approval["provider_event_id"],
        format!("{checkout}:PAYMENT_SUCCESS"),
        "{approval}"
    );
    // It came by a webhook, from this machine, verified.
    let rows = deliveries_with_peer(&app, "maya").await;
    assert!(
        rows.iter().any(|(valid, result, peer, _)| *valid
            && result == "recorded"
            && peer.as_deref() == Some("127.0.0.1")),
        "{:?}",
        rows.iter()
            .map(|(v, r, p, _)| (v, r, p))
            .collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn maya_failed_cancelled_and_expired_checkouts_end_declined_failed_and_expired() {
    let app = start(PHILIPPINES).await;
    let (failed, failed_checkout) = pending(&app, "m-fail", "500.00").await;
    let (cancelled, cancelled_checkout) = pending(&app, "m-cancel", "600.00").await;
    let (expired, expired_checkout) = pending(&app, "m-expire", "700.00").await;
    let (failed, cancelled, expired) = (id_of(&failed), id_of(&cancelled), id_of(&expired));
    customer(&app, &failed_checkout, "fail").await;
    customer(&app, &cancelled_checkout, "cancel").await;
    customer(&app, &expired_checkout, "expire").await;

    // PAYMENT_FAILED: the customer's payment was refused.
    let declined = app.wait_for_status(&failed, "DECLINED").await;
    assert_eq!(declined["provider"], "maya");
    assert!(
        declined["failure_reason"]
            .as_str()
            .is_some_and(|r| !r.is_empty()),
        "{declined}"
    );
    assert!(declined["fees"].is_null(), "{declined}");
    assert_eq!(declined["captured_amount"], "0.00");
    assert_eq!(
        app.event_types(&failed).await,
        [
            "PaymentInitiated",
            "ProviderAttemptStarted",
            "ProviderTransactionCreated",
            "PaymentDeclined"
        ]
    );
    let decline = &stored_events(&app, &failed, "PaymentDeclined").await[0]["PaymentDeclined"];
    assert_eq!(decline["provider_transaction_id"], failed_checkout.as_str());

    // PAYMENT_CANCELLED: the customer left; nothing was refused, the payment failed.
    let ended = app.wait_for_status(&cancelled, "FAILED").await;
    assert_eq!(ended["failure_reason"], "cancelled", "{ended}");
    assert!(ended["fees"].is_null(), "{ended}");
    assert_eq!(
        app.event_types(&cancelled).await,
        [
            "PaymentInitiated",
            "ProviderAttemptStarted",
            "ProviderTransactionCreated",
            "PaymentFailed"
        ]
    );

    // PAYMENT_EXPIRED: the checkout lapsed.
    let lapsed = app.wait_for_status(&expired, "EXPIRED").await;
    assert!(lapsed["fees"].is_null(), "{lapsed}");
    assert_eq!(
        app.event_types(&expired).await,
        [
            "PaymentInitiated",
            "ProviderAttemptStarted",
            "ProviderTransactionCreated",
            "PaymentExpired"
        ]
    );

    // Each end state is final: the customer cannot pay any of them afterwards.
    for checkout in [&failed_checkout, &cancelled_checkout, &expired_checkout] {
        let response = app
            .http
            .post(format!(
                "{}/_sandbox/checkouts/{checkout}/complete",
                maya_root(&app)
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 409, "Maya itself refuses");
    }
}

#[tokio::test]
async fn maya_server_error_leaves_the_payment_pending_with_its_outcome_unknown() {
    let app = start(PHILIPPINES).await;
    set_fault(&app, "maya", "server_error").await;
    let created = app
        .create_payment("m-5xx", &maya_payment("800.00", "order-m-5xx"))
        .await;
    let id = id_of(&created);
    // A 5xx may follow a charge: the payment stays the provider's until it says.
    assert_eq!(created["status"], "PENDING", "{created}");
    assert_eq!(created["provider_outcome"], "unknown", "{created}");
    assert_eq!(created["provider"], "maya", "{created}");
    assert!(created["provider_reference"].is_null(), "{created}");
    assert!(created["next_action"].is_null(), "{created}");
    let failed = app.wait_for_status(&id, "PENDING").await;
    assert!(failed["fees"].is_null(), "{failed}");
    assert_eq!(
        app.event_types(&id).await,
        [
            "PaymentInitiated",
            "ProviderAttemptStarted",
            "ProviderOutcomeUnknown"
        ]
    );
    let attempt = &stored_events(&app, &id, "ProviderOutcomeUnknown").await[0];
    assert_eq!(attempt["ProviderOutcomeUnknown"]["provider"], "maya");
    assert_eq!(attempt["ProviderOutcomeUnknown"]["kind"], "server_error");
    let detail = attempt["ProviderOutcomeUnknown"]["detail"].to_string();
    let config = MayaConfig::from_env();
    assert!(
        !detail.contains(&config.secret_key.expose_secret().to_owned())
            && !detail.contains(&config.public_key),
        "no key in the recorded detail: {detail}"
    );

    // Maya recovers: the next payment goes through.
    set_fault(&app, "maya", "none").await;
    let (next, _) = pending(&app, "m-5xx-next", "800.00").await;
    assert_eq!(
        app.event_types(&id_of(&next)).await,
        [
            "PaymentInitiated",
            "ProviderAttemptStarted",
            "ProviderTransactionCreated"
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// Refunds and manual capture
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn maya_refunds_partially_then_fully() {
    let app = start(PHILIPPINES).await;
    let (id, checkout) = approved(&app, "m-ref", "1500.00").await;

    let (status, first) = json_of(
        app.post(
            &format!("{PAYMENTS}/{id}/refunds"),
            &app.checkout_key,
            Some("m-ref-1"),
            &json!({"amount": "500.25", "reason": "customer request"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201, "{first}");
    assert_eq!(first["status"], "SUCCEEDED", "{first}");
    assert_eq!(first["payment"]["status"], "PARTIALLY_REFUNDED", "{first}");
    let view = app
        .read_at_least(&id, first["payment"]["version"].as_i64().unwrap())
        .await;
    assert_eq!(view["status"], "PARTIALLY_REFUNDED");
    assert_eq!(view["refunded_amount"], "500.25");

    let (status, second) = json_of(
        app.post(
            &format!("{PAYMENTS}/{id}/refunds"),
            &app.checkout_key,
            Some("m-ref-2"),
            &json!({"amount": "999.75"}),
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
    assert_eq!(view["captured_amount"], "1500.00");
    // The fee stays what approval fixed.
    assert_eq!(view["fees"], fee_json("1500.00"));

    // A retried refund (same Idempotency-Key) refunds nothing more.
    let (status, again) = json_of(
        app.post(
            &format!("{PAYMENTS}/{id}/refunds"),
            &app.checkout_key,
            Some("m-ref-1"),
            &json!({"amount": "500.25", "reason": "customer request"}),
        )
        .await,
    )
    .await;
    assert!(status == 200 || status == 201, "{status} {again}");
    assert_eq!(again["id"], first["id"], "{again}");

    // Nothing is left to refund: refused, nothing appended.
    let before = app.event_types(&id).await;
    problem(
        app.post(
            &format!("{PAYMENTS}/{id}/refunds"),
            &app.checkout_key,
            Some("m-ref-3"),
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

    // Maya itself made exactly the two refunds, with the ids payledger recorded.
    let refunds = maya_api(&app, &format!("/payments/v1/payments/{checkout}/refunds")).await;
    let refunds = refunds.as_array().expect("refund list");
    let amounts: Vec<&str> = refunds
        .iter()
        .filter_map(|r| r["totalAmount"]["amount"].as_str())
        .collect();
    assert_eq!(amounts, ["500.25", "999.75"], "{refunds:?}");
    let recorded: Vec<Value> = stored_events(&app, &id, "PaymentRefunded")
        .await
        .iter()
        .map(|e| e["PaymentRefunded"]["provider_refund_id"].clone())
        .collect();
    let at_maya: Vec<Value> = refunds.iter().map(|r| r["id"].clone()).collect();
    assert_eq!(recorded, at_maya);
    assert_eq!(
        maya_payment_at_maya(&app, &checkout).await["status"],
        "REFUNDED"
    );
}

#[tokio::test]
async fn maya_manual_capture_authorizes_then_captures_part_then_refunds_it() {
    let app = start(PHILIPPINES).await;
    let mut body = maya_payment("1000.00", "order-m-hold");
    body["capture"] = json!("manual");
    let created = app.create_payment("m-hold", &body).await;
    assert_eq!(created["status"], "PENDING", "{created}");
    let id = id_of(&created);
    let checkout = reference_of(&created);
    assert_eq!(
        maya_payment_at_maya(&app, &checkout).await["authorizationType"],
        "NORMAL",
        "Maya's Authorize (Hold) and Capture"
    );

    let held = customer(&app, &checkout, "complete").await;
    assert_eq!(held["status"], "AUTHORIZED", "{held}");
    let authorized = app.wait_for_status(&id, "AUTHORIZED").await;
    assert_eq!(authorized["authorized_amount"], "1000.00", "{authorized}");
    assert_eq!(authorized["captured_amount"], "0.00", "{authorized}");
    assert!(
        authorized["fees"].is_null(),
        "no fee before a capture: {authorized}"
    );

    let (status, captured) = json_of(
        app.post(
            &format!("{PAYMENTS}/{id}/capture"),
            &app.checkout_key,
            Some("m-hold-cap"),
            &json!({"amount": "600.00"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201, "{captured}");
    assert_eq!(captured["status"], "APPROVED", "{captured}");
    let view = app
        .read_at_least(&id, captured["version"].as_i64().unwrap())
        .await;
    assert_eq!(view["status"], "APPROVED");
    assert_eq!(view["captured_amount"], "600.00");
    assert_eq!(view["authorized_amount"], "1000.00");
    assert_eq!(
        view["fees"],
        fee_json("600.00"),
        "the fee is on what was captured"
    );
    // Maya made one capture payment of 600.00; the authorization is done.
    let at_maya = maya_payment_at_maya(&app, &checkout).await;
    assert_eq!(at_maya["status"], "DONE", "{at_maya}");

    // The capture payment's own PAYMENT_SUCCESS webhook is acknowledged, not acted on.
    tokio::time::sleep(Duration::from_millis(150)).await;
    let trail = app.event_types(&id).await;
    assert_eq!(
        trail,
        [
            "PaymentInitiated",
            "ProviderAttemptStarted",
            "ProviderTransactionCreated",
            "PaymentAuthorized",
            "CaptureRequested",
            "PaymentApproved"
        ]
    );
    let approval = &stored_events(&app, &id, "PaymentApproved").await[0]["PaymentApproved"];
    assert_eq!(approval["amount"]["amount"], "600.00", "{approval}");
    assert_eq!(
        approval["fee"]["amount"],
        expected_fee("maya", "MAYA", "600.00")
    );

    // A sync now must not "approve" the authorized 1000.00 on top of the 600.00 captured.
    let synced = sync(&app, &id).await;
    assert_eq!(synced["captured_amount"], "600.00", "{synced}");
    assert_eq!(app.event_types(&id).await, trail);

    let (status, refund) = json_of(
        app.post(
            &format!("{PAYMENTS}/{id}/refunds"),
            &app.checkout_key,
            Some("m-hold-ref"),
            &json!({"amount": "600.00"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201, "{refund}");
    assert_eq!(refund["status"], "SUCCEEDED", "{refund}");
    let view = app
        .read_at_least(&id, refund["payment"]["version"].as_i64().unwrap())
        .await;
    assert_eq!(view["status"], "REFUNDED");
    assert_eq!(view["refunded_amount"], "600.00");
    // Refunded at Maya on the capture payment (where the money is).
    let captures = maya_api(
        &app,
        &format!(
            "/payments/v1/payment-rrns/{}-cap",
            uuid::Uuid::parse_str(&id).unwrap().simple()
        ),
    )
    .await;
    let capture = &captures.as_array().expect("captures")[0];
    assert_eq!(capture["amount"], "600.00", "{capture}");
    assert_eq!(capture["status"], "REFUNDED", "{capture}");
}

#[tokio::test]
async fn maya_authorization_voided_before_capture_is_released_at_maya() {
    let app = start(PHILIPPINES).await;
    let mut body = maya_payment("750.00", "order-m-void");
    body["capture"] = json!("manual");
    let created = app.create_payment("m-void", &body).await;
    let id = id_of(&created);
    let checkout = reference_of(&created);
    customer(&app, &checkout, "complete").await;
    app.wait_for_status(&id, "AUTHORIZED").await;

    let (status, voided) = json_of(
        app.post(
            &format!("{PAYMENTS}/{id}/void"),
            &app.checkout_key,
            Some("m-void-1"),
            &json!({}),
        )
        .await,
    )
    .await;
    assert!(status == 200 || status == 201, "{status} {voided}");
    assert_eq!(voided["status"], "VOIDED", "{voided}");
    let view = app.wait_for_status(&id, "VOIDED").await;
    assert_eq!(view["captured_amount"], "0.00");
    assert!(view["fees"].is_null(), "{view}");
    assert_eq!(
        maya_payment_at_maya(&app, &checkout).await["status"],
        "VOIDED"
    );
    assert_eq!(
        app.event_types(&id).await,
        [
            "PaymentInitiated",
            "ProviderAttemptStarted",
            "ProviderTransactionCreated",
            "PaymentAuthorized",
            "VoidRequested",
            "PaymentVoided"
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// Webhook authentication: source address, then confirmation with Maya
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn maya_duplicate_webhook_answers_200_and_appends_nothing() {
    let app = start(PHILIPPINES).await;
    let (id, checkout) = approved(&app, "m-dup", "900.00").await;
    let payload = recorded_delivery(&app, &checkout).await;
    let events_before = app.event_count().await;
    let trail = app.event_types(&id).await;

    for _ in 0..2 {
        let (status, body) = json_of(post_webhook(&app, payload.clone()).await).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["result"], "duplicate", "{body}");
    }
    assert_eq!(app.event_count().await, events_before);
    assert_eq!(app.event_types(&id).await, trail);
    let rows = deliveries_with_peer(&app, "maya").await;
    assert_eq!(
        rows.iter()
            .filter(|(valid, result, _, body)| *valid && result == "duplicate" && *body == payload)
            .count(),
        2,
        "both redeliveries are logged as verified duplicates"
    );
}

#[tokio::test]
async fn maya_success_claimed_for_a_payment_maya_still_has_pending_does_not_approve_it() {
    let app = start(PHILIPPINES).await;
    let (created, checkout) = pending(&app, "m-forge", "2500.00").await;
    let id = id_of(&created);
    // Maya's own payment object with the status changed to what the forger wants.
    let mut forged = maya_payment_at_maya(&app, &checkout).await;
    assert_eq!(forged["status"], "PENDING_TOKEN");
    forged["status"] = json!("PAYMENT_SUCCESS");
    forged["isPaid"] = json!(true);
    let forged = serde_json::to_vec(&forged).unwrap();
    let events_before = app.event_count().await;

    let response = post_webhook(&app, forged.clone()).await;
    let status = response.status().as_u16();
    let answer = response.text().await.unwrap();
    assert!(
        status == 200 || (400..500).contains(&status),
        "a claim Maya does not confirm is acknowledged or refused, never a 5xx: {status} {answer}"
    );
    assert_eq!(app.event_count().await, events_before, "{answer}");
    assert_eq!(
        app.event_types(&id).await,
        [
            "PaymentInitiated",
            "ProviderAttemptStarted",
            "ProviderTransactionCreated"
        ]
    );
    let view = app
        .read_at_least(&id, created["version"].as_i64().unwrap())
        .await;
    assert_eq!(view["status"], "PENDING");
    assert_eq!(view["captured_amount"], "0.00");
    assert!(stored_events(&app, &id, "PaymentApproved").await.is_empty());
    // The claim is logged (it came from a listed source, so it was let in and checked), and
    // not as `recorded`. How it is labelled is checked at the end of this test.
    let logged: Vec<String> = deliveries_with_peer(&app, "maya")
        .await
        .into_iter()
        .filter(|(_, _, _, body)| *body == forged)
        .map(|(_, result, _, _)| result)
        .collect();
    assert_eq!(logged.len(), 1, "the claim is logged once: {logged:?}");
    assert_ne!(logged[0], "recorded");

    // The forgery must not have used up the real notification: when the customer really
    // pays, Maya's own PAYMENT_SUCCESS (same Maya id, same status) still approves it.
    customer(&app, &checkout, "complete").await;
    let approved = app.wait_for_status(&id, "APPROVED").await;
    assert_eq!(approved["captured_amount"], "2500.00");
    assert_eq!(approved["fees"], fee_json("2500.00"));
    assert_eq!(
        app.event_types(&id).await,
        [
            "PaymentInitiated",
            "ProviderAttemptStarted",
            "ProviderTransactionCreated",
            "PaymentApproved"
        ]
    );

    // Last, the unconfirmed claim's label: not `duplicate` either. Nothing like it was ever
    // recorded, and an operator reading the log for forged or lost deliveries would be sent
    // looking for an original that does not exist.
    let answered: Value = serde_json::from_str(&answer).unwrap_or(Value::Null);
    assert!(
        logged[0] != "duplicate" && answered["result"] != "duplicate",
        "an unconfirmed claim is not a redelivery: answered {status} {answer}, logged `{}`",
        logged[0]
    );
}

#[tokio::test]
async fn maya_webhook_body_is_never_trusted_for_amount_or_outcome() {
    // Webhooks lost, so only the bodies this test sends reach payledger.
    let app = start_with(PHILIPPINES, |s| s.sandbox.deliver_webhooks = false).await;

    // 1. Paid at Maya for 2500.00; a body claims success for 1.00: Maya's amount is recorded.
    let (paid, paid_checkout) = pending(&app, "m-amt", "2500.00").await;
    let paid = id_of(&paid);
    let mut claim = customer(&app, &paid_checkout, "complete").await;
    claim["amount"] = json!("1.00");
    let (status, body) =
        json_of(post_webhook(&app, serde_json::to_vec(&claim).unwrap()).await).await;
    assert_eq!(status, 200, "{body}");
    let approved = app.wait_for_status(&paid, "APPROVED").await;
    assert_eq!(approved["captured_amount"], "2500.00", "{approved}");
    assert_eq!(approved["fees"], fee_json("2500.00"), "{approved}");
    let approval = &stored_events(&app, &paid, "PaymentApproved").await[0]["PaymentApproved"];
    assert_eq!(approval["amount"]["amount"], "2500.00", "{approval}");

    // 2. Refused at Maya; a body claims success: Maya's answer (declined) is what counts.
    let (refused, refused_checkout) = pending(&app, "m-claim-ko", "700.00").await;
    let refused = id_of(&refused);
    let mut claim = customer(&app, &refused_checkout, "fail").await;
    claim["status"] = json!("PAYMENT_SUCCESS");
    claim["isPaid"] = json!(true);
    let response = post_webhook(&app, serde_json::to_vec(&claim).unwrap()).await;
    assert!(
        response.status().is_success(),
        "{}",
        response.text().await.unwrap()
    );
    app.wait_for_status(&refused, "DECLINED").await;
    assert!(stored_events(&app, &refused, "PaymentApproved")
        .await
        .is_empty());

    // 3. A Maya body naming a payment Maya does not hold (a GCash payment of ours).
    let gcash = app
        .create_payment(
            "m-cross",
            &json!({
                "amount": "300.00",
                "currency": "PHP",
                "reference": "order-m-cross",
                "provider": "gcash",
                "payment_method": {"type": "GCASH"},
            }),
        )
        .await;
    let gcash_id = id_of(&gcash);
    assert_eq!(gcash["provider"], "gcash", "{gcash}");
    let mut claim = claim.clone();
    claim["requestReferenceNumber"] = json!(gcash_id);
    let before = app.event_types(&gcash_id).await;
    let response = post_webhook(&app, serde_json::to_vec(&claim).unwrap()).await;
    let status = response.status().as_u16();
    let answer = response.text().await.unwrap();
    assert!(
        status == 200 || (400..500).contains(&status),
        "{status} {answer}"
    );
    assert_eq!(app.event_types(&gcash_id).await, before, "{answer}");
}

#[tokio::test]
async fn maya_webhook_from_an_address_not_in_the_source_list_is_401_logged_and_appends_nothing() {
    let app = start(PHILIPPINES).await;
    let (created, checkout) = pending(&app, "m-src", "1800.00").await;
    let id = id_of(&created);
    // The customer really paid (so confirming with Maya would approve it): only the source
    // address can stop this delivery.
    let mut claim = maya_payment_at_maya(&app, &checkout).await;
    claim["status"] = json!("PAYMENT_SUCCESS");
    claim["isPaid"] = json!(true);
    let claim = serde_json::to_vec(&claim).unwrap();
    let events_before = app.event_count().await;

    // 127.0.0.2 is this machine too, but not in payledger's list (127.0.0.1/32, ::1/128).
    let response = post_from(&app, 2, None, claim.clone()).await;
    let body = problem(response, 401, "unknown source").await;
    assert!(
        !body.to_string().contains("127.0.0.1"),
        "the answer does not reveal the source list: {body}"
    );
    assert_eq!(app.event_count().await, events_before);
    assert_eq!(
        app.event_types(&id).await,
        [
            "PaymentInitiated",
            "ProviderAttemptStarted",
            "ProviderTransactionCreated"
        ]
    );
    let rows = delivery_digests(&app, "maya").await;
    let refused: Vec<_> = rows
        .iter()
        .filter(|(_, _, _, digest)| *digest == digest_of(&claim))
        .collect();
    assert_eq!(refused.len(), 1, "the refused delivery is logged once");
    let (valid, result, peer, _) = refused[0];
    assert!(!*valid, "logged as not authenticated");
    assert_eq!(result, "refused");
    assert_eq!(peer.as_deref(), Some("127.0.0.2"));

    // Control: the same bytes from a listed source (and the payment really paid) approve it.
    customer(&app, &checkout, "complete").await;
    app.wait_for_status(&id, "APPROVED").await;
}

/// POSTs a Maya webhook from 127.0.0.`octet`, with `X-Forwarded-For: forwarded` if given.
async fn post_from(
    app: &TestApp,
    octet: u8,
    forwarded: Option<&str>,
    body: Vec<u8>,
) -> reqwest::Response {
    let client = reqwest::Client::builder()
        .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, octet)))
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut request = client
        .post(format!("{}/v1/webhooks/maya", app.address))
        .header(CONTENT_TYPE, "application/json")
        .body(body);
    if let Some(forwarded) = forwarded {
        request = request.header("X-Forwarded-For", forwarded);
    }
    request.send().await.expect("webhook sent")
}

#[tokio::test]
async fn maya_webhook_through_a_trusted_proxy_is_judged_by_the_client_it_forwards_for() {
    // 127.0.0.2 plays the load balancer; Maya's listed sources stay 127.0.0.1 and ::1. The
    // emulator sends nothing itself: every delivery below is this test's.
    let app = start_with(PHILIPPINES, |s| {
        s.trusted_proxies = "127.0.0.2/32".into();
        s.sandbox.deliver_webhooks = false;
    })
    .await;
    let (created, checkout) = pending(&app, "m-proxy", "1800.00").await;
    let id = id_of(&created);
    customer(&app, &checkout, "complete").await;
    let paid = maya_payment_at_maya(&app, &checkout).await;
    assert_eq!(paid["status"], "PAYMENT_SUCCESS", "{paid}");
    let paid = serde_json::to_vec(&paid).unwrap();

    let cases = [
        (
            "the proxy forwards a stranger",
            2,
            Some("198.51.100.9"),
            "198.51.100.9",
        ),
        (
            "a stranger wrote Maya's address before the proxy's entry",
            2,
            Some("127.0.0.1, 198.51.100.9"),
            "198.51.100.9",
        ),
        (
            "a peer that is not a proxy claims Maya's address",
            3,
            Some("127.0.0.1"),
            "127.0.0.3",
        ),
        (
            "the proxy names nobody: it is the client",
            2,
            None,
            "127.0.0.2",
        ),
    ];
    for (case, octet, forwarded, client) in cases {
        let response = post_from(&app, octet, forwarded, paid.clone()).await;
        problem(response, 401, case).await;
        assert_eq!(
            app.event_types(&id).await,
            [
                "PaymentInitiated",
                "ProviderAttemptStarted",
                "ProviderTransactionCreated"
            ],
            "{case}"
        );
        let (valid, result, peer, _) = deliveries_with_peer(&app, "maya")
            .await
            .pop()
            .expect("logged");
        assert!(!valid && result == "refused", "{case}: {result}");
        assert_eq!(
            peer.as_deref(),
            Some(client),
            "{case}: logged as the client"
        );
    }

    // The proxy forwards for Maya: let in, confirmed with Maya, approved.
    let response = post_from(&app, 2, Some("127.0.0.1"), paid).await;
    assert_eq!(response.status(), 200);
    app.wait_for_status(&id, "APPROVED").await;
    let (valid, result, peer, _) = deliveries_with_peer(&app, "maya")
        .await
        .pop()
        .expect("logged");
    assert!(valid && result == "recorded", "{result}");
    assert_eq!(peer.as_deref(), Some("127.0.0.1"));
}

// ---------------------------------------------------------------------------------------------
// Lost webhooks: sync and the reconciler
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn maya_lost_webhook_sync_brings_the_payment_to_mayas_status() {
    let app = start_with(PHILIPPINES, |s| s.sandbox.deliver_webhooks = false).await;
    let (paid, paid_checkout) = pending(&app, "m-lost-ok", "1234.50").await;
    let (lapsed, lapsed_checkout) = pending(&app, "m-lost-exp", "400.00").await;
    let (paid, lapsed) = (id_of(&paid), id_of(&lapsed));
    // What Maya would have POSTed: the payment object as it now is.
    let late_webhook = customer(&app, &paid_checkout, "complete").await;
    customer(&app, &lapsed_checkout, "expire").await;

    // The webhooks are lost: the ledger still says PENDING.
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(
        deliveries_with_peer(&app, "maya").await.is_empty(),
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
    assert_eq!(synced["captured_amount"], "1234.50", "{synced}");
    assert_eq!(synced["fees"], fee_json("1234.50"), "{synced}");
    let view = app
        .read_at_least(&paid, synced["version"].as_i64().unwrap())
        .await;
    assert_eq!(view["status"], "APPROVED");
    assert_eq!(view["fees"], fee_json("1234.50"));
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

    // Syncing again appends nothing.
    let again = sync(&app, &paid).await;
    assert_eq!(again["version"], view["version"]);
    assert_eq!(app.event_types(&paid).await.len(), 4);

    // The webhook arrives late after all (its event id is not the sync's): acknowledged,
    // and the payment is not approved twice.
    let (status, body) =
        json_of(post_webhook(&app, serde_json::to_vec(&late_webhook).unwrap()).await).await;
    assert_eq!(status, 200, "{body}");
    assert_ne!(body["result"], "recorded", "{body}");
    assert_eq!(app.event_types(&paid).await.len(), 4);
    let view = app.wait_for_status(&paid, "APPROVED").await;
    assert_eq!(view["captured_amount"], "1234.50");
}

#[tokio::test]
async fn maya_lost_webhook_reconciler_settles_stuck_pending_payments() {
    let app = start_with(PHILIPPINES, |s| {
        s.sandbox.deliver_webhooks = false;
        s.routing.reconcile_after_ms = 200;
        s.routing.reconcile_interval_ms = 100;
    })
    .await;
    let (paid, paid_checkout) = pending(&app, "m-rec-ok", "950.00").await;
    let (refused, refused_checkout) = pending(&app, "m-rec-ko", "950.00").await;
    let (waiting, _) = pending(&app, "m-rec-wait", "950.00").await;
    let (paid, refused, waiting) = (id_of(&paid), id_of(&refused), id_of(&waiting));
    customer(&app, &paid_checkout, "complete").await;
    customer(&app, &refused_checkout, "fail").await;

    // Nobody calls sync: the reconciler finds them PENDING past their age and asks Maya.
    let approved = app.wait_for_status(&paid, "APPROVED").await;
    assert_eq!(approved["fees"], fee_json("950.00"));
    let declined = app.wait_for_status(&refused, "DECLINED").await;
    assert!(declined["failure_reason"]
        .as_str()
        .is_some_and(|r| !r.is_empty()));
    assert!(
        deliveries_with_peer(&app, "maya").await.is_empty(),
        "no webhook was delivered"
    );
    // The one the customer has not acted on is still pending at Maya, so here too.
    let view = app.wait_for_status(&waiting, "PENDING").await;
    assert_eq!(view["status"], "PENDING");
    assert_eq!(
        app.event_types(&waiting).await,
        [
            "PaymentInitiated",
            "ProviderAttemptStarted",
            "ProviderTransactionCreated"
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// Lost create answers: the checkout exists at Maya, the ledger did not hear of it
// ---------------------------------------------------------------------------------------------

/// The attempt's bound in these tests: well under the 30 s the emulator holds an answer.
const ATTEMPT_TIMEOUT_MS: u64 = 1_500;

/// Every Maya payment (checkout) under our payment id as `requestReferenceNumber`.
async fn checkouts_at_maya(app: &TestApp, payment_id: &str) -> Vec<Value> {
    maya_api(app, &format!("/payments/v1/payment-rrns/{payment_id}"))
        .await
        .as_array()
        .expect("Maya answers a list")
        .clone()
}

/// A create whose answer Maya loses after making the checkout: answered `201`, PENDING, its
/// outcome unknown, no provider reference yet.
async fn created_with_lost_answer(app: &TestApp, fault: &str, key: &str, amount: &str) -> String {
    set_fault(app, "maya", fault).await;
    let created = app
        .create_payment(key, &maya_payment(amount, &format!("order-{key}")))
        .await;
    set_fault(app, "maya", "none").await;
    assert_eq!(created["status"], "PENDING", "{fault}: {created}");
    assert_eq!(created["provider"], "maya", "{fault}: {created}");
    assert_eq!(created["provider_outcome"], "unknown", "{fault}: {created}");
    assert!(
        created["provider_reference"].is_null(),
        "{fault}: {created}"
    );
    let id = id_of(&created);
    // A reconciler may record the checkout right after: only the start is certain.
    let events = app.event_types(&id).await;
    assert_eq!(
        events[..3],
        [
            "PaymentInitiated",
            "ProviderAttemptStarted",
            "ProviderOutcomeUnknown"
        ],
        "{fault}: {events:?}"
    );
    id
}

/// Once the ledger holds Maya's checkout: exactly one at Maya for the payment, the customer
/// pays it, Maya's webhook approves it, and no other provider was ever asked.
async fn paid_once_at_maya(app: &TestApp, id: &str, checkout: &str, amount: &str) {
    let held = checkouts_at_maya(app, id).await;
    assert_eq!(held.len(), 1, "{held:?}");
    assert_eq!(held[0]["id"].as_str(), Some(checkout), "{held:?}");
    assert_eq!(held[0]["status"], "PENDING_TOKEN", "{held:?}");

    customer(app, checkout, "complete").await;
    let approved = app.wait_for_status(id, "APPROVED").await;
    assert_eq!(approved["provider"], "maya", "{approved}");
    assert_eq!(approved["provider_reference"].as_str(), Some(checkout));
    assert_eq!(approved["captured_amount"], amount, "{approved}");
    assert_eq!(approved["fees"], fee_json(amount), "{approved}");
    assert!(approved["provider_outcome"].is_null(), "{approved}");
    assert_eq!(
        app.event_types(id).await,
        [
            "PaymentInitiated",
            "ProviderAttemptStarted",
            "ProviderOutcomeUnknown",
            "ProviderTransactionCreated",
            "PaymentApproved"
        ]
    );
    let attempts = stored_events(app, id, "ProviderAttemptStarted").await;
    assert_eq!(attempts.len(), 1, "{attempts:?}");
    assert_eq!(attempts[0]["ProviderAttemptStarted"]["provider"], "maya");
    let created = stored_events(app, id, "ProviderTransactionCreated").await;
    assert_eq!(
        created[0]["ProviderTransactionCreated"]["provider_transaction_id"].as_str(),
        Some(checkout)
    );
    assert_eq!(checkouts_at_maya(app, id).await.len(), 1);
}

#[tokio::test]
async fn maya_lost_create_answers_are_found_by_reference_on_a_retry_or_a_sync() {
    let app = start_with(PHILIPPINES, |s| {
        s.routing.provider_attempt_timeout_ms = ATTEMPT_TIMEOUT_MS
    })
    .await;

    // Held past the attempt's bound: a retry with the same Idempotency-Key asks Maya by
    // reference before sending anything, and records the checkout it finds.
    let key = "m-lost-timeout";
    let id = created_with_lost_answer(&app, "approved_timeout", key, "730.00").await;
    let (status, retried) = json_of(
        app.post(
            PAYMENTS,
            &app.checkout_key,
            Some(key),
            &maya_payment("730.00", &format!("order-{key}")),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "{retried}");
    assert_eq!(id_of(&retried), id);
    assert_eq!(retried["status"], "PENDING", "{retried}");
    assert!(retried["provider_outcome"].is_null(), "{retried}");
    let checkout = reference_of(&retried);
    paid_once_at_maya(&app, &id, &checkout, "730.00").await;
    // Approved by Maya's webhook, which names the checkout the retry recorded.
    recorded_delivery(&app, &checkout).await;

    // A 503 after the checkout was made: a sync asks Maya by reference.
    let id = created_with_lost_answer(&app, "approved_503", "m-lost-503", "415.50").await;
    let synced = sync(&app, &id).await;
    assert_eq!(synced["status"], "PENDING", "{synced}");
    assert!(synced["provider_outcome"].is_null(), "{synced}");
    let checkout = reference_of(&synced);
    // A retry now answers the payment as it stands: nothing is sent to Maya again.
    let (status, retried) = json_of(
        app.post(
            PAYMENTS,
            &app.checkout_key,
            Some("m-lost-503"),
            &maya_payment("415.50", "order-m-lost-503"),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "{retried}");
    assert_eq!(reference_of(&retried), checkout);
    paid_once_at_maya(&app, &id, &checkout, "415.50").await;
    recorded_delivery(&app, &checkout).await;
}

#[tokio::test]
async fn maya_lost_create_answers_are_found_by_reference_by_the_reconciler() {
    let app = start_with(PHILIPPINES, |s| {
        s.routing.provider_attempt_timeout_ms = ATTEMPT_TIMEOUT_MS;
        s.routing.reconcile_after_ms = 0;
        s.routing.reconcile_interval_ms = 200;
    })
    .await;
    for (fault, key, amount) in [
        ("approved_503", "m-rec-503", "515.00"),
        ("approved_timeout", "m-rec-timeout", "616.00"),
    ] {
        let id = created_with_lost_answer(&app, fault, key, amount).await;
        // Nobody retries or syncs: the reconciler asks Maya by reference.
        let deadline = Instant::now() + Duration::from_secs(10);
        let found = loop {
            let (status, view) = json_of(
                app.get(&format!("{PAYMENTS}/{id}"), &app.checkout_key)
                    .await,
            )
            .await;
            // 404 until the projection has the payment.
            assert!(status == 200 || status == 404, "{view}");
            if view["provider_reference"].is_string() {
                break view;
            }
            assert!(
                Instant::now() < deadline,
                "{fault}: the reconciler never recorded the checkout: {view}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(found["status"], "PENDING", "{fault}: {found}");
        assert!(found["provider_outcome"].is_null(), "{fault}: {found}");
        paid_once_at_maya(&app, &id, &reference_of(&found), amount).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Public configuration
// ---------------------------------------------------------------------------------------------

fn all_secrets() -> Vec<(&'static str, String)> {
    let maya = MayaConfig::from_env();
    let paymongo = PaymongoConfig::from_env();
    vec![
        (
            "MAYA_SECRET_KEY",
            maya.secret_key.expose_secret().to_owned(),
        ),
        (
            "PAYMONGO_SECRET_KEY",
            paymongo.secret_key.expose_secret().to_owned(),
        ),
        (
            "PAYMONGO_WEBHOOK_SECRET",
            paymongo.webhook_secret.expose_secret().to_owned(),
        ),
    ]
}

#[tokio::test]
async fn public_config_lists_maya_and_gcash_keys_and_methods_and_no_secret() {
    let app = start(PHILIPPINES).await;
    let response = app
        .http
        .get(format!("{}/v1/config", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    for (name, value) in all_secrets() {
        assert!(!value.is_empty(), "{name} is empty in this environment");
        assert!(!text.contains(&value), "/v1/config exposes {name}: {text}");
    }
    let config: Value = serde_json::from_str(&text).unwrap();
    let providers = config["providers"].as_array().expect("providers");
    let names: Vec<&str> = providers
        .iter()
        .filter_map(|p| p["provider"].as_str())
        .collect();
    assert_eq!(names, ["maya", "gcash"], "{text}");
    let entry = |name: &str| {
        providers
            .iter()
            .find(|p| p["provider"] == name)
            .unwrap_or_else(|| panic!("{name} missing: {text}"))
            .clone()
    };
    let maya = entry("maya");
    assert_eq!(
        maya["public_key"],
        MayaConfig::from_env().public_key.as_str(),
        "{text}"
    );
    assert_eq!(maya["methods"], json!(["MAYA"]), "{text}");
    assert_eq!(maya["currencies"], json!(["PHP"]), "{text}");
    let gcash = entry("gcash");
    assert_eq!(
        gcash["public_key"],
        json!(PaymongoConfig::from_env().public_key),
        "GCash's public key (if configured) and nothing else: {text}"
    );
    assert_eq!(gcash["methods"], json!(["GCASH"]), "{text}");
    assert_eq!(gcash["currencies"], json!(["PHP"]), "{text}");

    // Nor do the other public catalog endpoints leak anything.
    for path in [
        "/v1/payment-methods?currency=PHP&amount=1000.00",
        "/health/providers",
    ] {
        let response = app
            .http
            .get(format!("{}{path}", app.address))
            .send()
            .await
            .unwrap();
        let text = response.text().await.unwrap();
        for (name, value) in all_secrets() {
            assert!(!text.contains(&value), "{path} exposes {name}: {text}");
        }
    }
}
