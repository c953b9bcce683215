//! Why a merchant refunds, in its own words; kept in the refund's event.

use std::fmt;

use crate::text::parsed_text;

/// At most 256 characters (any script, no control characters: the event store's text holds no
/// NUL, and a reason is one line); may be empty.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RefundReason(String);

/// The reason is longer than a refund keeps, or holds a control character.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "at most {} characters, none of them a control character",
    RefundReason::CHARS_MAX
)]
pub struct RefundReasonError;

impl RefundReason {
    pub const CHARS_MAX: usize = 256;
}

parsed_text!(RefundReason, RefundReasonError, |text| {
    (text.chars().count() <= RefundReason::CHARS_MAX && !text.chars().any(char::is_control))
        .then_some(())
        .ok_or(RefundReasonError)
});

impl fmt::Display for RefundReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn counted_in_characters_not_bytes() {
        let longest = "ñ".repeat(RefundReason::CHARS_MAX);
        assert_eq!(RefundReason::parse(&longest).unwrap().as_str(), longest);
        assert_eq!(
            RefundReason::parse(&format!("{longest}a")),
            Err(RefundReasonError)
        );
        assert!(RefundReasonError
            .to_string()
            .starts_with("at most 256 characters"));
        assert!(RefundReason::parse("").is_ok());
        for control in ["a\u{0}b", "line\nbreak", "\u{7f}"] {
            assert_eq!(RefundReason::parse(control), Err(RefundReasonError));
        }
    }

    proptest! {
        #[test]
        fn accepted_exactly_up_to_256_characters(text in "\\PC{0,300}") {
            prop_assert_eq!(
                RefundReason::parse(&text).is_ok(),
                text.chars().count() <= RefundReason::CHARS_MAX
            );
        }
    }
}
