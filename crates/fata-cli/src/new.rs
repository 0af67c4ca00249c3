//! `fata new NAME`: a new app crate that builds and runs on every target.

use std::path::{Path, PathBuf};

use crate::Failure;

/// Exit status when the crate cannot be created.
const EXIT_NEW: u8 = 1;

/// The Fata source tree the new crate depends on: `$FATA_SOURCE`, or the tree this `fata` was
/// built from.
fn fata_source() -> Result<PathBuf, Failure> {
    let root = std::env::var_os("FATA_SOURCE")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."));
    root.join("crates/fata/Cargo.toml")
        .canonicalize()
        .ok()
        .and_then(|manifest| manifest.parent().map(Path::to_path_buf))
        .ok_or_else(|| {
            Failure::new(
                EXIT_NEW,
                format!(
                    "cannot find Fata's source at {}: set FATA_SOURCE to a Fata checkout",
                    root.display()
                ),
            )
        })
}

/// Creates the crate directory `path` with a manifest and a hello-world `src/main.rs`.
pub fn create(path: &Path) -> Result<(), Failure> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|n| {
            n.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
        .ok_or_else(|| {
            Failure::new(
                EXIT_NEW,
                format!(
                    "{:?} is not a crate name: use letters, digits, - and _, starting with a letter",
                    path.display().to_string()
                ),
            )
        })?;
    if path.exists() {
        return Err(Failure::new(
            EXIT_NEW,
            format!("{} already exists: choose another name", path.display()),
        ));
    }
    let fata = fata_source()?;
    let manifest = format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"

# The app's `main` is the program's entry on every target: no test harness for it.
[[bin]]
name = "{name}"
path = "src/main.rs"
test = false

[dependencies]
fata = {{ path = "{fata}" }}

# The devices the app takes, by kind and name: `fata run` refuses to start it without them or
# with others. It takes none yet; a network service declares net = ["service"] (what
# `fata_net::Stack::from_env` takes), storage block = ["storage"] or kv = ["data"].
[package.metadata.fata.devices]

# A crate of its own, even when created inside another workspace.
[workspace]
"#,
        fata = fata.display()
    );
    let write = |file: &str, contents: &str| {
        let target = path.join(file);
        std::fs::create_dir_all(target.parent().expect("a file inside the crate"))
            .and_then(|()| std::fs::write(&target, contents))
            .map_err(|e| Failure::new(EXIT_NEW, format!("cannot write {}: {e}", target.display())))
    };
    write("Cargo.toml", &manifest)?;
    write("src/main.rs", MAIN_RS)?;
    write(".gitignore", "/target\n")?;
    eprintln!(
        "fata: created {}; try `fata run {0}` or `fata run --target hvt {0}`",
        path.display()
    );
    Ok(())
}

/// The new app's source.
const MAIN_RS: &str = r#"//! A Fata app: the same source runs as a Linux process and as a KVM unikernel.
#![no_std]
#![no_main]

use fata::{Duration, Env, Opt, Result, println};

/// The options the app takes; an argument that is not one of them is refused with this usage.
const OPTIONS: &[Opt] = &[Opt::value("--name", "NAME", "who to greet (default world)")];

#[fata::main(options = [OPTIONS])]
async fn main(env: Env) -> Result<()> {
    let name: alloc::string::String = env.arg("--name")?.unwrap_or_else(|| "world".into());
    fata::sleep(Duration::from_millis(10)).await;
    println!("hello, {name}, from the {} target", fata::TARGET);
    Ok(())
}

extern crate alloc;
"#;
