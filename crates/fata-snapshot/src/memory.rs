//! The memory file: guest pages written at their offsets into a sparse file, and checked back.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::Extent;
use crate::codec::{FormatError, PAGE};

/// Writes a snapshot's memory file: runs of guest memory, in ascending order, each at its guest
/// offset in a file as long as guest RAM, holes elsewhere. Runs that meet merge into one
/// [`Extent`], whose CRC-32C [`MemoryWriter::finish`] returns.
#[derive(Debug)]
pub struct MemoryWriter {
    file: File,
    mem_bytes: u64,
    extents: Vec<Extent>,
}

impl MemoryWriter {
    /// Creates (or empties) the file at `path`, `mem_bytes` long and all holes.
    pub fn create(path: &Path, mem_bytes: u64) -> io::Result<MemoryWriter> {
        let file = File::create(path)?;
        file.set_len(mem_bytes)?;
        Ok(MemoryWriter {
            file,
            mem_bytes,
            extents: Vec::new(),
        })
    }

    /// Writes `bytes`, guest memory from guest-physical `offset`: whole 4 KiB pages, inside guest
    /// memory, after every run written before. An empty run writes nothing.
    ///
    /// A run breaking those rules is an [`io::ErrorKind::InvalidInput`] error and writes nothing.
    pub fn write(&mut self, offset: u64, bytes: &[u8]) -> io::Result<()> {
        let len = bytes.len() as u64;
        if len == 0 {
            return Ok(());
        }
        let end = self.extents.last().map_or(0, |e| e.offset + e.len);
        let invalid = |why: &str| {
            Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("guest memory run of {len} bytes at {offset:#x} {why}"),
            ))
        };
        if !offset.is_multiple_of(PAGE) || !len.is_multiple_of(PAGE) {
            return invalid("is not whole 4 KiB pages");
        }
        if offset < end {
            return invalid(&format!(
                "is not after the last run, which ended at {end:#x}"
            ));
        }
        if offset
            .checked_add(len)
            .is_none_or(|run_end| run_end > self.mem_bytes)
        {
            return invalid(&format!(
                "ends past guest memory ({} bytes)",
                self.mem_bytes
            ));
        }
        self.file.write_all_at(bytes, offset)?;
        match self.extents.last_mut() {
            Some(last) if offset == end => {
                last.len += len;
                last.crc = crc32c::crc32c_append(last.crc, bytes);
            }
            _ => self.extents.push(Extent {
                offset,
                len,
                crc: crc32c::crc32c(bytes),
            }),
        }
        Ok(())
    }

    /// Makes the file durable (`fsync`) and returns its extents, for [`crate::Snapshot::memory`].
    pub fn finish(self) -> io::Result<Vec<Extent>> {
        self.file.sync_all()?;
        Ok(self.extents)
    }
}

/// The piece of a memory file [`verify_file_extents`] reads at a time.
const VERIFY_PIECE: usize = 64 * 1024;

/// Checks each extent's CRC-32C against the memory file `file` itself, read in 64 KiB pieces.
///
/// On restore this is cheaper than reading the guest's mapping of the file: that would fault in
/// every page of every extent, and a buffer as large as the largest extent would be fresh pages
/// to fault in too. The outer error is a failed read; the inner one an extent whose bytes
/// changed ([`FormatError::CorruptMemory`]) or that ends past the file.
pub fn verify_file_extents(file: &File, extents: &[Extent]) -> io::Result<Result<(), FormatError>> {
    let len = file.metadata()?.len();
    let mut piece = vec![0u8; VERIFY_PIECE];
    for extent in extents {
        let corrupt = FormatError::CorruptMemory {
            offset: extent.offset,
            len: extent.len,
        };
        let Some(end) = extent
            .offset
            .checked_add(extent.len)
            .filter(|&end| end <= len)
        else {
            return Ok(Err(FormatError::Malformed(format!(
                "memory extent ({} bytes at {:#x}) ends past the memory file ({len} bytes)",
                extent.len, extent.offset
            ))));
        };
        let mut crc = 0;
        let mut at = extent.offset;
        while at < end {
            let n = (end - at).min(VERIFY_PIECE as u64) as usize;
            file.read_exact_at(&mut piece[..n], at)?;
            crc = crc32c::crc32c_append(crc, &piece[..n]);
            at += n as u64;
        }
        if crc != extent.crc {
            return Ok(Err(corrupt));
        }
    }
    Ok(Ok(()))
}

/// Checks each extent's CRC-32C against `memory`, a memory file's bytes (a diff snapshot's,
/// read whole).
///
/// An extent past `memory`'s end is [`FormatError::Malformed`]; one whose bytes changed is
/// [`FormatError::CorruptMemory`].
pub fn verify_extents(memory: &[u8], extents: &[Extent]) -> Result<(), FormatError> {
    for extent in extents {
        let bytes = usize::try_from(extent.offset)
            .ok()
            .zip(usize::try_from(extent.len).ok())
            .and_then(|(offset, len)| memory.get(offset..offset.checked_add(len)?))
            .ok_or_else(|| {
                FormatError::Malformed(format!(
                    "memory extent ({} bytes at {:#x}) ends past the memory file ({} bytes)",
                    extent.len,
                    extent.offset,
                    memory.len()
                ))
            })?;
        if crc32c::crc32c(bytes) != extent.crc {
            return Err(FormatError::CorruptMemory {
                offset: extent.offset,
                len: extent.len,
            });
        }
    }
    Ok(())
}
