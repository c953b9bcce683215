//! The audit chain as auditors see it: one record per chain position (the chain row and the
//! event it points at), the head, digests, and keyset pages read from the event store.

use std::fmt;
use std::str::FromStr;

pub use eventstore::chain::{hash_at, lines, page, ChainRecord};
use sqlx::PgExecutor;

/// Rows read per query when streaming the chain: the most any reader holds at once.
pub const PAGE_ROWS: i64 = 1_000;

/// A chain position and its hash, written `<position>:<hex>`: what an auditor notes down
/// to prove later that nothing up to that position was rewritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Digest {
    pub position: i64,
    pub hash: [u8; 32],
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.position, hex::encode(self.hash))
    }
}

impl FromStr for Digest {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (position, hash) = text
            .trim()
            .split_once(':')
            .ok_or("a digest is <position>:<64 hex digits>")?;
        let position: i64 = position
            .parse()
            .map_err(|_| "the digest's position is not a number")?;
        if position < 0 {
            return Err("the digest's position must not be negative".into());
        }
        let hash = decode_hash(hash).ok_or("the digest's hash must be 64 hex digits")?;
        Ok(Digest { position, hash })
    }
}

pub fn decode_hash(text: &str) -> Option<[u8; 32]> {
    let bytes = hex::decode(text).ok()?;
    bytes.try_into().ok()
}

/// The chain's last position and hash (`0` and `GENESIS` while it is empty).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub position: i64,
    pub chain_hash: [u8; 32],
    pub global_position: Option<i64>,
}

impl Head {
    pub fn digest(&self) -> Digest {
        Digest {
            position: self.position,
            hash: self.chain_hash,
        }
    }
}

/// The chain's head as stored (`0` and `GENESIS` while the chain is empty).
pub async fn head(executor: impl PgExecutor<'_>) -> Result<Head, sqlx::Error> {
    Ok(match eventstore::chain::last(executor).await? {
        None => Head {
            position: 0,
            chain_hash: crate::link::GENESIS,
            global_position: None,
        },
        Some(last) => Head {
            position: last.link.position,
            chain_hash: last.link.hash,
            global_position: Some(last.global_position),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_round_trip_and_refuse_malformed_text() {
        let digest = Digest {
            position: 42,
            hash: [0xab; 32],
        };
        let text = digest.to_string();
        assert_eq!(text, format!("42:{}", "ab".repeat(32)));
        assert_eq!(text.parse::<Digest>(), Ok(digest));
        for bad in [
            "42",
            "x:ab",
            "-1:00",
            &format!("42:{}", "ab".repeat(31)),
            &format!("42:{}", "zz".repeat(32)),
        ] {
            assert!(bad.parse::<Digest>().is_err(), "{bad} accepted");
        }
    }
}
