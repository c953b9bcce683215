//! The pure payment model. Nothing in this crate does I/O: time, ids and provider answers
//! arrive inside commands, so every decision here is deterministic and testable.

pub mod card_number;
pub mod customer;
pub mod email;
pub mod ids;
pub mod money;
pub mod payer;
pub mod payment;
pub mod provider_name;
pub mod return_url;
mod text;

pub use customer::{Customer, CustomerCommand, CustomerError, CustomerEvent, MethodDisplay};
pub use email::{Email, EmailError};
pub use ids::{
    AttemptId, CaptureId, CustomerId, IdempotencyKey, MerchantId, PaymentId, Reference, RefundId,
    SavedMethodId,
};
pub use money::{Currency, Money, MoneyError};
pub use payer::{
    DeviceSessionId, DeviceSessionIdError, DocumentNumber, DocumentNumberError, FullName,
    FullNameError, Phone, PhoneError, UserAgent, UserAgentError,
};
pub use payment::{
    CaptureMode, CaptureModeError, CardToken, MethodDetail, Payment, PaymentCommand,
    PaymentDescription, PaymentDescriptionError, PaymentError, PaymentEvent, PaymentMethodType,
    PaymentStatus, PrintableTextError, ProviderFailureKind, PseUserType, PseUserTypeError,
    RefundReason, RefundReasonError, UnknownMethodType,
};
pub use provider_name::{ProviderName, ProviderNameError};
pub use return_url::{ReturnUrl, ReturnUrlError};
