use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::{CaptureId, MerchantId, PaymentId, Reference, RefundId};
use crate::money::Money;
use crate::payment::ProviderFailureKind;

/// How the customer pays. Only the type is kept in the ledger; tokens never are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PaymentMethodType {
    Card,
    Nequi,
    Pse,
    Efecty,
    Gcash,
    Maya,
}

impl PaymentMethodType {
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentMethodType::Card => "CARD",
            PaymentMethodType::Nequi => "NEQUI",
            PaymentMethodType::Pse => "PSE",
            PaymentMethodType::Efecty => "EFECTY",
            PaymentMethodType::Gcash => "GCASH",
            PaymentMethodType::Maya => "MAYA",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaptureMode {
    /// The provider captures on approval: `PENDING -> APPROVED`.
    Automatic,
    /// The provider only authorizes; the merchant captures later: `PENDING -> AUTHORIZED`.
    Manual,
}

/// Everything that can be asked of a payment. Time and provider answers come in the command
/// so the aggregate stays pure.
#[derive(Debug, Clone, PartialEq)]
pub enum PaymentCommand {
    Initiate {
        payment_id: PaymentId,
        merchant_id: MerchantId,
        reference: Reference,
        amount: Money,
        payment_method: PaymentMethodType,
        capture_mode: CaptureMode,
        provider: String,
        /// Digest of the request that created it: a retry with another body is refused.
        request_fingerprint: String,
        at: DateTime<Utc>,
    },
    RecordProviderAttemptFailed {
        provider: String,
        kind: ProviderFailureKind,
        detail: String,
        at: DateTime<Utc>,
    },
    /// No provider could take the payment: it ends `FAILED`.
    Fail {
        reason: String,
        at: DateTime<Utc>,
    },
    /// The provider reports an authorization (manual capture).
    Authorize {
        provider_event_id: String,
        provider_transaction_id: String,
        amount: Money,
        at: DateTime<Utc>,
    },
    /// The provider reports an approved (captured) payment (automatic capture).
    Approve {
        provider_event_id: String,
        provider_transaction_id: String,
        amount: Money,
        at: DateTime<Utc>,
    },
    Decline {
        provider_event_id: String,
        provider_transaction_id: String,
        reason: String,
        at: DateTime<Utc>,
    },
    /// The provider confirmed a capture of an authorized payment.
    Capture {
        capture_id: CaptureId,
        amount: Money,
        at: DateTime<Utc>,
    },
    Void {
        at: DateTime<Utc>,
    },
    /// Reserves a refund before the provider is asked, so concurrent refunds can never
    /// exceed what was captured.
    RequestRefund {
        refund_id: RefundId,
        amount: Money,
        reason: Option<String>,
        at: DateTime<Utc>,
    },
    CompleteRefund {
        refund_id: RefundId,
        provider_refund_id: String,
        at: DateTime<Utc>,
    },
    FailRefund {
        refund_id: RefundId,
        reason: String,
        at: DateTime<Utc>,
    },
}
