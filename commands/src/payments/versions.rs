//! The stream versions this process last saw, appended or loaded, bounded: enough for a read
//! that waits for a version to know the stream has it without reading the stream. A stream
//! only grows and a payment's merchant never changes, so a remembered version is a lower
//! bound that stays true whichever process appends next; it never decides a command.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use domain::MerchantId;
use uuid::Uuid;

/// Payments remembered at most; the oldest remembered goes first. At a few hundred payments
/// a second this covers the minute in which their readers wait for their versions.
const SEEN_PAYMENTS_MAX: usize = 16_384;

#[derive(Debug, Default)]
pub(super) struct SeenVersions {
    inner: Mutex<Seen>,
}

#[derive(Debug, Default)]
struct Seen {
    by_payment: HashMap<Uuid, (MerchantId, i64)>,
    /// First remembered first: the eviction order.
    order: VecDeque<Uuid>,
}

impl SeenVersions {
    pub(super) fn record(&self, payment: Uuid, merchant: &MerchantId, version: i64) {
        let Ok(mut seen) = self.inner.lock() else {
            return;
        };
        if let Some((_, known)) = seen.by_payment.get_mut(&payment) {
            *known = (*known).max(version);
            return;
        }
        if seen.order.len() >= SEEN_PAYMENTS_MAX {
            if let Some(oldest) = seen.order.pop_front() {
                seen.by_payment.remove(&oldest);
            }
        }
        seen.order.push_back(payment);
        seen.by_payment.insert(payment, (merchant.clone(), version));
        debug_assert_eq!(seen.order.len(), seen.by_payment.len());
    }

    /// The payment's merchant and a version its stream has reached, if remembered.
    pub(super) fn get(&self, payment: Uuid) -> Option<(MerchantId, i64)> {
        self.inner.lock().ok()?.by_payment.get(&payment).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn merchant() -> MerchantId {
        MerchantId::parse("m-1").expect("a merchant id")
    }

    #[test]
    fn remembers_the_highest_version_seen() {
        let seen = SeenVersions::default();
        let payment = Uuid::from_u128(1);
        assert_eq!(seen.get(payment), None);
        seen.record(payment, &merchant(), 3);
        seen.record(payment, &merchant(), 2);
        assert_eq!(seen.get(payment), Some((merchant(), 3)));
        seen.record(payment, &merchant(), 5);
        assert_eq!(seen.get(payment), Some((merchant(), 5)));
    }

    #[test]
    fn bounded_forgetting_the_first_remembered() {
        let seen = SeenVersions::default();
        for i in 0..=SEEN_PAYMENTS_MAX as u128 {
            seen.record(Uuid::from_u128(i), &merchant(), 1);
        }
        assert_eq!(seen.get(Uuid::from_u128(0)), None);
        assert!(seen.get(Uuid::from_u128(1)).is_some());
        let inner = seen.inner.lock().expect("lock");
        assert_eq!(inner.by_payment.len(), SEEN_PAYMENTS_MAX);
        assert_eq!(inner.order.len(), SEEN_PAYMENTS_MAX);
    }
}
