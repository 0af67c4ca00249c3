//! TCP/IP for Fata apps: smoltcp over any Fata [`Net`](fata::Net) device, as async sockets.
//!
//! This is the network layer between the device traits and the services: a [`Stack`] owns one
//! interface (Ethernet, ARP, IPv4, ICMP echo, UDP, TCP, DHCPv4) and a task that moves frames in
//! batches; [`TcpListener`], [`TcpStream`] and [`UdpSocket`] are its sockets, awaited on the Fata
//! executor. The same code runs on every target that gives the app a network interface.
//!
//! ```no_run
//! # async fn serve(mut env: fata::Env) -> fata::Result<()> {
//! let stack = fata_net::Stack::from_env(&mut env)?; // --ipv4 10.0.0.2/24, or DHCP
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

mod config;
mod link;
mod stack;
mod tcp;
mod udp;

use core::fmt;

pub use config::{Config, Ipv4Config, Tuning};
pub use link::LinkStats;
pub use smoltcp::wire::{IpAddress, IpEndpoint, Ipv4Address, Ipv4Cidr};
pub use stack::Stack;
pub use tcp::{TcpListener, TcpStream};
pub use udp::UdpSocket;

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
        })
    }
}

impl core::error::Error for NetError {}
