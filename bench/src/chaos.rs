//! `payledger-bench chaos`: payments through the load balancer of `make cluster` at a steady
//! rate while a schedule kills and restarts its parts, then the invariants of `check`.
//!
//! Faults run one after the other: each is injected at its slot (spread over the run) or
//! once the previous one has recovered, whichever is later, so every client error and every
//! second of lag is attributed to one fault. A fault has recovered when the relay's and every
//! projection's lag, read from an API node's `/health`, are back under one second after its
//! restore step. Every wait is bounded; the whole run stops itself.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use serde_json::Value;
use tokio::process::Command;

use crate::ack::{unix_ms, AckOutcome, AckRecord};
use crate::check::{self, CheckConfig, CheckReport};
use crate::run::{self, Mix, RunConfig, RunReport};

/// Lag under this is "caught up" (what the chaos run reports recovery against).
const RECOVERED_LAG_S: f64 = 1.0;
/// A fault that has not recovered this long after its restore step is reported as such; the
/// schedule goes on.
const RECOVERY_TIMEOUT: Duration = Duration::from_secs(120);
/// One `scripts/cluster.sh` step (a whole broker start included).
const CLUSTER_STEP_TIMEOUT: Duration = Duration::from_secs(240);
const HEALTH_INTERVAL: Duration = Duration::from_millis(250);
/// A stand-by that has not taken over by then is reported as a problem.
const TAKEOVER_TIMEOUT: Duration = Duration::from_secs(30);
const TAKEOVER_POLL: Duration = Duration::from_millis(20);
const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);
/// Lines on a terminal-less stderr (CI logs), at most this often.
const PROGRESS_LINE_INTERVAL: Duration = Duration::from_secs(10);
/// Health samples kept (a 30-minute run at four a second).
const SAMPLES_MAX: usize = 8 * 60 * 30;

const API_NODES: [&str; 2] = ["http://127.0.0.1:18081", "http://127.0.0.1:18082"];
const RELAY_NODES: [(&str, &str); 2] = [
    ("relay-1", "http://127.0.0.1:18083"),
    ("relay-2", "http://127.0.0.1:18084"),
];
const STATUS_PROJECTORS: [(&str, &str); 2] = [
    ("projector-status-1", "http://127.0.0.1:18085"),
    ("projector-status-2", "http://127.0.0.1:18086"),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fault {
    /// SIGKILL the leading relay; restarted after a pause.
    RelayLeader,
    /// SIGKILL the status projector that holds the queue; restarted after a pause.
    Projector,
    /// SIGKILL an API node; restarted after a pause.
    ApiNode,
    /// SIGKILL one RabbitMQ node (the cluster goes on); restarted after a pause.
    RabbitNode,
    /// The broker's memory alarm raised for a few seconds (publishers blocked).
    MemoryAlarm,
    /// PostgreSQL's primary restarted with a fast shutdown.
    PrimaryFast,
    /// PostgreSQL's primary restarted with an immediate shutdown (crash recovery).
    PrimaryImmediate,
    /// The replica restarted.
    Replica,
    /// All three RabbitMQ nodes stopped, then started.
    Broker,
}

impl Fault {
    /// Every kind, each once (`make chaos`).
    pub const FULL: [Fault; 9] = [
        Fault::RelayLeader,
        Fault::Projector,
        Fault::ApiNode,
        Fault::RabbitNode,
        Fault::MemoryAlarm,
        Fault::PrimaryFast,
        Fault::PrimaryImmediate,
        Fault::Replica,
        Fault::Broker,
    ];
    /// One of each kind that is quick to bring back (`make test`): a process, a broker node,
    /// the database, the broker's flow control.
    pub const SHORT: [Fault; 6] = [
        Fault::RelayLeader,
        Fault::Projector,
        Fault::ApiNode,
        Fault::RabbitNode,
        Fault::PrimaryFast,
        Fault::MemoryAlarm,
    ];

    /// How long the part stays down before its restore step.
    fn pause(self) -> Duration {
        match self {
            Fault::RabbitNode => Duration::from_secs(10),
            Fault::PrimaryFast | Fault::PrimaryImmediate | Fault::Replica => Duration::ZERO,
            _ => Duration::from_secs(5),
        }
    }
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Schedule {
    Full,
    Short,
}

impl Schedule {
    pub fn faults(self) -> &'static [Fault] {
        match self {
            Schedule::Full => &Fault::FULL,
            Schedule::Short => &Fault::SHORT,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ChaosConfig {
    pub url: String,
    pub key: String,
    /// An operator key: the cluster's `/health` figures (leadership aside) are for operators.
    pub operator_key: String,
    pub cluster_script: PathBuf,
    pub duration: Duration,
    /// Payments started per second.
    pub rate: f64,
    pub concurrency: usize,
    pub faults: Vec<Fault>,
    pub out_dir: PathBuf,
    pub check: CheckConfig,
}

/// One health reading from an API node.
#[derive(Debug, Clone, Copy, Serialize)]
struct Sample {
    at_ms: u64,
    relay_lag_s: Option<f64>,
    projection_lag_s: Option<f64>,
}

impl Sample {
    fn caught_up(&self) -> bool {
        matches!((self.relay_lag_s, self.projection_lag_s), (Some(r), Some(p)) if r < RECOVERED_LAG_S && p < RECOVERED_LAG_S)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct FaultReport {
    pub fault: Fault,
    /// The part acted on (`relay-2`, `rabbit-2`, `pg-primary` ...).
    pub part: String,
    pub injected_at_ms: u64,
    pub restored_at_ms: Option<u64>,
    pub recovered_at_ms: Option<u64>,
    /// From injection until relay and projection lag were both back under one second.
    pub seconds_to_recover: Option<f64>,
    /// From the end of the restore step (the part started again) until then.
    pub seconds_after_restore: Option<f64>,
    /// For a killed relay leader or active projector: until its stand-by works (the other
    /// relay says it leads; the other projector's applied count moves).
    pub takeover_ms: Option<u64>,
    pub relay_lag_max_s: f64,
    pub projection_lag_max_s: f64,
    /// Client command tries that failed between injection and recovery, by kind.
    pub client_errors: BTreeMap<String, u64>,
    /// What went wrong injecting or restoring (the run goes on; the report says so).
    pub problems: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ChaosReport {
    pub passed: bool,
    pub started_at_ms: u64,
    pub elapsed_s: f64,
    pub duration_s: u64,
    pub rate_per_s: f64,
    pub queue_type: String,
    pub faults: Vec<FaultReport>,
    pub commands_ok: u64,
    pub command_errors: BTreeMap<String, u64>,
    pub load: Option<RunReport>,
    pub check: CheckReport,
    /// Why the run did not pass, in words.
    pub violations: Vec<String>,
}

/// Runs the load and the schedule, then the checks; the report says whether it passed.
pub async fn chaos(config: ChaosConfig) -> Result<ChaosReport, String> {
    std::fs::create_dir_all(&config.out_dir)
        .map_err(|e| format!("creating {}: {e}", config.out_dir.display()))?;
    let ack_log = config.out_dir.join("acks.jsonl");
    let _removed = std::fs::remove_file(&ack_log);
    let started = Instant::now();
    let started_at_ms = unix_ms();
    let mut operator = reqwest::header::HeaderMap::new();
    let bearer = format!("Bearer {}", config.operator_key);
    operator.insert(
        reqwest::header::AUTHORIZATION,
        bearer
            .parse()
            .map_err(|_| "the operator key is not a header value".to_owned())?,
    );
    let http = reqwest::Client::builder()
        .timeout(HEALTH_TIMEOUT)
        .default_headers(operator)
        .build()
        .map_err(|e| format!("http client: {e}"))?;

    let samples = Arc::new(Mutex::new(Vec::<Sample>::new()));
    let sampler = tokio::spawn(sample_health(http.clone(), samples.clone()));
    let load = tokio::spawn(run::run(RunConfig {
        url: config.url.clone(),
        key: config.key.clone(),
        operator_key: Some(config.operator_key.clone()),
        payments: 1_000_000,
        concurrency: config.concurrency,
        duration: config.duration,
        mix: "approved=70,declined=10,manual=10,refund=10".parse::<Mix>()?,
        rate: Some(config.rate),
        label: "chaos".into(),
        request_timeout: Duration::from_secs(10),
        drain_timeout: Duration::from_secs(120),
        health_interval: Duration::from_secs(1),
        verify: false,
        lag_sample: 0.1,
        ack_log: Some(ack_log.clone()),
    }));

    let progress = Progress::new(config.faults.len());
    let mut faults = Vec::with_capacity(config.faults.len());
    let slot = config.duration / (config.faults.len() as u32 + 1);
    for (i, fault) in config.faults.iter().copied().enumerate() {
        let due = slot * (i as u32 + 1);
        while let Some(wait) = due.checked_sub(started.elapsed()) {
            progress.tick(&format!(
                "load running; next fault {fault:?} in {} s",
                wait.as_secs()
            ));
            tokio::time::sleep(wait.min(PROGRESS_LINE_INTERVAL)).await;
        }
        progress.say(&format!("{:?}: injecting", fault));
        let report = run_fault(&config, &http, fault, &samples, &progress).await;
        progress.say(&format!(
            "{:?} on {}: {}",
            fault,
            report.part,
            match report.seconds_to_recover {
                Some(s) => format!("caught up {s:.1} s after injection"),
                None => "did not catch up".into(),
            }
        ));
        progress.advance();
        faults.push(report);
    }
    let load = match load.await {
        Ok(Ok(report)) => Some(report),
        Ok(Err(error)) => {
            progress.say(&format!("load generator: {error}"));
            None
        }
        Err(error) => {
            progress.say(&format!("load generator task: {error}"));
            None
        }
    };
    sampler.abort();
    progress.finish();

    let acks = read_acks(&ack_log)?;
    for fault in &mut faults {
        let until = fault.recovered_at_ms.unwrap_or(u64::MAX);
        for record in &acks {
            if record.outcome == AckOutcome::Error
                && (fault.injected_at_ms..=until).contains(&record.at_ms)
            {
                let kind = record
                    .error_kind
                    .clone()
                    .unwrap_or_else(|| "unknown".into());
                *fault.client_errors.entry(kind).or_default() += 1;
            }
        }
    }
    let commands_ok = acks.iter().filter(|r| r.outcome == AckOutcome::Ok).count() as u64;
    let mut command_errors = BTreeMap::new();
    for record in acks.iter().filter(|r| r.outcome == AckOutcome::Error) {
        let kind = record
            .error_kind
            .clone()
            .unwrap_or_else(|| "unknown".into());
        *command_errors.entry(kind).or_default() += 1;
    }

    eprintln!("[chaos] checking the invariants");
    let mut check_config = config.check.clone();
    check_config.ack_log = ack_log;
    let check = check::check(check_config).await;

    let mut violations = Vec::new();
    if !check.passed {
        violations.push("an invariant of `check` is violated (see check)".to_owned());
    }
    for fault in &faults {
        if fault.recovered_at_ms.is_none() {
            violations.push(format!("{:?}: lag never came back under 1 s", fault.fault));
        }
        for problem in &fault.problems {
            violations.push(format!("{:?}: {problem}", fault.fault));
        }
    }
    if commands_ok == 0 {
        violations.push("no command was acknowledged: the load never ran".to_owned());
    }
    Ok(ChaosReport {
        passed: violations.is_empty(),
        started_at_ms,
        elapsed_s: started.elapsed().as_secs_f64(),
        duration_s: config.duration.as_secs(),
        rate_per_s: config.rate,
        queue_type: std::env::var("AMQP_QUEUE_TYPE").unwrap_or_else(|_| "quorum".into()),
        faults,
        commands_ok,
        command_errors,
        load,
        check,
        violations,
    })
}

/// Injects `fault`, restores after its pause, and waits (bounded) until lags are back.
async fn run_fault(
    config: &ChaosConfig,
    http: &reqwest::Client,
    fault: Fault,
    samples: &Mutex<Vec<Sample>>,
    progress: &Progress,
) -> FaultReport {
    let mut problems = Vec::new();
    let part = match target(http, fault).await {
        Ok(part) => part,
        Err(problem) => {
            problems.push(problem);
            fallback_part(fault).to_owned()
        }
    };
    let script = &config.cluster_script;
    let injected_at_ms = unix_ms();
    let inject: Vec<&str> = match fault {
        Fault::RelayLeader | Fault::Projector | Fault::ApiNode | Fault::RabbitNode => {
            vec!["kill", &part]
        }
        Fault::MemoryAlarm => vec!["memory-alarm", "on"],
        Fault::PrimaryFast => vec!["pg-restart", "primary", "fast"],
        Fault::PrimaryImmediate => vec!["pg-restart", "primary", "immediate"],
        Fault::Replica => vec!["pg-restart", "replica", "fast"],
        Fault::Broker => vec!["broker-stop"],
    };
    if let Err(problem) = cluster(script, &inject).await {
        problems.push(problem);
    }
    let takeover_ms = match standby_of(fault, &part) {
        Some(standby) => {
            let taken = took_over(http, fault, standby, injected_at_ms).await;
            if taken.is_none() {
                problems.push(format!("{standby} did not take over"));
            }
            taken
        }
        None => None,
    };
    if let Some(left) = fault.pause().checked_sub(Duration::from_millis(
        unix_ms().saturating_sub(injected_at_ms),
    )) {
        tokio::time::sleep(left).await;
    }
    let restore: Option<Vec<&str>> = match fault {
        Fault::RelayLeader | Fault::Projector | Fault::ApiNode | Fault::RabbitNode => {
            Some(vec!["start", &part])
        }
        Fault::MemoryAlarm => Some(vec!["memory-alarm", "off"]),
        Fault::Broker => Some(vec!["broker-start"]),
        Fault::PrimaryFast | Fault::PrimaryImmediate | Fault::Replica => None,
    };
    if let Some(restore) = restore {
        if let Err(problem) = cluster(script, &restore).await {
            problems.push(problem);
        }
    }
    let restored_at_ms = unix_ms();
    let deadline = Instant::now() + RECOVERY_TIMEOUT;
    let recovered_at_ms = loop {
        let caught_up = samples.lock().ok().and_then(|s| {
            s.iter()
                .find(|s| s.at_ms >= restored_at_ms && s.caught_up())
                .copied()
        });
        if let Some(sample) = caught_up {
            break Some(sample.at_ms);
        }
        if Instant::now() > deadline {
            break None;
        }
        let latest = samples.lock().ok().and_then(|s| s.last().copied());
        progress.tick(&format!(
            "{fault:?}: waiting for lag under {RECOVERED_LAG_S} s (relay {:?} s, projections {:?} s)",
            latest.and_then(|s| s.relay_lag_s),
            latest.and_then(|s| s.projection_lag_s)
        ));
        tokio::time::sleep(HEALTH_INTERVAL).await;
    };
    let until = recovered_at_ms.unwrap_or_else(unix_ms);
    let (relay_lag_max_s, projection_lag_max_s) = samples
        .lock()
        .map(|s| {
            s.iter()
                .filter(|s| (injected_at_ms..=until).contains(&s.at_ms))
                .fold((0.0_f64, 0.0_f64), |(r, p), s| {
                    (
                        r.max(s.relay_lag_s.unwrap_or(0.0)),
                        p.max(s.projection_lag_s.unwrap_or(0.0)),
                    )
                })
        })
        .unwrap_or((0.0, 0.0));
    FaultReport {
        fault,
        part,
        injected_at_ms,
        restored_at_ms: Some(restored_at_ms),
        recovered_at_ms,
        seconds_to_recover: recovered_at_ms
            .map(|at| at.saturating_sub(injected_at_ms) as f64 / 1000.0),
        seconds_after_restore: recovered_at_ms
            .map(|at| at.saturating_sub(restored_at_ms) as f64 / 1000.0),
        takeover_ms,
        relay_lag_max_s,
        projection_lag_max_s,
        client_errors: BTreeMap::new(),
        problems,
    }
}

/// The health address of the stand-by of a killed relay or status projector.
fn standby_of(fault: Fault, part: &str) -> Option<&'static str> {
    let pair = match fault {
        Fault::RelayLeader => RELAY_NODES,
        Fault::Projector => STATUS_PROJECTORS,
        _ => return None,
    };
    pair.iter()
        .find(|(name, _)| *name != part)
        .map(|(_, base)| *base)
}

/// Polls the stand-by until it works, bounded by `TAKEOVER_TIMEOUT`; ms since `since_ms`.
async fn took_over(
    http: &reqwest::Client,
    fault: Fault,
    standby: &str,
    since_ms: u64,
) -> Option<u64> {
    let url = format!("{standby}/health");
    let applied_before = get_json(http, &url).await.map(|h| applied_status(&h));
    let deadline = Instant::now() + TAKEOVER_TIMEOUT;
    while Instant::now() < deadline {
        if let Some(health) = get_json(http, &url).await {
            let working = match fault {
                Fault::RelayLeader => health["relay"]["leading"] == true,
                _ => applied_before.is_some_and(|before| applied_status(&health) > before),
            };
            if working {
                return Some(unix_ms().saturating_sub(since_ms));
            }
        }
        tokio::time::sleep(TAKEOVER_POLL).await;
    }
    None
}

fn applied_status(health: &Value) -> u64 {
    health["applied_here"]["status"].as_u64().unwrap_or(0)
}

fn fallback_part(fault: Fault) -> &'static str {
    match fault {
        Fault::RelayLeader => "relay-1",
        Fault::Projector => "projector-status-1",
        Fault::ApiNode => "api-1",
        Fault::RabbitNode => "rabbit-2",
        Fault::MemoryAlarm | Fault::Broker => "rabbitmq",
        Fault::PrimaryFast | Fault::PrimaryImmediate => "pg-primary",
        Fault::Replica => "pg-replica",
    }
}

/// The part a fault hits: the relay that leads, the status projector that holds the queue
/// (the one whose applied count is the higher), else a fixed one.
async fn target(http: &reqwest::Client, fault: Fault) -> Result<String, String> {
    match fault {
        Fault::RelayLeader => {
            for (part, base) in RELAY_NODES {
                if let Some(health) = get_json(http, &format!("{base}/health")).await {
                    if health["relay"]["leading"] == true {
                        return Ok(part.to_owned());
                    }
                }
            }
            Err("no relay said it leads".into())
        }
        Fault::Projector => {
            let mut best: Option<(&str, u64)> = None;
            for (part, base) in STATUS_PROJECTORS {
                if let Some(health) = get_json(http, &format!("{base}/health")).await {
                    let applied = health["applied_here"]["status"].as_u64().unwrap_or(0);
                    if best.is_none_or(|(_, most)| applied > most) {
                        best = Some((part, applied));
                    }
                }
            }
            best.map(|(part, _)| part.to_owned())
                .ok_or_else(|| "no status projector answered".into())
        }
        other => Ok(fallback_part(other).to_owned()),
    }
}

async fn cluster(script: &Path, args: &[&str]) -> Result<(), String> {
    let run = Command::new(script)
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(CLUSTER_STEP_TIMEOUT, run).await {
        Ok(Ok(output)) if output.status.success() => Ok(()),
        Ok(Ok(output)) => {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let tail: Vec<&str> = stderr.lines().rev().take(3).collect();
            Err(format!(
                "cluster.sh {} failed ({}): {}",
                args.join(" "),
                output.status,
                tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
            ))
        }
        Ok(Err(error)) => Err(format!("cluster.sh {}: {error}", args.join(" "))),
        Err(_) => Err(format!(
            "cluster.sh {} took over {} s",
            args.join(" "),
            CLUSTER_STEP_TIMEOUT.as_secs()
        )),
    }
}

async fn get_json(http: &reqwest::Client, url: &str) -> Option<Value> {
    let response = http.get(url).send().await.ok()?;
    response.json().await.ok()
}

/// Reads relay and projection lag from whichever API node answers, four times a second.
async fn sample_health(http: reqwest::Client, samples: Arc<Mutex<Vec<Sample>>>) {
    loop {
        let mut sample = Sample {
            at_ms: unix_ms(),
            relay_lag_s: None,
            projection_lag_s: None,
        };
        for base in API_NODES {
            let Some(health) = get_json(&http, &format!("{base}/health")).await else {
                continue;
            };
            let relay = health["relay"]["seconds_behind"].as_f64();
            let projections = health["projections"].as_array().and_then(|all| {
                let lags: Option<Vec<f64>> =
                    all.iter().map(|p| p["seconds_behind"].as_f64()).collect();
                lags.filter(|l| !l.is_empty())
                    .map(|l| l.into_iter().fold(0.0, f64::max))
            });
            if relay.is_some() && projections.is_some() {
                sample.relay_lag_s = relay;
                sample.projection_lag_s = projections;
                break;
            }
        }
        if let Ok(mut all) = samples.lock() {
            if all.len() >= SAMPLES_MAX {
                all.drain(..SAMPLES_MAX / 2);
            }
            all.push(sample);
        }
        tokio::time::sleep(HEALTH_INTERVAL).await;
    }
}

fn read_acks(path: &Path) -> Result<Vec<AckRecord>, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    Ok(text
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect())
}

/// A bar over the faults on a terminal; otherwise a line now and then.
struct Progress {
    bar: Option<ProgressBar>,
    last_line: Mutex<Instant>,
    started: Instant,
}

impl Progress {
    fn new(faults: usize) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(faults as u64);
            bar.set_style(
                ProgressStyle::with_template(
                    "[chaos] {elapsed_precise} {bar:30} {pos}/{len} faults {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar
        });
        Progress {
            bar,
            last_line: Mutex::new(Instant::now()),
            started: Instant::now(),
        }
    }

    /// A line (or the bar's message) now.
    fn say(&self, text: &str) {
        match &self.bar {
            Some(bar) => bar.set_message(text.to_owned()),
            None => eprintln!(
                "[chaos] {:>6.1} s {text}",
                self.started.elapsed().as_secs_f64()
            ),
        }
        if let Ok(mut last) = self.last_line.lock() {
            *last = Instant::now();
        }
    }

    /// Like `say`, but without a terminal at most once per `PROGRESS_LINE_INTERVAL`.
    fn tick(&self, text: &str) {
        let due = self.bar.is_some()
            || self
                .last_line
                .lock()
                .map(|last| last.elapsed() >= PROGRESS_LINE_INTERVAL)
                .unwrap_or(true);
        if due {
            self.say(text);
        }
    }

    fn advance(&self) {
        if let Some(bar) = &self.bar {
            bar.inc(1);
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish();
        }
    }
}

pub fn print_summary(report: &ChaosReport) {
    eprintln!(
        "\n[chaos] {} after {:.0} s: {} commands acknowledged, errors {:?}, queues {}",
        if report.passed { "PASSED" } else { "FAILED" },
        report.elapsed_s,
        report.commands_ok,
        report.command_errors,
        report.queue_type
    );
    eprintln!(
        "{:<18} {:<20} {:>10} {:>10} {:>10} {:>10} {:>11}  client errors",
        "fault", "part", "recover_s", "restored_s", "relay_s", "proj_s", "takeover_ms"
    );
    for fault in &report.faults {
        eprintln!(
            "{:<18} {:<20} {:>10} {:>10} {:>10.1} {:>10.1} {:>11}  {:?}",
            format!("{:?}", fault.fault),
            fault.part,
            fault
                .seconds_to_recover
                .map_or_else(|| "never".to_owned(), |s| format!("{s:.1}")),
            fault
                .seconds_after_restore
                .map_or_else(|| "-".to_owned(), |s| format!("{s:.1}")),
            fault.relay_lag_max_s,
            fault.projection_lag_max_s,
            fault
                .takeover_ms
                .map_or_else(|| "-".to_owned(), |ms| ms.to_string()),
            fault.client_errors
        );
    }
    for violation in &report.violations {
        eprintln!("[chaos] violated: {violation}");
    }
}
