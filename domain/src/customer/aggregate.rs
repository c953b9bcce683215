use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

use crate::customer::{CustomerEvent, MethodDisplay};
use crate::ids::{CustomerId, MerchantId, Reference, SavedMethodId};
use crate::payment::PaymentMethodType;

/// Saved methods a customer may hold at once: every one is a source a provider keeps.
pub const SAVED_METHODS_MAX: usize = 20;

#[derive(Debug, Clone)]
pub enum CustomerCommand {
    Create {
        customer_id: CustomerId,
        merchant_id: MerchantId,
        reference: Reference,
        at: DateTime<Utc>,
    },
    /// Records a method the provider has saved (the call happened before).
    SaveMethod {
        payment_method_id: SavedMethodId,
        provider: String,
        method_type: PaymentMethodType,
        display: MethodDisplay,
        /// The provider asked for the customer's verification before it charges the method.
        awaiting_verification: bool,
        at: DateTime<Utc>,
    },
    /// Records the outcome of a method's verification, as the provider tells it (a failed
    /// one has been detached there before).
    ConcludeVerification {
        payment_method_id: SavedMethodId,
        verified: bool,
        at: DateTime<Utc>,
    },
    /// Records that the provider has detached a method (the call happened before).
    RemoveMethod {
        payment_method_id: SavedMethodId,
        at: DateTime<Utc>,
    },
    SetDefault {
        payment_method_id: SavedMethodId,
        at: DateTime<Utc>,
    },
}

impl CustomerCommand {
    /// The command's name, as metrics count it.
    pub fn name(&self) -> &'static str {
        match self {
            CustomerCommand::Create { .. } => "CreateCustomer",
            CustomerCommand::SaveMethod { .. } => "SaveMethod",
            CustomerCommand::ConcludeVerification { .. } => "ConcludeVerification",
            CustomerCommand::RemoveMethod { .. } => "RemoveMethod",
            CustomerCommand::SetDefault { .. } => "SetDefault",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CustomerError {
    #[error("no such customer")]
    NotFound,
    #[error("a customer with this reference exists")]
    AlreadyExists,
    #[error("no such payment method for this customer")]
    NoSuchMethod,
    #[error("the payment method was removed")]
    MethodRemoved,
    #[error("this payment method id was used for a different method")]
    MethodMismatch,
    #[error("a customer keeps at most {SAVED_METHODS_MAX} saved payment methods")]
    TooManyMethods,
    #[error("the payment method awaits the customer's verification at its provider")]
    AwaitingVerification,
}

/// One saved method as the customer's stream tells it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedMethod {
    pub provider: String,
    pub method_type: PaymentMethodType,
    pub display: MethodDisplay,
    pub saved_at: DateTime<Utc>,
    pub removed: bool,
    /// Saved, but the provider charges it only after the customer's verification.
    #[serde(default)]
    pub awaiting_verification: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Customer {
    pub id: Option<CustomerId>,
    pub merchant_id: Option<MerchantId>,
    pub reference: Option<Reference>,
    pub created_at: Option<DateTime<Utc>>,
    pub methods: BTreeMap<SavedMethodId, SavedMethod>,
    pub default_method: Option<SavedMethodId>,
}

impl Customer {
    pub fn exists(&self) -> bool {
        self.id.is_some()
    }

    /// The method if it is saved and not removed.
    pub fn active_method(&self, id: SavedMethodId) -> Result<&SavedMethod, CustomerError> {
        match self.methods.get(&id) {
            None => Err(CustomerError::NoSuchMethod),
            Some(method) if method.removed => Err(CustomerError::MethodRemoved),
            Some(method) => Ok(method),
        }
    }

    /// Methods still saved, oldest first.
    pub fn active_methods(&self) -> impl Iterator<Item = (SavedMethodId, &SavedMethod)> {
        self.methods
            .iter()
            .filter(|(_, m)| !m.removed)
            .map(|(id, m)| (*id, m))
    }

    /// What `command` appends; empty when it is a repeat of what is already so.
    pub fn decide(&self, command: CustomerCommand) -> Result<Vec<CustomerEvent>, CustomerError> {
        if !self.exists() && !matches!(command, CustomerCommand::Create { .. }) {
            return Err(CustomerError::NotFound);
        }
        match command {
            CustomerCommand::Create {
                customer_id,
                merchant_id,
                reference,
                at,
            } => {
                if self.exists() {
                    // The id derives from (merchant, reference): an equal create is a retry.
                    return Ok(Vec::new());
                }
                Ok(vec![CustomerEvent::CustomerCreated {
                    customer_id,
                    merchant_id,
                    reference,
                    at,
                }])
            }
            CustomerCommand::SaveMethod {
                payment_method_id,
                provider,
                method_type,
                display,
                awaiting_verification,
                at,
            } => {
                if let Some(saved) = self.methods.get(&payment_method_id) {
                    // A retried save: the same method again is a no-op.
                    return if saved.provider == provider && saved.method_type == method_type {
                        Ok(Vec::new())
                    } else {
                        Err(CustomerError::MethodMismatch)
                    };
                }
                if self.active_methods().count() >= SAVED_METHODS_MAX {
                    return Err(CustomerError::TooManyMethods);
                }
                let mut events = vec![CustomerEvent::PaymentMethodSaved {
                    payment_method_id,
                    provider,
                    method_type,
                    display,
                    awaiting_verification,
                    at,
                }];
                // The first method a customer has becomes their default.
                if self.default_method.is_none() {
                    events.push(CustomerEvent::DefaultPaymentMethodSet {
                        payment_method_id,
                        at,
                    });
                }
                Ok(events)
            }
            CustomerCommand::ConcludeVerification {
                payment_method_id,
                verified,
                at,
            } => match self.active_method(payment_method_id) {
                // Concluded before (a failed verification removes the method).
                Err(CustomerError::MethodRemoved) => Ok(Vec::new()),
                Err(error) => Err(error),
                Ok(method) if !method.awaiting_verification => Ok(Vec::new()),
                Ok(_) if verified => Ok(vec![CustomerEvent::PaymentMethodVerified {
                    payment_method_id,
                    at,
                }]),
                Ok(_) => Ok(vec![CustomerEvent::PaymentMethodVerificationFailed {
                    payment_method_id,
                    at,
                }]),
            },
            CustomerCommand::RemoveMethod {
                payment_method_id,
                at,
            } => match self.active_method(payment_method_id) {
                Err(CustomerError::MethodRemoved) => Ok(Vec::new()),
                Err(error) => Err(error),
                Ok(_) => Ok(vec![CustomerEvent::PaymentMethodRemoved {
                    payment_method_id,
                    at,
                }]),
            },
            CustomerCommand::SetDefault {
                payment_method_id,
                at,
            } => {
                self.active_method(payment_method_id)?;
                if self.default_method == Some(payment_method_id) {
                    return Ok(Vec::new());
                }
                Ok(vec![CustomerEvent::DefaultPaymentMethodSet {
                    payment_method_id,
                    at,
                }])
            }
        }
    }
}

impl Aggregate for Customer {
    const TYPE: &'static str = "Customer";
    type Command = CustomerCommand;
    type Event = CustomerEvent;
    type Error = CustomerError;
    /// Provider calls happen in the command service, never inside the aggregate.
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        for event in self.decide(command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            CustomerEvent::CustomerCreated {
                customer_id,
                merchant_id,
                reference,
                at,
            } => {
                self.id = Some(customer_id);
                self.merchant_id = Some(merchant_id);
                self.reference = Some(reference);
                self.created_at = Some(at);
            }
            CustomerEvent::PaymentMethodSaved {
                payment_method_id,
                provider,
                method_type,
                display,
                awaiting_verification,
                at,
            } => {
                self.methods.insert(
                    payment_method_id,
                    SavedMethod {
                        provider,
                        method_type,
                        display,
                        saved_at: at,
                        removed: false,
                        awaiting_verification,
                    },
                );
            }
            CustomerEvent::PaymentMethodVerified {
                payment_method_id, ..
            } => {
                if let Some(method) = self.methods.get_mut(&payment_method_id) {
                    method.awaiting_verification = false;
                }
            }
            CustomerEvent::PaymentMethodVerificationFailed {
                payment_method_id, ..
            }
            | CustomerEvent::PaymentMethodRemoved {
                payment_method_id, ..
            } => {
                if let Some(method) = self.methods.get_mut(&payment_method_id) {
                    method.removed = true;
                }
                if self.default_method == Some(payment_method_id) {
                    self.default_method = None;
                }
            }
            CustomerEvent::DefaultPaymentMethodSet {
                payment_method_id, ..
            } => self.default_method = Some(payment_method_id),
        }
    }
}
