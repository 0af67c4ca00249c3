//! Host failures become statuses and the device goes on: a file on a full tmpfs (`ENOSPC`) and a
//! loop device whose backing file sits on one (a failed write-back: `EIO`). Both need root, to
//! mount the tmpfs and attach the loop device, and remove what they made.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Buffer, discard, flush, read, request, run, write};
use fata_blockfile::{BlockFile, Mode, Op, Request, Status};

const MIB: u64 = 1 << 20;

/// A 1 MiB tmpfs mounted on a temporary directory, unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts it; `None` (after [`fata_testkit::missing`]) where this user cannot mount.
    #[track_caller]
    fn mount() -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=1M", "tmpfs"])
            .arg(dir.path())
            .output();
        match out {
            Ok(out) if out.status.success() && !fata_testkit::pretends_missing("mount") => {
                Some(Tmpfs { dir })
            }
            out => {
                let why = match out {
                    Ok(out) => String::from_utf8_lossy(&out.stderr).trim().to_string(),
                    Err(e) => e.to_string(),
                };
                fata_testkit::missing(
                    &format!("a small tmpfs of its own (`mount -t tmpfs` failed: {why})"),
                    "run the tests as root",
                );
                None
            }
        }
    }

    /// A sparse file of `len` bytes on it.
    fn file(&self, name: &str, len: u64) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::File::create(&path).unwrap().set_len(len).unwrap();
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// A loop device attached to a file, detached on drop (with the journal a device beside it makes).
struct Loop {
    device: PathBuf,
}

impl Loop {
    #[track_caller]
    fn attach(backing: &Path) -> Option<Loop> {
        if !fata_testkit::program("losetup", "mount") {
            return None;
        }
        let out = Command::new("losetup")
            .args(["--find", "--show"])
            .arg(backing)
            .output()
            .unwrap();
        if !out.status.success() {
            fata_testkit::missing(
                &format!(
                    "a loop device (`losetup --find` failed: {})",
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
                "run the tests as root on a kernel with loop devices",
            );
            return None;
        }
        let device = String::from_utf8(out.stdout).unwrap().trim().to_string();
        Some(Loop {
            device: device.into(),
        })
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(fata_blockfile::journal_path(&self.device));
        let _ = Command::new("losetup").arg("-d").arg(&self.device).status();
    }
}

#[test]
fn a_full_file_system_gives_no_space_for_those_writes_and_the_device_goes_on() {
    let Some(tmpfs) = Tmpfs::mount() else {
        return;
    };
    let path = tmpfs.file("disk.img", 8 * MIB);
    let mut file = BlockFile::open(&path, Mode::ReadWrite).unwrap();
    // 16 writes of 256 KiB, together: 4 MiB for a 1 MiB file system.
    let mut buffers: Vec<Buffer> = (0..16).map(|i| Buffer::pattern(256 << 10, i)).collect();
    let requests: Vec<Request> = buffers
        .iter_mut()
        .enumerate()
        .map(|(i, b)| request(i as u64, Op::Write { grouped: false }, i as u64 * 512, b))
        .collect();
    // SAFETY: the buffers outlive the requests, which complete inside `run`.
    let done = unsafe { run(&mut file, &requests) };
    let full = done.iter().filter(|&&(_, s)| s == Status::NoSpace).count();
    let ok = done.iter().filter(|&&(_, s)| s == Status::Ok).count();
    assert!(full > 0 && ok > 0 && full + ok == 16, "{done:?}");
    let written = done.iter().find(|&&(_, s)| s == Status::Ok).unwrap().0;
    let back = read(&mut file, written * 512, 256 << 10);
    assert!(back.as_slice() == buffers[written as usize].as_slice());

    // Grouped writes wait in memory; the flush cannot write its journal and says so, keeping
    // them for a later flush, which succeeds once there is room.
    let mut grouped = Buffer::pattern(256 << 10, 99);
    assert_eq!(write(&mut file, 8192, &mut grouped, true), Status::Ok);
    // SAFETY: a flush carries no buffer.
    assert_eq!(unsafe { common::one(&mut file, flush(1)) }, Status::NoSpace);
    let back = read(&mut file, 8192, 256 << 10);
    assert!(back.as_slice() == grouped.as_slice(), "still seen by reads");
    // SAFETY: a discard and a flush carry no buffer.
    let done = unsafe { run(&mut file, &[discard(2, 0, 8192), flush(3)]) };
    assert_eq!(done, [(2, Status::Ok), (3, Status::Ok)]);
    let on_disk = std::fs::read(&path).unwrap();
    assert!(on_disk[8192 * 512..8192 * 512 + (256 << 10)] == *grouped.as_slice());
    assert!(on_disk[..4 * MIB as usize].iter().all(|&b| b == 0));
    drop(file);
}

#[test]
fn a_loop_device_on_a_full_file_system_fails_writes_and_flushes_but_serves_reads() {
    let Some(tmpfs) = Tmpfs::mount() else {
        return;
    };
    let backing = tmpfs.file("backing.img", 8 * MIB);
    let Some(device) = Loop::attach(&backing) else {
        return;
    };
    let mut file = BlockFile::open(&device.device, Mode::ReadWrite).unwrap();
    assert_eq!(file.sectors(), 8 * MIB / 512, "a block device's size");
    // Direct writes reach the backing file at once: the loop driver passes on ENOSPC.
    let mut direct: Vec<Buffer> = (0..8).map(|i| Buffer::pattern(256 << 10, i)).collect();
    let requests: Vec<Request> = direct
        .iter_mut()
        .enumerate()
        .map(|(i, b)| request(i as u64, Op::Write { grouped: false }, i as u64 * 512, b))
        .collect();
    // SAFETY: the buffers outlive the requests, which complete inside `run`.
    let done = unsafe { run(&mut file, &requests) };
    assert!(done.iter().any(|&(_, s)| s == Status::NoSpace), "{done:?}");
    let (written, _) = *done
        .iter()
        .find(|&&(_, s)| s == Status::Ok)
        .expect("the first writes fit");
    assert!(file.stats().direct > 0, "{:?}", file.stats());
    // Writes through the page cache succeed, and the flush that writes them back fails with EIO.
    let mut backing_buffer = Buffer::new((64 << 10) + 8, 7);
    let unaligned = Request {
        tag: 20,
        op: Op::Write { grouped: false },
        sector: 12288,
        len: 64 << 10,
        // SAFETY: 8 bytes into a buffer of 64 KiB + 8.
        buf: unsafe { backing_buffer.ptr().add(8) },
    };
    // SAFETY: `backing_buffer` outlives the requests, which complete inside `run`.
    let done = unsafe { run(&mut file, &[unaligned, flush(21)]) };
    assert_eq!(done, [(20, Status::Ok), (21, Status::IoError)]);
    // The device goes on: what did reach the disk reads back.
    let back = read(&mut file, written * 512, 256 << 10);
    assert!(back.as_slice() == direct[written as usize].as_slice());
    drop(file);
}
