//! Test guest for the hvt platform: prints what each platform service returns, in a form the
//! monitor's tests check line by line. Arguments steer it: `panic` panics, `exit=N` returns N.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use fata_hvt::Hvt;
use fata_platform::{Platform, ReadySet};

fn say(line: &str) {
    Hvt::console_write(line.as_bytes());
    Hvt::console_write(b"\n");
}

/// The app's entry point, called by fata-hvt's `_start`.
#[unsafe(no_mangle)]
extern "C" fn main() -> i32 {
    say("hello from the hvt test guest");
    let args = Hvt::args();
    say(&format!("args: {}", args.join("|")));

    let squares: Vec<u64> = (0..10_000u64).map(|i| i * i).collect();
    say(&format!("heap: {}", squares.iter().sum::<u64>()));
    let text: String = core::iter::repeat_n("fata ", 2000).collect();
    say(&format!("strings: {}", text.len()));

    let x = args.len() as f64 * 1.25;
    say(&format!("float: {x:.2}"));

    let wall_s = Hvt::wall_clock_ns() / 1_000_000_000;
    say(&format!("wall clock: {wall_s}"));
    let start = Hvt::monotonic_ns();
    let ready = Hvt::yield_until(ReadySet::EMPTY, Some(start + 3_000_000));
    let slept = Hvt::monotonic_ns() - start;
    let plausible = (3_000_000..100_000_000).contains(&slept);
    say(&format!(
        "slept 3 ms by the TSC: {plausible} (ready {})",
        ready.0
    ));

    let mut random = [0u8; 32];
    Hvt::random_fill(&mut random);
    say(&format!(
        "random nonzero: {}",
        random.iter().any(|&b| b != 0)
    ));
    say(&format!("devices: {}", Hvt::take_devices().len()));

    if args.iter().any(|a| a == "panic") {
        let empty: Vec<u8> = Vec::new();
        let _ = empty[args.len()];
    }
    args.iter()
        .find_map(|a| a.strip_prefix("exit=")?.parse().ok())
        .unwrap_or(0)
}
