//! The PayU emulator's in-memory orders and their rules, free of HTTP so they can be tested
//! directly. One `Store` sits behind a `Mutex`; nothing here awaits.
//!
//! One order per payment (`referenceCode`), holding the payment transaction
//! (`AUTHORIZATION` or `AUTHORIZATION_AND_CAPTURE`) and the operations made on it later
//! (`CAPTURE`, `VOID`, `REFUND`), like PayU's orders.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use domain::{Currency, Money};
use rand::Rng;
use uuid::Uuid;

/// The first order id handed out (PayU's are large integers).
pub(crate) const FIRST_ORDER_ID: u64 = 1_400_000_001;
/// Operations (captures, voids, refunds) kept per order.
pub(crate) const OPERATIONS_PER_ORDER_MAX: usize = 100;
/// Efecty payment codes are this many digits.
pub(crate) const EFECTY_CODE_DIGITS: u32 = 10;
const EFECTY_CODE_ATTEMPTS_MAX: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TxType {
    Authorization,
    AuthorizationAndCapture,
    Capture,
    Void,
    Refund,
}

impl TxType {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            TxType::Authorization => "AUTHORIZATION",
            TxType::AuthorizationAndCapture => "AUTHORIZATION_AND_CAPTURE",
            TxType::Capture => "CAPTURE",
            TxType::Void => "VOID",
            TxType::Refund => "REFUND",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TxState {
    Pending,
    Approved,
    Declined,
    Error,
    Expired,
}

impl TxState {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            TxState::Pending => "PENDING",
            TxState::Approved => "APPROVED",
            TxState::Declined => "DECLINED",
            TxState::Error => "ERROR",
            TxState::Expired => "EXPIRED",
        }
    }

    /// `state_pol` of a confirmation for this final state.
    pub(crate) fn state_pol(self) -> Option<&'static str> {
        match self {
            TxState::Pending => None,
            TxState::Approved => Some("4"),
            TxState::Declined => Some("6"),
            TxState::Expired => Some("5"),
            TxState::Error => Some("104"),
        }
    }
}

/// What a card test token asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CardOutcome {
    Approve,
    Decline,
    Error,
    /// `PENDING` (in review) at first; approved when its confirmation is due.
    PendingThenApprove,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Method {
    Card {
        franchise: String,
        outcome: CardOutcome,
    },
    Efecty {
        code: String,
        expires_at: DateTime<Utc>,
    },
    Pse {
        bank: String,
        approves: bool,
    },
}

impl Method {
    /// PayU's `paymentMethod` / `payment_method_name`.
    pub(crate) fn name(&self) -> &str {
        match self {
            Method::Card { franchise, .. } => franchise,
            Method::Efecty { .. } => "EFECTY",
            Method::Pse { .. } => "PSE",
        }
    }

    /// PayU's `payment_method_type` code (2 card, 4 PSE, 7 cash).
    pub(crate) fn type_code(&self) -> u8 {
        match self {
            Method::Card { .. } => 2,
            Method::Pse { .. } => 4,
            Method::Efecty { .. } => 7,
        }
    }

    fn same_request(&self, new: &NewMethod) -> bool {
        match (self, new) {
            (
                Method::Card { franchise, outcome },
                NewMethod::Card {
                    franchise: f,
                    outcome: o,
                },
            ) => franchise == f && outcome == o,
            (Method::Efecty { .. }, NewMethod::Efecty { .. }) => true,
            (Method::Pse { bank, .. }, NewMethod::Pse { bank: b, .. }) => bank == b,
            _ => false,
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Transaction {
    pub id: String,
    pub kind: TxType,
    pub parent: Option<String>,
    pub state: TxState,
    pub response_code: &'static str,
    pub pending_reason: Option<&'static str>,
    /// Operations only: the amount they were asked for.
    pub amount: Option<Money>,
    /// Refunds only.
    pub reason: Option<String>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub(crate) struct Order {
    pub id: u64,
    pub reference_code: String,
    pub description: String,
    pub amount: Money,
    pub buyer_email: Option<String>,
    pub method: Method,
    pub payment: Transaction,
    pub operations: Vec<Transaction>,
    pub captured: Money,
    pub refunded: Money,
    pub voided: bool,
    /// Its confirmations are decided but never sent (the `approved_silent` fault).
    pub muted: bool,
}

impl Order {
    /// PayU's order status: from the last approved transaction.
    pub(crate) fn status(&self) -> &'static str {
        match self.payment.state {
            TxState::Pending => return "IN_PROGRESS",
            TxState::Declined | TxState::Error | TxState::Expired => return "DECLINED",
            TxState::Approved => {}
        }
        let last = self
            .operations
            .iter()
            .rev()
            .find(|o| o.state == TxState::Approved);
        match last.map(|o| o.kind) {
            Some(TxType::Void) => "CANCELLED",
            Some(TxType::Refund) => "REFUNDED",
            Some(TxType::Capture) => "CAPTURED",
            _ if self.payment.kind == TxType::Authorization => "AUTHORIZED",
            _ => "CAPTURED",
        }
    }

    pub(crate) fn transaction(&self, id: &str) -> Option<&Transaction> {
        if self.payment.id == id {
            return Some(&self.payment);
        }
        self.operations.iter().find(|o| o.id == id)
    }
}

/// A validated create request.
#[derive(Debug, Clone)]
pub(crate) struct NewPayment {
    pub reference_code: String,
    pub description: String,
    pub amount: Money,
    pub buyer_email: Option<String>,
    pub kind: TxType,
    pub method: NewMethod,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NewMethod {
    Card {
        franchise: String,
        outcome: CardOutcome,
    },
    Efecty {
        expires_at: DateTime<Utc>,
    },
    Pse {
        bank: String,
        approves: bool,
    },
}

#[derive(Debug)]
pub(crate) enum Created {
    /// A new order: a card's confirmation must be scheduled.
    New(Box<Order>),
    /// The same `referenceCode` again with the same request: the first order.
    Existing(Box<Order>),
}

/// How a pending payment ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Settlement {
    Approve,
    Decline(&'static str),
    Expire,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StoreError {
    NotFound,
    /// The `referenceCode` was used for a different request.
    ReferenceReused,
    InvalidState(&'static str),
    InvalidParent,
    CurrencyMismatch,
    AmountExceeded,
    TooManyOperations,
    CapacityExhausted,
    CodesExhausted,
}

impl StoreError {
    /// The `error` text of PayU's `code: ERROR` answer.
    pub(crate) fn message(self) -> &'static str {
        match self {
            StoreError::NotFound => "The order does not exist",
            StoreError::ReferenceReused => {
                "The referenceCode was already used for another transaction"
            }
            StoreError::InvalidState(what) => what,
            StoreError::InvalidParent => "Invalid parentTransactionId for this order",
            StoreError::CurrencyMismatch => "The currency differs from the order's",
            StoreError::AmountExceeded => "The value exceeds the allowed amount",
            StoreError::TooManyOperations => "Too many transactions for this order",
            StoreError::CapacityExhausted => "The sandbox holds too many orders",
            StoreError::CodesExhausted => "No Efecty payment code available",
        }
    }
}

pub(crate) struct Store {
    orders: HashMap<u64, Order>,
    by_reference: HashMap<String, u64>,
    by_transaction: HashMap<String, u64>,
    by_code: HashMap<String, u64>,
    /// Pending Efecty payments by expiry.
    expiries: BTreeSet<(DateTime<Utc>, u64)>,
    next_order_id: u64,
    capacity: usize,
}

impl Store {
    pub(crate) fn new(capacity: usize) -> Self {
        Store {
            orders: HashMap::new(),
            by_reference: HashMap::new(),
            by_transaction: HashMap::new(),
            by_code: HashMap::new(),
            expiries: BTreeSet::new(),
            next_order_id: FIRST_ORDER_ID,
            capacity,
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.orders.len()
    }

    /// Creates an order with its payment transaction, or returns the order already created
    /// for this `referenceCode` (the same request again).
    pub(crate) fn create(
        &mut self,
        new: NewPayment,
        now: DateTime<Utc>,
    ) -> Result<Created, StoreError> {
        if let Some(existing) = self
            .by_reference
            .get(&new.reference_code)
            .and_then(|id| self.orders.get(id))
        {
            let same = existing.amount == new.amount
                && existing.payment.kind == new.kind
                && existing.method.same_request(&new.method);
            return if same {
                Ok(Created::Existing(Box::new(existing.clone())))
            } else {
                Err(StoreError::ReferenceReused)
            };
        }
        if self.orders.len() >= self.capacity {
            return Err(StoreError::CapacityExhausted);
        }
        let (method, state, response_code, pending_reason) = match new.method {
            NewMethod::Card { franchise, outcome } => {
                let (state, code, pending) = match outcome {
                    CardOutcome::Approve => (TxState::Approved, "APPROVED", None),
                    CardOutcome::Decline => (TxState::Declined, "ENTITY_DECLINED", None),
                    CardOutcome::Error => (TxState::Error, "INTERNAL_PAYMENT_PROVIDER_ERROR", None),
                    CardOutcome::PendingThenApprove => (
                        TxState::Pending,
                        "PENDING_TRANSACTION_REVIEW",
                        Some("PENDING_REVIEW"),
                    ),
                };
                (Method::Card { franchise, outcome }, state, code, pending)
            }
            NewMethod::Efecty { expires_at } => (
                Method::Efecty {
                    code: self.new_efecty_code()?,
                    expires_at,
                },
                TxState::Pending,
                "PENDING_TRANSACTION_CONFIRMATION",
                Some("AWAITING_NOTIFICATION"),
            ),
            NewMethod::Pse { bank, approves } => (
                Method::Pse { bank, approves },
                TxState::Pending,
                "PENDING_TRANSACTION_CONFIRMATION",
                Some("AWAITING_NOTIFICATION"),
            ),
        };
        let order_id = self.next_order_id;
        self.next_order_id += 1;
        let currency = new.amount.currency();
        let captured = if state == TxState::Approved && new.kind == TxType::AuthorizationAndCapture
        {
            new.amount
        } else {
            Money::zero(currency)
        };
        let payment = Transaction {
            id: Uuid::new_v4().to_string(),
            kind: new.kind,
            parent: None,
            state,
            response_code,
            pending_reason,
            amount: None,
            reason: None,
            created_at: now,
        };
        if let Method::Efecty { code, expires_at } = &method {
            self.by_code.insert(code.clone(), order_id);
            self.expiries.insert((*expires_at, order_id));
        }
        let order = Order {
            id: order_id,
            reference_code: new.reference_code,
            description: new.description,
            amount: new.amount,
            buyer_email: new.buyer_email,
            method,
            payment,
            operations: Vec::new(),
            captured,
            refunded: Money::zero(currency),
            voided: false,
            muted: false,
        };
        self.by_reference
            .insert(order.reference_code.clone(), order_id);
        self.by_transaction
            .insert(order.payment.id.clone(), order_id);
        self.orders.insert(order_id, order.clone());
        Ok(Created::New(Box::new(order)))
    }

    /// A fresh 10-digit payment code no order holds.
    pub(crate) fn new_efecty_code(&self) -> Result<String, StoreError> {
        let low = 10u64.pow(EFECTY_CODE_DIGITS - 1);
        let high = 10u64.pow(EFECTY_CODE_DIGITS);
        let mut rng = rand::thread_rng();
        for _ in 0..EFECTY_CODE_ATTEMPTS_MAX {
            let code = rng.gen_range(low..high).to_string();
            if !self.by_code.contains_key(&code) {
                return Ok(code);
            }
        }
        Err(StoreError::CodesExhausted)
    }

    /// From now on the order's confirmations are never sent.
    pub(crate) fn mute(&mut self, order_id: u64) {
        if let Some(order) = self.orders.get_mut(&order_id) {
            order.muted = true;
        }
    }

    pub(crate) fn order(&self, id: u64) -> Option<&Order> {
        self.orders.get(&id)
    }

    pub(crate) fn order_by_reference(&self, reference: &str) -> Option<&Order> {
        self.by_reference
            .get(reference)
            .and_then(|id| self.orders.get(id))
    }

    pub(crate) fn order_of_transaction(&self, transaction_id: &str) -> Option<&Order> {
        self.by_transaction
            .get(transaction_id)
            .and_then(|id| self.orders.get(id))
    }

    pub(crate) fn order_by_code(&self, code: &str) -> Option<&Order> {
        self.by_code.get(code).and_then(|id| self.orders.get(id))
    }

    /// Ends a pending payment. Fails when it is not pending any more.
    pub(crate) fn settle(
        &mut self,
        order_id: u64,
        settlement: Settlement,
        _now: DateTime<Utc>,
    ) -> Result<Order, StoreError> {
        let order = self.orders.get_mut(&order_id).ok_or(StoreError::NotFound)?;
        if order.payment.state != TxState::Pending {
            return Err(StoreError::InvalidState("The transaction is not pending"));
        }
        if let Method::Efecty { expires_at, .. } = &order.method {
            self.expiries.remove(&(*expires_at, order_id));
        }
        let (state, code) = match settlement {
            Settlement::Approve => (TxState::Approved, "APPROVED"),
            Settlement::Decline(code) => (TxState::Declined, code),
            Settlement::Expire => (TxState::Expired, "EXPIRED_TRANSACTION"),
        };
        order.payment.state = state;
        order.payment.response_code = code;
        order.payment.pending_reason = None;
        if state == TxState::Approved && order.payment.kind == TxType::AuthorizationAndCapture {
            order.captured = order.amount;
        }
        Ok(order.clone())
    }

    /// Takes the earliest pending Efecty expiry that is due at `now`.
    pub(crate) fn pop_due_expiry(&mut self, now: DateTime<Utc>) -> Option<(DateTime<Utc>, u64)> {
        let first = *self.expiries.first()?;
        if first.0 > now {
            return None;
        }
        self.expiries.remove(&first);
        Some(first)
    }

    /// Puts back an expiry taken by [`Store::pop_due_expiry`] that could not be processed.
    pub(crate) fn restore_expiry(&mut self, entry: (DateTime<Utc>, u64)) {
        self.expiries.insert(entry);
    }

    fn operable(&mut self, order_id: u64, parent: &str) -> Result<&mut Order, StoreError> {
        let order = self.orders.get_mut(&order_id).ok_or(StoreError::NotFound)?;
        if order.payment.id != parent {
            return Err(StoreError::InvalidParent);
        }
        if order.operations.len() >= OPERATIONS_PER_ORDER_MAX {
            return Err(StoreError::TooManyOperations);
        }
        Ok(order)
    }

    fn record(
        &mut self,
        order_id: u64,
        kind: TxType,
        amount: Option<Money>,
        reason: Option<String>,
        now: DateTime<Utc>,
    ) -> Result<Transaction, StoreError> {
        let order = self.orders.get_mut(&order_id).ok_or(StoreError::NotFound)?;
        let tx = Transaction {
            id: Uuid::new_v4().to_string(),
            kind,
            parent: Some(order.payment.id.clone()),
            state: TxState::Approved,
            response_code: "APPROVED",
            pending_reason: None,
            amount,
            reason,
            created_at: now,
        };
        order.operations.push(tx.clone());
        self.by_transaction.insert(tx.id.clone(), order_id);
        Ok(tx)
    }

    /// Captures (part of) an approved authorization. Capturing again the amount already
    /// captured answers the first capture (a retry).
    pub(crate) fn capture(
        &mut self,
        order_id: u64,
        parent: &str,
        amount: Option<Money>,
        now: DateTime<Utc>,
    ) -> Result<Transaction, StoreError> {
        let order = self.operable(order_id, parent)?;
        let amount = amount.unwrap_or(order.amount);
        if amount.currency() != order.amount.currency() {
            return Err(StoreError::CurrencyMismatch);
        }
        if let Some(first) = order
            .operations
            .iter()
            .find(|o| o.kind == TxType::Capture && o.state == TxState::Approved)
        {
            return if first.amount == Some(amount) {
                Ok(first.clone())
            } else {
                Err(StoreError::InvalidState("The order was already captured"))
            };
        }
        let capturable = order.payment.kind == TxType::Authorization
            && order.payment.state == TxState::Approved
            && !order.voided;
        if !capturable {
            return Err(StoreError::InvalidState(
                "Only an approved authorization can be captured",
            ));
        }
        if amount.amount() > order.amount.amount() {
            return Err(StoreError::AmountExceeded);
        }
        order.captured = amount;
        self.record(order_id, TxType::Capture, Some(amount), None, now)
    }

    /// Voids an approved, uncaptured authorization; voiding again answers the first void.
    pub(crate) fn void(
        &mut self,
        order_id: u64,
        parent: &str,
        now: DateTime<Utc>,
    ) -> Result<Transaction, StoreError> {
        let order = self.operable(order_id, parent)?;
        if let Some(first) = order
            .operations
            .iter()
            .find(|o| o.kind == TxType::Void && o.state == TxState::Approved)
        {
            return Ok(first.clone());
        }
        let voidable = order.payment.kind == TxType::Authorization
            && order.payment.state == TxState::Approved
            && order.captured.is_zero();
        if !voidable {
            return Err(StoreError::InvalidState(
                "Only an approved, uncaptured authorization can be voided",
            ));
        }
        order.voided = true;
        self.record(order_id, TxType::Void, None, None, now)
    }

    /// Refunds (part of) what was captured. A refund with the same reason and amount as an
    /// earlier one answers that refund (PayU has no idempotency key; payledger puts its
    /// refund id in the reason).
    pub(crate) fn refund(
        &mut self,
        order_id: u64,
        parent: &str,
        amount: Option<Money>,
        reason: String,
        now: DateTime<Utc>,
    ) -> Result<Transaction, StoreError> {
        let order = self.operable(order_id, parent)?;
        let currency = order.amount.currency();
        if amount.is_some_and(|a| a.currency() != currency) {
            return Err(StoreError::CurrencyMismatch);
        }
        if let Some(first) = order
            .operations
            .iter()
            .find(|o| o.kind == TxType::Refund && o.reason.as_deref() == Some(reason.as_str()))
        {
            return if amount.is_none() || first.amount == amount {
                Ok(first.clone())
            } else {
                Err(StoreError::InvalidState(
                    "A refund with this reason was made for another amount",
                ))
            };
        }
        if order.payment.state != TxState::Approved || order.captured.is_zero() {
            return Err(StoreError::InvalidState(
                "Only a captured transaction can be refunded",
            ));
        }
        let left = order
            .captured
            .checked_sub(order.refunded)
            .map_err(|_| StoreError::AmountExceeded)?;
        let amount = amount.unwrap_or(left);
        if amount.is_zero() || amount.amount() > left.amount() {
            return Err(StoreError::AmountExceeded);
        }
        order.refunded = order
            .refunded
            .checked_add(amount)
            .map_err(|_| StoreError::AmountExceeded)?;
        self.record(order_id, TxType::Refund, Some(amount), Some(reason), now)
    }
}

/// A confirmation ("confirmation page" POST) about an order's payment, unsigned: the
/// dispatcher adds `merchant_id`, `sign` and `attempts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Confirmation {
    pub reference_sale: String,
    pub reference_pol: u64,
    pub transaction_id: String,
    /// Two decimals, as PayU sends it (`150.00`).
    pub value: String,
    pub currency: Currency,
    pub state_pol: &'static str,
    pub response_message_pol: &'static str,
    pub response_code_pol: &'static str,
    pub transaction_type: &'static str,
    pub payment_method_type: u8,
    pub payment_method_name: String,
    pub email_buyer: String,
    pub description: String,
    pub transaction_date: String,
    pub pse_bank: String,
}

impl Store {
    /// The confirmation of an order whose payment reached a final state.
    pub(crate) fn confirmation(&self, order_id: u64) -> Option<Confirmation> {
        let order = self.orders.get(&order_id)?;
        let state_pol = order.payment.state.state_pol()?;
        let mut value = order.amount.amount();
        value.rescale(2);
        Some(Confirmation {
            reference_sale: order.reference_code.clone(),
            reference_pol: order.id,
            transaction_id: order.payment.id.clone(),
            value: value.to_string(),
            currency: order.amount.currency(),
            state_pol,
            response_message_pol: order.payment.response_code,
            response_code_pol: response_code_pol(order.payment.response_code),
            transaction_type: order.payment.kind.as_str(),
            payment_method_type: order.method.type_code(),
            payment_method_name: order.method.name().to_owned(),
            email_buyer: order.buyer_email.clone().unwrap_or_default(),
            description: order.description.clone(),
            transaction_date: order
                .payment
                .created_at
                .format("%Y-%m-%d %H:%M:%S")
                .to_string(),
            pse_bank: match &order.method {
                Method::Pse { bank, .. } => bank.clone(),
                _ => String::new(),
            },
        })
    }
}

/// PayU's numeric `response_code_pol` for a response message.
fn response_code_pol(message: &str) -> &'static str {
    match message {
        "APPROVED" => "1",
        "PAYMENT_NETWORK_REJECTED" => "4",
        "ENTITY_DECLINED" => "5",
        "ABANDONED_TRANSACTION" => "19",
        "EXPIRED_TRANSACTION" => "20",
        _ => "9999",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn cop(s: &str) -> Money {
        Money::parse(s, Currency::COP).unwrap()
    }

    fn efecty(reference: &str, expires_at: DateTime<Utc>) -> NewPayment {
        NewPayment {
            reference_code: reference.into(),
            description: "d".into(),
            amount: cop("50000"),
            buyer_email: None,
            kind: TxType::AuthorizationAndCapture,
            method: NewMethod::Efecty { expires_at },
        }
    }

    fn card(reference: &str, kind: TxType, outcome: CardOutcome) -> NewPayment {
        NewPayment {
            reference_code: reference.into(),
            description: "d".into(),
            amount: cop("100000"),
            buyer_email: Some("a@b.co".into()),
            kind,
            method: NewMethod::Card {
                franchise: "VISA".into(),
                outcome,
            },
        }
    }

    fn new(created: Created) -> Order {
        match created {
            Created::New(o) => *o,
            Created::Existing(_) => panic!("expected a new order"),
        }
    }

    #[test]
    fn ten_thousand_efecty_codes_are_unique() {
        let now = Utc::now();
        let mut store = Store::new(20_000);
        let mut codes = HashSet::new();
        for i in 0..10_000 {
            let order = new(store
                .create(
                    efecty(&format!("ref-{i}"), now + chrono::Duration::days(7)),
                    now,
                )
                .unwrap());
            let Method::Efecty { code, .. } = order.method else {
                panic!("not efecty");
            };
            assert_eq!(code.len(), EFECTY_CODE_DIGITS as usize);
            assert!(code.bytes().all(|b| b.is_ascii_digit()));
            assert!(codes.insert(code.clone()), "duplicate code {code}");
            assert_eq!(store.order_by_code(&code).map(|o| o.id), Some(order.id));
        }
        assert_eq!(codes.len(), 10_000);
    }

    #[test]
    fn a_repeated_reference_answers_the_first_order_or_conflicts() {
        let now = Utc::now();
        let mut store = Store::new(10);
        let first = new(store
            .create(
                card("r1", TxType::AuthorizationAndCapture, CardOutcome::Approve),
                now,
            )
            .unwrap());
        let Created::Existing(again) = store
            .create(
                card("r1", TxType::AuthorizationAndCapture, CardOutcome::Approve),
                now,
            )
            .unwrap()
        else {
            panic!("expected the first order");
        };
        assert_eq!(again.payment.id, first.payment.id);
        assert!(matches!(
            store.create(card("r1", TxType::Authorization, CardOutcome::Approve), now),
            Err(StoreError::ReferenceReused)
        ));
        assert_eq!(store.len(), 1);
    }

    #[test]
    fn capacity_is_bounded() {
        let now = Utc::now();
        let mut store = Store::new(1);
        store
            .create(
                card("a", TxType::AuthorizationAndCapture, CardOutcome::Approve),
                now,
            )
            .unwrap();
        assert!(matches!(
            store.create(
                card("b", TxType::AuthorizationAndCapture, CardOutcome::Approve),
                now
            ),
            Err(StoreError::CapacityExhausted)
        ));
    }

    #[test]
    fn authorization_capture_void_and_refund_rules() {
        let now = Utc::now();
        let mut store = Store::new(10);
        let auth = new(store
            .create(card("a", TxType::Authorization, CardOutcome::Approve), now)
            .unwrap());
        assert_eq!(auth.status(), "AUTHORIZED");
        assert!(auth.captured.is_zero());
        assert!(matches!(
            store.capture(auth.id, "not-the-parent", None, now),
            Err(StoreError::InvalidParent)
        ));
        assert!(matches!(
            store.capture(auth.id, &auth.payment.id, Some(cop("100001")), now),
            Err(StoreError::AmountExceeded)
        ));
        let capture = store
            .capture(auth.id, &auth.payment.id, Some(cop("60000")), now)
            .unwrap();
        let again = store
            .capture(auth.id, &auth.payment.id, Some(cop("60000")), now)
            .unwrap();
        assert_eq!(capture.id, again.id);
        assert!(store
            .capture(auth.id, &auth.payment.id, Some(cop("50000")), now)
            .is_err());
        assert!(store.void(auth.id, &auth.payment.id, now).is_err());
        assert_eq!(store.order(auth.id).unwrap().status(), "CAPTURED");

        let r1 = store
            .refund(
                auth.id,
                &auth.payment.id,
                Some(cop("10000")),
                "r-1".into(),
                now,
            )
            .unwrap();
        let r1_again = store
            .refund(
                auth.id,
                &auth.payment.id,
                Some(cop("10000")),
                "r-1".into(),
                now,
            )
            .unwrap();
        assert_eq!(r1.id, r1_again.id);
        assert!(matches!(
            store.refund(
                auth.id,
                &auth.payment.id,
                Some(cop("50001")),
                "r-2".into(),
                now
            ),
            Err(StoreError::AmountExceeded)
        ));
        store
            .refund(auth.id, &auth.payment.id, None, "r-3".into(), now)
            .unwrap();
        let order = store.order(auth.id).unwrap();
        assert_eq!(order.refunded, cop("60000"));
        assert_eq!(order.status(), "REFUNDED");

        let other = new(store
            .create(card("b", TxType::Authorization, CardOutcome::Approve), now)
            .unwrap());
        let void = store.void(other.id, &other.payment.id, now).unwrap();
        assert_eq!(
            store.void(other.id, &other.payment.id, now).unwrap().id,
            void.id
        );
        assert!(store
            .capture(other.id, &other.payment.id, None, now)
            .is_err());
        assert_eq!(store.order(other.id).unwrap().status(), "CANCELLED");

        let declined = new(store
            .create(
                card("c", TxType::AuthorizationAndCapture, CardOutcome::Decline),
                now,
            )
            .unwrap());
        assert!(store
            .refund(declined.id, &declined.payment.id, None, "x".into(), now)
            .is_err());
    }

    #[test]
    fn pending_payments_settle_once_and_expiries_pop_in_order() {
        let now = Utc::now();
        let mut store = Store::new(10);
        let late = new(store
            .create(efecty("late", now + chrono::Duration::seconds(60)), now)
            .unwrap());
        let soon = new(store
            .create(efecty("soon", now + chrono::Duration::seconds(1)), now)
            .unwrap());
        assert_eq!(store.pop_due_expiry(now), None);
        let due = now + chrono::Duration::seconds(2);
        let entry = store.pop_due_expiry(due).unwrap();
        assert_eq!(entry.1, soon.id);
        store.restore_expiry(entry);
        let entry = store.pop_due_expiry(due).unwrap();
        store.settle(entry.1, Settlement::Expire, due).unwrap();
        assert_eq!(store.pop_due_expiry(due), None);
        assert!(store.settle(soon.id, Settlement::Approve, due).is_err());
        let confirmation = store.confirmation(soon.id).unwrap();
        assert_eq!(confirmation.state_pol, "5");
        assert_eq!(confirmation.response_message_pol, "EXPIRED_TRANSACTION");
        assert_eq!(confirmation.value, "50000.00");

        // Paying removes the expiry.
        store.settle(late.id, Settlement::Approve, now).unwrap();
        assert_eq!(store.pop_due_expiry(now + chrono::Duration::days(1)), None);
        assert_eq!(store.order(late.id).unwrap().captured, cop("50000"));
        assert!(store.confirmation(late.id).is_some());
    }
}
