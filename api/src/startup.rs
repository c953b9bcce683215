//! `Application::build`: the composition root. Wires the write side (commands) and the read
//! side (projections) to one HTTP server; binds the listen address (port 0 in tests) before
//! anything starts, so the in-process sandbox knows where to send its webhooks.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::middleware::{ErrorHandlerResponse, ErrorHandlers};
use actix_web::{web, App, HttpServer};
use commands::payments::{PaymentService, ServiceConfig};
use commands::relay::{self, Leadership, RelayConfig};
use commands::relay_waker::LocalRelay;
use projections::consumer::{self, ConsumerConfig};
use projections::status::StatusProjection;
use projections::version_waiters::VersionWaiters;
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::client_ip::TrustedProxies;
use crate::config::{ServeRole, Settings};
use crate::emulated::StopEmulator;
use crate::problem::{Problem, ProblemType};
use crate::providers;
use crate::rate_limit::RateLimits;
use crate::reconciler::{self, ReconcilerConfig};
use crate::routes;
use crate::routes::catalog::ProviderCatalog;
use crate::routes::health::NodeRole;

/// Request bodies above this are refused with `413`.
pub const BODY_BYTES_MAX: usize = 1024 * 1024;

/// How long the projections only analysts read (analytics, failures, ledger) wait to gather
/// a larger batch. At half load (185 payments/s) 30 ms batches held ~23 events: 80 commits a
/// second competing with commands on two cores; with 200 ms, create p99 over eight paced runs
/// had a median of 18 ms instead of 32-57 ms. Analysts read these a fifth of a second later.
const ANALYTICAL_LINGER_MS: u64 = 200;
/// How long the relay gathers appends before it reads a batch: each batch is one read, one
/// envelope per queue and one audit-chain write, whatever it holds. At half load 25 ms took
/// the ledger from 12.5 to 8.5 ms of CPU per payment (3 ms: RabbitMQ 2.7 ms alone) for a
/// projection lag p99 of 48 ms instead of 36.
const RELAY_LINGER_MS: u64 = 25;
/// How long the status projection, which readers wait on, gathers envelopes into one batch.
const STATUS_LINGER_MS: u64 = 3;

pub type StartupError = Box<dyn std::error::Error + Send + Sync>;

fn pool_options(settings: &Settings) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(settings.db_pool_max)
        .acquire_timeout(Duration::from_secs(5))
        // No ping round trip before every use: a broken connection fails its query, which
        // is retried or answered 503 like any other database error, and is then discarded.
        .test_before_acquire(false)
}

pub async fn connect_database(settings: &Settings) -> Result<PgPool, sqlx::Error> {
    pool_options(settings).connect(&settings.database_url).await
}

/// The pool of readers that can be a moment behind: the replica's when `DATABASE_READ_URL`
/// is set, else the primary's. Connected lazily, so a replica that is down does not keep
/// the node from starting: its readers answer 503 and `/health` says `degraded`.
pub struct ReadPool {
    pool: PgPool,
    replica: bool,
}

impl ReadPool {
    pub fn connect(settings: &Settings, primary: &PgPool) -> Result<ReadPool, sqlx::Error> {
        match &settings.database_read_url {
            Some(url) => Ok(ReadPool {
                pool: pool_options(settings).connect_lazy(url)?,
                replica: true,
            }),
            None => Ok(ReadPool {
                pool: primary.clone(),
                replica: false,
            }),
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The replica's pool, when readers have one.
    pub fn replica(&self) -> Option<&PgPool> {
        self.replica.then_some(&self.pool)
    }
}

impl std::ops::Deref for ReadPool {
    type Target = PgPool;

    fn deref(&self) -> &PgPool {
        &self.pool
    }
}

/// Applies the migrations: as the owner of the tables when `DATABASE_OWNER_URL` is set (the
/// service's own role may not create or alter them), else over `pool`.
pub async fn migrate(
    settings: &Settings,
    pool: &PgPool,
) -> Result<(), sqlx::migrate::MigrateError> {
    let migrator = sqlx::migrate!("../migrations");
    match &settings.database_owner_url {
        Some(url) => {
            use sqlx::Connection;
            let mut owner = sqlx::PgConnection::connect(url).await?;
            migrator.run(&mut owner).await?;
            owner
                .close()
                .await
                .map_err(sqlx::migrate::MigrateError::from)
        }
        None => migrator.run(pool).await,
    }
}

/// In production the service connects as a role that cannot rewrite its own history: the
/// owner of `events` (or a superuser) could disable the trigger that keeps it append-only.
/// The owner runs the migrations (`DATABASE_OWNER_URL`); the service is a member of
/// `payledger_app`.
async fn refuse_the_owner(pool: &PgPool) -> Result<(), StartupError> {
    let (superuser, owner): (bool, bool) = sqlx::query_as(
        "SELECT r.rolsuper, pg_has_role(current_user, c.relowner, 'MEMBER')
           FROM pg_roles r, pg_class c
          WHERE r.rolname = current_user AND c.oid = 'public.events'::regclass",
    )
    .fetch_one(pool)
    .await?;
    if superuser || owner {
        return Err(
            "in production DATABASE_URL must name a member of payledger_app, not a \
                    superuser nor the owner of the event store (who may disable its \
                    append-only trigger); the owner goes in DATABASE_OWNER_URL, for migrations"
                .into(),
        );
    }
    Ok(())
}

pub struct Application {
    port: u16,
    server: Server,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    emulators: BTreeMap<&'static str, StopEmulator>,
    emulator_urls: BTreeMap<&'static str, String>,
    pool: PgPool,
}

impl Application {
    pub async fn build(settings: Settings) -> Result<Application, StartupError> {
        let pool = connect_database(&settings).await?;
        migrate(&settings, &pool).await?;
        if settings.production {
            refuse_the_owner(&pool).await?;
        }
        let listener = TcpListener::bind(&settings.listen_addr)?;
        let port = listener.local_addr()?.port();
        let (shutdown, shutdown_rx) = watch::channel(false);
        let mut tasks = Vec::new();
        let run_api = matches!(settings.role, ServeRole::All | ServeRole::Api);
        let run_relay = matches!(settings.role, ServeRole::All | ServeRole::Relay);
        let run_projector = matches!(settings.role, ServeRole::All | ServeRole::Projector);
        // This process's appends wake its own relay directly while it leads.
        let local_relay = (run_api && run_relay).then(LocalRelay::default);

        let mut consumer_config =
            ConsumerConfig::new(settings.amqp_url.clone(), settings.amqp_prefix.clone());
        consumer_config.queue_type = settings.amqp_queue_type;
        // Readers waiting for a version are woken by the status projector of this process.
        let version_waiters = web::Data::new(VersionWaiters::new(run_projector));
        let chosen = projections::select(&settings.projection)
            .ok_or_else(|| format!("--projection must name {}", projections::selectable()))?;
        let mut node = NodeRole {
            role: settings.role,
            projections: Vec::new(),
            relay: run_relay.then(Leadership::default),
        };
        if run_relay || run_projector {
            // Queues before anything is published, when the broker is there; when it is not,
            // the relay declares them once it is back, before it publishes.
            if let Err(error) = declare_every_queue(&consumer_config).await {
                tracing::warn!(%error, "broker unavailable at start; queues are declared later");
            }
        }
        if run_projector {
            for mut projection in chosen {
                let mut config = consumer_config.clone();
                if projection.name() == projections::status::NAME {
                    if run_api {
                        // Readers of this process are handed what it commits.
                        projection = Arc::new(StatusProjection::feeding(
                            version_waiters.clone().into_inner(),
                        ));
                    }
                    config.linger_ms = STATUS_LINGER_MS;
                } else {
                    // Nobody waits on these for read-your-writes: a little staleness buys
                    // fewer, larger transactions.
                    config.linger_ms = ANALYTICAL_LINGER_MS;
                }
                node.projections
                    .push((projection.name(), config.applied_here.clone()));
                tasks.push(tokio::spawn(consumer::run(
                    pool.clone(),
                    projection,
                    config,
                    shutdown_rx.clone(),
                )));
            }
        }
        if run_projector {
            // Merchant webhooks: the dispatcher records deliveries from its own queue, the
            // sender posts them (one sender leads across the cluster).
            let dispatcher: Arc<dyn projections::Projection> =
                Arc::new(notifier::dispatch::Dispatcher);
            let mut config = consumer_config.clone();
            config.linger_ms = ANALYTICAL_LINGER_MS;
            node.projections
                .push((dispatcher.name(), config.applied_here.clone()));
            tasks.push(tokio::spawn(consumer::run(
                pool.clone(),
                dispatcher,
                config,
                shutdown_rx.clone(),
            )));
            tasks.push(tokio::spawn(notifier::sender::run(
                pool.clone(),
                sender_config(&settings),
                shutdown_rx.clone(),
            )));
        }
        let node = web::Data::new(node);
        if let Some(leadership) = node.relay.clone() {
            let mut config =
                RelayConfig::new(settings.amqp_url.clone(), settings.amqp_prefix.clone());
            config.linger_ms = RELAY_LINGER_MS;
            config.local = local_relay.clone();
            config.leadership = leadership;
            tasks.push(tokio::spawn(declare_then_relay(
                pool.clone(),
                consumer_config.clone(),
                config,
                shutdown_rx.clone(),
            )));
        }

        let mut emulators = BTreeMap::new();
        let mut emulator_urls = BTreeMap::new();
        let read_pool = web::Data::new(ReadPool::connect(&settings, &pool)?);
        let pool_data = web::Data::new(pool.clone());
        let broker = web::Data::new(crate::routes::health::BrokerProbe::new(
            settings.amqp_url.clone(),
            settings.amqp_prefix.clone(),
        ));
        let server = if run_api {
            let webhook_host = match listener.local_addr()?.ip() {
                ip if ip.is_unspecified() => "127.0.0.1".to_owned(),
                ip => ip.to_string(),
            };
            let built =
                providers::build(&settings, &format!("http://{webhook_host}:{port}")).await?;
            emulators = built.emulators;
            emulator_urls = built.emulator_urls;
            let catalog = web::Data::new(ProviderCatalog::new(built.connectors.clone()));
            let connectors = web::Data::from(built.connectors.clone());
            let fees = providers::fee_schedule(&settings)?;
            let service = web::Data::new(PaymentService::new(
                pool.clone(),
                built.router,
                Arc::new(fees),
                ServiceConfig {
                    provider_budget: Duration::from_millis(settings.routing.provider_budget_ms),
                    attempt_timeout: Duration::from_millis(
                        settings.routing.provider_attempt_timeout_ms,
                    ),
                    fingerprint_key: commands::payments::FingerprintKey::new(
                        settings.fingerprint_secret.as_bytes(),
                    )
                    .map_err(|problem| format!("FINGERPRINT_SECRET {problem}"))?,
                    ..ServiceConfig::default()
                },
                local_relay.clone(),
            ));
            let target_policy = web::Data::new(notifier::target::TargetPolicy {
                allow_private: settings.merchant_webhooks.allow_private_targets,
            });
            let customers = web::Data::new(commands::customers::CustomerService::new(
                pool.clone(),
                service.shared_router(),
                service.relay_waker(),
                Duration::from_millis(settings.routing.provider_budget_ms),
            ));
            let proxies = web::Data::new(
                TrustedProxies::parse(&settings.trusted_proxies)
                    .map_err(|problem| format!("TRUSTED_PROXIES {problem}"))?,
            );
            tasks.push(tokio::spawn(reconciler::run(
                pool.clone(),
                service.clone().into_inner(),
                ReconcilerConfig {
                    pending_after: Duration::from_millis(settings.routing.reconcile_after_ms),
                    interval: Duration::from_millis(settings.routing.reconcile_interval_ms),
                    review_after: Duration::from_millis(settings.routing.reconcile_review_after_ms),
                },
                shutdown_rx.clone(),
            )));
            let key_cache = web::Data::new(crate::auth::KeyCache::new(settings.production));
            tasks.push(tokio::spawn(crate::keys::watch_changes(
                settings.database_url.clone(),
                key_cache.clone().into_inner(),
                shutdown_rx.clone(),
            )));
            let read_waits = web::Data::new(routes::payments::ReadWaits::default());
            let jwt = match settings.jwt.clone() {
                Some(jwt) => Some(web::Data::new(crate::jwt::JwtVerifier::new(jwt)?)),
                None => None,
            };
            let rate_limits = web::Data::new(RateLimits::new(&settings.rate_limits));
            tasks.push(tokio::spawn(forget_idle_buckets(
                rate_limits.clone(),
                shutdown_rx.clone(),
            )));
            // Before the server starts, so its first requests are counted.
            let _recorder = crate::metrics::handle();
            let contract = crate::openapi::document();
            HttpServer::new(move || {
                App::new()
                    .wrap(ErrorHandlers::new().default_handler(problem_for_bare_errors))
                    .wrap(actix_web::middleware::from_fn(crate::card_numbers::refuse))
                    // Inside the metrics and the request id: a refusal is counted and named.
                    .wrap(actix_web::middleware::from_fn(crate::rate_limit::enforce))
                    .wrap(actix_web::middleware::from_fn(
                        crate::metrics::record_request,
                    ))
                    .wrap(actix_web::middleware::from_fn(crate::request_id::assign))
                    .app_data(web::PayloadConfig::new(BODY_BYTES_MAX))
                    .app_data(web::QueryConfig::default().error_handler(|error, _| {
                        Problem::invalid(vec![crate::problem::FieldError {
                            field: "query".into(),
                            message: error.to_string(),
                        }])
                        .into()
                    }))
                    .app_data(service.clone())
                    .app_data(customers.clone())
                    .app_data(target_policy.clone())
                    .app_data(pool_data.clone())
                    .app_data(read_pool.clone())
                    .app_data(node.clone())
                    .app_data(version_waiters.clone())
                    .app_data(key_cache.clone())
                    .app_data(read_waits.clone())
                    .app_data(rate_limits.clone())
                    .configure(|cfg| {
                        if let Some(jwt) = jwt.clone() {
                            cfg.app_data(jwt);
                        }
                    })
                    .app_data(broker.clone())
                    .app_data(proxies.clone())
                    .app_data(catalog.clone())
                    .app_data(connectors.clone())
                    .configure(routes::health::configure)
                    .configure(routes::operator_health::configure)
                    .configure(crate::metrics::configure)
                    .configure(crate::dashboard::configure)
                    .configure(routes::payments::configure)
                    .configure(routes::customers::configure)
                    .configure(routes::webhooks::configure)
                    .configure(routes::webhook_endpoints::configure)
                    .configure(routes::catalog::configure)
                    .configure(routes::checkout::configure)
                    .configure(routes::reports::configure)
                    .configure(routes::audit::configure)
                    .configure(routes::keys::configure)
                    .configure(|cfg| crate::openapi::configure(cfg, &contract))
            })
            .workers(settings.http_workers)
            .listen(listener)?
            .shutdown_timeout(5)
            .run()
        } else {
            // A relay or projector node answers only its health, for the load balancer or
            // supervisor that watches it.
            HttpServer::new(move || {
                App::new()
                    .app_data(pool_data.clone())
                    .app_data(read_pool.clone())
                    .app_data(broker.clone())
                    .app_data(node.clone())
                    .configure(routes::health::configure)
            })
            .workers(1)
            .listen(listener)?
            .shutdown_timeout(5)
            .run()
        };
        Ok(Application {
            port,
            server,
            shutdown,
            tasks,
            emulators,
            emulator_urls,
            pool,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Base URLs of the in-process provider emulators (under `--sandbox`), by provider.
    pub fn emulator_urls(&self) -> &BTreeMap<&'static str, String> {
        &self.emulator_urls
    }

    /// Takes the in-process emulators out of this application's shutdown, each with the
    /// function that stops it: for drills that stop one provider while the ledger runs.
    pub fn take_emulators(&mut self) -> BTreeMap<&'static str, StopEmulator> {
        std::mem::take(&mut self.emulators)
    }

    /// Serves until the server stops (SIGINT or SIGTERM); then stops the background tasks
    /// cleanly.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let Application {
            server,
            shutdown,
            tasks,
            emulators,
            ..
        } = self;
        let result = server.await;
        let _sent = shutdown.send(true);
        for task in tasks {
            let _joined = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
        for stop in emulators.into_values() {
            stop().await;
        }
        result
    }
}

/// Forgets the rate limiters' idle buckets now and then, so they hold only recent callers.
async fn forget_idle_buckets(limits: web::Data<RateLimits>, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(crate::rate_limit::HOUSEKEEPING_INTERVAL) => limits.housekeeping(),
            _ = shutdown.changed() => return,
        }
    }
}

async fn declare_every_queue(config: &ConsumerConfig) -> lapin::Result<()> {
    for projection in projections::all() {
        consumer::declare_topology(config, projection.as_ref()).await?;
    }
    consumer::declare_topology(config, &notifier::dispatch::Dispatcher).await?;
    Ok(())
}

/// The merchant webhook sender's settings.
fn sender_config(settings: &Settings) -> notifier::sender::SenderConfig {
    let hooks = &settings.merchant_webhooks;
    notifier::sender::SenderConfig {
        policy: notifier::target::TargetPolicy {
            allow_private: hooks.allow_private_targets,
        },
        backoff_base: Duration::from_millis(hooks.backoff_base_ms.max(1)),
        backoff_max: Duration::from_millis(hooks.backoff_max_ms.max(hooks.backoff_base_ms)),
        horizon: Duration::from_secs(hooks.horizon_s),
        timeout: Duration::from_millis(hooks.timeout_ms.clamp(100, 60_000)),
        ..notifier::sender::SenderConfig::default()
    }
}

/// Declares every projection's queues (retrying while the broker is away: a relay started
/// during a broker outage waits for it), then relays. Publishing is `mandatory`, so an event
/// that found no queue fails its batch and is published again: declaring first only spares
/// those retries.
async fn declare_then_relay(
    pool: PgPool,
    consumer_config: ConsumerConfig,
    relay_config: RelayConfig,
    mut shutdown: watch::Receiver<bool>,
) {
    while let Err(error) = declare_every_queue(&consumer_config).await {
        tracing::warn!(%error, "declaring queues failed; retrying");
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(relay_config.retry_delay_ms)) => {}
            _ = shutdown.changed() => {}
        }
        if *shutdown.borrow() {
            return;
        }
    }
    relay::run(pool, relay_config, shutdown).await;
}

/// Errors actix produces itself (unknown route, wrong method, body too large, bad path)
/// come out as plain text; give them the problem+json shape every other error has.
fn problem_for_bare_errors<B>(
    res: actix_web::dev::ServiceResponse<B>,
) -> actix_web::Result<ErrorHandlerResponse<B>>
where
    B: actix_web::body::MessageBody + 'static,
{
    // Our handlers answer JSON (problem+json, or /health's report): leave those alone.
    let is_json = res
        .headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.starts_with("application/problem+json") || v.starts_with("application/json")
        });
    if is_json {
        return Ok(ErrorHandlerResponse::Response(res.map_into_left_body()));
    }
    let status = res.status();
    let problem = match status.as_u16() {
        404 => Problem::not_found("no such resource"),
        405 => Problem::new(
            status,
            ProblemType::MethodNotAllowed,
            "Method not allowed",
            "this resource does not take that method",
        ),
        413 => Problem::new(
            status,
            ProblemType::BodyTooLarge,
            "Body too large",
            format!("request bodies are limited to {BODY_BYTES_MAX} bytes"),
        ),
        s if s < 500 => Problem::bad_request(status.canonical_reason().unwrap_or("bad request")),
        _ => Problem::new(
            status,
            ProblemType::Internal,
            "Internal error",
            "the request could not be completed",
        ),
    };
    let (req, _) = res.into_parts();
    let response = actix_web::ResponseError::error_response(&problem);
    Ok(ErrorHandlerResponse::Response(
        actix_web::dev::ServiceResponse::new(req, response).map_into_right_body(),
    ))
}
