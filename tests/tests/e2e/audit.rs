//! Auditors: the event stream in chain order (NDJSON, bounded memory), the payment as of any
//! moment, and `payledger audit verify` / `export`, which must catch and locate tampering done
//! directly in SQL — as an attacker with database access would, triggers disabled.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use api::auth::{create_key, Role};
use api::config::ServeRole;
use audit::chain::{self, ChainRecord, Digest};
use audit::cli;
use audit::{verify_database, Check, Report, VerifyOptions};
use chrono::{DateTime, SecondsFormat, Utc};
use e2e::{payment_body, spawn_app, spawn_app_with_role, TestApp};
use serde_json::{json, Value};
use sqlx::Row;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn key(app: &TestApp, role: Role) -> String {
    create_key(&app.pool, role, None).await.unwrap()
}

/// Payments of every shape: approved and partly refunded, authorized then captured, declined.
async fn workload(app: &TestApp, tag: &str, payments: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..payments {
        let (token, capture) = match i % 3 {
            0 => ("tok_sandbox_approved", "automatic"),
            1 => ("tok_sandbox_approved", "manual"),
            _ => ("tok_sandbox_declined", "automatic"),
        };
        let reference = format!("{tag}-{i}");
        let created = app
            .create_payment(
                &reference,
                &payment_body("100.00", "USD", &reference, token, capture),
            )
            .await;
        let id = created["id"].as_str().unwrap().to_owned();
        match i % 3 {
            0 => {
                app.wait_for_status(&id, "APPROVED").await;
                refund(app, &id, "25.00", "r1").await;
            }
            1 => {
                app.wait_for_status(&id, "AUTHORIZED").await;
                capture_payment(app, &id, "60.00").await;
            }
            _ => {
                app.wait_for_status(&id, "DECLINED").await;
            }
        }
        ids.push(id);
    }
    settle(app).await;
    ids
}

async fn refund(app: &TestApp, id: &str, amount: &str, key: &str) -> Value {
    let response = app
        .post(
            &format!("/v1/payments/{id}/refunds"),
            &app.checkout_key,
            Some(key),
            &json!({ "amount": amount }),
        )
        .await;
    assert_eq!(response.status(), 201);
    response.json().await.unwrap()
}

async fn capture_payment(app: &TestApp, id: &str, amount: &str) -> Value {
    let response = app
        .post(
            &format!("/v1/payments/{id}/capture"),
            &app.checkout_key,
            Some("c"),
            &json!({ "amount": amount }),
        )
        .await;
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "APPROVED", "{body}");
    body
}

/// Waits until the store is quiet, the relay has chained every event and every live
/// projection has applied every event.
async fn settle(app: &TestApp) {
    let all = projections::all();
    let names: Vec<&str> = all.iter().map(|p| p.name()).collect();
    let types: Vec<&str> = all.iter().map(|p| p.aggregate_type()).collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut previous = -1;
    loop {
        let row = sqlx::query(
            "SELECT (SELECT count(*) FROM events) AS events,
                    (SELECT count(*) FROM audit_chain) AS chained,
                    (SELECT count(*)
                       FROM (SELECT aggregate_type, aggregate_id, max(sequence) AS last
                               FROM events GROUP BY aggregate_type, aggregate_id) e
                       JOIN UNNEST($1::text[], $2::text[]) AS p(name, aggregate_type)
                         ON p.aggregate_type = e.aggregate_type
                       LEFT JOIN projection_offsets o
                              ON o.projection = p.name AND o.aggregate_id = e.aggregate_id
                      WHERE COALESCE(o.last_sequence, 0) < e.last) AS behind",
        )
        .bind(&names)
        .bind(&types)
        .fetch_one(&app.pool)
        .await
        .unwrap();
        let (events, chained, behind): (i64, i64, i64) =
            (row.get("events"), row.get("chained"), row.get("behind"));
        if events == chained && behind == 0 && events == previous {
            return;
        }
        previous = events;
        assert!(
            Instant::now() < deadline,
            "not settled: {events} events, {chained} chained, {behind} projection offsets behind"
        );
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

/// Runs `statements` as an attacker with SQL access would: user triggers (the append-only
/// guards) disabled around them.
async fn tamper(app: &TestApp, statements: &[&str]) {
    let mut tx = app.pool.begin().await.unwrap();
    for table in ["events", "audit_chain"] {
        sqlx::query(&format!("ALTER TABLE {table} DISABLE TRIGGER USER"))
            .execute(&mut *tx)
            .await
            .unwrap();
    }
    for statement in statements {
        sqlx::query(statement).execute(&mut *tx).await.unwrap();
    }
    for table in ["events", "audit_chain"] {
        sqlx::query(&format!("ALTER TABLE {table} ENABLE TRIGGER USER"))
            .execute(&mut *tx)
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
}

async fn verify(app: &TestApp, digest: Option<Digest>, projections: bool) -> Report {
    verify_database(
        &app.pool,
        &VerifyOptions {
            digest,
            projections,
            ..VerifyOptions::default()
        },
        &api::read_model::Projections,
    )
    .await
    .unwrap()
}

/// The chain position and global position of an aggregate's event.
async fn located(app: &TestApp, aggregate_id: &str, sequence: i64) -> (i64, i64) {
    let row = sqlx::query(
        "SELECT c.position, e.global_position FROM events e
           JOIN audit_chain c ON c.global_position = e.global_position
          WHERE e.aggregate_id = $1 AND e.sequence = $2",
    )
    .bind(aggregate_id)
    .bind(sequence)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    (row.get("position"), row.get("global_position"))
}

async fn head(app: &TestApp, key: &str) -> Value {
    let response = app.get("/v1/audit/head", key).await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// Runs `payledger audit <args>` as the binary does (same parser, same code); returns the
/// exit status and what it printed on stdout.
async fn payledger_audit(app: &TestApp, args: &[&str]) -> (u8, String) {
    let command = cli::parse(args).unwrap();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = cli::run(
        command,
        &app.settings.database_url,
        &api::read_model::Projections,
        &mut out,
        &mut err,
    )
    .await;
    let out = String::from_utf8(out).unwrap();
    if code == 2 {
        panic!(
            "payledger audit {args:?} could not run: {}",
            String::from_utf8_lossy(&err)
        );
    }
    (code, out)
}

fn first_failure(report: &Report) -> &audit::Finding {
    report
        .first_failure
        .as_ref()
        .unwrap_or_else(|| panic!("no failure reported: {}", report.summary()))
}

#[tokio::test]
async fn a_clean_workload_verifies_and_a_digest_taken_midway_still_holds_later() {
    let app = spawn_app().await;
    let auditor = key(&app, Role::Auditor).await;
    workload(&app, "clean", 6).await;

    let midway = head(&app, &auditor).await;
    let digest: Digest = midway["digest"].as_str().unwrap().parse().unwrap();
    assert_eq!(digest.position, app.event_count().await);
    let report = verify(&app, Some(digest), true).await;
    assert!(report.ok, "{}", report.summary());
    assert_eq!(report.exit_code(), 0, "{}", report.summary());
    assert_eq!(report.chain.head_digest, midway["digest"]);

    // More payments later, and a customer with a saved card (its events are chained and its
    // projection checked like the payments'): the digest noted midway still holds.
    workload(&app, "later", 6).await;
    let customer = e2e::customers::create_customer(&app, "audited", None).await;
    let (saved, body) = e2e::customers::save_method(
        &app,
        &customer,
        "audited-card",
        &json!({"type": "CARD", "token": "tok_sandbox_approved", "provider": "sandbox"}),
    )
    .await;
    assert_eq!(saved, 201, "{body}");
    settle(&app).await;
    let events = app.event_count().await;
    let report = verify(&app, Some(digest), true).await;
    assert!(report.ok, "{}", report.summary());
    assert_eq!(report.chain.records as i64, events);
    assert!(report.chain.head_position > digest.position);
    assert!(report.digest.as_ref().unwrap().ok);
    let completeness = report.completeness.as_ref().unwrap();
    assert_eq!(
        (completeness.events_total, completeness.chain_rows),
        (events, events)
    );
    assert_eq!(completeness.unchained, 0);
    assert_eq!(
        report.sequences.aggregates, 13,
        "twelve payments and a customer"
    );
    let checks = report.projections.as_ref().unwrap();
    assert_eq!(checks.len(), projections::all().len());
    for check in checks {
        assert_eq!(
            check.status,
            audit::report::ProjectionStatus::Match,
            "{check:?}"
        );
    }
    // Something was compared: the status table has a row per payment, the customers' one a
    // row for the customer.
    let status = checks.iter().find(|c| c.projection == "status").unwrap();
    assert_eq!(status.tables[0].live_rows, 12);
    let customers = checks.iter().find(|c| c.projection == "customers").unwrap();
    assert!(
        customers.tables.iter().any(|t| t.live_rows == 1),
        "{customers:?}"
    );

    // The same through the CLI: --json for machines, a summary for people, the head.
    let digest_arg = digest.to_string();
    let (code, out) = payledger_audit(&app, &["verify", "--digest", &digest_arg, "--json"]).await;
    assert_eq!(code, 0, "{out}");
    let json: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["ok"], true);
    assert_eq!(json["digest"]["ok"], true);
    assert_eq!(json["chain"]["records"], events);
    let (code, out) = payledger_audit(&app, &["verify", "--no-projections"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("VERIFIED"), "{out}");
    let (code, out) = payledger_audit(&app, &["head"]).await;
    assert_eq!(code, 0);
    assert_eq!(out.trim(), report.chain.head_digest);
    // --from recomputes only the tail, from the stored hash before it.
    let (code, out) = payledger_audit(
        &app,
        &[
            "verify",
            "--from",
            "10",
            "--digest",
            &digest_arg,
            "--json",
            "--no-projections",
        ],
    )
    .await;
    assert_eq!(code, 0, "{out}");
    let json: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["chain"]["records"], events - 9);
    // A digest that is not this chain's fails.
    let wrong = format!("{}:{}", digest.position, "0".repeat(64));
    let (code, out) = payledger_audit(&app, &["verify", "--digest", &wrong]).await;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!(
            "first failure: [digest] position {}",
            digest.position
        )),
        "{out}"
    );
}

#[tokio::test]
async fn the_audit_stream_is_ndjson_in_chain_order_for_auditors_only() {
    let app = spawn_app().await;
    let auditor = key(&app, Role::Auditor).await;
    let analyst = key(&app, Role::Analyst).await;
    workload(&app, "stream", 3).await;
    let events = app.event_count().await;

    let response = app.get("/v1/audit/events", &auditor).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "application/x-ndjson"
    );
    let head_header = response.headers()["x-audit-head"]
        .to_str()
        .unwrap()
        .to_owned();
    let text = response.text().await.unwrap();
    let records: Vec<ChainRecord> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len() as i64, events);
    // Recomputable by anyone from the lines alone.
    let mut previous = [0u8; 32];
    for (i, record) in records.iter().enumerate() {
        assert_eq!(record.position, i as i64 + 1);
        let event = record.event.as_ref().unwrap();
        assert_eq!(event.global_position, record.global_position);
        previous = e2e::independent::audit_chain_hash(&previous, event);
        assert_eq!(hex(&previous), record.chain_hash);
    }
    // Postgres renders the lines; they read back as exactly what the verifier reads.
    assert_eq!(
        records,
        chain::page(&app.pool, 0, i64::MAX, 1_000).await.unwrap()
    );
    let json_head = head(&app, &auditor).await;
    assert_eq!(json_head["position"], events);
    assert_eq!(json_head["chain_hash"], hex(&previous));
    assert_eq!(json_head["digest"], head_header);
    // Each line carries the whole event.
    let first: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    for field in [
        "aggregate_type",
        "aggregate_id",
        "sequence",
        "event_type",
        "event_version",
        "payload",
        "metadata",
        "recorded_at",
        "global_position",
    ] {
        assert!(!first["event"][field].is_null(), "{field} missing: {first}");
    }
    assert_eq!(first["event"]["event_type"], "PaymentInitiated");

    // Keyset paging: after + limit.
    let page: Vec<ChainRecord> = app
        .get("/v1/audit/events?after=2&limit=3", &auditor)
        .await
        .text()
        .await
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(page, records[2..5].to_vec());
    let tail = app
        .get(&format!("/v1/audit/events?after={events}"), &auditor)
        .await;
    assert_eq!(tail.status(), 200);
    assert_eq!(tail.text().await.unwrap(), "");

    // Admins may read it too; nobody else.
    assert_eq!(
        app.get("/v1/audit/events?limit=1", &app.admin_key)
            .await
            .status(),
        200
    );
    for key in [&app.checkout_key, &analyst] {
        assert_eq!(app.get("/v1/audit/events", key).await.status(), 403);
        assert_eq!(app.get("/v1/audit/head", key).await.status(), 403);
    }
    assert_eq!(app.get("/v1/audit/events", "nope").await.status(), 401);
    for bad in [
        "after=-1",
        "limit=0",
        "limit=x",
        "limit=99999999999",
        "cursor=1",
    ] {
        let response = app.get(&format!("/v1/audit/events?{bad}"), &auditor).await;
        assert_eq!(response.status(), 422, "{bad}");
    }
}

#[tokio::test]
async fn a_changed_event_payload_is_caught_and_located() {
    let app = spawn_app().await;
    let ids = workload(&app, "payload", 3).await;
    let id = &ids[0];
    let (position, global_position) = located(&app, id, 1).await;
    // The payment's amount, inflated in its PaymentInitiated.
    tamper(
        &app,
        &[&format!(
            "UPDATE events SET payload = replace(payload::text, '\"100.00\"', '\"1000.00\"')::json
              WHERE global_position = {global_position}"
        )],
    )
    .await;

    let report = verify(&app, None, true).await;
    assert!(!report.ok);
    let first = first_failure(&report);
    assert_eq!(first.check, Check::Chain, "{}", report.summary());
    assert_eq!(first.position, Some(position));
    assert_eq!(first.global_position, Some(global_position));
    assert_eq!(first.aggregate_id.as_deref(), Some(id.as_str()));
    assert_eq!(first.sequence, Some(1));
    assert_eq!(
        report.failures_of(Check::Chain).len(),
        1,
        "only the altered link: {}",
        report.summary()
    );
    // The live projections were built from the original: the rebuild differs, on that payment.
    let projection = report.failures_of(Check::Projection);
    assert!(
        projection
            .iter()
            .any(|f| f.aggregate_id.as_deref() == Some(id.as_str())),
        "{}",
        report.summary()
    );

    // The binary's verdict: exit 1, naming the position and the aggregate.
    let (code, out) = payledger_audit(&app, &["verify"]).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("FAILED"), "{out}");
    assert!(
        out.contains(&format!(
            "first failure: [chain] position {position}, global position {global_position}, aggregate {id}, sequence 1"
        )),
        "{out}"
    );
    let (code, out) = payledger_audit(&app, &["verify", "--json", "--no-projections"]).await;
    assert_eq!(code, 1);
    let json: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["first_failure"]["position"], position);
    assert_eq!(json["first_failure"]["aggregate_id"], id.as_str());
    assert_eq!(json["first_failure"]["check"], "chain");

    // A later event forged into something no projection can apply: still a located finding
    // (and a projection one), not a verifier that gives up.
    let (later, later_global) = located(&app, &ids[1], 3).await;
    tamper(
        &app,
        &[&format!(
            "UPDATE events SET payload = '{{\"Forged\": {{}}}}' WHERE global_position = {later_global}"
        )],
    )
    .await;
    let report = verify(&app, None, true).await;
    let chain_positions: Vec<Option<i64>> = report
        .failures_of(Check::Chain)
        .iter()
        .map(|f| f.position)
        .collect();
    assert_eq!(chain_positions, [Some(position), Some(later)]);
    assert!(report
        .projections
        .as_ref()
        .unwrap()
        .iter()
        .all(|p| p.status == audit::report::ProjectionStatus::Unbuildable));
    assert!(report
        .failures_of(Check::Projection)
        .iter()
        .any(|f| f.reason.contains("cannot be rebuilt")));
}

#[tokio::test]
async fn a_deleted_event_is_caught_and_located() {
    let app = spawn_app().await;
    let ids = workload(&app, "delete", 3).await;
    let id = &ids[0]; // approved then refunded: 5 events
    let (position, global_position) = located(&app, id, 2).await;
    tamper(
        &app,
        &[&format!(
            "DELETE FROM events WHERE global_position = {global_position}"
        )],
    )
    .await;

    let report = verify(&app, None, true).await;
    assert!(!report.ok);
    let first = first_failure(&report);
    assert_eq!(
        (first.check, first.position, first.sequence),
        (Check::Chain, Some(position), Some(2)),
        "{}",
        report.summary()
    );
    assert_eq!(first.aggregate_id.as_deref(), Some(id.as_str()));
    assert!(first.reason.contains("deleted"), "{}", first.reason);
    // The aggregate's sequences now have a hole, located at the event after it.
    let gaps = report.failures_of(Check::Sequence);
    assert_eq!(gaps.len(), 1, "{}", report.summary());
    assert_eq!(gaps[0].aggregate_id.as_deref(), Some(id.as_str()));
    assert_eq!(gaps[0].sequence, Some(3));
    assert!(gaps[0].reason.contains("sequences 2..2 are missing"));
    assert_eq!(report.exit_code(), 1);
}

#[tokio::test]
async fn swapped_events_are_caught_and_located_and_undoing_the_swap_verifies_again() {
    let app = spawn_app().await;
    let ids = workload(&app, "swap", 3).await;
    let id = &ids[0];
    let (second, _) = located(&app, id, 2).await;
    let (third, _) = located(&app, id, 3).await;
    let swap_sequences = format!(
        "UPDATE events SET sequence = 1000000 WHERE aggregate_id = '{id}' AND sequence = 2;
         UPDATE events SET sequence = 2 WHERE aggregate_id = '{id}' AND sequence = 3;
         UPDATE events SET sequence = 3 WHERE aggregate_id = '{id}' AND sequence = 1000000"
    );
    let statements: Vec<&str> = swap_sequences.split(';').collect();

    // Two events of one payment change places (their sequence numbers swapped).
    tamper(&app, &statements).await;
    let report = verify(&app, None, false).await;
    let first = first_failure(&report);
    assert_eq!(
        (first.check, first.position),
        (Check::Chain, Some(second.min(third))),
        "{}",
        report.summary()
    );
    assert_eq!(first.aggregate_id.as_deref(), Some(id.as_str()));
    assert!(first.reason.contains("reordered"), "{}", first.reason);
    tamper(&app, &statements).await; // swapped back
    let report = verify(&app, None, true).await;
    assert!(report.ok, "{}", report.summary());

    // Two chain rows exchange the events they point at.
    let (a, ga) = located(&app, &ids[1], 2).await;
    let (b, gb) = located(&app, &ids[2], 2).await;
    let swap_rows = format!(
        "UPDATE audit_chain SET global_position = -1 WHERE position = {a};
         UPDATE audit_chain SET global_position = {ga} WHERE position = {b};
         UPDATE audit_chain SET global_position = {gb} WHERE position = {a}"
    );
    let statements: Vec<&str> = swap_rows.split(';').collect();
    tamper(&app, &statements).await;
    let report = verify(&app, None, false).await;
    let first = first_failure(&report);
    assert_eq!(
        (first.check, first.position),
        (Check::Chain, Some(a.min(b))),
        "{}",
        report.summary()
    );
    let located_at: Vec<Option<i64>> = report
        .failures_of(Check::Chain)
        .iter()
        .map(|f| f.position)
        .collect();
    assert!(
        located_at.contains(&Some(a)) && located_at.contains(&Some(b)),
        "{}",
        report.summary()
    );
    let undo = format!(
        "UPDATE audit_chain SET global_position = -1 WHERE position = {a};
         UPDATE audit_chain SET global_position = {gb} WHERE position = {b};
         UPDATE audit_chain SET global_position = {ga} WHERE position = {a}"
    );
    let statements: Vec<&str> = undo.split(';').collect();
    tamper(&app, &statements).await;
    assert!(verify(&app, None, false).await.ok);
}

#[tokio::test]
async fn a_chain_rewritten_to_match_a_changed_payload_is_caught_only_by_the_earlier_digest() {
    let app = spawn_app().await;
    let auditor = key(&app, Role::Auditor).await;
    let ids = workload(&app, "rewrite", 3).await;
    let digest: Digest = head(&app, &auditor).await["digest"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    workload(&app, "after", 3).await;

    // Before the digest: the capture of the manual payment, doubled.
    let (position, global_position) = located(&app, &ids[1], 6).await;
    assert!(position <= digest.position);
    let event_type: String =
        sqlx::query_scalar("SELECT event_type FROM events WHERE global_position = $1")
            .bind(global_position)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(event_type, "PaymentApproved");
    let mut statements = vec![format!(
        "UPDATE events SET payload = replace(payload::text, '\"60.00\"', '\"100.00\"')::json
          WHERE global_position = {global_position}"
    )];
    // The attacker recomputes every hash from there to the head with the published algorithm
    // and rewrites them, and the relay's checkpoint too.
    tamper(
        &app,
        &statements.iter().map(String::as_str).collect::<Vec<_>>(),
    )
    .await;
    let mut previous = chain::hash_at(&app.pool, position - 1)
        .await
        .unwrap()
        .unwrap();
    let tail = chain::page(&app.pool, position - 1, i64::MAX, 1_000_000)
        .await
        .unwrap();
    statements.clear();
    for record in &tail {
        previous = e2e::independent::audit_chain_hash(&previous, record.event.as_ref().unwrap());
        statements.push(format!(
            "UPDATE audit_chain SET chain_hash = '\\x{}' WHERE position = {}",
            hex(&previous),
            record.position
        ));
    }
    statements.push(format!(
        "UPDATE relay_checkpoint SET last_chain_hash = '\\x{}'",
        hex(&previous)
    ));
    tamper(
        &app,
        &statements.iter().map(String::as_str).collect::<Vec<_>>(),
    )
    .await;

    // Without the digest the chain is consistent with itself: the chain check passes.
    let report = verify(&app, None, false).await;
    assert!(report.ok, "{}", report.summary());
    // With the digest noted earlier it fails, at the digest's position.
    let report = verify(&app, Some(digest), false).await;
    assert!(!report.ok);
    let first = first_failure(&report);
    assert_eq!(
        (first.check, first.position),
        (Check::Digest, Some(digest.position)),
        "{}",
        report.summary()
    );
    assert!(!report.digest.as_ref().unwrap().ok);
    assert!(report.failures_of(Check::Chain).is_empty());
    let (code, out) = payledger_audit(
        &app,
        &[
            "verify",
            "--digest",
            &digest.to_string(),
            "--no-projections",
        ],
    )
    .await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("DOES NOT MATCH"), "{out}");
    // (The projections, built from the original events, disagree with the rebuild too.)
    let report = verify(&app, None, true).await;
    assert!(
        report
            .failures_of(Check::Projection)
            .iter()
            .any(|f| f.aggregate_id.as_deref() == Some(ids[1].as_str())),
        "{}",
        report.summary()
    );
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

#[tokio::test]
async fn as_of_rebuilds_the_payment_from_its_events_at_any_moment() {
    let app = spawn_app().await;
    let auditor = key(&app, Role::Auditor).await;
    let analyst = key(&app, Role::Analyst).await;
    let other_merchant = app.key_for("merchant-b").await;
    let created = app
        .create_payment(
            "asof",
            &payment_body("100.00", "USD", "asof", "tok_sandbox_approved", "manual"),
        )
        .await;
    let id = created["id"].as_str().unwrap().to_owned();
    app.wait_for_status(&id, "AUTHORIZED").await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    capture_payment(&app, &id, "60.00").await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    let refunded = refund(&app, &id, "25.00", "r").await;
    let version = refunded["payment"]["version"].as_i64().unwrap();
    settle(&app).await;

    let events = sqlx::query(
        "SELECT sequence, event_type, recorded_at FROM events WHERE aggregate_id = $1
          ORDER BY sequence",
    )
    .bind(&id)
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(events.len() as i64, version);
    let at = |t: DateTime<Utc>, key: &str| {
        let path = format!("/v1/payments/{id}?as_of={}", rfc3339(t));
        let key = key.to_owned();
        let app = &app;
        async move {
            let response = app.get(&path, &key).await;
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap())
        }
    };

    // Before its first event it did not exist.
    let first_at: DateTime<Utc> = events[0].get("recorded_at");
    let (status, _) = at(first_at - chrono::Duration::microseconds(1), &auditor).await;
    assert_eq!(status, 404);

    // At each event's time, and between it and the next: the state those events made.
    for (i, event) in events.iter().enumerate() {
        let recorded: DateTime<Utc> = event.get("recorded_at");
        let folded = events
            .iter()
            .filter(|e| e.get::<DateTime<Utc>, _>("recorded_at") <= recorded)
            .count() as i64;
        let last_type: String = events[folded as usize - 1].get("event_type");
        let (expected_status, authorized, captured, refunded) = match last_type.as_str() {
            "PaymentInitiated" | "ProviderAttemptStarted" | "ProviderTransactionCreated" => {
                ("PENDING", "0.00", "0.00", "0.00")
            }
            "PaymentAuthorized" | "CaptureRequested" => ("AUTHORIZED", "100.00", "0.00", "0.00"),
            "PaymentApproved" | "RefundRequested" => ("APPROVED", "100.00", "60.00", "0.00"),
            "PaymentRefunded" => ("PARTIALLY_REFUNDED", "100.00", "60.00", "25.00"),
            other => panic!("unexpected event {other}"),
        };
        let mut moments = vec![recorded];
        if let Some(next) = events.get(i + 1) {
            let next: DateTime<Utc> = next.get("recorded_at");
            if next - recorded > chrono::Duration::microseconds(1) {
                moments.push(recorded + (next - recorded) / 2);
            }
        }
        for moment in moments {
            let (status, body) = at(moment, &auditor).await;
            assert_eq!(status, 200, "{body}");
            assert_eq!(body["version"], folded, "at {moment}: {body}");
            assert_eq!(body["status"], expected_status, "at {moment}: {body}");
            assert_eq!(body["authorized_amount"], authorized, "{body}");
            assert_eq!(body["captured_amount"], captured, "{body}");
            assert_eq!(body["refunded_amount"], refunded, "{body}");
            assert_eq!(body["amount"], "100.00");
        }
    }

    // Now (and any time after) equals the status projection, field for field.
    let projected = app.read_at_least(&id, version).await;
    let now = Utc::now();
    for key in [&auditor, &app.admin_key, &app.checkout_key] {
        let (status, body) = at(now, key).await;
        assert_eq!(status, 200);
        assert_eq!(body, projected);
    }
    let (_, later) = at(now + chrono::Duration::days(365), &auditor).await;
    assert_eq!(later, projected);

    // Another merchant's key cannot tell it exists; analysts may not; bad input is refused.
    assert_eq!(at(now, &other_merchant).await.0, 404);
    assert_eq!(at(now, &analyst).await.0, 403);
    for bad in ["yesterday", "2026-13-01T00:00:00Z", "2026-01-01"] {
        let response = app
            .get(&format!("/v1/payments/{id}?as_of={bad}"), &auditor)
            .await;
        assert_eq!(response.status(), 422, "{bad}");
    }
    let response = app
        .get(
            &format!("/v1/payments/{id}?as_of={}&min_version=1", rfc3339(now)),
            &auditor,
        )
        .await;
    assert_eq!(response.status(), 400);
    let unknown = uuid::Uuid::new_v4();
    let response = app
        .get(
            &format!("/v1/payments/{unknown}?as_of={}", rfc3339(now)),
            &auditor,
        )
        .await;
    assert_eq!(response.status(), 404);
    // Without as_of an auditor still has no business in the payments API.
    assert_eq!(
        app.get(&format!("/v1/payments/{id}"), &auditor)
            .await
            .status(),
        403
    );
}

fn temp_file(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("payledger-audit-{}-{name}", uuid::Uuid::new_v4()))
}

#[tokio::test]
async fn an_export_verifies_offline_and_a_tampered_export_does_not() {
    let app = spawn_app().await;
    let auditor = key(&app, Role::Auditor).await;
    workload(&app, "export", 3).await;
    let head = head(&app, &auditor).await;
    let digest = head["digest"].as_str().unwrap().to_owned();

    let path = temp_file("export.ndjson");
    let path_text = path.to_str().unwrap();
    let (code, out) = payledger_audit(&app, &["export", "--to", path_text]).await;
    assert_eq!(code, 0);
    let summary: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(summary["head_digest"], digest);
    assert!(!PathBuf::from(format!("{path_text}.partial")).exists());

    // Offline: no database needed (a URL that leads nowhere).
    let offline = |args: Vec<String>| async move {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let command = cli::parse(&args).unwrap();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = cli::run(
            command,
            "postgres://nobody@127.0.0.1:1/none",
            &api::read_model::Projections,
            &mut out,
            &mut err,
        )
        .await;
        (
            code,
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    };
    let args = |file: &str, extra: &[&str]| {
        let mut v: Vec<String> = vec!["verify".into(), "--file".into(), file.into()];
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let (code, out, err) = offline(args(path_text, &["--digest", &digest, "--json"])).await;
    assert_eq!(code, 0, "{out}{err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["ok"], true);
    assert_eq!(report["chain"]["head_digest"], digest);
    assert_eq!(report["digest"]["ok"], true);
    assert_eq!(report["sequences"]["aggregates"], 3);
    let (code, out, _) = offline(args(path_text, &[])).await;
    assert_eq!(code, 0);
    assert!(out.contains("VERIFIED"), "{out}");

    let lines: Vec<String> = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(lines.len() as i64, head["position"].as_i64().unwrap());
    let write = |name: &str, lines: &[String]| {
        let p = temp_file(name);
        std::fs::write(&p, lines.join("\n") + "\n").unwrap();
        p
    };

    // A payload changed in the file: caught at its line.
    let target = lines
        .iter()
        .position(|l| l.contains("\"PaymentApproved\""))
        .unwrap();
    let mut altered = lines.clone();
    let mut record: ChainRecord = serde_json::from_str(&altered[target]).unwrap();
    let event = record.event.as_mut().unwrap();
    let amount = &mut event.payload["PaymentApproved"]["amount"]["amount"];
    assert_eq!(amount, "100.00");
    *amount = json!("1.00");
    let aggregate = event.aggregate_id.clone();
    altered[target] = serde_json::to_string(&record).unwrap();
    let altered_path = write("altered.ndjson", &altered);
    let report = audit::file::verify_file(&altered_path, None).unwrap();
    let first = first_failure(&report);
    assert_eq!(
        (first.check, first.position),
        (Check::Chain, Some(target as i64 + 1)),
        "{}",
        report.summary()
    );
    assert_eq!(first.aggregate_id.as_deref(), Some(aggregate.as_str()));
    let (code, out, _) = offline(args(altered_path.to_str().unwrap(), &[])).await;
    assert_eq!(code, 1);
    assert!(
        out.contains(&format!("first failure: [chain] position {}", target + 1)),
        "{out}"
    );

    // A line removed: caught where it was.
    let mut shortened = lines.clone();
    let removed: ChainRecord = serde_json::from_str(&shortened.remove(3)).unwrap();
    let shortened_path = write("shortened.ndjson", &shortened);
    let report = audit::file::verify_file(&shortened_path, None).unwrap();
    let first = first_failure(&report);
    assert_eq!(
        (first.check, first.position),
        (Check::Chain, Some(4)),
        "{}",
        report.summary()
    );
    assert!(report
        .failures_of(Check::Sequence)
        .iter()
        .any(|f| f.aggregate_id.as_deref() == Some(removed.aggregate_id.as_str())));

    // The tail cut off: only the digest can tell.
    let cut_path = write("cut.ndjson", &lines[..lines.len() - 2]);
    let report = audit::file::verify_file(&cut_path, None).unwrap();
    assert!(report.ok);
    let report = audit::file::verify_file(&cut_path, Some(digest.parse().unwrap())).unwrap();
    assert_eq!(first_failure(&report).check, Check::Digest);

    // Garbage instead of a line.
    let mut garbled = lines.clone();
    garbled[1] = "{not json".into();
    let report = audit::file::verify_file(&write("garbled.ndjson", &garbled), None).unwrap();
    assert_eq!(first_failure(&report).position, Some(2));
    // --from makes no sense for a file.
    let (code, _, err) = offline(args(path_text, &["--from", "2"])).await;
    assert_eq!(code, 2, "{err}");

    for p in [path, altered_path, shortened_path, cut_path] {
        let _ = std::fs::remove_file(p);
    }
}

const BULK_EVENTS: i64 = 200_000;
/// Each bulk payment: initiated, two provider attempts failed, failed.
const BULK_EVENTS_PER_PAYMENT: i64 = 4;
/// Chain rows computed and written per round trip while preparing the bulk store.
const BULK_PAGE: i64 = 5_000;
/// Allowed growth of the process's resident memory while the whole stream goes through.
const RSS_GROWTH_MAX_KIB: u64 = 50 * 1024;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .expect("VmRSS in /proc/self/status")
}

/// 200,000 events inserted with one SQL statement — 50,000 payments, each initiated, tried at
/// two providers that failed, then failed: valid payloads built from the domain's own events —
/// and chained here with `audit::link::chain_hash` in the relay's order, as the relay would
/// (the relay would also publish each one to RabbitMQ: minutes of work this test is not about).
async fn bulk_store(app: &TestApp) {
    let at = Utc::now();
    let events = [
        domain::PaymentEvent::PaymentInitiated {
            payment_id: domain::PaymentId::from_uuid(uuid::Uuid::nil()),
            merchant_id: domain::MerchantId::parse(e2e::MERCHANT).unwrap(),
            reference: domain::Reference::parse("bulk").unwrap(),
            amount: domain::Money::parse("129000.00", domain::Currency::COP).unwrap(),
            payment_method: domain::PaymentMethodType::Card,
            capture_mode: domain::CaptureMode::Automatic,
            provider: "sandbox".into(),
            request_fingerprint: "0".repeat(64),
            at,
        },
        domain::PaymentEvent::ProviderAttemptFailed {
            provider: "sandbox".into(),
            kind: domain::ProviderFailureKind::Timeout,
            detail: "no answer within the attempt timeout".into(),
            at,
            attempt_id: None,
        },
        domain::PaymentEvent::ProviderAttemptFailed {
            provider: "wompi".into(),
            kind: domain::ProviderFailureKind::Connection,
            detail: "connection refused".into(),
            at,
            attempt_id: None,
        },
        domain::PaymentEvent::PaymentFailed {
            reason: "every provider that could take this payment is unavailable".into(),
            at,
        },
    ];
    let names: Vec<&str> = events.iter().map(|e| e.name()).collect();
    let payloads: Vec<Value> = events
        .iter()
        .map(|e| serde_json::to_value(e).unwrap())
        .collect();
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version,
                             payload, metadata)
         SELECT 'Payment', id, k, $1[k],  '1.0',
                CASE k WHEN 1 THEN
                    jsonb_set(jsonb_set($2[1], '{PaymentInitiated,payment_id}', to_jsonb(id)),
                              '{PaymentInitiated,reference}', to_jsonb('bulk-' || g))::json
                ELSE $2[k]::json END,
                '{\"source\":\"bulk\"}'::json
           FROM (SELECT g, md5('bulk-' || g)::uuid::text AS id
                   FROM generate_series(1, $3::bigint) g) p,
                generate_series(1, 4) k
          ORDER BY g, k",
    )
    .bind(&names)
    .bind(&payloads)
    .bind(BULK_EVENTS / BULK_EVENTS_PER_PAYMENT)
    .execute(&app.pool)
    .await
    .unwrap();

    let mut previous = [0u8; 32];
    let (mut after, mut position) = (0_i64, 0_i64);
    loop {
        let rows = sqlx::query(
            "SELECT global_position, aggregate_type, aggregate_id, sequence, event_type,
                    event_version, payload, metadata, recorded_at
               FROM events WHERE global_position > $1 ORDER BY global_position LIMIT $2",
        )
        .bind(after)
        .bind(BULK_PAGE)
        .fetch_all(&app.pool)
        .await
        .unwrap();
        let Some(last) = rows.last() else { break };
        after = last.get("global_position");
        let (mut positions, mut globals, mut aggregates, mut sequences, mut hashes) =
            (vec![], vec![], vec![], vec![], vec![]);
        for row in &rows {
            let event = eventstore::published::from_row(row).unwrap();
            if position == 0 {
                // What was stored is what the domain reads.
                serde_json::from_value::<domain::PaymentEvent>(event.payload.clone()).unwrap();
            }
            previous = e2e::independent::audit_chain_hash(&previous, &event);
            position += 1;
            positions.push(position);
            globals.push(event.global_position);
            aggregates.push(event.aggregate_id);
            sequences.push(event.sequence);
            hashes.push(previous.to_vec());
        }
        sqlx::query(
            "INSERT INTO audit_chain (position, global_position, aggregate_id, sequence, chain_hash)
             SELECT * FROM UNNEST($1::bigint[], $2::bigint[], $3::text[], $4::bigint[], $5::bytea[])",
        )
        .bind(&positions)
        .bind(&globals)
        .bind(&aggregates)
        .bind(&sequences)
        .bind(&hashes)
        .execute(&app.pool)
        .await
        .unwrap();
    }
    sqlx::query(
        "UPDATE relay_checkpoint
            SET last_transaction_id = (SELECT max(transaction_id) FROM events),
                last_global_position = $1, published_total = $2,
                last_audit_position = $2, last_chain_hash = $3",
    )
    .bind(after)
    .bind(position)
    .bind(previous.to_vec())
    .execute(&app.pool)
    .await
    .unwrap();
    assert_eq!(position, BULK_EVENTS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn streaming_200k_events_keeps_the_server_memory_flat() {
    let started = Instant::now();
    // The API alone: no relay or projectors in this process to muddy the measurement.
    let app = spawn_app_with_role(ServeRole::Api).await;
    let auditor = key(&app, Role::Auditor).await;
    bulk_store(&app).await;
    let prepared = started.elapsed();

    // Warm up (connections, buffers, the first pages), then take the baseline.
    let warm = app.get("/v1/audit/events?limit=5000", &auditor).await;
    assert_eq!(warm.text().await.unwrap().lines().count(), 5000);
    let baseline = rss_kib();
    let peak = Arc::new(AtomicU64::new(baseline));
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, stop) = (peak.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(rss_kib(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };

    let streaming = Instant::now();
    // No overall timeout (the harness client has one): only the stream's own pace counts.
    let mut response = reqwest::Client::new()
        .get(format!("{}/v1/audit/events", app.address))
        .bearer_auth(&auditor)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let head: Digest = response.headers()["x-audit-head"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(head.position, BULK_EVENTS);
    // The client keeps one line at a time: it checks positions rise by one and reads the last
    // line whole (the chain itself is recomputed from the lines in the test above).
    let (mut carry, mut lines, mut bytes) = (Vec::<u8>::new(), 0_i64, 0_u64);
    let mut last_line = Vec::new();
    while let Some(chunk) = response.chunk().await.unwrap() {
        bytes += chunk.len() as u64;
        carry.extend_from_slice(&chunk);
        let mut start = 0;
        while let Some(end) = carry[start..].iter().position(|b| *b == b'\n') {
            let line = &carry[start..start + end];
            let position: i64 = line
                .strip_prefix(b"{\"position\":")
                .and_then(|rest| {
                    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
                    std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()
                })
                .expect("a line starts with its position");
            lines += 1;
            assert_eq!(position, lines, "positions rise by one");
            if position == head.position {
                last_line = line.to_vec();
            }
            start += end + 1;
        }
        carry.drain(..start);
    }
    let streamed = streaming.elapsed();
    stop.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    let peak = peak.load(Ordering::Relaxed);
    let growth = peak.saturating_sub(baseline);
    println!(
        "streamed {lines} events ({:.1} MiB of NDJSON) in {:.1} s; RSS baseline {} MiB, peak {} MiB, growth {:.1} MiB (store prepared in {:.1} s)",
        bytes as f64 / 1_048_576.0,
        streamed.as_secs_f64(),
        baseline / 1024,
        peak / 1024,
        growth as f64 / 1024.0,
        prepared.as_secs_f64()
    );

    assert!(carry.is_empty(), "the stream ended mid-line");
    assert_eq!(lines, BULK_EVENTS);
    let last: ChainRecord = serde_json::from_slice(&last_line).unwrap();
    assert_eq!(
        (last.position, last.chain_hash.as_str()),
        (head.position, hex(&head.hash).as_str())
    );
    // Holding the body (or the result set) would blow far past the bound.
    assert!(
        bytes > 2 * RSS_GROWTH_MAX_KIB * 1024,
        "the stream is too small to prove anything: {bytes} bytes"
    );
    assert!(
        growth < RSS_GROWTH_MAX_KIB,
        "resident memory grew by {growth} KiB while streaming (bound {RSS_GROWTH_MAX_KIB} KiB)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_projection_is_inconclusive_and_a_tampered_one_is_a_mismatch() {
    use commands::relay::{self, RelayConfig};
    use projections::consumer::{self, ConsumerConfig};

    // The relay runs; the projectors do not, yet: the live projections lag.
    let app = spawn_app_with_role(ServeRole::Api).await;
    let settings = app.settings.clone();
    let (_stop, stop_rx) = tokio::sync::watch::channel(false);
    let consumer_config =
        ConsumerConfig::new(settings.amqp_url.clone(), settings.amqp_prefix.clone());
    for projection in projections::all() {
        consumer::declare_topology(&consumer_config, projection.as_ref())
            .await
            .unwrap();
    }
    tokio::spawn(relay::run(
        app.pool.clone(),
        RelayConfig::new(settings.amqp_url.clone(), settings.amqp_prefix.clone()),
        stop_rx.clone(),
    ));
    let mut ids = Vec::new();
    for i in 0..2 {
        let reference = format!("lag-{i}");
        let body = payment_body(
            "100.00",
            "USD",
            &reference,
            "tok_sandbox_approved",
            "automatic",
        );
        let created = app.create_payment(&reference, &body).await;
        ids.push(created["id"].as_str().unwrap().to_owned());
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut approved = 0;
        for id in &ids {
            approved += app
                .event_types(id)
                .await
                .contains(&"PaymentApproved".into()) as usize;
        }
        let chained: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_chain")
            .fetch_one(&app.pool)
            .await
            .unwrap();
        if approved == ids.len() && chained == app.event_count().await {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the relay did not chain the events"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let options = VerifyOptions {
        projection_wait: Duration::from_millis(300),
        ..VerifyOptions::default()
    };
    let report = verify_database(&app.pool, &options, &api::read_model::Projections)
        .await
        .unwrap();
    assert!(report.ok, "lag is not tampering: {}", report.summary());
    assert!(report.inconclusive);
    assert_eq!(report.exit_code(), 3);
    for check in report.projections.as_ref().unwrap() {
        // No customer has an event: the customers projection has nothing to lag behind.
        if check.projection == projections::customers::NAME {
            assert_eq!(
                check.status,
                audit::report::ProjectionStatus::Match,
                "{check:?}"
            );
            continue;
        }
        assert_eq!(
            check.status,
            audit::report::ProjectionStatus::Lagging,
            "{check:?}"
        );
        assert!(check.aggregates_behind > 0);
    }
    assert!(report.summary().contains("INCONCLUSIVE"));

    // The projectors catch up: everything matches.
    for projection in projections::all() {
        tokio::spawn(consumer::run(
            app.pool.clone(),
            projection,
            consumer_config.clone(),
            stop_rx.clone(),
        ));
    }
    settle(&app).await;
    let report = verify(&app, None, true).await;
    assert!(report.ok && !report.inconclusive, "{}", report.summary());

    // A live projection row edited in SQL: a mismatch, on that payment.
    sqlx::query("UPDATE payment_status SET captured_amount = 1 WHERE payment_id = $1::uuid")
        .bind(&ids[1])
        .execute(&app.pool)
        .await
        .unwrap();
    let report = verify(&app, None, true).await;
    assert_eq!(report.exit_code(), 1);
    let first = first_failure(&report);
    assert_eq!(first.check, Check::Projection, "{}", report.summary());
    assert_eq!(first.aggregate_id.as_deref(), Some(ids[1].as_str()));
    assert!(first.reason.contains("payment_status"), "{}", first.reason);
    let status = report
        .projections
        .as_ref()
        .unwrap()
        .iter()
        .find(|c| c.projection == "status")
        .unwrap();
    assert_eq!(status.status, audit::report::ProjectionStatus::Mismatch);
    assert_eq!(
        (status.tables[0].only_live, status.tables[0].only_rebuilt),
        (1, 1)
    );
}
