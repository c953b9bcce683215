//! Wompi's webhook event as the emulator sends it, field names as Wompi's events
//! documentation spells them, and Wompi's two SHA-256 checksums: the event checksum (sent in
//! the body and in `X-Event-Checksum`) and the integrity signature a create must carry.

use serde::Serialize;
use sha2::{Digest, Sha256};

/// The header that repeats the event checksum.
pub const CHECKSUM_HEADER: &str = "X-Event-Checksum";
/// The event type of a transaction's change.
pub const EVENT_TRANSACTION_UPDATED: &str = "transaction.updated";
/// What Wompi signs by default, in this order.
pub const DEFAULT_PROPERTIES: [&str; 3] = [
    "transaction.id",
    "transaction.status",
    "transaction.amount_in_cents",
];
/// Longest PSE `payment_description` Wompi takes.
pub const PSE_DESCRIPTION_LEN_MAX: usize = 30;
/// Longest Bancolombia transfer or QR `payment_description` Wompi takes.
pub const BANCOLOMBIA_DESCRIPTION_LEN_MAX: usize = 64;
/// Longest Daviplata `payment_description` Wompi takes.
pub const DAVIPLATA_DESCRIPTION_LEN_MAX: usize = 30;

/// Lower-case hex checksum of an event: SHA-256 of the property values in order, then the
/// timestamp, then the events secret.
pub fn event_checksum(values: &[&str], timestamp: i64, events_secret: &str) -> String {
    let mut hash = Sha256::new();
    for value in values {
        hash.update(value.as_bytes());
    }
    hash.update(timestamp.to_string().as_bytes());
    hash.update(events_secret.as_bytes());
    hex::encode(hash.finalize())
}

/// Lower-case hex SHA-256 of `reference + amount_in_cents + currency + integrity_secret`
/// (decimal text, no separators): the `signature` a create must carry.
pub fn integrity_signature(
    reference: &str,
    amount_in_cents: i64,
    currency: &str,
    integrity_secret: &str,
) -> String {
    let mut hash = Sha256::new();
    hash.update(reference.as_bytes());
    hash.update(amount_in_cents.to_string().as_bytes());
    hash.update(currency.as_bytes());
    hash.update(integrity_secret.as_bytes());
    hex::encode(hash.finalize())
}

/// The `signature` of a create that carries an `expiration_time`: SHA-256 of `reference +
/// amount_in_cents + currency + expiration_time + integrity_secret`, the time as sent.
pub fn integrity_signature_until(
    reference: &str,
    amount_in_cents: i64,
    currency: &str,
    expiration_time: &str,
    integrity_secret: &str,
) -> String {
    let mut hash = Sha256::new();
    hash.update(reference.as_bytes());
    hash.update(amount_in_cents.to_string().as_bytes());
    hash.update(currency.as_bytes());
    hash.update(expiration_time.as_bytes());
    hash.update(integrity_secret.as_bytes());
    hex::encode(hash.finalize())
}

#[derive(Serialize)]
pub(crate) struct Event<'a> {
    pub event: &'static str,
    pub data: EventData<'a>,
    pub environment: &'static str,
    pub signature: EventSignature,
    pub timestamp: i64,
    pub sent_at: String,
}

#[derive(Serialize)]
pub(crate) struct EventData<'a> {
    pub transaction: EventTransaction<'a>,
}

#[derive(Serialize)]
pub(crate) struct EventTransaction<'a> {
    pub id: &'a str,
    pub amount_in_cents: i64,
    pub reference: &'a str,
    pub customer_email: &'a str,
    pub currency: &'a str,
    pub payment_method_type: &'static str,
    pub redirect_url: Option<&'a str>,
    pub status: &'static str,
    pub status_message: Option<&'static str>,
    pub shipping_address: Option<()>,
    pub payment_link_id: Option<()>,
    pub payment_source_id: Option<i64>,
}

#[derive(Serialize)]
pub(crate) struct EventSignature {
    pub properties: [&'static str; 3],
    pub checksum: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Known answers computed outside this code, e.g.
    /// `printf '%s' "1234-1610641025-49201APPROVED44900001530291411test_events_payledger_kat_0123456789abcdef" | sha256sum`
    /// (the transaction id and amount of the example event in Wompi's docs).
    #[test]
    fn event_checksum_matches_independent_vectors() {
        const SECRET: &str = "test_events_payledger_kat_0123456789abcdef";
        assert_eq!(
            event_checksum(
                &["1234-1610641025-49201", "APPROVED", "4490000"],
                1_530_291_411,
                SECRET
            ),
            "4c4097a4083a19e97d4d170e2d7c3c54352d194c22d8f69fb8144f4cfb1489a6"
        );
        assert_eq!(
            event_checksum(
                &["12345-1700000000-00001", "DECLINED", "12900000"],
                1_700_000_000,
                SECRET
            ),
            "ef7bfd156ef94ea13bf4fdea87036a3b88c4afc96b8e41dc7606064305d15c7f"
        );
    }

    /// `printf '%s' "6a1f3c2e-8b4d-4e7a-9c10-5d2b7f3e1a9012900000COPtest_integrity_payledger_kat_0123456789abcdef" | sha256sum`
    #[test]
    fn integrity_signature_matches_an_independent_sha256() {
        assert_eq!(
            integrity_signature(
                "6a1f3c2e-8b4d-4e7a-9c10-5d2b7f3e1a90",
                12_900_000,
                "COP",
                "test_integrity_payledger_kat_0123456789abcdef"
            ),
            "af59a775e4d17220fb8b7253f57e9cb056531242c421dc62ad0ebdfe1c0a212e"
        );
    }

    /// `printf '%s' "6a1f3c2e-8b4d-4e7a-9c10-5d2b7f3e1a9012900000COP2026-03-01T15:30:00.000Ztest_integrity_payledger_kat_0123456789abcdef" | sha256sum`
    #[test]
    fn integrity_signature_with_an_expiration_time_matches_an_independent_sha256() {
        assert_eq!(
            integrity_signature_until(
                "6a1f3c2e-8b4d-4e7a-9c10-5d2b7f3e1a90",
                12_900_000,
                "COP",
                "2026-03-01T15:30:00.000Z",
                "test_integrity_payledger_kat_0123456789abcdef"
            ),
            "fc5721f08c2644a109198e911cb5e3109d3cda3d7384a27c6df63398b6536ed3"
        );
    }
}
