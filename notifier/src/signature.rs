//! The signature a merchant checks on every delivery.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The header carrying the signature.
pub const SIGNATURE_HEADER: &str = "Payledger-Signature";
/// The header carrying the event id receivers dedupe on.
pub const EVENT_ID_HEADER: &str = "Payledger-Event-Id";

/// `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`: the time is signed with the
/// body, so a receiver refuses an old delivery replayed at it.
pub fn header(secret: &str, unix_seconds: i64, body: &[u8]) -> String {
    let mut signed = format!("{unix_seconds}.").into_bytes();
    signed.extend_from_slice(body);
    // HMAC takes keys of any length, so this cannot fail; an empty digest never verifies.
    let digest = match <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()) {
        Ok(mut mac) => {
            mac.update(&signed);
            hex::encode(mac.finalize().into_bytes())
        }
        Err(_) => String::new(),
    };
    format!("t={unix_seconds},v1={digest}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_is_the_time_and_the_hmac_of_time_dot_body() {
        // hmac.new(b"whsec_test", b"1700000000.{}", hashlib.sha256).hexdigest() in Python.
        assert_eq!(
            header("whsec_test", 1_700_000_000, b"{}"),
            "t=1700000000,v1=35495024f4ef3f94e5a93e22221544c4b75e9a42300cd965ab81cb85cd994e91"
        );
    }
}
