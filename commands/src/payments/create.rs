//! Creating a payment: record the intent (`PaymentInitiated` with the first
//! `ProviderAttemptStarted`, one append), then call the provider. A refusal fails the
//! payment; a request provably never processed falls back to the next provider; a lost answer
//! keeps the payment with its provider (`ProviderOutcomeUnknown`) until the provider says.

use std::time::{Duration, Instant};

use chrono::Utc;
use domain::{
    MerchantId, Payment, PaymentCommand, PaymentError, PaymentId, PaymentStatus, Reference,
};

use super::outcomes::outcome_of;
use super::resolve::Lookup;
use super::{bounded, CommandError, CreatePayment, Executed, PaymentService};
use crate::router::{Need, RoutedProvider};
use connectors::{CallOutcome, CreateTransaction, ProviderError, ProviderTransaction};

/// How often a repeat polls the stream while another process's attempt is in flight.
const ATTEMPT_WAIT_POLL: Duration = Duration::from_millis(50);
/// Bound on those polls (the lease ends them sooner).
const ATTEMPT_WAIT_POLLS_MAX: u32 = 1_200;
/// Time after an attempt's call bound for its answer to be appended.
const ATTEMPT_APPEND_GRACE: Duration = Duration::from_secs(5);

/// What an attempt's lease lapsing says: its answer, if any, was lost.
pub(super) fn lease_lapsed() -> ProviderError {
    ProviderError::timeout("no outcome was recorded within the attempt's lease")
}

enum Waited {
    /// The attempt has an outcome (or the payment moved on).
    Settled(Executed),
    /// The attempt is open with no one to answer it.
    Lapsed(Executed),
}

impl PaymentService {
    /// Creates a payment (or returns the one this Idempotency-Key already created) and submits
    /// it to a provider. Returns whether this call created it.
    #[tracing::instrument(skip(self, request), fields(merchant = %request.merchant_id))]
    pub async fn create(&self, request: CreatePayment) -> Result<(Executed, bool), CommandError> {
        let id = PaymentId::derive(&request.merchant_id, &request.idempotency_key);
        let canonical = request.canonical();
        let key = &self.config.fingerprint_key;
        let fingerprint = key.fingerprint(&canonical);
        let _serial = self.stripes.lock(id.as_uuid()).await;
        match self.load(id, None).await {
            Ok(existing) => {
                if !key.matches(&existing.payment.request_fingerprint, &canonical) {
                    return Err(PaymentError::IdempotencyMismatch.into());
                }
                return Ok((self.resume(id, &request, existing).await?, false));
            }
            Err(CommandError::Rejected(PaymentError::NotFound)) => {}
            Err(other) => return Err(other),
        }
        let need = need_of(&request);
        if !self.router.any_supports(need) {
            return Err(CommandError::NoProvider {
                method: need.method.as_str(),
                currency: need.currency.code(),
                capture: request.capture_mode,
            });
        }
        let candidates = self.candidates(&request);
        let first = candidates
            .first()
            .map(|p| p.provider.name())
            .ok_or(CommandError::ProvidersUnavailable)?;
        self.reserve_reference(&request.merchant_id, &request.reference, id)
            .await?;
        // The stream was just seen empty (under this node's lock for the payment): decide
        // on that; another node creating it meanwhile makes the append conflict.
        let empty = Executed {
            payment: Payment::default(),
            version: 0,
            appended: 0,
        };
        let initiated = self
            .execute_from(
                id,
                PaymentCommand::Initiate {
                    payment_id: id,
                    merchant_id: request.merchant_id.clone(),
                    reference: request.reference.clone(),
                    amount: request.amount,
                    payment_method: need.method,
                    capture_mode: request.capture_mode,
                    provider: first.to_owned(),
                    request_fingerprint: fingerprint,
                    at: Utc::now(),
                },
                "api",
                Some(empty),
            )
            .await?;
        if initiated.appended == 0 {
            // Another process created it first and holds its first attempt: never a second
            // call to the provider; wait for that one's outcome instead.
            return Ok((self.resume(id, &request, initiated).await?, false));
        }
        Ok((
            self.submit(id, &request, candidates, initiated).await?,
            true,
        ))
    }

    /// A repeat of a create whose payment exists: answer it as it stands, wait for an attempt
    /// still in flight elsewhere, or, for an attempt whose answer was lost, ask the provider
    /// by reference before anything is sent again.
    async fn resume(
        &self,
        id: PaymentId,
        request: &CreatePayment,
        existing: Executed,
    ) -> Result<Executed, CommandError> {
        let payment = &existing.payment;
        if payment.status != PaymentStatus::Pending || payment.provider_transaction_id.is_some() {
            return Ok(existing);
        }
        let Some(open) = payment.attempt.clone() else {
            // Every attempt so far ended unsent and the payment is not failed yet (a crash in
            // between): offer it to the providers not tried.
            let candidates = self.candidates(request);
            return self.submit(id, request, candidates, existing).await;
        };
        let current = if open.outcome_unknown {
            existing
        } else {
            match self.wait_for_attempt(id, existing).await? {
                Waited::Settled(current) => return Ok(current),
                Waited::Lapsed(current) => current,
            }
        };
        let Some(routed) = self.router.get(&open.provider) else {
            return Ok(current);
        };
        let (current, resend) = match self.look_up_attempt(id, routed, current).await? {
            Lookup::Settled(current) => return Ok(current),
            // Provably not at the provider: the same attempt may be sent again.
            Lookup::NotAtProvider(current) => (current, true),
            // Unknown at the provider: sent again only where the provider answers a repeat
            // with the first transaction (its idempotency key, still kept).
            Lookup::Unanswered(current) => {
                let window = routed
                    .provider
                    .create_idempotency_window()
                    .and_then(|w| chrono::Duration::from_std(w).ok());
                let kept = match (window, current.payment.created_at) {
                    (Some(window), Some(created_at)) => Utc::now() < created_at + window,
                    _ => false,
                };
                (current, kept)
            }
        };
        if !resend {
            return Ok(current);
        }
        let resent = self
            .execute_or_reload(
                id,
                PaymentCommand::StartAttempt {
                    provider: open.provider.clone(),
                    at: Utc::now(),
                },
                "api",
                Some(current),
            )
            .await?;
        if resent.appended == 0 {
            return Ok(resent); // another process re-sent it first
        }
        self.submit(id, request, vec![routed], resent).await
    }

    /// Polls the stream, bounded by the attempt's lease, until the open attempt has an
    /// outcome (`Settled`) or its lease lapses (`Lapsed`: the process sending it died, or
    /// its answer was lost and not yet recorded).
    async fn wait_for_attempt(
        &self,
        id: PaymentId,
        mut current: Executed,
    ) -> Result<Waited, CommandError> {
        for _ in 0..ATTEMPT_WAIT_POLLS_MAX {
            let Some(open) = current.payment.attempt.as_ref() else {
                return Ok(Waited::Settled(current));
            };
            if open.outcome_unknown {
                return Ok(Waited::Lapsed(current));
            }
            let lease_end = open.started_at + self.attempt_lease();
            if Utc::now() >= lease_end {
                // Nobody will record this attempt's answer: say it is unknown first.
                let provider = open.provider.clone();
                let current = self
                    .record_failed_call(id, &provider, &lease_lapsed(), current, "api")
                    .await?;
                return Ok(if current.payment.attempt.is_some() {
                    Waited::Lapsed(current)
                } else {
                    Waited::Settled(current)
                });
            }
            tokio::time::sleep(ATTEMPT_WAIT_POLL).await;
            current = self.load(id, None).await?;
        }
        Ok(Waited::Settled(current))
    }

    /// How long an attempt is presumed in flight after its intent: the call's own bound, and
    /// time to append its answer.
    pub(super) fn attempt_lease(&self) -> chrono::Duration {
        let bound = self.config.attempt_timeout.min(self.config.provider_budget);
        chrono::Duration::from_std(bound + ATTEMPT_APPEND_GRACE)
            .unwrap_or_else(|_| chrono::Duration::seconds(60))
    }

    /// The providers to offer the payment to, in order: the merchant's preference (or the
    /// customer's saved method's provider), then the available ones by priority. A saved
    /// method's source exists only at its provider: no other is offered it.
    fn candidates(&self, request: &CreatePayment) -> Vec<&RoutedProvider> {
        let mut candidates = self.router.candidates(
            request.provider_preference.as_deref(),
            need_of(request),
            Instant::now(),
        );
        if request.payment_method.saved_source().is_some() {
            candidates
                .retain(|p| Some(p.provider.name()) == request.provider_preference.as_deref());
        }
        candidates
    }

    /// Offers the payment to each candidate provider in turn until one takes it, within the
    /// command's provider budget. Each offer is an intent in the stream before the call;
    /// only a request the provider provably never processed falls back to the next one.
    /// `current`: the payment as the caller last saw it.
    async fn submit(
        &self,
        id: PaymentId,
        request: &CreatePayment,
        candidates: Vec<&RoutedProvider>,
        mut current: Executed,
    ) -> Result<Executed, CommandError> {
        let deadline = Instant::now() + self.config.provider_budget;
        let call = CreateTransaction {
            payment_id: id,
            reference: request.reference.to_string(),
            amount: request.amount,
            method: request.payment_method.clone(),
            capture_mode: request.capture_mode,
            customer_email: request
                .customer_email
                .clone()
                .map(secrecy::SecretString::from),
            customer: request.customer.clone(),
            return_url: Some(
                request
                    .return_url
                    .clone()
                    .unwrap_or_else(|| self.config.default_return_url.to_owned()),
            ),
        };
        for routed in candidates {
            let name = routed.provider.name();
            let open_here = current
                .payment
                .attempt
                .as_ref()
                .is_some_and(|a| a.provider == name);
            if !open_here {
                if current.payment.attempt.is_some()
                    || current.payment.providers_tried.contains(name)
                {
                    continue;
                }
                if !routed.breaker.allow(Instant::now()) {
                    continue; // another command took the half-open trial meanwhile
                }
                current = self
                    .execute_or_reload(
                        id,
                        PaymentCommand::StartAttempt {
                            provider: name.to_owned(),
                            at: Utc::now(),
                        },
                        "api",
                        Some(current),
                    )
                    .await?;
                if current.appended == 0 {
                    return Ok(current); // moved on meanwhile (another process)
                }
            } else if !routed.breaker.allow(Instant::now()) {
                let error = ProviderError::connection("circuit breaker open").never_sent();
                current = self
                    .record_failed_call(id, name, &error, current, "api")
                    .await?;
                continue;
            }
            let attempt_deadline = deadline.min(Instant::now() + self.config.attempt_timeout);
            match bounded(
                routed,
                "create_transaction",
                attempt_deadline,
                routed.provider.create_transaction(&call),
            )
            .await
            {
                Ok(transaction) => {
                    return self.record_created(id, name, transaction, current).await;
                }
                Err(error) => {
                    tracing::warn!(provider = name, kind = ?error.kind, outcome = ?error.outcome(), "provider did not take the payment");
                    current = self
                        .record_failed_call(id, name, &error, current, "api")
                        .await?;
                    match error.outcome() {
                        CallOutcome::Unknown => return Ok(current),
                        // A refusal is an answer: another provider would not change it.
                        CallOutcome::Refused => return self.fail(id, "provider_rejected").await,
                        CallOutcome::NotSent => {
                            if current.payment.status != PaymentStatus::Pending {
                                return Ok(current);
                            }
                            if Instant::now() >= deadline {
                                break;
                            }
                        }
                    }
                }
            }
        }
        if current.payment.attempt.is_some() {
            return Ok(current);
        }
        self.fail(id, "provider_unavailable").await
    }

    /// The provider named its transaction: record it, and the outcome when the answer
    /// already decides (no webhook will follow).
    pub(super) async fn record_created(
        &self,
        id: PaymentId,
        provider: &'static str,
        transaction: ProviderTransaction,
        current: Executed,
    ) -> Result<Executed, CommandError> {
        let recorded = self
            .execute_or_reload(
                id,
                PaymentCommand::RecordProviderTransaction {
                    provider: provider.to_owned(),
                    provider_transaction_id: transaction.id.clone(),
                    next_action: transaction.next_action.clone(),
                    at: Utc::now(),
                },
                "api",
                Some(current),
            )
            .await?;
        if recorded.payment.provider_transaction_id.as_deref() != Some(transaction.id.as_str()) {
            return Ok(recorded); // a webhook recorded the outcome first
        }
        match outcome_of(&transaction) {
            Some(outcome) => {
                let event_id = format!(
                    "{provider}:{}:{}",
                    transaction.id,
                    transaction.status.as_str()
                );
                match self
                    .apply_outcome(id, recorded, provider, event_id, transaction.id, outcome)
                    .await
                {
                    Err(CommandError::Rejected(PaymentError::InvalidTransition { .. })) => {
                        self.load(id, None).await
                    }
                    other => other,
                }
            }
            None => Ok(recorded),
        }
    }

    /// Records a failed provider call on its open attempt: `ProviderOutcomeUnknown` when the
    /// provider may have acted (the attempt stays open), else `ProviderAttemptFailed`. A
    /// webhook that closed the attempt meanwhile leaves the stream's answer standing.
    pub(super) async fn record_failed_call(
        &self,
        id: PaymentId,
        provider: &str,
        error: &ProviderError,
        current: Executed,
        source: &'static str,
    ) -> Result<Executed, CommandError> {
        let (provider, kind, detail, at) = (
            provider.to_owned(),
            error.kind,
            error.detail.clone(),
            Utc::now(),
        );
        let command = match error.outcome() {
            CallOutcome::Unknown => PaymentCommand::RecordProviderOutcomeUnknown {
                provider,
                kind,
                detail,
                at,
            },
            CallOutcome::Refused | CallOutcome::NotSent => {
                PaymentCommand::RecordProviderAttemptFailed {
                    provider,
                    kind,
                    detail,
                    at,
                }
            }
        };
        self.execute_or_reload(id, command, source, Some(current))
            .await
    }

    async fn fail(&self, id: PaymentId, reason: &str) -> Result<Executed, CommandError> {
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

    /// Claims `reference` for this payment; another payment holding it is a `409`.
    #[tracing::instrument(skip(self))]
    async fn reserve_reference(
        &self,
        merchant: &MerchantId,
        reference: &Reference,
        id: PaymentId,
    ) -> Result<(), CommandError> {
        let store_error = |e: sqlx::Error| CommandError::Store(e.to_string());
        // Committed without waiting for its WAL flush: the `PaymentInitiated` commit that
        // follows waits for the flush of everything before it, this row included. A crash
        // before that can lose only a reservation no payment uses yet (a retry with the same
        // key takes it again), which a synchronous commit could leave behind as well.
        // `set_config(.., true)` applies to this statement's own transaction: one round trip.
        let holder: uuid::Uuid = sqlx::query_scalar(
            "INSERT INTO merchant_references (merchant_id, reference, payment_id)
             SELECT $1, $2, $3 FROM set_config('synchronous_commit', 'off', true)
             ON CONFLICT (merchant_id, reference)
             DO UPDATE SET merchant_id = EXCLUDED.merchant_id
             RETURNING payment_id",
        )
        .bind(merchant.as_str())
        .bind(reference.as_str())
        .bind(id.as_uuid())
        .fetch_one(&self.pool)
        .await
        .map_err(store_error)?;
        if holder == id.as_uuid() {
            Ok(())
        } else {
            Err(CommandError::ReferenceTaken)
        }
    }
}

fn need_of(request: &CreatePayment) -> Need {
    Need {
        method: request.payment_method.kind(),
        currency: request.amount.currency(),
        capture: request.capture_mode,
        saved: request.payment_method.saved_source().is_some(),
    }
}
