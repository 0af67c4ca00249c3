//! Two stacks joined by a loopback pair, run on the Fata executor with a time limit.
#![allow(dead_code)] // each test file uses its own subset

use std::future::Future;
use std::time::Duration;

use fata_net::{Config, Ipv4Addr, Ipv4Cidr, Ipv4Config, Loopback, SocketAddr, Stack, Tuning};

/// The server's address; the client is 10.0.0.2.
pub const SERVER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
/// The client's address.
pub const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
/// The longest any test may take; the slowest takes well under a second.
const LIMIT: Duration = Duration::from_secs(20);

/// Runs `test` on a fresh executor and fails it if it has not finished within the limit.
pub fn run(test: impl Future<Output = ()> + 'static) {
    fata::block_on(async move {
        fata::timeout(LIMIT, test)
            .await
            .expect("the test did not finish in time");
    });
}

/// A server stack and a client stack on one Ethernet, with the buffer sizes of `tuning`.
pub fn stacks(tuning: Tuning) -> (Stack, Stack) {
    let (server_end, client_end) = Loopback::pair();
    let config = |address| Config {
        ipv4: Ipv4Config::Static {
            address: Ipv4Cidr::new(address, 24),
            gateway: None,
        },
        tuning,
        bind: Ipv4Addr::LOCALHOST,
    };
    (
        Stack::new(Box::new(server_end), config(SERVER), 1),
        Stack::new(Box::new(client_end), config(CLIENT), 2),
    )
}

/// `port` on the server.
pub fn server(port: u16) -> SocketAddr {
    SocketAddr::from((SERVER, port))
}

/// `len` bytes that differ from `seed` to `seed` and never repeat in a short period, so a lost,
/// doubled or reordered chunk shows.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}
