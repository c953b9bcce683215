//! The customer service: customers, the payment methods saved for them at providers, and
//! their default method. A save or a removal calls the provider first (both are idempotent
//! there: a save is keyed by our method id, a detach of a detached source succeeds) and
//! appends after, so a retry after any failure converges; no money moves in either.

mod vault;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use cqrs_es::{AggregateError, EventStore};
use domain::{
    Customer, CustomerCommand, CustomerError, CustomerId, Email, IdempotencyKey, MerchantId,
    PaymentMethodType, Reference, SavedMethodId,
};
use secrecy::{ExposeSecret, SecretString};
use sqlx::PgPool;

use crate::payments::bounded;
use crate::relay_waker::RelayWaker;
use crate::router::{RoutedProvider, Router};
use crate::stripes::Stripes;
use connectors::{PaymentMethodDetails, ProviderError, SaveMethod, SourceState};
use eventstore::repository::{customer_store, CustomerStore};

const CONFLICT_RETRY_MAX: u32 = 8;
const STRIPE_COUNT: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum CustomerCommandError {
    #[error(transparent)]
    Rejected(#[from] CustomerError),
    #[error("the customer is being changed concurrently; retry")]
    Conflict,
    #[error("the provider did not save or detach the method: {0}")]
    Provider(ProviderError),
    #[error("{provider} does not keep {method} payment methods")]
    Unsupported {
        provider: String,
        method: &'static str,
    },
    #[error("provider `{0}` is not configured")]
    UnknownProvider(String),
    #[error("event store unavailable")]
    Store(String),
}

impl From<sqlx::Error> for CustomerCommandError {
    fn from(error: sqlx::Error) -> Self {
        CustomerCommandError::Store(error.to_string())
    }
}

fn store_error(error: AggregateError<CustomerError>) -> CustomerCommandError {
    match error {
        AggregateError::UserError(e) => CustomerCommandError::Rejected(e),
        AggregateError::AggregateConflict => CustomerCommandError::Conflict,
        other => CustomerCommandError::Store(other.to_string()),
    }
}

/// A customer as their stream says, with its version.
#[derive(Debug, Clone)]
pub struct CustomerState {
    pub customer: Customer,
    pub version: i64,
}

impl CustomerState {
    pub fn id(&self) -> Result<CustomerId, CustomerCommandError> {
        self.customer
            .id
            .ok_or(CustomerCommandError::Rejected(CustomerError::NotFound))
    }
}

/// A `POST /v1/customers/{id}/payment-methods`, parsed.
pub struct SaveRequest {
    pub idempotency_key: IdempotencyKey,
    pub provider: String,
    /// What to save: a card token of the provider's own tokenization, or a wallet.
    pub method: PaymentMethodDetails,
    pub acceptance_token: Option<SecretString>,
    /// Where a provider that verifies saved cards sends the customer back.
    pub return_url: Option<String>,
}

/// A saved method after a save or a sync.
#[derive(Debug, Clone)]
pub struct MethodOutcome {
    pub state: CustomerState,
    pub method_id: SavedMethodId,
    /// Where the customer must verify the method before the provider charges it.
    pub verification_url: Option<String>,
}

/// What a one-click payment charges: a saved method's provider and source.
#[derive(Debug, Clone)]
pub struct SavedCharge {
    pub payment_method_id: SavedMethodId,
    pub provider: String,
    pub method_type: PaymentMethodType,
    pub source_id: SecretString,
    pub email: Option<String>,
}

pub struct CustomerService {
    store: CustomerStore,
    pool: PgPool,
    router: Arc<Router>,
    relay_waker: RelayWaker,
    stripes: Stripes,
    /// The most a save or a detach waits on its provider.
    provider_budget: Duration,
}

impl CustomerService {
    pub fn new(
        pool: PgPool,
        router: Arc<Router>,
        relay_waker: RelayWaker,
        provider_budget: Duration,
    ) -> Self {
        Self {
            store: customer_store(pool.clone()),
            pool,
            router,
            relay_waker,
            stripes: Stripes::new(STRIPE_COUNT),
            provider_budget,
        }
    }

    /// The customer as their stream says now; `NotFound` for none or, with a merchant scope,
    /// another merchant's.
    pub async fn load(
        &self,
        id: CustomerId,
        scope: Option<&MerchantId>,
    ) -> Result<CustomerState, CustomerCommandError> {
        let context = self
            .store
            .load_aggregate(&id.to_string())
            .await
            .map_err(store_error)?;
        let customer = context.aggregate;
        let visible = customer.exists()
            && scope.is_none_or(|merchant| customer.merchant_id.as_ref() == Some(merchant));
        if !visible {
            return Err(CustomerError::NotFound.into());
        }
        Ok(CustomerState {
            customer,
            version: context.current_sequence as i64,
        })
    }

    /// The customer's email, if one is kept.
    pub async fn email(&self, id: CustomerId) -> Result<Option<String>, CustomerCommandError> {
        Ok(vault::email(&self.pool, id).await?)
    }

    /// Creates the merchant's customer with this reference. The same reference again with
    /// the same email answers the same customer (`created: false`); with another email it
    /// is refused.
    #[tracing::instrument(skip(self, email), fields(customer_id))]
    pub async fn create(
        &self,
        merchant: &MerchantId,
        reference: Reference,
        email: Option<Email>,
    ) -> Result<(CustomerState, bool), CustomerCommandError> {
        let id = CustomerId::derive(merchant, &reference);
        tracing::Span::current().record("customer_id", tracing::field::display(id));
        let _serial = self.stripes.lock(id.as_uuid()).await;
        let now = Utc::now();
        let email = email.map(|e| e.to_string());
        vault::remember_contact(&self.pool, id, merchant, email.as_deref(), now).await?;
        if vault::email(&self.pool, id).await? != email {
            return Err(CustomerError::AlreadyExists.into());
        }
        let command = CustomerCommand::Create {
            customer_id: id,
            merchant_id: merchant.clone(),
            reference,
            at: now,
        };
        let (state, appended) = self.execute(id, command).await?;
        Ok((state, appended > 0))
    }

    /// Saves a method at `request.provider` and records it. A retry with the same
    /// `Idempotency-Key` answers the method first saved.
    #[tracing::instrument(skip(self, request), fields(provider = %request.provider, method = request.method.kind().as_str()))]
    pub async fn save_method(
        &self,
        id: CustomerId,
        scope: Option<&MerchantId>,
        request: SaveRequest,
    ) -> Result<MethodOutcome, CustomerCommandError> {
        let _serial = self.stripes.lock(id.as_uuid()).await;
        let current = self.load(id, scope).await?;
        let method_id = SavedMethodId::derive(id, &request.idempotency_key);
        let kind = request.method.kind();
        if let Some(saved) = current.customer.methods.get(&method_id) {
            if saved.provider != request.provider || saved.method_type != kind {
                return Err(CustomerError::MethodMismatch.into());
            }
            return self.outcome(current, method_id).await;
        }
        let routed = self.routed(&request.provider)?;
        if !routed.provider.saved_method_types().contains(&kind) {
            return Err(CustomerCommandError::Unsupported {
                provider: request.provider,
                method: kind.as_str(),
            });
        }
        // Checked before the provider is asked: a customer at the bound saves nothing more.
        if current.customer.active_methods().count() >= domain::customer::SAVED_METHODS_MAX {
            return Err(CustomerError::TooManyMethods.into());
        }
        let save = SaveMethod {
            payment_method_id: method_id,
            customer_id: id,
            customer_email: self.email(id).await?.map(SecretString::from),
            method: request.method,
            acceptance_token: request.acceptance_token,
            return_url: request.return_url,
        };
        let deadline = Instant::now() + self.provider_budget;
        let source = bounded(
            routed,
            "save_method",
            deadline,
            routed.provider.save_method(&save),
        )
        .await
        .map_err(CustomerCommandError::Provider)?;
        let now = Utc::now();
        vault::keep_source(
            &self.pool,
            method_id,
            id,
            routed.provider.name(),
            &source,
            now,
        )
        .await?;
        let command = CustomerCommand::SaveMethod {
            payment_method_id: method_id,
            provider: routed.provider.name().to_owned(),
            method_type: kind,
            display: source.display,
            awaiting_verification: source.verification_url.is_some(),
            at: now,
        };
        let (state, _) = self.execute(id, command).await?;
        self.outcome(state, method_id).await
    }

    /// Asks the provider whether the customer has verified a method that awaited it, and
    /// records the answer: a verified method can be charged from now on; a failed one is
    /// detached and removed. A method that awaits nothing is answered as it is.
    #[tracing::instrument(skip(self))]
    pub async fn sync_method(
        &self,
        id: CustomerId,
        scope: Option<&MerchantId>,
        method_id: SavedMethodId,
    ) -> Result<MethodOutcome, CustomerCommandError> {
        let _serial = self.stripes.lock(id.as_uuid()).await;
        let current = self.load(id, scope).await?;
        let method = current.customer.active_method(method_id)?.clone();
        if !method.awaiting_verification {
            return self.outcome(current, method_id).await;
        }
        let source = vault::source(&self.pool, method_id, id)
            .await?
            .ok_or(CustomerError::MethodRemoved)?;
        let routed = self.routed(&method.provider)?;
        let deadline = Instant::now() + self.provider_budget;
        let source_state = bounded(
            routed,
            "source_state",
            deadline,
            routed.provider.source_state(source.expose_secret()),
        )
        .await
        .map_err(CustomerCommandError::Provider)?;
        let verified = match source_state {
            SourceState::AwaitingVerification => return self.outcome(current, method_id).await,
            SourceState::Chargeable => true,
            SourceState::VerificationFailed => {
                self.detach(routed, &source).await?;
                false
            }
        };
        let command = CustomerCommand::ConcludeVerification {
            payment_method_id: method_id,
            verified,
            at: Utc::now(),
        };
        let (state, appended) = self.execute(id, command).await?;
        if appended > 0 {
            // The card's verification by its holder at the provider (Maya Vault's 3-D Secure).
            metrics::counter!(
                "payledger_card_verifications_total",
                "provider" => routed.provider.name(),
                "outcome" => if verified { "verified" } else { "failed" }
            )
            .increment(1);
        }
        if verified {
            vault::verified(&self.pool, method_id).await?;
        } else {
            vault::forget_source(&self.pool, method_id).await?;
        }
        self.outcome(state, method_id).await
    }

    /// The method as `state` has it, with its verification page while it awaits one.
    async fn outcome(
        &self,
        state: CustomerState,
        method_id: SavedMethodId,
    ) -> Result<MethodOutcome, CustomerCommandError> {
        let awaiting = state
            .customer
            .methods
            .get(&method_id)
            .is_some_and(|m| m.awaiting_verification && !m.removed);
        let verification_url = if awaiting {
            vault::verification_url(&self.pool, method_id).await?
        } else {
            None
        };
        Ok(MethodOutcome {
            state,
            method_id,
            verification_url,
        })
    }

    fn routed(&self, provider: &str) -> Result<&RoutedProvider, CustomerCommandError> {
        self.router
            .get(provider)
            .ok_or_else(|| CustomerCommandError::UnknownProvider(provider.to_owned()))
    }

    /// Detaches a source at its provider, within the provider budget.
    async fn detach(
        &self,
        routed: &RoutedProvider,
        source: &SecretString,
    ) -> Result<(), CustomerCommandError> {
        let deadline = Instant::now() + self.provider_budget;
        bounded(
            routed,
            "remove_method",
            deadline,
            routed.provider.remove_method(source.expose_secret()),
        )
        .await
        .map_err(CustomerCommandError::Provider)
    }

    /// Detaches the method at its provider, then records its removal and forgets its source.
    #[tracing::instrument(skip(self))]
    pub async fn remove_method(
        &self,
        id: CustomerId,
        scope: Option<&MerchantId>,
        method_id: SavedMethodId,
    ) -> Result<CustomerState, CustomerCommandError> {
        let _serial = self.stripes.lock(id.as_uuid()).await;
        let current = self.load(id, scope).await?;
        let method = match current.customer.active_method(method_id) {
            Err(CustomerError::MethodRemoved) => return Ok(current),
            other => other?.clone(),
        };
        // No source kept: an earlier removal detached it and forgot it before its event.
        if let Some(source) = vault::source(&self.pool, method_id, id).await? {
            self.detach(self.routed(&method.provider)?, &source).await?;
        }
        let command = CustomerCommand::RemoveMethod {
            payment_method_id: method_id,
            at: Utc::now(),
        };
        let (state, _) = self.execute(id, command).await?;
        vault::forget_source(&self.pool, method_id).await?;
        Ok(state)
    }

    #[tracing::instrument(skip(self))]
    pub async fn set_default(
        &self,
        id: CustomerId,
        scope: Option<&MerchantId>,
        method_id: SavedMethodId,
    ) -> Result<CustomerState, CustomerCommandError> {
        let _serial = self.stripes.lock(id.as_uuid()).await;
        self.load(id, scope).await?;
        let command = CustomerCommand::SetDefault {
            payment_method_id: method_id,
            at: Utc::now(),
        };
        Ok(self.execute(id, command).await?.0)
    }

    /// What a payment of `merchant`'s customer charges: the saved method named (its customer
    /// found from it when not given), or else the customer's default. `NoSuchMethod` when
    /// there is neither.
    pub async fn charge_of(
        &self,
        merchant: &MerchantId,
        customer: Option<CustomerId>,
        method_id: Option<SavedMethodId>,
    ) -> Result<SavedCharge, CustomerCommandError> {
        let id = match (customer, method_id) {
            (Some(id), _) => id,
            (None, Some(method)) => vault::owner(&self.pool, method)
                .await?
                .ok_or(CustomerError::NoSuchMethod)?,
            (None, None) => return Err(CustomerError::NoSuchMethod.into()),
        };
        let mut state = self.load(id, Some(merchant)).await?;
        let method_id = method_id
            .or(state.customer.default_method)
            .ok_or(CustomerError::NoSuchMethod)?;
        if state
            .customer
            .active_method(method_id)?
            .awaiting_verification
        {
            // The customer may have verified it since: the provider knows, not the stream.
            state = self.sync_method(id, Some(merchant), method_id).await?.state;
        }
        let method = state.customer.active_method(method_id)?;
        if method.awaiting_verification {
            return Err(CustomerError::AwaitingVerification.into());
        }
        let source_id = vault::source(&self.pool, method_id, id)
            .await?
            .ok_or(CustomerError::MethodRemoved)?;
        Ok(SavedCharge {
            payment_method_id: method_id,
            provider: method.provider.clone(),
            method_type: method.method_type,
            source_id,
            email: vault::email(&self.pool, id).await?,
        })
    }

    /// Decides and appends, retrying a bounded number of times when another writer (another
    /// node) appended first. Returns the state after and the events appended.
    /// Decides and appends `command`, counted in `payledger_commands_total` like a payment's.
    async fn execute(
        &self,
        id: CustomerId,
        command: CustomerCommand,
    ) -> Result<(CustomerState, usize), CustomerCommandError> {
        let name = command.name();
        let result = self.append(id, command).await;
        let outcome = match &result {
            Ok((_, appended)) if *appended > 0 => "appended",
            Ok(_) => "unchanged",
            Err(CustomerCommandError::Rejected(_)) => "rejected",
            Err(CustomerCommandError::Conflict) => "conflict",
            Err(_) => "error",
        };
        crate::payments::measure::command_outcome(name, "api", outcome);
        result
    }

    async fn append(
        &self,
        id: CustomerId,
        command: CustomerCommand,
    ) -> Result<(CustomerState, usize), CustomerCommandError> {
        let aggregate_id = id.to_string();
        for _ in 0..=CONFLICT_RETRY_MAX {
            let context = self
                .store
                .load_aggregate(&aggregate_id)
                .await
                .map_err(store_error)?;
            let version = context.current_sequence as i64;
            let events = context.aggregate.decide(command.clone())?;
            let mut after = context.aggregate.clone();
            for event in &events {
                cqrs_es::Aggregate::apply(&mut after, event.clone());
            }
            let appended = events.len();
            if appended == 0 {
                return Ok((
                    CustomerState {
                        customer: after,
                        version,
                    },
                    0,
                ));
            }
            match self.store.commit(events, context, metadata()).await {
                Ok(_) => {
                    self.relay_waker.wake();
                    return Ok((
                        CustomerState {
                            customer: after,
                            version: version + appended as i64,
                        },
                        appended,
                    ));
                }
                Err(AggregateError::AggregateConflict) => {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err(other) => return Err(store_error(other)),
            }
        }
        Err(CustomerCommandError::Conflict)
    }
}

fn metadata() -> HashMap<String, String> {
    crate::payments::metadata("api")
}
