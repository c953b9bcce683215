//! EBANX's Direct API bodies as the emulator reads and writes them, field names as EBANX's
//! reference and its SDKs spell them (snake_case, amounts as decimal strings in answers,
//! dates as `YYYY-MM-DD HH:MM:SS`), and its notification form.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

pub const SUCCESS: &str = "SUCCESS";
pub const ERROR: &str = "ERROR";

/// `POST /ws/direct`.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Direct {
    #[serde(default)]
    pub operation: Option<String>,
    #[serde(default)]
    pub payment: Option<DirectPayment>,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct DirectPayment {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub country: Option<String>,
    #[serde(default)]
    pub payment_type_code: Option<String>,
    #[serde(default)]
    pub merchant_payment_code: Option<String>,
    #[serde(default)]
    pub order_number: Option<String>,
    #[serde(default)]
    pub currency_code: Option<String>,
    /// A JSON number or a decimal string; kept as written so no float touches it.
    #[serde(default)]
    pub amount_total: Option<Box<RawValue>>,
    #[serde(default)]
    pub redirect_url: Option<String>,
}

/// `POST /ws/query`.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Query {
    #[serde(default)]
    pub hash: Option<String>,
    #[serde(default)]
    pub merchant_payment_code: Option<String>,
}

/// `POST /ws/refund`: `operation: "request"` makes a refund, `"cancel"` cancels one.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct RefundRequest {
    #[serde(default)]
    pub operation: Option<String>,
    #[serde(default)]
    pub hash: Option<String>,
    #[serde(default)]
    pub merchant_payment_code: Option<String>,
    #[serde(default)]
    pub amount: Option<Box<RawValue>>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub merchant_refund_code: Option<String>,
    #[serde(default)]
    pub refund_id: Option<String>,
}

/// `POST /ws/cancel`.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Cancel {
    #[serde(default)]
    pub hash: Option<String>,
}

/// A payment as every operation answers it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Payment {
    pub hash: String,
    pub pin: String,
    pub country: String,
    pub merchant_payment_code: String,
    pub order_number: Option<String>,
    pub status: &'static str,
    pub status_date: Option<String>,
    pub open_date: String,
    pub confirm_date: Option<String>,
    pub transfer_date: Option<String>,
    pub amount_br: String,
    pub amount_ext: String,
    pub amount_iof: String,
    pub currency_rate: String,
    pub currency_ext: String,
    pub due_date: String,
    pub instalments: String,
    pub payment_type_code: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transaction_status: Option<TransactionStatus>,
    pub pre_approved: bool,
    pub capture_available: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub refunds: Vec<Refund>,
    pub customer: Customer,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct TransactionStatus {
    pub acquirer: &'static str,
    pub code: &'static str,
    pub description: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Customer {
    pub document: Option<String>,
    pub email: String,
    pub name: String,
    pub birth_date: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Refund {
    pub id: String,
    pub merchant_refund_code: Option<String>,
    pub status: &'static str,
    pub request_date: String,
    pub pending_date: Option<String>,
    pub confirm_date: Option<String>,
    pub cancel_date: Option<String>,
    pub amount_ext: String,
    pub description: String,
}

/// The form EBANX POSTs to the notification URL: it names payments and nothing else.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Notification<'a> {
    pub operation: &'static str,
    pub notification_type: &'a str,
    pub hash_codes: String,
}

/// `POST /_sandbox/notify`: EBANX sends a notification naming these hashes (known or not).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Notify {
    pub hash_codes: Vec<String>,
    #[serde(default)]
    pub notification_type: Option<String>,
}
