//! What a saved method shows its owner: enough to recognise it, never enough to use it.

use serde::{Deserialize, Serialize};

/// Display data of a saved method, as the provider reported it. Every field is optional
/// (a wallet has no brand, a card no phone).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MethodDisplay {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub brand: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_four: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp_month: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp_year: Option<u16>,
    /// A wallet's phone with all but its last four digits masked (`******4567`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone_masked: Option<String>,
}

/// Display data that could reveal more than it should, or is not display data at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MethodDisplayError {
    #[error("brand must be 1 to 32 letters, digits, spaces or dashes")]
    Brand,
    #[error("last_four must be exactly four digits")]
    LastFour,
    #[error("expiry must be a month 1-12 of a year 2000-2099")]
    Expiry,
    #[error("a masked phone shows at most its last four digits")]
    Phone,
}

impl MethodDisplay {
    pub const BRAND_LEN_MAX: usize = 32;

    /// Keeps only what is safe to show, or says which field is not.
    pub fn checked(self) -> Result<Self, MethodDisplayError> {
        if let Some(brand) = &self.brand {
            let ok = !brand.is_empty()
                && brand.len() <= Self::BRAND_LEN_MAX
                && brand
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == ' ' || c == '-');
            if !ok {
                return Err(MethodDisplayError::Brand);
            }
        }
        if let Some(last_four) = &self.last_four {
            if last_four.len() != 4 || !last_four.bytes().all(|b| b.is_ascii_digit()) {
                return Err(MethodDisplayError::LastFour);
            }
        }
        match (self.exp_month, self.exp_year) {
            (None, None) => {}
            (Some(month), Some(year))
                if (1..=12).contains(&month) && (2000..=2099).contains(&year) => {}
            _ => return Err(MethodDisplayError::Expiry),
        }
        if let Some(phone) = &self.phone_masked {
            let shown = phone.bytes().filter(|b| b.is_ascii_digit()).count();
            let ok = phone.len() <= 20
                && shown <= 4
                && phone.bytes().all(|b| b.is_ascii_digit() || b == b'*');
            if !ok {
                return Err(MethodDisplayError::Phone);
            }
        }
        Ok(self)
    }

    /// A phone number masked to its last four digits.
    pub fn mask_phone(phone: &str) -> String {
        let digits: Vec<char> = phone.chars().filter(char::is_ascii_digit).collect();
        let shown = digits.len().saturating_sub(4);
        digits
            .iter()
            .enumerate()
            .map(|(i, d)| if i < shown { '*' } else { *d })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_data_shows_no_more_than_a_brand_last_four_expiry_and_masked_phone() {
        let card = MethodDisplay {
            brand: Some("VISA".into()),
            last_four: Some("4242".into()),
            exp_month: Some(12),
            exp_year: Some(2030),
            phone_masked: None,
        };
        assert_eq!(card.clone().checked(), Ok(card));
        let whole_number = MethodDisplay {
            last_four: Some("4242424242424242".into()),
            ..MethodDisplay::default()
        };
        assert_eq!(whole_number.checked(), Err(MethodDisplayError::LastFour));
        let month_only = MethodDisplay {
            exp_month: Some(1),
            ..MethodDisplay::default()
        };
        assert_eq!(month_only.checked(), Err(MethodDisplayError::Expiry));
        let phone = MethodDisplay {
            phone_masked: Some("3991111111".into()),
            ..MethodDisplay::default()
        };
        assert_eq!(phone.checked(), Err(MethodDisplayError::Phone));
        assert_eq!(MethodDisplay::mask_phone("3991114567"), "******4567");
        assert_eq!(
            MethodDisplay::mask_phone("+63 917 123 4567"),
            "********4567"
        );
        assert_eq!(MethodDisplay::mask_phone("12"), "12");
        let masked = MethodDisplay {
            phone_masked: Some(MethodDisplay::mask_phone("3991114567")),
            ..MethodDisplay::default()
        };
        assert!(masked.checked().is_ok());
    }
}
