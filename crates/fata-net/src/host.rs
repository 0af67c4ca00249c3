//! The host backend (unix "socket" networking): the same sockets over the host kernel's TCP/IP
//! stack, through the platform's [`HostSockets`] device.

use alloc::boxed::Box;
use alloc::collections::{BTreeMap, BTreeSet};
use alloc::rc::Rc;
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};
use core::future::poll_fn;
use core::net::{IpAddr, SocketAddr};
use core::task::{Context, Poll, Waker};

use fata::{DeviceError, HostSockets, SocketId};

use crate::NetError;
use crate::datagrams::Datagrams;

/// Connections a host listener queues in the kernel.
const LISTEN_BACKLOG: u32 = 1024;

/// The host's stack, shared by every socket the app opens.
#[derive(Clone)]
pub(crate) struct HostStack {
    inner: Rc<Inner>,
}

struct Inner {
    sockets: RefCell<Box<dyn HostSockets>>,
    /// Tasks waiting for a socket to become ready.
    waiting: RefCell<BTreeMap<SocketId, Vec<Waker>>>,
    /// Sockets reported ready while no task waited for them (see [`HostStack::readable`]).
    fired: RefCell<BTreeSet<SocketId>>,
    bind: IpAddr,
}

impl HostStack {
    /// Wraps the platform's sockets; listeners and UDP sockets bind to `bind`.
    pub(crate) fn new(sockets: Box<dyn HostSockets>, bind: IpAddr) -> HostStack {
        let inner = Rc::new(Inner {
            sockets: RefCell::new(sockets),
            waiting: RefCell::new(BTreeMap::new()),
            fired: RefCell::new(BTreeSet::new()),
            bind,
        });
        fata::spawn(drive(inner.clone())).detach();
        HostStack { inner }
    }

    /// The address sockets bind to.
    pub(crate) fn bind_address(&self) -> IpAddr {
        self.inner.bind
    }

    /// Runs a non-blocking call; on `WouldBlock` waits for `socket` to become ready, then retries.
    async fn call<T>(
        &self,
        socket: SocketId,
        mut f: impl FnMut(&mut dyn HostSockets) -> Result<T, DeviceError>,
    ) -> Result<T, NetError> {
        poll_fn(
            |cx: &mut Context<'_>| match f(&mut **self.inner.sockets.borrow_mut()) {
                Err(DeviceError::WouldBlock) => {
                    let mut waiting = self.inner.waiting.borrow_mut();
                    let wakers = waiting.entry(socket).or_default();
                    if !wakers.iter().any(|w| w.will_wake(cx.waker())) {
                        wakers.push(cx.waker().clone());
                    }
                    Poll::Pending
                }
                other => Poll::Ready(other.map_err(NetError::from)),
            },
        )
        .await
    }

    fn now<T>(
        &self,
        f: impl FnOnce(&mut dyn HostSockets) -> Result<T, DeviceError>,
    ) -> Result<T, NetError> {
        f(&mut **self.inner.sockets.borrow_mut()).map_err(NetError::from)
    }

    /// Waits for the socket's next readiness report (or returns at once if one came while nobody
    /// waited). Edge-triggered reports mean a socket read until it came up short reports again
    /// when more arrives, so the reader can wait here instead of asking the kernel once more.
    async fn readable(&self, socket: SocketId) {
        let mut registered = false;
        poll_fn(|cx: &mut Context<'_>| {
            if self.inner.fired.borrow_mut().remove(&socket) {
                return Poll::Ready(());
            }
            let mut waiting = self.inner.waiting.borrow_mut();
            if registered && !waiting.contains_key(&socket) {
                return Poll::Ready(());
            }
            let wakers = waiting.entry(socket).or_default();
            if !wakers.iter().any(|w| w.will_wake(cx.waker())) {
                wakers.push(cx.waker().clone());
            }
            registered = true;
            Poll::Pending
        })
        .await
    }

    fn close(&self, socket: SocketId) {
        self.inner.waiting.borrow_mut().remove(&socket);
        self.inner.fired.borrow_mut().remove(&socket);
        self.inner.sockets.borrow_mut().close(socket);
    }
}

/// Wakes the tasks of every socket the host reports ready.
async fn drive(inner: Rc<Inner>) {
    let readiness = inner.sockets.borrow().readiness();
    loop {
        fata::wait_ready(readiness).await;
        let mut woken = Vec::new();
        {
            let mut waiting = inner.waiting.borrow_mut();
            let mut fired = inner.fired.borrow_mut();
            inner
                .sockets
                .borrow_mut()
                .take_ready(&mut |socket| match waiting.remove(&socket) {
                    Some(wakers) => woken.extend(wakers),
                    None => {
                        fired.insert(socket);
                    }
                });
        }
        woken.into_iter().for_each(Waker::wake);
    }
}

/// A listener of the host backend.
pub(crate) struct HostListener {
    stack: HostStack,
    socket: SocketId,
    port: u16,
}

impl HostListener {
    pub(crate) fn bind(stack: &HostStack, port: u16) -> Result<HostListener, NetError> {
        let addr = SocketAddr::from((stack.bind_address(), port));
        let socket = stack.now(|s| s.tcp_listen(addr, LISTEN_BACKLOG))?;
        let port = stack
            .now(|s| s.local_addr(socket))
            .map(|a| a.port())
            .unwrap_or(port);
        Ok(HostListener {
            stack: stack.clone(),
            socket,
            port,
        })
    }

    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    pub(crate) async fn accept(&self) -> Result<(HostStream, SocketAddr), NetError> {
        let (socket, peer) = self
            .stack
            .call(self.socket, |s| s.tcp_accept(self.socket))
            .await?;
        Ok((
            HostStream {
                stack: self.stack.clone(),
                socket,
            },
            peer,
        ))
    }
}

impl Drop for HostListener {
    fn drop(&mut self) {
        self.stack.close(self.socket);
    }
}

/// A connection of the host backend.
pub(crate) struct HostStream {
    stack: HostStack,
    socket: SocketId,
}

impl HostStream {
    pub(crate) async fn connect(
        stack: &HostStack,
        remote: SocketAddr,
    ) -> Result<HostStream, NetError> {
        let socket = stack.now(|s| s.tcp_connect(remote))?;
        let stream = HostStream {
            stack: stack.clone(),
            socket,
        };
        stack.call(socket, |s| s.tcp_connected(socket)).await?;
        Ok(stream)
    }

    pub(crate) fn peer(&self) -> Option<SocketAddr> {
        self.stack.now(|s| s.peer_addr(self.socket)).ok()
    }

    pub(crate) fn local(&self) -> Option<SocketAddr> {
        self.stack.now(|s| s.local_addr(self.socket)).ok()
    }

    pub(crate) async fn read(&mut self, buf: &mut [u8]) -> Result<usize, NetError> {
        let socket = self.socket;
        self.stack.call(socket, |s| s.tcp_recv(socket, buf)).await
    }

    pub(crate) async fn write(&mut self, buf: &[u8]) -> Result<usize, NetError> {
        let socket = self.socket;
        self.stack.call(socket, |s| s.tcp_send(socket, buf)).await
    }

    /// The host acknowledges on its own; waiting for the peer's ACK polls the send queue.
    pub(crate) async fn flush(&mut self) -> Result<(), NetError> {
        let socket = self.socket;
        loop {
            if self.stack.now(|s| s.tcp_unacked(socket))? == 0 {
                return Ok(());
            }
            fata::sleep(core::time::Duration::from_millis(1)).await;
        }
    }

    pub(crate) fn shutdown(&mut self) {
        // Shutting down a connection the peer already reset has nothing left to do.
        let _ = self.stack.now(|s| s.tcp_shutdown(self.socket));
    }
}

impl Drop for HostStream {
    fn drop(&mut self) {
        self.stack.close(self.socket);
    }
}

/// A UDP socket of the host backend.
pub(crate) struct HostUdp {
    stack: HostStack,
    socket: SocketId,
    port: u16,
    /// The last batch came up short, so the kernel queue was empty: wait for readiness first.
    drained: Cell<bool>,
}

impl HostUdp {
    pub(crate) fn bind(stack: &HostStack, port: u16) -> Result<HostUdp, NetError> {
        let socket = stack.now(|s| s.udp_bind(SocketAddr::from((stack.bind_address(), port))))?;
        let port = stack
            .now(|s| s.local_addr(socket))
            .map(|a| a.port())
            .unwrap_or(port);
        Ok(HostUdp {
            stack: stack.clone(),
            socket,
            port,
            drained: Cell::new(false),
        })
    }

    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    pub(crate) async fn recv_from(&self, buf: &mut [u8]) -> Result<(usize, SocketAddr), NetError> {
        self.stack
            .call(self.socket, |s| s.udp_recv_from(self.socket, buf))
            .await
    }

    pub(crate) async fn send_to(&self, data: &[u8], to: SocketAddr) -> Result<(), NetError> {
        self.stack
            .call(self.socket, |s| s.udp_send_to(self.socket, data, to))
            .await
    }

    pub(crate) async fn recv_batch(
        &self,
        batch: &mut Datagrams,
        max: usize,
    ) -> Result<usize, NetError> {
        let socket = self.socket;
        if self.drained.get() {
            // Saves the empty recvmmsg a busy server would otherwise make after every batch.
            self.stack.readable(socket).await;
        }
        batch.clear();
        let received = self
            .stack
            .call(socket, |s| {
                s.udp_recv_many(socket, max, &mut |data, from| batch.push(data, from))
            })
            .await?;
        self.drained.set(received < max);
        Ok(received)
    }

    pub(crate) async fn send_batch(&self, batch: &Datagrams) -> Result<(), NetError> {
        let list: Vec<(&[u8], SocketAddr)> = batch.iter().collect();
        let socket = self.socket;
        let mut done = 0;
        while done < list.len() {
            done += self
                .stack
                .call(socket, |s| s.udp_send_many(socket, &list[done..]))
                .await?;
        }
        Ok(())
    }
}

impl Drop for HostUdp {
    fn drop(&mut self) {
        self.stack.close(self.socket);
    }
}
