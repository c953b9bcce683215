//! `payledger audit verify` against the database: the chain walk, per-aggregate sequences and
//! completeness all read one REPEATABLE READ snapshot, in pages, so memory stays bounded
//! whatever the size of the store; then every projection is rebuilt into a scratch schema and
//! diffed against the live tables.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use sqlx::{Connection, PgConnection, PgPool, Row};

use crate::chain::{self, Digest, PAGE_ROWS};
use crate::report::{
    ChainSummary, Completeness, ProjectionCheck, ProjectionStatus, Report, SequenceSummary,
    TableDiff,
};
use crate::verify::{ChainVerifier, Check, Finding, Findings, FINDINGS_KEPT_MAX};
use crate::AuditError;

/// The schema the projections are rebuilt into.
pub const SCRATCH_SCHEMA: &str = "audit_verify";
/// Rows of each side shown when a projection table differs.
const SAMPLE_ROWS: i64 = 3;
/// Rebuilds tried when new events keep arriving during the comparison.
const REBUILD_ATTEMPTS_MAX: u32 = 3;
const LAG_POLL: Duration = Duration::from_millis(100);

/// What verification needs of the read side: each projection's name and tables, and a
/// rebuild of all of them from the events into a scratch schema. The composition root
/// implements it over the projections, so auditing does not depend on the read side.
#[async_trait]
pub trait ReadModel: Send + Sync {
    /// Each projection's name and the tables it alone writes (in `public`).
    fn projections(&self) -> Vec<(&'static str, &'static [&'static str])>;

    /// Rebuilds every projection from the events into `schema`, and its offsets with them;
    /// returns the events applied.
    async fn rebuild(&self, pool: &PgPool, schema: &str) -> Result<u64, RebuildError>;
}

#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    /// The events themselves cannot be applied (a forged or mangled payload): a finding about
    /// the store, not a reason to stop verifying.
    #[error("{0}")]
    Unbuildable(String),
    #[error(transparent)]
    Failed(Box<dyn std::error::Error + Send + Sync>),
}

#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// Recompute from this position (its predecessor's stored hash is trusted); 1 = all.
    pub from: Option<i64>,
    pub digest: Option<Digest>,
    /// Rebuild and diff the projections.
    pub projections: bool,
    /// How long to wait for live projections to catch up with the rebuild.
    pub projection_wait: Duration,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        VerifyOptions {
            from: None,
            digest: None,
            projections: true,
            projection_wait: Duration::from_secs(10),
        }
    }
}

/// Verifies the store as `options` say; `read_model` rebuilds the projections to compare.
pub async fn verify_database(
    pool: &PgPool,
    options: &VerifyOptions,
    read_model: &dyn ReadModel,
) -> Result<Report, AuditError> {
    let started = Instant::now();
    let from = options.from.unwrap_or(1);
    if from < 1 {
        return Err(AuditError::BadOption("--from must be 1 or more".into()));
    }
    let mut conn = pool.acquire().await?;
    let mut snapshot = conn.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .execute(&mut *snapshot)
        .await?;
    let head = chain::head(&mut *snapshot).await?;
    if from > head.position + 1 {
        return Err(AuditError::BadOption(format!(
            "--from {from} is beyond the chain's head ({})",
            head.position
        )));
    }
    let previous = if from == 1 {
        crate::link::GENESIS
    } else {
        chain::hash_at(&mut *snapshot, from - 1)
            .await?
            .ok_or_else(|| {
                AuditError::BadOption(format!(
                    "there is no chain row at position {} to start --from {from} on",
                    from - 1
                ))
            })?
    };
    let mut verifier = ChainVerifier::new(from, previous, options.digest, false);
    if let Some(digest) = options.digest {
        if digest.position < from {
            let stored = if digest.position == 0 {
                Some(crate::link::GENESIS)
            } else {
                chain::hash_at(&mut *snapshot, digest.position).await?
            };
            verifier.check_digest_against_stored(stored);
        }
    }

    // The chain, in pages: never more than PAGE_ROWS records in memory.
    let mut after = from - 1;
    loop {
        let page = chain::page(&mut *snapshot, after, i64::MAX, PAGE_ROWS).await?;
        let Some(last) = page.last() else { break };
        after = last.position;
        for record in &page {
            verifier.check(record);
        }
    }
    let outcome = verifier.finish();
    let mut findings = outcome.findings;

    let sequences = check_sequences(&mut snapshot, &mut findings).await?;
    let completeness = check_completeness(&mut snapshot, &head, &mut findings).await?;
    snapshot.commit().await?;
    drop(conn);

    let projections = if options.projections {
        Some(check_projections(pool, read_model, options.projection_wait, &mut findings).await?)
    } else {
        None
    };
    let inconclusive = projections
        .as_ref()
        .is_some_and(|checks| checks.iter().any(|c| c.status == ProjectionStatus::Lagging));
    let (failures, failures_total) = findings.into_sorted();
    Ok(Report {
        ok: failures_total == 0,
        inconclusive,
        source: "database".into(),
        chain: ChainSummary {
            from_position: from,
            records: outcome.records,
            head_position: head.position,
            head_hash: hex::encode(head.chain_hash),
            head_digest: head.digest().to_string(),
        },
        digest: outcome.digest,
        sequences,
        completeness: Some(completeness),
        scratch_schema: projections.as_ref().map(|_| SCRATCH_SCHEMA.to_owned()),
        projections,
        first_failure: failures.first().cloned(),
        failures_total,
        failures,
        elapsed_ms: started.elapsed().as_millis(),
    })
}

/// Every aggregate's sequences are 1..n: Postgres walks its primary key and returns only the
/// events that do not follow their predecessor, located on the chain where possible.
async fn check_sequences(
    conn: &mut PgConnection,
    findings: &mut Findings,
) -> Result<SequenceSummary, AuditError> {
    let totals = eventstore::integrity::totals(&mut *conn).await?;
    let breaks =
        eventstore::integrity::sequence_breaks(&mut *conn, FINDINGS_KEPT_MAX as i64).await?;
    for at in breaks {
        let sequence = at.sequence;
        let reason = match at.previous {
            None => format!(
                "the aggregate's first event has sequence {sequence}: sequences 1..{} are missing",
                sequence - 1
            ),
            Some(p) => format!(
                "sequence {sequence} follows {p}: sequences {}..{} are missing",
                p + 1,
                sequence - 1
            ),
        };
        let mut finding = Finding::new(Check::Sequence, reason).event(
            at.global_position,
            &at.aggregate_id,
            sequence,
        );
        finding.position = at.position;
        findings.push(finding);
    }
    Ok(SequenceSummary {
        aggregates: totals.aggregates as u64,
        events: totals.events as u64,
    })
}

/// Every event the relay has passed has exactly one chain row (chain rows without an event
/// are found by the walk), and the relay's checkpoint names the chain's head.
async fn check_completeness(
    conn: &mut PgConnection,
    head: &chain::Head,
    findings: &mut Findings,
) -> Result<Completeness, AuditError> {
    let counts = eventstore::integrity::completeness(&mut *conn).await?;
    if counts.unchained > 0 {
        let events = eventstore::integrity::unchained(&mut *conn, FINDINGS_KEPT_MAX as i64).await?;
        for event in events {
            findings.push(
                Finding::new(
                    Check::Completeness,
                    "the relay has passed this event but it has no chain row: it was inserted behind the relay's back, or its chain row was removed",
                )
                .event(event.global_position, &event.aggregate_id, event.sequence),
            );
        }
    }
    let relay_position = counts.relay_audit_position;
    let relay_hash = counts.relay_chain_hash;
    if relay_position != head.position || relay_hash != head.chain_hash {
        findings.push(
            Finding::new(
                Check::Completeness,
                format!(
                    "the relay's checkpoint says the chain ends at {}:{}, the chain table ends at {}: chain rows were added, removed or rewritten behind the relay",
                    relay_position,
                    hex::encode(&relay_hash),
                    head.digest()
                ),
            )
            .at(relay_position.min(head.position).max(1)),
        );
    }
    Ok(Completeness {
        events_total: counts.events_total,
        chain_rows: counts.chain_rows,
        pending: counts.pending,
        unchained: counts.unchained,
        relay_audit_position: relay_position,
        relay_chain_hash: hex::encode(relay_hash),
    })
}

/// How far the live projection is from the rebuild, aggregate by aggregate.
async fn offsets_against_rebuild(
    pool: &PgPool,
    projection: &str,
) -> Result<(i64, i64), sqlx::Error> {
    let row = sqlx::query(&format!(
        "SELECT count(*) FILTER (WHERE COALESCE(l.last_sequence, 0) < COALESCE(r.last_sequence, 0)) AS behind,
                count(*) FILTER (WHERE COALESCE(l.last_sequence, 0) > COALESCE(r.last_sequence, 0)) AS ahead
           FROM (SELECT aggregate_id, last_sequence FROM {SCRATCH_SCHEMA}.projection_offsets
                  WHERE projection = $1) r
           FULL JOIN (SELECT aggregate_id, last_sequence FROM public.projection_offsets
                       WHERE projection = $1) l
             ON l.aggregate_id = r.aggregate_id"
    ))
    .bind(projection)
    .fetch_one(pool)
    .await?;
    Ok((row.try_get("behind")?, row.try_get("ahead")?))
}

/// Rebuilds every projection into the scratch schema and diffs each table with the live one
/// (`EXCEPT ALL` both ways). The live projections may lag the store: the comparison waits
/// until each has applied exactly what the rebuild did (its offsets equal the rebuild's);
/// if new events keep arriving it rebuilds again; a projection still behind when the wait is
/// over is reported as lagging, not as a mismatch.
async fn check_projections(
    pool: &PgPool,
    read_model: &dyn ReadModel,
    wait: Duration,
    findings: &mut Findings,
) -> Result<Vec<ProjectionCheck>, AuditError> {
    let refs = read_model.projections();
    let deadline = Instant::now() + wait;
    let mut offsets: Vec<(i64, i64)>;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let applied = match read_model.rebuild(pool, SCRATCH_SCHEMA).await {
            Ok(applied) => applied,
            // The events themselves cannot be applied (a forged or mangled payload): that is
            // a finding, not a reason to stop verifying.
            Err(RebuildError::Unbuildable(error)) => {
                findings.push(Finding::new(
                    Check::Projection,
                    format!("the projections cannot be rebuilt from the events: {error}"),
                ));
                return Ok(refs
                    .iter()
                    .map(|(name, _)| ProjectionCheck {
                        projection: (*name).to_owned(),
                        status: ProjectionStatus::Unbuildable,
                        aggregates_behind: 0,
                        aggregates_ahead: 0,
                        tables: Vec::new(),
                    })
                    .collect());
            }
            Err(RebuildError::Failed(error)) => return Err(AuditError::Rebuild(error)),
        };
        loop {
            offsets = Vec::with_capacity(refs.len());
            for (name, _) in &refs {
                offsets.push(offsets_against_rebuild(pool, name).await?);
            }
            let behind = offsets.iter().any(|(b, _)| *b > 0);
            let ahead = offsets.iter().any(|(_, a)| *a > 0);
            if !behind || ahead || Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(LAG_POLL).await;
        }
        let ahead = offsets.iter().any(|(_, a)| *a > 0);
        // Live ahead of the rebuild: new events since it, or events the store lost. Only
        // the first is worth another rebuild.
        let store_moved = eventstore::feed::count(pool).await? != applied as i64;
        if ahead && store_moved && attempt < REBUILD_ATTEMPTS_MAX && Instant::now() < deadline {
            continue;
        }
        break;
    }

    let mut checks = Vec::with_capacity(refs.len());
    for ((name, projection_tables), (behind, ahead)) in refs.iter().zip(offsets) {
        let mut tables = Vec::new();
        for table in projection_tables.iter() {
            tables.push(diff_table(pool, table).await?);
        }
        let differs = tables.iter().any(|t| t.only_live + t.only_rebuilt > 0);
        let status = if behind > 0 {
            ProjectionStatus::Lagging
        } else if differs || ahead > 0 {
            ProjectionStatus::Mismatch
        } else {
            ProjectionStatus::Match
        };
        if status == ProjectionStatus::Mismatch {
            for table in tables.iter().filter(|t| t.only_live + t.only_rebuilt > 0) {
                let sample = table.samples_live.first().or(table.samples_rebuilt.first());
                let mut finding = Finding::new(
                    Check::Projection,
                    format!(
                        "projection {} table {}: {} live rows are not in the rebuild from the events and {} rebuilt rows are not live{}",
                        name,
                        table.table,
                        table.only_live,
                        table.only_rebuilt,
                        sample.map(|s| format!(" (e.g. {s})")).unwrap_or_default()
                    ),
                );
                finding.aggregate_id = sample.and_then(aggregate_of_row);
                findings.push(finding);
            }
            if !differs {
                findings.push(Finding::new(
                    Check::Projection,
                    format!(
                        "projection {}: {ahead} aggregates were applied further than the event store now goes: events it applied are gone",
                        name
                    ),
                ));
            }
        }
        checks.push(ProjectionCheck {
            projection: (*name).to_owned(),
            status,
            aggregates_behind: behind,
            aggregates_ahead: ahead,
            tables,
        });
    }
    Ok(checks)
}

/// The aggregate a projection row is about, when it says.
fn aggregate_of_row(row: &serde_json::Value) -> Option<String> {
    ["payment_id", "aggregate_id"]
        .iter()
        .find_map(|k| row.get(*k).and_then(|v| v.as_str()).map(str::to_owned))
}

async fn diff_table(pool: &PgPool, table: &str) -> Result<TableDiff, sqlx::Error> {
    let live = format!("public.{table}");
    let rebuilt = format!("{SCRATCH_SCHEMA}.{table}");
    let count =
        |sql: String| async move { sqlx::query_scalar::<_, i64>(&sql).fetch_one(pool).await };
    let samples = |sql: String| async move {
        sqlx::query_scalar::<_, serde_json::Value>(&sql)
            .fetch_all(pool)
            .await
    };
    let only = |a: &str, b: &str| format!("SELECT * FROM {a} EXCEPT ALL SELECT * FROM {b}");
    Ok(TableDiff {
        table: table.to_owned(),
        live_rows: count(format!("SELECT count(*) FROM {live}")).await?,
        rebuilt_rows: count(format!("SELECT count(*) FROM {rebuilt}")).await?,
        only_live: count(format!(
            "SELECT count(*) FROM ({}) d",
            only(&live, &rebuilt)
        ))
        .await?,
        only_rebuilt: count(format!(
            "SELECT count(*) FROM ({}) d",
            only(&rebuilt, &live)
        ))
        .await?,
        samples_live: samples(format!(
            "SELECT to_json(d) FROM ({}) d LIMIT {SAMPLE_ROWS}",
            only(&live, &rebuilt)
        ))
        .await?,
        samples_rebuilt: samples(format!(
            "SELECT to_json(d) FROM ({}) d LIMIT {SAMPLE_ROWS}",
            only(&rebuilt, &live)
        ))
        .await?,
    })
}
