//! Where a redirect flow (PSE, wallets) sends the customer back after paying.

use std::fmt;

use crate::text::parsed_text;

/// An absolute `http://` or `https://` URL of at most 2048 printable ASCII characters
/// (what browsers and providers reliably carry).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ReturnUrl(String);

/// The text is not a URL a customer can be sent back to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("must be an http(s) URL of at most {} characters", ReturnUrl::LEN_MAX)]
pub struct ReturnUrlError;

impl ReturnUrl {
    pub const LEN_MAX: usize = 2048;
}

fn check(text: &str) -> Result<(), ReturnUrlError> {
    let plausible = text.len() <= ReturnUrl::LEN_MAX
        && (text.starts_with("https://") || text.starts_with("http://"))
        && text.bytes().all(|b| b.is_ascii_graphic());
    plausible.then_some(()).ok_or(ReturnUrlError)
}

parsed_text!(ReturnUrl, ReturnUrlError, check);

impl fmt::Display for ReturnUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn an_http_or_https_url_is_kept_as_given() {
        for text in [
            "https://shop.example/return",
            "http://localhost:3000/back?o=1",
        ] {
            assert_eq!(ReturnUrl::parse(text).unwrap().as_str(), text);
        }
    }

    #[test]
    fn relative_other_scheme_or_spaced_urls_are_refused_with_the_rule() {
        for text in [
            "",
            "/return",
            "shop.example/return",
            "ftp://shop.example",
            "javascript:alert(1)",
            "https://shop.example/a b",
            "HTTPS://shop.example",
        ] {
            assert_eq!(ReturnUrl::parse(text), Err(ReturnUrlError), "{text:?}");
        }
        assert_eq!(
            ReturnUrlError.to_string(),
            "must be an http(s) URL of at most 2048 characters"
        );
    }

    #[test]
    fn the_length_is_bounded_at_2048() {
        let head = "https://shop.example/";
        let longest = format!("{head}{}", "a".repeat(ReturnUrl::LEN_MAX - head.len()));
        assert!(ReturnUrl::parse(&longest).is_ok());
        assert!(ReturnUrl::parse(&format!("{longest}a")).is_err());
    }

    proptest! {
        #[test]
        fn whatever_is_accepted_is_an_absolute_http_url(text in "(https?://)?\\PC{0,64}") {
            if let Ok(url) = ReturnUrl::parse(&text) {
                prop_assert!(url.as_str().starts_with("http://") || url.as_str().starts_with("https://"));
                prop_assert!(!url.as_str().contains(char::is_whitespace));
            }
        }
    }
}
