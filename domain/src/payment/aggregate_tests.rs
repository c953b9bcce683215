//! Given/When/Then tests of every transition of the `Payment` aggregate, allowed and refused
//! (the money invariants of `Payment::check_invariants`), in the style of the cqrs-es demo: given past events, when a
//! command, then the events it appends or the error it is refused with.

use chrono::{DateTime, TimeZone, Utc};
use cqrs_es::test::{AggregateTestExecutor, TestFramework};
use cqrs_es::Aggregate;
use rust_decimal::Decimal;
use uuid::Uuid;

use crate::ids::{CaptureId, MerchantId, PaymentId, Reference, RefundId};
use crate::money::{Currency, Money, MoneyError};
use crate::payment::{
    CaptureMode, Payment, PaymentCommand, PaymentError, PaymentEvent, PaymentMethodType,
    PaymentStatus, ProviderFailureKind, RefundStatus,
};

// ---------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------

const PROVIDER: &str = "wompi";
const TX: &str = "tx-1";
const FINGERPRINT: &str = "sha256:request-1";
/// The payment amount of every fixture, in COP.
const AMOUNT: &str = "129000.00";

fn at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, 14, 15, 9, 26).unwrap()
}

fn cop(amount: &str) -> Money {
    Money::parse(amount, Currency::COP).unwrap()
}

fn jpy(amount: &str) -> Money {
    Money::parse(amount, Currency::JPY).unwrap()
}

fn full() -> Money {
    cop(AMOUNT)
}

fn payment_id() -> PaymentId {
    PaymentId::from_uuid(Uuid::from_u128(0x0001))
}

fn capture_id(n: u128) -> CaptureId {
    CaptureId::from_uuid(Uuid::from_u128(0x0c00 + n))
}

fn refund_id(n: u128) -> RefundId {
    RefundId::from_uuid(Uuid::from_u128(0x0f00 + n))
}

fn payment() -> AggregateTestExecutor<Payment> {
    TestFramework::<Payment>::with(()).given_no_previous_events()
}

fn given(events: Vec<PaymentEvent>) -> AggregateTestExecutor<Payment> {
    TestFramework::<Payment>::with(()).given(events)
}

/// The state the events fold into.
fn fold(events: &[PaymentEvent]) -> Payment {
    let mut payment = Payment::default();
    for event in events {
        payment.apply(event.clone());
    }
    payment
}

fn invalid(action: &'static str, status: PaymentStatus) -> PaymentError {
    PaymentError::InvalidTransition { action, status }
}

// Commands -------------------------------------------------------------------------------------

fn initiate_with(mode: CaptureMode, fingerprint: &str) -> PaymentCommand {
    PaymentCommand::Initiate {
        payment_id: payment_id(),
        merchant_id: MerchantId::parse("merchant-1").unwrap(),
        reference: Reference::parse("order 42").unwrap(),
        amount: full(),
        payment_method: PaymentMethodType::Nequi,
        capture_mode: mode,
        provider: PROVIDER.to_owned(),
        request_fingerprint: fingerprint.to_owned(),
        at: at(),
    }
}

fn initiate(mode: CaptureMode) -> PaymentCommand {
    initiate_with(mode, FINGERPRINT)
}

fn record_attempt_failed() -> PaymentCommand {
    PaymentCommand::RecordProviderAttemptFailed {
        provider: PROVIDER.to_owned(),
        kind: ProviderFailureKind::Timeout,
        detail: "no answer in 10s".to_owned(),
        at: at(),
    }
}

fn fail() -> PaymentCommand {
    PaymentCommand::Fail {
        reason: "no provider available".to_owned(),
        at: at(),
    }
}

fn authorize(event_id: &str, amount: Money) -> PaymentCommand {
    PaymentCommand::Authorize {
        provider_event_id: event_id.to_owned(),
        provider_transaction_id: TX.to_owned(),
        amount,
        at: at(),
    }
}

fn approve(event_id: &str, amount: Money) -> PaymentCommand {
    PaymentCommand::Approve {
        provider_event_id: event_id.to_owned(),
        provider_transaction_id: TX.to_owned(),
        amount,
        fee: None,
        at: at(),
    }
}

fn decline(event_id: &str) -> PaymentCommand {
    PaymentCommand::Decline {
        provider_event_id: event_id.to_owned(),
        provider_transaction_id: TX.to_owned(),
        reason: "insufficient funds".to_owned(),
        at: at(),
    }
}

fn capture(id: CaptureId, amount: Money) -> PaymentCommand {
    PaymentCommand::Capture {
        capture_id: id,
        amount,
        fee: None,
        at: at(),
    }
}

fn void() -> PaymentCommand {
    PaymentCommand::Void { at: at() }
}

fn request_refund(id: RefundId, amount: Money) -> PaymentCommand {
    PaymentCommand::RequestRefund {
        refund_id: id,
        amount,
        reason: Some("customer asked".to_owned()),
        at: at(),
    }
}

fn complete_refund(id: RefundId) -> PaymentCommand {
    PaymentCommand::CompleteRefund {
        refund_id: id,
        provider_refund_id: format!("prov-{id}"),
        at: at(),
    }
}

fn fail_refund(id: RefundId) -> PaymentCommand {
    PaymentCommand::FailRefund {
        refund_id: id,
        reason: "provider refused".to_owned(),
        at: at(),
    }
}

// Events ---------------------------------------------------------------------------------------

fn initiated(mode: CaptureMode) -> PaymentEvent {
    PaymentEvent::PaymentInitiated {
        payment_id: payment_id(),
        merchant_id: MerchantId::parse("merchant-1").unwrap(),
        reference: Reference::parse("order 42").unwrap(),
        amount: full(),
        payment_method: PaymentMethodType::Nequi,
        capture_mode: mode,
        provider: PROVIDER.to_owned(),
        request_fingerprint: FINGERPRINT.to_owned(),
        at: at(),
    }
}

fn attempt_failed() -> PaymentEvent {
    PaymentEvent::ProviderAttemptFailed {
        provider: PROVIDER.to_owned(),
        kind: ProviderFailureKind::Timeout,
        detail: "no answer in 10s".to_owned(),
        at: at(),
        attempt_id: None,
    }
}

fn failed() -> PaymentEvent {
    PaymentEvent::PaymentFailed {
        reason: "no provider available".to_owned(),
        at: at(),
    }
}

fn authorized(event_id: &str, amount: Money) -> PaymentEvent {
    PaymentEvent::PaymentAuthorized {
        provider: PROVIDER.to_owned(),
        provider_event_id: event_id.to_owned(),
        provider_transaction_id: TX.to_owned(),
        amount,
        at: at(),
    }
}

fn approved(event_id: &str, amount: Money) -> PaymentEvent {
    PaymentEvent::PaymentApproved {
        provider: PROVIDER.to_owned(),
        provider_event_id: Some(event_id.to_owned()),
        provider_transaction_id: TX.to_owned(),
        capture_id: None,
        amount,
        fee: None,
        at: at(),
    }
}

fn captured(id: CaptureId, amount: Money) -> PaymentEvent {
    PaymentEvent::PaymentApproved {
        provider: PROVIDER.to_owned(),
        provider_event_id: None,
        provider_transaction_id: TX.to_owned(),
        capture_id: Some(id),
        amount,
        fee: None,
        at: at(),
    }
}

fn declined(event_id: &str) -> PaymentEvent {
    PaymentEvent::PaymentDeclined {
        provider: PROVIDER.to_owned(),
        provider_event_id: event_id.to_owned(),
        provider_transaction_id: TX.to_owned(),
        reason: "insufficient funds".to_owned(),
        at: at(),
    }
}

fn voided(amount: Money) -> PaymentEvent {
    PaymentEvent::PaymentVoided { amount, at: at() }
}

fn refund_requested(id: RefundId, amount: Money) -> PaymentEvent {
    PaymentEvent::RefundRequested {
        refund_id: id,
        amount,
        reason: Some("customer asked".to_owned()),
        at: at(),
    }
}

fn refunded(id: RefundId, amount: Money) -> PaymentEvent {
    PaymentEvent::PaymentRefunded {
        refund_id: id,
        provider_refund_id: format!("prov-{id}"),
        amount,
        at: at(),
    }
}

fn refund_failed(id: RefundId, amount: Money) -> PaymentEvent {
    PaymentEvent::RefundFailed {
        refund_id: id,
        amount,
        reason: "provider refused".to_owned(),
        at: at(),
    }
}

// Histories ------------------------------------------------------------------------------------

fn pending_automatic() -> Vec<PaymentEvent> {
    vec![initiated(CaptureMode::Automatic)]
}

fn pending_manual() -> Vec<PaymentEvent> {
    vec![initiated(CaptureMode::Manual)]
}

/// Manual capture, authorized for the full amount by provider event `evt-auth`.
fn authorized_history() -> Vec<PaymentEvent> {
    let mut events = pending_manual();
    events.push(authorized("evt-auth", full()));
    events
}

/// Automatic capture, approved for the full amount by provider event `evt-approve`.
fn approved_history() -> Vec<PaymentEvent> {
    let mut events = pending_automatic();
    events.push(approved("evt-approve", full()));
    events
}

/// Manual capture of `amount` (capture id 1) after a full authorization.
fn captured_history(amount: Money) -> Vec<PaymentEvent> {
    let mut events = authorized_history();
    events.push(captured(capture_id(1), amount));
    events
}

fn declined_history() -> Vec<PaymentEvent> {
    let mut events = pending_automatic();
    events.push(declined("evt-decline"));
    events
}

fn failed_history() -> Vec<PaymentEvent> {
    let mut events = pending_automatic();
    events.push(attempt_failed());
    events.push(failed());
    events
}

fn voided_history() -> Vec<PaymentEvent> {
    let mut events = authorized_history();
    events.push(voided(full()));
    events
}

/// Fully refunded by refund 1.
fn refunded_history() -> Vec<PaymentEvent> {
    let mut events = approved_history();
    events.push(refund_requested(refund_id(1), full()));
    events.push(refunded(refund_id(1), full()));
    events
}

fn with(mut events: Vec<PaymentEvent>, more: Vec<PaymentEvent>) -> Vec<PaymentEvent> {
    events.extend(more);
    events
}

/// Every end state: (status, history that ends there).
fn end_states() -> Vec<(PaymentStatus, Vec<PaymentEvent>)> {
    vec![
        (PaymentStatus::Declined, declined_history()),
        (PaymentStatus::Failed, failed_history()),
        (PaymentStatus::Voided, voided_history()),
        (PaymentStatus::Refunded, refunded_history()),
    ]
}

#[test]
fn fixture_histories_end_where_their_names_say() {
    let cases = [
        (pending_automatic(), PaymentStatus::Pending),
        (authorized_history(), PaymentStatus::Authorized),
        (approved_history(), PaymentStatus::Approved),
        (captured_history(cop("1000.00")), PaymentStatus::Approved),
        (declined_history(), PaymentStatus::Declined),
        (failed_history(), PaymentStatus::Failed),
        (voided_history(), PaymentStatus::Voided),
        (refunded_history(), PaymentStatus::Refunded),
    ];
    for (events, status) in cases {
        let state = fold(&events);
        assert_eq!(state.status, status);
        assert_eq!(state.check_invariants(), Ok(()));
    }
}

// ---------------------------------------------------------------------------------------------
// Empty stream
// ---------------------------------------------------------------------------------------------

#[test]
fn every_command_but_initiate_on_an_empty_stream_is_not_found() {
    let commands = [
        record_attempt_failed(),
        fail(),
        authorize("evt-1", full()),
        approve("evt-1", full()),
        decline("evt-1"),
        capture(capture_id(1), full()),
        void(),
        request_refund(refund_id(1), full()),
        complete_refund(refund_id(1)),
        fail_refund(refund_id(1)),
    ];
    for command in commands {
        payment()
            .when(command)
            .then_expect_error(PaymentError::NotFound);
    }
}

// ---------------------------------------------------------------------------------------------
// Initiate
// ---------------------------------------------------------------------------------------------

#[test]
fn initiate_starts_a_pending_payment() {
    payment()
        .when(initiate(CaptureMode::Automatic))
        .then_expect_events(vec![
            initiated(CaptureMode::Automatic),
            PaymentEvent::ProviderAttemptStarted {
                provider: PROVIDER.to_owned(),
                attempt_id: crate::ids::AttemptId::derive(payment_id(), PROVIDER),
                at: at(),
            },
        ]);

    let state = fold(&pending_automatic());
    assert_eq!(state.status, PaymentStatus::Pending);
    assert_eq!(state.id, Some(payment_id()));
    assert_eq!(state.amount, Some(full()));
    assert_eq!(state.authorized, Decimal::ZERO);
    assert_eq!(state.captured, Decimal::ZERO);
    assert_eq!(state.created_at, Some(at()));
}

#[test]
fn initiate_again_with_the_same_request_appends_nothing() {
    given(pending_automatic())
        .when(initiate(CaptureMode::Automatic))
        .then_expect_events(vec![]);
}

#[test]
fn initiate_again_with_the_same_request_after_it_moved_on_appends_nothing() {
    for (_, history) in end_states() {
        let mode = match history[0] {
            PaymentEvent::PaymentInitiated { capture_mode, .. } => capture_mode,
            _ => unreachable!(),
        };
        given(history)
            .when(initiate(mode))
            .then_expect_events(vec![]);
    }
}

#[test]
fn initiate_again_with_another_request_is_an_idempotency_mismatch() {
    given(pending_automatic())
        .when(initiate_with(CaptureMode::Automatic, "sha256:request-2"))
        .then_expect_error(PaymentError::IdempotencyMismatch);
    given(approved_history())
        .when(initiate_with(CaptureMode::Automatic, "sha256:request-2"))
        .then_expect_error(PaymentError::IdempotencyMismatch);
}

#[test]
fn initiate_again_for_another_payment_id_is_an_idempotency_mismatch() {
    let mut command = initiate(CaptureMode::Automatic);
    if let PaymentCommand::Initiate { payment_id, .. } = &mut command {
        *payment_id = PaymentId::from_uuid(Uuid::from_u128(0x0002));
    }
    given(pending_automatic())
        .when(command)
        .then_expect_error(PaymentError::IdempotencyMismatch);
}

#[test]
fn initiate_with_a_zero_amount_is_refused() {
    let mut command = initiate(CaptureMode::Automatic);
    if let PaymentCommand::Initiate { amount, .. } = &mut command {
        *amount = Money::zero(Currency::COP);
    }
    payment()
        .when(command)
        .then_expect_error(PaymentError::Money(MoneyError::NotPositive));
}

// ---------------------------------------------------------------------------------------------
// Automatic capture: PENDING -> APPROVED
// ---------------------------------------------------------------------------------------------

#[test]
fn approve_from_pending_captures_the_whole_amount() {
    given(pending_automatic())
        .when(approve("evt-approve", full()))
        .then_expect_events(vec![approved("evt-approve", full())]);

    let state = fold(&approved_history());
    assert_eq!(state.status, PaymentStatus::Approved);
    assert_eq!(state.authorized, full().amount());
    assert_eq!(state.captured, full().amount());
    assert_eq!(state.provider_transaction_id.as_deref(), Some(TX));
    assert!(state.provider_events.contains("evt-approve"));
}

#[test]
fn approve_for_another_amount_is_a_provider_amount_mismatch() {
    given(pending_automatic())
        .when(approve("evt-approve", cop("128999.99")))
        .then_expect_error(PaymentError::ProviderAmountMismatch {
            expected: "129000.00 COP".to_owned(),
            reported: "128999.99 COP".to_owned(),
        });
}

#[test]
fn approve_in_another_currency_is_a_provider_amount_mismatch() {
    given(pending_automatic())
        .when(approve("evt-approve", jpy("129000")))
        .then_expect_error(PaymentError::ProviderAmountMismatch {
            expected: "129000.00 COP".to_owned(),
            reported: "129000 JPY".to_owned(),
        });
}

#[test]
fn approve_redelivered_appends_nothing() {
    given(approved_history())
        .when(approve("evt-approve", full()))
        .then_expect_events(vec![]);
    // Even after the payment moved on to REFUNDED.
    given(refunded_history())
        .when(approve("evt-approve", full()))
        .then_expect_events(vec![]);
}

#[test]
fn approve_after_approval_with_a_new_event_is_refused() {
    given(approved_history())
        .when(approve("evt-approve-2", full()))
        .then_expect_error(invalid("approve", PaymentStatus::Approved));
}

#[test]
fn approve_after_authorization_is_refused() {
    given(authorized_history())
        .when(approve("evt-approve", full()))
        .then_expect_error(invalid("approve", PaymentStatus::Authorized));
}

// ---------------------------------------------------------------------------------------------
// Manual capture: PENDING -> AUTHORIZED -> APPROVED
// ---------------------------------------------------------------------------------------------

#[test]
fn authorize_from_pending() {
    given(pending_manual())
        .when(authorize("evt-auth", full()))
        .then_expect_events(vec![authorized("evt-auth", full())]);

    let state = fold(&authorized_history());
    assert_eq!(state.status, PaymentStatus::Authorized);
    assert_eq!(state.authorized, full().amount());
    assert_eq!(state.captured, Decimal::ZERO);
}

#[test]
fn authorize_for_another_amount_is_a_provider_amount_mismatch() {
    given(pending_manual())
        .when(authorize("evt-auth", cop("1.00")))
        .then_expect_error(PaymentError::ProviderAmountMismatch {
            expected: "129000.00 COP".to_owned(),
            reported: "1.00 COP".to_owned(),
        });
}

#[test]
fn authorize_redelivered_appends_nothing_even_after_capture() {
    given(authorized_history())
        .when(authorize("evt-auth", full()))
        .then_expect_events(vec![]);
    given(captured_history(full()))
        .when(authorize("evt-auth", full()))
        .then_expect_events(vec![]);
}

#[test]
fn authorize_twice_with_different_events_is_refused() {
    given(authorized_history())
        .when(authorize("evt-auth-2", full()))
        .then_expect_error(invalid("authorize", PaymentStatus::Authorized));
}

#[test]
fn capture_the_whole_authorization() {
    given(authorized_history())
        .when(capture(capture_id(1), full()))
        .then_expect_events(vec![captured(capture_id(1), full())]);

    let state = fold(&captured_history(full()));
    assert_eq!(state.status, PaymentStatus::Approved);
    assert_eq!(state.captured, full().amount());
    assert_eq!(state.capture_id, Some(capture_id(1)));
}

#[test]
fn capture_part_of_the_authorization() {
    given(authorized_history())
        .when(capture(capture_id(1), cop("100000.00")))
        .then_expect_events(vec![captured(capture_id(1), cop("100000.00"))]);

    let state = fold(&captured_history(cop("100000.00")));
    assert_eq!(state.status, PaymentStatus::Approved);
    assert_eq!(state.authorized, full().amount());
    assert_eq!(state.captured, cop("100000.00").amount());
}

#[test]
fn capture_above_the_authorization_is_refused() {
    given(authorized_history())
        .when(capture(capture_id(1), cop("129000.01")))
        .then_expect_error(PaymentError::CaptureExceedsAuthorized {
            requested: "129000.01 COP".to_owned(),
            authorized: "129000.00 COP".to_owned(),
        });
}

#[test]
fn capture_in_another_currency_is_refused() {
    given(authorized_history())
        .when(capture(capture_id(1), jpy("1000")))
        .then_expect_error(PaymentError::CurrencyMismatch {
            expected: Currency::COP,
            given: Currency::JPY,
        });
}

#[test]
fn capture_of_zero_is_refused() {
    given(authorized_history())
        .when(capture(capture_id(1), Money::zero(Currency::COP)))
        .then_expect_error(PaymentError::Money(MoneyError::NotPositive));
}

#[test]
fn capture_repeated_with_the_same_capture_id_appends_nothing() {
    given(captured_history(cop("100000.00")))
        .when(capture(capture_id(1), cop("100000.00")))
        .then_expect_events(vec![]);
    // Still nothing once refunds have started.
    given(with(
        captured_history(cop("100000.00")),
        vec![
            refund_requested(refund_id(1), cop("10.00")),
            refunded(refund_id(1), cop("10.00")),
        ],
    ))
    .when(capture(capture_id(1), cop("100000.00")))
    .then_expect_events(vec![]);
}

#[test]
fn capture_id_reused_for_another_amount_is_an_idempotency_mismatch() {
    given(captured_history(cop("100000.00")))
        .when(capture(capture_id(1), cop("100.00")))
        .then_expect_error(PaymentError::IdempotencyMismatch);
}

#[test]
fn capture_id_reused_for_the_same_number_in_another_currency_is_an_idempotency_mismatch() {
    given(captured_history(cop("1000.00")))
        .when(capture(capture_id(1), jpy("1000")))
        .then_expect_error(PaymentError::IdempotencyMismatch);
}

#[test]
fn a_second_capture_is_refused() {
    given(captured_history(cop("100.00")))
        .when(capture(capture_id(2), cop("100.00")))
        .then_expect_error(invalid("capture", PaymentStatus::Approved));
}

#[test]
fn capture_before_authorization_is_refused() {
    given(pending_manual())
        .when(capture(capture_id(1), full()))
        .then_expect_error(invalid("capture", PaymentStatus::Pending));
}

#[test]
fn capture_after_automatic_approval_is_refused() {
    given(approved_history())
        .when(capture(capture_id(1), full()))
        .then_expect_error(invalid("capture", PaymentStatus::Approved));
}

#[test]
fn capture_after_void_is_refused() {
    given(voided_history())
        .when(capture(capture_id(1), full()))
        .then_expect_error(invalid("capture", PaymentStatus::Voided));
}

// ---------------------------------------------------------------------------------------------
// Decline and provider event ids
// ---------------------------------------------------------------------------------------------

#[test]
fn decline_from_pending() {
    given(pending_automatic())
        .when(decline("evt-decline"))
        .then_expect_events(vec![declined("evt-decline")]);

    let state = fold(&declined_history());
    assert_eq!(state.status, PaymentStatus::Declined);
    assert_eq!(state.failure_reason.as_deref(), Some("insufficient funds"));
    assert_eq!(state.captured, Decimal::ZERO);
}

#[test]
fn decline_of_a_manual_payment_from_pending() {
    given(pending_manual())
        .when(decline("evt-decline"))
        .then_expect_events(vec![declined("evt-decline")]);
}

#[test]
fn decline_redelivered_appends_nothing() {
    given(declined_history())
        .when(decline("evt-decline"))
        .then_expect_events(vec![]);
}

#[test]
fn decline_after_authorization_or_approval_is_refused() {
    given(authorized_history())
        .when(decline("evt-decline"))
        .then_expect_error(invalid("decline", PaymentStatus::Authorized));
    given(approved_history())
        .when(decline("evt-decline"))
        .then_expect_error(invalid("decline", PaymentStatus::Approved));
}

#[test]
fn a_provider_event_id_already_seen_appends_nothing_whatever_it_says() {
    // The notification that approved the payment, redelivered as a decline: the id is what
    // identifies a notification, so it is a redelivery, not news.
    given(approved_history())
        .when(decline("evt-approve"))
        .then_expect_events(vec![]);
    given(declined_history())
        .when(approve("evt-decline", full()))
        .then_expect_events(vec![]);
}

#[test]
fn decline_approve_and_authorize_after_an_end_state_are_refused() {
    for (status, history) in end_states() {
        given(history.clone())
            .when(decline("evt-new"))
            .then_expect_error(invalid("decline", status));
        given(history.clone())
            .when(approve("evt-new", full()))
            .then_expect_error(invalid("approve", status));
        given(history)
            .when(authorize("evt-new", full()))
            .then_expect_error(invalid("authorize", status));
    }
}

// ---------------------------------------------------------------------------------------------
// Provider attempts and FAILED
// ---------------------------------------------------------------------------------------------

#[test]
fn a_failed_provider_attempt_is_recorded_and_the_payment_stays_pending() {
    given(pending_automatic())
        .when(record_attempt_failed())
        .then_expect_events(vec![attempt_failed()]);
    // Routing may fail over more than once.
    given(with(pending_automatic(), vec![attempt_failed()]))
        .when(record_attempt_failed())
        .then_expect_events(vec![attempt_failed()]);

    let state = fold(&with(pending_automatic(), vec![attempt_failed()]));
    assert_eq!(state.status, PaymentStatus::Pending);
}

#[test]
fn a_failed_provider_attempt_outside_pending_is_refused() {
    given(authorized_history())
        .when(record_attempt_failed())
        .then_expect_error(invalid(
            "record a provider attempt on",
            PaymentStatus::Authorized,
        ));
    for (status, history) in end_states() {
        given(history)
            .when(record_attempt_failed())
            .then_expect_error(invalid("record a provider attempt on", status));
    }
}

#[test]
fn fail_after_a_failed_attempt_ends_failed() {
    given(with(pending_automatic(), vec![attempt_failed()]))
        .when(fail())
        .then_expect_events(vec![failed()]);

    let state = fold(&failed_history());
    assert_eq!(state.status, PaymentStatus::Failed);
    assert_eq!(
        state.failure_reason.as_deref(),
        Some("no provider available")
    );
}

#[test]
fn fail_twice_appends_nothing() {
    given(failed_history())
        .when(fail())
        .then_expect_events(vec![]);
}

#[test]
fn fail_outside_pending_is_refused() {
    given(authorized_history())
        .when(fail())
        .then_expect_error(invalid("fail", PaymentStatus::Authorized));
    given(approved_history())
        .when(fail())
        .then_expect_error(invalid("fail", PaymentStatus::Approved));
    given(declined_history())
        .when(fail())
        .then_expect_error(invalid("fail", PaymentStatus::Declined));
    given(voided_history())
        .when(fail())
        .then_expect_error(invalid("fail", PaymentStatus::Voided));
    given(refunded_history())
        .when(fail())
        .then_expect_error(invalid("fail", PaymentStatus::Refunded));
}

// ---------------------------------------------------------------------------------------------
// Void
// ---------------------------------------------------------------------------------------------

#[test]
fn void_releases_an_authorization() {
    given(authorized_history())
        .when(void())
        .then_expect_events(vec![voided(full())]);

    let state = fold(&voided_history());
    assert_eq!(state.status, PaymentStatus::Voided);
    assert_eq!(state.captured, Decimal::ZERO);
}

#[test]
fn void_twice_appends_nothing() {
    given(voided_history())
        .when(void())
        .then_expect_events(vec![]);
}

#[test]
fn void_outside_authorized_is_refused() {
    given(pending_manual())
        .when(void())
        .then_expect_error(invalid("void", PaymentStatus::Pending));
    given(approved_history())
        .when(void())
        .then_expect_error(invalid("void", PaymentStatus::Approved));
    given(captured_history(cop("1.00")))
        .when(void())
        .then_expect_error(invalid("void", PaymentStatus::Approved));
    given(declined_history())
        .when(void())
        .then_expect_error(invalid("void", PaymentStatus::Declined));
    given(refunded_history())
        .when(void())
        .then_expect_error(invalid("void", PaymentStatus::Refunded));
}

// ---------------------------------------------------------------------------------------------
// Refunds
// ---------------------------------------------------------------------------------------------

#[test]
fn request_refund_reserves_without_changing_the_status() {
    given(approved_history())
        .when(request_refund(refund_id(1), cop("1000.00")))
        .then_expect_events(vec![refund_requested(refund_id(1), cop("1000.00"))]);

    let state = fold(&with(
        approved_history(),
        vec![refund_requested(refund_id(1), cop("1000.00"))],
    ));
    assert_eq!(state.status, PaymentStatus::Approved);
    assert_eq!(state.refund_reserved, cop("1000.00").amount());
    assert_eq!(state.refunded, Decimal::ZERO);
    assert_eq!(state.refunds[&refund_id(1)].status, RefundStatus::Requested);
}

#[test]
fn complete_part_of_the_capture_is_partially_refunded() {
    let history = with(
        approved_history(),
        vec![refund_requested(refund_id(1), cop("1000.00"))],
    );
    given(history.clone())
        .when(complete_refund(refund_id(1)))
        .then_expect_events(vec![refunded(refund_id(1), cop("1000.00"))]);

    let state = fold(&with(history, vec![refunded(refund_id(1), cop("1000.00"))]));
    assert_eq!(state.status, PaymentStatus::PartiallyRefunded);
    assert_eq!(state.refunded, cop("1000.00").amount());
    assert_eq!(state.refund_reserved, Decimal::ZERO);
    assert_eq!(state.refunds[&refund_id(1)].status, RefundStatus::Succeeded);
}

#[test]
fn complete_the_whole_capture_is_refunded() {
    let history = with(
        approved_history(),
        vec![refund_requested(refund_id(1), full())],
    );
    given(history)
        .when(complete_refund(refund_id(1)))
        .then_expect_events(vec![refunded(refund_id(1), full())]);

    let state = fold(&refunded_history());
    assert_eq!(state.status, PaymentStatus::Refunded);
    assert_eq!(state.refunded, state.captured);
}

#[test]
fn partial_refunds_that_add_up_to_the_capture_end_refunded() {
    let history = with(
        approved_history(),
        vec![
            refund_requested(refund_id(1), cop("29000.00")),
            refunded(refund_id(1), cop("29000.00")),
            refund_requested(refund_id(2), cop("100000.00")),
        ],
    );
    given(history.clone())
        .when(complete_refund(refund_id(2)))
        .then_expect_events(vec![refunded(refund_id(2), cop("100000.00"))]);

    let state = fold(&with(
        history,
        vec![refunded(refund_id(2), cop("100000.00"))],
    ));
    assert_eq!(state.status, PaymentStatus::Refunded);
}

#[test]
fn refunding_a_partial_capture_in_full_is_refunded() {
    // Refunded means everything captured went back, not the payment's whole amount.
    let history = with(
        captured_history(cop("1000.00")),
        vec![refund_requested(refund_id(1), cop("1000.00"))],
    );
    given(history.clone())
        .when(complete_refund(refund_id(1)))
        .then_expect_events(vec![refunded(refund_id(1), cop("1000.00"))]);
    let state = fold(&with(history, vec![refunded(refund_id(1), cop("1000.00"))]));
    assert_eq!(state.status, PaymentStatus::Refunded);
}

#[test]
fn refund_from_partially_refunded() {
    let history = with(
        approved_history(),
        vec![
            refund_requested(refund_id(1), cop("1000.00")),
            refunded(refund_id(1), cop("1000.00")),
        ],
    );
    given(history)
        .when(request_refund(refund_id(2), cop("128000.00")))
        .then_expect_events(vec![refund_requested(refund_id(2), cop("128000.00"))]);
}

#[test]
fn fail_refund_releases_the_reservation() {
    let history = with(
        approved_history(),
        vec![refund_requested(refund_id(1), full())],
    );
    given(history.clone())
        .when(fail_refund(refund_id(1)))
        .then_expect_events(vec![refund_failed(refund_id(1), full())]);

    let history = with(history, vec![refund_failed(refund_id(1), full())]);
    let state = fold(&history);
    assert_eq!(state.status, PaymentStatus::Approved);
    assert_eq!(state.refund_reserved, Decimal::ZERO);
    assert_eq!(state.refunded, Decimal::ZERO);
    assert_eq!(state.refunds[&refund_id(1)].status, RefundStatus::Failed);
    // The released amount can be refunded again, under a new id.
    given(history)
        .when(request_refund(refund_id(2), full()))
        .then_expect_events(vec![refund_requested(refund_id(2), full())]);
}

#[test]
fn fail_refund_after_a_partial_refund_keeps_partially_refunded() {
    let history = with(
        approved_history(),
        vec![
            refund_requested(refund_id(1), cop("1000.00")),
            refunded(refund_id(1), cop("1000.00")),
            refund_requested(refund_id(2), cop("2000.00")),
            refund_failed(refund_id(2), cop("2000.00")),
        ],
    );
    let state = fold(&history);
    assert_eq!(state.status, PaymentStatus::PartiallyRefunded);
    assert_eq!(state.refund_reserved, Decimal::ZERO);
}

#[test]
fn refund_above_the_capture_is_refused() {
    given(approved_history())
        .when(request_refund(refund_id(1), cop("129000.01")))
        .then_expect_error(PaymentError::RefundExceedsCaptured {
            requested: "129000.01 COP".to_owned(),
            refundable: "129000.00 COP".to_owned(),
        });
}

#[test]
fn refund_above_a_partial_capture_is_refused() {
    given(captured_history(cop("1000.00")))
        .when(request_refund(refund_id(1), cop("1000.01")))
        .then_expect_error(PaymentError::RefundExceedsCaptured {
            requested: "1000.01 COP".to_owned(),
            refundable: "1000.00 COP".to_owned(),
        });
}

#[test]
fn refund_counting_pending_reservations_is_refused() {
    let history = with(
        approved_history(),
        vec![refund_requested(refund_id(1), cop("100000.00"))],
    );
    given(history.clone())
        .when(request_refund(refund_id(2), cop("29000.01")))
        .then_expect_error(PaymentError::RefundExceedsCaptured {
            requested: "29000.01 COP".to_owned(),
            refundable: "29000.00 COP".to_owned(),
        });
    // Exactly what is left is fine.
    given(history)
        .when(request_refund(refund_id(2), cop("29000.00")))
        .then_expect_events(vec![refund_requested(refund_id(2), cop("29000.00"))]);
}

#[test]
fn refund_above_what_is_left_after_refunds_is_refused() {
    let history = with(
        approved_history(),
        vec![
            refund_requested(refund_id(1), cop("100000.00")),
            refunded(refund_id(1), cop("100000.00")),
            refund_requested(refund_id(2), cop("20000.00")),
        ],
    );
    given(history)
        .when(request_refund(refund_id(3), cop("9000.01")))
        .then_expect_error(PaymentError::RefundExceedsCaptured {
            requested: "9000.01 COP".to_owned(),
            refundable: "9000.00 COP".to_owned(),
        });
}

#[test]
fn refund_in_another_currency_is_refused() {
    given(approved_history())
        .when(request_refund(refund_id(1), jpy("1000")))
        .then_expect_error(PaymentError::CurrencyMismatch {
            expected: Currency::COP,
            given: Currency::JPY,
        });
}

#[test]
fn refund_of_zero_is_refused() {
    given(approved_history())
        .when(request_refund(refund_id(1), Money::zero(Currency::COP)))
        .then_expect_error(PaymentError::Money(MoneyError::NotPositive));
}

#[test]
fn refund_requested_twice_with_the_same_id_appends_nothing() {
    let history = with(
        approved_history(),
        vec![refund_requested(refund_id(1), cop("1000.00"))],
    );
    given(history.clone())
        .when(request_refund(refund_id(1), cop("1000.00")))
        .then_expect_events(vec![]);
    // Nor once it completed, even if that refunded everything.
    given(refunded_history())
        .when(request_refund(refund_id(1), full()))
        .then_expect_events(vec![]);
    // Nor once it failed: a retry returns the first result.
    given(with(
        history,
        vec![refund_failed(refund_id(1), cop("1000.00"))],
    ))
    .when(request_refund(refund_id(1), cop("1000.00")))
    .then_expect_events(vec![]);
}

#[test]
fn refund_id_reused_for_another_request_is_an_idempotency_mismatch() {
    let history = with(
        approved_history(),
        vec![refund_requested(refund_id(1), cop("1000.00"))],
    );
    given(history.clone())
        .when(request_refund(refund_id(1), cop("2000.00")))
        .then_expect_error(PaymentError::IdempotencyMismatch);
    given(history)
        .when(PaymentCommand::RequestRefund {
            refund_id: refund_id(1),
            amount: cop("1000.00"),
            reason: None,
            at: at(),
        })
        .then_expect_error(PaymentError::IdempotencyMismatch);
}

#[test]
fn refund_before_capture_is_refused() {
    given(pending_automatic())
        .when(request_refund(refund_id(1), full()))
        .then_expect_error(invalid("refund", PaymentStatus::Pending));
    given(authorized_history())
        .when(request_refund(refund_id(1), full()))
        .then_expect_error(invalid("refund", PaymentStatus::Authorized));
}

#[test]
fn refund_after_an_end_state_is_refused() {
    for (status, history) in end_states() {
        given(history)
            .when(request_refund(refund_id(9), cop("1.00")))
            .then_expect_error(invalid("refund", status));
    }
}

#[test]
fn complete_or_fail_an_unknown_refund_is_refund_not_found() {
    given(approved_history())
        .when(complete_refund(refund_id(1)))
        .then_expect_error(PaymentError::RefundNotFound);
    given(approved_history())
        .when(fail_refund(refund_id(1)))
        .then_expect_error(PaymentError::RefundNotFound);
    given(pending_automatic())
        .when(complete_refund(refund_id(1)))
        .then_expect_error(PaymentError::RefundNotFound);
}

#[test]
fn complete_refund_twice_appends_nothing() {
    given(refunded_history())
        .when(complete_refund(refund_id(1)))
        .then_expect_events(vec![]);
}

#[test]
fn fail_refund_twice_appends_nothing() {
    given(with(
        approved_history(),
        vec![
            refund_requested(refund_id(1), full()),
            refund_failed(refund_id(1), full()),
        ],
    ))
    .when(fail_refund(refund_id(1)))
    .then_expect_events(vec![]);
}

#[test]
fn complete_a_failed_refund_is_refused() {
    given(with(
        approved_history(),
        vec![
            refund_requested(refund_id(1), full()),
            refund_failed(refund_id(1), full()),
        ],
    ))
    .when(complete_refund(refund_id(1)))
    .then_expect_error(invalid(
        "complete a failed refund of",
        PaymentStatus::Approved,
    ));
}

#[test]
fn fail_a_completed_refund_is_refused() {
    given(refunded_history())
        .when(fail_refund(refund_id(1)))
        .then_expect_error(invalid(
            "fail a completed refund of",
            PaymentStatus::Refunded,
        ));
}

// ---------------------------------------------------------------------------------------------
// End states
// ---------------------------------------------------------------------------------------------

#[test]
fn nothing_happens_after_an_end_state() {
    for (status, history) in end_states() {
        let mode = match history[0] {
            PaymentEvent::PaymentInitiated { capture_mode, .. } => capture_mode,
            _ => unreachable!(),
        };
        let commands = [
            initiate(mode),
            initiate_with(mode, "sha256:other"),
            record_attempt_failed(),
            fail(),
            authorize("evt-new", full()),
            approve("evt-new", full()),
            decline("evt-new"),
            capture(capture_id(7), cop("1.00")),
            void(),
            request_refund(refund_id(7), cop("1.00")),
            complete_refund(refund_id(1)),
            fail_refund(refund_id(1)),
            complete_refund(refund_id(7)),
        ];
        for command in commands {
            let result = given(history.clone())
                .when(command.clone())
                .inspect_result();
            assert!(
                result.is_err() || matches!(&result, Ok(events) if events.is_empty()),
                "{status}: {command:?} gave {result:?}"
            );
        }
    }
}

#[test]
fn events_name_themselves_and_carry_the_schema_version() {
    use cqrs_es::DomainEvent;
    let event = approved("evt-approve", full());
    assert_eq!(event.event_type(), "PaymentApproved");
    assert_eq!(event.event_version(), crate::payment::EVENT_VERSION);
    assert_eq!(event.provider_event_id(), Some("evt-approve"));
    assert_eq!(captured(capture_id(1), full()).provider_event_id(), None);
}

// Capture mode ----------------------------------------------------------------------------------

#[test]
fn an_automatic_capture_payment_cannot_be_authorized_only() {
    given(vec![initiated(CaptureMode::Automatic)])
        .when(authorize("evt-a", full()))
        .then_expect_error(invalid("authorize", PaymentStatus::Pending));
}

#[test]
fn a_manual_capture_payment_is_not_captured_by_the_provider() {
    given(vec![initiated(CaptureMode::Manual)])
        .when(approve("evt-a", full()))
        .then_expect_error(invalid("approve", PaymentStatus::Pending));
}

// Provider transaction, expiry, fees ------------------------------------------------------------

fn provider_transaction(provider: &str, id: &str) -> PaymentCommand {
    PaymentCommand::RecordProviderTransaction {
        provider: provider.to_owned(),
        provider_transaction_id: id.to_owned(),
        next_action: Some(crate::payment::NextAction::Redirect {
            url: "https://bank.example/pse".to_owned(),
        }),
        at: at(),
    }
}

#[test]
fn a_provider_transaction_is_recorded_once_and_names_the_provider() {
    let created = PaymentEvent::ProviderTransactionCreated {
        provider: "payu".to_owned(),
        provider_transaction_id: "tx-9".to_owned(),
        next_action: Some(crate::payment::NextAction::Redirect {
            url: "https://bank.example/pse".to_owned(),
        }),
        at: at(),
    };
    given(vec![initiated(CaptureMode::Automatic)])
        .when(provider_transaction("payu", "tx-9"))
        .then_expect_events(vec![created.clone()]);
    let state = fold(&[initiated(CaptureMode::Automatic), created.clone()]);
    assert_eq!(state.provider, "payu");
    assert_eq!(state.provider_transaction_id.as_deref(), Some("tx-9"));
    given(vec![initiated(CaptureMode::Automatic), created.clone()])
        .when(provider_transaction("payu", "tx-9"))
        .then_expect_events(vec![]);
    given(vec![initiated(CaptureMode::Automatic), created])
        .when(provider_transaction("wompi", "tx-10"))
        .then_expect_error(invalid(
            "record a provider transaction on",
            PaymentStatus::Pending,
        ));
}

#[test]
fn a_pending_payment_expires_once_and_nothing_follows() {
    let expire = PaymentCommand::Expire {
        provider_event_id: "evt-exp".to_owned(),
        at: at(),
    };
    let expired = PaymentEvent::PaymentExpired {
        provider_event_id: "evt-exp".to_owned(),
        at: at(),
    };
    given(vec![initiated(CaptureMode::Automatic)])
        .when(expire.clone())
        .then_expect_events(vec![expired.clone()]);
    given(vec![initiated(CaptureMode::Automatic), expired.clone()])
        .when(expire)
        .then_expect_events(vec![]);
    given(vec![initiated(CaptureMode::Automatic), expired])
        .when(approve("evt-late", full()))
        .then_expect_error(invalid("approve", PaymentStatus::Expired));
    given(vec![
        initiated(CaptureMode::Automatic),
        approved("evt-1", full()),
    ])
    .when(PaymentCommand::Expire {
        provider_event_id: "evt-2".to_owned(),
        at: at(),
    })
    .then_expect_error(invalid("expire", PaymentStatus::Approved));
}

#[test]
fn the_fee_is_fixed_at_approval_and_must_fit_the_amount() {
    let fee = cop("3870.00");
    let command = PaymentCommand::Approve {
        provider_event_id: "evt-fee".to_owned(),
        provider_transaction_id: TX.to_owned(),
        amount: full(),
        fee: Some(fee),
        at: at(),
    };
    let events = fold(&[initiated(CaptureMode::Automatic)])
        .decide(command)
        .unwrap();
    assert!(
        matches!(&events[..], [PaymentEvent::PaymentApproved { fee: Some(f), .. }] if *f == fee)
    );
    let state = fold(&[initiated(CaptureMode::Automatic), events[0].clone()]);
    assert_eq!(state.fee, fee.amount());

    let too_big = PaymentCommand::Approve {
        provider_event_id: "evt-fee".to_owned(),
        provider_transaction_id: TX.to_owned(),
        amount: full(),
        fee: Some(cop("129000.01")),
        at: at(),
    };
    assert!(fold(&[initiated(CaptureMode::Automatic)])
        .decide(too_big)
        .is_err());
    let other_currency = PaymentCommand::Approve {
        provider_event_id: "evt-fee".to_owned(),
        provider_transaction_id: TX.to_owned(),
        amount: full(),
        fee: Some(jpy("10")),
        at: at(),
    };
    assert!(matches!(
        fold(&[initiated(CaptureMode::Automatic)]).decide(other_currency),
        Err(PaymentError::CurrencyMismatch { .. })
    ));
}

#[test]
fn events_written_before_fees_still_read() {
    let old = r#"{"PaymentApproved":{"provider":"sandbox","provider_event_id":"e","provider_transaction_id":"t","capture_id":null,"amount":{"amount":"10.00","currency":"USD"},"at":"2026-01-01T00:00:00Z"}}"#;
    let event: PaymentEvent = serde_json::from_str(old).unwrap();
    assert!(matches!(
        event,
        PaymentEvent::PaymentApproved { fee: None, .. }
    ));
}
