//! The audit chain: in the relay's total order every event gets a position and
//! `chain_hash = SHA-256(previous chain_hash || canonical bytes of the event)`, so an auditor
//! who recomputes the chain detects any altered, removed, inserted or reordered event.
//!
//! The canonical bytes are a documented, stable encoding — not "whatever serde_json prints
//! today":
//!
//! ```text
//! "payledger-audit-v1" then, for each field in this order, its length as an 8-byte
//! big-endian integer followed by its UTF-8 bytes:
//!   aggregate_type, aggregate_id, sequence (decimal), event_type, event_version,
//!   payload (canonical JSON), metadata (canonical JSON),
//!   recorded_at (RFC 3339, UTC, microseconds, `Z`: 2026-11-21T23:46:08.412084Z)
//! canonical JSON: no whitespace; object keys sorted by their UTF-8 bytes; strings escaped as
//! JSON requires (`"` `\` and control characters; `\n`-style short escapes where JSON has
//! them, `\u00XX` otherwise; everything else verbatim); numbers as written by serde_json.
//! ```
//!
//! The first event's previous hash is 32 zero bytes.
//!
//! This module is the chain's only definition: the relay extends the chain with `extend`, and
//! every verifier recomputes it with `chain_hash`.

use eventstore::chain::ChainLink;
use eventstore::PublishedEvent;
use sha2::{Digest, Sha256};

pub const CANONICAL_VERSION: &str = "payledger-audit-v1";
pub const GENESIS: [u8; 32] = [0; 32];

fn field(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
    out.extend_from_slice(bytes);
}

/// JSON with sorted keys and no whitespace, independent of how the map was built.
pub fn canonical_json(value: &serde_json::Value, out: &mut String) {
    use serde_json::Value;
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => escape(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical_json(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                escape(key, out);
                out.push(':');
                if let Some(v) = map.get(key) {
                    canonical_json(v, out);
                }
            }
            out.push('}');
        }
    }
}

fn escape(text: &str, out: &mut String) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// The canonical bytes of one event (see the module documentation).
pub fn canonical_bytes(event: &PublishedEvent) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(CANONICAL_VERSION.as_bytes());
    field(&mut out, event.aggregate_type.as_bytes());
    field(&mut out, event.aggregate_id.as_bytes());
    field(&mut out, event.sequence.to_string().as_bytes());
    field(&mut out, event.event_type.as_bytes());
    field(&mut out, event.event_version.as_bytes());
    let mut json = String::new();
    canonical_json(&event.payload, &mut json);
    field(&mut out, json.as_bytes());
    json.clear();
    canonical_json(&event.metadata, &mut json);
    field(&mut out, json.as_bytes());
    let recorded = event
        .recorded_at
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string();
    field(&mut out, recorded.as_bytes());
    out
}

/// `SHA-256(previous || canonical bytes of event)`.
pub fn chain_hash(previous: &[u8; 32], event: &PublishedEvent) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(previous);
    hasher.update(canonical_bytes(event));
    hasher.finalize().into()
}

/// The links of `events`, in order, extending the chain from `from` (its head before them):
/// pure, so a batch published again after a crash gets exactly the same positions and hashes.
pub fn extend<'e>(
    from: ChainLink,
    events: impl IntoIterator<Item = &'e PublishedEvent>,
) -> Vec<ChainLink> {
    let mut hash = from.hash;
    events
        .into_iter()
        .enumerate()
        .map(|(i, event)| {
            hash = chain_hash(&hash, event);
            ChainLink {
                position: from.position + 1 + i as i64,
                hash,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    fn event() -> PublishedEvent {
        PublishedEvent {
            global_position: 7,
            aggregate_type: "Payment".into(),
            aggregate_id: "6a1f3c2e-8b4d-4e7a-9c10-5d2b7f3e1a90".into(),
            sequence: 1,
            event_type: "PaymentFailed".into(),
            event_version: "1.0".into(),
            payload: serde_json::json!({"PaymentFailed": {"reason": "x\n\"y\"", "at": "2026-01-01T00:00:00Z"}}),
            metadata: serde_json::json!({"source": "api"}),
            recorded_at: Utc.timestamp_opt(1_767_225_600, 123_456_000).unwrap(),
        }
    }

    #[test]
    fn canonical_json_sorts_keys_and_drops_whitespace() {
        let value: serde_json::Value =
            serde_json::from_str(r#"{ "b": [1, {"z": null, "a": true}], "a": "é\u0001" }"#)
                .unwrap();
        let mut out = String::new();
        canonical_json(&value, &mut out);
        assert_eq!(out, r#"{"a":"é\u0001","b":[1,{"a":true,"z":null}]}"#);
    }

    /// Known answer, computed independently of this code:
    /// python3 -c 'import hashlib,struct
    /// f=lambda b: struct.pack(">Q",len(b))+b
    /// parts=[b"Payment",b"6a1f3c2e-8b4d-4e7a-9c10-5d2b7f3e1a90",b"1",b"PaymentFailed",b"1.0",
    ///  b"{\"PaymentFailed\":{\"at\":\"2026-01-01T00:00:00Z\",\"reason\":\"x\\n\\\"y\\\"\"}}",
    ///  b"{\"source\":\"api\"}",b"2026-01-01T00:00:00.123456Z"]
    /// m=b"payledger-audit-v1"+b"".join(f(p) for p in parts)
    /// print(hashlib.sha256(bytes(32)+m).hexdigest())'
    #[test]
    fn the_chain_hash_matches_an_independent_computation() {
        let hash = chain_hash(&GENESIS, &event());
        assert_eq!(hex::encode(hash), EXPECTED_FIRST_HASH);
    }

    const EXPECTED_FIRST_HASH: &str =
        "80bfc72d86fe23d8611657e38170f5ca29c86fd1d7246d9e0f5e4c60969af7b7";

    #[test]
    fn any_change_changes_the_hash() {
        let base = chain_hash(&GENESIS, &event());
        let mut other = event();
        other.sequence = 2;
        assert_ne!(chain_hash(&GENESIS, &other), base);
        let mut other = event();
        other.payload =
            serde_json::json!({"PaymentFailed": {"reason": "y", "at": "2026-01-01T00:00:00Z"}});
        assert_ne!(chain_hash(&GENESIS, &other), base);
        assert_ne!(chain_hash(&[1; 32], &event()), base);
        // Key order and whitespace of the stored JSON do not matter; its content does.
        let mut reordered = event();
        reordered.payload = serde_json::from_str(
            r#"{"PaymentFailed": {"at": "2026-01-01T00:00:00Z", "reason": "x\n\"y\""}}"#,
        )
        .unwrap();
        assert_eq!(chain_hash(&GENESIS, &reordered), base);
    }

    #[test]
    fn extending_numbers_the_links_and_chains_each_hash_on_the_previous() {
        let start = ChainLink {
            position: 4,
            hash: [9; 32],
        };
        let mut second = event();
        second.sequence = 2;
        let links = extend(start, [&event(), &second]);
        let first_hash = chain_hash(&[9; 32], &event());
        assert_eq!(
            links,
            vec![
                ChainLink {
                    position: 5,
                    hash: first_hash
                },
                ChainLink {
                    position: 6,
                    hash: chain_hash(&first_hash, &second)
                },
            ]
        );
        assert!(extend(start, []).is_empty());
    }
}
