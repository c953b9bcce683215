//! API keys: `Authorization: Bearer <key>`. Keys are 256-bit random strings stored only as
//! their SHA-256; the role decides what a key may do, and a checkout key is bound to one
//! merchant and sees only that merchant's payments.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use actix_web::{web, FromRequest, HttpRequest};
use chrono::{DateTime, Utc};
use domain::MerchantId;
use sha2::{Digest, Sha256};
use sqlx::{PgPool, Row};
use uuid::Uuid;

use crate::jwt::JwtVerifier;
use crate::keys;
use crate::problem::Problem;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Checkout,
    Analyst,
    Auditor,
    Admin,
    /// Sees health, metrics and the dashboard; issues no command, reads no payment.
    Operator,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Checkout,
        Role::Analyst,
        Role::Auditor,
        Role::Admin,
        Role::Operator,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Checkout => "checkout",
            Role::Analyst => "analyst",
            Role::Auditor => "auditor",
            Role::Admin => "admin",
            Role::Operator => "operator",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == text)
    }
}

/// Who is calling, established from the API key.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The key's id (never the key): what per-caller bounds count by.
    pub key_id: Uuid,
    pub role: Role,
    pub merchant: Option<MerchantId>,
}

impl Caller {
    /// Health, metrics and the dashboard: operators and admins.
    pub fn require_operator(&self) -> Result<(), Problem> {
        match self.role {
            Role::Operator | Role::Admin => Ok(()),
            _ => Err(Problem::forbidden(
                "this key's role may not see operations data",
            )),
        }
    }

    /// The merchant this caller is confined to (`None`: every merchant, for admins).
    /// Roles without access to payments are refused.
    pub fn payment_scope(&self) -> Result<Option<&MerchantId>, Problem> {
        match self.role {
            Role::Admin => Ok(None),
            Role::Checkout => self
                .merchant
                .as_ref()
                .map(Some)
                .ok_or_else(|| Problem::forbidden("this key is not bound to a merchant")),
            Role::Analyst | Role::Auditor | Role::Operator => Err(Problem::forbidden(
                "this key's role may not use the payments API",
            )),
        }
    }
}

pub fn hash_key(key: &str) -> Vec<u8> {
    Sha256::digest(key.as_bytes()).to_vec()
}

/// Creates a key for the test environment, with no expiry; the key exists only in the
/// return value (see `keys` for the whole life of a key).
pub async fn create_key(
    pool: &PgPool,
    role: Role,
    merchant: Option<&MerchantId>,
) -> Result<String, sqlx::Error> {
    let new = keys::NewKey {
        role,
        merchant: merchant.cloned(),
        environment: keys::KeyEnvironment::Test,
        expires_in: None,
    };
    Ok(keys::create(pool, &new).await?.key)
}

/// How long a key that was found stays trusted without asking the database again. A change to
/// a key is announced (`keys::CHANGES_CHANNEL`) and forgets it at once; this bounds how long
/// a missed announcement (the listening connection lost) could keep a revoked key alive.
const KEY_CACHE_TTL: Duration = Duration::from_secs(30);
/// Keys cached at most; the cache is emptied when full (bounded memory, simple).
const KEY_CACHE_ENTRIES_MAX: usize = 10_000;
/// How long a key the database did not know is refused without asking it again: a flood of
/// made-up keys costs one query per distinct key and this long, not one per request.
const UNKNOWN_KEY_TTL: Duration = Duration::from_secs(10);
/// `last_used_at` is written at most this often per key, whichever node sees the use.
const LAST_USED_INTERVAL: Duration = Duration::from_secs(60);

/// A known key: who it is, and until when.
#[derive(Clone)]
struct Known {
    at: Instant,
    caller: Caller,
    expires_at: Option<DateTime<Utc>>,
}

/// Known keys by hash, so a request does not cost a database round trip for its key; unknown
/// ones, so a guessed key does not either; and when each key's use was last written.
#[derive(Default)]
pub struct KeyCache {
    /// Test keys are refused (`PAYLEDGER_ENV=production`).
    production: bool,
    entries: Mutex<HashMap<Vec<u8>, Known>>,
    unknown: Mutex<HashMap<Vec<u8>, Instant>>,
    used: Mutex<HashMap<Uuid, Instant>>,
}

fn locked<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Caches only: a panic elsewhere leaves them usable.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl KeyCache {
    pub fn new(production: bool) -> Self {
        Self {
            production,
            ..Self::default()
        }
    }

    /// Whether test keys are refused here.
    pub fn production(&self) -> bool {
        self.production
    }

    fn get(&self, hash: &[u8]) -> Option<Caller> {
        let entries = locked(&self.entries);
        entries
            .get(hash)
            .filter(|known| known.at.elapsed() < KEY_CACHE_TTL)
            .filter(|known| known.expires_at.is_none_or(|at| at > Utc::now()))
            .map(|known| known.caller.clone())
    }

    fn put(&self, hash: Vec<u8>, known: Known) {
        let mut entries = locked(&self.entries);
        if entries.len() >= KEY_CACHE_ENTRIES_MAX {
            entries.clear();
        }
        entries.insert(hash, known);
    }

    fn known_unknown(&self, hash: &[u8]) -> bool {
        locked(&self.unknown)
            .get(hash)
            .is_some_and(|at| at.elapsed() < UNKNOWN_KEY_TTL)
    }

    fn put_unknown(&self, hash: Vec<u8>) {
        let mut unknown = locked(&self.unknown);
        if unknown.len() >= KEY_CACHE_ENTRIES_MAX {
            unknown.retain(|_, at| at.elapsed() < UNKNOWN_KEY_TTL);
            if unknown.len() >= KEY_CACHE_ENTRIES_MAX {
                unknown.clear();
            }
        }
        unknown.insert(hash, Instant::now());
    }

    /// Forgets a key that changed (revoked, expiry moved...): its next use asks the database.
    pub fn forget(&self, key_id: Uuid) {
        locked(&self.entries).retain(|_, known| known.caller.key_id != key_id);
    }

    /// Forgets every key (announcements may have been missed).
    pub fn forget_all(&self) {
        locked(&self.entries).clear();
    }

    /// Whether this use of the key should be written as its `last_used_at` now.
    fn use_is_due(&self, key_id: Uuid) -> bool {
        let mut used = locked(&self.used);
        if used
            .get(&key_id)
            .is_some_and(|at| at.elapsed() < LAST_USED_INTERVAL)
        {
            return false;
        }
        if used.len() >= KEY_CACHE_ENTRIES_MAX {
            used.retain(|_, at| at.elapsed() < LAST_USED_INTERVAL);
        }
        used.insert(key_id, Instant::now());
        true
    }
}

/// Writes a key's `last_used_at` off the request's path (at most once a minute per key).
fn record_use(pool: &PgPool, cache: Option<&KeyCache>, key_id: Uuid) {
    if !cache.is_some_and(|c| c.use_is_due(key_id)) {
        return;
    }
    let pool = pool.clone();
    tokio::spawn(async move {
        // The database's own check makes it once a minute across every node, not once per node.
        let written = sqlx::query(
            "UPDATE api_keys SET last_used_at = now() WHERE id = $1 \
             AND (last_used_at IS NULL OR last_used_at < now() - make_interval(secs => $2))",
        )
        .bind(key_id)
        .bind(LAST_USED_INTERVAL.as_secs_f64())
        .execute(&pool)
        .await;
        if let Err(error) = written {
            tracing::warn!(%error, "api key last use not recorded");
        }
    });
}

#[tracing::instrument(skip_all)]
async fn authenticate(
    pool: &PgPool,
    cache: Option<&KeyCache>,
    jwt: Option<&JwtVerifier>,
    header: Option<String>,
) -> Result<Caller, Problem> {
    let header = header.ok_or_else(|| Problem::unauthorized("missing Authorization header"))?;
    let credential = header
        .strip_prefix("Bearer ")
        .map(str::trim)
        .filter(|k| !k.is_empty() && k.len() <= crate::jwt::TOKEN_BYTES_MAX)
        .ok_or_else(|| {
            Problem::unauthorized("expected `Authorization: Bearer <api key or token>`")
        })?;
    if crate::jwt::looks_like_jwt(credential) {
        return match jwt {
            Some(verifier) => verifier.verify(credential).await,
            None => Err(Problem::unauthorized(
                "tokens are not accepted here; use an API key",
            )),
        };
    }
    let key = Some(credential)
        .filter(|k| k.len() <= 256)
        .ok_or_else(|| Problem::unauthorized("unknown, expired or revoked API key"))?;
    let hash = hash_key(key);
    if let Some(caller) = cache.and_then(|c| c.get(&hash)) {
        record_use(pool, cache, caller.key_id);
        return Ok(caller);
    }
    let unknown = || Problem::unauthorized("unknown, expired or revoked API key");
    if cache.is_some_and(|c| c.known_unknown(&hash)) {
        return Err(unknown());
    }
    let row = sqlx::query(
        "SELECT id, role, merchant_id, environment, expires_at FROM api_keys
          WHERE key_hash = $1 AND revoked_at IS NULL
            AND (expires_at IS NULL OR expires_at > now())",
    )
    .bind(&hash)
    .fetch_optional(pool)
    .await
    .map_err(|error| {
        tracing::error!(%error, "api key lookup failed");
        Problem::unavailable("cannot check the API key right now")
    })?;
    let Some(row) = row else {
        if let Some(cache) = cache {
            cache.put_unknown(hash);
        }
        return Err(unknown());
    };
    let bad = |_| Problem::unauthorized("bad key");
    let role: String = row.try_get("role").map_err(bad)?;
    let merchant: Option<String> = row.try_get("merchant_id").map_err(bad)?;
    let environment: String = row.try_get("environment").map_err(bad)?;
    if cache.is_some_and(|c| c.production) && environment != keys::KeyEnvironment::Live.as_str() {
        return Err(Problem::unauthorized("a test key is refused in production"));
    }
    let caller = Caller {
        key_id: row.try_get("id").map_err(bad)?,
        role: Role::parse(&role).ok_or_else(|| Problem::unauthorized("bad key"))?,
        merchant: merchant.and_then(|m| MerchantId::parse(&m).ok()),
    };
    record_use(pool, cache, caller.key_id);
    if let Some(cache) = cache {
        let known = Known {
            at: Instant::now(),
            caller: caller.clone(),
            expires_at: row.try_get("expires_at").map_err(bad)?,
        };
        cache.put(hash, known);
    }
    Ok(caller)
}

impl FromRequest for Caller {
    type Error = Problem;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _payload: &mut actix_web::dev::Payload) -> Self::Future {
        let pool = req.app_data::<web::Data<PgPool>>().cloned();
        let cache = req.app_data::<web::Data<KeyCache>>().cloned();
        let jwt = req.app_data::<web::Data<JwtVerifier>>().cloned();
        let header = req
            .headers()
            .get(actix_web::http::header::AUTHORIZATION)
            .and_then(|h| h.to_str().ok())
            .map(str::to_owned);
        Box::pin(async move {
            let pool = pool.ok_or_else(|| Problem::unavailable("no database configured"))?;
            let cache = cache.as_ref().map(|c| c.get_ref());
            authenticate(
                pool.get_ref(),
                cache,
                jwt.as_ref().map(|j| j.get_ref()),
                header,
            )
            .await
        })
    }
}
