//! The RabbitMQ consumer of one projection: apply, commit, then ack. A redelivery after a
//! crash is harmless (the offset check skips it); a poison event goes to the dead-letter
//! queue after a bounded number of tries; a database outage is waited out, not dead-lettered.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use eventstore::PublishedEvent;
use futures::StreamExt;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions};
use lapin::types::FieldTable;
use sqlx::PgPool;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::apply::apply_batch_on;
use crate::session::Session;
use crate::{topology, Projection, ProjectionError};

#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    pub amqp_url: String,
    pub amqp_prefix: String,
    pub queue_type: topology::QueueType,
    /// Unacknowledged messages the broker may push ahead (RabbitMQ's sweet spot: 100-300).
    pub prefetch: u16,
    /// Tries of one event before it is dead-lettered.
    pub poison_tries_max: u32,
    /// Deliveries applied in one transaction (at most what is already prefetched).
    pub batch_size_max: usize,
    /// How long a batch waits for more deliveries after its first. 0: it takes only what
    /// has already arrived. Longer: fewer, larger transactions at moderate load (each costs
    /// a commit and a round of lookups however few events it holds), for that much staleness.
    pub linger_ms: u64,
    pub retry_delay_ms: u64,
    /// Deliveries this process has applied and acknowledged: of a projection's two
    /// projectors, the one whose count moves is the queue's single active consumer.
    pub applied_here: Arc<AtomicU64>,
}

impl ConsumerConfig {
    pub fn new(amqp_url: String, amqp_prefix: String) -> Self {
        Self {
            amqp_url,
            amqp_prefix,
            queue_type: topology::QueueType::default(),
            prefetch: 200,
            poison_tries_max: 5,
            batch_size_max: 100,
            linger_ms: 0,
            retry_delay_ms: 200,
            applied_here: Arc::new(AtomicU64::new(0)),
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum ConsumerError {
    #[error("broker: {0}")]
    Broker(#[from] lapin::Error),
    #[error("consumer cancelled by the broker")]
    Cancelled,
}

/// Declares the projection's queues: call before the relay starts, so nothing it publishes
/// is unroutable.
pub async fn declare_topology(
    config: &ConsumerConfig,
    projection: &dyn Projection,
) -> lapin::Result<()> {
    let broker = broker::connect(&config.amqp_url).await?;
    let channel = broker.create_channel().await?;
    topology::declare(
        &channel,
        &config.amqp_prefix,
        projection.name(),
        &projection.binding_key(),
        config.queue_type,
    )
    .await?;
    broker.close(200, "declared".into()).await?;
    Ok(())
}

/// Consumes until `shutdown` turns true, reconnecting after broker failures.
pub async fn run(
    pool: PgPool,
    projection: Arc<dyn Projection>,
    config: ConsumerConfig,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut session = Session::new(pool, format!("payledger-projector-{}", projection.name()));
    loop {
        if *shutdown.borrow() {
            return;
        }
        match consume(&mut session, projection.as_ref(), &config, &mut shutdown).await {
            Ok(()) => return,
            Err(error) => {
                tracing::warn!(projection = projection.name(), %error, "consumer stopped; reconnecting");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(config.retry_delay_ms)) => {}
                    _ = shutdown.changed() => {}
                }
            }
        }
    }
}

async fn consume(
    session: &mut Session,
    projection: &dyn Projection,
    config: &ConsumerConfig,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), ConsumerError> {
    let broker = broker::connect(&config.amqp_url).await?;
    let channel = broker.create_channel().await?;
    topology::declare(
        &channel,
        &config.amqp_prefix,
        projection.name(),
        &projection.binding_key(),
        config.queue_type,
    )
    .await?;
    channel
        .basic_qos(config.prefetch, BasicQosOptions::default())
        .await?;
    let queue = topology::queue_name(&config.amqp_prefix, projection.name());
    let mut deliveries = channel
        .basic_consume(
            queue.as_str().into(),
            format!("{}-{}", projection.name(), uuid::Uuid::new_v4())
                .as_str()
                .into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    loop {
        let first = tokio::select! {
            next = deliveries.next() => match next {
                Some(delivery) => delivery?,
                None => return Err(ConsumerError::Cancelled),
            },
            _ = shutdown.changed() => {
                let _closed = broker.close(200, "shutdown".into()).await;
                return Ok(());
            }
        };
        // Whatever else the broker pushes (within the prefetch) until the linger is over
        // joins the batch: one commit for all of them instead of one each.
        let mut batch = vec![first];
        let linger_until = Instant::now() + Duration::from_millis(config.linger_ms);
        while batch.len() < config.batch_size_max {
            // After the deadline this still takes a delivery that is already there.
            let next = tokio::time::timeout_at(linger_until, deliveries.next()).await;
            match next.ok() {
                Some(Some(delivery)) => batch.push(delivery?),
                Some(None) => return Err(ConsumerError::Cancelled),
                None => break,
            }
        }
        handle_batch(session, projection, config, batch, shutdown).await?;
    }
}

/// Applies a batch in one transaction and acks it with one `multiple` ack; if anything in it
/// fails, falls back to one delivery at a time so a poison event is isolated.
async fn handle_batch(
    session: &mut Session,
    projection: &dyn Projection,
    config: &ConsumerConfig,
    batch: Vec<Delivery>,
    shutdown: &watch::Receiver<bool>,
) -> Result<(), ConsumerError> {
    let decoded: Option<Vec<PublishedEvent>> = batch
        .iter()
        .map(|d| serde_json::from_slice(&d.data).ok())
        .collect();
    if let (Some(events), Some(last)) = (decoded, batch.last()) {
        if batch.len() > 1 {
            match apply_in(session, projection, &events).await {
                Ok(_) => {
                    last.ack(BasicAckOptions { multiple: true }).await?;
                    config
                        .applied_here
                        .fetch_add(batch.len() as u64, Ordering::Relaxed);
                    return Ok(());
                }
                Err(error) => {
                    tracing::info!(projection = projection.name(), %error, size = batch.len(), "batch failed; applying one by one");
                }
            }
        }
    }
    for delivery in &batch {
        handle(session, projection, config, delivery, shutdown).await?;
    }
    Ok(())
}

/// Applies one delivery and settles it; returns only broker errors.
async fn handle(
    session: &mut Session,
    projection: &dyn Projection,
    config: &ConsumerConfig,
    delivery: &Delivery,
    shutdown: &watch::Receiver<bool>,
) -> Result<(), ConsumerError> {
    let event: PublishedEvent = match serde_json::from_slice(&delivery.data) {
        Ok(event) => event,
        Err(error) => {
            tracing::error!(projection = projection.name(), %error, "undecodable message; dead-lettering");
            delivery
                .nack(BasicNackOptions {
                    requeue: false,
                    ..BasicNackOptions::default()
                })
                .await?;
            return Ok(());
        }
    };
    let mut tries: u32 = 0;
    loop {
        match apply_in(session, projection, std::slice::from_ref(&event)).await {
            Ok(_) => {
                delivery.ack(BasicAckOptions::default()).await?;
                config.applied_here.fetch_add(1, Ordering::Relaxed);
                return Ok(());
            }
            Err(error) if error.is_transient() && !*shutdown.borrow() => {
                // The database is away, or another consumer got there first: try again
                // rather than dead-letter good events.
                tracing::warn!(projection = projection.name(), %error, "transient failure; retrying");
            }
            Err(error) => {
                tries += 1;
                if tries >= config.poison_tries_max
                    || matches!(error, ProjectionError::Poison { .. })
                    || *shutdown.borrow()
                {
                    if *shutdown.borrow() && error.is_transient() {
                        // Leave it for the next run: closing the channel requeues it.
                        return Ok(());
                    }
                    tracing::error!(projection = projection.name(), id = %event.message_id(), %error, tries, "dead-lettering event");
                    delivery
                        .nack(BasicNackOptions {
                            requeue: false,
                            ..BasicNackOptions::default()
                        })
                        .await?;
                    return Ok(());
                }
                tracing::warn!(projection = projection.name(), id = %event.message_id(), %error, tries, "apply failed; retrying");
            }
        }
        tokio::time::sleep(Duration::from_millis(config.retry_delay_ms)).await;
    }
}

/// Applies `events` in one transaction on the consumer's session, reconnecting it next time
/// if the failure may have broken it.
async fn apply_in(
    session: &mut Session,
    projection: &dyn Projection,
    events: &[PublishedEvent],
) -> Result<usize, ProjectionError> {
    let result = match session.conn().await {
        Ok(conn) => apply_batch_on(conn, projection, events).await,
        Err(error) => Err(error.into()),
    };
    if let Err(error) = &result {
        session.after_error(error);
    }
    result
}
