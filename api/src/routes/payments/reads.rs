//! Reading one payment: its state from the status projection (optionally once it has
//! caught up with a command this client made), and its events from the event store.

use actix_web::{web, HttpResponse};
use commands::payments::PaymentService;
use projections::version_waiters::VersionWaiters;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;

use super::{payment_id, read_problem};
use crate::auth::Caller;
use crate::problem::Problem;
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
/// to catch up with a command this client just made (read-your-writes).
#[tracing::instrument(skip_all)]
pub(super) async fn get_payment(
    caller: Caller,
    pool: web::Data<PgPool>,
    waiters: web::Data<VersionWaiters>,
    path: web::Path<String>,
    query: web::Query<GetQuery>,
) -> Result<HttpResponse, Problem> {
    if let Some(as_of) = &query.as_of {
        if query.min_version.is_some() {
            return Err(Problem::bad_request("as_of and min_version do not combine"));
        }
        return crate::routes::audit::payment_as_of(&caller, &pool, &path, as_of).await;
    }
    let scope = caller.payment_scope()?.map(|m| m.as_str());
    let id = payment_id(&path)?.as_uuid();
    let row = waiters
        .read_at_least(&pool, id, scope, query.min_version.unwrap_or(0))
        .await
        .map_err(read_problem)?
        .ok_or_else(|| Problem::not_found("no such payment"))?;
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
