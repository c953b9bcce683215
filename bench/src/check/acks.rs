//! `acks_in_store`: every command the ack log shows acknowledged (a 2xx) has its event in
//! the payment's stream. The log is streamed, its lines checked in batches.

use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;
use std::time::Instant;

use domain::{CaptureId, IdempotencyKey, PaymentId};
use sqlx::PgPool;
use tokio::io::{AsyncBufReadExt, AsyncReadExt};

use super::{bounded, progress, Examples, Finding, Status, PROGRESS_INTERVAL};
use crate::ack::{AckCommand, AckOutcome, AckRecord};

/// Acknowledged commands looked up in the store per query.
const ACK_BATCH: usize = 1_000;
/// A longer line is not one `run` wrote.
const ACK_LINE_BYTES_MAX: u64 = 64 * 1024;

/// An acknowledged command and the event that must show it.
struct Probe {
    line: u64,
    text: String,
    command: AckCommand,
    payment_id: String,
    /// The id the event carries (`capture_id`, `refund_id`), for commands that have one.
    id: Option<String>,
}

impl AckCommand {
    /// The events any one of which records the command in its payment's stream (its intent
    /// first; outcomes too, for streams written before intents), and the payload field
    /// naming it.
    fn recorded_by(self) -> (&'static [&'static str], Option<&'static str>) {
        match self {
            AckCommand::Create => (&["PaymentInitiated"], None),
            AckCommand::Capture => (
                &["CaptureRequested", "PaymentApproved", "CaptureFailed"],
                Some("capture_id"),
            ),
            AckCommand::Refund => (
                &["RefundRequested", "PaymentRefunded", "RefundFailed"],
                Some("refund_id"),
            ),
            AckCommand::Void => (&["VoidRequested", "PaymentVoided", "VoidFailed"], None),
        }
    }
}

/// The probe an acknowledged line asks for, or why the line does not say enough.
fn probe_of(line: u64, text: &str, record: &AckRecord) -> Result<Probe, String> {
    let payment = record
        .payment_id
        .as_deref()
        .ok_or("no payment_id")
        .and_then(|p| PaymentId::from_str(p).map_err(|_| "payment_id is not a uuid"))?;
    let id = match record.command {
        AckCommand::Create | AckCommand::Void => None,
        AckCommand::Capture => {
            // A capture's id is derived from its payment and key, as the service derives it.
            let key = record
                .idempotency_key
                .as_deref()
                .ok_or("a capture without idempotency_key")?;
            let key = IdempotencyKey::parse(key).map_err(|e| e.to_string())?;
            Some(CaptureId::derive(payment, &key).to_string())
        }
        AckCommand::Refund => Some(
            record
                .refund_id
                .clone()
                .ok_or("an acknowledged refund without refund_id")?,
        ),
    };
    Ok(Probe {
        line,
        text: text.to_owned(),
        command: record.command,
        payment_id: payment.to_string(),
        id,
    })
}

/// The probes of `batch` whose command has no event in the store.
async fn missing_in_store<'p>(pool: &PgPool, batch: &'p [Probe]) -> Result<Vec<&'p Probe>, String> {
    let mut missing = Vec::new();
    for command in [
        AckCommand::Create,
        AckCommand::Capture,
        AckCommand::Refund,
        AckCommand::Void,
    ] {
        let probes: Vec<&Probe> = batch.iter().filter(|p| p.command == command).collect();
        if probes.is_empty() {
            continue;
        }
        let (event_types, field) = command.recorded_by();
        let ids: Vec<&str> = probes.iter().map(|p| p.payment_id.as_str()).collect();
        let values: Vec<Option<&str>> = probes.iter().map(|p| p.id.as_deref()).collect();
        // Externally tagged payloads (`{"CaptureRequested": {...}}`): the field is read under
        // the event's own type. The key (aggregate_type, aggregate_id, ..) finds each stream.
        let absent: Vec<i64> = bounded(
            "looking up acknowledged commands in the event store",
            sqlx::query_scalar(
                "SELECT k.i FROM UNNEST($1::text[], $2::text[]) WITH ORDINALITY AS k(aggregate_id, value, i)
                  WHERE NOT EXISTS (
                        SELECT 1 FROM events e
                         WHERE e.aggregate_type = $3 AND e.aggregate_id = k.aggregate_id
                           AND e.event_type = ANY($4)
                           AND ($5::text IS NULL OR e.payload -> e.event_type ->> $5 = k.value))
                  ORDER BY k.i",
            )
            .bind(&ids)
            .bind(&values)
            .bind(<domain::Payment as cqrs_es::Aggregate>::TYPE)
            .bind(event_types)
            .bind(field)
            .fetch_all(pool),
        )
        .await?;
        for i in absent {
            if let Some(probe) = usize::try_from(i - 1).ok().and_then(|i| probes.get(i)) {
                missing.push(*probe);
            }
        }
    }
    Ok(missing)
}

pub(super) async fn acks_in_store(
    pool: &PgPool,
    path: &Path,
    examples_max: usize,
) -> Result<Finding, String> {
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|e| format!("opening the ack log {}: {e}", path.display()))?;
    let mut reader = tokio::io::BufReader::new(file);
    let mut counts: BTreeMap<String, i64> = BTreeMap::new();
    let mut bump = |name: String| *counts.entry(name).or_insert(0) += 1;
    let mut missing_examples = Examples::new(examples_max);
    let mut unreadable_examples = Examples::new(examples_max);
    let (mut lines, mut acknowledged, mut missing, mut unreadable) = (0u64, 0i64, 0i64, 0i64);
    let mut batch: Vec<Probe> = Vec::with_capacity(ACK_BATCH);
    let mut buffer = Vec::with_capacity(512);
    let mut said = Instant::now();
    loop {
        buffer.clear();
        let read = (&mut reader)
            .take(ACK_LINE_BYTES_MAX + 1)
            .read_until(b'\n', &mut buffer)
            .await
            .map_err(|e| format!("reading the ack log: {e}"))?;
        let at_end = read == 0;
        if !at_end {
            lines += 1;
            if buffer.len() as u64 > ACK_LINE_BYTES_MAX {
                return Err(format!(
                    "line {lines} of the ack log is longer than {ACK_LINE_BYTES_MAX} bytes: not an ack log"
                ));
            }
            let text = String::from_utf8_lossy(&buffer);
            let text = text.trim();
            if !text.is_empty() {
                match serde_json::from_str::<AckRecord>(text) {
                    Err(error) => {
                        unreadable += 1;
                        unreadable_examples.push(|| format!("line {lines}: {error}: {text}"));
                    }
                    Ok(record) if record.outcome == AckOutcome::Error => {
                        bump(format!(
                            "error.{}.{}",
                            record.command.name(),
                            record.error_kind.as_deref().unwrap_or("unknown")
                        ));
                    }
                    Ok(record) => {
                        acknowledged += 1;
                        bump(format!("acknowledged.{}", record.command.name()));
                        match probe_of(lines, text, &record) {
                            Ok(probe) => batch.push(probe),
                            Err(why) => {
                                unreadable += 1;
                                unreadable_examples.push(|| format!("line {lines}: {why}: {text}"));
                            }
                        }
                    }
                }
            }
        }
        if batch.len() >= ACK_BATCH || (at_end && !batch.is_empty()) {
            for probe in missing_in_store(pool, &batch).await? {
                missing += 1;
                bump(format!("missing.{}", probe.command.name()));
                missing_examples.push(|| {
                    format!(
                        "line {}: acknowledged {} not in the store: {}",
                        probe.line,
                        probe.command.name(),
                        probe.text
                    )
                });
            }
            batch.clear();
        }
        if at_end {
            break;
        }
        if said.elapsed() >= PROGRESS_INTERVAL {
            said = Instant::now();
            progress(format_args!(
                "acks_in_store: {lines} lines read, {acknowledged} acknowledged, {missing} missing so far"
            ));
        }
    }
    let errors: i64 = counts
        .iter()
        .filter(|(k, _)| k.starts_with("error."))
        .map(|(_, v)| *v)
        .sum();
    let mut finding = if missing > 0 {
        let mut f = Finding::new(
            Status::Fail,
            format!("{missing} of {acknowledged} acknowledged commands are not in the event store"),
        );
        f.examples = missing_examples.kept;
        f.examples.extend(unreadable_examples.kept);
        f
    } else if unreadable > 0 {
        let mut f = Finding::new(
            Status::Error,
            format!(
                "{unreadable} lines of the ack log could not be read or say too little to check"
            ),
        );
        f.examples = unreadable_examples.kept;
        f
    } else if acknowledged == 0 {
        Finding::new(
            Status::Error,
            format!("the ack log holds no acknowledged command ({lines} lines): nothing to hold the store to"),
        )
    } else {
        Finding::new(
            Status::Pass,
            format!(
                "all {acknowledged} acknowledged commands are in the event store ({errors} failed tries not held to it)"
            ),
        )
    };
    finding.counts = counts;
    finding.count("lines", lines as i64);
    finding.count("acknowledged", acknowledged);
    finding.count("failed_tries", errors);
    finding.count("missing", missing);
    finding.count("unreadable", unreadable);
    Ok(finding)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(command: AckCommand, payment: Option<&str>, key: Option<&str>) -> AckRecord {
        AckRecord {
            t_ms: 0,
            at_ms: 0,
            latency_ms: 0,
            command,
            payment_id: payment.map(str::to_owned),
            refund_id: None,
            idempotency_key: key.map(str::to_owned),
            attempt: 1,
            outcome: AckOutcome::Ok,
            status: Some(201),
            error_kind: None,
            problem: None,
        }
    }

    #[test]
    fn a_capture_is_looked_up_by_the_id_the_service_derives_from_its_key() {
        let payment = "0b6f3a52-3c1e-4b6a-9a51-7d1f2a3b4c5d";
        let probe = probe_of(
            7,
            "{}",
            &record(AckCommand::Capture, Some(payment), Some("k-c")),
        )
        .unwrap();
        let expected = CaptureId::derive(
            PaymentId::from_str(payment).unwrap(),
            &IdempotencyKey::parse("k-c").unwrap(),
        );
        assert_eq!(probe.id, Some(expected.to_string()));
        assert_eq!(probe.line, 7);
    }

    #[test]
    fn an_acknowledged_line_that_names_no_payment_cannot_be_checked() {
        assert!(probe_of(1, "{}", &record(AckCommand::Create, None, Some("k"))).is_err());
        assert!(probe_of(1, "{}", &record(AckCommand::Void, Some("not-a-uuid"), None)).is_err());
        let payment = Some("0b6f3a52-3c1e-4b6a-9a51-7d1f2a3b4c5d");
        assert!(probe_of(1, "{}", &record(AckCommand::Capture, payment, None)).is_err());
        // A refund's id comes from its answer; without it there is nothing to look for.
        assert!(probe_of(1, "{}", &record(AckCommand::Refund, payment, Some("k"))).is_err());
    }
}
