//! Wompi's webhooks ("eventos"): verification and parsing.
//!
//! Wompi POSTs JSON such as
//! `{"event":"transaction.updated","data":{"transaction":{"id","status","amount_in_cents",
//! "reference","currency","status_message",...}},"environment":"test"|"prod",
//! "signature":{"properties":["transaction.id","transaction.status",
//! "transaction.amount_in_cents"],"checksum":"..."},"timestamp":1530291411,"sent_at":"..."}`
//! with the checksum also in the header `X-Event-Checksum`.
//!
//! `checksum` = hex SHA-256 (plain SHA-256, not HMAC) of: the values of the listed
//! properties, read under `data` (dotted paths), in the listed order, concatenated; then
//! `timestamp` (the integer as decimal text); then the events secret ([`event_checksum`]).
//! The properties are read from each event, never assumed. The body's checksum and, when
//! present, the header must both match; hex case does not matter; comparisons are constant
//! time. The body is parsed once from the raw bytes (duplicate keys refused), never
//! re-serialized.
//!
//! * Event id: Wompi sends none, so it is `<transaction.id>:<transaction.status>`, the same on
//!   every redelivery of that transition.
//! * `timestamp` must be within `WOMPI_EVENT_AGE_MAX_S` (ten minutes by default: a captured
//!   event replayed later is refused; Wompi's redeliveries hours later are too, and the
//!   outcome is asked of Wompi by sync and the reconciler) and at most [`FUTURE_SKEW`] ahead.
//! * Outcomes: `APPROVED` -> `Approved{amount}`, `DECLINED` -> `Declined{status_message or
//!   "declined"}`, `ERROR` -> `Failed{status_message or "error"}`, `PENDING` -> `Pending`,
//!   `VOIDED` -> `Ok(None)` (not an outcome payledger appends). Other event types ->
//!   `UnsupportedEventType` after the checksum verified.
//! * Wompi's checksum covers only the listed properties (by default id, status and amount):
//!   the `reference` that names our payment, and the currency, are not signed. A notification
//!   whose signed properties do not cover `transaction.reference`, `transaction.currency` and
//!   `transaction.amount_in_cents` is therefore marked `confirm_with_provider`: the payment
//!   is settled from `GET /transactions/{id}`, not from the body alone. An event whose checksum
//!   does not cover `transaction.id` and `transaction.status` is refused.
//! * Wompi has no `EXPIRED`: a Bancolombia transfer, QR or Daviplata payment its deadline
//!   closed ends `DECLINED` or `ERROR`, like a refusal. Such events are always confirmed with
//!   Wompi, whose transaction (`finalized_at` against `expiration_time`) tells which.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use domain::{Currency, PaymentId};
use secrecy::{ExposeSecret, SecretSlice};
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::{Map, Number, Value};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::http::sanitize;
use crate::wompi::{money_from_cents, WompiConfig};
use crate::{
    excerpt, NotificationOutcome, ProviderNotification, WebhookError, WebhookRequest,
    WebhookVerifier,
};

/// The header that repeats the checksum.
pub const CHECKSUM_HEADER: &str = "X-Event-Checksum";
pub const EVENT_TRANSACTION_UPDATED: &str = "transaction.updated";
/// What Wompi signs by default, in this order.
pub const DEFAULT_PROPERTIES: [&str; 3] = [
    "transaction.id",
    "transaction.status",
    "transaction.amount_in_cents",
];
/// Largest webhook body parsed.
pub const BODY_MAX_BYTES: usize = 64 * 1024;
/// How old a `timestamp` may be unless configured (`WompiConfig::event_age_max_s`).
pub const DEFAULT_TIMESTAMP_TOLERANCE: Duration =
    Duration::from_secs(super::client::DEFAULT_EVENT_AGE_MAX_S);
/// How far ahead of our clock a `timestamp` may be.
pub const FUTURE_SKEW: Duration = Duration::from_secs(5 * 60);

const PROPERTIES_MAX: usize = 32;
const PROPERTY_LEN_MAX: usize = 128;
const ID_LEN_MAX: usize = 64;
const REASON_LEN_MAX: usize = 128;
const CHECKSUM_LEN_BYTES: usize = 32;

/// The raw SHA-256 of Wompi's checksum input.
fn checksum_digest(values: &[&str], timestamp: i64, events_secret: &[u8]) -> [u8; 32] {
    let mut hash = Sha256::new();
    for value in values {
        hash.update(value.as_bytes());
    }
    hash.update(timestamp.to_string().as_bytes());
    hash.update(events_secret);
    hash.finalize().into()
}

/// Lower-case hex checksum of an event: SHA-256 of the property values in order, then the
/// timestamp, then the events secret. Tests sign events with this (the Wompi emulator,
/// `emulators::wompi`, has its own).
pub fn event_checksum(values: &[&str], timestamp: i64, events_secret: &str) -> String {
    hex::encode(checksum_digest(values, timestamp, events_secret.as_bytes()))
}

/// Verifies and parses Wompi's `transaction.updated` events.
#[derive(Debug, Clone)]
pub struct WompiWebhookVerifier {
    events_secret: SecretSlice<u8>,
    tolerance: Duration,
    /// `"test"` or `"prod"` when the secret's prefix says which; events of the other
    /// environment are refused.
    environment: Option<&'static str>,
}

impl WompiWebhookVerifier {
    pub fn new(events_secret: &str) -> Self {
        let environment = if events_secret.starts_with("test_events_") {
            Some("test")
        } else if events_secret.starts_with("prod_events_") {
            Some("prod")
        } else {
            None
        };
        WompiWebhookVerifier {
            events_secret: events_secret.as_bytes().to_vec().into(),
            tolerance: DEFAULT_TIMESTAMP_TOLERANCE,
            environment,
        }
    }

    pub fn from_config(config: &WompiConfig) -> Self {
        Self::new(config.events_secret.expose_secret())
            .with_timestamp_tolerance(Duration::from_secs(config.event_age_max_s))
    }

    /// How old an event's `timestamp` may be.
    pub fn with_timestamp_tolerance(mut self, tolerance: Duration) -> Self {
        self.tolerance = tolerance;
        self
    }

    /// Checks the checksum of the body (and of `X-Event-Checksum`, when sent) without
    /// looking at the event type: `Ok` with the parsed body when both match.
    fn authenticate(&self, request: &WebhookRequest<'_>) -> Result<Authentic, WebhookError> {
        if request.body.len() > BODY_MAX_BYTES {
            return Err(WebhookError::TooLarge {
                max: BODY_MAX_BYTES,
            });
        }
        // An empty secret would make checksums forgeable by anyone.
        if self.events_secret.expose_secret().is_empty() {
            return Err(WebhookError::InvalidSignature);
        }
        let root = parse_strict(request.body)?;
        let Value::Object(root) = root else {
            return Err(WebhookError::Malformed(
                "the body is not a JSON object".into(),
            ));
        };
        let signature = root
            .get("signature")
            .and_then(Value::as_object)
            .ok_or(WebhookError::InvalidSignature)?;
        let checksum = signature
            .get("checksum")
            .and_then(Value::as_str)
            .ok_or(WebhookError::InvalidSignature)?;
        let properties: Vec<String> = match signature.get("properties") {
            Some(Value::Array(items)) if !items.is_empty() && items.len() <= PROPERTIES_MAX => {
                items
                    .iter()
                    .map(|item| match item.as_str() {
                        Some(p) if !p.is_empty() && p.len() <= PROPERTY_LEN_MAX => Ok(p.to_owned()),
                        _ => Err(WebhookError::InvalidSignature),
                    })
                    .collect::<Result<_, _>>()?
            }
            _ => return Err(WebhookError::InvalidSignature),
        };
        let timestamp = root
            .get("timestamp")
            .and_then(Value::as_i64)
            .ok_or(WebhookError::InvalidSignature)?;
        let data = root.get("data").ok_or(WebhookError::InvalidSignature)?;

        let mut values = Vec::with_capacity(properties.len());
        for property in &properties {
            let value = lookup(data, property)
                .and_then(signed_text)
                .ok_or(WebhookError::InvalidSignature)?;
            values.push(value);
        }
        let value_refs: Vec<&str> = values.iter().map(String::as_str).collect();
        let expected = checksum_digest(&value_refs, timestamp, self.events_secret.expose_secret());
        let body_ok = checksum_matches(&expected, checksum);
        let header_ok = request
            .header(CHECKSUM_HEADER)
            .is_none_or(|header| checksum_matches(&expected, header));
        if !(body_ok & header_ok) {
            return Err(WebhookError::InvalidSignature);
        }
        Ok(Authentic {
            root,
            properties,
            timestamp,
        })
    }
}

/// A body whose checksum verified.
struct Authentic {
    root: Map<String, Value>,
    properties: Vec<String>,
    timestamp: i64,
}

impl Authentic {
    fn signs(&self, property: &str) -> bool {
        self.properties.iter().any(|p| p == property)
    }
}

impl WebhookVerifier for WompiWebhookVerifier {
    fn provider(&self) -> &'static str {
        "wompi"
    }

    fn verify(
        &self,
        request: &WebhookRequest<'_>,
    ) -> Result<Option<ProviderNotification>, WebhookError> {
        let event = self.authenticate(request)?;

        let now = request.received_at.timestamp();
        let tolerance = i64::try_from(self.tolerance.as_secs()).unwrap_or(i64::MAX);
        let skew = i64::try_from(FUTURE_SKEW.as_secs()).unwrap_or(i64::MAX);
        if event.timestamp < now.saturating_sub(tolerance)
            || event.timestamp > now.saturating_add(skew)
        {
            return Err(WebhookError::StaleTimestamp);
        }

        let event_type = event
            .root
            .get("event")
            .and_then(Value::as_str)
            .ok_or_else(|| WebhookError::InvalidField {
                field: "event",
                problem: "is missing or not a string".into(),
            })?;
        if event_type != EVENT_TRANSACTION_UPDATED {
            return Err(WebhookError::UnsupportedEventType(excerpt(event_type, 64)));
        }
        if let (Some(expected), Some(Value::String(actual))) =
            (self.environment, event.root.get("environment"))
        {
            if actual != expected {
                return Err(WebhookError::InvalidField {
                    field: "environment",
                    problem: format!("is not `{expected}`, the events secret's environment"),
                });
            }
        }
        // The transition acted on must be what Wompi signed.
        if !(event.signs("transaction.id") && event.signs("transaction.status")) {
            return Err(WebhookError::InvalidSignature);
        }

        let transaction = event
            .root
            .get("data")
            .and_then(|d| d.get("transaction"))
            .and_then(Value::as_object)
            .ok_or_else(|| WebhookError::InvalidField {
                field: "data.transaction",
                problem: "is missing or not an object".into(),
            })?;
        let text = |field: &'static str, key: &str| -> Result<&str, WebhookError> {
            transaction
                .get(key)
                .and_then(Value::as_str)
                .ok_or_else(|| WebhookError::InvalidField {
                    field,
                    problem: "is missing or not a string".into(),
                })
        };
        let id = text("data.transaction.id", "id")?;
        check_id(id)?;
        let status = text("data.transaction.status", "status")?;
        let reference = text("data.transaction.reference", "reference")?;
        let payment_id =
            PaymentId::from_str(reference).map_err(|_| WebhookError::InvalidField {
                field: "data.transaction.reference",
                problem: "is not a payledger payment id".into(),
            })?;
        let currency =
            Currency::from_str(text("data.transaction.currency", "currency")?).map_err(|e| {
                WebhookError::InvalidField {
                    field: "data.transaction.currency",
                    problem: e.to_string(),
                }
            })?;
        let cents = transaction
            .get("amount_in_cents")
            .and_then(Value::as_i64)
            .ok_or_else(|| WebhookError::InvalidField {
                field: "data.transaction.amount_in_cents",
                problem: "is missing or not an integer".into(),
            })?;
        let amount = money_from_cents(cents, currency).map_err(|e| WebhookError::InvalidField {
            field: "data.transaction.amount_in_cents",
            problem: e.to_string(),
        })?;
        let reason = |default: &str| match transaction.get("status_message") {
            Some(Value::String(message)) if !message.trim().is_empty() => {
                sanitize(message.trim(), REASON_LEN_MAX)
            }
            _ => default.to_owned(),
        };

        let outcome = match status {
            "APPROVED" => NotificationOutcome::Approved { amount },
            "DECLINED" => NotificationOutcome::Declined {
                reason: reason("declined"),
            },
            "ERROR" => NotificationOutcome::Failed {
                reason: reason("error"),
            },
            "PENDING" => NotificationOutcome::Pending,
            "VOIDED" => return Ok(None),
            other => return Err(WebhookError::UnsupportedStatus(excerpt(other, 32))),
        };
        // A rail closed by its deadline ends DECLINED or ERROR like a refusal: only the
        // transaction's `expiration_time` tells them apart, so Wompi's copy decides.
        let rail_ended = matches!(status, "DECLINED" | "ERROR")
            && matches!(
                transaction
                    .get("payment_method_type")
                    .and_then(Value::as_str),
                Some("BANCOLOMBIA_TRANSFER" | "BANCOLOMBIA_QR" | "DAVIPLATA")
            );
        let confirm_with_provider = rail_ended
            || !(event.signs("transaction.reference")
                && event.signs("transaction.currency")
                && event.signs("transaction.amount_in_cents"));

        Ok(Some(ProviderNotification {
            provider: "wompi",
            event_id: format!("{id}:{status}"),
            payment_id,
            provider_transaction_id: id.to_owned(),
            outcome,
            confirm_with_provider,
        }))
    }
}

/// The value at a dotted path under `data` (`transaction.id` -> `data.transaction.id`).
fn lookup<'a>(data: &'a Value, path: &str) -> Option<&'a Value> {
    let mut current = data;
    for segment in path.split('.') {
        if segment.is_empty() {
            return None;
        }
        current = current.as_object()?.get(segment)?;
    }
    Some(current)
}

/// A signed value as text: strings as they are, integers in decimal, booleans as
/// `true`/`false`. Anything else cannot be signed unambiguously and is refused.
fn signed_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) if n.is_i64() || n.is_u64() => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn checksum_matches(expected: &[u8; CHECKSUM_LEN_BYTES], presented: &str) -> bool {
    let presented = presented.trim();
    if presented.len() != CHECKSUM_LEN_BYTES * 2 {
        return false;
    }
    // `hex` takes either case.
    match hex::decode(presented) {
        Ok(bytes) => bool::from(expected.as_slice().ct_eq(&bytes)),
        Err(_) => false,
    }
}

fn check_id(value: &str) -> Result<(), WebhookError> {
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
        field: "data.transaction.id",
        problem: problem.into(),
    })
}

/// Parses JSON into a `Value`, refusing duplicate keys at any depth (serde_json would keep
/// the last one silently, and a checksum over one copy must not vouch for another).
fn parse_strict(body: &[u8]) -> Result<Value, WebhookError> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let value = StrictValue::deserialize(&mut deserializer)
        .and_then(|StrictValue(v)| deserializer.end().map(|()| v))
        .map_err(|e| WebhookError::Malformed(describe_json_error(&e)))?;
    Ok(value)
}

struct StrictValue(Value);

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(StrictValue)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("a number that is not finite"))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        StrictValue::deserialize(deserializer).map(|StrictValue(v)| v)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(StrictValue(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                return Err(de::Error::custom("duplicate key"));
            }
            let StrictValue(value) = map.next_value()?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

/// serde_json's messages can quote the offending value; keep only the category and place.
fn describe_json_error(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let what = match e.classify() {
        Category::Io => "unreadable body",
        Category::Syntax => "invalid JSON syntax",
        Category::Data => "duplicate key or unexpected value",
        Category::Eof => "truncated JSON",
    };
    format!("{what} at line {} column {}", e.line(), e.column())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, TimeZone, Utc};
    use domain::Money;

    const SECRET: &str = "test_events_payledger_kat_0123456789abcdef";
    /// The transaction id and amount of the example event in Wompi's docs.
    const DOC_TX: &str = "1234-1610641025-49201";
    const PAYMENT: &str = "6a1f3c2e-8b4d-4e7a-9c10-5d2b7f3e1a90";
    const TS: i64 = 1_530_291_411;

    /// Known answers, computed outside this code:
    /// printf '%s' "1234-1610641025-49201APPROVED44900001530291411test_events_payledger_kat_0123456789abcdef" | sha256sum
    /// python3 -c 'import hashlib;print(hashlib.sha256(b"1234-1610641025-49201APPROVED44900001530291411test_events_payledger_kat_0123456789abcdef").hexdigest())'
    const KAT_APPROVED: &str = "4c4097a4083a19e97d4d170e2d7c3c54352d194c22d8f69fb8144f4cfb1489a6";
    /// printf '%s' "12345-1700000000-00001DECLINED129000001700000000test_events_payledger_kat_0123456789abcdef" | sha256sum
    /// python3 -c 'import hashlib;print(hashlib.sha256(b"12345-1700000000-00001DECLINED129000001700000000test_events_payledger_kat_0123456789abcdef").hexdigest())'
    const KAT_DECLINED: &str = "ef7bfd156ef94ea13bf4fdea87036a3b88c4afc96b8e41dc7606064305d15c7f";

    fn at(ts: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(ts, 0).single().unwrap()
    }

    fn event(id: &str, status: &str, cents: &str, ts: i64, checksum: &str) -> String {
        format!(
            r#"{{"event":"transaction.updated","data":{{"transaction":{{"id":"{id}","amount_in_cents":{cents},"reference":"{PAYMENT}","customer_email":"juan.perez@gmail.com","currency":"COP","payment_method_type":"NEQUI","redirect_url":null,"status":"{status}","status_message":"Fondos insuficientes","shipping_address":null,"payment_link_id":null,"payment_source_id":null}}}},"environment":"test","signature":{{"properties":["transaction.id","transaction.status","transaction.amount_in_cents"],"checksum":"{checksum}"}},"timestamp":{ts},"sent_at":"2018-07-20T16:45:05.000Z"}}"#
        )
    }

    fn approved_body() -> String {
        event(
            DOC_TX,
            "APPROVED",
            "4490000",
            TS,
            &KAT_APPROVED.to_uppercase(),
        )
    }

    fn verify_at(
        verifier: &WompiWebhookVerifier,
        body: &str,
        header: Option<&str>,
        now: i64,
    ) -> Result<Option<ProviderNotification>, WebhookError> {
        let headers: Vec<(String, String)> = header
            .map(|h| vec![("x-event-checksum".to_owned(), h.to_owned())])
            .unwrap_or_default();
        verifier.verify(&WebhookRequest {
            headers: &headers,
            body: body.as_bytes(),
            peer: None,
            received_at: at(now),
        })
    }

    fn verify(
        body: &str,
        header: Option<&str>,
    ) -> Result<Option<ProviderNotification>, WebhookError> {
        verify_at(&WompiWebhookVerifier::new(SECRET), body, header, TS + 60)
    }

    #[test]
    fn event_checksum_matches_independent_vectors() {
        assert_eq!(
            event_checksum(&[DOC_TX, "APPROVED", "4490000"], TS, SECRET),
            KAT_APPROVED
        );
        assert_eq!(
            event_checksum(
                &["12345-1700000000-00001", "DECLINED", "12900000"],
                1_700_000_000,
                SECRET
            ),
            KAT_DECLINED
        );
    }

    #[test]
    fn a_signed_approved_event_verifies_with_body_and_header_in_any_case() {
        let body = approved_body();
        for header in [
            None,
            Some(KAT_APPROVED),
            Some(&*KAT_APPROVED.to_uppercase()),
        ] {
            let n = verify(&body, header).unwrap().unwrap();
            assert_eq!(n.provider, "wompi");
            assert_eq!(n.event_id, format!("{DOC_TX}:APPROVED"));
            assert_eq!(n.provider_transaction_id, DOC_TX);
            assert_eq!(n.payment_id.to_string(), PAYMENT);
            assert_eq!(
                n.outcome,
                NotificationOutcome::Approved {
                    amount: Money::parse("44900", Currency::COP).unwrap()
                }
            );
            // Wompi's default properties leave the reference unsigned.
            assert!(n.confirm_with_provider);
        }
    }

    #[test]
    fn each_status_maps_to_its_outcome() {
        let cases = [
            (
                "DECLINED",
                Some(NotificationOutcome::Declined {
                    reason: "Fondos insuficientes".into(),
                }),
            ),
            (
                "ERROR",
                Some(NotificationOutcome::Failed {
                    reason: "Fondos insuficientes".into(),
                }),
            ),
            ("PENDING", Some(NotificationOutcome::Pending)),
            ("VOIDED", None),
        ];
        for (status, expected) in cases {
            let checksum = event_checksum(&[DOC_TX, status, "4490000"], TS, SECRET);
            let body = event(DOC_TX, status, "4490000", TS, &checksum);
            let got = verify(&body, Some(&checksum)).unwrap();
            assert_eq!(got.map(|n| n.outcome), expected, "{status}");
        }
        // Without a status message the reason says what happened.
        let checksum = event_checksum(&[DOC_TX, "DECLINED", "4490000"], TS, SECRET);
        let body = event(DOC_TX, "DECLINED", "4490000", TS, &checksum)
            .replace(r#""status_message":"Fondos insuficientes","#, "");
        assert_eq!(
            verify(&body, None).unwrap().unwrap().outcome,
            NotificationOutcome::Declined {
                reason: "declined".into()
            }
        );
        let checksum = event_checksum(&[DOC_TX, "REFUNDED", "4490000"], TS, SECRET);
        let body = event(DOC_TX, "REFUNDED", "4490000", TS, &checksum);
        assert_eq!(
            verify(&body, None),
            Err(WebhookError::UnsupportedStatus("REFUNDED".into()))
        );
    }

    #[test]
    fn the_event_id_is_stable_per_transition() {
        let a = verify(&approved_body(), None).unwrap().unwrap();
        let redelivered = verify(&approved_body(), None).unwrap().unwrap();
        assert_eq!(a.event_id, redelivered.event_id);
        let checksum = event_checksum(&[DOC_TX, "PENDING", "4490000"], TS, SECRET);
        let pending = verify(&event(DOC_TX, "PENDING", "4490000", TS, &checksum), None)
            .unwrap()
            .unwrap();
        assert_ne!(pending.event_id, a.event_id);
    }

    #[test]
    fn tampered_amount_status_or_timestamp_is_refused() {
        let body = approved_body();
        for tampered in [
            body.replace("4490000", "4490001"),
            body.replace("\"APPROVED\"", "\"DECLINED\""),
            body.replace(&TS.to_string(), &(TS + 1).to_string()),
            body.replace(DOC_TX, "1234-1610641025-49202"),
        ] {
            assert_eq!(
                verify(&tampered, None),
                Err(WebhookError::InvalidSignature),
                "{tampered}"
            );
        }
    }

    #[test]
    fn wrong_secret_bad_header_and_malformed_checksums_are_refused() {
        let body = approved_body();
        let other = WompiWebhookVerifier::new("test_events_another_secret_0123456789abcdef");
        assert_eq!(
            verify_at(&other, &body, None, TS),
            Err(WebhookError::InvalidSignature)
        );
        let empty = WompiWebhookVerifier::new("");
        let unsigned = event(
            DOC_TX,
            "APPROVED",
            "4490000",
            TS,
            &event_checksum(&[DOC_TX, "APPROVED", "4490000"], TS, ""),
        );
        assert_eq!(
            verify_at(&empty, &unsigned, None, TS),
            Err(WebhookError::InvalidSignature)
        );
        // The body verifies but the header does not: refused.
        assert_eq!(
            verify(&body, Some(KAT_DECLINED)),
            Err(WebhookError::InvalidSignature)
        );
        assert_eq!(verify(&body, Some("")), Err(WebhookError::InvalidSignature));
        for bad in [
            "",
            "zz",
            &KAT_APPROVED[..62],
            &format!("{KAT_APPROVED}00"),
            &format!("sha256={KAT_APPROVED}"),
            &KAT_APPROVED.replace(&KAT_APPROVED[..2], "zz"),
        ] {
            let b = event(DOC_TX, "APPROVED", "4490000", TS, bad);
            assert_eq!(
                verify(&b, None),
                Err(WebhookError::InvalidSignature),
                "{bad}"
            );
        }
        // Checksum only in the header is not enough: the body must carry it.
        let no_checksum = body.replace(
            &format!(r#","checksum":"{}""#, KAT_APPROVED.to_uppercase()),
            "",
        );
        assert_ne!(no_checksum, body);
        assert_eq!(
            verify(&no_checksum, Some(KAT_APPROVED)),
            Err(WebhookError::InvalidSignature)
        );
    }

    #[test]
    fn properties_are_read_from_the_event_in_its_order() {
        // Another order signs another string.
        let props = r#"["transaction.status","transaction.id","transaction.amount_in_cents","transaction.reference","transaction.currency"]"#;
        let checksum = event_checksum(&["APPROVED", DOC_TX, "4490000", PAYMENT, "COP"], TS, SECRET);
        let body = event(DOC_TX, "APPROVED", "4490000", TS, &checksum).replace(
            r#"["transaction.id","transaction.status","transaction.amount_in_cents"]"#,
            props,
        );
        let n = verify(&body, Some(&checksum)).unwrap().unwrap();
        // Everything acted on is signed: no need to ask Wompi.
        assert!(!n.confirm_with_provider);

        // An unknown property cannot be computed: refused.
        let body = approved_body().replace("transaction.amount_in_cents\"]", "transaction.nope\"]");
        assert_eq!(verify(&body, None), Err(WebhookError::InvalidSignature));
        // A non-scalar property is refused.
        let body = approved_body().replace("transaction.amount_in_cents\"]", "transaction\"]");
        assert_eq!(verify(&body, None), Err(WebhookError::InvalidSignature));
    }

    #[test]
    fn a_rail_that_ended_declined_or_in_error_is_always_confirmed_with_wompi() {
        let props = r#"["transaction.id","transaction.status","transaction.amount_in_cents","transaction.reference","transaction.currency"]"#;
        for status in ["DECLINED", "ERROR", "APPROVED"] {
            let checksum = event_checksum(&[DOC_TX, status, "4490000", PAYMENT, "COP"], TS, SECRET);
            let signed_all = event(DOC_TX, status, "4490000", TS, &checksum).replace(
                r#"["transaction.id","transaction.status","transaction.amount_in_cents"]"#,
                props,
            );
            let nequi = verify(&signed_all, Some(&checksum)).unwrap().unwrap();
            assert!(!nequi.confirm_with_provider, "{status}");
            for rail in ["BANCOLOMBIA_TRANSFER", "BANCOLOMBIA_QR", "DAVIPLATA"] {
                let body = signed_all.replace(
                    r#""payment_method_type":"NEQUI""#,
                    &format!(r#""payment_method_type":"{rail}""#),
                );
                assert_ne!(body, signed_all);
                let n = verify(&body, Some(&checksum)).unwrap().unwrap();
                // Declined or expired: only Wompi's transaction tells.
                assert_eq!(
                    n.confirm_with_provider,
                    status != "APPROVED",
                    "{rail} {status}"
                );
            }
        }
    }

    #[test]
    fn a_checksum_that_does_not_cover_id_and_status_is_not_proof() {
        let checksum = event_checksum(&["4490000"], TS, SECRET);
        let body = event(DOC_TX, "APPROVED", "4490000", TS, &checksum).replace(
            r#"["transaction.id","transaction.status","transaction.amount_in_cents"]"#,
            r#"["transaction.amount_in_cents"]"#,
        );
        assert_eq!(verify(&body, None), Err(WebhookError::InvalidSignature));
    }

    #[test]
    fn stale_and_future_timestamps_are_refused() {
        let verifier = WompiWebhookVerifier::new(SECRET);
        let body = approved_body();
        // Ten minutes by default: a replay an hour later, or a redelivery a day later, is
        // refused (the outcome is asked of Wompi instead).
        assert!(verify_at(&verifier, &body, None, TS + 599).is_ok());
        for late in [601, 3_600, 24 * 60 * 60] {
            assert_eq!(
                verify_at(&verifier, &body, None, TS + late),
                Err(WebhookError::StaleTimestamp),
                "{late} s late"
            );
        }
        assert_eq!(
            verify_at(&verifier, &body, None, TS - 600),
            Err(WebhookError::StaleTimestamp)
        );
        let strict = verifier.with_timestamp_tolerance(Duration::from_secs(300));
        assert_eq!(
            verify_at(&strict, &body, None, TS + 301),
            Err(WebhookError::StaleTimestamp)
        );
        assert!(verify_at(&strict, &body, None, TS + 299).is_ok());
    }

    #[test]
    fn other_event_types_are_acknowledged_after_verification() {
        let checksum = event_checksum(&["nequi_abc", "APPROVED"], TS, SECRET);
        let body = format!(
            r#"{{"event":"nequi_token.updated","data":{{"nequi_token":{{"id":"nequi_abc","status":"APPROVED"}}}},"environment":"test","signature":{{"properties":["nequi_token.id","nequi_token.status"],"checksum":"{checksum}"}},"timestamp":{TS},"sent_at":"x"}}"#
        );
        assert_eq!(
            verify(&body, None),
            Err(WebhookError::UnsupportedEventType(
                "nequi_token.updated".into()
            ))
        );
        // Unsigned, it is an authentication failure first.
        let forged = body.replace(&checksum, KAT_APPROVED);
        assert_eq!(verify(&forged, None), Err(WebhookError::InvalidSignature));
    }

    #[test]
    fn events_of_the_other_environment_are_refused() {
        let checksum = KAT_APPROVED;
        let body = event(DOC_TX, "APPROVED", "4490000", TS, checksum)
            .replace(r#""environment":"test""#, r#""environment":"prod""#);
        assert!(matches!(
            verify(&body, None),
            Err(WebhookError::InvalidField {
                field: "environment",
                ..
            })
        ));
    }

    #[test]
    fn duplicate_keys_and_bad_fields_are_refused() {
        // A second `status` after the signed one would otherwise win.
        let body = approved_body().replace(
            r#""status":"APPROVED","#,
            r#""status":"APPROVED","status":"DECLINED","#,
        );
        assert!(matches!(
            verify(&body, None),
            Err(WebhookError::Malformed(_))
        ));
        let body = approved_body().replace(
            r#""event":"transaction.updated","#,
            r#""event":"transaction.updated","event":"transaction.updated","#,
        );
        assert!(matches!(
            verify(&body, None),
            Err(WebhookError::Malformed(_))
        ));

        let resign = |body: String, values: &[&str]| {
            let checksum = event_checksum(values, TS, SECRET);
            body.replace(&KAT_APPROVED.to_uppercase(), &checksum)
        };
        let bad_reference = resign(
            approved_body().replace(PAYMENT, "ORDER-2024-001"),
            &[DOC_TX, "APPROVED", "4490000"],
        );
        assert!(matches!(
            verify(&bad_reference, None),
            Err(WebhookError::InvalidField {
                field: "data.transaction.reference",
                ..
            })
        ));
        let bad_currency = approved_body().replace(r#""currency":"COP""#, r#""currency":"XXX""#);
        assert!(matches!(
            verify(&bad_currency, None),
            Err(WebhookError::InvalidField {
                field: "data.transaction.currency",
                ..
            })
        ));
        let zero = resign(
            approved_body().replace("4490000", "0"),
            &[DOC_TX, "APPROVED", "0"],
        );
        assert!(matches!(
            verify(&zero, None),
            Err(WebhookError::InvalidField {
                field: "data.transaction.amount_in_cents",
                ..
            })
        ));
        let odd_id = "12/../34";
        let bad_id = resign(
            approved_body().replace(DOC_TX, odd_id),
            &[odd_id, "APPROVED", "4490000"],
        );
        assert!(matches!(
            verify(&bad_id, None),
            Err(WebhookError::InvalidField {
                field: "data.transaction.id",
                ..
            })
        ));
        assert!(matches!(
            verify("not json", None),
            Err(WebhookError::Malformed(_))
        ));
        assert!(matches!(
            verify("[1]", None),
            Err(WebhookError::Malformed(_))
        ));
        assert_eq!(verify("{}", None), Err(WebhookError::InvalidSignature));
    }

    #[test]
    fn float_amounts_cannot_be_signed() {
        let body = approved_body().replace("4490000", "4490000.0");
        assert_eq!(verify(&body, None), Err(WebhookError::InvalidSignature));
    }

    #[test]
    fn oversized_bodies_are_refused_before_parsing() {
        let body = " ".repeat(BODY_MAX_BYTES + 1);
        assert_eq!(
            verify(&body, None),
            Err(WebhookError::TooLarge {
                max: BODY_MAX_BYTES
            })
        );
    }

    #[test]
    fn errors_and_debug_never_echo_secrets_or_values() {
        let printed = format!("{:?}", WompiWebhookVerifier::new(SECRET));
        assert!(!printed.contains(SECRET), "{printed}");
        let body = approved_body().replace("4490000,", "12345678.91,");
        let err = verify(&body, None).unwrap_err().to_string();
        assert!(!err.contains("12345678"), "{err}");
    }
}
