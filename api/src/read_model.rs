//! The read side as audit verification rebuilds it: every projection, replayed from the events
//! into a scratch schema. Wired here so that `audit` never depends on `projections`.

use async_trait::async_trait;
use audit::{ReadModel, RebuildError};
use projections::replay::{self, ReplayError};
use sqlx::PgPool;

/// Every projection (`projections::all()`).
pub struct Projections;

#[async_trait]
impl ReadModel for Projections {
    fn projections(&self) -> Vec<(&'static str, &'static [&'static str])> {
        projections::all()
            .iter()
            .map(|p| (p.name(), p.tables()))
            .collect()
    }

    async fn rebuild(&self, pool: &PgPool, schema: &str) -> Result<u64, RebuildError> {
        match replay::replay(
            pool,
            &projections::all(),
            schema,
            replay::BATCH_SIZE_DEFAULT,
        )
        .await
        {
            Ok(report) => Ok(report.events),
            // An event no projection can apply, however often tried: a finding, not an outage.
            Err(ReplayError::Projection(error)) if !error.is_transient() => {
                Err(RebuildError::Unbuildable(error.to_string()))
            }
            Err(other) => Err(RebuildError::Failed(Box::new(other))),
        }
    }
}
