//! The end-to-end tests, linked into one test binary: each module below is one area (it was
//! a binary of its own before), so the application is linked once rather than once per area.
//!
//! Select one area with its module path, e.g.
//! `cargo nextest run -p e2e -E 'test(/^unknown_outcomes::/)'` or
//! `cargo nextest run -p e2e -E 'test(/^providers::payu::/)'`. nextest runs every test in a
//! process of its own, as before; under `cargo test` the tests of all areas share one process
//! (none sets environment variables or process-wide state that another reads).

mod analytics_projection;
mod audit;
mod bad_input;
mod concurrency;
mod contract;
mod crash_recovery;
mod customers;
mod dashboard;
mod database_role;
mod envelopes;
mod fault_schedules;
mod health;
mod idempotency;
mod jwt;
mod keys;
mod ledger_projection;
mod lifecycle;
mod lost_answers;
mod merchant_webhooks;
mod metrics;
mod no_loss;
mod operator_health;
mod projection;
mod projection_kit;
mod providers;
mod rate_limits;
mod relay_wakeup;
mod replay;
mod reports;
mod request_id;
mod routing;
mod search;
mod standby;
mod unknown_outcomes;
mod webhook_retention;
