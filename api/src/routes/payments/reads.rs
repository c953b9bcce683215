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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct GetQuery {
    #[serde(default)]
    min_version: Option<i64>,
    /// RFC 3339: the payment folded from its events recorded by then (auditors too).
    #[serde(default)]
    as_of: Option<String>,
}

/// Reads the status projection; with `min_version`, waits a bounded time for the projection
/// to catch up with a command this client made (read-your-writes). Only for a payment the
/// caller may see, only up to the version its stream has, and only within `ReadWaits`.
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
    let current = status::get(&pool, id.as_uuid(), merchant)
        .await
        .map_err(read_problem)?;
    let row = match current {
        Some(row) if row.version >= min_version => Some(row),
        None if min_version == 0 => None,
        current => {
            // Behind, or not projected yet: wait only for a version this caller's payment
            // has (another merchant's or a missing payment is 404 at once).
            let wanted = min_version.min(service.load(id, scope).await?.version);
            match current {
                Some(row) if row.version >= wanted => Some(row),
                _ => {
                    let _permit = waits.into_inner().acquire(caller.key_id)?;
                    waiters
                        .read_at_least(&pool, id.as_uuid(), merchant, wanted)
                        .await
                        .map_err(read_problem)?
                }
            }
        }
    };
    let row = row.ok_or_else(|| Problem::not_found("no such payment"))?;
    Ok(HttpResponse::Ok().json(PaymentBody::from_row(&row)))
}

#[derive(Debug, Serialize)]
struct EventBody {
    sequence: i64,
    #[serde(rename = "type")]
    kind: &'static str,
    data: domain::PaymentEvent,
}

/// The payment's events from the event store, in stream order.
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
    Ok(HttpResponse::Ok().json(serde_json::json!({ "data": body })))
}
