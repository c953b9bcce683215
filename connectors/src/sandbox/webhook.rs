//! The sandbox provider's webhooks: `X-Sandbox-Signature: hex(HMAC-SHA256(secret, raw body))`
//! over a JSON body
//! `{"id":"evt_..","type":"transaction.updated","created_at":"..","data":{"transaction_id",
//! "payment_id","status","amount","currency","reason"}}`.
//!
//! The sandbox server (`emulators::sandbox`) signs and serializes with code of its own; the
//! contract tests there check its webhooks against [`verify_signature`] and
//! [`parse_notification`].

use std::str::FromStr;

use domain::{Currency, Money, PaymentId};
use hmac::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret, SecretSlice};
use serde::Deserialize;
use sha2::Sha256;

use crate::{excerpt, WebhookError};

type HmacSha256 = Hmac<Sha256>;

/// The header that carries the signature.
pub const SIGNATURE_HEADER: &str = "X-Sandbox-Signature";
/// The only event type the sandbox sends.
pub const EVENT_TYPE_TRANSACTION_UPDATED: &str = "transaction.updated";
/// Largest webhook body parsed.
pub const BODY_MAX_BYTES: usize = 64 * 1024;
/// Longest event or transaction id accepted.
pub const ID_LEN_MAX: usize = 64;
/// Longest decline reason accepted.
pub const REASON_LEN_MAX: usize = 128;

const SIGNATURE_LEN_BYTES: usize = 32;

fn keyed_mac(secret: &[u8], body: &[u8]) -> Option<HmacSha256> {
    // HMAC takes keys of any length (long keys are hashed), so this cannot fail; it is
    // handled rather than unwrapped all the same.
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(secret).ok()?;
    mac.update(body);
    Some(mac)
}

/// Lower-case hex HMAC-SHA256 of `body` under `secret`: the `X-Sandbox-Signature` value.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    match keyed_mac(secret, body) {
        Some(mac) => hex::encode(mac.finalize().into_bytes()),
        // Unreachable (see `keyed_mac`); an empty signature never verifies.
        None => String::new(),
    }
}

/// Whether `header_hex` is the signature of `raw_body` under `secret`.
///
/// Compares in constant time (`Mac::verify_slice`). Malformed hex, a wrong length or an
/// empty secret (a misconfiguration that would make signatures forgeable) give `false`.
/// Surrounding whitespace in the header is ignored; hex case is not significant.
pub fn verify_signature(secret: &[u8], raw_body: &[u8], header_hex: &str) -> bool {
    if secret.is_empty() {
        return false;
    }
    let header_hex = header_hex.trim();
    if header_hex.len() != SIGNATURE_LEN_BYTES * 2 {
        return false;
    }
    let Ok(expected) = hex::decode(header_hex) else {
        return false;
    };
    match keyed_mac(secret, raw_body) {
        Some(mac) => mac.verify_slice(&expected).is_ok(),
        None => false,
    }
}

/// A verified sandbox notification, ready to become a `PaymentCommand`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxNotification {
    /// The provider's event id: the same on every redelivery, recorded in the event it causes.
    pub event_id: String,
    pub transaction_id: String,
    pub payment_id: PaymentId,
    pub outcome: Outcome,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Manual capture: the amount is held, waiting for a capture.
    Authorized {
        amount: Money,
    },
    /// Automatic capture: the amount is captured.
    Approved {
        amount: Money,
    },
    Declined {
        reason: String,
    },
}

/// The JSON shape of a sandbox webhook, as [`parse_notification`] reads it. Unknown fields
/// are tolerated.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct WireEvent {
    pub id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    /// Not used, but a non-string is refused as malformed.
    #[serde(default)]
    #[allow(dead_code)]
    pub created_at: Option<String>,
    pub data: WireTransaction,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct WireTransaction {
    pub transaction_id: String,
    pub payment_id: String,
    pub status: String,
    /// A decimal string; a JSON number is refused.
    pub amount: String,
    pub currency: String,
    #[serde(default)]
    pub reason: Option<String>,
}

/// The sandbox's webhooks, verified by `X-Sandbox-Signature` (HMAC-SHA256 of the raw body).
#[derive(Debug)]
pub struct SandboxWebhookVerifier {
    secret: SecretSlice<u8>,
}

impl SandboxWebhookVerifier {
    pub fn new(secret: &str) -> Self {
        Self {
            secret: secret.as_bytes().to_vec().into(),
        }
    }
}

impl crate::WebhookVerifier for SandboxWebhookVerifier {
    fn provider(&self) -> &'static str {
        "sandbox"
    }

    fn verify(
        &self,
        request: &crate::WebhookRequest<'_>,
    ) -> Result<Option<crate::ProviderNotification>, WebhookError> {
        let signature = request.header(SIGNATURE_HEADER).unwrap_or("");
        if !verify_signature(self.secret.expose_secret(), request.body, signature) {
            return Err(WebhookError::InvalidSignature);
        }
        let notification = match parse_notification(request.body) {
            Ok(n) => n,
            Err(WebhookError::UnsupportedEventType(_) | WebhookError::UnsupportedStatus(_)) => {
                return Ok(None)
            }
            Err(e) => return Err(e),
        };
        let outcome = match notification.outcome {
            Outcome::Authorized { amount } => crate::NotificationOutcome::Authorized { amount },
            Outcome::Approved { amount } => crate::NotificationOutcome::Approved { amount },
            Outcome::Declined { reason } => crate::NotificationOutcome::Declined { reason },
        };
        Ok(Some(crate::ProviderNotification {
            provider: "sandbox",
            event_id: notification.event_id,
            payment_id: notification.payment_id,
            provider_transaction_id: notification.transaction_id,
            outcome,
            confirm_with_provider: false,
        }))
    }
}

/// Parses a sandbox webhook body. Call it only after [`verify_signature`] accepted the same
/// raw bytes.
pub fn parse_notification(raw_body: &[u8]) -> Result<SandboxNotification, WebhookError> {
    if raw_body.len() > BODY_MAX_BYTES {
        return Err(WebhookError::TooLarge {
            max: BODY_MAX_BYTES,
        });
    }
    let event: WireEvent = serde_json::from_slice(raw_body)
        .map_err(|e| WebhookError::Malformed(describe_json_error(&e)))?;

    check_id("id", &event.id)?;
    if event.event_type != EVENT_TYPE_TRANSACTION_UPDATED {
        return Err(WebhookError::UnsupportedEventType(excerpt(
            &event.event_type,
            64,
        )));
    }
    let data = event.data;
    check_id("data.transaction_id", &data.transaction_id)?;
    let payment_id =
        PaymentId::from_str(&data.payment_id).map_err(|_| WebhookError::InvalidField {
            field: "data.payment_id",
            problem: "is not a UUID".into(),
        })?;

    let outcome = match data.status.as_str() {
        "AUTHORIZED" => Outcome::Authorized {
            amount: parse_money(&data.amount, &data.currency)?,
        },
        "APPROVED" => Outcome::Approved {
            amount: parse_money(&data.amount, &data.currency)?,
        },
        "DECLINED" => {
            // The amount is informative on a decline, but a malformed one still means a
            // malformed body.
            parse_money(&data.amount, &data.currency)?;
            let reason = data.reason.unwrap_or_default();
            check_reason(&reason)?;
            Outcome::Declined { reason }
        }
        other => return Err(WebhookError::UnsupportedStatus(excerpt(other, 32))),
    };

    Ok(SandboxNotification {
        event_id: event.id,
        transaction_id: data.transaction_id,
        payment_id,
        outcome,
    })
}

fn parse_money(amount: &str, currency: &str) -> Result<Money, WebhookError> {
    let currency = Currency::from_str(currency).map_err(|e| WebhookError::InvalidField {
        field: "data.currency",
        problem: e.to_string(),
    })?;
    Money::parse(amount, currency).map_err(|e| WebhookError::InvalidField {
        field: "data.amount",
        problem: e.to_string(),
    })
}

fn check_id(field: &'static str, value: &str) -> Result<(), WebhookError> {
    let problem = if value.is_empty() {
        "must not be empty"
    } else if value.len() > ID_LEN_MAX {
        "is too long"
    } else if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        "contains characters that are not allowed"
    } else {
        return Ok(());
    };
    Err(WebhookError::InvalidField {
        field,
        problem: problem.into(),
    })
}

fn check_reason(value: &str) -> Result<(), WebhookError> {
    let problem = if value.is_empty() {
        "is required for a decline"
    } else if value.len() > REASON_LEN_MAX {
        "is too long"
    } else if !value.chars().all(|c| c.is_ascii_graphic() || c == ' ') {
        "contains characters that are not allowed"
    } else {
        return Ok(());
    };
    Err(WebhookError::InvalidField {
        field: "data.reason",
        problem: problem.into(),
    })
}

/// serde_json's messages can quote the offending value; keep only the category and place.
fn describe_json_error(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let what = match e.classify() {
        Category::Io => "unreadable body",
        Category::Syntax => "invalid JSON syntax",
        Category::Data => "missing field or wrong type",
        Category::Eof => "truncated JSON",
    };
    format!("{what} at line {} column {}", e.line(), e.column())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"whsec_test_0123456789abcdef";

    fn body(status: &str, amount: &str, reason: &str) -> String {
        format!(
            r#"{{"id":"evt_1f0c","type":"transaction.updated","created_at":"2025-01-01T00:00:00Z","data":{{"transaction_id":"sbx_tx_9a","payment_id":"6a1f3c2e-8b4d-4e7a-9c10-5d2b7f3e1a90","status":"{status}","amount":{amount},"currency":"COP","reason":{reason}}}}}"#
        )
    }

    #[test]
    fn sign_matches_a_known_hmac_sha256_vector() {
        // RFC 4231 test case 2.
        assert_eq!(
            sign(b"Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn a_valid_signature_verifies_in_either_hex_case() {
        let raw = body("APPROVED", r#""129000.00""#, "null");
        let sig = sign(SECRET, raw.as_bytes());
        assert!(verify_signature(SECRET, raw.as_bytes(), &sig));
        assert!(verify_signature(
            SECRET,
            raw.as_bytes(),
            &sig.to_uppercase()
        ));
        assert!(verify_signature(
            SECRET,
            raw.as_bytes(),
            &format!(" {sig}\t")
        ));
    }

    #[test]
    fn tampered_body_wrong_secret_and_malformed_hex_do_not_verify() {
        let raw = body("APPROVED", r#""129000.00""#, "null");
        let sig = sign(SECRET, raw.as_bytes());
        let tampered = raw.replace("129000.00", "129001.00");
        assert!(!verify_signature(SECRET, tampered.as_bytes(), &sig));
        assert!(!verify_signature(b"another secret", raw.as_bytes(), &sig));
        assert!(!verify_signature(SECRET, raw.as_bytes(), ""));
        assert!(!verify_signature(SECRET, raw.as_bytes(), "zz"));
        assert!(!verify_signature(
            SECRET,
            raw.as_bytes(),
            &sig.replace(&sig[..2], "zz")
        ));
        assert!(!verify_signature(SECRET, raw.as_bytes(), &sig[..62]));
        assert!(!verify_signature(
            SECRET,
            raw.as_bytes(),
            &format!("{sig}00")
        ));
        assert!(!verify_signature(
            SECRET,
            raw.as_bytes(),
            &format!("sha256={sig}")
        ));
        assert!(!verify_signature(
            b"",
            raw.as_bytes(),
            &sign(b"", raw.as_bytes())
        ));
    }

    #[test]
    fn parses_each_outcome() {
        let n = parse_notification(body("APPROVED", r#""129000.00""#, "null").as_bytes()).unwrap();
        assert_eq!(n.event_id, "evt_1f0c");
        assert_eq!(n.transaction_id, "sbx_tx_9a");
        assert_eq!(
            n.payment_id.to_string(),
            "6a1f3c2e-8b4d-4e7a-9c10-5d2b7f3e1a90"
        );
        let cop = |s| Money::parse(s, Currency::COP).unwrap();
        assert_eq!(
            n.outcome,
            Outcome::Approved {
                amount: cop("129000.00")
            }
        );

        let n = parse_notification(body("AUTHORIZED", r#""5.5""#, "null").as_bytes()).unwrap();
        assert_eq!(
            n.outcome,
            Outcome::Authorized {
                amount: cop("5.50")
            }
        );

        let n = parse_notification(body("DECLINED", r#""5""#, r#""card_declined""#).as_bytes())
            .unwrap();
        assert_eq!(
            n.outcome,
            Outcome::Declined {
                reason: "card_declined".into()
            }
        );
    }

    #[test]
    fn tolerates_unknown_fields() {
        let raw = body("APPROVED", r#""1.00""#, "null").replace(
            r#""data":{"#,
            r#""livemode":false,"data":{"fee":{"amount":"1"},"#,
        );
        assert!(parse_notification(raw.as_bytes()).is_ok(), "{raw}");
    }

    #[test]
    fn refuses_loose_money_and_bad_fields() {
        let bad = [
            body("APPROVED", "129000.00", "null"),      // JSON number
            body("APPROVED", r#""1.001""#, "null"),     // too many decimals
            body("APPROVED", r#""-1.00""#, "null"),     // sign
            body("APPROVED", r#""0.00""#, "null"),      // zero
            body("APPROVED", r#""1e3""#, "null"),       // exponent
            body("DECLINED", r#""1.00""#, "null"),      // decline without reason
            body("DECLINED", r#""1.00""#, r#""a\nb""#), // control character in reason
            body("APPROVED", r#""1.00""#, "null").replace("COP", "XXX"),
            body("APPROVED", r#""1.00""#, "null").replace("6a1f3c2e-", "not-a-uuid-"),
            body("APPROVED", r#""1.00""#, "null").replace("evt_1f0c", &"e".repeat(65)),
            body("APPROVED", r#""1.00""#, "null").replace("evt_1f0c", "evt/../x"),
            body("APPROVED", r#""1.00""#, "null").replace("sbx_tx_9a", ""),
            body("APPROVED", r#""1.00""#, "null").replace(r#""id":"evt_1f0c","#, ""),
            r#"{"id":"evt_1","type":"transaction.updated","id":"evt_2","data":{}}"#.into(),
            "not json".into(),
        ];
        for raw in bad {
            assert!(parse_notification(raw.as_bytes()).is_err(), "{raw}");
        }
    }

    #[test]
    fn unsupported_types_and_statuses_are_told_apart() {
        let raw = body("PENDING", r#""1.00""#, "null");
        assert_eq!(
            parse_notification(raw.as_bytes()),
            Err(WebhookError::UnsupportedStatus("PENDING".into()))
        );
        let raw =
            body("APPROVED", r#""1.00""#, "null").replace("transaction.updated", "refund.created");
        assert_eq!(
            parse_notification(raw.as_bytes()),
            Err(WebhookError::UnsupportedEventType("refund.created".into()))
        );
    }

    #[test]
    fn refuses_oversized_bodies_before_parsing() {
        let raw = vec![b' '; BODY_MAX_BYTES + 1];
        assert_eq!(
            parse_notification(&raw),
            Err(WebhookError::TooLarge {
                max: BODY_MAX_BYTES
            })
        );
    }

    #[test]
    fn malformed_messages_do_not_echo_values() {
        let raw = body("APPROVED", "12345678.91", "null");
        let err = parse_notification(raw.as_bytes()).unwrap_err().to_string();
        assert!(!err.contains("12345678"), "{err}");
    }
}
