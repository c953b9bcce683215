//! Wakes the relay after an append, without a trigger on `events`.
//!
//! A transaction that NOTIFYs holds PostgreSQL's global notify lock from its commit until its
//! WAL is flushed, so notifying from every appending transaction serialises their commits
//! (no group commit). Instead each append only marks a wake-up as pending, and one task per
//! process sends a single `pg_notify` from its own transaction for however many appends
//! happened meanwhile: at most one NOTIFY in flight, whatever the command rate.
//!
//! When the relay leading right now runs in this very process, there is no NOTIFY at all:
//! the waker rings a [`LocalRelay`] bell (at the maximum that was ~570 NOTIFY round trips a
//! second, a dozen per relay batch, each signalling the listening backend).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use sqlx::{ConnectOptions, PgConnection};
use tokio::sync::{mpsc, Notify};

use crate::relay::NOTIFY_CHANNEL;

/// Pause after a failed NOTIFY (the database is away; the relay polls meanwhile).
const RETRY_DELAY_MS: u64 = 200;
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// A wake-up path to a relay in the same process, used only while that relay leads.
#[derive(Debug, Clone, Default)]
pub struct LocalRelay {
    inner: Arc<LocalRelayInner>,
}

#[derive(Debug, Default)]
struct LocalRelayInner {
    /// One stored permit: rings while the relay is busy coalesce into one more look.
    bell: Notify,
    leading: AtomicBool,
}

impl LocalRelay {
    /// Held by the relay for as long as it leads; dropping it hands wake-ups back to NOTIFY.
    pub(crate) fn lead(&self) -> LeadingHere {
        self.inner.leading.store(true, Ordering::SeqCst);
        LeadingHere(self.clone())
    }

    /// Whether a relay of this process leads now (its appends ring instead of notifying).
    pub fn leads(&self) -> bool {
        self.inner.leading.load(Ordering::SeqCst)
    }

    /// Resolves at the next ring (or at once for a ring since the last one was taken).
    pub(crate) async fn rung(&self) {
        self.inner.bell.notified().await;
    }

    fn ring_if_leading(&self) -> bool {
        let leading = self.leads();
        if leading {
            self.inner.bell.notify_one();
        }
        leading
    }
}

pub(crate) struct LeadingHere(LocalRelay);

impl Drop for LeadingHere {
    fn drop(&mut self) {
        self.0.inner.leading.store(false, Ordering::SeqCst);
    }
}

#[derive(Debug, Clone)]
pub struct RelayWaker {
    /// Capacity one: a full channel means a wake-up is already pending.
    pending: mpsc::Sender<()>,
    local: Option<LocalRelay>,
}

impl RelayWaker {
    /// Starts the notifying task; it ends when the last `RelayWaker` clone is dropped.
    /// `local`: the relay of this process, rung instead of a NOTIFY while it leads.
    pub fn spawn(pool: sqlx::PgPool, local: Option<LocalRelay>) -> Self {
        let (pending, mut wakes) = mpsc::channel::<()>(1);
        tokio::spawn(async move {
            // Its own session rather than the pool's: a pooled connection costs a second
            // round trip on every release (sqlx pings it), hundreds of times a second here.
            let mut session: Option<PgConnection> = None;
            while wakes.recv().await.is_some() {
                let sent = notify(&pool, &mut session).await;
                if let Err(error) = sent {
                    session = None;
                    tracing::warn!(%error, "could not wake the relay; it will find the events by polling");
                    tokio::time::sleep(std::time::Duration::from_millis(RETRY_DELAY_MS)).await;
                }
            }
        });
        Self { pending, local }
    }

    /// Events were committed: make sure a wake-up follows (coalesced with one pending).
    pub fn wake(&self) {
        // A ring missed while leadership changes hands is caught by the relay's polling,
        // as a lost NOTIFY would be.
        if self.local.as_ref().is_some_and(LocalRelay::ring_if_leading) {
            return;
        }
        // Full: one is pending already and covers these events too. Closed: shutting down.
        let _coalesced = self.pending.try_send(());
    }
}

async fn notify(
    pool: &sqlx::PgPool,
    session: &mut Option<PgConnection>,
) -> Result<(), sqlx::Error> {
    let conn = match session {
        Some(conn) => conn,
        None => {
            let options = pool
                .connect_options()
                .as_ref()
                .clone()
                .application_name("payledger-relay-waker");
            let connected = tokio::time::timeout(CONNECT_TIMEOUT, options.connect())
                .await
                .map_err(|_| sqlx::Error::PoolTimedOut)??;
            session.insert(connected)
        }
    };
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(NOTIFY_CHANNEL)
        .execute(conn)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::LocalRelay;

    const NOT_RUNG_MS: u64 = 50;

    async fn is_rung(local: &LocalRelay) -> bool {
        tokio::time::timeout(Duration::from_millis(NOT_RUNG_MS), local.rung())
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn rings_while_the_relay_leads_coalesce_into_one_wake_up() {
        let local = LocalRelay::default();
        let _leading = local.lead();
        assert!(local.ring_if_leading());
        assert!(local.ring_if_leading());
        assert!(
            is_rung(&local).await,
            "a ring taken while busy wakes the next wait"
        );
        assert!(
            !is_rung(&local).await,
            "two rings are one more look, not two"
        );
    }

    #[tokio::test]
    async fn without_a_leader_here_nothing_rings_and_the_waker_must_notify() {
        let local = LocalRelay::default();
        assert!(!local.ring_if_leading(), "never led");
        drop(local.lead());
        assert!(!local.ring_if_leading(), "led, then lost the leadership");
        assert!(!is_rung(&local).await);
    }
}
