//! What the provider contract suite needs from each provider ([`ProviderFixture`]), and the
//! running emulator, webhook receiver and connector one test works with ([`Env`]).

use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use chrono::Utc;
use domain::{CaptureMode, Currency, Money, PaymentId};
use uuid::Uuid;

use connectors::registry;
use connectors::{
    Connector, CreateTransaction, NotificationOutcome, PaymentMethodDetails, PaymentProvider,
    ProviderNotification, ProviderTransaction, WebhookError, WebhookRequest, WebhookVerifier,
};
use emulators::EmulatorHandle;

use crate::support::{Delivery, Receiver};

/// How long an emulator waits before deciding a payment and posting its webhook.
pub const WEBHOOK_DELAY_MS: u64 = 20;

/// What every payment of the suite asks for, in the fixture's currency.
pub const AMOUNT: &str = "1234";
/// Part of [`AMOUNT`]: captured, or refunded, once.
pub const PART: &str = "1000";

/// One provider as the contract suite drives it: its connector by registry name, its
/// emulator started with that connector's own settings, a payment the emulator approves,
/// and what the provider is expected to offer.
pub trait ProviderFixture: Sized + Send + Sync + 'static {
    /// The name in `connectors::registry::known()`.
    const NAME: &'static str;
    const CURRENCY: Currency;
    /// The setting that points the connector at its provider.
    const BASE_URL_SETTING: &'static str;
    /// The setting holding the credential the provider checks, and a wrong value for it.
    const KEY_SETTING: &'static str;
    const WRONG_KEY: &'static str;
    /// Whether `health()` presents that credential (else only the create finds it wrong).
    const HEALTH_CHECKS_KEY: bool;

    /// What the provider offers (the connector must say the same).
    const MANUAL_CAPTURE: bool;
    const REFUNDS: bool;
    const LOOKUP: bool;
    /// Whether a repeated create answers the first transaction (an idempotency window).
    const IDEMPOTENT_CREATE: bool;
    /// The provider's webhooks carry no proof and every one is asked back of the provider
    /// (EBANX): a forged one is taken in and stands for nothing, instead of being refused.
    const FORGERY_STANDS_FOR_NOTHING: bool = false;

    /// Starts the emulator as the app does: the keys and secrets of the connector's own
    /// settings (`setting`, defaults applied), webhooks posted to `webhook_url`.
    async fn start_emulator(
        setting: &dyn Fn(&str) -> String,
        webhook_url: String,
    ) -> EmulatorHandle;

    /// Settings the connector needs besides its base URL to work with the emulator.
    fn overrides() -> Vec<(&'static str, String)> {
        Vec::new()
    }

    /// A payment method the emulator approves.
    fn method() -> PaymentMethodDetails;

    /// What the customer does, over HTTP against the emulator, for a created transaction to
    /// be approved (authorized, for manual capture). Nothing by default.
    async fn pay(_env: &Env<Self>, _tx: &ProviderTransaction) {}

    /// How many transactions the emulator holds for the payment of `request`, by its own
    /// view (not the connector's), where the fixture can tell.
    async fn held(_env: &Env<Self>, _request: &CreateTransaction) -> Option<usize> {
        None
    }

    /// The delivered webhook with what authenticates it broken: one byte of its body
    /// changed (or where it came from, for a provider that does not sign).
    fn forge(delivery: &Delivery) -> Delivery;
}

/// `delivery` with the first digit of `amount` (as the body writes it) changed.
pub fn amount_changed(delivery: &Delivery, amount: &str) -> Delivery {
    let at = delivery
        .body
        .windows(amount.len())
        .position(|w| w == amount.as_bytes())
        .unwrap_or_else(|| {
            panic!(
                "`{amount}` is not in the webhook body: {}",
                String::from_utf8_lossy(&delivery.body)
            )
        });
    let mut forged = delivery.clone();
    forged.body[at] = if forged.body[at] == b'9' {
        b'8'
    } else {
        forged.body[at] + 1
    };
    forged
}

/// A listener on a free port of 127.0.0.1, for an emulator.
pub fn listener() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").unwrap()
}

/// An address nothing listens on: a port that was bound, then released.
pub fn closed_port() -> SocketAddr {
    let spare = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = spare.local_addr().unwrap();
    drop(spare);
    addr
}

/// Builds the connector of provider `name` from its test defaults and `overrides`.
pub fn connect(name: &str, overrides: &BTreeMap<&'static str, String>) -> Box<dyn Connector> {
    let lookup = |var: &str| overrides.get(var).cloned();
    registry::configure(name, &lookup)
        .unwrap_or_else(|| panic!("{name} is not a known provider"))
        .connect()
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// A running emulator, the receiver of its webhooks, and the connector pointed at it.
pub struct Env<F> {
    pub emulator: EmulatorHandle,
    pub receiver: Receiver,
    pub overrides: BTreeMap<&'static str, String>,
    pub provider: Arc<dyn PaymentProvider>,
    pub verifier: Arc<dyn WebhookVerifier>,
    pub http: reqwest::Client,
    fixture: PhantomData<F>,
}

impl<F: ProviderFixture> Env<F> {
    pub async fn start() -> Env<F> {
        let receiver = Receiver::start(&[]).await;
        let defaults = registry::configure(F::NAME, &|_| None)
            .unwrap_or_else(|| panic!("{} is not a known provider", F::NAME));
        let setting = |var: &str| defaults.setting(var).unwrap_or_default();
        let emulator = F::start_emulator(&setting, receiver.url.clone()).await;
        let mut overrides: BTreeMap<_, _> = F::overrides().into_iter().collect();
        overrides.insert(F::BASE_URL_SETTING, emulator.base_url());
        let connector = connect(F::NAME, &overrides);
        assert_eq!(connector.name(), F::NAME);
        Env {
            provider: connector.provider(),
            verifier: connector.verifier(),
            emulator,
            receiver,
            overrides,
            http: reqwest::Client::new(),
            fixture: PhantomData,
        }
    }

    /// The value in effect of one of the connector's settings.
    pub fn setting(&self, var: &str) -> String {
        let lookup = |v: &str| self.overrides.get(v).cloned();
        registry::configure(F::NAME, &lookup)
            .unwrap()
            .setting(var)
            .unwrap_or_default()
    }

    /// Another client of the same provider, with one setting changed.
    pub fn provider_with(&self, var: &'static str, value: String) -> Arc<dyn PaymentProvider> {
        let mut overrides = self.overrides.clone();
        overrides.insert(var, value);
        connect(F::NAME, &overrides).provider()
    }

    pub fn money(&self, amount: &str) -> Money {
        Money::parse(amount, F::CURRENCY).unwrap()
    }

    /// A new payment of [`AMOUNT`] the emulator approves.
    pub fn request(&self, capture_mode: CaptureMode) -> CreateTransaction {
        CreateTransaction {
            payment_id: PaymentId::from_uuid(Uuid::new_v4()),
            reference: format!("order-{}", Uuid::new_v4().simple()),
            amount: self.money(AMOUNT),
            method: F::method(),
            capture_mode,
            customer_email: Some("buyer@example.com".into()),
            customer: Default::default(),
            return_url: Some("https://shop.example/return".into()),
        }
    }

    pub async fn create(&self, request: &CreateTransaction) -> ProviderTransaction {
        self.provider
            .create_transaction(request)
            .await
            .unwrap_or_else(|e| panic!("{}: create_transaction: {e}", F::NAME))
    }

    /// Creates a payment, has the customer pay it, and waits for the webhook deciding it.
    pub async fn approved(
        &mut self,
        capture_mode: CaptureMode,
    ) -> (
        CreateTransaction,
        ProviderTransaction,
        Delivery,
        ProviderNotification,
    ) {
        let request = self.request(capture_mode);
        let tx = self.create(&request).await;
        F::pay(self, &tx).await;
        let (delivery, notification) = self.decided(request.payment_id).await;
        let expected = match capture_mode {
            CaptureMode::Automatic => NotificationOutcome::Approved {
                amount: request.amount,
            },
            CaptureMode::Manual => NotificationOutcome::Authorized {
                amount: request.amount,
            },
        };
        assert_eq!(notification.outcome, expected, "{}", F::NAME);
        (request, tx, delivery, notification)
    }

    /// Verifies a delivered webhook as payledger's endpoint does: what it stands for.
    pub async fn verify(
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

    /// The next webhook deciding `payment_id` (skipping those payledger acknowledges only).
    pub async fn decided(&mut self, payment_id: PaymentId) -> (Delivery, ProviderNotification) {
        loop {
            let delivery = self.receiver.next().await;
            let verified = self.verify(&delivery).await.unwrap_or_else(|e| {
                panic!(
                    "{}: the emulator's webhook was refused ({e}): {}",
                    F::NAME,
                    String::from_utf8_lossy(&delivery.body)
                )
            });
            let deciding = verified
                .into_iter()
                .find(|n| n.payment_id == payment_id && n.outcome != NotificationOutcome::Pending);
            if let Some(n) = deciding {
                return (delivery, n);
            }
        }
    }

    pub async fn stop(self) {
        self.emulator.stop().await;
        self.receiver.stop().await;
    }
}
