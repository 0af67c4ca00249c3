//! `fata`: create, build and run Fata apps.
//!
//! ```text
//! fata new NAME                                   a new app crate that builds and runs
//! fata build [--target unix|hvt] [--release] [PATH]
//!                                                 prints the executable's path as its last line
//! fata run [--target unix|hvt] [--release] [PATH | IMAGE] [--mem SIZE] [--net [NAME=]TAP|packet:IFACE|fd:N]
//!          [--mac [NAME=]MAC] [--block [NAME=]FILE[:ro|:cow]] [--kv [NAME=]DIR|IMG] [--stats]
//!          [-- APP ARGS...]
//! fata disk create DIR -o IMG [--size N] [--label NAME] [--force]
//! fata disk list IMG | fata disk copy IMG PATH [DEST]   FAT images (see `disk`)
//! fata ps [--json] | fata pause|resume|stop NAME        running hvt guests (see `lifecycle`)
//! fata snapshot NAME -o DIR [--stop] [--diff] | fata restore DIR [--name N] [--net ..] [--block ..]
//! fata migrate NAME --to HOST:PORT | fata receive --listen HOST:PORT [--net ..] [--block ..]
//! fata summon CONFIG                              DNS that starts services when looked up
//! ```
//!
//! Exit status: the app's own status for `run`; 2 for a command line `fata` does not understand
//! or whose devices are not those the app declares (see `declared`); 3 when the app cannot be
//! built (no crate, compiler error, unusable declarations); 4 when it cannot be started; 5 when
//! a host file the app declares (see `host_files`) cannot be read or converted; 6 when `fata disk`
//! cannot make or read an image; 7 when `fata ps`, `pause`, `resume`, `stop`, `snapshot` or `migrate` finds no guest by
//! that name or its monitor refuses; 8 when `fata summon` refuses its configuration or cannot set
//! up its socket and taps; the monitor's documented codes (`fata_monitor::Error::exit_code`)
//! when an hvt guest cannot boot or misbehaves.

mod declared;
mod disk;
mod host_files;
mod lifecycle;
mod new;
mod virtio;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use fata_build::Target;
use fata_device_spec::{BlockMode, DEFAULT_BLOCK, DEFAULT_KV, DEFAULT_NET, Spec};

/// Exit status when the app cannot be built.
const EXIT_BUILD: u8 = 3;
/// Exit status when the app cannot be started.
const EXIT_START: u8 = 4;

#[derive(Parser)]
#[command(
    name = "fata",
    version,
    about = "Build and run Fata apps as Linux processes or KVM unikernels"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a new app crate NAME (a directory) that builds and runs on every target.
    New {
        /// The directory and crate name to create.
        name: PathBuf,
    },
    /// Build the app at PATH (default: the current directory); prints the executable's path last.
    Build {
        #[command(flatten)]
        build: BuildOptions,
        /// The app's crate directory.
        #[arg(default_value = ".")]
        path: PathBuf,
    },
    /// Build (when given a crate) and run an app; a file is run as an already built image.
    Run(RunArgs),
    /// Make FAT disk images from directories, list them and copy files out.
    Disk(disk::DiskArgs),
    /// List the running hvt guests: name, state, pid, memory, uptime, image, devices.
    Ps(lifecycle::PsArgs),
    /// Pause the guest NAME: its vCPU stops until `fata resume NAME`.
    Pause {
        /// The guest's name, as `fata ps` lists it.
        name: String,
    },
    /// Resume the guest NAME after `fata pause`.
    Resume {
        /// The guest's name, as `fata ps` lists it.
        name: String,
    },
    /// Stop the guest NAME: its monitor ends it and exits with 143, as on SIGTERM.
    Stop {
        /// The guest's name, as `fata ps` lists it.
        name: String,
    },
    /// Write a snapshot of the running guest NAME to a directory (`fata restore` carries it on).
    Snapshot(lifecycle::SnapshotArgs),
    /// Carry on the guest saved in a snapshot directory, here, on these devices.
    Restore(RestoreArgs),
    /// Move the running guest NAME to the `fata receive` at HOST:PORT, while it runs.
    Migrate(lifecycle::MigrateArgs),
    /// Wait at HOST:PORT for one guest `fata migrate` sends, and carry it on here.
    Receive(ReceiveArgs),
    /// Serve DNS for a zone of services and start each one when its name is looked up.
    Summon {
        /// The configuration (TOML): the zone, and each service's name, image or snapshot,
        /// address and idle timeout; docs/summon.md describes it.
        config: PathBuf,
    },
    /// Wait on the socket FD for one command line and tap from `fata summon`, then run it as
    /// this process: a monitor started ahead of need.
    #[command(name = fata_summon::standby::SUBCOMMAND, hide = true)]
    Standby {
        /// The inherited socket.
        fd: i32,
    },
}

/// The devices and options of a guest carried on from elsewhere (`restore`, `receive`).
#[derive(Args)]
struct ArrivalArgs {
    /// The name to run under (default: the name it had, or that name and a number when it is
    /// taken).
    #[arg(long)]
    name: Option<String>,
    /// Attach network interface NAME (default `service`) to the tap TAP, to `packet:IFACE` or
    /// to `fd:N`, a tap inherited open (default: the link it had).
    #[arg(long, value_name = "[NAME=]TAP|packet:IFACE|fd:N")]
    net: Vec<String>,
    /// Back block device NAME (default `storage`) with FILE, of the same size as before
    /// (default: the file it had, in the mode it had).
    #[arg(long, value_name = "[NAME=]FILE[:ro|:cow]")]
    block: Vec<String>,
    /// Print the monitor's counters (exits, time) when the guest ends.
    #[arg(long)]
    stats: bool,
}

#[derive(Args)]
struct RestoreArgs {
    /// The snapshot directory (`fata snapshot NAME -o DIR` wrote it).
    dir: PathBuf,
    #[command(flatten)]
    arrival: ArrivalArgs,
}

#[derive(Args)]
struct ReceiveArgs {
    /// The address to wait at, as HOST:PORT.
    #[arg(long, value_name = "HOST:PORT")]
    listen: String,
    #[command(flatten)]
    arrival: ArrivalArgs,
}

#[derive(Args)]
struct BuildOptions {
    /// Where the app runs: `unix` (a Linux process), `hvt` (a unikernel in Fata's KVM monitor)
    /// or `virtio` (a unikernel QEMU boots).
    #[arg(long, value_parser = parse_target)]
    target: Option<Target>,
    /// Build with optimisations.
    #[arg(long)]
    release: bool,
}

#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    build: BuildOptions,
    /// The app's crate directory, or an image built before (default: the current directory).
    #[arg(default_value = ".")]
    path: PathBuf,
    /// Guest memory for hvt, e.g. 32M, 512K, 1G (default 32M).
    #[arg(long, value_parser = fata_disk::parse_size)]
    mem: Option<u64>,
    /// A network interface named NAME (default `service`), backed by the tap device TAP, or on
    /// hvt by the AF_PACKET rings of the existing interface IFACE (`packet:IFACE`: a veth, a
    /// macvlan, a NIC) or by the tap descriptor N inherited open (`fd:N`).
    #[arg(long, value_name = "[NAME=]TAP|packet:IFACE|fd:N")]
    net: Vec<String>,
    /// The MAC address of network interface NAME (default `service`) on hvt, as 02:00:00:00:00:01;
    /// a random locally administered one otherwise.
    #[arg(long, value_name = "[NAME=]MAC")]
    mac: Vec<String>,
    /// A block device backed by FILE (a disk image or a block device such as /dev/loop0), named
    /// NAME (default `storage`); FILE:ro refuses writes, FILE:cow keeps them in memory and never
    /// changes FILE.
    #[arg(long, value_name = "[NAME=]FILE[:ro|:cow]")]
    block: Vec<String>,
    /// A read-only key-value store named NAME (default `data`): the files below the directory
    /// DIR, or the files of the FAT image IMG (`fata disk create` makes one).
    #[arg(long, value_name = "[NAME=]DIR|IMG")]
    kv: Vec<String>,
    /// Print the monitor's counters (exits, time) when the guest ends (hvt).
    #[arg(long)]
    stats: bool,
    /// The name the guest runs under, for `fata ps`, `pause`, `snapshot` and the rest (hvt;
    /// default: the image's name and the smallest free number, as `dns-1`).
    #[arg(long)]
    name: Option<String>,
    /// While packets keep arriving faster than the app wakes for them, wake it at most once per
    /// this many microseconds, so each wake-up serves a batch (default: the app's
    /// `[package.metadata.fata] coalesce-us`, carried in its image, else 0: wake at once for every
    /// packet).
    #[arg(long, value_name = "MICROSECONDS")]
    coalesce_us: Option<u64>,
    /// The app's own arguments, after `--`.
    #[arg(last = true)]
    app_args: Vec<String>,
}

fn parse_target(name: &str) -> Result<Target, String> {
    name.parse()
}

fn main() -> ExitCode {
    execute(Cli::parse()).unwrap_or_else(|failure| {
        eprintln!("fata: {}", failure.message);
        ExitCode::from(failure.status)
    })
}

/// Runs one command line.
fn execute(cli: Cli) -> Result<ExitCode, Failure> {
    match cli.command {
        Command::New { name } => new::create(&name).map(|()| ExitCode::SUCCESS),
        Command::Build { build, path } => build_app(&path, &build).map(|image| {
            println!("{}", image.display());
            ExitCode::SUCCESS
        }),
        Command::Run(run) => run_app(run),
        Command::Disk(disk) => disk::run(disk),
        Command::Ps(args) => lifecycle::ps(&args),
        Command::Pause { name } => lifecycle::send(&name, &fata_control::Request::Pause),
        Command::Resume { name } => lifecycle::send(&name, &fata_control::Request::Resume),
        Command::Stop { name } => lifecycle::send(&name, &fata_control::Request::Stop),
        Command::Snapshot(args) => lifecycle::snapshot(&args),
        Command::Migrate(args) => lifecycle::migrate(&args),
        Command::Restore(args) => arrive(
            fata_monitor::Origin::Snapshot(args.dir.clone()),
            &args.arrival,
        ),
        Command::Receive(args) => arrive(
            fata_monitor::Origin::Listen(args.listen.clone()),
            &args.arrival,
        ),
        Command::Summon { config } => summon(&config),
        Command::Standby { fd } => standby(fd),
    }
}

/// `fata standby FD`: waits for `fata summon` to send a command line, then runs it.
fn standby(fd: i32) -> Result<ExitCode, Failure> {
    let fail = |e: std::io::Error| Failure::new(4, format!("standby: {e}"));
    match fata_summon::standby::wait_for_command(fd).map_err(fail)? {
        None => Ok(ExitCode::SUCCESS),
        Some(args) => {
            let cli = Cli::parse_from(std::iter::once("fata".into()).chain(args));
            if matches!(cli.command, Command::Standby { .. }) {
                return Err(Failure::new(2, "standby: a standby cannot run another"));
            }
            execute(cli)
        }
    }
}

/// `fata summon CONFIG`: serves the zone and its services until the daemon is stopped.
fn summon(config: &Path) -> Result<ExitCode, Failure> {
    let fata = std::env::current_exe().map_err(|e| {
        Failure::new(
            4,
            format!("cannot find the fata executable to start services with: {e}"),
        )
    })?;
    fata_summon::run(config, &fata).map_err(|e| Failure::new(8, e))?;
    Ok(ExitCode::SUCCESS)
}

/// Why a command failed: what to tell the person and the exit status.
struct Failure {
    message: String,
    status: u8,
}

impl Failure {
    fn new(status: u8, message: impl ToString) -> Failure {
        Failure {
            message: message.to_string(),
            status,
        }
    }
}

fn build_app(path: &Path, options: &BuildOptions) -> Result<PathBuf, Failure> {
    let target = options.target.unwrap_or(Target::Unix);
    eprintln!(
        "fata: building {} for {target} ({})",
        path.display(),
        if options.release { "release" } else { "debug" }
    );
    let request = fata_build::Request {
        crate_dir: path.to_path_buf(),
        target,
        release: options.release,
    };
    fata_build::build(&request).map_err(|e| Failure::new(EXIT_BUILD, e))
}

fn run_app(mut run: RunArgs) -> Result<ExitCode, Failure> {
    let is_image = run.path.is_file();
    if !is_image {
        let info = fata_build::crate_info(&run.path).map_err(|e| Failure::new(EXIT_BUILD, e))?;
        if let Some(dir) = host_files::prepare(&info, &run.path, &mut run.app_args, &run.kv)? {
            run.kv
                .push(format!("{}={}", host_files::STORE, dir.display()));
        }
    }
    check_device_names(&run)?;
    let target = run.build.target.unwrap_or(match run.path.extension() {
        Some(ext) if is_image && ext == "virtio" => Target::Virtio,
        _ if is_image => Target::Hvt,
        _ => Target::Unix,
    });
    let image = if is_image {
        run.path.clone()
    } else {
        build_app(&run.path, &run.build)?
    };
    if let Some(manifest) = declared::check(&image, target, &run)? {
        run.coalesce_us = run.coalesce_us.or(Some(manifest.coalesce_us()));
    }
    match target {
        Target::Unix => run_unix(&image, &run),
        Target::Hvt => run_hvt(&image, &run),
        Target::Virtio => virtio::run(&image, &run),
    }
}

/// Replaces this process with the app, its devices named in `FATA_*` variables (see `fata-unix`).
fn run_unix(executable: &Path, run: &RunArgs) -> Result<ExitCode, Failure> {
    use std::os::unix::process::CommandExt;
    if run.mem.is_some() || run.stats || run.name.is_some() {
        return Err(Failure::new(
            2,
            "--mem, --stats and --name apply to the hvt target only",
        ));
    }
    if !run.mac.is_empty() {
        return Err(Failure::new(
            2,
            "--mac applies to the hvt target only: on unix the app's network stack picks a random \
             MAC address for its tap device; leave --mac out (or run with --target hvt)",
        ));
    }
    let mut command = std::process::Command::new(executable);
    command.args(&run.app_args);
    for (variable, specs) in [
        ("FATA_NET", &run.net),
        ("FATA_BLOCK", &run.block),
        ("FATA_KV", &run.kv),
    ] {
        if !specs.is_empty() {
            command.env(variable, specs.join(","));
        }
    }
    if let Some(us) = run.coalesce_us {
        command.env("FATA_COALESCE_US", us.to_string());
    }
    let error = command.exec();
    Err(Failure::new(
        EXIT_START,
        format!("cannot start {}: {error}", executable.display()),
    ))
}

/// Boots the image under Fata's KVM monitor, in this process.
fn run_hvt(image: &Path, run: &RunArgs) -> Result<ExitCode, Failure> {
    let nets = net_configs(run)?;
    let blocks = (run.block.iter())
        .map(|text| block_config(text))
        .collect::<Result<_, Failure>>()?;
    let kvs = run
        .kv
        .iter()
        .map(|spec| {
            let spec = device_spec("--kv", spec, DEFAULT_KV)?;
            Ok(fata_monitor::KvConfig {
                name: spec.name,
                dir: PathBuf::from(spec.value),
            })
        })
        .collect::<Result<_, Failure>>()?;
    let config = fata_monitor::Config {
        mem_bytes: run.mem.unwrap_or(fata_monitor::DEFAULT_MEM_BYTES),
        args: run.app_args.clone(),
        stats: run.stats,
        nets,
        blocks,
        kvs,
        net_coalesce: Duration::from_micros(run.coalesce_us.unwrap_or(0)),
        name: run.name.clone(),
    };
    monitor_outcome(fata_monitor::run(image, &config))
}

/// Carries on a guest from a snapshot or a migration, under Fata's KVM monitor in this process.
fn arrive(origin: fata_monitor::Origin, args: &ArrivalArgs) -> Result<ExitCode, Failure> {
    let nets = (args.net.iter())
        .map(|text| {
            let spec = device_spec("--net", text, DEFAULT_NET)?;
            Ok(fata_monitor::NetConfig {
                name: spec.name,
                tap: spec.value,
                mac: None,
            })
        })
        .collect::<Result<_, Failure>>()?;
    let blocks = (args.block.iter())
        .map(|text| block_config(text))
        .collect::<Result<_, Failure>>()?;
    let config = fata_monitor::ArrivalConfig {
        name: args.name.clone(),
        nets,
        blocks,
        stats: args.stats,
    };
    monitor_outcome(fata_monitor::arrive(&origin, &config))
}

/// The process's exit for what the monitor returned.
fn monitor_outcome(
    result: Result<fata_monitor::GuestExit, fata_monitor::Error>,
) -> Result<ExitCode, Failure> {
    match result {
        Ok(exit) => {
            if let Some(note) = &exit.note {
                eprintln!("fata: {note}");
            }
            Ok(ExitCode::from(exit.status as u8))
        }
        Err(error) => {
            let status = u8::try_from(error.exit_code()).unwrap_or(u8::MAX);
            Err(Failure::new(status, error))
        }
    }
}

/// Parses one `--block [NAME=]FILE[:ro|:cow]`.
fn block_config(text: &str) -> Result<fata_monitor::BlockConfig, Failure> {
    let spec = device_spec("--block", text, DEFAULT_BLOCK)?;
    let (path, mode) = fata_device_spec::block_mode(&spec.value)
        .map_err(|e| Failure::new(2, format!("--block {text}: {e}")))?;
    Ok(fata_monitor::BlockConfig {
        name: spec.name,
        path: PathBuf::from(path),
        mode: match mode {
            BlockMode::ReadWrite => fata_monitor::BlockMode::ReadWrite,
            BlockMode::ReadOnly => fata_monitor::BlockMode::ReadOnly,
            BlockMode::CopyOnWrite => fata_monitor::BlockMode::CopyOnWrite,
        },
    })
}

/// Parses `--net` and `--mac` into the monitor's network devices.
fn net_configs(run: &RunArgs) -> Result<Vec<fata_monitor::NetConfig>, Failure> {
    let mut nets = run
        .net
        .iter()
        .map(|spec| {
            let spec = device_spec("--net", spec, DEFAULT_NET)?;
            Ok(fata_monitor::NetConfig {
                name: spec.name,
                tap: spec.value,
                mac: None,
            })
        })
        .collect::<Result<Vec<_>, Failure>>()?;
    for text in &run.mac {
        let spec = device_spec("--mac", text, DEFAULT_NET)?;
        let mac = parse_mac(&spec.value).ok_or_else(|| {
            Failure::new(
                2,
                format!(
                    "--mac {text}: {:?} is not a MAC address like 02:00:00:00:00:01",
                    spec.value
                ),
            )
        })?;
        let net = nets
            .iter_mut()
            .find(|n| n.name == spec.name)
            .ok_or_else(|| {
                Failure::new(
                    2,
                    format!("--mac {text}: there is no --net named {}", spec.name),
                )
            })?;
        net.mac = Some(mac);
    }
    Ok(nets)
}

/// Parses one `[NAME=]VALUE` device option: the one parser of device specs, whose rule every
/// target shares (`fata_device_spec`).
fn device_spec(option: &str, text: &str, default_name: &str) -> Result<Spec, Failure> {
    fata_device_spec::parse(text, default_name)
        .map_err(|e| Failure::new(2, format!("{option} {text}: {e}")))
}

/// Checks the devices of every kind together: each name usable, no name given twice.
fn check_device_names(run: &RunArgs) -> Result<(), Failure> {
    let mut names = Vec::new();
    for (option, specs, default_name) in [
        ("--net", &run.net, DEFAULT_NET),
        ("--block", &run.block, DEFAULT_BLOCK),
        ("--kv", &run.kv, DEFAULT_KV),
    ] {
        for text in specs {
            let spec = device_spec(option, text, default_name)?;
            if option == "--block" {
                fata_device_spec::block_mode(&spec.value)
                    .map_err(|e| Failure::new(2, format!("{option} {text}: {e}")))?;
            }
            names.push(spec.name);
        }
    }
    fata_device_spec::check_unique(names.iter().map(String::as_str)).map_err(|e| Failure::new(2, e))
}

/// Parses six hex bytes separated by `:` or `-`.
fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = text.split([':', '-']);
    for byte in &mut mac {
        let part = parts.next()?;
        if part.is_empty() || part.len() > 2 {
            return None;
        }
        *byte = u8::from_str_radix(part, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_parses() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from([
            "fata",
            "run",
            "--target",
            "hvt",
            "apps/hello",
            "--mem",
            "64M",
            "--",
            "--count",
            "1",
        ])
        .unwrap();
        let Command::Run(run) = cli.command else {
            panic!("not run")
        };
        assert_eq!(run.build.target, Some(Target::Hvt));
        assert_eq!(run.mem, Some(64 << 20));
        assert_eq!(run.app_args, ["--count", "1"]);
        assert!(Cli::try_parse_from(["fata", "build", "--target", "xen"]).is_err());
    }

    #[test]
    fn macs_parse() {
        assert_eq!(
            parse_mac("02:00:00:0a:Bc:01"),
            Some([2, 0, 0, 0x0a, 0xbc, 1])
        );
        assert_eq!(parse_mac("02-00-00-00-00-01"), Some([2, 0, 0, 0, 0, 1]));
        for bad in [
            "",
            "02:00:00:00:00",
            "02:00:00:00:00:01:02",
            "0g:00:00:00:00:01",
            "002:0:0:0:0:1",
        ] {
            assert_eq!(parse_mac(bad), None, "{bad}");
        }
    }
}
