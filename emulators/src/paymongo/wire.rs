//! PayMongo's JSON:API bodies as the emulator reads and writes them, field names as
//! PayMongo's API reference spells them (snake_case, amounts in centavos, times in Unix
//! seconds), and the `Paymongo-Signature` header of its webhooks.

use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// The header that carries a webhook's signatures.
pub const SIGNATURE_HEADER: &str = "Paymongo-Signature";
/// The header of an idempotent create.
pub const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";

pub(crate) type Metadata = serde_json::Map<String, serde_json::Value>;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Envelope<T> {
    pub data: T,
}

/// A request body: `{"data":{"attributes":{..}}}`.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Create<A> {
    pub attributes: A,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Resource<A> {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub attributes: A,
}

pub(crate) type Intent = Resource<IntentAttributes>;
pub(crate) type Payment = Resource<PaymentAttributes>;
pub(crate) type Refund = Resource<RefundAttributes>;
pub(crate) type Event = Resource<EventAttributes>;

/// `POST /v1/payment_intents`.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct CreateIntent {
    pub amount: i64,
    pub currency: String,
    pub payment_method_allowed: Vec<String>,
    #[serde(default)]
    pub capture_type: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    #[allow(dead_code)] // read for its shape: a malformed one is refused
    pub statement_descriptor: Option<String>,
    #[serde(default)]
    pub metadata: Option<Metadata>,
}

/// `POST /v1/payment_methods`.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct CreatePaymentMethod {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub metadata: Option<Metadata>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct PaymentMethodAttributes {
    #[serde(rename = "type")]
    pub kind: String,
    pub livemode: bool,
    pub metadata: Option<Metadata>,
}

/// `POST /v1/payment_intents/{id}/attach`.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Attach {
    pub payment_method: String,
    #[serde(default)]
    pub return_url: Option<String>,
}

/// `POST /v1/refunds`.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct CreateRefund {
    pub amount: i64,
    pub payment_id: String,
    pub reason: String,
    #[serde(default)]
    pub notes: Option<String>,
    #[serde(default)]
    pub metadata: Option<Metadata>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct IntentAttributes {
    pub amount: i64,
    pub currency: String,
    pub status: String,
    pub description: Option<String>,
    pub livemode: bool,
    pub capture_type: Option<String>,
    pub payment_method_allowed: Vec<String>,
    pub payments: Vec<Payment>,
    pub next_action: Option<NextAction>,
    pub last_payment_error: Option<serde_json::Value>,
    pub metadata: Option<Metadata>,
    pub created_at: Option<i64>,
    pub updated_at: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct NextAction {
    #[serde(rename = "type")]
    pub kind: String,
    pub redirect: Option<Redirect>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Redirect {
    pub url: String,
    pub return_url: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct PaymentAttributes {
    pub amount: i64,
    pub currency: String,
    pub status: String,
    pub description: Option<String>,
    pub livemode: bool,
    pub payment_intent_id: Option<String>,
    pub metadata: Option<Metadata>,
    pub refunds: Vec<Refund>,
    pub source: Option<serde_json::Value>,
    pub failed_code: Option<String>,
    pub failed_message: Option<String>,
    pub created_at: Option<i64>,
    pub paid_at: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct RefundAttributes {
    pub amount: i64,
    pub currency: String,
    pub payment_id: String,
    pub reason: String,
    pub status: String,
    pub notes: Option<String>,
    pub livemode: bool,
    pub metadata: Option<Metadata>,
    pub created_at: Option<i64>,
}

/// A webhook event; `data` is the resource it is about.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct EventAttributes {
    #[serde(rename = "type")]
    pub kind: String,
    pub livemode: bool,
    pub data: serde_json::Value,
    pub previous_data: Option<serde_json::Value>,
    pub created_at: Option<i64>,
    pub updated_at: Option<i64>,
}

/// Lower-case hex HMAC-SHA256 of `t + "." + body` under the webhook's secret.
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    // HMAC takes keys of any length, so this cannot fail; an empty signature, which never
    // verifies, stands in all the same.
    match <Hmac<Sha256> as KeyInit>::new_from_slice(secret) {
        Ok(mut mac) => {
            mac.update(timestamp.to_string().as_bytes());
            mac.update(b".");
            mac.update(body);
            hex::encode(mac.finalize().into_bytes())
        }
        Err(_) => String::new(),
    }
}

/// A whole `Paymongo-Signature` value as PayMongo sends it, `t=<unix ts>,te=<test>,li=<live>`:
/// the signature goes in `li` in live mode and in `te` in test mode; the other is empty.
pub fn signature_header(secret: &[u8], timestamp: i64, body: &[u8], livemode: bool) -> String {
    let signature = sign(secret, timestamp, body);
    if livemode {
        format!("t={timestamp},te=,li={signature}")
    } else {
        format!("t={timestamp},te={signature},li=")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"whsk_test_payledger_kat_0123456789abcdef";
    const T: i64 = 1_700_000_000;
    /// Known answer, computed independently (`openssl dgst -sha256 -hmac`) over `t.body`.
    const BODY: &str = r#"{"data":{"id":"evt_9w6KTxQY3hmuDQaALHoAZnRp","type":"event","attributes":{"type":"payment.paid","livemode":false}}}"#;
    const SIGNATURE: &str = "46400b3c16dde42ab01034b18d420e09c35e4fdc7e749e7ae4510d638ad10b40";

    #[test]
    fn the_signature_goes_in_te_in_test_mode_and_in_li_in_live_mode() {
        assert_eq!(sign(SECRET, T, BODY.as_bytes()), SIGNATURE);
        assert_eq!(
            signature_header(SECRET, T, BODY.as_bytes(), false),
            format!("t={T},te={SIGNATURE},li=")
        );
        assert_eq!(
            signature_header(SECRET, T, BODY.as_bytes(), true),
            format!("t={T},te=,li={SIGNATURE}")
        );
    }
}
