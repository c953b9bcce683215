//! The bundled sandbox provider: a real HTTP server (actix-web) that behaves like a payment
//! provider, so development, tests and demos run the real client code
//! (`connectors::SandboxProvider`) against a real socket.
//!
//! * `Authorization: Bearer <api_key>` on every `/v1` route (else `401`); `/health` is public.
//! * JSON in and out, money as decimal strings, bodies at most 64 KiB.
//! * The test token decides the outcome (see [`tokens`]), or, for a card BIN token, the
//!   [`processor`] (a seeded success rate, credit and debit cards, a processing delay); the
//!   answer to a create is `PENDING` and the outcome arrives later as a signed webhook
//!   (`X-Sandbox-Signature`), delivered at least once with bounded exponential backoff through
//!   a bounded queue.
//! * State lives in memory and is bounded; it is lost when the server stops.
//!
//! | route | answer |
//! |---|---|
//! | `POST /v1/transactions` | `201` new / `200` same `payment_id` again; `422 invalid_token`; `422 capture_not_supported` for a debit BIN with manual capture; `503 provider_unavailable` (documented: nothing was processed) for `tok_sandbox_error`, a full webhook queue or a full store; `504` after a delay for `tok_sandbox_timeout`; the `tok_sandbox_approved_*` tokens take the charge and then lose the answer (held, `503 internal_error`, or no webhook) |
//! | `GET /v1/transactions?reference=` | `200 {"data": [...]}`: every transaction created with that reference (at most 100) |
//! | `GET /v1/transactions/{id}` | `200` status, amount, captured_amount, refunded_amount |
//! | `POST /v1/transactions/{id}/capture` | `200` once `AUTHORIZED` and amount <= authorized; same `capture_id` -> same `200`; `409 invalid_state`, `422` amount |
//! | `POST /v1/transactions/{id}/void` | `200` when `AUTHORIZED` or already `VOIDED`; else `409` |
//! | `POST /v1/transactions/{id}/refunds` | `201` when `APPROVED` and amount <= captured - refunded; same `refund_id` -> `200` same refund; else `409`/`422` |
//! | `POST /v1/payment_sources` | `201` a card test token kept as a source (`sbx_src_...`) with brand, last four and expiry; the same `id` again -> `200` the same source; `422 invalid_token` |
//! | `DELETE /v1/payment_sources/{id}` | `200` detached (again: `200`); `404` unknown. A create naming a detached source is `422 source_detached` |
//! | `GET /health` | `200` |

mod ledger;
pub mod processor;
mod sources;
pub mod wire;

use std::borrow::Cow;
use std::fmt;
use std::future::{ready, Ready};
use std::io;
use std::net::TcpListener;
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use actix_web::dev::Payload;
use actix_web::http::{header, StatusCode};
use actix_web::{web, FromRequest, HttpRequest, HttpResponse, ResponseError};
use chrono::{SecondsFormat, Utc};
use domain::{CaptureId, CaptureMode, Currency, Money, PaymentId, PaymentMethodType, RefundId};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use uuid::Uuid;

pub use crate::outbox::WebhookRetryPolicy;
use crate::outbox::{self, Attempt, Outbox, OutboxOptions};
pub use crate::server::REQUEST_BODY_MAX_BYTES;
use crate::server::{self, ServerOptions};
use ledger::{
    Created, Decided, Decision, Ledger, LedgerError, NewTransaction, Transaction, DECLINE_REASON,
};
pub use processor::Processor;
use processor::{Funding, Verdict};
use sources::{SourceError, Sources};

/// Test tokens: the token of a create request decides what the sandbox does.
pub mod tokens {
    /// Approved (automatic capture) or authorized (manual capture), by webhook.
    pub const APPROVED: &str = "tok_sandbox_approved";
    /// Declined with reason `card_declined`, by webhook.
    pub const DECLINED: &str = "tok_sandbox_declined";
    /// The create call answers `503`; no transaction, no webhook.
    pub const ERROR: &str = "tok_sandbox_error";
    /// The create call answers `504` only after `SandboxOptions::timeout_token_delay`
    /// (longer than any sane client timeout); no transaction, no webhook.
    pub const TIMEOUT: &str = "tok_sandbox_timeout";
    /// The charge is taken and approved, then the answer is held for
    /// `SandboxOptions::timeout_token_delay`; the webhook follows as usual.
    pub const APPROVED_TIMEOUT: &str = "tok_sandbox_approved_timeout";
    /// The charge is taken and approved, and the answer is `503 internal_error`; the webhook
    /// follows as usual.
    pub const APPROVED_503: &str = "tok_sandbox_approved_503";
    /// The charge is taken and approved and the answer is normal, but no webhook is ever sent.
    pub const APPROVED_SILENT: &str = "tok_sandbox_approved_silent";
    /// Declined by webhook with reason `insufficient_funds`.
    pub const INSUFFICIENT_FUNDS: &str = "tok_sandbox_insufficient_funds";
    /// Declined by webhook with reason `expired_card`.
    pub const EXPIRED_CARD: &str = "tok_sandbox_expired_card";
    /// Declined by webhook with reason `stolen_card` (a fraud decline).
    pub const STOLEN_CARD: &str = "tok_sandbox_stolen_card";
    /// The processor could not reach the card network: declined by webhook with reason
    /// `network_error` (nothing was charged; the customer may try again).
    pub const NETWORK_ERROR: &str = "tok_sandbox_network_error";
    // A card by its BIN, `tok_bin_<6 digits>` (`super::processor::BINS`), is decided by the
    // processor with its success rate; a debit card takes no authorization hold.
}

/// How the answer to a create is lost after the charge was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LostAnswer {
    None,
    Held,
    ServerError,
    NoWebhook,
}

const REFERENCE_LEN_MAX: usize = 128;
const TOKEN_LEN_MAX: usize = 256;

#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// The key clients must present as `Authorization: Bearer <api_key>`.
    pub api_key: SecretString,
    /// Where webhooks are POSTed (payledger's `/v1/webhooks/sandbox`).
    pub webhook_url: String,
    /// HMAC-SHA256 key of `X-Sandbox-Signature`.
    pub webhook_secret: SecretString,
    /// How long after a create its outcome is decided and its webhook first sent, unless the
    /// processor has a processing delay of its own.
    pub webhook_delay_ms: u64,
    /// How payments by card BIN are decided, and how long processing takes.
    pub processor: Processor,
}

/// Tuning with production-like defaults; tests shrink delays and bounds.
#[derive(Debug, Clone)]
pub struct SandboxOptions {
    pub webhook_retry: WebhookRetryPolicy,
    /// Webhooks waiting or being retried at once; a create beyond it answers `503`.
    pub webhook_queue_capacity: usize,
    /// Timeout of one webhook POST.
    pub webhook_timeout: Duration,
    /// Webhook POSTs in flight at once.
    pub webhook_concurrency: usize,
    /// Transactions kept; a create beyond it answers `503`.
    pub transactions_max: usize,
    /// How long `tok_sandbox_timeout` holds its answer.
    pub timeout_token_delay: Duration,
    /// HTTP worker threads.
    pub workers: usize,
    /// Seconds a graceful stop waits for requests in flight.
    pub shutdown_timeout_secs: u64,
}

impl Default for SandboxOptions {
    fn default() -> Self {
        SandboxOptions {
            webhook_retry: WebhookRetryPolicy::default(),
            webhook_queue_capacity: 10_000,
            webhook_timeout: Duration::from_secs(5),
            webhook_concurrency: 32,
            transactions_max: 1_000_000,
            timeout_token_delay: Duration::from_secs(30),
            workers: 2,
            shutdown_timeout_secs: 5,
        }
    }
}

/// A running sandbox; its `base_url` is the one for `SandboxClientConfig`.
pub type SandboxHandle = crate::EmulatorHandle;

/// Starts the sandbox on `listener` with default options, on the current tokio runtime.
pub async fn start(listener: TcpListener, config: SandboxConfig) -> io::Result<SandboxHandle> {
    start_with_options(listener, config, SandboxOptions::default()).await
}

/// Starts the sandbox on `listener`, on the current tokio runtime.
pub async fn start_with_options(
    listener: TcpListener,
    config: SandboxConfig,
    options: SandboxOptions,
) -> io::Result<SandboxHandle> {
    let invalid = |msg: &str| io::Error::new(io::ErrorKind::InvalidInput, msg.to_owned());
    if config.api_key.expose_secret().is_empty() {
        return Err(invalid("sandbox api_key is empty"));
    }
    if config.webhook_secret.expose_secret().is_empty() {
        return Err(invalid("sandbox webhook_secret is empty"));
    }
    let webhook_url = outbox::webhook_url("sandbox", &config.webhook_url)?;

    let ledger = Arc::new(Mutex::new(Ledger::new(options.transactions_max)));
    let (queue, dispatcher) = outbox::start(
        webhook_url,
        Notifier {
            ledger: Arc::clone(&ledger),
            secret: config.webhook_secret.expose_secret().as_bytes().to_vec(),
        },
        &OutboxOptions {
            name: "sandbox",
            capacity: options.webhook_queue_capacity,
            retry: options.webhook_retry,
            timeout: options.webhook_timeout,
            concurrency: options.webhook_concurrency,
        },
    )?;
    let state = web::Data::new(AppState {
        api_key: config.api_key.expose_secret().to_owned(),
        ledger,
        sources: Mutex::new(Sources::default()),
        queue,
        webhook_delay: Duration::from_millis(config.webhook_delay_ms),
        timeout_token_delay: options.timeout_token_delay,
        processor: config.processor,
    });

    server::start(
        "sandbox",
        listener,
        "",
        ServerOptions {
            workers: options.workers,
            shutdown_timeout_secs: options.shutdown_timeout_secs,
        },
        move |cfg: &mut web::ServiceConfig| {
            cfg.app_data(state.clone())
                .route("/health", web::get().to(health))
                .service(
                    web::scope("/v1/transactions")
                        .route("", web::post().to(create_transaction))
                        .route("", web::get().to(list_transactions))
                        .route("/{id}", web::get().to(get_transaction))
                        .route("/{id}/capture", web::post().to(capture))
                        .route("/{id}/void", web::post().to(void))
                        .route("/{id}/refunds", web::post().to(refund)),
                )
                .service(
                    web::scope("/v1/payment_sources")
                        .route("", web::post().to(save_source))
                        .route("/{id}", web::delete().to(detach_source)),
                );
            cfg.default_service(web::to(not_found));
        },
        vec![dispatcher],
    )
}

struct AppState {
    api_key: String,
    ledger: Arc<Mutex<Ledger>>,
    sources: Mutex<Sources>,
    queue: Outbox<Job>,
    webhook_delay: Duration,
    timeout_token_delay: Duration,
    processor: Processor,
}

impl AppState {
    fn ledger(&self) -> MutexGuard<'_, Ledger> {
        // Nothing panics while holding the lock; should it ever, the data is still
        // consistent per operation, so keep serving.
        self.ledger.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn sources(&self) -> MutexGuard<'_, Sources> {
        self.sources.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Extractor that admits only requests with the right bearer key (compared in constant time).
struct Authenticated;

impl FromRequest for Authenticated {
    type Error = ApiError;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let authorized = match req.app_data::<web::Data<AppState>>() {
            Some(state) => bearer_matches(req, &state.api_key),
            None => false,
        };
        ready(if authorized {
            Ok(Authenticated)
        } else {
            Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "missing or invalid API key",
            ))
        })
    }
}

fn bearer_matches(req: &HttpRequest, api_key: &str) -> bool {
    let Some(value) = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let Some((scheme, presented)) = value.split_once(' ') else {
        return false;
    };
    scheme.eq_ignore_ascii_case("bearer")
        && bool::from(presented.trim().as_bytes().ct_eq(api_key.as_bytes()))
}

/// An error answer: `{"error": code, "message": message}`. Messages never echo request
/// values (they may be payment tokens).
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: Cow<'static, str>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    fn unprocessable(code: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status);
        if self.status == StatusCode::UNAUTHORIZED {
            response.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
        }
        response.json(serde_json::json!({ "error": self.code, "message": self.message }))
    }
}

impl From<LedgerError> for ApiError {
    fn from(error: LedgerError) -> Self {
        let status =
            StatusCode::from_u16(error.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let message = match error {
            LedgerError::NotFound => "no such transaction",
            LedgerError::InvalidState => "the transaction's state does not allow this",
            LedgerError::IdempotencyConflict => "the same id was used with a different request",
            LedgerError::CurrencyMismatch => "currency differs from the transaction's",
            LedgerError::AmountExceedsAuthorized => "amount exceeds the authorized amount",
            LedgerError::AmountExceedsRefundable => "amount exceeds what is left to refund",
            LedgerError::TooManyRefunds => "too many refunds for one transaction",
            LedgerError::CapacityExhausted => "the sandbox holds too many transactions",
            LedgerError::WebhookQueueFull => "the webhook queue is full, retry later",
        };
        ApiError::new(status, error.code(), message)
    }
}

/// Parses a JSON body without echoing any of its values back.
fn parse_body<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            format!(
                "body is not JSON of the expected shape (line {} column {})",
                e.line(),
                e.column()
            ),
        )
    })
}

fn parse_money(amount: &str, currency: &str) -> Result<Money, ApiError> {
    let currency = Currency::from_str(currency)
        .map_err(|_| ApiError::unprocessable("invalid_currency", "unknown currency"))?;
    Money::parse(amount, currency)
        .map_err(|e| ApiError::unprocessable("invalid_amount", e.to_string()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateRequest {
    payment_id: PaymentId,
    reference: String,
    amount: String,
    currency: String,
    method: PaymentMethodType,
    #[serde(default)]
    token: Option<String>,
    /// A saved source instead of a token.
    #[serde(default)]
    payment_source_id: Option<String>,
    capture: CaptureMode,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CaptureRequest {
    capture_id: CaptureId,
    amount: String,
    currency: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RefundRequest {
    refund_id: RefundId,
    amount: String,
    currency: String,
}

#[derive(Serialize)]
struct TransactionView<'a> {
    id: &'a str,
    payment_id: PaymentId,
    reference: &'a str,
    status: &'static str,
    amount: String,
    currency: &'static str,
    captured_amount: String,
    refunded_amount: String,
    reason: Option<&'static str>,
    method: PaymentMethodType,
    capture: CaptureMode,
    created_at: String,
}

fn view(tx: &Transaction) -> TransactionView<'_> {
    TransactionView {
        id: &tx.id,
        payment_id: tx.payment_id,
        reference: &tx.reference,
        status: tx.status.as_str(),
        amount: tx.amount.amount().to_string(),
        currency: tx.amount.currency().code(),
        captured_amount: tx.captured.amount().to_string(),
        refunded_amount: tx.refunded.amount().to_string(),
        reason: tx.reason,
        method: tx.method,
        capture: tx.capture_mode,
        created_at: tx.created_at.to_rfc3339_opts(SecondsFormat::Millis, true),
    }
}

async fn health() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}

async fn not_found() -> HttpResponse {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route").error_response()
}

async fn create_transaction(
    _: Authenticated,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let request: CreateRequest = parse_body(&body)?;
    let amount = parse_money(&request.amount, &request.currency)?;
    let reference_ok = !request.reference.is_empty()
        && request.reference.len() <= REFERENCE_LEN_MAX
        && request
            .reference
            .chars()
            .all(|c| c.is_ascii_graphic() || c == ' ');
    if !reference_ok {
        return Err(ApiError::unprocessable(
            "invalid_reference",
            "reference must be 1-128 printable ASCII characters",
        ));
    }
    let invalid_token = || ApiError::unprocessable("invalid_token", "unknown payment token");
    let token = match (request.token, request.payment_source_id) {
        (Some(token), None) => token,
        (None, Some(source)) => state.sources().token(&source).map_err(|e| match e {
            SourceError::Detached => {
                ApiError::unprocessable("source_detached", "the payment source was detached")
            }
            _ => ApiError::unprocessable("invalid_payment_source", "unknown payment source"),
        })?,
        _ => {
            return Err(ApiError::unprocessable(
                "invalid_request",
                "exactly one of token and payment_source_id",
            ))
        }
    };
    if token.len() > TOKEN_LEN_MAX {
        return Err(invalid_token());
    }
    let (decision, lost) = match token.as_str() {
        tokens::APPROVED => (Decision::Approve, LostAnswer::None),
        tokens::DECLINED => (Decision::Decline(DECLINE_REASON), LostAnswer::None),
        tokens::INSUFFICIENT_FUNDS => (Decision::Decline("insufficient_funds"), LostAnswer::None),
        tokens::EXPIRED_CARD => (Decision::Decline("expired_card"), LostAnswer::None),
        tokens::STOLEN_CARD => (Decision::Decline("stolen_card"), LostAnswer::None),
        tokens::NETWORK_ERROR => (Decision::Decline("network_error"), LostAnswer::None),
        bin_token if processor::bin_of(bin_token).is_some() => {
            let funding = processor::bin_of(bin_token).map_or(Funding::Credit, |bin| bin.funding);
            if !Processor::takes_capture(funding, request.capture) {
                return Err(ApiError::unprocessable(
                    "capture_not_supported",
                    "a debit card is charged at once: no authorization hold",
                ));
            }
            let decision = match state.processor.verdict(request.payment_id, funding) {
                Verdict::Approve => Decision::Approve,
                Verdict::Decline(reason) => Decision::Decline(reason),
            };
            (decision, LostAnswer::None)
        }
        tokens::APPROVED_TIMEOUT => (Decision::Approve, LostAnswer::Held),
        tokens::APPROVED_503 => (Decision::Approve, LostAnswer::ServerError),
        tokens::APPROVED_SILENT => (Decision::Approve, LostAnswer::NoWebhook),
        tokens::ERROR => {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "provider_unavailable",
                "simulated provider outage",
            ))
        }
        tokens::TIMEOUT => {
            tokio::time::sleep(state.timeout_token_delay).await;
            return Err(ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "upstream_timeout",
                "simulated upstream timeout",
            ));
        }
        _ => return Err(invalid_token()),
    };

    // Take the webhook's queue slot first: without one, a new transaction is refused.
    let slot = state.queue.try_reserve();
    let created = state.ledger().create(
        NewTransaction {
            payment_id: request.payment_id,
            reference: request.reference,
            amount,
            method: request.method,
            capture_mode: request.capture,
            decision,
        },
        slot.is_some(),
        Utc::now(),
    )?;
    let (tx, status) = match created {
        Created::Existing(tx) => (tx, StatusCode::OK),
        Created::New(tx) => {
            let scheduled = match slot {
                Some(slot) => state.queue.schedule(
                    slot,
                    Job {
                        transaction_id: tx.id.clone(),
                        send: lost != LostAnswer::NoWebhook,
                    },
                    state
                        .processor
                        .delay(tx.payment_id)
                        .unwrap_or(state.webhook_delay),
                ),
                None => false,
            };
            if !scheduled {
                return Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "shutting_down",
                    "the sandbox is stopping",
                ));
            }
            tracing::debug!(
                transaction_id = %tx.id,
                payment_id = %tx.payment_id,
                "sandbox: transaction created"
            );
            (tx, StatusCode::CREATED)
        }
    };
    // The charge stands whatever happens to the answer, on a repeat as on the first call.
    match lost {
        LostAnswer::Held => {
            tokio::time::sleep(state.timeout_token_delay).await;
            Err(ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "upstream_timeout",
                "simulated upstream timeout",
            ))
        }
        LostAnswer::ServerError => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "internal_error",
            "simulated failure after the charge was taken",
        )),
        LostAnswer::None | LostAnswer::NoWebhook => Ok(HttpResponse::build(status).json(view(&tx))),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SourceRequest {
    id: Uuid,
    #[allow(dead_code)] // part of the wire shape; the sandbox keys sources by `id` alone
    customer_id: Uuid,
    method: PaymentMethodType,
    token: String,
}

async fn save_source(
    _: Authenticated,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let request: SourceRequest = parse_body(&body)?;
    let (brand, last_four) = match request.token.as_str() {
        tokens::DECLINED => ("VISA", "0002"),
        token if token.starts_with("tok_sandbox_") && token.len() <= TOKEN_LEN_MAX => {
            ("VISA", "4242")
        }
        token => match processor::bin_of(token) {
            Some(bin) => (bin.brand, bin.last_four),
            None => {
                return Err(ApiError::unprocessable(
                    "invalid_token",
                    "unknown payment token",
                ))
            }
        },
    };
    if request.method != PaymentMethodType::Card {
        return Err(ApiError::unprocessable(
            "invalid_method",
            "the sandbox saves cards only",
        ));
    }
    let (source, new) = state
        .sources()
        .save(request.id, &request.token)
        .map_err(|_| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "provider_unavailable",
                "the sandbox keeps no more sources",
            )
        })?;
    let status = if new {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(HttpResponse::build(status).json(serde_json::json!({
        "id": source.id,
        "status": "AVAILABLE",
        "type": "CARD",
        "brand": brand,
        "last_four": last_four,
        "exp_month": 12,
        "exp_year": 2030,
    })))
}

async fn detach_source(
    _: Authenticated,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    state
        .sources()
        .detach(&path)
        .map_err(|_| ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such payment source"))?;
    Ok(HttpResponse::Ok().json(serde_json::json!({"id": path.as_str(), "status": "DETACHED"})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    reference: String,
}

/// Transactions listed at most by one lookup.
const LIST_MAX: usize = 100;

async fn list_transactions(
    _: Authenticated,
    state: web::Data<AppState>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let ledger = state.ledger();
    let data: Vec<TransactionView<'_>> = ledger
        .by_reference(&query.reference)
        .take(LIST_MAX)
        .map(view)
        .collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({ "data": data })))
}

async fn get_transaction(
    _: Authenticated,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let ledger = state.ledger();
    let tx = ledger.get(&id).ok_or(LedgerError::NotFound)?;
    Ok(HttpResponse::Ok().json(view(tx)))
}

async fn capture(
    _: Authenticated,
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let request: CaptureRequest = parse_body(&body)?;
    let amount = parse_money(&request.amount, &request.currency)?;
    let tx = state.ledger().capture(&id, request.capture_id, amount)?;
    Ok(HttpResponse::Ok().json(view(&tx)))
}

async fn void(
    _: Authenticated,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let tx = state.ledger().void(&id)?;
    Ok(HttpResponse::Ok().json(view(&tx)))
}

async fn refund(
    _: Authenticated,
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let request: RefundRequest = parse_body(&body)?;
    let amount = parse_money(&request.amount, &request.currency)?;
    let (refund, is_new) = state.ledger().refund(&id, request.refund_id, amount)?;
    let status = if is_new {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(HttpResponse::build(status).json(serde_json::json!({
        "id": refund.id,
        "refund_id": request.refund_id,
        "transaction_id": id.as_str(),
        "status": "SUCCEEDED",
        "amount": refund.amount.amount().to_string(),
        "currency": refund.amount.currency().code(),
    })))
}

/// A new transaction's outcome, decided when due.
struct Job {
    transaction_id: String,
    /// `false`: the outcome is decided, and no webhook ever tells it.
    send: bool,
}

/// The sandbox's side of the outbox: decides the outcome when due, then tells it in one
/// `transaction.updated` event, built and signed once so every redelivery carries the same
/// event id, bytes and signature.
struct Notifier {
    ledger: Arc<Mutex<Ledger>>,
    secret: Vec<u8>,
}

struct Signed {
    event_id: String,
    body: Vec<u8>,
    signature: String,
}

impl outbox::Notifier for Notifier {
    type Job = Job;
    type Ready = Signed;

    fn due(&self, job: Job) -> Option<Signed> {
        let decided = self
            .ledger
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .decide(&job.transaction_id)?;
        if !job.send {
            return None;
        }
        let event_id = format!("evt_{}", Uuid::new_v4().simple());
        match serde_json::to_vec(&wire_event(&event_id, decided)) {
            Ok(body) => Some(Signed {
                signature: wire::sign(&self.secret, &body),
                event_id,
                body,
            }),
            Err(error) => {
                tracing::error!(%error, "sandbox: cannot serialize a webhook");
                None
            }
        }
    }

    fn attempt(&self, signed: &Signed, _: u32) -> io::Result<Attempt> {
        Ok(Attempt::json(
            signed.body.clone(),
            vec![(wire::SIGNATURE_HEADER, signed.signature.clone())],
        ))
    }

    fn label(&self, signed: &Signed) -> String {
        signed.event_id.clone()
    }
}

fn wire_event(event_id: &str, decided: Decided) -> wire::Event {
    wire::Event {
        id: event_id.to_owned(),
        event_type: wire::EVENT_TYPE_TRANSACTION_UPDATED.to_owned(),
        created_at: Some(Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)),
        data: wire::EventTransaction {
            transaction_id: decided.transaction_id,
            payment_id: decided.payment_id.to_string(),
            status: decided.status.as_str().to_owned(),
            amount: decided.amount.amount().to_string(),
            currency: decided.amount.currency().code().to_owned(),
            reason: decided.reason.map(str::to_owned),
        },
    }
}
