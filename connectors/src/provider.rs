//! Payment providers behind one trait.
//!
//! Command services talk to every provider through [`PaymentProvider`]; each adapter is a real
//! HTTP client of its provider's API. A provider's answer about a payment's *outcome* arrives
//! later, as a signed webhook (see `crate`); the calls here only start, query or
//! move a transaction along.

use std::net::{IpAddr, Ipv4Addr};

use domain::{
    CaptureId, CaptureMode, Currency, CustomerId, MethodDisplay, Money, PaymentId,
    PaymentMethodType, ProviderFailureKind, RefundId, SavedMethodId,
};
use secrecy::zeroize::Zeroize;
use secrecy::{CloneableSecret, ExposeSecret, SecretBox, SecretString};

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
        &PaymentMethodType::ALL
    }

    /// Whether the provider can authorize now and capture later (`capture: manual`).
    fn supports_manual_capture(&self) -> bool {
        true
    }

    /// Whether the provider takes refunds through its API (some only in their dashboard):
    /// checked before anything is reserved.
    fn supports_refunds(&self) -> bool {
        true
    }

    /// Currencies this provider settles.
    fn currencies(&self) -> &'static [Currency] {
        &[]
    }

    /// Whether the provider can take this method in this currency at all.
    fn supports(&self, method: PaymentMethodType, currency: Currency) -> bool {
        self.payment_methods().contains(&method)
            && (self.currencies().is_empty() || self.currencies().contains(&currency))
    }

    /// Banks a PSE payment can be made from (only providers that offer PSE).
    async fn pse_banks(&self) -> Result<Vec<PseBank>, ProviderError> {
        Ok(Vec::new())
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

    /// How long the provider deduplicates creates by our payment id (sent as its idempotency
    /// key), if it does: within it a create whose answer was lost may be sent again, and the
    /// provider answers with the first transaction instead of making a second.
    fn create_idempotency_window(&self) -> Option<std::time::Duration> {
        None
    }

    /// Whether [`PaymentProvider::find_transaction`] can ask the provider by reference.
    fn supports_lookup(&self) -> bool {
        false
    }

    /// The transaction a create for `payment_id` left at the provider, found by the reference
    /// it was sent with (`Ok(None)`: the provider holds none). What decides, after a lost
    /// answer, between recording the transaction and sending the create again.
    async fn find_transaction(
        &self,
        _payment_id: PaymentId,
        _reference: &str,
    ) -> Result<Option<ProviderTransaction>, ProviderError> {
        Err(ProviderError::rejected(format!(
            "{} offers no lookup by reference",
            self.name()
        )))
    }

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

    /// The method types this provider can keep for a customer and charge later (empty: it
    /// keeps none).
    fn saved_method_types(&self) -> &'static [PaymentMethodType] {
        &[]
    }

    /// Saves a method at the provider for later charges. A repeat with the same
    /// `payment_method_id` answers the first source instead of saving a second.
    async fn save_method(&self, _request: &SaveMethod) -> Result<SavedSource, ProviderError> {
        Err(ProviderError::rejected(format!(
            "{} keeps no saved payment methods",
            self.name()
        )))
    }

    /// Detaches a saved source: the provider charges it no more. Detaching a source that is
    /// already detached succeeds.
    async fn remove_method(&self, _source_id: &str) -> Result<(), ProviderError> {
        Err(ProviderError::rejected(format!(
            "{} keeps no saved payment methods",
            self.name()
        )))
    }

    /// Whether a saved source can be charged yet. Only providers that answer a save with a
    /// verification step ([`SavedSource::verification_url`]) are ever asked.
    async fn source_state(&self, _source_id: &str) -> Result<SourceState, ProviderError> {
        Ok(SourceState::Chargeable)
    }

    /// Whether the provider can charge a method of this type it keeps, in this currency.
    fn supports_saved(&self, method: PaymentMethodType, currency: Currency) -> bool {
        self.saved_method_types().contains(&method)
            && (self.currencies().is_empty() || self.currencies().contains(&currency))
    }
}

/// Where a saved source stands at its provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceState {
    Chargeable,
    /// The customer has not finished the provider's verification (3-D Secure) yet.
    AwaitingVerification,
    /// The verification failed or expired: the source will never be charged.
    VerificationFailed,
}

/// A method to keep at a provider for a customer's later payments.
#[derive(Debug, Clone)]
pub struct SaveMethod {
    /// Our id of the saved method: the provider's idempotency key or reference for the save.
    pub payment_method_id: SavedMethodId,
    pub customer_id: CustomerId,
    /// Personal data: for the providers that want the customer's email with a source.
    pub customer_email: Option<SecretString>,
    /// What is saved: a card token from the provider's own tokenization, or a wallet.
    pub method: PaymentMethodDetails,
    /// The customer's acceptance of the provider's terms, where it asks for one (Wompi).
    pub acceptance_token: Option<SecretString>,
    /// Where the provider sends the customer back after a verification step, if it has one.
    pub return_url: Option<String>,
}

/// What a provider keeps for a saved method: the source to charge, and what the customer may
/// be shown of it.
#[derive(Debug, Clone)]
pub struct SavedSource {
    /// The provider's id of the source. Together with the merchant's credentials it buys a
    /// charge, so it is a secret kept in the vault, never in an event or a log.
    pub source_id: SecretString,
    pub display: MethodDisplay,
    /// Where the customer must go to verify the source (3-D Secure) before it can be
    /// charged; `None`: chargeable now.
    pub verification_url: Option<String>,
}

/// What a provider needs to start a transaction.
///
/// How the customer pays, with what the provider needs for that method. Tokens and personal
/// ids go to the provider and nowhere else: they are [`SecretString`]s (`Debug` prints
/// `[REDACTED]`) and no event stores them.
#[derive(Debug, Clone)]
pub enum PaymentMethodDetails {
    /// A token from the provider's own card tokenization (or a sandbox test token).
    Card {
        token: SecretString,
    },
    Nequi {
        phone_number: SecretString,
    },
    Pse {
        financial_institution_code: String,
        /// 0: natural person, 1: company (PSE's own codes).
        user_type: u8,
        user_legal_id_type: String,
        user_legal_id: SecretString,
    },
    Efecty,
    Gcash,
    Maya,
    /// Bancolombia's transfer button: the customer authorizes the debit at Bancolombia's page.
    BancolombiaTransfer {
        /// 0: natural person, 1: company (the same codes as PSE's).
        user_type: u8,
        /// What the customer's bank shows them (may name the customer, so a secret).
        payment_description: SecretString,
    },
    /// A QR code the customer scans with the Bancolombia app.
    BancolombiaQr {
        payment_description: Option<SecretString>,
    },
    /// A Daviplata wallet, confirmed with a one-time code sent to the customer's phone.
    Daviplata {
        user_legal_id_type: String,
        user_legal_id: SecretString,
        payment_description: Option<SecretString>,
    },
    /// A method saved earlier at this provider (see [`PaymentProvider::save_method`]).
    Saved {
        method: PaymentMethodType,
        payment_method_id: SavedMethodId,
        source_id: SecretString,
    },
}

impl PaymentMethodDetails {
    pub fn kind(&self) -> PaymentMethodType {
        match self {
            PaymentMethodDetails::Card { .. } => PaymentMethodType::Card,
            PaymentMethodDetails::Nequi { .. } => PaymentMethodType::Nequi,
            PaymentMethodDetails::Pse { .. } => PaymentMethodType::Pse,
            PaymentMethodDetails::Efecty => PaymentMethodType::Efecty,
            PaymentMethodDetails::Gcash => PaymentMethodType::Gcash,
            PaymentMethodDetails::Maya => PaymentMethodType::Maya,
            PaymentMethodDetails::BancolombiaTransfer { .. } => {
                PaymentMethodType::BancolombiaTransfer
            }
            PaymentMethodDetails::BancolombiaQr { .. } => PaymentMethodType::BancolombiaQr,
            PaymentMethodDetails::Daviplata { .. } => PaymentMethodType::Daviplata,
            PaymentMethodDetails::Saved { method, .. } => *method,
        }
    }

    /// The provider's source id, when the method is a saved one.
    pub fn saved_source(&self) -> Option<&str> {
        match self {
            PaymentMethodDetails::Saved { source_id, .. } => Some(source_id.expose_secret()),
            _ => None,
        }
    }

    pub fn card_token(&self) -> Option<&str> {
        match self {
            PaymentMethodDetails::Card { token } => Some(token.expose_secret()),
            _ => None,
        }
    }

    /// Stable text of everything the customer chose, for the request fingerprint (callers
    /// hash it; it is never stored or logged as is).
    pub fn canonical(&self) -> String {
        match self {
            PaymentMethodDetails::Card { token } => format!("CARD|{}", token.expose_secret()),
            PaymentMethodDetails::Nequi { phone_number } => {
                format!("NEQUI|{}", phone_number.expose_secret())
            }
            PaymentMethodDetails::Pse {
                financial_institution_code,
                user_type,
                user_legal_id_type,
                user_legal_id,
            } => format!(
                "PSE|{financial_institution_code}|{user_type}|{user_legal_id_type}|{}",
                user_legal_id.expose_secret()
            ),
            PaymentMethodDetails::Efecty => "EFECTY".into(),
            PaymentMethodDetails::Gcash => "GCASH".into(),
            PaymentMethodDetails::Maya => "MAYA".into(),
            // `{:?}` of the optional texts: quoted, so no two choices read the same.
            PaymentMethodDetails::BancolombiaTransfer {
                user_type,
                payment_description,
            } => format!(
                "BANCOLOMBIA_TRANSFER|{user_type}|{:?}",
                payment_description.expose_secret()
            ),
            PaymentMethodDetails::BancolombiaQr {
                payment_description,
            } => format!("BANCOLOMBIA_QR|{:?}", exposed(payment_description)),
            PaymentMethodDetails::Daviplata {
                user_legal_id_type,
                user_legal_id,
                payment_description,
            } => format!(
                "DAVIPLATA|{:?}|{:?}|{:?}",
                user_legal_id_type,
                user_legal_id.expose_secret(),
                exposed(payment_description)
            ),
            PaymentMethodDetails::Saved {
                payment_method_id, ..
            } => format!("SAVED|{payment_method_id}"),
        }
    }
}

/// Who pays, as the merchant's checkout knows them, for the providers that ask (PayU's
/// anti-fraud checks and PSE want the payer's name, phone, document and the address and
/// browser they pay from; the merchant's server calls payledger, so only the checkout can tell
/// them). Passed through to the provider call; never logged, never stored in an event: only a
/// digest enters the idempotency fingerprint. Fields are checked by the API before they get
/// here. Every value is a secret: `Debug` says which fields are there, never what they hold.
#[derive(Debug, Clone, Default)]
pub struct Customer {
    pub full_name: Option<SecretString>,
    /// Digits, with an optional leading `+`.
    pub phone: Option<SecretString>,
    /// The payer's identity document number (PSE carries its own in the method details).
    pub document_number: Option<SecretString>,
    /// The address the customer's browser pays from.
    pub ip_address: Option<SecretBox<IpAddress>>,
    pub user_agent: Option<SecretString>,
    /// The provider's device-fingerprint session id, set by its script in the checkout page.
    pub device_session_id: Option<SecretString>,
}

impl Customer {
    pub fn is_empty(&self) -> bool {
        self.full_name.is_none()
            && self.phone.is_none()
            && self.document_number.is_none()
            && self.ip_address.is_none()
            && self.user_agent.is_none()
            && self.device_session_id.is_none()
    }

    /// Stable text of every field, for the request fingerprint (hashed by the caller). The
    /// same text as `{:?}` of the plain `Option<String>` / `Option<IpAddr>` values: stored
    /// fingerprints depend on it.
    pub fn canonical(&self) -> String {
        format!(
            "{:?}|{:?}|{:?}|{:?}|{:?}|{:?}",
            exposed(&self.full_name),
            exposed(&self.phone),
            exposed(&self.document_number),
            self.ip_address.as_ref().map(|ip| ip.expose_secret().0),
            exposed(&self.user_agent),
            exposed(&self.device_session_id)
        )
    }
}

/// The text of an optional secret (a [`Customer`] field), for a provider's request body.
pub(crate) fn exposed(value: &Option<SecretString>) -> Option<&str> {
    value.as_ref().map(|v| v.expose_secret())
}

/// An IP address, as a [`SecretBox`] can hold it (a customer's address is personal data).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct IpAddress(pub IpAddr);

impl Zeroize for IpAddress {
    fn zeroize(&mut self) {
        self.0 = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
    }
}

impl CloneableSecret for IpAddress {}

impl From<IpAddress> for SecretBox<IpAddress> {
    fn from(ip: IpAddress) -> Self {
        SecretBox::new(Box::new(ip))
    }
}

/// A request to start a transaction at a provider. The provider's reference for it is always
/// our payment id, so every notification can name the payment.
#[derive(Debug, Clone)]
pub struct CreateTransaction {
    pub payment_id: PaymentId,
    /// The merchant's order reference (informational at the provider).
    pub reference: String,
    pub amount: Money,
    pub method: PaymentMethodDetails,
    pub capture_mode: CaptureMode,
    /// Some providers (Wompi, PayU) require a payer email (personal data: never in a `Debug`).
    pub customer_email: Option<SecretString>,
    pub customer: Customer,
    /// Where a redirect flow (PSE, wallets, 3-D Secure) sends the customer back.
    pub return_url: Option<String>,
}

/// What the customer must do before the provider can decide (recorded in the ledger, so it
/// lives in `domain`).
pub use domain::payment::NextAction;

/// How long an HTTP client keeps an idle connection to a provider. Shorter than common server
/// keep-alives (actix: 5 s): reusing a connection the server is closing at that very moment
/// fails with "connection closed before message completed", and a create cannot simply be
/// sent again. A new connection now and then is the cheaper price.
pub(crate) const POOL_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

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
    /// What the customer must do, while the transaction waits for them.
    pub next_action: Option<NextAction>,
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
    /// The customer never completed it (an Efecty code or a redirect that timed out).
    Expired,
    /// The provider gave up on it (an error on its side, or the customer abandoned it).
    Failed {
        reason: String,
    },
}

impl ProviderTransactionStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            ProviderTransactionStatus::Pending => "PENDING",
            ProviderTransactionStatus::Authorized => "AUTHORIZED",
            ProviderTransactionStatus::Approved => "APPROVED",
            ProviderTransactionStatus::Declined { .. } => "DECLINED",
            ProviderTransactionStatus::Voided => "VOIDED",
            ProviderTransactionStatus::Expired => "EXPIRED",
            ProviderTransactionStatus::Failed { .. } => "FAILED",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PseBank {
    pub code: String,
    pub name: String,
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
#[error("provider call failed ({}): {detail}", .kind.as_str())]
pub struct ProviderError {
    pub kind: ProviderFailureKind,
    pub detail: String,
    /// Provably never processed: no byte of the request reached the provider (connection
    /// refused, DNS or TLS failure), or an answer the provider documents as "not processed".
    pub not_sent: bool,
}

/// What a failed provider write means for the money.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallOutcome {
    /// The provider answered no (a decline, a validation error): final.
    Refused,
    /// The provider never processed the request: another provider may be offered it.
    NotSent,
    /// The provider may have acted (a timeout after sending, a cut connection, an
    /// undocumented 5xx): only the provider can say, so ask it; never fall back.
    Unknown,
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
        ProviderError {
            kind,
            detail,
            not_sent: false,
        }
    }

    /// The same error, known never to have been processed by the provider.
    pub fn never_sent(mut self) -> Self {
        self.not_sent = true;
        self
    }

    pub fn outcome(&self) -> CallOutcome {
        match (self.kind, self.not_sent) {
            (ProviderFailureKind::Rejected, _) => CallOutcome::Refused,
            (_, true) => CallOutcome::NotSent,
            (_, false) => CallOutcome::Unknown,
        }
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
            method: PaymentMethodDetails::Card {
                token: "tok_live_supersecret".into(),
            },
            capture_mode: CaptureMode::Automatic,
            customer_email: None,
            customer: Customer {
                full_name: Some("Ana Pérez".into()),
                ip_address: Some(IpAddress("190.24.8.77".parse().unwrap()).into()),
                ..Customer::default()
            },
            return_url: None,
        };
        let printed = format!("{request:?} {request:#?}");
        assert!(!printed.contains("supersecret"), "{printed}");
        assert!(
            !printed.contains("Ana") && !printed.contains("190.24"),
            "{printed}"
        );
        assert!(
            printed.contains("token: SecretBox<str>([REDACTED])"),
            "{printed}"
        );
        assert!(
            printed.contains("full_name: Some(SecretBox<str>([REDACTED]))"),
            "{printed}"
        );
        assert!(
            printed.contains(
                "ip_address: Some(SecretBox<connectors::provider::IpAddress>([REDACTED]))"
            ),
            "{printed}"
        );
        assert!(printed.contains("phone: None"), "{printed}");
        assert!(printed.contains("[REDACTED]"));
        assert!(printed.contains("order-1"));
    }

    #[test]
    fn canonical_texts_are_those_of_the_plain_values() {
        // Fingerprints stored in events were computed from this text when the fields were
        // `String`, `Option<String>` and `Option<IpAddr>`: it must not change.
        let customer = Customer {
            full_name: Some("Ana \"la\" Pérez".into()),
            document_number: Some("1999888777".into()),
            ip_address: Some(IpAddress("190.24.8.77".parse().unwrap()).into()),
            device_session_id: Some("abc".into()),
            ..Customer::default()
        };
        assert_eq!(
            customer.canonical(),
            r#"Some("Ana \"la\" Pérez")|None|Some("1999888777")|Some(190.24.8.77)|None|Some("abc")"#
        );
        assert!(!customer.is_empty());
        assert!(Customer::default().is_empty());
        let pse = PaymentMethodDetails::Pse {
            financial_institution_code: "1007".into(),
            user_type: 0,
            user_legal_id_type: "CC".into(),
            user_legal_id: "1999888777".into(),
        };
        assert_eq!(pse.canonical(), "PSE|1007|0|CC|1999888777");
        let nequi = PaymentMethodDetails::Nequi {
            phone_number: "3991111111".into(),
        };
        assert_eq!(nequi.canonical(), "NEQUI|3991111111");
        let card = PaymentMethodDetails::Card {
            token: "tok_1".into(),
        };
        assert_eq!(card.canonical(), "CARD|tok_1");
        assert_eq!(card.card_token(), Some("tok_1"));
    }

    #[test]
    fn wompi_rails_have_their_kind_a_distinct_canonical_text_and_a_redacted_debug() {
        let transfer = PaymentMethodDetails::BancolombiaTransfer {
            user_type: 0,
            payment_description: "Pedido 42 de Ana".into(),
        };
        assert_eq!(transfer.kind(), PaymentMethodType::BancolombiaTransfer);
        assert_eq!(
            transfer.canonical(),
            r#"BANCOLOMBIA_TRANSFER|0|"Pedido 42 de Ana""#
        );
        let qr = |description: Option<&str>| PaymentMethodDetails::BancolombiaQr {
            payment_description: description.map(SecretString::from),
        };
        assert_eq!(qr(None).kind(), PaymentMethodType::BancolombiaQr);
        assert_eq!(qr(None).canonical(), "BANCOLOMBIA_QR|None");
        assert_eq!(qr(Some("x")).canonical(), r#"BANCOLOMBIA_QR|Some("x")"#);
        let daviplata = PaymentMethodDetails::Daviplata {
            user_legal_id_type: "CC".into(),
            user_legal_id: "1134568019".into(),
            payment_description: None,
        };
        assert_eq!(daviplata.kind(), PaymentMethodType::Daviplata);
        assert_eq!(daviplata.canonical(), r#"DAVIPLATA|"CC"|"1134568019"|None"#);
        // An id that ends like another's description does not read the same.
        let shifted = PaymentMethodDetails::Daviplata {
            user_legal_id_type: "CC".into(),
            user_legal_id: "1".into(),
            payment_description: Some("2".into()),
        };
        let other = PaymentMethodDetails::Daviplata {
            user_legal_id_type: "CC".into(),
            user_legal_id: "1|2".into(),
            payment_description: None,
        };
        assert_ne!(shifted.canonical(), other.canonical());
        let printed = format!("{transfer:?} {daviplata:?} {:?}", qr(Some("Ana Pérez")));
        for private in ["Pedido", "1134568019", "Ana"] {
            assert!(!printed.contains(private), "{printed}");
        }
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
