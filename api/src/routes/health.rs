//! Health, for load balancers and operators. Public: it reveals no payment data, and to a
//! caller without an operator or admin key no figure either.
//!
//! - `GET /health/live`: the process answers (a load balancer restarts nothing on it; an
//!   orchestrator would restart a process that stops answering).
//! - `GET /health/ready`: this process can do its role's work now: an API node needs
//!   PostgreSQL (commands append to the store and nothing else); a relay or a projector also
//!   needs the broker. `503` takes a node out of the load balancer's rotation.
//! - `GET /health`: whether each part answers, for anyone; with an operator or admin key the
//!   full report (replica lag, relay and projection lags, dead letters, open intents). `200` `ok`, `200` `degraded` when a part this role
//!   does not need is down, `503` `unavailable` when the role cannot serve.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix_web::{web, HttpResponse};
use commands::relay::Leadership;
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use lapin::{Channel, Connection};
use projections::{progress, topology};
use serde_json::{json, Value};
use sqlx::PgPool;
use tokio::sync::Mutex;

use crate::auth::Caller;
use crate::config::ServeRole;
use crate::startup::ReadPool;

const CHECK_TIMEOUT_MS: u64 = 2_000;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/health", web::get().to(health))
        .route("/health/live", web::get().to(live))
        .route("/health/ready", web::get().to(ready));
}

/// The operations below, for the contract (`crate::openapi`).
#[derive(utoipa::OpenApi)]
#[openapi(paths(health, live, ready))]
pub struct Api;

fn up_or_down(up: bool) -> &'static str {
    if up {
        "ok"
    } else {
        "down"
    }
}

fn role_name() -> utoipa::openapi::schema::ObjectBuilder {
    crate::openapi::one_of_texts(["all", "api", "relay", "projector"])
}

fn part_state() -> utoipa::openapi::schema::ObjectBuilder {
    crate::openapi::one_of_texts(["ok", "down", "not needed"])
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
struct Liveness {
    #[schema(schema_with = ok_only)]
    status: &'static str,
}

fn ok_only() -> utoipa::openapi::schema::ObjectBuilder {
    crate::openapi::one_of_texts(["ok"])
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
struct Readiness {
    #[schema(schema_with = role_name)]
    role: &'static str,
    #[schema(schema_with = part_state)]
    database: &'static str,
    #[schema(schema_with = part_state)]
    broker: &'static str,
}

/// What `/health` answers: whether each part answers for anyone; the figures (lags, dead
/// letters, open intents) only for operator and admin keys.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
struct HealthReport {
    #[schema(schema_with = health_status)]
    status: &'static str,
    #[schema(schema_with = role_name)]
    role: &'static str,
    /// Of a projection's projectors, the one whose count moves holds its queue.
    #[serde(skip_serializing_if = "Option::is_none")]
    applied_here: Option<BTreeMap<&'static str, u64>>,
    #[schema(schema_with = part_state)]
    database: &'static str,
    #[schema(schema_with = part_state)]
    broker: &'static str,
    /// The read replica, when readers have one: `status`, and for operators its lag.
    #[schema(value_type = Option<Object>)]
    replica: Option<Value>,
    /// Whether this node's relay leads, and for operators its progress.
    #[schema(value_type = Option<Object>)]
    relay: Option<Value>,
    /// Each projection's lag and dead letters (operators).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    projections: Option<Vec<Value>>,
    /// Provider calls without an outcome: resolving, or waiting for an operator (operators).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    intents: Option<Value>,
}

fn health_status() -> utoipa::openapi::schema::ObjectBuilder {
    crate::openapi::one_of_texts(["ok", "degraded", "unavailable"])
}

/// What this process is, for its health answers.
pub struct NodeRole {
    pub role: ServeRole,
    /// The projections this process runs (none for an API or relay node), each with the
    /// deliveries it has applied here.
    pub projections: Vec<(&'static str, Arc<AtomicU64>)>,
    /// Set when this process runs a relay.
    pub relay: Option<Leadership>,
}

impl NodeRole {
    fn needs_broker(&self) -> bool {
        matches!(self.role, ServeRole::Relay | ServeRole::Projector)
    }

    fn name(&self) -> &'static str {
        match self.role {
            ServeRole::All => "all",
            ServeRole::Api => "api",
            ServeRole::Relay => "relay",
            ServeRole::Projector => "projector",
        }
    }
}

/// Whether PostgreSQL answers. After a restart of PostgreSQL every idle pooled connection is
/// dead and fails its next use (then the pool drops it): the check moves on to the next
/// connection, up to the pool's size, so one probe answers for the server rather than for
/// one stale socket, and drains the stale ones for the commands that follow.
pub(crate) async fn database_ok(pool: &PgPool) -> bool {
    let check = async {
        for _ in 0..=pool.options().get_max_connections() {
            match sqlx::query_scalar::<_, i32>("SELECT 1")
                .fetch_one(pool)
                .await
            {
                Ok(1) => return true,
                Ok(_) | Err(sqlx::Error::Database(_)) => return false,
                Err(_) => {} // a dead connection: it is dropped; try the next
            }
        }
        false
    };
    tokio::time::timeout(Duration::from_millis(CHECK_TIMEOUT_MS), check)
        .await
        .unwrap_or(false)
}

/// The read replica's state: whether it answers and how far its replay is behind the
/// primary's commits it has received. The lag is 0 when the replica has replayed all it
/// received (an idle primary sends nothing, so the last replayed commit's age is not lag).
pub(crate) async fn replica(pool: &PgPool) -> Value {
    let check = sqlx::query_as::<_, (bool, f64)>(
        "SELECT pg_is_in_recovery(),
                CASE WHEN NOT pg_is_in_recovery()
                       OR pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
                     ELSE COALESCE(EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()), 0)
                END::float8",
    )
    .fetch_one(pool);
    match tokio::time::timeout(Duration::from_millis(CHECK_TIMEOUT_MS), check).await {
        Ok(Ok((in_recovery, lag_s))) => json!({
            "status": "ok",
            "in_recovery": in_recovery,
            "replication_lag_seconds": lag_s,
        }),
        _ => json!({ "status": "down" }),
    }
}

/// One broker connection and channel kept between checks: a connection handshake, or four
/// channels opened and closed, per `/health` cost the broker more than the check itself.
/// Reconnects (to any node of `AMQP_URL`) when the connection has dropped; opens a new
/// channel when a passive declare of a missing queue closed the last.
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

    /// A usable channel, reconnecting when needed; `None` when no node answers.
    async fn channel(&self, link: &mut Option<(Connection, Channel)>) -> Option<Channel> {
        let usable = link
            .as_ref()
            .is_some_and(|(c, ch)| c.status().connected() && ch.status().connected());
        if !usable {
            let connection = match link.take() {
                Some((connection, _)) if connection.status().connected() => connection,
                _ => broker::connect(&self.url).await.ok()?,
            };
            let channel = connection.create_channel().await.ok()?;
            *link = Some((connection, channel));
        }
        link.as_ref().map(|(_, channel)| channel.clone())
    }

    /// Whether a broker node answers, within the check timeout.
    async fn reachable(&self) -> bool {
        let check = async {
            let mut link = self.link.lock().await;
            self.channel(&mut link).await.is_some()
        };
        tokio::time::timeout(Duration::from_millis(CHECK_TIMEOUT_MS), check)
            .await
            .unwrap_or(false)
    }

    /// Each projection's dead-lettered message count (a passive declare: it never creates
    /// anything). `None` when the broker cannot be reached within the check timeout.
    pub(crate) async fn dead_letters(
        &self,
        names: &[&'static str],
    ) -> Option<BTreeMap<&'static str, u32>> {
        let check = async {
            let mut link = self.link.lock().await;
            let mut counts = BTreeMap::new();
            for name in names {
                let channel = self.channel(&mut link).await?;
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

/// The process answers.
#[utoipa::path(
    get,
    path = "/health/live",
    operation_id = "getLiveness",
    tag = "health",
    security(()),
    responses((status = 200, description = "The process answers.", body = Liveness)),
)]
async fn live() -> HttpResponse {
    HttpResponse::Ok().json(Liveness { status: "ok" })
}

/// Whether this process can do its role's work now (load balancers take it out on `503`).
#[utoipa::path(
    get,
    path = "/health/ready",
    operation_id = "getReadiness",
    tag = "health",
    security(()),
    responses(
        (status = 200, description = "Ready.", body = Readiness),
        (status = 503, description = "A part this role needs is down.", body = Readiness),
    ),
)]
#[tracing::instrument(skip_all)]
async fn ready(
    pool: web::Data<PgPool>,
    broker: web::Data<BrokerProbe>,
    node: web::Data<NodeRole>,
) -> HttpResponse {
    let database = database_ok(&pool).await;
    let broker_up = !node.needs_broker() || broker.reachable().await;
    let body = Readiness {
        role: node.name(),
        database: up_or_down(database),
        broker: if node.needs_broker() {
            up_or_down(broker_up)
        } else {
            "not needed"
        },
    };
    if database && broker_up {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

/// Whether each part answers; the full report for operator and admin keys.
#[utoipa::path(
    get,
    path = "/health",
    operation_id = "getHealth",
    tag = "health",
    security((), ("api_key" = []), ("jwt" = [])),
    responses(
        (status = 200, description = "The node serves its role (`ok`, or `degraded` when a part it does not need is down).", body = HealthReport),
        (status = 503, description = "The node cannot serve its role.", body = HealthReport),
    ),
)]
#[tracing::instrument(skip_all)]
async fn health(
    caller: Option<Caller>,
    pool: web::Data<PgPool>,
    read_pool: web::Data<ReadPool>,
    broker: web::Data<BrokerProbe>,
    node: web::Data<NodeRole>,
) -> HttpResponse {
    let names: Vec<&'static str> = projections::all().iter().map(|p| p.name()).collect();
    let (database, dead_letters) = tokio::join!(database_ok(&pool), broker.dead_letters(&names));
    let broker_up = dead_letters.is_some();
    let replica = match read_pool.replica() {
        Some(replica_pool) => Some(replica(replica_pool).await),
        None => None,
    };
    let replica_up = replica.as_ref().is_none_or(|r| r["status"] == "ok");
    let serves = database && (broker_up || !node.needs_broker());
    let status = match (serves, broker_up && replica_up) {
        (false, _) => "unavailable",
        (true, false) => "degraded",
        (true, true) => "ok",
    };
    let respond = |body: HealthReport| {
        if serves {
            HttpResponse::Ok().json(body)
        } else {
            HttpResponse::ServiceUnavailable().json(body)
        }
    };
    if caller.is_none_or(|c| c.require_operator().is_err()) {
        // Anyone may ask whether the node serves; the figures are for operators, and they
        // cost queries an anonymous flood must not be able to multiply.
        return respond(HealthReport {
            status,
            role: node.name(),
            applied_here: None,
            database: up_or_down(database),
            broker: up_or_down(broker_up),
            replica: replica.as_ref().map(|r| json!({ "status": r["status"] })),
            relay: node
                .relay
                .as_ref()
                .map(|l| json!({ "leading": l.is_leading() })),
            projections: None,
            intents: None,
        });
    }
    let relay = if database {
        eventstore::checkpoint::relay_progress(pool.get_ref())
            .await
            .ok()
            .and_then(|progress| serde_json::to_value(progress).ok())
    } else {
        None
    };
    let relay = match (relay, &node.relay) {
        (Some(mut progress), Some(leadership)) => {
            progress["leading"] = json!(leadership.is_leading());
            Some(progress)
        }
        (relay, _) => relay,
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
    respond(HealthReport {
        status,
        role: node.name(),
        applied_here: Some(
            node.projections
                .iter()
                .map(|(name, applied)| (*name, applied.load(Ordering::Relaxed)))
                .collect(),
        ),
        database: up_or_down(database),
        broker: up_or_down(broker_up),
        replica,
        relay,
        projections: Some(projections),
        intents: Some(intents.unwrap_or(Value::Null)),
    })
}
