use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::ids::{CaptureId, MerchantId, PaymentId, Reference, RefundId};
use crate::money::{Currency, Money, MoneyError};
use crate::payment::{
    CaptureMode, NextAction, PaymentCommand, PaymentError, PaymentEvent, PaymentMethodType,
    PaymentStatus,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RefundStatus {
    Requested,
    Succeeded,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RefundState {
    pub amount: Money,
    pub reason: Option<String>,
    pub status: RefundStatus,
    pub provider_refund_id: Option<String>,
}

/// What the event stream says about one payment, rebuilt by folding its events.
///
/// Invariant after every event: `refunded + refund_reserved <= captured <= authorized`,
/// all in the payment's one currency.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Payment {
    pub id: Option<PaymentId>,
    pub merchant_id: Option<MerchantId>,
    pub reference: Option<Reference>,
    pub status: PaymentStatus,
    pub amount: Option<Money>,
    pub payment_method: Option<PaymentMethodType>,
    pub capture_mode: Option<CaptureMode>,
    pub provider: String,
    pub provider_transaction_id: Option<String>,
    pub request_fingerprint: String,
    pub authorized: Decimal,
    pub captured: Decimal,
    pub refunded: Decimal,
    /// Refunds requested from the provider but not yet confirmed.
    pub refund_reserved: Decimal,
    pub capture_id: Option<CaptureId>,
    pub refunds: BTreeMap<RefundId, RefundState>,
    /// Provider notification ids already turned into events.
    pub provider_events: BTreeSet<String>,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
    pub failure_reason: Option<String>,
    /// What the customer must still do (while pending at the provider).
    #[serde(default)]
    pub next_action: Option<NextAction>,
    /// The provider's fee, fixed at approval.
    #[serde(default)]
    pub fee: Decimal,
}

impl Payment {
    pub fn currency(&self) -> Option<Currency> {
        self.amount.map(|m| m.currency())
    }

    fn money(&self, amount: Decimal) -> Money {
        let currency = self.currency().unwrap_or(Currency::USD);
        let mut amount = amount;
        amount.rescale(currency.scale());
        match Money::new(amount, currency) {
            Ok(m) => m,
            Err(_) => Money::zero(currency),
        }
    }

    pub fn authorized_money(&self) -> Money {
        self.money(self.authorized)
    }

    pub fn captured_money(&self) -> Money {
        self.money(self.captured)
    }

    pub fn refunded_money(&self) -> Money {
        self.money(self.refunded)
    }

    /// What can still be refunded: captured less refunded less reserved.
    pub fn refundable(&self) -> Decimal {
        self.captured - self.refunded - self.refund_reserved
    }

    /// The invariants of DESIGN.md section 3, checked in tests and after every `apply`.
    pub fn check_invariants(&self) -> Result<(), String> {
        let zero = Decimal::ZERO;
        if self.authorized < zero
            || self.captured < zero
            || self.refunded < zero
            || self.refund_reserved < zero
        {
            return Err(format!("negative amount in {self:?}"));
        }
        if self.captured > self.authorized {
            return Err(format!(
                "captured {} > authorized {}",
                self.captured, self.authorized
            ));
        }
        if self.refunded + self.refund_reserved > self.captured {
            return Err(format!(
                "refunded {} + reserved {} > captured {}",
                self.refunded, self.refund_reserved, self.captured
            ));
        }
        if let Some(amount) = self.amount {
            if self.authorized > amount.amount() {
                return Err(format!(
                    "authorized {} > amount {}",
                    self.authorized,
                    amount.amount()
                ));
            }
        }
        Ok(())
    }

    fn same_currency(&self, money: Money) -> Result<(), PaymentError> {
        match self.currency() {
            Some(expected) if expected != money.currency() => Err(PaymentError::CurrencyMismatch {
                expected,
                given: money.currency(),
            }),
            _ => Ok(()),
        }
    }

    fn refuse(&self, action: &'static str) -> PaymentError {
        if self.status == PaymentStatus::New {
            PaymentError::NotFound
        } else {
            PaymentError::InvalidTransition {
                action,
                status: self.status,
            }
        }
    }

    /// `Money::zero` is public (it is the neutral element for totals), so a command can carry
    /// a zero amount; DESIGN.md section 3 wants positive amounts whatever the caller. A zero
    /// payment, capture or refund would also leave the status lying about the money
    /// (APPROVED with nothing captured, PARTIALLY_REFUNDED with nothing refunded).
    /// A fee is in the payment's currency and never more than the amount it is charged on.
    fn fee_fits(&self, fee: Option<Money>, amount: Money) -> Result<(), PaymentError> {
        match fee {
            Some(fee) if fee.currency() != amount.currency() => {
                Err(PaymentError::CurrencyMismatch {
                    expected: amount.currency(),
                    given: fee.currency(),
                })
            }
            Some(fee) if fee.amount() > amount.amount() => {
                Err(PaymentError::Money(crate::money::MoneyError::TooLarge))
            }
            _ => Ok(()),
        }
    }

    fn positive(money: Money) -> Result<(), PaymentError> {
        if money.amount() <= Decimal::ZERO {
            return Err(PaymentError::Money(MoneyError::NotPositive));
        }
        Ok(())
    }

    fn requested_amount(&self) -> Result<Money, PaymentError> {
        self.amount.ok_or(PaymentError::NotFound)
    }

    fn provider_amount_matches(&self, reported: Money) -> Result<(), PaymentError> {
        let expected = self.requested_amount()?;
        if reported != expected {
            return Err(PaymentError::ProviderAmountMismatch {
                expected: expected.to_string(),
                reported: reported.to_string(),
            });
        }
        Ok(())
    }

    /// Decides which events a command causes; an empty list is an idempotent repeat.
    pub fn decide(&self, command: PaymentCommand) -> Result<Vec<PaymentEvent>, PaymentError> {
        match command {
            PaymentCommand::Initiate {
                payment_id,
                merchant_id,
                reference,
                amount,
                payment_method,
                capture_mode,
                provider,
                request_fingerprint,
                at,
            } => {
                if self.status != PaymentStatus::New {
                    return if self.id == Some(payment_id)
                        && self.request_fingerprint == request_fingerprint
                    {
                        Ok(vec![])
                    } else {
                        Err(PaymentError::IdempotencyMismatch)
                    };
                }
                Self::positive(amount)?;
                Ok(vec![PaymentEvent::PaymentInitiated {
                    payment_id,
                    merchant_id,
                    reference,
                    amount,
                    payment_method,
                    capture_mode,
                    provider,
                    request_fingerprint,
                    at,
                }])
            }
            PaymentCommand::RecordProviderAttemptFailed {
                provider,
                kind,
                detail,
                at,
            } => {
                if self.status != PaymentStatus::Pending {
                    return Err(self.refuse("record a provider attempt on"));
                }
                Ok(vec![PaymentEvent::ProviderAttemptFailed {
                    provider,
                    kind,
                    detail,
                    at,
                }])
            }
            PaymentCommand::RecordProviderTransaction {
                provider,
                provider_transaction_id,
                next_action,
                at,
            } => {
                if self.provider_transaction_id.as_deref() == Some(provider_transaction_id.as_str())
                    && self.provider == provider
                {
                    return Ok(vec![]);
                }
                if self.status != PaymentStatus::Pending || self.provider_transaction_id.is_some() {
                    return Err(self.refuse("record a provider transaction on"));
                }
                Ok(vec![PaymentEvent::ProviderTransactionCreated {
                    provider,
                    provider_transaction_id,
                    next_action,
                    at,
                }])
            }
            PaymentCommand::Expire {
                provider_event_id,
                at,
            } => {
                if self.provider_events.contains(&provider_event_id)
                    || self.status == PaymentStatus::Expired
                {
                    return Ok(vec![]);
                }
                if self.status != PaymentStatus::Pending {
                    return Err(self.refuse("expire"));
                }
                Ok(vec![PaymentEvent::PaymentExpired {
                    provider_event_id,
                    at,
                }])
            }
            PaymentCommand::Fail { reason, at } => match self.status {
                PaymentStatus::Pending => Ok(vec![PaymentEvent::PaymentFailed { reason, at }]),
                PaymentStatus::Failed => Ok(vec![]),
                _ => Err(self.refuse("fail")),
            },
            PaymentCommand::Authorize {
                provider_event_id,
                provider_transaction_id,
                amount,
                at,
            } => {
                if self.provider_events.contains(&provider_event_id) {
                    return Ok(vec![]);
                }
                // An authorization without capture only makes sense for manual capture: an
                // automatic payment left AUTHORIZED would wait for a capture nobody sends.
                if self.status != PaymentStatus::Pending
                    || self.capture_mode != Some(CaptureMode::Manual)
                {
                    return Err(self.refuse("authorize"));
                }
                self.provider_amount_matches(amount)?;
                Ok(vec![PaymentEvent::PaymentAuthorized {
                    provider: self.provider.clone(),
                    provider_event_id,
                    provider_transaction_id,
                    amount,
                    at,
                }])
            }
            PaymentCommand::Approve {
                provider_event_id,
                provider_transaction_id,
                amount,
                fee,
                at,
            } => {
                if self.provider_events.contains(&provider_event_id) {
                    return Ok(vec![]);
                }
                // A manual-capture payment is captured by the merchant (`Capture`), never by
                // the provider's say-so.
                if self.status != PaymentStatus::Pending
                    || self.capture_mode != Some(CaptureMode::Automatic)
                {
                    return Err(self.refuse("approve"));
                }
                self.provider_amount_matches(amount)?;
                self.fee_fits(fee, amount)?;
                Ok(vec![PaymentEvent::PaymentApproved {
                    provider: self.provider.clone(),
                    provider_event_id: Some(provider_event_id),
                    provider_transaction_id,
                    capture_id: None,
                    amount,
                    fee,
                    at,
                }])
            }
            PaymentCommand::Decline {
                provider_event_id,
                provider_transaction_id,
                reason,
                at,
            } => {
                if self.provider_events.contains(&provider_event_id) {
                    return Ok(vec![]);
                }
                if self.status != PaymentStatus::Pending {
                    return Err(self.refuse("decline"));
                }
                Ok(vec![PaymentEvent::PaymentDeclined {
                    provider: self.provider.clone(),
                    provider_event_id,
                    provider_transaction_id,
                    reason,
                    at,
                }])
            }
            PaymentCommand::Capture {
                capture_id,
                amount,
                fee,
                at,
            } => {
                if self.capture_id == Some(capture_id) {
                    // Compare money, not bare numbers: the same digits in another currency
                    // are another request.
                    return if self.captured_money() == amount {
                        Ok(vec![])
                    } else {
                        Err(PaymentError::IdempotencyMismatch)
                    };
                }
                if self.status != PaymentStatus::Authorized {
                    return Err(self.refuse("capture"));
                }
                self.same_currency(amount)?;
                Self::positive(amount)?;
                if amount.amount() > self.authorized {
                    return Err(PaymentError::CaptureExceedsAuthorized {
                        requested: amount.to_string(),
                        authorized: self.authorized_money().to_string(),
                    });
                }
                self.fee_fits(fee, amount)?;
                Ok(vec![PaymentEvent::PaymentApproved {
                    provider: self.provider.clone(),
                    provider_event_id: None,
                    provider_transaction_id: self
                        .provider_transaction_id
                        .clone()
                        .unwrap_or_default(),
                    capture_id: Some(capture_id),
                    amount,
                    fee,
                    at,
                }])
            }
            PaymentCommand::Void { at } => match self.status {
                PaymentStatus::Authorized => Ok(vec![PaymentEvent::PaymentVoided {
                    amount: self.authorized_money(),
                    at,
                }]),
                PaymentStatus::Voided => Ok(vec![]),
                _ => Err(self.refuse("void")),
            },
            PaymentCommand::RequestRefund {
                refund_id,
                amount,
                reason,
                at,
            } => {
                if let Some(existing) = self.refunds.get(&refund_id) {
                    return if existing.amount == amount && existing.reason == reason {
                        Ok(vec![])
                    } else {
                        Err(PaymentError::IdempotencyMismatch)
                    };
                }
                if !matches!(
                    self.status,
                    PaymentStatus::Approved | PaymentStatus::PartiallyRefunded
                ) {
                    return Err(self.refuse("refund"));
                }
                self.same_currency(amount)?;
                Self::positive(amount)?;
                if amount.amount() > self.refundable() {
                    return Err(PaymentError::RefundExceedsCaptured {
                        requested: amount.to_string(),
                        refundable: self.money(self.refundable()).to_string(),
                    });
                }
                Ok(vec![PaymentEvent::RefundRequested {
                    refund_id,
                    amount,
                    reason,
                    at,
                }])
            }
            PaymentCommand::CompleteRefund {
                refund_id,
                provider_refund_id,
                at,
            } => {
                // An empty stream is an unknown payment, not an unknown refund of one.
                if self.status == PaymentStatus::New {
                    return Err(PaymentError::NotFound);
                }
                let refund = self
                    .refunds
                    .get(&refund_id)
                    .ok_or(PaymentError::RefundNotFound)?;
                match refund.status {
                    RefundStatus::Requested => Ok(vec![PaymentEvent::PaymentRefunded {
                        refund_id,
                        provider_refund_id,
                        amount: refund.amount,
                        at,
                    }]),
                    RefundStatus::Succeeded => Ok(vec![]),
                    RefundStatus::Failed => Err(PaymentError::InvalidTransition {
                        action: "complete a failed refund of",
                        status: self.status,
                    }),
                }
            }
            PaymentCommand::FailRefund {
                refund_id,
                reason,
                at,
            } => {
                // An empty stream is an unknown payment, not an unknown refund of one.
                if self.status == PaymentStatus::New {
                    return Err(PaymentError::NotFound);
                }
                let refund = self
                    .refunds
                    .get(&refund_id)
                    .ok_or(PaymentError::RefundNotFound)?;
                match refund.status {
                    RefundStatus::Requested => Ok(vec![PaymentEvent::RefundFailed {
                        refund_id,
                        amount: refund.amount,
                        reason,
                        at,
                    }]),
                    RefundStatus::Failed => Ok(vec![]),
                    RefundStatus::Succeeded => Err(PaymentError::InvalidTransition {
                        action: "fail a completed refund of",
                        status: self.status,
                    }),
                }
            }
        }
    }

    fn remember_provider_event(&mut self, id: Option<&str>) {
        if let Some(id) = id {
            self.provider_events.insert(id.to_owned());
        }
    }
}

impl Aggregate for Payment {
    const TYPE: &'static str = "Payment";
    type Command = PaymentCommand;
    type Event = PaymentEvent;
    type Error = PaymentError;
    /// Provider calls happen in the command service, before or after the aggregate decides,
    /// never inside it: the aggregate needs no services.
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        for event in self.decide(command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        self.remember_provider_event(event.provider_event_id());
        self.updated_at = Some(event.at());
        match event {
            PaymentEvent::PaymentInitiated {
                payment_id,
                merchant_id,
                reference,
                amount,
                payment_method,
                capture_mode,
                provider,
                request_fingerprint,
                at,
            } => {
                self.id = Some(payment_id);
                self.merchant_id = Some(merchant_id);
                self.reference = Some(reference);
                self.amount = Some(amount);
                self.payment_method = Some(payment_method);
                self.capture_mode = Some(capture_mode);
                self.provider = provider;
                self.request_fingerprint = request_fingerprint;
                self.status = PaymentStatus::Pending;
                self.created_at = Some(at);
            }
            PaymentEvent::ProviderAttemptFailed { .. } => {}
            PaymentEvent::ProviderTransactionCreated {
                provider,
                provider_transaction_id,
                next_action,
                ..
            } => {
                self.provider = provider;
                self.provider_transaction_id = Some(provider_transaction_id);
                self.next_action = next_action;
            }
            PaymentEvent::PaymentExpired { .. } => {
                self.status = PaymentStatus::Expired;
                self.next_action = None;
            }
            PaymentEvent::PaymentFailed { reason, .. } => {
                self.status = PaymentStatus::Failed;
                self.failure_reason = Some(reason);
            }
            PaymentEvent::PaymentAuthorized {
                provider,
                provider_transaction_id,
                amount,
                ..
            } => {
                self.provider = provider;
                self.provider_transaction_id = Some(provider_transaction_id);
                self.authorized = amount.amount();
                self.status = PaymentStatus::Authorized;
            }
            PaymentEvent::PaymentApproved {
                provider,
                provider_transaction_id,
                capture_id,
                amount,
                fee,
                ..
            } => {
                self.fee = fee.map(|f| f.amount()).unwrap_or_default();
                self.next_action = None;
                self.provider = provider;
                self.provider_transaction_id = Some(provider_transaction_id);
                if capture_id.is_none() {
                    // Automatic capture authorizes and captures in one step.
                    self.authorized = amount.amount();
                }
                self.capture_id = capture_id;
                self.captured = amount.amount();
                self.status = PaymentStatus::Approved;
            }
            PaymentEvent::PaymentDeclined {
                provider,
                provider_transaction_id,
                reason,
                ..
            } => {
                self.provider = provider;
                self.provider_transaction_id = Some(provider_transaction_id);
                self.failure_reason = Some(reason);
                self.status = PaymentStatus::Declined;
            }
            PaymentEvent::PaymentVoided { .. } => {
                self.status = PaymentStatus::Voided;
            }
            PaymentEvent::RefundRequested {
                refund_id,
                amount,
                reason,
                ..
            } => {
                self.refund_reserved += amount.amount();
                self.refunds.insert(
                    refund_id,
                    RefundState {
                        amount,
                        reason,
                        status: RefundStatus::Requested,
                        provider_refund_id: None,
                    },
                );
            }
            PaymentEvent::PaymentRefunded {
                refund_id,
                provider_refund_id,
                amount,
                ..
            } => {
                self.refund_reserved -= amount.amount();
                self.refunded += amount.amount();
                if let Some(refund) = self.refunds.get_mut(&refund_id) {
                    refund.status = RefundStatus::Succeeded;
                    refund.provider_refund_id = Some(provider_refund_id);
                }
                self.status = if self.refunded >= self.captured {
                    PaymentStatus::Refunded
                } else {
                    PaymentStatus::PartiallyRefunded
                };
            }
            PaymentEvent::RefundFailed {
                refund_id, amount, ..
            } => {
                self.refund_reserved -= amount.amount();
                if let Some(refund) = self.refunds.get_mut(&refund_id) {
                    refund.status = RefundStatus::Failed;
                }
            }
        }
        debug_assert_eq!(self.check_invariants(), Ok(()));
    }
}
