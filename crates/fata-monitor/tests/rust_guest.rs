//! Builds the Rust test guest (`crates/fata-hvt/tests/guest`) with the hvt recipe and boots it: the
//! guest platform's services work end to end, the image has no undefined symbols, and a panic
//! prints its message and exits with 101.

mod common;

use common::*;
use fata_monitor::Config;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Builds the test guest once per test run, with the rustflags `fata build` gives every hvt guest;
/// returns the image path.
fn guest_image() -> &'static Path {
    static IMAGE: OnceLock<PathBuf> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let hvt = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fata-hvt");
        let target_dir = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"))
            .join("hvt-test-guest");
        let flags = fata_build::guest_rustflags(fata_build::Target::Hvt, &hvt.join("link.ld"));
        let status = Command::new(env!("CARGO"))
            .args(["build", "--release", "--target", fata_build::RUST_TARGET])
            .arg("--manifest-path")
            .arg(hvt.join("tests/guest/Cargo.toml"))
            .env("CARGO_TARGET_DIR", &target_dir)
            .env("CARGO_ENCODED_RUSTFLAGS", flags.join("\x1f"))
            .env_remove("RUSTFLAGS")
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building the test guest failed");
        target_dir
            .join(fata_build::RUST_TARGET)
            .join("release/fata-hvt-test-guest")
    })
}

#[test]
fn guest_image_has_no_undefined_symbols_and_stays_small() {
    let image = guest_image();
    let out = Command::new("nm")
        .arg("-u")
        .arg(image)
        .output()
        .expect("nm runs");
    assert!(out.status.success());
    let undefined = String::from_utf8_lossy(&out.stdout);
    assert!(
        undefined.trim().is_empty(),
        "undefined symbols in the guest image:\n{undefined}"
    );
    let size = std::fs::metadata(image).unwrap().len();
    eprintln!("test guest image: {size} bytes");
    assert!(size <= 128 * 1024, "the test guest grew to {size} bytes");
}

fn boot(args: &[&str]) -> Outcome {
    let copy = image_file(&std::fs::read(guest_image()).unwrap());
    let config = Config {
        args: args.iter().map(|a| a.to_string()).collect(),
        stats: true,
        ..Config::default()
    };
    run_path(copy, config)
}

#[test]
fn rust_guest_uses_every_platform_service() {
    if !kvm_available() {
        return;
    }
    let out = boot(&["one", "two words", "exit=42"]);
    let expected = "hello from the hvt test guest\n\
                    args: one|two words|exit=42\n\
                    heap: 333283335000\n\
                    strings: 10000\n\
                    float: 3.75\n\
                    wall clock: WALL\n\
                    slept 3 ms by the TSC: true (ready 0)\n\
                    random nonzero: true\n\
                    devices: 0\n";
    // The guest's wall clock (boot info + TSC) agrees with the host's to within a few seconds.
    let wall: u64 = out
        .console
        .lines()
        .find_map(|l| l.strip_prefix("wall clock: "))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no wall clock line in:\n{}", out.console));
    let host = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        host.abs_diff(wall) <= 5,
        "guest wall clock {wall}, host {host}"
    );
    assert_eq!(out.console.replace(&wall.to_string(), "WALL"), expected);
    assert_eq!(out.result.unwrap().status, 42);
}

#[test]
fn rust_guest_panic_prints_the_message_and_exits_101() {
    if !kvm_available() {
        return;
    }
    let out = boot(&["panic"]);
    assert_eq!(out.result.unwrap().status, 101);
    let panic = out
        .console
        .lines()
        .skip_while(|l| !l.starts_with("panicked at"))
        .collect::<Vec<_>>();
    assert_eq!(panic.len(), 2, "{}", out.console);
    assert!(
        panic[0].starts_with("panicked at src/main.rs:"),
        "{}",
        panic[0]
    );
    assert!(panic[0].ends_with(':'));
    assert_eq!(
        panic[1],
        "index out of bounds: the len is 0 but the index is 1"
    );
}

/// The checksum the test guest prints for a value.
fn sum(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(0u64, |s, &b| s.wrapping_mul(31).wrapping_add(u64::from(b)))
}

/// Bytes that differ from position to position.
fn pattern(len: usize, seed: u32) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (i.wrapping_add(seed).wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

fn boot_with_kv(args: &[&str], dir: &Path, mem_bytes: u64) -> Outcome {
    let copy = image_file(&std::fs::read(guest_image()).unwrap());
    let config = Config {
        args: args.iter().map(|a| a.to_string()).collect(),
        stats: true,
        mem_bytes,
        kvs: vec![fata_monitor::KvConfig {
            name: "files".into(),
            dir: dir.to_path_buf(),
        }],
        ..Config::default()
    };
    run_path(copy, config)
}

#[test]
fn rust_guest_reads_a_kv_store_in_place() {
    if !kvm_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let files: Vec<(&str, Vec<u8>)> = vec![
        ("a.txt", b"hello, store\n".to_vec()),
        ("dir/b.bin", pattern(5000, 1)),
        ("dir/sub/c", pattern(4096, 2)),
        ("empty", Vec::new()),
        ("z/last", pattern(70_001, 3)),
    ];
    for (key, value) in &files {
        let path = dir.path().join(key);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, value).unwrap();
    }
    let out = boot_with_kv(&["exit=5"], dir.path(), 32 << 20);
    let mut expected = format!("devices: 1\nkv files: {} keys\n", files.len());
    for (key, value) in &files {
        let n = value.len();
        expected.push_str(&format!(
            "kv files {key}: {n} bytes, read {n}, get Ok({n}), sum {:x}\n",
            sum(value)
        ));
    }
    expected.push_str("kv files missing: Err(NotFound) Err(NotFound)\n");
    let from_devices: String = out
        .console
        .lines()
        .skip_while(|l| !l.starts_with("devices:"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(from_devices, expected, "console:\n{}", out.console);
    assert_eq!(out.result.unwrap().status, 5);
}

#[test]
fn rust_guest_cannot_write_a_kv_store() {
    if !kvm_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("small"), b"read-only").unwrap();
    // Large enough that part of the region is mapped with 2 MiB pages.
    std::fs::write(dir.path().join("large"), pattern(5 << 20, 4)).unwrap();
    for key in ["small", "large"] {
        let out = boot_with_kv(&[&format!("write={key}")], dir.path(), 64 << 20);
        assert!(
            out.console.contains(&format!("writing {key}")),
            "{}",
            out.console
        );
        assert!(!out.console.contains("went through"), "{}", out.console);
        match out.result {
            Err(e @ fata_monitor::Error::GuestFault { .. }) => assert_eq!(e.exit_code(), 124),
            other => panic!("a write to the store must fault, got {other:?}"),
        }
    }
}
