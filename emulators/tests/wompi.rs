//! End-to-end tests over real sockets: the Wompi emulator on 127.0.0.1:0, a webhook receiver
//! on 127.0.0.1:0, the real `WompiProvider` client and the real `WompiWebhookVerifier`. No
//! mocks.

use std::collections::VecDeque;
use std::net::TcpListener;
use std::sync::Mutex as StdMutex;
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::http::StatusCode;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use chrono::Utc;
use domain::{CaptureMode, Currency, Money, PaymentId, ProviderFailureKind, RefundId};
use serde_json::{json, Value};
use sha2::Digest;
use tokio::sync::mpsc;
use uuid::Uuid;

use connectors::wompi::WompiWebhookVerifier;
use connectors::wompi::{WompiConfig, WompiProvider, TEST_PUBLIC_KEY};
use connectors::{
    CreateTransaction, NextAction, PaymentMethodDetails, PaymentProvider, ProviderTransactionStatus,
};
use connectors::{NotificationOutcome, ProviderNotification, WebhookRequest, WebhookVerifier};
use emulators::wompi::*;
use emulators::WebhookRetryPolicy;

/// The emulator of the account `config` talks to, as `api` starts it.
fn emulated(config: &WompiConfig, webhook_url: &str) -> WompiSandboxConfig {
    WompiSandboxConfig {
        public_key: config.public_key.clone(),
        private_key: config.private_key.clone(),
        events_secret: config.events_secret.clone(),
        integrity_secret: config.integrity_secret.clone(),
        webhook_url: webhook_url.to_owned(),
        webhook_delay_ms: 500,
        deliver_webhooks: true,
    }
}

const WAIT: Duration = Duration::from_secs(4);
const QUIET: Duration = Duration::from_millis(250);

fn client_config(base_url: &str) -> WompiConfig {
    WompiConfig {
        base_url: base_url.to_owned(),
        timeout_ms: 2_000,
        ..WompiConfig::test_defaults()
    }
}

fn cop(amount: &str) -> Money {
    Money::parse(amount, Currency::COP).unwrap()
}

fn fast_options() -> WompiSandboxOptions {
    WompiSandboxOptions {
        webhook_retry: WebhookRetryPolicy {
            max_attempts: 6,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(40),
        },
        webhook_timeout: Duration::from_secs(2),
        fault_timeout_delay: Duration::from_millis(800),
        workers: 1,
        shutdown_timeout_secs: 1,
        ..WompiSandboxOptions::default()
    }
}

/// One webhook POST as the receiver saw it.
#[derive(Debug, Clone)]
struct Delivery {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Delivery {
    fn verify_with(
        &self,
        verifier: &WompiWebhookVerifier,
    ) -> Result<Option<ProviderNotification>, connectors::WebhookError> {
        verifier.verify(&WebhookRequest {
            headers: &self.headers,
            body: &self.body,
            peer: None,
            received_at: Utc::now(),
        })
    }

    fn verified(&self) -> Option<ProviderNotification> {
        self.verify_with(&WompiWebhookVerifier::from_config(
            &WompiConfig::test_defaults(),
        ))
        .expect("the webhook must verify")
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

struct ReceiverState {
    script: StdMutex<VecDeque<u16>>,
    seen: mpsc::UnboundedSender<Delivery>,
}

/// A tiny webhook receiver: answers the scripted statuses in order, then 200.
struct Receiver {
    url: String,
    server: ServerHandle,
    deliveries: mpsc::UnboundedReceiver<Delivery>,
}

async fn receive(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<ReceiverState>,
) -> HttpResponse {
    let headers = req
        .headers()
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_ascii_lowercase(),
                v.to_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let _ = state.seen.send(Delivery {
        headers,
        body: body.to_vec(),
    });
    let status = state.script.lock().unwrap().pop_front().unwrap_or(200);
    HttpResponse::build(StatusCode::from_u16(status).unwrap()).finish()
}

impl Receiver {
    async fn start(script: &[u16]) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (seen, deliveries) = mpsc::unbounded_channel();
        let state = web::Data::new(ReceiverState {
            script: StdMutex::new(script.iter().copied().collect()),
            seen,
        });
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .route("/v1/webhooks/wompi", web::post().to(receive))
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
            url: format!("http://{addr}/v1/webhooks/wompi"),
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
    sandbox: WompiSandboxHandle,
    receiver: Receiver,
    provider: WompiProvider,
    http: reqwest::Client,
}

impl Harness {
    async fn start(script: &[u16], deliver_webhooks: bool) -> Harness {
        let receiver = Receiver::start(script).await;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut config = emulated(&WompiConfig::test_defaults(), &receiver.url);
        config.webhook_delay_ms = 20;
        config.deliver_webhooks = deliver_webhooks;
        let sandbox = start_with_options(listener, config, fast_options())
            .await
            .unwrap();
        let provider = WompiProvider::new(client_config(&sandbox.base_url())).unwrap();
        Harness {
            sandbox,
            receiver,
            provider,
            http: reqwest::Client::new(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.sandbox.addr())
    }

    /// Tokenizes a test card with the public key, as a front end would.
    async fn card_token(&self, number: &str) -> String {
        let response = self
            .http
            .post(self.url("/v1/tokens/cards"))
            .bearer_auth(TEST_PUBLIC_KEY)
            .json(&json!({
                "number": number, "cvc": "123", "exp_month": "08", "exp_year": "39",
                "card_holder": "José Pérez"
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["status"], "CREATED");
        let id = body["data"]["id"].as_str().unwrap().to_owned();
        assert!(id.starts_with("tok_test_"), "{id}");
        assert!(
            !body.to_string().contains(number),
            "the number is never echoed"
        );
        id
    }

    async fn set_fault(&self, fault: &str) {
        let response = self
            .http
            .post(self.url("/_sandbox/faults"))
            .json(&json!({ "create": fault }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }

    async fn customer(&self, transaction_id: &str, action: &str) -> reqwest::StatusCode {
        self.http
            .post(self.url(&format!("/_sandbox/pse/{transaction_id}/{action}")))
            .send()
            .await
            .unwrap()
            .status()
    }

    async fn stop(self) {
        self.sandbox.stop().await;
        self.receiver.server.stop(false).await;
    }
}

fn request(method: PaymentMethodDetails, amount: &str) -> CreateTransaction {
    CreateTransaction {
        payment_id: PaymentId::from_uuid(Uuid::new_v4()),
        reference: format!("order-{}", Uuid::new_v4().simple()),
        amount: cop(amount),
        method,
        capture_mode: CaptureMode::Automatic,
        customer_email: Some("ana@example.co".into()),
        customer: Default::default(),
        return_url: Some("https://shop.example/return".into()),
    }
}

fn card(token: &str) -> PaymentMethodDetails {
    PaymentMethodDetails::Card {
        token: token.to_owned().into(),
    }
}

fn nequi(phone: &str) -> PaymentMethodDetails {
    PaymentMethodDetails::Nequi {
        phone_number: phone.to_owned().into(),
    }
}

fn pse(bank: &str) -> PaymentMethodDetails {
    PaymentMethodDetails::Pse {
        financial_institution_code: bank.to_owned(),
        user_type: 0,
        user_legal_id_type: "CC".into(),
        user_legal_id: "1999888777".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approved_card_is_pending_then_approved_by_a_verified_webhook() {
    let mut h = Harness::start(&[], true).await;
    let token = h.card_token("4242424242424242").await;
    let req = request(card(&token), "129000.00");
    let tx = h.provider.create_transaction(&req).await.unwrap();
    assert_eq!(tx.status, ProviderTransactionStatus::Pending);
    assert_eq!(tx.payment_id, req.payment_id);
    assert_eq!(tx.amount, cop("129000"));
    assert_eq!(tx.next_action, None);

    let delivery = h.receiver.next().await;
    let body = delivery.json();
    assert_eq!(body["event"], "transaction.updated");
    assert_eq!(body["environment"], "test");
    assert_eq!(body["data"]["transaction"]["amount_in_cents"], 12_900_000);
    assert_eq!(
        delivery
            .headers
            .iter()
            .find(|(n, _)| n == "x-event-checksum")
            .map(|(_, v)| v.as_str()),
        body["signature"]["checksum"].as_str()
    );
    let n = delivery.verified().unwrap();
    assert_eq!(n.payment_id, req.payment_id);
    assert_eq!(n.provider_transaction_id, tx.id);
    assert_eq!(n.event_id, format!("{}:APPROVED", tx.id));
    assert_eq!(
        n.outcome,
        NotificationOutcome::Approved {
            amount: cop("129000")
        }
    );

    let now = h.provider.get_transaction(&tx.id).await.unwrap();
    assert_eq!(now.status, ProviderTransactionStatus::Approved);
    assert_eq!(now.captured_amount, cop("129000"));
    h.receiver.assert_quiet().await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declined_and_error_cards_follow_wompis_test_data() {
    let mut h = Harness::start(&[], true).await;
    let declined = h.card_token("4111111111111111").await;
    let other = h.card_token("5555555555554444").await;
    let d = h
        .provider
        .create_transaction(&request(card(&declined), "10.00"))
        .await
        .unwrap();
    let n = h.receiver.next().await.verified().unwrap();
    assert_eq!(n.provider_transaction_id, d.id);
    assert_eq!(
        n.outcome,
        NotificationOutcome::Declined {
            reason: DECLINED_MESSAGE.into()
        }
    );
    let e = h
        .provider
        .create_transaction(&request(card(&other), "10.00"))
        .await
        .unwrap();
    let n = h.receiver.next().await.verified().unwrap();
    assert_eq!(n.provider_transaction_id, e.id);
    assert_eq!(
        n.outcome,
        NotificationOutcome::Failed {
            reason: ERROR_MESSAGE.into()
        }
    );
    assert!(matches!(
        h.provider.get_transaction(&d.id).await.unwrap().status,
        ProviderTransactionStatus::Declined { .. }
    ));
    assert!(matches!(
        h.provider.get_transaction(&e.id).await.unwrap().status,
        ProviderTransactionStatus::Failed { .. }
    ));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nequi_numbers_decide_approved_declined_and_error() {
    let mut h = Harness::start(&[], true).await;
    for (phone, expected) in [
        ("3991111111", "APPROVED"),
        ("3992222222", "DECLINED"),
        ("3001234567", "ERROR"),
    ] {
        let tx = h
            .provider
            .create_transaction(&request(nequi(phone), "5000"))
            .await
            .unwrap();
        assert_eq!(tx.status, ProviderTransactionStatus::Pending);
        let delivery = h.receiver.next().await;
        assert_eq!(delivery.json()["data"]["transaction"]["status"], expected);
        assert_eq!(delivery.verified().unwrap().provider_transaction_id, tx.id);
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pse_waits_for_the_customer_then_reports_the_banks_answer() {
    let mut h = Harness::start(&[], true).await;
    let banks = h.provider.pse_banks().await.unwrap();
    assert_eq!(
        banks.iter().map(|b| b.code.as_str()).collect::<Vec<_>>(),
        vec!["1", "2"]
    );

    let approve = h
        .provider
        .create_transaction(&request(pse("1"), "129000.00"))
        .await
        .unwrap();
    assert_eq!(approve.status, ProviderTransactionStatus::Pending);
    let Some(NextAction::Redirect { url }) = approve.next_action.clone() else {
        panic!("PSE must redirect: {approve:?}");
    };
    assert!(
        url.ends_with(&format!("/_sandbox/pse/{}", approve.id)),
        "{url}"
    );
    let page = h.http.get(&url).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("/complete"));
    h.receiver.assert_quiet().await;
    // Still waiting: get says so and keeps the redirect.
    let again = h.provider.get_transaction(&approve.id).await.unwrap();
    assert_eq!(again.next_action, approve.next_action);

    assert_eq!(h.customer(&approve.id, "complete").await, 200);
    let n = h.receiver.next().await.verified().unwrap();
    assert_eq!(n.provider_transaction_id, approve.id);
    assert_eq!(
        n.outcome,
        NotificationOutcome::Approved {
            amount: cop("129000")
        }
    );
    assert_eq!(
        h.customer(&approve.id, "complete").await,
        409,
        "done already"
    );
    assert_eq!(h.customer(&approve.id, "abandon").await, 409);
    let done = h.provider.get_transaction(&approve.id).await.unwrap();
    assert_eq!(
        (done.status, done.next_action),
        (ProviderTransactionStatus::Approved, None)
    );

    let decline = h
        .provider
        .create_transaction(&request(pse("2"), "10"))
        .await
        .unwrap();
    assert_eq!(h.customer(&decline.id, "complete").await, 200);
    assert!(matches!(
        h.receiver.next().await.verified().unwrap().outcome,
        NotificationOutcome::Declined { .. }
    ));

    let abandoned = h
        .provider
        .create_transaction(&request(pse("1"), "10"))
        .await
        .unwrap();
    assert_eq!(h.customer(&abandoned.id, "abandon").await, 200);
    assert_eq!(
        h.receiver.next().await.verified().unwrap().outcome,
        NotificationOutcome::Failed {
            reason: ABANDONED_MESSAGE.into()
        }
    );
    assert_eq!(h.customer("112233-1-99999", "complete").await, 404);

    // An unknown bank is refused by Wompi, not sent to the customer.
    let err = h
        .provider
        .create_transaction(&request(pse("7"), "10"))
        .await
        .unwrap_err();
    assert_eq!(err.kind, ProviderFailureKind::Rejected);
    assert!(err.detail.contains("payment_method"), "{}", err.detail);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_give_server_error_and_timeout_until_cleared() {
    let mut h = Harness::start(&[], true).await;
    let token = h.card_token("4242424242424242").await;

    h.set_fault("server_error").await;
    let req = request(card(&token), "10");
    let err = h.provider.create_transaction(&req).await.unwrap_err();
    assert_eq!(err.kind, ProviderFailureKind::ServerError);
    assert!(err.is_retryable());

    h.set_fault("timeout").await;
    let impatient = WompiProvider::new(WompiConfig {
        timeout_ms: 200,
        ..client_config(&h.sandbox.base_url())
    })
    .unwrap();
    let err = impatient.create_transaction(&req).await.unwrap_err();
    assert_eq!(err.kind, ProviderFailureKind::Timeout, "{err}");

    h.set_fault("none").await;
    let tx = h.provider.create_transaction(&req).await.unwrap();
    assert_eq!(tx.status, ProviderTransactionStatus::Pending);
    assert_eq!(
        h.receiver
            .next()
            .await
            .verified()
            .unwrap()
            .provider_transaction_id,
        tx.id
    );

    let bad = h
        .http
        .post(h.url("/_sandbox/faults"))
        .json(&json!({ "create": "sometimes" }))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 422);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_create_returns_the_first_transaction() {
    let mut h = Harness::start(&[], true).await;
    let token = h.card_token("4242424242424242").await;
    let req = request(card(&token), "25000");
    let first = h.provider.create_transaction(&req).await.unwrap();
    let again = h.provider.create_transaction(&req).await.unwrap();
    assert_eq!(first.id, again.id);
    // The same payment id for another amount is refused, not paid twice.
    let mut other = req.clone();
    other.amount = cop("25001");
    let err = h.provider.create_transaction(&other).await.unwrap_err();
    assert_eq!(err.kind, ProviderFailureKind::Rejected);
    assert_eq!(
        h.receiver
            .next()
            .await
            .verified()
            .unwrap()
            .provider_transaction_id,
        first.id
    );
    h.receiver.assert_quiet().await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn void_is_for_approved_cards_and_repeats_succeed() {
    let mut h = Harness::start(&[], true).await;
    let token = h.card_token("4242424242424242").await;
    let tx = h
        .provider
        .create_transaction(&request(card(&token), "10"))
        .await
        .unwrap();
    h.receiver.next().await.verified().unwrap();
    h.provider.void(&tx.id).await.unwrap();
    let voided = h.receiver.next().await;
    assert_eq!(voided.json()["data"]["transaction"]["status"], "VOIDED");
    assert_eq!(
        voided.verified(),
        None,
        "VOIDED is acknowledged, not appended"
    );
    assert_eq!(
        h.provider.get_transaction(&tx.id).await.unwrap().status,
        ProviderTransactionStatus::Voided
    );
    h.provider.void(&tx.id).await.unwrap();

    let n = h
        .provider
        .create_transaction(&request(nequi("3991111111"), "10"))
        .await
        .unwrap();
    h.receiver.next().await;
    let err = h.provider.void(&n.id).await.unwrap_err();
    assert_eq!(err.kind, ProviderFailureKind::Rejected);
    let err = h.provider.void("112233-1-99999").await.unwrap_err();
    assert_eq!(err.kind, ProviderFailureKind::Rejected);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_capture_capture_and_refund_are_refused_without_a_call() {
    // Nothing listens on port 1: a call would be a Connection error, not Rejected.
    let provider = WompiProvider::new(client_config("http://127.0.0.1:1/v1")).unwrap();
    let mut req = request(nequi("3991111111"), "10");
    req.capture_mode = CaptureMode::Manual;
    let err = provider.create_transaction(&req).await.unwrap_err();
    assert_eq!(
        (err.kind, err.detail.as_str()),
        (
            ProviderFailureKind::Rejected,
            "wompi captures automatically"
        )
    );
    let err = provider
        .capture(
            "1-2-3",
            domain::CaptureId::from_uuid(Uuid::new_v4()),
            cop("1"),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind, ProviderFailureKind::Rejected);
    let err = provider
        .refund("1-2-3", RefundId::from_uuid(Uuid::new_v4()), cop("1"))
        .await
        .unwrap_err();
    assert_eq!(
        (err.kind, err.detail.as_str()),
        (ProviderFailureKind::Rejected, "not supported by wompi")
    );
    let mut usd = request(nequi("3991111111"), "10");
    usd.amount = Money::parse("10", Currency::USD).unwrap();
    assert_eq!(
        provider.create_transaction(&usd).await.unwrap_err().kind,
        ProviderFailureKind::Rejected
    );
    let err = provider
        .create_transaction(&request(nequi("3991111111"), "10"))
        .await
        .unwrap_err();
    assert_eq!(err.kind, ProviderFailureKind::Connection);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_webhooks_still_leave_the_status_at_wompi() {
    let mut h = Harness::start(&[], false).await;
    let tx = h
        .provider
        .create_transaction(&request(nequi("3991111111"), "10"))
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let now = h.provider.get_transaction(&tx.id).await.unwrap();
        if now.status == ProviderTransactionStatus::Approved {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never decided");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    h.receiver.assert_quiet().await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_webhooks_are_redelivered_with_the_same_bytes() {
    let mut h = Harness::start(&[500, 503], true).await;
    h.provider
        .create_transaction(&request(nequi("3992222222"), "10"))
        .await
        .unwrap();
    let first = h.receiver.next().await;
    let second = h.receiver.next().await;
    let third = h.receiver.next().await;
    assert_eq!(first.body, second.body);
    assert_eq!(second.body, third.body);
    assert_eq!(
        first.verified().unwrap().event_id,
        third.verified().unwrap().event_id
    );
    h.receiver.assert_quiet().await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_wrong_secret_and_stale_webhooks_are_refused() {
    let mut h = Harness::start(&[], true).await;
    h.provider
        .create_transaction(&request(nequi("3991111111"), "129000.00"))
        .await
        .unwrap();
    let delivery = h.receiver.next().await;
    let verifier = WompiWebhookVerifier::from_config(&WompiConfig::test_defaults());
    assert!(delivery.verify_with(&verifier).is_ok());

    // Changed amount, old checksum (body and header).
    let mut tampered = delivery.clone();
    tampered.body = String::from_utf8(delivery.body.clone())
        .unwrap()
        .replace("12900000", "12900001")
        .into_bytes();
    assert_ne!(tampered.body, delivery.body);
    assert_eq!(
        tampered.verify_with(&verifier),
        Err(connectors::WebhookError::InvalidSignature)
    );
    // Another events secret.
    let wrong = WompiWebhookVerifier::new("test_events_someone_else_0123456789abcdef");
    assert_eq!(
        delivery.verify_with(&wrong),
        Err(connectors::WebhookError::InvalidSignature)
    );
    // A valid event, received two days later.
    let late = verifier.verify(&WebhookRequest {
        headers: &delivery.headers,
        body: &delivery.body,
        peer: None,
        received_at: Utc::now() + chrono::Duration::days(2),
    });
    assert_eq!(late, Err(connectors::WebhookError::StaleTimestamp));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_emulator_checks_keys_tokens_and_signatures_like_wompi() {
    let h = Harness::start(&[], true).await;
    let token = h.card_token("4242424242424242").await;
    let merchant: Value = h
        .http
        .get(h.url(&format!("/v1/merchants/{TEST_PUBLIC_KEY}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let acceptance = merchant["data"]["presigned_acceptance"]["acceptance_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let personal = merchant["data"]["presigned_personal_data_auth"]["acceptance_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let reference = PaymentId::from_uuid(Uuid::new_v4()).to_string();
    let body = |acceptance: &str, personal: &str, signature: &str| {
        json!({
            "acceptance_token": acceptance, "accept_personal_auth": personal,
            "amount_in_cents": 1000, "currency": "COP", "customer_email": "a@b.co",
            "reference": reference, "signature": signature,
            "payment_method": {"type": "CARD", "token": token, "installments": 1},
        })
    };
    // Wompi's integrity signature as its documentation defines it (hex SHA-256 of reference,
    // amount in cents, currency and integrity secret), not as the client computes it.
    let good_signature = hex::encode(sha2::Sha256::digest(format!(
        "{reference}1000COP{}",
        connectors::wompi::TEST_INTEGRITY_SECRET
    )));
    let post = |key: &'static str, body: Value| {
        h.http
            .post(h.url("/v1/transactions"))
            .bearer_auth(key)
            .json(&body)
            .send()
    };
    let private = connectors::wompi::TEST_PRIVATE_KEY;

    let r = post(private, body(&acceptance, &personal, &"0".repeat(64)))
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let error: Value = r.json().await.unwrap();
    assert_eq!(error["error"]["type"], "INPUT_VALIDATION_ERROR");
    assert!(
        error["error"]["messages"]["signature"].is_array(),
        "{error}"
    );

    // The two tokens are not interchangeable, and forged ones fail.
    let r = post(private, body(&personal, &acceptance, &good_signature))
        .await
        .unwrap();
    let error: Value = r.json().await.unwrap();
    assert!(
        error["error"]["messages"]["acceptance_token"].is_array(),
        "{error}"
    );
    assert!(
        error["error"]["messages"]["accept_personal_auth"].is_array(),
        "{error}"
    );
    let forged = format!("{acceptance}x");
    let r = post(private, body(&forged, &personal, &good_signature))
        .await
        .unwrap();
    assert_eq!(r.status(), 422);

    let r = post(
        "prv_test_wrong",
        body(&acceptance, &personal, &good_signature),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 401);
    let error: Value = r.json().await.unwrap();
    assert_eq!(error["error"]["type"], "INVALID_ACCESS_TOKEN");

    let r = post(
        private,
        body(&acceptance, &personal, &good_signature.to_uppercase()),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let r = post(private, body(&acceptance, &personal, &good_signature))
        .await
        .unwrap();
    let error: Value = r.json().await.unwrap();
    assert_eq!(
        error["error"]["messages"]["reference"][0],
        "La referencia ya ha sido usada"
    );

    // Search and void take the private key only; tokenization the public key only.
    let search = h
        .http
        .get(h.url(&format!("/v1/transactions?reference={reference}")))
        .bearer_auth(TEST_PUBLIC_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(search.status(), 401);
    let tokenize = h
        .http
        .post(h.url("/v1/tokens/cards"))
        .bearer_auth(private)
        .json(&json!({"number":"4242424242424242","cvc":"123","exp_month":"08","exp_year":"39","card_holder":"Ana Gómez"}))
        .send()
        .await
        .unwrap();
    assert_eq!(tokenize.status(), 401);
    for bad in [
        json!({"number":"4242424242424241","cvc":"123","exp_month":"08","exp_year":"39","card_holder":"Ana Gómez"}),
        json!({"number":"4242424242424242","cvc":"12","exp_month":"08","exp_year":"39","card_holder":"Ana Gómez"}),
        json!({"number":"4242424242424242","cvc":"123","exp_month":"13","exp_year":"39","card_holder":"Ana Gómez"}),
        json!({"number":"4242424242424242","cvc":"123","exp_month":"01","exp_year":"20","card_holder":"Ana Gómez"}),
        json!({"number":"4242424242424242","cvc":"123","exp_month":"08","exp_year":"39","card_holder":"Ana"}),
    ] {
        let r = h
            .http
            .post(h.url("/v1/tokens/cards"))
            .bearer_auth(TEST_PUBLIC_KEY)
            .json(&bad)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 422, "{bad}");
        assert!(!r.text().await.unwrap().contains("424242424242424"));
    }
    let unknown = h
        .http
        .get(h.url("/v1/merchants/pub_test_someone_else"))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_checks_both_keys_and_banks_are_cached() {
    let h = Harness::start(&[], true).await;
    h.provider.health().await.unwrap();
    let wrong_private = WompiProvider::new(WompiConfig {
        private_key: "prv_test_not_this_one_0123456789abcdef".into(),
        ..client_config(&h.sandbox.base_url())
    })
    .unwrap();
    let err = wrong_private.health().await.unwrap_err();
    assert_eq!(err.kind, ProviderFailureKind::Rejected);
    assert!(err.detail.contains("401"), "{}", err.detail);
    assert!(!err.detail.contains("not_this_one"), "{}", err.detail);
    let wrong_public = WompiProvider::new(WompiConfig {
        public_key: "pub_test_not_this_one".into(),
        ..client_config(&h.sandbox.base_url())
    })
    .unwrap();
    assert_eq!(
        wrong_public.health().await.unwrap_err().kind,
        ProviderFailureKind::Rejected
    );

    let banks = h.provider.pse_banks().await.unwrap();
    let base_url = h.sandbox.base_url();
    let Harness {
        sandbox,
        receiver,
        provider,
        ..
    } = h;
    sandbox.stop().await;
    receiver.server.stop(false).await;
    // The emulator is gone: the cached list still answers, a fresh client cannot.
    assert_eq!(provider.pse_banks().await.unwrap(), banks);
    let fresh = WompiProvider::new(client_config(&base_url)).unwrap();
    assert_eq!(
        fresh.pse_banks().await.unwrap_err().kind,
        ProviderFailureKind::Connection
    );
}
