//! Bad input over HTTP: every refusal is a clear 4xx in `application/problem+json`
//! (`type`, `title`, `status`, `detail`, and `errors[]` for field problems) and appends
//! nothing to the event store.

use api::config::Settings;
use e2e::independent::{sandbox_signature, SANDBOX_SIGNATURE_HEADER};
use e2e::{fresh_database, payment_body, spawn_app, spawn_with_settings, TestApp};
use reqwest::header::CONTENT_TYPE;
use serde_json::{json, Value};
use uuid::Uuid;

/// Asserts `response` is a problem with `status` and the RFC 9457 members; returns its body.
async fn problem(response: reqwest::Response, status: u16, case: &str) -> Value {
    let actual = response.status().as_u16();
    let content_type = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let text = response.text().await.expect("response body");
    assert_eq!(actual, status, "{case}: status (body: {text})");
    assert!(
        content_type.starts_with("application/problem+json"),
        "{case}: content type `{content_type}` (body: {text})"
    );
    let body: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{case}: problem body is not JSON ({e}): {text}"));
    for member in ["type", "title", "detail"] {
        assert!(
            body[member].as_str().is_some_and(|s| !s.is_empty()),
            "{case}: `{member}` missing or empty: {body}"
        );
    }
    assert_eq!(
        body["status"].as_u64(),
        Some(u64::from(status)),
        "{case}: `status` member: {body}"
    );
    body
}

/// The `field` of every entry of the problem's `errors[]`.
fn error_fields(problem: &Value) -> Vec<String> {
    problem["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .filter_map(|e| e["field"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn count(types: &[String], name: &str) -> usize {
    types.iter().filter(|t| *t == name).count()
}

async fn status_rows(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM payment_status")
        .fetch_one(&app.pool)
        .await
        .expect("count payment_status")
}

fn usd(amount: &str) -> Value {
    payment_body(
        amount,
        "USD",
        "order-bad",
        "tok_sandbox_approved",
        "automatic",
    )
}

/// POSTs each `(case, body)` as a new payment and expects `status` with the RFC 9457 shape and,
/// when given, `field` named in `errors[]`. Nothing may be appended or projected.
async fn refuse_creates(
    app: &TestApp,
    cases: &[(&str, Vec<u8>)],
    status: u16,
    field: Option<&str>,
) {
    let before = app.event_count().await;
    for (i, (case, body)) in cases.iter().enumerate() {
        let response = app
            .post_raw(
                "/v1/payments",
                &app.checkout_key,
                Some(&format!("bad-{i}")),
                body.clone(),
            )
            .await;
        let body = problem(response, status, case).await;
        if let Some(field) = field {
            let fields = error_fields(&body);
            assert!(
                fields.iter().any(|f| f == field),
                "{case}: errors[] should name `{field}`: {body}"
            );
        }
        assert_eq!(app.event_count().await, before, "{case}: appended events");
    }
    assert_eq!(status_rows(app).await, 0, "a refused create was projected");
}

fn bytes(value: &Value) -> Vec<u8> {
    serde_json::to_vec(value).expect("json")
}

#[tokio::test]
async fn amounts_that_are_not_strict_positive_decimal_strings_are_422() {
    let app = spawn_app().await;
    let mut number = usd("1.00");
    number["amount"] = json!(129000.00);
    let mut integer = usd("1.00");
    integer["amount"] = json!(5);
    refuse_creates(
        &app,
        &[
            ("JSON number", bytes(&number)),
            ("JSON integer", bytes(&integer)),
            ("negative", bytes(&usd("-5.00"))),
            ("plus sign", bytes(&usd("+5.00"))),
            ("zero", bytes(&usd("0"))),
            ("zero with decimals", bytes(&usd("0.00"))),
            ("exponent", bytes(&usd("1e3"))),
            ("leading space", bytes(&usd(" 1.00"))),
            ("trailing space", bytes(&usd("1.00 "))),
            ("thousands separator", bytes(&usd("1,000.00"))),
            ("decimal comma", bytes(&usd("1,00"))),
            ("empty", bytes(&usd(""))),
            ("bare dot", bytes(&usd("."))),
            ("above 10^12", bytes(&usd("1000000000000.01"))),
            ("far above 10^12", bytes(&usd("1000000000001"))),
        ],
        422,
        None,
    )
    .await;

    // The bound is inclusive: 10^12 itself is a valid amount.
    let created = app
        .create_payment(
            "max",
            &payment_body(
                "1000000000000.00",
                "USD",
                "o-max",
                "tok_sandbox_declined",
                "automatic",
            ),
        )
        .await;
    assert_eq!(created["amount"], "1000000000000.00");
}

#[tokio::test]
async fn more_decimals_than_the_currency_allows_is_422_naming_amount() {
    let app = spawn_app().await;
    let jpy = payment_body(
        "1.5",
        "JPY",
        "order-bad",
        "tok_sandbox_approved",
        "automatic",
    );
    let clp = payment_body(
        "100.0",
        "CLP",
        "order-bad",
        "tok_sandbox_approved",
        "automatic",
    );
    refuse_creates(
        &app,
        &[
            ("USD with three decimals", bytes(&usd("1.001"))),
            ("JPY with a decimal", bytes(&jpy)),
            ("CLP with a decimal", bytes(&clp)),
        ],
        422,
        Some("amount"),
    )
    .await;
    // Negative and too-large amounts are field problems of `amount` as well.
    refuse_creates(
        &app,
        &[
            ("negative", bytes(&usd("-5.00"))),
            ("zero", bytes(&usd("0"))),
            ("above 10^12", bytes(&usd("1000000000001"))),
        ],
        422,
        Some("amount"),
    )
    .await;
}

#[tokio::test]
async fn unknown_currencies_are_422_naming_currency() {
    let app = spawn_app().await;
    let body = |currency: &str| {
        bytes(&payment_body(
            "1.00",
            currency,
            "order-bad",
            "tok_sandbox_approved",
            "automatic",
        ))
    };
    refuse_creates(
        &app,
        &[
            ("XXX", body("XXX")),
            ("lowercase cop", body("cop")),
            ("empty", body("")),
            ("padded", body(" USD")),
        ],
        422,
        Some("currency"),
    )
    .await;
}

#[tokio::test]
async fn missing_unknown_and_duplicate_fields_are_refused() {
    let app = spawn_app().await;
    let mut no_amount = usd("1.00");
    no_amount.as_object_mut().unwrap().remove("amount");
    let mut no_method = usd("1.00");
    no_method.as_object_mut().unwrap().remove("payment_method");
    let mut no_token = usd("1.00");
    no_token["payment_method"]
        .as_object_mut()
        .unwrap()
        .remove("token");
    let mut unknown = usd("1.00");
    unknown["favourite_colour"] = json!("blue");
    let mut unknown_nested = usd("1.00");
    unknown_nested["payment_method"]["cvv"] = json!("123");
    refuse_creates(
        &app,
        &[
            ("no amount", bytes(&no_amount)),
            ("no payment_method", bytes(&no_method)),
            ("no token", bytes(&no_token)),
            ("unknown field", bytes(&unknown)),
            ("unknown nested field", bytes(&unknown_nested)),
            ("array body", b"[]".to_vec()),
        ],
        422,
        None,
    )
    .await;

    // Duplicate keys: which value would win is parser-dependent, so the request is refused.
    let duplicate = br#"{"amount":"1.00","amount":"2.00","currency":"USD","reference":"order-dup","payment_method":{"type":"CARD","token":"tok_sandbox_approved"},"capture":"automatic"}"#;
    let duplicate_nested = br#"{"amount":"1.00","currency":"USD","reference":"order-dup","payment_method":{"type":"CARD","token":"tok_sandbox_approved","token":"tok_sandbox_declined"},"capture":"automatic"}"#;
    let before = app.event_count().await;
    for (case, raw) in [
        ("duplicate amount", duplicate.to_vec()),
        ("duplicate token", duplicate_nested.to_vec()),
    ] {
        let response = app
            .post_raw("/v1/payments", &app.checkout_key, Some("dup"), raw)
            .await;
        let status = response.status().as_u16();
        assert!((400..500).contains(&status), "{case}: {status}");
        problem(response, status, case).await;
    }
    assert_eq!(app.event_count().await, before);
    assert_eq!(status_rows(&app).await, 0);
}

#[tokio::test]
async fn broken_json_is_400() {
    let app = spawn_app().await;
    refuse_creates(
        &app,
        &[
            (
                "truncated",
                br#"{"amount":"1.00","currency":"USD""#.to_vec(),
            ),
            ("not json", b"amount=1.00&currency=USD".to_vec()),
            ("trailing comma", br#"{"amount":"1.00",}"#.to_vec()),
            ("empty body", Vec::new()),
        ],
        400,
        None,
    )
    .await;
}

#[tokio::test]
async fn a_body_above_one_mebibyte_is_413() {
    let app = spawn_app().await;
    let mut body = usd("1.00");
    body["reference"] = json!("x".repeat(1024 * 1024));
    let raw = bytes(&body);
    assert!(raw.len() > 1024 * 1024);
    let before = app.event_count().await;
    let response = app
        .post_raw("/v1/payments", &app.checkout_key, Some("big"), raw)
        .await;
    let body = problem(response, 413, "oversized body").await;
    assert!(
        !body["detail"].as_str().unwrap_or("").contains("xxxx"),
        "the detail should not echo the body: {body}"
    );
    assert_eq!(app.event_count().await, before);
    assert_eq!(status_rows(&app).await, 0);

    // The same bound on every POST, the unauthenticated webhook included.
    let padding = " ".repeat(1024 * 1024);
    let id = Uuid::new_v4();
    for path in [
        format!("/v1/payments/{id}/capture"),
        format!("/v1/payments/{id}/refunds"),
        "/v1/webhooks/sandbox".to_owned(),
    ] {
        let raw = format!(r#"{{"amount":"1.00"{padding}}}"#).into_bytes();
        let response = app
            .post_raw(&path, &app.checkout_key, Some("big"), raw)
            .await;
        problem(response, 413, &format!("oversized body to {path}")).await;
    }
    assert_eq!(app.event_count().await, before);
}

#[tokio::test]
async fn idempotency_key_missing_or_longer_than_255_is_400() {
    let app = spawn_app().await;
    let body = usd("1.00");
    let before = app.event_count().await;
    let missing = app
        .post("/v1/payments", &app.checkout_key, None, &body)
        .await;
    problem(missing, 400, "no Idempotency-Key").await;
    let long = app
        .post(
            "/v1/payments",
            &app.checkout_key,
            Some(&"k".repeat(256)),
            &body,
        )
        .await;
    problem(long, 400, "256-character Idempotency-Key").await;
    let spaced = app
        .post("/v1/payments", &app.checkout_key, Some("has space"), &body)
        .await;
    problem(spaced, 400, "Idempotency-Key with a space").await;
    let empty = app
        .post("/v1/payments", &app.checkout_key, Some(""), &body)
        .await;
    problem(empty, 400, "empty Idempotency-Key").await;
    assert_eq!(app.event_count().await, before);
    assert_eq!(status_rows(&app).await, 0);

    // 255 is still allowed, and the refusals reserved neither key nor reference.
    let created = app.create_payment(&"k".repeat(255), &body).await;
    assert_eq!(created["reference"], "order-bad");
}

#[tokio::test]
async fn malformed_customer_details_are_422_naming_the_field() {
    let app = spawn_app().await;
    let with_customer = |customer: Value| {
        let mut body = usd("12.00");
        body["customer"] = customer;
        bytes(&body)
    };
    let cases: [(&str, &str, Value); 5] = [
        (
            "not an IP address",
            "customer.ip_address",
            json!({"ip_address": "10.0.0.256"}),
        ),
        (
            "phone with letters",
            "customer.phone",
            json!({"phone": "+57 300 CALL"}),
        ),
        (
            "blank name",
            "customer.full_name",
            json!({"full_name": "   "}),
        ),
        (
            "document with spaces",
            "customer.document_number",
            json!({"document_number": "1 999"}),
        ),
        (
            "control character in the browser",
            "customer.user_agent",
            json!({"user_agent": "a\u{7}b"}),
        ),
    ];
    for (case, field, customer) in cases {
        refuse_creates(&app, &[(case, with_customer(customer))], 422, Some(field)).await;
    }
    refuse_creates(
        &app,
        &[(
            "unknown customer field",
            with_customer(json!({"email": "a@b.co"})),
        )],
        422,
        None,
    )
    .await;

    let created = app
        .create_payment(
            "customer-ok",
            &serde_json::from_slice::<Value>(&with_customer(json!({
                "full_name": "Ana María Pérez",
                "phone": "+573001234567",
                "ip_address": "190.24.8.77",
            })))
            .expect("json"),
        )
        .await;
    assert_eq!(created["reference"], "order-bad", "{created}");
    let shown = created.to_string();
    assert!(
        !shown.contains("Ana María") && !shown.contains("190.24.8.77"),
        "{shown}"
    );
}

#[tokio::test]
async fn reference_longer_than_128_is_422() {
    let app = spawn_app().await;
    let long = payment_body(
        "1.00",
        "USD",
        &"r".repeat(129),
        "tok_sandbox_approved",
        "automatic",
    );
    let empty = payment_body("1.00", "USD", "", "tok_sandbox_approved", "automatic");
    let control = payment_body("1.00", "USD", "a\nb", "tok_sandbox_approved", "automatic");
    refuse_creates(
        &app,
        &[
            ("129-character reference", bytes(&long)),
            ("empty reference", bytes(&empty)),
            ("control character", bytes(&control)),
        ],
        422,
        Some("reference"),
    )
    .await;
    let at_bound = payment_body(
        "1.00",
        "USD",
        &"r".repeat(128),
        "tok_sandbox_approved",
        "automatic",
    );
    app.create_payment("ref-128", &at_bound).await;
}

#[tokio::test]
async fn missing_or_unknown_authorization_is_401() {
    let app = spawn_app().await;
    let body = bytes(&usd("1.00"));
    let before = app.event_count().await;
    let url = format!("{}/v1/payments", app.address);

    let no_header = app
        .http
        .post(&url)
        .header(CONTENT_TYPE, "application/json")
        .header("Idempotency-Key", "auth-0")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    problem(no_header, 401, "create without Authorization").await;

    let cases = [
        (
            "unknown key",
            "Bearer pl_checkout_0000000000000000".to_owned(),
        ),
        ("empty bearer", "Bearer ".to_owned()),
        ("basic scheme", "Basic dXNlcjpwYXNz".to_owned()),
        // The right key under the wrong scheme is not accepted either.
        ("key without scheme", app.checkout_key.clone()),
    ];
    for (case, header) in &cases {
        let response = app
            .http
            .post(&url)
            .header(CONTENT_TYPE, "application/json")
            .header("Authorization", header)
            .header("Idempotency-Key", "auth-1")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        let body = problem(response, 401, &format!("create, {case}")).await;
        assert!(
            !body.to_string().contains(&app.checkout_key[8..]),
            "{case}: the problem echoes the API key: {body}"
        );
        let response = app
            .http
            .get(&url)
            .header("Authorization", header)
            .send()
            .await
            .unwrap();
        problem(response, 401, &format!("list, {case}")).await;
    }
    let no_header = app.http.get(&url).send().await.unwrap();
    problem(no_header, 401, "list without Authorization").await;

    assert_eq!(app.event_count().await, before);
    assert_eq!(status_rows(&app).await, 0);
}

/// GET, events, capture, refund and void of `id` with `key`, each expected to be a `404`.
async fn all_not_found(app: &TestApp, id: &str, key: &str, case: &str) {
    let get = app.get(&format!("/v1/payments/{id}"), key).await;
    problem(get, 404, &format!("{case}: GET")).await;
    let events = app.get(&format!("/v1/payments/{id}/events"), key).await;
    problem(events, 404, &format!("{case}: GET events")).await;
    let refund = app
        .post(
            &format!("/v1/payments/{id}/refunds"),
            key,
            Some("nf-refund"),
            &json!({"amount": "1.00"}),
        )
        .await;
    problem(refund, 404, &format!("{case}: refund")).await;
    let capture = app
        .post(
            &format!("/v1/payments/{id}/capture"),
            key,
            Some("nf-capture"),
            &json!({}),
        )
        .await;
    problem(capture, 404, &format!("{case}: capture")).await;
    let void = app
        .post(&format!("/v1/payments/{id}/void"), key, None, &json!({}))
        .await;
    problem(void, 404, &format!("{case}: void")).await;
}

#[tokio::test]
async fn unknown_and_malformed_payment_ids_are_404() {
    let app = spawn_app().await;
    let before = app.event_count().await;
    all_not_found(
        &app,
        &Uuid::new_v4().to_string(),
        &app.checkout_key,
        "random UUID",
    )
    .await;
    all_not_found(&app, "not-a-uuid", &app.checkout_key, "non-UUID id").await;
    // An admin sees every merchant, and still nothing that does not exist.
    all_not_found(
        &app,
        &Uuid::new_v4().to_string(),
        &app.admin_key,
        "admin, random UUID",
    )
    .await;
    assert_eq!(app.event_count().await, before);
    assert_eq!(status_rows(&app).await, 0);
}

#[tokio::test]
async fn another_merchants_payment_is_404_and_untouched() {
    let app = spawn_app().await;
    let other = app.key_for("merchant-b").await;
    // One payment that could be captured or voided, one that could be refunded.
    let authorized = app
        .create_payment(
            "a-manual",
            &payment_body(
                "500.00",
                "USD",
                "o-manual",
                "tok_sandbox_approved",
                "manual",
            ),
        )
        .await;
    let approved = app
        .create_payment(
            "a-auto",
            &payment_body(
                "70.00",
                "USD",
                "o-auto",
                "tok_sandbox_approved",
                "automatic",
            ),
        )
        .await;
    let authorized = authorized["id"].as_str().unwrap().to_owned();
    let approved = approved["id"].as_str().unwrap().to_owned();
    app.wait_for_status(&authorized, "AUTHORIZED").await;
    app.wait_for_status(&approved, "APPROVED").await;

    let before = app.event_count().await;
    all_not_found(
        &app,
        &authorized,
        &other,
        "merchant B on A's authorized payment",
    )
    .await;
    all_not_found(
        &app,
        &approved,
        &other,
        "merchant B on A's approved payment",
    )
    .await;
    assert_eq!(app.event_count().await, before);

    let page: Value = app.get("/v1/payments", &other).await.json().await.unwrap();
    assert_eq!(page["data"], json!([]), "merchant B lists A's payments");

    // Merchant A still sees both, unchanged.
    let view = app.read_at_least(&authorized, 2).await;
    assert_eq!(view["status"], "AUTHORIZED");
    assert_eq!(view["captured_amount"], "0.00");
    let view = app.read_at_least(&approved, 2).await;
    assert_eq!(view["status"], "APPROVED");
    assert_eq!(view["refunded_amount"], "0.00");
}

#[tokio::test]
async fn refund_above_captured_is_422_and_appends_nothing() {
    let app = spawn_app().await;
    let created = app
        .create_payment(
            "k-ref",
            &payment_body("500.00", "USD", "o-ref", "tok_sandbox_approved", "manual"),
        )
        .await;
    let id = created["id"].as_str().unwrap().to_owned();
    app.wait_for_status(&id, "AUTHORIZED").await;
    let captured = app
        .post(
            &format!("/v1/payments/{id}/capture"),
            &app.checkout_key,
            Some("c-1"),
            &json!({"amount": "300.00"}),
        )
        .await;
    assert_eq!(captured.status(), 201);

    let before = app.event_count().await;
    // Within what was authorized, but above what was captured.
    for (i, amount) in ["300.01", "500.00"].into_iter().enumerate() {
        let response = app
            .post(
                &format!("/v1/payments/{id}/refunds"),
                &app.checkout_key,
                Some(&format!("r-over-{i}")),
                &json!({"amount": amount}),
            )
            .await;
        problem(
            response,
            422,
            &format!("refund {amount} of 300.00 captured"),
        )
        .await;
    }
    assert_eq!(app.event_count().await, before);

    // The refusals reserved nothing: all that was captured can still be refunded.
    let refund = app
        .post(
            &format!("/v1/payments/{id}/refunds"),
            &app.checkout_key,
            Some("r-over-0"),
            &json!({"amount": "300.00"}),
        )
        .await;
    assert_eq!(refund.status(), 201);
}

#[tokio::test]
async fn refund_with_bad_amounts_is_422_naming_amount() {
    let app = spawn_app().await;
    let created = app
        .create_payment(
            "k-ra",
            &payment_body("100", "JPY", "o-ra", "tok_sandbox_approved", "automatic"),
        )
        .await;
    let id = created["id"].as_str().unwrap().to_owned();
    app.wait_for_status(&id, "APPROVED").await;
    let before = app.event_count().await;
    for amount in ["1.5", "0", "-1", "1e1", " 1"] {
        let response = app
            .post(
                &format!("/v1/payments/{id}/refunds"),
                &app.checkout_key,
                Some("r-bad"),
                &json!({"amount": amount}),
            )
            .await;
        let body = problem(response, 422, &format!("refund amount `{amount}` JPY")).await;
        assert!(
            error_fields(&body).iter().any(|f| f == "amount"),
            "refund `{amount}`: {body}"
        );
    }
    assert_eq!(app.event_count().await, before);
}

#[tokio::test]
async fn capture_after_void_is_409_and_appends_nothing() {
    let app = spawn_app().await;
    let created = app
        .create_payment(
            "k-cv",
            &payment_body("80.00", "PHP", "o-cv", "tok_sandbox_approved", "manual"),
        )
        .await;
    let id = created["id"].as_str().unwrap().to_owned();
    app.wait_for_status(&id, "AUTHORIZED").await;
    let voided = app
        .post(
            &format!("/v1/payments/{id}/void"),
            &app.checkout_key,
            None,
            &json!({}),
        )
        .await;
    assert_eq!(voided.status(), 200);
    let voided: Value = voided.json().await.unwrap();

    let before = app.event_count().await;
    let full = app
        .post(
            &format!("/v1/payments/{id}/capture"),
            &app.checkout_key,
            Some("c-after-void"),
            &json!({}),
        )
        .await;
    problem(full, 409, "full capture after void").await;
    let partial = app
        .post(
            &format!("/v1/payments/{id}/capture"),
            &app.checkout_key,
            Some("c-after-void-2"),
            &json!({"amount": "10.00"}),
        )
        .await;
    problem(partial, 409, "partial capture after void").await;
    assert_eq!(app.event_count().await, before);
    let view = app
        .read_at_least(&id, voided["version"].as_i64().unwrap())
        .await;
    assert_eq!(view["status"], "VOIDED");
    assert_eq!(view["captured_amount"], "0.00");
}

#[tokio::test]
async fn refund_of_a_declined_payment_is_409() {
    let app = spawn_app().await;
    let created = app
        .create_payment(
            "k-rd",
            &payment_body("25.00", "USD", "o-rd", "tok_sandbox_declined", "automatic"),
        )
        .await;
    let id = created["id"].as_str().unwrap().to_owned();
    app.wait_for_status(&id, "DECLINED").await;
    let before = app.event_count().await;
    let types_before = app.event_types(&id).await;
    let response = app
        .post(
            &format!("/v1/payments/{id}/refunds"),
            &app.checkout_key,
            Some("r-dec"),
            &json!({"amount": "25.00"}),
        )
        .await;
    problem(response, 409, "refund of a declined payment").await;
    assert_eq!(app.event_count().await, before);
    assert_eq!(app.event_types(&id).await, types_before);
    assert_eq!(
        count(&types_before, "PaymentDeclined"),
        1,
        "{types_before:?}"
    );
}

#[tokio::test]
async fn capture_above_authorized_is_422_and_appends_nothing() {
    let app = spawn_app().await;
    let created = app
        .create_payment(
            "k-ca",
            &payment_body("500.00", "USD", "o-ca", "tok_sandbox_approved", "manual"),
        )
        .await;
    let id = created["id"].as_str().unwrap().to_owned();
    app.wait_for_status(&id, "AUTHORIZED").await;
    let before = app.event_count().await;
    let types_before = app.event_types(&id).await;
    let over = app
        .post(
            &format!("/v1/payments/{id}/capture"),
            &app.checkout_key,
            Some("c-over"),
            &json!({"amount": "500.01"}),
        )
        .await;
    problem(over, 422, "capture 500.01 of 500.00").await;
    let bad_scale = app
        .post(
            &format!("/v1/payments/{id}/capture"),
            &app.checkout_key,
            Some("c-over"),
            &json!({"amount": "1.001"}),
        )
        .await;
    let body = problem(bad_scale, 422, "capture 1.001 USD").await;
    assert!(error_fields(&body).iter().any(|f| f == "amount"), "{body}");
    assert_eq!(app.event_count().await, before);
    let types = app.event_types(&id).await;
    assert_eq!(types, types_before);
    assert_eq!(count(&types, "PaymentApproved"), 0, "{types:?}");

    // The refused capture did not burn its key: the same key captures a valid amount.
    let ok = app
        .post(
            &format!("/v1/payments/{id}/capture"),
            &app.checkout_key,
            Some("c-over"),
            &json!({"amount": "500.00"}),
        )
        .await;
    assert_eq!(ok.status(), 201);
}

#[tokio::test]
async fn list_refuses_bad_limits_statuses_and_cursors() {
    let app = spawn_app().await;
    let cases = [
        ("limit=501", Some("limit")),
        ("limit=0", Some("limit")),
        ("limit=-1", Some("limit")),
        ("status=BOGUS", Some("status")),
        ("cursor=garbage", Some("cursor")),
        // Valid hex that does not decode to a cursor this API made.
        ("cursor=deadbeef", Some("cursor")),
        // Not a number, and a parameter the API does not have.
        ("limit=ten", None),
        ("colour=red", None),
    ];
    for (query, field) in cases {
        let response = app
            .get(&format!("/v1/payments?{query}"), &app.checkout_key)
            .await;
        let body = problem(response, 422, query).await;
        if let Some(field) = field {
            assert!(
                error_fields(&body).iter().any(|f| f == field),
                "{query}: errors[] should name `{field}`: {body}"
            );
        }
    }
    // The bounds themselves are fine.
    for query in ["limit=500", "limit=1", "status=APPROVED"] {
        let response = app
            .get(&format!("/v1/payments?{query}"), &app.checkout_key)
            .await;
        assert_eq!(response.status(), 200, "{query}");
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

fn authorized_webhook(
    event_id: &str,
    (payment_id, transaction_id): (&str, &str),
    amount: &str,
    currency: &str,
) -> Vec<u8> {
    bytes(&json!({
        "id": event_id,
        "type": "transaction.updated",
        "created_at": "2026-11-21T00:00:00Z",
        "data": {
            "transaction_id": transaction_id,
            "payment_id": payment_id,
            "status": "AUTHORIZED",
            "amount": amount,
            "currency": currency,
            "reason": null
        }
    }))
}

async fn post_webhook(app: &TestApp, body: Vec<u8>, signature: Option<&str>) -> reqwest::Response {
    let mut request = app
        .http
        .post(format!("{}/v1/webhooks/sandbox", app.address))
        .header(CONTENT_TYPE, "application/json")
        .body(body);
    if let Some(signature) = signature {
        request = request.header(SANDBOX_SIGNATURE_HEADER, signature);
    }
    request.send().await.expect("request sent")
}

#[tokio::test]
async fn webhooks_with_a_bad_signature_are_401_and_append_nothing() {
    let app = spawn_app_with_a_silent_sandbox().await;
    let created = app
        .create_payment(
            "k-wh",
            &payment_body("42.00", "USD", "o-wh", "tok_sandbox_approved", "manual"),
        )
        .await;
    assert_eq!(created["status"], "PENDING");
    let id = created["id"].as_str().unwrap().to_owned();
    let transaction = created["provider_reference"].as_str().unwrap().to_owned();
    let target = (id.as_str(), transaction.as_str());
    let secret = app.settings.sandbox.webhook_secret.as_bytes().to_vec();
    let body = authorized_webhook("evt_sig_1", target, "42.00", "USD");
    let good = sandbox_signature(&secret, &body);
    let tampered = authorized_webhook("evt_sig_1", target, "41.00", "USD");

    let before = app.event_count().await;
    let types_before = app.event_types(&id).await;
    assert_eq!(count(&types_before, "PaymentAuthorized"), 0);
    let cases: [(&str, Vec<u8>, Option<String>); 5] = [
        (
            "signed with the wrong secret",
            body.clone(),
            Some(sandbox_signature(b"not the sandbox secret", &body)),
        ),
        ("no signature header", body.clone(), None),
        ("empty signature", body.clone(), Some(String::new())),
        ("tampered body", tampered, Some(good.clone())),
        (
            "signature of another event",
            body.clone(),
            Some(sandbox_signature(
                &secret,
                &authorized_webhook("evt_sig_2", target, "42.00", "USD"),
            )),
        ),
    ];
    for (case, raw, signature) in cases {
        let response = post_webhook(&app, raw, signature.as_deref()).await;
        problem(response, 401, case).await;
        assert_eq!(app.event_count().await, before, "{case}: appended");
    }
    assert_eq!(app.event_types(&id).await, types_before);

    // Control: the same body, correctly signed, is what would have been recorded.
    let response = post_webhook(&app, body, Some(&good)).await;
    assert_eq!(response.status(), 200);
    let types = app.event_types(&id).await;
    assert_eq!(types.len(), types_before.len() + 1, "{types:?}");
    assert_eq!(types.last().map(String::as_str), Some("PaymentAuthorized"));
}

#[tokio::test]
async fn capture_refund_and_void_bodies_are_as_strict_as_create() {
    let app = spawn_app().await;
    let manual = app
        .create_payment(
            "k-sb",
            &payment_body("60.00", "USD", "o-sb", "tok_sandbox_approved", "manual"),
        )
        .await;
    let auto = app
        .create_payment(
            "k-sb2",
            &payment_body("60.00", "USD", "o-sb2", "tok_sandbox_approved", "automatic"),
        )
        .await;
    let manual = manual["id"].as_str().unwrap().to_owned();
    let auto = auto["id"].as_str().unwrap().to_owned();
    app.wait_for_status(&manual, "AUTHORIZED").await;
    app.wait_for_status(&auto, "APPROVED").await;
    let before = app.event_count().await;

    let capture = format!("/v1/payments/{manual}/capture");
    let refund = format!("/v1/payments/{auto}/refunds");
    let cases: [(&str, &str, &[u8], u16); 10] = [
        (
            "capture, JSON number",
            &capture,
            br#"{"amount":10.00}"#,
            422,
        ),
        (
            "capture, unknown field",
            &capture,
            br#"{"amount":"10.00","tip":"1.00"}"#,
            422,
        ),
        (
            "capture, duplicate amount",
            &capture,
            br#"{"amount":"10.00","amount":"60.00"}"#,
            422,
        ),
        (
            "capture, broken JSON",
            &capture,
            br#"{"amount":"10.00""#,
            400,
        ),
        (
            "capture, negative",
            &capture,
            br#"{"amount":"-10.00"}"#,
            422,
        ),
        ("refund, JSON number", &refund, br#"{"amount":10.00}"#, 422),
        (
            "refund, missing amount",
            &refund,
            br#"{"reason":"customer request"}"#,
            422,
        ),
        (
            "refund, unknown field",
            &refund,
            br#"{"amount":"10.00","currency":"EUR"}"#,
            422,
        ),
        (
            "refund, duplicate amount",
            &refund,
            br#"{"amount":"10.00","amount":"60.00"}"#,
            422,
        ),
        ("refund, broken JSON", &refund, b"amount=10.00", 400),
    ];
    for (i, (case, path, raw, status)) in cases.into_iter().enumerate() {
        let response = app
            .post_raw(
                path,
                &app.checkout_key,
                Some(&format!("sb-{i}")),
                raw.to_vec(),
            )
            .await;
        problem(response, status, case).await;
        assert_eq!(app.event_count().await, before, "{case}: appended");
    }
    let refund_without_key = app
        .post(&refund, &app.checkout_key, None, &json!({"amount": "1.00"}))
        .await;
    problem(refund_without_key, 400, "refund without Idempotency-Key").await;
    let capture_without_key = app
        .post(
            &capture,
            &app.checkout_key,
            None,
            &json!({"amount": "1.00"}),
        )
        .await;
    problem(capture_without_key, 400, "capture without Idempotency-Key").await;
    assert_eq!(app.event_count().await, before);
}

/// A status and a problem+json body as asked, or what came instead (as text).
async fn check_problem(response: reqwest::Response, status: u16) -> Result<Value, String> {
    let actual = response.status().as_u16();
    let content_type = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let text = response.text().await.unwrap_or_default();
    if actual != status || !content_type.starts_with("application/problem+json") {
        return Err(format!("{actual} {content_type}: {text}"));
    }
    serde_json::from_str(&text).map_err(|e| format!("not JSON ({e}): {text}"))
}

#[tokio::test]
async fn void_refuses_a_body_it_does_not_take() {
    let app = spawn_app().await;
    // Void takes no fields: a body asking for something else (a partial void) is refused,
    // not silently turned into a full void.
    let cases: [(&str, &[u8], u16); 2] = [
        ("unknown field", br#"{"amount":"10.00"}"#, 422),
        ("broken JSON", b"amount=10.00", 400),
    ];
    let mut failures = Vec::new();
    for (i, (case, raw, status)) in cases.into_iter().enumerate() {
        let created = app
            .create_payment(
                &format!("k-vb-{i}"),
                &payment_body(
                    "60.00",
                    "USD",
                    &format!("o-vb-{i}"),
                    "tok_sandbox_approved",
                    "manual",
                ),
            )
            .await;
        let id = created["id"].as_str().unwrap().to_owned();
        app.wait_for_status(&id, "AUTHORIZED").await;
        let before = app.event_count().await;
        let response = app
            .post_raw(
                &format!("/v1/payments/{id}/void"),
                &app.checkout_key,
                None,
                raw.to_vec(),
            )
            .await;
        if let Err(got) = check_problem(response, status).await {
            failures.push(format!(
                "void with {case} body: expected {status}, got {got}"
            ));
        }
        let types = app.event_types(&id).await;
        if app.event_count().await != before {
            failures.push(format!("void with {case} body appended: {types:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn bodies_that_are_not_json_objects_are_refused() {
    let app = spawn_app().await;
    let manual = app
        .create_payment(
            "k-arr-m",
            &payment_body("60.00", "USD", "o-arr-m", "tok_sandbox_approved", "manual"),
        )
        .await;
    let auto = app
        .create_payment(
            "k-arr-a",
            &payment_body(
                "60.00",
                "USD",
                "o-arr-a",
                "tok_sandbox_approved",
                "automatic",
            ),
        )
        .await;
    let manual = manual["id"].as_str().unwrap().to_owned();
    let auto = auto["id"].as_str().unwrap().to_owned();
    app.wait_for_status(&manual, "AUTHORIZED").await;
    app.wait_for_status(&auto, "APPROVED").await;
    let before = app.event_count().await;

    // Positional arrays in place of the documented objects: no field names, so nothing for
    // "unknown fields are refused" to check.
    let cases: [(&str, String, &[u8]); 4] = [
        (
            "create as an array",
            "/v1/payments".to_owned(),
            br#"["1.00","USD","o-arr",["CARD","tok_sandbox_approved"]]"#,
        ),
        (
            "payment_method as an array",
            "/v1/payments".to_owned(),
            br#"{"amount":"1.00","currency":"USD","reference":"o-arr2","payment_method":["CARD","tok_sandbox_approved"]}"#,
        ),
        (
            "capture as an array",
            format!("/v1/payments/{manual}/capture"),
            br#"["10.00"]"#,
        ),
        (
            "refund as an array",
            format!("/v1/payments/{auto}/refunds"),
            br#"["10.00"]"#,
        ),
    ];
    let mut failures = Vec::new();
    for (i, (case, path, raw)) in cases.into_iter().enumerate() {
        let response = app
            .post_raw(
                &path,
                &app.checkout_key,
                Some(&format!("arr-{i}")),
                raw.to_vec(),
            )
            .await;
        let status = response.status().as_u16();
        if !(400..500).contains(&status) {
            let text = response.text().await.unwrap_or_default();
            failures.push(format!(
                "{case}: POST {path} expected 4xx, got {status}: {text}"
            ));
        } else if let Err(got) = check_problem(response, status).await {
            failures.push(format!("{case}: not a problem: {got}"));
        }
    }
    let appended = app.event_count().await - before;
    if appended != 0 {
        failures.push(format!("{appended} events appended"));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn problems_never_echo_the_payment_token() {
    let app = spawn_app().await;
    let token = "tok_sandbox_approved_4111111111111111";
    let mut token_as_method = usd("1.00");
    token_as_method["payment_method"] = json!(token);
    let mut token_as_number = usd("1.00");
    token_as_number["payment_method"]["token"] = json!(4_111_111_111_111_111_u64);
    let mut token_in_type = usd("1.00");
    token_in_type["payment_method"]["type"] = json!(token);
    let mut token_in_unknown_field = usd("1.00");
    token_in_unknown_field["payment_method"] = json!({"type": "CARD", "tokn": token});
    let before = app.event_count().await;
    let mut leaks = Vec::new();
    for (i, (case, body)) in [
        ("token sent as payment_method", token_as_method),
        ("card number sent as a JSON number token", token_as_number),
        ("token sent as the method type", token_in_type),
        ("token under a misspelt field", token_in_unknown_field),
    ]
    .into_iter()
    .enumerate()
    {
        let response = app
            .post(
                "/v1/payments",
                &app.checkout_key,
                Some(&format!("tok-{i}")),
                &body,
            )
            .await;
        let problem = problem(response, 422, case).await;
        let text = problem.to_string();
        if text.contains("4111111111111111") {
            leaks.push(format!("{case}: {text}"));
        }
    }
    assert_eq!(app.event_count().await, before);
    assert!(
        leaks.is_empty(),
        "problems echo the token:\n{}",
        leaks.join("\n")
    );
}

#[tokio::test]
async fn a_body_not_declared_json_is_415_and_changes_nothing() {
    let app = spawn_app().await;
    let body = bytes(&usd("1.00"));
    let before = app.event_count().await;
    let url = format!("{}/v1/payments", app.address);
    for (case, content_type) in [
        ("text/plain", Some("text/plain")),
        ("form", Some("application/x-www-form-urlencoded")),
        ("no content type", None),
        ("not a media type", Some("json")),
    ] {
        let mut request = app
            .http
            .post(&url)
            .bearer_auth(&app.checkout_key)
            .header(
                "Idempotency-Key",
                format!("ct-{}", case.replace([' ', '/'], "-")),
            )
            .body(body.clone());
        if let Some(content_type) = content_type {
            request = request.header(CONTENT_TYPE, content_type);
        }
        let response = request.send().await.unwrap();
        let problem = problem(response, 415, case).await;
        assert!(
            problem["detail"]
                .as_str()
                .unwrap()
                .contains("application/json"),
            "{case}: {problem}"
        );
    }
    assert_eq!(app.event_count().await, before, "nothing appended");

    // JSON with a charset, or a +json type, is JSON.
    for (n, content_type) in [
        "application/json; charset=utf-8",
        "application/problem+json",
    ]
    .into_iter()
    .enumerate()
    {
        let response = app
            .http
            .post(&url)
            .bearer_auth(&app.checkout_key)
            .header("Idempotency-Key", format!("ct-ok-{n}"))
            .header(CONTENT_TYPE, content_type)
            .body(bytes(&json!({
                "amount": "1.00", "currency": "USD", "reference": format!("ct-ok-{n}"),
                "payment_method": {"type": "CARD", "token": "tok_sandbox_approved"},
            })))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201, "{content_type}");
    }
}

/// `min_version` waits only for a version the caller's own payment has: a huge one, another
/// merchant's payment or a missing one answer at once (a wait lasts up to two seconds).
#[tokio::test]
async fn min_version_never_waits_for_what_does_not_exist() {
    let app = spawn_app().await;
    let created = app
        .create_payment(
            "mv-1",
            &payment_body("5.00", "USD", "mv-1", "tok_sandbox_approved", "automatic"),
        )
        .await;
    let id = created["id"].as_str().unwrap().to_owned();
    let approved = app.wait_for_status(&id, "APPROVED").await;
    let version = approved["version"].as_i64().unwrap();
    let quickly = std::time::Duration::from_millis(1_500);

    let started = std::time::Instant::now();
    let huge = app
        .get(
            &format!("/v1/payments/{id}?min_version=9223372036854775807"),
            &app.checkout_key,
        )
        .await;
    assert_eq!(huge.status(), 200);
    assert_eq!(huge.json::<Value>().await.unwrap()["version"], version);
    assert!(
        started.elapsed() < quickly,
        "waited {:?}",
        started.elapsed()
    );

    let other = app.key_for("merchant-z").await;
    for (case, path, key) in [
        (
            "another merchant's",
            format!("/v1/payments/{id}?min_version=99"),
            &other,
        ),
        (
            "missing",
            format!("/v1/payments/{}?min_version=99", Uuid::new_v4()),
            &app.checkout_key,
        ),
    ] {
        let started = std::time::Instant::now();
        let response = app.get(&path, key).await;
        problem(response, 404, case).await;
        assert!(
            started.elapsed() < quickly,
            "{case}: waited {:?}",
            started.elapsed()
        );
    }
    let negative = app
        .get(
            &format!("/v1/payments/{id}?min_version=-1"),
            &app.checkout_key,
        )
        .await;
    problem(negative, 422, "negative min_version").await;

    // Many at once, none waits once the projection holds every event of the stream: the
    // bounds on waiting reads are never reached.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let events: Value = app
            .get(&format!("/v1/payments/{id}/events"), &app.checkout_key)
            .await
            .json()
            .await
            .unwrap();
        let stream_version = events["data"].as_array().unwrap().len();
        let read = app.read_at_least(&id, stream_version as i64).await;
        if read["version"] == stream_version {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{read}");
    }
    let path = format!("/v1/payments/{id}?min_version=1000000");
    let reads = (0..200).map(|_| app.get(&path, &app.checkout_key));
    for response in futures::future::join_all(reads).await {
        let status = response.status();
        assert_eq!(status, 200, "{}", response.text().await.unwrap());
    }
}
