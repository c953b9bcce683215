//! `payledger-bench run`: drives whole payment lifecycles through the public API of a running
//! payledger (sandbox provider, real signed webhooks), then checks the status projection
//! against the event store for every payment it created.
//!
//! Model: `--concurrency C` checkout sessions; each drives one payment at a time:
//!
//!   create (Idempotency-Key) -> read-your-write GET ?min_version=v  [projection lag]
//!   -> wait for the webhook's outcome on the status projection
//!   -> manual: capture -> GET ?min_version=v                        [projection lag]
//!   -> refund: refund half -> GET ?min_version=v                    [projection lag]
//!
//! Everything is bounded: sessions (C), payments (N), run time (S), retries of one command
//! (3, same Idempotency-Key, so a retry never pays twice), waits on the projection (~30 s per
//! read), the drain wait and the verification.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use serde::Serialize;
use serde_json::{json, Value};

use crate::ack::{self, AckCommand, AckRecord, AckSender};
use crate::http::{Api, CallError};
use crate::stats::{summarize, Summary};

/// Tries of one command (the first and two retries, same Idempotency-Key).
const COMMAND_TRIES: u32 = 3;
/// The least stream version of a sandbox payment's outcome: `PaymentInitiated` and its
/// attempt's intent, then the webhook's outcome, usually after the provider's transaction
/// (version 4) but before it when the webhook is handled first (by another API node).
const OUTCOME_VERSION_MIN: i64 = 3;
const OUTCOME_EVENTS: [&str; 3] = ["PaymentApproved", "PaymentAuthorized", "PaymentDeclined"];
/// Reads of `GET ?min_version` before giving up on the projection (each waits <= 2 s).
const PROJECTION_READS_MAX: u32 = 15;
/// How long a session waits for a webhook's outcome on the projection.
const OUTCOME_WAIT_MAX: Duration = Duration::from_secs(30);
/// Pause before asking again when the answer came at once: the server waits only for a
/// version the stream already has, and the webhook's outcome may not be appended yet.
const OUTCOME_REREAD_PAUSE: Duration = Duration::from_millis(20);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Flow {
    /// Automatic capture, approved by webhook.
    Approved,
    /// Declined by webhook (an intended decline, not an error).
    Declined,
    /// Manual capture: authorized by webhook, then `POST capture`.
    Manual,
    /// Automatic capture, approved by webhook, then a partial refund.
    Refund,
    /// Automatic capture of a card by its BIN (credit, and every third one debit): the
    /// sandbox's processor approves or declines it with its success rate
    /// (`SANDBOX_SUCCESS_RATE`), as on a real day.
    Processed,
}

impl Flow {
    fn token(self, n: u64) -> &'static str {
        match self {
            Flow::Declined => "tok_sandbox_declined",
            Flow::Processed if n.is_multiple_of(3) => "tok_bin_400005",
            Flow::Processed => "tok_bin_424242",
            _ => "tok_sandbox_approved",
        }
    }
    fn capture(self) -> &'static str {
        match self {
            Flow::Manual => "manual",
            _ => "automatic",
        }
    }
    /// What the status projection may show once the webhook's outcome is applied.
    fn outcomes(self) -> &'static [&'static str] {
        match self {
            Flow::Approved | Flow::Refund => &["APPROVED"],
            Flow::Declined => &["DECLINED"],
            Flow::Manual => &["AUTHORIZED"],
            Flow::Processed => &["APPROVED", "DECLINED"],
        }
    }
    /// The statuses the flow may end in.
    fn final_statuses(self) -> &'static [&'static str] {
        match self {
            Flow::Approved | Flow::Manual => &["APPROVED"],
            Flow::Declined => &["DECLINED"],
            Flow::Refund => &["PARTIALLY_REFUNDED"],
            Flow::Processed => &["APPROVED", "DECLINED"],
        }
    }
}

/// Share of each flow; payments are assigned by smooth weighted round-robin, so any prefix
/// of the run has (nearly) the asked mix.
#[derive(Debug, Clone, Serialize)]
pub struct Mix {
    pub approved: u32,
    pub declined: u32,
    pub manual: u32,
    pub refund: u32,
    #[serde(default)]
    pub processed: u32,
}

impl std::str::FromStr for Mix {
    type Err = String;
    fn from_str(text: &str) -> Result<Mix, String> {
        let mut mix = Mix {
            approved: 0,
            declined: 0,
            manual: 0,
            refund: 0,
            processed: 0,
        };
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, weight) = part
                .split_once('=')
                .ok_or_else(|| format!("`{part}`: expected name=weight"))?;
            let weight: u32 = weight
                .trim()
                .parse()
                .map_err(|_| format!("`{part}`: weight must be a whole number"))?;
            if weight > 1_000 {
                return Err(format!("`{part}`: weight at most 1000"));
            }
            match name.trim() {
                "approved" => mix.approved = weight,
                "declined" => mix.declined = weight,
                "manual" => mix.manual = weight,
                "refund" => mix.refund = weight,
                "processed" => mix.processed = weight,
                other => {
                    return Err(format!(
                        "unknown flow `{other}` (approved, declined, manual, refund, processed)"
                    ))
                }
            }
        }
        if mix.weights().iter().all(|(_, w)| *w == 0) {
            return Err("the mix needs at least one flow with a weight above 0".into());
        }
        Ok(mix)
    }
}

impl Mix {
    fn weights(&self) -> [(Flow, u32); 5] {
        [
            (Flow::Approved, self.approved),
            (Flow::Declined, self.declined),
            (Flow::Manual, self.manual),
            (Flow::Refund, self.refund),
            (Flow::Processed, self.processed),
        ]
    }

    /// One cycle of flows (length = sum of weights), interleaved.
    pub fn schedule(&self) -> Vec<Flow> {
        let weights = self.weights();
        let total: i64 = weights.iter().map(|(_, w)| i64::from(*w)).sum();
        let mut current = [0i64; 5];
        (0..total)
            .map(|_| {
                for (c, (_, w)) in current.iter_mut().zip(weights.iter()) {
                    *c += i64::from(*w);
                }
                let (best, _) = current
                    .iter()
                    .enumerate()
                    .max_by_key(|(i, c)| (**c, -(*i as i64)))
                    .expect("five flows");
                current[best] -= total;
                weights[best].0
            })
            .collect()
    }
}

#[derive(Debug, Clone)]
pub struct RunConfig {
    pub url: String,
    pub key: String,
    /// An operator key, for the relay and projection figures of `/health`.
    pub operator_key: Option<String>,
    pub payments: u64,
    pub concurrency: usize,
    pub duration: Duration,
    pub mix: Mix,
    /// Payments started per second at most (open-loop pacing); none: as fast as C allows.
    pub rate: Option<f64>,
    pub label: String,
    pub request_timeout: Duration,
    pub drain_timeout: Duration,
    pub health_interval: Duration,
    pub verify: bool,
    /// Share of payments whose commands get a projection-lag read (1.0: every command). An
    /// unsampled approved/declined payment is not waited on at all (its final status is
    /// checked at the end); manual/refund payments always wait for the webhook's outcome.
    pub lag_sample: f64,
    /// Append a line per command try here (see `ack`).
    pub ack_log: Option<PathBuf>,
}

#[derive(Debug, Clone)]
struct Tracked {
    id: String,
    flow: Flow,
}

#[derive(Default)]
struct Recorder {
    latency: BTreeMap<&'static str, Vec<f64>>,
    lag: BTreeMap<&'static str, Vec<f64>>,
    outcome: Vec<f64>,
    errors: BTreeMap<String, u64>,
    commands_ok: BTreeMap<&'static str, u64>,
    payments: Vec<Tracked>,
    completed: u64,
    declines: u64,
    lag_over_2s: u64,
}

struct Shared {
    api: Api,
    config: RunConfig,
    run_id: String,
    schedule: Vec<Flow>,
    next: AtomicU64,
    started: Instant,
    deadline: Instant,
    recorder: Mutex<Recorder>,
    ack: Option<AckSender>,
}

impl Shared {
    fn error(&self, kind: String) {
        let mut r = self.recorder.lock().expect("recorder");
        *r.errors.entry(kind).or_insert(0) += 1;
    }

    /// A command with bounded retries (same Idempotency-Key). Latency is that of the attempt
    /// that got the 2xx; every failed attempt is counted under its kind. Every try goes to
    /// the ack log (when there is one). `None` ends the payment's flow, never the run.
    async fn command(
        &self,
        command: AckCommand,
        payment_id: Option<&str>,
        path: &str,
        idempotency_key: &str,
        body: &Value,
    ) -> Option<(Value, Instant)> {
        let kind = command.name();
        for attempt in 1..=COMMAND_TRIES {
            let sent = Instant::now();
            let answer = self.api.post(path, idempotency_key, body).await;
            let answered = Instant::now();
            if let Some(ack) = &self.ack {
                ack.record(AckRecord::of(
                    command,
                    payment_id,
                    Some(idempotency_key),
                    attempt,
                    &answer,
                    answered - self.started,
                    answered - sent,
                ))
                .await;
            }
            match answer {
                Ok((_, json)) => {
                    let ms = (answered - sent).as_secs_f64() * 1e3;
                    let mut r = self.recorder.lock().expect("recorder");
                    r.latency.entry(kind).or_default().push(ms);
                    *r.commands_ok.entry(kind).or_insert(0) += 1;
                    return Some((json, answered));
                }
                Err(error) => {
                    self.error(format!("{kind}: {}", error.kind()));
                    if !error.retryable() || attempt == COMMAND_TRIES {
                        return None;
                    }
                    tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
                }
            }
        }
        None
    }

    /// Projection lag of one command: from its 2xx (`answered`) until `GET ?min_version=v`
    /// answers with version >= v. Returns the row read.
    async fn lag(
        &self,
        kind: &'static str,
        id: &str,
        version: i64,
        answered: Instant,
    ) -> Option<Value> {
        let path = format!("/v1/payments/{id}?min_version={version}");
        for _ in 0..PROJECTION_READS_MAX {
            match self.api.get(&path).await {
                Ok((_, row)) if row["version"].as_i64().is_some_and(|v| v >= version) => {
                    let ms = answered.elapsed().as_secs_f64() * 1e3;
                    let mut r = self.recorder.lock().expect("recorder");
                    r.lag.entry(kind).or_default().push(ms);
                    if ms > 2_000.0 {
                        r.lag_over_2s += 1;
                    }
                    return Some(row);
                }
                Ok(_) => {} // the server waited its 2 s; ask again
                Err(CallError::Status(404, _)) => {
                    // not in the projection yet and the server's wait ran out
                }
                Err(error) => {
                    self.error(format!("read ({kind} lag): {}", error.kind()));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        self.error(format!(
            "{kind}: projection never showed the command's version"
        ));
        None
    }

    /// Waits for the webhook's outcome (the status leaves `PENDING`) on the status projection.
    async fn outcome(&self, id: &str, flow: Flow, seen: Option<Value>, created: Instant) -> bool {
        let reached = |r: &Value| {
            r["version"]
                .as_i64()
                .is_some_and(|v| v >= OUTCOME_VERSION_MIN)
                && r["status"].as_str().is_some_and(|s| s != "PENDING")
        };
        // A row still PENDING at version v: the outcome is a later version.
        let next = |r: &Value| r["version"].as_i64().map_or(OUTCOME_VERSION_MIN, |v| v + 1);
        let mut want = seen.as_ref().map_or(OUTCOME_VERSION_MIN, next);
        let mut row = seen.filter(reached);
        let deadline = Instant::now() + OUTCOME_WAIT_MAX;
        while row.is_none() && Instant::now() < deadline {
            let path = format!(
                "/v1/payments/{id}?min_version={}",
                want.max(OUTCOME_VERSION_MIN)
            );
            match self.api.get(&path).await {
                Ok((_, r)) if reached(&r) => row = Some(r),
                Ok((_, r)) => {
                    if r["version"].as_i64().is_some_and(|v| v < want) {
                        tokio::time::sleep(OUTCOME_REREAD_PAUSE).await;
                    }
                    want = next(&r).max(want);
                }
                Err(CallError::Status(404, _)) => {
                    tokio::time::sleep(OUTCOME_REREAD_PAUSE).await;
                }
                Err(error) => {
                    self.error(format!("read (outcome): {}", error.kind()));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        let Some(row) = row else {
            self.error("outcome: no webhook outcome on the projection in ~30 s".into());
            return false;
        };
        let status = row["status"].as_str().unwrap_or("?");
        if !flow.outcomes().contains(&status) {
            self.error(format!(
                "outcome: status {status} where {} was expected",
                flow.outcomes().join(" or ")
            ));
            return false;
        }
        let mut r = self.recorder.lock().expect("recorder");
        r.outcome.push(created.elapsed().as_secs_f64() * 1e3);
        if status == "DECLINED" {
            r.declines += 1;
        }
        true
    }

    async fn payment(&self, n: u64) {
        let flow = self.schedule[(n % self.schedule.len() as u64) as usize];
        let key = format!("{}-{n}", self.run_id);
        let cents: u64 = 1_000 + (n % 1_000) * 100; // even, so half is exact
        let amount = format!("{}.{:02}", cents / 100, cents % 100);
        let body = json!({
            "amount": amount,
            "currency": "USD",
            "reference": key,
            "payment_method": {"type": "CARD", "token": flow.token(n)},
            "capture": flow.capture(),
        });
        let f = self.config.lag_sample;
        let sampled = ((n + 1) as f64 * f).floor() > (n as f64 * f).floor();
        let Some((created, answered)) = self
            .command(AckCommand::Create, None, "/v1/payments", &key, &body)
            .await
        else {
            return;
        };
        let (Some(id), Some(version)) = (created["id"].as_str(), created["version"].as_i64())
        else {
            self.error("create: answer without id or version".into());
            return;
        };
        let id = id.to_owned();
        self.recorder
            .lock()
            .expect("recorder")
            .payments
            .push(Tracked {
                id: id.clone(),
                flow,
            });
        let seen = if sampled {
            self.lag("create", &id, version, answered).await
        } else {
            None
        };
        let needs_outcome = matches!(flow, Flow::Manual | Flow::Refund);
        if (sampled || needs_outcome) && !self.outcome(&id, flow, seen, answered).await {
            return;
        }
        let done = match flow {
            Flow::Approved | Flow::Declined | Flow::Processed => true,
            Flow::Manual => {
                let path = format!("/v1/payments/{id}/capture");
                match self
                    .command(
                        AckCommand::Capture,
                        Some(&id),
                        &path,
                        &format!("{key}-c"),
                        &json!({}),
                    )
                    .await
                {
                    Some((json, answered)) => match json["version"].as_i64() {
                        Some(_) if !sampled => true,
                        Some(v) => self.lag("capture", &id, v, answered).await.is_some(),
                        None => {
                            self.error("capture: answer without version".into());
                            false
                        }
                    },
                    None => false,
                }
            }
            Flow::Refund => {
                let half = cents / 2;
                let path = format!("/v1/payments/{id}/refunds");
                let body = json!({
                    "amount": format!("{}.{:02}", half / 100, half % 100),
                    "reason": "bench",
                });
                match self
                    .command(
                        AckCommand::Refund,
                        Some(&id),
                        &path,
                        &format!("{key}-r"),
                        &body,
                    )
                    .await
                {
                    Some((json, answered)) => {
                        if json["status"] != "SUCCEEDED" {
                            self.error(format!("refund: status {}", json["status"]));
                        }
                        match json["payment"]["version"].as_i64() {
                            Some(_) if !sampled => true,
                            Some(v) => self.lag("refund", &id, v, answered).await.is_some(),
                            None => {
                                self.error("refund: answer without payment.version".into());
                                false
                            }
                        }
                    }
                    None => false,
                }
            }
        };
        if done {
            self.recorder.lock().expect("recorder").completed += 1;
        }
    }

    async fn session(self: Arc<Self>) {
        loop {
            if Instant::now() >= self.deadline {
                return;
            }
            let n = self.next.fetch_add(1, Ordering::Relaxed);
            if n >= self.config.payments {
                return;
            }
            if let Some(rate) = self.config.rate {
                let slot = self.started + Duration::from_secs_f64(n as f64 / rate);
                if slot >= self.deadline {
                    return;
                }
                tokio::time::sleep_until(slot.into()).await;
            }
            self.payment(n).await;
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct HealthSample {
    pub t_s: f64,
    pub health_ms: f64,
    pub published_total: i64,
    pub relay_events_behind: i64,
    pub projections_events_behind_max: i64,
}

fn health_sample(json: &Value, t0: Instant, took: Duration) -> Option<HealthSample> {
    let relay = json.get("relay")?;
    let behind_max = json["projections"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .filter_map(|p| p["events_behind"].as_i64())
                .max()
                .unwrap_or(0)
        })
        .unwrap_or(0);
    Some(HealthSample {
        t_s: (t0.elapsed().as_secs_f64() * 1e3).round() / 1e3,
        health_ms: (took.as_secs_f64() * 1e6).round() / 1e3,
        published_total: relay["published_total"].as_i64()?,
        relay_events_behind: relay["events_behind"].as_i64()?,
        projections_events_behind_max: behind_max,
    })
}

async fn sample_health(api: &Api, t0: Instant) -> Option<HealthSample> {
    let sent = Instant::now();
    let json = api.health().await.ok()?;
    health_sample(&json, t0, sent.elapsed())
}

#[derive(Debug, Clone, Serialize)]
pub struct RelayReport {
    pub published_at_start: i64,
    pub published_at_end: i64,
    pub events_per_s: f64,
    pub relay_events_behind_max: i64,
    pub projections_events_behind_max: i64,
    pub samples: Vec<HealthSample>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Verification {
    pub payments_checked: usize,
    pub events_in_store: u64,
    pub webhook_outcomes: u64,
    pub mismatches: u64,
    pub unexpected_final_status: u64,
    /// Declined-flow payments that ended DECLINED, as intended.
    pub declined_as_intended: u64,
    pub examples: Vec<String>,
    pub event_types: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub label: String,
    pub url: String,
    pub concurrency: usize,
    pub rate_limit_payments_per_s: Option<f64>,
    pub lag_sample: f64,
    pub mix: Mix,
    pub payments_limit: u64,
    pub duration_limit_s: f64,
    pub elapsed_s: f64,
    pub payments_started: usize,
    pub payments_completed: u64,
    pub payments_per_s: f64,
    pub commands: BTreeMap<&'static str, u64>,
    pub commands_total: u64,
    /// Client commands (create, capture, refund) answered 2xx, per second.
    pub commands_per_s: f64,
    /// Webhook commands the sandbox made (one outcome per payment), per second, from the
    /// verified event streams.
    pub webhook_commands_per_s: Option<f64>,
    /// Events appended by this run's payments (from the event store), per second.
    pub events_appended_per_s: Option<f64>,
    pub latency_ms: BTreeMap<&'static str, Summary>,
    pub projection_lag_ms: Summary,
    pub projection_lag_ms_by_command: BTreeMap<&'static str, Summary>,
    pub projection_lag_over_2s: u64,
    /// From create's 2xx until the projection shows the webhook's outcome (includes the
    /// sandbox's webhook delay).
    pub outcome_ms: Summary,
    pub relay: RelayReport,
    pub drain_ms: Option<f64>,
    pub declines_intended: u64,
    /// /proc/loadavg before and after: on a shared machine, other work shows here.
    pub loadavg_at_start: String,
    pub loadavg_at_end: String,
    pub errors: BTreeMap<String, u64>,
    pub errors_total: u64,
    pub verification: Option<Verification>,
    pub ack_log: Option<AckLogReport>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AckLogReport {
    pub path: String,
    /// Lines this run appended (one per command try).
    pub lines: u64,
    /// Why lines may be missing from it.
    pub error: Option<String>,
}

/// Waits until the relay and every projection have caught up (bounded).
async fn drain(
    api: &Api,
    t0: Instant,
    timeout: Duration,
    samples: &mut Vec<HealthSample>,
) -> Option<f64> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if let Some(s) = sample_health(api, t0).await {
            let caught_up = s.relay_events_behind == 0 && s.projections_events_behind_max == 0;
            samples.push(s);
            if caught_up {
                return Some(start.elapsed().as_secs_f64() * 1e3);
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    None
}

async fn verify(api: &Api, payments: &[Tracked], concurrency: usize) -> Verification {
    struct One {
        events: u64,
        webhook: bool,
        declined: bool,
        types: Vec<String>,
        problem: Option<(bool, String)>, // (is a store/projection mismatch, text)
    }
    let check = |t: Tracked| async move {
        let mut one = One {
            events: 0,
            webhook: false,
            declined: false,
            types: Vec::new(),
            problem: None,
        };
        let events = match api.get(&format!("/v1/payments/{}/events", t.id)).await {
            Ok((_, json)) => json["data"].as_array().cloned().unwrap_or_default(),
            Err(e) => {
                one.problem = Some((true, format!("{}: events unreadable: {}", t.id, e.kind())));
                return one;
            }
        };
        one.events = events.len() as u64;
        one.types = events
            .iter()
            .map(|e| e["type"].as_str().unwrap_or("?").to_owned())
            .collect();
        one.webhook = events
            .iter()
            .filter_map(|e| e["type"].as_str())
            .any(|t| OUTCOME_EVENTS.contains(&t));
        let contiguous = events
            .iter()
            .enumerate()
            .all(|(i, e)| e["sequence"].as_i64() == Some(i as i64 + 1));
        if !contiguous {
            one.problem = Some((
                true,
                format!("{}: store sequences not 1..={}", t.id, events.len()),
            ));
            return one;
        }
        let n = events.len() as i64;
        match api
            .get(&format!("/v1/payments/{}?min_version={n}", t.id))
            .await
        {
            Ok((_, row)) => {
                let version = row["version"].as_i64().unwrap_or(-1);
                let status = row["status"].as_str().unwrap_or("?");
                one.declined = status == "DECLINED";
                if version != n {
                    one.problem = Some((
                        true,
                        format!(
                            "{}: projection version {version}, store has {n} events",
                            t.id
                        ),
                    ));
                } else if !t.flow.final_statuses().contains(&status) {
                    one.problem = Some((
                        false,
                        format!(
                            "{}: final status {status}, expected {}",
                            t.id,
                            t.flow.final_statuses().join(" or ")
                        ),
                    ));
                }
            }
            Err(e) => {
                one.problem = Some((
                    true,
                    format!("{}: projection unreadable: {}", t.id, e.kind()),
                ));
            }
        }
        one
    };
    let results: Vec<One> = futures::stream::iter(payments.iter().cloned().map(check))
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    let mut v = Verification {
        payments_checked: results.len(),
        events_in_store: 0,
        webhook_outcomes: 0,
        mismatches: 0,
        unexpected_final_status: 0,
        declined_as_intended: 0,
        examples: Vec::new(),
        event_types: BTreeMap::new(),
    };
    for one in results {
        v.events_in_store += one.events;
        v.webhook_outcomes += u64::from(one.webhook);
        v.declined_as_intended += u64::from(one.declined);
        for t in one.types {
            *v.event_types.entry(t).or_insert(0) += 1;
        }
        if let Some((mismatch, text)) = one.problem {
            if mismatch {
                v.mismatches += 1;
            } else {
                v.unexpected_final_status += 1;
            }
            if v.examples.len() < 20 {
                v.examples.push(text);
            }
        }
    }
    v
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

fn run_id() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("bench-{:x}-{}", nanos, std::process::id())
}

fn per_s(count: f64, seconds: f64) -> f64 {
    ((count / seconds.max(1e-9)) * 10.0).round() / 10.0
}

pub async fn run(config: RunConfig) -> Result<RunReport, String> {
    if config.concurrency == 0 || config.concurrency > 1_024 {
        return Err("--concurrency must be 1 to 1024".into());
    }
    if config.payments == 0 || config.payments > 1_000_000 {
        return Err("--payments must be 1 to 1000000".into());
    }
    if config.duration.is_zero() || config.duration > Duration::from_secs(3_600) {
        return Err("--duration must be 1 to 3600 seconds".into());
    }
    if !(0.0..=1.0).contains(&config.lag_sample) {
        return Err("--lag-sample must be 0 to 1".into());
    }
    if config.rate.is_some_and(|r| !(r > 0.0 && r <= 100_000.0)) {
        return Err("--rate must be above 0 and at most 100000".into());
    }
    let api = Api::new(
        &config.url,
        &config.key,
        config.operator_key.as_deref(),
        config.concurrency + 4,
        config.request_timeout,
    )
    .map_err(|e| format!("http client: {e}"))?;
    let loadavg_at_start = loadavg();
    let t0 = Instant::now();
    let first = sample_health(&api, t0).await.ok_or_else(|| {
        format!(
            "{}/health does not answer with relay progress (it shows it to an operator \
                 key: --operator-key or PAYLEDGER_OPERATOR_KEY)",
            config.url
        )
    })?;

    let (ack, ack_writer) = match &config.ack_log {
        Some(path) => {
            let (sender, writer) = ack::open(path).await?;
            (Some(sender), Some(writer))
        }
        None => (None, None),
    };
    let started = Instant::now();
    let shared = Arc::new(Shared {
        api: api.clone(),
        schedule: config.mix.schedule(),
        run_id: run_id(),
        next: AtomicU64::new(0),
        started,
        deadline: started + config.duration,
        recorder: Mutex::new(Recorder::default()),
        config: config.clone(),
        ack,
    });
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let sampler = {
        let api = api.clone();
        let interval = config.health_interval;
        tokio::spawn(async move {
            let mut samples = Vec::new();
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(interval) => {}
                    _ = stop_rx.changed() => return samples,
                }
                if let Some(s) = sample_health(&api, t0).await {
                    samples.push(s);
                }
            }
        })
    };
    let sessions: Vec<_> = (0..config.concurrency)
        .map(|_| tokio::spawn(shared.clone().session()))
        .collect();
    for s in sessions {
        s.await.map_err(|e| format!("session panicked: {e}"))?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let recorder = std::mem::take(&mut *shared.recorder.lock().expect("recorder"));
    // The last sender goes with `shared`: the writer then drains its queue and syncs the file.
    drop(shared);
    let ack_log = match (&config.ack_log, ack_writer) {
        (Some(path), Some(writer)) => Some(match writer.finish().await {
            Ok(lines) => AckLogReport {
                path: path.display().to_string(),
                lines,
                error: None,
            },
            Err(error) => AckLogReport {
                path: path.display().to_string(),
                lines: 0,
                error: Some(error),
            },
        }),
        _ => None,
    };
    let _ = stop_tx.send(true);
    let mut samples = sampler.await.map_err(|e| format!("sampler: {e}"))?;
    samples.insert(0, first.clone());
    let at_end = sample_health(&api, t0).await;
    if let Some(s) = &at_end {
        samples.push(s.clone());
    }
    let drain_ms = if config.verify {
        drain(&api, t0, config.drain_timeout, &mut samples).await
    } else {
        None
    };

    let verification = if config.verify {
        Some(verify(&api, &recorder.payments, config.concurrency).await)
    } else {
        None
    };

    let published_end = at_end
        .as_ref()
        .map_or(first.published_total, |s| s.published_total);
    let end_t = at_end.as_ref().map_or(first.t_s, |s| s.t_s);
    let relay = RelayReport {
        published_at_start: first.published_total,
        published_at_end: published_end,
        events_per_s: per_s(
            (published_end - first.published_total) as f64,
            end_t - first.t_s,
        ),
        relay_events_behind_max: samples
            .iter()
            .map(|s| s.relay_events_behind)
            .max()
            .unwrap_or(0),
        projections_events_behind_max: samples
            .iter()
            .map(|s| s.projections_events_behind_max)
            .max()
            .unwrap_or(0),
        samples,
    };
    let commands_total: u64 = recorder.commands_ok.values().sum();
    let all_lag: Vec<f64> = recorder.lag.values().flatten().copied().collect();
    let mut errors = recorder.errors;
    if let Some(v) = &verification {
        if v.mismatches > 0 {
            errors.insert("verify: projection != event store".into(), v.mismatches);
        }
        if v.unexpected_final_status > 0 {
            errors.insert(
                "verify: unexpected final status".into(),
                v.unexpected_final_status,
            );
        }
    }
    if let Some(error) = ack_log.as_ref().and_then(|a| a.error.as_ref()) {
        // A log that lost lines cannot vouch for the run: count it, keep the rest.
        errors.insert(format!("ack log: {error}"), 1);
    }
    if config.verify && drain_ms.is_none() {
        errors.insert(
            "drain: relay/projections did not catch up in time".into(),
            1,
        );
    }
    Ok(RunReport {
        label: config.label.clone(),
        url: config.url.clone(),
        concurrency: config.concurrency,
        rate_limit_payments_per_s: config.rate,
        lag_sample: config.lag_sample,
        mix: config.mix.clone(),
        payments_limit: config.payments,
        duration_limit_s: config.duration.as_secs_f64(),
        elapsed_s: (elapsed * 1e3).round() / 1e3,
        payments_started: recorder.payments.len(),
        payments_completed: recorder.completed,
        payments_per_s: per_s(recorder.completed as f64, elapsed),
        commands_total,
        commands_per_s: per_s(commands_total as f64, elapsed),
        webhook_commands_per_s: verification
            .as_ref()
            .map(|v| per_s(v.webhook_outcomes as f64, elapsed)),
        events_appended_per_s: verification
            .as_ref()
            .map(|v| per_s(v.events_in_store as f64, elapsed)),
        commands: recorder.commands_ok,
        latency_ms: recorder
            .latency
            .iter()
            .map(|(k, v)| (*k, summarize(v)))
            .collect(),
        projection_lag_ms: summarize(&all_lag),
        projection_lag_ms_by_command: recorder
            .lag
            .iter()
            .map(|(k, v)| (*k, summarize(v)))
            .collect(),
        projection_lag_over_2s: recorder.lag_over_2s,
        outcome_ms: summarize(&recorder.outcome),
        relay,
        drain_ms: drain_ms.map(|ms| ms.round()),
        declines_intended: verification
            .as_ref()
            .map_or(recorder.declines, |v| v.declined_as_intended),
        loadavg_at_start,
        loadavg_at_end: loadavg(),
        errors_total: errors.values().sum(),
        errors,
        verification,
        ack_log,
    })
}

pub fn print_table(r: &RunReport) {
    println!(
        "== payledger-bench run `{}`: {} sessions{}, {:.1} s, lag read after {:.0}% of payments' commands, mix approved={} declined={} manual={} refund={} processed={}",
        r.label,
        r.concurrency,
        r.rate_limit_payments_per_s
            .map(|x| format!(", paced at {x:.1} payments/s"))
            .unwrap_or_default(),
        r.elapsed_s,
        r.lag_sample * 100.0,
        r.mix.approved,
        r.mix.declined,
        r.mix.manual,
        r.mix.refund,
        r.mix.processed
    );
    println!(
        "payments: {} started, {} completed, {:.1}/s | client commands: {} ({:.1}/s) | webhook commands: {} | events appended: {}",
        r.payments_started,
        r.payments_completed,
        r.payments_per_s,
        r.commands_total,
        r.commands_per_s,
        r.webhook_commands_per_s
            .map(|x| format!("{x:.1}/s"))
            .unwrap_or_else(|| "-".into()),
        r.events_appended_per_s
            .map(|x| format!("{x:.1}/s"))
            .unwrap_or_else(|| "-".into()),
    );
    println!(
        "{:<22} {:>8} {:>9} {:>9} {:>9} {:>9}",
        "ms", "count", "p50", "p95", "p99", "max"
    );
    let row = |name: &str, s: &Summary| {
        println!(
            "{:<22} {:>8} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
            name, s.count, s.p50, s.p95, s.p99, s.max
        );
    };
    for (k, s) in &r.latency_ms {
        row(&format!("latency {k}"), s);
    }
    row("projection lag (all)", &r.projection_lag_ms);
    for (k, s) in &r.projection_lag_ms_by_command {
        row(&format!("  lag after {k}"), s);
    }
    row("create -> outcome", &r.outcome_ms);
    println!(
        "relay: {:.1} events/s published during the run ({} -> {}), max behind: relay {} / projections {}; drain after load: {}",
        r.relay.events_per_s,
        r.relay.published_at_start,
        r.relay.published_at_end,
        r.relay.relay_events_behind_max,
        r.relay.projections_events_behind_max,
        r.drain_ms
            .map(|ms| format!("{ms:.0} ms"))
            .unwrap_or_else(|| "not measured / timed out".into())
    );
    println!(
        "intended declines: {} | load average: {} -> {}",
        r.declines_intended, r.loadavg_at_start, r.loadavg_at_end
    );
    if r.errors.is_empty() {
        println!("errors: none");
    } else {
        println!("errors: {}", r.errors_total);
        for (kind, n) in &r.errors {
            println!("  {n:>8}  {kind}");
        }
    }
    if let Some(a) = &r.ack_log {
        match &a.error {
            None => println!("ack log: {} lines appended to {}", a.lines, a.path),
            Some(error) => println!("ack log: INCOMPLETE, {error}"),
        }
    }
    if let Some(v) = &r.verification {
        println!(
            "verification: {} payments, {} events in the store, {} projection/store mismatches, {} unexpected final statuses",
            v.payments_checked, v.events_in_store, v.mismatches, v.unexpected_final_status
        );
        for e in &v.examples {
            println!("  {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mix_parses_and_schedules_exact_shares_interleaved() {
        let mix: Mix = "approved=70,declined=10,manual=10,refund=10"
            .parse()
            .unwrap();
        let s = mix.schedule();
        assert_eq!(s.len(), 100);
        let count = |f| s.iter().filter(|x| **x == f).count();
        assert_eq!(count(Flow::Approved), 70);
        assert_eq!(count(Flow::Declined), 10);
        assert_eq!(count(Flow::Manual), 10);
        assert_eq!(count(Flow::Refund), 10);
        // interleaved: the first ten hold each flow at least once
        assert!(s[..10].contains(&Flow::Declined) && s[..10].contains(&Flow::Refund));
    }

    #[test]
    fn a_processed_day_charges_credit_and_debit_bins_and_takes_either_outcome() {
        let mix: Mix = "processed=100".parse().unwrap();
        assert!(mix.schedule().iter().all(|f| *f == Flow::Processed));
        let tokens: Vec<&str> = (0..6).map(|n| Flow::Processed.token(n)).collect();
        assert_eq!(tokens.iter().filter(|t| **t == "tok_bin_400005").count(), 2);
        assert_eq!(tokens.iter().filter(|t| **t == "tok_bin_424242").count(), 4);
        assert_eq!(Flow::Processed.final_statuses(), ["APPROVED", "DECLINED"]);
    }

    #[test]
    fn mix_refuses_nonsense() {
        assert!("approved=0".parse::<Mix>().is_err());
        assert!("bogus=1".parse::<Mix>().is_err());
        assert!("approved=x".parse::<Mix>().is_err());
        assert!("approved".parse::<Mix>().is_err());
    }
}
