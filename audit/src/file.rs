//! Exports of the chain (NDJSON, one `ChainRecord` per line) and their offline verification,
//! with no database: the chain recomputed from GENESIS, per-aggregate sequences, a digest.

use std::io::{BufRead, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use sqlx::{Connection, PgPool};

use crate::chain::{self, ChainRecord, Digest, Head, PAGE_ROWS};
use crate::report::{ChainSummary, Report, SequenceSummary};
use crate::verify::{ChainVerifier, Check, Finding};
use crate::AuditError;

/// Longest line an export may have (an event is a few KiB; this refuses garbage early).
pub const LINE_BYTES_MAX: u64 = 16 * 1024 * 1024;

#[derive(Debug, Clone, serde::Serialize)]
pub struct ExportSummary {
    pub records: u64,
    pub head_position: i64,
    pub head_hash: String,
    pub head_digest: String,
}

/// Writes the whole chain, in order, from one snapshot, a page at a time.
pub async fn export(pool: &PgPool, out: &mut impl Write) -> Result<ExportSummary, AuditError> {
    let mut conn = pool.acquire().await?;
    let mut snapshot = conn.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .execute(&mut *snapshot)
        .await?;
    let head: Head = chain::head(&mut *snapshot).await?;
    let mut after = 0;
    let mut records = 0_u64;
    loop {
        let (lines, count, last) =
            chain::lines(&mut *snapshot, after, head.position, PAGE_ROWS).await?;
        let Some(last) = last else { break };
        after = last;
        out.write_all(&lines)?;
        records += count as u64;
    }
    out.flush()?;
    snapshot.commit().await?;
    Ok(ExportSummary {
        records,
        head_position: head.position,
        head_hash: hex::encode(head.chain_hash),
        head_digest: head.digest().to_string(),
    })
}

/// Exports into `path` through a temporary file renamed at the end: a failed export leaves
/// no partial file behind.
pub async fn export_to_path(pool: &PgPool, path: &Path) -> Result<ExportSummary, AuditError> {
    let mut partial = PathBuf::from(path);
    partial.as_mut_os_string().push(".partial");
    let file = std::fs::File::create(&partial)?;
    let mut writer = std::io::BufWriter::new(file);
    match export(pool, &mut writer).await {
        Ok(summary) => {
            writer
                .into_inner()
                .map_err(|e| e.into_error())?
                .sync_all()?;
            std::fs::rename(&partial, path)?;
            Ok(summary)
        }
        Err(error) => {
            drop(writer);
            let _removed = std::fs::remove_file(&partial);
            Err(error)
        }
    }
}

/// Verifies an export read from `input`, one line at a time.
pub fn verify_export(
    input: impl BufRead,
    source: &str,
    digest: Option<Digest>,
) -> Result<Report, AuditError> {
    let started = Instant::now();
    let mut verifier = ChainVerifier::new(1, crate::link::GENESIS, digest, true);
    let mut input = input;
    let mut line = Vec::new();
    let mut line_number = 0_u64;
    let mut last_position = 0;
    loop {
        line.clear();
        let read = (&mut input)
            .take(LINE_BYTES_MAX + 1)
            .read_until(b'\n', &mut line)?;
        if read == 0 {
            break;
        }
        line_number += 1;
        if line.len() as u64 > LINE_BYTES_MAX {
            return Err(AuditError::BadInput(format!(
                "line {line_number} is longer than {LINE_BYTES_MAX} bytes"
            )));
        }
        let text = line.strip_suffix(b"\n").unwrap_or(&line);
        if text.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice::<ChainRecord>(text) {
            Ok(record) => {
                last_position = record.position;
                verifier.check(&record);
            }
            Err(e) => verifier.push(
                Finding::new(
                    Check::Chain,
                    format!("line {line_number} is not a chain record: {e}"),
                )
                .at(last_position + 1),
            ),
        }
    }
    let outcome = verifier.finish();
    let (failures, failures_total) = outcome.findings.into_sorted();
    Ok(Report {
        ok: failures_total == 0,
        inconclusive: false,
        source: source.to_owned(),
        chain: ChainSummary {
            from_position: 1,
            records: outcome.records,
            head_position: outcome.last_position,
            head_hash: hex::encode(outcome.last_hash),
            head_digest: Digest {
                position: outcome.last_position,
                hash: outcome.last_hash,
            }
            .to_string(),
        },
        digest: outcome.digest,
        sequences: SequenceSummary {
            aggregates: outcome.aggregates.unwrap_or(0),
            events: outcome.records,
        },
        completeness: None,
        projections: None,
        scratch_schema: None,
        first_failure: failures.first().cloned(),
        failures_total,
        failures,
        elapsed_ms: started.elapsed().as_millis(),
    })
}

pub fn verify_file(path: &Path, digest: Option<Digest>) -> Result<Report, AuditError> {
    let file = std::fs::File::open(path)?;
    verify_export(
        std::io::BufReader::with_capacity(1 << 16, file),
        &format!("file {}", path.display()),
        digest,
    )
}
