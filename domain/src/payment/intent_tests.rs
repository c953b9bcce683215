//! Given/When/Then tests of intents: every provider call is preceded by an event naming it,
//! and its outcome (answered, refused, not sent, unknown) closes or keeps it open.

use chrono::{DateTime, Duration, TimeZone, Utc};
use cqrs_es::test::{AggregateTestExecutor, TestFramework};
use cqrs_es::Aggregate;
use uuid::Uuid;

use crate::ids::{AttemptId, CaptureId, MerchantId, PaymentId, Reference};
use crate::money::{Currency, Money};
use crate::payment::{
    CaptureMode, Compensation, Payment, PaymentCommand, PaymentError, PaymentEvent,
    PaymentMethodType, PaymentStatus, ProviderFailureKind,
};

const FIRST: &str = "wompi";
const SECOND: &str = "payu";

fn at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap()
}

fn cop(amount: &str) -> Money {
    Money::parse(amount, Currency::COP).unwrap()
}

fn payment_id() -> PaymentId {
    PaymentId::from_uuid(Uuid::from_u128(0x0002))
}

fn attempt(provider: &str) -> AttemptId {
    AttemptId::derive(payment_id(), provider)
}

fn given(events: Vec<PaymentEvent>) -> AggregateTestExecutor<Payment> {
    TestFramework::<Payment>::with(()).given(events)
}

fn fold(events: &[PaymentEvent]) -> Payment {
    let mut payment = Payment::default();
    for event in events {
        payment.apply(event.clone());
    }
    payment
}

fn initiated(mode: CaptureMode) -> PaymentEvent {
    PaymentEvent::PaymentInitiated {
        payment_id: payment_id(),
        merchant_id: MerchantId::parse("merchant-1").unwrap(),
        reference: Reference::parse("order-7").unwrap(),
        amount: cop("5000.00"),
        payment_method: PaymentMethodType::Card,
        capture_mode: mode,
        provider: FIRST.to_owned(),
        request_fingerprint: "fp".to_owned(),
        at: at(),
    }
}

fn started(provider: &str) -> PaymentEvent {
    PaymentEvent::ProviderAttemptStarted {
        provider: provider.to_owned(),
        attempt_id: attempt(provider),
        at: at(),
    }
}

fn unknown(provider: &str) -> PaymentEvent {
    PaymentEvent::ProviderOutcomeUnknown {
        provider: provider.to_owned(),
        attempt_id: attempt(provider),
        kind: ProviderFailureKind::Timeout,
        detail: "no answer".to_owned(),
        at: at(),
    }
}

fn not_sent(provider: &str) -> PaymentEvent {
    PaymentEvent::ProviderAttemptFailed {
        provider: provider.to_owned(),
        kind: ProviderFailureKind::Connection,
        detail: "connection refused".to_owned(),
        at: at(),
        attempt_id: Some(attempt(provider)),
    }
}

fn transaction(provider: &str, id: &str) -> PaymentEvent {
    PaymentEvent::ProviderTransactionCreated {
        provider: provider.to_owned(),
        provider_transaction_id: id.to_owned(),
        next_action: None,
        at: at(),
    }
}

fn authorized(provider: &str, id: &str) -> PaymentEvent {
    PaymentEvent::PaymentAuthorized {
        provider: provider.to_owned(),
        provider_event_id: format!("{id}:AUTHORIZED"),
        provider_transaction_id: id.to_owned(),
        amount: cop("5000.00"),
        at: at(),
    }
}

fn open_attempt() -> Vec<PaymentEvent> {
    vec![initiated(CaptureMode::Automatic), started(FIRST)]
}

fn authorized_history() -> Vec<PaymentEvent> {
    vec![
        initiated(CaptureMode::Manual),
        started(FIRST),
        transaction(FIRST, "tx-a"),
        authorized(FIRST, "tx-a"),
    ]
}

fn invalid(action: &'static str, status: PaymentStatus) -> PaymentError {
    PaymentError::InvalidTransition { action, status }
}

// Attempts ------------------------------------------------------------------------------------

#[test]
fn the_first_attempt_is_open_from_the_create_append_and_names_its_provider() {
    let state = fold(&open_attempt());
    let open = state.attempt.clone().expect("open attempt");
    assert_eq!(open.provider, FIRST);
    assert_eq!(open.attempt_id, attempt(FIRST));
    assert!(!open.outcome_unknown);
    assert!(state.has_open_intent());
    assert_ne!(
        attempt(FIRST),
        attempt(SECOND),
        "one attempt id per provider"
    );
}

#[test]
fn an_unknown_outcome_keeps_the_attempt_open_and_the_payment_with_its_provider() {
    given(open_attempt())
        .when(PaymentCommand::RecordProviderOutcomeUnknown {
            provider: FIRST.to_owned(),
            kind: ProviderFailureKind::Timeout,
            detail: "no answer".to_owned(),
            at: at(),
        })
        .then_expect_events(vec![unknown(FIRST)]);
    let mut history = open_attempt();
    history.push(unknown(FIRST));
    let state = fold(&history);
    assert_eq!(state.status, PaymentStatus::Pending);
    assert_eq!(state.provider, FIRST);
    assert!(state.attempt.as_ref().is_some_and(|a| a.outcome_unknown));
    // No fallback while the first provider may hold the charge.
    given(history.clone())
        .when(PaymentCommand::StartAttempt {
            provider: SECOND.to_owned(),
            at: at(),
        })
        .then_expect_error(invalid(
            "start a second provider attempt on",
            PaymentStatus::Pending,
        ));
    // A second report of the same loss appends nothing.
    given(history)
        .when(PaymentCommand::RecordProviderOutcomeUnknown {
            provider: FIRST.to_owned(),
            kind: ProviderFailureKind::ServerError,
            detail: "503".to_owned(),
            at: at(),
        })
        .then_expect_events(vec![]);
}

#[test]
fn an_unknown_attempt_may_be_resubmitted_as_the_same_attempt_but_not_while_in_flight() {
    let mut history = open_attempt();
    given(history.clone())
        .when(PaymentCommand::StartAttempt {
            provider: FIRST.to_owned(),
            at: at(),
        })
        .then_expect_error(invalid(
            "start a second provider attempt on",
            PaymentStatus::Pending,
        ));
    history.push(unknown(FIRST));
    given(history)
        .when(PaymentCommand::StartAttempt {
            provider: FIRST.to_owned(),
            at: at(),
        })
        .then_expect_events(vec![started(FIRST)]);
}

#[test]
fn a_request_never_sent_closes_the_attempt_and_the_next_provider_may_be_offered_it_once() {
    let mut history = open_attempt();
    given(history.clone())
        .when(PaymentCommand::RecordProviderAttemptFailed {
            provider: FIRST.to_owned(),
            kind: ProviderFailureKind::Connection,
            detail: "connection refused".to_owned(),
            at: at(),
        })
        .then_expect_events(vec![not_sent(FIRST)]);
    history.push(not_sent(FIRST));
    given(history.clone())
        .when(PaymentCommand::StartAttempt {
            provider: SECOND.to_owned(),
            at: at(),
        })
        .then_expect_events(vec![started(SECOND)]);
    given(history)
        .when(PaymentCommand::StartAttempt {
            provider: FIRST.to_owned(),
            at: at(),
        })
        .then_expect_error(invalid(
            "offer again to a provider that failed",
            PaymentStatus::Pending,
        ));
}

#[test]
fn only_the_attempts_provider_can_name_the_transaction() {
    given(open_attempt())
        .when(PaymentCommand::RecordProviderTransaction {
            provider: SECOND.to_owned(),
            provider_transaction_id: "tx-b".to_owned(),
            next_action: None,
            at: at(),
        })
        .then_expect_error(invalid(
            "take another provider's transaction on",
            PaymentStatus::Pending,
        ));
    let mut history = open_attempt();
    history.push(unknown(FIRST));
    history.push(transaction(FIRST, "tx-a"));
    let state = fold(&history);
    assert_eq!(state.attempt, None, "the transaction closes the attempt");
    assert!(!state.has_open_intent());
}

#[test]
fn a_webhook_outcome_closes_an_unknown_attempt() {
    let mut history = open_attempt();
    history.push(unknown(FIRST));
    given(history.clone())
        .when(PaymentCommand::Approve {
            provider_event_id: "evt-1".to_owned(),
            provider_transaction_id: "tx-a".to_owned(),
            amount: cop("5000.00"),
            fee: None,
            at: at(),
        })
        .then_expect_events(vec![PaymentEvent::PaymentApproved {
            provider: FIRST.to_owned(),
            provider_event_id: Some("evt-1".to_owned()),
            provider_transaction_id: "tx-a".to_owned(),
            capture_id: None,
            amount: cop("5000.00"),
            fee: None,
            at: at(),
        }]);
}

// Capture and void ------------------------------------------------------------------------------

#[test]
fn a_capture_is_requested_before_it_is_confirmed_and_a_repeat_is_the_same_capture() {
    let capture = CaptureId::from_uuid(Uuid::from_u128(0x0c01));
    // The intent names the provider that holds the authorization.
    let requested = PaymentEvent::CaptureRequested {
        capture_id: capture,
        amount: cop("5000.00"),
        fee: None,
        provider: Some(FIRST.to_owned()),
        at: at(),
    };
    let request = PaymentCommand::RequestCapture {
        capture_id: capture,
        amount: cop("5000.00"),
        fee: None,
        at: at(),
    };
    given(authorized_history())
        .when(request.clone())
        .then_expect_events(vec![requested.clone()]);
    let mut history = authorized_history();
    history.push(requested);
    assert!(fold(&history).has_open_intent());
    given(history.clone())
        .when(request)
        .then_expect_events(vec![]);
    given(history.clone())
        .when(PaymentCommand::RequestCapture {
            capture_id: CaptureId::from_uuid(Uuid::from_u128(0x0c02)),
            amount: cop("1.00"),
            fee: None,
            at: at(),
        })
        .then_expect_error(invalid(
            "capture while another capture is asked of",
            PaymentStatus::Authorized,
        ));
    given(history.clone())
        .when(PaymentCommand::RequestVoid { at: at() })
        .then_expect_error(invalid(
            "void while a capture is asked of",
            PaymentStatus::Authorized,
        ));
    given(history)
        .when(PaymentCommand::FailCapture {
            capture_id: capture,
            reason: "refused".to_owned(),
            at: at(),
        })
        .then_expect_events(vec![PaymentEvent::CaptureFailed {
            capture_id: capture,
            reason: "refused".to_owned(),
            at: at(),
        }]);
}

/// The intent to void, naming the provider that holds the authorization.
fn void_requested() -> PaymentEvent {
    PaymentEvent::VoidRequested {
        provider: Some(FIRST.to_owned()),
        at: at(),
    }
}

#[test]
fn a_void_is_requested_then_confirmed_or_refused() {
    given(authorized_history())
        .when(PaymentCommand::RequestVoid { at: at() })
        .then_expect_events(vec![void_requested()]);
    let mut history = authorized_history();
    history.push(void_requested());
    given(history.clone())
        .when(PaymentCommand::RequestVoid { at: at() })
        .then_expect_events(vec![]);
    given(history.clone())
        .when(PaymentCommand::Void { at: at() })
        .then_expect_events(vec![PaymentEvent::PaymentVoided {
            amount: cop("5000.00"),
            at: at(),
        }]);
    history.push(PaymentEvent::VoidFailed {
        reason: "refused".to_owned(),
        at: at(),
    });
    let state = fold(&history);
    assert_eq!(state.status, PaymentStatus::Authorized);
    assert!(!state.has_open_intent());
}

// Orphans and review ----------------------------------------------------------------------------

#[test]
fn another_providers_transaction_is_an_orphan_recorded_once_and_compensated_once() {
    let mut history = open_attempt();
    history.push(not_sent(FIRST));
    history.push(started(SECOND));
    history.push(transaction(SECOND, "tx-b"));
    let orphan = PaymentEvent::ProviderTransactionOrphaned {
        provider: FIRST.to_owned(),
        provider_transaction_id: "tx-a".to_owned(),
        status: "APPROVED".to_owned(),
        amount: cop("5000.00"),
        compensation: Some(Compensation::Refund),
        at: at(),
    };
    let record = PaymentCommand::RecordOrphan {
        provider: FIRST.to_owned(),
        provider_transaction_id: "tx-a".to_owned(),
        status: "APPROVED".to_owned(),
        amount: cop("5000.00"),
        compensation: Some(Compensation::Refund),
        at: at(),
    };
    given(history.clone())
        .when(record.clone())
        .then_expect_events(vec![orphan.clone()]);
    history.push(orphan);
    assert!(fold(&history).has_open_intent(), "money to give back");
    given(history.clone())
        .when(record)
        .then_expect_events(vec![]);
    let compensate = PaymentCommand::CompleteCompensation {
        provider: FIRST.to_owned(),
        provider_transaction_id: "tx-a".to_owned(),
        provider_reference: "rf-1".to_owned(),
        at: at(),
    };
    let compensated = PaymentEvent::OrphanCompensated {
        provider: FIRST.to_owned(),
        provider_transaction_id: "tx-a".to_owned(),
        compensation: Compensation::Refund,
        provider_reference: "rf-1".to_owned(),
        amount: cop("5000.00"),
        at: at(),
    };
    given(history.clone())
        .when(compensate.clone())
        .then_expect_events(vec![compensated.clone()]);
    history.push(compensated);
    let state = fold(&history);
    assert!(!state.has_open_intent());
    assert_eq!(state.provider_transaction_id.as_deref(), Some("tx-b"));
    given(history).when(compensate).then_expect_events(vec![]);
}

#[test]
fn the_open_attempts_own_provider_is_not_an_orphan_while_pending() {
    given(open_attempt())
        .when(PaymentCommand::RecordOrphan {
            provider: FIRST.to_owned(),
            provider_transaction_id: "tx-a".to_owned(),
            status: "APPROVED".to_owned(),
            amount: cop("5000.00"),
            compensation: Some(Compensation::Refund),
            at: at(),
        })
        .then_expect_error(invalid(
            "orphan the payment's own transaction of",
            PaymentStatus::Pending,
        ));
}

#[test]
fn a_review_flag_needs_an_open_intent_and_a_late_outcome_clears_it() {
    let mut history = open_attempt();
    history.push(unknown(FIRST));
    let review = PaymentEvent::PaymentNeedsReview {
        intent: "attempt".to_owned(),
        reason: "unresolved after 24 h".to_owned(),
        at: at() + Duration::hours(24),
    };
    given(history.clone())
        .when(PaymentCommand::MarkNeedsReview {
            intent: "attempt".to_owned(),
            reason: "unresolved after 24 h".to_owned(),
            at: at() + Duration::hours(24),
        })
        .then_expect_events(vec![review.clone()]);
    history.push(review);
    assert_eq!(fold(&history).needs_review.as_deref(), Some("attempt"));
    history.push(transaction(FIRST, "tx-a"));
    assert_eq!(fold(&history).needs_review, None);
    given(authorized_history())
        .when(PaymentCommand::MarkNeedsReview {
            intent: "attempt".to_owned(),
            reason: "x".to_owned(),
            at: at(),
        })
        .then_expect_error(invalid("flag for review", PaymentStatus::Authorized));
}

#[test]
fn intents_recorded_before_they_named_their_provider_still_decode() {
    let void: PaymentEvent =
        serde_json::from_str(r#"{"VoidRequested":{"at":"2026-01-02T03:04:05Z"}}"#).unwrap();
    assert_eq!(
        void,
        PaymentEvent::VoidRequested {
            provider: None,
            at: at()
        }
    );
    let capture: PaymentEvent = serde_json::from_str(
        r#"{"CaptureRequested":{"capture_id":"00000000-0000-0000-0000-000000000c01",
            "amount":{"amount":"5000.00","currency":"COP"},"fee":null,
            "at":"2026-01-02T03:04:05Z"}}"#,
    )
    .unwrap();
    assert!(
        matches!(
            capture,
            PaymentEvent::CaptureRequested { provider: None, .. }
        ),
        "{capture:?}"
    );
    // And a named one round-trips with its provider.
    let named = void_requested();
    let text = serde_json::to_string(&named).unwrap();
    assert!(text.contains(r#""provider":"wompi""#), "{text}");
    assert_eq!(serde_json::from_str::<PaymentEvent>(&text).unwrap(), named);
}
