pub mod client;
pub mod webhook;

pub use client::*;
pub use webhook::*;
