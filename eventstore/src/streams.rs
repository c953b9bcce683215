//! One aggregate's events, by sequence: to fill a gap in what RabbitMQ delivered, and to fold
//! an aggregate as its stream stood at a moment in the past; and what a payment's first event
//! says of it.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgExecutor, Row};

use crate::published::{from_row, EVENT_COLUMNS};
use crate::PublishedEvent;

/// Events of one aggregate with `after < sequence <= through`, in order.
pub async fn aggregate_events(
    conn: &mut PgConnection,
    aggregate_type: &str,
    aggregate_id: &str,
    after: i64,
    through: i64,
) -> Result<Vec<PublishedEvent>, sqlx::Error> {
    let sql = format!(
        "SELECT {EVENT_COLUMNS} FROM events
          WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence > $3 AND sequence <= $4
          ORDER BY sequence"
    );
    let rows = sqlx::query(&sql)
        .bind(aggregate_type)
        .bind(aggregate_id)
        .bind(after)
        .bind(through)
        .fetch_all(&mut *conn)
        .await?;
    rows.iter().map(from_row).collect()
}

/// `(sequence, payload)` of one aggregate's events with `recorded_at <= as_of`, in sequence
/// order.
pub async fn recorded_by(
    executor: impl PgExecutor<'_>,
    aggregate_type: &str,
    aggregate_id: &str,
    as_of: DateTime<Utc>,
) -> Result<Vec<(i64, serde_json::Value)>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT sequence, payload FROM events
          WHERE aggregate_type = $1 AND aggregate_id = $2 AND recorded_at <= $3
          ORDER BY sequence",
    )
    .bind(aggregate_type)
    .bind(aggregate_id)
    .bind(as_of)
    .fetch_all(executor)
    .await?;
    rows.iter()
        .map(|row| Ok((row.try_get("sequence")?, row.try_get("payload")?)))
        .collect()
}

/// The merchant of each of `payment_ids` that has a stream, from its first event
/// (`PaymentInitiated` names it): one index probe per payment.
pub async fn payment_merchants(
    executor: impl PgExecutor<'_>,
    payment_ids: &[&str],
) -> Result<HashMap<String, String>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT e.aggregate_id, e.payload->'PaymentInitiated'->>'merchant_id' AS merchant_id
           FROM UNNEST($1::text[]) AS k(id)
           JOIN events e ON e.aggregate_type = $2 AND e.aggregate_id = k.id AND e.sequence = 1",
    )
    .bind(payment_ids)
    .bind(crate::published::PAYMENT)
    .fetch_all(executor)
    .await?;
    let mut merchants = HashMap::with_capacity(rows.len());
    for row in &rows {
        if let Some(merchant) = row.try_get::<Option<String>, _>("merchant_id")? {
            merchants.insert(row.try_get("aggregate_id")?, merchant);
        }
    }
    Ok(merchants)
}
