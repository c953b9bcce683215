//! What the projection tests share: decimals and money, a fresh migrated database without an
//! app, events appended to the store as the write side does and read back as published,
//! waiting for a payment's events, delivery through `apply_event` as the live consumers do (in
//! any order, with redeliveries from a repeatable generator), and a projection's tables as
//! rows to compare.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use domain::{Currency, Money, PaymentEvent};
use e2e::TestApp;
use eventstore::PublishedEvent;
use projections::apply::{apply_event, Applied};
use projections::Projection;
use rust_decimal::Decimal;
use serde_json::json;
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgPool, Row};
use uuid::Uuid;

pub fn dec(text: &str) -> Decimal {
    Decimal::from_str(text).unwrap()
}

pub fn money(amount: Decimal, currency: Currency) -> Money {
    Money::new(amount, currency).unwrap()
}

/// A fresh migrated database next to `DATABASE_URL`'s, with no app on it.
pub async fn fresh_pool() -> PgPool {
    let settings = api::Settings::from_env();
    let (url, _) = e2e::fresh_database(&settings.database_url).await;
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .connect(&url)
        .await
        .unwrap();
    api::startup::migrate(&settings, &pool).await.unwrap();
    pool
}

/// Appends `event` to the store as the write side would, and returns it as published.
pub async fn append(
    pool: &PgPool,
    id: Uuid,
    sequence: i64,
    event: &PaymentEvent,
) -> PublishedEvent {
    let payload = serde_json::to_value(event).unwrap();
    let (global_position, recorded_at): (i64, DateTime<Utc>) = sqlx::query_as(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version,
                             payload, metadata)
         VALUES ('Payment', $1, $2, $3, '1.0', $4::text::json, '{}')
         RETURNING global_position, recorded_at",
    )
    .bind(id.to_string())
    .bind(sequence)
    .bind(event.name())
    .bind(payload.to_string())
    .fetch_one(pool)
    .await
    .unwrap();
    PublishedEvent {
        global_position,
        aggregate_type: "Payment".into(),
        aggregate_id: id.to_string(),
        sequence,
        event_type: event.name().into(),
        event_version: "1.0".into(),
        payload,
        metadata: json!({}),
        recorded_at,
    }
}

/// Every event in the store, as published, in global order.
pub async fn stored_events(pool: &PgPool) -> Vec<PublishedEvent> {
    sqlx::query(
        "SELECT global_position, aggregate_type, aggregate_id, sequence, event_type,
                event_version, payload, metadata, recorded_at
           FROM events ORDER BY global_position",
    )
    .fetch_all(pool)
    .await
    .unwrap()
    .iter()
    .map(|row| PublishedEvent {
        global_position: row.get("global_position"),
        aggregate_type: row.get("aggregate_type"),
        aggregate_id: row.get("aggregate_id"),
        sequence: row.get("sequence"),
        event_type: row.get("event_type"),
        event_version: row.get("event_version"),
        payload: row.get("payload"),
        metadata: row.get("metadata"),
        recorded_at: row.get("recorded_at"),
    })
    .collect()
}

/// Polls (at most 10 s) until the store holds `count` events of the payment `id`, counting
/// only those of `event_type` when it is given.
async fn wait_for_count(app: &TestApp, id: &str, event_type: Option<&str>, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let types = app.event_types(id).await;
        let counted = types
            .iter()
            .filter(|t| event_type.is_none_or(|wanted| *t == wanted))
            .count();
        if counted >= count {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "payment {id} never had {count} {}: {types:?}",
            event_type.unwrap_or("events")
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until the payment `id` has at least `count` events.
pub async fn wait_for_events(app: &TestApp, id: &str, count: usize) {
    wait_for_count(app, id, None, count).await;
}

/// Waits until the payment `id` has at least `count` events of `event_type`.
pub async fn wait_for_event(app: &TestApp, id: &str, event_type: &str, count: usize) {
    wait_for_count(app, id, Some(event_type), count).await;
}

/// A small deterministic generator (xorshift), so a failing run can be repeated.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }

    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }
}

/// `events` as a broker may hand them over: every one once and every third twice, shuffled
/// (late ones often first).
pub fn shuffled_with_redeliveries(events: &[PublishedEvent], rng: &mut Rng) -> Vec<PublishedEvent> {
    let mut order: Vec<PublishedEvent> = events.to_vec();
    order.extend(events.iter().step_by(3).cloned());
    rng.shuffle(&mut order);
    order
}

/// Applies `events` to each of `projections` as their live consumers would; returns (events
/// applied, duplicates, deliveries that arrived early and filled a gap from the store).
pub async fn deliver(
    pool: &PgPool,
    projections: &[&dyn Projection],
    events: &[PublishedEvent],
) -> (usize, usize, usize) {
    let (mut applied, mut duplicates, mut early) = (0, 0, 0);
    for event in events {
        for projection in projections {
            match apply_event(pool, *projection, event).await.unwrap() {
                Applied::Events(n) => {
                    applied += n;
                    early += usize::from(n > 1);
                }
                Applied::Duplicate => duplicates += 1,
            }
        }
    }
    (applied, duplicates, early)
}

/// Every table of `projections` in `schema`, each as its rows' text in a stable order: equal
/// snapshots are equal tables.
pub async fn snapshot(
    pool: &PgPool,
    projections: &[&dyn Projection],
    schema: &str,
) -> BTreeMap<&'static str, Vec<String>> {
    let mut tables = BTreeMap::new();
    for table in projections.iter().flat_map(|p| p.tables()) {
        let rows: Vec<String> = sqlx::query_scalar(&format!(
            "SELECT to_jsonb(t)::text FROM {schema}.{table} t ORDER BY 1"
        ))
        .fetch_all(pool)
        .await
        .unwrap();
        tables.insert(*table, rows);
    }
    tables
}

/// How many rows `table` in `schema` and in `public` do not have in common (as multisets).
pub async fn differing_rows(pool: &PgPool, table: &str, schema: &str) -> i64 {
    sqlx::query_scalar(&format!(
        "SELECT count(*) FROM ((SELECT * FROM public.{table} EXCEPT ALL SELECT * FROM {schema}.{table})
                               UNION ALL
                               (SELECT * FROM {schema}.{table} EXCEPT ALL SELECT * FROM public.{table})) d"
    ))
    .fetch_one(pool)
    .await
    .unwrap()
}
