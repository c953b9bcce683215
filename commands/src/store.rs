//! The event store: postgres-es's plain event store (no snapshots: postgres-es 0.5 applies
//! each new event twice to a stored snapshot, and payment streams are short anyway).

use cqrs_es::persist::PersistedEventStore;
use domain::Payment;
use postgres_es::PostgresEventRepository;
use sqlx::PgPool;

pub type PaymentStore = PersistedEventStore<PostgresEventRepository, Payment>;

pub fn payment_store(pool: PgPool) -> PaymentStore {
    PersistedEventStore::new_event_store(PostgresEventRepository::new(pool))
}
