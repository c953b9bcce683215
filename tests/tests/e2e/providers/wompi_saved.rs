//! Saved Wompi payment sources end to end: payledger's HTTP API, its Wompi adapter making
//! payment sources at the in-process emulator (a card token, an approved Nequi subscription),
//! one-click payments decided by the source and reported by Wompi's signed webhook, and a
//! removed method's source voided at Wompi so it charges no more.

use connectors::wompi::WompiConfig;
use e2e::customers::{
    self, create_customer, methods_when, remove_method, save_method, set_default,
};
use e2e::independent::{hex, sha256};
use e2e::support::{id_of, json_of, reference_of};
use e2e::TestApp;
use secrecy::ExposeSecret;
use serde_json::{json, Value};

use super::common::{delivery_where, emulator_read, start, COLOMBIA};

const APPROVED_CARD: &str = "4242424242424242";
const DECLINED_CARD: &str = "4111111111111111";
const APPROVED_NEQUI: &str = "3991111111";
const DECLINED_NEQUI: &str = "3992222222";

/// A card token from the emulator's tokenization, with the public key, as a checkout gets it
/// (the card number goes to Wompi only, never to payledger).
async fn card_token(app: &TestApp, number: &str) -> String {
    let response = app
        .http
        .post(format!("{}/tokens/cards", app.emulators["wompi"]))
        .bearer_auth(WompiConfig::from_env().public_key)
        .json(&json!({
            "number": number, "cvc": "123", "exp_month": "08", "exp_year": "35",
            "card_holder": "Pedro Pérez",
        }))
        .send()
        .await
        .expect("tokenize");
    let (status, body) = json_of(response).await;
    assert_eq!(status, 201, "{body}");
    body["data"]["id"].as_str().expect("token").to_owned()
}

async fn save_ok(app: &TestApp, customer: &str, key: &str, method: Value) -> Value {
    let (status, body) = save_method(app, customer, key, &method).await;
    assert_eq!(status, 201, "{body}");
    body
}

fn card(token: &str) -> Value {
    json!({"type": "CARD", "token": token, "provider": "wompi"})
}

fn nequi(phone: &str) -> Value {
    json!({"type": "NEQUI", "phone_number": phone, "provider": "wompi"})
}

/// The source id the vault keeps for a saved method (what Wompi charges).
async fn source_of(app: &TestApp, method: &str) -> String {
    customers::source_of(app, method)
        .await
        .expect("the vault keeps the source")
}

/// Pays `body`, waits for `status`, and checks Wompi charged `source` and reported the
/// outcome by a signed webhook payledger recorded.
async fn paid_from_source(app: &TestApp, key: &str, body: Value, source: &str, status: &str) {
    let created = app.create_payment(key, &body).await;
    assert_eq!(created["provider"], "wompi", "{created}");
    let id = id_of(&created);
    app.wait_for_status(&id, status).await;
    let transaction = reference_of(&created);
    let at_wompi = emulator_read(
        app.http
            .get(format!(
                "{}/transactions/{transaction}",
                app.emulators["wompi"]
            ))
            .bearer_auth(WompiConfig::from_env().private_key.expose_secret()),
    )
    .await;
    assert_eq!(
        at_wompi["data"]["payment_source_id"].to_string(),
        source,
        "{at_wompi}"
    );
    assert_eq!(at_wompi["data"]["status"], status, "{at_wompi}");
    delivery_where(app, "wompi", "recorded", |payload| {
        serde_json::from_slice::<Value>(payload).is_ok_and(|v| {
            v["data"]["transaction"]["id"].as_str() == Some(transaction.as_str())
                && v["data"]["transaction"]["status"] == status
        })
    })
    .await;
}

/// A charge of `source` sent straight to the emulator with the merchant's keys, as a stale
/// copy of the source would be used: (status, body).
/// The payment source as Wompi shows it to the merchant's private key.
async fn source_at_wompi(app: &TestApp, source: &str) -> Value {
    emulator_read(
        app.http
            .get(format!(
                "{}/payment_sources/{source}",
                app.emulators["wompi"]
            ))
            .bearer_auth(WompiConfig::from_env().private_key.expose_secret()),
    )
    .await
}

async fn charge_source_directly(app: &TestApp, reference: &str, source: &str) -> (u16, Value) {
    let config = WompiConfig::from_env();
    let signature = hex(&sha256(
        format!(
            "{reference}5200000COP{}",
            config.integrity_secret.expose_secret()
        )
        .as_bytes(),
    ));
    let charge = app
        .http
        .post(format!("{}/transactions", app.emulators["wompi"]))
        .bearer_auth(config.private_key.expose_secret())
        .json(&json!({
            "amount_in_cents": 5_200_000, "currency": "COP", "reference": reference,
            "customer_email": "cam@example.com", "signature": signature,
            "payment_source_id": source.parse::<i64>().expect("integer source id"),
            "payment_method": {"installments": 1},
        }))
        .send()
        .await
        .expect("charge");
    json_of(charge).await
}

fn one_click(reference: &str, customer: &str) -> Value {
    json!({"amount": "52000.00", "currency": "COP", "reference": reference, "customer": customer})
}

fn saved_method(reference: &str, method: &str) -> Value {
    json!({"amount": "52000.00", "currency": "COP", "reference": reference,
           "payment_method": {"type": "SAVED", "id": method}})
}

#[tokio::test]
async fn wompi_card_and_nequi_sources_are_saved_masked_and_paid_in_one_click() {
    let app = start(COLOMBIA).await;
    let customer = create_customer(&app, "w-cust-1", Some("ana@example.com")).await;
    let token = card_token(&app, APPROVED_CARD).await;

    let saved_card = save_ok(&app, &customer, "w-save-card", card(&token)).await;
    assert_eq!(saved_card["provider"], "wompi");
    assert_eq!(saved_card["type"], "CARD");
    assert_eq!(saved_card["brand"], "VISA");
    assert_eq!(saved_card["last_four"], "4242");
    assert_eq!(saved_card["exp_month"], 8);
    assert_eq!(saved_card["exp_year"], 2035);
    assert_eq!(saved_card["is_default"], true);
    let card_id = saved_card["id"].as_str().expect("id").to_owned();
    let retried = save_ok(&app, &customer, "w-save-card", card(&token)).await;
    assert_eq!(
        retried["id"],
        card_id.as_str(),
        "a retry is the same method"
    );

    // Saved once the customer accepts the subscription in the Nequi app (the emulator's delay).
    let saved_nequi = save_ok(&app, &customer, "w-save-nequi", nequi(APPROVED_NEQUI)).await;
    assert_eq!(saved_nequi["type"], "NEQUI");
    assert_eq!(saved_nequi["phone_masked"], "******1111");
    assert_eq!(saved_nequi["is_default"], false);
    let nequi_id = saved_nequi["id"].as_str().expect("id").to_owned();

    let card_source = source_of(&app, &card_id).await;
    let nequi_source = source_of(&app, &nequi_id).await;
    assert_ne!(card_source, nequi_source);
    // The source is Wompi's, for this customer, usable.
    let at_wompi = emulator_read(
        app.http
            .get(format!(
                "{}/payment_sources/{card_source}",
                app.emulators["wompi"]
            ))
            .bearer_auth(WompiConfig::from_env().private_key.expose_secret()),
    )
    .await;
    assert_eq!(at_wompi["data"]["status"], "AVAILABLE", "{at_wompi}");
    assert_eq!(at_wompi["data"]["customer_email"], "ana@example.com");

    // Listed masked: no token, source id or phone number, in the answer or the stream.
    let listed = methods_when(&app, &customer, 2).await;
    let text = serde_json::to_string(&listed).expect("json");
    for secret in [token.as_str(), "tok_test", APPROVED_NEQUI, "nequi_test"] {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }
    for shown in &listed {
        let fields = shown.as_object().expect("object");
        assert!(
            fields
                .keys()
                .all(|k| !k.contains("source") && !k.contains("token")),
            "a source or token field is shown: {shown}"
        );
    }
    let stored: Vec<String> = sqlx::query_scalar(
        "SELECT payload::text FROM events WHERE aggregate_type = 'Customer' AND aggregate_id = $1",
    )
    .bind(&customer)
    .fetch_all(&app.pool)
    .await
    .expect("events");
    assert!(!stored.is_empty());
    for payload in &stored {
        for secret in ["tok_test", APPROVED_NEQUI, "nequi_test", "ana@"] {
            assert!(!payload.contains(secret), "{secret} in an event: {payload}");
        }
        assert!(
            !payload.contains("source_id"),
            "a source id in an event: {payload}"
        );
    }

    // With only the customer: the default, the card.
    let body = one_click("w-order-1", &customer);
    paid_from_source(&app, "w-pay-1", body, &card_source, "APPROVED").await;

    // The Nequi account as the default, then the card named explicitly.
    assert_eq!(set_default(&app, &customer, &nequi_id).await, 200);
    let body = one_click("w-order-2", &customer);
    paid_from_source(&app, "w-pay-2", body, &nequi_source, "APPROVED").await;
    let body = saved_method("w-order-3", &card_id);
    paid_from_source(&app, "w-pay-3", body, &card_source, "APPROVED").await;
}

#[tokio::test]
async fn a_saved_card_is_decided_by_its_card_and_a_declined_nequi_subscription_saves_nothing() {
    let app = start(COLOMBIA).await;
    let customer = create_customer(&app, "w-cust-2", Some("bea@example.com")).await;
    let token = card_token(&app, DECLINED_CARD).await;
    let saved = save_ok(&app, &customer, "w-save-declining", card(&token)).await;
    assert_eq!(saved["last_four"], "1111");
    let method = saved["id"].as_str().expect("id").to_owned();
    let source = source_of(&app, &method).await;
    let body = saved_method("w-order-d", &method);
    paid_from_source(&app, "w-pay-d", body, &source, "DECLINED").await;

    // The customer declines the subscription in the Nequi app: refused, nothing saved.
    let (status, problem) =
        save_method(&app, &customer, "w-save-nq-ko", &nequi(DECLINED_NEQUI)).await;
    assert!((400..500).contains(&status), "{status} {problem}");
    assert!(!problem.to_string().contains(DECLINED_NEQUI), "{problem}");
    assert_eq!(
        methods_when(&app, &customer, 1).await[0]["id"],
        method.as_str()
    );
}

#[tokio::test]
async fn wompi_refuses_to_save_for_a_customer_without_an_email() {
    let app = start(COLOMBIA).await;
    let customer = create_customer(&app, "w-cust-3", None).await;
    let token = card_token(&app, APPROVED_CARD).await;
    let before = app.event_count().await;
    let (status, problem) = save_method(&app, &customer, "w-save-no-email", &card(&token)).await;
    assert!((400..500).contains(&status), "{status} {problem}");
    assert!(problem.to_string().contains("email"), "{problem}");
    assert_eq!(app.event_count().await, before, "nothing appended");
}

#[tokio::test]
async fn wompi_no_longer_charges_a_removed_source() {
    let app = start(COLOMBIA).await;
    let customer = create_customer(&app, "w-cust-4", Some("cam@example.com")).await;
    let token = card_token(&app, APPROVED_CARD).await;
    let kept = save_ok(&app, &customer, "w-keep", card(&token)).await;
    let token = card_token(&app, APPROVED_CARD).await;
    let gone = save_ok(&app, &customer, "w-gone", card(&token)).await;
    let gone_id = gone["id"].as_str().expect("id").to_owned();
    let source = source_of(&app, &gone_id).await;

    assert_eq!(remove_method(&app, &customer, &gone_id).await, 204);
    let listed = methods_when(&app, &customer, 1).await;
    assert_eq!(listed[0]["id"], kept["id"]);

    // Wompi shows the source voided, and a charge of it (a stale copy, sent straight to
    // Wompi with the merchant's keys) is refused on `payment_source_id`.
    let at_wompi = source_at_wompi(&app, &source).await;
    assert_eq!(at_wompi["data"]["status"], "VOIDED", "{at_wompi}");
    let (status, body) = charge_source_directly(&app, "stale-charge-1", &source).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["type"], "INPUT_VALIDATION_ERROR", "{body}");
    assert!(
        body["error"]["messages"]["payment_source_id"].is_array(),
        "{body}"
    );

    // The same charge of the kept source goes through: the refusal is the void's doing.
    let kept_source = source_of(&app, kept["id"].as_str().expect("id")).await;
    let (status, body) = charge_source_directly(&app, "fresh-charge-1", &kept_source).await;
    assert_eq!(status, 201, "{body}");

    // A Nequi account removed is voided at Wompi just the same.
    let nequi_gone = save_ok(&app, &customer, "w-gone-nequi", nequi(APPROVED_NEQUI)).await;
    let nequi_id = nequi_gone["id"].as_str().expect("id").to_owned();
    let nequi_source = source_of(&app, &nequi_id).await;
    assert_eq!(remove_method(&app, &customer, &nequi_id).await, 204);
    let at_wompi = source_at_wompi(&app, &nequi_source).await;
    assert_eq!(at_wompi["data"]["status"], "VOIDED", "{at_wompi}");
    let (status, body) = charge_source_directly(&app, "stale-charge-2", &nequi_source).await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"]["messages"]["payment_source_id"].is_array(),
        "{body}"
    );
    assert_eq!(methods_when(&app, &customer, 1).await[0]["id"], kept["id"]);
}
