//! The command service: loads a payment's stream, lets the aggregate decide, appends, and
//! talks to the provider in the order that keeps money safe:
//! - create: `PaymentInitiated` is appended *before* the provider is called, so a crash
//!   after the call still leaves a payment to reconcile;
//! - every provider write has its intent in the stream before the call
//!   (`ProviderAttemptStarted`, `CaptureRequested`, `VoidRequested`, `RefundRequested`), our
//!   id as the provider's idempotency key, and its outcome after; a lost answer leaves the
//!   intent open for the resolver (`resolve`), never a blind retry or a fallback;
//! - refund: `RefundRequested` also reserves the amount, so concurrent refunds can never
//!   together exceed what was captured.
//!
//! Provider calls never hold a command longer than the configured budget.

mod changes;
mod create;
mod fingerprint;
pub(crate) mod measure;
mod outcomes;
mod resolve;
mod versions;

pub use fingerprint::{FingerprintKey, TEST_SECRET as TEST_FINGERPRINT_SECRET};
pub use outcomes::outcome_of;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cqrs_es::persist::EventStoreAggregateContext;
use cqrs_es::{AggregateError, EventStore};
use domain::payment::RefundStatus;
use domain::{
    CaptureMode, IdempotencyKey, MerchantId, Money, Payment, PaymentCommand, PaymentError,
    PaymentEvent, PaymentId, PaymentStatus, Reference, RefundId,
};
use rand::Rng;
use sha2::{Digest, Sha256};
use sqlx::PgPool;

use crate::fees::FeeSchedule;
use crate::relay_waker::{LocalRelay, RelayWaker};
use crate::router::{RoutedProvider, Router};
use crate::stripes::Stripes;
use connectors::{CallOutcome, Customer, PaymentMethodDetails, ProviderError};
use eventstore::repository::{payment_store, PaymentStore};

/// Optimistic-lock conflicts retried before answering `409`.
const CONFLICT_RETRY_MAX: u32 = 16;
const CONFLICT_BACKOFF_MS_MAX: u64 = 20;
const STRIPE_COUNT: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Rejected(#[from] PaymentError),
    #[error("the reference is already used by another payment of this merchant")]
    ReferenceTaken,
    #[error("the payment is being changed concurrently; retry")]
    Conflict,
    #[error("the provider did not accept the request: {0}")]
    Provider(ProviderError),
    #[error("no provider takes {method} in {currency} with {capture:?} capture")]
    NoProvider {
        method: &'static str,
        currency: &'static str,
        capture: CaptureMode,
    },
    #[error("every provider that could take this payment is unavailable; retry later")]
    ProvidersUnavailable,
    #[error("{provider} does not {action} through its API")]
    Unsupported {
        provider: String,
        action: &'static str,
    },
    #[error("event store unavailable")]
    Store(String),
}

fn store_error(error: AggregateError<PaymentError>) -> CommandError {
    match error {
        AggregateError::UserError(e) => CommandError::Rejected(e),
        AggregateError::AggregateConflict => CommandError::Conflict,
        other => CommandError::Store(other.to_string()),
    }
}

/// A payment as the event stream says after a command, with its stream version.
#[derive(Debug, Clone)]
pub struct Executed {
    pub payment: Payment,
    pub version: i64,
    /// Events this command appended (zero for an idempotent repeat).
    pub appended: usize,
}

/// A `POST /v1/payments`, parsed.
#[derive(Clone)]
pub struct CreatePayment {
    pub merchant_id: MerchantId,
    pub idempotency_key: IdempotencyKey,
    pub reference: Reference,
    pub amount: Money,
    /// The method with what the provider needs (tokens, ids): never logged, never stored in
    /// an event; only its type is.
    pub payment_method: PaymentMethodDetails,
    pub capture_mode: CaptureMode,
    pub customer_email: Option<String>,
    /// The payer's details for providers that ask for them (never logged nor stored).
    pub customer: Customer,
    /// The merchant's preferred provider (tried first when it can take the payment).
    pub provider_preference: Option<String>,
    /// Where a redirect flow returns the customer (the service's default when absent).
    pub return_url: Option<String>,
}

impl std::fmt::Debug for CreatePayment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatePayment")
            .field("merchant_id", &self.merchant_id)
            .field("reference", &self.reference)
            .field("amount", &self.amount)
            .field("payment_method", &self.payment_method.kind())
            .field("capture_mode", &self.capture_mode)
            .finish_non_exhaustive()
    }
}

impl CreatePayment {
    /// Everything the request asked for, as text its fingerprint is taken of: the same key
    /// with another body is refused. Tokens and personal ids enter only as their digest.
    pub fn canonical(&self) -> String {
        let method_digest = hex::encode(Sha256::digest(self.payment_method.canonical().as_bytes()));
        let mut canonical = format!(
            "v1\n{}\n{}\n{}\n{}\n{}\n{:?}\n{}\n{:?}\n{:?}\n{:?}",
            self.merchant_id,
            self.reference,
            self.amount.amount(),
            self.amount.currency(),
            self.payment_method.kind().as_str(),
            self.capture_mode,
            method_digest,
            self.provider_preference,
            self.customer_email,
            self.return_url
        );
        // Added after `v1` requests were fingerprinted: a request without customer details
        // keeps the fingerprint it always had, so a retry across an upgrade still matches.
        if !self.customer.is_empty() {
            let customer_digest = hex::encode(Sha256::digest(self.customer.canonical()));
            canonical.push_str(&format!("\n{customer_digest}"));
        }
        canonical
    }
}

/// A payment loaded for a change, with this node's lock on it held until the change is
/// made: the caller reads what it needs from it (the currency an amount is in), and the
/// change decides on it instead of reading the stream again.
pub struct Loaded<'a> {
    id: PaymentId,
    current: Executed,
    _serial: tokio::sync::MutexGuard<'a, ()>,
}

impl Loaded<'_> {
    pub fn payment(&self) -> &Payment {
        &self.current.payment
    }
}

#[derive(Debug, Clone)]
pub struct RefundOutcome {
    pub executed: Executed,
    pub refund_id: RefundId,
    pub status: RefundStatus,
    /// Why the provider refused, when it did.
    pub failure: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// The most one command may spend waiting on providers, fallbacks included.
    pub provider_budget: Duration,
    /// The most one provider may take to answer a create before the next one is tried.
    pub attempt_timeout: Duration,
    /// Tries of an idempotent provider call (reads) before giving up.
    pub idempotent_tries_max: u32,
    /// Where redirect flows (PSE, wallets) send the customer back when the request names no
    /// `return_url`.
    pub default_return_url: &'static str,
    /// What create fingerprints are keyed with.
    pub fingerprint_key: FingerprintKey,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        Self {
            provider_budget: Duration::from_secs(15),
            attempt_timeout: Duration::from_secs(5),
            idempotent_tries_max: 3,
            default_return_url: "https://checkout.payledger.invalid/return",
            fingerprint_key: FingerprintKey::test_default(),
        }
    }
}

pub struct PaymentService {
    store: PaymentStore,
    pool: PgPool,
    router: Arc<Router>,
    fees: Arc<FeeSchedule>,
    config: ServiceConfig,
    stripes: Stripes,
    relay_waker: RelayWaker,
    seen: versions::SeenVersions,
}

impl PaymentService {
    pub fn new(
        pool: PgPool,
        router: Arc<Router>,
        fees: Arc<FeeSchedule>,
        config: ServiceConfig,
        local_relay: Option<LocalRelay>,
    ) -> Self {
        Self {
            store: payment_store(pool.clone()),
            relay_waker: RelayWaker::spawn(pool.clone(), local_relay),
            pool,
            router,
            fees,
            config,
            stripes: Stripes::new(STRIPE_COUNT),
            seen: versions::SeenVersions::default(),
        }
    }

    pub fn router(&self) -> &Router {
        &self.router
    }

    /// The routing, shared with the other services that call providers.
    pub fn shared_router(&self) -> Arc<Router> {
        Arc::clone(&self.router)
    }

    /// The relay's wake-up, shared with the other services that append.
    pub fn relay_waker(&self) -> RelayWaker {
        self.relay_waker.clone()
    }

    pub fn fees(&self) -> &FeeSchedule {
        &self.fees
    }

    /// The provider holding this payment.
    fn provider_of(&self, payment: &Payment) -> Result<&RoutedProvider, CommandError> {
        self.router.get(&payment.provider).ok_or_else(|| {
            CommandError::Provider(ProviderError::rejected(format!(
                "provider `{}` is not configured",
                payment.provider
            )))
        })
    }

    /// The payment as its stream says now; `NotFound` for an empty stream or, with a merchant
    /// scope, another merchant's payment (never reveal that it exists).
    #[tracing::instrument(skip(self))]
    pub async fn load(
        &self,
        id: PaymentId,
        scope: Option<&MerchantId>,
    ) -> Result<Executed, CommandError> {
        let context = self
            .store
            .load_aggregate(&id.to_string())
            .await
            .map_err(store_error)?;
        let payment = context.aggregate;
        if payment.status == PaymentStatus::New {
            return Err(PaymentError::NotFound.into());
        }
        if let Some(merchant) = scope {
            if payment.merchant_id.as_ref() != Some(merchant) {
                return Err(PaymentError::NotFound.into());
            }
        }
        let version = context.current_sequence as i64;
        self.remember(id, &payment, version);
        Ok(Executed {
            payment,
            version,
            appended: 0,
        })
    }

    /// A version the payment's stream has reached, at least `wanted` when it has that many
    /// events: what a read waiting for `wanted` may wait for. Answered from the versions this
    /// process saw when one reaches `wanted` (a stream never shrinks), else from the stream.
    /// `NotFound` as `load`.
    pub async fn version_at_least(
        &self,
        id: PaymentId,
        scope: Option<&MerchantId>,
        wanted: i64,
    ) -> Result<i64, CommandError> {
        if let Some((merchant, version)) = self.seen.get(id.as_uuid()) {
            if version >= wanted && scope.is_none_or(|scope| *scope == merchant) {
                return Ok(version);
            }
        }
        Ok(self.load(id, scope).await?.version)
    }

    fn remember(&self, id: PaymentId, payment: &Payment, version: i64) {
        if let Some(merchant) = &payment.merchant_id {
            self.seen.record(id.as_uuid(), merchant, version);
        }
    }

    /// `load` under this node's lock on the payment, for a change (`capture`, `refund`) to
    /// decide on.
    #[tracing::instrument(skip(self))]
    pub async fn load_for_change(
        &self,
        id: PaymentId,
        scope: Option<&MerchantId>,
    ) -> Result<Loaded<'_>, CommandError> {
        let serial = self.stripes.lock(id.as_uuid()).await;
        let current = self.load(id, scope).await?;
        Ok(Loaded {
            id,
            current,
            _serial: serial,
        })
    }

    /// Loads, decides and appends, retrying a bounded number of times when another writer
    /// appended first.
    async fn execute(
        &self,
        id: PaymentId,
        command: PaymentCommand,
        source: &'static str,
    ) -> Result<Executed, CommandError> {
        self.execute_from(id, command, source, None).await
    }

    /// `execute`, deciding the first try on `known` (the payment as this command last saw
    /// it, with its stream version) instead of reading the stream again. A stale `known`
    /// costs no correctness: the append then conflicts on the version and the stream is
    /// read; and a refusal or a no-op decided on `known` is confirmed on the stream before
    /// it is answered.
    #[tracing::instrument(skip(self, command, known), fields(command = command.name()))]
    async fn execute_from(
        &self,
        id: PaymentId,
        command: PaymentCommand,
        source: &'static str,
        known: Option<Executed>,
    ) -> Result<Executed, CommandError> {
        let name = command.name();
        let result = self.decide_and_append(id, command, source, known).await;
        measure::command(name, source, &result);
        result
    }

    async fn decide_and_append(
        &self,
        id: PaymentId,
        command: PaymentCommand,
        source: &'static str,
        mut known: Option<Executed>,
    ) -> Result<Executed, CommandError> {
        let aggregate_id = id.to_string();
        for attempt in 0..=CONFLICT_RETRY_MAX {
            let from_known = known.is_some();
            let context = match known.take() {
                Some(known) => EventStoreAggregateContext {
                    aggregate_id: aggregate_id.clone(),
                    aggregate: known.payment,
                    current_sequence: known.version as usize,
                    current_snapshot: None,
                },
                None => self
                    .store
                    .load_aggregate(&aggregate_id)
                    .await
                    .map_err(store_error)?,
            };
            let base_version = context.current_sequence as i64;
            let decided = context.aggregate.decide(command.clone());
            if from_known && !matches!(&decided, Ok(events) if !events.is_empty()) {
                continue; // only an append is checked by the store: confirm the rest on it
            }
            let events = decided?;
            let mut after = context.aggregate.clone();
            if events.is_empty() {
                return Ok(Executed {
                    payment: after,
                    version: base_version,
                    appended: 0,
                });
            }
            for event in &events {
                cqrs_es::Aggregate::apply(&mut after, event.clone());
            }
            let appended = events.len();
            let status_before = context.aggregate.status;
            match self.store.commit(events, context, metadata(source)).await {
                Ok(committed) => {
                    debug_assert_eq!(committed.len(), appended);
                    self.relay_waker.wake();
                    measure::decision(status_before, &after);
                    let version = base_version + appended as i64;
                    self.remember(id, &after, version);
                    return Ok(Executed {
                        payment: after,
                        version,
                        appended,
                    });
                }
                Err(AggregateError::AggregateConflict) => {
                    let backoff_ms = rand::thread_rng()
                        .gen_range(0..=CONFLICT_BACKOFF_MS_MAX.min(1 + u64::from(attempt) * 2));
                    tracing::debug!(attempt, backoff_ms, "append conflict; reloading");
                    tokio::time::sleep(Duration::from_millis(backoff_ms)).await;
                }
                Err(other) => return Err(store_error(other)),
            }
        }
        Err(CommandError::Conflict)
    }

    /// `execute_from`, where a refusal because the payment moved on meanwhile (a webhook or
    /// another process appended first) answers the payment as the stream now says it, with
    /// `appended: 0`.
    async fn execute_or_reload(
        &self,
        id: PaymentId,
        command: PaymentCommand,
        source: &'static str,
        known: Option<Executed>,
    ) -> Result<Executed, CommandError> {
        match self.execute_from(id, command, source, known).await {
            Err(CommandError::Rejected(PaymentError::InvalidTransition { .. })) => {
                self.load(id, None).await
            }
            other => other,
        }
    }

    /// The payment's events in stream order, for `GET /v1/payments/{id}/events`.
    pub async fn events(
        &self,
        id: PaymentId,
        scope: Option<&MerchantId>,
    ) -> Result<Vec<(i64, PaymentEvent)>, CommandError> {
        self.load(id, scope).await?;
        let envelopes = self
            .store
            .load_events(&id.to_string())
            .await
            .map_err(store_error)?;
        Ok(envelopes
            .into_iter()
            .map(|e| (e.sequence as i64, e.payload))
            .collect())
    }
}

/// What every appended event carries besides its payload: who appended it and, inside a
/// request, the request's id.
pub(crate) fn metadata(source: &'static str) -> HashMap<String, String> {
    let mut metadata = HashMap::from([("source".to_owned(), source.to_owned())]);
    if let Some(request_id) = crate::request_context::request_id() {
        metadata.insert("request_id".to_owned(), request_id);
    }
    metadata
}

/// Runs a provider call within what is left of the command's budget, and feeds the outcome
/// to the provider's breaker (a refusal is an answer, not an outage).
/// Each call is counted by provider, operation (the provider method) and outcome (`ok`,
/// `refused`, `not_sent`, `unknown`), and timed.
pub(crate) async fn bounded<T>(
    routed: &RoutedProvider,
    operation: &'static str,
    deadline: Instant,
    call: impl Future<Output = Result<T, ProviderError>>,
) -> Result<T, ProviderError> {
    let started = Instant::now();
    let remaining = deadline.saturating_duration_since(started);
    let result = match tokio::time::timeout(remaining, call).await {
        Ok(result) => result,
        Err(_) => Err(ProviderError::timeout(
            "the command's provider budget was spent",
        )),
    };
    let healthy = match &result {
        Ok(_) => true,
        Err(e) => !e.is_retryable(),
    };
    routed.breaker.record(healthy, Instant::now());
    let outcome = match &result {
        Ok(_) => "ok",
        Err(error) => match error.outcome() {
            CallOutcome::Refused => "refused",
            CallOutcome::NotSent => "not_sent",
            CallOutcome::Unknown => "unknown",
        },
    };
    measure::provider_call(routed, operation, outcome, started.elapsed());
    result
}

/// Retries an idempotent call (a read, or a write the provider dedupes by our id) with
/// exponential backoff and jitter, within the deadline and `tries_max`.
async fn retry_idempotent<T, F, Fut>(
    routed: &RoutedProvider,
    operation: &'static str,
    deadline: Instant,
    tries_max: u32,
    mut call: F,
) -> Result<T, ProviderError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ProviderError>>,
{
    let mut attempt: u32 = 0;
    loop {
        attempt += 1;
        match bounded(routed, operation, deadline, call()).await {
            Err(e) if e.is_retryable() && attempt < tries_max => {
                let base_ms = 50u64.saturating_mul(1 << attempt.min(6));
                let jitter_ms = rand::thread_rng().gen_range(0..=base_ms / 2);
                let pause = Duration::from_millis(base_ms + jitter_ms);
                if Instant::now() + pause >= deadline {
                    return Err(e);
                }
                tokio::time::sleep(pause).await;
            }
            other => return other,
        }
    }
}

fn provider_transaction(payment: &Payment) -> Result<String, CommandError> {
    payment
        .provider_transaction_id
        .clone()
        .ok_or(CommandError::Rejected(PaymentError::InvalidTransition {
            action: "change at the provider",
            status: payment.status,
        }))
}

fn refund_status(payment: &Payment, refund_id: RefundId) -> Result<RefundStatus, CommandError> {
    payment
        .refunds
        .get(&refund_id)
        .map(|r| r.status)
        .ok_or(CommandError::Rejected(PaymentError::RefundNotFound))
}

#[cfg(test)]
mod tests {
    use super::*;
    use connectors::IpAddress;
    use domain::Currency;

    fn request(customer: Customer) -> CreatePayment {
        CreatePayment {
            merchant_id: MerchantId::parse("merchant-a").unwrap(),
            idempotency_key: IdempotencyKey::parse("key-1").unwrap(),
            reference: Reference::parse("order-1").unwrap(),
            amount: Money::parse("129000.00", Currency::COP).unwrap(),
            payment_method: PaymentMethodDetails::Card {
                token: "tok_sandbox_approved".into(),
            },
            capture_mode: CaptureMode::Automatic,
            customer_email: None,
            customer,
            provider_preference: None,
            return_url: None,
        }
    }

    #[test]
    fn a_request_without_customer_keeps_the_fingerprint_it_had_before_customers() {
        // Taken from the code before `customer` existed: stored idempotency records hold
        // this value, and a retry across the upgrade must still match them.
        let key = FingerprintKey::test_default();
        assert!(key.matches(
            "5936b6a5a3086f4d91cbc7622c23ee55aa4fa5347108800142ede69c0e533e70",
            &request(Customer::default()).canonical()
        ));
    }

    #[test]
    fn every_customer_field_changes_the_fingerprint() {
        let bare = request(Customer::default()).canonical();
        let variants = [
            Customer {
                full_name: Some("Ana".into()),
                ..Customer::default()
            },
            Customer {
                phone: Some("+573001234567".into()),
                ..Customer::default()
            },
            Customer {
                document_number: Some("1999888777".into()),
                ..Customer::default()
            },
            Customer {
                ip_address: Some(IpAddress("190.24.8.77".parse().unwrap()).into()),
                ..Customer::default()
            },
            Customer {
                user_agent: Some("Mozilla/5.0".into()),
                ..Customer::default()
            },
            Customer {
                device_session_id: Some("abc".into()),
                ..Customer::default()
            },
        ];
        let mut seen = std::collections::HashSet::from([bare]);
        for customer in variants {
            let fingerprint = request(customer.clone()).canonical();
            assert!(seen.insert(fingerprint), "{customer:?} did not change it");
        }
    }
}
