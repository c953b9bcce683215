//! `payledger audit verify` against the database: the chain walk, per-aggregate sequences and
//! completeness all read one REPEATABLE READ snapshot, in pages, so memory stays bounded
//! whatever the size of the store; then every projection is rebuilt into a scratch schema and
//! diffed against the live tables.

use std::time::{Duration, Instant};

use sqlx::{Connection, PgConnection, PgPool, Row};

use super::chain::{self, Digest, PAGE_ROWS};
use super::report::{
    ChainSummary, Completeness, ProjectionCheck, ProjectionStatus, Report, SequenceSummary,
    TableDiff,
};
use super::verify::{ChainVerifier, Check, Finding, Findings, FINDINGS_KEPT_MAX};
use super::AuditError;

/// The schema the projections are rebuilt into.
pub const SCRATCH_SCHEMA: &str = "audit_verify";
/// Rows of each side shown when a projection table differs.
const SAMPLE_ROWS: i64 = 3;
/// Rebuilds tried when new events keep arriving during the comparison.
const REBUILD_ATTEMPTS_MAX: u32 = 3;
const LAG_POLL: Duration = Duration::from_millis(100);

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

pub async fn verify_database(pool: &PgPool, options: &VerifyOptions) -> Result<Report, AuditError> {
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
        domain::audit::GENESIS
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
                Some(domain::audit::GENESIS)
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
        Some(check_projections(pool, options.projection_wait, &mut findings).await?)
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
    let totals = sqlx::query(
        "SELECT count(*) AS events,
                count(DISTINCT (aggregate_type, aggregate_id)) AS aggregates
           FROM events",
    )
    .fetch_one(&mut *conn)
    .await?;
    let rows = sqlx::query(
        "SELECT s.aggregate_id, s.sequence, s.previous, s.global_position, a.position
           FROM (SELECT aggregate_type, aggregate_id, sequence, global_position,
                        lag(sequence) OVER (PARTITION BY aggregate_type, aggregate_id
                                            ORDER BY sequence) AS previous
                   FROM events) s
           LEFT JOIN audit_chain a ON a.global_position = s.global_position
          WHERE s.sequence <> COALESCE(s.previous, 0) + 1
          ORDER BY a.position NULLS LAST, s.global_position
          LIMIT $1",
    )
    .bind(FINDINGS_KEPT_MAX as i64)
    .fetch_all(&mut *conn)
    .await?;
    for row in &rows {
        let aggregate_id: String = row.try_get("aggregate_id")?;
        let sequence: i64 = row.try_get("sequence")?;
        let previous: Option<i64> = row.try_get("previous")?;
        let global_position: i64 = row.try_get("global_position")?;
        let position: Option<i64> = row.try_get("position")?;
        let reason = match previous {
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
        let mut finding =
            Finding::new(Check::Sequence, reason).event(global_position, &aggregate_id, sequence);
        finding.position = position;
        findings.push(finding);
    }
    Ok(SequenceSummary {
        aggregates: totals.try_get::<i64, _>("aggregates")? as u64,
        events: totals.try_get::<i64, _>("events")? as u64,
    })
}

/// Every event the relay has passed has exactly one chain row (chain rows without an event
/// are found by the walk), and the relay's checkpoint names the chain's head.
async fn check_completeness(
    conn: &mut PgConnection,
    head: &chain::Head,
    findings: &mut Findings,
) -> Result<Completeness, AuditError> {
    let row = sqlx::query(
        "SELECT (SELECT count(*) FROM events) AS events_total,
                (SELECT count(*) FROM audit_chain) AS chain_rows,
                (SELECT count(*) FROM events e
                  WHERE (e.transaction_id, e.global_position)
                      > (c.last_transaction_id, c.last_global_position)) AS pending,
                (SELECT count(*) FROM events e
                  WHERE (e.transaction_id, e.global_position)
                     <= (c.last_transaction_id, c.last_global_position)
                    AND NOT EXISTS (SELECT 1 FROM audit_chain a
                                     WHERE a.global_position = e.global_position)) AS unchained,
                c.last_audit_position, c.last_chain_hash
           FROM relay_checkpoint c WHERE c.id = 1",
    )
    .fetch_one(&mut *conn)
    .await?;
    let unchained: i64 = row.try_get("unchained")?;
    if unchained > 0 {
        let rows = sqlx::query(
            "SELECT e.global_position, e.aggregate_id, e.sequence
               FROM events e, relay_checkpoint c
              WHERE c.id = 1
                AND (e.transaction_id, e.global_position)
                 <= (c.last_transaction_id, c.last_global_position)
                AND NOT EXISTS (SELECT 1 FROM audit_chain a
                                 WHERE a.global_position = e.global_position)
              ORDER BY e.global_position
              LIMIT $1",
        )
        .bind(FINDINGS_KEPT_MAX as i64)
        .fetch_all(&mut *conn)
        .await?;
        for r in &rows {
            let global_position: i64 = r.try_get("global_position")?;
            let aggregate_id: String = r.try_get("aggregate_id")?;
            let sequence: i64 = r.try_get("sequence")?;
            findings.push(
                Finding::new(
                    Check::Completeness,
                    "the relay has passed this event but it has no chain row: it was inserted behind the relay's back, or its chain row was removed",
                )
                .event(global_position, &aggregate_id, sequence),
            );
        }
    }
    let relay_position: i64 = row.try_get("last_audit_position")?;
    let relay_hash: Vec<u8> = row.try_get("last_chain_hash")?;
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
        events_total: row.try_get("events_total")?,
        chain_rows: row.try_get("chain_rows")?,
        pending: row.try_get("pending")?,
        unchained,
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

async fn event_count(pool: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(pool)
        .await
}

/// Rebuilds every projection into the scratch schema and diffs each table with the live one
/// (`EXCEPT ALL` both ways). The live projections may lag the store: the comparison waits
/// until each has applied exactly what the rebuild did (its offsets equal the rebuild's);
/// if new events keep arriving it rebuilds again; a projection still behind when the wait is
/// over is reported as lagging, not as a mismatch.
async fn check_projections(
    pool: &PgPool,
    wait: Duration,
    findings: &mut Findings,
) -> Result<Vec<ProjectionCheck>, AuditError> {
    let all = projections::all();
    let refs: Vec<&dyn projections::Projection> = all.iter().map(|p| p.as_ref()).collect();
    let deadline = Instant::now() + wait;
    let mut offsets: Vec<(i64, i64)>;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let replayed = projections::replay::replay(
            pool,
            &all,
            SCRATCH_SCHEMA,
            projections::replay::BATCH_SIZE_DEFAULT,
        )
        .await;
        let report = match replayed {
            Ok(report) => report,
            // The events themselves cannot be applied (a forged or mangled payload): that is
            // a finding, not a reason to stop verifying.
            Err(projections::replay::ReplayError::Projection(error)) if !error.is_transient() => {
                findings.push(Finding::new(
                    Check::Projection,
                    format!("the projections cannot be rebuilt from the events: {error}"),
                ));
                return Ok(refs
                    .iter()
                    .map(|p| ProjectionCheck {
                        projection: p.name().to_owned(),
                        status: ProjectionStatus::Unbuildable,
                        aggregates_behind: 0,
                        aggregates_ahead: 0,
                        tables: Vec::new(),
                    })
                    .collect());
            }
            Err(other) => return Err(other.into()),
        };
        loop {
            offsets = Vec::with_capacity(refs.len());
            for projection in &refs {
                offsets.push(offsets_against_rebuild(pool, projection.name()).await?);
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
        let store_moved = event_count(pool).await? != report.events as i64;
        if ahead && store_moved && attempt < REBUILD_ATTEMPTS_MAX && Instant::now() < deadline {
            continue;
        }
        break;
    }

    let mut checks = Vec::with_capacity(refs.len());
    for (projection, (behind, ahead)) in refs.iter().zip(offsets) {
        let mut tables = Vec::new();
        for table in projection.tables() {
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
                        projection.name(),
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
                        projection.name()
                    ),
                ));
            }
        }
        checks.push(ProjectionCheck {
            projection: projection.name().to_owned(),
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
