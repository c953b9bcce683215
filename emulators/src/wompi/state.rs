//! The Wompi emulator's in-memory transactions and card tokens, and their rules, free of
//! HTTP so they can be tested directly. One `State` sits behind a `Mutex`; nothing here awaits.

use std::collections::{HashMap, VecDeque};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chrono::{DateTime, SecondsFormat, Utc};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use uuid::Uuid;

/// The merchant id of the emulated account (the first part of transaction ids).
pub(crate) const MERCHANT_ID: u32 = 112_233;

/// The `status_message` of a declined transaction, as Wompi's sandbox words it.
pub const DECLINED_MESSAGE: &str = "Transacción rechazada en Sandbox";
/// The `status_message` of a transaction that ended in `ERROR`.
pub const ERROR_MESSAGE: &str = "Transacción con ERROR en Sandbox";
/// The `status_message` of a PSE payment the customer abandoned at the bank.
pub const ABANDONED_MESSAGE: &str = "El usuario abandonó el pago en PSE";
/// The `status_message` of a transaction its `expiration_time` closed unpaid (Wompi has no
/// `EXPIRED` status: it ends `DECLINED`).
pub const EXPIRED_MESSAGE: &str = "La transacción expiró sin que el pago se completara";
/// The `status_message` of Daviplata's OTP 186743 (declined for lack of funds).
pub const INSUFFICIENT_FUNDS_MESSAGE: &str = "Fondos insuficientes";
/// The `status_message` of a Daviplata payment after [`OTP_ATTEMPTS_MAX`] wrong codes.
pub const OTP_EXHAUSTED_MESSAGE: &str = "Se agotaron los intentos para ingresar el código OTP";

/// Wrong Daviplata codes taken before the payment is declined.
pub const OTP_ATTEMPTS_MAX: u32 = 3;
/// Codes Daviplata sends for one payment: the first, and resends up to this many in all.
pub const OTP_SENDS_MAX: u32 = 3;

/// Daviplata's sandbox codes (Wompi's test data): the code the customer types decides.
pub const OTP_APPROVED: &str = "574829";
pub const OTP_DECLINED: &str = "932015";
pub const OTP_INSUFFICIENT_FUNDS: &str = "186743";
pub const OTP_ERROR: &str = "999999";

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

    /// Bancolombia QR's `sandbox_status`: the outcome the sandbox decides on its own.
    pub(crate) fn of_sandbox_status(status: &str) -> Option<Outcome> {
        match status {
            "APPROVED" => Some(Outcome::Approve),
            "DECLINED" => Some(Outcome::Decline),
            "ERROR" => Some(Outcome::Error),
            _ => None,
        }
    }

    /// A Daviplata code: the outcome and its `status_message`; `None` for a wrong code.
    pub(crate) fn of_otp(code: &str) -> Option<(Outcome, Option<&'static str>)> {
        match code {
            OTP_APPROVED => Some((Outcome::Approve, None)),
            OTP_DECLINED => Some((Outcome::Decline, Some(DECLINED_MESSAGE))),
            OTP_INSUFFICIENT_FUNDS => Some((Outcome::Decline, Some(INSUFFICIENT_FUNDS_MESSAGE))),
            OTP_ERROR => Some((Outcome::Error, Some(ERROR_MESSAGE))),
            _ => None,
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
    /// Decided by the customer at Bancolombia's page.
    BancolombiaTransfer {
        /// `"PERSON"`: the only kind Wompi's button takes.
        user_type: String,
        payment_description: String,
    },
    /// Decided by the customer's bank app once scanned, or alone by `sandbox_status`.
    BancolombiaQr {
        payment_description: Option<String>,
        sandbox_status: Option<Outcome>,
    },
    /// Decided by the code the customer types (see [`Outcome::of_otp`]).
    Daviplata {
        user_legal_id_type: String,
        user_legal_id: String,
        payment_description: Option<String>,
    },
}

impl Method {
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Method::Card { .. } => "CARD",
            Method::Nequi { .. } => "NEQUI",
            Method::Pse { .. } => "PSE",
            Method::BancolombiaTransfer { .. } => "BANCOLOMBIA_TRANSFER",
            Method::BancolombiaQr { .. } => "BANCOLOMBIA_QR",
            Method::Daviplata { .. } => "DAVIPLATA",
        }
    }
}

/// The QR a Bancolombia QR transaction shows while pending (`extra.qr_id`, `qr_image`,
/// `external_identifier`).
#[derive(Debug, Clone)]
pub(crate) struct Qr {
    pub id: String,
    /// Base64 of an SVG, as Wompi sends it.
    pub image: String,
    pub external_identifier: String,
}

/// Daviplata's code step (`extra.url` and `extra.url_services`).
#[derive(Debug, Clone)]
pub(crate) struct Otp {
    /// The page where the customer types the code.
    pub url: String,
    /// Proves a validate or resend call comes from whoever was shown this transaction.
    pub token: String,
    pub send_url: String,
    pub validate_url: String,
    pub wrong: u32,
    pub sent: u32,
}

/// What checking a Daviplata code did.
#[derive(Debug, Clone)]
pub(crate) enum OtpCheck {
    /// The code decided the payment (or the last wrong one declined it).
    Decided(Box<Transaction>),
    /// A wrong code: the payment waits for another.
    Wrong { attempts_left: u32 },
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
    /// PSE and Bancolombia transfer: the bank page the customer must visit.
    pub async_payment_url: Option<String>,
    /// Bancolombia QR: the code to scan.
    pub qr: Option<Qr>,
    /// Daviplata: the code step.
    pub otp: Option<Otp>,
    /// From when `payment_method.extra` shows the step (Wompi publishes it after the create).
    pub published_at: DateTime<Utc>,
    /// Until when the customer may pay; past it a pending transaction ends `DECLINED`.
    pub expiration_time: Option<DateTime<Utc>>,
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
    pub expiration_time: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StateError {
    NotFound,
    DuplicateReference,
    /// The transaction's method or status does not allow this.
    InvalidState,
    CapacityExhausted,
    /// A Daviplata call without this transaction's `url_services.token`.
    WrongToken,
    /// Daviplata sent as many codes as it sends for one payment.
    TooManyCodes,
}

pub(crate) struct State {
    transactions: HashMap<String, Transaction>,
    by_reference: HashMap<String, String>,
    tokens: HashMap<String, CardToken>,
    token_order: VecDeque<String>,
    transactions_max: usize,
    tokens_max: usize,
    sequence: u64,
    /// How long after a create a rail's step appears in `extra`.
    publish_delay: chrono::Duration,
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
            publish_delay: chrono::Duration::zero(),
        }
    }

    /// Rails' steps appear `delay` after their create (PSE's bank page at once, as before).
    pub(crate) fn with_publish_delay(mut self, delay: std::time::Duration) -> Self {
        self.publish_delay = chrono::Duration::from_std(delay).unwrap_or_default();
        self
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
        let base = pse_page_base;
        let async_payment_url = match new.method {
            Method::Pse { .. } => Some(format!("{base}/_sandbox/pse/{id}")),
            Method::BancolombiaTransfer { .. } => Some(format!("{base}/_sandbox/bancolombia/{id}")),
            _ => None,
        };
        let qr = matches!(new.method, Method::BancolombiaQr { .. }).then(|| Qr {
            image: STANDARD.encode(qr_svg(&id, new.amount_in_cents)),
            id: Uuid::new_v4().to_string(),
            external_identifier: format!("{:012}", self.sequence),
        });
        let otp = matches!(new.method, Method::Daviplata { .. }).then(|| Otp {
            url: format!("{base}/_sandbox/daviplata/{id}"),
            token: Uuid::new_v4().simple().to_string(),
            send_url: format!("{base}/_sandbox/daviplata/{id}/otp/send"),
            validate_url: format!("{base}/_sandbox/daviplata/{id}/otp/validate"),
            wrong: 0,
            sent: 1,
        });
        let published_at = match new.method {
            Method::Pse { .. } => now,
            _ => now + self.publish_delay,
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
            qr,
            otp,
            published_at,
            expiration_time: new.expiration_time,
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
            Method::BancolombiaQr {
                sandbox_status: Some(outcome),
                ..
            } => *outcome,
            _ => return None,
        };
        finish(tx, outcome, now);
        Some(tx.clone())
    }

    /// The customer's answer at Bancolombia's page (a transfer) or in their bank app (a QR).
    pub(crate) fn decide_rail(
        &mut self,
        id: &str,
        kind: &str,
        outcome: Outcome,
        now: DateTime<Utc>,
    ) -> Result<Transaction, StateError> {
        let tx = self.pending(id)?;
        let waits = match &tx.method {
            Method::BancolombiaTransfer { .. } => kind == "BANCOLOMBIA_TRANSFER",
            Method::BancolombiaQr { .. } => kind == "BANCOLOMBIA_QR",
            _ => false,
        };
        if !waits {
            return Err(StateError::InvalidState);
        }
        finish(tx, outcome, now);
        Ok(tx.clone())
    }

    /// A code typed for a pending Daviplata payment, with its transaction's token.
    pub(crate) fn check_otp(
        &mut self,
        id: &str,
        token: &str,
        code: &str,
        now: DateTime<Utc>,
    ) -> Result<OtpCheck, StateError> {
        let tx = self.pending_daviplata(id, token)?;
        if let Some((outcome, message)) = Outcome::of_otp(code) {
            finish(tx, outcome, now);
            if message.is_some() {
                tx.status_message = message;
            }
            return Ok(OtpCheck::Decided(Box::new(tx.clone())));
        }
        let wrong = match tx.otp.as_mut() {
            Some(otp) => {
                otp.wrong += 1;
                otp.wrong
            }
            None => return Err(StateError::InvalidState),
        };
        if wrong >= OTP_ATTEMPTS_MAX {
            finish(tx, Outcome::Decline, now);
            tx.status_message = Some(OTP_EXHAUSTED_MESSAGE);
            return Ok(OtpCheck::Decided(Box::new(tx.clone())));
        }
        Ok(OtpCheck::Wrong {
            attempts_left: OTP_ATTEMPTS_MAX - wrong,
        })
    }

    /// Daviplata sends the code again: the number sent so far.
    pub(crate) fn resend_otp(&mut self, id: &str, token: &str) -> Result<u32, StateError> {
        let tx = self.pending_daviplata(id, token)?;
        let otp = tx.otp.as_mut().ok_or(StateError::InvalidState)?;
        if otp.sent >= OTP_SENDS_MAX {
            return Err(StateError::TooManyCodes);
        }
        otp.sent += 1;
        Ok(otp.sent)
    }

    fn pending_daviplata(&mut self, id: &str, token: &str) -> Result<&mut Transaction, StateError> {
        let tx = self.pending(id)?;
        let Some(otp) = tx.otp.as_ref() else {
            return Err(StateError::InvalidState);
        };
        if !bool::from(token.as_bytes().ct_eq(otp.token.as_bytes())) {
            return Err(StateError::WrongToken);
        }
        Ok(tx)
    }

    fn pending(&mut self, id: &str) -> Result<&mut Transaction, StateError> {
        let tx = self.transactions.get_mut(id).ok_or(StateError::NotFound)?;
        if tx.status != Status::Pending {
            return Err(StateError::InvalidState);
        }
        Ok(tx)
    }

    /// Whether `id` is pending past its `expiration_time` (to be closed, and reported).
    pub(crate) fn expiry_due(&self, id: &str, now: DateTime<Utc>) -> bool {
        self.transactions.get(id).is_some_and(|tx| {
            tx.status == Status::Pending && tx.expiration_time.is_some_and(|at| at <= now)
        })
    }

    /// The deadline passes now (or passed): a pending transaction ends `DECLINED`, unpaid.
    pub(crate) fn expire(
        &mut self,
        id: &str,
        now: DateTime<Utc>,
    ) -> Result<Transaction, StateError> {
        let tx = self.pending(id)?;
        let deadline = tx.expiration_time.map_or(now, |at| at.min(now));
        tx.expiration_time = Some(deadline);
        finish(tx, Outcome::Decline, now);
        tx.status_message = Some(EXPIRED_MESSAGE);
        Ok(tx.clone())
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
    tx.qr = None;
    tx.otp = None;
}

/// A QR-like SVG for transaction `id`: 25 by 25 modules drawn from SHA-256 of the id and the
/// amount, with the three finder squares, and the id in its title. Nothing scans it (the
/// sandbox has no bank app); it is the kind of image Wompi sends, and names its transaction.
pub(crate) fn qr_svg(id: &str, amount_in_cents: i64) -> String {
    const SIZE: usize = 25;
    let mut bits = Vec::with_capacity(SIZE * SIZE);
    let mut counter = 0u32;
    while bits.len() < SIZE * SIZE {
        let block = Sha256::new()
            .chain_update(id.as_bytes())
            .chain_update(amount_in_cents.to_string().as_bytes())
            .chain_update(counter.to_be_bytes())
            .finalize();
        for byte in block {
            for shift in 0..8 {
                bits.push((byte >> shift) & 1 == 1);
            }
        }
        counter += 1;
    }
    let finder = |x: usize, y: usize| {
        [(0, 0), (SIZE - 7, 0), (0, SIZE - 7)]
            .iter()
            .find(|(fx, fy)| (*fx..fx + 7).contains(&x) && (*fy..fy + 7).contains(&y))
            .map(|(fx, fy)| {
                let (dx, dy) = (x - fx, y - fy);
                let ring = dx.min(dy).min(6 - dx).min(6 - dy);
                ring != 1
            })
    };
    let mut path = String::new();
    for y in 0..SIZE {
        for x in 0..SIZE {
            if finder(x, y).unwrap_or(bits[y * SIZE + x]) {
                path.push_str(&format!("M{x} {y}h1v1h-1z"));
            }
        }
    }
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
         <svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"-2 -2 {side} {side}\" \
         shape-rendering=\"crispEdges\"><title>Bancolombia QR {id}</title>\
         <rect x=\"-2\" y=\"-2\" width=\"{side}\" height=\"{side}\" fill=\"#fff\"/>\
         <path d=\"{path}\" fill=\"#000\"/></svg>",
        side = SIZE + 4
    )
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
            expiration_time: None,
        }
    }

    fn transfer() -> Method {
        Method::BancolombiaTransfer {
            user_type: "PERSON".into(),
            payment_description: "Pago".into(),
        }
    }

    fn qr(sandbox_status: Option<Outcome>) -> Method {
        Method::BancolombiaQr {
            payment_description: None,
            sandbox_status,
        }
    }

    fn daviplata() -> Method {
        Method::Daviplata {
            user_legal_id_type: "CC".into(),
            user_legal_id: "1134568019".into(),
            payment_description: None,
        }
    }

    fn token(state: &State, id: &str) -> String {
        state.get(id).unwrap().otp.as_ref().unwrap().token.clone()
    }

    #[test]
    fn rails_wait_for_the_customer_and_publish_their_step_after_the_delay() {
        let mut state =
            State::new(10, 10).with_publish_delay(std::time::Duration::from_millis(100));
        let now = Utc::now();
        let t = state
            .create(new_tx("t", transfer()), "http://h", now)
            .unwrap();
        let q = state
            .create(new_tx("q", qr(None)), "http://h", now)
            .unwrap();
        let d = state
            .create(new_tx("d", daviplata()), "http://h", now)
            .unwrap();
        let p = state
            .create(new_tx("p", pse("1")), "http://h", now)
            .unwrap();
        assert_eq!(p.published_at, now, "PSE's bank page is there at once");
        for tx in [&t, &q, &d] {
            assert_eq!(tx.published_at, now + chrono::Duration::milliseconds(100));
            assert!(
                state.decide(&tx.id, now).is_none(),
                "{} waits",
                tx.method.kind()
            );
        }
        assert_eq!(
            t.async_payment_url.as_deref(),
            Some(format!("http://h/_sandbox/bancolombia/{}", t.id).as_str())
        );
        let image = &q.qr.as_ref().unwrap().image;
        let svg = String::from_utf8(STANDARD.decode(image).unwrap()).unwrap();
        assert!(svg.starts_with("<?xml") && svg.contains(&q.id), "{svg}");
        assert_eq!(qr_svg(&q.id, 12_900_000), svg, "deterministic");
        assert_ne!(qr_svg(&q.id, 1), svg);
        let otp = d.otp.as_ref().unwrap();
        assert_eq!(otp.url, format!("http://h/_sandbox/daviplata/{}", d.id));
        assert_eq!(otp.validate_url, format!("{}/otp/validate", otp.url));
        assert_eq!(otp.token.len(), 32);

        let approved = state
            .decide_rail(&t.id, "BANCOLOMBIA_TRANSFER", Outcome::Approve, now)
            .unwrap();
        assert_eq!(approved.status, Status::Approved);
        assert!(approved.async_payment_url.is_none());
        assert_eq!(
            state
                .decide_rail(&t.id, "BANCOLOMBIA_TRANSFER", Outcome::Decline, now)
                .unwrap_err(),
            StateError::InvalidState,
            "decided once"
        );
        assert_eq!(
            state
                .decide_rail(&q.id, "BANCOLOMBIA_TRANSFER", Outcome::Approve, now)
                .unwrap_err(),
            StateError::InvalidState,
            "a QR is not paid at Bancolombia's page"
        );
        let declined = state
            .decide_rail(&q.id, "BANCOLOMBIA_QR", Outcome::Decline, now)
            .unwrap();
        assert_eq!(
            (declined.status, declined.status_message),
            (Status::Declined, Some(DECLINED_MESSAGE))
        );
        assert!(declined.qr.is_none());
    }

    #[test]
    fn a_qr_with_a_sandbox_status_decides_alone() {
        assert_eq!(
            Outcome::of_sandbox_status("APPROVED"),
            Some(Outcome::Approve)
        );
        assert_eq!(
            Outcome::of_sandbox_status("DECLINED"),
            Some(Outcome::Decline)
        );
        assert_eq!(Outcome::of_sandbox_status("ERROR"), Some(Outcome::Error));
        assert_eq!(Outcome::of_sandbox_status("PENDING"), None);
        let mut state = State::new(10, 10);
        let now = Utc::now();
        let q = state
            .create(new_tx("q", qr(Some(Outcome::Error))), "h", now)
            .unwrap();
        assert_eq!(state.decide(&q.id, now).unwrap().status, Status::Error);
    }

    #[test]
    fn daviplata_takes_its_test_codes_refuses_wrong_ones_and_declines_after_three() {
        assert_eq!(Outcome::of_otp("574829"), Some((Outcome::Approve, None)));
        assert_eq!(
            Outcome::of_otp("932015"),
            Some((Outcome::Decline, Some(DECLINED_MESSAGE)))
        );
        assert_eq!(
            Outcome::of_otp("186743"),
            Some((Outcome::Decline, Some(INSUFFICIENT_FUNDS_MESSAGE)))
        );
        assert_eq!(
            Outcome::of_otp("999999"),
            Some((Outcome::Error, Some(ERROR_MESSAGE)))
        );
        assert_eq!(Outcome::of_otp("123456"), None);

        let mut state = State::new(10, 10);
        let now = Utc::now();
        let ok = state.create(new_tx("a", daviplata()), "h", now).unwrap();
        let poor = state.create(new_tx("b", daviplata()), "h", now).unwrap();
        let wrong = state.create(new_tx("c", daviplata()), "h", now).unwrap();
        assert_eq!(
            state
                .check_otp(&ok.id, "not-the-token", OTP_APPROVED, now)
                .unwrap_err(),
            StateError::WrongToken
        );
        let t = token(&state, &ok.id);
        let OtpCheck::Wrong { attempts_left } = state.check_otp(&ok.id, &t, "000000", now).unwrap()
        else {
            panic!("a wrong code decides nothing");
        };
        assert_eq!(attempts_left, 2);
        assert_eq!(state.get(&ok.id).unwrap().status, Status::Pending);
        let OtpCheck::Decided(done) = state.check_otp(&ok.id, &t, OTP_APPROVED, now).unwrap()
        else {
            panic!("the test code approves");
        };
        assert_eq!(done.status, Status::Approved);
        assert!(done.otp.is_none());
        assert_eq!(
            state.check_otp(&ok.id, &t, OTP_APPROVED, now).unwrap_err(),
            StateError::InvalidState
        );

        let t = token(&state, &poor.id);
        let OtpCheck::Decided(poor) = state
            .check_otp(&poor.id, &t, OTP_INSUFFICIENT_FUNDS, now)
            .unwrap()
        else {
            panic!("decided");
        };
        assert_eq!(
            (poor.status, poor.status_message),
            (Status::Declined, Some(INSUFFICIENT_FUNDS_MESSAGE))
        );

        let t = token(&state, &wrong.id);
        assert_eq!(state.resend_otp(&wrong.id, &t), Ok(2));
        assert_eq!(state.resend_otp(&wrong.id, &t), Ok(3));
        assert_eq!(
            state.resend_otp(&wrong.id, &t),
            Err(StateError::TooManyCodes)
        );
        for left in [2, 1] {
            assert!(matches!(
                state.check_otp(&wrong.id, &t, "111111", now).unwrap(),
                OtpCheck::Wrong { attempts_left } if attempts_left == left
            ));
        }
        let OtpCheck::Decided(last) = state.check_otp(&wrong.id, &t, "111111", now).unwrap() else {
            panic!("the third wrong code declines");
        };
        assert_eq!(
            (last.status, last.status_message),
            (Status::Declined, Some(OTP_EXHAUSTED_MESSAGE))
        );
    }

    #[test]
    fn a_pending_transaction_past_its_expiration_time_ends_declined_as_expired() {
        let mut state = State::new(10, 10);
        let now = Utc::now();
        let later = now + chrono::Duration::minutes(30);
        let mut timed = new_tx("a", qr(None));
        timed.expiration_time = Some(later);
        let a = state.create(timed, "h", now).unwrap();
        let b = state.create(new_tx("b", transfer()), "h", now).unwrap();
        assert!(!state.expiry_due(&a.id, now));
        assert!(state.expiry_due(&a.id, later));
        assert!(!state.expiry_due(&b.id, later), "no deadline, never due");
        // The deadline reached early (the sandbox's "time passes"): it becomes now.
        let expired = state.expire(&a.id, now).unwrap();
        assert_eq!(
            (expired.status, expired.status_message),
            (Status::Declined, Some(EXPIRED_MESSAGE))
        );
        assert_eq!(expired.expiration_time, Some(now));
        assert_eq!(expired.finalized_at, Some(now));
        assert!(!state.expiry_due(&a.id, later), "decided");
        assert_eq!(
            state.expire(&a.id, later).unwrap_err(),
            StateError::InvalidState
        );
        // Closed lazily later than its deadline: the deadline stays.
        let mut timed = new_tx("c", daviplata());
        timed.expiration_time = Some(later);
        let c = state.create(timed, "h", now).unwrap();
        let after = later + chrono::Duration::seconds(5);
        let closed = state.expire(&c.id, after).unwrap();
        assert_eq!(closed.expiration_time, Some(later));
        assert_eq!(closed.finalized_at, Some(after));
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
