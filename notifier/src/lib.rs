//! Merchant webhooks: a merchant registers an endpoint (a URL and the event names it wants)
//! and is told of its payments' events by signed HTTP POSTs.
//!
//! - `endpoints`: the endpoints, their secrets and states;
//! - `target`: which URLs may be called (no loopback, private or link-local address in
//!   production, checked again at every connection);
//! - `signature`: `Payledger-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "t.body")>`;
//! - `dispatch`: a consumer of the events exchange, run like a projection (its own queue,
//!   offsets, gap fill), that records one delivery per endpoint and event, exactly once;
//! - `deliveries`: the delivery log;
//! - `sender`: posts due deliveries, the oldest of each payment first, with exponential
//!   backoff and jitter up to a horizon past which the endpoint is disabled.

pub mod deliveries;
pub mod dispatch;
pub mod endpoints;
pub mod sender;
pub mod signature;
pub mod target;
