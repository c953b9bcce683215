use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

use crate::customer::MethodDisplay;
use crate::ids::{CustomerId, MerchantId, Reference, SavedMethodId};
use crate::payment::PaymentMethodType;

/// Schema version of every customer event. A change of shape is an upcaster, never a rewrite.
pub const EVENT_VERSION: &str = "1.0";

/// A customer's history. Immutable once stored; serialized as `{"CustomerCreated": {...}}`.
/// No event carries personal data or a provider's source id (see the module's comment).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CustomerEvent {
    CustomerCreated {
        customer_id: CustomerId,
        merchant_id: MerchantId,
        reference: Reference,
        at: DateTime<Utc>,
    },
    /// A method the provider keeps for this customer (its source id is in the vault).
    PaymentMethodSaved {
        payment_method_id: SavedMethodId,
        provider: String,
        method_type: PaymentMethodType,
        display: MethodDisplay,
        /// The provider charges it only once the customer has verified it (3-D Secure at
        /// Maya). Absent, as in every event before verifying providers: chargeable at once.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        awaiting_verification: bool,
        at: DateTime<Utc>,
    },
    /// The provider says the customer verified the method: it can be charged from now on.
    PaymentMethodVerified {
        payment_method_id: SavedMethodId,
        at: DateTime<Utc>,
    },
    /// The provider says the verification failed or expired: the method is detached and can
    /// never be charged, as if removed.
    PaymentMethodVerificationFailed {
        payment_method_id: SavedMethodId,
        at: DateTime<Utc>,
    },
    /// Detached at the provider: the source can no longer be charged. Removing the default
    /// method leaves the customer without one.
    PaymentMethodRemoved {
        payment_method_id: SavedMethodId,
        at: DateTime<Utc>,
    },
    DefaultPaymentMethodSet {
        payment_method_id: SavedMethodId,
        at: DateTime<Utc>,
    },
}

impl CustomerEvent {
    pub fn name(&self) -> &'static str {
        match self {
            CustomerEvent::CustomerCreated { .. } => "CustomerCreated",
            CustomerEvent::PaymentMethodSaved { .. } => "PaymentMethodSaved",
            CustomerEvent::PaymentMethodVerified { .. } => "PaymentMethodVerified",
            CustomerEvent::PaymentMethodVerificationFailed { .. } => {
                "PaymentMethodVerificationFailed"
            }
            CustomerEvent::PaymentMethodRemoved { .. } => "PaymentMethodRemoved",
            CustomerEvent::DefaultPaymentMethodSet { .. } => "DefaultPaymentMethodSet",
        }
    }

    pub fn at(&self) -> DateTime<Utc> {
        match self {
            CustomerEvent::CustomerCreated { at, .. }
            | CustomerEvent::PaymentMethodSaved { at, .. }
            | CustomerEvent::PaymentMethodVerified { at, .. }
            | CustomerEvent::PaymentMethodVerificationFailed { at, .. }
            | CustomerEvent::PaymentMethodRemoved { at, .. }
            | CustomerEvent::DefaultPaymentMethodSet { at, .. } => *at,
        }
    }
}

impl DomainEvent for CustomerEvent {
    fn event_type(&self) -> String {
        self.name().to_owned()
    }

    fn event_version(&self) -> String {
        EVENT_VERSION.to_owned()
    }
}
