//! RabbitMQ names and declarations of the read side. Each projection has its own durable
//! queue bound to the events exchange, and its own dead-letter queue.
//!
//! The queue is single-active-consumer: every projector of a projection consumes from it,
//! the broker delivers to one at a time and hands the queue to the next when that one's
//! connection goes. One consumer at a time keeps the queue's order, which is the relay's
//! order, without any coordination between projectors.

use eventstore::published::events_exchange;
use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Channel, ExchangeKind};

pub fn queue_name(prefix: &str, projection: &str) -> String {
    format!("{prefix}.{projection}")
}

pub fn dead_letter_exchange(prefix: &str) -> String {
    format!("{prefix}.dead-letter")
}

pub fn dead_letter_queue(prefix: &str, projection: &str) -> String {
    format!("{prefix}.{projection}.dead-letter")
}

/// `AMQP_QUEUE_TYPE`. Quorum queues are replicated (Raft) over the cluster's nodes: a
/// message the broker confirmed survives the loss of any minority of them. Classic queues
/// live on one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum QueueType {
    #[default]
    Quorum,
    Classic,
}

impl QueueType {
    pub fn parse(text: &str) -> Option<QueueType> {
        match text.trim() {
            "quorum" => Some(QueueType::Quorum),
            "classic" => Some(QueueType::Classic),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            QueueType::Quorum => "quorum",
            QueueType::Classic => "classic",
        }
    }
}

fn durable_exchange() -> ExchangeDeclareOptions {
    ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    }
}

/// Declares (idempotently) the exchange, the projection's queue and its dead-letter queue.
/// Run before the relay publishes, so no event finds the exchange without its queues.
/// A queue that already exists with other arguments (another type) is refused by the broker
/// (`PRECONDITION_FAILED`): drain and delete it, or use another `AMQP_PREFIX`.
pub async fn declare(
    channel: &Channel,
    prefix: &str,
    projection: &str,
    binding_key: &str,
    queue_type: QueueType,
) -> lapin::Result<()> {
    let exchange = events_exchange(prefix);
    let dlx = dead_letter_exchange(prefix);
    let queue = queue_name(prefix, projection);
    let dlq = dead_letter_queue(prefix, projection);
    channel
        .exchange_declare(
            exchange.as_str().into(),
            ExchangeKind::Topic,
            durable_exchange(),
            FieldTable::default(),
        )
        .await?;
    channel
        .exchange_declare(
            dlx.as_str().into(),
            ExchangeKind::Direct,
            durable_exchange(),
            FieldTable::default(),
        )
        .await?;
    let durable = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    let mut typed = FieldTable::default();
    typed.insert(
        ShortString::from("x-queue-type"),
        AMQPValue::LongString(LongString::from(queue_type.as_str())),
    );
    channel
        .queue_declare(dlq.as_str().into(), durable, typed.clone())
        .await?;
    channel
        .queue_bind(
            dlq.as_str().into(),
            dlx.as_str().into(),
            projection.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let mut arguments = typed;
    arguments.insert(
        ShortString::from("x-single-active-consumer"),
        AMQPValue::Boolean(true),
    );
    arguments.insert(
        ShortString::from("x-dead-letter-exchange"),
        AMQPValue::LongString(LongString::from(dlx.as_str())),
    );
    arguments.insert(
        ShortString::from("x-dead-letter-routing-key"),
        AMQPValue::LongString(LongString::from(projection)),
    );
    channel
        .queue_declare(queue.as_str().into(), durable, arguments)
        .await?;
    channel
        .queue_bind(
            queue.as_str().into(),
            exchange.as_str().into(),
            binding_key.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    Ok(())
}
