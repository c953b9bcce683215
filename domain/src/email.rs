//! A customer's email address, as a payment may carry it to the provider.

use std::fmt;

use crate::text::parsed_text;

/// A plausible email address: at most 254 printable ASCII characters (RFC 5321's path
/// limit), a non-empty local part, and a domain with a dot. Deliverability is the
/// provider's to find out. Personal data: its `Debug` shows only the domain.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

/// The text is not an email address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("is not an email address")]
pub struct EmailError;

impl Email {
    pub const LEN_MAX: usize = 254;
}

fn check(text: &str) -> Result<(), EmailError> {
    let plausible = text.len() <= Email::LEN_MAX
        && text.bytes().all(|b| b.is_ascii_graphic())
        && text
            .split_once('@')
            .is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'));
    plausible.then_some(()).ok_or(EmailError)
}

parsed_text!(Email, EmailError, check);

impl fmt::Debug for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let domain = self.0.split_once('@').map_or("", |(_, domain)| domain);
        write!(f, "Email(***@{domain})")
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn an_address_with_a_local_part_and_a_dotted_domain_is_kept_as_given() {
        let email = Email::parse("payer@example.com").unwrap();
        assert_eq!(email.as_str(), "payer@example.com");
        assert_eq!(
            Email::try_from("a+b@x.co".to_owned())
                .unwrap()
                .into_string(),
            "a+b@x.co"
        );
    }

    #[test]
    fn debug_shows_the_domain_and_hides_the_person() {
        let email = Email::parse("ana.maria@example.com").unwrap();
        assert_eq!(format!("{email:?}"), "Email(***@example.com)");
        assert_eq!(
            format!("{:?}", Some(&email)),
            "Some(Email(***@example.com))"
        );
    }

    #[test]
    fn not_an_address_is_refused_with_the_rule() {
        for text in [
            "",
            "payer",
            "@example.com",
            "payer@localhost",
            "pay er@example.com",
            "payer@exämple.com",
        ] {
            assert_eq!(Email::parse(text), Err(EmailError), "{text:?}");
        }
        assert_eq!(EmailError.to_string(), "is not an email address");
    }

    #[test]
    fn the_length_is_bounded_at_254() {
        let domain = "@example.com";
        let longest = format!("{}{domain}", "a".repeat(Email::LEN_MAX - domain.len()));
        assert!(Email::parse(&longest).is_ok());
        assert!(Email::parse(&format!("a{longest}")).is_err());
    }

    proptest! {
        #[test]
        fn whatever_is_accepted_keeps_the_rule(text in "\\PC{0,300}") {
            if let Ok(email) = Email::parse(&text) {
                prop_assert!(email.as_str().len() <= Email::LEN_MAX);
                prop_assert!(email.as_str().bytes().all(|b| b.is_ascii_graphic()));
                prop_assert!(email.as_str().contains('@'));
            }
        }

        #[test]
        fn a_well_formed_address_is_accepted(
            local in "[a-z0-9.+_-]{1,64}",
            host in "[a-z0-9-]{1,63}",
            tld in "[a-z]{2,10}",
        ) {
            let text = format!("{local}@{host}.{tld}");
            prop_assert_eq!(Email::parse(&text).map(Email::into_string), Ok(text));
        }
    }
}
