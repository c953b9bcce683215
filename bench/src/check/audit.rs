//! `audit_verify`: `payledger audit verify` passes.

use serde_json::Value;

use super::spawned::{spawn_payledger, tail};
use super::{CheckConfig, Finding, Status};

pub(super) async fn audit_verify(config: &CheckConfig) -> Result<Finding, String> {
    // The chain, the sequences and completeness; the projections are compared by
    // `projections_match_rebuild` already, which waits for them and keeps no schema behind.
    let args = ["audit", "verify", "--no-projections", "--json"];
    let spawned = spawn_payledger(config, &args, config.step_timeout).await?;
    let report: Option<Value> = serde_json::from_str(spawned.stdout.trim()).ok();
    let mut finding = Finding::new(Status::Pass, String::new());
    if let Some(report) = &report {
        for (name, value) in [
            ("chain_records", &report["chain"]["records"]),
            ("events", &report["sequences"]["events"]),
            ("aggregates", &report["sequences"]["aggregates"]),
            ("unchained", &report["completeness"]["unchained"]),
            ("failures", &report["failures_total"]),
        ] {
            if let Some(n) = value.as_i64() {
                finding.count(name, n);
            }
        }
        if let Some(failures) = report["failures"].as_array() {
            finding.examples = failures
                .iter()
                .take(config.examples_max)
                .map(Value::to_string)
                .collect();
        }
    }
    let code = spawned.status.code();
    finding.count("exit_status", code.map_or(-1, i64::from));
    let head = report
        .as_ref()
        .and_then(|r| r["chain"]["head_digest"].as_str().map(str::to_owned))
        .unwrap_or_default();
    match code {
        Some(0) => {
            finding.summary = format!(
                "payledger audit verify passed: {} chain records, head {head}",
                finding.counts.get("chain_records").copied().unwrap_or(0)
            );
        }
        Some(1) => {
            finding.status = Status::Fail;
            finding.summary = format!(
                "payledger audit verify found {} problems; first: {}",
                finding.counts.get("failures").copied().unwrap_or(0),
                report
                    .as_ref()
                    .and_then(|r| r["first_failure"]["reason"].as_str().map(str::to_owned))
                    .unwrap_or_else(|| tail(&spawned.stdout, 500))
            );
        }
        _ => {
            return Err(format!(
                "payledger audit verify could not verify ({}): {}",
                spawned.status,
                tail(&spawned.stderr, 2_000)
            ))
        }
    }
    Ok(finding)
}
