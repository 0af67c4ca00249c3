//! The ELF note by which an image names the ABI version it was built for.

use crate::ABI_VERSION;

/// The ELF note type of an [`AbiNote`].
pub const NOTE_TYPE_ABI: u32 = 1;

/// The ELF note name of an [`AbiNote`], NUL included.
pub const NOTE_NAME: [u8; 5] = *b"Fata\0";

/// The ELF note the guest carries in a `PT_NOTE` segment (section `.note.fata`) to say which ABI it
/// was built for: standard note header, name [`NOTE_NAME`] padded to 8 bytes, descriptor = version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C, align(4))]
pub struct AbiNote {
    /// Length of the name, NUL included: 5.
    pub namesz: u32,
    /// Length of the descriptor: 4.
    pub descsz: u32,
    /// [`NOTE_TYPE_ABI`].
    pub kind: u32,
    /// [`NOTE_NAME`] padded with NULs to a multiple of 4.
    pub name: [u8; 8],
    /// The [`ABI_VERSION`] the image was built for.
    pub version: u32,
}

impl AbiNote {
    /// The note for this crate's [`ABI_VERSION`].
    pub const CURRENT: AbiNote = AbiNote {
        namesz: NOTE_NAME.len() as u32,
        descsz: 4,
        kind: NOTE_TYPE_ABI,
        name: *b"Fata\0\0\0\0",
        version: ABI_VERSION,
    };
}
