//! FAT disk images on the host, for `fata disk` and for key-value stores given as images.
//!
//! A host-side (std) crate over [hadris-fat](https://docs.rs/hadris-fat) 2.x:
//! - [`create`] makes an image from a host directory: every regular file and directory below
//!   it, with long names. The image is FAT16 below 512 MiB and FAT32 from 512 MiB, the size at
//!   which `mkfs.fat` changes to FAT32, with the smallest clusters FAT16 allows at each size
//!   (512 bytes up to 32 MiB, 1 KiB to 64 MiB, ... 8 KiB below 512 MiB) and 4 KiB clusters for
//!   FAT32 up to 8 GiB, as `mkfs.fat` gives. Without a size it is as large as the files need
//!   plus headroom (a quarter more, at least 1 MiB of free space), at least 4 MiB; a size that
//!   cannot hold the files is refused with the smallest that can.
//! - [`Image`] reads an image, made here or by `mkfs.fat` and `mcopy` (FAT12, FAT16, FAT32):
//!   [`Image::entries`] walks every directory, [`Image::copy`] streams one file out, and
//!   [`Image::key_values`] reads every file as a key-value pair whose key is its `/`-separated
//!   path, as the directory key-value stores of `fata run --kv` key their files.
//!
//! An image is untrusted input: a damaged one gives [`Error::NotFat`] or [`Error::Corrupt`],
//! never a panic or a hang. Directory loops and cross-linked directories are refused, and the
//! files of an image may claim no more bytes than the image holds, so a reader's memory is
//! bounded by the image's size. The fuzz target `fat_image` walks and reads arbitrary bytes.
#![forbid(unsafe_code)]

mod create;
mod image;
mod oem;
mod size;

use std::io;
use std::path::PathBuf;

use thiserror::Error;

pub use create::{CreateOptions, Created, Progress, create};
pub use image::{Entry, Image, Info};
pub use size::{format_size, parse_size};

/// Images from this size on are FAT32, as `mkfs.fat` makes them; smaller ones are FAT16.
pub const FAT32_FROM: u64 = 512 << 20;

/// The smallest image [`create`] makes: the smallest FAT16 volume.
pub const SMALLEST_IMAGE: u64 = 4 << 20;

/// The largest image [`create`] makes: FAT32's limit with 512-byte sectors.
pub const LARGEST_IMAGE: u64 = 2 << 40;

/// The largest file FAT holds: its sizes are 32-bit.
pub const FILE_MAX: u64 = u32::MAX as u64;

/// The FAT variant of an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FatKind {
    /// 12-bit cluster numbers (small images `mkfs.fat` makes; read, never made here).
    Fat12,
    /// 16-bit cluster numbers.
    Fat16,
    /// 32-bit cluster numbers.
    Fat32,
}

impl std::fmt::Display for FatKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FatKind::Fat12 => "FAT12",
            FatKind::Fat16 => "FAT16",
            FatKind::Fat32 => "FAT32",
        })
    }
}

/// Why an image cannot be made or read; each message says what to do.
#[derive(Debug, Error)]
pub enum Error {
    /// A host file or directory cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    ReadHost {
        /// What could not be read.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The source of an image is not a directory.
    #[error("{} is not a directory: give the directory whose files the image should hold", .0.display())]
    NotADirectory(PathBuf),
    /// A host name FAT cannot hold.
    #[error("{}: FAT cannot hold this name ({why}): rename it", path.display())]
    Name {
        /// The file or directory.
        path: PathBuf,
        /// What is wrong with its name.
        why: &'static str,
    },
    /// Two names in one directory that FAT takes for the same one.
    #[error(
        "{} and {} differ only in letter case, which FAT does not tell apart: rename one",
        first.display(),
        second.display()
    )]
    CaseClash {
        /// One of them.
        first: PathBuf,
        /// The other.
        second: PathBuf,
    },
    /// A host file larger than FAT can hold.
    #[error(
        "{} is {size} bytes, and a FAT file holds at most {FILE_MAX} (4 GiB less one byte): \
         split it or leave it out",
        path.display()
    )]
    FileTooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
    },
    /// The size asked for cannot hold the files.
    #[error(
        "an image of {} cannot hold these files; the smallest that can is {}: give --size {} or \
         leave --size out to size the image to fit",
        format_size(*size),
        format_size(*smallest),
        format_size(*smallest)
    )]
    TooSmall {
        /// The size asked for.
        size: u64,
        /// The smallest size that holds the files.
        smallest: u64,
    },
    /// No FAT image can hold the files, or the size asked for is beyond FAT32.
    #[error(
        "{what}: the largest FAT32 image is {}; leave some files out",
        format_size(LARGEST_IMAGE)
    )]
    TooLarge {
        /// What is too large.
        what: String,
    },
    /// A size that is not a whole number of 512-byte sectors.
    #[error(
        "an image's size is a whole number of 512-byte sectors, and {0} is not: give one in K, M or G"
    )]
    NotSectors(u64),
    /// A volume label FAT cannot hold.
    #[error(
        "the label {0:?} is not a FAT volume label: give at most 11 letters, digits, spaces or \
         ! # $ % & ' ( ) - @ ^ _ ` {{ }} ~"
    )]
    Label(String),
    /// The image file exists and may not be replaced.
    #[error("{} already exists: give --force to replace it, or another -o", .0.display())]
    Exists(PathBuf),
    /// The image cannot be written.
    #[error("cannot write {}: {source}", path.display())]
    WriteImage {
        /// The image.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The FAT writer failed on the image being made.
    #[error("cannot make the FAT image {}: {what}: {source}", path.display())]
    Format {
        /// The image.
        path: PathBuf,
        /// What was being done.
        what: String,
        /// The FAT writer's error.
        source: hadris_fat::Error,
    },
    /// The image cannot be opened or read from the host.
    #[error("cannot read {}: {source}", path.display())]
    OpenImage {
        /// The image.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The file is not a FAT image.
    #[error(
        "{} is not a FAT image ({why}): give an image made by `fata disk create` or mkfs.fat",
        path.display()
    )]
    NotFat {
        /// The file.
        path: PathBuf,
        /// What gave it away.
        why: String,
    },
    /// The image is damaged.
    #[error(
        "{} is damaged: {why}; make it again (`fsck.fat -n {}` says more)",
        path.display(),
        path.display()
    )]
    Corrupt {
        /// The image.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// No file or directory has that path in the image.
    #[error("{} holds no {key}: `fata disk list {}` shows what it holds", image.display(), image.display())]
    NotFound {
        /// The image.
        image: PathBuf,
        /// The path looked for.
        key: String,
    },
    /// Where a copy goes cannot be written.
    #[error("cannot write {}: {source}", path.display())]
    WriteOut {
        /// The destination.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
}
