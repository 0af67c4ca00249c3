//! Running unikernels as things one manages: `fata ps`, `pause`, `resume`, `stop`, snapshots
//! (full and diff) restored on the same tap and on another, the snapshots a restore must refuse,
//! and a live migration under load with a download in flight. Every guest is apps/pulse on hvt
//! (see tests/pulse.rs) over taps in a network namespace the test makes.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::Path;
use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::dns::{ask, query, summarize};
use common::pulse::{Clock, check_pulse, get, pattern, txt_answer};
use common::{Netns, Running, build, text};

/// `fata ARGS` with the run directory of the test.
fn fata_in(run_dir: &Path, args: &[&str]) -> Output {
    let mut command = common::fata_command(args);
    command.env("FATA_RUN_DIR", run_dir);
    command.output().unwrap()
}

/// `fata ARGS` that must succeed; its stdout.
fn ok(run_dir: &Path, args: &[&str]) -> String {
    let out = fata_in(run_dir, args);
    assert!(
        out.status.success(),
        "fata {args:?} failed ({:?}): {}",
        out.status,
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// `fata ps --json`, parsed.
fn ps(run_dir: &Path) -> Vec<serde_json::Value> {
    let out = ok(run_dir, &["ps", "--json"]);
    serde_json::from_str(&out).unwrap()
}

/// The guest named `name` in `fata ps`.
fn listed(run_dir: &Path, name: &str) -> Option<serde_json::Value> {
    ps(run_dir).into_iter().find(|g| g["name"] == name)
}

/// Boots pulse on hvt as `name` on `tap`.
fn boot_pulse(ns: &Netns, run_dir: &Path, name: &str, tap: &str) -> Running {
    build("apps/pulse", "hvt");
    let ipv4 = format!("{}/24", ns.guest());
    let command = ns.fata_with_run_dir(
        run_dir,
        &[
            "run",
            "--release",
            "--target",
            "hvt",
            "apps/pulse",
            "--name",
            name,
            "--net",
            tap,
            "--",
            "--ipv4",
            &ipv4,
        ],
    );
    Running::start(command, "pulse: ready")
}

/// Pulse's clock, asked over DNS; `None` if no answer came.
fn clock(ns: &Netns) -> Option<Clock> {
    let dns = SocketAddr::from((ns.guest(), 53));
    ns.run(|| {
        let txt = ask(dns, &query(7, "clock.pulse.test.", 16, None), false)?;
        Some(Clock::parse(&txt_answer(&txt)))
    })
}

/// Waits until pulse answers over DNS (a restored guest prints nothing new).
fn answers_within(ns: &Netns, within: Duration) -> Clock {
    let deadline = Instant::now() + within;
    loop {
        if let Some(clock) = clock(ns) {
            return clock;
        }
        assert!(
            Instant::now() < deadline,
            "pulse did not answer within {within:?}"
        );
    }
}

/// Adds a second tap `tap1` and a bridge holding both taps and the host's address, so that a
/// guest can move from `tap0` to `tap1` and be found there only once it announces itself.
fn bridge(ns: &Netns) {
    let host = format!("10.{}.0.1/24", ns.subnet);
    let steps: [&[&str]; 8] = [
        &["ip", "link", "add", "br0", "type", "bridge"],
        &["ip", "addr", "del", &host, "dev", "tap0"],
        &["ip", "link", "set", "tap0", "master", "br0"],
        &["ip", "tuntap", "add", "dev", "tap1", "mode", "tap"],
        &[
            "ip", "link", "set", "tap1", "mtu", "9000", "master", "br0", "up",
        ],
        &["ip", "link", "set", "br0", "mtu", "9000"],
        &["ip", "addr", "add", &host, "dev", "br0"],
        &["ip", "link", "set", "br0", "up"],
    ];
    ns.run_steps(&steps);
}

/// Bytes a memory file takes on disk.
fn allocated(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).unwrap().blocks() * 512
}

#[test]
fn ps_pause_resume_and_stop() {
    if !fata_testkit::kvm() {
        return;
    }
    let Some(ns) = Netns::create("life", 82) else {
        return;
    };
    let run_dir = tempfile::tempdir().unwrap();
    let dir = run_dir.path();
    let mut app = boot_pulse(&ns, dir, "pulse-a", "tap0");
    let guest = listed(dir, "pulse-a").expect("fata ps lists the guest");
    assert_eq!(guest["state"], "running");
    assert_eq!(guest["mem_bytes"], 32 << 20);
    assert_eq!(guest["devices"][0]["host"], "tap0");
    assert!(guest["rss_bytes"].as_u64().unwrap() > 0);
    let table = ok(dir, &["ps"]);
    assert!(
        table.contains("pulse-a") && table.contains("net service=tap0"),
        "{table}"
    );

    let before = answers_within(&ns, Duration::from_secs(5));
    assert!(ok(dir, &["pause", "pulse-a"]).contains("paused"));
    assert_eq!(listed(dir, "pulse-a").unwrap()["state"], "paused");
    assert!(clock(&ns).is_none(), "a paused guest answers nothing");
    assert!(ok(dir, &["resume", "pulse-a"]).contains("resumed"));
    let after = answers_within(&ns, Duration::from_secs(5));
    assert!(after.mono > before.mono && after.ticks > before.ticks);

    let refused = fata_in(dir, &["pause", "nobody"]);
    assert_eq!(refused.status.code(), Some(7));
    assert!(text(&refused.stderr).contains("fata ps"));
    let taken = ns
        .fata_with_run_dir(dir, &["run", "--release", "--target", "hvt", "apps/pulse"])
        .args(["--name", "pulse-a", "--net", "tap0"])
        .output()
        .unwrap();
    assert_eq!(taken.status.code(), Some(113), "{}", text(&taken.stderr));

    assert!(ok(dir, &["stop", "pulse-a"]).contains("stopped"));
    assert_eq!(app.wait_exit(Duration::from_secs(5)), Some(143));
    assert!(listed(dir, "pulse-a").is_none());
    assert!(!dir.join("pulse-a.sock").exists());
}

#[test]
fn snapshot_and_restore_carry_the_guest_on() {
    if !fata_testkit::kvm() {
        return;
    }
    let Some(ns) = Netns::create("snap", 83) else {
        return;
    };
    bridge(&ns);
    let run_dir = tempfile::tempdir().unwrap();
    let dir = run_dir.path();
    let snapshots = tempfile::tempdir().unwrap();
    let full = snapshots.path().join("full");
    let diff = snapshots.path().join("diff");
    let mut app = boot_pulse(&ns, dir, "pulse-s", "tap0");
    check_pulse(&ns);
    // A connection open across the snapshot: the same TCP connection answers after the restore.
    let http = SocketAddr::from((ns.guest(), 80));
    let mut kept = ns.run(|| TcpStream::connect(http).unwrap());

    let saved = ok(dir, &["snapshot", "pulse-s", "-o", full.to_str().unwrap()]);
    assert!(saved.contains("saved to"), "{saved}");
    let first = answers_within(&ns, Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(300));
    let saved = ok(
        dir,
        &[
            "snapshot",
            "pulse-s",
            "-o",
            diff.to_str().unwrap(),
            "--diff",
            "--stop",
        ],
    );
    assert!(saved.contains("over its parent"), "{saved}");
    assert_eq!(app.wait_exit(Duration::from_secs(5)), Some(0));

    let (full_bytes, diff_bytes) = (
        allocated(&full.join("memory")),
        allocated(&diff.join("memory")),
    );
    println!("snapshot: full {full_bytes} bytes, diff {diff_bytes} bytes of a 32 MiB guest");
    assert!(full_bytes < 12 << 20, "sparse: {full_bytes} bytes");
    assert!(diff_bytes < full_bytes, "a diff holds less: {diff_bytes}");

    // Restored on the other tap: peers find it only through its gratuitous ARP.
    let mut restored = Running::background(ns.fata_with_run_dir(
        dir,
        &[
            "restore",
            diff.to_str().unwrap(),
            "--net",
            "tap1",
            "--name",
            "pulse-r",
        ],
    ));
    let later = answers_within(&ns, Duration::from_secs(5));
    assert!(
        later.mono > first.mono && later.ticks > first.ticks,
        "the monotonic clock went on and timers fired: {first:?} then {later:?}"
    );
    later.check_wall();
    let guest = listed(dir, "pulse-r").expect("the restored guest is listed");
    assert_eq!(guest["devices"][0]["host"], "tap1");
    assert!(guest["origin"].as_str().unwrap().contains("diff"));
    ns.run(|| {
        write!(kept, "GET /clock HTTP/1.1\r\nHost: pulse.test\r\n\r\n").unwrap();
        kept.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut answer = Vec::new();
        kept.read_to_end(&mut answer)
            .expect("the connection survived");
        assert!(
            text(&answer).starts_with("HTTP/1.1 200"),
            "{}",
            text(&answer)
        );
    });
    check_pulse(&ns);
    ok(dir, &["stop", "pulse-r"]);
    assert_eq!(restored.wait_exit(Duration::from_secs(5)), Some(143));

    // The full snapshot restores too, any number of times, here on the tap of another
    // namespace: the host's side has another MAC there, which the guest learns anew.
    let other = Netns::create("snap2", 83).expect("a second namespace");
    // Its host already knows the guest's MAC, as the first namespace's does, and sends without
    // asking: the guest must ask for the host's new MAC itself.
    let guest = ns.guest().to_string();
    let known = ns
        .command("ip")
        .args(["neigh", "show", &guest])
        .output()
        .unwrap();
    let known = text(&known.stdout);
    let mac = known
        .split_whitespace()
        .skip_while(|word| *word != "lladdr")
        .nth(1)
        .unwrap_or_else(|| panic!("the host knows the guest's MAC: {known:?}"));
    let out = other
        .command("ip")
        .args([
            "neigh",
            "replace",
            &guest,
            "lladdr",
            mac,
            "dev",
            "tap0",
            "nud",
            "permanent",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "ip neigh: {}", text(&out.stderr));
    let mut again =
        Running::background(other.fata_with_run_dir(dir, &["restore", full.to_str().unwrap()]));
    answers_within(&other, Duration::from_secs(5));
    assert!(
        listed(dir, "pulse-s").is_some(),
        "restored under its own name"
    );
    assert!(again.is_running());
}

/// How a bad-snapshot case fills its directory.
type Case<'a> = Box<dyn Fn(&Path) + 'a>;

#[test]
fn bad_snapshots_are_refused() {
    if !fata_testkit::kvm() {
        return;
    }
    let Some(ns) = Netns::create("badsnap", 84) else {
        return;
    };
    let run_dir = tempfile::tempdir().unwrap();
    let dir = run_dir.path();
    let snapshots = tempfile::tempdir().unwrap();
    let good = snapshots.path().join("good");
    let mut app = boot_pulse(&ns, dir, "pulse-b", "tap0");
    ok(
        dir,
        &[
            "snapshot",
            "pulse-b",
            "-o",
            good.to_str().unwrap(),
            "--stop",
        ],
    );
    assert_eq!(app.wait_exit(Duration::from_secs(5)), Some(0));
    let not_empty = fata_in(dir, &["snapshot", "nobody", "-o", good.to_str().unwrap()]);
    assert_eq!(not_empty.status.code(), Some(7));

    let state = std::fs::read(good.join("state")).unwrap();
    let memory = std::fs::read(good.join("memory")).unwrap();
    let snapshot = fata_snapshot::decode(&state).unwrap();
    let first_extent = snapshot.memory[0];
    let cases: Vec<(&str, Case, &str)> = vec![
        (
            "missing",
            Box::new(|_: &Path| {}),
            "a snapshot made by `fata snapshot`",
        ),
        (
            "truncated state",
            Box::new(|d: &Path| {
                std::fs::write(d.join("state"), &state[..state.len() / 2]).unwrap();
                std::fs::write(d.join("memory"), &memory).unwrap();
            }),
            "",
        ),
        (
            "corrupt state",
            Box::new(|d: &Path| {
                let mut bad = state.clone();
                bad[40] ^= 0x10;
                std::fs::write(d.join("state"), bad).unwrap();
                std::fs::write(d.join("memory"), &memory).unwrap();
            }),
            "",
        ),
        (
            "corrupt memory",
            Box::new(|d: &Path| {
                std::fs::write(d.join("state"), &state).unwrap();
                let mut bad = memory.clone();
                bad[first_extent.offset as usize + 100] ^= 1;
                std::fs::write(d.join("memory"), bad).unwrap();
            }),
            "",
        ),
        (
            "truncated memory",
            Box::new(|d: &Path| {
                std::fs::write(d.join("state"), &state).unwrap();
                std::fs::write(d.join("memory"), &memory[..memory.len() / 2]).unwrap();
            }),
            "",
        ),
        (
            "another ABI",
            Box::new(|d: &Path| {
                let mut other = snapshot.clone();
                other.abi_version += 1;
                std::fs::write(d.join("state"), fata_snapshot::encode(&other)).unwrap();
                std::fs::write(d.join("memory"), &memory).unwrap();
            }),
            "ABI",
        ),
        (
            "an unknown device",
            Box::new(|d: &Path| {
                std::fs::write(d.join("state"), &state).unwrap();
                std::fs::write(d.join("memory"), &memory).unwrap();
            }),
            "no network interface named",
        ),
    ];
    for (what, make, needle) in cases {
        let case = snapshots.path().join(what.replace(' ', "-"));
        if what != "missing" {
            std::fs::create_dir(&case).unwrap();
        }
        make(&case);
        let mut args = vec!["restore", case.to_str().unwrap()];
        if what == "an unknown device" {
            args.extend(["--net", "uplink=tap0"]);
        }
        let out = ns.fata_with_run_dir(dir, &args).output().unwrap();
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(114), "{what}: {stderr}");
        assert!(stderr.contains(needle), "{what}: {stderr}");
        assert!(!stderr.contains("panicked"), "{what}: {stderr}");
    }
    // The good one still restores.
    let mut restored =
        Running::background(ns.fata_with_run_dir(dir, &["restore", good.to_str().unwrap()]));
    answers_within(&ns, Duration::from_secs(5));
    assert!(restored.is_running());
}

/// DNS queries at a steady rate from inside the namespace until `stop`: (answers, wrong answers,
/// the longest gap between two answers).
fn dns_load(ns: &Netns, stop: &AtomicBool) -> (u64, u64, Duration) {
    let dns = SocketAddr::from((ns.guest(), 53));
    let expected = format!("pulse.test. 0 1 {:?}", ns.guest().octets());
    ns.run(|| {
        let socket = UdpSocket::bind("0.0.0.0:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(1)))
            .unwrap();
        let (mut answers, mut wrong, mut gap) = (0, 0, Duration::ZERO);
        let mut last = Instant::now();
        let mut buf = [0u8; 1500];
        let mut id = 0u16;
        while !stop.load(Ordering::Relaxed) {
            id = id.wrapping_add(1);
            socket
                .send_to(&query(id, "pulse.test.", 1, None), dns)
                .unwrap();
            while let Ok(n) = socket.recv(&mut buf) {
                let now = Instant::now();
                gap = gap.max(now - last);
                last = now;
                answers += 1;
                let summary = summarize(&buf[..n]);
                if summary.rcode != 0 || !summary.sections[0].contains(&expected) {
                    wrong += 1;
                }
            }
        }
        (answers, wrong, gap)
    })
}

#[test]
fn migration_under_load_keeps_connections_and_answers() {
    if !fata_testkit::kvm() {
        return;
    }
    let Some(ns) = Netns::create("migrate", 85) else {
        return;
    };
    bridge(&ns);
    let run_dir = tempfile::tempdir().unwrap();
    let dir = run_dir.path();
    let mut source = boot_pulse(&ns, dir, "pulse-m", "tap0");
    let mut receiver = Running::background(ns.fata_with_run_dir(
        dir,
        &[
            "receive",
            "--listen",
            "127.0.0.1:7415",
            "--net",
            "tap1",
            "--name",
            "pulse-m2",
        ],
    ));
    std::thread::sleep(Duration::from_millis(300));
    const BIG: usize = 48 << 20;
    let stop = Arc::new(AtomicBool::new(false));
    std::thread::scope(|scope| {
        let load = scope.spawn(|| dns_load(&ns, &stop));
        // A download paced to span the migration.
        let download = scope.spawn(|| {
            ns.run(|| {
                let mut stream = TcpStream::connect((ns.guest(), 80)).unwrap();
                stream
                    .set_read_timeout(Some(Duration::from_secs(10)))
                    .unwrap();
                write!(
                    stream,
                    "GET /bytes/{BIG} HTTP/1.1\r\nHost: pulse.test\r\n\r\n"
                )
                .unwrap();
                let mut all = Vec::new();
                let mut buf = vec![0u8; 256 << 10];
                loop {
                    match stream.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => all.extend_from_slice(&buf[..n]),
                        Err(e) => panic!("the download broke after {} bytes: {e}", all.len()),
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                all
            })
        });
        std::thread::sleep(Duration::from_millis(500));
        let moved = ok(dir, &["migrate", "pulse-m", "--to", "127.0.0.1:7415"]);
        println!("{moved}");
        assert!(moved.contains("moved to"), "{moved}");
        assert_eq!(source.wait_exit(Duration::from_secs(5)), Some(0));
        let all = download.join().unwrap();
        std::thread::sleep(Duration::from_millis(300));
        stop.store(true, Ordering::Relaxed);
        let (answers, wrong, gap) = load.join().unwrap();
        println!("dns during the migration: {answers} answers, {wrong} wrong, longest gap {gap:?}");
        assert_eq!(wrong, 0);
        assert!(answers > 100);
        assert!(
            gap < Duration::from_secs(1),
            "downtime as the client saw it: {gap:?}"
        );
        let head_end = all.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let body = &all[head_end..];
        assert_eq!(body.len(), BIG, "the whole download arrived");
        if let Some(at) = (0..BIG).find(|&i| body[i] != pattern(i as u64)) {
            panic!("byte {at} of the download differs");
        }
    });
    let guest = listed(dir, "pulse-m2").expect("the guest runs at the receiver");
    assert!(guest["origin"].as_str().unwrap().contains("migration"));
    assert_eq!(guest["devices"][0]["host"], "tap1");
    check_pulse(&ns);
    ns.run(|| assert_eq!(get(SocketAddr::from((ns.guest(), 80)), "/clock").0, 200));
    assert!(receiver.is_running());
}
