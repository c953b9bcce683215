//! `no_stale_intents`: no payment has sat with an intent open (a provider's outcome unknown,
//! a capture, void or refund unanswered, an orphan holding money, a review) for longer than
//! the horizon.

use std::time::Duration;

use sqlx::{PgPool, Row};

use super::{bounded, Finding, Status};

pub(super) async fn no_stale_intents(
    pool: &PgPool,
    horizon: Duration,
    examples_max: usize,
) -> Result<Finding, String> {
    // Open intents as the resolver's work list defines them (api/src/reconciler.rs), plus
    // those flagged for review; aged by the payment's latest event.
    let open = "FROM payment_status
                 WHERE (status = 'PENDING' OR provider_outcome IS NOT NULL
                        OR pending_action IS NOT NULL OR refund_pending_amount > 0
                        OR orphans_open > 0 OR needs_review IS NOT NULL)";
    let old = "updated_at < now() - make_interval(secs => $1)";
    let seconds = horizon.as_secs_f64();
    let row = bounded(
        "counting open intents",
        sqlx::query(&format!(
            "SELECT count(*) AS open,
                    count(*) FILTER (WHERE {old}) AS stale,
                    count(*) FILTER (WHERE {old} AND provider_outcome = 'unknown') AS outcome_unknown,
                    count(*) FILTER (WHERE {old} AND needs_review IS NOT NULL) AS needs_review
               {open}"
        ))
        .bind(seconds)
        .fetch_one(pool),
    )
    .await?;
    let get = |name: &str| row.try_get::<i64, _>(name).map_err(|e| e.to_string());
    let (open_now, count, unknown, review) = (
        get("open")?,
        get("stale")?,
        get("outcome_unknown")?,
        get("needs_review")?,
    );
    let mut finding = if count > 0 {
        let mut f = Finding::new(
            Status::Fail,
            format!(
                "{count} payments have had an open intent for over {} s ({unknown} with the provider's outcome unknown, {review} flagged for review)",
                horizon.as_secs()
            ),
        );
        f.examples = bounded(
            "listing open intents",
            sqlx::query_scalar(&format!(
                "SELECT json_build_object('payment_id', payment_id, 'status', status,
                        'provider', provider, 'provider_outcome', provider_outcome,
                        'pending_action', pending_action, 'needs_review', needs_review,
                        'refund_pending_amount', refund_pending_amount::text,
                        'orphans_open', orphans_open, 'updated_at', updated_at)::text
                   {open} AND {old} ORDER BY updated_at LIMIT {examples_max}"
            ))
            .bind(seconds)
            .fetch_all(pool),
        )
        .await?;
        f
    } else {
        Finding::new(
            Status::Pass,
            format!(
                "no payment has had an open intent for over {} s ({} younger ones open)",
                horizon.as_secs(),
                open_now - count
            ),
        )
    };
    finding.count("stale", count);
    finding.count("stale_outcome_unknown", unknown);
    finding.count("stale_needs_review", review);
    finding.count("open", open_now);
    Ok(finding)
}
