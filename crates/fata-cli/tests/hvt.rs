//! End to end on the hvt target: the same apps boot as unikernels under KVM.

mod common;

use std::net::SocketAddr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use common::dns::{ask, query, summarize};
use common::{Netns, Running, build, fata, refused, text};

#[test]
fn hello_prints_the_same_lines_as_a_unikernel_as_on_unix() {
    if !fata_testkit::kvm() {
        return;
    }
    let args = ["--", "--count", "4", "--interval-ms", "10"];
    let hvt = fata(
        &[
            &["run", "--release", "--target", "hvt", "apps/hello"][..],
            &args,
        ]
        .concat(),
    );
    assert_eq!(hvt.status.code(), Some(0), "stderr: {}", text(&hvt.stderr));
    let unix = fata(
        &[
            &["run", "--release", "--target", "unix", "apps/hello"][..],
            &args,
        ]
        .concat(),
    );
    assert_eq!(text(&hvt.stdout), "hello\nworld\nhello\nworld\n");
    assert_eq!(hvt.stdout, unix.stdout);
}

#[test]
fn images_are_stripped_static_and_small() {
    let image = build("apps/hello", "hvt");
    assert_eq!(image.extension().and_then(|e| e.to_str()), Some("hvt"));
    assert_eq!(symbols(&image, &[]), "", "the image is stripped");
    // The stripped image has no symbol table to look in: check the linked ELF beside it, which
    // keeps its symbols for addr2line, as scripts/test does.
    let elf = image.with_extension("");
    assert!(
        symbols(&elf, &[]).contains(" T _start"),
        "the linked ELF has its symbol table"
    );
    let undefined = symbols(&elf, &["-u"]);
    assert!(undefined.is_empty(), "undefined symbols: {undefined}");
    let size = std::fs::metadata(&image).unwrap().len();
    assert!(size <= 96 * 1024, "hello.hvt is {size} bytes");
}

/// What `nm ARGS FILE` prints (nothing for a file without symbols).
fn symbols(file: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("nm")
        .args(args)
        .arg(file)
        .output()
        .expect("nm runs (binutils)");
    assert!(
        out.status.success(),
        "nm {args:?} {}: {}",
        file.display(),
        text(&out.stderr)
    );
    text(&out.stdout).trim().to_string()
}

#[test]
fn the_app_status_and_monitor_errors_become_the_exit_status() {
    if !fata_testkit::kvm() {
        return;
    }
    let image = build("apps/hello", "hvt");
    let image = image.to_str().unwrap();

    let out = fata(&["run", image, "--", "--count", "many"]);
    assert_eq!(out.status.code(), Some(1), "the app's error is its status");
    assert!(text(&out.stdout).contains("error: --count: cannot understand the value \"many\""));

    let out = fata(&["run", image, "--mem", "3M", "--", "--count", "1"]);
    assert_eq!(out.status.code(), Some(119), "{}", text(&out.stderr));

    let out = fata(&["run", "--target", "hvt", "Cargo.toml"]);
    assert_eq!(
        out.status.code(),
        Some(121),
        "not an image: {}",
        text(&out.stderr)
    );

    let out = fata(&[
        "run",
        image,
        "--mem",
        "64M",
        "--",
        "--count",
        "1",
        "--interval-ms",
        "0",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "hello\n");
}

#[test]
fn key_value_stores_reach_the_monitor_and_bad_ones_are_refused() {
    let hello = build("apps/hello", "hvt");
    let hello = hello.to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good");
    std::fs::create_dir_all(good.join("sub")).unwrap();
    std::fs::write(good.join("sub/file"), b"value").unwrap();
    let good = good.to_str().unwrap();

    let out = fata(&[
        "run",
        hello,
        "--kv",
        &format!("a={good}"),
        "--kv",
        &format!("a={good}"),
    ]);
    // Device names are one rule for every target, checked with the command line.
    refused(&out, 2, "two devices are named \"a\"");
    // hello takes no store: one given is refused before the monitor reads it.
    let out = fata(&["run", hello, "--kv", "files=/nonexistent/fata-kv"]);
    refused(&out, 2, "does not take the key-value store \"files\"");

    // apps/dns takes the store `files` (and a network interface, so a namespace with a tap).
    let Some(ns) = Netns::create("kvstores", 72) else {
        return;
    };
    let dns = build("apps/dns", "hvt");
    let run = |store: &str, extra: &[&str]| {
        ns.fata()
            .arg("run")
            .arg(&dns)
            .args(["--net", "tap0", "--kv", &format!("files={store}")])
            .args(extra)
            .output()
            .unwrap()
    };
    let bad = dir.path().join("bad");
    std::fs::create_dir(&bad).unwrap();
    std::fs::write(bad.join(std::ffi::OsStr::from_bytes(b"\xff")), b"x").unwrap();
    let out = run(bad.to_str().unwrap(), &[]);
    refused(&out, 116, "key-value store files");
    assert!(text(&out.stderr).contains("UTF-8"), "{}", text(&out.stderr));
    let out = run("/nonexistent/fata-kv", &[]);
    refused(&out, 116, "store files");

    // Without --zone the server stops at once, after the monitor has loaded its store.
    if !fata_testkit::kvm() {
        return;
    }
    let out = run(good, &["--stats"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("kv: 1 stores, 1 files, 5 bytes"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn mac_is_refused_on_unix() {
    let out = fata(&[
        "run",
        "--target",
        "unix",
        "apps/echo",
        "--net",
        "tap0",
        "--mac",
        "02:00:00:00:00:01",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("--mac applies to the hvt target only"),
        "{}",
        text(&out.stderr)
    );
}

/// A zone of a few hundred names, so the compiled zone the DNS app reads from its store is a
/// file of some size.
fn kv_zone() -> String {
    let mut zone = String::from(
        "$ORIGIN kv.fata.\n$TTL 3600\n\
         @ IN SOA ns1 hostmaster 2026112401 7200 3600 1209600 300\n\
         @ IN NS ns1\nns1 IN A 192.0.2.53\nalias IN CNAME host7\n",
    );
    for n in 0..400 {
        zone.push_str(&format!("host{n} IN A 198.51.{}.{}\n", n / 256, n % 256));
        zone.push_str(&format!("host{n} IN TXT \"host number {n}\"\n"));
    }
    zone
}

#[test]
fn dns_on_hvt_serves_the_zone_from_its_key_value_store() {
    if !fata_testkit::kvm() {
        return;
    }
    let Some(ns) = Netns::create("dnskv", 65) else {
        return;
    };
    build("apps/dns", "hvt");
    let dir = tempfile::tempdir().unwrap();
    let zone = dir.path().join("kv.zone");
    std::fs::write(&zone, kv_zone()).unwrap();
    let ipv4 = format!("{}/24", ns.guest());
    let mut command = ns.fata();
    command
        .args([
            "run",
            "--release",
            "--target",
            "hvt",
            "apps/dns",
            "--net",
            "tap0",
            "--",
            "--zone",
        ])
        .arg(&zone)
        .args(["--ipv4", &ipv4]);
    let mut app = Running::start(command, "dns: serving kv.fata");
    let server = SocketAddr::from((ns.guest(), 53));
    ns.run(|| {
        // The first question also waits out ARP; later ones are answered at once.
        let first = (0..10)
            .find_map(|_| ask(server, &query(1, "host7.kv.fata", 1, None), false))
            .expect("an answer over UDP");
        let a = summarize(&first);
        assert_eq!((a.rcode, a.flags & 0x8400), (0, 0x8400), "{a:?}");
        assert_eq!(a.sections[0].len(), 1, "{a:?}");
        assert!(
            a.sections[0]
                .iter()
                .all(|r| r.ends_with(" 1 [198, 51, 0, 7]")),
            "{a:?}"
        );
        for (i, (name, qtype, tcp)) in [
            ("host399.kv.fata", 16, true),
            ("HOST300.kv.fata", 1, false),
            ("alias.kv.fata", 1, true),
            ("kv.fata", 6, true),
            ("kv.fata", 2, false),
        ]
        .into_iter()
        .enumerate()
        {
            let response = ask(server, &query(i as u16 + 2, name, qtype, Some(1232)), tcp)
                .unwrap_or_else(|| panic!("no answer for {name} type {qtype} (tcp {tcp})"));
            let s = summarize(&response);
            assert_eq!(s.rcode, 0, "{name} type {qtype}: {s:?}");
            assert!(!s.sections[0].is_empty(), "{name} type {qtype}: {s:?}");
        }
        let txt = summarize(&ask(server, &query(20, "host399.kv.fata", 16, None), true).unwrap());
        let expected: Vec<u8> = [&[15u8][..], b"host number 399"].concat();
        assert!(
            txt.sections[0]
                .iter()
                .any(|r| r.ends_with(&format!("{expected:?}"))),
            "{txt:?}"
        );
        let missing =
            summarize(&ask(server, &query(21, "nothere.kv.fata", 1, None), false).unwrap());
        assert_eq!(missing.rcode, 3, "NXDOMAIN: {missing:?}");
    });
    assert!(app.is_running(), "the DNS unikernel ended");
}
