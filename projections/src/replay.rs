//! Rebuilds projections from the event store alone (no RabbitMQ): every event in global
//! order, up to a horizon fixed at the start, applied in batches (one transaction per batch), with the
//! same `apply` the live consumers use, so the result is what the live projection would be.
//! `into` rebuilds into a scratch schema, leaving the live tables untouched, so the two can
//! be compared.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use domain::PaymentEvent;
use eventstore::PublishedEvent;
use sqlx::{ConnectOptions, Connection, PgPool, Row};
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::{Decoded, Position, Projection, ProjectionError};

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
    #[error(
        "schema {0} exists and was not made by replay: its tables are not dropped (name a new \
         schema, or one an earlier replay made)"
    )]
    ForeignSchema(String),
    #[error(transparent)]
    Projection(#[from] ProjectionError),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("a replay task panicked")]
    TaskLost,
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

/// What marks a schema replay made (its comment): only such a schema's tables are dropped.
const SCRATCH_MARK: &str = "payledger replay scratch schema: its tables are dropped and rebuilt";

/// Creates `schema` and marks it as replay's, or accepts it when an earlier replay marked it;
/// any other existing schema is refused, whatever its name.
async fn claim_scratch_schema(
    conn: &mut sqlx::PgConnection,
    schema: &str,
) -> Result<(), ReplayError> {
    let existing: Option<Option<String>> = sqlx::query_scalar(
        "SELECT obj_description(oid, 'pg_namespace') FROM pg_namespace WHERE nspname = $1",
    )
    .bind(schema)
    .fetch_optional(&mut *conn)
    .await?;
    match existing {
        Some(Some(mark)) if mark == SCRATCH_MARK => Ok(()),
        Some(_) => Err(ReplayError::ForeignSchema(schema.to_owned())),
        None => {
            // `schema` passed `valid_schema`: only [a-z0-9_] reaches the statement.
            sqlx::query(&format!("CREATE SCHEMA {schema}"))
                .execute(&mut *conn)
                .await?;
            sqlx::query(&format!("COMMENT ON SCHEMA {schema} IS '{SCRATCH_MARK}'"))
                .execute(&mut *conn)
                .await?;
            Ok(())
        }
    }
}

/// Empties what the projections own, in `schema` (creating copies of the live tables there
/// when it is not `public`). Returns the statements that create the copies' secondary
/// indexes, which are left out until the rows are in: one sort per index at the end costs
/// much less than maintaining each index row by row (the journal alone has three).
async fn prepare(
    conn: &mut sqlx::PgConnection,
    projections: &[Arc<dyn Projection>],
    schema: &str,
) -> Result<Vec<String>, ReplayError> {
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
    claim_scratch_schema(conn, schema).await?;
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

/// An event as a replay reads it: what the projections use, the payload decoded straight
/// from its stored text (no `serde_json::Value` in between, no metadata).
struct ReplayEvent {
    payment_id: Uuid,
    aggregate_id: String,
    sequence: i64,
    global_position: i64,
    recorded_at: DateTime<Utc>,
    payload: Replayed,
}

/// A payment event decoded once for every payment projection; any other aggregate's event as
/// published, for the projection of its type.
enum Replayed {
    Payment(PaymentEvent),
    Other(PublishedEvent),
}

impl ReplayEvent {
    fn position(&self) -> Position<'_> {
        Position {
            aggregate_id: &self.aggregate_id,
            sequence: self.sequence,
            global_position: self.global_position,
        }
    }
}

type Batch = Vec<ReplayEvent>;

/// Batches read but not yet applied, per projection: how far the reader runs ahead of the
/// slowest writer (memory: this many batches of `batch_size` events, shared by all writers).
const READ_AHEAD_BATCHES: usize = 4;

/// Rebuilds `projections` from every event, into `schema` (`public` = the live tables; stop
/// the live projectors first).
pub async fn replay(
    pool: &PgPool,
    projections: &[Arc<dyn Projection>],
    schema: &str,
    batch_size: i64,
) -> Result<ReplayReport, ReplayError> {
    if schema != "public" && !valid_schema(schema) {
        return Err(ReplayError::BadSchema);
    }
    assert!(batch_size > 0, "a batch holds at least one event");
    let started = Instant::now();
    // One transaction: one WAL flush instead of one per statement (~30 of them), and a
    // failure leaves the tables as they were.
    let mut tx = pool.begin().await?;
    let deferred_indexes = prepare(&mut tx, projections, schema).await?;
    tx.commit().await?;
    let prepared = started.elapsed();
    // One writer task per projection, each in its own session (replay must not depend on the
    // caller's pool size), each going through the stream at its own pace: the projections'
    // folding runs on every core, and a batch that is slow for one projection does not hold
    // the others back. The reader stays at most READ_AHEAD_BATCHES ahead of the slowest.
    let mut writers = Vec::with_capacity(projections.len());
    let mut feeds = Vec::with_capacity(projections.len());
    for projection in projections {
        let (feed, mut batches) = mpsc::channel::<Arc<Batch>>(READ_AHEAD_BATCHES);
        let mut conn = pool.connect_options().connect().await?;
        let projection = Arc::clone(projection);
        let schema = schema.to_owned();
        writers.push(tokio::spawn(async move {
            while let Some(batch) = batches.recv().await {
                apply_batch(&mut conn, projection.as_ref(), &schema, &batch).await?;
            }
            Ok::<_, ReplayError>(conn)
        }));
        feeds.push(feed);
    }

    // The stream to replay is fixed at the start: every event of a transaction that had
    // ended by then (below the snapshot's xmin, as the relay reads). Each batch is then read
    // in its own short transaction: a snapshot held for the whole replay would keep every
    // dead version of the rows the replay updates over and over (balances, daily counters),
    // and each update would walk an ever longer chain.
    let horizon = eventstore::feed::horizon(pool).await?;
    // A scratch copy's offsets depend on the horizon alone (every transaction below it has
    // ended, and events are never deleted), so they are written meanwhile, on a session of
    // their own.
    let offsets = (schema != "public").then(|| {
        let names: Vec<&'static str> = projections.iter().map(|p| p.name()).collect();
        let types: Vec<&'static str> = projections.iter().map(|p| p.aggregate_type()).collect();
        let options = pool.connect_options().as_ref().clone();
        let schema = schema.to_owned();
        tokio::spawn(async move {
            let mut conn = options.connect().await?;
            scratch_offsets(&mut conn, &names, &types, &schema, horizon).await?;
            Ok::<_, ReplayError>(())
        })
    });
    let mut events: u64 = 0;
    let mut after = 0;
    'read: loop {
        let batch = read_batch(pool, after, horizon, batch_size).await?;
        let Some(last) = batch.last() else { break };
        after = last.global_position;
        events += batch.len() as u64;
        let batch = Arc::new(batch);
        for feed in &feeds {
            if feed.send(Arc::clone(&batch)).await.is_err() {
                break 'read; // That writer failed: its error is collected below.
            }
        }
    }
    drop(feeds);
    let mut sessions = Vec::with_capacity(writers.len());
    for writer in writers {
        sessions.push(writer.await.map_err(|_| ReplayError::TaskLost)??);
    }
    let applied = started.elapsed();
    // What is left: the deferred indexes, independent statements taken from one queue by
    // every writer's session, so the longest (the journal's) do not wait behind each other
    // while other sessions sit idle; and the offsets, if they are still being written.
    let finishing: VecDeque<String> = deferred_indexes.into();
    let finishing = std::sync::Mutex::new(finishing);
    let next_statement = || {
        finishing
            .lock()
            .ok()
            .and_then(|mut queue| queue.pop_front())
    };
    let indexes = futures::future::try_join_all(sessions.iter_mut().map(|session| async {
        while let Some(statement) = next_statement() {
            sqlx::query(&statement).execute(&mut *session).await?;
        }
        Ok::<(), ReplayError>(())
    }));
    let offsets = async {
        match offsets {
            Some(task) => task.await.map_err(|_| ReplayError::TaskLost)?,
            None => Ok(()),
        }
    };
    futures::future::try_join(indexes, offsets).await?;
    let elapsed = started.elapsed();
    tracing::info!(
        events,
        prepare_ms = prepared.as_millis(),
        apply_ms = (applied - prepared).as_millis(),
        index_ms = (elapsed - applied).as_millis(),
        "replay done"
    );
    Ok(ReplayReport {
        projections: projections.iter().map(|p| p.name()).collect(),
        schema: schema.to_owned(),
        events,
        elapsed_ms: elapsed.as_millis(),
        events_per_s: events as f64 / elapsed.as_secs_f64().max(1e-9),
    })
}

/// Up to `limit` events after `after`, of transactions below `horizon`, in global order,
/// each decoded once here for every projection.
async fn read_batch(
    pool: &PgPool,
    after: i64,
    horizon: i64,
    limit: i64,
) -> Result<Batch, ReplayError> {
    eventstore::feed::read_below(pool, after, horizon, limit, |stored| {
        let position = Position {
            aggregate_id: stored.aggregate_id,
            sequence: stored.sequence,
            global_position: stored.global_position,
        };
        let undecodable = |e: serde_json::Error| crate::undecodable(&position, &e);
        let payload = if stored.aggregate_type == eventstore::published::PAYMENT {
            Replayed::Payment(serde_json::from_str(stored.payload).map_err(undecodable)?)
        } else {
            Replayed::Other(PublishedEvent {
                global_position: stored.global_position,
                aggregate_type: stored.aggregate_type.to_owned(),
                aggregate_id: stored.aggregate_id.to_owned(),
                sequence: stored.sequence,
                event_type: stored.event_type.to_owned(),
                event_version: String::new(),
                payload: serde_json::from_str(stored.payload).map_err(undecodable)?,
                metadata: serde_json::Value::Null,
                recorded_at: stored.recorded_at,
            })
        };
        Ok(ReplayEvent {
            payment_id: crate::payment_id(&position)?,
            recorded_at: stored.recorded_at,
            payload,
            aggregate_id: stored.aggregate_id.to_owned(),
            sequence: stored.sequence,
            global_position: stored.global_position,
        })
    })
    .await
}

/// Applies `batch` to one projection and records its progress, in one transaction. Into the
/// live tables the batch's offsets commit with it, so an interrupted replay leaves rows and
/// offsets that agree (projectors started on them apply no event twice); a scratch copy is
/// rebuilt from nothing every time, so its offsets are written once, at the end.
async fn apply_batch(
    conn: &mut sqlx::PgConnection,
    projection: &dyn Projection,
    schema: &str,
    batch: &[ReplayEvent],
) -> Result<(), ReplayError> {
    let mut tx = conn.begin().await?;
    // Unqualified names in `apply` resolve to the target schema first; `events` stays public.
    sqlx::query(&format!("SET LOCAL search_path TO {schema}, public"))
        .execute(&mut *tx)
        .await?;
    // Each projection folds its own aggregate type's events, and records only theirs.
    let batch: Vec<&ReplayEvent> = batch
        .iter()
        .filter(|event| match &event.payload {
            Replayed::Payment(_) => projection.aggregate_type() == eventstore::published::PAYMENT,
            Replayed::Other(other) => other.aggregate_type == projection.aggregate_type(),
        })
        .collect();
    if batch.is_empty() {
        return Ok(());
    }
    if projection.aggregate_type() == eventstore::published::PAYMENT {
        let decoded: Vec<Decoded<'_>> = batch
            .iter()
            .filter_map(|event| match &event.payload {
                Replayed::Payment(payload) => Some((event.payment_id, event.position(), payload)),
                Replayed::Other(_) => None,
            })
            .collect();
        projection.apply_decoded(&mut tx, &decoded).await?;
    } else {
        let published: Vec<PublishedEvent> = batch
            .iter()
            .filter_map(|event| match &event.payload {
                Replayed::Other(other) => Some(other.clone()),
                Replayed::Payment(_) => None,
            })
            .collect();
        projection.apply(&mut tx, &published).await?;
    }
    if schema == "public" {
        let mut last_sequence: HashMap<&str, i64> = HashMap::new();
        for event in &batch {
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
    }
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

/// Every replayed aggregate's last sequence, for each of `projections`, into the scratch
/// copy of the offsets: what per-batch upserts would have left. The rows go in first and the
/// key is put back after them: one sort instead of a random insertion into a text key per
/// row. Only a validated schema and catalog-made definitions are spliced in.
async fn scratch_offsets(
    conn: &mut sqlx::PgConnection,
    projections: &[&'static str],
    aggregate_types: &[&'static str],
    schema: &str,
    horizon: i64,
) -> Result<(), sqlx::Error> {
    let table = format!("{schema}.projection_offsets");
    let keys = sqlx::query(
        "SELECT conname, pg_get_constraintdef(oid) AS definition
           FROM pg_constraint WHERE conrelid = $1::regclass AND contype = 'p'",
    )
    .bind(&table)
    .fetch_all(&mut *conn)
    .await?;
    for key in &keys {
        let name: String = key.try_get("conname")?;
        sqlx::query(&format!("ALTER TABLE {table} DROP CONSTRAINT {name}"))
            .execute(&mut *conn)
            .await?;
    }
    sqlx::query(&format!(
        "INSERT INTO {table} (projection, aggregate_id, last_sequence)
         SELECT p.name, e.aggregate_id, e.last_sequence
           FROM ({}) e
           JOIN UNNEST($1::text[], $3::text[]) AS p(name, aggregate_type)
             ON p.aggregate_type = e.aggregate_type",
        eventstore::feed::last_sequences_below(2)
    ))
    .bind(projections)
    .bind(horizon.to_string())
    .bind(aggregate_types)
    .execute(&mut *conn)
    .await?;
    for key in &keys {
        let name: String = key.try_get("conname")?;
        let definition: String = key.try_get("definition")?;
        sqlx::query(&format!(
            "ALTER TABLE {table} ADD CONSTRAINT {name} {definition}"
        ))
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}
