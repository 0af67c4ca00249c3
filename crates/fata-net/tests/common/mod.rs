//! Two stacks joined by a loopback pair, run on the Fata executor with a time limit.
#![allow(dead_code)] // each test file uses its own subset

use std::future::Future;
use std::time::Duration;

use fata_net::{
    Config, Ipv4Addr, Ipv4Cidr, Loopback, NetError, SocketAddr, Stack, TcpListener, TcpStream,
    Tuning, UdpSocket,
};

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
        tuning,
        ..Config::ipv4(Ipv4Cidr::new(address, 24), None)
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

/// Reads until the peer closes its side.
pub async fn read_to_end(stream: &mut TcpStream) -> Result<Vec<u8>, NetError> {
    let mut all = Vec::new();
    let mut buf = [0; 4096];
    loop {
        match stream.read(&mut buf).await? {
            0 => return Ok(all),
            n => all.extend_from_slice(&buf[..n]),
        }
    }
}

/// Fails with the first differing offset rather than a megabyte of bytes.
pub fn assert_same(got: &[u8], want: &[u8]) {
    let first = got.iter().zip(want).position(|(g, w)| g != w);
    assert!(
        got.len() == want.len() && first.is_none(),
        "got {} bytes, want {}; first difference at {first:?}",
        got.len(),
        want.len()
    );
}

/// Serves an echo on `port`: every connection gets back what it sends, until it closes.
pub fn spawn_echo(stack: &Stack, port: u16) {
    let listener = TcpListener::bind(stack, port).unwrap();
    fata::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            fata::spawn(async move {
                let mut buf = [0; 2048];
                while let Ok(n @ 1..) = stream.read(&mut buf).await {
                    if stream.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            })
            .detach();
        }
    })
    .detach();
}

/// Answers every datagram `socket` receives with the same bytes, one at a time.
pub fn spawn_udp_echo(socket: UdpSocket) {
    fata::spawn(async move {
        let mut buf = [0; 2048];
        loop {
            let (n, from) = socket.recv_from(&mut buf).await.unwrap();
            socket.send_to(&buf[..n], from).await.unwrap();
        }
    })
    .detach();
}
