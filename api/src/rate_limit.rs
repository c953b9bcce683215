//! Rate limits at the door: token buckets (GCRA, `governor`) per API key and per client
//! address, by route class, before anything touches the database. Each node counts alone:
//! behind a load balancer over N nodes a client gets up to N times a limit.
//!
//! - commands (a key, a method that changes something): per key;
//! - reads (a key, GET): per key;
//! - every request with a key: also per client address (a flood of made-up keys from one
//!   address is held here, before each would cost a key lookup);
//! - webhooks: per provider and client address;
//! - public (no key: health, catalog, the dashboard's files): per client address.
//!
//! Answers carry `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset` (seconds
//! until the bucket is full again); a refusal is `429` with `Retry-After`.

use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::RwLock;
use std::time::Duration;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue, AUTHORIZATION, RETRY_AFTER};
use actix_web::http::{Method, StatusCode};
use actix_web::{web, ResponseError};
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use sha2::{Digest, Sha256};

use crate::client_ip::TrustedProxies;
use crate::problem::{Problem, ProblemType};

/// Keys (or addresses) a limiter tracks at most; past it, after forgetting the idle ones,
/// it starts again empty (bounded memory over a flood of distinct keys or addresses).
const TRACKED_MAX: usize = 100_000;
/// How often idle buckets are forgotten.
pub const HOUSEKEEPING_INTERVAL: Duration = Duration::from_secs(10);

const RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
const RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
const RATELIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");

/// A sustained rate and the burst above it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub per_second: NonZeroU32,
    pub burst: NonZeroU32,
}

impl Limit {
    const fn new(per_second: u32, burst: u32) -> Option<Limit> {
        match (NonZeroU32::new(per_second), NonZeroU32::new(burst)) {
            (Some(per_second), Some(burst)) => Some(Limit { per_second, burst }),
            _ => None,
        }
    }

    /// `100` (burst the same), `100/200` (rate/burst), or `off`.
    pub fn parse(text: &str) -> Result<Option<Limit>, String> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("off") {
            return Ok(None);
        }
        let (rate, burst) = text.split_once('/').unwrap_or((text, text));
        let number = |part: &str| {
            part.trim()
                .parse::<u32>()
                .ok()
                .filter(|n| (1..=1_000_000).contains(n))
        };
        match (number(rate), number(burst)) {
            (Some(rate), Some(burst)) => Ok(Limit::new(rate, burst)),
            _ => Err(format!(
                "`{text}`: expected `off`, `<per second>` or `<per second>/<burst>`, 1 to 1000000"
            )),
        }
    }
}

/// The limits of each class; `None` is unlimited. Defaults follow Stripe's: 100 requests
/// a second per key for reads and for commands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitSettings {
    pub commands_per_key: Option<Limit>,
    pub reads_per_key: Option<Limit>,
    pub keyed_per_address: Option<Limit>,
    pub webhooks_per_provider_address: Option<Limit>,
    pub public_per_address: Option<Limit>,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        Self {
            commands_per_key: Limit::new(100, 100),
            reads_per_key: Limit::new(100, 100),
            keyed_per_address: Limit::new(1_000, 1_000),
            webhooks_per_provider_address: Limit::new(100, 200),
            public_per_address: Limit::new(20, 40),
        }
    }
}

impl RateLimitSettings {
    /// Every limit off (load generators that drive one key far past any merchant's need).
    pub fn off() -> Self {
        Self {
            commands_per_key: None,
            reads_per_key: None,
            keyed_per_address: None,
            webhooks_per_provider_address: None,
            public_per_address: None,
        }
    }

    /// `RATE_LIMIT_COMMANDS`, `RATE_LIMIT_READS`, `RATE_LIMIT_ADDRESS`, `RATE_LIMIT_WEBHOOKS`,
    /// `RATE_LIMIT_PUBLIC`; each `off`, `<per second>` or `<per second>/<burst>`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let mut settings = Self::default();
        for (name, slot) in [
            ("RATE_LIMIT_COMMANDS", &mut settings.commands_per_key),
            ("RATE_LIMIT_READS", &mut settings.reads_per_key),
            ("RATE_LIMIT_ADDRESS", &mut settings.keyed_per_address),
            (
                "RATE_LIMIT_WEBHOOKS",
                &mut settings.webhooks_per_provider_address,
            ),
            ("RATE_LIMIT_PUBLIC", &mut settings.public_per_address),
        ] {
            if let Some(value) = lookup(name) {
                *slot = Limit::parse(&value).map_err(|e| format!("{name} {e}"))?;
            }
        }
        Ok(settings)
    }
}

type Keyed<K> = RateLimiter<K, DefaultKeyedStateStore<K>, DefaultClock, StateInformationMiddleware>;

/// One class's buckets (replaced whole when too many callers are tracked).
struct Buckets<K: Hash + Eq + Clone> {
    limit: Limit,
    limiter: RwLock<Keyed<K>>,
}

/// A bucket let the request through: its size, what is left, and when it is full again.
struct Allowed {
    limit: u32,
    remaining: u32,
    reset_s: u64,
}

/// A bucket refused the request: its size and how long until it takes one again.
struct Refused {
    limit: u32,
    retry_after_s: u64,
}

impl<K: Hash + Eq + Clone> Buckets<K> {
    fn new(limit: Limit) -> Self {
        Self {
            limit,
            limiter: RwLock::new(Self::limiter(limit)),
        }
    }

    fn limiter(limit: Limit) -> Keyed<K> {
        let quota = Quota::per_second(limit.per_second).allow_burst(limit.burst);
        RateLimiter::keyed(quota).with_middleware::<StateInformationMiddleware>()
    }

    fn check(&self, key: &K) -> Result<Allowed, Refused> {
        let limit = self.limit.burst.get();
        let limiter = self.limiter.read().unwrap_or_else(|e| e.into_inner());
        match limiter.check_key(key) {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity();
                let missing = limit.saturating_sub(remaining);
                Ok(Allowed {
                    limit,
                    remaining,
                    reset_s: u64::from(missing).div_ceil(u64::from(self.limit.per_second.get())),
                })
            }
            Err(not_until) => {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                Err(Refused {
                    limit,
                    retry_after_s: wait.as_secs() + u64::from(wait.subsec_nanos() > 0),
                })
            }
        }
    }

    fn housekeeping(&self) {
        let mut limiter = self.limiter.write().unwrap_or_else(|e| e.into_inner());
        limiter.retain_recent();
        if limiter.len() > TRACKED_MAX {
            tracing::warn!(
                tracked = limiter.len(),
                "rate limiter full; starting afresh"
            );
            *limiter = Self::limiter(self.limit);
        }
        limiter.shrink_to_fit();
    }
}

/// The route classes, as counted in the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteClass {
    Commands,
    Reads,
    Webhooks,
    Public,
}

impl RouteClass {
    pub fn as_str(self) -> &'static str {
        match self {
            RouteClass::Commands => "commands",
            RouteClass::Reads => "reads",
            RouteClass::Webhooks => "webhooks",
            RouteClass::Public => "public",
        }
    }
}

/// Every class's buckets on this node.
pub struct RateLimits {
    commands: Option<Buckets<[u8; 16]>>,
    reads: Option<Buckets<[u8; 16]>>,
    keyed_address: Option<Buckets<IpAddr>>,
    webhooks: Option<Buckets<(String, IpAddr)>>,
    public: Option<Buckets<IpAddr>>,
}

impl RateLimits {
    pub fn new(settings: &RateLimitSettings) -> Self {
        Self {
            commands: settings.commands_per_key.map(Buckets::new),
            reads: settings.reads_per_key.map(Buckets::new),
            keyed_address: settings.keyed_per_address.map(Buckets::new),
            webhooks: settings.webhooks_per_provider_address.map(Buckets::new),
            public: settings.public_per_address.map(Buckets::new),
        }
    }

    pub fn housekeeping(&self) {
        if let Some(b) = &self.commands {
            b.housekeeping();
        }
        if let Some(b) = &self.reads {
            b.housekeeping();
        }
        if let Some(b) = &self.keyed_address {
            b.housekeeping();
        }
        if let Some(b) = &self.webhooks {
            b.housekeeping();
        }
        if let Some(b) = &self.public {
            b.housekeeping();
        }
    }

    /// Every bucket that applies to one request: the tightest that let it through (for the
    /// headers), or the first refusal with its scope (`key` or `address`).
    fn check(
        &self,
        class: RouteClass,
        key: Option<[u8; 16]>,
        provider: Option<&str>,
        address: Option<IpAddr>,
    ) -> Result<Option<Allowed>, (Refused, &'static str)> {
        let mut tightest: Option<Allowed> = None;
        let mut apply = |verdict: Result<Allowed, Refused>, scope: &'static str| match verdict {
            Err(refused) => Err((refused, scope)),
            Ok(allowed) => {
                if tightest
                    .as_ref()
                    .is_none_or(|t| allowed.remaining < t.remaining)
                {
                    tightest = Some(allowed);
                }
                Ok(())
            }
        };
        match class {
            RouteClass::Commands | RouteClass::Reads => {
                let per_key = if class == RouteClass::Commands {
                    &self.commands
                } else {
                    &self.reads
                };
                if let (Some(buckets), Some(key)) = (per_key, key) {
                    apply(buckets.check(&key), "key")?;
                }
                if let (Some(buckets), Some(address)) = (&self.keyed_address, address) {
                    apply(buckets.check(&address), "address")?;
                }
            }
            RouteClass::Webhooks => {
                if let (Some(buckets), Some(address)) = (&self.webhooks, address) {
                    let provider = provider.unwrap_or_default().to_owned();
                    apply(buckets.check(&(provider, address)), "address")?;
                }
            }
            RouteClass::Public => {
                if let (Some(buckets), Some(address)) = (&self.public, address) {
                    apply(buckets.check(&address), "address")?;
                }
            }
        }
        Ok(tightest)
    }
}

/// A key's bucket: a digest of the credential as sent (no lookup; an unknown key gets a
/// bucket of its own, and the address's bucket above it).
fn key_bucket(authorization: &[u8]) -> [u8; 16] {
    let digest = Sha256::digest(authorization);
    let mut bucket = [0u8; 16];
    bucket.copy_from_slice(&digest[..16]);
    bucket
}

fn classify(request: &ServiceRequest) -> (RouteClass, Option<String>) {
    let path = request.path();
    if let Some(rest) = path.strip_prefix("/v1/webhooks/") {
        let provider = rest.split('/').next().unwrap_or_default();
        return (
            RouteClass::Webhooks,
            Some(provider.chars().take(32).collect()),
        );
    }
    if !request.headers().contains_key(AUTHORIZATION) {
        return (RouteClass::Public, None);
    }
    let reads = [Method::GET, Method::HEAD, Method::OPTIONS];
    if reads.contains(request.method()) {
        (RouteClass::Reads, None)
    } else {
        (RouteClass::Commands, None)
    }
}

fn header_value(n: u64) -> HeaderValue {
    HeaderValue::from(n)
}

pub async fn enforce(
    request: ServiceRequest,
    next: actix_web::middleware::Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let Some(limits) = request.app_data::<web::Data<RateLimits>>().cloned() else {
        return next.call(request).await.map(|r| r.map_into_left_body());
    };
    let (class, provider) = classify(&request);
    let key = request
        .headers()
        .get(AUTHORIZATION)
        .map(|value| key_bucket(value.as_bytes()));
    let address = match request.app_data::<web::Data<TrustedProxies>>() {
        Some(proxies) => proxies.client_ip(
            request.peer_addr().map(|a| a.ip()),
            request
                .headers()
                .get_all("x-forwarded-for")
                .filter_map(|v| v.to_str().ok()),
        ),
        None => request.peer_addr().map(|a| a.ip()),
    };
    match limits.check(class, key, provider.as_deref(), address) {
        Ok(allowed) => {
            let mut response = next.call(request).await?.map_into_left_body();
            if let Some(allowed) = allowed {
                let headers = response.headers_mut();
                headers.insert(RATELIMIT_LIMIT, header_value(u64::from(allowed.limit)));
                headers.insert(
                    RATELIMIT_REMAINING,
                    header_value(u64::from(allowed.remaining)),
                );
                headers.insert(RATELIMIT_RESET, header_value(allowed.reset_s));
            }
            Ok(response)
        }
        Err((
            Refused {
                limit,
                retry_after_s,
            },
            scope,
        )) => {
            metrics::counter!(
                "payledger_rate_limited_total",
                "class" => class.as_str(), "scope" => scope
            )
            .increment(1);
            let problem = Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                ProblemType::RateLimited,
                "Too many requests",
                format!(
                    "the {} limit per {scope} is reached; retry after {retry_after_s} s",
                    class.as_str()
                ),
            );
            let mut response = problem.error_response();
            let headers = response.headers_mut();
            headers.insert(RETRY_AFTER, header_value(retry_after_s));
            headers.insert(RATELIMIT_LIMIT, header_value(u64::from(limit)));
            headers.insert(RATELIMIT_REMAINING, header_value(0));
            headers.insert(RATELIMIT_RESET, header_value(retry_after_s));
            let (request, _) = request.into_parts();
            Ok(ServiceResponse::new(request, response).map_into_right_body())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_parse_as_rate_and_burst_or_off() {
        assert_eq!(Limit::parse("100"), Ok(Limit::new(100, 100)));
        assert_eq!(Limit::parse(" 20/40 "), Ok(Limit::new(20, 40)));
        assert_eq!(Limit::parse("OFF"), Ok(None));
        for bad in ["", "0", "-1", "1/0", "ten", "1/2/3", "2000000"] {
            assert!(Limit::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn settings_come_from_the_environment_with_stripe_like_defaults() {
        let defaults = RateLimitSettings::from_lookup(|_| None).expect("defaults");
        assert_eq!(defaults.commands_per_key, Limit::new(100, 100));
        assert_eq!(defaults.reads_per_key, Limit::new(100, 100));
        let set = RateLimitSettings::from_lookup(|name| match name {
            "RATE_LIMIT_READS" => Some("5/10".into()),
            "RATE_LIMIT_PUBLIC" => Some("off".into()),
            _ => None,
        })
        .expect("parsed");
        assert_eq!(set.reads_per_key, Limit::new(5, 10));
        assert_eq!(set.public_per_address, None);
        let bad = RateLimitSettings::from_lookup(|name| {
            (name == "RATE_LIMIT_COMMANDS").then(|| "lots".into())
        });
        assert!(bad.err().is_some_and(|e| e.contains("RATE_LIMIT_COMMANDS")));
    }

    #[test]
    fn a_burst_is_let_through_then_refused_with_a_wait() {
        let buckets = Buckets::new(Limit::new(1, 3).expect("limit"));
        for expected in [2, 1, 0] {
            let allowed = buckets.check(&1u8).ok().expect("within the burst");
            assert_eq!((allowed.limit, allowed.remaining), (3, expected));
        }
        let refused = buckets.check(&1u8).err().expect("past the burst");
        assert_eq!((refused.limit, refused.retry_after_s), (3, 1));
        assert!(buckets.check(&2u8).is_ok(), "another key");
    }
}
