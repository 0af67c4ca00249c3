//! What Fata's tests do when this machine lacks something they need: KVM, root (network
//! namespaces and tap devices) or a peer program (NSD, dnsmasq, Chromium). A dev-dependency of
//! the test crates, and the one home of this policy.
//!
//! - **Strict runs fail.** With `CI=true` (or `1`), or `FATA_REQUIRE_KVM=1`, a missing
//!   prerequisite panics with what is missing and what to do, so a run cannot pass by not
//!   running.
//! - **Elsewhere the test skips and is counted.** It prints `SKIPPED: ...` and appends the same
//!   line to the file named by `FATA_SKIP_LOG`; `scripts/test` sets that variable and prints, at
//!   its end, how many tests skipped and why. The caller then returns from the test.
//! - **Pretending, to check the above.** `FATA_TEST_WITHOUT=kvm,netns,nsd` makes [`kvm`],
//!   [`program`] and [`pretends_missing`] report those as missing on a machine that has them.
//!
//! ```no_run
//! if !fata_testkit::program("nsd", "nsd") {
//!     return; // skipped and recorded; a strict run has already failed
//! }
//! ```

#![forbid(unsafe_code)]

use std::io::Write;
use std::path::Path;

/// The variable naming the file each skip appends a line to.
const SKIP_LOG: &str = "FATA_SKIP_LOG";

/// The variable listing prerequisites to pretend are missing (`kvm`, `netns`, program names).
const WITHOUT: &str = "FATA_TEST_WITHOUT";

/// The current test cannot run here because `missing` is absent; `remedy` says what to do.
///
/// In a strict run this panics, failing the test. Elsewhere it prints a `SKIPPED:` line, appends
/// it to the file named by `FATA_SKIP_LOG` when there is one, and returns so the caller can end
/// the test. Call it on the test's own thread: the thread's name is the test's name.
#[track_caller]
pub fn missing(missing: &str, remedy: &str) {
    let test = test_name();
    if let Some(why) = strict(&std::env::var) {
        panic!(
            "{test} needs {missing}, which this machine lacks. To fix: {remedy}. \
             ({why} makes a missing prerequisite fail the test; elsewhere the test is skipped \
             and counted.)"
        );
    }
    let line = skip_line(&test, missing, remedy);
    eprintln!("{line}");
    if let Some(log) = std::env::var_os(SKIP_LOG) {
        append(Path::new(&log), &line);
    }
}

/// Whether `/dev/kvm` opens for reading and writing; when not, says so through [`missing`].
#[track_caller]
pub fn kvm() -> bool {
    let opened = if pretends_missing("kvm") {
        Err(std::io::Error::other(format!("{WITHOUT} names kvm")))
    } else {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/kvm")
            .map(drop)
    };
    match opened {
        Ok(()) => true,
        Err(e) => {
            missing(
                &format!("read-write access to /dev/kvm ({e})"),
                "use a machine with KVM (in a VM, nested virtualisation), as root or in group kvm",
            );
            false
        }
    }
}

/// Whether the program `name` is on `PATH`; when not, says through [`missing`] to install the
/// Debian package `package`.
#[track_caller]
pub fn program(name: &str, package: &str) -> bool {
    let found = !pretends_missing(name)
        && std::env::var_os("PATH").is_some_and(|path| {
            std::env::split_paths(&path).any(|dir| is_executable(&dir.join(name)))
        });
    if !found {
        missing(
            &format!("the program `{name}` on PATH"),
            &format!("install the Debian package `{package}` (scripts/test installs it)"),
        );
    }
    found
}

/// Whether `FATA_TEST_WITHOUT` names `what`, so a check for it should act as if it were missing.
pub fn pretends_missing(what: &str) -> bool {
    std::env::var(WITHOUT).is_ok_and(|list| names(&list, what))
}

/// Why the run is strict (the variable that makes it so), from a lookup of the environment.
fn strict<E>(var: &dyn Fn(&'static str) -> Result<String, E>) -> Option<&'static str> {
    let on =
        |name| var(name).is_ok_and(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true"));
    if on("CI") {
        Some("CI=true")
    } else if on("FATA_REQUIRE_KVM") {
        Some("FATA_REQUIRE_KVM=1")
    } else {
        None
    }
}

/// Whether the comma-separated `list` holds `what`.
fn names(list: &str, what: &str) -> bool {
    list.split(',').any(|item| item.trim() == what)
}

/// The line a skip prints and records.
fn skip_line(test: &str, missing: &str, remedy: &str) -> String {
    format!("SKIPPED: {test}: needs {missing}; {remedy}")
}

/// `PACKAGE TEST-BINARY::TEST`, as far as this process can tell.
fn test_name() -> String {
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("a test");
    let binary = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.file_stem()?.to_string_lossy().into_owned()))
        .map(|stem| match stem.rsplit_once('-') {
            Some((name, hash)) if hash.chars().all(|c| c.is_ascii_hexdigit()) => name.to_string(),
            _ => stem,
        });
    let package = std::env::var("CARGO_PKG_NAME").ok();
    match (package, binary) {
        (Some(package), Some(binary)) => format!("{package} {binary}::{test}"),
        (None, Some(binary)) => format!("{binary}::{test}"),
        _ => test.to_string(),
    }
}

/// Appends `line` to the log in one write, so lines from tests running at once do not interleave.
fn append(log: &Path, line: &str) {
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .and_then(|mut file| file.write_all(format!("{line}\n").as_bytes()));
    if let Err(e) = written {
        panic!("cannot record the skip in {} ({e}): {line}", log.display());
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&'static str, &'static str)]) -> impl Fn(&'static str) -> Result<String, ()> {
        let pairs = pairs.to_vec();
        move |name| {
            pairs
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.to_string())
                .ok_or(())
        }
    }

    #[test]
    fn ci_or_require_kvm_make_the_run_strict() {
        assert_eq!(strict(&env(&[])), None);
        assert_eq!(strict(&env(&[("CI", "true")])), Some("CI=true"));
        assert_eq!(strict(&env(&[("CI", "1")])), Some("CI=true"));
        assert_eq!(strict(&env(&[("CI", "TRUE")])), Some("CI=true"));
        assert_eq!(strict(&env(&[("CI", "false")])), None);
        assert_eq!(strict(&env(&[("CI", "")])), None);
        assert_eq!(
            strict(&env(&[("FATA_REQUIRE_KVM", "1")])),
            Some("FATA_REQUIRE_KVM=1")
        );
        assert_eq!(strict(&env(&[("FATA_REQUIRE_KVM", "0")])), None);
    }

    #[test]
    fn the_pretend_list_is_comma_separated() {
        assert!(names("kvm", "kvm"));
        assert!(names("nsd, kvm", "kvm"));
        assert!(names("kvm,netns", "netns"));
        assert!(!names("kvmx,netns", "kvm"));
        assert!(!names("", "kvm"));
    }

    #[test]
    fn skips_append_whole_lines() {
        let log = std::env::temp_dir().join(format!("fata-testkit-{}.log", std::process::id()));
        let _ = std::fs::remove_file(&log);
        append(&log, &skip_line("t1", "x", "do y"));
        append(&log, &skip_line("t2", "z", "do w"));
        let text = std::fs::read_to_string(&log).unwrap();
        let _ = std::fs::remove_file(&log);
        assert_eq!(
            text,
            "SKIPPED: t1: needs x; do y\nSKIPPED: t2: needs z; do w\n"
        );
    }

    #[test]
    fn programs_are_executable_files() {
        assert!(is_executable(Path::new("/bin/sh")));
        assert!(!is_executable(Path::new("/etc/passwd")));
        assert!(!is_executable(Path::new("/nonexistent/fata")));
    }
}
