//! The analyst surface: the reports API with its role scoping, the read-only database role,
//! and projections that stay unchanged when every event is published again, shuffled,
//! straight to the exchange.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use api::auth::{create_key, Role};
use e2e::{payment_body, spawn_app, TestApp};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Connection, ConnectionProperties};
use serde_json::{json, Value};
use sqlx::Row;

const PROJECTION_TABLES: [&str; 10] = [
    "payment_status",
    "analytics_daily",
    "analytics_approval_times",
    "analytics_payments",
    "payment_failures",
    "failures_payments",
    "journal_entries",
    "account_balances",
    "merchant_account_balances",
    "ledger_payments",
];

async fn small_workload(app: &TestApp) {
    for (i, token) in [
        "tok_sandbox_approved",
        "tok_sandbox_approved",
        "tok_sandbox_declined",
    ]
    .iter()
    .enumerate()
    {
        let created = app
            .create_payment(
                &format!("w-{i}"),
                &payment_body("200.00", "USD", &format!("w-{i}"), token, "automatic"),
            )
            .await;
        let id = created["id"].as_str().unwrap().to_owned();
        if *token == "tok_sandbox_approved" {
            app.wait_for_status(&id, "APPROVED").await;
            let refund = app
                .post(
                    &format!("/v1/payments/{id}/refunds"),
                    &app.checkout_key,
                    Some("r"),
                    &json!({"amount": "50.00"}),
                )
                .await;
            assert_eq!(refund.status(), 201);
        } else {
            app.wait_for_status(&id, "DECLINED").await;
        }
    }
}

/// Waits until every projection has applied every stored event.
async fn caught_up(app: &TestApp) {
    e2e::support::projections_caught_up(app).await;
}

async fn snapshot(app: &TestApp) -> BTreeMap<&'static str, Vec<String>> {
    let mut tables = BTreeMap::new();
    for table in PROJECTION_TABLES {
        let rows: Vec<String> =
            sqlx::query_scalar(&format!("SELECT t::text FROM {table} t ORDER BY 1"))
                .fetch_all(&app.pool)
                .await
                .unwrap();
        tables.insert(table, rows);
    }
    tables
}

#[tokio::test]
async fn reports_are_scoped_by_role() {
    let app = spawn_app().await;
    small_workload(&app).await;
    caught_up(&app).await;
    let analyst = create_key(&app.pool, Role::Analyst, None).await.unwrap();
    let auditor = create_key(&app.pool, Role::Auditor, None).await.unwrap();
    let other_merchant = app.key_for("merchant-z").await;

    let daily: Value = app
        .get("/v1/analytics/daily", &analyst)
        .await
        .json()
        .await
        .unwrap();
    let row = &daily["data"][0];
    assert_eq!(row["merchant_id"], e2e::MERCHANT);
    assert_eq!(row["approved_count"], 2);
    assert_eq!(row["declined_count"], 1);
    assert_eq!(row["approved_amount"], "400.00");
    assert_eq!(row["refunded_amount"], "100.00");
    assert_eq!(row["success_rate"], "0.666667");

    let own: Value = app
        .get("/v1/analytics/daily", &app.checkout_key)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(own["data"].as_array().unwrap().len(), 1);
    let none: Value = app
        .get("/v1/analytics/daily", &other_merchant)
        .await
        .json()
        .await
        .unwrap();
    assert!(
        none["data"].as_array().unwrap().is_empty(),
        "another merchant sees nothing"
    );

    let failures: Value = app
        .get("/v1/analytics/failures?provider=sandbox", &analyst)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(failures["data"][0]["reason"], "card_declined");
    assert_eq!(failures["data"][0]["amount"], "200.00");

    // Merchant payable: captured 400 - refunded 100 - fees (2 x (2.90% of 200 + 0.30) = 12.20).
    let payable = format!("merchant:{}:payable", e2e::MERCHANT);
    let balances: Value = app
        .get(
            &format!("/v1/ledger/balances?account={payable}&currency=USD"),
            &app.checkout_key,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(balances["data"][0]["balance"], "-287.80", "{balances}");
    let page: Value = app
        .get(
            &format!("/v1/ledger/accounts/{payable}/entries?limit=2"),
            &analyst,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["data"].as_array().unwrap().len(), 2);
    let cursor = page["next_cursor"].as_str().unwrap();
    let next: Value = app
        .get(
            &format!("/v1/ledger/accounts/{payable}/entries?limit=500&cursor={cursor}"),
            &analyst,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        next["data"].as_array().unwrap().len(),
        4,
        "2 captures, 2 fees, 2 refunds in all"
    );

    assert_eq!(app.get("/v1/analytics/daily", &auditor).await.status(), 403);
    assert_eq!(
        app.get("/v1/analytics/daily?limit=501", &analyst)
            .await
            .status(),
        422
    );
    assert_eq!(
        app.get(
            &format!("/v1/ledger/accounts/{payable}/entries?cursor=zz"),
            &analyst
        )
        .await
        .status(),
        422
    );
    // PostgreSQL text holds no NUL: a filter with one is the caller's mistake, not an outage.
    for path in [
        "/v1/analytics/daily?method=CA%00RD",
        "/v1/ledger/balances?currency=%00",
        "/v1/analytics/failures?provider=sand%01box",
        "/v1/ledger/accounts/a%00b/entries",
    ] {
        assert_eq!(app.get(path, &analyst).await.status(), 422, "{path}");
    }
}

#[tokio::test]
async fn the_analyst_role_reads_projections_and_nothing_else() {
    let app = spawn_app().await;
    small_workload(&app).await;
    caught_up(&app).await;
    let mut conn = app.pool.acquire().await.unwrap();
    sqlx::query("SET ROLE payledger_analyst")
        .execute(&mut *conn)
        .await
        .unwrap();
    for table in PROJECTION_TABLES {
        sqlx::query(&format!("SELECT count(*) FROM {table}"))
            .fetch_one(&mut *conn)
            .await
            .unwrap_or_else(|e| panic!("analyst cannot read {table}: {e}"));
    }
    for forbidden in [
        "SELECT count(*) FROM events",
        "SELECT count(*) FROM api_keys",
        "SELECT count(*) FROM webhook_deliveries",
        "DELETE FROM payment_status",
        "INSERT INTO analytics_daily (merchant_id) VALUES ('x')",
    ] {
        let error = sqlx::query(forbidden)
            .execute(&mut *conn)
            .await
            .unwrap_err();
        assert!(
            error.to_string().contains("permission denied"),
            "{forbidden}: {error}"
        );
    }
    sqlx::query("RESET ROLE").execute(&mut *conn).await.unwrap();
}

#[tokio::test]
async fn every_event_published_again_shuffled_changes_nothing() {
    let app = spawn_app().await;
    small_workload(&app).await;
    caught_up(&app).await;
    let before = snapshot(&app).await;

    let rows = sqlx::query(
        "SELECT global_position, aggregate_type, aggregate_id, sequence, event_type,
                event_version, payload, metadata, recorded_at FROM events",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    let mut bodies: Vec<(String, Vec<u8>)> = rows
        .iter()
        .map(|r| {
            let event = eventstore::PublishedEvent {
                global_position: r.get("global_position"),
                aggregate_type: r.get("aggregate_type"),
                aggregate_id: r.get("aggregate_id"),
                sequence: r.get("sequence"),
                event_type: r.get("event_type"),
                event_version: r.get("event_version"),
                payload: r.get("payload"),
                metadata: r.get("metadata"),
                recorded_at: r.get("recorded_at"),
            };
            (event.routing_key(), serde_json::to_vec(&event).unwrap())
        })
        .collect();
    // A fixed shuffle: reversed, then every other one moved to the back.
    bodies.reverse();
    let (even, odd): (Vec<_>, Vec<_>) = bodies
        .into_iter()
        .enumerate()
        .partition(|(i, _)| i % 2 == 0);
    let shuffled: Vec<_> = even.into_iter().chain(odd).map(|(_, b)| b).collect();

    let broker = Connection::connect(&app.settings.amqp_url, ConnectionProperties::default())
        .await
        .unwrap();
    let channel = broker.create_channel().await.unwrap();
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let exchange = format!("{}.events", app.settings.amqp_prefix);
    for (routing_key, body) in &shuffled {
        let confirm = channel
            .basic_publish(
                exchange.as_str().into(),
                routing_key.as_str().into(),
                BasicPublishOptions::default(),
                body,
                BasicProperties::default().with_delivery_mode(2),
            )
            .await
            .unwrap()
            .await
            .unwrap();
        assert!(confirm.is_ack());
    }
    // Let every consumer drain its queue: the redelivered messages are acked and skipped.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let health: Value = app
            .http
            .get(format!("{}/health", app.address))
            .bearer_auth(&app.admin_key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let drained = queues_empty(&app).await;
        if drained {
            // Ready counts exclude the (at most prefetch) messages a consumer holds unacked:
            // give those a moment — each duplicate takes about a millisecond to skip.
            tokio::time::sleep(Duration::from_millis(1_000)).await;
            assert!(
                health["projections"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|p| p["dead_lettered"] == 0),
                "{health}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "queues never drained");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(snapshot(&app).await, before);
}

/// Every projection queue is empty (passive declares report the depth).
async fn queues_empty(app: &TestApp) -> bool {
    let broker = Connection::connect(&app.settings.amqp_url, ConnectionProperties::default())
        .await
        .unwrap();
    let mut empty = true;
    for projection in projections::all() {
        let channel = broker.create_channel().await.unwrap();
        let queue = projections::topology::queue_name(&app.settings.amqp_prefix, projection.name());
        let declared = channel
            .queue_declare(
                queue.as_str().into(),
                lapin::options::QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                lapin::types::FieldTable::default(),
            )
            .await
            .unwrap();
        empty &= declared.message_count() == 0;
    }
    let _ = broker.close(200, "done".into()).await;
    empty
}

#[tokio::test]
async fn the_summary_adds_up_the_days_the_dashboard_draws() {
    let app = spawn_app().await;
    small_workload(&app).await;
    let other = app.key_for("merchant-b").await;
    let response = app
        .post(
            "/v1/payments",
            &other,
            Some("b-1"),
            &payment_body("100.00", "USD", "b-1", "tok_sandbox_approved", "automatic"),
        )
        .await;
    assert_eq!(response.status(), 201);
    let id = response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let deadline = Instant::now() + Duration::from_secs(10);
    while app
        .get(&format!("/v1/payments/{id}"), &other)
        .await
        .json::<Value>()
        .await
        .unwrap()["status"]
        != "APPROVED"
    {
        assert!(Instant::now() < deadline, "b-1 never approved");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    caught_up(&app).await;
    let analyst = create_key(&app.pool, Role::Analyst, None).await.unwrap();

    let summary: Value = app
        .get("/v1/analytics/summary?days=1", &analyst)
        .await
        .json()
        .await
        .unwrap();
    let today = chrono::Utc::now().date_naive().to_string();
    assert_eq!(summary["from"], today);
    assert_eq!(summary["to"], today);
    let day = &summary["days"][0];
    assert_eq!(day["day"], today);
    assert_eq!(day["initiated_count"], 4, "{summary}");
    assert_eq!(day["approved_count"], 3, "{summary}");
    assert_eq!(day["declined_count"], 1, "{summary}");
    assert_eq!(day["refunded_count"], 2, "{summary}");
    let decimal = |v: &Value| {
        v.as_str()
            .unwrap()
            .parse::<rust_decimal::Decimal>()
            .unwrap()
    };
    let volume = &summary["volume"][0];
    assert_eq!(volume["currency"], "USD");
    assert_eq!(decimal(&volume["approved_amount"]), "500".parse().unwrap());
    assert_eq!(decimal(&volume["refunded_amount"]), "100".parse().unwrap());
    // 2.90 % + 0.30 on each approval (config/fees.json): 6.10 + 6.10 + 3.20.
    assert_eq!(decimal(&volume["fee_amount"]), "15.40".parse().unwrap());
    assert_eq!(
        summary["success"],
        json!([{"provider": "sandbox", "payment_method_type": "CARD", "approved_count": 3,
                "decided_count": 4, "success_rate": "0.750000"}])
    );
    assert_eq!(
        summary["failure_reasons"],
        json!([{"reason": "card_declined", "count": 1}])
    );

    // A checkout key sees its own merchant's figures only.
    let own: Value = app
        .get("/v1/analytics/summary?days=1", &app.checkout_key)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(own["days"][0]["approved_count"], 2, "{own}");

    for bad in ["days=0", "days=93", "days=x", "other=1"] {
        let response = app
            .get(&format!("/v1/analytics/summary?{bad}"), &analyst)
            .await;
        assert!(
            response.status().is_client_error(),
            "{bad}: {}",
            response.status()
        );
    }
    let auditor = create_key(&app.pool, Role::Auditor, None).await.unwrap();
    assert_eq!(
        app.get("/v1/analytics/summary", &auditor).await.status(),
        403
    );
}
