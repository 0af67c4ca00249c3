//! Builds a Fata app for a target: the one place that knows how.
//!
//! - **unix**: a plain `cargo build`; the app links `fata-unix` and is an ordinary executable.
//! - **hvt**: the same crate, built for `x86_64-unknown-linux-gnu` in freestanding mode on stable
//!   Rust: `--cfg fata_target="hvt"` selects the guest platform, and static, non-PIE,
//!   `panic=abort` code is linked with Fata's link script at 1 MiB. The flags reach only the
//!   guest's own code (an explicit `--target` keeps them away from build scripts and proc-macros),
//!   and guest builds get their own target directory so host and guest artifacts do not evict
//!   each other.
//! - **virtio**: the same freestanding build with `--cfg fata_target="virtio"` and the PVH link
//!   script, giving an ELF that QEMU (`-kernel`) and other standard VMMs boot.
//!
//! On both targets the app's declarations (`[package.metadata.fata]`: its devices and settings,
//! read by the `declarations` module) go into the executable as its manifest note, which `fata run` checks the
//! command line against before it starts the app: the build hands the note's bytes to the compile
//! in `FATA_MANIFEST_NOTE`, and `#[fata::main]` places them in `.note.fata` (fata-macros says why
//! that way).
//!
//! Cargo's own progress and diagnostics stream to stderr as it builds; on failure the error
//! carries the compiler's first error so the caller can say what went wrong.

mod declarations;

use std::fmt;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::str::FromStr;

/// Fata's hvt link script (image at 1 MiB, separate R-X / R / RW segments).
pub const LINK_SCRIPT: &str = include_str!("../../fata-hvt/link.ld");

/// Fata's virtio link script (a PVH ELF at 1 MiB: the entry note and the manifest note).
pub const VIRTIO_LINK_SCRIPT: &str = include_str!("../../fata-virtio/link.ld");

/// The Rust target both Fata targets compile for; guest builds pass it as `--target`, so
/// [`guest_rustflags`] reach only the guest's own code.
pub const RUST_TARGET: &str = "x86_64-unknown-linux-gnu";

/// The variable that hands the compile the app's manifest note, as hex (`#[fata::main]` reads it
/// with `option_env!`).
pub const MANIFEST_VARIABLE: &str = "FATA_MANIFEST_NOTE";

/// Where a Fata app runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// An ordinary Linux process.
    Unix,
    /// A unikernel booted by Fata's KVM monitor.
    Hvt,
    /// A PVH unikernel with virtio devices, booted by QEMU or another standard VMM.
    Virtio,
}

impl Target {
    /// Whether the target builds a freestanding unikernel image (not a process).
    pub fn is_unikernel(self) -> bool {
        self != Target::Unix
    }

    /// The link script of a unikernel target.
    fn link_script(self) -> &'static str {
        match self {
            Target::Virtio => VIRTIO_LINK_SCRIPT,
            Target::Unix | Target::Hvt => LINK_SCRIPT,
        }
    }
}

impl FromStr for Target {
    type Err = String;

    fn from_str(name: &str) -> Result<Target, String> {
        match name {
            "unix" => Ok(Target::Unix),
            "hvt" => Ok(Target::Hvt),
            "virtio" => Ok(Target::Virtio),
            other => Err(format!(
                "unknown target {other:?}: Fata builds for `unix` (a Linux process), `hvt` (a unikernel in Fata's KVM monitor) or `virtio` (a unikernel for QEMU and other VMMs)"
            )),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Target::Unix => "unix",
            Target::Hvt => "hvt",
            Target::Virtio => "virtio",
        })
    }
}

/// What to build.
#[derive(Debug, Clone)]
pub struct Request {
    /// The app's crate directory (holding `Cargo.toml`).
    pub crate_dir: PathBuf,
    /// The target to build for.
    pub target: Target,
    /// Optimised build (`--release`).
    pub release: bool,
}

/// Why a build failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No `Cargo.toml` where the app should be.
    #[error("no crate at {0}: expected a Cargo.toml there (create one with `fata new NAME`)")]
    NoCrate(PathBuf),
    /// Cargo could not be started.
    #[error("cannot run cargo ({0}): is the Rust toolchain installed and on PATH?")]
    Cargo(std::io::Error),
    /// Cargo's metadata could not be read.
    #[error("cannot read the crate's metadata: {0}")]
    Metadata(String),
    /// The app's declarations (`[package.metadata.fata]`) are not usable.
    #[error("{name}'s Cargo.toml: {what}")]
    Declarations {
        /// The package's name.
        name: String,
        /// What is wrong, and what to write instead.
        what: String,
    },
    /// The compiler reported an error.
    #[error("the build failed; the compiler's first error:\n{0}")]
    Compile(String),
    /// Cargo failed without a compiler error (a dependency could not be fetched, a bad manifest).
    #[error("cargo failed (see its output above)")]
    CargoFailed,
    /// The crate built but has no executable.
    #[error("the crate at {0} built no executable: an app needs a [[bin]] (src/main.rs)")]
    NoExecutable(PathBuf),
    /// The guest image could not be stripped.
    #[error("cannot strip the guest image ({0}): is binutils installed?")]
    Strip(std::io::Error),
    /// Writing the link script failed.
    #[error("cannot write the link script to {0}: {1}")]
    LinkScript(PathBuf, std::io::Error),
}

/// The rustflags of a guest build for `target`, linked with the script at `link_script`.
pub fn guest_rustflags(target: Target, link_script: &Path) -> Vec<String> {
    let mut flags: Vec<String> = vec!["--cfg".into(), format!("fata_target=\"{target}\"")];
    flags.extend(
        [
            "-Cpanic=abort",
            "-Crelocation-model=static",
            "-Ccode-model=small",
            "-Ctarget-feature=+crt-static",
            "-Clink-arg=-nostartfiles",
            "-Clink-arg=-static",
            "-Clink-arg=-no-pie",
            "-Clink-arg=-Wl,--gc-sections",
            "-Clink-arg=-Wl,--build-id=none",
            "-Clink-arg=-Wl,-z,norelro",
            "-Clink-arg=-Wl,-z,noseparate-code",
            "-Clink-arg=-Wl,-z,max-page-size=64",
        ]
        .map(String::from),
    );
    flags.push(format!("-Clink-arg=-T{}", link_script.display()));
    flags
}

/// Builds the app and returns the path of the executable; for a unikernel, the stripped image
/// `NAME.hvt` or `NAME.virtio` beside the linked ELF `NAME`.
pub fn build(request: &Request) -> Result<PathBuf, Error> {
    let manifest = request.crate_dir.join("Cargo.toml");
    if !manifest.is_file() {
        return Err(Error::NoCrate(request.crate_dir.clone()));
    }
    let manifest = manifest
        .canonicalize()
        .map_err(|_| Error::NoCrate(request.crate_dir.clone()))?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let info = crate_info_of(&cargo, &manifest)?;
    let declared =
        declarations::manifest(&info.fata_metadata).map_err(|what| Error::Declarations {
            name: info.name.clone(),
            what,
        })?;
    let note: String = declared
        .to_note()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    let mut command = Command::new(&cargo);
    command
        .arg("build")
        .arg("--manifest-path")
        .arg(&manifest)
        .arg("--message-format=json")
        .env(MANIFEST_VARIABLE, note)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if request.release {
        command.arg("--release");
    }
    if request.target.is_unikernel() {
        let guest_dir = info.target_dir.join(format!("fata-{}", request.target));
        let script = guest_dir.join(link_script_name(request.target));
        std::fs::create_dir_all(&guest_dir)
            .and_then(|()| write_if_changed(&script, request.target.link_script()))
            .map_err(|e| Error::LinkScript(script.clone(), e))?;
        command
            .arg("--target")
            .arg(RUST_TARGET)
            .arg("--target-dir")
            .arg(&guest_dir)
            .env_remove("RUSTFLAGS")
            .env(
                "CARGO_ENCODED_RUSTFLAGS",
                guest_rustflags(request.target, &script).join("\x1f"),
            );
    }
    let mut child = command.spawn().map_err(Error::Cargo)?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut first_error = None;
    let mut executable = None;
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        let Ok(message) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        match message["reason"].as_str() {
            Some("compiler-message") => {
                let rendered = message["message"]["rendered"].as_str().unwrap_or_default();
                eprint!("{rendered}");
                if message["message"]["level"] == "error" && first_error.is_none() {
                    first_error = Some(rendered.trim_end().to_string());
                }
            }
            Some("compiler-artifact")
                if Path::new(message["manifest_path"].as_str().unwrap_or_default()) == manifest =>
            {
                if let Some(path) = message["executable"].as_str() {
                    executable = Some(PathBuf::from(path));
                }
            }
            _ => {}
        }
    }
    let status = child.wait().map_err(Error::Cargo)?;
    if !status.success() {
        return Err(first_error.map_or(Error::CargoFailed, Error::Compile));
    }
    let executable = executable.ok_or_else(|| Error::NoExecutable(request.crate_dir.clone()))?;
    match request.target {
        Target::Unix => Ok(executable),
        target => strip_image(&executable, target),
    }
}

/// Writes `ELF.hvt` (or `ELF.virtio`) beside the linked guest, without symbols: the image to boot
/// and ship. The linked ELF keeps its symbols for `addr2line` on a fault address.
fn strip_image(elf: &Path, target: Target) -> Result<PathBuf, Error> {
    let image = elf.with_extension(target.to_string());
    // Strip into a file of this process's own and rename it into place: a monitor already
    // reading the image (another `fata run` of the same app) keeps the whole old file.
    let fresh = elf.with_extension(format!("{target}.{}", std::process::id()));
    let status = Command::new("strip")
        .arg("--strip-all")
        .arg("-o")
        .arg(&fresh)
        .arg(elf)
        .status()
        .map_err(Error::Strip)?;
    if !status.success() {
        let _ = std::fs::remove_file(&fresh);
        return Err(Error::Strip(std::io::Error::other(format!(
            "strip exited with {status}"
        ))));
    }
    std::fs::rename(&fresh, &image).map_err(Error::Strip)?;
    Ok(image)
}

/// What `cargo metadata` says about an app crate.
#[derive(Debug, Clone)]
pub struct CrateInfo {
    /// Cargo's target directory for the crate (the workspace's when the crate is in one).
    pub target_dir: PathBuf,
    /// The package's name.
    pub name: String,
    /// The package's `[package.metadata.fata]` table (null when it has none).
    pub fata_metadata: serde_json::Value,
}

/// Reads the crate at `crate_dir` with `cargo metadata`.
pub fn crate_info(crate_dir: &Path) -> Result<CrateInfo, Error> {
    let manifest = crate_dir
        .join("Cargo.toml")
        .canonicalize()
        .map_err(|_| Error::NoCrate(crate_dir.to_path_buf()))?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    crate_info_of(&cargo, &manifest)
}

fn crate_info_of(cargo: &std::ffi::OsStr, manifest: &Path) -> Result<CrateInfo, Error> {
    let output = Command::new(cargo)
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--manifest-path",
        ])
        .arg(manifest)
        .stderr(Stdio::inherit())
        .output()
        .map_err(Error::Cargo)?;
    if !output.status.success() {
        return Err(Error::Metadata("cargo metadata failed (see above)".into()));
    }
    let metadata: serde_json::Value =
        serde_json::from_slice(&output.stdout).map_err(|e| Error::Metadata(e.to_string()))?;
    let target_dir = metadata["target_directory"]
        .as_str()
        .map(PathBuf::from)
        .ok_or_else(|| Error::Metadata("no target_directory in cargo metadata".into()))?;
    let package = metadata["packages"]
        .as_array()
        .and_then(|packages| {
            packages
                .iter()
                .find(|p| p["manifest_path"].as_str().map(Path::new) == Some(manifest))
        })
        .ok_or_else(|| Error::Metadata(format!("no package for {}", manifest.display())))?;
    Ok(CrateInfo {
        target_dir,
        name: package["name"].as_str().unwrap_or_default().to_string(),
        fata_metadata: package["metadata"]["fata"].clone(),
    })
}

/// The link script's file name, which carries a hash of its text: a new script changes the
/// rustflags, so cargo relinks guests built with the old one.
fn link_script_name(target: Target) -> String {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::hash::DefaultHasher::new();
    target.link_script().hash(&mut hasher);
    format!("link-{:016x}.ld", hasher.finish())
}

/// Writes `contents` unless the file already holds them, so its timestamp only moves on change.
fn write_if_changed(path: &Path, contents: &str) -> std::io::Result<()> {
    if std::fs::read_to_string(path).is_ok_and(|old| old == contents) {
        return Ok(());
    }
    std::fs::write(path, contents)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_and_unknown_ones_say_which_exist() {
        assert_eq!("hvt".parse(), Ok(Target::Hvt));
        assert_eq!("unix".parse(), Ok(Target::Unix));
        assert_eq!("virtio".parse(), Ok(Target::Virtio));
        let error = "xen".parse::<Target>().unwrap_err();
        assert!(
            error.contains("`unix`") && error.contains("`hvt`"),
            "{error}"
        );
    }

    #[test]
    fn guest_flags_select_the_hvt_platform_and_the_link_script() {
        let flags = guest_rustflags(Target::Hvt, Path::new("/t/link.ld"));
        assert!(
            flags
                .windows(2)
                .any(|w| w == ["--cfg", "fata_target=\"hvt\""])
        );
        assert_eq!(flags.last().unwrap(), "-Clink-arg=-T/t/link.ld");
        let flags = guest_rustflags(Target::Virtio, Path::new("/t/pvh.ld"));
        assert_eq!(flags[..2], ["--cfg", "fata_target=\"virtio\""]);
    }

    #[test]
    fn a_directory_without_a_crate_is_reported() {
        let dir = std::env::temp_dir();
        let request = Request {
            crate_dir: dir.join("fata-no-such-crate"),
            target: Target::Unix,
            release: false,
        };
        assert!(matches!(build(&request), Err(Error::NoCrate(_))));
    }
}
