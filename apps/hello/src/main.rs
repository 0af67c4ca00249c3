//! Hello world, MirageOS style: prints `hello` and `world` in turn, `--count N` lines (default 4),
//! `--interval-ms M` apart (default 1000), then exits 0. The same source runs on every target.
#![no_std]
#![no_main]

use fata::{Duration, Env, Opt, Result, println};

/// The options hello takes.
const OPTIONS: &[Opt] = &[
    Opt::value("--count", "N", "how many lines to print (default 4)"),
    Opt::value(
        "--interval-ms",
        "MS",
        "the pause between lines (default 1000)",
    ),
];

#[fata::main(options = [OPTIONS])]
async fn main(env: Env) -> Result<()> {
    let count: u64 = env.arg("--count")?.unwrap_or(4);
    let interval = Duration::from_millis(env.arg("--interval-ms")?.unwrap_or(1000));
    for line in 0..count {
        if line > 0 {
            fata::sleep(interval).await;
        }
        println!("{}", if line % 2 == 0 { "hello" } else { "world" });
    }
    Ok(())
}
