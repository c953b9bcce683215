//! The admin API for keys: list, create, revoke, rotate (`admin` keys only). The key itself is
//! answered once, when made; lists show its prefix. A revocation reaches every node within a
//! second (the database announces it).

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use domain::MerchantId;
use serde::Deserialize;
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use crate::auth::{Caller, KeyCache, Role};
use crate::keys::{self, KeyEnvironment, NewKey, RotateError};
use crate::problem::{FieldError, Problem};
use crate::routes::payments::parse_body;

/// A rotation's overlap when none is asked: a day for clients to move to the new key.
const OVERLAP_DEFAULT_S: u64 = 86_400;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/api-keys", web::get().to(list))
        .route("/v1/api-keys", web::post().to(create))
        .route("/v1/api-keys/{id}/revoke", web::post().to(revoke))
        .route("/v1/api-keys/{id}/rotate", web::post().to(rotate));
}

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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    limit: Option<i64>,
}

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
    Ok(HttpResponse::Ok().json(json!({ "data": data })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateRequest {
    role: String,
    merchant_id: Option<String>,
    environment: Option<String>,
    expires_in_s: Option<u64>,
}

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

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RotateRequest {
    overlap_s: Option<u64>,
}

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
                    "key-not-active",
                    "Key not active",
                    "a revoked or expired key cannot be rotated",
                ),
                RotateError::Database(error) => database_problem(error),
            })?;
    tracing::info!(key = %created.record.id, from = %previous.id, "api key rotated");
    Ok(HttpResponse::Created().json(json!({ "key": created, "previous": previous })))
}
