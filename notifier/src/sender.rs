//! The sender: posts due deliveries, for each endpoint and payment only the oldest one not yet
//! delivered (so a receiver sees each payment's events in order), retrying a failure with
//! exponential backoff and jitter. A delivery is given up once it has failed for the horizon;
//! an endpoint that has failed every delivery for the horizon is disabled.
//!
//! One sender sends at a time across the cluster: it holds a session advisory lock on a
//! connection of its own; others stand by and take over when its session ends.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::Rng;
use reqwest::header::{HeaderValue, CONTENT_TYPE, USER_AGENT};
use sqlx::{ConnectOptions, PgPool, Row};
use tokio::sync::watch;
use uuid::Uuid;

use crate::signature::{self, EVENT_ID_HEADER, SIGNATURE_HEADER};
use crate::target::{self, TargetPolicy};

/// The advisory lock key the active sender holds ("pl-webhk").
const SENDER_LOCK: i64 = 0x706c_2d77_6562_686b;
/// Longest error text kept per attempt.
const ERROR_TEXT_MAX: usize = 256;

#[derive(Debug, Clone)]
pub struct SenderConfig {
    pub policy: TargetPolicy,
    /// The wait after a first failure; each further failure doubles it, up to `backoff_max`.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// How long a delivery, and an endpoint, may keep failing before being given up.
    pub horizon: Duration,
    /// One POST's whole time (connect, send, answer).
    pub timeout: Duration,
    /// Deliveries taken per round, and posted at once.
    pub batch_max: i64,
    /// How often due deliveries are looked for.
    pub poll: Duration,
}

impl Default for SenderConfig {
    fn default() -> Self {
        Self {
            policy: TargetPolicy {
                allow_private: false,
            },
            backoff_base: Duration::from_secs(10),
            backoff_max: Duration::from_secs(3_600),
            horizon: Duration::from_secs(3 * 24 * 3_600),
            timeout: Duration::from_secs(10),
            batch_max: 64,
            poll: Duration::from_millis(250),
        }
    }
}

/// The wait before attempt `attempts + 1`: base x 2^(attempts - 1), capped, with the upper
/// half jittered so endpoints that failed together do not retry together.
pub fn backoff(config: &SenderConfig, attempts: u32) -> Duration {
    let exponent = attempts.saturating_sub(1).min(30);
    let full = config
        .backoff_base
        .saturating_mul(1u32 << exponent)
        .min(config.backoff_max);
    let half = full / 2;
    half + rand::thread_rng().gen_range(Duration::ZERO..=half)
}

/// Sends until `shutdown` turns true, taking the sender's lock first.
pub async fn run(pool: PgPool, config: SenderConfig, mut shutdown: watch::Receiver<bool>) {
    let client = match client(&config) {
        Ok(client) => client,
        Err(error) => {
            tracing::error!(%error, "merchant webhook sender cannot build its HTTP client");
            return;
        }
    };
    loop {
        if *shutdown.borrow() {
            return;
        }
        if let Err(error) = lead_and_send(&pool, &client, &config, &mut shutdown).await {
            tracing::warn!(%error, "merchant webhook sender stopped; retrying");
        }
        tokio::select! {
            _ = tokio::time::sleep(config.poll.max(Duration::from_millis(500))) => {}
            _ = shutdown.changed() => {}
        }
    }
}

fn client(config: &SenderConfig) -> reqwest::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .timeout(config.timeout)
        .connect_timeout(config.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .pool_idle_timeout(Duration::from_secs(2));
    if let Some(resolver) = target::resolver(config.policy) {
        builder = builder.dns_resolver(resolver);
    }
    builder.build()
}

async fn lead_and_send(
    pool: &PgPool,
    client: &reqwest::Client,
    config: &SenderConfig,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), sqlx::Error> {
    // A session of its own: the lock lives as long as it.
    let mut session = pool.connect_options().connect().await?;
    let leads: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(SENDER_LOCK)
        .fetch_one(&mut session)
        .await?;
    if !leads {
        return Ok(());
    }
    tracing::info!("merchant webhook sender leads");
    loop {
        if *shutdown.borrow() {
            return Ok(());
        }
        // Still holding the lock: the session answers.
        sqlx::query("SELECT 1").execute(&mut session).await?;
        let sent = send_due(pool, client, config).await?;
        if sent == 0 {
            tokio::select! {
                _ = tokio::time::sleep(config.poll) => {}
                _ = shutdown.changed() => {}
            }
        }
    }
}

struct Due {
    id: Uuid,
    endpoint_id: Uuid,
    event_id: String,
    body: String,
    attempts: i32,
    created_at: DateTime<Utc>,
    url: String,
    secret: String,
}

/// Posts one round of due deliveries; answers how many were tried.
pub async fn send_due(
    pool: &PgPool,
    client: &reqwest::Client,
    config: &SenderConfig,
) -> Result<usize, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT d.id, d.endpoint_id, d.event_id, d.body, d.attempts, d.created_at, e.url, e.secret
           FROM (SELECT DISTINCT ON (endpoint_id, payment_id) *
                   FROM merchant_webhook_deliveries WHERE state = 'pending'
                  ORDER BY endpoint_id, payment_id, global_position) d
           JOIN webhook_endpoints e ON e.id = d.endpoint_id AND e.status = 'enabled'
          WHERE d.next_attempt_at <= now()
          ORDER BY d.next_attempt_at LIMIT $1",
    )
    .bind(config.batch_max)
    .fetch_all(pool)
    .await?;
    let due: Vec<Due> = rows
        .iter()
        .map(|row| {
            Ok(Due {
                id: row.try_get("id")?,
                endpoint_id: row.try_get("endpoint_id")?,
                event_id: row.try_get("event_id")?,
                body: row.try_get("body")?,
                attempts: row.try_get("attempts")?,
                created_at: row.try_get("created_at")?,
                url: row.try_get("url")?,
                secret: row.try_get("secret")?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()?;
    let count = due.len();
    // Every due delivery is of a different payment (or endpoint): they go out together, at
    // most `batch_max` at once.
    let outcomes = futures::future::join_all(due.into_iter().map(|delivery| async move {
        let outcome = post(client, config, &delivery).await;
        (delivery, outcome)
    }))
    .await;
    for (delivery, outcome) in outcomes {
        record(pool, config, &delivery, outcome).await?;
    }
    Ok(count)
}

/// What one POST came to: the status answered, or why there was none.
type Outcome = Result<u16, String>;

async fn post(client: &reqwest::Client, config: &SenderConfig, delivery: &Due) -> Outcome {
    let url = config
        .policy
        .parse(&delivery.url)
        .map_err(|e| format!("target refused: {e}"))?;
    // A literal address is never resolved: check it here (names are checked by the resolver).
    if let Some(host) = url.host_str() {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = host.parse::<std::net::IpAddr>() {
            if !config.policy.allow_private && !target::is_public(ip) {
                return Err("target refused: not a public address".into());
            }
        }
    }
    let now = Utc::now().timestamp();
    let signature = signature::header(&delivery.secret, now, delivery.body.as_bytes());
    let request = client
        .post(url)
        .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
        .header(
            USER_AGENT,
            concat!("payledger-webhooks/", env!("CARGO_PKG_VERSION")),
        )
        .header(SIGNATURE_HEADER, signature)
        .header(EVENT_ID_HEADER, delivery.event_id.as_str())
        .body(delivery.body.clone());
    match request.send().await {
        Ok(response) => Ok(response.status().as_u16()),
        Err(error) => Err(bounded(&error.without_url().to_string())),
    }
}

fn bounded(text: &str) -> String {
    let mut cut = text.len().min(ERROR_TEXT_MAX);
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    text[..cut].to_owned()
}

async fn record(
    pool: &PgPool,
    config: &SenderConfig,
    delivery: &Due,
    outcome: Outcome,
) -> Result<(), sqlx::Error> {
    let status = outcome.as_ref().ok().map(|s| i32::from(*s));
    let delivered = matches!(outcome, Ok(code) if (200..300).contains(&code));
    let error = match &outcome {
        Ok(code) if !delivered => Some(format!("answered {code}")),
        Ok(_) => None,
        Err(error) => Some(error.clone()),
    };
    let mut tx = pool.begin().await?;
    let outcome = match (&outcome, delivered) {
        (_, true) => "succeeded",
        (Ok(_), false) => "refused",
        (Err(_), false) => "unreachable",
    };
    metrics::counter!("payledger_merchant_webhook_attempts_total", "outcome" => outcome)
        .increment(1);
    if delivered {
        sqlx::query(
            "UPDATE merchant_webhook_deliveries
                SET state = 'succeeded', attempts = attempts + 1, last_attempt_at = now(),
                    last_status_code = $2, last_error = NULL, delivered_at = now()
              WHERE id = $1",
        )
        .bind(delivery.id)
        .bind(status)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE webhook_endpoints SET failing_since = NULL WHERE id = $1 AND failing_since IS NOT NULL")
            .bind(delivery.endpoint_id)
            .execute(&mut *tx)
            .await?;
        return tx.commit().await;
    }
    let attempts = u32::try_from(delivery.attempts)
        .unwrap_or(0)
        .saturating_add(1);
    let horizon = chrono::Duration::from_std(config.horizon).unwrap_or(chrono::Duration::days(3));
    let given_up = Utc::now() - delivery.created_at >= horizon;
    let next = Utc::now()
        + chrono::Duration::from_std(backoff(config, attempts))
            .unwrap_or(chrono::Duration::hours(1));
    sqlx::query(
        "UPDATE merchant_webhook_deliveries
            SET state = $2, attempts = attempts + 1, last_attempt_at = now(),
                last_status_code = $3, last_error = $4, next_attempt_at = $5
          WHERE id = $1",
    )
    .bind(delivery.id)
    .bind(if given_up {
        crate::deliveries::FAILED
    } else {
        crate::deliveries::PENDING
    })
    .bind(status)
    .bind(&error)
    .bind(next)
    .execute(&mut *tx)
    .await?;
    if given_up {
        metrics::counter!("payledger_merchant_webhook_deliveries_given_up_total").increment(1);
    }
    // Failing since the oldest delivery that has not gone through was due: a delivery given
    // up after the horizon always disables its endpoint with it.
    let failing_since: Option<DateTime<Utc>> = sqlx::query_scalar(
        "UPDATE webhook_endpoints SET failing_since = LEAST(COALESCE(failing_since, $2), $2)
          WHERE id = $1 RETURNING failing_since",
    )
    .bind(delivery.endpoint_id)
    .bind(delivery.created_at)
    .fetch_optional(&mut *tx)
    .await?
    .flatten();
    if failing_since.is_some_and(|since| Utc::now() - since >= horizon) {
        sqlx::query(
            "UPDATE webhook_endpoints
                SET status = 'disabled', status_reason = $2, updated_at = now()
              WHERE id = $1 AND status = 'enabled'",
        )
        .bind(delivery.endpoint_id)
        .bind(format!(
            "every delivery failed for {} s; re-enable it by resending a delivery",
            config.horizon.as_secs()
        ))
        .execute(&mut *tx)
        .await?;
        tracing::warn!(endpoint_id = %delivery.endpoint_id, "merchant webhook endpoint disabled");
        metrics::counter!("payledger_merchant_webhook_endpoints_disabled_total").increment(1);
    }
    tx.commit().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_the_base_up_to_the_cap_with_jitter_in_the_upper_half() {
        let config = SenderConfig {
            backoff_base: Duration::from_millis(100),
            backoff_max: Duration::from_millis(1_000),
            ..SenderConfig::default()
        };
        for (attempts, full_ms) in [
            (1, 100),
            (2, 200),
            (3, 400),
            (4, 800),
            (5, 1_000),
            (40, 1_000),
        ] {
            for _ in 0..50 {
                let wait = backoff(&config, attempts).as_millis() as u64;
                assert!(wait >= full_ms / 2 && wait <= full_ms, "{attempts}: {wait}");
            }
        }
    }
}
