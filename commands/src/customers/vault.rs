//! What is kept beside a customer's stream because it must be erasable: the email, and each
//! saved method's source id at its provider.

use chrono::{DateTime, Utc};
use connectors::SavedSource;
use domain::{CustomerId, MerchantId, SavedMethodId};
use secrecy::{ExposeSecret, SecretString};
use sqlx::{PgPool, Row};

/// Keeps the customer's email (or none); an earlier row of the same customer is kept as is.
pub async fn remember_contact(
    pool: &PgPool,
    customer: CustomerId,
    merchant: &MerchantId,
    email: Option<&str>,
    at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO customer_contacts (customer_id, merchant_id, email, updated_at)
         VALUES ($1, $2, $3, $4) ON CONFLICT (customer_id) DO NOTHING",
    )
    .bind(customer.as_uuid())
    .bind(merchant.as_str())
    .bind(email)
    .bind(at)
    .execute(pool)
    .await?;
    Ok(())
}

/// The customer's email, if one is kept.
pub async fn email(pool: &PgPool, customer: CustomerId) -> Result<Option<String>, sqlx::Error> {
    let email: Option<Option<String>> =
        sqlx::query_scalar("SELECT email FROM customer_contacts WHERE customer_id = $1")
            .bind(customer.as_uuid())
            .fetch_optional(pool)
            .await?;
    Ok(email.flatten())
}

/// Keeps the provider's source of a saved method, with where the customer verifies it when
/// the provider asks for that; a retried save keeps the first.
pub async fn keep_source(
    pool: &PgPool,
    method: SavedMethodId,
    customer: CustomerId,
    provider: &str,
    source: &SavedSource,
    at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO saved_method_sources
             (payment_method_id, customer_id, provider, source_id, saved_at, verification_url)
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (payment_method_id) DO NOTHING",
    )
    .bind(method.as_uuid())
    .bind(customer.as_uuid())
    .bind(provider)
    .bind(source.source_id.expose_secret())
    .bind(at)
    .bind(source.verification_url.as_deref())
    .execute(pool)
    .await?;
    Ok(())
}

/// Where the customer verifies a saved method, while the provider waits for that.
pub async fn verification_url(
    pool: &PgPool,
    method: SavedMethodId,
) -> Result<Option<String>, sqlx::Error> {
    let url: Option<Option<String>> = sqlx::query_scalar(
        "SELECT verification_url FROM saved_method_sources WHERE payment_method_id = $1",
    )
    .bind(method.as_uuid())
    .fetch_optional(pool)
    .await?;
    Ok(url.flatten())
}

/// Forgets the verification page of a method the provider now charges.
pub async fn verified(pool: &PgPool, method: SavedMethodId) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE saved_method_sources SET verification_url = NULL WHERE payment_method_id = $1",
    )
    .bind(method.as_uuid())
    .execute(pool)
    .await?;
    Ok(())
}

/// The provider's source of a saved method of `customer`, while it is kept.
pub async fn source(
    pool: &PgPool,
    method: SavedMethodId,
    customer: CustomerId,
) -> Result<Option<SecretString>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT source_id FROM saved_method_sources WHERE payment_method_id = $1 AND customer_id = $2",
    )
    .bind(method.as_uuid())
    .bind(customer.as_uuid())
    .fetch_optional(pool)
    .await?;
    row.map(|row| {
        row.try_get::<String, _>("source_id")
            .map(SecretString::from)
    })
    .transpose()
}

/// The customer a kept source belongs to.
pub async fn owner(
    pool: &PgPool,
    method: SavedMethodId,
) -> Result<Option<CustomerId>, sqlx::Error> {
    let owner: Option<uuid::Uuid> = sqlx::query_scalar(
        "SELECT customer_id FROM saved_method_sources WHERE payment_method_id = $1",
    )
    .bind(method.as_uuid())
    .fetch_optional(pool)
    .await?;
    Ok(owner.map(CustomerId::from_uuid))
}

/// Forgets a source the provider has detached.
pub async fn forget_source(pool: &PgPool, method: SavedMethodId) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM saved_method_sources WHERE payment_method_id = $1")
        .bind(method.as_uuid())
        .execute(pool)
        .await?;
    Ok(())
}
