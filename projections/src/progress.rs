//! How far each projection has got, for `/health` and read-your-writes (the relay's own
//! progress is `eventstore::checkpoint::relay_progress`).

use sqlx::{PgExecutor, PgPool, Row};

#[derive(Debug, Clone, serde::Serialize)]
pub struct ProjectionLag {
    pub projection: String,
    pub last_global_position: i64,
    /// Events the relay has published that this projection has not applied yet.
    pub events_behind: i64,
    /// Seconds between the newest published event and the newest applied one.
    pub seconds_behind: f64,
    /// Events applied since the projection was last rebuilt (a replay starts it again).
    pub applied_total: i64,
}

/// Moves a projection's progress on by a batch: $1 projection, $2 the batch's newest global
/// position, $3 its `recorded_at`, $4 events applied.
pub(crate) const UPSERT: &str = "INSERT INTO projection_progress AS p
            (projection, last_global_position, last_recorded_at, applied_total, updated_at)
     VALUES ($1, $2, $3, $4, now())
     ON CONFLICT (projection) DO UPDATE
        SET last_global_position = GREATEST(p.last_global_position, EXCLUDED.last_global_position),
            last_recorded_at = GREATEST(p.last_recorded_at, EXCLUDED.last_recorded_at),
            applied_total = p.applied_total + EXCLUDED.applied_total,
            updated_at = now()";

pub async fn record(
    executor: impl PgExecutor<'_>,
    projection: &str,
    global_position: i64,
    recorded_at: chrono::DateTime<chrono::Utc>,
    applied: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(UPSERT)
        .bind(projection)
        .bind(global_position)
        .bind(recorded_at)
        .bind(applied)
        .execute(executor)
        .await?;
    Ok(())
}

/// Lag of each named projection behind what the relay has published.
pub async fn projections(pool: &PgPool, names: &[&str]) -> Result<Vec<ProjectionLag>, sqlx::Error> {
    let mut lags = Vec::with_capacity(names.len());
    for name in names {
        let progress = sqlx::query(
            "SELECT last_global_position, last_recorded_at, applied_total FROM projection_progress
              WHERE projection = $1",
        )
        .bind(name)
        .fetch_optional(pool)
        .await?;
        let (position, recorded_at, applied_total) = match &progress {
            Some(row) => (
                row.try_get::<i64, _>("last_global_position")?,
                row.try_get::<Option<chrono::DateTime<chrono::Utc>>, _>("last_recorded_at")?,
                row.try_get::<i64, _>("applied_total")?,
            ),
            None => (0, None, 0),
        };
        // Read after the projection's progress: the relay may have moved on meanwhile, so
        // the lag is never understated.
        // A projection is behind only by events of the aggregate type it folds.
        let aggregate_type = crate::select(name)
            .and_then(|chosen| chosen.first().map(|p| p.aggregate_type()))
            .unwrap_or(eventstore::published::PAYMENT);
        let beyond =
            eventstore::checkpoint::published_beyond(pool, aggregate_type, position).await?;
        let seconds = match (beyond.newest_recorded_at, recorded_at) {
            (Some(newest), Some(applied)) => (newest - applied)
                .num_microseconds()
                .map_or(0.0, |us| us as f64 / 1e6),
            _ => 0.0,
        };
        lags.push(ProjectionLag {
            projection: (*name).to_owned(),
            last_global_position: position,
            events_behind: beyond.events,
            seconds_behind: seconds.max(0.0),
            applied_total,
        });
    }
    Ok(lags)
}
