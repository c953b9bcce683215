//! Texts that come from outside (requests, configuration) and are held only once they are
//! known to be good: each type's `TryFrom<String>` is its one way in (parse, don't validate).

/// 1 to `len_max` printable ASCII characters: no spaces, no control characters.
pub(crate) fn printable_ascii(text: &str, len_max: usize) -> bool {
    !text.is_empty() && text.len() <= len_max && text.bytes().all(|b| b.is_ascii_graphic())
}

/// The ways into and out of a `struct $name(String)` whose rule is `$check`.
macro_rules! parsed_text {
    ($name:ident, $error:ty, $check:expr) => {
        impl $name {
            pub fn parse(text: &str) -> Result<Self, $error> {
                Self::try_from(text.to_owned())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = $error;

            fn try_from(text: String) -> Result<Self, Self::Error> {
                let check: fn(&str) -> Result<(), $error> = $check;
                check(&text)?;
                Ok(Self(text))
            }
        }

        impl std::str::FromStr for $name {
            type Err = $error;

            fn from_str(text: &str) -> Result<Self, Self::Err> {
                Self::parse(text)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

pub(crate) use parsed_text;

/// Shows a secret's or a person's text as its length only, so a `Debug` in a log or a panic
/// never carries it.
macro_rules! redacted_debug {
    ($name:ident) => {
        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{}(<{} bytes>)", stringify!($name), self.0.len())
            }
        }
    };
}

pub(crate) use redacted_debug;

#[cfg(test)]
mod tests {
    use super::printable_ascii;

    #[test]
    fn printable_ascii_is_bounded_and_has_no_space_or_control() {
        assert!(printable_ascii("a", 1));
        assert!(printable_ascii("~!", 2));
        assert!(!printable_ascii("", 5));
        assert!(!printable_ascii("abc", 2));
        assert!(!printable_ascii("a b", 5));
        assert!(!printable_ascii("a\tb", 5));
        assert!(!printable_ascii("ñ", 5));
    }
}
