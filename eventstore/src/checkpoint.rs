//! The relay's checkpoint (`relay_checkpoint`, one row): where it is in the feed, how many
//! events it has published, and the audit chain's head at that point. The relay advances it
//! together with the chain rows of the batch it has just had confirmed.

use chrono::{DateTime, Utc};
use sqlx::{PgExecutor, Row};

use crate::chain::ChainLink;
use crate::feed::{FeedEvent, FeedPosition};

/// The relay's position in the feed and the chain's head there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    pub feed: FeedPosition,
    /// The audit chain's head at this point of the feed.
    pub chain: ChainLink,
}

pub async fn load(executor: impl PgExecutor<'_>) -> Result<Checkpoint, sqlx::Error> {
    let row = sqlx::query(
        "SELECT last_transaction_id::text::bigint AS tx, last_global_position AS pos,
                last_audit_position, last_chain_hash
           FROM relay_checkpoint WHERE id = 1",
    )
    .fetch_one(executor)
    .await?;
    let hash: Vec<u8> = row.try_get("last_chain_hash")?;
    Ok(Checkpoint {
        feed: FeedPosition {
            transaction_id: row.try_get("tx")?,
            global_position: row.try_get("pos")?,
        },
        chain: ChainLink {
            position: row.try_get("last_audit_position")?,
            hash: hash.try_into().map_err(|_| {
                sqlx::Error::Decode("relay_checkpoint.last_chain_hash is not 32 bytes".into())
            })?,
        },
    })
}

/// Records `batch`'s chain rows (`links[i]` is `batch[i]`'s) and the new checkpoint with one
/// statement (its own transaction): either both move or neither does, in one round trip
/// instead of five.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn advance(
    executor: impl PgExecutor<'_>,
    checkpoint: Checkpoint,
    batch: &[FeedEvent],
    links: &[ChainLink],
) -> Result<(), sqlx::Error> {
    debug_assert_eq!(batch.len(), links.len());
    // No wait for the WAL flush (`set_config(.., true)` holds for this statement's own
    // transaction): if a crash loses this commit, the relay starts again from the
    // checkpoint before it and republishes the same events (consumers skip what they have),
    // extending the chain to the same hashes (same events, same order). A flush wait per
    // batch bought nothing but latency for every other commit in the queue.
    sqlx::query(
        "WITH chained AS (
           INSERT INTO audit_chain (position, global_position, aggregate_id, sequence, chain_hash)
           SELECT * FROM UNNEST($6::bigint[], $7::bigint[], $8::text[], $9::bigint[], $10::bytea[]))
         UPDATE relay_checkpoint
            SET last_transaction_id = $1::text::xid8, last_global_position = $2,
                published_total = published_total + $3, last_audit_position = $4,
                last_chain_hash = $5, updated_at = now()
           FROM set_config('synchronous_commit', 'off', true)
          WHERE id = 1",
    )
    .bind(checkpoint.feed.transaction_id.to_string())
    .bind(checkpoint.feed.global_position)
    .bind(batch.len() as i64)
    .bind(checkpoint.chain.position)
    .bind(checkpoint.chain.hash.to_vec())
    .bind(links.iter().map(|l| l.position).collect::<Vec<_>>())
    .bind(
        batch
            .iter()
            .map(|r| r.event.global_position)
            .collect::<Vec<_>>(),
    )
    .bind(
        batch
            .iter()
            .map(|r| r.event.aggregate_id.clone())
            .collect::<Vec<_>>(),
    )
    .bind(batch.iter().map(|r| r.event.sequence).collect::<Vec<_>>())
    .bind(links.iter().map(|l| l.hash.to_vec()).collect::<Vec<_>>())
    .execute(executor)
    .await?;
    Ok(())
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct RelayProgress {
    pub last_global_position: i64,
    pub published_total: i64,
    /// Committed events not yet published.
    pub events_behind: i64,
    /// Age of the oldest committed event not yet published (0 when none waits).
    pub seconds_behind: f64,
}

/// How far the relay has got.
pub async fn relay_progress(executor: impl PgExecutor<'_>) -> Result<RelayProgress, sqlx::Error> {
    let row = sqlx::query(
        "SELECT c.last_global_position, c.published_total, w.behind,
                COALESCE(EXTRACT(EPOCH FROM now() - w.oldest)::float8, 0) AS seconds_behind
           FROM relay_checkpoint c
           CROSS JOIN LATERAL (
                SELECT count(*) AS behind, min(e.recorded_at) AS oldest FROM events e
                 WHERE (e.transaction_id, e.global_position)
                     > (c.last_transaction_id, c.last_global_position)) w
          WHERE c.id = 1",
    )
    .fetch_one(executor)
    .await?;
    Ok(RelayProgress {
        last_global_position: row.try_get("last_global_position")?,
        published_total: row.try_get("published_total")?,
        events_behind: row.try_get("behind")?,
        seconds_behind: row.try_get("seconds_behind")?,
    })
}

/// What the relay has published beyond a reader at some global position.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PublishedBeyond {
    /// Published events after the reader's position.
    pub events: i64,
    /// When the newest published event was recorded (`None`: nothing published yet).
    pub newest_recorded_at: Option<DateTime<Utc>>,
}

/// The published events of `aggregate_type` after `global_position`, and the newest one's
/// time.
pub async fn published_beyond(
    executor: impl PgExecutor<'_>,
    aggregate_type: &str,
    global_position: i64,
) -> Result<PublishedBeyond, sqlx::Error> {
    let row = sqlx::query(
        "SELECT (SELECT count(*) FROM events e
                  WHERE e.global_position > $1 AND e.aggregate_type = $2
                    AND (e.transaction_id, e.global_position)
                        <= (c.last_transaction_id, c.last_global_position)) AS behind,
                -- The newest published event's time: one index probe, where max() over
                -- every published event read the whole table.
                (SELECT recorded_at FROM events
                  WHERE global_position <= c.last_global_position AND aggregate_type = $2
                  ORDER BY global_position DESC LIMIT 1) AS newest
           FROM relay_checkpoint c
          WHERE c.id = 1",
    )
    .bind(global_position)
    .bind(aggregate_type)
    .fetch_one(executor)
    .await?;
    Ok(PublishedBeyond {
        events: row.try_get("behind")?,
        newest_recorded_at: row.try_get("newest")?,
    })
}
