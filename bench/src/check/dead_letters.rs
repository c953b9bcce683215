//! `no_dead_letters`: every projection's dead-letter queue is empty (passive declares: the
//! broker is asked, nothing is created or consumed).

use std::collections::BTreeMap;

use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;

use super::{Finding, Status, AMQP_TIMEOUT};

/// `amqp_url`: one node or every node of a cluster, separated by commas (`broker::connect`).
pub(super) async fn no_dead_letters(
    amqp_url: &str,
    prefix: &str,
    names: &[&str],
) -> Result<Finding, String> {
    if broker::nodes(amqp_url).is_empty() {
        return Err("no --amqp-url".into());
    }
    let connection = broker::connect(amqp_url)
        .await
        .map_err(|e| format!("no broker of {amqp_url:?} reachable: {e}"))?;
    let mut counts = BTreeMap::new();
    let mut missing = Vec::new();
    for name in names {
        let queue = projections::topology::dead_letter_queue(prefix, name);
        // A channel per queue: a passive declare of a missing queue closes its channel.
        let channel = tokio::time::timeout(AMQP_TIMEOUT, connection.create_channel())
            .await
            .map_err(|_| "no channel within the timeout".to_owned())?
            .map_err(|e| format!("opening a channel: {e}"))?;
        let declared = tokio::time::timeout(
            AMQP_TIMEOUT,
            channel.queue_declare(
                queue.as_str().into(),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            ),
        )
        .await
        .map_err(|_| format!("{queue}: no answer within {} s", AMQP_TIMEOUT.as_secs()))?;
        match declared {
            Ok(q) => {
                counts.insert(queue, i64::from(q.message_count()));
                let _ = channel.close(200, "checked".into()).await;
            }
            Err(_) => missing.push(queue),
        }
    }
    let _ = connection.close(200, "checked".into()).await;
    let dead: i64 = counts.values().sum();
    let mut finding = if dead > 0 {
        let full: Vec<String> = counts
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(q, n)| format!("{q}: {n}"))
            .collect();
        Finding::new(
            Status::Fail,
            format!("{dead} dead-lettered messages ({})", full.join(", ")),
        )
    } else if !missing.is_empty() {
        // Every projector declares its dead-letter queue at start: a missing one means the
        // prefix is not the one the run used, and an empty answer would prove nothing.
        Finding::new(
            Status::Error,
            format!(
                "no such queue: {} (is --amqp-prefix `{prefix}` the one payledger ran with?)",
                missing.join(", ")
            ),
        )
    } else {
        Finding::new(
            Status::Pass,
            format!("the {} dead-letter queues are empty", counts.len()),
        )
    };
    finding.counts = counts;
    Ok(finding)
}
