//! Rate limits at the door: per key for commands and reads, per client address for callers
//! without a key (the `X-Forwarded-For` of a trusted proxy names the client), per provider
//! and address for webhooks. A refusal is `429` problem+json with `Retry-After` and the
//! `RateLimit-*` headers, changes nothing, and is counted in the metrics.

use api::auth::{create_key, Role};
use api::config::ServeRole;
use api::rate_limit::{Limit, RateLimitSettings};
use e2e::support::problem;
use e2e::{payment_body, spawn_app_configured, TestApp};
use serde_json::Value;

fn limit(text: &str) -> Option<Limit> {
    Limit::parse(text).expect("a limit")
}

async fn limited_app() -> TestApp {
    spawn_app_configured(ServeRole::All, |s| {
        s.rate_limits = RateLimitSettings {
            commands_per_key: limit("1/3"),
            reads_per_key: limit("1/5"),
            keyed_per_address: limit("1000/1000"),
            webhooks_per_provider_address: limit("1/2"),
            public_per_address: limit("1/2"),
        };
        s.trusted_proxies = "127.0.0.1".into();
    })
    .await
}

fn header(response: &reqwest::Response, name: &str) -> Option<u64> {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn a_key_past_its_command_burst_gets_429_and_nothing_is_appended() {
    let app = limited_app().await;
    let mut remaining = Vec::new();
    for n in 0..3 {
        let reference = format!("rl-{n}");
        let response = app
            .post(
                "/v1/payments",
                &app.checkout_key,
                Some(&reference),
                &payment_body(
                    "3.00",
                    "USD",
                    &reference,
                    "tok_sandbox_approved",
                    "automatic",
                ),
            )
            .await;
        assert_eq!(response.status(), 201, "within the burst");
        assert_eq!(header(&response, "ratelimit-limit"), Some(3));
        remaining.push(header(&response, "ratelimit-remaining").expect("remaining"));
    }
    assert_eq!(remaining, [2, 1, 0]);

    let refused = app
        .post(
            "/v1/payments",
            &app.checkout_key,
            Some("rl-3"),
            &payment_body("3.00", "USD", "rl-3", "tok_sandbox_approved", "automatic"),
        )
        .await;
    assert_eq!(header(&refused, "retry-after"), Some(1));
    assert_eq!(header(&refused, "ratelimit-remaining"), Some(0));
    assert!(
        refused.headers().contains_key("x-request-id"),
        "a refusal is named too"
    );
    let body = problem(refused, 429, "past the burst").await;
    assert!(
        body["detail"].as_str().unwrap().contains("per key"),
        "{body}"
    );
    // The burst's own payments are still being approved by webhook: look for the refused one.
    let mentions: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE payload::text LIKE '%\"rl-3\"%'")
            .fetch_one(&app.pool)
            .await
            .expect("events");
    assert_eq!(mentions, 0, "a refused command appends nothing");

    // Another key of the same merchant has its own bucket; reads are another class.
    let other = app.key_for(e2e::MERCHANT).await;
    let response = app
        .post(
            "/v1/payments",
            &other,
            Some("rl-other"),
            &payment_body(
                "3.00",
                "USD",
                "rl-other",
                "tok_sandbox_approved",
                "automatic",
            ),
        )
        .await;
    assert_eq!(response.status(), 201);
    let read = app.get("/v1/payments?limit=1", &app.checkout_key).await;
    assert_eq!(read.status(), 200);
    assert_eq!(header(&read, "ratelimit-limit"), Some(5));

    // The bucket refills: one a second.
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    let response = app
        .post(
            "/v1/payments",
            &app.checkout_key,
            Some("rl-4"),
            &payment_body("3.00", "USD", "rl-4", "tok_sandbox_approved", "automatic"),
        )
        .await;
    assert_eq!(response.status(), 201, "refilled");

    let admin_reads = create_key(&app.pool, Role::Admin, None).await.unwrap();
    let metrics = app
        .get("/metrics", &admin_reads)
        .await
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("payledger_rate_limited_total{")
                && l.contains(r#"class="commands""#)
                && l.contains(r#"scope="key""#)),
        "{metrics}"
    );
}

#[tokio::test]
async fn callers_without_a_key_are_limited_per_client_address() {
    let app = limited_app().await;
    let get = |forwarded_for: &'static str| {
        app.http
            .get(format!("{}/health/live", app.address))
            .header("X-Forwarded-For", forwarded_for)
            .send()
    };
    for _ in 0..2 {
        assert_eq!(get("203.0.113.7").await.unwrap().status(), 200);
    }
    let refused = get("203.0.113.7").await.unwrap();
    assert!(header(&refused, "retry-after").is_some());
    problem(refused, 429, "third public request from one address").await;
    // Another client behind the same trusted proxy has a bucket of its own.
    assert_eq!(get("198.51.100.4").await.unwrap().status(), 200);
}

#[tokio::test]
async fn webhooks_are_limited_per_provider_and_address() {
    let app = limited_app().await;
    let post = |provider: &str| {
        app.http
            .post(format!("{}/v1/webhooks/{provider}", app.address))
            .header("Content-Type", "application/json")
            .body("{}")
            .send()
    };
    // Unsigned: refused by verification, but each counts against the bucket first.
    for _ in 0..2 {
        assert_ne!(post("sandbox").await.unwrap().status(), 429);
    }
    let refused = post("sandbox").await.unwrap();
    let body: Value = problem(refused, 429, "third sandbox webhook").await;
    assert!(
        body["detail"].as_str().unwrap().contains("webhooks"),
        "{body}"
    );
    assert_ne!(
        post("wompi").await.unwrap().status(),
        429,
        "another provider's bucket"
    );
}

/// `GET /v1/pse/banks` is public and each provider's list costs a call with the merchant's
/// credentials: it is asked once and served from the cache after.
#[tokio::test]
async fn the_public_bank_list_asks_each_provider_once() {
    let proxy = e2e::fault_proxy::FaultProxy::start().await;
    let gateway = proxy.url();
    let app = spawn_app_configured(ServeRole::All, |s| {
        s.routing.providers = vec!["wompi".into(), "payu".into()];
        s.sandbox.emulator_gateway = Some(gateway);
        s.rate_limits = RateLimitSettings::off();
    })
    .await;
    proxy.route_to(&app.emulators);
    let asks = |provider: &str| {
        proxy
            .relayed()
            .iter()
            .filter(|r| r.provider == provider)
            .count()
    };
    let banks = || async {
        let response = app
            .http
            .get(format!("{}/v1/pse/banks", app.address))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.json::<Value>().await.unwrap()
    };
    let first = banks().await;
    let all = futures::future::join_all((0..20).map(|_| banks())).await;
    assert!(
        all.iter().all(|answer| *answer == first),
        "the same list each time"
    );
    for list in first["providers"].as_array().unwrap() {
        assert_eq!(list["available"], true, "{list}");
    }
    assert_eq!(
        (asks("wompi"), asks("payu")),
        (1, 1),
        "{:?}",
        proxy.relayed()
    );
}
