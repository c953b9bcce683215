//! Webhook signature verification and parsing, per provider.
//!
//! A provider's webhook is the only source of a payment's outcome. Each provider module here
//! verifies that provider's signature scheme over the *raw* body bytes (before any parsing)
//! and turns the body into a typed notification. Parsing is strict about what payledger
//! relies on (ids, money, status) and tolerant of fields it does not know, since providers
//! add fields without notice.

/// Why a webhook body was not accepted. Messages never echo secrets or signature values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    #[error("webhook body exceeds {max} bytes")]
    TooLarge { max: usize },
    #[error("webhook signature is missing or does not match")]
    InvalidSignature,
    #[error("webhook timestamp is outside the accepted tolerance")]
    StaleTimestamp,
    #[error("webhook came from an address that is not an accepted source")]
    UnknownSource,
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
    /// The provider could not be asked what the delivery stands for (it names transactions
    /// only): nothing is appended, and the provider should deliver it again later.
    #[error("the provider could not be asked about the webhook: {0}")]
    ProviderUnavailable(String),
}

pub use crate::http::excerpt;

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use domain::{Money, PaymentId};

/// A webhook as it arrived: the raw body (verifiers work on these bytes, never on
/// re-serialized JSON) and what a verifier may need besides.
#[derive(Debug, Clone, Copy)]
pub struct WebhookRequest<'a> {
    /// Header names in lower case.
    pub headers: &'a [(String, String)],
    pub body: &'a [u8],
    /// The address the request came from (Maya is authenticated by it).
    pub peer: Option<IpAddr>,
    pub received_at: DateTime<Utc>,
}

impl WebhookRequest<'_> {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What a provider's notification says about one of our payments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotificationOutcome {
    /// Nothing decided yet (acknowledged, nothing appended).
    Pending,
    /// Manual capture: the amount is held.
    Authorized {
        amount: Money,
    },
    /// Captured.
    Approved {
        amount: Money,
    },
    Declined {
        reason: String,
    },
    /// The customer did not complete in time (an Efecty code, a redirect).
    Expired,
    /// The provider gave up (its error, or the customer abandoned).
    Failed {
        reason: String,
    },
}

/// A verified notification, ready to become a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderNotification {
    pub provider: &'static str,
    /// The provider's id for this notification: the same on every redelivery, so a
    /// redelivery appends nothing.
    pub event_id: String,
    /// Every adapter sends our payment id as the provider's reference, so it comes back here.
    pub payment_id: PaymentId,
    pub provider_transaction_id: String,
    pub outcome: NotificationOutcome,
    /// The body alone is not proof (Maya does not sign): fetch the transaction from the
    /// provider and use *its* status before appending anything.
    pub confirm_with_provider: bool,
}

impl WebhookError {
    /// Authentication failures answer `401`; the rest `422`, or `200` (ignored) for event
    /// types and statuses payledger does not act on.
    pub fn is_authentication(&self) -> bool {
        matches!(
            self,
            WebhookError::InvalidSignature
                | WebhookError::StaleTimestamp
                | WebhookError::UnknownSource
        )
    }

    /// Not the delivery's fault: answer `503` so the provider delivers it again.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, WebhookError::ProviderUnavailable(_))
    }
}

/// One provider's webhook authentication and parsing.
#[async_trait::async_trait]
pub trait WebhookVerifier: Send + Sync {
    fn provider(&self) -> &'static str;

    /// `Ok(Some(_))`: a verified notification about a payment. `Ok(None)`: verified, but
    /// nothing payledger acts on (acknowledge it). `Err(_)`: refuse it (`401` for a bad or
    /// missing signature, a stale timestamp or an unknown source; `422` for a bad body).
    fn verify(
        &self,
        request: &WebhookRequest<'_>,
    ) -> Result<Option<ProviderNotification>, WebhookError>;

    /// Every notification a delivery stands for, as the webhook endpoint records them: by
    /// default what [`WebhookVerifier::verify`] makes of it. A provider whose deliveries only
    /// name transactions (EBANX posts bare payment hashes, unsigned) asks the provider about
    /// each here, so only the provider's own answers become notifications.
    async fn notifications(
        &self,
        request: &WebhookRequest<'_>,
    ) -> Result<Vec<ProviderNotification>, WebhookError> {
        self.verify(request)
            .map(|found| found.into_iter().collect())
    }
}
