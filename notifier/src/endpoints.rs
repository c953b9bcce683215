//! A merchant's webhook endpoints.

use chrono::{DateTime, Utc};
use rand::RngCore;
use sqlx::{PgPool, Row};
use uuid::Uuid;

/// Endpoints one merchant may hold (deleted ones aside).
pub const ENDPOINTS_PER_MERCHANT_MAX: i64 = 16;

pub const ENABLED: &str = "enabled";
pub const DISABLED: &str = "disabled";
pub const DELETED: &str = "deleted";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub id: Uuid,
    pub merchant_id: String,
    pub url: String,
    /// Event names it takes; empty: all.
    pub event_types: Vec<String>,
    pub status: String,
    pub status_reason: Option<String>,
    pub failing_since: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// `whsec_` and 32 random bytes in hex: the HMAC key of an endpoint's signatures.
pub fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("whsec_{}", hex::encode(bytes))
}

#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error("a merchant keeps at most {ENDPOINTS_PER_MERCHANT_MAX} webhook endpoints")]
    TooMany,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Registers an endpoint; answers it and its secret (shown this once).
pub async fn create(
    pool: &PgPool,
    merchant: &str,
    url: &str,
    event_types: &[String],
) -> Result<(Endpoint, String), EndpointError> {
    let mut tx = pool.begin().await?;
    // One registration at a time per merchant, so the bound holds under concurrency.
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('webhook_endpoints:' || $1))")
        .bind(merchant)
        .execute(&mut *tx)
        .await?;
    let held: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM webhook_endpoints WHERE merchant_id = $1 AND status <> 'deleted'",
    )
    .bind(merchant)
    .fetch_one(&mut *tx)
    .await?;
    if held >= ENDPOINTS_PER_MERCHANT_MAX {
        return Err(EndpointError::TooMany);
    }
    let secret = new_secret();
    let row = sqlx::query(&format!(
        "INSERT INTO webhook_endpoints (id, merchant_id, url, event_types, secret, status, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, 'enabled', now(), now()) RETURNING {COLUMNS}"
    ))
    .bind(Uuid::now_v7())
    .bind(merchant)
    .bind(url)
    .bind(event_types)
    .bind(&secret)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok((from_row(&row)?, secret))
}

const COLUMNS: &str =
    "id, merchant_id, url, event_types, status, status_reason, failing_since, created_at";

fn from_row(row: &sqlx::postgres::PgRow) -> Result<Endpoint, sqlx::Error> {
    Ok(Endpoint {
        id: row.try_get("id")?,
        merchant_id: row.try_get("merchant_id")?,
        url: row.try_get("url")?,
        event_types: row.try_get("event_types")?,
        status: row.try_get("status")?,
        status_reason: row.try_get("status_reason")?,
        failing_since: row.try_get("failing_since")?,
        created_at: row.try_get("created_at")?,
    })
}

/// The merchant's endpoints (all of them for `None`), oldest first, deleted ones left out.
pub async fn list(pool: &PgPool, merchant: Option<&str>) -> Result<Vec<Endpoint>, sqlx::Error> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM webhook_endpoints
          WHERE ($1::text IS NULL OR merchant_id = $1) AND status <> 'deleted'
          ORDER BY created_at, id LIMIT 1000"
    ))
    .bind(merchant)
    .fetch_all(pool)
    .await?;
    rows.iter().map(from_row).collect()
}

/// One endpoint of the merchant (any for `None`), unless deleted.
pub async fn get(
    pool: &PgPool,
    id: Uuid,
    merchant: Option<&str>,
) -> Result<Option<Endpoint>, sqlx::Error> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM webhook_endpoints
          WHERE id = $1 AND ($2::text IS NULL OR merchant_id = $2) AND status <> 'deleted'"
    ))
    .bind(id)
    .bind(merchant)
    .fetch_optional(pool)
    .await?;
    row.as_ref().map(from_row).transpose()
}

/// Deletes an endpoint: nothing more is sent to it; its log stays.
pub async fn delete(pool: &PgPool, id: Uuid, merchant: Option<&str>) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE webhook_endpoints SET status = 'deleted', updated_at = now()
          WHERE id = $1 AND ($2::text IS NULL OR merchant_id = $2) AND status <> 'deleted'",
    )
    .bind(id)
    .bind(merchant)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}
