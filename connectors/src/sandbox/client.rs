//! HTTP client of the bundled sandbox provider (`emulators::sandbox` is the server).
//!
//! Everything goes over a real socket: `Authorization: Bearer <api key>`, JSON bodies, money
//! as decimal strings. Failures map to [`ProviderFailureKind`]: no answer in time ->
//! `Timeout`, no connection -> `Connection`, 5xx -> `ServerError`, 4xx -> `Rejected` with the
//! provider's error code as detail.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use domain::{
    CaptureId, CaptureMode, Currency, CustomerId, MethodDisplay, Money, MoneyError, PaymentId,
    PaymentMethodType, RefundId, SavedMethodId,
};
use reqwest::header::{HeaderValue, AUTHORIZATION};
use reqwest::{Method, StatusCode, Url};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::http::sanitize;
use crate::{
    CreateTransaction, PaymentProvider, ProviderConfigError, ProviderError, ProviderRefund,
    ProviderTransaction, ProviderTransactionStatus, SaveMethod, SavedSource,
};

/// Largest response body read from the sandbox; anything bigger is a provider fault.
pub const RESPONSE_BODY_MAX_BYTES: usize = 256 * 1024;
/// Longest per-request timeout accepted in the configuration.
pub use crate::http::TIMEOUT_MS_MAX;
/// How long creates are trusted to be deduplicated by payment id (the sandbox forgets
/// nothing while it runs; a year bounds the arithmetic).
const IDEMPOTENCY_WINDOW_SECS: u64 = 365 * 24 * 3_600;
/// Longest provider transaction id sent in a URL.
const TRANSACTION_ID_LEN_MAX: usize = 128;

/// Where the sandbox is and how to call it.
#[derive(Debug, Clone)]
pub struct SandboxClientConfig {
    /// e.g. `http://127.0.0.1:8089`; paths are appended (`/v1/transactions`).
    pub base_url: String,
    pub api_key: SecretString,
    /// Whole-request timeout (connect, send, read the body), in milliseconds.
    pub timeout_ms: u64,
}

/// The sandbox provider adapter.
#[derive(Debug)]
pub struct SandboxProvider {
    http: reqwest::Client,
    base_url: Url,
    api_key: SecretString,
    authorization: HeaderValue,
    timeout_ms: u64,
}

impl SandboxProvider {
    pub const NAME: &'static str = "sandbox";

    pub fn new(config: SandboxClientConfig) -> Result<Self, ProviderConfigError> {
        let invalid = |problem: &str| ProviderConfigError {
            provider: Self::NAME,
            problem: problem.to_owned(),
        };
        let base_url =
            Url::parse(&config.base_url).map_err(|_| invalid("base_url is not a URL"))?;
        if !matches!(base_url.scheme(), "http" | "https") {
            return Err(invalid("base_url must be http or https"));
        }
        if base_url.cannot_be_a_base()
            || base_url.query().is_some()
            || base_url.fragment().is_some()
            || !base_url.username().is_empty()
            || base_url.password().is_some()
        {
            return Err(invalid(
                "base_url must be a plain base URL (no credentials, query or fragment)",
            ));
        }
        if config.api_key.expose_secret().is_empty() {
            return Err(invalid("api_key is empty"));
        }
        let mut authorization =
            HeaderValue::from_str(&format!("Bearer {}", config.api_key.expose_secret()))
                .map_err(|_| invalid("api_key contains characters not allowed in a header"))?;
        authorization.set_sensitive(true);
        let http = crate::http::provider_client(config.timeout_ms).map_err(invalid)?;
        Ok(SandboxProvider {
            http,
            base_url,
            api_key: config.api_key,
            authorization,
            timeout_ms: config.timeout_ms,
        })
    }

    fn url(&self, segments: &[&str]) -> Result<Url, ProviderError> {
        let mut url = self.base_url.clone();
        url.path_segments_mut()
            .map_err(|_| ProviderError::rejected("sandbox base_url cannot take a path"))?
            .pop_if_empty()
            .extend(segments);
        Ok(url)
    }

    fn transaction_url(
        &self,
        provider_transaction_id: &str,
        tail: &[&str],
    ) -> Result<Url, ProviderError> {
        let valid = !provider_transaction_id.is_empty()
            && provider_transaction_id.len() <= TRANSACTION_ID_LEN_MAX
            && provider_transaction_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !valid {
            return Err(ProviderError::rejected("invalid provider transaction id"));
        }
        let mut segments = vec!["v1", "transactions", provider_transaction_id];
        segments.extend_from_slice(tail);
        self.url(&segments)
    }

    /// Sends one request and returns the 2xx status and body; everything else is an error.
    async fn call<B: Serialize + ?Sized>(
        &self,
        method: Method,
        url: Url,
        body: Option<&B>,
    ) -> Result<(StatusCode, Vec<u8>), ProviderError> {
        let mut request = self
            .http
            .request(method, url)
            .header(AUTHORIZATION, self.authorization.clone());
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| self.transport_error(e))?;
        let status = response.status();
        let body = self.read_body(response).await?;
        if status.is_success() {
            return Ok((status, body));
        }
        let detail = self.scrub(&format!(
            "sandbox answered {}: {}",
            status.as_u16(),
            error_summary(&body)
        ));
        Err(if status.is_client_error() {
            ProviderError::rejected(detail)
        } else if status == StatusCode::SERVICE_UNAVAILABLE && documented_not_processed(&body) {
            ProviderError::server_error(detail).never_sent()
        } else {
            // 5xx, and anything unexpected (redirects are not followed): it may have acted.
            ProviderError::server_error(detail)
        })
    }

    async fn read_body(&self, response: reqwest::Response) -> Result<Vec<u8>, ProviderError> {
        crate::http::read_body("sandbox", response, RESPONSE_BODY_MAX_BYTES, |e| {
            self.transport_error(e)
        })
        .await
    }

    fn transport_error(&self, error: reqwest::Error) -> ProviderError {
        crate::http::transport_error("sandbox", error, self.timeout_ms, |t| self.scrub(t))
    }

    /// Belt and braces: the detail ends up in events and logs, so the key must never be in
    /// it, whatever the server or a library put in a message.
    fn scrub(&self, text: &str) -> String {
        crate::http::scrub(text, [self.api_key.expose_secret()])
    }

    fn decode<T: for<'de> Deserialize<'de>>(&self, body: &[u8]) -> Result<T, ProviderError> {
        crate::http::decode("sandbox", body)
    }
}

#[async_trait]
impl PaymentProvider for SandboxProvider {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn payment_methods(&self) -> &'static [PaymentMethodType] {
        &[PaymentMethodType::Card]
    }

    async fn create_transaction(
        &self,
        request: &CreateTransaction,
    ) -> Result<ProviderTransaction, ProviderError> {
        let body = CreateBody {
            payment_id: request.payment_id,
            reference: &request.reference,
            amount: request.amount.amount().to_string(),
            currency: request.amount.currency().code(),
            method: request.method.kind(),
            // The sandbox decides by card test token; other methods have none to send.
            token: request.method.card_token(),
            payment_source_id: request.method.saved_source(),
            capture: request.capture_mode,
        };
        let url = self.url(&["v1", "transactions"])?;
        let (_, raw) = self.call(Method::POST, url, Some(&body)).await?;
        let transaction = self.decode::<TransactionBody>(&raw)?.into_transaction()?;
        if transaction.payment_id != request.payment_id || transaction.amount != request.amount {
            return Err(ProviderError::server_error(
                "sandbox answered with a transaction of another payment or amount",
            ));
        }
        Ok(transaction)
    }

    /// The sandbox keeps every transaction, keyed by payment, while it runs.
    fn create_idempotency_window(&self) -> Option<Duration> {
        Some(Duration::from_secs(IDEMPOTENCY_WINDOW_SECS))
    }

    fn supports_lookup(&self) -> bool {
        true
    }

    async fn find_transaction(
        &self,
        payment_id: PaymentId,
        reference: &str,
    ) -> Result<Option<ProviderTransaction>, ProviderError> {
        let mut url = self.url(&["v1", "transactions"])?;
        url.query_pairs_mut().append_pair("reference", reference);
        let (_, raw) = self.call::<()>(Method::GET, url, None).await?;
        let listed: TransactionList = self.decode(&raw)?;
        // A reference is the merchant's: another merchant may use the same text.
        let mut found = None;
        for body in listed.data {
            if body.payment_id == payment_id {
                if found.is_some() {
                    return Err(ProviderError::server_error(
                        "sandbox holds two transactions for one payment",
                    ));
                }
                found = Some(body.into_transaction()?);
            }
        }
        Ok(found)
    }

    async fn get_transaction(
        &self,
        provider_transaction_id: &str,
    ) -> Result<ProviderTransaction, ProviderError> {
        let url = self.transaction_url(provider_transaction_id, &[])?;
        let (_, raw) = self.call::<()>(Method::GET, url, None).await?;
        let transaction = self.decode::<TransactionBody>(&raw)?.into_transaction()?;
        if transaction.id != provider_transaction_id {
            return Err(ProviderError::server_error(
                "sandbox answered with another transaction",
            ));
        }
        Ok(transaction)
    }

    async fn capture(
        &self,
        provider_transaction_id: &str,
        capture_id: CaptureId,
        amount: Money,
    ) -> Result<(), ProviderError> {
        let url = self.transaction_url(provider_transaction_id, &["capture"])?;
        let body = CaptureBody {
            capture_id,
            amount: amount.amount().to_string(),
            currency: amount.currency().code(),
        };
        self.call(Method::POST, url, Some(&body)).await?;
        Ok(())
    }

    async fn void(&self, provider_transaction_id: &str) -> Result<(), ProviderError> {
        let url = self.transaction_url(provider_transaction_id, &["void"])?;
        self.call::<()>(Method::POST, url, None).await?;
        Ok(())
    }

    async fn refund(
        &self,
        provider_transaction_id: &str,
        refund_id: RefundId,
        amount: Money,
    ) -> Result<ProviderRefund, ProviderError> {
        let url = self.transaction_url(provider_transaction_id, &["refunds"])?;
        let body = RefundBody {
            refund_id,
            amount: amount.amount().to_string(),
            currency: amount.currency().code(),
        };
        let (_, raw) = self.call(Method::POST, url, Some(&body)).await?;
        let refund: RefundAnswer = self.decode(&raw)?;
        match refund.status.as_str() {
            "SUCCEEDED" if valid_provider_id(&refund.id) => Ok(ProviderRefund { id: refund.id }),
            "SUCCEEDED" => Err(ProviderError::server_error(
                "sandbox answered with an invalid refund id",
            )),
            "FAILED" => Err(ProviderError::rejected("sandbox refused the refund")),
            _ => Err(ProviderError::server_error(
                "sandbox answered with an unknown refund status",
            )),
        }
    }

    async fn health(&self) -> Result<(), ProviderError> {
        let url = self.url(&["health"])?;
        self.call::<()>(Method::GET, url, None).await?;
        Ok(())
    }

    fn saved_method_types(&self) -> &'static [PaymentMethodType] {
        &[PaymentMethodType::Card]
    }

    async fn save_method(&self, request: &SaveMethod) -> Result<SavedSource, ProviderError> {
        let token = request
            .method
            .card_token()
            .ok_or_else(|| ProviderError::rejected("the sandbox saves cards only"))?;
        let body = SourceBody {
            id: request.payment_method_id,
            customer_id: request.customer_id,
            method: request.method.kind(),
            token,
        };
        let url = self.url(&["v1", "payment_sources"])?;
        let (_, raw) = self.call(Method::POST, url, Some(&body)).await?;
        let source: SourceAnswer = self.decode(&raw)?;
        if !valid_provider_id(&source.id) || source.status != "AVAILABLE" {
            return Err(ProviderError::server_error(
                "sandbox answered with an invalid payment source",
            ));
        }
        let display = MethodDisplay {
            brand: source.brand,
            last_four: source.last_four,
            exp_month: source.exp_month,
            exp_year: source.exp_year,
            phone_masked: None,
        }
        .checked()
        .map_err(|e| ProviderError::server_error(format!("sandbox answered a source whose {e}")))?;
        Ok(SavedSource {
            source_id: source.id.into(),
            display,
            verification_url: None,
        })
    }

    async fn remove_method(&self, source_id: &str) -> Result<(), ProviderError> {
        if !valid_provider_id(source_id) {
            return Err(ProviderError::rejected("invalid payment source id"));
        }
        let url = self.url(&["v1", "payment_sources", source_id])?;
        self.call::<()>(Method::DELETE, url, None).await?;
        Ok(())
    }
}

/// `POST /v1/payment_sources`: keep a card for later charges.
#[derive(Serialize)]
struct SourceBody<'a> {
    /// Our saved method id: a repeat with it answers the first source.
    id: SavedMethodId,
    customer_id: CustomerId,
    method: PaymentMethodType,
    token: &'a str,
}

#[derive(Deserialize)]
struct SourceAnswer {
    id: String,
    status: String,
    #[serde(default)]
    brand: Option<String>,
    #[serde(default)]
    last_four: Option<String>,
    #[serde(default)]
    exp_month: Option<u8>,
    #[serde(default)]
    exp_year: Option<u16>,
}

#[derive(Serialize)]
struct CreateBody<'a> {
    payment_id: PaymentId,
    reference: &'a str,
    amount: String,
    currency: &'static str,
    method: PaymentMethodType,
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    payment_source_id: Option<&'a str>,
    capture: CaptureMode,
}

#[derive(Serialize)]
struct CaptureBody {
    capture_id: CaptureId,
    amount: String,
    currency: &'static str,
}

#[derive(Serialize)]
struct RefundBody {
    refund_id: RefundId,
    amount: String,
    currency: &'static str,
}

/// A transaction as the sandbox returns it; unknown fields are ignored.
#[derive(Deserialize)]
struct TransactionBody {
    id: String,
    payment_id: PaymentId,
    status: String,
    amount: String,
    currency: String,
    #[serde(default)]
    captured_amount: Option<String>,
    #[serde(default)]
    refunded_amount: Option<String>,
    #[serde(default)]
    reason: Option<String>,
}

impl TransactionBody {
    fn into_transaction(self) -> Result<ProviderTransaction, ProviderError> {
        let bad = |what: &str| ProviderError::server_error(format!("sandbox answered {what}"));
        if !valid_provider_id(&self.id) {
            return Err(bad("an invalid transaction id"));
        }
        let currency =
            Currency::from_str(&self.currency).map_err(|_| bad("an unknown currency"))?;
        let amount = Money::parse(&self.amount, currency).map_err(|_| bad("an invalid amount"))?;
        let captured_amount = money_or_zero(self.captured_amount.as_deref(), currency)
            .map_err(|_| bad("an invalid captured amount"))?;
        let refunded_amount = money_or_zero(self.refunded_amount.as_deref(), currency)
            .map_err(|_| bad("an invalid refunded amount"))?;
        let status = match self.status.as_str() {
            "PENDING" => ProviderTransactionStatus::Pending,
            "AUTHORIZED" => ProviderTransactionStatus::Authorized,
            "APPROVED" => ProviderTransactionStatus::Approved,
            "VOIDED" => ProviderTransactionStatus::Voided,
            "DECLINED" => ProviderTransactionStatus::Declined {
                reason: sanitize(self.reason.as_deref().unwrap_or("declined"), 128),
            },
            _ => return Err(bad("an unknown transaction status")),
        };
        Ok(ProviderTransaction {
            id: self.id,
            payment_id: self.payment_id,
            status,
            amount,
            captured_amount,
            refunded_amount,
            next_action: None,
        })
    }
}

/// `GET /v1/transactions?reference=`: every transaction sent with that reference.
#[derive(Deserialize)]
struct TransactionList {
    data: Vec<TransactionBody>,
}

#[derive(Deserialize)]
struct RefundAnswer {
    id: String,
    status: String,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: String,
    #[serde(default)]
    message: Option<String>,
}

/// Zero amounts ("0.00") are legitimate for captured/refunded totals; `Money::parse` only
/// takes positive amounts, so zero is handled here, with the same strict syntax.
fn money_or_zero(text: Option<&str>, currency: Currency) -> Result<Money, MoneyError> {
    match text {
        None => Ok(Money::zero(currency)),
        Some(text) => match Money::parse(text, currency) {
            Err(MoneyError::NotPositive) => Ok(Money::zero(currency)),
            other => other,
        },
    }
}

/// The sandbox documents `503 provider_unavailable` as "nothing was processed".
fn documented_not_processed(body: &[u8]) -> bool {
    serde_json::from_slice::<ErrorBody>(body).is_ok_and(|e| e.error == "provider_unavailable")
}

fn valid_provider_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= TRANSACTION_ID_LEN_MAX
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The provider's error code and message, printable and bounded; or a note that the body
/// was not the documented error shape (its content is not echoed).
fn error_summary(body: &[u8]) -> String {
    crate::http::error_summary(body, |ErrorBody { error, message }| {
        Some(match message {
            Some(message) => format!("{}: {}", sanitize(&error, 64), sanitize(&message, 160)),
            None => sanitize(&error, 64),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::ProviderFailureKind;

    fn config(base_url: &str) -> SandboxClientConfig {
        SandboxClientConfig {
            base_url: base_url.into(),
            api_key: "sk_sandbox_secret_key".into(),
            timeout_ms: 1_000,
        }
    }

    #[test]
    fn refuses_unusable_configuration() {
        assert!(SandboxProvider::new(config("http://127.0.0.1:1")).is_ok());
        assert!(SandboxProvider::new(config("https://sandbox.example/api/")).is_ok());
        for bad in [
            "not a url",
            "ftp://127.0.0.1",
            "http://user:pw@127.0.0.1",
            "http://127.0.0.1/?a=b",
            "mailto:x@example.com",
        ] {
            assert!(SandboxProvider::new(config(bad)).is_err(), "{bad}");
        }
        let mut c = config("http://127.0.0.1:1");
        c.api_key = "".into();
        assert!(SandboxProvider::new(c.clone()).is_err());
        c.api_key = "bad\nkey".into();
        assert!(SandboxProvider::new(c.clone()).is_err());
        c.api_key = "k".into();
        c.timeout_ms = 0;
        assert!(SandboxProvider::new(c).is_err());
    }

    #[test]
    fn debug_never_shows_the_api_key() {
        let c = config("http://127.0.0.1:1");
        let provider = SandboxProvider::new(c.clone()).unwrap();
        let printed = format!("{c:?} {provider:?}");
        assert!(!printed.contains("sk_sandbox_secret_key"), "{printed}");
    }

    #[test]
    fn builds_urls_under_a_base_path_and_refuses_odd_ids() {
        let provider = SandboxProvider::new(config("http://h:1/api")).unwrap();
        assert_eq!(
            provider
                .transaction_url("sbx_tx_1", &["capture"])
                .unwrap()
                .as_str(),
            "http://h:1/api/v1/transactions/sbx_tx_1/capture"
        );
        let provider = SandboxProvider::new(config("http://h:1/api/")).unwrap();
        assert_eq!(
            provider.url(&["health"]).unwrap().as_str(),
            "http://h:1/api/health"
        );
        for bad in ["", "../admin", "a/b", "a?b", "a b", &"x".repeat(129)] {
            let err = provider.transaction_url(bad, &[]).unwrap_err();
            assert_eq!(err.kind, ProviderFailureKind::Rejected);
        }
    }

    #[test]
    fn error_summary_keeps_only_code_and_message() {
        assert_eq!(
            error_summary(br#"{"error":"invalid_token","message":"unknown\ntoken"}"#),
            "invalid_token: unknown?token"
        );
        assert_eq!(
            error_summary(br#"{"error":"invalid_state"}"#),
            "invalid_state"
        );
        assert_eq!(
            error_summary(b"<html>secret</html>"),
            "unrecognized error body"
        );
        assert_eq!(error_summary(b""), "empty body");
    }

    #[test]
    fn zero_totals_parse_strictly() {
        assert!(money_or_zero(Some("0.00"), Currency::COP)
            .unwrap()
            .is_zero());
        assert!(money_or_zero(None, Currency::COP).unwrap().is_zero());
        assert!(money_or_zero(Some("-0.00"), Currency::COP).is_err());
        assert_eq!(
            money_or_zero(Some("10.50"), Currency::COP).unwrap(),
            Money::parse("10.50", Currency::COP).unwrap()
        );
    }
}
