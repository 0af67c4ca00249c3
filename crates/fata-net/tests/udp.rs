//! UDP between two of Fata's stacks joined by a loopback pair.

mod common;

use common::{CLIENT, pattern, run, server, spawn_udp_echo, stacks};
use fata_net::{Datagrams, NetError, SocketAddr, Tuning, UdpSocket};

#[test]
fn datagrams_of_every_size_come_back_intact() {
    run(async {
        let (server_stack, client_stack) = stacks(Tuning::default());
        spawn_udp_echo(UdpSocket::bind(&server_stack, 53).unwrap());
        let client = UdpSocket::bind(&client_stack, 0).unwrap();
        assert_ne!(client.port(), 0, "port 0 picks a free port");
        let mut buf = [0; 2048];
        for (at, len) in [0, 1, 2, 100, 512, 1000, 1471, 1472]
            .into_iter()
            .enumerate()
        {
            let payload = pattern(len, at as u64);
            client.send_to(&payload, server(53)).await.unwrap();
            let (n, from) = client.recv_from(&mut buf).await.unwrap();
            assert_eq!(from, server(53));
            assert_eq!(&buf[..n], &payload[..], "datagram of {len} bytes");
        }
    });
}

#[test]
fn a_datagram_larger_than_the_buffer_is_reported_and_dropped() {
    run(async {
        let (server_stack, client_stack) = stacks(Tuning::default());
        let receiver = UdpSocket::bind(&server_stack, 9).unwrap();
        let sender = UdpSocket::bind(&client_stack, 0).unwrap();
        sender.send_to(&[7; 100], server(9)).await.unwrap();
        sender.send_to(b"small", server(9)).await.unwrap();
        let mut buf = [0; 10];
        assert_eq!(receiver.recv_from(&mut buf).await, Err(NetError::Truncated));
        let (n, from) = receiver.recv_from(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"small");
        assert_eq!(from, SocketAddr::from((CLIENT, sender.port())));
    });
}

#[test]
fn batches_carry_hundreds_of_datagrams_in_order() {
    const COUNT: usize = 300;
    run(async {
        let (server_stack, client_stack) = stacks(Tuning::default());
        let server_socket = UdpSocket::bind(&server_stack, 53).unwrap();
        // The server answers each batch with one batch of the same datagrams, reversed in bytes.
        let served = fata::spawn(async move {
            let mut batch = Datagrams::new();
            let mut answer = Datagrams::new();
            let (mut seen, mut calls, mut largest) = (0, 0, 0);
            while seen < COUNT {
                let n = server_socket.recv_batch(&mut batch, 64).await.unwrap();
                assert!((1..=64).contains(&n) && n == batch.len());
                answer.clear();
                for (data, from) in batch.iter() {
                    let reversed: Vec<u8> = data.iter().rev().copied().collect();
                    answer.push(&reversed, from);
                }
                server_socket.send_batch(&answer).await.unwrap();
                (seen, calls, largest) = (seen + n, calls + 1, largest.max(n));
            }
            // Handed back, not dropped: a dropped socket's unsent answers would be lost.
            (calls, largest, server_socket)
        });
        let client = UdpSocket::bind(&client_stack, 0).unwrap();
        let mut batch = Datagrams::new();
        let sent: Vec<Vec<u8>> = (0..COUNT).map(|i| pattern(20 + i * 3, i as u64)).collect();
        for payload in &sent {
            batch.push(payload, server(53));
        }
        client.send_batch(&batch).await.unwrap();
        let mut got = Vec::new();
        while got.len() < COUNT {
            client.recv_batch(&mut batch, COUNT).await.unwrap();
            for (data, from) in batch.iter() {
                assert_eq!(from, server(53));
                got.push(data.iter().rev().copied().collect::<Vec<u8>>());
            }
        }
        assert!(got == sent, "every datagram came back once, in order");
        let (calls, largest, _socket) = served.await;
        assert!(
            largest > 1 && calls < COUNT,
            "the server took several datagrams per call ({calls} calls, at most {largest})"
        );
    });
}
