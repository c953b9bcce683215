//! Rebuilds projections from the event store alone (no RabbitMQ): every event in global
//! order, up to a horizon fixed at the start, applied in batches (one transaction per batch), with the
//! same `apply` the live consumers use, so the result is what the live projection would be.
//! `into` rebuilds into a scratch schema, leaving the live tables untouched, so the two can
//! be compared.

use std::collections::HashMap;
use std::time::Instant;

use domain::PublishedEvent;
use sqlx::{ConnectOptions, Connection, PgPool, Row};

use crate::{Projection, ProjectionError};

/// Tables every projection shares (keyed by projection name).
const SHARED_TABLES: [&str; 2] = ["projection_offsets", "projection_progress"];
/// Events read and applied per transaction.
pub const BATCH_SIZE_DEFAULT: i64 = 5_000;

#[derive(Debug, Clone, serde::Serialize)]
pub struct ReplayReport {
    pub projections: Vec<&'static str>,
    pub schema: String,
    pub events: u64,
    pub elapsed_ms: u128,
    pub events_per_s: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(
        "schema name must be 1-63 of [a-z0-9_], starting with a letter or `_`, and not `public`"
    )]
    BadSchema,
    #[error(transparent)]
    Projection(#[from] ProjectionError),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

pub fn valid_schema(name: &str) -> bool {
    let mut chars = name.chars();
    name != "public"
        && name.len() <= 63
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// Empties what the projections own, in `schema` (creating copies of the live tables there
/// when it is not `public`). Returns the statements that create the copies' secondary
/// indexes, which are left out until the rows are in: one sort per index at the end costs
/// much less than maintaining each index row by row (the journal alone has three).
async fn prepare(
    conn: &mut sqlx::PgConnection,
    projections: &[&dyn Projection],
    schema: &str,
) -> Result<Vec<String>, sqlx::Error> {
    let mut tables: Vec<&str> = projections
        .iter()
        .flat_map(|p| p.tables().iter().copied())
        .collect();
    if schema == "public" {
        for table in &tables {
            sqlx::query(&format!("TRUNCATE public.{table}"))
                .execute(&mut *conn)
                .await?;
        }
        for shared in SHARED_TABLES {
            sqlx::query(&format!(
                "DELETE FROM public.{shared} WHERE projection = ANY($1)"
            ))
            .bind(projections.iter().map(|p| p.name()).collect::<Vec<_>>())
            .execute(&mut *conn)
            .await?;
        }
        return Ok(Vec::new());
    }
    tables.extend(SHARED_TABLES);
    sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
        .execute(&mut *conn)
        .await?;
    for table in &tables {
        sqlx::query(&format!("DROP TABLE IF EXISTS {schema}.{table}"))
            .execute(&mut *conn)
            .await?;
        sqlx::query(&format!(
            "CREATE TABLE {schema}.{table} (LIKE public.{table} INCLUDING ALL)"
        ))
        .execute(&mut *conn)
        .await?;
    }
    // Unique indexes stay: the upserts' ON CONFLICT needs them.
    let deferred = sqlx::query(
        "SELECT n.nspname || '.' || c.relname AS name, pg_get_indexdef(c.oid) AS definition
           FROM pg_index x
           JOIN pg_class c ON c.oid = x.indexrelid
           JOIN pg_class t ON t.oid = x.indrelid
           JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname = $1 AND t.relname = ANY($2) AND NOT x.indisunique",
    )
    .bind(schema)
    .bind(&tables)
    .fetch_all(&mut *conn)
    .await?;
    let mut definitions = Vec::with_capacity(deferred.len());
    for index in &deferred {
        let name: String = index.try_get("name")?;
        sqlx::query(&format!("DROP INDEX {name}"))
            .execute(&mut *conn)
            .await?;
        definitions.push(index.try_get("definition")?);
    }
    Ok(definitions)
}

/// Rebuilds `projections` from every event, into `schema` (`public` = the live tables; stop
/// the live projectors first).
pub async fn replay(
    pool: &PgPool,
    projections: &[&dyn Projection],
    schema: &str,
    batch_size: i64,
) -> Result<ReplayReport, ReplayError> {
    if schema != "public" && !valid_schema(schema) {
        return Err(ReplayError::BadSchema);
    }
    assert!(batch_size > 0, "a batch holds at least one event");
    let started = Instant::now();
    let deferred_indexes = prepare(&mut *pool.acquire().await?, projections, schema).await?;
    // One writer per projection: each applies the batch in its own transaction, all at once,
    // so PostgreSQL works on every core instead of one projection after the other. Their own
    // sessions, not the pool's: replay must not depend on the caller's pool size.
    let mut writers = Vec::with_capacity(projections.len());
    for _ in projections {
        writers.push(pool.connect_options().connect().await?);
    }

    // The stream to replay is fixed at the start: every event of a transaction that had
    // ended by then (below the snapshot's xmin, as the relay reads). Each batch is then read
    // in its own short transaction: a snapshot held for the whole replay would keep every
    // dead version of the rows the replay updates over and over (balances, daily counters),
    // and each update would walk an ever longer chain.
    let horizon: i64 =
        sqlx::query_scalar("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint")
            .fetch_one(pool)
            .await?;
    let mut events: u64 = 0;
    let mut next = read_batch(pool, 0, horizon, batch_size).await?;
    while let Some(last) = next.last().map(|e| e.global_position) {
        let batch = next;
        // The next batch is read while this one is applied.
        let applying = futures::future::try_join_all(
            projections
                .iter()
                .zip(writers.iter_mut())
                .map(|(projection, writer)| apply_batch(writer, *projection, schema, &batch)),
        );
        let (applied, read) = tokio::join!(applying, read_batch(pool, last, horizon, batch_size));
        applied?;
        next = read?;
        events += batch.len() as u64;
    }
    // The deferred indexes, built concurrently like the batches were applied.
    futures::future::try_join_all(
        deferred_indexes
            .chunks(deferred_indexes.len().div_ceil(writers.len().max(1)).max(1))
            .zip(writers.iter_mut())
            .map(|(statements, writer)| async move {
                for statement in statements {
                    sqlx::query(statement).execute(&mut *writer).await?;
                }
                Ok::<(), sqlx::Error>(())
            }),
    )
    .await?;
    let elapsed = started.elapsed();
    Ok(ReplayReport {
        projections: projections.iter().map(|p| p.name()).collect(),
        schema: schema.to_owned(),
        events,
        elapsed_ms: elapsed.as_millis(),
        events_per_s: events as f64 / elapsed.as_secs_f64().max(1e-9),
    })
}

/// Up to `limit` events after `after`, of transactions below `horizon`, in global order.
async fn read_batch(
    pool: &PgPool,
    after: i64,
    horizon: i64,
    limit: i64,
) -> Result<Vec<PublishedEvent>, ReplayError> {
    let rows = sqlx::query(
        "SELECT global_position, aggregate_type, aggregate_id, sequence, event_type,
                event_version, payload, metadata, recorded_at
           FROM public.events
          WHERE global_position > $1 AND transaction_id < $3::text::xid8
          ORDER BY global_position LIMIT $2",
    )
    .bind(after)
    .bind(limit)
    .bind(horizon.to_string())
    .fetch_all(pool)
    .await?;
    Ok(rows
        .iter()
        .map(crate::event_source::from_row)
        .collect::<Result<_, _>>()?)
}

/// Applies `batch` to one projection and records its offsets, in one transaction.
async fn apply_batch(
    conn: &mut sqlx::PgConnection,
    projection: &dyn Projection,
    schema: &str,
    batch: &[PublishedEvent],
) -> Result<(), ReplayError> {
    let mut tx = conn.begin().await?;
    // Unqualified names in `apply` resolve to the target schema first; `events` stays public.
    sqlx::query(&format!("SET LOCAL search_path TO {schema}, public"))
        .execute(&mut *tx)
        .await?;
    projection.apply(&mut tx, batch).await?;
    let mut last_sequence: HashMap<&str, i64> = HashMap::new();
    for event in batch {
        last_sequence.insert(event.aggregate_id.as_str(), event.sequence);
    }
    let (ids, sequences): (Vec<&str>, Vec<i64>) = last_sequence.into_iter().unzip();
    sqlx::query(
        "INSERT INTO projection_offsets AS o (projection, aggregate_id, last_sequence)
         SELECT $1, id, seq FROM UNNEST($2::text[], $3::bigint[]) AS t(id, seq)
         ON CONFLICT (projection, aggregate_id)
         DO UPDATE SET last_sequence = GREATEST(o.last_sequence, EXCLUDED.last_sequence)",
    )
    .bind(projection.name())
    .bind(&ids)
    .bind(&sequences)
    .execute(&mut *tx)
    .await?;
    if let Some(last) = batch.iter().max_by_key(|e| e.global_position) {
        crate::progress::record(
            &mut *tx,
            projection.name(),
            last.global_position,
            last.recorded_at,
            batch.len() as i64,
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}
