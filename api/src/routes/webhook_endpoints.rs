//! `/v1/webhook-endpoints`: where a merchant is told of its payments' events, signed, in each
//! payment's order, retried with backoff; and the log of every delivery.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use notifier::deliveries::{self, Delivery, LogCursor};
use notifier::endpoints::{self, Endpoint, EndpointError};
use notifier::target::TargetPolicy;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use uuid::Uuid;

use crate::auth::{Caller, Role};
use crate::problem::{FieldError, Problem, ProblemType};
use crate::routes::payments::parse_body_with_lists;

/// The operations below, for the contract (`crate::openapi`).
#[derive(utoipa::OpenApi)]
#[openapi(paths(
    create_endpoint,
    list_endpoints,
    get_endpoint,
    delete_endpoint,
    list_deliveries,
    resend_delivery,
))]
pub struct Api;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/v1/webhook-endpoints")
            .route("", web::post().to(create_endpoint))
            .route("", web::get().to(list_endpoints))
            .route("/{id}", web::get().to(get_endpoint))
            .route("/{id}", web::delete().to(delete_endpoint))
            .route("/{id}/deliveries", web::get().to(list_deliveries))
            .route(
                "/{id}/deliveries/{delivery_id}/resend",
                web::post().to(resend_delivery),
            ),
    );
}

/// Event names an endpoint may ask for at most.
const EVENTS_MAX: usize = domain::PaymentEvent::NAMES.len();
const PAGE_SIZE_MAX: i64 = 100;
const PAGE_SIZE_DEFAULT: i64 = 20;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"url": "https://orders.example.com/payledger", "events": ["PaymentApproved", "PaymentDeclined"]}))]
pub(crate) struct CreateEndpointRequest {
    /// Where deliveries are POSTed. In production: https, to a public address.
    #[schema(max_length = 2048)]
    url: String,
    /// Event names to deliver (`PaymentApproved`, ...); left out: every event.
    #[serde(default)]
    #[schema(schema_with = event_names)]
    events: Option<Vec<String>>,
}

fn event_names() -> utoipa::openapi::schema::ArrayBuilder {
    utoipa::openapi::schema::ArrayBuilder::new()
        .items(crate::openapi::one_of_texts(domain::PaymentEvent::NAMES))
        .max_items(Some(EVENTS_MAX))
}

/// A webhook endpoint. `secret` only in the answer to its creation.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct EndpointBody {
    id: Uuid,
    url: String,
    /// The event names delivered; empty: all.
    events: Vec<String>,
    /// `enabled`, or `disabled` (after failing every delivery for the retry horizon).
    status: String,
    status_reason: Option<String>,
    /// The HMAC-SHA256 key of `Payledger-Signature`: shown once, keep it.
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
    created_at: DateTime<Utc>,
}

fn endpoint_body(endpoint: Endpoint, secret: Option<String>) -> EndpointBody {
    EndpointBody {
        id: endpoint.id,
        url: endpoint.url,
        events: endpoint.event_types,
        status: endpoint.status,
        status_reason: endpoint.status_reason,
        secret,
        created_at: endpoint.created_at,
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct EndpointList {
    data: Vec<EndpointBody>,
}

fn read_problem(error: sqlx::Error) -> Problem {
    tracing::error!(%error, "webhook endpoints unavailable");
    Problem::unavailable("the database is unavailable; retry later")
}

fn endpoint_id(path: &str) -> Result<Uuid, Problem> {
    path.parse()
        .map_err(|_| Problem::not_found("no such webhook endpoint"))
}

/// The endpoint, if the caller may see it.
async fn visible(pool: &PgPool, caller: &Caller, path: &str) -> Result<Endpoint, Problem> {
    let scope = caller.payment_scope()?.map(|m| m.as_str());
    endpoints::get(pool, endpoint_id(path)?, scope)
        .await
        .map_err(read_problem)?
        .ok_or_else(|| Problem::not_found("no such webhook endpoint"))
}

/// Registers an endpoint for the merchant's payment events; answers its signing secret, once.
#[utoipa::path(
    post,
    path = "/v1/webhook-endpoints",
    operation_id = "createWebhookEndpoint",
    tag = "webhooks",
    request_body = CreateEndpointRequest,
    responses(
        (status = 201, description = "Registered: deliveries start with the next event.", body = EndpointBody,
            links(("ListWebhookDeliveries" = (operation_id = "listWebhookDeliveries", parameters(("id" = "$response.body#/id")))))),
        (status = 409, description = "The merchant holds as many endpoints as allowed.", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Not an allowed URL (in production: https to a public address), or an unknown event name.", body = Problem, content_type = "application/problem+json"),
    ),
)]
#[tracing::instrument(skip_all)]
pub(crate) async fn create_endpoint(
    req: HttpRequest,
    caller: Caller,
    pool: web::Data<PgPool>,
    policy: web::Data<TargetPolicy>,
    body: web::Bytes,
) -> Result<HttpResponse, Problem> {
    if caller.role != Role::Checkout {
        return Err(Problem::forbidden(
            "only a checkout key registers webhook endpoints",
        ));
    }
    let merchant = caller
        .merchant
        .as_ref()
        .ok_or_else(|| Problem::forbidden("this key is not bound to a merchant"))?;
    let request: CreateEndpointRequest = parse_body_with_lists(&req, &body)?;
    let mut errors = Vec::new();
    let url = match policy.parse(&request.url) {
        Ok(url) => match policy.check_addresses(&url).await {
            Ok(()) => Some(url),
            Err(e) => {
                errors.push(FieldError::new("url", e));
                None
            }
        },
        Err(e) => {
            errors.push(FieldError::new("url", e));
            None
        }
    };
    let mut events = request.events.unwrap_or_default();
    if events.len() > EVENTS_MAX {
        errors.push(FieldError::new(
            "events",
            format!("at most {EVENTS_MAX} event names"),
        ));
    } else if let Some(unknown) = events
        .iter()
        .find(|e| !domain::PaymentEvent::NAMES.contains(&e.as_str()))
    {
        let shown: String = unknown
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .take(64)
            .collect();
        errors.push(FieldError::new(
            "events",
            format!("`{shown}` is not an event name"),
        ));
    }
    events.sort_unstable();
    events.dedup();
    let Some(url) = url.filter(|_| errors.is_empty()) else {
        return Err(Problem::invalid(errors));
    };
    let (endpoint, secret) = endpoints::create(&pool, merchant.as_str(), url.as_str(), &events)
        .await
        .map_err(|error| match error {
            EndpointError::TooMany => Problem::new(
                StatusCode::CONFLICT,
                ProblemType::TooManyEndpoints,
                "Too many webhook endpoints",
                error.to_string(),
            ),
            EndpointError::Database(e) => read_problem(e),
        })?;
    Ok(HttpResponse::Created().json(endpoint_body(endpoint, Some(secret))))
}

/// The caller's webhook endpoints, oldest first (never their secrets).
#[utoipa::path(
    get,
    path = "/v1/webhook-endpoints",
    operation_id = "listWebhookEndpoints",
    tag = "webhooks",
    responses((status = 200, description = "The endpoints.", body = EndpointList)),
)]
#[tracing::instrument(skip_all)]
pub(crate) async fn list_endpoints(
    caller: Caller,
    pool: web::Data<PgPool>,
) -> Result<HttpResponse, Problem> {
    let scope = caller.payment_scope()?.map(|m| m.as_str());
    let data = endpoints::list(&pool, scope)
        .await
        .map_err(read_problem)?
        .into_iter()
        .map(|e| endpoint_body(e, None))
        .collect();
    Ok(HttpResponse::Ok().json(EndpointList { data }))
}

/// One webhook endpoint.
#[utoipa::path(
    get,
    path = "/v1/webhook-endpoints/{id}",
    operation_id = "getWebhookEndpoint",
    tag = "webhooks",
    params(("id" = Uuid, Path, description = "The endpoint's id")),
    responses(
        (status = 200, description = "The endpoint.", body = EndpointBody),
        (status = 404, description = "No such endpoint for this key.", body = Problem, content_type = "application/problem+json"),
    ),
)]
#[tracing::instrument(skip_all)]
pub(crate) async fn get_endpoint(
    caller: Caller,
    pool: web::Data<PgPool>,
    path: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    let endpoint = visible(&pool, &caller, &path).await?;
    Ok(HttpResponse::Ok().json(endpoint_body(endpoint, None)))
}

/// Deletes an endpoint: nothing more is sent to it.
#[utoipa::path(
    delete,
    path = "/v1/webhook-endpoints/{id}",
    operation_id = "deleteWebhookEndpoint",
    tag = "webhooks",
    params(("id" = Uuid, Path, description = "The endpoint's id")),
    responses(
        (status = 204, description = "Deleted."),
        (status = 404, description = "No such endpoint for this key.", body = Problem, content_type = "application/problem+json"),
    ),
)]
#[tracing::instrument(skip_all)]
pub(crate) async fn delete_endpoint(
    caller: Caller,
    pool: web::Data<PgPool>,
    path: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    let endpoint = visible(&pool, &caller, &path).await?;
    endpoints::delete(&pool, endpoint.id, Some(&endpoint.merchant_id))
        .await
        .map_err(read_problem)?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct LogQuery {
    /// Deliveries per page (1 to 100, default 20).
    #[serde(default)]
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
    /// `next_cursor` of the previous page.
    #[serde(default)]
    #[param(max_length = 256)]
    cursor: Option<String>,
}

/// One delivery of one event to the endpoint.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct DeliveryBody {
    id: Uuid,
    /// `Payledger-Event-Id`: the same on every attempt.
    event_id: String,
    event_type: String,
    payment_id: Uuid,
    /// `pending`, `succeeded`, or `failed` (given up after the retry horizon).
    state: String,
    attempts: i32,
    next_attempt_at: DateTime<Utc>,
    last_attempt_at: Option<DateTime<Utc>>,
    last_status_code: Option<i32>,
    last_error: Option<String>,
    created_at: DateTime<Utc>,
    delivered_at: Option<DateTime<Utc>>,
}

impl From<Delivery> for DeliveryBody {
    fn from(d: Delivery) -> Self {
        DeliveryBody {
            id: d.id,
            event_id: d.event_id,
            event_type: d.event_type,
            payment_id: d.payment_id,
            state: d.state,
            attempts: d.attempts,
            next_attempt_at: d.next_attempt_at,
            last_attempt_at: d.last_attempt_at,
            last_status_code: d.last_status_code,
            last_error: d.last_error,
            created_at: d.created_at,
            delivered_at: d.delivered_at,
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct DeliveryPage {
    data: Vec<DeliveryBody>,
    next_cursor: Option<String>,
}

/// The endpoint's deliveries, newest first, a page at a time.
#[utoipa::path(
    get,
    path = "/v1/webhook-endpoints/{id}/deliveries",
    operation_id = "listWebhookDeliveries",
    tag = "webhooks",
    params(("id" = Uuid, Path, description = "The endpoint's id"), LogQuery),
    responses(
        (status = 200, description = "A page of deliveries.", body = DeliveryPage),
        (status = 404, description = "No such endpoint for this key.", body = Problem, content_type = "application/problem+json"),
    ),
)]
#[tracing::instrument(skip_all)]
pub(crate) async fn list_deliveries(
    caller: Caller,
    pool: web::Data<PgPool>,
    path: web::Path<String>,
    query: web::Query<LogQuery>,
) -> Result<HttpResponse, Problem> {
    let endpoint = visible(&pool, &caller, &path).await?;
    let mut errors = Vec::new();
    let (limit, cursor) = crate::routes::cursor::page_query(
        query.limit,
        query.cursor.as_deref(),
        PAGE_SIZE_DEFAULT,
        PAGE_SIZE_MAX,
        &mut errors,
    );
    let cursor = cursor.map(|(created_at, id)| LogCursor { created_at, id });
    if !errors.is_empty() {
        return Err(Problem::invalid(errors));
    }
    let mut rows = deliveries::page(&pool, endpoint.id, cursor, limit + 1)
        .await
        .map_err(read_problem)?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next_cursor = more
        .then(|| rows.last())
        .flatten()
        .map(|d| crate::routes::cursor::encode(d.created_at, d.id));
    Ok(HttpResponse::Ok().json(DeliveryPage {
        data: rows.into_iter().map(DeliveryBody::from).collect(),
        next_cursor,
    }))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Resent {
    id: Uuid,
    state: &'static str,
}

/// Sends a delivery again now (the endpoint is enabled again if it was disabled).
#[utoipa::path(
    post,
    path = "/v1/webhook-endpoints/{id}/deliveries/{delivery_id}/resend",
    operation_id = "resendWebhookDelivery",
    tag = "webhooks",
    params(
        ("id" = Uuid, Path, description = "The endpoint's id"),
        ("delivery_id" = Uuid, Path, description = "The delivery's id"),
    ),
    responses(
        (status = 202, description = "Queued to be sent now.", body = Resent),
        (status = 404, description = "No such endpoint or delivery for this key.", body = Problem, content_type = "application/problem+json"),
    ),
)]
#[tracing::instrument(skip_all)]
pub(crate) async fn resend_delivery(
    caller: Caller,
    pool: web::Data<PgPool>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, Problem> {
    let (endpoint, delivery) = path.into_inner();
    let endpoint = visible(&pool, &caller, &endpoint).await?;
    let delivery: Uuid = delivery
        .parse()
        .map_err(|_| Problem::not_found("no such delivery"))?;
    if !deliveries::resend(&pool, endpoint.id, delivery)
        .await
        .map_err(read_problem)?
    {
        return Err(Problem::not_found("no such delivery"));
    }
    Ok(HttpResponse::Accepted().json(Resent {
        id: delivery,
        state: deliveries::PENDING,
    }))
}
