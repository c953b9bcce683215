//! `GET /v1/payments`: a page of payments from the status projection, newest first, with
//! an opaque cursor to the next page.

use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use projections::status::{self, ListCursor, ListFilter};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;

use super::read_problem;
use crate::auth::Caller;
use crate::problem::{FieldError, Problem};
use crate::routes::payment_body::PaymentBody;

/// `?status=needs_review` lists payments flagged for review, whatever their status.
const NEEDS_REVIEW: &str = "NEEDS_REVIEW";
pub const PAGE_SIZE_MAX: i64 = 500;
const PAGE_SIZE_DEFAULT: i64 = 50;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct ListQuery {
    /// Only payments in this status; `NEEDS_REVIEW`: those with an intent an operator must
    /// look at, whatever their status.
    #[serde(default)]
    #[param(schema_with = status_filter)]
    status: Option<String>,
    /// Payments per page (1 to 500, default 50).
    #[serde(default)]
    #[param(minimum = 1, maximum = 500)]
    limit: Option<i64>,
    /// `next_cursor` of the previous page.
    #[serde(default)]
    #[param(max_length = 256)]
    cursor: Option<String>,
    /// Only payments with this order reference, exactly as it was given at creation.
    #[serde(default)]
    #[param(max_length = 255)]
    reference: Option<String>,
    /// RFC 3339: only payments created at or after this moment.
    #[serde(default)]
    #[param(format = DateTime)]
    created_gte: Option<String>,
    /// RFC 3339: only payments created before this moment.
    #[serde(default)]
    #[param(format = DateTime)]
    created_lt: Option<String>,
}

fn status_filter() -> utoipa::openapi::schema::ObjectBuilder {
    let statuses = domain::PaymentStatus::VISIBLE.map(domain::PaymentStatus::as_str);
    crate::openapi::one_of_texts(statuses.into_iter().chain([NEEDS_REVIEW]))
}

/// A page of payments, newest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct PaymentPage {
    data: Vec<PaymentBody>,
    /// Where the next page starts; `null` on the last page.
    next_cursor: Option<String>,
}

/// An RFC 3339 moment of a filter, or its error pushed.
fn moment(
    name: &'static str,
    text: Option<&str>,
    errors: &mut Vec<FieldError>,
) -> Option<DateTime<Utc>> {
    let text = text?;
    match DateTime::parse_from_rfc3339(text) {
        Ok(at) => Some(at.with_timezone(&Utc)),
        Err(_) => {
            errors.push(FieldError::new(
                name,
                "must be an RFC 3339 date-time, e.g. 2026-12-01T00:00:00Z",
            ));
            None
        }
    }
}

/// The caller's payments, newest first, a page at a time; narrowed by status, reference and
/// creation time.
#[utoipa::path(
    get,
    path = "/v1/payments",
    operation_id = "listPayments",
    tag = "payments",
    params(ListQuery),
    responses((status = 200, description = "A page of the caller's payments.", body = PaymentPage)),
)]
#[tracing::instrument(skip_all)]
pub(super) async fn list_payments(
    caller: Caller,
    pool: web::Data<PgPool>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, Problem> {
    let scope = caller.payment_scope()?.map(|m| m.as_str());
    let mut errors = Vec::new();
    let (limit, cursor) = crate::routes::cursor::page_query(
        query.limit,
        query.cursor.as_deref(),
        PAGE_SIZE_DEFAULT,
        PAGE_SIZE_MAX,
        &mut errors,
    );
    let cursor = cursor.map(|(created_at, payment_id)| ListCursor {
        created_at,
        payment_id,
    });
    let status_filter = match query.status.as_deref() {
        None => None,
        // Not a status: payments with an intent an operator must look at.
        Some(text) if text.eq_ignore_ascii_case(NEEDS_REVIEW) => Some(NEEDS_REVIEW),
        Some(text) => match domain::PaymentStatus::parse(text) {
            Some(s) => Some(s.as_str()),
            None => {
                errors.push(FieldError::new("status", "unknown status"));
                None
            }
        },
    };
    let reference = match query.reference.as_deref() {
        None => None,
        Some(text) => match domain::Reference::parse(text) {
            Ok(_) => Some(text),
            Err(e) => {
                errors.push(FieldError::new("reference", e));
                None
            }
        },
    };
    let created_gte = moment("created_gte", query.created_gte.as_deref(), &mut errors);
    let created_lt = moment("created_lt", query.created_lt.as_deref(), &mut errors);
    if !errors.is_empty() {
        return Err(Problem::invalid(errors));
    }
    let filter = ListFilter {
        merchant: scope,
        status: status_filter,
        reference,
        created_gte,
        created_lt,
    };
    // One more than asked tells whether another page exists.
    let mut rows = status::list(&pool, filter, cursor, limit + 1)
        .await
        .map_err(read_problem)?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next_cursor = more
        .then(|| rows.last())
        .flatten()
        .map(|row| crate::routes::cursor::encode(row.created_at, row.payment_id));
    Ok(HttpResponse::Ok().json(PaymentPage {
        data: rows.iter().map(PaymentBody::from_row).collect(),
        next_cursor,
    }))
}
