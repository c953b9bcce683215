//! The service connects as a member of `payledger_app`, not as the tables' owner: it runs
//! whole payments through every part (store, relay, audit chain, projections, keys) and may
//! not change or erase the event stream, the audit chain or the webhook log, nor disable the
//! triggers that guard them. Migrations run as the owner (`DATABASE_OWNER_URL`).

use api::config::ServeRole;
use e2e::service_role::{self, SERVICE_ROLE};
use e2e::{fresh_settings, payment_body, spawn_app_configured};

#[tokio::test]
async fn the_service_role_runs_payments_and_cannot_rewrite_the_stream() {
    service_role::ensure().await;
    let app = spawn_app_configured(ServeRole::All, service_role::connect_as_service).await;
    let user: String = sqlx::query_scalar("SELECT current_user::text")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(user, SERVICE_ROLE, "the app's pool is the service role's");

    let created = app
        .create_payment(
            "role-1",
            &payment_body("6.00", "USD", "role-1", "tok_sandbox_approved", "automatic"),
        )
        .await;
    let id = created["id"].as_str().unwrap().to_owned();
    app.wait_for_status(&id, "APPROVED").await;
    let refund = app
        .post(
            &format!("/v1/payments/{id}/refunds"),
            &app.checkout_key,
            Some("role-r"),
            &serde_json::json!({"amount": "1.00"}),
        )
        .await;
    assert_eq!(refund.status(), 201, "a refund through the service role");

    for (case, statement) in [
        (
            "update an event",
            "UPDATE events SET payload = payload WHERE aggregate_id = $1".to_owned(),
        ),
        (
            "delete an event",
            "DELETE FROM events WHERE aggregate_id = $1".to_owned(),
        ),
        ("truncate the stream", "TRUNCATE events".to_owned()),
        (
            "disable its guard",
            "ALTER TABLE events DISABLE TRIGGER events_immutable".to_owned(),
        ),
        (
            "rewrite the audit chain",
            "UPDATE audit_chain SET chain_hash = chain_hash".to_owned(),
        ),
        (
            "erase the webhook log",
            "DELETE FROM webhook_deliveries".to_owned(),
        ),
    ] {
        let mut query = sqlx::query(&statement);
        if statement.contains("$1") {
            query = query.bind(&id);
        }
        let error = query.execute(&app.pool).await.expect_err(case);
        let code = error
            .as_database_error()
            .and_then(|e| e.code())
            .map(|c| c.to_string());
        assert_eq!(code.as_deref(), Some("42501"), "{case}: {error}");
    }
}

/// In production the service refuses to start connected as the event store's owner (or a
/// superuser): it could disable the trigger that keeps the stream append-only. As a member
/// of `payledger_app` it starts.
#[tokio::test]
async fn production_refuses_to_connect_as_the_owner_of_the_stream() {
    let mut settings = fresh_settings(ServeRole::Api).await;
    settings.production = true;
    let refused = api::startup::Application::build(settings.clone())
        .await
        .err()
        .expect("the owner is refused in production");
    assert!(
        refused.to_string().contains("payledger_app"),
        "the refusal says what to do: {refused}"
    );

    service_role::ensure().await;
    service_role::connect_as_service(&mut settings);
    let app = api::startup::Application::build(settings)
        .await
        .expect("the service role starts in production");
    let user: String = sqlx::query_scalar("SELECT current_user::text")
        .fetch_one(app.pool())
        .await
        .unwrap();
    assert_eq!(user, SERVICE_ROLE);
}
