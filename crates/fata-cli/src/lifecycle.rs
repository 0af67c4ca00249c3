//! `fata ps`, `pause`, `resume`, `stop`, `snapshot` and `migrate`: the running hvt guests,
//! through their monitors' control sockets (`fata-control`).

use crate::Failure;
use clap::Args;
use fata_control::{ClientError, Info, Reply, Request};
use std::path::PathBuf;
use std::process::ExitCode;

/// Exit status when no guest has the name, or its monitor refused or failed the request.
pub const EXIT_CONTROL: u8 = 7;

/// `fata snapshot`.
#[derive(Args)]
pub struct SnapshotArgs {
    /// The guest's name, as `fata ps` lists it.
    name: String,
    /// The directory to write the snapshot to (created; it must not exist or be empty).
    #[arg(short = 'o', long = "output", value_name = "DIR")]
    dir: PathBuf,
    /// End the guest once the snapshot is written (`fata restore DIR` carries it on).
    #[arg(long)]
    stop: bool,
    /// Write only the memory changed since this run's last snapshot, which becomes the new
    /// one's parent: small and quick, and restorable while the parent is kept.
    #[arg(long)]
    diff: bool,
}

/// Asks the guest's monitor for a snapshot.
pub fn snapshot(args: &SnapshotArgs) -> Result<ExitCode, Failure> {
    let dir = std::path::absolute(&args.dir)
        .map_err(|e| Failure::new(2, format!("-o {}: {e}", args.dir.display())))?;
    send(
        &args.name,
        &Request::Snapshot {
            dir,
            stop: args.stop,
            diff: args.diff,
        },
    )
}

/// `fata migrate`.
#[derive(Args)]
pub struct MigrateArgs {
    /// The guest's name, as `fata ps` lists it.
    name: String,
    /// Where `fata receive --listen HOST:PORT` waits for it.
    #[arg(long, value_name = "HOST:PORT")]
    to: String,
}

/// Asks the guest's monitor to move it to another monitor.
pub fn migrate(args: &MigrateArgs) -> Result<ExitCode, Failure> {
    send(
        &args.name,
        &Request::Migrate {
            to: args.to.clone(),
        },
    )
}

/// `fata ps`.
#[derive(Args)]
pub struct PsArgs {
    /// Print the list as JSON (one array of objects), for scripts.
    #[arg(long)]
    json: bool,
}

/// Lists the running guests.
pub fn ps(args: &PsArgs) -> Result<ExitCode, Failure> {
    let names = fata_control::names().map_err(|e| {
        Failure::new(
            EXIT_CONTROL,
            format!("cannot list {}: {e}", fata_control::run_dir().display()),
        )
    })?;
    let mut guests = Vec::new();
    for name in names {
        // A monitor that was killed leaves its socket (the next one with that name replaces
        // it): it does not answer, and is not listed.
        if let Ok(Reply::Info(info)) = fata_control::request(&name, &Request::Info, &mut |_| {}) {
            guests.push(info);
        }
    }
    if args.json {
        let text = serde_json::to_string_pretty(&guests).map_err(|e| Failure::new(1, e))?;
        println!("{text}");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<20} {:<9} {:>8} {:>8} {:>9} {:>10}  {:<24} DEVICES",
        "NAME", "STATE", "PID", "MEMORY", "HOST-RSS", "UPTIME", "IMAGE"
    );
    for guest in &guests {
        println!("{}", row(guest));
    }
    Ok(ExitCode::SUCCESS)
}

/// One line of `fata ps`.
fn row(guest: &Info) -> String {
    let devices: Vec<String> = (guest.devices.iter())
        .map(|d| format!("{} {}={}", d.kind, d.name, d.host))
        .collect();
    let image = std::path::Path::new(&guest.image)
        .file_name()
        .map_or(guest.image.clone(), |f| f.to_string_lossy().into_owned());
    format!(
        "{:<20} {:<9} {:>8} {:>8} {:>9} {:>10}  {:<24} {}",
        guest.name,
        guest.state.as_str(),
        guest.pid,
        size(guest.mem_bytes),
        size(guest.rss_bytes),
        uptime(guest.uptime_ms),
        image,
        devices.join(", ")
    )
}

/// Bytes as `32M`, `1.5G`, `640K`.
fn size(bytes: u64) -> String {
    const K: f64 = 1024.0;
    let b = bytes as f64;
    if b >= K * K * K {
        format!("{:.1}G", b / (K * K * K))
    } else if b >= K * K {
        format!("{:.1}M", b / (K * K))
    } else {
        format!("{:.0}K", b / K)
    }
}

/// Milliseconds as `3.2s`, `5m12s`, `2h03m`.
fn uptime(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..60 => format!("{:.1}s", ms as f64 / 1000.0),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s / 60 % 60),
    }
}

/// Sends `request` to the guest `name`, printing progress on stderr and the outcome on stdout.
pub fn send(name: &str, request: &Request) -> Result<ExitCode, Failure> {
    let mut progress = |message: &str| eprintln!("fata: {name}: {message}");
    match fata_control::request(name, request, &mut progress) {
        Ok(Reply::Done { message }) => {
            println!("{name}: {message}");
            Ok(ExitCode::SUCCESS)
        }
        Ok(Reply::Failed { message }) => {
            Err(Failure::new(EXIT_CONTROL, format!("{name}: {message}")))
        }
        Ok(other) => Err(Failure::new(
            EXIT_CONTROL,
            format!("{name}: unexpected answer {other:?}"),
        )),
        Err(e @ ClientError::NotRunning { .. }) | Err(e @ ClientError::Io { .. }) => {
            Err(Failure::new(EXIT_CONTROL, e))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_uptimes_read_well() {
        assert_eq!(size(32 << 20), "32.0M");
        assert_eq!(size(640 << 10), "640K");
        assert_eq!(size(3 << 30), "3.0G");
        assert_eq!(uptime(3_200), "3.2s");
        assert_eq!(uptime(312_000), "5m12s");
        assert_eq!(uptime(7_380_000), "2h03m");
    }
}
