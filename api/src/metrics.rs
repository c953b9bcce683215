//! Prometheus metrics: `GET /metrics` in the text exposition format, for `operator` and
//! `admin` keys. Counters and histograms are recorded where things happen (HTTP requests
//! here, by a middleware); the state of the ledger (breakers, relay and projection lag, dead
//! letters, the database pool, payments by status) is read when scraped, so it is never stale and
//! costs nothing between scrapes.
//!
//! Names follow Prometheus conventions: `payledger_` prefix, base units last (`_seconds`),
//! `_total` for counters.

use std::sync::OnceLock;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::{web, HttpResponse};
use commands::payments::PaymentService;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use sqlx::PgPool;

use crate::auth::Caller;
use crate::problem::Problem;
use crate::routes::health::BrokerProbe;

/// Latency buckets, seconds: from a cached read to a provider call near its timeout.
const SECONDS_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// The process's recorder, installed on first use (a process has one global recorder; test
/// processes that start several applications share it). `None` when another recorder was
/// installed first: metrics are then not exported by this one.
pub fn handle() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &SECONDS_BUCKETS)
                .ok()?;
            match builder.install_recorder() {
                Ok(handle) => Some(handle),
                Err(error) => {
                    tracing::warn!(%error, "metrics recorder not installed");
                    None
                }
            }
        })
        .as_ref()
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/metrics", web::get().to(scrape));
}

/// `GET /metrics`, for the contract (`crate::openapi`).
#[derive(utoipa::OpenApi)]
#[openapi(paths(scrape))]
pub struct Api;

/// Counts every request by route pattern (never the raw path: ids would explode the label
/// set), method and status, with its latency.
pub async fn record_request(
    request: ServiceRequest,
    next: actix_web::middleware::Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let method = request.method().as_str().to_owned();
    let route = request
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    let response = next.call(request).await?;
    let status = response.status().as_u16().to_string();
    metrics::counter!(
        "payledger_http_requests_total",
        "method" => method.clone(), "route" => route.clone(), "status" => status
    )
    .increment(1);
    metrics::histogram!(
        "payledger_http_request_duration_seconds",
        "method" => method, "route" => route
    )
    .record(started.elapsed().as_secs_f64());
    Ok(response)
}

/// Prometheus metrics of this node, in the text exposition format (operator and admin keys).
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "getMetrics",
    tag = "health",
    responses((status = 200, description = "The metrics.", body = String, content_type = "text/plain; version=0.0.4; charset=utf-8")),
)]
#[tracing::instrument(skip_all)]
async fn scrape(
    caller: Caller,
    pool: web::Data<PgPool>,
    broker: web::Data<BrokerProbe>,
    service: web::Data<PaymentService>,
) -> Result<HttpResponse, Problem> {
    caller.require_operator()?;
    let handle = handle().ok_or_else(|| Problem::unavailable("metrics are not recorded"))?;
    // Open while it keeps payments from the provider: a breaker past its cool-down lets the
    // next call through, even if no call has come since to move it on.
    for route in service.router().status() {
        let open = !route.breaker_passes;
        metrics::gauge!("payledger_provider_breaker_open", "provider" => route.provider)
            .set(if open { 1.0 } else { 0.0 });
    }
    record_state(&pool, &broker).await;
    handle.run_upkeep();
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(handle.render()))
}

/// Reads the ledger's state into gauges (and counters the store already keeps).
async fn record_state(pool: &PgPool, broker: &BrokerProbe) {
    metrics::gauge!("payledger_db_pool_connections", "state" => "open").set(pool.size());
    let idle = pool.num_idle() as u32;
    metrics::gauge!("payledger_db_pool_connections", "state" => "idle").set(idle);
    metrics::gauge!("payledger_db_pool_connections", "state" => "in_use")
        .set(pool.size().saturating_sub(idle));
    metrics::gauge!("payledger_db_pool_connections_max").set(pool.options().get_max_connections());
    let names: Vec<&'static str> = projections::all().iter().map(|p| p.name()).collect();
    let database_up = match eventstore::checkpoint::relay_progress(pool).await {
        Ok(relay) => {
            metrics::gauge!("payledger_relay_lag_events").set(relay.events_behind as f64);
            metrics::gauge!("payledger_relay_lag_seconds").set(relay.seconds_behind);
            metrics::counter!("payledger_relay_published_events_total")
                .absolute(u64::try_from(relay.published_total).unwrap_or(0));
            true
        }
        Err(error) => {
            tracing::warn!(%error, "metrics: relay progress unreadable");
            false
        }
    };
    metrics::gauge!("payledger_database_up").set(if database_up { 1.0 } else { 0.0 });
    if database_up {
        if let Ok(lags) = projections::progress::projections(pool, &names).await {
            for lag in lags {
                let projection = lag.projection.clone();
                metrics::gauge!("payledger_projection_lag_events", "projection" => projection.clone())
                    .set(lag.events_behind as f64);
                metrics::gauge!("payledger_projection_lag_seconds", "projection" => projection.clone())
                    .set(lag.seconds_behind);
                metrics::counter!("payledger_projection_applied_events_total", "projection" => projection)
                    .absolute(u64::try_from(lag.applied_total).unwrap_or(0));
            }
        }
        if let Ok((needs_review, outcome_unknown)) =
            projections::status::open_intent_counts(pool).await
        {
            metrics::gauge!("payledger_payments_needing_review").set(needs_review as f64);
            metrics::gauge!("payledger_provider_outcomes_unknown").set(outcome_unknown as f64);
        }
        if let Ok(counts) = projections::status::count_by_status(pool).await {
            for (status, count) in counts {
                metrics::gauge!("payledger_payments", "status" => status).set(count as f64);
            }
        }
    }
    let dead_letters = broker.dead_letters(&names).await;
    metrics::gauge!("payledger_broker_up").set(if dead_letters.is_some() { 1.0 } else { 0.0 });
    for (projection, count) in dead_letters.unwrap_or_default() {
        metrics::gauge!("payledger_projection_dead_letters", "projection" => projection)
            .set(f64::from(count));
    }
}
