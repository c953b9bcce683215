//! Read-your-writes without polling the database: a reader that wants a payment at version
//! `v` registers here, and the status projector, right after committing a batch, wakes the
//! readers whose aggregate reached their version. Readers in another process than the
//! projector (split roles) never hear from it and fall back to polling.

use std::collections::HashMap;
use std::sync::Mutex;

use domain::PublishedEvent;
use tokio::sync::oneshot;

/// Aggregates with someone waiting, at most: beyond it readers just poll.
pub const WAITING_AGGREGATES_MAX: usize = 16_384;

/// The version a reader waits for, and how to wake it.
type Waiter = (i64, oneshot::Sender<()>);

#[derive(Debug, Default)]
pub struct VersionWaiters {
    waiting: Mutex<HashMap<String, Vec<Waiter>>>,
    fed_in_process: bool,
}

impl VersionWaiters {
    /// `fed_in_process`: this process runs the status projector, which will call `applied`.
    pub fn new(fed_in_process: bool) -> Self {
        Self {
            waiting: Mutex::default(),
            fed_in_process,
        }
    }

    /// Whether wake-ups will come at all (otherwise readers must poll).
    pub fn fed_in_process(&self) -> bool {
        self.fed_in_process
    }

    /// A signal that fires once `aggregate_id` has been applied up to `version` (or later);
    /// `None` when too many are waiting already. Register *before* reading, so an apply that
    /// lands between the read and the wait is not missed.
    pub fn wait_for(&self, aggregate_id: &str, version: i64) -> Option<oneshot::Receiver<()>> {
        let mut waiting = self.waiting.lock().ok()?;
        if waiting.len() >= WAITING_AGGREGATES_MAX {
            // Readers that gave up leave closed senders behind: drop those first.
            waiting.retain(|_, senders| {
                senders.retain(|(_, sender)| !sender.is_closed());
                !senders.is_empty()
            });
            if waiting.len() >= WAITING_AGGREGATES_MAX {
                return None;
            }
        }
        let (sender, receiver) = oneshot::channel();
        waiting
            .entry(aggregate_id.to_owned())
            .or_default()
            .push((version, sender));
        Some(receiver)
    }

    /// `events` are committed: wake whoever waited for them.
    pub fn applied(&self, events: &[PublishedEvent]) {
        let Ok(mut waiting) = self.waiting.lock() else {
            return;
        };
        if waiting.is_empty() {
            return;
        }
        for event in events {
            let Some(senders) = waiting.get_mut(&event.aggregate_id) else {
                continue;
            };
            let (ready, pending): (Vec<_>, Vec<_>) = std::mem::take(senders)
                .into_iter()
                .partition(|(wanted, _)| *wanted <= event.sequence);
            for (_, sender) in ready {
                let _reader_gone = sender.send(());
            }
            if pending.is_empty() {
                waiting.remove(&event.aggregate_id);
            } else {
                *senders = pending;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(aggregate_id: &str, sequence: i64) -> PublishedEvent {
        PublishedEvent {
            global_position: sequence,
            aggregate_type: "Payment".into(),
            aggregate_id: aggregate_id.into(),
            sequence,
            event_type: "PaymentInitiated".into(),
            event_version: "1".into(),
            payload: serde_json::json!({}),
            metadata: serde_json::json!({}),
            recorded_at: chrono::Utc::now(),
        }
    }

    #[test]
    fn wakes_only_readers_whose_version_was_reached() {
        let waiters = VersionWaiters::default();
        let mut at_two = waiters.wait_for("a", 2).expect("room");
        let mut at_three = waiters.wait_for("a", 3).expect("room");
        let mut other = waiters.wait_for("b", 1).expect("room");
        waiters.applied(&[event("a", 2)]);
        assert!(at_two.try_recv().is_ok());
        assert!(at_three.try_recv().is_err());
        assert!(other.try_recv().is_err());
        waiters.applied(&[event("a", 5), event("b", 1)]);
        assert!(at_three.try_recv().is_ok());
        assert!(other.try_recv().is_ok());
        assert!(waiters.waiting.lock().expect("lock").is_empty());
    }

    #[test]
    fn bounded_and_pruned_of_readers_that_left() {
        let waiters = VersionWaiters::default();
        let kept: Vec<_> = (0..WAITING_AGGREGATES_MAX)
            .map(|i| waiters.wait_for(&i.to_string(), 1).expect("room"))
            .collect();
        assert!(waiters.wait_for("one too many", 1).is_none());
        drop(kept);
        assert!(waiters.wait_for("after they left", 1).is_some());
        assert_eq!(waiters.waiting.lock().expect("lock").len(), 1);
    }
}
