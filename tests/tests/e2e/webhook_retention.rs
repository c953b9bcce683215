//! The webhook log keeps what an operator needs: a delivery that did not verify keeps its
//! digest, size and first bytes; a verified one its body until the retention job erases it,
//! and the job deletes old rows. The database refuses both before their floors, to anyone.

use std::time::Duration;

use commands::webhook_deliveries::{apply_retention, UNVERIFIED_PREFIX_BYTES};
use e2e::independent::sha256;
use e2e::spawn_app;

const DAY: Duration = Duration::from_secs(86_400);

#[tokio::test]
async fn an_unverified_body_is_kept_as_a_digest_and_a_prefix() {
    let app = spawn_app().await;
    let body = vec![b'x'; 10 * 1024];
    let response = app
        .http
        .post(format!("{}/v1/webhooks/sandbox", app.address))
        .header("Content-Type", "application/json")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let (payload, digest, bytes): (Vec<u8>, Vec<u8>, i32) = sqlx::query_as(
        "SELECT payload, payload_sha256, payload_bytes FROM webhook_deliveries
          WHERE NOT signature_valid ORDER BY id DESC LIMIT 1",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(payload, body[..UNVERIFIED_PREFIX_BYTES]);
    assert_eq!(
        digest,
        sha256(&body),
        "the digest of the whole body, computed independently"
    );
    assert_eq!(bytes, 10 * 1024);
}

async fn delivery(app: &e2e::TestApp, days_old: i64, valid: bool) -> i64 {
    sqlx::query_scalar(
        "INSERT INTO webhook_deliveries (provider, received_at, signature_valid, result, payload,
                                         payload_sha256, payload_bytes)
         VALUES ('sandbox', now() - make_interval(days => $1), $2, 'recorded',
                 '{\"email\":\"buyer@example.com\"}', sha256('x'), 31)
         RETURNING id",
    )
    .bind(days_old as i32)
    .bind(valid)
    .fetch_one(&app.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn retention_erases_old_bodies_deletes_old_rows_and_nothing_sooner() {
    let app = spawn_app().await;
    let (ancient, old, recent, fresh) = (
        delivery(&app, 200, true).await,
        delivery(&app, 40, true).await,
        delivery(&app, 3, true).await,
        delivery(&app, 0, true).await,
    );
    let mut batches = 0;
    let report = apply_retention(&app.pool, 30 * DAY, 180 * DAY, |_| batches += 1)
        .await
        .unwrap();
    assert_eq!(
        (report.bodies_erased, report.rows_deleted),
        (2, 1),
        "{report:?}"
    );
    assert!(batches >= 1);
    type Row = (i64, Option<Vec<u8>>, bool, Option<Vec<u8>>);
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT id, payload, erased_at IS NOT NULL, payload_sha256 FROM webhook_deliveries
          WHERE id = ANY($1) ORDER BY id",
    )
    .bind(vec![ancient, old, recent, fresh])
    .fetch_all(&app.pool)
    .await
    .unwrap();
    let ids: Vec<i64> = rows.iter().map(|r| r.0).collect();
    assert_eq!(ids, [old, recent, fresh], "the 200-day-old row is gone");
    assert_eq!(
        (rows[0].1.is_none(), rows[0].2),
        (true, true),
        "40 days: body erased"
    );
    assert!(rows[0].3.is_some(), "its digest stays");
    assert!(
        rows[1].1.is_some() && rows[2].1.is_some(),
        "younger bodies stay"
    );

    // Before the floors, the database refuses even the owner.
    for (case, statement) in [
        (
            "delete a fresh row",
            "DELETE FROM webhook_deliveries WHERE id = $1",
        ),
        (
            "erase a fresh body",
            "UPDATE webhook_deliveries SET payload = NULL, erased_at = now() WHERE id = $1",
        ),
        (
            "change an old row otherwise",
            "UPDATE webhook_deliveries SET result = 'refused' WHERE id = $1",
        ),
    ] {
        let id = if case.contains("old") { old } else { fresh };
        let error = sqlx::query(statement)
            .bind(id)
            .execute(&app.pool)
            .await
            .expect_err(case);
        let code = error
            .as_database_error()
            .and_then(|e| e.code())
            .map(|c| c.to_string());
        assert_eq!(code.as_deref(), Some("42501"), "{case}: {error}");
    }
}

/// The retention job's role erases old bodies and deletes old rows, and may do nothing else:
/// not log a delivery, not change a verdict, not touch a young row, not read the stream.
#[tokio::test]
async fn the_retention_role_may_only_erase_and_delete_past_the_floors() {
    let app = spawn_app().await;
    let (ancient, old, fresh) = (
        delivery(&app, 200, true).await,
        delivery(&app, 40, true).await,
        delivery(&app, 0, true).await,
    );
    let mut tx = app.pool.begin().await.unwrap();
    sqlx::query("SET LOCAL ROLE payledger_retention")
        .execute(&mut *tx)
        .await
        .unwrap();
    let erased = sqlx::query(
        "UPDATE webhook_deliveries SET payload = NULL, erased_at = now() WHERE id = $1",
    )
    .bind(old)
    .execute(&mut *tx)
    .await
    .expect("an old body is erased");
    assert_eq!(erased.rows_affected(), 1);
    let deleted = sqlx::query("DELETE FROM webhook_deliveries WHERE id = $1")
        .bind(ancient)
        .execute(&mut *tx)
        .await
        .expect("an old row is deleted");
    assert_eq!(deleted.rows_affected(), 1);
    for (case, statement) in [
        (
            "log a delivery",
            "INSERT INTO webhook_deliveries (provider, signature_valid, result) VALUES ('sandbox', true, 'recorded')",
        ),
        (
            "change a verdict",
            "UPDATE webhook_deliveries SET result = 'refused' WHERE id = $1",
        ),
        (
            "delete a young row",
            "DELETE FROM webhook_deliveries WHERE id = $1",
        ),
        ("read the stream", "SELECT count(*) FROM events WHERE $1 > 0"),
    ] {
        sqlx::query("SAVEPOINT attempt")
            .execute(&mut *tx)
            .await
            .unwrap();
        let id = if case == "change a verdict" { old } else { fresh };
        let mut query = sqlx::query(statement);
        if statement.contains("$1") {
            query = query.bind(id);
        }
        let error = query.execute(&mut *tx).await.expect_err(case);
        let code = error
            .as_database_error()
            .and_then(|e| e.code())
            .map(|c| c.to_string());
        assert_eq!(code.as_deref(), Some("42501"), "{case}: {error}");
        sqlx::query("ROLLBACK TO SAVEPOINT attempt")
            .execute(&mut *tx)
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
}

#[tokio::test]
async fn the_retention_command_reports_and_refuses_periods_below_the_floors() {
    let app = spawn_app().await;
    delivery(&app, 40, true).await;
    let run = |args: &[&str]| {
        std::process::Command::new(e2e::process::binary())
            .arg("retention")
            .args(args)
            .env("DATABASE_URL", &app.settings.database_url)
            .output()
            .expect("payledger retention runs")
    };
    let done = run(&["--erase-after", "30d", "--delete-after", "180d"]);
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&done.stdout).unwrap();
    assert_eq!(report["bodies_erased"], 1, "{report}");
    for too_soon in [["--erase-after", "1h"], ["--delete-after", "2d"]] {
        assert!(!run(&too_soon).status.success(), "{too_soon:?}");
    }
}
