//! Auditing: the event stream in chain order, its verification and its exports.
//!
//! - `link`: the chain's definition (canonical bytes, the hash of a link, extending the
//!   chain), used by the relay when it writes the chain and by every verifier;
//! - `chain`: the records (`position`, `chain_hash`, the event), the head, digests, pages;
//! - `verify`: the pure chain walk that recomputes every hash with `link`;
//! - `database`: `payledger audit verify` against Postgres (chain, sequences, completeness,
//!   projections rebuilt into a scratch schema and diffed with the live ones);
//! - `file`: `payledger audit export` and the offline verification of an export;
//! - `report`: what a verification found, as JSON and as a summary;
//! - `as_of`: a payment folded from its events up to a moment;
//! - `cli`: the `payledger audit` subcommands.

pub mod as_of;
pub mod chain;
pub mod cli;
pub mod database;
pub mod file;
pub mod link;
pub mod report;
pub mod verify;

pub use chain::{ChainRecord, Digest, Head};
pub use database::{verify_database, ReadModel, RebuildError, VerifyOptions};
pub use report::Report;
pub use verify::{Check, Finding};

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("rebuilding the projections: {0}")]
    Rebuild(Box<dyn std::error::Error + Send + Sync>),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("encoding a record: {0}")]
    Json(#[from] serde_json::Error),
    #[error("{0}")]
    BadOption(String),
    #[error("{0}")]
    BadInput(String),
}
