//! TCP: listeners that accept many connections, and streams with async read and write.

use alloc::vec;
use alloc::vec::Vec;
use core::cell::RefCell;
use core::future::poll_fn;
use core::task::Poll;

use smoltcp::iface::SocketHandle;
use smoltcp::socket::tcp;
use smoltcp::wire::{IpEndpoint, IpListenEndpoint};

use super::SmolStack;
use crate::NetError;

fn new_socket(stack: &SmolStack) -> tcp::Socket<'static> {
    let state = stack.inner.state.borrow();
    let tuning = state.tuning;
    let rx = tcp::SocketBuffer::new(vec![0; tuning.tcp_rx_buffer]);
    let tx = tcp::SocketBuffer::new(vec![0; tuning.tcp_tx_buffer]);
    let mut socket = tcp::Socket::new(rx, tx);
    // Servers write whole responses; Nagle would only hold back their last segment.
    socket.set_nagle_enabled(false);
    if state.link.offloading() {
        // One received segment may be many the host merged: acknowledging it at once keeps the
        // sender's window open, as a receiver acknowledges every second full-sized segment.
        socket.set_ack_delay(None);
    }
    socket
}

/// Accepts TCP connections on a port.
///
/// It keeps `Tuning::tcp_backlog` sockets listening, so that many handshakes can complete at once;
/// each accepted connection is replaced by a fresh listening socket.
pub struct SmolListener {
    stack: SmolStack,
    port: u16,
    listening: RefCell<Vec<SocketHandle>>,
}

impl SmolListener {
    /// Listens on `port` of every address of the interface.
    pub fn bind(stack: &SmolStack, port: u16) -> Result<SmolListener, NetError> {
        if port == 0 {
            return Err(NetError::InvalidPort);
        }
        let backlog = stack.inner.state.borrow().tuning.tcp_backlog.max(1);
        let listener = SmolListener {
            stack: stack.clone(),
            port,
            listening: RefCell::new(Vec::new()),
        };
        for _ in 0..backlog {
            let handle = listener.listen_one()?;
            listener.listening.borrow_mut().push(handle);
        }
        Ok(listener)
    }

    fn listen_one(&self) -> Result<SocketHandle, NetError> {
        let mut socket = new_socket(&self.stack);
        socket
            .listen(IpListenEndpoint::from(self.port))
            .map_err(|_| NetError::InvalidPort)?;
        Ok(self.stack.inner.state.borrow_mut().sockets.add(socket))
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Waits for the next established connection and returns it with the peer's address.
    pub async fn accept(&self) -> Result<(SmolStream, IpEndpoint), NetError> {
        let handle = poll_fn(|cx| {
            let mut listening = self.listening.borrow_mut();
            let mut state = self.stack.inner.state.borrow_mut();
            let ready = listening.iter().position(|&handle| {
                let socket = state.sockets.get_mut::<tcp::Socket>(handle);
                match socket.state() {
                    tcp::State::Listen | tcp::State::SynReceived => {
                        socket.register_recv_waker(cx.waker());
                        false
                    }
                    _ => true,
                }
            });
            match ready {
                Some(at) => Poll::Ready(listening.swap_remove(at)),
                None => Poll::Pending,
            }
        })
        .await;
        let replacement = self.listen_one()?;
        self.listening.borrow_mut().push(replacement);
        let stream = SmolStream {
            stack: self.stack.clone(),
            handle,
        };
        let peer = stream.peer().ok_or(NetError::ConnectionReset)?;
        Ok((stream, peer))
    }
}

impl Drop for SmolListener {
    fn drop(&mut self) {
        let mut state = self.stack.inner.state.borrow_mut();
        for handle in self.listening.borrow_mut().drain(..) {
            state.sockets.remove(handle);
        }
    }
}

/// One TCP connection. Dropping it closes the connection gracefully (reset after 10 s).
pub struct SmolStream {
    stack: SmolStack,
    handle: SocketHandle,
}

impl SmolStream {
    /// Opens a connection to `remote` and waits until it is established.
    pub async fn connect(stack: &SmolStack, remote: IpEndpoint) -> Result<SmolStream, NetError> {
        let port = stack.ephemeral_port();
        let mut socket = new_socket(stack);
        let handle = {
            let mut state = stack.inner.state.borrow_mut();
            socket
                .connect(state.iface.context(), remote, port)
                .map_err(|_| NetError::Unaddressable)?;
            state.sockets.add(socket)
        };
        let stream = SmolStream {
            stack: stack.clone(),
            handle,
        };
        stack.poke();
        poll_fn(|cx| {
            stream.with(|socket| match socket.state() {
                tcp::State::Established => Poll::Ready(Ok(())),
                tcp::State::SynSent | tcp::State::SynReceived => {
                    socket.register_send_waker(cx.waker());
                    Poll::Pending
                }
                _ => Poll::Ready(Err(NetError::ConnectionRefused)),
            })
        })
        .await?;
        Ok(stream)
    }

    fn with<R>(&self, f: impl FnOnce(&mut tcp::Socket<'static>) -> R) -> R {
        let mut state = self.stack.inner.state.borrow_mut();
        f(state.sockets.get_mut::<tcp::Socket>(self.handle))
    }

    /// The peer's address and port.
    pub fn peer(&self) -> Option<IpEndpoint> {
        self.with(|socket| socket.remote_endpoint())
    }

    /// Our address and port.
    pub fn local(&self) -> Option<IpEndpoint> {
        self.with(|socket| socket.local_endpoint())
    }

    /// Reads what has arrived into `buf`, waiting for at least one byte; `Ok(0)` when the peer
    /// has closed its side.
    pub async fn read(&mut self, buf: &mut [u8]) -> Result<usize, NetError> {
        let read = poll_fn(|cx| {
            self.with(|socket| {
                if socket.can_recv() {
                    return Poll::Ready(
                        socket
                            .recv_slice(buf)
                            .map_err(|_| NetError::ConnectionReset),
                    );
                }
                if !socket.may_recv() {
                    return Poll::Ready(match socket.state() {
                        tcp::State::Closed if socket.remote_endpoint().is_none() => {
                            Err(NetError::ConnectionReset)
                        }
                        _ => Ok(0),
                    });
                }
                socket.register_recv_waker(cx.waker());
                Poll::Pending
            })
        })
        .await;
        // Reading opened the receive window; let the peer know.
        self.stack.poke();
        read
    }

    /// Queues as much of `buf` as fits in the send buffer, waiting for room for at least one byte.
    pub async fn write(&mut self, buf: &[u8]) -> Result<usize, NetError> {
        let written = poll_fn(|cx| {
            self.with(|socket| {
                if !socket.may_send() {
                    return Poll::Ready(Err(NetError::ConnectionClosed));
                }
                if socket.can_send() {
                    return Poll::Ready(
                        socket
                            .send_slice(buf)
                            .map_err(|_| NetError::ConnectionClosed),
                    );
                }
                socket.register_send_waker(cx.waker());
                Poll::Pending
            })
        })
        .await?;
        self.stack.poke();
        Ok(written)
    }

    /// Waits until the peer has acknowledged everything written so far.
    pub async fn flush(&mut self) -> Result<(), NetError> {
        poll_fn(|cx| {
            self.with(|socket| {
                if socket.send_queue() == 0 {
                    Poll::Ready(Ok(()))
                } else if !socket.may_send() && socket.state() == tcp::State::Closed {
                    Poll::Ready(Err(NetError::ConnectionReset))
                } else {
                    socket.register_send_waker(cx.waker());
                    Poll::Pending
                }
            })
        })
        .await
    }

    /// Closes our side (sends FIN once the queued data is out); reading goes on until the peer
    /// closes its side.
    pub fn shutdown(&mut self) {
        self.with(|socket| socket.close());
        self.stack.poke();
    }
}

impl Drop for SmolStream {
    fn drop(&mut self) {
        self.stack.retire(self.handle);
    }
}
