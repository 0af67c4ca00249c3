//! Image validation: from the bytes of an ELF file to the segments the monitor loads.
//!
//! [`parse_image`] is a pure function of the file's bytes and the guest's RAM size. It never panics
//! and never allocates more than the segment list, whatever the input; the fuzz target
//! `fuzz/fuzz_targets/parse_image.rs` holds it to that.
//!
//! [`read_manifest`] reads the devices and settings an image declares (its manifest note) from
//! any 64-bit little-endian ELF file, an hvt image or a unix executable, so that `fata run` can
//! check a command line against them before it starts either; the same fuzz target covers it.

use fata_device_spec::manifest::{Manifest, ManifestError};
use fata_hvt_abi::{
    ABI_VERSION, LOAD_ADDR, NOTE_NAME, NOTE_TYPE_ABI, NOTE_TYPE_MANIFEST, PAGE_SIZE,
};
use object::Endianness;
use object::elf::{self, FileHeader64, ProgramHeader64};
use object::read::elf::{FileHeader, ProgramHeader};
use thiserror::Error;

/// The most program headers an image may have.
pub const MAX_SEGMENTS: usize = 32;

/// Why an image cannot run under the monitor. Each case names the fix.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ImageError {
    /// The bytes are not a 64-bit little-endian ELF file.
    #[error("not a 64-bit little-endian ELF file ({0})")]
    NotElf(String),
    /// The file is larger than the guest's RAM.
    #[error("the file is {len} bytes, larger than the guest's {limit} bytes of RAM")]
    FileTooLarge {
        /// The file's size.
        len: u64,
        /// The guest's RAM.
        limit: u64,
    },
    /// The file ends before a header or segment it describes.
    #[error("the file is truncated: {0} reaches past its end")]
    Truncated(&'static str),
    /// Built for another CPU.
    #[error("built for ELF machine {0}, not x86-64")]
    WrongMachine(u16),
    /// Not a static executable (a PIE, shared object or object file).
    #[error("ELF type {0} is not a static executable (ET_EXEC); link with -static -no-pie")]
    NotExecutable(u16),
    /// Has an interpreter or dynamic section.
    #[error("the image is dynamically linked; link it with -static -no-pie")]
    Dynamic,
    /// Uses thread-local storage, which hvt does not set up.
    #[error("the image uses thread-local storage (PT_TLS), which the hvt target does not provide")]
    ThreadLocal,
    /// Too many program headers.
    #[error("the image has {0} program headers, more than the {MAX_SEGMENTS} allowed")]
    TooManySegments(usize),
    /// No loadable segment.
    #[error("the image has no loadable (PT_LOAD) segment")]
    NoSegments,
    /// A segment's sizes or addresses are inconsistent.
    #[error("segment at {vaddr:#x}: {what}")]
    BadSegment {
        /// The segment's virtual address.
        vaddr: u64,
        /// What is wrong.
        what: &'static str,
    },
    /// A segment below 1 MiB, where the monitor keeps its tables.
    #[error("segment at {0:#x} starts below {LOAD_ADDR:#x}; link the image at {LOAD_ADDR:#x}")]
    BelowLoadAddress(u64),
    /// A segment that does not fit in the guest's RAM.
    #[error(
        "segment at {vaddr:#x} ends at {end:#x}, past the {limit:#x} bytes of RAM available to the \
         image; give the guest more memory (--mem) or make the image smaller"
    )]
    PastRam {
        /// The segment's virtual address.
        vaddr: u64,
        /// Where it ends.
        end: u64,
        /// Where image memory ends.
        limit: u64,
    },
    /// A segment both writable and executable.
    #[error(
        "segment at {0:#x} is both writable and executable; link with separate R-X and RW segments"
    )]
    WritableAndExecutable(u64),
    /// Two segments share a page.
    #[error(
        "segments at {0:#x} and {1:#x} overlap or share a 4 KiB page; align segments to 4 KiB in \
         the linker script"
    )]
    Overlap(u64, u64),
    /// The entry point is not in an executable segment.
    #[error("entry point {0:#x} is not inside an executable segment")]
    EntryNotExecutable(u64),
    /// The image carries no Fata ABI note.
    #[error(
        "no Fata ABI note: this is not an hvt unikernel (build it with `fata build --target hvt`)"
    )]
    NoAbiNote,
    /// The manifest note (the devices the app declares) cannot be read.
    #[error("its manifest note (the devices the app declares) is not valid: {0}")]
    BadManifest(ManifestError),
    /// More than one manifest note.
    #[error("it has more than one manifest note: build it with `fata build`")]
    RepeatedManifest,
    /// The image was built for another ABI version.
    #[error(
        "built for hvt ABI version {0}, this monitor speaks version {ABI_VERSION}; rebuild the image \
         with this Fata version"
    )]
    AbiMismatch(u32),
}

/// One loadable segment, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// Guest-physical (= virtual) address of the first byte.
    pub addr: u64,
    /// Offset in the file of the bytes to copy.
    pub file_offset: u64,
    /// Bytes to copy from the file.
    pub file_size: u64,
    /// Bytes the segment occupies in memory (the rest is zero).
    pub mem_size: u64,
    /// Whether the guest may write it.
    pub writable: bool,
    /// Whether the guest may execute it.
    pub executable: bool,
}

impl Segment {
    /// The first address past the segment.
    pub fn end(&self) -> u64 {
        self.addr + self.mem_size
    }
}

/// A validated image: where to start and what to load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// The entry point, inside an executable segment.
    pub entry: u64,
    /// The loadable segments, sorted by address, not sharing any page.
    pub segments: Vec<Segment>,
    /// The first page-aligned address past every segment.
    pub end: u64,
}

fn round_down(x: u64) -> u64 {
    x & !(PAGE_SIZE - 1)
}

/// Validates an hvt image and lists its segments.
///
/// `limit` is the first guest address the image may not reach (the bottom of the stack); every
/// segment must lie in `LOAD_ADDR..limit`.
pub fn parse_image(data: &[u8], limit: u64) -> Result<Image, ImageError> {
    let header =
        FileHeader64::<Endianness>::parse(data).map_err(|e| ImageError::NotElf(e.to_string()))?;
    if header.e_ident().data != elf::ELFDATA2LSB {
        return Err(ImageError::NotElf("big-endian".into()));
    }
    let endian = Endianness::Little;
    let machine = header.e_machine(endian);
    if machine != elf::EM_X86_64 {
        return Err(ImageError::WrongMachine(machine.0));
    }
    let kind = header.e_type(endian);
    if kind != elf::ET_EXEC {
        return Err(ImageError::NotExecutable(kind.0));
    }
    let phnum = header.e_phnum.get(endian) as usize;
    if phnum > MAX_SEGMENTS {
        return Err(ImageError::TooManySegments(phnum));
    }
    let headers = header
        .program_headers(endian, data)
        .map_err(|_| ImageError::Truncated("the program header table"))?;

    let mut segments = Vec::new();
    let mut note = None;
    for ph in headers {
        match ph.p_type(endian) {
            elf::PT_LOAD => segments.push(load_segment(ph, data.len() as u64, limit)?),
            elf::PT_INTERP | elf::PT_DYNAMIC => return Err(ImageError::Dynamic),
            elf::PT_TLS => return Err(ImageError::ThreadLocal),
            elf::PT_NOTE => note = note.or(abi_note(ph, data)?),
            _ => {}
        }
    }
    if segments.is_empty() {
        return Err(ImageError::NoSegments);
    }
    segments.sort_by_key(|s| s.addr);
    for pair in segments.windows(2) {
        // Page-granular: the monitor maps each page with its segment's permissions.
        if round_down(pair[1].addr) < pair[0].end().next_multiple_of(PAGE_SIZE) {
            return Err(ImageError::Overlap(pair[0].addr, pair[1].addr));
        }
    }
    let entry = header.e_entry(endian);
    if !segments
        .iter()
        .any(|s| s.executable && (s.addr..s.end()).contains(&entry))
    {
        return Err(ImageError::EntryNotExecutable(entry));
    }
    match note {
        None => return Err(ImageError::NoAbiNote),
        Some(version) if version != ABI_VERSION => return Err(ImageError::AbiMismatch(version)),
        Some(_) => {}
    }
    let last = segments.iter().map(Segment::end).max().unwrap_or(LOAD_ADDR);
    Ok(Image {
        entry,
        segments,
        end: last.next_multiple_of(PAGE_SIZE),
    })
}

fn load_segment(
    ph: &ProgramHeader64<Endianness>,
    file_len: u64,
    limit: u64,
) -> Result<Segment, ImageError> {
    let e = Endianness::Little;
    let addr = ph.p_vaddr(e);
    let bad = |what| ImageError::BadSegment { vaddr: addr, what };
    let (file_offset, file_size, mem_size) = (ph.p_offset(e), ph.p_filesz(e), ph.p_memsz(e));
    if ph.p_paddr(e) != addr {
        return Err(bad(
            "physical and virtual addresses differ (images load phys == virt)",
        ));
    }
    if file_size > mem_size {
        return Err(bad("file size is larger than memory size"));
    }
    match file_offset.checked_add(file_size) {
        Some(end) if end <= file_len => {}
        _ => return Err(ImageError::Truncated("a segment's file contents")),
    }
    if addr < LOAD_ADDR {
        return Err(ImageError::BelowLoadAddress(addr));
    }
    let end = addr
        .checked_add(mem_size)
        .ok_or(bad("address + size overflows"))?;
    if end > limit {
        return Err(ImageError::PastRam {
            vaddr: addr,
            end,
            limit,
        });
    }
    let flags = ph.p_flags(e).0;
    let writable = flags & elf::PF_W.0 != 0;
    let executable = flags & elf::PF_X.0 != 0;
    if writable && executable {
        return Err(ImageError::WritableAndExecutable(addr));
    }
    Ok(Segment {
        addr,
        file_offset,
        file_size,
        mem_size,
        writable,
        executable,
    })
}

/// The ABI version in a `PT_NOTE` segment's Fata note, if it has one.
fn abi_note(ph: &ProgramHeader64<Endianness>, data: &[u8]) -> Result<Option<u32>, ImageError> {
    let e = Endianness::Little;
    let mut notes = match ph.notes(e, data) {
        Ok(Some(notes)) => notes,
        Ok(None) => return Ok(None),
        Err(_) => return Err(ImageError::Truncated("a note segment")),
    };
    while let Some(note) = notes
        .next()
        .map_err(|_| ImageError::Truncated("a note segment"))?
    {
        if note.name() == &NOTE_NAME[..NOTE_NAME.len() - 1] && note.n_type(e).0 == NOTE_TYPE_ABI {
            let desc = note.desc();
            let bytes: [u8; 4] = desc
                .get(..4)
                .and_then(|d| d.try_into().ok())
                .ok_or(ImageError::Truncated("the Fata ABI note"))?;
            return Ok(Some(u32::from_le_bytes(bytes)));
        }
    }
    Ok(None)
}

/// Reads the manifest note (`fata_hvt_abi::NOTE_TYPE_MANIFEST`) in the `PT_NOTE` segments of a
/// 64-bit little-endian ELF file, checked: `None` when the file has none (built before manifests
/// existed, or by plain cargo). Applies none of the hvt image rules, so it reads unix executables
/// too; never panics, whatever the bytes.
pub fn read_manifest(data: &[u8]) -> Result<Option<Manifest>, ImageError> {
    let header =
        FileHeader64::<Endianness>::parse(data).map_err(|e| ImageError::NotElf(e.to_string()))?;
    if header.e_ident().data != elf::ELFDATA2LSB {
        return Err(ImageError::NotElf("big-endian".into()));
    }
    let e = Endianness::Little;
    let headers = header
        .program_headers(e, data)
        .map_err(|_| ImageError::Truncated("the program header table"))?;
    let mut manifest = None;
    for ph in headers.iter().filter(|ph| ph.p_type(e) == elf::PT_NOTE) {
        let mut notes = match ph.notes(e, data) {
            Ok(Some(notes)) => notes,
            Ok(None) => continue,
            Err(_) => return Err(ImageError::Truncated("a note segment")),
        };
        while let Some(note) = notes
            .next()
            .map_err(|_| ImageError::Truncated("a note segment"))?
        {
            if note.name() == &NOTE_NAME[..NOTE_NAME.len() - 1]
                && note.n_type(e).0 == NOTE_TYPE_MANIFEST
            {
                if manifest.is_some() {
                    return Err(ImageError::RepeatedManifest);
                }
                manifest = Some(Manifest::parse(note.desc()).map_err(ImageError::BadManifest)?);
            }
        }
    }
    Ok(manifest)
}
