//! `Authorization: Bearer <JWT>` from an auth service, beside API keys: tokens signed by the
//! configured issuer (`JWT_ISSUER`), checked against its published keys (`JWT_JWKS_URL`,
//! fetched, cached, fetched again for a key id it does not know), RS256 or ES256 only,
//! with `iss`, `aud`, `exp` and `nbf` checked within a bounded clock skew. Two claims give
//! the caller's role and, for a checkout caller, its merchant.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use domain::MerchantId;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;
use tokio::sync::{Mutex, RwLock};
use uuid::Uuid;

use crate::auth::{Caller, Role};
use crate::problem::Problem;

/// Clock skew allowed on `exp` and `nbf` at most, whatever is configured.
pub const LEEWAY_MAX_S: u64 = 300;
/// How long the issuer's keys are used before they are fetched again.
const JWKS_TTL: Duration = Duration::from_secs(600);
/// Fetches prompted by an unknown key id, at most one per this interval: a flood of tokens
/// naming made-up key ids does not become a flood of requests to the issuer.
const REFETCH_INTERVAL_MIN: Duration = Duration::from_secs(10);
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// A JWKS body larger than this is refused.
const JWKS_BYTES_MAX: usize = 256 * 1024;
/// Keys kept from one JWKS at most.
const KEYS_MAX: usize = 64;
/// A token longer than this is refused before it is parsed.
pub const TOKEN_BYTES_MAX: usize = 8 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtSettings {
    pub issuer: String,
    pub audience: String,
    pub jwks_url: String,
    pub leeway_s: u64,
    /// The claim naming the role (`checkout`, `analyst`, `auditor`, `admin`, `operator`).
    pub role_claim: String,
    /// The claim naming a checkout caller's merchant.
    pub merchant_claim: String,
}

impl JwtSettings {
    /// `JWT_ISSUER`, `JWT_AUDIENCE` and `JWT_JWKS_URL` turn it on (all three, or none);
    /// `JWT_LEEWAY_S` (default 60, at most 300), `JWT_ROLE_CLAIM` (default
    /// `payledger_role`), `JWT_MERCHANT_CLAIM` (default `payledger_merchant`).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Option<Self>, String> {
        let issuer = lookup("JWT_ISSUER").filter(|v| !v.is_empty());
        let audience = lookup("JWT_AUDIENCE").filter(|v| !v.is_empty());
        let jwks_url = lookup("JWT_JWKS_URL").filter(|v| !v.is_empty());
        let (issuer, audience, jwks_url) = match (issuer, audience, jwks_url) {
            (None, None, None) => return Ok(None),
            (Some(i), Some(a), Some(u)) => (i, a, u),
            _ => return Err("JWT_ISSUER, JWT_AUDIENCE and JWT_JWKS_URL go together".into()),
        };
        if !jwks_url.starts_with("https://") && !jwks_url.starts_with("http://") {
            return Err("JWT_JWKS_URL must be an http(s) URL".into());
        }
        let leeway_s = match lookup("JWT_LEEWAY_S") {
            None => 60,
            Some(v) => v
                .parse::<u64>()
                .ok()
                .filter(|s| *s <= LEEWAY_MAX_S)
                .ok_or_else(|| format!("JWT_LEEWAY_S must be 0 to {LEEWAY_MAX_S}"))?,
        };
        Ok(Some(JwtSettings {
            issuer,
            audience,
            jwks_url,
            leeway_s,
            role_claim: lookup("JWT_ROLE_CLAIM").unwrap_or_else(|| "payledger_role".into()),
            merchant_claim: lookup("JWT_MERCHANT_CLAIM")
                .unwrap_or_else(|| "payledger_merchant".into()),
        }))
    }
}

/// The issuer's keys by key id, with the algorithm each is for.
#[derive(Default)]
struct KeySet {
    fetched_at: Option<Instant>,
    keys: HashMap<String, (Algorithm, DecodingKey)>,
}

pub struct JwtVerifier {
    settings: JwtSettings,
    http: reqwest::Client,
    keys: RwLock<KeySet>,
    /// When an unknown key id last made us fetch (one fetch at a time).
    last_refetch: Mutex<Option<Instant>>,
}

/// Whether a bearer credential is a JWT (three dot-separated parts) rather than an API key.
pub fn looks_like_jwt(credential: &str) -> bool {
    credential.split('.').count() == 3 && !credential.starts_with("pl_")
}

fn refused(detail: &str) -> Problem {
    Problem::unauthorized(format!("the token is refused: {detail}"))
}

/// The algorithm a JWK is for, from its key type (RSA: RS256; EC P-256: ES256); other keys
/// are skipped. A JWK that names another algorithm than its type allows is skipped too.
fn usable(jwk: &jsonwebtoken::jwk::Jwk) -> Option<(Algorithm, DecodingKey)> {
    let algorithm = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
            Algorithm::ES256
        }
        _ => return None,
    };
    let named = jwk.common.key_algorithm.map(|a| format!("{a:?}"));
    if named.is_some_and(|n| n != format!("{algorithm:?}")) {
        return None;
    }
    Some((algorithm, DecodingKey::from_jwk(jwk).ok()?))
}

impl JwtVerifier {
    pub fn new(settings: JwtSettings) -> Result<Self, reqwest::Error> {
        Ok(Self {
            settings,
            http: reqwest::Client::builder().timeout(FETCH_TIMEOUT).build()?,
            keys: RwLock::default(),
            last_refetch: Mutex::new(None),
        })
    }

    async fn fetch(&self) -> Result<(), String> {
        let response = self
            .http
            .get(&self.settings.jwks_url)
            .send()
            .await
            .map_err(|e| format!("JWKS unreachable: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("JWKS answered {}", response.status()));
        }
        let body = response
            .bytes()
            .await
            .map_err(|e| format!("JWKS body: {e}"))?;
        if body.len() > JWKS_BYTES_MAX {
            return Err("JWKS body too large".into());
        }
        let set: JwkSet = serde_json::from_slice(&body).map_err(|e| format!("JWKS: {e}"))?;
        let keys: HashMap<_, _> = set
            .keys
            .iter()
            .filter_map(|jwk| Some((jwk.common.key_id.clone()?, usable(jwk)?)))
            .take(KEYS_MAX)
            .collect();
        let mut cached = self.keys.write().await;
        cached.keys = keys;
        cached.fetched_at = Some(Instant::now());
        Ok(())
    }

    async fn cached(&self, kid: &str) -> Option<(Algorithm, DecodingKey)> {
        let cached = self.keys.read().await;
        let fresh = cached.fetched_at.is_some_and(|at| at.elapsed() < JWKS_TTL);
        fresh.then(|| cached.keys.get(kid).cloned()).flatten()
    }

    /// The key for `kid`: cached, or fetched when the cache is stale or does not know it
    /// (the issuer rotated its keys), at most once per `REFETCH_INTERVAL_MIN` for the latter.
    async fn key(&self, kid: &str) -> Result<(Algorithm, DecodingKey), Problem> {
        if let Some(key) = self.cached(kid).await {
            return Ok(key);
        }
        {
            let mut last = self.last_refetch.lock().await;
            let stale = self
                .keys
                .read()
                .await
                .fetched_at
                .is_none_or(|at| at.elapsed() >= JWKS_TTL);
            let may = stale || last.is_none_or(|at| at.elapsed() >= REFETCH_INTERVAL_MIN);
            // Another caller may have fetched while we waited for the lock.
            if let Some(key) = self.cached(kid).await {
                return Ok(key);
            }
            if may {
                if !stale {
                    *last = Some(Instant::now());
                }
                if let Err(error) = self.fetch().await {
                    tracing::warn!(%error, "JWKS fetch failed");
                    return Err(Problem::unavailable(
                        "the token issuer's keys cannot be read now",
                    ));
                }
            }
        }
        self.cached(kid)
            .await
            .ok_or_else(|| refused("signed with a key the issuer does not publish"))
    }

    pub async fn verify(&self, token: &str) -> Result<Caller, Problem> {
        if token.len() > TOKEN_BYTES_MAX {
            return Err(refused("too long"));
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| refused("not a JWT"))?;
        if !matches!(header.alg, Algorithm::RS256 | Algorithm::ES256) {
            return Err(refused("only RS256 and ES256 are accepted"));
        }
        let kid = header.kid.ok_or_else(|| refused("no key id (kid)"))?;
        let (algorithm, key) = self.key(&kid).await?;
        if algorithm != header.alg {
            return Err(refused("its algorithm does not match its key"));
        }
        let mut validation = Validation::new(algorithm);
        validation.set_issuer(&[&self.settings.issuer]);
        validation.set_audience(&[&self.settings.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = self.settings.leeway_s;
        let data = jsonwebtoken::decode::<Value>(token, &key, &validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            refused(match e.kind() {
                ErrorKind::ExpiredSignature => "expired",
                ErrorKind::ImmatureSignature => "not valid yet (nbf)",
                ErrorKind::InvalidAudience => "not for this audience",
                ErrorKind::InvalidIssuer => "not from the configured issuer",
                ErrorKind::InvalidSignature => "bad signature",
                ErrorKind::MissingRequiredClaim(_) => "a required claim is missing",
                _ => "invalid",
            })
        })?;
        let claims = data.claims;
        let role = claims[&self.settings.role_claim]
            .as_str()
            .and_then(Role::parse)
            .ok_or_else(|| refused("no known role in its role claim"))?;
        let merchant = match claims[&self.settings.merchant_claim].as_str() {
            Some(m) => Some(MerchantId::parse(m).map_err(|_| refused("bad merchant claim"))?),
            None => None,
        };
        if (role == Role::Checkout) != merchant.is_some() {
            return Err(refused("a checkout role names one merchant; others none"));
        }
        let subject = claims["sub"].as_str().unwrap_or_default();
        Ok(Caller {
            // Per-caller bounds count by issuer and subject, as they do by key id.
            key_id: Uuid::new_v5(
                &Uuid::NAMESPACE_URL,
                format!("{}#{subject}", self.settings.issuer).as_bytes(),
            ),
            role,
            merchant,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Result<Option<JwtSettings>, String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        JwtSettings::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn off_unless_issuer_audience_and_keys_are_all_set() {
        assert_eq!(settings(&[]), Ok(None));
        assert!(settings(&[("JWT_ISSUER", "https://auth.example")]).is_err());
        let on = settings(&[
            ("JWT_ISSUER", "https://auth.example"),
            ("JWT_AUDIENCE", "payledger"),
            ("JWT_JWKS_URL", "https://auth.example/.well-known/jwks.json"),
        ])
        .expect("valid")
        .expect("on");
        assert_eq!(on.leeway_s, 60);
        assert_eq!(on.role_claim, "payledger_role");
    }

    #[test]
    fn clock_skew_is_bounded() {
        let base = [
            ("JWT_ISSUER", "https://auth.example"),
            ("JWT_AUDIENCE", "payledger"),
            ("JWT_JWKS_URL", "https://auth.example/jwks"),
        ];
        let with = |leeway: &'static str| {
            let mut all = base.to_vec();
            all.push(("JWT_LEEWAY_S", leeway));
            settings(&all)
        };
        assert!(with("300").is_ok());
        assert!(with("301").is_err());
        assert!(with("-1").is_err());
    }

    #[test]
    fn jwts_are_told_from_api_keys() {
        assert!(looks_like_jwt("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"));
        assert!(!looks_like_jwt("pl_live_checkout_0123abcd"));
        assert!(!looks_like_jwt("pl_checkout_0123.abc.def"));
    }
}
