//! The analytics a dashboard draws, summed over merchants (or one merchant) from the
//! analytics and failures read models: payments and volume per day, success per provider
//! and method, top failure reasons. Each query is bounded by the days asked and a row limit.

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::Serialize;
use sqlx::PgPool;

/// Failure reasons returned, most frequent first.
pub const REASONS_MAX: i64 = 10;
/// Rows of each list: days x currencies, or providers x methods, stay far below it.
const ROWS_MAX: i64 = 1_000;

#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct Day {
    pub day: NaiveDate,
    pub initiated_count: i64,
    pub approved_count: i64,
    pub declined_count: i64,
    pub failed_count: i64,
    pub expired_count: i64,
    pub refunded_count: i64,
}

/// Money per day and currency, in major units.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct Volume {
    pub day: NaiveDate,
    pub currency: String,
    pub approved_amount: Decimal,
    pub refunded_amount: Decimal,
    pub fee_amount: Decimal,
}

#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct Success {
    pub provider: String,
    pub payment_method_type: String,
    pub approved_count: i64,
    pub decided_count: i64,
    /// approved / decided (6 decimals); `None` when nothing was decided.
    pub success_rate: Option<Decimal>,
}

#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct Reason {
    pub reason: String,
    pub count: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub days: Vec<Day>,
    pub volume: Vec<Volume>,
    pub success: Vec<Success>,
    /// Reasons of failures last seen in the period, counted since first seen.
    pub failure_reasons: Vec<Reason>,
}

/// The summary of `from..=to` (UTC days); `merchant` scopes it to one merchant.
#[tracing::instrument(skip(pool))]
pub async fn summary(
    pool: &PgPool,
    merchant: Option<&str>,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Summary, sqlx::Error> {
    const SCOPE: &str = "($1::text IS NULL OR merchant_id = $1) AND day BETWEEN $2 AND $3";
    let days = rows(
        pool,
        &format!(
            "SELECT day, sum(initiated_count)::bigint AS initiated_count,
                    sum(approved_count)::bigint AS approved_count,
                    sum(declined_count)::bigint AS declined_count,
                    sum(failed_count)::bigint AS failed_count,
                    sum(expired_count)::bigint AS expired_count,
                    sum(refunded_count)::bigint AS refunded_count
               FROM analytics_daily WHERE {SCOPE}
              GROUP BY day ORDER BY day LIMIT $4"
        ),
        (merchant, from, to, ROWS_MAX),
    )
    .await?;
    let volume = rows(
        pool,
        &format!(
            "SELECT day, currency, sum(approved_amount) AS approved_amount,
                    sum(refunded_amount) AS refunded_amount, sum(fee_amount) AS fee_amount
               FROM analytics_daily WHERE {SCOPE}
              GROUP BY day, currency ORDER BY day, currency LIMIT $4"
        ),
        (merchant, from, to, ROWS_MAX),
    )
    .await?;
    let success = rows(
        pool,
        &format!(
            "SELECT provider, payment_method_type,
                    sum(approved_count)::bigint AS approved_count,
                    sum(decided_count)::bigint AS decided_count,
                    round(sum(approved_count)::numeric / NULLIF(sum(decided_count), 0), 6)
                        AS success_rate
               FROM analytics_daily WHERE {SCOPE}
              GROUP BY provider, payment_method_type
              ORDER BY provider, payment_method_type LIMIT $4"
        ),
        (merchant, from, to, ROWS_MAX),
    )
    .await?;
    let failure_reasons = rows(
        pool,
        "SELECT reason, sum(count)::bigint AS count FROM payment_failures
          WHERE ($1::text IS NULL OR merchant_id = $1)
            AND last_seen >= $2::date::timestamp AT TIME ZONE 'UTC'
            AND last_seen < ($3::date + 1)::timestamp AT TIME ZONE 'UTC'
          GROUP BY reason ORDER BY count DESC, reason LIMIT $4",
        (merchant, from, to, REASONS_MAX),
    )
    .await?;
    Ok(Summary {
        from,
        to,
        days,
        volume,
        success,
        failure_reasons,
    })
}

/// One query of the summary: $1 merchant (or NULL), $2 and $3 the first and last day, $4 the
/// row limit.
async fn rows<T>(
    pool: &PgPool,
    sql: &str,
    (merchant, from, to, limit): (Option<&str>, NaiveDate, NaiveDate, i64),
) -> Result<Vec<T>, sqlx::Error>
where
    T: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> + Send + Unpin,
{
    sqlx::query_as(sql)
        .bind(merchant)
        .bind(from)
        .bind(to)
        .bind(limit)
        .fetch_all(pool)
        .await
}
