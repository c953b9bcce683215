//! paymongo API emulation for the sandbox.
