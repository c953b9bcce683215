//! End-to-end tests over real sockets: the PayU emulator on 127.0.0.1:0, a confirmation
//! receiver on 127.0.0.1:0, the real `PayuProvider` client and the real
//! `PayuWebhookVerifier` between them. No mocks.

use secrecy::ExposeSecret;
use std::collections::{HashSet, VecDeque};
use std::net::TcpListener;
use std::sync::Mutex as StdMutex;
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::http::StatusCode;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use domain::{CaptureId, CaptureMode, Currency, Money, PaymentId, ProviderFailureKind, RefundId};
use tokio::sync::mpsc;
use uuid::Uuid;

use connectors::payu::PayuWebhookVerifier;
use connectors::payu::{PayuConfig, PayuProvider};
use connectors::{
    CallOutcome, CreateTransaction, NextAction, PaymentMethodDetails, PaymentProvider,
    ProviderTransactionStatus,
};
use connectors::{
    NotificationOutcome, ProviderNotification, WebhookError, WebhookRequest, WebhookVerifier,
};
use emulators::payu::*;
use emulators::WebhookRetryPolicy;

const WAIT: Duration = Duration::from_secs(5);
const QUIET: Duration = Duration::from_millis(300);

fn cop(amount: &str) -> Money {
    Money::parse(amount, Currency::COP).unwrap()
}

fn fast_options() -> PayuSandboxOptions {
    PayuSandboxOptions {
        webhook_retry: WebhookRetryPolicy {
            max_attempts: 6,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(40),
        },
        webhook_timeout: Duration::from_secs(2),
        timeout_fault_delay: Duration::from_millis(1_200),
        expiry_sweep_interval: Duration::from_millis(20),
        workers: 2,
        shutdown_timeout_secs: 1,
        ..PayuSandboxOptions::default()
    }
}

/// One confirmation POST as the receiver saw it.
#[derive(Debug, Clone)]
struct Delivery {
    content_type: Option<String>,
    body: Vec<u8>,
}

/// A tiny confirmation receiver: answers the scripted statuses in order, then 200.
struct Receiver {
    url: String,
    server: ServerHandle,
    deliveries: mpsc::UnboundedReceiver<Delivery>,
}

struct ReceiverState {
    script: StdMutex<VecDeque<u16>>,
    seen: mpsc::UnboundedSender<Delivery>,
}

async fn receive(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<ReceiverState>,
) -> HttpResponse {
    let content_type = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let _ = state.seen.send(Delivery {
        content_type,
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
                .route("/v1/webhooks/payu", web::post().to(receive))
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
            url: format!("http://{addr}/v1/webhooks/payu"),
            server: handle,
            deliveries,
        }
    }

    async fn next(&mut self) -> Delivery {
        tokio::time::timeout(WAIT, self.deliveries.recv())
            .await
            .expect("no confirmation arrived in time")
            .expect("receiver closed")
    }

    async fn assert_quiet(&mut self) {
        if let Ok(Some(d)) = tokio::time::timeout(QUIET, self.deliveries.recv()).await {
            panic!(
                "unexpected confirmation: {}",
                String::from_utf8_lossy(&d.body)
            );
        }
    }
}

/// The emulator of the account `config` talks to, as `api` starts it.
fn emulated(config: &PayuConfig, webhook_url: &str) -> PayuSandboxConfig {
    use connectors::payu::SignatureAlgorithm as ClientAlgorithm;
    PayuSandboxConfig {
        api_key: config.api_key.clone(),
        api_login: config.api_login.clone(),
        merchant_id: config.merchant_id.clone(),
        account_id: config.account_id.clone(),
        signature_algorithm: match config.algorithm().unwrap() {
            ClientAlgorithm::Md5 => SignatureAlgorithm::Md5,
            ClientAlgorithm::HmacSha256 => SignatureAlgorithm::HmacSha256,
        },
        signature_secret: config.signature_secret.clone(),
        webhook_url: webhook_url.to_owned(),
        webhook_delay_ms: 200,
        deliver_webhooks: true,
        efecty_expiry: EFECTY_EXPIRY_DEFAULT,
    }
}

struct Harness {
    sandbox: PayuSandboxHandle,
    receiver: Receiver,
    provider: PayuProvider,
    verifier: PayuWebhookVerifier,
    config: PayuConfig,
    http: reqwest::Client,
}

impl Harness {
    async fn start() -> Harness {
        Self::start_with(PayuConfig::default(), &[], |_| {}).await
    }

    async fn start_with(
        config: PayuConfig,
        script: &[u16],
        adjust: impl FnOnce(&mut PayuSandboxConfig),
    ) -> Harness {
        let receiver = Receiver::start(script).await;
        let mut sandbox_config = emulated(&config, &receiver.url);
        sandbox_config.webhook_delay_ms = 20;
        adjust(&mut sandbox_config);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let sandbox = start_with_options(listener, sandbox_config, fast_options())
            .await
            .unwrap();
        let config = PayuConfig {
            base_url: sandbox.base_url(),
            timeout_ms: 500,
            ..config
        };
        let provider = PayuProvider::new(config.clone()).unwrap();
        let verifier = PayuWebhookVerifier::new(&config).unwrap();
        Harness {
            sandbox,
            receiver,
            provider,
            verifier,
            config,
            http: reqwest::Client::new(),
        }
    }

    async fn stop(self) {
        self.sandbox.stop().await;
        self.receiver.server.stop(false).await;
    }

    /// Waits for the next confirmation and verifies it as payledger would.
    async fn next_notification(&mut self) -> (Delivery, ProviderNotification) {
        let delivery = self.receiver.next().await;
        let headers = vec![(
            "content-type".to_owned(),
            delivery.content_type.clone().unwrap_or_default(),
        )];
        let request = WebhookRequest {
            headers: &headers,
            body: &delivery.body,
            peer: None,
            received_at: chrono::Utc::now(),
        };
        let notification = self
            .verifier
            .verify(&request)
            .expect("a confirmation from the emulator must verify")
            .expect("a confirmation is a notification");
        (delivery, notification)
    }

    async fn action(&self, path: &str) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.sandbox.base_url()))
            .send()
            .await
            .unwrap()
    }

    async fn set_fault(&self, fault: &str) {
        self.set_faults(serde_json::json!({ "create": fault }))
            .await;
    }

    async fn set_faults(&self, faults: serde_json::Value) {
        let response = self
            .http
            .post(format!("{}/_sandbox/faults", self.sandbox.base_url()))
            .json(&faults)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }

    /// A Queries API command, asked over HTTP with the account's keys; its `result.payload`.
    async fn report(&self, command: &str, details: serde_json::Value) -> serde_json::Value {
        let answer: serde_json::Value = self
            .http
            .post(format!(
                "{}/reports-api/4.0/service.cgi",
                self.sandbox.base_url()
            ))
            .header("Accept", "application/json")
            .json(&serde_json::json!({
                "language": "es",
                "command": command,
                "merchant": {"apiKey": self.config.api_key.expose_secret(), "apiLogin": self.config.api_login},
                "details": details,
                "test": false,
            }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(answer["code"], "SUCCESS", "{answer}");
        answer["result"]["payload"].clone()
    }

    /// Every order the emulator holds for `payment_id` as its `referenceCode`.
    async fn orders_of(&self, payment_id: PaymentId) -> Vec<serde_json::Value> {
        let payload = self
            .report(
                "ORDER_DETAIL_BY_REFERENCE_CODE",
                serde_json::json!({ "referenceCode": payment_id.to_string() }),
            )
            .await;
        match payload {
            serde_json::Value::Null => Vec::new(),
            serde_json::Value::Array(orders) => orders,
            other => panic!("not a list of orders: {other}"),
        }
    }

    /// The `REFUND` transactions of an order, as the emulator lists them.
    async fn refunds_of(&self, provider_id: &str) -> Vec<serde_json::Value> {
        let order_id: u64 = provider_id.split_once(':').unwrap().0.parse().unwrap();
        let order = self
            .report("ORDER_DETAIL", serde_json::json!({ "orderId": order_id }))
            .await;
        order["transactions"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["type"] == "REFUND")
            .cloned()
            .collect()
    }
}

fn request(method: PaymentMethodDetails, amount: &str, capture: CaptureMode) -> CreateTransaction {
    CreateTransaction {
        payment_id: PaymentId::from_uuid(Uuid::new_v4()),
        reference: "order-1".into(),
        amount: cop(amount),
        method,
        capture_mode: capture,
        customer_email: Some("buyer@example.com".into()),
        customer: Default::default(),
        return_url: Some("https://shop.example.com/back".into()),
    }
}

fn card(token: &str) -> PaymentMethodDetails {
    PaymentMethodDetails::Card {
        token: token.into(),
    }
}

fn pse(bank: &str) -> PaymentMethodDetails {
    PaymentMethodDetails::Pse {
        financial_institution_code: bank.into(),
        user_type: 0,
        user_legal_id_type: "CC".into(),
        user_legal_id: "1999888777".into(),
    }
}

fn form_field(body: &[u8], name: &str) -> Option<String> {
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(body)
        .unwrap()
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

fn transaction_part(provider_id: &str) -> &str {
    provider_id.split_once(':').unwrap().1
}

#[tokio::test]
async fn cards_are_decided_in_the_answer_and_confirmed() {
    let mut h = Harness::start().await;

    let approved = request(card(tokens::APPROVED), "129000", CaptureMode::Automatic);
    let tx = h.provider.create_transaction(&approved).await.unwrap();
    assert_eq!(tx.status, ProviderTransactionStatus::Approved);
    assert_eq!(tx.payment_id, approved.payment_id);
    assert_eq!(tx.captured_amount, cop("129000"));
    assert_eq!(tx.next_action, None);
    let (delivery, n) = h.next_notification().await;
    assert_eq!(
        delivery.content_type.as_deref(),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(n.payment_id, approved.payment_id);
    assert_eq!(n.provider_transaction_id, tx.id);
    assert_eq!(n.event_id, format!("{}:4", transaction_part(&tx.id)));
    assert_eq!(
        n.outcome,
        NotificationOutcome::Approved {
            amount: cop("129000")
        }
    );

    let declined = request(card(tokens::DECLINED), "50000", CaptureMode::Automatic);
    let tx = h.provider.create_transaction(&declined).await.unwrap();
    assert_eq!(
        tx.status,
        ProviderTransactionStatus::Declined {
            reason: "ENTITY_DECLINED".into()
        }
    );
    let (_, n) = h.next_notification().await;
    assert_eq!(
        n.outcome,
        NotificationOutcome::Declined {
            reason: "ENTITY_DECLINED".into()
        }
    );

    // PayU's own error data: the transaction exists in state ERROR.
    let error = request(card(tokens::ERROR), "50000", CaptureMode::Automatic);
    let tx = h.provider.create_transaction(&error).await.unwrap();
    assert_eq!(
        tx.status,
        ProviderTransactionStatus::Failed {
            reason: "INTERNAL_PAYMENT_PROVIDER_ERROR".into()
        }
    );
    let (_, n) = h.next_notification().await;
    assert_eq!(n.event_id, format!("{}:104", transaction_part(&tx.id)));
    assert!(matches!(n.outcome, NotificationOutcome::Failed { .. }));

    // Unknown tokens and cents on a COP card are refused outright.
    let err = h
        .provider
        .create_transaction(&request(
            card("tok_unknown"),
            "50000",
            CaptureMode::Automatic,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.kind, ProviderFailureKind::Rejected);
    assert!(err.detail.contains("Invalid creditCardTokenId"), "{err}");
    let err = h
        .provider
        .create_transaction(&request(
            card(tokens::APPROVED),
            "50000.50",
            CaptureMode::Automatic,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.kind, ProviderFailureKind::Rejected);
    h.receiver.assert_quiet().await;
    h.stop().await;
}

#[tokio::test]
async fn a_repeated_create_answers_the_first_transaction() {
    let mut h = Harness::start().await;
    let r = request(
        card("MASTERCARD:tok_payu_approved"),
        "70000",
        CaptureMode::Automatic,
    );
    let first = h.provider.create_transaction(&r).await.unwrap();
    let again = h.provider.create_transaction(&r).await.unwrap();
    assert_eq!(first.id, again.id);
    let (delivery, _) = h.next_notification().await;
    assert_eq!(
        form_field(&delivery.body, "payment_method_name").as_deref(),
        Some("MASTERCARD")
    );
    // Only one confirmation: the retry created nothing.
    h.receiver.assert_quiet().await;
    // The same payment id for another amount is refused.
    let other = CreateTransaction {
        amount: cop("70001"),
        ..r
    };
    let err = h.provider.create_transaction(&other).await.unwrap_err();
    assert_eq!(err.kind, ProviderFailureKind::Rejected);
    h.stop().await;
}

#[tokio::test]
async fn faults_give_server_error_and_timeout_then_recover() {
    let h = Harness::start().await;
    h.set_fault("server_error").await;
    let r = request(card(tokens::APPROVED), "10000", CaptureMode::Automatic);
    let err = h.provider.create_transaction(&r).await.unwrap_err();
    assert_eq!(err.kind, ProviderFailureKind::ServerError, "{err}");
    assert!(err.is_retryable());
    // Only creates are affected.
    h.provider.health().await.unwrap();

    h.set_fault("timeout").await;
    let started = std::time::Instant::now();
    let err = h.provider.create_transaction(&r).await.unwrap_err();
    assert_eq!(err.kind, ProviderFailureKind::Timeout, "{err}");
    assert!(started.elapsed() < Duration::from_millis(1_100));

    h.set_fault("none").await;
    let tx = h.provider.create_transaction(&r).await.unwrap();
    assert_eq!(tx.status, ProviderTransactionStatus::Approved);

    let bad = h
        .http
        .post(format!("{}/_sandbox/faults", h.sandbox.base_url()))
        .json(&serde_json::json!({ "create": "sometimes" }))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    h.stop().await;
}

#[tokio::test]
async fn a_pending_card_is_approved_by_confirmation() {
    let mut h = Harness::start().await;
    let r = request(card(tokens::PENDING), "99000", CaptureMode::Automatic);
    let tx = h.provider.create_transaction(&r).await.unwrap();
    assert_eq!(tx.status, ProviderTransactionStatus::Pending);
    assert!(tx.captured_amount.is_zero());
    let (_, n) = h.next_notification().await;
    assert_eq!(n.provider_transaction_id, tx.id);
    assert_eq!(
        n.outcome,
        NotificationOutcome::Approved {
            amount: cop("99000")
        }
    );
    let now = h.provider.get_transaction(&tx.id).await.unwrap();
    assert_eq!(now.status, ProviderTransactionStatus::Approved);
    assert_eq!(now.captured_amount, cop("99000"));
    assert_eq!(now.payment_id, r.payment_id);
    h.stop().await;
}

#[tokio::test]
async fn manual_capture_and_void() {
    let mut h = Harness::start().await;
    let r = request(card(tokens::APPROVED), "200000", CaptureMode::Manual);
    let tx = h.provider.create_transaction(&r).await.unwrap();
    assert_eq!(tx.status, ProviderTransactionStatus::Authorized);
    assert!(tx.captured_amount.is_zero());
    let (delivery, n) = h.next_notification().await;
    assert_eq!(
        form_field(&delivery.body, "transaction_type").as_deref(),
        Some("AUTHORIZATION")
    );
    assert_eq!(
        n.outcome,
        NotificationOutcome::Authorized {
            amount: cop("200000")
        }
    );

    let capture_id = CaptureId::from_uuid(Uuid::new_v4());
    h.provider
        .capture(&tx.id, capture_id, cop("150000"))
        .await
        .unwrap();
    // A retry of the same capture succeeds; another amount is refused.
    h.provider
        .capture(&tx.id, capture_id, cop("150000"))
        .await
        .unwrap();
    let err = h
        .provider
        .capture(&tx.id, capture_id, cop("100000"))
        .await
        .unwrap_err();
    assert_eq!(err.kind, ProviderFailureKind::Rejected);
    let now = h.provider.get_transaction(&tx.id).await.unwrap();
    assert_eq!(now.status, ProviderTransactionStatus::Approved);
    assert_eq!(now.captured_amount, cop("150000"));
    assert_eq!(
        h.provider.void(&tx.id).await.unwrap_err().kind,
        ProviderFailureKind::Rejected
    );

    let other = request(card(tokens::APPROVED), "80000", CaptureMode::Manual);
    let tx = h.provider.create_transaction(&other).await.unwrap();
    h.provider.void(&tx.id).await.unwrap();
    h.provider.void(&tx.id).await.unwrap();
    let now = h.provider.get_transaction(&tx.id).await.unwrap();
    assert_eq!(now.status, ProviderTransactionStatus::Voided);

    // Manual capture is for cards only.
    let err = h
        .provider
        .create_transaction(&request(
            PaymentMethodDetails::Efecty,
            "50000",
            CaptureMode::Manual,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.kind, ProviderFailureKind::Rejected);
    h.stop().await;
}

#[tokio::test]
async fn refunds_partial_full_idempotent_and_bounded() {
    let h = Harness::start().await;
    let r = request(card(tokens::APPROVED), "100000", CaptureMode::Automatic);
    let tx = h.provider.create_transaction(&r).await.unwrap();

    let first_id = RefundId::from_uuid(Uuid::new_v4());
    let first = h
        .provider
        .refund(&tx.id, first_id, cop("30000"))
        .await
        .unwrap();
    let retried = h
        .provider
        .refund(&tx.id, first_id, cop("30000"))
        .await
        .unwrap();
    assert_eq!(first, retried);
    let err = h
        .provider
        .refund(&tx.id, RefundId::from_uuid(Uuid::new_v4()), cop("70001"))
        .await
        .unwrap_err();
    assert_eq!(err.kind, ProviderFailureKind::Rejected);
    let second = h
        .provider
        .refund(&tx.id, RefundId::from_uuid(Uuid::new_v4()), cop("70000"))
        .await
        .unwrap();
    assert_ne!(first, second);
    let now = h.provider.get_transaction(&tx.id).await.unwrap();
    assert_eq!(now.status, ProviderTransactionStatus::Approved);
    assert_eq!(now.refunded_amount, cop("100000"));

    // Nothing captured, nothing to refund.
    let declined = h
        .provider
        .create_transaction(&request(
            card(tokens::DECLINED),
            "1000",
            CaptureMode::Automatic,
        ))
        .await
        .unwrap();
    let err = h
        .provider
        .refund(
            &declined.id,
            RefundId::from_uuid(Uuid::new_v4()),
            cop("1000"),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind, ProviderFailureKind::Rejected);
    // A made-up id is refused before any call.
    assert_eq!(
        h.provider
            .get_transaction("nonsense")
            .await
            .unwrap_err()
            .kind,
        ProviderFailureKind::Rejected
    );
    h.stop().await;
}

#[tokio::test]
async fn efecty_gives_a_cash_code_and_paying_it_confirms_approval() {
    let mut h = Harness::start().await;
    let r = request(
        PaymentMethodDetails::Efecty,
        "65000",
        CaptureMode::Automatic,
    );
    let before = chrono::Utc::now();
    let tx = h.provider.create_transaction(&r).await.unwrap();
    assert_eq!(tx.status, ProviderTransactionStatus::Pending);
    let Some(NextAction::CashCode { code, expires_at }) = tx.next_action.clone() else {
        panic!("no cash code: {tx:?}");
    };
    assert_eq!(code.len(), 10);
    let expected = before + chrono::Duration::days(7);
    assert!(
        (expires_at - expected).num_seconds().abs() < 5,
        "{expires_at}"
    );
    // Pending: no confirmation yet.
    h.receiver.assert_quiet().await;
    // The query shows the same code.
    let now = h.provider.get_transaction(&tx.id).await.unwrap();
    assert_eq!(now.next_action, tx.next_action);

    let receipt = h
        .http
        .get(format!("{}/_sandbox/efecty/{code}", h.sandbox.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(receipt.status(), 200);

    let paid = h.action(&format!("/_sandbox/efecty/{code}/pay")).await;
    assert_eq!(paid.status(), 200);
    let (delivery, n) = h.next_notification().await;
    assert_eq!(
        form_field(&delivery.body, "payment_method_type").as_deref(),
        Some("7")
    );
    assert_eq!(n.event_id, format!("{}:4", transaction_part(&tx.id)));
    assert_eq!(
        n.outcome,
        NotificationOutcome::Approved {
            amount: cop("65000")
        }
    );
    // Paying twice is refused; so is an unknown code.
    assert_eq!(
        h.action(&format!("/_sandbox/efecty/{code}/pay"))
            .await
            .status(),
        409
    );
    assert_eq!(
        h.action("/_sandbox/efecty/0000000000/pay").await.status(),
        404
    );
    let now = h.provider.get_transaction(&tx.id).await.unwrap();
    assert_eq!(now.status, ProviderTransactionStatus::Approved);
    assert_eq!(now.next_action, None);

    // PayU's Efecty bounds.
    let err = h
        .provider
        .create_transaction(&request(
            PaymentMethodDetails::Efecty,
            "19999",
            CaptureMode::Automatic,
        ))
        .await
        .unwrap_err();
    assert!(err.detail.contains("EFECTY"), "{err}");
    h.stop().await;
}

#[tokio::test]
async fn an_efecty_code_that_lapses_is_confirmed_expired() {
    let mut h = Harness::start_with(PayuConfig::default(), &[], |c| {
        c.efecty_expiry = Duration::from_millis(300);
    })
    .await;
    let r = request(
        PaymentMethodDetails::Efecty,
        "30000",
        CaptureMode::Automatic,
    );
    let tx = h.provider.create_transaction(&r).await.unwrap();
    let Some(NextAction::CashCode { code, expires_at }) = tx.next_action.clone() else {
        panic!("no cash code");
    };
    assert!(expires_at <= chrono::Utc::now() + chrono::Duration::seconds(1));

    // The clock runs out: the emulator expires it and confirms with state_pol 5.
    let (delivery, n) = h.next_notification().await;
    assert_eq!(
        form_field(&delivery.body, "state_pol").as_deref(),
        Some("5")
    );
    assert_eq!(
        form_field(&delivery.body, "response_message_pol").as_deref(),
        Some("EXPIRED_TRANSACTION")
    );
    assert_eq!(n.outcome, NotificationOutcome::Expired);
    assert_eq!(n.event_id, format!("{}:5", transaction_part(&tx.id)));
    assert_eq!(n.payment_id, r.payment_id);
    let now = h.provider.get_transaction(&tx.id).await.unwrap();
    assert_eq!(now.status, ProviderTransactionStatus::Expired);
    // Too late to pay.
    assert_eq!(
        h.action(&format!("/_sandbox/efecty/{code}/pay"))
            .await
            .status(),
        409
    );
    h.stop().await;

    // The customer action expires a code at once.
    let mut h = Harness::start().await;
    let r = request(
        PaymentMethodDetails::Efecty,
        "30000",
        CaptureMode::Automatic,
    );
    let tx = h.provider.create_transaction(&r).await.unwrap();
    let Some(NextAction::CashCode { code, .. }) = tx.next_action.clone() else {
        panic!("no cash code");
    };
    assert_eq!(
        h.action(&format!("/_sandbox/efecty/{code}/expire"))
            .await
            .status(),
        200
    );
    let (_, n) = h.next_notification().await;
    assert_eq!(n.outcome, NotificationOutcome::Expired);
    h.stop().await;
}

#[tokio::test]
async fn efecty_codes_are_unique_over_http() {
    let h = Harness::start().await;
    let provider = std::sync::Arc::new(h.provider);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let provider = std::sync::Arc::clone(&provider);
        tasks.spawn(async move {
            let mut codes = Vec::new();
            for _ in 0..75 {
                let r = request(
                    PaymentMethodDetails::Efecty,
                    "20000",
                    CaptureMode::Automatic,
                );
                let tx = provider.create_transaction(&r).await.unwrap();
                let Some(NextAction::CashCode { code, .. }) = tx.next_action else {
                    panic!("no cash code");
                };
                codes.push(code);
            }
            codes
        });
    }
    let mut all = HashSet::new();
    let mut count = 0;
    while let Some(codes) = tasks.join_next().await {
        for code in codes.unwrap() {
            count += 1;
            assert!(all.insert(code.clone()), "duplicate Efecty code {code}");
        }
    }
    assert_eq!(count, 600);
    assert_eq!(all.len(), 600);
    h.sandbox.stop().await;
    h.receiver.server.stop(false).await;
}

#[tokio::test]
async fn pse_banks_redirect_complete_decline_and_abandon() {
    let mut h = Harness::start().await;
    let banks = h.provider.pse_banks().await.unwrap();
    let codes: Vec<&str> = banks.iter().map(|b| b.code.as_str()).collect();
    assert_eq!(codes, vec![banks::APPROVES, banks::DECLINES]);

    let r = request(pse(banks::APPROVES), "120000.50", CaptureMode::Automatic);
    let tx = h.provider.create_transaction(&r).await.unwrap();
    assert_eq!(tx.status, ProviderTransactionStatus::Pending);
    let Some(NextAction::Redirect { url }) = tx.next_action.clone() else {
        panic!("no redirect");
    };
    let transaction_id = transaction_part(&tx.id).to_owned();
    assert!(
        url.ends_with(&format!("/_sandbox/pse/{transaction_id}")),
        "{url}"
    );
    let page = h.http.get(&url).send().await.unwrap();
    assert_eq!(page.status(), 200);
    h.receiver.assert_quiet().await;
    assert_eq!(
        h.action(&format!("/_sandbox/pse/{transaction_id}/complete"))
            .await
            .status(),
        200
    );
    let (delivery, n) = h.next_notification().await;
    assert_eq!(
        form_field(&delivery.body, "value").as_deref(),
        Some("120000.50")
    );
    assert_eq!(form_field(&delivery.body, "pse_bank").as_deref(), Some("1"));
    assert_eq!(
        n.outcome,
        NotificationOutcome::Approved {
            amount: cop("120000.50")
        }
    );

    let declined = request(pse(banks::DECLINES), "80000", CaptureMode::Automatic);
    let tx = h.provider.create_transaction(&declined).await.unwrap();
    let id = transaction_part(&tx.id).to_owned();
    h.action(&format!("/_sandbox/pse/{id}/complete")).await;
    let (_, n) = h.next_notification().await;
    assert_eq!(
        n.outcome,
        NotificationOutcome::Declined {
            reason: "ENTITY_DECLINED".into()
        }
    );

    let abandoned = request(pse(banks::APPROVES), "80000", CaptureMode::Automatic);
    let tx = h.provider.create_transaction(&abandoned).await.unwrap();
    let id = transaction_part(&tx.id).to_owned();
    assert_eq!(
        h.action(&format!("/_sandbox/pse/{id}/abandon"))
            .await
            .status(),
        200
    );
    let (_, n) = h.next_notification().await;
    assert_eq!(
        n.outcome,
        NotificationOutcome::Failed {
            reason: "ABANDONED_TRANSACTION".into()
        }
    );
    let now = h.provider.get_transaction(&tx.id).await.unwrap();
    assert_eq!(
        now.status,
        ProviderTransactionStatus::Failed {
            reason: "ABANDONED_TRANSACTION".into()
        }
    );
    assert_eq!(
        h.action(&format!("/_sandbox/pse/{id}/complete"))
            .await
            .status(),
        409
    );

    // Unknown bank, and PSE without a return URL.
    let err = h
        .provider
        .create_transaction(&request(pse("9"), "80000", CaptureMode::Automatic))
        .await
        .unwrap_err();
    assert!(err.detail.contains("FINANCIAL_INSTITUTION_CODE"), "{err}");
    let no_return = CreateTransaction {
        return_url: None,
        ..request(pse(banks::APPROVES), "80000", CaptureMode::Automatic)
    };
    assert_eq!(
        h.provider
            .create_transaction(&no_return)
            .await
            .unwrap_err()
            .kind,
        ProviderFailureKind::Rejected
    );
    h.stop().await;
}

#[tokio::test]
async fn tampered_and_foreign_confirmations_are_refused() {
    let mut h = Harness::start().await;
    let r = request(card(tokens::APPROVED), "129000", CaptureMode::Automatic);
    h.provider.create_transaction(&r).await.unwrap();
    let (delivery, _) = h.next_notification().await;
    let body = String::from_utf8(delivery.body).unwrap();

    // Changed amount, old signature.
    let tampered = body.replace("value=129000.00", "value=1290000.00");
    assert_ne!(tampered, body);
    assert_eq!(
        h.verifier.verify_body(tampered.as_bytes()),
        Err(WebhookError::InvalidSignature)
    );
    // Approved turned into declined, old signature.
    let tampered = body.replace("state_pol=4", "state_pol=6");
    assert_eq!(
        h.verifier.verify_body(tampered.as_bytes()),
        Err(WebhookError::InvalidSignature)
    );
    // A verifier holding another signature secret.
    let other = PayuWebhookVerifier::new(&PayuConfig {
        signature_secret: "another_signature_secret_0123456789".into(),
        ..h.config.clone()
    })
    .unwrap();
    assert_eq!(
        other.verify_body(body.as_bytes()),
        Err(WebhookError::InvalidSignature)
    );
    // The original still verifies (and is stable across the unsigned `attempts`).
    let again = body.replace("attempts=1", "attempts=7");
    assert_eq!(
        h.verifier.verify_body(body.as_bytes()).unwrap(),
        h.verifier.verify_body(again.as_bytes()).unwrap()
    );
    h.stop().await;
}

#[tokio::test]
async fn md5_accounts_work_end_to_end_and_redeliveries_keep_the_event_id() {
    let config = PayuConfig {
        signature_algorithm: "MD5".into(),
        signature_secret: String::new().into(),
        ..PayuConfig::default()
    };
    let mut h = Harness::start_with(config, &[500, 503], |_| {}).await;
    let r = request(card(tokens::DECLINED), "45000", CaptureMode::Automatic);
    let tx = h.provider.create_transaction(&r).await.unwrap();
    let (d1, n1) = h.next_notification().await;
    let (d2, n2) = h.next_notification().await;
    let (d3, n3) = h.next_notification().await;
    let sign = form_field(&d1.body, "sign").unwrap();
    assert_eq!(sign.len(), 32, "MD5 hex");
    assert_eq!(form_field(&d2.body, "sign").unwrap(), sign);
    assert_eq!(form_field(&d3.body, "attempts").as_deref(), Some("3"));
    assert_eq!(n1, n2);
    assert_eq!(n2, n3);
    assert_eq!(n1.event_id, format!("{}:6", transaction_part(&tx.id)));
    h.receiver.assert_quiet().await;
    // The HMAC verifier of the same keys refuses an MD5 signature.
    let hmac = PayuWebhookVerifier::new(&PayuConfig::default()).unwrap();
    assert_eq!(
        hmac.verify_body(&d1.body),
        Err(WebhookError::InvalidSignature)
    );
    h.stop().await;
}

#[tokio::test]
async fn credentials_and_request_signatures_are_checked() {
    let h = Harness::start().await;
    h.provider.health().await.unwrap();

    let wrong_key = PayuProvider::new(PayuConfig {
        api_key: "test_payu_api_key_0123456789zzzz".into(),
        ..h.config.clone()
    })
    .unwrap();
    let err = wrong_key.health().await.unwrap_err();
    assert_eq!(err.kind, ProviderFailureKind::Rejected);
    assert!(err.detail.contains("Invalid credentials"), "{err}");
    assert!(!err.detail.contains("0123456789zzzz"), "{err}");
    let err = wrong_key.pse_banks().await.unwrap_err();
    assert_eq!(err.kind, ProviderFailureKind::Rejected);

    // Right credentials, wrong signature secret: the order signature does not match.
    let wrong_secret = PayuProvider::new(PayuConfig {
        signature_secret: "another_signature_secret_0123456789".into(),
        ..h.config.clone()
    })
    .unwrap();
    let err = wrong_secret
        .create_transaction(&request(
            card(tokens::APPROVED),
            "1000",
            CaptureMode::Automatic,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.kind, ProviderFailureKind::Rejected);
    assert!(err.detail.contains("Invalid signature"), "{err}");

    // PayU answers XML unless asked for JSON; the emulator insists.
    let raw = h
        .http
        .post(format!(
            "{}/payments-api/4.0/service.cgi",
            h.sandbox.base_url()
        ))
        .json(&serde_json::json!({"command": "PING"}))
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 406);

    // Nothing listening: a connection failure.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let nowhere = PayuProvider::new(PayuConfig {
        base_url: format!("http://{addr}"),
        ..h.config.clone()
    })
    .unwrap();
    assert_eq!(
        nowhere.health().await.unwrap_err().kind,
        ProviderFailureKind::Connection
    );
    h.stop().await;
}

#[tokio::test]
async fn lost_confirmations_leave_the_truth_queryable() {
    let mut h = Harness::start_with(PayuConfig::default(), &[], |c| {
        c.deliver_webhooks = false;
    })
    .await;
    let r = request(card(tokens::PENDING), "56000", CaptureMode::Automatic);
    let tx = h.provider.create_transaction(&r).await.unwrap();
    assert_eq!(tx.status, ProviderTransactionStatus::Pending);
    h.receiver.assert_quiet().await;
    // Decided all the same: a sync finds it approved.
    let now = h.provider.get_transaction(&tx.id).await.unwrap();
    assert_eq!(now.status, ProviderTransactionStatus::Approved);
    // And by our payment id, for a create whose answer never came back.
    let found = h
        .provider
        .find_transaction(r.payment_id, &r.reference)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.id, tx.id);
    assert_eq!(found.status, ProviderTransactionStatus::Approved);
    assert_eq!(found.amount, cop("56000"));
    let unknown = h
        .provider
        .find_transaction(PaymentId::from_uuid(Uuid::new_v4()), &r.reference)
        .await
        .unwrap();
    assert_eq!(unknown, None);
    h.stop().await;
}

/// The provider transaction id an order of the emulator stands for (`<orderId>:<transactionId>`
/// of its payment transaction), read from the order itself.
fn id_of_order(order: &serde_json::Value) -> String {
    let payment = &order["transactions"][0];
    assert!(
        payment["type"]
            .as_str()
            .is_some_and(|t| t.starts_with("AUTHORIZATION")),
        "{order}"
    );
    format!("{}:{}", order["id"], payment["id"].as_str().unwrap())
}

#[tokio::test]
async fn approved_503_makes_the_order_answers_503_and_confirms() {
    let mut h = Harness::start().await;
    h.set_fault("approved_503").await;
    let r = request(card(tokens::APPROVED), "129000", CaptureMode::Automatic);
    let err = h.provider.create_transaction(&r).await.unwrap_err();
    assert_eq!(err.kind, ProviderFailureKind::ServerError, "{err}");
    assert_eq!(err.outcome(), CallOutcome::Unknown, "{err}");

    // PayU made and approved the order: the lookup by reference finds it.
    let orders = h.orders_of(r.payment_id).await;
    assert_eq!(orders.len(), 1, "{orders:?}");
    assert_eq!(orders[0]["referenceCode"], r.payment_id.to_string());
    assert_eq!(
        orders[0]["transactions"][0]["transactionResponse"]["state"],
        "APPROVED"
    );
    let held = id_of_order(&orders[0]);
    let found = h
        .provider
        .find_transaction(r.payment_id, &r.reference)
        .await
        .unwrap()
        .expect("the order PayU made");
    assert_eq!(found.id, held);
    assert_eq!(found.payment_id, r.payment_id);
    assert_eq!(found.status, ProviderTransactionStatus::Approved);
    assert_eq!(found.amount, cop("129000"));
    assert_eq!(found.captured_amount, cop("129000"));

    // The confirmation follows as usual.
    let (_, n) = h.next_notification().await;
    assert_eq!(n.payment_id, r.payment_id);
    assert_eq!(n.provider_transaction_id, held);
    assert_eq!(
        n.outcome,
        NotificationOutcome::Approved {
            amount: cop("129000")
        }
    );

    // A repeat while the fault holds: its answer is lost too, and nothing new is made.
    let err = h.provider.create_transaction(&r).await.unwrap_err();
    assert_eq!(err.outcome(), CallOutcome::Unknown, "{err}");
    assert_eq!(h.orders_of(r.payment_id).await.len(), 1);
    h.receiver.assert_quiet().await;
    h.stop().await;
}

#[tokio::test]
async fn approved_timeout_makes_the_order_and_holds_the_answer_past_the_client() {
    let mut h = Harness::start().await;
    h.set_fault("approved_timeout").await;
    let r = request(card(tokens::APPROVED), "87000", CaptureMode::Automatic);
    let started = std::time::Instant::now();
    let err = h.provider.create_transaction(&r).await.unwrap_err();
    // The client (500 ms) gives up before the emulator (1,200 ms) answers.
    assert!(started.elapsed() < Duration::from_millis(1_100));
    assert_eq!(err.kind, ProviderFailureKind::Timeout, "{err}");
    assert_eq!(err.outcome(), CallOutcome::Unknown, "{err}");

    let orders = h.orders_of(r.payment_id).await;
    assert_eq!(orders.len(), 1, "{orders:?}");
    let found = h
        .provider
        .find_transaction(r.payment_id, &r.reference)
        .await
        .unwrap()
        .expect("the order PayU made");
    assert_eq!(found.id, id_of_order(&orders[0]));
    assert_eq!(found.status, ProviderTransactionStatus::Approved);
    let (_, n) = h.next_notification().await;
    assert_eq!(n.provider_transaction_id, found.id);
    assert_eq!(
        n.outcome,
        NotificationOutcome::Approved {
            amount: cop("87000")
        }
    );
    h.stop().await;
}

#[tokio::test]
async fn approved_silent_answers_normally_and_never_confirms() {
    let mut h = Harness::start().await;
    h.set_fault("approved_silent").await;
    let approved = request(card(tokens::APPROVED), "64000", CaptureMode::Automatic);
    let tx = h.provider.create_transaction(&approved).await.unwrap();
    assert_eq!(tx.status, ProviderTransactionStatus::Approved);
    // A card in review is approved when its confirmation would be due, silently too.
    let review = request(card(tokens::PENDING), "51000", CaptureMode::Automatic);
    let pending = h.provider.create_transaction(&review).await.unwrap();
    assert_eq!(pending.status, ProviderTransactionStatus::Pending);
    h.receiver.assert_quiet().await;
    let now = h.provider.get_transaction(&pending.id).await.unwrap();
    assert_eq!(now.status, ProviderTransactionStatus::Approved);
    for (r, id) in [(&approved, &tx.id), (&review, &pending.id)] {
        let orders = h.orders_of(r.payment_id).await;
        assert_eq!(orders.len(), 1, "{orders:?}");
        assert_eq!(&id_of_order(&orders[0]), id);
    }

    // Only orders made under the fault stay silent.
    h.set_fault("none").await;
    let later = request(card(tokens::APPROVED), "10000", CaptureMode::Automatic);
    let tx = h.provider.create_transaction(&later).await.unwrap();
    let (_, n) = h.next_notification().await;
    assert_eq!(n.provider_transaction_id, tx.id);
    h.receiver.assert_quiet().await;
    h.stop().await;
}

#[tokio::test]
async fn fault_switches_name_creates_and_refunds() {
    let h = Harness::start().await;
    for body in [
        serde_json::json!({ "create": "approved_timeout" }),
        serde_json::json!({ "create": "approved_503" }),
        serde_json::json!({ "create": "approved_silent" }),
        serde_json::json!({ "refund": "approved_503" }),
        serde_json::json!({ "create": "none", "refund": "none" }),
    ] {
        h.set_faults(body).await;
    }
    for bad in [
        serde_json::json!({}),
        serde_json::json!({ "refund": "timeout" }),
        serde_json::json!({ "create": "none", "capture": "none" }),
    ] {
        let response = h
            .http
            .post(format!("{}/_sandbox/faults", h.sandbox.base_url()))
            .json(&bad)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{bad}");
    }
    h.stop().await;
}

#[tokio::test]
async fn a_refused_repeat_of_a_create_is_answered_with_the_order_payu_holds() {
    let h = Harness::start().await;
    let r = request(
        card("VISA:tok_payu_approved"),
        "70000",
        CaptureMode::Automatic,
    );
    let first = h.provider.create_transaction(&r).await.unwrap();
    // The emulator refuses a reference already used for another request, as an account that
    // validates unique references refuses any repeat: PayU holds the payment's order.
    let repeat = CreateTransaction {
        method: card("MASTERCARD:tok_payu_approved"),
        ..r.clone()
    };
    let again = h.provider.create_transaction(&repeat).await.unwrap();
    assert_eq!(again.id, first.id);
    assert_eq!(again.status, ProviderTransactionStatus::Approved);
    assert_eq!(h.orders_of(r.payment_id).await.len(), 1);
    // A refusal with no order of the payment at PayU stays a refusal.
    let err = h
        .provider
        .create_transaction(&request(
            card("tok_unknown"),
            "70000",
            CaptureMode::Automatic,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.outcome(), CallOutcome::Refused, "{err}");
    h.stop().await;
}

#[tokio::test]
async fn a_repeated_refund_is_found_in_the_order_before_anything_is_sent() {
    let h = Harness::start().await;
    let r = request(card(tokens::APPROVED), "100000", CaptureMode::Automatic);
    let tx = h.provider.create_transaction(&r).await.unwrap();

    h.set_faults(serde_json::json!({ "refund": "approved_503" }))
        .await;
    let refund_id = RefundId::from_uuid(Uuid::new_v4());
    let err = h
        .provider
        .refund(&tx.id, refund_id, cop("30000"))
        .await
        .unwrap_err();
    assert_eq!(err.outcome(), CallOutcome::Unknown, "{err}");
    let refunds = h.refunds_of(&tx.id).await;
    assert_eq!(refunds.len(), 1, "the refund was made: {refunds:?}");

    // Sent again, it would be answered 503: the adapter finds it in the order instead.
    let again = h
        .provider
        .refund(&tx.id, refund_id, cop("30000"))
        .await
        .unwrap();
    assert_eq!(again.id, refunds[0]["id"].as_str().unwrap());
    assert_eq!(h.refunds_of(&tx.id).await.len(), 1);
    // The same refund id for another amount is refused, and nothing is made.
    let err = h
        .provider
        .refund(&tx.id, refund_id, cop("20000"))
        .await
        .unwrap_err();
    assert_eq!(err.outcome(), CallOutcome::Refused, "{err}");
    assert_eq!(h.refunds_of(&tx.id).await.len(), 1);

    // Another refund of the same amount is a refund of its own.
    h.set_faults(serde_json::json!({ "refund": "none" })).await;
    let other = h
        .provider
        .refund(&tx.id, RefundId::from_uuid(Uuid::new_v4()), cop("30000"))
        .await
        .unwrap();
    assert_ne!(other.id, again.id);
    assert_eq!(h.refunds_of(&tx.id).await.len(), 2);
    let now = h.provider.get_transaction(&tx.id).await.unwrap();
    assert_eq!(now.refunded_amount, cop("60000"));
    h.stop().await;
}
