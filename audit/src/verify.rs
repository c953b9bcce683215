//! The pure part of verification: walks chain records in order, recomputes every hash from the
//! previous one with `link::chain_hash`, and collects findings. Shared by the database
//! verifier, the offline verifier of an export, and tests. Holds one record at a time (plus,
//! when asked, one sequence number per aggregate).

use std::collections::HashMap;

use serde::Serialize;

use crate::chain::{decode_hash, ChainRecord, Digest};

/// Findings kept in a report; the rest are only counted.
pub const FINDINGS_KEPT_MAX: usize = 1_000;

/// Which check found a problem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Check {
    /// Positions, stored hashes, chain rows against the events they name.
    Chain,
    /// The hash at a digest's position against the digest taken earlier.
    Digest,
    /// Every aggregate's sequences are 1..n without a gap.
    Sequence,
    /// Every relayed event has exactly one chain row, and the relay's checkpoint agrees.
    Completeness,
    /// A projection rebuilt from the events against the live one.
    Projection,
}

impl Check {
    pub fn as_str(self) -> &'static str {
        match self {
            Check::Chain => "chain",
            Check::Digest => "digest",
            Check::Sequence => "sequence",
            Check::Completeness => "completeness",
            Check::Projection => "projection",
        }
    }
}

/// One problem, located as precisely as the check allows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    pub check: Check,
    /// The chain position where it shows (`None`: not on the chain).
    pub position: Option<i64>,
    pub global_position: Option<i64>,
    pub aggregate_id: Option<String>,
    pub sequence: Option<i64>,
    pub reason: String,
}

impl Finding {
    pub fn new(check: Check, reason: impl Into<String>) -> Self {
        Finding {
            check,
            position: None,
            global_position: None,
            aggregate_id: None,
            sequence: None,
            reason: reason.into(),
        }
    }

    pub fn at(mut self, position: i64) -> Self {
        self.position = Some(position);
        self
    }

    pub fn event(mut self, global_position: i64, aggregate_id: &str, sequence: i64) -> Self {
        self.global_position = Some(global_position);
        self.aggregate_id = Some(aggregate_id.to_owned());
        self.sequence = Some(sequence);
        self
    }

    /// `position 57 (global 60), aggregate 6a1f…, sequence 3: reason`
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(p) = self.position {
            parts.push(format!("position {p}"));
        }
        if let Some(g) = self.global_position {
            parts.push(format!("global position {g}"));
        }
        if let Some(a) = &self.aggregate_id {
            parts.push(format!("aggregate {a}"));
        }
        if let Some(s) = self.sequence {
            parts.push(format!("sequence {s}"));
        }
        let place = if parts.is_empty() {
            String::new()
        } else {
            format!("{}: ", parts.join(", "))
        };
        format!("[{}] {place}{}", self.check.as_str(), self.reason)
    }
}

/// Findings in the order they were found, at most `FINDINGS_KEPT_MAX` kept.
#[derive(Debug, Default)]
pub struct Findings {
    kept: Vec<Finding>,
    total: u64,
}

impl Findings {
    pub fn push(&mut self, finding: Finding) {
        self.total += 1;
        if self.kept.len() < FINDINGS_KEPT_MAX {
            self.kept.push(finding);
        }
    }

    pub fn total(&self) -> u64 {
        self.total
    }

    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// Kept findings, earliest chain position first (those off the chain last, in the order
    /// found), and the total found.
    pub fn into_sorted(mut self) -> (Vec<Finding>, u64) {
        self.kept
            .sort_by_key(|f| (f.position.is_none(), f.position.unwrap_or(0)));
        (self.kept, self.total)
    }
}

/// Aggregate ids are UUIDs: kept as 16 bytes, not as a 36-character string; the aggregate
/// type as an index into the few type names seen.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum AggregateKey {
    Uuid(usize, u128),
    Other(usize, String),
}

/// In chain order each aggregate's events must come as 1, 2, 3, ...
#[derive(Debug, Default)]
pub struct SequenceTracker {
    last: HashMap<AggregateKey, i64>,
    types: Vec<String>,
}

impl SequenceTracker {
    fn key(&mut self, aggregate_type: &str, aggregate_id: &str) -> AggregateKey {
        let kind = match self.types.iter().position(|t| t == aggregate_type) {
            Some(i) => i,
            None => {
                self.types.push(aggregate_type.to_owned());
                self.types.len() - 1
            }
        };
        match uuid::Uuid::parse_str(aggregate_id) {
            Ok(id) if id.hyphenated().to_string() == aggregate_id => {
                AggregateKey::Uuid(kind, id.as_u128())
            }
            _ => AggregateKey::Other(kind, aggregate_id.to_owned()),
        }
    }

    /// `Err(reason)` when `sequence` does not follow this aggregate's previous one.
    pub fn check(
        &mut self,
        aggregate_type: &str,
        aggregate_id: &str,
        sequence: i64,
    ) -> Result<(), String> {
        let key = self.key(aggregate_type, aggregate_id);
        let last = self.last.get(&key).copied().unwrap_or(0);
        self.last.insert(key, sequence.max(last));
        if sequence == last + 1 {
            Ok(())
        } else if sequence <= last {
            Err(format!(
                "sequence {sequence} comes after sequence {last} of the same aggregate: an event repeated or out of order"
            ))
        } else if last == 0 {
            Err(format!(
                "the aggregate's first event has sequence {sequence}: sequences 1..{} are missing",
                sequence - 1
            ))
        } else {
            Err(format!(
                "sequence {sequence} follows {last}: sequences {}..{} are missing",
                last + 1,
                sequence - 1
            ))
        }
    }

    pub fn aggregates(&self) -> u64 {
        self.last.len() as u64
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct DigestCheck {
    pub digest: String,
    /// The hash found at the digest's position (`None`: the chain does not reach it).
    pub found: Option<String>,
    pub ok: bool,
}

/// Walks the chain from `first_position` (whose predecessor hash is `previous`).
///
/// Two running hashes: `previous` goes on from each *stored* hash, so every altered link is
/// reported on its own; `recomputed` never does, it is the chain recomputed from the start
/// over the events alone, and is what a digest is compared with.
pub struct ChainVerifier {
    expected_position: i64,
    previous: [u8; 32],
    /// `None` once an event is missing: the chain cannot be recomputed past it.
    recomputed: Option<[u8; 32]>,
    digest: Option<Digest>,
    digest_check: Option<DigestCheck>,
    sequences: Option<SequenceTracker>,
    findings: Findings,
    records: u64,
    last_position: i64,
}

/// What the walk established.
#[derive(Debug)]
pub struct ChainOutcome {
    pub records: u64,
    /// The last position walked and the hash stored there.
    pub last_position: i64,
    pub last_hash: [u8; 32],
    pub digest: Option<DigestCheck>,
    pub aggregates: Option<u64>,
    pub findings: Findings,
}

/// What a digest was compared with.
enum DigestFound {
    Hash([u8; 32]),
    /// The chain ends before the digest's position.
    Beyond,
    /// An event before the digest's position is missing: the chain cannot be recomputed.
    Unrecomputable,
}

impl ChainVerifier {
    /// `track_sequences` checks per-aggregate sequences in chain order too (one entry per
    /// aggregate in memory): the offline verifier does, the database one asks Postgres.
    pub fn new(
        first_position: i64,
        previous: [u8; 32],
        digest: Option<Digest>,
        track_sequences: bool,
    ) -> Self {
        ChainVerifier {
            expected_position: first_position,
            previous,
            recomputed: Some(previous),
            digest,
            digest_check: None,
            sequences: track_sequences.then(SequenceTracker::default),
            findings: Findings::default(),
            records: 0,
            last_position: first_position - 1,
        }
    }

    /// The digest lies before the walk (`--from` beyond it): compare it with the hash stored
    /// there, which the walk trusts.
    pub fn check_digest_against_stored(&mut self, stored: Option<[u8; 32]>) {
        let Some(digest) = self.digest else { return };
        let found = stored.map_or(DigestFound::Beyond, DigestFound::Hash);
        self.settle_digest(digest, found);
    }

    fn settle_digest(&mut self, digest: Digest, found: DigestFound) {
        let (ok, hash, reason) = match found {
            DigestFound::Hash(hash) if hash == digest.hash => (true, Some(hash), String::new()),
            DigestFound::Hash(hash) => (
                false,
                Some(hash),
                format!(
                    "the chain recomputed up to here hashes to {} but the digest taken earlier says {}: the chain up to this position was rewritten",
                    hex::encode(hash),
                    hex::encode(digest.hash)
                ),
            ),
            DigestFound::Beyond => (
                false,
                None,
                format!(
                    "the digest names position {} but the chain does not reach it: the chain was truncated (or the digest is from another ledger)",
                    digest.position
                ),
            ),
            DigestFound::Unrecomputable => (
                false,
                None,
                "the chain cannot be recomputed up to the digest's position: an event before it is missing".to_owned(),
            ),
        };
        if !ok {
            self.findings
                .push(Finding::new(Check::Digest, reason).at(digest.position));
        }
        self.digest_check = Some(DigestCheck {
            digest: digest.to_string(),
            found: hash.map(hex::encode),
            ok,
        });
        self.digest = None;
    }

    pub fn check(&mut self, record: &ChainRecord) {
        let position = record.position;
        if position != self.expected_position {
            let reason = if position > self.expected_position {
                format!(
                    "positions {}..{} are missing from the chain",
                    self.expected_position,
                    position - 1
                )
            } else {
                format!(
                    "position {position} comes after {}: positions must rise by one",
                    self.expected_position - 1
                )
            };
            self.findings
                .push(Finding::new(Check::Chain, reason).at(self.expected_position.min(position)));
            if position > self.expected_position {
                // Links are missing: the chain from the start cannot be recomputed past them.
                self.recomputed = None;
            }
        }
        let located = |check: Check, reason: String| {
            Finding::new(check, reason).at(position).event(
                record.global_position,
                &record.aggregate_id,
                record.sequence,
            )
        };
        let stored = decode_hash(&record.chain_hash);
        if stored.is_none() {
            self.findings.push(located(
                Check::Chain,
                "the stored chain hash is not 64 hex digits".into(),
            ));
        }
        let linked = match &record.event {
            None => {
                self.findings.push(located(
                    Check::Chain,
                    format!(
                        "the chain row names global position {} (aggregate {}, sequence {}) but the event store has no event there: the event was deleted",
                        record.global_position, record.aggregate_id, record.sequence
                    ),
                ));
                self.recomputed = None;
                None
            }
            Some(event) => {
                if event.global_position != record.global_position
                    || event.aggregate_id != record.aggregate_id
                    || event.sequence != record.sequence
                {
                    self.findings.push(located(
                        Check::Chain,
                        format!(
                            "the chain row was written for aggregate {} sequence {} at global position {}, but the event there is aggregate {} sequence {} at global position {}: events were reordered or renumbered",
                            record.aggregate_id,
                            record.sequence,
                            record.global_position,
                            event.aggregate_id,
                            event.sequence,
                            event.global_position
                        ),
                    ));
                }
                let linked = crate::link::chain_hash(&self.previous, event);
                if stored.is_some_and(|s| s != linked) {
                    self.findings.push(located(
                        Check::Chain,
                        "the stored chain hash differs from the one recomputed from the previous hash and this event: the event (or the stored hash) was altered".into(),
                    ));
                }
                self.recomputed = match self.recomputed {
                    Some(r) if r == self.previous => Some(linked),
                    Some(r) => Some(crate::link::chain_hash(&r, event)),
                    None => None,
                };
                if let Some(tracker) = &mut self.sequences {
                    if let Err(reason) =
                        tracker.check(&event.aggregate_type, &event.aggregate_id, event.sequence)
                    {
                        self.findings.push(
                            Finding::new(Check::Sequence, reason).at(position).event(
                                event.global_position,
                                &event.aggregate_id,
                                event.sequence,
                            ),
                        );
                    }
                }
                Some(linked)
            }
        };
        if let Some(digest) = self.digest {
            if digest.position == position {
                let found = self
                    .recomputed
                    .map_or(DigestFound::Unrecomputable, DigestFound::Hash);
                self.settle_digest(digest, found);
            }
        }
        // Go on from the stored hash (or, unreadable, the linked one; with neither, keep the
        // previous one, so every later link is reported).
        if let Some(next) = stored.or(linked) {
            self.previous = next;
        }
        self.expected_position = position + 1;
        self.records += 1;
        self.last_position = position;
    }

    pub fn push(&mut self, finding: Finding) {
        self.findings.push(finding);
    }

    pub fn finish(mut self) -> ChainOutcome {
        if let Some(digest) = self.digest {
            let found = if digest.position == 0 {
                DigestFound::Hash(crate::link::GENESIS)
            } else {
                DigestFound::Beyond
            };
            self.settle_digest(digest, found);
        }
        ChainOutcome {
            records: self.records,
            last_position: self.last_position,
            last_hash: self.previous,
            digest: self.digest_check,
            aggregates: self.sequences.as_ref().map(SequenceTracker::aggregates),
            findings: self.findings,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use eventstore::PublishedEvent;

    fn event(global_position: i64, aggregate: &str, sequence: i64) -> PublishedEvent {
        PublishedEvent {
            global_position,
            aggregate_type: "Payment".into(),
            aggregate_id: aggregate.into(),
            sequence,
            event_type: "PaymentFailed".into(),
            event_version: "1.0".into(),
            payload: serde_json::json!({"PaymentFailed": {"reason": "x", "at": "2026-01-01T00:00:00Z"}}),
            metadata: serde_json::json!({}),
            recorded_at: Utc.timestamp_opt(1_767_225_600, 0).unwrap(),
        }
    }

    const A: &str = "6a1f3c2e-8b4d-4e7a-9c10-5d2b7f3e1a90";
    const B: &str = "7b2f3c2e-8b4d-4e7a-9c10-5d2b7f3e1a91";

    fn chain(events: Vec<PublishedEvent>) -> Vec<ChainRecord> {
        let mut previous = crate::link::GENESIS;
        events
            .into_iter()
            .enumerate()
            .map(|(i, e)| {
                previous = crate::link::chain_hash(&previous, &e);
                ChainRecord {
                    position: i as i64 + 1,
                    chain_hash: hex::encode(previous),
                    global_position: e.global_position,
                    aggregate_id: e.aggregate_id.clone(),
                    sequence: e.sequence,
                    event: Some(e),
                }
            })
            .collect()
    }

    fn good() -> Vec<ChainRecord> {
        chain(vec![
            event(1, A, 1),
            event(2, B, 1),
            event(4, A, 2),
            event(5, B, 2),
        ])
    }

    fn walk(records: &[ChainRecord], digest: Option<Digest>) -> ChainOutcome {
        let mut verifier = ChainVerifier::new(1, crate::link::GENESIS, digest, true);
        for r in records {
            verifier.check(r);
        }
        verifier.finish()
    }

    fn first(outcome: ChainOutcome) -> Finding {
        let (findings, _) = outcome.findings.into_sorted();
        findings.into_iter().next().expect("a finding")
    }

    #[test]
    fn a_good_chain_verifies_with_its_digest() {
        let records = good();
        let digest = Digest {
            position: 2,
            hash: decode_hash(&records[1].chain_hash).unwrap(),
        };
        let outcome = walk(&records, Some(digest));
        assert!(outcome.findings.is_empty(), "{:?}", outcome.findings);
        assert_eq!(outcome.records, 4);
        assert_eq!(outcome.aggregates, Some(2));
        assert!(outcome.digest.unwrap().ok);
        assert_eq!(hex::encode(outcome.last_hash), records[3].chain_hash);
    }

    #[test]
    fn an_altered_payload_is_located() {
        let mut records = good();
        records[2].event.as_mut().unwrap().payload["PaymentFailed"]["reason"] = "y".into();
        let outcome = walk(&records, None);
        assert_eq!(outcome.findings.total(), 1, "only the altered link");
        let f = first(outcome);
        assert_eq!(
            (f.check, f.position, f.sequence),
            (Check::Chain, Some(3), Some(2))
        );
        assert_eq!(f.aggregate_id.as_deref(), Some(A));
    }

    #[test]
    fn an_altered_event_before_the_digest_fails_the_digest_too() {
        let mut records = good();
        let digest = Digest {
            position: 4,
            hash: decode_hash(&records[3].chain_hash).unwrap(),
        };
        records[1].event.as_mut().unwrap().payload["PaymentFailed"]["reason"] = "y".into();
        let outcome = walk(&records, Some(digest));
        assert!(!outcome.digest.as_ref().unwrap().ok);
        let (findings, total) = outcome.findings.into_sorted();
        assert_eq!(total, 2, "{findings:?}");
        assert_eq!(
            (findings[0].check, findings[0].position),
            (Check::Chain, Some(2))
        );
        assert_eq!(
            (findings[1].check, findings[1].position),
            (Check::Digest, Some(4))
        );
        // A missing link before it: the digest cannot be reached by recomputing.
        let mut records = good();
        records.remove(1);
        let outcome = walk(&records, Some(digest));
        assert!(!outcome.digest.as_ref().unwrap().ok);
    }

    #[test]
    fn a_removed_line_is_located() {
        let mut records = good();
        records.remove(1);
        let f = first(walk(&records, None));
        assert_eq!((f.check, f.position), (Check::Chain, Some(2)));
    }

    #[test]
    fn a_consistent_rewrite_passes_the_chain_but_not_the_digest() {
        let records = good();
        let digest = Digest {
            position: 3,
            hash: decode_hash(&records[2].chain_hash).unwrap(),
        };
        let mut events: Vec<PublishedEvent> =
            records.iter().map(|r| r.event.clone().unwrap()).collect();
        events[1].payload["PaymentFailed"]["reason"] = "forged".into();
        let forged = chain(events);
        assert!(walk(&forged, None).findings.is_empty());
        let outcome = walk(&forged, Some(digest));
        assert!(!outcome.digest.as_ref().unwrap().ok);
        let f = first(outcome);
        assert_eq!((f.check, f.position), (Check::Digest, Some(3)));
        // A digest beyond the end means the chain was cut short.
        let f = first(walk(
            &records[..2],
            Some(Digest {
                position: 3,
                hash: [0; 32],
            }),
        ));
        assert_eq!((f.check, f.position), (Check::Digest, Some(3)));
    }

    #[test]
    fn sequences_must_rise_by_one_per_aggregate() {
        let records = chain(vec![event(1, A, 1), event(2, A, 3), event(3, B, 2)]);
        let (findings, total) = walk(&records, None).findings.into_sorted();
        assert_eq!(total, 2);
        assert!(findings.iter().all(|f| f.check == Check::Sequence));
        assert_eq!(findings[0].position, Some(2));
        assert!(findings[0].reason.contains("sequences 2..2 are missing"));
        assert_eq!(findings[1].aggregate_id.as_deref(), Some(B));
    }

    #[test]
    fn a_chain_row_pointing_at_another_event_is_reordering() {
        let mut records = good();
        let swapped = records[0].event.clone();
        records[0].event = records[2].event.clone();
        records[2].event = swapped;
        let f = first(walk(&records, None));
        assert_eq!((f.check, f.position), (Check::Chain, Some(1)));
        assert!(f.reason.contains("reordered"), "{}", f.reason);
    }
}
