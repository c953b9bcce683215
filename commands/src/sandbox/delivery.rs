//! At-least-once webhook delivery, like a real provider's.
//!
//! Each new transaction takes one slot of a bounded queue *before* it is created (no slot ->
//! the create call answers 503, so a webhook is never silently dropped). The slot is held
//! until its webhook was delivered (2xx) or given up after the last retry. The outcome is
//! decided when the webhook is due; the body is built and signed once, so every redelivery
//! carries the same event id, bytes and signature.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use rand::Rng;
use reqwest::header::CONTENT_TYPE;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use uuid::Uuid;

use super::ledger::{Decided, Ledger};
use super::WebhookRetryPolicy;
use connectors::sandbox::{
    sign, WireEvent, WireTransaction, EVENT_TYPE_TRANSACTION_UPDATED, SIGNATURE_HEADER,
};

/// A reserved place in the webhook queue.
pub(crate) struct Slot {
    _permit: OwnedSemaphorePermit,
}

pub(crate) struct Job {
    transaction_id: String,
    due: Instant,
    /// `false`: the outcome is decided when due, and no webhook ever tells it.
    send: bool,
    _slot: Slot,
}

/// The producer side, shared by the HTTP workers.
#[derive(Clone)]
pub(crate) struct WebhookQueue {
    slots: Arc<Semaphore>,
    jobs: mpsc::Sender<Job>,
}

impl WebhookQueue {
    /// Takes a slot if one is free.
    pub(crate) fn try_reserve(&self) -> Option<Slot> {
        Arc::clone(&self.slots)
            .try_acquire_owned()
            .ok()
            .map(|permit| Slot { _permit: permit })
    }

    /// Schedules the decision of a new transaction after `delay`, and its webhook unless
    /// `send` is false. Never blocks: the channel has as many places as there are slots.
    /// Fails only once the dispatcher has stopped.
    pub(crate) fn schedule(
        &self,
        slot: Slot,
        transaction_id: String,
        delay: Duration,
        send: bool,
    ) -> bool {
        self.jobs
            .try_send(Job {
                transaction_id,
                due: Instant::now() + delay,
                send,
                _slot: slot,
            })
            .is_ok()
    }
}

pub(crate) struct Dispatcher {
    pub http: reqwest::Client,
    pub url: reqwest::Url,
    pub secret: Vec<u8>,
    pub retry: WebhookRetryPolicy,
    /// Most webhook POSTs in flight at once.
    pub concurrent_posts: usize,
}

pub(crate) fn queue(capacity: usize) -> (WebhookQueue, mpsc::Receiver<Job>) {
    let capacity = capacity.max(1);
    let (jobs, rx) = mpsc::channel(capacity);
    (
        WebhookQueue {
            slots: Arc::new(Semaphore::new(capacity)),
            jobs,
        },
        rx,
    )
}

/// Runs the deliveries on the current runtime until the returned task is aborted (which
/// aborts every delivery in flight) or every queue handle is dropped and the work is done.
pub(crate) fn spawn(
    mut jobs: mpsc::Receiver<Job>,
    ledger: Arc<Mutex<Ledger>>,
    dispatcher: Dispatcher,
) -> JoinHandle<()> {
    let posts = Arc::new(Semaphore::new(dispatcher.concurrent_posts.max(1)));
    let dispatcher = Arc::new(dispatcher);
    tokio::spawn(async move {
        let mut deliveries = JoinSet::new();
        loop {
            tokio::select! {
                job = jobs.recv() => match job {
                    Some(job) => {
                        deliveries.spawn(deliver(
                            job,
                            Arc::clone(&ledger),
                            Arc::clone(&dispatcher),
                            Arc::clone(&posts),
                        ));
                    }
                    None => break,
                },
                Some(_) = deliveries.join_next(), if !deliveries.is_empty() => {}
            }
        }
        while deliveries.join_next().await.is_some() {}
    })
}

async fn deliver(
    job: Job,
    ledger: Arc<Mutex<Ledger>>,
    dispatcher: Arc<Dispatcher>,
    posts: Arc<Semaphore>,
) {
    tokio::time::sleep_until(job.due).await;
    let decided = ledger
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .decide(&job.transaction_id);
    let Some(decided) = decided else {
        return;
    };
    if !job.send {
        return;
    }
    let event_id = format!("evt_{}", Uuid::new_v4().simple());
    let body = match serde_json::to_vec(&wire_event(&event_id, decided)) {
        Ok(body) => body,
        Err(error) => {
            tracing::error!(%error, "sandbox: cannot serialize a webhook");
            return;
        }
    };
    let signature = sign(&dispatcher.secret, &body);
    let retry = dispatcher.retry;
    let attempts = retry.max_attempts.max(1);

    for attempt in 1..=attempts {
        let outcome = {
            let Ok(_post) = posts.acquire().await else {
                return;
            };
            dispatcher
                .http
                .post(dispatcher.url.clone())
                .header(CONTENT_TYPE, "application/json")
                .header(SIGNATURE_HEADER, signature.as_str())
                .body(body.clone())
                .send()
                .await
        };
        match outcome {
            Ok(response) if response.status().is_success() => {
                tracing::debug!(event_id, attempt, "sandbox: webhook delivered");
                return;
            }
            Ok(response) => tracing::info!(
                event_id,
                attempt,
                status = response.status().as_u16(),
                "sandbox: webhook refused, will retry"
            ),
            Err(error) => tracing::info!(
                event_id,
                attempt,
                error = %error.without_url(),
                "sandbox: webhook not delivered, will retry"
            ),
        }
        if attempt < attempts {
            tokio::time::sleep(retry.delay_after(attempt)).await;
        }
    }
    tracing::warn!(event_id, attempts, "sandbox: webhook given up");
}

fn wire_event(event_id: &str, decided: Decided) -> WireEvent {
    WireEvent {
        id: event_id.to_owned(),
        event_type: EVENT_TYPE_TRANSACTION_UPDATED.to_owned(),
        created_at: Some(Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)),
        data: WireTransaction {
            transaction_id: decided.transaction_id,
            payment_id: decided.payment_id.to_string(),
            status: decided.status.as_str().to_owned(),
            amount: decided.amount.amount().to_string(),
            currency: decided.amount.currency().code().to_owned(),
            reason: decided.reason.map(str::to_owned),
        },
    }
}

impl WebhookRetryPolicy {
    /// Wait after failed attempt `attempt` (1-based): exponential from `base_delay`, capped at
    /// `max_delay`, with jitter in [half, full] so redeliveries do not arrive in lockstep.
    pub(crate) fn delay_after(&self, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(1).min(30);
        let full = self
            .base_delay
            .saturating_mul(1u32 << exponent)
            .min(self.max_delay);
        let half = full / 2;
        let jitter_ms = u64::try_from((full - half).as_millis()).unwrap_or(u64::MAX);
        half + Duration::from_millis(rand::thread_rng().gen_range(0..=jitter_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_exponentially_within_the_cap() {
        let policy = WebhookRetryPolicy {
            max_attempts: 8,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1_000),
        };
        for _ in 0..50 {
            let d1 = policy.delay_after(1);
            assert!(d1 >= Duration::from_millis(50) && d1 <= Duration::from_millis(100));
            let d3 = policy.delay_after(3);
            assert!(d3 >= Duration::from_millis(200) && d3 <= Duration::from_millis(400));
            let d10 = policy.delay_after(10);
            assert!(d10 >= Duration::from_millis(500) && d10 <= Duration::from_millis(1_000));
            assert!(policy.delay_after(u32::MAX) <= Duration::from_millis(1_000));
        }
    }

    #[test]
    fn the_queue_hands_out_at_most_capacity_slots() {
        let (queue, _rx) = queue(2);
        let a = queue.try_reserve();
        let b = queue.try_reserve();
        assert!(a.is_some() && b.is_some());
        assert!(queue.try_reserve().is_none());
        drop(a);
        assert!(queue.try_reserve().is_some());
    }
}
