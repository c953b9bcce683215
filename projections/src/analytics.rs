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
use chrono::NaiveDate;
use domain::{PaymentEvent, PublishedEvent};
use rust_decimal::Decimal;
use sqlx::{PgConnection, PgPool, Row};
use uuid::Uuid;

use crate::{Projection, ProjectionError};

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
        apply_analytics(conn, id, event, &payload).await
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

/// The payment as this projection remembers it.
struct Context {
    merchant_id: String,
    provider: String,
    method: String,
    currency: String,
}

async fn apply_analytics(
    conn: &mut PgConnection,
    id: Uuid,
    event: &PublishedEvent,
    payload: &PaymentEvent,
) -> Result<(), ProjectionError> {
    let at = payload.at();
    let day = at.date_naive();
    let delta = match payload {
        PaymentEvent::PaymentInitiated {
            merchant_id,
            amount,
            payment_method,
            provider,
            at,
            ..
        } => {
            let context = Context {
                merchant_id: merchant_id.as_str().to_owned(),
                provider: provider.clone(),
                method: payment_method.as_str().to_owned(),
                currency: amount.currency().code().to_owned(),
            };
            sqlx::query(
                "INSERT INTO analytics_payments
                    (payment_id, merchant_id, provider, payment_method_type, currency,
                     initiated_at)
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(id)
            .bind(&context.merchant_id)
            .bind(&context.provider)
            .bind(&context.method)
            .bind(&context.currency)
            .bind(at)
            .execute(&mut *conn)
            .await?;
            let delta = Delta {
                initiated: 1,
                ..Delta::default()
            };
            add(conn, &context, day, &delta).await?;
            return Ok(());
        }
        PaymentEvent::ProviderTransactionCreated { provider, .. } => {
            // From here on the payment is this provider's: later events count under it.
            let updated =
                sqlx::query("UPDATE analytics_payments SET provider = $2 WHERE payment_id = $1")
                    .bind(id)
                    .bind(provider)
                    .execute(&mut *conn)
                    .await?;
            if updated.rows_affected() != 1 {
                return Err(unknown_payment(event));
            }
            return Ok(());
        }
        // Provider errors are the `failures` projection's; an authorization is neither an
        // approval nor a decision (the capture or void that follows is); refund requests and
        // refused refunds move no money.
        PaymentEvent::ProviderAttemptFailed { .. }
        | PaymentEvent::PaymentAuthorized { .. }
        | PaymentEvent::RefundRequested { .. }
        | PaymentEvent::RefundFailed { .. } => return Ok(()),
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
    // Decisions also name a provider: by construction the one the payment's events name last
    // (`ProviderTransactionCreated`, or the initial choice), which the context holds.
    let context = context(conn, id)
        .await?
        .ok_or_else(|| unknown_payment(event))?;
    add(conn, &context, day, &delta).await?;
    if matches!(payload, PaymentEvent::PaymentApproved { .. }) {
        // One approval per payment (automatic capture, or the merchant's one capture).
        sqlx::query(
            "INSERT INTO analytics_approval_times
                (payment_id, merchant_id, day, provider, payment_method_type, currency, seconds)
             SELECT payment_id, merchant_id, $2, $3, payment_method_type, currency,
                    EXTRACT(EPOCH FROM ($4::timestamptz - initiated_at))
               FROM analytics_payments WHERE payment_id = $1
             ON CONFLICT (payment_id) DO NOTHING",
        )
        .bind(id)
        .bind(day)
        .bind(&context.provider)
        .bind(at)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

fn unknown_payment(event: &PublishedEvent) -> ProjectionError {
    ProjectionError::Poison {
        message_id: event.message_id(),
        reason: "no PaymentInitiated was applied for this payment".into(),
    }
}

async fn context(conn: &mut PgConnection, id: Uuid) -> Result<Option<Context>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT merchant_id, provider, payment_method_type, currency
           FROM analytics_payments WHERE payment_id = $1",
    )
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    row.map(|row| {
        Ok(Context {
            merchant_id: row.try_get("merchant_id")?,
            provider: row.try_get("provider")?,
            method: row.try_get("payment_method_type")?,
            currency: row.try_get("currency")?,
        })
    })
    .transpose()
}

async fn add(
    conn: &mut PgConnection,
    context: &Context,
    day: NaiveDate,
    delta: &Delta,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO analytics_daily AS d
            (merchant_id, day, provider, payment_method_type, currency,
             initiated_count, approved_count, declined_count, failed_count, expired_count,
             voided_count, refunded_count, approved_amount, refunded_amount, fee_amount)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
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
    .bind(&context.merchant_id)
    .bind(day)
    .bind(&context.provider)
    .bind(&context.method)
    .bind(&context.currency)
    .bind(delta.initiated)
    .bind(delta.approved)
    .bind(delta.declined)
    .bind(delta.failed)
    .bind(delta.expired)
    .bind(delta.voided)
    .bind(delta.refunded)
    .bind(delta.approved_amount)
    .bind(delta.refunded_amount)
    .bind(delta.fee_amount)
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
