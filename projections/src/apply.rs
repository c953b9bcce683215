//! Exactly-once effect over at-least-once delivery: a batch of deliveries is applied and the
//! sequences it reached recorded in one transaction; an old sequence is skipped, a gap is
//! filled from the store.
//!
//! Set-based: whatever the batch size, the offsets cost two statements (read, then one
//! upsert; REPEATABLE READ makes a concurrent consumer's move a serialization failure) and the projection writes its changes with a few statements of its
//! own (`Projection::apply`), so a batch of a hundred events is not a thousand round
//! trips.

use std::collections::HashMap;
use std::sync::LazyLock;

use eventstore::PublishedEvent;
use sqlx::{Connection, PgConnection, PgPool, Row};

use crate::{progress, Projection, ProjectionError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// Applied this many events: one, or more when a gap was filled from the store.
    Events(usize),
    /// Already applied: a redelivery.
    Duplicate,
}

/// Applies `event` (and any earlier events of its aggregate this projection has not seen),
/// in its own transaction.
#[tracing::instrument(level = "debug", skip(pool, projection, event), fields(projection = projection.name(), id = %event.message_id()))]
pub async fn apply_event<P: Projection + ?Sized>(
    pool: &PgPool,
    projection: &P,
    event: &PublishedEvent,
) -> Result<Applied, ProjectionError> {
    match apply_batch(pool, projection, std::slice::from_ref(event)).await? {
        0 => Ok(Applied::Duplicate),
        count => Ok(Applied::Events(count)),
    }
}

/// Applies a batch of deliveries in ONE transaction (one commit instead of one per event):
/// all or nothing. Returns the number of events applied (duplicates count zero, filled gaps
/// count their events).
#[tracing::instrument(level = "debug", skip_all, fields(projection = projection.name(), size = events.len()))]
pub async fn apply_batch<P: Projection + ?Sized>(
    pool: &PgPool,
    projection: &P,
    events: &[PublishedEvent],
) -> Result<usize, ProjectionError> {
    apply_batch_on(&mut *pool.acquire().await?, projection, events).await
}

/// `apply_batch` on a session the caller holds (a consumer keeps its own: a pooled
/// connection costs an extra round trip every time it goes back to the pool).
pub async fn apply_batch_on<P: Projection + ?Sized>(
    conn: &mut PgConnection,
    projection: &P,
    events: &[PublishedEvent],
) -> Result<usize, ProjectionError> {
    // One snapshot for the whole batch: the offsets and the projection's own rows are read
    // as of the same moment, so a consumer racing another on the same aggregates cannot see
    // old offsets beside new rows; whatever it then writes over the other's commit fails with
    // a serialization error (retryable) instead of being applied twice.
    let mut tx = conn
        .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ")
        .await?;
    let applied = apply_deliveries(&mut tx, projection, events).await?;
    tx.commit().await?;
    if applied > 0 {
        projection.committed();
    }
    Ok(applied)
}

/// The offset checks, gap fills and apply of a batch, inside the caller's transaction.
async fn apply_deliveries<P: Projection + ?Sized>(
    tx: &mut PgConnection,
    projection: &P,
    events: &[PublishedEvent],
) -> Result<usize, ProjectionError> {
    let Some(newest) = events.iter().max_by_key(|e| e.global_position) else {
        return Ok(0);
    };
    let mut ids: Vec<&str> = events.iter().map(|e| e.aggregate_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    // Read without locking (a row lock is a WAL record per aggregate per batch), in the
    // batch's snapshot; advancing them fails if another consumer moved them meanwhile, so two
    // consumers racing on an aggregate cannot both apply an event: the loser's transaction
    // is rolled back whole.
    let rows = sqlx::query(
        "SELECT t.* FROM UNNEST($2::text[]) AS k(id) CROSS JOIN LATERAL (
           SELECT aggregate_id, last_sequence FROM projection_offsets
            WHERE projection = $1 AND aggregate_id = k.id LIMIT 1) AS t",
    )
    .bind(projection.name())
    .bind(&ids)
    .fetch_all(&mut *tx)
    .await?;
    let mut before: HashMap<String, i64> = HashMap::with_capacity(ids.len());
    for row in &rows {
        before.insert(row.try_get("aggregate_id")?, row.try_get("last_sequence")?);
    }
    // Where each aggregate stands as the batch is walked (never seen = 0).
    let mut last: HashMap<String, i64> = before.clone();

    let mut accepted: Vec<PublishedEvent> = Vec::with_capacity(events.len());
    for event in events {
        let seen = last.entry(event.aggregate_id.clone()).or_insert(0);
        if event.sequence <= *seen {
            continue; // a redelivery
        }
        if event.sequence == *seen + 1 {
            accepted.push(event.clone());
        } else {
            accepted.extend(fill_gap(tx, projection, event, *seen).await?);
        }
        *seen = event.sequence;
    }
    if accepted.is_empty() {
        return Ok(0);
    }
    projection.apply(&mut *tx, &accepted).await?;

    advance(
        tx,
        projection.name(),
        &before,
        &last,
        newest,
        accepted.len(),
    )
    .await?;
    Ok(accepted.len())
}

/// The statement of `advance`, written once rather than formatted per batch.
static ADVANCE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH progress AS ({progress})
         INSERT INTO projection_offsets AS o (projection, aggregate_id, last_sequence)
         SELECT $1, t.id, t.sequence FROM UNNEST($5::text[], $6::bigint[]) AS t(id, sequence)
         ON CONFLICT (projection, aggregate_id) DO UPDATE SET last_sequence = EXCLUDED.last_sequence",
        progress = progress::UPSERT
    )
});

/// Moves the offsets that changed from `before` (as read) to `after`, and the projection's
/// progress by `applied` events up to `newest`, with one statement. The offsets upsert's
/// conflict check probes the primary key per row, whatever the statistics say. A concurrent
/// consumer that moved any of them after this batch's snapshot makes it fail with a
/// serialization error (REPEATABLE READ), so the batch is rolled back and retried.
async fn advance(
    tx: &mut PgConnection,
    projection: &str,
    before: &HashMap<String, i64>,
    after: &HashMap<String, i64>,
    newest: &PublishedEvent,
    applied: usize,
) -> Result<(), ProjectionError> {
    let (ids, sequences): (Vec<&str>, Vec<i64>) = after
        .iter()
        .filter(|(id, sequence)| before.get(id.as_str()) != Some(*sequence))
        .map(|(id, sequence)| (id.as_str(), *sequence))
        .unzip();
    sqlx::query(&ADVANCE)
        .bind(projection)
        .bind(newest.global_position)
        .bind(newest.recorded_at)
        .bind(applied as i64)
        .bind(&ids)
        .bind(&sequences)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// The events after `last` through `event`, from the store: the ones this projection never
/// received (or received out of order). A store lacking any of them makes `event` poison.
async fn fill_gap<P: Projection + ?Sized>(
    tx: &mut PgConnection,
    projection: &P,
    event: &PublishedEvent,
    last: i64,
) -> Result<Vec<PublishedEvent>, ProjectionError> {
    let filled = eventstore::streams::aggregate_events(
        &mut *tx,
        &event.aggregate_type,
        &event.aggregate_id,
        last,
        event.sequence,
    )
    .await?;
    tracing::info!(
        projection = projection.name(),
        aggregate_id = %event.aggregate_id,
        from = last + 1,
        through = event.sequence,
        "filling a gap from the event store"
    );
    let contiguous = filled
        .iter()
        .enumerate()
        .all(|(i, e)| e.sequence == last + 1 + i as i64);
    if !contiguous || filled.last().map(|e| e.sequence) != Some(event.sequence) {
        return Err(ProjectionError::Poison {
            message_id: event.message_id(),
            reason: format!(
                "the event store lacks sequences {}..={} of this aggregate",
                last + 1,
                event.sequence
            ),
        });
    }
    Ok(filled)
}
