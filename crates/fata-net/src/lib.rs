//! TCP/IP for Fata apps: smoltcp over any Fata [`Net`](fata::Net) device, as async sockets.
//!
//! This is the network layer between the device traits and the services. A [`Stack`] is either
//! - **Fata's own**: smoltcp over one network interface (Ethernet, ARP, IPv4, DHCPv4, IPv6 with
//!   neighbour discovery and SLAAC, ICMP echo on both, UDP, TCP) with a task that moves frames in
//!   batches, on hvt and on unix with `--net TAP`; or
//! - **the host's** (unix without `--net`): the kernel's sockets through the platform's
//!   `HostSockets` device.
//!
//! [`TcpListener`], [`TcpStream`] and [`UdpSocket`] work the same over both, awaited on the Fata
//! executor, so an app's source does not change between targets. [`Loopback`] is a network
//! device made of memory: two stacks on a [`Loopback::pair`] talk inside one process, which is how
//! this crate's and fata-http's integration tests run without root, taps or KVM.
//!
//! ```no_run
//! # async fn serve(mut env: fata::Env) -> fata::Result<()> {
//! let stack = fata_net::Stack::from_env(&mut env)?; // --ipv4 10.0.0.2/24 --ipv6 fd00::2/64
//! let listener = fata_net::TcpListener::bind(&stack, 7)?;
//! loop {
//!     let (mut stream, _peer) = listener.accept().await?;
//!     fata::spawn(async move {
//!         let mut buf = [0; 2048];
//!         while let Ok(n @ 1..) = stream.read(&mut buf).await {
//!             if stream.write_all(&buf[..n]).await.is_err() {
//!                 break;
//!             }
//!         }
//!     })
//!     .detach();
//! }
//! # }
//! ```
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

mod addresses;
mod config;
mod datagrams;
mod host;
mod loopback;
mod smol;
mod sockets;

use core::fmt;

pub use addresses::Addresses;
pub use config::{Config, Ipv4Config, Ipv6Config, OPTIONS, Tuning};
pub use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
pub use datagrams::Datagrams;
pub use loopback::Loopback;
pub use smol::link::LinkStats;
pub use smoltcp::wire::{Ipv4Cidr, Ipv6Cidr};
pub use sockets::{Stack, TcpListener, TcpStream, UdpSocket};

/// What a socket call can fail with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetError {
    /// The port is 0 or already bound.
    InvalidPort,
    /// No route to the address, or the interface has no address yet.
    Unaddressable,
    /// The peer refused the connection.
    ConnectionRefused,
    /// The connection was reset.
    ConnectionReset,
    /// Our side of the connection is closed; nothing more can be sent.
    ConnectionClosed,
    /// A datagram did not fit the buffer and was dropped.
    Truncated,
    /// The address and port are taken by another socket.
    AddressInUse,
    /// The host reported another failure.
    Io,
}

impl From<fata::DeviceError> for NetError {
    fn from(error: fata::DeviceError) -> NetError {
        use fata::DeviceError as E;
        match error {
            E::AddressInUse => NetError::AddressInUse,
            E::ConnectionRefused => NetError::ConnectionRefused,
            E::ConnectionReset => NetError::ConnectionReset,
            E::InvalidArgument => NetError::Unaddressable,
            _ => NetError::Io,
        }
    }
}

impl fmt::Display for NetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NetError::InvalidPort => "invalid or busy port",
            NetError::Unaddressable => "no route to the address",
            NetError::ConnectionRefused => "connection refused",
            NetError::ConnectionReset => "connection reset",
            NetError::ConnectionClosed => "connection closed",
            NetError::Truncated => "datagram larger than the buffer",
            NetError::AddressInUse => "address already in use",
            NetError::Io => "I/O error on the host",
        })
    }
}

impl core::error::Error for NetError {}
