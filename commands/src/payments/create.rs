//! Creating a payment: record the intent, then route it to a provider, falling back to the
//! next one on a retryable failure (each failure recorded as `ProviderAttemptFailed`).

use std::time::Instant;

use chrono::Utc;
use domain::{
    MerchantId, Payment, PaymentCommand, PaymentError, PaymentId, PaymentStatus, Reference,
};

use super::outcomes::outcome_of;
use super::{bounded, CommandError, CreatePayment, Executed, PaymentService};
use crate::providers::CreateTransaction;
use crate::router::RoutedProvider;

impl PaymentService {
    /// Creates a payment (or returns the one this Idempotency-Key already created) and submits
    /// it to a provider. Returns whether this call created it.
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
                    // The first call may have died before any provider answered; creating is
                    // keyed by our payment id at the provider, so submit again.
                    let candidates = self.candidates(&request);
                    return Ok((
                        self.submit(id, &request, candidates, existing).await?,
                        false,
                    ));
                }
                return Ok((existing, false));
            }
            Err(CommandError::Rejected(PaymentError::NotFound)) => {}
            Err(other) => return Err(other),
        }
        let method = request.payment_method.kind();
        let currency = request.amount.currency();
        if !self
            .router
            .any_supports(method, currency, request.capture_mode)
        {
            return Err(CommandError::NoProvider {
                method: method.as_str(),
                currency: currency.code(),
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
                    payment_method: method,
                    capture_mode: request.capture_mode,
                    provider: first.to_owned(),
                    request_fingerprint: fingerprint,
                    at: Utc::now(),
                },
                "api",
                Some(empty),
            )
            .await?;
        Ok((
            self.submit(id, &request, candidates, initiated).await?,
            true,
        ))
    }

    fn candidates(&self, request: &CreatePayment) -> Vec<&RoutedProvider> {
        self.router.candidates(
            request.provider_preference.as_deref(),
            request.payment_method.kind(),
            request.amount.currency(),
            request.capture_mode,
            Instant::now(),
        )
    }

    /// Offers the payment to each candidate provider in turn until one takes it, within the
    /// command's provider budget. `current`: the payment as the caller last saw it.
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
            customer_email: request.customer_email.clone(),
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
            if !routed.breaker.allow(Instant::now()) {
                continue; // another command took the half-open trial meanwhile
            }
            let attempt_deadline = deadline.min(Instant::now() + self.config.attempt_timeout);
            match bounded(
                routed,
                attempt_deadline,
                routed.provider.create_transaction(&call),
            )
            .await
            {
                Ok(transaction) => {
                    let recorded = self
                        .execute_from(
                            id,
                            PaymentCommand::RecordProviderTransaction {
                                provider: name.to_owned(),
                                provider_transaction_id: transaction.id.clone(),
                                next_action: transaction.next_action.clone(),
                                at: Utc::now(),
                            },
                            "api",
                            Some(current),
                        )
                        .await?;
                    // Some providers decide in the answer itself (no webhook will follow).
                    return match outcome_of(&transaction) {
                        Some(outcome) => {
                            let event_id = format!(
                                "{name}:{}:{}",
                                transaction.id,
                                transaction.status.as_str()
                            );
                            self.apply_outcome(
                                id,
                                recorded,
                                name,
                                event_id,
                                transaction.id,
                                outcome,
                            )
                            .await
                        }
                        None => Ok(recorded),
                    };
                }
                Err(error) => {
                    tracing::warn!(provider = name, kind = ?error.kind, "provider did not take the payment");
                    current = self
                        .execute_from(
                            id,
                            PaymentCommand::RecordProviderAttemptFailed {
                                provider: name.to_owned(),
                                kind: error.kind,
                                detail: error.detail.clone(),
                                at: Utc::now(),
                            },
                            "api",
                            Some(current),
                        )
                        .await?;
                    if !error.is_retryable() {
                        // A refusal is an answer: another provider would not change it.
                        return self.fail(id, "provider_rejected").await;
                    }
                    if Instant::now() >= deadline {
                        break;
                    }
                }
            }
        }
        self.fail(id, "provider_unavailable").await
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
