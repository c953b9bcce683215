//! What the relay puts on RabbitMQ: envelopes of events, one per aggregate type per batch,
//! each event once and in its stream's order; and a projector that meets a poison event in an
//! envelope dead-letters that event alone and applies the rest.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use e2e::{payment_body, spawn_app, TestApp};
use eventstore::streams::aggregate_events;
use eventstore::PublishedEvent;
use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicGetOptions, BasicPublishOptions,
    ConfirmSelectOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};

async fn channel(app: &TestApp) -> (Connection, Channel) {
    let broker = Connection::connect(&app.settings.amqp_url, ConnectionProperties::default())
        .await
        .unwrap();
    let channel = broker.create_channel().await.unwrap();
    (broker, channel)
}

async fn approved_payment(app: &TestApp, key: &str) -> String {
    let created = app
        .create_payment(
            key,
            &payment_body("12.00", "USD", key, "tok_sandbox_approved", "automatic"),
        )
        .await;
    let id = created["id"].as_str().unwrap().to_owned();
    app.wait_for_status(&id, "APPROVED").await;
    id
}

async fn stored(app: &TestApp, id: &str) -> Vec<PublishedEvent> {
    let mut conn = app.pool.acquire().await.unwrap();
    aggregate_events(&mut conn, "Payment", id, 0, i64::MAX)
        .await
        .unwrap()
}

#[tokio::test]
async fn the_relay_publishes_envelopes_holding_every_event_once_in_stream_order() {
    let app = spawn_app().await;
    let (_broker, channel) = channel(&app).await;
    // A queue of the test's own, bound as a projection's is, sees what the relay publishes.
    let queue = channel
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    channel
        .queue_bind(
            queue.name().as_str().into(),
            format!("{}.events", app.settings.amqp_prefix)
                .as_str()
                .into(),
            "payment.#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(approved_payment(&app, &format!("env-{i}")).await);
    }

    let mut consumer = channel
        .basic_consume(
            queue.name().as_str().into(),
            "envelopes".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut received: BTreeMap<String, Vec<PublishedEvent>> = BTreeMap::new();
    let mut largest = 0;
    let expected: usize = {
        let mut total = 0;
        for id in &ids {
            total += stored(&app, id).await.len();
        }
        total
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while received.values().map(Vec::len).sum::<usize>() < expected {
        let left = deadline.saturating_duration_since(Instant::now());
        let delivery = tokio::time::timeout(left, consumer.next())
            .await
            .expect("the relay published fewer events than the store holds")
            .unwrap()
            .unwrap();
        assert_eq!(delivery.routing_key.as_str(), "payment.envelope");
        assert_eq!(
            delivery.properties.kind().as_ref().map(|k| k.as_str()),
            Some("envelope")
        );
        let events: Vec<PublishedEvent> = serde_json::from_slice(&delivery.data).unwrap();
        largest = largest.max(events.len());
        for event in events {
            assert_eq!(event.aggregate_type, "Payment");
            received
                .entry(event.aggregate_id.clone())
                .or_default()
                .push(event);
        }
        delivery.ack(BasicAckOptions::default()).await.unwrap();
    }
    for id in &ids {
        assert_eq!(received.remove(id).unwrap(), stored(&app, id).await);
    }
    assert!(received.is_empty(), "events of payments nobody made");
    // A create appends its first events in one transaction: they travel together.
    assert!(largest >= 2, "every envelope held a single event");
}

#[tokio::test]
async fn a_poison_event_in_an_envelope_is_dead_lettered_alone_and_the_rest_is_applied() {
    let app = spawn_app().await;
    let original = approved_payment(&app, "env-poison").await;
    // The same events under a payment id the projections have never seen.
    let copy = uuid::Uuid::new_v4().to_string();
    let copied: Vec<PublishedEvent> = stored(&app, &original)
        .await
        .iter()
        .map(|event| {
            let text = serde_json::to_string(event)
                .unwrap()
                .replace(&original, &copy);
            serde_json::from_str(&text).unwrap()
        })
        .collect();
    let mut poison = copied[0].clone();
    poison.aggregate_id = "not-a-payment-id".into();
    let mut envelope = vec![copied[0].clone(), poison.clone()];
    envelope.extend(copied[1..].iter().cloned());

    let (_broker, channel) = channel(&app).await;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let confirm = channel
        .basic_publish(
            format!("{}.events", app.settings.amqp_prefix)
                .as_str()
                .into(),
            "payment.envelope".into(),
            BasicPublishOptions::default(),
            &serde_json::to_vec(&envelope).unwrap(),
            BasicProperties::default().with_delivery_mode(2),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(confirm.is_ack());

    // Not through the API: it answers for payments whose events are in the store.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let row = projections::status::get(&app.pool, copy.parse().unwrap(), None)
            .await
            .unwrap();
        if let Some(row) = row.filter(|row| row.version == copied.len() as i64) {
            assert_eq!(row.status.as_str(), "APPROVED");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the envelope's good events were not applied"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let dead_letter_queue = format!("{}.status.dead-letter", app.settings.amqp_prefix);
    let deadline = Instant::now() + Duration::from_secs(10);
    let message = loop {
        if let Some(message) = channel
            .basic_get(
                dead_letter_queue.as_str().into(),
                BasicGetOptions { no_ack: true },
            )
            .await
            .unwrap()
        {
            break message;
        }
        assert!(
            Instant::now() < deadline,
            "nothing reached {dead_letter_queue}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let dead: PublishedEvent = serde_json::from_slice(&message.delivery.data).unwrap();
    assert_eq!(dead, poison);
    // That one event, nothing else of the envelope.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let more = channel
        .basic_get(
            dead_letter_queue.as_str().into(),
            BasicGetOptions { no_ack: true },
        )
        .await
        .unwrap();
    assert!(
        more.is_none(),
        "more than the poison event was dead-lettered"
    );
}
