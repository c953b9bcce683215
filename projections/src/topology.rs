//! RabbitMQ names and declarations of the read side. Each projection has its own durable
//! queue bound to the events exchange, and its own dead-letter queue.

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

fn durable_exchange() -> ExchangeDeclareOptions {
    ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    }
}

/// Declares (idempotently) the exchange, the projection's queue and its dead-letter queue.
/// Run before the relay publishes, so no event finds the exchange without its queues.
pub async fn declare(channel: &Channel, prefix: &str, projection: &str) -> lapin::Result<()> {
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
    channel
        .queue_declare(dlq.as_str().into(), durable, FieldTable::default())
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
    let mut arguments = FieldTable::default();
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
            "payment.#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    Ok(())
}
