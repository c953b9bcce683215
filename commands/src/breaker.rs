//! A circuit breaker per provider, fed by the outcomes of recent calls: after
//! `failures_to_open` consecutive failures it opens and the router skips the provider; after
//! `cool_down` one trial call is let through (half-open); its success closes the breaker, its
//! failure opens it again. Time is passed in, so tests need no sleeping.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Outcomes kept for the recent success rate.
const WINDOW_LEN: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

#[derive(Debug, Clone, Copy)]
pub struct BreakerConfig {
    pub failures_to_open: u32,
    pub cool_down: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failures_to_open: 5,
            cool_down: Duration::from_secs(30),
        }
    }
}

#[derive(Debug)]
struct Inner {
    state: BreakerState,
    consecutive_failures: u32,
    opened_at: Option<Instant>,
    trial_in_flight: bool,
    recent: VecDeque<bool>,
}

#[derive(Debug)]
pub struct Breaker {
    config: BreakerConfig,
    inner: Mutex<Inner>,
}

impl Breaker {
    pub fn new(config: BreakerConfig) -> Self {
        assert!(config.failures_to_open > 0, "a breaker needs a threshold");
        Self {
            config,
            inner: Mutex::new(Inner {
                state: BreakerState::Closed,
                consecutive_failures: 0,
                opened_at: None,
                trial_in_flight: false,
                recent: VecDeque::with_capacity(WINDOW_LEN),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding this lock cannot leave the counters inconsistent enough to
        // matter: keep serving with them.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Would a call be let through now? Changes nothing: routing asks this of every
    /// candidate, and only the one actually called takes the half-open trial (`allow`).
    pub fn available(&self, now: Instant) -> bool {
        let inner = self.lock();
        match inner.state {
            BreakerState::Closed => true,
            BreakerState::Open => inner
                .opened_at
                .is_some_and(|at| now.saturating_duration_since(at) >= self.config.cool_down),
            BreakerState::HalfOpen => !inner.trial_in_flight,
        }
    }

    /// May a call go to this provider now? In half-open state only one trial at a time: this
    /// takes it.
    pub fn allow(&self, now: Instant) -> bool {
        let mut inner = self.lock();
        match inner.state {
            BreakerState::Closed => true,
            BreakerState::Open => {
                let cooled = inner
                    .opened_at
                    .is_some_and(|at| now.saturating_duration_since(at) >= self.config.cool_down);
                if cooled {
                    inner.state = BreakerState::HalfOpen;
                    inner.trial_in_flight = true;
                    true
                } else {
                    false
                }
            }
            BreakerState::HalfOpen => {
                if inner.trial_in_flight {
                    false
                } else {
                    inner.trial_in_flight = true;
                    true
                }
            }
        }
    }

    pub fn record(&self, success: bool, now: Instant) {
        let mut inner = self.lock();
        if inner.recent.len() == WINDOW_LEN {
            inner.recent.pop_front();
        }
        inner.recent.push_back(success);
        inner.trial_in_flight = false;
        if success {
            inner.consecutive_failures = 0;
            inner.state = BreakerState::Closed;
            inner.opened_at = None;
            return;
        }
        inner.consecutive_failures = inner.consecutive_failures.saturating_add(1);
        let reopen = inner.state == BreakerState::HalfOpen;
        if reopen || inner.consecutive_failures >= self.config.failures_to_open {
            inner.state = BreakerState::Open;
            inner.opened_at = Some(now);
        }
    }

    pub fn state(&self) -> BreakerState {
        self.lock().state
    }

    /// Share of successes among the last calls (`None` before any call).
    pub fn success_rate(&self) -> Option<f64> {
        let inner = self.lock();
        if inner.recent.is_empty() {
            return None;
        }
        let ok = inner.recent.iter().filter(|s| **s).count();
        Some(ok as f64 / inner.recent.len() as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> Breaker {
        Breaker::new(BreakerConfig {
            failures_to_open: 3,
            cool_down: Duration::from_secs(10),
        })
    }

    #[test]
    fn opens_after_the_configured_consecutive_failures() {
        let b = breaker();
        let t = Instant::now();
        b.record(false, t);
        b.record(false, t);
        assert!(b.allow(t));
        b.record(true, t); // a success resets the count
        b.record(false, t);
        b.record(false, t);
        assert_eq!(b.state(), BreakerState::Closed);
        b.record(false, t);
        assert_eq!(b.state(), BreakerState::Open);
        assert!(!b.allow(t + Duration::from_secs(9)));
    }

    #[test]
    fn half_opens_after_the_cool_down_and_closes_on_a_good_trial() {
        let b = breaker();
        let t = Instant::now();
        for _ in 0..3 {
            b.record(false, t);
        }
        let later = t + Duration::from_secs(10);
        assert!(
            b.available(later) && b.available(later),
            "asking takes nothing"
        );
        assert!(b.allow(later), "one trial after the cool-down");
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert!(!b.allow(later), "only one trial at a time");
        b.record(true, later);
        assert_eq!(b.state(), BreakerState::Closed);
        assert!(b.allow(later));
    }

    #[test]
    fn a_failed_trial_opens_it_again_for_a_full_cool_down() {
        let b = breaker();
        let t = Instant::now();
        for _ in 0..3 {
            b.record(false, t);
        }
        let trial = t + Duration::from_secs(10);
        assert!(b.allow(trial));
        b.record(false, trial);
        assert_eq!(b.state(), BreakerState::Open);
        assert!(!b.allow(trial + Duration::from_secs(9)));
        assert!(b.allow(trial + Duration::from_secs(10)));
    }

    #[test]
    fn success_rate_covers_the_recent_window_only() {
        let b = breaker();
        let t = Instant::now();
        assert_eq!(b.success_rate(), None);
        for _ in 0..WINDOW_LEN {
            b.record(false, t);
        }
        for _ in 0..WINDOW_LEN / 2 {
            b.record(true, t);
        }
        assert_eq!(b.success_rate(), Some(0.5));
    }
}
