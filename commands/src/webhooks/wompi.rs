//! wompi webhooks: signature verification and parsing.
