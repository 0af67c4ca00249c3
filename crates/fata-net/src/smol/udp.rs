//! UDP sockets.

use alloc::vec;
use core::future::poll_fn;
use core::task::Poll;

use smoltcp::iface::SocketHandle;
use smoltcp::socket::udp;
use smoltcp::wire::IpEndpoint;

use super::SmolStack;
use crate::NetError;
use crate::datagrams::Datagrams;

/// A UDP socket bound to a local port.
pub struct SmolUdp {
    stack: SmolStack,
    handle: SocketHandle,
    port: u16,
}

impl SmolUdp {
    /// Binds to `port` on every address of the interface; port 0 picks an ephemeral one.
    pub fn bind(stack: &SmolStack, port: u16) -> Result<SmolUdp, NetError> {
        let port = if port == 0 {
            stack.ephemeral_port()
        } else {
            port
        };
        let tuning = stack.inner.state.borrow().tuning;
        let metadata = || vec![udp::PacketMetadata::EMPTY; tuning.udp_packets];
        let rx = udp::PacketBuffer::new(metadata(), vec![0; tuning.udp_buffer]);
        let tx = udp::PacketBuffer::new(metadata(), vec![0; tuning.udp_buffer]);
        let mut socket = udp::Socket::new(rx, tx);
        socket.bind(port).map_err(|_| NetError::InvalidPort)?;
        let handle = stack.inner.state.borrow_mut().sockets.add(socket);
        Ok(SmolUdp {
            stack: stack.clone(),
            handle,
            port,
        })
    }

    /// The local port.
    pub fn port(&self) -> u16 {
        self.port
    }

    fn with<R>(&self, f: impl FnOnce(&mut udp::Socket<'static>) -> R) -> R {
        let mut state = self.stack.inner.state.borrow_mut();
        f(state.sockets.get_mut::<udp::Socket>(self.handle))
    }

    /// Waits for a datagram, copies it into `buf` and returns its length and sender. A datagram
    /// longer than `buf` is dropped with [`NetError::Truncated`].
    pub async fn recv_from(&self, buf: &mut [u8]) -> Result<(usize, IpEndpoint), NetError> {
        poll_fn(|cx| {
            self.with(|socket| match socket.recv_slice(buf) {
                Ok((len, meta)) => Poll::Ready(Ok((len, meta.endpoint))),
                Err(udp::RecvError::Truncated) => Poll::Ready(Err(NetError::Truncated)),
                Err(udp::RecvError::Exhausted) => {
                    socket.register_recv_waker(cx.waker());
                    Poll::Pending
                }
            })
        })
        .await
    }

    /// Sends `data` to `to`, waiting while the send buffer is full.
    pub async fn send_to(&self, data: &[u8], to: IpEndpoint) -> Result<(), NetError> {
        poll_fn(|cx| {
            self.with(|socket| match socket.send_slice(data, to) {
                Ok(()) => Poll::Ready(Ok(())),
                Err(udp::SendError::BufferFull) => {
                    socket.register_send_waker(cx.waker());
                    Poll::Pending
                }
                Err(udp::SendError::Unaddressable) => Poll::Ready(Err(NetError::Unaddressable)),
            })
        })
        .await?;
        self.stack.poke();
        Ok(())
    }
}

impl SmolUdp {
    /// Waits for at least one datagram, then takes every waiting one up to `max`.
    pub(crate) async fn recv_batch(
        &self,
        batch: &mut Datagrams,
        max: usize,
    ) -> Result<usize, NetError> {
        batch.clear();
        poll_fn(|cx| {
            self.with(|socket| {
                while batch.len() < max {
                    match socket.recv() {
                        Ok((data, meta)) => batch.push(data, meta.endpoint.into()),
                        Err(_) => break,
                    }
                }
                if batch.is_empty() {
                    socket.register_recv_waker(cx.waker());
                    Poll::Pending
                } else {
                    Poll::Ready(Ok(batch.len()))
                }
            })
        })
        .await
    }

    /// Queues every datagram of `batch`, waiting while the send buffer is full.
    pub(crate) async fn send_batch(&self, batch: &Datagrams) -> Result<(), NetError> {
        let mut items = batch.iter();
        let mut pending = items.next();
        poll_fn(|cx| {
            self.with(|socket| {
                while let Some((data, to)) = pending {
                    match socket.send_slice(data, IpEndpoint::from(to)) {
                        Ok(()) => pending = items.next(),
                        Err(udp::SendError::BufferFull) => {
                            socket.register_send_waker(cx.waker());
                            return Poll::Pending;
                        }
                        Err(udp::SendError::Unaddressable) => {
                            return Poll::Ready(Err(NetError::Unaddressable));
                        }
                    }
                }
                Poll::Ready(Ok(()))
            })
        })
        .await?;
        self.stack.poke();
        Ok(())
    }
}

impl Drop for SmolUdp {
    fn drop(&mut self) {
        self.stack
            .inner
            .state
            .borrow_mut()
            .sockets
            .remove(self.handle);
    }
}
