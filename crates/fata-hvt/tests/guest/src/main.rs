//! Test guest for the hvt platform: prints what each platform service returns, in a form the
//! monitor's tests check line by line. Arguments steer it: `panic` panics, `exit=N` returns N,
//! `write=KEY` stores into the read-only value of KEY in the first key-value store (which must
//! fault).
#![no_std]
#![no_main]

extern crate alloc;

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use fata_hvt::Hvt;
use fata_platform::{Device, Kv, Platform, ReadySet};

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
    let devices = Hvt::take_devices();
    say(&format!("devices: {}", devices.len()));
    for device in &devices {
        if let Device::Kv(name, kv) = device {
            describe_kv(name, kv.as_ref());
        }
    }

    if let Some(key) = args.iter().find_map(|a| a.strip_prefix("write=")) {
        let stores = fata_hvt::kv::devices();
        if let Some(value) = stores.first().and_then(|(_, kv)| kv.value(key)) {
            say(&format!("writing {key}"));
            let last = value.len().saturating_sub(1);
            // SAFETY: deliberately stores into the read-only region the monitor mapped: the store
            // must fault, ending the guest before anything can observe the changed byte.
            unsafe { core::ptr::write_volatile(value[last..].as_ptr().cast_mut(), 0x55) };
            say("the write went through");
            return 3;
        }
    }

    if args.iter().any(|a| a == "panic") {
        let empty: Vec<u8> = Vec::new();
        let _ = empty[args.len()];
    }
    args.iter()
        .find_map(|a| a.strip_prefix("exit=")?.parse().ok())
        .unwrap_or(0)
}

/// Prints a store's keys, each value's size and a checksum of its bytes read in odd-sized chunks,
/// and the errors for a missing key.
fn describe_kv(name: &str, kv: &dyn Kv) {
    let keys = kv.list().unwrap_or_default();
    say(&format!("kv {name}: {} keys", keys.len()));
    for key in &keys {
        let size = kv.size(key).unwrap_or(u64::MAX);
        let (mut sum, mut at, mut buf) = (0u64, 0u64, [0u8; 1000]);
        loop {
            match kv.read(key, at, &mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    sum = buf[..n]
                        .iter()
                        .fold(sum, |s, &b| s.wrapping_mul(31).wrapping_add(u64::from(b)));
                    at += n as u64;
                }
                Err(e) => {
                    say(&format!("kv {name}: read {key} at {at}: {e}"));
                    break;
                }
            }
        }
        let get = kv.get(key).map(|v| v.len() as u64);
        say(&format!("kv {name} {key}: {size} bytes, read {at}, get {get:?}, sum {sum:x}"));
    }
    let mut one = [0u8; 1];
    say(&format!(
        "kv {name} missing: {:?} {:?}",
        kv.size("no/such/key"),
        kv.read("no/such/key", 0, &mut one)
    ));
}
