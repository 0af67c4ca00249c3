//! `fata disk`: FAT images made from host directories, listed and copied out (fata-disk).
//!
//! ```text
//! fata disk create DIR -o IMG [--size N] [--label NAME] [--force]
//! fata disk list IMG                     (alias ls)
//! fata disk copy IMG PATH [DEST]         (DEST `-` is standard output)
//! ```
//!
//! Exit status: 0 when done; 2 when the command line asks for what cannot be (a size too small
//! for the files, a label FAT cannot hold, an image that exists without `--force`); 6 when an
//! image cannot be made or read (a host file that cannot be read, a name FAT cannot hold, a
//! damaged image, a path the image does not hold).

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use fata_disk::{CreateOptions, Entry, Error, Image, Progress, format_size};

use crate::Failure;

/// Exit status when an image cannot be made or read.
const EXIT_DISK: u8 = 6;

/// How often a progress line is redrawn on a terminal, and printed anew elsewhere.
const TERMINAL_EVERY: Duration = Duration::from_millis(100);
const LOG_EVERY: Duration = Duration::from_secs(2);

/// `fata disk` and its subcommand.
#[derive(Args)]
pub struct DiskArgs {
    #[command(subcommand)]
    command: DiskCommand,
}

#[derive(Subcommand)]
enum DiskCommand {
    /// Make a FAT image (FAT16 below 512 MiB, FAT32 from it) holding the files and directories
    /// below DIR.
    Create {
        /// The directory whose files the image holds.
        dir: PathBuf,
        /// The image file to write.
        #[arg(short = 'o', long = "output", value_name = "IMG")]
        output: PathBuf,
        /// The image's size, e.g. 64M, 1G, 512K (default: the files' size plus headroom).
        #[arg(long, value_parser = fata_disk::parse_size)]
        size: Option<u64>,
        /// The volume label, at most 11 characters (default NO NAME, as mkfs.fat).
        #[arg(long, value_name = "NAME")]
        label: Option<String>,
        /// Replace IMG when it exists.
        #[arg(long)]
        force: bool,
    },
    /// List every directory and file of a FAT image with its size (directories end in `/`).
    #[command(visible_alias = "ls")]
    List {
        /// The image.
        image: PathBuf,
    },
    /// Copy a file, or a directory with everything below it, out of a FAT image.
    Copy {
        /// The image.
        image: PathBuf,
        /// The file or directory in the image, as `fata disk list` shows it (`/` is the root).
        path: String,
        /// Where to put it: a file, or an existing directory to copy into (default `.`); `-`
        /// writes a file to standard output.
        dest: Option<PathBuf>,
    },
}

/// Runs a `fata disk` command.
pub fn run(args: DiskArgs) -> Result<ExitCode, Failure> {
    match args.command {
        DiskCommand::Create {
            dir,
            output,
            size,
            label,
            force,
        } => create(&dir, &output, size, label, force),
        DiskCommand::List { image } => list(&image),
        DiskCommand::Copy { image, path, dest } => copy(&image, &path, dest.as_deref()),
    }
    .map(|()| ExitCode::SUCCESS)
}

/// The exit status for an error of fata-disk.
fn failure(error: Error) -> Failure {
    let status = match error {
        Error::TooSmall { .. } | Error::NotSectors(_) | Error::Label(_) | Error::Exists(_) => 2,
        _ => EXIT_DISK,
    };
    Failure::new(status, error)
}

fn create(
    dir: &Path,
    output: &Path,
    size: Option<u64>,
    label: Option<String>,
    force: bool,
) -> Result<(), Failure> {
    let options = CreateOptions {
        size,
        label,
        replace: force,
    };
    let mut line = ProgressLine::new(format!("writing {}", output.display()));
    let created = fata_disk::create(dir, output, &options, &mut |p: &Progress| {
        line.show(p.bytes == p.bytes_total && p.files == p.files_total, || {
            format!(
                "{}/{} files, {} of {}",
                p.files,
                p.files_total,
                human(p.bytes),
                human(p.bytes_total)
            )
        });
    });
    line.end();
    let created = created.map_err(failure)?;
    for path in &created.skipped {
        eprintln!(
            "fata: left out {}: FAT holds no symbolic links or special files",
            path.display()
        );
    }
    eprintln!(
        "fata: made {}: {} of {} ({}-byte clusters) holding {} files ({}) in {} directories",
        output.display(),
        created.kind,
        format_size(created.size),
        created.cluster_bytes,
        created.files,
        human(created.bytes),
        created.directories
    );
    Ok(())
}

fn open(image: &Path) -> Result<Image, Failure> {
    Image::open(image).map_err(failure)
}

fn list(path: &Path) -> Result<(), Failure> {
    let image = open(path)?;
    let entries = image.entries().map_err(failure)?;
    let mut out = std::io::stdout().lock();
    let mut written = Ok(());
    for entry in &entries {
        let line = if entry.is_dir {
            writeln!(out, "{:>12}  {}/", "-", entry.path)
        } else {
            writeln!(out, "{:>12}  {}", entry.size, entry.path)
        };
        written = written.and(line);
    }
    written
        .and_then(|()| out.flush())
        .map_err(|e| Failure::new(EXIT_DISK, format!("cannot write the listing: {e}")))?;
    let info = image.info();
    let files = entries.iter().filter(|e| !e.is_dir).count();
    let bytes: u64 = entries.iter().map(|e| e.size).sum();
    eprintln!(
        "fata: {}: {} volume {:?} of {}, {} files ({}) in {} directories",
        path.display(),
        info.kind,
        info.label,
        format_size(info.bytes),
        files,
        human(bytes),
        entries.len() - files
    );
    Ok(())
}

fn copy(path: &Path, key: &str, dest: Option<&Path>) -> Result<(), Failure> {
    let image = open(path)?;
    let key = key.trim_matches('/');
    let root = key.is_empty();
    let entry = if root {
        None
    } else {
        Some(image.find(key).map_err(failure)?)
    };
    let dest = dest.unwrap_or(Path::new("."));
    let name = |entry: &Entry| {
        entry
            .path
            .rsplit('/')
            .next()
            .unwrap_or(&entry.path)
            .to_string()
    };
    match entry {
        Some(entry) if !entry.is_dir => {
            if dest == Path::new("-") {
                let mut out = std::io::stdout().lock();
                image
                    .copy(&entry, &mut out, dest, &mut |_| {})
                    .and_then(|_| {
                        out.flush().map_err(|source| Error::WriteOut {
                            path: dest.to_path_buf(),
                            source,
                        })
                    })
                    .map_err(failure)?;
                return Ok(());
            }
            let target = if dest.is_dir() {
                dest.join(name(&entry))
            } else {
                dest.to_path_buf()
            };
            let mut line = ProgressLine::new(format!("copying /{}", entry.path));
            copy_file(&image, &entry, &target, &mut line)?;
            line.end();
            eprintln!(
                "fata: copied /{} ({}) to {}",
                entry.path,
                human(entry.size),
                target.display()
            );
            Ok(())
        }
        _ => {
            if dest == Path::new("-") {
                return Err(Failure::new(
                    2,
                    format!("/{key} is a directory: give a directory to copy it into instead of -"),
                ));
            }
            let (target, prefix) = match &entry {
                Some(entry) if dest.is_dir() => (dest.join(name(entry)), format!("{key}/")),
                Some(_) => (dest.to_path_buf(), format!("{key}/")),
                None => (dest.to_path_buf(), String::new()),
            };
            copy_tree(&image, &prefix, &target)
        }
    }
}

/// Copies every directory and file whose path starts with `prefix` into `target`.
fn copy_tree(image: &Image, prefix: &str, target: &Path) -> Result<(), Failure> {
    let entries: Vec<Entry> = image
        .entries()
        .map_err(failure)?
        .into_iter()
        .filter(|e| e.path.starts_with(prefix))
        .collect();
    let make_dir = |dir: &Path| {
        std::fs::create_dir_all(dir)
            .map_err(|e| Failure::new(EXIT_DISK, format!("cannot create {}: {e}", dir.display())))
    };
    make_dir(target)?;
    let (files, bytes) = entries
        .iter()
        .filter(|e| !e.is_dir)
        .fold((0u64, 0u64), |(n, b), e| (n + 1, b + e.size));
    let mut line = ProgressLine::new(format!("copying to {}", target.display()));
    let mut done = 0u64;
    for entry in &entries {
        let out = target.join(&entry.path[prefix.len()..]);
        if entry.is_dir {
            make_dir(&out)?;
        } else {
            copy_file(image, entry, &out, &mut line)?;
            done += 1;
            line.show(done == files, || {
                format!("{done}/{files} files of {}", human(bytes))
            });
        }
    }
    line.end();
    eprintln!(
        "fata: copied {files} files ({}) to {}",
        human(bytes),
        target.display()
    );
    Ok(())
}

/// Copies one file of the image to `target`, replacing what is there.
fn copy_file(
    image: &Image,
    entry: &Entry,
    target: &Path,
    line: &mut ProgressLine,
) -> Result<(), Failure> {
    let mut out = std::fs::File::create(target).map_err(|e| {
        Failure::new(
            EXIT_DISK,
            format!(
                "cannot write {}: {e}: give a writable file or directory",
                target.display()
            ),
        )
    })?;
    let mut copied = 0u64;
    image
        .copy(entry, &mut out, target, &mut |n| {
            copied += n;
            line.show(copied == entry.size, || {
                format!("{} of {}", human(copied), human(entry.size))
            });
        })
        .map_err(failure)?;
    Ok(())
}

/// Bytes in the unit that reads best: `512 bytes`, `3.2 KiB`, `10.0 MiB`.
fn human(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} bytes");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// A progress report on standard error: one line redrawn in place on a terminal, a line every
/// few seconds elsewhere (a log), so long work shows it is moving.
struct ProgressLine {
    what: String,
    terminal: bool,
    last: Option<Instant>,
    started: Instant,
    drawn: bool,
}

impl ProgressLine {
    fn new(what: String) -> ProgressLine {
        ProgressLine {
            what,
            terminal: std::io::stderr().is_terminal(),
            last: None,
            started: Instant::now(),
            drawn: false,
        }
    }

    /// Shows `text()` unless one was shown a moment ago; `last` forces it (the work is done)
    /// where a line is already showing.
    fn show(&mut self, last: bool, text: impl FnOnce() -> String) {
        let every = if self.terminal {
            TERMINAL_EVERY
        } else {
            LOG_EVERY
        };
        let due = match self.last {
            Some(at) => at.elapsed() >= every || (last && self.drawn),
            // Quick work shows no progress at all.
            None => self.started.elapsed() >= every,
        };
        if !due {
            return;
        }
        self.last = Some(Instant::now());
        self.drawn = true;
        if self.terminal {
            eprint!("\r\x1b[2Kfata: {}: {}", self.what, text());
        } else {
            eprintln!("fata: {}: {}", self.what, text());
        }
    }

    /// Ends a line drawn in place.
    fn end(&mut self) {
        if self.terminal && self.drawn {
            eprintln!();
            self.drawn = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(human(512), "512 bytes");
        assert_eq!(human(3 * 1024 + 205), "3.2 KiB");
        assert_eq!(human(10 << 20), "10.0 MiB");
        assert_eq!(human(3 << 40), "3.0 TiB");
    }
}
