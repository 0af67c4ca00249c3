//! The sockets apps use, the same whichever backend carries them.

use alloc::boxed::Box;
use core::net::{IpAddr, SocketAddr};

use fata::{Env, Error, HostSockets, Net, Random};
use smoltcp::wire::IpEndpoint;

use crate::NetError;
use crate::addresses::Addresses;
use crate::config::{Config, Tuning};
use crate::datagrams::Datagrams;
use crate::host::{HostListener, HostStack, HostStream, HostUdp};
use crate::smol::SmolStack;
use crate::smol::link::LinkStats;
use crate::smol::tcp::{SmolListener, SmolStream};
use crate::smol::udp::SmolUdp;

/// A TCP/IP stack: Fata's own (smoltcp over a network interface, on every target) or, on unix
/// without an interface, the host's. Cheap to clone: clones share the stack.
#[derive(Clone)]
pub struct Stack(Backend);

#[derive(Clone)]
enum Backend {
    Smol(SmolStack),
    Host(HostStack),
}

impl Stack {
    /// Fata's own stack over `net`; `seed` randomises TCP sequence numbers and ports.
    pub fn new(net: Box<dyn Net>, config: Config, seed: u64) -> Stack {
        Stack(Backend::Smol(SmolStack::new(net, config, seed)))
    }

    /// The host's stack (unix), binding listeners and UDP sockets to `bind` (`::` for every
    /// IPv6 and IPv4 address).
    pub fn host(sockets: Box<dyn HostSockets>, bind: IpAddr) -> Stack {
        Stack(Backend::Host(HostStack::new(sockets, bind)))
    }

    /// The stack the app's environment calls for: Fata's own over the network interface
    /// `service` when there is one (hvt, or `fata run --target unix --net TAP`), configured with
    /// `--ipv4` and `--ipv6` (DHCP and SLAAC without them, see [`OPTIONS`](crate::OPTIONS));
    /// otherwise the host's sockets, bound to `--bind ADDR` (default 127.0.0.1).
    pub fn from_env(env: &mut Env) -> Result<Stack, Error> {
        Stack::from_env_tuned(env, Tuning::default())
    }

    /// As [`Stack::from_env`], with the app's own buffer sizes and listen backlog.
    pub fn from_env_tuned(env: &mut Env, tuning: Tuning) -> Result<Stack, Error> {
        let config = Config {
            tuning,
            ..Config::from_env(env)?
        };
        match env.take_net("service") {
            Ok(net) => {
                let mut seed = [0u8; 8];
                env.random().fill(&mut seed);
                Ok(Stack::new(net, config, u64::from_le_bytes(seed)))
            }
            Err(no_net) => match env.take_host_sockets() {
                Ok(sockets) => Ok(Stack::host(sockets, config.bind)),
                Err(_) => Err(no_net),
            },
        }
    }

    /// Waits until peers beyond the link can reach the stack (at once for static addresses;
    /// once DHCP or SLAAC has given one otherwise) and returns its addresses; for the host's
    /// stack, the address sockets bind to.
    pub async fn wait_configured(&self) -> Addresses {
        match &self.0 {
            Backend::Smol(stack) => stack.wait_configured().await,
            Backend::Host(stack) => Addresses::host(stack.bind_address()),
        }
    }

    /// The stack's addresses now (for the host's stack, the address sockets bind to).
    pub fn addresses(&self) -> Addresses {
        match &self.0 {
            Backend::Smol(stack) => stack.addresses(),
            Backend::Host(stack) => Addresses::host(stack.bind_address()),
        }
    }

    /// Frame counters of Fata's own stack; `None` for the host's.
    pub fn stats(&self) -> Option<LinkStats> {
        match &self.0 {
            Backend::Smol(stack) => Some(stack.stats()),
            Backend::Host(_) => None,
        }
    }

    /// `"fata"` for Fata's own stack, `"host"` for the host's sockets.
    pub fn kind(&self) -> &'static str {
        match &self.0 {
            Backend::Smol(_) => "fata",
            Backend::Host(_) => "host",
        }
    }
}

/// Accepts TCP connections on a port.
pub struct TcpListener(ListenerBackend);

enum ListenerBackend {
    Smol(SmolListener),
    Host(HostListener),
}

impl TcpListener {
    /// Listens on `port`.
    pub fn bind(stack: &Stack, port: u16) -> Result<TcpListener, NetError> {
        Ok(TcpListener(match &stack.0 {
            Backend::Smol(s) => ListenerBackend::Smol(SmolListener::bind(s, port)?),
            Backend::Host(s) => ListenerBackend::Host(HostListener::bind(s, port)?),
        }))
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        match &self.0 {
            ListenerBackend::Smol(l) => l.port(),
            ListenerBackend::Host(l) => l.port(),
        }
    }

    /// Waits for the next connection; returns it with the peer's address.
    pub async fn accept(&self) -> Result<(TcpStream, SocketAddr), NetError> {
        match &self.0 {
            ListenerBackend::Smol(l) => {
                let (stream, peer) = l.accept().await?;
                Ok((
                    TcpStream(StreamBackend::Smol(stream)),
                    SocketAddr::from(peer),
                ))
            }
            ListenerBackend::Host(l) => {
                let (stream, peer) = l.accept().await?;
                Ok((TcpStream(StreamBackend::Host(stream)), peer))
            }
        }
    }
}

/// One TCP connection. Dropping it closes the connection.
pub struct TcpStream(StreamBackend);

enum StreamBackend {
    Smol(SmolStream),
    Host(HostStream),
}

impl TcpStream {
    /// Connects to `remote` and waits until the connection is established.
    pub async fn connect(stack: &Stack, remote: SocketAddr) -> Result<TcpStream, NetError> {
        Ok(TcpStream(match &stack.0 {
            Backend::Smol(s) => {
                StreamBackend::Smol(SmolStream::connect(s, IpEndpoint::from(remote)).await?)
            }
            Backend::Host(s) => StreamBackend::Host(HostStream::connect(s, remote).await?),
        }))
    }

    /// The peer's address.
    pub fn peer(&self) -> Option<SocketAddr> {
        match &self.0 {
            StreamBackend::Smol(s) => s.peer().map(SocketAddr::from),
            StreamBackend::Host(s) => s.peer(),
        }
    }

    /// Our own address.
    pub fn local(&self) -> Option<SocketAddr> {
        match &self.0 {
            StreamBackend::Smol(s) => s.local().map(SocketAddr::from),
            StreamBackend::Host(s) => s.local(),
        }
    }

    /// Reads at least one byte into `buf`, waiting for it; `Ok(0)` once the peer has closed.
    pub async fn read(&mut self, buf: &mut [u8]) -> Result<usize, NetError> {
        match &mut self.0 {
            StreamBackend::Smol(s) => s.read(buf).await,
            StreamBackend::Host(s) => s.read(buf).await,
        }
    }

    /// Sends some of `buf`, waiting for room for at least one byte; returns how much was taken.
    pub async fn write(&mut self, buf: &[u8]) -> Result<usize, NetError> {
        match &mut self.0 {
            StreamBackend::Smol(s) => s.write(buf).await,
            StreamBackend::Host(s) => s.write(buf).await,
        }
    }

    /// Sends all of `buf`.
    pub async fn write_all(&mut self, mut buf: &[u8]) -> Result<(), NetError> {
        while !buf.is_empty() {
            let n = self.write(buf).await?;
            buf = &buf[n..];
        }
        Ok(())
    }

    /// Waits until the peer has acknowledged everything sent.
    pub async fn flush(&mut self) -> Result<(), NetError> {
        match &mut self.0 {
            StreamBackend::Smol(s) => s.flush().await,
            StreamBackend::Host(s) => s.flush().await,
        }
    }

    /// Closes the sending side; reading goes on until the peer closes too.
    pub fn shutdown(&mut self) {
        match &mut self.0 {
            StreamBackend::Smol(s) => s.shutdown(),
            StreamBackend::Host(s) => s.shutdown(),
        }
    }
}

/// A UDP socket.
pub struct UdpSocket(UdpBackend);

enum UdpBackend {
    Smol(SmolUdp),
    Host(HostUdp),
}

impl UdpSocket {
    /// Binds to `port`; 0 picks a free one.
    pub fn bind(stack: &Stack, port: u16) -> Result<UdpSocket, NetError> {
        Ok(UdpSocket(match &stack.0 {
            Backend::Smol(s) => UdpBackend::Smol(SmolUdp::bind(s, port)?),
            Backend::Host(s) => UdpBackend::Host(HostUdp::bind(s, port)?),
        }))
    }

    /// The local port.
    pub fn port(&self) -> u16 {
        match &self.0 {
            UdpBackend::Smol(s) => s.port(),
            UdpBackend::Host(s) => s.port(),
        }
    }

    /// Waits for a datagram; returns its length and sender.
    pub async fn recv_from(&self, buf: &mut [u8]) -> Result<(usize, SocketAddr), NetError> {
        match &self.0 {
            UdpBackend::Smol(s) => s.recv_from(buf).await.map(|(n, from)| (n, from.into())),
            UdpBackend::Host(s) => s.recv_from(buf).await,
        }
    }

    /// Waits for a datagram, then takes every waiting one, up to `max`, into `batch` (emptied
    /// first); returns how many. On unix host sockets this is one `recvmmsg` call.
    pub async fn recv_batch(&self, batch: &mut Datagrams, max: usize) -> Result<usize, NetError> {
        match &self.0 {
            UdpBackend::Smol(s) => s.recv_batch(batch, max).await,
            UdpBackend::Host(s) => s.recv_batch(batch, max).await,
        }
    }

    /// Sends every datagram of `batch` to its peer; on unix host sockets, `sendmmsg` calls.
    pub async fn send_batch(&self, batch: &Datagrams) -> Result<(), NetError> {
        match &self.0 {
            UdpBackend::Smol(s) => s.send_batch(batch).await,
            UdpBackend::Host(s) => s.send_batch(batch).await,
        }
    }

    /// Sends one datagram to `to`.
    pub async fn send_to(&self, data: &[u8], to: SocketAddr) -> Result<(), NetError> {
        match &self.0 {
            UdpBackend::Smol(s) => s.send_to(data, IpEndpoint::from(to)).await,
            UdpBackend::Host(s) => s.send_to(data, to).await,
        }
    }
}
