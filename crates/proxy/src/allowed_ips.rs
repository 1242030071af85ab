//! `general_settings.allowed_ips`: only these client addresses may call the gateway's model
//! and management routes (LiteLLM's check, with its 403). LiteLLM compares the address as a
//! string; here an entry is an address or a network (`10.0.0.0/8`), IPv4-mapped IPv6 peers
//! are compared as IPv4, and an entry that is neither is a start-up error instead of a list
//! that silently admits nobody.
//!
//! With `use_x_forwarded_for`, the address is taken from `X-Forwarded-For`: its last entry,
//! the one the nearest proxy wrote (LiteLLM takes the whole header, which only matches when
//! it holds one address; earlier entries are the client's own claims).

use std::net::IpAddr;

use http::HeaderMap;
use ipnet::IpNet;

use crate::config::{ConfigError, GeneralSettings};
use crate::error::ProxyError;

/// `X-Forwarded-For`'s last entry: the address the nearest proxy saw.
pub(crate) fn forwarded_for(headers: &HeaderMap) -> Option<IpAddr> {
    let last = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .rfind(|s| !s.is_empty())?;
    last.parse::<IpAddr>().ok().map(|ip| ip.to_canonical())
}

#[derive(Debug, Clone)]
pub(crate) struct AllowedIps {
    nets: Vec<IpNet>,
    use_x_forwarded_for: bool,
}

impl AllowedIps {
    /// `None` when `allowed_ips` is not set (every address may call).
    pub(crate) fn from_config(
        gs: &GeneralSettings,
        source: &str,
    ) -> Result<Option<AllowedIps>, ConfigError> {
        let Some(list) = &gs.allowed_ips else {
            return Ok(None);
        };
        let nets = list
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let e = e.trim();
                e.parse::<IpNet>()
                    .or_else(|_| e.parse::<IpAddr>().map(IpNet::from))
                    .map(|n| n.trunc())
                    .map_err(|_| ConfigError::Invalid {
                        file: source.to_string(),
                        path: format!("general_settings.allowed_ips[{i}]"),
                        message: format!("{e:?} is not an IP address or network"),
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(AllowedIps {
            nets,
            use_x_forwarded_for: gs.use_x_forwarded_for == Some(true),
        }))
    }

    /// The address a request is judged by: the peer's, or `X-Forwarded-For`'s last entry.
    fn client(&self, headers: &HeaderMap, peer: Option<IpAddr>) -> Option<IpAddr> {
        let forwarded = self
            .use_x_forwarded_for
            .then(|| forwarded_for(headers))
            .flatten();
        forwarded.or(peer).map(|ip| ip.to_canonical())
    }

    /// LiteLLM's 403 for an address not listed (and for one that cannot be known).
    pub(crate) fn check(
        &self,
        headers: &HeaderMap,
        peer: Option<IpAddr>,
    ) -> Result<(), ProxyError> {
        let ip = self.client(headers, peer);
        if ip.is_some_and(|ip| self.nets.iter().any(|n| n.contains(&ip))) {
            return Ok(());
        }
        let shown = ip.map_or_else(|| "unknown".to_string(), |ip| ip.to_string());
        Err(ProxyError::Custom {
            status: 403,
            kind: "auth_error".to_string(),
            message: format!("Access forbidden: IP address {shown} not allowed."),
            param: None,
            headers: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(list: &[&str], xff: bool) -> AllowedIps {
        let gs = GeneralSettings {
            allowed_ips: Some(list.iter().map(|s| s.to_string()).collect()),
            use_x_forwarded_for: Some(xff),
            ..GeneralSettings::default()
        };
        AllowedIps::from_config(&gs, "c.yaml")
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("{list:?} must load"))
    }

    fn ip(s: &str) -> Option<IpAddr> {
        s.parse().ok()
    }

    #[test]
    fn addresses_and_networks_admit_and_everything_else_is_refused() {
        let a = allowed(&["127.0.0.1", "10.1.0.0/16", "::1"], false);
        let none = HeaderMap::new();
        for ok in ["127.0.0.1", "10.1.200.3", "::1", "::ffff:127.0.0.1"] {
            assert!(a.check(&none, ip(ok)).is_ok(), "{ok}");
        }
        for (bad, shown) in [
            ("10.2.0.1", "10.2.0.1"),
            ("::ffff:10.2.0.1", "10.2.0.1"),
            ("::2", "::2"),
        ] {
            let e = a.check(&none, ip(bad)).err().map(|e| e.to_string());
            assert_eq!(
                e.as_deref(),
                Some(format!("Access forbidden: IP address {shown} not allowed.").as_str())
            );
        }
        let unknown = a.check(&none, None).err().map(|e| e.to_string());
        assert_eq!(
            unknown.as_deref(),
            Some("Access forbidden: IP address unknown not allowed.")
        );
    }

    #[test]
    fn forwarded_for_is_read_only_when_configured_and_only_its_last_entry() {
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            http::HeaderValue::from_static("127.0.0.1, 203.0.113.9"),
        );
        let peer = ip("127.0.0.1");
        // The client claims 127.0.0.1; the proxy saw 203.0.113.9.
        assert!(allowed(&["127.0.0.1"], true).check(&h, peer).is_err());
        assert!(allowed(&["203.0.113.9"], true).check(&h, peer).is_ok());
        // Not configured: the peer counts, the header is nobody's word.
        assert!(allowed(&["127.0.0.1"], false).check(&h, peer).is_ok());
        assert!(allowed(&["203.0.113.9"], false).check(&h, peer).is_err());
    }

    #[test]
    fn an_entry_that_is_no_address_is_a_start_up_error() {
        let gs = GeneralSettings {
            allowed_ips: Some(vec!["127.0.0.1".into(), "localhost".into()]),
            ..GeneralSettings::default()
        };
        let e = AllowedIps::from_config(&gs, "c.yaml")
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some(
                "c.yaml: general_settings.allowed_ips[1]: \"localhost\" is not an IP address or network"
            )
        );
    }
}
