//! What a verification found: a machine report (`--json`) and its human summary.

use std::fmt::Write as _;

use serde::Serialize;

use crate::verify::{DigestCheck, Finding};

/// Exit status of `payledger audit verify`.
pub const EXIT_OK: u8 = 0;
/// Something was altered, removed, reordered or does not match.
pub const EXIT_FAILED: u8 = 1;
/// The verification could not run (bad option, unreadable file, database down).
pub const EXIT_ERROR: u8 = 2;
/// Nothing wrong was found, but a live projection kept lagging, so it was not compared.
pub const EXIT_INCONCLUSIVE: u8 = 3;

#[derive(Debug, Clone, Serialize)]
pub struct ChainSummary {
    /// The first position recomputed (`--from`, else 1).
    pub from_position: i64,
    /// Chain records walked.
    pub records: u64,
    pub head_position: i64,
    pub head_hash: String,
    /// `<position>:<hash>` of the head: the digest to note down for the next verification.
    pub head_digest: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct SequenceSummary {
    pub aggregates: u64,
    pub events: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Completeness {
    pub events_total: i64,
    pub chain_rows: i64,
    /// Events committed after the relay's checkpoint: not chained yet, rightly.
    pub pending: i64,
    /// Events the relay has passed that have no chain row.
    pub unchained: i64,
    pub relay_audit_position: i64,
    pub relay_chain_hash: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProjectionStatus {
    /// Live tables equal the rebuild, row for row.
    Match,
    /// The live projection had applied exactly what the rebuild did, and still differs (or
    /// applied events the store no longer has).
    Mismatch,
    /// The live projection had not caught up within the wait: differences are not judged.
    Lagging,
    /// Rebuilding from the events failed (an event the projections cannot apply): a finding.
    Unbuildable,
}

#[derive(Debug, Clone, Serialize)]
pub struct TableDiff {
    pub table: String,
    pub live_rows: i64,
    pub rebuilt_rows: i64,
    /// Rows (with multiplicity) in the live table and not in the rebuild.
    pub only_live: i64,
    pub only_rebuilt: i64,
    /// A few of each, as JSON.
    pub samples_live: Vec<serde_json::Value>,
    pub samples_rebuilt: Vec<serde_json::Value>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProjectionCheck {
    pub projection: String,
    pub status: ProjectionStatus,
    /// Aggregates whose live offset is below the rebuild's.
    pub aggregates_behind: i64,
    /// Aggregates whose live offset is beyond the rebuild's.
    pub aggregates_ahead: i64,
    pub tables: Vec<TableDiff>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Nothing was found wrong.
    pub ok: bool,
    /// Some check could not conclude (see `projections`); `ok` may still be true.
    pub inconclusive: bool,
    /// `database` or the file verified.
    pub source: String,
    pub chain: ChainSummary,
    pub digest: Option<DigestCheck>,
    pub sequences: SequenceSummary,
    /// Database only.
    pub completeness: Option<Completeness>,
    /// `None` when not checked (offline, or `--no-projections`).
    pub projections: Option<Vec<ProjectionCheck>>,
    /// Into this schema the projections were rebuilt (left for inspection).
    pub scratch_schema: Option<String>,
    /// The earliest problem on the chain (or, with none on the chain, the first found).
    pub first_failure: Option<Finding>,
    pub failures_total: u64,
    /// Up to 1,000, earliest position first.
    pub failures: Vec<Finding>,
    pub elapsed_ms: u128,
}

impl Report {
    pub fn exit_code(&self) -> u8 {
        if !self.ok {
            EXIT_FAILED
        } else if self.inconclusive {
            EXIT_INCONCLUSIVE
        } else {
            EXIT_OK
        }
    }

    /// Findings of one check.
    pub fn failures_of(&self, check: crate::verify::Check) -> Vec<&Finding> {
        self.failures.iter().filter(|f| f.check == check).collect()
    }

    /// The human summary `payledger audit verify` prints.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let verdict = match self.exit_code() {
            EXIT_OK => "VERIFIED",
            EXIT_INCONCLUSIVE => "INCONCLUSIVE",
            _ => "FAILED",
        };
        let _ = writeln!(out, "audit verify ({}): {verdict}", self.source);
        let _ = writeln!(
            out,
            "  chain:        {} records recomputed from position {}; head {}",
            self.chain.records, self.chain.from_position, self.chain.head_digest
        );
        if let Some(digest) = &self.digest {
            let _ = writeln!(
                out,
                "  digest:       {} {}",
                digest.digest,
                if digest.ok {
                    "matches"
                } else {
                    "DOES NOT MATCH"
                }
            );
        }
        let _ = writeln!(
            out,
            "  sequences:    {} events of {} aggregates checked",
            self.sequences.events, self.sequences.aggregates
        );
        if let Some(c) = &self.completeness {
            let _ = writeln!(
                out,
                "  completeness: {} events, {} chain rows, {} unchained behind the relay, {} pending (committed after the relay's checkpoint)",
                c.events_total, c.chain_rows, c.unchained, c.pending
            );
        }
        match &self.projections {
            None => {
                let _ = writeln!(out, "  projections:  not checked");
            }
            Some(checks) => {
                for check in checks {
                    let rows: i64 = check.tables.iter().map(|t| t.live_rows).sum();
                    let detail = match check.status {
                        ProjectionStatus::Match => format!("match ({rows} live rows)"),
                        ProjectionStatus::Mismatch => {
                            let differing: Vec<String> = check
                                .tables
                                .iter()
                                .filter(|t| t.only_live + t.only_rebuilt > 0)
                                .map(|t| {
                                    format!(
                                        "{}: {} only live, {} only rebuilt",
                                        t.table, t.only_live, t.only_rebuilt
                                    )
                                })
                                .collect();
                            format!("MISMATCH ({})", differing.join("; "))
                        }
                        ProjectionStatus::Lagging => format!(
                            "lagging, not compared ({} aggregates behind the rebuild)",
                            check.aggregates_behind
                        ),
                        ProjectionStatus::Unbuildable => {
                            "CANNOT BE REBUILT from the events".to_owned()
                        }
                    };
                    let _ = writeln!(out, "  projection {:<10} {detail}", check.projection);
                }
                if let Some(schema) = &self.scratch_schema {
                    let _ = writeln!(out, "  (rebuilt into schema {schema})");
                }
            }
        }
        if let Some(first) = &self.first_failure {
            let _ = writeln!(out, "first failure: {}", first.describe());
            for finding in self.failures.iter().skip(1).take(9) {
                let _ = writeln!(out, "  then: {}", finding.describe());
            }
            if self.failures_total > 10 {
                let _ = writeln!(
                    out,
                    "  ... {} failures in all (--json lists up to 1,000)",
                    self.failures_total
                );
            }
        }
        out
    }
}
