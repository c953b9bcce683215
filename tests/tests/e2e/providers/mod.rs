//! The real-provider adapters end to end, each against its in-process emulator over HTTP;
//! `common` holds what they share.

mod common;
mod ebanx;
mod gcash;
mod maya;
mod maya_saved;
mod payu;
mod payu_saved;
mod wompi;
mod wompi_rails;
mod wompi_saved;
