//! The `status` projection: one row per payment with its current state and amounts.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, LazyLock, Mutex};

use domain::{PaymentEvent, PaymentStatus};
use rust_decimal::Decimal;
use sqlx::{PgConnection, PgPool, Row};
use uuid::Uuid;

use crate::version_waiters::VersionWaiters;
use crate::{Decoded, Position, Projection, ProjectionError};

pub const NAME: &str = "status";

#[derive(Default)]
pub struct StatusProjection {
    /// Readers of this process waiting for a version (`GET ?min_version`), handed the rows a
    /// batch wrote once it commits so that they need not read them again.
    readers: Option<Arc<VersionWaiters>>,
    /// What the batch in progress wrote, exactly as stored (`RETURNING`); handed over by
    /// `committed`. One batch at a time: the consumer that feeds readers applies serially.
    written: Mutex<Vec<PaymentStatusRow>>,
}

impl StatusProjection {
    /// The projection the status consumer of a process serving reads runs.
    pub fn feeding(readers: Arc<VersionWaiters>) -> Self {
        Self {
            readers: Some(readers),
            written: Mutex::default(),
        }
    }
}

#[async_trait]
impl Projection for StatusProjection {
    fn name(&self) -> &'static str {
        NAME
    }

    fn tables(&self) -> &'static [&'static str] {
        &["payment_status"]
    }

    /// Reads the rows of the batch's payments once, folds every event into them in memory,
    /// and writes each changed row back once: two statements per batch.
    async fn apply_decoded(
        &self,
        conn: &mut PgConnection,
        decoded: &[Decoded<'_>],
    ) -> Result<(), ProjectionError> {
        let ids = crate::payment_ids(decoded);
        let mut rows = load(conn, &ids).await?;
        let mut changed: BTreeSet<Uuid> = BTreeSet::new();
        for (id, event, payload) in decoded {
            let row = match rows.get_mut(id) {
                Some(_) if matches!(payload, PaymentEvent::PaymentInitiated { .. }) => {
                    return Err(crate::poison(event, "the payment was initiated already"));
                }
                Some(row) => row,
                None => {
                    let row = initiated(*id, event, payload)
                        .ok_or_else(|| crate::poison(event, crate::UNKNOWN_PAYMENT))?;
                    rows.entry(*id).or_insert(row)
                }
            };
            fold(row, event, payload);
            changed.insert(*id);
        }
        let returning = self.readers.is_some();
        let written = store(
            conn,
            changed.iter().filter_map(|id| rows.get(id)),
            returning,
        )
        .await?;
        if returning {
            if let Ok(mut slot) = self.written.lock() {
                *slot = written;
            }
        }
        Ok(())
    }

    fn committed(&self) {
        let Some(readers) = &self.readers else {
            return;
        };
        let written = match self.written.lock() {
            Ok(mut slot) => std::mem::take(&mut *slot),
            Err(_) => return,
        };
        readers.committed(&written);
    }
}

/// Every column of a `payment_status` row: what readers get, and what only the projection
/// keeps.
#[derive(Debug, Clone)]
struct State {
    row: PaymentStatusRow,
    provider_attempts_failed: i32,
    /// Orphaned transactions still holding money at their provider.
    orphans_open: i32,
    last_global_position: i64,
}

/// The row a `PaymentInitiated` creates; `None` for any other event.
fn initiated(id: Uuid, event: &Position<'_>, payload: &PaymentEvent) -> Option<State> {
    let PaymentEvent::PaymentInitiated {
        merchant_id,
        reference,
        amount,
        payment_method,
        capture_mode,
        provider,
        at,
        ..
    } = payload
    else {
        return None;
    };
    Some(State {
        row: PaymentStatusRow {
            payment_id: id,
            merchant_id: merchant_id.as_str().to_owned(),
            reference: reference.as_str().to_owned(),
            status: PaymentStatus::Pending.as_str().to_owned(),
            amount: amount.amount(),
            currency: amount.currency().code().to_owned(),
            authorized_amount: Decimal::ZERO,
            captured_amount: Decimal::ZERO,
            refunded_amount: Decimal::ZERO,
            refund_pending_amount: Decimal::ZERO,
            provider: provider.clone(),
            provider_transaction_id: None,
            payment_method_type: payment_method.as_str().to_owned(),
            capture_mode: match capture_mode {
                domain::CaptureMode::Automatic => "automatic",
                domain::CaptureMode::Manual => "manual",
            }
            .to_owned(),
            failure_reason: None,
            next_action: None,
            fee_amount: Decimal::ZERO,
            provider_outcome: None,
            pending_action: None,
            needs_review: None,
            created_at: *at,
            updated_at: *at,
            version: event.sequence,
        },
        provider_attempts_failed: 0,
        orphans_open: 0,
        last_global_position: event.global_position,
    })
}

/// What a provider was last asked about the payment's attempt, while it has no answer.
pub const OUTCOME_IN_FLIGHT: &str = "in_flight";
/// The attempt's answer was lost: the provider may hold a transaction.
pub const OUTCOME_UNKNOWN: &str = "unknown";

/// What one event changes in its payment's row (always the version, position and time).
fn fold(state: &mut State, event: &Position<'_>, payload: &PaymentEvent) {
    state.last_global_position = event.global_position;
    let row = &mut state.row;
    row.version = event.sequence;
    row.updated_at = payload.at();
    // Any provider answer about the payment's own transaction closes its attempt.
    if matches!(
        payload,
        PaymentEvent::ProviderTransactionCreated { .. }
            | PaymentEvent::ProviderAttemptFailed { .. }
            | PaymentEvent::PaymentAuthorized { .. }
            | PaymentEvent::PaymentApproved { .. }
            | PaymentEvent::PaymentDeclined { .. }
            | PaymentEvent::PaymentFailed { .. }
            | PaymentEvent::PaymentExpired { .. }
    ) {
        row.provider_outcome = None;
    }
    match payload {
        PaymentEvent::PaymentInitiated { .. } => {}
        PaymentEvent::ProviderAttemptStarted { provider, .. } => {
            row.provider = provider.clone();
            row.provider_outcome = Some(OUTCOME_IN_FLIGHT.to_owned());
        }
        PaymentEvent::ProviderOutcomeUnknown { .. } => {
            row.provider_outcome = Some(OUTCOME_UNKNOWN.to_owned());
        }
        PaymentEvent::CaptureRequested { .. } => row.pending_action = Some("capture".to_owned()),
        PaymentEvent::VoidRequested { .. } => row.pending_action = Some("void".to_owned()),
        PaymentEvent::CaptureFailed { .. } | PaymentEvent::VoidFailed { .. } => {
            row.pending_action = None
        }
        PaymentEvent::ProviderTransactionOrphaned { compensation, .. } => {
            if compensation.is_some() {
                state.orphans_open += 1;
            }
        }
        PaymentEvent::OrphanCompensated { .. } => {
            state.orphans_open = (state.orphans_open - 1).max(0);
        }
        PaymentEvent::PaymentNeedsReview { intent, .. } => {
            row.needs_review = Some(intent.clone());
        }
        PaymentEvent::ProviderTransactionCreated {
            provider,
            provider_transaction_id,
            next_action,
            ..
        } => {
            row.provider = provider.clone();
            row.provider_transaction_id = Some(provider_transaction_id.clone());
            row.next_action = next_action
                .as_ref()
                .and_then(|a| serde_json::to_value(a).ok());
        }
        PaymentEvent::ProviderAttemptFailed { .. } => state.provider_attempts_failed += 1,
        PaymentEvent::PaymentAuthorized {
            amount,
            provider,
            provider_transaction_id,
            ..
        } => {
            row.status = PaymentStatus::Authorized.as_str().to_owned();
            row.authorized_amount = amount.amount();
            row.provider = provider.clone();
            row.provider_transaction_id = Some(provider_transaction_id.clone());
            row.next_action = None;
        }
        PaymentEvent::PaymentApproved {
            amount,
            provider,
            provider_transaction_id,
            capture_id,
            fee,
            ..
        } => {
            row.status = PaymentStatus::Approved.as_str().to_owned();
            if capture_id.is_none() {
                row.authorized_amount = amount.amount();
            }
            row.captured_amount = amount.amount();
            row.pending_action = None;
            row.provider = provider.clone();
            row.provider_transaction_id = Some(provider_transaction_id.clone());
            row.fee_amount = fee.map(|f| f.amount()).unwrap_or_default();
            row.next_action = None;
        }
        PaymentEvent::PaymentDeclined {
            reason,
            provider,
            provider_transaction_id,
            ..
        } => {
            row.status = PaymentStatus::Declined.as_str().to_owned();
            row.failure_reason = Some(reason.clone());
            row.provider = provider.clone();
            row.provider_transaction_id = Some(provider_transaction_id.clone());
            row.next_action = None;
        }
        PaymentEvent::PaymentFailed { reason, .. } => {
            row.status = PaymentStatus::Failed.as_str().to_owned();
            row.failure_reason = Some(reason.clone());
            row.next_action = None;
        }
        PaymentEvent::PaymentExpired { .. } => {
            row.status = PaymentStatus::Expired.as_str().to_owned();
            row.next_action = None;
        }
        PaymentEvent::PaymentVoided { .. } => {
            row.status = PaymentStatus::Voided.as_str().to_owned();
            row.pending_action = None;
        }
        PaymentEvent::RefundRequested { amount, .. } => {
            row.refund_pending_amount += amount.amount();
        }
        PaymentEvent::PaymentRefunded { amount, .. } => {
            row.refund_pending_amount -= amount.amount();
            row.refunded_amount += amount.amount();
            row.status = if row.refunded_amount >= row.captured_amount {
                PaymentStatus::Refunded
            } else {
                PaymentStatus::PartiallyRefunded
            }
            .as_str()
            .to_owned();
        }
        PaymentEvent::RefundFailed { amount, .. } => {
            row.refund_pending_amount -= amount.amount();
        }
    }
    // The flag lasts while something is still open (as in the aggregate).
    let row = &mut state.row;
    let open = row.provider_outcome.is_some()
        || row.pending_action.is_some()
        || row.refund_pending_amount > Decimal::ZERO
        || state.orphans_open > 0;
    if !open {
        row.needs_review = None;
    }
}

const STATE_COLUMNS: &str = "payment_id, merchant_id, reference, status, amount, currency,
    authorized_amount, captured_amount, refunded_amount, refund_pending_amount, provider,
    provider_transaction_id, payment_method_type, capture_mode, failure_reason,
    provider_attempts_failed, next_action, fee_amount, created_at, updated_at, version,
    last_global_position, provider_outcome, pending_action, needs_review, orphans_open";

/// The statements every batch runs, written once rather than formatted per batch.
static LOAD: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT t.* FROM UNNEST($1::uuid[]) AS k(id) CROSS JOIN LATERAL (
           SELECT {STATE_COLUMNS} FROM payment_status WHERE payment_id = k.id LIMIT 1) AS t"
    )
});
static UPSERT: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO payment_status AS p ({STATE_COLUMNS})
         SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::numeric[],
                              $6::text[], $7::numeric[], $8::numeric[], $9::numeric[],
                              $10::numeric[], $11::text[], $12::text[], $13::text[], $14::text[],
                              $15::text[], $16::int[], $17::jsonb[], $18::numeric[],
                              $19::timestamptz[], $20::timestamptz[], $21::bigint[],
                              $22::bigint[], $23::text[], $24::text[], $25::text[],
                              $26::int[])
         ON CONFLICT (payment_id) DO UPDATE SET
             status = EXCLUDED.status,
             authorized_amount = EXCLUDED.authorized_amount,
             captured_amount = EXCLUDED.captured_amount,
             refunded_amount = EXCLUDED.refunded_amount,
             refund_pending_amount = EXCLUDED.refund_pending_amount,
             provider = EXCLUDED.provider,
             provider_transaction_id = EXCLUDED.provider_transaction_id,
             failure_reason = EXCLUDED.failure_reason,
             provider_attempts_failed = EXCLUDED.provider_attempts_failed,
             next_action = EXCLUDED.next_action,
             fee_amount = EXCLUDED.fee_amount,
             updated_at = EXCLUDED.updated_at,
             version = EXCLUDED.version,
             last_global_position = EXCLUDED.last_global_position,
             provider_outcome = EXCLUDED.provider_outcome,
             pending_action = EXCLUDED.pending_action,
             needs_review = EXCLUDED.needs_review,
             orphans_open = EXCLUDED.orphans_open"
    )
});
static UPSERT_RETURNING: LazyLock<String> =
    LazyLock::new(|| format!("{} RETURNING {COLUMNS}", *UPSERT));

async fn load(conn: &mut PgConnection, ids: &[Uuid]) -> Result<HashMap<Uuid, State>, sqlx::Error> {
    let rows = sqlx::query(&LOAD).bind(ids).fetch_all(&mut *conn).await?;
    let mut states = HashMap::with_capacity(rows.len());
    for row in &rows {
        let state = State {
            row: from_row(row)?,
            provider_attempts_failed: row.try_get("provider_attempts_failed")?,
            orphans_open: row.try_get("orphans_open")?,
            last_global_position: row.try_get("last_global_position")?,
        };
        states.insert(state.row.payment_id, state);
    }
    Ok(states)
}

/// Writes the rows, each whole, with one statement; with `returning`, answers them as
/// stored (numeric scale, microsecond times), as a reader would read them.
async fn store<'a>(
    conn: &mut PgConnection,
    rows: impl Iterator<Item = &'a State>,
    returning: bool,
) -> Result<Vec<PaymentStatusRow>, sqlx::Error> {
    let rows: Vec<&State> = rows.collect();
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let column = |f: fn(&State) -> String| rows.iter().map(|r| f(r)).collect::<Vec<_>>();
    let decimals = |f: fn(&State) -> Decimal| rows.iter().map(|r| f(r)).collect::<Vec<_>>();
    let optional = |f: fn(&State) -> Option<String>| rows.iter().map(|r| f(r)).collect::<Vec<_>>();
    let times = |f: fn(&State) -> DateTime<Utc>| rows.iter().map(|r| f(r)).collect::<Vec<_>>();
    let numbers = |f: fn(&State) -> i64| rows.iter().map(|r| f(r)).collect::<Vec<_>>();
    let sql: &str = if returning {
        &UPSERT_RETURNING
    } else {
        &UPSERT
    };
    let stored = sqlx::query(sql)
        .bind(rows.iter().map(|r| r.row.payment_id).collect::<Vec<_>>())
        .bind(column(|r| r.row.merchant_id.clone()))
        .bind(column(|r| r.row.reference.clone()))
        .bind(column(|r| r.row.status.clone()))
        .bind(decimals(|r| r.row.amount))
        .bind(column(|r| r.row.currency.clone()))
        .bind(decimals(|r| r.row.authorized_amount))
        .bind(decimals(|r| r.row.captured_amount))
        .bind(decimals(|r| r.row.refunded_amount))
        .bind(decimals(|r| r.row.refund_pending_amount))
        .bind(column(|r| r.row.provider.clone()))
        .bind(optional(|r| r.row.provider_transaction_id.clone()))
        .bind(column(|r| r.row.payment_method_type.clone()))
        .bind(column(|r| r.row.capture_mode.clone()))
        .bind(optional(|r| r.row.failure_reason.clone()))
        .bind(
            rows.iter()
                .map(|r| r.provider_attempts_failed)
                .collect::<Vec<_>>(),
        )
        .bind(
            rows.iter()
                .map(|r| r.row.next_action.clone())
                .collect::<Vec<_>>(),
        )
        .bind(decimals(|r| r.row.fee_amount))
        .bind(times(|r| r.row.created_at))
        .bind(times(|r| r.row.updated_at))
        .bind(numbers(|r| r.row.version))
        .bind(numbers(|r| r.last_global_position))
        .bind(optional(|r| r.row.provider_outcome.clone()))
        .bind(optional(|r| r.row.pending_action.clone()))
        .bind(optional(|r| r.row.needs_review.clone()))
        .bind(rows.iter().map(|r| r.orphans_open).collect::<Vec<_>>())
        .fetch_all(&mut *conn)
        .await?;
    stored.iter().map(from_row).collect()
}

/// A row of `payment_status`.
#[derive(Debug, Clone, PartialEq)]
pub struct PaymentStatusRow {
    pub payment_id: Uuid,
    pub merchant_id: String,
    pub reference: String,
    pub status: String,
    pub amount: Decimal,
    pub currency: String,
    pub authorized_amount: Decimal,
    pub captured_amount: Decimal,
    pub refunded_amount: Decimal,
    pub refund_pending_amount: Decimal,
    pub provider: String,
    pub provider_transaction_id: Option<String>,
    pub payment_method_type: String,
    pub capture_mode: String,
    pub failure_reason: Option<String>,
    pub next_action: Option<serde_json::Value>,
    pub fee_amount: Decimal,
    /// `in_flight` or `unknown` while the payment's provider attempt has no answer.
    pub provider_outcome: Option<String>,
    /// `capture` or `void` while one is asked of the provider.
    pub pending_action: Option<String>,
    /// The intent an operator must look at (`attempt`, `capture`, ...).
    pub needs_review: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
}

const COLUMNS: &str = "payment_id, merchant_id, reference, status, amount, currency,
    authorized_amount, captured_amount, refunded_amount, refund_pending_amount, provider,
    provider_transaction_id, payment_method_type, capture_mode, failure_reason, next_action,
    fee_amount, provider_outcome, pending_action, needs_review, created_at, updated_at, version";

fn from_row(row: &sqlx::postgres::PgRow) -> Result<PaymentStatusRow, sqlx::Error> {
    Ok(PaymentStatusRow {
        payment_id: row.try_get("payment_id")?,
        merchant_id: row.try_get("merchant_id")?,
        reference: row.try_get("reference")?,
        status: row.try_get("status")?,
        amount: row.try_get("amount")?,
        currency: row.try_get("currency")?,
        authorized_amount: row.try_get("authorized_amount")?,
        captured_amount: row.try_get("captured_amount")?,
        refunded_amount: row.try_get("refunded_amount")?,
        refund_pending_amount: row.try_get("refund_pending_amount")?,
        provider: row.try_get("provider")?,
        provider_transaction_id: row.try_get("provider_transaction_id")?,
        payment_method_type: row.try_get("payment_method_type")?,
        capture_mode: row.try_get("capture_mode")?,
        failure_reason: row.try_get("failure_reason")?,
        next_action: row.try_get("next_action")?,
        fee_amount: row.try_get("fee_amount")?,
        provider_outcome: row.try_get("provider_outcome")?,
        pending_action: row.try_get("pending_action")?,
        needs_review: row.try_get("needs_review")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        version: row.try_get("version")?,
    })
}

/// One payment, if the merchant scope (when given) owns it.
#[tracing::instrument(skip(pool))]
pub async fn get(
    pool: &PgPool,
    id: Uuid,
    merchant: Option<&str>,
) -> Result<Option<PaymentStatusRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM payment_status
          WHERE payment_id = $1 AND ($2::text IS NULL OR merchant_id = $2)"
    );
    let row = sqlx::query(&sql)
        .bind(id)
        .bind(merchant)
        .fetch_optional(pool)
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// Payments flagged for review, and payments whose provider attempt's answer was lost: what
/// operators watch (both counted from small partial indexes).
#[tracing::instrument(skip(pool))]
pub async fn open_intent_counts(pool: &PgPool) -> Result<(i64, i64), sqlx::Error> {
    sqlx::query_as(
        "SELECT (SELECT count(*) FROM payment_status WHERE needs_review IS NOT NULL),
                (SELECT count(*) FROM payment_status WHERE provider_outcome = $1)",
    )
    .bind(OUTCOME_UNKNOWN)
    .fetch_one(pool)
    .await
}

/// How many payments are in each status (for metrics).
#[tracing::instrument(skip(pool))]
pub async fn count_by_status(pool: &PgPool) -> Result<Vec<(String, i64)>, sqlx::Error> {
    sqlx::query_as("SELECT status, count(*) FROM payment_status GROUP BY status ORDER BY status")
        .fetch_all(pool)
        .await
}

/// Where a page ends: the next page starts strictly after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListCursor {
    pub created_at: DateTime<Utc>,
    pub payment_id: Uuid,
}

/// What a listing is narrowed to; every field is optional and they combine with AND.
#[derive(Debug, Clone, Copy, Default)]
pub struct ListFilter<'a> {
    /// Only this merchant's payments (a merchant-scoped key always sets it).
    pub merchant: Option<&'a str>,
    /// A status, or `NEEDS_REVIEW` for payments with an intent an operator must look at.
    pub status: Option<&'a str>,
    /// The merchant's own order reference, exactly.
    pub reference: Option<&'a str>,
    /// Created at or after.
    pub created_gte: Option<DateTime<Utc>>,
    /// Created strictly before.
    pub created_lt: Option<DateTime<Utc>>,
}

/// Newest first, keyset-paginated so a page costs the same however deep it is.
#[tracing::instrument(skip(pool))]
pub async fn list(
    pool: &PgPool,
    filter: ListFilter<'_>,
    after: Option<ListCursor>,
    limit: i64,
) -> Result<Vec<PaymentStatusRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM payment_status
          WHERE ($1::text IS NULL OR merchant_id = $1)
            AND ($2::text IS NULL OR status = $2
                 OR ($2 = 'NEEDS_REVIEW' AND needs_review IS NOT NULL))
            AND ($3::timestamptz IS NULL OR (created_at, payment_id) < ($3, $4))
            AND ($6::text IS NULL OR reference = $6)
            AND ($7::timestamptz IS NULL OR created_at >= $7)
            AND ($8::timestamptz IS NULL OR created_at < $8)
          ORDER BY created_at DESC, payment_id DESC
          LIMIT $5"
    );
    let rows = sqlx::query(&sql)
        .bind(filter.merchant)
        .bind(filter.status)
        .bind(after.map(|c| c.created_at))
        .bind(after.map(|c| c.payment_id))
        .bind(limit)
        .bind(filter.reference)
        .bind(filter.created_gte)
        .bind(filter.created_lt)
        .fetch_all(pool)
        .await?;
    rows.iter().map(from_row).collect()
}

/// The small view of one payment a poller needs: where it is and how far its stream went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusSummary {
    pub payment_id: Uuid,
    pub status: String,
    pub version: i64,
    pub updated_at: DateTime<Utc>,
}

/// One payment's status, version and last change, if `merchant` (when given) owns it.
pub async fn summary(
    pool: &PgPool,
    payment_id: Uuid,
    merchant: Option<&str>,
) -> Result<Option<StatusSummary>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT payment_id, status, version, updated_at FROM payment_status
          WHERE payment_id = $1 AND ($2::text IS NULL OR merchant_id = $2)",
    )
    .bind(payment_id)
    .bind(merchant)
    .fetch_optional(pool)
    .await?;
    row.map(|row| {
        Ok(StatusSummary {
            payment_id: row.try_get("payment_id")?,
            status: row.try_get("status")?,
            version: row.try_get("version")?,
            updated_at: row.try_get("updated_at")?,
        })
    })
    .transpose()
}
