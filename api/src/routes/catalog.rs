//! What a checkout may offer: payment methods per provider with fees, PSE banks, the public
//! configuration, and each provider's health. Provider answers are cached for a while, and a
//! provider that is down is marked unavailable instead of failing the call.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::{web, HttpResponse};
use chrono::Utc;
use commands::breaker::BreakerState;
use commands::payments::PaymentService;
use commands::router::RouteStatus;
use connectors::registry::Registry;
use connectors::{PaymentProvider, ProviderError, PseBank};
use domain::{Currency, Money, ProviderFailureKind};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use crate::problem::{FieldError, Problem};

/// How long a provider's health answer is trusted.
const HEALTH_TTL: Duration = Duration::from_secs(10);
/// How long one health call may take before the provider counts as unreachable.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(3);

/// When a provider last answered a health check, and what.
type HealthAnswer = (Instant, Result<(), ProviderError>);
/// When a provider's PSE banks were last asked for, and its list (`None`: the call failed).
type BanksAnswer = (Instant, Option<Vec<PseBank>>);
/// How long a provider's list of PSE banks is served without asking it again (the list is
/// public: anyone may ask, and each ask would be a call with the merchant's credentials).
const BANKS_TTL: Duration = Duration::from_secs(600);
/// How long a failed bank-list call is remembered before the provider is asked again.
const BANKS_FAILURE_TTL: Duration = Duration::from_secs(30);

/// What `/v1/config` and `/health/providers` show about each provider: its public settings
/// and configuration problems (names of settings, never values), and its cached health.
pub struct ProviderCatalog {
    connectors: Arc<Registry>,
    health: Mutex<BTreeMap<&'static str, HealthAnswer>>,
    /// Each provider's PSE banks (`None`: its last call failed), and when they were asked.
    banks: Mutex<BTreeMap<&'static str, BanksAnswer>>,
}

impl ProviderCatalog {
    pub fn new(connectors: Arc<Registry>) -> Self {
        Self {
            connectors,
            health: Mutex::new(BTreeMap::new()),
            banks: Mutex::new(BTreeMap::new()),
        }
    }

    /// The provider's PSE banks, from the cache while fresh. One call at a time: readers
    /// that arrive while it runs wait for its answer instead of calling too.
    async fn pse_banks(&self, provider: &Arc<dyn PaymentProvider>) -> Option<Vec<PseBank>> {
        let mut banks = self.banks.lock().await;
        if let Some((at, answer)) = banks.get(provider.name()) {
            let ttl = if answer.is_some() {
                BANKS_TTL
            } else {
                BANKS_FAILURE_TTL
            };
            if at.elapsed() < ttl {
                return answer.clone();
            }
        }
        let answer = match tokio::time::timeout(HEALTH_TIMEOUT, provider.pse_banks()).await {
            Ok(Ok(list)) => Some(list),
            _ => None,
        };
        banks.insert(provider.name(), (Instant::now(), answer.clone()));
        answer
    }

    /// The provider's health, from the cache while fresh.
    async fn health(&self, provider: &Arc<dyn PaymentProvider>) -> Result<(), ProviderError> {
        let name = provider.name();
        if let Some((at, answer)) = self.health.lock().await.get(name) {
            if at.elapsed() < HEALTH_TTL {
                return answer.clone();
            }
        }
        let answer = match tokio::time::timeout(HEALTH_TIMEOUT, provider.health()).await {
            Ok(answer) => answer,
            Err(_) => Err(ProviderError::timeout("health check timed out")),
        };
        self.health
            .lock()
            .await
            .insert(name, (Instant::now(), answer.clone()));
        answer
    }
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/payment-methods", web::get().to(payment_methods))
        .route("/v1/pse/banks", web::get().to(pse_banks))
        .route("/v1/config", web::get().to(public_config))
        .route("/health/providers", web::get().to(provider_health));
}

/// The operations below, for the contract (`crate::openapi`).
#[derive(utoipa::OpenApi)]
#[openapi(paths(payment_methods, pse_banks, public_config, provider_health))]
pub struct Api;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct MethodsQuery {
    #[param(schema_with = crate::openapi::currency_code)]
    currency: String,
    /// With an amount, each method's fee for it is quoted.
    #[serde(default)]
    #[param(schema_with = crate::openapi::money_text)]
    amount: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct MethodOffer {
    #[serde(rename = "type")]
    #[schema(schema_with = crate::openapi::payment_method_type)]
    kind: &'static str,
    /// The provider's fee for `amount`, when one was given and the schedule has it.
    fee: Option<FeeQuote>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct FeeQuote {
    #[schema(schema_with = crate::openapi::money_text)]
    amount: String,
    #[schema(schema_with = crate::openapi::currency_code)]
    currency: &'static str,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct ProviderOffer {
    provider: &'static str,
    /// Healthy and its breaker not open: the router would try it now.
    available: bool,
    methods: Vec<MethodOffer>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct MethodCatalog {
    #[schema(schema_with = crate::openapi::currency_code)]
    currency: &'static str,
    providers: Vec<ProviderOffer>,
}

/// The methods each configured provider takes in a currency, with fees for an amount.
#[utoipa::path(
    get,
    path = "/v1/payment-methods",
    operation_id = "listPaymentMethods",
    tag = "catalog",
    security(()),
    params(MethodsQuery),
    responses((status = 200, description = "Providers that take the currency, and their methods.", body = MethodCatalog)),
)]
#[tracing::instrument(skip_all)]
async fn payment_methods(
    service: web::Data<PaymentService>,
    catalog: web::Data<ProviderCatalog>,
    query: web::Query<MethodsQuery>,
) -> Result<HttpResponse, Problem> {
    let currency: Currency = query.currency.parse().map_err(|e: domain::MoneyError| {
        Problem::invalid(vec![FieldError {
            field: "currency".into(),
            message: e.to_string(),
        }])
    })?;
    let amount = match &query.amount {
        None => None,
        Some(text) => Some(Money::parse(text, currency).map_err(|e| {
            Problem::invalid(vec![FieldError {
                field: "amount".into(),
                message: e.to_string(),
            }])
        })?),
    };
    let mut providers = Vec::new();
    for routed in service.router().all() {
        let provider = &routed.provider;
        let methods: Vec<MethodOffer> = provider
            .payment_methods()
            .iter()
            .filter(|m| provider.supports(**m, currency))
            .map(|m| MethodOffer {
                kind: m.as_str(),
                fee: amount.and_then(|a| {
                    service
                        .fees()
                        .fee(provider.name(), *m, a, Utc::now())
                        .map(|f| FeeQuote {
                            amount: f.amount().to_string(),
                            currency: currency.code(),
                        })
                }),
            })
            .collect();
        if methods.is_empty() {
            continue;
        }
        let healthy = catalog.health(provider).await.is_ok();
        let available = healthy && routed.breaker.state() != BreakerState::Open;
        providers.push(ProviderOffer {
            provider: provider.name(),
            available,
            methods,
        });
    }
    Ok(HttpResponse::Ok().json(MethodCatalog {
        currency: currency.code(),
        providers,
    }))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct Bank {
    /// `financial_institution_code` of a PSE payment.
    code: String,
    name: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct BankList {
    provider: &'static str,
    /// Whether the provider answered (its list is cached for ten minutes).
    available: bool,
    banks: Vec<Bank>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct BankLists {
    providers: Vec<BankList>,
}

/// The banks PSE payments can go through, per provider that offers PSE.
#[utoipa::path(
    get,
    path = "/v1/pse/banks",
    operation_id = "listPseBanks",
    tag = "catalog",
    security(()),
    responses((status = 200, description = "Each PSE provider's banks.", body = BankLists)),
)]
#[tracing::instrument(skip_all)]
async fn pse_banks(
    service: web::Data<PaymentService>,
    catalog: web::Data<ProviderCatalog>,
) -> HttpResponse {
    let mut lists = Vec::new();
    for routed in service.router().all() {
        let provider = &routed.provider;
        if !provider.supports(domain::PaymentMethodType::Pse, Currency::COP) {
            continue;
        }
        let answer = catalog.pse_banks(provider).await;
        let (available, banks) = match answer {
            Some(banks) => (true, banks),
            None => (false, Vec::new()),
        };
        lists.push(BankList {
            provider: provider.name(),
            available,
            banks: banks
                .into_iter()
                .map(|PseBank { code, name }| Bank { code, name })
                .collect(),
        });
    }
    HttpResponse::Ok().json(BankLists { providers: lists })
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct PublicProvider {
    provider: &'static str,
    /// The provider's public key (Wompi's widget), never a secret.
    public_key: Option<String>,
    #[schema(schema_with = method_types)]
    methods: Vec<&'static str>,
    #[schema(schema_with = currency_codes)]
    currencies: Vec<&'static str>,
}

fn method_types() -> utoipa::openapi::schema::ArrayBuilder {
    utoipa::openapi::schema::ArrayBuilder::new().items(crate::openapi::payment_method_type())
}

fn currency_codes() -> utoipa::openapi::schema::ArrayBuilder {
    utoipa::openapi::schema::ArrayBuilder::new().items(crate::openapi::currency_code())
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct PublicConfig {
    providers: Vec<PublicProvider>,
}

/// Public keys and accepted methods only.
#[utoipa::path(
    get,
    path = "/v1/config",
    operation_id = "getPublicConfig",
    tag = "catalog",
    security(()),
    responses((status = 200, description = "Each provider's public settings.", body = PublicConfig)),
)]
#[tracing::instrument(skip_all)]
async fn public_config(
    service: web::Data<PaymentService>,
    catalog: web::Data<ProviderCatalog>,
) -> HttpResponse {
    let providers: Vec<_> = service
        .router()
        .all()
        .map(|routed| {
            let provider = &routed.provider;
            PublicProvider {
                provider: provider.name(),
                public_key: catalog
                    .connectors
                    .get(provider.name())
                    .and_then(|c| c.public_config().public_key),
                methods: provider
                    .payment_methods()
                    .iter()
                    .map(|m| m.as_str())
                    .collect(),
                currencies: provider.currencies().iter().map(|c| c.code()).collect(),
            }
        })
        .collect();
    HttpResponse::Ok().json(PublicConfig { providers })
}

/// One provider as the health checks see it: its cached health answer, configuration and
/// breaker, and this process's recent calls to it.
pub(crate) struct ProviderCheck {
    pub route: RouteStatus,
    pub reachable: bool,
    pub credentials_accepted: bool,
    pub problems: Vec<String>,
    pub detail: Option<String>,
}

impl ProviderCheck {
    pub fn ok(&self) -> bool {
        self.reachable && self.credentials_accepted && self.problems.is_empty()
    }
}

impl ProviderCatalog {
    pub(crate) async fn checks(&self, service: &PaymentService) -> Vec<ProviderCheck> {
        let mut checks = Vec::new();
        for (routed, route) in service.router().all().zip(service.router().status()) {
            let provider = &routed.provider;
            let answer = self.health(provider).await;
            checks.push(ProviderCheck {
                route,
                reachable: !matches!(&answer, Err(e) if e.kind != ProviderFailureKind::Rejected),
                credentials_accepted: answer.is_ok(),
                problems: self
                    .connectors
                    .get(provider.name())
                    .map(|c| c.problems(false))
                    .unwrap_or_default(),
                detail: answer.err().map(|e| e.to_string()),
            });
        }
        checks
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct ProviderHealth {
    provider: &'static str,
    reachable: bool,
    credentials_accepted: bool,
    configuration_complete: bool,
    /// The names of settings that are missing or wrong, never their values.
    configuration_problems: Vec<String>,
    #[schema(schema_with = breaker_state)]
    breaker: BreakerState,
    /// This node's recent calls to it that were answered, 0 to 1.
    recent_success_rate: Option<f64>,
    detail: Option<String>,
}

fn breaker_state() -> utoipa::openapi::schema::ObjectBuilder {
    // The names the breaker's own serialization writes.
    let names = [
        BreakerState::Closed,
        BreakerState::Open,
        BreakerState::HalfOpen,
    ]
    .map(|state| serde_json::to_value(state).map(|v| v.as_str().map(str::to_owned)));
    crate::openapi::one_of_texts(names.iter().flatten().flatten().map(String::as_str))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct ProvidersHealth {
    /// `ok`, or `degraded` when any provider is not.
    #[schema(schema_with = ok_or_degraded)]
    status: &'static str,
    providers: Vec<ProviderHealth>,
}

fn ok_or_degraded() -> utoipa::openapi::schema::ObjectBuilder {
    crate::openapi::one_of_texts(["ok", "degraded"])
}

/// Each provider's health check, configuration and breaker.
#[utoipa::path(
    get,
    path = "/health/providers",
    operation_id = "getProvidersHealth",
    tag = "health",
    security(()),
    responses(
        (status = 200, description = "Every provider is reachable, accepts its credentials and is fully configured.", body = ProvidersHealth),
        (status = 503, description = "At least one provider is not.", body = ProvidersHealth),
    ),
)]
#[tracing::instrument(skip_all)]
async fn provider_health(
    service: web::Data<PaymentService>,
    catalog: web::Data<ProviderCatalog>,
) -> HttpResponse {
    let checks = catalog.checks(&service).await;
    let all_ok = checks.iter().all(ProviderCheck::ok);
    let providers: Vec<_> = checks
        .into_iter()
        .map(|check| ProviderHealth {
            provider: check.route.provider,
            reachable: check.reachable,
            credentials_accepted: check.credentials_accepted,
            configuration_complete: check.problems.is_empty(),
            configuration_problems: check.problems,
            breaker: check.route.breaker,
            recent_success_rate: check.route.recent_success_rate,
            detail: check.detail,
        })
        .collect();
    let body = ProvidersHealth {
        status: if all_ok { "ok" } else { "degraded" },
        providers,
    };
    if all_ok {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}
