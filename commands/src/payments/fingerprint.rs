//! The idempotency fingerprint of a create: what the request asked for, so that the same key
//! with another body is refused. It is keyed (HMAC-SHA256 with a server secret) because it
//! goes into `PaymentInitiated`, which analysts, auditors and the audit export read: an
//! unkeyed digest of a few guessable fields (a phone number, a legal id) could be reversed
//! offline by trying them all. Payments created before it was keyed carry a plain SHA-256,
//! still recognised.

use hmac::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret, SecretSlice};
use sha2::{Digest, Sha256};

/// Marks a keyed fingerprint; one without it is the plain SHA-256 of before.
const KEYED_PREFIX: &str = "hmac-sha256:";
/// What `FINGERPRINT_SECRET` is when unset: fine for tests, refused in production.
pub const TEST_SECRET: &str = "test_fingerprint_payledger_sandbox_000000000000";
/// A server secret shorter than this is refused.
pub const KEY_BYTES_MIN: usize = 32;

/// The server secret fingerprints are keyed with (`FINGERPRINT_SECRET`).
#[derive(Clone)]
pub struct FingerprintKey(SecretSlice<u8>);

impl std::fmt::Debug for FingerprintKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FingerprintKey(REDACTED)")
    }
}

impl FingerprintKey {
    pub fn new(secret: &[u8]) -> Result<Self, String> {
        if secret.len() < KEY_BYTES_MIN {
            return Err(format!("must be at least {KEY_BYTES_MIN} bytes"));
        }
        Ok(Self(secret.to_vec().into()))
    }

    /// The secret of tests and development (production refuses to start without its own).
    pub fn test_default() -> Self {
        Self(TEST_SECRET.as_bytes().to_vec().into())
    }

    /// The fingerprint of a request's canonical text, as stored in `PaymentInitiated`.
    pub fn fingerprint(&self, canonical: &str) -> String {
        // `new_from_slice` takes a key of any length for HMAC: it cannot fail here.
        let mut mac = match <Hmac<Sha256> as KeyInit>::new_from_slice(self.0.expose_secret()) {
            Ok(mac) => mac,
            Err(_) => return String::new(),
        };
        mac.update(canonical.as_bytes());
        format!("{KEYED_PREFIX}{}", hex::encode(mac.finalize().into_bytes()))
    }

    /// Whether `stored` (keyed, or the plain digest of a payment made before) is the
    /// fingerprint of `canonical`. Constant time for the keyed form.
    pub fn matches(&self, stored: &str, canonical: &str) -> bool {
        match stored.strip_prefix(KEYED_PREFIX) {
            Some(_) => {
                let expected = self.fingerprint(canonical);
                expected.len() == stored.len()
                    && expected
                        .bytes()
                        .zip(stored.bytes())
                        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                        == 0
            }
            None => stored == hex::encode(Sha256::digest(canonical.as_bytes())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"a server secret of thirty-two+ bytes";

    #[test]
    fn keyed_fingerprints_depend_on_the_secret_and_are_recognised() {
        let key = FingerprintKey::new(SECRET).expect("key");
        let other = FingerprintKey::new(b"another server secret of 32+ bytes").expect("key");
        let stored = key.fingerprint("v1\nm\nref");
        assert!(stored.starts_with("hmac-sha256:"));
        assert_eq!(stored.len(), "hmac-sha256:".len() + 64);
        assert_ne!(stored, other.fingerprint("v1\nm\nref"));
        assert!(key.matches(&stored, "v1\nm\nref"));
        assert!(!key.matches(&stored, "v1\nm\nref2"));
        assert!(!other.matches(&stored, "v1\nm\nref"));
    }

    #[test]
    fn a_plain_digest_of_before_is_still_recognised() {
        let key = FingerprintKey::new(SECRET).expect("key");
        // SHA-256("abc"), FIPS 180-2.
        let before = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert!(key.matches(before, "abc"));
        assert!(!key.matches(before, "abd"));
    }

    #[test]
    fn short_secrets_are_refused_and_never_printed() {
        assert!(FingerprintKey::new(b"short").is_err());
        let key = FingerprintKey::new(SECRET).expect("key");
        assert!(!format!("{key:?}").contains("server secret"));
    }
}
