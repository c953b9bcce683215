//! SHA-256 and HMAC-SHA256 written out in the tests, so the signatures the tests send are
//! computed independently of the code under test (which uses the `sha2`/`hmac` crates).
//! Checked against FIPS 180 and RFC 4231 vectors below. The sandbox provider's webhook
//! signature is built on them here from its definition, not taken from the product.

const K: [u32; 64] = [
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
];

pub fn sha256(data: &[u8]) -> [u8; 32] {
    let mut h: [u32; 8] = [
        0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
        0x5be0cd19,
    ];
    let mut message = data.to_vec();
    let bit_len = (data.len() as u64).wrapping_mul(8);
    message.push(0x80);
    while message.len() % 64 != 56 {
        message.push(0);
    }
    message.extend_from_slice(&bit_len.to_be_bytes());
    for block in message.chunks(64) {
        let mut w = [0u32; 64];
        for (slot, word) in w.iter_mut().zip(block.chunks(4)) {
            *slot = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for i in 16..64 {
            let s0 = w[i - 15].rotate_right(7) ^ w[i - 15].rotate_right(18) ^ (w[i - 15] >> 3);
            let s1 = w[i - 2].rotate_right(17) ^ w[i - 2].rotate_right(19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16]
                .wrapping_add(s0)
                .wrapping_add(w[i - 7])
                .wrapping_add(s1);
        }
        let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut hh] = h;
        for (k, wi) in K.iter().zip(w.iter()) {
            let s1 = e.rotate_right(6) ^ e.rotate_right(11) ^ e.rotate_right(25);
            let ch = (e & f) ^ (!e & g);
            let t1 = hh
                .wrapping_add(s1)
                .wrapping_add(ch)
                .wrapping_add(*k)
                .wrapping_add(*wi);
            let s0 = a.rotate_right(2) ^ a.rotate_right(13) ^ a.rotate_right(22);
            let maj = (a & b) ^ (a & c) ^ (b & c);
            let t2 = s0.wrapping_add(maj);
            hh = g;
            g = f;
            f = e;
            e = d.wrapping_add(t1);
            d = c;
            c = b;
            b = a;
            a = t1.wrapping_add(t2);
        }
        for (state, add) in h.iter_mut().zip([a, b, c, d, e, f, g, hh]) {
            *state = state.wrapping_add(add);
        }
    }
    let mut out = [0u8; 32];
    for (chunk, word) in out.chunks_mut(4).zip(h) {
        chunk.copy_from_slice(&word.to_be_bytes());
    }
    out
}

pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&sha256(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let mut inner: Vec<u8> = block.iter().map(|b| b ^ 0x36).collect();
    inner.extend_from_slice(message);
    let inner = sha256(&inner);
    let mut outer: Vec<u8> = block.iter().map(|b| b ^ 0x5c).collect();
    outer.extend_from_slice(&inner);
    sha256(&outer)
}

pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Lower-case hex of the SHA-256 of `text`.
pub fn sha256_hex(text: &str) -> String {
    hex(&sha256(text.as_bytes()))
}

/// Wompi's event checksum, from Wompi's documentation: SHA-256 of the values of the
/// properties `signature.properties` lists under `data`, in order, then `timestamp`, then the
/// events secret.
pub fn wompi_checksum(event: &serde_json::Value, secret: &str) -> String {
    let mut input = String::new();
    for property in event["signature"]["properties"]
        .as_array()
        .expect("properties")
    {
        let mut value = &event["data"];
        for segment in property.as_str().expect("property").split('.') {
            value = &value[segment];
        }
        match value {
            serde_json::Value::String(s) => input.push_str(s),
            serde_json::Value::Number(n) => input.push_str(&n.to_string()),
            other => panic!("unsigned property type {other}"),
        }
    }
    input.push_str(&event["timestamp"].as_i64().expect("timestamp").to_string());
    input.push_str(secret);
    sha256_hex(&input)
}

/// A Wompi `event` at `timestamp`, its checksum computed here with `secret`: (body, checksum).
pub fn wompi_signed(event: &serde_json::Value, timestamp: i64, secret: &str) -> (Vec<u8>, String) {
    let mut event = event.clone();
    event["timestamp"] = serde_json::json!(timestamp);
    let sum = wompi_checksum(&event, secret);
    event["signature"]["checksum"] = serde_json::json!(sum);
    (serde_json::to_vec(&event).expect("json"), sum)
}

/// The header the sandbox provider signs its webhooks in.
pub const SANDBOX_SIGNATURE_HEADER: &str = "X-Sandbox-Signature";

/// The sandbox provider's webhook signature: lower-case hex of HMAC-SHA256 of the raw body
/// under the webhook secret.
pub fn sandbox_signature(secret: &[u8], body: &[u8]) -> String {
    hex(&hmac_sha256(secret, body))
}

/// The audit chain's link after `previous` for one event, from the chain's published
/// definition (the `audit` crate's `link` module documentation): SHA-256 of the
/// previous hash and the event's canonical bytes, i.e. `payledger-audit-v1`, then each field
/// as an 8-byte big-endian length and its UTF-8 bytes.
pub fn audit_chain_hash(previous: &[u8; 32], event: &eventstore::PublishedEvent) -> [u8; 32] {
    let mut bytes = b"payledger-audit-v1".to_vec();
    let recorded_at = event
        .recorded_at
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string();
    for text in [
        event.aggregate_type.clone(),
        event.aggregate_id.clone(),
        event.sequence.to_string(),
        event.event_type.clone(),
        event.event_version.clone(),
        sorted_json(&event.payload),
        sorted_json(&event.metadata),
        recorded_at,
    ] {
        bytes.extend_from_slice(&(text.len() as u64).to_be_bytes());
        bytes.extend_from_slice(text.as_bytes());
    }
    let mut message = previous.to_vec();
    message.extend_from_slice(&bytes);
    sha256(&message)
}

/// JSON without whitespace, object keys in byte order, strings escaped as JSON requires.
fn sorted_json(value: &serde_json::Value) -> String {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let fields: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{}:{}", json_string(k), sorted_json(&map[k])))
                .collect();
            format!("{{{}}}", fields.join(","))
        }
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(sorted_json).collect();
            format!("[{}]", items.join(","))
        }
        Value::String(text) => json_string(text),
        other => other.to_string(),
    }
}

fn json_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reproduces_fips_180_and_rfc_4231_vectors() {
        assert_eq!(
            hex(&sha256(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            hex(&sha256(b"")),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        // RFC 4231 test case 2.
        assert_eq!(
            hex(&hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn sandbox_signature_matches_openssl() {
        // `printf '%s' '{"id":"evt_kat","type":"transaction.updated"}' | openssl dgst -sha256
        // -hmac 'sbx_test_webhook_secret_0123456789'` (and the same with Python's hmac).
        assert_eq!(
            sandbox_signature(
                b"sbx_test_webhook_secret_0123456789",
                br#"{"id":"evt_kat","type":"transaction.updated"}"#
            ),
            "6f34e53d7d9145260eddd3e7158a0900298450b90c382986dd26c094a012abed"
        );
    }
}
