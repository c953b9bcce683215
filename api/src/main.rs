//! `payledger`: serve, migrate, manage API keys, run the sandbox provider.

use std::process::ExitCode;

use api::auth::Role;
use api::check_config::{self, Environment};
use api::config::{ServeRole, Settings};
use api::keys::{self, KeyEnvironment, NewKey};
use api::startup::{connect_database, migrate, Application, StartupError};
use clap::{Parser, Subcommand};
use domain::MerchantId;

/// glibc's malloc took about a tenth of payledger's CPU under load (many small, short-lived
/// allocations across threads: JSON values, rows, HTTP headers); mimalloc serves them from
/// per-thread pages.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "payledger", about = "Event-sourced payment ledger", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the API, the relay and the projectors (or one of them with --role).
    Serve {
        /// Run the sandbox provider and the provider emulators inside this process (builds
        /// with the `sandbox` feature only).
        #[arg(long)]
        sandbox: bool,
        #[arg(long, value_enum, default_value = "all")]
        role: ServeRole,
        /// The projection a projector runs: status | analytics | failures | ledger | customers | all.
        #[arg(long, default_value = "all")]
        projection: String,
    },
    /// Apply database migrations.
    Migrate,
    /// Rebuild projections from the event store alone (stop live projectors first unless
    /// rebuilding into a scratch schema with --into).
    Replay {
        /// status | analytics | failures | ledger | customers | all
        #[arg(long)]
        projection: String,
        /// Rebuild into this schema instead of the live tables.
        #[arg(long)]
        into: Option<String>,
        #[arg(long, default_value_t = projections::replay::BATCH_SIZE_DEFAULT)]
        batch_size: i64,
    },
    /// Check the configuration for an environment; exits non-zero naming each problem.
    CheckConfig {
        #[arg(long, value_enum)]
        env: Environment,
    },
    /// Audit the event stream: verify the chain (or an export), export it, print its head.
    Audit {
        #[command(subcommand)]
        command: audit::cli::AuditCommand,
    },
    /// Erase webhook bodies past `--erase-after` (they hold personal data; digest and size
    /// stay) and delete log rows past `--delete-after`. Run it daily, as the tables' owner or
    /// a member of `payledger_retention`; prints what it did as JSON.
    Retention {
        #[arg(long, env = "WEBHOOK_BODY_RETENTION", default_value = "30d")]
        erase_after: String,
        #[arg(long, env = "WEBHOOK_LOG_RETENTION", default_value = "180d")]
        delete_after: String,
    },
    /// Manage API keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Run the sandbox provider on its own (builds with the `sandbox` feature only).
    #[cfg_attr(not(feature = "sandbox"), command(hide = true))]
    Sandbox {
        #[arg(long, env = "SANDBOX_LISTEN_ADDR", default_value = "127.0.0.1:8090")]
        listen: String,
        /// Where to deliver webhooks.
        #[arg(
            long,
            env = "SANDBOX_WEBHOOK_URL",
            default_value = "http://127.0.0.1:8080/v1/webhooks/sandbox"
        )]
        webhook_url: String,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create a key; prints the key alone on stdout (it is stored only hashed).
    Create {
        #[arg(long)]
        role: String,
        /// The merchant a checkout key is bound to.
        #[arg(long)]
        merchant: Option<String>,
        /// `live` or `test` (default: live when PAYLEDGER_ENV=production, else test).
        #[arg(long)]
        environment: Option<String>,
        /// The key stops working after this long (`90d`, `24h`, `30m`).
        #[arg(long)]
        expires_in: Option<String>,
    },
    /// Every key, newest first, as JSON lines (never the key nor its hash).
    List,
    /// Revoke a key by id: every node refuses it within a second.
    Revoke { id: uuid::Uuid },
    /// A new key with the same grants, printed alone on stdout; the old one keeps working for
    /// `--overlap` while clients move over, then expires.
    Rotate {
        id: uuid::Uuid,
        #[arg(long, default_value = "24h")]
        overlap: String,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    api::telemetry::init(std::env::var("LOG_FORMAT").is_ok_and(|f| f == "json"));
    let cli = Cli::parse();
    if let Command::Audit { command } = cli.command {
        // Its own exit statuses: 1 mismatch, 2 could not verify, 3 inconclusive.
        let settings = Settings::from_env();
        // Verifying reads only: a replica serves it when there is one.
        let code = audit::cli::run(
            command,
            settings.read_database_url(),
            &api::read_model::Projections,
            &mut std::io::stdout().lock(),
            &mut std::io::stderr().lock(),
        )
        .await;
        return ExitCode::from(code);
    }
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("payledger: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), StartupError> {
    let mut settings = Settings::from_env();
    match cli.command {
        Command::Serve {
            sandbox,
            role,
            projection,
        } => {
            if sandbox {
                api::emulated::available()?;
            }
            settings.sandbox.in_process = sandbox;
            settings.role = role;
            settings.projection = projection;
            if sandbox && std::env::var("PROVIDERS").is_err() {
                // Every provider, each against its emulator: the whole picture for a demo.
                settings.routing.providers =
                    connectors::registry::known().map(str::to_owned).collect();
            }
            let environment = Environment::from_env();
            let problems = check_config::problems(&settings, environment);
            if !problems.is_empty() {
                for problem in &problems {
                    eprintln!("config: {problem}");
                }
                return Err(format!(
                    "refusing to serve: {} configuration problem(s) for {environment:?}",
                    problems.len()
                )
                .into());
            }
            let app = Application::build(settings.clone()).await?;
            tracing::info!(port = app.port(), ?settings, "payledger serving");
            app.run_until_stopped().await?;
        }
        Command::CheckConfig { env } => {
            let problems = check_config::problems(&settings, env);
            for problem in &problems {
                println!("{problem}");
            }
            if !problems.is_empty() {
                return Err(
                    format!("{} configuration problem(s) for {env:?}", problems.len()).into(),
                );
            }
            eprintln!("configuration ok for {env:?}");
        }
        Command::Replay {
            projection,
            into,
            batch_size,
        } => {
            let chosen = projections::select(&projection)
                .ok_or_else(|| format!("--projection must name {}", projections::selectable()))?;
            if batch_size <= 0 || batch_size > 100_000 {
                return Err("--batch-size must be 1 to 100000".into());
            }
            let pool = connect_database(&settings).await?;
            migrate(&settings, &pool).await?;
            let schema = into.as_deref().unwrap_or("public");
            let report = projections::replay::replay(&pool, &chosen, schema, batch_size).await?;
            println!("{}", serde_json::to_string(&report)?);
        }
        Command::Migrate => {
            let pool = connect_database(&settings).await?;
            migrate(&settings, &pool).await?;
            eprintln!("migrations applied");
        }
        Command::Retention {
            erase_after,
            delete_after,
        } => {
            let erase_after = keys::parse_duration(&erase_after)?;
            let delete_after = keys::parse_duration(&delete_after)?;
            use commands::webhook_deliveries::{DELETE_AFTER_MIN, ERASE_AFTER_MIN};
            if erase_after < ERASE_AFTER_MIN || delete_after < DELETE_AFTER_MIN {
                return Err("bodies are kept a day at least, rows a week at least".into());
            }
            let pool = connect_database(&settings).await?;
            let report = commands::webhook_deliveries::apply_retention(
                &pool,
                erase_after,
                delete_after,
                |so_far| {
                    eprintln!(
                        "retention: {} bodies erased, {} rows deleted so far",
                        so_far.bodies_erased, so_far.rows_deleted
                    )
                },
            )
            .await?;
            println!("{}", serde_json::to_string(&report)?);
        }
        Command::Keys { command } => {
            let pool = connect_database(&settings).await?;
            migrate(&settings, &pool).await?;
            manage_keys(&pool, command, settings.production).await?;
        }
        // Dispatched in `main`, which owns its exit statuses.
        Command::Audit { .. } => return Err("payledger audit runs from main".into()),
        Command::Sandbox {
            listen,
            webhook_url,
        } => api::emulated::serve_sandbox(&settings, &listen, webhook_url).await?,
    }
    Ok(())
}

async fn manage_keys(
    pool: &sqlx::PgPool,
    command: KeysCommand,
    production: bool,
) -> Result<(), StartupError> {
    match command {
        KeysCommand::Create {
            role,
            merchant,
            environment,
            expires_in,
        } => {
            let new = NewKey {
                role: Role::parse(&role)
                    .ok_or("role must be one of checkout, analyst, auditor, admin, operator")?,
                merchant: merchant.map(|m| MerchantId::parse(&m)).transpose()?,
                environment: match environment {
                    Some(text) => {
                        KeyEnvironment::parse(&text).ok_or("environment is live or test")?
                    }
                    None => KeyEnvironment::of_deployment(production),
                },
                expires_in: expires_in.map(|d| keys::parse_duration(&d)).transpose()?,
            };
            new.check()?;
            println!("{}", keys::create(pool, &new).await?.key);
        }
        KeysCommand::List => {
            for record in keys::list(pool, keys::LIST_MAX).await? {
                println!("{}", serde_json::to_string(&record)?);
            }
        }
        KeysCommand::Revoke { id } => {
            let record = keys::revoke(pool, id).await?.ok_or("no key has that id")?;
            eprintln!("revoked {} ({})", record.id, record.prefix);
        }
        KeysCommand::Rotate { id, overlap } => {
            let overlap = keys::parse_duration(&overlap)?;
            let (created, old) = keys::rotate(pool, id, overlap).await.map_err(|e| match e {
                keys::RotateError::NotFound => "no key has that id".to_owned(),
                keys::RotateError::NotActive => "that key is revoked or expired".to_owned(),
                keys::RotateError::Database(error) => error.to_string(),
            })?;
            eprintln!(
                "new key {} ({}); {} expires at {}",
                created.record.id,
                created.record.prefix,
                old.prefix,
                old.expires_at
                    .map_or_else(|| "never".to_owned(), |at| at.to_rfc3339())
            );
            println!("{}", created.key);
        }
    }
    Ok(())
}
