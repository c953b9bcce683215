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
use commands::relay::{self, RelayConfig};
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
use crate::problem::Problem;
use crate::providers;
use crate::reconciler::{self, ReconcilerConfig};
use crate::routes;
use crate::routes::catalog::ProviderCatalog;

/// Request bodies above this are refused with `413`.
pub const BODY_BYTES_MAX: usize = 1024 * 1024;

/// How long the projections only analysts read (analytics, failures, ledger) wait to gather
/// a larger batch. At half load (185 payments/s) 30 ms batches held ~23 events: 80 commits a
/// second competing with commands on two cores; with 200 ms, create p99 over eight paced runs
/// had a median of 18 ms instead of 32-57 ms. Analysts read these a fifth of a second later.
const ANALYTICAL_LINGER_MS: u64 = 200;
/// How long the relay, and the status projection that readers wait on, gather events before
/// a batch: a few milliseconds of lag for batches several times larger at moderate load.
const RELAY_LINGER_MS: u64 = 3;
const STATUS_LINGER_MS: u64 = 3;

pub type StartupError = Box<dyn std::error::Error + Send + Sync>;

pub async fn connect_database(settings: &Settings) -> Result<PgPool, sqlx::Error> {
    PgPoolOptions::new()
        .max_connections(settings.db_pool_max)
        .acquire_timeout(Duration::from_secs(5))
        // No ping round trip before every use: a broken connection fails its query, which
        // is retried or answered 503 like any other database error, and is then discarded.
        .test_before_acquire(false)
        .connect(&settings.database_url)
        .await
}

pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    sqlx::migrate!("../migrations").run(pool).await
}

pub struct Application {
    port: u16,
    server: Option<Server>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    emulators: Vec<StopEmulator>,
    emulator_urls: BTreeMap<&'static str, String>,
    pool: PgPool,
}

impl Application {
    pub async fn build(settings: Settings) -> Result<Application, StartupError> {
        let pool = connect_database(&settings).await?;
        migrate(&pool).await?;
        let listener = TcpListener::bind(&settings.listen_addr)?;
        let port = listener.local_addr()?.port();
        let (shutdown, shutdown_rx) = watch::channel(false);
        let mut tasks = Vec::new();
        let run_api = matches!(settings.role, ServeRole::All | ServeRole::Api);
        let run_relay = matches!(settings.role, ServeRole::All | ServeRole::Relay);
        let run_projector = matches!(settings.role, ServeRole::All | ServeRole::Projector);
        // This process's appends wake its own relay directly while it leads.
        let local_relay = (run_api && run_relay).then(LocalRelay::default);

        let consumer_config =
            ConsumerConfig::new(settings.amqp_url.clone(), settings.amqp_prefix.clone());
        // Readers waiting for a version are woken by the status projector of this process.
        let version_waiters = web::Data::new(VersionWaiters::new(run_projector));
        let all_projections = projections::all();
        if run_relay || run_projector {
            // Queues first: the relay publishes with `mandatory`, so an event must find them.
            for projection in &all_projections {
                consumer::declare_topology(&consumer_config, projection.name()).await?;
            }
        }
        if run_projector {
            for mut projection in all_projections {
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
                tasks.push(tokio::spawn(consumer::run(
                    pool.clone(),
                    projection,
                    config,
                    shutdown_rx.clone(),
                )));
            }
        }
        if run_relay {
            let mut config =
                RelayConfig::new(settings.amqp_url.clone(), settings.amqp_prefix.clone());
            config.linger_ms = RELAY_LINGER_MS;
            config.local = local_relay.clone();
            tasks.push(tokio::spawn(relay::run(
                pool.clone(),
                config,
                shutdown_rx.clone(),
            )));
        }

        let mut emulators = Vec::new();
        let mut emulator_urls = BTreeMap::new();
        let mut server = None;
        if run_api {
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
                    ..ServiceConfig::default()
                },
                local_relay.clone(),
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
            let pool_data = web::Data::new(pool.clone());
            let key_cache = web::Data::new(crate::auth::KeyCache::default());
            let broker = web::Data::new(crate::routes::health::BrokerProbe::new(
                settings.amqp_url.clone(),
                settings.amqp_prefix.clone(),
            ));
            let http = HttpServer::new(move || {
                App::new()
                    .wrap(ErrorHandlers::new().default_handler(problem_for_bare_errors))
                    .wrap(tracing_actix())
                    .app_data(web::PayloadConfig::new(BODY_BYTES_MAX))
                    .app_data(web::QueryConfig::default().error_handler(|error, _| {
                        Problem::invalid(vec![crate::problem::FieldError {
                            field: "query".into(),
                            message: error.to_string(),
                        }])
                        .into()
                    }))
                    .app_data(service.clone())
                    .app_data(pool_data.clone())
                    .app_data(version_waiters.clone())
                    .app_data(key_cache.clone())
                    .app_data(broker.clone())
                    .app_data(proxies.clone())
                    .app_data(catalog.clone())
                    .app_data(connectors.clone())
                    .configure(routes::health::configure)
                    .configure(routes::payments::configure)
                    .configure(routes::webhooks::configure)
                    .configure(routes::catalog::configure)
                    .configure(routes::checkout::configure)
                    .configure(routes::reports::configure)
                    .configure(routes::audit::configure)
            })
            .workers(settings.http_workers)
            .listen(listener)?
            .shutdown_timeout(5)
            .run();
            server = Some(http);
        }
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

    /// Serves until the server stops (signal) or, without an API, until Ctrl-C; then stops
    /// the background tasks cleanly.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let Application {
            server,
            shutdown,
            tasks,
            emulators,
            ..
        } = self;
        let result = match server {
            Some(server) => server.await,
            None => tokio::signal::ctrl_c().await,
        };
        let _sent = shutdown.send(true);
        for task in tasks {
            let _joined = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
        for stop in emulators {
            stop().await;
        }
        result
    }
}

fn tracing_actix() -> actix_web::middleware::Logger {
    actix_web::middleware::Logger::new("%r %s %Dms").exclude("/health")
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
            "method-not-allowed",
            "Method not allowed",
            "this resource does not take that method",
        ),
        413 => Problem::new(
            status,
            "body-too-large",
            "Body too large",
            format!("request bodies are limited to {BODY_BYTES_MAX} bytes"),
        ),
        s if s < 500 => Problem::bad_request(status.canonical_reason().unwrap_or("bad request")),
        _ => Problem::new(
            status,
            "internal",
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
