//! GCash (PayMongo) webhooks: `Paymongo-Signature: t=<unix ts>,te=<test sig>,li=<live sig>`.
//!
//! Each signature is hex HMAC-SHA256 under the webhook's secret of `t + "." + raw body`. The
//! verifier compares against `te` in test mode and `li` in live mode (the mode follows the
//! configured secret key: `sk_live_` is live), in constant time, then refuses timestamps
//! further than the tolerance (default 300 s) from `WebhookRequest::received_at`, either way.
//! A bad or missing signature is [`WebhookError::InvalidSignature`]; a good signature on a
//! stale timestamp is [`WebhookError::StaleTimestamp`].
//!
//! The body is a PayMongo event `{"data":{"id":"evt_..","type":"event","attributes":{"type",
//! "livemode","data":<resource>}}}`. payledger acts on `payment.paid` (-> `Approved`) and
//! `payment.failed` (-> `Declined`), whose resource is the payment (`pay_...`) with its
//! `payment_intent_id` (our provider transaction id) and `metadata.payment_id` (our payment
//! id; the description carries it too). Every other event type is verified and acknowledged
//! (`Ok(None)`). The event id is PayMongo's `data.id`, the same on every redelivery.

use std::time::Duration;

use chrono::{DateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret, SecretSlice};
use sha2::Sha256;

use crate::paymongo::{
    self, from_centavos, payment_failure_reason, wire, PaymongoConfig, PaymongoProvider,
};
use crate::ProviderConfigError;

use crate::{
    excerpt, NotificationOutcome, ProviderNotification, WebhookError, WebhookRequest,
    WebhookVerifier,
};

type HmacSha256 = Hmac<Sha256>;

/// The header that carries the signatures.
pub const SIGNATURE_HEADER: &str = "Paymongo-Signature";
/// Largest webhook body parsed.
pub const BODY_MAX_BYTES: usize = 64 * 1024;
/// Longest event or resource id accepted.
pub const ID_LEN_MAX: usize = 64;
pub const EVENT_PAYMENT_PAID: &str = "payment.paid";
pub const EVENT_PAYMENT_FAILED: &str = "payment.failed";

const SIGNATURE_LEN_BYTES: usize = 32;
/// Longest `Paymongo-Signature` header parsed.
const HEADER_LEN_MAX: usize = 512;

fn keyed_mac(secret: &[u8], timestamp: i64, body: &[u8]) -> Option<HmacSha256> {
    // HMAC takes keys of any length, so this cannot fail; handled rather than unwrapped.
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(secret).ok()?;
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Some(mac)
}

/// Lower-case hex HMAC-SHA256 of `t + "." + body` under `secret`.
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    match keyed_mac(secret, timestamp, body) {
        Some(mac) => hex::encode(mac.finalize().into_bytes()),
        None => String::new(),
    }
}

/// A whole `Paymongo-Signature` value as PayMongo sends it: the signature goes in `li` in
/// live mode and in `te` in test mode; the other is empty.
pub fn signature_header(secret: &[u8], timestamp: i64, body: &[u8], livemode: bool) -> String {
    let signature = sign(secret, timestamp, body);
    if livemode {
        format!("t={timestamp},te=,li={signature}")
    } else {
        format!("t={timestamp},te={signature},li=")
    }
}

/// The parts of a `Paymongo-Signature` header.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SignatureHeader<'a> {
    timestamp: i64,
    test: &'a str,
    live: &'a str,
}

/// Parses `t=..,te=..,li=..` strictly: each key at most once, `t` a plain unsigned number.
/// Unknown keys are ignored (room for PayMongo to add schemes).
fn parse_header(value: &str) -> Option<SignatureHeader<'_>> {
    if value.len() > HEADER_LEN_MAX {
        return None;
    }
    let (mut t, mut te, mut li) = (None, None, None);
    for part in value.split(',') {
        let (key, val) = part.split_once('=')?;
        let slot = match key.trim() {
            "t" => &mut t,
            "te" => &mut te,
            "li" => &mut li,
            _ => continue,
        };
        if slot.replace(val.trim()).is_some() {
            return None;
        }
    }
    let t = t?;
    if t.is_empty() || t.len() > 12 || !t.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(SignatureHeader {
        timestamp: t.parse().ok()?,
        test: te.unwrap_or(""),
        live: li.unwrap_or(""),
    })
}

/// Checks a `Paymongo-Signature` header against the raw body: the mode's signature must
/// match (constant time), then the timestamp must be within `tolerance` of `received_at`.
pub fn verify_signature(
    secret: &[u8],
    raw_body: &[u8],
    header: Option<&str>,
    livemode: bool,
    received_at: DateTime<Utc>,
    tolerance: Duration,
) -> Result<(), WebhookError> {
    if secret.is_empty() {
        // A misconfiguration that would make signatures forgeable.
        return Err(WebhookError::InvalidSignature);
    }
    let header = header
        .and_then(parse_header)
        .ok_or(WebhookError::InvalidSignature)?;
    let presented = if livemode { header.live } else { header.test };
    if presented.len() != SIGNATURE_LEN_BYTES * 2 {
        return Err(WebhookError::InvalidSignature);
    }
    let presented = hex::decode(presented).map_err(|_| WebhookError::InvalidSignature)?;
    let valid = keyed_mac(secret, header.timestamp, raw_body)
        .is_some_and(|mac| mac.verify_slice(&presented).is_ok());
    if !valid {
        return Err(WebhookError::InvalidSignature);
    }
    let age = received_at.timestamp().abs_diff(header.timestamp);
    if age > tolerance.as_secs() {
        return Err(WebhookError::StaleTimestamp);
    }
    Ok(())
}

/// Verifies and parses GCash (PayMongo) webhooks.
#[derive(Debug, Clone)]
pub struct PaymongoWebhookVerifier {
    secret: SecretSlice<u8>,
    livemode: bool,
    tolerance: Duration,
}

impl PaymongoWebhookVerifier {
    pub fn new(config: &PaymongoConfig) -> Result<Self, ProviderConfigError> {
        let invalid = |problem: &str| ProviderConfigError {
            provider: PaymongoProvider::NAME,
            problem: problem.to_owned(),
        };
        let secret = config.webhook_secret.expose_secret();
        if secret.is_empty() {
            return Err(invalid("webhook_secret is empty"));
        }
        if config.webhook_tolerance_secs == 0
            || config.webhook_tolerance_secs > paymongo::WEBHOOK_TOLERANCE_SECS_MAX
        {
            return Err(invalid("webhook_tolerance_secs must be between 1 and 3600"));
        }
        Ok(PaymongoWebhookVerifier {
            secret: secret.as_bytes().to_vec().into(),
            livemode: config.livemode(),
            tolerance: Duration::from_secs(config.webhook_tolerance_secs),
        })
    }
}

impl WebhookVerifier for PaymongoWebhookVerifier {
    fn provider(&self) -> &'static str {
        PaymongoProvider::NAME
    }

    fn verify(
        &self,
        request: &WebhookRequest<'_>,
    ) -> Result<Option<ProviderNotification>, WebhookError> {
        if request.body.len() > BODY_MAX_BYTES {
            return Err(WebhookError::TooLarge {
                max: BODY_MAX_BYTES,
            });
        }
        verify_signature(
            self.secret.expose_secret(),
            request.body,
            request.header(SIGNATURE_HEADER),
            self.livemode,
            request.received_at,
            self.tolerance,
        )?;
        parse_notification(request.body, self.livemode)
    }
}

/// Parses a PayMongo event body. Call it only after [`verify_signature`] accepted the same
/// raw bytes. `livemode` is the configured mode: an event of the other mode is refused.
pub fn parse_notification(
    raw_body: &[u8],
    livemode: bool,
) -> Result<Option<ProviderNotification>, WebhookError> {
    if raw_body.len() > BODY_MAX_BYTES {
        return Err(WebhookError::TooLarge {
            max: BODY_MAX_BYTES,
        });
    }
    let event: wire::Envelope<wire::Event> = serde_json::from_slice(raw_body)
        .map_err(|e| WebhookError::Malformed(describe_json_error(&e)))?;
    let event = event.data;
    check_id("data.id", &event.id)?;
    if event.attributes.livemode != livemode {
        return Err(WebhookError::InvalidField {
            field: "data.attributes.livemode",
            problem: "does not match the configured mode".into(),
        });
    }
    let kind = event.attributes.kind.as_str();
    if kind != EVENT_PAYMENT_PAID && kind != EVENT_PAYMENT_FAILED {
        return Ok(None);
    }
    let payment: wire::Payment = serde_json::from_value(event.attributes.data)
        .map_err(|e| WebhookError::Malformed(describe_json_error(&e)))?;
    check_id("data.attributes.data.id", &payment.id)?;
    let p = &payment.attributes;
    let intent_id = p
        .payment_intent_id
        .as_deref()
        .ok_or(WebhookError::InvalidField {
            field: "data.attributes.data.attributes.payment_intent_id",
            problem: "is missing".into(),
        })?;
    check_id(
        "data.attributes.data.attributes.payment_intent_id",
        intent_id,
    )?;
    let payment_id = wire::payment_id_of(p.metadata.as_ref(), p.description.as_deref()).ok_or(
        WebhookError::InvalidField {
            field: "data.attributes.data.attributes.metadata.payment_id",
            problem: "is not a payledger payment id".into(),
        },
    )?;
    let amount = from_centavos(p.amount, &p.currency)
        .ok()
        .filter(|m| !m.is_zero())
        .ok_or_else(|| WebhookError::InvalidField {
            field: "data.attributes.data.attributes.amount",
            problem: "is not a positive amount in a known currency".into(),
        })?;
    let outcome = match (kind, p.status.as_str()) {
        (EVENT_PAYMENT_PAID, "paid") => NotificationOutcome::Approved { amount },
        (EVENT_PAYMENT_FAILED, "failed") => NotificationOutcome::Declined {
            reason: payment_failure_reason(p),
        },
        (_, other) => return Err(WebhookError::UnsupportedStatus(excerpt(other, 32))),
    };
    Ok(Some(ProviderNotification {
        provider: PaymongoProvider::NAME,
        event_id: event.id,
        payment_id,
        provider_transaction_id: intent_id.to_owned(),
        outcome,
        confirm_with_provider: false,
    }))
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
    use chrono::TimeZone;
    use domain::{Currency, Money, PaymentId};
    use std::str::FromStr;

    const SECRET: &[u8] = b"whsk_test_payledger_kat_0123456789abcdef";
    const PAYMENT_ID: &str = "6a1f3c2e-8b4d-4e7a-9c10-5d2b7f3e1a90";
    const T: i64 = 1_700_000_000;
    const TOLERANCE: Duration = Duration::from_secs(300);

    /// Known answer, computed independently of this code with both
    /// `python3 -c 'import hashlib,hmac; print(hmac.new(b"whsk_test_payledger_kat_0123456789abcdef",
    /// b"1700000000." + KAT_BODY, hashlib.sha256).hexdigest())'` and
    /// `printf '%s' '1700000000.<KAT_BODY>' | openssl dgst -sha256 -hmac
    /// 'whsk_test_payledger_kat_0123456789abcdef'`.
    const KAT_BODY: &str = r#"{"data":{"id":"evt_9w6KTxQY3hmuDQaALHoAZnRp","type":"event","attributes":{"type":"payment.paid","livemode":false}}}"#;
    const KAT_SIGNATURE: &str = "46400b3c16dde42ab01034b18d420e09c35e4fdc7e749e7ae4510d638ad10b40";

    fn at(ts: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(ts, 0).single().unwrap()
    }

    fn event(kind: &str, status: &str, amount: i64, livemode: bool) -> String {
        format!(
            r#"{{"data":{{"id":"evt_9w6KTxQY3hmuDQaALHoAZnRp","type":"event","attributes":{{"type":"{kind}","livemode":{livemode},"data":{{"id":"pay_JMg1rgaUtg5U79rRSjiDUvLr","type":"payment","attributes":{{"access_url":null,"amount":{amount},"balance_transaction_id":"bal_txn_1","billing":null,"currency":"PHP","description":"payledger {PAYMENT_ID} order-1","disputed":false,"fee":2500,"livemode":{livemode},"net_amount":97500,"origin":"api","payment_intent_id":"pi_1Pb5ED9RDLCSsWMwXT5W6Q3K","source":{{"id":"src_1","type":"gcash"}},"status":"{status}","metadata":{{"payment_id":"{PAYMENT_ID}","reference":"order-1"}},"refunds":[],"failed_code":null}}}},"previous_data":{{}},"created_at":1700000000,"updated_at":1700000000}}}}}}"#
        )
    }

    fn verifier(secret: &str, sk: &str) -> PaymongoWebhookVerifier {
        PaymongoWebhookVerifier::new(&PaymongoConfig {
            base_url: "http://127.0.0.1:1".into(),
            secret_key: sk.into(),
            public_key: None,
            webhook_secret: secret.into(),
            webhook_tolerance_secs: 300,
            timeout_ms: 1_000,
        })
        .unwrap()
    }

    fn deliver(
        v: &PaymongoWebhookVerifier,
        body: &str,
        header: Option<&str>,
        received: i64,
    ) -> Result<Option<ProviderNotification>, WebhookError> {
        let headers: Vec<(String, String)> = header
            .map(|h| vec![("paymongo-signature".to_owned(), h.to_owned())])
            .unwrap_or_default();
        v.verify(&WebhookRequest {
            headers: &headers,
            body: body.as_bytes(),
            peer: None,
            received_at: at(received),
        })
    }

    #[test]
    fn sign_matches_the_independently_computed_vector() {
        assert_eq!(sign(SECRET, T, KAT_BODY.as_bytes()), KAT_SIGNATURE);
        let header = format!("t={T},te={KAT_SIGNATURE},li=");
        assert_eq!(
            signature_header(SECRET, T, KAT_BODY.as_bytes(), false),
            header
        );
        assert_eq!(
            verify_signature(
                SECRET,
                KAT_BODY.as_bytes(),
                Some(&header),
                false,
                at(T),
                TOLERANCE
            ),
            Ok(())
        );
        // RFC 4231 test case 2 through the same HMAC (key "Jefe"): the message is
        // "<t>." + body, so t=0 and body "what do ya want for nothing?" is a different
        // message; check the raw primitive instead.
        let mut mac = <HmacSha256 as KeyInit>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac.finalize().into_bytes()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn a_paid_event_verifies_and_names_our_payment() {
        let v = verifier(std::str::from_utf8(SECRET).unwrap(), "sk_test_x");
        let body = event("payment.paid", "paid", 12_950, false);
        let header = signature_header(SECRET, T, body.as_bytes(), false);
        let n = deliver(&v, &body, Some(&header), T + 10).unwrap().unwrap();
        assert_eq!(n.provider, "gcash");
        assert_eq!(n.event_id, "evt_9w6KTxQY3hmuDQaALHoAZnRp");
        assert_eq!(n.payment_id, PaymentId::from_str(PAYMENT_ID).unwrap());
        assert_eq!(n.provider_transaction_id, "pi_1Pb5ED9RDLCSsWMwXT5W6Q3K");
        assert!(!n.confirm_with_provider);
        assert_eq!(
            n.outcome,
            NotificationOutcome::Approved {
                amount: Money::parse("129.50", Currency::PHP).unwrap()
            }
        );

        let failed = event("payment.failed", "failed", 12_950, false).replace(
            r#""failed_code":null"#,
            r#""failed_code":"insufficient_funds""#,
        );
        let header = signature_header(SECRET, T, failed.as_bytes(), false);
        assert_eq!(
            deliver(&v, &failed, Some(&header), T)
                .unwrap()
                .unwrap()
                .outcome,
            NotificationOutcome::Declined {
                reason: "gcash_insufficient_funds".into()
            }
        );
    }

    #[test]
    fn te_is_checked_in_test_mode_and_li_in_live_mode() {
        let test_v = verifier(std::str::from_utf8(SECRET).unwrap(), "sk_test_x");
        let live_v = verifier(std::str::from_utf8(SECRET).unwrap(), "sk_live_x");
        let test_body = event("payment.paid", "paid", 10_000, false);
        let live_body = event("payment.paid", "paid", 10_000, true);
        let sig = |b: &str| sign(SECRET, T, b.as_bytes());

        // Test mode: the signature must be in te; in li alone it does not count.
        let in_li = format!("t={T},te=,li={}", sig(&test_body));
        assert_eq!(
            deliver(&test_v, &test_body, Some(&in_li), T),
            Err(WebhookError::InvalidSignature)
        );
        let in_te = format!("t={T},te={},li=", sig(&test_body));
        assert!(deliver(&test_v, &test_body, Some(&in_te), T).is_ok());

        // Live mode: the signature must be in li.
        let in_te = format!("t={T},te={},li=", sig(&live_body));
        assert_eq!(
            deliver(&live_v, &live_body, Some(&in_te), T),
            Err(WebhookError::InvalidSignature)
        );
        let in_li = format!("t={T},te=,li={}", sig(&live_body));
        assert!(deliver(&live_v, &live_body, Some(&in_li), T)
            .unwrap()
            .is_some());
        // Both present (keys in any order): only the mode's one is read.
        let both = format!("li={},t={T},te={}", sig(&live_body), "0".repeat(64));
        assert!(deliver(&live_v, &live_body, Some(&both), T).is_ok());

        // A test event signed for a live deployment is still refused by its mode flag.
        let header = format!("t={T},te=,li={}", sig(&test_body));
        assert!(matches!(
            deliver(&live_v, &test_body, Some(&header), T),
            Err(WebhookError::InvalidField { .. })
        ));
    }

    #[test]
    fn stale_and_future_timestamps_are_refused() {
        let v = verifier(std::str::from_utf8(SECRET).unwrap(), "sk_test_x");
        let body = event("payment.paid", "paid", 10_000, false);
        let header = signature_header(SECRET, T, body.as_bytes(), false);
        assert!(deliver(&v, &body, Some(&header), T + 300).is_ok());
        assert_eq!(
            deliver(&v, &body, Some(&header), T + 301),
            Err(WebhookError::StaleTimestamp)
        );
        assert_eq!(
            deliver(&v, &body, Some(&header), T - 301),
            Err(WebhookError::StaleTimestamp)
        );
        assert!(WebhookError::StaleTimestamp.is_authentication());
        // Moving t forward without re-signing breaks the signature instead.
        let moved = header.replace(&format!("t={T}"), &format!("t={}", T + 3600));
        assert_eq!(
            deliver(&v, &body, Some(&moved), T + 3600),
            Err(WebhookError::InvalidSignature)
        );
    }

    #[test]
    fn tampered_body_wrong_secret_and_malformed_headers_are_refused() {
        let v = verifier(std::str::from_utf8(SECRET).unwrap(), "sk_test_x");
        let body = event("payment.paid", "paid", 10_000, false);
        let header = signature_header(SECRET, T, body.as_bytes(), false);

        let tampered = body.replace(r#""amount":10000"#, r#""amount":1000000"#);
        assert_ne!(tampered, body);
        assert_eq!(
            deliver(&v, &tampered, Some(&header), T),
            Err(WebhookError::InvalidSignature)
        );

        let other_secret = signature_header(
            b"whsk_another_secret_0123456789abcdef",
            T,
            body.as_bytes(),
            false,
        );
        assert_eq!(
            deliver(&v, &body, Some(&other_secret), T),
            Err(WebhookError::InvalidSignature)
        );
        let wrong_verifier = verifier("whsk_another_secret_0123456789abcdef", "sk_test_x");
        assert_eq!(
            deliver(&wrong_verifier, &body, Some(&header), T),
            Err(WebhookError::InvalidSignature)
        );

        let sig = sign(SECRET, T, body.as_bytes());
        for bad in [
            String::new(),
            sig.clone(),
            format!("te={sig},li="),
            format!("t=,te={sig},li="),
            format!("t=-{T},te={sig},li="),
            format!("t={T}x,te={sig},li="),
            format!("t={T},te={sig},te={sig},li="),
            format!("t={T},t={T},te={sig},li="),
            format!("t={T},te={},li=", &sig[..62]),
            format!("t={T},te={sig}00,li="),
            format!("t={T},te=sha256={sig},li="),
            format!("t={T},te={},li=", sig.replace(&sig[..2], "zz")),
            format!("t={T};te={sig}"),
            format!("t={T},te={sig},li=,{}", "x=".repeat(300)),
        ] {
            assert_eq!(
                deliver(&v, &body, Some(&bad), T),
                Err(WebhookError::InvalidSignature),
                "{bad}"
            );
        }
        assert_eq!(
            deliver(&v, &body, None, T),
            Err(WebhookError::InvalidSignature)
        );
        // Hex case and surrounding spaces do not matter.
        let upper = format!(" t={T} , te={} , li=", sig.to_uppercase());
        assert!(deliver(&v, &body, Some(&upper), T).is_ok());
        // An empty secret never verifies, even a signature made with it.
        assert_eq!(
            verify_signature(
                b"",
                body.as_bytes(),
                Some(&signature_header(b"", T, body.as_bytes(), false)),
                false,
                at(T),
                TOLERANCE
            ),
            Err(WebhookError::InvalidSignature)
        );
    }

    #[test]
    fn other_event_types_are_acknowledged_and_bad_payments_refused() {
        for kind in [
            "payment_intent.succeeded",
            "source.chargeable",
            "payment.refunded",
        ] {
            assert_eq!(
                parse_notification(event(kind, "paid", 100, false).as_bytes(), false),
                Ok(None),
                "{kind}"
            );
        }
        let bad = [
            event("payment.paid", "failed", 100, false),
            event("payment.paid", "paid", 0, false),
            event("payment.paid", "paid", -100, false),
            event("payment.paid", "paid", 100, false).replace("PHP", "XXX"),
            event("payment.paid", "paid", 100, false)
                .replace(r#""payment_intent_id":"pi_1Pb5ED9RDLCSsWMwXT5W6Q3K","#, ""),
            event("payment.paid", "paid", 100, false)
                .replace(r#""payment_id":"6a1f3c2e"#, r#""payment_id":"xx"#),
            event("payment.paid", "paid", 100, false)
                .replace("evt_9w6KTxQY3hmuDQaALHoAZnRp", "evt/1"),
            event("payment.paid", "paid", 100, false)
                .replace(r#""amount":100"#, r#""amount":"1.00""#),
            "not json".into(),
        ];
        for raw in bad {
            assert!(parse_notification(raw.as_bytes(), false).is_err(), "{raw}");
        }
        // The description alone is enough to name the payment.
        let no_meta = event("payment.paid", "paid", 100, false).replace(
            &format!(r#""metadata":{{"payment_id":"{PAYMENT_ID}","reference":"order-1"}},"#),
            "",
        );
        assert!(parse_notification(no_meta.as_bytes(), false)
            .unwrap()
            .is_some());
        assert_eq!(
            parse_notification(&vec![b' '; BODY_MAX_BYTES + 1], false),
            Err(WebhookError::TooLarge {
                max: BODY_MAX_BYTES
            })
        );
    }
}
