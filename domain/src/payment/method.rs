//! How a customer pays: the method types, and the details a method carries to its provider.

use serde::{Deserialize, Serialize};

use crate::text::{parsed_text, printable_ascii, redacted_debug};

/// Declares the method types from one list of (variant, wire name): the enum, its serde
/// names, `ALL` and `as_str` cannot drift apart.
macro_rules! method_types {
    ($($variant:ident = $wire:literal),+ $(,)?) => {
        /// How the customer pays. Only the type is kept in the ledger; tokens never are.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum PaymentMethodType {
            $(#[serde(rename = $wire)] $variant),+
        }

        impl PaymentMethodType {
            /// Every method type, in the order the API lists them.
            pub const ALL: [PaymentMethodType; [$($wire),+].len()] =
                [$(PaymentMethodType::$variant),+];

            /// The wire name: in requests, answers, events and the catalog.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(PaymentMethodType::$variant => $wire),+
                }
            }
        }
    };
}

method_types! {
    Card = "CARD",
    Nequi = "NEQUI",
    Pse = "PSE",
    Efecty = "EFECTY",
    Gcash = "GCASH",
    Maya = "MAYA",
    BancolombiaTransfer = "BANCOLOMBIA_TRANSFER",
    BancolombiaQr = "BANCOLOMBIA_QR",
    Daviplata = "DAVIPLATA",
}

/// The text names no payment method type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unknown payment method type")]
pub struct UnknownMethodType;

impl std::str::FromStr for PaymentMethodType {
    type Err = UnknownMethodType;

    /// Exactly a wire name (`CARD`, not `card`).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|method| method.as_str() == text)
            .ok_or(UnknownMethodType)
    }
}

/// A method detail that is not 1 to `len_max` printable ASCII characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("must be 1 to {len_max} printable ASCII characters")]
pub struct PrintableTextError {
    pub len_max: usize,
}

/// A card token from the provider's own tokenization (or a sandbox test token): 1 to 512
/// printable ASCII characters. It buys a charge, so its `Debug` shows none of it.
#[derive(Clone, PartialEq, Eq)]
pub struct CardToken(String);

impl CardToken {
    pub const LEN_MAX: usize = 512;
}

parsed_text!(CardToken, PrintableTextError, |text| {
    printable_ascii(text, CardToken::LEN_MAX)
        .then_some(())
        .ok_or(PrintableTextError {
            len_max: CardToken::LEN_MAX,
        })
});
redacted_debug!(CardToken);

/// One identifying detail of a non-card method (a Nequi phone number, a PSE bank code,
/// legal id type or legal id): 1 to 64 printable ASCII characters. Personal data, so its
/// `Debug` shows none of it.
#[derive(Clone, PartialEq, Eq)]
pub struct MethodDetail(String);

impl MethodDetail {
    pub const LEN_MAX: usize = 64;
}

parsed_text!(MethodDetail, PrintableTextError, |text| {
    printable_ascii(text, MethodDetail::LEN_MAX)
        .then_some(())
        .ok_or(PrintableTextError {
            len_max: MethodDetail::LEN_MAX,
        })
});
redacted_debug!(MethodDetail);

/// What the customer's bank or wallet shows them about the payment (`payment_description` of a
/// Bancolombia transfer, a Bancolombia QR or Daviplata): 1 to 64 characters, none of them a
/// control character or a single quote (Wompi refuses those), not blank. The merchant may put
/// the customer's name or order in it, so its `Debug` shows none of it.
#[derive(Clone, PartialEq, Eq)]
pub struct PaymentDescription(String);

impl PaymentDescription {
    pub const LEN_MAX: usize = 64;
    /// Daviplata's (and PSE's) limit at Wompi.
    pub const SHORT_LEN_MAX: usize = 30;

    /// Characters, not bytes: Wompi counts what the customer reads.
    pub fn len_chars(&self) -> usize {
        self.0.chars().count()
    }
}

/// A payment description that is blank, too long, or has a control character or a `'`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "must be 1 to {len_max} characters, not blank, without control characters or single quotes"
)]
pub struct PaymentDescriptionError {
    pub len_max: usize,
}

parsed_text!(PaymentDescription, PaymentDescriptionError, |text| {
    let count = text.chars().count();
    let ok = (1..=PaymentDescription::LEN_MAX).contains(&count)
        && !text.trim().is_empty()
        && !text.chars().any(|c| c.is_control() || c == '\'');
    ok.then_some(()).ok_or(PaymentDescriptionError {
        len_max: PaymentDescription::LEN_MAX,
    })
});
redacted_debug!(PaymentDescription);

/// Who pays through PSE, in PSE's own codes: 0 a natural person, 1 a company.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PseUserType {
    Person,
    Company,
}

/// Neither PSE user type code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("must be 0 (person) or 1 (company)")]
pub struct PseUserTypeError;

impl PseUserType {
    pub fn code(self) -> u8 {
        match self {
            PseUserType::Person => 0,
            PseUserType::Company => 1,
        }
    }
}

impl TryFrom<u8> for PseUserType {
    type Error = PseUserTypeError;

    fn try_from(code: u8) -> Result<Self, Self::Error> {
        match code {
            0 => Ok(PseUserType::Person),
            1 => Ok(PseUserType::Company),
            _ => Err(PseUserTypeError),
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn every_wire_name_parses_to_its_type_and_serde_writes_the_same_name() {
        for method in PaymentMethodType::ALL {
            assert_eq!(method.as_str().parse::<PaymentMethodType>(), Ok(method));
            let json = serde_json::to_string(&method).unwrap();
            assert_eq!(json, format!("\"{}\"", method.as_str()));
            assert_eq!(
                serde_json::from_str::<PaymentMethodType>(&json).unwrap(),
                method
            );
        }
        assert_eq!(PaymentMethodType::ALL.len(), 9);
        for (method, wire) in [
            (
                PaymentMethodType::BancolombiaTransfer,
                "BANCOLOMBIA_TRANSFER",
            ),
            (PaymentMethodType::BancolombiaQr, "BANCOLOMBIA_QR"),
            (PaymentMethodType::Daviplata, "DAVIPLATA"),
        ] {
            assert_eq!(method.as_str(), wire);
            assert_eq!(wire.parse::<PaymentMethodType>(), Ok(method));
        }
    }

    #[test]
    fn a_name_that_is_not_exactly_a_wire_name_is_unknown() {
        for text in ["", "card", "Card", " CARD", "CARD ", "WALLET"] {
            assert_eq!(text.parse::<PaymentMethodType>(), Err(UnknownMethodType));
        }
        assert_eq!(UnknownMethodType.to_string(), "unknown payment method type");
    }

    #[test]
    fn a_card_token_is_bounded_printable_ascii_and_never_shown() {
        let token = CardToken::parse("tok_sandbox_approved").unwrap();
        assert_eq!(token.as_str(), "tok_sandbox_approved");
        assert_eq!(format!("{token:?}"), "CardToken(<20 bytes>)");
        assert!(CardToken::parse(&"t".repeat(CardToken::LEN_MAX)).is_ok());
        let refused = CardToken::parse(&"t".repeat(CardToken::LEN_MAX + 1)).unwrap_err();
        assert_eq!(
            refused.to_string(),
            "must be 1 to 512 printable ASCII characters"
        );
        assert!(CardToken::parse("").is_err());
        assert!(CardToken::parse("tok 1").is_err());
    }

    #[test]
    fn a_method_detail_is_at_most_64_printable_ascii_characters() {
        assert!(MethodDetail::parse("3001234567").is_ok());
        assert!(MethodDetail::parse(&"1".repeat(64)).is_ok());
        assert_eq!(
            MethodDetail::parse(&"1".repeat(65))
                .unwrap_err()
                .to_string(),
            "must be 1 to 64 printable ASCII characters"
        );
        assert!(MethodDetail::parse("").is_err());
        assert!(format!("{:?}", MethodDetail::parse("CC").unwrap()).contains("<2 bytes>"));
    }

    #[test]
    fn a_payment_description_is_bounded_text_without_controls_or_single_quotes_and_never_shown() {
        let text = "Pago pedido #42 de Ana Pérez";
        let description = PaymentDescription::parse(text).unwrap();
        assert_eq!(description.as_str(), text);
        assert_eq!(description.len_chars(), 28);
        assert_eq!(
            format!("{description:?}"),
            format!("PaymentDescription(<{} bytes>)", text.len())
        );
        assert!(PaymentDescription::parse(&"ñ".repeat(64)).is_ok());
        for bad in ["", "   ", "a\nb", "it's", "tab\there", &"x".repeat(65)] {
            assert_eq!(
                PaymentDescription::parse(bad).unwrap_err(),
                PaymentDescriptionError { len_max: 64 },
                "{bad:?}"
            );
        }
        assert_eq!(
            PaymentDescriptionError { len_max: 64 }.to_string(),
            "must be 1 to 64 characters, not blank, without control characters or single quotes"
        );
    }

    #[test]
    fn pse_user_types_are_0_and_1() {
        assert_eq!(PseUserType::try_from(0), Ok(PseUserType::Person));
        assert_eq!(PseUserType::try_from(1), Ok(PseUserType::Company));
        assert_eq!(PseUserType::try_from(2), Err(PseUserTypeError));
        assert_eq!(PseUserType::Company.code(), 1);
    }

    proptest! {
        #[test]
        fn a_detail_parses_exactly_when_it_is_1_to_64_printable_ascii(text in "\\PC{0,80}") {
            let good = !text.is_empty()
                && text.len() <= MethodDetail::LEN_MAX
                && text.bytes().all(|b| b.is_ascii_graphic());
            prop_assert_eq!(MethodDetail::parse(&text).is_ok(), good);
        }

        #[test]
        fn pse_codes_round_trip(code in any::<u8>()) {
            match PseUserType::try_from(code) {
                Ok(kind) => prop_assert_eq!(kind.code(), code),
                Err(_) => prop_assert!(code > 1),
            }
        }
    }
}
