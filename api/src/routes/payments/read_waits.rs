//! Bounds on reads that wait for a version (`GET /v1/payments/{id}?min_version=`): each holds
//! a task and a waiter for up to two seconds, so how many may wait at once is limited per
//! key and in total. A read past a bound is refused at once, never queued.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use actix_web::http::StatusCode;
use uuid::Uuid;

use crate::problem::{Problem, ProblemType};

/// Waiting reads of one key at once: far above what one checkout needs (one per command it
/// just made), far below what fills the node.
pub const PER_KEY_MAX: usize = 64;
/// Waiting reads on this node at once.
pub const TOTAL_MAX: usize = 4_096;

#[derive(Debug, Default)]
pub struct ReadWaits {
    by_key: Mutex<HashMap<Uuid, usize>>,
}

/// One waiting read's place; given back when dropped.
pub struct WaitPermit {
    waits: Arc<ReadWaits>,
    key: Uuid,
}

impl ReadWaits {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, usize>> {
        // Counters only: a panic elsewhere leaves them usable.
        self.by_key.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn acquire(self: &Arc<Self>, key: Uuid) -> Result<WaitPermit, Problem> {
        let mut by_key = self.lock();
        let total: usize = by_key.values().sum();
        if total >= TOTAL_MAX {
            return Err(Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ProblemType::TooManyWaitingReads,
                "Too many waiting reads",
                "too many reads wait for a version on this node; retry without min_version or later",
            ));
        }
        let mine = by_key.entry(key).or_insert(0);
        if *mine >= PER_KEY_MAX {
            return Err(Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                ProblemType::TooManyWaitingReads,
                "Too many waiting reads",
                format!("this key has {PER_KEY_MAX} reads waiting for a version already"),
            ));
        }
        *mine += 1;
        debug_assert!(by_key.values().sum::<usize>() <= TOTAL_MAX);
        Ok(WaitPermit {
            waits: Arc::clone(self),
            key,
        })
    }

    #[cfg(test)]
    fn waiting(&self) -> usize {
        self.lock().values().sum()
    }
}

impl Drop for WaitPermit {
    fn drop(&mut self) {
        let mut by_key = self.waits.lock();
        if let Some(count) = by_key.get_mut(&self.key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                by_key.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_key_waits_up_to_its_bound_and_gets_its_places_back() {
        let waits = Arc::new(ReadWaits::default());
        let key = Uuid::new_v4();
        let held: Vec<_> = (0..PER_KEY_MAX)
            .map(|_| waits.acquire(key).expect("room"))
            .collect();
        let refused = waits.acquire(key).err().expect("bound");
        assert_eq!(refused.status, 429);
        assert!(
            waits.acquire(Uuid::new_v4()).is_ok(),
            "other keys still wait"
        );
        drop(held);
        assert_eq!(waits.waiting(), 0);
        assert!(waits.acquire(key).is_ok());
    }

    #[test]
    fn the_node_bounds_every_key_together() {
        let waits = Arc::new(ReadWaits::default());
        let held: Vec<_> = (0..TOTAL_MAX / PER_KEY_MAX)
            .flat_map(|_| {
                let key = Uuid::new_v4();
                (0..PER_KEY_MAX)
                    .map(|_| waits.acquire(key).expect("room"))
                    .collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(held.len(), TOTAL_MAX);
        let refused = waits.acquire(Uuid::new_v4()).err().expect("bound");
        assert_eq!(refused.status, 503);
    }
}
