//! Payment providers behind one trait.
//!
//! Command services talk to every provider through [`PaymentProvider`]; each adapter is a real
//! HTTP client of its provider's API. A provider's answer about a payment's *outcome* arrives
//! later, as a signed webhook (see `crate::webhooks`); the calls here only start, query or
//! move a transaction along.

pub mod sandbox;

use std::fmt;

use domain::{
    CaptureId, CaptureMode, Money, PaymentId, PaymentMethodType, ProviderFailureKind, RefundId,
};

pub use sandbox::{SandboxClientConfig, SandboxProvider};

/// One payment provider (Wompi, PayU, Maya, GCash, the bundled sandbox).
///
/// Every method is safe to retry with the same arguments: providers deduplicate creates by
/// `payment_id`, captures by `capture_id` and refunds by `refund_id`, so a retried call
/// returns the first result instead of moving money twice.
#[async_trait::async_trait]
pub trait PaymentProvider: Send + Sync {
    /// Stable lower-case name, recorded in events (`"sandbox"`).
    fn name(&self) -> &'static str;

    /// The payment methods this provider takes; the router skips providers that lack the
    /// requested one. Defaults to every method payledger knows.
    fn payment_methods(&self) -> &'static [PaymentMethodType] {
        ALL_PAYMENT_METHODS
    }

    /// Starts a transaction. The answer is normally `Pending`: the outcome comes by webhook.
    async fn create_transaction(
        &self,
        request: &CreateTransaction,
    ) -> Result<ProviderTransaction, ProviderError>;

    async fn get_transaction(
        &self,
        provider_transaction_id: &str,
    ) -> Result<ProviderTransaction, ProviderError>;

    /// Captures (part of) an authorization. A repeat with the same `capture_id` is a no-op.
    async fn capture(
        &self,
        provider_transaction_id: &str,
        capture_id: CaptureId,
        amount: Money,
    ) -> Result<(), ProviderError>;

    /// Releases an authorization. Voiding an already voided transaction succeeds.
    async fn void(&self, provider_transaction_id: &str) -> Result<(), ProviderError>;

    /// Refunds (part of) what was captured. A repeat with the same `refund_id` returns the
    /// first refund.
    async fn refund(
        &self,
        provider_transaction_id: &str,
        refund_id: RefundId,
        amount: Money,
    ) -> Result<ProviderRefund, ProviderError>;

    async fn health(&self) -> Result<(), ProviderError>;
}

/// Every payment method payledger knows.
pub const ALL_PAYMENT_METHODS: &[PaymentMethodType] = &[
    PaymentMethodType::Card,
    PaymentMethodType::Nequi,
    PaymentMethodType::Pse,
    PaymentMethodType::Efecty,
    PaymentMethodType::Gcash,
    PaymentMethodType::Maya,
];

/// What a provider needs to start a transaction.
///
/// `token` is the customer's payment-method token: it goes to the provider and nowhere else
/// (never into events, logs or `Debug` output; `Debug` prints it redacted).
#[derive(Clone, PartialEq, Eq)]
pub struct CreateTransaction {
    pub payment_id: PaymentId,
    pub reference: String,
    pub amount: Money,
    pub method: PaymentMethodType,
    pub token: String,
    pub capture_mode: CaptureMode,
}

impl fmt::Debug for CreateTransaction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CreateTransaction")
            .field("payment_id", &self.payment_id)
            .field("reference", &self.reference)
            .field("amount", &self.amount)
            .field("method", &self.method)
            .field("token", &REDACTED)
            .field("capture_mode", &self.capture_mode)
            .finish()
    }
}

/// Printed in place of secrets by the hand-written `Debug` impls of this module.
pub(crate) const REDACTED: Redacted = Redacted;

pub(crate) struct Redacted;

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A transaction as the provider currently sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderTransaction {
    /// The provider's id (`sbx_tx_...` for the sandbox).
    pub id: String,
    pub payment_id: PaymentId,
    pub status: ProviderTransactionStatus,
    /// The amount asked for (authorized, once authorized).
    pub amount: Money,
    /// Captured so far; zero until captured.
    pub captured_amount: Money,
    /// Refunded so far; zero until refunded.
    pub refunded_amount: Money,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderTransactionStatus {
    /// Accepted, outcome not decided yet.
    Pending,
    /// Authorized, waiting for a capture (manual capture).
    Authorized,
    /// Captured (automatic capture, or a manual capture was made).
    Approved,
    Declined {
        reason: String,
    },
    /// The authorization was released.
    Voided,
}

impl ProviderTransactionStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            ProviderTransactionStatus::Pending => "PENDING",
            ProviderTransactionStatus::Authorized => "AUTHORIZED",
            ProviderTransactionStatus::Approved => "APPROVED",
            ProviderTransactionStatus::Declined { .. } => "DECLINED",
            ProviderTransactionStatus::Voided => "VOIDED",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderRefund {
    /// The provider's refund id (`sbx_rf_...` for the sandbox).
    pub id: String,
}

/// A provider call that produced no answer about the payment.
///
/// `detail` is safe to store in `ProviderAttemptFailed` and to log: it never contains API
/// keys, secrets or payment tokens, and it is bounded in length.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("provider call failed ({}): {detail}", kind_str(*.kind))]
pub struct ProviderError {
    pub kind: ProviderFailureKind,
    pub detail: String,
}

/// Longest `detail` kept; longer texts are cut at a character boundary.
pub const PROVIDER_ERROR_DETAIL_MAX: usize = 256;

impl ProviderError {
    pub fn new(kind: ProviderFailureKind, detail: impl Into<String>) -> Self {
        let mut detail: String = detail.into();
        if detail.len() > PROVIDER_ERROR_DETAIL_MAX {
            let mut cut = PROVIDER_ERROR_DETAIL_MAX;
            while !detail.is_char_boundary(cut) {
                cut -= 1;
            }
            detail.truncate(cut);
        }
        ProviderError { kind, detail }
    }

    pub fn timeout(detail: impl Into<String>) -> Self {
        Self::new(ProviderFailureKind::Timeout, detail)
    }

    pub fn connection(detail: impl Into<String>) -> Self {
        Self::new(ProviderFailureKind::Connection, detail)
    }

    pub fn server_error(detail: impl Into<String>) -> Self {
        Self::new(ProviderFailureKind::ServerError, detail)
    }

    pub fn rejected(detail: impl Into<String>) -> Self {
        Self::new(ProviderFailureKind::Rejected, detail)
    }

    /// Whether another attempt (here or at another provider) may succeed.
    pub fn is_retryable(&self) -> bool {
        self.kind.is_retryable()
    }
}

/// A provider adapter's configuration cannot work (checked once, at startup).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {provider} provider configuration: {problem}")]
pub struct ProviderConfigError {
    pub provider: &'static str,
    pub problem: String,
}

fn kind_str(kind: ProviderFailureKind) -> &'static str {
    match kind {
        ProviderFailureKind::Timeout => "timeout",
        ProviderFailureKind::Connection => "connection",
        ProviderFailureKind::ServerError => "server_error",
        ProviderFailureKind::Rejected => "rejected",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::Currency;
    use uuid::Uuid;

    #[test]
    fn debug_of_a_create_request_never_shows_the_token() {
        let request = CreateTransaction {
            payment_id: PaymentId::from_uuid(Uuid::nil()),
            reference: "order-1".into(),
            amount: Money::parse("10.00", Currency::USD).unwrap(),
            method: PaymentMethodType::Card,
            token: "tok_live_supersecret".into(),
            capture_mode: CaptureMode::Automatic,
        };
        let printed = format!("{request:?} {request:#?}");
        assert!(!printed.contains("supersecret"), "{printed}");
        assert!(printed.contains("<redacted>"));
        assert!(printed.contains("order-1"));
    }

    #[test]
    fn error_detail_is_bounded_at_a_char_boundary() {
        let e = ProviderError::rejected("é".repeat(PROVIDER_ERROR_DETAIL_MAX));
        assert!(e.detail.len() <= PROVIDER_ERROR_DETAIL_MAX);
        assert!(e.detail.chars().all(|c| c == 'é'));
        assert_eq!(e.kind, ProviderFailureKind::Rejected);
        assert!(!e.is_retryable());
        assert!(ProviderError::timeout("t").is_retryable());
        assert_eq!(
            ProviderError::server_error("boom").to_string(),
            "provider call failed (server_error): boom"
        );
    }
}
