//! `payledger replay`: rebuilding every projection from the event store alone, into a
//! scratch schema, gives exactly the live tables, row for row.

use e2e::customers::{create_customer, remove_method, save_method, set_default};
use e2e::{payment_body, spawn_app, TestApp};
use serde_json::json;

async fn workload(app: &TestApp) -> i64 {
    let mut last_versions = Vec::new();
    for i in 0..12 {
        let token = match i % 4 {
            0 | 1 => "tok_sandbox_approved",
            2 => "tok_sandbox_declined",
            _ => "tok_sandbox_error",
        };
        let capture = if i % 3 == 0 { "manual" } else { "automatic" };
        let created = app
            .create_payment(
                &format!("rp-{i}"),
                &payment_body("100.00", "USD", &format!("rp-{i}"), token, capture),
            )
            .await;
        let id = created["id"].as_str().unwrap().to_owned();
        let mut version = created["version"].as_i64().unwrap();
        if token == "tok_sandbox_approved" {
            let status = if capture == "manual" {
                "AUTHORIZED"
            } else {
                "APPROVED"
            };
            app.wait_for_status(&id, status).await;
            if capture == "manual" {
                let captured: serde_json::Value = app
                    .post(
                        &format!("/v1/payments/{id}/capture"),
                        &app.checkout_key,
                        Some("c"),
                        &json!({"amount": "60.00"}),
                    )
                    .await
                    .json()
                    .await
                    .unwrap();
                assert_eq!(captured["status"], "APPROVED", "{captured}");
            }
            let refunded: serde_json::Value = app
                .post(
                    &format!("/v1/payments/{id}/refunds"),
                    &app.checkout_key,
                    Some("r"),
                    &json!({"amount": "25.00"}),
                )
                .await
                .json()
                .await
                .unwrap();
            version = refunded["payment"]["version"].as_i64().unwrap();
        }
        last_versions.push((id, version));
    }
    for (id, version) in &last_versions {
        app.read_at_least(id, *version).await;
    }
    customers(app).await;
    app.event_count().await
}

/// Two customers with saved cards, a default changed and a card removed.
async fn customers(app: &TestApp) {
    let card = json!({"type": "CARD", "token": "tok_sandbox_approved", "provider": "sandbox"});
    for reference in ["rc-1", "rc-2"] {
        let id = create_customer(app, reference, None).await;
        let mut saved = Vec::new();
        for key in ["s-1", "s-2"] {
            let (status, method) = save_method(app, &id, key, &card).await;
            assert_eq!(status, 201, "{method}");
            saved.push(method["id"].as_str().unwrap().to_owned());
        }
        assert_eq!(set_default(app, &id, &saved[1]).await, 200);
        if reference == "rc-2" {
            assert_eq!(remove_method(app, &id, &saved[0]).await, 204);
        }
    }
}

async fn differing_rows(app: &TestApp, table: &str, schema: &str) -> i64 {
    sqlx::query_scalar(&format!(
        "SELECT count(*) FROM ((SELECT * FROM public.{table} EXCEPT ALL SELECT * FROM {schema}.{table})
                               UNION ALL
                               (SELECT * FROM {schema}.{table} EXCEPT ALL SELECT * FROM public.{table})) d"
    ))
    .fetch_one(&app.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn replay_into_a_scratch_schema_equals_the_live_projections_row_for_row() {
    let app = spawn_app().await;
    let events = workload(&app).await;
    let all = projections::all();
    e2e::support::projections_caught_up(&app).await;

    let report = projections::replay::replay(&app.pool, &all, "scratch", 7)
        .await
        .unwrap();
    assert_eq!(report.events as i64, events);

    for projection in &all {
        for table in projection.tables() {
            let live: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM public.{table}"))
                .fetch_one(&app.pool)
                .await
                .unwrap();
            assert!(live > 0, "{table} is empty: nothing was compared");
            assert_eq!(
                differing_rows(&app, table, "scratch").await,
                0,
                "{table} differs"
            );
        }
    }
    // Only the read models' offsets: the merchant webhook dispatcher keeps its own there too.
    let names: Vec<&str> = all.iter().map(|p| p.name()).collect();
    let offsets_differ: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT projection, aggregate_id, last_sequence FROM public.projection_offsets
                                WHERE projection = ANY($1)
                               EXCEPT SELECT projection, aggregate_id, last_sequence FROM scratch.projection_offsets) d",
    )
    .bind(&names)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(offsets_differ, 0);
    // The scratch copies have every index of the live tables (secondary ones are built after
    // the rows are in), column for column.
    let tables: Vec<&str> = all
        .iter()
        .flat_map(|p| p.tables().iter().copied())
        .chain(["projection_offsets", "projection_progress"])
        .collect();
    let mut indexes = Vec::new();
    for schema in ["public", "scratch"] {
        let columns: Vec<String> = sqlx::query_scalar(
            "SELECT c.relname || ':' || regexp_replace(pg_get_indexdef(i.indexrelid), '^.* USING ', '')
               FROM pg_index i
               JOIN pg_class c ON c.oid = i.indrelid
               JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname = $1 AND c.relname = ANY($2)
              ORDER BY 1",
        )
        .bind(schema)
        .bind(&tables)
        .fetch_all(&app.pool)
        .await
        .unwrap();
        indexes.push(columns);
    }
    assert!(indexes[0]
        .iter()
        .any(|i| i.starts_with("journal_entries:btree (account")));
    assert_eq!(indexes[1], indexes[0]);
    // Rebuilding again into the same scratch schema starts from empty, not on top.
    let again = projections::replay::replay(&app.pool, &all, "scratch", 1000)
        .await
        .unwrap();
    assert_eq!(again.events as i64, events);
    assert_eq!(differing_rows(&app, "payment_status", "scratch").await, 0);
    // A schema name that is not a plain identifier is refused.
    assert!(
        projections::replay::replay(&app.pool, &all, "x; DROP TABLE events", 10)
            .await
            .is_err()
    );
    // A schema replay did not make keeps its tables, whatever its name.
    sqlx::query("CREATE SCHEMA reporting")
        .execute(&app.pool)
        .await
        .unwrap();
    sqlx::query("CREATE TABLE reporting.payment_status (kept text)")
        .execute(&app.pool)
        .await
        .unwrap();
    let refused = projections::replay::replay(&app.pool, &all, "reporting", 10).await;
    assert!(
        matches!(
            refused,
            Err(projections::replay::ReplayError::ForeignSchema(_))
        ),
        "{refused:?}"
    );
    let kept: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.columns
          WHERE table_schema = 'reporting' AND table_name = 'payment_status' AND column_name = 'kept'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(kept, 1, "the foreign table is untouched");
}

#[tokio::test]
async fn replay_stops_at_an_event_whose_payload_does_not_decode_and_names_it() {
    let app = spawn_app().await;
    let id = uuid::Uuid::new_v4().to_string();
    // Written around the API, as a broken writer could: the store keeps it (events are
    // only ever appended), and a rebuild must refuse it rather than skip it silently.
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version,
                             payload, metadata)
         VALUES ('Payment', $1, 1, 'PaymentInitiated', '1.0', '{\"NoSuchEvent\": {}}', '{}')",
    )
    .bind(&id)
    .execute(&app.pool)
    .await
    .unwrap();

    let error = projections::replay::replay(&app.pool, &projections::all(), "scratch", 100)
        .await
        .unwrap_err();
    match error {
        projections::replay::ReplayError::Projection(projections::ProjectionError::Poison {
            message_id,
            reason,
        }) => {
            assert_eq!(message_id, format!("{id}/1"));
            assert!(reason.contains("does not decode"), "{reason}");
        }
        other => panic!("expected a poison event, got {other:?}"),
    }
}
