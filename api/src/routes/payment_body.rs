//! The JSON shape of a payment, built from the event stream (command answers) or from the
//! status projection (reads). Money is always a decimal string at the currency's scale.

use chrono::{DateTime, SubsecRound, Utc};
use domain::{CaptureMode, Currency, Payment};
use projections::status::{self, PaymentStatusRow};
use rust_decimal::Decimal;
use serde::Serialize;
use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};
use utoipa::openapi::{KnownFormat, SchemaFormat};
use uuid::Uuid;

use crate::openapi::{
    capture_mode, currency_code, money_text as money, one_of_texts, payment_method_type,
    payment_status,
};

/// `next_action`: one shape per kind of step, told apart by `type`, or `null`. The shapes are
/// stored in events, so each only ever gains optional members.
pub fn next_action_schema() -> OneOfBuilder {
    let text = || ObjectBuilder::new().schema_type(Type::String);
    let time = || text().format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)));
    let shape = |kind: &str, description: &str| {
        ObjectBuilder::new()
            .property("type", one_of_texts([kind]))
            .required("type")
            .description(Some(description))
    };
    OneOfBuilder::new()
        .item(
            shape(
                "redirect",
                "Send the customer to `url` (a bank's page, a wallet, 3-D Secure)",
            )
            .property("url", text())
            .required("url"),
        )
        .item(
            shape(
                "cash_code",
                "The customer pays `code` in cash before `expires_at`",
            )
            .property("code", text())
            .property("expires_at", time())
            .required("code")
            .required("expires_at"),
        )
        .item(
            shape(
                "qr_code",
                "Show `image` (a `data:image/svg+xml;base64,` URL): the customer scans it with \
                 their bank's app",
            )
            .property("image", text())
            .property("expires_at", time())
            .required("image"),
        )
        .item(
            shape(
                "otp",
                "The wallet sent a code to the customer's phone: they type it on the page at \
                 `url`",
            )
            .property("url", text())
            .property("expires_at", time())
            .required("url"),
        )
        .item(ObjectBuilder::new().schema_type(Type::Null))
}

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
    /// What the customer must do (redirect, cash code, QR code, one-time code) while the
    /// provider waits for them.
    #[schema(schema_with = next_action_schema)]
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

#[cfg(test)]
mod tests {
    use domain::payment::NextAction;
    use serde_json::Value;

    use super::*;

    #[test]
    fn every_next_action_has_a_shape_in_the_contract_with_its_required_members() {
        let schema = serde_json::to_value(next_action_schema().build()).unwrap();
        let shapes = schema["oneOf"].as_array().unwrap();
        let at = "2026-03-01T15:30:00Z".parse::<DateTime<Utc>>().unwrap();
        for action in [
            NextAction::Redirect {
                url: "https://bank.example/1".into(),
            },
            NextAction::CashCode {
                code: "123".into(),
                expires_at: at,
            },
            NextAction::QrCode {
                image: "data:image/svg+xml;base64,PHN2Zy8+".into(),
                expires_at: None,
            },
            NextAction::Otp {
                url: "https://wallet.example/otp".into(),
                expires_at: Some(at),
            },
        ] {
            let wire = serde_json::to_value(&action).unwrap();
            let matching: Vec<&Value> = shapes
                .iter()
                .filter(|s| s["properties"]["type"]["enum"][0] == wire["type"])
                .collect();
            assert_eq!(matching.len(), 1, "{wire}");
            for member in matching[0]["required"].as_array().unwrap() {
                let member = member.as_str().unwrap();
                assert!(wire[member].is_string(), "{member} of {wire}");
            }
            for (member, value) in wire.as_object().unwrap() {
                assert!(
                    matching[0]["properties"].get(member).is_some(),
                    "{member} of {wire} is in the contract"
                );
                assert!(value.is_string());
            }
        }
        assert!(shapes.iter().any(|s| s["type"] == "null"));
    }
}
