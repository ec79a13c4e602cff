//! Which address delivered a request. `X-Forwarded-For` is anyone's to
//! write, so it is believed only from a peer in `TRUSTED_PROXIES`, and then
//! read from the right: the nearest hop that is not itself a trusted proxy
//! is the client (entries left of it could have been forged by the client).

use std::net::IpAddr;

use ipnet::IpNet;

/// `TRUSTED_PROXIES`: CIDRs and single addresses, comma or space separated.
#[derive(Clone, Debug, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    pub fn parse(list: &str) -> Result<Self, String> {
        list.split([',', ' ', '\n', '\t'])
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<IpNet>()
                    .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| format!("`{s}` is neither an IP address nor a CIDR"))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }

    pub fn trusts(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client behind `peer`: `peer` itself unless it is trusted, else
    /// the rightmost untrusted `X-Forwarded-For` entry. An entry that is not
    /// an address ends the walk at the last trusted hop.
    pub fn client(&self, peer: IpAddr, forwarded_for: &[&str]) -> IpAddr {
        let mut client = canonical(peer);
        if !self.trusts(client) {
            return client;
        }
        let hops = forwarded_for
            .iter()
            .flat_map(|h| h.split(','))
            .map(str::trim)
            .collect::<Vec<_>>();
        for hop in hops.into_iter().rev() {
            let Ok(ip) = hop.parse::<IpAddr>() else {
                break;
            };
            client = canonical(ip);
            if !self.trusts(client) {
                break;
            }
        }
        client
    }
}

/// An IPv4 peer on a dual-stack socket arrives as `::ffff:a.b.c.d`.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_cidrs_and_addresses() {
        let t = TrustedProxies::parse("10.0.0.0/8, 127.0.0.1 ::1").unwrap();
        assert!(t.trusts(ip("10.1.2.3")));
        assert!(t.trusts(ip("127.0.0.1")));
        assert!(t.trusts(ip("::1")));
        assert!(t.trusts(ip("::ffff:10.0.0.1")));
        assert!(!t.trusts(ip("127.0.0.2")));
        assert!(TrustedProxies::parse("10.0.0.0/33").is_err());
        assert!(TrustedProxies::parse("proxy.local").is_err());
        assert!(!TrustedProxies::parse("").unwrap().trusts(ip("127.0.0.1")));
    }

    #[test]
    fn forwarded_for_only_from_a_trusted_peer() {
        let t = TrustedProxies::parse("10.0.0.0/8").unwrap();
        assert_eq!(
            t.client(ip("192.0.2.1"), &["198.51.100.7"]),
            ip("192.0.2.1")
        );
        assert_eq!(
            t.client(ip("10.0.0.1"), &["198.51.100.7"]),
            ip("198.51.100.7")
        );
        assert_eq!(t.client(ip("10.0.0.1"), &[]), ip("10.0.0.1"));
    }

    #[test]
    fn the_rightmost_untrusted_hop_wins() {
        let t = TrustedProxies::parse("10.0.0.0/8").unwrap();
        // The client wrote "1.1.1.1" itself; 203.0.113.5 is what our proxies saw.
        assert_eq!(
            t.client(ip("10.0.0.1"), &["1.1.1.1, 203.0.113.5", "10.0.0.2"]),
            ip("203.0.113.5")
        );
        assert_eq!(
            t.client(ip("10.0.0.1"), &["garbage, 10.0.0.3"]),
            ip("10.0.0.3")
        );
    }
}
