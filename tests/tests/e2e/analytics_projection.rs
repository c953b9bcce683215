//! The `analytics` and `failures` projections against real PostgreSQL: events written to the
//! event store are delivered through `apply_event` (in order, shuffled, redelivered), and the
//! read functions must show the numbers computed here, independently, from what each payment
//! did. A replay into a scratch schema must equal the live tables row for row.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use domain::{
    CaptureId, CaptureMode, Currency, MerchantId, PaymentEvent, PaymentId, PaymentMethodType,
    ProviderFailureKind, Reference, RefundId,
};
use e2e::{payment_body, spawn_app};
use eventstore::PublishedEvent;
use projections::analytics::{self, AnalyticsProjection, DailyRow};
use projections::failures::{self, FailureRow, FailuresProjection};
use projections::Projection;
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use crate::projection_kit::{
    self as kit, append, dec, differing_rows, fresh_pool, money, shuffled_with_redeliveries,
    stored_events, Rng,
};

// ---------------------------------------------------------------------------------------
// What a payment does, and the events that say so.

#[derive(Debug, Clone)]
enum Outcome {
    /// Automatic capture, approved `at_s` seconds after initiation.
    Approved {
        at_s: i64,
        fee: Option<Decimal>,
    },
    /// Manual: authorized, then the merchant captures `amount`.
    Captured {
        auth_s: i64,
        capture_s: i64,
        amount: Decimal,
        fee: Option<Decimal>,
    },
    Voided {
        auth_s: i64,
        void_s: i64,
    },
    Declined {
        at_s: i64,
        reason: &'static str,
    },
    Failed {
        at_s: i64,
        reason: &'static str,
    },
    Expired {
        at_s: i64,
    },
    Pending,
}

#[derive(Debug, Clone)]
struct Refund {
    amount: Decimal,
    succeeds: bool,
    /// Requested this many seconds after initiation; answered one second later.
    at_s: i64,
}

#[derive(Debug, Clone)]
struct Spec {
    id: Uuid,
    merchant: &'static str,
    method: PaymentMethodType,
    currency: Currency,
    amount: Decimal,
    start: DateTime<Utc>,
    /// The provider chosen at initiation.
    initial: &'static str,
    /// Providers that failed to take it, at start + 1 s, + 2 s...
    attempts: Vec<(&'static str, ProviderFailureKind)>,
    /// The provider that took it, right after the attempts.
    taken_by: Option<&'static str>,
    outcome: Outcome,
    refunds: Vec<Refund>,
}

impl Spec {
    fn holder(&self) -> &'static str {
        self.taken_by.unwrap_or(self.initial)
    }

    fn at(&self, seconds: i64) -> DateTime<Utc> {
        self.start + Duration::seconds(seconds)
    }
}

fn day(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
}

/// The stream of one payment, in order.
fn events_of(spec: &Spec) -> Vec<PaymentEvent> {
    let currency = spec.currency;
    let holder = spec.holder().to_owned();
    let transaction = format!("tx-{}", spec.id.simple());
    let mut events = vec![PaymentEvent::PaymentInitiated {
        payment_id: PaymentId::from_uuid(spec.id),
        merchant_id: MerchantId::parse(spec.merchant).unwrap(),
        reference: Reference::parse(&format!("ref-{}", spec.id.simple())).unwrap(),
        amount: money(spec.amount, currency),
        payment_method: spec.method,
        capture_mode: match spec.outcome {
            Outcome::Captured { .. } | Outcome::Voided { .. } => CaptureMode::Manual,
            _ => CaptureMode::Automatic,
        },
        provider: spec.initial.to_owned(),
        request_fingerprint: "fp".into(),
        at: spec.start,
    }];
    for (i, (provider, kind)) in spec.attempts.iter().enumerate() {
        events.push(PaymentEvent::ProviderAttemptFailed {
            provider: (*provider).to_owned(),
            kind: *kind,
            detail: "injected".into(),
            at: spec.at(i as i64 + 1),
            attempt_id: None,
        });
    }
    if let Some(provider) = spec.taken_by {
        events.push(PaymentEvent::ProviderTransactionCreated {
            provider: provider.to_owned(),
            provider_transaction_id: transaction.clone(),
            next_action: None,
            at: spec.at(spec.attempts.len() as i64 + 1),
        });
    }
    let authorized = |at_s: i64| PaymentEvent::PaymentAuthorized {
        provider: holder.clone(),
        provider_event_id: format!("auth-{}", spec.id.simple()),
        provider_transaction_id: transaction.clone(),
        amount: money(spec.amount, currency),
        at: spec.at(at_s),
    };
    match &spec.outcome {
        Outcome::Approved { at_s, fee } => events.push(PaymentEvent::PaymentApproved {
            provider: holder.clone(),
            provider_event_id: Some(format!("ok-{}", spec.id.simple())),
            provider_transaction_id: transaction.clone(),
            capture_id: None,
            amount: money(spec.amount, currency),
            fee: fee.map(|f| money(f, currency)),
            at: spec.at(*at_s),
        }),
        Outcome::Captured {
            auth_s,
            capture_s,
            amount,
            fee,
        } => {
            events.push(authorized(*auth_s));
            events.push(PaymentEvent::PaymentApproved {
                provider: holder.clone(),
                provider_event_id: None,
                provider_transaction_id: transaction.clone(),
                capture_id: Some(CaptureId::from_uuid(Uuid::new_v4())),
                amount: money(*amount, currency),
                fee: fee.map(|f| money(f, currency)),
                at: spec.at(*capture_s),
            });
        }
        Outcome::Voided { auth_s, void_s } => {
            events.push(authorized(*auth_s));
            events.push(PaymentEvent::PaymentVoided {
                amount: money(spec.amount, currency),
                at: spec.at(*void_s),
            });
        }
        Outcome::Declined { at_s, reason } => events.push(PaymentEvent::PaymentDeclined {
            provider: holder.clone(),
            provider_event_id: format!("no-{}", spec.id.simple()),
            provider_transaction_id: transaction.clone(),
            reason: (*reason).to_owned(),
            at: spec.at(*at_s),
        }),
        Outcome::Failed { at_s, reason } => events.push(PaymentEvent::PaymentFailed {
            reason: (*reason).to_owned(),
            at: spec.at(*at_s),
        }),
        Outcome::Expired { at_s } => events.push(PaymentEvent::PaymentExpired {
            provider_event_id: format!("exp-{}", spec.id.simple()),
            at: spec.at(*at_s),
        }),
        Outcome::Pending => {}
    }
    for refund in &spec.refunds {
        let refund_id = RefundId::from_uuid(Uuid::new_v4());
        events.push(PaymentEvent::RefundRequested {
            refund_id,
            amount: money(refund.amount, currency),
            reason: None,
            at: spec.at(refund.at_s),
        });
        events.push(if refund.succeeds {
            PaymentEvent::PaymentRefunded {
                refund_id,
                provider_refund_id: format!("pr-{}", refund_id.as_uuid().simple()),
                amount: money(refund.amount, currency),
                at: spec.at(refund.at_s + 1),
            }
        } else {
            PaymentEvent::RefundFailed {
                refund_id,
                amount: money(refund.amount, currency),
                reason: "refused".into(),
                at: spec.at(refund.at_s + 1),
            }
        });
    }
    events
}

// ---------------------------------------------------------------------------------------
// The database: a fresh migrated one, an event store written like the real one, delivery.

/// Appends every payment's events to the store, all payments interleaved in time order (as
/// they would be in production), and returns them in global order.
async fn record(pool: &PgPool, specs: &[Spec]) -> Vec<PublishedEvent> {
    let mut all = Vec::new();
    for (index, spec) in specs.iter().enumerate() {
        for (i, event) in events_of(spec).into_iter().enumerate() {
            all.push((event.at(), index, i as i64 + 1, spec.id, event));
        }
    }
    all.sort_by_key(|(at, index, sequence, _, _)| (*at, *index, *sequence));
    for (_, _, sequence, id, event) in &all {
        append(pool, *id, *sequence, event).await;
    }
    stored_events(pool).await
}

/// Delivers each event to both projections, as their consumers would.
async fn deliver(pool: &PgPool, events: &[PublishedEvent]) -> usize {
    kit::deliver(pool, &BOTH, events).await.0
}

const BOTH: [&dyn Projection; 2] = [&AnalyticsProjection, &FailuresProjection];

const TABLES: [&str; 5] = [
    "analytics_daily",
    "analytics_approval_times",
    "analytics_payments",
    "payment_failures",
    "failures_payments",
];

/// Every row of both projections' tables, as sorted text.
async fn snapshot(pool: &PgPool, schema: &str) -> BTreeMap<&'static str, Vec<String>> {
    kit::snapshot(pool, &BOTH, schema).await
}

// ---------------------------------------------------------------------------------------
// The independent model: what an analyst expects from the specs alone.

type DayKey = (String, NaiveDate, String, String, String);

#[derive(Debug, Default, Clone)]
struct ExpectedDay {
    initiated: i64,
    approved: i64,
    declined: i64,
    failed: i64,
    expired: i64,
    voided: i64,
    refunded: i64,
    approved_amount: Decimal,
    refunded_amount: Decimal,
    fee_amount: Decimal,
    approval_seconds: Vec<Decimal>,
}

fn bucket<'a>(
    days: &'a mut BTreeMap<DayKey, ExpectedDay>,
    spec: &Spec,
    provider: &str,
    at: DateTime<Utc>,
) -> &'a mut ExpectedDay {
    days.entry((
        spec.merchant.to_owned(),
        at.date_naive(),
        provider.to_owned(),
        spec.method.as_str().to_owned(),
        spec.currency.code().to_owned(),
    ))
    .or_default()
}

fn expected_days(specs: &[Spec]) -> BTreeMap<DayKey, ExpectedDay> {
    let mut days: BTreeMap<DayKey, ExpectedDay> = BTreeMap::new();
    for spec in specs {
        bucket(&mut days, spec, spec.initial, spec.start).initiated += 1;
        let holder = spec.holder();
        match &spec.outcome {
            Outcome::Approved { at_s, fee } => {
                let r = bucket(&mut days, spec, holder, spec.at(*at_s));
                r.approved += 1;
                r.approved_amount += spec.amount;
                r.fee_amount += fee.unwrap_or_default();
                r.approval_seconds.push(Decimal::from(*at_s));
            }
            Outcome::Captured {
                capture_s,
                amount,
                fee,
                ..
            } => {
                let r = bucket(&mut days, spec, holder, spec.at(*capture_s));
                r.approved += 1;
                r.approved_amount += *amount;
                r.fee_amount += fee.unwrap_or_default();
                r.approval_seconds.push(Decimal::from(*capture_s));
            }
            Outcome::Voided { void_s, .. } => {
                bucket(&mut days, spec, holder, spec.at(*void_s)).voided += 1
            }
            Outcome::Declined { at_s, .. } => {
                bucket(&mut days, spec, holder, spec.at(*at_s)).declined += 1
            }
            Outcome::Failed { at_s, .. } => {
                bucket(&mut days, spec, holder, spec.at(*at_s)).failed += 1
            }
            Outcome::Expired { at_s } => {
                bucket(&mut days, spec, holder, spec.at(*at_s)).expired += 1
            }
            Outcome::Pending => {}
        }
        for refund in spec.refunds.iter().filter(|r| r.succeeds) {
            let r = bucket(&mut days, spec, holder, spec.at(refund.at_s + 1));
            r.refunded += 1;
            r.refunded_amount += refund.amount;
        }
    }
    days
}

/// PostgreSQL's `percentile_cont`: linear interpolation between the closest ranks.
fn percentile(values: &[Decimal], p: Decimal) -> Option<Decimal> {
    let mut sorted = values.to_vec();
    sorted.sort();
    let last = sorted.len().checked_sub(1)?;
    let position = p * Decimal::from(last);
    let below = position.floor();
    let index = below.to_usize().unwrap();
    let above = (index + 1).min(last);
    let value = sorted[index] + (sorted[above] - sorted[index]) * (position - below);
    Some(value.round_dp(3))
}

type FailureKey = (String, String, String, String);

#[derive(Debug, Clone, PartialEq)]
struct ExpectedFailure {
    count: i64,
    amount: Decimal,
    first_seen: DateTime<Utc>,
    last_seen: DateTime<Utc>,
    last_payment_id: Uuid,
}

fn expected_failures(specs: &[Spec]) -> BTreeMap<FailureKey, ExpectedFailure> {
    // (when, which spec: the store order breaks ties between payments at the same instant)
    let mut failures: BTreeMap<FailureKey, (ExpectedFailure, (DateTime<Utc>, usize))> =
        BTreeMap::new();
    for (index, spec) in specs.iter().enumerate() {
        let mut occurrences: Vec<(&str, String, DateTime<Utc>)> = Vec::new();
        for (i, (provider, kind)) in spec.attempts.iter().enumerate() {
            let kind = serde_json::to_value(kind).unwrap();
            occurrences.push((
                provider,
                format!("provider_error:{}", kind.as_str().unwrap()),
                spec.at(i as i64 + 1),
            ));
        }
        match &spec.outcome {
            Outcome::Declined { at_s, reason } => {
                occurrences.push((spec.holder(), (*reason).to_owned(), spec.at(*at_s)))
            }
            Outcome::Failed { at_s, reason } => {
                occurrences.push((spec.holder(), (*reason).to_owned(), spec.at(*at_s)))
            }
            Outcome::Expired { at_s } => {
                occurrences.push((spec.holder(), "expired".to_owned(), spec.at(*at_s)))
            }
            _ => {}
        }
        for (provider, reason, at) in occurrences {
            let key = (
                spec.merchant.to_owned(),
                provider.to_owned(),
                reason,
                spec.currency.code().to_owned(),
            );
            let (row, last) = failures.entry(key).or_insert((
                ExpectedFailure {
                    count: 0,
                    amount: Decimal::ZERO,
                    first_seen: at,
                    last_seen: at,
                    last_payment_id: spec.id,
                },
                (at, index),
            ));
            row.count += 1;
            row.amount += spec.amount;
            row.first_seen = row.first_seen.min(at);
            if (at, index) >= *last {
                *last = (at, index);
                row.last_seen = at;
                row.last_payment_id = spec.id;
            }
        }
    }
    failures.into_iter().map(|(k, (v, _))| (k, v)).collect()
}

async fn assert_matches_model(pool: &PgPool, specs: &[Spec]) {
    let expected = expected_days(specs);
    let rows = analytics::daily(pool, None, None, None, None, None, None, 100_000)
        .await
        .unwrap();
    assert_eq!(rows.len(), expected.len(), "one row per day and bucket");
    let half = dec("0.5");
    let p95 = dec("0.95");
    for row in &rows {
        let key = (
            row.merchant_id.clone(),
            row.day,
            row.provider.clone(),
            row.payment_method_type.clone(),
            row.currency.clone(),
        );
        let want = expected
            .get(&key)
            .unwrap_or_else(|| panic!("unexpected row {row:?}"));
        let decided = want.approved + want.declined + want.failed + want.expired;
        assert_eq!(
            (
                row.initiated_count,
                row.approved_count,
                row.declined_count,
                row.failed_count,
                row.expired_count,
                row.voided_count,
                row.refunded_count,
                row.decided_count,
            ),
            (
                want.initiated,
                want.approved,
                want.declined,
                want.failed,
                want.expired,
                want.voided,
                want.refunded,
                decided,
            ),
            "counts of {key:?}"
        );
        assert_eq!(
            (row.approved_amount, row.refunded_amount, row.fee_amount),
            (want.approved_amount, want.refunded_amount, want.fee_amount),
            "amounts of {key:?}"
        );
        let rate = (decided > 0)
            .then(|| (Decimal::from(want.approved) / Decimal::from(decided)).round_dp(6));
        assert_eq!(row.success_rate, rate, "success rate of {key:?}");
        assert_eq!(row.timed_approvals, want.approval_seconds.len() as i64);
        assert_eq!(
            (row.approval_seconds_median, row.approval_seconds_p95),
            (
                percentile(&want.approval_seconds, half),
                percentile(&want.approval_seconds, p95)
            ),
            "approval times of {key:?}"
        );
    }

    let expected = expected_failures(specs);
    let rows = failures::failures(pool, None, None, None, None, 100_000)
        .await
        .unwrap();
    assert_eq!(rows.len(), expected.len(), "one row per failure key");
    for row in &rows {
        let key = (
            row.merchant_id.clone(),
            row.provider.clone(),
            row.reason.clone(),
            row.currency.clone(),
        );
        let want = expected
            .get(&key)
            .unwrap_or_else(|| panic!("unexpected failure row {row:?}"));
        assert_eq!(
            ExpectedFailure {
                count: row.count,
                amount: row.amount,
                first_seen: row.first_seen,
                last_seen: row.last_seen,
                last_payment_id: row.last_payment_id,
            },
            *want,
            "failures of {key:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// A day an analyst checks by hand.

fn hand_specs() -> Vec<Spec> {
    let card = PaymentMethodType::Card;
    let spec = |n: u128,
                merchant: &'static str,
                method: PaymentMethodType,
                currency: Currency,
                amount: &str,
                start: DateTime<Utc>,
                initial: &'static str,
                outcome: Outcome| Spec {
        id: Uuid::from_u128(0xA000 + n),
        merchant,
        method,
        currency,
        amount: dec(amount),
        start,
        initial,
        attempts: vec![],
        taken_by: Some(initial),
        outcome,
        refunds: vec![],
    };
    let cop = Currency::COP;
    vec![
        // Approved in 5 s, refunded 30 000 the same day and 70 000 the next.
        Spec {
            refunds: vec![
                Refund {
                    amount: dec("30000.00"),
                    succeeds: true,
                    at_s: 7200,
                },
                Refund {
                    amount: dec("70000.00"),
                    succeeds: true,
                    at_s: 82_800,
                },
            ],
            ..spec(
                1,
                "m-a",
                card,
                cop,
                "100000.00",
                utc(2026, 3, 1, 10, 0, 0),
                "wompi",
                Outcome::Approved {
                    at_s: 5,
                    fee: Some(dec("2900.00")),
                },
            )
        },
        // Wompi fails, PayU takes it and approves it in 12 s.
        Spec {
            attempts: vec![("wompi", ProviderFailureKind::ServerError)],
            taken_by: Some("payu"),
            ..spec(
                2,
                "m-a",
                card,
                cop,
                "50000.00",
                utc(2026, 3, 1, 11, 0, 0),
                "wompi",
                Outcome::Approved {
                    at_s: 12,
                    fee: Some(dec("1000.00")),
                },
            )
        },
        spec(
            3,
            "m-a",
            card,
            cop,
            "20000.00",
            utc(2026, 3, 1, 12, 0, 0),
            "wompi",
            Outcome::Declined {
                at_s: 3,
                reason: "insufficient_funds",
            },
        ),
        // Every provider fails: never taken, so it fails under the initial choice.
        Spec {
            attempts: vec![
                ("wompi", ProviderFailureKind::Timeout),
                ("payu", ProviderFailureKind::Connection),
            ],
            taken_by: None,
            ..spec(
                4,
                "m-a",
                card,
                cop,
                "30000.00",
                utc(2026, 3, 1, 13, 0, 0),
                "wompi",
                Outcome::Failed {
                    at_s: 4,
                    reason: "provider_unavailable",
                },
            )
        },
        spec(
            5,
            "m-a",
            PaymentMethodType::Pse,
            cop,
            "80000.00",
            utc(2026, 3, 1, 14, 0, 0),
            "wompi",
            Outcome::Expired { at_s: 3600 },
        ),
        spec(
            6,
            "m-a",
            card,
            cop,
            "40000.00",
            utc(2026, 3, 1, 15, 0, 0),
            "wompi",
            Outcome::Voided {
                auth_s: 2,
                void_s: 600,
            },
        ),
        // Manual: captured 45 000 of 60 000 after 30 s; its refund is refused.
        Spec {
            refunds: vec![Refund {
                amount: dec("10000.00"),
                succeeds: false,
                at_s: 100,
            }],
            ..spec(
                7,
                "m-a",
                card,
                cop,
                "60000.00",
                utc(2026, 3, 1, 16, 0, 0),
                "wompi",
                Outcome::Captured {
                    auth_s: 2,
                    capture_s: 30,
                    amount: dec("45000.00"),
                    fee: Some(dec("1300.00")),
                },
            )
        },
        // Initiated at 23:59:50, approved at 00:00:10 the next day.
        spec(
            8,
            "m-b",
            PaymentMethodType::Gcash,
            Currency::PHP,
            "500.00",
            utc(2026, 3, 1, 23, 59, 50),
            "paymongo",
            Outcome::Approved {
                at_s: 20,
                fee: Some(dec("12.50")),
            },
        ),
        spec(
            9,
            "m-b",
            PaymentMethodType::Gcash,
            Currency::PHP,
            "700.00",
            utc(2026, 3, 1, 20, 0, 0),
            "paymongo",
            Outcome::Declined {
                at_s: 4,
                reason: "insufficient_funds",
            },
        ),
        spec(
            10,
            "m-a",
            card,
            cop,
            "100000.00",
            utc(2026, 3, 1, 17, 0, 0),
            "wompi",
            Outcome::Declined {
                at_s: 9,
                reason: "insufficient_funds",
            },
        ),
        spec(
            11,
            "m-a",
            card,
            cop,
            "10000.00",
            utc(2026, 3, 1, 18, 0, 0),
            "wompi",
            Outcome::Approved { at_s: 7, fee: None },
        ),
    ]
}

fn find<'a>(
    rows: &'a [DailyRow],
    merchant: &str,
    on: NaiveDate,
    provider: &str,
    method: &str,
) -> &'a DailyRow {
    rows.iter()
        .find(|r| {
            r.merchant_id == merchant
                && r.day == on
                && r.provider == provider
                && r.payment_method_type == method
        })
        .unwrap_or_else(|| panic!("no row {merchant} {on} {provider} {method}"))
}

fn failure<'a>(
    rows: &'a [FailureRow],
    merchant: &str,
    provider: &str,
    reason: &str,
) -> &'a FailureRow {
    rows.iter()
        .find(|r| r.merchant_id == merchant && r.provider == provider && r.reason == reason)
        .unwrap_or_else(|| panic!("no failure {merchant} {provider} {reason}"))
}

#[tokio::test]
async fn a_day_of_payments_shows_the_numbers_an_analyst_checks_by_hand() {
    let pool = fresh_pool().await;
    let specs = hand_specs();
    let events = record(&pool, &specs).await;
    deliver(&pool, &events).await;

    let d1 = day(2026, 3, 1);
    let d2 = day(2026, 3, 2);
    let rows = analytics::daily(&pool, None, None, None, None, None, None, 100)
        .await
        .unwrap();
    assert_eq!(rows.len(), 6, "{rows:#?}");

    // Wompi cards on day 1: 8 initiated (including the one PayU approved), 3 approved
    // (100 000 + 45 000 captured + 10 000), 2 declined, 1 failed, 1 voided, 1 refund.
    let wompi = find(&rows, "m-a", d1, "wompi", "CARD");
    assert_eq!(wompi.currency, "COP");
    assert_eq!(
        (
            wompi.initiated_count,
            wompi.approved_count,
            wompi.declined_count,
            wompi.failed_count,
            wompi.expired_count,
            wompi.voided_count,
            wompi.refunded_count
        ),
        (8, 3, 2, 1, 0, 1, 1)
    );
    assert_eq!(wompi.approved_amount, dec("155000.00"));
    assert_eq!(wompi.fee_amount, dec("4200.00"));
    assert_eq!(wompi.refunded_amount, dec("30000.00"));
    assert_eq!(wompi.decided_count, 6);
    assert_eq!(wompi.success_rate, Some(dec("0.5")));
    // 5, 7 and 30 seconds: median 7, p95 = 7 + 0.9 * (30 - 7).
    assert_eq!(wompi.timed_approvals, 3);
    assert_eq!(wompi.approval_seconds_median, Some(dec("7")));
    assert_eq!(wompi.approval_seconds_p95, Some(dec("27.7")));

    // The fallback's approval is PayU's: no initiation there, one approval in 12 s.
    let payu = find(&rows, "m-a", d1, "payu", "CARD");
    assert_eq!((payu.initiated_count, payu.approved_count), (0, 1));
    assert_eq!(
        (payu.approved_amount, payu.fee_amount),
        (dec("50000.00"), dec("1000.00"))
    );
    assert_eq!(payu.success_rate, Some(Decimal::ONE));
    assert_eq!(payu.approval_seconds_median, Some(dec("12")));

    // The second refund counts on the day it happened, with nothing else.
    let refund_day = find(&rows, "m-a", d2, "wompi", "CARD");
    assert_eq!(
        (refund_day.refunded_count, refund_day.refunded_amount),
        (1, dec("70000.00"))
    );
    assert_eq!(
        (refund_day.initiated_count, refund_day.decided_count),
        (0, 0)
    );
    assert_eq!(refund_day.success_rate, None);
    assert_eq!(refund_day.approval_seconds_median, None);
    assert_eq!(refund_day.approval_seconds_p95, None);

    let pse = find(&rows, "m-a", d1, "wompi", "PSE");
    assert_eq!(
        (pse.initiated_count, pse.expired_count, pse.success_rate),
        (1, 1, Some(Decimal::ZERO))
    );

    // Across midnight: initiated on day 1, approved (20 s later) on day 2.
    let gcash_1 = find(&rows, "m-b", d1, "paymongo", "GCASH");
    assert_eq!(
        (
            gcash_1.initiated_count,
            gcash_1.declined_count,
            gcash_1.approved_count
        ),
        (2, 1, 0)
    );
    let gcash_2 = find(&rows, "m-b", d2, "paymongo", "GCASH");
    assert_eq!((gcash_2.initiated_count, gcash_2.approved_count), (0, 1));
    assert_eq!(
        (
            gcash_2.currency.as_str(),
            gcash_2.approved_amount,
            gcash_2.fee_amount
        ),
        ("PHP", dec("500.00"), dec("12.50"))
    );
    assert_eq!(gcash_2.approval_seconds_median, Some(dec("20")));

    // Filters and scope.
    let only = |m, f, t, p, me, c, l| analytics::daily(&pool, m, f, t, p, me, c, l);
    assert_eq!(
        only(Some("m-b"), None, None, None, None, None, 100)
            .await
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        only(Some("nobody"), None, None, None, None, None, 100)
            .await
            .unwrap()
            .len(),
        0
    );
    assert_eq!(
        only(None, Some(d2), Some(d2), None, None, None, 100)
            .await
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        only(None, Some(d1), Some(d1), None, None, None, 100)
            .await
            .unwrap()
            .len(),
        4
    );
    assert_eq!(
        only(None, None, None, Some("payu"), None, None, 100)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        only(None, None, None, None, Some("PSE"), None, 100)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        only(None, None, None, None, None, Some("PHP"), 100)
            .await
            .unwrap()
            .len(),
        2
    );
    let newest = only(None, None, None, None, None, None, 1).await.unwrap();
    assert_eq!(
        (newest.len(), newest[0].day, newest[0].merchant_id.as_str()),
        (1, d2, "m-a"),
        "newest day first, then by merchant"
    );

    // Failures.
    let rows = failures::failures(&pool, None, None, None, None, 100)
        .await
        .unwrap();
    assert_eq!(rows.len(), 7, "{rows:#?}");
    let declined = failure(&rows, "m-a", "wompi", "insufficient_funds");
    assert_eq!(rows[0], *declined, "most frequent first");
    assert_eq!(
        (declined.count, declined.amount, declined.currency.as_str()),
        (2, dec("120000.00"), "COP")
    );
    assert_eq!(declined.first_seen, utc(2026, 3, 1, 12, 0, 3));
    assert_eq!(declined.last_seen, utc(2026, 3, 1, 17, 0, 9));
    assert_eq!(declined.last_payment_id, Uuid::from_u128(0xA000 + 10));
    // The provider errors, each under the provider that failed, with the payment's amount.
    let server_error = failure(&rows, "m-a", "wompi", "provider_error:server_error");
    assert_eq!(
        (server_error.count, server_error.amount),
        (1, dec("50000.00"))
    );
    assert_eq!(server_error.last_payment_id, Uuid::from_u128(0xA000 + 2));
    let timeout = failure(&rows, "m-a", "wompi", "provider_error:timeout");
    assert_eq!((timeout.count, timeout.amount), (1, dec("30000.00")));
    let connection = failure(&rows, "m-a", "payu", "provider_error:connection");
    assert_eq!(connection.last_seen, utc(2026, 3, 1, 13, 0, 2));
    let unavailable = failure(&rows, "m-a", "wompi", "provider_unavailable");
    assert_eq!(
        (unavailable.count, unavailable.amount),
        (1, dec("30000.00"))
    );
    let expired = failure(&rows, "m-a", "wompi", "expired");
    assert_eq!(
        (expired.amount, expired.last_seen),
        (dec("80000.00"), utc(2026, 3, 1, 15, 0, 0))
    );
    let php = failure(&rows, "m-b", "paymongo", "insufficient_funds");
    assert_eq!(
        (php.count, php.amount, php.currency.as_str()),
        (1, dec("700.00"), "PHP")
    );

    // Scope, provider, and the [from, to) window on last_seen.
    let fails = |m, f, t, p, l| failures::failures(&pool, m, f, t, p, l);
    assert_eq!(
        fails(Some("m-a"), None, None, None, 100)
            .await
            .unwrap()
            .len(),
        6
    );
    assert_eq!(
        fails(None, None, None, Some("wompi"), 100)
            .await
            .unwrap()
            .len(),
        5
    );
    assert_eq!(
        fails(None, None, None, Some("payu"), 100)
            .await
            .unwrap()
            .len(),
        1
    );
    let window = fails(
        None,
        Some(utc(2026, 3, 1, 15, 0, 0)),
        Some(utc(2026, 3, 1, 17, 0, 9)),
        None,
        100,
    )
    .await
    .unwrap();
    assert_eq!(
        window.iter().map(|r| r.reason.as_str()).collect::<Vec<_>>(),
        ["expired"]
    );
    let window = fails(
        None,
        Some(utc(2026, 3, 1, 15, 0, 0)),
        Some(utc(2026, 3, 1, 17, 0, 10)),
        None,
        100,
    )
    .await
    .unwrap();
    assert_eq!(window.len(), 2);
    assert_eq!(fails(None, None, None, None, 3).await.unwrap().len(), 3);

    // The same numbers as the model computes.
    assert_matches_model(&pool, &specs).await;
}

// ---------------------------------------------------------------------------------------
// A mixed workload, delivered out of order and twice, then replayed.

fn generated_specs(count: u128, rng: &mut Rng) -> Vec<Spec> {
    let providers = ["wompi", "payu", "paymongo"];
    let merchants = ["m-a", "m-b", "m-c"];
    let methods = [
        PaymentMethodType::Card,
        PaymentMethodType::Pse,
        PaymentMethodType::Nequi,
    ];
    let currencies = [Currency::COP, Currency::USD, Currency::CLP];
    let kinds = [
        ProviderFailureKind::Timeout,
        ProviderFailureKind::Connection,
        ProviderFailureKind::ServerError,
    ];
    let reasons = ["insufficient_funds", "card_declined", "fraud_suspected"];
    let base = utc(2026, 4, 1, 0, 0, 0);
    (0..count)
        .map(|n| {
            let currency = rng.pick(&currencies);
            let units = 1 + rng.below(5_000) as i64;
            let amount = {
                let mut a = Decimal::from(units * 100);
                a.rescale(currency.scale());
                a
            };
            let initial = rng.pick(&providers);
            let failed_attempts = match rng.below(10) {
                0..=6 => 0,
                7 | 8 => 1,
                _ => 2,
            };
            let attempts: Vec<_> = (0..failed_attempts)
                .map(|i| {
                    let provider = if i == 0 {
                        initial
                    } else {
                        rng.pick(&providers)
                    };
                    (provider, rng.pick(&kinds))
                })
                .collect();
            let every_one_failed = failed_attempts == 2 && rng.below(2) == 0;
            let taken_by = if every_one_failed {
                None
            } else if failed_attempts > 0 {
                Some(rng.pick(&providers))
            } else {
                Some(initial)
            };
            let after = failed_attempts as i64 + 2 + rng.below(1_800) as i64;
            let fee = |rng: &mut Rng| {
                (rng.below(4) > 0).then(|| {
                    let mut f = Decimal::from(units);
                    f.rescale(currency.scale());
                    f
                })
            };
            let outcome = if taken_by.is_none() {
                Outcome::Failed {
                    at_s: after,
                    reason: "provider_unavailable",
                }
            } else {
                match rng.below(10) {
                    0..=3 => Outcome::Approved {
                        at_s: after,
                        fee: fee(rng),
                    },
                    4 => Outcome::Captured {
                        auth_s: after,
                        capture_s: after + 1 + rng.below(7_200) as i64,
                        amount: {
                            let mut a = Decimal::from(units * 50);
                            a.rescale(currency.scale());
                            a
                        },
                        fee: fee(rng),
                    },
                    5 => Outcome::Voided {
                        auth_s: after,
                        void_s: after + 1 + rng.below(3_600) as i64,
                    },
                    6 | 7 => Outcome::Declined {
                        at_s: after,
                        reason: rng.pick(&reasons),
                    },
                    8 => Outcome::Expired { at_s: after },
                    _ => Outcome::Pending,
                }
            };
            let captured = match &outcome {
                Outcome::Approved { .. } => Some((amount, after)),
                Outcome::Captured {
                    amount, capture_s, ..
                } => Some((*amount, *capture_s)),
                _ => None,
            };
            let mut refunds = Vec::new();
            if let Some((captured, at)) = captured {
                if rng.below(2) == 0 {
                    let mut part = captured / Decimal::from(4);
                    part.rescale(currency.scale());
                    refunds.push(Refund {
                        amount: part,
                        succeeds: rng.below(5) > 0,
                        at_s: at + 60 + rng.below(86_400) as i64,
                    });
                    let at = refunds[0].at_s + 2;
                    if rng.below(2) == 0 {
                        refunds.push(Refund {
                            amount: part,
                            succeeds: true,
                            at_s: at + rng.below(3_600) as i64,
                        });
                    }
                }
            }
            Spec {
                id: Uuid::from_u128(0xB000_0000 + n),
                merchant: rng.pick(&merchants),
                method: rng.pick(&methods),
                currency,
                amount,
                // Three days, so buckets cross midnight.
                start: base + Duration::seconds(rng.below(3 * 86_400) as i64),
                initial,
                attempts,
                taken_by,
                outcome,
                refunds,
            }
        })
        .collect()
}

#[tokio::test]
async fn shuffled_and_redelivered_events_give_the_model_and_replay_gives_the_same_rows() {
    let pool = fresh_pool().await;
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let mut specs = hand_specs();
    specs.extend(generated_specs(150, &mut rng));
    // Failures of one key at the same instant: the last payment is the later in the store,
    // whichever is applied last.
    for pair in 0..6u128 {
        for n in 0..2u128 {
            specs.push(Spec {
                id: Uuid::from_u128(0xC000 + pair * 2 + n),
                merchant: "m-tie",
                method: PaymentMethodType::Card,
                currency: Currency::USD,
                amount: dec("10.00"),
                start: utc(2026, 5, 1, 9, 0, 0) + Duration::hours(pair as i64),
                initial: "wompi",
                attempts: vec![],
                taken_by: Some("wompi"),
                outcome: Outcome::Declined {
                    at_s: 5,
                    reason: if pair % 2 == 0 { "tie_a" } else { "tie_b" },
                },
                refunds: vec![],
            });
        }
    }
    let events = record(&pool, &specs).await;

    // Out of order, with a third delivered twice: gaps are filled from the store, repeats
    // are skipped.
    let deliveries = shuffled_with_redeliveries(&events, &mut rng);
    let applied = deliver(&pool, &deliveries).await;
    assert_eq!(
        applied,
        2 * events.len(),
        "each event applied once per projection"
    );
    assert_matches_model(&pool, &specs).await;
    let live = snapshot(&pool, "public").await;
    for table in TABLES {
        assert!(!live[table].is_empty(), "{table} is empty");
    }

    // Everything again, backwards: nothing changes.
    let mut again = events.clone();
    again.reverse();
    assert_eq!(deliver(&pool, &again).await, 0);
    assert_eq!(snapshot(&pool, "public").await, live);

    // A replay in global order, into a scratch schema, gives the same rows.
    let both: [Arc<dyn Projection>; 2] =
        [Arc::new(AnalyticsProjection), Arc::new(FailuresProjection)];
    let report = projections::replay::replay(&pool, &both, "scratch_analytics", 37)
        .await
        .unwrap();
    assert_eq!(report.events as usize, events.len());
    assert_eq!(snapshot(&pool, "scratch_analytics").await, live);
    for table in TABLES {
        let differing = differing_rows(&pool, table, "scratch_analytics").await;
        assert_eq!(differing, 0, "{table} differs after replay");
    }
    let offsets_differ: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM ((SELECT * FROM public.projection_offsets
                                 WHERE projection IN ('analytics', 'failures')
                                EXCEPT SELECT * FROM scratch_analytics.projection_offsets)
                               UNION ALL
                               (SELECT * FROM scratch_analytics.projection_offsets
                                EXCEPT SELECT * FROM public.projection_offsets)) d",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(offsets_differ, 0);

    // A replay over the live tables themselves lands on the same rows too.
    projections::replay::replay(&pool, &both, "public", 1000)
        .await
        .unwrap();
    assert_eq!(snapshot(&pool, "public").await, live);
}

#[tokio::test]
async fn an_event_for_a_payment_never_initiated_is_poison() {
    let pool = fresh_pool().await;
    let spec = &hand_specs()[2];
    let events = record(&pool, std::slice::from_ref(spec)).await;
    // Without its PaymentInitiated (as if the projection had been started mid-stream).
    for projection in [
        &AnalyticsProjection as &dyn Projection,
        &FailuresProjection as &dyn Projection,
    ] {
        let mut conn = pool.acquire().await.unwrap();
        let error = projection
            .apply(&mut conn, &events[events.len() - 1..])
            .await
            .unwrap_err();
        assert!(
            matches!(error, projections::ProjectionError::Poison { .. }),
            "{error}"
        );
    }
    let mut broken = events[0].clone();
    broken.payload = json!({"PaymentInitiated": {"nonsense": true}});
    let mut conn = pool.acquire().await.unwrap();
    assert!(matches!(
        AnalyticsProjection
            .apply(&mut conn, std::slice::from_ref(&broken))
            .await,
        Err(projections::ProjectionError::Poison { .. })
    ));
}

// ---------------------------------------------------------------------------------------
// Real payments through the API: the projections read the events the service wrote.

#[tokio::test]
async fn real_payments_through_the_api_add_up() {
    let app = spawn_app().await;
    let mut approved_amount = Decimal::ZERO;
    let mut fee_amount = Decimal::ZERO;
    let mut refunded_amount = Decimal::ZERO;

    // Two automatic approvals, one refunded in part.
    let mut approved_ids = Vec::new();
    for (i, amount) in ["120.00", "80.50"].iter().enumerate() {
        let created = app
            .create_payment(
                &format!("ap-{i}"),
                &payment_body(
                    amount,
                    "USD",
                    &format!("ap-{i}"),
                    "tok_sandbox_approved",
                    "automatic",
                ),
            )
            .await;
        let id = created["id"].as_str().unwrap().to_owned();
        let view = app.wait_for_status(&id, "APPROVED").await;
        approved_amount += dec(amount);
        fee_amount += dec(view["fees"]["amount"].as_str().unwrap_or("0"));
        approved_ids.push(id);
    }
    let refund = app
        .post(
            &format!("/v1/payments/{}/refunds", approved_ids[0]),
            &app.checkout_key,
            Some("r-1"),
            &json!({"amount": "20.00"}),
        )
        .await;
    assert_eq!(refund.status(), 201);
    refunded_amount += dec("20.00");

    // A manual capture of part of an authorization, and a void.
    let manual = app
        .create_payment(
            "man-1",
            &payment_body("300.00", "USD", "man-1", "tok_sandbox_approved", "manual"),
        )
        .await;
    let manual_id = manual["id"].as_str().unwrap().to_owned();
    app.wait_for_status(&manual_id, "AUTHORIZED").await;
    let captured = app
        .post(
            &format!("/v1/payments/{manual_id}/capture"),
            &app.checkout_key,
            Some("c-1"),
            &json!({"amount": "250.00"}),
        )
        .await;
    assert_eq!(captured.status(), 201);
    let captured: serde_json::Value = captured.json().await.unwrap();
    approved_amount += dec("250.00");
    fee_amount += dec(captured["fees"]["amount"].as_str().unwrap_or("0"));
    let void = app
        .create_payment(
            "void-1",
            &payment_body("40.00", "USD", "void-1", "tok_sandbox_approved", "manual"),
        )
        .await;
    let void_id = void["id"].as_str().unwrap().to_owned();
    app.wait_for_status(&void_id, "AUTHORIZED").await;
    let voided = app
        .post(
            &format!("/v1/payments/{void_id}/void"),
            &app.checkout_key,
            None,
            &json!({}),
        )
        .await;
    assert_eq!(voided.status(), 200);

    // A decline and a provider error.
    let declined = app
        .create_payment(
            "dec-1",
            &payment_body("15.00", "USD", "dec-1", "tok_sandbox_declined", "automatic"),
        )
        .await;
    let declined_id = declined["id"].as_str().unwrap().to_owned();
    let declined_view = app.wait_for_status(&declined_id, "DECLINED").await;
    let decline_reason = declined_view["failure_reason"].as_str().unwrap().to_owned();
    let failed = app
        .create_payment(
            "err-1",
            &payment_body("25.00", "USD", "err-1", "tok_sandbox_error", "automatic"),
        )
        .await;
    assert_eq!(failed["status"], "FAILED");
    let failure_reason = failed["failure_reason"].as_str().unwrap().to_owned();

    // The live consumers (RabbitMQ) apply every event: wait until both have them all.
    let events = stored_events(&app.pool).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let applied: Vec<i64> = sqlx::query_scalar(
            "SELECT applied_total FROM projection_progress
              WHERE projection IN ('analytics', 'failures')",
        )
        .fetch_all(&app.pool)
        .await
        .unwrap();
        if applied.len() == 2 && applied.iter().all(|n| *n == events.len() as i64) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "live projections applied {applied:?} of {} events",
            events.len()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // Delivering them all again, as a redelivery would, changes nothing.
    assert_eq!(deliver(&app.pool, &events).await, 0);

    // Sum over days: a run across midnight splits the rows, not the totals.
    let rows = analytics::daily(
        &app.pool,
        Some(e2e::MERCHANT),
        None,
        None,
        Some("sandbox"),
        Some("CARD"),
        Some("USD"),
        100,
    )
    .await
    .unwrap();
    assert!(!rows.is_empty());
    let total = |f: fn(&DailyRow) -> i64| rows.iter().map(f).sum::<i64>();
    assert_eq!(total(|r| r.initiated_count), 6);
    assert_eq!(total(|r| r.approved_count), 3);
    assert_eq!(total(|r| r.declined_count), 1);
    assert_eq!(total(|r| r.failed_count), 1);
    assert_eq!(total(|r| r.voided_count), 1);
    assert_eq!(total(|r| r.refunded_count), 1);
    assert_eq!(total(|r| r.timed_approvals), 3);
    let sum = |f: fn(&DailyRow) -> Decimal| rows.iter().map(f).sum::<Decimal>();
    assert_eq!(sum(|r| r.approved_amount), approved_amount);
    assert_eq!(sum(|r| r.refunded_amount), refunded_amount);
    assert_eq!(sum(|r| r.fee_amount), fee_amount);
    // Another merchant's scope sees nothing.
    assert!(analytics::daily(
        &app.pool,
        Some("someone-else"),
        None,
        None,
        None,
        None,
        None,
        100
    )
    .await
    .unwrap()
    .is_empty());

    let rows = failures::failures(&app.pool, Some(e2e::MERCHANT), None, None, None, 100)
        .await
        .unwrap();
    let mut seen: Vec<(String, String, i64, Decimal)> = rows
        .iter()
        .map(|r| (r.provider.clone(), r.reason.clone(), r.count, r.amount))
        .collect();
    seen.sort();
    let attempt: serde_json::Value = sqlx::query_scalar(
        "SELECT payload::jsonb FROM events
          WHERE aggregate_id = $1 AND event_type = 'ProviderAttemptFailed'",
    )
    .bind(failed["id"].as_str().unwrap())
    .fetch_one(&app.pool)
    .await
    .unwrap();
    let kind = attempt["ProviderAttemptFailed"]["kind"].as_str().unwrap();
    let mut want = vec![
        ("sandbox".to_owned(), decline_reason, 1, dec("15.00")),
        ("sandbox".to_owned(), failure_reason, 1, dec("25.00")),
        (
            "sandbox".to_owned(),
            format!("provider_error:{kind}"),
            1,
            dec("25.00"),
        ),
    ];
    want.sort();
    assert_eq!(seen, want);
    assert!(rows.iter().all(|r| r.currency == "USD"));
    let declined_row = rows
        .iter()
        .find(|r| r.last_payment_id.to_string() == declined_id)
        .unwrap();
    assert_eq!(declined_row.count, 1);
}
