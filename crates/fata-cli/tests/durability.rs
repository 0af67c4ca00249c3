//! Nothing lost: apps/fatstress changes files on a FAT disk and flushes after each change while
//! the test kills it with SIGKILL at random moments. After each kill the block engine replays
//! its journal (by opening the file, as the next run would), fsck.fat must find the disk clean,
//! and every file must hold what the app's last `flushed` line promised (mcopy reads them back).

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{build, fata_command, text};

/// How many times the app is killed.
const RUNS: u64 = 24;

/// What a file holds: its length and CRC-32, or nothing when it does not exist.
type Content = Option<(usize, u32)>;

/// The change the app said it was making: file and what it holds afterwards.
#[derive(Debug, Clone)]
struct Change {
    number: u64,
    path: String,
    after: Content,
}

/// `begin I write|append LEN CRC PATH` or `begin I remove - - PATH`.
fn parse_begin(line: &str) -> Change {
    let mut words = line.splitn(6, ' ');
    let (_, number, op, len, crc, path) = (
        words.next(),
        words.next().unwrap(),
        words.next().unwrap(),
        words.next().unwrap(),
        words.next().unwrap(),
        words.next().unwrap(),
    );
    let after = match op {
        "remove" => None,
        _ => Some((len.parse().unwrap(), u32::from_str_radix(crc, 16).unwrap())),
    };
    Change {
        number: number.parse().unwrap(),
        path: path.to_string(),
        after,
    }
}

/// The CRC-32 (IEEE) of `bytes`.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xEDB8_8320 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}

/// What the file `path` in the image holds, as mcopy reads it.
fn content(image: &Path, path: &str) -> Content {
    let out = Command::new("mcopy")
        .env("MTOOLS_SKIP_CHECK", "1")
        .arg("-i")
        .arg(image)
        .arg(format!("::{path}"))
        .arg("-")
        .output()
        .unwrap();
    out.status
        .success()
        .then(|| (out.stdout.len(), crc32(&out.stdout)))
}

fn fsck(image: &Path) {
    let out = Command::new("fsck.fat")
        .arg("-n")
        .arg(image)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "fsck.fat -n after a kill: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// Runs the app on `image` (files up to `max_len` bytes) until `kill_after` has passed since it
/// was ready, then kills it; returns its stdout lines.
fn run_and_kill(
    target: &str,
    app: &Path,
    image: &Path,
    seed: u64,
    max_len: u64,
    kill_after: Duration,
) -> Vec<String> {
    let mut command = fata_command(&[
        "run",
        "--target",
        target,
        app.to_str().unwrap(),
        "--block",
        &format!("storage={}", image.display()),
        "--",
        "--seed",
        &seed.to_string(),
        "--max-len",
        &max_len.to_string(),
    ]);
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
        text
    });
    let (send, receive) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if send.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    let mut ready_at = None;
    let started = Instant::now();
    loop {
        if ready_at.is_some_and(|at: Instant| at.elapsed() >= kill_after) {
            break;
        }
        match receive.recv_timeout(Duration::from_millis(1)) {
            Ok(line) => {
                if line.starts_with("ready") {
                    ready_at = Some(Instant::now());
                }
                lines.push(line);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                assert!(
                    started.elapsed() < common::READY_WITHIN,
                    "fatstress did not get ready"
                );
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    // SIGKILL, at whatever the app is doing.
    let _ = child.kill();
    let status = child.wait().unwrap();
    lines.extend(receive.iter());
    assert!(
        status.code().is_none(),
        "fatstress ended by itself ({status}) instead of being killed: {}",
        errors.join().unwrap()
    );
    lines
}

/// Kills fatstress on `target` [`RUNS`] times and checks the disk after each kill.
fn nothing_lost(target: &str) {
    for (program, package) in [
        ("mkfs.fat", "dosfstools"),
        ("fsck.fat", "dosfstools"),
        ("mcopy", "mtools"),
    ] {
        if !fata_testkit::program(program, package) {
            return;
        }
    }
    if target == "hvt" && !fata_testkit::kvm() {
        return;
    }
    let app = build("apps/fatstress", target);
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("disk.img");
    let out = Command::new("mkfs.fat")
        .args(["-F", "32", "-C"])
        .arg(&image)
        .arg("65536")
        .output()
        .unwrap();
    assert!(out.status.success(), "mkfs.fat: {}", text(&out.stderr));

    // What each file holds after the last change whose flush returned.
    let mut held: BTreeMap<String, Content> = BTreeMap::new();
    let mut flushed_changes = 0;
    let mut torn_flushes = 0;
    let mut recovered_sectors = 0;
    let mut replays = 0;
    for run in 0..RUNS {
        // Kill at once, mid-way through the first changes, or after many.
        let kill_after =
            Duration::from_millis([0, 3, 10, 30, 80, 200, 400][(run % 7) as usize] + run * 7);
        // Every other run writes files of up to 2 MB, whose flushes take longer to journal.
        let max_len = if run % 2 == 0 { 100_000 } else { 2_000_000 };
        let lines = run_and_kill(target, &app, &image, run + 1, max_len, kill_after);
        let mut pending: Option<Change> = None;
        for line in &lines {
            if line.starts_with("begin ") {
                pending = Some(parse_begin(line));
            } else if let Some(number) = line.strip_prefix("flushed ") {
                let change = pending.take().expect("a change before its flush");
                assert_eq!(change.number.to_string(), number);
                held.insert(change.path, change.after);
                flushed_changes += 1;
            }
        }
        // Opening the device replays a journal the kill left (as the next run would).
        let device = fata_blockfile::BlockFile::open(&image, fata_blockfile::Mode::ReadWrite)
            .unwrap_or_else(|e| panic!("reopening the disk after run {run}: {e}"));
        if device.recovered() > 0 {
            replays += 1;
        }
        recovered_sectors += device.recovered();
        drop(device);
        fsck(&image);
        for (path, expected) in held.clone() {
            let found = content(&image, &path);
            match &pending {
                // The change in flight when the app was killed may or may not be on the disk.
                Some(change) if change.path == path && found == change.after => {
                    held.insert(path, found);
                    torn_flushes += 1;
                }
                _ => assert_eq!(
                    found, expected,
                    "run {run}: {path} should hold what its last flush left"
                ),
            }
        }
        if let Some(change) = pending.filter(|c| !held.contains_key(&c.path)) {
            // A file the app was creating: there now, or not.
            let found = content(&image, &change.path);
            assert!(
                found.is_none() || found == change.after,
                "run {run}: {} holds {found:?}",
                change.path
            );
            if found.is_some() {
                held.insert(change.path, found);
            }
        }
    }
    assert!(
        flushed_changes > RUNS,
        "only {flushed_changes} flushed changes in {RUNS} runs: the kills came too early"
    );
    eprintln!(
        "{target}: {RUNS} kills, {flushed_changes} flushed changes, {torn_flushes} kills after a \
         flush the app had not reported, {replays} journals replayed ({recovered_sectors} sectors)"
    );
}

#[test]
fn unix_files_survive_kills_whole() {
    nothing_lost("unix");
}

#[test]
fn hvt_files_survive_kills_whole() {
    nothing_lost("hvt");
}
