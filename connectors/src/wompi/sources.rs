//! Wompi payment sources ("fuentes de pago", docs.wompi.co/docs/colombia/fuentes-de-pago/):
//! wire types and the pure parts of saving, charging and voiding a source.
//!
//! * Cards: the customer's card is tokenized at Wompi (`POST /tokens/cards`, public key) by
//!   the checkout; the token is turned into a source with `POST /payment_sources` (private
//!   key) `{"type":"CARD","token","customer_email","acceptance_token","accept_personal_auth"}`.
//! * Nequi: `POST /tokens/nequi` (public key) `{"phone_number"}` answers a token `PENDING`
//!   until the customer accepts the subscription in their Nequi app; its state is read with
//!   `GET /tokens/nequi/{id}` (Wompi also sends `nequi_token.updated`, which payledger does
//!   not use). Only an `APPROVED` token makes a `NEQUI` source.
//! * A source is an integer id; a charge sends it as `payment_source_id` with
//!   `payment_method: {"installments": 1}` for cards (no `payment_method` for Nequi).
//! * Voiding: `PUT /payment_sources/{id}/void` (private key) answers the source `VOIDED`.
//!   Wompi's public docs pages do not show it; several independent integrations call it. A
//!   void is only reported done when Wompi itself shows the source `VOIDED`, so a Wompi
//!   without the call leaves the method saved and the removal refused, never a false success.
//! * Idempotency: Wompi keeps no key for a save and offers no search of sources (only
//!   `GET /payment_sources/{id}`), so a save whose answer was lost cannot be found again. What
//!   this adapter can do it does: a bounded in-process memo by our saved method id returns the
//!   first source to a retry on this node, and resumes waiting on the same Nequi token instead
//!   of asking the customer again.

use std::collections::{HashMap, VecDeque};

use domain::{MethodDisplay, SavedMethodId};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Saves remembered per node (for retries); the oldest is forgotten beyond it.
pub const SOURCE_MEMO_MAX: usize = 4096;
/// Longest id accepted for a Nequi token.
const NEQUI_TOKEN_ID_LEN_MAX: usize = 128;

/// `POST /payment_sources`.
#[derive(Serialize)]
pub(crate) struct SourceBody<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub token: &'a str,
    pub customer_email: &'a str,
    pub acceptance_token: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accept_personal_auth: Option<&'a str>,
}

/// `POST /tokens/nequi`.
#[derive(Serialize)]
pub(crate) struct NequiTokenBody<'a> {
    pub phone_number: &'a str,
}

/// A payment source as Wompi answers it; unknown fields are ignored.
#[derive(Deserialize)]
pub(crate) struct SourceData {
    pub id: i64,
    pub status: String,
    #[serde(default)]
    pub public_data: Option<PublicData>,
}

/// What Wompi shows of a card source. Every field is optional: the docs' examples differ on
/// which are present, and a missing one only leaves it out of the display.
#[derive(Deserialize, Default)]
pub(crate) struct PublicData {
    #[serde(default)]
    pub brand: Option<String>,
    #[serde(default)]
    pub last_four: Option<String>,
    #[serde(default)]
    pub exp_month: Option<String>,
    #[serde(default)]
    pub exp_year: Option<String>,
}

/// A Nequi token as Wompi answers it.
#[derive(Deserialize)]
pub(crate) struct NequiTokenData {
    pub id: String,
    pub status: String,
}

/// Where a Nequi subscription stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NequiStatus {
    Pending,
    Approved,
    Declined,
}

impl NequiTokenData {
    pub fn status(&self) -> Option<NequiStatus> {
        match self.status.as_str() {
            "PENDING" => Some(NequiStatus::Pending),
            "APPROVED" => Some(NequiStatus::Approved),
            "DECLINED" => Some(NequiStatus::Declined),
            _ => None,
        }
    }

    pub fn valid_id(&self) -> bool {
        valid_token_id(&self.id)
    }
}

fn valid_token_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= NEQUI_TOKEN_ID_LEN_MAX
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The source id as Wompi takes it (a positive integer), from the text the vault keeps.
pub(crate) fn source_number(text: &str) -> Option<i64> {
    if text.is_empty() || text.len() > 18 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse::<i64>().ok().filter(|n| *n > 0)
}

/// A card's display data from a source's `public_data` (brand, last four, expiry).
pub(crate) fn card_display(public: Option<PublicData>) -> MethodDisplay {
    let public = public.unwrap_or_default();
    let month = public
        .exp_month
        .as_deref()
        .and_then(|m| m.parse::<u8>().ok());
    let year = public.exp_year.as_deref().and_then(full_year);
    let (exp_month, exp_year) = match (month, year) {
        (Some(m), Some(y)) => (Some(m), Some(y)),
        _ => (None, None),
    };
    MethodDisplay {
        brand: public.brand,
        last_four: public.last_four,
        exp_month,
        exp_year,
        phone_masked: None,
    }
}

/// Wompi writes card years with two digits (`"29"`); four are taken as they are.
fn full_year(text: &str) -> Option<u16> {
    let value = text.parse::<u16>().ok()?;
    match text.len() {
        2 => Some(2000 + value),
        4 => Some(value),
        _ => None,
    }
}

/// What this node remembers of a save, by our saved method id.
#[derive(Debug, Clone)]
pub(crate) enum Memo {
    /// A Nequi token asked for, not yet a source.
    NequiToken(String),
    /// A source Wompi made; `available` once Wompi said so.
    Source {
        id: i64,
        display: MethodDisplay,
        available: bool,
    },
}

/// Bounded memo of saves (oldest forgotten first). Holds source ids: `Debug` hides them.
#[derive(Default)]
pub(crate) struct SourceMemo {
    entries: HashMap<Uuid, Memo>,
    order: VecDeque<Uuid>,
}

impl std::fmt::Debug for SourceMemo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SourceMemo({} entries)", self.entries.len())
    }
}

impl SourceMemo {
    pub fn get(&self, method: SavedMethodId) -> Option<Memo> {
        self.entries.get(&method.as_uuid()).cloned()
    }

    pub fn put(&mut self, method: SavedMethodId, memo: Memo) {
        let key = method.as_uuid();
        if self.entries.insert(key, memo).is_none() {
            self.order.push_back(key);
        }
        while self.entries.len() > SOURCE_MEMO_MAX {
            match self.order.pop_front() {
                Some(oldest) => {
                    self.entries.remove(&oldest);
                }
                None => break,
            }
        }
    }

    pub fn forget(&mut self, method: SavedMethodId) {
        let key = method.as_uuid();
        if self.entries.remove(&key).is_some() {
            self.order.retain(|k| *k != key);
        }
    }

    /// Forgets every save that made source `id` (it was voided).
    pub fn forget_source(&mut self, id: i64) {
        let gone: Vec<Uuid> = self
            .entries
            .iter()
            .filter(|(_, m)| matches!(m, Memo::Source { id: s, .. } if *s == id))
            .map(|(k, _)| *k)
            .collect();
        for key in gone {
            self.entries.remove(&key);
            self.order.retain(|k| *k != key);
        }
    }
}

/// The secret form of a source id, as the vault keeps it.
pub(crate) fn source_secret(id: i64) -> SecretString {
    id.to_string().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn method(n: u128) -> SavedMethodId {
        SavedMethodId::from_uuid(Uuid::from_u128(n))
    }

    #[test]
    fn source_ids_are_positive_integers_only() {
        assert_eq!(source_number("3891"), Some(3891));
        for bad in ["", "0", "-1", "12a", "1 2", "9999999999999999999", "../1"] {
            assert_eq!(source_number(bad), None, "{bad}");
        }
    }

    #[test]
    fn card_display_takes_wompis_two_digit_years_and_drops_a_half_expiry() {
        let display = card_display(Some(PublicData {
            brand: Some("VISA".into()),
            last_four: Some("4242".into()),
            exp_month: Some("08".into()),
            exp_year: Some("29".into()),
        }));
        assert_eq!(display.exp_month, Some(8));
        assert_eq!(display.exp_year, Some(2029));
        assert!(display.clone().checked().is_ok());
        let half = card_display(Some(PublicData {
            exp_month: Some("08".into()),
            exp_year: Some("2x".into()),
            ..PublicData::default()
        }));
        assert_eq!((half.exp_month, half.exp_year), (None, None));
        assert_eq!(card_display(None), MethodDisplay::default());
    }

    #[test]
    fn the_memo_is_bounded_oldest_first_and_forgets_voided_sources() {
        let mut memo = SourceMemo::default();
        for n in 0..(SOURCE_MEMO_MAX as u128 + 3) {
            memo.put(method(n), Memo::NequiToken(format!("nequi_{n}")));
        }
        assert_eq!(memo.entries.len(), SOURCE_MEMO_MAX);
        assert!(memo.get(method(0)).is_none());
        assert!(memo.get(method(SOURCE_MEMO_MAX as u128 + 2)).is_some());
        memo.put(
            method(1_000_000),
            Memo::Source {
                id: 7,
                display: MethodDisplay::default(),
                available: true,
            },
        );
        memo.forget_source(7);
        assert!(memo.get(method(1_000_000)).is_none());
        assert_eq!(memo.entries.len(), memo.order.len());
        assert!(!format!("{memo:?}").contains("nequi_"));
    }

    #[test]
    fn nequi_statuses_and_ids_are_checked() {
        let token = |id: &str, status: &str| NequiTokenData {
            id: id.into(),
            status: status.into(),
        };
        assert_eq!(
            token("nequi_test_1", "APPROVED").status(),
            Some(NequiStatus::Approved)
        );
        assert_eq!(token("x", "WHATEVER").status(), None);
        assert!(token("nequi_test_1", "PENDING").valid_id());
        assert!(!token("../x", "PENDING").valid_id());
    }
}
