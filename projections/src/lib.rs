//! The read side: RabbitMQ consumers and the projection tables they keep. Each projection
//! applies a batch of events and records each aggregate's last applied sequence in one
//! transaction, so redeliveries are skipped and gaps are filled from the event store.

pub mod analytics;
pub mod apply;
pub mod consumer;
mod copy_in;
pub mod customers;
pub mod failures;
pub mod ledger;
pub mod progress;
pub mod replay;
pub mod session;
pub mod status;
pub mod summary;
pub mod topology;
pub mod version_waiters;

use async_trait::async_trait;
use domain::PaymentEvent;
use eventstore::PublishedEvent;
use sqlx::PgConnection;
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// The event cannot be applied, however often it is tried: it goes to the dead-letter
    /// queue instead of blocking the ones behind it.
    #[error("poison event {message_id}: {reason}")]
    Poison { message_id: String, reason: String },
}

impl ProjectionError {
    /// Worth retrying in place (the database went away), as opposed to a bad event.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            ProjectionError::Database(
                sqlx::Error::Io(_)
                    | sqlx::Error::PoolTimedOut
                    | sqlx::Error::PoolClosed
                    | sqlx::Error::WorkerCrashed
                    | sqlx::Error::Tls(_)
            )
        ) || matches!(self, ProjectionError::Database(sqlx::Error::Database(e)) if e.code().is_some_and(|c| c.starts_with("40") || c.starts_with("08") || c.starts_with("57")))
    }
}

/// One read model. `apply` runs inside the transaction that also records the offsets.
#[async_trait]
pub trait Projection: Send + Sync + 'static {
    /// Stable name: the key of its offsets and the suffix of its queue.
    fn name(&self) -> &'static str;

    /// The tables this projection alone writes (created by migrations in `public`); a replay
    /// `--into <schema>` creates copies of them there and rebuilds into those.
    fn tables(&self) -> &'static [&'static str];

    /// The aggregate type whose events this projection folds (`events.aggregate_type`).
    fn aggregate_type(&self) -> &'static str {
        eventstore::published::PAYMENT
    }

    /// What its queue is bound to on the events exchange: every event of its aggregate type.
    fn binding_key(&self) -> String {
        format!(
            "{}.#",
            eventstore::published::routing_prefix(self.aggregate_type())
        )
    }

    /// Applies `events`, each exactly once (the caller has skipped redeliveries and filled
    /// gaps): every aggregate's events are in sequence order; different aggregates' events
    /// may interleave in any order, which no projection may depend on.
    async fn apply(
        &self,
        conn: &mut PgConnection,
        events: &[PublishedEvent],
    ) -> Result<(), ProjectionError> {
        let payloads = events
            .iter()
            .map(|event| {
                let position = Position::of(event);
                let payload = event
                    .payment_event()
                    .map_err(|e| undecodable(&position, &e))?;
                Ok((payment_id(&position)?, payload))
            })
            .collect::<Result<Vec<_>, ProjectionError>>()?;
        let decoded: Vec<Decoded<'_>> = events
            .iter()
            .zip(&payloads)
            .map(|(event, (id, payload))| (*id, Position::of(event), payload))
            .collect();
        self.apply_decoded(conn, &decoded).await
    }

    /// `apply`, on events the caller has decoded already (a replay decodes each event once,
    /// straight from the stored text, for every projection).
    async fn apply_decoded(
        &self,
        conn: &mut PgConnection,
        events: &[Decoded<'_>],
    ) -> Result<(), ProjectionError>;

    /// The transaction that applied a batch (not one of redeliveries only) has committed:
    /// what it wrote is visible to everyone now.
    fn committed(&self) {}
}

/// Where an event sits in the store: all a projection reads of it besides its payload.
#[derive(Debug, Clone, Copy)]
pub struct Position<'a> {
    pub aggregate_id: &'a str,
    pub sequence: i64,
    pub global_position: i64,
}

impl<'a> Position<'a> {
    pub fn of(event: &'a PublishedEvent) -> Self {
        Self {
            aggregate_id: &event.aggregate_id,
            sequence: event.sequence,
            global_position: event.global_position,
        }
    }
}

/// An event's payment id, position and decoded payload.
pub type Decoded<'a> = (Uuid, Position<'a>, &'a PaymentEvent);

/// The payment an event belongs to; an aggregate id that is not a uuid is poison.
pub(crate) fn payment_id(position: &Position<'_>) -> Result<Uuid, ProjectionError> {
    Uuid::parse_str(position.aggregate_id)
        .map_err(|e| poison(position, &format!("aggregate id is not a uuid: {e}")))
}

/// The error of a payload that does not decode: poison.
pub(crate) fn undecodable(position: &Position<'_>, error: &serde_json::Error) -> ProjectionError {
    poison(position, &format!("payload does not decode: {error}"))
}

/// A poison event's error; its message id is `PublishedEvent::message_id`'s.
pub(crate) fn poison(event: &Position<'_>, reason: &str) -> ProjectionError {
    ProjectionError::Poison {
        message_id: format!("{}/{}", event.aggregate_id, event.sequence),
        reason: reason.to_owned(),
    }
}

pub(crate) const UNKNOWN_PAYMENT: &str = "no PaymentInitiated was applied for this payment";

/// The distinct payments of a decoded batch, in order: each is looked up once, by one index
/// probe (`UNNEST ... CROSS JOIN LATERAL (... LIMIT 1)`), whatever the table's statistics
/// say (on young tables they lag, and `= ANY($ids)` was planned as a scan: 1-4 ms a batch).
pub(crate) fn payment_ids(decoded: &[Decoded<'_>]) -> Vec<Uuid> {
    let mut ids: Vec<Uuid> = decoded.iter().map(|(id, _, _)| *id).collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// Every projection, by the name `replay --projection` and the queues use.
pub fn all() -> Vec<std::sync::Arc<dyn Projection>> {
    vec![
        std::sync::Arc::new(status::StatusProjection::default()),
        std::sync::Arc::new(analytics::AnalyticsProjection),
        std::sync::Arc::new(failures::FailuresProjection),
        std::sync::Arc::new(ledger::LedgerProjection),
        std::sync::Arc::new(customers::CustomersProjection),
    ]
}

/// What `--projection` takes, for messages: every projection's name, or `all`.
pub fn selectable() -> String {
    let names: Vec<&str> = all().iter().map(|p| p.name()).collect();
    format!("{} or all", names.join(", "))
}

/// The projections `name` selects (`all`, or one name).
pub fn select(name: &str) -> Option<Vec<std::sync::Arc<dyn Projection>>> {
    let all = all();
    if name == "all" {
        return Some(all);
    }
    let chosen: Vec<_> = all.into_iter().filter(|p| p.name() == name).collect();
    (!chosen.is_empty()).then_some(chosen)
}
