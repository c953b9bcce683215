//! Exactly-once effect over at-least-once delivery: an event is applied and its sequence
//! recorded in one transaction; an old sequence is skipped, a gap is filled from the store.

use domain::PublishedEvent;
use sqlx::{PgConnection, PgPool};

use crate::{event_source, progress, Projection, ProjectionError};

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
    let mut tx = pool.begin().await?;
    let applied = apply_in(&mut tx, projection, event).await?;
    if let Applied::Events(count) = applied {
        progress::record(
            &mut *tx,
            projection.name(),
            event.global_position,
            event.recorded_at,
            count as i64,
        )
        .await?;
    }
    tx.commit().await?;
    Ok(applied)
}

/// Applies a batch of deliveries in ONE transaction (one commit instead of one per event):
/// all or nothing. Returns the number of events applied (duplicates count zero).
pub async fn apply_batch<P: Projection + ?Sized>(
    pool: &PgPool,
    projection: &P,
    events: &[PublishedEvent],
) -> Result<usize, ProjectionError> {
    let mut tx = pool.begin().await?;
    let mut applied = 0;
    for event in events {
        if let Applied::Events(count) = apply_in(&mut tx, projection, event).await? {
            applied += count;
        }
    }
    if let Some(newest) = events.iter().max_by_key(|e| e.global_position) {
        if applied > 0 {
            progress::record(
                &mut *tx,
                projection.name(),
                newest.global_position,
                newest.recorded_at,
                applied as i64,
            )
            .await?;
        }
    }
    tx.commit().await?;
    Ok(applied)
}

/// The offset check, gap fill and apply of one event, inside the caller's transaction.
async fn apply_in<P: Projection + ?Sized>(
    tx: &mut PgConnection,
    projection: &P,
    event: &PublishedEvent,
) -> Result<Applied, ProjectionError> {
    sqlx::query(
        "INSERT INTO projection_offsets (projection, aggregate_id, last_sequence)
         VALUES ($1, $2, 0) ON CONFLICT DO NOTHING",
    )
    .bind(projection.name())
    .bind(&event.aggregate_id)
    .execute(&mut *tx)
    .await?;
    // The row lock serialises concurrent consumers of the same aggregate.
    let last: i64 = sqlx::query_scalar(
        "SELECT last_sequence FROM projection_offsets
          WHERE projection = $1 AND aggregate_id = $2 FOR UPDATE",
    )
    .bind(projection.name())
    .bind(&event.aggregate_id)
    .fetch_one(&mut *tx)
    .await?;
    if event.sequence <= last {
        return Ok(Applied::Duplicate);
    }
    let events = if event.sequence == last + 1 {
        vec![event.clone()]
    } else {
        let filled = event_source::aggregate_events(
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
        filled
    };
    let contiguous = events
        .iter()
        .enumerate()
        .all(|(i, e)| e.sequence == last + 1 + i as i64);
    if !contiguous || events.last().map(|e| e.sequence) != Some(event.sequence) {
        return Err(ProjectionError::Poison {
            message_id: event.message_id(),
            reason: format!(
                "the event store lacks sequences {}..={} of this aggregate",
                last + 1,
                event.sequence
            ),
        });
    }
    for e in &events {
        projection.apply(&mut *tx, e).await?;
    }
    sqlx::query(
        "UPDATE projection_offsets SET last_sequence = $3
          WHERE projection = $1 AND aggregate_id = $2",
    )
    .bind(projection.name())
    .bind(&event.aggregate_id)
    .bind(event.sequence)
    .execute(&mut *tx)
    .await?;
    Ok(Applied::Events(events.len()))
}
