//! Health a load balancer can use: `/health/live`, `/health/ready` per role and `/health`
//! `ok` / `degraded` / `unavailable`. An API node needs only PostgreSQL: it stays ready and
//! keeps taking commands while the broker is away, and the relay catches up afterwards.

use std::time::{Duration, Instant};

use api::config::ServeRole;
use e2e::tcp_proxy::{through, upstream_of, TcpProxy};
use e2e::{payment_body, spawn_app, spawn_app_configured, spawn_with_settings, TestApp};
use serde_json::Value;

/// With the app's admin key: `/health` answers its figures to operators and admins only.
async fn get(app: &TestApp, path: &str) -> (u16, Value) {
    let response = app
        .http
        .get(format!("{}{path}", app.address))
        .bearer_auth(&app.admin_key)
        .send()
        .await
        .expect("health answers");
    let status = response.status().as_u16();
    (status, response.json().await.expect("json"))
}

async fn relay_behind(app: &TestApp) -> i64 {
    eventstore::checkpoint::relay_progress(&app.pool)
        .await
        .expect("relay progress")
        .events_behind
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_node_takes_commands_while_the_broker_is_down_and_the_relay_catches_up() {
    let amqp = std::env::var("AMQP_URL").expect("AMQP_URL names the test broker");
    let broker = TcpProxy::start(upstream_of(&amqp)).await;
    let app = spawn_app_configured(ServeRole::All, |settings| {
        settings.amqp_url = through(&settings.amqp_url, &broker);
    })
    .await;
    let first = app
        .create_payment(
            "up-0",
            &payment_body("5.00", "USD", "up-0", "tok_sandbox_approved", "automatic"),
        )
        .await;
    app.wait_for_status(first["id"].as_str().expect("id"), "APPROVED")
        .await;
    let (status, health) = get(&app, "/health").await;
    assert_eq!(
        (status, health["status"].as_str()),
        (200, Some("ok")),
        "{health}"
    );

    broker.cut();
    let (status, health) = get(&app, "/health").await;
    assert_eq!(
        status, 200,
        "a part the API does not need is down: {health}"
    );
    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(health["broker"], "down", "{health}");
    let (status, ready) = get(&app, "/health/ready").await;
    assert_eq!(status, 200, "commands need only PostgreSQL: {ready}");
    assert_eq!(get(&app, "/health/live").await.0, 200);

    let mut ids = Vec::new();
    for i in 1..=5 {
        let reference = format!("down-{i}");
        let payment = app
            .create_payment(
                &reference,
                &payment_body(
                    "7.00",
                    "USD",
                    &reference,
                    "tok_sandbox_approved",
                    "automatic",
                ),
            )
            .await;
        ids.push(payment["id"].as_str().expect("id").to_owned());
    }
    // The approvals arrive by webhook and are appended too; nothing reaches the broker.
    let deadline = Instant::now() + Duration::from_secs(10);
    while relay_behind(&app).await < 10 {
        assert!(
            Instant::now() < deadline,
            "the five payments' events were not appended"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    broker.restore();
    for id in &ids {
        app.wait_for_status(id, "APPROVED").await;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while relay_behind(&app).await > 0 {
        assert!(Instant::now() < deadline, "the relay did not catch up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, health) = get(&app, "/health").await;
    assert_eq!(
        (status, health["status"].as_str()),
        (200, Some("ok")),
        "{health}"
    );
}

#[tokio::test]
async fn relay_and_projector_nodes_are_not_ready_without_the_broker_and_say_so() {
    let app = spawn_app_configured(ServeRole::Api, |_| {}).await;
    for role in [ServeRole::Relay, ServeRole::Projector] {
        let mut settings = app.settings.clone();
        settings.role = role;
        // The same database, and a broker address where nothing listens.
        settings.amqp_url = "amqp://guest:guest@127.0.0.1:9/%2f".into();
        let node = spawn_with_settings(settings).await;
        assert_eq!(get(&node, "/health/live").await.0, 200, "{role:?}");
        let (status, ready) = get(&node, "/health/ready").await;
        assert_eq!(status, 503, "{role:?}: {ready}");
        assert_eq!(
            (ready["database"].as_str(), ready["broker"].as_str()),
            (Some("ok"), Some("down"))
        );
        let (status, health) = get(&node, "/health").await;
        assert_eq!(status, 503, "{role:?}: {health}");
        assert_eq!(health["status"], "unavailable", "{role:?}: {health}");
        // A relay or projector node serves health and nothing else.
        let payments = node
            .http
            .get(format!("{}/v1/payments", node.address))
            .send()
            .await
            .expect("answers");
        assert_eq!(payments.status(), 404, "{role:?}");
    }
    // The API node itself is ready: it needs PostgreSQL only.
    assert_eq!(get(&app, "/health/ready").await.0, 200);
}

#[tokio::test]
async fn an_api_node_whose_database_is_down_is_not_ready() {
    let database = std::env::var("DATABASE_URL").expect("DATABASE_URL names the test server");
    let proxy = TcpProxy::start(upstream_of(&database)).await;
    let app = spawn_app_configured(ServeRole::Api, |settings| {
        settings.database_url = through(&settings.database_url, &proxy);
    })
    .await;
    assert_eq!(get(&app, "/health/ready").await.0, 200);
    proxy.cut();
    let (status, ready) = get(&app, "/health/ready").await;
    assert_eq!(status, 503, "{ready}");
    assert_eq!(ready["database"], "down");
    let (status, health) = get(&app, "/health").await;
    assert_eq!(
        (status, health["status"].as_str()),
        (503, Some("unavailable")),
        "{health}"
    );
    assert_eq!(
        get(&app, "/health/live").await.0,
        200,
        "alive, though not ready"
    );
    proxy.restore();
    let deadline = Instant::now() + Duration::from_secs(10);
    while get(&app, "/health/ready").await.0 != 200 {
        assert!(
            Instant::now() < deadline,
            "ready again once PostgreSQL is back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Reports, the audit routes and `/health`'s replica section use `DATABASE_READ_URL`: here a
/// TCP proxy to the test server stands for the replica. While it is cut, readers answer 503,
/// `/health` says `degraded` with the replica down, and commands go on against the primary.
#[tokio::test]
async fn readers_use_the_read_url_and_its_loss_degrades_only_them() {
    let database = std::env::var("DATABASE_URL").expect("DATABASE_URL names the test server");
    let replica = TcpProxy::start(upstream_of(&database)).await;
    let app = spawn_app_configured(ServeRole::All, |settings| {
        settings.database_read_url = Some(through(&settings.database_url, &replica));
    })
    .await;
    let analyst = api::auth::create_key(&app.pool, api::auth::Role::Analyst, None)
        .await
        .expect("analyst key");
    let payment = app
        .create_payment(
            "r-1",
            &payment_body("9.00", "USD", "r-1", "tok_sandbox_approved", "automatic"),
        )
        .await;
    app.wait_for_status(payment["id"].as_str().expect("id"), "APPROVED")
        .await;
    let accepted_before = replica.accepted();
    assert_eq!(app.get("/v1/analytics/daily", &analyst).await.status(), 200);
    assert!(
        replica.accepted() > accepted_before,
        "the report was read through the read URL"
    );
    let (status, health) = get(&app, "/health").await;
    assert_eq!(status, 200, "{health}");
    // The test server is a primary: it replays nothing, so it is never behind.
    assert_eq!(health["replica"]["status"], "ok", "{health}");
    assert_eq!(health["replica"]["in_recovery"], false, "{health}");
    assert_eq!(
        health["replica"]["replication_lag_seconds"], 0.0,
        "{health}"
    );

    replica.cut();
    assert_eq!(app.get("/v1/analytics/daily", &analyst).await.status(), 503);
    let (status, health) = get(&app, "/health").await;
    assert_eq!(
        (status, health["status"].as_str()),
        (200, Some("degraded")),
        "{health}"
    );
    assert_eq!(health["replica"]["status"], "down", "{health}");
    assert_eq!(
        get(&app, "/health/ready").await.0,
        200,
        "commands need the primary only"
    );
    app.create_payment(
        "r-2",
        &payment_body("9.00", "USD", "r-2", "tok_sandbox_approved", "automatic"),
    )
    .await;
}

#[tokio::test]
async fn without_an_operator_key_health_says_only_whether_each_part_answers() {
    let app = spawn_app().await;
    for (case, key) in [
        ("anonymous", None),
        ("checkout key", Some(app.checkout_key.as_str())),
    ] {
        let mut request = app.http.get(format!("{}/health", app.address));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        let response = request.send().await.expect("health answers");
        assert_eq!(response.status(), 200, "{case}");
        let health: Value = response.json().await.expect("json");
        let mut fields: Vec<&str> = health
            .as_object()
            .expect("an object")
            .keys()
            .map(String::as_str)
            .collect();
        fields.sort_unstable();
        assert_eq!(
            fields,
            ["broker", "database", "relay", "replica", "role", "status"],
            "{case}: {health}"
        );
        assert_eq!(health["status"], "ok", "{case}");
        assert!(health["relay"]["leading"].is_boolean(), "{case}: {health}");
        assert_eq!(
            health["relay"].as_object().map(|r| r.len()),
            Some(1),
            "{case}: {health}"
        );
    }
    let (_, full) = get(&app, "/health").await;
    assert!(full["projections"].is_array(), "{full}");
    assert!(full["intents"].is_object(), "{full}");
}
