//! Health per part, for operators and the dashboard (an `operator` or `admin` key: the
//! figures are the business's own). `status` is `healthy`, `degraded` or `unhealthy`;
//! `200` for the first two, `503` for the last.
//!
//! - `GET /health/database`: PostgreSQL answers, how long a query took, the pool (open,
//!   in use, idle, maximum) and the read replica when there is one.
//! - `GET /health/payments`: each provider's health check, breaker, this node's recent calls
//!   to it (success rate, mean response time, last success and failure) and today's payments
//!   through it; `unhealthy` when no provider can take a payment.

use std::time::{Duration, Instant};

use actix_web::{web, HttpResponse};
use chrono::Utc;
use commands::breaker::BreakerState;
use commands::payments::PaymentService;
use projections::analytics;
use serde::Serialize;
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::auth::Caller;
use crate::problem::Problem;
use crate::routes::catalog::{ProviderCatalog, ProviderCheck};
use crate::routes::health::{database_ok, replica};
use crate::startup::ReadPool;

/// A `SELECT 1` slower than this means the server or the pool is struggling.
const QUERY_SLOW_MS: f64 = 250.0;
/// A replica further behind than this serves reports that are visibly stale.
const REPLICA_LAG_DEGRADED_S: f64 = 30.0;
/// Below this share of answered calls (over at least `CALLS_MIN`), a provider is degraded:
/// the merchant plan's alert threshold is a 2 % failure rate.
const CALL_SUCCESS_RATE_MIN: f64 = 0.98;
const CALLS_MIN: usize = 10;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/health/database", web::get().to(database))
        .route("/health/payments", web::get().to(payments));
}

/// The operations below, for the contract (`crate::openapi`).
#[derive(utoipa::OpenApi)]
#[openapi(paths(database, payments))]
pub struct Api;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
enum Verdict {
    Healthy,
    Degraded,
    Unhealthy,
}

impl Verdict {
    fn respond(self, body: impl Serialize) -> HttpResponse {
        match self {
            Verdict::Unhealthy => HttpResponse::ServiceUnavailable().json(body),
            _ => HttpResponse::Ok().json(body),
        }
    }
}

/// The pool as sqlx counts it. It does not count callers waiting for a connection; a
/// saturated pool (`in_use` = `max`) is the sign that some do.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct PoolFigures {
    open: u32,
    in_use: u32,
    idle: u32,
    max: u32,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct DatabaseHealth {
    status: Verdict,
    /// How long `SELECT 1` took; `null` when the database did not answer.
    query_ms: Option<f64>,
    pool: PoolFigures,
    /// The read replica, when readers have one: whether it answers, and its lag.
    #[schema(value_type = Option<Object>)]
    replica: Option<Value>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct PaymentsHealth {
    status: Verdict,
    /// The UTC day of `today` figures.
    day: chrono::NaiveDate,
    /// Per provider: its verdict, health check, breaker, this node's recent calls and
    /// today's payments through it.
    #[schema(value_type = Vec<Object>)]
    providers: Vec<Value>,
}

/// PostgreSQL, the pool and the replica (operator and admin keys).
#[utoipa::path(
    get,
    path = "/health/database",
    operation_id = "getDatabaseHealth",
    tag = "health",
    responses(
        (status = 200, description = "`healthy` or `degraded` (slow, saturated, or the replica behind).", body = DatabaseHealth),
        (status = 503, description = "`unhealthy`: PostgreSQL does not answer.", body = DatabaseHealth),
    ),
)]
#[tracing::instrument(skip_all)]
async fn database(
    caller: Caller,
    pool: web::Data<PgPool>,
    read_pool: web::Data<ReadPool>,
) -> Result<HttpResponse, Problem> {
    caller.require_operator()?;
    let started = Instant::now();
    let answers = database_ok(&pool).await;
    let query_ms = started.elapsed().as_secs_f64() * 1000.0;
    let open = pool.size();
    let idle = pool.num_idle() as u32;
    let max = pool.options().get_max_connections();
    let in_use = open.saturating_sub(idle);
    let replica = match read_pool.replica() {
        Some(replica_pool) => Some(replica(replica_pool).await),
        None => None,
    };
    let replica_degraded = replica.as_ref().is_some_and(|r| {
        r["status"] != "ok"
            || r["replication_lag_seconds"].as_f64().unwrap_or(0.0) > REPLICA_LAG_DEGRADED_S
    });
    let verdict = if !answers {
        Verdict::Unhealthy
    } else if in_use >= max || query_ms > QUERY_SLOW_MS || replica_degraded {
        Verdict::Degraded
    } else {
        Verdict::Healthy
    };
    Ok(verdict.respond(DatabaseHealth {
        status: verdict,
        query_ms: answers.then_some(query_ms),
        pool: PoolFigures {
            open,
            in_use,
            idle,
            max,
        },
        replica,
    }))
}

fn provider_verdict(check: &ProviderCheck) -> Verdict {
    let calls = &check.route.calls;
    let failing_calls = calls.calls >= CALLS_MIN
        && calls
            .success_rate
            .is_some_and(|rate| rate < CALL_SUCCESS_RATE_MIN);
    if !check.reachable || !check.route.breaker_passes {
        Verdict::Unhealthy
    } else if !check.ok() || check.route.breaker == BreakerState::HalfOpen || failing_calls {
        Verdict::Degraded
    } else {
        Verdict::Healthy
    }
}

/// Each provider's health, breaker, recent calls and today's payments (operator and admin
/// keys); `unhealthy` when no provider can take a payment.
#[utoipa::path(
    get,
    path = "/health/payments",
    operation_id = "getPaymentsHealth",
    tag = "health",
    responses(
        (status = 200, description = "`healthy`, or `degraded` when some provider is not.", body = PaymentsHealth),
        (status = 503, description = "`unhealthy`: no provider can take a payment.", body = PaymentsHealth),
    ),
)]
#[tracing::instrument(skip_all)]
async fn payments(
    caller: Caller,
    service: web::Data<PaymentService>,
    catalog: web::Data<ProviderCatalog>,
    read_pool: web::Data<ReadPool>,
) -> Result<HttpResponse, Problem> {
    caller.require_operator()?;
    let checks = catalog.checks(&service).await;
    let today = Utc::now().date_naive();
    // Statistics are a bonus: a read model that cannot be read leaves them out.
    let days = tokio::time::timeout(
        Duration::from_secs(2),
        analytics::provider_day(&read_pool, today),
    )
    .await
    .ok()
    .and_then(Result::ok);
    let verdicts: Vec<Verdict> = checks.iter().map(provider_verdict).collect();
    // Payments are taken while any provider can take them.
    let overall = if verdicts.iter().all(|v| *v == Verdict::Unhealthy) {
        Verdict::Unhealthy
    } else if verdicts.iter().all(|v| *v == Verdict::Healthy) {
        Verdict::Healthy
    } else {
        Verdict::Degraded
    };
    let providers: Vec<Value> = checks
        .iter()
        .zip(&verdicts)
        .map(|(check, verdict)| {
            let name = check.route.provider;
            let day = days.as_ref().map(|days| {
                days.iter().find(|d| d.provider == name).map_or_else(
                    || {
                        json!({ "initiated_count": 0, "approved_count": 0, "declined_count": 0,
                               "failed_count": 0, "expired_count": 0, "success_rate": null })
                    },
                    |d| json!(d),
                )
            });
            json!({
                "provider": name,
                "status": verdict,
                "reachable": check.reachable,
                "credentials_accepted": check.credentials_accepted,
                "configuration_complete": check.problems.is_empty(),
                "breaker": check.route.breaker,
                "calls": check.route.calls,
                "today": day,
                "detail": check.detail,
            })
        })
        .collect();
    Ok(overall.respond(PaymentsHealth {
        status: overall,
        day: today,
        providers,
    }))
}
