//! `GET /v1/checkout/wompi/{payment_id}`: what a front end needs to open Wompi's widget for a
//! payment — the public key and the integrity signature, never a private key or secret.

use actix_web::{web, HttpResponse};
use commands::payments::PaymentService;
use connectors::registry::Registry;
use domain::{PaymentId, PaymentStatus};

use crate::auth::Caller;
use crate::problem::Problem;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/v1/checkout/wompi/{payment_id}",
        web::get().to(wompi_widget),
    );
}

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
            "wrong-provider",
            "The payment is not with Wompi",
            format!("this payment is held by {}", payment.provider),
        ));
    }
    if payment.status != PaymentStatus::Pending {
        return Err(Problem::new(
            actix_web::http::StatusCode::CONFLICT,
            "invalid-state",
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
