//! `GET /health`: the database, the broker, the relay's lag, each projection's lag and its
//! dead-lettered messages. `503` when a dependency is down. Public: it reveals no payment
//! data.

use std::collections::BTreeMap;
use std::time::Duration;

use actix_web::{web, HttpResponse};
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ConnectionProperties};
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

/// Reads each projection's dead-letter queue depth over one broker connection and channel
/// kept between calls: a connection handshake, or four channels opened and closed, per
/// `/health` cost the broker more than the check itself. Reconnects when the connection has
/// dropped; opens a new channel when a passive declare of a missing queue closed the last.
pub struct BrokerProbe {
    url: String,
    prefix: String,
    link: Mutex<Option<(Connection, Channel)>>,
}

impl BrokerProbe {
    pub fn new(url: String, prefix: String) -> Self {
        Self {
            url,
            prefix,
            link: Mutex::new(None),
        }
    }

    /// Each projection's dead-lettered message count (a passive declare: it never creates
    /// anything). `None` when the broker cannot be reached within the check timeout.
    async fn dead_letters(&self, names: &[&'static str]) -> Option<BTreeMap<&'static str, u32>> {
        let check = async {
            let mut link = self.link.lock().await;
            let mut counts = BTreeMap::new();
            for name in names {
                let usable = link
                    .as_ref()
                    .is_some_and(|(c, ch)| c.status().connected() && ch.status().connected());
                if !usable {
                    let connection = match link.take() {
                        Some((connection, _)) if connection.status().connected() => connection,
                        _ => Connection::connect(&self.url, ConnectionProperties::default())
                            .await
                            .ok()?,
                    };
                    let channel = connection.create_channel().await.ok()?;
                    *link = Some((connection, channel));
                }
                let (_, channel) = link.as_ref()?;
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
                // A missing queue (its projector never ran) counts none; the broker closed
                // the channel, and the next name opens another.
                counts.insert(*name, declared.map(|q| q.message_count()).unwrap_or(0));
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
        eventstore::checkpoint::relay_progress(pool.get_ref())
            .await
            .ok()
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
    let intents = if database {
        projections::status::open_intent_counts(&pool)
            .await
            .ok()
            .map(|(needs_review, outcome_unknown)| {
                json!({ "needs_review": needs_review, "provider_outcome_unknown": outcome_unknown })
            })
    } else {
        None
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
        // Provider calls without an outcome: resolving, or waiting for an operator.
        "intents": intents,
    });
    if healthy {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}
