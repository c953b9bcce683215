use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::{CaptureId, MerchantId, PaymentId, Reference, RefundId};
use crate::money::Money;
use crate::payment::{Compensation, PaymentMethodType, ProviderFailureKind};

/// What the customer must do before the provider can decide.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum NextAction {
    /// Open this URL (bank page for PSE, wallet authorization, 3-D Secure challenge).
    Redirect { url: String },
    /// Pay this code in cash (Efecty) before it expires.
    CashCode {
        code: String,
        expires_at: DateTime<Utc>,
    },
    /// Show this QR code: the customer scans it with their bank's app (Bancolombia QR).
    QrCode {
        /// The code as the provider draws it, ready for an `<img src>`: a
        /// `data:image/svg+xml;base64,...` URL (Wompi gives an image, not the QR's text).
        image: String,
        /// When the provider stops taking payments for it, if it says.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expires_at: Option<DateTime<Utc>>,
    },
    /// The wallet sent a one-time code to the customer's phone (Daviplata); they type it on the
    /// provider's page at `url`, which then confirms the payment.
    Otp {
        url: String,
        /// When the payment can no longer be confirmed, if the provider says.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expires_at: Option<DateTime<Utc>>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaptureMode {
    /// The provider captures on approval: `PENDING -> APPROVED`.
    Automatic,
    /// The provider only authorizes; the merchant captures later: `PENDING -> AUTHORIZED`.
    Manual,
}

impl CaptureMode {
    /// The wire name, as serde writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            CaptureMode::Automatic => "automatic",
            CaptureMode::Manual => "manual",
        }
    }
}

/// A capture mode that is neither `automatic` nor `manual`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("must be `automatic` or `manual`")]
pub struct CaptureModeError;

impl std::str::FromStr for CaptureMode {
    type Err = CaptureModeError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        [CaptureMode::Automatic, CaptureMode::Manual]
            .into_iter()
            .find(|mode| mode.as_str() == text)
            .ok_or(CaptureModeError)
    }
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
    /// Offer the payment to `provider` (the intent before the call).
    StartAttempt { provider: String, at: DateTime<Utc> },
    /// The open attempt's answer was lost: it may have succeeded.
    RecordProviderOutcomeUnknown {
        provider: String,
        kind: ProviderFailureKind,
        detail: String,
        at: DateTime<Utc>,
    },
    /// The open attempt ended without a transaction (refused, or provably not processed).
    RecordProviderAttemptFailed {
        provider: String,
        kind: ProviderFailureKind,
        detail: String,
        at: DateTime<Utc>,
    },
    /// A provider accepted the payment and named its transaction.
    RecordProviderTransaction {
        provider: String,
        provider_transaction_id: String,
        next_action: Option<NextAction>,
        at: DateTime<Utc>,
    },
    /// No provider could take the payment, or the provider gave up: it ends `FAILED`.
    Fail { reason: String, at: DateTime<Utc> },
    /// The customer did not complete in time: it ends `EXPIRED`.
    Expire {
        provider_event_id: String,
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
        /// Computed once, here, from the fee schedule in force; replays never recompute it.
        fee: Option<Money>,
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
        fee: Option<Money>,
        at: DateTime<Utc>,
    },
    /// The intent to capture, before the provider is asked.
    RequestCapture {
        capture_id: CaptureId,
        amount: Money,
        fee: Option<Money>,
        at: DateTime<Utc>,
    },
    /// The provider refused the requested capture.
    FailCapture {
        capture_id: CaptureId,
        reason: String,
        at: DateTime<Utc>,
    },
    /// The intent to void, before the provider is asked.
    RequestVoid { at: DateTime<Utc> },
    /// The provider confirmed the void.
    Void { at: DateTime<Utc> },
    /// The provider refused the requested void.
    FailVoid { reason: String, at: DateTime<Utc> },
    /// A provider reported a transaction the payment does not hold.
    RecordOrphan {
        provider: String,
        provider_transaction_id: String,
        status: String,
        amount: Money,
        compensation: Option<Compensation>,
        at: DateTime<Utc>,
    },
    /// The orphan's money was given back at its provider.
    CompleteCompensation {
        provider: String,
        provider_transaction_id: String,
        provider_reference: String,
        at: DateTime<Utc>,
    },
    /// An intent went unresolved past the review horizon.
    MarkNeedsReview {
        intent: String,
        reason: String,
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

impl PaymentCommand {
    pub fn name(&self) -> &'static str {
        match self {
            PaymentCommand::Initiate { .. } => "Initiate",
            PaymentCommand::RecordProviderTransaction { .. } => "RecordProviderTransaction",
            PaymentCommand::RecordProviderAttemptFailed { .. } => "RecordProviderAttemptFailed",
            PaymentCommand::StartAttempt { .. } => "StartAttempt",
            PaymentCommand::RecordProviderOutcomeUnknown { .. } => "RecordProviderOutcomeUnknown",
            PaymentCommand::RequestCapture { .. } => "RequestCapture",
            PaymentCommand::FailCapture { .. } => "FailCapture",
            PaymentCommand::RequestVoid { .. } => "RequestVoid",
            PaymentCommand::FailVoid { .. } => "FailVoid",
            PaymentCommand::RecordOrphan { .. } => "RecordOrphan",
            PaymentCommand::CompleteCompensation { .. } => "CompleteCompensation",
            PaymentCommand::MarkNeedsReview { .. } => "MarkNeedsReview",
            PaymentCommand::Fail { .. } => "Fail",
            PaymentCommand::Expire { .. } => "Expire",
            PaymentCommand::Authorize { .. } => "Authorize",
            PaymentCommand::Approve { .. } => "Approve",
            PaymentCommand::Decline { .. } => "Decline",
            PaymentCommand::Capture { .. } => "Capture",
            PaymentCommand::Void { .. } => "Void",
            PaymentCommand::RequestRefund { .. } => "RequestRefund",
            PaymentCommand::CompleteRefund { .. } => "CompleteRefund",
            PaymentCommand::FailRefund { .. } => "FailRefund",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_actions_have_stable_wire_shapes() {
        // Recorded in events: these shapes are read back from stored streams forever.
        let at = "2026-03-01T15:30:00Z".parse::<DateTime<Utc>>().unwrap();
        let cases = [
            (
                NextAction::Redirect {
                    url: "https://bank.example/pay/1".into(),
                },
                serde_json::json!({"type": "redirect", "url": "https://bank.example/pay/1"}),
            ),
            (
                NextAction::CashCode {
                    code: "123456".into(),
                    expires_at: at,
                },
                serde_json::json!({"type": "cash_code", "code": "123456",
                    "expires_at": "2026-03-01T15:30:00Z"}),
            ),
            (
                NextAction::QrCode {
                    image: "data:image/svg+xml;base64,PHN2Zy8+".into(),
                    expires_at: Some(at),
                },
                serde_json::json!({"type": "qr_code", "image": "data:image/svg+xml;base64,PHN2Zy8+",
                    "expires_at": "2026-03-01T15:30:00Z"}),
            ),
            (
                NextAction::QrCode {
                    image: "data:image/svg+xml;base64,PHN2Zy8+".into(),
                    expires_at: None,
                },
                serde_json::json!({"type": "qr_code", "image": "data:image/svg+xml;base64,PHN2Zy8+"}),
            ),
            (
                NextAction::Otp {
                    url: "https://wallet.example/otp/9".into(),
                    expires_at: Some(at),
                },
                serde_json::json!({"type": "otp", "url": "https://wallet.example/otp/9",
                    "expires_at": "2026-03-01T15:30:00Z"}),
            ),
            (
                NextAction::Otp {
                    url: "https://wallet.example/otp/9".into(),
                    expires_at: None,
                },
                serde_json::json!({"type": "otp", "url": "https://wallet.example/otp/9"}),
            ),
        ];
        for (action, wire) in cases {
            assert_eq!(serde_json::to_value(&action).unwrap(), wire);
            assert_eq!(serde_json::from_value::<NextAction>(wire).unwrap(), action);
        }
        // A shape stored before `expires_at` was written still reads.
        let old: NextAction =
            serde_json::from_str(r#"{"type":"redirect","url":"https://x.example/"}"#).unwrap();
        assert!(matches!(old, NextAction::Redirect { .. }));
        assert!(serde_json::from_str::<NextAction>(r#"{"type":"qr_code"}"#).is_err());
        assert!(serde_json::from_str::<NextAction>(r#"{"type":"push"}"#).is_err());
    }

    #[test]
    fn capture_modes_parse_from_the_names_serde_writes() {
        for mode in [CaptureMode::Automatic, CaptureMode::Manual] {
            let wire = serde_json::to_value(mode).unwrap();
            assert_eq!(wire.as_str(), Some(mode.as_str()));
            assert_eq!(mode.as_str().parse::<CaptureMode>(), Ok(mode));
        }
        assert_eq!("Manual".parse::<CaptureMode>(), Err(CaptureModeError));
        assert_eq!(
            CaptureModeError.to_string(),
            "must be `automatic` or `manual`"
        );
    }
}
