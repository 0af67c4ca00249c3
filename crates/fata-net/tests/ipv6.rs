//! IPv6 between two of Fata's stacks joined by a loopback pair: neighbour discovery, TCP and UDP
//! over static global addresses with no IPv4 at all, over link-local addresses alone, and both
//! families side by side on one dual-stack interface.

mod common;

use common::{assert_same, pattern, read_to_end, run, spawn_echo, spawn_udp_echo};
use fata_net::{
    Config, Ipv4Addr, Ipv4Cidr, Ipv6Addr, Ipv6Cidr, Ipv6Config, Loopback, SocketAddr, Stack,
    TcpStream, UdpSocket,
};

const SERVER: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1);
const CLIENT: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2);

/// A server and a client stack on one Ethernet, each made by `config` from its index (1 or 2).
fn stacks(config: impl Fn(u16) -> Config) -> (Stack, Stack) {
    let (server_end, client_end) = Loopback::pair();
    (
        Stack::new(Box::new(server_end), config(1), 1),
        Stack::new(Box::new(client_end), config(2), 2),
    )
}

fn ipv6_only(host: u16) -> Config {
    let address = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, host);
    Config::ipv6(Ipv6Cidr::new(address, 64), None)
}

/// Echoes 256 KiB over TCP to `server` and checks every byte, then one datagram per size over UDP.
async fn echo_both_ways(server_stack: &Stack, client_stack: &Stack, server: Ipv6Addr) {
    spawn_echo(server_stack, 7);
    let to = SocketAddr::from((server, 7));
    let mut stream = TcpStream::connect(client_stack, to).await.unwrap();
    assert_eq!(stream.peer(), Some(to));
    let sent = pattern(256 * 1024, 6);
    stream.write_all(&sent).await.unwrap();
    stream.shutdown();
    assert_same(&read_to_end(&mut stream).await.unwrap(), &sent);

    spawn_udp_echo(UdpSocket::bind(server_stack, 53).unwrap());
    let client = UdpSocket::bind(client_stack, 0).unwrap();
    let mut buf = [0; 2048];
    // 1452 bytes is the most an IPv6 UDP datagram carries in a 1500-byte frame.
    for len in [0, 1, 512, 1232, 1452] {
        let payload = pattern(len, len as u64);
        client
            .send_to(&payload, SocketAddr::from((server, 53)))
            .await
            .unwrap();
        let (n, from) = client.recv_from(&mut buf).await.unwrap();
        assert_eq!(from, SocketAddr::from((server, 53)));
        assert_eq!(&buf[..n], &payload[..], "datagram of {len} bytes");
    }
}

#[test]
fn tcp_and_udp_cross_an_ipv6_only_link() {
    run(async {
        let (server_stack, client_stack) = stacks(ipv6_only);
        let addresses = client_stack.wait_configured().await;
        assert_eq!(addresses.ipv4(), None);
        assert_eq!(addresses.ipv6_address(), Some(CLIENT));
        // The link-local address comes with every IPv6 set-up, printed last.
        assert!(addresses.to_string().starts_with("fd00::2/64, fe80::"));
        echo_both_ways(&server_stack, &client_stack, SERVER).await;
    });
}

#[test]
fn link_local_addresses_alone_carry_tcp_and_udp() {
    run(async {
        // SLAAC with no router on the link: only the link-local addresses, made from the MACs
        // 02:00:00:00:00:01 and :02 (modified EUI-64).
        let (server_stack, client_stack) = stacks(|_| Config {
            ipv6: Ipv6Config::Slaac,
            ..Config::ipv6(Ipv6Cidr::new(Ipv6Addr::UNSPECIFIED, 0), None)
        });
        let server = "fe80::ff:fe00:1".parse().unwrap();
        assert_eq!(server_stack.addresses().ipv6()[0].address(), server);
        assert!(!client_stack.addresses().routable());
        echo_both_ways(&server_stack, &client_stack, server).await;
    });
}

#[test]
fn a_dual_stack_interface_serves_both_families_on_one_port() {
    run(async {
        let (server_stack, client_stack) = stacks(|host| Config {
            ipv6: ipv6_only(host).ipv6,
            ..Config::ipv4(Ipv4Cidr::new(Ipv4Addr::new(10, 0, 0, host as u8), 24), None)
        });
        assert_eq!(
            server_stack
                .addresses()
                .to_string()
                .split(", ")
                .take(2)
                .collect::<Vec<_>>(),
            ["10.0.0.1/24", "fd00::1/64"]
        );
        echo_both_ways(&server_stack, &client_stack, SERVER).await;
        let to = SocketAddr::from((Ipv4Addr::new(10, 0, 0, 1), 7));
        let mut stream = TcpStream::connect(&client_stack, to).await.unwrap();
        stream.write_all(b"over IPv4").await.unwrap();
        stream.shutdown();
        assert_eq!(read_to_end(&mut stream).await.unwrap(), b"over IPv4");
    });
}
