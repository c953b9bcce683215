//! The status projection's delivery discipline, driven directly: gaps are filled from the
//! event store, redeliveries are skipped, poison goes to the dead-letter queue, and /health
//! reports a broker that is down.

use std::time::{Duration, Instant};

use api::config::ServeRole;
use e2e::{payment_body, spawn_app, spawn_app_with_role};
use eventstore::streams::aggregate_events;
use lapin::options::{BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Connection, ConnectionProperties};
use projections::apply::{apply_event, Applied};
use projections::status::StatusProjection;
use serde_json::json;

use crate::projection_kit::wait_for_events;

#[tokio::test]
async fn a_gap_is_filled_from_the_store_and_redeliveries_are_skipped() {
    // API only: nothing consumes, so the test delivers events itself, out of order.
    let app = spawn_app_with_role(ServeRole::Api).await;
    let created = app
        .create_payment(
            "k-gap",
            &payment_body("90.00", "USD", "gap", "tok_sandbox_approved", "automatic"),
        )
        .await;
    let id = created["id"].as_str().unwrap().to_owned();
    wait_for_events(&app, &id, 4).await;
    let refund = app
        .post(
            &format!("/v1/payments/{id}/refunds"),
            &app.checkout_key,
            Some("r"),
            &json!({"amount": "30.00"}),
        )
        .await;
    assert_eq!(refund.status(), 201);

    let mut conn = app.pool.acquire().await.unwrap();
    let events = aggregate_events(&mut conn, "Payment", &id, 0, 10)
        .await
        .unwrap();
    assert_eq!(events.len(), 6);

    // Only the last event arrives: the five before it come from the store.
    let applied = apply_event(&app.pool, &StatusProjection::default(), &events[5])
        .await
        .unwrap();
    assert_eq!(applied, Applied::Events(6));
    let row = projections::status::get(&app.pool, id.parse().unwrap(), None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (row.version, row.status.as_str()),
        (6, "PARTIALLY_REFUNDED")
    );
    assert_eq!(row.refunded_amount.to_string(), "30.00");

    // Late and repeated deliveries change nothing.
    for event in [&events[1], &events[5], &events[0]] {
        assert_eq!(
            apply_event(&app.pool, &StatusProjection::default(), event)
                .await
                .unwrap(),
            Applied::Duplicate
        );
    }
    let again = projections::status::get(&app.pool, id.parse().unwrap(), None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again, row);
    let applied_total: i64 = sqlx::query_scalar(
        "SELECT applied_total FROM projection_progress WHERE projection = 'status'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(applied_total, 6);
}

/// Competing consumers (several projector processes on one queue, or a redelivery racing the
/// first delivery) apply the same events at the same moment: the offsets are advanced
/// optimistically in one snapshot, so exactly one transaction applies them and the others
/// are rolled back whole (a conflict or serialization failure, which the consumer retries,
/// never a poison event) or find them applied already.
#[tokio::test]
async fn readers_are_handed_the_rows_as_stored_once_their_batch_commits() {
    // API only: the test applies the events itself, through a projection feeding readers.
    let app = spawn_app_with_role(ServeRole::Api).await;
    let created = app
        .create_payment(
            "k-handoff",
            &payment_body(
                "12.5",
                "USD",
                "handoff",
                "tok_sandbox_approved",
                "automatic",
            ),
        )
        .await;
    let id = created["id"].as_str().unwrap().to_owned();
    wait_for_events(&app, &id, 3).await;
    let mut conn = app.pool.acquire().await.unwrap();
    // Through sequence 3: the sandbox's webhook may append the fourth meanwhile.
    let events = aggregate_events(&mut conn, "Payment", &id, 0, 3)
        .await
        .unwrap();
    assert_eq!(events.len(), 3);

    let readers = std::sync::Arc::new(projections::version_waiters::VersionWaiters::new(true));
    let projection = StatusProjection::feeding(readers.clone());
    let mut at_two = readers.wait_for(id.parse().unwrap(), 2).unwrap();
    let mut at_four = readers.wait_for(id.parse().unwrap(), 4).unwrap();
    assert_eq!(
        apply_event(&app.pool, &projection, &events[1])
            .await
            .unwrap(),
        Applied::Events(2)
    );
    let handed = at_two
        .try_recv()
        .expect("handed the row once the batch committed");
    let stored = projections::status::get(&app.pool, id.parse().unwrap(), None)
        .await
        .unwrap()
        .unwrap();
    // Debug shows decimal scales and times to the nanosecond: the reader answers exactly
    // what a read of the table would have (the events' clocks are finer than the column's).
    assert_eq!(format!("{handed:?}"), format!("{stored:?}"));
    assert_eq!(
        (handed.version, handed.amount.to_string()),
        (2, "12.50".into())
    );
    assert!(at_four.try_recv().is_err(), "version 4 is not there yet");

    // A redelivery commits nothing new, and the next event is still short of version 4.
    assert_eq!(
        apply_event(&app.pool, &projection, &events[0])
            .await
            .unwrap(),
        Applied::Duplicate
    );
    assert_eq!(
        apply_event(&app.pool, &projection, &events[2])
            .await
            .unwrap(),
        Applied::Events(1)
    );
    assert!(at_four.try_recv().is_err(), "version 4 is not there yet");
}

#[tokio::test]
async fn consumers_racing_on_the_same_events_apply_them_exactly_once() {
    let app = spawn_app_with_role(ServeRole::Api).await;
    let mut ids = Vec::new();
    for n in 0..3 {
        let created = app
            .create_payment(
                &format!("k-race-{n}"),
                &payment_body(
                    "40.00",
                    "USD",
                    &format!("race-{n}"),
                    "tok_sandbox_approved",
                    "automatic",
                ),
            )
            .await;
        let id = created["id"].as_str().unwrap().to_owned();
        wait_for_events(&app, &id, 4).await;
        ids.push(id);
    }
    let mut batch = Vec::new();
    let mut conn = app.pool.acquire().await.unwrap();
    for id in &ids {
        batch.extend(
            aggregate_events(&mut conn, "Payment", id, 0, 10)
                .await
                .unwrap(),
        );
    }
    drop(conn);
    assert_eq!(batch.len(), 12);

    let racers = 8;
    let results =
        futures::future::join_all((0..racers).map(|_| {
            let pool = app.pool.clone();
            let batch = batch.clone();
            async move {
                projections::apply::apply_batch(&pool, &StatusProjection::default(), &batch).await
            }
        }))
        .await;
    let mut applied = 0;
    for result in &results {
        match result {
            Ok(0) => {}
            Ok(count) => {
                assert_eq!(*count, 12, "a winner applies the whole batch");
                applied += 1;
            }
            // Lost the race: rolled back whole, retried by the consumer.
            Err(error) if error.is_transient() => {}
            Err(other) => panic!("unexpected failure: {other}"),
        }
    }
    assert_eq!(
        applied, 1,
        "exactly one consumer applies the batch: {results:?}"
    );

    // Whoever lost and retries now finds everything applied.
    assert_eq!(
        projections::apply::apply_batch(&app.pool, &StatusProjection::default(), &batch)
            .await
            .unwrap(),
        0
    );
    let applied_total: i64 = sqlx::query_scalar(
        "SELECT applied_total FROM projection_progress WHERE projection = 'status'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(applied_total, 12);
    for id in &ids {
        let row = projections::status::get(&app.pool, id.parse().unwrap(), None)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((row.version, row.status.as_str()), (4, "APPROVED"));
        assert_eq!(row.captured_amount.to_string(), "40.00");
    }
}

#[tokio::test]
async fn a_poison_message_is_dead_lettered_and_the_rest_keep_flowing() {
    let app = spawn_app().await;
    let prefix = &app.settings.amqp_prefix;
    let broker = Connection::connect(&app.settings.amqp_url, ConnectionProperties::default())
        .await
        .unwrap();
    let channel = broker.create_channel().await.unwrap();
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let confirm = channel
        .basic_publish(
            format!("{prefix}.events").as_str().into(),
            "payment.PaymentApproved".into(),
            BasicPublishOptions::default(),
            b"{not an event",
            BasicProperties::default(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(confirm.is_ack());

    let created = app
        .create_payment(
            "k-after",
            &payment_body(
                "5.00",
                "USD",
                "after-poison",
                "tok_sandbox_approved",
                "automatic",
            ),
        )
        .await;
    app.wait_for_status(created["id"].as_str().unwrap(), "APPROVED")
        .await;

    // /health counts what each projection dead-lettered.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let health: serde_json::Value = app
            .http
            .get(format!("{}/health", app.address))
            .bearer_auth(&app.admin_key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let status = health["projections"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["projection"] == "status")
            .cloned()
            .unwrap();
        if status["dead_lettered"] == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "health never showed the dead letter: {health}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let dead_letter_queue = format!("{prefix}.status.dead-letter");
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
    assert_eq!(message.delivery.data, b"{not an event");
}

#[tokio::test]
async fn health_reports_relay_and_projection_lag() {
    let app = spawn_app().await;
    let created = app
        .create_payment(
            "k-h",
            &payment_body("5.00", "USD", "health", "tok_sandbox_approved", "automatic"),
        )
        .await;
    app.wait_for_status(created["id"].as_str().unwrap(), "APPROVED")
        .await;
    let health = app
        .http
        .get(format!("{}/health", app.address))
        .bearer_auth(&app.admin_key)
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let body: serde_json::Value = health.json().await.unwrap();
    assert_eq!(body["database"], "ok");
    assert_eq!(body["broker"], "ok");
    assert_eq!(body["relay"]["published_total"], 4);
    assert_eq!(body["projections"][0]["projection"], "status");
    assert_eq!(body["projections"][0]["events_behind"], 0);
}

/// A small payment the sandbox approves, captured automatically.
fn approved_body(reference: &str) -> serde_json::Value {
    payment_body(
        "5.00",
        "USD",
        reference,
        "tok_sandbox_approved",
        "automatic",
    )
}

const PROJECTOR: &str = "payledger-projector-";
const WAKER: &str = "payledger-relay-waker";

/// The sessions of this database whose application name starts with `prefix`.
async fn named_sessions(pool: &sqlx::PgPool, prefix: &str) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT application_name FROM pg_stat_activity
          WHERE datname = current_database() AND starts_with(application_name, $1)
          ORDER BY 1",
    )
    .bind(prefix)
    .fetch_all(pool)
    .await
    .unwrap()
}

/// Terminates those sessions, as an operator or a failover would; how many there were.
async fn terminate_sessions(pool: &sqlx::PgPool, prefix: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity
          WHERE datname = current_database() AND starts_with(application_name, $1)",
    )
    .bind(prefix)
    .fetch_one(pool)
    .await
    .unwrap()
}

/// Every payment projection's offset for `id`, once all of them have applied `sequence`.
async fn wait_all_projections_reach(pool: &sqlx::PgPool, id: &str, sequence: i64) {
    let names: Vec<&str> = projections::all()
        .iter()
        .filter(|p| p.aggregate_type() == eventstore::published::PAYMENT)
        .map(|p| p.name())
        .collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let reached: Vec<(String, i64)> = sqlx::query_as(
            "SELECT projection, last_sequence FROM projection_offsets
              WHERE aggregate_id = $1 AND projection = ANY($2) ORDER BY projection",
        )
        .bind(id)
        .bind(&names)
        .fetch_all(pool)
        .await
        .unwrap();
        if reached.len() == names.len() && reached.iter().all(|(_, s)| *s == sequence) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "projections never all reached {id}/{sequence}: {reached:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The projectors keep their own database sessions (not the pool's): killed under them, they
/// are opened again, and what follows is applied once by every projection.
#[tokio::test]
async fn projector_sessions_killed_under_them_are_reopened() {
    let app = spawn_app().await;
    let expected = vec![
        "payledger-projector-analytics".to_owned(),
        "payledger-projector-failures".to_owned(),
        "payledger-projector-ledger".to_owned(),
        // The merchant webhook dispatcher, run by the same machinery.
        "payledger-projector-merchant-webhooks".to_owned(),
        "payledger-projector-status".to_owned(),
    ];
    let first = app
        .create_payment("k-before-kill", &approved_body("before-kill"))
        .await;
    let first_id = first["id"].as_str().unwrap();
    app.wait_for_status(first_id, "APPROVED").await;
    // Initiated, attempt started, provider transaction created, approved: sequence 4
    // everywhere.
    wait_all_projections_reach(&app.pool, first_id, 4).await;
    assert_eq!(named_sessions(&app.pool, PROJECTOR).await, expected);

    assert_eq!(terminate_sessions(&app.pool, PROJECTOR).await, 5);

    let second = app
        .create_payment("k-after-kill", &approved_body("after-kill"))
        .await;
    let second_id = second["id"].as_str().unwrap();
    let approved = app.wait_for_status(second_id, "APPROVED").await;
    assert_eq!(approved["version"], 4);
    wait_all_projections_reach(&app.pool, second_id, 4).await;
    // Both payments counted once in the ledger: two journal entries sets, nothing doubled.
    let lines: Vec<(String, i64)> = sqlx::query_as(
        "SELECT payment_id::text, count(*) FROM journal_entries GROUP BY 1 ORDER BY 1",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(
        lines[0].1, lines[1].1,
        "same flow, same postings: {lines:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while named_sessions(&app.pool, PROJECTOR).await != expected {
        assert!(Instant::now() < deadline, "sessions were not reopened");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An API process without a relay of its own wakes the relay elsewhere with NOTIFY, from its
/// own session: killed under it, that session is opened again at the next append.
#[tokio::test]
async fn a_waker_session_killed_under_it_is_reopened() {
    let app = spawn_app_with_role(ServeRole::Api).await;
    let waker = vec![WAKER.to_owned()];
    let wait_for_waker = || async {
        let deadline = Instant::now() + Duration::from_secs(10);
        while named_sessions(&app.pool, WAKER).await != waker {
            assert!(Instant::now() < deadline, "no waker session");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    app.create_payment("w-before-kill", &approved_body("w-before-kill"))
        .await;
    wait_for_waker().await;
    assert_eq!(terminate_sessions(&app.pool, WAKER).await, 1);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !named_sessions(&app.pool, WAKER).await.is_empty() {
        assert!(
            Instant::now() < deadline,
            "the killed session is still listed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    app.create_payment("w-after-kill", &approved_body("w-after-kill"))
        .await;
    wait_for_waker().await;
}

#[tokio::test]
async fn a_node_waits_for_a_version_another_node_appended() {
    // Two API nodes on one store: `first` appended the payment up to AUTHORIZED and remembers
    // that version; `second` captures it. A read on `first` for the capture's version waits
    // for it instead of taking the version `first` saw last for the stream's end.
    let first = spawn_app().await;
    let mut settings = first.settings.clone();
    settings.role = ServeRole::Api;
    // The provider the payment is with: the first node's sandbox.
    settings.sandbox.in_process = false;
    settings.sandbox.base_url = first.emulators["sandbox"].clone();
    let second = e2e::spawn_with_settings(settings).await;
    let created = first
        .create_payment(
            "k-two-nodes",
            &payment_body(
                "80.00",
                "USD",
                "two-nodes",
                "tok_sandbox_approved",
                "manual",
            ),
        )
        .await;
    let id = created["id"].as_str().unwrap().to_owned();
    let authorized = first.wait_for_status(&id, "AUTHORIZED").await;
    let captured = second
        .post(
            &format!("/v1/payments/{id}/capture"),
            &second.checkout_key,
            Some("c-two-nodes"),
            &json!({"amount": "80.00"}),
        )
        .await;
    let status = captured.status();
    let text = captured.text().await.unwrap();
    assert_eq!(status, 201, "{text}");
    let captured: serde_json::Value = serde_json::from_str(&text).unwrap();
    let version = captured["version"].as_i64().unwrap();
    assert!(version > authorized["version"].as_i64().unwrap());
    let view = first.read_at_least(&id, version).await;
    assert_eq!(view["status"], "APPROVED");
    assert_eq!(view["captured_amount"], "80.00");
}
