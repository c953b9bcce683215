//! PayU's side of the outbox: confirmations, delivered at least once like PayU's.
//!
//! A confirmation is due after the change that causes it; a card left pending (in review)
//! is approved first. The form is signed once; only the unsigned `attempts` field changes
//! between redeliveries, as in PayU's.

use std::io;
use std::sync::{Arc, Mutex, PoisonError};

use chrono::Utc;

use super::signing::{confirmation_message, new_value, sign, SignatureAlgorithm};
use super::store::{Confirmation, Settlement, Store};
use crate::outbox::{self, Attempt};

pub(crate) struct Job {
    pub order_id: u64,
    /// A card left pending (in review): approve it when due, then confirm.
    pub approve_if_pending: bool,
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

pub(crate) struct Notifier {
    pub store: Arc<Mutex<Store>>,
    pub signer: Signer,
    /// `false`: confirmations are decided but "lost" (never POSTed).
    pub deliver: bool,
}

pub(crate) struct Signed {
    confirmation: Confirmation,
    signature: String,
}

impl outbox::Notifier for Notifier {
    type Job = Job;
    type Ready = Signed;

    fn due(&self, job: Job) -> Option<Signed> {
        let (confirmation, muted) = {
            let mut store = self.store.lock().unwrap_or_else(PoisonError::into_inner);
            if job.approve_if_pending {
                // Already settled otherwise: then its current state is what gets confirmed.
                let _ = store.settle(job.order_id, Settlement::Approve, Utc::now());
            }
            let muted = store.order(job.order_id).is_some_and(|o| o.muted);
            (store.confirmation(job.order_id)?, muted)
        };
        if !self.deliver || muted {
            tracing::debug!(
                event = %label(&confirmation),
                "payu sandbox: confirmation lost on purpose"
            );
            return None;
        }
        let signature = self.signer.sign(&confirmation);
        Some(Signed {
            confirmation,
            signature,
        })
    }

    fn attempt(&self, signed: &Signed, attempt: u32) -> io::Result<Attempt> {
        Ok(Attempt {
            content_type: "application/x-www-form-urlencoded",
            headers: Vec::new(),
            body: form(
                &signed.confirmation,
                &self.signer.merchant_id,
                &signed.signature,
                attempt,
            )
            .into_bytes(),
        })
    }

    fn label(&self, signed: &Signed) -> String {
        label(&signed.confirmation)
    }
}

fn label(c: &Confirmation) -> String {
    format!("{}:{}", c.transaction_id, c.state_pol)
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
