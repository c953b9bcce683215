//! GCash through PayMongo: PayMongo's Payment Intent workflow with the `gcash` method.
//!
//! PayMongo retired the Sources workflow for GCash in favour of Payment Intents, so a create
//! is three calls, all with `Authorization: Basic base64("<secret key>:")` and JSON:API bodies
//! (`{"data":{"attributes":{..}}}`), amounts in centavos (integers), currency `PHP`:
//!
//! 1. `POST /v1/payment_intents` `{amount, currency, payment_method_allowed:["gcash"],
//!    capture_type:"automatic", description, metadata:{payment_id, reference}}` -> `pi_...`;
//! 2. `POST /v1/payment_methods` `{type:"gcash", metadata:{payment_id}}` -> `pm_...`;
//! 3. `POST /v1/payment_intents/{pi}/attach` `{payment_method, return_url}` -> status
//!    `awaiting_next_action` with `next_action.redirect.url`: `Pending` + `Redirect`.
//!
//! Our payment id travels in `metadata.payment_id` and in the description
//! (`payledger <payment id> <reference>`), and PayMongo copies both onto the payment it makes
//! when the customer authorizes, so the `payment.paid` / `payment.failed` webhooks name it.
//! The provider transaction id is the payment intent's (`pi_...`).
//!
//! Status: `GET /v1/payment_intents/{pi}`. Refund: `POST /v1/refunds` `{amount, payment_id
//! (the pay_... of the paid payment), reason:"requested_by_customer", metadata:{refund_id}}`;
//! a repeat finds the first refund by `metadata.refund_id` among the payment's refunds. GCash
//! has neither manual capture nor void: those are refused as `Rejected`. Health:
//! `GET /v1/webhooks`.
//!
//! The payment intent's create carries our payment id and a refund our refund id as
//! PayMongo's `Idempotency-Key` (kept 24 h), so a repeat returns the first result. PayMongo
//! offers no lookup by metadata, so `supports_lookup` stays false: after a lost answer the
//! payment waits for the `payment.paid` event (it names our payment id) or the resolver.

use std::str::FromStr;

use async_trait::async_trait;
use domain::{CaptureId, CaptureMode, Currency, Money, PaymentId, PaymentMethodType, RefundId};
use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use reqwest::{Method, Url};
use rust_decimal::Decimal;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::http::{sanitize, setting};
use crate::http::basic_auth;
use crate::{
    CallOutcome, CreateTransaction, NextAction, PaymentMethodDetails, PaymentProvider,
    ProviderConfigError, ProviderError, ProviderRefund, ProviderTransaction,
    ProviderTransactionStatus,
};

/// Largest response body read from PayMongo.
pub const RESPONSE_BODY_MAX_BYTES: usize = 256 * 1024;
pub const DEFAULT_TIMEOUT_MS: u64 = 10_000;
pub use crate::http::TIMEOUT_MS_MAX;
/// Webhook timestamps older (or further in the future) than this are refused.
pub const DEFAULT_WEBHOOK_TOLERANCE_SECS: u64 = 300;
pub const WEBHOOK_TOLERANCE_SECS_MAX: u64 = 3_600;
pub const SECRET_MIN_LEN: usize = 32;
pub const PRODUCTION_BASE_URL: &str = "https://api.paymongo.com";

/// Test defaults used when the environment leaves a value unset.
pub const TEST_SECRET_KEY: &str = "sk_test_payledger000000000000000000000000";
pub const TEST_WEBHOOK_SECRET: &str = "whsk_payledger_test_000000000000000000000000";
pub const TEST_BASE_URL: &str = "http://127.0.0.1:0";

pub const ENV_BASE_URL: &str = "PAYMONGO_BASE_URL";
pub const ENV_SECRET_KEY: &str = "PAYMONGO_SECRET_KEY";
pub const ENV_PUBLIC_KEY: &str = "PAYMONGO_PUBLIC_KEY";
pub const ENV_WEBHOOK_SECRET: &str = "PAYMONGO_WEBHOOK_SECRET";
pub const ENV_WEBHOOK_TOLERANCE_SECS: &str = "PAYMONGO_WEBHOOK_TOLERANCE_SECS";

const ID_LEN_MAX: usize = 128;
const REDIRECT_URL_LEN_MAX: usize = 2_048;
const DESCRIPTION_PREFIX: &str = "payledger ";
const DESCRIPTION_LEN_MAX: usize = 255;
const REFUND_REASON: &str = "requested_by_customer";
/// PayMongo's idempotency header: a repeat of a create with the same key returns the first
/// result instead of creating again.
pub(crate) const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";

/// Everything the GCash/PayMongo adapter and its webhook verifier need.
#[derive(Debug, Clone)]
pub struct PaymongoConfig {
    /// `https://api.paymongo.com`; the emulator's address in tests.
    pub base_url: String,
    /// `sk_test_...` or `sk_live_...`; it also decides the mode ([`Self::livemode`]).
    pub secret_key: SecretString,
    /// `pk_test_...` / `pk_live_...`: not used by the server-side flow; checked if set.
    pub public_key: Option<String>,
    /// The webhook's signing secret (`whsk_...`), HMAC-SHA256 key of `Paymongo-Signature`.
    pub webhook_secret: SecretString,
    /// Webhook timestamps further than this from their receipt are refused.
    pub webhook_tolerance_secs: u64,
    /// Whole-request timeout in milliseconds.
    pub timeout_ms: u64,
}

impl PaymongoConfig {
    /// Reads `PAYMONGO_SECRET_KEY`, `PAYMONGO_PUBLIC_KEY` (optional),
    /// `PAYMONGO_WEBHOOK_SECRET`, `PAYMONGO_BASE_URL` and `PAYMONGO_WEBHOOK_TOLERANCE_SECS`
    /// (default 300); unset or empty values get the test defaults above.
    pub fn from_env() -> Self {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let get = |name: &str| setting(lookup(name));
        PaymongoConfig {
            base_url: get(ENV_BASE_URL).unwrap_or_else(|| TEST_BASE_URL.to_owned()),
            secret_key: get(ENV_SECRET_KEY)
                .unwrap_or_else(|| TEST_SECRET_KEY.to_owned())
                .into(),
            public_key: get(ENV_PUBLIC_KEY),
            webhook_secret: get(ENV_WEBHOOK_SECRET)
                .unwrap_or_else(|| TEST_WEBHOOK_SECRET.to_owned())
                .into(),
            // An unreadable value becomes 0, which `problems()` reports.
            webhook_tolerance_secs: get(ENV_WEBHOOK_TOLERANCE_SECS)
                .map(|v| v.parse().unwrap_or(0))
                .unwrap_or(DEFAULT_WEBHOOK_TOLERANCE_SECS),
            timeout_ms: DEFAULT_TIMEOUT_MS,
        }
    }

    /// Live mode when the secret key is a live key (`sk_live_`): webhooks are then checked
    /// against the `li` signature, else against `te`.
    pub fn livemode(&self) -> bool {
        self.secret_key.expose_secret().starts_with("sk_live_")
    }

    /// Every problem that makes this configuration unfit for `production` (or, with `false`,
    /// for a test environment). Messages name the variable, never its value.
    pub fn problems(&self, production: bool) -> Vec<String> {
        let mut problems = Vec::new();
        let (wanted, unwanted) = if production {
            ("live", "test")
        } else {
            ("test", "live")
        };
        let key = self.secret_key.expose_secret();
        if key.is_empty() {
            problems.push("PAYMONGO_SECRET_KEY is missing".to_owned());
        } else {
            if key.starts_with(&format!("sk_{unwanted}_")) {
                problems.push(format!(
                    "PAYMONGO_SECRET_KEY is a {unwanted} key; {wanted} keys are required here"
                ));
            } else if !key.starts_with(&format!("sk_{wanted}_")) {
                problems.push(format!(
                    "PAYMONGO_SECRET_KEY does not look like a PayMongo {wanted} secret key \
                     (`sk_{wanted}_...`)"
                ));
            }
            if key.chars().count() < SECRET_MIN_LEN {
                problems.push(format!(
                    "PAYMONGO_SECRET_KEY is shorter than {SECRET_MIN_LEN} characters"
                ));
            }
            if production && key == TEST_SECRET_KEY {
                problems.push("PAYMONGO_SECRET_KEY is the built-in test key".to_owned());
            }
        }
        if let Some(public) = &self.public_key {
            if public.starts_with(&format!("pk_{unwanted}_")) {
                problems.push(format!(
                    "PAYMONGO_PUBLIC_KEY is a {unwanted} key; {wanted} keys are required here"
                ));
            } else if !public.starts_with(&format!("pk_{wanted}_")) {
                problems.push(format!(
                    "PAYMONGO_PUBLIC_KEY does not look like a PayMongo {wanted} public key"
                ));
            }
        }
        let webhook_secret = self.webhook_secret.expose_secret();
        if webhook_secret.is_empty() {
            problems.push("PAYMONGO_WEBHOOK_SECRET is missing".to_owned());
        } else {
            if webhook_secret.chars().count() < SECRET_MIN_LEN {
                problems.push(format!(
                    "PAYMONGO_WEBHOOK_SECRET is shorter than {SECRET_MIN_LEN} characters"
                ));
            }
            if production && webhook_secret == TEST_WEBHOOK_SECRET {
                problems.push("PAYMONGO_WEBHOOK_SECRET is the built-in test secret".to_owned());
            }
        }
        if self.webhook_tolerance_secs == 0
            || self.webhook_tolerance_secs > WEBHOOK_TOLERANCE_SECS_MAX
        {
            problems.push(format!(
                "PAYMONGO_WEBHOOK_TOLERANCE_SECS must be a number of seconds from 1 to \
                 {WEBHOOK_TOLERANCE_SECS_MAX}"
            ));
        }
        match Url::parse(&self.base_url) {
            Err(_) => problems.push("PAYMONGO_BASE_URL is not a URL".to_owned()),
            Ok(url) => {
                if !matches!(url.scheme(), "http" | "https") {
                    problems.push("PAYMONGO_BASE_URL must be an http(s) URL".to_owned());
                }
                if production && url.scheme() != "https" {
                    problems.push("PAYMONGO_BASE_URL must use https in production".to_owned());
                }
            }
        }
        problems
    }
}

/// The GCash adapter (through PayMongo).
#[derive(Debug)]
pub struct PaymongoProvider {
    http: reqwest::Client,
    base_url: Url,
    auth: HeaderValue,
    secret_key: SecretString,
    timeout_ms: u64,
}

impl PaymongoProvider {
    /// Recorded in events: the payment method is GCash, PayMongo is the gateway.
    pub const NAME: &'static str = "gcash";

    pub fn new(config: PaymongoConfig) -> Result<Self, ProviderConfigError> {
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
        if config.secret_key.expose_secret().is_empty() {
            return Err(invalid("secret_key is required"));
        }
        let auth = basic_auth(config.secret_key.expose_secret())
            .ok_or_else(|| invalid("secret_key must be printable ASCII without `:`"))?;
        let http = crate::http::provider_client(config.timeout_ms).map_err(invalid)?;
        Ok(PaymongoProvider {
            http,
            base_url,
            auth,
            secret_key: config.secret_key,
            timeout_ms: config.timeout_ms,
        })
    }

    fn url(&self, segments: &[&str]) -> Result<Url, ProviderError> {
        if !segments.iter().all(|s| valid_id(s)) {
            return Err(ProviderError::rejected("invalid PayMongo id"));
        }
        let mut url = self.base_url.clone();
        url.path_segments_mut()
            .map_err(|_| ProviderError::rejected("paymongo base_url cannot take a path"))?
            .pop_if_empty()
            .extend(segments);
        Ok(url)
    }

    async fn call<B: Serialize>(
        &self,
        method: Method,
        url: Url,
        body: Option<&B>,
        idempotency_key: Option<&str>,
    ) -> Result<Vec<u8>, ProviderError> {
        let mut request = self
            .http
            .request(method, url)
            .header(AUTHORIZATION, self.auth.clone());
        if let Some(key) = idempotency_key {
            let value = HeaderValue::from_str(key)
                .map_err(|_| ProviderError::rejected("invalid PayMongo idempotency key"))?;
            request = request.header(IDEMPOTENCY_KEY_HEADER, value);
        }
        if let Some(body) = body {
            let body = serde_json::to_vec(body)
                .map_err(|_| ProviderError::rejected("cannot encode the PayMongo request"))?;
            request = request.header(CONTENT_TYPE, "application/json").body(body);
        }
        let response = request.send().await.map_err(|e| self.transport_error(e))?;
        let status = response.status();
        let body = self.read_body(response).await?;
        if status.is_success() {
            return Ok(body);
        }
        let detail = self.scrub(&format!(
            "paymongo answered {}: {}",
            status.as_u16(),
            error_summary(&body)
        ));
        Err(if status.is_client_error() {
            ProviderError::rejected(detail)
        } else {
            ProviderError::server_error(detail)
        })
    }

    async fn read_body(&self, response: reqwest::Response) -> Result<Vec<u8>, ProviderError> {
        crate::http::read_body("paymongo", response, RESPONSE_BODY_MAX_BYTES, |e| {
            self.transport_error(e)
        })
        .await
    }

    fn transport_error(&self, error: reqwest::Error) -> ProviderError {
        crate::http::transport_error("paymongo", error, self.timeout_ms, |t| self.scrub(t))
    }

    fn scrub(&self, text: &str) -> String {
        crate::http::scrub(text, [self.secret_key.expose_secret()])
    }

    fn decode<T: for<'de> Deserialize<'de>>(&self, body: &[u8]) -> Result<T, ProviderError> {
        crate::http::decode("paymongo", body)
    }

    async fn fetch_intent(&self, id: &str) -> Result<wire::Intent, ProviderError> {
        let url = self.url(&["v1", "payment_intents", id])?;
        let raw = self.call::<()>(Method::GET, url, None, None).await?;
        let intent = self.decode::<wire::Envelope<wire::Intent>>(&raw)?.data;
        if intent.id != id {
            return Err(ProviderError::server_error(
                "paymongo answered with another payment intent",
            ));
        }
        Ok(intent)
    }
}

fn valid_id(id: &str) -> bool {
    crate::http::path_safe_id(id, ID_LEN_MAX)
}

/// An amount in centavos, as PayMongo takes it.
pub fn centavos(amount: Money) -> Result<i64, ProviderError> {
    if amount.currency() != Currency::PHP {
        return Err(ProviderError::rejected("gcash settles PHP only"));
    }
    let mut decimal = amount.amount();
    decimal.rescale(2);
    i64::try_from(decimal.mantissa()).map_err(|_| ProviderError::rejected("amount is too large"))
}

/// Centavos back to money; zero is allowed (totals).
pub(crate) fn from_centavos(centavos: i64, currency: &str) -> Result<Money, String> {
    let currency = Currency::from_str(currency).map_err(|_| "an unknown currency".to_owned())?;
    if centavos < 0 {
        return Err("a negative amount".to_owned());
    }
    if centavos == 0 {
        return Ok(Money::zero(currency));
    }
    Money::new(Decimal::new(centavos, 2), currency).map_err(|_| "an invalid amount".to_owned())
}

/// PayMongo's JSON:API shapes, shared by this adapter and the webhook verifier
/// (`crate::paymongo`). The emulator (`emulators::paymongo`) writes its own from
/// PayMongo's documentation, so a field misnamed here fails the contract tests instead of
/// passing both sides. Unknown fields are tolerated on input.
pub(crate) mod wire {
    use super::*;

    pub(crate) type Metadata = serde_json::Map<String, serde_json::Value>;

    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub(crate) struct Envelope<T> {
        pub data: T,
    }

    /// A request body: `{"data":{"attributes":{..}}}`.
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub(crate) struct Create<A> {
        pub attributes: A,
    }

    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub(crate) struct Resource<A> {
        pub id: String,
        #[serde(rename = "type")]
        pub kind: String,
        pub attributes: A,
    }

    pub(crate) type Intent = Resource<IntentAttributes>;
    pub(crate) type Payment = Resource<PaymentAttributes>;
    pub(crate) type Refund = Resource<RefundAttributes>;

    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub(crate) struct CreateIntent {
        pub amount: i64,
        pub currency: String,
        pub payment_method_allowed: Vec<String>,
        #[serde(default)]
        pub capture_type: Option<String>,
        #[serde(default)]
        pub description: Option<String>,
        #[serde(default)]
        pub statement_descriptor: Option<String>,
        #[serde(default)]
        pub metadata: Option<Metadata>,
    }

    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub(crate) struct CreatePaymentMethod {
        #[serde(rename = "type")]
        pub kind: String,
        #[serde(default)]
        pub metadata: Option<Metadata>,
    }

    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub(crate) struct PaymentMethodAttributes {
        #[serde(rename = "type")]
        pub kind: String,
        #[serde(default)]
        pub livemode: bool,
        #[serde(default)]
        pub metadata: Option<Metadata>,
    }

    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub(crate) struct Attach {
        pub payment_method: String,
        #[serde(default)]
        pub return_url: Option<String>,
    }

    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub(crate) struct CreateRefund {
        pub amount: i64,
        pub payment_id: String,
        pub reason: String,
        #[serde(default)]
        pub notes: Option<String>,
        #[serde(default)]
        pub metadata: Option<Metadata>,
    }

    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub(crate) struct IntentAttributes {
        pub amount: i64,
        pub currency: String,
        pub status: String,
        #[serde(default)]
        pub description: Option<String>,
        #[serde(default)]
        pub livemode: bool,
        #[serde(default)]
        pub capture_type: Option<String>,
        #[serde(default)]
        pub payment_method_allowed: Vec<String>,
        #[serde(default)]
        pub payments: Vec<Payment>,
        #[serde(default)]
        pub next_action: Option<NextActionWire>,
        #[serde(default)]
        pub last_payment_error: Option<serde_json::Value>,
        #[serde(default)]
        pub metadata: Option<Metadata>,
        #[serde(default)]
        pub created_at: Option<i64>,
        #[serde(default)]
        pub updated_at: Option<i64>,
    }

    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub(crate) struct NextActionWire {
        #[serde(rename = "type")]
        pub kind: String,
        #[serde(default)]
        pub redirect: Option<Redirect>,
    }

    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub(crate) struct Redirect {
        pub url: String,
        #[serde(default)]
        pub return_url: Option<String>,
    }

    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub(crate) struct PaymentAttributes {
        pub amount: i64,
        pub currency: String,
        pub status: String,
        #[serde(default)]
        pub description: Option<String>,
        #[serde(default)]
        pub livemode: bool,
        #[serde(default)]
        pub payment_intent_id: Option<String>,
        #[serde(default)]
        pub metadata: Option<Metadata>,
        #[serde(default)]
        pub refunds: Vec<Refund>,
        #[serde(default)]
        pub source: Option<serde_json::Value>,
        #[serde(default)]
        pub failed_code: Option<String>,
        #[serde(default)]
        pub failed_message: Option<String>,
        #[serde(default)]
        pub created_at: Option<i64>,
        #[serde(default)]
        pub paid_at: Option<i64>,
    }

    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub(crate) struct RefundAttributes {
        pub amount: i64,
        pub currency: String,
        pub payment_id: String,
        pub reason: String,
        pub status: String,
        #[serde(default)]
        pub notes: Option<String>,
        #[serde(default)]
        pub livemode: bool,
        #[serde(default)]
        pub metadata: Option<Metadata>,
        #[serde(default)]
        pub created_at: Option<i64>,
    }

    /// A webhook event. `data` is kept as JSON until the event type says what it holds.
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub(crate) struct EventAttributes {
        #[serde(rename = "type")]
        pub kind: String,
        pub livemode: bool,
        pub data: serde_json::Value,
        #[serde(default)]
        pub previous_data: Option<serde_json::Value>,
        #[serde(default)]
        pub created_at: Option<i64>,
        #[serde(default)]
        pub updated_at: Option<i64>,
    }

    pub(crate) type Event = Resource<EventAttributes>;

    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub(crate) struct Errors {
        pub errors: Vec<ErrorItem>,
    }

    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub(crate) struct ErrorItem {
        pub code: String,
        #[serde(default)]
        pub detail: Option<String>,
    }

    /// `payledger <payment id> <reference>`, at most 255 characters.
    pub(crate) fn description(payment_id: PaymentId, reference: &str) -> String {
        format!("{DESCRIPTION_PREFIX}{payment_id} {reference}")
            .chars()
            .take(DESCRIPTION_LEN_MAX)
            .collect()
    }

    /// Our payment id: `metadata.payment_id`, else the one in the description.
    pub(crate) fn payment_id_of(
        metadata: Option<&Metadata>,
        description: Option<&str>,
    ) -> Option<PaymentId> {
        if let Some(id) = metadata
            .and_then(|m| m.get("payment_id"))
            .and_then(|v| v.as_str())
        {
            return PaymentId::from_str(id).ok();
        }
        let rest = description?.strip_prefix(DESCRIPTION_PREFIX)?;
        PaymentId::from_str(rest.get(..36)?).ok()
    }

    pub(crate) fn metadata(pairs: &[(&str, String)]) -> Metadata {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), serde_json::Value::String(v.clone())))
            .collect()
    }
}

impl PaymongoProvider {
    fn transaction_of(&self, intent: wire::Intent) -> Result<ProviderTransaction, ProviderError> {
        let bad = |what: &str| ProviderError::server_error(format!("paymongo answered {what}"));
        let a = &intent.attributes;
        let payment_id = wire::payment_id_of(a.metadata.as_ref(), a.description.as_deref())
            .ok_or_else(|| bad("a payment intent without our payment id"))?;
        let amount = from_centavos(a.amount, &a.currency).map_err(|p| bad(&p))?;
        if amount.is_zero() {
            return Err(bad("a zero amount"));
        }
        let zero = Money::zero(amount.currency());
        let paid: Vec<&wire::Payment> = a
            .payments
            .iter()
            .filter(|p| p.attributes.status == "paid")
            .collect();
        let mut captured = zero;
        let mut refunded = zero;
        for payment in &paid {
            let p = &payment.attributes;
            captured = add_centavos(captured, p.amount, &p.currency).map_err(|e| bad(&e))?;
            for refund in p.refunds.iter().filter(|r| r.attributes.status != "failed") {
                let r = &refund.attributes;
                refunded = add_centavos(refunded, r.amount, &r.currency).map_err(|e| bad(&e))?;
            }
        }
        let mut next_action = None;
        let status = match a.status.as_str() {
            "succeeded" => ProviderTransactionStatus::Approved,
            "awaiting_capture" => ProviderTransactionStatus::Authorized,
            "awaiting_next_action" | "processing" => {
                next_action = a
                    .next_action
                    .as_ref()
                    .and_then(|n| n.redirect.as_ref())
                    .map(|r| NextAction::Redirect { url: r.url.clone() });
                ProviderTransactionStatus::Pending
            }
            // Back to waiting for a payment method: the customer's attempt failed, or (no
            // attempt at all, since we attach at create) the GCash authorization window lapsed.
            "awaiting_payment_method" => match failure_reason(&intent) {
                Some(reason) => ProviderTransactionStatus::Declined { reason },
                None => ProviderTransactionStatus::Expired,
            },
            "cancelled" => ProviderTransactionStatus::Failed {
                reason: "cancelled".to_owned(),
            },
            _ => return Err(bad("an unknown payment intent status")),
        };
        if status != ProviderTransactionStatus::Approved {
            captured = zero;
        }
        Ok(ProviderTransaction {
            id: intent.id,
            payment_id,
            status,
            amount,
            captured_amount: captured,
            refunded_amount: refunded,
            next_action,
        })
    }
}

/// Why the last attempt failed: the newest failed payment's code, else `last_payment_error`.
fn failure_reason(intent: &wire::Intent) -> Option<String> {
    let a = &intent.attributes;
    if let Some(failed) = a
        .payments
        .iter()
        .rev()
        .find(|p| p.attributes.status == "failed")
    {
        return Some(payment_failure_reason(&failed.attributes));
    }
    let error = a.last_payment_error.as_ref().filter(|e| !e.is_null())?;
    Some(
        error
            .get("code")
            .or_else(|| error.get("failed_code"))
            .and_then(|c| c.as_str())
            .map(|c| format!("gcash_{}", sanitize(c, 64)))
            .unwrap_or_else(|| FAILED_REASON.to_owned()),
    )
}

/// Reason recorded for a failed payment that names no code.
pub const FAILED_REASON: &str = "payment_failed";

pub(crate) fn payment_failure_reason(payment: &wire::PaymentAttributes) -> String {
    payment
        .failed_code
        .as_deref()
        .map(|c| sanitize(c, 64))
        .filter(|c| !c.trim().is_empty())
        .map(|c| format!("gcash_{c}"))
        .unwrap_or_else(|| FAILED_REASON.to_owned())
}

fn add_centavos(total: Money, centavos: i64, currency: &str) -> Result<Money, String> {
    total
        .checked_add(from_centavos(centavos, currency)?)
        .map_err(|_| "amounts in another currency".to_owned())
}

#[async_trait]
impl PaymentProvider for PaymongoProvider {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    /// PayMongo keeps an `Idempotency-Key` for 24 hours; an hour is kept as a margin.
    fn create_idempotency_window(&self) -> Option<std::time::Duration> {
        Some(std::time::Duration::from_secs(23 * 3_600))
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

    async fn create_transaction(
        &self,
        request: &CreateTransaction,
    ) -> Result<ProviderTransaction, ProviderError> {
        if !matches!(request.method, PaymentMethodDetails::Gcash) {
            return Err(ProviderError::rejected(
                "gcash takes only the GCASH payment method",
            ));
        }
        if request.capture_mode == CaptureMode::Manual {
            return Err(ProviderError::rejected(
                "gcash has no manual capture: use automatic capture",
            ));
        }
        let return_url = request
            .return_url
            .as_deref()
            .filter(|u| Url::parse(u).is_ok_and(|u| matches!(u.scheme(), "http" | "https")))
            .ok_or_else(|| {
                ProviderError::rejected("gcash needs a return_url to send the customer back to")
            })?;
        let amount = centavos(request.amount)?;
        let payment_id = request.payment_id.to_string();

        let intent_body = wire::Envelope {
            data: wire::Create {
                attributes: wire::CreateIntent {
                    amount,
                    currency: Currency::PHP.code().to_owned(),
                    payment_method_allowed: vec!["gcash".to_owned()],
                    capture_type: Some("automatic".to_owned()),
                    description: Some(wire::description(request.payment_id, &request.reference)),
                    statement_descriptor: None,
                    metadata: Some(wire::metadata(&[
                        ("payment_id", payment_id.clone()),
                        ("reference", request.reference.clone()),
                    ])),
                },
            },
        };
        let url = self.url(&["v1", "payment_intents"])?;
        let raw = self
            .call(Method::POST, url, Some(&intent_body), Some(&payment_id))
            .await?;
        let intent = self.decode::<wire::Envelope<wire::Intent>>(&raw)?.data;
        if !valid_id(&intent.id) {
            return Err(ProviderError::server_error(
                "paymongo answered an invalid payment intent id",
            ));
        }

        let method_body = wire::Envelope {
            data: wire::Create {
                attributes: wire::CreatePaymentMethod {
                    kind: "gcash".to_owned(),
                    metadata: Some(wire::metadata(&[("payment_id", payment_id)])),
                },
            },
        };
        let url = self.url(&["v1", "payment_methods"])?;
        let raw = self
            .call(Method::POST, url, Some(&method_body), None)
            .await?;
        let method = self
            .decode::<wire::Envelope<wire::Resource<wire::PaymentMethodAttributes>>>(&raw)?
            .data;

        let attach_body = wire::Envelope {
            data: wire::Create {
                attributes: wire::Attach {
                    payment_method: method.id,
                    return_url: Some(return_url.to_owned()),
                },
            },
        };
        let url = self.url(&["v1", "payment_intents", &intent.id, "attach"])?;
        let attached = match self.call(Method::POST, url, Some(&attach_body), None).await {
            Ok(raw) => self.decode::<wire::Envelope<wire::Intent>>(&raw)?.data,
            // A repeat of a create that went through: the key answered the first intent, which
            // takes no second payment method, so it is answered as it now is.
            Err(refused) if refused.outcome() == CallOutcome::Refused => {
                match self.fetch_intent(&intent.id).await {
                    Ok(current) if current.attributes.status != "awaiting_payment_method" => {
                        current
                    }
                    _ => return Err(refused),
                }
            }
            Err(error) => return Err(error),
        };
        if attached.id != intent.id {
            return Err(ProviderError::server_error(
                "paymongo attached another payment intent",
            ));
        }
        let transaction = self.transaction_of(attached)?;
        if transaction.payment_id != request.payment_id || transaction.amount != request.amount {
            return Err(ProviderError::server_error(
                "paymongo answered with a payment intent of another payment or amount",
            ));
        }
        match &transaction.next_action {
            Some(NextAction::Redirect { url })
                if url.len() <= REDIRECT_URL_LEN_MAX
                    && Url::parse(url).is_ok_and(|u| matches!(u.scheme(), "http" | "https")) =>
            {
                Ok(transaction)
            }
            _ if transaction.status == ProviderTransactionStatus::Pending => Err(
                ProviderError::server_error("paymongo answered without a GCash redirect URL"),
            ),
            _ => Ok(transaction),
        }
    }

    async fn get_transaction(
        &self,
        provider_transaction_id: &str,
    ) -> Result<ProviderTransaction, ProviderError> {
        let intent = self.fetch_intent(provider_transaction_id).await?;
        self.transaction_of(intent)
    }

    async fn capture(
        &self,
        _provider_transaction_id: &str,
        _capture_id: CaptureId,
        _amount: Money,
    ) -> Result<(), ProviderError> {
        Err(ProviderError::rejected(
            "gcash has no manual capture: payments are captured when the customer authorizes",
        ))
    }

    async fn void(&self, _provider_transaction_id: &str) -> Result<(), ProviderError> {
        Err(ProviderError::rejected(
            "gcash payments cannot be voided: refund them instead",
        ))
    }

    async fn refund(
        &self,
        provider_transaction_id: &str,
        refund_id: RefundId,
        amount: Money,
    ) -> Result<ProviderRefund, ProviderError> {
        let centavos = centavos(amount)?;
        let intent = self.fetch_intent(provider_transaction_id).await?;
        let payment = intent
            .attributes
            .payments
            .iter()
            .find(|p| p.attributes.status == "paid")
            .ok_or_else(|| ProviderError::rejected("gcash payment has nothing paid to refund"))?;
        let refund_key = refund_id.to_string();
        let first = payment.attributes.refunds.iter().find(|r| {
            r.attributes
                .metadata
                .as_ref()
                .and_then(|m| m.get("refund_id"))
                .and_then(|v| v.as_str())
                == Some(refund_key.as_str())
        });
        if let Some(first) = first {
            return if first.attributes.amount == centavos && valid_id(&first.id) {
                Ok(ProviderRefund {
                    id: first.id.clone(),
                })
            } else {
                Err(ProviderError::rejected(
                    "the same refund id was used with another amount",
                ))
            };
        }
        let body = wire::Envelope {
            data: wire::Create {
                attributes: wire::CreateRefund {
                    amount: centavos,
                    payment_id: payment.id.clone(),
                    reason: REFUND_REASON.to_owned(),
                    notes: Some(format!("payledger refund {refund_id}")),
                    metadata: Some(wire::metadata(&[
                        ("refund_id", refund_key.clone()),
                        (
                            "payment_id",
                            wire::payment_id_of(
                                intent.attributes.metadata.as_ref(),
                                intent.attributes.description.as_deref(),
                            )
                            .map(|p| p.to_string())
                            .unwrap_or_default(),
                        ),
                    ])),
                },
            },
        };
        let url = self.url(&["v1", "refunds"])?;
        let raw = self
            .call(Method::POST, url, Some(&body), Some(&refund_key))
            .await?;
        let refund = self.decode::<wire::Envelope<wire::Refund>>(&raw)?.data;
        match refund.attributes.status.as_str() {
            "failed" => Err(ProviderError::rejected("paymongo refused the refund")),
            _ if !valid_id(&refund.id) => Err(ProviderError::server_error(
                "paymongo answered an invalid refund id",
            )),
            "pending" | "succeeded" | "processing" => Ok(ProviderRefund { id: refund.id }),
            _ => Err(ProviderError::server_error(
                "paymongo answered an unknown refund status",
            )),
        }
    }

    async fn health(&self) -> Result<(), ProviderError> {
        let url = self.url(&["v1", "webhooks"])?;
        self.call::<()>(Method::GET, url, None, None).await?;
        Ok(())
    }
}

/// PayMongo's first error code and detail, printable and bounded.
fn error_summary(body: &[u8]) -> String {
    crate::http::error_summary(body, |errors: wire::Errors| {
        Some(match errors.errors.first() {
            Some(first) => match &first.detail {
                Some(detail) => format!("{}: {}", sanitize(&first.code, 64), sanitize(detail, 160)),
                None => sanitize(&first.code, 64),
            },
            None => "empty error list".to_owned(),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::ProviderFailureKind;
    use std::collections::HashMap;
    use uuid::Uuid;

    fn from(vars: &[(&str, &str)]) -> PaymongoConfig {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        PaymongoConfig::from_lookup(|name| vars.get(name).cloned())
    }

    #[test]
    fn env_defaults_are_test_values_that_production_refuses() {
        let c = from(&[]);
        assert!(!c.livemode());
        assert_eq!(c.webhook_tolerance_secs, 300);
        assert!(c.webhook_secret.expose_secret().len() >= SECRET_MIN_LEN);
        assert!(c.secret_key.expose_secret().len() >= SECRET_MIN_LEN);
        assert_eq!(c.problems(false), Vec::<String>::new());
        let problems = c.problems(true).join("\n");
        for expected in [
            "PAYMONGO_SECRET_KEY is a test key",
            "PAYMONGO_SECRET_KEY is the built-in test key",
            "PAYMONGO_WEBHOOK_SECRET is the built-in test secret",
            "PAYMONGO_BASE_URL must use https in production",
        ] {
            assert!(problems.contains(expected), "{problems}");
        }
    }

    #[test]
    fn live_keys_outside_production_and_other_problems_are_named_not_echoed() {
        let live = from(&[
            (
                "PAYMONGO_SECRET_KEY",
                "sk_live_abcdefghijklmnopqrstuvwxyz01",
            ),
            (
                "PAYMONGO_PUBLIC_KEY",
                "pk_live_abcdefghijklmnopqrstuvwxyz01",
            ),
            (
                "PAYMONGO_WEBHOOK_SECRET",
                "whsk_abcdefghijklmnopqrstuvwxyz0123",
            ),
            ("PAYMONGO_BASE_URL", PRODUCTION_BASE_URL),
        ]);
        assert!(live.livemode());
        assert_eq!(live.problems(true), Vec::<String>::new());
        let in_test = live.problems(false).join("\n");
        assert!(
            in_test.contains("PAYMONGO_SECRET_KEY is a live key"),
            "{in_test}"
        );
        assert!(
            in_test.contains("PAYMONGO_PUBLIC_KEY is a live key"),
            "{in_test}"
        );

        let bad = from(&[
            ("PAYMONGO_SECRET_KEY", "sk_live_short"),
            ("PAYMONGO_PUBLIC_KEY", "pk_test_abc"),
            ("PAYMONGO_WEBHOOK_SECRET", "whsk_short"),
            ("PAYMONGO_WEBHOOK_TOLERANCE_SECS", "five minutes"),
            ("PAYMONGO_BASE_URL", "http://api.paymongo.com"),
        ]);
        let text = bad.problems(true).join("\n");
        for expected in [
            "PAYMONGO_SECRET_KEY is shorter than 32",
            "PAYMONGO_PUBLIC_KEY is a test key",
            "PAYMONGO_WEBHOOK_SECRET is shorter than 32",
            "PAYMONGO_WEBHOOK_TOLERANCE_SECS must be",
            "PAYMONGO_BASE_URL must use https",
        ] {
            assert!(text.contains(expected), "{text}");
        }
        for value in ["sk_live_short", "whsk_short", "five minutes"] {
            assert!(!text.contains(value), "{text}");
        }
        let missing = PaymongoConfig {
            secret_key: "".into(),
            webhook_secret: "".into(),
            ..live
        };
        assert_eq!(
            missing.problems(true),
            vec![
                "PAYMONGO_SECRET_KEY is missing".to_owned(),
                "PAYMONGO_WEBHOOK_SECRET is missing".to_owned()
            ]
        );
    }

    #[test]
    fn debug_never_shows_secrets() {
        let c = from(&[]);
        let provider = PaymongoProvider::new(PaymongoConfig {
            base_url: "http://127.0.0.1:1".into(),
            ..c.clone()
        })
        .unwrap();
        let printed = format!("{c:?} {provider:?}");
        assert!(!printed.contains(TEST_SECRET_KEY), "{printed}");
        assert!(!printed.contains(TEST_WEBHOOK_SECRET), "{printed}");
    }

    #[test]
    fn centavos_are_exact_both_ways() {
        let php = |s| Money::parse(s, Currency::PHP).unwrap();
        assert_eq!(centavos(php("129.50")).unwrap(), 12_950);
        assert_eq!(centavos(php("20")).unwrap(), 2_000);
        assert_eq!(centavos(php("1000000000000")).unwrap(), 100_000_000_000_000);
        assert_eq!(from_centavos(12_950, "PHP").unwrap(), php("129.50"));
        assert!(from_centavos(0, "PHP").unwrap().is_zero());
        assert!(from_centavos(-1, "PHP").is_err());
        assert!(from_centavos(1, "XXX").is_err());
        assert_eq!(
            centavos(Money::parse("1", Currency::COP).unwrap())
                .unwrap_err()
                .kind,
            ProviderFailureKind::Rejected
        );
    }

    #[test]
    fn our_payment_id_comes_from_metadata_or_the_description() {
        let id = PaymentId::from_uuid(Uuid::new_v4());
        let meta = wire::metadata(&[("payment_id", id.to_string())]);
        assert_eq!(wire::payment_id_of(Some(&meta), None), Some(id));
        let description = wire::description(id, "order-1");
        assert_eq!(description, format!("payledger {id} order-1"));
        assert_eq!(wire::payment_id_of(None, Some(&description)), Some(id));
        assert_eq!(wire::payment_id_of(None, Some("order-1")), None);
        let long = wire::description(id, &"x".repeat(400));
        assert_eq!(long.chars().count(), 255);
        let bad_meta = wire::metadata(&[("payment_id", "nope".into())]);
        assert_eq!(
            wire::payment_id_of(Some(&bad_meta), Some(&description)),
            None
        );
    }

    #[test]
    fn error_summary_keeps_the_first_code_and_detail() {
        assert_eq!(
            error_summary(
                br#"{"errors":[{"code":"parameter_below_minimum","detail":"amount cannot be less than 2000.","source":{"pointer":"amount","attribute":"amount"}}]}"#
            ),
            "parameter_below_minimum: amount cannot be less than 2000."
        );
        assert_eq!(error_summary(br#"{"errors":[]}"#), "empty error list");
        assert_eq!(error_summary(b"oops"), "unrecognized error body");
    }
}
