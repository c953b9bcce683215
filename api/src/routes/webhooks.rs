//! `POST /v1/webhooks/{provider}`: provider notifications, authenticated by the provider's
//! signature over the raw body (never re-serialized JSON). A bad signature is a `401` and
//! appends nothing; a redelivery appends nothing and answers `200`.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use commands::payments::{CommandError, PaymentService, ProviderOutcome};
use commands::webhooks::sandbox::{self, Outcome};
use commands::webhooks::WebhookError;
use domain::PaymentError;

use crate::problem::Problem;

/// The sandbox's webhook secret, kept apart from other state so it is never serialized.
#[derive(Clone)]
pub struct SandboxWebhookSecret(pub Vec<u8>);

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/webhooks/sandbox", web::post().to(sandbox_webhook))
        .route("/v1/webhooks/{provider}", web::post().to(unknown_provider));
}

async fn unknown_provider(path: web::Path<String>) -> Result<HttpResponse, Problem> {
    let name: String = path
        .chars()
        .take(32)
        .filter(|c| c.is_ascii_alphanumeric())
        .collect();
    Err(Problem::not_found(format!(
        "no webhook endpoint for provider `{name}`"
    )))
}

#[tracing::instrument(skip_all)]
async fn sandbox_webhook(
    req: HttpRequest,
    secret: web::Data<SandboxWebhookSecret>,
    service: web::Data<PaymentService>,
    body: web::Bytes,
) -> Result<HttpResponse, Problem> {
    let signature = req
        .headers()
        .get("X-Sandbox-Signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !sandbox::verify_signature(&secret.0, &body, signature) {
        tracing::warn!("sandbox webhook with a bad signature refused");
        return Err(Problem::unauthorized(
            "webhook signature is missing or does not match",
        ));
    }
    let notification = match sandbox::parse_notification(&body) {
        Ok(n) => n,
        Err(WebhookError::UnsupportedEventType(_) | WebhookError::UnsupportedStatus(_)) => {
            return Ok(HttpResponse::Ok().json(serde_json::json!({"result": "ignored"})));
        }
        Err(e) => {
            return Err(Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-webhook",
                "Webhook not understood",
                e.to_string(),
            ))
        }
    };
    let outcome = match notification.outcome {
        Outcome::Authorized { amount } => ProviderOutcome::Authorized { amount },
        Outcome::Approved { amount } => ProviderOutcome::Approved { amount },
        Outcome::Declined { reason } => ProviderOutcome::Declined { reason },
    };
    let result = service
        .record_provider_outcome(
            notification.payment_id,
            notification.event_id,
            notification.transaction_id,
            outcome,
        )
        .await;
    match result {
        Ok(executed) => Ok(HttpResponse::Ok().json(serde_json::json!({
            "result": if executed.appended > 0 { "recorded" } else { "duplicate" },
            "version": executed.version,
        }))),
        // A stale notification (the payment moved on): acknowledge so the provider stops.
        Err(CommandError::Rejected(e @ PaymentError::InvalidTransition { .. })) => {
            tracing::warn!(error = %e, "stale provider notification ignored");
            Ok(HttpResponse::Ok().json(serde_json::json!({"result": "ignored"})))
        }
        Err(CommandError::Rejected(PaymentError::NotFound)) => {
            Err(Problem::not_found("no such payment"))
        }
        Err(CommandError::Rejected(e)) => Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-webhook",
            "Webhook contradicts the payment",
            e.to_string(),
        )),
        Err(CommandError::Conflict) => Err(Problem::new(
            StatusCode::CONFLICT,
            "concurrent-update",
            "Concurrent update",
            "retry the delivery",
        )),
        Err(e) => {
            tracing::error!(error = %e, "webhook could not be recorded");
            Err(Problem::unavailable(
                "cannot record the webhook now; redeliver later",
            ))
        }
    }
}
