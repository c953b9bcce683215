//! The outbox relay: publishes every committed event, in one gap-safe total order, to the
//! RabbitMQ topic exchange, and advances its checkpoint only after the broker confirmed.
//!
//! Order is `(transaction_id, global_position)`, read only below the oldest transaction still
//! running (`pg_snapshot_xmin`): an event inserted by a transaction that commits late has a
//! transaction id at or above that horizon, so it is read after it commits instead of being
//! skipped (a plain `global_position > last` cursor would skip it).
//!
//! Exactly one relay publishes: it holds a session advisory lock on the connection it reads
//! and checkpoints with, so losing that connection loses leadership and stops its writes.

use std::time::Duration;

use domain::published::events_exchange;
use domain::PublishedEvent;
use futures::future::join_all;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use sqlx::postgres::{PgListener, PgPool};
use sqlx::{ConnectOptions, Connection as _, PgConnection, Row};
use tokio::sync::watch;

use crate::relay_waker::LocalRelay;

/// Advisory lock key of the relay leader ("payledgr" in ASCII).
const RELAY_LOCK_KEY: i64 = 0x7061_796c_6564_6772;
pub const NOTIFY_CHANNEL: &str = "payledger_events";
/// After a wake-up, empty reads are retried this often, this many times (100 ms in all),
/// before the relay goes back to waiting for NOTIFY or the poll interval.
const QUICK_POLL_MS: u64 = 5;
const QUICK_POLLS_AFTER_WAKE: u32 = 20;
/// How the relay's session shows in `pg_stat_activity`.
pub const RELAY_APPLICATION_NAME: &str = "payledger-relay";

#[derive(Debug, Clone)]
pub struct RelayConfig {
    pub amqp_url: String,
    pub amqp_prefix: String,
    /// Events read, published and confirmed as one unit.
    pub batch_size_max: i64,
    /// Poll interval when no NOTIFY arrives (NOTIFY is only a hint).
    pub poll_interval_ms: u64,
    /// How long the relay waits after a wake-up before it reads, so that the appends of
    /// the next few milliseconds go out in the same batch: one read, one confirm round and
    /// one checkpoint commit for them all, and larger deliveries downstream.
    pub linger_ms: u64,
    /// Pause before retrying after a broker or database failure.
    pub retry_delay_ms: u64,
    /// How long a stand-by waits before trying to take the leadership again.
    pub standby_retry_ms: u64,
    /// Rung by this process's appends while this relay leads (NOTIFY still wakes it too).
    pub local: Option<LocalRelay>,
}

impl RelayConfig {
    pub fn new(amqp_url: String, amqp_prefix: String) -> Self {
        Self {
            amqp_url,
            amqp_prefix,
            batch_size_max: 500,
            poll_interval_ms: 250,
            linger_ms: 0,
            retry_delay_ms: 500,
            standby_retry_ms: 1_000,
            local: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("broker: {0}")]
    Broker(#[from] lapin::Error),
    #[error("broker refused event {message_id}: {reason}")]
    NotConfirmed { message_id: String, reason: String },
    #[error("encoding event {0}: {1}")]
    Encoding(String, serde_json::Error),
}

/// The relay's position in the feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Checkpoint {
    transaction_id: i64,
    global_position: i64,
    /// The audit chain's head at this point of the feed.
    audit_position: i64,
    chain_hash: [u8; 32],
}

/// Runs until `shutdown` turns true: waits for leadership, publishes, and on any failure
/// starts over from the stored checkpoint (at-least-once: a batch published but not yet
/// checkpointed is published again; consumers skip the duplicates).
pub async fn run(pool: PgPool, config: RelayConfig, mut shutdown: watch::Receiver<bool>) {
    loop {
        if *shutdown.borrow() {
            return;
        }
        match lead(&pool, &config, &mut shutdown).await {
            Ok(()) => return,
            Err(error) => {
                tracing::warn!(%error, "relay stopped; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(config.retry_delay_ms)) => {}
                    _ = shutdown.changed() => {}
                }
            }
        }
    }
}

/// Becomes the leader (or waits as a stand-by), then relays until shutdown or an error.
async fn lead(
    pool: &PgPool,
    config: &RelayConfig,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), RelayError> {
    // A dedicated connection, not a pooled one: when this relay dies its socket closes and
    // PostgreSQL releases the lock; a pooled connection would keep it for the next borrower.
    let mut conn = pool
        .connect_options()
        .as_ref()
        .clone()
        .application_name(RELAY_APPLICATION_NAME)
        .connect()
        .await?;
    loop {
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(RELAY_LOCK_KEY)
            .fetch_one(&mut conn)
            .await?;
        if locked {
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(config.standby_retry_ms)) => {}
            _ = shutdown.changed() => return Ok(()),
        }
        if *shutdown.borrow() {
            return Ok(());
        }
    }
    tracing::info!("relay is the leader");
    let result = relay_as_leader(&mut conn, pool, config, shutdown).await;
    // Closing the session releases the lock.
    let _closed = conn.close().await;
    result
}

async fn relay_as_leader(
    conn: &mut PgConnection,
    pool: &PgPool,
    config: &RelayConfig,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), RelayError> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(NOTIFY_CHANNEL).await?;
    let broker = Connection::connect(&config.amqp_url, ConnectionProperties::default()).await?;
    let channel = broker.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let exchange = events_exchange(&config.amqp_prefix);
    channel
        .exchange_declare(
            exchange.as_str().into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?;

    let mut checkpoint = load_checkpoint(conn).await?;
    let _leading_here = config.local.as_ref().map(LocalRelay::lead);
    let mut quick_polls_left: u32 = 0;
    loop {
        if *shutdown.borrow() {
            let _closed = broker.close(200, "shutdown".into()).await;
            return Ok(());
        }
        let batch = read_batch(conn, checkpoint, config.batch_size_max).await?;
        if let Some(last) = batch.last() {
            publish_batch(&channel, &exchange, &batch).await?;
            let chain = extend_chain(checkpoint, &batch);
            let (audit_position, chain_hash) = chain[chain.len() - 1];
            let next = Checkpoint {
                transaction_id: last.transaction_id,
                global_position: last.event.global_position,
                audit_position,
                chain_hash,
            };
            assert!(
                (next.transaction_id, next.global_position)
                    > (checkpoint.transaction_id, checkpoint.global_position),
                "relay checkpoint must only move forward"
            );
            store_checkpoint(conn, next, &batch, &chain).await?;
            checkpoint = next;
            if batch.len() as i64 == config.batch_size_max {
                continue; // more is waiting: do not sleep
            }
        }
        if batch.is_empty() && quick_polls_left > 0 {
            // Woken for an event whose transaction is still below nobody's horizon yet (or
            // a commit just behind it): look again very soon instead of a whole poll later.
            quick_polls_left -= 1;
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(QUICK_POLL_MS)) => {}
                _ = shutdown.changed() => {}
            }
            continue;
        }
        let woken = tokio::select! {
            notification = listener.recv() => {
                notification?;
                true
            }
            _ = rung(config.local.as_ref()) => true,
            _ = tokio::time::sleep(Duration::from_millis(config.poll_interval_ms)) => false,
            _ = shutdown.changed() => false,
        };
        if woken {
            quick_polls_left = QUICK_POLLS_AFTER_WAKE;
            if config.linger_ms > 0 {
                tokio::time::sleep(Duration::from_millis(config.linger_ms)).await;
            }
        }
    }
}

/// The local bell's next ring; never, without one.
async fn rung(local: Option<&LocalRelay>) {
    match local {
        Some(local) => local.rung().await,
        None => std::future::pending().await,
    }
}

struct FeedRow {
    transaction_id: i64,
    event: PublishedEvent,
}

async fn load_checkpoint(conn: &mut PgConnection) -> Result<Checkpoint, RelayError> {
    let row = sqlx::query(
        "SELECT last_transaction_id::text::bigint AS tx, last_global_position AS pos,
                last_audit_position, last_chain_hash
           FROM relay_checkpoint WHERE id = 1",
    )
    .fetch_one(&mut *conn)
    .await?;
    let hash: Vec<u8> = row.try_get("last_chain_hash")?;
    Ok(Checkpoint {
        transaction_id: row.try_get("tx")?,
        global_position: row.try_get("pos")?,
        audit_position: row.try_get("last_audit_position")?,
        chain_hash: hash.try_into().map_err(|_| {
            sqlx::Error::Decode("relay_checkpoint.last_chain_hash is not 32 bytes".into())
        })?,
    })
}

/// Extends the audit chain over `batch` from `from`: pure, so a batch published again after
/// a crash gets exactly the same positions and hashes.
fn extend_chain(from: Checkpoint, batch: &[FeedRow]) -> Vec<(i64, [u8; 32])> {
    let mut hash = from.chain_hash;
    batch
        .iter()
        .enumerate()
        .map(|(i, row)| {
            hash = domain::audit::chain_hash(&hash, &row.event);
            (from.audit_position + 1 + i as i64, hash)
        })
        .collect()
}

/// Records the batch's audit chain and the new checkpoint with one statement (its own
/// transaction): either both move or neither does, in one round trip instead of five.
#[tracing::instrument(level = "debug", skip_all)]
async fn store_checkpoint(
    conn: &mut PgConnection,
    checkpoint: Checkpoint,
    batch: &[FeedRow],
    chain: &[(i64, [u8; 32])],
) -> Result<(), RelayError> {
    debug_assert_eq!(batch.len(), chain.len());
    // No wait for the WAL flush (`set_config(.., true)` holds for this statement's own
    // transaction): if a crash loses this commit, the relay starts again from the
    // checkpoint before it and republishes the same events (consumers skip what they have),
    // extending the chain to the same hashes (same events, same order). A flush wait per
    // batch bought nothing but latency for every other commit in the queue.
    sqlx::query(
        "WITH chained AS (
           INSERT INTO audit_chain (position, global_position, aggregate_id, sequence, chain_hash)
           SELECT * FROM UNNEST($6::bigint[], $7::bigint[], $8::text[], $9::bigint[], $10::bytea[]))
         UPDATE relay_checkpoint
            SET last_transaction_id = $1::text::xid8, last_global_position = $2,
                published_total = published_total + $3, last_audit_position = $4,
                last_chain_hash = $5, updated_at = now()
           FROM set_config('synchronous_commit', 'off', true)
          WHERE id = 1",
    )
    .bind(checkpoint.transaction_id.to_string())
    .bind(checkpoint.global_position)
    .bind(batch.len() as i64)
    .bind(checkpoint.audit_position)
    .bind(checkpoint.chain_hash.to_vec())
    .bind(chain.iter().map(|(p, _)| *p).collect::<Vec<_>>())
    .bind(
        batch
            .iter()
            .map(|r| r.event.global_position)
            .collect::<Vec<_>>(),
    )
    .bind(
        batch
            .iter()
            .map(|r| r.event.aggregate_id.clone())
            .collect::<Vec<_>>(),
    )
    .bind(batch.iter().map(|r| r.event.sequence).collect::<Vec<_>>())
    .bind(chain.iter().map(|(_, h)| h.to_vec()).collect::<Vec<_>>())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The next events in commit-safe order: only transactions below the snapshot's xmin, which
/// have all ended, so nothing can still appear before the last row returned.
async fn read_batch(
    conn: &mut PgConnection,
    after: Checkpoint,
    limit: i64,
) -> Result<Vec<FeedRow>, RelayError> {
    let rows = sqlx::query(
        "SELECT global_position, transaction_id::text::bigint AS tx, aggregate_type,
                aggregate_id, sequence, event_type, event_version, payload, metadata,
                recorded_at
           FROM events
          WHERE (transaction_id, global_position) > ($1::text::xid8, $2)
            AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())
          ORDER BY transaction_id, global_position
          LIMIT $3",
    )
    .bind(after.transaction_id.to_string())
    .bind(after.global_position)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(FeedRow {
                transaction_id: row.try_get("tx")?,
                event: published_event_from_row(row)?,
            })
        })
        .collect()
}

/// Builds the wire form from a row of `events` (shared with readers of the store).
pub fn published_event_from_row(
    row: &sqlx::postgres::PgRow,
) -> Result<PublishedEvent, sqlx::Error> {
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

/// Publishes the whole batch, then waits for every confirm: waiting one by one caps out at a
/// few hundred messages a second. `mandatory` makes an unroutable event (no queue bound yet)
/// a failure instead of a silent drop.
async fn publish_batch(
    channel: &Channel,
    exchange: &str,
    batch: &[FeedRow],
) -> Result<(), RelayError> {
    let mut confirms = Vec::with_capacity(batch.len());
    for row in batch {
        let event = &row.event;
        let body =
            serde_json::to_vec(event).map_err(|e| RelayError::Encoding(event.message_id(), e))?;
        let mut headers = FieldTable::default();
        headers.insert(
            ShortString::from("global_position"),
            AMQPValue::LongLongInt(event.global_position),
        );
        headers.insert(
            ShortString::from("event_type"),
            AMQPValue::LongString(LongString::from(event.event_type.as_str())),
        );
        let properties = BasicProperties::default()
            .with_delivery_mode(2) // persistent
            .with_content_type("application/json".into())
            .with_message_id(event.message_id().as_str().into())
            .with_type(event.event_type.as_str().into())
            .with_headers(headers);
        let confirm = channel
            .basic_publish(
                exchange.into(),
                event.routing_key().as_str().into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..BasicPublishOptions::default()
                },
                &body,
                properties,
            )
            .await?;
        confirms.push((event.message_id(), confirm));
    }
    let (ids, futures): (Vec<_>, Vec<_>) = confirms.into_iter().unzip();
    for (message_id, confirmation) in ids.into_iter().zip(join_all(futures).await) {
        let confirmation = confirmation?;
        if !confirmation.is_ack() {
            return Err(RelayError::NotConfirmed {
                message_id,
                reason: "nack".into(),
            });
        }
        if confirmation.take_message().is_some() {
            return Err(RelayError::NotConfirmed {
                message_id,
                reason: "unroutable: no queue is bound to the exchange".into(),
            });
        }
    }
    Ok(())
}
