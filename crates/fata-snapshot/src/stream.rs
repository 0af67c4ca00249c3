//! A migration's connection: the same snapshot, sent as a stream while the guest still runs.
//!
//! The sender writes a [`Hello`], then any number of page runs (the first round all the pages
//! the guest touched, each later round the pages it wrote since), then the final [`Snapshot`]
//! (its `memory` empty: the pages came before), and reads one answer byte back. Each message is a
//! tag byte and a little-endian body:
//!
//! | tag | body |
//! |---|---|
//! | `H` | magic `FATAMIGR`, stream version (u32), guest memory bytes (u64) |
//! | `P` | guest-physical offset (u64, 4 KiB-aligned), page count (u32, at most 256), the pages |
//! | `S` | state length (u64, at most 16 MiB), the state file's bytes ([`encode`]) |
//!
//! The receiver's answer is [`ARRIVED`] once the guest runs on its side, anything else a failure
//! (the sender then carries the guest on itself). TCP carries its own checksums; the state still
//! carries the state file's CRC, and [`Receiver`] checks every offset and length against the
//! guest memory the hello announced before the caller sees them, so a broken or hostile sender
//! gets an error, never a write outside the guest's RAM.

use crate::Snapshot;
use crate::codec::{FormatError, decode, encode};
use std::io::{self, Read, Write};
use thiserror::Error;

/// The first bytes after the hello's tag.
pub const STREAM_MAGIC: [u8; 8] = *b"FATAMIGR";
/// The stream version this crate speaks.
pub const STREAM_VERSION: u32 = 1;
/// The most pages one page message carries.
pub const MAX_RUN_PAGES: u32 = 256;
/// The largest state a stream carries.
pub const MAX_STATE_BYTES: u64 = 16 << 20;
/// The receiver's answer once the guest runs on its side.
pub const ARRIVED: u8 = b'A';
/// The receiver's answer when it could not carry the guest on.
pub const FAILED: u8 = b'F';

const PAGE: u64 = 4096;
const TAG_HELLO: u8 = b'H';
const TAG_PAGES: u8 = b'P';
const TAG_STATE: u8 = b'S';

/// The start of a migration stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hello {
    /// Bytes of guest RAM.
    pub mem_bytes: u64,
}

/// A stream that cannot be read.
#[derive(Debug, Error)]
pub enum StreamError {
    /// The connection failed or closed early.
    #[error("the migration connection failed: {0}")]
    Io(#[from] io::Error),
    /// The other side does not speak this protocol.
    #[error(
        "the other side is not a Fata monitor sending a migration (stream version {STREAM_VERSION}); \
         is HOST:PORT the address `fata receive --listen` printed?"
    )]
    NotAMigration,
    /// A message breaks the protocol.
    #[error("the migration stream is broken: {0}")]
    Malformed(String),
    /// The final state is not a snapshot this monitor reads.
    #[error("the migrated state cannot be used: {0}")]
    State(#[from] FormatError),
}

/// Writes the hello.
pub fn send_hello(out: &mut impl Write, hello: Hello) -> io::Result<()> {
    let mut message = Vec::with_capacity(21);
    message.push(TAG_HELLO);
    message.extend_from_slice(&STREAM_MAGIC);
    message.extend_from_slice(&STREAM_VERSION.to_le_bytes());
    message.extend_from_slice(&hello.mem_bytes.to_le_bytes());
    out.write_all(&message)
}

/// Writes the pages `bytes` (whole pages) at guest offset `offset`, in messages of at most
/// [`MAX_RUN_PAGES`] pages.
pub fn send_pages(out: &mut impl Write, offset: u64, bytes: &[u8]) -> io::Result<()> {
    if !offset.is_multiple_of(PAGE) || !(bytes.len() as u64).is_multiple_of(PAGE) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "page runs are whole 4 KiB pages",
        ));
    }
    for (i, run) in bytes
        .chunks((MAX_RUN_PAGES as u64 * PAGE) as usize)
        .enumerate()
    {
        let at = offset + i as u64 * MAX_RUN_PAGES as u64 * PAGE;
        let mut header = [0u8; 13];
        header[0] = TAG_PAGES;
        header[1..9].copy_from_slice(&at.to_le_bytes());
        header[9..13].copy_from_slice(&((run.len() as u64 / PAGE) as u32).to_le_bytes());
        out.write_all(&header)?;
        out.write_all(run)?;
    }
    Ok(())
}

/// Writes the final state.
pub fn send_state(out: &mut impl Write, snapshot: &Snapshot) -> io::Result<()> {
    let state = encode(snapshot);
    out.write_all(&[TAG_STATE])?;
    out.write_all(&(state.len() as u64).to_le_bytes())?;
    out.write_all(&state)
}

/// One message after the hello, as [`Receiver::read_message`] reads it.
#[derive(Debug)]
pub enum Message {
    /// Pages to write at a guest offset: checked to lie inside guest memory.
    Pages {
        /// Guest-physical offset, 4 KiB-aligned.
        offset: u64,
        /// Whole pages.
        bytes: Vec<u8>,
    },
    /// The final state: nothing follows.
    State(Box<Snapshot>),
}

/// The receiving end of a stream.
pub struct Receiver<R> {
    input: R,
    hello: Hello,
}

impl<R: Read> Receiver<R> {
    /// Reads and checks the hello.
    pub fn start(mut input: R) -> Result<Receiver<R>, StreamError> {
        let mut hello = [0u8; 21];
        input.read_exact(&mut hello)?;
        if hello[0] != TAG_HELLO || hello[1..9] != STREAM_MAGIC {
            return Err(StreamError::NotAMigration);
        }
        let version = u32::from_le_bytes(hello[9..13].try_into().expect("4 bytes"));
        if version != STREAM_VERSION {
            return Err(StreamError::Malformed(format!(
                "stream version {version}, and this monitor speaks {STREAM_VERSION}: run the same \
                 Fata version on both sides"
            )));
        }
        let mem_bytes = u64::from_le_bytes(hello[13..21].try_into().expect("8 bytes"));
        if mem_bytes == 0 || !mem_bytes.is_multiple_of(2 << 20) {
            return Err(StreamError::Malformed(format!(
                "{mem_bytes} bytes of guest memory is not a positive multiple of 2 MiB"
            )));
        }
        Ok(Receiver {
            input,
            hello: Hello { mem_bytes },
        })
    }

    /// What the hello announced.
    pub fn hello(&self) -> Hello {
        self.hello
    }

    /// Reads the next message. After [`Message::State`], the stream is done.
    pub fn read_message(&mut self) -> Result<Message, StreamError> {
        let mut tag = [0u8; 1];
        self.input.read_exact(&mut tag)?;
        match tag[0] {
            TAG_PAGES => {
                let mut header = [0u8; 12];
                self.input.read_exact(&mut header)?;
                let offset = u64::from_le_bytes(header[..8].try_into().expect("8 bytes"));
                let pages = u32::from_le_bytes(header[8..].try_into().expect("4 bytes"));
                let len = u64::from(pages) * PAGE;
                let inside = offset
                    .checked_add(len)
                    .is_some_and(|end| end <= self.hello.mem_bytes);
                if !offset.is_multiple_of(PAGE) || pages == 0 || pages > MAX_RUN_PAGES || !inside {
                    return Err(StreamError::Malformed(format!(
                        "{pages} pages at {offset:#x} do not fit {} bytes of guest memory",
                        self.hello.mem_bytes
                    )));
                }
                let mut bytes = vec![0u8; len as usize];
                self.input.read_exact(&mut bytes)?;
                Ok(Message::Pages { offset, bytes })
            }
            TAG_STATE => {
                let mut len = [0u8; 8];
                self.input.read_exact(&mut len)?;
                let len = u64::from_le_bytes(len);
                if len > MAX_STATE_BYTES {
                    return Err(StreamError::Malformed(format!(
                        "a state of {len} bytes (at most {MAX_STATE_BYTES})"
                    )));
                }
                let mut state = vec![0u8; len as usize];
                self.input.read_exact(&mut state)?;
                let snapshot = decode(&state)?;
                if snapshot.mem_bytes != self.hello.mem_bytes {
                    return Err(StreamError::Malformed(format!(
                        "the state has {} bytes of guest memory, the hello said {}",
                        snapshot.mem_bytes, self.hello.mem_bytes
                    )));
                }
                Ok(Message::State(Box::new(snapshot)))
            }
            other => Err(StreamError::Malformed(format!(
                "unknown message tag {other:#04x}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(mem_bytes: u64) -> Snapshot {
        Snapshot {
            mem_bytes,
            name: "dns-1".into(),
            ..Snapshot::default()
        }
    }

    #[test]
    fn a_stream_round_trips() {
        let mut wire = Vec::new();
        send_hello(&mut wire, Hello { mem_bytes: 4 << 20 }).unwrap();
        let pages: Vec<u8> = (0..300 * 4096).map(|i| (i % 251) as u8).collect();
        send_pages(&mut wire, 0x10_0000, &pages).unwrap();
        send_state(&mut wire, &snapshot(4 << 20)).unwrap();
        let mut receiver = Receiver::start(&wire[..]).unwrap();
        assert_eq!(receiver.hello().mem_bytes, 4 << 20);
        let mut got = Vec::new();
        loop {
            match receiver.read_message().unwrap() {
                Message::Pages { offset, bytes } => {
                    assert_eq!(offset, 0x10_0000 + got.len() as u64);
                    got.extend_from_slice(&bytes);
                }
                Message::State(state) => {
                    assert_eq!(state.name, "dns-1");
                    break;
                }
            }
        }
        assert_eq!(got, pages);
    }

    #[test]
    fn a_broken_stream_is_an_error() {
        let mut hello = Vec::new();
        send_hello(&mut hello, Hello { mem_bytes: 2 << 20 }).unwrap();
        assert!(matches!(
            Receiver::start(&b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..]),
            Err(StreamError::NotAMigration)
        ));
        assert!(matches!(
            Receiver::start(&hello[..10]),
            Err(StreamError::Io(_))
        ));
        let page_run = |offset: u64, pages: u32| {
            let mut wire = hello.clone();
            wire.push(TAG_PAGES);
            wire.extend_from_slice(&offset.to_le_bytes());
            wire.extend_from_slice(&pages.to_le_bytes());
            wire.extend(std::iter::repeat_n(0u8, 4096));
            wire
        };
        for (offset, pages) in [
            (2 << 20, 1),
            ((2 << 20) - 4096, 2),
            (u64::MAX - 4095, 1),
            (100, 1),
            (0, 0),
            (0, MAX_RUN_PAGES + 1),
        ] {
            let wire = page_run(offset, pages);
            let mut receiver = Receiver::start(&wire[..]).unwrap();
            assert!(
                matches!(receiver.read_message(), Err(StreamError::Malformed(_))),
                "{pages} pages at {offset:#x}"
            );
        }
        let mut wire = hello.clone();
        send_state(&mut wire, &snapshot(4 << 20)).unwrap();
        let mut receiver = Receiver::start(&wire[..]).unwrap();
        assert!(matches!(
            receiver.read_message(),
            Err(StreamError::Malformed(_))
        ));
        let mut wire = hello.clone();
        wire.push(TAG_STATE);
        wire.extend_from_slice(&u64::MAX.to_le_bytes());
        let mut receiver = Receiver::start(&wire[..]).unwrap();
        assert!(matches!(
            receiver.read_message(),
            Err(StreamError::Malformed(_))
        ));
        let mut wire = hello.clone();
        send_state(&mut wire, &snapshot(2 << 20)).unwrap();
        let last = wire.len() - 1;
        wire[last] ^= 1;
        let mut receiver = Receiver::start(&wire[..]).unwrap();
        assert!(matches!(
            receiver.read_message(),
            Err(StreamError::State(_))
        ));
    }
}
