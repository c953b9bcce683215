//! The event store: the `events` table (written through cqrs-es and postgres-es), the
//! relay's checkpoint and the audit chain. Every statement that touches those tables is here;
//! the rest of the system reads and writes them through this crate's functions.
//!
//! - `published`: the wire contract, what the relay puts on RabbitMQ for each event;
//! - `envelope`: the message that carries a batch of them;
//! - `repository`: the cqrs-es repository the command side appends through;
//! - `feed`: the whole store in the relay's gap-safe order, and the reads a replay makes;
//! - `streams`: one aggregate's events;
//! - `checkpoint`: where the relay is, and how far behind it a reader is;
//! - `chain`: the audit chain's rows, joined with the events they name;
//! - `integrity`: store-wide checks an auditor runs (sequences, completeness);
//! - `bulk`: copies of existing streams appended in bulk, for load tests.

pub mod bulk;
pub mod chain;
pub mod checkpoint;
pub mod envelope;
pub mod feed;
pub mod integrity;
pub mod published;
pub mod repository;
pub mod streams;

pub use published::PublishedEvent;
