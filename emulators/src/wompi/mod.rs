//! Wompi API emulation: a separate actix-web server that speaks Wompi's API v1 shape, so the
//! real `WompiProvider` and `WompiWebhookVerifier` of `commands` run against a real socket.
//!
//! Like Wompi: `Authorization: Bearer <public or private key>` (`401 INVALID_ACCESS_TOKEN`
//! otherwise), JSON in, `{"data": ...}` out, errors as `{"error":{"type","reason"}}` or
//! `{"error":{"type":"INPUT_VALIDATION_ERROR","messages":{field:[...]}}}`. Amounts are integer
//! `amount_in_cents` in COP. State lives in memory, bounded, lost when the server stops.
//!
//! | route | key | answer |
//! |---|---|---|
//! | `GET /v1/merchants/{public_key}` | none (the key is in the path) | `200` merchant with `presigned_acceptance` and `presigned_personal_data_auth` (signed tokens, valid `acceptance_token_ttl`); `404` other key |
//! | `POST /v1/tokens/cards` | public | `201 {"status":"CREATED","data":{"id":"tok_test_...",...}}`; `422` bad number (Luhn), cvc, expiry, holder |
//! | `POST /v1/transactions` | public or private | `201` `PENDING`; `422` when the acceptance tokens, integrity `signature` (with `expiration_time` when one is sent), amount, currency, email, payment method, `expiration_time` (not in the future) are wrong or the `reference` was used; faults below |
//! | `GET /v1/transactions/{id}` | public or private | `200` / `404 NOT_FOUND_ERROR`; a pending transaction read past its `expiration_time` is closed first (below) |
//! | `GET /v1/transactions?reference=` | private | `200 {"data":[...]}` (closes an expired one the same way) |
//! | `POST /v1/transactions/{id}/void` | private | `201` an `APPROVED` card transaction becomes `VOIDED` (and a webhook says so); `422` anything else |
//! | `GET /v1/pse/financial_institutions` | public or private | `200` banks `"1"` (approves) and `"2"` (declines) |
//! | `POST /v1/tokens/nequi`, `GET /v1/tokens/nequi/{id}` | public | Nequi subscriptions (see `sources`) |
//! | `POST /v1/payment_sources`, `GET /v1/payment_sources/{id}`, `PUT /v1/payment_sources/{id}/void` | private | saved sources (see `sources`); a create with `payment_source_id` charges one, decided by its card or phone, and a voided or unknown one is `422` on `payment_source_id` |
//!
//! Outcomes follow Wompi's sandbox test data: card 4242 4242 4242 4242 -> `APPROVED`,
//! 4111 1111 1111 1111 -> `DECLINED`, any other card -> `ERROR`; Nequi 3991111111 ->
//! `APPROVED`, 3992222222 -> `DECLINED`, any other number -> `ERROR`. Card and Nequi
//! transactions answer `PENDING` and are decided `webhook_delay_ms` later. A PSE transaction
//! stays `PENDING`, with `payment_method.extra.async_payment_url` pointing at
//! `/_sandbox/pse/{id}`, until the customer acts.
//!
//! The rails wait for the customer too, and show what they need in `payment_method.extra`
//! only `step_publish_delay` (100 ms) after the create, as Wompi publishes it after answering:
//!
//! | `payment_method` | `extra` while `PENDING` | decided by |
//! |---|---|---|
//! | `{"type":"BANCOLOMBIA_TRANSFER","user_type":"PERSON","payment_description"}` (1 to 64 characters, no `'`) | `async_payment_url`: Bancolombia's page, `/_sandbox/bancolombia/{id}` | the customer's choice there |
//! | `{"type":"BANCOLOMBIA_QR","payment_description"?,"sandbox_status"?}` | `qr_id`, `qr_image` (base64 SVG naming the transaction), `external_identifier` | `sandbox_status` `APPROVED`/`DECLINED`/`ERROR` alone, `webhook_delay_ms` later (Wompi's test data); without it, the customer's bank app (`/_sandbox/qr/{id}/...`) |
//! | `{"type":"DAVIPLATA","user_legal_id_type":"CC"\|"CE"\|"NIT","user_legal_id","payment_description"?}` (1 to 30) | `url`: the page for the SMS code, `/_sandbox/daviplata/{id}`; `url_services`: `token`, `code_otp_send`, `code_otp_validate` | the code typed: `574829` `APPROVED`, `932015` `DECLINED`, `186743` `DECLINED` (funds), `999999` `ERROR` (Wompi's test codes); another code is refused (`422`, the payment waits) and the third wrong one declines it |
//!
//! A create may carry `expiration_time`; a transaction still `PENDING` when it passes ends
//! `DECLINED` with `status_message` [`EXPIRED_MESSAGE`] (Wompi has no `EXPIRED` status), its
//! `finalized_at` at or after `expiration_time`. Each transition is reported by a
//! `transaction.updated` webhook signed with the events secret (checksum in the body and in
//! `X-Event-Checksum`), delivered at least once with bounded retries through a bounded queue
//! (`deliver_webhooks: false` loses them: the transition still happens).
//!
//! Test controls, no auth:
//!
//! | route | effect |
//! |---|---|
//! | `GET /_sandbox/pse/{id}` | the "bank page": an HTML page with the two buttons below |
//! | `POST /_sandbox/pse/{id}/complete` | the customer pays at the bank: bank `"1"` -> `APPROVED`, `"2"` -> `DECLINED` |
//! | `POST /_sandbox/pse/{id}/abandon` | the customer leaves without paying: `ERROR` ("El usuario abandonó el pago en PSE"), which payledger records as failed |
//! | `GET /_sandbox/bancolombia/{id}` | Bancolombia's page (`extra.async_payment_url`): HTML with the three buttons below |
//! | `POST /_sandbox/bancolombia/{id}/approve\|decline\|error` | the customer's answer at Bancolombia: `APPROVED`, `DECLINED` or `ERROR` |
//! | `GET /_sandbox/qr/{id}` | the QR on a page, with the three buttons below |
//! | `POST /_sandbox/qr/{id}/approve\|decline\|error` | the customer's bank app, once the QR is scanned |
//! | `GET /_sandbox/daviplata/{id}` | Daviplata's page (`extra.url`): a form for the code |
//! | `POST /_sandbox/daviplata/{id}/otp/validate` `{"code","token"}` (JSON, or the page's form) | the code typed, with `url_services.token` (`403` without it): decides as above, or `422` naming `code` with the attempts left |
//! | `POST /_sandbox/daviplata/{id}/otp/send` `{"token"}` | Daviplata sends the code again, up to 3 codes in all (`422` after) |
//! | `POST /_sandbox/transactions/{id}/expire` | the sandbox's clock reaches the pending transaction's `expiration_time` now (it becomes now if later or unset): `DECLINED` with [`EXPIRED_MESSAGE`] |
//! | `POST /_sandbox/faults` `{"create":"none"\|"server_error"\|"timeout"\|"approved_timeout"\|"approved_503"\|"approved_silent"}` | until changed, `POST /v1/transactions` answers `500`, or holds its answer `fault_timeout_delay` (30 s) then `504`; the `approved_*` faults create the transaction first, then hold the answer, answer `503`, or answer normally and never send its webhook |
//!
//! Customer actions on a transaction that is decided already answer `409 INVALID_STATE`.

mod delivery;
mod sources;
mod state;
pub mod wire;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::net::TcpListener;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Datelike, Utc};
use hmac::{Hmac, KeyInit, Mac};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use uuid::Uuid;

use crate::outbox::{self, Outbox, OutboxOptions, WebhookRetryPolicy};
pub use crate::server::REQUEST_BODY_MAX_BYTES;
use crate::server::{self, ServerOptions};
use delivery::{Notifier, Work};
use state::{
    rfc3339, CardToken, Method, NewTransaction, OtpCheck, Outcome, State, StateError, Transaction,
    MERCHANT_ID,
};
pub use state::{
    ABANDONED_MESSAGE, DECLINED_MESSAGE, ERROR_MESSAGE, EXPIRED_MESSAGE,
    INSUFFICIENT_FUNDS_MESSAGE, OTP_APPROVED, OTP_ATTEMPTS_MAX, OTP_DECLINED, OTP_ERROR,
    OTP_EXHAUSTED_MESSAGE, OTP_INSUFFICIENT_FUNDS, OTP_SENDS_MAX,
};
use wire::{
    integrity_signature, integrity_signature_until, BANCOLOMBIA_DESCRIPTION_LEN_MAX,
    DAVIPLATA_DESCRIPTION_LEN_MAX, PSE_DESCRIPTION_LEN_MAX,
};

type HmacSha256 = Hmac<Sha256>;

/// The PSE banks of the sandbox: code and name.
pub const PSE_BANKS: [(&str, &str); 2] = [("1", "Banco que aprueba"), ("2", "Banco que rechaza")];

const REFERENCE_LEN_MAX: usize = 255;
const TOKEN_LEN_MAX: usize = 256;
const URL_LEN_MAX: usize = 2048;
const AMOUNT_IN_CENTS_MAX: i64 = 100_000_000_000_000;
const END_USER_POLICY: &str = "END_USER_POLICY";
const INVALID_STATE_REASON: &str = "the transaction's method or status does not allow this";
const PERSONAL_DATA_AUTH: &str = "PERSONAL_DATA_AUTH";

/// Keys and secrets (the same as the adapter's) and where webhooks go.
#[derive(Debug, Clone)]
pub struct WompiSandboxConfig {
    pub public_key: String,
    pub private_key: SecretString,
    /// Signs webhook checksums.
    pub events_secret: SecretString,
    /// Checks the integrity `signature` of creates.
    pub integrity_secret: SecretString,
    /// payledger's `/v1/webhooks/wompi`.
    pub webhook_url: String,
    /// How long after a create a card / Nequi transaction is decided (and after any
    /// transition its webhook is first sent).
    pub webhook_delay_ms: u64,
    /// `false`: webhooks are "lost" (for sync and reconciler tests).
    pub deliver_webhooks: bool,
}

/// Tuning with production-like defaults; tests shrink delays and bounds.
#[derive(Debug, Clone)]
pub struct WompiSandboxOptions {
    pub webhook_retry: WebhookRetryPolicy,
    /// Decisions and webhooks pending at once; a request that needs one more answers `503`.
    pub webhook_queue_capacity: usize,
    pub webhook_timeout: Duration,
    pub webhook_concurrency: usize,
    /// Transactions kept; a create beyond it answers `503`.
    pub transactions_max: usize,
    /// Card tokens kept; the oldest is forgotten beyond it.
    pub tokens_max: usize,
    /// How long the `timeout` fault holds a create's answer.
    pub fault_timeout_delay: Duration,
    /// How long a presigned acceptance token is accepted.
    pub acceptance_token_ttl: Duration,
    /// How long after a create a Bancolombia transfer's page, a QR or Daviplata's code page
    /// appears in `payment_method.extra` (Wompi publishes them after the create's answer).
    pub step_publish_delay: Duration,
    pub workers: usize,
    pub shutdown_timeout_secs: u64,
}

impl Default for WompiSandboxOptions {
    fn default() -> Self {
        WompiSandboxOptions {
            webhook_retry: WebhookRetryPolicy::default(),
            webhook_queue_capacity: 10_000,
            webhook_timeout: Duration::from_secs(5),
            webhook_concurrency: 32,
            transactions_max: 100_000,
            tokens_max: 100_000,
            fault_timeout_delay: Duration::from_secs(30),
            acceptance_token_ttl: Duration::from_secs(60 * 60),
            step_publish_delay: Duration::from_millis(100),
            workers: 2,
            shutdown_timeout_secs: 5,
        }
    }
}

/// A running emulator; its `base_url` (`http://<addr>/v1`) is the client's `WOMPI_BASE_URL`.
pub type WompiSandboxHandle = crate::EmulatorHandle;

/// Starts the emulator on `listener` with default options, on the current tokio runtime.
pub async fn start(
    listener: TcpListener,
    config: WompiSandboxConfig,
) -> io::Result<WompiSandboxHandle> {
    start_with_options(listener, config, WompiSandboxOptions::default()).await
}

/// Starts the emulator on `listener`, on the current tokio runtime.
pub async fn start_with_options(
    listener: TcpListener,
    config: WompiSandboxConfig,
    options: WompiSandboxOptions,
) -> io::Result<WompiSandboxHandle> {
    let invalid = |msg: &str| io::Error::new(io::ErrorKind::InvalidInput, msg.to_owned());
    for (name, value) in [
        ("public_key", config.public_key.as_str()),
        ("private_key", config.private_key.expose_secret()),
        ("events_secret", config.events_secret.expose_secret()),
        ("integrity_secret", config.integrity_secret.expose_secret()),
    ] {
        if value.is_empty() {
            return Err(invalid(&format!("wompi sandbox {name} is empty")));
        }
    }
    if config.public_key == config.private_key.expose_secret() {
        return Err(invalid("wompi sandbox public and private keys must differ"));
    }
    let webhook_url = outbox::webhook_url("wompi sandbox", &config.webhook_url)?;
    let addr = listener.local_addr()?;

    let mut token_key = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut token_key);
    let state = Arc::new(Mutex::new(
        State::new(options.transactions_max, options.tokens_max)
            .with_publish_delay(options.step_publish_delay),
    ));
    let environment = if config
        .events_secret
        .expose_secret()
        .starts_with("prod_events_")
    {
        "prod"
    } else {
        "test"
    };
    let (queue, dispatcher) = outbox::start(
        webhook_url,
        Notifier {
            state: Arc::clone(&state),
            events_secret: config.events_secret.expose_secret().to_owned(),
            environment,
            deliver: config.deliver_webhooks,
        },
        &OutboxOptions {
            name: "wompi sandbox",
            capacity: options.webhook_queue_capacity,
            retry: options.webhook_retry,
            timeout: options.webhook_timeout,
            concurrency: options.webhook_concurrency,
        },
    )?;
    let app = web::Data::new(AppState {
        public_key: config.public_key,
        private_key: config.private_key.expose_secret().to_owned(),
        integrity_secret: config.integrity_secret.expose_secret().to_owned(),
        token_key,
        page_base: format!("http://{addr}"),
        state,
        queue,
        webhook_delay: Duration::from_millis(config.webhook_delay_ms),
        fault: Mutex::new(Fault::None),
        fault_timeout_delay: options.fault_timeout_delay,
        acceptance_token_ttl: options.acceptance_token_ttl,
        sources: Mutex::new(sources::Sources::default()),
    });

    server::start(
        "wompi sandbox",
        listener,
        "/v1",
        ServerOptions {
            workers: options.workers,
            shutdown_timeout_secs: options.shutdown_timeout_secs,
        },
        move |cfg: &mut web::ServiceConfig| {
            cfg.app_data(app.clone())
                .service(
                    web::scope("/v1")
                        .route("/merchants/{public_key}", web::get().to(merchant))
                        .route("/tokens/cards", web::post().to(tokenize_card))
                        .route("/transactions", web::post().to(create_transaction))
                        .route("/transactions", web::get().to(search_transactions))
                        .route("/transactions/{id}", web::get().to(get_transaction))
                        .route("/transactions/{id}/void", web::post().to(void_transaction))
                        .route("/pse/financial_institutions", web::get().to(pse_banks))
                        .route("/tokens/nequi", web::post().to(sources::create_nequi_token))
                        .route(
                            "/tokens/nequi/{id}",
                            web::get().to(sources::get_nequi_token),
                        )
                        .route("/payment_sources", web::post().to(sources::create_source))
                        .route("/payment_sources/{id}", web::get().to(sources::get_source))
                        .route(
                            "/payment_sources/{id}/void",
                            web::put().to(sources::void_source),
                        ),
                )
                .service(
                    web::scope("/_sandbox")
                        .route("/faults", web::post().to(set_faults))
                        .route("/pse/{id}", web::get().to(pse_page))
                        .route("/pse/{id}/complete", web::post().to(complete_pse))
                        .route("/pse/{id}/abandon", web::post().to(abandon_pse))
                        .route("/bancolombia/{id}", web::get().to(bancolombia_page))
                        .route(
                            "/bancolombia/{id}/{decision}",
                            web::post().to(decide_bancolombia),
                        )
                        .route("/qr/{id}", web::get().to(qr_page))
                        .route("/qr/{id}/{decision}", web::post().to(decide_qr))
                        .route("/daviplata/{id}", web::get().to(daviplata_page))
                        .route("/daviplata/{id}/otp/validate", web::post().to(validate_otp))
                        .route("/daviplata/{id}/otp/send", web::post().to(resend_otp))
                        .route("/transactions/{id}/expire", web::post().to(expire)),
                );
            cfg.default_service(web::to(not_found));
        },
        vec![dispatcher],
    )
}

/// Fault injection; affects `POST /v1/transactions` until changed. `server_error` and
/// `timeout` create nothing; the `approved_*` faults create the transaction (decided by its
/// card as usual) and then lose the answer: held past the client's timeout, a `503`, or a
/// normal answer with no webhook ever sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    None,
    ServerError,
    Timeout,
    ApprovedTimeout,
    #[serde(rename = "approved_503")]
    Approved503,
    ApprovedSilent,
}

struct AppState {
    public_key: String,
    private_key: String,
    integrity_secret: String,
    /// Signs the presigned acceptance tokens (fresh per server).
    token_key: [u8; 32],
    /// `http://<addr>`, for the PSE bank pages.
    page_base: String,
    state: Arc<Mutex<State>>,
    queue: Outbox<Work>,
    webhook_delay: Duration,
    fault: Mutex<Fault>,
    fault_timeout_delay: Duration,
    acceptance_token_ttl: Duration,
    sources: Mutex<sources::Sources>,
}

impl AppState {
    fn state(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding the lock; the data stays consistent per operation.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn sources(&self) -> MutexGuard<'_, sources::Sources> {
        // As `state`: never held across a panic or an await.
        self.sources.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn fault(&self) -> Fault {
        *self.fault.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A presigned token in the shape of Wompi's (a JWT): `header.payload.HS256`.
    fn presign(&self, kind: &str, now: DateTime<Utc>) -> String {
        let ttl = i64::try_from(self.acceptance_token_ttl.as_secs()).unwrap_or(i64::MAX);
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256"}"#);
        let payload = json!({
            "contract_id": if kind == END_USER_POLICY { 1 } else { 2 },
            "permalink": permalink(kind),
            "jit": format!("{}-{}", now.timestamp(), Uuid::new_v4().simple()),
            "type": kind,
            "exp": now.timestamp().saturating_add(ttl),
        });
        let payload = URL_SAFE_NO_PAD.encode(payload.to_string());
        let signing_input = format!("{header}.{payload}");
        let signature = match <HmacSha256 as KeyInit>::new_from_slice(&self.token_key) {
            Ok(mut mac) => {
                mac.update(signing_input.as_bytes());
                URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
            }
            // Unreachable: HMAC takes keys of any length. An empty signature never verifies.
            Err(_) => String::new(),
        };
        format!("{signing_input}.{signature}")
    }

    /// Whether `token` is one of ours, of `kind`, and not expired.
    fn presigned_valid(&self, token: &str, kind: &str, now: DateTime<Utc>) -> bool {
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return false;
        };
        let Ok(signature) = URL_SAFE_NO_PAD.decode(signature) else {
            return false;
        };
        let Ok(mut mac) = <HmacSha256 as KeyInit>::new_from_slice(&self.token_key) else {
            return false;
        };
        mac.update(header.as_bytes());
        mac.update(b".");
        mac.update(payload.as_bytes());
        if mac.verify_slice(&signature).is_err() {
            return false;
        }
        #[derive(Deserialize)]
        struct Claims {
            #[serde(rename = "type")]
            kind: String,
            exp: i64,
        }
        let claims = URL_SAFE_NO_PAD
            .decode(payload)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<Claims>(&bytes).ok());
        matches!(claims, Some(c) if c.kind == kind && c.exp > now.timestamp())
    }
}

fn permalink(kind: &str) -> &'static str {
    if kind == END_USER_POLICY {
        "https://wompi.co/wp-content/uploads/2019/09/TERMINOS-Y-CONDICIONES-DE-USO-USUARIOS-WOMPI.pdf"
    } else {
        "https://wompi.com/assets/downloadble/autorizacion-administracion-datos-personales.pdf"
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    Public,
    Private,
}

/// The key presented as `Authorization: Bearer <key>`, compared in constant time.
fn presented_key(req: &HttpRequest, app: &AppState) -> Option<Key> {
    let value = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())?;
    let (scheme, presented) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let presented = presented.trim().as_bytes();
    let private = bool::from(presented.ct_eq(app.private_key.as_bytes()));
    let public = bool::from(presented.ct_eq(app.public_key.as_bytes()));
    match (private, public) {
        (true, _) => Some(Key::Private),
        (_, true) => Some(Key::Public),
        _ => None,
    }
}

fn require(req: &HttpRequest, app: &AppState, allowed: &[Key]) -> Result<Key, ApiError> {
    match presented_key(req, app) {
        Some(key) if allowed.contains(&key) => Ok(key),
        Some(_) => Err(ApiError::unauthorized(
            "this endpoint takes the other key (public or private)",
        )),
        None => Err(ApiError::unauthorized(
            "missing key, or a key that does not belong to this environment",
        )),
    }
}

/// Wompi's error shape. Messages never echo request values (they may be card data).
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    kind: &'static str,
    reason: Option<Cow<'static, str>>,
    messages: BTreeMap<&'static str, Vec<Cow<'static, str>>>,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, reason: impl Into<Cow<'static, str>>) -> Self {
        ApiError {
            status,
            kind,
            reason: Some(reason.into()),
            messages: BTreeMap::new(),
        }
    }

    fn unauthorized(reason: &'static str) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "INVALID_ACCESS_TOKEN", reason)
    }

    fn not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "NOT_FOUND_ERROR",
            "La entidad solicitada no existe",
        )
    }

    fn unavailable(reason: &'static str) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "SERVICE_UNAVAILABLE",
            reason,
        )
    }

    fn validation(field: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        let mut errors = Errors::default();
        errors.add(field, message);
        errors.into_error()
    }
}

/// Field problems gathered over a whole request, like Wompi reports them.
#[derive(Default)]
struct Errors(BTreeMap<&'static str, Vec<Cow<'static, str>>>);

impl Errors {
    fn add(&mut self, field: &'static str, message: impl Into<Cow<'static, str>>) {
        self.0.entry(field).or_default().push(message.into());
    }

    fn into_error(self) -> ApiError {
        ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            kind: "INPUT_VALIDATION_ERROR",
            reason: None,
            messages: self.0,
        }
    }

    fn check(self) -> Result<(), ApiError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(self.into_error())
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status.as_u16(), self.kind)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut error = serde_json::Map::new();
        error.insert("type".into(), Value::from(self.kind));
        if let Some(reason) = &self.reason {
            error.insert("reason".into(), Value::from(reason.as_ref()));
        }
        if !self.messages.is_empty() {
            let messages: serde_json::Map<String, Value> = self
                .messages
                .iter()
                .map(|(field, list)| {
                    let list: Vec<Value> = list.iter().map(|m| Value::from(m.as_ref())).collect();
                    ((*field).to_owned(), Value::Array(list))
                })
                .collect();
            error.insert("messages".into(), Value::Object(messages));
        }
        HttpResponse::build(self.status).json(json!({ "error": error }))
    }
}

impl From<StateError> for ApiError {
    fn from(error: StateError) -> Self {
        match error {
            StateError::NotFound => ApiError::not_found(),
            StateError::DuplicateReference => {
                ApiError::validation("reference", "La referencia ya ha sido usada")
            }
            StateError::InvalidState => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "INPUT_VALIDATION_ERROR",
                INVALID_STATE_REASON,
            ),
            StateError::CapacityExhausted => {
                ApiError::unavailable("the sandbox holds too many transactions")
            }
            StateError::WrongToken => ApiError::new(
                StatusCode::FORBIDDEN,
                "INVALID_ACCESS_TOKEN",
                "the token is not this transaction's url_services.token",
            ),
            StateError::TooManyCodes => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "INPUT_VALIDATION_ERROR",
                "Daviplata already sent as many codes as it sends for one payment",
            ),
        }
    }
}

fn parse_json<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::validation(
            "body",
            format!(
                "is not JSON of the expected shape (line {} column {})",
                e.line(),
                e.column()
            ),
        )
    })
}

fn merchant_view() -> Value {
    json!({
        "id": MERCHANT_ID,
        "name": "payledger sandbox",
        "legal_name": "payledger sandbox S.A.S.",
        "legal_id_type": "NIT",
        "legal_id": "900000000-0",
        "email": "sandbox@payledger.invalid",
        "contact_name": "payledger",
        "phone_number": "+573000000000",
        "logo_url": null,
    })
}

fn view(tx: &Transaction) -> Value {
    // Wompi shows a rail's step only once published; before that `extra` is empty.
    let published = Utc::now() >= tx.published_at;
    let payment_method = match &tx.method {
        Method::Card {
            installments,
            brand,
            last_four,
            ..
        } => json!({
            "type": "CARD",
            "installments": installments,
            "extra": {
                "brand": brand,
                "last_four": last_four,
                "name": format!("{brand}-{last_four}"),
                "processor_response_code": "00",
            },
        }),
        Method::Nequi { phone_number, .. } => json!({
            "type": "NEQUI",
            "phone_number": phone_number,
            "extra": {},
        }),
        Method::Pse {
            user_type,
            user_legal_id_type,
            user_legal_id,
            financial_institution_code,
            payment_description,
            ..
        } => {
            let extra = match &tx.async_payment_url {
                Some(url) => json!({ "async_payment_url": url }),
                None => json!({}),
            };
            json!({
                "type": "PSE",
                "user_type": user_type,
                "user_legal_id_type": user_legal_id_type,
                "user_legal_id": user_legal_id,
                "financial_institution_code": financial_institution_code,
                "payment_description": payment_description,
                "extra": extra,
            })
        }
        Method::BancolombiaTransfer {
            user_type,
            payment_description,
        } => {
            let extra = match &tx.async_payment_url {
                Some(url) if published => json!({ "async_payment_url": url }),
                _ => json!({}),
            };
            json!({
                "type": "BANCOLOMBIA_TRANSFER",
                "user_type": user_type,
                "payment_description": payment_description,
                "extra": extra,
            })
        }
        Method::BancolombiaQr {
            payment_description,
            ..
        } => {
            let extra = match &tx.qr {
                Some(qr) if published => json!({
                    "qr_id": qr.id,
                    "qr_image": qr.image,
                    "external_identifier": qr.external_identifier,
                }),
                _ => json!({}),
            };
            json!({
                "type": "BANCOLOMBIA_QR",
                "payment_description": payment_description,
                "extra": extra,
            })
        }
        Method::Daviplata {
            user_legal_id_type,
            user_legal_id,
            payment_description,
        } => {
            let extra = match &tx.otp {
                Some(otp) if published => json!({
                    "url": otp.url,
                    "url_services": {
                        "token": otp.token,
                        "code_otp_send": otp.send_url,
                        "code_otp_validate": otp.validate_url,
                    },
                }),
                _ => json!({}),
            };
            json!({
                "type": "DAVIPLATA",
                "user_legal_id_type": user_legal_id_type,
                "user_legal_id": user_legal_id,
                "payment_description": payment_description,
                "extra": extra,
            })
        }
    };
    let mut merchant = merchant_view();
    if let Some(object) = merchant.as_object_mut() {
        object.retain(|k, _| matches!(k.as_str(), "id" | "name" | "legal_name" | "email"));
    }
    json!({
        "id": tx.id,
        "created_at": rfc3339(tx.created_at),
        "finalized_at": tx.finalized_at.map(rfc3339),
        "amount_in_cents": tx.amount_in_cents,
        "reference": tx.reference,
        "currency": tx.currency,
        "customer_email": tx.customer_email,
        "payment_method_type": tx.method.kind(),
        "payment_method": payment_method,
        "status": tx.status.as_str(),
        "status_message": tx.status_message,
        "redirect_url": tx.redirect_url,
        "shipping_address": null,
        "payment_link_id": null,
        "payment_source_id": tx.payment_source_id,
        "expiration_time": tx.expiration_time.map(rfc3339),
        "merchant": merchant,
    })
}

async fn not_found() -> HttpResponse {
    ApiError::not_found().error_response()
}

async fn merchant(app: web::Data<AppState>, public_key: web::Path<String>) -> HttpResponse {
    if !bool::from(public_key.as_bytes().ct_eq(app.public_key.as_bytes())) {
        return ApiError::not_found().error_response();
    }
    let now = Utc::now();
    let mut data = merchant_view();
    if let Some(object) = data.as_object_mut() {
        object.insert("active".into(), Value::Bool(true));
        object.insert("public_key".into(), Value::from(app.public_key.as_str()));
        object.insert("accepted_currencies".into(), json!(["COP"]));
        object.insert(
            "accepted_payment_methods".into(),
            json!([
                "CARD",
                "NEQUI",
                "PSE",
                "BANCOLOMBIA_TRANSFER",
                "BANCOLOMBIA_QR",
                "DAVIPLATA"
            ]),
        );
        object.insert(
            "presigned_acceptance".into(),
            json!({
                "acceptance_token": app.presign(END_USER_POLICY, now),
                "permalink": permalink(END_USER_POLICY),
                "type": END_USER_POLICY,
            }),
        );
        object.insert(
            "presigned_personal_data_auth".into(),
            json!({
                "acceptance_token": app.presign(PERSONAL_DATA_AUTH, now),
                "permalink": permalink(PERSONAL_DATA_AUTH),
                "type": PERSONAL_DATA_AUTH,
            }),
        );
    }
    HttpResponse::Ok().json(json!({ "data": data, "meta": {} }))
}

#[derive(Deserialize)]
struct CardRequest {
    #[serde(default)]
    number: Option<String>,
    #[serde(default)]
    cvc: Option<String>,
    #[serde(default)]
    exp_month: Option<String>,
    #[serde(default)]
    exp_year: Option<String>,
    #[serde(default)]
    card_holder: Option<String>,
}

fn luhn_valid(number: &str) -> bool {
    let mut sum = 0u32;
    for (i, digit) in number
        .bytes()
        .rev()
        .map(|b| u32::from(b - b'0'))
        .enumerate()
    {
        sum += if !i.is_multiple_of(2) {
            let d = digit * 2;
            if d > 9 {
                d - 9
            } else {
                d
            }
        } else {
            digit
        };
    }
    sum.is_multiple_of(10)
}

fn all_digits(text: &str, min: usize, max: usize) -> bool {
    (min..=max).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_digit())
}

async fn tokenize_card(
    req: HttpRequest,
    app: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    require(&req, &app, &[Key::Public])?;
    let card: CardRequest = parse_json(&body)?;
    let now = Utc::now();
    let mut errors = Errors::default();
    let number = card.number.unwrap_or_default();
    if !all_digits(&number, 13, 19) || !luhn_valid(&number) {
        errors.add("number", "is not a valid card number");
    }
    if !card.cvc.as_deref().is_some_and(|c| all_digits(c, 3, 4)) {
        errors.add("cvc", "must be 3 or 4 digits");
    }
    let month = card
        .exp_month
        .as_deref()
        .filter(|m| all_digits(m, 2, 2))
        .and_then(|m| m.parse::<u32>().ok())
        .filter(|m| (1..=12).contains(m));
    let year = card
        .exp_year
        .as_deref()
        .filter(|y| all_digits(y, 2, 2))
        .and_then(|y| y.parse::<i32>().ok())
        .map(|y| 2000 + y);
    match (month, year) {
        (None, _) => errors.add("exp_month", "must be 01 to 12"),
        (_, None) => errors.add("exp_year", "must be 2 digits"),
        (Some(month), Some(year)) if (year, month) < (now.year(), now.month()) => {
            errors.add("exp_year", "the card has expired")
        }
        _ => {}
    }
    let holder = card.card_holder.unwrap_or_default();
    let holder_len = holder.trim().chars().count();
    if !(5..=64).contains(&holder_len) || holder.chars().any(char::is_control) {
        errors.add("card_holder", "must be 5 to 64 characters");
    }
    errors.check()?;

    let brand = match number.as_bytes().first() {
        Some(b'4') => "VISA",
        Some(b'5') | Some(b'2') => "MASTERCARD",
        Some(b'3') => "AMEX",
        _ => "UNKNOWN",
    };
    let last_four = number[number.len() - 4..].to_owned();
    let id = format!("tok_test_1_{}", Uuid::new_v4().simple());
    app.state().add_token(
        id.clone(),
        CardToken {
            outcome: Outcome::of_card(&number),
            brand,
            last_four: last_four.clone(),
            exp_month: card.exp_month.clone().unwrap_or_default(),
            exp_year: card.exp_year.clone().unwrap_or_default(),
        },
    );
    Ok(HttpResponse::Created().json(json!({
        "status": "CREATED",
        "data": {
            "id": id,
            "status": "CREATED",
            "created_at": rfc3339(now),
            "brand": brand,
            "name": format!("{brand}-{last_four}"),
            "last_four": last_four,
            "bin": &number[..6],
            "exp_year": card.exp_year,
            "exp_month": card.exp_month,
            "card_holder": holder.trim(),
            "expires_at": rfc3339(now + chrono::Duration::days(30)),
        }
    })))
}

#[derive(Deserialize)]
struct CreateRequest {
    #[serde(default)]
    acceptance_token: Option<String>,
    #[serde(default)]
    accept_personal_auth: Option<String>,
    #[serde(default)]
    amount_in_cents: Option<Value>,
    #[serde(default)]
    currency: Option<String>,
    #[serde(default)]
    customer_email: Option<String>,
    #[serde(default)]
    reference: Option<String>,
    #[serde(default)]
    signature: Option<String>,
    #[serde(default)]
    payment_method: Option<Value>,
    #[serde(default)]
    redirect_url: Option<String>,
    /// A saved source to charge instead of a whole `payment_method`.
    #[serde(default)]
    payment_source_id: Option<Value>,
    /// Until when the customer may pay (ISO 8601, UTC); it enters the signature.
    #[serde(default)]
    expiration_time: Option<String>,
}

fn valid_email(text: &str) -> bool {
    match text.split_once('@') {
        Some((local, domain)) => {
            text.len() <= 254
                && !local.is_empty()
                && domain.contains('.')
                && !domain.contains('@')
                && text.bytes().all(|b| b.is_ascii_graphic())
        }
        None => false,
    }
}

/// Checks a create like Wompi would, gathering every field problem.
fn validate_create(
    app: &AppState,
    request: CreateRequest,
    now: DateTime<Utc>,
) -> Result<NewTransaction, ApiError> {
    let mut errors = Errors::default();
    // A source carries the acceptance given when it was saved; sent again, it must be valid.
    let with_source = request.payment_source_id.is_some();
    match request.acceptance_token.as_deref() {
        Some(token) if app.presigned_valid(token, END_USER_POLICY, now) => {}
        Some(_) => errors.add(
            "acceptance_token",
            "El token de aceptación es inválido o expiró",
        ),
        None if with_source => {}
        None => errors.add("acceptance_token", "is required"),
    }
    match request.accept_personal_auth.as_deref() {
        Some(token) if app.presigned_valid(token, PERSONAL_DATA_AUTH, now) => {}
        Some(_) => errors.add(
            "accept_personal_auth",
            "El token de aceptación es inválido o expiró",
        ),
        None if with_source => {}
        None => errors.add("accept_personal_auth", "is required"),
    }
    let amount = request
        .amount_in_cents
        .as_ref()
        .and_then(Value::as_i64)
        .filter(|a| (1..=AMOUNT_IN_CENTS_MAX).contains(a));
    if amount.is_none() {
        errors.add("amount_in_cents", "must be a positive integer");
    }
    let currency = request.currency.filter(|c| c == "COP");
    if currency.is_none() {
        errors.add("currency", "must be COP");
    }
    let customer_email = request.customer_email.unwrap_or_default();
    if !valid_email(&customer_email) {
        errors.add("customer_email", "must be an email address");
    }
    let reference = request
        .reference
        .filter(|r| !r.is_empty() && r.chars().count() <= REFERENCE_LEN_MAX);
    if reference.is_none() {
        errors.add("reference", "must be 1 to 255 characters");
    }
    let expiration_time = match request.expiration_time.as_deref() {
        None => None,
        Some(text) => match DateTime::parse_from_rfc3339(text) {
            Ok(at) if at > now => Some(at.with_timezone(&Utc)),
            Ok(_) => {
                errors.add("expiration_time", "must be in the future");
                None
            }
            Err(_) => {
                errors.add("expiration_time", "must be an ISO 8601 time");
                None
            }
        },
    };
    if let (Some(reference), Some(amount), Some(currency)) = (&reference, amount, &currency) {
        let secret = &app.integrity_secret;
        let expected = match request.expiration_time.as_deref() {
            Some(until) => integrity_signature_until(reference, amount, currency, until, secret),
            None => integrity_signature(reference, amount, currency, secret),
        };
        let presented = request.signature.unwrap_or_default().to_ascii_lowercase();
        if !bool::from(presented.as_bytes().ct_eq(expected.as_bytes())) {
            errors.add("signature", "La firma es inválida");
        }
    }
    let redirect_url = request.redirect_url.filter(|u| !u.is_empty());
    if let Some(url) = &redirect_url {
        let ok = url.len() <= URL_LEN_MAX
            && reqwest::Url::parse(url).is_ok_and(|u| matches!(u.scheme(), "http" | "https"));
        if !ok {
            errors.add("redirect_url", "must be an http(s) URL");
        }
    }
    let (method, payment_source_id) = match (request.payment_source_id, request.payment_method) {
        (Some(source), payment_method) => {
            sourced_method(app, &source, payment_method.as_ref(), &mut errors)
        }
        (None, Some(Value::Object(object))) => (payment_method(app, &object, &mut errors), None),
        (None, _) => {
            errors.add("payment_method", "is required");
            (None, None)
        }
    };
    errors.check()?;
    match (amount, currency, reference, method) {
        (Some(amount_in_cents), Some(currency), Some(reference), Some(method)) => {
            Ok(NewTransaction {
                amount_in_cents,
                currency,
                reference,
                customer_email,
                redirect_url,
                method,
                payment_source_id,
                expiration_time,
            })
        }
        // Every `None` above added an error, so `check` returned already.
        _ => Err(ApiError::validation("body", "is incomplete")),
    }
}

/// The method a charge of a saved source makes: the source's card (with the create's
/// `payment_method.installments`, which Wompi asks for with a card source) or Nequi account.
fn sourced_method(
    app: &AppState,
    source: &Value,
    payment_method: Option<&Value>,
    errors: &mut Errors,
) -> (Option<Method>, Option<i64>) {
    let Some(id) = source.as_i64() else {
        errors.add("payment_source_id", "must be an integer");
        return (None, None);
    };
    let source = match app.sources().chargeable(id) {
        Ok(source) => source,
        Err(_) => {
            errors.add(
                "payment_source_id",
                "La fuente de pago no existe o no está disponible",
            );
            return (None, None);
        }
    };
    let method = match source.instrument {
        sources::Instrument::Card { token, card } => {
            let installments = payment_method
                .and_then(|m| m.get("installments"))
                .and_then(Value::as_u64)
                .filter(|n| (1..=36).contains(n))
                .and_then(|n| u32::try_from(n).ok());
            let Some(installments) = installments else {
                errors.add("payment_method", "installments must be 1 to 36");
                return (None, None);
            };
            Method::Card {
                token,
                installments,
                brand: card.brand,
                last_four: card.last_four,
                outcome: card.outcome,
            }
        }
        sources::Instrument::Nequi { phone_number } => Method::Nequi {
            outcome: Outcome::of_nequi(&phone_number),
            phone_number,
        },
    };
    (Some(method), Some(id))
}

fn payment_method(
    app: &AppState,
    object: &serde_json::Map<String, Value>,
    errors: &mut Errors,
) -> Option<Method> {
    let text = |key: &str| object.get(key).and_then(Value::as_str);
    match text("type") {
        Some("CARD") => {
            let token = text("token").filter(|t| !t.is_empty() && t.len() <= TOKEN_LEN_MAX);
            let installments = object
                .get("installments")
                .and_then(Value::as_u64)
                .filter(|n| (1..=36).contains(n))
                .and_then(|n| u32::try_from(n).ok());
            if installments.is_none() {
                errors.add("payment_method", "installments must be 1 to 36");
            }
            let card = token.and_then(|t| app.state().token(t).cloned());
            if card.is_none() {
                errors.add("payment_method", "token is not a valid card token");
            }
            match (token, installments, card) {
                (Some(token), Some(installments), Some(card)) => Some(Method::Card {
                    token: token.to_owned(),
                    installments,
                    brand: card.brand,
                    last_four: card.last_four,
                    outcome: card.outcome,
                }),
                _ => None,
            }
        }
        Some("NEQUI") => match text("phone_number").filter(|p| all_digits(p, 10, 10)) {
            Some(phone) => Some(Method::Nequi {
                phone_number: phone.to_owned(),
                outcome: Outcome::of_nequi(phone),
            }),
            None => {
                errors.add("payment_method", "phone_number must be 10 digits");
                None
            }
        },
        Some("PSE") => {
            let mut ok = true;
            let mut problem = |message: &'static str| {
                errors.add("payment_method", message);
                ok = false;
            };
            let user_type = object
                .get("user_type")
                .and_then(Value::as_u64)
                .filter(|t| *t <= 1)
                .and_then(|t| u8::try_from(t).ok());
            if user_type.is_none() {
                problem("user_type must be 0 (person) or 1 (company)");
            }
            let id_type = text("user_legal_id_type").filter(|t| matches!(*t, "CC" | "NIT"));
            if id_type.is_none() {
                problem("user_legal_id_type must be CC or NIT");
            }
            let legal_id = text("user_legal_id").filter(|i| {
                (1..=20).contains(&i.len()) && i.bytes().all(|b| b.is_ascii_alphanumeric())
            });
            if legal_id.is_none() {
                problem("user_legal_id is required");
            }
            let bank = text("financial_institution_code");
            let outcome = bank.and_then(Outcome::of_pse_bank);
            if outcome.is_none() {
                problem("financial_institution_code is not a PSE bank");
            }
            let description = text("payment_description").filter(|d| {
                let n = d.chars().count();
                (1..=PSE_DESCRIPTION_LEN_MAX).contains(&n) && !d.chars().any(char::is_control)
            });
            if description.is_none() {
                problem("payment_description must be 1 to 30 characters");
            }
            if !ok {
                return None;
            }
            match (user_type, id_type, legal_id, bank, description, outcome) {
                (Some(user_type), Some(id_type), Some(legal_id), Some(bank), Some(d), Some(o)) => {
                    Some(Method::Pse {
                        user_type,
                        user_legal_id_type: id_type.to_owned(),
                        user_legal_id: legal_id.to_owned(),
                        financial_institution_code: bank.to_owned(),
                        payment_description: d.to_owned(),
                        outcome: o,
                    })
                }
                _ => None,
            }
        }
        Some("BANCOLOMBIA_TRANSFER") => {
            let user_type = text("user_type").filter(|t| *t == "PERSON");
            if user_type.is_none() {
                errors.add("payment_method", "user_type must be PERSON");
            }
            let description = description(object, BANCOLOMBIA_DESCRIPTION_LEN_MAX, errors)?;
            match (user_type, description) {
                (Some(user_type), Some(payment_description)) => Some(Method::BancolombiaTransfer {
                    user_type: user_type.to_owned(),
                    payment_description,
                }),
                (_, None) => {
                    errors.add("payment_method", "payment_description is required");
                    None
                }
                _ => None,
            }
        }
        Some("BANCOLOMBIA_QR") => {
            let description = description(object, BANCOLOMBIA_DESCRIPTION_LEN_MAX, errors)?;
            let sandbox_status = match text("sandbox_status") {
                None => None,
                Some(status) => match Outcome::of_sandbox_status(status) {
                    Some(outcome) => Some(outcome),
                    None => {
                        errors.add(
                            "payment_method",
                            "sandbox_status must be APPROVED, DECLINED or ERROR",
                        );
                        return None;
                    }
                },
            };
            Some(Method::BancolombiaQr {
                payment_description: description,
                sandbox_status,
            })
        }
        Some("DAVIPLATA") => {
            let id_type = text("user_legal_id_type").filter(|t| matches!(*t, "CC" | "CE" | "NIT"));
            if id_type.is_none() {
                errors.add("payment_method", "user_legal_id_type must be CC, CE or NIT");
            }
            let legal_id = text("user_legal_id").filter(|i| {
                (1..=20).contains(&i.len()) && i.bytes().all(|b| b.is_ascii_alphanumeric())
            });
            if legal_id.is_none() {
                errors.add("payment_method", "user_legal_id is required");
            }
            let description = description(object, DAVIPLATA_DESCRIPTION_LEN_MAX, errors)?;
            match (id_type, legal_id) {
                (Some(id_type), Some(legal_id)) => Some(Method::Daviplata {
                    user_legal_id_type: id_type.to_owned(),
                    user_legal_id: legal_id.to_owned(),
                    payment_description: description,
                }),
                _ => None,
            }
        }
        _ => {
            errors.add(
                "payment_method",
                "type must be CARD, NEQUI, PSE, BANCOLOMBIA_TRANSFER, BANCOLOMBIA_QR or DAVIPLATA",
            );
            None
        }
    }
}

/// An optional `payment_description` of 1 to `len_max` characters without controls or single
/// quotes (Wompi refuses those). `None` when the request is refused (the error is added),
/// `Some(None)` when there is none.
fn description(
    object: &serde_json::Map<String, Value>,
    len_max: usize,
    errors: &mut Errors,
) -> Option<Option<String>> {
    match object.get("payment_description") {
        None | Some(Value::Null) => Some(None),
        Some(Value::String(text))
            if (1..=len_max).contains(&text.chars().count())
                && !text.trim().is_empty()
                && !text.chars().any(|c| c.is_control() || c == '\'') =>
        {
            Some(Some(text.clone()))
        }
        Some(_) => {
            errors.add(
                "payment_method",
                if len_max == DAVIPLATA_DESCRIPTION_LEN_MAX {
                    "payment_description must be 1 to 30 characters, without single quotes"
                } else {
                    "payment_description must be 1 to 64 characters, without single quotes"
                },
            );
            None
        }
    }
}

async fn create_transaction(
    req: HttpRequest,
    app: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    require(&req, &app, &[Key::Public, Key::Private])?;
    match app.fault() {
        Fault::None => {}
        Fault::ServerError => {
            return Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "INTERNAL_SERVER_ERROR",
                "simulated fault",
            ))
        }
        Fault::Timeout => {
            tokio::time::sleep(app.fault_timeout_delay).await;
            return Err(ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "GATEWAY_TIMEOUT",
                "simulated upstream timeout",
            ));
        }
        Fault::ApprovedTimeout | Fault::Approved503 | Fault::ApprovedSilent => {}
    }
    let fault = app.fault();
    let request: CreateRequest = parse_json(&body)?;
    let now = Utc::now();
    let new = validate_create(&app, request, now)?;
    // Cards, Nequi and a QR with a `sandbox_status` are decided by the sandbox itself.
    let decides_alone = matches!(
        new.method,
        Method::Card { .. }
            | Method::Nequi { .. }
            | Method::BancolombiaQr {
                sandbox_status: Some(_),
                ..
            }
    );
    // A transaction the sandbox decides needs a queue slot for its decision and webhook.
    let slot = if decides_alone {
        Some(app.queue.try_reserve().ok_or(ApiError::unavailable(
            "the webhook queue is full, retry later",
        ))?)
    } else {
        None
    };
    let tx = app.state().create(new, &app.page_base, now)?;
    if let Some(slot) = slot {
        let work = if fault == Fault::ApprovedSilent {
            Work::DecideSilently(tx.id.clone())
        } else {
            Work::Decide(tx.id.clone())
        };
        if !app.queue.schedule(slot, work, app.webhook_delay) {
            return Err(ApiError::unavailable("the sandbox is stopping"));
        }
    }
    tracing::debug!(transaction_id = %tx.id, "wompi sandbox: transaction created");
    match fault {
        Fault::ApprovedTimeout => {
            tokio::time::sleep(app.fault_timeout_delay).await;
            Err(ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "GATEWAY_TIMEOUT",
                "simulated upstream timeout after the transaction was created",
            ))
        }
        Fault::Approved503 => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "SERVICE_UNAVAILABLE",
            "simulated fault after the transaction was created",
        )),
        _ => Ok(HttpResponse::Created().json(json!({ "data": view(&tx) }))),
    }
}

async fn get_transaction(
    req: HttpRequest,
    app: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    require(&req, &app, &[Key::Public, Key::Private])?;
    close_if_expired(&app, &id)?;
    let state = app.state();
    let tx = state.get(&id).ok_or(StateError::NotFound)?;
    Ok(HttpResponse::Ok().json(json!({ "data": view(tx) })))
}

/// A pending transaction read past its `expiration_time` is closed first (`DECLINED`) and its
/// webhook sent: the sandbox has no clock of its own, reading is when it notices.
fn close_if_expired(app: &AppState, id: &str) -> Result<(), ApiError> {
    if !app.state().expiry_due(id, Utc::now()) {
        return Ok(());
    }
    match transition(app, |state, now| state.expire(id, now)) {
        // Decided meanwhile by another request: nothing to close.
        Err(error) if error.kind == "INPUT_VALIDATION_ERROR" => Ok(()),
        Err(error) => Err(error),
        Ok(_) => Ok(()),
    }
}

#[derive(Deserialize)]
struct SearchQuery {
    #[serde(default)]
    reference: Option<String>,
}

async fn search_transactions(
    req: HttpRequest,
    app: web::Data<AppState>,
    query: web::Query<SearchQuery>,
) -> Result<HttpResponse, ApiError> {
    require(&req, &app, &[Key::Private])?;
    let Some(reference) = query.reference.as_deref().filter(|r| !r.is_empty()) else {
        return Err(ApiError::validation(
            "reference",
            "is required by the sandbox (no date ranges)",
        ));
    };
    let id = app
        .state()
        .find_by_reference(reference)
        .map(|tx| tx.id.clone());
    if let Some(id) = id {
        close_if_expired(&app, &id)?;
    }
    let state = app.state();
    let found: Vec<Value> = state
        .find_by_reference(reference)
        .map(view)
        .into_iter()
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "data": found, "meta": {} })))
}

/// Runs a transition that must be reported, holding a queue slot first.
fn transition(
    app: &AppState,
    change: impl FnOnce(&mut State, DateTime<Utc>) -> Result<Transaction, StateError>,
) -> Result<Transaction, ApiError> {
    let slot = app.queue.try_reserve().ok_or(ApiError::unavailable(
        "the webhook queue is full, retry later",
    ))?;
    let tx = change(&mut app.state(), Utc::now())?;
    if !app
        .queue
        .schedule(slot, Work::Report(Box::new(tx.clone())), app.webhook_delay)
    {
        return Err(ApiError::unavailable("the sandbox is stopping"));
    }
    Ok(tx)
}

async fn void_transaction(
    req: HttpRequest,
    app: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    require(&req, &app, &[Key::Private])?;
    let tx = transition(&app, |state, now| state.void(&id, now))?;
    Ok(HttpResponse::Created().json(json!({ "data": { "transaction": view(&tx) } })))
}

async fn pse_banks(req: HttpRequest, app: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    require(&req, &app, &[Key::Public, Key::Private])?;
    let banks: Vec<Value> = PSE_BANKS
        .iter()
        .map(|(code, name)| {
            json!({ "financial_institution_code": code, "financial_institution_name": name })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "data": banks })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FaultRequest {
    create: Fault,
}

async fn set_faults(app: web::Data<AppState>, body: web::Bytes) -> Result<HttpResponse, ApiError> {
    let request: FaultRequest = parse_json(&body)?;
    *app.fault.lock().unwrap_or_else(PoisonError::into_inner) = request.create;
    tracing::info!(fault = ?request.create, "wompi sandbox: create fault set");
    Ok(HttpResponse::Ok().json(json!({ "create": request.create })))
}

async fn pse_page(
    app: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let (id, amount) = {
        let state = app.state();
        let tx = state.get(&id).ok_or(StateError::NotFound)?;
        (tx.id.clone(), tx.amount_in_cents)
    };
    // Ids are ours (digits and dashes); nothing from the request reaches the page.
    let html = format!(
        "<!doctype html><meta charset=\"utf-8\"><title>PSE sandbox</title>\
         <h1>PSE (sandbox)</h1><p>Transaction {id}: {}.{:02} COP</p>\
         <form method=\"post\" action=\"/_sandbox/pse/{id}/complete\"><button>Pay</button></form>\
         <form method=\"post\" action=\"/_sandbox/pse/{id}/abandon\"><button>Abandon</button></form>",
        amount / 100,
        amount % 100
    );
    Ok(HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(html))
}

async fn complete_pse(
    app: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let tx = transition(&app, |state, now| state.complete_pse(&id, now)).map_err(conflict)?;
    Ok(HttpResponse::Ok().json(json!({ "data": view(&tx) })))
}

async fn abandon_pse(
    app: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let tx = transition(&app, |state, now| state.abandon_pse(&id, now)).map_err(conflict)?;
    Ok(HttpResponse::Ok().json(json!({ "data": view(&tx) })))
}

/// Customer actions on a transaction that is not pending with that method answer `409`.
fn conflict(error: ApiError) -> ApiError {
    if error.reason.as_deref() == Some(INVALID_STATE_REASON) {
        ApiError::new(
            StatusCode::CONFLICT,
            "INVALID_STATE",
            "only a PENDING transaction of this method waits for the customer",
        )
    } else {
        error
    }
}

/// What the customer decides at Bancolombia's page or in their bank app.
fn decision(text: &str) -> Result<Outcome, ApiError> {
    match text {
        "approve" => Ok(Outcome::Approve),
        "decline" => Ok(Outcome::Decline),
        "error" => Ok(Outcome::Error),
        _ => Err(ApiError::not_found()),
    }
}

/// A sandbox page; ids are ours (digits and dashes), nothing from the request reaches it.
fn page(title: &str, body: String) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(format!(
            "<!doctype html><meta charset=\"utf-8\"><title>{title}</title><h1>{title}</h1>{body}"
        ))
}

/// The transaction `id`, pending with `kind` (else `404`, or `409` once decided).
fn pending_of(app: &AppState, id: &str, kind: &str) -> Result<Transaction, ApiError> {
    let state = app.state();
    let tx = state.get(id).ok_or(StateError::NotFound)?;
    if tx.method.kind() != kind {
        return Err(ApiError::not_found());
    }
    if tx.status != state::Status::Pending {
        return Err(conflict(StateError::InvalidState.into()));
    }
    Ok(tx.clone())
}

fn decision_buttons(path: &str) -> String {
    ["approve", "decline", "error"]
        .map(|d| format!("<form method=\"post\" action=\"{path}/{d}\"><button>{d}</button></form>"))
        .concat()
}

async fn bancolombia_page(
    app: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let tx = pending_of(&app, &id, "BANCOLOMBIA_TRANSFER")?;
    let amount = tx.amount_in_cents;
    Ok(page(
        "Botón Bancolombia (sandbox)",
        format!(
            "<p>Transaction {}: {}.{:02} COP</p>{}",
            tx.id,
            amount / 100,
            amount % 100,
            decision_buttons(&format!("/_sandbox/bancolombia/{}", tx.id))
        ),
    ))
}

async fn decide_bancolombia(
    app: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    decide_pending(&app, path.into_inner(), "BANCOLOMBIA_TRANSFER")
}

/// The customer's decision on a pending transaction of `rail`, taken on the bank's side.
fn decide_pending(
    app: &AppState,
    (id, choice): (String, String),
    rail: &str,
) -> Result<HttpResponse, ApiError> {
    let outcome = decision(&choice)?;
    close_if_expired(app, &id)?;
    let tx = transition(app, |state, now| state.decide_rail(&id, rail, outcome, now))
        .map_err(conflict)?;
    Ok(HttpResponse::Ok().json(json!({ "data": view(&tx) })))
}

async fn qr_page(
    app: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let tx = pending_of(&app, &id, "BANCOLOMBIA_QR")?;
    let image = tx
        .qr
        .as_ref()
        .map(|qr| qr.image.clone())
        .unwrap_or_default();
    Ok(page(
        "Bancolombia QR (sandbox)",
        format!(
            "<img alt=\"QR\" width=\"200\" src=\"data:image/svg+xml;base64,{image}\">\
             <p>The customer's bank app, once the code is scanned:</p>{}",
            decision_buttons(&format!("/_sandbox/qr/{}", tx.id))
        ),
    ))
}

async fn decide_qr(
    app: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    decide_pending(&app, path.into_inner(), "BANCOLOMBIA_QR")
}

async fn daviplata_page(
    app: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let tx = pending_of(&app, &id, "DAVIPLATA")?;
    let Some(otp) = tx.otp.as_ref() else {
        return Err(conflict(StateError::InvalidState.into()));
    };
    // The token is ours (hex): it goes back with the code, as Wompi's own page would send it.
    Ok(page(
        "Daviplata (sandbox)",
        format!(
            "<p>Daviplata sent a 6-digit code to the customer's phone.</p>\
             <form method=\"post\" action=\"/_sandbox/daviplata/{id}/otp/validate\">\
             <input type=\"hidden\" name=\"token\" value=\"{token}\">\
             <input name=\"code\" inputmode=\"numeric\" maxlength=\"6\" autocomplete=\"one-time-code\">\
             <button>Confirm</button></form>\
             <form method=\"post\" action=\"/_sandbox/daviplata/{id}/otp/send\">\
             <input type=\"hidden\" name=\"token\" value=\"{token}\"><button>Send again</button></form>",
            id = tx.id,
            token = otp.token
        ),
    ))
}

/// A Daviplata code call: JSON (`{"code": 574829, "token": ".."}`, the code as a number or
/// text) or the page's form.
#[derive(Deserialize)]
struct OtpRequest {
    #[serde(default)]
    code: Option<Value>,
    #[serde(default)]
    token: Option<String>,
}

fn otp_request(req: &HttpRequest, body: &[u8]) -> Result<OtpRequest, ApiError> {
    let form = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if form {
        serde_urlencoded::from_bytes::<BTreeMap<String, String>>(body)
            .map(|mut fields| OtpRequest {
                code: fields.remove("code").map(Value::from),
                token: fields.remove("token"),
            })
            .map_err(|_| ApiError::validation("body", "is not a form of code and token"))
    } else {
        parse_json(body)
    }
}

async fn validate_otp(
    req: HttpRequest,
    app: web::Data<AppState>,
    id: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let request = otp_request(&req, &body)?;
    let code = match &request.code {
        Some(Value::String(text)) => Some(text.clone()),
        Some(Value::Number(number)) if number.is_u64() => Some(format!("{number:0>6}")),
        _ => None,
    }
    .filter(|code| all_digits(code, 6, 6))
    .ok_or_else(|| ApiError::validation("code", "must be the 6 digits Daviplata sent"))?;
    let token = request.token.unwrap_or_default();
    close_if_expired(&app, &id)?;
    // A decision needs a queue slot for its webhook; a wrong code uses none.
    let slot = app.queue.try_reserve().ok_or(ApiError::unavailable(
        "the webhook queue is full, retry later",
    ))?;
    let checked = app.state().check_otp(&id, &token, &code, Utc::now());
    match checked.map_err(|e| conflict(e.into()))? {
        OtpCheck::Decided(tx) => {
            let answer = json!({ "data": view(&tx) });
            if !app
                .queue
                .schedule(slot, Work::Report(tx), app.webhook_delay)
            {
                return Err(ApiError::unavailable("the sandbox is stopping"));
            }
            Ok(HttpResponse::Ok().json(answer))
        }
        OtpCheck::Wrong { attempts_left } => {
            let mut error = Errors::default();
            error.add(
                "code",
                format!("El código no es válido; quedan {attempts_left} intentos"),
            );
            Err(error.into_error())
        }
    }
}

async fn resend_otp(
    req: HttpRequest,
    app: web::Data<AppState>,
    id: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let token = otp_request(&req, &body)?.token.unwrap_or_default();
    close_if_expired(&app, &id)?;
    let sent = app
        .state()
        .resend_otp(&id, &token)
        .map_err(|e| conflict(e.into()))?;
    Ok(HttpResponse::Ok().json(json!({
        "data": { "attempts": sent, "attempts_max": OTP_SENDS_MAX }
    })))
}

/// The transaction's `expiration_time` arrives now (the sandbox's clock jumps): a pending
/// transaction ends `DECLINED` with [`EXPIRED_MESSAGE`] and its webhook is sent.
async fn expire(app: web::Data<AppState>, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let tx = transition(&app, |state, now| state.expire(&id, now)).map_err(conflict)?;
    Ok(HttpResponse::Ok().json(json!({ "data": view(&tx) })))
}
