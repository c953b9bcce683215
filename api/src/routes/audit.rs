//! `/v1/audit`: the event stream in chain order for auditors, streamed as NDJSON in bounded
//! memory, and the chain's head (the digest an auditor notes down). Also the `as_of` read of
//! `GET /v1/payments/{id}`: the payment folded from its events up to a moment.

use actix_web::web::Bytes;
use actix_web::{web, HttpResponse};
use chrono::{DateTime, SubsecRound, Utc};
use domain::PaymentId;
use serde::Deserialize;
use sqlx::PgPool;

use crate::auth::{Caller, Role};
use crate::problem::{FieldError, Problem};
use crate::routes::payment_body::PaymentBody;
use crate::startup::ReadPool;
use audit::chain::{self, PAGE_ROWS};

/// The most records one request may ask for with `limit` (without it: to the head).
pub const LIMIT_MAX: i64 = 10_000_000;
pub const NDJSON: &str = "application/x-ndjson";

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/audit/events", web::get().to(events))
        .route("/v1/audit/head", web::get().to(head));
}

/// The operations below, for the contract (`crate::openapi`).
#[derive(utoipa::OpenApi)]
#[openapi(paths(events, head))]
pub struct Api;

fn require_auditor(caller: &Caller) -> Result<(), Problem> {
    match caller.role {
        Role::Auditor | Role::Admin => Ok(()),
        Role::Checkout | Role::Analyst | Role::Operator => Err(Problem::forbidden(
            "the audit stream is for auditor (and admin) keys",
        )),
    }
}

fn unavailable(error: sqlx::Error) -> Problem {
    tracing::error!(%error, "audit read failed");
    Problem::unavailable("the event store is unavailable; retry later")
}

fn invalid(field: &str, message: impl ToString) -> FieldError {
    FieldError {
        field: field.to_owned(),
        message: message.to_string(),
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct EventsQuery {
    /// Records after this chain position (0: from the start).
    #[serde(default)]
    #[param(minimum = 0)]
    after: Option<i64>,
    /// At most this many records (without it: to the head as it was when asked).
    #[serde(default)]
    #[param(minimum = 1, maximum = 10_000_000)]
    limit: Option<i64>,
}

/// Where a stream is: the last position sent, and how many records may still go.
struct Cursor {
    pool: PgPool,
    after: i64,
    through: i64,
    remaining: i64,
}

/// Chain records after `after`, up to the head as it was when the request arrived (or
/// `limit` of them), one JSON object per line. The body is produced a page of `PAGE_ROWS`
/// records at a time, and only when the client has taken the previous one, so a stream of
/// any length holds one page in memory. The head is in `X-Audit-Head` (`<position>:<hash>`):
/// the last line of an unlimited stream carries that position and hash, so a client can tell
/// a complete stream from a cut one.
#[utoipa::path(
    get,
    path = "/v1/audit/events",
    operation_id = "streamAuditEvents",
    tag = "audit",
    params(EventsQuery),
    responses(
        (status = 200, description = "One chain record per line (NDJSON): position, event, hash of the previous record and its own.",
            body = String, content_type = "application/x-ndjson",
            headers(("X-Audit-Head" = String, description = "The head when asked: `<position>:<chain hash>`."))),
        (status = 503, description = "The event store is unavailable.", body = Problem, content_type = "application/problem+json"),
    ),
)]
#[tracing::instrument(skip_all)]
async fn events(
    caller: Caller,
    pool: web::Data<ReadPool>,
    query: web::Query<EventsQuery>,
) -> Result<HttpResponse, Problem> {
    require_auditor(&caller)?;
    let mut errors = Vec::new();
    let after = query.after.unwrap_or(0);
    if after < 0 {
        errors.push(invalid("after", "must be a chain position, 0 or more"));
    }
    if let Some(limit) = query.limit {
        if !(1..=LIMIT_MAX).contains(&limit) {
            errors.push(invalid("limit", format!("must be 1 to {LIMIT_MAX}")));
        }
    }
    if !errors.is_empty() {
        return Err(Problem::invalid(errors));
    }
    let head = chain::head(pool.pool()).await.map_err(unavailable)?;
    let cursor = Cursor {
        pool: pool.pool().clone(),
        after,
        through: head.position,
        remaining: query.limit.unwrap_or(i64::MAX),
    };
    let body = futures::stream::try_unfold(cursor, |mut cursor| async move {
        if cursor.remaining <= 0 || cursor.after >= cursor.through {
            return Ok(None);
        }
        let (buffer, count, last) = chain::lines(
            &cursor.pool,
            cursor.after,
            cursor.through,
            PAGE_ROWS.min(cursor.remaining),
        )
        .await
        .map_err(|error| {
            // The status line is gone: all that is left is to cut the body short.
            tracing::error!(%error, after = cursor.after, "audit stream failed");
            std::io::Error::other("the event store failed mid-stream")
        })?;
        let Some(last) = last else {
            return Ok(None);
        };
        cursor.after = last;
        cursor.remaining -= count as i64;
        Ok::<_, std::io::Error>(Some((Bytes::from(buffer), cursor)))
    });
    Ok(HttpResponse::Ok()
        .content_type(NDJSON)
        .insert_header(("X-Audit-Head", head.digest().to_string()))
        .insert_header(("Cache-Control", "no-store"))
        .streaming(body))
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
struct ChainHead {
    position: i64,
    /// Hex SHA-256 of the chain up to `position`.
    chain_hash: String,
    /// The head event's place in the store's total order (`null` on an empty chain).
    global_position: Option<i64>,
    /// `<position>:<chain_hash>`: what `payledger audit verify --digest` checks later.
    digest: String,
}

/// The chain's latest position and hash: `digest` is what to pass to
/// `payledger audit verify --digest` later.
#[utoipa::path(
    get,
    path = "/v1/audit/head",
    operation_id = "getAuditHead",
    tag = "audit",
    responses(
        (status = 200, description = "The chain's head.", body = ChainHead),
        (status = 503, description = "The event store is unavailable.", body = Problem, content_type = "application/problem+json"),
    ),
)]
#[tracing::instrument(skip_all)]
async fn head(caller: Caller, pool: web::Data<ReadPool>) -> Result<HttpResponse, Problem> {
    require_auditor(&caller)?;
    let head = chain::head(pool.pool()).await.map_err(unavailable)?;
    Ok(HttpResponse::Ok().json(ChainHead {
        position: head.position,
        chain_hash: hex::encode(head.chain_hash),
        global_position: head.global_position,
        digest: head.digest().to_string(),
    }))
}

/// `GET /v1/payments/{id}?as_of=<RFC 3339>`: the payment rebuilt from its events recorded up
/// to `as_of`, not from the projection. Auditors and admins see every payment; a checkout
/// key only its merchant's (another merchant's is `404`, as is one that did not exist yet).
pub async fn payment_as_of(
    caller: &Caller,
    pool: &PgPool,
    id: &str,
    as_of: &str,
) -> Result<HttpResponse, Problem> {
    let scope = match caller.role {
        Role::Auditor | Role::Admin => None,
        Role::Checkout => Some(
            caller
                .merchant
                .as_ref()
                .ok_or_else(|| Problem::forbidden("this key is not bound to a merchant"))?,
        ),
        Role::Analyst | Role::Operator => {
            return Err(Problem::forbidden(
                "this key's role may not use the payments API",
            ))
        }
    };
    let as_of: DateTime<Utc> = DateTime::parse_from_rfc3339(as_of)
        .map_err(|e| {
            Problem::invalid(vec![invalid(
                "as_of",
                format!("must be an RFC 3339 time such as 2026-11-21T23:46:08.412084Z ({e})"),
            )])
        })?
        .with_timezone(&Utc);
    let id: PaymentId = id
        .parse()
        .map_err(|_| Problem::not_found("no such payment"))?;
    let folded = audit::as_of::payment_as_of(pool, id, as_of)
        .await
        .map_err(|error| {
            tracing::error!(%error, "as_of read failed");
            Problem::unavailable("the event store is unavailable; retry later")
        })?;
    let Some((payment, version)) = folded else {
        return Err(Problem::not_found("no such payment at that time"));
    };
    if scope.is_some_and(|merchant| payment.merchant_id.as_ref() != Some(merchant)) {
        return Err(Problem::not_found("no such payment at that time"));
    }
    let mut body = PaymentBody::from_stream(&payment, version);
    // The projection holds times as Postgres does (microseconds, truncated on the way in);
    // the same payment must read the same either way.
    body.created_at = body.created_at.map(|t| t.trunc_subsecs(6));
    body.updated_at = body.updated_at.map(|t| t.trunc_subsecs(6));
    Ok(HttpResponse::Ok().json(body))
}
