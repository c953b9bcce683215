//! Saved Maya cards end to end: payledger's HTTP API, its Maya adapter vaulting a card at the
//! in-process emulator (a payment token of Maya's tokenization, linked to a Maya customer),
//! the 3-D Secure verification Maya asks before it charges a vaulted card, one-click payments
//! reported by Maya's webhook, and a removed card Maya no longer charges.

use std::time::{Duration, Instant};

use connectors::maya::MayaConfig;
use e2e::customers::{self, create_customer, methods_when, remove_method, save_method};
use e2e::support::{id_of, json_of, reference_of};
use e2e::TestApp;
use emulators::maya::{TEST_CARD_DECLINED, TEST_CARD_VERIFICATION_FAILS, TEST_CARD_VISA};
use secrecy::ExposeSecret;
use serde_json::{json, Value};

use super::common::{customer_action, emulator_read, emulator_root, start, PHILIPPINES};

const RETURN_URL: &str = "https://shop.example/cards/verified";

/// A payment token from Maya's tokenization, with the public key, as the customer's browser
/// gets it: the card number goes to Maya only, never to payledger.
async fn payment_token(app: &TestApp, number: &str) -> String {
    let response = app
        .http
        .post(format!(
            "{}/payments/v1/payment-tokens",
            emulator_root(app, "maya")
        ))
        .basic_auth(MayaConfig::from_env().public_key, Some(""))
        .json(
            &json!({"card": {"number": number, "expMonth": "12", "expYear": "2035", "cvc": "123"}}),
        )
        .send()
        .await
        .expect("tokenize");
    let (status, body) = json_of(response).await;
    assert_eq!(status, 200, "{body}");
    body["paymentTokenId"]
        .as_str()
        .expect("paymentTokenId")
        .to_owned()
}

fn card(token: &str) -> Value {
    json!({"type": "CARD", "token": token, "provider": "maya", "return_url": RETURN_URL})
}

/// Saves a card and checks it awaits the customer's 3-D Secure at Maya; the saved method
/// and its verification page.
async fn saved_awaiting(app: &TestApp, customer: &str, key: &str, token: &str) -> (Value, String) {
    let (status, saved) = save_method(app, customer, key, &card(token)).await;
    assert_eq!(status, 201, "{saved}");
    assert_eq!(saved["status"], "AWAITING_VERIFICATION", "{saved}");
    assert_eq!(saved["next_action"]["type"], "redirect", "{saved}");
    let page = saved["next_action"]["url"]
        .as_str()
        .expect("verification page")
        .to_owned();
    assert!(
        page.starts_with(&emulator_root(app, "maya")),
        "the page is Maya's: {page}"
    );
    (saved, page)
}

/// `GET {path}` on Maya's API with the merchant's secret key: (status, body).
async fn at_maya(app: &TestApp, path: &str) -> (u16, Value) {
    let response = app
        .http
        .get(format!("{}{path}", emulator_root(app, "maya")))
        .basic_auth(
            MayaConfig::from_env().secret_key.expose_secret().to_owned(),
            Some(""),
        )
        .send()
        .await
        .expect("maya answers");
    json_of(response).await
}

/// The Maya customer and card a vault source names (`<customerId>/<cardTokenId>`).
async fn maya_card_of(app: &TestApp, method: &str) -> (String, String) {
    let source = customers::source_of(app, method)
        .await
        .expect("the vault keeps the source");
    let (customer, card) = source.split_once('/').expect("customer/card");
    (customer.to_owned(), card.to_owned())
}

async fn sync_method(app: &TestApp, customer: &str, method: &str) -> Value {
    let response = app
        .post(
            &format!("/v1/customers/{customer}/payment-methods/{method}/sync"),
            &app.checkout_key,
            None,
            &json!({}),
        )
        .await;
    let (status, body) = json_of(response).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// Waits (at most 10 s) for the read model to list the customer's one method as `status`.
async fn listed_as(app: &TestApp, customer: &str, status: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let listed = methods_when(app, customer, 1).await;
        if listed[0]["status"] == status {
            return;
        }
        assert!(Instant::now() < deadline, "never {status}: {listed:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn one_click(reference: &str, method: &str) -> Value {
    json!({"amount": "1500.00", "currency": "PHP", "reference": reference,
           "payment_method": {"type": "SAVED", "id": method}})
}

/// Pays with the saved method and waits for `status`; checks Maya charged that very card.
async fn paid_with(app: &TestApp, key: &str, body: Value, card: &str, status: &str) -> String {
    let created = app.create_payment(key, &body).await;
    assert_eq!(created["provider"], "maya", "{created}");
    let id = id_of(&created);
    app.wait_for_status(&id, status).await;
    let at = emulator_read(
        app.http
            .get(format!(
                "{}/payments/v1/payments/{}",
                emulator_root(app, "maya"),
                reference_of(&created)
            ))
            .basic_auth(
                MayaConfig::from_env().secret_key.expose_secret().to_owned(),
                Some(""),
            ),
    )
    .await;
    assert_eq!(at["requestReferenceNumber"], id.as_str(), "{at}");
    assert_eq!(at["amount"], "1500.00", "{at}");
    assert_eq!(
        at["fundSource"]["id"], card,
        "Maya charged the saved card: {at}"
    );
    id
}

#[tokio::test]
async fn a_maya_card_is_charged_in_one_click_only_once_the_customer_has_verified_it() {
    let app = start(PHILIPPINES).await;
    let customer = create_customer(&app, "maya-cust-1", Some("lia@example.com")).await;
    let token = payment_token(&app, TEST_CARD_VISA).await;
    let (saved, page) = saved_awaiting(&app, &customer, "maya-save-1", &token).await;
    assert_eq!(saved["provider"], "maya");
    assert_eq!(saved["brand"], "VISA");
    assert_eq!(saved["last_four"], "1381");
    assert_eq!(saved["is_default"], true);
    let method = saved["id"].as_str().expect("id").to_owned();

    // A retry answers the same method and the same page; nothing new at Maya.
    let (again, page_again) = saved_awaiting(&app, &customer, "maya-save-1", &token).await;
    assert_eq!(again["id"], method.as_str());
    assert_eq!(page_again, page);
    let listed = methods_when(&app, &customer, 1).await;
    assert_eq!(listed[0]["status"], "AWAITING_VERIFICATION", "{listed:?}");

    // Before the customer verifies: refused by payledger, nothing sent to Maya.
    let before = app.event_count().await;
    let response = app
        .post(
            "/v1/payments",
            &app.checkout_key,
            Some("maya-pay-early"),
            &one_click("maya-order-early", &method),
        )
        .await;
    let (status, problem) = json_of(response).await;
    assert_eq!(status, 422, "{problem}");
    assert!(
        problem.to_string().contains("verification"),
        "the refusal says why: {problem}"
    );
    assert_eq!(app.event_count().await, before, "nothing appended");
    assert_eq!(
        sync_method(&app, &customer, &method).await["status"],
        "AWAITING_VERIFICATION"
    );

    // The customer completes 3-D Secure on Maya's page.
    let verified = customer_action(&app, format!("{page}/verify")).await;
    assert_eq!(verified["state"], "VERIFIED", "{verified}");

    // The payment finds the card verified at Maya, records it and charges it.
    let (maya_customer, maya_card) = maya_card_of(&app, &method).await;
    let body = json!({"amount": "1500.00", "currency": "PHP", "reference": "maya-order-1",
                      "customer": customer});
    paid_with(&app, "maya-pay-1", body, &maya_card, "APPROVED").await;
    listed_as(&app, &customer, "ACTIVE").await;
    let kinds: Vec<String> = sqlx::query_scalar(
        "SELECT event_type FROM events WHERE aggregate_type = 'Customer' AND aggregate_id = $1
          ORDER BY sequence",
    )
    .bind(&customer)
    .fetch_all(&app.pool)
    .await
    .expect("events");
    assert_eq!(
        kinds,
        [
            "CustomerCreated",
            "PaymentMethodSaved",
            "DefaultPaymentMethodSet",
            "PaymentMethodVerified"
        ]
    );
    let stored: Vec<String> = sqlx::query_scalar(
        "SELECT payload::text FROM events WHERE aggregate_type = 'Customer' AND aggregate_id = $1",
    )
    .bind(&customer)
    .fetch_all(&app.pool)
    .await
    .expect("events");
    for payload in &stored {
        for secret in [
            token.as_str(),
            maya_card.as_str(),
            maya_customer.as_str(),
            "lia@",
        ] {
            assert!(!payload.contains(secret), "a secret in an event: {payload}");
        }
    }

    // Removed: detached at Maya, which then refuses to charge the card.
    assert_eq!(remove_method(&app, &customer, &method).await, 204);
    let (status, body) = at_maya(
        &app,
        &format!("/payments/v1/customers/{maya_customer}/cards/{maya_card}"),
    )
    .await;
    assert_eq!(status, 404, "{body}");
    let stale = app
        .http
        .post(format!(
            "{}/payments/v1/customers/{maya_customer}/cards/{maya_card}/payments",
            emulator_root(&app, "maya")
        ))
        .basic_auth(
            MayaConfig::from_env().secret_key.expose_secret().to_owned(),
            Some(""),
        )
        .json(&json!({"totalAmount": {"amount": 10, "currency": "PHP"},
                      "requestReferenceNumber": "stale-maya-1"}))
        .send()
        .await
        .expect("maya answers");
    assert!(
        stale.status().is_client_error(),
        "a removed card is not charged: {}",
        stale.status()
    );
    methods_when(&app, &customer, 0).await;
}

#[tokio::test]
async fn a_declining_maya_card_is_declined_and_a_failed_verification_removes_the_card() {
    let app = start(PHILIPPINES).await;
    let customer = create_customer(&app, "maya-cust-2", None).await;

    let token = payment_token(&app, TEST_CARD_DECLINED).await;
    let (saved, page) = saved_awaiting(&app, &customer, "maya-save-d", &token).await;
    let declining = saved["id"].as_str().expect("id").to_owned();
    customer_action(&app, format!("{page}/verify")).await;
    assert_eq!(
        sync_method(&app, &customer, &declining).await["status"],
        "ACTIVE"
    );
    let (_, maya_card) = maya_card_of(&app, &declining).await;
    paid_with(
        &app,
        "maya-pay-d",
        one_click("maya-order-d", &declining),
        &maya_card,
        "DECLINED",
    )
    .await;

    let token = payment_token(&app, TEST_CARD_VERIFICATION_FAILS).await;
    let (saved, page) = saved_awaiting(&app, &customer, "maya-save-f", &token).await;
    assert_eq!(saved["is_default"], false);
    let failing = saved["id"].as_str().expect("id").to_owned();
    let (maya_customer, maya_card) = maya_card_of(&app, &failing).await;
    customer_action(&app, format!("{page}/fail")).await;
    let synced = sync_method(&app, &customer, &failing).await;
    assert_eq!(synced["status"], "VERIFICATION_FAILED", "{synced}");
    assert!(synced["next_action"].is_null(), "{synced}");
    // Gone everywhere: the list, the vault, Maya.
    let listed = methods_when(&app, &customer, 1).await;
    assert_eq!(listed[0]["id"], declining.as_str());
    assert_eq!(customers::source_of(&app, &failing).await, None);
    let (status, body) = at_maya(
        &app,
        &format!("/payments/v1/customers/{maya_customer}/cards/{maya_card}"),
    )
    .await;
    assert_eq!(status, 404, "{body}");
    let response = app
        .post(
            "/v1/payments",
            &app.checkout_key,
            Some("maya-pay-f"),
            &one_click("maya-order-f", &failing),
        )
        .await;
    let (status, problem) = json_of(response).await;
    assert_eq!(status, 422, "{problem}");
}
