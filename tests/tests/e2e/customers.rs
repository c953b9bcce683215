//! Customers and their saved payment methods, against real PostgreSQL, RabbitMQ and the
//! sandbox over HTTP: save, list, default, pay in one click, remove (and the provider no
//! longer charges the source), and a raw card number refused wherever it is sent.

use e2e::customers::{self, methods_when, remove_method, set_default};
use e2e::{spawn_app, TestApp};
use serde_json::{json, Value};

async fn create_customer(app: &TestApp, reference: &str) -> String {
    customers::create_customer(app, reference, Some("ana@example.com")).await
}

async fn save_card(app: &TestApp, customer: &str, key: &str, token: &str) -> Value {
    let card = json!({"type": "CARD", "token": token, "provider": "sandbox"});
    let (status, body) = customers::save_method(app, customer, key, &card).await;
    assert_eq!(status, 201, "{body}");
    body
}

#[tokio::test]
async fn a_saved_card_is_listed_masked_made_default_paid_in_one_click_and_removed() {
    let app = spawn_app().await;
    let customer = create_customer(&app, "cust-1").await;
    let shown: Value = app
        .get(&format!("/v1/customers/{customer}"), &app.checkout_key)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(shown["reference"], "cust-1");
    assert_eq!(shown["email"], "ana@example.com");
    // The same reference and email again is the same customer.
    let again = app
        .post(
            "/v1/customers",
            &app.checkout_key,
            None,
            &json!({"reference": "cust-1", "email": "ana@example.com"}),
        )
        .await;
    assert_eq!(again.status(), 200);
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["id"], customer.as_str());
    let other_email = app
        .post(
            "/v1/customers",
            &app.checkout_key,
            None,
            &json!({"reference": "cust-1", "email": "eve@example.com"}),
        )
        .await;
    assert_eq!(other_email.status(), 409);

    let first = save_card(&app, &customer, "save-1", "tok_sandbox_approved").await;
    assert_eq!(first["type"], "CARD");
    assert_eq!(first["provider"], "sandbox");
    assert_eq!(first["brand"], "VISA");
    assert_eq!(first["last_four"], "4242");
    assert_eq!(first["exp_month"], 12);
    assert_eq!(first["is_default"], true, "the first method is the default");
    let first_id = first["id"].as_str().unwrap().to_owned();
    // A retried save with the same key is the same method, not a second one.
    let retried = save_card(&app, &customer, "save-1", "tok_sandbox_approved").await;
    assert_eq!(retried["id"], first_id.as_str());
    let second = save_card(&app, &customer, "save-2", "tok_sandbox_declined").await;
    assert_eq!(second["last_four"], "0002");
    assert_eq!(second["is_default"], false);
    let second_id = second["id"].as_str().unwrap().to_owned();

    let listed = methods_when(&app, &customer, 2).await;
    let listed_text = serde_json::to_string(&listed).unwrap();
    assert!(
        !listed_text.contains("sbx_src_"),
        "a source id leaked: {listed_text}"
    );
    assert!(
        !listed_text.contains("tok_sandbox"),
        "a token leaked: {listed_text}"
    );
    // Nothing in the stream holds a source id or a token either.
    let stored: Vec<String> = sqlx::query_scalar(
        "SELECT payload::text FROM events WHERE aggregate_type = 'Customer' AND aggregate_id = $1",
    )
    .bind(&customer)
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(stored.len(), 4, "{stored:?}");
    assert!(stored
        .iter()
        .all(|p| !p.contains("sbx_src_") && !p.contains("tok_") && !p.contains("ana@")));

    // Pay with only the customer: their default (the approving card).
    let paid = app
        .create_payment(
            "pay-default",
            &json!({"amount": "10.00", "currency": "USD", "reference": "order-1", "customer": customer}),
        )
        .await;
    assert_eq!(paid["provider"], "sandbox");
    assert_eq!(paid["payment_method"]["type"], "CARD");
    app.wait_for_status(paid["id"].as_str().unwrap(), "APPROVED")
        .await;

    // A saved method is charged where its source is: naming another provider is refused.
    let before = app.event_count().await;
    let elsewhere = app
        .post(
            "/v1/payments",
            &app.checkout_key,
            Some("pay-elsewhere"),
            &json!({"amount": "10.00", "currency": "USD", "reference": "order-elsewhere",
                    "payment_method": {"type": "SAVED", "id": first_id}, "provider": "wompi"}),
        )
        .await;
    assert_eq!(elsewhere.status(), 422);
    let problem: Value = elsewhere.json().await.unwrap();
    assert_eq!(problem["errors"][0]["field"], "provider", "{problem}");
    assert_eq!(app.event_count().await, before, "nothing appended");

    // Make the declining card the default; a payment naming the first card still uses it.
    assert_eq!(set_default(&app, &customer, &second_id).await, 200);
    let default: Value = app
        .get(
            &format!("/v1/customers/{customer}/default-payment-method"),
            &app.checkout_key,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(default["payment_method_id"], second_id.as_str());
    let by_default = app
        .create_payment(
            "pay-default-2",
            &json!({"amount": "10.00", "currency": "USD", "reference": "order-2", "customer": customer}),
        )
        .await;
    app.wait_for_status(by_default["id"].as_str().unwrap(), "DECLINED")
        .await;
    let named = app
        .create_payment(
            "pay-named",
            &json!({"amount": "10.00", "currency": "USD", "reference": "order-3",
                    "payment_method": {"type": "SAVED", "id": first_id}}),
        )
        .await;
    app.wait_for_status(named["id"].as_str().unwrap(), "APPROVED")
        .await;

    // Removed: detached at the provider, gone from the list, and no longer chargeable.
    assert_eq!(remove_method(&app, &customer, &first_id).await, 204);
    let listed = methods_when(&app, &customer, 1).await;
    assert_eq!(listed[0]["id"], second_id.as_str());
    let refused = app
        .post(
            "/v1/payments",
            &app.checkout_key,
            Some("pay-removed"),
            &json!({"amount": "10.00", "currency": "USD", "reference": "order-4",
                    "payment_method": {"type": "SAVED", "id": first_id}}),
        )
        .await;
    assert_eq!(refused.status(), 422);
    let problem: Value = refused.json().await.unwrap();
    assert_eq!(
        problem["errors"][0]["field"], "payment_method.id",
        "{problem}"
    );
    assert_eq!(
        customers::source_of(&app, &first_id).await,
        None,
        "the vault forgot the source"
    );
}

#[tokio::test]
async fn the_provider_no_longer_charges_a_removed_source() {
    let app = spawn_app().await;
    let customer = create_customer(&app, "cust-2").await;
    let saved = save_card(&app, &customer, "save-1", "tok_sandbox_approved").await;
    let method = saved["id"].as_str().unwrap();
    let source = customers::source_of(&app, method)
        .await
        .expect("a kept source");
    assert_eq!(remove_method(&app, &customer, method).await, 204);
    // Asked directly, as a stale copy of the source would be used: the sandbox refuses it.
    let charge = app
        .http
        .post(format!("{}/v1/transactions", app.emulators["sandbox"]))
        .bearer_auth(&app.settings.sandbox.api_key)
        .json(&json!({
            "payment_id": "0191f7a0-0000-7000-8000-000000000001", "reference": "stale",
            "amount": "1.00", "currency": "USD", "method": "CARD",
            "payment_source_id": source, "capture": "automatic"
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(charge.status(), 422);
    let body: Value = charge.json().await.unwrap();
    assert_eq!(body["error"], "source_detached", "{body}");
}

/// A `422 card-number-refused` naming `field`, without the number, and nothing appended
/// since the store held `before` events.
async fn assert_card_refused(app: &TestApp, response: reqwest::Response, field: &str, before: i64) {
    assert_eq!(response.status(), 422, "{field}");
    let text = response.text().await.unwrap();
    let problem: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        problem["type"].as_str().unwrap().rsplit('/').next(),
        Some("card-number-refused"),
        "{text}"
    );
    assert_eq!(problem["errors"][0]["field"], field, "{text}");
    assert!(
        !text.contains("4242"),
        "the answer echoed the number: {text}"
    );
    assert_eq!(
        app.event_count().await,
        before,
        "{field}: something was appended"
    );
}

#[tokio::test]
async fn a_raw_card_number_is_refused_wherever_it_is_and_never_stored() {
    let app = spawn_app().await;
    let customer = create_customer(&app, "cust-3").await;
    let pan = "4242424242424242";
    let cases = [
        (
            format!("/v1/customers/{customer}/payment-methods"),
            json!({"type": "CARD", "token": pan, "provider": "sandbox"}),
            "token",
        ),
        (
            "/v1/payments".to_owned(),
            json!({"amount": "1.00", "currency": "USD", "reference": "o-pan",
                   "payment_method": {"type": "CARD", "token": "4242 4242 4242 4242"}}),
            "payment_method.token",
        ),
        (
            "/v1/payments".to_owned(),
            json!({"amount": "1.00", "currency": "USD", "reference": pan,
                   "payment_method": {"type": "CARD", "token": "tok_sandbox_approved"}}),
            "reference",
        ),
        (
            "/v1/customers".to_owned(),
            json!({"reference": format!("card {pan}")}),
            "reference",
        ),
    ];
    for (path, body, field) in cases {
        let before = app.event_count().await;
        let response = app
            .post(&path, &app.checkout_key, Some("k-pan"), &body)
            .await;
        assert_card_refused(&app, response, field, before).await;
    }
    // Outside the body: in the query string (percent-encoded too) and in any header.
    let payments = format!("{}/v1/payments", app.address);
    let valid = json!({"amount": "1.00", "currency": "USD", "reference": "o-pan-header",
                       "payment_method": {"type": "CARD", "token": "tok_sandbox_approved"}});
    for (request, field) in [
        (
            app.http
                .get(format!("{payments}?reference=4242%204242%204242%204242")),
            "query.reference",
        ),
        (
            app.http
                .get(format!("{payments}?limit=1"))
                .header("X-Order-Note", pan),
            "header.x-order-note",
        ),
        (
            app.http
                .post(&payments)
                .header("Idempotency-Key", pan)
                .json(&valid),
            "header.idempotency-key",
        ),
    ] {
        let before = app.event_count().await;
        let response = request.bearer_auth(&app.checkout_key).send().await.unwrap();
        assert_card_refused(&app, response, field, before).await;
    }
    // Nowhere in the database.
    let anywhere: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM events WHERE payload::text LIKE '%4242424242%')
              + (SELECT count(*) FROM customer_contacts WHERE email LIKE '%4242%')
              + (SELECT count(*) FROM saved_method_sources WHERE source_id LIKE '%4242%')",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(anywhere, 0);
}

#[tokio::test]
async fn customers_are_the_merchants_own_and_bad_saves_are_refused_by_name() {
    let app = spawn_app().await;
    let customer = create_customer(&app, "cust-4").await;
    let other = app.key_for("m-other").await;
    for path in [
        format!("/v1/customers/{customer}"),
        format!("/v1/customers/{customer}/payment-methods"),
        format!("/v1/customers/{customer}/default-payment-method"),
    ] {
        assert_eq!(app.get(&path, &other).await.status(), 404, "{path}");
    }
    let theirs = app
        .post(
            &format!("/v1/customers/{customer}/payment-methods"),
            &other,
            Some("k"),
            &json!({"type": "CARD", "token": "tok_sandbox_approved", "provider": "sandbox"}),
        )
        .await;
    assert_eq!(theirs.status(), 404);
    // Another merchant cannot pay with this customer's default either.
    save_card(&app, &customer, "save-1", "tok_sandbox_approved").await;
    let stolen = app
        .post(
            "/v1/payments",
            &other,
            Some("k-stolen"),
            &json!({"amount": "1.00", "currency": "USD", "reference": "o-1", "customer": customer}),
        )
        .await;
    assert_eq!(stolen.status(), 422);

    for (body, field) in [
        (json!({"type": "PSE", "provider": "sandbox"}), "type"),
        (json!({"type": "CARD", "provider": "sandbox"}), "token"),
        (
            json!({"type": "CARD", "token": "tok_sandbox_approved", "provider": "nope"}),
            "provider",
        ),
    ] {
        let response = app
            .post(
                &format!("/v1/customers/{customer}/payment-methods"),
                &app.checkout_key,
                Some("k-bad"),
                &body,
            )
            .await;
        assert_eq!(response.status(), 422, "{body}");
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["errors"][0]["field"], field, "{problem}");
    }
    let no_key = app
        .post(
            &format!("/v1/customers/{customer}/payment-methods"),
            &app.checkout_key,
            None,
            &json!({"type": "CARD", "token": "tok_sandbox_approved", "provider": "sandbox"}),
        )
        .await;
    assert_eq!(no_key.status(), 400);
    let no_default = create_customer(&app, "cust-5").await;
    let response = app
        .post(
            "/v1/payments",
            &app.checkout_key,
            Some("k-none"),
            &json!({"amount": "1.00", "currency": "USD", "reference": "o-2", "customer": no_default}),
        )
        .await;
    assert_eq!(response.status(), 422);
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["errors"][0]["field"], "customer", "{problem}");
}
