//! UDP sockets.

use alloc::vec;
use core::future::poll_fn;
use core::task::Poll;

use smoltcp::iface::SocketHandle;
use smoltcp::socket::udp;
use smoltcp::wire::IpEndpoint;

use super::SmolStack;
use crate::NetError;

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
