//! The write side: event store wiring, command services, providers and their webhooks, and
//! the outbox relay that publishes committed events to RabbitMQ.

pub mod providers;
pub mod sandbox;
pub mod webhooks;
