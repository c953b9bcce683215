//! What providers say about payments: verified webhooks, synchronous answers and sync calls
//! all end here, as one command per outcome.

use std::time::Instant;

use chrono::Utc;
use domain::payment::Compensation;
use domain::{MerchantId, PaymentCommand, PaymentError, PaymentId};

use super::resolve::Lookup;
use super::{retry_idempotent, CommandError, Executed, PaymentService};
use connectors::{NotificationOutcome, ProviderNotification};
use connectors::{ProviderError, ProviderTransaction, ProviderTransactionStatus};

/// The outcome a provider's view of a transaction amounts to; `None` where it is nothing we
/// append (a void is recorded by our own command).
pub fn outcome_of(transaction: &ProviderTransaction) -> Option<NotificationOutcome> {
    Some(match &transaction.status {
        ProviderTransactionStatus::Pending => NotificationOutcome::Pending,
        ProviderTransactionStatus::Authorized => NotificationOutcome::Authorized {
            amount: transaction.amount,
        },
        ProviderTransactionStatus::Approved => NotificationOutcome::Approved {
            amount: transaction.amount,
        },
        ProviderTransactionStatus::Declined { reason } => NotificationOutcome::Declined {
            reason: reason.clone(),
        },
        ProviderTransactionStatus::Expired => NotificationOutcome::Expired,
        ProviderTransactionStatus::Failed { reason } => NotificationOutcome::Failed {
            reason: reason.clone(),
        },
        ProviderTransactionStatus::Voided => return None,
    })
}

impl PaymentService {
    /// Appends what a verified notification says. A redelivery (same provider event id)
    /// appends nothing. A notification that is not proof by itself (Maya) is confirmed by
    /// asking the provider for the transaction first.
    #[tracing::instrument(skip(self, notification), fields(provider = notification.provider, payment = %notification.payment_id))]
    pub async fn record_notification(
        &self,
        notification: ProviderNotification,
    ) -> Result<Executed, CommandError> {
        let id = notification.payment_id;
        let _serial = self.stripes.lock(id.as_uuid()).await;
        let current = self.load(id, None).await?;
        let outcome = if notification.confirm_with_provider {
            let routed = self.router.get(notification.provider).ok_or_else(|| {
                CommandError::Provider(ProviderError::rejected(format!(
                    "provider `{}` is not configured",
                    notification.provider
                )))
            })?;
            let deadline = Instant::now() + self.config.provider_budget;
            let transaction = retry_idempotent(
                routed,
                "get_transaction",
                deadline,
                self.config.idempotent_tries_max,
                || {
                    routed
                        .provider
                        .get_transaction(&notification.provider_transaction_id)
                },
            )
            .await
            .map_err(CommandError::Provider)?;
            if transaction.payment_id != id {
                return Err(PaymentError::InvalidTransition {
                    action: "confirm another payment's transaction for",
                    status: current.payment.status,
                }
                .into());
            }
            match outcome_of(&transaction) {
                Some(NotificationOutcome::Pending) | None => {
                    // The provider does not confirm what the body claims: nothing to append,
                    // and the delivery is not a redelivery either.
                    return Err(PaymentError::InvalidTransition {
                        action: "take an unconfirmed notification for",
                        status: current.payment.status,
                    }
                    .into());
                }
                Some(outcome) => outcome,
            }
        } else {
            notification.outcome
        };
        if !current
            .payment
            .holds_transaction(notification.provider, &notification.provider_transaction_id)
        {
            // A transaction the payment does not use (an earlier attempt, or one that
            // succeeded after the payment ended): recorded, never dropped, never applied.
            tracing::warn!(holder = %current.payment.provider, "notification for a transaction the payment does not hold");
            return self
                .record_orphan(
                    id,
                    current,
                    notification.provider,
                    notification.provider_transaction_id,
                    outcome,
                )
                .await;
        }
        self.apply_outcome(
            id,
            current,
            notification.provider,
            notification.event_id,
            notification.provider_transaction_id,
            outcome,
        )
        .await
    }

    /// Appends `ProviderTransactionOrphaned`, and gives the money back at once where the
    /// provider took or holds some (the resolver retries what does not succeed now).
    async fn record_orphan(
        &self,
        id: PaymentId,
        current: Executed,
        provider: &str,
        provider_transaction_id: String,
        outcome: NotificationOutcome,
    ) -> Result<Executed, CommandError> {
        let requested = current.payment.amount;
        let (status, amount, compensation) = match outcome {
            // Nothing decided, nothing held: the decision will come and be recorded then.
            NotificationOutcome::Pending => return Ok(current),
            NotificationOutcome::Approved { amount } => {
                ("APPROVED", Some(amount), Some(Compensation::Refund))
            }
            NotificationOutcome::Authorized { amount } => {
                ("AUTHORIZED", Some(amount), Some(Compensation::Void))
            }
            NotificationOutcome::Declined { .. } => ("DECLINED", requested, None),
            NotificationOutcome::Expired => ("EXPIRED", requested, None),
            NotificationOutcome::Failed { .. } => ("FAILED", requested, None),
        };
        let amount = amount.ok_or(PaymentError::NotFound)?;
        let recorded = self
            .execute_from(
                id,
                PaymentCommand::RecordOrphan {
                    provider: provider.to_owned(),
                    provider_transaction_id,
                    status: status.to_owned(),
                    amount,
                    compensation,
                    at: Utc::now(),
                },
                "provider",
                Some(current),
            )
            .await?;
        if recorded.appended == 0 {
            return Ok(recorded);
        }
        let appended = recorded.appended;
        let mut after = self.compensate_orphans(id, recorded).await?;
        after.appended = appended.max(after.appended);
        Ok(after)
    }

    /// Asks the provider for the payment's current status and appends what the ledger is
    /// missing: the answer to lost or late webhooks.
    #[tracing::instrument(skip(self))]
    pub async fn sync(
        &self,
        id: PaymentId,
        scope: Option<&MerchantId>,
    ) -> Result<Executed, CommandError> {
        let _serial = self.stripes.lock(id.as_uuid()).await;
        let current = self.load(id, scope).await?;
        if current.payment.provider_transaction_id.is_none() {
            // An attempt whose answer was lost: the provider is asked by reference.
            let open = current.payment.attempt.clone();
            let routed = open.and_then(|a| self.router.get(&a.provider));
            return match routed {
                Some(routed) => match self.look_up_attempt(id, routed, current).await? {
                    Lookup::Settled(c) | Lookup::NotAtProvider(c) | Lookup::Unanswered(c) => Ok(c),
                },
                None => Ok(current),
            };
        }
        self.sync_locked(id, current).await
    }

    /// `sync` for a payment with a provider transaction, under the caller's stripe lock.
    pub(super) async fn sync_locked(
        &self,
        id: PaymentId,
        current: Executed,
    ) -> Result<Executed, CommandError> {
        let Some(transaction_id) = current.payment.provider_transaction_id.clone() else {
            return Ok(current);
        };
        if current.payment.status.is_final() {
            return Ok(current);
        }
        let routed = self.provider_of(&current.payment)?;
        let deadline = Instant::now() + self.config.provider_budget;
        let transaction = retry_idempotent(
            routed,
            "get_transaction",
            deadline,
            self.config.idempotent_tries_max,
            || routed.provider.get_transaction(&transaction_id),
        )
        .await
        .map_err(CommandError::Provider)?;
        let Some(outcome) = outcome_of(&transaction) else {
            return Ok(current);
        };
        let provider = routed.provider.name();
        let event_id = format!(
            "{provider}:{transaction_id}:{}",
            transaction.status.as_str()
        );
        match self
            .apply_outcome(id, current, provider, event_id, transaction_id, outcome)
            .await
        {
            // The ledger already moved past what the provider reports.
            Err(CommandError::Rejected(PaymentError::InvalidTransition { .. })) => {
                self.load(id, None).await
            }
            other => other,
        }
    }

    /// One outcome, one command, decided on `current` (the payment as the caller loaded or
    /// made it: its method picks the fee rule). Callers hold the payment's stripe lock.
    pub(super) async fn apply_outcome(
        &self,
        id: PaymentId,
        current: Executed,
        provider: &str,
        provider_event_id: String,
        provider_transaction_id: String,
        outcome: NotificationOutcome,
    ) -> Result<Executed, CommandError> {
        let at = Utc::now();
        let command = match outcome {
            NotificationOutcome::Pending => return Ok(current),
            NotificationOutcome::Authorized { amount } => PaymentCommand::Authorize {
                provider_event_id,
                provider_transaction_id,
                amount,
                at,
            },
            NotificationOutcome::Approved { amount } => PaymentCommand::Approve {
                provider_event_id,
                provider_transaction_id,
                amount,
                fee: current
                    .payment
                    .payment_method
                    .and_then(|m| self.fees.fee(provider, m, amount, at)),
                at,
            },
            NotificationOutcome::Declined { reason } => PaymentCommand::Decline {
                provider_event_id,
                provider_transaction_id,
                reason,
                at,
            },
            NotificationOutcome::Expired => PaymentCommand::Expire {
                provider_event_id,
                at,
            },
            NotificationOutcome::Failed { reason } => PaymentCommand::Fail { reason, at },
        };
        self.execute_from(id, command, "provider", Some(current))
            .await
    }
}
