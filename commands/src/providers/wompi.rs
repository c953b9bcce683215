//! wompi adapter.
