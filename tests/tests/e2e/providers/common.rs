//! What the provider tests share: an app that routes to one country's providers, the requests
//! that pay with them, the fees they imply, the emulators (their address, reads with the
//! adapter's credentials, customer actions, fault switches), payledger's webhook log, posting
//! a webhook as a provider would, and a sync.

use std::time::{Duration, Instant};

use api::config::{ServeRole, Settings};
use e2e::support::{self, json_of, reference_of};
use e2e::{spawn_app_configured, TestApp};
use reqwest::header::CONTENT_TYPE;
use serde_json::{json, Value};

pub const PAYMENTS: &str = "/v1/payments";

/// Wompi and PayU, in COP.
pub const COLOMBIA: [&str; 2] = ["wompi", "payu"];
/// Maya and GCash, in PHP.
pub const PHILIPPINES: [&str; 2] = ["maya", "gcash"];

/// The currency a provider's payments are made in here.
pub fn currency_of(provider: &str) -> &'static str {
    match provider {
        "wompi" | "payu" => "COP",
        "maya" | "gcash" => "PHP",
        other => panic!("no currency for provider `{other}`"),
    }
}

pub async fn start(providers: [&str; 2]) -> TestApp {
    start_with(providers, |_| {}).await
}

/// A fresh app that routes to `providers` only, its settings adjusted by `configure` first.
pub async fn start_with(providers: [&str; 2], configure: impl FnOnce(&mut Settings)) -> TestApp {
    spawn_app_configured(ServeRole::All, |s| {
        s.routing.providers = providers.iter().map(|p| (*p).to_owned()).collect();
        configure(s);
    })
    .await
}

/// `http://addr` of `provider`'s in-process emulator (Wompi's base URL ends in its API's
/// `/v1`, which the emulator's own `/_sandbox` routes are beside).
pub fn emulator_root(app: &TestApp, provider: &str) -> String {
    app.emulators[provider]
        .trim_end_matches('/')
        .trim_end_matches("/v1")
        .to_owned()
}

/// A create request that names `provider` and pays with `method`, in its currency.
pub fn payment_to(provider: &str, amount: &str, reference: &str, method: Value) -> Value {
    json!({
        "amount": amount,
        "currency": currency_of(provider),
        "reference": reference,
        "provider": provider,
        "payment_method": method,
    })
}

pub fn card(token: &str) -> Value {
    json!({"type": "CARD", "token": token})
}

/// PSE through `bank`, for a person with a citizenship card.
pub fn pse(bank: &str) -> Value {
    json!({
        "type": "PSE",
        "financial_institution_code": bank,
        "user_type": 0,
        "user_legal_id_type": "CC",
        "user_legal_id": "1999888777",
    })
}

/// The fee `config/fees.json` implies for (provider, method) in the provider's currency.
pub fn expected_fee(provider: &str, method: &str, amount: &str) -> String {
    support::expected_fee(provider, method, currency_of(provider), amount)
}

/// That fee as the API shows it.
pub fn fee_json(provider: &str, method: &str, amount: &str) -> Value {
    json!({
        "amount": expected_fee(provider, method, amount),
        "currency": currency_of(provider),
    })
}

/// Creates a payment that `provider` leaves PENDING, waiting for the customer: returns
/// (payment JSON, provider reference).
pub async fn pending_at(app: &TestApp, provider: &str, key: &str, body: &Value) -> (Value, String) {
    let created = app.create_payment(key, body).await;
    assert_eq!(created["status"], "PENDING", "{created}");
    assert_eq!(created["provider"], provider, "{created}");
    let reference = reference_of(&created);
    (created, reference)
}

/// Sends a read to an emulator (made with the credentials payledger's adapter uses),
/// asserting `200`; returns the JSON answer.
pub async fn emulator_read(request: reqwest::RequestBuilder) -> Value {
    let response = request.send().await.expect("read the emulator");
    let (status, body) = json_of(response).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// What the customer (or their bank, or a cash desk) does at an emulator: `POST url`,
/// asserting `200`; returns the JSON answer (null when it is not JSON).
pub async fn customer_action(app: &TestApp, url: String) -> Value {
    let response = app.http.post(&url).send().await.expect("customer action");
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    assert_eq!(status, 200, "POST {url}: {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

/// Switches the fault `provider`'s emulator answers creates with (`none` to heal).
pub async fn set_fault(app: &TestApp, provider: &str, fault: &str) {
    let response = app
        .http
        .post(format!("{}/_sandbox/faults", emulator_root(app, provider)))
        .json(&json!({ "create": fault }))
        .send()
        .await
        .expect("fault switch");
    assert_eq!(
        response.status(),
        200,
        "fault `{fault}` at the {provider} emulator"
    );
}

/// `provider`'s webhook deliveries as logged, oldest first, with `column` (a fixed name):
/// (signature_valid, result, peer, column).
async fn logged(
    app: &TestApp,
    provider: &str,
    column: &'static str,
) -> Vec<(bool, String, Option<String>, Vec<u8>)> {
    sqlx::query_as(&format!(
        "SELECT signature_valid, result, peer, {column} FROM webhook_deliveries
          WHERE provider = $1 ORDER BY id"
    ))
    .bind(provider)
    .fetch_all(&app.pool)
    .await
    .expect("read webhook_deliveries")
}

/// `provider`'s webhook deliveries as logged, oldest first:
/// (signature_valid, result, peer, payload).
pub async fn deliveries_with_peer(
    app: &TestApp,
    provider: &str,
) -> Vec<(bool, String, Option<String>, Vec<u8>)> {
    logged(app, provider, "payload").await
}

/// `provider`'s webhook deliveries as logged, oldest first, each with the SHA-256 of the whole
/// body it received (what identifies a body the log kept only the start of):
/// (signature_valid, result, peer, digest).
pub async fn delivery_digests(
    app: &TestApp,
    provider: &str,
) -> Vec<(bool, String, Option<String>, Vec<u8>)> {
    logged(app, provider, "payload_sha256").await
}

/// The digest the log identifies `body` by, computed here independently.
pub fn digest_of(body: &[u8]) -> Vec<u8> {
    e2e::independent::sha256(body).to_vec()
}

/// What the webhook log keeps of a body that did not verify: its first bytes.
pub fn kept_of_unverified(body: &[u8]) -> Vec<u8> {
    body[..body
        .len()
        .min(commands::webhook_deliveries::UNVERIFIED_PREFIX_BYTES)]
        .to_vec()
}

/// `provider`'s webhook deliveries as logged, oldest first: (signature_valid, result, payload).
pub async fn deliveries(app: &TestApp, provider: &str) -> Vec<(bool, String, Vec<u8>)> {
    deliveries_with_peer(app, provider)
        .await
        .into_iter()
        .map(|(valid, result, _, payload)| (valid, result, payload))
        .collect()
}

/// Polls (at most 5 s) until `provider`'s webhook log holds a validly signed delivery with
/// `result` whose payload `about` accepts, and returns that raw payload.
pub async fn delivery_where(
    app: &TestApp,
    provider: &str,
    result: &str,
    about: impl Fn(&[u8]) -> bool,
) -> Vec<u8> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let found = deliveries(app, provider)
            .await
            .into_iter()
            .find(|(valid, r, payload)| *valid && r == result && about(payload));
        if let Some((_, _, payload)) = found {
            return payload;
        }
        assert!(
            Instant::now() < deadline,
            "no `{result}` {provider} delivery for the payment"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// POSTs `body` to payledger's webhook endpoint for `provider` as `content_type`, with the
/// `(header, value)` signature when given.
pub async fn post_webhook(
    app: &TestApp,
    provider: &str,
    content_type: &str,
    body: Vec<u8>,
    signature: Option<(&str, &str)>,
) -> reqwest::Response {
    let mut request = app
        .http
        .post(format!("{}/v1/webhooks/{provider}", app.address))
        .header(CONTENT_TYPE, content_type)
        .body(body);
    if let Some((header, value)) = signature {
        request = request.header(header, value);
    }
    request.send().await.expect("webhook sent")
}

/// `POST /v1/payments/{id}/sync`, asserting `200`; returns the payment as it now is.
pub async fn sync(app: &TestApp, id: &str) -> Value {
    let (status, body) = json_of(
        app.post(
            &format!("{PAYMENTS}/{id}/sync"),
            &app.checkout_key,
            None,
            &json!({}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "sync: {body}");
    body
}
