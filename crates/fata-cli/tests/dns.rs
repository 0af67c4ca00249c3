//! The DNS server against NSD: the same generated zone served by both, the same 600+ varied
//! questions sent to both, and the answers compared (rcode, flags, and every section as a set).
//! Then malformed packets, which must get FORMERR or silence while the server goes on serving.
//! And every zone it is given is served: a forward and a reverse zone, as master files or as zones
//! compiled by fata-zone into a FAT image made by `fata disk create`, on hvt and unix.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::dns::{ask, query, summarize};
use common::{Netns, Running, build, fata, fata_command, text};

const NSD_PORT: u16 = 5300;
const FATA_PORT: u16 = 5301;

/// The zone both servers serve: every record type the server answers, wildcards, a delegation
/// with glue and one without, CNAME chains (in zone, out of zone, dangling, looping), empty
/// non-terminals and an RRset too large for a UDP answer.
fn zone_text() -> String {
    let mut z = String::from(
        "$ORIGIN test.fata.\n$TTL 3600\n\
         @ IN SOA ns1 hostmaster 2026112401 7200 3600 1209600 300\n\
         @ IN NS ns1\n@ IN NS ns2\n@ IN MX 10 mail\n@ IN MX 20 mail2.example.net.\n\
         @ IN A 192.0.2.1\n@ IN AAAA 2001:db8::1\n@ IN TXT \"v=spf1 -all\"\n\
         @ IN CAA 0 issue \"letsencrypt.org\"\n\
         ns1 IN A 192.0.2.53\nns2 IN A 192.0.2.54\nns2 IN AAAA 2001:db8::54\nmail IN A 192.0.2.25\n\
         c1 IN CNAME c2\nc2 IN CNAME c3\nc3 IN CNAME host1\nalias 600 IN CNAME host2\n\
         loop1 IN CNAME loop2\nloop2 IN CNAME loop1\nout IN CNAME www.example.net.\n\
         dangling IN CNAME nothere\n\
         *.wild IN A 192.0.2.99\n*.wild IN TXT \"wildcard\"\n*.cnamewild IN CNAME host3\n\
         sub IN NS ns.sub\nns.sub IN A 192.0.2.100\nsub2 IN NS ns.example.net.\n\
         _sip._tcp IN SRV 10 60 5060 host4\n_xmpp._tcp IN SRV 5 0 5222 host5\n\
         ptr1 IN PTR host1\ndeep.a.b.c IN A 192.0.2.7\n",
    );
    for n in 0..50 {
        z.push_str(&format!("host{n} 300 IN A 192.0.2.{}\n", 10 + n));
        if n % 3 == 0 {
            z.push_str(&format!("host{n} IN AAAA 2001:db8::{:x}\n", 0x100 + n));
        }
        if n % 5 == 0 {
            z.push_str(&format!("host{n} IN TXT \"host {n}\" \"second string\"\n"));
        }
        if n % 7 == 0 {
            z.push_str(&format!("host{n} IN MX {n} mail\n"));
        }
    }
    for n in 0..40 {
        z.push_str(&format!(
            "big IN TXT \"{}\"\n",
            format!("{n:02}").repeat(30)
        ));
    }
    z
}

/// The questions: names across every case above, crossed with every type, in varying letter
/// case, EDNS sizes and transports.
fn questions() -> Vec<(String, u16, Option<u16>, bool)> {
    let mut names: Vec<String> = [
        "",
        "ns1",
        "ns2",
        "mail",
        "c1",
        "c2",
        "alias",
        "loop1",
        "out",
        "dangling",
        "x.wild",
        "a.b.wild",
        "wild",
        "y.cnamewild",
        "sub",
        "ns.sub",
        "deep.sub",
        "sub2",
        "x.sub2",
        "_sip._tcp",
        "_xmpp._tcp",
        "_tcp",
        "ptr1",
        "big",
        "deep.a.b.c",
        "a.b.c",
        "b.c",
        "c",
        "nothere",
        "no.where",
        "host1.nothere",
        "*.wild",
    ]
    .iter()
    .map(|n| n.to_string())
    .collect();
    names.extend((0..50).step_by(2).map(|n| format!("host{n}")));
    let types = [1u16, 28, 15, 16, 2, 6, 5, 33, 12, 257];
    let edns = [None, Some(512), Some(1232), Some(4096)];
    let mut out = Vec::new();
    let mut i = 0usize;
    for name in &names {
        for &qtype in &types {
            let mut full = if name.is_empty() {
                "test.fata".to_string()
            } else {
                format!("{name}.test.fata")
            };
            if i % 3 == 1 {
                full = full.to_uppercase();
            }
            out.push((full, qtype, edns[i % 4], i.is_multiple_of(9)));
            i += 1;
        }
    }
    for other in ["example.org", "fata", "test.fata.example", "."] {
        out.push((other.to_string(), 1, Some(1232), false));
    }
    out.push(("big.test.fata".to_string(), 16, None, false));
    out.push(("big.test.fata".to_string(), 16, None, true));
    out
}

/// NSD running in the foreground; stopped with SIGTERM (which also ends its worker processes).
struct Nsd(Child);

impl Drop for Nsd {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.0.id().to_string()).status();
        let _ = self.0.wait();
    }
}

/// Malformed queries: each gets FORMERR (or NOTIMP) or no answer, and the server keeps answering.
fn malformed_packets_get_formerr_or_silence(server: SocketAddr) {
    let valid = query(7, "test.fata", 6, None);
    let mut cases: Vec<(&str, Vec<u8>)> = vec![
        ("five bytes", valid[..5].to_vec()),
        ("header only", valid[..12].to_vec()),
        ("truncated question", valid[..valid.len() - 2].to_vec()),
        (
            "compression loop",
            [&valid[..12], &[0xc0, 0x0c, 0, 1, 0, 1][..]].concat(),
        ),
        (
            "forward pointer",
            [&valid[..12], &[0xc0, 0x20, 0, 1, 0, 1][..]].concat(),
        ),
        (
            "label over 63",
            [
                &valid[..12],
                &[0x40][..],
                &[b'a'; 64][..],
                &[0, 0, 1, 0, 1][..],
            ]
            .concat(),
        ),
        ("two questions", {
            let mut m = valid.clone();
            m[5] = 2;
            m
        }),
        ("records that are not there", {
            let mut m = valid.clone();
            m[7] = 5;
            m
        }),
        ("a response, not a query", {
            let mut m = valid.clone();
            m[2] |= 0x80;
            m
        }),
    ];
    let mut long_name = valid[..12].to_vec();
    for _ in 0..5 {
        long_name.push(63);
        long_name.extend_from_slice(&[b'x'; 63]);
    }
    long_name.extend_from_slice(&[0, 0, 1, 0, 1]);
    cases.push(("name over 255", long_name));
    let mut bad_option = query(8, "test.fata", 1, Some(1232));
    let opt_len_at = bad_option.len() - 2;
    bad_option[opt_len_at..].copy_from_slice(&[0, 9]);
    bad_option.extend_from_slice(&[0, 10, 0, 200, 1]);
    cases.push(("OPT option longer than its record", bad_option));
    let mut state = 0x2545_f491_u32;
    for n in 0..100 {
        let bytes = (0..(n % 60 + 1))
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                state as u8
            })
            .collect();
        cases.push(("random bytes", bytes));
    }
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    for (what, message) in &cases {
        socket.send_to(message, server).unwrap();
        let mut buf = [0u8; 4096];
        if let Ok((n, _)) = socket.recv_from(&mut buf) {
            let rcode = buf[3] & 0xf;
            assert!(
                n >= 12 && buf[2] & 0x80 != 0,
                "{what}: a reply that is not a response"
            );
            assert!(
                matches!(rcode, 1 | 4),
                "{what}: rcode {rcode}, expected FORMERR or NOTIMP"
            );
        }
        assert!(
            ask(server, &valid, false).is_some(),
            "the server stopped answering after: {what}"
        );
    }
}

fn start_nsd(ns: &Netns, dir: &Path) -> Option<Nsd> {
    let conf = format!(
        "server:\n  ip-address: 127.0.0.1@{NSD_PORT}\n  server-count: 1\n  username: \"\"\n  \
         zonesdir: \"{d}\"\n  pidfile: \"{d}/nsd.pid\"\n  database: \"\"\n  zonelistfile: \"{d}/zone.list\"\n  \
         xfrdfile: \"{d}/xfrd.state\"\n  logfile: \"{d}/nsd.log\"\n  hide-version: yes\n  hide-identity: yes\n  \
         rrl-ratelimit: 0\n  tcp-count: 100\nremote-control:\n  control-enable: no\nzone:\n  name: test.fata\n  \
         zonefile: test.zone\n",
        d = dir.display()
    );
    std::fs::write(dir.join("nsd.conf"), conf).unwrap();
    let child = ns
        .command("nsd")
        .args(["-d", "-c"])
        .arg(dir.join("nsd.conf"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    Some(Nsd(child))
}

fn wait_for(server: SocketAddr) -> bool {
    (0..100).any(|_| {
        let answered = ask(server, &query(1, "test.fata", 6, None), false).is_some();
        if !answered {
            std::thread::sleep(Duration::from_millis(100));
        }
        answered
    })
}

#[test]
fn fata_answers_like_nsd() {
    if !fata_testkit::program("nsd", "nsd") {
        return;
    }
    let Some(ns) = Netns::create("dns", 64) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let zone = dir.path().join("test.zone");
    std::fs::write(&zone, zone_text()).unwrap();
    build("apps/dns", "unix");
    let nsd = start_nsd(&ns, dir.path()).expect("nsd starts");
    let mut command = ns.fata();
    command
        .args([
            "run",
            "--release",
            "--target",
            "unix",
            "apps/dns",
            "--",
            "--zone",
        ])
        .arg(&zone)
        .args(["--port", &FATA_PORT.to_string()]);
    let mut fata = Running::start(command, "dns: serving");
    let nsd_addr = SocketAddr::from(([127, 0, 0, 1], NSD_PORT));
    let fata_addr = SocketAddr::from(([127, 0, 0, 1], FATA_PORT));
    let questions = questions();
    assert!(questions.len() >= 500, "{} questions", questions.len());
    let mismatches = ns.run(|| {
        assert!(wait_for(nsd_addr), "nsd did not answer: {}", text(&std::fs::read(dir.path().join("nsd.log")).unwrap_or_default()));
        let mut mismatches = Vec::new();
        for (i, (name, qtype, edns, tcp)) in questions.iter().enumerate() {
            let message = query(i as u16, name, *qtype, *edns);
            let theirs = ask(nsd_addr, &message, *tcp).map(|r| summarize(&r));
            let ours = ask(fata_addr, &message, *tcp).map(|r| summarize(&r));
            let same = match (&theirs, &ours) {
                // A truncated answer's sections depend on how much each server fits.
                (Some(t), Some(o)) if t.flags & 0x0200 != 0 => t.rcode == o.rcode && t.flags == o.flags,
                (t, o) => t == o,
            };
            if !same {
                mismatches.push(format!("{name} type {qtype} edns {edns:?} tcp {tcp}:\n  nsd:  {theirs:?}\n  fata: {ours:?}"));
            }
        }
        malformed_packets_get_formerr_or_silence(fata_addr);
        mismatches
    });
    drop(nsd);
    assert!(fata.is_running());
    assert!(
        mismatches.is_empty(),
        "{} of {} answers differ:\n{}",
        mismatches.len(),
        questions.len(),
        mismatches.join("\n")
    );
}

/// A forward zone: `www.example.test` at 192.0.2.7, its name server at 192.0.2.1.
const FORWARD: &str = "$ORIGIN example.test.\n$TTL 300\n\
@ IN SOA ns1 hostmaster 1 7200 3600 1209600 300\n@ IN NS ns1\n\
ns1 IN A 192.0.2.1\nwww IN A 192.0.2.7\n";

/// The reverse zone of 192.0.2.0/24, naming the forward zone's hosts.
const REVERSE: &str = "$ORIGIN 2.0.192.in-addr.arpa.\n$TTL 300\n\
@ IN SOA ns1.example.test. hostmaster.example.test. 1 7200 3600 1209600 300\n\
@ IN NS ns1.example.test.\n1 IN PTR ns1.example.test.\n7 IN PTR www.example.test.\n";

/// Asks `server` for the A record of `www.example.test` and the PTR record of 192.0.2.7, over UDP
/// and TCP, and checks both are answered with authority and the right data; the first question
/// is asked a few times (it may wait out ARP).
fn assert_both_zones_answered(server: SocketAddr) {
    let questions = [
        ("www.example.test", 1, "[192, 0, 2, 7]"),
        ("7.2.0.192.in-addr.arpa", 12, "www.example.test."),
        ("1.2.0.192.in-addr.arpa", 12, "ns1.example.test."),
    ];
    for (i, (name, qtype, data)) in questions.into_iter().enumerate() {
        for tcp in [false, true] {
            let message = query(i as u16, name, qtype, None);
            let answer = (0..10)
                .find_map(|_| ask(server, &message, tcp))
                .unwrap_or_else(|| panic!("no answer for {name} (tcp {tcp})"));
            let summary = summarize(&answer);
            assert_eq!(
                (summary.rcode, summary.flags & 0x8400),
                (0, 0x8400),
                "{name} (tcp {tcp}): {summary:?}"
            );
            assert_eq!(summary.sections[0].len(), 1, "{name}: {summary:?}");
            assert!(
                summary.sections[0].iter().all(|r| r.ends_with(data)),
                "{name}: {summary:?}"
            );
        }
    }
}

/// Checks the server's ready line names both zones.
fn assert_serves_both(ready_line: &str) {
    for apex in [" example.test. ", " 2.0.192.in-addr.arpa. "] {
        assert!(ready_line.contains(apex), "{apex}: {ready_line}");
    }
}

/// Master files for the two zones in `dir`.
fn write_zones(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let forward = dir.join("example.test.zone");
    let reverse = dir.join("2.0.192.in-addr.arpa.zone");
    std::fs::write(&forward, FORWARD).unwrap();
    std::fs::write(&reverse, REVERSE).unwrap();
    (forward, reverse)
}

/// Compiles each zone with fata-zone into a directory, as `fata-zone OUT FILE` does (a long
/// name and a nested directory among them), and makes a FAT image of it with `fata disk create`.
fn zones_image(dir: &Path) -> std::path::PathBuf {
    let (forward, reverse) = write_zones(dir);
    let compiled = dir.join("compiled");
    std::fs::create_dir_all(compiled.join("reverse zones")).unwrap();
    for (zone, key) in [
        (&forward, "example.test.zone"),
        (&reverse, "reverse zones/2.0.192.in-addr.arpa.zone"),
    ] {
        let set = fata_zone::compile_files(&[zone]).unwrap();
        std::fs::write(compiled.join(key), set.to_compiled()).unwrap();
    }
    let image = dir.join("zones.img");
    let out = fata(&[
        "disk",
        "create",
        compiled.to_str().unwrap(),
        "-o",
        image.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "fata disk create: {}",
        text(&out.stderr)
    );
    image
}

/// apps/dns on hvt inside `ns`, over tap0, serving the master files `forward` and `reverse` at
/// the addresses `addresses` give.
fn start_with_zones(ns: &Netns, forward: &Path, reverse: &Path, addresses: &[&str]) -> Running {
    let mut command = ns.fata();
    command
        .args(["run", "--release", "--target", "hvt", "apps/dns"])
        .args(["--net", "tap0", "--", "--zone"])
        .arg(forward)
        .arg("--zone")
        .arg(reverse)
        .args(addresses);
    Running::start(command, "dns: serving")
}

/// The keys the compiled zones have in the image.
const ZONE_KEYS: [&str; 4] = [
    "--zone",
    "example.test.zone",
    "--zone",
    "reverse zones/2.0.192.in-addr.arpa.zone",
];

#[test]
fn dns_on_hvt_serves_a_forward_and_a_reverse_zone() {
    if !fata_testkit::kvm() {
        return;
    }
    let Some(ns) = Netns::create("dnsfwdrev", 71) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (forward, reverse) = write_zones(dir.path());
    build("apps/dns", "hvt");
    let ipv4 = format!("{}/24", ns.guest());
    let mut app = start_with_zones(&ns, &forward, &reverse, &["--ipv4", &ipv4]);
    assert_serves_both(&app.ready_line);
    let server = SocketAddr::from((ns.guest(), 53));
    ns.run(|| assert_both_zones_answered(server));
    assert!(app.is_running(), "the unikernel stopped");
    drop(app); // frees tap0

    // A single-valued option given twice ends the guest with its usage, not a silent choice.
    let out = ns
        .fata()
        .args([
            "run",
            "--release",
            "--target",
            "hvt",
            "apps/dns",
            "--net",
            "tap0",
            "--",
        ])
        .args([
            "--zone",
            forward.to_str().unwrap(),
            "--port",
            "53",
            "--port",
            "54",
        ])
        .output()
        .unwrap();
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("error: --port is given more than once\nusage: dns [OPTIONS]"),
        "{stdout}"
    );
}

/// The same zones over an IPv6-only link: UDP and TCP answers to a client on the host's side.
#[test]
fn dns_on_hvt_answers_over_ipv6() {
    if !fata_testkit::kvm() {
        return;
    }
    let Some(ns) = Netns::create("dns6", 92).map(Netns::ipv6_only) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (forward, reverse) = write_zones(dir.path());
    build("apps/dns", "hvt");
    let ipv6 = format!("{}/64", ns.guest6());
    let addresses = ["--ipv4", "off", "--ipv6", &ipv6];
    let mut app = start_with_zones(&ns, &forward, &reverse, &addresses);
    assert_serves_both(&app.ready_line);
    ns.run(|| assert_both_zones_answered(SocketAddr::from((ns.guest6(), 53))));
    assert!(app.is_running(), "the unikernel stopped");
}

#[test]
fn dns_on_hvt_reads_compiled_zones_from_a_fat_image() {
    if !fata_testkit::kvm() {
        return;
    }
    let Some(ns) = Netns::create("dnsfat", 72) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let image = zones_image(dir.path());
    build("apps/dns", "hvt");
    let ipv4 = format!("{}/24", ns.guest());
    let mut command = ns.fata();
    command
        .args(["run", "--release", "--target", "hvt", "apps/dns", "--kv"])
        .arg(format!("files={}", image.display()))
        .args(["--net", "tap0", "--"])
        .args(ZONE_KEYS)
        .args(["--ipv4", &ipv4]);
    let mut app = Running::start(command, "dns: serving");
    assert_serves_both(&app.ready_line);
    let server = SocketAddr::from((ns.guest(), 53));
    ns.run(|| assert_both_zones_answered(server));
    assert!(app.is_running(), "the unikernel stopped");
}

#[test]
fn dns_on_unix_reads_compiled_zones_from_a_fat_image() {
    let dir = tempfile::tempdir().unwrap();
    let image = zones_image(dir.path());
    let port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut command = fata_command(&["run", "--release", "--target", "unix", "apps/dns", "--kv"]);
    command
        .arg(format!("files={}", image.display()))
        .arg("--")
        .args(ZONE_KEYS)
        .args(["--port", &port.to_string()]);
    let mut app = Running::start(command, "dns: serving");
    assert_serves_both(&app.ready_line);
    assert_both_zones_answered(SocketAddr::from(([127, 0, 0, 1], port)));
    assert!(app.is_running(), "the app stopped");

    // A key the image does not hold is an error that names it.
    let out = fata(&[
        "run",
        "--release",
        "--target",
        "unix",
        "apps/dns",
        "--kv",
        &format!("files={}", image.display()),
        "--",
        "--zone",
        "missing.zone",
    ]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("reading zone \"missing.zone\""), "{stdout}");
}
