//! Where probes may connect (`/probe`'s `--probe.allowed-networks` and
//! `--probe.denied-networks`, the usual defence against server-side request forgery), decided
//! on resolved addresses.

use std::net::IpAddr;

/// Where `/probe` may connect (`--probe.allowed-networks`, `--probe.denied-networks`): checked
/// on the addresses a target resolves to, never on the target as written, so that
/// `2130706433`, `0x7f.1`, `127.1` and `[::ffff:127.0.0.1]` are all 127.0.0.1 here. An
/// IPv4-mapped IPv6 address is checked as the IPv4 address it is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetworkPolicy {
    allowed: Vec<ipnet::IpNet>,
    denied: Vec<ipnet::IpNet>,
}

/// Why a network in a policy is not one.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a network in CIDR notation (like 192.0.2.0/24 or 2001:db8::/32) or an address"
)]
pub struct NetworkError(String);

/// Why a policy keeps a probe from an address.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Unreachable {
    /// The address is in a denied network.
    #[error("{addr} is in {net}, which --probe.denied-networks denies")]
    Denied { addr: IpAddr, net: ipnet::IpNet },
    /// Networks are allowed and the address is in none of them.
    #[error("{addr} is in none of --probe.allowed-networks")]
    NotAllowed { addr: IpAddr },
}

impl NetworkPolicy {
    /// A policy from CIDR texts; a bare address is a network of one address.
    pub fn new(allowed: &[String], denied: &[String]) -> Result<NetworkPolicy, NetworkError> {
        let parse = |texts: &[String]| -> Result<Vec<ipnet::IpNet>, NetworkError> {
            texts
                .iter()
                .map(|t| t.trim())
                .filter(|t| !t.is_empty())
                .map(|t| {
                    t.parse::<ipnet::IpNet>()
                        .or_else(|_| t.parse::<IpAddr>().map(ipnet::IpNet::from))
                        .map(|net| net.trunc())
                        .map_err(|_| NetworkError(t.to_string()))
                })
                .collect()
        };
        Ok(NetworkPolicy {
            allowed: parse(allowed)?,
            denied: parse(denied)?,
        })
    }

    /// Whether the policy restricts nothing.
    pub fn is_empty(&self) -> bool {
        self.allowed.is_empty() && self.denied.is_empty()
    }

    /// `Ok` when `addr` may be reached, else why not.
    pub fn check(&self, addr: IpAddr) -> Result<(), Unreachable> {
        let addr = addr.to_canonical();
        if let Some(net) = self.denied.iter().find(|n| n.contains(&addr)) {
            return Err(Unreachable::Denied { addr, net: *net });
        }
        if !self.allowed.is_empty() && !self.allowed.iter().any(|n| n.contains(&addr)) {
            return Err(Unreachable::NotAllowed { addr });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_are_checked_on_the_address_whatever_its_spelling() {
        let policy = NetworkPolicy::new(
            &["192.0.2.0/24".into(), "2001:db8::/32".into()],
            &["127.0.0.0/8".into(), "::1".into()],
        )
        .unwrap();
        assert!(policy.check([192, 0, 2, 7].into()).is_ok());
        assert!(policy.check("2001:db8::25".parse().unwrap()).is_ok());
        assert_eq!(
            policy.check([127, 0, 0, 1].into()).unwrap_err().to_string(),
            "127.0.0.1 is in 127.0.0.0/8, which --probe.denied-networks denies"
        );
        // The mapped form of a denied IPv4 address is that address.
        assert!(policy.check("::ffff:127.0.0.1".parse().unwrap()).is_err());
        assert!(policy.check("::ffff:192.0.2.1".parse().unwrap()).is_ok());
        assert!(policy.check("::1".parse().unwrap()).is_err());
        assert_eq!(
            policy
                .check([198, 51, 100, 1].into())
                .unwrap_err()
                .to_string(),
            "198.51.100.1 is in none of --probe.allowed-networks"
        );
        assert!(NetworkPolicy::new(&["10.0.0.0/33".into()], &[]).is_err());
        assert!(NetworkPolicy::new(&[], &[]).unwrap().is_empty());
    }
}
