//! Exercises the block device `storage` and prints one line per check, for the end-to-end tests
//! to compare (crates/fata-cli/tests). The device's file must hold at least 512 sectors, sector
//! `s` filled with [`original`]`(s)`; the tests make it.
//!
//! 1. 32 reads of 4 KiB in flight at once (one task each), each checked against the file;
//! 2. a write of sectors 300..308 with [`written`], a flush, and a read of them back;
//! 3. a discard of sectors 400..408, and a read of them back (zeros);
//! 4. requests the device must refuse: a read past its end, a read of part of a sector.
//!
//! On a read-only device the write and the discard fail with "device is read-only"; on a
//! copy-on-write one everything succeeds and the file stays as it was.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec::Vec;
use fata::{BlockBuffer, BlockDevice, DeviceError, Env, Result, println};

/// Reads kept in flight at once.
const READS: u64 = 32;
/// Sectors per read.
const READ_SECTORS: u64 = 8;
/// Where the write and the discard go.
const WRITE_AT: u64 = 300;
const DISCARD_AT: u64 = 400;
/// The fewest sectors the device must have.
const MIN_SECTORS: u64 = 512;

/// The bytes of sector `s` in the file the tests make: its number, then `s % 251` repeated.
fn original(s: u64) -> [u8; 512] {
    let mut sector = [(s % 251) as u8; 512];
    sector[..8].copy_from_slice(&s.to_le_bytes());
    sector
}

/// The bytes blockcheck writes to sector `s`: the complement of its number, then 0x5a repeated.
fn written(s: u64) -> [u8; 512] {
    let mut sector = [0x5a; 512];
    sector[..8].copy_from_slice(&(!s).to_le_bytes());
    sector
}

/// Sectors `start..start + count` as `pattern` makes them.
fn sectors(start: u64, count: u64, pattern: fn(u64) -> [u8; 512]) -> Vec<u8> {
    (start..start + count).flat_map(pattern).collect()
}

fn outcome(result: core::result::Result<(), DeviceError>) -> alloc::string::String {
    match result {
        Ok(()) => "ok".into(),
        Err(e) => alloc::format!("{e}"),
    }
}

#[fata::main]
async fn main(mut env: Env) -> Result<()> {
    let disk = env.take_block("storage")?;
    let g = disk.geometry();
    println!(
        "geometry: {} sectors of {} bytes, read-only {}",
        g.sectors, g.sector_size, g.read_only
    );
    if g.sectors < MIN_SECTORS || g.sector_size != 512 {
        return Err(fata::Error::msg(alloc::format!(
            "the device needs at least {MIN_SECTORS} sectors of 512 bytes"
        )));
    }
    println!(
        "reads: {READS} in flight, {} match the file",
        parallel_reads(&disk).await
    );

    let data = BlockBuffer::from_slice(&sectors(WRITE_AT, 8, written));
    println!("write: {}", outcome(disk.write(WRITE_AT, data).await.1));
    println!("flush: {}", outcome(disk.flush().await));
    let (back, result) = disk.read(WRITE_AT, BlockBuffer::new(4096)).await;
    let what = if back.as_slice() == sectors(WRITE_AT, 8, written) {
        "the written bytes"
    } else if back.as_slice() == sectors(WRITE_AT, 8, original) {
        "the original bytes"
    } else {
        "other bytes"
    };
    println!("read back: {}, {what}", outcome(result));

    let result = disk.discard(DISCARD_AT, 8).await;
    println!("discard: {}", outcome(result));
    let (back, _) = disk.read(DISCARD_AT, BlockBuffer::new(4096)).await;
    let zeros = back.as_slice().iter().all(|&b| b == 0);
    println!("discarded sectors read as zeros: {zeros}");

    let (_, result) = disk.read(g.sectors - 1, BlockBuffer::new(1024)).await;
    println!("read past the end: {}", outcome(result));
    let (_, result) = disk.read(0, BlockBuffer::new(100)).await;
    println!("read of 100 bytes: {}", outcome(result));
    Ok(())
}

/// Reads `READS` blocks of `READ_SECTORS` sectors, all in flight together (one task each);
/// returns how many came back with the file's bytes.
async fn parallel_reads(disk: &BlockDevice) -> u64 {
    let tasks: Vec<_> = (0..READS)
        .map(|i| {
            let disk = disk.clone();
            fata::spawn(async move {
                let sector = i * READ_SECTORS;
                let (buffer, result) = disk
                    .read(sector, BlockBuffer::new((READ_SECTORS * 512) as usize))
                    .await;
                result.is_ok() && buffer.as_slice() == sectors(sector, READ_SECTORS, original)
            })
        })
        .collect();
    let mut matching = 0;
    for task in tasks {
        matching += u64::from(task.await);
    }
    matching
}
