//! `payledger serve` as real processes (the release binary) around one provider:
//! - killed with SIGKILL while the provider holds the answers of the creates it sent (the
//!   charges were taken, nothing after the intents was appended): after a restart the
//!   resolver asks the provider by reference and appends the true outcome, no charge twice;
//! - two processes given the same Idempotency-Key at the same moment reach the provider once.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use api::auth::{create_key, Role};
use domain::MerchantId;
use e2e::fault_proxy::{FaultProxy, Loss};
use e2e::process::{self, free_port, wait_ready};
use e2e::{fresh_database, payment_body};
use emulators::sandbox::SandboxHandle;
use serde_json::Value;
use tokio::process::Child;

const PAYMENTS: usize = 10;
const SANDBOX_KEY: &str = "sbx_crash_drill_key";
const SANDBOX_WEBHOOK_SECRET: &str = "sbx_crash_drill_webhook_secret_0123456789";

fn serve(database_url: &str, amqp_prefix: &str, port: u16, sandbox_url: &str) -> Child {
    serve_as("all", database_url, amqp_prefix, port, sandbox_url)
}

fn serve_as(
    role: &str,
    database_url: &str,
    amqp_prefix: &str,
    port: u16,
    sandbox_url: &str,
) -> Child {
    process::serve(
        &["--role", role],
        port,
        &[
            ("DATABASE_URL", database_url),
            ("AMQP_PREFIX", amqp_prefix),
            ("PROVIDERS", "sandbox"),
            ("SANDBOX_BASE_URL", sandbox_url),
            ("SANDBOX_API_KEY", SANDBOX_KEY),
            ("SANDBOX_WEBHOOK_SECRET", SANDBOX_WEBHOOK_SECRET),
            ("PROVIDER_ATTEMPT_TIMEOUT_MS", "3000"),
            ("RECONCILE_AFTER_MS", "0"),
            ("RECONCILE_INTERVAL_MS", "200"),
        ],
    )
}

/// A standalone sandbox provider, as a deployment would run it beside payledger.
async fn start_sandbox(webhook_url: String, webhook_delay_ms: u64) -> SandboxHandle {
    emulators::sandbox::start(
        TcpListener::bind("127.0.0.1:0").unwrap(),
        emulators::sandbox::SandboxConfig {
            api_key: SANDBOX_KEY.into(),
            webhook_url,
            webhook_secret: SANDBOX_WEBHOOK_SECRET.into(),
            webhook_delay_ms,
            processor: Default::default(),
        },
    )
    .await
    .unwrap()
}

/// What the sandbox holds for `reference`, asked with its own key.
async fn held_for(http: &reqwest::Client, sandbox: &SandboxHandle, reference: &str) -> Value {
    http.get(format!("{}/v1/transactions", sandbox.base_url()))
        .query(&[("reference", reference)])
        .bearer_auth(SANDBOX_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_process_killed_while_providers_hold_its_answers_resolves_them_after_restart() {
    let base_url = api::config::Settings::from_env().database_url;
    let (database_url, name) = fresh_database(&base_url).await;
    let amqp_prefix = format!("test.{name}");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    // The provider takes and approves every charge but sends no webhook: only asking it can
    // tell the ledger.
    let sandbox = start_sandbox(format!("{base}/v1/webhooks/sandbox"), 5).await;
    let proxy = FaultProxy::start().await;
    proxy.route_to(&[("sandbox".to_owned(), sandbox.base_url())].into());
    proxy.lose(
        "sandbox",
        "POST",
        "/v1/transactions",
        Loss::Hold(Duration::from_secs(120)),
        PAYMENTS,
    );
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();

    let mut process = serve(
        &database_url,
        &amqp_prefix,
        port,
        &format!("{}/sandbox", proxy.url()),
    );
    wait_ready(&http, &base).await;
    let pool = sqlx::PgPool::connect(&database_url).await.unwrap();
    let key = create_key(
        &pool,
        Role::Checkout,
        Some(&MerchantId::parse("merchant-a").unwrap()),
    )
    .await
    .unwrap();

    // Creates under way: each sent to the provider, whose answer is held.
    let mut clients = Vec::new();
    for n in 0..PAYMENTS {
        let http = http.clone();
        let key = key.clone();
        let url = format!("{base}/v1/payments");
        clients.push(tokio::spawn(async move {
            let body = payment_body(
                "25.00",
                "USD",
                &format!("crash-{n}"),
                "tok_sandbox_approved_silent",
                "automatic",
            );
            http.post(url)
                .bearer_auth(key)
                .header("Idempotency-Key", format!("crash-{n}"))
                .json(&body)
                .send()
                .await
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while proxy.count("sandbox", "POST", "/v1/transactions") < PAYMENTS {
        assert!(
            Instant::now() < deadline,
            "the creates never reached the provider"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    process.start_kill().expect("SIGKILL");
    process.wait().await.expect("reaped");
    for client in clients {
        assert!(
            client.await.unwrap().is_err(),
            "no answer from a killed process"
        );
    }
    // Only the intents made it: the charges are at the provider, not in the ledger.
    let recorded: Vec<String> =
        sqlx::query_scalar("SELECT DISTINCT event_type FROM events ORDER BY event_type")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(recorded, ["PaymentInitiated", "ProviderAttemptStarted"]);

    let _restarted = serve(
        &database_url,
        &amqp_prefix,
        port,
        &format!("{}/sandbox", proxy.url()),
    );
    wait_ready(&http, &base).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let approved: i64 =
            sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = 'PaymentApproved'")
                .fetch_one(&pool)
                .await
                .unwrap();
        if approved == PAYMENTS as i64 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{approved} of {PAYMENTS} resolved"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for n in 0..PAYMENTS {
        let reference = format!("crash-{n}");
        let held = held_for(&http, &sandbox, &reference).await;
        assert_eq!(
            held["data"].as_array().map(Vec::len),
            Some(1),
            "{reference}: {held}"
        );
        let types: Vec<String> = sqlx::query_scalar(
            "SELECT e.event_type FROM events e JOIN merchant_references r
                 ON r.payment_id::text = e.aggregate_id
              WHERE r.reference = $1 ORDER BY e.sequence",
        )
        .bind(&reference)
        .fetch_all(&pool)
        .await
        .unwrap();
        assert_eq!(
            types,
            [
                "PaymentInitiated",
                "ProviderAttemptStarted",
                "ProviderOutcomeUnknown",
                "ProviderTransactionCreated",
                "PaymentApproved"
            ],
            "{reference}"
        );
    }
    // The provider was asked once per payment to create, never again.
    assert_eq!(proxy.count("sandbox", "POST", "/v1/transactions"), PAYMENTS);
    sandbox.stop().await;
}

#[tokio::test]
async fn two_processes_given_the_same_key_at_once_reach_the_provider_once() {
    let base_url = api::config::Settings::from_env().database_url;
    let (database_url, name) = fresh_database(&base_url).await;
    let amqp_prefix = format!("test.{name}");
    // Charges are counted at the provider, and creates on their way to it (the sandbox
    // dedupes by payment id, so what it holds alone would hide a second call); outcomes are
    // not needed.
    let sandbox = start_sandbox("http://127.0.0.1:9/v1/webhooks/sandbox".into(), 60_000).await;
    let proxy = FaultProxy::start().await;
    proxy.route_to(&[("sandbox".to_owned(), sandbox.base_url())].into());
    let gateway = format!("{}/sandbox", proxy.url());
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let ports = [free_port(), free_port()];
    // The first applies the migrations; the second starts on them.
    let _first = serve_as("all", &database_url, &amqp_prefix, ports[0], &gateway);
    wait_ready(&http, &format!("http://127.0.0.1:{}", ports[0])).await;
    let _second = serve_as("api", &database_url, &amqp_prefix, ports[1], &gateway);
    wait_ready(&http, &format!("http://127.0.0.1:{}", ports[1])).await;
    let pool = sqlx::PgPool::connect(&database_url).await.unwrap();
    let key = create_key(
        &pool,
        Role::Checkout,
        Some(&MerchantId::parse("merchant-a").unwrap()),
    )
    .await
    .unwrap();
    for n in 0..50 {
        let idempotency_key = format!("same-{n}");
        let body = payment_body(
            "10.00",
            "USD",
            &idempotency_key,
            "tok_sandbox_approved",
            "automatic",
        );
        let send = |port: u16| {
            http.post(format!("http://127.0.0.1:{port}/v1/payments"))
                .bearer_auth(&key)
                .header("Idempotency-Key", &idempotency_key)
                .json(&body)
                .send()
        };
        let (a, b) = tokio::join!(send(ports[0]), send(ports[1]));
        let a: Value = a.unwrap().json().await.unwrap();
        let b: Value = b.unwrap().json().await.unwrap();
        assert_eq!(a["id"], b["id"], "{a} {b}");
        let held = held_for(&http, &sandbox, &idempotency_key).await;
        assert_eq!(
            held["data"].as_array().map(Vec::len),
            Some(1),
            "{idempotency_key}: {held}"
        );
        assert_eq!(a["provider_reference"], held["data"][0]["id"], "{a}");
        assert_eq!(b["provider_reference"], held["data"][0]["id"], "{b}");
        assert_eq!(
            proxy.count("sandbox", "POST", "/v1/transactions"),
            n + 1,
            "{idempotency_key}: one create reached the provider"
        );
    }
    sandbox.stop().await;
}
