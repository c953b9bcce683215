//! The real `EbanxProvider` and `EbanxWebhookVerifier` against the EBANX emulator over real
//! sockets (emulator and notification receiver on 127.0.0.1:0). No mocks: every notification
//! the verifier turns into an outcome comes from its own query to the emulator.

mod support;

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use domain::{Currency, Money, PaymentId, ProviderFailureKind, RefundId};
use serde_json::{json, Value};
use uuid::Uuid;

use connectors::ebanx::{EbanxConfig, EbanxProvider, EbanxWebhookVerifier};
use connectors::{
    CallOutcome, NextAction, NotificationOutcome, PaymentMethodDetails, PaymentProvider,
    ProviderNotification, ProviderTransactionStatus, WebhookError, WebhookRequest, WebhookVerifier,
};
use emulators::ebanx::*;
use support::{Delivery, Receiver};

const KEY: &str = "test_ik_EmulatorTest0123456789";

fn php(amount: &str) -> Money {
    Money::parse(amount, Currency::PHP).unwrap()
}

struct Harness {
    ebanx: EbanxSandboxHandle,
    receiver: Receiver,
    provider: Arc<EbanxProvider>,
    verifier: EbanxWebhookVerifier,
    http: reqwest::Client,
}

impl Harness {
    async fn start(deliver: bool) -> Harness {
        let receiver = Receiver::start(&[]).await;
        let ebanx = start_with_options(
            TcpListener::bind("127.0.0.1:0").unwrap(),
            EbanxSandboxConfig {
                integration_key: KEY.into(),
                webhook_url: receiver.url.clone(),
                webhook_delay_ms: 10,
                deliver_webhooks: deliver,
            },
            support::fast_kit_options(),
        )
        .await
        .unwrap();
        let provider = Arc::new(client(&ebanx.base_url(), KEY, 2_000));
        Harness {
            verifier: EbanxWebhookVerifier::new(provider.clone()),
            ebanx,
            receiver,
            provider,
            http: reqwest::Client::new(),
        }
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let response = self
            .http
            .post(format!("{}{path}", self.ebanx.base_url()))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// The customer on the GCash page.
    async fn customer(&self, hash: &str, action: &str) -> u16 {
        self.post(&format!("/_sandbox/payments/{hash}/{action}"), json!({}))
            .await
            .0
    }

    async fn fault(&self, create: &str) {
        let (status, _) = self
            .post("/_sandbox/faults", json!({ "create": create }))
            .await;
        assert_eq!(status, 200);
    }

    /// What payledger's webhook endpoint makes of a delivery.
    async fn notifications(
        &self,
        delivery: &Delivery,
    ) -> Result<Vec<ProviderNotification>, WebhookError> {
        self.verifier
            .notifications(&WebhookRequest {
                headers: &delivery.headers,
                body: &delivery.body,
                peer: delivery.peer,
                received_at: Utc::now(),
            })
            .await
    }

    /// The one notification a delivery stands for.
    async fn only(&self, delivery: &Delivery) -> ProviderNotification {
        let mut found = self.notifications(delivery).await.unwrap();
        assert_eq!(found.len(), 1, "{found:?}");
        found.remove(0)
    }

    async fn stop(self) {
        self.ebanx.stop().await;
        self.receiver.stop().await;
    }
}

fn client(base_url: &str, key: &str, timeout_ms: u64) -> EbanxProvider {
    EbanxProvider::new(EbanxConfig {
        base_url: base_url.into(),
        integration_key: key.into(),
        public_integration_key: None,
        timeout_ms,
    })
    .unwrap()
}

use support::gcash_request as request;

fn form(delivery: &Delivery) -> Vec<(String, String)> {
    serde_urlencoded::from_bytes(&delivery.body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_confirmed_gcash_payment_is_notified_by_hash_and_read_back_from_ebanx() {
    let mut h = Harness::start(true).await;
    let req = request("1234.60");
    let tx = h.provider.create_transaction(&req).await.unwrap();
    assert_eq!(tx.status, ProviderTransactionStatus::Pending);
    assert_eq!(tx.payment_id, req.payment_id);
    assert_eq!(tx.amount, php("1234.60"));
    assert_eq!(tx.id.len(), 48, "an EBANX hash: {}", tx.id);
    let Some(NextAction::Redirect { url }) = &tx.next_action else {
        panic!("no redirect: {tx:?}");
    };
    assert_eq!(
        url,
        &format!("{}/_sandbox/gcash/{}", h.ebanx.base_url(), tx.id)
    );
    assert_eq!(h.http.get(url).send().await.unwrap().status(), 200);
    // EBANX holds it under our payment id, in PHP, written from the decimal's digits.
    let (_, held) = h
        .post(
            "/ws/query",
            json!({"integration_key": KEY, "merchant_payment_code": req.payment_id.to_string()}),
        )
        .await;
    let p = &held["payment"];
    assert_eq!(p["hash"], tx.id.as_str(), "{held}");
    assert_eq!(p["status"], "PE");
    assert_eq!(p["amount_ext"], "1234.60");
    assert_eq!(p["currency_ext"], "PHP");
    assert_eq!(p["payment_type_code"], "gcash");
    assert_eq!(p["order_number"], req.reference.as_str());
    assert_eq!(p["customer"]["email"], "juan@example.com");
    assert_eq!(
        h.provider.get_transaction(&tx.id).await.unwrap().status,
        ProviderTransactionStatus::Pending
    );
    h.receiver.assert_quiet().await;

    assert_eq!(h.customer(&tx.id, "complete").await, 200);
    let delivery = h.receiver.next().await;
    let content_type = delivery
        .headers
        .iter()
        .find(|(n, _)| n == "content-type")
        .map(|(_, v)| v.as_str());
    assert_eq!(content_type, Some("application/x-www-form-urlencoded"));
    assert_eq!(
        form(&delivery),
        vec![
            ("operation".to_owned(), "payment_status_change".to_owned()),
            ("notification_type".to_owned(), "update".to_owned()),
            ("hash_codes".to_owned(), tx.id.clone()),
        ],
        "the notification names the payment and nothing else"
    );
    let n = h.only(&delivery).await;
    assert_eq!(n.provider, "ebanx");
    assert!(!n.confirm_with_provider, "already EBANX's own answer");
    assert_eq!(n.payment_id, req.payment_id);
    assert_eq!(n.provider_transaction_id, tx.id);
    assert_eq!(n.event_id, format!("ebanx:{}:APPROVED", tx.id));
    assert_eq!(
        n.outcome,
        NotificationOutcome::Approved {
            amount: php("1234.60")
        }
    );
    let confirmed = h.provider.get_transaction(&tx.id).await.unwrap();
    assert_eq!(confirmed.status, ProviderTransactionStatus::Approved);
    assert_eq!(confirmed.captured_amount, php("1234.60"));
    h.provider.health().await.unwrap();

    // Decided: the customer cannot act again, and nothing more is notified.
    assert_eq!(h.customer(&tx.id, "fail").await, 409);
    h.receiver.assert_quiet().await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turned_down_cancelled_and_lapsed_payments() {
    let mut h = Harness::start(true).await;
    for (action, status) in [
        (
            "fail",
            ProviderTransactionStatus::Declined {
                reason: "ebanx_not_accepted".into(),
            },
        ),
        (
            "cancel",
            ProviderTransactionStatus::Declined {
                reason: "ebanx_cancelled_by_the_customer".into(),
            },
        ),
        ("expire", ProviderTransactionStatus::Expired),
    ] {
        let tx = h
            .provider
            .create_transaction(&request("75.25"))
            .await
            .unwrap();
        assert_eq!(h.customer(&tx.id, action).await, 200, "{action}");
        let delivery = h.receiver.next().await;
        let n = h.only(&delivery).await;
        let expected = match &status {
            ProviderTransactionStatus::Declined { reason } => NotificationOutcome::Declined {
                reason: reason.clone(),
            },
            _ => NotificationOutcome::Expired,
        };
        assert_eq!(n.outcome, expected, "{action}");
        assert_eq!(n.event_id, format!("ebanx:{}:{}", tx.id, status.as_str()));
        assert_eq!(
            h.provider.get_transaction(&tx.id).await.unwrap().status,
            status
        );
        // Nothing was paid: nothing to refund.
        let refund = h
            .provider
            .refund(&tx.id, RefundId::from_uuid(Uuid::new_v4()), php("1"))
            .await
            .unwrap_err();
        assert_eq!(refund.kind, ProviderFailureKind::Rejected, "{action}");
        assert!(refund.detail.contains("BP-REF-7"), "{}", refund.detail);
    }
    // GCash holds nothing to capture or void.
    let tx = h
        .provider
        .create_transaction(&request("10.00"))
        .await
        .unwrap();
    assert_eq!(
        h.provider.void(&tx.id).await.unwrap_err().outcome(),
        CallOutcome::Refused
    );
    assert!(!h.provider.supports_manual_capture());
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_unknown_and_unchanged_hashes_become_nothing() {
    let mut h = Harness::start(true).await;
    let open = h
        .provider
        .create_transaction(&request("50.00"))
        .await
        .unwrap();
    let paid = h
        .provider
        .create_transaction(&request("60.00"))
        .await
        .unwrap();
    let lapsed = h
        .provider
        .create_transaction(&request("70.00"))
        .await
        .unwrap();
    h.customer(&paid.id, "complete").await;
    h.customer(&lapsed.id, "expire").await;
    let first = h.receiver.next().await;
    let second = h.receiver.next().await;
    for delivery in [&first, &second] {
        assert_eq!(h.notifications(delivery).await.unwrap().len(), 1);
    }

    // One notification naming an unknown hash, the open payment, and the two decided ones
    // (one of them twice): only EBANX's decided payments become notifications.
    let unknown = "0".repeat(48);
    let (status, _) = h
        .post(
            "/_sandbox/notify",
            json!({"hash_codes": [unknown, open.id, paid.id, lapsed.id, paid.id]}),
        )
        .await;
    assert_eq!(status, 200);
    let batch = h.receiver.next().await;
    let found = h.notifications(&batch).await.unwrap();
    let outcomes: Vec<(&str, &NotificationOutcome)> = found
        .iter()
        .map(|n| (n.provider_transaction_id.as_str(), &n.outcome))
        .collect();
    assert_eq!(
        outcomes,
        vec![
            (
                paid.id.as_str(),
                &NotificationOutcome::Approved {
                    amount: php("60.00")
                }
            ),
            (lapsed.id.as_str(), &NotificationOutcome::Expired),
        ]
    );

    // A body written by someone else: whatever it claims, only hashes are read, and EBANX
    // knows nothing of this one.
    let forged = format!(
        "operation=payment_status_change&notification_type=update&hash_codes={}&status=CO&amount=1000000",
        "ab".repeat(24)
    );
    let forged = Delivery {
        body: forged.into_bytes(),
        headers: Vec::new(),
        peer: None,
    };
    assert_eq!(h.notifications(&forged).await.unwrap(), Vec::new());
    let garbage = Delivery {
        body: b"{\"hash_codes\":\"x\"}".to_vec(),
        headers: Vec::new(),
        peer: None,
    };
    assert!(matches!(
        h.notifications(&garbage).await,
        Err(WebhookError::InvalidField { .. } | WebhookError::Malformed(_))
    ));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_ebanx_cannot_be_asked_about_is_unavailable_not_dropped() {
    let mut h = Harness::start(true).await;
    let tx = h
        .provider
        .create_transaction(&request("50.00"))
        .await
        .unwrap();
    h.customer(&tx.id, "complete").await;
    let delivery = h.receiver.next().await;
    h.stop().await;
    // EBANX is down: the delivery must be answered 503 and come again.
    let spare = TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = spare.local_addr().unwrap();
    drop(spare);
    let down = EbanxWebhookVerifier::new(Arc::new(client(&format!("http://{closed}"), KEY, 1_000)));
    let answer = down
        .notifications(&WebhookRequest {
            headers: &[],
            body: &delivery.body,
            peer: None,
            received_at: Utc::now(),
        })
        .await;
    let Err(error) = answer else {
        panic!("{answer:?}");
    };
    assert!(error.is_unavailable(), "{error}");
    assert!(!error.to_string().contains(KEY), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refunds_are_deduplicated_by_our_refund_id_and_move_to_confirmed() {
    let mut h = Harness::start(true).await;
    let tx = h
        .provider
        .create_transaction(&request("500.00"))
        .await
        .unwrap();
    h.customer(&tx.id, "complete").await;
    h.receiver.next().await;

    let refund_id = RefundId::from_uuid(Uuid::new_v4());
    let first = h
        .provider
        .refund(&tx.id, refund_id, php("120.50"))
        .await
        .unwrap();
    let again = h
        .provider
        .refund(&tx.id, refund_id, php("120.50"))
        .await
        .unwrap();
    assert_eq!(again, first, "a repeat is the first refund");
    let other_amount = h
        .provider
        .refund(&tx.id, refund_id, php("1.00"))
        .await
        .unwrap_err();
    assert_eq!(other_amount.kind, ProviderFailureKind::Rejected);
    let too_much = h
        .provider
        .refund(&tx.id, RefundId::from_uuid(Uuid::new_v4()), php("400.00"))
        .await
        .unwrap_err();
    assert_eq!(too_much.kind, ProviderFailureKind::Rejected);
    assert!(too_much.detail.contains("EMU-4"), "{}", too_much.detail);

    // EBANX acknowledges the refund (`PE`) and says so; the payment is still `CO`, so the
    // notification is the approval payledger already holds.
    let acknowledged = h.receiver.next().await;
    assert!(form(&acknowledged).contains(&("notification_type".into(), "refund".into())));
    let n = h.only(&acknowledged).await;
    assert_eq!(n.event_id, format!("ebanx:{}:APPROVED", tx.id));
    let (_, held) = h
        .post("/ws/query", json!({"integration_key": KEY, "hash": tx.id}))
        .await;
    let refunds = held["payment"]["refunds"].as_array().unwrap().clone();
    assert_eq!(refunds.len(), 1, "{held}");
    assert_eq!(refunds[0]["id"], first.id.as_str());
    assert_eq!(refunds[0]["status"], "PE");
    assert_eq!(refunds[0]["amount_ext"], "120.50");
    assert_eq!(refunds[0]["merchant_refund_code"], refund_id.to_string());

    let (status, _) = h
        .post(
            &format!("/_sandbox/refunds/{}/confirm", first.id),
            json!({}),
        )
        .await;
    assert_eq!(status, 200);
    let confirmed = h.receiver.next().await;
    h.only(&confirmed).await;
    let after = h.provider.get_transaction(&tx.id).await.unwrap();
    assert_eq!(after.refunded_amount, php("120.50"));
    assert_eq!(after.status, ProviderTransactionStatus::Approved);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_sent_again_is_the_first_payment_and_lookups_find_it() {
    let mut h = Harness::start(true).await;
    let req = request("321.00");
    let first = h.provider.create_transaction(&req).await.unwrap();
    // The same payment id again (a retry after a lost answer): EBANX refuses a second
    // payment (`BP-DR-0`) and the adapter answers with the first, as it now is.
    let again = h.provider.create_transaction(&req).await.unwrap();
    assert_eq!(again.id, first.id);
    assert_eq!(again.status, ProviderTransactionStatus::Pending);
    assert_eq!(
        again.next_action, None,
        "only the first answer carries the page"
    );
    assert!(h.provider.create_idempotency_window().is_some());
    assert!(h.provider.supports_lookup());
    let found = h
        .provider
        .find_transaction(req.payment_id, &req.reference)
        .await
        .unwrap()
        .expect("found by merchant_payment_code");
    assert_eq!(found.id, first.id);
    assert_eq!(
        h.provider
            .find_transaction(PaymentId::from_uuid(Uuid::new_v4()), "order-x")
            .await
            .unwrap(),
        None,
        "EBANX holds nothing under an unknown code"
    );
    // The same payment id with another amount is not taken for the first.
    let mut other = req.clone();
    other.amount = php("322.00");
    let err = h.provider.create_transaction(&other).await.unwrap_err();
    assert_eq!(err.outcome(), CallOutcome::Unknown, "{err}");
    h.receiver.assert_quiet().await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_create_answers_are_unknown_and_found_by_lookup_else_not_at_ebanx() {
    let mut h = Harness::start(true).await;
    // The client gives up before the emulator's 700 ms hold ends.
    let impatient = client(&h.ebanx.base_url(), KEY, 300);
    for (fault, made) in [
        ("approved_timeout", true),
        ("approved_503", true),
        ("timeout", false),
        ("server_error", false),
    ] {
        h.fault(fault).await;
        let req = request("88.00");
        let err = impatient.create_transaction(&req).await.unwrap_err();
        assert_eq!(err.outcome(), CallOutcome::Unknown, "{fault}: {err}");
        h.fault("none").await;
        let found = h
            .provider
            .find_transaction(req.payment_id, &req.reference)
            .await
            .unwrap();
        assert_eq!(found.is_some(), made, "{fault}");
        if let Some(found) = found {
            assert_eq!(found.status, ProviderTransactionStatus::Pending, "{fault}");
            assert_eq!(found.payment_id, req.payment_id);
        }
    }
    // A silent payment answers normally and is never notified.
    h.fault("silent").await;
    let tx = h
        .provider
        .create_transaction(&request("15.00"))
        .await
        .unwrap();
    h.fault("none").await;
    assert_eq!(h.customer(&tx.id, "complete").await, 200);
    h.receiver.assert_quiet().await;
    assert_eq!(
        h.provider.get_transaction(&tx.id).await.unwrap().status,
        ProviderTransactionStatus::Approved
    );

    // Nobody listening: provably never sent.
    let spare = TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = spare.local_addr().unwrap();
    drop(spare);
    let err = client(&format!("http://{closed}"), KEY, 1_000)
        .create_transaction(&request("15.00"))
        .await
        .unwrap_err();
    assert_eq!(err.outcome(), CallOutcome::NotSent, "{err}");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_carry_ebanx_codes_and_never_the_key() {
    let h = Harness::start(true).await;
    let wrong = client(
        &h.ebanx.base_url(),
        "test_ik_SomeoneElse000000000000",
        2_000,
    );
    let err = wrong
        .create_transaction(&request("50.00"))
        .await
        .unwrap_err();
    assert_eq!(err.outcome(), CallOutcome::Refused);
    assert!(err.detail.contains("DA-1"), "{}", err.detail);
    assert!(wrong.health().await.is_err());
    let below = h
        .provider
        .create_transaction(&request("0.99"))
        .await
        .unwrap_err();
    assert_eq!(below.outcome(), CallOutcome::Refused);
    assert!(below.detail.contains("BP-DR-6"), "{}", below.detail);
    let mut cop = request("50.00");
    cop.amount = Money::parse("50000", Currency::COP).unwrap();
    assert_eq!(
        h.provider.create_transaction(&cop).await.unwrap_err().kind,
        ProviderFailureKind::Rejected
    );
    let mut card = request("50.00");
    card.method = PaymentMethodDetails::Card {
        token: "tok_x".into(),
    };
    assert_eq!(
        h.provider.create_transaction(&card).await.unwrap_err().kind,
        ProviderFailureKind::Rejected
    );
    for err in [&err, &below] {
        assert!(!err.detail.contains(KEY) && !err.to_string().contains(KEY));
    }
    // The emulator's own checks of what the adapter sends.
    let (_, answer) = h
        .post(
            "/ws/direct",
            json!({"integration_key": KEY, "operation": "request", "payment": {
                "name": "Ana", "email": "ana@example.com", "country": "ph",
                "payment_type_code": "gcash", "merchant_payment_code": "m-1",
                "currency_code": "PHP", "amount_total": 1.001}}),
        )
        .await;
    assert_eq!(answer["status_code"], "EMU-2", "{answer}");
    let (_, answer) = h.post("/ws/query", json!({"hash": "ab"})).await;
    assert_eq!(answer["status_code"], "BP-SA-1", "{answer}");
    assert!(!answer.to_string().contains(KEY));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_notifications_leave_the_answer_at_ebanx() {
    let mut h = Harness::start(false).await;
    let tx = h
        .provider
        .create_transaction(&request("42.00"))
        .await
        .unwrap();
    h.customer(&tx.id, "complete").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    h.receiver.assert_quiet().await;
    assert_eq!(
        h.provider.get_transaction(&tx.id).await.unwrap().status,
        ProviderTransactionStatus::Approved,
        "a sync finds it"
    );
    h.stop().await;
}
