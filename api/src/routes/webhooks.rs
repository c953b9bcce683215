//! `POST /v1/webhooks/{provider}`: provider notifications, authenticated by each provider's
//! own scheme over the raw body (never re-serialized JSON). A bad signature is a `401` and
//! appends nothing; a redelivery appends nothing and answers `200`. Every delivery, good or
//! bad, is written to the append-only `webhook_deliveries` log.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::Utc;
use commands::payments::{CommandError, PaymentService};
use commands::webhook_deliveries::{self, DeliveryResult};
use connectors::registry::Registry;
use connectors::{ProviderNotification, WebhookRequest};
use domain::PaymentError;
use sqlx::PgPool;

use crate::client_ip::TrustedProxies;
use crate::problem::{Problem, ProblemType};

/// Webhook bodies above this are refused (providers send a few KiB).
pub const WEBHOOK_BODY_BYTES_MAX: usize = webhook_deliveries::PAYLOAD_BYTES_MAX;
const HEADERS_MAX: usize = 64;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/webhooks/{provider}", web::post().to(webhook));
}

/// The operations below, for the contract (`crate::openapi`).
#[derive(utoipa::OpenApi)]
#[openapi(paths(webhook))]
pub struct Api;

/// What the ledger made of a delivery.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
struct Receipt {
    /// `recorded` (appended), `duplicate` (a redelivery: nothing appended) or `ignored`
    /// (nothing to record, e.g. a stale or unrelated event).
    #[schema(schema_with = receipt_result)]
    result: &'static str,
    /// The payment's stream version after it, when a payment was concerned.
    version: Option<i64>,
}

fn receipt_result() -> utoipa::openapi::schema::ObjectBuilder {
    let results = [
        DeliveryResult::Recorded,
        DeliveryResult::Duplicate,
        DeliveryResult::Ignored,
    ];
    crate::openapi::one_of_texts(results.map(DeliveryResult::as_str))
}

fn response(result: DeliveryResult, version: Option<i64>) -> HttpResponse {
    HttpResponse::Ok().json(Receipt {
        result: result.as_str(),
        version,
    })
}

/// A provider's notification, verified by its own scheme over the raw body (Wompi's
/// checksum, PayU's `sign`, Maya's source addresses and a query back, PayMongo's and the
/// sandbox's HMAC signatures, EBANX's payment hashes each queried back). Providers call this;
/// it takes no API key.
#[utoipa::path(
    post,
    path = "/v1/webhooks/{provider}",
    operation_id = "receiveWebhook",
    tag = "webhooks",
    security(()),
    params(("provider" = String, Path, description = "The provider's name: `sandbox`, `wompi`, `payu`, `maya`, `gcash` (GCash through PayMongo) or `ebanx` (GCash through EBANX)")),
    request_body(description = "The provider's own notification, as it sends it (JSON or a form).", content(("application/json"), ("application/x-www-form-urlencoded"))),
    responses(
        (status = 200, description = "Accepted: recorded, a duplicate, or nothing to record.", body = Receipt),
        (status = 401, description = "The signature (or source) does not authenticate the delivery; nothing is appended.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such provider here, or no such payment.", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The payment changed concurrently: redeliver.", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Larger than any provider sends.", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Authentic but not understood, or contradicting the payment.", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Cannot be recorded (or confirmed with the provider) now: redeliver later.", body = Problem, content_type = "application/problem+json"),
    ),
)]
#[tracing::instrument(skip_all, fields(provider))]
async fn webhook(
    req: HttpRequest,
    path: web::Path<String>,
    connectors: web::Data<Registry>,
    service: web::Data<PaymentService>,
    pool: web::Data<PgPool>,
    proxies: web::Data<TrustedProxies>,
    body: web::Bytes,
) -> Result<HttpResponse, Problem> {
    let Some(verifier) = connectors.get(path.as_str()).map(|c| c.verifier()) else {
        let name: String = path
            .chars()
            .take(32)
            .filter(|c| c.is_ascii_alphanumeric())
            .collect();
        return Err(Problem::not_found(format!(
            "no webhook endpoint for provider `{name}`"
        )));
    };
    let provider = verifier.provider();
    tracing::Span::current().record("provider", provider);
    if body.len() > WEBHOOK_BODY_BYTES_MAX {
        return Err(Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ProblemType::BodyTooLarge,
            "Body too large",
            format!("webhook bodies are limited to {WEBHOOK_BODY_BYTES_MAX} bytes"),
        ));
    }
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .take(HEADERS_MAX)
        .filter_map(|(n, v)| Some((n.as_str().to_ascii_lowercase(), v.to_str().ok()?.to_owned())))
        .collect();
    let peer = proxies.client_ip(
        req.peer_addr().map(|a| a.ip()),
        headers
            .iter()
            .filter(|(name, _)| name == "x-forwarded-for")
            .map(|(_, value)| value.as_str()),
    );
    let request = WebhookRequest {
        headers: &headers,
        body: &body,
        peer,
        received_at: Utc::now(),
    };
    let log = |valid: bool, result: DeliveryResult| {
        let pool = pool.clone();
        let body = body.clone();
        metrics::counter!(
            "payledger_webhooks_received_total",
            "provider" => provider, "verdict" => result.as_str()
        )
        .increment(1);
        async move {
            let peer = peer.map(|p| p.to_string());
            if let Err(error) =
                webhook_deliveries::record(&pool, provider, valid, peer, result, &body).await
            {
                tracing::error!(%error, "webhook delivery log write failed");
            }
        }
    };
    let notifications = match verifier.notifications(&request).await {
        Ok(notifications) => notifications,
        Err(error) if error.is_authentication() => {
            tracing::warn!(%error, "webhook refused");
            log(false, DeliveryResult::Refused).await;
            return Err(Problem::unauthorized(error.to_string()));
        }
        Err(error) if error.is_unavailable() => {
            tracing::warn!(%error, "webhook not confirmed with its provider");
            log(true, DeliveryResult::Failed).await;
            return Err(Problem::unavailable(
                "cannot confirm the webhook with its provider now; redeliver later",
            ));
        }
        Err(error) => {
            log(true, DeliveryResult::Refused).await;
            return Err(Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                ProblemType::InvalidWebhook,
                "Webhook not understood",
                error.to_string(),
            ));
        }
    };
    if notifications.is_empty() {
        log(true, DeliveryResult::Ignored).await;
        return Ok(response(DeliveryResult::Ignored, None));
    }
    // A delivery that names several payments (EBANX) answers for the one that matters most:
    // a failure (so the provider redelivers; what was recorded is then a duplicate), else a
    // refusal, else what was recorded.
    let mut verdict: Option<(DeliveryResult, Result<HttpResponse, Problem>)> = None;
    for notification in notifications {
        let next = record(&service, notification).await;
        verdict = match verdict {
            Some(kept) if weight(kept.0) >= weight(next.0) => Some(kept),
            _ => Some(next),
        };
    }
    let Some((outcome, answer)) = verdict else {
        return Ok(response(DeliveryResult::Ignored, None));
    };
    log(true, outcome).await;
    answer
}

/// How much a notification's result weighs in the answer to its delivery.
fn weight(result: DeliveryResult) -> u8 {
    match result {
        DeliveryResult::Ignored => 0,
        DeliveryResult::Duplicate => 1,
        DeliveryResult::Recorded => 2,
        DeliveryResult::Refused => 3,
        DeliveryResult::Failed => 4,
    }
}

/// Records one verified notification: what the log says of it, and the answer.
async fn record(
    service: &PaymentService,
    notification: ProviderNotification,
) -> (DeliveryResult, Result<HttpResponse, Problem>) {
    match service.record_notification(notification).await {
        Ok(executed) => {
            let result = if executed.appended > 0 {
                DeliveryResult::Recorded
            } else {
                DeliveryResult::Duplicate
            };
            (result, Ok(response(result, Some(executed.version))))
        }
        // A stale notification (the payment moved on): acknowledge so the provider stops.
        Err(CommandError::Rejected(e @ PaymentError::InvalidTransition { .. })) => {
            tracing::warn!(error = %e, "stale provider notification ignored");
            (
                DeliveryResult::Ignored,
                Ok(response(DeliveryResult::Ignored, None)),
            )
        }
        Err(CommandError::Rejected(PaymentError::NotFound)) => (
            DeliveryResult::Refused,
            Err(Problem::not_found("no such payment")),
        ),
        Err(CommandError::Rejected(e)) => (
            DeliveryResult::Refused,
            Err(Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                ProblemType::InvalidWebhook,
                "Webhook contradicts the payment",
                e.to_string(),
            )),
        ),
        Err(CommandError::Conflict) => (
            DeliveryResult::Failed,
            Err(Problem::new(
                StatusCode::CONFLICT,
                ProblemType::ConcurrentUpdate,
                "Concurrent update",
                "retry the delivery",
            )),
        ),
        Err(e) => {
            tracing::error!(error = %e, "webhook could not be recorded");
            (
                DeliveryResult::Failed,
                Err(Problem::unavailable(
                    "cannot record the webhook now; redeliver later",
                )),
            )
        }
    }
}
