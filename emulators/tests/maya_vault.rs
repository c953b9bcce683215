//! Maya Vault: the emulator's payment tokens, customers and cards over real HTTP, and the real
//! `MayaProvider` saving, verifying, charging and removing a card against it (emulator and
//! webhook receiver on 127.0.0.1:0). No mocks.

mod support;

use std::net::TcpListener;

use chrono::Utc;
use domain::{
    CaptureId, CaptureMode, Currency, CustomerId, Money, PaymentId, PaymentMethodType,
    ProviderFailureKind, RefundId, SavedMethodId,
};
use secrecy::ExposeSecret;
use serde_json::{json, Value};
use uuid::Uuid;

use connectors::maya::{MayaConfig, MayaProvider, MayaWebhookVerifier};
use connectors::SourceList;
use connectors::{
    CallOutcome, CreateTransaction, NotificationOutcome, PaymentMethodDetails, PaymentProvider,
    ProviderNotification, ProviderTransactionStatus, SaveMethod, SavedSource, SourceState,
    WebhookRequest, WebhookVerifier,
};
use emulators::maya::*;
use support::{Delivery, Receiver};

const PUBLIC_KEY: &str = "pk-emulator-test-0123456789abcdef";
const SECRET_KEY: &str = "sk-emulator-test-0123456789abcdefghijkl";
const RETURN_URL: &str = "https://shop.example/cards/back";

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
    async fn start() -> Harness {
        let receiver = Receiver::start(&[]).await;
        let maya = start_with_options(
            TcpListener::bind("127.0.0.1:0").unwrap(),
            MayaSandboxConfig {
                public_key: PUBLIC_KEY.into(),
                secret_key: SECRET_KEY.into(),
                webhook_url: receiver.url.clone(),
                webhook_delay_ms: 10,
                deliver_webhooks: true,
            },
            support::fast_kit_options(),
        )
        .await
        .unwrap();
        let provider = MayaProvider::new(MayaConfig {
            base_url: maya.base_url(),
            public_key: PUBLIC_KEY.into(),
            secret_key: SECRET_KEY.into(),
            webhook_sources: "127.0.0.1".into(),
            timeout_ms: 2_000,
        })
        .unwrap();
        Harness {
            maya,
            receiver,
            provider,
            http: reqwest::Client::new(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.maya.base_url())
    }

    /// One call to the emulator with `key` (none for the customer's own actions).
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self.http.request(method, self.url(path));
        if let Some(key) = key {
            request = request.basic_auth(key, Some(""));
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn post(&self, path: &str, key: Option<&str>, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, key, Some(body))
            .await
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, Some(SECRET_KEY), None)
            .await
    }

    async fn delete(&self, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::DELETE, path, Some(SECRET_KEY), None)
            .await
    }

    /// What the customer's browser does with the card: a payment token.
    async fn tokenize(&self, number: &str) -> String {
        let (status, body) = self
            .post(
                "/payments/v1/payment-tokens",
                Some(PUBLIC_KEY),
                json!({"card": {"number": number, "expMonth": "12", "expYear": "2031", "cvc": "111"}}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["state"], "AVAILABLE", "{body}");
        body["paymentTokenId"].as_str().unwrap().to_owned()
    }

    /// The customer on the card's 3-D Secure page.
    async fn verification(&self, card_token_id: &str, action: &str) -> (u16, Value) {
        self.post(
            &format!("/_sandbox/vault/cards/{card_token_id}/{action}"),
            None,
            json!({}),
        )
        .await
    }

    async fn fault(&self, create: &str) {
        let (status, _) = self
            .post("/_sandbox/faults", None, json!({ "create": create }))
            .await;
        assert_eq!(status, 200);
    }

    async fn save(&self, number: &str) -> (SaveMethod, SavedSource) {
        let request = save_request(&self.tokenize(number).await);
        let saved = self.provider.save_method(&request).await.unwrap();
        (request, saved)
    }

    async fn stop(self) {
        self.maya.stop().await;
        self.receiver.stop().await;
    }
}

fn save_request(token: &str) -> SaveMethod {
    SaveMethod {
        payment_method_id: SavedMethodId::from_uuid(Uuid::new_v4()),
        customer_id: CustomerId::from_uuid(Uuid::new_v4()),
        customer_email: Some("ana@example.com".into()),
        method: PaymentMethodDetails::Card {
            token: token.into(),
        },
        acceptance_token: None,
        return_url: Some(RETURN_URL.into()),
    }
}

/// The Maya customer id and card token id of a saved source (`<customerId>/<cardTokenId>`).
fn ids(saved: &SavedSource) -> (String, String) {
    let (customer, card) = saved
        .source_id
        .expose_secret()
        .split_once('/')
        .expect("a Maya source names its customer and its card");
    (customer.to_owned(), card.to_owned())
}

fn charge(saved: &SavedSource, capture_mode: CaptureMode, amount: &str) -> CreateTransaction {
    CreateTransaction {
        payment_id: PaymentId::from_uuid(Uuid::new_v4()),
        reference: format!("order-{}", Uuid::new_v4().simple()),
        amount: php(amount),
        method: PaymentMethodDetails::Saved {
            method: PaymentMethodType::Card,
            payment_method_id: SavedMethodId::from_uuid(Uuid::new_v4()),
            source_id: saved.source_id.clone(),
        },
        capture_mode,
        customer_email: None,
        customer: Default::default(),
        return_url: Some(RETURN_URL.into()),
    }
}

fn accepted(delivery: &Delivery) -> ProviderNotification {
    MayaWebhookVerifier::with_sources(SourceList::parse("127.0.0.1, ::1").unwrap())
        .verify(&WebhookRequest {
            headers: &delivery.headers,
            body: &delivery.body,
            peer: delivery.peer,
            received_at: Utc::now(),
        })
        .expect("verifier refused the emulator's webhook")
        .expect("verifier ignored the emulator's webhook")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_customer_card_verify_pay_delete_then_pay_refused_over_http() {
    let mut h = Harness::start().await;
    let token = h.tokenize(TEST_CARD_VISA).await;
    assert!(token.len() > 128, "{token}");

    let (status, customer) = h
        .post(
            "/payments/v1/customers",
            Some(SECRET_KEY),
            json!({"contact": {"email": "ana@example.com"}, "metadata": {"k": "v"}}),
        )
        .await;
    assert_eq!(status, 200, "{customer}");
    assert_eq!(customer["contact"]["email"], "ana@example.com");
    let customer_id = customer["id"].as_str().unwrap().to_owned();
    let cards = format!("/payments/v1/customers/{customer_id}/cards");

    let link = json!({
        "paymentTokenId": token, "isDefault": true,
        "redirectUrl": {"success": RETURN_URL, "failure": RETURN_URL, "cancel": RETURN_URL},
        "requestReferenceNumber": Uuid::new_v4().to_string()
    });
    let (status, card) = h.post(&cards, Some(SECRET_KEY), link.clone()).await;
    assert_eq!(status, 200, "{card}");
    assert_eq!(card["state"], card_state::PREVERIFICATION);
    assert_eq!(card["cardType"], "visa-card");
    assert_eq!(card["maskedPan"], "************1381");
    assert_eq!(card["default"], true);
    let card_id = card["cardTokenId"].as_str().unwrap().to_owned();
    let page = card["verificationUrl"].as_str().unwrap().to_owned();
    assert!(
        page.starts_with(&h.url("/_sandbox/vault/cards/")),
        "the emulator's own page: {page}"
    );
    assert!(
        !page.contains(&card_id),
        "the customer never sees the card token"
    );
    // The card number itself is never answered.
    assert!(!card.to_string().contains("412345013100"), "{card}");
    // A payment token links one card, once.
    let (status, again) = h.post(&cards, Some(SECRET_KEY), link).await;
    assert_eq!((status, again["code"].as_str()), (400, Some("PY0007")));

    let card_path = format!("{cards}/{card_id}");
    let pay_path = format!("{card_path}/payments");
    // The amount as the JSON number Maya documents, written from its digits.
    let payment = |rrn: &str| -> Value {
        serde_json::from_str(&format!(
            r#"{{"totalAmount":{{"amount":150.25,"currency":"PHP"}},"requestReferenceNumber":"{rrn}"}}"#
        ))
        .unwrap()
    };
    // Not verified yet: refused, nothing made.
    let rrn = Uuid::new_v4().to_string();
    let (status, refused) = h.post(&pay_path, Some(SECRET_KEY), payment(&rrn)).await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(
        h.get(&format!("/payments/v1/payment-rrns/{rrn}")).await.0,
        404
    );

    let page_html = h.http.get(&page).send().await.unwrap();
    assert_eq!(page_html.status(), 200);
    assert!(page_html.text().await.unwrap().contains("/verify"));
    // The customer passes 3-D Secure on the page the URL names.
    let (status, verified) = h
        .post(
            &format!("{}/verify", &page[h.maya.base_url().len()..]),
            None,
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{verified}");
    assert_eq!(verified["cardTokenId"], card_id.as_str());
    assert_eq!(verified["state"], card_state::VERIFIED);
    assert_eq!(h.verification(&card_id, "fail").await.0, 409);
    let (status, held) = h.get(&card_path).await;
    assert_eq!((status, &held["state"]), (200, &json!("VERIFIED")));
    assert!(held.get("verificationUrl").is_none(), "{held}");
    let (status, listed) = h.get(&cards).await;
    assert_eq!(status, 200);
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");

    let (status, paid) = h.post(&pay_path, Some(SECRET_KEY), payment(&rrn)).await;
    assert_eq!(status, 200, "{paid}");
    assert_eq!(paid["status"], status::PAYMENT_SUCCESS);
    assert_eq!(paid["requestReferenceNumber"], rrn.as_str());
    assert_eq!(paid["amount"], "150.25");
    let id = paid["id"].as_str().unwrap().to_owned();
    let hook: Value = serde_json::from_slice(&h.receiver.next().await.body).unwrap();
    assert_eq!(
        (&hook["id"], &hook["status"]),
        (&json!(id), &json!("PAYMENT_SUCCESS"))
    );
    // An ordinary payment: by id and by reference.
    assert_eq!(h.get(&format!("/payments/v1/payments/{id}")).await.0, 200);
    let (status, by_rrn) = h.get(&format!("/payments/v1/payment-rrns/{rrn}")).await;
    assert_eq!(status, 200);
    assert_eq!(by_rrn[0]["id"], id.as_str());

    let (status, _) = h.delete(&card_path).await;
    assert_eq!(status, 200);
    let (status, gone) = h.get(&card_path).await;
    assert_eq!((status, gone["code"].as_str()), (404, Some(CARD_NOT_FOUND)));
    let (status, refused) = h
        .post(
            &pay_path,
            Some(SECRET_KEY),
            payment(&Uuid::new_v4().to_string()),
        )
        .await;
    assert_eq!(
        (status, refused["code"].as_str()),
        (404, Some(CARD_NOT_FOUND))
    );
    assert_eq!(h.delete(&card_path).await.0, 404);

    let (status, _) = h
        .delete(&format!("/payments/v1/customers/{customer_id}"))
        .await;
    assert_eq!(status, 200);
    let (status, gone) = h.get(&cards).await;
    assert_eq!((status, gone["code"].as_str()), (404, Some("PY0023")));
    h.receiver.assert_quiet().await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_cards_and_bodies_are_checked_like_maya() {
    let h = Harness::start().await;
    let card = json!({"card": {"number": TEST_CARD_MASTERCARD, "expMonth": "12", "expYear": "2031", "cvc": "111"}});
    // Tokens take the public key only; the vault the secret key only.
    for key in [Some(SECRET_KEY), None, Some("pk-someone-else")] {
        let (status, body) = h
            .post("/payments/v1/payment-tokens", key, card.clone())
            .await;
        assert_eq!(
            (status, body["code"].as_str()),
            (401, Some("K003")),
            "{key:?}"
        );
    }
    for key in [Some(PUBLIC_KEY), None] {
        let (status, body) = h.post("/payments/v1/customers", key, json!({})).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (401, Some("K003")),
            "{key:?}"
        );
    }
    let (status, _) = h
        .call(
            reqwest::Method::GET,
            "/payments/v1/customers/x/cards/y",
            Some(PUBLIC_KEY),
            None,
        )
        .await;
    assert_eq!(status, 401);

    for (number, month, year, cvc, code) in [
        ("4123450131001382", "12", "2031", "111", "2553"),
        ("6011111111111117", "12", "2031", "111", "2553"),
        (TEST_CARD_VISA, "13", "2031", "111", "2553"),
        (TEST_CARD_VISA, "12", "2031", "1", "2553"),
        (TEST_CARD_VISA, "01", "2020", "111", "PY0002"),
    ] {
        let (status, body) = h
            .post(
                "/payments/v1/payment-tokens",
                Some(PUBLIC_KEY),
                json!({"card": {"number": number, "expMonth": month, "expYear": year, "cvc": cvc}}),
            )
            .await;
        assert_eq!((status, body["code"].as_str()), (400, Some(code)), "{body}");
        assert!(!body.to_string().contains(number), "{body}");
    }

    let (_, customer) = h
        .post("/payments/v1/customers", Some(SECRET_KEY), json!({}))
        .await;
    let cards = format!(
        "/payments/v1/customers/{}/cards",
        customer["id"].as_str().unwrap()
    );
    let (status, body) = h
        .post(&cards, Some(SECRET_KEY), json!({"paymentTokenId": "nope"}))
        .await;
    assert_eq!((status, body["code"].as_str()), (400, Some("PY0008")));
    let (status, body) = h
        .post(
            "/payments/v1/customers/00000000-0000-4000-8000-000000000000/cards",
            Some(SECRET_KEY),
            json!({"paymentTokenId": h.tokenize(TEST_CARD_VISA).await}),
        )
        .await;
    assert_eq!((status, body["code"].as_str()), (404, Some("PY0023")));
    let (status, _) = h.verification("unknown-card", "verify").await;
    assert_eq!(status, 404);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_provider_saves_a_card_for_verification_then_charges_it_in_one_click() {
    let mut h = Harness::start().await;
    let (request, saved) = h.save(TEST_CARD_VISA).await;
    assert_eq!(saved.display.brand.as_deref(), Some("VISA"));
    assert_eq!(saved.display.last_four.as_deref(), Some("1381"));
    assert_eq!(
        (saved.display.exp_month, saved.display.exp_year),
        (None, None)
    );
    let (customer_id, card_id) = ids(&saved);
    let page = saved.verification_url.clone().expect("to verify");
    assert!(page.starts_with(&h.url("/_sandbox/vault/cards/")), "{page}");
    assert!(!format!("{saved:?}").contains(&card_id));
    assert!(!format!("{saved:?}").contains(&customer_id));
    // One Maya customer of its own, with the email and our customer id; no invented name.
    let (status, customer) = h
        .get(&format!("/payments/v1/customers/{customer_id}"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(customer["contact"]["email"], "ana@example.com");
    assert_eq!(
        customer["metadata"]["payledgerCustomerId"],
        request.customer_id.to_string()
    );
    assert!(customer.get("firstName").is_none(), "{customer}");

    let p = &h.provider;
    let source = saved.source_id.expose_secret();
    assert_eq!(
        p.source_state(source).await.unwrap(),
        SourceState::AwaitingVerification
    );
    let early = p
        .create_transaction(&charge(&saved, CaptureMode::Automatic, "99.00"))
        .await
        .unwrap_err();
    assert_eq!(early.outcome(), CallOutcome::Refused, "{}", early.detail);
    assert!(!early.detail.contains(&card_id), "{}", early.detail);

    assert_eq!(h.verification(&card_id, "verify").await.0, 200);
    assert_eq!(
        p.source_state(source).await.unwrap(),
        SourceState::Chargeable
    );

    let req = charge(&saved, CaptureMode::Automatic, "129.50");
    let tx = p.create_transaction(&req).await.unwrap();
    assert_eq!(tx.status, ProviderTransactionStatus::Approved);
    assert_eq!(tx.payment_id, req.payment_id);
    assert_eq!(tx.amount, php("129.50"));
    assert_eq!(tx.captured_amount, php("129.50"));
    assert_eq!(tx.next_action, None);
    let n = accepted(&h.receiver.next().await);
    assert_eq!(n.payment_id, req.payment_id);
    assert_eq!(n.provider_transaction_id, tx.id);
    assert_eq!(
        n.outcome,
        NotificationOutcome::Approved {
            amount: php("129.50")
        }
    );
    assert_eq!(p.get_transaction(&tx.id).await.unwrap().status, tx.status);
    let found = p
        .find_transaction(req.payment_id, &req.reference)
        .await
        .unwrap()
        .expect("found by our reference");
    assert_eq!(found.id, tx.id);
    let refund = RefundId::from_uuid(Uuid::new_v4());
    p.refund(&tx.id, refund, php("29.50")).await.unwrap();
    assert_eq!(
        p.get_transaction(&tx.id).await.unwrap().refunded_amount,
        php("29.50")
    );

    // Manual capture: authorized now, captured later.
    let req = charge(&saved, CaptureMode::Manual, "200.00");
    let auth = p.create_transaction(&req).await.unwrap();
    assert_eq!(auth.status, ProviderTransactionStatus::Authorized);
    assert_eq!(
        accepted(&h.receiver.next().await).outcome,
        NotificationOutcome::Authorized {
            amount: php("200.00")
        }
    );
    p.capture(
        &auth.id,
        CaptureId::from_uuid(Uuid::new_v4()),
        php("200.00"),
    )
    .await
    .unwrap();
    let _capture_hook = h.receiver.next().await;
    let captured = p.get_transaction(&auth.id).await.unwrap();
    assert_eq!(captured.status, ProviderTransactionStatus::Approved);
    assert_eq!(captured.captured_amount, php("200.00"));

    // Removed: gone at Maya, removing again succeeds, and it is charged no more.
    p.remove_method(source).await.unwrap();
    p.remove_method(source).await.unwrap();
    assert_eq!(
        p.source_state(source).await.unwrap(),
        SourceState::VerificationFailed
    );
    let after = p
        .create_transaction(&charge(&saved, CaptureMode::Automatic, "10.00"))
        .await
        .unwrap_err();
    assert_eq!(after.outcome(), CallOutcome::Refused, "{}", after.detail);
    let (status, _) = h
        .get(&format!("/payments/v1/customers/{customer_id}"))
        .await;
    assert_eq!(status, 404, "the customer is deleted with its card");
    h.receiver.assert_quiet().await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declined_and_unverifiable_cards_and_a_used_token() {
    let mut h = Harness::start().await;
    let p = &h.provider;

    let (_, declined) = h.save(TEST_CARD_DECLINED).await;
    let (_, card_id) = ids(&declined);
    h.verification(&card_id, "verify").await;
    let req = charge(&declined, CaptureMode::Automatic, "50.00");
    let tx = p.create_transaction(&req).await.unwrap();
    assert_eq!(
        tx.status,
        ProviderTransactionStatus::Declined {
            reason: "maya_PY0119".into()
        }
    );
    let n = accepted(&h.receiver.next().await);
    assert_eq!(
        n.outcome,
        NotificationOutcome::Declined {
            reason: "maya_PY0119".into()
        }
    );

    let (_, unverifiable) = h.save(TEST_CARD_VERIFICATION_FAILS).await;
    let (_, card_id) = ids(&unverifiable);
    let (status, card) = h.verification(&card_id, "verify").await;
    assert_eq!(
        (status, &card["state"]),
        (200, &json!("VERIFICATION_FAILED"))
    );
    let source = unverifiable.source_id.expose_secret();
    assert_eq!(
        p.source_state(source).await.unwrap(),
        SourceState::VerificationFailed
    );
    assert_eq!(
        p.create_transaction(&charge(&unverifiable, CaptureMode::Automatic, "5.00"))
            .await
            .unwrap_err()
            .outcome(),
        CallOutcome::Refused
    );

    // The customer who gives up on the page.
    let (_, abandoned) = h.save(TEST_CARD_MASTERCARD).await;
    assert_eq!(abandoned.display.brand.as_deref(), Some("MASTERCARD"));
    let (_, card_id) = ids(&abandoned);
    assert_eq!(h.verification(&card_id, "fail").await.0, 200);
    assert_eq!(
        p.source_state(abandoned.source_id.expose_secret())
            .await
            .unwrap(),
        SourceState::VerificationFailed
    );

    // A token already linked is refused (Maya's `PY0007`), never echoed.
    let token = h.tokenize(TEST_CARD_VISA).await;
    p.save_method(&save_request(&token)).await.unwrap();
    let refused = p.save_method(&save_request(&token)).await.unwrap_err();
    assert_eq!(refused.outcome(), CallOutcome::Refused);
    assert!(refused.detail.contains("PY0007"), "{}", refused.detail);
    assert!(!refused.detail.contains(&token), "{}", refused.detail);

    // Only cards are saved.
    let mut wallet = save_request(&token);
    wallet.method = PaymentMethodDetails::Maya;
    assert_eq!(
        p.save_method(&wallet).await.unwrap_err().kind,
        ProviderFailureKind::Rejected
    );
    h.receiver.assert_quiet().await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_charge_whose_answer_was_lost_is_found_by_reference() {
    let mut h = Harness::start().await;
    let (_, saved) = h.save(TEST_CARD_VISA).await;
    let (_, card_id) = ids(&saved);
    h.verification(&card_id, "verify").await;

    h.fault("approved_503").await;
    let req = charge(&saved, CaptureMode::Automatic, "77.00");
    let lost = h.provider.create_transaction(&req).await.unwrap_err();
    assert_eq!(lost.outcome(), CallOutcome::Unknown, "{}", lost.detail);
    h.fault("none").await;
    let n = accepted(&h.receiver.next().await);
    assert_eq!(n.payment_id, req.payment_id);
    let found = h
        .provider
        .find_transaction(req.payment_id, &req.reference)
        .await
        .unwrap()
        .expect("the payment was made");
    assert_eq!(found.status, ProviderTransactionStatus::Approved);
    assert_eq!(found.id, n.provider_transaction_id);

    h.fault("server_error").await;
    let req = charge(&saved, CaptureMode::Automatic, "78.00");
    let refused = h.provider.create_transaction(&req).await.unwrap_err();
    assert_eq!(refused.kind, ProviderFailureKind::ServerError);
    h.fault("none").await;
    assert!(h
        .provider
        .find_transaction(req.payment_id, &req.reference)
        .await
        .unwrap()
        .is_none());
    h.receiver.assert_quiet().await;
    h.stop().await;
}
