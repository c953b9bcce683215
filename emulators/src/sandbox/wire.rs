//! The sandbox's webhook as it goes on the wire: `X-Sandbox-Signature: hex(HMAC-SHA256(secret,
//! raw body))` over a JSON body
//! `{"id":"evt_..","type":"transaction.updated","created_at":"..","data":{"transaction_id",
//! "payment_id","status","amount","currency","reason"}}`, money as decimal strings.

use hmac::{Hmac, KeyInit, Mac};
use serde::Serialize;
use sha2::Sha256;

/// The header that carries the signature.
pub const SIGNATURE_HEADER: &str = "X-Sandbox-Signature";
/// The only event type the sandbox sends.
pub const EVENT_TYPE_TRANSACTION_UPDATED: &str = "transaction.updated";

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Event {
    pub id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub created_at: Option<String>,
    pub data: EventTransaction,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct EventTransaction {
    pub transaction_id: String,
    pub payment_id: String,
    pub status: String,
    pub amount: String,
    pub currency: String,
    pub reason: Option<String>,
}

/// Lower-case hex HMAC-SHA256 of `body` under `secret`: the `X-Sandbox-Signature` value.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    // HMAC takes keys of any length (long keys are hashed), so this cannot fail; an empty
    // signature, which never verifies, stands in all the same.
    match <Hmac<Sha256> as KeyInit>::new_from_slice(secret) {
        Ok(mut mac) => {
            mac.update(body);
            hex::encode(mac.finalize().into_bytes())
        }
        Err(_) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 4231 test case 2.
    #[test]
    fn sign_is_hmac_sha256_in_lower_case_hex() {
        assert_eq!(
            sign(b"Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
