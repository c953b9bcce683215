//! maya adapter.
