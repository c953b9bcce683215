//! The real-provider adapters end to end, each against its in-process emulator over HTTP.

mod gcash;
mod maya;
mod payu;
mod wompi;
