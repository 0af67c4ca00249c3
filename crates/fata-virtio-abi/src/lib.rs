//! The kernel command line `fata run --target virtio` writes, and what QEMU appends to it.
//!
//! It is a list of space-separated tokens:
//! - `fata.arg=VALUE`: one app argument, in order, with every byte outside `[A-Za-z0-9._:/,+@-]`
//!   (and `=` after the first) written as `%XX`, so spaces, quotes and UTF-8 survive;
//! - `fata.net=NAME/MAC`: the network interface whose MAC is `MAC` is called `NAME`;
//! - `fata.seed=HEX`: 32 bytes that seed the generator where the CPU has no RDRAND;
//! - `virtio_mmio.device=SIZE@ADDR:IRQ`: a virtio-mmio transport, as QEMU's microvm appends it
//!   for Linux (its `auto-kernel-cmdline`);
//! - anything else is ignored, as Linux ignores parameters it does not know.
//!
//! `fata run --target virtio` and `fata deploy` write it with [`percent_encode`]; the guest reads
//! it with [`parse`], which never panics on a line it did not expect (fuzzed as
//! `virtio_cmdline`).
#![no_std]

extern crate alloc;

use alloc::string::String;
use alloc::vec::Vec;

/// A virtio-mmio transport QEMU announced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MmioTransport {
    /// Physical address of its registers.
    pub addr: u64,
    /// Bytes of its register window.
    pub size: u64,
    /// Its interrupt line (a GSI of the I/O APIC).
    pub irq: u32,
}

/// What the command line says.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Cmdline {
    /// The app's arguments.
    pub args: Vec<String>,
    /// Network interface names by MAC.
    pub nets: Vec<(String, [u8; 6])>,
    /// The seed, if given.
    pub seed: Option<[u8; 32]>,
    /// The virtio-mmio transports, in the order QEMU listed them.
    pub mmio: Vec<MmioTransport>,
}

/// Why a token could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadToken(pub String);

fn hex_digit(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// Undoes `%XX` escapes.
fn percent_decode(value: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(value.len());
    let mut rest = value;
    while let Some((&byte, tail)) = rest.split_first() {
        if byte == b'%' {
            let [high, low, ..] = *tail else { return None };
            out.push(hex_digit(high)? << 4 | hex_digit(low)?);
            rest = &tail[2..];
        } else {
            out.push(byte);
            rest = tail;
        }
    }
    Some(out)
}

/// Writes `value` so that it is one `fata.arg=` token (the inverse of the guest's decoding).
pub fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for &byte in value.as_bytes() {
        if byte.is_ascii_alphanumeric() || b"._:/,+@-".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push('%');
            for nibble in [byte >> 4, byte & 15] {
                out.push(char::from(b"0123456789ABCDEF"[usize::from(nibble)]));
            }
        }
    }
    out
}

fn parse_number(text: &str) -> Option<u64> {
    match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

/// `SIZE[K|M]@ADDR:IRQ`, as Linux's `virtio_mmio.device=` parameter.
fn parse_mmio(value: &str) -> Option<MmioTransport> {
    let (size, rest) = value.split_once('@')?;
    let (addr, irq) = rest.split_once(':')?;
    let (size, scale) = match size.as_bytes().last()? {
        b'K' | b'k' => (&size[..size.len() - 1], 1 << 10),
        b'M' | b'm' => (&size[..size.len() - 1], 1 << 20),
        _ => (size, 1),
    };
    Some(MmioTransport {
        addr: parse_number(addr)?,
        size: parse_number(size)?.checked_mul(scale)?,
        irq: u32::try_from(parse_number(irq)?).ok()?,
    })
}

fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut mac = [0; 6];
    let mut parts = text.split(':');
    for byte in &mut mac {
        let part = parts.next()?;
        if part.len() != 2 {
            return None;
        }
        *byte = u8::from_str_radix(part, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

fn parse_seed(text: &str) -> Option<[u8; 32]> {
    let bytes = text.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut seed = [0; 32];
    for (byte, pair) in seed.iter_mut().zip(bytes.chunks(2)) {
        *byte = hex_digit(pair[0])? << 4 | hex_digit(pair[1])?;
    }
    Some(seed)
}

/// Reads a command line; a token Fata owns that does not parse is an error naming it.
pub fn parse(line: &[u8]) -> Result<Cmdline, BadToken> {
    let mut cmdline = Cmdline::default();
    for token in line.split(|&b| b == b' ' || b == b'\t' || b == b'\n') {
        let Some(eq) = token.iter().position(|&b| b == b'=') else {
            continue;
        };
        let (key, value) = (&token[..eq], &token[eq + 1..]);
        let bad = || BadToken(String::from_utf8_lossy(token).into_owned());
        let text = || core::str::from_utf8(value).map_err(|_| bad());
        match key {
            b"fata.arg" => {
                let bytes = percent_decode(value).ok_or_else(bad)?;
                cmdline
                    .args
                    .push(String::from_utf8_lossy(&bytes).into_owned());
            }
            b"fata.net" => {
                let (name, mac) = text()?.split_once('/').ok_or_else(bad)?;
                let mac = parse_mac(mac).ok_or_else(bad)?;
                cmdline.nets.push((name.into(), mac));
            }
            b"fata.seed" => cmdline.seed = Some(parse_seed(text()?).ok_or_else(bad)?),
            b"virtio_mmio.device" => cmdline.mmio.push(parse_mmio(text()?).ok_or_else(bad)?),
            _ => {}
        }
    }
    Ok(cmdline)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn reads_arguments_devices_and_transports() {
        let line = b"fata.arg=--count fata.arg=4 fata.arg=a%20b%C3%A9 fata.arg= \
            fata.net=service/02:00:00:00:00:0a console=ttyS0 \
            virtio_mmio.device=512@0xfeb00e00:12 virtio_mmio.device=4K@0xfeb00c00:11";
        let cmdline = parse(line).unwrap();
        assert_eq!(cmdline.args, vec!["--count", "4", "a bé", ""]);
        assert_eq!(cmdline.nets, vec![("service".into(), [2, 0, 0, 0, 0, 10])]);
        assert_eq!(
            cmdline.mmio,
            vec![
                MmioTransport {
                    addr: 0xfeb00e00,
                    size: 512,
                    irq: 12
                },
                MmioTransport {
                    addr: 0xfeb00c00,
                    size: 4096,
                    irq: 11
                },
            ]
        );
        assert_eq!(cmdline.seed, None);
    }

    #[test]
    fn encoding_round_trips() {
        for arg in [
            "",
            "plain-1.2:3/4,5+6@7",
            "a b",
            "100%",
            "x=y",
            "ünï\tcode\"'",
        ] {
            let line = alloc::format!("fata.arg={}", percent_encode(arg));
            assert!(!line[9..].contains([' ', '=']), "{line}");
            assert_eq!(parse(line.as_bytes()).unwrap().args, vec![arg]);
        }
        let seed = parse(&[b"fata.seed=".as_slice(), &[b'a'; 64]].concat()).unwrap();
        assert_eq!(seed.seed, Some([0xaa; 32]));
    }

    #[test]
    fn bad_tokens_are_errors() {
        for line in [
            "fata.arg=%4",
            "fata.arg=%zz",
            "fata.net=service",
            "fata.net=service/02:00",
            "fata.seed=00",
            "virtio_mmio.device=512@0xfeb00e00",
            "virtio_mmio.device=99999999999999999999M@0:1",
        ] {
            assert!(parse(line.as_bytes()).is_err(), "{line}");
        }
        assert!(parse(b"quiet root=/dev/vda =x").is_ok());
    }
}
