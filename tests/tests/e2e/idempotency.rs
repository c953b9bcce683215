//! Idempotency over HTTP: retried creates, captures and refunds land on the first result,
//! a reused key with another request is refused, references are unique per merchant, and a
//! redelivered provider webhook appends nothing.

use api::config::{ServeRole, Settings};
use e2e::independent::{sandbox_signature, SANDBOX_SIGNATURE_HEADER};
use e2e::{
    fresh_database, payment_body, spawn_app, spawn_app_configured, spawn_with_settings, TestApp,
};
use reqwest::header::CONTENT_TYPE;
use serde_json::{json, Value};

async fn status_and_json(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    let json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    (status, json)
}

/// Asserts a problem+json answer with `status`; returns its body.
async fn problem(response: reqwest::Response, status: u16, case: &str) -> Value {
    let content_type = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let (actual, body) = status_and_json(response).await;
    assert_eq!(actual, status, "{case}: {body}");
    assert!(
        content_type.starts_with("application/problem+json"),
        "{case}: content type `{content_type}`"
    );
    assert_eq!(
        body["status"].as_u64(),
        Some(u64::from(status)),
        "{case}: {body}"
    );
    for member in ["type", "title", "detail"] {
        assert!(
            body[member].as_str().is_some_and(|s| !s.is_empty()),
            "{case}: `{member}` missing: {body}"
        );
    }
    body
}

fn count(types: &[String], name: &str) -> usize {
    types.iter().filter(|t| *t == name).count()
}

async fn list(app: &TestApp, key: &str) -> Vec<Value> {
    let (status, page) = status_and_json(app.get("/v1/payments", key).await).await;
    assert_eq!(status, 200, "{page}");
    page["data"].as_array().expect("data").clone()
}

#[tokio::test]
async fn same_key_and_body_twice_is_one_payment() {
    let app = spawn_app().await;
    let body = payment_body(
        "129000.00",
        "COP",
        "order-1",
        "tok_sandbox_approved",
        "automatic",
    );

    let first = app
        .post("/v1/payments", &app.checkout_key, Some("k-1"), &body)
        .await;
    let (first_status, first) = status_and_json(first).await;
    assert_eq!(first_status, 201, "{first}");
    // Straight away, probably before the provider's webhook: the retry of a click.
    let second = app
        .post("/v1/payments", &app.checkout_key, Some("k-1"), &body)
        .await;
    let (second_status, second) = status_and_json(second).await;
    assert_eq!(second_status, 200, "{second}");
    assert_eq!(second["id"], first["id"]);
    assert_eq!(second["amount"], "129000.00");
    assert_eq!(second["reference"], "order-1");

    let id = first["id"].as_str().unwrap().to_owned();
    app.wait_for_status(&id, "APPROVED").await;

    // And again once the outcome is known: the same payment, as it is now.
    let third = app
        .post("/v1/payments", &app.checkout_key, Some("k-1"), &body)
        .await;
    let (third_status, third) = status_and_json(third).await;
    assert_eq!(third_status, 200, "{third}");
    assert_eq!(third["id"], first["id"]);
    assert_eq!(third["status"], "APPROVED");

    let types = app.event_types(&id).await;
    assert_eq!(count(&types, "PaymentInitiated"), 1, "{types:?}");
    assert_eq!(count(&types, "PaymentApproved"), 1, "{types:?}");
    assert_eq!(app.event_count().await, types.len() as i64);
    let payments = list(&app, &app.checkout_key).await;
    assert_eq!(payments.len(), 1, "{payments:?}");
    assert_eq!(payments[0]["id"], first["id"]);
}

#[tokio::test]
async fn the_same_create_sent_twice_at_once_is_one_payment() {
    let app = spawn_app().await;
    let body = payment_body(
        "10.00",
        "USD",
        "order-c",
        "tok_sandbox_approved",
        "automatic",
    );
    let (a, b) = tokio::join!(
        app.post("/v1/payments", &app.checkout_key, Some("k-c"), &body),
        app.post("/v1/payments", &app.checkout_key, Some("k-c"), &body),
    );
    let (a_status, a) = status_and_json(a).await;
    let (b_status, b) = status_and_json(b).await;
    let mut statuses = [a_status, b_status];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 201], "{a} {b}");
    assert_eq!(a["id"], b["id"]);
    let id = a["id"].as_str().unwrap().to_owned();
    app.wait_for_status(&id, "APPROVED").await;
    let types = app.event_types(&id).await;
    assert_eq!(count(&types, "PaymentInitiated"), 1, "{types:?}");
    assert_eq!(count(&types, "PaymentApproved"), 1, "{types:?}");
    assert_eq!(list(&app, &app.checkout_key).await.len(), 1);
}

#[tokio::test]
async fn same_key_with_another_body_is_422_and_appends_nothing() {
    let app = spawn_app().await;
    let body = payment_body(
        "50.00",
        "USD",
        "order-x",
        "tok_sandbox_approved",
        "automatic",
    );
    let created = app.create_payment("k-x", &body).await;
    let id = created["id"].as_str().unwrap().to_owned();
    app.wait_for_status(&id, "APPROVED").await;

    let before = app.event_count().await;
    let cases = [
        (
            "another amount",
            payment_body(
                "51.00",
                "USD",
                "order-x",
                "tok_sandbox_approved",
                "automatic",
            ),
        ),
        (
            "another token",
            payment_body(
                "50.00",
                "USD",
                "order-x",
                "tok_sandbox_declined",
                "automatic",
            ),
        ),
        (
            "another reference",
            payment_body(
                "50.00",
                "USD",
                "order-y",
                "tok_sandbox_approved",
                "automatic",
            ),
        ),
        (
            "another currency",
            payment_body(
                "50.00",
                "EUR",
                "order-x",
                "tok_sandbox_approved",
                "automatic",
            ),
        ),
        (
            "another capture mode",
            payment_body("50.00", "USD", "order-x", "tok_sandbox_approved", "manual"),
        ),
        ("customer details added", {
            let mut same = body.clone();
            same["customer"] = serde_json::json!({"ip_address": "190.24.8.77"});
            same
        }),
    ];
    for (case, other) in &cases {
        let response = app
            .post("/v1/payments", &app.checkout_key, Some("k-x"), other)
            .await;
        problem(response, 422, case).await;
        assert_eq!(app.event_count().await, before, "{case}: appended");
    }

    // The original stands as it was.
    let view = app.read_at_least(&id, 2).await;
    assert_eq!(view["amount"], "50.00");
    assert_eq!(view["currency"], "USD");
    assert_eq!(view["reference"], "order-x");
    assert_eq!(list(&app, &app.checkout_key).await.len(), 1);
    // The refused request reserved nothing: `order-y` is free under a fresh key.
    app.create_payment(
        "k-y",
        &payment_body(
            "50.00",
            "USD",
            "order-y",
            "tok_sandbox_approved",
            "automatic",
        ),
    )
    .await;
}

#[tokio::test]
async fn same_reference_with_another_key_is_409_and_appends_nothing() {
    let app = spawn_app().await;
    let created = app
        .create_payment(
            "k-r1",
            &payment_body(
                "20.00",
                "USD",
                "order-r",
                "tok_sandbox_approved",
                "automatic",
            ),
        )
        .await;
    let id = created["id"].as_str().unwrap().to_owned();
    app.wait_for_status(&id, "APPROVED").await;

    let before = app.event_count().await;
    for (case, body) in [
        (
            "same body",
            payment_body(
                "20.00",
                "USD",
                "order-r",
                "tok_sandbox_approved",
                "automatic",
            ),
        ),
        (
            "another amount",
            payment_body(
                "99.00",
                "USD",
                "order-r",
                "tok_sandbox_approved",
                "automatic",
            ),
        ),
    ] {
        let response = app
            .post("/v1/payments", &app.checkout_key, Some("k-r2"), &body)
            .await;
        problem(response, 409, case).await;
        assert_eq!(app.event_count().await, before, "{case}: appended");
    }
    let payments = list(&app, &app.checkout_key).await;
    assert_eq!(payments.len(), 1, "{payments:?}");
    assert_eq!(payments[0]["id"], json!(id));
}

#[tokio::test]
async fn two_merchants_may_use_the_same_key_and_reference() {
    let app = spawn_app().await;
    let key_b = app.key_for("merchant-b").await;
    let body = payment_body(
        "15.00",
        "USD",
        "order-1",
        "tok_sandbox_approved",
        "automatic",
    );

    let a = app
        .post("/v1/payments", &app.checkout_key, Some("shared-key"), &body)
        .await;
    let (a_status, a) = status_and_json(a).await;
    assert_eq!(a_status, 201, "{a}");
    let b = app
        .post("/v1/payments", &key_b, Some("shared-key"), &body)
        .await;
    let (b_status, b) = status_and_json(b).await;
    assert_eq!(b_status, 201, "{b}");
    assert_ne!(a["id"], b["id"]);
    assert_eq!(a["merchant_id"], "merchant-a");
    assert_eq!(b["merchant_id"], "merchant-b");

    let a_id = a["id"].as_str().unwrap();
    let b_id = b["id"].as_str().unwrap();
    assert_eq!(app.event_types(a_id).await[0], "PaymentInitiated");
    assert_eq!(app.event_types(b_id).await[0], "PaymentInitiated");
    app.wait_for_status(a_id, "APPROVED").await;

    // Each merchant sees its own payment, and only that one.
    let a_list = list(&app, &app.checkout_key).await;
    assert_eq!(a_list.len(), 1);
    assert_eq!(a_list[0]["id"], a["id"]);
    let b_view = wait_with_key(&app, b_id, &key_b, "APPROVED").await;
    assert_eq!(b_view["merchant_id"], "merchant-b");
    assert_eq!(b_view["reference"], "order-1");
    let b_list = list(&app, &key_b).await;
    assert_eq!(b_list.len(), 1);
    assert_eq!(b_list[0]["id"], b["id"]);
    // Neither sees the other's.
    assert_eq!(
        app.get(&format!("/v1/payments/{b_id}"), &app.checkout_key)
            .await
            .status(),
        404
    );
    assert_eq!(
        app.get(&format!("/v1/payments/{a_id}"), &key_b)
            .await
            .status(),
        404
    );

    // And each merchant's retry still lands on its own payment.
    let again = app
        .post("/v1/payments", &key_b, Some("shared-key"), &body)
        .await;
    let (again_status, again) = status_and_json(again).await;
    assert_eq!(again_status, 200, "{again}");
    assert_eq!(again["id"], b["id"]);
}

/// Polls `GET /v1/payments/{id}` with `key` until it shows `status` (10 s at most).
async fn wait_with_key(app: &TestApp, id: &str, key: &str, status: &str) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let response = app.get(&format!("/v1/payments/{id}"), key).await;
        if response.status() == 200 {
            let json: Value = response.json().await.expect("json");
            if json["status"] == status {
                return json;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{id} never reached {status}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// A payledger whose sandbox waits a minute before answering, so a payment stays `PENDING`
/// and the only webhooks it gets are the test's own.
async fn spawn_app_with_a_silent_sandbox() -> TestApp {
    let mut settings = Settings::from_env();
    let (url, name) = fresh_database(&settings.database_url).await;
    settings.database_url = url;
    settings.amqp_prefix = format!("test.{name}");
    settings.listen_addr = "127.0.0.1:0".into();
    settings.sandbox.in_process = true;
    settings.sandbox.webhook_delay_ms = 60_000;
    settings.db_pool_max = 12;
    spawn_with_settings(settings).await
}

fn webhook(
    event_id: &str,
    transaction_id: &str,
    payment_id: &str,
    status: &str,
    amount: &str,
    currency: &str,
) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "id": event_id,
        "type": "transaction.updated",
        "created_at": "2026-11-21T00:00:00Z",
        "data": {
            "transaction_id": transaction_id,
            "payment_id": payment_id,
            "status": status,
            "amount": amount,
            "currency": currency,
            "reason": null
        }
    }))
    .expect("json")
}

/// POSTs `body` to the sandbox webhook, signed with the app's sandbox secret.
async fn deliver(app: &TestApp, body: &[u8]) -> (u16, Value) {
    let signature = sandbox_signature(app.settings.sandbox.webhook_secret.as_bytes(), body);
    let response = app
        .http
        .post(format!("{}/v1/webhooks/sandbox", app.address))
        .header(CONTENT_TYPE, "application/json")
        .header(SANDBOX_SIGNATURE_HEADER, signature)
        .body(body.to_vec())
        .send()
        .await
        .expect("request sent");
    status_and_json(response).await
}

#[tokio::test]
async fn a_redelivered_webhook_appends_nothing() {
    let app = spawn_app_with_a_silent_sandbox().await;
    let created = app
        .create_payment(
            "k-w",
            &payment_body("42.00", "USD", "order-w", "tok_sandbox_approved", "manual"),
        )
        .await;
    assert_eq!(created["status"], "PENDING");
    let id = created["id"].as_str().unwrap().to_owned();
    // The transaction the sandbox opened for it: a notification must name the payment's own.
    let transaction = created["provider_reference"].as_str().unwrap().to_owned();
    let body = webhook(
        "evt_test_1",
        &transaction,
        &id,
        "AUTHORIZED",
        "42.00",
        "USD",
    );

    let (status, first) = deliver(&app, &body).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["result"], "recorded");
    let recorded = app.event_types(&id).await;
    assert_eq!(count(&recorded, "PaymentAuthorized"), 1, "{recorded:?}");
    let (status, second) = deliver(&app, &body).await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(second["result"], "duplicate");
    assert_eq!(second["version"], first["version"]);
    let (a, b) = tokio::join!(deliver(&app, &body), deliver(&app, &body));
    assert_eq!((a.0, b.0), (200, 200), "{} {}", a.1, b.1);
    assert_eq!(app.event_types(&id).await, recorded);
    let view = app
        .read_at_least(&id, first["version"].as_i64().unwrap())
        .await;
    assert_eq!(view["status"], "AUTHORIZED");
    assert_eq!(view["authorized_amount"], "42.00");
}

#[tokio::test]
async fn a_webhook_delivered_twice_at_once_is_recorded_once() {
    let app = spawn_app_with_a_silent_sandbox().await;
    let created = app
        .create_payment(
            "k-w2",
            &payment_body("7.00", "EUR", "order-w2", "tok_sandbox_approved", "manual"),
        )
        .await;
    let id = created["id"].as_str().unwrap().to_owned();
    let transaction = created["provider_reference"].as_str().unwrap().to_owned();
    let body = webhook("evt_test_2", &transaction, &id, "AUTHORIZED", "7.00", "EUR");
    let (a, b) = tokio::join!(deliver(&app, &body), deliver(&app, &body));
    assert_eq!((a.0, b.0), (200, 200), "{} {}", a.1, b.1);
    let mut results = [
        a.1["result"].as_str().unwrap_or("").to_owned(),
        b.1["result"].as_str().unwrap_or("").to_owned(),
    ];
    results.sort();
    assert_eq!(results, ["duplicate", "recorded"]);
    let types = app.event_types(&id).await;
    assert_eq!(count(&types, "PaymentAuthorized"), 1, "{types:?}");
}

#[tokio::test]
async fn the_sandboxs_own_webhook_redelivered_appends_nothing() {
    let app = spawn_app().await;
    let created = app
        .create_payment(
            "k-s",
            &payment_body("500.00", "USD", "order-s", "tok_sandbox_approved", "manual"),
        )
        .await;
    let id = created["id"].as_str().unwrap().to_owned();
    app.wait_for_status(&id, "AUTHORIZED").await;

    let (status, events) = status_and_json(
        app.get(&format!("/v1/payments/{id}/events"), &app.checkout_key)
            .await,
    )
    .await;
    assert_eq!(status, 200, "{events}");
    let authorized = events["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "PaymentAuthorized")
        .expect("a PaymentAuthorized event")["data"]["PaymentAuthorized"]
        .clone();
    let event_id = authorized["provider_event_id"].as_str().expect("event id");
    let transaction_id = authorized["provider_transaction_id"]
        .as_str()
        .expect("transaction id");
    assert!(event_id.starts_with("evt_"), "{authorized}");

    let before = app.event_count().await;
    let types_before = app.event_types(&id).await;
    assert_eq!(
        count(&types_before, "PaymentAuthorized"),
        1,
        "{types_before:?}"
    );
    let body = webhook(event_id, transaction_id, &id, "AUTHORIZED", "500.00", "USD");
    let (status, answer) = deliver(&app, &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["result"], "duplicate");
    let (a, b) = tokio::join!(deliver(&app, &body), deliver(&app, &body));
    assert_eq!((a.0, b.0), (200, 200), "{} {}", a.1, b.1);
    assert_eq!(app.event_count().await, before);
    assert_eq!(app.event_types(&id).await, types_before);
}

#[tokio::test]
async fn a_retried_capture_captures_once() {
    let app = spawn_app().await;
    let created = app
        .create_payment(
            "k-cap",
            &payment_body(
                "500.00",
                "USD",
                "order-cap",
                "tok_sandbox_approved",
                "manual",
            ),
        )
        .await;
    let id = created["id"].as_str().unwrap().to_owned();
    app.wait_for_status(&id, "AUTHORIZED").await;
    let path = format!("/v1/payments/{id}/capture");

    let (status, first) = status_and_json(
        app.post(
            &path,
            &app.checkout_key,
            Some("c-1"),
            &json!({"amount": "300.00"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201, "{first}");
    let (status, second) = status_and_json(
        app.post(
            &path,
            &app.checkout_key,
            Some("c-1"),
            &json!({"amount": "300.00"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(second["version"], first["version"]);
    assert_eq!(second["captured_amount"], "300.00");
    assert_eq!(second["status"], "APPROVED");

    let before = app.event_count().await;
    let other = app
        .post(
            &path,
            &app.checkout_key,
            Some("c-1"),
            &json!({"amount": "200.00"}),
        )
        .await;
    problem(other, 422, "same capture key, another amount").await;
    assert_eq!(app.event_count().await, before);

    let types = app.event_types(&id).await;
    assert_eq!(count(&types, "PaymentApproved"), 1, "{types:?}");
    let view = app
        .read_at_least(&id, first["version"].as_i64().unwrap())
        .await;
    assert_eq!(view["captured_amount"], "300.00");
}

#[tokio::test]
async fn a_retried_refund_refunds_once() {
    let app = spawn_app().await;
    let created = app
        .create_payment(
            "k-ref",
            &payment_body(
                "100.00",
                "USD",
                "order-ref",
                "tok_sandbox_approved",
                "automatic",
            ),
        )
        .await;
    let id = created["id"].as_str().unwrap().to_owned();
    app.wait_for_status(&id, "APPROVED").await;
    let path = format!("/v1/payments/{id}/refunds");
    let request = json!({"amount": "40.00", "reason": "customer request"});

    let (status, first) = status_and_json(
        app.post(&path, &app.checkout_key, Some("r-1"), &request)
            .await,
    )
    .await;
    assert_eq!(status, 201, "{first}");
    assert_eq!(first["status"], "SUCCEEDED");
    let (status, second) = status_and_json(
        app.post(&path, &app.checkout_key, Some("r-1"), &request)
            .await,
    )
    .await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(second["id"], first["id"]);
    assert_eq!(second["status"], "SUCCEEDED");
    assert_eq!(second["amount"], "40.00");
    assert_eq!(second["payment"]["version"], first["payment"]["version"]);
    assert_eq!(second["payment"]["refunded_amount"], "40.00");

    let before = app.event_count().await;
    let other = app
        .post(
            &path,
            &app.checkout_key,
            Some("r-1"),
            &json!({"amount": "30.00", "reason": "customer request"}),
        )
        .await;
    problem(other, 422, "same refund key, another amount").await;
    assert_eq!(app.event_count().await, before);

    let types = app.event_types(&id).await;
    assert_eq!(count(&types, "RefundRequested"), 1, "{types:?}");
    assert_eq!(count(&types, "PaymentRefunded"), 1, "{types:?}");
    let view = app
        .read_at_least(&id, first["payment"]["version"].as_i64().unwrap())
        .await;
    assert_eq!(view["status"], "PARTIALLY_REFUNDED");
    assert_eq!(view["refunded_amount"], "40.00");
}

#[tokio::test]
async fn one_reference_claimed_by_two_keys_at_once_makes_one_payment() {
    let app = spawn_app().await;
    let body = payment_body(
        "5.00",
        "USD",
        "order-race",
        "tok_sandbox_approved",
        "automatic",
    );
    let (a, b) = tokio::join!(
        app.post("/v1/payments", &app.checkout_key, Some("k-race-1"), &body),
        app.post("/v1/payments", &app.checkout_key, Some("k-race-2"), &body),
    );
    let (a_status, a) = status_and_json(a).await;
    let (b_status, b) = status_and_json(b).await;
    let mut statuses = [a_status, b_status];
    statuses.sort_unstable();
    assert_eq!(statuses, [201, 409], "{a} {b}");
    let winner = if a_status == 201 { &a } else { &b };
    let id = winner["id"].as_str().unwrap().to_owned();
    app.wait_for_status(&id, "APPROVED").await;
    let types = app.event_types(&id).await;
    assert_eq!(app.event_count().await, types.len() as i64, "{types:?}");
    assert_eq!(list(&app, &app.checkout_key).await.len(), 1);
}

#[tokio::test]
async fn a_capture_sent_twice_at_once_captures_once() {
    let app = spawn_app().await;
    let created = app
        .create_payment(
            "k-cc",
            &payment_body("90.00", "MXN", "order-cc", "tok_sandbox_approved", "manual"),
        )
        .await;
    let id = created["id"].as_str().unwrap().to_owned();
    app.wait_for_status(&id, "AUTHORIZED").await;
    let path = format!("/v1/payments/{id}/capture");
    let all = json!({});
    let (a, b) = tokio::join!(
        app.post(&path, &app.checkout_key, Some("c-1"), &all),
        app.post(&path, &app.checkout_key, Some("c-1"), &all),
    );
    let (a_status, a) = status_and_json(a).await;
    let (b_status, b) = status_and_json(b).await;
    let mut statuses = [a_status, b_status];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 201], "{a} {b}");
    assert_eq!(a["version"], b["version"]);
    assert_eq!(a["captured_amount"], "90.00");
    assert_eq!(b["captured_amount"], "90.00");
    let types = app.event_types(&id).await;
    assert_eq!(count(&types, "PaymentApproved"), 1, "{types:?}");
}

#[tokio::test]
async fn a_refund_sent_twice_at_once_refunds_once() {
    let app = spawn_app().await;
    let created = app
        .create_payment(
            "k-rc",
            &payment_body(
                "9000",
                "CLP",
                "order-rc",
                "tok_sandbox_approved",
                "automatic",
            ),
        )
        .await;
    let id = created["id"].as_str().unwrap().to_owned();
    app.wait_for_status(&id, "APPROVED").await;
    let path = format!("/v1/payments/{id}/refunds");
    let request = json!({"amount": "9000"});
    let (a, b) = tokio::join!(
        app.post(&path, &app.checkout_key, Some("r-1"), &request),
        app.post(&path, &app.checkout_key, Some("r-1"), &request),
    );
    let (a_status, a) = status_and_json(a).await;
    let (b_status, b) = status_and_json(b).await;
    let mut statuses = [a_status, b_status];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 201], "{a} {b}");
    assert_eq!(a["id"], b["id"]);
    let types = app.event_types(&id).await;
    assert_eq!(count(&types, "RefundRequested"), 1, "{types:?}");
    assert_eq!(count(&types, "PaymentRefunded"), 1, "{types:?}");
    let view = app.read_at_least(&id, types.len() as i64).await;
    assert_eq!(view["status"], "REFUNDED");
    assert_eq!(view["refunded_amount"], "9000");
}

/// The fingerprint `PaymentInitiated` carries is keyed with a server secret: whoever reads the
/// stream cannot recompute it from guessed request fields, and two servers with different
/// secrets store different fingerprints for the same request.
#[tokio::test]
async fn the_stored_fingerprint_is_keyed_with_the_server_secret() {
    let body = payment_body("4.00", "USD", "fp-1", "tok_sandbox_approved", "automatic");
    let mut stored = Vec::new();
    for secret in [
        None,
        Some("another server secret, thirty-two bytes or more"),
    ] {
        let app = spawn_app_configured(ServeRole::All, |s| {
            if let Some(secret) = secret {
                s.fingerprint_secret = secret.into();
            }
        })
        .await;
        let created = app.create_payment("fp-1", &body).await;
        let id = created["id"].as_str().unwrap().to_owned();
        let fingerprint: String = sqlx::query_scalar(
            "SELECT payload->'PaymentInitiated'->>'request_fingerprint' FROM events
              WHERE aggregate_id = $1 AND event_type = 'PaymentInitiated'",
        )
        .bind(&id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
        assert!(fingerprint.starts_with("hmac-sha256:"), "{fingerprint}");
        // The same request again is recognised by it.
        let again = app
            .post("/v1/payments", &app.checkout_key, Some("fp-1"), &body)
            .await;
        assert_eq!(again.status(), 200, "the same create again");
        stored.push(fingerprint);
    }
    assert_ne!(stored[0], stored[1], "the secret is part of it");
}
