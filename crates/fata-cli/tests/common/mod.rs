//! Helpers for end-to-end tests: the `fata` command, network namespaces with tap devices, and apps
//! running in the background.

#![allow(dead_code)] // each test file uses its own subset

pub mod blockcheck;
pub mod dns;
pub mod pulse;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The workspace root, where `apps/` lives.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// The target directory `fata` builds apps into during tests: its own, so it never waits for the
/// lock of the build that runs the tests.
pub fn apps_target_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("e2e")
}

/// `fata ARGS` as a command, run in the workspace.
pub fn fata_command(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_fata"));
    command
        .args(args)
        .current_dir(workspace())
        .env("CARGO_TARGET_DIR", apps_target_dir());
    command
}

/// Runs `fata ARGS` to completion.
pub fn fata(args: &[&str]) -> Output {
    fata_command(args).output().unwrap()
}

/// Builds `app` for `target` and returns the executable's path.
pub fn build(app: &str, target: &str) -> PathBuf {
    let out = fata(&["build", "--release", "--target", target, app]);
    assert!(
        out.status.success(),
        "building {app}: {}",
        text(&out.stderr)
    );
    PathBuf::from(text(&out.stdout).lines().last().unwrap())
}

/// Asserts that `out` exited with `code` and said `needle` on stderr.
#[track_caller]
pub fn refused(out: &Output, code: i32, needle: &str) {
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{stderr}");
    assert!(stderr.contains(needle), "{stderr}");
}

/// Bytes as text, for messages.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// What to do when a network namespace or tap device cannot be made.
const ROOT: &str = "run the tests as root (they make network namespaces and tap devices)";

/// A network namespace holding a tap device `tap0` with address 10.N.0.1/24, removed on drop.
/// The app inside uses 10.N.0.2.
pub struct Netns {
    pub name: String,
    pub subnet: u8,
}

impl Netns {
    /// Creates the namespace; `None` where namespaces or taps cannot be made here, after
    /// [`fata_testkit::missing`] has failed a strict run or recorded the skip.
    #[track_caller]
    pub fn create(test: &str, subnet: u8) -> Option<Netns> {
        if fata_testkit::pretends_missing("netns") {
            fata_testkit::missing(
                "a network namespace with a tap device (FATA_TEST_WITHOUT names netns)",
                ROOT,
            );
            return None;
        }
        let name = format!("fata-{test}-{}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        let ns = Netns { name, subnet };
        let host = format!("10.{subnet}.0.1/24");
        let steps: [&[&str]; 5] = [
            &["ip", "netns", "add", &ns.name],
            &[
                "ip", "netns", "exec", &ns.name, "ip", "link", "set", "lo", "up",
            ],
            &[
                "ip", "netns", "exec", &ns.name, "ip", "tuntap", "add", "dev", "tap0", "mode",
                "tap",
            ],
            &[
                "ip", "netns", "exec", &ns.name, "ip", "addr", "add", &host, "dev", "tap0",
            ],
            &[
                "ip", "netns", "exec", &ns.name, "ip", "link", "set", "tap0", "mtu", "9000", "up",
            ],
        ];
        for step in steps {
            let out = Command::new(step[0]).args(&step[1..]).output();
            if !out.as_ref().is_ok_and(|o| o.status.success()) {
                let why = out
                    .map(|o| text(&o.stderr))
                    .unwrap_or_else(|e| e.to_string());
                fata_testkit::missing(
                    &format!(
                        "a network namespace with a tap device (`{}` failed: {})",
                        step.join(" "),
                        why.trim()
                    ),
                    ROOT,
                );
                return None;
            }
        }
        Some(ns)
    }

    /// Turns IPv6 off on the namespace's tap, so the host sends the guest none of the IPv6
    /// neighbour discovery and multicast listener frames it sends a new link for its first
    /// seconds: for tests that time each answer, where one unsolicited frame arriving while the
    /// guest answers looks like load to a coalescing monitor.
    pub fn without_ipv6(self) -> Netns {
        let out = self
            .command("sysctl")
            .args(["-qw", "net.ipv6.conf.tap0.disable_ipv6=1"])
            .output()
            .unwrap();
        assert!(out.status.success(), "sysctl: {}", text(&out.stderr));
        self
    }

    /// Makes the namespace's link IPv6-only: tap0 loses 10.N.0.1 and gets fd00:N::1/64 (N in
    /// hexadecimal, at once usable: no duplicate address detection). The app inside uses
    /// fd00:N::2.
    pub fn ipv6_only(self) -> Netns {
        let host = format!("10.{}.0.1/24", self.subnet);
        let host6 = format!("{}/64", self.host6());
        let steps: [&[&str]; 3] = [
            &["ip", "addr", "del", &host, "dev", "tap0"],
            &["ip", "-6", "addr", "add", &host6, "dev", "tap0", "nodad"],
            // radvd, where a test runs it, advertises only on a router's links.
            &["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"],
        ];
        self.run_steps(&steps);
        self
    }

    /// Runs each command of `steps` (a program and its arguments) inside the namespace, failing
    /// the test with the first that fails.
    pub fn run_steps(&self, steps: &[&[&str]]) {
        for step in steps {
            let out = self.command(step[0]).args(&step[1..]).output().unwrap();
            assert!(
                out.status.success(),
                "{}: {}",
                step.join(" "),
                text(&out.stderr)
            );
        }
    }

    /// The app's address inside the namespace.
    pub fn guest(&self) -> std::net::Ipv4Addr {
        std::net::Ipv4Addr::new(10, self.subnet, 0, 2)
    }

    /// The app's address inside a namespace made [`Netns::ipv6_only`].
    pub fn guest6(&self) -> std::net::Ipv6Addr {
        std::net::Ipv6Addr::new(0xfd00, u16::from(self.subnet), 0, 0, 0, 0, 0, 2)
    }

    /// The host's side of tap0 in a namespace made [`Netns::ipv6_only`].
    pub fn host6(&self) -> std::net::Ipv6Addr {
        std::net::Ipv6Addr::new(0xfd00, u16::from(self.subnet), 0, 0, 0, 0, 0, 1)
    }

    /// `ip netns exec NAME PROGRAM`.
    pub fn command(&self, program: &str) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name, program]);
        command
    }

    /// `fata` run inside the namespace, from the workspace, building apps into the tests' own
    /// target directory (as [`fata_command`] does outside).
    pub fn fata(&self) -> Command {
        let mut command = self.command(env!("CARGO_BIN_EXE_fata"));
        command
            .current_dir(workspace())
            .env("CARGO_TARGET_DIR", apps_target_dir());
        command
    }

    /// `fata ARGS` inside the namespace, with guests' control sockets in `run_dir`.
    pub fn fata_with_run_dir(&self, run_dir: &Path, args: &[&str]) -> Command {
        let mut command = self.fata();
        command.env("FATA_RUN_DIR", run_dir).args(args);
        command
    }

    /// Runs `f` on a thread that has entered the namespace, so its sockets live there.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/var/run/netns/{}", self.name);
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let ns = std::fs::File::open(&path).unwrap();
                    nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
                    f()
                })
                .join()
                .unwrap()
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// An app running in the background, killed on drop; its stdout lines arrive on a channel.
pub struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
    /// The stdout line that said the app was ready.
    pub ready_line: String,
}

/// How long an app started by `fata run` may take to say it is ready. Generous, because on a fresh
/// machine the first run also builds the app and the host programs that prepare its files (the
/// zone compiler, with its dependencies, on two cores shared with other tests).
pub const READY_WITHIN: Duration = Duration::from_secs(300);

impl Running {
    /// Starts `command` and waits for a stdout line containing `ready`, at most [`READY_WITHIN`]
    /// after the last line it printed.
    pub fn start(command: Command, ready: &str) -> Running {
        Running::spawn(command, Stdio::inherit()).wait_ready(ready)
    }

    /// As [`Running::start`], with the app's stderr (the monitor's `--stats`) going to `stderr`.
    pub fn start_with_stderr(command: Command, ready: &str, stderr: std::fs::File) -> Running {
        Running::spawn(command, stderr.into()).wait_ready(ready)
    }

    fn wait_ready(mut self, ready: &str) -> Running {
        loop {
            match self.lines.recv_timeout(READY_WITHIN) {
                Ok(line) if line.contains(ready) => {
                    self.ready_line = line;
                    return self;
                }
                Ok(_) => continue,
                Err(_) => {
                    let status = self.child.try_wait().unwrap();
                    panic!(
                        "the app did not print {ready:?} within {READY_WITHIN:?} (exit: {status:?})"
                    );
                }
            }
        }
    }

    /// Starts `command` without waiting for a line (a restored app prints nothing new).
    pub fn background(command: Command) -> Running {
        Running::spawn(command, Stdio::inherit())
    }

    fn spawn(mut command: Command, stderr: Stdio) -> Running {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        Running {
            child,
            lines,
            ready_line: String::new(),
        }
    }

    /// Ends the app with SIGTERM (the monitor prints its `--stats` then) and waits at most 10 s
    /// for it; its exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        self.wait_exit(Duration::from_secs(10))
    }

    /// Whether the app is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Waits at most `within` for the app to exit; its exit code, `None` if it still runs.
    pub fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let deadline = std::time::Instant::now() + within;
        while std::time::Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status.code().unwrap_or(-1));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    /// The stdout lines printed so far.
    pub fn lines_so_far(&self) -> Vec<String> {
        self.lines.try_iter().collect()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
