//! The `failures` projection: why payments fail, per merchant x provider x reason x currency,
//! with how often, how much money was at stake, and when it was first and last seen.
//!
//! Reasons:
//! - `PaymentDeclined`: its `reason`, under the provider that declined;
//! - `PaymentFailed`: its `reason` (`provider_unavailable`, `provider_rejected`...), under the
//!   provider holding the payment (the initial choice when no provider took it);
//! - `ProviderAttemptFailed`: `provider_error:<kind>` (`timeout`, `connection`,
//!   `server_error`, `rejected`) under the provider that failed, even when another provider
//!   then took the payment;
//! - `PaymentExpired`: `expired`, under the provider holding the payment.
//!
//! `amount` adds up the payment's amount once per failure. Counts and sums are additions and
//! `first_seen`/`last_seen`/`last_payment_id` are a min and a max (ties broken by global
//! position), so the rows do not depend on how different payments' events interleave.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::{PaymentEvent, ProviderFailureKind, PublishedEvent};
use rust_decimal::Decimal;
use sqlx::{PgConnection, PgPool, Row};
use uuid::Uuid;

use crate::{Projection, ProjectionError};

pub const NAME: &str = "failures";

/// The reason recorded for a `PaymentExpired`.
pub const REASON_EXPIRED: &str = "expired";

pub struct FailuresProjection;

#[async_trait]
impl Projection for FailuresProjection {
    fn name(&self) -> &'static str {
        NAME
    }

    fn tables(&self) -> &'static [&'static str] {
        &["payment_failures", "failures_payments"]
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        event: &PublishedEvent,
    ) -> Result<(), ProjectionError> {
        let payload = event.payment_event().map_err(|e| ProjectionError::Poison {
            message_id: event.message_id(),
            reason: format!("payload does not decode: {e}"),
        })?;
        let id = Uuid::parse_str(&event.aggregate_id).map_err(|e| ProjectionError::Poison {
            message_id: event.message_id(),
            reason: format!("aggregate id is not a uuid: {e}"),
        })?;
        apply_failures(conn, id, event, &payload).await
    }
}

/// `provider_error:<kind>`, the reason of a `ProviderAttemptFailed`.
pub fn provider_error_reason(kind: ProviderFailureKind) -> String {
    let kind = match kind {
        ProviderFailureKind::Timeout => "timeout",
        ProviderFailureKind::Connection => "connection",
        ProviderFailureKind::ServerError => "server_error",
        ProviderFailureKind::Rejected => "rejected",
    };
    format!("provider_error:{kind}")
}

async fn apply_failures(
    conn: &mut PgConnection,
    id: Uuid,
    event: &PublishedEvent,
    payload: &PaymentEvent,
) -> Result<(), ProjectionError> {
    // (provider named by the event, if it names the one to count under; reason)
    let (provider, reason): (Option<&str>, String) = match payload {
        PaymentEvent::PaymentInitiated {
            merchant_id,
            amount,
            provider,
            ..
        } => {
            sqlx::query(
                "INSERT INTO failures_payments (payment_id, merchant_id, provider, amount, currency)
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(id)
            .bind(merchant_id.as_str())
            .bind(provider)
            .bind(amount.amount())
            .bind(amount.currency().code())
            .execute(&mut *conn)
            .await?;
            return Ok(());
        }
        PaymentEvent::ProviderTransactionCreated { provider, .. } => {
            let updated =
                sqlx::query("UPDATE failures_payments SET provider = $2 WHERE payment_id = $1")
                    .bind(id)
                    .bind(provider)
                    .execute(&mut *conn)
                    .await?;
            if updated.rows_affected() != 1 {
                return Err(unknown_payment(event));
            }
            return Ok(());
        }
        PaymentEvent::ProviderAttemptFailed { provider, kind, .. } => {
            (Some(provider.as_str()), provider_error_reason(*kind))
        }
        PaymentEvent::PaymentDeclined {
            provider, reason, ..
        } => (Some(provider.as_str()), reason.clone()),
        PaymentEvent::PaymentFailed { reason, .. } => (None, reason.clone()),
        PaymentEvent::PaymentExpired { .. } => (None, REASON_EXPIRED.to_owned()),
        // Successes, and what happens to the money after a success: not a payment failure
        // (a refused refund is a refund's failure, not the payment's).
        PaymentEvent::PaymentAuthorized { .. }
        | PaymentEvent::PaymentApproved { .. }
        | PaymentEvent::PaymentVoided { .. }
        | PaymentEvent::RefundRequested { .. }
        | PaymentEvent::PaymentRefunded { .. }
        | PaymentEvent::RefundFailed { .. } => return Ok(()),
    };
    let row = sqlx::query(
        "SELECT merchant_id, provider, amount, currency FROM failures_payments
          WHERE payment_id = $1",
    )
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| unknown_payment(event))?;
    let merchant_id: String = row.try_get("merchant_id")?;
    let holder: String = row.try_get("provider")?;
    let amount: Decimal = row.try_get("amount")?;
    let currency: String = row.try_get("currency")?;
    sqlx::query(
        "INSERT INTO payment_failures AS f
            (merchant_id, provider, reason, currency, count, amount, first_seen, last_seen,
             last_payment_id, last_global_position)
         VALUES ($1, $2, $3, $4, 1, $5, $6, $6, $7, $8)
         ON CONFLICT (merchant_id, provider, reason, currency) DO UPDATE SET
             count = f.count + 1,
             amount = f.amount + EXCLUDED.amount,
             first_seen = LEAST(f.first_seen, EXCLUDED.first_seen),
             last_seen = GREATEST(f.last_seen, EXCLUDED.last_seen),
             last_payment_id = CASE
                 WHEN (EXCLUDED.last_seen, EXCLUDED.last_global_position)
                      > (f.last_seen, f.last_global_position)
                 THEN EXCLUDED.last_payment_id ELSE f.last_payment_id END,
             last_global_position = CASE
                 WHEN (EXCLUDED.last_seen, EXCLUDED.last_global_position)
                      > (f.last_seen, f.last_global_position)
                 THEN EXCLUDED.last_global_position ELSE f.last_global_position END",
    )
    .bind(&merchant_id)
    .bind(provider.unwrap_or(&holder))
    .bind(&reason)
    .bind(&currency)
    .bind(amount)
    .bind(payload.at())
    .bind(id)
    .bind(event.global_position)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

fn unknown_payment(event: &PublishedEvent) -> ProjectionError {
    ProjectionError::Poison {
        message_id: event.message_id(),
        reason: "no PaymentInitiated was applied for this payment".into(),
    }
}

/// A row of `payment_failures`.
#[derive(Debug, Clone, PartialEq)]
pub struct FailureRow {
    pub merchant_id: String,
    pub provider: String,
    pub reason: String,
    /// ISO 4217 code of `amount`.
    pub currency: String,
    /// Failures with this key since the beginning of the stream (not only within from/to).
    pub count: i64,
    /// Sum of the payments' amounts, once per failure, in major units of `currency`.
    pub amount: Decimal,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    pub last_payment_id: Uuid,
}

/// Failure reasons, most frequent first (then most recently seen, then by key).
///
/// `merchant` scopes to one merchant (`None` for analysts). `from` (inclusive) and `to`
/// (exclusive) filter on `last_seen`: a row is returned when its most recent failure falls in
/// `[from, to)` (so a reason that failed again after `to` is left out). The counts and
/// amounts stay totals over the whole stream, not over the window: per-day counts of
/// declines, failures and expiries are in `analytics_daily`. `provider` matches exactly. At
/// most `limit` rows.
#[tracing::instrument(skip(pool))]
pub async fn failures(
    pool: &PgPool,
    merchant: Option<&str>,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    provider: Option<&str>,
    limit: i64,
) -> Result<Vec<FailureRow>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT merchant_id, provider, reason, currency, count, amount, first_seen, last_seen,
                last_payment_id
           FROM payment_failures
          WHERE ($1::text IS NULL OR merchant_id = $1)
            AND ($2::timestamptz IS NULL OR last_seen >= $2)
            AND ($3::timestamptz IS NULL OR last_seen < $3)
            AND ($4::text IS NULL OR provider = $4)
          ORDER BY count DESC, last_seen DESC, merchant_id, provider, reason, currency
          LIMIT $5",
    )
    .bind(merchant)
    .bind(from)
    .bind(to)
    .bind(provider)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(FailureRow {
                merchant_id: row.try_get("merchant_id")?,
                provider: row.try_get("provider")?,
                reason: row.try_get("reason")?,
                currency: row.try_get("currency")?,
                count: row.try_get("count")?,
                amount: row.try_get("amount")?,
                first_seen: row.try_get("first_seen")?,
                last_seen: row.try_get("last_seen")?,
                last_payment_id: row.try_get("last_payment_id")?,
            })
        })
        .collect()
}
