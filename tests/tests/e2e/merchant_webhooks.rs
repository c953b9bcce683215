//! Merchant webhooks against a real order service: an HTTP server of the test's own that
//! checks every signature with the test's own HMAC (`e2e::independent`), fails deliveries
//! when told to, and records what it received. Real PostgreSQL, RabbitMQ and the sandbox.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use api::config::{ServeRole, Settings};
use e2e::independent::{hex, hmac_sha256};
use e2e::{payment_body, spawn_app_configured, TestApp};
use serde_json::{json, Value};

/// One delivery as the order service received it.
#[derive(Debug, Clone)]
struct Received {
    event_id: String,
    signature: String,
    body: Vec<u8>,
}

#[derive(Default)]
struct Service {
    /// Deliveries still to fail with a 500 before the service answers 200.
    failures_left: usize,
    /// How long each answer is held.
    delay_ms: u64,
    received: Vec<Received>,
    answered_ok: usize,
}

struct OrderService {
    url: String,
    state: Arc<Mutex<Service>>,
    _server: actix_web::dev::ServerHandle,
}

impl OrderService {
    async fn start(failures: usize, delay_ms: u64) -> OrderService {
        let state = Arc::new(Mutex::new(Service {
            failures_left: failures,
            delay_ms,
            ..Service::default()
        }));
        let shared = web::Data::from(Arc::clone(&state));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(shared.clone())
                .route("/payledger", web::post().to(receive))
        })
        .workers(1)
        .listen(listener)
        .unwrap()
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        OrderService {
            url: format!("http://127.0.0.1:{port}/payledger"),
            state,
            _server: handle,
        }
    }

    fn received(&self) -> Vec<Received> {
        self.state.lock().unwrap().received.clone()
    }

    /// Waits until at least `count` deliveries have arrived (at most `within`).
    async fn wait_received(&self, count: usize, within: Duration, what: &str) {
        let deadline = Instant::now() + within;
        while self.received().len() < count {
            assert!(Instant::now() < deadline, "{what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn set_failures(&self, failures: usize) {
        self.state.lock().unwrap().failures_left = failures;
    }
}

async fn receive(
    req: HttpRequest,
    state: web::Data<Mutex<Service>>,
    body: web::Bytes,
) -> HttpResponse {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let (delay_ms, fail) = {
        let mut service = state.lock().unwrap();
        service.received.push(Received {
            event_id: header("Payledger-Event-Id"),
            signature: header("Payledger-Signature"),
            body: body.to_vec(),
        });
        let fail = service.failures_left > 0;
        if fail {
            service.failures_left -= 1;
        }
        (service.delay_ms, fail)
    };
    tokio::time::sleep(Duration::from_millis(delay_ms)).await;
    if fail {
        return HttpResponse::InternalServerError().finish();
    }
    state.lock().unwrap().answered_ok += 1;
    HttpResponse::Ok().finish()
}

/// `t=<unix>,v1=<hex>` checked with the test's own HMAC-SHA256 over `"<t>.<body>"`.
fn verify(secret: &str, received: &Received) {
    let (t, v1) = received
        .signature
        .split_once(",v1=")
        .and_then(|(t, v1)| Some((t.strip_prefix("t=")?, v1)))
        .unwrap_or_else(|| panic!("malformed signature {:?}", received.signature));
    let mut signed = format!("{t}.").into_bytes();
    signed.extend_from_slice(&received.body);
    assert_eq!(
        v1,
        hex(&hmac_sha256(secret.as_bytes(), &signed)),
        "bad signature"
    );
    let age = chrono::Utc::now().timestamp() - t.parse::<i64>().unwrap();
    assert!((0..300).contains(&age), "signed {age} s ago");
    let body: Value = serde_json::from_slice(&received.body).unwrap();
    assert_eq!(body["id"], received.event_id.as_str());
}

fn quick_retries(settings: &mut Settings) {
    settings.merchant_webhooks.backoff_base_ms = 20;
    settings.merchant_webhooks.backoff_max_ms = 200;
}

async fn register(app: &TestApp, url: &str, events: Option<&[&str]>) -> (String, String) {
    let mut body = json!({ "url": url });
    if let Some(events) = events {
        body["events"] = json!(events);
    }
    let response = app
        .post("/v1/webhook-endpoints", &app.checkout_key, None, &body)
        .await;
    let status = response.status();
    let created: Value = response.json().await.unwrap();
    assert_eq!(status, 201, "{created}");
    let secret = created["secret"]
        .as_str()
        .expect("the secret, once")
        .to_owned();
    assert!(secret.starts_with("whsec_"));
    (created["id"].as_str().unwrap().to_owned(), secret)
}

/// `POST .../deliveries/{delivery}/resend`: its status.
async fn resend(app: &TestApp, endpoint: &str, delivery: &Value) -> u16 {
    let id = delivery["id"].as_str().expect("delivery id");
    app.post(
        &format!("/v1/webhook-endpoints/{endpoint}/deliveries/{id}/resend"),
        &app.checkout_key,
        None,
        &json!({}),
    )
    .await
    .status()
    .as_u16()
}

/// The event ids of these payments' streams, as `<payment>/<sequence>`.
async fn stored_event_ids(app: &TestApp, payments: &[String]) -> BTreeSet<String> {
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT aggregate_id, sequence FROM events WHERE aggregate_id = ANY($1)")
            .bind(payments)
            .fetch_all(&app.pool)
            .await
            .unwrap();
    rows.into_iter()
        .map(|(id, seq)| format!("{id}/{seq}"))
        .collect()
}

/// Waits until the service has received every stored event of `payments` (at most 30 s).
async fn wait_for_all(
    app: &TestApp,
    service: &OrderService,
    payments: &[String],
) -> BTreeSet<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let expected = stored_event_ids(app, payments).await;
        let ok: BTreeSet<String> = {
            let state = service.state.lock().unwrap();
            state.received.iter().map(|r| r.event_id.clone()).collect()
        };
        if expected.is_subset(&ok) && !expected.is_empty() {
            return expected;
        }
        assert!(
            Instant::now() < deadline,
            "missing deliveries: {:?}",
            expected.difference(&ok).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Each payment's events in the order they first arrived are its stream's order.
fn assert_in_payment_order(received: &[Received]) {
    let mut seen: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    let mut first = BTreeSet::new();
    for r in received {
        if first.insert(r.event_id.clone()) {
            let (payment, sequence) = r.event_id.split_once('/').unwrap();
            seen.entry(payment.to_owned())
                .or_default()
                .push(sequence.parse().unwrap());
        }
    }
    for (payment, sequences) in seen {
        let expected: Vec<i64> = (1..=sequences.len() as i64).collect();
        assert_eq!(sequences, expected, "payment {payment} out of order");
    }
}

async fn pay(app: &TestApp, key: &str, token: &str) -> String {
    let created = app
        .create_payment(key, &payment_body("10.00", "USD", key, token, "automatic"))
        .await;
    created["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn an_order_service_that_fails_at_first_gets_every_event_signed_once_per_id_in_order() {
    let app = spawn_app_configured(ServeRole::All, quick_retries).await;
    let service = OrderService::start(5, 0).await;
    let (endpoint, secret) = register(&app, &service.url, None).await;

    let approved = pay(&app, "wh-1", "tok_sandbox_approved").await;
    let declined = pay(&app, "wh-2", "tok_sandbox_declined").await;
    let refunded = pay(&app, "wh-3", "tok_sandbox_approved").await;
    app.wait_for_status(&approved, "APPROVED").await;
    app.wait_for_status(&declined, "DECLINED").await;
    app.wait_for_status(&refunded, "APPROVED").await;
    let refund = app
        .post(
            &format!("/v1/payments/{refunded}/refunds"),
            &app.checkout_key,
            Some("r-1"),
            &json!({"amount": "10.00"}),
        )
        .await;
    assert_eq!(refund.status(), 201);
    let payments = [approved.clone(), declined, refunded];

    let expected = wait_for_all(&app, &service, &payments).await;
    let received = service.received();
    for r in &received {
        verify(&secret, r);
    }
    // Every event once per id (beside the five answered 500), and nothing else.
    let ids: BTreeSet<String> = received.iter().map(|r| r.event_id.clone()).collect();
    assert_eq!(ids, expected);
    assert_eq!(
        received.len(),
        expected.len() + 5,
        "retried only what failed"
    );
    assert_in_payment_order(&received);
    let approval = received
        .iter()
        .find(|r| serde_json::from_slice::<Value>(&r.body).unwrap()["type"] == "PaymentApproved")
        .unwrap();
    let body: Value = serde_json::from_slice(&approval.body).unwrap();
    assert_eq!(body["merchant_id"], e2e::MERCHANT);
    assert!(
        body["data"]["amount"].is_object() || body["data"]["amount"].is_string(),
        "{body}"
    );

    // The log shows each delivery succeeded, the first ones after retries.
    let deadline = Instant::now() + Duration::from_secs(10);
    let log = loop {
        let page: Value = app
            .get(
                &format!("/v1/webhook-endpoints/{endpoint}/deliveries?limit=100"),
                &app.checkout_key,
            )
            .await
            .json()
            .await
            .unwrap();
        let data = page["data"].as_array().unwrap().clone();
        if data.len() == expected.len() && data.iter().all(|d| d["state"] == "succeeded") {
            break data;
        }
        assert!(Instant::now() < deadline, "log never settled: {page}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let attempts: i64 = log.iter().map(|d| d["attempts"].as_i64().unwrap()).sum();
    assert_eq!(attempts as usize, expected.len() + 5);

    // Resent on request: the same event id, signed again.
    let first = &log[log.len() - 1];
    assert_eq!(resend(&app, &endpoint, first).await, 202);
    service
        .wait_received(received.len() + 1, Duration::from_secs(10), "never resent")
        .await;
    let again = service.received().last().cloned().unwrap();
    assert_eq!(again.event_id, first["event_id"].as_str().unwrap());
    verify(&secret, &again);
}

#[tokio::test]
async fn only_the_events_asked_for_are_sent_and_another_merchant_sees_no_endpoint() {
    let app = spawn_app_configured(ServeRole::All, quick_retries).await;
    let service = OrderService::start(0, 0).await;
    let (endpoint, _) = register(&app, &service.url, Some(&["PaymentApproved"])).await;
    let listed: Value = app
        .get("/v1/webhook-endpoints", &app.checkout_key)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["data"][0]["id"], endpoint.as_str());
    assert_eq!(listed["data"][0]["events"], json!(["PaymentApproved"]));
    assert!(
        listed["data"][0].get("secret").is_none(),
        "the secret is shown once"
    );
    let other = app.key_for("m-other").await;
    assert_eq!(
        app.get(&format!("/v1/webhook-endpoints/{endpoint}"), &other)
            .await
            .status(),
        404
    );
    let theirs: Value = app
        .get("/v1/webhook-endpoints", &other)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(theirs["data"], json!([]));

    let approved = pay(&app, "ev-1", "tok_sandbox_approved").await;
    app.wait_for_status(&approved, "APPROVED").await;
    // Another merchant's payment is never sent to this merchant's endpoint.
    let theirs = app
        .post(
            "/v1/payments",
            &other,
            Some("ev-2"),
            &payment_body("1.00", "USD", "ev-2", "tok_sandbox_approved", "automatic"),
        )
        .await;
    assert_eq!(theirs.status(), 201);
    service
        .wait_received(1, Duration::from_secs(10), "nothing delivered")
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let received = service.received();
    assert_eq!(received.len(), 1, "{received:?}");
    let body: Value = serde_json::from_slice(&received[0].body).unwrap();
    assert_eq!(body["type"], "PaymentApproved");
    assert_eq!(body["payment_id"], approved.as_str());

    let deleted = app
        .http
        .delete(format!("{}/v1/webhook-endpoints/{endpoint}", app.address))
        .bearer_auth(&app.checkout_key)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    let after = pay(&app, "ev-3", "tok_sandbox_approved").await;
    app.wait_for_status(&after, "APPROVED").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        service.received().len(),
        1,
        "a deleted endpoint hears nothing"
    );
}

#[tokio::test]
async fn targets_inside_the_network_are_refused_in_production() {
    let app = spawn_app_configured(ServeRole::All, |s| {
        s.merchant_webhooks.allow_private_targets = false;
    })
    .await;
    for url in [
        "http://orders.example.com/hooks",
        "https://127.0.0.1/hooks",
        "https://[::1]/hooks",
        "https://169.254.169.254/latest/meta-data",
        "https://10.1.2.3/hooks",
        "https://localhost:8443/hooks",
        "ftp://orders.example.com/",
        "https://user:pw@orders.example.com/",
    ] {
        let response = app
            .post(
                "/v1/webhook-endpoints",
                &app.checkout_key,
                None,
                &json!({"url": url}),
            )
            .await;
        assert_eq!(response.status(), 422, "{url}");
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["errors"][0]["field"], "url", "{url}: {problem}");
    }
    let unknown = app
        .post(
            "/v1/webhook-endpoints",
            &app.checkout_key,
            None,
            &json!({"url": "https://orders.example.com/hooks", "events": ["PaymentStolen"]}),
        )
        .await;
    assert_eq!(unknown.status(), 422);
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM webhook_endpoints")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(count, 0, "nothing was registered");
}

#[tokio::test]
async fn an_endpoint_failing_past_the_horizon_is_disabled_and_a_resend_revives_it() {
    let app = spawn_app_configured(ServeRole::All, |s| {
        quick_retries(s);
        s.merchant_webhooks.horizon_s = 1;
    })
    .await;
    let service = OrderService::start(usize::MAX, 0).await;
    let (endpoint, secret) = register(&app, &service.url, Some(&["PaymentApproved"])).await;
    let approved = pay(&app, "dis-1", "tok_sandbox_approved").await;
    app.wait_for_status(&approved, "APPROVED").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let body: Value = app
            .get(
                &format!("/v1/webhook-endpoints/{endpoint}"),
                &app.checkout_key,
            )
            .await
            .json()
            .await
            .unwrap();
        if body["status"] == "disabled" {
            assert!(body["status_reason"].as_str().unwrap().contains("failed"));
            break;
        }
        assert!(Instant::now() < deadline, "never disabled: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let tries = service.received().len();
    assert!(tries >= 2, "retried before giving up: {tries}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        service.received().len(),
        tries,
        "nothing is sent to a disabled endpoint"
    );

    let page: Value = app
        .get(
            &format!("/v1/webhook-endpoints/{endpoint}/deliveries"),
            &app.checkout_key,
        )
        .await
        .json()
        .await
        .unwrap();
    let delivery = &page["data"][0];
    assert_eq!(delivery["last_status_code"], 500);
    service.set_failures(0);
    assert_eq!(resend(&app, &endpoint, delivery).await, 202);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if service.state.lock().unwrap().answered_ok == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "the resend never arrived");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    verify(&secret, service.received().last().unwrap());
    let body: Value = app
        .get(
            &format!("/v1/webhook-endpoints/{endpoint}"),
            &app.checkout_key,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["status"], "enabled");
}

/// A `payledger serve --role <role>` process on the app's database and broker.
async fn start_node(app: &TestApp, role: &str) -> tokio::process::Child {
    use e2e::process::{free_port, serve, wait_ready};
    let port = free_port();
    let child = serve(
        &["--role", role],
        port,
        &[
            ("DATABASE_URL", app.settings.database_url.as_str()),
            ("AMQP_URL", app.settings.amqp_url.as_str()),
            ("AMQP_PREFIX", app.settings.amqp_prefix.as_str()),
            ("MERCHANT_WEBHOOK_BACKOFF_BASE_MS", "20"),
            ("MERCHANT_WEBHOOK_BACKOFF_MAX_MS", "200"),
        ],
    );
    wait_ready(&app.http, &format!("http://127.0.0.1:{port}")).await;
    child
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dispatcher_killed_mid_delivery_loses_nothing_and_keeps_each_payments_order() {
    const PAYMENTS: usize = 12;
    let app = e2e::spawn_app_with_role(ServeRole::Api).await;
    // Every answer is held, so a kill lands while deliveries are in flight.
    let service = OrderService::start(2, 150).await;
    let (_, secret) = register(&app, &service.url, None).await;
    let _relay = start_node(&app, "relay").await;
    let mut projector = start_node(&app, "projector").await;

    let mut payments = Vec::new();
    for i in 0..PAYMENTS {
        payments.push(pay(&app, &format!("kill-{i}"), "tok_sandbox_approved").await);
    }
    service
        .wait_received(6, Duration::from_secs(20), "deliveries never started")
        .await;
    e2e::process::kill_hard(&mut projector).await;
    let before_restart = service.received().len();
    let _projector = start_node(&app, "projector").await;

    let expected = wait_for_all(&app, &service, &payments).await;
    let received = service.received();
    assert!(
        before_restart < expected.len(),
        "the kill came after everything was sent"
    );
    for r in &received {
        verify(&secret, r);
    }
    let ids: BTreeSet<String> = received.iter().map(|r| r.event_id.clone()).collect();
    assert_eq!(ids, expected, "every event, and only these, once per id");
    assert_in_payment_order(&received);
}

/// The code block of `language` in the merchants' guide.
fn documented(language: &str) -> String {
    let guide = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/merchant-webhooks.md"),
    )
    .expect("the merchants' guide");
    let fence = format!("```{language}\n");
    let start = guide.find(&fence).expect("a verifier block") + fence.len();
    let end = start + guide[start..].find("```").expect("its end");
    guide[start..end].to_owned()
}

/// Runs the guide's verifier of `language` on a delivery; answers what it said.
async fn documented_verdict(language: &str, secret: &str, header: &str, body: &[u8]) -> bool {
    let dir = std::env::temp_dir().join(format!("payledger-verifier-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("body"), body).unwrap();
    let (program, script) = match language {
        "python" => (
            "python3",
            format!(
                "{}\nimport sys\nraw = open(sys.argv[3], 'rb').read()\nprint(verify_payledger(sys.argv[1], sys.argv[2], raw))\n",
                documented("python")
            ),
        ),
        _ => (
            "node",
            format!(
                "{}\nconst raw = require('fs').readFileSync(process.argv[4]);\nconsole.log(verifyPayledger(process.argv[2], process.argv[3], raw) ? 'True' : 'False');\n",
                documented("javascript")
            ),
        ),
    };
    let file = dir.join(if program == "node" {
        "verify.js"
    } else {
        "verify.py"
    });
    std::fs::write(&file, script).unwrap();
    let output = tokio::process::Command::new(program)
        .arg(&file)
        .arg(secret)
        .arg(header)
        .arg(dir.join("body"))
        .output()
        .await
        .unwrap_or_else(|e| panic!("{program} runs: {e}"));
    let _ = std::fs::remove_dir_all(&dir);
    let said = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    assert!(
        output.status.success() && (said == "True" || said == "False"),
        "{program}: {said} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    said == "True"
}

#[tokio::test]
async fn the_guides_python_and_node_verifiers_accept_a_real_delivery_and_nothing_altered() {
    let app = spawn_app_configured(ServeRole::All, quick_retries).await;
    let service = OrderService::start(0, 0).await;
    let (_, secret) = register(&app, &service.url, Some(&["PaymentInitiated"])).await;
    pay(&app, "doc-1", "tok_sandbox_approved").await;
    service
        .wait_received(1, Duration::from_secs(10), "nothing delivered")
        .await;
    let delivery = service.received().remove(0);
    let mut altered = delivery.body.clone();
    let at = altered.len() - 2;
    altered[at] ^= 1;
    let stale = {
        // Signed correctly, an hour ago: a replay.
        let t = chrono::Utc::now().timestamp() - 3_600;
        let mut signed = format!("{t}.").into_bytes();
        signed.extend_from_slice(&delivery.body);
        format!("t={t},v1={}", hex(&hmac_sha256(secret.as_bytes(), &signed)))
    };
    for language in ["python", "javascript"] {
        assert!(
            documented_verdict(language, &secret, &delivery.signature, &delivery.body).await,
            "{language}"
        );
        assert!(
            !documented_verdict(language, &secret, &delivery.signature, &altered).await,
            "{language}: altered body"
        );
        assert!(
            !documented_verdict(language, "whsec_other", &delivery.signature, &delivery.body).await,
            "{language}: other secret"
        );
        assert!(
            !documented_verdict(language, &secret, &stale, &delivery.body).await,
            "{language}: replayed"
        );
        assert!(
            !documented_verdict(language, &secret, "garbage", &delivery.body).await,
            "{language}: malformed"
        );
    }
}
