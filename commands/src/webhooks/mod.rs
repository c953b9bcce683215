//! Webhook signature verification and parsing, per provider.
//!
//! A provider's webhook is the only source of a payment's outcome. Each provider module here
//! verifies that provider's signature scheme over the *raw* body bytes (before any parsing)
//! and turns the body into a typed notification. Parsing is strict about what payledger
//! relies on (ids, money, status) and tolerant of fields it does not know, since providers
//! add fields without notice.

pub mod sandbox;

/// Why a webhook body was not accepted. Messages never echo secrets or signature values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    #[error("webhook body exceeds {max} bytes")]
    TooLarge { max: usize },
    #[error("webhook signature is missing or does not match")]
    InvalidSignature,
    #[error("webhook body is not JSON of the expected shape: {0}")]
    Malformed(String),
    #[error("webhook field `{field}` {problem}")]
    InvalidField {
        field: &'static str,
        problem: String,
    },
    /// An event type payledger does not act on. Callers usually acknowledge these (2xx) so
    /// the provider stops redelivering them, and append nothing.
    #[error("unsupported webhook event type `{0}`")]
    UnsupportedEventType(String),
    /// A transaction status that is not an outcome (e.g. still pending).
    #[error("unsupported transaction status `{0}`")]
    UnsupportedStatus(String),
}

/// Cuts provider-supplied text for error messages: at most `max` chars, control characters
/// replaced, so a hostile body cannot flood logs or inject lines.
pub(crate) fn excerpt(text: &str, max: usize) -> String {
    let mut out: String = text
        .chars()
        .take(max)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if text.chars().count() > max {
        out.push('…');
    }
    out
}
