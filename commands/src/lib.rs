//! The write side: command services, providers and their webhooks, and the outbox relay
//! that publishes committed events to RabbitMQ. The event store itself is `eventstore`.

pub mod breaker;
pub mod fees;
pub mod payments;
pub mod relay;
pub mod relay_waker;
pub mod router;
mod stripes;
pub mod webhook_deliveries;
