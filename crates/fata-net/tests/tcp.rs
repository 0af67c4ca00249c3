//! TCP between two of Fata's stacks joined by a loopback pair: no root, no tap, no KVM.

mod common;

use common::{CLIENT, SERVER, assert_same, pattern, read_to_end, run, server, spawn_echo, stacks};
use fata_net::{Config, Ipv4Cidr, Loopback, NetError, Stack, TcpListener, TcpStream, Tuning};

#[test]
fn an_echo_returns_a_megabyte_byte_exact() {
    run(async {
        let (server_stack, client_stack) = stacks(Tuning::default());
        spawn_echo(&server_stack, 7);
        let mut stream = TcpStream::connect(&client_stack, server(7)).await.unwrap();
        assert_eq!(stream.peer(), Some(server(7)));
        assert_eq!(stream.local().map(|a| a.ip()), Some(CLIENT.into()));
        let payload = pattern(1 << 20, 1);
        let mut echoed = Vec::with_capacity(payload.len());
        let mut buf = vec![0; 32 * 1024];
        // In rounds smaller than the windows, so the echo never waits for us to read.
        for chunk in payload.chunks(16 * 1024) {
            stream.write_all(chunk).await.unwrap();
            let want = echoed.len() + chunk.len();
            while echoed.len() < want {
                let n = stream.read(&mut buf).await.unwrap();
                assert!(n > 0, "the echo closed early");
                echoed.extend_from_slice(&buf[..n]);
            }
        }
        assert_same(&echoed, &payload);
    });
}

#[test]
fn a_megabyte_crosses_each_way_with_half_closes() {
    run(async {
        let (server_stack, client_stack) = stacks(Tuning::default());
        let listener = TcpListener::bind(&server_stack, 9).unwrap();
        let upload = pattern(1 << 20, 2);
        let download = pattern(1 << 20, 3);
        let (want_up, answer) = (upload.clone(), download.clone());
        let served = fata::spawn(async move {
            let (mut stream, peer) = listener.accept().await.unwrap();
            assert_eq!(peer.ip(), CLIENT);
            // The client's FIN ends the upload; our side stays open to answer.
            let got = read_to_end(&mut stream).await.unwrap();
            assert_same(&got, &want_up);
            stream.write_all(&answer).await.unwrap();
            stream.flush().await.unwrap();
        });
        let mut stream = TcpStream::connect(&client_stack, server(9)).await.unwrap();
        stream.write_all(&upload).await.unwrap();
        stream.shutdown();
        assert_eq!(
            stream.write(b"late").await,
            Err(NetError::ConnectionClosed),
            "nothing can be sent after shutdown"
        );
        let got = read_to_end(&mut stream).await.unwrap();
        assert_same(&got, &download);
        served.await;
    });
}

#[test]
fn a_hundred_connections_are_served_at_once() {
    const CONNECTIONS: usize = 100;
    run(async {
        let tuning = Tuning {
            tcp_rx_buffer: 4096,
            tcp_tx_buffer: 4096,
            tcp_backlog: CONNECTIONS + 8,
            ..Tuning::default()
        };
        let (server_stack, client_stack) = stacks(tuning);
        spawn_echo(&server_stack, 7);
        let clients: Vec<_> = (0..CONNECTIONS)
            .map(|at| {
                let stack = client_stack.clone();
                fata::spawn(async move {
                    let mut stream = TcpStream::connect(&stack, server(7)).await.unwrap();
                    let payload = pattern(3000 + at, 100 + at as u64);
                    stream.write_all(&payload).await.unwrap();
                    stream.shutdown();
                    let got = read_to_end(&mut stream).await.unwrap();
                    assert_same(&got, &payload);
                    stream.local().unwrap().port()
                })
            })
            .collect();
        let mut ports = Vec::new();
        for client in clients {
            ports.push(client.await);
        }
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), CONNECTIONS, "each connection had its own port");
    });
}

#[test]
fn a_port_nobody_listens_on_refuses() {
    run(async {
        let (_server_stack, client_stack) = stacks(Tuning::default());
        let refused = TcpStream::connect(&client_stack, server(81)).await;
        assert_eq!(refused.err(), Some(NetError::ConnectionRefused));
    });
}

#[test]
fn the_peer_closing_ends_the_stream_after_its_last_bytes() {
    run(async {
        let (server_stack, client_stack) = stacks(Tuning::default());
        let listener = TcpListener::bind(&server_stack, 7).unwrap();
        fata::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            stream.write_all(b"goodbye").await.unwrap();
            // Dropped: closed gracefully, after the bytes.
        })
        .detach();
        let mut stream = TcpStream::connect(&client_stack, server(7)).await.unwrap();
        assert_eq!(read_to_end(&mut stream).await.unwrap(), b"goodbye");
        assert_eq!(
            stream.read(&mut [0; 16]).await,
            Ok(0),
            "the end stays the end"
        );
    });
}

#[test]
fn a_connection_the_server_forgot_is_reset() {
    run(async {
        let (server_stack, client_stack) = stacks(Tuning::default());
        let listener = TcpListener::bind(&server_stack, 7).unwrap();
        let mut stream = TcpStream::connect(&client_stack, server(7)).await.unwrap();
        // Dropping the listener before accepting drops the connection it had established, so
        // the server answers the client's next segment with a reset.
        drop(listener);
        stream.write_all(b"anyone there?").await.unwrap();
        assert_eq!(
            stream.read(&mut [0; 16]).await,
            Err(NetError::ConnectionReset)
        );
        assert_eq!(
            stream.write(b"again").await,
            Err(NetError::ConnectionClosed)
        );
    });
}

#[test]
fn one_stack_talks_to_itself_over_a_single_loopback() {
    run(async {
        let config = Config::ipv4(Ipv4Cidr::new(SERVER, 24), None);
        let stack = Stack::new(Box::new(Loopback::new()), config, 7);
        spawn_echo(&stack, 7);
        let mut stream = TcpStream::connect(&stack, server(7)).await.unwrap();
        // Within both windows: one stack's own traffic, not a bulk transfer.
        let payload = pattern(50_000, 4);
        stream.write_all(&payload).await.unwrap();
        stream.shutdown();
        assert_same(&read_to_end(&mut stream).await.unwrap(), &payload);
    });
}
