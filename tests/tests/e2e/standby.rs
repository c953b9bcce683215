//! Hot stand-bys as real processes: two relays (one leads through a PostgreSQL advisory lock,
//! the other waits for it) and two status projectors on one single-active-consumer queue.
//! While payments flow, the leading relay and the active projector are killed with SIGKILL:
//! the stand-bys take over within a bounded time, and the status projection still ends equal
//! to the event store with every event applied once.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use api::config::ServeRole;
use e2e::process::{free_port, kill_hard, serve, wait_ready};
use e2e::{payment_body, spawn_app_with_role, TestApp};
use futures::stream::{self, StreamExt};
use serde_json::Value;
use sqlx::Row;
use tokio::process::Child;

const PAYMENTS: usize = 300;
const CONCURRENCY: usize = 8;
/// The stand-by retries the lock every 500 ms; PostgreSQL frees it as the leader's socket
/// closes. Far more than that means the stand-by is not standing by.
const TAKEOVER_MS_MAX: u128 = 5_000;

struct Node {
    base: String,
    child: Child,
}

async fn start(app: &TestApp, args: &[&str]) -> Node {
    let port = free_port();
    let amqp = app.settings.amqp_url.clone();
    let child = serve(
        args,
        port,
        &[
            ("DATABASE_URL", app.settings.database_url.as_str()),
            ("AMQP_URL", amqp.as_str()),
            ("AMQP_PREFIX", app.settings.amqp_prefix.as_str()),
        ],
    );
    let base = format!("http://127.0.0.1:{port}");
    wait_ready(&app.http, &base).await;
    Node { base, child }
}

async fn health(app: &TestApp, node: &Node) -> Value {
    app.http
        .get(format!("{}/health", node.base))
        .bearer_auth(&app.admin_key)
        .send()
        .await
        .expect("health answers")
        .json()
        .await
        .expect("json")
}

async fn leads(app: &TestApp, node: &Node) -> bool {
    health(app, node).await["relay"]["leading"] == true
}

async fn applied_here(app: &TestApp, node: &Node) -> u64 {
    health(app, node).await["applied_here"]["status"]
        .as_u64()
        .expect("a projector reports what it applied")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_leader_relay_and_active_projector_are_replaced_and_nothing_is_lost_or_doubled() {
    let app = spawn_app_with_role(ServeRole::Api).await;
    let mut relays = Vec::new();
    for _ in 0..2 {
        relays.push(start(&app, &["--role", "relay"]).await);
    }
    let mut projectors = Vec::new();
    for _ in 0..2 {
        projectors.push(start(&app, &["--role", "projector", "--projection", "status"]).await);
    }
    // Exactly one relay leads.
    let deadline = Instant::now() + Duration::from_secs(10);
    let leader = loop {
        let (first, second) = (leads(&app, &relays[0]).await, leads(&app, &relays[1]).await);
        assert!(!(first && second), "two relays lead at once");
        if first || second {
            break usize::from(second);
        }
        assert!(Instant::now() < deadline, "no relay took the lead");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    let workload = stream::iter(0..PAYMENTS)
        .map(|i| {
            let app = &app;
            async move {
                let reference = format!("sb-{i}");
                let body = payment_body(
                    "12.00",
                    "USD",
                    &reference,
                    "tok_sandbox_approved",
                    "automatic",
                );
                app.create_payment(&reference, &body).await["id"]
                    .as_str()
                    .expect("id")
                    .to_owned()
            }
        })
        .buffer_unordered(CONCURRENCY);
    tokio::pin!(workload);
    let mut ids = Vec::with_capacity(PAYMENTS);
    let mut takeover_ms = None;
    let mut projector_killed = false;
    while let Some(id) = workload.next().await {
        ids.push(id);
        if takeover_ms.is_none() && ids.len() == PAYMENTS / 3 {
            kill_hard(&mut relays[leader].child).await;
            let killed_at = Instant::now();
            let standby = &relays[1 - leader];
            while !leads(&app, standby).await {
                assert!(
                    killed_at.elapsed().as_millis() < TAKEOVER_MS_MAX,
                    "the stand-by relay did not take over"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            takeover_ms = Some(killed_at.elapsed().as_millis());
        }
        if !projector_killed && ids.len() == 2 * PAYMENTS / 3 {
            // The broker delivers to one projector at a time: kill the one working.
            let active = if applied_here(&app, &projectors[0]).await > 0 {
                0
            } else {
                1
            };
            assert!(applied_here(&app, &projectors[active]).await > 0);
            assert_eq!(
                applied_here(&app, &projectors[1 - active]).await,
                0,
                "one consumer at a time"
            );
            kill_hard(&mut projectors[active].child).await;
            projectors.swap(0, active);
            projector_killed = true;
        }
    }
    assert!(projector_killed);
    println!("relay takeover after SIGKILL of the leader: {takeover_ms:?} ms");

    // Every payment's events are in the store; the surviving projector applies them all.
    let truth: HashMap<String, i64> = loop {
        let truth: HashMap<String, i64> = sqlx::query(
            "SELECT aggregate_id, max(sequence) AS v FROM events GROUP BY aggregate_id",
        )
        .fetch_all(&app.pool)
        .await
        .expect("events")
        .iter()
        .map(|r| (r.get::<String, _>("aggregate_id"), r.get::<i64, _>("v")))
        .collect();
        if truth.len() == PAYMENTS && truth.values().all(|v| *v == 4) {
            break truth;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let expected_events: i64 = truth.values().sum();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let rows = sqlx::query("SELECT payment_id::text AS id, version FROM payment_status")
            .fetch_all(&app.pool)
            .await
            .expect("status rows");
        let caught_up = rows.len() == PAYMENTS
            && rows
                .iter()
                .all(|r| truth.get(&r.get::<String, _>("id")) == Some(&r.get::<i64, _>("version")));
        if caught_up {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the status projection did not catch up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let applied: i64 = sqlx::query_scalar(
        "SELECT applied_total FROM projection_progress WHERE projection = 'status'",
    )
    .fetch_one(&app.pool)
    .await
    .expect("progress");
    assert_eq!(applied, expected_events, "every event applied exactly once");
    assert!(
        applied_here(&app, &projectors[1]).await > 0,
        "the stand-by took the queue over"
    );
}
