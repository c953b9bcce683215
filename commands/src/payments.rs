//! The command service: loads a payment's stream, lets the aggregate decide, appends, and
//! talks to the provider in the order that keeps money safe:
//! - create: `PaymentInitiated` is appended *before* the provider is called, so a crash
//!   after the call still leaves a payment to reconcile;
//! - capture and void: the aggregate decides first (dry run), then the provider, then the
//!   event: the provider refuses a second capture or a void after capture;
//! - refund: `RefundRequested` reserves the amount before the provider is called, so
//!   concurrent refunds can never together exceed what was captured.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use cqrs_es::{AggregateError, EventStore};
use domain::payment::RefundStatus;
use domain::{
    CaptureId, CaptureMode, IdempotencyKey, MerchantId, Money, Payment, PaymentCommand,
    PaymentError, PaymentEvent, PaymentId, PaymentStatus, Reference, RefundId,
};
use rand::Rng;
use sha2::{Digest, Sha256};
use sqlx::PgPool;

use crate::providers::{CreateTransaction, PaymentMethodDetails, PaymentProvider, ProviderError};
use crate::store::{payment_store, PaymentStore};
use crate::stripes::Stripes;

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
    /// Digest of everything the request asked for: the same key with another body is refused.
    /// Tokens and personal ids enter only as their digest.
    pub fn fingerprint(&self) -> String {
        let method_digest = hex::encode(Sha256::digest(self.payment_method.canonical().as_bytes()));
        let canonical = format!(
            "v1\n{}\n{}\n{}\n{}\n{}\n{:?}\n{}",
            self.merchant_id,
            self.reference,
            self.amount.amount(),
            self.amount.currency(),
            self.payment_method.kind().as_str(),
            self.capture_mode,
            method_digest
        );
        hex::encode(Sha256::digest(canonical.as_bytes()))
    }
}

/// What the provider said about a transaction, in any provider's webhook.
#[derive(Debug, Clone, PartialEq)]
pub enum ProviderOutcome {
    Authorized { amount: Money },
    Approved { amount: Money },
    Declined { reason: String },
}

#[derive(Debug, Clone)]
pub struct RefundOutcome {
    pub executed: Executed,
    pub refund_id: RefundId,
    pub status: RefundStatus,
    /// Why the provider refused, when it did.
    pub failure: Option<String>,
}

pub struct PaymentService {
    store: PaymentStore,
    pool: PgPool,
    provider: Arc<dyn PaymentProvider>,
    stripes: Stripes,
}

impl PaymentService {
    pub fn new(pool: PgPool, provider: Arc<dyn PaymentProvider>) -> Self {
        Self {
            store: payment_store(pool.clone()),
            pool,
            provider,
            stripes: Stripes::new(STRIPE_COUNT),
        }
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
        Ok(Executed {
            payment,
            version: context.current_sequence as i64,
            appended: 0,
        })
    }

    /// Loads, decides and appends, retrying a bounded number of times when another writer
    /// appended first.
    #[tracing::instrument(skip(self, command), fields(command = command_name(&command)))]
    async fn execute(
        &self,
        id: PaymentId,
        command: PaymentCommand,
        source: &'static str,
    ) -> Result<Executed, CommandError> {
        let aggregate_id = id.to_string();
        for attempt in 0..=CONFLICT_RETRY_MAX {
            let context = self
                .store
                .load_aggregate(&aggregate_id)
                .await
                .map_err(store_error)?;
            let base_version = context.current_sequence as i64;
            let events = context.aggregate.decide(command.clone())?;
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
            let metadata = HashMap::from([("source".to_owned(), source.to_owned())]);
            match self.store.commit(events, context, metadata).await {
                Ok(committed) => {
                    debug_assert_eq!(committed.len(), appended);
                    return Ok(Executed {
                        payment: after,
                        version: base_version + appended as i64,
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

    /// Creates a payment (or returns the one this Idempotency-Key already created) and submits
    /// it to the provider. Returns whether this call created it.
    #[tracing::instrument(skip(self, request), fields(merchant = %request.merchant_id))]
    pub async fn create(&self, request: CreatePayment) -> Result<(Executed, bool), CommandError> {
        let id = PaymentId::derive(&request.merchant_id, &request.idempotency_key);
        let fingerprint = request.fingerprint();
        let _serial = self.stripes.lock(id.as_uuid()).await;
        match self.load(id, None).await {
            Ok(existing) => {
                if existing.payment.request_fingerprint != fingerprint {
                    return Err(PaymentError::IdempotencyMismatch.into());
                }
                if existing.payment.status == PaymentStatus::Pending
                    && existing.payment.provider_transaction_id.is_none()
                {
                    // The first call may have died before reaching the provider; creating
                    // is idempotent there (keyed by payment id), so submit again.
                    return Ok((self.submit(id, &request).await?, false));
                }
                return Ok((existing, false));
            }
            Err(CommandError::Rejected(PaymentError::NotFound)) => {}
            Err(other) => return Err(other),
        }
        self.reserve_reference(&request.merchant_id, &request.reference, id)
            .await?;
        self.execute(
            id,
            PaymentCommand::Initiate {
                payment_id: id,
                merchant_id: request.merchant_id.clone(),
                reference: request.reference.clone(),
                amount: request.amount,
                payment_method: request.payment_method.kind(),
                capture_mode: request.capture_mode,
                provider: self.provider.name().to_owned(),
                request_fingerprint: fingerprint,
                at: Utc::now(),
            },
            "api",
        )
        .await?;
        Ok((self.submit(id, &request).await?, true))
    }

    async fn submit(
        &self,
        id: PaymentId,
        request: &CreatePayment,
    ) -> Result<Executed, CommandError> {
        let call = CreateTransaction {
            payment_id: id,
            reference: request.reference.to_string(),
            amount: request.amount,
            method: request.payment_method.clone(),
            capture_mode: request.capture_mode,
            customer_email: request.customer_email.clone(),
            return_url: None,
        };
        match self.provider.create_transaction(&call).await {
            // The outcome arrives by webhook.
            Ok(_pending) => self.load(id, None).await,
            Err(error) => {
                tracing::warn!(provider = self.provider.name(), kind = ?error.kind, "provider call failed");
                self.execute(
                    id,
                    PaymentCommand::RecordProviderAttemptFailed {
                        provider: self.provider.name().to_owned(),
                        kind: error.kind,
                        detail: error.detail.clone(),
                        at: Utc::now(),
                    },
                    "api",
                )
                .await?;
                // One provider so far: nothing to fall back to.
                let reason = if error.kind.is_retryable() {
                    "provider_unavailable"
                } else {
                    "provider_rejected"
                };
                self.execute(
                    id,
                    PaymentCommand::Fail {
                        reason: reason.to_owned(),
                        at: Utc::now(),
                    },
                    "api",
                )
                .await
            }
        }
    }

    /// Claims `reference` for this payment; another payment holding it is a `409`.
    #[tracing::instrument(skip(self))]
    async fn reserve_reference(
        &self,
        merchant: &MerchantId,
        reference: &Reference,
        id: PaymentId,
    ) -> Result<(), CommandError> {
        let holder: uuid::Uuid = sqlx::query_scalar(
            "INSERT INTO merchant_references (merchant_id, reference, payment_id)
             VALUES ($1, $2, $3)
             ON CONFLICT (merchant_id, reference)
             DO UPDATE SET merchant_id = EXCLUDED.merchant_id
             RETURNING payment_id",
        )
        .bind(merchant.as_str())
        .bind(reference.as_str())
        .bind(id.as_uuid())
        .fetch_one(&self.pool)
        .await
        .map_err(|e| CommandError::Store(e.to_string()))?;
        if holder == id.as_uuid() {
            Ok(())
        } else {
            Err(CommandError::ReferenceTaken)
        }
    }

    /// Captures an authorized payment, all of it unless `amount` says less.
    #[tracing::instrument(skip(self))]
    pub async fn capture(
        &self,
        id: PaymentId,
        scope: Option<&MerchantId>,
        key: &IdempotencyKey,
        amount: Option<Money>,
    ) -> Result<Executed, CommandError> {
        let _serial = self.stripes.lock(id.as_uuid()).await;
        let current = self.load(id, scope).await?;
        let capture_id = CaptureId::derive(id, key);
        if current.payment.capture_id == Some(capture_id) && amount.is_none() {
            return Ok(current);
        }
        // Without an amount: all that was authorized (zero, and so refused, if nothing was).
        let amount = amount.unwrap_or_else(|| current.payment.authorized_money());
        let command = PaymentCommand::Capture {
            capture_id,
            amount,
            at: Utc::now(),
        };
        if current.payment.decide(command.clone())?.is_empty() {
            return Ok(current);
        }
        let transaction = provider_transaction(&current.payment)?;
        self.provider
            .capture(&transaction, capture_id, amount)
            .await
            .map_err(CommandError::Provider)?;
        self.execute(id, command, "api").await
    }

    #[tracing::instrument(skip(self))]
    pub async fn void(
        &self,
        id: PaymentId,
        scope: Option<&MerchantId>,
    ) -> Result<Executed, CommandError> {
        let _serial = self.stripes.lock(id.as_uuid()).await;
        let current = self.load(id, scope).await?;
        let command = PaymentCommand::Void { at: Utc::now() };
        if current.payment.decide(command.clone())?.is_empty() {
            return Ok(current);
        }
        let transaction = provider_transaction(&current.payment)?;
        self.provider
            .void(&transaction)
            .await
            .map_err(CommandError::Provider)?;
        self.execute(id, command, "api").await
    }

    /// Refunds part or all of what was captured. A repeat of the same key returns the first
    /// result; a refund the provider has not answered stays `REQUESTED` (reserved) and is
    /// retried by the next repeat.
    #[tracing::instrument(skip(self))]
    pub async fn refund(
        &self,
        id: PaymentId,
        scope: Option<&MerchantId>,
        key: &IdempotencyKey,
        amount: Money,
        reason: Option<String>,
    ) -> Result<RefundOutcome, CommandError> {
        let refund_id = RefundId::derive(id, key);
        let _serial = self.stripes.lock(id.as_uuid()).await;
        self.load(id, scope).await?;
        let requested = self
            .execute(
                id,
                PaymentCommand::RequestRefund {
                    refund_id,
                    amount,
                    reason,
                    at: Utc::now(),
                },
                "api",
            )
            .await?;
        let status = refund_status(&requested.payment, refund_id)?;
        if status != RefundStatus::Requested {
            return Ok(RefundOutcome {
                executed: requested,
                refund_id,
                status,
                failure: None,
            });
        }
        let transaction = provider_transaction(&requested.payment)?;
        match self.provider.refund(&transaction, refund_id, amount).await {
            Ok(refund) => {
                let executed = self
                    .execute(
                        id,
                        PaymentCommand::CompleteRefund {
                            refund_id,
                            provider_refund_id: refund.id,
                            at: Utc::now(),
                        },
                        "api",
                    )
                    .await?;
                Ok(RefundOutcome {
                    executed,
                    refund_id,
                    status: RefundStatus::Succeeded,
                    failure: None,
                })
            }
            Err(error) if !error.kind.is_retryable() => {
                let executed = self
                    .execute(
                        id,
                        PaymentCommand::FailRefund {
                            refund_id,
                            reason: error.detail.clone(),
                            at: Utc::now(),
                        },
                        "api",
                    )
                    .await?;
                Ok(RefundOutcome {
                    executed,
                    refund_id,
                    status: RefundStatus::Failed,
                    failure: Some(error.detail),
                })
            }
            // The provider may or may not have refunded: keep the reservation, say pending.
            Err(error) => {
                tracing::warn!(kind = ?error.kind, "refund answer unknown; kept as requested");
                Ok(RefundOutcome {
                    executed: requested,
                    refund_id,
                    status: RefundStatus::Requested,
                    failure: Some(error.detail),
                })
            }
        }
    }

    /// Appends what a provider's (verified) notification says. A redelivery, recognised by
    /// its provider event id, appends nothing.
    #[tracing::instrument(skip(self))]
    pub async fn record_provider_outcome(
        &self,
        id: PaymentId,
        provider_event_id: String,
        provider_transaction_id: String,
        outcome: ProviderOutcome,
    ) -> Result<Executed, CommandError> {
        let at = Utc::now();
        let command = match outcome {
            ProviderOutcome::Authorized { amount } => PaymentCommand::Authorize {
                provider_event_id,
                provider_transaction_id,
                amount,
                at,
            },
            ProviderOutcome::Approved { amount } => PaymentCommand::Approve {
                provider_event_id,
                provider_transaction_id,
                amount,
                at,
            },
            ProviderOutcome::Declined { reason } => PaymentCommand::Decline {
                provider_event_id,
                provider_transaction_id,
                reason,
                at,
            },
        };
        let _serial = self.stripes.lock(id.as_uuid()).await;
        self.execute(id, command, "webhook").await
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

fn command_name(command: &PaymentCommand) -> &'static str {
    match command {
        PaymentCommand::Initiate { .. } => "initiate",
        PaymentCommand::RecordProviderAttemptFailed { .. } => "record_provider_attempt_failed",
        PaymentCommand::Fail { .. } => "fail",
        PaymentCommand::Authorize { .. } => "authorize",
        PaymentCommand::Approve { .. } => "approve",
        PaymentCommand::Decline { .. } => "decline",
        PaymentCommand::Capture { .. } => "capture",
        PaymentCommand::Void { .. } => "void",
        PaymentCommand::RequestRefund { .. } => "request_refund",
        PaymentCommand::CompleteRefund { .. } => "complete_refund",
        PaymentCommand::FailRefund { .. } => "fail_refund",
    }
}
