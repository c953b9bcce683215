//! `payledger-bench replay`: makes sure the event store holds at least N events, then times
//! `payledger replay --projection all --into <schema>` (the real binary, spawned) and checks
//! the rebuilt status projection against the event store.
//!
//! Events are generated one of two ways (`--via`):
//! - `api`: whole payment lifecycles through the running payledger's API (as `run` does,
//!   without verification), until the store holds N events. Real, but ~1-2k events/s here.
//! - `clone`: copies of the payment streams already in the store (made through the API by
//!   an earlier `run`), each copy under a new payment id (the id is also replaced inside the
//!   payload and metadata), appended in the original global order, one INSERT ... SELECT per
//!   copy. Same event types, shapes and mix as real traffic, but written straight into
//!   `events`: stop payledger first (or its relay publishes the copies to the live
//!   projections as well).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;

use crate::run::{self, Mix, RunConfig};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Via {
    Api,
    Clone,
}

#[derive(Debug, Clone)]
pub struct ReplayConfig {
    pub database_url: String,
    pub events: u64,
    pub via: Via,
    pub payledger: PathBuf,
    pub into: String,
    pub url: Option<String>,
    pub key: Option<String>,
    pub operator_key: Option<String>,
    pub concurrency: usize,
    pub generate_timeout: Duration,
    pub replay_timeout: Duration,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReplayCheck {
    pub payments_in_store: i64,
    pub missing_in_rebuilt_status: i64,
    pub version_mismatches: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReplayReport {
    pub via: Via,
    pub events_before: i64,
    pub events_generated: i64,
    pub events_in_store: i64,
    pub generate_s: f64,
    pub schema: String,
    /// payledger's own JSON report (`events`, `elapsed_ms`, `events_per_s`, ...).
    pub payledger_report: Value,
    /// What payledger measured itself: events / elapsed inside the replay.
    pub events_per_s: f64,
    /// Wall time of the whole `payledger replay` process (start-up and migrations included).
    pub wall_s: f64,
    pub wall_events_per_s: f64,
    pub check: ReplayCheck,
}

async fn count_events(pool: &PgPool) -> Result<i64, String> {
    eventstore::feed::count(pool)
        .await
        .map_err(|e| format!("counting events: {e}"))
}

async fn generate_by_clone(pool: &PgPool, missing: i64, deadline: Instant) -> Result<(), String> {
    let (source_rows, last_position) = eventstore::feed::extent(pool)
        .await
        .map_err(|e| format!("reading the store: {e}"))?;
    let Some(last_position) = last_position.filter(|_| source_rows > 0) else {
        return Err("the event store is empty: run `payledger-bench run` first (clone copies real streams), or use --via api".into());
    };
    let copies = (missing + source_rows - 1) / source_rows;
    let tag = format!("{:x}", std::process::id() as u64 ^ last_position as u64);
    for copy in 0..copies {
        if Instant::now() >= deadline {
            return Err(format!(
                "generation timed out after {copy} of {copies} copies"
            ));
        }
        eventstore::bulk::clone_streams(pool, &format!("bench-clone-{tag}-{copy}"), last_position)
            .await
            .map_err(|e| format!("cloning streams (copy {copy}): {e}"))?;
    }
    Ok(())
}

async fn generate_by_api(
    config: &ReplayConfig,
    pool: &PgPool,
    target: i64,
    deadline: Instant,
) -> Result<(), String> {
    let (Some(url), Some(key)) = (&config.url, &config.key) else {
        return Err("--via api needs --url and --key".into());
    };
    for _round in 0..5 {
        let have = count_events(pool).await?;
        if have >= target {
            return Ok(());
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left < Duration::from_secs(1) {
            return Err(format!(
                "generation timed out with {have} of {target} events"
            ));
        }
        // ~4.3 events per payment with the default mix (the attempt's intent included); a
        // little over is fine.
        let payments = ((target - have) as f64 / 4.3).ceil() as u64 + config.concurrency as u64;
        let report = run::run(RunConfig {
            url: url.clone(),
            key: key.clone(),
            operator_key: config.operator_key.clone(),
            payments: payments.min(1_000_000),
            concurrency: config.concurrency,
            duration: left,
            mix: "approved=70,declined=10,manual=10,refund=10"
                .parse::<Mix>()
                .expect("default mix"),
            rate: None,
            label: "replay-generate".into(),
            request_timeout: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(0),
            health_interval: Duration::from_secs(5),
            verify: false,
            lag_sample: 0.0,
            ack_log: None,
        })
        .await?;
        if report.errors_total > 0 {
            eprintln!(
                "payledger-bench replay: {} errors while generating: {:?}",
                report.errors_total, report.errors
            );
        }
    }
    let have = count_events(pool).await?;
    if have >= target {
        Ok(())
    } else {
        Err(format!("generated only {have} of {target} events"))
    }
}

async fn spawn_replay(config: &ReplayConfig) -> Result<(Value, f64), String> {
    let started = Instant::now();
    let child = tokio::process::Command::new(&config.payledger)
        .args(["replay", "--projection", "all", "--into", &config.into])
        .env("DATABASE_URL", &config.database_url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("spawning {}: {e}", config.payledger.display()))?;
    let output = tokio::time::timeout(config.replay_timeout, child.wait_with_output())
        .await
        .map_err(|_| {
            format!(
                "payledger replay did not finish within {:?} (killed)",
                config.replay_timeout
            )
        })?
        .map_err(|e| format!("payledger replay: {e}"))?;
    let wall = started.elapsed().as_secs_f64();
    if !output.status.success() {
        return Err(format!(
            "payledger replay failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str::<Value>(l.trim()).ok())
        .ok_or_else(|| format!("payledger replay printed no JSON report: {stdout}"))?;
    Ok((report, wall))
}

async fn check(pool: &PgPool, schema: &str) -> Result<ReplayCheck, String> {
    if !schema
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        return Err("--into must be [a-z0-9_]".into());
    }
    let (payments, missing, wrong): (i64, i64, i64) = sqlx::query_as(&format!(
        "SELECT count(*),
                count(*) FILTER (WHERE s.payment_id IS NULL),
                count(*) FILTER (WHERE s.version <> e.last_sequence)
           FROM ({}) e
           LEFT JOIN {schema}.payment_status s ON s.payment_id::text = e.aggregate_id",
        eventstore::feed::LAST_PAYMENT_SEQUENCES
    ))
    .fetch_one(pool)
    .await
    .map_err(|e| format!("checking the rebuilt status projection: {e}"))?;
    Ok(ReplayCheck {
        payments_in_store: payments,
        missing_in_rebuilt_status: missing,
        version_mismatches: wrong,
    })
}

pub async fn replay(config: ReplayConfig) -> Result<ReplayReport, String> {
    if config.events == 0 || config.events > 50_000_000 {
        return Err("--events must be 1 to 50000000".into());
    }
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(10))
        .connect(&config.database_url)
        .await
        .map_err(|e| format!("connecting to the database: {e}"))?;
    let before = count_events(&pool).await?;
    let target = config.events as i64;
    let started = Instant::now();
    let deadline = started + config.generate_timeout;
    if before < target {
        match config.via {
            Via::Clone => generate_by_clone(&pool, target - before, deadline).await?,
            Via::Api => generate_by_api(&config, &pool, target, deadline).await?,
        }
    }
    let generate_s = started.elapsed().as_secs_f64();
    let in_store = count_events(&pool).await?;
    // Settle the freshly written rows (hint bits, visibility map) the way a store that has
    // been live for a while is; otherwise the replay's first read pays for it.
    sqlx::raw_sql("VACUUM (ANALYZE) events")
        .execute(&pool)
        .await
        .map_err(|e| format!("vacuum events: {e}"))?;
    let (report, wall_s) = spawn_replay(&config).await?;
    let check = check(&pool, &config.into).await?;
    let events_per_s = report["events_per_s"].as_f64().unwrap_or(0.0);
    let replayed = report["events"].as_f64().unwrap_or(0.0);
    Ok(ReplayReport {
        via: config.via,
        events_before: before,
        events_generated: in_store - before,
        events_in_store: in_store,
        generate_s: (generate_s * 1e3).round() / 1e3,
        schema: config.into.clone(),
        events_per_s: events_per_s.round(),
        wall_s: (wall_s * 1e3).round() / 1e3,
        wall_events_per_s: (replayed / wall_s.max(1e-9)).round(),
        payledger_report: report,
        check,
    })
}

pub fn print_table(r: &ReplayReport) {
    println!(
        "== payledger-bench replay: {} events in the store ({} before, {} generated via {:?} in {:.1} s)",
        r.events_in_store, r.events_before, r.events_generated, r.via, r.generate_s
    );
    println!(
        "payledger replay --projection all --into {}: {} events, {:.0} events/s (payledger's own timing); process wall {:.2} s = {:.0} events/s",
        r.schema,
        r.payledger_report["events"],
        r.events_per_s,
        r.wall_s,
        r.wall_events_per_s
    );
    println!(
        "check: {} payments in the store, {} missing from the rebuilt status projection, {} with a version other than the store's",
        r.check.payments_in_store, r.check.missing_in_rebuilt_status, r.check.version_mismatches
    );
}
