//! Read-your-writes without polling the database: a reader that wants a payment at version
//! `v` registers here, and the status projector, right after committing a batch, hands the
//! rows it wrote to the readers whose payment reached their version: they answer with that
//! row instead of reading it again. Readers in another process than the projector (split
//! roles) never hear from it and fall back to polling. `read_at_least` is the read that
//! waits: the whole of read-your-writes, for the API to call.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::oneshot;
use tokio::time::Instant;
use uuid::Uuid;

use crate::status::{self, PaymentStatusRow};

/// Aggregates with someone waiting, at most: beyond it readers just poll.
pub const WAITING_AGGREGATES_MAX: usize = 16_384;

/// The longest a read waits for the projection to reach the version asked for; then it
/// answers what the projection has.
pub const MIN_VERSION_WAIT: Duration = Duration::from_millis(2_000);
/// Re-read interval while waiting when the status projector runs in another process
/// (nothing will wake the reader), and when it runs in this one (a safety net: its wake-up
/// normally comes first).
const MIN_VERSION_POLL: Duration = Duration::from_millis(25);
const MIN_VERSION_POLL_WOKEN: Duration = Duration::from_millis(250);

/// The version a reader waits for, and where to hand it the row.
type Waiter = (i64, oneshot::Sender<PaymentStatusRow>);

#[derive(Debug, Default)]
pub struct VersionWaiters {
    waiting: Mutex<HashMap<Uuid, Vec<Waiter>>>,
    fed_in_process: bool,
}

impl VersionWaiters {
    /// `fed_in_process`: this process runs the status projector, which will call `committed`.
    pub fn new(fed_in_process: bool) -> Self {
        Self {
            waiting: Mutex::default(),
            fed_in_process,
        }
    }

    /// Whether wake-ups will come at all (otherwise readers must poll).
    pub fn fed_in_process(&self) -> bool {
        self.fed_in_process
    }

    /// The payment's row once it has been applied up to `version` (or later); `None` when
    /// too many are waiting already. Register *before* reading, so an apply that lands
    /// between the read and the wait is not missed.
    pub fn wait_for(
        &self,
        payment_id: Uuid,
        version: i64,
    ) -> Option<oneshot::Receiver<PaymentStatusRow>> {
        let mut waiting = self.waiting.lock().ok()?;
        if waiting.len() >= WAITING_AGGREGATES_MAX {
            // Readers that gave up leave closed senders behind: drop those first.
            waiting.retain(|_, senders| {
                senders.retain(|(_, sender)| !sender.is_closed());
                !senders.is_empty()
            });
            if waiting.len() >= WAITING_AGGREGATES_MAX {
                return None;
            }
        }
        let (sender, receiver) = oneshot::channel();
        let senders = waiting.entry(payment_id).or_default();
        // Readers of this payment that gave up: their place is taken back at once, so one
        // payment's list holds only readers still waiting.
        senders.retain(|(_, sender)| !sender.is_closed());
        senders.push((version, sender));
        Some(receiver)
    }

    /// The payment's status row (another merchant's is `None`, as a missing one), waiting up
    /// to `MIN_VERSION_WAIT` for it to reach `min_version` (read-your-writes after a command
    /// answered that version). Past the wait it answers the row as it stands, stale or not.
    /// The caller bounds how many wait, and asks only for versions the stream has.
    ///
    /// `registered`: the caller's place in line for `min_version` (`wait_for`), taken before
    /// a read of its own that found the row behind: then this waits first and reads only if
    /// nothing is handed over. `None`: this registers, then reads first.
    pub async fn read_at_least(
        &self,
        pool: &PgPool,
        payment_id: Uuid,
        merchant: Option<&str>,
        min_version: i64,
        registered: Option<oneshot::Receiver<PaymentStatusRow>>,
    ) -> Result<Option<PaymentStatusRow>, sqlx::Error> {
        let deadline = Instant::now() + MIN_VERSION_WAIT;
        let mut read_now = registered.is_none();
        // Registered before the first read: an apply landing between the two still wakes us.
        let mut woken = registered.or_else(|| {
            (min_version > 0)
                .then(|| self.wait_for(payment_id, min_version))
                .flatten()
        });
        loop {
            if read_now {
                let row = status::get(pool, payment_id, merchant).await?;
                let timed_out = Instant::now() >= deadline;
                match row {
                    Some(row) if row.version >= min_version || timed_out => return Ok(Some(row)),
                    None if min_version == 0 || timed_out => return Ok(None),
                    _ => {}
                }
            }
            read_now = true;
            let poll = match &woken {
                Some(_) if self.fed_in_process => MIN_VERSION_POLL_WOKEN,
                _ => MIN_VERSION_POLL,
            };
            let sleep = tokio::time::sleep_until((Instant::now() + poll).min(deadline));
            match woken.as_mut() {
                Some(receiver) => {
                    tokio::select! {
                        handed = receiver => match handed {
                            // The projector's row as it committed it: no need to read it again.
                            Ok(row) if merchant.is_none_or(|m| m == row.merchant_id) => {
                                debug_assert!(row.version >= min_version);
                                return Ok(Some(row));
                            }
                            // Handed and spent (or dropped): poll from here on.
                            _ => woken = None,
                        },
                        _ = sleep => {}
                    }
                }
                None => sleep.await,
            }
        }
    }

    /// `rows` are committed, each as it now stands in `payment_status`: hand each to whoever
    /// waited for its version.
    pub fn committed(&self, rows: &[PaymentStatusRow]) {
        let Ok(mut waiting) = self.waiting.lock() else {
            return;
        };
        if waiting.is_empty() {
            return;
        }
        for row in rows {
            let Some(senders) = waiting.get_mut(&row.payment_id) else {
                continue;
            };
            let (ready, pending): (Vec<_>, Vec<_>) = std::mem::take(senders)
                .into_iter()
                .partition(|(wanted, _)| *wanted <= row.version);
            for (_, sender) in ready {
                let _reader_gone = sender.send(row.clone());
            }
            if pending.is_empty() {
                waiting.remove(&row.payment_id);
            } else {
                *senders = pending;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(payment: u128, version: i64) -> PaymentStatusRow {
        let at = chrono::Utc::now();
        PaymentStatusRow {
            payment_id: Uuid::from_u128(payment),
            merchant_id: "m".into(),
            reference: "r".into(),
            status: "pending".into(),
            amount: rust_decimal::Decimal::ONE,
            currency: "COP".into(),
            authorized_amount: rust_decimal::Decimal::ZERO,
            captured_amount: rust_decimal::Decimal::ZERO,
            refunded_amount: rust_decimal::Decimal::ZERO,
            refund_pending_amount: rust_decimal::Decimal::ZERO,
            provider: "sandbox".into(),
            provider_transaction_id: None,
            payment_method_type: "card".into(),
            provider_outcome: None,
            pending_action: None,
            needs_review: None,
            capture_mode: "automatic".into(),
            failure_reason: None,
            next_action: None,
            fee_amount: rust_decimal::Decimal::ZERO,
            created_at: at,
            updated_at: at,
            version,
        }
    }

    fn id(payment: u128) -> Uuid {
        Uuid::from_u128(payment)
    }

    #[test]
    fn hands_the_row_only_to_readers_whose_version_was_reached() {
        let waiters = VersionWaiters::default();
        let mut at_two = waiters.wait_for(id(1), 2).expect("room");
        let mut at_three = waiters.wait_for(id(1), 3).expect("room");
        let mut other = waiters.wait_for(id(2), 1).expect("room");
        waiters.committed(&[row(1, 2)]);
        assert_eq!(at_two.try_recv().expect("woken").version, 2);
        assert!(at_three.try_recv().is_err());
        assert!(other.try_recv().is_err());
        waiters.committed(&[row(1, 5), row(2, 1)]);
        assert_eq!(at_three.try_recv().expect("woken").version, 5);
        assert_eq!(
            other.try_recv().expect("woken").payment_id,
            uuid::Uuid::from_u128(2)
        );
        assert!(waiters.waiting.lock().expect("lock").is_empty());
    }

    #[test]
    fn bounded_and_pruned_of_readers_that_left() {
        let waiters = VersionWaiters::default();
        let kept: Vec<_> = (0..WAITING_AGGREGATES_MAX)
            .map(|i| waiters.wait_for(id(i as u128), 1).expect("room"))
            .collect();
        assert!(waiters.wait_for(id(u128::MAX), 1).is_none());
        drop(kept);
        assert!(waiters.wait_for(id(u128::MAX - 1), 1).is_some());
        assert_eq!(waiters.waiting.lock().expect("lock").len(), 1);
    }
}
