//! The address a request comes from. Behind a load balancer every TCP peer is the balancer,
//! which names the client in `X-Forwarded-For` by appending the address it saw to whatever the
//! client itself sent. So the header is believed only when the TCP peer is a trusted proxy
//! (`TRUSTED_PROXIES`), and it is read from the right: the first address that is not itself a
//! trusted proxy is the client; anything left of it may have been written by the client.
//! Used where the address decides something (Maya's unsigned webhooks are accepted only from
//! Maya's addresses) and where it is logged (`webhook_deliveries.peer`).

use std::net::IpAddr;

use connectors::SourceList;

/// Addresses read from `X-Forwarded-For`, at most (a chain of proxies is a few hops).
pub const HOPS_MAX: usize = 16;

#[derive(Debug)]
pub struct TrustedProxies(SourceList);

impl TrustedProxies {
    /// No proxy trusted: the TCP peer is the client (the default).
    pub fn none() -> Self {
        TrustedProxies(SourceList::default())
    }

    /// `TRUSTED_PROXIES`: IPs and CIDR ranges, comma-separated. A range covering a whole
    /// address family would let any client name its own address, so it is refused.
    pub fn parse(text: &str) -> Result<Self, String> {
        let list = SourceList::parse(text)?;
        if list.too_broad() {
            return Err(
                "covers too much of the internet (a catch-all range, or one split in parts): \
                 every client could choose its address"
                    .into(),
            );
        }
        Ok(TrustedProxies(list))
    }

    /// The client's address: the TCP `peer`, or, when the peer is a trusted proxy, the
    /// right-most address of `forwarded_for` (the `X-Forwarded-For` values in the order
    /// received) that is not a trusted proxy. `None` when it cannot be told: no peer, an
    /// entry that is not a bare IP address, or more than [`HOPS_MAX`] entries.
    pub fn client_ip<'a>(
        &self,
        peer: Option<IpAddr>,
        forwarded_for: impl IntoIterator<Item = &'a str>,
    ) -> Option<IpAddr> {
        let peer = peer?;
        if !self.0.contains(peer) {
            return Some(peer);
        }
        let hops: Vec<&str> = forwarded_for
            .into_iter()
            .flat_map(|value| value.split(','))
            .map(str::trim)
            .take(HOPS_MAX + 1)
            .collect();
        if hops.len() > HOPS_MAX {
            return None;
        }
        let mut client = peer;
        for hop in hops.iter().rev() {
            client = hop.parse().ok()?;
            if !self.0.contains(client) {
                break;
            }
        }
        Some(client)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    #[test]
    fn without_trusted_proxies_the_header_is_never_read() {
        let none = TrustedProxies::none();
        assert_eq!(
            none.client_ip(ip("10.0.0.5"), ["203.0.113.7"]),
            ip("10.0.0.5")
        );
        assert_eq!(none.client_ip(None, ["203.0.113.7"]), None);
    }

    #[test]
    fn a_trusted_proxy_is_believed_from_the_right() {
        let proxies = TrustedProxies::parse("10.0.0.0/8, 192.168.1.1").unwrap();
        // An untrusted peer: its header is ignored.
        assert_eq!(
            proxies.client_ip(ip("198.51.100.9"), ["203.0.113.7"]),
            ip("198.51.100.9")
        );
        // The balancer appended the client.
        assert_eq!(
            proxies.client_ip(ip("10.0.0.5"), ["203.0.113.7"]),
            ip("203.0.113.7")
        );
        // The client wrote an address of its own first: the balancer's entry wins.
        assert_eq!(
            proxies.client_ip(ip("10.0.0.5"), ["203.0.113.7, 198.51.100.9"]),
            ip("198.51.100.9")
        );
        // Two proxies, two header lines: skipped from the right until an untrusted hop.
        assert_eq!(
            proxies.client_ip(ip("10.0.0.5"), ["203.0.113.7", "192.168.1.1"]),
            ip("203.0.113.7")
        );
        // A trusted peer that forwarded nothing is the client itself; only proxies listed:
        // the left-most of them.
        assert_eq!(proxies.client_ip(ip("10.0.0.5"), []), ip("10.0.0.5"));
        assert_eq!(
            proxies.client_ip(ip("10.0.0.5"), ["10.1.1.1"]),
            ip("10.1.1.1")
        );
    }

    #[test]
    fn an_address_that_cannot_be_told_is_none() {
        let proxies = TrustedProxies::parse("10.0.0.0/8").unwrap();
        for garbled in ["203.0.113.7:4431", "unknown", "", "[2001:db8::1]"] {
            assert_eq!(
                proxies.client_ip(ip("10.0.0.5"), [garbled]),
                None,
                "{garbled}"
            );
        }
        let long = vec!["10.1.1.1"; HOPS_MAX + 1].join(",");
        assert_eq!(proxies.client_ip(ip("10.0.0.5"), [long.as_str()]), None);
        let at_bound = vec!["10.1.1.1"; HOPS_MAX].join(",");
        assert_eq!(
            proxies.client_ip(ip("10.0.0.5"), [at_bound.as_str()]),
            ip("10.1.1.1")
        );
    }

    #[test]
    fn catch_all_and_malformed_lists_are_refused() {
        assert!(TrustedProxies::parse("0.0.0.0/0").is_err());
        assert!(TrustedProxies::parse("10.0.0.1, ::/0").is_err());
        assert!(TrustedProxies::parse("0.0.0.0/1,128.0.0.0/1").is_err());
        assert!(TrustedProxies::parse("10.0.0.0/8, 172.16.0.0/12").is_ok());
        assert!(TrustedProxies::parse("10.0.0.300").is_err());
        assert!(TrustedProxies::parse("").is_ok());
    }
}
