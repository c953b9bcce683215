//! The JSON shape of a payment, built from the event stream (command answers) or from the
//! status projection (reads). Money is always a decimal string at the currency's scale.

use chrono::{DateTime, SubsecRound, Utc};
use domain::{CaptureMode, Currency, Payment};
use projections::status::{self, PaymentStatusRow};
use rust_decimal::Decimal;
use serde::Serialize;
use uuid::Uuid;

use crate::openapi::{
    capture_mode, currency_code, money_text as money, payment_method_type, payment_status,
};

/// Only the method's type: tokens, phones and legal ids are never kept.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct PaymentMethodBody {
    #[serde(rename = "type")]
    #[schema(schema_with = payment_method_type)]
    pub kind: String,
}

#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct FeesBody {
    #[schema(schema_with = money)]
    pub amount: String,
    #[schema(schema_with = currency_code)]
    pub currency: String,
}

/// A payment: money as decimal strings at the currency's scale; `version` is its stream's,
/// for `GET /v1/payments/{id}?min_version=` (read-your-writes).
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct PaymentBody {
    pub id: Uuid,
    pub merchant_id: String,
    pub reference: String,
    #[schema(schema_with = payment_status)]
    pub status: String,
    #[schema(schema_with = money)]
    pub amount: String,
    #[schema(schema_with = currency_code)]
    pub currency: String,
    #[schema(schema_with = money)]
    pub authorized_amount: String,
    #[schema(schema_with = money)]
    pub captured_amount: String,
    #[schema(schema_with = money)]
    pub refunded_amount: String,
    pub provider: String,
    /// The provider's id of its transaction, once a provider took the payment.
    pub provider_reference: Option<String>,
    pub payment_method: PaymentMethodBody,
    #[schema(schema_with = capture_mode)]
    pub capture_mode: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    /// The provider's fee, fixed at approval.
    pub fees: Option<FeesBody>,
    /// What the customer must do (redirect, cash code) while the provider waits for them.
    #[schema(value_type = Option<Object>)]
    pub next_action: Option<serde_json::Value>,
    /// `in_flight` while the provider is being asked to take the payment, `unknown` when its
    /// answer was lost: the payment stays with that provider until it says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider_outcome: Option<String>,
    /// `capture` or `void` while one is asked of the provider.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending_action: Option<String>,
    /// The intent left unresolved past the review horizon (`attempt`, `capture`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub needs_review: Option<String>,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
    pub version: i64,
}

/// `amount` as text at the currency's scale (`0` -> `"0.00"` in COP).
pub fn money_text(amount: Decimal, currency: &str) -> String {
    let scale = currency.parse::<Currency>().map_or(2, Currency::scale);
    let mut amount = amount;
    amount.rescale(scale);
    amount.to_string()
}

fn fees(captured: Decimal, fee: Decimal, currency: &str) -> Option<FeesBody> {
    (captured > Decimal::ZERO).then(|| FeesBody {
        amount: money_text(fee, currency),
        currency: currency.to_owned(),
    })
}

fn capture_mode_text(mode: Option<CaptureMode>) -> String {
    mode.unwrap_or(CaptureMode::Automatic).as_str().to_owned()
}

impl PaymentBody {
    pub fn from_stream(payment: &Payment, version: i64) -> PaymentBody {
        let currency = payment.currency().map(|c| c.code()).unwrap_or("");
        let amount = payment.amount.map(|m| m.amount()).unwrap_or_default();
        PaymentBody {
            id: payment.id.map(|id| id.as_uuid()).unwrap_or_default(),
            merchant_id: payment
                .merchant_id
                .as_ref()
                .map(|m| m.to_string())
                .unwrap_or_default(),
            reference: payment
                .reference
                .as_ref()
                .map(|r| r.to_string())
                .unwrap_or_default(),
            status: payment.status.as_str().to_owned(),
            amount: money_text(amount, currency),
            currency: currency.to_owned(),
            authorized_amount: money_text(payment.authorized, currency),
            captured_amount: money_text(payment.captured, currency),
            refunded_amount: money_text(payment.refunded, currency),
            provider: payment.provider.clone(),
            provider_reference: payment.provider_transaction_id.clone(),
            payment_method: PaymentMethodBody {
                kind: payment
                    .payment_method
                    .map(|m| m.as_str().to_owned())
                    .unwrap_or_default(),
            },
            capture_mode: capture_mode_text(payment.capture_mode),
            failure_reason: payment.failure_reason.clone(),
            fees: fees(payment.captured, payment.fee, currency),
            next_action: payment
                .next_action
                .as_ref()
                .and_then(|a| serde_json::to_value(a).ok()),
            provider_outcome: payment.attempt.as_ref().map(|a| {
                if a.outcome_unknown {
                    status::OUTCOME_UNKNOWN
                } else {
                    status::OUTCOME_IN_FLIGHT
                }
                .to_owned()
            }),
            pending_action: if payment.pending_capture.is_some() {
                Some("capture".to_owned())
            } else {
                payment.void_requested_at.map(|_| "void".to_owned())
            },
            needs_review: payment.needs_review.clone(),
            // PostgreSQL keeps microseconds: answer the same instant a read will show.
            created_at: payment.created_at.map(|t| t.trunc_subsecs(6)),
            updated_at: payment.updated_at.map(|t| t.trunc_subsecs(6)),
            version,
        }
    }

    pub fn from_row(row: &PaymentStatusRow) -> PaymentBody {
        let currency = row.currency.as_str();
        PaymentBody {
            id: row.payment_id,
            merchant_id: row.merchant_id.clone(),
            reference: row.reference.clone(),
            status: row.status.clone(),
            amount: money_text(row.amount, currency),
            currency: row.currency.clone(),
            authorized_amount: money_text(row.authorized_amount, currency),
            captured_amount: money_text(row.captured_amount, currency),
            refunded_amount: money_text(row.refunded_amount, currency),
            provider: row.provider.clone(),
            provider_reference: row.provider_transaction_id.clone(),
            payment_method: PaymentMethodBody {
                kind: row.payment_method_type.clone(),
            },
            capture_mode: row.capture_mode.clone(),
            failure_reason: row.failure_reason.clone(),
            fees: fees(row.captured_amount, row.fee_amount, currency),
            next_action: row.next_action.clone(),
            provider_outcome: row.provider_outcome.clone(),
            pending_action: row.pending_action.clone(),
            needs_review: row.needs_review.clone(),
            created_at: Some(row.created_at),
            updated_at: Some(row.updated_at),
            version: row.version,
        }
    }
}
