//! Wompi (Colombia) adapter: a real HTTP client of Wompi's API v1 (`https://sandbox.wompi.co/v1`,
//! `https://production.wompi.co/v1`; the bundled emulator is `emulators::wompi`).
//!
//! * Money is COP in `amount_in_cents` (an integer: `129000.00` COP -> `12900000`).
//! * Methods: `CARD` (a token from Wompi's own `POST /tokens/cards`), `NEQUI`, `PSE`,
//!   `BANCOLOMBIA_TRANSFER`, `BANCOLOMBIA_QR` and `DAVIPLATA` (see "Rails" below).
//! * Keys: the public key (`Authorization: Bearer pub_...`) reads the merchant
//!   (`GET /merchants/{public_key}`, which carries the acceptance tokens) and the PSE banks
//!   (`GET /pse/financial_institutions`); the private key (`Bearer prv_...`) creates, reads,
//!   searches and voids transactions.
//! * Every create carries the acceptance tokens (`acceptance_token`, and `accept_personal_auth`
//!   when the merchant answer has one), our payment id as `reference`, and the integrity
//!   `signature` = hex SHA-256 of `reference + amount_in_cents + currency + integrity secret`
//!   ([`integrity_signature`]).
//! * Wompi answers `PENDING`; the outcome comes by `transaction.updated` webhook
//!   (`crate::wompi`). A PSE transaction carries the bank's URL in
//!   `payment_method.extra.async_payment_url` -> [`NextAction::Redirect`].
//! * Wompi has no manual capture (a `CaptureMode::Manual` create is refused before any call)
//!   and no public refund API (refunds go through Wompi's dashboard): `capture` and `refund`
//!   answer `Rejected`. `void` (`POST /transactions/{id}/void`) releases an approved card
//!   payment on the day it was made.
//! * Rails that wait for the customer (`BANCOLOMBIA_TRANSFER` `{"user_type":"PERSON",
//!   "payment_description"}`, `BANCOLOMBIA_QR` `{"payment_description"}`, `DAVIPLATA`
//!   `{"user_legal_id_type","user_legal_id","payment_description"}`) are created with an
//!   `expiration_time` [`RAIL_PAYMENT_WINDOW`] ahead, which then enters the integrity
//!   signature ([`integrity_signature_until`]). Wompi publishes what the customer needs in
//!   `payment_method.extra` only on a later `GET /transactions/{id}`, so the create polls
//!   (every [`STEP_POLL_INTERVAL`], at most [`STEP_WAIT_MAX`]) until it is there:
//!   `async_payment_url` -> [`NextAction::Redirect`] (Bancolombia's page), `qr_image` (a base64
//!   SVG) -> [`NextAction::QrCode`], `url` (Daviplata's page for the code sent by SMS) ->
//!   [`NextAction::Otp`]. Wompi has no `EXPIRED` status: a rail transaction that ends
//!   `DECLINED` or `ERROR` with `finalized_at` at or after its `expiration_time` is
//!   [`ProviderTransactionStatus::Expired`].
//! * Creates are made idempotent by the reference: Wompi refuses a reference it has seen
//!   (`422`, field `reference`), and the adapter then returns the transaction it already holds
//!   for that payment (`GET /transactions?reference=`), so a retried create never pays twice.
//!
//! Failures map to [`ProviderFailureKind`]: no answer in time -> `Timeout`, no connection ->
//! `Connection`, 5xx -> `ServerError`, 4xx -> `Rejected` with Wompi's error type as detail.
//! No key or secret ever appears in an error detail or a `Debug` output.

use std::collections::BTreeSet;
use std::str::FromStr;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use domain::{
    CaptureId, CaptureMode, Currency, MethodDisplay, Money, MoneyError, PaymentId,
    PaymentMethodType, RefundId, SavedMethodId,
};
use reqwest::header::{HeaderValue, AUTHORIZATION};
use reqwest::{Method, StatusCode, Url};
use rust_decimal::Decimal;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::sources::{
    card_display, source_number, source_secret, Memo, NequiStatus, NequiTokenBody, NequiTokenData,
    SourceBody, SourceData, SourceMemo,
};
use crate::http::sanitize;
use crate::{
    CreateTransaction, NextAction, PaymentMethodDetails, PaymentProvider, ProviderConfigError,
    ProviderError, ProviderRefund, ProviderTransaction, ProviderTransactionStatus, PseBank,
    SaveMethod, SavedSource,
};

pub const ENV_PUBLIC_KEY: &str = "WOMPI_PUBLIC_KEY";
pub const ENV_PRIVATE_KEY: &str = "WOMPI_PRIVATE_KEY";
pub const ENV_EVENTS_SECRET: &str = "WOMPI_EVENTS_SECRET";
pub const ENV_INTEGRITY_SECRET: &str = "WOMPI_INTEGRITY_SECRET";
pub const ENV_BASE_URL: &str = "WOMPI_BASE_URL";
pub const ENV_EVENT_AGE_MAX_S: &str = "WOMPI_EVENT_AGE_MAX_S";
/// Ten minutes: Wompi's first deliveries come within seconds; its redeliveries hours later
/// are refused, and the outcome is asked of Wompi instead.
pub const DEFAULT_EVENT_AGE_MAX_S: u64 = 600;
/// The longest `WOMPI_EVENT_AGE_MAX_S` may be set to: one hour (60 s at least).
pub const EVENT_AGE_MAX_S_LIMIT: u64 = 3_600;

/// Test defaults used when a variable is unset (fine for tests and `serve --sandbox`;
/// `check-config --env production` refuses them).
pub const TEST_PUBLIC_KEY: &str = "pub_test_payledger_sandbox_00000000000000000";
pub const TEST_PRIVATE_KEY: &str = "prv_test_payledger_sandbox_00000000000000000";
pub const TEST_EVENTS_SECRET: &str = "test_events_payledger_sandbox_0000000000000000";
pub const TEST_INTEGRITY_SECRET: &str = "test_integrity_payledger_sandbox_00000000000000";
/// Placeholder base URL when `WOMPI_BASE_URL` is unset (nothing listens on port 0).
pub const DEFAULT_BASE_URL: &str = "http://127.0.0.1:0";
pub const DEFAULT_TIMEOUT_MS: u64 = 10_000;
/// Shortest private key, events secret or integrity secret accepted by `problems()`.
pub const SECRET_LEN_MIN: usize = 32;

/// Sent as `customer_email` when the payment has none: Wompi requires the field, and mails
/// its receipt there. `.invalid` (RFC 2606) is guaranteed never to reach anyone.
pub const PLACEHOLDER_CUSTOMER_EMAIL: &str = "customer@payledger.invalid";

/// Largest response body read from Wompi; anything bigger is a provider fault.
pub const RESPONSE_BODY_MAX_BYTES: usize = 256 * 1024;
/// Longest per-request timeout accepted in the configuration.
pub use crate::http::TIMEOUT_MS_MAX;
/// How long the PSE bank list is kept before it is asked again.
pub const PSE_BANKS_TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// Most PSE banks kept from one answer.
pub const PSE_BANKS_MAX: usize = 500;
/// How long presigned acceptance tokens are reused (Wompi's last about an hour; a refused
/// token is also refreshed and the create retried once).
pub const ACCEPTANCE_TOKENS_TTL: Duration = Duration::from_secs(10 * 60);
/// PSE's `payment_description` limit (Wompi's sandbox page says 30 characters).
pub const PSE_DESCRIPTION_LEN_MAX: usize = 30;
/// A Bancolombia transfer's or QR's `payment_description` limit (Wompi: 64 characters).
pub const BANCOLOMBIA_DESCRIPTION_LEN_MAX: usize = 64;
/// Daviplata's `payment_description` limit (Wompi: 30 characters).
pub const DAVIPLATA_DESCRIPTION_LEN_MAX: usize = 30;
/// How long a customer has to complete a Bancolombia transfer, QR or Daviplata payment: sent
/// as the create's `expiration_time`.
pub const RAIL_PAYMENT_WINDOW: Duration = Duration::from_secs(30 * 60);
/// How long a create waits for Wompi to publish the rail's redirect, QR or OTP page: within
/// the command's 15 s provider budget.
pub const STEP_WAIT_MAX: Duration = Duration::from_secs(5);
/// How often Wompi is asked meanwhile.
pub const STEP_POLL_INTERVAL: Duration = Duration::from_millis(100);
/// Longest `qr_image` (base64 text) taken: it is kept in the ledger's events.
pub const QR_IMAGE_LEN_MAX: usize = 64 * 1024;
/// How long a save waits for the customer to accept a Nequi subscription in their app (or
/// for a new source to become `AVAILABLE`): within the command's 15 s provider budget.
pub const SOURCE_WAIT_MAX: Duration = Duration::from_secs(10);
/// How often Wompi is asked meanwhile.
pub const SOURCE_POLL_INTERVAL: Duration = Duration::from_millis(250);

const TRANSACTION_ID_LEN_MAX: usize = 64;
const TOKEN_LEN_MAX: usize = 4096;
const URL_LEN_MAX: usize = 2048;
const REASON_LEN_MAX: usize = 128;
/// Reference searched by `health()`; it names no payment.
const HEALTH_REFERENCE: &str = "payledger-health-check";

/// Lower-case hex SHA-256 of `reference + amount_in_cents + currency + integrity_secret`
/// (decimal text, no separators): Wompi's integrity signature, sent as `signature` on a
/// create and as `signature:integrity` by the checkout widget.
pub fn integrity_signature(
    reference: &str,
    amount_in_cents: i64,
    currency: &str,
    integrity_secret: &str,
) -> String {
    let mut hash = Sha256::new();
    hash.update(reference.as_bytes());
    hash.update(amount_in_cents.to_string().as_bytes());
    hash.update(currency.as_bytes());
    hash.update(integrity_secret.as_bytes());
    hex::encode(hash.finalize())
}

/// [`integrity_signature`] of a create that carries an `expiration_time`: Wompi signs it
/// between the currency and the secret (`reference + amount_in_cents + currency +
/// expiration_time + integrity_secret`), as the text sent.
pub fn integrity_signature_until(
    reference: &str,
    amount_in_cents: i64,
    currency: &str,
    expiration_time: &str,
    integrity_secret: &str,
) -> String {
    let mut hash = Sha256::new();
    hash.update(reference.as_bytes());
    hash.update(amount_in_cents.to_string().as_bytes());
    hash.update(currency.as_bytes());
    hash.update(expiration_time.as_bytes());
    hash.update(integrity_secret.as_bytes());
    hex::encode(hash.finalize())
}

/// The payment methods whose transaction waits for the customer at a page, a QR or a code
/// until its `expiration_time`.
pub fn is_rail(method: PaymentMethodType) -> bool {
    matches!(
        method,
        PaymentMethodType::BancolombiaTransfer
            | PaymentMethodType::BancolombiaQr
            | PaymentMethodType::Daviplata
    )
}

/// `expiration_time` as Wompi writes it: UTC, milliseconds, `Z`.
fn wompi_time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// An amount in cents of its currency (`129000.00` COP -> `12900000`). Exact: every
/// currency payledger knows has at most 2 decimals, and amounts are at most 10^12.
pub fn amount_in_cents(amount: Money) -> i64 {
    let mut value = amount.amount();
    value.rescale(2);
    // At most 10^14: always fits; the fallback is unreachable.
    i64::try_from(value.mantissa()).unwrap_or(i64::MAX)
}

/// The amount `cents` stands for; only 2-decimal currencies are counted in cents.
pub fn money_from_cents(cents: i64, currency: Currency) -> Result<Money, MoneyError> {
    if currency.scale() != 2 {
        return Err(MoneyError::TooManyDecimals {
            currency,
            scale: currency.scale(),
        });
    }
    Money::new(Decimal::new(cents, 2), currency)
}

/// Where Wompi is and the keys to talk to it.
#[derive(Debug, Clone)]
pub struct WompiConfig {
    /// API base, including `/v1` (`https://production.wompi.co/v1`).
    pub base_url: String,
    /// `pub_test_...` / `pub_prod_...`: tokenization, merchant, PSE banks, the widget.
    pub public_key: String,
    /// `prv_test_...` / `prv_prod_...`: transactions.
    pub private_key: SecretString,
    /// `test_events_...` / `prod_events_...`: the webhook checksum key.
    pub events_secret: SecretString,
    /// `test_integrity_...` / `prod_integrity_...`: the integrity signature key.
    pub integrity_secret: SecretString,
    /// Whole-request timeout (connect, send, read the body), in milliseconds.
    pub timeout_ms: u64,
    /// How old a webhook event may be (`WOMPI_EVENT_AGE_MAX_S`, default ten minutes): a
    /// captured event replayed later is refused; an outcome whose events all came late is
    /// learnt by asking Wompi (sync and the reconciler).
    pub event_age_max_s: u64,
    /// Variables that were unset when read by [`WompiConfig::from_env`] (their test default
    /// stands in). Production refuses them.
    pub unset_vars: Vec<&'static str>,
}

impl WompiConfig {
    /// Test keys and the placeholder base URL.
    pub fn test_defaults() -> Self {
        WompiConfig {
            base_url: DEFAULT_BASE_URL.to_owned(),
            public_key: TEST_PUBLIC_KEY.to_owned(),
            private_key: TEST_PRIVATE_KEY.into(),
            events_secret: TEST_EVENTS_SECRET.into(),
            integrity_secret: TEST_INTEGRITY_SECRET.into(),
            timeout_ms: DEFAULT_TIMEOUT_MS,
            event_age_max_s: DEFAULT_EVENT_AGE_MAX_S,
            unset_vars: Vec::new(),
        }
    }

    /// Reads `WOMPI_PUBLIC_KEY`, `WOMPI_PRIVATE_KEY`, `WOMPI_EVENTS_SECRET`,
    /// `WOMPI_INTEGRITY_SECRET` and `WOMPI_BASE_URL`; unset ones take their test default
    /// (and are listed in `unset_vars`). A value that is not UTF-8 reads as empty.
    pub fn from_env() -> Self {
        Self::from_lookup(|name| match std::env::var(name) {
            Ok(value) => Some(value),
            Err(std::env::VarError::NotPresent) => None,
            Err(std::env::VarError::NotUnicode(_)) => Some(String::new()),
        })
    }

    /// [`WompiConfig::from_env`] over any source of variables.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let defaults = Self::test_defaults();
        let mut unset = Vec::new();
        let mut read = |name: &'static str| {
            let value = lookup(name);
            if value.is_none() {
                unset.push(name);
            }
            value
        };
        let mut config = WompiConfig {
            base_url: read(ENV_BASE_URL).unwrap_or(defaults.base_url),
            public_key: read(ENV_PUBLIC_KEY).unwrap_or(defaults.public_key),
            private_key: read(ENV_PRIVATE_KEY).map_or(defaults.private_key, Into::into),
            events_secret: read(ENV_EVENTS_SECRET).map_or(defaults.events_secret, Into::into),
            integrity_secret: read(ENV_INTEGRITY_SECRET)
                .map_or(defaults.integrity_secret, Into::into),
            timeout_ms: defaults.timeout_ms,
            event_age_max_s: lookup(ENV_EVENT_AGE_MAX_S)
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map_or(defaults.event_age_max_s, |s| {
                    s.clamp(60, EVENT_AGE_MAX_S_LIMIT)
                }),
            unset_vars: Vec::new(),
        };
        config.unset_vars = unset;
        config
    }

    /// Every problem that keeps this configuration from being used in production (`true`)
    /// or in test (`false`), for `payledger check-config`. Each names the variable, never its
    /// value.
    pub fn problems(&self, production: bool) -> Vec<String> {
        let environment = if production { "production" } else { "test" };
        let mut problems = Vec::new();
        let keys: [(&str, &str, &str, &str, bool); 4] = [
            (
                ENV_PUBLIC_KEY,
                &self.public_key,
                "pub_test_",
                "pub_prod_",
                false,
            ),
            (
                ENV_PRIVATE_KEY,
                self.private_key.expose_secret(),
                "prv_test_",
                "prv_prod_",
                true,
            ),
            (
                ENV_EVENTS_SECRET,
                self.events_secret.expose_secret(),
                "test_events_",
                "prod_events_",
                true,
            ),
            (
                ENV_INTEGRITY_SECRET,
                self.integrity_secret.expose_secret(),
                "test_integrity_",
                "prod_integrity_",
                true,
            ),
        ];
        for (var, value, test_prefix, prod_prefix, secret) in keys {
            if production && self.unset_vars.contains(&var) {
                problems.push(format!("{var} is not set"));
                continue;
            }
            if value.trim().is_empty() {
                problems.push(format!("{var} is missing (empty)"));
                continue;
            }
            if !value.bytes().all(|b| b.is_ascii_graphic()) {
                problems.push(format!(
                    "{var} contains spaces, control or non-ASCII characters"
                ));
            }
            let (expected, other, other_kind) = if production {
                (prod_prefix, test_prefix, "a test")
            } else {
                (test_prefix, prod_prefix, "a production")
            };
            if value.starts_with(other) {
                problems.push(format!(
                    "{var} is {other_kind} key ({other}...) but the environment is {environment}"
                ));
            } else if !value.starts_with(expected) {
                problems.push(format!(
                    "{var} does not start with {expected} (expected in {environment})"
                ));
            }
            if secret && value.chars().count() < SECRET_LEN_MIN {
                problems.push(format!("{var} is shorter than {SECRET_LEN_MIN} characters"));
            }
        }

        if production && self.unset_vars.contains(&ENV_BASE_URL) {
            problems.push(format!("{ENV_BASE_URL} is not set"));
        } else if self.base_url.trim().is_empty() {
            problems.push(format!("{ENV_BASE_URL} is missing (empty)"));
        } else {
            match check_base_url(&self.base_url) {
                Err(problem) => problems.push(format!("{ENV_BASE_URL} {problem}")),
                Ok(url) if production && url.scheme() != "https" => problems.push(format!(
                    "{ENV_BASE_URL} must use https in production (it uses {})",
                    url.scheme()
                )),
                Ok(_) => {}
            }
        }
        if self.timeout_ms == 0 || self.timeout_ms > TIMEOUT_MS_MAX {
            problems.push(format!(
                "the Wompi timeout must be between 1 and {TIMEOUT_MS_MAX} ms"
            ));
        }
        problems
    }
}

fn check_base_url(text: &str) -> Result<Url, &'static str> {
    let url = Url::parse(text).map_err(|_| "is not a URL")?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("must be an http(s) URL");
    }
    if url.cannot_be_a_base()
        || url.query().is_some()
        || url.fragment().is_some()
        || !url.username().is_empty()
        || url.password().is_some()
    {
        return Err("must be a plain base URL (no credentials, query or fragment)");
    }
    Ok(url)
}

/// What a front end needs to open Wompi's checkout widget for one payment, and nothing
/// secret: the public key and the integrity signature (never the private key or a secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WompiWidget {
    pub public_key: String,
    /// Our payment id, as Wompi's `reference`.
    pub reference: String,
    pub amount_in_cents: i64,
    pub currency: String,
    /// `signature:integrity` of the widget.
    pub signature_integrity: String,
}

/// Which key authenticates a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    Public,
    Private,
}

#[derive(Debug)]
struct AcceptanceTokens {
    acceptance_token: String,
    accept_personal_auth: Option<String>,
    fetched_at: Instant,
}

#[derive(Debug)]
struct CachedBanks {
    banks: Vec<PseBank>,
    fetched_at: Instant,
}

/// The Wompi adapter.
#[derive(Debug)]
pub struct WompiProvider {
    http: reqwest::Client,
    base_url: Url,
    public_key: String,
    private_key: SecretString,
    integrity_secret: SecretString,
    public_auth: HeaderValue,
    private_auth: HeaderValue,
    timeout_ms: u64,
    acceptance: Mutex<Option<AcceptanceTokens>>,
    pse_banks: Mutex<Option<CachedBanks>>,
    /// Saves made on this node, so a retry answers the first source (bounded).
    sources: Mutex<SourceMemo>,
}

/// A 2xx-or-not answer, before it is judged.
struct Answer {
    status: StatusCode,
    body: Vec<u8>,
}

impl WompiProvider {
    pub const NAME: &'static str = "wompi";

    /// Checks what a client needs to work at all (`problems()` is the fuller, per-environment
    /// check). The events secret is the webhook verifier's, not the client's.
    pub fn new(config: WompiConfig) -> Result<Self, ProviderConfigError> {
        let invalid = |problem: &str| ProviderConfigError {
            provider: Self::NAME,
            problem: problem.to_owned(),
        };
        let base_url = check_base_url(&config.base_url)
            .map_err(|problem| invalid(&format!("base_url {problem}")))?;
        let header = |key: &str, name: &str| {
            if key.is_empty() {
                return Err(invalid(&format!("{name} is empty")));
            }
            let mut value = HeaderValue::from_str(&format!("Bearer {key}")).map_err(|_| {
                invalid(&format!(
                    "{name} contains characters not allowed in a header"
                ))
            })?;
            value.set_sensitive(true);
            Ok(value)
        };
        let public_auth = header(&config.public_key, "public_key")?;
        let private_auth = header(config.private_key.expose_secret(), "private_key")?;
        if !config.public_key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(invalid("public_key must be printable ASCII"));
        }
        if config.integrity_secret.expose_secret().is_empty() {
            return Err(invalid("integrity_secret is empty"));
        }
        let http = crate::http::provider_client(config.timeout_ms).map_err(invalid)?;
        Ok(WompiProvider {
            http,
            base_url,
            public_key: config.public_key,
            private_key: config.private_key,
            integrity_secret: config.integrity_secret,
            public_auth,
            private_auth,
            timeout_ms: config.timeout_ms,
            acceptance: Mutex::new(None),
            pse_banks: Mutex::new(None),
            sources: Mutex::new(SourceMemo::default()),
        })
    }

    /// The widget parameters for `payment_id` (`GET /v1/checkout/wompi/{payment_id}`): the
    /// reference is our payment id, so the webhook of the widget's transaction names it.
    pub fn checkout_widget(&self, payment_id: PaymentId, amount: Money) -> WompiWidget {
        let reference = payment_id.to_string();
        let cents = amount_in_cents(amount);
        let currency = amount.currency().code();
        WompiWidget {
            public_key: self.public_key.clone(),
            signature_integrity: integrity_signature(
                &reference,
                cents,
                currency,
                self.integrity_secret.expose_secret(),
            ),
            reference,
            amount_in_cents: cents,
            currency: currency.to_owned(),
        }
    }

    fn url(&self, segments: &[&str]) -> Result<Url, ProviderError> {
        let mut url = self.base_url.clone();
        url.path_segments_mut()
            .map_err(|_| ProviderError::rejected("wompi base_url cannot take a path"))?
            .pop_if_empty()
            .extend(segments);
        Ok(url)
    }

    fn transaction_url(&self, id: &str, tail: &[&str]) -> Result<Url, ProviderError> {
        if !valid_transaction_id(id) {
            return Err(ProviderError::rejected("invalid wompi transaction id"));
        }
        let mut segments = vec!["transactions", id];
        segments.extend_from_slice(tail);
        self.url(&segments)
    }

    fn search_url(&self, reference: &str) -> Result<Url, ProviderError> {
        let mut url = self.url(&["transactions"])?;
        url.query_pairs_mut().append_pair("reference", reference);
        Ok(url)
    }

    /// Sends one request; any HTTP answer is returned, only transport failures are errors.
    async fn send<B: Serialize + ?Sized>(
        &self,
        method: Method,
        url: Url,
        key: Key,
        body: Option<&B>,
    ) -> Result<Answer, ProviderError> {
        let auth = match key {
            Key::Public => self.public_auth.clone(),
            Key::Private => self.private_auth.clone(),
        };
        let mut request = self.http.request(method, url).header(AUTHORIZATION, auth);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| self.transport_error(e))?;
        let status = response.status();
        let body = self.read_body(response).await?;
        Ok(Answer { status, body })
    }

    /// The body of a 2xx answer; any other answer becomes the error it stands for.
    async fn call<B: Serialize + ?Sized>(
        &self,
        method: Method,
        url: Url,
        key: Key,
        body: Option<&B>,
    ) -> Result<Vec<u8>, ProviderError> {
        let answer = self.send(method, url, key, body).await?;
        if answer.status.is_success() {
            Ok(answer.body)
        } else {
            Err(self.status_error(&answer))
        }
    }

    fn status_error(&self, answer: &Answer) -> ProviderError {
        let detail = self.scrub(&format!(
            "wompi answered {}: {}",
            answer.status.as_u16(),
            error_summary(&answer.body)
        ));
        if answer.status.is_client_error() {
            ProviderError::rejected(detail)
        } else {
            // 5xx, and anything unexpected (redirects are not followed).
            ProviderError::server_error(detail)
        }
    }

    async fn read_body(&self, response: reqwest::Response) -> Result<Vec<u8>, ProviderError> {
        crate::http::read_body("wompi", response, RESPONSE_BODY_MAX_BYTES, |e| {
            self.transport_error(e)
        })
        .await
    }

    fn transport_error(&self, error: reqwest::Error) -> ProviderError {
        crate::http::transport_error("wompi", error, self.timeout_ms, |t| self.scrub(t))
    }

    /// Belt and braces: details end up in events and logs, so no key or secret may be in
    /// them, whatever a server or a library put in a message.
    fn scrub(&self, text: &str) -> String {
        crate::http::scrub(
            text,
            [
                self.private_key.expose_secret(),
                self.integrity_secret.expose_secret(),
            ],
        )
    }

    fn decode<T: for<'de> Deserialize<'de>>(&self, body: &[u8]) -> Result<T, ProviderError> {
        crate::http::decode("wompi", body)
    }

    fn acceptance_cache(&self) -> MutexGuard<'_, Option<AcceptanceTokens>> {
        // Nothing panics while holding the lock; a poisoned cache is still a valid cache.
        self.acceptance
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The presigned acceptance tokens (`GET /merchants/{public_key}`), reused for
    /// [`ACCEPTANCE_TOKENS_TTL`] unless `refresh`.
    async fn acceptance_tokens(
        &self,
        refresh: bool,
    ) -> Result<(String, Option<String>), ProviderError> {
        if !refresh {
            if let Some(cached) = self.acceptance_cache().as_ref() {
                if cached.fetched_at.elapsed() < ACCEPTANCE_TOKENS_TTL {
                    return Ok((
                        cached.acceptance_token.clone(),
                        cached.accept_personal_auth.clone(),
                    ));
                }
            }
        }
        let url = self.url(&["merchants", &self.public_key])?;
        let raw = self.call::<()>(Method::GET, url, Key::Public, None).await?;
        let merchant: Envelope<MerchantData> = self.decode(&raw)?;
        let acceptance_token = merchant.data.presigned_acceptance.acceptance_token;
        let accept_personal_auth = merchant
            .data
            .presigned_personal_data_auth
            .map(|p| p.acceptance_token);
        let valid = |token: &str| {
            !token.is_empty()
                && token.len() <= TOKEN_LEN_MAX
                && token.bytes().all(|b| b.is_ascii_graphic())
        };
        if !valid(&acceptance_token) || !accept_personal_auth.as_deref().is_none_or(valid) {
            return Err(ProviderError::server_error(
                "wompi answered an invalid acceptance token",
            ));
        }
        *self.acceptance_cache() = Some(AcceptanceTokens {
            acceptance_token: acceptance_token.clone(),
            accept_personal_auth: accept_personal_auth.clone(),
            fetched_at: Instant::now(),
        });
        Ok((acceptance_token, accept_personal_auth))
    }

    fn forget_acceptance_tokens(&self) {
        *self.acceptance_cache() = None;
    }

    fn memo(&self) -> MutexGuard<'_, SourceMemo> {
        // Nothing panics while holding the lock; each operation leaves the memo consistent.
        self.sources.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The token to make a source of: a card token as given, or a Nequi token the customer
    /// approved in their app.
    async fn source_token(
        &self,
        request: &SaveMethod,
    ) -> Result<(&'static str, String), ProviderError> {
        match &request.method {
            PaymentMethodDetails::Card { token } => {
                let token = token.expose_secret();
                if !valid_card_token(token) {
                    return Err(ProviderError::rejected(
                        "the card token is not a Wompi token",
                    ));
                }
                Ok(("CARD", token.to_owned()))
            }
            PaymentMethodDetails::Nequi { phone_number } => {
                let phone = phone_number.expose_secret();
                if !valid_nequi_phone(phone) {
                    return Err(ProviderError::rejected(
                        "a Nequi phone number has 10 digits",
                    ));
                }
                let token = self
                    .approved_nequi_token(request.payment_method_id, phone)
                    .await?;
                Ok(("NEQUI", token))
            }
            other => Err(ProviderError::rejected(format!(
                "wompi saves cards and Nequi accounts, not {}",
                other.kind().as_str()
            ))),
        }
    }

    /// A Nequi token for `phone`, once the customer accepted it. A retry of the same save
    /// waits on the token first asked for: a new one would notify the customer again.
    async fn approved_nequi_token(
        &self,
        method: SavedMethodId,
        phone: &str,
    ) -> Result<String, ProviderError> {
        let remembered = match self.memo().get(method) {
            Some(Memo::NequiToken(id)) => Some(id),
            _ => None,
        };
        let mut token = match remembered {
            Some(id) => self.nequi_token(&id).await?,
            None => {
                let url = self.url(&["tokens", "nequi"])?;
                let body = NequiTokenBody {
                    phone_number: phone,
                };
                let raw = self
                    .call(Method::POST, url, Key::Public, Some(&body))
                    .await?;
                let token = self.checked_nequi_token(&raw)?;
                self.memo().put(method, Memo::NequiToken(token.0.clone()));
                token
            }
        };
        let deadline = Instant::now() + SOURCE_WAIT_MAX;
        loop {
            match token.1 {
                NequiStatus::Approved => return Ok(token.0),
                NequiStatus::Declined => {
                    self.memo().forget(method);
                    return Err(ProviderError::rejected(
                        "the customer declined the Nequi subscription",
                    ));
                }
                NequiStatus::Pending if Instant::now() + SOURCE_POLL_INTERVAL > deadline => {
                    // Wompi keeps the token PENDING until the customer acts; the memo lets a
                    // retry of this save wait on it again.
                    return Err(ProviderError::rejected(
                        "the Nequi subscription is still PENDING: the customer has not accepted \
                         it in the Nequi app yet; retry the save with the same Idempotency-Key",
                    ));
                }
                NequiStatus::Pending => tokio::time::sleep(SOURCE_POLL_INTERVAL).await,
            }
            token = self.nequi_token(&token.0).await?;
        }
    }

    /// `GET /tokens/nequi/{id}`.
    async fn nequi_token(&self, id: &str) -> Result<(String, NequiStatus), ProviderError> {
        let url = self.url(&["tokens", "nequi", id])?;
        let raw = self.call::<()>(Method::GET, url, Key::Public, None).await?;
        let token = self.checked_nequi_token(&raw)?;
        if token.0 != id {
            return Err(ProviderError::server_error(
                "wompi answered another Nequi token",
            ));
        }
        Ok(token)
    }

    fn checked_nequi_token(&self, raw: &[u8]) -> Result<(String, NequiStatus), ProviderError> {
        let data: Envelope<NequiTokenData> = self.decode(raw)?;
        let status = data.data.status();
        match status {
            Some(status) if data.data.valid_id() => Ok((data.data.id, status)),
            _ => Err(ProviderError::server_error(
                "wompi answered an invalid Nequi token",
            )),
        }
    }

    /// `POST /payment_sources` with the customer's acceptance (or the presigned one, refreshed
    /// once if Wompi refuses it).
    async fn create_source(
        &self,
        kind: &'static str,
        token: &str,
        customer_email: &str,
        acceptance: Option<&str>,
    ) -> Result<SourceData, ProviderError> {
        let url = self.url(&["payment_sources"])?;
        for attempt in 0..2 {
            let (presigned, accept_personal_auth) = self.acceptance_tokens(attempt > 0).await?;
            let body = SourceBody {
                kind,
                token,
                customer_email,
                acceptance_token: acceptance.unwrap_or(&presigned),
                accept_personal_auth: accept_personal_auth.as_deref(),
            };
            let answer = self
                .send(Method::POST, url.clone(), Key::Private, Some(&body))
                .await?;
            if answer.status.is_success() {
                let data: Envelope<SourceData> = self.decode(&answer.body)?;
                return Ok(data.data);
            }
            let fields = error_fields(&answer.body);
            let presigned_refused = fields.contains("accept_personal_auth")
                || (acceptance.is_none() && fields.contains("acceptance_token"));
            if answer.status == StatusCode::UNPROCESSABLE_ENTITY
                && presigned_refused
                && attempt == 0
            {
                self.forget_acceptance_tokens();
                continue;
            }
            return Err(self.status_error(&answer));
        }
        Err(ProviderError::rejected(
            "wompi refused fresh acceptance tokens",
        ))
    }

    /// `GET /payment_sources/{id}`.
    async fn source(&self, id: i64) -> Result<SourceData, ProviderError> {
        let url = self.url(&["payment_sources", &id.to_string()])?;
        let raw = self
            .call::<()>(Method::GET, url, Key::Private, None)
            .await?;
        let data: Envelope<SourceData> = self.decode(&raw)?;
        if data.data.id != id {
            return Err(ProviderError::server_error(
                "wompi answered another payment source",
            ));
        }
        Ok(data.data)
    }

    /// Waits (bounded) until Wompi shows a new source `AVAILABLE`.
    async fn wait_available(&self, id: i64) -> Result<(), ProviderError> {
        let deadline = Instant::now() + SOURCE_WAIT_MAX;
        loop {
            match self.source(id).await?.status.as_str() {
                "AVAILABLE" => return Ok(()),
                "PENDING" if Instant::now() + SOURCE_POLL_INTERVAL <= deadline => {
                    tokio::time::sleep(SOURCE_POLL_INTERVAL).await
                }
                "PENDING" => {
                    return Err(ProviderError::rejected(
                        "the wompi payment source is still PENDING; retry the save with the same \
                         Idempotency-Key",
                    ))
                }
                _ => {
                    return Err(ProviderError::rejected(
                        "wompi made the payment source unusable",
                    ))
                }
            }
        }
    }

    /// The source of a save this node made before, once it is available.
    async fn remembered_source(
        &self,
        method: SavedMethodId,
    ) -> Result<Option<SavedSource>, ProviderError> {
        let Some(Memo::Source {
            id,
            display,
            available,
        }) = self.memo().get(method)
        else {
            return Ok(None);
        };
        if !available {
            self.wait_available(id).await?;
            self.remember_source(method, id, display.clone(), true);
        }
        Ok(Some(SavedSource {
            source_id: source_secret(id),
            display,
            verification_url: None,
        }))
    }

    fn remember_source(
        &self,
        method: SavedMethodId,
        id: i64,
        display: MethodDisplay,
        available: bool,
    ) {
        self.memo().put(
            method,
            Memo::Source {
                id,
                display,
                available,
            },
        );
    }

    /// `transaction` once Wompi shows what the customer must do with it: a rail's redirect, QR
    /// or OTP page appears in `extra` only on a later read. Waits at most [`STEP_WAIT_MAX`];
    /// past it, or when a read fails, the transaction is answered as it is (still pending,
    /// without a next action): it was created, and its outcome still comes by webhook.
    async fn with_step(
        &self,
        kind: PaymentMethodType,
        mut transaction: ProviderTransaction,
    ) -> ProviderTransaction {
        let deadline = Instant::now() + STEP_WAIT_MAX;
        while awaits_step(kind, &transaction) {
            if Instant::now() + STEP_POLL_INTERVAL > deadline {
                tracing::warn!(
                    transaction_id = %transaction.id,
                    method = kind.as_str(),
                    "wompi has not published the customer's next step in time"
                );
                break;
            }
            tokio::time::sleep(STEP_POLL_INTERVAL).await;
            match self.get_transaction(&transaction.id).await {
                Ok(read) => transaction = read,
                Err(error) => {
                    tracing::warn!(
                        transaction_id = %transaction.id,
                        %error,
                        "wompi: cannot read the new transaction's next step"
                    );
                    break;
                }
            }
        }
        transaction
    }

    /// The transaction Wompi holds for `payment_id` (our id is Wompi's `reference`), if any.
    async fn transaction_by_reference(
        &self,
        payment_id: PaymentId,
    ) -> Result<Option<ProviderTransaction>, ProviderError> {
        let reference = payment_id.to_string();
        let url = self.search_url(&reference)?;
        let raw = self
            .call::<()>(Method::GET, url, Key::Private, None)
            .await?;
        let found: Envelope<Vec<TransactionData>> = self.decode(&raw)?;
        let mut matching = found.data.into_iter().filter(|d| d.reference == reference);
        let Some(data) = matching.next() else {
            return Ok(None);
        };
        if matching.next().is_some() {
            // Wompi refuses a reference twice: two would mean it is not our payment's.
            return Err(ProviderError::server_error(
                "wompi holds two transactions for one reference",
            ));
        }
        data.into_transaction().map(Some)
    }
}

#[async_trait]
impl PaymentProvider for WompiProvider {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn payment_methods(&self) -> &'static [PaymentMethodType] {
        &[
            PaymentMethodType::Card,
            PaymentMethodType::Nequi,
            PaymentMethodType::Pse,
            PaymentMethodType::BancolombiaTransfer,
            PaymentMethodType::BancolombiaQr,
            PaymentMethodType::Daviplata,
        ]
    }

    fn currencies(&self) -> &'static [Currency] {
        &[Currency::COP]
    }

    async fn pse_banks(&self) -> Result<Vec<PseBank>, ProviderError> {
        {
            let cache = self
                .pse_banks
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if let Some(cached) = cache.as_ref() {
                if cached.fetched_at.elapsed() < PSE_BANKS_TTL {
                    return Ok(cached.banks.clone());
                }
            }
        }
        let url = self.url(&["pse", "financial_institutions"])?;
        let raw = self.call::<()>(Method::GET, url, Key::Public, None).await?;
        let answer: Envelope<Vec<BankData>> = self.decode(&raw)?;
        if answer.data.len() > PSE_BANKS_MAX {
            return Err(ProviderError::server_error(format!(
                "wompi answered more than {PSE_BANKS_MAX} PSE banks"
            )));
        }
        let mut banks = Vec::with_capacity(answer.data.len());
        for bank in answer.data {
            let code_ok = !bank.financial_institution_code.is_empty()
                && bank.financial_institution_code.len() <= 16
                && bank
                    .financial_institution_code
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric());
            if !code_ok {
                return Err(ProviderError::server_error(
                    "wompi answered an invalid PSE bank code",
                ));
            }
            banks.push(PseBank {
                code: bank.financial_institution_code,
                name: sanitize(&bank.financial_institution_name, 128),
            });
        }
        *self
            .pse_banks
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(CachedBanks {
            banks: banks.clone(),
            fetched_at: Instant::now(),
        });
        Ok(banks)
    }

    fn supports_manual_capture(&self) -> bool {
        false
    }

    async fn create_transaction(
        &self,
        request: &CreateTransaction,
    ) -> Result<ProviderTransaction, ProviderError> {
        if request.capture_mode == CaptureMode::Manual {
            return Err(ProviderError::rejected("wompi captures automatically"));
        }
        if request.amount.currency() != Currency::COP {
            return Err(ProviderError::rejected("wompi takes COP only"));
        }
        let (payment_method, payment_source_id) = method_fields(request)?;
        let redirect_url = match request.return_url.as_deref() {
            Some(url) if valid_url(url) => Some(url),
            Some(_) => {
                return Err(ProviderError::rejected(
                    "return_url must be an http(s) URL of at most 2048 characters",
                ))
            }
            None => None,
        };
        let customer_email = match crate::provider::exposed(&request.customer_email) {
            Some(email) if valid_email(email) => email,
            Some(_) => return Err(ProviderError::rejected("customer_email is not valid")),
            None => PLACEHOLDER_CUSTOMER_EMAIL,
        };
        let reference = request.payment_id.to_string();
        let cents = amount_in_cents(request.amount);
        let currency = request.amount.currency().code();
        let kind = request.method.kind();
        let expiration_time = is_rail(kind).then(|| {
            let window = chrono::Duration::from_std(RAIL_PAYMENT_WINDOW)
                .unwrap_or_else(|_| chrono::Duration::minutes(30));
            wompi_time(Utc::now() + window)
        });
        let secret = self.integrity_secret.expose_secret();
        let signature = match expiration_time.as_deref() {
            Some(until) => integrity_signature_until(&reference, cents, currency, until, secret),
            None => integrity_signature(&reference, cents, currency, secret),
        };
        let url = self.url(&["transactions"])?;

        for attempt in 0..2 {
            let (acceptance_token, accept_personal_auth) =
                self.acceptance_tokens(attempt > 0).await?;
            let body = CreateBody {
                acceptance_token: &acceptance_token,
                accept_personal_auth: accept_personal_auth.as_deref(),
                amount_in_cents: cents,
                currency,
                customer_email,
                reference: &reference,
                signature: &signature,
                payment_method: payment_method.clone(),
                payment_source_id,
                redirect_url,
                expiration_time: expiration_time.as_deref(),
            };
            let answer = self
                .send(Method::POST, url.clone(), Key::Private, Some(&body))
                .await?;
            if answer.status.is_success() {
                let data: Envelope<TransactionData> = self.decode(&answer.body)?;
                let transaction = data.data.into_transaction()?;
                if transaction.payment_id != request.payment_id
                    || transaction.amount != request.amount
                {
                    return Err(ProviderError::server_error(
                        "wompi answered with a transaction of another payment or amount",
                    ));
                }
                return Ok(self.with_step(kind, transaction).await);
            }
            if answer.status == StatusCode::UNPROCESSABLE_ENTITY {
                let fields = error_fields(&answer.body);
                if fields.contains("reference") {
                    // Already created (a retry after a lost answer): return that one, if it
                    // is this payment's amount.
                    return match self.transaction_by_reference(request.payment_id).await? {
                        Some(found) if found.amount == request.amount => {
                            Ok(self.with_step(kind, found).await)
                        }
                        _ => Err(ProviderError::rejected(
                            "wompi already holds this payment's reference for another amount",
                        )),
                    };
                }
                let token_refused =
                    fields.contains("acceptance_token") || fields.contains("accept_personal_auth");
                if token_refused && attempt == 0 {
                    self.forget_acceptance_tokens();
                    continue;
                }
            }
            return Err(self.status_error(&answer));
        }
        Err(ProviderError::rejected(
            "wompi refused fresh acceptance tokens",
        ))
    }

    fn supports_lookup(&self) -> bool {
        true
    }

    async fn find_transaction(
        &self,
        payment_id: PaymentId,
        _reference: &str,
    ) -> Result<Option<ProviderTransaction>, ProviderError> {
        self.transaction_by_reference(payment_id).await
    }

    async fn get_transaction(
        &self,
        provider_transaction_id: &str,
    ) -> Result<ProviderTransaction, ProviderError> {
        let url = self.transaction_url(provider_transaction_id, &[])?;
        let raw = self
            .call::<()>(Method::GET, url, Key::Private, None)
            .await?;
        let data: Envelope<TransactionData> = self.decode(&raw)?;
        let transaction = data.data.into_transaction()?;
        if transaction.id != provider_transaction_id {
            return Err(ProviderError::server_error(
                "wompi answered with another transaction",
            ));
        }
        Ok(transaction)
    }

    async fn capture(
        &self,
        _provider_transaction_id: &str,
        _capture_id: CaptureId,
        _amount: Money,
    ) -> Result<(), ProviderError> {
        Err(ProviderError::rejected("wompi captures automatically"))
    }

    /// Wompi voids approved card transactions (same day, before settlement). Voiding one
    /// that is already voided succeeds.
    async fn void(&self, provider_transaction_id: &str) -> Result<(), ProviderError> {
        let url = self.transaction_url(provider_transaction_id, &["void"])?;
        let answer = self
            .send::<()>(Method::POST, url, Key::Private, None)
            .await?;
        if answer.status.is_success() {
            return Ok(());
        }
        let error = self.status_error(&answer);
        if answer.status == StatusCode::UNPROCESSABLE_ENTITY {
            // Refused: fine if it is voided already (a retry), else say why.
            if let Ok(transaction) = self.get_transaction(provider_transaction_id).await {
                if transaction.status == ProviderTransactionStatus::Voided {
                    return Ok(());
                }
            }
        }
        Err(error)
    }

    fn supports_refunds(&self) -> bool {
        false
    }

    async fn refund(
        &self,
        _provider_transaction_id: &str,
        _refund_id: RefundId,
        _amount: Money,
    ) -> Result<ProviderRefund, ProviderError> {
        // Wompi's public API has no refunds: they are requested in its merchant dashboard.
        Err(ProviderError::rejected("not supported by wompi"))
    }

    /// Both keys, cheaply: the merchant with the public key (refreshing the acceptance
    /// tokens) and a search that finds nothing with the private key.
    async fn health(&self) -> Result<(), ProviderError> {
        self.acceptance_tokens(true).await?;
        let url = self.search_url(HEALTH_REFERENCE)?;
        let raw = self
            .call::<()>(Method::GET, url, Key::Private, None)
            .await?;
        let _: Envelope<Vec<serde_json::Value>> = self.decode(&raw)?;
        Ok(())
    }

    fn saved_method_types(&self) -> &'static [PaymentMethodType] {
        &[PaymentMethodType::Card, PaymentMethodType::Nequi]
    }

    /// A card token or an approved Nequi token made a payment source. Wompi neither dedupes
    /// saves nor searches sources, so only this node's memo answers a retry with the first
    /// source (see `sources`).
    async fn save_method(&self, request: &SaveMethod) -> Result<SavedSource, ProviderError> {
        if let Some(saved) = self.remembered_source(request.payment_method_id).await? {
            return Ok(saved);
        }
        // Wompi ties every source to the customer's email; there is no placeholder for it.
        let email = match request.customer_email.as_ref().map(|e| e.expose_secret()) {
            Some(email) if valid_email(email) => email,
            Some(_) => return Err(ProviderError::rejected("customer_email is not valid")),
            None => {
                return Err(ProviderError::rejected(
                    "wompi keeps payment sources only for a customer with an email",
                ))
            }
        };
        let acceptance = request.acceptance_token.as_ref().map(|t| t.expose_secret());
        if acceptance.is_some_and(|t| !valid_acceptance_token(t)) {
            return Err(ProviderError::rejected("the acceptance_token is not valid"));
        }
        let (kind, token) = self.source_token(request).await?;
        let source = self.create_source(kind, &token, email, acceptance).await?;
        if source.id <= 0 {
            return Err(ProviderError::server_error(
                "wompi answered an invalid payment source id",
            ));
        }
        let display = match &request.method {
            PaymentMethodDetails::Nequi { phone_number } => MethodDisplay {
                phone_masked: Some(MethodDisplay::mask_phone(phone_number.expose_secret())),
                ..MethodDisplay::default()
            },
            _ => card_display(source.public_data),
        }
        .checked()
        .map_err(|e| ProviderError::server_error(format!("wompi answered a source whose {e}")))?;
        let method = request.payment_method_id;
        let available = source.status == "AVAILABLE";
        self.remember_source(method, source.id, display.clone(), available);
        if !available {
            self.wait_available(source.id).await?;
            self.remember_source(method, source.id, display.clone(), true);
        }
        Ok(SavedSource {
            source_id: source_secret(source.id),
            display,
            verification_url: None,
        })
    }

    /// `PUT /payment_sources/{id}/void`. Done only once Wompi shows the source `VOIDED`, so a
    /// repeat (Wompi refuses voiding twice) succeeds and nothing else is taken for a void.
    async fn remove_method(&self, source_id: &str) -> Result<(), ProviderError> {
        let id = source_number(source_id)
            .ok_or_else(|| ProviderError::rejected("invalid wompi payment source id"))?;
        let url = self.url(&["payment_sources", &id.to_string(), "void"])?;
        let answer = self
            .send::<()>(Method::PUT, url, Key::Private, None)
            .await?;
        let voided = if answer.status.is_success() {
            let data: Envelope<SourceData> = self.decode(&answer.body)?;
            data.data.id == id && data.data.status == "VOIDED"
        } else if answer.status.is_client_error() && answer.status != StatusCode::UNAUTHORIZED {
            // Refused: fine if it is voided already (a retry), else say why.
            match self.source(id).await {
                Ok(source) if source.status == "VOIDED" => true,
                _ => return Err(self.status_error(&answer)),
            }
        } else {
            return Err(self.status_error(&answer));
        };
        if !voided {
            return Err(ProviderError::server_error(
                "wompi answered the void with a source that is not VOIDED",
            ));
        }
        self.memo().forget_source(id);
        Ok(())
    }
}

/// The `payment_method` and `payment_source_id` of a create. A saved card is charged in one
/// installment (Wompi asks for `payment_method.installments` with a card source); a saved
/// Nequi account needs no `payment_method`.
fn method_fields(
    request: &CreateTransaction,
) -> Result<(Option<MethodField<'_>>, Option<i64>), ProviderError> {
    let PaymentMethodDetails::Saved {
        method, source_id, ..
    } = &request.method
    else {
        return Ok((
            Some(MethodField::Direct(payment_method_body(request)?)),
            None,
        ));
    };
    let id = source_number(source_id.expose_secret())
        .ok_or_else(|| ProviderError::rejected("invalid wompi payment source id"))?;
    match method {
        PaymentMethodType::Card => Ok((
            Some(MethodField::Installments { installments: 1 }),
            Some(id),
        )),
        PaymentMethodType::Nequi => Ok((None, Some(id))),
        other => Err(ProviderError::rejected(format!(
            "wompi keeps no saved {} sources",
            other.as_str()
        ))),
    }
}

fn valid_card_token(token: &str) -> bool {
    !token.is_empty() && token.len() <= 256 && token.bytes().all(|b| b.is_ascii_graphic())
}

fn valid_nequi_phone(phone: &str) -> bool {
    phone.len() == 10 && phone.bytes().all(|b| b.is_ascii_digit())
}

fn valid_acceptance_token(token: &str) -> bool {
    !token.is_empty() && token.len() <= TOKEN_LEN_MAX && token.bytes().all(|b| b.is_ascii_graphic())
}

/// Whether a rail's transaction is still pending without what the customer needs to pay.
fn awaits_step(kind: PaymentMethodType, transaction: &ProviderTransaction) -> bool {
    is_rail(kind)
        && transaction.status == ProviderTransactionStatus::Pending
        && transaction.next_action.is_none()
}

fn valid_legal_id_type(text: &str) -> bool {
    !text.is_empty() && text.len() <= 8 && text.bytes().all(|b| b.is_ascii_uppercase())
}

fn valid_legal_id(text: &str) -> bool {
    !text.is_empty() && text.len() <= 20 && text.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// The merchant's description for a rail, checked against Wompi's limit, or one made of the
/// order reference when there is none.
fn rail_description(
    given: Option<&SecretString>,
    reference: &str,
    len_max: usize,
) -> Result<String, ProviderError> {
    let Some(given) = given else {
        return Ok(description_of(reference, len_max));
    };
    let text = given.expose_secret();
    let count = text.chars().count();
    let ok = (1..=len_max).contains(&count)
        && !text.trim().is_empty()
        && !text.chars().any(|c| c.is_control() || c == '\'');
    if ok {
        Ok(text.to_owned())
    } else {
        Err(ProviderError::rejected(format!(
            "payment_description must be 1 to {len_max} characters without control characters \
             or single quotes"
        )))
    }
}

fn payment_method_body(
    request: &CreateTransaction,
) -> Result<PaymentMethodBody<'_>, ProviderError> {
    let rejected = ProviderError::rejected;
    match &request.method {
        PaymentMethodDetails::Card { token } => {
            let token = token.expose_secret();
            if !valid_card_token(token) {
                return Err(rejected("the card token is not a Wompi token"));
            }
            Ok(PaymentMethodBody::Card {
                token,
                installments: 1,
            })
        }
        PaymentMethodDetails::Nequi { phone_number } => {
            let phone_number = phone_number.expose_secret();
            if !valid_nequi_phone(phone_number) {
                return Err(rejected("a Nequi phone number has 10 digits"));
            }
            Ok(PaymentMethodBody::Nequi { phone_number })
        }
        PaymentMethodDetails::Pse {
            financial_institution_code,
            user_type,
            user_legal_id_type,
            user_legal_id,
        } => {
            let code_ok = !financial_institution_code.is_empty()
                && financial_institution_code.len() <= 16
                && financial_institution_code
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric());
            if !code_ok {
                return Err(rejected("invalid PSE financial_institution_code"));
            }
            if *user_type > 1 {
                return Err(rejected("PSE user_type is 0 (person) or 1 (company)"));
            }
            let id_type_ok = !user_legal_id_type.is_empty()
                && user_legal_id_type.len() <= 8
                && user_legal_id_type.bytes().all(|b| b.is_ascii_uppercase());
            if !id_type_ok {
                return Err(rejected("invalid PSE user_legal_id_type"));
            }
            let user_legal_id = user_legal_id.expose_secret();
            let id_ok = !user_legal_id.is_empty()
                && user_legal_id.len() <= 20
                && user_legal_id.bytes().all(|b| b.is_ascii_alphanumeric());
            if !id_ok {
                return Err(rejected("invalid PSE user_legal_id"));
            }
            Ok(PaymentMethodBody::Pse {
                user_type: *user_type,
                user_legal_id_type,
                user_legal_id,
                financial_institution_code,
                payment_description: pse_description(&request.reference),
            })
        }
        PaymentMethodDetails::BancolombiaTransfer {
            user_type,
            payment_description,
        } => {
            // Wompi's button takes natural persons only ("PERSON"); it names no company type.
            let user_type = match user_type {
                0 => "PERSON",
                1 => {
                    return Err(rejected(
                        "wompi's Bancolombia transfer takes natural persons only (user_type 0)",
                    ))
                }
                _ => return Err(rejected("user_type is 0 (person) or 1 (company)")),
            };
            let payment_description = rail_description(
                Some(payment_description),
                &request.reference,
                BANCOLOMBIA_DESCRIPTION_LEN_MAX,
            )?;
            Ok(PaymentMethodBody::BancolombiaTransfer {
                user_type,
                payment_description,
            })
        }
        PaymentMethodDetails::BancolombiaQr {
            payment_description,
        } => Ok(PaymentMethodBody::BancolombiaQr {
            payment_description: rail_description(
                payment_description.as_ref(),
                &request.reference,
                BANCOLOMBIA_DESCRIPTION_LEN_MAX,
            )?,
        }),
        PaymentMethodDetails::Daviplata {
            user_legal_id_type,
            user_legal_id,
            payment_description,
        } => {
            if !valid_legal_id_type(user_legal_id_type) {
                return Err(rejected("invalid Daviplata user_legal_id_type"));
            }
            let user_legal_id = user_legal_id.expose_secret();
            if !valid_legal_id(user_legal_id) {
                return Err(rejected("invalid Daviplata user_legal_id"));
            }
            Ok(PaymentMethodBody::Daviplata {
                user_legal_id_type,
                user_legal_id,
                payment_description: rail_description(
                    payment_description.as_ref(),
                    &request.reference,
                    DAVIPLATA_DESCRIPTION_LEN_MAX,
                )?,
            })
        }
        other => Err(ProviderError::rejected(format!(
            "wompi does not take {}",
            other.kind().as_str()
        ))),
    }
}

/// `Pago <merchant reference>`, restricted to plain characters and PSE's 30.
fn pse_description(reference: &str) -> String {
    description_of(reference, PSE_DESCRIPTION_LEN_MAX)
}

/// `Pago <merchant reference>`, restricted to plain characters and `len_max`.
fn description_of(reference: &str, len_max: usize) -> String {
    let cleaned: String = reference
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, ' ' | '-' | '_' | '.' | '#'))
        .collect();
    let text = if cleaned.trim().is_empty() {
        "Pago payledger".to_owned()
    } else {
        format!("Pago {}", cleaned.trim())
    };
    text.chars()
        .take(len_max)
        .collect::<String>()
        .trim_end()
        .to_owned()
}

fn valid_transaction_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= TRANSACTION_ID_LEN_MAX
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn valid_url(text: &str) -> bool {
    text.len() <= URL_LEN_MAX
        && Url::parse(text).is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.has_host())
}

fn valid_email(text: &str) -> bool {
    let Some((local, domain)) = text.split_once('@') else {
        return false;
    };
    text.len() <= 254
        && !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && text
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'"' | b'<' | b'>' | b'\\'))
        && !domain.contains('@')
}

#[derive(Serialize)]
struct CreateBody<'a> {
    acceptance_token: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    accept_personal_auth: Option<&'a str>,
    amount_in_cents: i64,
    currency: &'static str,
    customer_email: &'a str,
    reference: &'a str,
    signature: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    payment_method: Option<MethodField<'a>>,
    /// A saved source to charge instead of a method (an integer in Wompi's API).
    #[serde(skip_serializing_if = "Option::is_none")]
    payment_source_id: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    redirect_url: Option<&'a str>,
    /// Rails only: until when the customer may pay (it enters the signature).
    #[serde(skip_serializing_if = "Option::is_none")]
    expiration_time: Option<&'a str>,
}

/// A create's `payment_method`: a whole method, or only the installments of a saved card.
#[derive(Clone, Serialize)]
#[serde(untagged)]
enum MethodField<'a> {
    Direct(PaymentMethodBody<'a>),
    Installments { installments: u32 },
}

#[derive(Clone, Serialize)]
#[serde(tag = "type")]
enum PaymentMethodBody<'a> {
    #[serde(rename = "CARD")]
    Card { token: &'a str, installments: u32 },
    #[serde(rename = "NEQUI")]
    Nequi { phone_number: &'a str },
    #[serde(rename = "PSE")]
    Pse {
        user_type: u8,
        user_legal_id_type: &'a str,
        user_legal_id: &'a str,
        financial_institution_code: &'a str,
        payment_description: String,
    },
    #[serde(rename = "BANCOLOMBIA_TRANSFER")]
    BancolombiaTransfer {
        user_type: &'static str,
        payment_description: String,
    },
    #[serde(rename = "BANCOLOMBIA_QR")]
    BancolombiaQr { payment_description: String },
    #[serde(rename = "DAVIPLATA")]
    Daviplata {
        user_legal_id_type: &'a str,
        user_legal_id: &'a str,
        payment_description: String,
    },
}

/// Every Wompi answer wraps its object in `data`.
#[derive(Deserialize)]
struct Envelope<T> {
    data: T,
}

#[derive(Deserialize)]
struct MerchantData {
    presigned_acceptance: Presigned,
    #[serde(default)]
    presigned_personal_data_auth: Option<Presigned>,
}

#[derive(Deserialize)]
struct Presigned {
    acceptance_token: String,
}

#[derive(Deserialize)]
struct BankData {
    financial_institution_code: String,
    financial_institution_name: String,
}

/// A transaction as Wompi returns it; unknown fields are ignored.
#[derive(Deserialize)]
struct TransactionData {
    id: String,
    status: String,
    amount_in_cents: i64,
    currency: String,
    reference: String,
    #[serde(default)]
    status_message: Option<String>,
    #[serde(default)]
    payment_method_type: Option<String>,
    #[serde(default)]
    payment_method: Option<PaymentMethodData>,
    /// When the transaction reached its final status.
    #[serde(default)]
    finalized_at: Option<String>,
    /// The create's `expiration_time`, for the rails payledger sends it with.
    #[serde(default)]
    expiration_time: Option<String>,
}

#[derive(Deserialize)]
struct PaymentMethodData {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    extra: Option<PaymentMethodExtra>,
}

/// What Wompi shows of a pending transaction's next step, by method: PSE's and Bancolombia's
/// bank page, Bancolombia QR's image (base64 SVG), Daviplata's page for the SMS code.
#[derive(Deserialize)]
struct PaymentMethodExtra {
    #[serde(default)]
    async_payment_url: Option<String>,
    #[serde(default)]
    qr_image: Option<String>,
    #[serde(default)]
    url: Option<String>,
}

impl TransactionData {
    fn into_transaction(self) -> Result<ProviderTransaction, ProviderError> {
        let bad = |what: &str| ProviderError::server_error(format!("wompi answered {what}"));
        if !valid_transaction_id(&self.id) {
            return Err(bad("an invalid transaction id"));
        }
        let currency =
            Currency::from_str(&self.currency).map_err(|_| bad("an unknown currency"))?;
        let amount = money_from_cents(self.amount_in_cents, currency)
            .map_err(|_| bad("an invalid amount_in_cents"))?;
        let payment_id = PaymentId::from_str(&self.reference)
            .map_err(|_| bad("a reference that is not a payledger payment id"))?;
        let reason = |default: &str| {
            let message = self
                .status_message
                .as_deref()
                .map(|m| sanitize(m, REASON_LEN_MAX));
            match message {
                Some(m) if !m.trim().is_empty() => m,
                _ => default.to_owned(),
            }
        };
        let status = match self.status.as_str() {
            "PENDING" => ProviderTransactionStatus::Pending,
            "APPROVED" => ProviderTransactionStatus::Approved,
            "DECLINED" => ProviderTransactionStatus::Declined {
                reason: reason("declined"),
            },
            "VOIDED" => ProviderTransactionStatus::Voided,
            "ERROR" => ProviderTransactionStatus::Failed {
                reason: reason("error"),
            },
            _ => return Err(bad("an unknown transaction status")),
        };
        // Only expiry is told from these: a time that does not read leaves the status as is.
        let time = |text: Option<&str>| {
            text.and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&Utc))
        };
        let expires_at = time(self.expiration_time.as_deref());
        let finalized_at = time(self.finalized_at.as_deref());
        // Wompi has no EXPIRED: a transaction its deadline closed ends DECLINED or ERROR.
        let status = match (status, expires_at, finalized_at) {
            (
                ProviderTransactionStatus::Declined { .. }
                | ProviderTransactionStatus::Failed { .. },
                Some(expires_at),
                Some(finalized_at),
            ) if finalized_at >= expires_at => ProviderTransactionStatus::Expired,
            (status, _, _) => status,
        };
        let (kind, extra) = match self.payment_method {
            Some(method) => (method.kind, method.extra),
            None => (None, None),
        };
        let kind = self.payment_method_type.or(kind).unwrap_or_default();
        let next_action = match (&status, extra) {
            (ProviderTransactionStatus::Pending, Some(extra)) => {
                next_step(&kind, extra, expires_at).map_err(bad)?
            }
            _ => None,
        };
        let captured_amount = if status == ProviderTransactionStatus::Approved {
            amount
        } else {
            Money::zero(currency)
        };
        Ok(ProviderTransaction {
            id: self.id,
            payment_id,
            status,
            amount,
            captured_amount,
            refunded_amount: Money::zero(currency),
            next_action,
        })
    }
}

/// What a pending transaction's `extra` asks of the customer, by its method: `Err` names what
/// Wompi answered wrong.
fn next_step(
    kind: &str,
    extra: PaymentMethodExtra,
    expires_at: Option<DateTime<Utc>>,
) -> Result<Option<NextAction>, &'static str> {
    match kind {
        "BANCOLOMBIA_QR" => match extra.qr_image {
            Some(image) if valid_base64(&image) => Ok(Some(NextAction::QrCode {
                image: format!("data:image/svg+xml;base64,{image}"),
                expires_at,
            })),
            Some(_) => Err("an invalid qr_image"),
            None => Ok(None),
        },
        "DAVIPLATA" => match extra.url {
            Some(url) if valid_url(&url) => Ok(Some(NextAction::Otp { url, expires_at })),
            Some(_) => Err("an invalid Daviplata url"),
            None => Ok(None),
        },
        _ => match extra.async_payment_url {
            Some(url) if valid_url(&url) => Ok(Some(NextAction::Redirect { url })),
            Some(_) => Err("an invalid async_payment_url"),
            None => Ok(None),
        },
    }
}

/// Standard base64 (what an `<img src="data:...;base64,">` takes), bounded: nothing else may
/// reach a checkout page inside the QR's data URL.
fn valid_base64(text: &str) -> bool {
    let body = text.trim_end_matches('=');
    !text.is_empty()
        && text.len() <= QR_IMAGE_LEN_MAX
        && text.len().is_multiple_of(4)
        && text.len() - body.len() <= 2
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

/// Wompi's error shape: `{"error":{"type","reason"|"messages":{field:[..]}}}`.
#[derive(Deserialize)]
struct ErrorEnvelope {
    error: ErrorBody,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    reason: Option<serde_json::Value>,
    #[serde(default)]
    messages: Option<serde_json::Map<String, serde_json::Value>>,
}

/// The fields a `422 INPUT_VALIDATION_ERROR` names.
fn error_fields(body: &[u8]) -> BTreeSet<String> {
    serde_json::from_slice::<ErrorEnvelope>(body)
        .ok()
        .and_then(|e| e.error.messages)
        .map(|messages| messages.keys().take(32).cloned().collect())
        .unwrap_or_default()
}

/// Wompi's error type and reason (or the names of the fields it refused), printable and
/// bounded; message texts of field errors are not echoed (they may quote input).
fn error_summary(body: &[u8]) -> String {
    crate::http::error_summary(body, |ErrorEnvelope { error }| {
        let mut text = sanitize(&error.kind, 48);
        if let Some(serde_json::Value::String(reason)) = &error.reason {
            text.push_str(": ");
            text.push_str(&sanitize(reason, 120));
        }
        if let Some(messages) = &error.messages {
            let fields: Vec<String> = messages.keys().take(8).map(|k| sanitize(k, 40)).collect();
            text.push_str(" on ");
            text.push_str(&fields.join(", "));
        }
        Some(text)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::ProviderFailureKind;
    use uuid::Uuid;

    fn cop(s: &str) -> Money {
        Money::parse(s, Currency::COP).unwrap()
    }

    fn config(base_url: &str) -> WompiConfig {
        WompiConfig {
            base_url: base_url.into(),
            ..WompiConfig::test_defaults()
        }
    }

    fn prod_config() -> WompiConfig {
        WompiConfig {
            base_url: "https://production.wompi.co/v1".into(),
            public_key: "pub_prod_Kw4aC0rZVgLZQn209NbEKPuXLzBD28Zx".into(),
            private_key: "prv_prod_bWgaFiA4H2sPQhMh0hUUOpXvbYNLzB2I".into(),
            events_secret: "prod_events_OcHnIzeBl5socpwByQ4hA52Em3USQ93Z".into(),
            integrity_secret: "prod_integrity_Z5mMke9x0k8gpErbDqwrJXMqsI6SFli6".into(),
            timeout_ms: DEFAULT_TIMEOUT_MS,
            event_age_max_s: DEFAULT_EVENT_AGE_MAX_S,
            unset_vars: Vec::new(),
        }
    }

    #[test]
    fn integrity_signature_matches_an_independent_sha256() {
        // printf '%s' "6a1f3c2e-8b4d-4e7a-9c10-5d2b7f3e1a9012900000COPtest_integrity_payledger_kat_0123456789abcdef" | sha256sum
        // python3 -c 'import hashlib;print(hashlib.sha256(b"6a1f3c2e-8b4d-4e7a-9c10-5d2b7f3e1a9012900000COPtest_integrity_payledger_kat_0123456789abcdef").hexdigest())'
        const EXPECTED: &str = "af59a775e4d17220fb8b7253f57e9cb056531242c421dc62ad0ebdfe1c0a212e";
        assert_eq!(
            integrity_signature(
                "6a1f3c2e-8b4d-4e7a-9c10-5d2b7f3e1a90",
                12_900_000,
                "COP",
                "test_integrity_payledger_kat_0123456789abcdef"
            ),
            EXPECTED
        );
    }

    #[test]
    fn amounts_convert_to_and_from_cents_exactly() {
        assert_eq!(amount_in_cents(cop("129000.00")), 12_900_000);
        assert_eq!(amount_in_cents(cop("0.01")), 1);
        assert_eq!(amount_in_cents(cop("1000000000000")), 100_000_000_000_000);
        assert_eq!(
            amount_in_cents(Money::parse("150", Currency::JPY).unwrap()),
            15_000
        );
        assert_eq!(
            money_from_cents(12_900_000, Currency::COP).unwrap(),
            cop("129000")
        );
        assert_eq!(money_from_cents(1, Currency::COP).unwrap(), cop("0.01"));
        assert!(money_from_cents(0, Currency::COP).is_err());
        assert!(money_from_cents(-5, Currency::COP).is_err());
        assert!(money_from_cents(100, Currency::JPY).is_err());
        assert!(money_from_cents(i64::MAX, Currency::COP).is_err());
    }

    #[test]
    fn checkout_widget_carries_the_signature_and_nothing_secret() {
        let provider = WompiProvider::new(config("http://127.0.0.1:1/v1")).unwrap();
        let payment_id = PaymentId::from_str("6a1f3c2e-8b4d-4e7a-9c10-5d2b7f3e1a90").unwrap();
        let widget = provider.checkout_widget(payment_id, cop("129000.00"));
        assert_eq!(widget.public_key, TEST_PUBLIC_KEY);
        assert_eq!(widget.reference, "6a1f3c2e-8b4d-4e7a-9c10-5d2b7f3e1a90");
        assert_eq!(widget.amount_in_cents, 12_900_000);
        assert_eq!(widget.currency, "COP");
        assert_eq!(
            widget.signature_integrity,
            integrity_signature(&widget.reference, 12_900_000, "COP", TEST_INTEGRITY_SECRET)
        );
        let json = serde_json::to_string(&widget).unwrap();
        for secret in [TEST_PRIVATE_KEY, TEST_EVENTS_SECRET, TEST_INTEGRITY_SECRET] {
            assert!(!json.contains(secret), "{json}");
        }
    }

    #[test]
    fn debug_never_shows_secrets() {
        let c = config("http://127.0.0.1:1/v1");
        let provider = WompiProvider::new(c.clone()).unwrap();
        let printed = format!("{c:?} {provider:?} {c:#?}");
        for secret in [TEST_PRIVATE_KEY, TEST_EVENTS_SECRET, TEST_INTEGRITY_SECRET] {
            assert!(!printed.contains(secret), "{printed}");
        }
        assert!(printed.contains(TEST_PUBLIC_KEY));
    }

    #[test]
    fn from_lookup_defaults_unset_variables_and_keeps_set_ones() {
        let config = WompiConfig::from_lookup(|name| match name {
            ENV_PUBLIC_KEY => Some("pub_test_abc".into()),
            ENV_BASE_URL => Some(String::new()),
            _ => None,
        });
        assert_eq!(config.public_key, "pub_test_abc");
        assert_eq!(config.base_url, "");
        assert_eq!(config.private_key.expose_secret(), TEST_PRIVATE_KEY);
        assert_eq!(
            config.unset_vars,
            vec![ENV_PRIVATE_KEY, ENV_EVENTS_SECRET, ENV_INTEGRITY_SECRET]
        );
    }

    #[test]
    fn test_defaults_pass_in_test_and_fail_in_production() {
        assert_eq!(
            WompiConfig::test_defaults().problems(false),
            Vec::<String>::new()
        );
        let production = WompiConfig::test_defaults().problems(true);
        for var in [
            ENV_PUBLIC_KEY,
            ENV_PRIVATE_KEY,
            ENV_EVENTS_SECRET,
            ENV_INTEGRITY_SECRET,
            ENV_BASE_URL,
        ] {
            assert!(
                production.iter().any(|p| p.starts_with(var)),
                "{var}: {production:?}"
            );
        }
        assert!(production.iter().any(|p| p.contains("https")));
        assert!(production
            .iter()
            .any(|p| p.contains("a test key (pub_test_...)")));
    }

    #[test]
    fn unset_variables_are_missing_in_production_only() {
        let config = WompiConfig::from_lookup(|_| None);
        assert_eq!(config.problems(false), Vec::<String>::new());
        let problems = config.problems(true);
        assert_eq!(problems.len(), 5, "{problems:?}");
        assert!(problems.iter().all(|p| p.ends_with("is not set")));
    }

    #[test]
    fn production_keys_pass_in_production_and_fail_in_test() {
        assert_eq!(prod_config().problems(true), Vec::<String>::new());
        let test = prod_config().problems(false);
        assert_eq!(test.len(), 4, "{test:?}");
        assert!(test.iter().all(|p| p.contains("a production key")));
    }

    #[test]
    fn problems_name_short_secrets_missing_values_and_http_without_values() {
        let mut c = prod_config();
        c.private_key = "prv_prod_short".into();
        c.events_secret = "".into();
        c.integrity_secret = "prod_integrity_has space in it 0123456789".into();
        c.base_url = "http://production.wompi.co/v1".into();
        c.public_key = "pk_live_something".into();
        let problems = c.problems(true);
        let joined = problems.join("\n");
        assert!(joined.contains("WOMPI_PRIVATE_KEY is shorter than 32"));
        assert!(joined.contains("WOMPI_EVENTS_SECRET is missing"));
        assert!(joined.contains("WOMPI_INTEGRITY_SECRET contains spaces"));
        assert!(joined.contains("WOMPI_BASE_URL must use https"));
        assert!(joined.contains("WOMPI_PUBLIC_KEY does not start with pub_prod_"));
        for value in [
            "prv_prod_short",
            "has space",
            "pk_live_something",
            "production.wompi",
        ] {
            assert!(!joined.contains(value), "{joined}");
        }
        c.base_url = "ftp://x".into();
        assert!(c
            .problems(false)
            .iter()
            .any(|p| p == "WOMPI_BASE_URL must be an http(s) URL"));
        c.base_url = "https://user:pw@x/v1".into();
        assert!(c
            .problems(false)
            .iter()
            .any(|p| p.starts_with("WOMPI_BASE_URL must be a plain base URL")));
    }

    #[test]
    fn new_refuses_unusable_configuration() {
        assert!(WompiProvider::new(config("http://127.0.0.1:1/v1")).is_ok());
        for bad in ["not a url", "ftp://x", "http://u:p@x", "http://x/?a=b"] {
            assert!(WompiProvider::new(config(bad)).is_err(), "{bad}");
        }
        let mut c = config("http://127.0.0.1:1");
        c.private_key = "bad\nkey".into();
        assert!(WompiProvider::new(c).is_err());
        let mut c = config("http://127.0.0.1:1");
        c.public_key = String::new();
        assert!(WompiProvider::new(c).is_err());
        let mut c = config("http://127.0.0.1:1");
        c.timeout_ms = 0;
        assert!(WompiProvider::new(c).is_err());
    }

    #[test]
    fn builds_urls_under_the_v1_base_and_refuses_odd_ids() {
        let provider = WompiProvider::new(config("https://sandbox.wompi.co/v1")).unwrap();
        assert_eq!(
            provider
                .transaction_url("1292-1602113476-10985", &["void"])
                .unwrap()
                .as_str(),
            "https://sandbox.wompi.co/v1/transactions/1292-1602113476-10985/void"
        );
        assert_eq!(
            provider.search_url("a b&c").unwrap().as_str(),
            "https://sandbox.wompi.co/v1/transactions?reference=a+b%26c"
        );
        let provider = WompiProvider::new(config("https://sandbox.wompi.co/v1/")).unwrap();
        assert_eq!(
            provider
                .url(&["pse", "financial_institutions"])
                .unwrap()
                .as_str(),
            "https://sandbox.wompi.co/v1/pse/financial_institutions"
        );
        for bad in ["", "../admin", "a/b", "a?b", "a b", &"x".repeat(65)] {
            let err = provider.transaction_url(bad, &[]).unwrap_err();
            assert_eq!(err.kind, ProviderFailureKind::Rejected);
        }
    }

    #[test]
    fn maps_wompi_transactions() {
        let json = |status: &str, extra: &str| {
            format!(
                r#"{{"data":{{"id":"1292-1602113476-10985","status":"{status}","amount_in_cents":12900000,"currency":"COP","reference":"6a1f3c2e-8b4d-4e7a-9c10-5d2b7f3e1a90","status_message":"Fondos\ninsuficientes","customer_email":"a@b.co","payment_method_type":"PSE","payment_method":{{"type":"PSE","extra":{extra}}},"merchant":{{"id":1}}}}}}"#
            )
        };
        let parse = |text: String| {
            serde_json::from_str::<Envelope<TransactionData>>(&text)
                .unwrap()
                .data
                .into_transaction()
        };
        let pending = parse(json(
            "PENDING",
            r#"{"async_payment_url":"https://sandbox.wompi.co/pse/1","ticket_id":7}"#,
        ))
        .unwrap();
        assert_eq!(pending.status, ProviderTransactionStatus::Pending);
        assert_eq!(pending.amount, cop("129000"));
        assert!(pending.captured_amount.is_zero());
        assert_eq!(
            pending.next_action,
            Some(NextAction::Redirect {
                url: "https://sandbox.wompi.co/pse/1".into()
            })
        );
        let approved = parse(json("APPROVED", "null")).unwrap();
        assert_eq!(approved.status, ProviderTransactionStatus::Approved);
        assert_eq!(approved.captured_amount, cop("129000"));
        assert_eq!(approved.next_action, None);
        assert_eq!(
            parse(json("DECLINED", "{}")).unwrap().status,
            ProviderTransactionStatus::Declined {
                reason: "Fondos?insuficientes".into()
            }
        );
        assert_eq!(
            parse(json("ERROR", "{}")).unwrap().status,
            ProviderTransactionStatus::Failed {
                reason: "Fondos?insuficientes".into()
            }
        );
        assert_eq!(
            parse(json("VOIDED", "{}")).unwrap().status,
            ProviderTransactionStatus::Voided
        );
        assert!(parse(json("WHATEVER", "{}")).is_err());
        assert!(parse(json(
            "PENDING",
            r#"{"async_payment_url":"javascript:alert(1)"}"#
        ))
        .is_err());
        assert!(parse(json("APPROVED", "{}").replace("6a1f3c2e-", "order-")).is_err());
        assert!(parse(json("APPROVED", "{}").replace("12900000", "0")).is_err());
        assert!(parse(json("APPROVED", "{}").replace("\"COP\"", "\"XXX\"")).is_err());
    }

    #[test]
    fn error_summary_keeps_type_reason_and_field_names_only() {
        assert_eq!(
            error_summary(
                br#"{"error":{"type":"INPUT_VALIDATION_ERROR","messages":{"reference":["La referencia ya ha sido usada: abc"]}}}"#
            ),
            "INPUT_VALIDATION_ERROR on reference"
        );
        assert_eq!(
            error_summary(
                br#"{"error":{"type":"INVALID_ACCESS_TOKEN","reason":"La llave\nno corresponde"}}"#
            ),
            "INVALID_ACCESS_TOKEN: La llave?no corresponde"
        );
        assert_eq!(error_summary(b"<html>x</html>"), "unrecognized error body");
        assert_eq!(error_summary(b""), "empty body");
        let fields = error_fields(
            br#"{"error":{"type":"INPUT_VALIDATION_ERROR","messages":{"acceptance_token":["x"],"reference":["y"]}}}"#,
        );
        assert!(fields.contains("reference") && fields.contains("acceptance_token"));
    }

    #[test]
    fn payment_method_bodies_follow_wompi_shapes() {
        let request = |method| CreateTransaction {
            payment_id: PaymentId::from_uuid(Uuid::nil()),
            reference: "order \"1\" <script>".into(),
            amount: cop("10"),
            method,
            capture_mode: CaptureMode::Automatic,
            customer_email: None,
            customer: Default::default(),
            return_url: None,
        };
        let card = request(PaymentMethodDetails::Card {
            token: "tok_test_1_abc".into(),
        });
        assert_eq!(
            serde_json::to_value(payment_method_body(&card).unwrap()).unwrap(),
            serde_json::json!({"type":"CARD","token":"tok_test_1_abc","installments":1})
        );
        let nequi = request(PaymentMethodDetails::Nequi {
            phone_number: "3991111111".into(),
        });
        assert_eq!(
            serde_json::to_value(payment_method_body(&nequi).unwrap()).unwrap(),
            serde_json::json!({"type":"NEQUI","phone_number":"3991111111"})
        );
        let pse = request(PaymentMethodDetails::Pse {
            financial_institution_code: "1".into(),
            user_type: 0,
            user_legal_id_type: "CC".into(),
            user_legal_id: "1999888777".into(),
        });
        assert_eq!(
            serde_json::to_value(payment_method_body(&pse).unwrap()).unwrap(),
            serde_json::json!({"type":"PSE","user_type":0,"user_legal_id_type":"CC",
                "user_legal_id":"1999888777","financial_institution_code":"1",
                "payment_description":"Pago order 1 script"})
        );
        assert_eq!(pse_description(&"x".repeat(100)).chars().count(), 30);
        assert_eq!(pse_description("\"'"), "Pago payledger");
        for bad in [
            PaymentMethodDetails::Nequi {
                phone_number: "399111111".into(),
            },
            PaymentMethodDetails::Card { token: "".into() },
            PaymentMethodDetails::Pse {
                financial_institution_code: "1".into(),
                user_type: 2,
                user_legal_id_type: "CC".into(),
                user_legal_id: "1".into(),
            },
            PaymentMethodDetails::Efecty,
            PaymentMethodDetails::Gcash,
        ] {
            let err = payment_method_body(&request(bad)).err().unwrap();
            assert_eq!(err.kind, ProviderFailureKind::Rejected);
        }
    }

    #[test]
    fn integrity_signature_with_an_expiration_time_matches_an_independent_sha256() {
        // printf '%s' "6a1f3c2e-8b4d-4e7a-9c10-5d2b7f3e1a9012900000COP2026-03-01T15:30:00.000Ztest_integrity_payledger_kat_0123456789abcdef" | sha256sum
        const EXPECTED: &str = "fc5721f08c2644a109198e911cb5e3109d3cda3d7384a27c6df63398b6536ed3";
        assert_eq!(
            integrity_signature_until(
                "6a1f3c2e-8b4d-4e7a-9c10-5d2b7f3e1a90",
                12_900_000,
                "COP",
                "2026-03-01T15:30:00.000Z",
                "test_integrity_payledger_kat_0123456789abcdef"
            ),
            EXPECTED
        );
        let at = "2026-03-01T15:30:00Z".parse::<DateTime<Utc>>().unwrap();
        assert_eq!(wompi_time(at), "2026-03-01T15:30:00.000Z");
    }

    #[test]
    fn rail_bodies_follow_wompi_shapes() {
        let request = |method| CreateTransaction {
            payment_id: PaymentId::from_uuid(Uuid::nil()),
            reference: "order-77 'x'".into(),
            amount: cop("10"),
            method,
            capture_mode: CaptureMode::Automatic,
            customer_email: None,
            customer: Default::default(),
            return_url: None,
        };
        let body =
            |method| serde_json::to_value(payment_method_body(&request(method)).unwrap()).unwrap();
        assert_eq!(
            body(PaymentMethodDetails::BancolombiaTransfer {
                user_type: 0,
                payment_description: "Pedido 77 de la tienda".into(),
            }),
            serde_json::json!({"type": "BANCOLOMBIA_TRANSFER", "user_type": "PERSON",
                "payment_description": "Pedido 77 de la tienda"})
        );
        assert_eq!(
            body(PaymentMethodDetails::BancolombiaQr {
                payment_description: None
            }),
            serde_json::json!({"type": "BANCOLOMBIA_QR", "payment_description": "Pago order-77 x"})
        );
        assert_eq!(
            body(PaymentMethodDetails::Daviplata {
                user_legal_id_type: "CC".into(),
                user_legal_id: "1134568019".into(),
                payment_description: Some("Pago en línea".into()),
            }),
            serde_json::json!({"type": "DAVIPLATA", "user_legal_id_type": "CC",
                "user_legal_id": "1134568019", "payment_description": "Pago en línea"})
        );
        for bad in [
            PaymentMethodDetails::BancolombiaTransfer {
                user_type: 1,
                payment_description: "x".into(),
            },
            PaymentMethodDetails::BancolombiaTransfer {
                user_type: 0,
                payment_description: "it's".into(),
            },
            PaymentMethodDetails::BancolombiaQr {
                payment_description: Some("y".repeat(65).into()),
            },
            PaymentMethodDetails::Daviplata {
                user_legal_id_type: "cc".into(),
                user_legal_id: "1".into(),
                payment_description: None,
            },
            PaymentMethodDetails::Daviplata {
                user_legal_id_type: "CC".into(),
                user_legal_id: "1 2".into(),
                payment_description: None,
            },
            PaymentMethodDetails::Daviplata {
                user_legal_id_type: "CC".into(),
                user_legal_id: "1".into(),
                payment_description: Some("z".repeat(31).into()),
            },
        ] {
            let err = payment_method_body(&request(bad)).err().unwrap();
            assert_eq!(err.kind, ProviderFailureKind::Rejected);
            assert!(!err.detail.contains("1134568019"), "{err}");
        }
        let company = payment_method_body(&request(PaymentMethodDetails::BancolombiaTransfer {
            user_type: 1,
            payment_description: "x".into(),
        }))
        .err()
        .unwrap();
        assert!(company.detail.contains("natural persons"), "{company}");
        assert_eq!(description_of(&"x".repeat(100), 64).chars().count(), 64);
        assert_eq!(
            description_of("a b                              c", 8),
            "Pago a b"
        );
        let provider = WompiProvider::new(config("http://127.0.0.1:1/v1")).unwrap();
        for rail in [
            PaymentMethodType::BancolombiaTransfer,
            PaymentMethodType::BancolombiaQr,
            PaymentMethodType::Daviplata,
        ] {
            assert!(is_rail(rail));
            assert!(provider.supports(rail, Currency::COP));
            assert!(!provider.supports(rail, Currency::USD));
        }
        assert!(!is_rail(PaymentMethodType::Pse));
    }

    #[test]
    fn maps_rail_transactions_their_next_step_and_expiry() {
        let json = |status: &str, kind: &str, extra: &str, finalized: &str| {
            format!(
                r#"{{"data":{{"id":"112233-1700000000-00001","status":"{status}","amount_in_cents":5000000,"currency":"COP","reference":"6a1f3c2e-8b4d-4e7a-9c10-5d2b7f3e1a90","status_message":"Transacción rechazada","payment_method_type":"{kind}","payment_method":{{"type":"{kind}","extra":{extra}}},"expiration_time":"2026-03-01T15:30:00.000Z","finalized_at":{finalized}}}}}"#
            )
        };
        let parse = |text: String| {
            serde_json::from_str::<Envelope<TransactionData>>(&text)
                .unwrap()
                .data
                .into_transaction()
        };
        let expires_at = Some("2026-03-01T15:30:00Z".parse::<DateTime<Utc>>().unwrap());
        let qr = parse(json(
            "PENDING",
            "BANCOLOMBIA_QR",
            r#"{"qr_id":"a3827b90-501b-11ed-ae9b-3156df51ed75","qr_image":"PHN2Zz48L3N2Zz4=","external_identifier":"d00000000000"}"#,
            "null",
        ))
        .unwrap();
        assert_eq!(
            qr.next_action,
            Some(NextAction::QrCode {
                image: "data:image/svg+xml;base64,PHN2Zz48L3N2Zz4=".into(),
                expires_at,
            })
        );
        let otp = parse(json(
            "PENDING",
            "DAVIPLATA",
            r#"{"url":"https://sandbox.wompi.co/daviplata/otp/1","url_services":{"token":"t","code_otp_send":"https://x/s","code_otp_validate":"https://x/v"}}"#,
            "null",
        ))
        .unwrap();
        assert_eq!(
            otp.next_action,
            Some(NextAction::Otp {
                url: "https://sandbox.wompi.co/daviplata/otp/1".into(),
                expires_at,
            })
        );
        let transfer = parse(json(
            "PENDING",
            "BANCOLOMBIA_TRANSFER",
            r#"{"async_payment_url":"https://sandbox.wompi.co/bancolombia/1","is_three_ds":false}"#,
            "null",
        ))
        .unwrap();
        assert_eq!(
            transfer.next_action,
            Some(NextAction::Redirect {
                url: "https://sandbox.wompi.co/bancolombia/1".into()
            })
        );
        // Not published yet: pending, nothing to show.
        let early = parse(json("PENDING", "BANCOLOMBIA_QR", "{}", "null")).unwrap();
        assert_eq!(early.status, ProviderTransactionStatus::Pending);
        assert_eq!(early.next_action, None);
        // Closed by its deadline: expired; before it: declined or failed as usual.
        for status in ["DECLINED", "ERROR"] {
            let late = parse(json(
                status,
                "DAVIPLATA",
                "{}",
                r#""2026-03-01T15:30:00.000Z""#,
            ));
            assert_eq!(late.unwrap().status, ProviderTransactionStatus::Expired);
        }
        let declined = parse(json(
            "DECLINED",
            "DAVIPLATA",
            "{}",
            r#""2026-03-01T15:29:59.999Z""#,
        ))
        .unwrap();
        assert_eq!(
            declined.status,
            ProviderTransactionStatus::Declined {
                reason: "Transacción rechazada".into()
            }
        );
        let approved = parse(json(
            "APPROVED",
            "BANCOLOMBIA_QR",
            "{}",
            r#""2026-03-01T16:00:00.000Z""#,
        ))
        .unwrap();
        assert_eq!(approved.status, ProviderTransactionStatus::Approved);
        for (kind, extra) in [
            ("BANCOLOMBIA_QR", r#"{"qr_image":"<svg onload=x>"}"#),
            ("BANCOLOMBIA_QR", r#"{"qr_image":"abc"}"#),
            ("DAVIPLATA", r#"{"url":"javascript:alert(1)"}"#),
            ("BANCOLOMBIA_TRANSFER", r#"{"async_payment_url":"ftp://x"}"#),
        ] {
            assert!(
                parse(json("PENDING", kind, extra, "null")).is_err(),
                "{extra}"
            );
        }
        // A time that does not read tells nothing: declined stays declined.
        let unreadable = json(
            "DECLINED",
            "DAVIPLATA",
            "{}",
            r#""2026-03-01T16:00:00.000Z""#,
        )
        .replace(
            r#""expiration_time":"2026-03-01T15:30:00.000Z""#,
            r#""expiration_time":"soon""#,
        );
        assert!(matches!(
            parse(unreadable).unwrap().status,
            ProviderTransactionStatus::Declined { .. }
        ));
        let pending = parse(
            json(
                "PENDING",
                "DAVIPLATA",
                r#"{"url":"https://x.example/otp"}"#,
                "null",
            )
            .replace("2026-03-01T15:30:00.000Z", "soon"),
        )
        .unwrap();
        assert_eq!(
            pending.next_action,
            Some(NextAction::Otp {
                url: "https://x.example/otp".into(),
                expires_at: None
            })
        );
        assert!(valid_base64("PHN2Zz48L3N2Zz4="));
        assert!(!valid_base64(&"A".repeat(QR_IMAGE_LEN_MAX + 4)));
    }

    #[test]
    fn saved_sources_are_charged_by_their_integer_id() {
        let request = |method, source: &str| CreateTransaction {
            payment_id: PaymentId::from_uuid(Uuid::nil()),
            reference: "order-1".into(),
            amount: cop("10"),
            method: PaymentMethodDetails::Saved {
                method,
                payment_method_id: SavedMethodId::from_uuid(Uuid::nil()),
                source_id: source.into(),
            },
            capture_mode: CaptureMode::Automatic,
            customer_email: None,
            customer: Default::default(),
            return_url: None,
        };
        let body = |request: &CreateTransaction| {
            let (payment_method, payment_source_id) = method_fields(request).unwrap();
            serde_json::json!({
                "payment_method": serde_json::to_value(payment_method).unwrap(),
                "payment_source_id": payment_source_id,
            })
        };
        assert_eq!(
            body(&request(PaymentMethodType::Card, "3891")),
            serde_json::json!({"payment_method": {"installments": 1}, "payment_source_id": 3891})
        );
        assert_eq!(
            body(&request(PaymentMethodType::Nequi, "12")),
            serde_json::json!({"payment_method": null, "payment_source_id": 12})
        );
        for (method, source) in [
            (PaymentMethodType::Card, "src_1"),
            (PaymentMethodType::Card, "0"),
            (PaymentMethodType::Pse, "12"),
        ] {
            let err = method_fields(&request(method, source)).err().unwrap();
            assert_eq!(err.kind, ProviderFailureKind::Rejected, "{source}");
            assert!(!err.detail.contains(source) || source == "12", "{err}");
        }
        let direct_card = CreateTransaction {
            method: PaymentMethodDetails::Card {
                token: "tok_test_1".into(),
            },
            ..request(PaymentMethodType::Card, "1")
        };
        let (direct, none) = method_fields(&direct_card).unwrap();
        assert_eq!(none, None);
        assert_eq!(
            serde_json::to_value(direct).unwrap(),
            serde_json::json!({"type": "CARD", "token": "tok_test_1", "installments": 1})
        );
    }

    #[tokio::test]
    async fn a_save_without_an_email_or_of_another_method_is_refused_before_any_call() {
        // Port 1: nothing listens, so any call would fail as a connection error instead.
        let provider = WompiProvider::new(config("http://127.0.0.1:1/v1")).unwrap();
        let save = |email: Option<&str>, method| SaveMethod {
            payment_method_id: SavedMethodId::from_uuid(Uuid::nil()),
            customer_id: domain::CustomerId::from_uuid(Uuid::nil()),
            customer_email: email.map(SecretString::from),
            method,
            acceptance_token: None,
            return_url: None,
        };
        let card = || PaymentMethodDetails::Card {
            token: "tok_test_1".into(),
        };
        for request in [
            save(None, card()),
            save(Some("not an email"), card()),
            save(Some("ana@example.co"), PaymentMethodDetails::Efecty),
            save(
                Some("ana@example.co"),
                PaymentMethodDetails::Nequi {
                    phone_number: "123".into(),
                },
            ),
        ] {
            let err = provider.save_method(&request).await.unwrap_err();
            assert_eq!(err.kind, ProviderFailureKind::Rejected, "{err}");
        }
        assert_eq!(
            provider.saved_method_types(),
            &[PaymentMethodType::Card, PaymentMethodType::Nequi]
        );
        let err = provider.remove_method("not-a-number").await.unwrap_err();
        assert_eq!(err.kind, ProviderFailureKind::Rejected);
    }

    #[test]
    fn emails_and_urls_are_checked_before_sending() {
        assert!(valid_email("ana@example.co"));
        for bad in [
            "", "ana", "@x.co", "ana@x", "ana@.co", "a b@x.co", "a@b@c.co",
        ] {
            assert!(!valid_email(bad), "{bad}");
        }
        assert!(valid_url("https://shop.example/return?x=1"));
        assert!(!valid_url("javascript:alert(1)"));
        assert!(!valid_url(&format!("https://x/{}", "a".repeat(2048))));
    }
}
