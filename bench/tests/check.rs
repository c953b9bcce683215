//! `payledger-bench check` against a real payledger (API, relay, projectors and the sandbox in
//! process, its own database and broker names): payments driven by `payledger-bench run
//! --ack-log`, then the checker, as binaries. A clean run passes every check; each kind of
//! damage afterwards makes exactly the check about it fail, with what it found.
//!
//! Needs DATABASE_URL, AMQP_URL and the release binary (`cargo build --release -p api --bin
//! payledger`, or PAYLEDGER_BIN), which the checker spawns for `replay` and `audit verify`.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use e2e::{payment_body, spawn_app, TestApp};
use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, ExchangeDeleteOptions, QueueDeleteOptions,
};
use lapin::{BasicProperties, Connection, ConnectionProperties};
use serde_json::{json, Value};
use tokio::process::Command;

const PAYMENTS: u64 = 12;

/// A payledger with a finished load on it, and the files of the run.
struct Drill {
    app: TestApp,
    dir: PathBuf,
    acks: PathBuf,
    run: Value,
}

/// What one `check` said.
struct Checked {
    exit: i32,
    report: Value,
}

impl Checked {
    fn check(&self, name: &str) -> &Value {
        self.report["checks"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["name"] == name))
            .unwrap_or_else(|| panic!("no check {name} in {}", self.report))
    }

    fn status(&self, name: &str) -> String {
        self.check(name)["status"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    fn count(&self, name: &str, count: &str) -> i64 {
        self.check(name)["counts"][count].as_i64().unwrap_or(-1)
    }

    fn examples(&self, name: &str) -> String {
        self.check(name)["examples"].to_string()
    }

    /// Every check but `except` passed.
    fn others_pass(&self, except: &[&str]) {
        for check in self.report["checks"].as_array().unwrap() {
            let name = check["name"].as_str().unwrap();
            if !except.contains(&name) {
                assert_eq!(check["status"], "pass", "{name}: {check}");
            }
        }
    }
}

impl Drill {
    /// A fresh payledger and a finished `payledger-bench run` on it: every flow, every
    /// command acknowledged in the ack log.
    async fn start() -> Drill {
        let app = spawn_app().await;
        let dir = std::env::temp_dir().join(format!("chaos-check-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let acks = dir.join("acks.ndjson");
        let run_json = dir.join("run.json");
        let output = Command::new(env!("CARGO_BIN_EXE_payledger-bench"))
            .args(["run", "--url", &app.address, "--key", &app.checkout_key])
            .args(["--operator-key", &app.admin_key])
            .args(["--payments", &PAYMENTS.to_string(), "--concurrency", "3"])
            .args(["--duration", "60", "--drain-timeout", "30"])
            .args(["--mix", "approved=1,declined=1,manual=1,refund=1"])
            .arg("--ack-log")
            .arg(&acks)
            .arg("--json")
            .arg(&run_json)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .unwrap();
        assert!(
            output.status.success(),
            "payledger-bench run: {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let run: Value = serde_json::from_slice(&std::fs::read(&run_json).unwrap()).unwrap();
        Drill {
            app,
            dir,
            acks,
            run,
        }
    }

    /// The ack log's lines.
    fn ack_lines(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.acks)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Runs the checker over this drill's payledger; `replaced` flags (pairs of flag and
    /// value) take the place of the defaults.
    async fn check(&self, replaced: &[&str]) -> Checked {
        let settings = &self.app.settings;
        let report = self.dir.join("check.json");
        let _ = std::fs::remove_file(&report);
        let acks = self.acks.display().to_string();
        let binary = e2e::process::binary().display().to_string();
        let defaults = [
            ("--database-url", settings.database_url.as_str()),
            ("--amqp-url", &settings.amqp_url),
            ("--amqp-prefix", &settings.amqp_prefix),
            ("--ack-log", &acks),
            ("--payledger", &binary),
            ("--drain-timeout-s", "20"),
            ("--step-timeout-s", "120"),
            ("--scratch-schema", "chaos_check_test"),
        ];
        let mut args = vec!["check"];
        for (flag, value) in defaults {
            if !replaced.contains(&flag) {
                args.extend([flag, value]);
            }
        }
        args.extend(replaced);
        let output = Command::new(env!("CARGO_BIN_EXE_payledger-bench"))
            .args(&args)
            .arg("--json")
            .arg(&report)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .unwrap();
        let report: Value = serde_json::from_slice(&std::fs::read(&report).unwrap_or_else(|e| {
            panic!(
                "no report ({e}): {}",
                String::from_utf8_lossy(&output.stderr)
            )
        }))
        .unwrap();
        let exit = output.status.code().unwrap_or(-1);
        assert_eq!(
            i64::from(exit),
            report["exit_status"].as_i64().unwrap(),
            "{report}"
        );
        Checked { exit, report }
    }

    /// The checker passes on the untouched run: what every test below starts from.
    async fn passes(&self) -> Checked {
        let checked = self.check(&[]).await;
        assert_eq!(checked.exit, 0, "{}", checked.report);
        checked.others_pass(&[]);
        checked
    }

    async fn sql(&self, statement: &str) -> u64 {
        sqlx::query(statement)
            .execute(&self.app.pool)
            .await
            .unwrap()
            .rows_affected()
    }

    /// Some payment the run made whose flow ended `status`.
    async fn payment(&self, status: &str) -> String {
        sqlx::query_scalar(
            "SELECT payment_id::text FROM payment_status WHERE status = $1 ORDER BY payment_id LIMIT 1",
        )
        .bind(status)
        .fetch_one(&self.app.pool)
        .await
        .unwrap()
    }

    async fn broker(&self) -> Connection {
        Connection::connect(&self.app.settings.amqp_url, ConnectionProperties::default())
            .await
            .unwrap()
    }

    /// Drops what the drill made: the broker's queues and exchanges of its prefix, its database,
    /// its files.
    async fn clean_up(self) {
        let Drill { app, dir, .. } = self;
        let prefix = app.settings.amqp_prefix.clone();
        let database_url = app.settings.database_url.clone();
        let amqp_url = app.settings.amqp_url.clone();
        app.pool.close().await;
        drop(app);
        if let Ok(broker) = Connection::connect(&amqp_url, ConnectionProperties::default()).await {
            if let Ok(channel) = broker.create_channel().await {
                for name in ["status", "analytics", "failures", "ledger"] {
                    for queue in [
                        format!("{prefix}.{name}"),
                        format!("{prefix}.{name}.dead-letter"),
                    ] {
                        let _ = channel
                            .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                            .await;
                    }
                }
                for exchange in [format!("{prefix}.events"), format!("{prefix}.dead-letter")] {
                    let _ = channel
                        .exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
                        .await;
                }
            }
        }
        if let Some((server, name)) = database_url.rsplit_once('/') {
            if let Ok(mut admin) =
                <sqlx::PgConnection as sqlx::Connection>::connect(&format!("{server}/postgres"))
                    .await
            {
                let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut admin)
                    .await;
            }
        }
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_run_passes_every_check_and_its_ack_log_holds_every_command() {
    let drill = Drill::start().await;
    let lines = drill.ack_lines();
    let ok: Vec<&Value> = lines.iter().filter(|l| l["outcome"] == "ok").collect();
    // One acknowledged line per client command the run counted, each naming its payment.
    assert_eq!(
        ok.len() as i64,
        drill.run["commands_total"].as_i64().unwrap()
    );
    assert!(ok.iter().all(|l| l["payment_id"].is_string()
        && l["idempotency_key"].is_string()
        && (200..300).contains(&l["status"].as_i64().unwrap())));
    let count = |command: &str| ok.iter().filter(|l| l["command"] == command).count() as u64;
    assert_eq!(count("create"), PAYMENTS);
    assert_eq!(count("capture"), PAYMENTS / 4);
    assert_eq!(count("refund"), PAYMENTS / 4);
    assert!(ok
        .iter()
        .filter(|l| l["command"] == "refund")
        .all(|l| l["refund_id"].is_string()));
    let created: Vec<&str> = ok
        .iter()
        .filter(|l| l["command"] == "create")
        .map(|l| l["payment_id"].as_str().unwrap())
        .collect();
    let stored: i64 =
        sqlx::query_scalar("SELECT count(*) FROM payment_status WHERE payment_id::text = ANY($1)")
            .bind(&created)
            .fetch_one(&drill.app.pool)
            .await
            .unwrap();
    assert_eq!(stored as u64, PAYMENTS);

    let checked = drill.passes().await;
    assert_eq!(
        checked.count("acks_in_store", "acknowledged"),
        ok.len() as i64
    );
    assert_eq!(checked.count("acks_in_store", "missing"), 0);
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&drill.app.pool)
        .await
        .unwrap();
    assert_eq!(
        checked.count("projections_match_rebuild", "events_replayed"),
        events
    );
    assert!(checked.count("ledger_balanced", "journal_lines") > 0);
    // The scratch schema is gone afterwards.
    let schemas: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_namespace WHERE nspname = 'chaos_check_test'")
            .fetch_one(&drill.app.pool)
            .await
            .unwrap();
    assert_eq!(schemas, 0);
    drill.clean_up().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_commands_missing_from_the_store_fail_the_ack_check() {
    let drill = Drill::start().await;
    drill.passes().await;
    let approved = drill.payment("APPROVED").await;
    // A create, a capture and a refund the server would have acknowledged and never stored.
    let mut log = std::fs::OpenOptions::new()
        .append(true)
        .open(&drill.acks)
        .unwrap();
    let never_created = uuid::Uuid::new_v4().to_string();
    let forged = [
        json!({"t_ms": 1, "at_ms": 1, "latency_ms": 1, "command": "create",
               "payment_id": never_created, "idempotency_key": "forged-create",
               "attempt": 1, "outcome": "ok", "status": 201}),
        json!({"t_ms": 1, "at_ms": 1, "latency_ms": 1, "command": "capture",
               "payment_id": approved, "idempotency_key": "forged-capture",
               "attempt": 1, "outcome": "ok", "status": 201}),
        json!({"t_ms": 1, "at_ms": 1, "latency_ms": 1, "command": "refund",
               "payment_id": approved, "refund_id": uuid::Uuid::new_v4().to_string(),
               "idempotency_key": "forged-refund", "attempt": 1, "outcome": "ok",
               "status": 201}),
        // Not acknowledged: nothing is promised, nothing is looked for.
        json!({"t_ms": 1, "at_ms": 1, "latency_ms": 1, "command": "create",
               "payment_id": null, "idempotency_key": "timed-out", "attempt": 1,
               "outcome": "error", "status": null, "error_kind": "timeout"}),
    ];
    for line in &forged {
        use std::io::Write;
        writeln!(log, "{line}").unwrap();
    }
    drop(log);

    let checked = drill.check(&[]).await;
    assert_eq!(checked.exit, 1, "{}", checked.report);
    assert_eq!(checked.status("acks_in_store"), "fail");
    assert_eq!(checked.count("acks_in_store", "missing"), 3);
    for command in ["create", "capture", "refund"] {
        assert_eq!(
            checked.count("acks_in_store", &format!("missing.{command}")),
            1
        );
    }
    assert_eq!(checked.count("acks_in_store", "failed_tries"), 1);
    let examples = checked.examples("acks_in_store");
    assert!(examples.contains(&never_created), "{examples}");
    assert!(examples.contains("forged-capture"), "{examples}");
    checked.others_pass(&["acks_in_store"]);
    drill.clean_up().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_status_row_lost_from_the_projection_fails_the_comparison_with_the_rebuild() {
    let drill = Drill::start().await;
    drill.passes().await;
    let lost = drill.payment("PARTIALLY_REFUNDED").await;
    let deleted = drill
        .sql(&format!(
            "DELETE FROM payment_status WHERE payment_id = '{lost}'"
        ))
        .await;
    assert_eq!(deleted, 1);

    let checked = drill.check(&[]).await;
    assert_eq!(checked.exit, 1, "{}", checked.report);
    let name = "projections_match_rebuild";
    assert_eq!(checked.status(name), "fail");
    assert_eq!(checked.count(name, "payment_status.only_rebuilt"), 1);
    assert_eq!(checked.count(name, "payment_status.only_live"), 0);
    let examples = checked.examples(name);
    assert!(examples.contains(&lost), "{examples}");
    checked.others_pass(&[name]);
    drill.clean_up().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_line_posted_twice_fails_the_ledger_balance() {
    let drill = Drill::start().await;
    drill.passes().await;
    // The same line again under the next line number of its entry, as a projection that
    // applied an event twice would post it.
    let inserted = drill
        .sql(
            "INSERT INTO journal_entries (global_position, line, payment_id, sequence, event_type,
                                          posting, merchant_id, account, currency, debit, credit, at)
             SELECT j.global_position, m.line + 1, j.payment_id, j.sequence, j.event_type,
                    j.posting, j.merchant_id, j.account, j.currency, j.debit, j.credit, j.at
               FROM journal_entries j
               JOIN (SELECT global_position, max(line) AS line FROM journal_entries
                      GROUP BY global_position) m USING (global_position)
              WHERE j.posting = 'refund' AND j.debit > 0
              LIMIT 1",
        )
        .await;
    assert_eq!(inserted, 1);

    let checked = drill.check(&[]).await;
    assert_eq!(checked.exit, 1, "{}", checked.report);
    assert_eq!(checked.status("ledger_balanced"), "fail");
    assert_eq!(checked.count("ledger_balanced", "unbalanced_entries"), 1);
    assert_eq!(checked.count("ledger_balanced", "unbalanced_currencies"), 1);
    assert_eq!(checked.count("ledger_balanced", "balances_off_journal"), 1);
    // The projection also no longer equals its rebuild: one journal line only live.
    let name = "projections_match_rebuild";
    assert_eq!(checked.status(name), "fail");
    assert_eq!(checked.count(name, "journal_entries.only_live"), 1);
    checked.others_pass(&["ledger_balanced", name]);
    drill.clean_up().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_lettered_message_fails_the_dead_letter_check() {
    let drill = Drill::start().await;
    drill.passes().await;
    let queue = format!("{}.ledger.dead-letter", drill.app.settings.amqp_prefix);
    let broker = drill.broker().await;
    let channel = broker.create_channel().await.unwrap();
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let confirm = channel
        .basic_publish(
            "".into(),
            queue.as_str().into(),
            BasicPublishOptions::default(),
            b"{\"poison\": true}",
            BasicProperties::default().with_delivery_mode(2),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(confirm.is_ack());

    let checked = drill.check(&[]).await;
    assert_eq!(checked.exit, 1, "{}", checked.report);
    assert_eq!(checked.status("no_dead_letters"), "fail");
    assert_eq!(checked.count("no_dead_letters", &queue), 1);
    checked.others_pass(&["no_dead_letters"]);

    // Pointed at a prefix payledger never ran with, it cannot check, and says so.
    let wrong = drill.check(&["--amqp-prefix", "no.such.prefix"]).await;
    assert_eq!(wrong.exit, 2, "{}", wrong.report);
    assert_eq!(wrong.status("no_dead_letters"), "error");
    drill.clean_up().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_left_without_its_providers_outcome_fails_once_past_the_horizon() {
    let drill = Drill::start().await;
    drill.passes().await;
    // The sandbox takes the charge and never sends the webhook: the payment stays PENDING
    // until the resolver asks (not for 15 minutes in this app).
    let silent = drill
        .app
        .create_payment(
            "silent-1",
            &payment_body(
                "10.00",
                "USD",
                "silent-1",
                "tok_sandbox_approved_silent",
                "automatic",
            ),
        )
        .await;
    let id = silent["id"].as_str().unwrap().to_owned();
    drill.app.wait_for_status(&id, "PENDING").await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Younger than the horizon: open, not stale.
    let young = drill.check(&["--intent-horizon-s", "60"]).await;
    assert_eq!(young.exit, 0, "{}", young.report);
    assert_eq!(young.count("no_stale_intents", "open"), 1);

    let checked = drill.check(&["--intent-horizon-s", "1"]).await;
    assert_eq!(checked.exit, 1, "{}", checked.report);
    assert_eq!(checked.status("no_stale_intents"), "fail");
    assert_eq!(checked.count("no_stale_intents", "stale"), 1);
    let examples = checked.examples("no_stale_intents");
    assert!(examples.contains(&id), "{examples}");
    checked.others_pass(&["no_stale_intents"]);
    drill.clean_up().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rewritten_audit_chain_fails_audit_verify() {
    let drill = Drill::start().await;
    drill.passes().await;
    // An attacker with SQL access rewrites one stored hash (the append-only guard off).
    let mut tx = drill.app.pool.begin().await.unwrap();
    for statement in [
        "ALTER TABLE audit_chain DISABLE TRIGGER USER",
        "UPDATE audit_chain SET chain_hash = sha256(chain_hash) WHERE position = 3",
        "ALTER TABLE audit_chain ENABLE TRIGGER USER",
    ] {
        sqlx::query(statement).execute(&mut *tx).await.unwrap();
    }
    tx.commit().await.unwrap();

    let checked = drill.check(&[]).await;
    assert_eq!(checked.exit, 1, "{}", checked.report);
    assert_eq!(checked.status("audit_verify"), "fail");
    assert!(checked.count("audit_verify", "failures") >= 1);
    assert_eq!(checked.count("audit_verify", "exit_status"), 1);
    checked.others_pass(&["audit_verify"]);
    drill.clean_up().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projection_short_of_the_head_fails_caught_up_and_is_not_compared() {
    let drill = Drill::start().await;
    drill.passes().await;
    // The analytics projection's progress stops three events short of the head (as if its
    // consumer had died with them unapplied): no new event comes to move it on.
    let moved = drill
        .sql(
            "UPDATE projection_progress SET last_global_position = last_global_position - 3
              WHERE projection = 'analytics'",
        )
        .await;
    assert_eq!(moved, 1);

    let behind: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE global_position >
                (SELECT last_global_position FROM projection_progress WHERE projection = 'analytics')",
    )
    .fetch_one(&drill.app.pool)
    .await
    .unwrap();
    assert!(behind > 0);

    let checked = drill.check(&["--drain-timeout-s", "2"]).await;
    assert_eq!(checked.exit, 1, "{}", checked.report);
    assert_eq!(checked.status("caught_up"), "fail");
    assert_eq!(
        checked.count("caught_up", "analytics.events_behind"),
        behind
    );
    assert_eq!(checked.count("caught_up", "status.events_behind"), 0);
    assert_eq!(checked.status("projections_match_rebuild"), "skipped");
    checked.others_pass(&["caught_up", "projections_match_rebuild"]);
    drill.clean_up().await;
}
