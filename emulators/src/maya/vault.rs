//! Maya Vault in the emulator: payment tokens, customers, their cards, and payments with a
//! vaulted card (developers.maya.ph, "Save a Card Only", "Pay using Vaulted Cards").
//!
//! * A payment token is made from a whole card (public key), as the customer's browser does;
//!   the number is Luhn-checked, its brand read from its prefix, and only its last four digits
//!   kept. A token links one card, once: linking it again is `400` `PY0007`.
//! * A linked card starts `PREVERIFICATION`, with a `verificationUrl` (this emulator's own
//!   page) where the customer passes 3-D Secure: the customer actions make it `VERIFIED` or
//!   `VERIFICATION_FAILED`. Like Maya's (`/authenticate?id=<uuid>`), the URL names a
//!   verification id of its own, never the card token, since the customer sees it and
//!   payledger records it; the actions take either id.
//! * Only a `VERIFIED` card is charged. Its payment is an ordinary payment of the emulator
//!   (found by id and by reference, captured, voided, refunded, announced by webhook), decided
//!   at once: 3-D Secure is not asked again for a vaulted card.
//!
//! Test cards (any future expiry, any 3-4 digit CVC; any other valid Visa, Mastercard, JCB or
//! Amex number behaves like the approved ones):
//!
//! | number | outcome |
//! |---|---|
//! | `4123450131001381` (Maya's sandbox Visa) | verified, then approved |
//! | `5123456789012346` (Maya's sandbox Mastercard) | verified, then approved |
//! | `4123450131002520` | verified, then every payment `PAYMENT_FAILED` (`errorCode` `PY0119`) |
//! | `5123456789012437` | the 3-D Secure verification fails: `VERIFICATION_FAILED` |
//!
//! Maya publishes no code for "card does not exist"; the emulator answers `404`
//! [`CARD_NOT_FOUND`] (clients rely on the `404` and the `PY` prefix, like `PY0023`'s).

use std::collections::HashMap;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Datelike, Utc};
use domain::Money;
use rand::distributions::{Alphanumeric, DistString};
use uuid::Uuid;

use super::{
    checked_authorization_type, checked_reference, error, invalid_parameter, ok, parse, php,
    queue_full, schedule, status, timestamp, unauthorized, under_create_fault, wire, Answer,
    ApiError, Payment, State,
};
use crate::kit::{self, basic_key_matches, Faults};

/// Maya's sandbox Visa: verified, then approved.
pub const TEST_CARD_VISA: &str = "4123450131001381";
/// Maya's sandbox Mastercard: verified, then approved.
pub const TEST_CARD_MASTERCARD: &str = "5123456789012346";
/// Verified, then every payment with it fails (`PAYMENT_FAILED`).
pub const TEST_CARD_DECLINED: &str = "4123450131002520";
/// Its 3-D Secure verification fails.
pub const TEST_CARD_VERIFICATION_FAILS: &str = "5123456789012437";

/// `404` "Card does not exist." (see the module documentation).
pub const CARD_NOT_FOUND: &str = "PY0026";
/// `404` "Customer does not exist.".
const CUSTOMER_NOT_FOUND: &str = "PY0023";
/// The error code of a declined vaulted card's payment ("Issuer declined card or account").
const DECLINED: &str = "PY0119";
/// Length of the emulator's token ids: as long as Maya's, longer than its payment ids.
const TOKEN_ID_LEN: usize = 150;
const EMAIL_LEN_MAX: usize = 254;
const NAME_LEN_MAX: usize = 100;
/// Most cards one customer holds.
const CARDS_PER_CUSTOMER_MAX: usize = 100;

/// A card's `state`, as Maya names them.
pub mod card_state {
    pub const PREVERIFICATION: &str = "PREVERIFICATION";
    pub const VERIFIED: &str = "VERIFIED";
    pub const VERIFICATION_FAILED: &str = "VERIFICATION_FAILED";
}

/// What a card does, by its number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Approve,
    Decline,
    FailVerification,
}

impl Outcome {
    fn of(number: &str) -> Outcome {
        match number {
            TEST_CARD_DECLINED => Outcome::Decline,
            TEST_CARD_VERIFICATION_FAILS => Outcome::FailVerification,
            _ => Outcome::Approve,
        }
    }
}

/// A tokenized card: never its number.
#[derive(Debug, Clone)]
struct PaymentToken {
    card_type: &'static str,
    last_four: String,
    outcome: Outcome,
    used: bool,
}

#[derive(Debug, Clone)]
struct Customer {
    id: String,
    request: wire::CustomerRequest,
    cards: Vec<String>,
    created_at: DateTime<Utc>,
}

impl Customer {
    fn view(&self) -> wire::Customer {
        let r = self.request.clone();
        wire::Customer {
            id: self.id.clone(),
            first_name: r.first_name,
            middle_name: r.middle_name,
            last_name: r.last_name,
            contact: r.contact,
            metadata: r.metadata,
            created_at: timestamp(self.created_at),
            updated_at: timestamp(self.created_at),
        }
    }
}

#[derive(Debug, Clone)]
struct Card {
    id: String,
    /// What the verification page's URL names instead of the card token.
    verification_id: String,
    customer_id: String,
    card_type: &'static str,
    last_four: String,
    outcome: Outcome,
    state: &'static str,
    default: bool,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl Card {
    fn view(&self, verification_url: Option<String>) -> wire::Card {
        wire::Card {
            card_token_id: self.id.clone(),
            card_type: self.card_type.to_owned(),
            masked_pan: format!("{}{}", "*".repeat(12), self.last_four),
            state: self.state.to_owned(),
            default: self.default,
            verification_url,
            created_at: timestamp(self.created_at),
            updated_at: timestamp(self.updated_at),
        }
    }
}

/// The vault of the emulated merchant: each map holds at most `capacity` entries; a create
/// beyond it answers `503`.
#[derive(Debug)]
pub(super) struct Vault {
    tokens: HashMap<String, PaymentToken>,
    customers: HashMap<String, Customer>,
    cards: HashMap<String, Card>,
    /// Verification id -> card token id.
    verifications: HashMap<String, String>,
    capacity: usize,
}

impl Vault {
    pub(super) fn new(capacity: usize) -> Self {
        Vault {
            tokens: HashMap::new(),
            customers: HashMap::new(),
            cards: HashMap::new(),
            verifications: HashMap::new(),
            capacity,
        }
    }

    /// The card a customer action names, by its card token id or its verification id.
    fn card_to_verify(&mut self, id: &str) -> Result<&mut Card, ApiError> {
        let card = match self.verifications.get(id) {
            Some(card) => card.clone(),
            None => id.to_owned(),
        };
        self.cards.get_mut(&card).ok_or_else(card_not_found)
    }

    fn remove_card(&mut self, id: &str) -> Option<Card> {
        let card = self.cards.remove(id)?;
        self.verifications.remove(&card.verification_id);
        Some(card)
    }

    fn customer(&self, id: &str) -> Result<&Customer, ApiError> {
        self.customers.get(id).ok_or_else(customer_not_found)
    }

    /// The card `card` of customer `customer`.
    fn card_of(&self, customer: &str, card: &str) -> Result<&Card, ApiError> {
        self.customer(customer)?;
        self.cards
            .get(card)
            .filter(|c| c.customer_id == customer)
            .ok_or_else(card_not_found)
    }
}

fn full() -> ApiError {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "PY0999",
        "The emulator holds too many vault records",
    )
}

fn customer_not_found() -> ApiError {
    error(
        StatusCode::NOT_FOUND,
        CUSTOMER_NOT_FOUND,
        "Customer does not exist.",
    )
}

fn card_not_found() -> ApiError {
    error(
        StatusCode::NOT_FOUND,
        CARD_NOT_FOUND,
        "Card does not exist.",
    )
}

fn new_token_id() -> String {
    Alphanumeric.sample_string(&mut rand::thread_rng(), TOKEN_ID_LEN)
}

fn luhn_valid(number: &str) -> bool {
    let mut sum = 0;
    for (i, c) in number.chars().rev().enumerate() {
        let Some(digit) = c.to_digit(10) else {
            return false;
        };
        let value = if i % 2 == 1 { digit * 2 } else { digit };
        sum += if value > 9 { value - 9 } else { value };
    }
    !number.is_empty() && sum % 10 == 0
}

/// Maya's `cardType` for a card number, by its prefix (the brands Maya accepts).
fn card_type(number: &str) -> Option<&'static str> {
    let prefix = |n: usize| number.get(..n).and_then(|p| p.parse::<u32>().ok());
    match (prefix(1), prefix(2), prefix(4)) {
        (Some(4), _, _) => Some("visa-card"),
        (_, Some(51..=55), _) | (_, _, Some(2221..=2720)) => Some("master-card"),
        (_, Some(34 | 37), _) => Some("amex"),
        (_, Some(35), _) => Some("jcb"),
        _ => None,
    }
}

fn all_digits(text: &str, min: usize, max: usize) -> bool {
    (min..=max).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_digit())
}

/// The card of a token request, checked as Maya checks it; `Ok` holds what is kept of it.
fn checked_card(card: &wire::CardIn, now: DateTime<Utc>) -> Result<PaymentToken, ApiError> {
    if !all_digits(&card.number, 13, 19) || !luhn_valid(&card.number) {
        return Err(invalid_parameter(
            "card.number",
            "is not a valid card number",
        ));
    }
    let card_type = card_type(&card.number)
        .ok_or_else(|| invalid_parameter("card.number", "is of a brand Maya does not take"))?;
    let month = Some(card.exp_month.as_str())
        .filter(|m| all_digits(m, 1, 2))
        .and_then(|m| m.parse::<u32>().ok())
        .filter(|m| (1..=12).contains(m))
        .ok_or_else(|| invalid_parameter("card.expMonth", "must be a month 01-12"))?;
    let year = match card.exp_year.len() {
        2 | 4 if all_digits(&card.exp_year, 2, 4) => {
            card.exp_year
                .parse::<i32>()
                .ok()
                .map(|y| if y < 100 { 2000 + y } else { y })
        }
        _ => None,
    }
    .ok_or_else(|| invalid_parameter("card.expYear", "must be a year (YYYY)"))?;
    if (year, month) < (now.year(), now.month()) {
        return Err(error(StatusCode::BAD_REQUEST, "PY0002", "Card is expired."));
    }
    if !all_digits(&card.cvc, 3, 4) {
        return Err(invalid_parameter("card.cvc", "must be 3 or 4 digits"));
    }
    let last_four = card.number[card.number.len() - 4..].to_owned();
    Ok(PaymentToken {
        card_type,
        last_four,
        outcome: Outcome::of(&card.number),
        used: false,
    })
}

/// `POST /payments/v1/payment-tokens` (public key).
pub(super) async fn create_payment_token(
    req: HttpRequest,
    state: web::Data<State>,
    body: web::Bytes,
) -> Answer {
    if !basic_key_matches(&req, &[&state.public_key]) {
        return Err(unauthorized());
    }
    let request: wire::PaymentTokenRequest = parse(&body)?;
    let now = Utc::now();
    let token = checked_card(&request.card, now)?;
    let id = new_token_id();
    {
        let mut store = state.store();
        let vault = &mut store.vault;
        if vault.tokens.len() >= vault.capacity {
            return Err(full());
        }
        vault.tokens.insert(id.clone(), token);
    }
    Ok(ok(&wire::PaymentToken {
        payment_token_id: id,
        state: "AVAILABLE".to_owned(),
        created_at: timestamp(now),
        updated_at: timestamp(now),
        issuer: "SmartPay".to_owned(),
    }))
}

/// `POST /payments/v1/customers`.
pub(super) async fn create_customer(
    req: HttpRequest,
    state: web::Data<State>,
    body: web::Bytes,
) -> Answer {
    state.secret(&req)?;
    let request: wire::CustomerRequest = parse(&body)?;
    if let Some(email) = request.contact.as_ref().and_then(|c| c.email.as_deref()) {
        if email.len() > EMAIL_LEN_MAX || !email.contains('@') {
            return Err(invalid_parameter(
                "contact.email",
                "must be an email address",
            ));
        }
    }
    for (field, name) in [
        ("firstName", &request.first_name),
        ("middleName", &request.middle_name),
        ("lastName", &request.last_name),
    ] {
        if name.as_ref().is_some_and(|n| n.len() > NAME_LEN_MAX) {
            return Err(invalid_parameter(field, "is too long"));
        }
    }
    let customer = Customer {
        id: Uuid::new_v4().to_string(),
        request,
        cards: Vec::new(),
        created_at: Utc::now(),
    };
    let view = customer.view();
    let mut store = state.store();
    let vault = &mut store.vault;
    if vault.customers.len() >= vault.capacity {
        return Err(full());
    }
    vault.customers.insert(customer.id.clone(), customer);
    Ok(ok(&view))
}

/// `GET /payments/v1/customers/{customer}`.
pub(super) async fn get_customer(
    req: HttpRequest,
    state: web::Data<State>,
    customer: web::Path<String>,
) -> Answer {
    state.secret(&req)?;
    let store = state.store();
    Ok(ok(&store.vault.customer(&customer)?.view()))
}

/// `DELETE /payments/v1/customers/{customer}`: the customer and every card of theirs.
pub(super) async fn delete_customer(
    req: HttpRequest,
    state: web::Data<State>,
    customer: web::Path<String>,
) -> Answer {
    state.secret(&req)?;
    let mut store = state.store();
    let vault = &mut store.vault;
    let removed = vault
        .customers
        .remove(customer.as_str())
        .ok_or_else(customer_not_found)?;
    for card in &removed.cards {
        vault.remove_card(card);
    }
    Ok(ok(&removed.view()))
}

/// `POST /payments/v1/customers/{customer}/cards`: links a payment token's card.
pub(super) async fn link_card(
    req: HttpRequest,
    state: web::Data<State>,
    customer: web::Path<String>,
    body: web::Bytes,
) -> Answer {
    state.secret(&req)?;
    let request: wire::CardRequest = parse(&body)?;
    if let Some(reference) = request.request_reference_number {
        checked_reference(reference)?;
    }
    let now = Utc::now();
    let mut store = state.store();
    let vault = &mut store.vault;
    let held = vault.customer(&customer)?.cards.len();
    let token = vault
        .tokens
        .get_mut(&request.payment_token_id)
        .ok_or_else(|| error(StatusCode::BAD_REQUEST, "PY0008", "Token is invalid."))?;
    if token.used {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "PY0007",
            "Invalid token status.",
        ));
    }
    if vault.cards.len() >= vault.capacity || held >= CARDS_PER_CUSTOMER_MAX {
        return Err(full());
    }
    token.used = true;
    let card = Card {
        id: new_token_id(),
        verification_id: Uuid::new_v4().to_string(),
        customer_id: customer.to_string(),
        card_type: token.card_type,
        last_four: token.last_four.clone(),
        outcome: token.outcome,
        state: card_state::PREVERIFICATION,
        default: request.is_default.unwrap_or(false) || held == 0,
        created_at: now,
        updated_at: now,
    };
    let id = card.id.clone();
    if card.default {
        for other in vault.cards.values_mut() {
            if other.customer_id == card.customer_id {
                other.default = false;
            }
        }
    }
    let view = card.view(Some(format!(
        "{}/_sandbox/vault/cards/{}",
        state.base_url, card.verification_id
    )));
    if let Some(owner) = vault.customers.get_mut(customer.as_str()) {
        owner.cards.push(id.clone());
    }
    vault
        .verifications
        .insert(card.verification_id.clone(), id.clone());
    vault.cards.insert(id, card);
    Ok(ok(&view))
}

/// `GET /payments/v1/customers/{customer}/cards`.
pub(super) async fn list_cards(
    req: HttpRequest,
    state: web::Data<State>,
    customer: web::Path<String>,
) -> Answer {
    state.secret(&req)?;
    let store = state.store();
    let vault = &store.vault;
    let views: Vec<wire::Card> = vault
        .customer(&customer)?
        .cards
        .iter()
        .filter_map(|id| vault.cards.get(id))
        .map(|card| card.view(None))
        .collect();
    Ok(ok(&views))
}

/// `GET /payments/v1/customers/{customer}/cards/{card}`.
pub(super) async fn get_card(
    req: HttpRequest,
    state: web::Data<State>,
    path: web::Path<(String, String)>,
) -> Answer {
    state.secret(&req)?;
    let (customer, card) = path.into_inner();
    let store = state.store();
    Ok(ok(&store.vault.card_of(&customer, &card)?.view(None)))
}

/// `DELETE /payments/v1/customers/{customer}/cards/{card}`: the card is gone (`404` after).
pub(super) async fn delete_card(
    req: HttpRequest,
    state: web::Data<State>,
    path: web::Path<(String, String)>,
) -> Answer {
    state.secret(&req)?;
    let (customer, card) = path.into_inner();
    let mut store = state.store();
    let vault = &mut store.vault;
    vault.card_of(&customer, &card)?;
    let removed = vault.remove_card(&card).ok_or_else(card_not_found)?;
    if let Some(owner) = vault.customers.get_mut(&customer) {
        owner.cards.retain(|id| *id != card);
    }
    Ok(ok(&removed.view(None)))
}

/// `POST /payments/v1/customers/{customer}/cards/{card}/payments`: a payment with a
/// `VERIFIED` card, decided at once, under the `create` fault like a checkout.
pub(super) async fn pay_with_card(
    req: HttpRequest,
    state: web::Data<State>,
    faults: web::Data<Faults>,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> Answer {
    state.secret(&req)?;
    let (customer, card) = path.into_inner();
    under_create_fault(&state, &faults, "payment", |silent| {
        pay_inner(&state, &customer, &card, &body, silent)
    })
    .await
}

fn pay_inner(state: &State, customer: &str, card: &str, body: &[u8], silent: bool) -> Answer {
    let request: wire::CardPaymentRequest = parse(body)?;
    let amount = php(&request.total_amount, "totalAmount")?;
    let reference = checked_reference(request.request_reference_number)?;
    checked_authorization_type(request.authorization_type.as_deref())?;
    let slot = state.outbox.try_reserve().ok_or_else(queue_full)?;
    let view = {
        let mut store = state.store();
        let card = store.vault.card_of(customer, card)?;
        if card.state != card_state::VERIFIED {
            return Err(invalid_parameter("cardTokenId", "the card is not verified"));
        }
        let (status, error_code) = match (card.outcome, &request.authorization_type) {
            (Outcome::Decline, _) => (status::PAYMENT_FAILED, Some(DECLINED)),
            (_, Some(_)) => (status::AUTHORIZED, None),
            _ => (status::PAYMENT_SUCCESS, None),
        };
        let now = Utc::now();
        let payment = Payment {
            id: Uuid::new_v4().to_string(),
            reference,
            amount,
            status,
            authorization_type: request.authorization_type,
            error_code,
            fund_source: Some(wire::FundSource {
                kind: "card",
                id: card.id.clone(),
                details: wire::FundSourceDetails {
                    last4: card.last_four.clone(),
                },
            }),
            silent,
            captured: Money::zero(amount.currency()),
            refunds: Vec::new(),
            created_at: now,
            updated_at: now,
        };
        let view = payment.view();
        store.insert(payment)?;
        view
    };
    if !silent {
        schedule(state, slot, &view)?;
    }
    Ok(ok(&view))
}

/// `GET /_sandbox/vault/cards/{card}`: the 3-D Secure page `verificationUrl` points at
/// (`card`: the card token id or the verification id).
pub(super) async fn verification_page(card: web::Path<String>) -> HttpResponse {
    let base = format!("/_sandbox/vault/cards/{}", card.as_str());
    let paths: Vec<(String, String)> = ["verify", "fail"]
        .iter()
        .map(|a| ((*a).to_owned(), format!("{base}/{a}")))
        .collect();
    let actions: Vec<(&str, &str)> = paths
        .iter()
        .map(|(a, p)| (a.as_str(), p.as_str()))
        .collect();
    kit::customer_page("Maya card verification (payledger emulator)", &actions)
}

/// `POST /_sandbox/vault/cards/{card}/{verify|fail}`: the customer passes (or fails) 3-D
/// Secure; answers the card as it now is.
pub(super) async fn verification_action(
    state: web::Data<State>,
    path: web::Path<(String, String)>,
) -> Answer {
    let (card, action) = path.into_inner();
    let mut store = state.store();
    let card = store.vault.card_to_verify(&card)?;
    let next = match (action.as_str(), card.outcome) {
        ("verify", Outcome::FailVerification) | ("fail", _) => card_state::VERIFICATION_FAILED,
        ("verify", _) => card_state::VERIFIED,
        _ => return Err(error(StatusCode::NOT_FOUND, "404", "Unknown action")),
    };
    if card.state != card_state::PREVERIFICATION {
        return Err(error(
            StatusCode::CONFLICT,
            "PY0102",
            "The card is no longer awaiting verification.",
        ));
    }
    card.state = next;
    card.updated_at = Utc::now();
    Ok(ok(&card.view(None)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn card(number: &str, month: &str, year: &str) -> wire::CardIn {
        wire::CardIn {
            number: number.into(),
            exp_month: month.into(),
            exp_year: year.into(),
            cvc: "111".into(),
        }
    }

    #[test]
    fn test_cards_are_luhn_valid_and_of_their_brand() {
        for (number, brand) in [
            (TEST_CARD_VISA, "visa-card"),
            (TEST_CARD_MASTERCARD, "master-card"),
            (TEST_CARD_DECLINED, "visa-card"),
            (TEST_CARD_VERIFICATION_FAILS, "master-card"),
            ("2221000000000009", "master-card"),
            ("378282246310005", "amex"),
            ("3530111333300000", "jcb"),
        ] {
            assert!(luhn_valid(number), "{number}");
            assert_eq!(card_type(number), Some(brand), "{number}");
        }
        assert!(!luhn_valid("4123450131001382"));
        assert!(!luhn_valid("41234501310013x1"));
        assert!(!luhn_valid(""));
        assert_eq!(card_type("6011111111111117"), None);
        assert_eq!(Outcome::of(TEST_CARD_DECLINED), Outcome::Decline);
        assert_eq!(
            Outcome::of(TEST_CARD_VERIFICATION_FAILS),
            Outcome::FailVerification
        );
        assert_eq!(Outcome::of(TEST_CARD_VISA), Outcome::Approve);
    }

    #[test]
    fn only_the_last_four_digits_are_kept() {
        let now = Utc::now();
        let token = checked_card(&card(TEST_CARD_VISA, "12", "2031"), now).unwrap();
        assert_eq!(token.last_four, "1381");
        let printed = format!("{token:?}");
        assert!(!printed.contains("412345"), "{printed}");
        let c = Card {
            id: "c".into(),
            verification_id: "v".into(),
            customer_id: "u".into(),
            card_type: token.card_type,
            last_four: token.last_four,
            outcome: token.outcome,
            state: card_state::VERIFIED,
            default: true,
            created_at: now,
            updated_at: now,
        };
        assert_eq!(c.view(None).masked_pan, "************1381");
    }

    #[test]
    fn cards_are_checked_like_maya() {
        let now = Utc::now();
        for bad in [
            card("4123450131001382", "12", "2031"),
            card("41234501", "12", "2031"),
            card("6011111111111117", "12", "2031"),
            card(TEST_CARD_VISA, "13", "2031"),
            card(TEST_CARD_VISA, "12", "31x"),
            card(TEST_CARD_VISA, "12", "2019"),
            wire::CardIn {
                cvc: "1".into(),
                ..card(TEST_CARD_VISA, "12", "2031")
            },
        ] {
            assert!(checked_card(&bad, now).is_err(), "{}", bad.number);
        }
        assert!(checked_card(&card(TEST_CARD_VISA, "5", "31"), now).is_ok());
    }
}
