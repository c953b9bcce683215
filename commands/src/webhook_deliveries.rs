//! The append-only log of every webhook that reached payledger, verified or not, so operators
//! can see forged, stale or broken deliveries next to the good ones.

use sqlx::PgPool;

/// Stored bodies are cut here (the endpoint already refuses larger ones).
pub const PAYLOAD_BYTES_MAX: usize = 64 * 1024;

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
    let kept = &payload[..payload.len().min(PAYLOAD_BYTES_MAX)];
    // The log is written after the notification's own (flushed) commit and is best effort
    // (a failed write does not fail the webhook), so its commit does not wait for the WAL
    // flush: `set_config(.., true)` applies to this statement's own transaction, in one
    // round trip. A crash may lose the last few hundred milliseconds of log rows, never an
    // event.
    sqlx::query(
        "INSERT INTO webhook_deliveries (provider, signature_valid, peer, result, payload)
         SELECT $1, $2, $3, $4, $5 FROM set_config('synchronous_commit', 'off', true)",
    )
    .bind(provider)
    .bind(signature_valid)
    .bind(peer)
    .bind(result.as_str())
    .bind(kept)
    .execute(pool)
    .await?;
    Ok(())
}
