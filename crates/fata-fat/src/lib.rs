//! FAT file systems for Fata apps: FAT12, FAT16 and FAT32 over a [`fata::BlockDevice`], read and
//! write, with long names and nested directories, consistent whenever the host dies.
//!
//! This is a library above the app API (`fata`), like `fata-net`: an app takes its block device
//! from the [`Env`](fata::Env) and mounts it.
//!
//! ```no_run
//! # async fn app(mut env: fata::Env) -> Result<(), fata_fat::Error> {
//! let disk = env.take_block("storage").expect("fata run --block storage=disk.img");
//! let fs = fata_fat::FatFs::mount(disk).await?;
//! fs.create_dir("/logs").await?;
//! fs.write("/logs/First day.txt", b"hello\n").await?;
//! fs.append("/logs/First day.txt", b"world\n").await?;
//! fs.flush().await?; // durable from here on
//! for entry in fs.list("/logs").await? {
//!     fata::println!("{} {}", entry.name, entry.size);
//! }
//! # Ok(()) }
//! ```
//!
//! The file system code is hadris-fat's (async, no_std); this crate gives it the device's bytes
//! through a page cache (module `disk`), checks the boot sector before hadris-fat sees it
//! (module `layout`), checks directories and cluster chains before an operation follows them, and
//! makes each operation all-or-nothing:
//!
//! - Changes stay in memory while an operation runs. One that fails (a device error, a full
//!   disk, corruption found half way) is undone and the file system is as before it.
//! - Changes of finished operations reach the device only as grouped writes, which the device
//!   applies at its next flush all together or not at all (the host journals them). So after a
//!   crash the disk holds the file system as it was at some flush: every operation before that
//!   flush, whole, and nothing after it.
//! - [`FatFs::flush`] returns once everything before it is durable.
//!
//! Operations take turns (a [`FatFs`] may be cloned and shared between tasks). A write or append
//! larger than [`STEP`] is carried out in steps of that size, each whole; a crash or error in the
//! middle leaves the file with the steps done so far, and a file system that is consistent.
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;

mod clock;
mod disk;
mod fs;
mod layout;
pub mod memory;
mod sync;

pub use clock::DateTime;
pub use fs::{DirEntry, FatFs, Metadata, STEP};
pub use layout::Kind;
pub use memory::MemoryBlock;

use core::fmt;

use fata::DeviceError;

/// What a file system operation can fail with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// No file or directory has that name.
    NotFound,
    /// A file or directory of that name exists already.
    Exists,
    /// A part of the path before the last is a file, or a directory was asked for and the path
    /// names a file.
    NotADirectory,
    /// A file was asked for and the path names a directory.
    IsADirectory,
    /// The directory to remove still holds files or directories.
    NotEmpty,
    /// The path or a name in it cannot be used (empty, `..`, a character FAT forbids such as
    /// `*?:<>|"\`, longer than 255 characters).
    InvalidName,
    /// No free cluster is left on the volume.
    NoSpace,
    /// The FAT12/FAT16 root directory has no free entry left (it has a fixed size).
    DirectoryFull,
    /// The device is read-only.
    ReadOnly,
    /// The device holds no FAT file system (no boot signature, or a boot sector that is not
    /// FAT's).
    NotFat,
    /// The file system's structures contradict each other or the device (a FAT chain that loops
    /// or leaves the volume, an entry pointing past the end).
    Corrupt,
    /// A valid FAT volume this crate does not handle (64 KiB clusters, FAT32 with one active
    /// FAT, a device sector size above 4096 bytes).
    Unsupported,
    /// The device failed a request.
    Device(DeviceError),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NotFound => f.write_str("no such file or directory"),
            Error::Exists => f.write_str("a file or directory of that name exists"),
            Error::NotADirectory => f.write_str("not a directory"),
            Error::IsADirectory => f.write_str("is a directory"),
            Error::NotEmpty => f.write_str("the directory is not empty: remove what it holds first"),
            Error::InvalidName => f.write_str(
                "invalid name: empty, `..`, longer than 255 characters or with one of \\ / : * ? \" < > |",
            ),
            Error::NoSpace => f.write_str("the file system is full"),
            Error::DirectoryFull => f.write_str(
                "the root directory is full (FAT12/16 roots have a fixed size): use a subdirectory",
            ),
            Error::ReadOnly => f.write_str("the disk is read-only"),
            Error::NotFat => f.write_str(
                "the disk holds no FAT file system: make one with mkfs.fat or `fata disk create`",
            ),
            Error::Corrupt => f.write_str(
                "the FAT file system is corrupt: check it on the host with fsck.fat",
            ),
            Error::Unsupported => f.write_str(
                "this FAT volume is not supported (64 KiB clusters, an unmirrored FAT32): \
                 make it with mkfs.fat's defaults",
            ),
            Error::Device(error) => write!(f, "disk error: {error}"),
        }
    }
}

impl core::error::Error for Error {}
