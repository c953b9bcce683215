//! The HTTP API and the composition root: wires the write side (`commands`) and the read
//! side (`projections`), which never import each other, and auditing (`audit`).

pub mod auth;
pub mod card_numbers;
pub mod check_config;
pub mod client_ip;
pub mod config;
pub mod dashboard;
pub mod emulated;
pub mod jwt;
pub mod keys;
pub mod metrics;
pub mod openapi;
pub mod problem;
pub mod providers;
pub mod rate_limit;
pub mod read_model;
pub mod reconciler;
pub mod request_id;
pub mod routes;
pub mod startup;
pub mod telemetry;

pub use config::Settings;
pub use startup::Application;
