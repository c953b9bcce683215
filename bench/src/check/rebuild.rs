//! `projections_match_rebuild`: every projection equals a rebuild from the event store alone
//! (`payledger replay --into` a scratch schema), row for row, once the live projections have
//! applied exactly the events the rebuild did.

use std::time::Instant;

use serde_json::Value;
use sqlx::PgPool;

use super::spawned::{spawn_payledger, tail};
use super::{bounded, progress, scan, CheckConfig, Examples, Finding, Status, POLL_INTERVAL};

/// Rebuilds tried while the store keeps growing under the comparison.
const REBUILDS_MAX: u32 = 3;

/// Two queries that must give the same multiset of rows.
struct Relation {
    name: String,
    live: String,
    rebuilt: String,
}

/// Every relation compared: each projection's own tables whole, and the shared bookkeeping
/// of those projections (their offsets, their progress).
fn relations(schema: &str) -> Vec<Relation> {
    let all = projections::all();
    // Names from the code, [a-z]: safe to splice as literals.
    let names = all
        .iter()
        .map(|p| format!("'{}'", p.name()))
        .collect::<Vec<_>>()
        .join(", ");
    let mut relations: Vec<Relation> = all
        .iter()
        .flat_map(|p| p.tables().iter())
        .map(|table| Relation {
            name: (*table).to_owned(),
            live: format!("SELECT * FROM public.{table}"),
            rebuilt: format!("SELECT * FROM {schema}.{table}"),
        })
        .collect();
    let shared = |table: &str, columns: &str| Relation {
        name: table.to_owned(),
        live: format!("SELECT {columns} FROM public.{table} WHERE projection IN ({names})"),
        rebuilt: format!("SELECT {columns} FROM {schema}.{table} WHERE projection IN ({names})"),
    };
    relations.push(shared(
        "projection_offsets",
        "projection, aggregate_id, last_sequence",
    ));
    // `applied_total` counts each event a projection applied: an event applied twice shows
    // here even where the rows it wrote look the same. Left out: `updated_at` (the wall
    // clock of the last write) and `last_recorded_at` (the newest `recorded_at` among each
    // batch's last events: it depends on where batches were cut, since `recorded_at` is a
    // transaction's start time and not in global order).
    relations.push(shared(
        "projection_progress",
        "projection, last_global_position, applied_total",
    ));
    relations
}

struct Diff {
    live_rows: i64,
    only_live: i64,
    only_rebuilt: i64,
    examples: Vec<String>,
}

async fn diff(pool: &PgPool, relation: &Relation, examples_max: usize) -> Result<Diff, String> {
    let only = |a: &str, b: &str| format!("({a}) EXCEPT ALL ({b})");
    let count = |sql: String| async move {
        scan(
            &format!("comparing {}", relation.name),
            sqlx::query_scalar::<_, i64>(&sql).fetch_one(pool),
        )
        .await
    };
    let live_rows = count(format!("SELECT count(*) FROM ({}) d", relation.live)).await?;
    let only_live = count(format!(
        "SELECT count(*) FROM ({}) d",
        only(&relation.live, &relation.rebuilt)
    ))
    .await?;
    let only_rebuilt = count(format!(
        "SELECT count(*) FROM ({}) d",
        only(&relation.rebuilt, &relation.live)
    ))
    .await?;
    let mut examples = Vec::new();
    for (side, a, b, n) in [
        ("live only", &relation.live, &relation.rebuilt, only_live),
        (
            "rebuilt only",
            &relation.rebuilt,
            &relation.live,
            only_rebuilt,
        ),
    ] {
        if n == 0 || examples_max == 0 {
            continue;
        }
        // As JSON text: numeric columns stay exact.
        let rows: Vec<String> = scan(
            &format!("sampling {}", relation.name),
            sqlx::query_scalar(&format!(
                "SELECT to_json(d)::text FROM ({}) d LIMIT {examples_max}",
                only(a, b)
            ))
            .fetch_all(pool),
        )
        .await?;
        examples.extend(
            rows.into_iter()
                .map(|r| format!("{}, {side}: {r}", relation.name)),
        );
    }
    Ok(Diff {
        live_rows,
        only_live,
        only_rebuilt,
        examples,
    })
}

/// `payledger replay --projection all --into <schema>`; returns the events it replayed.
async fn rebuild(config: &CheckConfig) -> Result<i64, String> {
    let args = [
        "replay",
        "--projection",
        "all",
        "--into",
        config.scratch_schema.as_str(),
    ];
    let spawned = spawn_payledger(config, &args, config.step_timeout).await?;
    if !spawned.status.success() {
        return Err(format!(
            "payledger replay failed ({}): {}",
            spawned.status,
            tail(&spawned.stderr, 2_000)
        ));
    }
    spawned
        .stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str::<Value>(l.trim()).ok())
        .and_then(|report| report["events"].as_i64())
        .ok_or_else(|| {
            format!(
                "payledger replay printed no report: {}",
                tail(&spawned.stdout, 2_000)
            )
        })
}

pub(super) async fn projections_match_rebuild(
    pool: &PgPool,
    config: &CheckConfig,
) -> Result<Finding, String> {
    let schema = config.scratch_schema.as_str();
    if !projections::replay::valid_schema(schema) {
        return Err(format!(
            "--scratch-schema `{schema}`: 1-63 of [a-z0-9_], starting with a letter or `_`, not `public`"
        ));
    }
    let relations = relations(schema);
    let offsets = relations
        .iter()
        .find(|r| r.name == "projection_offsets")
        .ok_or("no offsets relation")?;
    // The live projections must have applied exactly the events the rebuild did before rows
    // are compared: the offsets say so. Events appended meanwhile (a resolver still at work)
    // move the store on; then the rebuild is made again, a bounded number of times.
    let mut replayed = 0;
    let mut settled = false;
    let deadline = Instant::now() + config.drain_timeout;
    for attempt in 1..=REBUILDS_MAX {
        replayed = rebuild(config).await?;
        progress(format_args!(
            "projections_match_rebuild: rebuilt from {replayed} events into {schema} (attempt {attempt})"
        ));
        let store_moved = loop {
            let d = diff(pool, offsets, 0).await?;
            if d.only_live + d.only_rebuilt == 0 {
                settled = true;
                break false;
            }
            let stored = scan("counting events", eventstore::feed::count(pool)).await?;
            if stored != replayed {
                break true;
            }
            if Instant::now() >= deadline {
                break false;
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        };
        if !store_moved {
            break;
        }
        if attempt == REBUILDS_MAX {
            return Err(format!(
                "the event store kept growing during {REBUILDS_MAX} rebuilds: stop the load (and let the resolver settle) before checking"
            ));
        }
    }
    let mut finding = Finding::new(Status::Pass, String::new());
    let mut examples = Examples::new(config.examples_max);
    let (mut differing, mut rows) = (Vec::new(), 0);
    for relation in &relations {
        let d = diff(pool, relation, config.examples_max).await?;
        rows += d.live_rows;
        finding.count(format!("{}.live_rows", relation.name), d.live_rows);
        if d.only_live + d.only_rebuilt > 0 {
            finding.count(format!("{}.only_live", relation.name), d.only_live);
            finding.count(format!("{}.only_rebuilt", relation.name), d.only_rebuilt);
            differing.push(format!(
                "{} ({} rows only live, {} only rebuilt)",
                relation.name, d.only_live, d.only_rebuilt
            ));
            for example in d.examples {
                examples.push(|| example);
            }
        }
    }
    finding.count("events_replayed", replayed);
    finding.count("relations_compared", relations.len() as i64);
    finding.examples = examples.kept;
    if differing.is_empty() {
        finding.summary = format!(
            "{} relations ({rows} live rows) equal the rebuild from {replayed} events, row for row",
            relations.len()
        );
    } else {
        finding.status = Status::Fail;
        finding.summary = format!(
            "{} of {} relations differ from the rebuild from {replayed} events{}: {}",
            differing.len(),
            relations.len(),
            if settled {
                ""
            } else {
                " (the live offsets never matched the rebuild's: an event applied twice or never)"
            },
            differing.join("; ")
        );
    }
    Ok(finding)
}

pub(super) async fn drop_scratch(pool: &PgPool, schema: &str) -> Result<(), String> {
    if !projections::replay::valid_schema(schema) {
        return Ok(()); // never created
    }
    // Called outside any step (so a timed-out rebuild is cleaned up too): bounded itself.
    bounded(
        "dropping the scratch schema",
        sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE")).execute(pool),
    )
    .await
    .map(|_| ())
}
