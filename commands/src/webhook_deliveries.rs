//! The append-only log of every webhook that reached payledger, verified or not, so operators
//! can see forged, stale or broken deliveries next to the good ones. A delivery that did not
//! verify keeps its digest, size and first bytes only; a verified one its body, until
//! [`apply_retention`] erases it (the body holds personal data) and later deletes the row.

use std::time::Duration;

use sha2::{Digest, Sha256};
use sqlx::PgPool;

/// Stored bodies are cut here (the endpoint already refuses larger ones).
pub const PAYLOAD_BYTES_MAX: usize = 64 * 1024;
/// What is kept of a body that did not verify: enough to recognise it.
pub const UNVERIFIED_PREFIX_BYTES: usize = 256;
/// The shortest retentions the database allows (its trigger refuses sooner).
pub const ERASE_AFTER_MIN: Duration = Duration::from_secs(24 * 3_600);
pub const DELETE_AFTER_MIN: Duration = Duration::from_secs(7 * 24 * 3_600);
/// Rows erased or deleted per statement, and statements per run at most.
const RETENTION_BATCH_ROWS: i64 = 10_000;
const RETENTION_BATCHES_MAX: usize = 1_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryResult {
    Recorded,
    Duplicate,
    Ignored,
    Refused,
    Failed,
}

impl DeliveryResult {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryResult::Recorded => "recorded",
            DeliveryResult::Duplicate => "duplicate",
            DeliveryResult::Ignored => "ignored",
            DeliveryResult::Refused => "refused",
            DeliveryResult::Failed => "failed",
        }
    }
}

#[tracing::instrument(skip(pool, payload))]
pub async fn record(
    pool: &PgPool,
    provider: &str,
    signature_valid: bool,
    peer: Option<String>,
    result: DeliveryResult,
    payload: &[u8],
) -> Result<(), sqlx::Error> {
    let limit = if signature_valid {
        PAYLOAD_BYTES_MAX
    } else {
        UNVERIFIED_PREFIX_BYTES
    };
    let kept = &payload[..payload.len().min(limit)];
    let digest = Sha256::digest(payload).to_vec();
    let bytes = i32::try_from(payload.len()).unwrap_or(i32::MAX);
    // The log is written after the notification's own (flushed) commit and is best effort
    // (a failed write does not fail the webhook), so its commit does not wait for the WAL
    // flush: `set_config(.., true)` applies to this statement's own transaction, in one
    // round trip. A crash may lose the last few hundred milliseconds of log rows, never an
    // event.
    sqlx::query(
        "INSERT INTO webhook_deliveries (provider, signature_valid, peer, result, payload,
                                         payload_sha256, payload_bytes)
         SELECT $1, $2, $3, $4, $5, $6, $7 FROM set_config('synchronous_commit', 'off', true)",
    )
    .bind(provider)
    .bind(signature_valid)
    .bind(peer)
    .bind(result.as_str())
    .bind(kept)
    .bind(digest)
    .bind(bytes)
    .execute(pool)
    .await?;
    Ok(())
}

/// What one retention run did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct RetentionReport {
    pub bodies_erased: u64,
    pub rows_deleted: u64,
}

/// Erases the bodies of deliveries older than `erase_after` (their digest and size stay) and
/// deletes the rows older than `delete_after`, in bounded batches. Run it daily; as the
/// owner or a member of `payledger_retention`. `progress` hears each batch.
pub async fn apply_retention(
    pool: &PgPool,
    erase_after: Duration,
    delete_after: Duration,
    mut progress: impl FnMut(&RetentionReport),
) -> Result<RetentionReport, sqlx::Error> {
    let seconds = |d: Duration| d.as_secs_f64();
    let mut report = RetentionReport::default();
    for _ in 0..RETENTION_BATCHES_MAX {
        let erased = sqlx::query(
            "UPDATE webhook_deliveries SET payload = NULL, erased_at = now()
              WHERE id IN (SELECT id FROM webhook_deliveries
                            WHERE payload IS NOT NULL
                              AND received_at < now() - make_interval(secs => $1)
                            ORDER BY id LIMIT $2)",
        )
        .bind(seconds(erase_after.max(ERASE_AFTER_MIN)))
        .bind(RETENTION_BATCH_ROWS)
        .execute(pool)
        .await?
        .rows_affected();
        let deleted = sqlx::query(
            "DELETE FROM webhook_deliveries
              WHERE id IN (SELECT id FROM webhook_deliveries
                            WHERE received_at < now() - make_interval(secs => $1)
                            ORDER BY id LIMIT $2)",
        )
        .bind(seconds(delete_after.max(DELETE_AFTER_MIN)))
        .bind(RETENTION_BATCH_ROWS)
        .execute(pool)
        .await?
        .rows_affected();
        report.bodies_erased += erased;
        report.rows_deleted += deleted;
        progress(&report);
        if erased == 0 && deleted == 0 {
            break;
        }
    }
    Ok(report)
}
