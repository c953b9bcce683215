//! Maya's JSON as the emulator reads and writes it, field names as Maya's API reference
//! spells them (camelCase). Amounts are kept as raw JSON text so no float ever touches them.

use std::str::FromStr;

use domain::{Currency, Money, MoneyError};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// Payment statuses, as Maya names them.
pub mod status {
    pub const PAYMENT_SUCCESS: &str = "PAYMENT_SUCCESS";
    pub const PAYMENT_FAILED: &str = "PAYMENT_FAILED";
    pub const PAYMENT_EXPIRED: &str = "PAYMENT_EXPIRED";
    pub const PAYMENT_CANCELLED: &str = "PAYMENT_CANCELLED";
    pub const AUTHORIZED: &str = "AUTHORIZED";
    pub const CAPTURED: &str = "CAPTURED";
    pub const DONE: &str = "DONE";
    pub const VOIDED: &str = "VOIDED";
    pub const REFUNDED: &str = "REFUNDED";
    pub const PENDING_TOKEN: &str = "PENDING_TOKEN";
}

/// The `status` of a refund that went through.
pub(crate) const REFUND_SUCCESS: &str = "SUCCESS";
/// The `status` of a void that went through.
pub(crate) const VOID_SUCCESS: &str = "SUCCESS";
/// The error code of `404` "Payment does not exist." (by id or by reference).
pub(crate) const PAYMENT_NOT_FOUND: &str = "PY0009";

/// An amount as Maya writes it: a JSON number or a decimal string.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub(crate) struct Amount(pub Box<RawValue>);

impl Amount {
    /// An exact JSON number token (`129.50`), written from the decimal's own digits.
    pub(crate) fn number(amount: Decimal) -> Option<Amount> {
        RawValue::from_string(amount.to_string()).ok().map(Amount)
    }

    /// A JSON string (`"129.50"`).
    pub(crate) fn string(amount: Decimal) -> Option<Amount> {
        serde_json::to_string(&amount.to_string())
            .ok()
            .and_then(|s| RawValue::from_string(s).ok())
            .map(Amount)
    }

    /// The digits, whether the request sent a number or a string.
    fn text(&self) -> Option<String> {
        let raw = self.0.get();
        if raw.starts_with('"') {
            serde_json::from_str::<String>(raw).ok()
        } else {
            Some(raw.to_owned())
        }
    }

    /// Strictly parsed: digits, at most the currency's decimals, above zero.
    fn money(&self, currency: &str) -> Result<Money, String> {
        let currency =
            Currency::from_str(currency).map_err(|_| "an unknown currency".to_owned())?;
        let text = self
            .text()
            .ok_or_else(|| "an unreadable amount".to_owned())?;
        Money::parse(&text, currency).map_err(|e| match e {
            MoneyError::NotPositive => "a zero amount".to_owned(),
            _ => "an invalid amount".to_owned(),
        })
    }
}

/// `{"amount": .., "currency": "PHP"}` (refunds, captures) or `{"value": ..}` (checkout).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct TotalAmount {
    #[serde(alias = "value")]
    pub amount: Amount,
    pub currency: String,
}

impl TotalAmount {
    pub(crate) fn money(&self) -> Result<Money, String> {
        self.amount.money(&self.currency)
    }
}

/// A payment, as `GET /payments/v1/payments/{id}` returns it and as webhooks carry it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Payment {
    pub id: String,
    pub status: String,
    pub amount: Amount,
    pub currency: String,
    pub request_reference_number: String,
    pub is_paid: bool,
    pub can_void: bool,
    pub can_refund: bool,
    pub can_capture: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authorization_type: Option<String>,
    /// Why a payment failed, when Maya names it (a declined vaulted card).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    /// What paid: the vaulted card, for a payment of one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fund_source: Option<FundSource>,
    pub created_at: String,
    pub updated_at: String,
}

/// `fundSource` of a payment made with a vaulted card: the card and its last four digits.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct FundSource {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub id: String,
    pub details: FundSourceDetails,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct FundSourceDetails {
    pub last4: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Refund {
    pub id: String,
    pub payment: String,
    pub status: String,
    pub total_amount: TotalAmount,
    pub reason: String,
    pub created_at: String,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Void {
    pub id: String,
    pub payment: String,
    pub status: String,
    pub reason: String,
}

/// `POST /checkout/v1/checkouts`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CheckoutRequest {
    pub total_amount: TotalAmount,
    pub request_reference_number: String,
    #[serde(default)]
    #[allow(dead_code)] // read for its shape: a malformed one is refused
    pub redirect_url: Option<RedirectUrl>,
    pub items: Vec<Item>,
    #[serde(default)]
    pub authorization_type: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[allow(dead_code)] // read for its shape: a malformed one is refused
pub(crate) struct RedirectUrl {
    pub success: String,
    pub failure: String,
    pub cancel: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)] // read for its shape: a malformed one is refused
pub(crate) struct Item {
    pub name: String,
    pub quantity: u32,
    #[serde(default)]
    pub code: Option<String>,
    pub total_amount: ItemAmount,
}

#[derive(Debug, Clone, Deserialize)]
#[allow(dead_code)] // read for its shape: a malformed one is refused
pub(crate) struct ItemAmount {
    pub value: Amount,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CheckoutAnswer {
    pub checkout_id: String,
    pub redirect_url: String,
}

/// `POST /payments/v1/payments/{id}/capture`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CaptureRequest {
    pub total_amount: TotalAmount,
    pub request_reference_number: String,
    #[serde(default)]
    pub final_capture: Option<bool>,
}

/// `POST /payments/v1/payments/{id}/refunds`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RefundRequest {
    pub total_amount: TotalAmount,
    pub reason: String,
}

/// `POST /payments/v1/payments/{id}/voids`.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct VoidRequest {
    pub reason: String,
}

/// `POST /payments/v1/payment-tokens`: the card as the customer's browser sends it. No
/// `Debug`: it is a whole card.
#[derive(Deserialize)]
pub(crate) struct PaymentTokenRequest {
    pub card: CardIn,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CardIn {
    pub number: String,
    pub exp_month: String,
    pub exp_year: String,
    pub cvc: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PaymentToken {
    pub payment_token_id: String,
    pub state: String,
    pub created_at: String,
    pub updated_at: String,
    pub issuer: String,
}

/// `POST /payments/v1/customers`: every field optional here; what is given is answered back.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CustomerRequest {
    #[serde(default)]
    pub first_name: Option<String>,
    #[serde(default)]
    pub middle_name: Option<String>,
    #[serde(default)]
    pub last_name: Option<String>,
    #[serde(default)]
    pub contact: Option<Contact>,
    #[serde(default)]
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Contact {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Customer {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub middle_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contact: Option<Contact>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
    pub created_at: String,
    pub updated_at: String,
}

/// `POST /payments/v1/customers/{customerId}/cards`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CardRequest {
    pub payment_token_id: String,
    #[serde(default)]
    pub is_default: Option<bool>,
    #[serde(default)]
    #[allow(dead_code)] // read for its shape: a malformed one is refused
    pub redirect_url: Option<RedirectUrl>,
    #[serde(default)]
    pub request_reference_number: Option<String>,
}

/// A card of a customer. `verificationUrl` only in the answer that linked it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Card {
    pub card_token_id: String,
    pub card_type: String,
    pub masked_pan: String,
    pub state: String,
    pub default: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verification_url: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// `POST /payments/v1/customers/{customerId}/cards/{cardTokenId}/payments`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CardPaymentRequest {
    pub total_amount: TotalAmount,
    pub request_reference_number: String,
    #[serde(default)]
    #[allow(dead_code)] // read for its shape: a malformed one is refused
    pub redirect_url: Option<RedirectUrl>,
    #[serde(default)]
    pub authorization_type: Option<String>,
    #[serde(default)]
    #[allow(dead_code)] // read for its shape: a malformed one is refused
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
}
