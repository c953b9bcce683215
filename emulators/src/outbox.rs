//! The webhook outbox every emulator sends through: at-least-once delivery, like a real
//! provider's, with every part bounded.
//!
//! * A job takes one slot of a bounded queue *before* the state change that causes it (no
//!   slot -> the request answers `503`, so a webhook is never silently dropped). The slot is
//!   held until the webhook was delivered (2xx) or given up after the last retry.
//! * When a job is due, the emulator's [`Notifier`] makes the change it stands for (if any)
//!   and says what to tell; that is built once, so every redelivery tells the same event.
//! * Each attempt is encoded and signed by the [`Notifier`] (PayMongo signs the time of
//!   sending, PayU counts attempts in the form), POSTed with at most
//!   [`OutboxOptions::concurrency`] in flight, and retried per [`WebhookRetryPolicy`].

use std::io;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use reqwest::header::CONTENT_TYPE;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

/// How long an idle connection to the webhook receiver is kept. Shorter than payledger's
/// keep-alive: a webhook sent on a connection the server is closing fails and waits for
/// its retry.
pub const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(2);

/// Webhook redelivery: `max_attempts` tries in all; after failed try `n` wait about
/// `base_delay * 2^(n-1)` (jittered down to half), at most `max_delay`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WebhookRetryPolicy {
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for WebhookRetryPolicy {
    fn default() -> Self {
        WebhookRetryPolicy {
            max_attempts: 8,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
        }
    }
}

impl WebhookRetryPolicy {
    /// Wait after failed attempt `attempt` (1-based): exponential from `base_delay`, capped at
    /// `max_delay`, with jitter in [half, full] so redeliveries do not arrive in lockstep.
    pub fn delay_after(&self, attempt: u32) -> Duration {
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

/// One delivery attempt, encoded and signed.
pub(crate) struct Attempt {
    pub content_type: &'static str,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl Attempt {
    pub(crate) fn json(body: Vec<u8>, headers: Vec<(&'static str, String)>) -> Attempt {
        Attempt {
            content_type: "application/json",
            headers,
            body,
        }
    }
}

/// The part of the outbox that is each provider's own.
pub(crate) trait Notifier: Send + Sync + 'static {
    /// What is queued: the change to make and tell when due.
    type Job: Send + 'static;
    /// What is told, fixed for every attempt.
    type Ready: Send + Sync + 'static;

    /// Runs once, when the job is due: makes its change and returns what to tell, or `None`
    /// when nothing is to be sent (nothing changed, or the webhook is lost on purpose).
    fn due(&self, job: Self::Job) -> Option<Self::Ready>;

    /// Encodes and signs attempt `attempt` (1-based).
    fn attempt(&self, ready: &Self::Ready, attempt: u32) -> io::Result<Attempt>;

    /// Names the notification in logs (never a secret or a payment token).
    fn label(&self, ready: &Self::Ready) -> String;
}

/// Bounds and retries of an outbox.
#[derive(Debug, Clone)]
pub(crate) struct OutboxOptions {
    /// Who sends, in logs and in the `User-Agent`.
    pub name: &'static str,
    /// Jobs waiting or being retried at once.
    pub capacity: usize,
    pub retry: WebhookRetryPolicy,
    /// Timeout of one POST.
    pub timeout: Duration,
    /// POSTs in flight at once.
    pub concurrency: usize,
}

/// A reserved place in the outbox.
pub(crate) struct Slot {
    _permit: OwnedSemaphorePermit,
}

struct Job<J> {
    job: J,
    due: Instant,
    _slot: Slot,
}

/// The producer side, shared by the HTTP workers (and any background sweeper).
pub(crate) struct Outbox<J> {
    slots: Arc<Semaphore>,
    jobs: mpsc::Sender<Job<J>>,
}

impl<J> Clone for Outbox<J> {
    fn clone(&self) -> Self {
        Outbox {
            slots: Arc::clone(&self.slots),
            jobs: self.jobs.clone(),
        }
    }
}

impl<J> Outbox<J> {
    /// Takes a slot if one is free.
    pub(crate) fn try_reserve(&self) -> Option<Slot> {
        Arc::clone(&self.slots)
            .try_acquire_owned()
            .ok()
            .map(|permit| Slot { _permit: permit })
    }

    /// Queues `job` to be due after `delay`. Never blocks: the channel has a place per slot.
    /// Fails only once the dispatcher has stopped.
    pub(crate) fn schedule(&self, slot: Slot, job: J, delay: Duration) -> bool {
        self.jobs
            .try_send(Job {
                job,
                due: Instant::now() + delay,
                _slot: slot,
            })
            .is_ok()
    }
}

/// Parses a webhook URL; only http(s) is accepted.
pub(crate) fn webhook_url(owner: &str, url: &str) -> io::Result<reqwest::Url> {
    reqwest::Url::parse(url)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https"))
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{owner} webhook_url must be an http(s) URL"),
            )
        })
}

/// Starts the dispatcher on the current runtime. It runs until the returned task is aborted
/// (which aborts every delivery in flight) or every [`Outbox`] is dropped and the work done.
pub(crate) fn start<N: Notifier>(
    url: reqwest::Url,
    notifier: N,
    options: &OutboxOptions,
) -> io::Result<(Outbox<N::Job>, JoinHandle<()>)> {
    let http = reqwest::Client::builder()
        .timeout(options.timeout)
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(format!("payledger-{}", options.name.replace(' ', "-")))
        .build()
        .map_err(io::Error::other)?;
    let capacity = options.capacity.max(1);
    let (jobs, mut rx) = mpsc::channel::<Job<N::Job>>(capacity);
    let outbox = Outbox {
        slots: Arc::new(Semaphore::new(capacity)),
        jobs,
    };
    let dispatcher = Arc::new(Dispatcher {
        http,
        url,
        notifier,
        retry: options.retry,
        name: options.name,
        posts: Semaphore::new(options.concurrency.max(1)),
    });
    let task = tokio::spawn(async move {
        let mut deliveries = JoinSet::new();
        loop {
            tokio::select! {
                job = rx.recv() => match job {
                    Some(job) => {
                        deliveries.spawn(Arc::clone(&dispatcher).run(job));
                    }
                    None => break,
                },
                Some(_) = deliveries.join_next(), if !deliveries.is_empty() => {}
            }
        }
        while deliveries.join_next().await.is_some() {}
    });
    Ok((outbox, task))
}

struct Dispatcher<N> {
    http: reqwest::Client,
    url: reqwest::Url,
    notifier: N,
    retry: WebhookRetryPolicy,
    name: &'static str,
    posts: Semaphore,
}

impl<N: Notifier> Dispatcher<N> {
    /// The slot in `job` is released when this returns.
    async fn run(self: Arc<Self>, job: Job<N::Job>) {
        tokio::time::sleep_until(job.due).await;
        let Some(ready) = self.notifier.due(job.job) else {
            return;
        };
        let name = self.name;
        let event = self.notifier.label(&ready);
        let attempts = self.retry.max_attempts.max(1);
        for attempt in 1..=attempts {
            let encoded = match self.notifier.attempt(&ready, attempt) {
                Ok(encoded) => encoded,
                Err(error) => {
                    tracing::error!(name, event, %error, "emulator: cannot encode a webhook");
                    return;
                }
            };
            let outcome = {
                let Ok(_post) = self.posts.acquire().await else {
                    return;
                };
                let mut request = self
                    .http
                    .post(self.url.clone())
                    .header(CONTENT_TYPE, encoded.content_type);
                for (header, value) in encoded.headers {
                    request = request.header(header, value);
                }
                request.body(encoded.body).send().await
            };
            match outcome {
                Ok(response) if response.status().is_success() => {
                    tracing::debug!(name, event, attempt, "emulator: webhook delivered");
                    return;
                }
                Ok(response) => tracing::info!(
                    name,
                    event,
                    attempt,
                    status = response.status().as_u16(),
                    "emulator: webhook refused, will retry"
                ),
                Err(error) => tracing::info!(
                    name,
                    event,
                    attempt,
                    error = %error.without_url(),
                    "emulator: webhook not delivered, will retry"
                ),
            }
            if attempt < attempts {
                tokio::time::sleep(self.retry.delay_after(attempt)).await;
            }
        }
        tracing::warn!(name, event, attempts, "emulator: webhook given up");
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

    struct Nothing;

    impl Notifier for Nothing {
        type Job = ();
        type Ready = ();

        fn due(&self, _: ()) -> Option<()> {
            None
        }

        fn attempt(&self, _: &(), _: u32) -> io::Result<Attempt> {
            Ok(Attempt::json(Vec::new(), Vec::new()))
        }

        fn label(&self, _: &()) -> String {
            String::new()
        }
    }

    #[tokio::test]
    async fn the_queue_hands_out_at_most_capacity_slots() {
        let options = OutboxOptions {
            name: "test",
            capacity: 2,
            retry: WebhookRetryPolicy::default(),
            timeout: Duration::from_secs(1),
            concurrency: 1,
        };
        let url = webhook_url("test", "http://127.0.0.1:9/hook").unwrap();
        let (queue, dispatcher) = start(url, Nothing, &options).unwrap();
        let a = queue.try_reserve();
        let b = queue.try_reserve();
        assert!(a.is_some() && b.is_some());
        assert!(queue.try_reserve().is_none());
        drop(a);
        assert!(queue.try_reserve().is_some());
        dispatcher.abort();
    }
}
