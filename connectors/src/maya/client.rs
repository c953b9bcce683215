//! Maya (PayMaya) adapter: Maya Checkout for the customer, Maya's Payments API for the rest.
//!
//! * Create: `POST {base}/checkout/v1/checkouts` with `Authorization: Basic base64("<public
//!   key>:")` and `{"totalAmount":{"value":129.50,"currency":"PHP"},"requestReferenceNumber":
//!   "<our payment id>","redirectUrl":{"success","failure","cancel"},"items":[..],
//!   "authorizationType":"NORMAL"}` (the last only for manual capture: Maya's "Authorize (Hold)
//!   and Capture"). Maya documents `value` as a JSON number; it is written from the decimal's
//!   own digits, never through a float. The answer `{"checkoutId","redirectUrl"}` becomes
//!   `Pending` + `NextAction::Redirect`; the checkout id is the payment id of the Payments API.
//! * Everything else uses the secret key (`Basic base64("<secret key>:")`):
//!   `GET /payments/v1/payments/{id}` (status; Maya deprecated `GET /checkout/v1/checkouts/{id}`
//!   in favour of it), `GET /payments/v1/payment-rrns/{rrn}` (payments by our reference),
//!   `POST /payments/v1/payments/{id}/capture`, `POST .../voids`, `POST|GET .../refunds`, and
//!   `GET /payments/v1/webhooks` as the cheap authenticated health call.
//! * A capture creates a separate *capture payment* at Maya. Its `requestReferenceNumber` is
//!   [`capture_reference`] of our payment id, so it can be found again (a retried capture is
//!   a no-op, a refund goes to the capture) and its own `PAYMENT_SUCCESS` webhook is known to
//!   be ours but not news.
//! * Maya takes no idempotency key: refunds carry [`refund_reason`] (with our refund id) and a
//!   repeat finds the first refund by it; the capture's reference is derived from the payment
//!   (one final capture per payment). A checkout is a Maya payment from its create on
//!   (`PENDING_TOKEN` until the customer acts), so a create whose answer was lost is found by
//!   our reference ([`PaymentProvider::find_transaction`]); only Maya's own "no such payment"
//!   (`404` `PY0009`) proves it holds none and lets a create be sent again.
//! * Saved cards are Maya Vault's cards of a customer (`crate::maya::vault`): saved with
//!   `POST /payments/v1/customers` then `POST .../customers/{id}/cards`, charged in one click
//!   with `POST .../customers/{id}/cards/{cardTokenId}/payments` (our payment id as the
//!   reference, so a lost answer is found like a checkout's), removed with `DELETE`.
//!
//! Failures map like every adapter: no answer in time -> `Timeout`, no connection ->
//! `Connection`, 5xx -> `ServerError`, 4xx -> `Rejected` with Maya's error code as detail.

use std::str::FromStr;

use async_trait::async_trait;
use domain::{
    CaptureId, CaptureMode, Currency, Money, PaymentId, PaymentMethodType, RefundId,
};
use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use reqwest::{Method, StatusCode, Url};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::http::{basic_auth, sanitize, setting, valid_redirect_url};
use crate::{
    CreateTransaction, NextAction, PaymentMethodDetails, PaymentProvider, ProviderConfigError,
    ProviderError, ProviderRefund, ProviderTransaction, ProviderTransactionStatus, SaveMethod,
    SavedSource, SourceState,
};

/// Largest response body read from Maya; anything bigger is a provider fault.
pub const RESPONSE_BODY_MAX_BYTES: usize = 256 * 1024;
/// Default whole-request timeout.
pub const DEFAULT_TIMEOUT_MS: u64 = 10_000;
/// Longest per-request timeout accepted.
pub use crate::http::TIMEOUT_MS_MAX;
/// Shortest secret key accepted by `problems()`.
pub const SECRET_MIN_LEN: usize = 32;
/// Maya's sandbox and production API hosts.
pub const SANDBOX_HOST: &str = "pg-sandbox.paymaya.com";
pub const PRODUCTION_HOST: &str = "pg.paymaya.com";

/// Test defaults used when the environment leaves a value unset. They only work against the
/// bundled emulator; `problems(true)` refuses them.
pub const ENV_BASE_URL: &str = "MAYA_BASE_URL";
pub const ENV_PUBLIC_KEY: &str = "MAYA_PUBLIC_KEY";
pub const ENV_SECRET_KEY: &str = "MAYA_SECRET_KEY";
pub const ENV_WEBHOOK_SOURCES: &str = "MAYA_WEBHOOK_SOURCES";

pub const TEST_PUBLIC_KEY: &str = "pk-payledger-test-0000000000000000000000000000";
pub const TEST_SECRET_KEY: &str = "sk-payledger-test-0000000000000000000000000000";
pub const TEST_WEBHOOK_SOURCES: &str = "127.0.0.1,::1";
pub const TEST_BASE_URL: &str = "http://127.0.0.1:0";

const ID_LEN_MAX: usize = 128;
const REASON_LEN_MAX: usize = 128;

/// Everything the Maya adapter and its webhook verifier need.
#[derive(Debug, Clone)]
pub struct MayaConfig {
    /// `https://pg.paymaya.com` in production, `https://pg-sandbox.paymaya.com` for Maya's
    /// sandbox, the emulator's address in tests.
    pub base_url: String,
    /// `pk-...`: only for creating checkouts.
    pub public_key: String,
    /// `sk-...`: everything else.
    pub secret_key: SecretString,
    /// Comma-separated IPs and CIDR ranges (IPv4 and IPv6) webhooks may come from. Maya does
    /// not sign online-payment webhooks; this list is their only authentication.
    pub webhook_sources: String,
    /// Whole-request timeout in milliseconds.
    pub timeout_ms: u64,
}

impl MayaConfig {
    /// Reads `MAYA_PUBLIC_KEY`, `MAYA_SECRET_KEY`, `MAYA_WEBHOOK_SOURCES`, `MAYA_BASE_URL`;
    /// unset or empty values get the test defaults above.
    pub fn from_env() -> Self {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let get = |name: &str, default: &str| {
            setting(lookup(name)).unwrap_or_else(|| default.to_owned())
        };
        MayaConfig {
            base_url: get(ENV_BASE_URL, TEST_BASE_URL),
            public_key: get(ENV_PUBLIC_KEY, TEST_PUBLIC_KEY),
            secret_key: get(ENV_SECRET_KEY, TEST_SECRET_KEY).into(),
            webhook_sources: get(ENV_WEBHOOK_SOURCES, TEST_WEBHOOK_SOURCES),
            timeout_ms: DEFAULT_TIMEOUT_MS,
        }
    }

    /// Every problem that makes this configuration unfit for `production` (or, with
    /// `false`, for a test environment). Messages name the variable, never its value.
    ///
    /// Maya's keys carry no sandbox/production marker (both are `pk-`/`sk-`), so the
    /// environment is told by the API host: `pg-sandbox.paymaya.com` is refused in
    /// production and `pg.paymaya.com` outside it; the built-in test keys are refused in
    /// production.
    pub fn problems(&self, production: bool) -> Vec<String> {
        let mut problems = Vec::new();
        key_problems(
            &mut problems,
            "MAYA_PUBLIC_KEY",
            &self.public_key,
            "pk-",
            TEST_PUBLIC_KEY,
            production,
            None,
        );
        key_problems(
            &mut problems,
            "MAYA_SECRET_KEY",
            self.secret_key.expose_secret(),
            "sk-",
            TEST_SECRET_KEY,
            production,
            Some(SECRET_MIN_LEN),
        );
        match crate::SourceList::parse(&self.webhook_sources) {
            Err(problem) => problems.push(format!("MAYA_WEBHOOK_SOURCES {problem}")),
            Ok(list) if list.is_empty() => problems.push(
                "MAYA_WEBHOOK_SOURCES is empty: every Maya webhook would be refused".to_owned(),
            ),
            Ok(list) if list.too_broad() => problems.push(
                "MAYA_WEBHOOK_SOURCES covers too much of the internet (a catch-all range, or one split in parts): Maya webhooks are unsigned, so \
                 anyone could send one"
                    .to_owned(),
            ),
            Ok(list) if production && list.only_loopback() => problems.push(
                "MAYA_WEBHOOK_SOURCES lists only this machine; set Maya's published webhook \
                 source addresses"
                    .to_owned(),
            ),
            Ok(_) => {}
        }
        match Url::parse(&self.base_url) {
            Err(_) => problems.push("MAYA_BASE_URL is not a URL".to_owned()),
            Ok(url) => {
                if !matches!(url.scheme(), "http" | "https") {
                    problems.push("MAYA_BASE_URL must be an http(s) URL".to_owned());
                }
                if production && url.scheme() != "https" {
                    problems.push("MAYA_BASE_URL must use https in production".to_owned());
                }
                let host = url.host_str().unwrap_or_default();
                if production && host.eq_ignore_ascii_case(SANDBOX_HOST) {
                    problems
                        .push("MAYA_BASE_URL points at Maya's sandbox in production".to_owned());
                }
                if !production && host.eq_ignore_ascii_case(PRODUCTION_HOST) {
                    problems.push(
                        "MAYA_BASE_URL points at Maya's production API outside production"
                            .to_owned(),
                    );
                }
            }
        }
        problems
    }
}

fn key_problems(
    problems: &mut Vec<String>,
    name: &str,
    value: &str,
    prefix: &str,
    test_default: &str,
    production: bool,
    min_len: Option<usize>,
) {
    if value.is_empty() {
        problems.push(format!("{name} is missing"));
        return;
    }
    if !value.starts_with(prefix) {
        problems.push(format!(
            "{name} does not look like a Maya key (`{prefix}...`)"
        ));
    }
    if let Some(min) = min_len {
        if value.chars().count() < min {
            problems.push(format!("{name} is shorter than {min} characters"));
        }
    }
    if production && value == test_default {
        problems.push(format!("{name} is the built-in test key"));
    }
}

/// The `requestReferenceNumber` of the capture payment of one of our payments: the payment
/// id without dashes plus `-cap` (36 characters, Maya's limit), so it never parses as a
/// payment id of ours.
pub fn capture_reference(payment_id: PaymentId) -> String {
    format!("{}-cap", payment_id.as_uuid().simple())
}

/// Whether a `requestReferenceNumber` is one of [`capture_reference`]'s.
pub fn is_capture_reference(rrn: &str) -> bool {
    rrn.len() == 36 && rrn.ends_with("-cap") && rrn[..32].bytes().all(|b| b.is_ascii_hexdigit())
}

/// The refund `reason` sent to Maya: it carries our refund id so a retried refund finds the
/// first one instead of refunding twice.
pub fn refund_reason(refund_id: RefundId) -> String {
    format!("payledger refund {refund_id}")
}

/// The Maya adapter.
#[derive(Debug)]
pub struct MayaProvider {
    http: reqwest::Client,
    base_url: Url,
    public_auth: HeaderValue,
    pub(super) secret_auth: HeaderValue,
    public_key: String,
    secret_key: SecretString,
    timeout_ms: u64,
}

impl MayaProvider {
    pub const NAME: &'static str = "maya";

    pub fn new(config: MayaConfig) -> Result<Self, ProviderConfigError> {
        let invalid = |problem: &str| ProviderConfigError {
            provider: Self::NAME,
            problem: problem.to_owned(),
        };
        let base_url = parse_base_url(&config.base_url).map_err(invalid)?;
        if config.public_key.is_empty() || config.secret_key.expose_secret().is_empty() {
            return Err(invalid("public_key and secret_key are required"));
        }
        let public_auth = basic_auth(&config.public_key)
            .ok_or_else(|| invalid("public_key must be printable ASCII without `:`"))?;
        let secret_auth = basic_auth(config.secret_key.expose_secret())
            .ok_or_else(|| invalid("secret_key must be printable ASCII without `:`"))?;
        let http = crate::http::provider_client(config.timeout_ms).map_err(invalid)?;
        Ok(MayaProvider {
            http,
            base_url,
            public_auth,
            secret_auth,
            public_key: config.public_key,
            secret_key: config.secret_key,
            timeout_ms: config.timeout_ms,
        })
    }

    fn url(&self, segments: &[&str]) -> Result<Url, ProviderError> {
        self.url_checked(segments, valid_id)
    }

    /// `base_url` with `segments` appended, each first checked by `valid`.
    pub(super) fn url_checked(
        &self,
        segments: &[&str],
        valid: impl Fn(&str) -> bool,
    ) -> Result<Url, ProviderError> {
        for segment in segments {
            if !valid(segment) {
                return Err(ProviderError::rejected("invalid Maya id"));
            }
        }
        let mut url = self.base_url.clone();
        url.path_segments_mut()
            .map_err(|_| ProviderError::rejected("maya base_url cannot take a path"))?
            .pop_if_empty()
            .extend(segments);
        Ok(url)
    }

    /// Sends one request; transport failures become errors, every HTTP status is returned.
    pub(super) async fn send(
        &self,
        method: Method,
        url: Url,
        auth: &HeaderValue,
        body: Option<Vec<u8>>,
    ) -> Result<(StatusCode, Vec<u8>), ProviderError> {
        let mut request = self
            .http
            .request(method, url)
            .header(AUTHORIZATION, auth.clone());
        if let Some(body) = body {
            request = request.header(CONTENT_TYPE, "application/json").body(body);
        }
        let response = request.send().await.map_err(|e| self.transport_error(e))?;
        let status = response.status();
        let body = self.read_body(response).await?;
        Ok((status, body))
    }

    /// The body of a 2xx answer, or the error the status maps to.
    pub(super) fn success(
        &self,
        (status, body): (StatusCode, Vec<u8>),
    ) -> Result<Vec<u8>, ProviderError> {
        if status.is_success() {
            return Ok(body);
        }
        let detail = self.scrub(&format!(
            "maya answered {}: {}",
            status.as_u16(),
            error_summary(&body)
        ));
        Err(if status.is_client_error() {
            ProviderError::rejected(detail)
        } else {
            ProviderError::server_error(detail)
        })
    }

    pub(super) async fn call<B: Serialize>(
        &self,
        method: Method,
        url: Url,
        auth: &HeaderValue,
        body: Option<&B>,
    ) -> Result<Vec<u8>, ProviderError> {
        let body = match body {
            Some(body) => Some(
                serde_json::to_vec(body)
                    .map_err(|_| ProviderError::rejected("cannot encode the Maya request"))?,
            ),
            None => None,
        };
        let answer = self.send(method, url, auth, body).await?;
        self.success(answer)
    }

    async fn read_body(&self, response: reqwest::Response) -> Result<Vec<u8>, ProviderError> {
        crate::http::read_body("maya", response, RESPONSE_BODY_MAX_BYTES, |e| {
            self.transport_error(e)
        })
        .await
    }

    fn transport_error(&self, error: reqwest::Error) -> ProviderError {
        crate::http::transport_error("maya", error, self.timeout_ms, |t| self.scrub(t))
    }

    /// The detail ends up in events and logs: neither key may ever be in it.
    fn scrub(&self, text: &str) -> String {
        crate::http::scrub(
            text,
            [self.secret_key.expose_secret(), self.public_key.as_str()],
        )
    }

    pub(super) fn decode<T: for<'de> Deserialize<'de>>(
        &self,
        body: &[u8],
    ) -> Result<T, ProviderError> {
        crate::http::decode("maya", body)
    }

    async fn fetch_payment(&self, id: &str) -> Result<wire::Payment, ProviderError> {
        let url = self.url(&["payments", "v1", "payments", id])?;
        let raw = self
            .call::<()>(Method::GET, url, &self.secret_auth, None)
            .await?;
        let payment: wire::Payment = self.decode(&raw)?;
        if payment.id != id {
            return Err(ProviderError::server_error(
                "maya answered with another payment",
            ));
        }
        Ok(payment)
    }

    /// Payments carrying `rrn` as their `requestReferenceNumber`. Empty only on Maya's own
    /// answer for none (`404` `PY0009`): any other `404` (a wrong path, a proxy) proves nothing.
    async fn payments_by_reference(&self, rrn: &str) -> Result<Vec<wire::Payment>, ProviderError> {
        let url = self.url(&["payments", "v1", "payment-rrns", rrn])?;
        let answer = self.send(Method::GET, url, &self.secret_auth, None).await?;
        if answer.0 == StatusCode::NOT_FOUND && is_payment_not_found(&answer.1) {
            return Ok(Vec::new());
        }
        let raw = self.success(answer)?;
        self.decode(&raw)
    }

    async fn refunds_of(&self, payment_id: &str) -> Result<Vec<wire::Refund>, ProviderError> {
        let url = self.url(&["payments", "v1", "payments", payment_id, "refunds"])?;
        let raw = self
            .call::<()>(Method::GET, url, &self.secret_auth, None)
            .await?;
        self.decode(&raw)
    }

    /// Sum of the successful refunds of one Maya payment.
    async fn refunded_total(&self, payment_id: &str) -> Result<Money, ProviderError> {
        let mut total = Money::zero(Currency::PHP);
        for refund in self.refunds_of(payment_id).await? {
            if refund.status == wire::REFUND_SUCCESS {
                let amount = refund.total_amount.money().map_err(bad_answer)?;
                total = total.checked_add(amount).map_err(|_| {
                    ProviderError::server_error("maya answered refunds in another currency")
                })?;
            }
        }
        Ok(total)
    }

    /// The capture payments of one of our payments (successful or refunded since).
    async fn captures_of(
        &self,
        payment_id: PaymentId,
    ) -> Result<Vec<wire::Payment>, ProviderError> {
        let captures = self
            .payments_by_reference(&capture_reference(payment_id))
            .await?;
        Ok(captures
            .into_iter()
            .filter(|p| {
                matches!(
                    p.status.as_str(),
                    status::PAYMENT_SUCCESS | status::REFUNDED
                )
            })
            .collect())
    }

    pub(super) async fn transaction_of(
        &self,
        payment: wire::Payment,
    ) -> Result<ProviderTransaction, ProviderError> {
        let payment_id = payment.our_payment_id().ok_or_else(|| {
            ProviderError::server_error("maya answered a payment without our reference")
        })?;
        let amount = payment.money().map_err(bad_answer)?;
        let zero = Money::zero(amount.currency());
        let (status, captured, refunded) = match payment.payment_status() {
            status::PAYMENT_SUCCESS => (ProviderTransactionStatus::Approved, amount, zero),
            status::REFUNDED => (
                ProviderTransactionStatus::Approved,
                amount,
                self.refunded_total(&payment.id).await?,
            ),
            status::AUTHORIZED => (ProviderTransactionStatus::Authorized, zero, zero),
            status::CAPTURED | status::DONE => {
                let mut captured = zero;
                let mut refunded = zero;
                for capture in self.captures_of(payment_id).await? {
                    let add = |a: Money, b: Money| {
                        a.checked_add(b).map_err(|_| {
                            ProviderError::server_error("maya answered captures it cannot add")
                        })
                    };
                    captured = add(captured, capture.money().map_err(bad_answer)?)?;
                    if capture.payment_status() == status::REFUNDED {
                        refunded = add(refunded, self.refunded_total(&capture.id).await?)?;
                    }
                }
                (ProviderTransactionStatus::Approved, captured, refunded)
            }
            status::VOIDED | status::CAPTURE_HOLD_EXPIRED | status::AUTHORIZATION_HOLD_EXPIRED => {
                (ProviderTransactionStatus::Voided, zero, zero)
            }
            status::PAYMENT_FAILED | status::AUTH_FAILED => (
                ProviderTransactionStatus::Declined {
                    reason: payment.failure_reason(),
                },
                zero,
                zero,
            ),
            status::PAYMENT_EXPIRED => (ProviderTransactionStatus::Expired, zero, zero),
            status::PAYMENT_CANCELLED => (
                ProviderTransactionStatus::Failed {
                    reason: CANCELLED_REASON.to_owned(),
                },
                zero,
                zero,
            ),
            s if status::PENDING.contains(&s) => (ProviderTransactionStatus::Pending, zero, zero),
            _ => {
                return Err(ProviderError::server_error(
                    "maya answered an unknown payment status",
                ))
            }
        };
        Ok(ProviderTransaction {
            id: payment.id,
            payment_id,
            status,
            amount,
            captured_amount: captured,
            refunded_amount: refunded,
            next_action: None,
        })
    }
}

/// Reason recorded for a checkout the customer (or merchant) cancelled.
pub const CANCELLED_REASON: &str = "cancelled";
/// Reason recorded for a failed payment that names no error code.
pub const FAILED_REASON: &str = "payment_failed";

/// Whether an error body is Maya's "Payment does not exist." (`PY0009`).
fn is_payment_not_found(body: &[u8]) -> bool {
    serde_json::from_slice::<wire::Error>(body)
        .is_ok_and(|e| e.code.as_ref().and_then(|c| c.as_str()) == Some(wire::PAYMENT_NOT_FOUND))
}

/// Which of the payments Maya holds under one of our payment ids is the payment's checkout.
/// More than one exists only if a create was sent again: one that took or holds money wins
/// (two such need a person), else the earliest still open, else the earliest that ended.
fn checkout_of(payments: Vec<wire::Payment>) -> Result<Option<wire::Payment>, ProviderError> {
    let tier = |p: &wire::Payment| match p.payment_status() {
        status::PAYMENT_SUCCESS
        | status::REFUNDED
        | status::AUTHORIZED
        | status::CAPTURED
        | status::DONE => 0,
        s if status::PENDING.contains(&s) => 1,
        _ => 2,
    };
    let Some(best) = payments.iter().map(tier).min() else {
        return Ok(None);
    };
    let mut candidates: Vec<wire::Payment> =
        payments.into_iter().filter(|p| tier(p) == best).collect();
    if best == 0 && candidates.len() > 1 {
        return Err(ProviderError::server_error(
            "maya holds more than one paid checkout for one payment",
        ));
    }
    let created = |p: &wire::Payment| {
        p.created_at
            .as_deref()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
    };
    candidates.sort_by(|a, b| {
        let (ta, tb) = (created(a), created(b));
        (ta.is_none(), ta, &a.id).cmp(&(tb.is_none(), tb, &b.id))
    });
    Ok(candidates.into_iter().next())
}

fn bad_answer(problem: String) -> ProviderError {
    ProviderError::server_error(format!("maya answered {problem}"))
}

fn parse_base_url(text: &str) -> Result<Url, &'static str> {
    let url = Url::parse(text).map_err(|_| "base_url is not a URL")?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("base_url must be http or https");
    }
    if url.cannot_be_a_base()
        || url.query().is_some()
        || url.fragment().is_some()
        || !url.username().is_empty()
        || url.password().is_some()
    {
        return Err("base_url must be a plain base URL (no credentials, query or fragment)");
    }
    Ok(url)
}

/// A Maya id fit for a URL path segment: letters, digits, `_` and `-`, at most `ID_LEN_MAX`.
pub(crate) fn valid_id(id: &str) -> bool {
    crate::http::path_safe_id(id, ID_LEN_MAX)
}

/// Maya's payment statuses (Retrieve Payment via ID, and webhook bodies).
pub mod status {
    pub const PAYMENT_SUCCESS: &str = "PAYMENT_SUCCESS";
    pub const PAYMENT_FAILED: &str = "PAYMENT_FAILED";
    pub const PAYMENT_EXPIRED: &str = "PAYMENT_EXPIRED";
    pub const PAYMENT_CANCELLED: &str = "PAYMENT_CANCELLED";
    pub const AUTHORIZED: &str = "AUTHORIZED";
    pub const CAPTURED: &str = "CAPTURED";
    pub const DONE: &str = "DONE";
    pub const VOIDED: &str = "VOIDED";
    pub const REFUNDED: &str = "REFUNDED";
    pub const AUTH_FAILED: &str = "AUTH_FAILED";
    pub const CAPTURE_HOLD_EXPIRED: &str = "CAPTURE_HOLD_EXPIRED";
    pub const AUTHORIZATION_HOLD_EXPIRED: &str = "AUTHORIZATION_HOLD_EXPIRED";
    pub const PENDING_TOKEN: &str = "PENDING_TOKEN";
    pub const PENDING_PAYMENT: &str = "PENDING_PAYMENT";
    /// Not decided yet.
    pub const PENDING: &[&str] = &[
        PENDING_TOKEN,
        PENDING_PAYMENT,
        "FOR_AUTHENTICATION",
        "AUTHENTICATING",
        "AUTH_SUCCESS",
        "PAYMENT_PROCESSING",
    ];
}

/// Maya's JSON shapes, shared by this adapter and the webhook verifier
/// (`crate::maya`). The emulator (`emulators::maya`) writes its own from Maya's
/// documentation, so a field misnamed here fails the contract tests instead of passing both
/// sides. Unknown fields are tolerated on input.
pub(crate) mod wire {
    use super::*;

    pub(crate) const REFUND_SUCCESS: &str = "SUCCESS";
    /// The error code of `404` "Payment does not exist." (by id or by reference).
    pub(crate) const PAYMENT_NOT_FOUND: &str = "PY0009";
    pub(crate) const VOID_SUCCESS: &str = "SUCCESS";

    /// An amount as Maya writes it: a JSON number or a decimal string.
    pub(crate) use crate::json_amount::JsonAmount as Amount;

    /// `{"amount": .., "currency": "PHP"}` (refunds, captures) or `{"value": ..}` (checkout).
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub(crate) struct TotalAmount {
        #[serde(alias = "value")]
        pub amount: Amount,
        pub currency: String,
    }

    impl TotalAmount {
        pub(crate) fn money(&self) -> Result<Money, String> {
            self.amount.money(&self.currency)
        }
    }

    /// A payment, as `GET /payments/v1/payments/{id}` returns it and as webhooks carry it.
    ///
    /// Also reads the older checkout-shaped body (`status: "COMPLETED"` beside
    /// `paymentStatus`, the amount in `totalAmount`): [`Payment::payment_status`] prefers
    /// `paymentStatus`, [`Payment::money`] falls back to `totalAmount`.
    #[derive(Debug, Clone, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub(crate) struct Payment {
        pub id: String,
        #[serde(default)]
        pub status: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub payment_status: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub amount: Option<Amount>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub currency: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub total_amount: Option<TotalAmount>,
        #[serde(default)]
        pub request_reference_number: Option<String>,
        #[serde(default)]
        pub is_paid: bool,
        #[serde(default)]
        pub can_void: bool,
        #[serde(default)]
        pub can_refund: bool,
        #[serde(default)]
        pub can_capture: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub authorization_type: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub error_code: Option<String>,
        /// Where the customer passes 3-D Secure, when Maya wants it for a vaulted card's payment.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub verification_url: Option<String>,
        #[serde(default)]
        pub created_at: Option<String>,
        #[serde(default)]
        pub updated_at: Option<String>,
    }

    impl Payment {
        /// The payment's status: `paymentStatus` when present, else `status`.
        pub(crate) fn payment_status(&self) -> &str {
            self.payment_status.as_deref().unwrap_or(&self.status)
        }

        pub(crate) fn money(&self) -> Result<Money, String> {
            match (&self.amount, &self.currency, &self.total_amount) {
                (Some(amount), Some(currency), _) => amount.money(currency),
                (_, _, Some(total)) => total.money(),
                _ => Err("no amount".to_owned()),
            }
        }

        /// Our payment id: we always send it as the `requestReferenceNumber`.
        pub(crate) fn our_payment_id(&self) -> Option<PaymentId> {
            self.request_reference_number
                .as_deref()
                .and_then(|rrn| PaymentId::from_str(rrn).ok())
        }

        /// Maya's error code when it gave one (printable, bounded), else a generic reason.
        pub(crate) fn failure_reason(&self) -> String {
            self.error_code
                .as_deref()
                .map(|code| sanitize(code, REASON_LEN_MAX))
                .filter(|code| !code.trim().is_empty())
                .map(|code| format!("maya_{code}"))
                .unwrap_or_else(|| FAILED_REASON.to_owned())
        }
    }

    #[derive(Debug, Clone, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub(crate) struct Refund {
        pub id: String,
        #[serde(default)]
        pub payment: Option<String>,
        pub status: String,
        pub total_amount: TotalAmount,
        #[serde(default)]
        pub reason: Option<String>,
        #[serde(default)]
        pub created_at: Option<String>,
    }

    #[derive(Debug, Clone, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub(crate) struct Void {
        pub id: String,
        #[serde(default)]
        pub payment: Option<String>,
        pub status: String,
        #[serde(default)]
        pub reason: Option<String>,
    }

    /// `POST /checkout/v1/checkouts`.
    #[derive(Debug, Clone, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub(crate) struct CheckoutRequest {
        pub total_amount: TotalAmount,
        pub request_reference_number: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub redirect_url: Option<RedirectUrl>,
        pub items: Vec<Item>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub authorization_type: Option<String>,
    }

    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub(crate) struct RedirectUrl {
        pub success: String,
        pub failure: String,
        pub cancel: String,
    }

    #[derive(Debug, Clone, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub(crate) struct Item {
        pub name: String,
        pub quantity: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub code: Option<String>,
        pub total_amount: ItemAmount,
    }

    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub(crate) struct ItemAmount {
        pub value: Amount,
    }

    #[derive(Debug, Clone, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub(crate) struct CheckoutAnswer {
        pub checkout_id: String,
        pub redirect_url: String,
    }

    /// `POST /payments/v1/payments/{id}/capture`.
    #[derive(Debug, Clone, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub(crate) struct CaptureRequest {
        pub total_amount: TotalAmount,
        pub request_reference_number: String,
        #[serde(default)]
        pub final_capture: Option<bool>,
    }

    /// `POST /payments/v1/payments/{id}/refunds`.
    #[derive(Debug, Clone, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub(crate) struct RefundRequest {
        pub total_amount: TotalAmount,
        pub reason: String,
    }

    /// `POST /payments/v1/payments/{id}/voids`.
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub(crate) struct VoidRequest {
        pub reason: String,
    }

    /// Maya's error answers: `{"code","message","parameters"}` or `{"code","error"}`.
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub(crate) struct Error {
        #[serde(default)]
        pub code: Option<serde_json::Value>,
        #[serde(default, alias = "error")]
        pub message: Option<String>,
    }
}

pub(super) fn php_total(amount: Money) -> Result<wire::TotalAmount, ProviderError> {
    Ok(wire::TotalAmount {
        amount: wire::Amount::number(amount.amount())
            .ok_or_else(|| ProviderError::rejected("cannot write the amount"))?,
        currency: amount.currency().code().to_owned(),
    })
}

pub(super) fn require_php(amount: Money) -> Result<(), ProviderError> {
    if amount.currency() == Currency::PHP {
        Ok(())
    } else {
        Err(ProviderError::rejected("maya settles PHP only"))
    }
}

impl MayaProvider {
    /// A Maya Checkout for the customer to pay on Maya's page.
    async fn create_checkout(
        &self,
        request: &CreateTransaction,
    ) -> Result<ProviderTransaction, ProviderError> {
        require_php(request.amount)?;
        let total = php_total(request.amount)?;
        let body = wire::CheckoutRequest {
            total_amount: total.clone(),
            request_reference_number: request.payment_id.to_string(),
            redirect_url: request.return_url.as_ref().map(|url| wire::RedirectUrl {
                success: url.clone(),
                failure: url.clone(),
                cancel: url.clone(),
            }),
            items: vec![wire::Item {
                name: request.reference.clone(),
                quantity: 1,
                code: Some(request.reference.clone()),
                total_amount: wire::ItemAmount {
                    value: total.amount,
                },
            }],
            authorization_type: match request.capture_mode {
                CaptureMode::Manual => Some("NORMAL".to_owned()),
                CaptureMode::Automatic => None,
            },
        };
        let url = self.url(&["checkout", "v1", "checkouts"])?;
        let raw = self
            .call(Method::POST, url, &self.public_auth, Some(&body))
            .await?;
        let answer: wire::CheckoutAnswer = self.decode(&raw)?;
        if !valid_id(&answer.checkout_id) {
            return Err(ProviderError::server_error(
                "maya answered an invalid checkout id",
            ));
        }
        if !valid_redirect_url(&answer.redirect_url) {
            return Err(ProviderError::server_error(
                "maya answered an invalid redirect URL",
            ));
        }
        let zero = Money::zero(request.amount.currency());
        Ok(ProviderTransaction {
            id: answer.checkout_id,
            payment_id: request.payment_id,
            status: ProviderTransactionStatus::Pending,
            amount: request.amount,
            captured_amount: zero,
            refunded_amount: zero,
            next_action: Some(NextAction::Redirect {
                url: answer.redirect_url,
            }),
        })
    }
}

#[async_trait]
impl PaymentProvider for MayaProvider {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn payment_methods(&self) -> &'static [PaymentMethodType] {
        &[PaymentMethodType::Maya]
    }

    fn currencies(&self) -> &'static [Currency] {
        &[Currency::PHP]
    }

    async fn create_transaction(
        &self,
        request: &CreateTransaction,
    ) -> Result<ProviderTransaction, ProviderError> {
        match &request.method {
            PaymentMethodDetails::Maya => self.create_checkout(request).await,
            PaymentMethodDetails::Saved {
                method: PaymentMethodType::Card,
                source_id,
                ..
            } => self.charge_card(request, source_id.expose_secret()).await,
            _ => Err(ProviderError::rejected(
                "maya takes only the MAYA payment method and saved cards",
            )),
        }
    }

    async fn get_transaction(
        &self,
        provider_transaction_id: &str,
    ) -> Result<ProviderTransaction, ProviderError> {
        let payment = self.fetch_payment(provider_transaction_id).await?;
        self.transaction_of(payment).await
    }

    fn supports_lookup(&self) -> bool {
        true
    }

    /// Our payment id is the `requestReferenceNumber` of the checkout (or of a saved card's
    /// payment), and the checkout id is the Maya payment's id: the same transaction
    /// `create_transaction` names, without its redirect (only the create's answer carries the
    /// page's address).
    async fn find_transaction(
        &self,
        payment_id: PaymentId,
        _reference: &str,
    ) -> Result<Option<ProviderTransaction>, ProviderError> {
        let payments = self.payments_by_reference(&payment_id.to_string()).await?;
        if payments
            .iter()
            .any(|p| p.our_payment_id() != Some(payment_id))
        {
            return Err(ProviderError::server_error(
                "maya answered payments of another reference",
            ));
        }
        match checkout_of(payments)? {
            Some(checkout) => self.transaction_of(checkout).await.map(Some),
            None => Ok(None),
        }
    }

    /// Captures once per payment: the capture payment's reference is derived from the payment
    /// ([`capture_reference`]), so a retry finds it and succeeds without capturing again.
    async fn capture(
        &self,
        provider_transaction_id: &str,
        _capture_id: CaptureId,
        amount: Money,
    ) -> Result<(), ProviderError> {
        require_php(amount)?;
        let payment = self.fetch_payment(provider_transaction_id).await?;
        let payment_id = payment.our_payment_id().ok_or_else(|| {
            ProviderError::server_error("maya answered a payment without our reference")
        })?;
        if let Some(existing) = self.captures_of(payment_id).await?.first() {
            return if existing.money().map_err(bad_answer)? == amount {
                Ok(())
            } else {
                Err(ProviderError::rejected(
                    "maya payment was already captured with another amount",
                ))
            };
        }
        let body = wire::CaptureRequest {
            total_amount: php_total(amount)?,
            request_reference_number: capture_reference(payment_id),
            final_capture: Some(true),
        };
        let url = self.url(&["payments", "v1", "payments", &payment.id, "capture"])?;
        let raw = self
            .call(Method::POST, url, &self.secret_auth, Some(&body))
            .await?;
        let capture: wire::Payment = self.decode(&raw)?;
        match capture.payment_status() {
            status::PAYMENT_SUCCESS => Ok(()),
            s if status::PENDING.contains(&s) => Ok(()),
            _ => Err(ProviderError::rejected("maya refused the capture")),
        }
    }

    async fn void(&self, provider_transaction_id: &str) -> Result<(), ProviderError> {
        let payment = self.fetch_payment(provider_transaction_id).await?;
        if payment.payment_status() == status::VOIDED {
            return Ok(());
        }
        let url = self.url(&["payments", "v1", "payments", &payment.id, "voids"])?;
        let body = wire::VoidRequest {
            reason: "payledger void".to_owned(),
        };
        let raw = self
            .call(Method::POST, url, &self.secret_auth, Some(&body))
            .await?;
        let void: wire::Void = self.decode(&raw)?;
        if void.status == wire::VOID_SUCCESS {
            Ok(())
        } else {
            Err(ProviderError::rejected("maya refused the void"))
        }
    }

    async fn refund(
        &self,
        provider_transaction_id: &str,
        refund_id: RefundId,
        amount: Money,
    ) -> Result<ProviderRefund, ProviderError> {
        require_php(amount)?;
        let payment = self.fetch_payment(provider_transaction_id).await?;
        // Money captured by a separate capture payment is refunded there.
        let target = match payment.payment_status() {
            status::PAYMENT_SUCCESS | status::REFUNDED => payment.id.clone(),
            status::CAPTURED | status::DONE => {
                let payment_id = payment.our_payment_id().ok_or_else(|| {
                    ProviderError::server_error("maya answered a payment without our reference")
                })?;
                self.captures_of(payment_id)
                    .await?
                    .into_iter()
                    .next()
                    .map(|capture| capture.id)
                    .ok_or_else(|| ProviderError::server_error("maya lost the capture payment"))?
            }
            _ => {
                return Err(ProviderError::rejected(
                    "maya payment has nothing captured to refund",
                ))
            }
        };
        let reason = refund_reason(refund_id);
        for refund in self.refunds_of(&target).await? {
            if refund.reason.as_deref() == Some(reason.as_str()) {
                let first = refund.total_amount.money().map_err(bad_answer)?;
                return if first == amount && valid_id(&refund.id) {
                    Ok(ProviderRefund { id: refund.id })
                } else {
                    Err(ProviderError::rejected(
                        "the same refund id was used with another amount",
                    ))
                };
            }
        }
        let body = wire::RefundRequest {
            total_amount: php_total(amount)?,
            reason,
        };
        let url = self.url(&["payments", "v1", "payments", &target, "refunds"])?;
        let raw = self
            .call(Method::POST, url, &self.secret_auth, Some(&body))
            .await?;
        let refund: wire::Refund = self.decode(&raw)?;
        match refund.status.as_str() {
            wire::REFUND_SUCCESS if valid_id(&refund.id) => Ok(ProviderRefund { id: refund.id }),
            wire::REFUND_SUCCESS => Err(ProviderError::server_error(
                "maya answered an invalid refund id",
            )),
            _ => Err(ProviderError::rejected("maya refused the refund")),
        }
    }

    async fn health(&self) -> Result<(), ProviderError> {
        let url = self.url(&["payments", "v1", "webhooks"])?;
        self.call::<()>(Method::GET, url, &self.secret_auth, None)
            .await?;
        Ok(())
    }

    fn saved_method_types(&self) -> &'static [PaymentMethodType] {
        &[PaymentMethodType::Card]
    }

    /// A Maya customer of its own, with the card of the checkout's payment token linked to it
    /// (see `crate::maya::vault`).
    async fn save_method(&self, request: &SaveMethod) -> Result<SavedSource, ProviderError> {
        self.save_card(request).await
    }

    async fn remove_method(&self, source_id: &str) -> Result<(), ProviderError> {
        self.remove_card(source_id).await
    }

    async fn source_state(&self, source_id: &str) -> Result<SourceState, ProviderError> {
        self.card_state(source_id).await
    }
}

/// Maya's error code and message, printable and bounded; or a note that the body was not
/// the documented error shape (its content is not echoed).
fn error_summary(body: &[u8]) -> String {
    crate::http::error_summary(body, |error: wire::Error| {
        match (error.code, error.message) {
            (Some(code), message) => {
                let code = match code {
                    serde_json::Value::String(s) => sanitize(&s, 32),
                    serde_json::Value::Number(n) => n.to_string(),
                    _ => "?".to_owned(),
                };
                Some(match message {
                    Some(message) => format!("{code}: {}", sanitize(&message, 160)),
                    None => code,
                })
            }
            (None, Some(message)) => Some(sanitize(&message, 160)),
            (None, None) => None,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::ProviderFailureKind;
    use std::collections::HashMap;
    use uuid::Uuid;

    fn config(base_url: &str) -> MayaConfig {
        MayaConfig {
            base_url: base_url.into(),
            public_key: "pk-test-public-0123456789".into(),
            secret_key: "sk-test-secret-0123456789abcdefghijkl".into(),
            webhook_sources: "127.0.0.1".into(),
            timeout_ms: 1_000,
        }
    }

    fn from(vars: &[(&str, &str)]) -> MayaConfig {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        MayaConfig::from_lookup(|name| vars.get(name).cloned())
    }

    #[test]
    fn env_defaults_are_test_values_that_production_refuses() {
        let c = from(&[]);
        assert_eq!(c.public_key, TEST_PUBLIC_KEY);
        assert_eq!(c.secret_key.expose_secret(), TEST_SECRET_KEY);
        assert_eq!(c.webhook_sources, TEST_WEBHOOK_SOURCES);
        assert_eq!(c.base_url, TEST_BASE_URL);
        assert!(c.secret_key.expose_secret().len() >= SECRET_MIN_LEN);
        assert_eq!(c.problems(false), Vec::<String>::new());
        let problems = c.problems(true).join("\n");
        for expected in [
            "MAYA_PUBLIC_KEY is the built-in test key",
            "MAYA_SECRET_KEY is the built-in test key",
            "MAYA_WEBHOOK_SOURCES lists only this machine",
            "MAYA_BASE_URL must use https in production",
        ] {
            assert!(problems.contains(expected), "{problems}");
        }
    }

    #[test]
    fn problems_name_the_variable_never_the_value() {
        let c = from(&[
            ("MAYA_PUBLIC_KEY", "pub-wrongprefix"),
            ("MAYA_SECRET_KEY", "sk-short-secret"),
            ("MAYA_WEBHOOK_SOURCES", "10.0.0.0/8, not-an-ip"),
            ("MAYA_BASE_URL", "https://pg-sandbox.paymaya.com"),
        ]);
        let problems = c.problems(true);
        let text = problems.join("\n");
        assert!(
            text.contains("MAYA_PUBLIC_KEY does not look like a Maya key"),
            "{text}"
        );
        assert!(
            text.contains("MAYA_SECRET_KEY is shorter than 32"),
            "{text}"
        );
        assert!(text.contains("MAYA_WEBHOOK_SOURCES"), "{text}");
        assert!(
            text.contains("MAYA_BASE_URL points at Maya's sandbox"),
            "{text}"
        );
        for secret in ["pub-wrongprefix", "sk-short-secret", "not-an-ip"] {
            assert!(!text.contains(secret), "{text}");
        }

        let live = from(&[
            ("MAYA_PUBLIC_KEY", "pk-live0123456789abcdefghijklmnopqrstuv"),
            ("MAYA_SECRET_KEY", "sk-live0123456789abcdefghijklmnopqrstuv"),
            ("MAYA_WEBHOOK_SOURCES", "18.138.50.235, 3.1.207.200"),
            ("MAYA_BASE_URL", "https://pg.paymaya.com"),
        ]);
        assert_eq!(live.problems(true), Vec::<String>::new());
        assert_eq!(
            live.problems(false),
            vec!["MAYA_BASE_URL points at Maya's production API outside production".to_owned()]
        );

        let open = from(&[("MAYA_WEBHOOK_SOURCES", "0.0.0.0/0")]);
        assert!(open.problems(false).join(" ").contains("catch-all"));
        let missing = MayaConfig {
            public_key: String::new(),
            ..live.clone()
        };
        assert_eq!(
            missing.problems(true),
            vec!["MAYA_PUBLIC_KEY is missing".to_owned()]
        );
    }

    #[test]
    fn debug_never_shows_the_secret_key() {
        let c = config("http://127.0.0.1:1");
        let provider = MayaProvider::new(c.clone()).unwrap();
        let printed = format!("{c:?} {provider:?}");
        assert!(!printed.contains("sk-test-secret"), "{printed}");
        assert!(printed.contains("secret_key: SecretBox<str>([REDACTED])"));
    }

    #[test]
    fn refuses_unusable_configuration() {
        assert!(MayaProvider::new(config("https://pg.paymaya.com")).is_ok());
        for bad in ["not a url", "ftp://h", "http://u:p@h", "http://h/?q=1"] {
            assert!(MayaProvider::new(config(bad)).is_err(), "{bad}");
        }
        let mut c = config("http://h:1");
        c.secret_key = "sk-\nbad".into();
        assert!(MayaProvider::new(c.clone()).is_err());
        c.secret_key = "".into();
        assert!(MayaProvider::new(c).is_err());
    }

    #[tokio::test]
    async fn refuses_other_methods_and_odd_saved_sources_without_a_call() {
        // Nothing listens on port 1: a call would fail as a connection error, not a refusal.
        let provider = MayaProvider::new(config("http://127.0.0.1:1")).unwrap();
        assert_eq!(provider.payment_methods(), &[PaymentMethodType::Maya]);
        assert_eq!(provider.saved_method_types(), &[PaymentMethodType::Card]);
        assert!(provider.supports_saved(PaymentMethodType::Card, Currency::PHP));
        assert!(!provider.supports_saved(PaymentMethodType::Card, Currency::COP));
        let request = |method| CreateTransaction {
            payment_id: PaymentId::from_uuid(Uuid::new_v4()),
            reference: "order-1".into(),
            amount: Money::parse("10.00", Currency::PHP).unwrap(),
            method,
            capture_mode: CaptureMode::Automatic,
            customer_email: None,
            customer: Default::default(),
            return_url: None,
        };
        let saved = |method, source: &str| PaymentMethodDetails::Saved {
            method,
            payment_method_id: domain::SavedMethodId::from_uuid(Uuid::new_v4()),
            source_id: source.into(),
        };
        for method in [
            PaymentMethodDetails::Card {
                token: "tok".into(),
            },
            PaymentMethodDetails::Gcash,
            saved(PaymentMethodType::Gcash, "cus-1/card-1"),
            saved(PaymentMethodType::Card, "card-1"),
            saved(PaymentMethodType::Card, "cus-1/../card-1"),
        ] {
            let refused = provider
                .create_transaction(&request(method))
                .await
                .unwrap_err();
            assert_eq!(refused.kind, ProviderFailureKind::Rejected, "{refused}");
        }
        for odd in ["", "cus-1", "cus 1/card-1", "cus-1/card-1/payments"] {
            assert_eq!(
                provider.source_state(odd).await.unwrap_err().kind,
                ProviderFailureKind::Rejected
            );
            assert_eq!(
                provider.remove_method(odd).await.unwrap_err().kind,
                ProviderFailureKind::Rejected
            );
        }
    }

    #[test]
    fn amounts_are_written_and_read_exactly() {
        let m = Money::parse("129.50", Currency::PHP).unwrap();
        let number = wire::Amount::number(m.amount()).unwrap();
        assert_eq!(number.0.get(), "129.50");
        let big = Money::parse("999999999999.99", Currency::PHP).unwrap();
        assert_eq!(
            wire::Amount::number(big.amount()).unwrap().0.get(),
            "999999999999.99"
        );
        assert_eq!(
            wire::Amount::string(m.amount()).unwrap().0.get(),
            "\"129.50\""
        );
        for (raw, expected) in [
            ("129.5", Ok("129.50")),
            ("\"129.50\"", Ok("129.50")),
            ("100", Ok("100.00")),
            ("1e3", Err(())),
            ("-1", Err(())),
            ("\"1.005\"", Err(())),
            ("0", Err(())),
        ] {
            let amount: wire::Amount = serde_json::from_str(raw).unwrap();
            let parsed = amount.money("PHP").map(|m| m.amount().to_string());
            match expected {
                Ok(text) => assert_eq!(parsed.unwrap(), text, "{raw}"),
                Err(()) => assert!(parsed.is_err(), "{raw}"),
            }
        }
        let body = serde_json::to_string(&php_total(m).unwrap()).unwrap();
        assert_eq!(body, r#"{"amount":129.50,"currency":"PHP"}"#);
    }

    #[test]
    fn capture_references_fit_maya_and_never_parse_as_payments() {
        let id = PaymentId::from_uuid(Uuid::new_v4());
        let rrn = capture_reference(id);
        assert_eq!(rrn.len(), 36);
        assert!(is_capture_reference(&rrn));
        assert!(PaymentId::from_str(&rrn).is_err());
        assert!(!is_capture_reference(&id.to_string()));
        assert!(!is_capture_reference(
            "zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz-cap"
        ));
    }

    #[test]
    fn builds_urls_and_refuses_odd_ids() {
        let provider = MayaProvider::new(config("http://h:1/base")).unwrap();
        assert_eq!(
            provider
                .url(&["payments", "v1", "payments", "abc-1", "refunds"])
                .unwrap()
                .as_str(),
            "http://h:1/base/payments/v1/payments/abc-1/refunds"
        );
        for bad in ["", "../x", "a/b", "a?b", "a b"] {
            assert_eq!(
                provider
                    .url(&["payments", "v1", "payments", bad])
                    .unwrap_err()
                    .kind,
                ProviderFailureKind::Rejected
            );
        }
    }

    fn listed(id: &str, status: &str, created_at: Option<&str>) -> wire::Payment {
        serde_json::from_value(serde_json::json!({
            "id": id,
            "status": status,
            "amount": "10.00",
            "currency": "PHP",
            "requestReferenceNumber": "ignored-here",
            "createdAt": created_at,
        }))
        .unwrap()
    }

    #[test]
    fn the_checkout_of_a_payment_is_the_paid_one_else_the_earliest_open_one() {
        let ids =
            |picked: Result<Option<wire::Payment>, ProviderError>| picked.unwrap().map(|p| p.id);
        assert_eq!(ids(checkout_of(Vec::new())), None);
        // 09:00+08:00 is 01:00Z: earlier than 02:00Z although it sorts later as text.
        let open = vec![
            listed("b", status::PENDING_TOKEN, Some("2026-01-01T02:00:00.000Z")),
            listed("c", status::PENDING_TOKEN, None),
            listed(
                "a",
                status::PENDING_TOKEN,
                Some("2026-01-01T09:00:00.000+08:00"),
            ),
            listed(
                "x",
                status::PAYMENT_EXPIRED,
                Some("2025-12-31T00:00:00.000Z"),
            ),
        ];
        assert_eq!(ids(checkout_of(open.clone())), Some("a".to_owned()));
        let mut with_paid = open.clone();
        with_paid.push(listed("p", status::PAYMENT_SUCCESS, None));
        assert_eq!(ids(checkout_of(with_paid.clone())), Some("p".to_owned()));
        let ended = vec![
            listed(
                "y",
                status::PAYMENT_FAILED,
                Some("2026-01-02T00:00:00.000Z"),
            ),
            listed(
                "x",
                status::PAYMENT_EXPIRED,
                Some("2026-01-01T00:00:00.000Z"),
            ),
        ];
        assert_eq!(ids(checkout_of(ended)), Some("x".to_owned()));
        with_paid.push(listed("q", status::AUTHORIZED, None));
        assert_eq!(
            checkout_of(with_paid).unwrap_err().kind,
            ProviderFailureKind::ServerError
        );
    }

    #[test]
    fn only_py0009_means_no_such_payment() {
        assert!(is_payment_not_found(
            br#"{"code":"PY0009","message":"Payment does not exist."}"#
        ));
        for other in [
            &br#"{"code":"404","message":"Resource not found"}"#[..],
            br#"{"code":"K003","error":"Invalid authentication credentials."}"#,
            b"<html>Not Found</html>",
            b"",
        ] {
            assert!(!is_payment_not_found(other));
        }
    }

    #[test]
    fn error_summary_keeps_code_and_message_only() {
        assert_eq!(
            error_summary(br#"{"code":"2553","message":"Missing/invalid parameters.","parameters":[{"field":"x","description":"y"}]}"#),
            "2553: Missing/invalid parameters."
        );
        assert_eq!(
            error_summary(br#"{"code":"K003","error":"Invalid\nauthentication"}"#),
            "K003: Invalid?authentication"
        );
        assert_eq!(error_summary(br#"{"code":2553}"#), "2553");
        assert_eq!(error_summary(b"<html>"), "unrecognized error body");
        assert_eq!(error_summary(b""), "empty body");
    }
}
