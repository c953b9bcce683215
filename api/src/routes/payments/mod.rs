//! `/v1/payments`: commands go to the event stream (answers carry the stream `version`);
//! reads come from the status projection, optionally waiting for a `min_version`. These
//! handlers only translate: fields parse into domain types, commands answer or refuse, and
//! a refusal becomes its problem through `From<CommandError> for Problem`.

mod changes;
mod create;
mod list;
mod payment_method;
mod read_waits;
mod reads;
mod refunds;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use commands::payments::Executed;
use domain::{Currency, IdempotencyKey, Money, PaymentId};

use crate::problem::{json_problem, FieldError, Problem, ProblemType};
use crate::routes::payment_body::PaymentBody;

pub use list::PAGE_SIZE_MAX;
pub use read_waits::ReadWaits;

/// The operations below, for the contract (`crate::openapi`).
#[derive(utoipa::OpenApi)]
#[openapi(paths(
    create::create_payment,
    list::list_payments,
    reads::get_payment,
    reads::payment_status,
    reads::payment_events,
    changes::capture_payment,
    refunds::refund_payment,
    changes::void_payment,
    changes::sync_payment,
))]
pub struct Api;

/// The `Idempotency-Key` header, as the contract describes it.
const IDEMPOTENCY_KEY: &str = "The caller's key for this command (printable ASCII, at most 255 characters). \
A retry with the same key answers the first outcome and moves no money twice; the same key with a different body is `422`.";

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/v1/payments")
            .route("", web::post().to(create::create_payment))
            .route("", web::get().to(list::list_payments))
            .route("/{id}", web::get().to(reads::get_payment))
            .route("/{id}/status", web::get().to(reads::payment_status))
            .route("/{id}/events", web::get().to(reads::payment_events))
            .route("/{id}/capture", web::post().to(changes::capture_payment))
            .route("/{id}/refunds", web::post().to(refunds::refund_payment))
            .route("/{id}/void", web::post().to(changes::void_payment))
            .route("/{id}/sync", web::post().to(changes::sync_payment)),
    );
}

pub(crate) fn idempotency_key(req: &HttpRequest) -> Result<IdempotencyKey, Problem> {
    let value = req
        .headers()
        .get("Idempotency-Key")
        .ok_or_else(|| Problem::bad_request("the Idempotency-Key header is required"))?
        .to_str()
        .map_err(|_| Problem::bad_request("Idempotency-Key must be printable ASCII"))?;
    IdempotencyKey::parse(value).map_err(|e| {
        Problem::bad_request(format!(
            "{e} (at most {} characters)",
            IdempotencyKey::LEN_MAX
        ))
    })
}

/// A request body: free of card numbers (else `422`), declared `application/json` (else
/// `415`, whatever it holds), a JSON object of exactly the expected shape. serde would also
/// read a struct from a JSON array (by position); requests that take no list refuse any array.
pub(crate) fn parse_body<T: serde::de::DeserializeOwned>(
    req: &HttpRequest,
    body: &[u8],
) -> Result<T, Problem> {
    parse_json_body(req, body, false)
}

/// `parse_body` for a request with a list among its fields: arrays are left to serde.
pub(crate) fn parse_body_with_lists<T: serde::de::DeserializeOwned>(
    req: &HttpRequest,
    body: &[u8],
) -> Result<T, Problem> {
    parse_json_body(req, body, true)
}

fn parse_json_body<T: serde::de::DeserializeOwned>(
    req: &HttpRequest,
    body: &[u8],
    lists: bool,
) -> Result<T, Problem> {
    let declared = req
        .headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<actix_web::mime::Mime>().ok());
    let json = declared.is_some_and(|m| {
        m.type_() == actix_web::mime::APPLICATION
            && (m.subtype() == actix_web::mime::JSON || m.suffix() == Some(actix_web::mime::JSON))
    });
    // Before anything reads the body further: a card number is never parsed, echoed or kept.
    if let Some(field) = card_number_in(body) {
        return Err(Problem::card_number_refused(&field));
    }
    if !json {
        return Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ProblemType::UnsupportedMediaType,
            "Unsupported media type",
            "request bodies are JSON: send `Content-Type: application/json`",
        ));
    }
    let parsed: T = serde_json::from_slice(body).map_err(|e| json_problem(&e))?;
    let shape: serde_json::Value = serde_json::from_slice(body).map_err(|e| json_problem(&e))?;
    if !shape.is_object() || (!lists && contains_array(&shape)) {
        return Err(Problem::invalid(vec![FieldError::new(
            "body",
            "must be a JSON object of the documented fields (no arrays)",
        )]));
    }
    Ok(parsed)
}

/// Where in `body` a raw card number is, as a field path (`payment_method.token`; `body` when
/// it is not JSON), if anywhere.
fn card_number_in(body: &[u8]) -> Option<String> {
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(value) => card_number_at(&value, String::new()),
        Err(_) => domain::card_number::contains_card_number(&String::from_utf8_lossy(body))
            .then(|| "body".to_owned()),
    }
}

fn card_number_at(value: &serde_json::Value, path: String) -> Option<String> {
    let here = || {
        if path.is_empty() {
            "body".to_owned()
        } else {
            path.clone()
        }
    };
    match value {
        serde_json::Value::String(text) => {
            domain::card_number::contains_card_number(text).then(here)
        }
        serde_json::Value::Number(number) => {
            domain::card_number::contains_card_number(&number.to_string()).then(here)
        }
        serde_json::Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| card_number_at(item, format!("{}[{i}]", here()))),
        serde_json::Value::Object(map) => map.iter().find_map(|(key, item)| {
            if domain::card_number::contains_card_number(key) {
                return Some(here());
            }
            let path = if path.is_empty() {
                key.clone()
            } else {
                format!("{path}.{key}")
            };
            card_number_at(item, path)
        }),
        serde_json::Value::Bool(_) | serde_json::Value::Null => None,
    }
}

fn contains_array(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::Array(_) => true,
        serde_json::Value::Object(map) => map.values().any(contains_array),
        _ => false,
    }
}

/// A path id that is not a payment id names no payment.
fn payment_id(path: &str) -> Result<PaymentId, Problem> {
    path.parse::<PaymentId>()
        .map_err(|_| Problem::not_found("no such payment"))
}

/// An amount in the payment's currency, or the problem naming `amount`.
fn amount_in(text: &str, currency: Currency) -> Result<Money, Problem> {
    Money::parse(text, currency).map_err(|e| Problem::invalid(vec![FieldError::new("amount", e)]))
}

/// The payment a command left, with the stream version a read may wait for.
fn executed_response(status: StatusCode, executed: &Executed) -> HttpResponse {
    HttpResponse::build(status).json(PaymentBody::from_stream(
        &executed.payment,
        executed.version,
    ))
}

fn read_problem(error: sqlx::Error) -> Problem {
    tracing::error!(%error, "projection read failed");
    Problem::unavailable("the read model is unavailable; retry later")
}
