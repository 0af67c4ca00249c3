//! `fata summon` for real: the daemon in a network namespace answers DNS for a zone of hvt
//! services, starts each one when its name is looked up (a www snapshot restored, a www and a dns
//! image booted), stops them when idle and starts them again, holds a connection that arrives
//! while its service is stopped, answers SERVFAIL for a service that cannot start, starts a
//! hundred of a thousand services at once, and refuses bad configurations naming the line.

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

use common::dns::{ask, query, u16_at};
use common::{Netns, Running, build, text};
use fata_dns::Name;

/// Where the daemon answers, inside the namespace.
const DNS: &str = "127.0.0.1:53";
/// The host's address on every service's tap (the namespace's tap0 has 10.60.0.1/24).
const HOST: &str = "10.60.0.1";

/// The IPv4 address an A answer carries (the first answer record's data).
fn a_answer(response: &[u8]) -> Option<Ipv4Addr> {
    if u16_at(response, 6) == 0 {
        return None;
    }
    let (_, question_end) = Name::parse(response, 12).ok()?;
    let (_, owner_end) = Name::parse(response, question_end + 4).ok()?;
    let data = owner_end + 10;
    (u16_at(response, owner_end) == 1 && u16_at(response, owner_end + 8) == 4).then(|| {
        Ipv4Addr::new(
            response[data],
            response[data + 1],
            response[data + 2],
            response[data + 3],
        )
    })
}

/// `GET path` with `Connection: close`: the status and the body.
fn get(addr: SocketAddr, path: &str) -> (u16, Vec<u8>) {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("connecting to {addr}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: fata\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .unwrap_or_else(|e| panic!("reading from {addr}: {e}"));
    let head_end = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a whole response head")
        + 4;
    let status = text(&response[..head_end])
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    (status, response.split_off(head_end))
}

/// Looks `name` up at the daemon: the response code and the address, if any.
fn resolve(name: &str) -> (u16, Option<Ipv4Addr>) {
    let server: SocketAddr = DNS.parse().unwrap();
    let response = ask(server, &query(7, name, 1, None), false)
        .unwrap_or_else(|| panic!("no answer to {name} from the daemon"));
    (u16_at(&response, 2) & 0xf, a_answer(&response))
}

/// Waits for a line of the daemon's containing `needle`, for at most `within`.
fn wait_line(daemon: &Running, lines: &mut Vec<String>, needle: &str, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        lines.extend(daemon.lines_so_far());
        if let Some(line) = lines.iter().find(|l| l.contains(needle)) {
            return line.clone();
        }
        assert!(
            Instant::now() < deadline,
            "the daemon did not say {needle:?}; it said:\n{}",
            lines.join("\n")
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Boots apps/www at `address` on a tap of its own, then snapshots it with `--stop` into `dir`.
fn www_snapshot(ns: &Netns, address: &str, dir: &Path) {
    let run_dir = tempfile::tempdir().unwrap();
    let boot = ns.fata_with_run_dir(
        run_dir.path(),
        &[
            "run",
            "--release",
            "--target",
            "hvt",
            "apps/www",
            "--name",
            "www-snap",
            "--net",
            "wsnap",
            "--",
            "--ipv4",
            address,
        ],
    );
    let mut app = Running::start(boot, "www: serving");
    let out = common::fata_command(&[
        "snapshot",
        "www-snap",
        "-o",
        dir.to_str().unwrap(),
        "--stop",
    ])
    .env("FATA_RUN_DIR", run_dir.path())
    .output()
    .unwrap();
    assert!(out.status.success(), "fata snapshot: {}", text(&out.stderr));
    assert_eq!(app.wait_exit(Duration::from_secs(5)), Some(0));
}

/// Starts `fata summon CONFIG` in the namespace, its guests' control sockets in `run_dir`.
fn start_daemon(ns: &Netns, config: &Path, run_dir: &Path) -> Running {
    let command = ns.fata_with_run_dir(run_dir, &["summon", config.to_str().unwrap()]);
    Running::start(command, "summon: answering")
}

#[test]
fn services_are_summoned_by_name_stopped_when_idle_and_summoned_again() {
    if !fata_testkit::kvm() {
        return;
    }
    let Some(ns) = Netns::create("summon", 60) else {
        return;
    };
    let www = build("apps/www", "hvt");
    let dns = build("apps/dns", "hvt");
    let dir = tempfile::tempdir().unwrap();
    www_snapshot(&ns, "10.60.1.2/16", &dir.path().join("www"));
    let zone = dir.path().join("inner.test.zone");
    std::fs::write(
        &zone,
        "$ORIGIN inner.test.\n$TTL 300\n@ IN SOA ns hostmaster 1 3600 600 86400 300\n\
         @ IN NS ns\nns IN A 192.0.2.1\nhost IN A 192.0.2.9\n",
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("zones")).unwrap();
    let compiled = fata_zone::compile_files(&[&zone]).unwrap().to_compiled();
    std::fs::write(dir.path().join("zones/inner.zone"), compiled).unwrap();
    std::fs::write(dir.path().join("broken.hvt"), b"not an ELF image").unwrap();
    let config = dir.path().join("summon.toml");
    std::fs::write(
        &config,
        format!(
            "zone = \"svc.test\"\nlisten = \"{DNS}\"\nhost = \"{HOST}\"\n\n\
             [[service]]\nname = \"www\"\nsnapshot = \"www\"\naddress = \"10.60.1.2/16\"\n\
             port = 80\nidle-timeout = 1.5\n\n\
             [[service]]\nname = \"cold\"\nimage = \"{www}\"\naddress = \"10.60.1.3/16\"\n\
             port = 80\nidle-timeout = 1.5\n\n\
             [[service]]\nname = \"dns\"\nimage = \"{dns}\"\naddress = \"10.60.1.4/16\"\n\
             port = 53\nargs = [\"--zone\", \"inner.zone\"]\nkv = [\"files=zones\"]\n\n\
             [[service]]\nname = \"broken\"\nimage = \"broken.hvt\"\n\
             address = \"10.60.1.5/16\"\nport = 80\nstart-timeout = 3\n",
            www = www.display(),
            dns = dns.display(),
        ),
    )
    .unwrap();
    let daemon = start_daemon(&ns, &config, dir.path());
    let mut lines = vec![daemon.ready_line.clone()];

    ns.run(|| {
        // The zone's own names, and one it does not have.
        assert_eq!(resolve("ns.svc.test"), (0, Some(Ipv4Addr::LOCALHOST)));
        assert_eq!(resolve("nope.svc.test").0, 3, "NXDOMAIN");

        // A snapshot restored by its lookup, answering HTTP at once.
        let began = Instant::now();
        assert_eq!(
            resolve("www.svc.test"),
            (0, Some(Ipv4Addr::new(10, 60, 1, 2)))
        );
        let (status, body) = get(SocketAddr::from(([10, 60, 1, 2], 80)), "/");
        assert_eq!(status, 200);
        assert!(!body.is_empty());
        eprintln!("www: lookup to HTTP 200 in {:?}", began.elapsed());
        // A lookup of a running service is answered at once.
        assert_eq!(resolve("WWW.svc.test").1, Some(Ipv4Addr::new(10, 60, 1, 2)));

        // An image booted by its lookup, with the address the daemon gives it.
        assert_eq!(
            resolve("cold.svc.test").1,
            Some(Ipv4Addr::new(10, 60, 1, 3))
        );
        assert_eq!(get(SocketAddr::from(([10, 60, 1, 3], 80)), "/").0, 200);

        // A DNS service, serving its own zone once summoned.
        assert_eq!(resolve("dns.svc.test").1, Some(Ipv4Addr::new(10, 60, 1, 4)));
        let inner = ask(
            SocketAddr::from(([10, 60, 1, 4], 53)),
            &query(9, "host.inner.test", 1, None),
            false,
        )
        .expect("the summoned DNS service answers");
        assert_eq!(a_answer(&inner), Some(Ipv4Addr::new(192, 0, 2, 9)));
    });

    // A service that cannot start is answered SERVFAIL, and the others go on.
    assert_eq!(ns.run(|| resolve("broken.svc.test")).0, 2, "SERVFAIL");
    let failed = wait_line(
        &daemon,
        &mut lines,
        "broken did not start",
        Duration::from_secs(5),
    );
    assert!(failed.contains("SERVFAIL"), "{failed}");
    assert_eq!(
        ns.run(|| get(SocketAddr::from(([10, 60, 1, 3], 80)), "/").0),
        200
    );

    // Idle past its timeout, www is stopped; its tap keeps what arrives meanwhile.
    let stopped = wait_line(&daemon, &mut lines, "www idle", Duration::from_secs(10));
    assert!(stopped.contains("MiB of host memory in use"), "{stopped}");
    let ready = wait_line(&daemon, &mut lines, "www ready", Duration::from_secs(5));
    assert!(ready.contains("MiB of host memory in use"), "{ready}");
    lines.retain(|l| !l.contains("www ready"));
    ns.run(|| {
        // A connection made while www is stopped, by a client that kept its address: its SYN
        // waits in the tap until the lookup below brings www back, and then it is answered.
        let early = std::thread::spawn(|| {
            let addr = SocketAddr::from(([10, 60, 1, 2], 80));
            TcpStream::connect_timeout(&addr, Duration::from_secs(10)).map(|_| ())
        });
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(resolve("www.svc.test").1, Some(Ipv4Addr::new(10, 60, 1, 2)));
        early
            .join()
            .unwrap()
            .expect("the connection made while www was stopped");
        assert_eq!(get(SocketAddr::from(([10, 60, 1, 2], 80)), "/").0, 200);
    });
    wait_line(&daemon, &mut lines, "www ready", Duration::from_secs(5));

    // An image booted again after its idle stop keeps its MAC, so the host's neighbour entry
    // from its last run still finds it.
    wait_line(&daemon, &mut lines, "cold idle", Duration::from_secs(10));
    ns.run(|| {
        assert_eq!(
            resolve("cold.svc.test").1,
            Some(Ipv4Addr::new(10, 60, 1, 3))
        );
        assert_eq!(get(SocketAddr::from(([10, 60, 1, 3], 80)), "/").0, 200);
    });
}

#[test]
fn a_hundred_of_a_thousand_services_are_summoned_at_once() {
    if !fata_testkit::kvm() {
        return;
    }
    let Some(ns) = Netns::create("summon1k", 59) else {
        return;
    };
    let www = build("apps/www", "hvt");
    let dir = tempfile::tempdir().unwrap();
    let address = |i: usize| Ipv4Addr::new(10, 59, 1 + (i / 250) as u8, 2 + (i % 250) as u8);
    let mut config =
        "zone = \"many.test\"\nlisten = \"127.0.0.1:53\"\nhost = \"10.59.0.1\"\n".to_string();
    for i in 0..1000 {
        config.push_str(&format!(
            "\n[[service]]\nname = \"s{i}\"\nimage = \"{}\"\naddress = \"{}/16\"\nport = 80\n\
             mem = \"16M\"\nstart-timeout = 60\n",
            www.display(),
            address(i)
        ));
    }
    let path = dir.path().join("many.toml");
    std::fs::write(&path, config).unwrap();
    let mut daemon = start_daemon(&ns, &path, dir.path());
    let mut lines = vec![daemon.ready_line.clone()];
    let picked: Vec<usize> = (0..100).map(|k| k * 10 + 3).collect();
    ns.run(|| {
        let server: SocketAddr = DNS.parse().unwrap();
        let sockets: Vec<UdpSocket> = picked
            .iter()
            .map(|&i| {
                let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
                socket
                    .send_to(
                        &query(i as u16, &format!("s{i}.many.test"), 1, None),
                        server,
                    )
                    .unwrap();
                socket
            })
            .collect();
        for (socket, &i) in sockets.iter().zip(&picked) {
            socket
                .set_read_timeout(Some(Duration::from_secs(90)))
                .unwrap();
            let mut buf = [0u8; 512];
            let len = socket.recv(&mut buf).expect("an answer within 90 s");
            assert_eq!(u16_at(&buf, 0), i as u16);
            assert_eq!(a_answer(&buf[..len]), Some(address(i)), "s{i}");
        }
        for &i in &picked {
            assert_eq!(get(SocketAddr::from((address(i), 80)), "/").0, 200, "s{i}");
        }
    });
    let last = wait_line(&daemon, &mut lines, "100 running", Duration::from_secs(5));
    eprintln!("{last}");
    assert_eq!(daemon.terminate(), Some(0), "the daemon ends on SIGTERM");
    wait_line(
        &daemon,
        &mut lines,
        "stopped 100 running services",
        Duration::from_secs(5),
    );
}

#[test]
fn a_bad_configuration_is_refused_naming_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "zone = \"svc.test\"\nlisten = \"127.0.0.1:53\"\nhost = \"10.0.0.1\"\ncolour = 1\n",
            ":4: unknown field `colour`",
        ),
        (
            "zone = \"svc.test\"\nlisten = \"127.0.0.1:53\"\nhost = \"10.0.0.1\"\n\n[[service]]\n\
             name = \"www\"\nimage = \"missing.hvt\"\naddress = \"10.0.0.2/24\"\nport = 80\n",
            ":7: image",
        ),
        (
            "zone = \"svc.test\"\nlisten = \"127.0.0.1:53\"\nhost = \"10.0.0\"\n",
            ":3: host",
        ),
    ];
    for (body, words) in cases {
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, body).unwrap();
        let out = common::fata(&["summon", path.to_str().unwrap()]);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(8), "{stderr}");
        assert!(
            stderr.contains(&format!("bad.toml{words}")),
            "{words:?} in {stderr}"
        );
    }
    let out = common::fata(&["summon", "/nonexistent/summon.toml"]);
    common::refused(&out, 8, "cannot read /nonexistent/summon.toml");
}
