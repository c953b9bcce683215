//! What the write side counts for Prometheus: commands by kind, source and outcome; provider
//! calls by provider, operation and outcome; payments decided by provider, method and
//! outcome with the time they took, and declines for fraud. Each is counted by the process that did the work, once
//! (an append that conflicted and was retried counts once, with its final outcome).

use std::time::Duration;

use chrono::Utc;
use domain::{Payment, PaymentStatus};

use super::{CommandError, Executed};
use crate::router::RoutedProvider;

pub(super) fn command(
    name: &'static str,
    source: &'static str,
    result: &Result<Executed, CommandError>,
) {
    let outcome = match result {
        Ok(executed) if executed.appended > 0 => "appended",
        Ok(_) => "unchanged",
        Err(CommandError::Rejected(_)) => "rejected",
        Err(CommandError::Conflict) => "conflict",
        Err(_) => "error",
    };
    command_outcome(name, source, outcome);
}

/// Counts one command, a payment's or a customer's, by kind, source and outcome.
pub(crate) fn command_outcome(name: &'static str, source: &'static str, outcome: &'static str) {
    metrics::counter!(
        "payledger_commands_total",
        "command" => name, "source" => source, "outcome" => outcome
    )
    .increment(1);
}

/// A payment leaving `PENDING` (or skipping it) for the provider's answer about the money.
pub(super) fn decision(before: PaymentStatus, after: &Payment) {
    if !matches!(before, PaymentStatus::New | PaymentStatus::Pending) {
        return;
    }
    let outcome = match after.status {
        PaymentStatus::Authorized => "authorized",
        PaymentStatus::Approved => "approved",
        PaymentStatus::Declined => "declined",
        PaymentStatus::Failed => "failed",
        PaymentStatus::Expired => "expired",
        _ => return,
    };
    let provider = after.provider.clone();
    let method = after.payment_method.map_or("unknown", |m| m.as_str());
    metrics::counter!(
        "payledger_payments_decided_total",
        "provider" => provider.clone(), "method" => method, "outcome" => outcome
    )
    .increment(1);
    if outcome == "declined" && after.failure_reason.as_deref().is_some_and(names_fraud) {
        let provider = provider.clone();
        metrics::counter!("payledger_payments_declined_for_fraud_total", "provider" => provider)
            .increment(1);
    }
    if let Some(created_at) = after.created_at {
        let seconds = (Utc::now() - created_at).num_milliseconds().max(0) as f64 / 1000.0;
        metrics::histogram!(
            "payledger_payment_decision_seconds",
            "provider" => provider, "outcome" => outcome
        )
        .record(seconds);
    }
}

/// Providers' anti-fraud verdicts arrive as decline reasons (PayU's `ANTIFRAUD_REJECTED`,
/// Wompi's and the sandbox's free text): payledger scores no fraud itself.
fn names_fraud(reason: &str) -> bool {
    reason.to_ascii_lowercase().contains("fraud")
}

pub(super) fn provider_call(
    routed: &RoutedProvider,
    operation: &'static str,
    outcome: &'static str,
    elapsed: Duration,
) {
    let provider = routed.provider.name();
    let failure = matches!(outcome, "not_sent" | "unknown").then_some(outcome);
    routed.calls.record(failure, elapsed, Utc::now());
    metrics::counter!(
        "payledger_provider_calls_total",
        "provider" => provider, "operation" => operation, "outcome" => outcome
    )
    .increment(1);
    metrics::histogram!(
        "payledger_provider_call_duration_seconds",
        "provider" => provider, "operation" => operation
    )
    .record(elapsed.as_secs_f64());
}

#[cfg(test)]
mod tests {
    use super::names_fraud;

    #[test]
    fn fraud_declines_are_told_from_the_others_by_their_reason() {
        assert!(names_fraud("ANTIFRAUD_REJECTED"));
        assert!(names_fraud("fraud_suspected"));
        assert!(names_fraud("Transaction rejected by Fraud screening"));
        assert!(!names_fraud("insufficient_funds"));
        assert!(!names_fraud("card_declined"));
    }
}
