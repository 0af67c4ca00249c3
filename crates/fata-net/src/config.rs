//! How the stack is configured: addresses from the app's arguments, sizes for its buffers.

use core::str::FromStr;

use core::net::IpAddr;

use fata::{Env, Error, Opt};
use smoltcp::wire::{Ipv4Address, Ipv4Cidr, Ipv6Address, Ipv6Cidr};

/// The options the stack reads from the app's arguments: an app that builds its stack with
/// [`Stack::from_env`](crate::Stack::from_env) lists them in `#[fata::main(options = [...])]`.
pub const OPTIONS: &[Opt] = &[
    Opt::value(
        "--ipv4",
        "ADDR/PREFIX|dhcp|off",
        "the interface's IPv4 address, as 10.0.0.2/24 (default dhcp)",
    ),
    Opt::value(
        "--ipv4-gateway",
        "ADDR",
        "the default IPv4 gateway, with --ipv4",
    ),
    Opt::value(
        "--ipv6",
        "ADDR/PREFIX|slaac|off",
        "the interface's IPv6 address, as fd00::2/64 (default slaac: from router advertisements)",
    ),
    Opt::value(
        "--ipv6-gateway",
        "ADDR",
        "the default IPv6 gateway, with --ipv6",
    ),
    Opt::value(
        "--bind",
        "ADDR",
        "the address to serve on with the host's sockets (unix without --net; default 127.0.0.1, \
         :: for every IPv6 and IPv4 address)",
    ),
];

/// The interface's IPv4 set-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ipv4Config {
    /// A fixed address and prefix, with an optional default gateway.
    Static {
        /// Address and prefix length, as `10.0.0.2/24`.
        address: Ipv4Cidr,
        /// Where packets for other networks go.
        gateway: Option<Ipv4Address>,
    },
    /// Ask a DHCPv4 server.
    Dhcp,
    /// No IPv4 at all (an IPv6-only interface).
    Off,
}

/// The interface's IPv6 set-up. Every mode but `Off` also gives the interface its link-local
/// address (fe80::/64 with the interface identifier made from the MAC, RFC 4291's modified
/// EUI-64), which neighbour discovery needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ipv6Config {
    /// A fixed address and prefix, with an optional default gateway.
    Static {
        /// Address and prefix length, as `fd00::2/64`.
        address: Ipv6Cidr,
        /// Where packets for other networks go.
        gateway: Option<Ipv6Address>,
    },
    /// Stateless address autoconfiguration (RFC 4862): the address and default route come from
    /// the routers' advertisements on the link.
    Slaac,
    /// No IPv6 at all.
    Off,
}

/// Sizes that trade memory for throughput. The defaults suit a 32 MiB unikernel serving a few
/// hundred connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tuning {
    /// Receive buffer of each TCP connection, in bytes (also its advertised window).
    pub tcp_rx_buffer: usize,
    /// Send buffer of each TCP connection, in bytes.
    pub tcp_tx_buffer: usize,
    /// Connections a listener keeps ready to accept at once (its listening sockets).
    pub tcp_backlog: usize,
    /// Payload bytes a UDP socket can hold in each direction.
    pub udp_buffer: usize,
    /// Datagrams a UDP socket can hold in each direction.
    pub udp_packets: usize,
}

impl Default for Tuning {
    fn default() -> Tuning {
        Tuning {
            tcp_rx_buffer: 64 * 1024,
            tcp_tx_buffer: 64 * 1024,
            tcp_backlog: 32,
            udp_buffer: 256 * 1024,
            udp_packets: 512,
        }
    }
}

/// Everything the stack needs to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// IPv4 addressing.
    pub ipv4: Ipv4Config,
    /// IPv6 addressing.
    pub ipv6: Ipv6Config,
    /// Buffer sizes.
    pub tuning: Tuning,
    /// The address the host's stack binds to (unix without a network interface).
    pub bind: IpAddr,
}

impl Config {
    /// A static IPv4 address with no IPv6 and default buffers: what tests and in-process stacks
    /// usually want.
    pub fn ipv4(address: Ipv4Cidr, gateway: Option<Ipv4Address>) -> Config {
        Config {
            ipv4: Ipv4Config::Static { address, gateway },
            ipv6: Ipv6Config::Off,
            tuning: Tuning::default(),
            bind: IpAddr::V4(Ipv4Address::LOCALHOST),
        }
    }

    /// A static IPv6 address with no IPv4 and default buffers.
    pub fn ipv6(address: Ipv6Cidr, gateway: Option<Ipv6Address>) -> Config {
        Config {
            ipv4: Ipv4Config::Off,
            ipv6: Ipv6Config::Static { address, gateway },
            tuning: Tuning::default(),
            bind: IpAddr::V6(Ipv6Address::LOCALHOST),
        }
    }
}

impl Config {
    /// Reads `--ipv4` and `--ipv4-gateway` (DHCP without `--ipv4`), `--ipv6` and
    /// `--ipv6-gateway` (SLAAC without `--ipv6`) from the app's arguments, and `--bind ADDR`
    /// (default 127.0.0.1) for the host's stack.
    pub fn from_env(env: &Env) -> Result<Config, Error> {
        let ipv4 = match env.arg::<Mode<Ipv4Cidr>>("--ipv4")? {
            Some(Mode::Static(address)) => Ipv4Config::Static {
                address,
                gateway: env
                    .arg::<Address<Ipv4Address>>("--ipv4-gateway")?
                    .map(|a| a.0),
            },
            Some(Mode::Off) => Ipv4Config::Off,
            Some(Mode::Auto) | None => Ipv4Config::Dhcp,
        };
        let ipv6 = match env.arg::<Mode<Ipv6Cidr>>("--ipv6")? {
            Some(Mode::Static(address)) => Ipv6Config::Static {
                address,
                gateway: env
                    .arg::<Address<Ipv6Address>>("--ipv6-gateway")?
                    .map(|a| a.0),
            },
            Some(Mode::Off) => Ipv6Config::Off,
            Some(Mode::Auto) | None => Ipv6Config::Slaac,
        };
        let bind = env
            .arg::<Address<IpAddr>>("--bind")?
            .map_or(IpAddr::V4(Ipv4Address::LOCALHOST), |a| a.0);
        Ok(Config {
            ipv4,
            ipv6,
            tuning: Tuning::default(),
            bind,
        })
    }
}

/// How `--ipv4` and `--ipv6` spell an interface's set-up: an address with its prefix, the
/// automatic way (`dhcp` for IPv4, `slaac` for IPv6) or `off`.
enum Mode<C> {
    Static(C),
    Auto,
    Off,
}

/// An address with its prefix length.
trait Cidr: Sized {
    fn parse(address: &str, prefix: u8) -> Option<Self>;
    const AUTO: &'static str;
}

impl Cidr for Ipv4Cidr {
    fn parse(address: &str, prefix: u8) -> Option<Ipv4Cidr> {
        let address = address.parse().ok()?;
        (prefix <= 32).then(|| Ipv4Cidr::new(address, prefix))
    }
    const AUTO: &'static str = "dhcp";
}

impl Cidr for Ipv6Cidr {
    fn parse(address: &str, prefix: u8) -> Option<Ipv6Cidr> {
        let address = address.parse().ok()?;
        (prefix <= 128).then(|| Ipv6Cidr::new(address, prefix))
    }
    const AUTO: &'static str = "slaac";
}

impl<C: Cidr> FromStr for Mode<C> {
    type Err = ();

    fn from_str(text: &str) -> Result<Mode<C>, ()> {
        if text == C::AUTO {
            return Ok(Mode::Auto);
        }
        if text == "off" {
            return Ok(Mode::Off);
        }
        let (address, prefix) = text.split_once('/').ok_or(())?;
        let prefix: u8 = prefix.parse().map_err(|_| ())?;
        C::parse(address, prefix).map(Mode::Static).ok_or(())
    }
}

/// An address, as the command line spells it.
struct Address<A>(A);

impl<A: FromStr> FromStr for Address<A> {
    type Err = ();

    fn from_str(text: &str) -> Result<Address<A>, ()> {
        text.parse().map(Address).map_err(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec::Vec;

    fn config(args: &[&str]) -> Result<Config, Error> {
        Config::from_env(&Env::new(
            "test",
            &[OPTIONS],
            args.iter().map(|s| s.to_string()).collect(),
            Vec::new(),
        )?)
    }

    #[test]
    fn addresses_come_from_the_arguments() {
        let c = config(&["--ipv4", "10.0.0.2/24", "--ipv4-gateway", "10.0.0.1"]).unwrap();
        assert_eq!(
            c.ipv4,
            Ipv4Config::Static {
                address: Ipv4Cidr::new(Ipv4Address::new(10, 0, 0, 2), 24),
                gateway: Some(Ipv4Address::new(10, 0, 0, 1)),
            }
        );
        assert_eq!(config(&[]).unwrap().ipv4, Ipv4Config::Dhcp);
        assert_eq!(config(&["--ipv4", "dhcp"]).unwrap().ipv4, Ipv4Config::Dhcp);
        assert_eq!(config(&["--ipv4", "off"]).unwrap().ipv4, Ipv4Config::Off);
        assert!(config(&["--ipv4", "slaac"]).is_err());
        assert!(config(&["--ipv4", "10.0.0.2"]).is_err());
        assert!(config(&["--ipv4", "10.0.0.2/33"]).is_err());
        assert!(config(&["--ipv4", "10.0.0.2/24", "--ipv4-gateway", "x"]).is_err());
    }

    #[test]
    fn ipv6_is_static_slaac_or_off() {
        let c = config(&["--ipv6", "fd00:5::2/64", "--ipv6-gateway", "fd00:5::1"]).unwrap();
        assert_eq!(
            c.ipv6,
            Ipv6Config::Static {
                address: Ipv6Cidr::new("fd00:5::2".parse().unwrap(), 64),
                gateway: Some("fd00:5::1".parse().unwrap()),
            }
        );
        assert_eq!(config(&[]).unwrap().ipv6, Ipv6Config::Slaac);
        assert_eq!(config(&["--ipv6", "off"]).unwrap().ipv6, Ipv6Config::Off);
        assert!(config(&["--ipv6", "dhcp"]).is_err());
        assert!(config(&["--ipv6", "fd00::2/129"]).is_err());
        assert!(config(&["--ipv6", "10.0.0.2/24"]).is_err());
        assert_eq!(
            config(&["--bind", "::"]).unwrap().bind,
            IpAddr::V6(Ipv6Address::UNSPECIFIED)
        );
    }
}
