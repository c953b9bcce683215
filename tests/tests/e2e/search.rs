//! Finding payments: the small status read, and listing by order reference and creation time,
//! keyset-paged and scoped to the caller's merchant.

use chrono::{DateTime, Utc};
use e2e::{payment_body, spawn_app, TestApp};
use serde_json::Value;

async fn page(app: &TestApp, query: &str, key: &str) -> Value {
    let response = app.get(&format!("/v1/payments?{query}"), key).await;
    assert_eq!(response.status(), 200, "{query}");
    response.json().await.unwrap()
}

fn ids(page: &Value) -> Vec<String> {
    page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn the_status_read_is_small_and_follows_the_payment() {
    let app = spawn_app().await;
    let created = app
        .create_payment(
            "k-status",
            &payment_body(
                "5.00",
                "USD",
                "order-s",
                "tok_sandbox_approved",
                "automatic",
            ),
        )
        .await;
    let id = created["id"].as_str().unwrap();
    let full = app.wait_for_status(id, "APPROVED").await;

    let response = app
        .get(&format!("/v1/payments/{id}/status"), &app.checkout_key)
        .await;
    assert_eq!(response.status(), 200);
    let status: Value = response.json().await.unwrap();
    let mut fields: Vec<&str> = status
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    fields.sort_unstable();
    assert_eq!(fields, ["id", "status", "updated_at", "version"]);
    assert_eq!(status["id"], id);
    assert_eq!(status["status"], "APPROVED");
    assert_eq!(status["version"], full["version"]);
    assert_eq!(status["updated_at"], full["updated_at"]);

    // Another merchant's key, and a payment that does not exist, see nothing.
    let other = app.key_for("m-other").await;
    let hidden = app.get(&format!("/v1/payments/{id}/status"), &other).await;
    assert_eq!(hidden.status(), 404);
    let missing = app
        .get(
            "/v1/payments/0191f7a0-0000-7000-8000-000000000000/status",
            &app.checkout_key,
        )
        .await;
    assert_eq!(missing.status(), 404);
}

#[tokio::test]
async fn payments_are_found_by_reference_and_creation_time_within_the_merchant() {
    let app = spawn_app().await;
    let mut created = Vec::new();
    for (i, reference) in ["order-a", "order-b", "order-c"].iter().enumerate() {
        let payment = app
            .create_payment(
                &format!("k-{i}"),
                &payment_body(
                    "1.00",
                    "USD",
                    reference,
                    "tok_sandbox_approved",
                    "automatic",
                ),
            )
            .await;
        let id = payment["id"].as_str().unwrap().to_owned();
        let view = app.wait_for_status(&id, "APPROVED").await;
        let at: DateTime<Utc> = view["created_at"].as_str().unwrap().parse().unwrap();
        created.push((id, at));
    }
    // Another merchant's payment with the same reference is never in this merchant's answer.
    let other = app.key_for("m-other").await;
    let theirs = app
        .post(
            "/v1/payments",
            &other,
            Some("k-other"),
            &payment_body(
                "1.00",
                "USD",
                "order-b",
                "tok_sandbox_approved",
                "automatic",
            ),
        )
        .await;
    assert_eq!(theirs.status(), 201);
    // Read back once projected, so the admin's search below can find it.
    let theirs: Value = theirs.json().await.unwrap();
    let projected = app
        .get(
            &format!(
                "/v1/payments/{}?min_version={}",
                theirs["id"].as_str().unwrap(),
                theirs["version"]
            ),
            &other,
        )
        .await;
    assert_eq!(projected.status(), 200);

    let by_reference = page(&app, "reference=order-b", &app.checkout_key).await;
    assert_eq!(ids(&by_reference), [created[1].0.clone()]);
    assert_eq!(by_reference["data"][0]["reference"], "order-b");
    assert!(by_reference["next_cursor"].is_null());
    let none = page(&app, "reference=order-zzz", &app.checkout_key).await;
    assert!(ids(&none).is_empty());

    // [second, third) holds exactly the second payment; from the second on, two, newest first.
    let moment = |at: DateTime<Utc>| at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let window = format!(
        "created_gte={}&created_lt={}",
        urlencode(&moment(created[1].1)),
        urlencode(&moment(created[2].1))
    );
    assert_eq!(
        ids(&page(&app, &window, &app.checkout_key).await),
        [created[1].0.clone()]
    );
    let since = format!("created_gte={}&limit=1", urlencode(&moment(created[1].1)));
    let first = page(&app, &since, &app.checkout_key).await;
    assert_eq!(ids(&first), [created[2].0.clone()]);
    let cursor = first["next_cursor"].as_str().expect("a second page");
    let second = page(&app, &format!("{since}&cursor={cursor}"), &app.checkout_key).await;
    assert_eq!(ids(&second), [created[1].0.clone()]);
    assert!(second["next_cursor"].is_null());

    // The admin sees both merchants' payments with that reference.
    let everyone = page(&app, "reference=order-b", &app.admin_key).await;
    assert_eq!(ids(&everyone).len(), 2);
}

#[tokio::test]
async fn bad_search_filters_are_refused_by_name() {
    let app = spawn_app().await;
    for (query, field) in [
        ("created_gte=yesterday", "created_gte"),
        ("created_lt=2026-13-01T00:00:00Z", "created_lt"),
        ("reference=a%00b", "reference"),
    ] {
        let response = app
            .get(&format!("/v1/payments?{query}"), &app.checkout_key)
            .await;
        assert_eq!(response.status(), 422, "{query}");
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["errors"][0]["field"], field, "{query}: {problem}");
    }
}

fn urlencode(text: &str) -> String {
    text.replace('+', "%2B").replace(':', "%3A")
}
