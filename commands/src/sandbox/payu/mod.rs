//! payu API emulation for the sandbox.
