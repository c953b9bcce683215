//! The `ledger` projection against real PostgreSQL: real payments (approved, declined,
//! failed, manual partial and full captures, voids, partial and full refunds, fees, two
//! currencies, two merchants) through the API, their events applied with the live
//! consumer's `apply_event` in shuffled order with redeliveries, then checked against numbers
//! the test computes from its own requests and `config/fees.json`; and a replay into a
//! scratch schema compared row for row.

use std::collections::BTreeMap;
use std::sync::Arc;

use api::config::ServeRole;
use chrono::{DateTime, Utc};
use domain::{
    CaptureId, CaptureMode, Currency, MerchantId, Money, PaymentEvent, PaymentId,
    PaymentMethodType, ProviderFailureKind, Reference, RefundId,
};
use e2e::{payment_body, spawn_app_with_role, support, TestApp, MERCHANT};
use eventstore::PublishedEvent;
use projections::apply::{apply_event, Applied};
use projections::ledger::{self, EntryCursor, LedgerProjection};
use projections::{Projection, ProjectionError};
use rust_decimal::Decimal;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::projection_kit::{
    self as kit, dec, differing_rows, shuffled_with_redeliveries, wait_for_event, Rng,
};

const MERCHANT_B: &str = "merchant-b";

/// The sandbox CARD fee `config/fees.json` implies for `amount` in `currency`.
fn expected_fee(currency: &str, amount: Decimal) -> Decimal {
    dec(&support::expected_fee(
        "sandbox",
        "CARD",
        currency,
        &amount.to_string(),
    ))
}

/// One payment of the workload and what the test does with it.
struct Case {
    merchant: &'static str,
    amount: &'static str,
    currency: &'static str,
    token: &'static str,
    capture: &'static str,
    /// Manual capture of this amount (`None`: leave it authorized or void it).
    capture_amount: Option<&'static str>,
    void: bool,
    refunds: &'static [&'static str],
}

const fn case(
    merchant: &'static str,
    amount: &'static str,
    currency: &'static str,
    token: &'static str,
    capture: &'static str,
) -> Case {
    Case {
        merchant,
        amount,
        currency,
        token,
        capture,
        capture_amount: None,
        void: false,
        refunds: &[],
    }
}

const APPROVED: &str = "tok_sandbox_approved";

fn cases() -> Vec<Case> {
    vec![
        // Automatic, partially refunded.
        Case {
            refunds: &["25.00"],
            ..case(MERCHANT, "100.00", "USD", APPROVED, "automatic")
        },
        // Manual, partial capture, partially refunded.
        Case {
            capture_amount: Some("120000.00"),
            refunds: &["20000.00"],
            ..case(MERCHANT, "200000.00", "COP", APPROVED, "manual")
        },
        // Automatic, kept.
        case(MERCHANT, "129000.00", "COP", APPROVED, "automatic"),
        // Manual, full capture, refunded in full in two parts.
        Case {
            capture_amount: Some("80.00"),
            refunds: &["30.00", "50.00"],
            ..case(MERCHANT, "80.00", "USD", APPROVED, "manual")
        },
        case(
            MERCHANT,
            "10.00",
            "USD",
            "tok_sandbox_declined",
            "automatic",
        ),
        case(MERCHANT, "15.00", "USD", "tok_sandbox_error", "automatic"),
        // Another merchant: automatic refunded in full, a void, an open hold, a decline.
        Case {
            refunds: &["40.00"],
            ..case(MERCHANT_B, "40.00", "USD", APPROVED, "automatic")
        },
        Case {
            void: true,
            ..case(MERCHANT_B, "50000.00", "COP", APPROVED, "manual")
        },
        case(MERCHANT_B, "70.00", "USD", APPROVED, "manual"),
        case(
            MERCHANT_B,
            "9000.00",
            "COP",
            "tok_sandbox_declined",
            "automatic",
        ),
    ]
}

/// What the test expects per (merchant, currency), from its own requests.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct Expected {
    captured: Decimal,
    refunded: Decimal,
    fees: Decimal,
    open_holds: Decimal,
}

struct Workload {
    payment_ids: Vec<String>,
    expected: BTreeMap<(&'static str, &'static str), Expected>,
}

/// Runs every case through the API (no relay, no projectors: the test delivers events).
async fn run_workload(app: &TestApp) -> Workload {
    let key_b = app.key_for(MERCHANT_B).await;
    let mut payment_ids = Vec::new();
    let mut expected: BTreeMap<(&str, &str), Expected> = BTreeMap::new();
    for (i, case) in cases().iter().enumerate() {
        let key = if case.merchant == MERCHANT {
            app.checkout_key.clone()
        } else {
            key_b.clone()
        };
        let reference = format!("ledger-{i}");
        let response = app
            .post(
                "/v1/payments",
                &key,
                Some(&reference),
                &payment_body(
                    case.amount,
                    case.currency,
                    &reference,
                    case.token,
                    case.capture,
                ),
            )
            .await;
        let status = response.status();
        let created: Value = response.json().await.unwrap();
        assert_eq!(status, 201, "{created}");
        let id = created["id"].as_str().unwrap().to_owned();
        let totals = expected.entry((case.merchant, case.currency)).or_default();
        match case.token {
            "tok_sandbox_declined" => wait_for_event(app, &id, "PaymentDeclined", 1).await,
            "tok_sandbox_error" => wait_for_event(app, &id, "PaymentFailed", 1).await,
            _ if case.capture == "automatic" => {
                wait_for_event(app, &id, "PaymentApproved", 1).await;
                totals.captured += dec(case.amount);
                totals.fees += expected_fee(case.currency, dec(case.amount));
            }
            _ => {
                wait_for_event(app, &id, "PaymentAuthorized", 1).await;
                if let Some(amount) = case.capture_amount {
                    let captured = app
                        .post(
                            &format!("/v1/payments/{id}/capture"),
                            &key,
                            Some(&format!("c-{i}")),
                            &json!({ "amount": amount }),
                        )
                        .await;
                    assert!(captured.status().is_success(), "{captured:?}");
                    wait_for_event(app, &id, "PaymentApproved", 1).await;
                    totals.captured += dec(amount);
                    totals.fees += expected_fee(case.currency, dec(amount));
                } else if case.void {
                    let voided = app
                        .post(&format!("/v1/payments/{id}/void"), &key, None, &json!({}))
                        .await;
                    assert_eq!(voided.status(), 200);
                    wait_for_event(app, &id, "PaymentVoided", 1).await;
                } else {
                    totals.open_holds += dec(case.amount);
                }
            }
        }
        for (n, amount) in case.refunds.iter().enumerate() {
            let refund = app
                .post(
                    &format!("/v1/payments/{id}/refunds"),
                    &key,
                    Some(&format!("r-{i}-{n}")),
                    &json!({ "amount": amount }),
                )
                .await;
            assert_eq!(refund.status(), 201);
            wait_for_event(app, &id, "PaymentRefunded", n + 1).await;
            totals.refunded += dec(amount);
        }
        payment_ids.push(id);
    }
    Workload {
        payment_ids,
        expected,
    }
}

/// Every event of the workload's payments (all the store holds), in global order.
async fn stored_events(app: &TestApp, ids: &[String]) -> Vec<PublishedEvent> {
    let events = kit::stored_events(&app.pool).await;
    assert!(
        events.iter().all(|e| ids.contains(&e.aggregate_id)),
        "the store holds only the workload's events"
    );
    events
}

/// A fixed shuffle with redeliveries: every event once or twice, late ones often first.
fn delivery_order(events: &[PublishedEvent]) -> Vec<PublishedEvent> {
    shuffled_with_redeliveries(events, &mut Rng(0x9e37_79b9_7f4a_7c15))
}

/// Applies `events` as the live consumer would; returns (events applied, duplicates,
/// deliveries that arrived early and filled a gap from the store).
async fn deliver(app: &TestApp, events: &[PublishedEvent]) -> (usize, usize, usize) {
    kit::deliver(&app.pool, &[&LedgerProjection], events).await
}

/// Every table of the projection, each as its rows' text in a stable order.
async fn snapshot(app: &TestApp, schema: &str) -> BTreeMap<&'static str, Vec<String>> {
    kit::snapshot(&app.pool, &[&LedgerProjection], schema).await
}

async fn balance_of(
    app: &TestApp,
    merchant: Option<&str>,
    account: &str,
    currency: &str,
) -> Decimal {
    let rows = ledger::balances(&app.pool, merchant, Some(account), Some(currency), 10)
        .await
        .unwrap();
    assert!(rows.len() <= 1);
    rows.first().map(|r| r.balance).unwrap_or_default()
}

#[tokio::test]
async fn a_mixed_workload_balances_to_the_cent_whatever_the_delivery_and_replays_identically() {
    let app = spawn_app_with_role(ServeRole::Api).await;
    let workload = run_workload(&app).await;
    let events = stored_events(&app, &workload.payment_ids).await;

    // Live: shuffled, with redeliveries; gaps are filled from the store.
    let order = delivery_order(&events);
    let (applied, duplicates, early) = deliver(&app, &order).await;
    assert_eq!(applied, events.len());
    assert!(duplicates >= events.len() / 3, "{duplicates} duplicates");
    assert!(early > 0, "no event arrived ahead of its predecessors");
    let live = snapshot(&app, "public").await;
    for (table, rows) in &live {
        assert!(!rows.is_empty(), "{table} is empty");
    }

    // Every entry sums to zero per currency, and every line has exactly one side.
    let unbalanced: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT global_position, currency FROM journal_entries
                                GROUP BY 1, 2 HAVING sum(debit - credit) <> 0) u",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(unbalanced, 0);
    let one_sided: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM journal_entries WHERE (debit > 0) = (credit > 0) OR debit < 0 OR credit < 0",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(one_sided, 0);
    // The grand total of all balances is zero per currency, in both balance tables.
    for table in ["account_balances", "merchant_account_balances"] {
        let totals: Vec<(String, Decimal)> = sqlx::query_as(&format!(
            "SELECT currency, sum(balance) FROM {table} GROUP BY 1 ORDER BY 1"
        ))
        .fetch_all(&app.pool)
        .await
        .unwrap();
        let currencies: Vec<&str> = totals.iter().map(|(c, _)| c.as_str()).collect();
        assert_eq!(currencies, ["COP", "USD"], "{table}");
        for (currency, total) in &totals {
            assert!(
                total.is_zero(),
                "{table}: {currency} balances sum to {total}"
            );
        }
    }
    // Balances are the sums of the journal, and the merchant tables add up to the global one.
    for check in [
        "SELECT account, currency, sum(debit), sum(credit), count(*) FROM journal_entries GROUP BY 1, 2
         EXCEPT SELECT account, currency, debit_total, credit_total, lines FROM account_balances",
        "SELECT account, currency, debit_total, credit_total, lines FROM account_balances
         EXCEPT SELECT account, currency, sum(debit), sum(credit), count(*) FROM journal_entries GROUP BY 1, 2",
        "SELECT account, currency, sum(debit_total), sum(credit_total), sum(lines)::bigint
           FROM merchant_account_balances GROUP BY 1, 2
         EXCEPT SELECT account, currency, debit_total, credit_total, lines FROM account_balances",
        "SELECT merchant_id, account, currency, sum(debit) - sum(credit) FROM journal_entries GROUP BY 1, 2, 3
         EXCEPT SELECT merchant_id, account, currency, balance FROM merchant_account_balances",
    ] {
        let differ: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM ({check}) d"))
            .fetch_one(&app.pool)
            .await
            .unwrap();
        assert_eq!(differ, 0, "{check}");
    }

    // The numbers a user checks, against what the test itself asked for.
    let mut per_currency: BTreeMap<&str, Expected> = BTreeMap::new();
    for ((merchant, currency), expected) in &workload.expected {
        let payable = ledger::merchant_payable(merchant);
        let owed = expected.captured - expected.refunded - expected.fees;
        assert_eq!(
            balance_of(&app, None, &payable, currency).await,
            -owed,
            "{payable} {currency}: captured {} - refunded {} - fees {}",
            expected.captured,
            expected.refunded,
            expected.fees
        );
        assert_eq!(
            balance_of(&app, Some(merchant), &payable, currency).await,
            -owed
        );
        assert_eq!(
            balance_of(&app, Some(merchant), "platform:fees", currency).await,
            -expected.fees
        );
        let total = per_currency.entry(currency).or_default();
        total.captured += expected.captured;
        total.refunded += expected.refunded;
        total.fees += expected.fees;
        total.open_holds += expected.open_holds;
    }
    for (currency, expected) in &per_currency {
        assert!(expected.captured > Decimal::ZERO && expected.fees > Decimal::ZERO);
        assert_eq!(
            balance_of(&app, None, "platform:fees", currency).await,
            -expected.fees
        );
        assert_eq!(
            balance_of(&app, None, "provider:sandbox:clearing", currency).await,
            expected.captured - expected.refunded
        );
        assert_eq!(
            balance_of(&app, None, "customer:funds_in_flight", currency).await,
            expected.open_holds
        );
        assert_eq!(
            balance_of(&app, None, "provider:sandbox:authorizations", currency).await,
            -expected.open_holds
        );
    }
    assert_eq!(per_currency["USD"].open_holds, dec("70.00"));
    assert_eq!(per_currency["COP"].open_holds, Decimal::ZERO);

    // The manual partial capture: the whole 200000.00 hold is released, 120000.00 captured.
    let capture = &workload.payment_ids[1];
    let lines: Vec<(String, String, Decimal, Decimal)> = sqlx::query_as(
        "SELECT posting, account, debit, credit FROM journal_entries
          WHERE payment_id = $1::uuid AND event_type = 'PaymentApproved' ORDER BY line",
    )
    .bind(capture)
    .fetch_all(&app.pool)
    .await
    .unwrap();
    let fee = expected_fee("COP", dec("120000.00"));
    let payable = ledger::merchant_payable(MERCHANT);
    let z = Decimal::ZERO;
    assert_eq!(
        lines,
        [
            (
                "hold_release".into(),
                "provider:sandbox:authorizations".into(),
                dec("200000.00"),
                z
            ),
            (
                "hold_release".into(),
                "customer:funds_in_flight".into(),
                z,
                dec("200000.00")
            ),
            (
                "capture".into(),
                "provider:sandbox:clearing".into(),
                dec("120000.00"),
                z
            ),
            ("capture".into(), payable.clone(), z, dec("120000.00")),
            ("fee".into(), payable, fee, z),
            ("fee".into(), "platform:fees".into(), z, fee),
        ]
    );
    // Declined, failed and refund requests post nothing.
    let posted_by: Vec<String> =
        sqlx::query_scalar("SELECT DISTINCT event_type FROM journal_entries ORDER BY 1")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(
        posted_by,
        [
            "PaymentApproved",
            "PaymentAuthorized",
            "PaymentRefunded",
            "PaymentVoided"
        ]
    );

    // Redelivered again, in reverse: nothing applies, nothing changes.
    let mut reversed = events.clone();
    reversed.reverse();
    assert_eq!(deliver(&app, &reversed).await, (0, events.len(), 0));
    assert_eq!(snapshot(&app, "public").await, live);

    // Replay from the event store alone into a scratch schema equals the live rows.
    let ledger: Arc<dyn Projection> = Arc::new(LedgerProjection);
    let report = projections::replay::replay(&app.pool, &[ledger], "ledger_scratch", 4)
        .await
        .unwrap();
    assert_eq!(report.events as usize, events.len());
    for table in LedgerProjection.tables() {
        assert_eq!(
            differing_rows(&app.pool, table, "ledger_scratch").await,
            0,
            "{table} differs"
        );
    }
    assert_eq!(snapshot(&app, "ledger_scratch").await, live);
}

#[tokio::test]
async fn reads_are_scoped_to_the_merchant_and_page_by_cursor() {
    let app = spawn_app_with_role(ServeRole::Api).await;
    let workload = run_workload(&app).await;
    let events = stored_events(&app, &workload.payment_ids).await;
    deliver(&app, &events).await;
    let pool = &app.pool;
    let payable_a = ledger::merchant_payable(MERCHANT);
    let payable_b = ledger::merchant_payable(MERCHANT_B);

    // Analysts see every account; a merchant only accounts its own payments posted to.
    let all = ledger::balances(pool, None, None, None, 100).await.unwrap();
    let accounts = |rows: &[ledger::AccountBalance]| {
        let mut names: Vec<String> = rows.iter().map(|r| r.account.clone()).collect();
        names.dedup();
        names
    };
    assert_eq!(
        accounts(&all),
        [
            "customer:funds_in_flight",
            payable_a.as_str(),
            payable_b.as_str(),
            "platform:fees",
            "provider:sandbox:authorizations",
            "provider:sandbox:clearing",
        ]
    );
    let only_b = ledger::balances(pool, Some(MERCHANT_B), None, None, 100)
        .await
        .unwrap();
    assert!(!accounts(&only_b).contains(&payable_a));
    assert!(accounts(&only_b).contains(&payable_b));
    assert!(
        ledger::balances(pool, Some(MERCHANT_B), Some(&payable_a), None, 100)
            .await
            .unwrap()
            .is_empty()
    );
    // Filters and limit.
    let usd = ledger::balances(pool, None, None, Some("USD"), 100)
        .await
        .unwrap();
    assert!(!usd.is_empty() && usd.iter().all(|r| r.currency == "USD"));
    assert_eq!(
        ledger::balances(pool, None, None, None, 2)
            .await
            .unwrap()
            .len(),
        2
    );
    assert!(ledger::balances(pool, None, None, None, -1)
        .await
        .unwrap()
        .is_empty());

    // A merchant's share of a shared account: only lines of its payments, summing to its
    // scoped balance.
    let clearing_b = ledger::entries(
        pool,
        Some(MERCHANT_B),
        "provider:sandbox:clearing",
        None,
        100,
    )
    .await
    .unwrap();
    assert!(!clearing_b.is_empty());
    assert!(clearing_b.iter().all(|l| l.merchant_id == MERCHANT_B));
    let sum: Decimal = clearing_b.iter().map(|l| l.debit - l.credit).sum();
    assert_eq!(
        sum,
        balance_of(&app, Some(MERCHANT_B), "provider:sandbox:clearing", "USD").await
            + balance_of(&app, Some(MERCHANT_B), "provider:sandbox:clearing", "COP").await
    );
    assert!(
        ledger::entries(pool, Some(MERCHANT_B), &payable_a, None, 100)
            .await
            .unwrap()
            .is_empty()
    );

    // Keyset pages of 3 walk the whole journal of an account exactly once, in order.
    let everything = ledger::entries(pool, None, &payable_a, None, 1000)
        .await
        .unwrap();
    assert!(everything.len() > 6, "{}", everything.len());
    let mut walked = Vec::new();
    let mut cursor: Option<EntryCursor> = None;
    loop {
        let page = ledger::entries(pool, Some(MERCHANT), &payable_a, cursor, 3)
            .await
            .unwrap();
        assert!(page.len() <= 3);
        let Some(last) = page.last() else { break };
        // The cursor survives its text form, as an API would hand it out.
        cursor = Some(EntryCursor::from(last).to_string().parse().unwrap());
        walked.extend(page);
    }
    assert_eq!(walked, everything);
    assert!(walked
        .windows(2)
        .all(|w| (w[0].global_position, w[0].line) < (w[1].global_position, w[1].line)));
    assert!(walked.iter().all(|l| l.account == payable_a));
}

fn at() -> DateTime<Utc> {
    "2026-03-01T12:00:00Z".parse().unwrap()
}

async fn append(app: &TestApp, id: Uuid, sequence: i64, event: &PaymentEvent) -> PublishedEvent {
    kit::append(&app.pool, id, sequence, event).await
}

fn initiated(id: Uuid, amount: Money) -> PaymentEvent {
    PaymentEvent::PaymentInitiated {
        payment_id: PaymentId::from_uuid(id),
        merchant_id: MerchantId::parse("merchant-f").unwrap(),
        reference: Reference::parse(&id.to_string()).unwrap(),
        amount,
        payment_method: PaymentMethodType::Card,
        capture_mode: CaptureMode::Manual,
        provider: "wompi".into(),
        request_fingerprint: "fp".into(),
        at: at(),
    }
}

#[tokio::test]
async fn fallback_provider_holds_the_money_and_an_impossible_stream_is_poison() {
    let app = spawn_app_with_role(ServeRole::Api).await;
    let cop = |a: &str| Money::parse(a, Currency::COP).unwrap();
    let id = Uuid::new_v4();
    let refund = RefundId::from_uuid(Uuid::new_v4());
    let failed_refund = RefundId::from_uuid(Uuid::new_v4());
    let stream = [
        initiated(id, cop("100000.00")),
        PaymentEvent::ProviderAttemptFailed {
            provider: "wompi".into(),
            kind: ProviderFailureKind::Timeout,
            detail: "timed out".into(),
            at: at(),
            attempt_id: None,
        },
        PaymentEvent::ProviderTransactionCreated {
            provider: "payu".into(),
            provider_transaction_id: "tx-1".into(),
            next_action: None,
            at: at(),
        },
        PaymentEvent::PaymentAuthorized {
            provider: "payu".into(),
            provider_event_id: "ev-1".into(),
            provider_transaction_id: "tx-1".into(),
            amount: cop("100000.00"),
            at: at(),
        },
        PaymentEvent::PaymentApproved {
            provider: "payu".into(),
            provider_event_id: None,
            provider_transaction_id: "tx-1".into(),
            capture_id: Some(CaptureId::from_uuid(Uuid::new_v4())),
            amount: cop("100000.00"),
            fee: Some(cop("4390.00")),
            at: at(),
        },
        PaymentEvent::RefundRequested {
            refund_id: failed_refund,
            amount: cop("10000.00"),
            reason: None,
            at: at(),
        },
        PaymentEvent::RefundFailed {
            refund_id: failed_refund,
            amount: cop("10000.00"),
            reason: "refused".into(),
            at: at(),
        },
        PaymentEvent::RefundRequested {
            refund_id: refund,
            amount: cop("30000.00"),
            reason: None,
            at: at(),
        },
        PaymentEvent::PaymentRefunded {
            refund_id: refund,
            provider_refund_id: "rf-1".into(),
            amount: cop("30000.00"),
            at: at(),
        },
    ];
    let mut published = Vec::new();
    for (i, event) in stream.iter().enumerate() {
        published.push(append(&app, id, i as i64 + 1, event).await);
    }
    // Only the last event is delivered: the rest come from the store.
    assert_eq!(
        apply_event(&app.pool, &LedgerProjection, &published[8])
            .await
            .unwrap(),
        Applied::Events(9)
    );
    let lines = ledger::entries(&app.pool, None, "provider:payu:clearing", None, 100)
        .await
        .unwrap();
    let amounts: Vec<(String, Decimal, Decimal)> = lines
        .iter()
        .map(|l| (l.posting.clone(), l.debit, l.credit))
        .collect();
    let z = Decimal::ZERO;
    assert_eq!(
        amounts,
        [
            ("capture".into(), dec("100000.00"), z),
            ("refund".into(), z, dec("30000.00"))
        ]
    );
    let all = ledger::balances(&app.pool, None, None, None, 100)
        .await
        .unwrap();
    let balances: BTreeMap<String, Decimal> =
        all.iter().map(|b| (b.account.clone(), b.balance)).collect();
    assert_eq!(
        balances,
        BTreeMap::from([
            ("customer:funds_in_flight".into(), z),
            ("merchant:merchant-f:payable".into(), dec("-65610.00")),
            ("platform:fees".into(), dec("-4390.00")),
            ("provider:payu:authorizations".into(), z),
            ("provider:payu:clearing".into(), dec("70000.00")),
        ])
    );
    let context: (String, Option<String>, Decimal, Decimal, Decimal, Decimal) = sqlx::query_as(
        "SELECT provider, capture_provider, hold_amount, captured_amount, fee_amount, refunded_amount
           FROM ledger_payments WHERE payment_id = $1",
    )
    .bind(id)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(
        context,
        (
            "payu".into(),
            Some("payu".into()),
            z,
            dec("100000.00"),
            dec("4390.00"),
            dec("30000.00")
        )
    );

    // A void with no authorization before it cannot be posted: poison, and nothing of that
    // payment is written.
    let bad = Uuid::new_v4();
    append(&app, bad, 1, &initiated(bad, cop("5000.00"))).await;
    let void = append(
        &app,
        bad,
        2,
        &PaymentEvent::PaymentVoided {
            amount: cop("5000.00"),
            at: at(),
        },
    )
    .await;
    let error = apply_event(&app.pool, &LedgerProjection, &void)
        .await
        .unwrap_err();
    assert!(
        matches!(&error, ProjectionError::Poison { reason, .. } if reason.contains("no authorization hold")),
        "{error}"
    );
    let written: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM ledger_payments WHERE payment_id = $1)
              + (SELECT count(*) FROM journal_entries WHERE payment_id = $1)",
    )
    .bind(bad)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(written, 0);
    // A payload that does not decode is poison too.
    let mut garbled = void.clone();
    garbled.payload = json!({"PaymentVoided": {"amount": "lots"}});
    assert!(matches!(
        LedgerProjection
            .apply(
                &mut app.pool.acquire().await.unwrap(),
                std::slice::from_ref(&garbled)
            )
            .await,
        Err(ProjectionError::Poison { .. })
    ));
    // The rest keep flowing: the good payment's redelivery is still a duplicate.
    assert_eq!(
        apply_event(&app.pool, &LedgerProjection, &published[4])
            .await
            .unwrap(),
        Applied::Duplicate
    );
}
