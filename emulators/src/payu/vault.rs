//! PayU's Tokenization API in the emulator (developers.payulatam.com, "Tokenization API"),
//! on `POST /payments-api/4.0/service.cgi`:
//!
//! * `CREATE_TOKEN` with `creditCardToken.{payerId, name, identificationNumber,
//!   paymentMethod, number, expirationDate}` (`YYYY/MM`): a new `creditCardTokenId` (a UUID,
//!   as PayU's), answered with `maskedNumber` (first six and last four digits). Tests
//!   tokenize here as a checkout would; the number is checked (13-20 digits, Luhn) and never
//!   kept.
//! * `GET_TOKENS` with `creditCardTokenInformation.creditCardTokenId`, or `startDate` and
//!   `endDate` (`YYYY-MM-DDTHH:MM:SS`), optionally narrowed by `payerId`: `creditCardTokenList`
//!   (empty when nothing matches). `expirationDate` is `null`, as in PayU's examples.
//! * `REMOVE_TOKEN` with `removeCreditCardToken.{payerId, creditCardTokenId}`: the token is
//!   gone; a token that is unknown, already removed or of another payer is refused with
//!   `code: ERROR`.
//!
//! A charge with a token (`creditCardTokenId` and the token's franchise as `paymentMethod`)
//! is decided by the cardholder name it was tokenized with, as PayU's sandbox decides cards:
//! `APPROVED`, `REJECTED` (declined), `PENDING` (in review, approved when confirmed); the
//! emulator approves any other name. A removed token is unknown, so its charge is refused.

use std::collections::HashMap;

use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use chrono::{DateTime, Datelike, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map};
use uuid::Uuid;

use super::store::CardOutcome;
use super::{http_error, refused, success};

/// Longest payer id taken (PayU says alphanumeric; ours are UUIDs).
const PAYER_ID_LEN_MAX: usize = 64;
const NAME_LEN_MAX: usize = 255;
const IDENTIFICATION_LEN_MAX: usize = 20;
/// Most tokens one `GET_TOKENS` by date range lists.
pub(crate) const LIST_MAX: usize = 1_000;

/// One card token as the emulator keeps it: never the card number.
#[derive(Debug, Clone)]
pub(crate) struct CardToken {
    pub id: String,
    pub payer_id: String,
    pub name: String,
    pub identification_number: String,
    pub franchise: String,
    pub masked_number: String,
    pub created_at: DateTime<Utc>,
}

impl CardToken {
    /// What a charge with this token does, by its cardholder name.
    pub(crate) fn outcome(&self) -> CardOutcome {
        match self.name.as_str() {
            "REJECTED" => CardOutcome::Decline,
            "PENDING" => CardOutcome::PendingThenApprove,
            _ => CardOutcome::Approve,
        }
    }

    pub(crate) fn view(&self, with_creation_date: bool) -> TokenView<'_> {
        TokenView {
            credit_card_token_id: &self.id,
            name: &self.name,
            payer_id: &self.payer_id,
            identification_number: &self.identification_number,
            payment_method: &self.franchise,
            number: None,
            expiration_date: None,
            creation_date: with_creation_date
                .then(|| self.created_at.format("%Y-%m-%dT%H:%M:%S").to_string()),
            masked_number: &self.masked_number,
            error_description: None,
        }
    }
}

/// Why a token command is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum VaultError {
    Invalid(&'static str),
    NotFound,
    CapacityExhausted,
}

impl VaultError {
    pub(crate) fn message(self) -> &'static str {
        match self {
            VaultError::Invalid(message) => message,
            VaultError::NotFound => "The credit card token was not found for this payer",
            VaultError::CapacityExhausted => "the sandbox keeps no more card tokens",
        }
    }
}

/// The tokens the emulated account holds, at most `max`.
#[derive(Debug)]
pub(crate) struct Vault {
    tokens: HashMap<String, CardToken>,
    max: usize,
}

impl Vault {
    pub(crate) fn new(max: usize) -> Self {
        Vault {
            tokens: HashMap::new(),
            max,
        }
    }

    pub(crate) fn create(
        &mut self,
        card: &CreditCardTokenIn,
        now: DateTime<Utc>,
    ) -> Result<&CardToken, VaultError> {
        let token = validated(card, now)?;
        if self.tokens.len() >= self.max {
            return Err(VaultError::CapacityExhausted);
        }
        let id = token.id.clone();
        Ok(self.tokens.entry(id).or_insert(token))
    }

    pub(crate) fn get(&self, id: &str) -> Option<&CardToken> {
        self.tokens.get(id)
    }

    /// `GET_TOKENS`: by id, or created within `[start, end]`; narrowed by payer when given.
    pub(crate) fn query(&self, info: &TokenInformationIn) -> Result<Vec<&CardToken>, VaultError> {
        let payer_ok = |t: &CardToken| info.payer_id.as_deref().is_none_or(|p| p == t.payer_id);
        if let Some(id) = info.credit_card_token_id.as_deref() {
            return Ok(self.get(id).filter(|t| payer_ok(t)).into_iter().collect());
        }
        let (Some(start), Some(end)) = (
            info.start_date.as_deref().and_then(parse_date),
            info.end_date.as_deref().and_then(parse_date),
        ) else {
            return Err(VaultError::Invalid(
                "creditCardTokenId, or startDate and endDate, are required",
            ));
        };
        let mut found: Vec<&CardToken> = self
            .tokens
            .values()
            .filter(|t| payer_ok(t) && t.created_at >= start && t.created_at <= end)
            .collect();
        found.sort_by_key(|t| t.created_at);
        found.truncate(LIST_MAX);
        Ok(found)
    }

    /// `REMOVE_TOKEN`: only the payer it was made for removes a token.
    pub(crate) fn remove(&mut self, payer_id: &str, id: &str) -> Result<CardToken, VaultError> {
        match self.tokens.get(id) {
            Some(token) if token.payer_id == payer_id => {
                self.tokens.remove(id).ok_or(VaultError::NotFound)
            }
            _ => Err(VaultError::NotFound),
        }
    }
}

fn validated(card: &CreditCardTokenIn, now: DateTime<Utc>) -> Result<CardToken, VaultError> {
    let text = |value: &Option<String>, max: usize| {
        value
            .as_deref()
            .filter(|v| !v.is_empty() && v.chars().count() <= max)
            .filter(|v| v.chars().all(|c| !c.is_control()))
            .map(str::to_owned)
    };
    let payer_id = text(&card.payer_id, PAYER_ID_LEN_MAX)
        .filter(|p| {
            p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        .ok_or(VaultError::Invalid("creditCardToken.payerId is required"))?;
    let name = text(&card.name, NAME_LEN_MAX).ok_or(VaultError::Invalid(
        "creditCardToken.name must be 1-255 characters",
    ))?;
    let identification_number = text(&card.identification_number, IDENTIFICATION_LEN_MAX).ok_or(
        VaultError::Invalid("creditCardToken.identificationNumber must be 1-20 characters"),
    )?;
    let franchise = card
        .payment_method
        .as_deref()
        .filter(|m| super::CARD_FRANCHISES.contains(m))
        .ok_or(VaultError::Invalid("Invalid creditCardToken.paymentMethod"))?
        .to_owned();
    let number = card.number.as_deref().unwrap_or_default();
    if !(13..=20).contains(&number.len()) || !luhn_valid(number) {
        return Err(VaultError::Invalid("Invalid creditCardToken.number"));
    }
    if !expiry_ok(card.expiration_date.as_deref().unwrap_or_default(), now) {
        return Err(VaultError::Invalid(
            "creditCardToken.expirationDate must be a future YYYY/MM",
        ));
    }
    Ok(CardToken {
        id: Uuid::new_v4().to_string(),
        payer_id,
        name,
        identification_number,
        franchise,
        masked_number: masked(number),
        created_at: now,
    })
}

/// Digits only, and the Luhn checksum holds.
fn luhn_valid(number: &str) -> bool {
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let sum: u32 = number
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            match (i % 2 == 1, d * 2) {
                (false, _) => d,
                (true, doubled) if doubled > 9 => doubled - 9,
                (true, doubled) => doubled,
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// PayU's mask: the first six and last four digits (`403799******1984`).
fn masked(number: &str) -> String {
    let hidden = number.len().saturating_sub(10);
    let head = number.get(..6).unwrap_or_default();
    let tail = number
        .get(number.len().saturating_sub(4)..)
        .unwrap_or_default();
    format!("{head}{}{tail}", "*".repeat(hidden))
}

/// `YYYY/MM`, this month or later.
fn expiry_ok(text: &str, now: DateTime<Utc>) -> bool {
    let Some((year, month)) = text.split_once('/') else {
        return false;
    };
    let (Ok(year), Ok(month)) = (year.parse::<i32>(), month.parse::<u32>()) else {
        return false;
    };
    text.len() == 7 && (1..=12).contains(&month) && (year, month) >= (now.year(), now.month())
}

fn parse_date(text: &str) -> Option<DateTime<Utc>> {
    NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S")
        .ok()
        .map(|n| n.and_utc())
}

// ---------------------------------------------------------------------------------------------
// The three commands
// ---------------------------------------------------------------------------------------------

fn vault_refusal(error: VaultError) -> HttpResponse {
    match error {
        VaultError::CapacityExhausted => {
            http_error(StatusCode::SERVICE_UNAVAILABLE, error.message())
        }
        _ => refused(error.message()),
    }
}

fn token_answer(field: &str, token: TokenView<'_>) -> HttpResponse {
    let mut fields = Map::new();
    fields.insert(field.into(), json!(token));
    success(fields)
}

pub(super) fn create_token(vault: &mut Vault, card: Option<CreditCardTokenIn>) -> HttpResponse {
    let Some(card) = card else {
        return refused("creditCardToken is required");
    };
    match vault.create(&card, Utc::now()) {
        Ok(token) => token_answer("creditCardToken", token.view(false)),
        Err(error) => vault_refusal(error),
    }
}

pub(super) fn get_tokens(vault: &Vault, info: Option<TokenInformationIn>) -> HttpResponse {
    let Some(info) = info else {
        return refused("creditCardTokenInformation is required");
    };
    match vault.query(&info) {
        Ok(found) => {
            let list: Vec<TokenView<'_>> = found.into_iter().map(|t| t.view(true)).collect();
            let mut fields = Map::new();
            fields.insert("creditCardTokenList".into(), json!(list));
            success(fields)
        }
        Err(error) => vault_refusal(error),
    }
}

pub(super) fn remove_token(vault: &mut Vault, remove: Option<RemoveTokenIn>) -> HttpResponse {
    let Some((Some(payer_id), Some(id))) = remove.map(|r| (r.payer_id, r.credit_card_token_id))
    else {
        return refused("removeCreditCardToken.payerId and creditCardTokenId are required");
    };
    match vault.remove(&payer_id, &id) {
        Ok(token) => token_answer("creditCardToken", token.view(false)),
        Err(error) => vault_refusal(error),
    }
}

// ---------------------------------------------------------------------------------------------
// Wire shapes (the emulator's own; unknown fields tolerated)
// ---------------------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CreditCardTokenIn {
    #[serde(default)]
    pub payer_id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub identification_number: Option<String>,
    #[serde(default)]
    pub payment_method: Option<String>,
    #[serde(default)]
    pub number: Option<String>,
    #[serde(default)]
    pub expiration_date: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TokenInformationIn {
    #[serde(default)]
    pub payer_id: Option<String>,
    #[serde(default)]
    pub credit_card_token_id: Option<String>,
    #[serde(default)]
    pub start_date: Option<String>,
    #[serde(default)]
    pub end_date: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RemoveTokenIn {
    #[serde(default)]
    pub payer_id: Option<String>,
    #[serde(default)]
    pub credit_card_token_id: Option<String>,
}

/// A token as PayU answers it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TokenView<'a> {
    credit_card_token_id: &'a str,
    name: &'a str,
    payer_id: &'a str,
    identification_number: &'a str,
    payment_method: &'a str,
    number: Option<&'a str>,
    expiration_date: Option<&'a str>,
    creation_date: Option<String>,
    masked_number: &'a str,
    error_description: Option<&'a str>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn card(payer: &str, name: &str, number: &str, franchise: &str) -> CreditCardTokenIn {
        CreditCardTokenIn {
            payer_id: Some(payer.into()),
            name: Some(name.into()),
            identification_number: Some("32144457".into()),
            payment_method: Some(franchise.into()),
            number: Some(number.into()),
            expiration_date: Some("2099/01".into()),
        }
    }

    fn by_id(id: &str, payer: Option<&str>) -> TokenInformationIn {
        TokenInformationIn {
            payer_id: payer.map(str::to_owned),
            credit_card_token_id: Some(id.into()),
            start_date: None,
            end_date: None,
        }
    }

    #[test]
    fn a_token_is_masked_listed_by_id_and_payer_then_removed_once() {
        let mut vault = Vault::new(10);
        let now = Utc::now();
        let token = vault
            .create(&card("p1", "PENDING", "4037997623271984", "VISA"), now)
            .unwrap()
            .clone();
        assert_eq!(token.masked_number, "403799******1984");
        assert_eq!(token.outcome(), CardOutcome::PendingThenApprove);
        assert!(Uuid::parse_str(&token.id).is_ok());
        assert_eq!(vault.query(&by_id(&token.id, Some("p1"))).unwrap().len(), 1);
        assert_eq!(vault.query(&by_id(&token.id, None)).unwrap().len(), 1);
        assert!(vault
            .query(&by_id(&token.id, Some("p2")))
            .unwrap()
            .is_empty());
        assert_eq!(
            vault.remove("p2", &token.id).err(),
            Some(VaultError::NotFound)
        );
        assert!(vault.remove("p1", &token.id).is_ok());
        assert_eq!(
            vault.remove("p1", &token.id).err(),
            Some(VaultError::NotFound)
        );
        assert!(vault.query(&by_id(&token.id, None)).unwrap().is_empty());
        assert!(vault.get(&token.id).is_none());
    }

    #[test]
    fn bad_cards_are_refused_and_the_vault_is_bounded() {
        let mut vault = Vault::new(1);
        let now = Utc::now();
        for bad in [
            card("p1", "A", "4037997623271985", "VISA"), // Luhn
            card("p1", "A", "403799762327", "VISA"),     // too short
            card("p1", "A", "4037997623271984", "PSE"),
            card("p 1", "A", "4037997623271984", "VISA"),
            card("p1", "", "4037997623271984", "VISA"),
            CreditCardTokenIn {
                expiration_date: Some("2001/01".into()),
                ..card("p1", "A", "4037997623271984", "VISA")
            },
        ] {
            assert!(matches!(
                vault.create(&bad, now),
                Err(VaultError::Invalid(_))
            ));
        }
        vault
            .create(&card("p1", "APPROVED", "377813000000001", "AMEX"), now)
            .unwrap();
        assert_eq!(
            vault
                .create(&card("p1", "A", "4037997623271984", "VISA"), now)
                .err(),
            Some(VaultError::CapacityExhausted)
        );
    }

    #[test]
    fn masks_and_outcomes_follow_payus_sandbox() {
        assert_eq!(masked("377813000000001"), "377813*****0001");
        let mut vault = Vault::new(3);
        let now = Utc::now();
        for (name, outcome) in [
            ("APPROVED", CardOutcome::Approve),
            ("REJECTED", CardOutcome::Decline),
            ("Ana Pérez", CardOutcome::Approve),
        ] {
            let token = vault
                .create(&card("p1", name, "4037997623271984", "VISA"), now)
                .unwrap();
            assert_eq!(token.outcome(), outcome, "{name}");
        }
        let range = TokenInformationIn {
            payer_id: None,
            credit_card_token_id: None,
            start_date: Some(
                (now - chrono::Duration::hours(1))
                    .format("%Y-%m-%dT%H:%M:%S")
                    .to_string(),
            ),
            end_date: Some(
                (now + chrono::Duration::hours(1))
                    .format("%Y-%m-%dT%H:%M:%S")
                    .to_string(),
            ),
        };
        assert_eq!(vault.query(&range).unwrap().len(), 3);
        let neither = TokenInformationIn {
            start_date: None,
            ..range
        };
        assert!(vault.query(&neither).is_err());
    }
}
