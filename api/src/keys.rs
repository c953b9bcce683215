//! The life of an API key: created for an environment (`live` or `test`, written into the key
//! as `pl_live_...` / `pl_test_...`) with an optional expiry, listed, revoked, rotated (a new
//! key with the same grants; the old one expires after an overlap). Shared by `payledger keys`
//! and the admin API. A change is announced by the database (`NOTIFY payledger_api_keys`), so
//! every node forgets a revoked key at once (`auth::KeyCache::listen`).

use std::time::Duration;

use chrono::{DateTime, Utc};
use domain::MerchantId;
use rand::RngCore;
use serde::Serialize;
use sqlx::{PgPool, Row};
use uuid::Uuid;

use crate::auth::{hash_key, Role};

/// The channel the database announces key changes on (migration `key_lifecycle`).
pub const CHANGES_CHANNEL: &str = "payledger_api_keys";
/// The longest a key may live, and a rotation's overlap at most.
pub const LIFETIME_MAX: Duration = Duration::from_secs(5 * 365 * 24 * 3_600);
/// Keys a list answers at most.
pub const LIST_MAX: i64 = 1_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyEnvironment {
    Live,
    Test,
}

impl KeyEnvironment {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyEnvironment::Live => "live",
            KeyEnvironment::Test => "test",
        }
    }

    pub fn parse(text: &str) -> Option<KeyEnvironment> {
        [KeyEnvironment::Live, KeyEnvironment::Test]
            .into_iter()
            .find(|e| e.as_str() == text)
    }

    /// What a key is made for when nobody says: live in production, test elsewhere.
    pub fn of_deployment(production: bool) -> KeyEnvironment {
        if production {
            KeyEnvironment::Live
        } else {
            KeyEnvironment::Test
        }
    }
}

/// A key to create.
#[derive(Debug, Clone)]
pub struct NewKey {
    pub role: Role,
    pub merchant: Option<MerchantId>,
    pub environment: KeyEnvironment,
    pub expires_in: Option<Duration>,
}

impl NewKey {
    /// The grants must fit the role: a checkout key is bound to a merchant, no other is.
    pub fn check(&self) -> Result<(), String> {
        if (self.role == Role::Checkout) != self.merchant.is_some() {
            return Err("a checkout key needs a merchant; other roles take none".into());
        }
        if self
            .expires_in
            .is_some_and(|d| d.is_zero() || d > LIFETIME_MAX)
        {
            return Err("a key expires after 1 second to 5 years".into());
        }
        Ok(())
    }
}

/// A key as operators see it: never the key, never its hash.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct KeyRecord {
    pub id: Uuid,
    /// The key's first characters, to tell keys apart.
    pub prefix: String,
    #[schema(schema_with = role_name)]
    pub role: String,
    pub merchant_id: Option<String>,
    #[schema(schema_with = environment_name)]
    pub environment: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub rotated_from: Option<Uuid>,
}

pub(crate) fn role_name() -> utoipa::openapi::schema::ObjectBuilder {
    crate::openapi::one_of_texts(Role::ALL.map(Role::as_str))
}

pub(crate) fn environment_name() -> utoipa::openapi::schema::ObjectBuilder {
    crate::openapi::one_of_texts(
        [KeyEnvironment::Live, KeyEnvironment::Test].map(KeyEnvironment::as_str),
    )
}

/// A key just made: the key itself exists only here.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedKey {
    /// The key: shown once, never stored (only its hash is).
    pub key: String,
    #[serde(flatten)]
    pub record: KeyRecord,
}

const RECORD_COLUMNS: &str = "id, key_prefix, role, merchant_id, environment, created_at, \
                              expires_at, last_used_at, revoked_at, rotated_from";

fn record(row: &sqlx::postgres::PgRow) -> Result<KeyRecord, sqlx::Error> {
    Ok(KeyRecord {
        id: row.try_get("id")?,
        prefix: row.try_get("key_prefix")?,
        role: row.try_get("role")?,
        merchant_id: row.try_get("merchant_id")?,
        environment: row.try_get("environment")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        last_used_at: row.try_get("last_used_at")?,
        revoked_at: row.try_get("revoked_at")?,
        rotated_from: row.try_get("rotated_from")?,
    })
}

/// `pl_<environment>_<role>_<64 hex>`: 256 random bits; the prefix shows what it is.
fn generate(environment: KeyEnvironment, role: Role) -> (String, String) {
    let mut secret = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut secret);
    let head = format!("pl_{}_{}_", environment.as_str(), role.as_str());
    let key = format!("{head}{}", hex::encode(secret));
    let prefix = key.chars().take(head.len() + 6).collect();
    (key, prefix)
}

/// The environment a key names in its prefix (`None`: a key from before environments).
pub fn environment_of(key: &str) -> Option<KeyEnvironment> {
    let rest = key.strip_prefix("pl_")?;
    let (environment, _) = rest.split_once('_')?;
    KeyEnvironment::parse(environment)
}

async fn insert(
    executor: impl sqlx::PgExecutor<'_>,
    new: &NewKey,
    rotated_from: Option<Uuid>,
) -> Result<CreatedKey, sqlx::Error> {
    let (key, prefix) = generate(new.environment, new.role);
    let expires_in_s = new.expires_in.map(|d| d.as_secs_f64());
    let row = sqlx::query(&format!(
        "INSERT INTO api_keys (id, key_hash, key_prefix, role, merchant_id, environment,
                               expires_at, rotated_from)
         VALUES ($1, $2, $3, $4, $5, $6, now() + make_interval(secs => $7), $8)
         RETURNING {RECORD_COLUMNS}"
    ))
    .bind(Uuid::new_v4())
    .bind(hash_key(&key))
    .bind(prefix)
    .bind(new.role.as_str())
    .bind(new.merchant.as_ref().map(MerchantId::as_str))
    .bind(new.environment.as_str())
    .bind(expires_in_s)
    .bind(rotated_from)
    .fetch_one(executor)
    .await?;
    Ok(CreatedKey {
        key,
        record: record(&row)?,
    })
}

/// Creates a key; its hash is stored, the key is answered once.
pub async fn create(pool: &PgPool, new: &NewKey) -> Result<CreatedKey, sqlx::Error> {
    insert(pool, new, None).await
}

/// Keys newest first, revoked and expired ones included.
pub async fn list(pool: &PgPool, limit: i64) -> Result<Vec<KeyRecord>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {RECORD_COLUMNS} FROM api_keys ORDER BY created_at DESC, id LIMIT $1"
    ))
    .bind(limit.clamp(1, LIST_MAX))
    .fetch_all(pool)
    .await?
    .iter()
    .map(record)
    .collect()
}

/// Revokes a key (a repeat changes nothing); `None` when there is no such key.
pub async fn revoke(pool: &PgPool, id: Uuid) -> Result<Option<KeyRecord>, sqlx::Error> {
    let row = sqlx::query(&format!(
        "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, now()) WHERE id = $1
         RETURNING {RECORD_COLUMNS}"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await?;
    row.as_ref().map(record).transpose()
}

#[derive(Debug)]
pub enum RotateError {
    NotFound,
    /// Revoked or expired: nothing to rotate.
    NotActive,
    Database(sqlx::Error),
}

impl From<sqlx::Error> for RotateError {
    fn from(error: sqlx::Error) -> Self {
        RotateError::Database(error)
    }
}

/// A new key with the old one's grants; the old one keeps working for `overlap` (while
/// clients move over), then expires. Answers the new key and the old one's record.
pub async fn rotate(
    pool: &PgPool,
    id: Uuid,
    overlap: Duration,
) -> Result<(CreatedKey, KeyRecord), RotateError> {
    let mut tx = pool.begin().await?;
    let old = sqlx::query(
        "SELECT role, merchant_id, environment,
                revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now()) AS active
           FROM api_keys WHERE id = $1 FOR UPDATE",
    )
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or(RotateError::NotFound)?;
    if !old.try_get::<bool, _>("active")? {
        return Err(RotateError::NotActive);
    }
    let role: String = old.try_get("role")?;
    let merchant: Option<String> = old.try_get("merchant_id")?;
    let environment: String = old.try_get("environment")?;
    let new = NewKey {
        role: Role::parse(&role).ok_or(RotateError::NotActive)?,
        merchant: merchant.and_then(|m| MerchantId::parse(&m).ok()),
        environment: KeyEnvironment::parse(&environment).ok_or(RotateError::NotActive)?,
        expires_in: None,
    };
    let created = insert(&mut *tx, &new, Some(id)).await?;
    let old = sqlx::query(&format!(
        "UPDATE api_keys
            SET expires_at = LEAST(COALESCE(expires_at, 'infinity'),
                                   now() + make_interval(secs => $2))
          WHERE id = $1 RETURNING {RECORD_COLUMNS}"
    ))
    .bind(id)
    .bind(overlap.min(LIFETIME_MAX).as_secs_f64())
    .fetch_one(&mut *tx)
    .await?;
    let old = record(&old)?;
    tx.commit().await?;
    Ok((created, old))
}

/// `90d`, `24h`, `30m`, `45s`: a whole number and a unit.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("`{text}`: add a unit (s, m, h or d)"))?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("`{text}`: expected a whole number and a unit, e.g. 90d"))?;
    let seconds = match unit {
        "s" => Some(number),
        "m" => number.checked_mul(60),
        "h" => number.checked_mul(3_600),
        "d" => number.checked_mul(86_400),
        _ => None,
    }
    .ok_or_else(|| format!("`{text}`: the unit is s, m, h or d"))?;
    Ok(Duration::from_secs(seconds))
}

/// Listens for key changes on a connection of its own and makes `cache` forget each changed
/// key at once; when the connection is lost (announcements may have been missed) it forgets
/// every key, and listens again.
pub async fn watch_changes(
    database_url: String,
    cache: std::sync::Arc<crate::auth::KeyCache>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    const RETRY: Duration = Duration::from_secs(1);
    loop {
        match sqlx::postgres::PgListener::connect(&database_url).await {
            Ok(mut listener) => match listener.listen(CHANGES_CHANNEL).await {
                Ok(()) => {
                    cache.forget_all();
                    loop {
                        tokio::select! {
                            received = listener.try_recv() => match received {
                                Ok(Some(notice)) => match notice.payload().parse::<Uuid>() {
                                    Ok(id) => cache.forget(id),
                                    Err(_) => cache.forget_all(),
                                },
                                // Reconnected: what was said meanwhile is unknown.
                                Ok(None) => cache.forget_all(),
                                Err(error) => {
                                    tracing::warn!(%error, "api key changes: listening failed");
                                    cache.forget_all();
                                    break;
                                }
                            },
                            _ = shutdown.changed() => return,
                        }
                    }
                }
                Err(error) => tracing::warn!(%error, "api key changes: LISTEN failed"),
            },
            Err(error) => tracing::warn!(%error, "api key changes: cannot connect"),
        }
        tokio::select! {
            _ = tokio::time::sleep(RETRY) => {}
            _ = shutdown.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_names_its_environment_and_role_in_its_prefix() {
        let (key, prefix) = generate(KeyEnvironment::Live, Role::Checkout);
        assert!(key.starts_with("pl_live_checkout_"), "{key}");
        assert_eq!(key.len(), "pl_live_checkout_".len() + 64);
        assert_eq!(prefix.len(), "pl_live_checkout_".len() + 6);
        assert!(key.starts_with(&prefix));
        assert_eq!(environment_of(&key), Some(KeyEnvironment::Live));
        let (test, _) = generate(KeyEnvironment::Test, Role::Admin);
        assert_eq!(environment_of(&test), Some(KeyEnvironment::Test));
        assert_eq!(
            environment_of("pl_checkout_0123"),
            None,
            "a key from before"
        );
    }

    #[test]
    fn durations_are_a_number_and_a_unit() {
        assert_eq!(parse_duration("90d"), Ok(Duration::from_secs(90 * 86_400)));
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(1_800)));
        assert_eq!(parse_duration("45s"), Ok(Duration::from_secs(45)));
        for bad in ["", "90", "d", "1.5h", "-1d", "10w", "99999999999999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn grants_fit_the_role_and_lifetimes_are_bounded() {
        let merchant = MerchantId::parse("m-1").ok();
        let new = |role, merchant: Option<MerchantId>, expires_in| NewKey {
            role,
            merchant,
            environment: KeyEnvironment::Test,
            expires_in,
        };
        assert!(new(Role::Checkout, merchant.clone(), None).check().is_ok());
        assert!(new(Role::Checkout, None, None).check().is_err());
        assert!(new(Role::Admin, merchant, None).check().is_err());
        assert!(new(Role::Admin, None, Some(Duration::ZERO))
            .check()
            .is_err());
        assert!(new(Role::Admin, None, Some(LIFETIME_MAX * 2))
            .check()
            .is_err());
        assert!(new(Role::Admin, None, Some(Duration::from_secs(60)))
            .check()
            .is_ok());
    }
}
