//! How the stack is configured: addresses from the app's arguments, sizes for its buffers.

use core::str::FromStr;

use fata::{Env, Error, Opt};
use smoltcp::wire::{Ipv4Address, Ipv4Cidr};

/// The options the stack reads from the app's arguments: an app that builds its stack with
/// [`Stack::from_env`](crate::Stack::from_env) lists them in `#[fata::main(options = [...])]`.
pub const OPTIONS: &[Opt] = &[
    Opt::value(
        "--ipv4",
        "ADDR/PREFIX",
        "the interface's address, as 10.0.0.2/24 (DHCP without it)",
    ),
    Opt::value("--ipv4-gateway", "ADDR", "the default gateway, with --ipv4"),
    Opt::value(
        "--bind",
        "ADDR",
        "the address to serve on with the host's sockets (unix without --net; default 127.0.0.1)",
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
    /// Buffer sizes.
    pub tuning: Tuning,
    /// The address the host's stack binds to (unix without a network interface).
    pub bind: Ipv4Address,
}

impl Config {
    /// Reads `--ipv4 ADDR/PREFIX` and `--ipv4-gateway ADDR` from the app's arguments (DHCP when
    /// `--ipv4` is absent), and `--bind ADDR` (default 127.0.0.1) for the host's stack.
    pub fn from_env(env: &Env) -> Result<Config, Error> {
        let ipv4 = match env.arg::<Cidr>("--ipv4")? {
            Some(Cidr(address)) => Ipv4Config::Static {
                address,
                gateway: env.arg::<Addr>("--ipv4-gateway")?.map(|a| a.0),
            },
            None => Ipv4Config::Dhcp,
        };
        let bind = env
            .arg::<Addr>("--bind")?
            .map_or(Ipv4Address::LOCALHOST, |a| a.0);
        Ok(Config {
            ipv4,
            tuning: Tuning::default(),
            bind,
        })
    }
}

/// `ADDR/PREFIX`, as the command line spells it.
struct Cidr(Ipv4Cidr);

impl FromStr for Cidr {
    type Err = ();

    fn from_str(text: &str) -> Result<Cidr, ()> {
        let (address, prefix) = text.split_once('/').ok_or(())?;
        let address: Ipv4Address = address.parse().map_err(|_| ())?;
        let prefix: u8 = prefix.parse().map_err(|_| ())?;
        if prefix > 32 {
            return Err(());
        }
        Ok(Cidr(Ipv4Cidr::new(address, prefix)))
    }
}

/// An IPv4 address.
struct Addr(Ipv4Address);

impl FromStr for Addr {
    type Err = ();

    fn from_str(text: &str) -> Result<Addr, ()> {
        text.parse().map(Addr).map_err(|_| ())
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
        assert!(config(&["--ipv4", "10.0.0.2"]).is_err());
        assert!(config(&["--ipv4", "10.0.0.2/33"]).is_err());
        assert!(config(&["--ipv4", "10.0.0.2/24", "--ipv4-gateway", "x"]).is_err());
    }
}
