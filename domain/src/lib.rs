//! The pure payment model. Nothing in this crate does I/O: time, ids and provider answers
//! arrive inside commands, so every decision here is deterministic and testable.

pub mod email;
pub mod ids;
pub mod money;
pub mod payer;
pub mod payment;
pub mod provider_name;
pub mod return_url;
mod text;

pub use email::{Email, EmailError};
pub use ids::{AttemptId, CaptureId, IdempotencyKey, MerchantId, PaymentId, Reference, RefundId};
pub use money::{Currency, Money, MoneyError};
pub use payer::{
    DeviceSessionId, DeviceSessionIdError, DocumentNumber, DocumentNumberError, FullName,
    FullNameError, Phone, PhoneError, UserAgent, UserAgentError,
};
pub use payment::{
    CaptureMode, CaptureModeError, CardToken, MethodDetail, Payment, PaymentCommand, PaymentError,
    PaymentEvent, PaymentMethodType, PaymentStatus, PrintableTextError, ProviderFailureKind,
    PseUserType, PseUserTypeError, RefundReason, RefundReasonError, UnknownMethodType,
};
pub use provider_name::{ProviderName, ProviderNameError};
pub use return_url::{ReturnUrl, ReturnUrlError};
