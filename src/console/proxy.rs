//! What the proxies in front of the console say about a request: whether it reached us over
//! HTTPS (`X-Forwarded-Proto`), which client sent it (`X-Forwarded-For`), and, behind an
//! authenticating proxy, who the person is (`console.identity_header`). Each is believed only
//! from the proxies configured in `console.trusted_proxies`; anyone else could send them.

use std::net::{IpAddr, SocketAddr};

use axum::http::HeaderMap;

/// The configured proxies, as address ranges.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<(IpAddr, u8)>);

impl TrustedProxies {
    /// `"10.0.0.0/8, 127.0.0.1, ::1"`; empty: none. A problem names the entry.
    pub fn parse(text: &str) -> Result<TrustedProxies, String> {
        let mut ranges = Vec::new();
        for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (addr, len) = match entry.split_once('/') {
                Some((addr, len)) => (addr, Some(len)),
                None => (entry, None),
            };
            let addr: IpAddr = addr
                .parse()
                .map_err(|_| format!("{entry:?} is not an address or a CIDR range"))?;
            let max = if addr.is_ipv4() { 32 } else { 128 };
            let len = match len {
                None => max,
                Some(len) => len
                    .parse::<u8>()
                    .ok()
                    .filter(|l| *l <= max)
                    .ok_or_else(|| format!("{entry:?} has a prefix length over {max}"))?,
            };
            ranges.push((addr, len));
        }
        Ok(TrustedProxies(ranges))
    }

    /// Whether `ip` is one of the proxies.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|&(net, len)| match (net, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        })
    }

    /// The request came over HTTPS: through a trusted proxy whose `X-Forwarded-Proto` (its
    /// last value: the one the nearest proxy added) says `https`.
    pub fn https(&self, peer: Option<SocketAddr>, headers: &HeaderMap) -> bool {
        let Some(peer) = peer else {
            return false;
        };
        if !self.contains(peer.ip()) {
            return false;
        }
        headers
            .get_all("x-forwarded-proto")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .last()
            .is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https"))
    }

    /// The client a request comes from (rule L1): the TCP peer; or, when the peer is a trusted
    /// proxy, the nearest address in `X-Forwarded-For` that is not itself one (read from the
    /// right: the entries further left are the client's own word).
    pub fn client(&self, peer: Option<SocketAddr>, headers: &HeaderMap) -> Option<IpAddr> {
        let peer = peer?.ip().to_canonical();
        if !self.contains(peer) {
            return Some(peer);
        }
        let forwarded: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect();
        for entry in forwarded.iter().rev() {
            let Ok(ip) = entry.parse::<IpAddr>() else {
                // Something not an address: what lies left of it cannot be trusted either.
                break;
            };
            if !self.contains(ip) {
                return Some(ip.to_canonical());
            }
        }
        Some(peer)
    }

    /// The person an authenticating proxy vouches for in `header` (rule L4): only when the
    /// TCP peer is a trusted proxy, only one value, and only a plain name.
    pub fn identity<'h>(
        &self,
        peer: Option<SocketAddr>,
        headers: &'h HeaderMap,
        header: &str,
    ) -> Option<&'h str> {
        if header.is_empty() || !self.contains(peer?.ip()) {
            return None;
        }
        let mut values = headers.get_all(header).iter();
        let value = values.next()?.to_str().ok()?.trim();
        if values.next().is_some() {
            return None;
        }
        let plain = (1..=100).contains(&value.len())
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._@-+".contains(&b));
        plain.then_some(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_is_the_peer_unless_a_trusted_proxy_forwarded_it() {
        let proxies = TrustedProxies::parse("10.0.0.0/8").unwrap();
        let at = |ip: &str| Some(SocketAddr::new(ip.parse().unwrap(), 1234));
        let mut xff = HeaderMap::new();
        xff.insert(
            "x-forwarded-for",
            "6.6.6.6, 1.2.3.4, 10.0.0.9".parse().unwrap(),
        );
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        assert_eq!(proxies.client(at("10.1.1.1"), &xff), ip("1.2.3.4"));
        assert_eq!(proxies.client(at("11.1.1.1"), &xff), ip("11.1.1.1"));
        assert_eq!(
            proxies.client(at("10.1.1.1"), &HeaderMap::new()),
            ip("10.1.1.1")
        );
        assert_eq!(proxies.client(None, &xff), None);
        let mut junk = HeaderMap::new();
        junk.insert("x-forwarded-for", "1.2.3.4, junk".parse().unwrap());
        assert_eq!(proxies.client(at("10.1.1.1"), &junk), ip("10.1.1.1"));
    }

    #[test]
    fn an_identity_header_is_believed_only_from_a_trusted_proxy() {
        let proxies = TrustedProxies::parse("10.0.0.0/8").unwrap();
        let at = |ip: &str| Some(SocketAddr::new(ip.parse().unwrap(), 1234));
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-user", "alice@example.com".parse().unwrap());
        assert_eq!(
            proxies.identity(at("10.0.0.1"), &h, "x-forwarded-user"),
            Some("alice@example.com")
        );
        assert_eq!(
            proxies.identity(at("11.0.0.1"), &h, "x-forwarded-user"),
            None
        );
        assert_eq!(proxies.identity(at("10.0.0.1"), &h, ""), None);
        h.append("x-forwarded-user", "bob".parse().unwrap());
        assert_eq!(
            proxies.identity(at("10.0.0.1"), &h, "x-forwarded-user"),
            None
        );
        let mut odd = HeaderMap::new();
        odd.insert("x-forwarded-user", "a b".parse().unwrap());
        assert_eq!(
            proxies.identity(at("10.0.0.1"), &odd, "x-forwarded-user"),
            None
        );
    }

    #[test]
    fn only_a_configured_proxy_is_believed_about_https() {
        let proxies = TrustedProxies::parse("10.0.0.0/8, 127.0.0.1 ,::1").unwrap();
        let mut https = HeaderMap::new();
        https.insert("x-forwarded-proto", "https".parse().unwrap());
        let at = |ip: &str| Some(SocketAddr::new(ip.parse().unwrap(), 1234));
        assert!(proxies.https(at("10.2.3.4"), &https));
        assert!(proxies.https(at("127.0.0.1"), &https));
        assert!(proxies.https(at("::ffff:127.0.0.1"), &https));
        assert!(proxies.https(at("::1"), &https));
        assert!(!proxies.https(at("11.0.0.1"), &https));
        assert!(!proxies.https(at("127.0.0.2"), &https));
        assert!(!proxies.https(None, &https));
        assert!(!proxies.https(at("10.2.3.4"), &HeaderMap::new()));
        let mut chain = HeaderMap::new();
        chain.insert("x-forwarded-proto", "https, http".parse().unwrap());
        assert!(!proxies.https(at("10.2.3.4"), &chain));
        assert!(!TrustedProxies::default().https(at("127.0.0.1"), &https));
        for bad in ["10.0.0.0/33", "example.com", "::1/129"] {
            assert!(TrustedProxies::parse(bad).is_err(), "{bad}");
        }
    }
}
