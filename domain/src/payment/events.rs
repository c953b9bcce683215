use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

use crate::ids::{AttemptId, CaptureId, MerchantId, PaymentId, Reference, RefundId};
use crate::money::Money;
use crate::payment::{CaptureMode, NextAction, PaymentMethodType};

/// Schema version of every event below. A change of shape is an upcaster, never a rewrite.
pub const EVENT_VERSION: &str = "1.0";

/// Why a provider call did not produce an answer about the payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderFailureKind {
    Timeout,
    Connection,
    ServerError,
    /// The provider refused the request itself (4xx): not retryable elsewhere.
    Rejected,
}

impl ProviderFailureKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderFailureKind::Timeout => "timeout",
            ProviderFailureKind::Connection => "connection",
            ProviderFailureKind::ServerError => "server_error",
            ProviderFailureKind::Rejected => "rejected",
        }
    }

    pub fn is_retryable(self) -> bool {
        !matches!(self, ProviderFailureKind::Rejected)
    }
}

/// How money a provider holds for a transaction the payment does not use is given back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Compensation {
    /// Release an authorization that was never captured.
    Void,
    /// Return captured money.
    Refund,
}

impl Compensation {
    pub fn as_str(self) -> &'static str {
        match self {
            Compensation::Void => "void",
            Compensation::Refund => "refund",
        }
    }
}

/// The ledger. Immutable once stored; the serialized form is `{"PaymentInitiated": {...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum PaymentEvent {
    PaymentInitiated {
        payment_id: PaymentId,
        merchant_id: MerchantId,
        reference: Reference,
        amount: Money,
        payment_method: PaymentMethodType,
        capture_mode: CaptureMode,
        provider: String,
        request_fingerprint: String,
        at: DateTime<Utc>,
    },
    /// The intent to offer the payment to `provider`, appended before the call: a crash or a
    /// lost answer after it leaves an attempt to resolve, never an unrecorded charge.
    ProviderAttemptStarted {
        provider: String,
        attempt_id: AttemptId,
        at: DateTime<Utc>,
    },
    /// The call may have reached the provider and its answer was lost (a timeout after
    /// sending, a cut connection, an undocumented 5xx): the payment stays with `provider`
    /// until the provider says what happened.
    ProviderOutcomeUnknown {
        provider: String,
        attempt_id: AttemptId,
        kind: ProviderFailureKind,
        detail: String,
        at: DateTime<Utc>,
    },
    /// A provider took the payment: from here on it is that provider's transaction.
    ProviderTransactionCreated {
        provider: String,
        provider_transaction_id: String,
        next_action: Option<NextAction>,
        at: DateTime<Utc>,
    },
    /// The attempt ended without a transaction: the provider refused (`kind: rejected`) or
    /// provably never processed the request; only the latter may fall back.
    ProviderAttemptFailed {
        provider: String,
        kind: ProviderFailureKind,
        detail: String,
        at: DateTime<Utc>,
        /// Absent in events written before attempts were named.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        attempt_id: Option<AttemptId>,
    },
    PaymentAuthorized {
        provider: String,
        provider_event_id: String,
        provider_transaction_id: String,
        amount: Money,
        at: DateTime<Utc>,
    },
    /// Money captured: the whole amount on automatic capture, or one (partial) capture of an
    /// authorization.
    PaymentApproved {
        provider: String,
        provider_event_id: Option<String>,
        provider_transaction_id: String,
        capture_id: Option<CaptureId>,
        amount: Money,
        /// The provider's fee, fixed at approval (absent in events written before fees).
        #[serde(default)]
        fee: Option<Money>,
        at: DateTime<Utc>,
    },
    PaymentDeclined {
        provider: String,
        provider_event_id: String,
        provider_transaction_id: String,
        reason: String,
        at: DateTime<Utc>,
    },
    PaymentFailed {
        reason: String,
        at: DateTime<Utc>,
    },
    /// The customer never completed (an Efecty code or a redirect that timed out).
    PaymentExpired {
        provider_event_id: String,
        at: DateTime<Utc>,
    },
    /// The intent to capture, appended before the provider is asked (`capture_id` is the
    /// provider's idempotency key).
    CaptureRequested {
        capture_id: CaptureId,
        amount: Money,
        fee: Option<Money>,
        /// The provider asked: the one holding the authorization (absent from intents
        /// recorded before it was named).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        provider: Option<String>,
        at: DateTime<Utc>,
    },
    /// The provider refused the capture: the authorization stands.
    CaptureFailed {
        capture_id: CaptureId,
        reason: String,
        at: DateTime<Utc>,
    },
    /// The intent to release the authorization, appended before the provider is asked.
    VoidRequested {
        /// The provider asked: the one holding the authorization (absent from intents
        /// recorded before it was named).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        provider: Option<String>,
        at: DateTime<Utc>,
    },
    /// The provider refused the void: the authorization stands.
    VoidFailed {
        reason: String,
        at: DateTime<Utc>,
    },
    /// The authorization was released; nothing was captured.
    PaymentVoided {
        amount: Money,
        at: DateTime<Utc>,
    },
    RefundRequested {
        refund_id: RefundId,
        amount: Money,
        reason: Option<String>,
        at: DateTime<Utc>,
    },
    PaymentRefunded {
        refund_id: RefundId,
        provider_refund_id: String,
        amount: Money,
        at: DateTime<Utc>,
    },
    /// The provider refused a requested refund: its reservation is released.
    RefundFailed {
        refund_id: RefundId,
        amount: Money,
        reason: String,
        at: DateTime<Utc>,
    },
    /// A provider reported a transaction for this payment that the payment does not hold (an
    /// earlier attempt, or one that succeeded after the payment ended). Where it took money,
    /// `compensation` is the intent to give it back at that provider.
    ProviderTransactionOrphaned {
        provider: String,
        provider_transaction_id: String,
        /// The provider's status for it (`APPROVED`, `AUTHORIZED`, `DECLINED`...).
        status: String,
        amount: Money,
        compensation: Option<Compensation>,
        at: DateTime<Utc>,
    },
    /// The orphan's money went back to the customer at its provider.
    OrphanCompensated {
        provider: String,
        provider_transaction_id: String,
        compensation: Compensation,
        /// The provider's id of the refund (or of the voided transaction).
        provider_reference: String,
        amount: Money,
        at: DateTime<Utc>,
    },
    /// An intent stayed without an outcome past the review horizon: an operator must look.
    PaymentNeedsReview {
        /// `attempt`, `capture`, `void`, `refund` or `compensation`.
        intent: String,
        reason: String,
        at: DateTime<Utc>,
    },
}

impl PaymentEvent {
    /// Every event's name, as `name` gives it (merchants subscribe to them by name).
    pub const NAMES: [&'static str; 21] = [
        "PaymentInitiated",
        "ProviderTransactionCreated",
        "ProviderAttemptFailed",
        "PaymentAuthorized",
        "PaymentApproved",
        "PaymentDeclined",
        "PaymentFailed",
        "PaymentExpired",
        "PaymentVoided",
        "RefundRequested",
        "PaymentRefunded",
        "RefundFailed",
        "ProviderAttemptStarted",
        "ProviderOutcomeUnknown",
        "CaptureRequested",
        "CaptureFailed",
        "VoidRequested",
        "VoidFailed",
        "ProviderTransactionOrphaned",
        "OrphanCompensated",
        "PaymentNeedsReview",
    ];

    pub fn name(&self) -> &'static str {
        match self {
            PaymentEvent::PaymentInitiated { .. } => "PaymentInitiated",
            PaymentEvent::ProviderTransactionCreated { .. } => "ProviderTransactionCreated",
            PaymentEvent::ProviderAttemptFailed { .. } => "ProviderAttemptFailed",
            PaymentEvent::PaymentAuthorized { .. } => "PaymentAuthorized",
            PaymentEvent::PaymentApproved { .. } => "PaymentApproved",
            PaymentEvent::PaymentDeclined { .. } => "PaymentDeclined",
            PaymentEvent::PaymentFailed { .. } => "PaymentFailed",
            PaymentEvent::PaymentExpired { .. } => "PaymentExpired",
            PaymentEvent::PaymentVoided { .. } => "PaymentVoided",
            PaymentEvent::RefundRequested { .. } => "RefundRequested",
            PaymentEvent::PaymentRefunded { .. } => "PaymentRefunded",
            PaymentEvent::RefundFailed { .. } => "RefundFailed",
            PaymentEvent::ProviderAttemptStarted { .. } => "ProviderAttemptStarted",
            PaymentEvent::ProviderOutcomeUnknown { .. } => "ProviderOutcomeUnknown",
            PaymentEvent::CaptureRequested { .. } => "CaptureRequested",
            PaymentEvent::CaptureFailed { .. } => "CaptureFailed",
            PaymentEvent::VoidRequested { .. } => "VoidRequested",
            PaymentEvent::VoidFailed { .. } => "VoidFailed",
            PaymentEvent::ProviderTransactionOrphaned { .. } => "ProviderTransactionOrphaned",
            PaymentEvent::OrphanCompensated { .. } => "OrphanCompensated",
            PaymentEvent::PaymentNeedsReview { .. } => "PaymentNeedsReview",
        }
    }

    /// When the fact happened, as stated by the command that caused it.
    pub fn at(&self) -> DateTime<Utc> {
        match self {
            PaymentEvent::PaymentInitiated { at, .. }
            | PaymentEvent::ProviderTransactionCreated { at, .. }
            | PaymentEvent::PaymentExpired { at, .. }
            | PaymentEvent::ProviderAttemptFailed { at, .. }
            | PaymentEvent::PaymentAuthorized { at, .. }
            | PaymentEvent::PaymentApproved { at, .. }
            | PaymentEvent::PaymentDeclined { at, .. }
            | PaymentEvent::PaymentFailed { at, .. }
            | PaymentEvent::PaymentVoided { at, .. }
            | PaymentEvent::RefundRequested { at, .. }
            | PaymentEvent::PaymentRefunded { at, .. }
            | PaymentEvent::RefundFailed { at, .. }
            | PaymentEvent::ProviderAttemptStarted { at, .. }
            | PaymentEvent::ProviderOutcomeUnknown { at, .. }
            | PaymentEvent::CaptureRequested { at, .. }
            | PaymentEvent::CaptureFailed { at, .. }
            | PaymentEvent::VoidRequested { at, .. }
            | PaymentEvent::VoidFailed { at, .. }
            | PaymentEvent::ProviderTransactionOrphaned { at, .. }
            | PaymentEvent::OrphanCompensated { at, .. }
            | PaymentEvent::PaymentNeedsReview { at, .. } => *at,
        }
    }

    /// The provider's own id for the notification that caused this event, if any: a
    /// redelivered webhook carries the same id and must append nothing.
    pub fn provider_event_id(&self) -> Option<&str> {
        match self {
            PaymentEvent::PaymentAuthorized {
                provider_event_id, ..
            }
            | PaymentEvent::PaymentDeclined {
                provider_event_id, ..
            }
            | PaymentEvent::PaymentExpired {
                provider_event_id, ..
            } => Some(provider_event_id),
            PaymentEvent::PaymentApproved {
                provider_event_id, ..
            } => provider_event_id.as_deref(),
            _ => None,
        }
    }
}

impl DomainEvent for PaymentEvent {
    fn event_type(&self) -> String {
        self.name().to_owned()
    }

    fn event_version(&self) -> String {
        EVENT_VERSION.to_owned()
    }
}
