//! Fifty concurrent refunds of one payment can never refund more than was captured.

use e2e::{payment_body, spawn_app};
use futures::future::join_all;
use serde_json::json;

#[tokio::test]
async fn fifty_concurrent_tenth_refunds_refund_exactly_the_captured_amount() {
    let app = spawn_app().await;
    let created = app
        .create_payment(
            "k-conc",
            &payment_body(
                "1000.00",
                "USD",
                "order-c",
                "tok_sandbox_approved",
                "automatic",
            ),
        )
        .await;
    let id = created["id"].as_str().unwrap().to_owned();
    app.wait_for_status(&id, "APPROVED").await;

    let path = format!("/v1/payments/{id}/refunds");
    let attempts = (0..50).map(|i| {
        let app = &app;
        let path = path.clone();
        async move {
            let response = app
                .post(
                    &path,
                    &app.checkout_key,
                    Some(&format!("refund-{i}")),
                    &json!({"amount": "100.00"}),
                )
                .await;
            let status = response.status().as_u16();
            let body: serde_json::Value = response.json().await.unwrap();
            (status, body)
        }
    });
    let results = join_all(attempts).await;
    let succeeded = results.iter().filter(|(s, _)| *s == 201).count();
    let refused: Vec<_> = results.iter().filter(|(s, _)| *s != 201).collect();
    assert_eq!(succeeded, 10, "exactly ten tenths fit: {results:?}");
    assert_eq!(refused.len(), 40);
    for (status, body) in refused {
        assert!(
            *status == 422 || *status == 409,
            "refused refunds are refused, not failed: {status} {body}"
        );
    }

    let events = app.event_types(&id).await;
    assert_eq!(
        events.iter().filter(|t| *t == "RefundRequested").count(),
        10
    );
    assert_eq!(
        events.iter().filter(|t| *t == "PaymentRefunded").count(),
        10
    );
    let last_version = events.len() as i64;
    let view = app.read_at_least(&id, last_version).await;
    assert_eq!(view["status"], "REFUNDED");
    assert_eq!(view["refunded_amount"], "1000.00");
    assert_eq!(view["captured_amount"], "1000.00");
}

/// A command's events go in as one statement: stored together or not at all, and a sequence
/// another writer took refuses the whole append as a conflict (the command then re-reads).
#[tokio::test]
async fn an_append_is_all_or_nothing_and_a_taken_sequence_is_a_conflict() {
    use cqrs_es::persist::{PersistedEventRepository, PersistenceError, SerializedEvent};
    use domain::Payment;
    use eventstore::repository::PaymentEvents;

    let app = spawn_app().await;
    let store = PaymentEvents::new(app.pool.clone());
    let id = uuid::Uuid::new_v4().to_string();
    let event = |sequence: usize, event_type: &str| {
        SerializedEvent::new(
            id.clone(),
            sequence,
            "Payment".into(),
            event_type.into(),
            "1.0".into(),
            json!({"n": sequence, "amount": "10.50"}),
            json!({"source": "test"}),
        )
    };
    store
        .persist::<Payment>(&[event(1, "First"), event(2, "Second")], None)
        .await
        .unwrap();
    let lost = store
        .persist::<Payment>(&[event(3, "Third"), event(2, "Again")], None)
        .await;
    assert!(
        matches!(lost, Err(PersistenceError::OptimisticLockError)),
        "{lost:?}"
    );
    let stored = store.get_events::<Payment>(&id).await.unwrap();
    let kept: Vec<(usize, &str)> = stored
        .iter()
        .map(|e| (e.sequence, e.event_type.as_str()))
        .collect();
    assert_eq!(
        kept,
        vec![(1, "First"), (2, "Second")],
        "nothing of the lost append"
    );
    assert_eq!(stored[1].payload, json!({"n": 2, "amount": "10.50"}));
    assert_eq!(stored[1].metadata, json!({"source": "test"}));
    assert_eq!(stored[1].aggregate_type, "Payment");
}
