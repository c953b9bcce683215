//! Reading the analyst projections: daily analytics, failure reasons, ledger balances and
//! journal entries. Analysts (and admins) see every merchant; a checkout key sees only its
//! own merchant. Money is always a decimal string.

use actix_web::{web, HttpResponse};
use chrono::{DateTime, NaiveDate, Utc};
use projections::ledger::EntryCursor;
use projections::{analytics, failures, ledger};
use serde::{Deserialize, Serialize};

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

/// The operations below, for the contract (`crate::openapi`).
#[derive(utoipa::OpenApi)]
#[openapi(paths(daily, summary, failure_reasons, balances, account_entries))]
pub struct Api;

/// A page of rows.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct Rows<T> {
    data: Vec<T>,
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
    if !filter_text(value) {
        errors.push(invalid(name, filter_rule()));
    }
    Some(value)
}

fn filter_rule() -> String {
    format!("must be 1 to {FILTER_LEN_MAX} characters, none of them a control character")
}

/// A filter or account name the read models can hold: PostgreSQL text takes no NUL, and
/// no name of ours has a control character.
fn filter_text(value: &str) -> bool {
    !value.is_empty() && value.len() <= FILTER_LEN_MAX && !value.chars().any(char::is_control)
}

fn read_problem(error: sqlx::Error) -> Problem {
    tracing::error!(%error, "projection read failed");
    Problem::unavailable("the read model is unavailable; retry later")
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct DailyQuery {
    /// First UTC day (inclusive).
    from: Option<NaiveDate>,
    /// Last UTC day (inclusive).
    to: Option<NaiveDate>,
    #[param(min_length = 1, max_length = 128)]
    provider: Option<String>,
    /// A payment method type, e.g. `CARD`.
    #[param(min_length = 1, max_length = 128)]
    method: Option<String>,
    #[param(min_length = 1, max_length = 128)]
    currency: Option<String>,
    /// Rows per answer (1 to 500, default 100).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<i64>,
}

/// One merchant's payments through one provider and method in one currency on one UTC day.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct DailyRow {
    merchant_id: String,
    day: NaiveDate,
    provider: String,
    payment_method_type: String,
    currency: String,
    initiated_count: i64,
    approved_count: i64,
    declined_count: i64,
    failed_count: i64,
    expired_count: i64,
    voided_count: i64,
    refunded_count: i64,
    #[schema(schema_with = crate::openapi::decimal_text)]
    approved_amount: String,
    #[schema(schema_with = crate::openapi::decimal_text)]
    refunded_amount: String,
    #[schema(schema_with = crate::openapi::decimal_text)]
    fee_amount: String,
    /// approved / decided, 0 to 1; `null` when nothing was decided.
    #[schema(schema_with = crate::openapi::optional_decimal_text)]
    success_rate: Option<String>,
    #[schema(schema_with = crate::openapi::optional_decimal_text)]
    approval_seconds_median: Option<String>,
    #[schema(schema_with = crate::openapi::optional_decimal_text)]
    approval_seconds_p95: Option<String>,
}

/// Daily analytics per merchant, provider, method and currency, newest day first.
#[utoipa::path(
    get,
    path = "/v1/analytics/daily",
    operation_id = "getDailyAnalytics",
    tag = "reports",
    params(DailyQuery),
    responses(
        (status = 200, description = "The days' rows.", body = Rows<DailyRow>),
        (status = 503, description = "The read model is unavailable.", body = Problem, content_type = "application/problem+json"),
    ),
)]
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
        .into_iter()
        .map(|r| DailyRow {
            merchant_id: r.merchant_id,
            day: r.day,
            provider: r.provider,
            payment_method_type: r.payment_method_type,
            currency: r.currency,
            initiated_count: r.initiated_count,
            approved_count: r.approved_count,
            declined_count: r.declined_count,
            failed_count: r.failed_count,
            expired_count: r.expired_count,
            voided_count: r.voided_count,
            refunded_count: r.refunded_count,
            approved_amount: r.approved_amount.to_string(),
            refunded_amount: r.refunded_amount.to_string(),
            fee_amount: r.fee_amount.to_string(),
            success_rate: r.success_rate.map(|d| d.to_string()),
            approval_seconds_median: r.approval_seconds_median.map(|d| d.to_string()),
            approval_seconds_p95: r.approval_seconds_p95.map(|d| d.to_string()),
        })
        .collect();
    Ok(HttpResponse::Ok().json(Rows { data }))
}

/// Days a summary may cover, today included.
const SUMMARY_DAYS_MAX: i64 = 92;
const SUMMARY_DAYS_DEFAULT: i64 = 14;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct SummaryQuery {
    /// UTC days, today included (1 to 92, default 14).
    #[param(minimum = 1, maximum = 92)]
    days: Option<i64>,
}

/// What the dashboard draws: the last `days` UTC days, today included.
#[utoipa::path(
    get,
    path = "/v1/analytics/summary",
    operation_id = "getAnalyticsSummary",
    tag = "reports",
    params(SummaryQuery),
    responses(
        (status = 200, description = "Payments per day by outcome; approved, refunded and fee volume per day and currency; success rate per provider and method; failure reasons last seen in the period.", body = Object),
        (status = 503, description = "The read model is unavailable.", body = Problem, content_type = "application/problem+json"),
    ),
)]
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

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct FailuresQuery {
    /// Failures last seen at or after this time (RFC 3339).
    from: Option<DateTime<Utc>>,
    /// Failures first seen at or before this time (RFC 3339).
    to: Option<DateTime<Utc>>,
    #[param(min_length = 1, max_length = 128)]
    provider: Option<String>,
    /// Rows per answer (1 to 500, default 100).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<i64>,
}

/// Payments that failed or were declined for one reason, at one provider, in one currency.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct FailureRow {
    merchant_id: String,
    provider: String,
    reason: String,
    currency: String,
    count: i64,
    #[schema(schema_with = crate::openapi::decimal_text)]
    amount: String,
    first_seen: DateTime<Utc>,
    last_seen: DateTime<Utc>,
    last_payment_id: uuid::Uuid,
}

/// Failure and decline reasons, most frequent first.
#[utoipa::path(
    get,
    path = "/v1/analytics/failures",
    operation_id = "getFailureReasons",
    tag = "reports",
    params(FailuresQuery),
    responses(
        (status = 200, description = "The reasons' rows.", body = Rows<FailureRow>),
        (status = 503, description = "The read model is unavailable.", body = Problem, content_type = "application/problem+json"),
    ),
)]
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
        .into_iter()
        .map(|r| FailureRow {
            merchant_id: r.merchant_id,
            provider: r.provider,
            reason: r.reason,
            currency: r.currency,
            count: r.count,
            amount: r.amount.to_string(),
            first_seen: r.first_seen,
            last_seen: r.last_seen,
            last_payment_id: r.last_payment_id,
        })
        .collect();
    Ok(HttpResponse::Ok().json(Rows { data }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct BalancesQuery {
    /// One account, e.g. `merchant_receivable:m-shop-1`.
    #[param(min_length = 1, max_length = 128)]
    account: Option<String>,
    #[param(min_length = 1, max_length = 128)]
    currency: Option<String>,
    /// Rows per answer (1 to 500, default 100).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<i64>,
}

/// An account's totals in one currency: debits, credits and their difference.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct BalanceRow {
    account: String,
    currency: String,
    #[schema(schema_with = crate::openapi::decimal_text)]
    debit_total: String,
    #[schema(schema_with = crate::openapi::decimal_text)]
    credit_total: String,
    /// debit_total - credit_total.
    #[schema(schema_with = crate::openapi::decimal_text)]
    balance: String,
    lines: i64,
}

/// Ledger balances per account and currency; over all accounts they sum to zero.
#[utoipa::path(
    get,
    path = "/v1/ledger/balances",
    operation_id = "getLedgerBalances",
    tag = "reports",
    params(BalancesQuery),
    responses(
        (status = 200, description = "The balances.", body = Rows<BalanceRow>),
        (status = 503, description = "The read model is unavailable.", body = Problem, content_type = "application/problem+json"),
    ),
)]
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
        .into_iter()
        .map(|b| BalanceRow {
            debit_total: b.debit_total.to_string(),
            credit_total: b.credit_total.to_string(),
            balance: b.balance.to_string(),
            account: b.account,
            currency: b.currency,
            lines: b.lines,
        })
        .collect();
    Ok(HttpResponse::Ok().json(Rows { data }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct EntriesQuery {
    /// `next_cursor` of the previous page.
    #[param(max_length = 64)]
    cursor: Option<String>,
    /// Lines per page (1 to 500, default 100).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<i64>,
}

/// One line of a journal entry: a debit or a credit to the account.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct EntryLine {
    /// `<global_position>.<line>`: unique, and stable across replays.
    entry_id: String,
    global_position: i64,
    payment_id: uuid::Uuid,
    event_type: String,
    posting: String,
    account: String,
    currency: String,
    #[schema(schema_with = crate::openapi::decimal_text)]
    debit: String,
    #[schema(schema_with = crate::openapi::decimal_text)]
    credit: String,
    at: DateTime<Utc>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct EntryPage {
    data: Vec<EntryLine>,
    /// Where the next page starts; `null` on the last page.
    next_cursor: Option<String>,
}

/// An account's journal lines in the order they were posted.
#[utoipa::path(
    get,
    path = "/v1/ledger/accounts/{account}/entries",
    operation_id = "listLedgerEntries",
    tag = "reports",
    params(("account" = String, Path, description = "The account, e.g. `merchant_receivable:m-shop-1`"), EntriesQuery),
    responses(
        (status = 200, description = "A page of lines.", body = EntryPage),
        (status = 503, description = "The read model is unavailable.", body = Problem, content_type = "application/problem+json"),
    ),
)]
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
    if !filter_text(&account) {
        errors.push(invalid("account", filter_rule()));
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
        .into_iter()
        .map(|e| EntryLine {
            entry_id: format!("{}.{}", e.global_position, e.line),
            global_position: e.global_position,
            payment_id: e.payment_id,
            event_type: e.event_type,
            posting: e.posting,
            account: e.account,
            currency: e.currency,
            debit: e.debit.to_string(),
            credit: e.credit.to_string(),
            at: e.at,
        })
        .collect();
    Ok(HttpResponse::Ok().json(EntryPage { data, next_cursor }))
}
