//! The host's TCP/IP stack as a [`HostSockets`] device: non-blocking sockets watched by one epoll
//! instance, whose file descriptor is the device's readiness.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use fata_platform::{DeviceError, HostSockets, ReadySet, SocketId};
use socket2::{Domain, Socket, Type};

/// Events fetched per `epoll_wait` call.
const EVENT_BATCH: usize = 256;

enum Entry {
    Listener(TcpListener),
    Stream(TcpStream),
    Datagram(UdpSocket),
}

impl Entry {
    fn fd(&self) -> RawFd {
        match self {
            Entry::Listener(s) => s.as_raw_fd(),
            Entry::Stream(s) => s.as_raw_fd(),
            Entry::Datagram(s) => s.as_raw_fd(),
        }
    }
}

/// Non-blocking host sockets, edge-triggered in one epoll instance.
pub struct Sockets {
    epoll: OwnedFd,
    ready: ReadySet,
    entries: HashMap<SocketId, Entry>,
    next_id: SocketId,
}

fn error(e: io::Error) -> DeviceError {
    match e.kind() {
        io::ErrorKind::WouldBlock => DeviceError::WouldBlock,
        io::ErrorKind::AddrInUse => DeviceError::AddressInUse,
        io::ErrorKind::ConnectionRefused => DeviceError::ConnectionRefused,
        io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe => DeviceError::ConnectionReset,
        io::ErrorKind::AddrNotAvailable | io::ErrorKind::InvalidInput => {
            DeviceError::InvalidArgument
        }
        _ => DeviceError::Io,
    }
}

impl Sockets {
    /// A new, empty set of sockets whose readiness is `ready`.
    pub fn new(ready: ReadySet) -> io::Result<Sockets> {
        // SAFETY: epoll_create1 takes no pointers; a non-negative result is a new descriptor that
        // nothing else owns, so OwnedFd may take it.
        let epoll = unsafe {
            let fd = libc::epoll_create1(libc::EPOLL_CLOEXEC);
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            OwnedFd::from_raw_fd(fd)
        };
        Ok(Sockets {
            epoll,
            ready,
            entries: HashMap::new(),
            next_id: 1,
        })
    }

    /// The epoll descriptor, which `yield_until` polls.
    pub fn fd(&self) -> RawFd {
        self.epoll.as_raw_fd()
    }

    fn add(&mut self, entry: Entry) -> Result<SocketId, DeviceError> {
        let id = self.next_id;
        self.next_id += 1;
        let mut event = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET) as u32,
            u64: id,
        };
        // SAFETY: both descriptors are open (owned by `self` and `entry`) and `event` is a valid
        // epoll_event for the duration of the call.
        let rc = unsafe {
            libc::epoll_ctl(
                self.epoll.as_raw_fd(),
                libc::EPOLL_CTL_ADD,
                entry.fd(),
                &mut event,
            )
        };
        if rc < 0 {
            return Err(error(io::Error::last_os_error()));
        }
        self.entries.insert(id, entry);
        Ok(id)
    }

    fn entry(&mut self, id: SocketId) -> Result<&mut Entry, DeviceError> {
        self.entries.get_mut(&id).ok_or(DeviceError::NotFound)
    }

    fn stream(&mut self, id: SocketId) -> Result<&mut TcpStream, DeviceError> {
        match self.entry(id)? {
            Entry::Stream(s) => Ok(s),
            _ => Err(DeviceError::InvalidArgument),
        }
    }

    fn datagram(&mut self, id: SocketId) -> Result<&mut UdpSocket, DeviceError> {
        match self.entry(id)? {
            Entry::Datagram(s) => Ok(s),
            _ => Err(DeviceError::InvalidArgument),
        }
    }
}

impl HostSockets for Sockets {
    fn readiness(&self) -> ReadySet {
        self.ready
    }

    fn take_ready(&mut self, on_ready: &mut dyn FnMut(SocketId)) {
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; EVENT_BATCH];
        loop {
            // SAFETY: `events` has room for EVENT_BATCH entries, the count passed; timeout 0 never
            // blocks.
            let n = unsafe {
                libc::epoll_wait(
                    self.epoll.as_raw_fd(),
                    events.as_mut_ptr(),
                    EVENT_BATCH as i32,
                    0,
                )
            };
            if n <= 0 {
                return;
            }
            for event in &events[..n as usize] {
                on_ready(event.u64);
            }
            if (n as usize) < EVENT_BATCH {
                return;
            }
        }
    }

    fn tcp_listen(&mut self, addr: SocketAddr, backlog: u32) -> Result<SocketId, DeviceError> {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None).map_err(error)?;
        socket.set_reuse_address(true).map_err(error)?;
        socket.bind(&addr.into()).map_err(error)?;
        socket
            .listen(backlog.min(i32::MAX as u32) as i32)
            .map_err(error)?;
        socket.set_nonblocking(true).map_err(error)?;
        self.add(Entry::Listener(socket.into()))
    }

    fn tcp_accept(&mut self, listener: SocketId) -> Result<(SocketId, SocketAddr), DeviceError> {
        let Entry::Listener(l) = self.entry(listener)? else {
            return Err(DeviceError::InvalidArgument);
        };
        let (stream, peer) = l.accept().map_err(error)?;
        stream.set_nonblocking(true).map_err(error)?;
        stream.set_nodelay(true).map_err(error)?;
        Ok((self.add(Entry::Stream(stream))?, peer))
    }

    fn tcp_connect(&mut self, addr: SocketAddr) -> Result<SocketId, DeviceError> {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None).map_err(error)?;
        socket.set_nonblocking(true).map_err(error)?;
        socket.set_tcp_nodelay(true).map_err(error)?;
        match socket.connect(&addr.into()) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(e) => return Err(error(e)),
        }
        self.add(Entry::Stream(socket.into()))
    }

    fn tcp_connected(&mut self, socket: SocketId) -> Result<(), DeviceError> {
        let stream = self.stream(socket)?;
        if let Some(e) = stream.take_error().map_err(error)? {
            return Err(error(e));
        }
        match stream.peer_addr() {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Err(DeviceError::WouldBlock),
            Err(e) => Err(error(e)),
        }
    }

    fn tcp_recv(&mut self, socket: SocketId, buf: &mut [u8]) -> Result<usize, DeviceError> {
        self.stream(socket)?.read(buf).map_err(error)
    }

    fn tcp_send(&mut self, socket: SocketId, buf: &[u8]) -> Result<usize, DeviceError> {
        self.stream(socket)?.write(buf).map_err(error)
    }

    fn tcp_shutdown(&mut self, socket: SocketId) -> Result<(), DeviceError> {
        self.stream(socket)?
            .shutdown(Shutdown::Write)
            .map_err(error)
    }

    fn tcp_unacked(&mut self, socket: SocketId) -> Result<usize, DeviceError> {
        let fd = self.stream(socket)?.as_raw_fd();
        let mut queued: libc::c_int = 0;
        // SAFETY: TIOCOUTQ (SIOCOUTQ) writes one int, the bytes not yet acknowledged, to the
        // pointer, which is valid for the call.
        let rc = unsafe { libc::ioctl(fd, libc::TIOCOUTQ, &mut queued as *mut libc::c_int) };
        if rc < 0 {
            return Err(error(io::Error::last_os_error()));
        }
        Ok(queued.max(0) as usize)
    }

    fn udp_bind(&mut self, addr: SocketAddr) -> Result<SocketId, DeviceError> {
        let socket = UdpSocket::bind(addr).map_err(error)?;
        socket.set_nonblocking(true).map_err(error)?;
        self.add(Entry::Datagram(socket))
    }

    fn udp_recv_from(
        &mut self,
        socket: SocketId,
        buf: &mut [u8],
    ) -> Result<(usize, SocketAddr), DeviceError> {
        self.datagram(socket)?.recv_from(buf).map_err(error)
    }

    fn udp_send_to(
        &mut self,
        socket: SocketId,
        buf: &[u8],
        to: SocketAddr,
    ) -> Result<(), DeviceError> {
        self.datagram(socket)?
            .send_to(buf, to)
            .map(drop)
            .map_err(error)
    }

    fn local_addr(&self, socket: SocketId) -> Result<SocketAddr, DeviceError> {
        match self.entries.get(&socket).ok_or(DeviceError::NotFound)? {
            Entry::Listener(s) => s.local_addr(),
            Entry::Stream(s) => s.local_addr(),
            Entry::Datagram(s) => s.local_addr(),
        }
        .map_err(error)
    }

    fn peer_addr(&self, socket: SocketId) -> Result<SocketAddr, DeviceError> {
        match self.entries.get(&socket).ok_or(DeviceError::NotFound)? {
            Entry::Stream(s) => s.peer_addr().map_err(error),
            _ => Err(DeviceError::InvalidArgument),
        }
    }

    fn close(&mut self, socket: SocketId) {
        // Dropping the socket closes it, which also removes it from the epoll set.
        self.entries.remove(&socket);
    }
}
