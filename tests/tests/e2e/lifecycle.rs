//! The payment lifecycle over HTTP, against real PostgreSQL, RabbitMQ and the sandbox.

use e2e::{payment_body, spawn_app};
use serde_json::json;

#[tokio::test]
async fn automatic_capture_then_partial_and_full_refund_ends_refunded() {
    let app = spawn_app().await;
    let created = app
        .create_payment(
            "k-auto",
            &payment_body(
                "129000.00",
                "COP",
                "order-1",
                "tok_sandbox_approved",
                "automatic",
            ),
        )
        .await;
    assert_eq!(created["status"], "PENDING");
    assert_eq!(created["amount"], "129000.00");
    let id = created["id"].as_str().unwrap().to_owned();

    let approved = app.wait_for_status(&id, "APPROVED").await;
    assert_eq!(approved["captured_amount"], "129000.00");
    assert_eq!(approved["provider"], "sandbox");

    let first = app
        .post(
            &format!("/v1/payments/{id}/refunds"),
            &app.checkout_key,
            Some("r-1"),
            &json!({"amount": "29000.00", "reason": "customer request"}),
        )
        .await;
    assert_eq!(first.status(), 201);
    let first: serde_json::Value = first.json().await.unwrap();
    assert_eq!(first["status"], "SUCCEEDED");
    assert_eq!(first["payment"]["status"], "PARTIALLY_REFUNDED");
    let partially = app
        .read_at_least(&id, first["payment"]["version"].as_i64().unwrap())
        .await;
    assert_eq!(partially["status"], "PARTIALLY_REFUNDED");
    assert_eq!(partially["refunded_amount"], "29000.00");

    let second = app
        .post(
            &format!("/v1/payments/{id}/refunds"),
            &app.checkout_key,
            Some("r-2"),
            &json!({"amount": "100000.00"}),
        )
        .await;
    assert_eq!(second.status(), 201);
    let second: serde_json::Value = second.json().await.unwrap();
    let refunded = app
        .read_at_least(&id, second["payment"]["version"].as_i64().unwrap())
        .await;
    assert_eq!(refunded["status"], "REFUNDED");
    assert_eq!(refunded["refunded_amount"], "129000.00");
    assert_eq!(refunded["captured_amount"], "129000.00");

    let events: serde_json::Value = app
        .get(&format!("/v1/payments/{id}/events"), &app.checkout_key)
        .await
        .json()
        .await
        .unwrap();
    let types: Vec<&str> = events["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "PaymentInitiated",
            "ProviderAttemptStarted",
            "ProviderTransactionCreated",
            "PaymentApproved",
            "RefundRequested",
            "PaymentRefunded",
            "RefundRequested",
            "PaymentRefunded"
        ]
    );
    let sequences: Vec<i64> = events["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["sequence"].as_i64().unwrap())
        .collect();
    assert_eq!(sequences, [1, 2, 3, 4, 5, 6, 7, 8]);
}

#[tokio::test]
async fn manual_capture_authorizes_then_partial_capture_then_refund() {
    let app = spawn_app().await;
    let created = app
        .create_payment(
            "k-manual",
            &payment_body("500.00", "USD", "order-m", "tok_sandbox_approved", "manual"),
        )
        .await;
    let id = created["id"].as_str().unwrap().to_owned();
    let authorized = app.wait_for_status(&id, "AUTHORIZED").await;
    assert_eq!(authorized["authorized_amount"], "500.00");
    assert_eq!(authorized["captured_amount"], "0.00");

    let captured = app
        .post(
            &format!("/v1/payments/{id}/capture"),
            &app.checkout_key,
            Some("c-1"),
            &json!({"amount": "300.00"}),
        )
        .await;
    assert_eq!(captured.status(), 201);
    let captured: serde_json::Value = captured.json().await.unwrap();
    assert_eq!(captured["status"], "APPROVED");
    let view = app
        .read_at_least(&id, captured["version"].as_i64().unwrap())
        .await;
    assert_eq!(view["captured_amount"], "300.00");
    assert_eq!(view["authorized_amount"], "500.00");

    let refund = app
        .post(
            &format!("/v1/payments/{id}/refunds"),
            &app.checkout_key,
            Some("r-1"),
            &json!({"amount": "300.00"}),
        )
        .await;
    assert_eq!(refund.status(), 201);
    let refund: serde_json::Value = refund.json().await.unwrap();
    let view = app
        .read_at_least(&id, refund["payment"]["version"].as_i64().unwrap())
        .await;
    assert_eq!(view["status"], "REFUNDED");
    assert_eq!(view["refunded_amount"], "300.00");
}

#[tokio::test]
async fn declined_card_ends_declined_with_the_reason() {
    let app = spawn_app().await;
    let created = app
        .create_payment(
            "k-dec",
            &payment_body(
                "10000.00",
                "COP",
                "order-d",
                "tok_sandbox_declined",
                "automatic",
            ),
        )
        .await;
    let id = created["id"].as_str().unwrap().to_owned();
    let declined = app.wait_for_status(&id, "DECLINED").await;
    assert_eq!(declined["failure_reason"], "card_declined");
    assert_eq!(declined["captured_amount"], "0.00");
    assert_eq!(
        app.event_types(&id).await,
        [
            "PaymentInitiated",
            "ProviderAttemptStarted",
            "ProviderTransactionCreated",
            "PaymentDeclined"
        ]
    );
}

#[tokio::test]
async fn provider_error_records_the_attempt_and_fails_the_payment() {
    let app = spawn_app().await;
    let created = app
        .create_payment(
            "k-err",
            &payment_body(
                "10000.00",
                "COP",
                "order-e",
                "tok_sandbox_error",
                "automatic",
            ),
        )
        .await;
    assert_eq!(created["status"], "FAILED");
    assert_eq!(created["failure_reason"], "provider_unavailable");
    let id = created["id"].as_str().unwrap().to_owned();
    let failed = app.wait_for_status(&id, "FAILED").await;
    assert_eq!(failed["version"], 4);
    assert_eq!(
        app.event_types(&id).await,
        [
            "PaymentInitiated",
            "ProviderAttemptStarted",
            "ProviderAttemptFailed",
            "PaymentFailed"
        ]
    );
}

#[tokio::test]
async fn void_releases_an_authorization() {
    let app = spawn_app().await;
    let created = app
        .create_payment(
            "k-void",
            &payment_body("80.00", "PHP", "order-v", "tok_sandbox_approved", "manual"),
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
    let voided: serde_json::Value = voided.json().await.unwrap();
    assert_eq!(voided["status"], "VOIDED");
    let view = app
        .read_at_least(&id, voided["version"].as_i64().unwrap())
        .await;
    assert_eq!(view["status"], "VOIDED");
    assert_eq!(view["captured_amount"], "0.00");
}

#[tokio::test]
async fn list_filters_by_status_and_pages_with_a_cursor() {
    let app = spawn_app().await;
    for i in 0..5 {
        let token = if i % 2 == 0 {
            "tok_sandbox_approved"
        } else {
            "tok_sandbox_declined"
        };
        let created = app
            .create_payment(
                &format!("k-{i}"),
                &payment_body("1.00", "USD", &format!("o-{i}"), token, "automatic"),
            )
            .await;
        let want = if i % 2 == 0 { "APPROVED" } else { "DECLINED" };
        app.wait_for_status(created["id"].as_str().unwrap(), want)
            .await;
    }
    let page: serde_json::Value = app
        .get("/v1/payments?status=APPROVED&limit=2", &app.checkout_key)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["data"].as_array().unwrap().len(), 2);
    let cursor = page["next_cursor"]
        .as_str()
        .expect("a second page")
        .to_owned();
    let next: serde_json::Value = app
        .get(
            &format!("/v1/payments?status=APPROVED&limit=2&cursor={cursor}"),
            &app.checkout_key,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(next["data"].as_array().unwrap().len(), 1);
    assert!(next["next_cursor"].is_null());
    let mut seen: Vec<String> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .chain(next["data"].as_array().unwrap())
        .map(|p| p["reference"].as_str().unwrap().to_owned())
        .collect();
    seen.sort();
    assert_eq!(seen, ["o-0", "o-2", "o-4"]);
}
