//! paymongo webhooks: signature verification and parsing.
