//! Changing a payment at its provider: capture, void, refund. Each appends its intent
//! (`CaptureRequested`, `VoidRequested`, `RefundRequested`) before the provider is called,
//! with our id as the provider's idempotency key; the answer appends the outcome. A lost
//! answer leaves the intent open for a repeat or the resolver, which send it again with the
//! same id: the provider's deduplication makes that the same capture, void or refund.

use std::future::Future;
use std::time::Instant;

use chrono::Utc;
use domain::payment::RefundStatus;
use domain::{
    CaptureId, IdempotencyKey, MerchantId, Money, PaymentCommand, PaymentId, PaymentStatus,
    RefundId, RefundReason,
};

use super::{
    bounded, provider_transaction, refund_status, CommandError, Executed, Loaded, PaymentService,
    RefundOutcome,
};
use crate::router::RoutedProvider;
use connectors::{CallOutcome, ProviderError, ProviderTransaction, ProviderTransactionStatus};

impl PaymentService {
    /// One provider call gets what one create attempt gets: its answer is lost past that.
    fn deadline(&self) -> Instant {
        Instant::now() + self.config.attempt_timeout.min(self.config.provider_budget)
    }

    /// Captures an authorized payment, all of it unless `amount` says less. A repeat of the
    /// same key answers the same capture, finishing it first if its answer was lost.
    #[tracing::instrument(skip(self, loaded), fields(id = %loaded.id))]
    pub async fn capture(
        &self,
        loaded: Loaded<'_>,
        key: &IdempotencyKey,
        amount: Option<Money>,
    ) -> Result<Executed, CommandError> {
        let Loaded {
            id,
            current,
            _serial,
        } = loaded;
        let capture_id = CaptureId::derive(id, key);
        if current.payment.capture_id == Some(capture_id) && amount.is_none() {
            return Ok(current);
        }
        if let Some(pending) = current
            .payment
            .pending_capture
            .clone()
            .filter(|p| p.capture_id == capture_id && amount.is_none_or(|a| a == p.amount))
        {
            let command = PaymentCommand::Capture {
                capture_id,
                amount: pending.amount,
                fee: pending.fee,
                at: Utc::now(),
            };
            return self
                .complete_capture(id, current, command, capture_id, pending.amount)
                .await;
        }
        // Without an amount: all that was authorized (zero, and so refused, if nothing was).
        let amount = amount.unwrap_or_else(|| current.payment.authorized_money());
        let fee = current.payment.payment_method.and_then(|method| {
            self.fees
                .fee(&current.payment.provider, method, amount, Utc::now())
        });
        let requested = self
            .execute_from(
                id,
                PaymentCommand::RequestCapture {
                    capture_id,
                    amount,
                    fee,
                    at: Utc::now(),
                },
                "api",
                Some(current),
            )
            .await?;
        if requested.payment.capture_id == Some(capture_id) {
            return Ok(requested); // the same capture, already made
        }
        let command = PaymentCommand::Capture {
            capture_id,
            amount,
            fee,
            at: Utc::now(),
        };
        self.complete_capture(id, requested, command, capture_id, amount)
            .await
    }

    /// Sends a requested capture to the provider and appends its outcome. A refusal of a
    /// capture the provider shows as already made is that capture.
    pub(super) async fn complete_capture(
        &self,
        id: PaymentId,
        current: Executed,
        command: PaymentCommand,
        capture_id: CaptureId,
        amount: Money,
    ) -> Result<Executed, CommandError> {
        let transaction = provider_transaction(&current.payment)?;
        let routed = self.provider_of(&current.payment)?;
        let call = routed.provider.capture(&transaction, capture_id, amount);
        let made = |view: &ProviderTransaction| {
            view.status == ProviderTransactionStatus::Approved && view.captured_amount == amount
        };
        let refused = |reason| PaymentCommand::FailCapture {
            capture_id,
            reason,
            at: Utc::now(),
        };
        self.complete_change(
            id,
            current,
            routed,
            &transaction,
            call,
            made,
            command,
            refused,
        )
        .await
    }

    /// Sends one change whose intent is in the stream and appends its outcome: `done` on
    /// success, or on a refusal of a change the provider's view shows `made` already (a
    /// repeat); `refused` with the provider's reason otherwise. A lost answer appends nothing:
    /// the intent stays open for a repeat or the resolver.
    #[allow(clippy::too_many_arguments)]
    async fn complete_change(
        &self,
        id: PaymentId,
        current: Executed,
        routed: &RoutedProvider,
        transaction: &str,
        call: impl Future<Output = Result<(), ProviderError>>,
        made: impl Fn(&ProviderTransaction) -> bool,
        done: PaymentCommand,
        refused: impl FnOnce(String) -> PaymentCommand,
    ) -> Result<Executed, CommandError> {
        let operation = if matches!(done, PaymentCommand::Capture { .. }) {
            "capture"
        } else {
            "void"
        };
        let error = match bounded(routed, operation, self.deadline(), call).await {
            Ok(()) => return self.execute_from(id, done, "api", Some(current)).await,
            Err(error) => error,
        };
        if error.outcome() != CallOutcome::Refused {
            tracing::warn!(command = done.name(), kind = ?error.kind, "answer lost; the intent stays open");
            return Err(CommandError::Provider(error));
        }
        let shown = bounded(
            routed,
            "get_transaction",
            self.deadline(),
            routed.provider.get_transaction(transaction),
        )
        .await;
        if shown.is_ok_and(|view| made(&view)) {
            return self.execute_from(id, done, "api", Some(current)).await;
        }
        self.execute_from(id, refused(error.detail.clone()), "api", Some(current))
            .await?;
        Err(CommandError::Provider(error))
    }

    #[tracing::instrument(skip(self))]
    pub async fn void(
        &self,
        id: PaymentId,
        scope: Option<&MerchantId>,
    ) -> Result<Executed, CommandError> {
        let _serial = self.stripes.lock(id.as_uuid()).await;
        let current = self.load(id, scope).await?;
        let requested = self
            .execute_from(
                id,
                PaymentCommand::RequestVoid { at: Utc::now() },
                "api",
                Some(current),
            )
            .await?;
        if requested.payment.status == PaymentStatus::Voided {
            return Ok(requested);
        }
        self.complete_void(id, requested).await
    }

    /// Sends a requested void to the provider and appends its outcome. A refusal of a void
    /// the provider shows as already done is that void.
    pub(super) async fn complete_void(
        &self,
        id: PaymentId,
        current: Executed,
    ) -> Result<Executed, CommandError> {
        let transaction = provider_transaction(&current.payment)?;
        let routed = self.provider_of(&current.payment)?;
        let call = routed.provider.void(&transaction);
        let made = |view: &ProviderTransaction| view.status == ProviderTransactionStatus::Voided;
        let refused = |reason| PaymentCommand::FailVoid {
            reason,
            at: Utc::now(),
        };
        let voided = PaymentCommand::Void { at: Utc::now() };
        self.complete_change(
            id,
            current,
            routed,
            &transaction,
            call,
            made,
            voided,
            refused,
        )
        .await
    }

    /// Refunds part or all of what was captured. A repeat of the same key returns the first
    /// result; a refund the provider has not answered stays `REQUESTED` (reserved) and is
    /// sent again, with the same refund id, by the next repeat or the resolver.
    #[tracing::instrument(skip(self, loaded), fields(id = %loaded.id))]
    pub async fn refund(
        &self,
        loaded: Loaded<'_>,
        key: &IdempotencyKey,
        amount: Money,
        reason: Option<RefundReason>,
    ) -> Result<RefundOutcome, CommandError> {
        let Loaded {
            id,
            current,
            _serial,
        } = loaded;
        let refund_id = RefundId::derive(id, key);
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
                    reason: reason.map(RefundReason::into_string),
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
        self.complete_refund(id, requested, refund_id, amount).await
    }

    /// Sends a requested refund to the provider and appends its outcome.
    pub(super) async fn complete_refund(
        &self,
        id: PaymentId,
        requested: Executed,
        refund_id: RefundId,
        amount: Money,
    ) -> Result<RefundOutcome, CommandError> {
        let transaction = provider_transaction(&requested.payment)?;
        let routed = self.provider_of(&requested.payment)?;
        let answer = bounded(
            routed,
            "refund",
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
            Err(error) if error.outcome() == CallOutcome::Refused => {
                let executed = self
                    .execute_from(
                        id,
                        PaymentCommand::FailRefund {
                            refund_id,
                            reason: error.detail.clone(),
                            at: Utc::now(),
                        },
                        "api",
                        Some(requested),
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
