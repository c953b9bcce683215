//! PayU's signatures, as its documentation defines them: a payment request's
//! `ApiKey~merchantId~referenceCode~tx_value~currency` and a confirmation's
//! `ApiKey~merchant_id~reference_sale~new_value~currency~state_pol`, each signed as hex MD5
//! (legacy accounts) or hex HMAC-SHA256 under the account's signature secret.

use std::str::FromStr;

use hmac::{Hmac, KeyInit, Mac};
use md5::{Digest, Md5};
use rust_decimal::Decimal;
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// How the emulated account signs (requests and confirmations).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SignatureAlgorithm {
    /// Legacy accounts: hex MD5 of the signature string.
    Md5,
    /// Current accounts: hex HMAC-SHA256 of the signature string under the signature secret.
    HmacSha256,
}

/// Lower-case hex signature of `message`: MD5 of it, or HMAC-SHA256 of it keyed with
/// `hmac_key` (ignored for MD5).
pub fn sign(algorithm: SignatureAlgorithm, hmac_key: &[u8], message: &str) -> String {
    match algorithm {
        SignatureAlgorithm::Md5 => hex::encode(Md5::digest(message.as_bytes())),
        // HMAC takes keys of any length, so this cannot fail; an empty signature, which never
        // verifies, stands in all the same.
        SignatureAlgorithm::HmacSha256 => match <Hmac<Sha256> as KeyInit>::new_from_slice(hmac_key)
        {
            Ok(mut mac) => {
                mac.update(message.as_bytes());
                hex::encode(mac.finalize().into_bytes())
            }
            Err(_) => String::new(),
        },
    }
}

/// PayU's `new_value`: the decimal `value` with one decimal when its second decimal is zero,
/// two otherwise (`150.00` -> `150.0`, `150.25` -> `150.25`, `150` -> `150.0`). `None` for
/// anything but plain ASCII digits with an optional `.` and at most two decimals.
pub fn new_value(value: &str) -> Option<String> {
    let (whole, fraction) = value.split_once('.').unwrap_or((value, ""));
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

/// The string PayU signs in a payment request (`transaction.order.signature`), with
/// `tx_value` exactly as sent in `TX_VALUE.value`.
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of PayU's "Signature" page: apiKey `4Vj8eK4rloUd272L48hsrarnUA`,
    /// merchantId `508029`, referenceCode `TestPayU`, value `3`, currency `USD`.
    #[test]
    fn md5_matches_the_example_of_payus_documentation() {
        let message = request_message(
            "4Vj8eK4rloUd272L48hsrarnUA",
            "508029",
            "TestPayU",
            "3",
            "USD",
        );
        assert_eq!(
            sign(SignatureAlgorithm::Md5, b"", &message),
            "ba9ffa71559580175585e45ce70b6c37"
        );
    }

    /// Computed independently with Python's `hashlib.md5` and `hmac.new(.., hashlib.sha256)`.
    #[test]
    fn a_confirmation_signs_its_new_value() {
        let value = new_value("129000.00").unwrap();
        assert_eq!(value, "129000.0");
        let message = confirmation_message(
            "test_payu_api_key_0123456789abcd",
            "508029",
            "6a1f3c2e-8b4d-4e7a-9c10-5d2b7f3e1a90",
            &value,
            "COP",
            "4",
        );
        assert_eq!(
            sign(SignatureAlgorithm::Md5, b"", &message),
            "d041419c5207e07dbef9ab6bcde97b17"
        );
        assert_eq!(
            sign(
                SignatureAlgorithm::HmacSha256,
                b"test_payu_signature_secret_0123456789",
                &message
            ),
            "ca093371a63b3985e3d225154982423e4679d6a9ed715afae189e49164682c6d"
        );
        assert!(hex_signature_matches(
            "d041419c5207e07dbef9ab6bcde97b17",
            " D041419C5207E07DBEF9AB6BCDE97B17 "
        ));
        for bad in ["1.234", ".5", "5.", "-1.00", "1e3"] {
            assert_eq!(new_value(bad), None, "{bad:?}");
        }
    }
}
