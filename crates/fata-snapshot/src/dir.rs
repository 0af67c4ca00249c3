//! A snapshot directory on the host: its state file written atomically and read back, its
//! memory file opened for mapping.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::codec::{FormatError, decode, encode};
use crate::{MEMORY_FILE, STATE_FILE, Snapshot};

/// Why a snapshot directory cannot be written or read.
#[derive(Debug, Error)]
pub enum SnapshotError {
    /// A file of the snapshot is missing.
    #[error(
        "cannot open {}: {source}; is {} a snapshot made by `fata snapshot`?",
        path.display(),
        dir.display()
    )]
    Missing {
        /// The snapshot directory.
        dir: PathBuf,
        /// The missing file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A file of the snapshot exists but cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A file of the snapshot cannot be written.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The state file is not a snapshot this fata reads.
    #[error("{}: {source}", path.display())]
    Format {
        /// The state file.
        path: PathBuf,
        /// What is wrong with it.
        source: FormatError,
    },
    /// The memory file is not as long as the snapshot's guest memory.
    #[error(
        "{} is {len} bytes, and the snapshot's guest has {mem_bytes} bytes of memory: the memory \
         file was cut short or replaced; copy it again or take a new snapshot",
        path.display()
    )]
    MemoryLength {
        /// The memory file.
        path: PathBuf,
        /// Its length.
        len: u64,
        /// The snapshot's [`Snapshot::mem_bytes`].
        mem_bytes: u64,
    },
    /// A snapshot that fails [`Snapshot::validate`] was given to [`write_state`].
    #[error("refusing to write a snapshot that could not be restored: {0}")]
    Invalid(FormatError),
}

/// Writes `snapshot` as `dir`'s state file, atomically: a temporary file, flushed to disk,
/// renamed over [`STATE_FILE`], then `dir` and its parent flushed. Write the memory file first
/// ([`crate::MemoryWriter`]): once the state file is there, the whole snapshot survives a crash.
pub fn write_state(dir: &Path, snapshot: &Snapshot) -> Result<(), SnapshotError> {
    snapshot.validate().map_err(SnapshotError::Invalid)?;
    let path = dir.join(STATE_FILE);
    let temporary = dir.join(format!("{STATE_FILE}.tmp"));
    let write = |path: &Path| {
        let path = path.to_owned();
        move |source| SnapshotError::Write { path, source }
    };
    let mut file = File::create(&temporary).map_err(write(&temporary))?;
    file.write_all(&encode(snapshot))
        .and_then(|()| file.sync_all())
        .map_err(write(&temporary))?;
    fs::rename(&temporary, &path).map_err(write(&path))?;
    sync_dir(dir).map_err(write(dir))?;
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        sync_dir(parent).map_err(write(parent))?;
    }
    Ok(())
}

/// Reads and decodes `dir`'s state file.
pub fn read_state(dir: &Path) -> Result<Snapshot, SnapshotError> {
    let path = dir.join(STATE_FILE);
    let bytes = fs::read(&path).map_err(|source| open_error(dir, &path, source))?;
    decode(&bytes).map_err(|source| SnapshotError::Format { path, source })
}

/// Opens `dir`'s memory file for reading, checked to be as long as `snapshot`'s guest memory so
/// the whole of a mapping of it is backed (no `SIGBUS` past its end).
pub fn open_memory(dir: &Path, snapshot: &Snapshot) -> Result<File, SnapshotError> {
    let path = dir.join(MEMORY_FILE);
    let file = File::open(&path).map_err(|source| open_error(dir, &path, source))?;
    let len = file
        .metadata()
        .map_err(|source| SnapshotError::Read {
            path: path.clone(),
            source,
        })?
        .len();
    if len != snapshot.mem_bytes {
        return Err(SnapshotError::MemoryLength {
            path,
            len,
            mem_bytes: snapshot.mem_bytes,
        });
    }
    Ok(file)
}

fn open_error(dir: &Path, path: &Path, source: io::Error) -> SnapshotError {
    let path = path.to_owned();
    if matches!(
        source.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    ) {
        SnapshotError::Missing {
            dir: dir.to_owned(),
            path,
            source,
        }
    } else {
        SnapshotError::Read { path, source }
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}
