//! PayU Latam adapter (Colombia: cards by token, Efecty cash codes, PSE bank transfers; COP).
//!
//! A real client of PayU's JSON API: every call is a `POST` of
//! `{"language","command","merchant":{"apiKey","apiLogin"},...,"test"}` with
//! `Accept: application/json` to
//!
//! * `{base}/payments-api/4.0/service.cgi`: `SUBMIT_TRANSACTION` (types
//!   `AUTHORIZATION_AND_CAPTURE`, `AUTHORIZATION`, `CAPTURE`, `VOID`, `REFUND`),
//!   `GET_BANKS_LIST` (PSE banks), `PING` (health, authenticated), `GET_TOKENS` and
//!   `REMOVE_TOKEN` (saved cards: [`crate::payu::tokens`]);
//! * `{base}/reports-api/4.0/service.cgi`: `ORDER_DETAIL` (status of an order and all its
//!   transactions; also read before every refund) and `ORDER_DETAIL_BY_REFERENCE_CODE`
//!   (`find_transaction`: the payment by our id, when a create's answer was lost).
//!
//! Our payment id is always the order's `referenceCode`, so PayU's confirmations name it in
//! `reference_sale`. `order.signature` = MD5 or HMAC-SHA256 (per `PAYU_SIGNATURE_ALGORITHM`)
//! of `ApiKey~merchantId~referenceCode~tx_value~currency`, `tx_value` exactly as sent.
//! Amounts go out as JSON numbers written from the exact decimal (never through a float):
//! `65000` when there are no cents, else `150.25`.
//!
//! The provider transaction id is `<orderId>:<transactionId>`: PayU needs both the order id
//! and the parent transaction id for captures, voids, refunds and queries, and its
//! confirmations carry both (`reference_pol`, `transaction_id`).
//!
//! Answers: top-level `code: "ERROR"` -> `Rejected` with PayU's `error` text (bounded,
//! scrubbed); HTTP 5xx -> `ServerError`; 4xx -> `Rejected`; no answer in time -> `Timeout`;
//! no connection -> `Connection`. PayU documents no answer as "not processed", so only a
//! connection that was never made counts as never sent; a 5xx, a cut connection, a timeout
//! after sending or an unreadable answer leave the outcome unknown.
//! `transactionResponse.state`: `APPROVED` (`Authorized` for an `AUTHORIZATION`), `DECLINED`
//! (reason = `responseCode`), `ERROR` (`Failed`), `EXPIRED`, `PENDING` (with
//! `extraParameters.BANK_URL` -> `NextAction::Redirect` for PSE, `REFERENCE` +
//! `EXPIRATION_DATE` -> `NextAction::CashCode` for Efecty).
//!
//! Known gaps (need more from `CreateTransaction` or from PayU):
//! * PayU asks for buyer/payer name, phone and document, and `deviceSessionId`, `ipAddress`,
//!   `cookie` and `userAgent` (anti-fraud): payledger sends what the checkout gave in the
//!   payment's `customer` (all but the cookie) and its `customer_email`. PSE's
//!   `PSE_REFERENCE1` is the customer's IP address, or [`UNKNOWN_PAYER_IP`] when the
//!   checkout did not send one.
//! * A card payment needs its franchise as `paymentMethod`: a token may say it as
//!   `MASTERCARD:<token>`; a bare token goes as [`DEFAULT_CARD_FRANCHISE`].
//! * PayU has no idempotency key. Creates: payledger asks by reference before it sends a
//!   create again, and a refused create is answered with the order PayU already holds for the
//!   payment, if any (an account that validates unique references refuses the repeat).
//!   Refunds: the order's own record (`ORDER_DETAIL`) is read first, and a `REFUND` of the
//!   transaction carrying the refund id in its `reason` for the same amount is the answer; this
//!   relies on PayU listing each refund's `reason` with the order's transactions.
//! * `test` is always `false`; the environment is chosen by `PAYU_BASE_URL`.

use std::str::FromStr;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use domain::{CaptureId, CaptureMode, Currency, Money, PaymentId, PaymentMethodType, RefundId};
use reqwest::header::{HeaderValue, ACCEPT, CONTENT_TYPE};
use reqwest::Url;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::http::sanitize;
use crate::payu::signing::{request_message, sign, SignatureAlgorithm};
use crate::payu::tokens::TokenSource;
use crate::provider::exposed;
use crate::{
    CallOutcome, CreateTransaction, NextAction, PaymentMethodDetails, PaymentProvider,
    ProviderConfigError, ProviderError, ProviderRefund, ProviderTransaction,
    ProviderTransactionStatus, PseBank, SaveMethod, SavedSource,
};

pub const ENV_API_KEY: &str = "PAYU_API_KEY";
pub const ENV_API_LOGIN: &str = "PAYU_API_LOGIN";
pub const ENV_MERCHANT_ID: &str = "PAYU_MERCHANT_ID";
pub const ENV_ACCOUNT_ID: &str = "PAYU_ACCOUNT_ID";
pub const ENV_SIGNATURE_ALGORITHM: &str = "PAYU_SIGNATURE_ALGORITHM";
pub const ENV_SIGNATURE_SECRET: &str = "PAYU_SIGNATURE_SECRET";
pub const ENV_BASE_URL: &str = "PAYU_BASE_URL";
pub const ENV_NOTIFY_URL: &str = "PAYU_NOTIFY_URL";

/// Test defaults, used when a variable is unset. Recognisable (`test_` prefix, or PayU's own
/// published sandbox ids) so that `problems(true)` refuses them in production.
pub mod test_defaults {
    pub const API_KEY: &str = "test_payu_api_key_0123456789abcd";
    pub const API_LOGIN: &str = "test_payu_login_0123";
    /// PayU's public sandbox merchant.
    pub const MERCHANT_ID: &str = "508029";
    /// PayU's public sandbox account for Colombia.
    pub const ACCOUNT_ID: &str = "512321";
    pub const SIGNATURE_ALGORITHM: &str = "HMAC_SHA256";
    pub const SIGNATURE_SECRET: &str = "test_payu_signature_secret_0123456789";
    pub const BASE_URL: &str = "http://127.0.0.1:0";
}

/// PayU's published sandbox credentials (developer docs): never valid in production.
const PAYU_PUBLIC_SANDBOX_VALUES: &[&str] = &[
    "4Vj8eK4rloUd272L48hsrarnUA",
    "pRRXKOl8ikMmt9u",
    "508029",
    "512321",
    "512322",
    "512323",
    "512324",
    "512325",
    "512326",
    "512327",
];
const PAYU_PRODUCTION_HOST: &str = "api.payulatam.com";
const PAYU_SANDBOX_HOST: &str = "sandbox.api.payulatam.com";

/// Shortest secret accepted by `check-config` (the rule for every provider secret). Note: PayU's own API keys
/// are at most 32 characters (its docs: min 6, max 32) and the ones seen are 26, so in
/// production only a 32-character key passes this rule.
pub const SECRET_LEN_MIN: usize = 32;
/// Largest response body read from PayU.
pub const RESPONSE_BODY_MAX_BYTES: usize = 512 * 1024;
/// Longest per-request timeout accepted.
pub use crate::http::TIMEOUT_MS_MAX;
/// Default per-request timeout.
pub const TIMEOUT_MS_DEFAULT: u64 = 10_000;

/// Payer IP sent as `PSE_REFERENCE1` when the checkout did not send the customer's address.
pub const UNKNOWN_PAYER_IP: &str = "0.0.0.0";
/// Card franchise sent as `paymentMethod` when the token does not name one.
pub const DEFAULT_CARD_FRANCHISE: &str = "VISA";
pub(crate) const CARD_FRANCHISES: &[&str] = &["VISA", "MASTERCARD", "AMEX", "DINERS", "CODENSA"];
const PSE_DOCUMENT_TYPES: &[&str] = &["CC", "CE", "NIT", "TI", "PP", "IDC", "CEL", "RC", "DE"];

/// Everything the PayU adapter (and its verifier) need, as read from the
/// environment. Values are kept as given; [`PayuConfig::problems`] and
/// [`PayuProvider::new`] judge them.
#[derive(Debug, Clone)]
pub struct PayuConfig {
    /// `PAYU_BASE_URL`: scheme and host, e.g. `https://api.payulatam.com`; the
    /// `payments-api/4.0/service.cgi` and `reports-api/4.0/service.cgi` paths are appended.
    pub base_url: String,
    /// `PAYU_API_KEY` (secret).
    pub api_key: SecretString,
    /// `PAYU_API_LOGIN`.
    pub api_login: String,
    /// `PAYU_MERCHANT_ID`.
    pub merchant_id: String,
    /// `PAYU_ACCOUNT_ID`: the Colombian account.
    pub account_id: String,
    /// `PAYU_SIGNATURE_ALGORITHM`: `MD5` or `HMAC_SHA256`.
    pub signature_algorithm: String,
    /// `PAYU_SIGNATURE_SECRET` (secret): the HMAC-SHA256 key PayU issues for signatures
    /// (not the API key); unused with `MD5`.
    pub signature_secret: SecretString,
    /// `PAYU_NOTIFY_URL`: sent as `order.notifyUrl` when set (else PayU uses the confirmation
    /// URL configured in its panel).
    pub notify_url: Option<String>,
    /// Whole-request timeout in milliseconds.
    pub timeout_ms: u64,
}

impl Default for PayuConfig {
    /// The test defaults.
    fn default() -> Self {
        PayuConfig {
            base_url: test_defaults::BASE_URL.to_owned(),
            api_key: test_defaults::API_KEY.into(),
            api_login: test_defaults::API_LOGIN.to_owned(),
            merchant_id: test_defaults::MERCHANT_ID.to_owned(),
            account_id: test_defaults::ACCOUNT_ID.to_owned(),
            signature_algorithm: test_defaults::SIGNATURE_ALGORITHM.to_owned(),
            signature_secret: test_defaults::SIGNATURE_SECRET.into(),
            notify_url: None,
            timeout_ms: TIMEOUT_MS_DEFAULT,
        }
    }
}

impl PayuConfig {
    /// Reads `PAYU_*` from the environment; unset variables take the test defaults (a
    /// variable set to an empty string stays empty, and `problems` says so).
    pub fn from_env() -> Self {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Like [`PayuConfig::from_env`], reading variables through `lookup`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let defaults = PayuConfig::default();
        let read = |name: &str, default: String| lookup(name).unwrap_or(default);
        let read_secret =
            |name: &str, default: SecretString| lookup(name).map_or(default, SecretString::from);
        PayuConfig {
            base_url: read(ENV_BASE_URL, defaults.base_url),
            api_key: read_secret(ENV_API_KEY, defaults.api_key),
            api_login: read(ENV_API_LOGIN, defaults.api_login),
            merchant_id: read(ENV_MERCHANT_ID, defaults.merchant_id),
            account_id: read(ENV_ACCOUNT_ID, defaults.account_id),
            signature_algorithm: read(ENV_SIGNATURE_ALGORITHM, defaults.signature_algorithm),
            signature_secret: read_secret(ENV_SIGNATURE_SECRET, defaults.signature_secret),
            notify_url: lookup(ENV_NOTIFY_URL).filter(|u| !u.is_empty()),
            timeout_ms: defaults.timeout_ms,
        }
    }

    /// The configured signature algorithm.
    pub fn algorithm(&self) -> Result<SignatureAlgorithm, ProviderConfigError> {
        SignatureAlgorithm::from_str(&self.signature_algorithm).map_err(|e| ProviderConfigError {
            provider: PayuProvider::NAME,
            problem: e.to_string(),
        })
    }

    /// Every problem `payledger check-config --env production|test` reports for PayU, each
    /// naming the variable, never its value. PayU keys carry no test/live prefix: test values
    /// are recognised as payledger's `test_` defaults or PayU's published sandbox
    /// credentials, and the environment is told by the endpoint (`api.payulatam.com` is
    /// production, `sandbox.api.payulatam.com` is test).
    pub fn problems(&self, production: bool) -> Vec<String> {
        let mut problems = Vec::new();
        let is_test_value =
            |v: &str| v.starts_with("test_") || PAYU_PUBLIC_SANDBOX_VALUES.contains(&v);
        let algorithm = SignatureAlgorithm::from_str(&self.signature_algorithm).ok();

        let mut required = vec![
            (ENV_API_KEY, self.api_key.expose_secret(), true),
            (ENV_API_LOGIN, self.api_login.as_str(), false),
            (ENV_MERCHANT_ID, self.merchant_id.as_str(), false),
            (ENV_ACCOUNT_ID, self.account_id.as_str(), false),
        ];
        if algorithm != Some(SignatureAlgorithm::Md5) {
            required.push((
                ENV_SIGNATURE_SECRET,
                self.signature_secret.expose_secret(),
                true,
            ));
        }
        for (name, value, secret) in required {
            if value.trim().is_empty() {
                problems.push(format!("{name} is missing or empty"));
                continue;
            }
            if production && is_test_value(value) {
                problems.push(format!("{name} is a test value, not valid in production"));
            }
            if secret && value.chars().count() < SECRET_LEN_MIN {
                problems.push(format!(
                    "{name} is shorter than {SECRET_LEN_MIN} characters"
                ));
            }
        }
        for (name, value) in [
            (ENV_MERCHANT_ID, self.merchant_id.as_str()),
            (ENV_ACCOUNT_ID, self.account_id.as_str()),
        ] {
            if !value.is_empty() && !value.bytes().all(|b| b.is_ascii_digit()) {
                problems.push(format!("{name} must be PayU's numeric id"));
            }
        }
        if algorithm.is_none() {
            problems.push(format!(
                "{ENV_SIGNATURE_ALGORITHM} must be MD5 or HMAC_SHA256"
            ));
        }

        match Url::parse(&self.base_url) {
            Err(_) => problems.push(format!("{ENV_BASE_URL} is missing or not a URL")),
            Ok(url) => {
                if !matches!(url.scheme(), "http" | "https") {
                    problems.push(format!("{ENV_BASE_URL} must be an https URL"));
                } else if production && url.scheme() != "https" {
                    problems.push(format!(
                        "{ENV_BASE_URL} uses plain http; production requires https"
                    ));
                }
                let host = url.host_str().unwrap_or_default();
                if production && host.eq_ignore_ascii_case(PAYU_SANDBOX_HOST) {
                    problems.push(format!(
                        "{ENV_BASE_URL} points at PayU's sandbox, not valid in production"
                    ));
                }
                if !production && host.eq_ignore_ascii_case(PAYU_PRODUCTION_HOST) {
                    problems.push(format!(
                        "{ENV_BASE_URL} points at PayU's production API in a test environment"
                    ));
                }
            }
        }
        if let Some(notify) = &self.notify_url {
            match Url::parse(notify) {
                Ok(url) if url.scheme() == "https" => {}
                Ok(url) if url.scheme() == "http" && !production => {}
                Ok(_) if production => problems.push(format!(
                    "{ENV_NOTIFY_URL} uses plain http; production requires https"
                )),
                _ => problems.push(format!("{ENV_NOTIFY_URL} is not an http(s) URL")),
            }
        }
        if self.timeout_ms == 0 || self.timeout_ms > TIMEOUT_MS_MAX {
            problems.push(format!(
                "PayU timeout must be between 1 and {TIMEOUT_MS_MAX} ms"
            ));
        }
        problems
    }
}

/// The PayU Latam adapter.
#[derive(Debug)]
pub struct PayuProvider {
    http: reqwest::Client,
    payments_url: Url,
    reports_url: Url,
    api_key: SecretString,
    api_login: String,
    merchant_id: String,
    account_id: String,
    algorithm: SignatureAlgorithm,
    signature_secret: SecretString,
    notify_url: Option<String>,
    timeout_ms: u64,
}

impl PayuProvider {
    pub const NAME: &'static str = "payu";

    pub fn new(config: PayuConfig) -> Result<Self, ProviderConfigError> {
        let invalid = |problem: &str| ProviderConfigError {
            provider: Self::NAME,
            problem: problem.to_owned(),
        };
        let base_url =
            Url::parse(&config.base_url).map_err(|_| invalid("PAYU_BASE_URL is not a URL"))?;
        if !matches!(base_url.scheme(), "http" | "https") {
            return Err(invalid("PAYU_BASE_URL must be http or https"));
        }
        if base_url.cannot_be_a_base()
            || base_url.query().is_some()
            || base_url.fragment().is_some()
            || !base_url.username().is_empty()
            || base_url.password().is_some()
        {
            return Err(invalid(
                "PAYU_BASE_URL must be a plain base URL (no credentials, query or fragment)",
            ));
        }
        let join = |segments: &[&str]| -> Result<Url, ProviderConfigError> {
            let mut url = base_url.clone();
            url.path_segments_mut()
                .map_err(|_| invalid("PAYU_BASE_URL cannot take a path"))?
                .pop_if_empty()
                .extend(segments);
            Ok(url)
        };
        let payments_url = join(&["payments-api", "4.0", "service.cgi"])?;
        let reports_url = join(&["reports-api", "4.0", "service.cgi"])?;
        let algorithm = config.algorithm()?;
        for (name, value) in [
            (ENV_API_KEY, config.api_key.expose_secret()),
            (ENV_API_LOGIN, config.api_login.as_str()),
            (ENV_MERCHANT_ID, config.merchant_id.as_str()),
            (ENV_ACCOUNT_ID, config.account_id.as_str()),
        ] {
            if value.trim().is_empty() {
                return Err(invalid(&format!("{name} is empty")));
            }
        }
        if algorithm == SignatureAlgorithm::HmacSha256
            && config.signature_secret.expose_secret().is_empty()
        {
            return Err(invalid(
                "PAYU_SIGNATURE_SECRET is empty (required with HMAC_SHA256)",
            ));
        }
        if let Some(notify) = &config.notify_url {
            let ok = Url::parse(notify).is_ok_and(|u| matches!(u.scheme(), "http" | "https"));
            if !ok {
                return Err(invalid("PAYU_NOTIFY_URL is not an http(s) URL"));
            }
        }
        let http = crate::http::provider_client(config.timeout_ms).map_err(invalid)?;
        Ok(PayuProvider {
            http,
            payments_url,
            reports_url,
            api_key: config.api_key,
            api_login: config.api_login,
            merchant_id: config.merchant_id,
            account_id: config.account_id,
            algorithm,
            signature_secret: config.signature_secret,
            notify_url: config.notify_url,
            timeout_ms: config.timeout_ms,
        })
    }

    pub(crate) fn merchant(&self) -> Merchant<'_> {
        Merchant {
            api_key: self.api_key.expose_secret(),
            api_login: &self.api_login,
        }
    }

    fn envelope<'a, T: Serialize>(&'a self, command: &'static str) -> Envelope<'a, T> {
        Envelope {
            language: "es",
            command,
            merchant: self.merchant(),
            transaction: None,
            details: None,
            bank_list_information: None,
            test: false,
        }
    }

    /// One order with all its transactions (`ORDER_DETAIL`).
    async fn order_detail(&self, order_id: u64) -> Result<OrderPayload, ProviderError> {
        let mut body = self.envelope::<()>("ORDER_DETAIL");
        body.details = Some(Details {
            order_id: Some(order_id),
            reference_code: None,
        });
        let raw = self.call(self.reports_url.clone(), &body).await?;
        let payload = self
            .report_payload(&raw)?
            .ok_or_else(|| ProviderError::rejected("PayU has no such order"))?;
        let order: OrderPayload = self.decode(payload.get().as_bytes())?;
        if order.id.as_id() != Some(order_id) {
            return Err(ProviderError::server_error(
                "PayU answered with another order",
            ));
        }
        Ok(order)
    }

    /// A create PayU refused counts as refused only while PayU holds no order of the payment:
    /// an account that validates unique references refuses the repeat of a create an earlier
    /// send already made, and that order is the payment's.
    async fn refused_create(
        &self,
        request: &CreateTransaction,
        refusal: ProviderError,
    ) -> Result<ProviderTransaction, ProviderError> {
        match self
            .find_transaction(request.payment_id, &request.reference)
            .await
        {
            Ok(Some(held)) if held.amount == request.amount => Ok(held),
            Ok(_) => Err(refusal),
            Err(lookup) if lookup.outcome() == CallOutcome::Refused => Err(refusal),
            // Whether an earlier send made the order is unknown: never a refusal then.
            Err(lookup) => Err(ProviderError::new(
                lookup.kind,
                format!(
                    "{}; and asking PayU for an earlier order failed: {}",
                    refusal.detail, lookup.detail
                ),
            )),
        }
    }

    /// The refund `refund_id` PayU already made on `transaction_id`, read from the order's own
    /// record: `Ok(None)` when there is none yet.
    async fn earlier_refund(
        &self,
        order_id: u64,
        transaction_id: &str,
        refund_id: RefundId,
        amount: Money,
    ) -> Result<Option<String>, ProviderError> {
        let order = self.order_detail(order_id).await?;
        let key = refund_id.to_string();
        let Some(made) = order.transactions.iter().find(|t| {
            t.kind.as_deref() == Some("REFUND")
                && t.parent_transaction_id
                    .as_deref()
                    .is_none_or(|p| p == transaction_id)
                && t.reason.as_deref().is_some_and(|r| r.contains(&key))
        }) else {
            return Ok(None);
        };
        let made_amount = match made
            .additional_values
            .as_ref()
            .and_then(|a| a.tx_value.as_ref())
        {
            Some(value) => Some(value.money()?),
            None => None,
        };
        if made_amount.is_some_and(|m| m != amount) {
            return Err(ProviderError::rejected(
                "PayU made this refund for another amount",
            ));
        }
        let response = made.transaction_response.as_ref().ok_or_else(|| {
            ProviderError::server_error("PayU answered a refund without its response")
        })?;
        let answer = TxResponse {
            transaction_id: Some(made.id.clone()),
            state: response.state.clone(),
            response_code: response.response_code.clone(),
            ..TxResponse::default()
        };
        operation_result(&answer, "refund").map(Some)
    }

    /// Sends one command and returns the body of a 2xx answer whose top-level `code` is
    /// `SUCCESS`; everything else is an error.
    async fn call<T: Serialize>(&self, url: Url, body: &T) -> Result<Vec<u8>, ProviderError> {
        let payload = serde_json::to_vec(body)
            .map_err(|_| ProviderError::rejected("cannot serialize the PayU request"))?;
        let response = self
            .http
            .post(url)
            .header(ACCEPT, HeaderValue::from_static("application/json"))
            .header(
                CONTENT_TYPE,
                HeaderValue::from_static("application/json; charset=utf-8"),
            )
            .body(payload)
            .send()
            .await
            .map_err(|e| self.transport_error(e))?;
        let status = response.status();
        let raw = self.read_body(response).await?;
        if !status.is_success() {
            let detail = self.scrub(&format!(
                "PayU answered {}: {}",
                status.as_u16(),
                error_summary(&raw)
            ));
            return Err(if status.is_client_error() {
                ProviderError::rejected(detail)
            } else {
                ProviderError::server_error(detail)
            });
        }
        let head: Head = self.decode(&raw)?;
        match head.code.as_str() {
            "SUCCESS" => Ok(raw),
            "ERROR" => Err(ProviderError::rejected(self.scrub(&format!(
                "PayU refused the request: {}",
                sanitize(head.error.as_deref().unwrap_or("no error text"), 200)
            )))),
            _ => Err(ProviderError::server_error(
                "PayU answered with an unknown response code",
            )),
        }
    }

    /// One command to the payments API (`service.cgi`), as [`PayuProvider::call`].
    pub(crate) async fn payments_call<T: Serialize>(
        &self,
        body: &T,
    ) -> Result<Vec<u8>, ProviderError> {
        self.call(self.payments_url.clone(), body).await
    }

    /// A `SUCCESS` answer's body as `T`.
    pub(crate) fn decode_answer<T: for<'de> Deserialize<'de>>(
        &self,
        body: &[u8],
    ) -> Result<T, ProviderError> {
        self.decode(body)
    }

    async fn read_body(&self, response: reqwest::Response) -> Result<Vec<u8>, ProviderError> {
        crate::http::read_body("PayU", response, RESPONSE_BODY_MAX_BYTES, |e| {
            self.transport_error(e)
        })
        .await
    }

    fn transport_error(&self, error: reqwest::Error) -> ProviderError {
        crate::http::transport_error("PayU", error, self.timeout_ms, |t| self.scrub(t))
    }

    /// The detail ends up in events and logs: never the API key or the signature secret,
    /// whatever a server or a library put in a message.
    fn scrub(&self, text: &str) -> String {
        crate::http::scrub(
            text,
            [
                self.api_key.expose_secret(),
                self.signature_secret.expose_secret(),
            ],
        )
    }

    fn decode<T: for<'de> Deserialize<'de>>(&self, body: &[u8]) -> Result<T, ProviderError> {
        crate::http::decode("PayU", body)
    }

    /// `result.payload` of a Queries API answer (`None` when PayU found nothing).
    fn report_payload(&self, raw: &[u8]) -> Result<Option<Box<RawValue>>, ProviderError> {
        let answer: ReportAnswer = self.decode(raw)?;
        Ok(answer
            .result
            .and_then(|r| r.payload)
            .filter(|p| p.get().trim() != "null"))
    }

    async fn submit(&self, transaction: TransactionBody<'_>) -> Result<TxResponse, ProviderError> {
        let mut body = self.envelope("SUBMIT_TRANSACTION");
        body.transaction = Some(transaction);
        let raw = self.call(self.payments_url.clone(), &body).await?;
        let answer: PaymentAnswer = self.decode(&raw)?;
        answer
            .transaction_response
            .ok_or_else(|| ProviderError::server_error("PayU answered without a transaction"))
    }

    fn payment_body<'a>(
        &'a self,
        request: &'a CreateTransaction,
        reference: &'a str,
        tx_value: &'a str,
        signature: String,
    ) -> Result<TransactionBody<'a>, ProviderError> {
        let currency = request.amount.currency().code();
        let value = RawValue::from_string(tx_value.to_owned())
            .map_err(|_| ProviderError::rejected("cannot write the amount"))?;
        let email = crate::provider::exposed(&request.customer_email);
        let customer = &request.customer;
        // PSE names the payer's document in its own fields; other methods take the one the
        // checkout sent, if any.
        let dni_number = match &request.method {
            PaymentMethodDetails::Pse { user_legal_id, .. } => Some(user_legal_id.expose_secret()),
            _ => exposed(&customer.document_number),
        };
        let person = Person {
            email_address: email,
            full_name: exposed(&customer.full_name),
            contact_phone: exposed(&customer.phone),
            dni_number,
        };
        let person = (!person.is_empty()).then_some(person);
        let kind = match (request.method.kind(), request.capture_mode) {
            (PaymentMethodType::Card, CaptureMode::Manual) => "AUTHORIZATION",
            (_, CaptureMode::Manual) => {
                return Err(ProviderError::rejected(
                    "PayU takes manual capture for cards only",
                ))
            }
            (_, CaptureMode::Automatic) => "AUTHORIZATION_AND_CAPTURE",
        };
        let mut body = TransactionBody {
            order: Some(OrderBody {
                id: None,
                account_id: Some(&self.account_id),
                reference_code: Some(reference),
                description: Some(description(&request.reference)),
                language: Some("es"),
                signature: Some(signature),
                notify_url: self.notify_url.as_deref(),
                additional_values: Some(AdditionalValues {
                    tx_value: AmountBody { value, currency },
                }),
                buyer: person.clone(),
            }),
            payer: person,
            kind,
            payment_method: None,
            payment_country: Some("CO"),
            credit_card_token_id: None,
            parent_transaction_id: None,
            reason: None,
            additional_values: None,
            extra_parameters: ExtraParameters::default(),
            device: Device {
                ip_address: customer
                    .ip_address
                    .as_ref()
                    .map(|ip| ip.expose_secret().0.to_string()),
                user_agent: exposed(&customer.user_agent),
                device_session_id: exposed(&customer.device_session_id),
            },
        };
        match &request.method {
            PaymentMethodDetails::Card { token } => {
                let (franchise, token) = card_token(token.expose_secret())?;
                charge_card(&mut body, &request.amount, franchise, token)?;
            }
            // A saved card is the card flow with the token PayU keeps for the customer.
            PaymentMethodDetails::Saved {
                method: PaymentMethodType::Card,
                source_id,
                ..
            } => {
                let source = TokenSource::parse(source_id.expose_secret())?;
                charge_card(
                    &mut body,
                    &request.amount,
                    source.franchise,
                    source.token_id,
                )?;
            }
            PaymentMethodDetails::Efecty => {
                body.payment_method = Some("EFECTY");
            }
            PaymentMethodDetails::Pse {
                financial_institution_code,
                user_type,
                user_legal_id_type,
                user_legal_id,
            } => {
                let response_url = request.return_url.as_deref().ok_or_else(|| {
                    ProviderError::rejected("PSE through PayU needs a return_url")
                })?;
                let user_type = match user_type {
                    0 => "N",
                    1 => "J",
                    _ => return Err(ProviderError::rejected("PSE user_type must be 0 or 1")),
                };
                if !PSE_DOCUMENT_TYPES.contains(&user_legal_id_type.as_str()) {
                    return Err(ProviderError::rejected(
                        "PSE user_legal_id_type is not a PSE document type",
                    ));
                }
                if financial_institution_code.is_empty() || financial_institution_code == "0" {
                    return Err(ProviderError::rejected("PSE needs a bank"));
                }
                body.payment_method = Some("PSE");
                body.extra_parameters.financial_institution_code = Some(financial_institution_code);
                body.extra_parameters.user_type = Some(user_type);
                // PSE_REFERENCE1 is the payer's IP address.
                body.extra_parameters.pse_reference1 = Some(
                    body.device
                        .ip_address
                        .clone()
                        .unwrap_or_else(|| UNKNOWN_PAYER_IP.to_owned()),
                );
                body.extra_parameters.pse_reference2 = Some(user_legal_id_type);
                body.extra_parameters.pse_reference3 = Some(user_legal_id.expose_secret());
                body.extra_parameters.response_url = Some(response_url);
            }
            other => {
                return Err(ProviderError::rejected(format!(
                    "PayU does not take {}",
                    other.kind().as_str()
                )))
            }
        }
        Ok(body)
    }
}

#[async_trait]
impl PaymentProvider for PayuProvider {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn payment_methods(&self) -> &'static [PaymentMethodType] {
        &[
            PaymentMethodType::Card,
            PaymentMethodType::Efecty,
            PaymentMethodType::Pse,
        ]
    }

    fn currencies(&self) -> &'static [Currency] {
        &[Currency::COP]
    }

    async fn pse_banks(&self) -> Result<Vec<PseBank>, ProviderError> {
        let mut body = self.envelope::<()>("GET_BANKS_LIST");
        body.bank_list_information = Some(BankListInformation {
            payment_method: "PSE",
            payment_country: "CO",
        });
        let raw = self.call(self.payments_url.clone(), &body).await?;
        let answer: BanksAnswer = self.decode(&raw)?;
        Ok(answer
            .banks
            .into_iter()
            // PayU's list starts with a "select your bank" entry whose code is "0".
            .filter(|b| !b.pse_code.is_empty() && b.pse_code != "0")
            .map(|b| PseBank {
                code: sanitize(&b.pse_code, 16),
                name: sanitize(&b.description, 128),
            })
            .collect())
    }

    async fn create_transaction(
        &self,
        request: &CreateTransaction,
    ) -> Result<ProviderTransaction, ProviderError> {
        if request.amount.currency() != Currency::COP {
            return Err(ProviderError::rejected("PayU Colombia settles COP only"));
        }
        let reference = request.payment_id.to_string();
        let tx_value = amount_text(&request.amount);
        let currency = request.amount.currency().code();
        let signature = sign(
            self.algorithm,
            self.signature_secret.expose_secret().as_bytes(),
            &request_message(
                self.api_key.expose_secret(),
                &self.merchant_id,
                &reference,
                &tx_value,
                currency,
            ),
        );
        let body = self.payment_body(request, &reference, &tx_value, signature)?;
        let answer = match self.submit(body).await {
            Ok(answer) => answer,
            Err(error) if error.outcome() == CallOutcome::Refused => {
                return self.refused_create(request, error).await
            }
            Err(error) => return Err(error),
        };
        let order_id = answer
            .order_id
            .as_ref()
            .and_then(NumOrText::as_id)
            .ok_or_else(|| ProviderError::server_error("PayU answered without an order id"))?;
        let transaction_id = answer
            .transaction_id
            .clone()
            .filter(|t| valid_transaction_id(t))
            .ok_or_else(|| {
                ProviderError::server_error("PayU answered without a valid transaction id")
            })?;
        let authorization = request.capture_mode == CaptureMode::Manual;
        let status = payment_status(&answer, authorization)?;
        let next_action = match (&status, request.method.kind()) {
            (ProviderTransactionStatus::Pending, PaymentMethodType::Pse) => {
                Some(bank_redirect(answer.extra_parameters.as_ref())?)
            }
            (ProviderTransactionStatus::Pending, PaymentMethodType::Efecty) => {
                Some(cash_code(answer.extra_parameters.as_ref())?)
            }
            _ => None,
        };
        let zero = Money::zero(request.amount.currency());
        let captured = if status == ProviderTransactionStatus::Approved {
            request.amount
        } else {
            zero
        };
        Ok(ProviderTransaction {
            id: format!("{order_id}:{transaction_id}"),
            payment_id: request.payment_id,
            status,
            amount: request.amount,
            captured_amount: captured,
            refunded_amount: zero,
            next_action,
        })
    }

    fn supports_lookup(&self) -> bool {
        true
    }

    /// PayU knows the payment by our id (the order's `referenceCode`); the merchant's
    /// reference only travels in the description.
    async fn find_transaction(
        &self,
        payment_id: PaymentId,
        _reference: &str,
    ) -> Result<Option<ProviderTransaction>, ProviderError> {
        let reference = payment_id.to_string();
        let mut body = self.envelope::<()>("ORDER_DETAIL_BY_REFERENCE_CODE");
        body.details = Some(Details {
            order_id: None,
            reference_code: Some(&reference),
        });
        let raw = self.call(self.reports_url.clone(), &body).await?;
        let Some(payload) = self.report_payload(&raw)? else {
            return Ok(None);
        };
        let orders: Vec<OrderPayload> = self.decode(payload.get().as_bytes())?;
        payment_order(orders, payment_id)
    }

    async fn get_transaction(
        &self,
        provider_transaction_id: &str,
    ) -> Result<ProviderTransaction, ProviderError> {
        let (order_id, transaction_id) = split_id(provider_transaction_id)?;
        self.order_detail(order_id)
            .await?
            .into_transaction(transaction_id)
    }

    async fn capture(
        &self,
        provider_transaction_id: &str,
        _capture_id: CaptureId,
        amount: Money,
    ) -> Result<(), ProviderError> {
        let (order_id, transaction_id) = split_id(provider_transaction_id)?;
        let body = operation_body(order_id, transaction_id, "CAPTURE", Some(amount), None)?;
        let answer = self.submit(body).await?;
        operation_result(&answer, "capture").map(|_| ())
    }

    async fn void(&self, provider_transaction_id: &str) -> Result<(), ProviderError> {
        let (order_id, transaction_id) = split_id(provider_transaction_id)?;
        let body = operation_body(order_id, transaction_id, "VOID", None, None)?;
        let answer = self.submit(body).await?;
        operation_result(&answer, "void").map(|_| ())
    }

    async fn refund(
        &self,
        provider_transaction_id: &str,
        refund_id: RefundId,
        amount: Money,
    ) -> Result<ProviderRefund, ProviderError> {
        let (order_id, transaction_id) = split_id(provider_transaction_id)?;
        // No refund idempotency at PayU: a refund its order record holds for this id is the answer.
        if let Some(id) = self
            .earlier_refund(order_id, transaction_id, refund_id, amount)
            .await?
        {
            return Ok(ProviderRefund { id });
        }
        let reason = format!("payledger refund {refund_id}");
        let body = operation_body(
            order_id,
            transaction_id,
            "REFUND",
            Some(amount),
            Some(reason),
        )?;
        let answer = self.submit(body).await?;
        let id = operation_result(&answer, "refund")?;
        Ok(ProviderRefund { id })
    }

    async fn health(&self) -> Result<(), ProviderError> {
        let body = self.envelope::<()>("PING");
        self.call(self.payments_url.clone(), &body).await?;
        Ok(())
    }

    fn saved_method_types(&self) -> &'static [PaymentMethodType] {
        &[PaymentMethodType::Card]
    }

    /// Checks the checkout's PayU card token (see [`crate::payu::tokens`]).
    async fn save_method(&self, request: &SaveMethod) -> Result<SavedSource, ProviderError> {
        self.save_token(request).await
    }

    async fn remove_method(&self, source_id: &str) -> Result<(), ProviderError> {
        self.remove_token(source_id).await
    }
}

// ---------------------------------------------------------------------------------------------
// Wire shapes (requests)
// ---------------------------------------------------------------------------------------------

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Merchant<'a> {
    api_key: &'a str,
    api_login: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Envelope<'a, T: Serialize> {
    language: &'static str,
    command: &'static str,
    merchant: Merchant<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    transaction: Option<T>,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<Details<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bank_list_information: Option<BankListInformation>,
    test: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Details<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    order_id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reference_code: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct BankListInformation {
    payment_method: &'static str,
    payment_country: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TransactionBody<'a> {
    order: Option<OrderBody<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    payer: Option<Person<'a>>,
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    payment_method: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    payment_country: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    credit_card_token_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parent_transaction_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    additional_values: Option<AdditionalValues>,
    #[serde(skip_serializing_if = "ExtraParameters::is_empty")]
    extra_parameters: ExtraParameters<'a>,
    #[serde(flatten)]
    device: Device<'a>,
}

/// What PayU's anti-fraud checks want to know of the customer's browser.
#[derive(Serialize, Default)]
#[serde(rename_all = "camelCase")]
struct Device<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    ip_address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_agent: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    device_session_id: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OrderBody<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    account_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reference_code: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    language: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    signature: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    notify_url: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    additional_values: Option<AdditionalValues>,
    #[serde(skip_serializing_if = "Option::is_none")]
    buyer: Option<Person<'a>>,
}

#[derive(Serialize, Clone)]
#[serde(rename_all = "camelCase")]
struct Person<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    email_address: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    full_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    contact_phone: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dni_number: Option<&'a str>,
}

impl Person<'_> {
    fn is_empty(&self) -> bool {
        self.email_address.is_none()
            && self.full_name.is_none()
            && self.contact_phone.is_none()
            && self.dni_number.is_none()
    }
}

#[derive(Serialize)]
struct AdditionalValues {
    #[serde(rename = "TX_VALUE")]
    tx_value: AmountBody,
}

#[derive(Serialize)]
struct AmountBody {
    /// A JSON number, written from the exact decimal text.
    value: Box<RawValue>,
    currency: &'static str,
}

#[derive(Serialize, Default)]
struct ExtraParameters<'a> {
    #[serde(
        rename = "INSTALLMENTS_NUMBER",
        skip_serializing_if = "Option::is_none"
    )]
    installments_number: Option<u32>,
    #[serde(
        rename = "FINANCIAL_INSTITUTION_CODE",
        skip_serializing_if = "Option::is_none"
    )]
    financial_institution_code: Option<&'a str>,
    #[serde(rename = "USER_TYPE", skip_serializing_if = "Option::is_none")]
    user_type: Option<&'static str>,
    #[serde(rename = "PSE_REFERENCE1", skip_serializing_if = "Option::is_none")]
    pse_reference1: Option<String>,
    #[serde(rename = "PSE_REFERENCE2", skip_serializing_if = "Option::is_none")]
    pse_reference2: Option<&'a str>,
    #[serde(rename = "PSE_REFERENCE3", skip_serializing_if = "Option::is_none")]
    pse_reference3: Option<&'a str>,
    #[serde(rename = "RESPONSE_URL", skip_serializing_if = "Option::is_none")]
    response_url: Option<&'a str>,
}

impl ExtraParameters<'_> {
    fn is_empty(&self) -> bool {
        self.installments_number.is_none()
            && self.financial_institution_code.is_none()
            && self.user_type.is_none()
            && self.pse_reference1.is_none()
            && self.pse_reference2.is_none()
            && self.pse_reference3.is_none()
            && self.response_url.is_none()
    }
}

fn operation_body<'a>(
    order_id: u64,
    parent: &'a str,
    kind: &'static str,
    amount: Option<Money>,
    reason: Option<String>,
) -> Result<TransactionBody<'a>, ProviderError> {
    let additional_values = match amount {
        Some(amount) => Some(AdditionalValues {
            tx_value: AmountBody {
                value: RawValue::from_string(amount_text(&amount))
                    .map_err(|_| ProviderError::rejected("cannot write the amount"))?,
                currency: amount.currency().code(),
            },
        }),
        None => None,
    };
    Ok(TransactionBody {
        order: Some(OrderBody {
            id: Some(order_id),
            account_id: None,
            reference_code: None,
            description: None,
            language: None,
            signature: None,
            notify_url: None,
            additional_values: None,
            buyer: None,
        }),
        payer: None,
        kind,
        payment_method: None,
        payment_country: None,
        credit_card_token_id: None,
        parent_transaction_id: Some(parent),
        reason,
        additional_values,
        extra_parameters: ExtraParameters::default(),
        device: Device::default(),
    })
}

// ---------------------------------------------------------------------------------------------
// Wire shapes (answers); unknown fields are ignored
// ---------------------------------------------------------------------------------------------

#[derive(Deserialize)]
struct Head {
    code: String,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PaymentAnswer {
    #[serde(default)]
    transaction_response: Option<TxResponse>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct TxResponse {
    #[serde(default)]
    order_id: Option<NumOrText>,
    #[serde(default)]
    transaction_id: Option<String>,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    response_code: Option<String>,
    #[serde(default)]
    extra_parameters: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Deserialize)]
struct BanksAnswer {
    #[serde(default)]
    banks: Vec<BankEntry>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BankEntry {
    #[serde(default)]
    description: String,
    #[serde(default)]
    pse_code: String,
}

#[derive(Deserialize)]
struct ReportAnswer {
    #[serde(default)]
    result: Option<ReportResult>,
}

#[derive(Deserialize)]
struct ReportResult {
    #[serde(default)]
    payload: Option<Box<RawValue>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OrderPayload {
    id: NumOrText,
    reference_code: String,
    #[serde(default)]
    additional_values: Option<AmountsIn>,
    #[serde(default)]
    transactions: Vec<TxPayload>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TxPayload {
    id: String,
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    parent_transaction_id: Option<String>,
    #[serde(default)]
    transaction_response: Option<TxResponse>,
    #[serde(default)]
    additional_values: Option<AmountsIn>,
    #[serde(default)]
    extra_parameters: Option<serde_json::Map<String, serde_json::Value>>,
    /// Refunds: the reason they were asked with (payledger's carries the refund id).
    #[serde(default)]
    reason: Option<String>,
}

#[derive(Deserialize)]
struct AmountsIn {
    #[serde(rename = "TX_VALUE", default)]
    tx_value: Option<AmountIn>,
}

#[derive(Deserialize)]
struct AmountIn {
    /// Read as raw JSON so the decimal never passes through a float.
    value: Box<RawValue>,
    currency: String,
}

impl AmountIn {
    fn money(&self) -> Result<Money, ProviderError> {
        let bad = || ProviderError::server_error("PayU answered an invalid amount");
        let currency = Currency::from_str(&self.currency).map_err(|_| bad())?;
        let text = raw_number_text(&self.value).ok_or_else(bad)?;
        Money::parse(&text, currency).map_err(|_| bad())
    }
}

/// PayU writes ids and references sometimes as numbers, sometimes as strings.
#[derive(Deserialize, Clone, Debug)]
#[serde(untagged)]
enum NumOrText {
    Num(u64),
    Text(String),
}

impl NumOrText {
    fn as_id(&self) -> Option<u64> {
        match self {
            NumOrText::Num(n) => Some(*n),
            NumOrText::Text(t) if !t.is_empty() && t.len() <= 20 => t.parse().ok(),
            NumOrText::Text(_) => None,
        }
    }
}

impl OrderPayload {
    /// The payment transaction `transaction_id` of this order, with what later
    /// captures, voids and refunds of it did.
    fn into_transaction(self, transaction_id: &str) -> Result<ProviderTransaction, ProviderError> {
        let bad = |what: &str| ProviderError::server_error(format!("PayU answered {what}"));
        let order_id = self.id.as_id().ok_or_else(|| bad("an invalid order id"))?;
        let payment_id =
            PaymentId::from_str(&self.reference_code).map_err(|_| bad("another reference"))?;
        let amount = self
            .additional_values
            .as_ref()
            .and_then(|a| a.tx_value.as_ref())
            .ok_or_else(|| bad("an order without its value"))?
            .money()?;
        let payment = self
            .transactions
            .iter()
            .find(|t| t.id == transaction_id)
            .ok_or_else(|| bad("an order without the transaction"))?;
        let response = payment.transaction_response.as_ref().ok_or_else(|| {
            ProviderError::server_error("PayU answered a transaction without its response")
        })?;
        let authorization = payment.kind.as_deref() == Some("AUTHORIZATION");
        let mut status = payment_status(response, authorization)?;
        let zero = Money::zero(amount.currency());
        let mut captured = if status == ProviderTransactionStatus::Approved {
            amount
        } else {
            zero
        };
        let mut refunded = zero;
        let operations = self.transactions.iter().filter(|t| {
            t.id != transaction_id
                && t.parent_transaction_id
                    .as_deref()
                    .is_none_or(|p| p == transaction_id)
        });
        for op in operations {
            let approved = op
                .transaction_response
                .as_ref()
                .and_then(|r| r.state.as_deref())
                == Some("APPROVED");
            if !approved {
                continue;
            }
            let op_amount = match op
                .additional_values
                .as_ref()
                .and_then(|a| a.tx_value.as_ref())
            {
                Some(value) => Some(value.money()?),
                None => None,
            };
            match op.kind.as_deref() {
                Some("CAPTURE") => {
                    status = ProviderTransactionStatus::Approved;
                    captured = op_amount.unwrap_or(amount);
                }
                Some("VOID") => status = ProviderTransactionStatus::Voided,
                Some("REFUND") => {
                    let left = captured.checked_sub(refunded).unwrap_or(zero);
                    refunded = refunded
                        .checked_add(op_amount.unwrap_or(left))
                        .map_err(|_| bad("refunds in another currency"))?;
                }
                _ => {}
            }
        }
        let next_action = if status == ProviderTransactionStatus::Pending {
            let extra = payment
                .extra_parameters
                .as_ref()
                .or(response.extra_parameters.as_ref());
            bank_redirect(extra).or_else(|_| cash_code(extra)).ok()
        } else {
            None
        };
        Ok(ProviderTransaction {
            id: format!("{order_id}:{transaction_id}"),
            payment_id,
            status,
            amount,
            captured_amount: captured,
            refunded_amount: refunded,
            next_action,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// `TX_VALUE.value` text: `65000` when there are no cents, else two decimals (`150.25`,
/// `150.20`). The same text is signed.
pub fn amount_text(amount: &Money) -> String {
    let value = amount.amount();
    if value.fract().is_zero() {
        value.trunc().normalize().to_string()
    } else {
        value.to_string()
    }
}

/// `FRANCHISE:token` names the card franchise PayU needs as `paymentMethod`; a bare token is
/// sent as [`DEFAULT_CARD_FRANCHISE`].
pub(crate) fn card_token(token: &str) -> Result<(&str, &str), ProviderError> {
    let (franchise, token) = match token.split_once(':') {
        Some((franchise, rest)) if CARD_FRANCHISES.contains(&franchise) => (franchise, rest),
        _ => (DEFAULT_CARD_FRANCHISE, token),
    };
    let valid = !token.is_empty()
        && token.len() <= 128
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if valid {
        Ok((franchise, token))
    } else {
        Err(ProviderError::rejected("invalid PayU card token"))
    }
}

/// A card payment: PayU's `creditCardTokenId` with its franchise as `paymentMethod`.
fn charge_card<'a>(
    body: &mut TransactionBody<'a>,
    amount: &Money,
    franchise: &'a str,
    token: &'a str,
) -> Result<(), ProviderError> {
    if amount.currency() == Currency::COP && !amount.amount().fract().is_zero() {
        return Err(ProviderError::rejected(
            "PayU takes card amounts in COP without cents",
        ));
    }
    body.payment_method = Some(franchise);
    body.credit_card_token_id = Some(token);
    body.extra_parameters.installments_number = Some(1);
    Ok(())
}

fn description(reference: &str) -> String {
    let text: String = format!("payledger {reference}")
        .chars()
        .filter(|c| !c.is_control())
        .take(255)
        .collect();
    text
}

/// Maps a payment transaction's answer (create or query) to our status.
fn payment_status(
    response: &TxResponse,
    authorization: bool,
) -> Result<ProviderTransactionStatus, ProviderError> {
    let reason = |fallback: &str| {
        sanitize(
            response
                .response_code
                .as_deref()
                .filter(|r| !r.is_empty())
                .unwrap_or(fallback),
            128,
        )
    };
    Ok(match response.state.as_deref() {
        Some("APPROVED") if authorization => ProviderTransactionStatus::Authorized,
        Some("APPROVED") => ProviderTransactionStatus::Approved,
        Some("PENDING") | Some("SUBMITTED") => ProviderTransactionStatus::Pending,
        Some("DECLINED") => {
            let reason = reason("DECLINED");
            if reason == "ABANDONED_TRANSACTION" {
                ProviderTransactionStatus::Failed { reason }
            } else {
                ProviderTransactionStatus::Declined { reason }
            }
        }
        Some("ERROR") => ProviderTransactionStatus::Failed {
            reason: reason("ERROR"),
        },
        Some("EXPIRED") => ProviderTransactionStatus::Expired,
        _ => {
            return Err(ProviderError::server_error(
                "PayU answered an unknown transaction state",
            ))
        }
    })
}

/// The transaction of `payment_id` among the orders PayU listed for its reference. PayU keeps
/// every order sent with a reference: the newest one that holds or took the money is the
/// payment's (any other one that took money comes back by confirmation, as an orphan).
fn payment_order(
    orders: Vec<OrderPayload>,
    payment_id: PaymentId,
) -> Result<Option<ProviderTransaction>, ProviderError> {
    let mut chosen: Option<((bool, u64), OrderPayload, String)> = None;
    for order in orders {
        if PaymentId::from_str(&order.reference_code).ok() != Some(payment_id) {
            continue;
        }
        let order_id = order
            .id
            .as_id()
            .ok_or_else(|| ProviderError::server_error("PayU answered an invalid order id"))?;
        let payment = order
            .transactions
            .iter()
            .rev()
            .find(|t| {
                matches!(
                    t.kind.as_deref(),
                    Some("AUTHORIZATION") | Some("AUTHORIZATION_AND_CAPTURE")
                )
            })
            .ok_or_else(|| {
                ProviderError::server_error(
                    "PayU holds an order of the payment without its payment transaction",
                )
            })?;
        let live = matches!(
            payment
                .transaction_response
                .as_ref()
                .and_then(|r| r.state.as_deref()),
            Some("APPROVED") | Some("PENDING") | Some("SUBMITTED")
        );
        let rank = (live, order_id);
        if chosen.as_ref().is_none_or(|(best, _, _)| *best < rank) {
            let payment = payment.id.clone();
            chosen = Some((rank, order, payment));
        }
    }
    match chosen {
        Some((_, order, payment)) => order.into_transaction(&payment).map(Some),
        None => Ok(None),
    }
}

/// The id of an approved (or, for refunds, accepted for review) capture/void/refund.
fn operation_result(answer: &TxResponse, what: &str) -> Result<String, ProviderError> {
    let id = answer
        .transaction_id
        .clone()
        .filter(|t| valid_transaction_id(t))
        .ok_or_else(|| ProviderError::server_error("PayU answered without a transaction id"))?;
    match answer.state.as_deref() {
        Some("APPROVED") => Ok(id),
        Some("PENDING") if what == "refund" => Ok(id),
        Some(_) => Err(ProviderError::rejected(format!(
            "PayU refused the {what}: {}",
            sanitize(answer.response_code.as_deref().unwrap_or("no reason"), 64)
        ))),
        None => Err(ProviderError::server_error(
            "PayU answered without a transaction state",
        )),
    }
}

fn bank_redirect(
    extra: Option<&serde_json::Map<String, serde_json::Value>>,
) -> Result<NextAction, ProviderError> {
    let url = extra
        .and_then(|e| e.get("BANK_URL"))
        .and_then(|v| v.as_str())
        .filter(|u| u.len() <= 2048)
        .and_then(|u| Url::parse(u).ok())
        .filter(|u| matches!(u.scheme(), "http" | "https"))
        .ok_or_else(|| ProviderError::server_error("PayU answered PSE without a bank URL"))?;
    Ok(NextAction::Redirect { url: url.into() })
}

fn cash_code(
    extra: Option<&serde_json::Map<String, serde_json::Value>>,
) -> Result<NextAction, ProviderError> {
    let bad = |what: &str| ProviderError::server_error(format!("PayU answered Efecty {what}"));
    let extra = extra.ok_or_else(|| bad("without extra parameters"))?;
    let code = match extra.get("REFERENCE") {
        Some(serde_json::Value::Number(n)) => n.as_u64().map(|n| n.to_string()),
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        _ => None,
    }
    .filter(|c| !c.is_empty() && c.len() <= 64 && c.bytes().all(|b| b.is_ascii_alphanumeric()))
    .ok_or_else(|| bad("without a payment code"))?;
    let expires_at = match extra.get("EXPIRATION_DATE") {
        Some(serde_json::Value::Number(n)) => n.as_i64().and_then(from_epoch_millis),
        Some(serde_json::Value::String(s)) => parse_payu_date(s),
        _ => None,
    }
    .ok_or_else(|| bad("without an expiry"))?;
    Ok(NextAction::CashCode { code, expires_at })
}

fn from_epoch_millis(ms: i64) -> Option<DateTime<Utc>> {
    Utc.timestamp_millis_opt(ms).single()
}

/// PayU dates: epoch milliseconds, RFC 3339, or `YYYY-MM-DDTHH:MM:SS[.fff]` (taken as UTC).
fn parse_payu_date(text: &str) -> Option<DateTime<Utc>> {
    if !text.is_empty() && text.len() <= 16 && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse().ok().and_then(from_epoch_millis);
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc));
    }
    ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(text, f).ok())
        .map(|n| n.and_utc())
}

/// The text of a JSON number (or of a string holding one).
fn raw_number_text(raw: &RawValue) -> Option<String> {
    let text = raw.get().trim();
    if let Some(inner) = text.strip_prefix('"') {
        let inner = inner.strip_suffix('"')?;
        return Some(inner.to_owned());
    }
    Some(text.to_owned())
}

fn split_id(provider_transaction_id: &str) -> Result<(u64, &str), ProviderError> {
    let invalid = || ProviderError::rejected("invalid PayU transaction id");
    let (order, transaction) = provider_transaction_id
        .split_once(':')
        .ok_or_else(invalid)?;
    if order.is_empty() || order.len() > 20 || !order.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    let order = order.parse().map_err(|_| invalid())?;
    if !valid_transaction_id(transaction) {
        return Err(invalid());
    }
    Ok((order, transaction))
}

fn valid_transaction_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// PayU's `error` text, printable and bounded, or a note that the body was not its shape.
fn error_summary(body: &[u8]) -> String {
    crate::http::error_summary(body, |head: Head| {
        Some(match head.error {
            Some(error) => sanitize(&error, 160),
            None => sanitize(&head.code, 32),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Customer, IpAddress};
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> PayuConfig {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        PayuConfig::from_lookup(|name| map.get(name).cloned())
    }

    fn production() -> Vec<(&'static str, &'static str)> {
        vec![
            (ENV_API_KEY, "Xq8mT2vL9pR4wZ7nK3cH6yB1dF5gJ0sA"),
            (ENV_API_LOGIN, "Lg7Tq2Wm9Xc4Zp"),
            (ENV_MERCHANT_ID, "771234"),
            (ENV_ACCOUNT_ID, "779876"),
            (ENV_SIGNATURE_ALGORITHM, "HMAC_SHA256"),
            (ENV_SIGNATURE_SECRET, "Sg3vP8kQ1xR6mW2zT9cJ4nB7hL0dF5yA"),
            (ENV_BASE_URL, "https://api.payulatam.com"),
            (
                ENV_NOTIFY_URL,
                "https://payledger.example.com/v1/webhooks/payu",
            ),
        ]
    }

    #[test]
    fn test_defaults_pass_in_test_and_fail_in_production() {
        let config = env(&[]);
        assert_eq!(config.api_key.expose_secret(), test_defaults::API_KEY);
        assert!(config.api_key.expose_secret().len() >= SECRET_LEN_MIN);
        assert!(config.signature_secret.expose_secret().len() >= SECRET_LEN_MIN);
        assert_eq!(config.problems(false), Vec::<String>::new());
        let problems = config.problems(true);
        let all = problems.join("\n");
        for name in [
            ENV_API_KEY,
            ENV_API_LOGIN,
            ENV_MERCHANT_ID,
            ENV_ACCOUNT_ID,
            ENV_SIGNATURE_SECRET,
            ENV_BASE_URL,
        ] {
            assert!(all.contains(name), "{name} missing from:\n{all}");
        }
        assert!(all.contains("test value"), "{all}");
        assert!(all.contains("plain http"), "{all}");
        assert!(!all.contains(test_defaults::API_KEY), "{all}");
        assert!(!all.contains(test_defaults::SIGNATURE_SECRET), "{all}");
    }

    #[test]
    fn a_sound_production_config_has_no_problems() {
        let config = env(&production());
        assert_eq!(config.problems(true), Vec::<String>::new());
        // ... but is refused in a test environment: it points at PayU's production API.
        let problems = config.problems(false);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains(ENV_BASE_URL));
    }

    #[test]
    fn each_problem_names_its_variable_and_never_its_value() {
        let mut vars = production();
        let short_key = "4Vj8eK4rloUd272L48hsrarnUA"; // PayU's public sandbox key: 26 chars
        vars.retain(|(k, _)| {
            ![
                ENV_API_KEY,
                ENV_SIGNATURE_SECRET,
                ENV_BASE_URL,
                ENV_API_LOGIN,
            ]
            .contains(k)
        });
        vars.push((ENV_API_KEY, short_key));
        vars.push((ENV_SIGNATURE_SECRET, "short"));
        vars.push((ENV_BASE_URL, "http://api.payulatam.com"));
        vars.push((ENV_API_LOGIN, ""));
        let problems = env(&vars).problems(true);
        let all = problems.join("\n");
        assert!(all.contains("PAYU_API_KEY is a test value"), "{all}");
        assert!(all.contains("PAYU_API_KEY is shorter than 32"), "{all}");
        assert!(
            all.contains("PAYU_SIGNATURE_SECRET is shorter than 32"),
            "{all}"
        );
        assert!(all.contains("PAYU_BASE_URL uses plain http"), "{all}");
        assert!(all.contains("PAYU_API_LOGIN is missing or empty"), "{all}");
        assert!(
            !all.contains(short_key) && !all.contains("short\n"),
            "{all}"
        );

        let mut vars = production();
        vars.retain(|(k, _)| *k != ENV_SIGNATURE_ALGORITHM && *k != ENV_MERCHANT_ID);
        vars.push((ENV_SIGNATURE_ALGORITHM, "SHA1"));
        vars.push((ENV_MERCHANT_ID, "abc"));
        let all = env(&vars).problems(true).join("\n");
        assert!(all.contains("PAYU_SIGNATURE_ALGORITHM must be MD5 or HMAC_SHA256"));
        assert!(
            all.contains("PAYU_MERCHANT_ID must be PayU's numeric id"),
            "{all}"
        );

        let mut vars = production();
        vars.retain(|(k, _)| *k != ENV_BASE_URL && *k != ENV_NOTIFY_URL);
        vars.push((ENV_BASE_URL, "https://sandbox.api.payulatam.com"));
        vars.push((ENV_NOTIFY_URL, "http://payledger.example.com/hook"));
        let all = env(&vars).problems(true).join("\n");
        assert!(all.contains("points at PayU's sandbox"), "{all}");
        assert!(all.contains("PAYU_NOTIFY_URL uses plain http"), "{all}");
    }

    #[test]
    fn md5_accounts_need_no_signature_secret() {
        let mut vars = production();
        vars.retain(|(k, _)| *k != ENV_SIGNATURE_ALGORITHM && *k != ENV_SIGNATURE_SECRET);
        vars.push((ENV_SIGNATURE_ALGORITHM, "MD5"));
        vars.push((ENV_SIGNATURE_SECRET, ""));
        assert_eq!(env(&vars).problems(true), Vec::<String>::new());
        vars.retain(|(k, _)| *k != ENV_SIGNATURE_ALGORITHM);
        vars.push((ENV_SIGNATURE_ALGORITHM, "HMAC_SHA256"));
        let all = env(&vars).problems(true).join("\n");
        assert!(
            all.contains("PAYU_SIGNATURE_SECRET is missing or empty"),
            "{all}"
        );
    }

    #[test]
    fn debug_never_shows_secrets() {
        let config = PayuConfig::default();
        let printed = format!("{config:?} {config:#?}");
        assert!(!printed.contains(test_defaults::API_KEY), "{printed}");
        assert!(
            !printed.contains(test_defaults::SIGNATURE_SECRET),
            "{printed}"
        );
        let provider = PayuProvider::new(PayuConfig {
            base_url: "http://127.0.0.1:9".into(),
            ..config
        })
        .unwrap();
        let printed = format!("{provider:?}");
        assert!(!printed.contains(test_defaults::API_KEY), "{printed}");
        assert!(
            !printed.contains(test_defaults::SIGNATURE_SECRET),
            "{printed}"
        );
    }

    fn pse_request(customer: Customer) -> CreateTransaction {
        CreateTransaction {
            payment_id: PaymentId::from_uuid(uuid::Uuid::nil()),
            reference: "order-1".into(),
            amount: Money::parse("120000.00", Currency::COP).unwrap(),
            method: PaymentMethodDetails::Pse {
                financial_institution_code: "1022".into(),
                user_type: 0,
                user_legal_id_type: "CC".into(),
                user_legal_id: "1999888777".into(),
            },
            capture_mode: CaptureMode::Automatic,
            customer_email: Some("payer@example.com".into()),
            customer,
            return_url: Some("https://shop.example.com/back".into()),
        }
    }

    /// The JSON PayU would receive for `request`'s transaction.
    fn sent(request: &CreateTransaction) -> serde_json::Value {
        let provider = PayuProvider::new(PayuConfig {
            base_url: "http://127.0.0.1:9".into(),
            ..PayuConfig::default()
        })
        .unwrap();
        let body = provider
            .payment_body(request, "ref", "120000.00", "sig".into())
            .unwrap();
        serde_json::to_value(&body).unwrap()
    }

    #[test]
    fn the_customer_reaches_payu_as_buyer_payer_and_device() {
        let customer = Customer {
            full_name: Some("Ana María Pérez".into()),
            phone: Some("+573001234567".into()),
            document_number: Some("ignored-for-pse".into()),
            ip_address: Some(IpAddress("190.24.8.77".parse().unwrap()).into()),
            user_agent: Some("Mozilla/5.0 (X11; Linux x86_64)".into()),
            device_session_id: Some("vghs6tvkcle931686k1900o6e1".into()),
        };
        let body = sent(&pse_request(customer));
        let person = serde_json::json!({
            "emailAddress": "payer@example.com",
            "fullName": "Ana María Pérez",
            "contactPhone": "+573001234567",
            "dniNumber": "1999888777",
        });
        assert_eq!(body["payer"], person, "{body}");
        assert_eq!(body["order"]["buyer"], person, "{body}");
        assert_eq!(body["ipAddress"], "190.24.8.77", "{body}");
        assert_eq!(
            body["userAgent"], "Mozilla/5.0 (X11; Linux x86_64)",
            "{body}"
        );
        assert_eq!(
            body["deviceSessionId"], "vghs6tvkcle931686k1900o6e1",
            "{body}"
        );
        assert_eq!(
            body["extraParameters"]["PSE_REFERENCE1"], "190.24.8.77",
            "{body}"
        );
        assert_eq!(
            body["extraParameters"]["PSE_REFERENCE3"], "1999888777",
            "{body}"
        );
    }

    #[test]
    fn without_customer_details_only_what_payledger_knows_is_sent() {
        let body = sent(&pse_request(Customer::default()));
        let person = serde_json::json!({
            "emailAddress": "payer@example.com",
            "dniNumber": "1999888777",
        });
        assert_eq!(body["payer"], person, "{body}");
        for absent in ["ipAddress", "userAgent", "deviceSessionId"] {
            assert!(body.get(absent).is_none(), "{absent} in {body}");
        }
        assert_eq!(
            body["extraParameters"]["PSE_REFERENCE1"], UNKNOWN_PAYER_IP,
            "{body}"
        );
    }

    #[test]
    fn construction_refuses_unusable_configs() {
        let ok = PayuConfig {
            base_url: "http://127.0.0.1:9".into(),
            ..PayuConfig::default()
        };
        assert!(PayuProvider::new(ok.clone()).is_ok());
        for bad in [
            PayuConfig {
                base_url: "ftp://x".into(),
                ..ok.clone()
            },
            PayuConfig {
                base_url: "http://user:pw@x".into(),
                ..ok.clone()
            },
            PayuConfig {
                api_key: "".into(),
                ..ok.clone()
            },
            PayuConfig {
                signature_algorithm: "SHA1".into(),
                ..ok.clone()
            },
            PayuConfig {
                signature_secret: "".into(),
                ..ok.clone()
            },
            PayuConfig {
                timeout_ms: 0,
                ..ok.clone()
            },
            PayuConfig {
                notify_url: Some("javascript:x".into()),
                ..ok.clone()
            },
        ] {
            assert!(PayuProvider::new(bad).is_err());
        }
    }

    #[test]
    fn amounts_are_written_exactly() {
        let cop = |s| Money::parse(s, Currency::COP).unwrap();
        assert_eq!(amount_text(&cop("65000.00")), "65000");
        assert_eq!(amount_text(&cop("65000")), "65000");
        assert_eq!(amount_text(&cop("150.25")), "150.25");
        assert_eq!(amount_text(&cop("150.20")), "150.20");
        assert_eq!(amount_text(&cop("1000000000000")), "1000000000000");
        assert_eq!(amount_text(&cop("0.10")), "0.10");
    }

    #[test]
    fn ids_and_tokens_parse_strictly() {
        assert_eq!(
            split_id("1400449959:4d49e544-e23f-474e-92b1-59357e0e85e8").unwrap(),
            (1400449959, "4d49e544-e23f-474e-92b1-59357e0e85e8")
        );
        for bad in ["", "1400", ":abc", "x1:abc", "1:", "1:a/b", "-1:abc"] {
            assert!(split_id(bad).is_err(), "{bad}");
        }
        assert_eq!(card_token("tok_1").unwrap(), ("VISA", "tok_1"));
        assert_eq!(
            card_token("MASTERCARD:tok-2").unwrap(),
            ("MASTERCARD", "tok-2")
        );
        assert!(card_token("").is_err());
        assert!(card_token("VISA:").is_err());
        assert!(card_token("tok with space").is_err());
    }

    #[test]
    fn efecty_extra_parameters_parse_as_numbers_or_text() {
        let extra: serde_json::Map<String, serde_json::Value> = serde_json::from_str(
            r#"{"EXPIRATION_DATE":1624568315804,"REFERENCE":1400449740,"URL_PAYMENT_RECEIPT_HTML":"https://x"}"#,
        )
        .unwrap();
        let NextAction::CashCode { code, expires_at } = cash_code(Some(&extra)).unwrap() else {
            panic!("not a cash code");
        };
        assert_eq!(code, "1400449740");
        assert_eq!(expires_at.timestamp_millis(), 1_624_568_315_804);
        let extra: serde_json::Map<String, serde_json::Value> = serde_json::from_str(
            r#"{"EXPIRATION_DATE":"2021-06-24T20:58:35.804","REFERENCE":"74794"}"#,
        )
        .unwrap();
        let NextAction::CashCode { code, expires_at } = cash_code(Some(&extra)).unwrap() else {
            panic!("not a cash code");
        };
        assert_eq!(code, "74794");
        assert_eq!(expires_at.timestamp_millis(), 1_624_568_315_804);
        let extra: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(r#"{"REFERENCE":"74794"}"#).unwrap();
        assert!(cash_code(Some(&extra)).is_err());
        assert!(bank_redirect(Some(&extra)).is_err());
        let extra: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(r#"{"BANK_URL":"javascript:alert(1)"}"#).unwrap();
        assert!(bank_redirect(Some(&extra)).is_err());
    }

    /// One order of a reference as PayU lists it: its payment transaction in `state`.
    fn listed_order(id: u64, reference: &str, state: &str) -> serde_json::Value {
        serde_json::json!({
            "id": id,
            "referenceCode": reference,
            "additionalValues": {"TX_VALUE": {"value": "50000.00", "currency": "COP"}},
            "transactions": [{
                "id": format!("tx-{id}"),
                "type": "AUTHORIZATION_AND_CAPTURE",
                "transactionResponse": {"state": state, "responseCode": state},
            }],
        })
    }

    fn choose(
        orders: serde_json::Value,
        payment_id: PaymentId,
    ) -> Result<Option<ProviderTransaction>, ProviderError> {
        payment_order(serde_json::from_value(orders).unwrap(), payment_id)
    }

    #[test]
    fn of_several_orders_of_a_reference_the_newest_that_took_the_money_is_the_payments() {
        let ours = PaymentId::from_uuid(uuid::Uuid::new_v4());
        let other = PaymentId::from_uuid(uuid::Uuid::new_v4()).to_string();
        let reference = ours.to_string();
        // A declined retry after an approved order: the approved one holds the money.
        let found = choose(
            serde_json::json!([
                listed_order(1400000001, &reference, "APPROVED"),
                listed_order(1400000002, &reference, "DECLINED"),
            ]),
            ours,
        )
        .unwrap()
        .unwrap();
        assert_eq!(found.id, "1400000001:tx-1400000001");
        assert_eq!(found.status, ProviderTransactionStatus::Approved);
        assert_eq!(found.payment_id, ours);
        // Listed in any order, the newest live one wins; another payment's order never.
        let found = choose(
            serde_json::json!([
                listed_order(1400000009, &other, "APPROVED"),
                listed_order(1400000005, &reference, "PENDING"),
                listed_order(1400000003, &reference, "APPROVED"),
            ]),
            ours,
        )
        .unwrap()
        .unwrap();
        assert_eq!(found.id, "1400000005:tx-1400000005");
        assert_eq!(found.status, ProviderTransactionStatus::Pending);
        // Only declined orders: the newest one says how it ended.
        let found = choose(
            serde_json::json!([
                listed_order(1400000007, &reference, "DECLINED"),
                listed_order(1400000006, &reference, "ERROR"),
            ]),
            ours,
        )
        .unwrap()
        .unwrap();
        assert_eq!(found.id, "1400000007:tx-1400000007");
        // Nothing of this payment.
        assert_eq!(
            choose(
                serde_json::json!([listed_order(1400000009, &other, "APPROVED")]),
                ours
            )
            .unwrap(),
            None
        );
        // An order of the payment without its payment transaction is PayU's error, not "none".
        let mut broken = listed_order(1400000004, &reference, "APPROVED");
        broken["transactions"] = serde_json::json!([]);
        let err = choose(serde_json::json!([broken]), ours).unwrap_err();
        assert_ne!(err.outcome(), CallOutcome::Refused, "{err}");
    }

    #[test]
    fn error_summaries_are_bounded_and_scrubbed() {
        assert_eq!(
            error_summary(br#"{"code":"ERROR","error":"Invalid\nsignature"}"#),
            "Invalid?signature"
        );
        assert_eq!(error_summary(b"<html>"), "unrecognized error body");
        assert_eq!(error_summary(b""), "empty body");
        let provider = PayuProvider::new(PayuConfig {
            base_url: "http://127.0.0.1:9".into(),
            ..PayuConfig::default()
        })
        .unwrap();
        let text = provider.scrub(&format!(
            "x {} y {}",
            test_defaults::API_KEY,
            test_defaults::SIGNATURE_SECRET
        ));
        assert_eq!(text, "x <redacted> y <redacted>");
    }

    #[test]
    fn a_saved_card_is_charged_as_the_card_flow_with_its_token_and_franchise() {
        let card = |method: PaymentMethodDetails| CreateTransaction {
            method,
            customer_email: None,
            return_url: None,
            ..pse_request(Customer::default())
        };
        let saved = sent(&card(PaymentMethodDetails::Saved {
            method: PaymentMethodType::Card,
            payment_method_id: domain::SavedMethodId::from_uuid(uuid::Uuid::nil()),
            source_id: "MASTERCARD:46b7f03e-1b3b@0191f7a0-0000-7000-8000-00000000c0de".into(),
        }));
        let direct = sent(&card(PaymentMethodDetails::Card {
            token: "MASTERCARD:46b7f03e-1b3b".into(),
        }));
        assert_eq!(saved, direct);
        assert_eq!(saved["creditCardTokenId"], "46b7f03e-1b3b");
        assert_eq!(saved["paymentMethod"], "MASTERCARD");
        assert_eq!(saved["extraParameters"]["INSTALLMENTS_NUMBER"], 1);
        // The payer id travels in no charge.
        assert!(!saved.to_string().contains("0191f7a0"), "{saved}");

        let provider = PayuProvider::new(PayuConfig::default()).unwrap();
        for (method, source) in [
            (PaymentMethodType::Card, "46b7f03e-1b3b"),
            (PaymentMethodType::Nequi, "VISA:46b7f03e@payer"),
        ] {
            let request = card(PaymentMethodDetails::Saved {
                method,
                payment_method_id: domain::SavedMethodId::from_uuid(uuid::Uuid::nil()),
                source_id: source.into(),
            });
            let refused = provider
                .payment_body(&request, "ref", "120000", "sig".into())
                .err()
                .unwrap();
            assert_eq!(refused.outcome(), CallOutcome::Refused, "{source}");
        }
    }
}
