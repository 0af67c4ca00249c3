//! Snapshot directories on the host side: writing one from a frozen guest (on the control
//! thread, while the vCPU thread waits) and loading one into guest RAM for a restore.

use crate::mailbox::{Freeze, Mailbox, Verdict};
use crate::memory::GuestRam;
use crate::vm::DirtyLog;
use fata_control::{Reply, Request};
use fata_hvt_abi::{GuestAddr, PAGE_SIZE};
use fata_snapshot::{
    Extent, FormatError, ImageIdentity, MEMORY_FILE, MemoryWriter, Parent, Snapshot, SnapshotError,
};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::mpsc;
use std::time::Instant;

/// What the control thread needs to write snapshots of one guest.
pub struct Saver<'ram> {
    /// The guest's RAM.
    pub ram: &'ram GuestRam,
    /// Its dirty-page log, running once the run has a snapshot to take diffs over.
    pub dirty: DirtyLog<'ram>,
    /// The image it runs.
    pub image: PathBuf,
    /// The snapshot a diff would build on: the last one taken in this run, or the one the
    /// guest was restored from. While there is one, the dirty log runs.
    pub last: Mutex<Option<Parent>>,
}

impl Saver<'_> {
    /// Freezes the guest (through the vCPU thread), writes it to `dir`, and lets it carry on
    /// (or ends it, with `stop`); the reply says what was written or why not.
    pub fn save(&self, mailbox: &Mailbox, dir: &Path, stop: bool, diff: bool) -> Reply {
        match self.try_save(mailbox, dir, stop, diff) {
            Ok(message) => Reply::Done { message },
            Err(message) => Reply::Failed { message },
        }
    }

    fn try_save(
        &self,
        mailbox: &Mailbox,
        dir: &Path,
        stop: bool,
        diff: bool,
    ) -> Result<String, String> {
        let parent = self.last.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if diff && parent.is_none() {
            return Err(
                "no earlier snapshot of this run to take a diff over: take a full snapshot \
                 first (without --diff)"
                    .to_string(),
            );
        }
        prepare_dir(dir)?;
        let identity = image_identity(&self.image);
        let request = Request::Snapshot {
            dir: dir.to_path_buf(),
            stop,
            diff,
        };
        let (mut snapshot, verdict, _answers) = freeze(mailbox, request)?;
        let still = Instant::now();
        let outcome = self.write_frozen(dir, &mut snapshot, identity, parent.filter(|_| diff));
        // However the writing went, the guest must not stay frozen: a failed snapshot lets it
        // carry on even with --stop.
        let (verdict_now, reply) = match outcome {
            Ok(written) => {
                let verdict_now = if stop {
                    Verdict::End(format!("saved to {}", dir.display()))
                } else {
                    Verdict::CarryOn
                };
                let reply = format!(
                    "saved to {} ({:.1} MiB of memory in {} extents{}); the guest stood still \
                     {:.1} ms{}",
                    dir.display(),
                    written.memory_bytes as f64 / f64::from(1 << 20),
                    written.extents,
                    if diff { ", over its parent" } else { "" },
                    still.elapsed().as_secs_f64() * 1e3,
                    if stop { " and has ended" } else { "" },
                );
                (verdict_now, Ok(reply))
            }
            Err(e) => (Verdict::CarryOn, Err(e)),
        };
        // The vCPU thread is waiting for this; if it is gone, so is the guest.
        let _ = verdict.send(verdict_now);
        reply
    }

    /// Writes the memory of the frozen guest and its state; notes the snapshot as the parent of
    /// the next diff and keeps the dirty log running for it.
    fn write_frozen(
        &self,
        dir: &Path,
        snapshot: &mut Snapshot,
        image: ImageIdentity,
        parent: Option<Parent>,
    ) -> Result<Written, String> {
        let failed = |e: &dyn std::fmt::Display| format!("cannot write the snapshot: {e}");
        let was_logging = self
            .last
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some();
        let ranges = if parent.is_some() {
            let dirty = self.dirty.take().map_err(|e| failed(&e))?;
            dirty_ranges(&[&dirty])
        } else {
            if was_logging {
                self.dirty.take().map_err(|e| failed(&e))?;
            } else {
                self.dirty.start().map_err(|e| failed(&e))?;
            }
            self.ram.touched().map_err(|e| failed(&e))?
        };
        snapshot.image = image;
        snapshot.parent = parent;
        let written = write(dir, self.ram, &ranges, snapshot.clone()).map_err(|e| failed(&e))?;
        let state = dir.join(fata_snapshot::STATE_FILE);
        let crc = std::fs::read(&state)
            .map_err(|e| failed(&e))
            .and_then(|bytes| fata_snapshot::state_crc(&bytes).map_err(|e| failed(&e)))?;
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(Parent {
            dir: dir.display().to_string(),
            state_crc: crc,
        });
        Ok(written)
    }
}

/// How many pre-copy rounds a migration makes at most before it stops the guest.
const MAX_ROUNDS: usize = 10;
/// A round that leaves at most this many dirty pages ends the pre-copy: sending them with the
/// guest stopped takes well under a millisecond.
const STOP_AT_PAGES: usize = 512;

impl Saver<'_> {
    /// Moves the guest to the `fata receive` at `to`: pre-copy rounds while it runs (all the
    /// pages it touched, then those it wrote since, from the dirty log), then a freeze, the last
    /// pages and its state. Once the receiver says the guest runs there, it ends here; if
    /// anything fails before that, it carries on here. `progress` hears of each round.
    pub fn migrate(&self, mailbox: &Mailbox, to: &str, progress: &mut dyn FnMut(String)) -> Reply {
        let logging = self
            .last
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some();
        let result = self.try_migrate(mailbox, to, progress, logging);
        if !logging {
            // Back to full speed for a guest that stays; one that left does not care.
            let _ = self.dirty.stop();
        }
        match result {
            Ok(message) => Reply::Done { message },
            Err(message) => Reply::Failed {
                message: format!("{message}; the guest carries on here"),
            },
        }
    }

    fn try_migrate(
        &self,
        mailbox: &Mailbox,
        to: &str,
        progress: &mut dyn FnMut(String),
        logging: bool,
    ) -> Result<String, String> {
        use std::io::Write;
        use std::net::ToSocketAddrs;
        let started = Instant::now();
        let addr = (to.to_socket_addrs().map_err(|e| format!("{to}: {e}"))?)
            .next()
            .ok_or_else(|| format!("{to} names no address"))?;
        let stream = std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(5))
            .map_err(|e| {
                format!(
                    "cannot connect to {to}: {e}; is `fata receive --listen {to}` waiting there?"
                )
            })?;
        let sent = |e: std::io::Error| format!("sending to {to} failed: {e}");
        stream.set_nodelay(true).map_err(sent)?;
        let mut out = std::io::BufWriter::with_capacity(1 << 20, stream.try_clone().map_err(sent)?);
        fata_snapshot::send_hello(
            &mut out,
            fata_snapshot::Hello {
                mem_bytes: self.ram.size(),
            },
        )
        .map_err(sent)?;
        if logging {
            self.dirty.take().map_err(|e| e.to_string())?;
        } else {
            self.dirty.start().map_err(|e| e.to_string())?;
        }
        let mut ranges = self.ram.touched().map_err(|e| e.to_string())?;
        let mut total = 0u64;
        let mut rounds = 0;
        loop {
            let bytes = self.send_ranges(&mut out, &ranges).map_err(sent)?;
            out.flush().map_err(sent)?;
            total += bytes;
            rounds += 1;
            progress(format!(
                "round {rounds}: sent {} pages ({:.1} MiB) while the guest ran",
                bytes / PAGE_SIZE,
                bytes as f64 / f64::from(1 << 20)
            ));
            let dirty = self.dirty.take().map_err(|e| e.to_string())?;
            ranges = dirty_ranges(&[&dirty]);
            let pages: u64 = ranges.iter().map(|r| (r.end - r.start) / PAGE_SIZE).sum();
            if pages as usize <= STOP_AT_PAGES || rounds >= MAX_ROUNDS {
                break;
            }
        }
        // Stop-and-copy: freeze the guest, send what it wrote since the last round and its state.
        let (mut snapshot, verdict, _answers) =
            freeze(mailbox, Request::Migrate { to: to.to_string() })?;
        let still = Instant::now();
        let last = (|| -> Result<u64, String> {
            let dirty = self.dirty.take().map_err(|e| e.to_string())?;
            ranges.extend(dirty_ranges(&[&dirty]));
            ranges.sort_by_key(|r| r.start);
            let bytes = self.send_ranges(&mut out, &merge(&ranges)).map_err(sent)?;
            snapshot.image = image_identity(&self.image);
            fata_snapshot::send_state(&mut out, &snapshot).map_err(sent)?;
            out.flush().map_err(sent)?;
            let mut answer = [0u8; 1];
            let mut input = &stream;
            input
                .set_read_timeout(Some(std::time::Duration::from_secs(30)))
                .map_err(sent)?;
            std::io::Read::read_exact(&mut input, &mut answer)
                .map_err(|e| format!("{to} did not say whether the guest runs there: {e}"))?;
            if answer[0] != fata_snapshot::ARRIVED {
                return Err(format!(
                    "{to} could not carry the guest on (its `fata receive` says why)"
                ));
            }
            Ok(bytes)
        })();
        let stood_still = still.elapsed();
        match last {
            Ok(bytes) => {
                let _ = verdict.send(Verdict::End(format!("moved to {to}")));
                Ok(format!(
                    "moved to {to}: {rounds} rounds while it ran ({:.1} MiB), then {} pages with the guest stopped for {:.1} ms; {:.0} ms in all",
                    total as f64 / f64::from(1 << 20),
                    bytes / PAGE_SIZE,
                    stood_still.as_secs_f64() * 1e3,
                    started.elapsed().as_secs_f64() * 1e3
                ))
            }
            Err(e) => {
                let _ = verdict.send(Verdict::CarryOn);
                Err(e)
            }
        }
    }

    /// Sends the pages of `ranges`; returns the bytes sent.
    fn send_ranges(
        &self,
        out: &mut impl std::io::Write,
        ranges: &[Range<u64>],
    ) -> std::io::Result<u64> {
        copy_out(self.ram, ranges, |at, bytes| {
            fata_snapshot::send_pages(out, at, bytes)
        })
    }
}

/// Sorted ranges merged where they overlap or touch.
/// Posts `request` with a freeze and waits until the vCPU thread has frozen the guest: returns
/// what it captured, the channel for the verdict that ends the freeze, and the request's replies
/// (kept open until the verdict is sent).
fn freeze(
    mailbox: &Mailbox,
    request: Request,
) -> Result<(Snapshot, mpsc::Sender<Verdict>, mpsc::Receiver<Reply>), String> {
    let (frozen, frozen_here) = mpsc::channel();
    let (verdict, verdict_there) = mpsc::channel();
    let answers = mailbox.post(
        request,
        Some(Freeze {
            frozen,
            verdict: verdict_there,
        }),
    );
    let snapshot = frozen_here
        .recv()
        .map_err(|_| "the guest ended before it could be frozen".to_string())??;
    Ok((snapshot, verdict, answers))
}

fn merge(sorted: &[Range<u64>]) -> Vec<Range<u64>> {
    let mut merged: Vec<Range<u64>> = Vec::new();
    for range in sorted {
        match merged.last_mut() {
            Some(last) if range.start <= last.end => last.end = last.end.max(range.end),
            _ => merged.push(range.clone()),
        }
    }
    merged
}

/// The image's path, length and SHA-256, as they are now (empty when it cannot be read: the
/// identity only informs).
fn image_identity(path: &Path) -> ImageIdentity {
    use sha2::Digest;
    let bytes = std::fs::read(path).unwrap_or_default();
    ImageIdentity {
        path: path.display().to_string(),
        len: bytes.len() as u64,
        sha256: sha2::Sha256::digest(&bytes).into(),
    }
}

/// The most bytes copied out of guest RAM at once while writing a memory file.
const COPY_CHUNK: u64 = 1 << 20;

/// What a written snapshot holds.
#[derive(Debug, Clone, Copy)]
pub struct Written {
    /// Bytes of guest memory in its memory file.
    pub memory_bytes: u64,
    /// Extents (runs of pages) written.
    pub extents: usize,
}

/// Makes `dir` ready for a snapshot: created if missing, refused if it holds anything.
pub fn prepare_dir(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| {
        format!(
            "cannot create the snapshot directory {}: {e}",
            dir.display()
        )
    })?;
    let mut entries = std::fs::read_dir(dir)
        .map_err(|e| format!("cannot read the snapshot directory {}: {e}", dir.display()))?;
    if entries.next().is_some() {
        return Err(format!(
            "{} is not empty: give a new directory (a snapshot is never written over another)",
            dir.display()
        ));
    }
    Ok(())
}

/// Writes the pages `ranges` of `ram` as the memory file of `dir`, then `frozen` (with those
/// extents) as its state file, each made durable before this returns.
pub fn write(
    dir: &Path,
    ram: &GuestRam,
    ranges: &[Range<u64>],
    mut frozen: Snapshot,
) -> Result<Written, SnapshotError> {
    let path = dir.join(MEMORY_FILE);
    let failed = |source| SnapshotError::Write {
        path: path.clone(),
        source,
    };
    let mut writer = MemoryWriter::create(&path, ram.size()).map_err(failed)?;
    copy_out(ram, ranges, |at, bytes| writer.write(at, bytes)).map_err(failed)?;
    frozen.memory = writer.finish().map_err(failed)?;
    let written = Written {
        memory_bytes: frozen.memory.iter().map(|e| e.len).sum(),
        extents: frozen.memory.len(),
    };
    fata_snapshot::write_state(dir, &frozen)?;
    Ok(written)
}

/// Hands the pages of `ranges` of `ram` to `to` in chunks of at most [`COPY_CHUNK`] bytes, with
/// their guest addresses; returns the bytes handed over.
fn copy_out(
    ram: &GuestRam,
    ranges: &[Range<u64>],
    mut to: impl FnMut(u64, &[u8]) -> std::io::Result<()>,
) -> std::io::Result<u64> {
    let mut chunk = vec![0u8; COPY_CHUNK as usize];
    let mut copied = 0;
    for range in ranges {
        let mut at = range.start;
        while at < range.end {
            let len = (range.end - at).min(COPY_CHUNK);
            let bytes = &mut chunk[..len as usize];
            ram.read(GuestAddr(at), bytes)
                .map_err(std::io::Error::other)?;
            to(at, bytes)?;
            at += len;
            copied += len;
        }
    }
    Ok(copied)
}

/// The runs of set bits of page bitmaps (bit `n % 64` of word `n / 64` is page `n`), merged
/// over all of `maps`, as guest-physical ranges.
pub fn dirty_ranges(maps: &[&[u64]]) -> Vec<Range<u64>> {
    let words = maps.iter().map(|m| m.len()).max().unwrap_or(0);
    let mut ranges: Vec<Range<u64>> = Vec::new();
    for word in 0..words {
        let bits = maps
            .iter()
            .fold(0u64, |acc, m| acc | m.get(word).copied().unwrap_or(0));
        if bits == 0 {
            continue;
        }
        for bit in 0..64 {
            if bits & (1 << bit) == 0 {
                continue;
            }
            let addr = (word as u64 * 64 + bit) * PAGE_SIZE;
            match ranges.last_mut() {
                Some(last) if last.end == addr => last.end += PAGE_SIZE,
                _ => ranges.push(addr..addr + PAGE_SIZE),
            }
        }
    }
    ranges
}

/// A snapshot and the chain of snapshots it builds on, root first.
pub struct Chain {
    /// (directory, snapshot), the root (a full snapshot) first, the one asked for last.
    pub layers: Vec<(PathBuf, Snapshot)>,
}

/// How deep a chain of diff snapshots may go.
const MAX_CHAIN: usize = 64;

impl Chain {
    /// Reads the snapshot in `dir` and its parents, checking that each parent is the one the
    /// child was taken over (by its state file's checksum).
    pub fn read(dir: &Path) -> Result<Chain, SnapshotError> {
        let mut layers = Vec::new();
        let mut next = Some((dir.to_path_buf(), None::<u32>));
        while let Some((dir, expected_crc)) = next.take() {
            let snapshot = fata_snapshot::read_state(&dir)?;
            if let Some(expected) = expected_crc {
                let state = dir.join(fata_snapshot::STATE_FILE);
                let bytes = std::fs::read(&state).map_err(|source| SnapshotError::Read {
                    path: state.clone(),
                    source,
                })?;
                let crc =
                    fata_snapshot::state_crc(&bytes).map_err(|source| SnapshotError::Format {
                        path: state.clone(),
                        source,
                    })?;
                if crc != expected {
                    return Err(SnapshotError::Invalid(FormatError::Malformed(format!(
                        "{} changed since a diff snapshot was taken over it: restore a diff \
                         only over the very snapshot it was taken after",
                        dir.display()
                    ))));
                }
            }
            if let Some(parent) = &snapshot.parent {
                if layers.len() >= MAX_CHAIN {
                    return Err(SnapshotError::Invalid(FormatError::Malformed(format!(
                        "more than {MAX_CHAIN} diff snapshots in a chain"
                    ))));
                }
                next = Some((PathBuf::from(&parent.dir), Some(parent.state_crc)));
            }
            layers.push((dir, snapshot));
        }
        layers.reverse();
        let mem = layers[0].1.mem_bytes;
        if let Some((dir, _)) = layers.iter().find(|(_, s)| s.mem_bytes != mem) {
            return Err(SnapshotError::Invalid(FormatError::Malformed(format!(
                "{} has another guest memory size than the snapshot it builds on",
                dir.display()
            ))));
        }
        Ok(Chain { layers })
    }

    /// The snapshot asked for.
    pub fn last(&self) -> &Snapshot {
        &self.layers[self.layers.len() - 1].1
    }

    /// Guest RAM holding the chain's memory: the root's memory file mapped privately (lazily,
    /// shared with other restores until written), each diff's pages copied over it. Every
    /// extent's checksum is checked against the file.
    pub fn load(&self) -> Result<GuestRam, SnapshotError> {
        let (root_dir, root) = &self.layers[0];
        let file = fata_snapshot::open_memory(root_dir, root)?;
        let path = root_dir.join(MEMORY_FILE);
        let ram =
            GuestRam::map_private(&file, root.mem_bytes).map_err(|source| SnapshotError::Read {
                path: path.clone(),
                source,
            })?;
        check_extents(&file, &root.memory, &path)?;
        for (dir, diff) in &self.layers[1..] {
            let file = fata_snapshot::open_memory(dir, diff)?;
            let path = dir.join(MEMORY_FILE);
            copy_extents(&file, &ram, &diff.memory, &path)?;
        }
        Ok(ram)
    }
}

/// Checks the CRC of each extent of the memory file `file` (read as a file: see
/// [`fata_snapshot::verify_file_extents`]).
fn check_extents(
    file: &std::fs::File,
    extents: &[Extent],
    path: &Path,
) -> Result<(), SnapshotError> {
    fata_snapshot::verify_file_extents(file, extents)
        .map_err(|source| SnapshotError::Read {
            path: path.to_path_buf(),
            source,
        })?
        .map_err(|source| SnapshotError::Format {
            path: path.to_path_buf(),
            source,
        })
}

/// Copies each extent of a diff's memory file into `ram`, checking its CRC first.
fn copy_extents(
    file: &std::fs::File,
    ram: &GuestRam,
    extents: &[Extent],
    path: &Path,
) -> Result<(), SnapshotError> {
    use std::os::unix::fs::FileExt;
    let mut chunk = Vec::new();
    for extent in extents {
        chunk.resize(extent.len as usize, 0);
        file.read_exact_at(&mut chunk, extent.offset)
            .map_err(|source| SnapshotError::Read {
                path: path.to_path_buf(),
                source,
            })?;
        let at_zero = Extent {
            offset: 0,
            ..*extent
        };
        fata_snapshot::verify_extents(&chunk, &[at_zero]).map_err(|_| SnapshotError::Format {
            path: path.to_path_buf(),
            source: FormatError::CorruptMemory {
                offset: extent.offset,
                len: extent.len,
            },
        })?;
        ram.write(GuestAddr(extent.offset), &chunk)
            .map_err(|e| SnapshotError::Invalid(FormatError::Malformed(e.to_string())))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dirty_bitmaps_become_ranges() {
        let kvm = [0b1011u64, 0, 1 << 63];
        let monitor = [0b0100u64, 1];
        let p = PAGE_SIZE;
        assert_eq!(
            dirty_ranges(&[&kvm, &monitor]),
            [0..4 * p, 64 * p..65 * p, 191 * p..192 * p]
        );
        assert!(dirty_ranges(&[]).is_empty());
    }
}
