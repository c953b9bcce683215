//! The dispatcher: a consumer of the events exchange, run by the projection machinery (its own
//! durable queue, per-payment offsets, gaps filled from the store), that records a delivery
//! for every enabled endpoint of the payment's merchant that takes the event. Recording is
//! in the transaction that moves the offsets, so each (endpoint, event) is recorded exactly
//! once however often RabbitMQ redelivers. It is not a read model: `replay` never runs it.

use async_trait::async_trait;
use eventstore::PublishedEvent;
use projections::{Decoded, Projection, ProjectionError};
use sqlx::{PgConnection, Row};
use uuid::Uuid;

/// The name of its queue and offsets.
pub const NAME: &str = "merchant-webhooks";

pub struct Dispatcher;

#[async_trait]
impl Projection for Dispatcher {
    fn name(&self) -> &'static str {
        NAME
    }

    fn tables(&self) -> &'static [&'static str] {
        &[]
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        events: &[PublishedEvent],
    ) -> Result<(), ProjectionError> {
        // Most ledgers have few endpoints or none: one probe spares the lookups below.
        let any: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM webhook_endpoints WHERE status = 'enabled')",
        )
        .fetch_one(&mut *conn)
        .await?;
        if !any {
            return Ok(());
        }
        let mut ids: Vec<&str> = events.iter().map(|e| e.aggregate_id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        let merchants = eventstore::streams::payment_merchants(&mut *conn, &ids).await?;
        let mut wanted: Vec<&str> = merchants.values().map(String::as_str).collect();
        wanted.sort_unstable();
        wanted.dedup();
        let endpoints = sqlx::query(
            "SELECT id, merchant_id, event_types, created_at FROM webhook_endpoints
              WHERE merchant_id = ANY($1) AND status = 'enabled'",
        )
        .bind(&wanted)
        .fetch_all(&mut *conn)
        .await?;
        if endpoints.is_empty() {
            return Ok(());
        }
        let mut delivery = Deliveries::default();
        for event in events {
            let Some(merchant) = merchants.get(&event.aggregate_id) else {
                continue; // not a payment of any merchant's (never: PaymentInitiated comes first)
            };
            let payment_id =
                Uuid::parse_str(&event.aggregate_id).map_err(|e| ProjectionError::Poison {
                    message_id: event.message_id(),
                    reason: format!("aggregate id is not a uuid: {e}"),
                })?;
            let body = body(event, merchant);
            for endpoint in &endpoints {
                let endpoint_merchant: String = endpoint.try_get("merchant_id")?;
                let types: Vec<String> = endpoint.try_get("event_types")?;
                let since: chrono::DateTime<chrono::Utc> = endpoint.try_get("created_at")?;
                // An endpoint hears of what happens after it is registered.
                let takes = endpoint_merchant == *merchant
                    && event.recorded_at >= since
                    && (types.is_empty() || types.contains(&event.event_type));
                if takes {
                    delivery.push(endpoint.try_get("id")?, event, payment_id, &body);
                }
            }
        }
        delivery.insert(conn).await?;
        Ok(())
    }

    /// Never called: the dispatcher is not among the projections a replay rebuilds.
    async fn apply_decoded(
        &self,
        _conn: &mut PgConnection,
        _events: &[Decoded<'_>],
    ) -> Result<(), ProjectionError> {
        Ok(())
    }
}

/// The JSON a merchant receives for `event`: its id (what `Payledger-Event-Id` carries), name,
/// payment, place in the payment's stream, time, and the event's fields.
pub fn body(event: &PublishedEvent, merchant: &str) -> String {
    let data = event
        .payload
        .get(&event.event_type)
        .cloned()
        .unwrap_or(serde_json::Value::Null);
    serde_json::json!({
        "id": event.message_id(),
        "type": event.event_type,
        "payment_id": event.aggregate_id,
        "merchant_id": merchant,
        "sequence": event.sequence,
        "created_at": event.recorded_at,
        "data": data,
    })
    .to_string()
}

/// Rows to insert, column by column.
#[derive(Default)]
struct Deliveries {
    endpoint: Vec<Uuid>,
    event_id: Vec<String>,
    payment: Vec<Uuid>,
    sequence: Vec<i64>,
    position: Vec<i64>,
    event_type: Vec<String>,
    body: Vec<String>,
}

impl Deliveries {
    fn push(&mut self, endpoint: Uuid, event: &PublishedEvent, payment: Uuid, body: &str) {
        self.endpoint.push(endpoint);
        self.event_id.push(event.message_id());
        self.payment.push(payment);
        self.sequence.push(event.sequence);
        self.position.push(event.global_position);
        self.event_type.push(event.event_type.clone());
        self.body.push(body.to_owned());
    }

    async fn insert(self, conn: &mut PgConnection) -> Result<(), sqlx::Error> {
        if self.endpoint.is_empty() {
            return Ok(());
        }
        let ids: Vec<Uuid> = self.endpoint.iter().map(|_| Uuid::now_v7()).collect();
        sqlx::query(
            "INSERT INTO merchant_webhook_deliveries
                 (id, endpoint_id, event_id, payment_id, sequence, global_position, event_type,
                  body, state, next_attempt_at, created_at)
             SELECT t.id, t.endpoint, t.event_id, t.payment, t.sequence, t.position, t.event_type,
                    t.body, 'pending', now(), now()
               FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::uuid[], $5::bigint[],
                           $6::bigint[], $7::text[], $8::text[])
                    AS t(id, endpoint, event_id, payment, sequence, position, event_type, body)
             ON CONFLICT (endpoint_id, event_id) DO NOTHING",
        )
        .bind(&ids)
        .bind(&self.endpoint)
        .bind(&self.event_id)
        .bind(&self.payment)
        .bind(&self.sequence)
        .bind(&self.position)
        .bind(&self.event_type)
        .bind(&self.body)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }
}
