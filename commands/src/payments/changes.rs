//! Changing a payment at its provider: capture, void, refund.

use std::time::Instant;

use chrono::Utc;
use domain::payment::RefundStatus;
use domain::{CaptureId, IdempotencyKey, MerchantId, Money, PaymentCommand, PaymentId, RefundId};

use super::{
    bounded, provider_transaction, refund_status, CommandError, Executed, PaymentService,
    RefundOutcome,
};

impl PaymentService {
    fn deadline(&self) -> Instant {
        Instant::now() + self.config.provider_budget
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
        let fee = current.payment.payment_method.and_then(|method| {
            self.fees
                .fee(&current.payment.provider, method, amount, Utc::now())
        });
        let command = PaymentCommand::Capture {
            capture_id,
            amount,
            fee,
            at: Utc::now(),
        };
        if current.payment.decide(command.clone())?.is_empty() {
            return Ok(current);
        }
        let transaction = provider_transaction(&current.payment)?;
        let routed = self.provider_of(&current.payment)?;
        bounded(
            routed,
            self.deadline(),
            routed.provider.capture(&transaction, capture_id, amount),
        )
        .await
        .map_err(CommandError::Provider)?;
        self.execute_from(id, command, "api", Some(current)).await
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
        let routed = self.provider_of(&current.payment)?;
        bounded(routed, self.deadline(), routed.provider.void(&transaction))
            .await
            .map_err(CommandError::Provider)?;
        self.execute_from(id, command, "api", Some(current)).await
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
        let current = self.load(id, scope).await?;
        let routed = self.provider_of(&current.payment)?;
        if !routed.provider.supports_refunds() {
            // Refused before anything is reserved: no retry could ever succeed.
            return Err(CommandError::Unsupported {
                provider: current.payment.provider.clone(),
                action: "take refunds",
            });
        }
        let requested = self
            .execute_from(
                id,
                PaymentCommand::RequestRefund {
                    refund_id,
                    amount,
                    reason,
                    at: Utc::now(),
                },
                "api",
                Some(current),
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
        let routed = self.provider_of(&requested.payment)?;
        let answer = bounded(
            routed,
            self.deadline(),
            routed.provider.refund(&transaction, refund_id, amount),
        )
        .await;
        match answer {
            Ok(refund) => {
                let executed = self
                    .execute_from(
                        id,
                        PaymentCommand::CompleteRefund {
                            refund_id,
                            provider_refund_id: refund.id,
                            at: Utc::now(),
                        },
                        "api",
                        Some(requested),
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
}
