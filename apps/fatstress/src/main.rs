//! The durability test app: on the FAT disk `storage`, writes, appends to and removes a few files
//! in a loop, flushing after each change, so that a test can kill it at any moment and check the
//! disk against what it printed.
//!
//! Before each change it prints what the file will hold once the change is made,
//! `begin I write|append LEN CRC32 PATH` or `begin I remove - - PATH` (LEN and CRC32 of the
//! whole file), and `flushed I` once the flush after it returned. So after a crash every file
//! holds what the last `flushed` says, except the one the next `begin` names, which may hold
//! either. It first makes its directories, reads back what the disk holds and prints `ready`.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use fata::{Env, Opt, Result, println};
use fata_fat::{Error, FatFs};

/// The options fatstress takes.
const OPTIONS: &[Opt] = &[
    Opt::value(
        "--seed",
        "N",
        "where the pseudo-random changes start (default 1)",
    ),
    Opt::value(
        "--count",
        "N",
        "how many changes to make (default: until killed)",
    ),
    Opt::value(
        "--max-len",
        "BYTES",
        "the largest file a write makes (default 100000)",
    ),
];

/// The directories the files live in, made first.
const DIRS: [&str; 2] = ["/Data Dir", "/Data Dir/deeper"];

/// The files it changes: long names, mixed case, spaces, nested directories.
const FILES: [&str; 6] = [
    "/log.txt",
    "/Data Dir/Long file name number one.bin",
    "/Data Dir/MixedCase.Dat",
    "/Data Dir/deeper/x",
    "/Data Dir/deeper/A rather longer name, with a comma.txt",
    "/b.bin",
];

#[fata::main(options = [OPTIONS])]
async fn main(mut env: Env) -> Result<()> {
    let seed: u64 = env.arg("--seed")?.unwrap_or(1);
    let count: Option<u64> = env.arg("--count")?;
    let max_len: u64 = env.arg("--max-len")?.unwrap_or(100_000).max(1);
    let fs = FatFs::mount(env.take_block("storage")?).await?;
    for dir in DIRS {
        match fs.create_dir(dir).await {
            Ok(()) | Err(Error::Exists) => {}
            Err(e) => return Err(e.into()),
        }
    }
    fs.flush().await?;
    let mut held: BTreeMap<&str, Vec<u8>> = BTreeMap::new();
    for path in FILES {
        match fs.read(path).await {
            Ok(bytes) => {
                held.insert(path, bytes);
            }
            Err(Error::NotFound) => {}
            Err(e) => return Err(e.into()),
        }
    }
    println!("ready {} with {} files", fs.kind(), held.len());
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut change = 0u64;
    while count.is_none_or(|count| change < count) {
        change += 1;
        let path = FILES[rng.below(FILES.len() as u64) as usize];
        let roll = rng.below(10);
        let current = held.get(path).map_or(0, Vec::len) as u64;
        if roll == 0 && current > 0 {
            println!("begin {change} remove - - {path}");
            fs.remove(path).await?;
            held.remove(path);
        } else if roll < 4 && current < 2 * max_len {
            let bytes = pattern(rng.next(), rng.below(max_len / 4 + 1) as usize);
            let after = held.entry(path).or_default();
            after.extend_from_slice(&bytes);
            println!(
                "begin {change} append {} {:08x} {path}",
                after.len(),
                crc32(after)
            );
            fs.append(path, &bytes).await?;
        } else {
            let bytes = pattern(rng.next(), rng.below(max_len + 1) as usize);
            println!(
                "begin {change} write {} {:08x} {path}",
                bytes.len(),
                crc32(&bytes)
            );
            fs.write(path, &bytes).await?;
            held.insert(path, bytes);
        }
        fs.flush().await?;
        println!("flushed {change}");
    }
    Ok(())
}

/// A small pseudo-random number generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// `len` bytes that differ from one seed to the next.
fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = Rng(seed | 1);
    (0..len).map(|_| rng.next() as u8).collect()
}

/// The CRC-32 of `bytes` (IEEE 802.3, as zlib and `crc32` compute it).
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xEDB8_8320 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}
