//! The RabbitMQ consumer of one projection: apply, commit, then ack, an envelope of events
//! (`eventstore::envelope`) at a time or several at once. A redelivery after a crash is
//! harmless (the offset check skips it); a poison event alone goes to the dead-letter queue
//! after a bounded number of tries, the rest of its envelope is applied; a database outage is
//! waited out, not dead-lettered.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use eventstore::envelope;
use eventstore::PublishedEvent;
use futures::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel};
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
    /// Unacknowledged messages the broker may push ahead: envelopes, each up to
    /// `eventstore::envelope::ENVELOPE_BYTES_MAX`, so this bounds the memory they hold.
    pub prefetch: u16,
    /// Tries of one event before it is dead-lettered.
    pub poison_tries_max: u32,
    /// Events applied in one transaction: deliveries join a batch until it holds this many
    /// (at most what is already prefetched).
    pub batch_events_max: usize,
    /// How long a batch waits for more deliveries after its first. 0: it takes only what
    /// has already arrived. Longer: fewer, larger transactions at moderate load (each costs
    /// a commit and a round of lookups however few events it holds), for that much staleness.
    pub linger_ms: u64,
    pub retry_delay_ms: u64,
    /// Events this process has applied and acknowledged: of a projection's two
    /// projectors, the one whose count moves is the queue's single active consumer.
    pub applied_here: Arc<AtomicU64>,
}

impl ConsumerConfig {
    pub fn new(amqp_url: String, amqp_prefix: String) -> Self {
        Self {
            amqp_url,
            amqp_prefix,
            queue_type: topology::QueueType::default(),
            prefetch: 32,
            poison_tries_max: 5,
            batch_events_max: 1000,
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
    #[error("encoding a dead letter: {0}")]
    Encoding(serde_json::Error),
    #[error("the broker refused dead letter {0}")]
    DeadLetterRefused(String),
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
    // Poison events of an envelope are published to the dead-letter exchange one by one, on a
    // channel of their own with confirms: an envelope is acknowledged only after they are.
    let dead_letters = broker.create_channel().await?;
    dead_letters
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let consumer = Consumer {
        projection,
        config,
        dead_letters: &dead_letters,
    };
    loop {
        let first = tokio::select! {
            next = deliveries.next() => match next {
                Some(delivery) => Received::of(delivery?),
                None => return Err(ConsumerError::Cancelled),
            },
            _ = shutdown.changed() => {
                let _closed = broker.close(200, "shutdown".into()).await;
                return Ok(());
            }
        };
        // Whatever else the broker pushes (within the prefetch) until the linger is over
        // joins the batch: one commit for all of them instead of one each.
        let mut events = first.len();
        let mut batch = vec![first];
        let linger_until = Instant::now() + Duration::from_millis(config.linger_ms);
        while events < config.batch_events_max {
            // After the deadline this still takes a delivery that is already there.
            let next = tokio::time::timeout_at(linger_until, deliveries.next()).await;
            match next.ok() {
                Some(Some(delivery)) => {
                    let received = Received::of(delivery?);
                    events += received.len();
                    batch.push(received);
                }
                Some(None) => return Err(ConsumerError::Cancelled),
                None => break,
            }
        }
        consumer.handle_batch(session, batch, shutdown).await?;
    }
}

/// A delivery and the events it carries (an envelope's, or one bare event), or why it
/// carries none.
struct Received {
    delivery: Delivery,
    events: Result<Vec<PublishedEvent>, serde_json::Error>,
}

impl Received {
    fn of(delivery: Delivery) -> Self {
        let events = envelope::open(&delivery.data);
        Self { delivery, events }
    }

    fn len(&self) -> usize {
        self.events.as_ref().map_or(1, Vec::len)
    }
}

/// What became of one event that could not be applied with its envelope.
enum Settled {
    Applied,
    DeadLettered,
    /// Shutting down with the database away: left unacknowledged for the next run.
    Left,
}

struct Consumer<'a> {
    projection: &'a dyn Projection,
    config: &'a ConsumerConfig,
    dead_letters: &'a Channel,
}

impl Consumer<'_> {
    /// Applies a batch in one transaction and acks it with one `multiple` ack; if anything
    /// in it fails, falls back to one delivery at a time, and within an envelope that fails
    /// to one event at a time, so only a poison event is dead-lettered.
    async fn handle_batch(
        &self,
        session: &mut Session,
        batch: Vec<Received>,
        shutdown: &watch::Receiver<bool>,
    ) -> Result<(), ConsumerError> {
        let (deliveries, opened): (Vec<Delivery>, Vec<_>) =
            batch.into_iter().map(|r| (r.delivery, r.events)).unzip();
        let envelopes: Result<Vec<Vec<PublishedEvent>>, _> = opened.into_iter().collect();
        if let (Ok(envelopes), Some(last)) = (envelopes, deliveries.last()) {
            let events: Vec<PublishedEvent> = envelopes.into_iter().flatten().collect();
            match apply_in(session, self.projection, &events).await {
                Ok(_) => {
                    last.ack(BasicAckOptions { multiple: true }).await?;
                    self.applied(events.len());
                    return Ok(());
                }
                Err(error) => {
                    tracing::info!(projection = self.projection.name(), %error, deliveries = deliveries.len(), events = events.len(), "batch failed; applying one delivery at a time");
                }
            }
        }
        // Rare: decoding again is cheaper than keeping a copy of every batch.
        for delivery in deliveries {
            self.handle(session, &Received::of(delivery), shutdown)
                .await?;
        }
        Ok(())
    }

    /// Applies one delivery's events and settles it; returns only broker errors.
    async fn handle(
        &self,
        session: &mut Session,
        received: &Received,
        shutdown: &watch::Receiver<bool>,
    ) -> Result<(), ConsumerError> {
        let name = self.projection.name();
        let delivery = &received.delivery;
        let events = match &received.events {
            Ok(events) => events,
            Err(error) => {
                tracing::error!(projection = name, %error, "undecodable message; dead-lettering");
                delivery
                    .nack(BasicNackOptions {
                        requeue: false,
                        ..BasicNackOptions::default()
                    })
                    .await?;
                return Ok(());
            }
        };
        if events.len() > 1 {
            match apply_in(session, self.projection, events).await {
                Ok(_) => {
                    delivery.ack(BasicAckOptions::default()).await?;
                    self.applied(events.len());
                    return Ok(());
                }
                Err(error) => {
                    tracing::info!(projection = name, %error, events = events.len(), "envelope failed; applying one event at a time");
                }
            }
        }
        // Events applied before a later one fails are not applied again when the envelope
        // comes back: their offsets moved.
        for event in events {
            match self.settle(session, event, shutdown).await? {
                Settled::Applied => self.applied(1),
                Settled::DeadLettered => {}
                Settled::Left => return Ok(()),
            }
        }
        delivery.ack(BasicAckOptions::default()).await?;
        Ok(())
    }

    /// Applies one event, retrying a transient failure in place and any other a bounded
    /// number of times, then dead-letters it.
    async fn settle(
        &self,
        session: &mut Session,
        event: &PublishedEvent,
        shutdown: &watch::Receiver<bool>,
    ) -> Result<Settled, ConsumerError> {
        let name = self.projection.name();
        let mut tries: u32 = 0;
        loop {
            match apply_in(session, self.projection, std::slice::from_ref(event)).await {
                Ok(_) => return Ok(Settled::Applied),
                Err(error) if error.is_transient() && !*shutdown.borrow() => {
                    // The database is away, or another consumer got there first: try again
                    // rather than dead-letter good events.
                    tracing::warn!(projection = name, %error, "transient failure; retrying");
                }
                Err(error) => {
                    tries += 1;
                    if *shutdown.borrow() && error.is_transient() {
                        // Leave it for the next run: closing the channel requeues it.
                        return Ok(Settled::Left);
                    }
                    if tries >= self.config.poison_tries_max
                        || matches!(error, ProjectionError::Poison { .. })
                        || *shutdown.borrow()
                    {
                        tracing::error!(projection = name, id = %event.message_id(), %error, tries, "dead-lettering event");
                        self.dead_letter(event).await?;
                        return Ok(Settled::DeadLettered);
                    }
                    tracing::warn!(projection = name, id = %event.message_id(), %error, tries, "apply failed; retrying");
                }
            }
            tokio::time::sleep(Duration::from_millis(self.config.retry_delay_ms)).await;
        }
    }

    /// Publishes `event` alone to the projection's dead-letter queue (through the exchange
    /// its queue dead-letters to) and waits for the broker's confirm.
    async fn dead_letter(&self, event: &PublishedEvent) -> Result<(), ConsumerError> {
        let name = self.projection.name();
        let body = serde_json::to_vec(event).map_err(ConsumerError::Encoding)?;
        let exchange = topology::dead_letter_exchange(&self.config.amqp_prefix);
        let confirmation = self
            .dead_letters
            .basic_publish(
                exchange.as_str().into(),
                name.into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..BasicPublishOptions::default()
                },
                &body,
                BasicProperties::default()
                    .with_delivery_mode(2) // persistent
                    .with_content_type("application/json".into())
                    .with_message_id(event.message_id().as_str().into())
                    .with_type(event.event_type.as_str().into()),
            )
            .await?
            .await?;
        if !confirmation.is_ack() || confirmation.take_message().is_some() {
            return Err(ConsumerError::DeadLetterRefused(event.message_id()));
        }
        Ok(())
    }

    fn applied(&self, events: usize) {
        self.config
            .applied_here
            .fetch_add(events as u64, Ordering::Relaxed);
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
