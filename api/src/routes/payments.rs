//! `/v1/payments`: commands go to the event stream (answers carry the stream `version`);
//! reads come from the status projection, optionally waiting for a `min_version`.

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use commands::payments::{CommandError, CreatePayment, PaymentService, RefundOutcome};
use connectors::{CallOutcome, PaymentMethodDetails};
use domain::payment::RefundStatus;
use domain::{
    CaptureMode, Currency, IdempotencyKey, Money, PaymentError, PaymentId, PaymentMethodType,
    Reference,
};
use projections::status::{self, ListCursor};
use projections::version_waiters::VersionWaiters;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use uuid::Uuid;

use crate::auth::{Caller, Role};
use crate::problem::{json_problem, FieldError, Problem};
use crate::routes::customer::CustomerRequest;
use crate::routes::payment_body::{money_text, PaymentBody};

/// `?status=needs_review` lists payments flagged for review, whatever their status.
const NEEDS_REVIEW: &str = "NEEDS_REVIEW";
pub const PAGE_SIZE_MAX: i64 = 500;
const PAGE_SIZE_DEFAULT: i64 = 50;
const MIN_VERSION_WAIT_MS: u64 = 2_000;
/// Re-read interval while waiting for a version when the status projector runs in another
/// process (nothing will wake the reader), and when it runs in this one (a safety net: its
/// wake-up normally comes first).
const MIN_VERSION_POLL_MS: u64 = 25;
const MIN_VERSION_POLL_MS_WOKEN: u64 = 250;
const TOKEN_LEN_MAX: usize = 512;
const REFUND_REASON_LEN_MAX: usize = 256;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/v1/payments")
            .route("", web::post().to(create_payment))
            .route("", web::get().to(list_payments))
            .route("/{id}", web::get().to(get_payment))
            .route("/{id}/events", web::get().to(payment_events))
            .route("/{id}/capture", web::post().to(capture_payment))
            .route("/{id}/refunds", web::post().to(refund_payment))
            .route("/{id}/void", web::post().to(void_payment))
            .route("/{id}/sync", web::post().to(sync_payment)),
    );
}

/// Maps a refused or failed command to its status: one place, so every handler agrees.
fn command_problem(error: CommandError) -> Problem {
    match &error {
        CommandError::Rejected(e) => match e {
            PaymentError::NotFound | PaymentError::RefundNotFound => {
                Problem::not_found("no such payment")
            }
            PaymentError::IdempotencyMismatch => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency-key-reused",
                "Idempotency-Key reused",
                e.to_string(),
            ),
            PaymentError::InvalidTransition { .. } => Problem::new(
                StatusCode::CONFLICT,
                "invalid-state",
                "Not allowed in the payment's state",
                e.to_string(),
            ),
            PaymentError::CurrencyMismatch { .. }
            | PaymentError::CaptureExceedsAuthorized { .. }
            | PaymentError::RefundExceedsCaptured { .. }
            | PaymentError::ProviderAmountMismatch { .. }
            | PaymentError::Money(_) => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "amount-not-allowed",
                "Amount not allowed",
                e.to_string(),
            ),
        },
        CommandError::ReferenceTaken => Problem::new(
            StatusCode::CONFLICT,
            "reference-taken",
            "Reference already used",
            "this merchant already has a payment with this reference",
        ),
        CommandError::Conflict => Problem::new(
            StatusCode::CONFLICT,
            "concurrent-update",
            "Concurrent update",
            "the payment was changed concurrently; retry the request",
        ),
        CommandError::NoProvider { .. } => Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "no-provider",
            "No provider takes this payment",
            error.to_string(),
        ),
        CommandError::ProvidersUnavailable => Problem::unavailable(error.to_string()),
        CommandError::Unsupported { .. } => Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "not-supported-by-provider",
            "Not supported by the provider",
            error.to_string(),
        ),
        // The provider answered no: a retry would get the same answer.
        CommandError::Provider(e) if !e.is_retryable() => Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "provider-refused",
            "The payment provider refused the request",
            e.to_string(),
        ),
        // The provider may have acted: the intent stays recorded and is resolved with the
        // provider; a retry with the same Idempotency-Key answers its outcome.
        CommandError::Provider(e) if e.outcome() == CallOutcome::Unknown => Problem::new(
            StatusCode::GATEWAY_TIMEOUT,
            "provider-outcome-unknown",
            "The payment provider's answer was lost",
            format!("{e}; the request is recorded and will be resolved with the provider: retry with the same Idempotency-Key"),
        ),
        CommandError::Provider(e) => Problem::new(
            StatusCode::BAD_GATEWAY,
            "provider-error",
            "The payment provider did not accept the request",
            e.to_string(),
        ),
        CommandError::Store(detail) => {
            tracing::error!(%detail, "event store error");
            Problem::unavailable("the event store is unavailable; retry later")
        }
    }
}

fn idempotency_key(req: &HttpRequest) -> Result<IdempotencyKey, Problem> {
    let value = req
        .headers()
        .get("Idempotency-Key")
        .ok_or_else(|| Problem::bad_request("the Idempotency-Key header is required"))?
        .to_str()
        .map_err(|_| Problem::bad_request("Idempotency-Key must be printable ASCII"))?;
    IdempotencyKey::parse(value).map_err(|e| {
        Problem::bad_request(format!(
            "{e} (at most {} characters)",
            IdempotencyKey::LEN_MAX
        ))
    })
}

/// A request body: a JSON object of exactly the expected shape. serde would also read a
/// struct from a JSON array (by position); no request of ours has an array anywhere, so any
/// array is refused.
fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Problem> {
    let parsed: T = serde_json::from_slice(body).map_err(|e| json_problem(&e))?;
    let shape: serde_json::Value = serde_json::from_slice(body).map_err(|e| json_problem(&e))?;
    if !shape.is_object() || contains_array(&shape) {
        return Err(Problem::invalid(vec![field(
            "body",
            "must be a JSON object of the documented fields (no arrays)",
        )]));
    }
    Ok(parsed)
}

fn contains_array(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::Array(_) => true,
        serde_json::Value::Object(map) => map.values().any(contains_array),
        _ => false,
    }
}

fn payment_id(path: &str) -> Result<PaymentId, Problem> {
    path.parse::<PaymentId>()
        .map_err(|_| Problem::not_found("no such payment"))
}

fn field(field: &str, message: impl ToString) -> FieldError {
    FieldError {
        field: field.to_owned(),
        message: message.to_string(),
    }
}

fn parse_money(
    amount: &str,
    currency: Currency,
    name: &str,
    errors: &mut Vec<FieldError>,
) -> Option<Money> {
    Money::parse(amount, currency)
        .map_err(|e| errors.push(field(name, e)))
        .ok()
}

/// Each method type takes its own fields; a field of another type is refused.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PaymentMethodRequest {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    phone_number: Option<String>,
    #[serde(default)]
    financial_institution_code: Option<String>,
    #[serde(default)]
    user_type: Option<u8>,
    #[serde(default)]
    user_legal_id_type: Option<String>,
    #[serde(default)]
    user_legal_id: Option<String>,
}

const METHOD_TEXT_LEN_MAX: usize = 64;

fn bounded_text(
    value: Option<String>,
    name: &str,
    len_max: usize,
    errors: &mut Vec<FieldError>,
) -> String {
    match value {
        Some(v)
            if !v.is_empty() && v.len() <= len_max && v.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            v
        }
        Some(_) => {
            errors.push(field(
                name,
                format!("must be 1 to {len_max} printable ASCII characters"),
            ));
            String::new()
        }
        None => {
            errors.push(field(name, "is required for this payment method type"));
            String::new()
        }
    }
}

impl PaymentMethodRequest {
    fn parse(self, errors: &mut Vec<FieldError>) -> Option<PaymentMethodDetails> {
        let Some(kind) = method_type(&self.kind) else {
            errors.push(field("payment_method.type", "unknown payment method type"));
            return None;
        };
        let before = errors.len();
        let mut refuse_extra = |present: bool, name: &str| {
            if present {
                errors.push(field(
                    &format!("payment_method.{name}"),
                    format!("is not taken by payment method type {}", kind.as_str()),
                ));
            }
        };
        let card = kind == PaymentMethodType::Card;
        let nequi = kind == PaymentMethodType::Nequi;
        let pse = kind == PaymentMethodType::Pse;
        refuse_extra(!card && self.token.is_some(), "token");
        refuse_extra(!nequi && self.phone_number.is_some(), "phone_number");
        refuse_extra(
            !pse && self.financial_institution_code.is_some(),
            "financial_institution_code",
        );
        refuse_extra(!pse && self.user_type.is_some(), "user_type");
        refuse_extra(
            !pse && self.user_legal_id_type.is_some(),
            "user_legal_id_type",
        );
        refuse_extra(!pse && self.user_legal_id.is_some(), "user_legal_id");
        let details = match kind {
            PaymentMethodType::Card => PaymentMethodDetails::Card {
                token: bounded_text(self.token, "payment_method.token", TOKEN_LEN_MAX, errors)
                    .into(),
            },
            PaymentMethodType::Nequi => PaymentMethodDetails::Nequi {
                phone_number: bounded_text(
                    self.phone_number,
                    "payment_method.phone_number",
                    METHOD_TEXT_LEN_MAX,
                    errors,
                )
                .into(),
            },
            PaymentMethodType::Pse => {
                let user_type = match self.user_type {
                    Some(t @ (0 | 1)) => t,
                    _ => {
                        errors.push(field(
                            "payment_method.user_type",
                            "must be 0 (person) or 1 (company)",
                        ));
                        0
                    }
                };
                PaymentMethodDetails::Pse {
                    financial_institution_code: bounded_text(
                        self.financial_institution_code,
                        "payment_method.financial_institution_code",
                        METHOD_TEXT_LEN_MAX,
                        errors,
                    ),
                    user_type,
                    user_legal_id_type: bounded_text(
                        self.user_legal_id_type,
                        "payment_method.user_legal_id_type",
                        METHOD_TEXT_LEN_MAX,
                        errors,
                    ),
                    user_legal_id: bounded_text(
                        self.user_legal_id,
                        "payment_method.user_legal_id",
                        METHOD_TEXT_LEN_MAX,
                        errors,
                    )
                    .into(),
                }
            }
            PaymentMethodType::Efecty => PaymentMethodDetails::Efecty,
            PaymentMethodType::Gcash => PaymentMethodDetails::Gcash,
            PaymentMethodType::Maya => PaymentMethodDetails::Maya,
        };
        (errors.len() == before).then_some(details)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreatePaymentRequest {
    amount: String,
    currency: String,
    reference: String,
    payment_method: PaymentMethodRequest,
    #[serde(default)]
    capture: Option<String>,
    /// The merchant's preferred provider; the router falls back to others.
    #[serde(default)]
    provider: Option<String>,
    #[serde(default)]
    customer_email: Option<String>,
    /// The payer's details, for providers that ask for them.
    #[serde(default)]
    customer: Option<CustomerRequest>,
    /// Where a redirect flow (PSE, wallets) sends the customer back.
    #[serde(default)]
    return_url: Option<String>,
}

/// Providers a merchant may name as its preference.
const PROVIDER_NAMES: [&str; 5] = ["wompi", "payu", "maya", "gcash", "sandbox"];
const EMAIL_LEN_MAX: usize = 254;
const RETURN_URL_LEN_MAX: usize = 2048;

fn method_type(text: &str) -> Option<PaymentMethodType> {
    [
        PaymentMethodType::Card,
        PaymentMethodType::Nequi,
        PaymentMethodType::Pse,
        PaymentMethodType::Efecty,
        PaymentMethodType::Gcash,
        PaymentMethodType::Maya,
    ]
    .into_iter()
    .find(|m| m.as_str() == text)
}

impl CreatePaymentRequest {
    /// Parse, don't validate: every problem is collected, then either all fields are good
    /// or the caller hears about each bad one.
    fn parse(
        self,
        merchant: &domain::MerchantId,
        key: IdempotencyKey,
    ) -> Result<CreatePayment, Problem> {
        let mut errors = Vec::new();
        let currency = self
            .currency
            .parse::<Currency>()
            .map_err(|e| errors.push(field("currency", e)))
            .ok();
        let amount = currency.and_then(|c| parse_money(&self.amount, c, "amount", &mut errors));
        let reference = Reference::parse(&self.reference)
            .map_err(|e| errors.push(field("reference", e)))
            .ok();
        let method = self.payment_method.parse(&mut errors);
        let capture_mode = match self.capture.as_deref() {
            None | Some("automatic") => Some(CaptureMode::Automatic),
            Some("manual") => Some(CaptureMode::Manual),
            Some(_) => {
                errors.push(field("capture", "must be `automatic` or `manual`"));
                None
            }
        };
        if let Some(provider) = &self.provider {
            if !PROVIDER_NAMES.contains(&provider.as_str()) {
                errors.push(field(
                    "provider",
                    format!("must be one of {}", PROVIDER_NAMES.join(", ")),
                ));
            }
        }
        if let Some(email) = &self.customer_email {
            let plausible = email.len() <= EMAIL_LEN_MAX
                && email.bytes().all(|b| b.is_ascii_graphic())
                && email
                    .split_once('@')
                    .is_some_and(|(l, d)| !l.is_empty() && d.contains('.'));
            if !plausible {
                errors.push(field("customer_email", "is not an email address"));
            }
        }
        let customer = self.customer.unwrap_or_default().parse(&mut errors);
        if let Some(url) = &self.return_url {
            let plausible = url.len() <= RETURN_URL_LEN_MAX
                && (url.starts_with("https://") || url.starts_with("http://"))
                && url.bytes().all(|b| b.is_ascii_graphic());
            if !plausible {
                errors.push(field(
                    "return_url",
                    format!("must be an http(s) URL of at most {RETURN_URL_LEN_MAX} characters"),
                ));
            }
        }
        match (amount, reference, method, capture_mode) {
            (Some(amount), Some(reference), Some(payment_method), Some(capture_mode))
                if errors.is_empty() =>
            {
                Ok(CreatePayment {
                    merchant_id: merchant.clone(),
                    idempotency_key: key,
                    reference,
                    amount,
                    payment_method,
                    capture_mode,
                    customer_email: self.customer_email,
                    customer,
                    provider_preference: self.provider,
                    return_url: self.return_url,
                })
            }
            _ => Err(Problem::invalid(errors)),
        }
    }
}

fn payment_response(status: StatusCode, body: PaymentBody) -> HttpResponse {
    HttpResponse::build(status).json(body)
}

#[tracing::instrument(skip_all)]
async fn create_payment(
    req: HttpRequest,
    caller: Caller,
    service: web::Data<PaymentService>,
    body: web::Bytes,
) -> Result<HttpResponse, Problem> {
    if caller.role != Role::Checkout {
        return Err(Problem::forbidden(
            "only a checkout key can create payments",
        ));
    }
    let merchant = caller
        .merchant
        .as_ref()
        .ok_or_else(|| Problem::forbidden("this key is not bound to a merchant"))?;
    let key = idempotency_key(&req)?;
    let request: CreatePaymentRequest = parse_body(&body)?;
    let command = request.parse(merchant, key)?;
    let (executed, created) = service.create(command).await.map_err(command_problem)?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(payment_response(
        status,
        PaymentBody::from_stream(&executed.payment, executed.version),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaptureRequest {
    #[serde(default)]
    amount: Option<String>,
}

#[tracing::instrument(skip_all)]
async fn capture_payment(
    req: HttpRequest,
    caller: Caller,
    service: web::Data<PaymentService>,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, Problem> {
    let scope = caller.payment_scope()?;
    let id = payment_id(&path)?;
    let key = idempotency_key(&req)?;
    let request: CaptureRequest = if body.is_empty() {
        CaptureRequest { amount: None }
    } else {
        parse_body(&body)?
    };
    let current = service.load(id, scope).await.map_err(command_problem)?;
    let amount = match request.amount {
        None => None,
        Some(text) => {
            let currency = current
                .payment
                .currency()
                .ok_or_else(|| Problem::not_found("no such payment"))?;
            let mut errors = Vec::new();
            match parse_money(&text, currency, "amount", &mut errors) {
                Some(m) => Some(m),
                None => return Err(Problem::invalid(errors)),
            }
        }
    };
    let executed = service
        .capture(id, scope, &key, amount)
        .await
        .map_err(command_problem)?;
    let status = if executed.appended > 0 {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(payment_response(
        status,
        PaymentBody::from_stream(&executed.payment, executed.version),
    ))
}

/// Void takes no fields: an empty body or `{}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct VoidRequest {}

#[tracing::instrument(skip_all)]
async fn void_payment(
    caller: Caller,
    service: web::Data<PaymentService>,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, Problem> {
    let scope = caller.payment_scope()?;
    let id = payment_id(&path)?;
    if !body.is_empty() {
        let _empty: VoidRequest = parse_body(&body)?;
    }
    let executed = service.void(id, scope).await.map_err(command_problem)?;
    Ok(payment_response(
        StatusCode::OK,
        PaymentBody::from_stream(&executed.payment, executed.version),
    ))
}

/// Asks the provider for the payment's status and appends what the ledger is missing.
#[tracing::instrument(skip_all)]
async fn sync_payment(
    caller: Caller,
    service: web::Data<PaymentService>,
    path: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    let scope = caller.payment_scope()?;
    let id = payment_id(&path)?;
    let executed = service.sync(id, scope).await.map_err(command_problem)?;
    Ok(payment_response(
        StatusCode::OK,
        PaymentBody::from_stream(&executed.payment, executed.version),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RefundRequest {
    amount: String,
    #[serde(default)]
    reason: Option<String>,
}

#[derive(Debug, Serialize)]
struct RefundBody {
    id: Uuid,
    payment_id: Uuid,
    amount: String,
    currency: String,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    failure: Option<String>,
    payment: PaymentBody,
}

#[tracing::instrument(skip_all)]
async fn refund_payment(
    req: HttpRequest,
    caller: Caller,
    service: web::Data<PaymentService>,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, Problem> {
    let scope = caller.payment_scope()?;
    let id = payment_id(&path)?;
    let key = idempotency_key(&req)?;
    let request: RefundRequest = parse_body(&body)?;
    let current = service.load(id, scope).await.map_err(command_problem)?;
    let currency = current
        .payment
        .currency()
        .ok_or_else(|| Problem::not_found("no such payment"))?;
    let mut errors = Vec::new();
    let amount = parse_money(&request.amount, currency, "amount", &mut errors);
    if let Some(reason) = &request.reason {
        if reason.chars().count() > REFUND_REASON_LEN_MAX {
            errors.push(field(
                "reason",
                format!("at most {REFUND_REASON_LEN_MAX} characters"),
            ));
        }
    }
    let amount = match amount {
        Some(amount) if errors.is_empty() => amount,
        _ => return Err(Problem::invalid(errors)),
    };
    let RefundOutcome {
        executed,
        refund_id,
        status,
        failure,
    } = service
        .refund(id, scope, &key, amount, request.reason.clone())
        .await
        .map_err(command_problem)?;
    let (http_status, text) = match status {
        RefundStatus::Succeeded if executed.appended > 0 => (StatusCode::CREATED, "SUCCEEDED"),
        RefundStatus::Succeeded => (StatusCode::OK, "SUCCEEDED"),
        RefundStatus::Requested => (StatusCode::ACCEPTED, "PENDING"),
        RefundStatus::Failed => {
            return Err(Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "refund-refused",
                "The provider refused the refund",
                format!(
                    "refund {} was refused by {}: {}; nothing was refunded",
                    refund_id,
                    executed.payment.provider,
                    failure.as_deref().unwrap_or("no reason given")
                ),
            ))
        }
    };
    let refund = executed.payment.refunds.get(&refund_id);
    Ok(HttpResponse::build(http_status).json(RefundBody {
        id: refund_id.as_uuid(),
        payment_id: id.as_uuid(),
        amount: refund
            .map(|r| r.amount.amount().to_string())
            .unwrap_or_else(|| money_text(amount.amount(), currency.code())),
        currency: currency.code().to_owned(),
        status: text,
        reason: refund.and_then(|r| r.reason.clone()),
        failure,
        payment: PaymentBody::from_stream(&executed.payment, executed.version),
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GetQuery {
    #[serde(default)]
    min_version: Option<i64>,
    /// RFC 3339: the payment folded from its events recorded by then (auditors too).
    #[serde(default)]
    as_of: Option<String>,
}

/// Reads the status projection; with `min_version`, waits up to 2 s for the projection to
/// catch up with a command this client just made (read-your-writes).
#[tracing::instrument(skip_all)]
async fn get_payment(
    caller: Caller,
    pool: web::Data<PgPool>,
    waiters: web::Data<VersionWaiters>,
    path: web::Path<String>,
    query: web::Query<GetQuery>,
) -> Result<HttpResponse, Problem> {
    if let Some(as_of) = &query.as_of {
        if query.min_version.is_some() {
            return Err(Problem::bad_request("as_of and min_version do not combine"));
        }
        return crate::routes::audit::payment_as_of(&caller, &pool, &path, as_of).await;
    }
    let scope = caller.payment_scope()?.map(|m| m.as_str());
    let id = payment_id(&path)?.as_uuid();
    let wanted = query.min_version.unwrap_or(0);
    let deadline = tokio::time::Instant::now() + Duration::from_millis(MIN_VERSION_WAIT_MS);
    loop {
        // Registered before the read: an apply landing between the two still wakes us.
        let woken = (wanted > 0).then(|| waiters.wait_for(id, wanted)).flatten();
        let row = status::get(&pool, id, scope).await.map_err(read_problem)?;
        let timed_out = tokio::time::Instant::now() >= deadline;
        match row {
            Some(row) if row.version >= wanted || timed_out => {
                return Ok(HttpResponse::Ok().json(PaymentBody::from_row(&row)));
            }
            None if wanted == 0 || timed_out => {
                return Err(Problem::not_found("no such payment"));
            }
            _ => {}
        }
        let poll_ms = match &woken {
            Some(_) if waiters.fed_in_process() => MIN_VERSION_POLL_MS_WOKEN,
            _ => MIN_VERSION_POLL_MS,
        };
        let poll = tokio::time::Instant::now() + Duration::from_millis(poll_ms);
        let sleep = tokio::time::sleep_until(poll.min(deadline));
        match woken {
            Some(woken) => {
                tokio::select! {
                    handed = woken => match handed {
                        // The projector's row as it committed it: no need to read it again.
                        Ok(row) if scope.is_none_or(|m| m == row.merchant_id) => {
                            debug_assert!(row.version >= wanted);
                            return Ok(HttpResponse::Ok().json(PaymentBody::from_row(&row)));
                        }
                        _ => {}
                    },
                    _ = sleep => {}
                }
            }
            None => sleep.await,
        }
    }
}

fn read_problem(error: sqlx::Error) -> Problem {
    tracing::error!(%error, "projection read failed");
    Problem::unavailable("the read model is unavailable; retry later")
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    limit: Option<i64>,
    #[serde(default)]
    cursor: Option<String>,
}

#[derive(Debug, Serialize)]
struct PaymentPage {
    data: Vec<PaymentBody>,
    next_cursor: Option<String>,
}

fn encode_cursor(cursor: ListCursor) -> String {
    hex::encode(format!(
        "{}|{}",
        cursor.created_at.timestamp_micros(),
        cursor.payment_id
    ))
}

fn decode_cursor(text: &str) -> Option<ListCursor> {
    let raw = String::from_utf8(hex::decode(text).ok()?).ok()?;
    let (micros, id) = raw.split_once('|')?;
    Some(ListCursor {
        created_at: DateTime::<Utc>::from_timestamp_micros(micros.parse().ok()?)?,
        payment_id: Uuid::parse_str(id).ok()?,
    })
}

#[tracing::instrument(skip_all)]
async fn list_payments(
    caller: Caller,
    pool: web::Data<PgPool>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, Problem> {
    let scope = caller.payment_scope()?.map(|m| m.as_str());
    let mut errors = Vec::new();
    let limit = query.limit.unwrap_or(PAGE_SIZE_DEFAULT);
    if !(1..=PAGE_SIZE_MAX).contains(&limit) {
        errors.push(field("limit", format!("must be 1 to {PAGE_SIZE_MAX}")));
    }
    let status_filter = match query.status.as_deref() {
        None => None,
        // Not a status: payments with an intent an operator must look at.
        Some(text) if text.eq_ignore_ascii_case(NEEDS_REVIEW) => Some(NEEDS_REVIEW),
        Some(text) => match domain::PaymentStatus::parse(text) {
            Some(s) => Some(s.as_str()),
            None => {
                errors.push(field("status", "unknown status"));
                None
            }
        },
    };
    let cursor = match query.cursor.as_deref() {
        None => None,
        Some(text) => {
            let decoded = decode_cursor(text);
            if decoded.is_none() {
                errors.push(field("cursor", "not a cursor this API returned"));
            }
            decoded
        }
    };
    if !errors.is_empty() {
        return Err(Problem::invalid(errors));
    }
    // One more than asked tells whether another page exists.
    let mut rows = status::list(&pool, scope, status_filter, cursor, limit + 1)
        .await
        .map_err(read_problem)?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next_cursor = more.then(|| rows.last()).flatten().map(|row| {
        encode_cursor(ListCursor {
            created_at: row.created_at,
            payment_id: row.payment_id,
        })
    });
    Ok(HttpResponse::Ok().json(PaymentPage {
        data: rows.iter().map(PaymentBody::from_row).collect(),
        next_cursor,
    }))
}

#[derive(Debug, Serialize)]
struct EventBody {
    sequence: i64,
    #[serde(rename = "type")]
    kind: &'static str,
    data: domain::PaymentEvent,
}

/// The payment's events from the event store, in stream order.
#[tracing::instrument(skip_all)]
async fn payment_events(
    caller: Caller,
    service: web::Data<PaymentService>,
    path: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    let scope = caller.payment_scope()?;
    let id = payment_id(&path)?;
    let events = service.events(id, scope).await.map_err(command_problem)?;
    let body: Vec<EventBody> = events
        .into_iter()
        .map(|(sequence, event)| EventBody {
            sequence,
            kind: event.name(),
            data: event,
        })
        .collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({ "data": body })))
}
