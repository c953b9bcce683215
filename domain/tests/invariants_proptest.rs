//! Property tests of the `Payment` aggregate: random command sequences, in COP (scale 2) and
//! JPY (scale 0), with ids drawn from small pools so that retries and redeliveries happen.
//!
//! Each command goes through both `decide` + `apply` and the cqrs-es `Aggregate::handle` path;
//! after every step the ledger must balance (`Payment::check_invariants`): no money appears or
//! disappears, statuses agree with amounts, end states are final, refused commands change
//! nothing, and every event survives a JSON round trip.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use chrono::{DateTime, Duration, TimeZone, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use domain::{
    CaptureId, CaptureMode, Currency, MerchantId, Money, Payment, PaymentCommand, PaymentError,
    PaymentEvent, PaymentId, PaymentMethodType, PaymentStatus, ProviderFailureKind, Reference,
    RefundId,
};
use proptest::prelude::*;
use rust_decimal::Decimal;
use uuid::Uuid;

// ---------------------------------------------------------------------------------------------
// Generated scenario
// ---------------------------------------------------------------------------------------------

/// An amount, chosen relative to the payment so that exact, partial and excessive amounts all
/// come up often.
#[derive(Debug, Clone)]
enum Amt {
    /// The payment's whole amount.
    Full,
    /// `n/4` of the payment amount, rounded down to the currency's minor unit (at least one).
    Quarter(u8),
    /// The payment amount plus `n` minor units.
    Above(u64),
    /// `n` minor units of the payment's currency.
    Minor(u64),
    /// Zero, which `Money::zero` can build.
    Zero,
    /// `n` minor units of the other currency.
    Foreign(u64),
}

#[derive(Debug, Clone)]
enum Op {
    Initiate {
        other_fingerprint: bool,
        other_id: bool,
        other_mode: bool,
    },
    AttemptFailed(bool),
    Fail,
    ProviderTransaction(u8),
    Expire {
        event: u8,
    },
    Authorize {
        event: u8,
        amount: Amt,
    },
    Approve {
        event: u8,
        amount: Amt,
    },
    Decline {
        event: u8,
    },
    Capture {
        capture: u8,
        amount: Amt,
    },
    Void,
    RequestRefund {
        refund: u8,
        amount: Amt,
        with_reason: bool,
    },
    CompleteRefund {
        refund: u8,
    },
    FailRefund {
        refund: u8,
    },
}

#[derive(Debug, Clone)]
struct Scenario {
    currency: Currency,
    /// The payment amount, in minor units.
    amount_minor: u64,
    mode: CaptureMode,
    /// Commands sent before the payment exists.
    before: Vec<Op>,
    after: Vec<Op>,
}

const PROVIDER_EVENT_POOL: u8 = 4;
const CAPTURE_POOL: u8 = 3;
const REFUND_POOL: u8 = 5;

fn amt() -> impl Strategy<Value = Amt> {
    prop_oneof![
        4 => Just(Amt::Full),
        4 => (1u8..=4).prop_map(Amt::Quarter),
        1 => (1u64..=100).prop_map(Amt::Above),
        3 => (1u64..=50_000).prop_map(Amt::Minor),
        1 => Just(Amt::Zero),
        1 => (1u64..=50_000).prop_map(Amt::Foreign),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => (any::<bool>(), any::<bool>(), any::<bool>()).prop_map(
            |(other_fingerprint, other_id, other_mode)| Op::Initiate {
                other_fingerprint,
                other_id,
                other_mode,
            }
        ),
        1 => any::<bool>().prop_map(Op::AttemptFailed),
        1 => Just(Op::Fail),
        2 => (0u8..2).prop_map(Op::ProviderTransaction),
        1 => (0..PROVIDER_EVENT_POOL).prop_map(|event| Op::Expire { event }),
        4 => (0..PROVIDER_EVENT_POOL, amt()).prop_map(|(event, amount)| Op::Authorize { event, amount }),
        5 => (0..PROVIDER_EVENT_POOL, amt()).prop_map(|(event, amount)| Op::Approve { event, amount }),
        1 => (0..PROVIDER_EVENT_POOL).prop_map(|event| Op::Decline { event }),
        4 => (0..CAPTURE_POOL, amt()).prop_map(|(capture, amount)| Op::Capture { capture, amount }),
        1 => Just(Op::Void),
        10 => (0..REFUND_POOL, amt(), any::<bool>()).prop_map(|(refund, amount, with_reason)| {
            Op::RequestRefund { refund, amount, with_reason }
        }),
        7 => (0..REFUND_POOL).prop_map(|refund| Op::CompleteRefund { refund }),
        3 => (0..REFUND_POOL).prop_map(|refund| Op::FailRefund { refund }),
    ]
}

fn scenario() -> impl Strategy<Value = Scenario> {
    (
        prop_oneof![Just(Currency::COP), Just(Currency::JPY)],
        prop_oneof![
            // Tiny amounts make quarters round and exhaust quickly.
            1 => 1u64..=8,
            4 => 1u64..=200_000_000,
        ],
        prop_oneof![Just(CaptureMode::Automatic), Just(CaptureMode::Manual)],
        prop::collection::vec(op(), 0..3),
        prop::collection::vec(op(), 0..40),
    )
        .prop_map(|(currency, amount_minor, mode, before, after)| Scenario {
            currency,
            amount_minor,
            mode,
            before,
            after,
        })
}

// ---------------------------------------------------------------------------------------------
// From generated ops to commands
// ---------------------------------------------------------------------------------------------

struct Ctx {
    currency: Currency,
    amount: Money,
    mode: CaptureMode,
}

fn minor(n: u64, currency: Currency) -> Money {
    Money::new(Decimal::new(n as i64, currency.scale()), currency).unwrap()
}

fn other(currency: Currency) -> Currency {
    match currency {
        Currency::JPY => Currency::COP,
        _ => Currency::JPY,
    }
}

impl Ctx {
    fn money(&self, amt: &Amt) -> Money {
        let unit = Decimal::new(1, self.currency.scale());
        match amt {
            Amt::Full => self.amount,
            Amt::Quarter(q) => {
                let part = (self.amount.amount() * Decimal::from(*q) / Decimal::from(4))
                    .round_dp_with_strategy(
                        self.currency.scale(),
                        rust_decimal::RoundingStrategy::ToZero,
                    );
                Money::new(part.max(unit), self.currency).unwrap()
            }
            Amt::Above(n) => Money::new(
                self.amount.amount() + unit * Decimal::from(*n),
                self.currency,
            )
            .unwrap(),
            Amt::Minor(n) => minor(*n, self.currency),
            Amt::Zero => Money::zero(self.currency),
            Amt::Foreign(n) => minor(*n, other(self.currency)),
        }
    }

    fn command(&self, op: &Op, at: DateTime<Utc>) -> PaymentCommand {
        match op {
            Op::Initiate {
                other_fingerprint,
                other_id,
                other_mode,
            } => PaymentCommand::Initiate {
                payment_id: PaymentId::from_uuid(Uuid::from_u128(1 + u128::from(*other_id))),
                merchant_id: MerchantId::parse("merchant-1").unwrap(),
                reference: Reference::parse("order-1").unwrap(),
                amount: self.amount,
                payment_method: PaymentMethodType::Card,
                capture_mode: match (self.mode, other_mode) {
                    (mode, false) => mode,
                    (CaptureMode::Automatic, true) => CaptureMode::Manual,
                    (CaptureMode::Manual, true) => CaptureMode::Automatic,
                },
                provider: "provider-a".to_owned(),
                request_fingerprint: if *other_fingerprint { "fp-2" } else { "fp-1" }.to_owned(),
                at,
            },
            Op::AttemptFailed(retryable) => PaymentCommand::RecordProviderAttemptFailed {
                provider: "provider-a".to_owned(),
                kind: if *retryable {
                    ProviderFailureKind::Timeout
                } else {
                    ProviderFailureKind::Rejected
                },
                detail: "boom".to_owned(),
                at,
            },
            Op::ProviderTransaction(n) => PaymentCommand::RecordProviderTransaction {
                provider: format!("provider-{n}"),
                provider_transaction_id: format!("tx-{n}"),
                next_action: None,
                at,
            },
            Op::Expire { event } => PaymentCommand::Expire {
                provider_event_id: format!("evt-{event}"),
                at,
            },
            Op::Fail => PaymentCommand::Fail {
                reason: "no provider".to_owned(),
                at,
            },
            Op::Authorize { event, amount } => PaymentCommand::Authorize {
                provider_event_id: format!("evt-{event}"),
                provider_transaction_id: "tx-1".to_owned(),
                amount: self.money(amount),
                at,
            },
            Op::Approve { event, amount } => PaymentCommand::Approve {
                provider_event_id: format!("evt-{event}"),
                provider_transaction_id: "tx-1".to_owned(),
                amount: self.money(amount),
                fee: None,
                at,
            },
            Op::Decline { event } => PaymentCommand::Decline {
                provider_event_id: format!("evt-{event}"),
                provider_transaction_id: "tx-1".to_owned(),
                reason: "declined".to_owned(),
                at,
            },
            Op::Capture { capture, amount } => PaymentCommand::Capture {
                capture_id: CaptureId::from_uuid(Uuid::from_u128(0xc00 + u128::from(*capture))),
                amount: self.money(amount),
                fee: None,
                at,
            },
            Op::Void => PaymentCommand::Void { at },
            Op::RequestRefund {
                refund,
                amount,
                with_reason,
            } => PaymentCommand::RequestRefund {
                refund_id: refund_id(*refund),
                amount: self.money(amount),
                reason: with_reason.then(|| "customer asked".to_owned()),
                at,
            },
            Op::CompleteRefund { refund } => PaymentCommand::CompleteRefund {
                refund_id: refund_id(*refund),
                provider_refund_id: format!("prov-refund-{refund}"),
                at,
            },
            Op::FailRefund { refund } => PaymentCommand::FailRefund {
                refund_id: refund_id(*refund),
                reason: "provider refused".to_owned(),
                at,
            },
        }
    }
}

fn refund_id(n: u8) -> RefundId {
    RefundId::from_uuid(Uuid::from_u128(0xf00 + u128::from(n)))
}

// ---------------------------------------------------------------------------------------------
// Running a command both ways
// ---------------------------------------------------------------------------------------------

/// Polls a future that never waits: `Payment::handle` does no I/O and its event sink's lock is
/// never contended here.
fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    match future.as_mut().poll(&mut cx) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("Payment::handle waited on something"),
    }
}

/// The command through cqrs-es's own path: `handle` writes each event to the sink, which
/// applies it to the aggregate.
fn handle(
    payment: &mut Payment,
    command: PaymentCommand,
) -> Result<Vec<PaymentEvent>, PaymentError> {
    let sink = EventSink::<Payment>::default();
    block_on(payment.handle(command, &(), &sink))?;
    Ok(block_on(sink.collect()))
}

/// Commands whose immediate retry must append nothing (everything but a failed provider
/// attempt, which carries no id and may legitimately happen again).
fn is_idempotent(command: &PaymentCommand) -> bool {
    !matches!(command, PaymentCommand::RecordProviderAttemptFailed { .. })
}

// ---------------------------------------------------------------------------------------------
// The ledger properties
// ---------------------------------------------------------------------------------------------

fn event_money(event: &PaymentEvent) -> Option<Money> {
    match event {
        PaymentEvent::PaymentInitiated { amount, .. }
        | PaymentEvent::PaymentAuthorized { amount, .. }
        | PaymentEvent::PaymentApproved { amount, .. }
        | PaymentEvent::PaymentVoided { amount, .. }
        | PaymentEvent::RefundRequested { amount, .. }
        | PaymentEvent::PaymentRefunded { amount, .. }
        | PaymentEvent::RefundFailed { amount, .. } => Some(*amount),
        // Intents and orphans move no money of this payment.
        PaymentEvent::CaptureRequested { .. }
        | PaymentEvent::ProviderTransactionOrphaned { .. }
        | PaymentEvent::OrphanCompensated { .. } => None,
        PaymentEvent::ProviderAttemptFailed { .. }
        | PaymentEvent::ProviderAttemptStarted { .. }
        | PaymentEvent::ProviderOutcomeUnknown { .. }
        | PaymentEvent::CaptureFailed { .. }
        | PaymentEvent::VoidRequested { .. }
        | PaymentEvent::VoidFailed { .. }
        | PaymentEvent::PaymentNeedsReview { .. }
        | PaymentEvent::ProviderTransactionCreated { .. }
        | PaymentEvent::PaymentExpired { .. }
        | PaymentEvent::PaymentDeclined { .. }
        | PaymentEvent::PaymentFailed { .. } => None,
    }
}

fn sum(events: &[PaymentEvent], pick: impl Fn(&PaymentEvent) -> bool) -> Decimal {
    events
        .iter()
        .filter(|e| pick(e))
        .filter_map(event_money)
        .map(|m| m.amount())
        .sum()
}

fn allowed_move(from: PaymentStatus, to: PaymentStatus) -> bool {
    use PaymentStatus::*;
    from == to
        || matches!(
            (from, to),
            (New, Pending)
                | (Pending, Authorized | Approved | Declined | Failed | Expired)
                | (Authorized, Approved | Voided)
                | (Approved, PartiallyRefunded | Refunded)
                | (PartiallyRefunded, Refunded)
        )
}

/// Everything that must hold of `state`, given every event appended so far.
fn check_ledger(state: &Payment, events: &[PaymentEvent]) -> Result<(), TestCaseError> {
    use PaymentEvent as E;
    use PaymentStatus as S;

    prop_assert_eq!(state.check_invariants(), Ok(()));
    prop_assert!(state.refunded <= state.captured);
    prop_assert!(state.captured <= state.authorized);
    prop_assert!(state.refunded + state.refund_reserved <= state.captured);

    let initiated = events
        .iter()
        .filter(|e| matches!(e, E::PaymentInitiated { .. }))
        .count();
    prop_assert!(initiated <= 1, "initiated {} times", initiated);
    let Some(amount) = state.amount else {
        prop_assert!(events.is_empty());
        prop_assert_eq!(state.status, S::New);
        return Ok(());
    };
    prop_assert!(amount.amount() > Decimal::ZERO);

    // One currency, positive amounts, at the currency's scale.
    for event in events {
        if let Some(money) = event_money(event) {
            prop_assert_eq!(money.currency(), amount.currency(), "{:?}", event);
            prop_assert!(money.amount() > Decimal::ZERO, "non-positive {:?}", event);
            prop_assert_eq!(money.amount().scale(), amount.currency().scale());
        }
    }

    // No money appears or disappears.
    let requested = sum(events, |e| matches!(e, E::RefundRequested { .. }));
    let refunded = sum(events, |e| matches!(e, E::PaymentRefunded { .. }));
    let released = sum(events, |e| matches!(e, E::RefundFailed { .. }));
    prop_assert_eq!(refunded, state.refunded);
    prop_assert_eq!(requested - refunded - released, state.refund_reserved);

    let approvals: Vec<&PaymentEvent> = events
        .iter()
        .filter(|e| matches!(e, E::PaymentApproved { .. }))
        .collect();
    prop_assert!(approvals.len() <= 1, "approved {} times", approvals.len());
    let captured = approvals
        .first()
        .and_then(|e| event_money(e))
        .map_or(Decimal::ZERO, |m| m.amount());
    prop_assert_eq!(captured, state.captured);

    let authorizations = events
        .iter()
        .filter(|e| matches!(e, E::PaymentAuthorized { .. }))
        .count();
    prop_assert!(authorizations <= 1);
    let authorized = events
        .iter()
        .find_map(|e| match e {
            E::PaymentAuthorized { amount, .. }
            | E::PaymentApproved {
                amount,
                capture_id: None,
                ..
            } => Some(amount.amount()),
            _ => None,
        })
        .unwrap_or(Decimal::ZERO);
    prop_assert_eq!(authorized, state.authorized);

    // The per-refund book agrees with the totals.
    let reserved_by_refund: Decimal = state
        .refunds
        .values()
        .filter(|r| r.status == domain::payment::RefundStatus::Requested)
        .map(|r| r.amount.amount())
        .sum();
    let refunded_by_refund: Decimal = state
        .refunds
        .values()
        .filter(|r| r.status == domain::payment::RefundStatus::Succeeded)
        .map(|r| r.amount.amount())
        .sum();
    prop_assert_eq!(reserved_by_refund, state.refund_reserved);
    prop_assert_eq!(refunded_by_refund, state.refunded);

    // The status agrees with the amounts.
    let zero = Decimal::ZERO;
    prop_assert_eq!(
        state.status == S::Refunded,
        state.refunded == state.captured && state.captured > zero,
        "{:?}",
        state
    );
    prop_assert_eq!(
        state.status == S::PartiallyRefunded,
        zero < state.refunded && state.refunded < state.captured,
        "{:?}",
        state
    );
    match state.status {
        S::New => prop_assert!(false, "initiated but NEW"),
        S::Pending | S::Declined | S::Failed | S::Expired => {
            prop_assert_eq!(state.authorized, zero);
            prop_assert_eq!(state.captured, zero);
        }
        S::Authorized | S::Voided => {
            prop_assert_eq!(state.authorized, amount.amount());
            prop_assert_eq!(state.captured, zero);
        }
        S::Approved => {
            prop_assert!(state.captured > zero);
            prop_assert_eq!(state.refunded, zero);
        }
        S::PartiallyRefunded | S::Refunded => prop_assert!(state.captured > zero),
    }
    if state.status == S::Refunded {
        prop_assert_eq!(state.refund_reserved, zero);
    }
    Ok(())
}

fn round_trips(event: &PaymentEvent) -> Result<(), TestCaseError> {
    let json = serde_json::to_string(event).unwrap();
    let back: PaymentEvent = serde_json::from_str(&json).unwrap();
    prop_assert_eq!(&back, event, "{}", json);
    // Money is never a JSON number.
    prop_assert!(!json.contains("\"amount\":0") && !json.contains("\"amount\":1"));
    Ok(())
}

fn run(scenario: &Scenario) -> Result<(), TestCaseError> {
    let ctx = Ctx {
        currency: scenario.currency,
        amount: minor(scenario.amount_minor, scenario.currency),
        mode: scenario.mode,
    };
    let start = Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap();
    let initiate = Op::Initiate {
        other_fingerprint: false,
        other_id: false,
        other_mode: false,
    };
    let ops = scenario
        .before
        .iter()
        .chain(std::iter::once(&initiate))
        .chain(scenario.after.iter());

    let mut state = Payment::default();
    let mut ledger: Vec<PaymentEvent> = Vec::new();
    for (step, op) in ops.enumerate() {
        let at = start + Duration::seconds(step as i64);
        let command = ctx.command(op, at);
        let before = state.clone();

        let decided = before.decide(command.clone());
        let mut handled = before.clone();
        let through_handle = handle(&mut handled, command.clone());
        prop_assert_eq!(
            &decided,
            &through_handle,
            "decide and handle disagree on {:?}",
            command
        );

        if before.status == PaymentStatus::New
            && !matches!(command, PaymentCommand::Initiate { .. })
        {
            prop_assert_eq!(&decided, &Err(PaymentError::NotFound), "{:?}", command);
        }

        match decided {
            Err(_) => {
                // A refused command changes nothing, whichever way it is run.
                prop_assert_eq!(&handled, &before);
            }
            Ok(events) => {
                if before.status.is_final() {
                    prop_assert!(
                        events.is_empty(),
                        "{} after {}: {:?}",
                        command_name(&command),
                        before.status,
                        events
                    );
                }
                for event in &events {
                    round_trips(event)?;
                    state.apply(event.clone());
                }
                prop_assert_eq!(&handled, &state, "handle folded differently");
                prop_assert!(
                    allowed_move(before.status, state.status),
                    "{} -> {}",
                    before.status,
                    state.status
                );
                if events.is_empty() {
                    prop_assert_eq!(&state, &before);
                } else if is_idempotent(&command) {
                    // A retry must never pay (or refund) twice.
                    prop_assert_eq!(
                        state.decide(command.clone()),
                        Ok(vec![]),
                        "retry of {:?}",
                        command
                    );
                }
                ledger.extend(events);
            }
        }
        check_ledger(&state, &ledger)?;
    }

    // The state is exactly what the stored events replay into, and survives a snapshot.
    let mut replayed = Payment::default();
    for event in &ledger {
        replayed.apply(event.clone());
    }
    prop_assert_eq!(&replayed, &state);
    let snapshot = serde_json::to_string(&state).unwrap();
    prop_assert_eq!(&serde_json::from_str::<Payment>(&snapshot).unwrap(), &state);
    Ok(())
}

fn command_name(command: &PaymentCommand) -> &'static str {
    command.name()
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        // Failures are reproduced as named tests in aggregate_tests.rs instead of a seed file.
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_command_sequences_keep_the_ledger_balanced(scenario in scenario()) {
        run(&scenario)?;
    }
}
