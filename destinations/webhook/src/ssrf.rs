//! The outbound address guard (DESIGN §5): unless a destination sets
//! `allow_private_network = true`, requests never reach loopback, private, link-local,
//! unspecified, carrier-grade NAT or multicast addresses.
//!
//! Host names are resolved by [`GuardedResolver`], which reqwest uses for every connection: it
//! refuses the whole answer if any address is forbidden, and otherwise hands reqwest exactly the
//! addresses it checked, so the connection goes to a checked IP (no DNS rebinding between the
//! check and the connect). Literal IP URLs never reach a resolver and are checked by
//! [`check_ip`] before the request is sent.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Why an address is refused, or `None` when it is a public address.
pub fn forbidden_reason(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_reason(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return v4_reason(v4);
            }
            v6_reason(v6)
        }
    }
}

fn v4_reason(ip: Ipv4Addr) -> Option<&'static str> {
    let o = ip.octets();
    if ip.is_unspecified() || o[0] == 0 {
        Some("unspecified")
    } else if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_private() {
        Some("private")
    } else if ip.is_link_local() {
        Some("link-local")
    } else if o[0] == 100 && (o[1] & 0xc0) == 64 {
        Some("carrier-grade NAT")
    } else if ip.is_multicast() {
        Some("multicast")
    } else if ip.is_broadcast() {
        Some("broadcast")
    } else {
        None
    }
}

fn v6_reason(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    if ip.is_unspecified() {
        Some("unspecified")
    } else if ip.is_loopback() {
        Some("loopback")
    } else if (s[0] & 0xfe00) == 0xfc00 {
        Some("private (unique local)")
    } else if (s[0] & 0xffc0) == 0xfe80 {
        Some("link-local")
    } else if ip.is_multicast() {
        Some("multicast")
    } else {
        None
    }
}

/// A refused address. Travels inside reqwest's error chain from the resolver to the
/// classification in `deliver`, which turns it into a permanent outcome.
#[derive(Debug, Clone)]
pub struct Blocked {
    pub host: String,
    pub ip: IpAddr,
    pub kind: &'static str,
}

impl fmt::Display for Blocked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host == self.ip.to_string() {
            write!(f, "refusing to send to {} address {}", self.kind, self.ip)?;
        } else {
            write!(
                f,
                "refusing to send to {} ({} address {})",
                self.host, self.kind, self.ip
            )?;
        }
        f.write_str(
            "; set `allow_private_network = true` on this destination if this address is intended",
        )
    }
}

impl std::error::Error for Blocked {}

/// Check one address for `host`.
pub fn check_ip(host: &str, ip: IpAddr) -> Result<(), Blocked> {
    match forbidden_reason(ip) {
        Some(kind) => Err(Blocked {
            host: host.to_string(),
            ip,
            kind,
        }),
        None => Ok(()),
    }
}

/// Resolve `host` and check every address; returns the checked addresses.
pub async fn resolve_checked(
    host: &str,
) -> Result<Vec<SocketAddr>, Box<dyn std::error::Error + Send + Sync>> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, 0)).await?.collect();
    if addrs.is_empty() {
        return Err(format!("{host} has no addresses").into());
    }
    for a in &addrs {
        check_ip(host, a.ip())?;
    }
    Ok(addrs)
}

/// reqwest resolver that refuses forbidden answers and pins the checked ones.
#[derive(Debug, Default, Clone)]
pub struct GuardedResolver;

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs = resolve_checked(&host).await?;
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_addresses() {
        for (ip, want) in [
            ("127.0.0.1", Some("loopback")),
            ("10.1.2.3", Some("private")),
            ("172.16.0.1", Some("private")),
            ("172.31.255.255", Some("private")),
            ("192.168.1.1", Some("private")),
            ("169.254.169.254", Some("link-local")),
            ("0.0.0.0", Some("unspecified")),
            ("100.64.0.1", Some("carrier-grade NAT")),
            ("100.127.255.255", Some("carrier-grade NAT")),
            ("224.0.0.1", Some("multicast")),
            ("::1", Some("loopback")),
            ("::", Some("unspecified")),
            ("fd00::1", Some("private (unique local)")),
            ("fe80::1", Some("link-local")),
            ("ff02::1", Some("multicast")),
            ("::ffff:127.0.0.1", Some("loopback")),
            ("::ffff:10.0.0.1", Some("private")),
            ("8.8.8.8", None),
            ("100.128.0.1", None),
            ("172.32.0.1", None),
            ("2606:4700::1111", None),
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(forbidden_reason(ip), want, "{ip}");
        }
    }

    #[test]
    fn blocked_message_says_how_to_allow() {
        let e = check_ip("localhost", "127.0.0.1".parse().unwrap()).unwrap_err();
        let m = e.to_string();
        assert!(
            m.contains("loopback") && m.contains("allow_private_network = true"),
            "{m}"
        );
    }
}
