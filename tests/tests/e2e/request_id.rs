//! `X-Request-Id`: taken from the caller when well-formed, generated otherwise, answered in
//! the same header, written in the request's log lines and in the metadata of the events the
//! request appended: one checkout followed from the access log to its events.

use std::path::PathBuf;

use api::auth::{create_key, Role};
use e2e::process::Served;
use serde_json::Value;
use uuid::Uuid;

fn answered_id(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .expect("an X-Request-Id on every answer")
        .to_owned()
}

/// The log lines (JSON) whose span carries `request_id`.
fn lines_of(log: &PathBuf, request_id: &str) -> Vec<Value> {
    std::fs::read_to_string(log)
        .expect("log")
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| line["span"]["request_id"] == request_id)
        .collect()
}

#[tokio::test]
async fn one_checkout_is_followed_from_its_request_to_its_log_and_events() {
    let log = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("request_id.log");
    let server = Served::start(Some(&log)).await;
    let merchant = domain::MerchantId::parse(e2e::MERCHANT).expect("merchant");
    let key = create_key(&server.pool, Role::Checkout, Some(&merchant))
        .await
        .expect("checkout key");

    let chosen = "checkout-7f3a.retry:1";
    let response = server
        .http
        .post(format!("{}/v1/payments", server.base))
        .bearer_auth(&key)
        .header("Idempotency-Key", "rid-1")
        .header("X-Request-Id", chosen)
        .json(&e2e::payment_body(
            "12.00",
            "USD",
            "rid-1",
            "tok_sandbox_approved",
            "automatic",
        ))
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status(), 201);
    assert_eq!(answered_id(&response), chosen);
    let created: Value = response.json().await.expect("json");
    let id = created["id"].as_str().expect("id").to_owned();

    // The events this request appended name it; the approval, appended later for the
    // provider's webhook, names that webhook's own request.
    let stored: Vec<(String, Value)> = sqlx::query_as(
        "SELECT event_type, metadata FROM events WHERE aggregate_id = $1 ORDER BY sequence",
    )
    .bind(&id)
    .fetch_all(&server.pool)
    .await
    .expect("events");
    let by_request: Vec<&str> = stored
        .iter()
        .filter(|(_, metadata)| metadata["request_id"] == chosen)
        .map(|(event_type, _)| event_type.as_str())
        .collect();
    assert!(by_request.contains(&"PaymentInitiated"), "{stored:?}");
    assert!(
        stored.iter().all(|(_, m)| m["request_id"].is_string()),
        "every event of this payment came from a request: {stored:?}"
    );

    // The access log line of that request, in its span.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let lines = lines_of(&log, chosen);
        if lines
            .iter()
            .any(|l| l["fields"]["status"] == 201 && l["span"]["path"] == "/v1/payments")
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no access line for {chosen}: {lines:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    // Ids a caller may not choose are replaced by a fresh UUID; none given, one is made.
    for refused in ["has space", "<script>", &"x".repeat(65)] {
        let response = server
            .http
            .get(format!("{}/v1/payments?limit=1", server.base))
            .bearer_auth(&key)
            .header("X-Request-Id", refused)
            .send()
            .await
            .expect("answers");
        assert_eq!(response.status(), 200);
        let answered = answered_id(&response);
        assert!(
            Uuid::parse_str(&answered).is_ok(),
            "{refused:?} -> {answered}"
        );
    }
    let first = answered_id(&server.get("/v1/payments?limit=1", Some(&key)).await);
    let again = answered_id(&server.get("/v1/payments?limit=1", Some(&key)).await);
    assert!(Uuid::parse_str(&first).is_ok());
    assert_ne!(first, again, "each request its own id");
    // Errors carry one too.
    let refused = server.get("/v1/payments/not-an-id", Some(&key)).await;
    assert!(refused.status().is_client_error());
    assert!(Uuid::parse_str(&answered_id(&refused)).is_ok());
}
