//! Networking end to end: the echo app on every target, reached over real tap devices in network
//! namespaces the tests create (and remove), or over the host's sockets.

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

use common::{Netns, Running, build};

const TIMEOUT: Duration = Duration::from_secs(10);

/// Sends 1 MiB through a TCP echo and checks every byte comes back.
fn tcp_round_trip(addr: SocketAddr) {
    tcp_echo(addr, 1 << 20);
}

/// Sends `len` bytes through a TCP echo while reading them back, and checks every byte.
fn tcp_echo(addr: SocketAddr, len: u32) {
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    let data: Vec<u8> = (0..len)
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
    let socket = UdpSocket::bind(match addr {
        SocketAddr::V4(_) => "0.0.0.0:0",
        SocketAddr::V6(_) => "[::]:0",
    })
    .unwrap();
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
/// checksums, oversized frames, for IPv4 and ARP and for IPv6 and ICMPv6.
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
guest6 = bytes.fromhex("fd00%04x000000000000000000000002" % SUBNET)
host6 = bytes.fromhex("fd00%04x000000000000000000000001" % SUBNET)
def ipv6(next_header, payload, length=None):
    length = len(payload) if length is None else length
    return bytes([0x60, 0, 0, 0]) + struct.pack("!HBB", length, next_header, 255) + host6 + guest6 + payload
for n in range(40):
    s.send(frame(0x86dd, os.urandom(n % 40))); sent += 1          # truncated IPv6 headers
    s.send(frame(0x86dd, ipv6(58, os.urandom(n % 32)))); sent += 1   # random ICMPv6
    s.send(frame(0x86dd, ipv6(0, os.urandom(n % 16)))); sent += 1    # broken hop-by-hop options
# A neighbour solicitation for the guest with a bad checksum, and TCP with one.
solicit = struct.pack("!BBHI", 135, 0, 0xdead, 0) + guest6 + bytes([1, 1]) + src
for n in range(20):
    s.send(frame(0x86dd, ipv6(58, solicit))); sent += 1
    s.send(frame(0x86dd, ipv6(6, tcp))); sent += 1
s.send(frame(0x86dd, ipv6(17, os.urandom(8), length=0xffff))); sent += 1  # length beyond the frame
print(sent)
"#
    .replace("SUBNET", &ns.subnet.to_string());
    run_python(ns, &script, "sending garbage");
}

fn ping(ns: &Netns, guest: IpAddr) {
    let out = ns
        .command("ping")
        .args(["-c", "3", "-i", "0.2", "-W", "2", &guest.to_string()])
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

/// The whole echo check over a tap device, at the app's address `guest`: ping, TCP, UDP, many
/// connections, then garbage and the same checks again.
fn check_echo_over_tap(ns: &Netns, app: &mut Running, guest: IpAddr) {
    let addr = SocketAddr::from((guest, 7));
    ping(ns, guest);
    ns.run(|| {
        tcp_round_trip(addr);
        udp_round_trips(addr);
        many_connections(addr);
    });
    garbage_frames(ns);
    assert!(app.is_running(), "the app died on garbage frames");
    ping(ns, guest);
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
    check_echo_over_tap(&ns, &mut app, ns.guest().into());
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
    check_echo_over_tap(&ns, &mut app, ns.guest().into());
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

/// `fata run` of apps/echo (built first) on `target` inside `ns`, its interface on `link` (a tap
/// or `packet:IFACE`), with the monitor's and the app's arguments.
fn echo_command(
    ns: &Netns,
    target: &str,
    link: &str,
    monitor_args: &[&str],
    app_args: &[&str],
) -> std::process::Command {
    build("apps/echo", target);
    let mut command = ns.fata();
    command
        .args(["run", "--release", "--target", target, "apps/echo"])
        .args(["--net", link])
        .args(monitor_args)
        .arg("--")
        .args(app_args);
    command
}

/// Starts apps/echo as [`echo_command`] makes it and waits until it serves.
fn start_echo(
    ns: &Netns,
    target: &str,
    link: &str,
    monitor_args: &[&str],
    app_args: &[&str],
) -> Running {
    Running::start(
        echo_command(ns, target, link, monitor_args, app_args),
        "echo: serving",
    )
}

#[test]
fn echo_on_hvt_over_an_ipv6_only_link() {
    if !fata_testkit::kvm() {
        return;
    }
    let Some(ns) = Netns::create("hvt6", 87).map(Netns::ipv6_only) else {
        return;
    };
    let ipv6 = format!("{}/64", ns.guest6());
    // 200 connections with their socket buffers take about 25 MiB of heap.
    let monitor = ["--mem", "96M", "--mac", "02:00:00:00:87:02"];
    let mut app = start_echo(
        &ns,
        "hvt",
        "tap0",
        &monitor,
        &["--ipv4", "off", "--ipv6", &ipv6],
    );
    assert!(
        app.ready_line
            .contains(&format!("on {ipv6}, fe80::ff:fe00:8702/64 ")),
        "{}",
        app.ready_line
    );
    check_echo_over_tap(&ns, &mut app, ns.guest6().into());
    // The host learnt the guest's MAC through neighbour discovery.
    let neighbours = ns
        .command("ip")
        .args(["-6", "neigh", "show", "dev", "tap0"])
        .output()
        .unwrap();
    let neighbours = common::text(&neighbours.stdout);
    assert!(
        neighbours.contains(&format!("{} lladdr 02:00:00:00:87:02", ns.guest6())),
        "{neighbours}"
    );
}

#[test]
fn echo_on_unix_direct_over_an_ipv6_only_link() {
    let Some(ns) = Netns::create("direct6", 88).map(Netns::ipv6_only) else {
        return;
    };
    let ipv6 = format!("{}/64", ns.guest6());
    let mut app = start_echo(
        &ns,
        "unix",
        "tap0",
        &[],
        &["--ipv4", "off", "--ipv6", &ipv6],
    );
    check_echo_over_tap(&ns, &mut app, ns.guest6().into());
}

/// With neither `--ipv6` nor an IPv4 address, the stack takes its IPv6 address from the router
/// advertisements radvd sends on the link (SLAAC): the prefix fd00:N::/64 and the interface
/// identifier made from its MAC.
#[test]
fn echo_on_hvt_takes_its_ipv6_address_from_router_advertisements() {
    if !fata_testkit::kvm() {
        return;
    }
    if !fata_testkit::program("radvd", "radvd") {
        return;
    }
    let Some(ns) = Netns::create("slaac", 89).map(Netns::ipv6_only) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut radvd = start_radvd(&ns, dir.path());
    let monitor = ["--mem", "96M", "--mac", "02:00:00:00:89:02"];
    let mut app = start_echo(&ns, "hvt", "tap0", &monitor, &["--ipv4", "off"]);
    let slaac: Ipv6Addr = format!("fd00:{:x}::ff:fe00:8902", ns.subnet)
        .parse()
        .unwrap();
    assert!(
        app.ready_line.contains(&format!("on {slaac}/64, ")),
        "{}",
        app.ready_line
    );
    check_echo_over_tap(&ns, &mut app, slaac.into());
    let _ = radvd.kill();
    let _ = radvd.wait();
}

/// Starts radvd in `ns`, its files in `dir`: advertisements on `tap0` every 3-4 s of the prefix
/// fd00:N::/64.
fn start_radvd(ns: &Netns, dir: &std::path::Path) -> std::process::Child {
    let subnet = ns.subnet;
    let config = dir.join("radvd.conf");
    std::fs::write(
        &config,
        format!(
            "interface tap0 {{\n  AdvSendAdvert on;\n  MinRtrAdvInterval 3;\n  \
             MaxRtrAdvInterval 4;\n  prefix fd00:{subnet:x}::/64 {{ AdvOnLink on; AdvAutonomous on; }};\n}};\n"
        ),
    )
    .unwrap();
    ns.command("radvd")
        .args(["--nodaemon", "--logmethod", "stderr", "--config"])
        .arg(&config)
        .arg("--pidfile")
        .arg(dir.join("radvd.pid"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("radvd starts")
}

/// smoltcp 0.14 leaves router discovery stuck when no router answers (fata-net's `discovery`
/// module): from 12 s after boot on, every answer of a guest with an open connection waited
/// 20-60 ms on hvt. Round trips on a connection held open past that point stay quick, and a
/// router that starts advertising afterwards still gives the guest its SLAAC address.
#[test]
fn echo_on_hvt_stays_quick_after_router_discovery_gives_up_and_hears_a_later_router() {
    if !fata_testkit::kvm() || !fata_testkit::program("radvd", "radvd") {
        return;
    }
    let Some(ns) = Netns::create("discovery", 76) else {
        return;
    };
    let ipv4 = format!("{}/24", ns.guest());
    let monitor = ["--mac", "02:00:00:00:76:02"];
    let mut app = start_echo(&ns, "hvt", "tap0", &monitor, &["--ipv4", &ipv4]);
    let began = std::time::Instant::now();
    let addr = SocketAddr::from((ns.guest(), 7));
    ns.run(|| {
        let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT).unwrap();
        stream.set_nodelay(true).unwrap();
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        let mut round_trip = || {
            let sent = std::time::Instant::now();
            stream.write_all(b"x").unwrap();
            let mut byte = [0u8];
            stream.read_exact(&mut byte).unwrap();
            sent.elapsed()
        };
        // Past smoltcp's router discovery: three solicitations 4 s apart, 4 s for an answer.
        while began.elapsed() < Duration::from_secs(14) {
            round_trip();
            std::thread::sleep(Duration::from_millis(500));
        }
        let mut times: Vec<Duration> = (0..21).map(|_| round_trip()).collect();
        times.sort();
        assert!(
            times[10] < Duration::from_millis(5),
            "round trips after router discovery: median {:?} (all: {times:?})",
            times[10]
        );
    });
    ns.run_steps(&[
        &[
            "ip",
            "-6",
            "addr",
            "add",
            &format!("{}/64", ns.host6()),
            "dev",
            "tap0",
            "nodad",
        ],
        &["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"],
    ]);
    let dir = tempfile::tempdir().unwrap();
    let mut radvd = start_radvd(&ns, dir.path());
    let slaac: Ipv6Addr = format!("fd00:{:x}::ff:fe00:7602", ns.subnet)
        .parse()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let answered = loop {
        let out = ns
            .command("ping")
            .args(["-6", "-c", "1", "-W", "1", &slaac.to_string()])
            .output()
            .unwrap();
        if out.status.success() || std::time::Instant::now() > deadline {
            break out.status.success();
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    let _ = radvd.kill();
    let _ = radvd.wait();
    assert!(
        answered,
        "the guest took no SLAAC address {slaac} from a later router"
    );
    ns.run(|| tcp_echo(SocketAddr::from((slaac, 7)), 1 << 16));
    assert!(app.is_running());
}

#[test]
fn echo_on_unix_host_sockets_over_ipv6() {
    let Some(ns) = Netns::create("sockets6", 90) else {
        return;
    };
    build("apps/echo", "unix");
    let mut command = ns.fata();
    command.args(["run", "--release", "--target", "unix", "apps/echo"]);
    command.args(["--", "--bind", "::"]);
    let _app = Running::start(command, "echo: serving");
    // `::` takes both families, as a Linux socket bound to it does.
    ns.run(|| {
        for ip in [
            IpAddr::V6(Ipv6Addr::LOCALHOST),
            IpAddr::V4(Ipv4Addr::LOCALHOST),
        ] {
            tcp_round_trip(SocketAddr::from((ip, 7)));
            udp_round_trips(SocketAddr::from((ip, 7)));
        }
    });
}

/// Large TCP segments through the host: the guest sends and takes segments of up to 64 KiB,
/// which the host cuts and merges at the tap, to a peer one routed hop away whose link has an
/// MTU of 1,500 bytes. 100 MiB goes each way through the echo, byte for byte; the monitor's
/// `--stats` must show both offloads at work. Then TCP segments with wrong checksums sent
/// straight onto the tap get no answer, while the same segment with the right checksum does.
#[test]
fn large_segments_cross_a_routed_1500_byte_hop() {
    if !fata_testkit::kvm() {
        return;
    }
    let Some(ns) = Netns::create("lseg", 93) else {
        return;
    };
    let peer = Netns::create("lsegpeer", 94).expect("a second namespace");
    let (router, far) = (
        format!("10.{}.1.1/24", ns.subnet),
        format!("10.{}.1.2/24", ns.subnet),
    );
    ns.run_steps(&[
        &["ip", "link", "set", "tap0", "mtu", "1500"],
        &[
            "ip", "link", "add", "vr0", "type", "veth", "peer", "name", "vp0", "netns", &peer.name,
        ],
        &["ip", "addr", "add", &router, "dev", "vr0"],
        &["ip", "link", "set", "vr0", "mtu", "1500", "up"],
        &["sysctl", "-qw", "net.ipv4.ip_forward=1"],
    ]);
    let gateway = format!("10.{}.1.1", ns.subnet);
    peer.run_steps(&[
        &["ip", "addr", "add", &far, "dev", "vp0"],
        &["ip", "link", "set", "vp0", "mtu", "1500", "up"],
        &["ip", "route", "add", "default", "via", &gateway],
    ]);

    let ipv4 = format!("{}/24", ns.guest());
    let host = format!("10.{}.0.1", ns.subnet);
    let stats = tempfile::tempfile().unwrap();
    let command = echo_command(
        &ns,
        "hvt",
        "tap0",
        &["--mac", "02:00:00:00:93:02", "--mem", "64M", "--stats"],
        &["--ipv4", &ipv4, "--ipv4-gateway", &host],
    );
    let mut app = Running::start_with_stderr(command, "echo: serving", stats.try_clone().unwrap());
    let addr = SocketAddr::from((ns.guest(), 7));
    let started = std::time::Instant::now();
    peer.run(|| tcp_echo(addr, 100 << 20));
    let took = started.elapsed();
    println!("100 MiB each way through the echo, over a routed 1,500-byte hop, in {took:.2?}");
    checksums_are_checked(&ns);
    assert!(app.is_running(), "the unikernel stopped");
    app.terminate();
    let mut stats = stats;
    let mut text = String::new();
    std::io::Seek::rewind(&mut stats).unwrap();
    stats.read_to_string(&mut text).unwrap();
    let line = text
        .lines()
        .find(|l| l.contains("fata-monitor: net:"))
        .unwrap_or_default();
    let count = |after: &str| -> u64 {
        let at = line
            .find(after)
            .unwrap_or_else(|| panic!("{after:?} in {line}"));
        line[..at]
            .rsplit([' ', '('])
            .find(|w| !w.is_empty())
            .unwrap()
            .parse()
            .unwrap()
    };
    println!("{line}");
    assert!(line.contains("offloads csum tso4 tso6"), "{line}");
    assert!(count(" merged by the host") > 100, "{line}");
    assert!(count(" for the host to segment") > 100, "{line}");
}

/// Sends TCP SYNs to the guest's echo port straight onto tap0: one with a wrong checksum gets
/// no answer, the same with the right checksum a SYN-ACK.
fn checksums_are_checked(ns: &Netns) {
    let script = r#"
import socket, struct, time
def csum(data):
    if len(data) % 2: data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16: s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff
src, dst = bytes([10, SUBNET, 0, 1]), bytes([10, SUBNET, 0, 2])
mac = bytes.fromhex(open("/sys/class/net/tap0/address").read().strip().replace(":", ""))
guest = bytes.fromhex("020000009302")
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
s.bind(("tap0", 0))
s.settimeout(0.2)
def answered(port, good):
    tcp = struct.pack("!HHIIBBHHH", port, 7, 1000, 0, 0x50, 0x02, 8192, 0, 0)
    check = csum(src + dst + struct.pack("!BBH", 0, 6, len(tcp)) + tcp)
    tcp = tcp[:16] + struct.pack("!H", check if good else check ^ 0x5a5a) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0, 0x4000, 64, 6, 0, src, dst)
    ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
    s.send(guest + mac + b"\x08\x00" + ip + tcp)
    deadline = time.time() + 1.0
    while time.time() < deadline:
        try:
            frame = s.recv(65536)
        except socket.timeout:
            continue
        if frame[12:14] == b"\x08\x00" and frame[23] == 6 and frame[26:30] == dst:
            l4 = 14 + (frame[14] & 15) * 4
            sport, dport = struct.unpack("!HH", frame[l4:l4 + 4])
            if sport == 7 and dport == port:
                return True
    return False
bad = [answered(41000 + n, False) for n in range(5)]
good = answered(42000, True)
print(bad, good)
assert not any(bad), "a segment with a wrong checksum was answered"
assert good, "the segment with the right checksum was not answered"
"#
    .replace("SUBNET", &ns.subnet.to_string());
    run_python(ns, &script, "checking checksums");
}

/// Runs a Python `script` inside `ns`, failing the test with its output when it fails.
fn run_python(ns: &Netns, script: &str, what: &str) {
    let out = ns.command("python3").args(["-c", script]).output().unwrap();
    assert!(
        out.status.success(),
        "{what}: {}{}",
        common::text(&out.stdout),
        common::text(&out.stderr)
    );
}

/// The stock iperf3 client against apps/iperf on hvt: an upload and a download (`-R`) of one
/// second each, both of which must move data and report it.
#[test]
fn iperf3_uploads_to_and_downloads_from_hvt() {
    if !fata_testkit::kvm() || !fata_testkit::program("iperf3", "iperf3") {
        return;
    }
    let Some(ns) = Netns::create("iperf", 74) else {
        return;
    };
    build("apps/iperf", "hvt");
    let ipv4 = format!("{}/24", ns.guest());
    let mut command = ns.fata();
    command
        .args([
            "run",
            "--release",
            "--target",
            "hvt",
            "apps/iperf",
            "--net",
            "tap0",
        ])
        .args(["--", "--ipv4", &ipv4]);
    let mut app = Running::start(command, "iperf: listening");
    for reverse in [false, true] {
        let mut client = ns.command("iperf3");
        client.args(["-c", &ns.guest().to_string(), "-t", "1", "-J"]);
        if reverse {
            client.arg("-R");
        }
        let out = client.output().unwrap();
        let report = common::text(&out.stdout);
        assert!(out.status.success(), "iperf3 (reverse {reverse}): {report}");
        let received = report
            .split("\"sum_received\"")
            .nth(1)
            .and_then(|rest| rest.split("\"bytes\":").nth(1))
            .and_then(|rest| rest.split([',', '}']).next())
            .and_then(|bytes| bytes.trim().parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no received bytes in {report}"));
        println!("iperf3 (reverse {reverse}): {received} bytes received in 1 s");
        assert!(received > 10e6, "reverse {reverse}: only {received} bytes");
    }
    assert!(app.is_running(), "the unikernel stopped");
}

/// The echo on hvt attached to one end of a veth pair through AF_PACKET rings
/// (`--net packet:IFACE`) instead of a tap: the whole check, garbage frames included, from the
/// other end (named tap0 here, so the checks find it).
#[test]
fn echo_on_hvt_over_af_packet_rings_on_a_veth() {
    if !fata_testkit::kvm() {
        return;
    }
    let Some(ns) = Netns::create("packet", 75) else {
        return;
    };
    let host = format!("10.{}.0.1/24", ns.subnet);
    ns.run_steps(&[
        &["ip", "link", "del", "tap0"],
        &[
            "ip", "link", "add", "tap0", "type", "veth", "peer", "name", "pk0",
        ],
        &["ip", "addr", "add", &host, "dev", "tap0"],
        // As the namespace's tap had: room for the oversized garbage frames.
        &["ip", "link", "set", "tap0", "mtu", "9000", "up"],
        &["ip", "link", "set", "pk0", "mtu", "9000", "up"],
    ]);
    let ipv4 = format!("{}/24", ns.guest());
    let monitor = ["--mem", "96M", "--mac", "02:00:00:00:75:02"];
    let mut app = start_echo(&ns, "hvt", "packet:pk0", &monitor, &["--ipv4", &ipv4]);
    check_echo_over_tap(&ns, &mut app, ns.guest().into());
}
