//! Changes of an existing payment at its provider: capture, void, and sync (ask the
//! provider what the ledger is missing).

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use commands::payments::PaymentService;
use serde::Deserialize;

use super::{amount_in, executed_response, idempotency_key, parse_body, payment_id};
use crate::auth::Caller;
use crate::problem::Problem;

/// Without an amount, all that was authorized is captured.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaptureRequest {
    #[serde(default)]
    amount: Option<String>,
}

#[tracing::instrument(skip_all)]
pub(super) async fn capture_payment(
    req: HttpRequest,
    caller: Caller,
    service: web::Data<PaymentService>,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, Problem> {
    let scope = caller.payment_scope()?;
    let id = payment_id(&path)?;
    let key = idempotency_key(&req)?;
    let request: CaptureRequest = if body.is_empty() {
        CaptureRequest::default()
    } else {
        parse_body(&req, &body)?
    };
    // Loaded once: the amount is read in its currency, and the capture decides on it.
    let loaded = service.load_for_change(id, scope).await?;
    let amount = match request.amount {
        None => None,
        Some(text) => {
            let currency = loaded
                .payment()
                .currency()
                .ok_or_else(|| Problem::not_found("no such payment"))?;
            Some(amount_in(&text, currency)?)
        }
    };
    let executed = service.capture(loaded, &key, amount).await?;
    let status = if executed.appended > 0 {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(executed_response(status, &executed))
}

/// Void takes no fields: an empty body or `{}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct VoidRequest {}

#[tracing::instrument(skip_all)]
pub(super) async fn void_payment(
    req: HttpRequest,
    caller: Caller,
    service: web::Data<PaymentService>,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, Problem> {
    let scope = caller.payment_scope()?;
    let id = payment_id(&path)?;
    if !body.is_empty() {
        let _empty: VoidRequest = parse_body(&req, &body)?;
    }
    let executed = service.void(id, scope).await?;
    Ok(executed_response(StatusCode::OK, &executed))
}

/// Asks the provider for the payment's status and appends what the ledger is missing.
#[tracing::instrument(skip_all)]
pub(super) async fn sync_payment(
    caller: Caller,
    service: web::Data<PaymentService>,
    path: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    let scope = caller.payment_scope()?;
    let id = payment_id(&path)?;
    let executed = service.sync(id, scope).await?;
    Ok(executed_response(StatusCode::OK, &executed))
}
