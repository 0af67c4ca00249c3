//! The host's TCP/IP stack as a [`HostSockets`] device: non-blocking sockets, watched
//! edge-triggered by the platform's one epoll instance (see `poller`).

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};

use fata_platform::{DeviceError, HostSockets, ReadySet, SocketId};
use socket2::{Domain, Socket, Type};

/// Datagrams moved per `recvmmsg`/`sendmmsg` call.
const DATAGRAM_BATCH: usize = 64;
/// The largest datagram `udp_recv_many` takes whole (longer ones are truncated, as DNS over UDP
/// with EDNS stays within 4096 bytes).
const DATAGRAM_MAX: usize = 4096;

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

/// Non-blocking host sockets, watched edge-triggered by the platform's epoll instance.
pub struct Sockets {
    ready: ReadySet,
    entries: HashMap<SocketId, Entry>,
    next_id: SocketId,
    /// Receive buffers for `recvmmsg`, one `DATAGRAM_MAX` slot per datagram.
    batch: Box<[u8]>,
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
    pub fn new(ready: ReadySet) -> Sockets {
        Sockets {
            ready,
            entries: HashMap::new(),
            next_id: 1,
            batch: vec![0; DATAGRAM_BATCH * DATAGRAM_MAX].into_boxed_slice(),
        }
    }

    fn add(&mut self, entry: Entry) -> Result<SocketId, DeviceError> {
        let id = self.next_id;
        self.next_id += 1;
        crate::poller::watch_socket(entry.fd(), id).map_err(error)?;
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

/// The address in a `sockaddr_storage` the kernel filled in (IPv4 or IPv6).
fn socket_addr(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match i32::from(storage.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in, which it is large enough for.
            let v4 =
                unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            let ip = std::net::Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr));
            Some(SocketAddr::from((ip, u16::from_be(v4.sin_port))))
        }
        libc::AF_INET6 => {
            // SAFETY: as above, for sockaddr_in6.
            let v6 = unsafe {
                &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            let ip = std::net::Ipv6Addr::from(v6.sin6_addr.s6_addr);
            Some(SocketAddr::from((ip, u16::from_be(v6.sin6_port))))
        }
        _ => None,
    }
}

/// A `recvmmsg`/`sendmmsg` header for one buffer (`iov`) and the peer address at `name`.
fn message_header(
    iov: &mut libc::iovec,
    name: *mut libc::c_void,
    name_len: libc::socklen_t,
) -> libc::mmsghdr {
    // SAFETY: all-zero bytes are a valid mmsghdr; the fields that matter are set next.
    let mut header: libc::mmsghdr = unsafe { std::mem::zeroed() };
    header.msg_hdr.msg_name = name;
    header.msg_hdr.msg_namelen = name_len;
    header.msg_hdr.msg_iov = iov;
    header.msg_hdr.msg_iovlen = 1;
    header
}

impl HostSockets for Sockets {
    fn readiness(&self) -> ReadySet {
        self.ready
    }

    fn take_ready(&mut self, on_ready: &mut dyn FnMut(SocketId)) {
        // The platform's wait collected the events: taking them costs no system call.
        crate::poller::take_socket_events(on_ready);
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
        crate::coalesce::received(1);
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
        let n = self.stream(socket)?.read(buf).map_err(error)?;
        crate::coalesce::received(1);
        Ok(n)
    }

    fn tcp_send(&mut self, socket: SocketId, buf: &[u8]) -> Result<usize, DeviceError> {
        crate::coalesce::sending();
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
        let received = self.datagram(socket)?.recv_from(buf).map_err(error)?;
        crate::coalesce::received(1);
        Ok(received)
    }

    fn udp_send_to(
        &mut self,
        socket: SocketId,
        buf: &[u8],
        to: SocketAddr,
    ) -> Result<(), DeviceError> {
        crate::coalesce::sending();
        self.datagram(socket)?
            .send_to(buf, to)
            .map(drop)
            .map_err(error)
    }

    fn udp_recv_many(
        &mut self,
        socket: SocketId,
        max: usize,
        on_datagram: &mut dyn FnMut(&[u8], SocketAddr),
    ) -> Result<usize, DeviceError> {
        let fd = self.datagram(socket)?.as_raw_fd();
        let count = max.clamp(1, DATAGRAM_BATCH);
        // SAFETY: all-zero bytes are a valid value of these plain C structs.
        let mut addrs: [libc::sockaddr_storage; DATAGRAM_BATCH] = unsafe { std::mem::zeroed() };
        let mut iovecs: Vec<libc::iovec> = self
            .batch
            .chunks_exact_mut(DATAGRAM_MAX)
            .take(count)
            .map(|slot| libc::iovec {
                iov_base: slot.as_mut_ptr().cast(),
                iov_len: slot.len(),
            })
            .collect();
        let mut headers: Vec<libc::mmsghdr> = iovecs
            .iter_mut()
            .zip(addrs.iter_mut())
            .map(|(iov, addr)| {
                let len = std::mem::size_of::<libc::sockaddr_storage>() as u32;
                message_header(iov, (addr as *mut libc::sockaddr_storage).cast(), len)
            })
            .collect();
        // SAFETY: `headers` has `count` entries, each pointing at one iovec over its own
        // DATAGRAM_MAX-byte slot of `self.batch` and at its own sockaddr_storage; all outlive the
        // call, and MSG_DONTWAIT keeps it from blocking.
        let received = unsafe {
            libc::recvmmsg(
                fd,
                headers.as_mut_ptr(),
                count as u32,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if received < 0 {
            return Err(error(io::Error::last_os_error()));
        }
        let received = received as usize;
        crate::coalesce::received(received);
        for (i, header) in headers.iter().take(received).enumerate() {
            let len = (header.msg_len as usize).min(DATAGRAM_MAX);
            if let Some(from) = socket_addr(&addrs[i]) {
                on_datagram(&self.batch[i * DATAGRAM_MAX..][..len], from);
            }
        }
        Ok(received)
    }

    fn udp_send_many(
        &mut self,
        socket: SocketId,
        datagrams: &[(&[u8], SocketAddr)],
    ) -> Result<usize, DeviceError> {
        let fd = self.datagram(socket)?.as_raw_fd();
        let chunk = &datagrams[..datagrams.len().min(DATAGRAM_BATCH)];
        if chunk.is_empty() {
            return Ok(0);
        }
        crate::coalesce::sending();
        let addrs: Vec<socket2::SockAddr> = chunk.iter().map(|(_, to)| (*to).into()).collect();
        let mut iovecs: Vec<libc::iovec> = chunk
            .iter()
            .map(|(data, _)| libc::iovec {
                iov_base: data.as_ptr() as *mut _,
                iov_len: data.len(),
            })
            .collect();
        let mut headers: Vec<libc::mmsghdr> = iovecs
            .iter_mut()
            .zip(&addrs)
            .map(|(iov, addr)| message_header(iov, addr.as_ptr() as *mut _, addr.len()))
            .collect();
        // SAFETY: each header points at one iovec over caller-owned data (which sendmmsg only
        // reads) and at a SockAddr in `addrs`; all outlive the call.
        let sent = unsafe {
            libc::sendmmsg(
                fd,
                headers.as_mut_ptr(),
                headers.len() as u32,
                libc::MSG_DONTWAIT,
            )
        };
        if sent < 0 {
            return Err(error(io::Error::last_os_error()));
        }
        Ok(sent as usize)
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
