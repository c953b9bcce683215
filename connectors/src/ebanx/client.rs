//! GCash through EBANX's Direct API (Philippines, PHP).
//!
//! Every call is a JSON `POST` under `{base}/ws/` whose body carries the integration key
//! (`{"integration_key": .., ..}`: it never goes in a URL, where proxies and logs keep
//! addresses). EBANX answers `{"status":"SUCCESS", ..}`, or `{"status":"ERROR",
//! "status_code":"BP-..","status_message":".."}` mostly with HTTP `200`:
//!
//! * Create: `POST /ws/direct` `{"operation":"request","payment":{"name","email",
//!   "country":"ph","payment_type_code":"gcash","merchant_payment_code":<our payment id>,
//!   "order_number":<the merchant's reference, at most 40>,"currency_code":"PHP",
//!   "amount_total":1234.60,"redirect_url":<return url>}}` -> `{"payment":{"hash",
//!   "merchant_payment_code","status":"PE",..},"redirect_url":<the GCash page>}`: `Pending`
//!   with `NextAction::Redirect`. `amount_total` is written from the decimal's own digits,
//!   never through a float. The provider transaction id is EBANX's payment `hash`.
//! * EBANX keeps one payment per `merchant_payment_code` and refuses a second one
//!   (`BP-DR-0`): a create sent again after a lost answer is answered with the first payment,
//!   found by `POST /ws/query` `{"merchant_payment_code"}`, which is also the lookup by
//!   reference ([`PaymentProvider::find_transaction`]).
//! * Status: `POST /ws/query` `{"hash"}`. `CO` -> `Approved`; `PE`/`OP` -> `Pending`; `CA`
//!   with `transaction_status.code: "NOK"` (the customer or GCash turned it down) ->
//!   `Declined`, any other `CA` (the customer never completed it in time) -> `Expired`.
//! * Refund: `POST /ws/refund` `{"operation":"request","hash","amount","description",
//!   "merchant_refund_code":<our refund id>}`, refund statuses `RE` (requested), `PE`, `CO`
//!   and `CA` (cancelled). EBANX does not promise to deduplicate by `merchant_refund_code`,
//!   so the payment is queried first and a refund already made under our refund id is
//!   answered instead of refunding twice.
//! * GCash is captured when the customer confirms: no manual capture, and nothing held to
//!   void (an open payment lapses by itself); both are refused as `Rejected`.
//! * Health: `POST /ws/merchantIntegrationProperties/get` (authenticated, changes nothing).
//!
//! Failures map like every adapter: no answer in time -> `Timeout`, no connection ->
//! `Connection`, 5xx -> `ServerError` (outcome unknown), an `ERROR` answer or a 4xx ->
//! `Rejected` with EBANX's code as detail.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use domain::{CaptureId, CaptureMode, Currency, Money, PaymentId, PaymentMethodType, RefundId};
use reqwest::header::CONTENT_TYPE;
use reqwest::Url;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::http::{sanitize, setting};
use crate::http::valid_redirect_url;
use crate::json_amount::JsonAmount as Amount;
use crate::{
    CreateTransaction, NextAction, PaymentMethodDetails, PaymentProvider, ProviderConfigError,
    ProviderError, ProviderRefund, ProviderTransaction, ProviderTransactionStatus,
};

/// Largest response body read from EBANX.
pub const RESPONSE_BODY_MAX_BYTES: usize = 256 * 1024;
pub const DEFAULT_TIMEOUT_MS: u64 = 10_000;
pub use crate::http::TIMEOUT_MS_MAX;
/// EBANX's API hosts: the sandbox and production ones, current (`ebanxpay.com`) and older.
pub const SANDBOX_HOSTS: &[&str] = &["sandbox.ebanxpay.com", "sandbox.ebanx.com"];
pub const PRODUCTION_HOSTS: &[&str] = &["api.ebanxpay.com", "api.ebanx.com"];
pub const PRODUCTION_BASE_URL: &str = "https://api.ebanxpay.com";

pub const ENV_BASE_URL: &str = "EBANX_BASE_URL";
pub const ENV_INTEGRATION_KEY: &str = "EBANX_INTEGRATION_KEY";
pub const ENV_PUBLIC_INTEGRATION_KEY: &str = "EBANX_PUBLIC_INTEGRATION_KEY";

/// Test defaults used when the environment leaves a value unset. They only work against the
/// bundled emulator; `problems(true)` refuses them.
pub const TEST_INTEGRATION_KEY: &str = "test_ik_PayledgerEmulator00000";
pub const TEST_BASE_URL: &str = "http://127.0.0.1:0";

/// EBANX's sandbox keys start `test_ik_` (secret) and `test_pk_` (public).
pub const TEST_KEY_PREFIX: &str = "test_";
pub const LIVE_KEY_PREFIX: &str = "live_";
pub const SECRET_KEY_MARK: &str = "_ik_";
pub const PUBLIC_KEY_MARK: &str = "_pk_";
/// Shortest integration key accepted (EBANX's are `test_ik_` and 22 characters).
pub const KEY_LEN_MIN: usize = 24;
pub const KEY_LEN_MAX: usize = 128;

/// What GCash is called at EBANX, and the country it is paid in.
pub const PAYMENT_TYPE_CODE: &str = "gcash";
pub const COUNTRY: &str = "ph";
/// Sent when the payment names no payer: EBANX requires both fields. `.invalid` (RFC 2606)
/// never reaches anyone.
pub const PLACEHOLDER_NAME: &str = "GCash customer";
pub const PLACEHOLDER_EMAIL: &str = "customer@payledger.invalid";
/// Longest `order_number` EBANX takes (`BP-DR-11`).
const ORDER_NUMBER_LEN_MAX: usize = 40;
const NAME_LEN_MAX: usize = 100;
const EMAIL_LEN_MAX: usize = 100;
const ID_LEN_MAX: usize = 64;
const REASON_LEN_MAX: usize = 64;

/// EBANX status codes the adapter acts on.
pub mod codes {
    /// "Payment already exists with merchant_payment_code": the first create went through.
    pub const DUPLICATE_PAYMENT: &str = "BP-DR-0";
    /// A query for a payment EBANX does not hold. EBANX's reference names no code for it
    /// that could be read; this is the emulator's, to be checked against EBANX's sandbox.
    pub const QUERY_NOT_FOUND: &str = "BP-QRY-2";
    /// A refund of a payment EBANX does not hold (`Payment not found with this hash`).
    pub const REFUND_NOT_FOUND: &str = "BP-REF-CAN-2";
}

/// EBANX's payment statuses.
pub mod status {
    pub const PENDING: &str = "PE";
    pub const OPEN: &str = "OP";
    pub const CONFIRMED: &str = "CO";
    pub const CANCELLED: &str = "CA";
    /// `transaction_status.code` of a payment turned down.
    pub const NOT_OK: &str = "NOK";
    /// A refund's statuses: requested, pending, confirmed, cancelled.
    pub const REFUND_REQUESTED: &str = "RE";
    pub const REFUND_PENDING: &str = "PE";
    pub const REFUND_CONFIRMED: &str = "CO";
    pub const REFUND_CANCELLED: &str = "CA";
}

/// Everything the EBANX adapter and its notification verifier need.
#[derive(Debug, Clone)]
pub struct EbanxConfig {
    /// `https://api.ebanxpay.com` in production, `https://sandbox.ebanxpay.com` for EBANX's
    /// sandbox, the emulator's address in tests.
    pub base_url: String,
    /// `test_ik_...` in EBANX's sandbox; the live key in production.
    pub integration_key: SecretString,
    /// `test_pk_...`: only for EBANX's browser-side scripts; checked if set, handed to
    /// checkouts as the public key.
    pub public_integration_key: Option<String>,
    /// Whole-request timeout in milliseconds.
    pub timeout_ms: u64,
}

impl EbanxConfig {
    /// Reads `EBANX_INTEGRATION_KEY`, `EBANX_PUBLIC_INTEGRATION_KEY` (optional) and
    /// `EBANX_BASE_URL`; unset or empty values get the test defaults above.
    pub fn from_env() -> Self {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let get = |name: &str| setting(lookup(name));
        EbanxConfig {
            base_url: get(ENV_BASE_URL).unwrap_or_else(|| TEST_BASE_URL.to_owned()),
            integration_key: get(ENV_INTEGRATION_KEY)
                .unwrap_or_else(|| TEST_INTEGRATION_KEY.to_owned())
                .into(),
            public_integration_key: get(ENV_PUBLIC_INTEGRATION_KEY),
            timeout_ms: DEFAULT_TIMEOUT_MS,
        }
    }

    /// Every problem that makes this configuration unfit for `production` (or, with
    /// `false`, for a test environment). Messages name the variable, never its value.
    ///
    /// EBANX's sandbox keys say so (`test_ik_`, `test_pk_`): production refuses them and the
    /// sandbox host; a test environment refuses `live_` keys and the production host, and
    /// wants the sandbox's `test_ik_` shape. A secret key given as the public one is refused
    /// everywhere: checkouts are handed the public key.
    pub fn problems(&self, production: bool) -> Vec<String> {
        let mut problems = Vec::new();
        let key = self.integration_key.expose_secret();
        let var = ENV_INTEGRATION_KEY;
        if key.is_empty() {
            problems.push(format!("{var} is missing"));
        } else {
            if key.contains(PUBLIC_KEY_MARK) {
                problems.push(format!(
                    "{var} is a public integration key; the secret integration key is required"
                ));
            }
            if production && key.starts_with(TEST_KEY_PREFIX) {
                problems.push(format!(
                    "{var} is a test (sandbox) key; live keys are required here"
                ));
            }
            if !production && key.starts_with(LIVE_KEY_PREFIX) {
                problems.push(format!("{var} is a live key; test keys are required here"));
            }
            if !production && !key.starts_with(LIVE_KEY_PREFIX) && !key.starts_with("test_ik_") {
                problems.push(format!(
                    "{var} does not look like an EBANX sandbox integration key (`test_ik_...`)"
                ));
            }
            if !(KEY_LEN_MIN..=KEY_LEN_MAX).contains(&key.chars().count()) {
                problems.push(format!(
                    "{var} must be {KEY_LEN_MIN} to {KEY_LEN_MAX} characters long"
                ));
            }
            if !key.bytes().all(|b| b.is_ascii_graphic()) {
                problems.push(format!("{var} holds characters a key never has"));
            }
            if production && key == TEST_INTEGRATION_KEY {
                problems.push(format!("{var} is the built-in test key"));
            }
        }
        if let Some(public) = &self.public_integration_key {
            let var = ENV_PUBLIC_INTEGRATION_KEY;
            if public.contains(SECRET_KEY_MARK) {
                problems.push(format!(
                    "{var} is a secret integration key; it would be handed to browsers"
                ));
            } else if !public.contains(PUBLIC_KEY_MARK) {
                problems.push(format!(
                    "{var} does not look like an EBANX public integration key (`..._pk_...`)"
                ));
            }
            if production && public.starts_with(TEST_KEY_PREFIX) {
                problems.push(format!(
                    "{var} is a test (sandbox) key; live keys are required here"
                ));
            }
            if !production && public.starts_with(LIVE_KEY_PREFIX) {
                problems.push(format!("{var} is a live key; test keys are required here"));
            }
        }
        match Url::parse(&self.base_url) {
            Err(_) => problems.push(format!("{ENV_BASE_URL} is not a URL")),
            Ok(url) => {
                if !matches!(url.scheme(), "http" | "https") {
                    problems.push(format!("{ENV_BASE_URL} must be an http(s) URL"));
                }
                if production && url.scheme() != "https" {
                    problems.push(format!("{ENV_BASE_URL} must use https in production"));
                }
                let host = url.host_str().unwrap_or_default();
                let is = |hosts: &[&str]| hosts.iter().any(|h| host.eq_ignore_ascii_case(h));
                if production && is(SANDBOX_HOSTS) {
                    problems.push(format!(
                        "{ENV_BASE_URL} points at EBANX's sandbox in production"
                    ));
                }
                if !production && is(PRODUCTION_HOSTS) {
                    problems.push(format!(
                        "{ENV_BASE_URL} points at EBANX's production API outside production"
                    ));
                }
            }
        }
        problems
    }
}

/// The EBANX adapter.
#[derive(Debug)]
pub struct EbanxProvider {
    http: reqwest::Client,
    base_url: Url,
    integration_key: SecretString,
    timeout_ms: u64,
}

/// An `ERROR` answer (or a 4xx): EBANX's code and its message, printable, bounded and
/// scrubbed of the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub code: String,
    pub message: String,
}

impl Refusal {
    fn into_error(self, what: &str) -> ProviderError {
        ProviderError::rejected(format!(
            "ebanx refused the {what}: {}: {}",
            self.code, self.message
        ))
    }
}

/// What a payment is looked up by.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Key<'a> {
    Hash(&'a str),
    Code(PaymentId),
}

impl EbanxProvider {
    pub const NAME: &'static str = "ebanx";

    pub fn new(config: EbanxConfig) -> Result<Self, ProviderConfigError> {
        let invalid = |problem: &str| ProviderConfigError {
            provider: Self::NAME,
            problem: problem.to_owned(),
        };
        let base_url = Url::parse(&config.base_url)
            .ok()
            .filter(|u| {
                matches!(u.scheme(), "http" | "https")
                    && !u.cannot_be_a_base()
                    && u.query().is_none()
                    && u.fragment().is_none()
                    && u.username().is_empty()
                    && u.password().is_none()
            })
            .ok_or_else(|| invalid("base_url must be a plain http(s) base URL"))?;
        let key = config.integration_key.expose_secret();
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(invalid("integration_key must be printable ASCII"));
        }
        let http = crate::http::provider_client(config.timeout_ms).map_err(invalid)?;
        Ok(EbanxProvider {
            http,
            base_url,
            integration_key: config.integration_key,
            timeout_ms: config.timeout_ms,
        })
    }

    fn url(&self, path: &[&str]) -> Result<Url, ProviderError> {
        let mut url = self.base_url.clone();
        url.path_segments_mut()
            .map_err(|_| ProviderError::rejected("ebanx base_url cannot take a path"))?
            .pop_if_empty()
            .push("ws")
            .extend(path);
        Ok(url)
    }

    /// POSTs `body` with the integration key to `/ws/<path>`. `Ok(Ok(body))`: a `SUCCESS`
    /// answer; `Ok(Err(refusal))`: EBANX said no; `Err`: no usable answer.
    pub(crate) async fn call<B: Serialize>(
        &self,
        path: &[&str],
        body: &B,
    ) -> Result<Result<Vec<u8>, Refusal>, ProviderError> {
        let body = serde_json::to_vec(&wire::Authenticated {
            integration_key: self.integration_key.expose_secret(),
            body,
        })
        .map_err(|_| ProviderError::rejected("cannot encode the EBANX request"))?;
        let response = self
            .http
            .post(self.url(path)?)
            .header(CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| self.transport_error(e))?;
        let http_status = response.status();
        let raw = crate::http::read_body("ebanx", response, RESPONSE_BODY_MAX_BYTES, |e| {
            self.transport_error(e)
        })
        .await?;
        if http_status.is_server_error() || http_status.is_informational() {
            return Err(ProviderError::server_error(self.scrub(&format!(
                "ebanx answered {}: {}",
                http_status.as_u16(),
                error_summary(&raw)
            ))));
        }
        let envelope = serde_json::from_slice::<wire::Envelope>(&raw).ok();
        match envelope.as_ref().map(|e| e.status.as_str()) {
            Some(wire::SUCCESS) if http_status.is_success() => Ok(Ok(raw)),
            Some(wire::ERROR) => Ok(Err(self.refusal(envelope))),
            _ if http_status.is_client_error() => Ok(Err(Refusal {
                code: format!("HTTP-{}", http_status.as_u16()),
                message: error_summary(&raw),
            })),
            _ => Err(ProviderError::server_error(format!(
                "ebanx answered {} without a SUCCESS or ERROR status",
                http_status.as_u16()
            ))),
        }
    }

    fn refusal(&self, envelope: Option<wire::Envelope>) -> Refusal {
        let envelope = envelope.unwrap_or_default();
        Refusal {
            code: self.scrub(&sanitize(
                envelope.status_code.as_deref().unwrap_or("unknown"),
                32,
            )),
            message: self.scrub(&sanitize(
                envelope.status_message.as_deref().unwrap_or(""),
                160,
            )),
        }
    }

    fn transport_error(&self, error: reqwest::Error) -> ProviderError {
        crate::http::transport_error("ebanx", error, self.timeout_ms, |t| self.scrub(t))
    }

    /// The detail ends up in events and logs: the key may never be in it.
    fn scrub(&self, text: &str) -> String {
        crate::http::scrub(text, [self.integration_key.expose_secret()])
    }

    fn decode<T: for<'de> Deserialize<'de>>(&self, body: &[u8]) -> Result<T, ProviderError> {
        crate::http::decode("ebanx", body)
    }

    /// The payment EBANX holds under `key`; `Ok(None)` when EBANX says it holds none.
    pub(crate) async fn query(&self, key: Key<'_>) -> Result<Option<wire::Payment>, ProviderError> {
        let code;
        let body = match key {
            Key::Hash(hash) => {
                if !valid_hash(hash) {
                    return Err(ProviderError::rejected("invalid EBANX payment hash"));
                }
                wire::Query {
                    hash: Some(hash),
                    merchant_payment_code: None,
                }
            }
            Key::Code(payment_id) => {
                code = payment_id.to_string();
                wire::Query {
                    hash: None,
                    merchant_payment_code: Some(&code),
                }
            }
        };
        let raw = match self.call(&["query"], &body).await? {
            Ok(raw) => raw,
            Err(refusal) if refusal.code == codes::QUERY_NOT_FOUND => return Ok(None),
            Err(refusal) => return Err(refusal.into_error("query")),
        };
        let payment = self.decode::<wire::PaymentAnswer>(&raw)?.payment;
        let matches = match key {
            Key::Hash(hash) => payment.hash == hash,
            Key::Code(payment_id) => payment.our_payment_id() == Some(payment_id),
        };
        if !matches {
            return Err(ProviderError::server_error(
                "ebanx answered the query with another payment",
            ));
        }
        Ok(Some(payment))
    }

    /// The transaction EBANX holds under `hash`, or `None`: what a notification names is
    /// only ever read from here.
    pub async fn transaction_by_hash(
        &self,
        hash: &str,
    ) -> Result<Option<ProviderTransaction>, ProviderError> {
        match self.query(Key::Hash(hash)).await? {
            Some(payment) => transaction_of(payment, None).map(Some),
            None => Ok(None),
        }
    }

    async fn payment(&self, hash: &str) -> Result<wire::Payment, ProviderError> {
        self.query(Key::Hash(hash))
            .await?
            .ok_or_else(|| ProviderError::rejected("ebanx holds no payment with this hash"))
    }
}

/// An EBANX payment hash: hex digits (EBANX's are 48).
pub fn valid_hash(hash: &str) -> bool {
    (32..=64).contains(&hash.len()) && hash.bytes().all(|b| b.is_ascii_hexdigit())
}

fn valid_id(id: &str) -> bool {
    crate::http::path_safe_id(id, ID_LEN_MAX)
}

fn bad_answer(problem: &str) -> ProviderError {
    ProviderError::server_error(format!("ebanx answered {problem}"))
}

/// `amount` in PHP, as EBANX takes it: a JSON number written from the decimal's digits.
pub(crate) fn amount_of(amount: Money) -> Result<Amount, ProviderError> {
    if amount.currency() != Currency::PHP {
        return Err(ProviderError::rejected("ebanx takes GCash in PHP only"));
    }
    Amount::number(amount.amount())
        .ok_or_else(|| ProviderError::rejected("cannot write the amount"))
}

/// What a turned-down payment's `transaction_status` says, as a decline reason:
/// `ebanx_not_accepted`.
pub(crate) fn decline_reason(description: Option<&str>) -> String {
    let mut slug = String::new();
    for c in sanitize(description.unwrap_or(""), REASON_LEN_MAX).chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c.to_ascii_lowercase());
        } else if !slug.is_empty() && !slug.ends_with('_') {
            slug.push('_');
        }
    }
    let slug = slug.trim_end_matches('_');
    if slug.is_empty() {
        DECLINED_REASON.to_owned()
    } else {
        format!("ebanx_{slug}")
    }
}

/// Reason recorded for a turned-down payment that says nothing more.
pub const DECLINED_REASON: &str = "ebanx_declined";

/// EBANX's payment as a transaction. `redirect`: the GCash page the create answered with
/// (queries do not carry it).
pub(crate) fn transaction_of(
    payment: wire::Payment,
    redirect: Option<String>,
) -> Result<ProviderTransaction, ProviderError> {
    if !valid_hash(&payment.hash) {
        return Err(bad_answer("an invalid payment hash"));
    }
    let payment_id = payment
        .our_payment_id()
        .ok_or_else(|| bad_answer("a payment without our payment id"))?;
    let amount = payment
        .money()
        .map_err(|problem| bad_answer(&format!("a payment with {problem}")))?;
    let zero = Money::zero(amount.currency());
    let mut refunded = zero;
    for refund in payment
        .refunds
        .iter()
        .filter(|r| r.status != status::REFUND_CANCELLED)
    {
        let part = refund
            .amount_ext
            .money(amount.currency().code())
            .map_err(|problem| bad_answer(&format!("a refund with {problem}")))?;
        refunded = refunded
            .checked_add(part)
            .map_err(|_| bad_answer("refunds that do not add up"))?;
    }
    let mut next_action = None;
    let status = match payment.status.as_str() {
        status::CONFIRMED => ProviderTransactionStatus::Approved,
        status::PENDING | status::OPEN => {
            next_action = redirect.map(|url| NextAction::Redirect { url });
            ProviderTransactionStatus::Pending
        }
        status::CANCELLED => match &payment.transaction_status {
            Some(t) if t.code == status::NOT_OK => ProviderTransactionStatus::Declined {
                reason: decline_reason(t.description.as_deref()),
            },
            _ => ProviderTransactionStatus::Expired,
        },
        _ => return Err(bad_answer("an unknown payment status")),
    };
    let captured = if status == ProviderTransactionStatus::Approved {
        amount
    } else {
        zero
    };
    Ok(ProviderTransaction {
        id: payment.hash,
        payment_id,
        status,
        amount,
        captured_amount: captured,
        refunded_amount: refunded,
        next_action,
    })
}

/// EBANX's JSON shapes, shared by this adapter and the notification verifier. The emulator
/// (`emulators::ebanx`) writes its own from EBANX's documentation, so a field misnamed here
/// fails the emulator tests instead of passing both sides. Unknown fields are tolerated.
pub(crate) mod wire {
    use super::*;

    pub(crate) const SUCCESS: &str = "SUCCESS";
    pub(crate) const ERROR: &str = "ERROR";

    /// Every request: the integration key beside the operation's own fields.
    #[derive(Serialize)]
    pub(crate) struct Authenticated<'a, B> {
        pub integration_key: &'a str,
        #[serde(flatten)]
        pub body: B,
    }

    /// The part of every answer that says whether it worked.
    #[derive(Debug, Default, Deserialize)]
    pub(crate) struct Envelope {
        pub status: String,
        #[serde(default)]
        pub status_code: Option<String>,
        #[serde(default)]
        pub status_message: Option<String>,
    }

    /// The create. No `Debug`: it holds the payer's name and email.
    #[derive(Serialize)]
    pub(crate) struct Direct<'a> {
        pub operation: &'static str,
        pub payment: DirectPayment<'a>,
    }

    #[derive(Serialize)]
    pub(crate) struct DirectPayment<'a> {
        pub name: &'a str,
        pub email: &'a str,
        pub country: &'static str,
        pub payment_type_code: &'static str,
        pub merchant_payment_code: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub order_number: Option<String>,
        pub currency_code: &'static str,
        pub amount_total: Amount,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub redirect_url: Option<&'a str>,
    }

    /// `/ws/direct`'s answer: the payment, and where the customer goes for a redirect flow.
    #[derive(Debug, Deserialize)]
    pub(crate) struct DirectAnswer {
        pub payment: Payment,
        #[serde(default)]
        pub redirect_url: Option<String>,
    }

    #[derive(Debug, Serialize)]
    pub(crate) struct Query<'a> {
        #[serde(skip_serializing_if = "Option::is_none")]
        pub hash: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub merchant_payment_code: Option<&'a str>,
    }

    /// `/ws/query`'s answer.
    #[derive(Debug, Deserialize)]
    pub(crate) struct PaymentAnswer {
        pub payment: Payment,
    }

    #[derive(Debug, Serialize)]
    pub(crate) struct RefundRequest<'a> {
        pub operation: &'static str,
        pub hash: &'a str,
        pub amount: Amount,
        pub description: String,
        pub merchant_refund_code: String,
    }

    /// `/ws/refund`'s answer: the refund made (the payment with all its refunds beside it).
    #[derive(Debug, Deserialize)]
    pub(crate) struct RefundAnswer {
        pub refund: Refund,
    }

    /// A payment as `/ws/direct`, `/ws/query` and `/ws/refund` answer it. `amount_ext` is
    /// the amount in the currency the merchant asked in (`currency_ext`); EBANX writes
    /// amounts as decimal strings.
    #[derive(Debug, Clone, Deserialize)]
    pub(crate) struct Payment {
        pub hash: String,
        #[serde(default)]
        pub merchant_payment_code: Option<String>,
        pub status: String,
        pub amount_ext: Amount,
        pub currency_ext: String,
        #[serde(default)]
        pub transaction_status: Option<TransactionStatus>,
        #[serde(default)]
        pub refunds: Vec<Refund>,
        /// Where some answers name the customer's page instead of beside the payment.
        #[serde(default)]
        pub redirect_url: Option<String>,
    }

    impl Payment {
        pub(crate) fn our_payment_id(&self) -> Option<PaymentId> {
            PaymentId::from_str(self.merchant_payment_code.as_deref()?).ok()
        }

        pub(crate) fn money(&self) -> Result<Money, String> {
            self.amount_ext.money(&self.currency_ext)
        }
    }

    #[derive(Debug, Clone, Deserialize)]
    pub(crate) struct TransactionStatus {
        pub code: String,
        #[serde(default)]
        pub description: Option<String>,
    }

    #[derive(Debug, Clone, Deserialize)]
    pub(crate) struct Refund {
        pub id: String,
        #[serde(default)]
        pub merchant_refund_code: Option<String>,
        pub status: String,
        pub amount_ext: Amount,
    }
}

/// EBANX's error code and message, printable and bounded.
fn error_summary(body: &[u8]) -> String {
    crate::http::error_summary(body, |e: wire::Envelope| {
        Some(format!(
            "{}: {}",
            sanitize(e.status_code.as_deref()?, 32),
            sanitize(e.status_message.as_deref().unwrap_or(""), 160)
        ))
    })
}

/// The description sent with a refund; it names our refund id.
pub fn refund_description(refund_id: RefundId) -> String {
    format!("payledger refund {refund_id}")
}

#[async_trait]
impl PaymentProvider for EbanxProvider {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn payment_methods(&self) -> &'static [PaymentMethodType] {
        &[PaymentMethodType::Gcash]
    }

    fn currencies(&self) -> &'static [Currency] {
        &[Currency::PHP]
    }

    fn supports_manual_capture(&self) -> bool {
        false
    }

    /// EBANX keeps one payment per `merchant_payment_code` for good and refuses a second
    /// (`BP-DR-0`), which the create answers with the first: a create sent again never makes
    /// another. A day bounds it like the other providers' keys.
    fn create_idempotency_window(&self) -> Option<Duration> {
        Some(Duration::from_secs(24 * 3_600))
    }

    async fn create_transaction(
        &self,
        request: &CreateTransaction,
    ) -> Result<ProviderTransaction, ProviderError> {
        if !matches!(request.method, PaymentMethodDetails::Gcash) {
            return Err(ProviderError::rejected(
                "ebanx takes only the GCASH payment method",
            ));
        }
        if request.capture_mode == CaptureMode::Manual {
            return Err(ProviderError::rejected(
                "gcash through ebanx has no manual capture: use automatic capture",
            ));
        }
        let return_url = match request.return_url.as_deref() {
            Some(url) if valid_redirect_url(url) => Some(url),
            Some(_) => {
                return Err(ProviderError::rejected(
                    "return_url must be an http(s) URL of at most 2048 characters",
                ))
            }
            None => None,
        };
        let name = crate::provider::exposed(&request.customer.full_name)
            .filter(|n| !n.trim().is_empty() && n.chars().count() <= NAME_LEN_MAX)
            .unwrap_or(PLACEHOLDER_NAME);
        let email = crate::provider::exposed(&request.customer_email)
            .filter(|e| e.len() <= EMAIL_LEN_MAX)
            .unwrap_or(PLACEHOLDER_EMAIL);
        let reference: String = request
            .reference
            .chars()
            .take(ORDER_NUMBER_LEN_MAX)
            .collect();
        let body = wire::Direct {
            operation: "request",
            payment: wire::DirectPayment {
                name,
                email,
                country: COUNTRY,
                payment_type_code: PAYMENT_TYPE_CODE,
                merchant_payment_code: request.payment_id.to_string(),
                order_number: (!reference.is_empty()).then_some(reference),
                currency_code: Currency::PHP.code(),
                amount_total: amount_of(request.amount)?,
                redirect_url: return_url,
            },
        };
        let (payment, redirect) = match self.call(&["direct"], &body).await? {
            Ok(raw) => {
                let answer: wire::DirectAnswer = self.decode(&raw)?;
                let redirect = answer
                    .redirect_url
                    .or_else(|| answer.payment.redirect_url.clone());
                let open = matches!(
                    answer.payment.status.as_str(),
                    status::PENDING | status::OPEN
                );
                match &redirect {
                    Some(url) if !valid_redirect_url(url) => {
                        return Err(bad_answer("an invalid redirect URL"))
                    }
                    None if open => {
                        return Err(bad_answer("a GCash payment without a redirect URL"))
                    }
                    _ => {}
                }
                (answer.payment, redirect)
            }
            // The first create went through (its answer was lost): it is that payment, as it
            // now is, without the page address only the first answer carried.
            Err(refusal) if refusal.code == codes::DUPLICATE_PAYMENT => {
                let first = self
                    .query(Key::Code(request.payment_id))
                    .await?
                    .ok_or_else(|| bad_answer("a duplicate it cannot find"))?;
                (first, None)
            }
            Err(refusal) => return Err(refusal.into_error("payment")),
        };
        let transaction = transaction_of(payment, redirect)?;
        if transaction.payment_id != request.payment_id || transaction.amount != request.amount {
            return Err(bad_answer("with a payment of another payment or amount"));
        }
        Ok(transaction)
    }

    async fn get_transaction(
        &self,
        provider_transaction_id: &str,
    ) -> Result<ProviderTransaction, ProviderError> {
        let payment = self.payment(provider_transaction_id).await?;
        transaction_of(payment, None)
    }

    fn supports_lookup(&self) -> bool {
        true
    }

    /// Our payment id is the payment's `merchant_payment_code`, which EBANX can be queried
    /// by; `Ok(None)` only when EBANX says it holds none.
    async fn find_transaction(
        &self,
        payment_id: PaymentId,
        _reference: &str,
    ) -> Result<Option<ProviderTransaction>, ProviderError> {
        match self.query(Key::Code(payment_id)).await? {
            Some(payment) => transaction_of(payment, None).map(Some),
            None => Ok(None),
        }
    }

    async fn capture(
        &self,
        _provider_transaction_id: &str,
        _capture_id: CaptureId,
        _amount: Money,
    ) -> Result<(), ProviderError> {
        Err(ProviderError::rejected(
            "gcash through ebanx has no manual capture: payments are captured when the customer confirms",
        ))
    }

    async fn void(&self, _provider_transaction_id: &str) -> Result<(), ProviderError> {
        Err(ProviderError::rejected(
            "gcash through ebanx holds nothing to void: refund a confirmed payment instead",
        ))
    }

    async fn refund(
        &self,
        provider_transaction_id: &str,
        refund_id: RefundId,
        amount: Money,
    ) -> Result<ProviderRefund, ProviderError> {
        let value = amount_of(amount)?;
        let payment = self.payment(provider_transaction_id).await?;
        let ours = refund_id.to_string();
        let first = payment
            .refunds
            .iter()
            .find(|r| r.merchant_refund_code.as_deref() == Some(ours.as_str()));
        if let Some(first) = first {
            let same_amount = first
                .amount_ext
                .money(amount.currency().code())
                .is_ok_and(|m| m == amount);
            return if first.status == status::REFUND_CANCELLED {
                Err(ProviderError::rejected(
                    "ebanx cancelled the refund made under this refund id",
                ))
            } else if !same_amount {
                Err(ProviderError::rejected(
                    "the same refund id was used with another amount",
                ))
            } else if !valid_id(&first.id) {
                Err(bad_answer("an invalid refund id"))
            } else {
                Ok(ProviderRefund {
                    id: first.id.clone(),
                })
            };
        }
        let body = wire::RefundRequest {
            operation: "request",
            hash: &payment.hash,
            amount: value,
            description: refund_description(refund_id),
            merchant_refund_code: ours.clone(),
        };
        let raw = match self.call(&["refund"], &body).await? {
            Ok(raw) => raw,
            Err(refusal) => return Err(refusal.into_error("refund")),
        };
        let refund = self.decode::<wire::RefundAnswer>(&raw)?.refund;
        if refund
            .merchant_refund_code
            .as_deref()
            .is_some_and(|code| code != ours)
        {
            return Err(bad_answer("with a refund of another refund id"));
        }
        match refund.status.as_str() {
            status::REFUND_CANCELLED => Err(ProviderError::rejected("ebanx cancelled the refund")),
            _ if !valid_id(&refund.id) => Err(bad_answer("an invalid refund id")),
            status::REFUND_REQUESTED | status::REFUND_PENDING | status::REFUND_CONFIRMED => {
                Ok(ProviderRefund { id: refund.id })
            }
            _ => Err(bad_answer("an unknown refund status")),
        }
    }

    async fn health(&self) -> Result<(), ProviderError> {
        #[derive(Serialize)]
        struct Nothing {}
        match self
            .call(&["merchantIntegrationProperties", "get"], &Nothing {})
            .await?
        {
            Ok(_) => Ok(()),
            Err(refusal) => Err(refusal.into_error("health check")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use uuid::Uuid;

    fn from(vars: &[(&str, &str)]) -> EbanxConfig {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        EbanxConfig::from_lookup(|name| vars.get(name).cloned())
    }

    const LIVE_KEY: &str = "live_ik_AbCdEfGhIjKlMnOpQrStUv";

    #[test]
    fn env_defaults_are_test_values_that_production_refuses() {
        let c = from(&[]);
        assert_eq!(c.problems(false), Vec::<String>::new());
        let problems = c.problems(true).join("\n");
        for expected in [
            "EBANX_INTEGRATION_KEY is a test (sandbox) key",
            "EBANX_INTEGRATION_KEY is the built-in test key",
            "EBANX_BASE_URL must use https in production",
        ] {
            assert!(problems.contains(expected), "{problems}");
        }
        assert!(!problems.contains(TEST_INTEGRATION_KEY), "{problems}");
    }

    #[test]
    fn live_keys_and_hosts_are_refused_outside_production_and_test_ones_in_it() {
        let live = from(&[
            ("EBANX_INTEGRATION_KEY", LIVE_KEY),
            (
                "EBANX_PUBLIC_INTEGRATION_KEY",
                "live_pk_AbCdEfGhIjKlMnOpQrStUv",
            ),
            ("EBANX_BASE_URL", PRODUCTION_BASE_URL),
        ]);
        assert_eq!(live.problems(true), Vec::<String>::new());
        let in_test = live.problems(false).join("\n");
        for expected in [
            "EBANX_INTEGRATION_KEY is a live key",
            "EBANX_PUBLIC_INTEGRATION_KEY is a live key",
            "EBANX_BASE_URL points at EBANX's production API outside production",
        ] {
            assert!(in_test.contains(expected), "{in_test}");
        }
        assert!(!in_test.contains(LIVE_KEY), "{in_test}");

        let sandbox = from(&[
            ("EBANX_INTEGRATION_KEY", "test_ik_XRsjfeba9c8ibhVv10NUiw"),
            (
                "EBANX_PUBLIC_INTEGRATION_KEY",
                "test_pk_ORbz0mIejNrVMrxvlUKhUQ",
            ),
            ("EBANX_BASE_URL", "https://sandbox.ebanxpay.com"),
        ]);
        assert_eq!(sandbox.problems(false), Vec::<String>::new());
        let in_production = sandbox.problems(true).join("\n");
        for expected in [
            "EBANX_INTEGRATION_KEY is a test (sandbox) key",
            "EBANX_PUBLIC_INTEGRATION_KEY is a test (sandbox) key",
            "EBANX_BASE_URL points at EBANX's sandbox in production",
        ] {
            assert!(in_production.contains(expected), "{in_production}");
        }
        assert!(!in_production.contains("XRsjfeba9c8ibhVv10NUiw"));
    }

    #[test]
    fn swapped_short_or_missing_keys_are_named_not_echoed() {
        let swapped = from(&[
            ("EBANX_INTEGRATION_KEY", "test_pk_ORbz0mIejNrVMrxvlUKhUQ"),
            (
                "EBANX_PUBLIC_INTEGRATION_KEY",
                "test_ik_XRsjfeba9c8ibhVv10NUiw",
            ),
        ]);
        let text = swapped.problems(false).join("\n");
        assert!(
            text.contains("EBANX_INTEGRATION_KEY is a public integration key"),
            "{text}"
        );
        assert!(
            text.contains("EBANX_PUBLIC_INTEGRATION_KEY is a secret integration key"),
            "{text}"
        );
        assert!(
            !text.contains("ORbz0m") && !text.contains("XRsjfe"),
            "{text}"
        );

        let short = from(&[("EBANX_INTEGRATION_KEY", "test_ik_short")]);
        let text = short.problems(false).join("\n");
        assert!(text.contains("must be 24 to 128 characters"), "{text}");
        let unmarked = from(&[("EBANX_INTEGRATION_KEY", "0123456789abcdef0123456789")]);
        let text = unmarked.problems(false).join("\n");
        assert!(
            text.contains("does not look like an EBANX sandbox"),
            "{text}"
        );
        assert!(!text.contains("0123456789abcdef"), "{text}");
        let missing = EbanxConfig {
            integration_key: "".into(),
            ..from(&[])
        };
        assert_eq!(
            missing.problems(false),
            vec!["EBANX_INTEGRATION_KEY is missing".to_owned()]
        );
        let bad_url = from(&[("EBANX_BASE_URL", "ftp://sandbox.ebanxpay.com")]);
        assert!(bad_url
            .problems(false)
            .contains(&"EBANX_BASE_URL must be an http(s) URL".to_owned()));
    }

    #[test]
    fn debug_never_shows_the_integration_key() {
        let c = from(&[]);
        let provider = EbanxProvider::new(EbanxConfig {
            base_url: "http://127.0.0.1:1".into(),
            ..c.clone()
        })
        .unwrap();
        let printed = format!("{c:?} {provider:?}");
        assert!(!printed.contains(TEST_INTEGRATION_KEY), "{printed}");
    }

    #[test]
    fn amounts_are_written_from_the_decimal_digits() {
        let php = |s| Money::parse(s, Currency::PHP).unwrap();
        for (money, json) in [
            ("1234.60", "1234.60"),
            ("20", "20.00"),
            ("0.01", "0.01"),
            ("999999999999.99", "999999999999.99"),
        ] {
            let amount = amount_of(php(money)).unwrap();
            assert_eq!(serde_json::to_string(&amount).unwrap(), json);
        }
        let body = serde_json::to_string(&wire::Authenticated {
            integration_key: "k",
            body: wire::Query {
                hash: Some("ab"),
                merchant_payment_code: None,
            },
        })
        .unwrap();
        assert_eq!(body, r#"{"integration_key":"k","hash":"ab"}"#);
        assert_eq!(
            amount_of(Money::parse("1", Currency::COP).unwrap())
                .unwrap_err()
                .kind,
            domain::ProviderFailureKind::Rejected
        );
    }

    fn payment(status: &str, extra: &str) -> wire::Payment {
        let id = PaymentId::from_uuid(Uuid::nil());
        serde_json::from_str(&format!(
            r#"{{"hash":"5d643729ca2085b0210897564c680643c4e7e9aef31e77e7","pin":"798605233","country":"ph","merchant_payment_code":"{id}","status":"{status}","amount_br":"129.50","amount_ext":"129.50","currency_ext":"PHP","payment_type_code":"gcash"{extra}}}"#
        ))
        .unwrap()
    }

    #[test]
    fn maps_every_ebanx_status() {
        let php = |s| Money::parse(s, Currency::PHP).unwrap();
        let approved = transaction_of(payment("CO", ""), None).unwrap();
        assert_eq!(approved.status, ProviderTransactionStatus::Approved);
        assert_eq!(approved.amount, php("129.50"));
        assert_eq!(approved.captured_amount, php("129.50"));
        assert_eq!(
            approved.id,
            "5d643729ca2085b0210897564c680643c4e7e9aef31e77e7"
        );

        let url = "https://sandbox.example/gcash/1".to_owned();
        for open in ["PE", "OP"] {
            let pending = transaction_of(payment(open, ""), Some(url.clone())).unwrap();
            assert_eq!(pending.status, ProviderTransactionStatus::Pending);
            assert_eq!(
                pending.next_action,
                Some(NextAction::Redirect { url: url.clone() })
            );
            assert!(pending.captured_amount.is_zero());
        }
        let declined = transaction_of(
            payment(
                "CA",
                r#","transaction_status":{"acquirer":"EBANX","code":"NOK","description":"Not accepted"}"#,
            ),
            None,
        )
        .unwrap();
        assert_eq!(
            declined.status,
            ProviderTransactionStatus::Declined {
                reason: "ebanx_not_accepted".into()
            }
        );
        let expired = transaction_of(payment("CA", ""), None).unwrap();
        assert_eq!(expired.status, ProviderTransactionStatus::Expired);
        assert!(transaction_of(payment("XX", ""), None).is_err());

        let refunded = transaction_of(
            payment(
                "CO",
                r#","refunds":[{"id":"20739","merchant_refund_code":null,"status":"RE","amount_ext":"10.25","description":"a"},{"id":"20740","status":"CA","amount_ext":"5.00"},{"id":"20741","status":"CO","amount_ext":"1.00"}]"#,
            ),
            None,
        )
        .unwrap();
        assert_eq!(refunded.refunded_amount, php("11.25"));
    }

    #[test]
    fn answers_payledger_cannot_rely_on_are_server_errors() {
        let mut other = payment("CO", "");
        other.merchant_payment_code = Some("order-17".into());
        assert!(transaction_of(other, None).is_err());
        let mut bad_hash = payment("CO", "");
        bad_hash.hash = "../../x".into();
        assert!(transaction_of(bad_hash, None).is_err());
        for amount in [r#""0.00""#, r#""1.001""#, r#""-5""#, "1e3"] {
            let text = format!(
                r#"{{"hash":"5d643729ca2085b0210897564c680643c4e7e9aef31e77e7","merchant_payment_code":"{}","status":"CO","amount_ext":{amount},"currency_ext":"PHP"}}"#,
                PaymentId::from_uuid(Uuid::nil())
            );
            let p: wire::Payment = serde_json::from_str(&text).unwrap();
            assert!(transaction_of(p, None).is_err(), "{amount}");
        }
    }

    #[test]
    fn decline_reasons_are_bounded_slugs() {
        assert_eq!(decline_reason(Some("Not accepted")), "ebanx_not_accepted");
        assert_eq!(
            decline_reason(Some("Cancelled by the customer!\n")),
            "ebanx_cancelled_by_the_customer"
        );
        assert_eq!(decline_reason(None), DECLINED_REASON);
        assert_eq!(decline_reason(Some("  ")), DECLINED_REASON);
        assert!(decline_reason(Some(&"x".repeat(500))).len() <= "ebanx_".len() + 64);
    }

    #[test]
    fn hashes_are_hex_of_ebanx_length() {
        assert!(valid_hash(
            "5d643729ca2085b0210897564c680643c4e7e9aef31e77e7"
        ));
        assert!(!valid_hash("5d643729"));
        assert!(!valid_hash(
            "5d643729ca2085b0210897564c680643c4e7e9aef31e77eZ"
        ));
        assert!(!valid_hash(&"a".repeat(65)));
    }

    #[test]
    fn error_summary_keeps_ebanx_code_and_message() {
        assert_eq!(
            error_summary(
                br#"{"status":"ERROR","status_code":"BP-DR-6","status_message":"Amount reported is less than the minimum amount"}"#
            ),
            "BP-DR-6: Amount reported is less than the minimum amount"
        );
        assert_eq!(error_summary(b"<html>"), "unrecognized error body");
        assert_eq!(error_summary(b""), "empty body");
    }
}
