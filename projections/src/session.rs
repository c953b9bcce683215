//! A consumer's own database session, opened on first use and again after a failure that
//! may have broken it. Not the pool's: sqlx pings a pooled connection every time it goes
//! back, one more round trip per batch, hundreds of times a second across the projectors.

use std::time::Duration;

use sqlx::{ConnectOptions, PgConnection, PgPool};

use crate::ProjectionError;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

pub struct Session {
    pool: PgPool,
    /// `application_name`: tells operators (and `pg_stat_activity`) whose session it is.
    name: String,
    conn: Option<PgConnection>,
}

impl Session {
    /// Takes its connection settings from `pool`; connects lazily.
    pub fn new(pool: PgPool, name: String) -> Self {
        Self {
            pool,
            name,
            conn: None,
        }
    }

    pub async fn conn(&mut self) -> Result<&mut PgConnection, sqlx::Error> {
        let conn = match self.conn.take() {
            Some(conn) => conn,
            None => {
                let options = self
                    .pool
                    .connect_options()
                    .as_ref()
                    .clone()
                    .application_name(&self.name);
                tokio::time::timeout(CONNECT_TIMEOUT, options.connect())
                    .await
                    .map_err(|_| sqlx::Error::PoolTimedOut)??
            }
        };
        Ok(self.conn.insert(conn))
    }

    /// After `error`: keeps the session when PostgreSQL itself answered (a serialization
    /// failure, a constraint: the transaction was rolled back, the session is fine), drops
    /// it otherwise (I/O, protocol, timeout) so the next use reconnects.
    pub fn after_error(&mut self, error: &ProjectionError) {
        let answered = matches!(
            error,
            ProjectionError::Poison { .. } | ProjectionError::Database(sqlx::Error::Database(_))
        );
        if !answered {
            self.conn = None;
        }
    }
}
