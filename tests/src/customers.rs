//! Customers and their saved methods through payledger's HTTP API, as every provider's
//! saved-method tests use them.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::json_of;
use crate::TestApp;

/// Creates the merchant's customer `reference` (with `email` if given); its id.
pub async fn create_customer(app: &TestApp, reference: &str, email: Option<&str>) -> String {
    let mut body = json!({ "reference": reference });
    if let Some(email) = email {
        body["email"] = json!(email);
    }
    let response = app
        .post("/v1/customers", &app.checkout_key, None, &body)
        .await;
    let (status, body) = json_of(response).await;
    assert_eq!(status, 201, "{body}");
    body["id"].as_str().expect("customer id").to_owned()
}

/// `POST /v1/customers/{id}/payment-methods` with `Idempotency-Key: key`: (status, body).
pub async fn save_method(app: &TestApp, customer: &str, key: &str, method: &Value) -> (u16, Value) {
    let response = app
        .post(
            &format!("/v1/customers/{customer}/payment-methods"),
            &app.checkout_key,
            Some(key),
            method,
        )
        .await;
    json_of(response).await
}

/// The customer's saved methods once the read model lists `count` of them (at most 10 s).
pub async fn methods_when(app: &TestApp, customer: &str, count: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let response = app
            .get(
                &format!("/v1/customers/{customer}/payment-methods"),
                &app.checkout_key,
            )
            .await;
        let (status, body) = json_of(response).await;
        if status == 200 && body["data"].as_array().is_some_and(|d| d.len() == count) {
            return body["data"].as_array().cloned().unwrap_or_default();
        }
        assert!(
            Instant::now() < deadline,
            "never listed {count} methods: {body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `PUT /v1/customers/{id}/default-payment-method`: its status.
pub async fn set_default(app: &TestApp, customer: &str, method: &str) -> u16 {
    app.http
        .put(format!(
            "{}/v1/customers/{customer}/default-payment-method",
            app.address
        ))
        .bearer_auth(&app.checkout_key)
        .json(&json!({ "payment_method_id": method }))
        .send()
        .await
        .expect("put sent")
        .status()
        .as_u16()
}

/// `DELETE /v1/customers/{id}/payment-methods/{method}`: its status.
pub async fn remove_method(app: &TestApp, customer: &str, method: &str) -> u16 {
    app.http
        .delete(format!(
            "{}/v1/customers/{customer}/payment-methods/{method}",
            app.address
        ))
        .bearer_auth(&app.checkout_key)
        .send()
        .await
        .expect("delete sent")
        .status()
        .as_u16()
}

/// The provider's source id the vault keeps for a saved method.
pub async fn source_of(app: &TestApp, method: &str) -> Option<String> {
    sqlx::query_scalar(
        "SELECT source_id FROM saved_method_sources WHERE payment_method_id = $1::uuid",
    )
    .bind(method)
    .fetch_optional(&app.pool)
    .await
    .expect("read the vault")
}
