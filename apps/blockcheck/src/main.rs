//! Fata's block device test app: exercises the device `storage` as a file system would, with many
//! requests in flight, and checks every byte it reads.
//!
//! The disk is cut into chunks of 64 KiB; byte `i` of chunk `c` is written as
//! `(31 c + 7 i + i / 4096) mod 256`, the pattern the tests look for in the file afterwards.
//!
//! - By default: writes chunks `0..N` (`--in-flight N`, default 32) all at once, flushes, reads
//!   them back all at once; writes chunk `N` as a grouped write, reads it before and after the
//!   flush that applies it; writes chunk `N + 1`, discards it and reads zeros back. Prints
//!   `blockcheck: ok` last.
//! - `--read-only`: reads chunks `0..N` all at once and checks they hold the pattern (the tests
//!   write it into the file first), then checks that writes, grouped writes and discards are
//!   refused as read-only and that a flush succeeds.
//!
//! Any other outcome is an error (exit status 1) that says which request and what it got.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::format;
use alloc::vec::Vec;

use fata::{BlockBuffer, BlockDevice, DeviceError, Env, Error, Opt, Result, println};

/// The options blockcheck takes.
const OPTIONS: &[Opt] = &[
    Opt::flag(
        "--read-only",
        "check a read-only device: reads hold the pattern, writes and discards are refused",
    ),
    Opt::value(
        "--in-flight",
        "N",
        "requests in flight at once (default 32)",
    ),
];

/// Bytes per chunk, and per request.
const CHUNK: usize = 64 << 10;

/// Sectors per chunk.
const CHUNK_SECTORS: u64 = (CHUNK / 512) as u64;

/// Byte `i` of chunk `chunk`'s pattern.
fn pattern_byte(chunk: u64, i: usize) -> u8 {
    (chunk as usize * 31 + i * 7 + i / 4096) as u8
}

/// Fills `bytes` with chunk `chunk`'s pattern.
fn pattern(chunk: u64, bytes: &mut [u8]) {
    for (i, byte) in bytes.iter_mut().enumerate() {
        *byte = pattern_byte(chunk, i);
    }
}

/// Chunk `chunk`'s pattern in a buffer.
fn chunk_buffer(chunk: u64) -> BlockBuffer {
    let mut buffer = BlockBuffer::new(CHUNK);
    pattern(chunk, buffer.as_mut_slice());
    buffer
}

/// Whether `buffer` holds chunk `chunk`'s pattern.
fn holds_pattern(chunk: u64, buffer: &BlockBuffer) -> bool {
    (0..)
        .zip(buffer.as_slice())
        .all(|(i, &byte)| byte == pattern_byte(chunk, i))
}

/// Says what a request got.
fn failed(what: &str, error: DeviceError) -> Error {
    Error::msg(format!("{what}: {error}"))
}

#[fata::main(options = [OPTIONS])]
async fn main(mut env: Env) -> Result<()> {
    let disk = env.take_block("storage")?;
    let count: u64 = env.arg("--in-flight")?.unwrap_or(32);
    let geometry = disk.geometry();
    println!(
        "storage: {} sectors of {} bytes{}",
        geometry.sectors,
        geometry.sector_size,
        if geometry.read_only {
            ", read-only"
        } else {
            ""
        }
    );
    if (count + 2) * CHUNK_SECTORS > geometry.sectors {
        return Err(Error::msg(format!(
            "the disk is too small: give it at least {} KiB",
            (count + 2) * CHUNK as u64 / 1024
        )));
    }
    if env.flag("--read-only") {
        read_back(&disk, count).await?;
        return refused(&disk).await;
    }

    // Every write in flight at once, each task waiting for its own completion.
    let writes: Vec<_> = (0..count)
        .map(|chunk| {
            let disk = disk.clone();
            fata::spawn(async move { disk.write(chunk * CHUNK_SECTORS, chunk_buffer(chunk)).await })
        })
        .collect();
    for (chunk, write) in writes.into_iter().enumerate() {
        let (_, result) = write.await;
        result.map_err(|e| failed(&format!("write of chunk {chunk}"), e))?;
    }
    disk.flush().await.map_err(|e| failed("flush", e))?;
    println!("wrote {count} chunks of 64 KiB, {count} in flight, and flushed");
    read_back(&disk, count).await?;

    // A grouped write is seen at once and stays after the flush that applies it.
    let grouped = count * CHUNK_SECTORS;
    let (_, result) = disk.write_grouped(grouped, chunk_buffer(count)).await;
    result.map_err(|e| failed("grouped write", e))?;
    let (buffer, result) = disk.read(grouped, BlockBuffer::new(CHUNK)).await;
    result.map_err(|e| failed("read of the grouped write", e))?;
    if !holds_pattern(count, &buffer) {
        return Err(Error::msg(
            "a read before the flush does not see the grouped write",
        ));
    }
    disk.flush()
        .await
        .map_err(|e| failed("flush of the grouped write", e))?;
    let (buffer, _) = disk.read(grouped, buffer).await;
    if !holds_pattern(count, &buffer) {
        return Err(Error::msg("the grouped write is gone after its flush"));
    }
    println!("a grouped write is seen before and after its flush");

    // Discarded sectors read back as zeros.
    let discarded = (count + 1) * CHUNK_SECTORS;
    let (_, result) = disk.write(discarded, chunk_buffer(count + 1)).await;
    result.map_err(|e| failed("write before the discard", e))?;
    disk.discard(discarded, CHUNK_SECTORS)
        .await
        .map_err(|e| failed("discard", e))?;
    let (buffer, result) = disk.read(discarded, BlockBuffer::new(CHUNK)).await;
    result.map_err(|e| failed("read of discarded sectors", e))?;
    if buffer.as_slice().iter().any(|&b| b != 0) {
        return Err(Error::msg("discarded sectors do not read back as zeros"));
    }
    disk.flush().await.map_err(|e| failed("last flush", e))?;
    println!("discarded sectors read back as zeros");
    println!("blockcheck: ok");
    Ok(())
}

/// Reads chunks `0..count` all at once and checks each holds its pattern.
async fn read_back(disk: &BlockDevice, count: u64) -> Result<()> {
    let reads: Vec<_> = (0..count)
        .map(|chunk| {
            let disk = disk.clone();
            fata::spawn(async move {
                disk.read(chunk * CHUNK_SECTORS, BlockBuffer::new(CHUNK))
                    .await
            })
        })
        .collect();
    for (chunk, read) in (0..).zip(reads) {
        let (buffer, result) = read.await;
        result.map_err(|e| failed(&format!("read of chunk {chunk}"), e))?;
        if !holds_pattern(chunk, &buffer) {
            return Err(Error::msg(format!(
                "chunk {chunk} does not hold what was written"
            )));
        }
    }
    println!("read back {count} chunks, {count} in flight");
    Ok(())
}

/// Checks that a read-only device refuses writes and discards, and flushes.
async fn refused(disk: &BlockDevice) -> Result<()> {
    let (_, plain) = disk.write(0, chunk_buffer(0)).await;
    let (_, grouped) = disk.write_grouped(0, chunk_buffer(0)).await;
    let discard = disk.discard(0, CHUNK_SECTORS).await;
    for (what, result) in [
        ("write", plain),
        ("grouped write", grouped),
        ("discard", discard),
    ] {
        if result != Err(DeviceError::ReadOnly) {
            return Err(Error::msg(format!(
                "a {what} on a read-only device gave {result:?}"
            )));
        }
    }
    disk.flush().await.map_err(|e| failed("flush", e))?;
    println!("read-only: writes, grouped writes and discards refused");
    println!("blockcheck: ok");
    Ok(())
}
