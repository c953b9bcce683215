//! The service connects as a member of `payledger_app`, not as the tables' owner: it runs
//! whole payments through every part (store, relay, audit chain, projections, keys) and may
//! not change or erase the event stream, the audit chain or the webhook log, nor disable the
//! triggers that guard them. Migrations run as the owner (`DATABASE_OWNER_URL`).

use api::config::ServeRole;
use e2e::{payment_body, spawn_app_configured};

/// A login role of the cluster, member of `payledger_app` (created once; roles are shared by
/// every database of the cluster).
const SERVICE_ROLE: &str = "payledger_service_test";

fn as_role(url: &str, role: &str) -> String {
    // postgres://<user>@host:port/db -> postgres://<role>@host:port/db
    let (scheme, rest) = url.split_once("://").expect("a URL");
    let host = rest.split_once('@').map_or(rest, |(_, host)| host);
    format!("{scheme}://{role}@{host}")
}

#[tokio::test]
async fn the_service_role_runs_payments_and_cannot_rewrite_the_stream() {
    // The roles are the cluster's: made here once (a migration makes the group role too).
    let settings = api::Settings::from_env();
    let admin = sqlx::PgPool::connect(&settings.database_url).await.unwrap();
    for role in ["payledger_app NOLOGIN", &format!("{SERVICE_ROLE} LOGIN")] {
        sqlx::query(&format!(
            "DO $$ BEGIN
                 CREATE ROLE {role};
             EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
             END $$"
        ))
        .execute(&admin)
        .await
        .unwrap();
    }
    sqlx::query(&format!("GRANT payledger_app TO {SERVICE_ROLE}"))
        .execute(&admin)
        .await
        .unwrap();
    admin.close().await;

    let app = spawn_app_configured(ServeRole::All, |s| {
        let owner = s.database_url.clone();
        s.database_url = as_role(&owner, SERVICE_ROLE);
        s.database_owner_url = Some(owner);
    })
    .await;
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
