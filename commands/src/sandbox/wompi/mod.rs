//! wompi API emulation for the sandbox.
