//! Block devices on the unix target, end to end: `fata run --target unix --block` with
//! apps/blockcheck against real files, read-write, read-only and copy-on-write.

mod common;

use common::blockcheck::{DISK, assert_written, patterned};
use common::{fata, text};

/// Runs blockcheck with `devices` and the app's `args`.
fn blockcheck(devices: &[&str], args: &[&str]) -> std::process::Output {
    let mut command = vec!["run", "--target", "unix", "apps/blockcheck"];
    command.extend_from_slice(devices);
    command.push("--");
    command.extend_from_slice(args);
    fata(&command)
}

/// Asserts blockcheck ran to its end.
fn passed(out: &std::process::Output) {
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout: {stdout}\nstderr: {}",
        text(&out.stderr)
    );
    assert!(stdout.contains("32 in flight"), "{stdout}");
    assert!(stdout.ends_with("blockcheck: ok\n"), "{stdout}");
}

#[test]
fn blockcheck_reads_and_writes_a_file_with_32_requests_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk.img");
    std::fs::File::create(&disk)
        .unwrap()
        .set_len(DISK as u64)
        .unwrap();
    let spec = format!("storage={}", disk.display());
    let out = blockcheck(&["--block", &spec], &[]);
    passed(&out);
    assert!(text(&out.stdout).contains("discarded sectors read back as zeros"));
    assert_written(&disk);
}

#[test]
fn a_read_only_file_is_read_and_refuses_writes() {
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("gold.img");
    let before = patterned(&disk, 0x5a);
    let spec = format!("storage={}:ro", disk.display());
    let out = blockcheck(&["--block", &spec], &["--read-only"]);
    passed(&out);
    assert!(text(&out.stdout).contains("storage: 8192 sectors of 512 bytes, read-only"));
    // The app's own write checks fail on it, with the device's error.
    let out = blockcheck(&["--block", &spec], &[]);
    assert_eq!(out.status.code(), Some(1));
    let said = text(&out.stdout) + &text(&out.stderr);
    assert!(
        said.contains("write of chunk 0: device is read-only"),
        "{said}"
    );
    assert!(
        std::fs::read(&disk).unwrap() == before,
        "the file is unchanged"
    );
    assert!(!dir.path().join("gold.img.fata-journal").exists());
}

#[test]
fn copy_on_write_serves_writes_from_memory_and_leaves_the_file_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("gold.img");
    std::fs::write(&disk, vec![0x5a; DISK]).unwrap();
    let spec = format!("{}:cow", disk.display());
    passed(&blockcheck(&["--block", &spec], &[]));
    assert!(
        std::fs::read(&disk).unwrap().iter().all(|&b| b == 0x5a),
        "the file is unchanged"
    );
    assert!(!dir.path().join("gold.img.fata-journal").exists());
}

#[test]
fn block_specs_are_checked_before_the_app_starts() {
    let out = blockcheck(&["--block", "storage=:cow"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("names no file before its mode"));
    let out = blockcheck(&["--block", "/no/such/disk.img:ro"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("block device storage: cannot open /no/such/disk.img for reading"),
        "{stderr}"
    );
}
