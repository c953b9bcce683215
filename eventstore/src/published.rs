//! The one thing the write side and the read side share: the shape of a published event.
//! The relay builds it from a row of `events`; projections read it from RabbitMQ or, to fill
//! a gap, from the same table. Its JSON is the message body on the wire.

use chrono::{DateTime, Utc};
use domain::PaymentEvent;
use serde::{Deserialize, Serialize};
use sqlx::postgres::PgRow;
use sqlx::Row;

/// Default namespace of RabbitMQ names; tests use their own so they never share queues.
pub const DEFAULT_AMQP_PREFIX: &str = "payledger";

/// The topic exchange every committed event is published to: `payledger.events`.
pub fn events_exchange(prefix: &str) -> String {
    format!("{prefix}.events")
}

/// The aggregate types in the store, as `events.aggregate_type` names them.
pub const PAYMENT: &str = "Payment";
pub const CUSTOMER: &str = "Customer";

/// The first word of the routing keys of an aggregate type's events (`payment`).
pub fn routing_prefix(aggregate_type: &str) -> String {
    aggregate_type.to_ascii_lowercase()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PublishedEvent {
    pub global_position: i64,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    pub payload: serde_json::Value,
    pub metadata: serde_json::Value,
    pub recorded_at: DateTime<Utc>,
}

impl PublishedEvent {
    /// `<aggregate>.<event_type>` (`payment.PaymentApproved`, `customer.CustomerCreated`):
    /// lets a consumer bind to just the events it needs.
    pub fn routing_key(&self) -> String {
        format!(
            "{}.{}",
            routing_prefix(&self.aggregate_type),
            self.event_type
        )
    }

    /// `<aggregate_id>/<sequence>`: the same for every redelivery of this event.
    pub fn message_id(&self) -> String {
        format!("{}/{}", self.aggregate_id, self.sequence)
    }

    pub fn payment_event(&self) -> Result<PaymentEvent, serde_json::Error> {
        PaymentEvent::deserialize(&self.payload)
    }
}

/// The columns `from_row` reads, in a `SELECT` of `events`.
pub(crate) const EVENT_COLUMNS: &str = "global_position, aggregate_type, aggregate_id, sequence,
       event_type, event_version, payload, metadata, recorded_at";

/// The wire form of a row of `events` that has (at least) `EVENT_COLUMNS`.
pub fn from_row(row: &PgRow) -> Result<PublishedEvent, sqlx::Error> {
    Ok(PublishedEvent {
        global_position: row.try_get("global_position")?,
        aggregate_type: row.try_get("aggregate_type")?,
        aggregate_id: row.try_get("aggregate_id")?,
        sequence: row.try_get("sequence")?,
        event_type: row.try_get("event_type")?,
        event_version: row.try_get("event_version")?,
        payload: row.try_get("payload")?,
        metadata: row.try_get("metadata")?,
        recorded_at: row.try_get("recorded_at")?,
    })
}
