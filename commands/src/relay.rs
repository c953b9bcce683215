//! The outbox relay: publishes every committed event, in one gap-safe total order, to the
//! RabbitMQ topic exchange, and advances its checkpoint only after the broker confirmed.
//! What it reads at once goes out as envelopes (`eventstore::envelope`), one per aggregate
//! type.
//!
//! Order is `(transaction_id, global_position)`, read gap-safe by `eventstore::feed`; the
//! checkpoint and the audit chain it extends (`audit::link`) are stored by
//! `eventstore::checkpoint`.
//!
//! Exactly one relay publishes: it holds a session advisory lock on the connection it reads
//! and checkpoints with, so losing that connection loses leadership and stops its writes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use eventstore::checkpoint::{self, Checkpoint};
use eventstore::envelope;
use eventstore::feed::{self, FeedEvent};
use eventstore::published::events_exchange;
use futures::future::join_all;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, ExchangeKind};
use sqlx::postgres::{PgListener, PgPool};
use sqlx::{ConnectOptions, Connection as _, PgConnection};
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

/// Whether this process's relay is the leader at the moment: what `/health` says, so an
/// operator (or a fault drill) can tell the leader from its stand-by.
#[derive(Debug, Clone, Default)]
pub struct Leadership(Arc<AtomicBool>);

impl Leadership {
    pub fn is_leading(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// Leading until the guard is dropped (also when the relay's future is cancelled).
    fn hold(&self) -> LeadershipGuard {
        self.0.store(true, Ordering::Relaxed);
        LeadershipGuard(self.clone())
    }
}

struct LeadershipGuard(Leadership);

impl Drop for LeadershipGuard {
    fn drop(&mut self) {
        (self.0).0.store(false, Ordering::Relaxed);
    }
}

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
    pub leadership: Leadership,
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
            standby_retry_ms: 500,
            local: None,
            leadership: Leadership::default(),
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
        // A leader whose machine vanishes sends no FIN: without keepalives PostgreSQL would
        // hold its lock, and keep the stand-by waiting, for the kernel's two hours.
        .options([
            ("tcp_keepalives_idle", "5"),
            ("tcp_keepalives_interval", "2"),
            ("tcp_keepalives_count", "3"),
        ])
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
    let leading = config.leadership.hold();
    let result = relay_as_leader(&mut conn, pool, config, shutdown).await;
    drop(leading);
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
    let broker = broker::connect(&config.amqp_url).await?;
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

    let mut at = checkpoint::load(&mut *conn).await?;
    let _leading_here = config.local.as_ref().map(LocalRelay::lead);
    let mut quick_polls_left: u32 = 0;
    loop {
        if *shutdown.borrow() {
            let _closed = broker.close(200, "shutdown".into()).await;
            return Ok(());
        }
        let batch = feed::read_committed(&mut *conn, at.feed, config.batch_size_max).await?;
        if let Some(last) = batch.last() {
            publish_batch(&channel, &exchange, &batch).await?;
            let links = audit::link::extend(at.chain, batch.iter().map(|row| &row.event));
            let next = Checkpoint {
                feed: last.position(),
                chain: links.last().copied().unwrap_or(at.chain),
            };
            assert!(
                next.feed > at.feed,
                "relay checkpoint must only move forward"
            );
            checkpoint::advance(&mut *conn, next, &batch, &links).await?;
            at = next;
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

/// Publishes the batch as envelopes (`eventstore::envelope`: one message per aggregate type,
/// more past its size bound), then waits for every confirm. `mandatory` makes an unroutable
/// envelope (no queue bound yet) a failure instead of a silent drop.
async fn publish_batch(
    channel: &Channel,
    exchange: &str,
    batch: &[FeedEvent],
) -> Result<(), RelayError> {
    let envelopes = envelope::seal(batch.iter().map(|row| &row.event))
        .map_err(|(message_id, e)| RelayError::Encoding(message_id, e))?;
    let mut confirms = Vec::with_capacity(envelopes.len());
    for envelope in &envelopes {
        let mut headers = FieldTable::default();
        headers.insert(
            ShortString::from("first_global_position"),
            AMQPValue::LongLongInt(envelope.first_position),
        );
        headers.insert(
            ShortString::from("last_global_position"),
            AMQPValue::LongLongInt(envelope.last_position),
        );
        headers.insert(
            ShortString::from("events"),
            AMQPValue::LongLongInt(envelope.events as i64),
        );
        let properties = BasicProperties::default()
            .with_delivery_mode(2) // persistent
            .with_content_type("application/json".into())
            .with_message_id(envelope.message_id().as_str().into())
            .with_type(envelope::ENVELOPE_TYPE.into())
            .with_headers(headers);
        let confirm = channel
            .basic_publish(
                exchange.into(),
                envelope.routing_key.as_str().into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..BasicPublishOptions::default()
                },
                &envelope.body,
                properties,
            )
            .await?;
        confirms.push((envelope.message_id(), confirm));
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
