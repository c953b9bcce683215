//! Saved PayU cards end to end: the checkout tokenizes a test card at the PayU emulator
//! (`CREATE_TOKEN`, with payledger's customer id as PayU's `payerId`; the card number goes
//! only there), payledger saves the token through its API (checked with `GET_TOKENS`),
//! lists it masked, pays with it in one click in COP, each payment settled by PayU's signed
//! confirmation, and removes it (`REMOVE_TOKEN`), after which PayU no longer charges it.

use connectors::payu::{PayuConfig, PayuProvider};
use connectors::{CallOutcome, PaymentProvider};
use e2e::customers::{create_customer, methods_when, remove_method, save_method, set_default};
use e2e::independent::{hex, hmac_sha256};
use e2e::support::{id_of, json_of};
use e2e::TestApp;
use secrecy::ExposeSecret;
use serde_json::{json, Value};

use super::common::{delivery_where, emulator_root, start, COLOMBIA};

/// Card numbers PayU's docs use for tests (Luhn-valid); they go to the emulator only.
const VISA_NUMBER: &str = "4037997623271984";
const MASTERCARD_NUMBER: &str = "5424000000000015";

fn payu_config() -> PayuConfig {
    PayuConfig::from_env()
}

fn merchant() -> Value {
    let config = payu_config();
    json!({"apiKey": config.api_key.expose_secret(), "apiLogin": config.api_login})
}

/// One command to the emulator's payments API, as a checkout or payledger would send it.
async fn payu_command(app: &TestApp, command: &str, fields: Value) -> Value {
    let mut body = json!({"language": "es", "command": command, "merchant": merchant()});
    if let (Some(body), Some(fields)) = (body.as_object_mut(), fields.as_object()) {
        body.extend(fields.clone());
    }
    let response = app
        .http
        .post(format!(
            "{}/payments-api/4.0/service.cgi",
            emulator_root(app, "payu")
        ))
        .header("Accept", "application/json")
        .json(&body)
        .send()
        .await
        .expect("PayU emulator reached");
    let (status, answer) = json_of(response).await;
    assert_eq!(status, 200, "{command}: {answer}");
    answer
}

/// Tokenizes a card at PayU as the merchant's checkout does; returns its `creditCardTokenId`.
async fn tokenize(app: &TestApp, payer: &str, name: &str, number: &str, franchise: &str) -> String {
    let answer = payu_command(
        app,
        "CREATE_TOKEN",
        json!({"creditCardToken": {
            "payerId": payer, "name": name, "identificationNumber": "32144457",
            "paymentMethod": franchise, "number": number, "expirationDate": "2031/01"
        }}),
    )
    .await;
    assert_eq!(answer["code"], "SUCCESS", "{answer}");
    answer["creditCardToken"]["creditCardTokenId"]
        .as_str()
        .expect("token id")
        .to_owned()
}

/// The tokens PayU holds under `id`, as `GET_TOKENS` lists them.
async fn tokens_held(app: &TestApp, id: &str) -> Vec<Value> {
    let answer = payu_command(
        app,
        "GET_TOKENS",
        json!({"creditCardTokenInformation": {"creditCardTokenId": id}}),
    )
    .await;
    assert_eq!(answer["code"], "SUCCESS", "{answer}");
    answer["creditCardTokenList"]
        .as_array()
        .expect("token list")
        .clone()
}

/// A card charge sent straight to PayU with `token` (a stale copy of a saved source would
/// be used so), signed as PayU wants; returns PayU's answer.
async fn charge_directly(app: &TestApp, reference: &str, token: &str, franchise: &str) -> Value {
    let config = payu_config();
    let message = format!(
        "{}~{}~{reference}~50000~COP",
        config.api_key.expose_secret(),
        config.merchant_id
    );
    let signature = hex(&hmac_sha256(
        config.signature_secret.expose_secret().as_bytes(),
        message.as_bytes(),
    ));
    payu_command(
        app,
        "SUBMIT_TRANSACTION",
        json!({"transaction": {
            "order": {
                "accountId": config.account_id, "referenceCode": reference,
                "description": "stale token", "language": "es", "signature": signature,
                "additionalValues": {"TX_VALUE": {"value": 50000, "currency": "COP"}}
            },
            "type": "AUTHORIZATION_AND_CAPTURE", "paymentMethod": franchise,
            "paymentCountry": "CO", "creditCardTokenId": token,
            "extraParameters": {"INSTALLMENTS_NUMBER": 1}
        }, "test": false}),
    )
    .await
}

async fn save(app: &TestApp, customer: &str, key: &str, token: &str) -> (u16, Value) {
    let method = json!({"type": "CARD", "token": token, "provider": "payu"});
    save_method(app, customer, key, &method).await
}

async fn saved(app: &TestApp, customer: &str, key: &str, token: &str) -> Value {
    let (status, body) = save(app, customer, key, token).await;
    assert_eq!(status, 201, "{body}");
    let bare = token.rsplit(':').next().unwrap_or(token);
    assert!(!body.to_string().contains(bare), "the token leaked: {body}");
    body
}

/// A payment made in one click (with `how`), left PENDING by PayU's review and APPROVED by
/// its confirmation; returns the franchise PayU charged.
async fn paid_by_confirmation(app: &TestApp, key: &str, how: Value) -> String {
    let mut body =
        json!({"amount": "64000.00", "currency": "COP", "reference": format!("order-{key}")});
    if let (Some(body), Some(how)) = (body.as_object_mut(), how.as_object()) {
        body.extend(how.clone());
    }
    let created = app.create_payment(key, &body).await;
    assert_eq!(created["provider"], "payu", "{created}");
    assert_eq!(created["status"], "PENDING", "{created}");
    assert_eq!(created["payment_method"]["type"], "CARD", "{created}");
    let id = id_of(&created);
    let about = format!("reference_sale={id}");
    delivery_where(app, "payu", "recorded", |payload| {
        String::from_utf8_lossy(payload).contains(&about)
    })
    .await;
    let approved = app.wait_for_status(&id, "APPROVED").await;
    assert_eq!(approved["captured_amount"], "64000.00", "{approved}");
    let reference = approved["provider_reference"].as_str().expect("reference");
    let order_id: u64 = reference
        .split_once(':')
        .and_then(|(order, _)| order.parse().ok())
        .expect("order:transaction");
    let order = payu_order(app, order_id).await;
    assert_eq!(order["referenceCode"], id.as_str(), "{order}");
    order["transactions"][0]["paymentMethod"]
        .as_str()
        .expect("franchise")
        .to_owned()
}

async fn payu_order(app: &TestApp, order_id: u64) -> Value {
    let response = app
        .http
        .post(format!(
            "{}/reports-api/4.0/service.cgi",
            emulator_root(app, "payu")
        ))
        .header("Accept", "application/json")
        .json(
            &json!({"language": "es", "command": "ORDER_DETAIL", "merchant": merchant(),
                      "details": {"orderId": order_id}, "test": false}),
        )
        .send()
        .await
        .expect("PayU reports reached");
    let (status, body) = json_of(response).await;
    assert_eq!(status, 200, "{body}");
    body["result"]["payload"].clone()
}

#[tokio::test]
async fn a_payu_card_token_is_saved_masked_made_default_and_paid_in_one_click() {
    let app = start(COLOMBIA).await;
    let customer = create_customer(&app, "payu-cust-1", Some("ana@example.com")).await;
    // Cards "in review" (PayU's sandbox name PENDING): their outcome comes by confirmation.
    let visa = tokenize(&app, &customer, "PENDING", VISA_NUMBER, "VISA").await;
    let mastercard = tokenize(&app, &customer, "PENDING", MASTERCARD_NUMBER, "MASTERCARD").await;

    let first = saved(&app, &customer, "save-visa", &visa).await;
    assert_eq!(first["type"], "CARD", "{first}");
    assert_eq!(first["provider"], "payu", "{first}");
    assert_eq!(first["brand"], "VISA", "{first}");
    assert_eq!(first["last_four"], "1984", "{first}");
    assert_eq!(first["is_default"], true, "the first method is the default");
    let visa_id = first["id"].as_str().expect("method id").to_owned();
    // Saving again with the same key is the same method.
    let again = saved(&app, &customer, "save-visa", &visa).await;
    assert_eq!(again["id"], visa_id.as_str());
    // The checkout may name the franchise; PayU's record of the token decides it anyway.
    let second = saved(
        &app,
        &customer,
        "save-mc",
        &format!("MASTERCARD:{mastercard}"),
    )
    .await;
    assert_eq!(second["brand"], "MASTERCARD", "{second}");
    assert_eq!(second["last_four"], "0015", "{second}");
    assert_eq!(second["is_default"], false, "{second}");
    let mastercard_id = second["id"].as_str().expect("method id").to_owned();

    let listed = methods_when(&app, &customer, 2).await;
    let listed_text = serde_json::to_string(&listed).unwrap();
    for secret in [visa.as_str(), mastercard.as_str(), "403799", "542400"] {
        assert!(
            !listed_text.contains(secret),
            "{secret} leaked: {listed_text}"
        );
    }
    let mut brands: Vec<&str> = listed.iter().filter_map(|m| m["brand"].as_str()).collect();
    brands.sort_unstable();
    assert_eq!(brands, ["MASTERCARD", "VISA"]);

    assert_eq!(set_default(&app, &customer, &mastercard_id).await, 200);

    // Only the customer: their default, the Mastercard, is what PayU charges.
    let by_default =
        paid_by_confirmation(&app, "payu-one-click", json!({"customer": customer})).await;
    assert_eq!(by_default, "MASTERCARD");
    // A saved method named: the Visa.
    let named = paid_by_confirmation(
        &app,
        "payu-named",
        json!({"payment_method": {"type": "SAVED", "id": visa_id}}),
    )
    .await;
    assert_eq!(named, "VISA");

    // No token in any event: the customer's stream and the payments' trails.
    let stored: Vec<String> = sqlx::query_scalar(
        "SELECT payload::text FROM events WHERE aggregate_type = 'Customer' AND aggregate_id = $1",
    )
    .bind(&customer)
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert!(!stored.is_empty());
    let payments: Vec<String> =
        sqlx::query_scalar("SELECT payload::text FROM events WHERE aggregate_type <> 'Customer'")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    for payload in stored.iter().chain(&payments) {
        assert!(
            !payload.contains(&visa) && !payload.contains(&mastercard),
            "a token in an event: {payload}"
        );
    }
}

#[tokio::test]
async fn a_removed_payu_card_is_detached_at_payu_and_no_longer_charged() {
    let app = start(COLOMBIA).await;
    let customer = create_customer(&app, "payu-cust-2", Some("ana@example.com")).await;
    let token = tokenize(&app, &customer, "APPROVED", VISA_NUMBER, "VISA").await;
    let method = saved(&app, &customer, "save-1", &token).await;
    let method = method["id"].as_str().expect("method id").to_owned();
    // The same direct charge is taken while the card is saved ...
    let before = charge_directly(&app, "stale-before", &token, "VISA").await;
    assert_eq!(before["code"], "SUCCESS", "{before}");
    assert_eq!(
        before["transactionResponse"]["state"], "APPROVED",
        "{before}"
    );

    assert_eq!(remove_method(&app, &customer, &method).await, 204);
    methods_when(&app, &customer, 0).await;
    assert!(
        tokens_held(&app, &token).await.is_empty(),
        "PayU still holds the token"
    );
    // ... and refused once it is removed.
    let after = charge_directly(&app, "stale-after", &token, "VISA").await;
    assert_eq!(after["code"], "ERROR", "{after}");
    assert!(after["transactionResponse"].is_null(), "{after}");
    // A one-click payment with the removed method is refused by payledger itself.
    let refused = app
        .post(
            "/v1/payments",
            &app.checkout_key,
            Some("pay-removed"),
            &json!({"amount": "50000.00", "currency": "COP", "reference": "order-removed",
                    "payment_method": {"type": "SAVED", "id": method}}),
        )
        .await;
    assert_eq!(refused.status(), 422);
}

#[tokio::test]
async fn removing_a_payu_token_payu_no_longer_holds_succeeds() {
    let app = start(COLOMBIA).await;
    let customer = create_customer(&app, "payu-cust-3", Some("ana@example.com")).await;
    let token = tokenize(&app, &customer, "APPROVED", VISA_NUMBER, "VISA").await;
    let provider = PayuProvider::new(PayuConfig {
        base_url: emulator_root(&app, "payu"),
        ..payu_config()
    })
    .expect("PayU adapter");
    let source = format!("VISA:{token}@{customer}");
    provider.remove_method(&source).await.expect("removed");
    assert!(tokens_held(&app, &token).await.is_empty());
    // Detaching what is already detached succeeds, as the trait asks.
    provider
        .remove_method(&source)
        .await
        .expect("removed again");
    // But a token PayU still holds for the payer is not removed by a stranger's name.
    let other = tokenize(&app, &customer, "APPROVED", VISA_NUMBER, "VISA").await;
    let wrong_payer = provider
        .remove_method(&format!("VISA:{other}@someone-else"))
        .await
        .expect_err("not that payer's token");
    assert_eq!(wrong_payer.outcome(), CallOutcome::Refused);
    assert!(
        !wrong_payer.detail.contains(&other),
        "{}",
        wrong_payer.detail
    );
    assert_eq!(tokens_held(&app, &other).await.len(), 1);
}

#[tokio::test]
async fn a_payu_token_made_for_another_payer_or_unknown_is_not_saved() {
    let app = start(COLOMBIA).await;
    let customer = create_customer(&app, "payu-cust-4", Some("ana@example.com")).await;
    let theirs = tokenize(&app, "another-payer", "APPROVED", VISA_NUMBER, "VISA").await;
    for (key, token) in [
        ("k-theirs", theirs.as_str()),
        ("k-unknown", "8d3c5a2e-0000-4000-8000-000000000000"),
    ] {
        let (status, body) = save(&app, &customer, key, token).await;
        assert_eq!(status, 422, "{body}");
        assert_eq!(
            body["type"].as_str().and_then(|t| t.rsplit('/').next()),
            Some("provider-refused"),
            "{body}"
        );
        assert!(!body.to_string().contains(token), "{body}");
    }
    // Nothing was saved: the customer's stream holds only its creation, the vault nothing.
    let stored: Vec<String> = sqlx::query_scalar(
        "SELECT event_type FROM events WHERE aggregate_type = 'Customer' AND aggregate_id = $1",
    )
    .bind(&customer)
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(stored.len(), 1, "{stored:?}");
    let kept: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM saved_method_sources WHERE customer_id = $1::uuid",
    )
    .bind(&customer)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(kept, 0);
}
