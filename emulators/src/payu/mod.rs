//! PayU Latam API emulation for the sandbox: a separate actix-web server that speaks the
//! shapes of PayU's API reference, so the real `commands` client and the real
//! confirmation verifier run against a real socket.
//!
//! PayU's API is command-based: every call is a `POST` of JSON
//! `{"language","command","merchant":{"apiKey","apiLogin"},...,"test"}` with
//! `Accept: application/json` (else `406`). Credentials are compared in constant time; a
//! wrong key, a bad `order.signature`, an unknown command or invalid data answer HTTP 200
//! with `{"code":"ERROR","error":"..."}`, as PayU does.
//!
//! | route | commands |
//! |---|---|
//! | `POST /payments-api/4.0/service.cgi` | `PING`; `GET_BANKS_LIST`; `GET_PAYMENT_METHODS`; `SUBMIT_TRANSACTION` with `type` `AUTHORIZATION_AND_CAPTURE` / `AUTHORIZATION` (cards only) / `CAPTURE` / `VOID` / `REFUND` (`order.id` + `parentTransactionId`; a refund needs a `reason`); card tokens: `CREATE_TOKEN`, `GET_TOKENS`, `REMOVE_TOKEN` (see [`vault`]) |
//! | `POST /reports-api/4.0/service.cgi` | `PING`; `ORDER_DETAIL` (`details.orderId`); `ORDER_DETAIL_BY_REFERENCE_CODE` (`details.referenceCode`); `TRANSACTION_RESPONSE_DETAIL` (`details.transactionId`) |
//!
//! Outcomes, by the test data of a create:
//!
//! * Cards (`paymentMethod` `VISA`, `MASTERCARD`, `AMEX`, `DINERS`, `CODENSA`, with
//!   `creditCardTokenId`): PayU's own sandbox decides by the cardholder *name*
//!   (`APPROVED`/`REJECTED`/`PENDING`), which a token payment does not carry, so the emulator
//!   decides by token: `tok_payu_approved` -> `APPROVED`, `tok_payu_declined` -> `DECLINED`
//!   (`ENTITY_DECLINED`), `tok_payu_error` -> `ERROR` (`INTERNAL_PAYMENT_PROVIDER_ERROR`),
//!   `tok_payu_pending` -> `PENDING` (in review), approved when its confirmation is due. A
//!   token made by `CREATE_TOKEN` is decided by its cardholder name and must be charged with
//!   its own franchise (see [`vault`]). Any other token, a removed one included -> `code: ERROR`. Like PayU, cards are decided in the create's answer and
//!   also confirmed (`webhook_delay_ms` later). COP card amounts take no cents.
//! * `EFECTY`: `PENDING` with a unique 10-digit payment code (`extraParameters.REFERENCE`)
//!   and `EXPIRATION_DATE` (epoch ms; `transaction.expirationDate` if earlier, else
//!   `efecty_expiry`, default 7 days as PayU). 20,000-6,000,000 COP, as PayU. It stays
//!   pending until paid (confirmation `state_pol=4`) or expired (`state_pol=5`, by the
//!   customer action below or by the clock).
//! * `PSE`: needs `FINANCIAL_INSTITUTION_CODE` (from `GET_BANKS_LIST`: `1` approves, `2`
//!   declines on completion), `USER_TYPE` `N`/`J`, `PSE_REFERENCE1..3` (the first an IP
//!   address), `RESPONSE_URL`; answers `PENDING` with `extraParameters.BANK_URL`.
//!
//! Confirmations are form-encoded POSTs to `webhook_url`, signed with the configured
//! algorithm (see [`signing`]), delivered at least once with bounded retries
//! through a bounded queue; `deliver_webhooks: false` decides them but never sends them.
//! `state_pol`: 4 approved, 6 declined, 5 expired, 104 for an `ERROR` transaction (PayU's
//! response-code table lists 104 as the transaction state of errors). No confirmation is sent
//! for captures, voids or refunds.
//!
//! Customer actions for tests (no auth):
//!
//! | route | effect |
//! |---|---|
//! | `POST /_sandbox/efecty/{code}/pay` | the cash was paid: `APPROVED`, confirmation `state_pol=4` (`409` once expired or settled) |
//! | `POST /_sandbox/efecty/{code}/expire` | the code lapsed: `EXPIRED`, confirmation `state_pol=5` |
//! | `GET /_sandbox/efecty/{code}` | the payment receipt (`URL_PAYMENT_RECEIPT_HTML`) |
//! | `GET /_sandbox/pse/{transaction_id}` | the "bank page" (`BANK_URL`) |
//! | `POST /_sandbox/pse/{transaction_id}/complete` | the payer finished at the bank: bank `1` approves (`state_pol=4`), `2` declines (`6`, `ENTITY_DECLINED`) |
//! | `POST /_sandbox/pse/{transaction_id}/abandon` | the payer walked away: `DECLINED`, `ABANDONED_TRANSACTION` (`state_pol=6`) |
//! | `POST /_sandbox/faults` | `{"create": ..., "refund": ...}` (either or both), until changed; see below |
//!
//! Faults of creates: `none`; `server_error` (`500`, nothing made); `timeout` (`504` after
//! `timeout_fault_delay`, 30 s, nothing made). Lost answers, where the order is made as its
//! test data decides and only the answer is lost, on a repeat as on the first call:
//! `approved_timeout` (the answer is held `timeout_fault_delay`, then `504`), `approved_503`
//! (`503`); the confirmation follows as usual. `approved_silent`: the answer is normal, but
//! no confirmation of that order is ever sent. Faults of refunds: `none`; `approved_503`
//! (the refund is made, the answer is `503`).
//!
//! State lives in memory, bounded (`orders_max`, `tokens_max`), and is lost when the server
//! stops.

mod delivery;
pub mod signing;
mod store;
mod vault;

use std::io;
use std::net::TcpListener;
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, NaiveDateTime, Utc};
use domain::{Currency, Money};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};
use subtle::ConstantTimeEq;

use crate::outbox::{self, Outbox, OutboxOptions, WebhookRetryPolicy};
pub use crate::server::REQUEST_BODY_MAX_BYTES;
use crate::server::{self, ServerOptions};
use delivery::{Job, Notifier, Signer};
pub use signing::SignatureAlgorithm;
use signing::{hex_signature_matches, request_message, sign};
use store::{
    CardOutcome, Created, Method, NewMethod, NewPayment, Order, Settlement, Store, StoreError,
    Transaction, TxState, TxType,
};
use vault::{CreditCardTokenIn, RemoveTokenIn, TokenInformationIn, Vault};

/// Card test tokens: the `creditCardTokenId` of a create decides the outcome.
pub mod tokens {
    pub const APPROVED: &str = "tok_payu_approved";
    pub const DECLINED: &str = "tok_payu_declined";
    pub const ERROR: &str = "tok_payu_error";
    pub const PENDING: &str = "tok_payu_pending";
}

/// The emulator's PSE banks (`GET_BANKS_LIST`), after PayU's "select your bank" entry `0`.
pub mod banks {
    /// Approves on completion.
    pub const APPROVES: &str = "1";
    /// Declines on completion.
    pub const DECLINES: &str = "2";
}

/// PayU's Efecty limits in COP.
pub const EFECTY_MIN_COP: i64 = 20_000;
pub const EFECTY_MAX_COP: i64 = 6_000_000;
/// PayU's default (and longest) Efecty expiry.
pub const EFECTY_EXPIRY_DEFAULT: Duration = Duration::from_secs(7 * 24 * 3600);

const CARD_FRANCHISES: &[&str] = &["VISA", "MASTERCARD", "AMEX", "DINERS", "CODENSA"];
const PSE_DOCUMENT_TYPES: &[&str] = &["CC", "CE", "NIT", "TI", "PP", "IDC", "CEL", "RC", "DE"];
const TEXT_LEN_MAX: usize = 255;

/// The emulated account: the same keys as the adapter's configuration.
#[derive(Debug, Clone)]
pub struct PayuSandboxConfig {
    pub api_key: SecretString,
    pub api_login: String,
    pub merchant_id: String,
    pub account_id: String,
    pub signature_algorithm: SignatureAlgorithm,
    /// HMAC-SHA256 key (unused with MD5).
    pub signature_secret: SecretString,
    /// Where confirmations are POSTed (payledger's `/v1/webhooks/payu`).
    pub webhook_url: String,
    /// How long after a change its confirmation is first sent.
    pub webhook_delay_ms: u64,
    /// `false`: confirmations are decided but never sent ("lost").
    pub deliver_webhooks: bool,
    /// How long an Efecty code stays payable when the request names no earlier expiry.
    pub efecty_expiry: Duration,
}

/// Tuning with production-like defaults; tests shrink delays and bounds.
#[derive(Debug, Clone)]
pub struct PayuSandboxOptions {
    pub webhook_retry: WebhookRetryPolicy,
    /// Confirmations waiting or being retried at once; a change beyond it answers `503`.
    pub webhook_queue_capacity: usize,
    pub webhook_timeout: Duration,
    pub webhook_concurrency: usize,
    /// Orders kept; a create beyond it answers `503`.
    pub orders_max: usize,
    /// Card tokens kept (`CREATE_TOKEN`); a token beyond it answers `503`.
    pub tokens_max: usize,
    /// How long the `timeout` fault holds a create's answer.
    pub timeout_fault_delay: Duration,
    /// How often lapsed Efecty codes are looked for.
    pub expiry_sweep_interval: Duration,
    pub workers: usize,
    pub shutdown_timeout_secs: u64,
}

impl Default for PayuSandboxOptions {
    fn default() -> Self {
        PayuSandboxOptions {
            webhook_retry: WebhookRetryPolicy::default(),
            webhook_queue_capacity: 10_000,
            webhook_timeout: Duration::from_secs(5),
            webhook_concurrency: 32,
            orders_max: 1_000_000,
            tokens_max: 100_000,
            timeout_fault_delay: Duration::from_secs(30),
            expiry_sweep_interval: Duration::from_secs(1),
            workers: 2,
            shutdown_timeout_secs: 5,
        }
    }
}

/// A running PayU emulator; its `base_url` is the client's `PAYU_BASE_URL`.
pub type PayuSandboxHandle = crate::EmulatorHandle;

/// Starts the emulator on `listener` with default options, on the current tokio runtime.
pub async fn start(
    listener: TcpListener,
    config: PayuSandboxConfig,
) -> io::Result<PayuSandboxHandle> {
    start_with_options(listener, config, PayuSandboxOptions::default()).await
}

/// Starts the emulator on `listener`, on the current tokio runtime.
pub async fn start_with_options(
    listener: TcpListener,
    config: PayuSandboxConfig,
    options: PayuSandboxOptions,
) -> io::Result<PayuSandboxHandle> {
    let invalid = |msg: &str| io::Error::new(io::ErrorKind::InvalidInput, msg.to_owned());
    if config.api_key.expose_secret().is_empty() || config.api_login.is_empty() {
        return Err(invalid("payu sandbox api_key and api_login must be set"));
    }
    if config.merchant_id.is_empty() || config.account_id.is_empty() {
        return Err(invalid(
            "payu sandbox merchant_id and account_id must be set",
        ));
    }
    if config.signature_algorithm == SignatureAlgorithm::HmacSha256
        && config.signature_secret.expose_secret().is_empty()
    {
        return Err(invalid("payu sandbox signature_secret is empty"));
    }
    let webhook_url = outbox::webhook_url("payu sandbox", &config.webhook_url)?;
    let addr = listener.local_addr()?;

    let store = Arc::new(Mutex::new(Store::new(options.orders_max)));
    let (queue, dispatcher) = outbox::start(
        webhook_url,
        Notifier {
            store: Arc::clone(&store),
            signer: Signer {
                merchant_id: config.merchant_id.clone(),
                api_key: config.api_key.expose_secret().to_owned(),
                algorithm: config.signature_algorithm,
                secret: config.signature_secret.expose_secret().as_bytes().to_vec(),
            },
            deliver: config.deliver_webhooks,
        },
        &OutboxOptions {
            name: "payu sandbox",
            capacity: options.webhook_queue_capacity,
            retry: options.webhook_retry,
            timeout: options.webhook_timeout,
            concurrency: options.webhook_concurrency,
        },
    )?;
    let state = web::Data::new(AppState {
        api_key: config.api_key.expose_secret().to_owned(),
        api_login: config.api_login.clone(),
        merchant_id: config.merchant_id.clone(),
        account_id: config.account_id.clone(),
        algorithm: config.signature_algorithm,
        signature_secret: config.signature_secret.expose_secret().as_bytes().to_vec(),
        base_url: format!("http://{addr}"),
        store: Arc::clone(&store),
        queue: queue.clone(),
        webhook_delay: Duration::from_millis(config.webhook_delay_ms),
        efecty_expiry: config.efecty_expiry,
        fault: Mutex::new(CreateFault::None),
        vault: Mutex::new(Vault::new(options.tokens_max)),
        refund_fault: Mutex::new(RefundFault::None),
        timeout_fault_delay: options.timeout_fault_delay,
    });

    let sweeper = tokio::spawn(sweep_expiries(
        store,
        queue,
        options.expiry_sweep_interval,
        Duration::from_millis(config.webhook_delay_ms),
    ));
    server::start(
        "payu sandbox",
        listener,
        "",
        ServerOptions {
            workers: options.workers,
            shutdown_timeout_secs: options.shutdown_timeout_secs,
        },
        move |cfg: &mut web::ServiceConfig| {
            cfg.app_data(state.clone())
                .route(
                    "/payments-api/4.0/service.cgi",
                    web::post().to(payments_api),
                )
                .route("/reports-api/4.0/service.cgi", web::post().to(reports_api))
                .route("/_sandbox/faults", web::post().to(set_faults))
                .route("/_sandbox/efecty/{code}", web::get().to(efecty_receipt))
                .route("/_sandbox/efecty/{code}/pay", web::post().to(efecty_pay))
                .route(
                    "/_sandbox/efecty/{code}/expire",
                    web::post().to(efecty_expire),
                )
                .route("/_sandbox/pse/{id}", web::get().to(pse_bank_page))
                .route("/_sandbox/pse/{id}/complete", web::post().to(pse_complete))
                .route("/_sandbox/pse/{id}/abandon", web::post().to(pse_abandon));
            cfg.default_service(web::to(not_found));
        },
        vec![sweeper, dispatcher],
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
enum CreateFault {
    None,
    ServerError,
    Timeout,
    ApprovedTimeout,
    #[serde(rename = "approved_503")]
    Approved503,
    ApprovedSilent,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
enum RefundFault {
    None,
    #[serde(rename = "approved_503")]
    Approved503,
}

struct AppState {
    api_key: String,
    api_login: String,
    merchant_id: String,
    account_id: String,
    algorithm: SignatureAlgorithm,
    signature_secret: Vec<u8>,
    base_url: String,
    store: Arc<Mutex<Store>>,
    queue: Outbox<Job>,
    webhook_delay: Duration,
    efecty_expiry: Duration,
    fault: Mutex<CreateFault>,
    vault: Mutex<Vault>,
    refund_fault: Mutex<RefundFault>,
    timeout_fault_delay: Duration,
}

impl AppState {
    fn store(&self) -> MutexGuard<'_, Store> {
        // Nothing panics while holding the lock; each operation leaves the store consistent.
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn vault(&self) -> MutexGuard<'_, Vault> {
        // As the store's: nothing panics while holding it.
        self.vault.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn authenticated(&self, merchant: Option<&MerchantIn>) -> bool {
        let Some(merchant) = merchant else {
            return false;
        };
        let key = merchant.api_key.as_bytes().ct_eq(self.api_key.as_bytes());
        let login = merchant
            .api_login
            .as_bytes()
            .ct_eq(self.api_login.as_bytes());
        bool::from(key & login)
    }
}

/// Lapsed Efecty codes become `EXPIRED` and are confirmed with `state_pol=5`.
async fn sweep_expiries(
    store: Arc<Mutex<Store>>,
    queue: Outbox<Job>,
    interval: Duration,
    webhook_delay: Duration,
) {
    let mut tick = tokio::time::interval(interval.max(Duration::from_millis(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = Utc::now();
        let mut store = store.lock().unwrap_or_else(PoisonError::into_inner);
        while let Some(entry) = store.pop_due_expiry(now) {
            let Some(slot) = queue.try_reserve() else {
                // Queue full: try again next tick.
                store.restore_expiry(entry);
                break;
            };
            if store.settle(entry.1, Settlement::Expire, now).is_ok() {
                queue.schedule(
                    slot,
                    Job {
                        order_id: entry.1,
                        approve_if_pending: false,
                    },
                    webhook_delay,
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Request shapes (unknown fields tolerated: PayU requests carry many we do not model)
// ---------------------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RequestIn {
    command: String,
    #[serde(default)]
    merchant: Option<MerchantIn>,
    #[serde(default)]
    transaction: Option<TransactionIn>,
    #[serde(default)]
    details: Option<DetailsIn>,
    #[serde(default)]
    bank_list_information: Option<BankListIn>,
    #[serde(default)]
    credit_card_token: Option<CreditCardTokenIn>,
    #[serde(default)]
    credit_card_token_information: Option<TokenInformationIn>,
    #[serde(default)]
    remove_credit_card_token: Option<RemoveTokenIn>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MerchantIn {
    api_key: String,
    api_login: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DetailsIn {
    #[serde(default)]
    order_id: Option<NumOrText>,
    #[serde(default)]
    reference_code: Option<String>,
    #[serde(default)]
    transaction_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BankListIn {
    payment_method: String,
    payment_country: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TransactionIn {
    #[serde(default)]
    order: Option<OrderIn>,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    payment_method: Option<String>,
    #[serde(default)]
    payment_country: Option<String>,
    #[serde(default)]
    credit_card_token_id: Option<String>,
    #[serde(default)]
    parent_transaction_id: Option<String>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    additional_values: Option<AmountsIn>,
    #[serde(default)]
    extra_parameters: Option<Map<String, Value>>,
    #[serde(default)]
    expiration_date: Option<String>,
    #[serde(default)]
    payer: Option<PersonIn>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OrderIn {
    #[serde(default)]
    id: Option<NumOrText>,
    #[serde(default)]
    account_id: Option<NumOrText>,
    #[serde(default)]
    reference_code: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    signature: Option<String>,
    #[serde(default)]
    additional_values: Option<AmountsIn>,
    #[serde(default)]
    buyer: Option<PersonIn>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PersonIn {
    #[serde(default)]
    email_address: Option<String>,
}

#[derive(Deserialize)]
struct AmountsIn {
    #[serde(rename = "TX_VALUE", default)]
    tx_value: Option<AmountIn>,
}

#[derive(Deserialize)]
struct AmountIn {
    value: Box<RawValue>,
    #[serde(default)]
    currency: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum NumOrText {
    Num(u64),
    Text(String),
}

impl NumOrText {
    fn text(&self) -> String {
        match self {
            NumOrText::Num(n) => n.to_string(),
            NumOrText::Text(t) => t.clone(),
        }
    }

    fn as_u64(&self) -> Option<u64> {
        match self {
            NumOrText::Num(n) => Some(*n),
            NumOrText::Text(t) if t.len() <= 20 => t.parse().ok(),
            NumOrText::Text(_) => None,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Answers
// ---------------------------------------------------------------------------------------------

/// PayU's refusal: HTTP 200, `code: ERROR`. Messages never echo request values.
fn refused(message: &str) -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "code": "ERROR",
        "error": message,
        "transactionResponse": null,
    }))
}

fn success(mut fields: Map<String, Value>) -> HttpResponse {
    fields.insert("code".into(), json!("SUCCESS"));
    fields.insert("error".into(), Value::Null);
    HttpResponse::Ok().json(Value::Object(fields))
}

fn http_error(status: StatusCode, message: &str) -> HttpResponse {
    HttpResponse::build(status).json(json!({ "code": "ERROR", "error": message }))
}

/// A decimal amount written as a JSON number (never through a float).
fn amount_json(money: &Money) -> Box<RawValue> {
    let mut value = money.amount();
    value.rescale(2);
    RawValue::from_string(value.to_string()).unwrap_or_default()
}

fn millis(t: &DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

impl AppState {
    fn extra_parameters(&self, order: &Order) -> Value {
        match &order.method {
            Method::Efecty { code, expires_at } => {
                let receipt = format!("{}/_sandbox/efecty/{code}", self.base_url);
                json!({
                    "EXPIRATION_DATE": millis(expires_at),
                    "REFERENCE": code.parse::<u64>().map(Value::from).unwrap_or_else(|_| json!(code)),
                    "URL_PAYMENT_RECEIPT_HTML": receipt,
                    "URL_PAYMENT_RECEIPT_PDF": format!("{receipt}?format=pdf"),
                })
            }
            Method::Pse { .. } => json!({
                "TRANSACTION_CYCLE": "1",
                "BANK_URL": format!("{}/_sandbox/pse/{}", self.base_url, order.payment.id),
            }),
            Method::Card { .. } => json!({ "BANK_REFERENCED_CODE": "CREDIT" }),
        }
    }

    /// `transactionResponse` of a transaction of `order`.
    fn transaction_response(&self, order: &Order, tx: &Transaction) -> Value {
        let payment = tx.id == order.payment.id;
        let extra = if payment {
            self.extra_parameters(order)
        } else {
            json!({})
        };
        let approved = tx.state == TxState::Approved;
        json!({
            "orderId": order.id,
            "transactionId": tx.id,
            "state": tx.state.as_str(),
            "paymentNetworkResponseCode": null,
            "paymentNetworkResponseErrorMessage": null,
            "trazabilityCode": if approved { Value::from(format!("CRED - {}", order.id)) } else { Value::Null },
            "authorizationCode": if approved && payment { Value::from("123238") } else { Value::Null },
            "pendingReason": tx.pending_reason,
            "responseCode": tx.response_code,
            "errorCode": null,
            "responseMessage": null,
            "transactionDate": null,
            "transactionTime": null,
            "operationDate": millis(&tx.created_at),
            "referenceQuestionnaire": null,
            "extraParameters": extra,
            "additionalInfo": {
                "paymentNetwork": order.method.name(),
                "rejectionType": "NONE",
                "responseNetworkMessage": null,
                "travelAgencyAuthorizationCode": null,
                "cardType": if matches!(order.method, Method::Card { .. }) { Value::from("CREDIT") } else { Value::Null },
                "transactionType": tx.kind.as_str(),
            },
        })
    }

    fn transaction_answer(&self, order: &Order, tx: &Transaction) -> HttpResponse {
        let mut fields = Map::new();
        fields.insert(
            "transactionResponse".into(),
            self.transaction_response(order, tx),
        );
        success(fields)
    }

    fn order_view<'a>(&self, order: &'a Order) -> OrderView<'a> {
        let mut transactions = vec![TxView {
            id: &order.payment.id,
            kind: order.payment.kind.as_str(),
            parent_transaction_id: None,
            payment_method: Some(order.method.name().to_owned()),
            payment_country: Some("CO"),
            transaction_response: self.transaction_response(order, &order.payment),
            additional_values: None,
            extra_parameters: Some(self.extra_parameters(order)),
            reason: None,
        }];
        transactions.extend(order.operations.iter().map(|op| TxView {
            id: &op.id,
            kind: op.kind.as_str(),
            parent_transaction_id: op.parent.as_deref(),
            payment_method: None,
            payment_country: None,
            transaction_response: self.transaction_response(order, op),
            additional_values: op.amount.as_ref().map(|a| AmountsView {
                tx_value: AmountView {
                    value: amount_json(a),
                    currency: a.currency().code(),
                },
            }),
            extra_parameters: None,
            reason: op.reason.as_deref(),
        }));
        OrderView {
            id: order.id,
            account_id: self.account_id.parse().unwrap_or_default(),
            status: order.status(),
            reference_code: &order.reference_code,
            description: &order.description,
            language: "es",
            buyer: order
                .buyer_email
                .as_deref()
                .map(|e| json!({ "emailAddress": e })),
            additional_values: AmountsView {
                tx_value: AmountView {
                    value: amount_json(&order.amount),
                    currency: order.amount.currency().code(),
                },
            },
            transactions,
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OrderView<'a> {
    id: u64,
    account_id: u64,
    status: &'static str,
    reference_code: &'a str,
    description: &'a str,
    language: &'static str,
    buyer: Option<Value>,
    additional_values: AmountsView,
    transactions: Vec<TxView<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TxView<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    parent_transaction_id: Option<&'a str>,
    payment_method: Option<String>,
    payment_country: Option<&'static str>,
    transaction_response: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    additional_values: Option<AmountsView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    extra_parameters: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
}

#[derive(Serialize)]
struct AmountsView {
    #[serde(rename = "TX_VALUE")]
    tx_value: AmountView,
}

#[derive(Serialize)]
struct AmountView {
    value: Box<RawValue>,
    currency: &'static str,
}

#[derive(Serialize)]
struct ReportView<T: Serialize> {
    code: &'static str,
    error: Option<String>,
    result: PayloadView<T>,
}

#[derive(Serialize)]
struct PayloadView<T: Serialize> {
    payload: T,
}

fn report<T: Serialize>(payload: T) -> HttpResponse {
    HttpResponse::Ok().json(ReportView {
        code: "SUCCESS",
        error: None,
        result: PayloadView { payload },
    })
}

// ---------------------------------------------------------------------------------------------
// The two APIs
// ---------------------------------------------------------------------------------------------

/// Parses a command request after the `Accept` check; `Err` is the answer to send.
fn command_request(req: &HttpRequest, body: &[u8]) -> Result<RequestIn, Box<HttpResponse>> {
    let accepts_json = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("application/json"));
    if !accepts_json {
        return Err(Box::new(http_error(
            StatusCode::NOT_ACCEPTABLE,
            "send Accept: application/json (PayU answers XML otherwise)",
        )));
    }
    serde_json::from_slice(body).map_err(|e| {
        Box::new(refused(&format!(
            "Invalid request: body is not JSON of the expected shape (line {} column {})",
            e.line(),
            e.column()
        )))
    })
}

async fn payments_api(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> HttpResponse {
    let request = match command_request(&req, &body) {
        Ok(request) => request,
        Err(answer) => return *answer,
    };
    if !state.authenticated(request.merchant.as_ref()) {
        return refused("Invalid credentials");
    }
    match request.command.as_str() {
        "PING" => {
            let mut fields = Map::new();
            fields.insert("transactionResponse".into(), Value::Null);
            success(fields)
        }
        "GET_BANKS_LIST" => {
            let ok = request
                .bank_list_information
                .as_ref()
                .is_some_and(|b| b.payment_method == "PSE" && b.payment_country == "CO");
            if !ok {
                return refused("bankListInformation must name PSE in CO");
            }
            let mut fields = Map::new();
            fields.insert(
                "banks".into(),
                json!([
                    {"id": "34e6e912-a395-4d31-9599-9baa176c1a61", "description": "A continuación seleccione su banco", "pseCode": "0"},
                    {"id": "a1f4c1e2-0001-4d31-9599-000000000001", "description": "BANCO QUE APRUEBA (SANDBOX)", "pseCode": banks::APPROVES},
                    {"id": "a1f4c1e2-0002-4d31-9599-000000000002", "description": "BANCO QUE RECHAZA (SANDBOX)", "pseCode": banks::DECLINES},
                ]),
            );
            success(fields)
        }
        "GET_PAYMENT_METHODS" => {
            let mut fields = Map::new();
            fields.insert(
                "paymentMethods".into(),
                json!([
                    {"id": "10", "description": "VISA", "country": "CO", "enabled": true, "reason": null},
                    {"id": "11", "description": "MASTERCARD", "country": "CO", "enabled": true, "reason": null},
                    {"id": "25", "description": "PSE", "country": "CO", "enabled": true, "reason": null},
                    {"id": "36", "description": "EFECTY", "country": "CO", "enabled": true, "reason": null},
                ]),
            );
            success(fields)
        }
        "SUBMIT_TRANSACTION" => {
            let Some(transaction) = request.transaction else {
                return refused("transaction is required");
            };
            match transaction.kind.as_str() {
                "AUTHORIZATION" | "AUTHORIZATION_AND_CAPTURE" => create(&state, transaction).await,
                "CAPTURE" | "VOID" | "REFUND" => operate(&state, transaction),
                _ => refused("Invalid transaction type"),
            }
        }
        "CREATE_TOKEN" => vault::create_token(&mut state.vault(), request.credit_card_token),
        "GET_TOKENS" => vault::get_tokens(&state.vault(), request.credit_card_token_information),
        "REMOVE_TOKEN" => vault::remove_token(&mut state.vault(), request.remove_credit_card_token),
        _ => refused("Invalid command"),
    }
}

async fn reports_api(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> HttpResponse {
    let request = match command_request(&req, &body) {
        Ok(request) => request,
        Err(answer) => return *answer,
    };
    if !state.authenticated(request.merchant.as_ref()) {
        return refused("Invalid credentials");
    }
    let details = request.details;
    match request.command.as_str() {
        "PING" => report("PONG"),
        "ORDER_DETAIL" => {
            let Some(order_id) = details.and_then(|d| d.order_id).and_then(|o| o.as_u64()) else {
                return refused("details.orderId is required");
            };
            let store = state.store();
            match store.order(order_id) {
                Some(order) => report(state.order_view(order)),
                None => report(Value::Null),
            }
        }
        "ORDER_DETAIL_BY_REFERENCE_CODE" => {
            let Some(reference) = details.and_then(|d| d.reference_code) else {
                return refused("details.referenceCode is required");
            };
            let store = state.store();
            match store.order_by_reference(&reference) {
                Some(order) => report(vec![state.order_view(order)]),
                None => report(Value::Null),
            }
        }
        "TRANSACTION_RESPONSE_DETAIL" => {
            let Some(transaction_id) = details.and_then(|d| d.transaction_id) else {
                return refused("details.transactionId is required");
            };
            let store = state.store();
            let found = store
                .order_of_transaction(&transaction_id)
                .and_then(|order| Some((order, order.transaction(&transaction_id)?)));
            match found {
                Some((order, tx)) => {
                    let mut response = state.transaction_response(order, tx);
                    if let Some(fields) = response.as_object_mut() {
                        fields.remove("orderId");
                        fields.remove("transactionId");
                    }
                    report(response)
                }
                None => report(Value::Null),
            }
        }
        _ => refused("Invalid command"),
    }
}

/// `TX_VALUE` as text and money; `Err` is the refusal message.
fn parse_amount(amounts: Option<&AmountsIn>) -> Result<Option<(String, Money)>, &'static str> {
    let Some(amount) = amounts.and_then(|a| a.tx_value.as_ref()) else {
        return Ok(None);
    };
    let raw = amount.value.get().trim();
    let text = match raw.strip_prefix('"') {
        Some(inner) => inner
            .strip_suffix('"')
            .ok_or("Invalid TX_VALUE")?
            .to_owned(),
        None => raw.to_owned(),
    };
    let currency = amount
        .currency
        .as_deref()
        .ok_or("TX_VALUE.currency is required")?;
    let currency = Currency::from_str(currency).map_err(|_| "Invalid currency")?;
    let money = Money::parse(&text, currency).map_err(|_| "Invalid TX_VALUE")?;
    Ok(Some((text, money)))
}

fn printable(text: &str) -> bool {
    !text.is_empty()
        && text.chars().count() <= TEXT_LEN_MAX
        && text.chars().all(|c| !c.is_control())
}

fn extra_text<'a>(extra: Option<&'a Map<String, Value>>, name: &str) -> Option<&'a str> {
    extra?
        .get(name)?
        .as_str()
        .filter(|s| !s.is_empty() && s.len() <= TEXT_LEN_MAX)
}

/// Efecty's optional `transaction.expirationDate` (`YYYY-MM-DDTHH:MM:SS[.fff]`, UTC).
fn parse_expiration(text: &str) -> Option<DateTime<Utc>> {
    [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d %H:%M:%S",
    ]
    .iter()
    .find_map(|f| NaiveDateTime::parse_from_str(text, f).ok())
    .map(|n| n.and_utc())
}

/// What a card charge does: a test token's outcome, or that of a token made by
/// `CREATE_TOKEN` with the same franchise. A removed token is unknown.
fn card_outcome(
    state: &AppState,
    token: Option<&str>,
    franchise: &str,
) -> Result<CardOutcome, &'static str> {
    match token {
        Some(tokens::APPROVED) => return Ok(CardOutcome::Approve),
        Some(tokens::DECLINED) => return Ok(CardOutcome::Decline),
        Some(tokens::ERROR) => return Ok(CardOutcome::Error),
        Some(tokens::PENDING) => return Ok(CardOutcome::PendingThenApprove),
        _ => {}
    }
    let vault = state.vault();
    let saved = token
        .and_then(|t| vault.get(t))
        .ok_or("Invalid creditCardTokenId")?;
    if saved.franchise != franchise {
        return Err("paymentMethod does not match the franchise of the creditCardTokenId");
    }
    Ok(saved.outcome())
}

async fn create(state: &AppState, tx: TransactionIn) -> HttpResponse {
    let fault = *state.fault.lock().unwrap_or_else(PoisonError::into_inner);
    match fault {
        CreateFault::None
        | CreateFault::ApprovedTimeout
        | CreateFault::Approved503
        | CreateFault::ApprovedSilent => {}
        CreateFault::ServerError => {
            return http_error(StatusCode::INTERNAL_SERVER_ERROR, "simulated PayU outage")
        }
        CreateFault::Timeout => {
            tokio::time::sleep(state.timeout_fault_delay).await;
            return http_error(StatusCode::GATEWAY_TIMEOUT, "simulated PayU timeout");
        }
    }

    let Some(order) = tx.order.as_ref() else {
        return refused("transaction.order is required");
    };
    let account_ok = order
        .account_id
        .as_ref()
        .is_some_and(|a| a.text() == state.account_id);
    if !account_ok {
        return refused("Invalid accountId");
    }
    let Some(reference) = order.reference_code.as_deref().filter(|r| printable(r)) else {
        return refused("order.referenceCode must be 1-255 characters");
    };
    let Some(description) = order.description.as_deref().filter(|d| printable(d)) else {
        return refused("order.description must be 1-255 characters");
    };
    let (value_text, amount) = match parse_amount(order.additional_values.as_ref()) {
        Ok(Some(amount)) => amount,
        Ok(None) => return refused("order.additionalValues.TX_VALUE is required"),
        Err(message) => return refused(message),
    };
    let expected = sign(
        state.algorithm,
        &state.signature_secret,
        &request_message(
            &state.api_key,
            &state.merchant_id,
            reference,
            &value_text,
            amount.currency().code(),
        ),
    );
    let signature_ok = order
        .signature
        .as_deref()
        .is_some_and(|s| hex_signature_matches(&expected, s));
    if !signature_ok {
        return refused("Invalid signature");
    }
    if amount.currency() != Currency::COP {
        return refused("The account takes COP only");
    }
    if tx.payment_country.as_deref() != Some("CO") {
        return refused("paymentCountry must be CO");
    }
    let kind = if tx.kind == "AUTHORIZATION" {
        TxType::Authorization
    } else {
        TxType::AuthorizationAndCapture
    };
    let buyer_email = order
        .buyer
        .as_ref()
        .and_then(|b| b.email_address.clone())
        .or_else(|| tx.payer.as_ref().and_then(|p| p.email_address.clone()))
        .filter(|e| printable(e));
    let now = Utc::now();
    let payment_method = tx.payment_method.as_deref().unwrap_or_default();
    let method = if CARD_FRANCHISES.contains(&payment_method) {
        let outcome = match card_outcome(state, tx.credit_card_token_id.as_deref(), payment_method)
        {
            Ok(outcome) => outcome,
            Err(message) => return refused(message),
        };
        if !amount.amount().fract().is_zero() {
            return refused("TX_VALUE cannot include decimals for cards in COP");
        }
        NewMethod::Card {
            franchise: payment_method.to_owned(),
            outcome,
        }
    } else {
        if kind == TxType::Authorization {
            return refused("Only cards can be authorized without capture");
        }
        match payment_method {
            "EFECTY" => {
                let pesos = amount.amount();
                if pesos < EFECTY_MIN_COP.into() || pesos > EFECTY_MAX_COP.into() {
                    return refused("EFECTY takes 20000 to 6000000 COP");
                }
                let default = now
                    + chrono::Duration::from_std(state.efecty_expiry)
                        .unwrap_or_else(|_| chrono::Duration::days(7));
                let expires_at = match tx.expiration_date.as_deref() {
                    None => default,
                    Some(text) => match parse_expiration(text) {
                        Some(at) if at <= now => {
                            return refused("expirationDate must be in the future")
                        }
                        // PayU ignores a date later than its default.
                        Some(at) => at.min(default),
                        None => return refused("Invalid expirationDate"),
                    },
                };
                NewMethod::Efecty { expires_at }
            }
            "PSE" => {
                let extra = tx.extra_parameters.as_ref();
                let bank = extra_text(extra, "FINANCIAL_INSTITUTION_CODE");
                let approves = match bank {
                    Some(banks::APPROVES) => true,
                    Some(banks::DECLINES) => false,
                    _ => return refused("Invalid FINANCIAL_INSTITUTION_CODE"),
                };
                if !matches!(extra_text(extra, "USER_TYPE"), Some("N") | Some("J")) {
                    return refused("USER_TYPE must be N or J");
                }
                let document_ok = extra_text(extra, "PSE_REFERENCE2")
                    .is_some_and(|t| PSE_DOCUMENT_TYPES.contains(&t));
                if !document_ok {
                    return refused("Invalid PSE_REFERENCE2 (document type)");
                }
                if extra_text(extra, "PSE_REFERENCE1").is_none()
                    || extra_text(extra, "PSE_REFERENCE3").is_none()
                {
                    return refused("PSE_REFERENCE1 and PSE_REFERENCE3 are required");
                }
                let payer_ip = extra_text(extra, "PSE_REFERENCE1")
                    .and_then(|ip| ip.parse::<std::net::IpAddr>().ok());
                if payer_ip.is_none() {
                    return refused("PSE_REFERENCE1 must be the payer's IP address");
                }
                let response_url_ok = extra_text(extra, "RESPONSE_URL")
                    .and_then(|u| reqwest::Url::parse(u).ok())
                    .is_some_and(|u| matches!(u.scheme(), "http" | "https"));
                if !response_url_ok {
                    return refused("RESPONSE_URL is required for PSE");
                }
                NewMethod::Pse {
                    bank: bank.unwrap_or_default().to_owned(),
                    approves,
                }
            }
            _ => return refused("The payment method is not available for this account"),
        }
    };
    let is_card = matches!(method, NewMethod::Card { .. });
    let new = NewPayment {
        reference_code: reference.to_owned(),
        description: description.to_owned(),
        amount,
        buyer_email,
        kind,
        method,
    };

    // A card is confirmed right away: take the confirmation's queue slot first, so no
    // transaction exists without its confirmation.
    let slot = if is_card {
        match state.queue.try_reserve() {
            Some(slot) => Some(slot),
            None => {
                return http_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the confirmation queue is full, retry later",
                )
            }
        }
    } else {
        None
    };
    // The store's lock is released before any answer is held back.
    let answer = {
        let mut store = state.store();
        match store.create(new, now) {
            Ok(Created::Existing(order)) => Ok(state.transaction_answer(&order, &order.payment)),
            Ok(Created::New(order)) => {
                if fault == CreateFault::ApprovedSilent {
                    store.mute(order.id);
                }
                if let Some(slot) = slot {
                    let pending = order.payment.state == TxState::Pending;
                    if !state.queue.schedule(
                        slot,
                        Job {
                            order_id: order.id,
                            approve_if_pending: pending,
                        },
                        state.webhook_delay,
                    ) {
                        return http_error(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "the sandbox is stopping",
                        );
                    }
                }
                tracing::debug!(
                    order_id = order.id,
                    transaction_id = %order.payment.id,
                    "payu sandbox: transaction created"
                );
                Ok(state.transaction_answer(&order, &order.payment))
            }
            Err(StoreError::CapacityExhausted) => Err(http_error(
                StatusCode::SERVICE_UNAVAILABLE,
                StoreError::CapacityExhausted.message(),
            )),
            Err(error) => Err(refused(error.message())),
        }
    };
    let answer = match answer {
        Ok(answer) => answer,
        Err(nothing_made) => return nothing_made,
    };
    // The order stands whatever happens to the answer.
    match fault {
        CreateFault::ApprovedTimeout => {
            tokio::time::sleep(state.timeout_fault_delay).await;
            http_error(StatusCode::GATEWAY_TIMEOUT, "simulated PayU timeout")
        }
        CreateFault::Approved503 => http_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "simulated failure after the order was created",
        ),
        _ => answer,
    }
}

fn operate(state: &AppState, tx: TransactionIn) -> HttpResponse {
    let Some(order_id) = tx
        .order
        .as_ref()
        .and_then(|o| o.id.as_ref())
        .and_then(NumOrText::as_u64)
    else {
        return refused("order.id is required");
    };
    let Some(parent) = tx.parent_transaction_id.as_deref() else {
        return refused("parentTransactionId is required");
    };
    let amount = match parse_amount(tx.additional_values.as_ref()) {
        Ok(amount) => amount.map(|(_, money)| money),
        Err(message) => return refused(message),
    };
    let refund_fault = *state
        .refund_fault
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let now = Utc::now();
    let mut store = state.store();
    let result = match tx.kind.as_str() {
        "CAPTURE" => store.capture(order_id, parent, amount, now),
        "VOID" => store.void(order_id, parent, now),
        _ => {
            let Some(reason) = tx.reason.filter(|r| printable(r)) else {
                return refused("reason is required for a refund");
            };
            store.refund(order_id, parent, amount, reason, now)
        }
    };
    match result {
        Ok(op) if op.kind == TxType::Refund && refund_fault == RefundFault::Approved503 => {
            http_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "simulated failure after the refund was made",
            )
        }
        Ok(op) => match store.order(order_id) {
            Some(order) => state.transaction_answer(order, &op),
            None => refused(StoreError::NotFound.message()),
        },
        Err(error) => refused(error.message()),
    }
}

// ---------------------------------------------------------------------------------------------
// Customer actions and faults
// ---------------------------------------------------------------------------------------------

fn action_error(status: StatusCode, code: &str, message: &str) -> HttpResponse {
    HttpResponse::build(status).json(json!({ "error": code, "message": message }))
}

/// Settles the pending payment of `order_id` and schedules its confirmation.
fn settle_and_confirm(
    state: &AppState,
    store: &mut Store,
    order_id: u64,
    settlement: Settlement,
) -> HttpResponse {
    let pending = store
        .order(order_id)
        .is_some_and(|o| o.payment.state == TxState::Pending);
    if !pending {
        return action_error(
            StatusCode::CONFLICT,
            "invalid_state",
            "the transaction is not pending",
        );
    }
    let Some(slot) = state.queue.try_reserve() else {
        return action_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "webhook_queue_full",
            "the confirmation queue is full, retry later",
        );
    };
    match store.settle(order_id, settlement, Utc::now()) {
        Ok(order) => {
            state.queue.schedule(
                slot,
                Job {
                    order_id,
                    approve_if_pending: false,
                },
                state.webhook_delay,
            );
            HttpResponse::Ok().json(json!({
                "order_id": order.id,
                "transaction_id": order.payment.id,
                "state": order.payment.state.as_str(),
                "response_code": order.payment.response_code,
            }))
        }
        Err(_) => action_error(
            StatusCode::CONFLICT,
            "invalid_state",
            "the transaction is not pending",
        ),
    }
}

fn efecty_order(store: &Store, code: &str) -> Option<(u64, DateTime<Utc>)> {
    let order = store.order_by_code(code)?;
    match &order.method {
        Method::Efecty { expires_at, .. } => Some((order.id, *expires_at)),
        _ => None,
    }
}

async fn efecty_receipt(state: web::Data<AppState>, code: web::Path<String>) -> HttpResponse {
    let store = state.store();
    let Some(order) = store.order_by_code(&code) else {
        return action_error(StatusCode::NOT_FOUND, "not_found", "no such payment code");
    };
    let expires_at = match &order.method {
        Method::Efecty { expires_at, .. } => millis(expires_at),
        _ => 0,
    };
    HttpResponse::Ok().json(json!({
        "payment_method": "EFECTY",
        "code": code.as_str(),
        "value": order.amount.amount().to_string(),
        "currency": order.amount.currency().code(),
        "expiration_date": expires_at,
        "state": order.payment.state.as_str(),
    }))
}

async fn efecty_pay(state: web::Data<AppState>, code: web::Path<String>) -> HttpResponse {
    let mut store = state.store();
    let Some((order_id, expires_at)) = efecty_order(&store, &code) else {
        return action_error(StatusCode::NOT_FOUND, "not_found", "no such payment code");
    };
    if Utc::now() >= expires_at {
        // Lapsed but not swept yet: it expires now, and cannot be paid.
        let _ = settle_and_confirm(&state, &mut store, order_id, Settlement::Expire);
        return action_error(
            StatusCode::CONFLICT,
            "expired",
            "the payment code has expired",
        );
    }
    settle_and_confirm(&state, &mut store, order_id, Settlement::Approve)
}

async fn efecty_expire(state: web::Data<AppState>, code: web::Path<String>) -> HttpResponse {
    let mut store = state.store();
    let Some((order_id, _)) = efecty_order(&store, &code) else {
        return action_error(StatusCode::NOT_FOUND, "not_found", "no such payment code");
    };
    settle_and_confirm(&state, &mut store, order_id, Settlement::Expire)
}

fn pse_order(store: &Store, transaction_id: &str) -> Option<(u64, bool)> {
    let order = store.order_of_transaction(transaction_id)?;
    if order.payment.id != transaction_id {
        return None;
    }
    match &order.method {
        Method::Pse { approves, .. } => Some((order.id, *approves)),
        _ => None,
    }
}

async fn pse_bank_page(state: web::Data<AppState>, id: web::Path<String>) -> HttpResponse {
    let store = state.store();
    let Some((order_id, _)) = pse_order(&store, &id) else {
        return action_error(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such PSE transaction",
        );
    };
    let Some(order) = store.order(order_id) else {
        return action_error(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such PSE transaction",
        );
    };
    let bank = match &order.method {
        Method::Pse { bank, .. } => bank.as_str(),
        _ => "",
    };
    HttpResponse::Ok().json(json!({
        "bank": bank,
        "transaction_id": id.as_str(),
        "value": order.amount.amount().to_string(),
        "currency": order.amount.currency().code(),
        "state": order.payment.state.as_str(),
        "complete": format!("{}/_sandbox/pse/{}/complete", state.base_url, id.as_str()),
        "abandon": format!("{}/_sandbox/pse/{}/abandon", state.base_url, id.as_str()),
    }))
}

async fn pse_complete(state: web::Data<AppState>, id: web::Path<String>) -> HttpResponse {
    let mut store = state.store();
    let Some((order_id, approves)) = pse_order(&store, &id) else {
        return action_error(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such PSE transaction",
        );
    };
    let settlement = if approves {
        Settlement::Approve
    } else {
        Settlement::Decline("ENTITY_DECLINED")
    };
    settle_and_confirm(&state, &mut store, order_id, settlement)
}

async fn pse_abandon(state: web::Data<AppState>, id: web::Path<String>) -> HttpResponse {
    let mut store = state.store();
    let Some((order_id, _)) = pse_order(&store, &id) else {
        return action_error(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such PSE transaction",
        );
    };
    settle_and_confirm(
        &state,
        &mut store,
        order_id,
        Settlement::Decline("ABANDONED_TRANSACTION"),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FaultsIn {
    #[serde(default)]
    create: Option<CreateFault>,
    #[serde(default)]
    refund: Option<RefundFault>,
}

async fn set_faults(state: web::Data<AppState>, body: web::Bytes) -> HttpResponse {
    let faults = match serde_json::from_slice::<FaultsIn>(&body) {
        Ok(faults) if faults.create.is_some() || faults.refund.is_some() => faults,
        _ => {
            return action_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                r#"expected {"create":"none"|"server_error"|"timeout"|"approved_timeout"|"approved_503"|"approved_silent"} and/or {"refund":"none"|"approved_503"}"#,
            )
        }
    };
    let mut create = state.fault.lock().unwrap_or_else(PoisonError::into_inner);
    let mut refund = state
        .refund_fault
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if let Some(fault) = faults.create {
        *create = fault;
    }
    if let Some(fault) = faults.refund {
        *refund = fault;
    }
    HttpResponse::Ok().json(json!({ "create": *create, "refund": *refund }))
}

async fn not_found() -> HttpResponse {
    action_error(StatusCode::NOT_FOUND, "not_found", "no such route")
}
