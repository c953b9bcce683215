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
//! - `PaymentExpired`: `expired`, under the provider holding the payment;
//! - `ProviderOutcomeUnknown`: `provider_outcome_unknown:<kind>` under the provider asked;
//! - `ProviderTransactionOrphaned`: `orphaned:<status>` under the orphan's provider;
//! - `PaymentNeedsReview`: `needs_review:<intent>`, under the provider holding the payment.
//!
//! `amount` adds up the payment's amount once per failure. Counts and sums are additions and
//! `first_seen`/`last_seen`/`last_payment_id` are a min and a max (ties broken by global
//! position), so the rows do not depend on how different payments' events interleave.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::{PaymentEvent, ProviderFailureKind};
use rust_decimal::Decimal;
use sqlx::{PgConnection, PgPool, Row};
use uuid::Uuid;

use crate::{Decoded, Projection, ProjectionError};

pub const NAME: &str = "failures";

/// The reason recorded for a `PaymentExpired`.
pub const REASON_EXPIRED: &str = "expired";
/// `provider_outcome_unknown:<kind>`: a provider call whose answer was lost.
pub const REASON_OUTCOME_UNKNOWN: &str = "provider_outcome_unknown";
/// `orphaned:<status>`: a provider transaction the payment does not hold.
pub const REASON_ORPHANED: &str = "orphaned";
/// `needs_review:<intent>`: an intent unresolved past the review horizon.
pub const REASON_NEEDS_REVIEW: &str = "needs_review";

pub struct FailuresProjection;

#[async_trait]
impl Projection for FailuresProjection {
    fn name(&self) -> &'static str {
        NAME
    }

    fn tables(&self) -> &'static [&'static str] {
        &["payment_failures", "failures_payments"]
    }

    /// Folds the batch in memory: contexts read once and written once, failures summed per
    /// key and each key upserted once.
    async fn apply_decoded(
        &self,
        conn: &mut PgConnection,
        decoded: &[Decoded<'_>],
    ) -> Result<(), ProjectionError> {
        let ids = crate::payment_ids(decoded);
        let mut contexts = load_contexts(conn, &ids).await?;
        let mut dirty: BTreeSet<Uuid> = BTreeSet::new();
        let mut failures: BTreeMap<FailureKey, Failures> = BTreeMap::new();
        for (id, event, payload) in decoded {
            // (provider named by the event, if it names the one to count under; reason)
            let (provider, reason): (Option<&str>, String) = match payload {
                PaymentEvent::PaymentInitiated {
                    merchant_id,
                    amount,
                    provider,
                    ..
                } => {
                    if contexts.contains_key(id) {
                        return Err(crate::poison(event, "the payment was initiated already"));
                    }
                    contexts.insert(
                        *id,
                        Context {
                            merchant_id: merchant_id.as_str().to_owned(),
                            provider: provider.clone(),
                            amount: amount.amount(),
                            currency: amount.currency().code().to_owned(),
                        },
                    );
                    dirty.insert(*id);
                    continue;
                }
                PaymentEvent::ProviderTransactionCreated { provider, .. }
                | PaymentEvent::ProviderAttemptStarted { provider, .. } => {
                    let context = contexts
                        .get_mut(id)
                        .ok_or_else(|| crate::poison(event, crate::UNKNOWN_PAYMENT))?;
                    context.provider = provider.clone();
                    dirty.insert(*id);
                    continue;
                }
                PaymentEvent::ProviderAttemptFailed { provider, kind, .. } => {
                    (Some(provider.as_str()), provider_error_reason(*kind))
                }
                PaymentEvent::PaymentDeclined {
                    provider, reason, ..
                } => (Some(provider.as_str()), reason.clone()),
                PaymentEvent::PaymentFailed { reason, .. } => (None, reason.clone()),
                PaymentEvent::PaymentExpired { .. } => (None, REASON_EXPIRED.to_owned()),
                PaymentEvent::ProviderOutcomeUnknown { provider, kind, .. } => (
                    Some(provider.as_str()),
                    format!("{REASON_OUTCOME_UNKNOWN}:{}", kind.as_str()),
                ),
                PaymentEvent::ProviderTransactionOrphaned {
                    provider, status, ..
                } => (
                    Some(provider.as_str()),
                    format!("{REASON_ORPHANED}:{}", status.to_ascii_lowercase()),
                ),
                PaymentEvent::PaymentNeedsReview { intent, .. } => {
                    (None, format!("{REASON_NEEDS_REVIEW}:{intent}"))
                }
                // Successes, and what happens to the money after a success: not a payment
                // failure (a refused refund is a refund's failure, not the payment's).
                PaymentEvent::PaymentAuthorized { .. }
                | PaymentEvent::PaymentApproved { .. }
                | PaymentEvent::PaymentVoided { .. }
                | PaymentEvent::RefundRequested { .. }
                | PaymentEvent::PaymentRefunded { .. }
                | PaymentEvent::RefundFailed { .. }
                | PaymentEvent::CaptureRequested { .. }
                | PaymentEvent::CaptureFailed { .. }
                | PaymentEvent::VoidRequested { .. }
                | PaymentEvent::VoidFailed { .. }
                | PaymentEvent::OrphanCompensated { .. } => continue,
            };
            let context = contexts
                .get(id)
                .ok_or_else(|| crate::poison(event, crate::UNKNOWN_PAYMENT))?;
            let key = FailureKey {
                merchant_id: context.merchant_id.clone(),
                provider: provider.unwrap_or(&context.provider).to_owned(),
                reason,
                currency: context.currency.clone(),
            };
            let seen = (payload.at(), event.global_position, *id);
            failures
                .entry(key)
                .and_modify(|f| {
                    f.count += 1;
                    f.amount += context.amount;
                    f.first_seen = f.first_seen.min(seen.0);
                    f.last = f.last.max(seen);
                })
                .or_insert(Failures {
                    count: 1,
                    amount: context.amount,
                    first_seen: seen.0,
                    last: seen,
                });
        }
        store_contexts(
            conn,
            dirty.iter().filter_map(|id| contexts.get_key_value(id)),
        )
        .await?;
        add_failures(conn, &failures).await?;
        Ok(())
    }
}

/// `provider_error:<kind>`, the reason of a `ProviderAttemptFailed`.
pub fn provider_error_reason(kind: ProviderFailureKind) -> String {
    format!("provider_error:{}", kind.as_str())
}

/// The payment as this projection remembers it (a row of `failures_payments`).
struct Context {
    merchant_id: String,
    provider: String,
    amount: Decimal,
    currency: String,
}

/// The key of a row of `payment_failures`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct FailureKey {
    merchant_id: String,
    provider: String,
    reason: String,
    currency: String,
}

/// What a batch adds to one row of `payment_failures`.
struct Failures {
    count: i64,
    amount: Decimal,
    first_seen: DateTime<Utc>,
    /// The latest failure: (when, global position, payment).
    last: (DateTime<Utc>, i64, Uuid),
}

async fn load_contexts(
    conn: &mut PgConnection,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, Context>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT t.* FROM UNNEST($1::uuid[]) AS k(id) CROSS JOIN LATERAL (
             SELECT payment_id, merchant_id, provider, amount, currency FROM failures_payments
              WHERE payment_id = k.id LIMIT 1) AS t",
    )
    .bind(ids)
    .fetch_all(&mut *conn)
    .await?;
    let mut contexts = HashMap::with_capacity(rows.len());
    for row in &rows {
        contexts.insert(
            row.try_get("payment_id")?,
            Context {
                merchant_id: row.try_get("merchant_id")?,
                provider: row.try_get("provider")?,
                amount: row.try_get("amount")?,
                currency: row.try_get("currency")?,
            },
        );
    }
    Ok(contexts)
}

async fn store_contexts<'a>(
    conn: &mut PgConnection,
    contexts: impl Iterator<Item = (&'a Uuid, &'a Context)>,
) -> Result<(), sqlx::Error> {
    let contexts: Vec<(&Uuid, &Context)> = contexts.collect();
    if contexts.is_empty() {
        return Ok(());
    }
    let text = |f: fn(&Context) -> &str| contexts.iter().map(|(_, c)| f(c)).collect::<Vec<_>>();
    sqlx::query(
        "INSERT INTO failures_payments AS p (payment_id, merchant_id, provider, amount, currency)
         SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::numeric[], $5::text[])
         ON CONFLICT (payment_id) DO UPDATE SET provider = EXCLUDED.provider",
    )
    .bind(contexts.iter().map(|(id, _)| **id).collect::<Vec<_>>())
    .bind(text(|c| &c.merchant_id))
    .bind(text(|c| &c.provider))
    .bind(contexts.iter().map(|(_, c)| c.amount).collect::<Vec<_>>())
    .bind(text(|c| &c.currency))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Adds the batch's failures to their rows, one upsert in key order.
async fn add_failures(
    conn: &mut PgConnection,
    failures: &BTreeMap<FailureKey, Failures>,
) -> Result<(), sqlx::Error> {
    if failures.is_empty() {
        return Ok(());
    }
    let key = |f: fn(&FailureKey) -> &str| failures.keys().map(f).collect::<Vec<_>>();
    sqlx::query(
        "INSERT INTO payment_failures AS f
            (merchant_id, provider, reason, currency, count, amount, first_seen, last_seen,
             last_payment_id, last_global_position)
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[],
                              $6::numeric[], $7::timestamptz[], $8::timestamptz[], $9::uuid[],
                              $10::bigint[])
         ON CONFLICT (merchant_id, provider, reason, currency) DO UPDATE SET
             count = f.count + EXCLUDED.count,
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
    .bind(key(|k| &k.merchant_id))
    .bind(key(|k| &k.provider))
    .bind(key(|k| &k.reason))
    .bind(key(|k| &k.currency))
    .bind(failures.values().map(|f| f.count).collect::<Vec<_>>())
    .bind(failures.values().map(|f| f.amount).collect::<Vec<_>>())
    .bind(failures.values().map(|f| f.first_seen).collect::<Vec<_>>())
    .bind(failures.values().map(|f| f.last.0).collect::<Vec<_>>())
    .bind(failures.values().map(|f| f.last.2).collect::<Vec<_>>())
    .bind(failures.values().map(|f| f.last.1).collect::<Vec<_>>())
    .execute(&mut *conn)
    .await?;
    Ok(())
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
