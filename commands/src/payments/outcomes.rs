//! What providers say about payments: verified webhooks, synchronous answers and sync calls
//! all end here, as one command per outcome.

use std::time::Instant;

use chrono::Utc;
use domain::{MerchantId, PaymentCommand, PaymentError, PaymentId};

use super::{retry_idempotent, CommandError, Executed, PaymentService};
use crate::providers::{ProviderTransaction, ProviderTransactionStatus};
use crate::webhooks::{NotificationOutcome, ProviderNotification};

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
        if current.payment.provider != notification.provider {
            tracing::warn!(holder = %current.payment.provider, "notification from a provider that does not hold the payment");
            return Err(PaymentError::InvalidTransition {
                action: "take a notification from another provider for",
                status: current.payment.status,
            }
            .into());
        }
        let recorded = current.payment.provider_transaction_id.as_deref();
        if recorded.is_some_and(|t| t != notification.provider_transaction_id) {
            // A transaction the payment is not on (an abandoned earlier attempt): it must not
            // move this payment.
            tracing::warn!("notification for a transaction other than the payment's");
            return Err(PaymentError::InvalidTransition {
                action: "take another transaction's notification for",
                status: current.payment.status,
            }
            .into());
        }
        let outcome = if notification.confirm_with_provider {
            let routed = self.provider_of(&current.payment)?;
            let deadline = Instant::now() + self.config.provider_budget;
            let transaction =
                retry_idempotent(routed, deadline, self.config.idempotent_tries_max, || {
                    routed
                        .provider
                        .get_transaction(&notification.provider_transaction_id)
                })
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
        let Some(transaction_id) = current.payment.provider_transaction_id.clone() else {
            return Ok(current);
        };
        if current.payment.status.is_final() {
            return Ok(current);
        }
        let routed = self.provider_of(&current.payment)?;
        let deadline = Instant::now() + self.config.provider_budget;
        let transaction =
            retry_idempotent(routed, deadline, self.config.idempotent_tries_max, || {
                routed.provider.get_transaction(&transaction_id)
            })
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
