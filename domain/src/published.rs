//! The one thing the write side and the read side share: the shape of a published event.
//! The relay builds it from a row of `events`; projections read it from RabbitMQ or, to fill
//! a gap or to replay, from the same table.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::payment::PaymentEvent;

/// Default namespace of RabbitMQ names; tests use their own so they never share queues.
pub const DEFAULT_AMQP_PREFIX: &str = "payledger";

/// The topic exchange every committed event is published to: `payledger.events`.
pub fn events_exchange(prefix: &str) -> String {
    format!("{prefix}.events")
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
    /// `payment.<event_type>`: lets a consumer bind to just the events it needs.
    pub fn routing_key(&self) -> String {
        format!("payment.{}", self.event_type)
    }

    /// `<aggregate_id>/<sequence>`: the same for every redelivery of this event.
    pub fn message_id(&self) -> String {
        format!("{}/{}", self.aggregate_id, self.sequence)
    }

    pub fn payment_event(&self) -> Result<PaymentEvent, serde_json::Error> {
        PaymentEvent::deserialize(&self.payload)
    }
}
