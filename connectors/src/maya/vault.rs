//! Saved cards at Maya: the cards of a customer in Maya Vault (developers.maya.ph, "Save a
//! Card Only" and "Pay using Vaulted Cards"). Every call made here uses the secret key.
//!
//! * The customer's browser tokenizes the card (`POST /payments/v1/payment-tokens`, public
//!   key): payledger never sees the number, only the single-use `paymentTokenId`.
//! * Save: `POST /payments/v1/customers` `{"contact":{"email"}?,"metadata":
//!   {"payledgerCustomerId"}}` answers the Maya customer's `id` (no name is invented for it);
//!   then `POST /payments/v1/customers/{customerId}/cards` `{"paymentTokenId","isDefault":
//!   true,"redirectUrl"?,"requestReferenceNumber":"<our saved method id>"}` answers
//!   `{"cardTokenId","cardType","maskedPan","state","verificationUrl",..}`. A card in
//!   `PREVERIFICATION` is charged only once the customer passed 3-D Secure at
//!   `verificationUrl` (`VERIFIED`); that URL is the saved source's `verification_url`.
//! * Maya takes no idempotency key for either call, so each save makes its own Maya customer.
//!   When linking the card fails in any way, that customer is deleted again (best effort): no
//!   source id left the adapter, so the customer is nobody's. A repeat after a lost answer
//!   makes a new customer, and Maya refuses the used token (`PY0007`): the card is tokenized
//!   again.
//! * State: `GET /payments/v1/customers/{customerId}/cards/{cardTokenId}`.
//! * Charge: `POST .../cards/{cardTokenId}/payments` `{"totalAmount":{"amount","currency"},
//!   "requestReferenceNumber":"<our payment id>","redirectUrl"?,"authorizationType":
//!   "NORMAL"?}` answers a payment as `GET /payments/v1/payments/{id}` does, with a
//!   `verificationUrl` when Maya wants 3-D Secure for it. The reference is our payment id, so
//!   a charge whose answer was lost is found by reference like a checkout.
//! * Remove: `DELETE .../cards/{cardTokenId}`, then the customer (best effort: it holds no
//!   other card).
//!
//! The source id payledger keeps is `<customerId>/<cardTokenId>`: every call names both.
//! Maya's "does not exist" answers mean the card is gone: a `404` with a `PY` code, or
//! `PY0023` "Customer does not exist" (documented as `404`, earlier as `400`). Any other
//! `404` (a wrong path, a proxy) proves nothing.

use domain::{CaptureMode, MethodDisplay};
use reqwest::{Method, StatusCode};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};

use crate::http::valid_redirect_url;
use crate::maya::client::{php_total, require_php, valid_id, wire, MayaProvider};
use crate::{
    CreateTransaction, NextAction, ProviderError, ProviderTransaction, ProviderTransactionStatus,
    SaveMethod, SavedSource, SourceState,
};

/// Longest `cardTokenId` accepted: Maya's tokens run longer than its payment ids (its
/// payment tokens are about 150 characters).
pub const CARD_TOKEN_ID_LEN_MAX: usize = 256;
/// Longest payment token taken from the checkout.
pub const PAYMENT_TOKEN_LEN_MAX: usize = 1_024;
/// Longest `requestReferenceNumber` Maya takes.
pub const REFERENCE_LEN_MAX: usize = 36;
/// Between the customer id and the card token id in a source id; in neither id.
const SEPARATOR: char = '/';
/// `404`/`400` "Customer does not exist.".
const CUSTOMER_NOT_FOUND: &str = "PY0023";

/// A card's `state`, as Maya names them.
pub mod card_state {
    pub const VERIFIED: &str = "VERIFIED";
    pub const PREVERIFICATION: &str = "PREVERIFICATION";
    pub const VERIFYING: &str = "VERIFYING";
    pub const VERIFICATION_FAILED: &str = "VERIFICATION_FAILED";
    pub const EXPIRED: &str = "EXPIRED";
    pub const DELETED: &str = "DELETED";
}

/// Whether a card in Maya's `state` can be charged. `None`: a state Maya does not document
/// for a card; unknown is not failed, so callers answer an error, never a verdict.
pub(crate) fn source_state_of(state: &str) -> Option<SourceState> {
    match state {
        card_state::VERIFIED => Some(SourceState::Chargeable),
        card_state::PREVERIFICATION | card_state::VERIFYING => {
            Some(SourceState::AwaitingVerification)
        }
        card_state::VERIFICATION_FAILED | card_state::EXPIRED | card_state::DELETED => {
            Some(SourceState::VerificationFailed)
        }
        _ => None,
    }
}

/// A saved Maya card as payledger keeps it: the customer and the card, both needed by every
/// call. No `Debug`: the ids buy a charge.
#[derive(PartialEq, Eq)]
pub(crate) struct VaultSource<'a> {
    pub customer_id: &'a str,
    pub card_token_id: &'a str,
}

impl<'a> VaultSource<'a> {
    /// Reads `<customerId>/<cardTokenId>`; nothing else is a Maya saved source.
    pub(crate) fn parse(source_id: &'a str) -> Result<Self, ProviderError> {
        source_id
            .split_once(SEPARATOR)
            .and_then(|(customer_id, card_token_id)| Self::checked(customer_id, card_token_id))
            .ok_or_else(|| ProviderError::rejected("invalid Maya saved card source"))
    }

    /// Both ids, when each is one Maya could have answered.
    pub(crate) fn checked(customer_id: &'a str, card_token_id: &'a str) -> Option<Self> {
        (valid_id(customer_id) && valid_card_token_id(card_token_id)).then_some(VaultSource {
            customer_id,
            card_token_id,
        })
    }

    pub(crate) fn source_id(&self) -> String {
        format!("{}{SEPARATOR}{}", self.customer_id, self.card_token_id)
    }

    /// The error without either id, whatever Maya echoed.
    fn scrubbed(&self, error: ProviderError) -> ProviderError {
        scrubbed(error, [self.customer_id, self.card_token_id])
    }
}

fn valid_card_token_id(id: &str) -> bool {
    crate::http::path_safe_id(id, CARD_TOKEN_ID_LEN_MAX)
}

/// A checkout's `paymentTokenId`: printable ASCII without spaces, bounded. It goes in a body,
/// never in a path.
fn valid_payment_token(token: &str) -> bool {
    !token.is_empty()
        && token.len() <= PAYMENT_TOKEN_LEN_MAX
        && token.bytes().all(|b| b.is_ascii_graphic())
}

/// A Maya error detail never carries a token or an id of a saved card.
fn scrubbed<'a>(error: ProviderError, secrets: impl IntoIterator<Item = &'a str>) -> ProviderError {
    let detail = crate::http::scrub(&error.detail, secrets);
    ProviderError { detail, ..error }
}

/// Whether an answer is Maya saying the card (or its customer) does not exist.
fn is_gone((status, body): &(StatusCode, Vec<u8>)) -> bool {
    let code = serde_json::from_slice::<wire::Error>(body)
        .ok()
        .and_then(|e| e.code)
        .and_then(|c| c.as_str().map(str::to_owned));
    match code {
        Some(code) if code == CUSTOMER_NOT_FOUND => status.is_client_error(),
        Some(code) => *status == StatusCode::NOT_FOUND && code.starts_with("PY"),
        None => false,
    }
}

/// The brand payledger shows for Maya's `cardType`; `None` for one it does not know.
fn brand_of(card_type: &str) -> Option<&'static str> {
    match card_type.to_ascii_lowercase().as_str() {
        "visa-card" | "visa" => Some("VISA"),
        "master-card" | "mastercard" => Some("MASTERCARD"),
        "jcb" | "jcb-card" => Some("JCB"),
        "amex" | "amex-card" | "american-express" => Some("AMEX"),
        _ => None,
    }
}

fn bad(what: &str) -> ProviderError {
    ProviderError::server_error(format!("maya answered {what}"))
}

impl MayaProvider {
    /// Makes a Maya customer and links the checkout's tokenized card to it.
    pub(crate) async fn save_card(
        &self,
        request: &SaveMethod,
    ) -> Result<SavedSource, ProviderError> {
        let token = request
            .method
            .card_token()
            .ok_or_else(|| ProviderError::rejected("maya saves cards only"))?;
        if !valid_payment_token(token) {
            return Err(ProviderError::rejected("invalid Maya payment token"));
        }
        let reference = request.payment_method_id.to_string();
        if reference.len() > REFERENCE_LEN_MAX {
            return Err(ProviderError::rejected(
                "the saved method id does not fit Maya's reference",
            ));
        }
        let customer_id = self
            .create_customer(request)
            .await
            .map_err(|e| scrubbed(e, [token]))?;
        let linked = self
            .link_card(
                &customer_id,
                token,
                &reference,
                request.return_url.as_deref(),
            )
            .await;
        if linked.is_err() {
            self.delete_customer(&customer_id).await;
        }
        linked.map_err(|e| scrubbed(e, [token, customer_id.as_str()]))
    }

    async fn create_customer(&self, request: &SaveMethod) -> Result<String, ProviderError> {
        let body = CustomerRequest {
            contact: request.customer_email.as_ref().map(|email| Contact {
                email: email.expose_secret(),
            }),
            metadata: CustomerMetadata {
                payledger_customer_id: request.customer_id.to_string(),
            },
        };
        let url = self.url_checked(&["payments", "v1", "customers"], valid_id)?;
        let raw = self
            .call(Method::POST, url, &self.secret_auth, Some(&body))
            .await?;
        let customer: CustomerAnswer = self.decode(&raw)?;
        if !valid_id(&customer.id) {
            return Err(bad("an invalid customer id"));
        }
        Ok(customer.id)
    }

    async fn link_card(
        &self,
        customer_id: &str,
        token: &str,
        reference: &str,
        return_url: Option<&str>,
    ) -> Result<SavedSource, ProviderError> {
        let body = LinkCard {
            payment_token_id: token,
            is_default: true,
            redirect_url: return_url.map(redirect),
            request_reference_number: reference,
        };
        let url = self.url_checked(
            &["payments", "v1", "customers", customer_id, "cards"],
            valid_id,
        )?;
        let raw = self
            .call(Method::POST, url, &self.secret_auth, Some(&body))
            .await?;
        let card: Card = self.decode(&raw)?;
        let source = VaultSource::checked(customer_id, &card.card_token_id)
            .ok_or_else(|| bad("an invalid card token id"))?;
        let display = card.display()?;
        let verification_url = match source_state_of(&card.state) {
            Some(SourceState::Chargeable) => None,
            Some(SourceState::AwaitingVerification) => Some(
                card.verification_url
                    .clone()
                    .filter(|url| valid_redirect_url(url))
                    .ok_or_else(|| bad("a card to verify without a valid verification URL"))?,
            ),
            Some(SourceState::VerificationFailed) => {
                return Err(ProviderError::rejected("maya refused the card"))
            }
            None => return Err(bad("an unknown card state")),
        };
        Ok(SavedSource {
            source_id: source.source_id().into(),
            display,
            verification_url,
        })
    }

    /// Deletes a Maya customer, best effort: a failure leaves a customer no source names.
    async fn delete_customer(&self, customer_id: &str) {
        if let Ok(url) = self.url_checked(&["payments", "v1", "customers", customer_id], valid_id) {
            let _ = self
                .send(Method::DELETE, url, &self.secret_auth, None)
                .await;
        }
    }

    fn card_url(
        &self,
        source: &VaultSource<'_>,
        tail: &[&str],
    ) -> Result<reqwest::Url, ProviderError> {
        let mut segments = vec![
            "payments",
            "v1",
            "customers",
            source.customer_id,
            "cards",
            source.card_token_id,
        ];
        segments.extend_from_slice(tail);
        self.url_checked(&segments, valid_card_token_id)
    }

    /// Whether Maya charges the card yet: its `state`, or gone when Maya holds none.
    pub(crate) async fn card_state(&self, source_id: &str) -> Result<SourceState, ProviderError> {
        let source = VaultSource::parse(source_id)?;
        let url = self.card_url(&source, &[])?;
        let answer = self
            .send(Method::GET, url, &self.secret_auth, None)
            .await
            .map_err(|e| source.scrubbed(e))?;
        if is_gone(&answer) {
            return Ok(SourceState::VerificationFailed);
        }
        let raw = self.success(answer).map_err(|e| source.scrubbed(e))?;
        let card: Card = self.decode(&raw)?;
        if card.card_token_id != source.card_token_id {
            return Err(bad("another card"));
        }
        source_state_of(&card.state).ok_or_else(|| bad("an unknown card state"))
    }

    /// Deletes the card, then its customer. A card Maya no longer holds counts as removed.
    pub(crate) async fn remove_card(&self, source_id: &str) -> Result<(), ProviderError> {
        let source = VaultSource::parse(source_id)?;
        let url = self.card_url(&source, &[])?;
        let answer = self
            .send(Method::DELETE, url, &self.secret_auth, None)
            .await
            .map_err(|e| source.scrubbed(e))?;
        if !is_gone(&answer) {
            self.success(answer).map_err(|e| source.scrubbed(e))?;
        }
        self.delete_customer(source.customer_id).await;
        Ok(())
    }

    /// A one-click payment with a saved card. The answer is the payment as Maya processed it
    /// (decided at once unless Maya wants 3-D Secure for it).
    pub(crate) async fn charge_card(
        &self,
        request: &CreateTransaction,
        source_id: &str,
    ) -> Result<ProviderTransaction, ProviderError> {
        let source = VaultSource::parse(source_id)?;
        require_php(request.amount)?;
        let body = CardPayment {
            total_amount: php_total(request.amount)?,
            request_reference_number: request.payment_id.to_string(),
            redirect_url: request.return_url.as_deref().map(redirect),
            authorization_type: match request.capture_mode {
                CaptureMode::Manual => Some("NORMAL"),
                CaptureMode::Automatic => None,
            },
        };
        let url = self.card_url(&source, &["payments"])?;
        let raw = self
            .call(Method::POST, url, &self.secret_auth, Some(&body))
            .await
            .map_err(|e| source.scrubbed(e))?;
        let payment: wire::Payment = self.decode(&raw)?;
        if !valid_id(&payment.id) {
            return Err(bad("an invalid payment id"));
        }
        if payment.our_payment_id() != Some(request.payment_id) {
            return Err(bad("a payment of another reference"));
        }
        let verification_url = payment.verification_url.clone();
        let transaction = self.transaction_of(payment).await?;
        if transaction.amount != request.amount {
            return Err(bad("a payment of another amount"));
        }
        with_verification(transaction, verification_url)
    }
}

/// A payment still pending with a `verificationUrl` waits for the customer's 3-D Secure
/// there; a decided one needs nothing of them, whatever else Maya sent.
fn with_verification(
    mut transaction: ProviderTransaction,
    verification_url: Option<String>,
) -> Result<ProviderTransaction, ProviderError> {
    if transaction.status == ProviderTransactionStatus::Pending {
        if let Some(url) = verification_url {
            if !valid_redirect_url(&url) {
                return Err(bad("an invalid verification URL"));
            }
            transaction.next_action = Some(NextAction::Redirect { url });
        }
    }
    Ok(transaction)
}

fn redirect(url: &str) -> wire::RedirectUrl {
    wire::RedirectUrl {
        success: url.to_owned(),
        failure: url.to_owned(),
        cancel: url.to_owned(),
    }
}

// ---------------------------------------------------------------------------------------------
// Wire shapes (field names as Maya's API reference spells them; unknown fields are ignored)
// ---------------------------------------------------------------------------------------------

/// `POST /payments/v1/customers`.
#[derive(Serialize)]
struct CustomerRequest<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    contact: Option<Contact<'a>>,
    metadata: CustomerMetadata,
}

#[derive(Serialize)]
struct Contact<'a> {
    email: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CustomerMetadata {
    payledger_customer_id: String,
}

#[derive(Deserialize)]
struct CustomerAnswer {
    id: String,
}

/// `POST /payments/v1/customers/{customerId}/cards`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LinkCard<'a> {
    payment_token_id: &'a str,
    is_default: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    redirect_url: Option<wire::RedirectUrl>,
    request_reference_number: &'a str,
}

/// `POST /payments/v1/customers/{customerId}/cards/{cardTokenId}/payments`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CardPayment {
    total_amount: wire::TotalAmount,
    request_reference_number: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    redirect_url: Option<wire::RedirectUrl>,
    #[serde(skip_serializing_if = "Option::is_none")]
    authorization_type: Option<&'static str>,
}

/// A card of a customer, as Maya answers it. No `Debug`: it holds the card token.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Card {
    card_token_id: String,
    state: String,
    #[serde(default)]
    card_type: Option<String>,
    #[serde(default)]
    masked_pan: Option<String>,
    #[serde(default)]
    verification_url: Option<String>,
    /// Maya's examples show no expiry; read when it is there.
    #[serde(default)]
    exp_month: Option<serde_json::Value>,
    #[serde(default)]
    exp_year: Option<serde_json::Value>,
}

impl Card {
    /// What the customer may be shown: brand, last four, and expiry when Maya gives it.
    fn display(&self) -> Result<MethodDisplay, ProviderError> {
        let last_four = match self.masked_pan.as_deref() {
            None => None,
            Some(masked) => Some(last_four(masked).ok_or_else(|| bad("an invalid masked PAN"))?),
        };
        let (exp_month, exp_year) = match (
            self.exp_month.as_ref().and_then(number_text),
            self.exp_year.as_ref().and_then(number_text),
        ) {
            (Some(month), Some(year)) => match (month.parse::<u8>(), full_year(&year)) {
                (Ok(month), Some(year)) => (Some(month), Some(year)),
                _ => (None, None),
            },
            _ => (None, None),
        };
        MethodDisplay {
            brand: self
                .card_type
                .as_deref()
                .and_then(brand_of)
                .map(str::to_owned),
            last_four,
            exp_month,
            exp_year,
            phone_masked: None,
        }
        .checked()
        .map_err(|e| bad(&format!("a card whose {e}")))
    }
}

/// The last four digits of a `maskedPan` (`412345******1381`).
fn last_four(masked: &str) -> Option<String> {
    let four = masked.len().checked_sub(4).and_then(|i| masked.get(i..))?;
    four.bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| four.to_owned())
}

/// A month or year Maya wrote as a string (`"05"`) or a number.
fn number_text(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::String(text) if text.bytes().all(|b| b.is_ascii_digit()) => {
            Some(text.clone())
        }
        serde_json::Value::Number(n) => n.as_u64().map(|n| n.to_string()),
        _ => None,
    }
}

/// `"2031"`, or `"31"` for 2031.
fn full_year(text: &str) -> Option<u16> {
    let value = text.parse::<u16>().ok()?;
    match text.len() {
        2 => Some(2000 + value),
        4 => Some(value),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CallOutcome;

    const CUSTOMER: &str = "8f2c5b61-3d0e-4a8b-9c71-2e4f6a9d0b13";

    fn card_token() -> String {
        "aB3dE5gH7jK9".repeat(12)
    }

    fn card(json: serde_json::Value) -> Card {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn a_source_keeps_customer_and_card_and_reads_back() {
        let token = card_token();
        assert!(token.len() > 128, "longer than a payment id");
        let source = VaultSource::checked(CUSTOMER, &token).unwrap();
        let id = source.source_id();
        assert_eq!(id, format!("{CUSTOMER}/{token}"));
        let parsed = VaultSource::parse(&id).unwrap();
        assert!(parsed == source);
        assert_eq!(parsed.customer_id, CUSTOMER);
        assert_eq!(parsed.card_token_id, token);
    }

    #[test]
    fn odd_source_ids_are_refused() {
        let token = card_token();
        for bad in [
            String::new(),
            CUSTOMER.to_owned(),
            format!("{CUSTOMER}/"),
            format!("/{token}"),
            format!("{CUSTOMER}/{token}/payments"),
            format!("{CUSTOMER}/../{token}"),
            format!("{CUSTOMER}/to ken"),
            format!("{CUSTOMER}/tok?en"),
            format!("cus%2F/{token}"),
            format!("{}/{token}", "c".repeat(129)),
            format!("{CUSTOMER}/{}", "t".repeat(CARD_TOKEN_ID_LEN_MAX + 1)),
        ] {
            let refused = VaultSource::parse(&bad).err().unwrap();
            assert_eq!(refused.outcome(), CallOutcome::Refused, "{bad}");
            assert!(!refused.detail.contains(&token), "{}", refused.detail);
        }
    }

    #[test]
    fn card_states_map_to_source_states_and_unknown_is_no_verdict() {
        assert_eq!(source_state_of("VERIFIED"), Some(SourceState::Chargeable));
        for pending in ["PREVERIFICATION", "VERIFYING"] {
            assert_eq!(
                source_state_of(pending),
                Some(SourceState::AwaitingVerification)
            );
        }
        for failed in ["VERIFICATION_FAILED", "EXPIRED", "DELETED"] {
            assert_eq!(
                source_state_of(failed),
                Some(SourceState::VerificationFailed)
            );
        }
        for unknown in ["", "verified", "AVAILABLE", "USED", "SOMETHING_NEW"] {
            assert_eq!(source_state_of(unknown), None, "{unknown}");
        }
    }

    #[test]
    fn only_mayas_own_does_not_exist_means_gone() {
        let answer = |status: u16, body: &str| {
            (
                StatusCode::from_u16(status).unwrap(),
                body.as_bytes().to_vec(),
            )
        };
        assert!(is_gone(&answer(
            404,
            r#"{"code":"PY0023","message":"Customer does not exist."}"#
        )));
        assert!(is_gone(&answer(
            400,
            r#"{"code":"PY0023","message":"Customer does not exist."}"#
        )));
        assert!(is_gone(&answer(
            404,
            r#"{"code":"PY0026","message":"Card does not exist."}"#
        )));
        for other in [
            answer(404, r#"{"code":"404","message":"Resource not found"}"#),
            answer(404, "<html>Not Found</html>"),
            answer(404, ""),
            answer(
                400,
                r#"{"code":"2553","message":"Missing/invalid parameters."}"#,
            ),
            answer(
                401,
                r#"{"code":"K003","error":"Invalid authentication credentials."}"#,
            ),
            answer(
                500,
                r#"{"code":"PY0023","message":"Customer does not exist."}"#,
            ),
        ] {
            assert!(!is_gone(&other), "{:?}", String::from_utf8_lossy(&other.1));
        }
    }

    #[test]
    fn display_takes_brand_last_four_and_expiry_only_when_given() {
        let visa = card(serde_json::json!({
            "cardTokenId": card_token(), "cardType": "visa-card",
            "maskedPan": "412345******1381", "state": "PREVERIFICATION", "default": true,
            "verificationUrl": "https://payments-web-sandbox.paymaya.com/authenticate?id=x",
            "createdAt": "2026-01-01T00:00:00.000Z", "updatedAt": "2026-01-01T00:00:00.000Z"
        }));
        let display = visa.display().unwrap();
        assert_eq!(display.brand.as_deref(), Some("VISA"));
        assert_eq!(display.last_four.as_deref(), Some("1381"));
        assert_eq!((display.exp_month, display.exp_year), (None, None));

        let master = card(serde_json::json!({
            "cardTokenId": "t1", "cardType": "master-card", "maskedPan": "2346",
            "state": "VERIFIED", "expMonth": "05", "expYear": "31"
        }));
        let display = master.display().unwrap();
        assert_eq!(display.brand.as_deref(), Some("MASTERCARD"));
        assert_eq!(display.last_four.as_deref(), Some("2346"));
        assert_eq!((display.exp_month, display.exp_year), (Some(5), Some(2031)));

        let numbers = card(serde_json::json!({
            "cardTokenId": "t1", "cardType": "something-new", "state": "VERIFIED",
            "expMonth": 12, "expYear": 2030
        }));
        let display = numbers.display().unwrap();
        assert_eq!(display.brand, None);
        assert_eq!(display.last_four, None);
        assert_eq!(
            (display.exp_month, display.exp_year),
            (Some(12), Some(2030))
        );

        let half = card(serde_json::json!({
            "cardTokenId": "t1", "state": "VERIFIED", "expMonth": "05"
        }));
        let display = half.display().unwrap();
        assert_eq!((display.exp_month, display.exp_year), (None, None));

        for masked in ["412345******13x1", "381", "4123450131001381"] {
            let c = card(serde_json::json!({
                "cardTokenId": "t1", "state": "VERIFIED", "maskedPan": masked
            }));
            // A whole number shows only its last four; a broken mask is Maya's fault.
            match c.display() {
                Ok(display) => assert_eq!(display.last_four.as_deref(), Some("1381")),
                Err(e) => assert_eq!(e.outcome(), CallOutcome::Unknown, "{masked}"),
            }
        }
        let month_13 = card(serde_json::json!({
            "cardTokenId": "t1", "state": "VERIFIED", "expMonth": "13", "expYear": "2030"
        }));
        assert!(month_13.display().is_err());
    }

    #[test]
    fn requests_have_mayas_shape_and_no_invented_customer_data() {
        let customer = CustomerRequest {
            contact: Some(Contact {
                email: "ana@example.com",
            }),
            metadata: CustomerMetadata {
                payledger_customer_id: CUSTOMER.to_owned(),
            },
        };
        assert_eq!(
            serde_json::to_value(&customer).unwrap(),
            serde_json::json!({
                "contact": {"email": "ana@example.com"},
                "metadata": {"payledgerCustomerId": CUSTOMER}
            })
        );
        let anonymous = CustomerRequest {
            contact: None,
            metadata: CustomerMetadata {
                payledger_customer_id: CUSTOMER.to_owned(),
            },
        };
        assert_eq!(
            serde_json::to_value(&anonymous).unwrap(),
            serde_json::json!({"metadata": {"payledgerCustomerId": CUSTOMER}})
        );
        let link = LinkCard {
            payment_token_id: "ptok",
            is_default: true,
            redirect_url: Some(redirect("https://shop.example/back")),
            request_reference_number: "0191f7a0-0000-7000-8000-00000000c0de",
        };
        let sent = serde_json::to_value(&link).unwrap();
        assert_eq!(sent["paymentTokenId"], "ptok");
        assert_eq!(sent["isDefault"], true);
        assert_eq!(sent["redirectUrl"]["success"], "https://shop.example/back");
        assert_eq!(sent["redirectUrl"]["cancel"], "https://shop.example/back");
        assert_eq!(
            sent["requestReferenceNumber"].as_str().map(str::len),
            Some(REFERENCE_LEN_MAX)
        );
        let amount = domain::Money::parse("129.50", domain::Currency::PHP).unwrap();
        let payment = CardPayment {
            total_amount: php_total(amount).unwrap(),
            request_reference_number: "r".into(),
            redirect_url: None,
            authorization_type: Some("NORMAL"),
        };
        assert_eq!(
            serde_json::to_string(&payment).unwrap(),
            r#"{"totalAmount":{"amount":129.50,"currency":"PHP"},"requestReferenceNumber":"r","authorizationType":"NORMAL"}"#
        );
    }

    #[test]
    fn a_pending_payment_with_a_verification_url_waits_for_the_customer() {
        let amount = domain::Money::parse("10.00", domain::Currency::PHP).unwrap();
        let zero = domain::Money::zero(domain::Currency::PHP);
        let tx = |status| ProviderTransaction {
            id: "p1".into(),
            payment_id: domain::PaymentId::from_uuid(uuid::Uuid::nil()),
            status,
            amount,
            captured_amount: zero,
            refunded_amount: zero,
            next_action: None,
        };
        let url = "https://payments-web-sandbox.paymaya.com/authenticate?id=1".to_owned();
        let waiting =
            with_verification(tx(ProviderTransactionStatus::Pending), Some(url.clone())).unwrap();
        assert_eq!(waiting.status, ProviderTransactionStatus::Pending);
        assert_eq!(
            waiting.next_action,
            Some(NextAction::Redirect { url: url.clone() })
        );
        let decided =
            with_verification(tx(ProviderTransactionStatus::Approved), Some(url)).unwrap();
        assert_eq!(decided.next_action, None);
        assert_eq!(
            with_verification(tx(ProviderTransactionStatus::Pending), None)
                .unwrap()
                .next_action,
            None
        );
        for bad in [
            "javascript:alert(1)",
            "not a url",
            &format!("https://h/{}", "x".repeat(2_048)),
        ] {
            let refused =
                with_verification(tx(ProviderTransactionStatus::Pending), Some(bad.to_owned()));
            assert_eq!(
                refused.unwrap_err().outcome(),
                CallOutcome::Unknown,
                "{bad}"
            );
        }
    }

    #[test]
    fn payment_tokens_are_bounded_printable_text() {
        assert!(valid_payment_token(&"EcxUh9QOdXMm".repeat(13)));
        for bad in [
            String::new(),
            "a b".into(),
            "a\nb".into(),
            "x".repeat(1_025),
        ] {
            assert!(!valid_payment_token(&bad), "{bad:?}");
        }
    }

    #[test]
    fn errors_never_carry_the_ids() {
        let token = card_token();
        let source = VaultSource::checked(CUSTOMER, &token).unwrap();
        let error = ProviderError::rejected(format!("no card {token} for {CUSTOMER}"));
        let scrubbed = source.scrubbed(error);
        assert!(!scrubbed.detail.contains(&token), "{}", scrubbed.detail);
        assert!(!scrubbed.detail.contains(CUSTOMER), "{}", scrubbed.detail);
        assert_eq!(scrubbed.outcome(), CallOutcome::Refused);
    }
}
