//! Decisions and `transaction.updated` webhooks of the Wompi emulator, delivered at least
//! once like Wompi's.
//!
//! Every job takes one slot of a bounded queue *before* the state changes (no slot -> the
//! request answers 503, so a webhook is never silently dropped), and holds it until its
//! webhook was delivered (2xx) or given up after the last retry. A job either decides a
//! card / Nequi transaction when it is due, or reports a transition already made (PSE
//! completed or abandoned, a void). The body is built and signed once, so every redelivery
//! carries the same bytes, checksum and event id.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::Utc;
use reqwest::header::CONTENT_TYPE;
use serde::Serialize;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use super::state::{rfc3339, State, Transaction};
use crate::sandbox::WebhookRetryPolicy;
use connectors::wompi::{
    event_checksum, CHECKSUM_HEADER, DEFAULT_PROPERTIES, EVENT_TRANSACTION_UPDATED,
};

/// A reserved place in the queue.
pub(crate) struct Slot {
    _permit: OwnedSemaphorePermit,
}

pub(crate) enum Work {
    /// Decide this pending card / Nequi transaction, then report it.
    Decide(String),
    /// Decide it, and never report it (a provider that loses its webhook).
    DecideSilently(String),
    /// Report a transition already made.
    Report(Box<Transaction>),
}

pub(crate) struct Job {
    work: Work,
    due: Instant,
    _slot: Slot,
}

#[derive(Clone)]
pub(crate) struct Queue {
    slots: Arc<Semaphore>,
    jobs: mpsc::Sender<Job>,
}

impl Queue {
    pub(crate) fn try_reserve(&self) -> Option<Slot> {
        Arc::clone(&self.slots)
            .try_acquire_owned()
            .ok()
            .map(|permit| Slot { _permit: permit })
    }

    /// Never blocks (the channel has a place per slot); fails only once the dispatcher
    /// stopped.
    pub(crate) fn schedule(&self, slot: Slot, work: Work, delay: Duration) -> bool {
        self.jobs
            .try_send(Job {
                work,
                due: Instant::now() + delay,
                _slot: slot,
            })
            .is_ok()
    }
}

pub(crate) fn queue(capacity: usize) -> (Queue, mpsc::Receiver<Job>) {
    let capacity = capacity.max(1);
    let (jobs, rx) = mpsc::channel(capacity);
    (
        Queue {
            slots: Arc::new(Semaphore::new(capacity)),
            jobs,
        },
        rx,
    )
}

pub(crate) struct Dispatcher {
    pub http: reqwest::Client,
    pub url: reqwest::Url,
    pub events_secret: String,
    /// `"test"` or `"prod"`, as Wompi marks its events.
    pub environment: &'static str,
    /// `false`: transitions still happen, but their webhooks are "lost".
    pub deliver: bool,
    pub retry: WebhookRetryPolicy,
    pub concurrent_posts: usize,
}

/// Runs jobs on the current runtime until the task is aborted or every queue handle is
/// dropped and the work is done.
pub(crate) fn spawn(
    mut jobs: mpsc::Receiver<Job>,
    state: Arc<Mutex<State>>,
    dispatcher: Dispatcher,
) -> JoinHandle<()> {
    let posts = Arc::new(Semaphore::new(dispatcher.concurrent_posts.max(1)));
    let dispatcher = Arc::new(dispatcher);
    tokio::spawn(async move {
        let mut running = JoinSet::new();
        loop {
            tokio::select! {
                job = jobs.recv() => match job {
                    Some(job) => {
                        running.spawn(run(
                            job,
                            Arc::clone(&state),
                            Arc::clone(&dispatcher),
                            Arc::clone(&posts),
                        ));
                    }
                    None => break,
                },
                Some(_) = running.join_next(), if !running.is_empty() => {}
            }
        }
        while running.join_next().await.is_some() {}
    })
}

async fn run(
    job: Job,
    state: Arc<Mutex<State>>,
    dispatcher: Arc<Dispatcher>,
    posts: Arc<Semaphore>,
) {
    tokio::time::sleep_until(job.due).await;
    let decide = |id: &str| {
        state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .decide(id, Utc::now())
    };
    let transaction = match job.work {
        Work::Decide(id) => match decide(&id) {
            Some(tx) => tx,
            None => return,
        },
        Work::DecideSilently(id) => {
            decide(&id);
            return;
        }
        Work::Report(tx) => *tx,
    };
    if !dispatcher.deliver {
        tracing::debug!(transaction_id = %transaction.id, "wompi sandbox: webhook dropped (delivery off)");
        return;
    }
    let (body, checksum) = match signed_event(&transaction, &dispatcher) {
        Ok(signed) => signed,
        Err(error) => {
            tracing::error!(%error, "wompi sandbox: cannot serialize a webhook");
            return;
        }
    };
    let event_id = format!("{}:{}", transaction.id, transaction.status.as_str());
    let attempts = dispatcher.retry.max_attempts.max(1);
    for attempt in 1..=attempts {
        let outcome = {
            let Ok(_post) = posts.acquire().await else {
                return;
            };
            dispatcher
                .http
                .post(dispatcher.url.clone())
                .header(CONTENT_TYPE, "application/json")
                .header(CHECKSUM_HEADER, checksum.as_str())
                .body(body.clone())
                .send()
                .await
        };
        match outcome {
            Ok(response) if response.status().is_success() => {
                tracing::debug!(event_id, attempt, "wompi sandbox: webhook delivered");
                return;
            }
            Ok(response) => tracing::info!(
                event_id,
                attempt,
                status = response.status().as_u16(),
                "wompi sandbox: webhook refused, will retry"
            ),
            Err(error) => tracing::info!(
                event_id,
                attempt,
                error = %error.without_url(),
                "wompi sandbox: webhook not delivered, will retry"
            ),
        }
        if attempt < attempts {
            tokio::time::sleep(dispatcher.retry.delay_after(attempt)).await;
        }
    }
    tracing::warn!(event_id, attempts, "wompi sandbox: webhook given up");
}

#[derive(Serialize)]
struct Event<'a> {
    event: &'static str,
    data: EventData<'a>,
    environment: &'static str,
    signature: EventSignature,
    timestamp: i64,
    sent_at: String,
}

#[derive(Serialize)]
struct EventData<'a> {
    transaction: EventTransaction<'a>,
}

#[derive(Serialize)]
struct EventTransaction<'a> {
    id: &'a str,
    amount_in_cents: i64,
    reference: &'a str,
    customer_email: &'a str,
    currency: &'a str,
    payment_method_type: &'static str,
    redirect_url: Option<&'a str>,
    status: &'static str,
    status_message: Option<&'static str>,
    shipping_address: Option<()>,
    payment_link_id: Option<()>,
    payment_source_id: Option<()>,
}

#[derive(Serialize)]
struct EventSignature {
    properties: [&'static str; 3],
    checksum: String,
}

/// The event body and its checksum (Wompi's default properties: id, status, amount).
pub(crate) fn signed_event(
    tx: &Transaction,
    dispatcher: &Dispatcher,
) -> Result<(Vec<u8>, String), serde_json::Error> {
    let now = Utc::now();
    let timestamp = now.timestamp();
    let cents = tx.amount_in_cents.to_string();
    let checksum = event_checksum(
        &[&tx.id, tx.status.as_str(), &cents],
        timestamp,
        &dispatcher.events_secret,
    );
    let event = Event {
        event: EVENT_TRANSACTION_UPDATED,
        data: EventData {
            transaction: EventTransaction {
                id: &tx.id,
                amount_in_cents: tx.amount_in_cents,
                reference: &tx.reference,
                customer_email: &tx.customer_email,
                currency: &tx.currency,
                payment_method_type: tx.method.kind(),
                redirect_url: tx.redirect_url.as_deref(),
                status: tx.status.as_str(),
                status_message: tx.status_message,
                shipping_address: None,
                payment_link_id: None,
                payment_source_id: None,
            },
        },
        environment: dispatcher.environment,
        signature: EventSignature {
            properties: DEFAULT_PROPERTIES,
            checksum: checksum.clone(),
        },
        timestamp,
        sent_at: rfc3339(now),
    };
    Ok((serde_json::to_vec(&event)?, checksum))
}
