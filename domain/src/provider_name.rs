//! A payment provider's name as merchants and configuration spell it (`wompi`, `payu`).
//! Only the shape is a domain rule: which providers exist is the deployment's to say.

use std::fmt;

use crate::text::parsed_text;

/// 1 to 32 lowercase ASCII letters, digits, `-` or `_`, starting with a letter.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProviderName(String);

/// The text cannot be a provider's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "must be 1 to {} lowercase letters, digits, `-` or `_`, starting with a letter",
    ProviderName::LEN_MAX
)]
pub struct ProviderNameError;

impl ProviderName {
    pub const LEN_MAX: usize = 32;
}

fn check(text: &str) -> Result<(), ProviderNameError> {
    let mut bytes = text.bytes();
    let well_formed = text.len() <= ProviderName::LEN_MAX
        && bytes.next().is_some_and(|b| b.is_ascii_lowercase())
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    well_formed.then_some(()).ok_or(ProviderNameError)
}

parsed_text!(ProviderName, ProviderNameError, check);

impl fmt::Display for ProviderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn the_providers_names_are_names() {
        for name in ["wompi", "payu", "maya", "gcash", "sandbox", "pay-mongo_2"] {
            assert_eq!(ProviderName::parse(name).unwrap().as_str(), name);
        }
    }

    #[test]
    fn other_shapes_are_refused() {
        for text in ["", "Wompi", "2c2p", "-payu", "pay u", "wompi\n", "ñequi"] {
            assert_eq!(
                ProviderName::parse(text),
                Err(ProviderNameError),
                "{text:?}"
            );
        }
        assert!(ProviderName::parse(&"a".repeat(ProviderName::LEN_MAX)).is_ok());
        assert!(ProviderName::parse(&"a".repeat(ProviderName::LEN_MAX + 1)).is_err());
    }

    proptest! {
        #[test]
        fn a_name_of_the_shape_round_trips(text in "[a-z][a-z0-9_-]{0,31}") {
            prop_assert_eq!(ProviderName::try_from(text.clone()).map(ProviderName::into_string), Ok(text));
        }

        #[test]
        fn whatever_is_accepted_has_the_shape(text in "\\PC{0,40}") {
            if let Ok(name) = ProviderName::parse(&text) {
                prop_assert!(name.as_str().len() <= ProviderName::LEN_MAX);
                prop_assert!(name.as_str().starts_with(|c: char| c.is_ascii_lowercase()));
            }
        }
    }
}
