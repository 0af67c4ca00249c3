//! The devices and settings an app declares, read from its image before it starts.
//!
//! `fata build` writes the app's declarations (`[package.metadata.fata]`) into the executable as
//! its manifest note, on hvt and on unix alike. `fata run` reads them back from the file it is
//! about to start, whether it just built it or was given it, so a crate and an image built
//! earlier are checked the same way: a declared device that is not given, or a given one that is
//! not declared, stops the run with exit status 2 before anything boots, and the app's settings
//! (`coalesce-us`) apply unless the command line overrides them.

use std::path::Path;

use fata_build::Target;
use fata_device_spec::manifest::{Device, Kind, Manifest};

use crate::{EXIT_START, Failure, RunArgs, device_spec};

/// Reads the manifest of the executable at `image` and checks the devices `run` gives against
/// it; `None` (after a note on stderr) for an image built before manifests existed, which runs
/// unchecked.
pub fn check(image: &Path, target: Target, run: &RunArgs) -> Result<Option<Manifest>, Failure> {
    let Some(manifest) = read(image, target)? else {
        eprintln!(
            "fata: {} carries no device declarations (it was built before Fata wrote them, or \
             without `fata build`): its devices are not checked and its settings not applied; \
             rebuild it with `fata build` to have them",
            image.display()
        );
        return Ok(None);
    };
    let mut given = Vec::new();
    for (kind, specs) in [
        (Kind::Net, &run.net),
        (Kind::Block, &run.block),
        (Kind::Kv, &run.kv),
    ] {
        for text in specs {
            let spec = device_spec(kind.option(), text, kind.default_name())?;
            given.push(Device::new(kind, spec.name));
        }
    }
    let name = image.file_name().unwrap_or(image.as_os_str()).display();
    manifest
        .check(&given, target == Target::Unix)
        .map_err(|mismatch| Failure::new(2, format!("{name}: {mismatch}")))?;
    Ok(Some(manifest))
}

/// The manifest in the file at `image`; a file that cannot be read or is not an executable fails
/// as starting it would (with the monitor's codes and words on hvt).
fn read(image: &Path, target: Target) -> Result<Option<Manifest>, Failure> {
    let path = image.to_path_buf();
    let result = std::fs::read(image)
        .map_err(|source| fata_monitor::Error::ReadImage {
            path: path.clone(),
            source,
        })
        .and_then(|bytes| {
            fata_monitor::read_manifest(&bytes)
                .map_err(|source| fata_monitor::Error::Image { path, source })
        });
    result.map_err(|error| match (target, error) {
        (Target::Hvt, error) => {
            let status = u8::try_from(error.exit_code()).unwrap_or(u8::MAX);
            Failure::new(status, error)
        }
        (Target::Unix | Target::Virtio, fata_monitor::Error::Image { source, .. }) => Failure::new(
            EXIT_START,
            format!("cannot start {}: {source}", image.display()),
        ),
        (Target::Unix | Target::Virtio, error) => Failure::new(EXIT_START, error),
    })
}
