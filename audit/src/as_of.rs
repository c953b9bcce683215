//! Reading a payment's history from the event store for auditors: the payment as its stream
//! said at a moment in the past, folded from the events recorded up to then. Never from a
//! projection: the event store is the source of truth.

use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use domain::{Payment, PaymentEvent, PaymentId};
use sqlx::PgPool;

#[derive(Debug, thiserror::Error)]
pub enum AsOfError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// A stored event that no longer decodes: the stream itself is damaged.
    #[error("event {aggregate_id}/{sequence} does not decode: {reason}")]
    Undecodable {
        aggregate_id: String,
        sequence: i64,
        reason: String,
    },
}

/// The payment folded from its events with `recorded_at <= as_of`, with the number of events
/// folded (its version then); `None` when it had no event yet at `as_of`.
///
/// Only the gap-free prefix `1, 2, ...` is folded: a stream is appended in sequence order, and
/// `recorded_at` (the appending transaction's start) never goes back along it, so the events
/// recorded by `as_of` are exactly such a prefix.
pub async fn payment_as_of(
    pool: &PgPool,
    id: PaymentId,
    as_of: DateTime<Utc>,
) -> Result<Option<(Payment, i64)>, AsOfError> {
    let rows = eventstore::streams::recorded_by(
        pool,
        <Payment as Aggregate>::TYPE,
        &id.to_string(),
        as_of,
    )
    .await?;
    let mut payment = Payment::default();
    let mut version = 0_i64;
    for (sequence, payload) in rows {
        if sequence != version + 1 {
            break;
        }
        let event: PaymentEvent =
            serde_json::from_value(payload).map_err(|e| AsOfError::Undecodable {
                aggregate_id: id.to_string(),
                sequence,
                reason: e.to_string(),
            })?;
        payment.apply(event);
        version = sequence;
    }
    Ok((version > 0).then_some((payment, version)))
}
