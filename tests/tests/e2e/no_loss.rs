//! Nothing lost, nothing applied twice: the relay is killed twice while 1,000 payments flow
//! (its task aborted mid-flight, then its database session terminated), and the status
//! projection still ends equal to the event store.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use api::config::ServeRole;
use commands::relay::{self, RelayConfig, RELAY_APPLICATION_NAME};
use e2e::{payment_body, spawn_app_with_role};
use futures::stream::{self, StreamExt};
use projections::consumer::{self, ConsumerConfig};
use projections::status::StatusProjection;
use rust_decimal::Decimal;
use serde_json::json;
use sqlx::Row;
use tokio::sync::watch;

const PAYMENTS: usize = 1_000;
const CONCURRENCY: usize = 16;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn relay_killed_twice_during_1000_payments_loses_and_duplicates_nothing() {
    let app = spawn_app_with_role(ServeRole::Api).await;
    let settings = app.settings.clone();
    let (_stop, stop_rx) = watch::channel(false);
    let consumer_config =
        ConsumerConfig::new(settings.amqp_url.clone(), settings.amqp_prefix.clone());
    consumer::declare_topology(
        &consumer_config,
        &projections::status::StatusProjection::default(),
    )
    .await
    .unwrap();
    tokio::spawn(consumer::run(
        app.pool.clone(),
        Arc::new(StatusProjection::default()),
        consumer_config,
        stop_rx.clone(),
    ));
    let relay_config = RelayConfig::new(settings.amqp_url.clone(), settings.amqp_prefix.clone());
    let start_relay = || {
        tokio::spawn(relay::run(
            app.pool.clone(),
            relay_config.clone(),
            stop_rx.clone(),
        ))
    };
    let mut relay_task = start_relay();

    let created = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let workload = stream::iter(0..PAYMENTS)
        .map(|i| {
            let app = &app;
            let created = created.clone();
            async move {
                let body = payment_body(
                    "250.00",
                    "USD",
                    &format!("nl-{i}"),
                    "tok_sandbox_approved",
                    "automatic",
                );
                let payment = app.create_payment(&format!("nl-key-{i}"), &body).await;
                let id = payment["id"].as_str().unwrap().to_owned();
                created.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if i % 4 == 0 {
                    // Refunds need the approval, which arrives by webhook.
                    wait_in_store(app, &id, 4).await;
                    let response = app
                        .post(
                            &format!("/v1/payments/{id}/refunds"),
                            &app.checkout_key,
                            Some("half"),
                            &json!({"amount": "125.00"}),
                        )
                        .await;
                    assert_eq!(response.status(), 201);
                }
                id
            }
        })
        .buffer_unordered(CONCURRENCY);
    tokio::pin!(workload);

    let mut ids = Vec::with_capacity(PAYMENTS);
    let mut killed_task = false;
    let mut killed_session = false;
    while let Some(id) = workload.next().await {
        ids.push(id);
        if !killed_task && ids.len() == PAYMENTS / 3 {
            // A crash: the task dies wherever it is (maybe between publish and checkpoint).
            relay_task.abort();
            let _ = (&mut relay_task).await;
            relay_task = start_relay();
            killed_task = true;
        }
        if !killed_session && ids.len() == 2 * PAYMENTS / 3 {
            let terminated: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                  WHERE application_name = $1 AND datname = current_database()) t",
            )
            .bind(RELAY_APPLICATION_NAME)
            .fetch_one(&app.pool)
            .await
            .unwrap();
            assert_eq!(
                terminated, 1,
                "the relay's session was found and terminated"
            );
            killed_session = true;
        }
    }
    assert_eq!(ids.len(), PAYMENTS);
    assert!(killed_task && killed_session);

    // The event store is the truth: 4 events per payment (initiated, its attempt started,
    // taken by the provider, approved), 2 more per refunded one.
    let expected_events = (PAYMENTS * 4 + PAYMENTS.div_ceil(4) * 2) as i64;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let count = app.event_count().await;
        if count == expected_events {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "store has {count} of {expected_events} events"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Then the projection must reach exactly what the store says.
    let truth: HashMap<String, i64> =
        sqlx::query("SELECT aggregate_id, max(sequence) AS v FROM events GROUP BY aggregate_id")
            .fetch_all(&app.pool)
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get::<String, _>("aggregate_id"), r.get::<i64, _>("v")))
            .collect();
    assert_eq!(truth.len(), PAYMENTS);
    let deadline = Instant::now() + Duration::from_secs(60);
    let rows = loop {
        let rows = sqlx::query(
            "SELECT payment_id::text AS id, version, status, refunded_amount FROM payment_status",
        )
        .fetch_all(&app.pool)
        .await
        .unwrap();
        let caught_up = rows.len() == PAYMENTS
            && rows
                .iter()
                .all(|r| truth.get(&r.get::<String, _>("id")) == Some(&r.get::<i64, _>("version")));
        if caught_up {
            break rows;
        }
        assert!(
            Instant::now() < deadline,
            "projection has not caught up: {} rows",
            rows.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for row in &rows {
        let version: i64 = row.get("version");
        let status: String = row.get("status");
        let refunded: Decimal = row.get("refunded_amount");
        if version == 6 {
            assert_eq!(status, "PARTIALLY_REFUNDED");
            // A refund applied twice would show 250.00 here.
            assert_eq!(refunded, Decimal::new(12500, 2));
        } else {
            assert_eq!((version, status.as_str()), (4, "APPROVED"));
            assert_eq!(refunded, Decimal::ZERO);
        }
    }
    // Every event applied exactly once: redeliveries after the kills were skipped.
    let applied: i64 = sqlx::query_scalar(
        "SELECT applied_total FROM projection_progress WHERE projection = 'status'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(applied, expected_events);

    // The audit chain went through both kills intact: one dense row per event, and every
    // stored hash is the one recomputed from the events in chain order.
    let chain = sqlx::query(
        "SELECT c.position, c.chain_hash, e.global_position, e.aggregate_type, e.aggregate_id,
                e.sequence, e.event_type, e.event_version, e.payload, e.metadata, e.recorded_at
           FROM audit_chain c JOIN events e ON e.global_position = c.global_position
          ORDER BY c.position",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(chain.len() as i64, expected_events);
    let mut previous = [0u8; 32];
    for (i, row) in chain.iter().enumerate() {
        assert_eq!(
            row.get::<i64, _>("position"),
            i as i64 + 1,
            "positions are dense"
        );
        let event = eventstore::PublishedEvent {
            global_position: row.get("global_position"),
            aggregate_type: row.get("aggregate_type"),
            aggregate_id: row.get("aggregate_id"),
            sequence: row.get("sequence"),
            event_type: row.get("event_type"),
            event_version: row.get("event_version"),
            payload: row.get("payload"),
            metadata: row.get("metadata"),
            recorded_at: row.get("recorded_at"),
        };
        previous = e2e::independent::audit_chain_hash(&previous, &event);
        assert_eq!(
            row.get::<Vec<u8>, _>("chain_hash"),
            previous.to_vec(),
            "hash at {}",
            i + 1
        );
    }
    relay_task.abort();
}

async fn wait_in_store(app: &e2e::TestApp, id: &str, events: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while app.event_types(id).await.len() < events {
        assert!(
            Instant::now() < deadline,
            "payment {id} never reached {events} events"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
