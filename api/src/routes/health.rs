//! `GET /health`: the database, the broker, the relay's lag, each projection's lag and its
//! dead-lettered messages. `503` when a dependency is down. Public: it reveals no payment
//! data.

use std::collections::BTreeMap;
use std::time::Duration;

use actix_web::{web, HttpResponse};
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};
use projections::{progress, topology};
use serde_json::json;
use sqlx::PgPool;
use tokio::sync::Mutex;

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

/// Reads each projection's dead-letter queue depth over one broker connection kept between
/// calls: a connection handshake per `/health` cost the broker more than the check itself.
/// Reconnects when the connection has dropped.
pub struct BrokerProbe {
    url: String,
    prefix: String,
    connection: Mutex<Option<Connection>>,
}

impl BrokerProbe {
    pub fn new(url: String, prefix: String) -> Self {
        Self {
            url,
            prefix,
            connection: Mutex::new(None),
        }
    }

    /// Each projection's dead-lettered message count (a passive declare: it never creates
    /// anything). `None` when the broker cannot be reached within the check timeout.
    async fn dead_letters(&self, names: &[&'static str]) -> Option<BTreeMap<&'static str, u32>> {
        let check = async {
            let mut connection = self.connection.lock().await;
            if !connection.as_ref().is_some_and(|c| c.status().connected()) {
                *connection = Some(
                    Connection::connect(&self.url, ConnectionProperties::default())
                        .await
                        .ok()?,
                );
            }
            let connection = connection.as_ref()?;
            let mut counts = BTreeMap::new();
            for name in names {
                // A failed passive declare closes the channel: one channel per queue.
                let channel = connection.create_channel().await.ok()?;
                let queue = topology::dead_letter_queue(&self.prefix, name);
                let declared = channel
                    .queue_declare(
                        queue.as_str().into(),
                        QueueDeclareOptions {
                            passive: true,
                            ..QueueDeclareOptions::default()
                        },
                        FieldTable::default(),
                    )
                    .await;
                counts.insert(
                    *name,
                    declared.as_ref().map(|q| q.message_count()).unwrap_or(0),
                );
                if declared.is_ok() {
                    let _closed = channel.close(200, "health".into()).await;
                }
            }
            Some(counts)
        };
        tokio::time::timeout(Duration::from_millis(CHECK_TIMEOUT_MS), check)
            .await
            .ok()
            .flatten()
    }
}

#[tracing::instrument(skip_all)]
async fn health(pool: web::Data<PgPool>, broker: web::Data<BrokerProbe>) -> HttpResponse {
    let names: Vec<&'static str> = projections::all().iter().map(|p| p.name()).collect();
    let (database, dead_letters) = tokio::join!(database_ok(&pool), broker.dead_letters(&names));
    let broker_up = dead_letters.is_some();
    let relay = if database {
        progress::relay(&pool).await.ok()
    } else {
        None
    };
    let lags = if database {
        progress::projections(&pool, &names)
            .await
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    let dead_letters = dead_letters.unwrap_or_default();
    let projections: Vec<_> = lags
        .into_iter()
        .map(|lag| {
            let dead = dead_letters.get(lag.projection.as_str()).copied();
            json!({
                "projection": lag.projection,
                "last_global_position": lag.last_global_position,
                "events_behind": lag.events_behind,
                "seconds_behind": lag.seconds_behind,
                "dead_lettered": dead,
            })
        })
        .collect();
    let healthy = database && broker_up;
    let body = json!({
        "status": if healthy { "ok" } else { "unavailable" },
        "database": if database { "ok" } else { "down" },
        "broker": if broker_up { "ok" } else { "down" },
        "relay": relay,
        "projections": projections,
    });
    if healthy {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}
