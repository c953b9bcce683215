//! payu webhooks: signature verification and parsing.
