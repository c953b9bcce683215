//! `POST /v1/payments/{id}/refunds`: refunds part or all of what was captured; a retry with
//! the same Idempotency-Key answers the same refund.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use commands::payments::{PaymentService, RefundOutcome};
use domain::payment::RefundStatus;
use domain::{Currency, Money, RefundReason};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{idempotency_key, parse_body, payment_id};
use crate::auth::Caller;
use crate::problem::checked;
use crate::problem::{Problem, ProblemType};
use crate::routes::payment_body::{money_text, PaymentBody};

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"amount": "25000.00", "reason": "customer returned one item"}))]
pub(super) struct RefundRequest {
    /// Part or all of what was captured and not yet refunded.
    #[schema(schema_with = crate::openapi::money_text)]
    amount: String,
    #[serde(default)]
    #[schema(max_length = 256)]
    reason: Option<String>,
}

impl RefundRequest {
    /// The amount in the payment's `currency` and the reason, or each bad one named.
    fn parse(self, currency: Currency) -> Result<(Money, Option<RefundReason>), Problem> {
        let mut errors = Vec::new();
        let amount = checked(&mut errors, "amount", Money::parse(&self.amount, currency));
        let reason = self
            .reason
            .map(|reason| checked(&mut errors, "reason", RefundReason::try_from(reason)));
        match (amount, reason) {
            (Some(amount), None) => Ok((amount, None)),
            (Some(amount), Some(Some(reason))) => Ok((amount, Some(reason))),
            _ => Err(Problem::invalid(errors)),
        }
    }
}

/// A refund and the payment it left.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct RefundBody {
    id: Uuid,
    payment_id: Uuid,
    #[schema(schema_with = crate::openapi::money_text)]
    amount: String,
    #[schema(schema_with = crate::openapi::currency_code)]
    currency: String,
    /// `SUCCEEDED`, or `PENDING` while the provider has not answered.
    #[schema(schema_with = refund_status)]
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    failure: Option<String>,
    payment: PaymentBody,
}

fn refund_status() -> utoipa::openapi::schema::ObjectBuilder {
    crate::openapi::one_of_texts(["SUCCEEDED", "PENDING"])
}

/// Refunds part or all of what was captured, at most once per `Idempotency-Key`.
#[utoipa::path(
    post,
    path = "/v1/payments/{id}/refunds",
    operation_id = "refundPayment",
    tag = "payments",
    params(
        ("id" = Uuid, Path, description = "The payment's id"),
        ("Idempotency-Key" = String, Header, description = super::IDEMPOTENCY_KEY, min_length = 1, max_length = 255, pattern = "^[!-~]+$"),
    ),
    request_body = RefundRequest,
    responses(
        (status = 201, description = "Refunded.", body = RefundBody,
            links(("GetPayment" = (operation_id = "getPayment", parameters(("id" = "$response.body#/payment_id")))))),
        (status = 200, description = "A retry with the same key: the refund it made.", body = RefundBody),
        (status = 202, description = "Asked of the provider, which answers later (`PENDING`).", body = RefundBody),
        (status = 400, description = "No `Idempotency-Key`.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such payment for this key.", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not allowed in the payment's state, or changed concurrently.", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The amount is not valid or exceeds what is left to refund, or the provider refused.", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "The provider failed without refunding.", body = Problem, content_type = "application/problem+json"),
        (status = 504, description = "The provider's answer was lost: the refund is resolved with it; retry with the same key.", body = Problem, content_type = "application/problem+json"),
    ),
)]
#[tracing::instrument(skip_all)]
pub(super) async fn refund_payment(
    req: HttpRequest,
    caller: Caller,
    service: web::Data<PaymentService>,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, Problem> {
    let scope = caller.payment_scope()?;
    let id = payment_id(&path)?;
    let key = idempotency_key(&req)?;
    let request: RefundRequest = parse_body(&req, &body)?;
    // Loaded once: the amount is read in its currency, and the refund decides on it.
    let loaded = service.load_for_change(id, scope).await?;
    let currency = loaded
        .payment()
        .currency()
        .ok_or_else(|| Problem::not_found("no such payment"))?;
    let (amount, reason) = request.parse(currency)?;
    let RefundOutcome {
        executed,
        refund_id,
        status,
        failure,
    } = service.refund(loaded, &key, amount, reason).await?;
    let (http_status, text) = match status {
        RefundStatus::Succeeded if executed.appended > 0 => (StatusCode::CREATED, "SUCCEEDED"),
        RefundStatus::Succeeded => (StatusCode::OK, "SUCCEEDED"),
        RefundStatus::Requested => (StatusCode::ACCEPTED, "PENDING"),
        RefundStatus::Failed => {
            return Err(Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                ProblemType::RefundRefused,
                "The provider refused the refund",
                format!(
                    "refund {} was refused by {}: {}; nothing was refunded",
                    refund_id,
                    executed.payment.provider,
                    failure.as_deref().unwrap_or("no reason given")
                ),
            ))
        }
    };
    let refund = executed.payment.refunds.get(&refund_id);
    Ok(HttpResponse::build(http_status).json(RefundBody {
        id: refund_id.as_uuid(),
        payment_id: id.as_uuid(),
        amount: refund
            .map(|r| r.amount.amount().to_string())
            .unwrap_or_else(|| money_text(amount.amount(), currency.code())),
        currency: currency.code().to_owned(),
        status: text,
        reason: refund.and_then(|r| r.reason.clone()),
        failure,
        payment: PaymentBody::from_stream(&executed.payment, executed.version),
    }))
}
