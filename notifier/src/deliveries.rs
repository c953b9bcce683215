//! The delivery log: one row per endpoint and event, with its attempts.

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Row};
use uuid::Uuid;

pub const PENDING: &str = "pending";
pub const SUCCEEDED: &str = "succeeded";
pub const FAILED: &str = "failed";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub id: Uuid,
    pub endpoint_id: Uuid,
    pub event_id: String,
    pub payment_id: Uuid,
    pub event_type: String,
    pub state: String,
    pub attempts: i32,
    pub next_attempt_at: DateTime<Utc>,
    pub last_attempt_at: Option<DateTime<Utc>>,
    pub last_status_code: Option<i32>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
}

const COLUMNS: &str = "id, endpoint_id, event_id, payment_id, event_type, state, attempts,
    next_attempt_at, last_attempt_at, last_status_code, last_error, created_at, delivered_at";

fn from_row(row: &sqlx::postgres::PgRow) -> Result<Delivery, sqlx::Error> {
    Ok(Delivery {
        id: row.try_get("id")?,
        endpoint_id: row.try_get("endpoint_id")?,
        event_id: row.try_get("event_id")?,
        payment_id: row.try_get("payment_id")?,
        event_type: row.try_get("event_type")?,
        state: row.try_get("state")?,
        attempts: row.try_get("attempts")?,
        next_attempt_at: row.try_get("next_attempt_at")?,
        last_attempt_at: row.try_get("last_attempt_at")?,
        last_status_code: row.try_get("last_status_code")?,
        last_error: row.try_get("last_error")?,
        created_at: row.try_get("created_at")?,
        delivered_at: row.try_get("delivered_at")?,
    })
}

/// Where a page of the log ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogCursor {
    pub created_at: DateTime<Utc>,
    pub id: Uuid,
}

/// A page of an endpoint's deliveries, newest first.
pub async fn page(
    pool: &PgPool,
    endpoint: Uuid,
    after: Option<LogCursor>,
    limit: i64,
) -> Result<Vec<Delivery>, sqlx::Error> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM merchant_webhook_deliveries
          WHERE endpoint_id = $1
            AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3))
          ORDER BY created_at DESC, id DESC LIMIT $4"
    ))
    .bind(endpoint)
    .bind(after.map(|c| c.created_at))
    .bind(after.map(|c| c.id))
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.iter().map(from_row).collect()
}

/// Sends a delivery again, now: it becomes pending whatever it was (a receiver dedupes on its
/// event id), and its endpoint is enabled again. `false`: no such delivery of that endpoint.
pub async fn resend(pool: &PgPool, endpoint: Uuid, id: Uuid) -> Result<bool, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let done = sqlx::query(
        "UPDATE merchant_webhook_deliveries
            SET state = 'pending', next_attempt_at = now(), attempts = 0
          WHERE id = $1 AND endpoint_id = $2",
    )
    .bind(id)
    .bind(endpoint)
    .execute(&mut *tx)
    .await?;
    if done.rows_affected() == 0 {
        return Ok(false);
    }
    sqlx::query(
        "UPDATE webhook_endpoints
            SET status = 'enabled', status_reason = NULL, failing_since = NULL, updated_at = now()
          WHERE id = $1 AND status = 'disabled'",
    )
    .bind(endpoint)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(true)
}
