//! The sandbox's in-memory transactions and their rules, free of HTTP so they can be tested
//! directly. One `Ledger` sits behind a `Mutex`; nothing here awaits.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use domain::{CaptureId, CaptureMode, Money, PaymentId, PaymentMethodType, RefundId};
use uuid::Uuid;

/// Most refunds kept per transaction.
pub(crate) const REFUNDS_PER_TRANSACTION_MAX: usize = 1_000;
/// Reason of a decline `tok_sandbox_declined` asks for.
pub(crate) const DECLINE_REASON: &str = "card_declined";

/// What the token (or the processor, for a card BIN token) decided; applied when the
/// webhook is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    Approve,
    /// Declined, with the reason its webhook reports.
    Decline(&'static str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    Pending,
    Authorized,
    Approved,
    Declined,
    Voided,
}

impl Status {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "PENDING",
            Status::Authorized => "AUTHORIZED",
            Status::Approved => "APPROVED",
            Status::Declined => "DECLINED",
            Status::Voided => "VOIDED",
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Refund {
    pub id: String,
    pub amount: Money,
}

#[derive(Debug, Clone)]
pub(crate) struct Transaction {
    pub id: String,
    pub payment_id: PaymentId,
    pub reference: String,
    pub amount: Money,
    pub method: PaymentMethodType,
    pub capture_mode: CaptureMode,
    pub decision: Decision,
    pub status: Status,
    pub reason: Option<&'static str>,
    pub captured: Money,
    pub refunded: Money,
    pub created_at: DateTime<Utc>,
    captures: HashMap<CaptureId, Money>,
    refunds: HashMap<RefundId, Refund>,
}

/// A create request, validated.
#[derive(Debug, Clone)]
pub(crate) struct NewTransaction {
    pub payment_id: PaymentId,
    pub reference: String,
    pub amount: Money,
    pub method: PaymentMethodType,
    pub capture_mode: CaptureMode,
    pub decision: Decision,
}

#[derive(Debug)]
pub(crate) enum Created {
    /// A new transaction: its webhook must be scheduled.
    New(Transaction),
    /// The same payment again: the first transaction, nothing to schedule.
    Existing(Transaction),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LedgerError {
    NotFound,
    InvalidState,
    IdempotencyConflict,
    CurrencyMismatch,
    AmountExceedsAuthorized,
    AmountExceedsRefundable,
    TooManyRefunds,
    CapacityExhausted,
    WebhookQueueFull,
}

impl LedgerError {
    pub(crate) fn code(self) -> &'static str {
        match self {
            LedgerError::NotFound => "not_found",
            LedgerError::InvalidState => "invalid_state",
            LedgerError::IdempotencyConflict => "idempotency_conflict",
            LedgerError::CurrencyMismatch => "currency_mismatch",
            LedgerError::AmountExceedsAuthorized => "amount_exceeds_authorized",
            LedgerError::AmountExceedsRefundable => "amount_exceeds_refundable",
            LedgerError::TooManyRefunds => "too_many_refunds",
            LedgerError::CapacityExhausted => "capacity_exhausted",
            LedgerError::WebhookQueueFull => "webhook_queue_full",
        }
    }

    pub(crate) fn status(self) -> u16 {
        match self {
            LedgerError::NotFound => 404,
            LedgerError::InvalidState
            | LedgerError::IdempotencyConflict
            | LedgerError::TooManyRefunds => 409,
            LedgerError::CurrencyMismatch
            | LedgerError::AmountExceedsAuthorized
            | LedgerError::AmountExceedsRefundable => 422,
            LedgerError::CapacityExhausted | LedgerError::WebhookQueueFull => 503,
        }
    }
}

/// The outcome decided for a transaction, as its webhook reports it.
#[derive(Debug, Clone)]
pub(crate) struct Decided {
    pub transaction_id: String,
    pub payment_id: PaymentId,
    pub status: Status,
    pub amount: Money,
    pub reason: Option<&'static str>,
}

pub(crate) struct Ledger {
    transactions: HashMap<String, Transaction>,
    by_payment: HashMap<PaymentId, String>,
    /// Transaction ids per reference, for lookups (bounded with the transactions).
    by_reference: HashMap<String, Vec<String>>,
    capacity: usize,
}

/// A gateway-like transaction id: a prefix and 20 base-62 characters (`sbx_tx_4fK...`), the
/// random bits of a v4 UUID.
fn transaction_id() -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut n = Uuid::new_v4().as_u128();
    let mut id = String::from("sbx_tx_");
    for _ in 0..20 {
        id.push(char::from(ALPHABET[(n % 62) as usize]));
        n /= 62;
    }
    id
}

impl Ledger {
    pub(crate) fn new(capacity: usize) -> Self {
        Ledger {
            transactions: HashMap::new(),
            by_payment: HashMap::new(),
            by_reference: HashMap::new(),
            capacity,
        }
    }

    /// Creates a transaction, or returns the one already created for this payment.
    /// `can_schedule_webhook` is false when the webhook queue has no room: a new transaction
    /// is then refused rather than created without its webhook.
    pub(crate) fn create(
        &mut self,
        new: NewTransaction,
        can_schedule_webhook: bool,
        now: DateTime<Utc>,
    ) -> Result<Created, LedgerError> {
        if let Some(existing) = self
            .by_payment
            .get(&new.payment_id)
            .and_then(|id| self.transactions.get(id))
        {
            let same = existing.reference == new.reference
                && existing.amount == new.amount
                && existing.method == new.method
                && existing.capture_mode == new.capture_mode
                && existing.decision == new.decision;
            return if same {
                Ok(Created::Existing(existing.clone()))
            } else {
                Err(LedgerError::IdempotencyConflict)
            };
        }
        if !can_schedule_webhook {
            return Err(LedgerError::WebhookQueueFull);
        }
        if self.transactions.len() >= self.capacity {
            return Err(LedgerError::CapacityExhausted);
        }
        let currency = new.amount.currency();
        let transaction = Transaction {
            id: transaction_id(),
            payment_id: new.payment_id,
            reference: new.reference,
            amount: new.amount,
            method: new.method,
            capture_mode: new.capture_mode,
            decision: new.decision,
            status: Status::Pending,
            reason: None,
            captured: Money::zero(currency),
            refunded: Money::zero(currency),
            created_at: now,
            captures: HashMap::new(),
            refunds: HashMap::new(),
        };
        self.by_payment
            .insert(transaction.payment_id, transaction.id.clone());
        self.by_reference
            .entry(transaction.reference.clone())
            .or_default()
            .push(transaction.id.clone());
        self.transactions
            .insert(transaction.id.clone(), transaction.clone());
        Ok(Created::New(transaction))
    }

    pub(crate) fn get(&self, id: &str) -> Option<&Transaction> {
        self.transactions.get(id)
    }

    /// Every transaction created with `reference`, oldest first.
    pub(crate) fn by_reference<'a>(
        &'a self,
        reference: &str,
    ) -> impl Iterator<Item = &'a Transaction> + 'a {
        self.by_reference
            .get(reference)
            .into_iter()
            .flatten()
            .filter_map(|id| self.transactions.get(id))
    }

    /// Moves a pending transaction to the outcome its token asked for. `None` when there is
    /// nothing to decide (unknown, or decided already).
    pub(crate) fn decide(&mut self, id: &str) -> Option<Decided> {
        let tx = self.transactions.get_mut(id)?;
        if tx.status != Status::Pending {
            return None;
        }
        match (tx.decision, tx.capture_mode) {
            (Decision::Approve, CaptureMode::Automatic) => {
                tx.status = Status::Approved;
                tx.captured = tx.amount;
            }
            (Decision::Approve, CaptureMode::Manual) => tx.status = Status::Authorized,
            (Decision::Decline(reason), _) => {
                tx.status = Status::Declined;
                tx.reason = Some(reason);
            }
        }
        Some(Decided {
            transaction_id: tx.id.clone(),
            payment_id: tx.payment_id,
            status: tx.status,
            amount: tx.amount,
            reason: tx.reason,
        })
    }

    /// Captures (part of) an authorization, once. The same `capture_id` again is a no-op.
    pub(crate) fn capture(
        &mut self,
        id: &str,
        capture_id: CaptureId,
        amount: Money,
    ) -> Result<Transaction, LedgerError> {
        let tx = self.transactions.get_mut(id).ok_or(LedgerError::NotFound)?;
        if let Some(first) = tx.captures.get(&capture_id) {
            return if *first == amount {
                Ok(tx.clone())
            } else {
                Err(LedgerError::IdempotencyConflict)
            };
        }
        if tx.status != Status::Authorized {
            return Err(LedgerError::InvalidState);
        }
        if amount.currency() != tx.amount.currency() {
            return Err(LedgerError::CurrencyMismatch);
        }
        if amount.amount() > tx.amount.amount() {
            return Err(LedgerError::AmountExceedsAuthorized);
        }
        tx.captures.insert(capture_id, amount);
        tx.captured = amount;
        tx.status = Status::Approved;
        Ok(tx.clone())
    }

    /// Releases an authorization. Voiding a voided transaction succeeds again.
    pub(crate) fn void(&mut self, id: &str) -> Result<Transaction, LedgerError> {
        let tx = self.transactions.get_mut(id).ok_or(LedgerError::NotFound)?;
        match tx.status {
            Status::Authorized => {
                tx.status = Status::Voided;
                Ok(tx.clone())
            }
            Status::Voided => Ok(tx.clone()),
            _ => Err(LedgerError::InvalidState),
        }
    }

    /// Refunds up to what was captured and not yet refunded. The same `refund_id` again
    /// returns the first refund (`false`: not new).
    pub(crate) fn refund(
        &mut self,
        id: &str,
        refund_id: RefundId,
        amount: Money,
    ) -> Result<(Refund, bool), LedgerError> {
        let tx = self.transactions.get_mut(id).ok_or(LedgerError::NotFound)?;
        if let Some(first) = tx.refunds.get(&refund_id) {
            return if first.amount == amount {
                Ok((first.clone(), false))
            } else {
                Err(LedgerError::IdempotencyConflict)
            };
        }
        if tx.status != Status::Approved {
            return Err(LedgerError::InvalidState);
        }
        if amount.currency() != tx.amount.currency() {
            return Err(LedgerError::CurrencyMismatch);
        }
        if tx.refunds.len() >= REFUNDS_PER_TRANSACTION_MAX {
            return Err(LedgerError::TooManyRefunds);
        }
        let refundable = tx
            .captured
            .checked_sub(tx.refunded)
            .map_err(|_| LedgerError::AmountExceedsRefundable)?;
        if amount.amount() > refundable.amount() {
            return Err(LedgerError::AmountExceedsRefundable);
        }
        let refunded = tx
            .refunded
            .checked_add(amount)
            .map_err(|_| LedgerError::AmountExceedsRefundable)?;
        let refund = Refund {
            id: format!("sbx_rf_{}", Uuid::new_v4()),
            amount,
        };
        tx.refunded = refunded;
        tx.refunds.insert(refund_id, refund.clone());
        Ok((refund, true))
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.transactions.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::Currency;

    fn cop(s: &str) -> Money {
        Money::parse(s, Currency::COP).unwrap()
    }

    fn new_tx(decision: Decision, capture_mode: CaptureMode) -> NewTransaction {
        NewTransaction {
            payment_id: PaymentId::from_uuid(Uuid::new_v4()),
            reference: "order-1".into(),
            amount: cop("100.00"),
            method: PaymentMethodType::Card,
            capture_mode,
            decision,
        }
    }

    fn created(ledger: &mut Ledger, new: NewTransaction) -> Transaction {
        match ledger.create(new, true, Utc::now()).unwrap() {
            Created::New(tx) => tx,
            Created::Existing(_) => panic!("expected a new transaction"),
        }
    }

    #[test]
    fn create_is_idempotent_by_payment_and_refuses_a_different_body() {
        let mut ledger = Ledger::new(10);
        let new = new_tx(Decision::Approve, CaptureMode::Automatic);
        let first = created(&mut ledger, new.clone());
        assert!(first.id.starts_with("sbx_tx_"));
        match ledger.create(new.clone(), false, Utc::now()).unwrap() {
            Created::Existing(tx) => assert_eq!(tx.id, first.id),
            Created::New(_) => panic!("created twice"),
        }
        let mut other = new;
        other.amount = cop("100.01");
        assert_eq!(
            ledger.create(other, true, Utc::now()).unwrap_err(),
            LedgerError::IdempotencyConflict
        );
        assert_eq!(ledger.len(), 1);
    }

    #[test]
    fn create_refuses_past_capacity_or_without_room_for_the_webhook() {
        let mut ledger = Ledger::new(1);
        let new = new_tx(Decision::Approve, CaptureMode::Automatic);
        assert_eq!(
            ledger.create(new.clone(), false, Utc::now()).unwrap_err(),
            LedgerError::WebhookQueueFull
        );
        created(&mut ledger, new);
        assert_eq!(
            ledger
                .create(
                    new_tx(Decision::Approve, CaptureMode::Automatic),
                    true,
                    Utc::now()
                )
                .unwrap_err(),
            LedgerError::CapacityExhausted
        );
    }

    #[test]
    fn decide_follows_token_and_capture_mode_once() {
        let mut ledger = Ledger::new(10);
        let auto = created(
            &mut ledger,
            new_tx(Decision::Approve, CaptureMode::Automatic),
        );
        let manual = created(&mut ledger, new_tx(Decision::Approve, CaptureMode::Manual));
        let declined = created(
            &mut ledger,
            new_tx(Decision::Decline(DECLINE_REASON), CaptureMode::Manual),
        );
        assert_eq!(ledger.decide(&auto.id).unwrap().status, Status::Approved);
        assert_eq!(ledger.get(&auto.id).unwrap().captured, cop("100.00"));
        assert_eq!(
            ledger.decide(&manual.id).unwrap().status,
            Status::Authorized
        );
        let d = ledger.decide(&declined.id).unwrap();
        assert_eq!(
            (d.status, d.reason),
            (Status::Declined, Some("card_declined"))
        );
        assert!(ledger.decide(&auto.id).is_none());
        assert!(ledger.decide("sbx_tx_unknown").is_none());
    }

    #[test]
    fn capture_once_within_the_authorization() {
        let mut ledger = Ledger::new(10);
        let tx = created(&mut ledger, new_tx(Decision::Approve, CaptureMode::Manual));
        let c1 = CaptureId::from_uuid(Uuid::new_v4());
        assert_eq!(
            ledger.capture(&tx.id, c1, cop("10")).unwrap_err(),
            LedgerError::InvalidState,
            "pending"
        );
        ledger.decide(&tx.id);
        assert_eq!(
            ledger.capture(&tx.id, c1, cop("100.01")).unwrap_err(),
            LedgerError::AmountExceedsAuthorized
        );
        assert_eq!(
            ledger
                .capture(&tx.id, c1, Money::parse("10", Currency::USD).unwrap())
                .unwrap_err(),
            LedgerError::CurrencyMismatch
        );
        let after = ledger.capture(&tx.id, c1, cop("60")).unwrap();
        assert_eq!(
            (after.status, after.captured),
            (Status::Approved, cop("60"))
        );
        assert!(
            ledger.capture(&tx.id, c1, cop("60")).is_ok(),
            "same capture again"
        );
        assert_eq!(
            ledger.capture(&tx.id, c1, cop("61")).unwrap_err(),
            LedgerError::IdempotencyConflict
        );
        let c2 = CaptureId::from_uuid(Uuid::new_v4());
        assert_eq!(
            ledger.capture(&tx.id, c2, cop("1")).unwrap_err(),
            LedgerError::InvalidState
        );
    }

    #[test]
    fn refunds_never_exceed_the_capture() {
        let mut ledger = Ledger::new(10);
        let tx = created(
            &mut ledger,
            new_tx(Decision::Approve, CaptureMode::Automatic),
        );
        let r1 = RefundId::from_uuid(Uuid::new_v4());
        assert_eq!(
            ledger.refund(&tx.id, r1, cop("1")).unwrap_err(),
            LedgerError::InvalidState
        );
        ledger.decide(&tx.id);
        let (first, is_new) = ledger.refund(&tx.id, r1, cop("70")).unwrap();
        assert!(is_new && first.id.starts_with("sbx_rf_"));
        let (again, is_new) = ledger.refund(&tx.id, r1, cop("70")).unwrap();
        assert!(!is_new);
        assert_eq!(again.id, first.id);
        let r2 = RefundId::from_uuid(Uuid::new_v4());
        assert_eq!(
            ledger.refund(&tx.id, r2, cop("30.01")).unwrap_err(),
            LedgerError::AmountExceedsRefundable
        );
        assert!(ledger.refund(&tx.id, r2, cop("30")).is_ok());
        assert_eq!(ledger.get(&tx.id).unwrap().refunded, cop("100"));
        let r3 = RefundId::from_uuid(Uuid::new_v4());
        assert_eq!(
            ledger.refund(&tx.id, r3, cop("0.01")).unwrap_err(),
            LedgerError::AmountExceedsRefundable
        );
    }

    #[test]
    fn void_only_an_authorization() {
        let mut ledger = Ledger::new(10);
        let manual = created(&mut ledger, new_tx(Decision::Approve, CaptureMode::Manual));
        assert_eq!(
            ledger.void(&manual.id).unwrap_err(),
            LedgerError::InvalidState
        );
        ledger.decide(&manual.id);
        assert_eq!(ledger.void(&manual.id).unwrap().status, Status::Voided);
        assert_eq!(ledger.void(&manual.id).unwrap().status, Status::Voided);
        let auto = created(
            &mut ledger,
            new_tx(Decision::Approve, CaptureMode::Automatic),
        );
        ledger.decide(&auto.id);
        assert_eq!(
            ledger.void(&auto.id).unwrap_err(),
            LedgerError::InvalidState
        );
        assert_eq!(ledger.void("nope").unwrap_err(), LedgerError::NotFound);
    }
}
