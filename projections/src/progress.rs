//! How far the relay and each projection have got, for `/health` and read-your-writes.

use sqlx::{PgExecutor, PgPool, Row};

#[derive(Debug, Clone, serde::Serialize)]
pub struct ProjectionLag {
    pub projection: String,
    pub last_global_position: i64,
    /// Events the relay has published that this projection has not applied yet.
    pub events_behind: i64,
    /// Seconds between the newest published event and the newest applied one.
    pub seconds_behind: f64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct RelayProgress {
    pub last_global_position: i64,
    pub published_total: i64,
    /// Committed events not yet published.
    pub events_behind: i64,
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

pub async fn relay(pool: &PgPool) -> Result<RelayProgress, sqlx::Error> {
    let row = sqlx::query(
        "SELECT c.last_global_position, c.published_total,
                (SELECT count(*) FROM events e
                  WHERE (e.transaction_id, e.global_position)
                      > (c.last_transaction_id, c.last_global_position)) AS behind
           FROM relay_checkpoint c WHERE c.id = 1",
    )
    .fetch_one(pool)
    .await?;
    Ok(RelayProgress {
        last_global_position: row.try_get("last_global_position")?,
        published_total: row.try_get("published_total")?,
        events_behind: row.try_get("behind")?,
    })
}

/// Lag of each named projection behind what the relay has published.
pub async fn projections(pool: &PgPool, names: &[&str]) -> Result<Vec<ProjectionLag>, sqlx::Error> {
    let mut lags = Vec::with_capacity(names.len());
    for name in names {
        let row = sqlx::query(
            "SELECT COALESCE(p.last_global_position, 0) AS pos,
                    (SELECT count(*) FROM events e
                      WHERE e.global_position > COALESCE(p.last_global_position, 0)
                        AND (e.transaction_id, e.global_position)
                            <= (c.last_transaction_id, c.last_global_position)) AS behind,
                    COALESCE(EXTRACT(EPOCH FROM (
                        -- The newest published event's time: one index probe, where max()
                        -- over every published event read the whole table.
                        (SELECT recorded_at FROM events WHERE global_position <= c.last_global_position
                          ORDER BY global_position DESC LIMIT 1)
                        - p.last_recorded_at)), 0)::float8 AS seconds
               FROM relay_checkpoint c
               LEFT JOIN projection_progress p ON p.projection = $1
              WHERE c.id = 1",
        )
        .bind(name)
        .fetch_one(pool)
        .await?;
        lags.push(ProjectionLag {
            projection: (*name).to_owned(),
            last_global_position: row.try_get("pos")?,
            events_behind: row.try_get("behind")?,
            seconds_behind: row.try_get::<f64, _>("seconds")?.max(0.0),
        });
    }
    Ok(lags)
}
