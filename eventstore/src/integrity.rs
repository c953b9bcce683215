//! Store-wide facts an auditor checks: every aggregate's sequences are 1..n, and every event
//! the relay has passed has a chain row. Run inside the caller's snapshot, so that they agree
//! with the chain it walks.

use sqlx::{PgExecutor, Row};

/// Events and aggregates in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreTotals {
    pub events: i64,
    pub aggregates: i64,
}

pub async fn totals(executor: impl PgExecutor<'_>) -> Result<StoreTotals, sqlx::Error> {
    let row = sqlx::query(
        "SELECT count(*) AS events,
                count(DISTINCT (aggregate_type, aggregate_id)) AS aggregates
           FROM events",
    )
    .fetch_one(executor)
    .await?;
    Ok(StoreTotals {
        events: row.try_get("events")?,
        aggregates: row.try_get("aggregates")?,
    })
}

/// An event whose sequence does not follow its aggregate's previous one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SequenceBreak {
    pub aggregate_id: String,
    pub sequence: i64,
    /// The aggregate's previous sequence (`None`: this is its first event).
    pub previous: Option<i64>,
    pub global_position: i64,
    /// Its chain position, when it has a chain row.
    pub position: Option<i64>,
}

/// Up to `limit` sequence breaks, earliest chain position first (those off the chain last):
/// Postgres walks the primary key and returns only the events that do not follow their
/// predecessor.
pub async fn sequence_breaks(
    executor: impl PgExecutor<'_>,
    limit: i64,
) -> Result<Vec<SequenceBreak>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT s.aggregate_id, s.sequence, s.previous, s.global_position, a.position
           FROM (SELECT aggregate_type, aggregate_id, sequence, global_position,
                        lag(sequence) OVER (PARTITION BY aggregate_type, aggregate_id
                                            ORDER BY sequence) AS previous
                   FROM events) s
           LEFT JOIN audit_chain a ON a.global_position = s.global_position
          WHERE s.sequence <> COALESCE(s.previous, 0) + 1
          ORDER BY a.position NULLS LAST, s.global_position
          LIMIT $1",
    )
    .bind(limit)
    .fetch_all(executor)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(SequenceBreak {
                aggregate_id: row.try_get("aggregate_id")?,
                sequence: row.try_get("sequence")?,
                previous: row.try_get("previous")?,
                global_position: row.try_get("global_position")?,
                position: row.try_get("position")?,
            })
        })
        .collect()
}

/// The store against the chain and the relay's checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completeness {
    pub events_total: i64,
    pub chain_rows: i64,
    /// Events committed after the relay's checkpoint: not chained yet, rightly.
    pub pending: i64,
    /// Events the relay has passed that have no chain row.
    pub unchained: i64,
    /// The chain's head as the relay's checkpoint records it (the hash as stored).
    pub relay_audit_position: i64,
    pub relay_chain_hash: Vec<u8>,
}

pub async fn completeness(executor: impl PgExecutor<'_>) -> Result<Completeness, sqlx::Error> {
    let row = sqlx::query(
        "SELECT (SELECT count(*) FROM events) AS events_total,
                (SELECT count(*) FROM audit_chain) AS chain_rows,
                (SELECT count(*) FROM events e
                  WHERE (e.transaction_id, e.global_position)
                      > (c.last_transaction_id, c.last_global_position)) AS pending,
                (SELECT count(*) FROM events e
                  WHERE (e.transaction_id, e.global_position)
                     <= (c.last_transaction_id, c.last_global_position)
                    AND NOT EXISTS (SELECT 1 FROM audit_chain a
                                     WHERE a.global_position = e.global_position)) AS unchained,
                c.last_audit_position, c.last_chain_hash
           FROM relay_checkpoint c WHERE c.id = 1",
    )
    .fetch_one(executor)
    .await?;
    Ok(Completeness {
        events_total: row.try_get("events_total")?,
        chain_rows: row.try_get("chain_rows")?,
        pending: row.try_get("pending")?,
        unchained: row.try_get("unchained")?,
        relay_audit_position: row.try_get("last_audit_position")?,
        relay_chain_hash: row.try_get("last_chain_hash")?,
    })
}

/// An event named by its place in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventAt {
    pub global_position: i64,
    pub aggregate_id: String,
    pub sequence: i64,
}

/// Up to `limit` events the relay has passed that have no chain row, in global order.
pub async fn unchained(
    executor: impl PgExecutor<'_>,
    limit: i64,
) -> Result<Vec<EventAt>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT e.global_position, e.aggregate_id, e.sequence
           FROM events e, relay_checkpoint c
          WHERE c.id = 1
            AND (e.transaction_id, e.global_position)
             <= (c.last_transaction_id, c.last_global_position)
            AND NOT EXISTS (SELECT 1 FROM audit_chain a
                             WHERE a.global_position = e.global_position)
          ORDER BY e.global_position
          LIMIT $1",
    )
    .bind(limit)
    .fetch_all(executor)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(EventAt {
                global_position: row.try_get("global_position")?,
                aggregate_id: row.try_get("aggregate_id")?,
                sequence: row.try_get("sequence")?,
            })
        })
        .collect()
}
