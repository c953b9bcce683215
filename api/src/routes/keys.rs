//! The admin API for keys: list, create, revoke, rotate (`admin` keys only). The key itself is
//! answered once, when made; lists show its prefix. A revocation reaches every node within a
//! second (the database announces it).

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use domain::MerchantId;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use uuid::Uuid;

use crate::auth::{Caller, KeyCache, Role};
use crate::keys::{self, CreatedKey, KeyEnvironment, KeyRecord, NewKey, RotateError};
use crate::problem::{FieldError, Problem, ProblemType};
use crate::routes::payments::parse_body;

/// A rotation's overlap when none is asked: a day for clients to move to the new key.
const OVERLAP_DEFAULT_S: u64 = 86_400;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/api-keys", web::get().to(list))
        .route("/v1/api-keys", web::post().to(create))
        .route("/v1/api-keys/{id}/revoke", web::post().to(revoke))
        .route("/v1/api-keys/{id}/rotate", web::post().to(rotate));
}

/// The operations below, for the contract (`crate::openapi`).
#[derive(utoipa::OpenApi)]
#[openapi(paths(list, create, revoke, rotate))]
pub struct Api;

fn require_admin(caller: &Caller) -> Result<(), Problem> {
    if caller.role == Role::Admin {
        Ok(())
    } else {
        Err(Problem::forbidden("only an admin key manages keys"))
    }
}

fn key_id(path: &str) -> Result<Uuid, Problem> {
    path.parse().map_err(|_| Problem::not_found("no such key"))
}

fn database_problem(error: sqlx::Error) -> Problem {
    tracing::error!(%error, "api key change failed");
    Problem::unavailable("keys cannot be changed right now; retry")
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// At most this many keys, newest first (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct KeyList {
    data: Vec<KeyRecord>,
}

/// Every key, newest first: never the key, only its prefix.
#[utoipa::path(
    get,
    path = "/v1/api-keys",
    operation_id = "listApiKeys",
    tag = "keys",
    params(ListQuery),
    responses((status = 200, description = "The keys.", body = KeyList)),
)]
#[tracing::instrument(skip_all)]
async fn list(
    caller: Caller,
    pool: web::Data<PgPool>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, Problem> {
    require_admin(&caller)?;
    let limit = query.limit.unwrap_or(100);
    if !(1..=keys::LIST_MAX).contains(&limit) {
        return Err(Problem::invalid(vec![FieldError::new(
            "limit",
            format!("must be 1 to {}", keys::LIST_MAX),
        )]));
    }
    let data = keys::list(&pool, limit).await.map_err(database_problem)?;
    Ok(HttpResponse::Ok().json(KeyList { data }))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"role": "checkout", "merchant_id": "m-shop-1", "expires_in_s": 7776000}))]
struct CreateRequest {
    #[schema(schema_with = keys::role_name)]
    role: String,
    /// The merchant a checkout key acts for (required for checkout keys).
    #[schema(max_length = 64, pattern = "^[A-Za-z0-9_-]+$")]
    merchant_id: Option<String>,
    /// `live` or `test`; the deployment's kind when absent.
    #[schema(schema_with = keys::environment_name)]
    environment: Option<String>,
    /// The key stops working this many seconds from now.
    expires_in_s: Option<u64>,
}

/// Makes a key: the answer is the only place the key itself ever appears.
#[utoipa::path(
    post,
    path = "/v1/api-keys",
    operation_id = "createApiKey",
    tag = "keys",
    request_body = CreateRequest,
    responses(
        (status = 201, description = "The key, shown once.", body = CreatedKey,
            links(
                ("RevokeApiKey" = (operation_id = "revokeApiKey", parameters(("id" = "$response.body#/id")))),
                ("RotateApiKey" = (operation_id = "rotateApiKey", parameters(("id" = "$response.body#/id")))),
            )),
        (status = 503, description = "Keys cannot be changed right now.", body = Problem, content_type = "application/problem+json"),
    ),
)]
#[tracing::instrument(skip_all)]
async fn create(
    req: HttpRequest,
    caller: Caller,
    pool: web::Data<PgPool>,
    cache: web::Data<KeyCache>,
    body: web::Bytes,
) -> Result<HttpResponse, Problem> {
    require_admin(&caller)?;
    let request: CreateRequest = parse_body(&req, &body)?;
    let mut errors = Vec::new();
    let role = Role::parse(&request.role);
    if role.is_none() {
        errors.push(FieldError::new(
            "role",
            "one of checkout, analyst, auditor, admin, operator",
        ));
    }
    let merchant = match request.merchant_id.as_deref().map(MerchantId::parse) {
        Some(Err(error)) => {
            errors.push(FieldError::new("merchant_id", error));
            None
        }
        Some(Ok(merchant)) => Some(merchant),
        None => None,
    };
    let environment = match request.environment.as_deref() {
        None => Some(KeyEnvironment::of_deployment(cache.production())),
        Some(text) => KeyEnvironment::parse(text),
    };
    if environment.is_none() {
        errors.push(FieldError::new("environment", "live or test"));
    }
    if cache.production() && environment == Some(KeyEnvironment::Test) {
        errors.push(FieldError::new(
            "environment",
            "production takes live keys only",
        ));
    }
    let (Some(role), Some(environment), true) = (role, environment, errors.is_empty()) else {
        return Err(Problem::invalid(errors));
    };
    let new = NewKey {
        role,
        merchant,
        environment,
        expires_in: request.expires_in_s.map(std::time::Duration::from_secs),
    };
    new.check()
        .map_err(|message| Problem::invalid(vec![FieldError::new("body", message)]))?;
    let created = keys::create(&pool, &new).await.map_err(database_problem)?;
    tracing::info!(key = %created.record.id, role = %created.record.role, "api key created");
    Ok(HttpResponse::Created().json(created))
}

/// Revokes a key: every node refuses it within a second.
#[utoipa::path(
    post,
    path = "/v1/api-keys/{id}/revoke",
    operation_id = "revokeApiKey",
    tag = "keys",
    params(("id" = Uuid, Path, description = "The key's id")),
    responses(
        (status = 200, description = "Revoked (again, if it already was).", body = KeyRecord),
        (status = 404, description = "No such key.", body = Problem, content_type = "application/problem+json"),
    ),
)]
#[tracing::instrument(skip_all)]
async fn revoke(
    caller: Caller,
    pool: web::Data<PgPool>,
    path: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    require_admin(&caller)?;
    let id = key_id(&path)?;
    let record = keys::revoke(&pool, id)
        .await
        .map_err(database_problem)?
        .ok_or_else(|| Problem::not_found("no such key"))?;
    tracing::info!(key = %record.id, "api key revoked");
    Ok(HttpResponse::Ok().json(record))
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct RotateRequest {
    /// How long the old key keeps working beside the new one (default a day).
    overlap_s: Option<u64>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct Rotation {
    key: CreatedKey,
    /// The old key, now expiring at the end of the overlap.
    previous: KeyRecord,
}

/// A new key for the same role and merchant; the old one keeps working for the overlap.
#[utoipa::path(
    post,
    path = "/v1/api-keys/{id}/rotate",
    operation_id = "rotateApiKey",
    tag = "keys",
    params(("id" = Uuid, Path, description = "The key's id")),
    request_body(content = Option<RotateRequest>, description = "Optional: an empty body overlaps a day."),
    responses(
        (status = 201, description = "The new key, shown once, and the old one.", body = Rotation),
        (status = 404, description = "No such key.", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The key is revoked or expired.", body = Problem, content_type = "application/problem+json"),
    ),
)]
#[tracing::instrument(skip_all)]
async fn rotate(
    req: HttpRequest,
    caller: Caller,
    pool: web::Data<PgPool>,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, Problem> {
    require_admin(&caller)?;
    let id = key_id(&path)?;
    let request: RotateRequest = if body.is_empty() {
        RotateRequest::default()
    } else {
        parse_body(&req, &body)?
    };
    let overlap = std::time::Duration::from_secs(request.overlap_s.unwrap_or(OVERLAP_DEFAULT_S));
    let (created, previous) =
        keys::rotate(&pool, id, overlap)
            .await
            .map_err(|error| match error {
                RotateError::NotFound => Problem::not_found("no such key"),
                RotateError::NotActive => Problem::new(
                    StatusCode::CONFLICT,
                    ProblemType::KeyNotActive,
                    "Key not active",
                    "a revoked or expired key cannot be rotated",
                ),
                RotateError::Database(error) => database_problem(error),
            })?;
    tracing::info!(key = %created.record.id, from = %previous.id, "api key rotated");
    Ok(HttpResponse::Created().json(Rotation {
        key: created,
        previous,
    }))
}
