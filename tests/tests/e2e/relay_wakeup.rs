//! The relay leading in the API's own process is woken by the appends of that process
//! directly, without a NOTIFY and without waiting for its poll.

use std::time::{Duration, Instant};

use api::config::ServeRole;
use commands::relay::{self, RelayConfig};
use commands::relay_waker::{LocalRelay, RelayWaker};
use e2e::spawn_app_with_role;
use projections::consumer::{self, ConsumerConfig};
use tokio::sync::watch;

async fn published_total(pool: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar("SELECT COALESCE(max(published_total), 0) FROM relay_checkpoint")
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn an_in_process_relay_publishes_on_its_bell_long_before_its_poll() {
    // The API role runs neither relay nor projectors: this test runs the relay itself.
    let app = spawn_app_with_role(ServeRole::Api).await;
    let settings = &app.settings;
    let consumer_config =
        ConsumerConfig::new(settings.amqp_url.clone(), settings.amqp_prefix.clone());
    consumer::declare_topology(
        &consumer_config,
        &projections::status::StatusProjection::default(),
    )
    .await
    .unwrap();
    let local = LocalRelay::default();
    let mut config = RelayConfig::new(settings.amqp_url.clone(), settings.amqp_prefix.clone());
    config.poll_interval_ms = 600_000;
    config.local = Some(local.clone());
    let (_stop, stop_rx) = watch::channel(false);
    tokio::spawn(relay::run(app.pool.clone(), config, stop_rx));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !local.leads() {
        assert!(Instant::now() < deadline, "the relay never took the lead");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Its first read (one query, nothing to publish) is done well within this.
    tokio::time::sleep(Duration::from_millis(500)).await;

    // An append as the store makes it (no trigger on `events` would NOTIFY).
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
         VALUES ('Payment', gen_random_uuid()::text, 1, 'PaymentInitiated', '1.0', '{}', '{}')",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    assert_eq!(
        published_total(&app.pool).await,
        0,
        "nothing woke the relay yet"
    );
    // A waker whose NOTIFY would go to another database: only the bell can wake the relay.
    let elsewhere = sqlx::PgPool::connect_lazy(&settings.database_url.replace(
        &format!("/{}", app.pool.connect_options().get_database().unwrap()),
        "/postgres",
    ))
    .unwrap();
    RelayWaker::spawn(elsewhere, Some(local)).wake();

    let deadline = Instant::now() + Duration::from_secs(30);
    while published_total(&app.pool).await < 1 {
        assert!(
            Instant::now() < deadline,
            "the relay was not woken by its bell (its next poll is 10 minutes away)"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
