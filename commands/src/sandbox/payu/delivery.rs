//! At-least-once delivery of PayU confirmations, like PayU's own.
//!
//! Every confirmation takes one slot of a bounded queue *before* the change that causes it
//! (no slot -> the call answers 503 and changes nothing), held until the confirmation was
//! delivered (2xx) or given up after the last retry. The form is signed once; only the
//! unsigned `attempts` field changes between redeliveries, as in PayU's.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::Utc;
use reqwest::header::CONTENT_TYPE;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use super::store::{Confirmation, Settlement, Store};
use crate::sandbox::WebhookRetryPolicy;
use connectors::payu::{confirmation_message, new_value, sign, SignatureAlgorithm};

/// A reserved place in the confirmation queue.
pub(crate) struct Slot {
    _permit: OwnedSemaphorePermit,
}

pub(crate) struct Job {
    order_id: u64,
    due: Instant,
    /// A card left pending (in review): approve it when due, then confirm.
    approve_if_pending: bool,
    _slot: Slot,
}

/// The producer side, shared by the HTTP workers and the expiry sweeper.
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

    /// Schedules the confirmation of `order_id` after `delay`. Never blocks (the channel has
    /// a place per slot); fails only once the dispatcher has stopped.
    pub(crate) fn schedule(
        &self,
        slot: Slot,
        order_id: u64,
        delay: Duration,
        approve_if_pending: bool,
    ) -> bool {
        self.jobs
            .try_send(Job {
                order_id,
                due: Instant::now() + delay,
                approve_if_pending,
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

/// Signs confirmations as the account's PayU would.
pub(crate) struct Signer {
    pub merchant_id: String,
    pub api_key: String,
    pub algorithm: SignatureAlgorithm,
    pub secret: Vec<u8>,
}

impl Signer {
    fn sign(&self, c: &Confirmation) -> String {
        let normalized = new_value(&c.value).unwrap_or_default();
        sign(
            self.algorithm,
            &self.secret,
            &confirmation_message(
                &self.api_key,
                &self.merchant_id,
                &c.reference_sale,
                &normalized,
                c.currency.code(),
                c.state_pol,
            ),
        )
    }
}

pub(crate) struct Dispatcher {
    pub http: reqwest::Client,
    pub url: reqwest::Url,
    pub signer: Signer,
    pub retry: WebhookRetryPolicy,
    pub concurrent_posts: usize,
    /// `false`: confirmations are decided but "lost" (never POSTed).
    pub deliver: bool,
}

/// The form body of one delivery attempt, fields in PayU's order (a representative subset).
pub(crate) fn form(c: &Confirmation, merchant_id: &str, signature: &str, attempt: u32) -> String {
    let pairs: Vec<(&str, String)> = vec![
        ("response_code_pol", c.response_code_pol.to_owned()),
        ("phone", String::new()),
        ("additional_value", "0.00".to_owned()),
        ("test", "1".to_owned()),
        ("transaction_date", c.transaction_date.clone()),
        ("cc_number", String::new()),
        ("description", c.description.clone()),
        ("value", c.value.clone()),
        ("payment_method_type", c.payment_method_type.to_string()),
        ("email_buyer", c.email_buyer.clone()),
        ("response_message_pol", c.response_message_pol.to_owned()),
        ("transaction_id", c.transaction_id.clone()),
        ("sign", signature.to_owned()),
        ("tax", "0.00".to_owned()),
        ("payment_method_name", c.payment_method_name.clone()),
        ("pse_bank", c.pse_bank.clone()),
        ("state_pol", c.state_pol.to_owned()),
        ("reference_pol", c.reference_pol.to_string()),
        ("currency", c.currency.code().to_owned()),
        ("risk", "0.0".to_owned()),
        ("attempts", attempt.to_string()),
        ("merchant_id", merchant_id.to_owned()),
        ("installments_number", "1".to_owned()),
        ("transaction_type", c.transaction_type.to_owned()),
        ("reference_sale", c.reference_sale.clone()),
    ];
    serde_urlencoded::to_string(pairs).unwrap_or_default()
}

/// Runs the deliveries until the returned task is aborted (which aborts every delivery in
/// flight) or every queue handle is dropped and the work is done.
pub(crate) fn spawn(
    mut jobs: mpsc::Receiver<Job>,
    store: Arc<Mutex<Store>>,
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
                            Arc::clone(&store),
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
    store: Arc<Mutex<Store>>,
    dispatcher: Arc<Dispatcher>,
    posts: Arc<Semaphore>,
) {
    tokio::time::sleep_until(job.due).await;
    let (confirmation, muted) = {
        let mut store = store.lock().unwrap_or_else(PoisonError::into_inner);
        if job.approve_if_pending {
            // Already settled otherwise: then its current state is what gets confirmed.
            let _ = store.settle(job.order_id, Settlement::Approve, Utc::now());
        }
        let muted = store.order(job.order_id).is_some_and(|o| o.muted);
        (store.confirmation(job.order_id), muted)
    };
    let Some(confirmation) = confirmation else {
        return;
    };
    let event = format!("{}:{}", confirmation.transaction_id, confirmation.state_pol);
    if !dispatcher.deliver || muted {
        tracing::debug!(event, "payu sandbox: confirmation lost on purpose");
        return;
    }
    let signature = dispatcher.signer.sign(&confirmation);
    let retry = dispatcher.retry;
    let attempts = retry.max_attempts.max(1);
    for attempt in 1..=attempts {
        let body = form(
            &confirmation,
            &dispatcher.signer.merchant_id,
            &signature,
            attempt,
        );
        let outcome = {
            let Ok(_post) = posts.acquire().await else {
                return;
            };
            dispatcher
                .http
                .post(dispatcher.url.clone())
                .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(body)
                .send()
                .await
        };
        match outcome {
            Ok(response) if response.status().is_success() => {
                tracing::debug!(event, attempt, "payu sandbox: confirmation delivered");
                return;
            }
            Ok(response) => tracing::info!(
                event,
                attempt,
                status = response.status().as_u16(),
                "payu sandbox: confirmation refused, will retry"
            ),
            Err(error) => tracing::info!(
                event,
                attempt,
                error = %error.without_url(),
                "payu sandbox: confirmation not delivered, will retry"
            ),
        }
        if attempt < attempts {
            tokio::time::sleep(retry.delay_after(attempt)).await;
        }
    }
    tracing::warn!(event, attempts, "payu sandbox: confirmation given up");
}
