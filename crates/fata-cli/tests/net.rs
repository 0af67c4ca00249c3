//! Networking end to end: the echo app on every target, reached over real tap devices in network
//! namespaces the tests create (and remove), or over the host's sockets.

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

use common::{Netns, Running, build};

const TIMEOUT: Duration = Duration::from_secs(10);

/// Sends 1 MiB through a TCP echo and checks every byte comes back.
fn tcp_round_trip(addr: SocketAddr) {
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    let data: Vec<u8> = (0..1 << 20)
        .map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let mut reader = stream.try_clone().unwrap();
    let expected = data.len();
    let receiver = std::thread::spawn(move || {
        let mut back = Vec::with_capacity(expected);
        let mut buf = [0u8; 65536];
        while back.len() < expected {
            match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => back.extend_from_slice(&buf[..n]),
                Err(e) => panic!("reading the echo after {} bytes: {e}", back.len()),
            }
        }
        back
    });
    stream.write_all(&data).unwrap();
    let back = receiver.join().unwrap();
    assert_eq!(back.len(), data.len(), "echoed length");
    assert!(back == data, "the echoed bytes differ");
}

/// Exchanges 100 UDP datagrams of different sizes.
fn udp_round_trips(addr: SocketAddr) {
    let socket = UdpSocket::bind("0.0.0.0:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut buf = [0u8; 2048];
    for i in 0..100u32 {
        let message: Vec<u8> = (0..(i * 13 % 1400 + 1)).map(|j| (i + j) as u8).collect();
        socket.send_to(&message, addr).unwrap();
        let (n, from) = socket.recv_from(&mut buf).expect("a UDP echo");
        assert_eq!(from, addr);
        assert_eq!(&buf[..n], &message[..], "datagram {i}");
    }
}

/// Opens 200 TCP connections at once, then checks each echoes its own message.
fn many_connections(addr: SocketAddr) {
    let mut streams: Vec<TcpStream> = (0..200)
        .map(|_| TcpStream::connect_timeout(&addr, TIMEOUT).unwrap())
        .collect();
    for (i, stream) in streams.iter_mut().enumerate() {
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        stream
            .write_all(format!("connection {i}\n").as_bytes())
            .unwrap();
    }
    for (i, stream) in streams.iter_mut().enumerate() {
        let expected = format!("connection {i}\n");
        let mut back = vec![0u8; expected.len()];
        stream.read_exact(&mut back).unwrap();
        assert_eq!(back, expected.as_bytes());
    }
}

/// Sends the unikernel frames no correct peer sends: random bytes, truncated headers, bad
/// checksums, oversized frames.
fn garbage_frames(ns: &Netns) {
    let script = r#"
import os, random, socket, struct
random.seed(7)
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(("tap0", 0))
dst = b"\xff" * 6
src = b"\x02\x00\x00\x00\x00\x01"
def frame(ethertype, payload):
    return dst + src + struct.pack("!H", ethertype) + payload
sent = 0
for n in range(300):
    s.send(os.urandom(random.randint(14, 1514))); sent += 1
for n in range(40):
    s.send(frame(0x0800, os.urandom(n % 20))); sent += 1          # truncated IPv4 headers
    s.send(frame(0x0806, os.urandom(n % 28))); sent += 1          # truncated ARP
ip = bytes([0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0xde, 0xad, 10, SUBNET, 0, 1, 10, SUBNET, 0, 2])
tcp = struct.pack("!HHIIBBHHH", 4000, 7, 1, 0, 0x50, 0x02, 1024, 0xbeef, 0)
for n in range(40):
    s.send(frame(0x0800, ip + tcp)); sent += 1                    # bad IP and TCP checksums
bad_len = bytes([0x45, 0, 0xff, 0xff]) + ip[4:]
s.send(frame(0x0800, bad_len + tcp)); sent += 1                   # length beyond the frame
for n in range(10):
    s.send(frame(0x0800, os.urandom(8000))); sent += 1            # oversized frames
print(sent)
"#
    .replace("SUBNET", &ns.subnet.to_string());
    let out = ns
        .command("python3")
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "sending garbage: {}",
        common::text(&out.stderr)
    );
}

fn ping(ns: &Netns) {
    let out = ns
        .command("ping")
        .args(["-c", "3", "-i", "0.2", "-W", "2", &ns.guest().to_string()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ping failed: {}",
        common::text(&out.stdout)
    );
    assert!(
        common::text(&out.stdout).contains("3 received"),
        "{}",
        common::text(&out.stdout)
    );
}

/// The whole echo check over a tap device: ping, TCP, UDP, many connections, then garbage and
/// the same checks again.
fn check_echo_over_tap(ns: &Netns, app: &mut Running) {
    let addr = SocketAddr::from((ns.guest(), 7));
    ping(ns);
    ns.run(|| {
        tcp_round_trip(addr);
        udp_round_trips(addr);
        many_connections(addr);
    });
    garbage_frames(ns);
    assert!(app.is_running(), "the app died on garbage frames");
    ping(ns);
    ns.run(|| {
        tcp_round_trip(addr);
        udp_round_trips(addr);
    });
}

#[test]
fn echo_on_unix_direct_over_a_tap_device() {
    let Some(ns) = Netns::create("direct", 61) else {
        return;
    };
    build("apps/echo", "unix");
    let ipv4 = format!("{}/24", ns.guest());
    let mut command = ns.fata();
    command.args([
        "run",
        "--release",
        "--target",
        "unix",
        "apps/echo",
        "--net",
        "tap0",
        "--",
        "--ipv4",
        &ipv4,
    ]);
    let mut app = Running::start(command, "echo: serving");
    check_echo_over_tap(&ns, &mut app);
}

#[test]
fn echo_on_hvt_over_a_tap_device() {
    if !fata_testkit::kvm() {
        return;
    }
    let Some(ns) = Netns::create("hvt", 63) else {
        return;
    };
    build("apps/echo", "hvt");
    let ipv4 = format!("{}/24", ns.guest());
    let mut command = ns.fata();
    command.args([
        "run",
        "--release",
        "--target",
        "hvt",
        "apps/echo",
        // 200 connections with their socket buffers take about 25 MiB of heap.
        "--mem",
        "96M",
        "--net",
        "tap0",
        "--mac",
        "02:00:00:00:63:02",
        "--",
        "--ipv4",
        &ipv4,
    ]);
    let mut app = Running::start(command, "echo: serving");
    check_echo_over_tap(&ns, &mut app);
    // The monitor gave the guest the MAC address asked for.
    let neighbours = ns
        .command("ip")
        .args(["neigh", "show", "dev", "tap0"])
        .output()
        .unwrap();
    assert!(
        common::text(&neighbours.stdout).contains("02:00:00:00:63:02"),
        "{}",
        common::text(&neighbours.stdout)
    );
}

#[test]
fn echo_on_unix_host_sockets() {
    let Some(ns) = Netns::create("sockets", 62) else {
        return;
    };
    build("apps/echo", "unix");
    let mut command = ns.fata();
    command.args([
        "run",
        "--release",
        "--target",
        "unix",
        "apps/echo",
        "--",
        "--bind",
        "127.0.0.1",
    ]);
    let _app = Running::start(command, "echo: serving");
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, 7));
    ns.run(|| {
        tcp_round_trip(addr);
        udp_round_trips(addr);
        many_connections(addr);
    });
}

/// Without `--ipv4` the stack asks DHCP: the unikernel gets its address from dnsmasq running in
/// the namespace, then serves on it.
#[test]
fn echo_on_hvt_gets_its_address_from_dhcp() {
    if !fata_testkit::kvm() {
        return;
    }
    if !fata_testkit::program("dnsmasq", "dnsmasq-base") {
        return;
    }
    let Some(ns) = Netns::create("dhcp", 68) else {
        return;
    };
    let leases = tempfile::tempdir().unwrap();
    let mut dnsmasq = ns
        .command("dnsmasq")
        .args([
            "--no-daemon",
            "--port=0",
            "--interface=tap0",
            "--bind-interfaces",
            "--dhcp-range=10.68.0.50,10.68.0.59,255.255.255.0,1h",
            "--dhcp-authoritative",
        ])
        .arg(format!(
            "--dhcp-leasefile={}",
            leases.path().join("leases").display()
        ))
        .arg(format!(
            "--pid-file={}",
            leases.path().join("pid").display()
        ))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("dnsmasq starts");
    build("apps/echo", "hvt");
    let mut command = ns.fata();
    command.args([
        "run",
        "--release",
        "--target",
        "hvt",
        "apps/echo",
        "--net",
        "tap0",
        "--mem",
        "64M",
    ]);
    let app = Running::start(command, "echo: serving");
    let _ = dnsmasq.kill();
    let _ = dnsmasq.wait();
    let address: Ipv4Addr = app
        .ready_line
        .split_whitespace()
        .find_map(|word| word.split('/').next().and_then(|a| a.parse().ok()))
        .expect("the ready line names the address");
    assert!(
        (50..60).contains(&address.octets()[3]) && address.octets()[..3] == [10, 68, 0],
        "{address} is not from the DHCP range ({})",
        app.ready_line
    );
    ns.run(|| {
        tcp_round_trip(SocketAddr::from((address, 7)));
        udp_round_trips(SocketAddr::from((address, 7)));
    });
}
