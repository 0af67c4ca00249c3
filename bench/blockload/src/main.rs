//! `fata-blockload`: the Fata side of bench/block, fio's counterpart inside a Fata app.
//!
//! `--depth` tasks each keep one request of `--bs` bytes in flight on the block device `storage`
//! for `--seconds`: sequential reads or writes (`--pattern read|write`, each task taking the next
//! chunk of the device in turn, wrapping at its end) or random aligned reads (`randread`). The
//! requests of all tasks go to the host together whenever the executor waits; `--unbatched`
//! starts each request on its own instead (one doorbell exit per request on hvt), to show what
//! batching buys. Prints one line: bytes per second, requests per second and the totals.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::rc::Rc;
use alloc::vec::Vec;
use core::cell::Cell;
use core::convert::Infallible;
use core::future::pending;

use fata::{BlockBuffer, BlockDevice, Duration, Env, Instant, Opt, Random, Result, println};

const OPTIONS: &[Opt] = &[
    Opt::value("--pattern", "P", "read, write or randread (default read)"),
    Opt::value(
        "--bs",
        "BYTES",
        "bytes per request, whole sectors (default 131072)",
    ),
    Opt::value("--depth", "N", "requests in flight (default 32)"),
    Opt::value("--seconds", "S", "how long to run (default 5)"),
    Opt::flag(
        "--unbatched",
        "start every request on its own (one exit each on hvt)",
    ),
];

/// What the tasks do.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Pattern {
    Read,
    Write,
    RandRead,
}

/// What every task shares: the device, the next sequential chunk, the counters.
struct Load {
    device: BlockDevice,
    pattern: Pattern,
    bs: u64,
    chunks: u64,
    unbatched: bool,
    next: Cell<u64>,
    requests: Cell<u64>,
    failed: Cell<u64>,
}

#[fata::main(options = [OPTIONS])]
async fn main(mut env: Env) -> Result<()> {
    let pattern = match env.arg::<alloc::string::String>("--pattern")?.as_deref() {
        None | Some("read") => Pattern::Read,
        Some("write") => Pattern::Write,
        Some("randread") => Pattern::RandRead,
        Some(other) => {
            return Err(fata::Error::msg(alloc::format!(
                "--pattern {other}: expected read, write or randread"
            )));
        }
    };
    let bs: u64 = env.arg("--bs")?.unwrap_or(128 * 1024);
    let depth: u32 = env.arg("--depth")?.unwrap_or(32);
    let seconds: u64 = env.arg("--seconds")?.unwrap_or(5);
    let unbatched = env.flag("--unbatched");
    let device = env.take_block("storage")?;
    let geometry = device.geometry();
    let sector = u64::from(geometry.sector_size);
    if bs == 0 || !bs.is_multiple_of(sector) || bs > geometry.request_max {
        return Err(fata::Error::msg(alloc::format!(
            "--bs {bs}: give whole {sector}-byte sectors, at most {}",
            geometry.request_max
        )));
    }
    let chunks = geometry.sectors * sector / bs;
    if chunks == 0 {
        return Err(fata::Error::msg("the device is smaller than one request"));
    }
    let load = Rc::new(Load {
        device,
        pattern,
        bs,
        chunks,
        unbatched,
        next: Cell::new(0),
        requests: Cell::new(0),
        failed: Cell::new(0),
    });
    let start = Instant::now();
    let deadline = start + Duration::from_secs(seconds);
    let mut seed = [0u8; 8];
    fata::SysRandom.fill(&mut seed);
    let seed = u64::from_le_bytes(seed) | 1;
    let tasks: Vec<_> = (0..depth)
        .map(|i| {
            fata::spawn(worker(
                load.clone(),
                deadline,
                seed.wrapping_mul(u64::from(i) * 2 + 1),
            ))
        })
        .collect();
    for task in tasks {
        task.await;
    }
    let took = start.elapsed().as_secs_f64();
    let requests = load.requests.get();
    let bytes = requests * bs;
    println!(
        "blockload: {} bs={bs} depth={depth}{}: {:.1} MiB/s {:.0} IOPS ({requests} requests, {} failed, {took:.2} s)",
        match pattern {
            Pattern::Read => "read",
            Pattern::Write => "write",
            Pattern::RandRead => "randread",
        },
        if unbatched { " unbatched" } else { "" },
        bytes as f64 / took / (1024.0 * 1024.0),
        requests as f64 / took,
        load.failed.get(),
    );
    if load.failed.get() > 0 {
        return Err(fata::Error::msg("some requests failed"));
    }
    Ok(())
}

/// One request after another until `deadline`.
async fn worker(load: Rc<Load>, deadline: Instant, mut random: u64) {
    let sectors_per_chunk = load.bs / u64::from(load.device.sector_size());
    let mut buffer = BlockBuffer::new(load.bs as usize);
    if load.pattern == Pattern::Write {
        buffer.as_mut_slice().fill(0x5a);
    }
    while Instant::now() < deadline {
        let chunk = match load.pattern {
            Pattern::RandRead => {
                // xorshift64: cheap, and good enough to spread reads over the device.
                random ^= random << 13;
                random ^= random >> 7;
                random ^= random << 17;
                random % load.chunks
            }
            _ => {
                let chunk = load.next.get();
                load.next.set((chunk + 1) % load.chunks);
                chunk
            }
        };
        let sector = chunk * sectors_per_chunk;
        let request = async {
            match load.pattern {
                Pattern::Write => load.device.write(sector, buffer).await,
                _ => load.device.read(sector, buffer).await,
            }
        };
        let (back, result) = if load.unbatched {
            // `select` polls the request first (queueing it), then the kick, which starts it.
            let kick = async {
                load.device.start();
                pending::<Infallible>().await
            };
            match fata::select(request, kick).await {
                fata::Either::Left(done) => done,
                fata::Either::Right(never) => match never {},
            }
        } else {
            request.await
        };
        buffer = back;
        match result {
            Ok(()) => load.requests.set(load.requests.get() + 1),
            Err(_) => load.failed.set(load.failed.get() + 1),
        }
    }
}
