//! Exactly-once effect over at-least-once delivery: an event is applied and its sequence
//! recorded in one transaction; an old sequence is skipped, a gap is filled from the store.

use domain::PublishedEvent;
use sqlx::PgPool;

use crate::{event_source, progress, Projection, ProjectionError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// Applied this many events: one, or more when a gap was filled from the store.
    Events(usize),
    /// Already applied: a redelivery.
    Duplicate,
}

/// Applies `event` (and any earlier events of its aggregate this projection has not seen).
#[tracing::instrument(level = "debug", skip(pool, projection, event), fields(projection = projection.name(), id = %event.message_id()))]
pub async fn apply_event<P: Projection + ?Sized>(
    pool: &PgPool,
    projection: &P,
    event: &PublishedEvent,
) -> Result<Applied, ProjectionError> {
    let mut tx = pool.begin().await?;
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
        tx.rollback().await?;
        return Ok(Applied::Duplicate);
    }
    let events = if event.sequence == last + 1 {
        vec![event.clone()]
    } else {
        let filled = event_source::aggregate_events(
            &mut tx,
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
        projection.apply(&mut tx, e).await?;
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
    progress::record(
        &mut *tx,
        projection.name(),
        event.global_position,
        event.recorded_at,
        events.len() as i64,
    )
    .await?;
    tx.commit().await?;
    Ok(Applied::Events(events.len()))
}
