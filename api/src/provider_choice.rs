//! Which providers a merchant may name as its preference: every provider this build can
//! connect to, configured in this deployment or not (the router passes over one it lacks).
//! The one place that knows them, until the connector registry answers instead.

use domain::ProviderName;

const PREFERABLE: [&str; 5] = ["wompi", "payu", "maya", "gcash", "sandbox"];

/// The provider `name` names, when a merchant may prefer it.
pub fn preferable(name: String) -> Option<ProviderName> {
    ProviderName::try_from(name)
        .ok()
        .filter(|name| PREFERABLE.contains(&name.as_str()))
}

/// What a caller whose preference names no such provider is told.
pub fn refusal() -> String {
    format!("must be one of {}", PREFERABLE.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_known_providers_are_preferable_and_nothing_else() {
        for name in PREFERABLE {
            assert_eq!(
                preferable(name.to_owned()).map(ProviderName::into_string),
                Some(name.to_owned())
            );
        }
        for name in ["stripe", "Wompi", "", "wompi "] {
            assert_eq!(preferable(name.to_owned()), None, "{name:?}");
        }
        assert_eq!(
            refusal(),
            "must be one of wompi, payu, maya, gcash, sandbox"
        );
    }
}
