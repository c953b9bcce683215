//! The payer's details some providers ask for (PayU: name, phone, document, and the browser
//! and device session the customer pays from). Personal data: each type's `Debug` shows only
//! its length, so none of it reaches a log.

use crate::text::{parsed_text, redacted_debug};

/// The payer's name as they write it: 1 to 150 characters, not blank, without control
/// characters.
#[derive(Clone, PartialEq, Eq)]
pub struct FullName(String);

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "must be 1 to {} characters, not blank, without control characters",
    FullName::CHARS_MAX
)]
pub struct FullNameError;

impl FullName {
    pub const CHARS_MAX: usize = 150;
}

parsed_text!(FullName, FullNameError, |text| {
    let good = text.chars().count() <= FullName::CHARS_MAX
        && !text.trim().is_empty()
        && !text.chars().any(char::is_control);
    good.then_some(()).ok_or(FullNameError)
});
redacted_debug!(FullName);

/// An E.164-style phone number: 7 (the shortest national number in the markets served) to
/// 15 digits, optionally after a leading `+`.
#[derive(Clone, PartialEq, Eq)]
pub struct Phone(String);

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "must be {} to {} digits, optionally after a leading +",
    Phone::DIGITS_MIN,
    Phone::DIGITS_MAX
)]
pub struct PhoneError;

impl Phone {
    pub const DIGITS_MIN: usize = 7;
    pub const DIGITS_MAX: usize = 15;
}

parsed_text!(Phone, PhoneError, |text| {
    let digits = text.strip_prefix('+').unwrap_or(text);
    let good = (Phone::DIGITS_MIN..=Phone::DIGITS_MAX).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit());
    good.then_some(()).ok_or(PhoneError)
});
redacted_debug!(Phone);

/// The payer's identity document number: 1 to 20 letters, digits or hyphens.
#[derive(Clone, PartialEq, Eq)]
pub struct DocumentNumber(String);

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("must be 1 to {} letters, digits or hyphens", DocumentNumber::LEN_MAX)]
pub struct DocumentNumberError;

impl DocumentNumber {
    pub const LEN_MAX: usize = 20;
}

parsed_text!(DocumentNumber, DocumentNumberError, |text| {
    let good = !text.is_empty()
        && text.len() <= DocumentNumber::LEN_MAX
        && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    good.then_some(()).ok_or(DocumentNumberError)
});
redacted_debug!(DocumentNumber);

/// The payer's browser: 1 to 512 printable ASCII characters, spaces included.
#[derive(Clone, PartialEq, Eq)]
pub struct UserAgent(String);

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("must be 1 to {} printable ASCII characters", UserAgent::LEN_MAX)]
pub struct UserAgentError;

impl UserAgent {
    pub const LEN_MAX: usize = 512;
}

parsed_text!(UserAgent, UserAgentError, |text| {
    let good = !text.is_empty()
        && text.len() <= UserAgent::LEN_MAX
        && text.bytes().all(|b| b.is_ascii_graphic() || b == b' ');
    good.then_some(()).ok_or(UserAgentError)
});
redacted_debug!(UserAgent);

/// The provider's anti-fraud session of the payer's device: 1 to 255 printable ASCII
/// characters without spaces.
#[derive(Clone, PartialEq, Eq)]
pub struct DeviceSessionId(String);

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "must be 1 to {} printable ASCII characters without spaces",
    DeviceSessionId::LEN_MAX
)]
pub struct DeviceSessionIdError;

impl DeviceSessionId {
    pub const LEN_MAX: usize = 255;
}

parsed_text!(DeviceSessionId, DeviceSessionIdError, |text| {
    crate::text::printable_ascii(text, DeviceSessionId::LEN_MAX)
        .then_some(())
        .ok_or(DeviceSessionIdError)
});
redacted_debug!(DeviceSessionId);

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn good_details_are_kept_as_given_and_never_shown() {
        let name = FullName::parse("José Ñáñez").unwrap();
        assert_eq!(name.as_str(), "José Ñáñez");
        assert!(!format!("{name:?}").contains("José"));
        assert_eq!(
            Phone::parse("+573001234567").unwrap().as_str(),
            "+573001234567"
        );
        assert!(Phone::parse("3001234").is_ok());
        assert!(DocumentNumber::parse("1999-888777").is_ok());
        assert!(UserAgent::parse("Mozilla/5.0 (X11; Linux x86_64)").is_ok());
        assert!(DeviceSessionId::parse("vghs6tvkcle931686k1900o6e1").is_ok());
    }

    #[test]
    fn bad_details_are_refused_with_their_rule() {
        assert_eq!(FullName::parse("  "), Err(FullNameError));
        assert_eq!(FullName::parse("Ana\u{7}"), Err(FullNameError));
        assert!(FullName::parse(&"ñ".repeat(FullName::CHARS_MAX)).is_ok());
        assert!(FullName::parse(&"a".repeat(FullName::CHARS_MAX + 1)).is_err());
        assert_eq!(
            FullNameError.to_string(),
            "must be 1 to 150 characters, not blank, without control characters"
        );
        for phone in [
            "300-123-4567",
            "+123456",
            "1234567890123456",
            "++1234567",
            "",
        ] {
            assert_eq!(Phone::parse(phone), Err(PhoneError), "{phone:?}");
        }
        assert_eq!(
            PhoneError.to_string(),
            "must be 7 to 15 digits, optionally after a leading +"
        );
        assert_eq!(DocumentNumber::parse("1999 888"), Err(DocumentNumberError));
        assert!(DocumentNumber::parse(&"1".repeat(21)).is_err());
        assert_eq!(
            DocumentNumberError.to_string(),
            "must be 1 to 20 letters, digits or hyphens"
        );
        assert_eq!(UserAgent::parse("tab\there"), Err(UserAgentError));
        assert_eq!(
            UserAgentError.to_string(),
            "must be 1 to 512 printable ASCII characters"
        );
        assert_eq!(
            DeviceSessionId::parse("has space"),
            Err(DeviceSessionIdError)
        );
        assert_eq!(
            DeviceSessionIdError.to_string(),
            "must be 1 to 255 printable ASCII characters without spaces"
        );
    }

    proptest! {
        #[test]
        fn a_phone_is_accepted_exactly_with_7_to_15_digits(
            plus in any::<bool>(),
            digits in "[0-9]{0,20}",
        ) {
            let text = if plus { format!("+{digits}") } else { digits.clone() };
            prop_assert_eq!(Phone::parse(&text).is_ok(), (7..=15).contains(&digits.len()));
        }

        #[test]
        fn an_accepted_user_agent_is_bounded_printable_ascii(text in "\\PC{0,600}") {
            if let Ok(agent) = UserAgent::parse(&text) {
                prop_assert!(agent.as_str().len() <= UserAgent::LEN_MAX);
                prop_assert!(agent.as_str().bytes().all(|b| (b' '..=b'~').contains(&b)));
            }
        }
    }
}
