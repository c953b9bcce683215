//! Health per part for operators: `/health/database` with the pool's figures and
//! `/health/payments` with each provider's checks, this node's calls and today's payments.
//! `200` healthy or degraded, `503` unhealthy; operator and admin keys only.

use std::time::{Duration, Instant};

use api::auth::{create_key, Role};
use api::config::ServeRole;
use e2e::{payment_body, spawn_app_configured, TestApp};
use serde_json::Value;

async fn operator_key(app: &TestApp) -> String {
    create_key(&app.pool, Role::Operator, None)
        .await
        .expect("operator key")
}

async fn read(app: &TestApp, path: &str, key: &str) -> (u16, Value) {
    let response = app.get(path, key).await;
    let status = response.status().as_u16();
    (status, response.json().await.expect("json"))
}

fn provider<'a>(body: &'a Value, name: &str) -> &'a Value {
    body["providers"]
        .as_array()
        .and_then(|all| all.iter().find(|p| p["provider"] == name))
        .unwrap_or_else(|| panic!("{name} in {body}"))
}

/// Reads `path` until `done` holds (the providers' health answers are cached for seconds).
async fn read_until(
    app: &TestApp,
    path: &str,
    key: &str,
    done: impl Fn(u16, &Value) -> bool,
) -> (u16, Value) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = read(app, path, key).await;
        if done(status, &body) {
            return (status, body);
        }
        assert!(Instant::now() < deadline, "{status} {body}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test]
async fn the_database_part_reports_the_pool_to_operators_only() {
    let app = spawn_app_configured(ServeRole::All, |_| {}).await;
    let operator = operator_key(&app).await;

    let (status, body) = read(&app, "/health/database", &operator).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "healthy", "{body}");
    let pool = &body["pool"];
    assert_eq!(pool["max"], u64::from(app.settings.db_pool_max), "{body}");
    let open = pool["open"].as_u64().expect("open");
    assert!(open >= 1, "{body}");
    assert_eq!(
        pool["in_use"].as_u64().expect("in_use") + pool["idle"].as_u64().expect("idle"),
        open,
        "{body}"
    );
    assert!(
        body["query_ms"].as_f64().is_some_and(|ms| ms >= 0.0),
        "{body}"
    );
    assert!(body["replica"].is_null(), "no replica configured: {body}");

    let (status, _) = read(&app, "/health/database", &app.admin_key).await;
    assert_eq!(status, 200);
    let (status, _) = read(&app, "/health/database", &app.checkout_key).await;
    assert_eq!(status, 403);
    let anonymous = app
        .http
        .get(format!("{}/health/database", app.address))
        .send()
        .await
        .expect("answers");
    assert_eq!(anonymous.status(), 401);
}

#[tokio::test]
async fn the_payments_part_turns_degraded_then_unhealthy_as_providers_stop() {
    let app = spawn_app_configured(ServeRole::All, |s| {
        s.routing.providers = vec!["sandbox".into(), "wompi".into()];
    })
    .await;
    let operator = operator_key(&app).await;
    for (reference, token, status) in [
        ("h-1", "tok_sandbox_approved", "APPROVED"),
        ("h-2", "tok_sandbox_approved", "APPROVED"),
        ("h-3", "tok_sandbox_declined", "DECLINED"),
    ] {
        let created = app
            .create_payment(
                reference,
                &payment_body("10.00", "USD", reference, token, "automatic"),
            )
            .await;
        let id = created["id"].as_str().expect("id");
        app.wait_for_status(id, status).await;
    }

    // The analytics projection lingers before it commits: wait for the day's figures.
    let (status, body) = read_until(&app, "/health/payments", &operator, |_, body| {
        provider(body, "sandbox")["today"]["declined_count"] == 1
    })
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "healthy", "{body}");
    let sandbox = provider(&body, "sandbox");
    assert_eq!(sandbox["status"], "healthy", "{body}");
    assert_eq!(sandbox["breaker"], "closed");
    assert_eq!(sandbox["calls"]["calls"], 3, "three creates: {body}");
    assert_eq!(
        sandbox["calls"]["success_rate"], 1.0,
        "a decline is an answer: {body}"
    );
    assert!(
        sandbox["calls"]["mean_response_ms"].as_f64().is_some(),
        "{body}"
    );
    assert!(sandbox["calls"]["last_success_at"].is_string(), "{body}");
    assert!(sandbox["calls"]["last_failure_at"].is_null(), "{body}");
    let today = &sandbox["today"];
    assert_eq!(today["initiated_count"], 3, "{body}");
    assert_eq!(today["approved_count"], 2, "{body}");
    assert_eq!(today["declined_count"], 1, "{body}");
    assert_eq!(today["success_rate"], "0.666667", "{body}");
    assert_eq!(
        provider(&body, "wompi")["today"]["initiated_count"],
        0,
        "{body}"
    );

    app.stop_emulator("wompi").await;
    let (status, body) = read_until(&app, "/health/payments", &operator, |_, body| {
        body["status"] != "healthy"
    })
    .await;
    assert_eq!(status, 200, "one provider still takes payments: {body}");
    assert_eq!(body["status"], "degraded", "{body}");
    assert_eq!(provider(&body, "wompi")["status"], "unhealthy", "{body}");
    assert_eq!(provider(&body, "wompi")["reachable"], false, "{body}");
    assert_eq!(provider(&body, "sandbox")["status"], "healthy", "{body}");

    app.stop_emulator("sandbox").await;
    let (status, body) = read_until(&app, "/health/payments", &operator, |status, _| {
        status == 503
    })
    .await;
    assert_eq!(
        body["status"], "unhealthy",
        "no provider can take a payment: {body}"
    );
    assert_eq!(status, 503);

    let (status, _) = read(&app, "/health/payments", &app.checkout_key).await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn a_provider_whose_calls_fail_opens_its_breaker_and_is_reported_unhealthy() {
    let app = spawn_app_configured(ServeRole::All, |s| {
        s.routing.providers = vec!["sandbox".into()];
        s.routing.breaker_failures_to_open = 2;
        s.routing.breaker_cool_down_ms = 60_000;
    })
    .await;
    let operator = operator_key(&app).await;
    for reference in ["b-1", "b-2"] {
        // The sandbox answers 503 "nothing was processed": the payment ends FAILED.
        let created = app
            .create_payment(
                reference,
                &payment_body("10.00", "USD", reference, "tok_sandbox_error", "automatic"),
            )
            .await;
        assert_eq!(created["status"], "FAILED", "{created}");
    }

    let (status, body) = read(&app, "/health/payments", &operator).await;
    assert_eq!(
        status, 503,
        "the only provider takes no payment now: {body}"
    );
    let sandbox = provider(&body, "sandbox");
    assert_eq!(sandbox["status"], "unhealthy", "{body}");
    assert_eq!(sandbox["breaker"], "open", "{body}");
    assert_eq!(
        sandbox["reachable"], true,
        "its health check still answers: {body}"
    );
    assert_eq!(sandbox["calls"]["calls"], 2, "{body}");
    assert_eq!(sandbox["calls"]["success_rate"], 0.0, "{body}");
    assert_eq!(
        sandbox["calls"]["last_failure_outcome"], "not_sent",
        "{body}"
    );
    assert!(sandbox["calls"]["last_failure_at"].is_string(), "{body}");
    assert!(sandbox["calls"]["last_success_at"].is_null(), "{body}");
}
