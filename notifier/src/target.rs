//! Where a merchant webhook may be sent. In production a target must be a public address:
//! never loopback, private, link-local, shared (CGNAT), multicast or unspecified, so an
//! endpoint cannot make payledger call into its own network (SSRF). Checked when the endpoint
//! is registered and again when each connection is made (a name may resolve elsewhere later);
//! redirects are never followed.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use url::Url;

/// Longest URL taken.
pub const URL_LEN_MAX: usize = 2048;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("must be an absolute http(s) URL of at most {URL_LEN_MAX} characters")]
    NotAUrl,
    #[error("must be https")]
    NotHttps,
    #[error("must not carry credentials or a fragment")]
    Credentials,
    #[error("resolves to a loopback, private, link-local or otherwise non-public address")]
    NotPublic,
    #[error("does not resolve")]
    Unresolvable,
}

/// What targets are allowed: production takes public https targets only; the test
/// environment (the default) also takes http and local addresses, for development.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TargetPolicy {
    pub allow_private: bool,
}

impl TargetPolicy {
    /// The URL parsed, if its shape is allowed (addresses are checked by `check_addresses`).
    pub fn parse(&self, text: &str) -> Result<Url, TargetError> {
        if text.len() > URL_LEN_MAX {
            return Err(TargetError::NotAUrl);
        }
        let url = Url::parse(text).map_err(|_| TargetError::NotAUrl)?;
        match url.scheme() {
            "https" => {}
            "http" if self.allow_private => {}
            "http" => return Err(TargetError::NotHttps),
            _ => return Err(TargetError::NotAUrl),
        }
        if url.host().is_none() || url.cannot_be_a_base() {
            return Err(TargetError::NotAUrl);
        }
        if !url.username().is_empty() || url.password().is_some() || url.fragment().is_some() {
            return Err(TargetError::Credentials);
        }
        Ok(url)
    }

    /// Resolves the URL's host and refuses it if any address it names is not public.
    pub async fn check_addresses(&self, url: &Url) -> Result<(), TargetError> {
        if self.allow_private {
            return Ok(());
        }
        let host = url.host_str().ok_or(TargetError::NotAUrl)?;
        let port = url.port_or_known_default().unwrap_or(443);
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let addresses: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
            .await
            .map_err(|_| TargetError::Unresolvable)?
            .collect();
        if addresses.is_empty() {
            return Err(TargetError::Unresolvable);
        }
        if addresses.iter().all(|a| is_public(a.ip())) {
            Ok(())
        } else {
            Err(TargetError::NotPublic)
        }
    }
}

/// Whether `ip` is an address of the public internet.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                // 100.64.0.0/10, shared address space (CGNAT); 198.18.0.0/15, benchmarking.
                || (a == 100 && (64..128).contains(&b))
                || (a == 198 && (b == 18 || b == 19))
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                // fc00::/7 unique local, fe80::/10 link-local, 2001:db8::/32 documentation.
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || (first == 0x2001 && v6.segments()[1] == 0x0db8))
        }
    }
}

/// A resolver for the sender's HTTP client that refuses names resolving to non-public
/// addresses: the address connected to is the address checked.
#[derive(Debug, Clone, Copy)]
pub struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addresses: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| is_public(a.ip()))
                .collect();
            if addresses.is_empty() {
                return Err(Box::new(std::io::Error::other(
                    "the name resolves to no public address",
                ))
                    as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(addresses.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The resolver the sender's client uses under `policy`, if any.
pub fn resolver(policy: TargetPolicy) -> Option<Arc<PublicOnly>> {
    (!policy.allow_private).then(|| Arc::new(PublicOnly))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRODUCTION: TargetPolicy = TargetPolicy {
        allow_private: false,
    };
    const TEST: TargetPolicy = TargetPolicy {
        allow_private: true,
    };

    #[test]
    fn non_public_addresses_are_told_apart_from_public_ones() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "fe80::1",
            "fd00::1",
            "::",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "2001:db8::1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "8.8.8.8",
            "1.1.1.1",
            "2606:4700:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn production_takes_only_plain_https_urls() {
        assert!(PRODUCTION.parse("https://orders.example.com/hooks").is_ok());
        assert_eq!(
            PRODUCTION.parse("http://orders.example.com/hooks"),
            Err(TargetError::NotHttps)
        );
        assert!(TEST.parse("http://127.0.0.1:9000/hooks").is_ok());
        for bad in [
            "ftp://x.example/",
            "not a url",
            "https://user:pw@x.example/",
            "https://x.example/#f",
        ] {
            assert!(PRODUCTION.parse(bad).is_err(), "{bad}");
        }
        assert!(PRODUCTION
            .parse(&format!("https://x.example/{}", "a".repeat(URL_LEN_MAX)))
            .is_err());
    }

    #[tokio::test]
    async fn production_refuses_a_target_that_resolves_to_a_private_address() {
        for url in [
            "https://127.0.0.1/hooks",
            "https://[::1]/hooks",
            "https://169.254.169.254/latest/meta-data",
            "https://localhost/hooks",
            "https://10.0.0.7:8443/",
        ] {
            let parsed = PRODUCTION.parse(url).unwrap();
            assert_eq!(
                PRODUCTION.check_addresses(&parsed).await,
                Err(TargetError::NotPublic),
                "{url}"
            );
            assert_eq!(TEST.check_addresses(&parsed).await, Ok(()), "{url}");
        }
    }
}
