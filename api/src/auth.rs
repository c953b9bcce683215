//! API keys: `Authorization: Bearer <key>`. Keys are 256-bit random strings stored only as
//! their SHA-256; the role decides what a key may do, and a checkout key is bound to one
//! merchant and sees only that merchant's payments.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use actix_web::{web, FromRequest, HttpRequest};
use domain::MerchantId;
use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::{PgPool, Row};

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
        [
            Role::Checkout,
            Role::Analyst,
            Role::Auditor,
            Role::Admin,
            Role::Operator,
        ]
        .into_iter()
        .find(|r| r.as_str() == text)
    }
}

/// Who is calling, established from the API key.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The key's id (never the key): what per-caller bounds count by.
    pub key_id: uuid::Uuid,
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

/// Creates a key and stores its hash; the key itself exists only in the return value.
pub async fn create_key(
    pool: &PgPool,
    role: Role,
    merchant: Option<&MerchantId>,
) -> Result<String, sqlx::Error> {
    let mut secret = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut secret);
    let key = format!("pl_{}_{}", role.as_str(), hex::encode(secret));
    let prefix: String = key.chars().take(16).collect();
    sqlx::query(
        "INSERT INTO api_keys (id, key_hash, key_prefix, role, merchant_id)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(uuid::Uuid::new_v4())
    .bind(hash_key(&key))
    .bind(prefix)
    .bind(role.as_str())
    .bind(merchant.map(MerchantId::as_str))
    .execute(pool)
    .await?;
    Ok(key)
}

/// How long a key that was found stays trusted without asking the database again: a revoked
/// key stops working within this time.
const KEY_CACHE_TTL: Duration = Duration::from_secs(30);
/// Keys cached at most; the cache is emptied when full (bounded memory, simple).
const KEY_CACHE_ENTRIES_MAX: usize = 10_000;

/// How long a key the database did not know is refused without asking it again: a flood of
/// made-up keys costs one query per distinct key and this long, not one per request.
const UNKNOWN_KEY_TTL: Duration = Duration::from_secs(10);

/// Known keys by hash, so a request does not cost a database round trip for its key; and
/// unknown ones, so a guessed key does not either.
#[derive(Default)]
pub struct KeyCache {
    entries: Mutex<HashMap<Vec<u8>, (Instant, Caller)>>,
    unknown: Mutex<HashMap<Vec<u8>, Instant>>,
}

impl KeyCache {
    fn known_unknown(&self, hash: &[u8]) -> bool {
        let unknown = self.unknown.lock().unwrap_or_else(|e| e.into_inner());
        unknown
            .get(hash)
            .is_some_and(|at| at.elapsed() < UNKNOWN_KEY_TTL)
    }

    fn put_unknown(&self, hash: Vec<u8>) {
        let mut unknown = self.unknown.lock().unwrap_or_else(|e| e.into_inner());
        if unknown.len() >= KEY_CACHE_ENTRIES_MAX {
            unknown.retain(|_, at| at.elapsed() < UNKNOWN_KEY_TTL);
            if unknown.len() >= KEY_CACHE_ENTRIES_MAX {
                unknown.clear();
            }
        }
        unknown.insert(hash, Instant::now());
    }

    fn get(&self, hash: &[u8]) -> Option<Caller> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .get(hash)
            .filter(|(at, _)| at.elapsed() < KEY_CACHE_TTL)
            .map(|(_, caller)| caller.clone())
    }

    fn put(&self, hash: Vec<u8>, caller: Caller) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= KEY_CACHE_ENTRIES_MAX {
            entries.clear();
        }
        entries.insert(hash, (Instant::now(), caller));
    }
}

#[tracing::instrument(skip_all)]
async fn authenticate(
    pool: &PgPool,
    cache: Option<&KeyCache>,
    header: Option<String>,
) -> Result<Caller, Problem> {
    let header = header.ok_or_else(|| Problem::unauthorized("missing Authorization header"))?;
    let key = header
        .strip_prefix("Bearer ")
        .map(str::trim)
        .filter(|k| !k.is_empty() && k.len() <= 256)
        .ok_or_else(|| Problem::unauthorized("expected `Authorization: Bearer <api key>`"))?;
    let hash = hash_key(key);
    if let Some(caller) = cache.and_then(|c| c.get(&hash)) {
        return Ok(caller);
    }
    let unknown = || Problem::unauthorized("unknown or revoked API key");
    if cache.is_some_and(|c| c.known_unknown(&hash)) {
        return Err(unknown());
    }
    let row = sqlx::query(
        "SELECT id, role, merchant_id FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL",
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
    let role: String = row
        .try_get("role")
        .map_err(|_| Problem::unauthorized("bad key"))?;
    let merchant: Option<String> = row
        .try_get("merchant_id")
        .map_err(|_| Problem::unauthorized("bad key"))?;
    let caller = Caller {
        key_id: row
            .try_get("id")
            .map_err(|_| Problem::unauthorized("bad key"))?,
        role: Role::parse(&role).ok_or_else(|| Problem::unauthorized("bad key"))?,
        merchant: merchant.and_then(|m| MerchantId::parse(&m).ok()),
    };
    if let Some(cache) = cache {
        cache.put(hash, caller.clone());
    }
    Ok(caller)
}

impl FromRequest for Caller {
    type Error = Problem;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _payload: &mut actix_web::dev::Payload) -> Self::Future {
        let pool = req.app_data::<web::Data<PgPool>>().cloned();
        let cache = req.app_data::<web::Data<KeyCache>>().cloned();
        let header = req
            .headers()
            .get(actix_web::http::header::AUTHORIZATION)
            .and_then(|h| h.to_str().ok())
            .map(str::to_owned);
        Box::pin(async move {
            let pool = pool.ok_or_else(|| Problem::unavailable("no database configured"))?;
            authenticate(pool.get_ref(), cache.as_ref().map(|c| c.get_ref()), header).await
        })
    }
}
