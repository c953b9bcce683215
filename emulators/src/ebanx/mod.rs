//! EBANX Direct API emulation for GCash (Philippines, PHP), on its own socket, so the real
//! `EbanxProvider` and `EbanxWebhookVerifier` of `connectors` run against it unchanged.
//!
//! * Every `/ws` route is a JSON `POST` whose body carries `integration_key` (the configured
//!   one, compared in constant time). EBANX answers `{"status":"SUCCESS",..}` or
//!   `{"status":"ERROR","status_code","status_message"}`, the errors with HTTP `200` as EBANX
//!   documents them; messages never echo the key.
//! * One payment per `merchant_payment_code`, for good: a second create is `BP-DR-0`.
//! * Like EBANX's GCash flow, the outcome is the customer's: a create answers a `PE` payment
//!   and `redirect_url`, the GCash page where the customer acts (the customer actions below).
//! * Every status change is notified as EBANX does it: a form POST to `webhook_url`
//!   (`operation=payment_status_change&notification_type=update|refund&hash_codes=<hash>`)
//!   that names the payment and nothing else, unsigned, at least once with bounded retries
//!   through a bounded queue; `deliver_webhooks: false` loses them on purpose.
//! * Refunds go `RE` (requested) -> `PE` (EBANX acknowledged it, after the webhook delay,
//!   notified) -> `CO` (the customer got the money, notified), or `CA` (cancelled, notified).
//! * State lives in memory, bounded (`EmulatorOptions::records_max` payments, 100 refunds
//!   each), lost on stop.
//!
//! Codes marked (emulator) are the emulator's own where EBANX's reference names none that
//! could be read; the others are EBANX's.
//!
//! | route | answer |
//! |---|---|
//! | `POST /ws/direct` `{"operation":"request","payment":{"name","email","country":"ph","payment_type_code":"gcash","merchant_payment_code","order_number"?,"currency_code":"PHP","amount_total","redirect_url"?}}` | `{"payment":{.."status":"PE"..},"redirect_url":<GCash page>,"status":"SUCCESS"}`; `BP-DR-0` (the code exists), `BP-DR-2`..`BP-DR-16` (missing or too long fields), `BP-DR-4` (not PHP), `BP-DR-6`/`BP-DR-7` (under PHP 1.00, over PHP 500,000.00), `BP-DR-35` (not `gcash`), `BP-DR-36` (not `ph`), `EMU-2` (an amount that is not a decimal of at most 2 places); `BP-SA-1` no key, `DA-1` wrong key; the create fault |
//! | `POST /ws/query` `{"hash"}` or `{"merchant_payment_code"}` | `{"payment":{..,"refunds":[..]},"status":"SUCCESS"}`; `BP-QRY-1` neither given, `BP-QRY-2` no such payment (both emulator) |
//! | `POST /ws/refund` `{"operation":"request","hash"\|"merchant_payment_code","amount","description"?,"merchant_refund_code"?}` | `{"payment","refund":{"id","merchant_refund_code","status":"RE",..},"operation":"refund","status":"SUCCESS"}`; `BP-REF-CAN-2` no such payment, `BP-REF-7` not `CO`, `EMU-4` more than is left, `EMU-2` a bad amount |
//! | `POST /ws/refund` `{"operation":"cancel","refund_id"}` | a `RE`/`PE` refund -> `CA` (notified); `EMU-5` unknown, `EMU-6` no longer cancellable |
//! | `POST /ws/cancel` `{"hash"}` | a `PE`/`OP` payment -> `CA` (`transaction_status` `NOK`, notified); `BP-CAN-1` no hash, `EMU-7` no such payment, `EMU-8` not open |
//! | `POST /ws/merchantIntegrationProperties/get` | the merchant's settings (the health call) |
//!
//! Customer actions and test controls (no key):
//!
//! | route | effect |
//! |---|---|
//! | `GET /_sandbox/gcash/{hash}` | the page `redirect_url` points at (buttons for the actions below) |
//! | `POST /_sandbox/payments/{hash}/complete` | the customer pays: `CO` + notification |
//! | `POST /_sandbox/payments/{hash}/fail` | GCash turns it down: `CA` with `transaction_status` `NOK` "Not accepted" + notification |
//! | `POST /_sandbox/payments/{hash}/cancel` | the customer cancels in GCash: `CA` with `NOK` "Cancelled by the customer" + notification |
//! | `POST /_sandbox/payments/{hash}/expire` | the GCash window lapses: `CA`, no `transaction_status` + notification |
//! | `POST /_sandbox/refunds/{id}/confirm` | a `RE`/`PE` refund -> `CO` + `refund` notification |
//! | `POST /_sandbox/refunds/{id}/cancel` | a `RE`/`PE` refund -> `CA` + `refund` notification |
//! | `POST /_sandbox/notify` `{"hash_codes":[..],"notification_type"?}` | one notification naming these hashes (known or not, at most 20; always delivered): a redelivery, a batch, or a notification about a payment that did not change |
//! | `POST /_sandbox/faults` | `{"create":"none"\|"server_error"\|"timeout"\|"approved_timeout"\|"approved_503"\|"silent"}`, until changed: `POST /ws/direct` answers `500`, or holds its answer `fault_timeout` (30 s) then `504`, with nothing made; the lost-answer faults make the payment (it waits for the customer) and then hold the answer and `504`, or answer `503`; `silent` answers normally but no notification is ever sent for that payment |
//!
//! Customer actions answer `{"payment":..}` as it now is; `404` for an unknown hash or
//! refund, `409` unless it is still open, `503` if the notification queue is full.

pub mod wire;

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::TcpListener;
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse, ResponseError};
use chrono::Utc;
use rand::Rng;
use rust_decimal::Decimal;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::value::RawValue;
use subtle::ConstantTimeEq;

pub use crate::kit::EmulatorOptions;
use crate::kit::{self, invalid_input, CreateFault, Faults};
use crate::outbox::{self, Attempt, OutboxOptions, Slot};
use crate::server;
pub use crate::server::REQUEST_BODY_MAX_BYTES;

/// EBANX's smallest GCash payment here: PHP 1.00 (the emulator's assumption).
pub const AMOUNT_MIN: Decimal = Decimal::from_parts(100, 0, 0, false, 2);
/// The largest: PHP 500,000.00 (the emulator's assumption).
pub const AMOUNT_MAX: Decimal = Decimal::from_parts(50_000_000, 0, 0, false, 2);
pub const REFUNDS_PER_PAYMENT_MAX: usize = 100;
/// Most hashes `POST /_sandbox/notify` names in one notification.
pub const NOTIFY_HASHES_MAX: usize = 20;
/// `transaction_status.description` of each way a payment is turned down.
pub const NOT_ACCEPTED: &str = "Not accepted";
pub const CANCELLED_BY_CUSTOMER: &str = "Cancelled by the customer";
pub const CANCELLED_BY_MERCHANT: &str = "Cancelled by the merchant";
const TEXT_LEN_MAX: usize = 40;
const NAME_LEN_MAX: usize = 100;
const EMAIL_LEN_MAX: usize = 100;
const DATE_TIME: &str = "%Y-%m-%d %H:%M:%S";

#[derive(Debug, Clone)]
pub struct EbanxSandboxConfig {
    /// Every `/ws` call must carry it as `integration_key`.
    pub integration_key: SecretString,
    /// Where notifications are POSTed (payledger's `/v1/webhooks/ebanx`).
    pub webhook_url: String,
    /// Delay between a change and its notification's first delivery (and a refund's move to
    /// `PE`).
    pub webhook_delay_ms: u64,
    /// `false`: notifications are "lost" (for sync and reconciler tests).
    pub deliver_webhooks: bool,
}

/// A running EBANX emulator; its `base_url` is `EBANX_BASE_URL` for the client.
pub type EbanxSandboxHandle = crate::EmulatorHandle;

pub async fn start(
    listener: TcpListener,
    config: EbanxSandboxConfig,
) -> io::Result<EbanxSandboxHandle> {
    start_with_options(listener, config, EmulatorOptions::default()).await
}

pub async fn start_with_options(
    listener: TcpListener,
    config: EbanxSandboxConfig,
    options: EmulatorOptions,
) -> io::Result<EbanxSandboxHandle> {
    if config.integration_key.expose_secret().is_empty() {
        return Err(invalid_input(
            "ebanx emulator integration_key must not be empty",
        ));
    }
    let addr = listener.local_addr()?;
    let store = Arc::new(Mutex::new(Store {
        payments: HashMap::new(),
        by_code: HashMap::new(),
        refunds: HashMap::new(),
        next_refund: 20_000,
        capacity: options.records_max.max(1),
    }));
    let name = "ebanx emulator";
    let (queue, dispatcher) = outbox::start(
        outbox::webhook_url(name, &config.webhook_url)?,
        Notifier {
            store: Arc::clone(&store),
            deliver: config.deliver_webhooks,
        },
        &OutboxOptions {
            name,
            capacity: options.webhook_queue_capacity,
            retry: options.webhook_retry,
            timeout: options.webhook_timeout,
            concurrency: options.webhook_concurrency,
        },
    )?;
    let state = web::Data::new(State {
        integration_key: config.integration_key.expose_secret().to_owned(),
        base_url: format!("http://{addr}"),
        webhook_url: config.webhook_url,
        store,
        notices: Notices {
            queue,
            deliver: config.deliver_webhooks,
        },
        webhook_delay: Duration::from_millis(config.webhook_delay_ms),
        fault_timeout: options.fault_timeout,
    });
    let faults = web::Data::new(Faults::default());
    server::start(
        name,
        listener,
        "",
        options.server(),
        move |cfg: &mut web::ServiceConfig| {
            cfg.app_data(state.clone())
                .app_data(faults.clone())
                .service(
                    web::scope("/ws")
                        .route("/direct", web::post().to(direct))
                        .route("/query", web::post().to(query))
                        .route("/refund", web::post().to(refund))
                        .route("/cancel", web::post().to(cancel))
                        .route(
                            "/merchantIntegrationProperties/get",
                            web::post().to(integration_properties),
                        ),
                )
                .route("/_sandbox/faults", web::post().to(kit::set_faults))
                .route("/_sandbox/notify", web::post().to(notify))
                .route("/_sandbox/gcash/{hash}", web::get().to(gcash_page))
                .route(
                    "/_sandbox/payments/{hash}/{action}",
                    web::post().to(customer_action),
                )
                .route(
                    "/_sandbox/refunds/{id}/{action}",
                    web::post().to(refund_action),
                );
            cfg.default_service(web::to(|| async {
                ApiError::new(StatusCode::NOT_FOUND, "EMU-404", "No such route.").error_response()
            }));
        },
        vec![dispatcher],
    )
}

struct State {
    integration_key: String,
    base_url: String,
    webhook_url: String,
    store: Arc<Mutex<Store>>,
    notices: Notices,
    webhook_delay: Duration,
    fault_timeout: Duration,
}

impl State {
    fn store(&self) -> MutexGuard<'_, Store> {
        lock(&self.store)
    }

    /// The body's `integration_key`, checked, then the body as `T`.
    fn authenticated<T: for<'de> Deserialize<'de>>(&self, body: &[u8]) -> Result<T, ApiError> {
        #[derive(Deserialize)]
        struct Key {
            #[serde(default)]
            integration_key: Option<String>,
        }
        let key = serde_json::from_slice::<Key>(body)
            .map_err(|_| {
                refused(
                    "EMU-0",
                    "The request body is not JSON of the expected shape.",
                )
            })?
            .integration_key
            .filter(|k| !k.is_empty())
            .ok_or_else(|| refused("BP-SA-1", "Parameter integration_key not found"))?;
        if !bool::from(key.as_bytes().ct_eq(self.integration_key.as_bytes())) {
            return Err(refused("DA-1", "Invalid integration key"));
        }
        serde_json::from_slice::<T>(body).map_err(|_| {
            refused(
                "EMU-0",
                "The request body is not JSON of the expected shape.",
            )
        })
    }

    fn reserve(&self) -> Result<Slot, ApiError> {
        self.notices.queue.try_reserve().ok_or_else(|| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "EMU-503",
                "The notification queue is full, retry later.",
            )
        })
    }

    /// Notifies `hashes` (`kind`: `update` or `refund`) after the webhook delay.
    fn notify(&self, slot: Slot, kind: &str, hashes: Vec<String>) -> Result<(), ApiError> {
        let job = Job::Notice {
            kind: kind.to_owned(),
            hashes,
        };
        if self.notices.send(slot, job, self.webhook_delay) {
            Ok(())
        } else {
            Err(stopping())
        }
    }
}

fn lock(store: &Mutex<Store>) -> MutexGuard<'_, Store> {
    store.lock().unwrap_or_else(PoisonError::into_inner)
}

struct Store {
    payments: HashMap<String, Record>,
    /// `merchant_payment_code` -> hash: EBANX keeps one payment per code.
    by_code: HashMap<String, String>,
    /// Refund id -> its payment's hash.
    refunds: HashMap<String, String>,
    next_refund: u64,
    capacity: usize,
}

struct Record {
    payment: wire::Payment,
    amount: Decimal,
    /// Made under the `silent` fault: never notified.
    silent: bool,
}

impl Store {
    fn find(&mut self, hash: Option<&str>, code: Option<&str>) -> Option<&mut Record> {
        let hash = match (hash, code) {
            (Some(hash), _) => hash.to_owned(),
            (None, Some(code)) => self.by_code.get(code)?.clone(),
            (None, None) => return None,
        };
        self.payments.get_mut(&hash)
    }

    fn refund_mut(&mut self, id: &str) -> Option<(&mut Record, usize)> {
        let hash = self.refunds.get(id)?.clone();
        let record = self.payments.get_mut(&hash)?;
        let index = record.payment.refunds.iter().position(|r| r.id == id)?;
        Some((record, index))
    }

    /// Moves a requested refund to `PE` (EBANX acknowledged it); its payment's hash when it
    /// moved.
    fn acknowledge_refund(&mut self, id: &str) -> Option<String> {
        let (record, index) = self.refund_mut(id)?;
        let refund = &mut record.payment.refunds[index];
        if refund.status != "RE" {
            return None;
        }
        refund.status = "PE";
        refund.pending_date = Some(now());
        Some(record.payment.hash.clone())
    }
}

/// What the notification queue does when due.
enum Job {
    /// Names payments (`kind`: `update`, `refund`, or a test's own).
    Notice { kind: String, hashes: Vec<String> },
    /// EBANX acknowledges a requested refund: `PE`, notified.
    AcknowledgeRefund { refund_id: String },
}

struct Notifier {
    store: Arc<Mutex<Store>>,
    deliver: bool,
}

impl outbox::Notifier for Notifier {
    type Job = Job;
    type Ready = Vec<u8>;

    fn due(&self, job: Job) -> Option<Vec<u8>> {
        match job {
            Job::Notice { kind, hashes } => form(&kind, &hashes),
            Job::AcknowledgeRefund { refund_id } => {
                let hash = lock(&self.store).acknowledge_refund(&refund_id)?;
                if !self.deliver {
                    return None;
                }
                form("refund", &[hash])
            }
        }
    }

    fn attempt(&self, body: &Vec<u8>, _: u32) -> io::Result<Attempt> {
        Ok(Attempt {
            content_type: "application/x-www-form-urlencoded",
            headers: Vec::new(),
            body: body.clone(),
        })
    }

    fn label(&self, body: &Vec<u8>) -> String {
        String::from_utf8_lossy(body).chars().take(200).collect()
    }
}

/// The notification form, as EBANX posts it.
fn form(kind: &str, hashes: &[String]) -> Option<Vec<u8>> {
    serde_urlencoded::to_string(wire::Notification {
        operation: "payment_status_change",
        notification_type: kind,
        hash_codes: hashes.join(","),
    })
    .ok()
    .map(String::into_bytes)
}

/// The producer side of the notification queue.
#[derive(Clone)]
struct Notices {
    queue: outbox::Outbox<Job>,
    deliver: bool,
}

impl Notices {
    /// Queues `job` after `delay`; with delivery switched off a notice is "lost" on purpose
    /// (a refund still moves on). Fails only once the dispatcher stopped.
    fn send(&self, slot: Slot, job: Job, delay: Duration) -> bool {
        if !self.deliver && matches!(job, Job::Notice { .. }) {
            return true;
        }
        self.queue.schedule(slot, job, delay)
    }

    /// Queues `job` whatever the delivery switch says (a test's explicit notification).
    fn force(&self, slot: Slot, job: Job, delay: Duration) -> bool {
        self.queue.schedule(slot, job, delay)
    }
}

/// An answer in EBANX's error shape. Messages never echo the key.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: &str) -> ApiError {
        ApiError {
            status,
            code,
            message: message.to_owned(),
        }
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
        HttpResponse::build(self.status).json(serde_json::json!({
            "status": wire::ERROR,
            "status_code": self.code,
            "status_message": self.message,
        }))
    }
}

/// EBANX's usual refusal: HTTP `200` with `status: ERROR`.
fn refused(code: &'static str, message: &str) -> ApiError {
    ApiError::new(StatusCode::OK, code, message)
}

fn stopping() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "EMU-503",
        "The emulator is stopping.",
    )
}

type Answer = Result<HttpResponse, ApiError>;

fn success(mut body: serde_json::Value) -> HttpResponse {
    body["status"] = serde_json::json!(wire::SUCCESS);
    HttpResponse::Ok().json(body)
}

fn now() -> String {
    Utc::now().format(DATE_TIME).to_string()
}

/// A decimal of at most 2 places, as EBANX reads amounts (a JSON number or a string).
fn decimal_of(raw: &RawValue) -> Option<Decimal> {
    let text = raw.get();
    let text = if text.starts_with('"') {
        serde_json::from_str::<String>(text).ok()?
    } else {
        text.to_owned()
    };
    let (whole, fraction) = text.split_once('.').unwrap_or((&text, ""));
    let digits = |s: &str, max: usize| s.len() <= max && s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !digits(whole, 12) || !digits(fraction, 2) || text.ends_with('.') {
        return None;
    }
    Decimal::from_str(&text).ok()
}

/// EBANX writes amounts as strings with two decimals.
fn text_of(amount: Decimal) -> String {
    let mut amount = amount;
    amount.rescale(2);
    amount.to_string()
}

fn random_hash() -> String {
    hex::encode(rand::thread_rng().gen::<[u8; 24]>())
}

fn random_pin() -> String {
    format!("{:09}", rand::thread_rng().gen_range(0..1_000_000_000u32))
}

fn required<'a>(
    value: &'a Option<String>,
    code: &'static str,
    field: &str,
) -> Result<&'a str, ApiError> {
    value
        .as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| refused(code, &format!("Field payment.{field} is required")))
}

fn at_most(value: &str, max: usize, code: &'static str, field: &str) -> Result<(), ApiError> {
    if value.chars().count() > max {
        return Err(refused(
            code,
            &format!("Parameter {field} can have {max} characters maximum"),
        ));
    }
    Ok(())
}

/// A create, checked as EBANX checks it; the payment it makes, `PE`.
fn new_payment(request: wire::Direct) -> Result<Record, ApiError> {
    if request.operation.as_deref() != Some("request") {
        return Err(refused("EMU-1", "Parameter operation must be request"));
    }
    let payment = request
        .payment
        .ok_or_else(|| refused("BP-DR-2", "Field payment is required"))?;
    let currency = required(&payment.currency_code, "BP-DR-3", "currency_code")?;
    if currency != "PHP" {
        return Err(refused(
            "BP-DR-4",
            "Currency is not active in the system for this payment type",
        ));
    }
    let raw_amount = payment
        .amount_total
        .as_deref()
        .ok_or_else(|| refused("BP-DR-5", "Field payment.amount_total is required"))?;
    let amount = decimal_of(raw_amount)
        .ok_or_else(|| refused("EMU-2", "Parameter amount_total is not a valid amount"))?;
    if amount < AMOUNT_MIN {
        return Err(refused(
            "BP-DR-6",
            "Amount reported is less than the minimum amount",
        ));
    }
    if amount > AMOUNT_MAX {
        return Err(refused("BP-DR-7", "Amount must be less than 500000.00"));
    }
    let code = required(
        &payment.merchant_payment_code,
        "BP-DR-9",
        "merchant_payment_code",
    )?;
    at_most(code, TEXT_LEN_MAX, "BP-DR-10", "merchant_payment_code")?;
    if let Some(order) = payment.order_number.as_deref() {
        at_most(order, TEXT_LEN_MAX, "BP-DR-11", "payment.order_number")?;
    }
    let name = required(&payment.name, "BP-DR-13", "name")?;
    at_most(name, NAME_LEN_MAX, "BP-DR-14", "payment.name")?;
    let email = required(&payment.email, "BP-DR-15", "email")?;
    at_most(email, EMAIL_LEN_MAX, "BP-DR-16", "payment.email")?;
    if payment.payment_type_code.as_deref() != Some("gcash") {
        return Err(refused("BP-DR-35", "Invalid payment_type_code"));
    }
    if payment
        .country
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
        != Some("ph")
    {
        return Err(refused(
            "BP-DR-36",
            "Payment type is not active for this country",
        ));
    }
    if let Some(url) = payment.redirect_url.as_deref() {
        if !reqwest::Url::parse(url).is_ok_and(|u| matches!(u.scheme(), "http" | "https")) {
            return Err(refused("EMU-3", "Parameter redirect_url is not a URL"));
        }
    }
    let opened = Utc::now();
    let text = text_of(amount);
    Ok(Record {
        payment: wire::Payment {
            hash: random_hash(),
            pin: random_pin(),
            country: "ph".to_owned(),
            merchant_payment_code: code.to_owned(),
            order_number: payment.order_number.clone(),
            status: "PE",
            status_date: None,
            open_date: opened.format(DATE_TIME).to_string(),
            confirm_date: None,
            transfer_date: None,
            amount_br: text.clone(),
            amount_ext: text,
            amount_iof: "0.00".to_owned(),
            currency_rate: "1.0000".to_owned(),
            currency_ext: "PHP".to_owned(),
            due_date: (opened + chrono::Duration::days(1))
                .format("%Y-%m-%d")
                .to_string(),
            instalments: "1".to_owned(),
            payment_type_code: "gcash".to_owned(),
            transaction_status: None,
            pre_approved: false,
            capture_available: false,
            refunds: Vec::new(),
            customer: wire::Customer {
                document: None,
                email: email.to_owned(),
                name: name.to_owned(),
                birth_date: None,
            },
        },
        amount,
        silent: false,
    })
}

async fn direct(state: web::Data<State>, faults: web::Data<Faults>, body: web::Bytes) -> Answer {
    let fault = faults.create();
    match fault {
        CreateFault::ServerError => {
            return Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "EMU-500",
                "Simulated internal error.",
            ))
        }
        CreateFault::Timeout => {
            tokio::time::sleep(state.fault_timeout).await;
            return Err(ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "EMU-504",
                "Simulated timeout.",
            ));
        }
        CreateFault::None
        | CreateFault::ApprovedTimeout
        | CreateFault::Approved503
        | CreateFault::Silent => {}
    }
    let request: wire::Direct = state.authenticated(&body)?;
    let mut record = new_payment(request)?;
    record.silent = fault == CreateFault::Silent;
    let redirect = format!("{}/_sandbox/gcash/{}", state.base_url, record.payment.hash);
    let view = {
        let mut store = state.store();
        let code = record.payment.merchant_payment_code.clone();
        if let Some(first) = store.by_code.get(&code).and_then(|h| store.payments.get(h)) {
            return Err(refused(
                "BP-DR-0",
                &format!(
                    "Payment already exists with merchant_payment_code: {code} (created on {}, status is {})",
                    first.payment.open_date, first.payment.status
                ),
            ));
        }
        if store.payments.len() >= store.capacity {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "EMU-503",
                "The emulator holds too many payments.",
            ));
        }
        let view = record.payment.clone();
        store.by_code.insert(code, view.hash.clone());
        store.payments.insert(view.hash.clone(), record);
        view
    };
    // The payment now waits for the customer: these faults lose only the answer.
    match fault {
        CreateFault::ApprovedTimeout => {
            tokio::time::sleep(state.fault_timeout).await;
            Err(ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "EMU-504",
                "Simulated timeout after the payment was made.",
            ))
        }
        CreateFault::Approved503 => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "EMU-503",
            "Simulated unavailability after the payment was made.",
        )),
        _ => Ok(success(serde_json::json!({
            "payment": view,
            "redirect_url": redirect,
        }))),
    }
}

async fn query(state: web::Data<State>, body: web::Bytes) -> Answer {
    let request: wire::Query = state.authenticated(&body)?;
    if request.hash.is_none() && request.merchant_payment_code.is_none() {
        return Err(refused(
            "BP-QRY-1",
            "Parameters hash or merchant_payment_code not informed",
        ));
    }
    let mut store = state.store();
    let record = store
        .find(
            request.hash.as_deref(),
            request.merchant_payment_code.as_deref(),
        )
        .ok_or_else(|| refused("BP-QRY-2", "Payment not found"))?;
    Ok(success(serde_json::json!({ "payment": record.payment })))
}

async fn refund(state: web::Data<State>, body: web::Bytes) -> Answer {
    let request: wire::RefundRequest = state.authenticated(&body)?;
    match request.operation.as_deref() {
        Some("request") => request_refund(&state, request),
        Some("cancel") => cancel_refund(&state, request),
        _ => Err(refused(
            "EMU-1",
            "Parameter operation must be request or cancel",
        )),
    }
}

fn request_refund(state: &State, request: wire::RefundRequest) -> Answer {
    let amount = request
        .amount
        .as_deref()
        .and_then(decimal_of)
        .filter(|a| *a > Decimal::ZERO)
        .ok_or_else(|| refused("EMU-2", "Parameter amount is not a valid amount"))?;
    if let Some(code) = request.merchant_refund_code.as_deref() {
        at_most(code, TEXT_LEN_MAX, "EMU-9", "merchant_refund_code")?;
    }
    let slot = state.reserve()?;
    let mut store = state.store();
    let id = store.next_refund.to_string();
    let record = store
        .find(
            request.hash.as_deref(),
            request.merchant_payment_code.as_deref(),
        )
        .ok_or_else(|| refused("BP-REF-CAN-2", "Payment not found with this hash"))?;
    if record.payment.status != "CO" {
        return Err(refused(
            "BP-REF-7",
            "The payment cannot be refunded because it is not confirmed",
        ));
    }
    if record.payment.refunds.len() >= REFUNDS_PER_PAYMENT_MAX {
        return Err(refused("EMU-4", "Too many refunds for this payment"));
    }
    let refunded: Decimal = record
        .payment
        .refunds
        .iter()
        .filter(|r| r.status != "CA")
        .filter_map(|r| Decimal::from_str(&r.amount_ext).ok())
        .sum();
    if amount > record.amount - refunded {
        return Err(refused(
            "EMU-4",
            "The amount exceeds what is left to refund",
        ));
    }
    let refund = wire::Refund {
        id: id.clone(),
        merchant_refund_code: request.merchant_refund_code.clone(),
        status: "RE",
        request_date: now(),
        pending_date: None,
        confirm_date: None,
        cancel_date: None,
        amount_ext: text_of(amount),
        description: request.description.clone().unwrap_or_default(),
    };
    record.payment.refunds.push(refund.clone());
    let hash = record.payment.hash.clone();
    let view = record.payment.clone();
    store.next_refund += 1;
    store.refunds.insert(id.clone(), hash);
    drop(store);
    let job = Job::AcknowledgeRefund { refund_id: id };
    if !state.notices.force(slot, job, state.webhook_delay) {
        return Err(stopping());
    }
    Ok(success(serde_json::json!({
        "payment": view,
        "refund": refund,
        "operation": "refund",
    })))
}

fn cancel_refund(state: &State, request: wire::RefundRequest) -> Answer {
    let id = request
        .refund_id
        .ok_or_else(|| refused("EMU-5", "Parameter refund_id not informed"))?;
    let slot = state.reserve()?;
    let (view, refund) = end_refund(state, &id, "CA")?;
    state.notify(slot, "refund", vec![view.hash.clone()])?;
    Ok(success(serde_json::json!({
        "payment": view,
        "refund": refund,
        "operation": "refund_cancel",
    })))
}

/// Moves an open refund (`RE`/`PE`) to `CO` or `CA`.
fn end_refund(
    state: &State,
    id: &str,
    to: &'static str,
) -> Result<(wire::Payment, wire::Refund), ApiError> {
    let mut store = state.store();
    let (record, index) = store
        .refund_mut(id)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "EMU-5", "Refund not found"))?;
    let refund = &mut record.payment.refunds[index];
    if !matches!(refund.status, "RE" | "PE") {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "EMU-6",
            "The refund is no longer open",
        ));
    }
    refund.status = to;
    if to == "CO" {
        refund.confirm_date = Some(now());
    } else {
        refund.cancel_date = Some(now());
    }
    let refund = refund.clone();
    Ok((record.payment.clone(), refund))
}

async fn cancel(state: web::Data<State>, body: web::Bytes) -> Answer {
    let request: wire::Cancel = state.authenticated(&body)?;
    let hash = request
        .hash
        .ok_or_else(|| refused("BP-CAN-1", "Parameter hash not informed"))?;
    let slot = state.reserve()?;
    let mut store = state.store();
    let record = store
        .payments
        .get_mut(&hash)
        .ok_or_else(|| refused("EMU-7", "Payment not found"))?;
    if !matches!(record.payment.status, "PE" | "OP") {
        return Err(refused(
            "EMU-8",
            "The payment cannot be cancelled in its status",
        ));
    }
    decide(record, "CA", Some(CANCELLED_BY_MERCHANT));
    let (view, silent) = (record.payment.clone(), record.silent);
    drop(store);
    if !silent {
        state.notify(slot, "update", vec![view.hash.clone()])?;
    }
    Ok(success(serde_json::json!({
        "payment": view,
        "operation": "cancel",
    })))
}

async fn integration_properties(state: web::Data<State>, body: web::Bytes) -> Answer {
    let _: serde_json::Value = state.authenticated(&body)?;
    Ok(success(serde_json::json!({
        "success": true,
        "resource": "merchantIntegrationProperties",
        "operation": "get",
        "body": {
            "image": "",
            "url_response": "",
            "receipt_email": null,
            "url_status_change_notification": state.webhook_url,
        },
    })))
}

/// Decides an open payment: `CO`, or `CA` (turned down when `refusal` says why).
fn decide(record: &mut Record, status: &'static str, refusal: Option<&'static str>) {
    let at = now();
    let p = &mut record.payment;
    p.status = status;
    p.status_date = Some(at.clone());
    if status == "CO" {
        p.confirm_date = Some(at);
        p.pre_approved = true;
        p.transaction_status = Some(wire::TransactionStatus {
            acquirer: "EBANX",
            code: "OK",
            description: "Accepted",
        });
    } else {
        p.transaction_status = refusal.map(|description| wire::TransactionStatus {
            acquirer: "EBANX",
            code: "NOK",
            description,
        });
    }
}

async fn gcash_page(hash: web::Path<String>) -> HttpResponse {
    let base = format!("/_sandbox/payments/{}", hash.as_str());
    let actions = ["complete", "fail", "cancel", "expire"].map(|a| format!("{base}/{a}"));
    kit::customer_page(
        "GCash through EBANX (payledger emulator)",
        &[
            ("Confirm payment", &actions[0]),
            ("Not accepted", &actions[1]),
            ("Cancel in GCash", &actions[2]),
            ("Let it expire", &actions[3]),
        ],
    )
}

async fn customer_action(state: web::Data<State>, path: web::Path<(String, String)>) -> Answer {
    let (hash, action) = path.into_inner();
    let (status, refusal) = match action.as_str() {
        "complete" => ("CO", None),
        "fail" => ("CA", Some(NOT_ACCEPTED)),
        "cancel" => ("CA", Some(CANCELLED_BY_CUSTOMER)),
        "expire" => ("CA", None),
        _ => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "EMU-404",
                "No such action.",
            ))
        }
    };
    let slot = state.reserve()?;
    let mut store = state.store();
    let record = store
        .payments
        .get_mut(&hash)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "EMU-7", "Payment not found"))?;
    if !matches!(record.payment.status, "PE" | "OP") {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "EMU-8",
            "The payment is not waiting for the customer",
        ));
    }
    decide(record, status, refusal);
    let (view, silent) = (record.payment.clone(), record.silent);
    drop(store);
    if !silent {
        state.notify(slot, "update", vec![view.hash.clone()])?;
    }
    Ok(success(serde_json::json!({ "payment": view })))
}

async fn refund_action(state: web::Data<State>, path: web::Path<(String, String)>) -> Answer {
    let (id, action) = path.into_inner();
    let to = match action.as_str() {
        "confirm" => "CO",
        "cancel" => "CA",
        _ => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "EMU-404",
                "No such action.",
            ))
        }
    };
    let slot = state.reserve()?;
    let (view, refund) = end_refund(&state, &id, to)?;
    state.notify(slot, "refund", vec![view.hash.clone()])?;
    Ok(success(
        serde_json::json!({ "payment": view, "refund": refund }),
    ))
}

/// Test control: EBANX sends one notification naming `hash_codes`, whatever they are.
async fn notify(state: web::Data<State>, body: web::Bytes) -> Answer {
    let bad = || {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "EMU-400",
            "expected {\"hash_codes\":[..at most 20 alphanumeric codes],\"notification_type\"?}",
        )
    };
    let request: wire::Notify = serde_json::from_slice(&body).map_err(|_| bad())?;
    let kind = request
        .notification_type
        .unwrap_or_else(|| "update".to_owned());
    let fits = |s: &str, max: usize, ok: fn(u8) -> bool| {
        !s.is_empty() && s.len() <= max && s.bytes().all(ok)
    };
    if request.hash_codes.is_empty()
        || request.hash_codes.len() > NOTIFY_HASHES_MAX
        || !request
            .hash_codes
            .iter()
            .all(|h| fits(h, 64, |b| b.is_ascii_alphanumeric()))
        || !fits(&kind, 32, |b| b.is_ascii_lowercase() || b == b'_')
    {
        return Err(bad());
    }
    let slot = state.reserve()?;
    let job = Job::Notice {
        kind,
        hashes: request.hash_codes,
    };
    if !state.notices.force(slot, job, state.webhook_delay) {
        return Err(stopping());
    }
    Ok(success(serde_json::json!({})))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.to_owned()).unwrap()
    }

    #[test]
    fn amounts_are_read_as_decimals_of_two_places_at_most() {
        let d = |s: &str| Decimal::from_str(s).unwrap();
        assert_eq!(decimal_of(&raw("1234.60")), Some(d("1234.60")));
        assert_eq!(decimal_of(&raw("\"20.5\"")), Some(d("20.5")));
        assert_eq!(decimal_of(&raw("7")), Some(d("7")));
        for bad in [
            "1.001",
            "-5",
            "1e3",
            "\"\"",
            "\"1.\"",
            "\".5\"",
            "true",
            "1234567890123",
        ] {
            assert_eq!(decimal_of(&raw(bad)), None, "{bad}");
        }
        assert_eq!(text_of(d("20.5")), "20.50");
        assert_eq!(AMOUNT_MIN, d("1.00"));
        assert_eq!(AMOUNT_MAX, d("500000.00"));
    }

    #[test]
    fn notifications_name_payments_and_nothing_else() {
        let body = form("update", &["ab".into(), "cd".into()]).unwrap();
        assert_eq!(
            String::from_utf8(body).unwrap(),
            "operation=payment_status_change&notification_type=update&hash_codes=ab%2Ccd"
        );
        let hash = random_hash();
        assert_eq!(hash.len(), 48);
        assert!(hash
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert_eq!(random_pin().len(), 9);
    }
}
