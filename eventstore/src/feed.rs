//! The whole store in one order. The relay's order is `(transaction_id, global_position)`,
//! read only below the oldest transaction still running (`pg_snapshot_xmin`): an event
//! inserted by a transaction that commits late has a transaction id at or above that
//! horizon, so it is read after it commits instead of being skipped (a plain
//! `global_position > last` cursor would skip it).

use chrono::{DateTime, Utc};
use sqlx::{PgExecutor, Row};

use crate::published::{from_row, EVENT_COLUMNS};
use crate::PublishedEvent;

/// A place in the relay's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct FeedPosition {
    pub transaction_id: i64,
    pub global_position: i64,
}

/// An event with the transaction that appended it: its place in the feed.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedEvent {
    pub transaction_id: i64,
    pub event: PublishedEvent,
}

impl FeedEvent {
    pub fn position(&self) -> FeedPosition {
        FeedPosition {
            transaction_id: self.transaction_id,
            global_position: self.event.global_position,
        }
    }
}

/// Up to `limit` events after `after`, in commit-safe order: only transactions below the
/// snapshot's xmin, which have all ended, so nothing can still appear before the last row
/// returned.
pub async fn read_committed(
    executor: impl PgExecutor<'_>,
    after: FeedPosition,
    limit: i64,
) -> Result<Vec<FeedEvent>, sqlx::Error> {
    let rows = sqlx::query(&format!(
        "SELECT {EVENT_COLUMNS}, transaction_id::text::bigint AS tx
           FROM events
          WHERE (transaction_id, global_position) > ($1::text::xid8, $2)
            AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())
          ORDER BY transaction_id, global_position
          LIMIT $3"
    ))
    .bind(after.transaction_id.to_string())
    .bind(after.global_position)
    .bind(limit)
    .fetch_all(executor)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(FeedEvent {
                transaction_id: row.try_get("tx")?,
                event: from_row(row)?,
            })
        })
        .collect()
}

/// The oldest transaction still running: every event of a transaction below it is
/// committed (or gone for good), so a read bounded by it is a stable prefix of the store.
pub async fn horizon(executor: impl PgExecutor<'_>) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint")
        .fetch_one(executor)
        .await
}

/// An event as stored, borrowed from its row, with what a replay uses: the payload as its
/// stored JSON text, to be decoded once straight into the caller's type.
#[derive(Debug, Clone, Copy)]
pub struct RawEvent<'r> {
    pub global_position: i64,
    pub aggregate_type: &'r str,
    pub aggregate_id: &'r str,
    pub event_type: &'r str,
    pub sequence: i64,
    pub payload: &'r str,
    pub recorded_at: DateTime<Utc>,
}

/// Up to `limit` events after global position `after`, of transactions below `horizon`, in
/// global order, each turned by `decode` into what the caller keeps.
pub async fn read_below<T, E>(
    executor: impl PgExecutor<'_>,
    after: i64,
    horizon: i64,
    limit: i64,
    mut decode: impl FnMut(RawEvent<'_>) -> Result<T, E>,
) -> Result<Vec<T>, E>
where
    E: From<sqlx::Error>,
{
    let rows = sqlx::query(
        "SELECT global_position, aggregate_type, aggregate_id, event_type, sequence,
                payload::text AS payload, recorded_at
           FROM public.events
          WHERE global_position > $1 AND transaction_id < $3::text::xid8
          ORDER BY global_position LIMIT $2",
    )
    .bind(after)
    .bind(limit)
    .bind(horizon.to_string())
    .fetch_all(executor)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        out.push(decode(RawEvent {
            global_position: row.try_get("global_position")?,
            aggregate_type: row.try_get("aggregate_type")?,
            aggregate_id: row.try_get("aggregate_id")?,
            event_type: row.try_get("event_type")?,
            sequence: row.try_get("sequence")?,
            payload: row.try_get("payload")?,
            recorded_at: row.try_get("recorded_at")?,
        })?);
    }
    Ok(out)
}

/// `(aggregate_type, aggregate_id, last_sequence)` of every aggregate with an event of a
/// transaction below the horizon bound (as text) in parameter `$horizon_param`: a subquery
/// for set-based statements that join it with tables of their own, instead of bringing every
/// aggregate to the client.
pub fn last_sequences_below(horizon_param: u32) -> String {
    format!(
        "SELECT aggregate_type, aggregate_id, max(sequence) AS last_sequence
           FROM public.events WHERE transaction_id < ${horizon_param}::text::xid8
          GROUP BY aggregate_type, aggregate_id"
    )
}

/// `(aggregate_id, last_sequence)` of every payment in the store, as a subquery.
pub const LAST_PAYMENT_SEQUENCES: &str = "SELECT aggregate_id, max(sequence) AS last_sequence
       FROM public.events WHERE aggregate_type = 'Payment' GROUP BY aggregate_id";

/// Events in the store.
pub async fn count(executor: impl PgExecutor<'_>) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(executor)
        .await
}

/// Events in the store and the newest global position (`None` while it is empty).
pub async fn extent(executor: impl PgExecutor<'_>) -> Result<(i64, Option<i64>), sqlx::Error> {
    sqlx::query_as("SELECT count(*), max(global_position) FROM events")
        .fetch_one(executor)
        .await
}
