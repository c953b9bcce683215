//! One provider contract, run against every connector: what the write side relies on from a
//! `PaymentProvider` and its `WebhookVerifier`, written once and instantiated per provider
//! through a [`ProviderFixture`]. Each connector is built by the registry from its settings
//! and talks to its emulator over real sockets; webhooks go to a local receiver. No mocks.
//!
//! Where a provider lacks a capability, its fixture says so and the test checks that the
//! connector says the same (and refuses the call) instead of skipping.

mod support;

#[path = "contract/fixture.rs"]
mod fixture;
#[path = "contract/providers.rs"]
mod providers;

use domain::{CaptureId, CaptureMode, PaymentId, ProviderFailureKind, RefundId};
use uuid::Uuid;

use connectors::{CallOutcome, NotificationOutcome, ProviderTransactionStatus};

use fixture::{closed_port, Env, ProviderFixture, PART};

/// 1. A created transaction is the one `get_transaction` returns.
async fn created_transaction_is_the_one_get_returns<F: ProviderFixture>() {
    let env = Env::<F>::start().await;
    let request = env.request(CaptureMode::Automatic);
    let created = env.create(&request).await;
    assert_eq!(created.payment_id, request.payment_id, "{}", F::NAME);
    assert_eq!(created.amount, request.amount, "{}", F::NAME);

    let fetched = env
        .provider
        .get_transaction(&created.id)
        .await
        .unwrap_or_else(|e| panic!("{}: get_transaction: {e}", F::NAME));
    assert_eq!(fetched.id, created.id, "{}", F::NAME);
    assert_eq!(fetched.payment_id, request.payment_id, "{}", F::NAME);
    assert_eq!(fetched.amount, request.amount, "{}", F::NAME);
    env.stop().await;
}

/// 2. Within the idempotency window, a repeated create is the first transaction: the
///    emulator holds one.
async fn repeated_create_is_the_first_transaction<F: ProviderFixture>() {
    let mut env = Env::<F>::start().await;
    let window = env.provider.create_idempotency_window();
    if !F::IDEMPOTENT_CREATE {
        assert_eq!(window, None, "{} claims an idempotency window", F::NAME);
        env.stop().await;
        return;
    }
    assert!(
        window.is_some(),
        "{} reports no idempotency window",
        F::NAME
    );
    let request = env.request(CaptureMode::Automatic);
    let first = env.create(&request).await;
    let again = env.create(&request).await;
    assert_eq!(again.id, first.id, "{}", F::NAME);
    assert_eq!(again.payment_id, request.payment_id, "{}", F::NAME);
    let held = F::held(&env, &request)
        .await
        .expect("the fixture counts what its emulator holds");
    assert_eq!(
        held,
        1,
        "{}: the emulator holds {held} transactions",
        F::NAME
    );
    // Paid once, decided once: no webhook about a second transaction.
    F::pay(&env, &first).await;
    let (_, decided) = env.decided(request.payment_id).await;
    assert_eq!(decided.provider_transaction_id, first.id, "{}", F::NAME);
    env.receiver.assert_quiet().await;
    env.stop().await;
}

/// 3. Lookup by reference finds the created transaction, and nothing for a payment never
///    sent.
async fn lookup_finds_the_created_transaction_and_none_for_another<F: ProviderFixture>() {
    let env = Env::<F>::start().await;
    assert_eq!(env.provider.supports_lookup(), F::LOOKUP, "{}", F::NAME);
    let request = env.request(CaptureMode::Automatic);
    let never_sent = PaymentId::from_uuid(Uuid::new_v4());
    if !F::LOOKUP {
        let err = env
            .provider
            .find_transaction(never_sent, &request.reference)
            .await
            .expect_err("no lookup, no answer");
        assert_eq!(err.outcome(), CallOutcome::Refused, "{}: {err}", F::NAME);
        env.stop().await;
        return;
    }
    let created = env.create(&request).await;
    let found = env
        .provider
        .find_transaction(request.payment_id, &request.reference)
        .await
        .unwrap_or_else(|e| panic!("{}: find_transaction: {e}", F::NAME))
        .unwrap_or_else(|| panic!("{}: the created transaction is not found", F::NAME));
    assert_eq!(found.id, created.id, "{}", F::NAME);
    assert_eq!(found.payment_id, request.payment_id, "{}", F::NAME);
    assert_eq!(found.amount, request.amount, "{}", F::NAME);

    let nothing = env
        .provider
        .find_transaction(never_sent, "order-never-sent")
        .await
        .unwrap_or_else(|e| panic!("{}: find_transaction: {e}", F::NAME));
    assert_eq!(nothing, None, "{}", F::NAME);
    env.stop().await;
}

/// 4. A refund repeated with the same refund id is the first refund, and refunds once.
async fn repeated_refund_refunds_once<F: ProviderFixture>() {
    let mut env = Env::<F>::start().await;
    assert_eq!(env.provider.supports_refunds(), F::REFUNDS, "{}", F::NAME);
    let (_, tx, _, _) = env.approved(CaptureMode::Automatic).await;
    let refund_id = RefundId::from_uuid(Uuid::new_v4());
    let part = env.money(PART);
    if !F::REFUNDS {
        let err = env
            .provider
            .refund(&tx.id, refund_id, part)
            .await
            .expect_err("no refunds through the API");
        assert_eq!(err.outcome(), CallOutcome::Refused, "{}: {err}", F::NAME);
        env.stop().await;
        return;
    }
    let refund = |label: &'static str| {
        let provider = env.provider.clone();
        let id = tx.id.clone();
        async move {
            provider
                .refund(&id, refund_id, part)
                .await
                .unwrap_or_else(|e| panic!("{}: {label} refund: {e}", F::NAME))
        }
    };
    let first = refund("first").await;
    let repeated = refund("repeated").await;
    assert_eq!(repeated, first, "{}", F::NAME);
    let now = env.provider.get_transaction(&tx.id).await.unwrap();
    assert_eq!(
        now.refunded_amount,
        part,
        "{}: refunded more than once",
        F::NAME
    );
    assert_eq!(
        now.status,
        ProviderTransactionStatus::Approved,
        "{}",
        F::NAME
    );
    env.stop().await;
}

/// 5a. A capture repeated with the same capture id captures once.
async fn repeated_capture_captures_once<F: ProviderFixture>() {
    let mut env = Env::<F>::start().await;
    assert_eq!(
        env.provider.supports_manual_capture(),
        F::MANUAL_CAPTURE,
        "{}",
        F::NAME
    );
    if !F::MANUAL_CAPTURE {
        let request = env.request(CaptureMode::Manual);
        let err = env
            .provider
            .create_transaction(&request)
            .await
            .expect_err("no manual capture");
        assert_eq!(err.outcome(), CallOutcome::Refused, "{}: {err}", F::NAME);
        env.stop().await;
        return;
    }
    let (request, tx, _, _) = env.approved(CaptureMode::Manual).await;
    let capture_id = CaptureId::from_uuid(Uuid::new_v4());
    let part = env.money(PART);
    for attempt in ["first", "repeated"] {
        env.provider
            .capture(&tx.id, capture_id, part)
            .await
            .unwrap_or_else(|e| panic!("{}: {attempt} capture: {e}", F::NAME));
    }
    let now = env.provider.get_transaction(&tx.id).await.unwrap();
    assert_eq!(
        now.status,
        ProviderTransactionStatus::Approved,
        "{}",
        F::NAME
    );
    assert_eq!(
        now.captured_amount,
        part,
        "{}: captured more than once",
        F::NAME
    );
    assert_eq!(now.amount, request.amount, "{}", F::NAME);
    env.stop().await;
}

/// 5b. Voiding an authorization leaves the transaction voided.
async fn void_of_an_authorization_ends_voided<F: ProviderFixture>() {
    let mut env = Env::<F>::start().await;
    if !F::MANUAL_CAPTURE {
        assert!(!env.provider.supports_manual_capture(), "{}", F::NAME);
        env.stop().await;
        return;
    }
    let (_, tx, _, _) = env.approved(CaptureMode::Manual).await;
    env.provider
        .void(&tx.id)
        .await
        .unwrap_or_else(|e| panic!("{}: void: {e}", F::NAME));
    let now = env.provider.get_transaction(&tx.id).await.unwrap();
    assert_eq!(now.status, ProviderTransactionStatus::Voided, "{}", F::NAME);
    assert!(now.captured_amount.is_zero(), "{}", F::NAME);
    env.stop().await;
}

/// 6. The emulator's webhook for an approved payment verifies and names our payment; the
///    same webhook forged is refused as unauthenticated.
async fn approved_webhook_verifies_and_a_forged_one_is_refused<F: ProviderFixture>() {
    let mut env = Env::<F>::start().await;
    let (request, tx, delivery, notification) = env.approved(CaptureMode::Automatic).await;
    assert_eq!(notification.provider, F::NAME);
    assert_eq!(notification.payment_id, request.payment_id, "{}", F::NAME);
    assert_eq!(notification.provider_transaction_id, tx.id, "{}", F::NAME);
    assert_eq!(
        notification.outcome,
        NotificationOutcome::Approved {
            amount: request.amount
        },
        "{}",
        F::NAME
    );

    let forged = F::forge(&delivery);
    assert!(
        forged.body != delivery.body
            || forged.headers != delivery.headers
            || forged.peer != delivery.peer,
        "{}: the forgery changed nothing",
        F::NAME
    );
    match env.verify(&forged).await {
        Err(e) => assert!(e.is_authentication(), "{}: refused, but as {e:?}", F::NAME),
        Ok(found) if F::FORGERY_STANDS_FOR_NOTHING && found.is_empty() => {}
        Ok(n) => panic!("{}: a forged webhook was accepted: {n:?}", F::NAME),
    }
    env.stop().await;
}

/// 7. A create that cannot reach the provider was never sent; the emulator answers `health`.
async fn unreachable_provider_is_not_sent_and_health_answers<F: ProviderFixture>() {
    let env = Env::<F>::start().await;
    env.provider
        .health()
        .await
        .unwrap_or_else(|e| panic!("{}: health: {e}", F::NAME));

    let base_url = env.emulator.base_url();
    let nowhere = base_url.replace(&env.emulator.addr().to_string(), &closed_port().to_string());
    assert_ne!(nowhere, base_url);
    let unreachable = env.provider_with(F::BASE_URL_SETTING, nowhere);
    let err = unreachable
        .create_transaction(&env.request(CaptureMode::Automatic))
        .await
        .expect_err("nothing listens there");
    assert_eq!(err.outcome(), CallOutcome::NotSent, "{}: {err}", F::NAME);
    assert_eq!(
        err.kind,
        ProviderFailureKind::Connection,
        "{}: {err}",
        F::NAME
    );
    env.stop().await;
}

/// 8. A wrong key is refused by the provider: the create always, the health check where it
///    presents that key; `Rejected` (final), and the key never shows in the error.
async fn wrong_key_is_rejected<F: ProviderFixture>() {
    let env = Env::<F>::start().await;
    let wrong = env.provider_with(F::KEY_SETTING, F::WRONG_KEY.to_owned());
    let create = wrong
        .create_transaction(&env.request(CaptureMode::Automatic))
        .await
        .expect_err("a wrong key creates nothing");
    let health = wrong.health().await;
    assert_eq!(
        health.is_err(),
        F::HEALTH_CHECKS_KEY,
        "{}: health with a wrong {}: {health:?}",
        F::NAME,
        F::KEY_SETTING
    );
    for err in std::iter::once(&create).chain(health.as_ref().err()) {
        assert_eq!(
            err.kind,
            ProviderFailureKind::Rejected,
            "{}: {err}",
            F::NAME
        );
        assert_eq!(err.outcome(), CallOutcome::Refused, "{}: {err}", F::NAME);
        assert!(!err.detail.contains(F::WRONG_KEY), "{}: {err}", F::NAME);
    }
    env.stop().await;
}

/// Instantiates every contract test for each `module => Fixture`.
macro_rules! contract_suite {
    ($($module:ident => $fixture:ty),* $(,)?) => {
        /// The registry names of the connectors the suite runs against.
        const COVERED: &[&str] = &[$(<$fixture as ProviderFixture>::NAME),*];

        $(
            mod $module {
                use super::*;

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn created_transaction_is_the_one_get_returns() {
                    super::created_transaction_is_the_one_get_returns::<$fixture>().await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn repeated_create_is_the_first_transaction() {
                    super::repeated_create_is_the_first_transaction::<$fixture>().await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn lookup_finds_the_created_transaction_and_none_for_another() {
                    super::lookup_finds_the_created_transaction_and_none_for_another::<$fixture>()
                        .await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn repeated_refund_refunds_once() {
                    super::repeated_refund_refunds_once::<$fixture>().await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn repeated_capture_captures_once() {
                    super::repeated_capture_captures_once::<$fixture>().await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn void_of_an_authorization_ends_voided() {
                    super::void_of_an_authorization_ends_voided::<$fixture>().await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn approved_webhook_verifies_and_a_forged_one_is_refused() {
                    super::approved_webhook_verifies_and_a_forged_one_is_refused::<$fixture>()
                        .await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn unreachable_provider_is_not_sent_and_health_answers() {
                    super::unreachable_provider_is_not_sent_and_health_answers::<$fixture>().await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn wrong_key_is_rejected() {
                    super::wrong_key_is_rejected::<$fixture>().await;
                }
            }
        )*
    };
}

contract_suite! {
    sandbox => providers::Sandbox,
    wompi => providers::Wompi,
    payu => providers::Payu,
    maya => providers::Maya,
    gcash => providers::Gcash,
    ebanx => providers::Ebanx,
}

/// A connector added to the registry runs the contract too: it needs a fixture here.
#[test]
fn every_known_connector_runs_the_contract() {
    let mut known: Vec<&str> = connectors::registry::known().collect();
    let mut covered = COVERED.to_vec();
    known.sort_unstable();
    covered.sort_unstable();
    assert_eq!(covered, known, "connectors without a contract fixture");
}
