use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::ids::{AttemptId, CaptureId, MerchantId, PaymentId, Reference, RefundId};
use crate::money::{Currency, Money, MoneyError};
use crate::payment::{
    CaptureMode, Compensation, NextAction, PaymentCommand, PaymentError, PaymentEvent,
    PaymentMethodType, PaymentStatus,
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
    /// When the refund was asked of the provider.
    #[serde(default)]
    pub requested_at: Option<DateTime<Utc>>,
}

/// An offer of the payment to a provider that has no outcome yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenAttempt {
    pub provider: String,
    pub attempt_id: AttemptId,
    /// When the intent (or its latest re-submission) was appended: while the call can still
    /// be running, nobody else may send it.
    pub started_at: DateTime<Utc>,
    /// The call's answer was lost: the provider may hold a transaction for it.
    pub outcome_unknown: bool,
}

/// A capture asked of the provider and not yet answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingCapture {
    pub capture_id: CaptureId,
    pub amount: Money,
    pub fee: Option<Money>,
    pub requested_at: DateTime<Utc>,
}

/// A transaction a provider holds for this payment that the payment does not use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Orphan {
    pub provider: String,
    pub provider_transaction_id: String,
    pub status: String,
    pub amount: Money,
    pub compensation: Option<Compensation>,
    pub compensated: bool,
    pub recorded_at: DateTime<Utc>,
}

impl Orphan {
    /// Money is still held at the provider for it.
    pub fn owes_compensation(&self) -> bool {
        self.compensation.is_some() && !self.compensated
    }
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
    /// The offer to a provider that has no outcome yet.
    #[serde(default)]
    pub attempt: Option<OpenAttempt>,
    /// Providers whose attempt ended without a transaction: never offered the payment again.
    #[serde(default)]
    pub providers_tried: BTreeSet<String>,
    #[serde(default)]
    pub pending_capture: Option<PendingCapture>,
    /// When a void was asked of the provider and not yet answered.
    #[serde(default)]
    pub void_requested_at: Option<DateTime<Utc>>,
    /// Keyed by `provider:transaction id`.
    #[serde(default)]
    pub orphans: BTreeMap<String, Orphan>,
    /// The intent an operator must look at, while it stays open.
    #[serde(default)]
    pub needs_review: Option<String>,
}

fn orphan_key(provider: &str, provider_transaction_id: &str) -> String {
    format!("{provider}:{provider_transaction_id}")
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

    /// Whether something was asked of a provider and its outcome is not in the stream yet.
    pub fn has_open_intent(&self) -> bool {
        self.attempt.is_some()
            || self.pending_capture.is_some()
            || self.void_requested_at.is_some()
            || self
                .refunds
                .values()
                .any(|r| r.status == RefundStatus::Requested)
            || self.orphans.values().any(Orphan::owes_compensation)
    }

    /// Whether `provider`'s transaction `provider_transaction_id` is the one this payment
    /// uses, or may become it (the open attempt's provider has not named its transaction).
    pub fn holds_transaction(&self, provider: &str, provider_transaction_id: &str) -> bool {
        match &self.provider_transaction_id {
            Some(held) => self.provider == provider && held == provider_transaction_id,
            None => self
                .attempt
                .as_ref()
                .is_some_and(|a| a.provider == provider),
        }
    }

    pub fn orphan(&self, provider: &str, provider_transaction_id: &str) -> Option<&Orphan> {
        self.orphans
            .get(&orphan_key(provider, provider_transaction_id))
    }

    /// The money invariants, checked in tests and after every `apply`: no amount is negative,
    /// authorized <= the payment's amount, captured <= authorized, and refunded + reserved for
    /// refunds <= captured.
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
    /// a zero amount; the aggregate takes only positive amounts, whatever the caller. A zero
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

    /// A capture already made with this id: nothing to append for the same money, refused
    /// for other money. Money, not bare numbers: the same digits in another currency are
    /// another request.
    fn repeat_of_capture(
        &self,
        capture_id: CaptureId,
        amount: Money,
    ) -> Option<Result<Vec<PaymentEvent>, PaymentError>> {
        (self.capture_id == Some(capture_id)).then(|| {
            if self.captured_money() == amount {
                Ok(vec![])
            } else {
                Err(PaymentError::IdempotencyMismatch)
            }
        })
    }

    /// What a capture of `amount` must satisfy, asked or confirmed.
    fn capturable(&self, amount: Money, fee: Option<Money>) -> Result<(), PaymentError> {
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
        self.fee_fits(fee, amount)
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
                // The first attempt's intent goes in the same append: no extra commit.
                let attempt_id = AttemptId::derive(payment_id, &provider);
                Ok(vec![
                    PaymentEvent::PaymentInitiated {
                        payment_id,
                        merchant_id,
                        reference,
                        amount,
                        payment_method,
                        capture_mode,
                        provider: provider.clone(),
                        request_fingerprint,
                        at,
                    },
                    PaymentEvent::ProviderAttemptStarted {
                        provider,
                        attempt_id,
                        at,
                    },
                ])
            }
            PaymentCommand::StartAttempt { provider, at } => {
                let Some(payment_id) = self.id else {
                    return Err(PaymentError::NotFound);
                };
                if self.status != PaymentStatus::Pending || self.provider_transaction_id.is_some() {
                    return Err(self.refuse("start a provider attempt on"));
                }
                match &self.attempt {
                    // A re-submission of an attempt whose answer was lost: the same attempt.
                    Some(open) if open.provider == provider && open.outcome_unknown => {}
                    Some(_) => return Err(self.refuse("start a second provider attempt on")),
                    None if self.providers_tried.contains(&provider) => {
                        return Err(self.refuse("offer again to a provider that failed"))
                    }
                    None => {}
                }
                Ok(vec![PaymentEvent::ProviderAttemptStarted {
                    attempt_id: AttemptId::derive(payment_id, &provider),
                    provider,
                    at,
                }])
            }
            PaymentCommand::RecordProviderOutcomeUnknown {
                provider,
                kind,
                detail,
                at,
            } => {
                let Some(open) = self.attempt.as_ref().filter(|a| a.provider == provider) else {
                    return Err(self.refuse("record an unknown outcome on"));
                };
                if open.outcome_unknown {
                    return Ok(vec![]);
                }
                Ok(vec![PaymentEvent::ProviderOutcomeUnknown {
                    provider,
                    attempt_id: open.attempt_id,
                    kind,
                    detail,
                    at,
                }])
            }
            PaymentCommand::RecordProviderAttemptFailed {
                provider,
                kind,
                detail,
                at,
            } => {
                if self.status != PaymentStatus::Pending || self.provider_transaction_id.is_some() {
                    return Err(self.refuse("record a provider attempt on"));
                }
                let attempt_id = match &self.attempt {
                    Some(open) if open.provider == provider => Some(open.attempt_id),
                    Some(_) => return Err(self.refuse("fail another provider's attempt on")),
                    None => None,
                };
                Ok(vec![PaymentEvent::ProviderAttemptFailed {
                    provider,
                    kind,
                    detail,
                    at,
                    attempt_id,
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
                if self
                    .attempt
                    .as_ref()
                    .is_some_and(|a| a.provider != provider)
                {
                    return Err(self.refuse("take another provider's transaction on"));
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
                if let Some(repeat) = self.repeat_of_capture(capture_id, amount) {
                    return repeat;
                }
                if self
                    .pending_capture
                    .as_ref()
                    .is_some_and(|p| p.capture_id != capture_id)
                {
                    return Err(self.refuse("capture while another capture is asked of"));
                }
                self.capturable(amount, fee)?;
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
            PaymentCommand::RequestCapture {
                capture_id,
                amount,
                fee,
                at,
            } => {
                if let Some(repeat) = self.repeat_of_capture(capture_id, amount) {
                    return repeat;
                }
                match &self.pending_capture {
                    Some(p) if p.capture_id == capture_id && p.amount == amount => {
                        return Ok(vec![])
                    }
                    Some(p) if p.capture_id == capture_id => {
                        return Err(PaymentError::IdempotencyMismatch)
                    }
                    Some(_) => return Err(self.refuse("capture while another capture is asked of")),
                    None => {}
                }
                if self.void_requested_at.is_some() {
                    return Err(self.refuse("capture while a void is asked of"));
                }
                self.capturable(amount, fee)?;
                Ok(vec![PaymentEvent::CaptureRequested {
                    capture_id,
                    amount,
                    fee,
                    provider: Some(self.provider.clone()),
                    at,
                }])
            }
            PaymentCommand::FailCapture {
                capture_id,
                reason,
                at,
            } => match &self.pending_capture {
                Some(p) if p.capture_id == capture_id => Ok(vec![PaymentEvent::CaptureFailed {
                    capture_id,
                    reason,
                    at,
                }]),
                _ if self.capture_id == Some(capture_id) => {
                    Err(self.refuse("fail a completed capture of"))
                }
                _ => Ok(vec![]),
            },
            PaymentCommand::RequestVoid { at } => match self.status {
                PaymentStatus::Voided => Ok(vec![]),
                PaymentStatus::Authorized if self.void_requested_at.is_some() => Ok(vec![]),
                PaymentStatus::Authorized if self.pending_capture.is_some() => {
                    Err(self.refuse("void while a capture is asked of"))
                }
                PaymentStatus::Authorized => Ok(vec![PaymentEvent::VoidRequested {
                    provider: Some(self.provider.clone()),
                    at,
                }]),
                _ => Err(self.refuse("void")),
            },
            PaymentCommand::Void { at } => match self.status {
                PaymentStatus::Authorized if self.pending_capture.is_none() => {
                    Ok(vec![PaymentEvent::PaymentVoided {
                        amount: self.authorized_money(),
                        at,
                    }])
                }
                PaymentStatus::Voided => Ok(vec![]),
                _ => Err(self.refuse("void")),
            },
            PaymentCommand::FailVoid { reason, at } => {
                if self.void_requested_at.is_none() {
                    return Ok(vec![]);
                }
                Ok(vec![PaymentEvent::VoidFailed { reason, at }])
            }
            PaymentCommand::RecordOrphan {
                provider,
                provider_transaction_id,
                status,
                amount,
                compensation,
                at,
            } => {
                if self.status == PaymentStatus::New {
                    return Err(PaymentError::NotFound);
                }
                if self.orphan(&provider, &provider_transaction_id).is_some() {
                    return Ok(vec![]);
                }
                if self.holds_transaction(&provider, &provider_transaction_id)
                    && self.status == PaymentStatus::Pending
                {
                    return Err(self.refuse("orphan the payment's own transaction of"));
                }
                self.same_currency(amount)?;
                Ok(vec![PaymentEvent::ProviderTransactionOrphaned {
                    provider,
                    provider_transaction_id,
                    status,
                    amount,
                    compensation,
                    at,
                }])
            }
            PaymentCommand::CompleteCompensation {
                provider,
                provider_transaction_id,
                provider_reference,
                at,
            } => {
                let orphan = self
                    .orphan(&provider, &provider_transaction_id)
                    .ok_or_else(|| self.refuse("compensate an unknown orphan of"))?;
                let Some(compensation) = orphan.compensation else {
                    return Err(self.refuse("compensate an orphan that holds nothing of"));
                };
                if orphan.compensated {
                    return Ok(vec![]);
                }
                Ok(vec![PaymentEvent::OrphanCompensated {
                    provider,
                    provider_transaction_id,
                    compensation,
                    provider_reference,
                    amount: orphan.amount,
                    at,
                }])
            }
            PaymentCommand::MarkNeedsReview { intent, reason, at } => {
                if !self.has_open_intent() {
                    return Err(self.refuse("flag for review"));
                }
                if self.needs_review.as_deref() == Some(intent.as_str()) {
                    return Ok(vec![]);
                }
                Ok(vec![PaymentEvent::PaymentNeedsReview {
                    intent,
                    reason,
                    at,
                }])
            }
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
            PaymentEvent::ProviderAttemptStarted {
                provider,
                attempt_id,
                at,
            } => {
                self.provider = provider.clone();
                self.attempt = Some(OpenAttempt {
                    provider,
                    attempt_id,
                    started_at: at,
                    outcome_unknown: false,
                });
            }
            PaymentEvent::ProviderOutcomeUnknown { .. } => {
                if let Some(open) = self.attempt.as_mut() {
                    open.outcome_unknown = true;
                }
            }
            PaymentEvent::ProviderAttemptFailed { provider, .. } => {
                self.attempt = None;
                self.providers_tried.insert(provider);
            }
            PaymentEvent::ProviderTransactionCreated {
                provider,
                provider_transaction_id,
                next_action,
                ..
            } => {
                self.attempt = None;
                self.provider = provider;
                self.provider_transaction_id = Some(provider_transaction_id);
                self.next_action = next_action;
            }
            PaymentEvent::PaymentExpired { .. } => {
                self.attempt = None;
                self.status = PaymentStatus::Expired;
                self.next_action = None;
            }
            PaymentEvent::PaymentFailed { reason, .. } => {
                self.attempt = None;
                self.status = PaymentStatus::Failed;
                self.failure_reason = Some(reason);
            }
            PaymentEvent::PaymentAuthorized {
                provider,
                provider_transaction_id,
                amount,
                ..
            } => {
                self.attempt = None;
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
                self.attempt = None;
                self.pending_capture = None;
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
                self.attempt = None;
                self.provider = provider;
                self.provider_transaction_id = Some(provider_transaction_id);
                self.failure_reason = Some(reason);
                self.status = PaymentStatus::Declined;
            }
            PaymentEvent::PaymentVoided { .. } => {
                self.void_requested_at = None;
                self.status = PaymentStatus::Voided;
            }
            PaymentEvent::CaptureRequested {
                capture_id,
                amount,
                fee,
                at,
                ..
            } => {
                self.pending_capture = Some(PendingCapture {
                    capture_id,
                    amount,
                    fee,
                    requested_at: at,
                });
            }
            PaymentEvent::CaptureFailed { .. } => self.pending_capture = None,
            PaymentEvent::VoidRequested { at, .. } => self.void_requested_at = Some(at),
            PaymentEvent::VoidFailed { .. } => self.void_requested_at = None,
            PaymentEvent::ProviderTransactionOrphaned {
                provider,
                provider_transaction_id,
                status,
                amount,
                compensation,
                at,
            } => {
                self.orphans.insert(
                    orphan_key(&provider, &provider_transaction_id),
                    Orphan {
                        provider,
                        provider_transaction_id,
                        status,
                        amount,
                        compensation,
                        compensated: false,
                        recorded_at: at,
                    },
                );
            }
            PaymentEvent::OrphanCompensated {
                provider,
                provider_transaction_id,
                ..
            } => {
                if let Some(orphan) = self
                    .orphans
                    .get_mut(&orphan_key(&provider, &provider_transaction_id))
                {
                    orphan.compensated = true;
                }
            }
            PaymentEvent::PaymentNeedsReview { intent, .. } => self.needs_review = Some(intent),
            PaymentEvent::RefundRequested {
                refund_id,
                amount,
                reason,
                at,
            } => {
                self.refund_reserved += amount.amount();
                self.refunds.insert(
                    refund_id,
                    RefundState {
                        amount,
                        reason,
                        status: RefundStatus::Requested,
                        provider_refund_id: None,
                        requested_at: Some(at),
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
        // A review flag lasts while something is still open: a late answer clears it.
        if self.needs_review.is_some() && !self.has_open_intent() {
            self.needs_review = None;
        }
        debug_assert_eq!(self.check_invariants(), Ok(()));
    }
}
