//! The real `PaymongoProvider` and `PaymongoWebhookVerifier` against the PayMongo emulator
//! over real sockets (emulator and webhook receiver on 127.0.0.1:0). No mocks.

mod support;

use std::net::TcpListener;

use chrono::Utc;
use domain::{CaptureId, CaptureMode, Currency, Money, PaymentId, ProviderFailureKind, RefundId};
use uuid::Uuid;

use connectors::paymongo::PaymongoWebhookVerifier;
use connectors::paymongo::{PaymongoConfig, PaymongoProvider};
use connectors::{
    CallOutcome, NextAction, PaymentMethodDetails, PaymentProvider, ProviderTransactionStatus,
};
use connectors::{
    NotificationOutcome, ProviderNotification, WebhookError, WebhookRequest, WebhookVerifier,
};
use emulators::paymongo::*;
use support::{Delivery, Receiver};

const TEST_KEY: &str = "sk_test_emulator0123456789abcdefghij";
const LIVE_KEY: &str = "sk_live_emulator0123456789abcdefghij";
const WEBHOOK_SECRET: &str = "whsk_emulator_test_0123456789abcdefghij";

fn php(amount: &str) -> Money {
    Money::parse(amount, Currency::PHP).unwrap()
}

fn config(
    base_url: &str,
    secret_key: &str,
    webhook_secret: &str,
    timeout_ms: u64,
) -> PaymongoConfig {
    PaymongoConfig {
        base_url: base_url.into(),
        secret_key: secret_key.into(),
        public_key: None,
        webhook_secret: webhook_secret.into(),
        webhook_tolerance_secs: 300,
        timeout_ms,
    }
}

/// The emulator of the account `config` talks to, as `api` starts it.
fn emulated(config: &PaymongoConfig, webhook_url: &str) -> PaymongoSandboxConfig {
    PaymongoSandboxConfig {
        secret_key: config.secret_key.clone(),
        public_key: config.public_key.clone(),
        webhook_secret: config.webhook_secret.clone(),
        webhook_url: webhook_url.to_owned(),
        webhook_delay_ms: 500,
        deliver_webhooks: true,
    }
}

struct Harness {
    paymongo: PaymongoSandboxHandle,
    receiver: Receiver,
    provider: PaymongoProvider,
    config: PaymongoConfig,
    http: reqwest::Client,
}

impl Harness {
    async fn start(script: &[u16], secret_key: &str, deliver: bool) -> Harness {
        let receiver = Receiver::start(script).await;
        let mut config = config(TEST_BASE_URL_PLACEHOLDER, secret_key, WEBHOOK_SECRET, 2_000);
        let mut emulated = emulated(&config, &receiver.url);
        emulated.webhook_delay_ms = 10;
        emulated.deliver_webhooks = deliver;
        let paymongo = start_with_options(
            TcpListener::bind("127.0.0.1:0").unwrap(),
            emulated,
            support::fast_kit_options(),
        )
        .await
        .unwrap();
        config.base_url = paymongo.base_url();
        let provider = PaymongoProvider::new(config.clone()).unwrap();
        Harness {
            paymongo,
            receiver,
            provider,
            config,
            http: reqwest::Client::new(),
        }
    }

    async fn customer(&self, intent_id: &str, action: &str) -> reqwest::StatusCode {
        self.http
            .post(format!(
                "{}/_sandbox/gcash/{intent_id}/{action}",
                self.paymongo.base_url()
            ))
            .send()
            .await
            .unwrap()
            .status()
    }

    async fn fault(&self, create: &str) {
        let status = self
            .http
            .post(format!("{}/_sandbox/faults", self.paymongo.base_url()))
            .json(&serde_json::json!({ "create": create }))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 200);
    }

    /// What payledger's webhook endpoint does, with this deployment's configuration.
    fn verify(&self, delivery: &Delivery) -> Result<Option<ProviderNotification>, WebhookError> {
        verify_with(&self.config, delivery, 0)
    }

    async fn stop(self) {
        self.paymongo.stop().await;
        self.receiver.stop().await;
    }
}

const TEST_BASE_URL_PLACEHOLDER: &str = "http://127.0.0.1:1";

fn verify_with(
    config: &PaymongoConfig,
    delivery: &Delivery,
    received_later_secs: i64,
) -> Result<Option<ProviderNotification>, WebhookError> {
    PaymongoWebhookVerifier::new(config)
        .unwrap()
        .verify(&WebhookRequest {
            headers: &delivery.headers,
            body: &delivery.body,
            peer: delivery.peer,
            received_at: Utc::now() + chrono::Duration::seconds(received_later_secs),
        })
}

use support::gcash_request as request;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorized_gcash_payment_arrives_as_a_signed_payment_paid() {
    let mut h = Harness::start(&[], TEST_KEY, true).await;
    let req = request("129.50");
    let tx = h.provider.create_transaction(&req).await.unwrap();
    assert!(tx.id.starts_with("pi_"), "{}", tx.id);
    assert_eq!(tx.status, ProviderTransactionStatus::Pending);
    assert_eq!(tx.payment_id, req.payment_id);
    assert_eq!(tx.amount, php("129.50"));
    let Some(NextAction::Redirect { url }) = &tx.next_action else {
        panic!("no redirect: {tx:?}");
    };
    assert_eq!(
        url,
        &format!("{}/_sandbox/gcash/{}", h.paymongo.base_url(), tx.id)
    );
    h.receiver.assert_quiet().await;

    assert_eq!(h.customer(&tx.id, "authorize").await, 200);
    let delivery = h.receiver.next().await;
    let header = delivery
        .headers
        .iter()
        .find(|(n, _)| n == "paymongo-signature")
        .map(|(_, v)| v.clone())
        .expect("no Paymongo-Signature");
    assert!(
        header.starts_with("t=") && header.contains(",te=") && header.ends_with(",li="),
        "{header}"
    );
    let n = h.verify(&delivery).unwrap().unwrap();
    assert!(n.event_id.starts_with("evt_"), "{}", n.event_id);
    assert_eq!(n.provider, "gcash");
    assert_eq!(n.payment_id, req.payment_id);
    assert_eq!(n.provider_transaction_id, tx.id);
    assert!(!n.confirm_with_provider);
    assert_eq!(
        n.outcome,
        NotificationOutcome::Approved {
            amount: php("129.50")
        }
    );
    let body: serde_json::Value = serde_json::from_slice(&delivery.body).unwrap();
    assert_eq!(body["data"]["attributes"]["type"], "payment.paid");
    assert_eq!(
        body["data"]["attributes"]["data"]["attributes"]["amount"],
        12_950
    );
    h.receiver.assert_quiet().await;

    let now = h.provider.get_transaction(&tx.id).await.unwrap();
    assert_eq!(now.status, ProviderTransactionStatus::Approved);
    assert_eq!(now.captured_amount, php("129.50"));
    assert!(now.refunded_amount.is_zero());
    assert_eq!(now.next_action, None);
    h.provider.health().await.unwrap();
    assert_eq!(h.customer(&tx.id, "fail").await, 409);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_and_expired_gcash_payments() {
    let mut h = Harness::start(&[], TEST_KEY, true).await;
    let tx = h
        .provider
        .create_transaction(&request("50.00"))
        .await
        .unwrap();
    h.customer(&tx.id, "fail").await;
    let delivery = h.receiver.next().await;
    let n = h.verify(&delivery).unwrap().unwrap();
    let reason = "gcash_generic_decline".to_owned();
    assert_eq!(
        n.outcome,
        NotificationOutcome::Declined {
            reason: reason.clone()
        }
    );
    assert_eq!(
        h.provider.get_transaction(&tx.id).await.unwrap().status,
        ProviderTransactionStatus::Declined { reason }
    );

    let tx = h
        .provider
        .create_transaction(&request("50.00"))
        .await
        .unwrap();
    assert_eq!(h.customer(&tx.id, "expire").await, 200);
    h.receiver.assert_quiet().await;
    assert_eq!(
        h.provider.get_transaction(&tx.id).await.unwrap().status,
        ProviderTransactionStatus::Expired
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_map_to_server_error_rejected_and_timeout() {
    let mut h = Harness::start(&[], TEST_KEY, true).await;
    h.fault("server_error").await;
    let err = h
        .provider
        .create_transaction(&request("100.00"))
        .await
        .unwrap_err();
    assert_eq!(err.kind, ProviderFailureKind::ServerError);
    assert!(err.detail.contains("500"), "{}", err.detail);
    h.fault("none").await;

    // PayMongo's own error data: below its PHP 20.00 minimum.
    let err = h
        .provider
        .create_transaction(&request("19.99"))
        .await
        .unwrap_err();
    assert_eq!(err.kind, ProviderFailureKind::Rejected);
    assert!(
        err.detail.contains("parameter_below_minimum"),
        "{}",
        err.detail
    );

    // An unknown key: 401, and the key never shows.
    let stranger = PaymongoProvider::new(config(
        &h.paymongo.base_url(),
        "sk_test_unknown000000000000000000000",
        WEBHOOK_SECRET,
        2_000,
    ))
    .unwrap();
    let err = stranger
        .create_transaction(&request("100.00"))
        .await
        .unwrap_err();
    assert_eq!(err.kind, ProviderFailureKind::Rejected);
    assert!(err.detail.contains("401"), "{}", err.detail);
    assert!(!err.detail.contains("sk_test_unknown"), "{}", err.detail);

    // Refused before any call: manual capture, no return URL, another method or currency.
    let mut manual = request("100.00");
    manual.capture_mode = CaptureMode::Manual;
    let mut no_return = request("100.00");
    no_return.return_url = None;
    let mut maya = request("100.00");
    maya.method = PaymentMethodDetails::Maya;
    let mut usd = request("100.00");
    usd.amount = Money::parse("100.00", Currency::USD).unwrap();
    for bad in [manual, no_return, maya, usd] {
        let err = h.provider.create_transaction(&bad).await.unwrap_err();
        assert_eq!(err.kind, ProviderFailureKind::Rejected, "{bad:?}");
    }

    h.fault("timeout").await;
    let impatient = PaymongoProvider::new(config(
        &h.paymongo.base_url(),
        TEST_KEY,
        WEBHOOK_SECRET,
        300,
    ))
    .unwrap();
    let err = impatient
        .create_transaction(&request("100.00"))
        .await
        .unwrap_err();
    assert_eq!(err.kind, ProviderFailureKind::Timeout);
    h.fault("none").await;
    h.provider
        .create_transaction(&request("100.00"))
        .await
        .unwrap();
    h.receiver.assert_quiet().await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refunds_are_idempotent_by_refund_id_and_capture_void_are_refused() {
    let mut h = Harness::start(&[], TEST_KEY, true).await;
    let p = &h.provider;
    let tx = p.create_transaction(&request("100.00")).await.unwrap();
    let r1 = RefundId::from_uuid(Uuid::new_v4());
    assert_eq!(
        p.refund(&tx.id, r1, php("10")).await.unwrap_err().kind,
        ProviderFailureKind::Rejected,
        "nothing paid yet"
    );
    h.customer(&tx.id, "authorize").await;
    h.receiver.next().await;

    let first = p.refund(&tx.id, r1, php("30.25")).await.unwrap();
    assert!(first.id.starts_with("ref_"), "{}", first.id);
    assert_eq!(p.refund(&tx.id, r1, php("30.25")).await.unwrap(), first);
    assert_eq!(
        p.refund(&tx.id, r1, php("30.26")).await.unwrap_err().kind,
        ProviderFailureKind::Rejected
    );
    let r2 = RefundId::from_uuid(Uuid::new_v4());
    let too_much = p.refund(&tx.id, r2, php("69.76")).await.unwrap_err();
    assert_eq!(too_much.kind, ProviderFailureKind::Rejected);
    assert!(
        too_much.detail.contains("parameter_above_maximum"),
        "{}",
        too_much.detail
    );
    p.refund(&tx.id, r2, php("69.75")).await.unwrap();
    let now = p.get_transaction(&tx.id).await.unwrap();
    assert_eq!(now.status, ProviderTransactionStatus::Approved);
    assert_eq!(now.refunded_amount, php("100.00"));

    let capture = p
        .capture(&tx.id, CaptureId::from_uuid(Uuid::new_v4()), php("1"))
        .await
        .unwrap_err();
    assert_eq!(capture.kind, ProviderFailureKind::Rejected);
    assert_eq!(
        p.void(&tx.id).await.unwrap_err().kind,
        ProviderFailureKind::Rejected
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivered_events_refuse_tampering_a_wrong_secret_and_staleness() {
    let mut h = Harness::start(&[], TEST_KEY, true).await;
    let tx = h
        .provider
        .create_transaction(&request("100.00"))
        .await
        .unwrap();
    h.customer(&tx.id, "authorize").await;
    let delivery = h.receiver.next().await;
    assert!(h.verify(&delivery).unwrap().is_some());

    // Changed amount, old signature.
    let body = String::from_utf8(delivery.body.clone()).unwrap();
    let tampered = Delivery {
        body: body
            .replace("\"amount\":10000", "\"amount\":1000000")
            .into_bytes(),
        ..delivery.clone()
    };
    assert_ne!(tampered.body, delivery.body);
    assert_eq!(h.verify(&tampered), Err(WebhookError::InvalidSignature));

    // A deployment holding another webhook secret.
    let other = config(
        &h.paymongo.base_url(),
        TEST_KEY,
        "whsk_another_secret_0123456789abcdef",
        2_000,
    );
    assert_eq!(
        verify_with(&other, &delivery, 0),
        Err(WebhookError::InvalidSignature)
    );

    // The same event received six minutes later.
    assert_eq!(
        verify_with(&h.config, &delivery, 360),
        Err(WebhookError::StaleTimestamp)
    );
    // A live deployment reads `li`, which a test-mode event leaves empty.
    let live = config(&h.paymongo.base_url(), LIVE_KEY, WEBHOOK_SECRET, 2_000);
    assert_eq!(
        verify_with(&live, &delivery, 0),
        Err(WebhookError::InvalidSignature)
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_mode_signs_li_and_redelivers_the_same_event_resigned() {
    let mut h = Harness::start(&[500], LIVE_KEY, true).await;
    assert!(h.config.livemode());
    let tx = h
        .provider
        .create_transaction(&request("20.00"))
        .await
        .unwrap();
    h.customer(&tx.id, "authorize").await;
    let refused = h.receiver.next().await;
    let again = h.receiver.next().await;
    assert_eq!(refused.body, again.body);
    let header = |d: &Delivery| {
        d.headers
            .iter()
            .find(|(n, _)| n == "paymongo-signature")
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    assert!(header(&again).contains(",te=,li="), "{}", header(&again));
    let first = h.verify(&refused).unwrap().unwrap();
    let second = h.verify(&again).unwrap().unwrap();
    assert_eq!(first.event_id, second.event_id);
    let test_mode = config(&h.paymongo.base_url(), TEST_KEY, WEBHOOK_SECRET, 2_000);
    assert_eq!(
        verify_with(&test_mode, &again, 0),
        Err(WebhookError::InvalidSignature)
    );
    h.receiver.assert_quiet().await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_events_leave_the_status_to_a_sync() {
    let mut h = Harness::start(&[], TEST_KEY, false).await;
    let tx = h
        .provider
        .create_transaction(&request("20.00"))
        .await
        .unwrap();
    assert_eq!(h.customer(&tx.id, "authorize").await, 200);
    h.receiver.assert_quiet().await;
    assert_eq!(
        h.provider.get_transaction(&tx.id).await.unwrap().status,
        ProviderTransactionStatus::Approved
    );
    h.stop().await;
}

/// The intents the emulator holds for one of our payments (its test control route).
async fn intents_for(h: &Harness, payment_id: PaymentId) -> Vec<serde_json::Value> {
    let response = h
        .http
        .get(format!(
            "{}/_sandbox/payment_intents?payment_id={payment_id}",
            h.paymongo.base_url()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    body["data"].as_array().unwrap().clone()
}

/// `POST {path}` with the secret key, a JSON:API body and, when given, an `Idempotency-Key`.
async fn post_api(
    h: &Harness,
    path: &str,
    key: Option<&str>,
    attributes: serde_json::Value,
) -> (u16, serde_json::Value) {
    let mut request = h
        .http
        .post(format!("{}{path}", h.paymongo.base_url()))
        .basic_auth(TEST_KEY, Some(""))
        .json(&serde_json::json!({ "data": { "attributes": attributes } }));
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_create_answers_leave_an_attached_intent_the_customer_can_pay() {
    let mut h = Harness::start(&[], TEST_KEY, true).await;
    // The client gives up at 300 ms; the emulator holds `approved_timeout` for 700 ms.
    let impatient = PaymongoProvider::new(config(
        &h.paymongo.base_url(),
        TEST_KEY,
        WEBHOOK_SECRET,
        300,
    ))
    .unwrap();
    for (fault, kind) in [
        ("approved_503", ProviderFailureKind::ServerError),
        ("approved_timeout", ProviderFailureKind::Timeout),
    ] {
        h.fault(fault).await;
        let req = request("250.00");
        let err = impatient.create_transaction(&req).await.unwrap_err();
        assert_eq!(err.kind, kind, "{fault}: {err}");
        assert_eq!(err.outcome(), CallOutcome::Unknown, "{fault}");
        h.fault("none").await;

        // PayMongo holds one intent for the payment, attached and waiting for the customer.
        let held = intents_for(&h, req.payment_id).await;
        assert_eq!(held.len(), 1, "{fault}: {held:?}");
        let intent = held[0]["id"].as_str().unwrap().to_owned();
        assert_eq!(
            held[0]["attributes"]["status"], "awaiting_next_action",
            "{fault}"
        );
        assert_eq!(held[0]["attributes"]["amount"], 25_000, "{fault}");
        h.receiver.assert_quiet().await;

        assert_eq!(h.customer(&intent, "authorize").await, 200, "{fault}");
        let delivery = h.receiver.next().await;
        let n = h.verify(&delivery).unwrap().unwrap();
        assert_eq!(n.payment_id, req.payment_id, "{fault}");
        assert_eq!(n.provider_transaction_id, intent, "{fault}");
        assert_eq!(
            n.outcome,
            NotificationOutcome::Approved {
                amount: php("250.00")
            }
        );
        assert_eq!(
            h.provider.get_transaction(&intent).await.unwrap().status,
            ProviderTransactionStatus::Approved
        );
    }
    // Without lookup by reference, the adapter never claims to find one.
    assert!(!h.provider.supports_lookup());
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_intents_are_paid_without_any_event() {
    let mut h = Harness::start(&[], TEST_KEY, true).await;
    h.fault("silent").await;
    let tx = h
        .provider
        .create_transaction(&request("80.00"))
        .await
        .unwrap();
    h.fault("none").await;
    assert!(matches!(tx.next_action, Some(NextAction::Redirect { .. })));
    assert_eq!(h.customer(&tx.id, "authorize").await, 200);
    h.receiver.assert_quiet().await;
    assert_eq!(
        h.provider.get_transaction(&tx.id).await.unwrap().status,
        ProviderTransactionStatus::Approved
    );
    let loud = h
        .provider
        .create_transaction(&request("80.00"))
        .await
        .unwrap();
    h.customer(&loud.id, "authorize").await;
    let delivery = h.receiver.next().await;
    let n = h.verify(&delivery).unwrap().unwrap();
    assert_eq!(n.provider_transaction_id, loud.id);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_makes_a_repeated_create_or_refund_the_first_one() {
    let mut h = Harness::start(&[], TEST_KEY, true).await;
    let payment = PaymentId::from_uuid(Uuid::new_v4());
    let key = payment.to_string();
    let intent = serde_json::json!({
        "amount": 5_000,
        "currency": "PHP",
        "payment_method_allowed": ["gcash"],
        "capture_type": "automatic",
        "metadata": { "payment_id": key },
    });
    let (status, first) = post_api(&h, "/v1/payment_intents", Some(&key), intent.clone()).await;
    assert_eq!(status, 200, "{first}");
    let (status, again) = post_api(&h, "/v1/payment_intents", Some(&key), intent.clone()).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["data"]["id"], first["data"]["id"]);
    assert_eq!(intents_for(&h, payment).await.len(), 1);
    // The same key with other parameters is refused and makes nothing.
    let mut other = intent.clone();
    other["amount"] = serde_json::json!(6_000);
    let (status, refused) = post_api(&h, "/v1/payment_intents", Some(&key), other).await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(intents_for(&h, payment).await.len(), 1);
    // Without a key, every create is a new intent.
    let (status, _) = post_api(&h, "/v1/payment_intents", None, intent.clone()).await;
    assert_eq!(status, 200);
    assert_eq!(intents_for(&h, payment).await.len(), 2);

    // The adapter sends our payment id as the key: a repeated create is the same intent.
    let req = request("100.00");
    let tx = h.provider.create_transaction(&req).await.unwrap();
    let repeat = h.provider.create_transaction(&req).await.unwrap();
    assert_eq!(repeat.id, tx.id);
    assert_eq!(repeat.status, ProviderTransactionStatus::Pending);
    assert_eq!(repeat.next_action, tx.next_action);
    let held = intents_for(&h, req.payment_id).await;
    assert_eq!(held.len(), 1, "{held:?}");
    assert_eq!(held[0]["id"].as_str(), Some(tx.id.as_str()));

    // Refunds: the same key answers the first refund and refunds nothing more.
    h.customer(&tx.id, "authorize").await;
    h.receiver.next().await;
    let paid = intent_payment(&h, &tx.id).await;
    let refund = serde_json::json!({
        "amount": 1_000,
        "payment_id": paid,
        "reason": "requested_by_customer",
    });
    let refund_key = Uuid::new_v4().to_string();
    let (status, first) = post_api(&h, "/v1/refunds", Some(&refund_key), refund.clone()).await;
    assert_eq!(status, 200, "{first}");
    let (status, again) = post_api(&h, "/v1/refunds", Some(&refund_key), refund.clone()).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["data"]["id"], first["data"]["id"]);
    // A key is bound to its route: the intent's key cannot make a refund.
    let (status, _) = post_api(&h, "/v1/refunds", Some(&req.payment_id.to_string()), refund).await;
    assert_eq!(status, 400);
    let now = h.provider.get_transaction(&tx.id).await.unwrap();
    assert_eq!(now.refunded_amount, php("10.00"));
    h.stop().await;
}

/// The `pay_...` id of an intent's paid payment, read with the secret key.
async fn intent_payment(h: &Harness, intent: &str) -> String {
    let body: serde_json::Value = h
        .http
        .get(format!(
            "{}/v1/payment_intents/{intent}",
            h.paymongo.base_url()
        ))
        .basic_auth(TEST_KEY, Some(""))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["data"]["attributes"]["payments"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}
