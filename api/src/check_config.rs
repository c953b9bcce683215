//! `payledger check-config --env production|test`: every problem that keeps the configured
//! providers and services from being used in that environment (test keys in production,
//! production keys in test, short secrets, plain http, missing values). Each problem names
//! the setting, never its value. `serve` runs the same check before it starts.

use connectors::registry;

use crate::config::Settings;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Environment {
    Production,
    Test,
}

impl Environment {
    pub fn from_env() -> Environment {
        match std::env::var("PAYLEDGER_ENV").as_deref() {
            Ok("production") => Environment::Production,
            _ => Environment::Test,
        }
    }
}

pub fn problems(settings: &Settings, environment: Environment) -> Vec<String> {
    let production = environment == Environment::Production;
    let mut problems = Vec::new();
    for (var, url) in [
        ("DATABASE_URL", &settings.database_url),
        ("AMQP_URL", &settings.amqp_url),
    ] {
        if production && std::env::var(var).is_err() {
            problems.push(format!("{var} is not set"));
        }
        if url.trim().is_empty() {
            problems.push(format!("{var} is empty"));
        }
    }
    if let Err(problem) =
        crate::rate_limit::RateLimitSettings::from_lookup(|name| std::env::var(name).ok())
    {
        problems.push(problem);
    }
    if let Err(problem) = crate::jwt::JwtSettings::from_lookup(|name| std::env::var(name).ok()) {
        problems.push(problem);
    }
    if let Err(problem) =
        commands::payments::FingerprintKey::new(settings.fingerprint_secret.as_bytes())
    {
        problems.push(format!("FINGERPRINT_SECRET {problem}"));
    }
    if production && settings.fingerprint_secret == commands::payments::TEST_FINGERPRINT_SECRET {
        problems.push(
            "FINGERPRINT_SECRET is the test secret: set a random one of 32 bytes or more".into(),
        );
    }
    if let Ok(value) = std::env::var("AMQP_QUEUE_TYPE") {
        if projections::topology::QueueType::parse(&value).is_none() {
            problems.push("AMQP_QUEUE_TYPE must be quorum or classic".to_owned());
        }
    }
    if broker::nodes(&settings.amqp_url)
        .iter()
        .any(|node| !node.starts_with("amqp://") && !node.starts_with("amqps://"))
    {
        problems
            .push("AMQP_URL must list amqp:// or amqps:// URLs, separated by commas".to_owned());
    }
    if projections::select(&settings.projection).is_none() {
        problems.push(format!(
            "--projection must name {}",
            projections::selectable()
        ));
    }
    if let Err(problem) = crate::client_ip::TrustedProxies::parse(&settings.trusted_proxies) {
        problems.push(format!("TRUSTED_PROXIES {problem}"));
    }
    let lookup = |var: &str| settings.connector_setting(var);
    for name in &settings.routing.providers {
        let found = match registry::configure(name, &lookup) {
            Some(config) => config.problems(production),
            None => vec![format!("PROVIDERS names an unknown provider `{name}`")],
        };
        problems.extend(found.into_iter().map(|p| format!("{name}: {p}")));
    }
    if production && settings.sandbox.in_process {
        problems.push("--sandbox runs the test provider emulators in production".to_owned());
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sandbox_is_refused_in_production_and_its_defaults_pass_in_test() {
        let mut settings = Settings::from_env();
        settings.routing.providers = vec!["sandbox".to_owned()];
        assert!(problems(&settings, Environment::Test).is_empty());
        let found = problems(&settings, Environment::Production);
        assert!(found.iter().any(|p| p.contains("sandbox")), "{found:?}");
        settings.sandbox.webhook_secret = "tiny-Qx7".into();
        let found = problems(&settings, Environment::Test);
        assert!(
            found.iter().any(|p| p.contains("SANDBOX_WEBHOOK_SECRET")),
            "{found:?}"
        );
        assert!(
            !found.iter().any(|p| p.contains("tiny-Qx7")),
            "never the value: {found:?}"
        );
    }

    #[test]
    fn trusted_proxies_that_would_trust_everyone_or_do_not_parse_are_problems() {
        let mut settings = Settings::from_env();
        settings.routing.providers = vec!["sandbox".to_owned()];
        for bad in ["0.0.0.0/0", "10.0.0.0/8, ::/0", "10.0.0.1/8", "lb.internal"] {
            settings.trusted_proxies = bad.into();
            let found = problems(&settings, Environment::Test);
            assert!(
                found.iter().any(|p| p.starts_with("TRUSTED_PROXIES")),
                "{bad}: {found:?}"
            );
        }
        settings.trusted_proxies = "10.0.0.0/8, 2001:db8::/32".into();
        assert!(problems(&settings, Environment::Test).is_empty());
    }
}
