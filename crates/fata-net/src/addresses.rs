//! The addresses a stack serves on, as an app prints them and reads its own address from.

use alloc::vec::Vec;
use core::fmt;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use smoltcp::wire::{IpCidr, Ipv4Cidr, Ipv6Cidr};

/// A stack's addresses: its IPv4 address and its IPv6 addresses (link-local ones last).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Addresses {
    ipv4: Option<Ipv4Cidr>,
    ipv6: Vec<Ipv6Cidr>,
}

impl Addresses {
    /// The addresses of a smoltcp interface.
    pub(crate) fn of(cidrs: &[IpCidr]) -> Addresses {
        let mut addresses = Addresses::default();
        for cidr in cidrs {
            match *cidr {
                IpCidr::Ipv4(v4) => addresses.ipv4 = addresses.ipv4.or(Some(v4)),
                IpCidr::Ipv6(v6) => addresses.ipv6.push(v6),
            }
        }
        addresses
            .ipv6
            .sort_by_key(|v6| v6.address().is_unicast_link_local());
        addresses
    }

    /// One address of the host's stack (a host prefix: /32 or /128).
    pub(crate) fn host(address: IpAddr) -> Addresses {
        match address {
            IpAddr::V4(v4) => Addresses {
                ipv4: Some(Ipv4Cidr::new(v4, 32)),
                ipv6: Vec::new(),
            },
            IpAddr::V6(v6) => Addresses {
                ipv4: None,
                ipv6: alloc::vec![Ipv6Cidr::new(v6, 128)],
            },
        }
    }

    /// The IPv4 address and prefix, if the stack has one.
    pub fn ipv4(&self) -> Option<Ipv4Cidr> {
        self.ipv4
    }

    /// The IPv6 addresses and prefixes, global ones first.
    pub fn ipv6(&self) -> &[Ipv6Cidr] {
        &self.ipv6
    }

    /// The IPv4 address, if any.
    pub fn ipv4_address(&self) -> Option<Ipv4Addr> {
        self.ipv4.map(|cidr| cidr.address())
    }

    /// The first IPv6 address that is not link-local, if any.
    pub fn ipv6_address(&self) -> Option<Ipv6Addr> {
        self.ipv6
            .iter()
            .map(|cidr| cidr.address())
            .find(|address| !address.is_unicast_link_local())
    }

    /// Whether peers beyond the link can reach the stack: it has an IPv4 address or an IPv6
    /// address that is not link-local.
    pub fn routable(&self) -> bool {
        self.ipv4.is_some() || self.ipv6_address().is_some()
    }
}

/// Whether any of `cidrs` can be reached from beyond the link (see [`Addresses::routable`]),
/// without building the list.
pub(crate) fn routable(cidrs: &[IpCidr]) -> bool {
    cidrs.iter().any(|cidr| match cidr {
        IpCidr::Ipv4(_) => true,
        IpCidr::Ipv6(v6) => !v6.address().is_unicast_link_local(),
    })
}

/// The addresses with their prefixes, comma-separated: `10.0.0.2/24, fd00::2/64, fe80::...`.
impl fmt::Display for Addresses {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        let v4 = self.ipv4.iter().map(|c| IpCidr::Ipv4(*c));
        for cidr in v4.chain(self.ipv6.iter().map(|c| IpCidr::Ipv6(*c))) {
            if !first {
                f.write_str(", ")?;
            }
            first = false;
            write!(f, "{cidr}")?;
        }
        if first {
            f.write_str("no address")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn printed_ipv4_first_and_link_local_last() {
        let v4 = Ipv4Cidr::new(Ipv4Addr::new(10, 0, 0, 2), 24);
        let ll = Ipv6Cidr::new("fe80::1".parse().unwrap(), 64);
        let global = Ipv6Cidr::new("fd00::2".parse().unwrap(), 64);
        let addresses = Addresses::of(&[IpCidr::Ipv6(ll), IpCidr::Ipv4(v4), IpCidr::Ipv6(global)]);
        assert_eq!(addresses.to_string(), "10.0.0.2/24, fd00::2/64, fe80::1/64");
        assert_eq!(addresses.ipv6_address(), Some(global.address()));
        assert!(addresses.routable());
        assert!(!Addresses::of(&[IpCidr::Ipv6(ll)]).routable());
        assert_eq!(
            Addresses::of(&[IpCidr::Ipv4(v4)]).to_string(),
            "10.0.0.2/24"
        );
        assert_eq!(Addresses::default().to_string(), "no address");
    }
}
