//! Payment providers to develop, test and demo against: the bundled sandbox provider and
//! emulators of Wompi, PayU, Maya, PayMongo and EBANX. Each is a real HTTP server on a socket
//! that speaks its provider's API and sends its provider's webhooks, so payledger's real
//! clients and webhook verifiers run against them unchanged.
//!
//! Every emulator owns its wire types and its signing (written from the provider's
//! documentation, not shared with the clients), sends webhooks through one bounded
//! at-least-once [`outbox`], and runs on one HTTP [`server`] skeleton. State lives in
//! memory, is bounded, and is lost when an emulator stops.

pub mod ebanx;
mod kit;
pub mod maya;
pub mod outbox;
pub mod paymongo;
pub mod payu;
pub mod sandbox;
pub mod server;
pub mod wompi;

pub use outbox::WebhookRetryPolicy;
pub use server::EmulatorHandle;
