//! The message the relay publishes: an envelope holding the events of one aggregate type from
//! one relay batch, in the relay's order, as a JSON array of `PublishedEvent`.
//!
//! One persistent message per event made the broker store, deliver and settle every event on
//! every queue; an envelope costs that once per batch. A consumer applies and acknowledges
//! an envelope as a unit. A message holding one bare `PublishedEvent` (what relays published
//! before envelopes) is still read, as an envelope of one.

use crate::published::{routing_prefix, PublishedEvent};

/// Bound on an envelope's body: the relay starts a new envelope rather than pass it. An event
/// larger than this by itself travels alone.
pub const ENVELOPE_BYTES_MAX: usize = 256 * 1024;

/// The AMQP `type` of an envelope message.
pub const ENVELOPE_TYPE: &str = "envelope";

/// One message to publish.
#[derive(Debug)]
pub struct Envelope {
    /// `<aggregate>.envelope`: queues bound to `<aggregate>.#` receive it.
    pub routing_key: String,
    pub body: Vec<u8>,
    pub events: usize,
    pub first_position: i64,
    pub last_position: i64,
}

impl Envelope {
    /// `<aggregate>/<first position>-<last position>`: what a log line or a dead letter names.
    pub fn message_id(&self) -> String {
        let aggregate = self.routing_key.split('.').next().unwrap_or_default();
        format!("{aggregate}/{}-{}", self.first_position, self.last_position)
    }
}

/// Seals `events` (in the relay's order) into envelopes: one per aggregate type, more when a
/// type's events pass `ENVELOPE_BYTES_MAX`. A type's events keep the relay's order, across
/// its envelopes too (returned, and so published, in that order); `first_position` and
/// `last_position` are its first and last event in that order.
pub fn seal<'a>(
    events: impl IntoIterator<Item = &'a PublishedEvent>,
) -> Result<Vec<Envelope>, (String, serde_json::Error)> {
    let mut sealed = Vec::new();
    // Envelopes being filled, by routing key (a handful of aggregate types: a Vec is enough).
    let mut open: Vec<Envelope> = Vec::new();
    for event in events {
        let encoded = serde_json::to_vec(event).map_err(|e| (event.message_id(), e))?;
        let routing_key = format!("{}.{ENVELOPE_TYPE}", routing_prefix(&event.aggregate_type));
        let at = match open.iter().position(|e| e.routing_key == routing_key) {
            // `,` before it and `]` after it.
            Some(at) if open[at].body.len() + encoded.len() + 2 > ENVELOPE_BYTES_MAX => {
                sealed.push(finish(open.remove(at)));
                None
            }
            at => at,
        };
        match at {
            Some(at) => {
                let envelope = &mut open[at];
                envelope.body.push(b',');
                envelope.body.extend_from_slice(&encoded);
                envelope.events += 1;
                envelope.last_position = event.global_position;
            }
            None => {
                let mut body = Vec::with_capacity(encoded.len() * 8);
                body.push(b'[');
                body.extend_from_slice(&encoded);
                open.push(Envelope {
                    routing_key,
                    body,
                    events: 1,
                    first_position: event.global_position,
                    last_position: event.global_position,
                });
            }
        }
    }
    // A type's envelopes sealed early precede its open one: its order holds across them.
    sealed.extend(open.into_iter().map(finish));
    Ok(sealed)
}

fn finish(mut envelope: Envelope) -> Envelope {
    envelope.body.push(b']');
    envelope
}

/// The events of a message: an envelope's, in order, or a bare event alone.
pub fn open(body: &[u8]) -> Result<Vec<PublishedEvent>, serde_json::Error> {
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'[') => serde_json::from_slice(body),
        _ => serde_json::from_slice(body).map(|event| vec![event]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(aggregate_type: &str, id: &str, sequence: i64, position: i64) -> PublishedEvent {
        PublishedEvent {
            global_position: position,
            aggregate_type: aggregate_type.into(),
            aggregate_id: id.into(),
            sequence,
            event_type: "Something".into(),
            event_version: "1".into(),
            payload: serde_json::json!({"Something": {"note": "x".repeat(100)}}),
            metadata: serde_json::json!({}),
            recorded_at: chrono::Utc::now(),
        }
    }

    #[test]
    fn one_envelope_per_aggregate_type_each_in_the_relays_order() {
        let events = vec![
            event("Payment", "a", 1, 10),
            event("Customer", "c", 1, 11),
            event("Payment", "b", 1, 12),
            event("Payment", "a", 2, 13),
        ];
        let sealed = seal(&events).unwrap();
        let keys: Vec<&str> = sealed.iter().map(|e| e.routing_key.as_str()).collect();
        assert_eq!(keys, ["payment.envelope", "customer.envelope"]);
        assert_eq!(
            open(&sealed[0].body).unwrap(),
            [events[0].clone(), events[2].clone(), events[3].clone()]
        );
        assert_eq!(open(&sealed[1].body).unwrap(), [events[1].clone()]);
        assert_eq!(
            (
                sealed[0].first_position,
                sealed[0].last_position,
                sealed[0].events
            ),
            (10, 13, 3)
        );
        assert_eq!(sealed[0].message_id(), "payment/10-13");
    }

    #[test]
    fn a_type_passing_the_bound_is_split_in_order_and_no_envelope_passes_it() {
        let events: Vec<_> = (1..=3000).map(|i| event("Payment", "a", i, i)).collect();
        let sealed = seal(&events).unwrap();
        assert!(sealed.len() > 1);
        assert!(sealed.iter().all(|e| e.body.len() <= ENVELOPE_BYTES_MAX));
        let reopened: Vec<PublishedEvent> =
            sealed.iter().flat_map(|e| open(&e.body).unwrap()).collect();
        assert_eq!(reopened, events);
    }

    #[test]
    fn an_event_larger_than_the_bound_travels_alone() {
        let mut big = event("Payment", "a", 2, 2);
        big.payload = serde_json::json!({"Something": {"note": "y".repeat(ENVELOPE_BYTES_MAX)}});
        let events = vec![
            event("Payment", "a", 1, 1),
            big.clone(),
            event("Payment", "a", 3, 3),
        ];
        let sealed = seal(&events).unwrap();
        assert_eq!(sealed.len(), 3);
        assert_eq!(open(&sealed[1].body).unwrap(), [big]);
    }

    #[test]
    fn a_bare_event_opens_as_an_envelope_of_one_and_garbage_does_not_open() {
        let one = event("Payment", "a", 1, 1);
        assert_eq!(open(&serde_json::to_vec(&one).unwrap()).unwrap(), [one]);
        assert!(open(b"{not an event").is_err());
        assert!(open(b"[{\"x\": 1}]").is_err());
    }
}
