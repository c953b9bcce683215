//! PayMongo API emulation for GCash, on its own socket, so the real `PaymongoProvider` and
//! `PaymongoWebhookVerifier` of `commands` run against it unchanged.
//!
//! * `Authorization: Basic base64("<secret key>:")` on every `/v1` route (the public key is
//!   also accepted for creating payment methods, as PayMongo allows); else `401`.
//! * JSON:API bodies (`{"data":{"attributes":{..}}}`), amounts in centavos, `PHP` only.
//! * Like PayMongo's test mode, whose GCash page offers "Authorize Test Payment" and "Fail
//!   Test Payment", the outcome is the customer's: the customer actions below. Each outcome
//!   makes a payment (`pay_...`) and a signed `payment.paid` / `payment.failed` event
//!   (`Paymongo-Signature: t=..,te=..,li=..`, re-signed with a fresh `t` on every delivery
//!   attempt, the signature in `li` for `sk_live_` keys, else in `te`), delivered at least
//!   once with bounded retries through a bounded queue; `deliver_webhooks: false` loses them.
//! * `Idempotency-Key` on `POST /v1/payment_intents` and `POST /v1/refunds`, as PayMongo
//!   documents it: a repeat with the same key and body answers the first result and creates
//!   nothing; the same key with another body (or on the other route) is `400`.
//! * State lives in memory, bounded (`EmulatorOptions::records_max`), lost on stop.
//!
//! | route | answer |
//! |---|---|
//! | `POST /v1/payment_intents` | `200` intent `awaiting_payment_method`; `400` `parameter_below_minimum` under 2000 centavos (PayMongo's own minimum, PHP 20.00), `parameter_invalid` for a non-PHP currency, a method other than `gcash` or a manual capture; the create fault |
//! | `GET /v1/payment_intents/{id}` | the intent with its `payments` (and their `refunds`) |
//! | `POST /v1/payment_methods` | `200` `pm_...` for `type: "gcash"`; else `400` |
//! | `POST /v1/payment_intents/{id}/attach` | `awaiting_next_action` + `next_action.redirect.url` (`return_url` required); `400` otherwise |
//! | `POST /v1/refunds` | `200` refund `succeeded` of a `paid` payment, at least 100 centavos, up to what is left |
//! | `GET /v1/payments/{id}` | the payment |
//! | `GET /v1/webhooks` | the registered webhook (the health call) |
//!
//! Customer actions and test controls (no auth):
//!
//! | route | effect |
//! |---|---|
//! | `GET /_sandbox/gcash/{intent id}` | the page `next_action.redirect.url` points at |
//! | `POST /_sandbox/gcash/{intent id}/authorize` | a `paid` payment, intent `succeeded`, `payment.paid` event |
//! | `POST /_sandbox/gcash/{intent id}/fail` | a `failed` payment (`failed_code: "generic_decline"`), intent back to `awaiting_payment_method` with `last_payment_error`, `payment.failed` event |
//! | `POST /_sandbox/gcash/{intent id}/expire` | the 4-hour window lapses: intent back to `awaiting_payment_method`, no payment, no event |
//! | `POST /_sandbox/faults` | `{"create":"none"\|"server_error"\|"timeout"\|"approved_timeout"\|"approved_503"\|"silent"}`, until changed: `POST /v1/payment_intents` answers `500`, or holds its answer `fault_timeout` (30 s) then `504`, with nothing made; the lost-answer faults act on the attach, the call that completes a create: the intent is attached and waits for the customer (who can authorize it), then the answer is held and `504`, or `503`; `silent`: the create answers normally, but no event is ever sent for that intent |
//! | `GET /_sandbox/payment_intents?payment_id=` | `{"data":[..]}`: the intents whose `metadata.payment_id` is that (at most 100, oldest first) |
//!
//! Actions answer the intent as it now is; `409` unless it awaits the customer, `503` if the
//! webhook queue is full.

pub mod wire;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::io;
use std::net::TcpListener;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use crate::kit::EmulatorOptions;
use crate::kit::{self, basic_key_matches, invalid_input, CreateFault, Faults, Outbox};
use crate::server;
pub use crate::server::REQUEST_BODY_MAX_BYTES;
use wire::{signature_header, IDEMPOTENCY_KEY_HEADER, SIGNATURE_HEADER};
/// PayMongo's smallest payment intent: PHP 20.00.
pub const INTENT_MIN_CENTAVOS: i64 = 2_000;
/// PayMongo's largest payment intent.
pub const INTENT_MAX_CENTAVOS: i64 = 9_999_999_999;
/// PayMongo's smallest refund: PHP 1.00.
pub const REFUND_MIN_CENTAVOS: i64 = 100;
pub const REFUNDS_PER_PAYMENT_MAX: usize = 100;
/// Longest `Idempotency-Key` PayMongo takes.
pub const IDEMPOTENCY_KEY_LEN_MAX: usize = 255;
/// Most intents `GET /_sandbox/payment_intents` lists.
const LISTED_INTENTS_MAX: usize = 100;
/// The `failed_code` of a payment the customer failed.
pub const FAILED_CODE: &str = "generic_decline";

#[derive(Debug, Clone)]
pub struct PaymongoSandboxConfig {
    /// Every `/v1` call needs `Basic base64("<secret_key>:")`; `sk_live_` makes the emulator
    /// live mode (signature in `li`), anything else test mode (`te`).
    pub secret_key: SecretString,
    /// Also accepted for creating payment methods.
    pub public_key: Option<String>,
    /// Signs `Paymongo-Signature`.
    pub webhook_secret: SecretString,
    /// Where events are POSTed (payledger's `/v1/webhooks/gcash`).
    pub webhook_url: String,
    /// Delay between a customer action and its event's first delivery.
    pub webhook_delay_ms: u64,
    /// `false`: events are "lost" (for sync and reconciler tests).
    pub deliver_webhooks: bool,
}

/// A running PayMongo emulator; its `base_url` is `PAYMONGO_BASE_URL` for the client.
pub type PaymongoSandboxHandle = crate::EmulatorHandle;

pub async fn start(
    listener: TcpListener,
    config: PaymongoSandboxConfig,
) -> io::Result<PaymongoSandboxHandle> {
    start_with_options(listener, config, EmulatorOptions::default()).await
}

pub async fn start_with_options(
    listener: TcpListener,
    config: PaymongoSandboxConfig,
    options: EmulatorOptions,
) -> io::Result<PaymongoSandboxHandle> {
    if config.secret_key.expose_secret().is_empty()
        || config.webhook_secret.expose_secret().is_empty()
    {
        return Err(invalid_input(
            "paymongo emulator secret_key and webhook_secret must not be empty",
        ));
    }
    let addr = listener.local_addr()?;
    let livemode = config.secret_key.expose_secret().starts_with("sk_live_");
    let secret = config.webhook_secret.expose_secret().as_bytes().to_vec();
    let signer: kit::Signer = Arc::new(move |body: &[u8], now: DateTime<Utc>| {
        vec![(
            SIGNATURE_HEADER,
            signature_header(&secret, now.timestamp(), body, livemode),
        )]
    });
    let (outbox, dispatcher) = kit::outbox(
        "paymongo emulator",
        &config.webhook_url,
        signer,
        &options,
        config.deliver_webhooks,
    )?;
    let state = web::Data::new(State {
        secret_key: config.secret_key.expose_secret().to_owned(),
        public_key: config.public_key.unwrap_or_default(),
        livemode,
        base_url: format!("http://{addr}"),
        webhook_url: config.webhook_url,
        store: Mutex::new(Store {
            intents: HashMap::new(),
            methods: HashMap::new(),
            payments: HashMap::new(),
            silent: HashSet::new(),
            keys: HashMap::new(),
            capacity: options.records_max.max(1),
        }),
        outbox,
        webhook_delay: Duration::from_millis(config.webhook_delay_ms),
        fault_timeout: options.fault_timeout,
    });
    let faults = web::Data::new(Faults::default());
    server::start(
        "paymongo emulator",
        listener,
        "",
        options.server(),
        move |cfg: &mut web::ServiceConfig| {
            cfg.app_data(state.clone())
                .app_data(faults.clone())
                .service(
                    web::scope("/v1")
                        .route("/payment_intents", web::post().to(create_intent))
                        .route("/payment_intents/{id}", web::get().to(get_intent))
                        .route("/payment_intents/{id}/attach", web::post().to(attach))
                        .route("/payment_methods", web::post().to(create_method))
                        .route("/payments/{id}", web::get().to(get_payment))
                        .route("/refunds", web::post().to(create_refund))
                        .route("/webhooks", web::get().to(list_webhooks)),
                )
                .route("/_sandbox/faults", web::post().to(kit::set_faults))
                .route(
                    "/_sandbox/payment_intents",
                    web::get().to(intents_of_payment),
                )
                .route("/_sandbox/gcash/{id}", web::get().to(gcash_page))
                .route(
                    "/_sandbox/gcash/{id}/{action}",
                    web::post().to(customer_action),
                );
            cfg.default_service(web::to(|| async {
                error(
                    StatusCode::NOT_FOUND,
                    "resource_not_found",
                    "No such route.",
                )
                .error_response()
            }));
        },
        vec![dispatcher],
    )
}

struct State {
    secret_key: String,
    public_key: String,
    livemode: bool,
    base_url: String,
    webhook_url: String,
    store: Mutex<Store>,
    outbox: Outbox,
    webhook_delay: Duration,
    fault_timeout: Duration,
}

impl State {
    fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn authenticate(&self, req: &HttpRequest) -> Result<(), ApiError> {
        if basic_key_matches(req, &[&self.secret_key]) {
            Ok(())
        } else {
            Err(unauthorized())
        }
    }
}

struct Store {
    intents: HashMap<String, wire::Intent>,
    methods: HashMap<String, wire::Resource<wire::PaymentMethodAttributes>>,
    /// Payment id -> its intent id (payments live inside their intent).
    payments: HashMap<String, String>,
    /// Intents made under the `silent` fault: no event is ever sent for them.
    silent: HashSet<String>,
    /// `Idempotency-Key` -> what its first create was and answered.
    keys: HashMap<String, Keyed>,
    capacity: usize,
}

/// The first create made with an idempotency key.
struct Keyed {
    /// SHA-256 of the route and the body: a repeat must send the same.
    digest: [u8; 32],
    /// The `data` it answered.
    answer: serde_json::Value,
}

impl Store {
    fn full(&self) -> bool {
        self.intents.len() + self.methods.len() >= self.capacity
    }

    /// The first answer to a create with this key, if any (`400` if it was another request).
    fn replay(&self, key: Option<&Idempotent>) -> Result<Option<serde_json::Value>, ApiError> {
        let Some(key) = key else {
            return Ok(None);
        };
        match self.keys.get(&key.key) {
            Some(first) if first.digest == key.digest => Ok(Some(first.answer.clone())),
            Some(_) => Err(invalid(
                "parameter_invalid",
                "Idempotency-Key",
                "The idempotency key was already used with other parameters.",
            )),
            None if self.keys.len() >= self.capacity => Err(store_full()),
            None => Ok(None),
        }
    }

    fn remember(&mut self, key: Option<Idempotent>, answer: &impl Serialize) {
        if let (Some(key), Ok(answer)) = (key, serde_json::to_value(answer)) {
            self.keys.insert(
                key.key,
                Keyed {
                    digest: key.digest,
                    answer,
                },
            );
        }
    }

    fn intent_mut(&mut self, id: &str) -> Result<&mut wire::Intent, ApiError> {
        self.intents
            .get_mut(id)
            .ok_or_else(|| not_found("payment_intent"))
    }

    fn payment_mut(&mut self, id: &str) -> Result<&mut wire::Payment, ApiError> {
        let intent_id = self.payments.get(id).ok_or_else(|| not_found("payment"))?;
        self.intents
            .get_mut(intent_id)
            .and_then(|i| i.attributes.payments.iter_mut().find(|p| p.id == id))
            .ok_or_else(|| not_found("payment"))
    }
}

/// An error answer in PayMongo's shape: `{"errors":[{"code","detail","source"?}]}`.
/// Details never echo request values.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    code: &'static str,
    detail: String,
    attribute: Option<&'static str>,
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.status.as_u16(), self.code, self.detail)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut item = serde_json::json!({ "code": self.code, "detail": self.detail });
        if let Some(attribute) = self.attribute {
            item["source"] = serde_json::json!({ "pointer": attribute, "attribute": attribute });
        }
        HttpResponse::build(self.status).json(serde_json::json!({ "errors": [item] }))
    }
}

fn error(status: StatusCode, code: &'static str, detail: &str) -> ApiError {
    ApiError {
        status,
        code,
        detail: detail.to_owned(),
        attribute: None,
    }
}

fn invalid(code: &'static str, attribute: &'static str, detail: &str) -> ApiError {
    ApiError {
        status: StatusCode::BAD_REQUEST,
        code,
        detail: detail.to_owned(),
        attribute: Some(attribute),
    }
}

fn unauthorized() -> ApiError {
    error(
        StatusCode::UNAUTHORIZED,
        "api_key_invalid",
        "API key is invalid or missing.",
    )
}

fn not_found(resource: &str) -> ApiError {
    error(
        StatusCode::NOT_FOUND,
        "resource_not_found",
        &format!("No such {resource}."),
    )
}

fn queue_full() -> ApiError {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "service_unavailable",
        "The webhook queue is full, retry later.",
    )
}

fn store_full() -> ApiError {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "service_unavailable",
        "The emulator holds too many resources.",
    )
}

fn parse<T: for<'de> serde::Deserialize<'de>>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice::<wire::Envelope<wire::Create<T>>>(body)
        .map(|e| e.data.attributes)
        .map_err(|e| {
            error(
                StatusCode::BAD_REQUEST,
                "parameter_invalid",
                &format!(
                    "The body is not JSON of the expected shape (line {} column {}).",
                    e.line(),
                    e.column()
                ),
            )
        })
}

fn data<T: Serialize>(value: &T) -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "data": value }))
}

fn random_id(prefix: &str) -> String {
    use rand::distributions::Alphanumeric;
    use rand::Rng;
    let tail: String = rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(24)
        .map(char::from)
        .collect();
    format!("{prefix}{tail}")
}

type Answer = Result<HttpResponse, ApiError>;

/// A create's `Idempotency-Key` with the digest of what it asks.
struct Idempotent {
    key: String,
    digest: [u8; 32],
}

/// The request's `Idempotency-Key` (`None` without one), bound to its route and body.
fn idempotency_key(req: &HttpRequest, body: &[u8]) -> Result<Option<Idempotent>, ApiError> {
    let Some(value) = req.headers().get(IDEMPOTENCY_KEY_HEADER) else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .filter(|k| {
            !k.is_empty()
                && k.len() <= IDEMPOTENCY_KEY_LEN_MAX
                && k.bytes().all(|b| b.is_ascii_graphic())
        })
        .ok_or_else(|| {
            invalid(
                "parameter_invalid",
                "Idempotency-Key",
                "The idempotency key must be 1-255 printable characters.",
            )
        })?;
    let mut hash = Sha256::new();
    hash.update(req.path().as_bytes());
    hash.update([0]);
    hash.update(body);
    Ok(Some(Idempotent {
        key: key.to_owned(),
        digest: hash.finalize().into(),
    }))
}

async fn create_intent(
    req: HttpRequest,
    state: web::Data<State>,
    faults: web::Data<Faults>,
    body: web::Bytes,
) -> Answer {
    state.authenticate(&req)?;
    let fault = faults.create();
    match fault {
        CreateFault::None
        | CreateFault::ApprovedTimeout
        | CreateFault::Approved503
        | CreateFault::Silent => {}
        CreateFault::ServerError => {
            return Err(error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_server_error",
                "Simulated internal error.",
            ))
        }
        CreateFault::Timeout => {
            tokio::time::sleep(state.fault_timeout).await;
            return Err(error(
                StatusCode::GATEWAY_TIMEOUT,
                "gateway_timeout",
                "Simulated timeout.",
            ));
        }
    }
    let key = idempotency_key(&req, &body)?;
    let request: wire::CreateIntent = parse(&body)?;
    if request.amount < INTENT_MIN_CENTAVOS {
        return Err(invalid(
            "parameter_below_minimum",
            "amount",
            "amount cannot be less than 2000.",
        ));
    }
    if request.amount > INTENT_MAX_CENTAVOS {
        return Err(invalid(
            "parameter_above_maximum",
            "amount",
            "amount cannot be more than 9999999999.",
        ));
    }
    if request.currency != "PHP" {
        return Err(invalid(
            "parameter_invalid",
            "currency",
            "currency must be PHP.",
        ));
    }
    if request.payment_method_allowed.is_empty()
        || request.payment_method_allowed.iter().any(|m| m != "gcash")
    {
        return Err(invalid(
            "parameter_invalid",
            "payment_method_allowed",
            "The emulator takes gcash only.",
        ));
    }
    if request
        .capture_type
        .as_deref()
        .is_some_and(|c| c != "automatic")
    {
        return Err(invalid(
            "parameter_invalid",
            "capture_type",
            "gcash supports automatic capture only.",
        ));
    }
    let now = Utc::now().timestamp();
    let id = random_id("pi_");
    let intent = wire::Intent {
        id: id.clone(),
        kind: "payment_intent".to_owned(),
        attributes: wire::IntentAttributes {
            amount: request.amount,
            currency: request.currency,
            status: "awaiting_payment_method".to_owned(),
            description: request.description,
            livemode: state.livemode,
            capture_type: Some("automatic".to_owned()),
            payment_method_allowed: request.payment_method_allowed,
            payments: Vec::new(),
            next_action: None,
            last_payment_error: None,
            metadata: request.metadata,
            created_at: Some(now),
            updated_at: Some(now),
        },
    };
    let mut store = state.store();
    if let Some(first) = store.replay(key.as_ref())? {
        return Ok(data(&first));
    }
    if store.full() {
        return Err(store_full());
    }
    if fault == CreateFault::Silent {
        store.silent.insert(id.clone());
    }
    store.intents.insert(id, intent.clone());
    store.remember(key, &intent);
    Ok(data(&intent))
}

async fn get_intent(req: HttpRequest, state: web::Data<State>, id: web::Path<String>) -> Answer {
    state.authenticate(&req)?;
    let store = state.store();
    let intent = store
        .intents
        .get(id.as_str())
        .ok_or_else(|| not_found("payment_intent"))?;
    Ok(data(intent))
}

async fn create_method(req: HttpRequest, state: web::Data<State>, body: web::Bytes) -> Answer {
    if !basic_key_matches(&req, &[&state.secret_key, &state.public_key]) {
        return Err(unauthorized());
    }
    let request: wire::CreatePaymentMethod = parse(&body)?;
    if request.kind != "gcash" {
        return Err(invalid(
            "parameter_invalid",
            "type",
            "The emulator takes gcash only.",
        ));
    }
    let method = wire::Resource {
        id: random_id("pm_"),
        kind: "payment_method".to_owned(),
        attributes: wire::PaymentMethodAttributes {
            kind: request.kind,
            livemode: state.livemode,
            metadata: request.metadata,
        },
    };
    let mut store = state.store();
    if store.full() {
        return Err(store_full());
    }
    store.methods.insert(method.id.clone(), method.clone());
    Ok(data(&method))
}

async fn attach(
    req: HttpRequest,
    state: web::Data<State>,
    faults: web::Data<Faults>,
    id: web::Path<String>,
    body: web::Bytes,
) -> Answer {
    if !basic_key_matches(&req, &[&state.secret_key, &state.public_key]) {
        return Err(unauthorized());
    }
    let request: wire::Attach = parse(&body)?;
    let view = attach_method(&state, &id, request)?;
    // The intent now waits for the customer: these faults lose only the answer.
    match faults.create() {
        CreateFault::ApprovedTimeout => {
            tokio::time::sleep(state.fault_timeout).await;
            Err(error(
                StatusCode::GATEWAY_TIMEOUT,
                "gateway_timeout",
                "Simulated timeout after the payment intent was attached.",
            ))
        }
        CreateFault::Approved503 => Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "service_unavailable",
            "Simulated unavailability after the payment intent was attached.",
        )),
        _ => Ok(data(&view)),
    }
}

/// Attaches the payment method: the intent then waits for the customer on the GCash page.
fn attach_method(state: &State, id: &str, request: wire::Attach) -> Result<wire::Intent, ApiError> {
    let return_url = request
        .return_url
        .filter(|u| reqwest::Url::parse(u).is_ok_and(|u| matches!(u.scheme(), "http" | "https")))
        .ok_or_else(|| {
            invalid(
                "parameter_required",
                "return_url",
                "return_url is required for gcash.",
            )
        })?;
    let mut store = state.store();
    let method_kind = store
        .methods
        .get(&request.payment_method)
        .map(|m| m.attributes.kind.clone())
        .ok_or_else(|| not_found("payment_method"))?;
    let redirect = format!("{}/_sandbox/gcash/{id}", state.base_url);
    let intent = store.intent_mut(id)?;
    if intent.attributes.status != "awaiting_payment_method" {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "payment_intent_not_attachable",
            "The payment intent cannot take a payment method in its current status.",
        ));
    }
    if !intent
        .attributes
        .payment_method_allowed
        .contains(&method_kind)
    {
        return Err(invalid(
            "parameter_invalid",
            "payment_method",
            "The payment method is not allowed for this payment intent.",
        ));
    }
    intent.attributes.status = "awaiting_next_action".to_owned();
    intent.attributes.last_payment_error = None;
    intent.attributes.next_action = Some(wire::NextAction {
        kind: "redirect".to_owned(),
        redirect: Some(wire::Redirect {
            url: redirect,
            return_url: Some(return_url),
        }),
    });
    intent.attributes.updated_at = Some(Utc::now().timestamp());
    Ok(intent.clone())
}

async fn get_payment(req: HttpRequest, state: web::Data<State>, id: web::Path<String>) -> Answer {
    state.authenticate(&req)?;
    let mut store = state.store();
    let payment = store.payment_mut(&id)?;
    Ok(data(&*payment))
}

async fn create_refund(req: HttpRequest, state: web::Data<State>, body: web::Bytes) -> Answer {
    state.authenticate(&req)?;
    let key = idempotency_key(&req, &body)?;
    let request: wire::CreateRefund = parse(&body)?;
    if !matches!(
        request.reason.as_str(),
        "duplicate" | "fraudulent" | "requested_by_customer" | "others"
    ) {
        return Err(invalid(
            "parameter_invalid",
            "reason",
            "reason must be duplicate, fraudulent, requested_by_customer or others.",
        ));
    }
    if request.amount < REFUND_MIN_CENTAVOS {
        return Err(invalid(
            "parameter_below_minimum",
            "amount",
            "amount cannot be less than 100.",
        ));
    }
    let mut store = state.store();
    if let Some(first) = store.replay(key.as_ref())? {
        return Ok(data(&first));
    }
    let livemode = state.livemode;
    let payment = store.payment_mut(&request.payment_id)?;
    if payment.attributes.status != "paid" {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "resource_failed_state",
            "Only paid payments can be refunded.",
        ));
    }
    if payment.attributes.refunds.len() >= REFUNDS_PER_PAYMENT_MAX {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "parameter_above_maximum",
            "Too many refunds for one payment.",
        ));
    }
    let refunded: i64 = payment
        .attributes
        .refunds
        .iter()
        .filter(|r| r.attributes.status != "failed")
        .map(|r| r.attributes.amount)
        .sum();
    if request.amount > payment.attributes.amount - refunded {
        return Err(invalid(
            "parameter_above_maximum",
            "amount",
            "The refund amount exceeds the amount left to refund.",
        ));
    }
    let refund = wire::Refund {
        id: random_id("ref_"),
        kind: "refund".to_owned(),
        attributes: wire::RefundAttributes {
            amount: request.amount,
            currency: payment.attributes.currency.clone(),
            payment_id: payment.id.clone(),
            reason: request.reason,
            status: "succeeded".to_owned(),
            notes: request.notes,
            livemode,
            metadata: request.metadata,
            created_at: Some(Utc::now().timestamp()),
        },
    };
    payment.attributes.refunds.push(refund.clone());
    store.remember(key, &refund);
    Ok(data(&refund))
}

async fn list_webhooks(req: HttpRequest, state: web::Data<State>) -> Answer {
    state.authenticate(&req)?;
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "data": [{
            "id": "hook_payledgeremulator0000000",
            "type": "webhook",
            "attributes": {
                "livemode": state.livemode,
                "events": ["payment.paid", "payment.failed"],
                "status": "enabled",
                "url": state.webhook_url,
            }
        }]
    })))
}

#[derive(Deserialize)]
struct IntentsQuery {
    payment_id: String,
}

/// Test control: the intents made for one of payledger's payments, found by the
/// `metadata.payment_id` they carry (PayMongo itself offers no such search).
async fn intents_of_payment(
    state: web::Data<State>,
    query: web::Query<IntentsQuery>,
) -> HttpResponse {
    let store = state.store();
    let mut found: Vec<&wire::Intent> = store
        .intents
        .values()
        .filter(|i| {
            i.attributes
                .metadata
                .as_ref()
                .and_then(|m| m.get("payment_id"))
                .and_then(|v| v.as_str())
                == Some(query.payment_id.as_str())
        })
        .collect();
    found.sort_by(|a, b| (a.attributes.created_at, &a.id).cmp(&(b.attributes.created_at, &b.id)));
    found.truncate(LISTED_INTENTS_MAX);
    HttpResponse::Ok().json(serde_json::json!({ "data": found }))
}

async fn gcash_page(id: web::Path<String>) -> HttpResponse {
    let base = format!("/_sandbox/gcash/{}", id.as_str());
    let authorize = format!("{base}/authorize");
    let fail = format!("{base}/fail");
    let expire = format!("{base}/expire");
    kit::customer_page(
        "GCash test payment (payledger emulator)",
        &[
            ("Authorize Test Payment", &authorize),
            ("Fail Test Payment", &fail),
            ("Let it expire", &expire),
        ],
    )
}

async fn customer_action(state: web::Data<State>, path: web::Path<(String, String)>) -> Answer {
    let (id, action) = path.into_inner();
    if !matches!(action.as_str(), "authorize" | "fail" | "expire") {
        return Err(not_found("action"));
    }
    let slot = state.outbox.try_reserve().ok_or_else(queue_full)?;
    let now = Utc::now().timestamp();
    let livemode = state.livemode;
    let mut store = state.store();
    let silent = store.silent.contains(&id);
    let intent = store.intent_mut(&id)?;
    if intent.attributes.status != "awaiting_next_action" {
        return Err(error(
            StatusCode::CONFLICT,
            "resource_failed_state",
            "The payment intent is not waiting for the customer.",
        ));
    }
    let a = &mut intent.attributes;
    a.next_action = None;
    a.updated_at = Some(now);
    if action == "expire" {
        a.status = "awaiting_payment_method".to_owned();
        let view = intent.clone();
        drop(store);
        drop(slot);
        return Ok(data(&view));
    }
    let paid = action == "authorize";
    let payment = wire::Payment {
        id: random_id("pay_"),
        kind: "payment".to_owned(),
        attributes: wire::PaymentAttributes {
            amount: a.amount,
            currency: a.currency.clone(),
            status: if paid { "paid" } else { "failed" }.to_owned(),
            description: a.description.clone(),
            livemode,
            payment_intent_id: Some(intent.id.clone()),
            metadata: a.metadata.clone(),
            refunds: Vec::new(),
            source: Some(serde_json::json!({ "id": random_id("src_"), "type": "gcash" })),
            failed_code: (!paid).then(|| FAILED_CODE.to_owned()),
            failed_message: (!paid).then(|| "The test payment was failed.".to_owned()),
            created_at: Some(now),
            paid_at: paid.then_some(now),
        },
    };
    if paid {
        a.status = "succeeded".to_owned();
    } else {
        a.status = "awaiting_payment_method".to_owned();
        a.last_payment_error = Some(serde_json::json!({
            "code": FAILED_CODE,
            "detail": "The test payment was failed.",
            "payment_id": payment.id,
        }));
    }
    a.payments.push(payment.clone());
    let view = intent.clone();
    store.payments.insert(payment.id.clone(), view.id.clone());
    drop(store);
    if silent {
        return Ok(data(&view));
    }

    let event = event(
        &payment,
        if paid {
            "payment.paid"
        } else {
            "payment.failed"
        },
        livemode,
        now,
    )?;
    if !state.outbox.send(slot, event, state.webhook_delay) {
        return Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "service_unavailable",
            "The emulator is stopping.",
        ));
    }
    Ok(data(&view))
}

/// A PayMongo event around `payment`, serialized once: every redelivery carries the same
/// bytes and event id (the signature is made per attempt).
fn event(
    payment: &wire::Payment,
    kind: &str,
    livemode: bool,
    now: i64,
) -> Result<Vec<u8>, ApiError> {
    let encode_failed = || {
        error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_server_error",
            "Cannot encode the event.",
        )
    };
    let event = wire::Envelope {
        data: wire::Event {
            id: random_id("evt_"),
            kind: "event".to_owned(),
            attributes: wire::EventAttributes {
                kind: kind.to_owned(),
                livemode,
                data: serde_json::to_value(payment).map_err(|_| encode_failed())?,
                previous_data: Some(serde_json::json!({})),
                created_at: Some(now),
                updated_at: Some(now),
            },
        },
    };
    serde_json::to_vec(&event).map_err(|_| encode_failed())
}
