//! The `analytics` projection: per merchant x UTC day x provider x payment method type x
//! currency, how many payments were initiated and how they ended, how much was captured,
//! refunded and charged in fees, and how long approval took.
//!
//! Attribution: each event counts on the UTC day of its own `at`, under the provider holding
//! the payment at that event: the provider chosen at initiation until a
//! `ProviderTransactionCreated` names the one that took it (after a fallback, another one).
//! So a payment initiated at 23:59:50 and approved at 00:00:10 counts as initiated on one day
//! and approved on the next, and a payment that fell back from `wompi` to `payu` counts as
//! initiated under `wompi` and approved under `payu`.
//!
//! Every change is an addition to counters, or an insert keyed by payment, so the tables do
//! not depend on how the events of different payments interleave: the live consumer and a
//! replay in global order produce the same rows.

use async_trait::async_trait;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, NaiveDate, Utc};
use domain::PaymentEvent;
use rust_decimal::Decimal;
use sqlx::{PgConnection, PgPool, Row};
use uuid::Uuid;

use crate::{Decoded, Projection, ProjectionError};

pub const NAME: &str = "analytics";

pub struct AnalyticsProjection;

#[async_trait]
impl Projection for AnalyticsProjection {
    fn name(&self) -> &'static str {
        NAME
    }

    fn tables(&self) -> &'static [&'static str] {
        &[
            "analytics_daily",
            "analytics_approval_times",
            "analytics_payments",
        ]
    }

    /// Folds the batch in memory: the payments' contexts are read once and written once,
    /// the day rows' additions are summed per key and each key is upserted once.
    async fn apply_decoded(
        &self,
        conn: &mut PgConnection,
        decoded: &[Decoded<'_>],
    ) -> Result<(), ProjectionError> {
        let ids = crate::payment_ids(decoded);
        let mut contexts = load_contexts(conn, &ids).await?;
        let mut dirty: BTreeSet<Uuid> = BTreeSet::new();
        let mut days: BTreeMap<DayKey, Delta> = BTreeMap::new();
        let mut approvals: BTreeMap<Uuid, Approval> = BTreeMap::new();
        for (id, event, payload) in decoded {
            let at = payload.at();
            let delta = match payload {
                PaymentEvent::PaymentInitiated {
                    merchant_id,
                    amount,
                    payment_method,
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
                            method: payment_method.as_str().to_owned(),
                            currency: amount.currency().code().to_owned(),
                            initiated_at: at,
                        },
                    );
                    dirty.insert(*id);
                    Delta {
                        initiated: 1,
                        ..Delta::default()
                    }
                }
                PaymentEvent::ProviderTransactionCreated { provider, .. }
                | PaymentEvent::ProviderAttemptStarted { provider, .. } => {
                    // From here on the payment is this provider's: later events count under it.
                    let context = contexts
                        .get_mut(id)
                        .ok_or_else(|| crate::poison(event, crate::UNKNOWN_PAYMENT))?;
                    context.provider = provider.clone();
                    dirty.insert(*id);
                    continue;
                }
                // Provider errors are the `failures` projection's; an authorization is neither
                // an approval nor a decision (the capture or void that follows is); refund
                // requests and refused refunds move no money.
                PaymentEvent::ProviderAttemptFailed { .. }
                | PaymentEvent::ProviderOutcomeUnknown { .. }
                | PaymentEvent::CaptureRequested { .. }
                | PaymentEvent::CaptureFailed { .. }
                | PaymentEvent::VoidRequested { .. }
                | PaymentEvent::VoidFailed { .. }
                | PaymentEvent::ProviderTransactionOrphaned { .. }
                | PaymentEvent::OrphanCompensated { .. }
                | PaymentEvent::PaymentNeedsReview { .. }
                | PaymentEvent::PaymentAuthorized { .. }
                | PaymentEvent::RefundRequested { .. }
                | PaymentEvent::RefundFailed { .. } => continue,
                PaymentEvent::PaymentApproved { amount, fee, .. } => Delta {
                    approved: 1,
                    approved_amount: amount.amount(),
                    fee_amount: fee.map(|f| f.amount()).unwrap_or_default(),
                    ..Delta::default()
                },
                PaymentEvent::PaymentDeclined { .. } => Delta {
                    declined: 1,
                    ..Delta::default()
                },
                PaymentEvent::PaymentFailed { .. } => Delta {
                    failed: 1,
                    ..Delta::default()
                },
                PaymentEvent::PaymentExpired { .. } => Delta {
                    expired: 1,
                    ..Delta::default()
                },
                PaymentEvent::PaymentVoided { .. } => Delta {
                    voided: 1,
                    ..Delta::default()
                },
                PaymentEvent::PaymentRefunded { amount, .. } => Delta {
                    refunded: 1,
                    refunded_amount: amount.amount(),
                    ..Delta::default()
                },
            };
            // Decisions also name a provider: by construction the one the payment's events
            // name last (`ProviderTransactionCreated`, or the initial choice): the context's.
            let context = contexts
                .get(id)
                .ok_or_else(|| crate::poison(event, crate::UNKNOWN_PAYMENT))?;
            let key = DayKey {
                merchant_id: context.merchant_id.clone(),
                day: at.date_naive(),
                provider: context.provider.clone(),
                method: context.method.clone(),
                currency: context.currency.clone(),
            };
            if matches!(payload, PaymentEvent::PaymentApproved { .. }) {
                // One approval per payment (automatic capture, or the merchant's one capture):
                // the first one counts, here and against the table.
                approvals.entry(*id).or_insert_with(|| Approval {
                    key: key.clone(),
                    initiated_at: context.initiated_at,
                    approved_at: at,
                });
            }
            days.entry(key).or_default().add(&delta);
        }
        store_contexts(
            conn,
            dirty.iter().filter_map(|id| contexts.get_key_value(id)),
        )
        .await?;
        add_days(conn, &days).await?;
        store_approvals(conn, &approvals).await?;
        Ok(())
    }
}

/// What one event adds to its day's row.
#[derive(Debug, Default)]
struct Delta {
    initiated: i64,
    approved: i64,
    declined: i64,
    failed: i64,
    expired: i64,
    voided: i64,
    refunded: i64,
    approved_amount: Decimal,
    refunded_amount: Decimal,
    fee_amount: Decimal,
}

impl Delta {
    fn add(&mut self, other: &Delta) {
        self.initiated += other.initiated;
        self.approved += other.approved;
        self.declined += other.declined;
        self.failed += other.failed;
        self.expired += other.expired;
        self.voided += other.voided;
        self.refunded += other.refunded;
        self.approved_amount += other.approved_amount;
        self.refunded_amount += other.refunded_amount;
        self.fee_amount += other.fee_amount;
    }
}

/// The key of a row of `analytics_daily`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct DayKey {
    merchant_id: String,
    day: NaiveDate,
    provider: String,
    method: String,
    currency: String,
}

/// The payment as this projection remembers it (a row of `analytics_payments`).
struct Context {
    merchant_id: String,
    provider: String,
    method: String,
    currency: String,
    initiated_at: DateTime<Utc>,
}

struct Approval {
    key: DayKey,
    initiated_at: DateTime<Utc>,
    approved_at: DateTime<Utc>,
}

async fn load_contexts(
    conn: &mut PgConnection,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, Context>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT t.* FROM UNNEST($1::uuid[]) AS k(id) CROSS JOIN LATERAL (
             SELECT payment_id, merchant_id, provider, payment_method_type, currency, initiated_at
               FROM analytics_payments WHERE payment_id = k.id LIMIT 1) AS t",
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
                method: row.try_get("payment_method_type")?,
                currency: row.try_get("currency")?,
                initiated_at: row.try_get("initiated_at")?,
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
        "INSERT INTO analytics_payments AS a
            (payment_id, merchant_id, provider, payment_method_type, currency, initiated_at)
         SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[],
                              $6::timestamptz[])
         ON CONFLICT (payment_id) DO UPDATE SET provider = EXCLUDED.provider",
    )
    .bind(contexts.iter().map(|(id, _)| **id).collect::<Vec<_>>())
    .bind(text(|c| &c.merchant_id))
    .bind(text(|c| &c.provider))
    .bind(text(|c| &c.method))
    .bind(text(|c| &c.currency))
    .bind(
        contexts
            .iter()
            .map(|(_, c)| c.initiated_at)
            .collect::<Vec<_>>(),
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Adds the summed deltas to their day rows, one upsert for all keys (in key order, so
/// concurrent consumers lock shared rows in the same order).
async fn add_days(
    conn: &mut PgConnection,
    days: &BTreeMap<DayKey, Delta>,
) -> Result<(), sqlx::Error> {
    if days.is_empty() {
        return Ok(());
    }
    let key = |f: fn(&DayKey) -> &str| days.keys().map(f).collect::<Vec<_>>();
    let count = |f: fn(&Delta) -> i64| days.values().map(f).collect::<Vec<_>>();
    let amount = |f: fn(&Delta) -> Decimal| days.values().map(f).collect::<Vec<_>>();
    sqlx::query(
        "INSERT INTO analytics_daily AS d
            (merchant_id, day, provider, payment_method_type, currency,
             initiated_count, approved_count, declined_count, failed_count, expired_count,
             voided_count, refunded_count, approved_amount, refunded_amount, fee_amount)
         SELECT * FROM UNNEST($1::text[], $2::date[], $3::text[], $4::text[], $5::text[],
                              $6::bigint[], $7::bigint[], $8::bigint[], $9::bigint[],
                              $10::bigint[], $11::bigint[], $12::bigint[], $13::numeric[],
                              $14::numeric[], $15::numeric[])
         ON CONFLICT (merchant_id, day, provider, payment_method_type, currency) DO UPDATE SET
             initiated_count = d.initiated_count + EXCLUDED.initiated_count,
             approved_count  = d.approved_count + EXCLUDED.approved_count,
             declined_count  = d.declined_count + EXCLUDED.declined_count,
             failed_count    = d.failed_count + EXCLUDED.failed_count,
             expired_count   = d.expired_count + EXCLUDED.expired_count,
             voided_count    = d.voided_count + EXCLUDED.voided_count,
             refunded_count  = d.refunded_count + EXCLUDED.refunded_count,
             approved_amount = d.approved_amount + EXCLUDED.approved_amount,
             refunded_amount = d.refunded_amount + EXCLUDED.refunded_amount,
             fee_amount      = d.fee_amount + EXCLUDED.fee_amount",
    )
    .bind(key(|k| &k.merchant_id))
    .bind(days.keys().map(|k| k.day).collect::<Vec<_>>())
    .bind(key(|k| &k.provider))
    .bind(key(|k| &k.method))
    .bind(key(|k| &k.currency))
    .bind(count(|d| d.initiated))
    .bind(count(|d| d.approved))
    .bind(count(|d| d.declined))
    .bind(count(|d| d.failed))
    .bind(count(|d| d.expired))
    .bind(count(|d| d.voided))
    .bind(count(|d| d.refunded))
    .bind(amount(|d| d.approved_amount))
    .bind(amount(|d| d.refunded_amount))
    .bind(amount(|d| d.fee_amount))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn store_approvals(
    conn: &mut PgConnection,
    approvals: &BTreeMap<Uuid, Approval>,
) -> Result<(), sqlx::Error> {
    if approvals.is_empty() {
        return Ok(());
    }
    let key = |f: fn(&DayKey) -> &str| approvals.values().map(|a| f(&a.key)).collect::<Vec<_>>();
    sqlx::query(
        "INSERT INTO analytics_approval_times
            (payment_id, merchant_id, day, provider, payment_method_type, currency, seconds)
         SELECT t.id, t.merchant_id, t.day, t.provider, t.method, t.currency,
                EXTRACT(EPOCH FROM (t.approved_at - t.initiated_at))
           FROM UNNEST($1::uuid[], $2::text[], $3::date[], $4::text[], $5::text[], $6::text[],
                       $7::timestamptz[], $8::timestamptz[])
                AS t(id, merchant_id, day, provider, method, currency, initiated_at, approved_at)
         ON CONFLICT (payment_id) DO NOTHING",
    )
    .bind(approvals.keys().copied().collect::<Vec<_>>())
    .bind(key(|k| &k.merchant_id))
    .bind(approvals.values().map(|a| a.key.day).collect::<Vec<_>>())
    .bind(key(|k| &k.provider))
    .bind(key(|k| &k.method))
    .bind(key(|k| &k.currency))
    .bind(
        approvals
            .values()
            .map(|a| a.initiated_at)
            .collect::<Vec<_>>(),
    )
    .bind(
        approvals
            .values()
            .map(|a| a.approved_at)
            .collect::<Vec<_>>(),
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// A row of `analytics_daily` with its approval-time percentiles.
#[derive(Debug, Clone, PartialEq)]
pub struct DailyRow {
    pub merchant_id: String,
    /// UTC date.
    pub day: NaiveDate,
    pub provider: String,
    pub payment_method_type: String,
    /// ISO 4217 code; every amount below is in it, in major units.
    pub currency: String,
    pub initiated_count: i64,
    pub approved_count: i64,
    pub declined_count: i64,
    pub failed_count: i64,
    pub expired_count: i64,
    pub voided_count: i64,
    /// `PaymentRefunded` events (a payment refunded twice counts twice).
    pub refunded_count: i64,
    /// Captured: automatic approvals plus merchant captures.
    pub approved_amount: Decimal,
    pub refunded_amount: Decimal,
    pub fee_amount: Decimal,
    /// approved + declined + failed + expired.
    pub decided_count: i64,
    /// approved / decided (0..=1, 6 decimals); `None` when nothing was decided.
    pub success_rate: Option<Decimal>,
    /// Approvals with a time (equals `approved_count`).
    pub timed_approvals: i64,
    /// Median seconds from initiation to approval (interpolated, 3 decimals).
    pub approval_seconds_median: Option<Decimal>,
    /// 95th percentile of the same (interpolated, 3 decimals).
    pub approval_seconds_p95: Option<Decimal>,
}

/// Daily rows, newest day first, then by merchant, provider, method and currency.
///
/// Every filter is optional: `merchant` scopes to one merchant (a checkout key's own; `None`
/// for analysts), `from`/`to` are inclusive UTC dates, `provider`, `method`
/// (`CARD`, `PSE`...) and `currency` (`COP`...) match exactly. At most `limit` rows; the
/// percentiles are computed for those rows only.
#[allow(clippy::too_many_arguments)]
#[tracing::instrument(skip(pool))]
pub async fn daily(
    pool: &PgPool,
    merchant: Option<&str>,
    from: Option<NaiveDate>,
    to: Option<NaiveDate>,
    provider: Option<&str>,
    method: Option<&str>,
    currency: Option<&str>,
    limit: i64,
) -> Result<Vec<DailyRow>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT d.*, t.timed_approvals, t.approval_seconds_median, t.approval_seconds_p95
           FROM (SELECT * FROM analytics_daily
                  WHERE ($1::text IS NULL OR merchant_id = $1)
                    AND ($2::date IS NULL OR day >= $2)
                    AND ($3::date IS NULL OR day <= $3)
                    AND ($4::text IS NULL OR provider = $4)
                    AND ($5::text IS NULL OR payment_method_type = $5)
                    AND ($6::text IS NULL OR currency = $6)
                  ORDER BY day DESC, merchant_id, provider, payment_method_type, currency
                  LIMIT $7) d
           CROSS JOIN LATERAL (
                 SELECT count(*) AS timed_approvals,
                        round((percentile_cont(0.5) WITHIN GROUP (ORDER BY a.seconds))::numeric, 3)
                            AS approval_seconds_median,
                        round((percentile_cont(0.95) WITHIN GROUP (ORDER BY a.seconds))::numeric, 3)
                            AS approval_seconds_p95
                   FROM analytics_approval_times a
                  WHERE a.merchant_id = d.merchant_id AND a.day = d.day
                    AND a.provider = d.provider
                    AND a.payment_method_type = d.payment_method_type
                    AND a.currency = d.currency) t
          ORDER BY d.day DESC, d.merchant_id, d.provider, d.payment_method_type, d.currency",
    )
    .bind(merchant)
    .bind(from)
    .bind(to)
    .bind(provider)
    .bind(method)
    .bind(currency)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(DailyRow {
                merchant_id: row.try_get("merchant_id")?,
                day: row.try_get("day")?,
                provider: row.try_get("provider")?,
                payment_method_type: row.try_get("payment_method_type")?,
                currency: row.try_get("currency")?,
                initiated_count: row.try_get("initiated_count")?,
                approved_count: row.try_get("approved_count")?,
                declined_count: row.try_get("declined_count")?,
                failed_count: row.try_get("failed_count")?,
                expired_count: row.try_get("expired_count")?,
                voided_count: row.try_get("voided_count")?,
                refunded_count: row.try_get("refunded_count")?,
                approved_amount: row.try_get("approved_amount")?,
                refunded_amount: row.try_get("refunded_amount")?,
                fee_amount: row.try_get("fee_amount")?,
                decided_count: row.try_get("decided_count")?,
                success_rate: row.try_get("success_rate")?,
                timed_approvals: row.try_get("timed_approvals")?,
                approval_seconds_median: row.try_get("approval_seconds_median")?,
                approval_seconds_p95: row.try_get("approval_seconds_p95")?,
            })
        })
        .collect()
}

/// One provider's payments on one UTC day, all merchants, methods and currencies together.
#[derive(Debug, Clone, PartialEq, serde::Serialize, sqlx::FromRow)]
pub struct ProviderDay {
    pub provider: String,
    pub initiated_count: i64,
    pub approved_count: i64,
    pub declined_count: i64,
    pub failed_count: i64,
    pub expired_count: i64,
    /// approved / (approved + declined + failed + expired); `None` when nothing was decided.
    pub success_rate: Option<Decimal>,
}

/// Each provider's totals on `day` (operators' health view), by provider name.
#[tracing::instrument(skip(pool))]
pub async fn provider_day(pool: &PgPool, day: NaiveDate) -> Result<Vec<ProviderDay>, sqlx::Error> {
    sqlx::query_as(
        "SELECT provider, sum(initiated_count)::bigint AS initiated_count,
                sum(approved_count)::bigint AS approved_count,
                sum(declined_count)::bigint AS declined_count,
                sum(failed_count)::bigint AS failed_count,
                sum(expired_count)::bigint AS expired_count,
                round(sum(approved_count)::numeric / NULLIF(sum(decided_count), 0), 6) AS success_rate
           FROM analytics_daily WHERE day = $1
          GROUP BY provider ORDER BY provider",
    )
    .bind(day)
    .fetch_all(pool)
    .await
}
