//! Helpers the provider tests share: reading answers, the fee the schedule implies, a
//! payment's events as the API and the store show them, its journal, and what the sandbox
//! holds.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use reqwest::header::CONTENT_TYPE;
use rust_decimal::{Decimal, RoundingStrategy};
use serde_json::Value;

use crate::TestApp;

/// The status and JSON body of an answer (panics, with the text, when it is not JSON).
pub async fn json_of(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    let json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    (status, json)
}

/// Asserts an `application/problem+json` answer with `status`; returns its body.
pub async fn problem(response: reqwest::Response, status: u16, case: &str) -> Value {
    let kind = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let (actual, body) = json_of(response).await;
    assert_eq!(actual, status, "{case}: {body}");
    assert!(
        kind.starts_with("application/problem+json"),
        "{case}: content type `{kind}`: {body}"
    );
    assert_eq!(
        body["status"].as_u64(),
        Some(u64::from(status)),
        "{case}: {body}"
    );
    body
}

pub fn id_of(payment: &Value) -> String {
    payment["id"].as_str().expect("payment id").to_owned()
}

pub fn reference_of(payment: &Value) -> String {
    payment["provider_reference"]
        .as_str()
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| panic!("provider_reference missing: {payment}"))
        .to_owned()
}

/// The fee `config/fees.json` implies, read independently of the product: the rule in force
/// now for (provider, method, currency), `amount * percentage / 100` at 2 decimals (half away
/// from zero) plus `fixed`, never more than the amount.
pub fn expected_fee(provider: &str, method: &str, currency: &str, amount: &str) -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../config/fees.json");
    let text = std::fs::read_to_string(path).expect("config/fees.json");
    let rules: Vec<Value> = serde_json::from_str(&text).expect("fees.json is JSON");
    let now = Utc::now();
    let rule = rules
        .iter()
        .filter(|r| r["provider"] == provider && r["method"] == method && r["currency"] == currency)
        .filter_map(|r| {
            let from: DateTime<Utc> = r["effective_from"].as_str()?.parse().ok()?;
            (from <= now).then_some((from, r))
        })
        .max_by_key(|(from, _)| *from)
        .map(|(_, r)| r)
        .unwrap_or_else(|| panic!("no fee rule for {provider} {method} {currency} in force"));
    let decimal = |v: &Value| Decimal::from_str(v.as_str().expect("decimal string")).unwrap();
    let amount = Decimal::from_str(amount).unwrap();
    let variable = (amount * decimal(&rule["percentage"]) / Decimal::ONE_HUNDRED)
        .round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero);
    let mut total = (variable + decimal(&rule["fixed"])).min(amount);
    total.rescale(2);
    total.to_string()
}

/// The payment's events through `GET /v1/payments/{id}/events`.
pub async fn events_json(app: &TestApp, id: &str) -> Vec<Value> {
    let (status, body) = json_of(
        app.get(&format!("/v1/payments/{id}/events"), &app.checkout_key)
            .await,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["data"].as_array().expect("events").clone()
}

/// The payment's events of one type, as stored (`{"<type>": {...}}`).
pub async fn stored_events(app: &TestApp, id: &str, event_type: &str) -> Vec<Value> {
    sqlx::query_scalar(
        "SELECT payload::jsonb FROM events
          WHERE aggregate_id = $1 AND event_type = $2 ORDER BY sequence",
    )
    .bind(id)
    .bind(event_type)
    .fetch_all(&app.pool)
    .await
    .expect("read events")
}

/// The providers named by the payment's `ProviderAttemptStarted` events, in order.
pub async fn attempts(app: &TestApp, id: &str) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT payload::jsonb #>> '{ProviderAttemptStarted,provider}' FROM events
          WHERE aggregate_id = $1 AND event_type = 'ProviderAttemptStarted' ORDER BY sequence",
    )
    .bind(id)
    .fetch_all(&app.pool)
    .await
    .expect("read attempts")
}

/// The payment's balance per account, once the ledger projection has applied its whole
/// stream (at most 10 s).
pub async fn journal_balances(app: &TestApp, id: &str) -> Vec<(String, Decimal)> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE aggregate_id = $1")
            .bind(id)
            .fetch_one(&app.pool)
            .await
            .expect("count events");
        let applied: Option<i64> = sqlx::query_scalar(
            "SELECT last_sequence FROM projection_offsets
              WHERE projection = 'ledger' AND aggregate_id = $1",
        )
        .bind(id)
        .fetch_optional(&app.pool)
        .await
        .expect("read the ledger's offset");
        if applied == Some(stored) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the ledger never caught up: {applied:?} of {stored}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    sqlx::query_as(
        "SELECT account, sum(debit) - sum(credit) FROM journal_entries
          WHERE payment_id = $1::uuid GROUP BY account ORDER BY account",
    )
    .bind(id)
    .fetch_all(&app.pool)
    .await
    .expect("read the journal")
}

/// What the in-process sandbox holds for the merchant reference `reference` (asked with its
/// own API key).
pub async fn sandbox_transactions(app: &TestApp, reference: &str) -> Vec<Value> {
    let response = app
        .http
        .get(format!("{}/v1/transactions", app.emulators["sandbox"]))
        .query(&[("reference", reference)])
        .bearer_auth(&app.settings.sandbox.api_key)
        .send()
        .await
        .expect("search the sandbox");
    let (status, body) = json_of(response).await;
    assert_eq!(status, 200, "{body}");
    body["data"].as_array().expect("a list").clone()
}

/// Waits (at most 15 s) until every projection has applied every stored event of the
/// aggregate type it folds.
pub async fn projections_caught_up(app: &TestApp) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    for projection in projections::all() {
        loop {
            let (applied, stored): (i64, i64) = sqlx::query_as(
                "SELECT (SELECT COALESCE(max(applied_total), 0) FROM projection_progress WHERE projection = $1),
                        (SELECT count(*) FROM events WHERE aggregate_type = $2)",
            )
            .bind(projection.name())
            .bind(projection.aggregate_type())
            .fetch_one(&app.pool)
            .await
            .expect("read the progress");
            if applied == stored {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{} applied {applied} of {stored}",
                projection.name()
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}
