//! Resolving intents that have no outcome: the provider is asked what happened (by
//! transaction id, else by the reference the create was sent with) and the answer is
//! appended. Calls that the provider deduplicates by our id (capture, void, refund,
//! compensation) are sent again with the same id until the provider answers. An intent still
//! open past the review horizon is flagged `PaymentNeedsReview`.

use std::time::{Duration, Instant};

use chrono::Utc;
use domain::payment::{Compensation, RefundStatus};
use domain::{PaymentCommand, PaymentId, PaymentStatus, RefundId};

use super::create::lease_lapsed;
use super::{retry_idempotent, CommandError, Executed, PaymentService};
use crate::router::RoutedProvider;
use connectors::ProviderError;

/// What asking a provider by reference found.
pub(super) enum Lookup {
    /// The provider holds the attempt's transaction: it is recorded.
    Settled(Executed),
    /// The provider holds no transaction for the attempt.
    NotAtProvider(Executed),
    /// No answer (the provider offers no lookup, or did not answer): try again later.
    Unanswered(Executed),
}

impl PaymentService {
    /// Asks the attempt's provider for the transaction by reference, and records it if found.
    pub(super) async fn look_up_attempt(
        &self,
        id: PaymentId,
        routed: &RoutedProvider,
        current: Executed,
    ) -> Result<Lookup, CommandError> {
        if !routed.provider.supports_lookup() {
            return Ok(Lookup::Unanswered(current));
        }
        let reference = current
            .payment
            .reference
            .as_ref()
            .map(|r| r.as_str().to_owned())
            .unwrap_or_default();
        let deadline = Instant::now() + self.config.provider_budget;
        let found = retry_idempotent(
            routed,
            "find_transaction",
            deadline,
            self.config.idempotent_tries_max,
            || routed.provider.find_transaction(id, &reference),
        )
        .await;
        match found {
            Ok(Some(transaction)) => {
                let name = routed.provider.name();
                Ok(Lookup::Settled(
                    self.record_created(id, name, transaction, current).await?,
                ))
            }
            Ok(None) => Ok(Lookup::NotAtProvider(current)),
            Err(error) => {
                tracing::warn!(provider = routed.provider.name(), %error, "lookup by reference failed");
                Ok(Lookup::Unanswered(current))
            }
        }
    }

    /// Resolves every open intent of one payment it can, and flags for review those open
    /// longer than `review_after`. Called by the reconciler.
    #[tracing::instrument(skip(self))]
    pub async fn resolve(
        &self,
        id: PaymentId,
        review_after: Duration,
    ) -> Result<Executed, CommandError> {
        let _serial = self.stripes.lock(id.as_uuid()).await;
        let mut current = self.load(id, None).await?;
        current = self.resolve_attempt(id, current).await?;
        if current.payment.status == PaymentStatus::Pending
            && current.payment.provider_transaction_id.is_some()
        {
            current = self
                .settled(id, self.sync_locked(id, current).await)
                .await?;
        }
        let step = self.resolve_capture(id, current).await;
        current = self.settled(id, step).await?;
        let step = self.resolve_void(id, current).await;
        current = self.settled(id, step).await?;
        current = self.resolve_refunds(id, current).await?;
        current = self.compensate_orphans(id, current).await?;
        self.flag_for_review(id, current, review_after).await
    }

    /// A provider that did not answer one intent must not stop the others: its error leaves
    /// the intent open for the next round.
    async fn settled(
        &self,
        id: PaymentId,
        step: Result<Executed, CommandError>,
    ) -> Result<Executed, CommandError> {
        match step {
            Err(CommandError::Provider(error)) => {
                tracing::warn!(payment = %id, %error, "intent not resolved this round");
                self.load(id, None).await
            }
            other => other,
        }
    }

    async fn resolve_attempt(
        &self,
        id: PaymentId,
        current: Executed,
    ) -> Result<Executed, CommandError> {
        let Some(open) = current.payment.attempt.clone() else {
            return self.fail_unreached(id, current).await;
        };
        if !open.outcome_unknown && Utc::now() < open.started_at + self.attempt_lease() {
            return Ok(current); // its call may still be running
        }
        let Some(routed) = self.router.get(&open.provider) else {
            return Ok(current);
        };
        let current = if open.outcome_unknown {
            current
        } else {
            self.record_failed_call(id, &open.provider, &lease_lapsed(), current, "resolver")
                .await?
        };
        match self.look_up_attempt(id, routed, current).await? {
            Lookup::Settled(current) | Lookup::Unanswered(current) => Ok(current),
            // A request still within its lease may yet reach the provider: ask again later.
            Lookup::NotAtProvider(current)
                if Utc::now() < open.started_at + self.attempt_lease() =>
            {
                Ok(current)
            }
            Lookup::NotAtProvider(current) => {
                // The provider never got it, and without the customer's method details the
                // resolver cannot send it: the payment fails (a late transaction would be an
                // orphan, compensated).
                let not_there =
                    ProviderError::connection("the provider holds no transaction for the attempt")
                        .never_sent();
                let failed = self
                    .record_failed_call(id, &open.provider, &not_there, current, "resolver")
                    .await?;
                self.fail_not_reached(id, failed).await
            }
        }
    }

    /// A pending payment whose every attempt ended provably unsent, with none open (a crash
    /// between one attempt's failure and the next): once no create can still be at work on
    /// it, it fails, since the resolver has no customer method details to send anywhere.
    async fn fail_unreached(
        &self,
        id: PaymentId,
        current: Executed,
    ) -> Result<Executed, CommandError> {
        let payment = &current.payment;
        let idle = payment
            .updated_at
            .is_some_and(|at| at + self.attempt_lease() <= Utc::now());
        if payment.status != PaymentStatus::Pending
            || payment.provider_transaction_id.is_some()
            || !idle
        {
            return Ok(current);
        }
        self.fail_not_reached(id, current).await
    }

    /// No provider got the payment and none is left to offer it to: it fails.
    async fn fail_not_reached(
        &self,
        id: PaymentId,
        current: Executed,
    ) -> Result<Executed, CommandError> {
        self.execute_from(
            id,
            PaymentCommand::Fail {
                reason: "provider_not_reached".to_owned(),
                at: Utc::now(),
            },
            "resolver",
            Some(current),
        )
        .await
    }

    /// A capture asked and not answered: the provider's view decides; a capture it has not
    /// made yet is sent again with the same id.
    async fn resolve_capture(
        &self,
        id: PaymentId,
        current: Executed,
    ) -> Result<Executed, CommandError> {
        let Some(pending) = current.payment.pending_capture.clone() else {
            return Ok(current);
        };
        let command = PaymentCommand::Capture {
            capture_id: pending.capture_id,
            amount: pending.amount,
            fee: pending.fee,
            at: Utc::now(),
        };
        self.complete_capture(id, current, command, pending.capture_id, pending.amount)
            .await
    }

    async fn resolve_void(
        &self,
        id: PaymentId,
        current: Executed,
    ) -> Result<Executed, CommandError> {
        if current.payment.void_requested_at.is_none() {
            return Ok(current);
        }
        self.complete_void(id, current).await
    }

    async fn resolve_refunds(
        &self,
        id: PaymentId,
        mut current: Executed,
    ) -> Result<Executed, CommandError> {
        let open: Vec<(RefundId, domain::Money)> = current
            .payment
            .refunds
            .iter()
            .filter(|(_, r)| r.status == RefundStatus::Requested)
            .map(|(id, r)| (*id, r.amount))
            .collect();
        for (refund_id, amount) in open {
            current = self
                .complete_refund(id, current, refund_id, amount)
                .await?
                .executed;
        }
        Ok(current)
    }

    /// Gives back what providers took for transactions the payment does not use: a void of a
    /// hold, a refund of a capture, keyed by the orphan so a repeat is the same refund.
    pub(super) async fn compensate_orphans(
        &self,
        id: PaymentId,
        mut current: Executed,
    ) -> Result<Executed, CommandError> {
        let owed: Vec<_> = current
            .payment
            .orphans
            .values()
            .filter(|o| o.owes_compensation())
            .cloned()
            .collect();
        for orphan in owed {
            let Some(routed) = self.router.get(&orphan.provider) else {
                continue;
            };
            let deadline = Instant::now() + self.config.provider_budget;
            let answer = match orphan.compensation {
                Some(Compensation::Void) => retry_idempotent(
                    routed,
                    "void",
                    deadline,
                    self.config.idempotent_tries_max,
                    || routed.provider.void(&orphan.provider_transaction_id),
                )
                .await
                .map(|()| orphan.provider_transaction_id.clone()),
                Some(Compensation::Refund) => {
                    let refund_id =
                        RefundId::derive_for_orphan(id, &orphan.provider_transaction_id);
                    retry_idempotent(
                        routed,
                        "refund",
                        deadline,
                        self.config.idempotent_tries_max,
                        || {
                            routed.provider.refund(
                                &orphan.provider_transaction_id,
                                refund_id,
                                orphan.amount,
                            )
                        },
                    )
                    .await
                    .map(|refund| refund.id)
                }
                None => continue,
            };
            match answer {
                Ok(reference) => {
                    current = self
                        .execute_from(
                            id,
                            PaymentCommand::CompleteCompensation {
                                provider: orphan.provider.clone(),
                                provider_transaction_id: orphan.provider_transaction_id.clone(),
                                provider_reference: reference,
                                at: Utc::now(),
                            },
                            "resolver",
                            Some(current),
                        )
                        .await?;
                }
                Err(error) => {
                    tracing::warn!(provider = %orphan.provider, %error, "orphan compensation not done yet");
                }
            }
        }
        Ok(current)
    }

    async fn flag_for_review(
        &self,
        id: PaymentId,
        current: Executed,
        review_after: Duration,
    ) -> Result<Executed, CommandError> {
        let payment = &current.payment;
        let horizon = chrono::Duration::from_std(review_after).unwrap_or(chrono::Duration::MAX);
        let now = Utc::now();
        let stale = |since: chrono::DateTime<Utc>| since + horizon <= now;
        let intent = if payment
            .attempt
            .as_ref()
            .is_some_and(|a| stale(a.started_at))
        {
            Some("attempt")
        } else if payment
            .pending_capture
            .as_ref()
            .is_some_and(|c| stale(c.requested_at))
        {
            Some("capture")
        } else if payment.void_requested_at.is_some_and(stale) {
            Some("void")
        } else if payment
            .refunds
            .values()
            .any(|r| r.status == RefundStatus::Requested && r.requested_at.is_some_and(stale))
        {
            Some("refund")
        } else if payment
            .orphans
            .values()
            .any(|o| o.owes_compensation() && stale(o.recorded_at))
        {
            Some("compensation")
        } else if payment.status == PaymentStatus::Pending
            && payment.provider_transaction_id.is_none()
            && payment.updated_at.is_some_and(stale)
        {
            Some("attempt")
        } else {
            None
        };
        let Some(intent) = intent else {
            return Ok(current);
        };
        if payment.needs_review.as_deref() == Some(intent) {
            return Ok(current);
        }
        tracing::warn!(payment = %id, intent, "intent unresolved past the review horizon");
        self.execute_or_reload(
            id,
            PaymentCommand::MarkNeedsReview {
                intent: intent.to_owned(),
                reason: format!(
                    "no outcome from the provider after {} s",
                    review_after.as_secs()
                ),
                at: now,
            },
            "resolver",
            Some(current),
        )
        .await
    }
}
