//! The acknowledgement log: `run --ack-log <file>` appends one JSON line per command request
//! it sent (every try, retries included) with what came back; `check` holds the event store to
//! every 2xx in it. One definition of the line for the writer and the reader.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncWriteExt, BufWriter};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::http::CallError;

/// Lines waiting for the writer at most: a session that finds the queue full waits for the
/// disk instead of the log growing in memory (or losing a line).
const ACK_QUEUE_LINES: usize = 4_096;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AckCommand {
    Create,
    Capture,
    Refund,
    Void,
}

impl AckCommand {
    pub fn name(self) -> &'static str {
        match self {
            AckCommand::Create => "create",
            AckCommand::Capture => "capture",
            AckCommand::Refund => "refund",
            AckCommand::Void => "void",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AckOutcome {
    /// A 2xx whose answer was read whole: the server promised the command.
    Ok,
    /// Anything else: an error status, no answer, or an answer that could not be read.
    Error,
}

/// One line of the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AckRecord {
    /// When the outcome was known, in ms since the run started.
    pub t_ms: u64,
    /// The same instant as unix ms, to line up with a fault schedule's clock.
    pub at_ms: u64,
    /// From sending the request to the outcome, ms.
    pub latency_ms: u64,
    pub command: AckCommand,
    /// Known for every command but a create that got no readable 2xx.
    pub payment_id: Option<String>,
    /// A refund's id, from its 2xx.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refund_id: Option<String>,
    /// `None` for a void (it takes no key).
    pub idempotency_key: Option<String>,
    /// 1 for the first try, then each retry with the same key.
    pub attempt: u32,
    pub outcome: AckOutcome,
    /// The HTTP status, `None` when no answer came.
    pub status: Option<u16>,
    /// On error: `http_5xx`, `http_4xx`, `timeout`, `connect`, `body` (the answer broke off),
    /// `transport` (any other failure without an answer) or `bad_answer` (a 2xx that is not
    /// the JSON expected).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_kind: Option<String>,
    /// On an HTTP error: the problem type (`concurrent-update`, ...) or a snippet of the body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

impl AckRecord {
    /// The line for one try of `command`: `answer` is the call's result, `payment_id` what the
    /// caller knew before (a create learns it from its answer, as a refund learns its id).
    #[allow(clippy::too_many_arguments)]
    pub fn of(
        command: AckCommand,
        payment_id: Option<&str>,
        idempotency_key: Option<&str>,
        attempt: u32,
        answer: &Result<(u16, serde_json::Value), CallError>,
        since_start: Duration,
        latency: Duration,
    ) -> AckRecord {
        let mut record = AckRecord {
            t_ms: since_start.as_millis() as u64,
            at_ms: unix_ms(),
            latency_ms: latency.as_millis() as u64,
            command,
            payment_id: payment_id.map(str::to_owned),
            refund_id: None,
            idempotency_key: idempotency_key.map(str::to_owned),
            attempt,
            outcome: AckOutcome::Ok,
            status: None,
            error_kind: None,
            problem: None,
        };
        let text = |json: &serde_json::Value, key: &str| json[key].as_str().map(str::to_owned);
        match answer {
            Ok((status, json)) => {
                record.status = Some(*status);
                match command {
                    AckCommand::Create => record.payment_id = text(json, "id"),
                    AckCommand::Refund => record.refund_id = text(json, "id"),
                    AckCommand::Capture | AckCommand::Void => {}
                }
            }
            Err(error) => {
                record.outcome = AckOutcome::Error;
                let (status, kind, problem) = match error {
                    CallError::Transport(kind) => (None, transport_kind(kind), None),
                    CallError::Status(status, problem) => {
                        let kind = if *status >= 500 {
                            "http_5xx"
                        } else if *status >= 400 {
                            "http_4xx"
                        } else {
                            "http_other"
                        };
                        (Some(*status), kind, Some(problem.clone()))
                    }
                    CallError::Body(status, _) => (Some(*status), "bad_answer", None),
                };
                record.status = status;
                record.error_kind = Some(kind.to_owned());
                record.problem = problem;
            }
        }
        record
    }
}

fn transport_kind(kind: &str) -> &'static str {
    match kind {
        "timeout" => "timeout",
        "connect" => "connect",
        "body" => "body",
        _ => "transport",
    }
}

pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The sessions' end of the log: cloned into each, dropped when they are done.
#[derive(Clone)]
pub struct AckSender(mpsc::Sender<AckRecord>);

impl AckSender {
    /// Queues a line (waiting while the queue is full). A writer that has failed drops it:
    /// `AckWriter::finish` reports why.
    pub async fn record(&self, record: AckRecord) {
        let _ = self.0.send(record).await;
    }
}

/// The one task that writes the log.
pub struct AckWriter(JoinHandle<Result<u64, String>>);

impl AckWriter {
    /// Waits for every queued line to be written and synced (once every `AckSender` is
    /// dropped); returns how many lines this run wrote.
    pub async fn finish(self) -> Result<u64, String> {
        self.0.await.map_err(|e| format!("ack log writer: {e}"))?
    }
}

/// Opens `path` for appending (created if missing) and starts its writer.
pub async fn open(path: &Path) -> Result<(AckSender, AckWriter), String> {
    let file = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .await
        .map_err(|e| format!("opening the ack log {}: {e}", path.display()))?;
    let (sender, receiver) = mpsc::channel(ACK_QUEUE_LINES);
    let shown = path.display().to_string();
    let writer = tokio::spawn(async move {
        write_lines(file, receiver)
            .await
            .map_err(|e| format!("writing the ack log {shown}: {e}"))
    });
    Ok((AckSender(sender), AckWriter(writer)))
}

async fn write_lines(
    file: tokio::fs::File,
    mut receiver: mpsc::Receiver<AckRecord>,
) -> std::io::Result<u64> {
    let mut out = BufWriter::new(file);
    let mut lines = 0;
    while let Some(record) = receiver.recv().await {
        let mut line = serde_json::to_vec(&record)?;
        line.push(b'\n');
        out.write_all(&line).await?;
        lines += 1;
        // Flushed whenever nothing else is waiting: a line reaches the file right after its
        // answer, and a burst still goes out in one write.
        if receiver.is_empty() {
            out.flush().await?;
        }
    }
    out.flush().await?;
    out.get_ref().sync_all().await?;
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_2xx_is_ok_and_names_what_it_created() {
        let created = AckRecord::of(
            AckCommand::Create,
            None,
            Some("k-1"),
            1,
            &Ok((201, json!({"id": "p-1", "version": 2}))),
            Duration::from_millis(1_500),
            Duration::from_millis(12),
        );
        assert_eq!(created.outcome, AckOutcome::Ok);
        assert_eq!(created.payment_id.as_deref(), Some("p-1"));
        assert_eq!((created.status, created.t_ms), (Some(201), 1_500));
        let refunded = AckRecord::of(
            AckCommand::Refund,
            Some("p-1"),
            Some("k-1-r"),
            2,
            &Ok((201, json!({"id": "r-1", "payment_id": "p-1"}))),
            Duration::ZERO,
            Duration::ZERO,
        );
        assert_eq!(refunded.refund_id.as_deref(), Some("r-1"));
        assert_eq!(refunded.payment_id.as_deref(), Some("p-1"));
        let line = serde_json::to_value(&refunded).unwrap();
        assert_eq!(line["command"], "refund");
        assert_eq!(line["outcome"], "ok");
        assert!(line.get("error_kind").is_none());
    }

    #[test]
    fn every_failure_is_an_error_line_with_its_kind() {
        let cases = [
            (CallError::Status(503, "x".into()), Some(503), "http_5xx"),
            (CallError::Status(409, "x".into()), Some(409), "http_4xx"),
            (CallError::Transport("timeout".into()), None, "timeout"),
            (CallError::Transport("connect".into()), None, "connect"),
            (CallError::Transport("request".into()), None, "transport"),
            (CallError::Body(201, "x".into()), Some(201), "bad_answer"),
        ];
        for (error, status, kind) in cases {
            let record = AckRecord::of(
                AckCommand::Capture,
                Some("p"),
                Some("k"),
                1,
                &Err(error),
                Duration::ZERO,
                Duration::ZERO,
            );
            assert_eq!(record.outcome, AckOutcome::Error);
            assert_eq!(record.status, status);
            assert_eq!(record.error_kind.as_deref(), Some(kind));
            let line = serde_json::to_value(&record).unwrap();
            assert_eq!(line["outcome"], "error");
            assert_eq!(line["status"], json!(status));
        }
    }

    #[tokio::test]
    async fn the_writer_appends_every_line_and_syncs_at_the_end() {
        let dir = std::env::temp_dir().join(format!("ack-{}-{}", std::process::id(), unix_ms()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("acks.ndjson");
        std::fs::write(&path, "{\"earlier\": true}\n").unwrap();
        let (sender, writer) = open(&path).await.unwrap();
        let lines = 10_000u64; // more than the queue holds: senders wait, none is lost
        let tasks: Vec<_> = (0..4)
            .map(|t| {
                let sender = sender.clone();
                tokio::spawn(async move {
                    for i in 0..lines / 4 {
                        let key = format!("k-{t}-{i}");
                        let record = AckRecord::of(
                            AckCommand::Void,
                            Some("p"),
                            Some(&key),
                            1,
                            &Ok((200, json!({}))),
                            Duration::ZERO,
                            Duration::ZERO,
                        );
                        sender.record(record).await;
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        drop(sender);
        assert_eq!(writer.finish().await.unwrap(), lines);
        let text = std::fs::read_to_string(&path).unwrap();
        let mut read = text.lines();
        assert_eq!(read.next(), Some("{\"earlier\": true}"));
        let records: Vec<AckRecord> = read.map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(records.len() as u64, lines);
        let keys: std::collections::BTreeSet<_> =
            records.iter().map(|r| r.idempotency_key.clone()).collect();
        assert_eq!(keys.len() as u64, lines);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
