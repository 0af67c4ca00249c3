//! An app's arguments as a new user gives them, on the unix target: an option the app does not
//! take, or a single-valued one given twice, ends it with its usage instead of being ignored; an
//! option it takes many times (apps/dns's `--zone`) is served in full.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;

use common::dns::{ask, query, summarize, u16_at};
use common::{Running, fata, fata_command, text};

/// A minimal zone for `apex`, whose name server `ns1.APEX` is at `address`.
fn zone(apex: &str, address: &str) -> String {
    format!(
        "$ORIGIN {apex}.\n$TTL 60\n@ IN SOA ns1 hostmaster 1 7200 3600 1209600 300\n\
         @ IN NS ns1\nns1 IN A {address}\n"
    )
}

/// A UDP port on 127.0.0.1 that nothing uses now.
fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `fata run --release --target unix APP -- ARGS`, to completion.
fn run(app: &str, args: &[&str]) -> std::process::Output {
    let mut all = vec!["run", "--release", "--target", "unix", app, "--"];
    all.extend_from_slice(args);
    fata(&all)
}

#[test]
fn help_prints_the_usage_and_succeeds() {
    for ask in ["--help", "-h"] {
        let out = run("apps/www", &["--port", "8080", ask]);
        let stdout = text(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
        assert!(
            stdout.starts_with("usage: www [OPTIONS]\n  --port N "),
            "{stdout}"
        );
        assert!(!stdout.contains("www: serving"), "{stdout}");
    }
}

#[test]
fn www_refuses_an_option_it_does_not_take_with_its_usage() {
    let out = run("apps/www", &["--tls-cert", "cert.pem"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.starts_with("error: unknown option --tls-cert\nusage: www [OPTIONS]\n"),
        "{stdout}"
    );
    for taken in [
        "--port N",
        "--max-connections N",
        "--ipv4 ADDR/PREFIX|dhcp|off",
        "--ipv6 ADDR/PREFIX|slaac|off",
        "--bind ADDR",
    ] {
        assert!(stdout.contains(&format!("  {taken} ")), "{taken}: {stdout}");
    }
    assert!(!stdout.contains("www: serving"), "{stdout}");

    let out = run("apps/www", &["--port", "8080", "--port=8081"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.starts_with("error: --port is given more than once\nusage: www"),
        "{stdout}"
    );
}

#[test]
fn dns_serves_every_zone_given_with_zone() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.zone");
    let b = dir.path().join("b.zone");
    std::fs::write(&a, zone("a.test", "192.0.2.1")).unwrap();
    std::fs::write(&b, zone("b.test", "192.0.2.2")).unwrap();
    let port = free_port();
    let mut command = fata_command(&["run", "--release", "--target", "unix", "apps/dns", "--"]);
    command
        .arg("--zone")
        .arg(&a)
        .arg(format!("--zone={}", b.display()))
        .args(["--port", &port.to_string()]);
    let mut server = Running::start(command, "dns: serving");
    assert!(
        server.ready_line.contains("serving a.test. b.test. on"),
        "{}",
        server.ready_line
    );
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    for (i, (name, expected)) in [
        ("ns1.a.test", [192, 0, 2, 1]),
        ("ns1.b.test", [192, 0, 2, 2]),
    ]
    .into_iter()
    .enumerate()
    {
        for tcp in [false, true] {
            let answer = ask(address, &query(i as u16, name, 1, None), tcp)
                .unwrap_or_else(|| panic!("no answer for {name} (tcp {tcp})"));
            assert_eq!(answer[3] & 0x0f, 0, "rcode for {name}");
            assert_eq!(u16_at(&answer, 6), 1, "answers for {name}");
            let summary = format!("{:?}", summarize(&answer));
            assert!(
                summary.contains(&format!("{expected:?}")),
                "{name}: {summary}"
            );
        }
    }
    assert!(server.is_running());
}

#[test]
fn dns_refuses_a_zone_given_twice_and_a_repeated_port() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.zone");
    std::fs::write(&a, zone("a.test", "192.0.2.1")).unwrap();
    let a = a.to_str().unwrap();

    let out = run("apps/dns", &["--zone", a, "--zone", a, "--port", "5399"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("error: --zone 1-a.zone: zone a.test.: two zones with the same apex"),
        "{stdout}"
    );

    let out = run(
        "apps/dns",
        &["--zone", a, "--port", "5399", "--port", "5400"],
    );
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.starts_with("error: --port is given more than once\nusage: dns [OPTIONS]\n"),
        "{stdout}"
    );
    assert!(stdout.contains("  --zone FILE...  "), "{stdout}");

    let out = run("apps/dns", &["--port", "5399"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stdout).contains("give each zone's master file with --zone FILE"));
    assert!(Path::new(a).is_file());
}
