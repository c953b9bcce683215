//! The Wompi emulator's in-memory transactions and card tokens, and their rules, free of
//! HTTP so they can be tested directly. One `State` sits behind a `Mutex`; nothing here awaits.

use std::collections::{HashMap, VecDeque};

use chrono::{DateTime, SecondsFormat, Utc};

/// The merchant id of the emulated account (the first part of transaction ids).
pub(crate) const MERCHANT_ID: u32 = 112_233;

/// The `status_message` of a declined transaction, as Wompi's sandbox words it.
pub const DECLINED_MESSAGE: &str = "Transacción rechazada en Sandbox";
/// The `status_message` of a transaction that ended in `ERROR`.
pub const ERROR_MESSAGE: &str = "Transacción con ERROR en Sandbox";
/// The `status_message` of a PSE payment the customer abandoned at the bank.
pub const ABANDONED_MESSAGE: &str = "El usuario abandonó el pago en PSE";

/// What Wompi's sandbox test data decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Approve,
    Decline,
    Error,
}

impl Outcome {
    /// Cards: 4242 4242 4242 4242 approved, 4111 1111 1111 1111 declined, any other error.
    pub(crate) fn of_card(number: &str) -> Outcome {
        match number {
            "4242424242424242" => Outcome::Approve,
            "4111111111111111" => Outcome::Decline,
            _ => Outcome::Error,
        }
    }

    /// Nequi: 3991111111 approved, 3992222222 declined, any other error.
    pub(crate) fn of_nequi(phone_number: &str) -> Outcome {
        match phone_number {
            "3991111111" => Outcome::Approve,
            "3992222222" => Outcome::Decline,
            _ => Outcome::Error,
        }
    }

    /// PSE banks: "1" approves, "2" declines; no other bank exists in the sandbox.
    pub(crate) fn of_pse_bank(code: &str) -> Option<Outcome> {
        match code {
            "1" => Some(Outcome::Approve),
            "2" => Some(Outcome::Decline),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    Pending,
    Approved,
    Declined,
    Voided,
    Error,
}

impl Status {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "PENDING",
            Status::Approved => "APPROVED",
            Status::Declined => "DECLINED",
            Status::Voided => "VOIDED",
            Status::Error => "ERROR",
        }
    }
}

/// A tokenized test card. The card number itself is not kept.
#[derive(Debug, Clone)]
pub(crate) struct CardToken {
    pub outcome: Outcome,
    pub brand: &'static str,
    pub last_four: String,
    /// Two digits each, as tokenized (`"08"`, `"29"`): what a card source shows.
    pub exp_month: String,
    pub exp_year: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Method {
    Card {
        token: String,
        installments: u32,
        brand: &'static str,
        last_four: String,
        outcome: Outcome,
    },
    Nequi {
        phone_number: String,
        outcome: Outcome,
    },
    Pse {
        user_type: u8,
        user_legal_id_type: String,
        user_legal_id: String,
        financial_institution_code: String,
        payment_description: String,
        outcome: Outcome,
    },
}

impl Method {
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Method::Card { .. } => "CARD",
            Method::Nequi { .. } => "NEQUI",
            Method::Pse { .. } => "PSE",
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Transaction {
    pub id: String,
    pub created_at: DateTime<Utc>,
    pub finalized_at: Option<DateTime<Utc>>,
    pub amount_in_cents: i64,
    pub currency: String,
    pub reference: String,
    pub customer_email: String,
    pub redirect_url: Option<String>,
    pub method: Method,
    /// The saved source charged, when the create named one.
    pub payment_source_id: Option<i64>,
    pub status: Status,
    pub status_message: Option<&'static str>,
    /// PSE: the bank page the customer must visit.
    pub async_payment_url: Option<String>,
}

/// A validated create request.
#[derive(Debug, Clone)]
pub(crate) struct NewTransaction {
    pub amount_in_cents: i64,
    pub currency: String,
    pub reference: String,
    pub customer_email: String,
    pub redirect_url: Option<String>,
    pub method: Method,
    pub payment_source_id: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StateError {
    NotFound,
    DuplicateReference,
    /// The transaction's method or status does not allow this.
    InvalidState,
    CapacityExhausted,
}

pub(crate) struct State {
    transactions: HashMap<String, Transaction>,
    by_reference: HashMap<String, String>,
    tokens: HashMap<String, CardToken>,
    token_order: VecDeque<String>,
    transactions_max: usize,
    tokens_max: usize,
    sequence: u64,
}

impl State {
    pub(crate) fn new(transactions_max: usize, tokens_max: usize) -> Self {
        State {
            transactions: HashMap::new(),
            by_reference: HashMap::new(),
            tokens: HashMap::new(),
            token_order: VecDeque::new(),
            transactions_max,
            tokens_max: tokens_max.max(1),
            sequence: 0,
        }
    }

    /// Keeps a card token; past `tokens_max` the oldest token is forgotten (Wompi's expire).
    pub(crate) fn add_token(&mut self, id: String, token: CardToken) {
        while self.tokens.len() >= self.tokens_max {
            match self.token_order.pop_front() {
                Some(oldest) => {
                    self.tokens.remove(&oldest);
                }
                None => break,
            }
        }
        self.token_order.push_back(id.clone());
        self.tokens.insert(id, token);
    }

    pub(crate) fn token(&self, id: &str) -> Option<&CardToken> {
        self.tokens.get(id)
    }

    /// Creates a `PENDING` transaction. A reference is used once (Wompi answers `422`).
    /// `pse_page_base` is where the bank page of a PSE transaction lives.
    pub(crate) fn create(
        &mut self,
        new: NewTransaction,
        pse_page_base: &str,
        now: DateTime<Utc>,
    ) -> Result<Transaction, StateError> {
        if self.by_reference.contains_key(&new.reference) {
            return Err(StateError::DuplicateReference);
        }
        if self.transactions.len() >= self.transactions_max {
            return Err(StateError::CapacityExhausted);
        }
        self.sequence += 1;
        let id = format!("{MERCHANT_ID}-{}-{:05}", now.timestamp(), self.sequence);
        let async_payment_url = match new.method {
            Method::Pse { .. } => Some(format!("{pse_page_base}/_sandbox/pse/{id}")),
            _ => None,
        };
        let transaction = Transaction {
            id: id.clone(),
            created_at: now,
            finalized_at: None,
            amount_in_cents: new.amount_in_cents,
            currency: new.currency,
            reference: new.reference,
            customer_email: new.customer_email,
            redirect_url: new.redirect_url,
            method: new.method,
            payment_source_id: new.payment_source_id,
            status: Status::Pending,
            status_message: None,
            async_payment_url,
        };
        self.by_reference
            .insert(transaction.reference.clone(), id.clone());
        self.transactions.insert(id, transaction.clone());
        Ok(transaction)
    }

    pub(crate) fn get(&self, id: &str) -> Option<&Transaction> {
        self.transactions.get(id)
    }

    pub(crate) fn find_by_reference(&self, reference: &str) -> Option<&Transaction> {
        self.by_reference
            .get(reference)
            .and_then(|id| self.transactions.get(id))
    }

    /// Card and Nequi transactions resolve on their own once due. `None` when there is
    /// nothing to decide (unknown, PSE, or decided already).
    pub(crate) fn decide(&mut self, id: &str, now: DateTime<Utc>) -> Option<Transaction> {
        let tx = self.transactions.get_mut(id)?;
        if tx.status != Status::Pending {
            return None;
        }
        let outcome = match &tx.method {
            Method::Card { outcome, .. } | Method::Nequi { outcome, .. } => *outcome,
            Method::Pse { .. } => return None,
        };
        finish(tx, outcome, now);
        Some(tx.clone())
    }

    /// The customer completed the PSE payment at the bank: bank "1" approves, "2" declines.
    pub(crate) fn complete_pse(
        &mut self,
        id: &str,
        now: DateTime<Utc>,
    ) -> Result<Transaction, StateError> {
        let tx = self.pending_pse(id)?;
        let outcome = match &tx.method {
            Method::Pse { outcome, .. } => *outcome,
            _ => return Err(StateError::InvalidState),
        };
        finish(tx, outcome, now);
        Ok(tx.clone())
    }

    /// The customer left the PSE page without paying: the transaction ends in `ERROR`
    /// ("the customer abandoned", which payledger records as failed, not declined).
    pub(crate) fn abandon_pse(
        &mut self,
        id: &str,
        now: DateTime<Utc>,
    ) -> Result<Transaction, StateError> {
        let tx = self.pending_pse(id)?;
        tx.status = Status::Error;
        tx.status_message = Some(ABANDONED_MESSAGE);
        tx.finalized_at = Some(now);
        tx.async_payment_url = None;
        Ok(tx.clone())
    }

    fn pending_pse(&mut self, id: &str) -> Result<&mut Transaction, StateError> {
        let tx = self.transactions.get_mut(id).ok_or(StateError::NotFound)?;
        if !matches!(tx.method, Method::Pse { .. }) || tx.status != Status::Pending {
            return Err(StateError::InvalidState);
        }
        Ok(tx)
    }

    /// Voids an approved card transaction (Wompi voids cards only).
    pub(crate) fn void(&mut self, id: &str, now: DateTime<Utc>) -> Result<Transaction, StateError> {
        let tx = self.transactions.get_mut(id).ok_or(StateError::NotFound)?;
        if !matches!(tx.method, Method::Card { .. }) || tx.status != Status::Approved {
            return Err(StateError::InvalidState);
        }
        tx.status = Status::Voided;
        tx.finalized_at = Some(now);
        Ok(tx.clone())
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> (usize, usize) {
        (self.transactions.len(), self.tokens.len())
    }
}

fn finish(tx: &mut Transaction, outcome: Outcome, now: DateTime<Utc>) {
    let (status, message) = match outcome {
        Outcome::Approve => (Status::Approved, None),
        Outcome::Decline => (Status::Declined, Some(DECLINED_MESSAGE)),
        Outcome::Error => (Status::Error, Some(ERROR_MESSAGE)),
    };
    tx.status = status;
    tx.status_message = message;
    tx.finalized_at = Some(now);
    tx.async_payment_url = None;
}

pub(crate) fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_tx(reference: &str, method: Method) -> NewTransaction {
        NewTransaction {
            amount_in_cents: 12_900_000,
            currency: "COP".into(),
            reference: reference.into(),
            customer_email: "a@b.co".into(),
            redirect_url: None,
            method,
            payment_source_id: None,
        }
    }

    fn card(outcome: Outcome) -> Method {
        Method::Card {
            token: "tok_test_1".into(),
            installments: 1,
            brand: "VISA",
            last_four: "4242".into(),
            outcome,
        }
    }

    fn pse(code: &str) -> Method {
        Method::Pse {
            user_type: 0,
            user_legal_id_type: "CC".into(),
            user_legal_id: "1999888777".into(),
            financial_institution_code: code.into(),
            payment_description: "Pago".into(),
            outcome: Outcome::of_pse_bank(code).unwrap(),
        }
    }

    #[test]
    fn test_data_decides_like_wompis_sandbox() {
        assert_eq!(Outcome::of_card("4242424242424242"), Outcome::Approve);
        assert_eq!(Outcome::of_card("4111111111111111"), Outcome::Decline);
        assert_eq!(Outcome::of_card("5555555555554444"), Outcome::Error);
        assert_eq!(Outcome::of_nequi("3991111111"), Outcome::Approve);
        assert_eq!(Outcome::of_nequi("3992222222"), Outcome::Decline);
        assert_eq!(Outcome::of_nequi("3001234567"), Outcome::Error);
        assert_eq!(Outcome::of_pse_bank("1"), Some(Outcome::Approve));
        assert_eq!(Outcome::of_pse_bank("2"), Some(Outcome::Decline));
        assert_eq!(Outcome::of_pse_bank("3"), None);
    }

    #[test]
    fn references_are_used_once_and_capacity_is_bounded() {
        let mut state = State::new(2, 10);
        let now = Utc::now();
        let a = state
            .create(new_tx("r1", card(Outcome::Approve)), "http://h", now)
            .unwrap();
        assert!(a.id.starts_with("112233-"));
        assert_eq!(
            state
                .create(new_tx("r1", card(Outcome::Approve)), "http://h", now)
                .unwrap_err(),
            StateError::DuplicateReference
        );
        let b = state
            .create(new_tx("r2", pse("1")), "http://h", now)
            .unwrap();
        assert_ne!(a.id, b.id);
        assert_eq!(
            b.async_payment_url.as_deref(),
            Some(format!("http://h/_sandbox/pse/{}", b.id).as_str())
        );
        assert_eq!(
            state
                .create(new_tx("r3", card(Outcome::Approve)), "http://h", now)
                .unwrap_err(),
            StateError::CapacityExhausted
        );
        assert_eq!(state.find_by_reference("r2").unwrap().id, b.id);
    }

    #[test]
    fn cards_decide_once_and_void_only_when_approved() {
        let mut state = State::new(10, 10);
        let now = Utc::now();
        let ok = state
            .create(new_tx("a", card(Outcome::Approve)), "h", now)
            .unwrap();
        let no = state
            .create(new_tx("b", card(Outcome::Decline)), "h", now)
            .unwrap();
        let err = state
            .create(new_tx("c", card(Outcome::Error)), "h", now)
            .unwrap();
        assert_eq!(
            state.void(&ok.id, now).unwrap_err(),
            StateError::InvalidState,
            "pending"
        );
        assert_eq!(state.decide(&ok.id, now).unwrap().status, Status::Approved);
        assert!(state.decide(&ok.id, now).is_none());
        let d = state.decide(&no.id, now).unwrap();
        assert_eq!(
            (d.status, d.status_message),
            (Status::Declined, Some(DECLINED_MESSAGE))
        );
        assert_eq!(state.decide(&err.id, now).unwrap().status, Status::Error);
        assert_eq!(state.void(&ok.id, now).unwrap().status, Status::Voided);
        assert_eq!(
            state.void(&ok.id, now).unwrap_err(),
            StateError::InvalidState
        );
        assert_eq!(
            state.void(&no.id, now).unwrap_err(),
            StateError::InvalidState
        );
        assert_eq!(state.void("nope", now).unwrap_err(), StateError::NotFound);
    }

    #[test]
    fn pse_waits_for_the_customer() {
        let mut state = State::new(10, 10);
        let now = Utc::now();
        let one = state.create(new_tx("a", pse("1")), "h", now).unwrap();
        let two = state.create(new_tx("b", pse("2")), "h", now).unwrap();
        let gone = state.create(new_tx("c", pse("1")), "h", now).unwrap();
        assert!(
            state.decide(&one.id, now).is_none(),
            "PSE never decides alone"
        );
        let done = state.complete_pse(&one.id, now).unwrap();
        assert_eq!(done.status, Status::Approved);
        assert!(done.async_payment_url.is_none());
        assert_eq!(
            state.complete_pse(&one.id, now).unwrap_err(),
            StateError::InvalidState
        );
        assert_eq!(
            state.complete_pse(&two.id, now).unwrap().status,
            Status::Declined
        );
        let abandoned = state.abandon_pse(&gone.id, now).unwrap();
        assert_eq!(
            (abandoned.status, abandoned.status_message),
            (Status::Error, Some(ABANDONED_MESSAGE))
        );
        assert_eq!(
            state.complete_pse("nope", now).unwrap_err(),
            StateError::NotFound
        );
        let c = state
            .create(new_tx("d", card(Outcome::Approve)), "h", now)
            .unwrap();
        assert_eq!(
            state.abandon_pse(&c.id, now).unwrap_err(),
            StateError::InvalidState
        );
    }

    #[test]
    fn tokens_are_bounded_oldest_first() {
        let mut state = State::new(10, 2);
        let token = || CardToken {
            outcome: Outcome::Approve,
            brand: "VISA",
            last_four: "4242".into(),
            exp_month: "12".into(),
            exp_year: "35".into(),
        };
        state.add_token("t1".into(), token());
        state.add_token("t2".into(), token());
        state.add_token("t3".into(), token());
        assert_eq!(state.len().1, 2);
        assert!(state.token("t1").is_none());
        assert!(state.token("t3").is_some());
    }
}
