//! Reading one payment: its state from the status projection (optionally once it has
//! caught up with a command this client made), and its events from the event store.

use actix_web::{web, HttpResponse};
use commands::payments::PaymentService;
use projections::status;
use projections::version_waiters::VersionWaiters;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;

use super::{payment_id, read_problem, ReadWaits};
use crate::auth::Caller;

use crate::problem::{FieldError, Problem};
use crate::routes::payment_body::PaymentBody;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct GetQuery {
    /// Wait (a bounded time) until the read model holds at least this stream `version`: the
    /// `version` a command answered. Only up to the version the payment's stream has.
    #[serde(default)]
    #[param(minimum = 0)]
    min_version: Option<i64>,
    /// RFC 3339: the payment folded from its events recorded by then (auditors too).
    #[serde(default)]
    #[param(format = DateTime)]
    as_of: Option<String>,
}

/// Reads the status projection; with `min_version`, waits a bounded time for the projection
/// to catch up with a command this client made (read-your-writes). Only for a payment the
/// caller may see, only up to the version its stream has, and only within `ReadWaits`.
#[utoipa::path(
    get,
    path = "/v1/payments/{id}",
    operation_id = "getPayment",
    tag = "payments",
    params(("id" = Uuid, Path, description = "The payment's id"), GetQuery),
    responses(
        (status = 200, description = "The payment.", body = PaymentBody,
            links(
                ("CapturePayment" = (operation_id = "capturePayment", parameters(("id" = "$response.body#/id")))),
                ("RefundPayment" = (operation_id = "refundPayment", parameters(("id" = "$response.body#/id")))),
                ("VoidPayment" = (operation_id = "voidPayment", parameters(("id" = "$response.body#/id")))),
            )),
        (status = 400, description = "`as_of` and `min_version` together.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such payment for this key.", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many reads of this key are already waiting for a version.", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The read model is unavailable, or too many reads on this node are waiting.", body = Problem, content_type = "application/problem+json"),
    ),
)]
#[tracing::instrument(skip_all)]
pub(super) async fn get_payment(
    caller: Caller,
    pool: web::Data<PgPool>,
    service: web::Data<PaymentService>,
    waiters: web::Data<VersionWaiters>,
    waits: web::Data<ReadWaits>,
    path: web::Path<String>,
    query: web::Query<GetQuery>,
) -> Result<HttpResponse, Problem> {
    if let Some(as_of) = &query.as_of {
        if query.min_version.is_some() {
            return Err(Problem::bad_request("as_of and min_version do not combine"));
        }
        return crate::routes::audit::payment_as_of(&caller, &pool, &path, as_of).await;
    }
    let scope = caller.payment_scope()?;
    let id = payment_id(&path)?;
    let min_version = query.min_version.unwrap_or(0);
    if min_version < 0 {
        return Err(Problem::invalid(vec![FieldError::new(
            "min_version",
            "must be a stream version (0 or more)",
        )]));
    }
    let merchant = scope.map(|m| m.as_str());
    // In line before the first read: a batch committing between that read and the wait still
    // hands its row over, and a reader found behind need not read again before it waits.
    let registered = (min_version > 0)
        .then(|| waiters.wait_for(id.as_uuid(), min_version))
        .flatten();
    let current = status::get(&pool, id.as_uuid(), merchant)
        .await
        .map_err(read_problem)?;
    let row = match current {
        Some(row) if row.version >= min_version => Some(row),
        None if min_version == 0 => None,
        current => {
            // Behind, or not projected yet: wait only for a version this caller's payment
            // has (another merchant's or a missing payment is 404 at once).
            let wanted = min_version.min(service.version_at_least(id, scope, min_version).await?);
            // Asked past the stream's end: the place taken was for a version never coming.
            let registered = registered.filter(|_| wanted == min_version);
            match current {
                Some(row) if row.version >= wanted => Some(row),
                _ => {
                    let _permit = waits.into_inner().acquire(caller.key_id)?;
                    waiters
                        .read_at_least(&pool, id.as_uuid(), merchant, wanted, registered)
                        .await
                        .map_err(read_problem)?
                }
            }
        }
    };
    let row = row.ok_or_else(|| Problem::not_found("no such payment"))?;
    Ok(HttpResponse::Ok().json(PaymentBody::from_row(&row)))
}

/// Where a payment is, and nothing else: what a poller needs.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct StatusBody {
    id: uuid::Uuid,
    #[schema(schema_with = crate::openapi::payment_status)]
    status: String,
    /// The payment's stream version the read model holds.
    version: i64,
    updated_at: chrono::DateTime<chrono::Utc>,
}

/// A payment's status, version and last change, from the status projection.
#[utoipa::path(
    get,
    path = "/v1/payments/{id}/status",
    operation_id = "getPaymentStatus",
    tag = "payments",
    params(("id" = Uuid, Path, description = "The payment's id")),
    responses(
        (status = 200, description = "The payment's status.", body = StatusBody),
        (status = 404, description = "No such payment for this key.", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The read model is unavailable.", body = Problem, content_type = "application/problem+json"),
    ),
)]
#[tracing::instrument(skip_all)]
pub(super) async fn payment_status(
    caller: Caller,
    pool: web::Data<PgPool>,
    path: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    let scope = caller.payment_scope()?;
    let id = payment_id(&path)?;
    let summary = status::summary(&pool, id.as_uuid(), scope.map(|m| m.as_str()))
        .await
        .map_err(read_problem)?
        .ok_or_else(|| Problem::not_found("no such payment"))?;
    Ok(HttpResponse::Ok().json(StatusBody {
        id: summary.payment_id,
        status: summary.status,
        version: summary.version,
        updated_at: summary.updated_at,
    }))
}

/// One event of a payment's stream.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct EventBody {
    /// Its place in the payment's stream, from 1.
    sequence: i64,
    /// The event's name, e.g. `PaymentInitiated`, `PaymentApproved`.
    #[serde(rename = "type")]
    kind: &'static str,
    /// The event as stored: its fields depend on `type`.
    #[schema(value_type = Object)]
    data: domain::PaymentEvent,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct EventList {
    data: Vec<EventBody>,
}

/// The payment's events from the event store, in stream order.
#[utoipa::path(
    get,
    path = "/v1/payments/{id}/events",
    operation_id = "listPaymentEvents",
    tag = "payments",
    params(("id" = Uuid, Path, description = "The payment's id")),
    responses(
        (status = 200, description = "The payment's events, in stream order.", body = EventList),
        (status = 404, description = "No such payment for this key.", body = Problem, content_type = "application/problem+json"),
    ),
)]
#[tracing::instrument(skip_all)]
pub(super) async fn payment_events(
    caller: Caller,
    service: web::Data<PaymentService>,
    path: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    let scope = caller.payment_scope()?;
    let id = payment_id(&path)?;
    let events = service.events(id, scope).await?;
    let body: Vec<EventBody> = events
        .into_iter()
        .map(|(sequence, event)| EventBody {
            sequence,
            kind: event.name(),
            data: event,
        })
        .collect();
    Ok(HttpResponse::Ok().json(EventList { data: body }))
}
