//! Saved cards at PayU: the card tokens of PayU's Tokenization API.
//!
//! PayU tokenizes a card with `CREATE_TOKEN`, which takes the card number: payledger never
//! sees one, so the merchant's checkout tokenizes (PayU's own tokenization) and hands
//! payledger the `creditCardTokenId`. Saving it here means checking it at PayU and reading
//! what the customer may be shown of it; charging it is the card flow with that token.
//! All three commands go to `{base}/payments-api/4.0/service.cgi` with the merchant's
//! `apiLogin`/`apiKey` (developers.payulatam.com, "Tokenization API"):
//!
//! * `GET_TOKENS` with `creditCardTokenInformation.{payerId, creditCardTokenId}`: the token,
//!   in `creditCardTokenList`, with `payerId`, `paymentMethod` (the franchise),
//!   `maskedNumber` (first six and last four digits) and, when PayU gives it,
//!   `expirationDate` (`YYYY/MM`; PayU's examples answer `null`).
//! * `REMOVE_TOKEN` with `removeCreditCardToken.{payerId, creditCardTokenId}`.
//!
//! PayU ties a token to a payer (`payerId`, required by `CREATE_TOKEN` and `REMOVE_TOKEN`):
//! payledger's customer id is that payer id, so the checkout tokenizes with it, a token is
//! saved only for the customer it was made for, and removing it names the same payer.
//!
//! The source id payledger keeps is `FRANCHISE:creditCardTokenId@payerId`: the card flow
//! needs the franchise as `paymentMethod`, and `REMOVE_TOKEN` needs the payer. A token is
//! idempotent by nature: saving it again answers the same source.

use domain::{CustomerId, MethodDisplay};
use serde::{Deserialize, Serialize};

use crate::payu::client::{card_token, Merchant, PayuProvider, CARD_FRANCHISES};
use crate::{CallOutcome, ProviderError, SaveMethod, SavedSource};

/// Longest payer id accepted in a source (ours are UUIDs, 36 characters).
const PAYER_ID_LEN_MAX: usize = 64;

/// A saved PayU card as payledger keeps it: what a charge and a removal need.
#[derive(PartialEq, Eq)]
pub(crate) struct TokenSource<'a> {
    pub franchise: &'a str,
    pub token_id: &'a str,
    pub payer_id: &'a str,
}

impl<'a> TokenSource<'a> {
    /// Reads `FRANCHISE:creditCardTokenId@payerId`; nothing else is a PayU saved source.
    pub(crate) fn parse(source_id: &'a str) -> Result<Self, ProviderError> {
        let invalid = || ProviderError::rejected("invalid PayU saved card source");
        let (card, payer_id) = source_id.rsplit_once('@').ok_or_else(invalid)?;
        if !card.contains(':') || !valid_payer_id(payer_id) {
            return Err(invalid());
        }
        let (franchise, token_id) = card_token(card).map_err(|_| invalid())?;
        Ok(TokenSource {
            franchise,
            token_id,
            payer_id,
        })
    }

    pub(crate) fn source_id(&self) -> String {
        format!("{}:{}@{}", self.franchise, self.token_id, self.payer_id)
    }
}

fn valid_payer_id(payer_id: &str) -> bool {
    !payer_id.is_empty()
        && payer_id.len() <= PAYER_ID_LEN_MAX
        && payer_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl PayuProvider {
    /// Checks the checkout's token at PayU (`GET_TOKENS`) and keeps it with its display data.
    pub(crate) async fn save_token(
        &self,
        request: &SaveMethod,
    ) -> Result<SavedSource, ProviderError> {
        let token = request
            .method
            .card_token()
            .ok_or_else(|| ProviderError::rejected("PayU saves cards only"))?;
        // A `FRANCHISE:` prefix from the checkout is only a hint: PayU's own record of the
        // token names its franchise.
        let (_, token_id) = card_token(token)?;
        let payer_id = payer_of(request.customer_id);
        let held = self
            .find_token(Some(&payer_id), token_id)
            .await?
            .ok_or_else(|| {
                ProviderError::rejected("PayU holds no such card token for this customer")
            })?;
        let (franchise, display) = held.checked(&payer_id, token_id)?;
        let source = TokenSource {
            franchise,
            token_id,
            payer_id: &payer_id,
        };
        Ok(SavedSource {
            source_id: source.source_id().into(),
            display,
            verification_url: None,
        })
    }

    /// `REMOVE_TOKEN`. A token PayU no longer holds counts as removed.
    pub(crate) async fn remove_token(&self, source_id: &str) -> Result<(), ProviderError> {
        let source = TokenSource::parse(source_id)?;
        let body = TokenCommand {
            remove_credit_card_token: Some(TokenQuery {
                payer_id: Some(source.payer_id),
                credit_card_token_id: source.token_id,
            }),
            ..self.token_command("REMOVE_TOKEN")
        };
        let refusal = match self.payments_call(&body).await {
            Ok(_) => return Ok(()),
            Err(error) if error.outcome() == CallOutcome::Refused => error,
            Err(error) => return Err(scrubbed(error, source.token_id)),
        };
        // PayU documents no distinct answer for a token it does not hold (it refuses with
        // `code: ERROR` and a free text), so its own list decides: a token PayU lists under
        // no payer at all is removed; one it still holds (for any payer) is not.
        match self.find_token(None, source.token_id).await? {
            None => Ok(()),
            Some(_) => Err(scrubbed(refusal, source.token_id)),
        }
    }

    /// The token `token_id` (of `payer_id`, when given) as PayU lists it (`None`: PayU holds
    /// none).
    async fn find_token(
        &self,
        payer_id: Option<&str>,
        token_id: &str,
    ) -> Result<Option<TokenInfo>, ProviderError> {
        let body = TokenCommand {
            credit_card_token_information: Some(TokenQuery {
                payer_id,
                credit_card_token_id: token_id,
            }),
            ..self.token_command("GET_TOKENS")
        };
        let raw = self
            .payments_call(&body)
            .await
            .map_err(|e| scrubbed(e, token_id))?;
        let answer: TokenListAnswer = self.decode_answer(&raw)?;
        Ok(answer
            .credit_card_token_list
            .unwrap_or_default()
            .into_iter()
            .find(|t| t.credit_card_token_id == token_id))
    }

    fn token_command(&self, command: &'static str) -> TokenCommand<'_> {
        TokenCommand {
            language: "es",
            command,
            merchant: self.merchant(),
            credit_card_token_information: None,
            remove_credit_card_token: None,
        }
    }
}

/// PayU's payer id for a payledger customer.
fn payer_of(customer: CustomerId) -> String {
    customer.to_string()
}

/// A PayU error detail never carries the token, whatever PayU echoed.
fn scrubbed(error: ProviderError, token_id: &str) -> ProviderError {
    let detail = crate::http::scrub(&error.detail, [token_id]);
    ProviderError { detail, ..error }
}

// ---------------------------------------------------------------------------------------------
// Wire shapes
// ---------------------------------------------------------------------------------------------

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TokenCommand<'a> {
    language: &'static str,
    command: &'static str,
    merchant: Merchant<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    credit_card_token_information: Option<TokenQuery<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    remove_credit_card_token: Option<TokenQuery<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TokenQuery<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    payer_id: Option<&'a str>,
    credit_card_token_id: &'a str,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TokenListAnswer {
    #[serde(default)]
    credit_card_token_list: Option<Vec<TokenInfo>>,
}

/// One token as PayU lists it; unknown fields are ignored. No `Debug`: it holds the token.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TokenInfo {
    credit_card_token_id: String,
    /// PayU writes ids as text; a number is read as its digits.
    #[serde(default)]
    payer_id: Option<serde_json::Value>,
    #[serde(default)]
    payment_method: Option<String>,
    #[serde(default)]
    masked_number: Option<String>,
    #[serde(default)]
    expiration_date: Option<String>,
}

impl TokenInfo {
    /// The franchise to charge it with and what the customer may see, once the token is
    /// known to be `token_id` of `payer_id`.
    fn checked(
        &self,
        payer_id: &str,
        token_id: &str,
    ) -> Result<(&'static str, MethodDisplay), ProviderError> {
        let payer = match &self.payer_id {
            Some(serde_json::Value::String(text)) => Some(text.clone()),
            Some(serde_json::Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        // A token made for another payer is not this customer's card.
        if self.credit_card_token_id != token_id || payer.as_deref() != Some(payer_id) {
            return Err(ProviderError::rejected(
                "the PayU card token belongs to another payer",
            ));
        }
        let franchise = self
            .payment_method
            .as_deref()
            .and_then(|m| CARD_FRANCHISES.iter().find(|f| **f == m))
            .copied()
            .ok_or_else(|| {
                ProviderError::rejected(
                    "the PayU card token is of a franchise payledger cannot charge",
                )
            })?;
        let (exp_month, exp_year) = match self.expiration_date.as_deref() {
            Some(text) => expiry(text)
                .map(|(m, y)| (Some(m), Some(y)))
                .ok_or_else(|| bad("an invalid expiration date"))?,
            None => (None, None),
        };
        let display = MethodDisplay {
            brand: Some(franchise.to_owned()),
            last_four: Some(last_four(self.masked_number.as_deref())?),
            exp_month,
            exp_year,
            phone_masked: None,
        }
        .checked()
        .map_err(|e| bad(&format!("a token whose {e}")))?;
        Ok((franchise, display))
    }
}

fn bad(what: &str) -> ProviderError {
    ProviderError::server_error(format!("PayU answered {what}"))
}

/// The last four digits of PayU's `maskedNumber` (`403799******1984`).
fn last_four(masked: Option<&str>) -> Result<String, ProviderError> {
    let masked = masked.ok_or_else(|| bad("a token without its masked number"))?;
    let digits = masked.len().checked_sub(4).and_then(|i| masked.get(i..));
    match digits {
        Some(four) if four.bytes().all(|b| b.is_ascii_digit()) => Ok(four.to_owned()),
        _ => Err(bad("an invalid masked number")),
    }
}

/// `YYYY/MM` (the format `CREATE_TOKEN` takes) as (month, year).
fn expiry(text: &str) -> Option<(u8, u16)> {
    let (year, month) = text.split_once('/')?;
    if year.len() != 4 || month.len() != 2 {
        return None;
    }
    Some((month.parse().ok()?, year.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(json: serde_json::Value) -> TokenInfo {
        serde_json::from_value(json).unwrap()
    }

    const TOKEN: &str = "46b7f03e-1b3b-4ce8-ad90-fe1a482f76c3";
    const PAYER: &str = "0191f7a0-0000-7000-8000-00000000c0de";

    #[test]
    fn a_source_keeps_franchise_token_and_payer_and_reads_back() {
        let source = TokenSource {
            franchise: "MASTERCARD",
            token_id: TOKEN,
            payer_id: PAYER,
        };
        let id = source.source_id();
        assert_eq!(id, format!("MASTERCARD:{TOKEN}@{PAYER}"));
        assert!(TokenSource::parse(&id).unwrap() == source);
        for bad in [
            TOKEN.to_owned(),
            format!("VISA:{TOKEN}"),
            format!("{TOKEN}@{PAYER}"),
            format!("VISA:{TOKEN}@"),
            format!("VISA:@{PAYER}"),
            format!("VISA:{TOKEN}@a b"),
            format!("VISA:to ken@{PAYER}"),
        ] {
            assert!(TokenSource::parse(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn display_comes_from_payus_record_of_the_token() {
        let info = listed(serde_json::json!({
            "creditCardTokenId": TOKEN, "name": "APPROVED", "payerId": PAYER,
            "identificationNumber": "32144457", "paymentMethod": "VISA", "number": null,
            "expirationDate": null, "creationDate": "2021-06-23T13:36:36",
            "maskedNumber": "491633******7505", "errorDescription": null
        }));
        let (franchise, display) = info.checked(PAYER, TOKEN).unwrap();
        assert_eq!(franchise, "VISA");
        assert_eq!(display.brand.as_deref(), Some("VISA"));
        assert_eq!(display.last_four.as_deref(), Some("7505"));
        assert_eq!((display.exp_month, display.exp_year), (None, None));

        let amex = listed(serde_json::json!({
            "creditCardTokenId": TOKEN, "payerId": PAYER, "paymentMethod": "AMEX",
            "maskedNumber": "377813*****0001", "expirationDate": "2029/07"
        }));
        let (_, display) = amex.checked(PAYER, TOKEN).unwrap();
        assert_eq!(display.last_four.as_deref(), Some("0001"));
        assert_eq!((display.exp_month, display.exp_year), (Some(7), Some(2029)));
    }

    #[test]
    fn a_token_of_another_payer_or_an_unusable_record_is_refused() {
        let of = |payer: serde_json::Value, method: &str, masked: &str| {
            listed(serde_json::json!({
                "creditCardTokenId": TOKEN, "payerId": payer,
                "paymentMethod": method, "maskedNumber": masked
            }))
        };
        let other = of(
            serde_json::json!("someone-else"),
            "VISA",
            "491633******7505",
        );
        let refused = other.checked(PAYER, TOKEN).err().unwrap();
        assert_eq!(refused.outcome(), CallOutcome::Refused);
        assert!(!refused.detail.contains(TOKEN), "{}", refused.detail);
        assert!(of(serde_json::json!(PAYER), "PSE", "491633******7505")
            .checked(PAYER, TOKEN)
            .is_err());
        assert!(of(serde_json::json!(PAYER), "VISA", "491633******75x5")
            .checked(PAYER, TOKEN)
            .is_err());
        assert!(of(serde_json::json!(PAYER), "VISA", "505")
            .checked(PAYER, TOKEN)
            .is_err());
        // A numeric payer id is its digits.
        assert!(of(serde_json::json!(10), "VISA", "491633******7505")
            .checked("10", TOKEN)
            .is_ok());
    }

    #[test]
    fn errors_never_carry_the_token() {
        let error = ProviderError::rejected(format!("token {TOKEN} no existe"));
        let scrubbed = scrubbed(error, TOKEN);
        assert!(!scrubbed.detail.contains(TOKEN), "{}", scrubbed.detail);
        assert_eq!(scrubbed.outcome(), CallOutcome::Refused);
    }

    #[test]
    fn queries_have_payus_shape() {
        let provider = PayuProvider::new(crate::payu::PayuConfig::default()).unwrap();
        let body = TokenCommand {
            remove_credit_card_token: Some(TokenQuery {
                payer_id: Some(PAYER),
                credit_card_token_id: TOKEN,
            }),
            ..provider.token_command("REMOVE_TOKEN")
        };
        let sent = serde_json::to_value(&body).unwrap();
        assert_eq!(sent["command"], "REMOVE_TOKEN");
        assert_eq!(sent["removeCreditCardToken"]["payerId"], PAYER);
        assert_eq!(sent["removeCreditCardToken"]["creditCardTokenId"], TOKEN);
        assert!(sent["merchant"]["apiLogin"].is_string());
        assert!(sent.get("creditCardTokenInformation").is_none());
    }
}
