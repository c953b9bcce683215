//! Maya API emulation: Maya Checkout, Maya Vault (saved cards, see `vault`) and the Payments
//! API, on its own socket, so the real `MayaProvider` and `MayaWebhookVerifier` of `commands`
//! run against it unchanged.
//!
//! * `Authorization: Basic base64("<key>:")`: the **public** key for creating checkouts and
//!   payment tokens, the **secret** key for everything else under `/payments` (else `401`,
//!   Maya's `K003`).
//! * Like Maya's sandbox, the outcome is decided by the customer on the checkout page: here,
//!   by the customer actions below. A create answers a pending checkout; the outcome arrives
//!   later as an (unsigned) webhook carrying the payment object, POSTed to `webhook_url` from
//!   this process (so from 127.0.0.1 in tests), at least once with bounded retries through a
//!   bounded queue. `deliver_webhooks: false` loses them on purpose.
//! * A vaulted card is linked `PREVERIFICATION` and charged only once the customer verified it
//!   on the page its `verificationUrl` names; its payments are ordinary payments, decided at
//!   once. Test cards: [`TEST_CARD_VISA`] and [`TEST_CARD_MASTERCARD`] (Maya's sandbox cards)
//!   are approved, [`TEST_CARD_DECLINED`] is declined when charged, and the verification of
//!   [`TEST_CARD_VERIFICATION_FAILS`] fails; any other valid number is approved.
//! * State lives in memory, bounded (`EmulatorOptions::records_max` payments, and as many
//!   payment tokens, customers and cards), lost on stop.
//!
//! | route | answer |
//! |---|---|
//! | `POST /checkout/v1/checkouts` (public key) | `200 {"checkoutId","redirectUrl"}`; `400` code `2553` for a non-PHP currency, a bad amount (Maya's own error data) or a missing reference; `401`; the create fault |
//! | `GET /payments/v1/payments/{id}` | the payment (`status`, `amount`, `currency`, `requestReferenceNumber`, ...); `404` |
//! | `GET /payments/v1/payment-rrns/{rrn}` | every payment with that reference; `404` when none |
//! | `POST /payments/v1/payments/{id}/capture` | `AUTHORIZED`/`CAPTURED` only: a new capture payment (`PAYMENT_SUCCESS`, its own webhook); the authorization becomes `CAPTURED` (`DONE` when final or fully captured) |
//! | `POST /payments/v1/payments/{id}/voids` | `AUTHORIZED` (not captured) or `PAYMENT_SUCCESS` -> `VOIDED`; else `400` (also when already voided, as Maya does) |
//! | `POST /payments/v1/payments/{id}/refunds` | `PAYMENT_SUCCESS`/`REFUNDED` payments (captures included), up to what is left -> `REFUNDED` |
//! | `GET /payments/v1/payments/{id}/refunds` | the refunds of a payment |
//! | `GET /payments/v1/webhooks` | the registered webhooks (the health call) |
//! | `POST /payments/v1/payment-tokens` (public key) `{"card":{"number","expMonth","expYear","cvc"}}` | `200 {"paymentTokenId","state":"AVAILABLE","createdAt","updatedAt","issuer"}`; `400` `2553` for a number that fails Luhn or is of another brand than Visa/Mastercard/JCB/Amex, a bad month, year or CVC; `400` `PY0002` for an expired card |
//! | `POST /payments/v1/customers` `{"firstName"?,"lastName"?,"contact":{"email"}?,"metadata"?}` | `200` the customer with its `id` (a UUID) |
//! | `GET`, `DELETE /payments/v1/customers/{id}` | the customer; `DELETE` removes its cards too; `404` `PY0023` |
//! | `POST /payments/v1/customers/{id}/cards` `{"paymentTokenId","isDefault"?,"redirectUrl"?,"requestReferenceNumber"?}` | `200 {"cardTokenId","cardType","maskedPan","state":"PREVERIFICATION","default","verificationUrl","createdAt","updatedAt"}`; `400` `PY0008` unknown token, `PY0007` token already linked; `404` `PY0023` |
//! | `GET /payments/v1/customers/{id}/cards` | the customer's cards (no `verificationUrl`) |
//! | `GET`, `DELETE /payments/v1/customers/{id}/cards/{cardTokenId}` | the card (with its `state`); `DELETE` removes it; `404` `PY0026` for a card the customer does not hold (or no longer) |
//! | `POST /payments/v1/customers/{id}/cards/{cardTokenId}/payments` `{"totalAmount":{"amount","currency"},"requestReferenceNumber","redirectUrl"?,"authorizationType"?,"metadata"?}` | a payment, decided at once: `PAYMENT_SUCCESS`, `AUTHORIZED` with an `authorizationType`, `PAYMENT_FAILED` (`errorCode` `PY0119`) for the declined test card; webhook of that name; `400` `2553` for a card not `VERIFIED` or a bad body; `404` for a removed card; the create fault |
//!
//! Customer actions and test controls (no auth):
//!
//! | route | effect |
//! |---|---|
//! | `GET /_sandbox/checkouts/{id}` | the page `redirectUrl` points at (buttons for the actions below) |
//! | `POST /_sandbox/checkouts/{id}/complete` | pays: `PAYMENT_SUCCESS`, or `AUTHORIZED` when the checkout asked for an `authorizationType`; webhook of that name |
//! | `POST /_sandbox/checkouts/{id}/fail` | `PAYMENT_FAILED` + webhook |
//! | `POST /_sandbox/checkouts/{id}/expire` | `PAYMENT_EXPIRED` + webhook |
//! | `POST /_sandbox/checkouts/{id}/cancel` | `PAYMENT_CANCELLED` + webhook |
//! | `GET /_sandbox/vault/cards/{id}` | the 3-D Secure page a card's `verificationUrl` points at (buttons for the two actions below); `id` is the card's verification id (what the URL names) or its `cardTokenId` |
//! | `POST /_sandbox/vault/cards/{id}/verify` | the customer passes 3-D Secure: `VERIFIED` (`VERIFICATION_FAILED` for the test card whose verification fails) |
//! | `POST /_sandbox/vault/cards/{id}/fail` | the customer fails 3-D Secure: `VERIFICATION_FAILED` |
//! | `POST /_sandbox/faults` | `{"create":"none"\|"server_error"\|"timeout"\|"approved_timeout"\|"approved_503"\|"silent"}`, until changed: the checkout create (and a vaulted card's payment) answers `500`, or holds its answer `fault_timeout` (30 s) then `504`, with nothing made; the lost-answer faults make the checkout (the customer can still pay it) or the payment and then hold the answer and `504`, or answer `503`; `silent` answers normally but no webhook is ever sent for what it made |
//!
//! Every checkout action answers the payment as it now is; `409` if the checkout is no longer
//! pending, `503` if the webhook queue is full. A card action answers the card; `409` if it
//! is no longer `PREVERIFICATION`, `404` for an unknown card.

mod vault;
mod wire;

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::TcpListener;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use chrono::{DateTime, SecondsFormat, Utc};
use domain::{Currency, Money};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use uuid::Uuid;

pub use crate::kit::EmulatorOptions;
use crate::kit::{self, basic_key_matches, invalid_input, CreateFault, Faults, Outbox};
use crate::server;
pub use crate::server::REQUEST_BODY_MAX_BYTES;
pub use vault::{
    card_state, CARD_NOT_FOUND, TEST_CARD_DECLINED, TEST_CARD_MASTERCARD,
    TEST_CARD_VERIFICATION_FAILS, TEST_CARD_VISA,
};
pub use wire::status;

/// Longest `requestReferenceNumber` Maya takes.
pub const REFERENCE_LEN_MAX: usize = 36;
/// Most refunds kept per payment.
pub const REFUNDS_PER_PAYMENT_MAX: usize = 100;

#[derive(Debug, Clone)]
pub struct MayaSandboxConfig {
    /// Checkouts need `Basic base64("<public_key>:")`.
    pub public_key: String,
    /// The Payments API needs `Basic base64("<secret_key>:")`.
    pub secret_key: SecretString,
    /// Where webhooks are POSTed (payledger's `/v1/webhooks/maya`).
    pub webhook_url: String,
    /// Delay between a customer action and its webhook's first delivery.
    pub webhook_delay_ms: u64,
    /// `false`: webhooks are "lost" (for sync and reconciler tests).
    pub deliver_webhooks: bool,
}

/// A running Maya emulator; its `base_url` is `MAYA_BASE_URL` for the client.
pub type MayaSandboxHandle = crate::EmulatorHandle;

/// Starts the emulator on `listener` with default options, on the current tokio runtime.
pub async fn start(
    listener: TcpListener,
    config: MayaSandboxConfig,
) -> io::Result<MayaSandboxHandle> {
    start_with_options(listener, config, EmulatorOptions::default()).await
}

pub async fn start_with_options(
    listener: TcpListener,
    config: MayaSandboxConfig,
    options: EmulatorOptions,
) -> io::Result<MayaSandboxHandle> {
    if config.public_key.is_empty() || config.secret_key.expose_secret().is_empty() {
        return Err(invalid_input("maya emulator keys must not be empty"));
    }
    let addr = listener.local_addr()?;
    let (outbox, dispatcher) = kit::outbox(
        "maya emulator",
        &config.webhook_url,
        std::sync::Arc::new(|_: &[u8], _: DateTime<Utc>| Vec::new()),
        &options,
        config.deliver_webhooks,
    )?;
    let state = web::Data::new(State {
        public_key: config.public_key,
        secret_key: config.secret_key.expose_secret().to_owned(),
        base_url: format!("http://{addr}"),
        webhook_url: config.webhook_url,
        store: Mutex::new(Store {
            payments: HashMap::new(),
            by_reference: HashMap::new(),
            capacity: options.records_max.max(1),
            vault: vault::Vault::new(options.records_max.max(1)),
        }),
        outbox,
        webhook_delay: Duration::from_millis(config.webhook_delay_ms),
        fault_timeout: options.fault_timeout,
    });
    let faults = web::Data::new(Faults::default());
    server::start(
        "maya emulator",
        listener,
        "",
        options.server(),
        move |cfg: &mut web::ServiceConfig| {
            cfg.app_data(state.clone())
                .app_data(faults.clone())
                .route("/checkout/v1/checkouts", web::post().to(create_checkout))
                .service(
                    web::scope("/payments/v1")
                        .route("/webhooks", web::get().to(list_webhooks))
                        .route(
                            "/payment-tokens",
                            web::post().to(vault::create_payment_token),
                        )
                        .route("/customers", web::post().to(vault::create_customer))
                        .route("/customers/{customer}", web::get().to(vault::get_customer))
                        .route(
                            "/customers/{customer}",
                            web::delete().to(vault::delete_customer),
                        )
                        .route(
                            "/customers/{customer}/cards",
                            web::post().to(vault::link_card),
                        )
                        .route(
                            "/customers/{customer}/cards",
                            web::get().to(vault::list_cards),
                        )
                        .route(
                            "/customers/{customer}/cards/{card}",
                            web::get().to(vault::get_card),
                        )
                        .route(
                            "/customers/{customer}/cards/{card}",
                            web::delete().to(vault::delete_card),
                        )
                        .route(
                            "/customers/{customer}/cards/{card}/payments",
                            web::post().to(vault::pay_with_card),
                        )
                        .route("/payment-rrns/{rrn}", web::get().to(payments_by_reference))
                        .route("/payments/{id}", web::get().to(get_payment))
                        .route("/payments/{id}/capture", web::post().to(capture))
                        .route("/payments/{id}/voids", web::post().to(void))
                        .route("/payments/{id}/refunds", web::post().to(refund))
                        .route("/payments/{id}/refunds", web::get().to(list_refunds)),
                )
                .route("/_sandbox/faults", web::post().to(kit::set_faults))
                .route("/_sandbox/checkouts/{id}", web::get().to(checkout_page))
                .route(
                    "/_sandbox/checkouts/{id}/{action}",
                    web::post().to(customer_action),
                )
                .route(
                    "/_sandbox/vault/cards/{card}",
                    web::get().to(vault::verification_page),
                )
                .route(
                    "/_sandbox/vault/cards/{card}/{action}",
                    web::post().to(vault::verification_action),
                );
            cfg.default_service(web::to(|| async {
                error(StatusCode::NOT_FOUND, "404", "Resource not found").error_response()
            }));
        },
        vec![dispatcher],
    )
}

struct State {
    public_key: String,
    secret_key: String,
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

    fn secret(&self, req: &HttpRequest) -> Result<(), ApiError> {
        if basic_key_matches(req, &[&self.secret_key]) {
            Ok(())
        } else {
            Err(unauthorized())
        }
    }
}

struct Store {
    payments: HashMap<String, Payment>,
    by_reference: HashMap<String, Vec<String>>,
    capacity: usize,
    /// Maya Vault's payment tokens, customers and cards; under the same lock as the payments,
    /// so a card's payment checks the card and records the payment at once.
    vault: vault::Vault,
}

#[derive(Debug, Clone)]
struct Payment {
    id: String,
    reference: String,
    amount: Money,
    status: &'static str,
    authorization_type: Option<String>,
    /// Maya's error code of a failed payment (a declined vaulted card).
    error_code: Option<&'static str>,
    /// The vaulted card that paid, if one did.
    fund_source: Option<wire::FundSource>,
    /// Made under the `silent` fault: no webhook is ever sent for it (or its capture).
    silent: bool,
    /// Authorizations: what their capture payments took so far.
    captured: Money,
    refunds: Vec<Refund>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
struct Refund {
    id: String,
    amount: Money,
    reason: String,
    created_at: DateTime<Utc>,
}

impl Payment {
    fn refunded(&self) -> Money {
        self.refunds
            .iter()
            .fold(Money::zero(self.amount.currency()), |total, r| {
                total.checked_add(r.amount).unwrap_or(total)
            })
    }

    fn view(&self) -> wire::Payment {
        let s = self.status;
        let paid = matches!(
            s,
            status::PAYMENT_SUCCESS
                | status::REFUNDED
                | status::AUTHORIZED
                | status::CAPTURED
                | status::DONE
        );
        let fully_refunded = self.refunded() == self.amount;
        wire::Payment {
            id: self.id.clone(),
            status: s.to_owned(),
            amount: amount_string(self.amount),
            currency: self.amount.currency().code().to_owned(),
            request_reference_number: self.reference.clone(),
            is_paid: paid,
            can_void: s == status::PAYMENT_SUCCESS || (s == status::AUTHORIZED),
            can_refund: matches!(s, status::PAYMENT_SUCCESS | status::REFUNDED) && !fully_refunded,
            can_capture: matches!(s, status::AUTHORIZED | status::CAPTURED),
            authorization_type: self.authorization_type.clone(),
            error_code: self.error_code.map(str::to_owned),
            fund_source: self.fund_source.clone(),
            created_at: timestamp(self.created_at),
            updated_at: timestamp(self.updated_at),
        }
    }

    fn refund_view(&self, refund: &Refund) -> wire::Refund {
        wire::Refund {
            id: refund.id.clone(),
            payment: self.id.clone(),
            status: wire::REFUND_SUCCESS.to_owned(),
            total_amount: wire::TotalAmount {
                amount: amount_string(refund.amount),
                currency: refund.amount.currency().code().to_owned(),
            },
            reason: refund.reason.clone(),
            created_at: timestamp(refund.created_at),
        }
    }
}

fn amount_string(amount: Money) -> wire::Amount {
    // Built from a decimal's digits, this cannot fail; fall back to a number all the same.
    wire::Amount::string(amount.amount())
        .or_else(|| wire::Amount::number(amount.amount()))
        .unwrap_or_else(|| wire::Amount(Box::default()))
}

fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl Store {
    fn insert(&mut self, payment: Payment) -> Result<(), ApiError> {
        if self.payments.len() >= self.capacity {
            return Err(error(
                StatusCode::SERVICE_UNAVAILABLE,
                "PY0999",
                "The emulator holds too many payments",
            ));
        }
        self.by_reference
            .entry(payment.reference.clone())
            .or_default()
            .push(payment.id.clone());
        self.payments.insert(payment.id.clone(), payment);
        Ok(())
    }

    fn get_mut(&mut self, id: &str) -> Result<&mut Payment, ApiError> {
        self.payments.get_mut(id).ok_or_else(not_found)
    }
}

/// An error answer in Maya's shape: `{"code","message","parameters"?}` (`{"code","error"}`
/// for authentication). Messages never echo request values.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    body: serde_json::Value,
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status.as_u16(), self.body)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status).json(&self.body)
    }
}

fn error(status: StatusCode, code: &str, message: &str) -> ApiError {
    ApiError {
        status,
        body: serde_json::json!({ "code": code, "message": message }),
    }
}

fn invalid_parameter(field: &str, description: &str) -> ApiError {
    ApiError {
        status: StatusCode::BAD_REQUEST,
        body: serde_json::json!({
            "code": "2553",
            "message": "Missing/invalid parameters.",
            "parameters": [{ "field": field, "description": description }]
        }),
    }
}

fn unauthorized() -> ApiError {
    ApiError {
        status: StatusCode::UNAUTHORIZED,
        body: serde_json::json!({
            "code": "K003",
            "error": "Invalid authentication credentials."
        }),
    }
}

fn not_found() -> ApiError {
    error(
        StatusCode::NOT_FOUND,
        wire::PAYMENT_NOT_FOUND,
        "Payment does not exist.",
    )
}

fn parse<T: for<'de> serde::Deserialize<'de>>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        invalid_parameter(
            "body",
            &format!(
                "is not JSON of the expected shape (line {} column {})",
                e.line(),
                e.column()
            ),
        )
    })
}

fn php(total: &wire::TotalAmount, field: &str) -> Result<Money, ApiError> {
    let money = total
        .money()
        .map_err(|p| invalid_parameter(field, &format!("is {p}")))?;
    if money.currency() != Currency::PHP {
        return Err(invalid_parameter(
            &format!("{field}.currency"),
            "must be PHP",
        ));
    }
    Ok(money)
}

fn ok<T: Serialize>(value: &T) -> HttpResponse {
    HttpResponse::Ok().json(value)
}

type Answer = Result<HttpResponse, ApiError>;

async fn create_checkout(
    req: HttpRequest,
    state: web::Data<State>,
    faults: web::Data<Faults>,
    body: web::Bytes,
) -> Answer {
    if !basic_key_matches(&req, &[&state.public_key]) {
        return Err(unauthorized());
    }
    under_create_fault(&state, &faults, "checkout", |silent| {
        create_checkout_inner(&state, &body, silent)
    })
    .await
}

/// Runs a create (`make`, told whether it is `silent`) under the `create` fault: refused or
/// held before anything is made, or made and then its answer lost.
async fn under_create_fault(
    state: &State,
    faults: &Faults,
    what: &str,
    make: impl FnOnce(bool) -> Answer,
) -> Answer {
    let fault = faults.create();
    match fault {
        CreateFault::None
        | CreateFault::ApprovedTimeout
        | CreateFault::Approved503
        | CreateFault::Silent => {}
        CreateFault::ServerError => {
            return Err(error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "PY0000",
                "Simulated internal error.",
            ))
        }
        CreateFault::Timeout => {
            tokio::time::sleep(state.fault_timeout).await;
            return Err(error(
                StatusCode::GATEWAY_TIMEOUT,
                "PY0000",
                "Simulated timeout.",
            ));
        }
    }
    let answer = make(fault == CreateFault::Silent)?;
    // The checkout (or payment) exists from here on: these faults lose only the answer.
    match fault {
        CreateFault::ApprovedTimeout => {
            tokio::time::sleep(state.fault_timeout).await;
            Err(error(
                StatusCode::GATEWAY_TIMEOUT,
                "PY0000",
                &format!("Simulated timeout after the {what} was created."),
            ))
        }
        CreateFault::Approved503 => Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "PY0000",
            &format!("Simulated unavailability after the {what} was created."),
        )),
        _ => Ok(answer),
    }
}

fn create_checkout_inner(state: &State, body: &[u8], silent: bool) -> Answer {
    let request: wire::CheckoutRequest = parse(body)?;
    let amount = php(&request.total_amount, "totalAmount")?;
    let reference = checked_reference(request.request_reference_number)?;
    if request.items.is_empty() {
        return Err(invalid_parameter("items", "must not be empty"));
    }
    checked_authorization_type(request.authorization_type.as_deref())?;
    let now = Utc::now();
    let payment = Payment {
        id: Uuid::new_v4().to_string(),
        reference,
        amount,
        status: status::PENDING_TOKEN,
        authorization_type: request.authorization_type,
        error_code: None,
        fund_source: None,
        silent,
        captured: Money::zero(amount.currency()),
        refunds: Vec::new(),
        created_at: now,
        updated_at: now,
    };
    let id = payment.id.clone();
    state.store().insert(payment)?;
    Ok(ok(&wire::CheckoutAnswer {
        redirect_url: format!("{}/_sandbox/checkouts/{id}", state.base_url),
        checkout_id: id,
    }))
}

/// A `requestReferenceNumber` as Maya takes it: 1-36 printable characters.
fn checked_reference(reference: String) -> Result<String, ApiError> {
    if reference.is_empty()
        || reference.len() > REFERENCE_LEN_MAX
        || !reference.chars().all(|c| c.is_ascii_graphic())
    {
        return Err(invalid_parameter(
            "requestReferenceNumber",
            "must be 1-36 printable characters",
        ));
    }
    Ok(reference)
}

fn checked_authorization_type(kind: Option<&str>) -> Result<(), ApiError> {
    match kind {
        None | Some("NORMAL" | "FINAL" | "PREAUTHORIZATION") => Ok(()),
        Some(_) => Err(invalid_parameter(
            "authorizationType",
            "must be NORMAL, FINAL or PREAUTHORIZATION",
        )),
    }
}

async fn get_payment(req: HttpRequest, state: web::Data<State>, id: web::Path<String>) -> Answer {
    state.secret(&req)?;
    let store = state.store();
    let payment = store.payments.get(id.as_str()).ok_or_else(not_found)?;
    Ok(ok(&payment.view()))
}

async fn payments_by_reference(
    req: HttpRequest,
    state: web::Data<State>,
    rrn: web::Path<String>,
) -> Answer {
    state.secret(&req)?;
    let store = state.store();
    let views: Vec<wire::Payment> = store
        .by_reference
        .get(rrn.as_str())
        .into_iter()
        .flatten()
        .filter_map(|id| store.payments.get(id))
        .map(Payment::view)
        .collect();
    if views.is_empty() {
        return Err(not_found());
    }
    Ok(ok(&views))
}

async fn capture(
    req: HttpRequest,
    state: web::Data<State>,
    id: web::Path<String>,
    body: web::Bytes,
) -> Answer {
    state.secret(&req)?;
    let request: wire::CaptureRequest = parse(&body)?;
    let amount = php(&request.total_amount, "totalAmount")?;
    let reference = request.request_reference_number;
    if reference.is_empty() || reference.len() > REFERENCE_LEN_MAX {
        return Err(invalid_parameter(
            "requestReferenceNumber",
            "must be 1-36 characters",
        ));
    }
    let slot = state.outbox.try_reserve().ok_or_else(queue_full)?;
    let now = Utc::now();
    let capture = {
        let mut store = state.store();
        if store.payments.len() >= store.capacity {
            return Err(error(
                StatusCode::SERVICE_UNAVAILABLE,
                "PY0999",
                "Too many payments",
            ));
        }
        let auth = store.get_mut(&id)?;
        if !matches!(auth.status, status::AUTHORIZED | status::CAPTURED) {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "PY0105",
                "Payment cannot be captured in its current state.",
            ));
        }
        let left = auth
            .amount
            .checked_sub(auth.captured)
            .unwrap_or(Money::zero(auth.amount.currency()));
        if amount.amount() > left.amount() {
            return Err(invalid_parameter(
                "totalAmount.amount",
                "exceeds the authorized amount left to capture",
            ));
        }
        auth.captured = auth.captured.checked_add(amount).unwrap_or(auth.captured);
        auth.status = if request.final_capture == Some(true) || auth.captured == auth.amount {
            status::DONE
        } else {
            status::CAPTURED
        };
        auth.updated_at = now;
        let silent = auth.silent;
        let fund_source = auth.fund_source.clone();
        let capture = Payment {
            id: Uuid::new_v4().to_string(),
            reference,
            amount,
            status: status::PAYMENT_SUCCESS,
            authorization_type: None,
            error_code: None,
            fund_source,
            silent,
            captured: Money::zero(amount.currency()),
            refunds: Vec::new(),
            created_at: now,
            updated_at: now,
        };
        store.insert(capture.clone())?;
        capture
    };
    let view = capture.view();
    // Maya announces the capture payment's success like any payment's.
    if !capture.silent {
        schedule(&state, slot, &view)?;
    }
    Ok(ok(&view))
}

async fn void(
    req: HttpRequest,
    state: web::Data<State>,
    id: web::Path<String>,
    body: web::Bytes,
) -> Answer {
    state.secret(&req)?;
    let request: wire::VoidRequest = parse(&body)?;
    let mut store = state.store();
    let payment = store.get_mut(&id)?;
    let voidable = payment.status == status::PAYMENT_SUCCESS
        || (payment.status == status::AUTHORIZED && payment.captured.is_zero());
    if !voidable {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "PY0104",
            "Payment cannot be voided in its current state.",
        ));
    }
    payment.status = status::VOIDED;
    payment.updated_at = Utc::now();
    Ok(ok(&wire::Void {
        id: Uuid::new_v4().to_string(),
        payment: payment.id.clone(),
        status: wire::VOID_SUCCESS.to_owned(),
        reason: request.reason,
    }))
}

async fn refund(
    req: HttpRequest,
    state: web::Data<State>,
    id: web::Path<String>,
    body: web::Bytes,
) -> Answer {
    state.secret(&req)?;
    let request: wire::RefundRequest = parse(&body)?;
    let amount = php(&request.total_amount, "totalAmount")?;
    if request.reason.is_empty() || request.reason.len() > 255 {
        return Err(invalid_parameter("reason", "must be 1-255 characters"));
    }
    let mut store = state.store();
    let payment = store.get_mut(&id)?;
    if !matches!(payment.status, status::PAYMENT_SUCCESS | status::REFUNDED) {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "PY0103",
            "Payment cannot be refunded in its current state.",
        ));
    }
    if payment.refunds.len() >= REFUNDS_PER_PAYMENT_MAX {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "PY0103",
            "Too many refunds.",
        ));
    }
    let left = payment
        .amount
        .checked_sub(payment.refunded())
        .unwrap_or(Money::zero(payment.amount.currency()));
    if amount.amount() > left.amount() {
        return Err(invalid_parameter(
            "totalAmount.amount",
            "exceeds the amount left to refund",
        ));
    }
    let refund = Refund {
        id: Uuid::new_v4().to_string(),
        amount,
        reason: request.reason,
        created_at: Utc::now(),
    };
    payment.refunds.push(refund.clone());
    payment.status = status::REFUNDED;
    payment.updated_at = refund.created_at;
    Ok(ok(&payment.refund_view(&refund)))
}

async fn list_refunds(req: HttpRequest, state: web::Data<State>, id: web::Path<String>) -> Answer {
    state.secret(&req)?;
    let store = state.store();
    let payment = store.payments.get(id.as_str()).ok_or_else(not_found)?;
    let views: Vec<wire::Refund> = payment
        .refunds
        .iter()
        .map(|r| payment.refund_view(r))
        .collect();
    Ok(ok(&views))
}

async fn list_webhooks(req: HttpRequest, state: web::Data<State>) -> Answer {
    state.secret(&req)?;
    let hooks: Vec<serde_json::Value> = [
        status::PAYMENT_SUCCESS,
        status::PAYMENT_FAILED,
        status::PAYMENT_EXPIRED,
        status::PAYMENT_CANCELLED,
        status::AUTHORIZED,
    ]
    .iter()
    .enumerate()
    .map(|(i, name)| {
        serde_json::json!({
            "id": format!("00000000-0000-4000-8000-{i:012}"),
            "name": name,
            "callbackUrl": state.webhook_url,
        })
    })
    .collect();
    Ok(ok(&hooks))
}

async fn checkout_page(id: web::Path<String>) -> HttpResponse {
    let base = format!("/_sandbox/checkouts/{}", id.as_str());
    let paths: Vec<(String, String)> = ["complete", "fail", "expire", "cancel"]
        .iter()
        .map(|a| ((*a).to_owned(), format!("{base}/{a}")))
        .collect();
    let actions: Vec<(&str, &str)> = paths
        .iter()
        .map(|(a, p)| (a.as_str(), p.as_str()))
        .collect();
    kit::customer_page("Maya Checkout (payledger emulator)", &actions)
}

async fn customer_action(state: web::Data<State>, path: web::Path<(String, String)>) -> Answer {
    let (id, action) = path.into_inner();
    let slot = state.outbox.try_reserve().ok_or_else(queue_full)?;
    let (view, silent) = {
        let mut store = state.store();
        let payment = store.get_mut(&id)?;
        let next = match action.as_str() {
            "complete" if payment.authorization_type.is_some() => status::AUTHORIZED,
            "complete" => status::PAYMENT_SUCCESS,
            "fail" => status::PAYMENT_FAILED,
            "expire" => status::PAYMENT_EXPIRED,
            "cancel" => status::PAYMENT_CANCELLED,
            _ => return Err(error(StatusCode::NOT_FOUND, "404", "Unknown action")),
        };
        if payment.status != status::PENDING_TOKEN {
            return Err(error(
                StatusCode::CONFLICT,
                "PY0102",
                "The checkout is no longer pending.",
            ));
        }
        payment.status = next;
        payment.updated_at = Utc::now();
        (payment.view(), payment.silent)
    };
    if !silent {
        schedule(&state, slot, &view)?;
    }
    Ok(ok(&view))
}

fn schedule(state: &State, slot: kit::Slot, view: &wire::Payment) -> Result<(), ApiError> {
    let body = serde_json::to_vec(view).map_err(|_| {
        error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "PY0000",
            "Cannot encode the webhook.",
        )
    })?;
    if state.outbox.send(slot, body, state.webhook_delay) {
        Ok(())
    } else {
        Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "PY0999",
            "The emulator is stopping.",
        ))
    }
}

fn queue_full() -> ApiError {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "PY0999",
        "The webhook queue is full, retry later.",
    )
}
