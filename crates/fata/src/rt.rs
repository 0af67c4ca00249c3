//! Program start-up, called by the code `#[fata::main]` generates.

use core::fmt::Display;
use core::future::Future;

use fata_platform::Platform;

use crate::{Env, Opt, Sys};

/// Prints the usage and ends the program with status 0 when the arguments ask for it
/// ([`Env::help`]); otherwise checks the arguments of `program` against `options` (see
/// [`Env::new`]), runs the app's `main` on a fresh executor and ends the program with its
/// result: status 0 on `Ok`, `error: MESSAGE`
/// on the console and status 1 on `Err` or on arguments that do not fit the options (`main` does
/// not run then). A panic anywhere prints its message and location and ends the program with
/// status 101.
pub fn start<F, Fut, E>(program: &'static str, options: &'static [&'static [Opt]], main: F) -> !
where
    F: FnOnce(Env) -> Fut,
    Fut: Future<Output = Result<(), E>> + 'static,
    E: Display + 'static,
{
    Sys::init();
    let args = Sys::args();
    if let Some(usage) = Env::help(program, options, &args) {
        crate::print!("{usage}\n");
        Sys::exit(0)
    }
    let env = match Env::new(program, options, args, Sys::take_devices()) {
        Ok(env) => env,
        Err(bad_arguments) => fail(bad_arguments),
    };
    match crate::block_on(main(env)) {
        Ok(()) => Sys::exit(0),
        Err(error) => fail(error),
    }
}

/// Prints `error: MESSAGE` on the console and ends the program with status 1.
fn fail(error: impl Display) -> ! {
    crate::print!("error: {error}\n");
    Sys::exit(1)
}

/// The bytes of an ELF note, aligned as notes are: the static `#[fata::main]` places in
/// `.note.fata` to carry the app's manifest (the devices it declares and its settings).
#[doc(hidden)]
#[repr(C, align(4))]
pub struct Note<const N: usize>(pub [u8; N]);

/// The length of the note whose bytes `hex` spells (0 without one).
#[doc(hidden)]
pub const fn note_len(hex: Option<&str>) -> usize {
    match hex {
        Some(hex) => hex.len() / 2,
        None => 0,
    }
}

/// The note whose bytes `hex` spells, two hex digits a byte: `fata build` writes the app's
/// manifest note so into `FATA_MANIFEST_NOTE` for the compile, and `#[fata::main]` reads it with
/// `option_env!`. Runs at compile time, where a panic is a compile error.
#[doc(hidden)]
pub const fn note<const N: usize>(hex: Option<&str>) -> Note<N> {
    let mut bytes = [0u8; N];
    let Some(hex) = hex else {
        return Note(bytes);
    };
    let digits = hex.as_bytes();
    if digits.len() != 2 * N || !N.is_multiple_of(4) {
        panic!("FATA_MANIFEST_NOTE must spell a whole ELF note in hex (fata build sets it)");
    }
    let mut at = 0;
    while at < N {
        bytes[at] = hex_digit(digits[2 * at]) << 4 | hex_digit(digits[2 * at + 1]);
        at += 1;
    }
    Note(bytes)
}

const fn hex_digit(digit: u8) -> u8 {
    match digit {
        b'0'..=b'9' => digit - b'0',
        b'a'..=b'f' => digit - b'a' + 10,
        _ => panic!("FATA_MANIFEST_NOTE must be lowercase hex (fata build sets it)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_are_spelled_in_hex() {
        assert_eq!(
            note::<8>(Some("050000000a0bfeff")).0,
            [5, 0, 0, 0, 10, 11, 254, 255]
        );
        assert_eq!(note_len(Some("050000000a0bfeff")), 8);
        assert_eq!(note::<0>(None).0, [0u8; 0]);
        assert_eq!(note_len(None), 0);
        assert_eq!(core::mem::align_of::<Note<8>>(), 4);
    }
}
