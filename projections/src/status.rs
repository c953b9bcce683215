//! The `status` projection: one row per payment with its current state and amounts.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::{PaymentEvent, PublishedEvent};
use rust_decimal::Decimal;
use sqlx::{PgConnection, PgPool, Row};
use uuid::Uuid;

use crate::{Projection, ProjectionError};

pub const NAME: &str = "status";

pub struct StatusProjection;

#[async_trait]
impl Projection for StatusProjection {
    fn name(&self) -> &'static str {
        NAME
    }

    fn tables(&self) -> &'static [&'static str] {
        &["payment_status"]
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
        apply_status(conn, id, event, &payload).await?;
        Ok(())
    }
}

async fn apply_status(
    conn: &mut PgConnection,
    id: Uuid,
    event: &PublishedEvent,
    payload: &PaymentEvent,
) -> Result<(), sqlx::Error> {
    let version = event.sequence;
    let position = event.global_position;
    let at = payload.at();
    if let PaymentEvent::PaymentInitiated {
        merchant_id,
        reference,
        amount,
        payment_method,
        capture_mode,
        provider,
        at,
        ..
    } = payload
    {
        sqlx::query(
            "INSERT INTO payment_status
                (payment_id, merchant_id, reference, status, amount, currency, provider,
                 payment_method_type, capture_mode, created_at, updated_at, version,
                 last_global_position)
             VALUES ($1, $2, $3, 'PENDING', $4, $5, $6, $7, $8, $9, $9, $10, $11)",
        )
        .bind(id)
        .bind(merchant_id.as_str())
        .bind(reference.as_str())
        .bind(amount.amount())
        .bind(amount.currency().code())
        .bind(provider)
        .bind(payment_method.as_str())
        .bind(match capture_mode {
            domain::CaptureMode::Automatic => "automatic",
            domain::CaptureMode::Manual => "manual",
        })
        .bind(at)
        .bind(version)
        .bind(position)
        .execute(&mut *conn)
        .await?;
        return Ok(());
    }
    // Every other event changes some columns of the row, always with the new version:
    // $1 id, $2 version, $3 position, $4 time, then the event's own values from $5.
    let update = |set: &str| {
        format!(
            "UPDATE payment_status
                SET {set}, version = $2, last_global_position = $3, updated_at = $4
              WHERE payment_id = $1"
        )
    };
    let sql;
    let query = |sql| base_update(sql, id, version, position, at);
    let statement = match payload {
        PaymentEvent::PaymentInitiated { .. } => return Ok(()),
        PaymentEvent::ProviderTransactionCreated {
            provider,
            provider_transaction_id,
            next_action,
            ..
        } => {
            sql = update("provider = $5, provider_transaction_id = $6, next_action = $7");
            query(&sql)
                .bind(provider)
                .bind(provider_transaction_id)
                .bind(next_action.as_ref().map(|a| sqlx::types::Json(a.clone())))
        }
        PaymentEvent::ProviderAttemptFailed { .. } => {
            sql = update("provider_attempts_failed = provider_attempts_failed + 1");
            query(&sql)
        }
        PaymentEvent::PaymentAuthorized {
            amount,
            provider,
            provider_transaction_id,
            ..
        } => {
            sql = update(
                "status = 'AUTHORIZED', authorized_amount = $5, provider = $6,
                 provider_transaction_id = $7, next_action = NULL",
            );
            query(&sql)
                .bind(amount.amount())
                .bind(provider)
                .bind(provider_transaction_id)
        }
        PaymentEvent::PaymentApproved {
            amount,
            provider,
            provider_transaction_id,
            capture_id,
            fee,
            ..
        } => {
            sql = update(if capture_id.is_some() {
                "status = 'APPROVED', captured_amount = $5, provider = $6,
                 provider_transaction_id = $7, fee_amount = $8, next_action = NULL"
            } else {
                "status = 'APPROVED', authorized_amount = $5, captured_amount = $5, provider = $6,
                 provider_transaction_id = $7, fee_amount = $8, next_action = NULL"
            });
            query(&sql)
                .bind(amount.amount())
                .bind(provider)
                .bind(provider_transaction_id)
                .bind(fee.map(|f| f.amount()).unwrap_or_default())
        }
        PaymentEvent::PaymentDeclined {
            reason,
            provider,
            provider_transaction_id,
            ..
        } => {
            sql = update(
                "status = 'DECLINED', failure_reason = $5, provider = $6,
                 provider_transaction_id = $7, next_action = NULL",
            );
            query(&sql)
                .bind(reason)
                .bind(provider)
                .bind(provider_transaction_id)
        }
        PaymentEvent::PaymentFailed { reason, .. } => {
            sql = update("status = 'FAILED', failure_reason = $5, next_action = NULL");
            query(&sql).bind(reason)
        }
        PaymentEvent::PaymentExpired { .. } => {
            sql = update("status = 'EXPIRED', next_action = NULL");
            query(&sql)
        }
        PaymentEvent::PaymentVoided { .. } => {
            sql = update("status = 'VOIDED'");
            query(&sql)
        }
        PaymentEvent::RefundRequested { amount, .. } => {
            sql = update("refund_pending_amount = refund_pending_amount + $5");
            query(&sql).bind(amount.amount())
        }
        PaymentEvent::PaymentRefunded { amount, .. } => {
            sql = update(
                "refund_pending_amount = refund_pending_amount - $5,
                 refunded_amount = refunded_amount + $5,
                 status = CASE WHEN refunded_amount + $5 >= captured_amount
                               THEN 'REFUNDED' ELSE 'PARTIALLY_REFUNDED' END",
            );
            query(&sql).bind(amount.amount())
        }
        PaymentEvent::RefundFailed { amount, .. } => {
            sql = update("refund_pending_amount = refund_pending_amount - $5");
            query(&sql).bind(amount.amount())
        }
    };
    let updated = statement.execute(&mut *conn).await?;
    if updated.rows_affected() != 1 {
        return Err(sqlx::Error::RowNotFound);
    }
    Ok(())
}

fn base_update(
    sql: &str,
    id: Uuid,
    version: i64,
    position: i64,
    at: DateTime<Utc>,
) -> sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments> {
    sqlx::query(sql)
        .bind(id)
        .bind(version)
        .bind(position)
        .bind(at)
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
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
}

const COLUMNS: &str = "payment_id, merchant_id, reference, status, amount, currency,
    authorized_amount, captured_amount, refunded_amount, refund_pending_amount, provider,
    provider_transaction_id, payment_method_type, capture_mode, failure_reason, next_action,
    fee_amount, created_at, updated_at, version";

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

/// Where a page ends: the next page starts strictly after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListCursor {
    pub created_at: DateTime<Utc>,
    pub payment_id: Uuid,
}

/// Newest first, keyset-paginated so a page costs the same however deep it is.
#[tracing::instrument(skip(pool))]
pub async fn list(
    pool: &PgPool,
    merchant: Option<&str>,
    status: Option<&str>,
    after: Option<ListCursor>,
    limit: i64,
) -> Result<Vec<PaymentStatusRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM payment_status
          WHERE ($1::text IS NULL OR merchant_id = $1)
            AND ($2::text IS NULL OR status = $2)
            AND ($3::timestamptz IS NULL OR (created_at, payment_id) < ($3, $4))
          ORDER BY created_at DESC, payment_id DESC
          LIMIT $5"
    );
    let rows = sqlx::query(&sql)
        .bind(merchant)
        .bind(status)
        .bind(after.map(|c| c.created_at))
        .bind(after.map(|c| c.payment_id))
        .bind(limit)
        .fetch_all(pool)
        .await?;
    rows.iter().map(from_row).collect()
}
