//! End to end on the hvt target: apps/blockcheck over a block device backed by a host file,
//! read-write, read-only (`:ro`) and copy-on-write (`:cow`), under KVM.

mod common;

use std::path::Path;
use std::process::Output;

use common::{fata, text};

/// Sectors of the test file: blockcheck needs 512.
const SECTORS: u64 = 2048;

/// Sector `s` of the file the tests make, as blockcheck expects it (`original` there).
fn original(s: u64) -> Vec<u8> {
    let mut sector = vec![(s % 251) as u8; 512];
    sector[..8].copy_from_slice(&s.to_le_bytes());
    sector
}

/// What blockcheck writes to sector `s` (`written` there).
fn written(s: u64) -> Vec<u8> {
    let mut sector = vec![0x5a; 512];
    sector[..8].copy_from_slice(&(!s).to_le_bytes());
    sector
}

/// A fresh file of `SECTORS` sectors, each `original`.
fn disk() -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().unwrap();
    let bytes: Vec<u8> = (0..SECTORS).flat_map(original).collect();
    std::fs::write(file.path(), bytes).unwrap();
    file
}

/// Runs blockcheck on hvt with `--block SPEC --stats`.
fn blockcheck(spec: &str) -> Output {
    fata(&[
        "run",
        "--release",
        "--target",
        "hvt",
        "apps/blockcheck",
        "--block",
        spec,
        "--stats",
    ])
}

/// Sectors `range` of the file at `path`.
fn file_sectors(path: &Path, range: std::ops::Range<u64>) -> Vec<u8> {
    let bytes = std::fs::read(path).unwrap();
    bytes[(range.start * 512) as usize..(range.end * 512) as usize].to_vec()
}

fn sectors(range: std::ops::Range<u64>, pattern: fn(u64) -> Vec<u8>) -> Vec<u8> {
    range.flat_map(pattern).collect()
}

/// What blockcheck prints on a device that is `read_only` or not, whose discard ends with
/// `discard` (where the device is writable).
fn expected(read_only: bool, discard: &str) -> String {
    let (write, back, zeros) = if read_only {
        ("device is read-only", "the original bytes", "false")
    } else {
        ("ok", "the written bytes", "true")
    };
    let discard = if read_only {
        "device is read-only"
    } else {
        discard
    };
    format!(
        "geometry: {SECTORS} sectors of 512 bytes, read-only {read_only}\n\
         reads: 32 in flight, 32 match the file\n\
         write: {write}\n\
         flush: ok\n\
         read back: ok, {back}\n\
         discard: {discard}\n\
         discarded sectors read as zeros: {zeros}\n\
         read past the end: request is past the end of the device\n\
         read of 100 bytes: invalid argument\n"
    )
}

/// Checks the monitor's block counters: every request counted, the 32 reads in flight together,
/// the partial-sector read refused by the monitor itself.
fn check_stats(out: &Output) {
    let stderr = text(&out.stderr);
    let line = stderr
        .lines()
        .find(|l| l.starts_with("fata-monitor: block: "))
        .unwrap_or_else(|| panic!("no block counters in:\n{stderr}"));
    let in_flight: u64 = line
        .split("at most ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no in-flight count in {line}"));
    assert!(in_flight >= 32, "the reads did not go out together: {line}");
    assert!(line.contains("1 refused as malformed"), "{line}");
    assert!(
        line.starts_with("fata-monitor: block: 39 requests"),
        "{line}"
    );
}

#[test]
fn a_read_write_device_reads_in_parallel_and_its_writes_reach_the_file() {
    if !fata_testkit::kvm() {
        return;
    }
    let file = disk();
    let out = blockcheck(file.path().to_str().unwrap());
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    let stdout = text(&out.stdout);
    // Discard punches a hole in the file; a host file system that cannot says so.
    let discard = if stdout.contains("discard: ok") {
        "ok"
    } else {
        "not supported by this device"
    };
    assert_eq!(stdout, expected(false, discard));
    check_stats(&out);
    let path = file.path();
    assert_eq!(file_sectors(path, 300..308), sectors(300..308, written));
    assert_eq!(file_sectors(path, 0..300), sectors(0..300, original));
    assert_eq!(file_sectors(path, 308..400), sectors(308..400, original));
    let discarded = file_sectors(path, 400..408);
    if discard == "ok" {
        assert!(discarded.iter().all(|&b| b == 0), "the discard left data");
    } else {
        assert_eq!(discarded, sectors(400..408, original));
    }
    assert_eq!(
        file_sectors(path, 408..SECTORS),
        sectors(408..SECTORS, original)
    );
}

#[test]
fn a_read_only_device_refuses_writes_and_a_copy_on_write_one_keeps_the_file() {
    if !fata_testkit::kvm() {
        return;
    }
    let file = disk();
    let before = std::fs::read(file.path()).unwrap();
    let path = file.path().to_str().unwrap();

    let out = blockcheck(&format!("{path}:ro"));
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), expected(true, ""));
    check_stats(&out);
    assert!(
        std::fs::read(file.path()).unwrap() == before,
        "ro changed the file"
    );

    // Writes and discards succeed and read back, in the monitor's memory only.
    let out = blockcheck(&format!("storage={path}:cow"));
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), expected(false, "ok"));
    check_stats(&out);
    assert!(
        std::fs::read(file.path()).unwrap() == before,
        "cow changed the file"
    );
}

#[test]
fn a_block_file_that_cannot_be_opened_is_a_documented_error() {
    // The monitor opens its devices before it asks for KVM.
    let out = blockcheck("/nonexistent/fata-disk.img");
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
}
