//! Reading the analyst projections: daily analytics, failure reasons, ledger balances and
//! journal entries. Analysts (and admins) see every merchant; a checkout key sees only its
//! own merchant. Money is always a decimal string.

use actix_web::{web, HttpResponse};
use chrono::{DateTime, NaiveDate, Utc};
use projections::ledger::EntryCursor;
use projections::{analytics, failures, ledger};
use serde::Deserialize;
use serde_json::json;

use crate::auth::{Caller, Role};
use crate::problem::{FieldError, Problem};
use crate::routes::payments::PAGE_SIZE_MAX;
use crate::startup::ReadPool;

const PAGE_SIZE_DEFAULT: i64 = 100;
const FILTER_LEN_MAX: usize = 128;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/analytics/daily", web::get().to(daily))
        .route("/v1/analytics/summary", web::get().to(summary))
        .route("/v1/analytics/failures", web::get().to(failure_reasons))
        .route("/v1/ledger/balances", web::get().to(balances))
        .route(
            "/v1/ledger/accounts/{account}/entries",
            web::get().to(account_entries),
        );
}

/// Whose rows the caller may read: `None` = every merchant.
fn report_scope(caller: &Caller) -> Result<Option<&str>, Problem> {
    match caller.role {
        // Operators see the same figures on the dashboard.
        Role::Analyst | Role::Admin | Role::Operator => Ok(None),
        Role::Checkout => caller
            .merchant
            .as_ref()
            .map(|m| Some(m.as_str()))
            .ok_or_else(|| Problem::forbidden("this key is not bound to a merchant")),
        Role::Auditor => Err(Problem::forbidden(
            "auditors read the event stream (/v1/audit), not the analyst projections",
        )),
    }
}

fn invalid(field: &str, message: impl ToString) -> FieldError {
    FieldError {
        field: field.to_owned(),
        message: message.to_string(),
    }
}

fn page_size(limit: Option<i64>, errors: &mut Vec<FieldError>) -> i64 {
    let limit = limit.unwrap_or(PAGE_SIZE_DEFAULT);
    if !(1..=PAGE_SIZE_MAX).contains(&limit) {
        errors.push(invalid("limit", format!("must be 1 to {PAGE_SIZE_MAX}")));
    }
    limit
}

fn bounded<'a>(
    name: &str,
    value: &'a Option<String>,
    errors: &mut Vec<FieldError>,
) -> Option<&'a str> {
    let value = value.as_deref()?;
    if value.is_empty() || value.len() > FILTER_LEN_MAX {
        errors.push(invalid(
            name,
            format!("must be 1 to {FILTER_LEN_MAX} characters"),
        ));
    }
    Some(value)
}

fn read_problem(error: sqlx::Error) -> Problem {
    tracing::error!(%error, "projection read failed");
    Problem::unavailable("the read model is unavailable; retry later")
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DailyQuery {
    from: Option<NaiveDate>,
    to: Option<NaiveDate>,
    provider: Option<String>,
    method: Option<String>,
    currency: Option<String>,
    limit: Option<i64>,
}

#[tracing::instrument(skip_all)]
async fn daily(
    caller: Caller,
    pool: web::Data<ReadPool>,
    query: web::Query<DailyQuery>,
) -> Result<HttpResponse, Problem> {
    let merchant = report_scope(&caller)?;
    let mut errors = Vec::new();
    let limit = page_size(query.limit, &mut errors);
    let provider = bounded("provider", &query.provider, &mut errors);
    let method = bounded("method", &query.method, &mut errors);
    let currency = bounded("currency", &query.currency, &mut errors);
    if let (Some(from), Some(to)) = (query.from, query.to) {
        if from > to {
            errors.push(invalid("from", "must not be after `to`"));
        }
    }
    if !errors.is_empty() {
        return Err(Problem::invalid(errors));
    }
    let rows = analytics::daily(
        &pool, merchant, query.from, query.to, provider, method, currency, limit,
    )
    .await
    .map_err(read_problem)?;
    let data: Vec<_> = rows
        .iter()
        .map(|r| {
            json!({
                "merchant_id": r.merchant_id,
                "day": r.day,
                "provider": r.provider,
                "payment_method_type": r.payment_method_type,
                "currency": r.currency,
                "initiated_count": r.initiated_count,
                "approved_count": r.approved_count,
                "declined_count": r.declined_count,
                "failed_count": r.failed_count,
                "expired_count": r.expired_count,
                "voided_count": r.voided_count,
                "refunded_count": r.refunded_count,
                "approved_amount": r.approved_amount.to_string(),
                "refunded_amount": r.refunded_amount.to_string(),
                "fee_amount": r.fee_amount.to_string(),
                "success_rate": r.success_rate.map(|d| d.to_string()),
                "approval_seconds_median": r.approval_seconds_median.map(|d| d.to_string()),
                "approval_seconds_p95": r.approval_seconds_p95.map(|d| d.to_string()),
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "data": data })))
}

/// Days a summary may cover, today included.
const SUMMARY_DAYS_MAX: i64 = 92;
const SUMMARY_DAYS_DEFAULT: i64 = 14;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SummaryQuery {
    days: Option<i64>,
}

/// What the dashboard draws: the last `days` UTC days, today included.
#[tracing::instrument(skip_all)]
async fn summary(
    caller: Caller,
    pool: web::Data<ReadPool>,
    query: web::Query<SummaryQuery>,
) -> Result<HttpResponse, Problem> {
    let merchant = report_scope(&caller)?;
    let days = query.days.unwrap_or(SUMMARY_DAYS_DEFAULT);
    if !(1..=SUMMARY_DAYS_MAX).contains(&days) {
        return Err(Problem::invalid(vec![invalid(
            "days",
            format!("must be 1 to {SUMMARY_DAYS_MAX}"),
        )]));
    }
    let to = Utc::now().date_naive();
    let from = to - chrono::Days::new((days - 1) as u64);
    let summary = projections::summary::summary(&pool, merchant, from, to)
        .await
        .map_err(read_problem)?;
    Ok(HttpResponse::Ok().json(summary))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FailuresQuery {
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    provider: Option<String>,
    limit: Option<i64>,
}

#[tracing::instrument(skip_all)]
async fn failure_reasons(
    caller: Caller,
    pool: web::Data<ReadPool>,
    query: web::Query<FailuresQuery>,
) -> Result<HttpResponse, Problem> {
    let merchant = report_scope(&caller)?;
    let mut errors = Vec::new();
    let limit = page_size(query.limit, &mut errors);
    let provider = bounded("provider", &query.provider, &mut errors);
    if !errors.is_empty() {
        return Err(Problem::invalid(errors));
    }
    let rows = failures::failures(&pool, merchant, query.from, query.to, provider, limit)
        .await
        .map_err(read_problem)?;
    let data: Vec<_> = rows
        .iter()
        .map(|r| {
            json!({
                "merchant_id": r.merchant_id,
                "provider": r.provider,
                "reason": r.reason,
                "currency": r.currency,
                "count": r.count,
                "amount": r.amount.to_string(),
                "first_seen": r.first_seen,
                "last_seen": r.last_seen,
                "last_payment_id": r.last_payment_id,
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "data": data })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BalancesQuery {
    account: Option<String>,
    currency: Option<String>,
    limit: Option<i64>,
}

#[tracing::instrument(skip_all)]
async fn balances(
    caller: Caller,
    pool: web::Data<ReadPool>,
    query: web::Query<BalancesQuery>,
) -> Result<HttpResponse, Problem> {
    let merchant = report_scope(&caller)?;
    let mut errors = Vec::new();
    let limit = page_size(query.limit, &mut errors);
    let account = bounded("account", &query.account, &mut errors);
    let currency = bounded("currency", &query.currency, &mut errors);
    if !errors.is_empty() {
        return Err(Problem::invalid(errors));
    }
    let rows = ledger::balances(&pool, merchant, account, currency, limit)
        .await
        .map_err(read_problem)?;
    let data: Vec<_> = rows
        .iter()
        .map(|b| {
            json!({
                "account": b.account,
                "currency": b.currency,
                "debit_total": b.debit_total.to_string(),
                "credit_total": b.credit_total.to_string(),
                "balance": b.balance.to_string(),
                "lines": b.lines,
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "data": data })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EntriesQuery {
    cursor: Option<String>,
    limit: Option<i64>,
}

#[tracing::instrument(skip_all)]
async fn account_entries(
    caller: Caller,
    pool: web::Data<ReadPool>,
    path: web::Path<String>,
    query: web::Query<EntriesQuery>,
) -> Result<HttpResponse, Problem> {
    let merchant = report_scope(&caller)?;
    let mut errors = Vec::new();
    let limit = page_size(query.limit, &mut errors);
    let account = path.into_inner();
    if account.is_empty() || account.len() > FILTER_LEN_MAX {
        errors.push(invalid(
            "account",
            format!("must be 1 to {FILTER_LEN_MAX} characters"),
        ));
    }
    let after = match query.cursor.as_deref() {
        None => None,
        Some(text) => match text.parse::<EntryCursor>() {
            Ok(cursor) => Some(cursor),
            Err(message) => {
                errors.push(invalid("cursor", message));
                None
            }
        },
    };
    if !errors.is_empty() {
        return Err(Problem::invalid(errors));
    }
    // One more than asked tells whether another page exists.
    let mut rows = ledger::entries(&pool, merchant, &account, after, limit + 1)
        .await
        .map_err(read_problem)?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next_cursor = more
        .then(|| rows.last())
        .flatten()
        .map(|line| EntryCursor::from(line).to_string());
    let data: Vec<_> = rows
        .iter()
        .map(|e| {
            json!({
                "entry_id": format!("{}.{}", e.global_position, e.line),
                "global_position": e.global_position,
                "payment_id": e.payment_id,
                "event_type": e.event_type,
                "posting": e.posting,
                "account": e.account,
                "currency": e.currency,
                "debit": e.debit.to_string(),
                "credit": e.credit.to_string(),
                "at": e.at,
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "data": data, "next_cursor": next_cursor })))
}
