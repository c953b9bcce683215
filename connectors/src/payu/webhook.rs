//! PayU Latam confirmations ("confirmation page" / `notifyUrl`): signature verification and
//! parsing.
//!
//! PayU POSTs an `application/x-www-form-urlencoded` body once a transaction reaches a final
//! state (approved, declined, expired, error). Among many fields it carries `merchant_id`,
//! `reference_sale` (the order's `referenceCode`: our payment id), `reference_pol` (PayU's
//! order id), `transaction_id`, `value`, `currency`, `state_pol`, `response_message_pol` and
//! `sign`, where
//!
//! ```text
//! sign = SIG(ApiKey~merchant_id~reference_sale~new_value~currency~state_pol)
//! ```
//!
//! `new_value` is `value` with ONE decimal when its second decimal is zero (`150.00` ->
//! `150.0`, `150.20` -> `150.2`) and two otherwise (`150.25`). `SIG` is, per account
//! (`PAYU_SIGNATURE_ALGORITHM`):
//!
//! * `MD5`: lower-case hex MD5 of the string (legacy accounts);
//! * `HMAC_SHA256`: lower-case hex HMAC-SHA256 of the string, keyed with the account's
//!   *signature secret* (`PAYU_SIGNATURE_SECRET`), which is NOT the API key. PayU's own worked
//!   example (confirmation-URL page: API key `4Vj8eK4rloUd272L48hsrarnUA`, secret `test123`,
//!   `...~150.0~USD~4` -> `65fb2b34...`) reproduces only with the separate secret as the HMAC
//!   key; see the known-answer tests below.
//!
//! Verification works on the raw bytes: the form is decoded once, the signed fields are read
//! from it (each must appear exactly once), the signature is recomputed and compared in
//! constant time, case-insensitively for hex. Unsigned fields (`attempts`, `risk`, ...) may
//! change between redeliveries and are ignored. The event id is
//! `<transaction_id>:<state_pol>`, the same on every redelivery of one outcome; the provider
//! transaction id is `<reference_pol>:<transaction_id>` (PayU's order id and transaction id,
//! the form `PayuProvider` returns on create, since captures and refunds need both).
//!
//! `state_pol`: 4 approved (authorized when `transaction_type=AUTHORIZATION`), 6 declined
//! (`ABANDONED_TRANSACTION`, a PSE payer who walked away, is reported as failed), 5 expired,
//! 7/10/12/14/15/18 pending, 104 error.
//!
//! `sign` does not cover `transaction_id`, `reference_pol` or `transaction_type`: a genuine
//! confirmation replayed with those changed would still verify. Every confirmation is
//! therefore marked `confirm_with_provider`: what is appended comes from PayU's own record of
//! the order (`ORDER_DETAIL`), which must name this payment, never from the body alone.

use std::str::FromStr;

use domain::{Currency, Money, PaymentId};
use secrecy::{ExposeSecret, SecretString};

use crate::payu::signing::{
    confirmation_message, hex_signature_matches, new_value, sign, SignatureAlgorithm,
};
use crate::payu::PayuConfig;
use crate::ProviderConfigError;
use crate::{
    excerpt, NotificationOutcome, ProviderNotification, WebhookError, WebhookRequest,
    WebhookVerifier,
};

/// The provider name recorded in notifications.
pub const PROVIDER: &str = "payu";
/// Largest confirmation body parsed (PayU's are a few KiB).
pub const BODY_MAX_BYTES: usize = 64 * 1024;
/// Longest decline reason kept.
pub const REASON_LEN_MAX: usize = 128;
/// Longest PayU transaction id accepted (PayU's are 36-character UUIDs).
pub const TRANSACTION_ID_LEN_MAX: usize = 64;
/// Longest PayU order id accepted (digits).
pub const ORDER_ID_LEN_MAX: usize = 20;

/// Verifies and parses PayU confirmations for one merchant.
#[derive(Debug, Clone)]
pub struct PayuWebhookVerifier {
    merchant_id: String,
    api_key: SecretString,
    algorithm: SignatureAlgorithm,
    signature_secret: SecretString,
}

impl PayuWebhookVerifier {
    pub fn new(config: &PayuConfig) -> Result<Self, ProviderConfigError> {
        Self::with_keys(
            &config.merchant_id,
            config.api_key.expose_secret(),
            config.algorithm()?,
            config.signature_secret.expose_secret(),
        )
    }

    /// `signature_secret` is the HMAC key (required for `HmacSha256`, unused for `Md5`).
    pub fn with_keys(
        merchant_id: &str,
        api_key: &str,
        algorithm: SignatureAlgorithm,
        signature_secret: &str,
    ) -> Result<Self, ProviderConfigError> {
        let invalid = |problem: &str| ProviderConfigError {
            provider: PROVIDER,
            problem: problem.to_owned(),
        };
        if merchant_id.is_empty() {
            return Err(invalid("PAYU_MERCHANT_ID is empty"));
        }
        if api_key.is_empty() {
            return Err(invalid("PAYU_API_KEY is empty"));
        }
        if algorithm == SignatureAlgorithm::HmacSha256 && signature_secret.is_empty() {
            return Err(invalid(
                "PAYU_SIGNATURE_SECRET is empty (required with HMAC_SHA256)",
            ));
        }
        Ok(PayuWebhookVerifier {
            merchant_id: merchant_id.to_owned(),
            api_key: api_key.into(),
            algorithm,
            signature_secret: signature_secret.into(),
        })
    }

    /// Verifies `raw_body` (the exact bytes received) and parses it.
    pub fn verify_body(&self, raw_body: &[u8]) -> Result<ProviderNotification, WebhookError> {
        if raw_body.len() > BODY_MAX_BYTES {
            return Err(WebhookError::TooLarge {
                max: BODY_MAX_BYTES,
            });
        }
        let form = Form::parse(raw_body)?;

        // Authenticate first: nothing of the body is trusted before the signature matches.
        let (Some(sign_field), Some(merchant_id), Some(reference_sale), Some(value)) = (
            form.get("sign")?,
            form.get("merchant_id")?,
            form.get("reference_sale")?,
            form.get("value")?,
        ) else {
            return Err(WebhookError::InvalidSignature);
        };
        let (Some(currency), Some(state_pol)) = (form.get("currency")?, form.get("state_pol")?)
        else {
            return Err(WebhookError::InvalidSignature);
        };
        let Some(normalized) = new_value(value) else {
            return Err(WebhookError::InvalidSignature);
        };
        let expected = sign(
            self.algorithm,
            self.signature_secret.expose_secret().as_bytes(),
            &confirmation_message(
                self.api_key.expose_secret(),
                merchant_id,
                reference_sale,
                &normalized,
                currency,
                state_pol,
            ),
        );
        if expected.len() != self.algorithm.hex_len()
            || !hex_signature_matches(&expected, sign_field)
        {
            return Err(WebhookError::InvalidSignature);
        }
        // Signed by someone holding this account's key, but for another merchant id: not ours.
        if merchant_id != self.merchant_id {
            return Err(WebhookError::InvalidSignature);
        }

        let payment_id =
            PaymentId::from_str(reference_sale).map_err(|_| WebhookError::InvalidField {
                field: "reference_sale",
                problem: "is not a payledger payment id".into(),
            })?;
        let transaction_id = form.require("transaction_id")?;
        check_transaction_id(transaction_id)?;
        let order_id = form.require("reference_pol")?;
        check_order_id(order_id)?;
        let currency = Currency::from_str(currency).map_err(|e| WebhookError::InvalidField {
            field: "currency",
            problem: e.to_string(),
        })?;
        let amount = || {
            Money::parse(value, currency).map_err(|e| WebhookError::InvalidField {
                field: "value",
                problem: e.to_string(),
            })
        };
        let message = form.get("response_message_pol")?.unwrap_or_default();
        let reason = |fallback: &str| -> Result<String, WebhookError> {
            let reason = if message.is_empty() {
                fallback
            } else {
                message
            };
            check_reason(reason)?;
            Ok(reason.to_owned())
        };

        let outcome = match state_pol {
            "4" => {
                let amount = amount()?;
                if form.get("transaction_type")? == Some("AUTHORIZATION") {
                    NotificationOutcome::Authorized { amount }
                } else {
                    NotificationOutcome::Approved { amount }
                }
            }
            "6" => {
                let reason = reason("DECLINED")?;
                if reason == "ABANDONED_TRANSACTION" {
                    NotificationOutcome::Failed { reason }
                } else {
                    NotificationOutcome::Declined { reason }
                }
            }
            "5" => NotificationOutcome::Expired,
            "7" | "10" | "12" | "14" | "15" | "18" => NotificationOutcome::Pending,
            "104" => NotificationOutcome::Failed {
                reason: reason("ERROR")?,
            },
            other => return Err(WebhookError::UnsupportedStatus(excerpt(other, 16))),
        };

        Ok(ProviderNotification {
            provider: PROVIDER,
            event_id: format!("{transaction_id}:{state_pol}"),
            payment_id,
            provider_transaction_id: format!("{order_id}:{transaction_id}"),
            outcome,
            // The ids and the transaction type are not signed: ask PayU.
            confirm_with_provider: true,
        })
    }
}

impl WebhookVerifier for PayuWebhookVerifier {
    fn provider(&self) -> &'static str {
        PROVIDER
    }

    fn verify(
        &self,
        request: &WebhookRequest<'_>,
    ) -> Result<Option<ProviderNotification>, WebhookError> {
        if let Some(content_type) = request.header("content-type") {
            let essence = content_type
                .split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase();
            if essence != "application/x-www-form-urlencoded" {
                return Err(WebhookError::Malformed(
                    "PayU confirmations are application/x-www-form-urlencoded".into(),
                ));
            }
        }
        self.verify_body(request.body).map(Some)
    }
}

/// A decoded form: every pair, in order. Lookups refuse a field sent twice.
struct Form {
    pairs: Vec<(String, String)>,
}

impl Form {
    fn parse(raw: &[u8]) -> Result<Form, WebhookError> {
        // A form body is ASCII (percent-encoded); raw bytes that are not even UTF-8 are not
        // a form. (Percent-encoded bytes are decoded lossily: a mangled signed field then
        // simply fails the signature.)
        if std::str::from_utf8(raw).is_err() {
            return Err(WebhookError::Malformed(
                "body is not a valid URL-encoded UTF-8 form".into(),
            ));
        }
        let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(raw).map_err(|_| {
            WebhookError::Malformed("body is not a valid URL-encoded UTF-8 form".into())
        })?;
        Ok(Form { pairs })
    }

    /// The field's value if it appears once; `None` if absent; an error if repeated.
    fn get(&self, name: &'static str) -> Result<Option<&str>, WebhookError> {
        let mut found = None;
        for (key, value) in &self.pairs {
            if key == name {
                if found.is_some() {
                    return Err(WebhookError::Malformed(format!(
                        "field `{name}` appears more than once"
                    )));
                }
                found = Some(value.as_str());
            }
        }
        Ok(found)
    }

    fn require(&self, name: &'static str) -> Result<&str, WebhookError> {
        self.get(name)?.ok_or(WebhookError::InvalidField {
            field: name,
            problem: "is missing".into(),
        })
    }
}

fn check_transaction_id(value: &str) -> Result<(), WebhookError> {
    let ok = !value.is_empty()
        && value.len() <= TRANSACTION_ID_LEN_MAX
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(WebhookError::InvalidField {
            field: "transaction_id",
            problem: "must be 1-64 letters, digits, `-` or `_`".into(),
        })
    }
}

fn check_order_id(value: &str) -> Result<(), WebhookError> {
    let ok = !value.is_empty()
        && value.len() <= ORDER_ID_LEN_MAX
        && value.bytes().all(|b| b.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(WebhookError::InvalidField {
            field: "reference_pol",
            problem: "must be PayU's numeric order id".into(),
        })
    }
}

fn check_reason(value: &str) -> Result<(), WebhookError> {
    let ok = !value.is_empty()
        && value.len() <= REASON_LEN_MAX
        && value.chars().all(|c| c.is_ascii_graphic() || c == ' ');
    if ok {
        Ok(())
    } else {
        Err(WebhookError::InvalidField {
            field: "response_message_pol",
            problem: "must be 1-128 printable ASCII characters".into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payu::signing::{request_message, UnknownAlgorithm};

    // Fixture keys (test values, not secrets).
    const API_KEY: &str = "test_payu_api_key_0123456789abcd";
    const SECRET: &str = "test_payu_signature_secret_0123456789";
    const MERCHANT: &str = "508029";
    const PAYMENT: &str = "6a1f3c2e-8b4d-4e7a-9c10-5d2b7f3e1a90";
    const TX: &str = "f5e668f1-7ecc-4b83-a4d1-0aaa68260862";

    // Known answers computed independently of this code, with:
    //   python3 -c 'import hashlib,hmac; m=b"test_payu_api_key_0123456789abcd~508029~6a1f3c2e-8b4d-4e7a-9c10-5d2b7f3e1a90~129000.0~COP~4"; print(hashlib.md5(m).hexdigest(), hmac.new(b"test_payu_signature_secret_0123456789", m, hashlib.sha256).hexdigest())'
    // (and the same for the other rows, changing new_value and state_pol).
    const VECTORS: &[(&str, &str, &str, &str)] = &[
        // (new_value, state_pol, md5, hmac-sha256)
        (
            "129000.0",
            "4",
            "d041419c5207e07dbef9ab6bcde97b17",
            "ca093371a63b3985e3d225154982423e4679d6a9ed715afae189e49164682c6d",
        ),
        (
            "150.25",
            "6",
            "761bebba2b7a833b32a761cea78965e3",
            "96b1b3b887e4d64d47489784f3e38a4fbc7e146c979f1d73aa9faa6a963dbc84",
        ),
        (
            "150.2",
            "5",
            "f2e21790a735d91b9accc881fb2202bd",
            "77cb940fbf5ab315d0d41eda37036c6184d877571d2d65d471a80e71207b5866",
        ),
        (
            "0.1",
            "104",
            "1086640143283a2b7c15b945204bb619",
            "08ad32bce0e3f79962bf1fa7b5ce618c26563e1f030b1a91f1921319fa61a638",
        ),
    ];

    fn verifier(algorithm: SignatureAlgorithm) -> PayuWebhookVerifier {
        PayuWebhookVerifier::with_keys(MERCHANT, API_KEY, algorithm, SECRET).unwrap()
    }

    /// A confirmation as PayU sends it (a subset of its fields plus noise), signed with
    /// `algorithm` unless `sign` is given.
    fn form(
        algorithm: SignatureAlgorithm,
        value: &str,
        state_pol: &str,
        message: &str,
        extra: &[(&str, &str)],
    ) -> String {
        let signature = sign(
            algorithm,
            SECRET.as_bytes(),
            &confirmation_message(
                API_KEY,
                MERCHANT,
                PAYMENT,
                &new_value(value).unwrap(),
                "COP",
                state_pol,
            ),
        );
        let mut pairs: Vec<(&str, String)> = vec![
            ("response_code_pol", "1".into()),
            ("merchant_id", MERCHANT.into()),
            ("state_pol", state_pol.into()),
            ("risk", "0.0".into()),
            ("reference_sale", PAYMENT.into()),
            ("reference_pol", "1400449959".into()),
            ("sign", signature),
            ("value", value.into()),
            ("currency", "COP".into()),
            ("transaction_id", TX.into()),
            ("response_message_pol", message.into()),
            ("payment_method_type", "2".into()),
            ("transaction_date", "2025-05-27 13:07:35".into()),
            ("attempts", "1".into()),
            ("billing_address", "cll 93 #4-5".into()),
        ];
        pairs.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
        serde_urlencoded::to_string(pairs).unwrap()
    }

    fn cop(s: &str) -> Money {
        Money::parse(s, Currency::COP).unwrap()
    }

    #[test]
    fn new_value_keeps_one_decimal_when_the_second_is_zero() {
        let table = [
            ("150.00", "150.0"),
            ("150.25", "150.25"),
            ("150.20", "150.2"),
            ("0.10", "0.1"),
            ("1000000.00", "1000000.0"),
            ("150", "150.0"),
            ("150.2", "150.2"),
            ("150.05", "150.05"),
            ("0.01", "0.01"),
            ("129000.00", "129000.0"),
        ];
        for (value, expected) in table {
            assert_eq!(new_value(value).as_deref(), Some(expected), "{value}");
        }
        for bad in [
            "", ".5", "5.", "1.234", "-1.00", "1e3", " 1.00", "1,00", "1.0.0", "+1",
        ] {
            assert_eq!(new_value(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn signatures_match_known_answers() {
        for (value, state, md5, hmac) in VECTORS {
            let message = confirmation_message(API_KEY, MERCHANT, PAYMENT, value, "COP", state);
            assert_eq!(
                sign(SignatureAlgorithm::Md5, b"", &message),
                *md5,
                "{message}"
            );
            assert_eq!(
                sign(SignatureAlgorithm::HmacSha256, SECRET.as_bytes(), &message),
                *hmac,
                "{message}"
            );
        }
    }

    #[test]
    fn payus_own_documented_vectors_reproduce() {
        // PayU's confirmation-URL page, "Signature examples" (HMAC-SHA256, secret `test123`).
        // Cross-checked with:
        //   python3 -c 'import hmac,hashlib; print(hmac.new(b"test123", b"4Vj8eK4rloUd272L48hsrarnUA~508029~PayUTest01~150.0~USD~4", hashlib.sha256).hexdigest())'
        let one = confirmation_message(
            "4Vj8eK4rloUd272L48hsrarnUA",
            "508029",
            "PayUTest01",
            &new_value("150.00").unwrap(),
            "USD",
            "4",
        );
        assert_eq!(
            one,
            "4Vj8eK4rloUd272L48hsrarnUA~508029~PayUTest01~150.0~USD~4"
        );
        assert_eq!(
            sign(SignatureAlgorithm::HmacSha256, b"test123", &one),
            "65fb2b3452572784e23e7d6480359fd2507c54dd285ca3c4dceffb8764cfb66f"
        );
        let two = confirmation_message(
            "4Vj8eK4rloUd272L48hsrarnUA",
            "508029",
            "PayUTest01",
            &new_value("150.25").unwrap(),
            "USD",
            "4",
        );
        assert_eq!(
            sign(SignatureAlgorithm::HmacSha256, b"test123", &two),
            "7770a7933b90570a078fcacce1790eb13079cdf8f8a6e900b79f4f5eb96b8024"
        );
        // Keyed with the API key instead, the documented value does NOT come out: the HMAC
        // key is the separate signature secret.
        assert_ne!(
            sign(
                SignatureAlgorithm::HmacSha256,
                b"4Vj8eK4rloUd272L48hsrarnUA",
                &one
            ),
            "65fb2b3452572784e23e7d6480359fd2507c54dd285ca3c4dceffb8764cfb66f"
        );
        // Payment-form / request signature (PayU's "Signature for payment form" example):
        //   printf '4Vj8eK4rloUd272L48hsrarnUA~508029~TestPayU~20000~COP' | md5sum
        assert_eq!(
            sign(
                SignatureAlgorithm::Md5,
                b"",
                &request_message(
                    "4Vj8eK4rloUd272L48hsrarnUA",
                    "508029",
                    "TestPayU",
                    "20000",
                    "COP"
                )
            ),
            "7ee7cf808ce6a39b17481c54f2c57acc"
        );
    }

    #[test]
    fn algorithm_names_parse() {
        assert_eq!("MD5".parse(), Ok(SignatureAlgorithm::Md5));
        assert_eq!("md5".parse(), Ok(SignatureAlgorithm::Md5));
        assert_eq!("HMAC_SHA256".parse(), Ok(SignatureAlgorithm::HmacSha256));
        assert_eq!("HMAC-SHA256".parse(), Ok(SignatureAlgorithm::HmacSha256));
        assert_eq!(
            "SHA256".parse::<SignatureAlgorithm>(),
            Err(UnknownAlgorithm)
        );
        assert_eq!("".parse::<SignatureAlgorithm>(), Err(UnknownAlgorithm));
    }

    #[test]
    fn parses_each_state_with_both_algorithms() {
        for algorithm in [SignatureAlgorithm::Md5, SignatureAlgorithm::HmacSha256] {
            let v = verifier(algorithm);
            let n = v
                .verify_body(form(algorithm, "129000.00", "4", "APPROVED", &[]).as_bytes())
                .unwrap();
            assert_eq!(n.provider, "payu");
            assert_eq!(n.event_id, format!("{TX}:4"));
            assert_eq!(n.payment_id.to_string(), PAYMENT);
            assert_eq!(n.provider_transaction_id, format!("1400449959:{TX}"));
            assert!(n.confirm_with_provider, "unsigned ids: confirmed with PayU");
            assert_eq!(
                n.outcome,
                NotificationOutcome::Approved {
                    amount: cop("129000.00")
                }
            );

            let n = v
                .verify_body(
                    form(
                        algorithm,
                        "150.20",
                        "4",
                        "APPROVED",
                        &[("transaction_type", "AUTHORIZATION")],
                    )
                    .as_bytes(),
                )
                .unwrap();
            assert_eq!(
                n.outcome,
                NotificationOutcome::Authorized {
                    amount: cop("150.20")
                }
            );

            let n = v
                .verify_body(form(algorithm, "150.25", "6", "ENTITY_DECLINED", &[]).as_bytes())
                .unwrap();
            assert_eq!(
                n.outcome,
                NotificationOutcome::Declined {
                    reason: "ENTITY_DECLINED".into()
                }
            );
            assert_eq!(n.event_id, format!("{TX}:6"));

            let n = v
                .verify_body(
                    form(algorithm, "150.25", "6", "ABANDONED_TRANSACTION", &[]).as_bytes(),
                )
                .unwrap();
            assert_eq!(
                n.outcome,
                NotificationOutcome::Failed {
                    reason: "ABANDONED_TRANSACTION".into()
                }
            );

            let n = v
                .verify_body(
                    form(algorithm, "20000.00", "5", "EXPIRED_TRANSACTION", &[]).as_bytes(),
                )
                .unwrap();
            assert_eq!(n.outcome, NotificationOutcome::Expired);
            assert_eq!(n.event_id, format!("{TX}:5"));

            let n = v
                .verify_body(
                    form(algorithm, "0.10", "7", "PENDING_TRANSACTION_REVIEW", &[]).as_bytes(),
                )
                .unwrap();
            assert_eq!(n.outcome, NotificationOutcome::Pending);

            let n = v
                .verify_body(form(algorithm, "0.10", "104", "", &[]).as_bytes())
                .unwrap();
            assert_eq!(
                n.outcome,
                NotificationOutcome::Failed {
                    reason: "ERROR".into()
                }
            );
        }
    }

    #[test]
    fn hex_case_and_whitespace_do_not_matter() {
        let alg = SignatureAlgorithm::HmacSha256;
        let raw = form(alg, "129000.00", "4", "APPROVED", &[]);
        let sig = sign(
            alg,
            SECRET.as_bytes(),
            &confirmation_message(API_KEY, MERCHANT, PAYMENT, "129000.0", "COP", "4"),
        );
        let upper = raw.replace(&sig, &sig.to_uppercase());
        assert_ne!(raw, upper);
        assert!(verifier(alg).verify_body(upper.as_bytes()).is_ok());
        let padded = raw.replace(&sig, &format!("+{sig}+"));
        assert!(verifier(alg).verify_body(padded.as_bytes()).is_ok());
    }

    #[test]
    fn tampering_and_wrong_keys_are_refused() {
        for alg in [SignatureAlgorithm::Md5, SignatureAlgorithm::HmacSha256] {
            let raw = form(alg, "129000.00", "4", "APPROVED", &[]);
            let v = verifier(alg);
            assert!(v.verify_body(raw.as_bytes()).is_ok());
            // Changed amount, old signature.
            let tampered = raw.replace("value=129000.00", "value=129001.00");
            assert_ne!(tampered, raw);
            assert_eq!(
                v.verify_body(tampered.as_bytes()),
                Err(WebhookError::InvalidSignature)
            );
            // Changed state, old signature.
            let tampered = raw.replace("state_pol=4", "state_pol=6");
            assert_eq!(
                v.verify_body(tampered.as_bytes()),
                Err(WebhookError::InvalidSignature)
            );
            // Another payment, old signature.
            let tampered = raw.replace("6a1f3c2e", "7a1f3c2e");
            assert_eq!(
                v.verify_body(tampered.as_bytes()),
                Err(WebhookError::InvalidSignature)
            );
            // Wrong API key.
            let other = PayuWebhookVerifier::with_keys(
                MERCHANT,
                "test_payu_api_key_0123456789abce",
                alg,
                SECRET,
            )
            .unwrap();
            assert_eq!(
                other.verify_body(raw.as_bytes()),
                Err(WebhookError::InvalidSignature)
            );
            // Signed for another merchant id (same key) is not ours.
            let foreign = PayuWebhookVerifier::with_keys("508030", API_KEY, alg, SECRET).unwrap();
            assert_eq!(
                foreign.verify_body(raw.as_bytes()),
                Err(WebhookError::InvalidSignature)
            );
        }
        // Wrong HMAC secret.
        let raw = form(
            SignatureAlgorithm::HmacSha256,
            "10.00",
            "4",
            "APPROVED",
            &[],
        );
        let other = PayuWebhookVerifier::with_keys(
            MERCHANT,
            API_KEY,
            SignatureAlgorithm::HmacSha256,
            "another_signature_secret_0123456789",
        )
        .unwrap();
        assert_eq!(
            other.verify_body(raw.as_bytes()),
            Err(WebhookError::InvalidSignature)
        );
        // An MD5 signature does not pass an HMAC verifier, nor the reverse.
        let md5 = form(SignatureAlgorithm::Md5, "10.00", "4", "APPROVED", &[]);
        assert_eq!(
            verifier(SignatureAlgorithm::HmacSha256).verify_body(md5.as_bytes()),
            Err(WebhookError::InvalidSignature)
        );
        assert_eq!(
            verifier(SignatureAlgorithm::Md5).verify_body(raw.as_bytes()),
            Err(WebhookError::InvalidSignature)
        );
    }

    #[test]
    fn missing_or_repeated_signed_fields_are_refused() {
        let alg = SignatureAlgorithm::HmacSha256;
        let v = verifier(alg);
        let raw = form(alg, "129000.00", "4", "APPROVED", &[]);
        for field in [
            "sign",
            "merchant_id",
            "reference_sale",
            "value",
            "currency",
            "state_pol",
        ] {
            let without: Vec<(String, String)> =
                serde_urlencoded::from_str::<Vec<(String, String)>>(&raw)
                    .unwrap()
                    .into_iter()
                    .filter(|(k, _)| k != field)
                    .collect();
            let body = serde_urlencoded::to_string(without).unwrap();
            assert_eq!(
                v.verify_body(body.as_bytes()),
                Err(WebhookError::InvalidSignature),
                "{field}"
            );
        }
        // A second `value` after the signed one must not be able to slip through.
        let doubled = format!("{raw}&value=1.00");
        assert!(matches!(
            v.verify_body(doubled.as_bytes()),
            Err(WebhookError::Malformed(_))
        ));
        // An empty signature.
        let sig_start = raw.find("sign=").unwrap() + 5;
        let sig_end = sig_start + raw[sig_start..].find('&').unwrap();
        let empty = format!("{}{}", &raw[..sig_start], &raw[sig_end..]);
        assert_eq!(
            v.verify_body(empty.as_bytes()),
            Err(WebhookError::InvalidSignature)
        );
    }

    #[test]
    fn unknown_fields_are_tolerated_and_unsigned_ones_may_change() {
        let alg = SignatureAlgorithm::Md5;
        let raw = form(
            alg,
            "129000.00",
            "4",
            "APPROVED",
            &[("some_new_field", "x y&z"), ("cus", "")],
        );
        let n = verifier(alg).verify_body(raw.as_bytes()).unwrap();
        let redelivered = raw.replace("attempts=1", "attempts=2");
        let again = verifier(alg).verify_body(redelivered.as_bytes()).unwrap();
        assert_eq!(n, again);
    }

    #[test]
    fn authenticated_but_bad_fields_are_told() {
        let alg = SignatureAlgorithm::HmacSha256;
        let v = verifier(alg);
        // reference_sale that is not one of our ids, correctly signed.
        let message = confirmation_message(API_KEY, MERCHANT, "order-77", "10.0", "COP", "4");
        let signature = sign(alg, SECRET.as_bytes(), &message);
        let body = format!(
            "merchant_id={MERCHANT}&reference_sale=order-77&value=10.00&currency=COP&state_pol=4&sign={signature}&transaction_id={TX}&reference_pol=1"
        );
        assert!(matches!(
            v.verify_body(body.as_bytes()),
            Err(WebhookError::InvalidField {
                field: "reference_sale",
                ..
            })
        ));
        // Missing transaction id / order id.
        let raw = form(alg, "10.00", "4", "APPROVED", &[]);
        let no_tx = raw.replace(&format!("transaction_id={TX}"), "transaction_idx=1");
        assert!(matches!(
            v.verify_body(no_tx.as_bytes()),
            Err(WebhookError::InvalidField {
                field: "transaction_id",
                ..
            })
        ));
        let bad_order = raw.replace("reference_pol=1400449959", "reference_pol=14004a");
        assert!(matches!(
            v.verify_body(bad_order.as_bytes()),
            Err(WebhookError::InvalidField {
                field: "reference_pol",
                ..
            })
        ));
        // Unknown state.
        let odd = form(alg, "10.00", "99", "X", &[]);
        assert_eq!(
            v.verify_body(odd.as_bytes()),
            Err(WebhookError::UnsupportedStatus("99".into()))
        );
        // Control characters in a decline reason.
        let weird = form(alg, "10.00", "6", "a\nb", &[]);
        assert!(matches!(
            v.verify_body(weird.as_bytes()),
            Err(WebhookError::InvalidField {
                field: "response_message_pol",
                ..
            })
        ));
    }

    #[test]
    fn oversized_and_non_form_bodies_are_refused() {
        let v = verifier(SignatureAlgorithm::Md5);
        assert_eq!(
            v.verify_body(&vec![b'a'; BODY_MAX_BYTES + 1]),
            Err(WebhookError::TooLarge {
                max: BODY_MAX_BYTES
            })
        );
        assert!(matches!(
            v.verify_body(&[b'a', b'=', 0xff, 0xfe]),
            Err(WebhookError::Malformed(_))
        ));
        let raw = form(SignatureAlgorithm::Md5, "1.00", "4", "APPROVED", &[]);
        let headers = vec![("content-type".to_owned(), "application/json".to_owned())];
        let request = WebhookRequest {
            headers: &headers,
            body: raw.as_bytes(),
            peer: None,
            received_at: chrono::Utc::now(),
        };
        assert!(matches!(
            v.verify(&request),
            Err(WebhookError::Malformed(_))
        ));
        let headers = vec![(
            "content-type".to_owned(),
            "application/x-www-form-urlencoded; charset=UTF-8".to_owned(),
        )];
        let request = WebhookRequest {
            headers: &headers,
            ..request
        };
        assert!(v.verify(&request).unwrap().is_some());
    }

    #[test]
    fn debug_redacts_keys_and_construction_needs_them() {
        let v = verifier(SignatureAlgorithm::HmacSha256);
        let printed = format!("{v:?}");
        assert!(
            !printed.contains(API_KEY) && !printed.contains(SECRET),
            "{printed}"
        );
        assert!(PayuWebhookVerifier::with_keys(
            MERCHANT,
            API_KEY,
            SignatureAlgorithm::HmacSha256,
            ""
        )
        .is_err());
        assert!(
            PayuWebhookVerifier::with_keys(MERCHANT, API_KEY, SignatureAlgorithm::Md5, "").is_ok()
        );
        assert!(PayuWebhookVerifier::with_keys("", API_KEY, SignatureAlgorithm::Md5, "").is_err());
        assert!(PayuWebhookVerifier::with_keys(MERCHANT, "", SignatureAlgorithm::Md5, "").is_err());
    }
}
