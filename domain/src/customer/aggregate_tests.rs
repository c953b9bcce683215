//! Given/When/Then tests of the `Customer` aggregate: given past events, when a command, then
//! the events it appends or the error it is refused with.

use chrono::{DateTime, TimeZone, Utc};
use cqrs_es::test::{AggregateTestExecutor, TestFramework};
use uuid::Uuid;

use crate::customer::aggregate::SAVED_METHODS_MAX;
use crate::customer::{Customer, CustomerCommand, CustomerError, CustomerEvent, MethodDisplay};
use crate::ids::{CustomerId, MerchantId, Reference, SavedMethodId};
use crate::payment::PaymentMethodType;

fn at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 14, 15, 9, 26).unwrap()
}

fn customer_id() -> CustomerId {
    CustomerId::from_uuid(Uuid::from_u128(1))
}

fn method(n: u128) -> SavedMethodId {
    SavedMethodId::from_uuid(Uuid::from_u128(100 + n))
}

fn card() -> MethodDisplay {
    MethodDisplay {
        brand: Some("VISA".into()),
        last_four: Some("4242".into()),
        exp_month: Some(12),
        exp_year: Some(2030),
        phone_masked: None,
    }
}

fn created() -> CustomerEvent {
    CustomerEvent::CustomerCreated {
        customer_id: customer_id(),
        merchant_id: MerchantId::parse("m-1").unwrap(),
        reference: Reference::parse("cust-1").unwrap(),
        at: at(),
    }
}

fn saved(n: u128) -> CustomerEvent {
    CustomerEvent::PaymentMethodSaved {
        payment_method_id: method(n),
        provider: "sandbox".into(),
        method_type: PaymentMethodType::Card,
        display: card(),
        awaiting_verification: false,
        at: at(),
    }
}

/// A card the provider charges only once the customer has verified it.
fn saved_unverified(n: u128) -> CustomerEvent {
    CustomerEvent::PaymentMethodSaved {
        payment_method_id: method(n),
        provider: "maya".into(),
        method_type: PaymentMethodType::Card,
        display: card(),
        awaiting_verification: true,
        at: at(),
    }
}

fn conclude(n: u128, verified: bool) -> CustomerCommand {
    CustomerCommand::ConcludeVerification {
        payment_method_id: method(n),
        verified,
        at: at(),
    }
}

fn default_set(n: u128) -> CustomerEvent {
    CustomerEvent::DefaultPaymentMethodSet {
        payment_method_id: method(n),
        at: at(),
    }
}

fn save(n: u128) -> CustomerCommand {
    CustomerCommand::SaveMethod {
        payment_method_id: method(n),
        provider: "sandbox".into(),
        method_type: PaymentMethodType::Card,
        display: card(),
        awaiting_verification: false,
        at: at(),
    }
}

fn given(events: Vec<CustomerEvent>) -> AggregateTestExecutor<Customer> {
    TestFramework::<Customer>::with(()).given(events)
}

#[test]
fn a_customer_is_created_once_and_a_repeat_is_a_no_op() {
    let create = CustomerCommand::Create {
        customer_id: customer_id(),
        merchant_id: MerchantId::parse("m-1").unwrap(),
        reference: Reference::parse("cust-1").unwrap(),
        at: at(),
    };
    TestFramework::<Customer>::with(())
        .given_no_previous_events()
        .when(create.clone())
        .then_expect_events(vec![created()]);
    given(vec![created()])
        .when(create)
        .then_expect_events(vec![]);
}

#[test]
fn nothing_but_creation_happens_to_a_customer_that_does_not_exist() {
    TestFramework::<Customer>::with(())
        .given_no_previous_events()
        .when(save(1))
        .then_expect_error(CustomerError::NotFound);
}

#[test]
fn the_first_saved_method_becomes_the_default_and_later_ones_do_not() {
    given(vec![created()])
        .when(save(1))
        .then_expect_events(vec![saved(1), default_set(1)]);
    given(vec![created(), saved(1), default_set(1)])
        .when(save(2))
        .then_expect_events(vec![saved(2)]);
}

#[test]
fn a_retried_save_is_a_no_op_and_a_different_method_under_its_id_is_refused() {
    let history = vec![created(), saved(1), default_set(1)];
    given(history.clone())
        .when(save(1))
        .then_expect_events(vec![]);
    given(history)
        .when(CustomerCommand::SaveMethod {
            payment_method_id: method(1),
            provider: "wompi".into(),
            method_type: PaymentMethodType::Nequi,
            display: MethodDisplay::default(),
            awaiting_verification: false,
            at: at(),
        })
        .then_expect_error(CustomerError::MethodMismatch);
}

#[test]
fn a_customer_keeps_a_bounded_number_of_methods() {
    let mut history = vec![created()];
    history.extend((0..SAVED_METHODS_MAX as u128).map(saved));
    history.push(default_set(0));
    given(history.clone())
        .when(save(99))
        .then_expect_error(CustomerError::TooManyMethods);
    // Removing one makes room again.
    history.push(CustomerEvent::PaymentMethodRemoved {
        payment_method_id: method(1),
        at: at(),
    });
    given(history)
        .when(save(99))
        .then_expect_events(vec![saved(99)]);
}

#[test]
fn the_default_is_any_active_method_and_never_a_removed_or_unknown_one() {
    let history = vec![created(), saved(1), default_set(1), saved(2)];
    given(history.clone())
        .when(CustomerCommand::SetDefault {
            payment_method_id: method(2),
            at: at(),
        })
        .then_expect_events(vec![default_set(2)]);
    given(history.clone())
        .when(CustomerCommand::SetDefault {
            payment_method_id: method(1),
            at: at(),
        })
        .then_expect_events(vec![]);
    given(history.clone())
        .when(CustomerCommand::SetDefault {
            payment_method_id: method(7),
            at: at(),
        })
        .then_expect_error(CustomerError::NoSuchMethod);
    let mut removed = history;
    removed.push(CustomerEvent::PaymentMethodRemoved {
        payment_method_id: method(2),
        at: at(),
    });
    given(removed)
        .when(CustomerCommand::SetDefault {
            payment_method_id: method(2),
            at: at(),
        })
        .then_expect_error(CustomerError::MethodRemoved);
}

#[test]
fn removing_is_idempotent_and_removing_the_default_leaves_none() {
    let removal = CustomerEvent::PaymentMethodRemoved {
        payment_method_id: method(1),
        at: at(),
    };
    let history = vec![created(), saved(1), default_set(1)];
    given(history.clone())
        .when(CustomerCommand::RemoveMethod {
            payment_method_id: method(1),
            at: at(),
        })
        .then_expect_events(vec![removal.clone()]);
    let mut after = history;
    after.push(removal);
    given(after.clone())
        .when(CustomerCommand::RemoveMethod {
            payment_method_id: method(1),
            at: at(),
        })
        .then_expect_events(vec![]);

    let mut customer = Customer::default();
    for event in after {
        cqrs_es::Aggregate::apply(&mut customer, event);
    }
    assert_eq!(customer.default_method, None);
    assert_eq!(customer.active_methods().count(), 0);
    // The next method saved becomes the default again.
    assert_eq!(
        customer.decide(save(2)).unwrap(),
        vec![saved(2), default_set(2)]
    );
}

#[test]
fn events_serialize_with_their_name_and_no_source_id() {
    let json = serde_json::to_value(saved(1)).unwrap();
    assert_eq!(json["PaymentMethodSaved"]["provider"], "sandbox");
    assert_eq!(json["PaymentMethodSaved"]["display"]["last_four"], "4242");
    assert_eq!(
        serde_json::from_value::<CustomerEvent>(json).unwrap(),
        saved(1)
    );
}

#[test]
fn a_method_awaiting_verification_is_saved_as_such_and_still_becomes_the_default() {
    given(vec![created()])
        .when(CustomerCommand::SaveMethod {
            payment_method_id: method(1),
            provider: "maya".into(),
            method_type: PaymentMethodType::Card,
            display: card(),
            awaiting_verification: true,
            at: at(),
        })
        .then_expect_events(vec![saved_unverified(1), default_set(1)]);
}

#[test]
fn a_verification_is_concluded_once_whichever_way_it_went() {
    let history = vec![created(), saved_unverified(1), default_set(1)];
    let verified = CustomerEvent::PaymentMethodVerified {
        payment_method_id: method(1),
        at: at(),
    };
    let failed = CustomerEvent::PaymentMethodVerificationFailed {
        payment_method_id: method(1),
        at: at(),
    };
    given(history.clone())
        .when(conclude(1, true))
        .then_expect_events(vec![verified.clone()]);
    given(history.clone())
        .when(conclude(1, false))
        .then_expect_events(vec![failed.clone()]);
    // Whatever the provider says later, the first conclusion stands.
    let mut after = history.clone();
    after.push(verified);
    given(after.clone())
        .when(conclude(1, false))
        .then_expect_events(vec![]);
    let mut after_failure = history;
    after_failure.push(failed);
    given(after_failure)
        .when(conclude(1, true))
        .then_expect_events(vec![]);
    // A method saved chargeable has nothing to conclude.
    given(vec![created(), saved(2), default_set(2)])
        .when(conclude(2, true))
        .then_expect_events(vec![]);
    given(vec![created()])
        .when(conclude(3, true))
        .then_expect_error(CustomerError::NoSuchMethod);
}

#[test]
fn a_failed_verification_removes_the_method_and_the_default_with_it() {
    let mut customer = Customer::default();
    for event in [
        created(),
        saved_unverified(1),
        default_set(1),
        CustomerEvent::PaymentMethodVerificationFailed {
            payment_method_id: method(1),
            at: at(),
        },
    ] {
        cqrs_es::Aggregate::apply(&mut customer, event);
    }
    assert_eq!(
        customer.active_method(method(1)),
        Err(CustomerError::MethodRemoved)
    );
    assert_eq!(customer.default_method, None);
    assert_eq!(customer.active_methods().count(), 0);
}

#[test]
fn events_saved_before_verification_existed_read_as_chargeable() {
    let stored = serde_json::json!({"PaymentMethodSaved": {
        "payment_method_id": method(1),
        "provider": "sandbox",
        "method_type": "CARD",
        "display": {"brand": "VISA", "last_four": "4242", "exp_month": 12, "exp_year": 2030},
        "at": at(),
    }});
    let event: CustomerEvent = serde_json::from_value(stored.clone()).unwrap();
    assert_eq!(event, saved(1));
    // And a chargeable method is still written in that shape.
    assert_eq!(serde_json::to_value(saved(1)).unwrap(), stored);
}
