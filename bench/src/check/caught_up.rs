//! `caught_up`: the relay and every projection reach the store's head, within a bound.

use std::time::{Duration, Instant};

use sqlx::PgPool;

use super::{bounded, progress, Finding, Status, POLL_INTERVAL, PROGRESS_INTERVAL};

/// Waits until the relay has published every committed event and every projection has
/// applied all the relay published (the helpers `/health` reports lag with).
pub(super) async fn caught_up(
    pool: &PgPool,
    names: &[&str],
    timeout: Duration,
) -> Result<Finding, String> {
    let started = Instant::now();
    let mut said = Instant::now();
    let mut last_error = None;
    let mut last = None;
    loop {
        let reading = bounded("reading the relay's and projections' progress", async {
            let relay = eventstore::checkpoint::relay_progress(pool).await?;
            let lags = projections::progress::projections(pool, names).await?;
            Ok((relay, lags))
        })
        .await;
        match reading {
            Ok((relay, lags)) => {
                let behind: Vec<(String, i64)> =
                    std::iter::once(("relay".to_owned(), relay.events_behind))
                        .chain(lags.iter().map(|l| (l.projection.clone(), l.events_behind)))
                        .collect();
                if behind.iter().all(|(_, n)| *n == 0) {
                    let mut finding = Finding::new(
                        Status::Pass,
                        format!(
                            "the relay ({} events published) and {} projections are at the store's head, after {:.1} s",
                            relay.published_total,
                            lags.len(),
                            started.elapsed().as_secs_f64()
                        ),
                    );
                    finding.count("relay.published_total", relay.published_total);
                    finding.count("relay.last_global_position", relay.last_global_position);
                    for lag in &lags {
                        finding.count(
                            format!("{}.last_global_position", lag.projection),
                            lag.last_global_position,
                        );
                    }
                    return Ok(finding);
                }
                if said.elapsed() >= PROGRESS_INTERVAL {
                    said = Instant::now();
                    progress(format_args!(
                        "caught_up: waiting, events behind: {}",
                        behind_text(&behind)
                    ));
                }
                last = Some(behind);
            }
            Err(error) => last_error = Some(error),
        }
        if started.elapsed() >= timeout {
            break;
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    match last {
        Some(behind) => {
            let mut finding = Finding::new(
                Status::Fail,
                format!(
                    "not at the store's head after {} s, events behind: {}",
                    timeout.as_secs(),
                    behind_text(&behind)
                ),
            );
            for (name, n) in behind {
                finding.count(format!("{name}.events_behind"), n);
            }
            Ok(finding)
        }
        None => Err(last_error.unwrap_or_else(|| "no reading of the progress".into())),
    }
}

fn behind_text(behind: &[(String, i64)]) -> String {
    behind
        .iter()
        .map(|(name, n)| format!("{name} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}
