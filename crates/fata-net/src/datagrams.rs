//! A reusable batch of datagrams, so a server moves many per call without allocating per datagram.

use alloc::vec::Vec;
use core::net::SocketAddr;

/// Datagrams with their peers (senders when received, destinations when sent), stored back to
/// back in one buffer that is kept across batches.
#[derive(Debug, Default)]
pub struct Datagrams {
    bytes: Vec<u8>,
    items: Vec<(usize, usize, SocketAddr)>,
}

impl Datagrams {
    /// An empty batch.
    pub fn new() -> Datagrams {
        Datagrams::default()
    }

    /// Empties the batch, keeping its memory.
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.items.clear();
    }

    /// Appends a datagram.
    pub fn push(&mut self, data: &[u8], peer: SocketAddr) {
        self.items.push((self.bytes.len(), data.len(), peer));
        self.bytes.extend_from_slice(data);
    }

    /// The number of datagrams.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Each datagram with its peer, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], SocketAddr)> + '_ {
        self.items
            .iter()
            .map(|&(start, len, peer)| (&self.bytes[start..start + len], peer))
    }
}
