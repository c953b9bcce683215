//! `payledger-bench`: measures a running payledger from the outside. It starts nothing by
//! itself: `run` talks to the API over HTTP; `replay` also needs the database URL and the
//! `payledger` binary, which it spawns for `payledger replay`; `check` holds what a run
//! (under faults) left behind to the invariants nothing may break; `chaos` drives `make
//! cluster` through its load balancer while it kills and restarts the cluster's parts, then
//! checks.

mod ack;
mod chaos;
mod check;
mod http;
mod replay;
mod run;
mod stats;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use serde::Serialize;

#[derive(Parser)]
#[command(
    name = "payledger-bench",
    about = "Benchmark a running payledger: throughput, latency, projection lag, relay and replay rates"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Drive payment lifecycles through the API; report throughput, latency, lag, errors;
    /// check the status projection against the event store at the end.
    Run {
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
        /// A checkout API key (`payledger keys create --role checkout --merchant M`).
        #[arg(long, env = "PAYLEDGER_BENCH_KEY", hide_env_values = true)]
        key: String,
        /// An operator key (`payledger keys create --role operator`): relay and projection
        /// lag are read from `/health`, which shows them to operators only.
        #[arg(long, env = "PAYLEDGER_OPERATOR_KEY", hide_env_values = true)]
        operator_key: Option<String>,
        /// Payments to start at most.
        #[arg(long, default_value_t = 1_000)]
        payments: u64,
        /// Concurrent checkout sessions (each drives one payment at a time).
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
        /// Seconds after which no new payment starts (those in flight finish).
        #[arg(long, default_value_t = 60)]
        duration: u64,
        /// Share of each flow; `processed=100` is a realistic day, every outcome left to the
        /// sandbox's processor (`SANDBOX_SUCCESS_RATE`, `SANDBOX_SEED`,
        /// `SANDBOX_PROCESSING_DELAY_MS`).
        #[arg(
            long,
            env = "BENCH_MIX",
            default_value = "approved=70,declined=10,manual=10,refund=10"
        )]
        mix: run::Mix,
        /// Start at most this many payments per second (default: as fast as the sessions go).
        #[arg(long)]
        rate: Option<f64>,
        /// Share of payments whose commands are followed by a projection-lag read (0 to 1).
        /// Below 1, unsampled approved/declined payments are not waited on (their final
        /// status is still verified at the end), so the read side's polling loads the server less.
        #[arg(long, default_value_t = 1.0)]
        lag_sample: f64,
        /// Skip the final projection-vs-store check (and the drain wait before it).
        #[arg(long)]
        no_verify: bool,
        /// Seconds to wait for relay and projections to catch up before verifying.
        #[arg(long, default_value_t = 120)]
        drain_timeout: u64,
        /// Timeout of one HTTP request, seconds.
        #[arg(long, default_value_t = 10)]
        request_timeout: u64,
        /// A name for this run in the report.
        #[arg(long, default_value = "run")]
        label: String,
        /// Append one JSON line per command try here (what `check` holds the store to).
        #[arg(long)]
        ack_log: Option<PathBuf>,
        /// Write the report as JSON here too.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// After a run under faults: every acknowledged command is in the event store, every
    /// projection equals a rebuild, the ledger balances, the audit chain verifies, no dead
    /// letters, no stale intents. Exit 0 all pass, 1 a violation, 2 could not check.
    Check {
        #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
        database_url: String,
        /// One AMQP URL, or several separated by commas (a cluster: any node that answers).
        #[arg(long, env = "AMQP_URL", hide_env_values = true)]
        amqp_url: String,
        /// The AMQP_PREFIX payledger ran with (its queues are `<prefix>.<projection>`).
        #[arg(long, default_value = "payledger")]
        amqp_prefix: String,
        /// The log `run --ack-log` wrote.
        #[arg(long)]
        ack_log: PathBuf,
        /// The payledger binary to spawn (`replay`, `audit verify`).
        #[arg(long, default_value = "target/release/payledger")]
        payledger: PathBuf,
        /// A payment with an intent still open after this many seconds without an event is
        /// a violation.
        #[arg(long, default_value_t = 60)]
        intent_horizon_s: u64,
        /// Seconds to wait for the relay and every projection to reach the store's head.
        #[arg(long, default_value_t = 120)]
        drain_timeout_s: u64,
        /// Seconds each check may take at most (a spawned replay or audit included).
        #[arg(long, default_value_t = 600)]
        step_timeout_s: u64,
        /// Scratch schema the projections are rebuilt into (dropped afterwards).
        #[arg(long, default_value = "chaos_check")]
        scratch_schema: String,
        /// Examples kept per check.
        #[arg(long, default_value_t = 10)]
        examples: usize,
        /// Write the report as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Payments through `make cluster`'s load balancer while a schedule kills and restarts its
    /// parts; then every invariant of `check`. Exit 0 passed, 1 an invariant or a recovery
    /// failed, 2 could not check.
    Chaos {
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
        #[arg(long, env = "PAYLEDGER_CHECKOUT_KEY", hide_env_values = true)]
        key: String,
        /// An operator key (`make cluster` prints it): `/health`'s figures.
        #[arg(long, env = "PAYLEDGER_OPERATOR_KEY", hide_env_values = true)]
        operator_key: String,
        #[arg(long, default_value = "scripts/cluster.sh")]
        cluster_script: PathBuf,
        /// Seconds of load; faults are spread over them (`CHAOS_S`).
        #[arg(long, env = "CHAOS_S", default_value_t = 180)]
        duration_s: u64,
        /// Payments started per second.
        #[arg(long, default_value_t = 20.0)]
        rate: f64,
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        /// `full`: every fault; `short`: one of each kind that is quick to bring back.
        #[arg(long, value_enum, default_value = "full")]
        schedule: chaos::Schedule,
        /// The ack log and the check's report go here.
        #[arg(long, default_value = "chaos/results/last-run")]
        out_dir: PathBuf,
        #[arg(long, default_value = "chaos/results/latest.json")]
        json: PathBuf,
        #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
        database_url: String,
        #[arg(long, env = "AMQP_URL", hide_env_values = true)]
        amqp_url: String,
        #[arg(long, default_value = "payledger")]
        amqp_prefix: String,
        #[arg(long, default_value = "target/release/payledger")]
        payledger: PathBuf,
        /// No payment may keep an intent open longer than this once the run is over.
        #[arg(long, default_value_t = 60)]
        intent_horizon_s: u64,
        #[arg(long, default_value_t = 300)]
        drain_timeout_s: u64,
    },
    /// Make sure the store holds N events, then time `payledger replay --projection all`.
    Replay {
        #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
        database_url: String,
        /// Events the store must hold before the replay is timed.
        #[arg(long, default_value_t = 100_000)]
        events: u64,
        /// How missing events are made: `api` (payments through the running API) or `clone`
        /// (copies of the API-made streams already in the store, inserted directly).
        #[arg(long, value_enum, default_value = "api")]
        via: replay::Via,
        /// The payledger binary to spawn.
        #[arg(long, default_value = "target/release/payledger")]
        payledger: PathBuf,
        /// Scratch schema to rebuild into (the live projection tables are not touched).
        #[arg(long, default_value = "bench_replay")]
        into: String,
        /// For --via api.
        #[arg(long)]
        url: Option<String>,
        #[arg(long, env = "PAYLEDGER_BENCH_KEY", hide_env_values = true)]
        key: Option<String>,
        /// For --via api: an operator key, for `/health`'s relay progress.
        #[arg(long, env = "PAYLEDGER_OPERATOR_KEY", hide_env_values = true)]
        operator_key: Option<String>,
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        /// Seconds allowed for generating events.
        #[arg(long, default_value_t = 600)]
        generate_timeout: u64,
        /// Seconds allowed for the replay process.
        #[arg(long, default_value_t = 600)]
        replay_timeout: u64,
        #[arg(long)]
        json: Option<PathBuf>,
    },
}

fn write_json<T: Serialize>(path: &PathBuf, value: &T) -> Result<(), String> {
    let text = serde_json::to_string_pretty(value).map_err(|e| format!("json: {e}"))?;
    std::fs::write(path, text + "\n").map_err(|e| format!("writing {}: {e}", path.display()))
}

async fn main_result(command: Command) -> Result<bool, String> {
    match command {
        Command::Run {
            url,
            key,
            operator_key,
            payments,
            concurrency,
            duration,
            mix,
            rate,
            lag_sample,
            no_verify,
            drain_timeout,
            request_timeout,
            label,
            ack_log,
            json,
        } => {
            let report = run::run(run::RunConfig {
                url,
                key,
                operator_key,
                payments,
                concurrency,
                duration: Duration::from_secs(duration),
                mix,
                rate,
                label,
                request_timeout: Duration::from_secs(request_timeout.clamp(1, 120)),
                drain_timeout: Duration::from_secs(drain_timeout.min(1_800)),
                health_interval: Duration::from_secs(2),
                verify: !no_verify,
                lag_sample,
                ack_log,
            })
            .await?;
            run::print_table(&report);
            if let Some(path) = json {
                write_json(&path, &report)?;
            }
            Ok(report.errors_total == 0)
        }
        Command::Replay {
            database_url,
            events,
            via,
            payledger,
            into,
            url,
            key,
            operator_key,
            concurrency,
            generate_timeout,
            replay_timeout,
            json,
        } => {
            let report = replay::replay(replay::ReplayConfig {
                database_url,
                events,
                via,
                payledger,
                into,
                url,
                key,
                operator_key,
                concurrency: concurrency.clamp(1, 1_024),
                generate_timeout: Duration::from_secs(generate_timeout.min(3_600)),
                replay_timeout: Duration::from_secs(replay_timeout.min(3_600)),
            })
            .await?;
            replay::print_table(&report);
            if let Some(path) = json {
                write_json(&path, &report)?;
            }
            Ok(report.check.missing_in_rebuilt_status == 0 && report.check.version_mismatches == 0)
        }
        Command::Check { .. } | Command::Chaos { .. } => Err("runs from main".into()),
    }
}

/// `check` owns its exit statuses: 0 every invariant holds, 1 one is violated, 2 something
/// could not be checked (the report could not be written included).
async fn main_check(command: Command) -> u8 {
    let Command::Check {
        database_url,
        amqp_url,
        amqp_prefix,
        ack_log,
        payledger,
        intent_horizon_s,
        drain_timeout_s,
        step_timeout_s,
        scratch_schema,
        examples,
        json,
    } = command
    else {
        return check::EXIT_UNCHECKED;
    };
    let report = check::check(check::CheckConfig {
        database_url,
        amqp_url,
        amqp_prefix,
        ack_log,
        payledger,
        intent_horizon: Duration::from_secs(intent_horizon_s),
        drain_timeout: Duration::from_secs(drain_timeout_s.min(3_600)),
        step_timeout: Duration::from_secs(step_timeout_s.clamp(1, 3_600)),
        scratch_schema,
        examples_max: examples.min(1_000),
    })
    .await;
    check::print_summary(&report);
    if let Some(path) = json {
        if let Err(error) = write_json(&path, &report) {
            eprintln!("payledger-bench check: {error}");
            return check::EXIT_UNCHECKED;
        }
    }
    report.exit_status
}

/// `chaos` exits 0 when the run passed, 1 when an invariant or a recovery failed, 2 when it
/// could not run or check.
async fn main_chaos(command: Command) -> u8 {
    let Command::Chaos {
        url,
        key,
        operator_key,
        cluster_script,
        duration_s,
        rate,
        concurrency,
        schedule,
        out_dir,
        json,
        database_url,
        amqp_url,
        amqp_prefix,
        payledger,
        intent_horizon_s,
        drain_timeout_s,
    } = command
    else {
        return check::EXIT_UNCHECKED;
    };
    let config = chaos::ChaosConfig {
        url,
        key,
        operator_key,
        cluster_script,
        duration: Duration::from_secs(duration_s.clamp(10, 3_600)),
        rate: rate.clamp(0.1, 10_000.0),
        concurrency: concurrency.clamp(1, 1_024),
        faults: schedule.faults().to_vec(),
        out_dir: out_dir.clone(),
        check: check::CheckConfig {
            database_url,
            amqp_url,
            amqp_prefix,
            ack_log: out_dir.join("acks.jsonl"),
            payledger,
            intent_horizon: Duration::from_secs(intent_horizon_s),
            drain_timeout: Duration::from_secs(drain_timeout_s.min(3_600)),
            step_timeout: Duration::from_secs(600),
            scratch_schema: "chaos_check".into(),
            examples_max: 10,
        },
    };
    let report = match chaos::chaos(config).await {
        Ok(report) => report,
        Err(error) => {
            eprintln!("payledger-bench chaos: {error}");
            return check::EXIT_UNCHECKED;
        }
    };
    chaos::print_summary(&report);
    if let Some(parent) = json.parent() {
        let _created = std::fs::create_dir_all(parent);
    }
    if let Err(error) = write_json(&json, &report) {
        eprintln!("payledger-bench chaos: {error}");
        return check::EXIT_UNCHECKED;
    }
    if report.passed {
        check::EXIT_PASS
    } else if report.check.exit_status == check::EXIT_UNCHECKED && report.violations.len() == 1 {
        check::EXIT_UNCHECKED
    } else {
        check::EXIT_VIOLATION
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let command = Cli::parse().command;
    if matches!(command, Command::Check { .. }) {
        return ExitCode::from(main_check(command).await);
    }
    if matches!(command, Command::Chaos { .. }) {
        return ExitCode::from(main_chaos(command).await);
    }
    match main_result(command).await {
        Ok(true) => ExitCode::SUCCESS,
        // The report is written; a non-zero exit says it holds errors or mismatches.
        Ok(false) => ExitCode::from(2),
        Err(error) => {
            eprintln!("payledger-bench: {error}");
            ExitCode::FAILURE
        }
    }
}
