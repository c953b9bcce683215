//! Wompi's side of the outbox: decisions and `transaction.updated` webhooks, delivered at
//! least once like Wompi's.
//!
//! A job either decides a card / Nequi transaction when it is due, or reports a transition
//! already made (PSE completed or abandoned, a void). The body is built and signed once, so
//! every redelivery carries the same bytes, checksum and event id.

use std::io;
use std::sync::{Arc, Mutex, PoisonError};

use chrono::Utc;

use super::state::{rfc3339, State, Transaction};
use super::wire::{
    event_checksum, Event, EventData, EventSignature, EventTransaction, CHECKSUM_HEADER,
    DEFAULT_PROPERTIES, EVENT_TRANSACTION_UPDATED,
};
use crate::outbox::{self, Attempt};

pub(crate) enum Work {
    /// Decide this pending card / Nequi transaction, then report it.
    Decide(String),
    /// Decide it, and never report it (a provider that loses its webhook).
    DecideSilently(String),
    /// Report a transition already made.
    Report(Box<Transaction>),
}

pub(crate) struct Notifier {
    pub state: Arc<Mutex<State>>,
    pub events_secret: String,
    /// `"test"` or `"prod"`, as Wompi marks its events.
    pub environment: &'static str,
    /// `false`: transitions still happen, but their webhooks are "lost".
    pub deliver: bool,
}

pub(crate) struct Signed {
    event_id: String,
    body: Vec<u8>,
    checksum: String,
}

impl outbox::Notifier for Notifier {
    type Job = Work;
    type Ready = Signed;

    fn due(&self, work: Work) -> Option<Signed> {
        let decide = |id: &str| {
            self.state
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .decide(id, Utc::now())
        };
        let transaction = match work {
            Work::Decide(id) => decide(&id)?,
            Work::DecideSilently(id) => {
                decide(&id);
                return None;
            }
            Work::Report(tx) => *tx,
        };
        if !self.deliver {
            tracing::debug!(transaction_id = %transaction.id, "wompi sandbox: webhook dropped (delivery off)");
            return None;
        }
        match signed_event(&transaction, &self.events_secret, self.environment) {
            Ok((body, checksum)) => Some(Signed {
                event_id: format!("{}:{}", transaction.id, transaction.status.as_str()),
                body,
                checksum,
            }),
            Err(error) => {
                tracing::error!(%error, "wompi sandbox: cannot serialize a webhook");
                None
            }
        }
    }

    fn attempt(&self, signed: &Signed, _: u32) -> io::Result<Attempt> {
        Ok(Attempt::json(
            signed.body.clone(),
            vec![(CHECKSUM_HEADER, signed.checksum.clone())],
        ))
    }

    fn label(&self, signed: &Signed) -> String {
        signed.event_id.clone()
    }
}

/// The event body and its checksum (Wompi's default properties: id, status, amount).
fn signed_event(
    tx: &Transaction,
    events_secret: &str,
    environment: &'static str,
) -> Result<(Vec<u8>, String), serde_json::Error> {
    let now = Utc::now();
    let timestamp = now.timestamp();
    let cents = tx.amount_in_cents.to_string();
    let checksum = event_checksum(
        &[&tx.id, tx.status.as_str(), &cents],
        timestamp,
        events_secret,
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
                payment_source_id: tx.payment_source_id,
            },
        },
        environment,
        signature: EventSignature {
            properties: DEFAULT_PROPERTIES,
            checksum: checksum.clone(),
        },
        timestamp,
        sent_at: rfc3339(now),
    };
    Ok((serde_json::to_vec(&event)?, checksum))
}
