//! maya API emulation for the sandbox.
