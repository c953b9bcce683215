//! The write side: the command service (routing, breakers, fees, resolving open intents),
//! recording verified provider notifications, the webhook delivery log, and the outbox relay
//! that publishes committed events to RabbitMQ. Providers are reached through `connectors`;
//! the event store itself is `eventstore`.

pub mod breaker;
pub mod call_stats;
pub mod customers;
pub mod fees;
pub mod payments;
pub mod relay;
pub mod relay_waker;
pub mod request_context;
pub mod router;
mod stripes;
pub mod webhook_deliveries;
