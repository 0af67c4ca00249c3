//! Block devices on the hvt target, end to end under KVM: apps/blockcheck booted by
//! `fata run --target hvt --block` against real files, read-write, read-only and copy-on-write,
//! with the monitor's counters and the file checked afterwards.

mod common;

use std::process::Output;

use common::blockcheck::{CHUNKS, DISK, assert_written, patterned};
use common::{fata, text};

/// Boots blockcheck on hvt with `--block SPEC --stats` and the app's `args`.
fn blockcheck(spec: &str, args: &[&str]) -> Output {
    let mut command = vec![
        "run",
        "--release",
        "--target",
        "hvt",
        "apps/blockcheck",
        "--block",
        spec,
        "--stats",
        "--",
    ];
    command.extend_from_slice(args);
    fata(&command)
}

/// Asserts blockcheck ran to its end, and that the monitor had its 32 requests in flight at once
/// and refused none of them.
fn passed(out: &Output) {
    let stdout = text(&out.stdout);
    let stderr = text(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    assert!(stdout.ends_with("blockcheck: ok\n"), "{stdout}");
    let line = stderr
        .lines()
        .find(|l| l.starts_with("fata-monitor: block: "))
        .unwrap_or_else(|| panic!("no block counters in:\n{stderr}"));
    let in_flight: usize = line
        .split("at most ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no in-flight count in {line}"));
    assert!(
        in_flight >= CHUNKS,
        "the requests did not go out together: {line}"
    );
    assert!(line.contains(" 0 refused as malformed"), "{line}");
}

#[test]
fn a_read_write_device_takes_32_requests_per_exit_and_its_writes_reach_the_file() {
    if !fata_testkit::kvm() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk.img");
    std::fs::File::create(&disk)
        .unwrap()
        .set_len(DISK as u64)
        .unwrap();
    let out = blockcheck(&format!("storage={}", disk.display()), &[]);
    passed(&out);
    assert_written(&disk);
}

#[test]
fn a_read_only_device_refuses_writes_and_a_copy_on_write_one_keeps_the_file() {
    if !fata_testkit::kvm() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("gold.img");
    let before = patterned(&disk, 0xee);
    let path = disk.display();

    // Reads see the file; writes, grouped writes and discards come back ReadOnly.
    let out = blockcheck(&format!("{path}:ro"), &["--read-only"]);
    passed(&out);
    let stdout = text(&out.stdout);
    assert!(stdout.contains(", read-only"), "{stdout}");
    assert!(stdout.contains("writes, grouped writes and discards refused"));
    assert!(
        std::fs::read(&disk).unwrap() == before,
        ":ro changed the file"
    );

    // Every write succeeds and reads back, in the monitor's memory only.
    let out = blockcheck(&format!("{path}:cow"), &[]);
    passed(&out);
    assert!(!text(&out.stdout).contains("read-only"));
    assert!(
        std::fs::read(&disk).unwrap() == before,
        ":cow changed the file"
    );
    assert!(
        !dir.path().join("gold.img.fata-journal").exists(),
        ":cow wrote a journal"
    );
}

#[test]
fn a_block_file_that_cannot_be_opened_or_named_is_a_documented_error() {
    // The monitor opens its devices before it asks for KVM.
    let out = blockcheck("/nonexistent/fata-disk.img", &[]);
    assert_eq!(
        out.status.code(),
        Some(115),
        "stderr: {}",
        text(&out.stderr)
    );
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("block device storage") && stderr.contains("/nonexistent/fata-disk.img"),
        "{stderr}"
    );
    assert!(stderr.contains("does it exist"), "{stderr}");
    // A mode without a file is refused with the command line, before anything is opened.
    let out = blockcheck("storage=:ro", &[]);
    assert_eq!(out.status.code(), Some(2), "stderr: {}", text(&out.stderr));
    assert!(text(&out.stderr).contains("names no file"));
}
