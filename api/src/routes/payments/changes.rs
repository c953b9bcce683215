//! Changes of an existing payment at its provider: capture, void, and sync (ask the
//! provider what the ledger is missing).

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use commands::payments::PaymentService;
use serde::Deserialize;

use super::{amount_in, executed_response, idempotency_key, parse_body, payment_id};
use crate::auth::Caller;
use crate::problem::Problem;
use crate::routes::payment_body::PaymentBody;

/// Without an amount, all that was authorized is captured.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"amount": "80000.00"}))]
pub(super) struct CaptureRequest {
    #[serde(default)]
    #[schema(schema_with = crate::openapi::money_text)]
    amount: Option<String>,
}

/// Captures an authorized payment (all of it, or `amount`), at most once per
/// `Idempotency-Key`: a retry answers the first capture with `200`.
#[utoipa::path(
    post,
    path = "/v1/payments/{id}/capture",
    operation_id = "capturePayment",
    tag = "payments",
    params(
        ("id" = Uuid, Path, description = "The payment's id"),
        ("Idempotency-Key" = String, Header, description = super::IDEMPOTENCY_KEY, min_length = 1, max_length = 255, pattern = "^[!-~]+$"),
    ),
    request_body(content = Option<CaptureRequest>, description = "Optional: an empty body captures all that was authorized."),
    responses(
        (status = 201, description = "Captured (or the capture is asked of the provider: `pending_action`).", body = PaymentBody,
            links(("RefundPayment" = (operation_id = "refundPayment", parameters(("id" = "$response.body#/id")))))),
        (status = 200, description = "A retry with the same key: the capture it made.", body = PaymentBody),
        (status = 400, description = "No `Idempotency-Key`.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such payment for this key.", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not allowed in the payment's state, or changed concurrently.", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The amount is not valid or exceeds what was authorized, or the provider refused.", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "The provider failed without capturing.", body = Problem, content_type = "application/problem+json"),
        (status = 504, description = "The provider's answer was lost: the capture is resolved with it; retry with the same key.", body = Problem, content_type = "application/problem+json"),
    ),
)]
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
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct VoidRequest {}

/// Voids an authorized payment at its provider: nothing is captured.
#[utoipa::path(
    post,
    path = "/v1/payments/{id}/void",
    operation_id = "voidPayment",
    tag = "payments",
    params(("id" = Uuid, Path, description = "The payment's id")),
    request_body(content = Option<VoidRequest>, description = "Optional: empty or `{}`."),
    responses(
        (status = 200, description = "Voided (or the void is asked of the provider: `pending_action`).", body = PaymentBody),
        (status = 404, description = "No such payment for this key.", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not allowed in the payment's state, or changed concurrently.", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The provider refused, or does not void.", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "The provider failed without voiding.", body = Problem, content_type = "application/problem+json"),
        (status = 504, description = "The provider's answer was lost: the void is resolved with it.", body = Problem, content_type = "application/problem+json"),
    ),
)]
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
#[utoipa::path(
    post,
    path = "/v1/payments/{id}/sync",
    operation_id = "syncPayment",
    tag = "payments",
    params(("id" = Uuid, Path, description = "The payment's id")),
    responses(
        (status = 200, description = "The payment after what the provider said was recorded.", body = PaymentBody),
        (status = 404, description = "No such payment for this key.", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Changed concurrently; retry.", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The provider's answer contradicts the payment, or it cannot be asked.", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "The provider failed to answer.", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The provider is unavailable (breaker open) or the event store is down.", body = Problem, content_type = "application/problem+json"),
        (status = 504, description = "The provider did not answer in time.", body = Problem, content_type = "application/problem+json"),
    ),
)]
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
