//! Load for benchmarks: copies of the payment streams already in the store, appended straight
//! into `events` (no command side, no relay wake-up). Same event types, shapes and mix as
//! real traffic, at a rate no client could append.

use sqlx::PgExecutor;

/// Appends one copy of every event up to global position `through`, in the original global
/// order, each stream under a new aggregate id derived from its own and `tag` (the id is
/// also replaced inside the payload and metadata). One statement; returns the rows added.
pub async fn clone_streams(
    executor: impl PgExecutor<'_>,
    tag: &str,
    through: i64,
) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type,
                             event_version, payload, metadata)
         SELECT e.aggregate_type, m.new_id, e.sequence, e.event_type, e.event_version,
                replace(e.payload::text, e.aggregate_id, m.new_id)::json,
                replace(e.metadata::text, e.aggregate_id, m.new_id)::json
           FROM events e
           CROSS JOIN LATERAL (SELECT md5(e.aggregate_id || ':' || $1)::uuid::text AS new_id) m
          WHERE e.global_position <= $2
          ORDER BY e.global_position",
    )
    .bind(tag)
    .bind(through)
    .execute(executor)
    .await?;
    Ok(done.rows_affected())
}
