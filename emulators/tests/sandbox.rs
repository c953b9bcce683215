//! End-to-end tests over real sockets: the sandbox server on 127.0.0.1:0, a webhook receiver
//! on 127.0.0.1:0, and the real `SandboxProvider` client between them. No mocks.

use std::collections::VecDeque;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use domain::{CaptureId, CaptureMode, Currency, Money, PaymentId, ProviderFailureKind, RefundId};
use tokio::sync::mpsc;
use uuid::Uuid;

use connectors::sandbox::{
    parse_notification, verify_signature, Outcome, SandboxClientConfig, SandboxProvider,
    SIGNATURE_HEADER,
};
use connectors::{
    CreateTransaction, PaymentMethodDetails, PaymentProvider, ProviderTransactionStatus,
};
use emulators::sandbox::*;

const API_KEY: &str = "sk_sandbox_test_key_0123456789";
const WEBHOOK_SECRET: &str = "whsec_sandbox_test_0123456789";
const WAIT: Duration = Duration::from_secs(5);
const QUIET: Duration = Duration::from_millis(400);

fn cop(amount: &str) -> Money {
    Money::parse(amount, Currency::COP).unwrap()
}

fn fast_options() -> SandboxOptions {
    SandboxOptions {
        webhook_retry: WebhookRetryPolicy {
            max_attempts: 8,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(40),
        },
        webhook_timeout: Duration::from_secs(2),
        timeout_token_delay: Duration::from_millis(1_500),
        workers: 1,
        shutdown_timeout_secs: 1,
        ..SandboxOptions::default()
    }
}

/// One webhook POST as the receiver saw it.
#[derive(Debug, Clone)]
struct Delivery {
    body: Vec<u8>,
    signature: Option<String>,
}

/// A tiny webhook receiver: answers the scripted statuses in order, then 200.
struct Receiver {
    url: String,
    server: ServerHandle,
    deliveries: mpsc::UnboundedReceiver<Delivery>,
}

struct ReceiverState {
    script: Mutex<VecDeque<u16>>,
    seen: mpsc::UnboundedSender<Delivery>,
}

async fn receive(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<ReceiverState>,
) -> HttpResponse {
    let signature = req
        .headers()
        .get(SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let _ = state.seen.send(Delivery {
        body: body.to_vec(),
        signature,
    });
    let status = state.script.lock().unwrap().pop_front().unwrap_or(200);
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap()).finish()
}

impl Receiver {
    async fn start(script: &[u16]) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (seen, deliveries) = mpsc::unbounded_channel();
        let state = web::Data::new(ReceiverState {
            script: Mutex::new(script.iter().copied().collect()),
            seen,
        });
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .route("/hook", web::post().to(receive))
        })
        .workers(1)
        .disable_signals()
        .shutdown_timeout(1)
        .listen(listener)
        .unwrap()
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        Receiver {
            url: format!("http://{addr}/hook"),
            server: handle,
            deliveries,
        }
    }

    async fn next(&mut self) -> Delivery {
        tokio::time::timeout(WAIT, self.deliveries.recv())
            .await
            .expect("no webhook arrived in time")
            .expect("receiver closed")
    }

    async fn assert_quiet(&mut self) {
        if let Ok(Some(d)) = tokio::time::timeout(QUIET, self.deliveries.recv()).await {
            panic!("unexpected webhook: {}", String::from_utf8_lossy(&d.body));
        }
    }
}

struct Harness {
    sandbox: SandboxHandle,
    receiver: Receiver,
    provider: SandboxProvider,
}

impl Harness {
    async fn start(script: &[u16], options: SandboxOptions) -> Harness {
        Harness::start_processing(script, options, Processor::default()).await
    }

    async fn start_processing(
        script: &[u16],
        options: SandboxOptions,
        processor: Processor,
    ) -> Harness {
        let receiver = Receiver::start(script).await;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let sandbox = start_with_options(
            listener,
            SandboxConfig {
                api_key: API_KEY.into(),
                webhook_url: receiver.url.clone(),
                webhook_secret: WEBHOOK_SECRET.into(),
                webhook_delay_ms: 20,
                processor,
            },
            options,
        )
        .await
        .unwrap();
        let provider = client(&sandbox.base_url(), API_KEY, 2_000);
        Harness {
            sandbox,
            receiver,
            provider,
        }
    }

    async fn stop(self) {
        self.sandbox.stop().await;
        self.receiver.server.stop(false).await;
    }
}

fn client(base_url: &str, api_key: &str, timeout_ms: u64) -> SandboxProvider {
    SandboxProvider::new(SandboxClientConfig {
        base_url: base_url.into(),
        api_key: api_key.into(),
        timeout_ms,
    })
    .unwrap()
}

fn request(token: &str, capture_mode: CaptureMode, amount: &str) -> CreateTransaction {
    CreateTransaction {
        payment_id: PaymentId::from_uuid(Uuid::new_v4()),
        reference: format!("order-{}", Uuid::new_v4().simple()),
        amount: cop(amount),
        method: PaymentMethodDetails::Card {
            token: token.into(),
        },
        capture_mode,
        customer_email: None,
        customer: Default::default(),
        return_url: None,
    }
}

/// Checks the signature like payledger's webhook endpoint will, then parses.
fn verified(delivery: &Delivery) -> connectors::sandbox::SandboxNotification {
    let signature = delivery.signature.as_deref().expect("no signature header");
    assert!(verify_signature(
        WEBHOOK_SECRET.as_bytes(),
        &delivery.body,
        signature
    ));
    parse_notification(&delivery.body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approved_automatic_payment_sends_one_signed_approved_webhook() {
    let mut h = Harness::start(&[], fast_options()).await;
    let req = request(tokens::APPROVED, CaptureMode::Automatic, "129000.00");

    let tx = h.provider.create_transaction(&req).await.unwrap();
    assert!(tx.id.starts_with("sbx_tx_"), "{}", tx.id);
    assert_eq!(tx.status, ProviderTransactionStatus::Pending);
    assert_eq!(tx.amount, cop("129000.00"));
    assert_eq!(tx.payment_id, req.payment_id);

    // Same payment again: same transaction, no second webhook.
    let again = h.provider.create_transaction(&req).await.unwrap();
    assert_eq!(again.id, tx.id);

    let delivery = h.receiver.next().await;
    let n = verified(&delivery);
    assert!(n.event_id.starts_with("evt_"));
    assert_eq!(n.transaction_id, tx.id);
    assert_eq!(n.payment_id, req.payment_id);
    assert_eq!(
        n.outcome,
        Outcome::Approved {
            amount: cop("129000.00")
        }
    );
    let raw: serde_json::Value = serde_json::from_slice(&delivery.body).unwrap();
    assert_eq!(raw["type"], "transaction.updated");
    assert_eq!(raw["data"]["amount"], "129000.00");
    assert_eq!(raw["data"]["currency"], "COP");
    assert!(raw["data"]["reason"].is_null());
    assert!(chrono::DateTime::parse_from_rfc3339(raw["created_at"].as_str().unwrap()).is_ok());
    h.receiver.assert_quiet().await;

    let now = h.provider.get_transaction(&tx.id).await.unwrap();
    assert_eq!(now.status, ProviderTransactionStatus::Approved);
    assert_eq!(now.captured_amount, cop("129000.00"));
    assert!(now.refunded_amount.is_zero());
    h.provider.health().await.unwrap();
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_capture_then_refunds_never_exceed_the_capture() {
    let mut h = Harness::start(&[], fast_options()).await;
    let p = &h.provider;
    let req = request(tokens::APPROVED, CaptureMode::Manual, "129000.00");
    let tx = p.create_transaction(&req).await.unwrap();

    // Nothing to capture before the authorization.
    let capture_id = CaptureId::from_uuid(Uuid::new_v4());
    let early = p
        .capture(&tx.id, capture_id, cop("100000"))
        .await
        .unwrap_err();
    assert_eq!(early.kind, ProviderFailureKind::Rejected);
    assert!(early.detail.contains("invalid_state"), "{}", early.detail);

    let n = verified(&h.receiver.next().await);
    assert_eq!(
        n.outcome,
        Outcome::Authorized {
            amount: cop("129000.00")
        }
    );
    assert_eq!(
        p.get_transaction(&tx.id).await.unwrap().status,
        ProviderTransactionStatus::Authorized
    );

    let over = p
        .capture(&tx.id, capture_id, cop("129000.01"))
        .await
        .unwrap_err();
    assert_eq!(over.kind, ProviderFailureKind::Rejected);
    assert!(
        over.detail.contains("amount_exceeds_authorized"),
        "{}",
        over.detail
    );

    p.capture(&tx.id, capture_id, cop("100000.00"))
        .await
        .unwrap();
    p.capture(&tx.id, capture_id, cop("100000.00"))
        .await
        .unwrap(); // retried: same 200
    let second = p
        .capture(&tx.id, CaptureId::from_uuid(Uuid::new_v4()), cop("1"))
        .await
        .unwrap_err();
    assert_eq!(second.kind, ProviderFailureKind::Rejected);
    let captured = p.get_transaction(&tx.id).await.unwrap();
    assert_eq!(captured.status, ProviderTransactionStatus::Approved);
    assert_eq!(captured.captured_amount, cop("100000.00"));

    let r1 = RefundId::from_uuid(Uuid::new_v4());
    let refund = p.refund(&tx.id, r1, cop("40000")).await.unwrap();
    assert!(refund.id.starts_with("sbx_rf_"), "{}", refund.id);
    assert_eq!(p.refund(&tx.id, r1, cop("40000")).await.unwrap(), refund);

    let r2 = RefundId::from_uuid(Uuid::new_v4());
    let too_much = p.refund(&tx.id, r2, cop("60000.01")).await.unwrap_err();
    assert_eq!(too_much.kind, ProviderFailureKind::Rejected);
    assert!(
        too_much.detail.contains("amount_exceeds_refundable"),
        "{}",
        too_much.detail
    );
    p.refund(&tx.id, r2, cop("60000")).await.unwrap();

    let done = p.get_transaction(&tx.id).await.unwrap();
    assert_eq!(done.refunded_amount, cop("100000.00"));
    let r3 = RefundId::from_uuid(Uuid::new_v4());
    assert_eq!(
        p.refund(&tx.id, r3, cop("0.01")).await.unwrap_err().kind,
        ProviderFailureKind::Rejected
    );
    h.receiver.assert_quiet().await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn void_releases_an_authorization_and_repeats_harmlessly() {
    let mut h = Harness::start(&[], fast_options()).await;
    let p = &h.provider;
    let tx = p
        .create_transaction(&request(tokens::APPROVED, CaptureMode::Manual, "50.00"))
        .await
        .unwrap();
    assert_eq!(
        p.void(&tx.id).await.unwrap_err().kind,
        ProviderFailureKind::Rejected,
        "pending cannot be voided"
    );
    h.receiver.next().await;
    p.void(&tx.id).await.unwrap();
    p.void(&tx.id).await.unwrap();
    assert_eq!(
        p.get_transaction(&tx.id).await.unwrap().status,
        ProviderTransactionStatus::Voided
    );
    let capture = p
        .capture(&tx.id, CaptureId::from_uuid(Uuid::new_v4()), cop("1"))
        .await
        .unwrap_err();
    assert_eq!(capture.kind, ProviderFailureKind::Rejected);
    assert!(capture.detail.contains("invalid_state"));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declined_token_sends_a_declined_webhook() {
    let mut h = Harness::start(&[], fast_options()).await;
    let req = request(tokens::DECLINED, CaptureMode::Automatic, "10.00");
    let tx = h.provider.create_transaction(&req).await.unwrap();
    assert_eq!(tx.status, ProviderTransactionStatus::Pending);

    let n = verified(&h.receiver.next().await);
    assert_eq!(
        n.outcome,
        Outcome::Declined {
            reason: "card_declined".into()
        }
    );
    assert_eq!(n.payment_id, req.payment_id);
    assert_eq!(
        h.provider.get_transaction(&tx.id).await.unwrap().status,
        ProviderTransactionStatus::Declined {
            reason: "card_declined".into()
        }
    );
    let refund = h
        .provider
        .refund(&tx.id, RefundId::from_uuid(Uuid::new_v4()), cop("1"))
        .await
        .unwrap_err();
    assert_eq!(refund.kind, ProviderFailureKind::Rejected);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_token_is_a_server_error_and_sends_no_webhook() {
    let mut h = Harness::start(&[], fast_options()).await;
    let err = h
        .provider
        .create_transaction(&request(tokens::ERROR, CaptureMode::Automatic, "10.00"))
        .await
        .unwrap_err();
    assert_eq!(err.kind, ProviderFailureKind::ServerError);
    assert!(err.detail.contains("503"), "{}", err.detail);
    assert!(err.is_retryable());
    h.receiver.assert_quiet().await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_token_is_rejected_and_never_echoed() {
    let mut h = Harness::start(&[], fast_options()).await;
    let err = h
        .provider
        .create_transaction(&request(
            "tok_customer_secret_4242",
            CaptureMode::Automatic,
            "10.00",
        ))
        .await
        .unwrap_err();
    assert_eq!(err.kind, ProviderFailureKind::Rejected);
    assert!(err.detail.contains("invalid_token"), "{}", err.detail);
    assert!(!err.detail.contains("4242"), "{}", err.detail);
    h.receiver.assert_quiet().await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_is_redelivered_with_the_same_event_until_acknowledged() {
    let mut h = Harness::start(&[500, 500, 200], fast_options()).await;
    let tx = h
        .provider
        .create_transaction(&request(tokens::APPROVED, CaptureMode::Automatic, "10.00"))
        .await
        .unwrap();
    let first = h.receiver.next().await;
    let second = h.receiver.next().await;
    let third = h.receiver.next().await;
    for d in [&second, &third] {
        assert_eq!(d.body, first.body, "redelivery must carry the same bytes");
        assert_eq!(d.signature, first.signature);
    }
    let n = verified(&third);
    assert_eq!(n.event_id, verified(&first).event_id);
    assert_eq!(n.transaction_id, tx.id);
    h.receiver.assert_quiet().await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_delivery_gives_up_after_the_last_attempt() {
    let mut options = fast_options();
    options.webhook_retry.max_attempts = 3;
    let mut h = Harness::start(&[503; 10], options).await;
    h.provider
        .create_transaction(&request(tokens::APPROVED, CaptureMode::Automatic, "10.00"))
        .await
        .unwrap();
    let first = h.receiver.next().await;
    for _ in 0..2 {
        assert_eq!(h.receiver.next().await.body, first.body);
    }
    h.receiver.assert_quiet().await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_webhook_receiver_is_retried() {
    // The receiver only comes up after the first attempts failed to connect.
    let spare = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = spare.local_addr().unwrap().port();
    drop(spare);
    let mut options = fast_options();
    options.webhook_retry.base_delay = Duration::from_millis(100);
    options.webhook_retry.max_delay = Duration::from_millis(200);
    options.webhook_retry.max_attempts = 20;
    let sandbox = start_with_options(
        TcpListener::bind("127.0.0.1:0").unwrap(),
        SandboxConfig {
            api_key: API_KEY.into(),
            webhook_url: format!("http://127.0.0.1:{port}/hook"),
            webhook_secret: WEBHOOK_SECRET.into(),
            webhook_delay_ms: 0,
            processor: Default::default(),
        },
        options,
    )
    .await
    .unwrap();
    let provider = client(&sandbox.base_url(), API_KEY, 2_000);
    let tx = provider
        .create_transaction(&request(tokens::APPROVED, CaptureMode::Automatic, "10.00"))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let (seen, mut deliveries) = mpsc::unbounded_channel();
    let state = web::Data::new(ReceiverState {
        script: Mutex::new(VecDeque::new()),
        seen,
    });
    let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .route("/hook", web::post().to(receive))
    })
    .workers(1)
    .disable_signals()
    .listen(listener)
    .unwrap()
    .run();
    let receiver = server.handle();
    tokio::spawn(server);

    let delivery = tokio::time::timeout(WAIT, deliveries.recv())
        .await
        .unwrap()
        .unwrap();
    let n = parse_notification(&delivery.body).unwrap();
    assert_eq!(n.transaction_id, tx.id);
    sandbox.stop().await;
    receiver.stop(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_api_key_is_rejected_without_leaking_it() {
    let mut h = Harness::start(&[], fast_options()).await;
    let wrong = client(&h.sandbox.base_url(), "sk_wrong_key_abcdef", 2_000);
    let err = wrong
        .create_transaction(&request(tokens::APPROVED, CaptureMode::Automatic, "10.00"))
        .await
        .unwrap_err();
    assert_eq!(err.kind, ProviderFailureKind::Rejected);
    assert!(err.detail.contains("401"), "{}", err.detail);
    assert!(!err.detail.contains("sk_wrong_key_abcdef"));
    assert!(!err.to_string().contains(API_KEY));
    assert_eq!(
        wrong.get_transaction("sbx_tx_x").await.unwrap_err().kind,
        ProviderFailureKind::Rejected
    );
    h.receiver.assert_quiet().await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_port_is_a_connection_failure() {
    let spare = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = spare.local_addr().unwrap();
    drop(spare);
    let p = client(&format!("http://{addr}"), API_KEY, 2_000);
    let err = p
        .create_transaction(&request(tokens::APPROVED, CaptureMode::Automatic, "10.00"))
        .await
        .unwrap_err();
    assert_eq!(err.kind, ProviderFailureKind::Connection, "{err}");
    assert!(!err.detail.contains(API_KEY));
    assert_eq!(
        p.health().await.unwrap_err().kind,
        ProviderFailureKind::Connection
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_answers_is_a_timeout() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let silent = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            open.push(socket); // accept, read nothing, answer nothing
        }
    });
    let p = client(&format!("http://{addr}"), API_KEY, 200);
    let started = std::time::Instant::now();
    let err = p.get_transaction("sbx_tx_1").await.unwrap_err();
    assert_eq!(err.kind, ProviderFailureKind::Timeout, "{err}");
    assert!(started.elapsed() < Duration::from_secs(2));
    silent.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_token_makes_the_client_time_out() {
    let mut h = Harness::start(&[], fast_options()).await;
    let impatient = client(&h.sandbox.base_url(), API_KEY, 200);
    let err = impatient
        .create_transaction(&request(tokens::TIMEOUT, CaptureMode::Automatic, "10.00"))
        .await
        .unwrap_err();
    assert_eq!(err.kind, ProviderFailureKind::Timeout, "{err}");
    h.receiver.assert_quiet().await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_payment_with_another_body_is_refused() {
    let mut h = Harness::start(&[], fast_options()).await;
    let req = request(tokens::APPROVED, CaptureMode::Automatic, "10.00");
    h.provider.create_transaction(&req).await.unwrap();
    let mut changed = req.clone();
    changed.amount = cop("11.00");
    let err = h.provider.create_transaction(&changed).await.unwrap_err();
    assert_eq!(err.kind, ProviderFailureKind::Rejected);
    assert!(
        err.detail.contains("idempotency_conflict"),
        "{}",
        err.detail
    );
    h.receiver.next().await;
    h.receiver.assert_quiet().await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_webhook_queue_refuses_new_transactions_instead_of_dropping_webhooks() {
    let mut options = fast_options();
    options.webhook_queue_capacity = 1;
    // The receiver refuses, so the one slot stays taken while its webhook is retried.
    options.webhook_retry.base_delay = Duration::from_millis(300);
    options.webhook_retry.max_attempts = 3;
    let mut h = Harness::start(&[500, 500, 500], options).await;
    let first = request(tokens::APPROVED, CaptureMode::Automatic, "10.00");
    let tx = h.provider.create_transaction(&first).await.unwrap();

    let err = h
        .provider
        .create_transaction(&request(tokens::APPROVED, CaptureMode::Automatic, "10.00"))
        .await
        .unwrap_err();
    assert_eq!(err.kind, ProviderFailureKind::ServerError);
    assert!(err.detail.contains("webhook_queue_full"), "{}", err.detail);
    // A retry of the first payment still gets its transaction.
    assert_eq!(
        h.provider.create_transaction(&first).await.unwrap().id,
        tx.id
    );

    // Once the first webhook is done (given up), the slot is free again.
    for _ in 0..3 {
        h.receiver.next().await;
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let attempt = h
            .provider
            .create_transaction(&request(tokens::APPROVED, CaptureMode::Automatic, "10.00"))
            .await;
        match attempt {
            Ok(_) => break,
            Err(e) if e.detail.contains("webhook_queue_full") => {
                assert!(tokio::time::Instant::now() < deadline, "slot never freed");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("{e}"),
        }
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_store_refuses_new_transactions() {
    let mut options = fast_options();
    options.transactions_max = 1;
    let h = Harness::start(&[], options).await;
    h.provider
        .create_transaction(&request(tokens::APPROVED, CaptureMode::Automatic, "10.00"))
        .await
        .unwrap();
    let err = h
        .provider
        .create_transaction(&request(tokens::APPROVED, CaptureMode::Automatic, "10.00"))
        .await
        .unwrap_err();
    assert_eq!(err.kind, ProviderFailureKind::ServerError);
    assert!(err.detail.contains("capacity_exhausted"), "{}", err.detail);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_contract_of_the_server() {
    let h = Harness::start(&[], fast_options()).await;
    let base = h.sandbox.base_url();
    let http = reqwest::Client::new();
    let bearer = format!("Bearer {API_KEY}");

    let health = http.get(format!("{base}/health")).send().await.unwrap();
    assert_eq!(health.status(), 200, "health is public");

    let no_auth = http
        .get(format!("{base}/v1/transactions/sbx_tx_1"))
        .send()
        .await
        .unwrap();
    assert_eq!(no_auth.status(), 401);
    assert_eq!(no_auth.headers()["www-authenticate"], "Bearer");
    let body: serde_json::Value = no_auth.json().await.unwrap();
    assert_eq!(body["error"], "unauthorized");

    let basic = http
        .get(format!("{base}/v1/transactions/sbx_tx_1"))
        .header("Authorization", format!("Basic {API_KEY}"))
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), 401);

    let unknown = http
        .get(format!("{base}/v1/transactions/sbx_tx_1"))
        .header("Authorization", &bearer)
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    assert_eq!(
        h.provider
            .get_transaction("sbx_tx_1")
            .await
            .unwrap_err()
            .kind,
        ProviderFailureKind::Rejected
    );

    let valid = serde_json::json!({
        "payment_id": Uuid::new_v4(), "reference": "r-1", "amount": "10.00", "currency": "COP",
        "method": "CARD", "token": tokens::APPROVED, "capture": "automatic",
    });
    let post = |body: serde_json::Value| {
        http.post(format!("{base}/v1/transactions"))
            .header("Authorization", &bearer)
            .json(&body)
            .send()
    };
    let mut number = valid.clone();
    number["amount"] = serde_json::json!(10.0);
    assert_eq!(post(number).await.unwrap().status(), 400);
    let mut extra = valid.clone();
    extra["surprise"] = serde_json::json!(true);
    assert_eq!(post(extra).await.unwrap().status(), 400);
    let mut decimals = valid.clone();
    decimals["amount"] = serde_json::json!("10.001");
    let r = post(decimals).await.unwrap();
    assert_eq!(r.status(), 422);
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["error"],
        "invalid_amount"
    );
    let mut currency = valid.clone();
    currency["currency"] = serde_json::json!("XXX");
    assert_eq!(post(currency).await.unwrap().status(), 422);
    let mut reference = valid.clone();
    reference["reference"] = serde_json::json!("r".repeat(129));
    assert_eq!(post(reference).await.unwrap().status(), 422);

    let created = post(valid.clone()).await.unwrap();
    assert_eq!(created.status(), 201);
    let first: serde_json::Value = created.json().await.unwrap();
    assert_eq!(first["status"], "PENDING");
    assert_eq!(first["amount"], "10.00");
    assert_eq!(first["captured_amount"], "0.00");
    let repeated = post(valid).await.unwrap();
    assert_eq!(repeated.status(), 200);
    assert_eq!(
        repeated.json::<serde_json::Value>().await.unwrap()["id"],
        first["id"]
    );

    let huge = http
        .post(format!("{base}/v1/transactions"))
        .header("Authorization", &bearer)
        .header("Content-Type", "application/json")
        .body(vec![b' '; REQUEST_BODY_MAX_BYTES + 1])
        .send()
        .await
        .unwrap();
    assert_eq!(huge.status(), 413);

    let route = http
        .get(format!("{base}/v2/nothing"))
        .header("Authorization", &bearer)
        .send()
        .await
        .unwrap();
    assert_eq!(route.status(), 404);
    h.stop().await;
}

#[tokio::test]
async fn start_refuses_unusable_configuration() {
    let config = SandboxConfig {
        api_key: API_KEY.into(),
        webhook_url: "http://127.0.0.1:9/hook".into(),
        webhook_secret: WEBHOOK_SECRET.into(),
        webhook_delay_ms: 0,
        processor: Default::default(),
    };
    let printed = format!("{config:?}");
    assert!(
        !printed.contains(API_KEY) && !printed.contains(WEBHOOK_SECRET),
        "{printed}"
    );
    for broken in [
        SandboxConfig {
            api_key: String::new().into(),
            ..config.clone()
        },
        SandboxConfig {
            webhook_secret: String::new().into(),
            ..config.clone()
        },
        SandboxConfig {
            webhook_url: "not a url".into(),
            ..config.clone()
        },
        SandboxConfig {
            webhook_url: "ftp://127.0.0.1/hook".into(),
            ..config.clone()
        },
    ] {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let err = start(listener, broken).await.err().expect("must refuse");
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_refunds_never_exceed_the_capture() {
    let mut h = Harness::start(&[], fast_options()).await;
    let tx = h
        .provider
        .create_transaction(&request(tokens::APPROVED, CaptureMode::Automatic, "100.00"))
        .await
        .unwrap();
    h.receiver.next().await;
    let provider = Arc::new(h.provider);
    let attempts = (0..50).map(|_| {
        let provider = Arc::clone(&provider);
        let id = tx.id.clone();
        tokio::spawn(async move {
            provider
                .refund(&id, RefundId::from_uuid(Uuid::new_v4()), cop("7.00"))
                .await
        })
    });
    let mut succeeded = 0;
    for attempt in futures::future::join_all(attempts).await {
        match attempt.unwrap() {
            Ok(_) => succeeded += 1,
            Err(e) => assert_eq!(e.kind, ProviderFailureKind::Rejected),
        }
    }
    assert_eq!(succeeded, 14, "14 x 7.00 <= 100.00 < 15 x 7.00");
    let after = provider.get_transaction(&tx.id).await.unwrap();
    assert_eq!(after.refunded_amount, cop("98.00"));
    h.sandbox.stop().await;
    h.receiver.server.stop(false).await;
}

/// The decision a webhook reports: `APPROVED`/`AUTHORIZED`, or the decline's reason.
fn decision_of(delivery: &Delivery) -> String {
    match verified(delivery).outcome {
        Outcome::Approved { .. } => "APPROVED".into(),
        Outcome::Authorized { .. } => "AUTHORIZED".into(),
        Outcome::Declined { reason } => reason,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outcome_tokens_decline_with_their_reason() {
    let mut h = Harness::start(&[], fast_options()).await;
    for (token, reason) in [
        (tokens::INSUFFICIENT_FUNDS, "insufficient_funds"),
        (tokens::EXPIRED_CARD, "expired_card"),
        (tokens::STOLEN_CARD, "stolen_card"),
        (tokens::NETWORK_ERROR, "network_error"),
    ] {
        let tx = h
            .provider
            .create_transaction(&request(token, CaptureMode::Automatic, "5000.00"))
            .await
            .unwrap();
        assert_eq!(tx.status, ProviderTransactionStatus::Pending);
        assert_eq!(decision_of(&h.receiver.next().await), reason, "{token}");
    }
    h.receiver.assert_quiet().await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn card_bins_behave_as_credit_or_debit_with_gateway_like_ids() {
    let always = Processor::default().with_success_rate_bp(10_000);
    let mut h = Harness::start_processing(&[], fast_options(), always).await;
    let credit = "tok_bin_424242";
    let debit = "tok_bin_400005";

    let held = h
        .provider
        .create_transaction(&request(credit, CaptureMode::Manual, "700.00"))
        .await
        .unwrap();
    let id = held.id.strip_prefix("sbx_tx_").expect("prefix");
    assert_eq!(id.len(), 20, "{}", held.id);
    assert!(id.chars().all(|c| c.is_ascii_alphanumeric()), "{}", held.id);
    assert_eq!(decision_of(&h.receiver.next().await), "AUTHORIZED");

    // A debit card takes no authorization hold: refused before anything is processed.
    let refused = h
        .provider
        .create_transaction(&request(debit, CaptureMode::Manual, "700.00"))
        .await
        .unwrap_err();
    assert_eq!(refused.kind, ProviderFailureKind::Rejected, "{refused:?}");
    assert!(
        refused.to_string().contains("capture_not_supported"),
        "{refused}"
    );
    h.receiver.assert_quiet().await;

    h.provider
        .create_transaction(&request(debit, CaptureMode::Automatic, "700.00"))
        .await
        .unwrap();
    assert_eq!(decision_of(&h.receiver.next().await), "APPROVED");

    let unknown = h
        .provider
        .create_transaction(&request("tok_bin_411111", CaptureMode::Automatic, "700.00"))
        .await
        .unwrap_err();
    assert_eq!(unknown.kind, ProviderFailureKind::Rejected);
    h.stop().await;
}

/// A seeded 95 % processor approves 95 % +- 2 % of 2,000 payments, each one's outcome
/// arriving by its signed webhook.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seeded_95_percent_processor_approves_95_percent_of_2000_payments() {
    const PAYMENTS: usize = 2_000;
    let processor = Processor::from_lookup(|name| match name {
        "SANDBOX_SUCCESS_RATE" => Some("0.95".into()),
        "SANDBOX_SEED" => Some("2026".into()),
        _ => None,
    })
    .unwrap();
    let options = SandboxOptions {
        webhook_concurrency: 64,
        ..fast_options()
    };
    let mut h = Harness::start_processing(&[], options, processor).await;
    for n in 0..PAYMENTS {
        let mut create = request("tok_bin_555555", CaptureMode::Automatic, "100.00");
        create.payment_id = PaymentId::from_uuid(Uuid::from_u128(n as u128 + 1));
        h.provider.create_transaction(&create).await.unwrap();
    }
    let mut decisions = std::collections::HashMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while decisions.len() < PAYMENTS {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} decided",
            decisions.len()
        );
        let delivery = h.receiver.next().await;
        let notification = verified(&delivery);
        decisions.insert(notification.payment_id, decision_of(&delivery));
    }
    let approved = decisions.values().filter(|d| *d == "APPROVED").count();
    let share_bp = approved * 10_000 / PAYMENTS;
    assert!(
        (9_300..=9_700).contains(&share_bp),
        "{approved} of {PAYMENTS} approved"
    );
    let reasons: std::collections::HashSet<&String> =
        decisions.values().filter(|d| *d != "APPROVED").collect();
    assert!(
        reasons.len() > 1,
        "declines carry realistic reasons: {reasons:?}"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_processing_delay_holds_each_outcome_back() {
    let processor = Processor::from_lookup(|name| {
        (name == "SANDBOX_PROCESSING_DELAY_MS").then(|| "600-700".to_owned())
    })
    .unwrap();
    let mut h = Harness::start_processing(&[], fast_options(), processor).await;
    let started = std::time::Instant::now();
    h.provider
        .create_transaction(&request(tokens::APPROVED, CaptureMode::Automatic, "900.00"))
        .await
        .unwrap();
    assert_eq!(decision_of(&h.receiver.next().await), "APPROVED");
    assert!(
        started.elapsed() >= Duration::from_millis(600),
        "decided after {:?}",
        started.elapsed()
    );
    h.stop().await;
}
