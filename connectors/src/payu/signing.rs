//! PayU's signatures, used both to sign payment requests (the client) and to verify
//! confirmations (the webhook verifier): the algorithm an account uses, the strings PayU signs,
//! its `new_value` rule for amounts, and a constant-time comparison.

use std::fmt;
use std::str::FromStr;

use hmac::{Hmac, KeyInit, Mac};
use md5::{Digest, Md5};
use rust_decimal::Decimal;
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// How PayU signs (requests and confirmations) for this account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SignatureAlgorithm {
    /// Legacy accounts: hex MD5 of the signature string.
    Md5,
    /// Current accounts: hex HMAC-SHA256 of the signature string under the signature secret.
    HmacSha256,
}

impl SignatureAlgorithm {
    /// The `PAYU_SIGNATURE_ALGORITHM` spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            SignatureAlgorithm::Md5 => "MD5",
            SignatureAlgorithm::HmacSha256 => "HMAC_SHA256",
        }
    }

    pub(crate) fn hex_len(self) -> usize {
        match self {
            SignatureAlgorithm::Md5 => 32,
            SignatureAlgorithm::HmacSha256 => 64,
        }
    }
}

impl fmt::Display for SignatureAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `PAYU_SIGNATURE_ALGORITHM` names no algorithm payledger knows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("PAYU_SIGNATURE_ALGORITHM must be MD5 or HMAC_SHA256")]
pub struct UnknownAlgorithm;

impl FromStr for SignatureAlgorithm {
    type Err = UnknownAlgorithm;

    /// `MD5` or `HMAC_SHA256` (case-insensitive; `HMAC-SHA256`, PayU's own spelling in its
    /// WebCheckout `algorithmSignature`, is accepted too).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_uppercase().as_str() {
            "MD5" => Ok(SignatureAlgorithm::Md5),
            "HMAC_SHA256" | "HMAC-SHA256" => Ok(SignatureAlgorithm::HmacSha256),
            _ => Err(UnknownAlgorithm),
        }
    }
}

/// Lower-case hex signature of `message`: MD5 of it, or HMAC-SHA256 of it keyed with
/// `hmac_key` (ignored for MD5).
pub fn sign(algorithm: SignatureAlgorithm, hmac_key: &[u8], message: &str) -> String {
    match algorithm {
        SignatureAlgorithm::Md5 => hex::encode(Md5::digest(message.as_bytes())),
        SignatureAlgorithm::HmacSha256 => {
            // HMAC takes keys of any length, so this cannot fail; handled all the same, and
            // an empty signature never verifies.
            match <HmacSha256 as KeyInit>::new_from_slice(hmac_key) {
                Ok(mut mac) => {
                    mac.update(message.as_bytes());
                    hex::encode(mac.finalize().into_bytes())
                }
                Err(_) => String::new(),
            }
        }
    }
}

/// PayU's `new_value`: the decimal `value` with one decimal when its second decimal is zero,
/// two otherwise (`150.00` -> `150.0`, `150.25` -> `150.25`, `150.20` -> `150.2`, `150` ->
/// `150.0`). `None` for anything but plain ASCII digits with an optional `.` and at most two
/// decimals.
pub fn new_value(value: &str) -> Option<String> {
    let (whole, fraction) = match value.split_once('.') {
        Some((w, f)) => (w, f),
        None => (value, ""),
    };
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty()
        || whole.len() > 16
        || !digits(whole)
        || fraction.len() > 2
        || !digits(fraction)
        || (value.contains('.') && fraction.is_empty())
    {
        return None;
    }
    let mut amount = Decimal::from_str(value).ok()?;
    amount.rescale(2);
    let mut text = amount.to_string();
    if text.ends_with('0') {
        text.pop();
    }
    Some(text)
}

/// The string PayU signs in a confirmation.
pub fn confirmation_message(
    api_key: &str,
    merchant_id: &str,
    reference_sale: &str,
    new_value: &str,
    currency: &str,
    state_pol: &str,
) -> String {
    format!("{api_key}~{merchant_id}~{reference_sale}~{new_value}~{currency}~{state_pol}")
}

/// The string PayU signs in a payment request (`transaction.order.signature`):
/// `ApiKey~merchantId~referenceCode~tx_value~currency`, with `tx_value` exactly as sent in
/// `TX_VALUE.value`.
pub fn request_message(
    api_key: &str,
    merchant_id: &str,
    reference_code: &str,
    tx_value: &str,
    currency: &str,
) -> String {
    format!("{api_key}~{merchant_id}~{reference_code}~{tx_value}~{currency}")
}

/// Whether `presented` is `expected` (both hex), in constant time, ignoring hex case and
/// surrounding whitespace.
pub(crate) fn hex_signature_matches(expected: &str, presented: &str) -> bool {
    let presented = presented.trim();
    if expected.is_empty() || presented.len() != expected.len() {
        return false;
    }
    let presented = presented.to_ascii_lowercase();
    bool::from(
        presented
            .as_bytes()
            .ct_eq(expected.to_ascii_lowercase().as_bytes()),
    )
}
