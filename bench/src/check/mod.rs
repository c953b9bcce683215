//! `payledger-bench check`: what a chaos run (payments driven through the API while processes
//! are killed) must leave behind, checked from the outside once the load has stopped:
//!
//! - `caught_up`: the relay and every projection reach the store's head (bounded wait);
//! - `acks_in_store`: every command acknowledged 2xx in the ack log is in the event store;
//! - `projections_match_rebuild`: every projection equals a rebuild from the store alone, row
//!   for row (`payledger replay --into` a scratch schema, `EXCEPT ALL` both ways), which also
//!   shows that no event was applied twice;
//! - `ledger_balanced`: every journal entry sums to zero per currency, the balances are the
//!   sums of their lines and sum to zero;
//! - `audit_verify`: `payledger audit verify` passes;
//! - `no_dead_letters`: every projection's dead-letter queue is empty;
//! - `no_stale_intents`: no payment has sat with an open intent (provider outcome unknown, a
//!   capture, void or refund unanswered, review) for longer than the horizon.
//!
//! Each check ends `pass`, `fail` (an invariant is violated), `error` (it could not be
//! checked) or `skipped`; the exit status is 1 on any failure, else 2 if anything could not
//! be checked, else 0. Every wait, process and query is bounded in time.

mod acks;
mod audit;
mod caught_up;
mod dead_letters;
mod intents;
mod ledger;
mod rebuild;
mod spawned;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Serialize;
use sqlx::postgres::PgPoolOptions;

pub const EXIT_PASS: u8 = 0;
pub const EXIT_VIOLATION: u8 = 1;
pub const EXIT_UNCHECKED: u8 = 2;

/// How often a long wait says where it is, on stderr.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(5);
const POLL_INTERVAL: Duration = Duration::from_millis(250);
/// One database round trip at most (the pool's acquire included).
const QUERY_TIMEOUT: Duration = Duration::from_secs(30);
const AMQP_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct CheckConfig {
    pub database_url: String,
    /// One AMQP URL, or a cluster's nodes separated by commas.
    pub amqp_url: String,
    pub amqp_prefix: String,
    pub ack_log: PathBuf,
    pub payledger: PathBuf,
    pub intent_horizon: Duration,
    pub drain_timeout: Duration,
    /// Bound on each check (a spawned replay or audit included).
    pub step_timeout: Duration,
    /// Where the projections are rebuilt; dropped afterwards.
    pub scratch_schema: String,
    pub examples_max: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Fail,
    Error,
    Skipped,
}

impl Status {
    fn label(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Fail => "FAIL",
            Status::Error => "ERROR",
            Status::Skipped => "skipped",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct CheckResult {
    pub name: &'static str,
    pub status: Status,
    pub summary: String,
    pub counts: BTreeMap<String, i64>,
    /// Up to `--examples` of what was wrong (rows and lines as JSON text, exact).
    pub examples: Vec<String>,
    pub elapsed_ms: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    pub passed: bool,
    pub exit_status: u8,
    pub started_at_ms: u64,
    pub elapsed_ms: u64,
    pub amqp_prefix: String,
    pub ack_log: String,
    pub intent_horizon_s: u64,
    pub checks: Vec<CheckResult>,
}

/// What one check concluded (an `Err` from a check means it could not conclude).
struct Finding {
    status: Status,
    summary: String,
    counts: BTreeMap<String, i64>,
    examples: Vec<String>,
}

impl Finding {
    fn new(status: Status, summary: impl Into<String>) -> Finding {
        Finding {
            status,
            summary: summary.into(),
            counts: BTreeMap::new(),
            examples: Vec::new(),
        }
    }

    fn count(&mut self, name: impl Into<String>, value: i64) {
        self.counts.insert(name.into(), value);
    }
}

/// Keeps the first `max` examples.
struct Examples {
    max: usize,
    kept: Vec<String>,
}

impl Examples {
    fn new(max: usize) -> Examples {
        Examples {
            max,
            kept: Vec::new(),
        }
    }

    fn push(&mut self, example: impl FnOnce() -> String) {
        if self.kept.len() < self.max {
            self.kept.push(example());
        }
    }
}

fn progress(text: impl std::fmt::Display) {
    eprintln!("payledger-bench check: {text}");
}

/// Runs one check under the step timeout and reports it as it ends.
async fn step<F>(name: &'static str, timeout: Duration, check: F) -> CheckResult
where
    F: std::future::Future<Output = Result<Finding, String>>,
{
    progress(format_args!("{name}: checking"));
    let started = Instant::now();
    let finding = match tokio::time::timeout(timeout, check).await {
        Ok(Ok(finding)) => finding,
        Ok(Err(error)) => Finding::new(Status::Error, format!("could not check: {error}")),
        Err(_) => Finding::new(
            Status::Error,
            format!("could not check within {} s", timeout.as_secs()),
        ),
    };
    let result = CheckResult {
        name,
        status: finding.status,
        summary: finding.summary,
        counts: finding.counts,
        examples: finding.examples,
        elapsed_ms: started.elapsed().as_millis() as u64,
    };
    progress(format_args!(
        "{name}: {} ({:.1} s) {}",
        result.status.label(),
        started.elapsed().as_secs_f64(),
        result.summary
    ));
    result
}

fn skipped(name: &'static str, why: &str) -> CheckResult {
    progress(format_args!("{name}: skipped, {why}"));
    CheckResult {
        name,
        status: Status::Skipped,
        summary: why.to_owned(),
        counts: BTreeMap::new(),
        examples: Vec::new(),
        elapsed_ms: 0,
    }
}

/// A whole-table query (a comparison, a sum over the journal): it may take longer than a
/// round trip on a large store, so only the step's own timeout bounds it.
async fn scan<T>(
    what: &str,
    query: impl std::future::Future<Output = Result<T, sqlx::Error>>,
) -> Result<T, String> {
    query.await.map_err(|error| format!("{what}: {error}"))
}

/// A query bounded in time: a database that stops answering is an error, not a hang.
async fn bounded<T>(
    what: &str,
    query: impl std::future::Future<Output = Result<T, sqlx::Error>>,
) -> Result<T, String> {
    match tokio::time::timeout(QUERY_TIMEOUT, query).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(format!("{what}: {error}")),
        Err(_) => Err(format!(
            "{what}: no answer within {} s",
            QUERY_TIMEOUT.as_secs()
        )),
    }
}

pub async fn check(config: CheckConfig) -> CheckReport {
    let started = Instant::now();
    let started_at_ms = crate::ack::unix_ms();
    let names: Vec<&'static str> = projections::all().iter().map(|p| p.name()).collect();
    let mut checks = Vec::new();
    // Lazy: a database that is down shows as each check's error, not as no report at all.
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(10))
        .connect_lazy(&config.database_url);
    let pool = match pool {
        Ok(pool) => pool,
        Err(error) => {
            checks.push(CheckResult {
                name: "database",
                status: Status::Error,
                summary: format!("bad --database-url: {error}"),
                counts: BTreeMap::new(),
                examples: Vec::new(),
                elapsed_ms: 0,
            });
            return report(&config, started, started_at_ms, checks);
        }
    };
    let timeout = config.step_timeout;

    let caught_up = step(
        "caught_up",
        config.drain_timeout + QUERY_TIMEOUT,
        caught_up::caught_up(&pool, &names, config.drain_timeout),
    )
    .await;
    let drained = caught_up.status == Status::Pass;
    checks.push(caught_up);
    checks.push(
        step(
            "acks_in_store",
            timeout,
            acks::acks_in_store(&pool, &config.ack_log, config.examples_max),
        )
        .await,
    );
    if drained {
        checks.push(
            step(
                "projections_match_rebuild",
                timeout,
                rebuild::projections_match_rebuild(&pool, &config),
            )
            .await,
        );
        // Outside the step: a rebuild cut short by the timeout still has its schema dropped.
        if let Err(error) = rebuild::drop_scratch(&pool, &config.scratch_schema).await {
            progress(format_args!(
                "could not drop the scratch schema {}: {error}",
                config.scratch_schema
            ));
        }
    } else {
        checks.push(skipped(
            "projections_match_rebuild",
            "the relay or a projection never reached the store's head (caught_up), so live and rebuilt cannot be compared",
        ));
    }
    checks.push(
        step(
            "ledger_balanced",
            timeout,
            ledger::ledger_balanced(&pool, config.examples_max),
        )
        .await,
    );
    checks.push(step("audit_verify", timeout, audit::audit_verify(&config)).await);
    checks.push(
        step(
            "no_dead_letters",
            timeout,
            dead_letters::no_dead_letters(&config.amqp_url, &config.amqp_prefix, &names),
        )
        .await,
    );
    checks.push(
        step(
            "no_stale_intents",
            timeout,
            intents::no_stale_intents(&pool, config.intent_horizon, config.examples_max),
        )
        .await,
    );
    pool.close().await;
    report(&config, started, started_at_ms, checks)
}

fn report(
    config: &CheckConfig,
    started: Instant,
    started_at_ms: u64,
    checks: Vec<CheckResult>,
) -> CheckReport {
    let exit_status = if checks.iter().any(|c| c.status == Status::Fail) {
        EXIT_VIOLATION
    } else if checks.iter().any(|c| c.status != Status::Pass) {
        EXIT_UNCHECKED
    } else {
        EXIT_PASS
    };
    CheckReport {
        passed: exit_status == EXIT_PASS,
        exit_status,
        started_at_ms,
        elapsed_ms: started.elapsed().as_millis() as u64,
        amqp_prefix: config.amqp_prefix.clone(),
        ack_log: config.ack_log.display().to_string(),
        intent_horizon_s: config.intent_horizon.as_secs(),
        checks,
    }
}

/// The human summary, on stderr.
pub fn print_summary(report: &CheckReport) {
    let verdict = match report.exit_status {
        EXIT_PASS => "PASS",
        EXIT_VIOLATION => "FAIL",
        _ => "COULD NOT CHECK",
    };
    eprintln!(
        "== payledger-bench check: {verdict} (exit {}, {:.1} s)",
        report.exit_status,
        report.elapsed_ms as f64 / 1e3
    );
    for check in &report.checks {
        eprintln!(
            "  {:<8} {:<26} {}",
            check.status.label(),
            check.name,
            check.summary
        );
        if check.status != Status::Pass {
            for example in &check.examples {
                eprintln!("             e.g. {example}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exit_status_is_the_worst_outcome() {
        let config = CheckConfig {
            database_url: String::new(),
            amqp_url: String::new(),
            amqp_prefix: "p".into(),
            ack_log: PathBuf::from("a"),
            payledger: PathBuf::from("b"),
            intent_horizon: Duration::ZERO,
            drain_timeout: Duration::ZERO,
            step_timeout: Duration::ZERO,
            scratch_schema: "s".into(),
            examples_max: 1,
        };
        let result = |status| CheckResult {
            name: "x",
            status,
            summary: String::new(),
            counts: BTreeMap::new(),
            examples: Vec::new(),
            elapsed_ms: 0,
        };
        let exit = |statuses: &[Status]| {
            report(
                &config,
                Instant::now(),
                0,
                statuses.iter().map(|s| result(*s)).collect(),
            )
            .exit_status
        };
        assert_eq!(exit(&[Status::Pass, Status::Pass]), EXIT_PASS);
        assert_eq!(exit(&[Status::Pass, Status::Skipped]), EXIT_UNCHECKED);
        assert_eq!(exit(&[Status::Error, Status::Pass]), EXIT_UNCHECKED);
        assert_eq!(exit(&[Status::Error, Status::Fail]), EXIT_VIOLATION);
    }
}
