//! Wompi payment sources and Nequi tokens ("fuentes de pago"), as Wompi's docs describe them:
//! a card token or an `APPROVED` Nequi token becomes a source with an integer id, charged by
//! `payment_source_id` until it is voided.
//!
//! | route | key | answer |
//! |---|---|---|
//! | `POST /v1/tokens/nequi` | public | `201` a `nequi_test_...` token `PENDING`; `422` not a 10-digit phone |
//! | `GET /v1/tokens/nequi/{id}` | public | `200` the token: `PENDING` until `webhook_delay_ms` after its creation (the customer accepting in the app), then 3991111111 -> `APPROVED`, any other -> `DECLINED`; `404` unknown |
//! | `POST /v1/payment_sources` | private | `201` `AVAILABLE` source with `public_data`; `422` bad acceptance tokens, email, or a token that is unknown / not `APPROVED` |
//! | `GET /v1/payment_sources/{id}` | private | `200` / `404` |
//! | `PUT /v1/payment_sources/{id}/void` | private | `200` the source `VOIDED`; `422` already voided; `404` unknown |

use std::collections::{HashMap, VecDeque};

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use super::state::{rfc3339, CardToken, Outcome};
use super::{
    all_digits, parse_json, require, valid_email, ApiError, AppState, Errors, Key, END_USER_POLICY,
    PERSONAL_DATA_AUTH, TOKEN_LEN_MAX,
};

/// Sources kept at once; a save beyond it answers `503`.
pub const SOURCES_MAX: usize = 100_000;
/// Nequi tokens kept; the oldest is forgotten beyond it.
pub const NEQUI_TOKENS_MAX: usize = 100_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SourceStatus {
    Available,
    Voided,
}

impl SourceStatus {
    fn as_str(self) -> &'static str {
        match self {
            SourceStatus::Available => "AVAILABLE",
            SourceStatus::Voided => "VOIDED",
        }
    }
}

/// What a source charges.
#[derive(Debug, Clone)]
pub(crate) enum Instrument {
    Card { token: String, card: CardToken },
    Nequi { phone_number: String },
}

#[derive(Debug, Clone)]
pub(crate) struct Source {
    pub id: i64,
    pub instrument: Instrument,
    pub customer_email: String,
    pub status: SourceStatus,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
struct NequiToken {
    phone_number: String,
    created_at: DateTime<Utc>,
}

/// Why a source cannot be made, charged or voided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SourceError {
    NotFound,
    Voided,
    Full,
}

#[derive(Debug, Default)]
pub(crate) struct Sources {
    by_id: HashMap<i64, Source>,
    next_id: i64,
    nequi: HashMap<String, NequiToken>,
    nequi_order: VecDeque<String>,
}

impl Sources {
    pub(crate) fn add(
        &mut self,
        instrument: Instrument,
        customer_email: String,
        now: DateTime<Utc>,
    ) -> Result<Source, SourceError> {
        if self.by_id.len() >= SOURCES_MAX {
            return Err(SourceError::Full);
        }
        self.next_id += 1;
        let source = Source {
            id: self.next_id,
            instrument,
            customer_email,
            status: SourceStatus::Available,
            created_at: now,
        };
        self.by_id.insert(source.id, source.clone());
        Ok(source)
    }

    pub(crate) fn get(&self, id: i64) -> Option<&Source> {
        self.by_id.get(&id)
    }

    /// The source a charge may use: it exists and is not voided.
    pub(crate) fn chargeable(&self, id: i64) -> Result<Source, SourceError> {
        match self.by_id.get(&id) {
            None => Err(SourceError::NotFound),
            Some(source) if source.status == SourceStatus::Voided => Err(SourceError::Voided),
            Some(source) => Ok(source.clone()),
        }
    }

    /// Voids a source; a second void is refused (`Voided`), as Wompi refuses voiding twice.
    pub(crate) fn void(&mut self, id: i64) -> Result<Source, SourceError> {
        let source = self.by_id.get_mut(&id).ok_or(SourceError::NotFound)?;
        if source.status == SourceStatus::Voided {
            return Err(SourceError::Voided);
        }
        source.status = SourceStatus::Voided;
        Ok(source.clone())
    }

    fn add_nequi(&mut self, id: String, phone_number: String, now: DateTime<Utc>) {
        while self.nequi.len() >= NEQUI_TOKENS_MAX {
            match self.nequi_order.pop_front() {
                Some(oldest) => {
                    self.nequi.remove(&oldest);
                }
                None => break,
            }
        }
        self.nequi_order.push_back(id.clone());
        self.nequi.insert(
            id,
            NequiToken {
                phone_number,
                created_at: now,
            },
        );
    }
}

/// A Nequi token's state: `PENDING` until the customer had `delay` to accept in the app.
fn nequi_status(token: &NequiToken, delay: chrono::Duration, now: DateTime<Utc>) -> &'static str {
    if now < token.created_at + delay {
        "PENDING"
    } else if Outcome::of_nequi(&token.phone_number) == Outcome::Approve {
        "APPROVED"
    } else {
        "DECLINED"
    }
}

fn nequi_view(id: &str, token: &NequiToken, delay: chrono::Duration, now: DateTime<Utc>) -> Value {
    json!({
        "id": id,
        "status": nequi_status(token, delay, now),
        "phone_number": token.phone_number,
        "created_at": rfc3339(token.created_at),
    })
}

pub(crate) fn source_view(source: &Source) -> Value {
    let (kind, public_data) = match &source.instrument {
        Instrument::Card { card, .. } => (
            "CARD",
            json!({
                "type": "CARD",
                "brand": card.brand,
                "last_four": card.last_four,
                "exp_month": card.exp_month,
                "exp_year": card.exp_year,
            }),
        ),
        Instrument::Nequi { phone_number } => (
            "NEQUI",
            json!({ "type": "NEQUI", "phone_number": phone_number }),
        ),
    };
    json!({
        "id": source.id,
        "type": kind,
        "status": source.status.as_str(),
        "customer_email": source.customer_email,
        "created_at": rfc3339(source.created_at),
        "public_data": public_data,
    })
}

fn delay(app: &AppState) -> chrono::Duration {
    chrono::Duration::from_std(app.webhook_delay).unwrap_or(chrono::Duration::zero())
}

#[derive(Deserialize)]
struct NequiRequest {
    #[serde(default)]
    phone_number: Option<String>,
}

pub(crate) async fn create_nequi_token(
    req: HttpRequest,
    app: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    require(&req, &app, &[Key::Public])?;
    let request: NequiRequest = parse_json(&body)?;
    let phone = request
        .phone_number
        .filter(|p| all_digits(p, 10, 10))
        .ok_or_else(|| ApiError::validation("phone_number", "must be 10 digits"))?;
    let now = Utc::now();
    let id = format!("nequi_test_{}", Uuid::new_v4().simple());
    let token = NequiToken {
        phone_number: phone.clone(),
        created_at: now,
    };
    let view = nequi_view(&id, &token, delay(&app), now);
    app.sources().add_nequi(id, phone, now);
    Ok(HttpResponse::Created().json(json!({ "data": view })))
}

pub(crate) async fn get_nequi_token(
    req: HttpRequest,
    app: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    require(&req, &app, &[Key::Public, Key::Private])?;
    let sources = app.sources();
    let token = sources
        .nequi
        .get(id.as_str())
        .ok_or_else(ApiError::not_found)?;
    let view = nequi_view(&id, token, delay(&app), Utc::now());
    Ok(HttpResponse::Ok().json(json!({ "data": view })))
}

#[derive(Deserialize)]
struct SourceRequest {
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    customer_email: Option<String>,
    #[serde(default)]
    acceptance_token: Option<String>,
    #[serde(default)]
    accept_personal_auth: Option<String>,
}

pub(crate) async fn create_source(
    req: HttpRequest,
    app: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    require(&req, &app, &[Key::Private])?;
    let request: SourceRequest = parse_json(&body)?;
    let now = Utc::now();
    let mut errors = Errors::default();
    for (field, token, kind) in [
        (
            "acceptance_token",
            &request.acceptance_token,
            END_USER_POLICY,
        ),
        (
            "accept_personal_auth",
            &request.accept_personal_auth,
            PERSONAL_DATA_AUTH,
        ),
    ] {
        if !token
            .as_deref()
            .is_some_and(|t| app.presigned_valid(t, kind, now))
        {
            errors.add(field, "El token de aceptación es inválido o expiró");
        }
    }
    let email = request.customer_email.unwrap_or_default();
    if !valid_email(&email) {
        errors.add("customer_email", "must be an email address");
    }
    let token = request
        .token
        .filter(|t| !t.is_empty() && t.len() <= TOKEN_LEN_MAX)
        .unwrap_or_default();
    let instrument = instrument(&app, request.kind.as_deref(), &token, now, &mut errors);
    errors.check()?;
    let instrument = instrument.ok_or_else(|| ApiError::validation("token", "is invalid"))?;
    let source = app
        .sources()
        .add(instrument, email, now)
        .map_err(|_| ApiError::unavailable("the sandbox holds too many payment sources"))?;
    tracing::debug!(
        source_id = source.id,
        "wompi sandbox: payment source created"
    );
    Ok(HttpResponse::Created().json(json!({ "data": source_view(&source) })))
}

/// What `token` of `kind` stands for, or the field problem that says why not.
fn instrument(
    app: &AppState,
    kind: Option<&str>,
    token: &str,
    now: DateTime<Utc>,
    errors: &mut Errors,
) -> Option<Instrument> {
    match kind {
        Some("CARD") => match app.state().token(token).cloned() {
            Some(card) => Some(Instrument::Card {
                token: token.to_owned(),
                card,
            }),
            None => {
                errors.add("token", "is not a valid card token");
                None
            }
        },
        Some("NEQUI") => {
            let sources = app.sources();
            match sources.nequi.get(token) {
                Some(t) if nequi_status(t, delay(app), now) == "APPROVED" => {
                    Some(Instrument::Nequi {
                        phone_number: t.phone_number.clone(),
                    })
                }
                Some(_) => {
                    errors.add("token", "the Nequi token is not APPROVED");
                    None
                }
                None => {
                    errors.add("token", "is not a valid Nequi token");
                    None
                }
            }
        }
        _ => {
            errors.add("type", "must be CARD or NEQUI");
            None
        }
    }
}

fn source_id(text: &str) -> Result<i64, ApiError> {
    text.parse::<i64>().map_err(|_| ApiError::not_found())
}

pub(crate) async fn get_source(
    req: HttpRequest,
    app: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    require(&req, &app, &[Key::Private])?;
    let id = source_id(&id)?;
    let sources = app.sources();
    let source = sources.get(id).ok_or_else(ApiError::not_found)?;
    Ok(HttpResponse::Ok().json(json!({ "data": source_view(source) })))
}

pub(crate) async fn void_source(
    req: HttpRequest,
    app: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    require(&req, &app, &[Key::Private])?;
    let id = source_id(&id)?;
    let source = app.sources().void(id).map_err(|e| match e {
        SourceError::Voided => ApiError::validation("id", "La fuente de pago ya fue anulada"),
        _ => ApiError::not_found(),
    })?;
    tracing::debug!(source_id = id, "wompi sandbox: payment source voided");
    Ok(HttpResponse::Ok().json(json!({ "data": source_view(&source) })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn card() -> Instrument {
        Instrument::Card {
            token: "tok_test_1".into(),
            card: CardToken {
                outcome: Outcome::Approve,
                brand: "VISA",
                last_four: "4242".into(),
                exp_month: "12".into(),
                exp_year: "35".into(),
            },
        }
    }

    #[test]
    fn a_source_is_charged_until_voided_once() {
        let mut sources = Sources::default();
        let now = Utc::now();
        let a = sources.add(card(), "a@b.co".into(), now).unwrap();
        let b = sources.add(card(), "a@b.co".into(), now).unwrap();
        assert_ne!(a.id, b.id);
        assert!(sources.chargeable(a.id).is_ok());
        assert_eq!(sources.void(a.id).unwrap().status, SourceStatus::Voided);
        assert_eq!(sources.void(a.id).unwrap_err(), SourceError::Voided);
        assert_eq!(sources.chargeable(a.id).unwrap_err(), SourceError::Voided);
        assert_eq!(sources.chargeable(999).unwrap_err(), SourceError::NotFound);
        assert_eq!(sources.void(999).unwrap_err(), SourceError::NotFound);
        let view = source_view(&sources.chargeable(b.id).unwrap());
        assert_eq!(view["status"], "AVAILABLE");
        assert_eq!(view["public_data"]["last_four"], "4242");
    }

    #[test]
    fn nequi_tokens_wait_for_the_customer_and_are_bounded() {
        let mut sources = Sources::default();
        let now = Utc::now();
        let delay = chrono::Duration::milliseconds(100);
        for (n, phone) in ["3991111111", "3992222222"].iter().enumerate() {
            sources.add_nequi(format!("t{n}"), (*phone).into(), now);
        }
        let status = |id: &str, at| nequi_status(&sources.nequi[id], delay, at);
        assert_eq!(status("t0", now), "PENDING");
        assert_eq!(status("t0", now + delay), "APPROVED");
        assert_eq!(status("t1", now + delay), "DECLINED");
        for n in 0..NEQUI_TOKENS_MAX {
            sources.add_nequi(format!("x{n}"), "3991111111".into(), now);
        }
        assert_eq!(sources.nequi.len(), NEQUI_TOKENS_MAX);
        assert!(!sources.nequi.contains_key("t0"));
        assert_eq!(sources.nequi_order.len(), NEQUI_TOKENS_MAX);
    }
}
