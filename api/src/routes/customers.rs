//! `/v1/customers`: a merchant's customers and the payment methods saved for them at
//! providers, for one-click payments. Commands go to the customer's event stream; the list of
//! saved methods is read from the `customers` projection.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use commands::customers::{
    CustomerCommandError, CustomerService, CustomerState, MethodOutcome, SaveRequest,
};
use connectors::PaymentMethodDetails;
use domain::{
    CardToken, CustomerError, CustomerId, Email, MerchantId, MethodDetail, PaymentMethodType,
    ProviderName, Reference, ReturnUrl, SavedMethodId,
};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use uuid::Uuid;

use crate::auth::{Caller, Role};
use crate::problem::{checked, FieldError, Problem, ProblemType};
use crate::routes::payments::{idempotency_key, parse_body};

/// The operations below, for the contract (`crate::openapi`).
#[derive(utoipa::OpenApi)]
#[openapi(paths(
    create_customer,
    get_customer,
    save_method,
    list_methods,
    sync_method,
    remove_method,
    get_default,
    set_default,
))]
pub struct Api;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/v1/customers")
            .route("", web::post().to(create_customer))
            .route("/{id}", web::get().to(get_customer))
            .route("/{id}/payment-methods", web::post().to(save_method))
            .route("/{id}/payment-methods", web::get().to(list_methods))
            .route(
                "/{id}/payment-methods/{method_id}",
                web::delete().to(remove_method),
            )
            .route(
                "/{id}/payment-methods/{method_id}/sync",
                web::post().to(sync_method),
            )
            .route("/{id}/default-payment-method", web::get().to(get_default))
            .route("/{id}/default-payment-method", web::put().to(set_default)),
    );
}

impl From<CustomerCommandError> for Problem {
    fn from(error: CustomerCommandError) -> Self {
        match &error {
            CustomerCommandError::Rejected(e) => match e {
                CustomerError::NotFound => Problem::not_found("no such customer"),
                CustomerError::NoSuchMethod | CustomerError::MethodRemoved => {
                    Problem::not_found(e.to_string())
                }
                CustomerError::AlreadyExists => Problem::new(
                    StatusCode::CONFLICT,
                    ProblemType::CustomerExists,
                    "Customer reference already used",
                    "this merchant already has a customer with this reference and another email",
                ),
                CustomerError::MethodMismatch => Problem::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    ProblemType::IdempotencyKeyReused,
                    "Idempotency-Key reused",
                    e.to_string(),
                ),
                CustomerError::TooManyMethods => Problem::new(
                    StatusCode::CONFLICT,
                    ProblemType::TooManyMethods,
                    "Too many saved payment methods",
                    e.to_string(),
                ),
                CustomerError::AwaitingVerification => Problem::new(
                    StatusCode::CONFLICT,
                    ProblemType::PaymentMethodAwaitingVerification,
                    "Payment method not verified yet",
                    e.to_string(),
                ),
            },
            CustomerCommandError::Conflict => Problem::new(
                StatusCode::CONFLICT,
                ProblemType::ConcurrentUpdate,
                "Concurrent update",
                "the customer was changed concurrently; retry the request",
            ),
            CustomerCommandError::Unsupported { .. } | CustomerCommandError::UnknownProvider(_) => {
                Problem::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    ProblemType::NotSupportedByProvider,
                    "Not supported by the provider",
                    error.to_string(),
                )
            }
            CustomerCommandError::Provider(e) if !e.is_retryable() => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                ProblemType::ProviderRefused,
                "The payment provider refused the request",
                e.to_string(),
            ),
            // Saves are keyed by our id at the provider and detaches are idempotent: a retry
            // with the same request converges whatever happened.
            CustomerCommandError::Provider(e) => Problem::new(
                StatusCode::BAD_GATEWAY,
                ProblemType::ProviderError,
                "The payment provider did not answer",
                format!("{e}; retry the same request"),
            ),
            CustomerCommandError::Store(detail) => {
                tracing::error!(%detail, "customer store error");
                Problem::unavailable("the event store is unavailable; retry later")
            }
        }
    }
}

/// The merchant a command acts for: only a checkout key bound to one changes customers.
fn merchant_of(caller: &Caller) -> Result<&MerchantId, Problem> {
    if caller.role != Role::Checkout {
        return Err(Problem::forbidden(
            "only a checkout key can change customers",
        ));
    }
    caller
        .merchant
        .as_ref()
        .ok_or_else(|| Problem::forbidden("this key is not bound to a merchant"))
}

fn customer_id(path: &str) -> Result<CustomerId, Problem> {
    path.parse::<CustomerId>()
        .map_err(|_| Problem::not_found("no such customer"))
}

fn method_id(path: &str) -> Result<SavedMethodId, Problem> {
    path.parse::<SavedMethodId>()
        .map_err(|_| Problem::not_found("no such payment method for this customer"))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"reference": "customer-1042", "email": "ana@example.com"}))]
pub(crate) struct CreateCustomerRequest {
    /// The merchant's own id of the customer, unique per merchant.
    #[schema(min_length = 1, max_length = 128, pattern = "^[\\x20-\\x7e]+$")]
    reference: String,
    /// Kept apart from the event stream (it can be erased) and given to providers that ask.
    #[serde(default)]
    #[schema(max_length = 254)]
    email: Option<String>,
}

/// A customer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct CustomerBody {
    id: Uuid,
    reference: String,
    email: Option<String>,
    default_payment_method_id: Option<Uuid>,
    created_at: Option<DateTime<Utc>>,
    /// The customer's stream version.
    version: i64,
}

fn customer_body(state: &CustomerState, email: Option<String>) -> CustomerBody {
    let customer = &state.customer;
    CustomerBody {
        id: customer.id.map(|id| id.as_uuid()).unwrap_or_default(),
        reference: customer
            .reference
            .as_ref()
            .map(|r| r.as_str().to_owned())
            .unwrap_or_default(),
        email,
        default_payment_method_id: customer.default_method.map(|m| m.as_uuid()),
        created_at: customer.created_at,
        version: state.version,
    }
}

/// Creates the merchant's customer with this reference; the same reference again answers the
/// same customer (`200`).
#[utoipa::path(
    post,
    path = "/v1/customers",
    operation_id = "createCustomer",
    tag = "customers",
    request_body = CreateCustomerRequest,
    responses(
        (status = 201, description = "Created.", body = CustomerBody,
            links(("GetCustomer" = (operation_id = "getCustomer", parameters(("id" = "$response.body#/id")))))),
        (status = 200, description = "The customer with this reference, created before.", body = CustomerBody),
        (status = 409, description = "The reference names a customer with another email.", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A field is not valid.", body = Problem, content_type = "application/problem+json"),
    ),
)]
#[tracing::instrument(skip_all)]
pub(crate) async fn create_customer(
    req: HttpRequest,
    caller: Caller,
    service: web::Data<CustomerService>,
    body: web::Bytes,
) -> Result<HttpResponse, Problem> {
    let merchant = merchant_of(&caller)?;
    let request: CreateCustomerRequest = parse_body(&req, &body)?;
    let mut errors = Vec::new();
    let reference = checked(
        &mut errors,
        "reference",
        Reference::parse(&request.reference),
    );
    let email = request
        .email
        .and_then(|email| checked(&mut errors, "email", Email::try_from(email)));
    let Some(reference) = reference.filter(|_| errors.is_empty()) else {
        return Err(Problem::invalid(errors));
    };
    let shown = email.as_ref().map(|e| e.to_string());
    let (state, created) = service.create(merchant, reference, email).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(HttpResponse::build(status).json(customer_body(&state, shown)))
}

/// The customer as their event stream says now.
#[utoipa::path(
    get,
    path = "/v1/customers/{id}",
    operation_id = "getCustomer",
    tag = "customers",
    params(("id" = Uuid, Path, description = "The customer's id")),
    responses(
        (status = 200, description = "The customer.", body = CustomerBody),
        (status = 404, description = "No such customer for this key.", body = Problem, content_type = "application/problem+json"),
    ),
)]
#[tracing::instrument(skip_all)]
pub(crate) async fn get_customer(
    caller: Caller,
    service: web::Data<CustomerService>,
    path: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    let scope = caller.payment_scope()?;
    let id = customer_id(&path)?;
    let state = service.load(id, scope).await?;
    let email = service.email(id).await?;
    Ok(HttpResponse::Ok().json(customer_body(&state, email)))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"type": "CARD", "token": "tok_sandbox_approved", "provider": "sandbox"}))]
pub(crate) struct SaveMethodRequest {
    /// `CARD` (a token of the provider's own tokenization) or `NEQUI` (a wallet).
    #[serde(rename = "type")]
    #[schema(schema_with = saved_types)]
    kind: String,
    /// The provider's card token, for `CARD`. Never a card number.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 512)]
    token: Option<String>,
    /// The wallet's phone, for `NEQUI`.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 64)]
    phone_number: Option<String>,
    /// The provider that keeps the method.
    #[schema(schema_with = provider_name)]
    provider: String,
    /// The customer's acceptance of the provider's terms, where it asks for one (Wompi).
    #[serde(default)]
    #[schema(min_length = 1, max_length = 512)]
    acceptance_token: Option<String>,
    /// Where a provider that verifies saved cards (Maya's 3-D Secure) sends the customer back.
    #[serde(default)]
    return_url: Option<String>,
}

fn saved_types() -> utoipa::openapi::schema::ObjectBuilder {
    crate::openapi::one_of_texts(
        [PaymentMethodType::Card, PaymentMethodType::Nequi].map(PaymentMethodType::as_str),
    )
}

fn provider_name() -> utoipa::openapi::schema::ObjectBuilder {
    crate::openapi::one_of_texts(connectors::registry::known())
}

impl SaveMethodRequest {
    fn parse(self, key: domain::IdempotencyKey) -> Result<SaveRequest, Problem> {
        let mut errors = Vec::new();
        let kind = checked(&mut errors, "type", self.kind.parse::<PaymentMethodType>());
        let provider = ProviderName::try_from(self.provider)
            .ok()
            .filter(|name| connectors::registry::known().any(|known| known == name.as_str()));
        if provider.is_none() {
            let names: Vec<&str> = connectors::registry::known().collect();
            errors.push(FieldError::new(
                "provider",
                format!("must be one of {}", names.join(", ")),
            ));
        }
        let return_url = self
            .return_url
            .and_then(|url| checked(&mut errors, "return_url", ReturnUrl::try_from(url)))
            .map(ReturnUrl::into_string);
        let acceptance_token = self.acceptance_token.and_then(|token| {
            checked(&mut errors, "acceptance_token", CardToken::try_from(token))
                .map(|token| SecretString::from(token.into_string()))
        });
        let method = match kind {
            Some(PaymentMethodType::Card) if self.phone_number.is_none() => match self.token {
                Some(token) => {
                    checked(&mut errors, "token", CardToken::try_from(token)).map(|token| {
                        PaymentMethodDetails::Card {
                            token: token.into_string().into(),
                        }
                    })
                }
                None => {
                    errors.push(FieldError::new("token", "is required for a CARD"));
                    None
                }
            },
            Some(PaymentMethodType::Nequi) if self.token.is_none() => match self.phone_number {
                Some(phone) => checked(&mut errors, "phone_number", MethodDetail::try_from(phone))
                    .map(|phone| PaymentMethodDetails::Nequi {
                        phone_number: phone.into_string().into(),
                    }),
                None => {
                    errors.push(FieldError::new("phone_number", "is required for NEQUI"));
                    None
                }
            },
            Some(PaymentMethodType::Card | PaymentMethodType::Nequi) => {
                errors.push(FieldError::new(
                    "body",
                    "a CARD takes a token, a NEQUI a phone_number, not both",
                ));
                None
            }
            Some(other) => {
                errors.push(FieldError::new(
                    "type",
                    format!("{} cannot be saved: CARD or NEQUI", other.as_str()),
                ));
                None
            }
            None => None,
        };
        match (method, provider) {
            (Some(method), Some(provider)) if errors.is_empty() => Ok(SaveRequest {
                idempotency_key: key,
                provider: provider.into_string(),
                method,
                acceptance_token,
                return_url,
            }),
            _ => Err(Problem::invalid(errors)),
        }
    }
}

/// A saved payment method: what the customer may be shown of it, never what charges it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct MethodBody {
    id: Uuid,
    customer_id: Uuid,
    #[serde(rename = "type")]
    kind: String,
    provider: String,
    brand: Option<String>,
    last_four: Option<String>,
    exp_month: Option<i16>,
    exp_year: Option<i16>,
    /// A wallet's phone, all but its last four digits masked.
    phone_masked: Option<String>,
    is_default: bool,
    saved_at: DateTime<Utc>,
    /// `ACTIVE` (one-click payments charge it), `AWAITING_VERIFICATION` (the customer must
    /// first complete the provider's verification at `next_action`), or, answered once by a
    /// sync, `VERIFICATION_FAILED` (detached and removed).
    #[schema(schema_with = method_statuses)]
    status: &'static str,
    /// While `AWAITING_VERIFICATION`: `{"type": "redirect", "url": ...}`, the provider's
    /// verification page.
    #[schema(value_type = Option<Object>)]
    next_action: Option<serde_json::Value>,
}

fn method_statuses() -> utoipa::openapi::schema::ObjectBuilder {
    crate::openapi::one_of_texts(["ACTIVE", "AWAITING_VERIFICATION", "VERIFICATION_FAILED"])
}

fn method_body(outcome: &MethodOutcome) -> Result<MethodBody, Problem> {
    let customer = &outcome.state.customer;
    let method = customer
        .methods
        .get(&outcome.method_id)
        .ok_or(CustomerCommandError::Rejected(CustomerError::NoSuchMethod))?;
    let status = match (method.removed, method.awaiting_verification) {
        // Only a sync answers a removed method: the one whose verification just failed.
        (true, _) => "VERIFICATION_FAILED",
        (false, true) => "AWAITING_VERIFICATION",
        (false, false) => "ACTIVE",
    };
    let next_action = outcome
        .verification_url
        .clone()
        .map(|url| serde_json::to_value(domain::payment::NextAction::Redirect { url }))
        .transpose()
        .map_err(|e| {
            tracing::error!(error = %e, "next action not serializable");
            Problem::unavailable("retry later")
        })?;
    Ok(MethodBody {
        id: outcome.method_id.as_uuid(),
        customer_id: customer.id.map(|id| id.as_uuid()).unwrap_or_default(),
        kind: method.method_type.as_str().to_owned(),
        provider: method.provider.clone(),
        brand: method.display.brand.clone(),
        last_four: method.display.last_four.clone(),
        exp_month: method.display.exp_month.map(i16::from),
        exp_year: method.display.exp_year.map(|y| y as i16),
        phone_masked: method.display.phone_masked.clone(),
        is_default: customer.default_method == Some(outcome.method_id),
        saved_at: method.saved_at,
        status,
        next_action,
    })
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct MethodList {
    data: Vec<MethodBody>,
}

/// Saves a method at its provider (a card token or a wallet) and keeps only the provider's
/// source and display data. A retry with the same `Idempotency-Key` answers the same method.
#[utoipa::path(
    post,
    path = "/v1/customers/{id}/payment-methods",
    operation_id = "saveCustomerPaymentMethod",
    tag = "customers",
    params(
        ("id" = Uuid, Path, description = "The customer's id"),
        ("Idempotency-Key" = String, Header, description = "The caller's key for this save: a retry with it answers the same method.", min_length = 1, max_length = 255, pattern = "^[!-~]+$"),
    ),
    request_body = SaveMethodRequest,
    responses(
        (status = 201, description = "Saved.", body = MethodBody),
        (status = 400, description = "No `Idempotency-Key`.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such customer for this key.", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The customer keeps as many methods as allowed.", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A field is not valid, a card number was sent, or the provider refused or keeps no such method.", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "The provider did not answer: retry the same request.", body = Problem, content_type = "application/problem+json"),
    ),
)]
#[tracing::instrument(skip_all)]
pub(crate) async fn save_method(
    req: HttpRequest,
    caller: Caller,
    service: web::Data<CustomerService>,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, Problem> {
    let merchant = merchant_of(&caller)?;
    let id = customer_id(&path)?;
    let key = idempotency_key(&req)?;
    let request: SaveMethodRequest = parse_body(&req, &body)?;
    let request = request.parse(key)?;
    let outcome = service.save_method(id, Some(merchant), request).await?;
    Ok(HttpResponse::Created().json(method_body(&outcome)?))
}

/// Asks the provider whether the customer has verified a method that awaits it, and records
/// the answer. A method that awaits nothing is answered as it is.
#[utoipa::path(
    post,
    path = "/v1/customers/{id}/payment-methods/{method_id}/sync",
    operation_id = "syncCustomerPaymentMethod",
    tag = "customers",
    params(
        ("id" = Uuid, Path, description = "The customer's id"),
        ("method_id" = Uuid, Path, description = "The saved method's id"),
    ),
    responses(
        (status = 200, description = "The method as its provider now has it.", body = MethodBody),
        (status = 404, description = "No such customer or method for this key.", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "The provider did not answer: retry.", body = Problem, content_type = "application/problem+json"),
    ),
)]
#[tracing::instrument(skip_all)]
pub(crate) async fn sync_method(
    caller: Caller,
    service: web::Data<CustomerService>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, Problem> {
    let merchant = merchant_of(&caller)?;
    let (id, method) = path.into_inner();
    let outcome = service
        .sync_method(customer_id(&id)?, Some(merchant), method_id(&method)?)
        .await?;
    Ok(HttpResponse::Ok().json(method_body(&outcome)?))
}

/// The customer's saved methods, oldest first, from the read model.
#[utoipa::path(
    get,
    path = "/v1/customers/{id}/payment-methods",
    operation_id = "listCustomerPaymentMethods",
    tag = "customers",
    params(("id" = Uuid, Path, description = "The customer's id")),
    responses(
        (status = 200, description = "The saved methods (display data only).", body = MethodList),
        (status = 404, description = "No such customer for this key.", body = Problem, content_type = "application/problem+json"),
    ),
)]
#[tracing::instrument(skip_all)]
pub(crate) async fn list_methods(
    caller: Caller,
    pool: web::Data<PgPool>,
    path: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    let scope = caller.payment_scope()?;
    let id = customer_id(&path)?;
    let customer = projections::customers::get(&pool, id.as_uuid(), scope.map(|m| m.as_str()))
        .await
        .map_err(read_problem)?
        .ok_or_else(|| Problem::not_found("no such customer"))?;
    let rows = projections::customers::methods(&pool, id.as_uuid())
        .await
        .map_err(read_problem)?;
    let data = rows
        .into_iter()
        .map(|row| MethodBody {
            is_default: customer.default_payment_method_id == Some(row.payment_method_id),
            id: row.payment_method_id,
            customer_id: row.customer_id,
            kind: row.method_type,
            provider: row.provider,
            brand: row.brand,
            last_four: row.last_four,
            exp_month: row.exp_month,
            exp_year: row.exp_year,
            phone_masked: row.phone_masked,
            saved_at: row.saved_at,
            status: if row.status == "AWAITING_VERIFICATION" {
                "AWAITING_VERIFICATION"
            } else {
                "ACTIVE"
            },
            // The page's address is kept in the vault, not the read model: a save or a sync
            // answers it.
            next_action: None,
        })
        .collect();
    Ok(HttpResponse::Ok().json(MethodList { data }))
}

fn read_problem(error: sqlx::Error) -> Problem {
    tracing::error!(%error, "customers read failed");
    Problem::unavailable("the read model is unavailable; retry later")
}

/// Detaches the method at its provider (it charges it no more) and removes it.
#[utoipa::path(
    delete,
    path = "/v1/customers/{id}/payment-methods/{method_id}",
    operation_id = "removeCustomerPaymentMethod",
    tag = "customers",
    params(
        ("id" = Uuid, Path, description = "The customer's id"),
        ("method_id" = Uuid, Path, description = "The saved method's id"),
    ),
    responses(
        (status = 204, description = "Removed (or removed before)."),
        (status = 404, description = "No such customer or method for this key.", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "The provider did not answer: retry.", body = Problem, content_type = "application/problem+json"),
    ),
)]
#[tracing::instrument(skip_all)]
pub(crate) async fn remove_method(
    caller: Caller,
    service: web::Data<CustomerService>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, Problem> {
    let merchant = merchant_of(&caller)?;
    let (id, method) = path.into_inner();
    let id = customer_id(&id)?;
    let method = method_id(&method)?;
    service.remove_method(id, Some(merchant), method).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct DefaultMethod {
    /// The saved method one-click payments use when they name none; `null`: none.
    payment_method_id: Option<Uuid>,
}

/// The customer's default payment method.
#[utoipa::path(
    get,
    path = "/v1/customers/{id}/default-payment-method",
    operation_id = "getDefaultPaymentMethod",
    tag = "customers",
    params(("id" = Uuid, Path, description = "The customer's id")),
    responses(
        (status = 200, description = "The default method's id, or `null`.", body = DefaultMethod),
        (status = 404, description = "No such customer for this key.", body = Problem, content_type = "application/problem+json"),
    ),
)]
#[tracing::instrument(skip_all)]
pub(crate) async fn get_default(
    caller: Caller,
    service: web::Data<CustomerService>,
    path: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    let scope = caller.payment_scope()?;
    let state = service.load(customer_id(&path)?, scope).await?;
    Ok(HttpResponse::Ok().json(DefaultMethod {
        payment_method_id: state.customer.default_method.map(|m| m.as_uuid()),
    }))
}

/// Makes a saved method the customer's default.
#[utoipa::path(
    put,
    path = "/v1/customers/{id}/default-payment-method",
    operation_id = "setDefaultPaymentMethod",
    tag = "customers",
    params(("id" = Uuid, Path, description = "The customer's id")),
    request_body = DefaultMethod,
    responses(
        (status = 200, description = "The default now.", body = DefaultMethod),
        (status = 404, description = "No such customer, or no such saved method.", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "No `payment_method_id`.", body = Problem, content_type = "application/problem+json"),
    ),
)]
#[tracing::instrument(skip_all)]
pub(crate) async fn set_default(
    req: HttpRequest,
    caller: Caller,
    service: web::Data<CustomerService>,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, Problem> {
    let merchant = merchant_of(&caller)?;
    let id = customer_id(&path)?;
    let request: DefaultMethod = parse_body(&req, &body)?;
    let method = request.payment_method_id.ok_or_else(|| {
        Problem::invalid(vec![FieldError::new("payment_method_id", "is required")])
    })?;
    let state = service
        .set_default(id, Some(merchant), SavedMethodId::from_uuid(method))
        .await?;
    Ok(HttpResponse::Ok().json(DefaultMethod {
        payment_method_id: state.customer.default_method.map(|m| m.as_uuid()),
    }))
}
