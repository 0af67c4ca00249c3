//! Host files an app reads: arguments its manifest declares as naming files on the host.
//!
//! A unikernel cannot open the host's files, so an app lists the arguments that name them, and
//! how each file is prepared on the host:
//!
//! ```toml
//! [package.metadata.fata.host-files]
//! "--zone" = { crate = "../fata-zone" }   # a binary crate (relative to the app's manifest), built
//!                                         # with cargo for the host and run as PROGRAM OUTPUT INPUT
//! "--geo" = { command = "geo-compile" }   # an installed program, run the same way
//! "--config" = "raw"                      # the file as it is
//! ```
//!
//! `fata run` prepares each file an argument names (every time the option is given), stores the
//! result in a directory under the crate's target directory, hands that directory to the app as
//! its read-only `files` store, and replaces the argument's value with the file's key in the
//! store. The same happens on unix and on hvt, so the app reads its files one way on both.
//!
//! A file is prepared again only when it, or the program, changed since the last run with the
//! same arguments: the crate is built on every run, but cargo does nothing when it is fresh.
//!
//! A `files` store given on the command line (`--kv files=zones.img`, a FAT image or a directory
//! of files prepared before) replaces all of this: the arguments are then keys in that store.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::SystemTime;

use crate::Failure;

/// Exit status when a host file cannot be prepared.
const EXIT_FILES: u8 = 5;

/// The name of the key-value store that holds the prepared files.
pub const STORE: &str = "files";

/// What the manifest accepts for a host file, for messages.
const DECLARATIONS: &str = "declare \"raw\" (the file as it is), { crate = \"DIR\" } (a binary \
    crate, relative to the app's manifest, built for the host with cargo and run as PROGRAM \
    OUTPUT INPUT; add bin = \"NAME\" when it has several) or { command = \"NAME\" } (an installed \
    program, run the same way)";

/// How a declared file is turned into what the app reads.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Preparation {
    /// The bytes as they are.
    Raw,
    /// The output of a binary crate's program, built for the host with cargo.
    Crate {
        /// The crate's directory.
        dir: PathBuf,
        /// Which of its binaries, when it has several.
        bin: Option<String>,
    },
    /// The output of an installed program, looked up on `PATH`.
    Command(String),
}

/// A declared option and how its files are prepared.
struct Declared {
    option: String,
    preparation: Preparation,
    /// The program's executable, once built or found.
    program: Option<PathBuf>,
}

/// Prepares the host files `app_args` name for the app `info` describes, whose crate is in
/// `crate_dir`; returns the directory to hand to the app as its `files` store, or `None` when
/// the app declares no host files or `kvs` (the `--kv` options) gives that store already.
pub fn prepare(
    info: &fata_build::CrateInfo,
    crate_dir: &Path,
    app_args: &mut [String],
    kvs: &[String],
) -> Result<Option<PathBuf>, Failure> {
    let Some(table) = info.fata_metadata["host-files"].as_object() else {
        return Ok(None);
    };
    let given = |spec: &&String| {
        fata_device_spec::parse(spec, fata_device_spec::DEFAULT_KV).is_ok_and(|s| s.name == STORE)
    };
    if let Some(spec) = kvs.iter().find(given) {
        eprintln!(
            "fata: --kv {spec}: the app's {} options name files in that store, prepared before",
            table.keys().cloned().collect::<Vec<_>>().join(", ")
        );
        return Ok(None);
    }
    let mut declared = Vec::new();
    for (option, spec) in table {
        let preparation = declaration(spec, crate_dir).map_err(|what| {
            Failure::new(
                EXIT_FILES,
                format!(
                    "{}: [package.metadata.fata.host-files] {option:?} = {spec}: {what}",
                    info.name
                ),
            )
        })?;
        declared.push(Declared {
            option: option.clone(),
            preparation,
            program: None,
        });
    }
    let work =
        info.target_dir
            .join("fata-files")
            .join(format!("{}-{:016x}", info.name, hash(&*app_args)));
    let store = work.join("files");
    std::fs::create_dir_all(&store).map_err(|e| {
        Failure::new(
            EXIT_FILES,
            format!("cannot create {}: {e}", store.display()),
        )
    })?;
    let mut index = 0;
    for at in 0..app_args.len() {
        for declared in &mut declared {
            let option = &declared.option;
            let inline = format!("{option}=");
            let (value_at, path) = if app_args[at] == *option {
                match app_args.get(at + 1) {
                    Some(path) => (at + 1, path.clone()),
                    None => continue,
                }
            } else if let Some(path) = app_args[at].strip_prefix(&inline) {
                (at, path.to_string())
            } else {
                continue;
            };
            let key = store_key(index, &path);
            index += 1;
            prepare_file(declared, &path, &store.join(&key), &work.join(&key))?;
            app_args[value_at] = if value_at == at {
                format!("{inline}{key}")
            } else {
                key
            };
        }
    }
    Ok(Some(store))
}

/// Reads one declaration; the error says what is wrong and what to write instead.
fn declaration(spec: &serde_json::Value, crate_dir: &Path) -> Result<Preparation, String> {
    if spec.as_str() == Some("raw") {
        return Ok(Preparation::Raw);
    }
    let Some(table) = spec.as_object() else {
        return Err(DECLARATIONS.into());
    };
    let text = |key: &str| match &table.get(key) {
        None => Ok(None),
        Some(serde_json::Value::String(text)) => Ok(Some(text.clone())),
        Some(_) => Err(format!("{key} must be a string; {DECLARATIONS}")),
    };
    if let Some(unknown) = table
        .keys()
        .find(|key| !["crate", "bin", "command"].contains(&key.as_str()))
    {
        return Err(format!("unknown key {unknown:?}; {DECLARATIONS}"));
    }
    match (text("crate")?, text("bin")?, text("command")?) {
        (Some(dir), bin, None) => {
            let dir = crate_dir.join(dir);
            if !dir.join("Cargo.toml").is_file() {
                return Err(format!(
                    "there is no Cargo.toml in {}: give the program's crate directory relative \
                     to the app's manifest",
                    dir.display()
                ));
            }
            Ok(Preparation::Crate { dir, bin })
        }
        (None, None, Some(command)) => Ok(Preparation::Command(command)),
        _ => Err(DECLARATIONS.into()),
    }
}

/// The key of the `index`th host file in the store: the index and the file's name, made safe.
fn store_key(index: usize, path: &str) -> String {
    let name: String = Path::new(path)
        .file_name()
        .map(|name| name.to_string_lossy())
        .unwrap_or_default()
        .chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{index}-{name}")
}

/// Prepares the file at `input` for `declared` into `stored`, unless it is there from an earlier
/// run with the same program and input; `work` (a path beside the store) holds that run's
/// record and the half-written output.
fn prepare_file(
    declared: &mut Declared,
    input: &str,
    stored: &Path,
    work: &Path,
) -> Result<(), Failure> {
    let option = declared.option.clone();
    let fail = |what: String| Failure::new(EXIT_FILES, format!("{option} {input}: {what}"));
    let input_meta = std::fs::metadata(input)
        .and_then(|meta| {
            if meta.is_file() {
                Ok(meta)
            } else {
                Err(std::io::Error::other("not a file"))
            }
        })
        .map_err(|e| {
            fail(format!(
                "cannot read it ({e}): give the path of an existing file"
            ))
        })?;
    let program = match &declared.preparation {
        Preparation::Raw => None,
        _ => Some(program(declared)?),
    };
    let record = format!(
        "{}\n{}\n{}\n{}\n{}\n",
        program
            .as_ref()
            .map_or("raw".into(), |p| p.display().to_string()),
        program.as_ref().map_or(Ok(0), |p| modified(p)).unwrap_or(0),
        std::fs::canonicalize(input).map_or_else(|_| input.into(), |p| p.display().to_string()),
        input_meta.len(),
        modified(Path::new(input)).unwrap_or(0),
    );
    let record_path = beside(work, ".record");
    if stored.is_file() && std::fs::read_to_string(&record_path).is_ok_and(|r| r == record) {
        eprintln!("fata: {option} {input}: unchanged since it was last prepared");
        return Ok(());
    }
    // Written aside and renamed into place, so a run of the same app reading it now never sees
    // half a file.
    let fresh = beside(work, &format!(".{}", std::process::id()));
    match &program {
        None => {
            std::fs::copy(input, &fresh)
                .map_err(|e| fail(format!("cannot copy it to {}: {e}", fresh.display())))?;
        }
        Some(program) => {
            let name = program.file_name().unwrap_or_default().to_string_lossy();
            eprintln!("fata: {option} {input}: preparing it with {name}");
            let status = Command::new(program)
                .arg(&fresh)
                .arg(input)
                .stdout(std::io::stderr())
                .status()
                .map_err(|e| fail(format!("cannot run {}: {e}", program.display())))?;
            if !status.success() {
                let _ = std::fs::remove_file(&fresh);
                return Err(fail(format!(
                    "{name} failed ({status}); its message is above: fix the file and run again"
                )));
            }
            if !fresh.is_file() {
                return Err(fail(format!(
                    "{name} succeeded but wrote no output: a host program is run as `PROGRAM \
                     OUTPUT INPUT` and must write OUTPUT ({})",
                    fresh.display()
                )));
            }
        }
    }
    std::fs::rename(&fresh, stored)
        .and_then(|()| std::fs::write(&record_path, record))
        .map_err(|e| fail(format!("cannot write {}: {e}", stored.display())))
}

/// The executable that prepares `declared`'s files: its crate built with cargo (once per run),
/// or the installed command.
fn program(declared: &mut Declared) -> Result<PathBuf, Failure> {
    if let Some(program) = &declared.program {
        return Ok(program.clone());
    }
    let option = &declared.option;
    let program = match &declared.preparation {
        Preparation::Raw => unreachable!("raw files have no program"),
        Preparation::Command(command) => which::which(command).map_err(|e| {
            Failure::new(
                EXIT_FILES,
                format!(
                    "{option}: cannot find the program {command:?} that prepares its files \
                     ({e}): install it (a Rust crate: `cargo install --path DIR`), or declare \
                     {{ crate = \"DIR\" }} in [package.metadata.fata.host-files]"
                ),
            )
        })?,
        Preparation::Crate { dir, bin } => build_program(option, dir, bin.as_deref())?,
    };
    declared.program = Some(program.clone());
    Ok(program)
}

/// Builds the binary crate in `dir` for the host (release) and returns its executable.
fn build_program(option: &str, dir: &Path, bin: Option<&str>) -> Result<PathBuf, Failure> {
    let fail = |what: String| Failure::new(EXIT_FILES, format!("{option}: {what}"));
    let manifest = dir
        .join("Cargo.toml")
        .canonicalize()
        .map_err(|e| fail(format!("cannot read {}: {e}", dir.display())))?;
    eprintln!(
        "fata: {option}: building the program that prepares its files ({})",
        dir.display()
    );
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .args([
            "build",
            "--release",
            "--message-format=json-render-diagnostics",
        ])
        .arg("--manifest-path")
        .arg(&manifest)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    match bin {
        Some(bin) => command.args(["--bin", bin]),
        None => command.arg("--bins"),
    };
    let mut child = command
        .spawn()
        .map_err(|e| fail(format!("cannot run cargo: {e}: install Rust's cargo")))?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut executables = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        let Ok(message) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if message["reason"] == "compiler-artifact"
            && Path::new(message["manifest_path"].as_str().unwrap_or_default()) == manifest
            && let Some(executable) = message["executable"].as_str()
        {
            executables.push(PathBuf::from(executable));
        }
    }
    let status = child
        .wait()
        .map_err(|e| fail(format!("cargo did not finish: {e}")))?;
    if !status.success() {
        return Err(fail(format!(
            "building {} failed (see above): fix it and run again",
            manifest.display()
        )));
    }
    match executables.as_slice() {
        [executable] => Ok(executable.clone()),
        [] => Err(fail(format!(
            "{} has no binary: declare a crate with a program that is run as PROGRAM OUTPUT INPUT",
            manifest.display()
        ))),
        several => Err(fail(format!(
            "{} has several binaries ({}): name one with bin = \"NAME\"",
            manifest.display(),
            several
                .iter()
                .map(|e| e.file_name().unwrap_or_default().to_string_lossy())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// `path` with `suffix` added to its file name.
fn beside(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    name.into()
}

/// When the file at `path` last changed, in nanoseconds since the epoch.
fn modified(path: &Path) -> std::io::Result<u128> {
    let at = std::fs::metadata(path)?.modified()?;
    Ok(at
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos()))
}

/// A hash of `value`, to name the directory of one set of arguments.
fn hash(value: impl std::hash::Hash) -> u64 {
    use std::hash::Hasher;
    let mut hasher = std::hash::DefaultHasher::new();
    value.hash(&mut hasher);
    hasher.finish()
}
