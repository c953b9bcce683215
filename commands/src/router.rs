//! Picks the provider for a payment: the merchant's preference first, then the providers that
//! take the method in the currency, skipping those whose breaker is open, in configured
//! priority. The breakers learn from every call's outcome.

use std::sync::Arc;
use std::time::Instant;

use domain::{CaptureMode, Currency, PaymentMethodType};

use crate::breaker::{Breaker, BreakerConfig, BreakerState};
use crate::call_stats::{CallStats, CallSummary};
use connectors::PaymentProvider;

pub struct RoutedProvider {
    pub provider: Arc<dyn PaymentProvider>,
    /// Lower goes first.
    pub priority: u32,
    pub breaker: Breaker,
    pub calls: CallStats,
}

pub struct Router {
    providers: Vec<RoutedProvider>,
}

/// One provider's place in the routing picture, for `/health/providers`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RouteStatus {
    pub provider: &'static str,
    pub priority: u32,
    pub breaker: BreakerState,
    /// Whether the breaker lets a call through now (closed, or open past its cool-down).
    pub breaker_passes: bool,
    pub recent_success_rate: Option<f64>,
    pub calls: CallSummary,
}

/// What a payment asks of a provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Need {
    pub method: PaymentMethodType,
    pub currency: Currency,
    pub capture: CaptureMode,
    /// The method is one the provider keeps for the customer (a provider may charge a saved
    /// card without taking cards at checkout).
    pub saved: bool,
}

fn takes(routed: &RoutedProvider, need: Need) -> bool {
    let method = if need.saved {
        routed.provider.supports_saved(need.method, need.currency)
    } else {
        routed.provider.supports(need.method, need.currency)
    };
    method && (need.capture == CaptureMode::Automatic || routed.provider.supports_manual_capture())
}

impl Router {
    /// `providers` in priority order (first = highest priority).
    pub fn new(providers: Vec<Arc<dyn PaymentProvider>>, breaker: BreakerConfig) -> Router {
        let providers = providers
            .into_iter()
            .enumerate()
            .map(|(i, provider)| RoutedProvider {
                provider,
                priority: i as u32,
                breaker: Breaker::new(breaker),
                calls: CallStats::default(),
            })
            .collect();
        Router { providers }
    }

    pub fn get(&self, name: &str) -> Option<&RoutedProvider> {
        self.providers.iter().find(|p| p.provider.name() == name)
    }

    pub fn all(&self) -> impl Iterator<Item = &RoutedProvider> {
        self.providers.iter()
    }

    /// Providers able to take `method` in `currency`, in the order to try them. Providers
    /// whose breaker is open are left out; the caller takes a half-open one's single trial
    /// (`breaker.allow`) only when it actually calls it.
    pub fn candidates(
        &self,
        preference: Option<&str>,
        need: Need,
        now: Instant,
    ) -> Vec<&RoutedProvider> {
        let mut able: Vec<&RoutedProvider> =
            self.providers.iter().filter(|p| takes(p, need)).collect();
        able.sort_by_key(|p| (Some(p.provider.name()) != preference, p.priority));
        able.into_iter()
            .filter(|p| p.breaker.available(now))
            .collect()
    }

    /// Whether any provider takes what `need` says at all (breakers aside).
    pub fn any_supports(&self, need: Need) -> bool {
        self.providers.iter().any(|p| takes(p, need))
    }

    pub fn status(&self) -> Vec<RouteStatus> {
        let now = Instant::now();
        self.providers
            .iter()
            .map(|p| RouteStatus {
                provider: p.provider.name(),
                priority: p.priority,
                breaker: p.breaker.state(),
                breaker_passes: p.breaker.available(now),
                recent_success_rate: p.breaker.success_rate(),
                calls: p.calls.summary(),
            })
            .collect()
    }
}
