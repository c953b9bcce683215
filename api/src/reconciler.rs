//! The reconciler: every payment with an intent and no outcome (an attempt whose answer was
//! lost, a pending payment, a capture, void or refund asked and not answered, an orphan
//! still holding money) older than a configured age is resolved with its provider; one still
//! open past the review horizon is flagged `PaymentNeedsReview`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use commands::payments::PaymentService;
use domain::PaymentId;
use sqlx::PgPool;
use tokio::sync::watch;

/// Payments resolved per round: a bound on how long one round holds providers busy.
const BATCH_MAX: usize = 100;
/// Candidates read per round, so payments backing off do not hide the ones that are due.
const CANDIDATES_MAX: i64 = 1_000;
/// Payments remembered with a backoff; beyond it the oldest entries are forgotten.
const BACKOFF_ENTRIES_MAX: usize = 100_000;
/// The longest a payment waits between two tries.
const BACKOFF_MAX: Duration = Duration::from_secs(3_600);

#[derive(Debug, Clone, Copy)]
pub struct ReconcilerConfig {
    pub pending_after: Duration,
    pub interval: Duration,
    pub review_after: Duration,
}

/// Payments with an open intent, oldest first, from the status projection (a hint: the
/// resolver itself reads the event stream and the provider).
async fn open_intents(pool: &PgPool, after: Duration) -> Result<Vec<uuid::Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT payment_id FROM payment_status
          WHERE (status = 'PENDING' OR provider_outcome IS NOT NULL
                 OR pending_action IS NOT NULL OR refund_pending_amount > 0
                 OR orphans_open > 0)
            AND updated_at < now() - make_interval(secs => $1)
          ORDER BY updated_at
          LIMIT $2",
    )
    .bind(after.as_secs_f64())
    .bind(CANDIDATES_MAX)
    .fetch_all(pool)
    .await
}

/// When each payment that did not resolve may be tried again (exponential, bounded).
#[derive(Default)]
pub struct Backoff {
    next: HashMap<uuid::Uuid, (u32, Instant)>,
}

impl Backoff {
    fn due(&self, id: &uuid::Uuid, now: Instant) -> bool {
        self.next.get(id).is_none_or(|(_, at)| *at <= now)
    }

    fn failed(&mut self, id: uuid::Uuid, interval: Duration, now: Instant) {
        if self.next.len() >= BACKOFF_ENTRIES_MAX {
            self.next.retain(|_, (_, at)| *at > now);
            if self.next.len() >= BACKOFF_ENTRIES_MAX {
                self.next.clear();
            }
        }
        let tries = self.next.get(&id).map_or(0, |(tries, _)| *tries) + 1;
        let wait = interval.saturating_mul(1 << tries.min(10)).min(BACKOFF_MAX);
        self.next.insert(id, (tries, now + wait));
    }

    fn resolved(&mut self, id: &uuid::Uuid) {
        self.next.remove(id);
    }
}

/// One round; returns how many payments it resolved without error.
pub async fn reconcile_once(
    pool: &PgPool,
    service: &PaymentService,
    config: &ReconcilerConfig,
    backoff: &mut Backoff,
) -> usize {
    let ids = match open_intents(pool, config.pending_after).await {
        Ok(ids) => ids,
        Err(error) => {
            tracing::warn!(%error, "reconciler cannot read open intents");
            return 0;
        }
    };
    let now = Instant::now();
    let mut resolved = 0;
    let due: Vec<uuid::Uuid> = ids
        .into_iter()
        .filter(|id| backoff.due(id, now))
        .take(BATCH_MAX)
        .collect();
    for id in due {
        match service
            .resolve(PaymentId::from_uuid(id), config.review_after)
            .await
        {
            Ok(executed) if !executed.payment.has_open_intent() => {
                backoff.resolved(&id);
                resolved += 1;
            }
            Ok(_) => backoff.failed(id, config.interval, now),
            Err(error) => {
                tracing::warn!(payment = %id, %error, "reconciler could not resolve");
                backoff.failed(id, config.interval, now);
            }
        }
    }
    resolved
}

pub async fn run(
    pool: PgPool,
    service: Arc<PaymentService>,
    config: ReconcilerConfig,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut backoff = Backoff::default();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(config.interval) => {}
            _ = shutdown.changed() => return,
        }
        if *shutdown.borrow() {
            return;
        }
        let resolved = reconcile_once(&pool, &service, &config, &mut backoff).await;
        if resolved > 0 {
            tracing::info!(resolved, "reconciler resolved open intents");
        }
    }
}
