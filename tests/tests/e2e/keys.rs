//! The life of an API key through the admin API and `payledger keys`: created for an
//! environment with an optional expiry, its last use recorded, revoked on every node within a
//! second, rotated with an overlap; test keys refused in production.

use std::time::{Duration, Instant};

use api::config::ServeRole;
use e2e::support::problem;
use e2e::tcp_proxy::{through, upstream_of, TcpProxy};
use e2e::{spawn_app_configured, spawn_with_settings, TestApp};
use serde_json::{json, Value};

async fn admin_post(app: &TestApp, path: &str, body: &Value) -> reqwest::Response {
    app.post(path, &app.admin_key, None, body).await
}

async fn status_with(app: &TestApp, key: &str) -> u16 {
    app.get("/v1/payments?limit=1", key).await.status().as_u16()
}

/// Polls until `key` gets `status` on `app`; answers how long it took.
async fn until_status(app: &TestApp, key: &str, status: u16, within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        if status_with(app, key).await == status {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "still not {status} after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn listed(app: &TestApp, id: &str) -> Value {
    let list: Value = app
        .get("/v1/api-keys?limit=100", &app.admin_key)
        .await
        .json()
        .await
        .unwrap();
    list["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == id)
        .cloned()
        .unwrap_or_else(|| panic!("{id} not listed: {list}"))
}

#[tokio::test]
async fn a_revoked_key_is_refused_on_every_node_within_a_second() {
    let node_a = spawn_app_configured(ServeRole::All, |_| {}).await;
    let mut settings = node_a.settings.clone();
    settings.role = ServeRole::Api;
    let node_b = spawn_with_settings(settings).await;

    let created = admin_post(
        &node_a,
        "/v1/api-keys",
        &json!({"role": "checkout", "merchant_id": "merchant-k"}),
    )
    .await;
    assert_eq!(created.status(), 201);
    let created: Value = created.json().await.unwrap();
    let key = created["key"].as_str().unwrap().to_owned();
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(key.starts_with("pl_test_checkout_"), "{key}");
    assert!(key.starts_with(created["prefix"].as_str().unwrap()));
    assert_eq!(created["environment"], "test");
    assert!(created.get("key_hash").is_none(), "{created}");

    // Both nodes know (and cache) the key; its use is recorded.
    assert_eq!(status_with(&node_a, &key).await, 200);
    assert_eq!(status_with(&node_b, &key).await, 200);
    let deadline = Instant::now() + Duration::from_secs(5);
    while listed(&node_a, &id).await["last_used_at"].is_null() {
        assert!(Instant::now() < deadline, "last use never recorded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let listed_key = listed(&node_a, &id).await;
    assert!(
        !listed_key.to_string().contains(&key[20..]),
        "a list never shows the key"
    );
    // Written at most once a minute per key: more uses within it change nothing.
    let first_use = listed_key["last_used_at"].clone();
    for _ in 0..5 {
        assert_eq!(status_with(&node_a, &key).await, 200);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(listed(&node_a, &id).await["last_used_at"], first_use);

    let revoked = admin_post(&node_a, &format!("/v1/api-keys/{id}/revoke"), &json!({})).await;
    assert_eq!(revoked.status(), 200);
    let took = until_status(&node_b, &key, 401, Duration::from_secs(1)).await;
    eprintln!("revocation reached the other node in {took:?}");
    assert_eq!(status_with(&node_a, &key).await, 401);
    assert!(!listed(&node_a, &id).await["revoked_at"].is_null());

    // Revoked by hand in SQL: announced just the same.
    let other = admin_post(&node_a, "/v1/api-keys", &json!({"role": "analyst"})).await;
    let other: Value = other.json().await.unwrap();
    let other_key = other["key"].as_str().unwrap().to_owned();
    let reports = |app: &TestApp| {
        let key = other_key.clone();
        let url = format!("{}/v1/analytics/daily", app.address);
        let http = app.http.clone();
        async move {
            http.get(url)
                .bearer_auth(key)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(reports(&node_b).await, 200);
    sqlx::query("UPDATE api_keys SET revoked_at = now() WHERE id = $1::uuid")
        .bind(other["id"].as_str().unwrap())
        .execute(&node_a.pool)
        .await
        .unwrap();
    let started = Instant::now();
    while reports(&node_b).await != 401 {
        assert!(started.elapsed() < Duration::from_secs(1), "still accepted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_rotated_key_overlaps_then_expires_and_keys_expire_on_time() {
    let app = spawn_app_configured(ServeRole::All, |_| {}).await;
    let created: Value = admin_post(
        &app,
        "/v1/api-keys",
        &json!({"role": "checkout", "merchant_id": "merchant-r"}),
    )
    .await
    .json()
    .await
    .unwrap();
    let old_key = created["key"].as_str().unwrap().to_owned();
    let id = created["id"].as_str().unwrap();
    assert_eq!(status_with(&app, &old_key).await, 200);

    let rotated = admin_post(
        &app,
        &format!("/v1/api-keys/{id}/rotate"),
        &json!({"overlap_s": 1}),
    )
    .await;
    assert_eq!(rotated.status(), 201);
    let rotated: Value = rotated.json().await.unwrap();
    let new_key = rotated["key"]["key"].as_str().unwrap().to_owned();
    assert_eq!(rotated["key"]["rotated_from"], id);
    assert_eq!(rotated["key"]["role"], "checkout");
    assert_eq!(rotated["key"]["merchant_id"], "merchant-r");
    assert!(!rotated["previous"]["expires_at"].is_null());
    assert_eq!(status_with(&app, &new_key).await, 200);
    assert_eq!(status_with(&app, &old_key).await, 200, "within the overlap");
    until_status(&app, &old_key, 401, Duration::from_secs(3)).await;
    assert_eq!(status_with(&app, &new_key).await, 200);

    let again = admin_post(&app, &format!("/v1/api-keys/{id}/rotate"), &json!({})).await;
    problem(again, 409, "rotating an expired key").await;

    let short: Value = admin_post(
        &app,
        "/v1/api-keys",
        &json!({"role": "admin", "expires_in_s": 1}),
    )
    .await
    .json()
    .await
    .unwrap();
    let short_key = short["key"].as_str().unwrap().to_owned();
    assert_eq!(status_with(&app, &short_key).await, 200);
    until_status(&app, &short_key, 401, Duration::from_secs(3)).await;
}

#[tokio::test]
async fn only_admins_manage_keys_and_bad_requests_change_nothing() {
    let app = spawn_app_configured(ServeRole::All, |_| {}).await;
    let count = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM api_keys")
            .fetch_one(&app.pool)
            .await
            .unwrap()
    };
    let before = count().await;
    let forbidden = app
        .post(
            "/v1/api-keys",
            &app.checkout_key,
            None,
            &json!({"role": "admin"}),
        )
        .await;
    problem(forbidden, 403, "a checkout key creating a key").await;
    for (case, body) in [
        ("unknown role", json!({"role": "root"})),
        ("checkout without merchant", json!({"role": "checkout"})),
        (
            "admin with merchant",
            json!({"role": "admin", "merchant_id": "m"}),
        ),
        (
            "bad environment",
            json!({"role": "admin", "environment": "staging"}),
        ),
        ("no lifetime", json!({"role": "admin", "expires_in_s": 0})),
        ("unknown field", json!({"role": "admin", "scopes": "all"})),
    ] {
        let response = admin_post(&app, "/v1/api-keys", &body).await;
        assert!(
            response.status().is_client_error(),
            "{case}: {}",
            response.status()
        );
    }
    let missing = admin_post(
        &app,
        &format!("/v1/api-keys/{}/revoke", uuid::Uuid::new_v4()),
        &json!({}),
    )
    .await;
    problem(missing, 404, "revoking a key that does not exist").await;
    assert_eq!(count().await, before, "nothing was created");
}

/// A made-up key is remembered as unknown: repeating it costs no database lookup, so a flood
/// of one bad key cannot starve the pool. Shown with the database cut off: the repeated key is
/// still refused (401) from memory, while a key never seen needs the database (503).
#[tokio::test]
async fn a_repeated_unknown_key_is_refused_without_asking_the_database() {
    let database = std::env::var("DATABASE_URL").expect("DATABASE_URL names the test server");
    let proxy = TcpProxy::start(upstream_of(&database)).await;
    let app = spawn_app_configured(ServeRole::Api, |s| {
        s.database_url = through(&s.database_url, &proxy);
    })
    .await;
    let made_up = format!("pl_test_checkout_{}", "ab".repeat(32));
    assert_eq!(status_with(&app, &made_up).await, 401);
    assert_eq!(status_with(&app, &app.checkout_key).await, 200);

    proxy.cut();
    assert_eq!(
        status_with(&app, &made_up).await,
        401,
        "refused from memory, no lookup"
    );
    assert_eq!(
        status_with(&app, &app.checkout_key).await,
        503,
        "the database is gone for everything else"
    );
    let never_seen = format!("pl_test_checkout_{}", "cd".repeat(32));
    assert_eq!(
        status_with(&app, &never_seen).await,
        503,
        "a new key needs a lookup"
    );
    proxy.restore();
}

#[tokio::test]
async fn production_refuses_test_keys_and_makes_live_ones() {
    e2e::service_role::ensure().await;
    let app = spawn_app_configured(ServeRole::All, |s| {
        s.production = true;
        e2e::service_role::connect_as_service(s);
    })
    .await;
    // `create_key` makes test keys: the app's own are refused here.
    let refused = app.get("/v1/payments?limit=1", &app.checkout_key).await;
    let body = problem(refused, 401, "a test key in production").await;
    assert!(
        body["detail"].as_str().unwrap().contains("test key"),
        "{body}"
    );

    let live = api::keys::create(
        &app.pool,
        &api::keys::NewKey {
            role: api::auth::Role::Admin,
            merchant: None,
            environment: api::keys::KeyEnvironment::Live,
            expires_in: None,
        },
    )
    .await
    .unwrap()
    .key;
    assert!(live.starts_with("pl_live_admin_"));
    let made = app
        .post("/v1/api-keys", &live, None, &json!({"role": "operator"}))
        .await;
    assert_eq!(made.status(), 201);
    let made: Value = made.json().await.unwrap();
    assert_eq!(made["environment"], "live", "production makes live keys");
    let test = app
        .post(
            "/v1/api-keys",
            &live,
            None,
            &json!({"role": "operator", "environment": "test"}),
        )
        .await;
    problem(test, 422, "a test key asked for in production").await;
}

/// `payledger keys` with the release binary, on the app's database.
fn payledger_keys(app: &TestApp, args: &[&str]) -> std::process::Output {
    std::process::Command::new(e2e::process::binary())
        .arg("keys")
        .args(args)
        .env("DATABASE_URL", &app.settings.database_url)
        .env_remove("PAYLEDGER_ENV")
        .output()
        .expect("payledger keys runs")
}

fn stdout(output: &std::process::Output) -> String {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

#[tokio::test]
async fn the_cli_creates_lists_rotates_and_revokes_keys() {
    let app = spawn_app_configured(ServeRole::All, |_| {}).await;
    let created = stdout(&payledger_keys(
        &app,
        &[
            "create",
            "--role",
            "operator",
            "--environment",
            "live",
            "--expires-in",
            "1h",
        ],
    ));
    let key = created.trim().to_owned();
    assert!(key.starts_with("pl_live_operator_"), "{key}");
    assert_eq!(app.get("/metrics", &key).await.status(), 200);

    let list = stdout(&payledger_keys(&app, &["list"]));
    let record: Value = list
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .find(|r| key.starts_with(r["prefix"].as_str().unwrap()))
        .expect("listed");
    assert!(!list.contains(&key[20..]), "the list shows no key");
    assert!(!record["expires_at"].is_null());
    let id = record["id"].as_str().unwrap();

    let rotated = stdout(&payledger_keys(&app, &["rotate", id, "--overlap", "1m"]));
    let new_key = rotated.trim().to_owned();
    assert!(new_key.starts_with("pl_live_operator_") && new_key != key);
    assert_eq!(app.get("/metrics", &new_key).await.status(), 200);
    assert_eq!(
        app.get("/metrics", &key).await.status(),
        200,
        "within the overlap"
    );

    stdout(&payledger_keys(&app, &["revoke", id]));
    let started = Instant::now();
    while app.get("/metrics", &key).await.status() != 401 {
        assert!(started.elapsed() < Duration::from_secs(1), "still accepted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(app.get("/metrics", &new_key).await.status(), 200);

    for refused in [
        &["create", "--role", "checkout"][..],
        &["create", "--role", "admin", "--expires-in", "soon"],
        &["revoke", "00000000-0000-0000-0000-000000000000"],
    ] {
        let output = payledger_keys(&app, refused);
        assert!(!output.status.success(), "{refused:?}");
    }
}
