//! maya webhooks: signature verification and parsing.
