//! `GET /health`: the database, the broker, the relay's lag and each projection's lag.
//! `503` when a dependency is down. Public: it reveals no payment data.

use std::time::Duration;

use actix_web::{web, HttpResponse};
use lapin::{Connection, ConnectionProperties};
use projections::progress;
use serde_json::json;
use sqlx::PgPool;

use crate::startup::BrokerUrl;

const CHECK_TIMEOUT_MS: u64 = 2_000;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/health", web::get().to(health));
}

async fn database_ok(pool: &PgPool) -> bool {
    let check = sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(pool);
    matches!(
        tokio::time::timeout(Duration::from_millis(CHECK_TIMEOUT_MS), check).await,
        Ok(Ok(1))
    )
}

async fn broker_ok(url: &str) -> bool {
    let connect = Connection::connect(url, ConnectionProperties::default());
    match tokio::time::timeout(Duration::from_millis(CHECK_TIMEOUT_MS), connect).await {
        Ok(Ok(connection)) => {
            let _closed = connection.close(200, "health".into()).await;
            true
        }
        _ => false,
    }
}

#[tracing::instrument(skip_all)]
async fn health(pool: web::Data<PgPool>, broker: web::Data<BrokerUrl>) -> HttpResponse {
    let (database, broker) = tokio::join!(database_ok(&pool), broker_ok(&broker.0));
    let relay = if database {
        progress::relay(&pool).await.ok()
    } else {
        None
    };
    let projections = if database {
        progress::projections(&pool, &[projections::status::NAME])
            .await
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    let healthy = database && broker;
    let body = json!({
        "status": if healthy { "ok" } else { "unavailable" },
        "database": if database { "ok" } else { "down" },
        "broker": if broker { "ok" } else { "down" },
        "relay": relay,
        "projections": projections,
    });
    if healthy {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}
