//! The cqrs-es repository the command side appends through: postgres-es's plain event store
//! (no snapshots: postgres-es 0.5 applies each new event twice to a stored snapshot, and
//! payment streams are short anyway), with appends of our own.
//!
//! postgres-es appends in an explicit transaction, `BEGIN`, one `INSERT` per event, `COMMIT`:
//! three round trips or more for every command, over a quarter of PostgreSQL's statements under
//! load. One multi-row `INSERT` is atomic on its own (all the command's events or none, the
//! primary key refusing a sequence another writer took) and needs one.

use cqrs_es::persist::{
    PersistedEventRepository, PersistedEventStore, PersistenceError, ReplayStream, SerializedEvent,
    SerializedSnapshot,
};
use cqrs_es::Aggregate;
use domain::{Customer, Payment};
use postgres_es::PostgresEventRepository;
use serde_json::Value;
use sqlx::PgPool;

pub type PaymentStore = PersistedEventStore<PaymentEvents, Payment>;

pub fn payment_store(pool: PgPool) -> PaymentStore {
    PersistedEventStore::new_event_store(PaymentEvents::new(pool))
}

/// Customers' streams live in the same `events` table, under aggregate type `Customer`.
pub type CustomerStore = PersistedEventStore<PaymentEvents, Customer>;

pub fn customer_store(pool: PgPool) -> CustomerStore {
    PersistedEventStore::new_event_store(PaymentEvents::new(pool))
}

/// Reads through postgres-es; appends with one statement.
pub struct PaymentEvents {
    pool: PgPool,
    reads: PostgresEventRepository,
}

impl PaymentEvents {
    pub fn new(pool: PgPool) -> Self {
        Self {
            reads: PostgresEventRepository::new(pool.clone()),
            pool,
        }
    }

    #[tracing::instrument(skip_all, fields(events = events.len()))]
    async fn append<A: Aggregate>(
        &self,
        events: &[SerializedEvent],
    ) -> Result<(), PersistenceError> {
        let mut ids = Vec::with_capacity(events.len());
        let mut sequences = Vec::with_capacity(events.len());
        let mut types = Vec::with_capacity(events.len());
        let mut versions = Vec::with_capacity(events.len());
        let mut payloads = Vec::with_capacity(events.len());
        let mut metadata = Vec::with_capacity(events.len());
        for event in events {
            ids.push(event.aggregate_id.as_str());
            let sequence = i64::try_from(event.sequence)
                .map_err(|error| PersistenceError::UnknownError(Box::new(error)))?;
            sequences.push(sequence);
            types.push(event.event_type.as_str());
            versions.push(event.event_version.as_str());
            payloads.push(&event.payload);
            metadata.push(&event.metadata);
        }
        sqlx::query(
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
             SELECT $1, t.id, t.sequence, t.event_type, t.event_version, t.payload::json, t.metadata::json
               FROM UNNEST($2::text[], $3::bigint[], $4::text[], $5::text[], $6::jsonb[], $7::jsonb[])
                    AS t(id, sequence, event_type, event_version, payload, metadata)",
        )
        .bind(A::TYPE)
        .bind(&ids)
        .bind(&sequences)
        .bind(&types)
        .bind(&versions)
        .bind(&payloads)
        .bind(&metadata)
        .execute(&self.pool)
        .await
        .map_err(persistence_error)?;
        Ok(())
    }
}

impl PersistedEventRepository for PaymentEvents {
    async fn get_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        self.reads.get_events::<A>(aggregate_id).await
    }

    async fn get_last_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
        last_sequence: usize,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        self.reads
            .get_last_events::<A>(aggregate_id, last_sequence)
            .await
    }

    async fn get_snapshot<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<Option<SerializedSnapshot>, PersistenceError> {
        self.reads.get_snapshot::<A>(aggregate_id).await
    }

    async fn persist<A: Aggregate>(
        &self,
        events: &[SerializedEvent],
        snapshot_update: Option<(String, Value, usize)>,
    ) -> Result<(), PersistenceError> {
        match snapshot_update {
            // The store is built without snapshots; kept whole should that ever change.
            Some(snapshot) => self.reads.persist::<A>(events, Some(snapshot)).await,
            None if events.is_empty() => Ok(()),
            None => self.append::<A>(events).await,
        }
    }

    async fn stream_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<ReplayStream, PersistenceError> {
        self.reads.stream_events::<A>(aggregate_id).await
    }

    async fn stream_all_events<A: Aggregate>(&self) -> Result<ReplayStream, PersistenceError> {
        self.reads.stream_all_events::<A>().await
    }
}

/// As postgres-es maps them: a taken sequence (unique violation) is a lost race.
fn persistence_error(error: sqlx::Error) -> PersistenceError {
    match &error {
        sqlx::Error::Database(database) if database.code().as_deref() == Some("23505") => {
            PersistenceError::OptimisticLockError
        }
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::PoolTimedOut => {
            PersistenceError::ConnectionError(Box::new(error))
        }
        _ => PersistenceError::UnknownError(Box::new(error)),
    }
}
