//! The `customers` projection: each customer (reference, default method) and the payment
//! methods saved for them, with only what may be shown of each (`customers`,
//! `customer_payment_methods`). It folds the `Customer` aggregate's events; a removed method's
//! row is deleted.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::CustomerEvent;
use eventstore::PublishedEvent;
use serde::Serialize;
use sqlx::{PgConnection, PgPool, Row};
use uuid::Uuid;

use crate::{Decoded, Position, Projection, ProjectionError};

pub const NAME: &str = "customers";

pub struct CustomersProjection;

#[async_trait]
impl Projection for CustomersProjection {
    fn name(&self) -> &'static str {
        NAME
    }

    fn tables(&self) -> &'static [&'static str] {
        &["customers", "customer_payment_methods"]
    }

    fn aggregate_type(&self) -> &'static str {
        eventstore::published::CUSTOMER
    }

    /// Customers change a few times in their life: one statement per event is plenty.
    async fn apply(
        &self,
        conn: &mut PgConnection,
        events: &[PublishedEvent],
    ) -> Result<(), ProjectionError> {
        for event in events {
            let position = Position::of(event);
            let customer_id = crate::payment_id(&position)?;
            let decoded = <CustomerEvent as serde::Deserialize>::deserialize(&event.payload)
                .map_err(|e| crate::undecodable(&position, &e))?;
            apply_one(conn, customer_id, event.sequence, &decoded)
                .await
                .map_err(|e| match e {
                    Fold::Database(e) => ProjectionError::Database(e),
                    Fold::Unknown => {
                        crate::poison(&position, "no CustomerCreated was applied for it")
                    }
                })?;
        }
        Ok(())
    }

    /// Payment events never reach this projection (its queue is bound to customer events).
    async fn apply_decoded(
        &self,
        _conn: &mut PgConnection,
        events: &[Decoded<'_>],
    ) -> Result<(), ProjectionError> {
        match events.first() {
            None => Ok(()),
            Some((_, position, _)) => Err(crate::poison(
                position,
                "a payment event reached the customers projection",
            )),
        }
    }
}

enum Fold {
    Database(sqlx::Error),
    Unknown,
}

impl From<sqlx::Error> for Fold {
    fn from(error: sqlx::Error) -> Self {
        Fold::Database(error)
    }
}

async fn apply_one(
    conn: &mut PgConnection,
    customer_id: Uuid,
    sequence: i64,
    event: &CustomerEvent,
) -> Result<(), Fold> {
    if let CustomerEvent::CustomerCreated {
        merchant_id,
        reference,
        at,
        ..
    } = event
    {
        sqlx::query(
            "INSERT INTO customers (customer_id, merchant_id, reference, created_at, updated_at, version)
             VALUES ($1, $2, $3, $4, $4, $5)",
        )
        .bind(customer_id)
        .bind(merchant_id.as_str())
        .bind(reference.as_str())
        .bind(at)
        .bind(sequence)
        .execute(&mut *conn)
        .await?;
        return Ok(());
    }
    let merchant: Option<String> = sqlx::query_scalar(
        "UPDATE customers SET updated_at = $2, version = $3 WHERE customer_id = $1
         RETURNING merchant_id",
    )
    .bind(customer_id)
    .bind(event.at())
    .bind(sequence)
    .fetch_optional(&mut *conn)
    .await?;
    let merchant = merchant.ok_or(Fold::Unknown)?;
    match event {
        CustomerEvent::CustomerCreated { .. } => {}
        CustomerEvent::PaymentMethodSaved {
            payment_method_id,
            provider,
            method_type,
            display,
            awaiting_verification,
            at,
        } => {
            sqlx::query(
                "INSERT INTO customer_payment_methods (payment_method_id, customer_id, merchant_id,
                     provider, method_type, brand, last_four, exp_month, exp_year, phone_masked,
                     saved_at, status)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
            )
            .bind(payment_method_id.as_uuid())
            .bind(customer_id)
            .bind(&merchant)
            .bind(provider)
            .bind(method_type.as_str())
            .bind(&display.brand)
            .bind(&display.last_four)
            .bind(display.exp_month.map(i16::from))
            .bind(display.exp_year.map(|y| y as i16))
            .bind(&display.phone_masked)
            .bind(at)
            .bind(method_status(*awaiting_verification))
            .execute(&mut *conn)
            .await?;
        }
        CustomerEvent::PaymentMethodVerified {
            payment_method_id, ..
        } => {
            sqlx::query(
                "UPDATE customer_payment_methods SET status = $2 WHERE payment_method_id = $1",
            )
            .bind(payment_method_id.as_uuid())
            .bind(method_status(false))
            .execute(&mut *conn)
            .await?;
        }
        CustomerEvent::PaymentMethodVerificationFailed {
            payment_method_id, ..
        }
        | CustomerEvent::PaymentMethodRemoved {
            payment_method_id, ..
        } => {
            sqlx::query("DELETE FROM customer_payment_methods WHERE payment_method_id = $1")
                .bind(payment_method_id.as_uuid())
                .execute(&mut *conn)
                .await?;
            sqlx::query(
                "UPDATE customers SET default_payment_method_id = NULL
                  WHERE customer_id = $1 AND default_payment_method_id = $2",
            )
            .bind(customer_id)
            .bind(payment_method_id.as_uuid())
            .execute(&mut *conn)
            .await?;
        }
        CustomerEvent::DefaultPaymentMethodSet {
            payment_method_id, ..
        } => {
            sqlx::query(
                "UPDATE customers SET default_payment_method_id = $2 WHERE customer_id = $1",
            )
            .bind(customer_id)
            .bind(payment_method_id.as_uuid())
            .execute(&mut *conn)
            .await?;
        }
    }
    Ok(())
}

/// A saved method's `status` column: `ACTIVE` (chargeable) or `AWAITING_VERIFICATION`.
fn method_status(awaiting_verification: bool) -> &'static str {
    if awaiting_verification {
        "AWAITING_VERIFICATION"
    } else {
        "ACTIVE"
    }
}

/// A customer as the read model holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CustomerRow {
    pub customer_id: Uuid,
    pub merchant_id: String,
    pub reference: String,
    pub default_payment_method_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
}

/// A saved method as the read model holds it: display data only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MethodRow {
    pub payment_method_id: Uuid,
    pub customer_id: Uuid,
    pub provider: String,
    pub method_type: String,
    pub brand: Option<String>,
    pub last_four: Option<String>,
    pub exp_month: Option<i16>,
    pub exp_year: Option<i16>,
    pub phone_masked: Option<String>,
    pub saved_at: DateTime<Utc>,
    /// `ACTIVE`, or `AWAITING_VERIFICATION` until the customer has verified it at the provider.
    pub status: String,
}

/// One customer, if `merchant` (when given) owns it.
pub async fn get(
    pool: &PgPool,
    customer_id: Uuid,
    merchant: Option<&str>,
) -> Result<Option<CustomerRow>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT customer_id, merchant_id, reference, default_payment_method_id, created_at,
                updated_at, version
           FROM customers WHERE customer_id = $1 AND ($2::text IS NULL OR merchant_id = $2)",
    )
    .bind(customer_id)
    .bind(merchant)
    .fetch_optional(pool)
    .await?;
    row.map(|row| {
        Ok(CustomerRow {
            customer_id: row.try_get("customer_id")?,
            merchant_id: row.try_get("merchant_id")?,
            reference: row.try_get("reference")?,
            default_payment_method_id: row.try_get("default_payment_method_id")?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
            version: row.try_get("version")?,
        })
    })
    .transpose()
}

/// Saved methods listed at most at once (a customer keeps at most
/// `domain::customer::SAVED_METHODS_MAX`).
pub const METHODS_LIST_MAX: i64 = 100;

/// A customer's saved methods, oldest first.
pub async fn methods(pool: &PgPool, customer_id: Uuid) -> Result<Vec<MethodRow>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT payment_method_id, customer_id, provider, method_type, brand, last_four,
                exp_month, exp_year, phone_masked, saved_at, status
           FROM customer_payment_methods WHERE customer_id = $1
          ORDER BY saved_at, payment_method_id LIMIT $2",
    )
    .bind(customer_id)
    .bind(METHODS_LIST_MAX)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(MethodRow {
                payment_method_id: row.try_get("payment_method_id")?,
                customer_id: row.try_get("customer_id")?,
                provider: row.try_get("provider")?,
                method_type: row.try_get("method_type")?,
                brand: row.try_get("brand")?,
                last_four: row.try_get("last_four")?,
                exp_month: row.try_get("exp_month")?,
                exp_year: row.try_get("exp_year")?,
                phone_masked: row.try_get("phone_masked")?,
                saved_at: row.try_get("saved_at")?,
                status: row.try_get("status")?,
            })
        })
        .collect()
}
