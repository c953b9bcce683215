//! `GET /v1/checkout/wompi/{payment_id}`: what a front end needs to open Wompi's widget for a
//! payment — the public key and the integrity signature, never a private key or secret.

use actix_web::{web, HttpResponse};
use commands::payments::PaymentService;
use connectors::registry::Registry;
use domain::{PaymentId, PaymentStatus};

use crate::auth::Caller;
use crate::problem::{Problem, ProblemType};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/v1/checkout/wompi/{payment_id}",
        web::get().to(wompi_widget),
    );
}

/// The operations below, for the contract (`crate::openapi`).
#[derive(utoipa::OpenApi)]
#[openapi(paths(wompi_widget))]
pub struct Api;

/// What Wompi's widget is opened with (the connector's `WompiWidget`).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // the contract's description of the connector's answer
struct WompiWidget {
    /// Wompi's public key (`pub_test_…` / `pub_prod_…`).
    public_key: String,
    /// The payment's id, as Wompi's `reference`.
    reference: String,
    amount_in_cents: i64,
    currency: String,
    /// Wompi's `signature:integrity` for these fields.
    signature_integrity: String,
}

/// What a front end needs to open Wompi's widget for a `PENDING` payment Wompi holds.
#[utoipa::path(
    get,
    path = "/v1/checkout/wompi/{payment_id}",
    operation_id = "getWompiWidget",
    tag = "catalog",
    params(("payment_id" = Uuid, Path, description = "The payment's id")),
    responses(
        (status = 200, description = "The widget's settings.", body = WompiWidget),
        (status = 404, description = "No such payment for this key, or Wompi is not configured.", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The payment is not with Wompi, or not `PENDING`.", body = Problem, content_type = "application/problem+json"),
    ),
)]
#[tracing::instrument(skip_all)]
async fn wompi_widget(
    caller: Caller,
    service: web::Data<PaymentService>,
    connectors: web::Data<Registry>,
    path: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    let scope = caller.payment_scope()?;
    let Some(wompi) = connectors.get(connectors::wompi::NAME) else {
        return Err(Problem::not_found("wompi is not configured"));
    };
    let id: PaymentId = path
        .parse()
        .map_err(|_| Problem::not_found("no such payment"))?;
    let current = service
        .load(id, scope)
        .await
        .map_err(|_| Problem::not_found("no such payment"))?;
    let payment = current.payment;
    if payment.provider != connectors::wompi::NAME {
        // Opening Wompi's widget for a payment another provider holds could charge twice.
        return Err(Problem::new(
            actix_web::http::StatusCode::CONFLICT,
            ProblemType::WrongProvider,
            "The payment is not with Wompi",
            format!("this payment is held by {}", payment.provider),
        ));
    }
    if payment.status != PaymentStatus::Pending {
        return Err(Problem::new(
            actix_web::http::StatusCode::CONFLICT,
            ProblemType::InvalidState,
            "Not allowed in the payment's state",
            format!(
                "the widget opens only for a PENDING payment; this one is {}",
                payment.status
            ),
        ));
    }
    let amount = payment
        .amount
        .ok_or_else(|| Problem::not_found("no such payment"))?;
    let widget = wompi
        .checkout_widget(id, amount)
        .ok_or_else(|| Problem::not_found("wompi offers no widget"))?;
    Ok(HttpResponse::Ok().json(widget))
}
