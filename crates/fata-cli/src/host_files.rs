//! Host files an app reads: arguments its manifest declares as naming files on the host.
//!
//! A unikernel cannot open the host's files, so an app lists the arguments that name them:
//!
//! ```toml
//! [package.metadata.fata.host-files]
//! "--zone" = "dns-zone"     # compile the master file with fata-zone
//! "--config" = "raw"        # pass the file as it is
//! ```
//!
//! `fata run` reads each such file (converting it as declared), stores the result in a directory
//! under the crate's target directory, hands that directory to the app as its read-only `files`
//! store, and replaces the argument's value with the file's key in the store. The same happens on
//! unix and on hvt, so the app reads its files one way on both.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;

use crate::Failure;

/// Exit status when a host file cannot be prepared.
const EXIT_FILES: u8 = 5;

/// How a declared file is turned into what the app reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Conversion {
    /// The bytes as they are.
    Raw,
    /// A DNS master file compiled by fata-zone.
    DnsZone,
}

/// Prepares the host files `app_args` name for the app `info` describes; returns the directory
/// to hand to the app as its `files` store, or `None` when the app declares no host files.
pub fn prepare(
    info: &fata_build::CrateInfo,
    app_args: &mut [String],
) -> Result<Option<PathBuf>, Failure> {
    let Some(declared) = info.fata_metadata["host-files"].as_object() else {
        return Ok(None);
    };
    let mut declared_args = Vec::new();
    for (option, kind) in declared {
        let conversion = match kind.as_str() {
            Some("raw") => Conversion::Raw,
            Some("dns-zone") => Conversion::DnsZone,
            _ => {
                return Err(Failure::new(
                    EXIT_FILES,
                    format!(
                        "{}: host-files {option:?} = {kind}: use \"raw\" or \"dns-zone\"",
                        info.name
                    ),
                ));
            }
        };
        declared_args.push((option.clone(), conversion));
    }
    let mut hasher = DefaultHasher::new();
    app_args.hash(&mut hasher);
    let dir =
        info.target_dir
            .join("fata-files")
            .join(format!("{}-{:016x}", info.name, hasher.finish()));
    std::fs::create_dir_all(&dir)
        .map_err(|e| Failure::new(EXIT_FILES, format!("cannot create {}: {e}", dir.display())))?;
    let mut index = 0;
    for at in 0..app_args.len() {
        for (option, conversion) in &declared_args {
            let value = if app_args[at] == *option {
                match app_args.get(at + 1) {
                    Some(_) => at + 1,
                    None => continue,
                }
            } else if app_args[at].starts_with(&format!("{option}=")) {
                at
            } else {
                continue;
            };
            let path = match app_args[value].strip_prefix(&format!("{option}=")) {
                Some(path) => path.to_string(),
                None => app_args[value].clone(),
            };
            let key = format!("host-file-{index}");
            index += 1;
            let bytes = convert(&path, *conversion)?;
            let stored = dir.join(&key);
            // Written aside and renamed into place, so a run of the same app reading it now
            // never sees half a file.
            let fresh = dir.join(format!("{key}.{}", std::process::id()));
            std::fs::write(&fresh, bytes)
                .and_then(|()| std::fs::rename(&fresh, &stored))
                .map_err(|e| {
                    Failure::new(
                        EXIT_FILES,
                        format!("cannot write {}: {e}", stored.display()),
                    )
                })?;
            app_args[value] = if value == at {
                format!("{option}={key}")
            } else {
                key
            };
        }
    }
    Ok(Some(dir))
}

fn convert(path: &str, conversion: Conversion) -> Result<Vec<u8>, Failure> {
    match conversion {
        Conversion::Raw => std::fs::read(path)
            .map_err(|e| Failure::new(EXIT_FILES, format!("cannot read {path}: {e}"))),
        Conversion::DnsZone => fata_zone::compile_files(&[path])
            .map(|zones| zones.to_compiled())
            .map_err(|e| Failure::new(EXIT_FILES, format!("zone file: {e}"))),
    }
}
