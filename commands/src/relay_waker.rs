//! Wakes the relay after an append, without a trigger on `events`.
//!
//! A transaction that NOTIFYs holds PostgreSQL's global notify lock from its commit until its
//! WAL is flushed, so notifying from every appending transaction serialises their commits
//! (no group commit). Instead each append only marks a wake-up as pending, and one task per
//! process sends a single `pg_notify` from its own transaction for however many appends
//! happened meanwhile: at most one NOTIFY in flight, whatever the command rate.

use sqlx::{ConnectOptions, PgConnection};
use tokio::sync::mpsc;

use crate::relay::NOTIFY_CHANNEL;

/// Pause after a failed NOTIFY (the database is away; the relay polls meanwhile).
const RETRY_DELAY_MS: u64 = 200;
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct RelayWaker {
    /// Capacity one: a full channel means a wake-up is already pending.
    pending: mpsc::Sender<()>,
}

impl RelayWaker {
    /// Starts the notifying task; it ends when the last `RelayWaker` clone is dropped.
    pub fn spawn(pool: sqlx::PgPool) -> Self {
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
        Self { pending }
    }

    /// Events were committed: make sure a wake-up follows (coalesced with one pending).
    pub fn wake(&self) {
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
