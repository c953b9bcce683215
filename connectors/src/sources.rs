//! Lists of network addresses a request may come from: the addresses Maya's webhooks come
//! from (`MAYA_WEBHOOK_SOURCES`: Maya does not sign online-payment webhooks, so this list is
//! their authentication) and the proxies whose forwarded client address is believed
//! (`TRUSTED_PROXIES`).

use std::fmt;
use std::net::IpAddr;

/// Addresses webhooks may come from: single IPs and CIDR ranges, IPv4 and IPv6.
///
/// Parsed from a comma-separated list (`"18.138.50.235, 3.1.207.200, 2001:db8::/32"`);
/// whitespace and empty entries are ignored. A range must not have host bits set
/// (`10.0.0.1/8` is refused as a likely typo). IPv4-mapped IPv6 peers (`::ffff:a.b.c.d`)
/// match IPv4 entries.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SourceList {
    ranges: Vec<IpRange>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum IpRange {
    V4 { network: u32, prefix: u8 },
    V6 { network: u128, prefix: u8 },
}

impl fmt::Debug for SourceList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut list = f.debug_list();
        for range in &self.ranges {
            match *range {
                IpRange::V4 { network, prefix } => list.entry(&format_args!(
                    "{}/{prefix}",
                    std::net::Ipv4Addr::from(network)
                )),
                IpRange::V6 { network, prefix } => list.entry(&format_args!(
                    "{}/{prefix}",
                    std::net::Ipv6Addr::from(network)
                )),
            };
        }
        list.finish()
    }
}

fn mask_v4(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

fn mask_v6(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

impl SourceList {
    /// Most entries accepted.
    pub const ENTRIES_MAX: usize = 256;

    /// Parses the list. Errors name the entry by position, never echo it.
    pub fn parse(text: &str) -> Result<SourceList, String> {
        let mut ranges = Vec::new();
        for (index, entry) in text.split(',').enumerate() {
            let entry = entry.trim();
            if entry.is_empty() {
                continue;
            }
            if ranges.len() == Self::ENTRIES_MAX {
                return Err(format!("has more than {} entries", Self::ENTRIES_MAX));
            }
            let range =
                parse_range(entry).map_err(|problem| format!("entry {} {problem}", index + 1))?;
            ranges.push(range);
        }
        Ok(SourceList { ranges })
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    /// IPv4 addresses the list may cover at most: two /8 (private networks such as
    /// 10.0.0.0/8 fit; a third of the internet does not).
    pub const V4_ADDRESSES_MAX: u64 = 2 << 24;
    /// IPv6 addresses at most: two /7 (fc00::/7 and more fit; half the space does not).
    pub const V6_ADDRESSES_MAX: u128 = 2 << 121;

    /// Whether the ranges together cover too much of an address family to name a few hosts:
    /// `0.0.0.0/0`, and as well `0.0.0.0/1,128.0.0.0/1` or any other split of it.
    pub fn too_broad(&self) -> bool {
        let (mut v4, mut v6) = (0u64, 0u128);
        for range in &self.ranges {
            match *range {
                IpRange::V4 { prefix, .. } => v4 = v4.saturating_add(1u64 << (32 - prefix)),
                IpRange::V6 { prefix, .. } => {
                    v6 = v6.saturating_add(
                        1u128
                            .checked_shl(128 - u32::from(prefix))
                            .unwrap_or(u128::MAX),
                    )
                }
            }
        }
        v4 > Self::V4_ADDRESSES_MAX || v6 > Self::V6_ADDRESSES_MAX
    }

    /// Whether every entry is a loopback address or range (this machine only).
    pub fn only_loopback(&self) -> bool {
        !self.ranges.is_empty()
            && self.ranges.iter().all(|r| match *r {
                IpRange::V4 { network, prefix } => prefix >= 8 && network >> 24 == 127,
                IpRange::V6 { network, prefix } => prefix == 128 && network == 1,
            })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.ranges.iter().any(|range| match (range, ip) {
            (IpRange::V4 { network, prefix }, IpAddr::V4(ip)) => {
                u32::from(ip) & mask_v4(*prefix) == *network
            }
            (IpRange::V6 { network, prefix }, IpAddr::V6(ip)) => {
                u128::from(ip) & mask_v6(*prefix) == *network
            }
            _ => false,
        })
    }
}

fn parse_range(entry: &str) -> Result<IpRange, &'static str> {
    let (address, prefix) = match entry.split_once('/') {
        Some((address, prefix)) => {
            let valid = !prefix.is_empty()
                && prefix.len() <= 3
                && prefix.bytes().all(|b| b.is_ascii_digit());
            if !valid {
                return Err("has an invalid prefix length");
            }
            (
                address,
                Some(
                    prefix
                        .parse::<u8>()
                        .map_err(|_| "has an invalid prefix length")?,
                ),
            )
        }
        None => (entry, None),
    };
    let address: IpAddr = address
        .parse()
        .map_err(|_| "is not an IP address or CIDR range")?;
    match address {
        IpAddr::V4(v4) => {
            let prefix = prefix.unwrap_or(32);
            if prefix > 32 {
                return Err("has a prefix length above 32");
            }
            let network = u32::from(v4);
            if network & !mask_v4(prefix) != 0 {
                return Err("has host bits set after its prefix length");
            }
            Ok(IpRange::V4 { network, prefix })
        }
        IpAddr::V6(v6) => {
            let prefix = prefix.unwrap_or(128);
            if prefix > 128 {
                return Err("has a prefix length above 128");
            }
            let network = u128::from(v6);
            if network & !mask_v6(prefix) != 0 {
                return Err("has host bits set after its prefix length");
            }
            // An IPv4-mapped range is an IPv4 range: peers are compared canonically.
            if let (Some(v4), true) = (v6.to_ipv4_mapped(), prefix >= 96) {
                return Ok(IpRange::V4 {
                    network: u32::from(v4),
                    prefix: prefix - 96,
                });
            }
            Ok(IpRange::V6 { network, prefix })
        }
    }
}
