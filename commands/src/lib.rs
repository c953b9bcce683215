//! The write side: event store wiring, command services, providers and their webhooks, and
//! the outbox relay that publishes committed events to RabbitMQ.

pub mod audit_read;
pub mod breaker;
pub mod fees;
pub mod payments;
pub mod relay;
pub mod relay_waker;
pub mod router;
pub mod store;
mod stripes;
pub mod webhook_deliveries;
