//! Each provider's recent calls as this process saw them, for the operators' dashboard:
//! success rate and mean response time over the last calls, and when the last success and
//! the last failure happened. A fixed window: memory does not grow with traffic.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};

/// Calls kept for the rate and the mean.
const WINDOW_LEN: usize = 200;

#[derive(Debug, Clone, serde::Serialize, PartialEq)]
pub struct CallSummary {
    /// Calls in the window (at most `WINDOW_LEN`).
    pub calls: usize,
    /// Share of calls answered (`ok` or a refusal: the provider worked); `None` before any.
    pub success_rate: Option<f64>,
    pub mean_response_ms: Option<f64>,
    pub last_success_at: Option<DateTime<Utc>>,
    pub last_failure_at: Option<DateTime<Utc>>,
    /// `not_sent` or `unknown`.
    pub last_failure_outcome: Option<&'static str>,
}

#[derive(Debug, Default)]
struct Inner {
    /// (answered, response time), newest last.
    recent: VecDeque<(bool, Duration)>,
    last_success_at: Option<DateTime<Utc>>,
    last_failure: Option<(DateTime<Utc>, &'static str)>,
}

#[derive(Debug, Default)]
pub struct CallStats {
    inner: Mutex<Inner>,
}

impl CallStats {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Counters only: a panic elsewhere cannot leave them unusable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `failure`: the call's outcome when the provider did not answer.
    pub fn record(&self, failure: Option<&'static str>, elapsed: Duration, at: DateTime<Utc>) {
        let mut inner = self.lock();
        if inner.recent.len() == WINDOW_LEN {
            inner.recent.pop_front();
        }
        inner.recent.push_back((failure.is_none(), elapsed));
        match failure {
            None => inner.last_success_at = Some(at),
            Some(outcome) => inner.last_failure = Some((at, outcome)),
        }
        debug_assert!(inner.recent.len() <= WINDOW_LEN);
    }

    pub fn summary(&self) -> CallSummary {
        let inner = self.lock();
        let calls = inner.recent.len();
        let (answered, total) = inner.recent.iter().fold(
            (0usize, Duration::ZERO),
            |(ok, sum), (answered, elapsed)| (ok + usize::from(*answered), sum + *elapsed),
        );
        CallSummary {
            calls,
            success_rate: (calls > 0).then(|| answered as f64 / calls as f64),
            mean_response_ms: (calls > 0).then(|| total.as_secs_f64() * 1000.0 / calls as f64),
            last_success_at: inner.last_success_at,
            last_failure_at: inner.last_failure.map(|(at, _)| at),
            last_failure_outcome: inner.last_failure.map(|(_, outcome)| outcome),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_stats_claim_nothing() {
        let summary = CallStats::default().summary();
        assert_eq!(summary.calls, 0);
        assert_eq!(summary.success_rate, None);
        assert_eq!(summary.mean_response_ms, None);
        assert_eq!(summary.last_success_at, None);
    }

    #[test]
    fn rate_mean_and_last_times_over_the_window() {
        let stats = CallStats::default();
        let t0 = Utc::now();
        let t1 = t0 + chrono::Duration::seconds(1);
        stats.record(None, Duration::from_millis(10), t0);
        stats.record(None, Duration::from_millis(30), t0);
        stats.record(Some("unknown"), Duration::from_millis(50), t1);
        stats.record(None, Duration::from_millis(10), t0);
        let summary = stats.summary();
        assert_eq!(summary.calls, 4);
        assert_eq!(summary.success_rate, Some(0.75));
        assert_eq!(summary.mean_response_ms, Some(25.0));
        assert_eq!(summary.last_failure_at, Some(t1));
        assert_eq!(summary.last_failure_outcome, Some("unknown"));
        assert_eq!(summary.last_success_at, Some(t0));
    }

    #[test]
    fn the_window_forgets_the_oldest_calls() {
        let stats = CallStats::default();
        let t = Utc::now();
        for _ in 0..WINDOW_LEN {
            stats.record(Some("not_sent"), Duration::from_millis(1), t);
        }
        for _ in 0..WINDOW_LEN / 2 {
            stats.record(None, Duration::from_millis(1), t);
        }
        let summary = stats.summary();
        assert_eq!(summary.calls, WINDOW_LEN);
        assert_eq!(summary.success_rate, Some(0.5));
    }
}
