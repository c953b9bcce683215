//! The real `MayaProvider` and `MayaWebhookVerifier` against the Maya emulator over real
//! sockets (emulator and webhook receiver on 127.0.0.1:0). No mocks.

mod support;

use std::net::TcpListener;
use std::str::FromStr;
use std::time::Duration;

use chrono::Utc;
use domain::{CaptureId, CaptureMode, Currency, Money, PaymentId, ProviderFailureKind, RefundId};
use uuid::Uuid;

use connectors::maya::MayaWebhookVerifier;
use connectors::maya::{MayaConfig, MayaProvider};
use connectors::SourceList;
use connectors::{
    CallOutcome, CreateTransaction, NextAction, PaymentMethodDetails, PaymentProvider,
    ProviderTransactionStatus,
};
use connectors::{
    NotificationOutcome, ProviderNotification, WebhookError, WebhookRequest, WebhookVerifier,
};
use emulators::maya::*;
use support::{Delivery, Receiver};

const PUBLIC_KEY: &str = "pk-emulator-test-0123456789abcdef";
const SECRET_KEY: &str = "sk-emulator-test-0123456789abcdefghijkl";

fn php(amount: &str) -> Money {
    Money::parse(amount, Currency::PHP).unwrap()
}

struct Harness {
    maya: MayaSandboxHandle,
    receiver: Receiver,
    provider: MayaProvider,
    http: reqwest::Client,
}

impl Harness {
    async fn start(script: &[u16], deliver: bool) -> Harness {
        let receiver = Receiver::start(script).await;
        let maya = start_with_options(
            TcpListener::bind("127.0.0.1:0").unwrap(),
            MayaSandboxConfig {
                public_key: PUBLIC_KEY.into(),
                secret_key: SECRET_KEY.into(),
                webhook_url: receiver.url.clone(),
                webhook_delay_ms: 10,
                deliver_webhooks: deliver,
            },
            support::fast_kit_options(),
        )
        .await
        .unwrap();
        let provider = client(&maya.base_url(), PUBLIC_KEY, 2_000);
        Harness {
            maya,
            receiver,
            provider,
            http: reqwest::Client::new(),
        }
    }

    /// The customer on the checkout page.
    async fn customer(&self, checkout_id: &str, action: &str) -> reqwest::StatusCode {
        self.http
            .post(format!(
                "{}/_sandbox/checkouts/{checkout_id}/{action}",
                self.maya.base_url()
            ))
            .send()
            .await
            .unwrap()
            .status()
    }

    async fn fault(&self, create: &str) {
        let status = self
            .http
            .post(format!("{}/_sandbox/faults", self.maya.base_url()))
            .json(&serde_json::json!({ "create": create }))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 200);
    }

    async fn stop(self) {
        self.maya.stop().await;
        self.receiver.stop().await;
    }
}

fn client(base_url: &str, public_key: &str, timeout_ms: u64) -> MayaProvider {
    MayaProvider::new(MayaConfig {
        base_url: base_url.into(),
        public_key: public_key.into(),
        secret_key: SECRET_KEY.into(),
        webhook_sources: "127.0.0.1".into(),
        timeout_ms,
    })
    .unwrap()
}

fn request(capture_mode: CaptureMode, amount: &str) -> CreateTransaction {
    CreateTransaction {
        payment_id: PaymentId::from_uuid(Uuid::new_v4()),
        reference: format!("order-{}", Uuid::new_v4().simple()),
        amount: php(amount),
        method: PaymentMethodDetails::Maya,
        capture_mode,
        customer_email: None,
        customer: Default::default(),
        return_url: Some("https://shop.example/return".into()),
    }
}

/// What payledger's webhook endpoint does: the verifier with the configured sources, the
/// peer address the request came from.
fn verify(
    sources: &str,
    delivery: &Delivery,
) -> Result<Option<ProviderNotification>, WebhookError> {
    MayaWebhookVerifier::with_sources(SourceList::parse(sources).unwrap()).verify(&WebhookRequest {
        headers: &delivery.headers,
        body: &delivery.body,
        peer: delivery.peer,
        received_at: Utc::now(),
    })
}

fn accepted(delivery: &Delivery) -> ProviderNotification {
    verify("127.0.0.1, ::1", delivery)
        .expect("verifier refused the emulator's webhook")
        .expect("verifier ignored the emulator's webhook")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approved_checkout_then_webhook_confirmed_with_maya() {
    let mut h = Harness::start(&[], true).await;
    let req = request(CaptureMode::Automatic, "129.50");
    let tx = h.provider.create_transaction(&req).await.unwrap();
    assert_eq!(tx.status, ProviderTransactionStatus::Pending);
    assert_eq!(tx.payment_id, req.payment_id);
    let Some(NextAction::Redirect { url }) = &tx.next_action else {
        panic!("no redirect: {tx:?}");
    };
    assert!(
        url.starts_with(&h.maya.base_url()) && url.contains(&tx.id),
        "{url}"
    );
    assert_eq!(
        h.provider.get_transaction(&tx.id).await.unwrap().status,
        ProviderTransactionStatus::Pending
    );
    h.receiver.assert_quiet().await;

    assert_eq!(h.customer(&tx.id, "complete").await, 200);
    let delivery = h.receiver.next().await;
    assert_eq!(delivery.peer, Some("127.0.0.1".parse().unwrap()));
    let n = accepted(&delivery);
    assert!(n.confirm_with_provider);
    assert_eq!(n.payment_id, req.payment_id);
    assert_eq!(n.provider_transaction_id, tx.id);
    assert_eq!(n.event_id, format!("{}:PAYMENT_SUCCESS", tx.id));
    assert_eq!(
        n.outcome,
        NotificationOutcome::Approved {
            amount: php("129.50")
        }
    );

    // The confirmation payledger makes before appending anything.
    let confirmed = h
        .provider
        .get_transaction(&n.provider_transaction_id)
        .await
        .unwrap();
    assert_eq!(confirmed.status, ProviderTransactionStatus::Approved);
    assert_eq!(confirmed.payment_id, req.payment_id);
    assert_eq!(confirmed.amount, php("129.50"));
    assert_eq!(confirmed.captured_amount, php("129.50"));
    assert!(confirmed.refunded_amount.is_zero());
    h.provider.health().await.unwrap();

    // The checkout is decided: the customer cannot act again.
    assert_eq!(h.customer(&tx.id, "fail").await, 409);
    h.receiver.assert_quiet().await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_from_an_unknown_address_is_refused_even_claiming_success() {
    let mut h = Harness::start(&[], true).await;
    let tx = h
        .provider
        .create_transaction(&request(CaptureMode::Automatic, "50.00"))
        .await
        .unwrap();
    h.customer(&tx.id, "complete").await;
    let delivery = h.receiver.next().await;
    let body: serde_json::Value = serde_json::from_slice(&delivery.body).unwrap();
    assert_eq!(body["status"], "PAYMENT_SUCCESS");
    // payledger configured with only 10.9.9.9 as Maya's address: the emulator's 127.0.0.1
    // is an unknown source, whatever the body says.
    assert_eq!(
        verify("10.9.9.9", &delivery),
        Err(WebhookError::UnknownSource)
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_expired_and_cancelled_checkouts() {
    let mut h = Harness::start(&[], true).await;
    for (action, outcome, status) in [
        (
            "fail",
            NotificationOutcome::Declined {
                reason: "payment_failed".into(),
            },
            ProviderTransactionStatus::Declined {
                reason: "payment_failed".into(),
            },
        ),
        (
            "expire",
            NotificationOutcome::Expired,
            ProviderTransactionStatus::Expired,
        ),
        (
            "cancel",
            NotificationOutcome::Failed {
                reason: "cancelled".into(),
            },
            ProviderTransactionStatus::Failed {
                reason: "cancelled".into(),
            },
        ),
    ] {
        let tx = h
            .provider
            .create_transaction(&request(CaptureMode::Automatic, "75.25"))
            .await
            .unwrap();
        assert_eq!(h.customer(&tx.id, action).await, 200);
        let n = accepted(&h.receiver.next().await);
        assert_eq!(n.outcome, outcome, "{action}");
        assert_eq!(
            h.provider.get_transaction(&tx.id).await.unwrap().status,
            status
        );
        let refund = h
            .provider
            .refund(&tx.id, RefundId::from_uuid(Uuid::new_v4()), php("1"))
            .await
            .unwrap_err();
        assert_eq!(refund.kind, ProviderFailureKind::Rejected, "{action}");
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_map_to_server_error_rejected_and_timeout() {
    let mut h = Harness::start(&[], true).await;
    h.fault("server_error").await;
    let err = h
        .provider
        .create_transaction(&request(CaptureMode::Automatic, "10.00"))
        .await
        .unwrap_err();
    assert_eq!(err.kind, ProviderFailureKind::ServerError);
    assert!(err.detail.contains("500"), "{}", err.detail);
    assert!(err.is_retryable());

    // Maya's own error data: a key Maya does not know.
    h.fault("none").await;
    let stranger = client(&h.maya.base_url(), "pk-unknown-key-0000000000", 2_000);
    let err = stranger
        .create_transaction(&request(CaptureMode::Automatic, "10.00"))
        .await
        .unwrap_err();
    assert_eq!(err.kind, ProviderFailureKind::Rejected);
    assert!(
        err.detail.contains("401") && err.detail.contains("K003"),
        "{}",
        err.detail
    );
    assert!(!err.detail.contains("pk-unknown"), "{}", err.detail);

    // Maya settles PHP only: refused before any call.
    let mut cop = request(CaptureMode::Automatic, "10.00");
    cop.amount = Money::parse("10.00", Currency::COP).unwrap();
    assert_eq!(
        h.provider.create_transaction(&cop).await.unwrap_err().kind,
        ProviderFailureKind::Rejected
    );
    let mut card = request(CaptureMode::Automatic, "10.00");
    card.method = PaymentMethodDetails::Gcash;
    assert!(h.provider.create_transaction(&card).await.is_err());

    h.fault("timeout").await;
    let impatient = client(&h.maya.base_url(), PUBLIC_KEY, 300);
    let err = impatient
        .create_transaction(&request(CaptureMode::Automatic, "10.00"))
        .await
        .unwrap_err();
    assert_eq!(err.kind, ProviderFailureKind::Timeout);
    h.fault("none").await;
    assert!(h
        .provider
        .create_transaction(&request(CaptureMode::Automatic, "10.00"))
        .await
        .is_ok());
    h.receiver.assert_quiet().await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refunds_are_idempotent_by_refund_id_and_bounded() {
    let mut h = Harness::start(&[], true).await;
    let p = &h.provider;
    let tx = p
        .create_transaction(&request(CaptureMode::Automatic, "100.00"))
        .await
        .unwrap();
    let early = p
        .refund(&tx.id, RefundId::from_uuid(Uuid::new_v4()), php("1"))
        .await
        .unwrap_err();
    assert_eq!(early.kind, ProviderFailureKind::Rejected, "pending");
    h.customer(&tx.id, "complete").await;
    accepted(&h.receiver.next().await);

    let r1 = RefundId::from_uuid(Uuid::new_v4());
    let first = p.refund(&tx.id, r1, php("40.50")).await.unwrap();
    assert_eq!(p.refund(&tx.id, r1, php("40.50")).await.unwrap(), first);
    assert_eq!(
        p.refund(&tx.id, r1, php("40.51")).await.unwrap_err().kind,
        ProviderFailureKind::Rejected
    );
    let r2 = RefundId::from_uuid(Uuid::new_v4());
    let too_much = p.refund(&tx.id, r2, php("59.51")).await.unwrap_err();
    assert_eq!(too_much.kind, ProviderFailureKind::Rejected);
    assert!(too_much.detail.contains("2553"), "{}", too_much.detail);
    p.refund(&tx.id, r2, php("59.50")).await.unwrap();

    let now = p.get_transaction(&tx.id).await.unwrap();
    assert_eq!(now.status, ProviderTransactionStatus::Approved);
    assert_eq!(now.refunded_amount, php("100.00"));
    // Refunds send no webhook at Maya.
    h.receiver.assert_quiet().await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_capture_through_a_capture_payment_then_refund_it() {
    let mut h = Harness::start(&[], true).await;
    let p = &h.provider;
    let req = request(CaptureMode::Manual, "200.00");
    let tx = p.create_transaction(&req).await.unwrap();
    h.customer(&tx.id, "complete").await;
    let n = accepted(&h.receiver.next().await);
    assert_eq!(
        n.outcome,
        NotificationOutcome::Authorized {
            amount: php("200.00")
        }
    );
    assert_eq!(n.event_id, format!("{}:AUTHORIZED", tx.id));
    assert_eq!(
        p.get_transaction(&tx.id).await.unwrap().status,
        ProviderTransactionStatus::Authorized
    );

    let capture_id = CaptureId::from_uuid(Uuid::new_v4());
    p.capture(&tx.id, capture_id, php("150.00")).await.unwrap();
    // Maya announces the capture payment; it is ours, and not news.
    let capture_hook = h.receiver.next().await;
    assert_eq!(verify("127.0.0.1", &capture_hook), Ok(None));
    // A retried capture finds the first one.
    p.capture(&tx.id, capture_id, php("150.00")).await.unwrap();
    assert_eq!(
        p.capture(&tx.id, capture_id, php("10.00"))
            .await
            .unwrap_err()
            .kind,
        ProviderFailureKind::Rejected
    );
    let captured = p.get_transaction(&tx.id).await.unwrap();
    assert_eq!(captured.status, ProviderTransactionStatus::Approved);
    assert_eq!(captured.captured_amount, php("150.00"));
    assert_eq!(captured.amount, php("200.00"));

    // Refunds go to the capture payment.
    let r = RefundId::from_uuid(Uuid::new_v4());
    let refund = p.refund(&tx.id, r, php("50.00")).await.unwrap();
    assert_eq!(p.refund(&tx.id, r, php("50.00")).await.unwrap(), refund);
    let after = p.get_transaction(&tx.id).await.unwrap();
    assert_eq!(after.refunded_amount, php("50.00"));
    assert_eq!(after.captured_amount, php("150.00"));
    // A captured authorization cannot be voided.
    assert_eq!(
        p.void(&tx.id).await.unwrap_err().kind,
        ProviderFailureKind::Rejected
    );
    h.receiver.assert_quiet().await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn void_releases_an_authorization_and_repeats_harmlessly() {
    let mut h = Harness::start(&[], true).await;
    let p = &h.provider;
    let tx = p
        .create_transaction(&request(CaptureMode::Manual, "20.00"))
        .await
        .unwrap();
    assert_eq!(
        p.void(&tx.id).await.unwrap_err().kind,
        ProviderFailureKind::Rejected
    );
    h.customer(&tx.id, "complete").await;
    h.receiver.next().await;
    p.void(&tx.id).await.unwrap();
    p.void(&tx.id).await.unwrap();
    assert_eq!(
        p.get_transaction(&tx.id).await.unwrap().status,
        ProviderTransactionStatus::Voided
    );
    assert_eq!(
        p.capture(&tx.id, CaptureId::from_uuid(Uuid::new_v4()), php("1"))
            .await
            .unwrap_err()
            .kind,
        ProviderFailureKind::Rejected
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_webhook_is_redelivered_with_the_same_event() {
    let mut h = Harness::start(&[500, 503], true).await;
    let tx = h
        .provider
        .create_transaction(&request(CaptureMode::Automatic, "10.00"))
        .await
        .unwrap();
    h.customer(&tx.id, "complete").await;
    let first = h.receiver.next().await;
    let second = h.receiver.next().await;
    let third = h.receiver.next().await;
    assert_eq!(first.body, second.body);
    assert_eq!(second.body, third.body);
    assert_eq!(accepted(&first).event_id, accepted(&third).event_id);
    h.receiver.assert_quiet().await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_webhooks_leave_the_status_to_a_sync() {
    let mut h = Harness::start(&[], false).await;
    let tx = h
        .provider
        .create_transaction(&request(CaptureMode::Automatic, "10.00"))
        .await
        .unwrap();
    assert_eq!(h.customer(&tx.id, "complete").await, 200);
    h.receiver.assert_quiet().await;
    let synced = h.provider.get_transaction(&tx.id).await.unwrap();
    assert_eq!(synced.status, ProviderTransactionStatus::Approved);
    assert!(PaymentId::from_str(&synced.payment_id.to_string()).is_ok());
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_payments_api_wants_the_secret_key() {
    let h = Harness::start(&[], true).await;
    let tx = h
        .provider
        .create_transaction(&request(CaptureMode::Automatic, "10.00"))
        .await
        .unwrap();
    let public_only = MayaProvider::new(MayaConfig {
        base_url: h.maya.base_url(),
        public_key: PUBLIC_KEY.into(),
        secret_key: PUBLIC_KEY.into(),
        webhook_sources: "127.0.0.1".into(),
        timeout_ms: 2_000,
    })
    .unwrap();
    let err = public_only.get_transaction(&tx.id).await.unwrap_err();
    assert_eq!(err.kind, ProviderFailureKind::Rejected);
    assert_eq!(
        public_only.health().await.unwrap_err().kind,
        ProviderFailureKind::Rejected
    );
    let unknown = h
        .provider
        .get_transaction("no-such-payment")
        .await
        .unwrap_err();
    assert!(unknown.detail.contains("404"), "{}", unknown.detail);
    h.stop().await;
}

/// Maya's payments under one reference, read here over HTTP with the secret key.
async fn payments_by_rrn(h: &Harness, rrn: &str) -> (u16, serde_json::Value) {
    let response = h
        .http
        .get(format!(
            "{}/payments/v1/payment-rrns/{rrn}",
            h.maya.base_url()
        ))
        .basic_auth(SECRET_KEY, Some(""))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_create_answers_leave_a_checkout_found_by_reference_and_payable() {
    let mut h = Harness::start(&[], true).await;
    // The client gives up at 300 ms; the emulator holds `approved_timeout` for 700 ms.
    let impatient = client(&h.maya.base_url(), PUBLIC_KEY, 300);
    for (fault, kind) in [
        ("approved_503", ProviderFailureKind::ServerError),
        ("approved_timeout", ProviderFailureKind::Timeout),
    ] {
        h.fault(fault).await;
        let req = request(CaptureMode::Automatic, "321.00");
        let err = impatient.create_transaction(&req).await.unwrap_err();
        assert_eq!(err.kind, kind, "{fault}: {err}");
        assert_eq!(err.outcome(), CallOutcome::Unknown, "{fault}");
        h.fault("none").await;

        // Maya holds the checkout, still waiting for the customer.
        let rrn = req.payment_id.to_string();
        let (status, held) = payments_by_rrn(&h, &rrn).await;
        assert_eq!(status, 200, "{fault}: {held}");
        let held = held.as_array().unwrap();
        assert_eq!(held.len(), 1, "{fault}: {held:?}");
        assert_eq!(held[0]["status"], "PENDING_TOKEN", "{fault}");
        assert_eq!(held[0]["requestReferenceNumber"], rrn.as_str(), "{fault}");
        let checkout = held[0]["id"].as_str().unwrap().to_owned();

        let found = h
            .provider
            .find_transaction(req.payment_id, &req.reference)
            .await
            .unwrap()
            .expect("the checkout is found by our reference");
        assert_eq!(found.id, checkout, "{fault}");
        assert_eq!(found.payment_id, req.payment_id);
        assert_eq!(found.status, ProviderTransactionStatus::Pending);
        assert_eq!(found.amount, php("321.00"));
        assert!(found.captured_amount.is_zero() && found.refunded_amount.is_zero());
        h.receiver.assert_quiet().await;

        // The customer pays it: its webhook names the same transaction.
        assert_eq!(h.customer(&checkout, "complete").await, 200, "{fault}");
        let n = accepted(&h.receiver.next().await);
        assert_eq!(n.payment_id, req.payment_id, "{fault}");
        assert_eq!(n.provider_transaction_id, checkout, "{fault}");
        let paid = h
            .provider
            .find_transaction(req.payment_id, &req.reference)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(paid.id, checkout);
        assert_eq!(paid.status, ProviderTransactionStatus::Approved);
        assert_eq!(paid.captured_amount, php("321.00"));
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_mayas_own_no_such_payment_says_it_holds_none() {
    let h = Harness::start(&[], true).await;
    let never_sent = PaymentId::from_uuid(Uuid::new_v4());
    let (status, body) = payments_by_rrn(&h, &never_sent.to_string()).await;
    assert_eq!((status, body["code"].as_str()), (404, Some("PY0009")));
    assert_eq!(
        h.provider
            .find_transaction(never_sent, "order-x")
            .await
            .unwrap(),
        None
    );
    // A 404 that is not Maya's answer about payments (a wrong base path) proves nothing.
    let misrouted = MayaProvider::new(MayaConfig {
        base_url: format!("{}/elsewhere", h.maya.base_url()),
        public_key: PUBLIC_KEY.into(),
        secret_key: SECRET_KEY.into(),
        webhook_sources: "127.0.0.1".into(),
        timeout_ms: 2_000,
    })
    .unwrap();
    let err = misrouted
        .find_transaction(never_sent, "order-x")
        .await
        .unwrap_err();
    assert!(err.detail.contains("404"), "{}", err.detail);
    // And a key Maya refuses proves nothing either.
    let wrong_secret = MayaProvider::new(MayaConfig {
        base_url: h.maya.base_url(),
        public_key: PUBLIC_KEY.into(),
        secret_key: PUBLIC_KEY.into(),
        webhook_sources: "127.0.0.1".into(),
        timeout_ms: 2_000,
    })
    .unwrap();
    assert!(wrong_secret
        .find_transaction(never_sent, "order-x")
        .await
        .is_err());
    h.stop().await;
}

async fn find(
    h: &Harness,
    req: &CreateTransaction,
) -> Result<Option<connectors::ProviderTransaction>, connectors::ProviderError> {
    h.provider
        .find_transaction(req.payment_id, &req.reference)
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_several_checkouts_for_one_payment_a_paid_one_wins_else_the_earliest() {
    let mut h = Harness::start(&[], true).await;
    let req = request(CaptureMode::Automatic, "90.00");
    // Maya takes no idempotency key: the same create twice makes two checkouts.
    let first = h.provider.create_transaction(&req).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let second = h.provider.create_transaction(&req).await.unwrap();
    assert_ne!(first.id, second.id);

    assert_eq!(find(&h, &req).await.unwrap().unwrap().id, first.id);

    h.customer(&second.id, "complete").await;
    accepted(&h.receiver.next().await);
    let paid = find(&h, &req).await.unwrap().unwrap();
    assert_eq!(paid.id, second.id);
    assert_eq!(paid.status, ProviderTransactionStatus::Approved);

    // Two paid checkouts for one payment: no choice is safe, a person decides.
    h.customer(&first.id, "complete").await;
    accepted(&h.receiver.next().await);
    let err = find(&h, &req).await.unwrap_err();
    assert!(err.detail.contains("more than one paid"), "{}", err.detail);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_checkouts_are_paid_without_any_webhook() {
    let mut h = Harness::start(&[], true).await;
    h.fault("silent").await;
    let req = request(CaptureMode::Manual, "60.00");
    let tx = h.provider.create_transaction(&req).await.unwrap();
    assert!(matches!(tx.next_action, Some(NextAction::Redirect { .. })));
    h.fault("none").await;
    assert_eq!(h.customer(&tx.id, "complete").await, 200);
    h.receiver.assert_quiet().await;
    assert_eq!(
        h.provider.get_transaction(&tx.id).await.unwrap().status,
        ProviderTransactionStatus::Authorized
    );
    // Its capture payment is as silent.
    h.provider
        .capture(&tx.id, CaptureId::from_uuid(Uuid::new_v4()), php("60.00"))
        .await
        .unwrap();
    h.receiver.assert_quiet().await;

    // Checkouts made after the fault is lifted send their webhooks again.
    let loud = h
        .provider
        .create_transaction(&request(CaptureMode::Automatic, "61.00"))
        .await
        .unwrap();
    h.customer(&loud.id, "complete").await;
    assert_eq!(
        accepted(&h.receiver.next().await).provider_transaction_id,
        loud.id
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fault_switch_names_every_fault_and_refuses_others() {
    let h = Harness::start(&[], true).await;
    let url = format!("{}/_sandbox/faults", h.maya.base_url());
    for (asked, answered) in [
        ("approved_timeout", "approved_timeout"),
        ("approved_503", "approved_503"),
        ("silent", "silent"),
        ("approved_silent", "silent"),
        ("timeout", "timeout"),
        ("server_error", "server_error"),
        ("none", "none"),
    ] {
        let response = h
            .http
            .post(&url)
            .json(&serde_json::json!({ "create": asked }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{asked}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["create"], answered, "{asked}");
    }
    let refused = h
        .http
        .post(&url)
        .json(&serde_json::json!({ "create": "approved" }))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    h.stop().await;
}
