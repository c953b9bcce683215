//! Auditing: the event stream in chain order, its verification and its exports.
//!
//! - `chain`: the records (`position`, `chain_hash`, the event) and keyset pages of them;
//! - `verify`: the pure chain walk that recomputes every hash with `domain::audit`;
//! - `database`: `payledger audit verify` against Postgres (chain, sequences, completeness,
//!   projections rebuilt into a scratch schema and diffed with the live ones);
//! - `file`: `payledger audit export` and the offline verification of an export;
//! - `cli`: the `payledger audit` subcommands.

pub mod chain;
pub mod cli;
pub mod database;
pub mod file;
pub mod report;
pub mod verify;

pub use chain::{ChainRecord, Digest, Head};
pub use database::{verify_database, VerifyOptions};
pub use report::Report;
pub use verify::{Check, Finding};

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("rebuilding the projections: {0}")]
    Replay(#[from] projections::replay::ReplayError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("encoding a record: {0}")]
    Json(#[from] serde_json::Error),
    #[error("{0}")]
    BadOption(String),
    #[error("{0}")]
    BadInput(String),
}
