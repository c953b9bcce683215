//! The `audit_chain` table: one row per chain position (`position`, the event's
//! `global_position`, `aggregate_id` and `sequence` as the relay hashed it, `chain_hash`),
//! written by the relay with its checkpoint (`checkpoint::advance`), read here joined with
//! the events the rows name. How a hash is computed is the audit crate's business.

use serde::{Deserialize, Serialize};
use sqlx::postgres::PgRow;
use sqlx::{PgExecutor, Row};

use crate::PublishedEvent;

/// A chain position and the hash stored there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainLink {
    pub position: i64,
    pub hash: [u8; 32],
}

/// The chain's last row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LastLink {
    pub link: ChainLink,
    pub global_position: i64,
}

/// One line of `GET /v1/audit/events` and of `payledger audit export` (NDJSON).
///
/// `global_position`, `aggregate_id` and `sequence` are what the chain row recorded when the
/// relay hashed the event; `event` is the event stored at that global position now (`null`
/// when there is none). A verifier recomputes `chain_hash` from the previous line's hash and
/// `event` with `audit::link::chain_hash`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChainRecord {
    pub position: i64,
    /// SHA-256, lowercase hex.
    pub chain_hash: String,
    pub global_position: i64,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event: Option<PublishedEvent>,
}

fn hash_column(row: &PgRow, column: &str) -> Result<[u8; 32], sqlx::Error> {
    let bytes: Vec<u8> = row.try_get(column)?;
    bytes
        .try_into()
        .map_err(|_| sqlx::Error::Decode(format!("{column} is not 32 bytes").into()))
}

/// The chain's last row; `None` while the chain is empty.
pub async fn last(executor: impl PgExecutor<'_>) -> Result<Option<LastLink>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT position, chain_hash, global_position FROM audit_chain
          ORDER BY position DESC LIMIT 1",
    )
    .fetch_optional(executor)
    .await?;
    row.map(|row| {
        Ok(LastLink {
            link: ChainLink {
                position: row.try_get("position")?,
                hash: hash_column(&row, "chain_hash")?,
            },
            global_position: row.try_get("global_position")?,
        })
    })
    .transpose()
}

/// The stored hash at `position`, if there is a chain row there.
pub async fn hash_at(
    executor: impl PgExecutor<'_>,
    position: i64,
) -> Result<Option<[u8; 32]>, sqlx::Error> {
    let row = sqlx::query("SELECT chain_hash FROM audit_chain WHERE position = $1")
        .bind(position)
        .fetch_optional(executor)
        .await?;
    row.map(|r| hash_column(&r, "chain_hash")).transpose()
}

/// Up to `limit` records with `after < position <= through`, in chain order.
pub async fn page(
    executor: impl PgExecutor<'_>,
    after: i64,
    through: i64,
    limit: i64,
) -> Result<Vec<ChainRecord>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT c.position, c.chain_hash, c.global_position AS chain_global_position,
                c.aggregate_id AS chain_aggregate_id, c.sequence AS chain_sequence,
                e.global_position, e.aggregate_type, e.aggregate_id, e.sequence, e.event_type,
                e.event_version, e.payload, e.metadata, e.recorded_at
           FROM audit_chain c
           LEFT JOIN events e ON e.global_position = c.global_position
          WHERE c.position > $1 AND c.position <= $2
          ORDER BY c.position
          LIMIT $3",
    )
    .bind(after)
    .bind(through)
    .bind(limit)
    .fetch_all(executor)
    .await?;
    rows.iter().map(record_from_row).collect()
}

fn record_from_row(row: &PgRow) -> Result<ChainRecord, sqlx::Error> {
    let hash: Vec<u8> = row.try_get("chain_hash")?;
    let event_position: Option<i64> = row.try_get("global_position")?;
    let event = match event_position {
        None => None,
        Some(_) => Some(crate::published::from_row(row)?),
    };
    Ok(ChainRecord {
        position: row.try_get("position")?,
        chain_hash: hex::encode(hash),
        global_position: row.try_get("chain_global_position")?,
        aggregate_id: row.try_get("chain_aggregate_id")?,
        sequence: row.try_get("chain_sequence")?,
        event,
    })
}

/// Up to `limit` NDJSON lines (`ChainRecord`s) with `after < position <= through`, rendered by
/// Postgres: the stream and the export send what the database holds without decoding and
/// re-encoding every payload. Returns the lines (each ending in `\n`), how many, and the last
/// position. The payload and metadata are their stored JSON text (a stored line break, only
/// possible between JSON tokens, becomes a space); `recorded_at` is UTC with microseconds.
/// Parsing a line gives exactly the `ChainRecord` that `page` reads.
pub async fn lines(
    executor: impl PgExecutor<'_>,
    after: i64,
    through: i64,
    limit: i64,
) -> Result<(Vec<u8>, usize, Option<i64>), sqlx::Error> {
    let rows = sqlx::query(
        r#"SELECT c.position,
                  '{"position":' || c.position
                  || ',"chain_hash":"' || encode(c.chain_hash, 'hex')
                  || '","global_position":' || c.global_position
                  || ',"aggregate_id":' || to_json(c.aggregate_id)::text
                  || ',"sequence":' || c.sequence
                  || ',"event":' || CASE WHEN e.global_position IS NULL THEN 'null' ELSE
                       '{"global_position":' || e.global_position
                       || ',"aggregate_type":' || to_json(e.aggregate_type)::text
                       || ',"aggregate_id":' || to_json(e.aggregate_id)::text
                       || ',"sequence":' || e.sequence
                       || ',"event_type":' || to_json(e.event_type)::text
                       || ',"event_version":' || to_json(e.event_version)::text
                       || ',"payload":' || translate(e.payload::text, E'

', '  ')
                       || ',"metadata":' || translate(e.metadata::text, E'

', '  ')
                       || ',"recorded_at":"'
                       || to_char(e.recorded_at AT TIME ZONE 'UTC',
                                  'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
                       || '"}' END
                  || '}' AS line
             FROM audit_chain c
             LEFT JOIN events e ON e.global_position = c.global_position
            WHERE c.position > $1 AND c.position <= $2
            ORDER BY c.position
            LIMIT $3"#,
    )
    .bind(after)
    .bind(through)
    .bind(limit)
    .fetch_all(executor)
    .await?;
    let mut size = 0;
    for row in &rows {
        size += row.try_get::<&str, _>("line")?.len() + 1;
    }
    let mut out = Vec::with_capacity(size);
    let mut last = None;
    for row in &rows {
        let line: &str = row.try_get("line")?;
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
        last = Some(row.try_get("position")?);
    }
    Ok((out, rows.len(), last))
}
