//! Amounts providers write as JSON numbers (Maya, EBANX): read and written as the raw JSON
//! text, never through a float.

use std::str::FromStr;

use domain::{Currency, Money, MoneyError};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// An amount as a provider writes it: a JSON number or a decimal string. Kept as the raw
/// JSON text so no float ever touches it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub(crate) struct JsonAmount(pub Box<RawValue>);

impl JsonAmount {
    /// An exact JSON number token (`129.50`), written from the decimal's own digits.
    pub(crate) fn number(amount: Decimal) -> Option<JsonAmount> {
        RawValue::from_string(amount.to_string())
            .ok()
            .map(JsonAmount)
    }

    /// A JSON string (`"129.50"`), as some providers write amounts.
    #[cfg(test)]
    pub(crate) fn string(amount: Decimal) -> Option<JsonAmount> {
        serde_json::to_string(&amount.to_string())
            .ok()
            .and_then(|s| RawValue::from_string(s).ok())
            .map(JsonAmount)
    }

    /// The digits, whether the provider sent a number or a string.
    pub(crate) fn text(&self) -> Option<String> {
        let raw = self.0.get();
        if raw.starts_with('"') {
            serde_json::from_str::<String>(raw).ok()
        } else {
            Some(raw.to_owned())
        }
    }

    /// Strictly parsed: digits, at most the currency's decimals, above zero.
    pub(crate) fn money(&self, currency: &str) -> Result<Money, String> {
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
