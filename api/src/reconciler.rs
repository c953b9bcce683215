//! The reconciler: payments stuck `PENDING` longer than a configured age are synced with
//! their provider, the answer to webhooks that were lost or never sent.

use std::sync::Arc;
use std::time::Duration;

use commands::payments::PaymentService;
use domain::PaymentId;
use sqlx::PgPool;
use tokio::sync::watch;

/// Payments synced per round: a bound on how long one round holds providers busy.
const BATCH_MAX: i64 = 100;

#[derive(Debug, Clone, Copy)]
pub struct ReconcilerConfig {
    pub pending_after: Duration,
    pub interval: Duration,
}

/// Finds the stuck payments from the status projection (a hint: the sync itself reads the
/// event stream and the provider).
async fn stuck(pool: &PgPool, after: Duration) -> Result<Vec<uuid::Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT payment_id FROM payment_status
          WHERE status = 'PENDING' AND provider_transaction_id IS NOT NULL
            AND updated_at < now() - make_interval(secs => $1)
          ORDER BY updated_at
          LIMIT $2",
    )
    .bind(after.as_secs_f64())
    .bind(BATCH_MAX)
    .fetch_all(pool)
    .await
}

/// One round; returns how many payments it synced.
pub async fn reconcile_once(pool: &PgPool, service: &PaymentService, after: Duration) -> usize {
    let ids = match stuck(pool, after).await {
        Ok(ids) => ids,
        Err(error) => {
            tracing::warn!(%error, "reconciler cannot read pending payments");
            return 0;
        }
    };
    let mut synced = 0;
    for id in ids {
        match service.sync(PaymentId::from_uuid(id), None).await {
            Ok(_) => synced += 1,
            Err(error) => tracing::warn!(payment = %id, %error, "reconciler sync failed"),
        }
    }
    synced
}

pub async fn run(
    pool: PgPool,
    service: Arc<PaymentService>,
    config: ReconcilerConfig,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(config.interval) => {}
            _ = shutdown.changed() => return,
        }
        if *shutdown.borrow() {
            return;
        }
        let synced = reconcile_once(&pool, &service, config.pending_after).await;
        if synced > 0 {
            tracing::info!(synced, "reconciler synced pending payments");
        }
    }
}
