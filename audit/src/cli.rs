//! `payledger audit ...`: verify the event store or an export, export the chain, print the
//! head. Exit status: 0 verified, 1 something does not match, 2 could not verify, 3 nothing
//! wrong found but a live projection lagged too long to be compared.

use std::io::Write;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::{Parser, Subcommand};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

use crate::chain::{self, Digest};
use crate::database::{verify_database, ReadModel, VerifyOptions};
use crate::file::{export_to_path, verify_file};
use crate::report::{Report, EXIT_ERROR, EXIT_OK};
use crate::AuditError;

#[derive(Debug, Clone, Subcommand)]
pub enum AuditCommand {
    /// Recompute the audit chain from the events and check it, every aggregate's sequences,
    /// completeness and the projections (rebuilt into schema audit_verify); or, with --file,
    /// an export, offline. Exits 1 naming the first bad position on any mismatch.
    Verify {
        /// Recompute from this chain position (trusting its predecessor's stored hash).
        #[arg(long)]
        from: Option<i64>,
        /// `<position>:<hash>` noted earlier (GET /v1/audit/head): the chain up to there must
        /// still hash to it.
        #[arg(long)]
        digest: Option<Digest>,
        /// Print the machine report (JSON) instead of the summary.
        #[arg(long)]
        json: bool,
        /// Verify this export (payledger audit export) instead of the database.
        #[arg(long)]
        file: Option<PathBuf>,
        /// Skip rebuilding and diffing the projections.
        #[arg(long)]
        no_projections: bool,
        /// Seconds to wait for live projections to catch up before calling them lagging.
        #[arg(long, default_value_t = 10)]
        projection_wait_secs: u64,
    },
    /// Write the chain (position, chain hash, event) as NDJSON.
    Export {
        #[arg(long)]
        to: PathBuf,
    },
    /// Print the chain's head as a digest `<position>:<hash>`.
    Head,
}

#[derive(Debug, Parser)]
#[command(name = "payledger audit")]
struct AuditArgs {
    #[command(subcommand)]
    command: AuditCommand,
}

/// Parses `payledger audit` arguments (without the program name), as the binary would.
pub fn parse(args: &[&str]) -> Result<AuditCommand, clap::Error> {
    let argv = std::iter::once("payledger audit").chain(args.iter().copied());
    AuditArgs::try_parse_from(argv).map(|a| a.command)
}

async fn connect(database_url: &str) -> Result<PgPool, sqlx::Error> {
    // The scratch rebuild's `IF NOT EXISTS` notices are not news to an auditor.
    let options =
        PgConnectOptions::from_str(database_url)?.options([("client_min_messages", "warning")]);
    PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(options)
        .await
}

/// Runs one `payledger audit` command; what the binary prints goes to `out` and `err`.
/// `read_model` rebuilds the projections a database verification compares. Returns the exit
/// status.
pub async fn run(
    command: AuditCommand,
    database_url: &str,
    read_model: &dyn ReadModel,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> u8 {
    match execute(command, database_url, read_model, out, err).await {
        Ok(code) => code,
        Err(error) => {
            let _ = writeln!(err, "payledger audit: {error}");
            EXIT_ERROR
        }
    }
}

async fn execute(
    command: AuditCommand,
    database_url: &str,
    read_model: &dyn ReadModel,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<u8, AuditError> {
    match command {
        AuditCommand::Verify {
            from,
            digest,
            json,
            file,
            no_projections,
            projection_wait_secs,
        } => {
            let report = match file {
                Some(path) => {
                    if from.is_some() {
                        return Err(AuditError::BadOption(
                            "--from applies to the database; an export is verified whole".into(),
                        ));
                    }
                    verify_file(&path, digest)?
                }
                None => {
                    let pool = connect(database_url).await?;
                    let options = VerifyOptions {
                        from,
                        digest,
                        projections: !no_projections,
                        projection_wait: Duration::from_secs(projection_wait_secs),
                    };
                    let report = verify_database(&pool, &options, read_model).await;
                    pool.close().await;
                    report?
                }
            };
            print_report(&report, json, out)?;
            Ok(report.exit_code())
        }
        AuditCommand::Export { to } => {
            let pool = connect(database_url).await?;
            let summary = export_to_path(&pool, &to).await;
            pool.close().await;
            let summary = summary?;
            writeln!(
                err,
                "exported {} chain records to {}; head {}",
                summary.records,
                to.display(),
                summary.head_digest
            )?;
            writeln!(out, "{}", serde_json::to_string(&summary)?)?;
            Ok(EXIT_OK)
        }
        AuditCommand::Head => {
            let pool = connect(database_url).await?;
            let head = chain::head(&pool).await;
            pool.close().await;
            writeln!(out, "{}", head?.digest())?;
            Ok(EXIT_OK)
        }
    }
}

fn print_report(report: &Report, json: bool, out: &mut dyn Write) -> Result<(), AuditError> {
    if json {
        serde_json::to_writer_pretty(&mut *out, report)?;
        writeln!(out)?;
    } else {
        write!(out, "{}", report.summary())?;
    }
    Ok(())
}
