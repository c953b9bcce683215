//! Reading the event store directly: the source of truth that fills gaps in what RabbitMQ
//! delivered, and that replays read.

use domain::PublishedEvent;
use sqlx::{PgConnection, Row};

const EVENT_COLUMNS: &str = "global_position, aggregate_type, aggregate_id, sequence, event_type,
       event_version, payload, metadata, recorded_at";

pub(crate) fn from_row(row: &sqlx::postgres::PgRow) -> Result<PublishedEvent, sqlx::Error> {
    Ok(PublishedEvent {
        global_position: row.try_get("global_position")?,
        aggregate_type: row.try_get("aggregate_type")?,
        aggregate_id: row.try_get("aggregate_id")?,
        sequence: row.try_get("sequence")?,
        event_type: row.try_get("event_type")?,
        event_version: row.try_get("event_version")?,
        payload: row.try_get("payload")?,
        metadata: row.try_get("metadata")?,
        recorded_at: row.try_get("recorded_at")?,
    })
}

/// Events of one aggregate with `after < sequence <= through`, in order.
pub async fn aggregate_events(
    conn: &mut PgConnection,
    aggregate_type: &str,
    aggregate_id: &str,
    after: i64,
    through: i64,
) -> Result<Vec<PublishedEvent>, sqlx::Error> {
    let sql = format!(
        "SELECT {EVENT_COLUMNS} FROM events
          WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence > $3 AND sequence <= $4
          ORDER BY sequence"
    );
    let rows = sqlx::query(&sql)
        .bind(aggregate_type)
        .bind(aggregate_id)
        .bind(after)
        .bind(through)
        .fetch_all(&mut *conn)
        .await?;
    rows.iter().map(from_row).collect()
}
