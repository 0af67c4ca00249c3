//! Talking to running Fata monitors.
//!
//! Every hvt monitor runs under a name (`fata run --name`, by default the image's name and a
//! number) and listens on a Unix socket `NAME.sock` in the [`run_dir`]. `fata ps` lists the
//! sockets there and asks each monitor for its [`Info`]; `fata pause`, `resume`, `stop`,
//! `snapshot` and `migrate` send it a [`Request`].
//!
//! The protocol is one request per connection: the client writes one JSON line, the monitor
//! answers with zero or more [`Reply::Progress`] lines and then one final reply. JSON keeps it
//! readable with `socat` when something goes wrong.
//!
//! Anyone who can open the socket can stop or snapshot the guest: the run directory is created
//! mode 0700 and each socket 0600, so that is the monitor's own user.

use serde::{Deserialize, Serialize};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use thiserror::Error;

/// The environment variable that overrides the run directory (tests, several users).
pub const RUN_DIR_VARIABLE: &str = "FATA_RUN_DIR";
/// The suffix of a control socket's file name.
const SOCKET_SUFFIX: &str = ".sock";
/// The longest name a guest may have: the socket path must fit `sun_path` (108 bytes).
pub const MAX_NAME_LEN: usize = 48;

/// Where control sockets live: `$FATA_RUN_DIR` if set, else `/run/fata` for root, else
/// `$XDG_RUNTIME_DIR/fata`, else `/tmp/fata-UID`.
pub fn run_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os(RUN_DIR_VARIABLE).filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let uid = unsafe { libc::geteuid() };
    if uid == 0 {
        return PathBuf::from("/run/fata");
    }
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => Path::new(&dir).join("fata"),
        None => PathBuf::from(format!("/tmp/fata-{uid}")),
    }
}

/// A name `fata run --name` cannot use.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NameError {
    /// Empty, too long, or with characters outside `A-Z a-z 0-9 . _ -`.
    #[error(
        "{0:?} cannot name a guest: use 1 to {MAX_NAME_LEN} letters, digits, `.`, `_` or `-`, \
         not starting with `.` or `-`"
    )]
    Unusable(String),
}

/// Checks that `name` can name a guest (and its socket file).
pub fn check_name(name: &str) -> Result<(), NameError> {
    let usable = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && !name.starts_with(['.', '-'])
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if usable {
        Ok(())
    } else {
        Err(NameError::Unusable(name.to_string()))
    }
}

/// What a client asks a monitor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "kebab-case")]
pub enum Request {
    /// What the guest is and how it is doing.
    Info,
    /// Stop running the guest's vCPU (its devices wait too) until [`Request::Resume`].
    Pause,
    /// Carry on after [`Request::Pause`].
    Resume,
    /// End the guest now.
    Stop,
    /// Write a snapshot of the guest to `dir`.
    Snapshot {
        /// The directory to create (it must not exist, or be empty).
        dir: PathBuf,
        /// End the guest once the snapshot is written.
        stop: bool,
        /// Write only the memory changed since the last snapshot of this run, which becomes the
        /// new one's parent.
        diff: bool,
    },
    /// Move the guest to the `fata receive` listening at `to`, then end here.
    Migrate {
        /// `HOST:PORT`.
        to: String,
    },
}

/// How a guest is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GuestState {
    /// Its vCPU runs.
    Running,
    /// Paused by `fata pause` (or while a snapshot is written).
    Paused,
    /// Being moved to another monitor.
    Migrating,
}

impl GuestState {
    /// The word `fata ps` shows.
    pub fn as_str(self) -> &'static str {
        match self {
            GuestState::Running => "running",
            GuestState::Paused => "paused",
            GuestState::Migrating => "migrating",
        }
    }
}

/// One device of a running guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceInfo {
    /// `net`, `block` or `kv`.
    pub kind: String,
    /// The name the guest knows it by.
    pub name: String,
    /// What backs it on the host: a tap, a file, a directory.
    pub host: String,
}

/// What `fata ps` shows of one guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Info {
    /// The guest's name.
    pub name: String,
    /// The image it runs.
    pub image: String,
    /// The monitor's process id.
    pub pid: u32,
    /// Bytes of guest RAM (`--mem`).
    pub mem_bytes: u64,
    /// Host memory the monitor process uses now (its resident set), in bytes.
    pub rss_bytes: u64,
    /// Milliseconds since the guest started (or was restored) here.
    pub uptime_ms: u64,
    /// Running or paused.
    pub state: GuestState,
    /// Its devices, in handle order.
    pub devices: Vec<DeviceInfo>,
    /// Where it came from: `boot`, or the snapshot or address it was restored from.
    pub origin: String,
}

/// What a monitor answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "kebab-case")]
pub enum Reply {
    /// Work in progress (a migration round, a snapshot being written); more lines follow.
    Progress {
        /// What is happening, for a person.
        message: String,
    },
    /// The answer to [`Request::Info`].
    Info(Info),
    /// The request was carried out.
    Done {
        /// What was done, for a person.
        message: String,
    },
    /// The request failed.
    Failed {
        /// Why, and what to do about it.
        message: String,
    },
}

/// A control socket that cannot be created.
#[derive(Debug, Error)]
pub enum BindError {
    /// The name does not fit.
    #[error(transparent)]
    Name(#[from] NameError),
    /// A running monitor already has the name.
    #[error(
        "a guest named {name} is already running (its socket is {}); pick another --name, or \
         `fata stop {name}` first",
        path.display()
    )]
    InUse {
        /// The name.
        name: String,
        /// Its socket.
        path: PathBuf,
    },
    /// The run directory or the socket cannot be made.
    #[error(
        "cannot create the control socket {}: {source}\nhint: set {RUN_DIR_VARIABLE} to a \
         directory you may write",
        path.display()
    )]
    Io {
        /// The socket path.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
}

/// A monitor's listening control socket; dropping it removes the socket file.
#[derive(Debug)]
pub struct Server {
    listener: UnixListener,
    path: PathBuf,
    name: String,
}

impl Server {
    /// Listens as `name` in the run directory. A socket left behind by a monitor that is gone
    /// is replaced; one a monitor still answers on is [`BindError::InUse`].
    pub fn bind(name: &str) -> Result<Server, BindError> {
        check_name(name)?;
        let dir = run_dir();
        let path = dir.join(format!("{name}{SOCKET_SUFFIX}"));
        let io = |source| BindError::Io {
            path: path.clone(),
            source,
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(io)?;
        let listener = match UnixListener::bind(&path) {
            Ok(listener) => listener,
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
                if UnixStream::connect(&path).is_ok() {
                    return Err(BindError::InUse {
                        name: name.to_string(),
                        path,
                    });
                }
                // Nobody listens: a monitor that was killed left it.
                std::fs::remove_file(&path).map_err(io)?;
                UnixListener::bind(&path).map_err(io)?
            }
            Err(e) => return Err(io(e)),
        };
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
        Ok(Server {
            listener,
            path,
            name: name.to_string(),
        })
    }

    /// Listens as `base-N` with the smallest N from 1 that no running monitor has.
    pub fn bind_numbered(base: &str) -> Result<Server, BindError> {
        let base = &base[..base.len().min(MAX_NAME_LEN - 5)];
        let mut last = None;
        for n in 1..1000 {
            match Server::bind(&format!("{base}-{n}")) {
                Err(e @ BindError::InUse { .. }) => last = Some(e),
                other => return other,
            }
        }
        Err(last.expect("the loop ran"))
    }

    /// The name the guest runs under.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The listening socket, to poll or accept on.
    pub fn listener(&self) -> &UnixListener {
        &self.listener
    }

    /// Accepts one client and reads its request. A client that sends something else gets a
    /// [`Reply::Failed`] and `Ok(None)`.
    pub fn accept(&self) -> io::Result<Option<(Connection, Request)>> {
        let (stream, _) = self.listener.accept()?;
        stream.set_read_timeout(Some(REQUEST_TIMEOUT))?;
        let mut connection = Connection { stream };
        let mut line = String::new();
        BufReader::new(&connection.stream)
            .take(MAX_REQUEST_LEN)
            .read_line(&mut line)?;
        match serde_json::from_str::<Request>(&line) {
            Ok(request) => Ok(Some((connection, request))),
            Err(e) => {
                connection.reply(&Reply::Failed {
                    message: format!("not a request this monitor understands: {e}"),
                })?;
                Ok(None)
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // The file may already be gone (removed by hand); nothing to do then.
        let _ = std::fs::remove_file(&self.path);
    }
}

/// One client of a [`Server`].
#[derive(Debug)]
pub struct Connection {
    stream: UnixStream,
}

impl Connection {
    /// Sends one reply line. A client that went away is not an error of the monitor's: the
    /// caller may ignore the result.
    pub fn reply(&mut self, reply: &Reply) -> io::Result<()> {
        let mut line = serde_json::to_string(reply).map_err(io::Error::other)?;
        line.push('\n');
        self.stream.write_all(line.as_bytes())
    }
}

/// How long a monitor waits for a connected client's request line.
const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);
/// The longest request line a monitor reads.
const MAX_REQUEST_LEN: u64 = 64 * 1024;

/// A request that could not be made or answered.
#[derive(Debug, Error)]
pub enum ClientError {
    /// No monitor runs under that name.
    #[error(
        "no guest named {name} is running (no socket {}); `fata ps` lists the running ones",
        path.display()
    )]
    NotRunning {
        /// The name asked for.
        name: String,
        /// The socket looked for.
        path: PathBuf,
    },
    /// The monitor went away or answered something unreadable.
    #[error("the monitor of {name} did not answer: {source}")]
    Io {
        /// The name asked for.
        name: String,
        /// Why.
        source: io::Error,
    },
}

/// Sends `request` to the monitor running as `name`; calls `progress` with each
/// [`Reply::Progress`] message and returns the final reply.
pub fn request(
    name: &str,
    request: &Request,
    progress: &mut dyn FnMut(&str),
) -> Result<Reply, ClientError> {
    check_name(name).map_err(|e| ClientError::Io {
        name: name.to_string(),
        source: io::Error::new(io::ErrorKind::InvalidInput, e),
    })?;
    let path = run_dir().join(format!("{name}{SOCKET_SUFFIX}"));
    let mut stream = UnixStream::connect(&path).map_err(|_| ClientError::NotRunning {
        name: name.to_string(),
        path: path.clone(),
    })?;
    let io = |source| ClientError::Io {
        name: name.to_string(),
        source,
    };
    let mut line = serde_json::to_string(request).map_err(|e| io(io::Error::other(e)))?;
    line.push('\n');
    stream.write_all(line.as_bytes()).map_err(io)?;
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).map_err(io)? == 0 {
            return Err(io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "it closed the connection without a final answer (did the guest end?)",
            )));
        }
        match serde_json::from_str::<Reply>(&line).map_err(|e| io(io::Error::other(e)))? {
            Reply::Progress { message } => progress(&message),
            last => return Ok(last),
        }
    }
}

/// The names of the guests with a socket in the run directory, sorted. A name whose monitor
/// does not answer is still listed: [`request`] says so.
pub fn names() -> io::Result<Vec<String>> {
    let dir = match std::fs::read_dir(run_dir()) {
        Ok(dir) => dir,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut names = Vec::new();
    for entry in dir {
        let file = entry?.file_name();
        let Some(name) = file.to_str().and_then(|f| f.strip_suffix(SOCKET_SUFFIX)) else {
            continue;
        };
        if check_name(name).is_ok() {
            names.push(name.to_string());
        }
    }
    names.sort();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Points the run directory at a fresh temporary one for the whole test binary: the tests
    /// use distinct names, so they may share it.
    fn temp_run_dir() -> &'static Path {
        static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
        let dir = DIR.get_or_init(|| tempfile::tempdir().unwrap());
        // SAFETY: every test sets the same value before it reads the variable.
        unsafe { std::env::set_var(RUN_DIR_VARIABLE, dir.path()) };
        dir.path()
    }

    #[test]
    fn names_are_checked() {
        for good in ["dns-1", "www", "a.b_c", "X9"] {
            assert_eq!(check_name(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "-x",
            ".hidden",
            "a/b",
            "a b",
            "é",
            &"n".repeat(MAX_NAME_LEN + 1),
        ] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_name_is_taken_once_and_freed_on_drop() {
        let dir = temp_run_dir();
        let first = Server::bind("taken").unwrap();
        assert!(matches!(
            Server::bind("taken"),
            Err(BindError::InUse { .. })
        ));
        let next = Server::bind_numbered("taken").unwrap();
        assert_eq!(next.name(), "taken-1");
        assert_eq!(Server::bind_numbered("taken").unwrap().name(), "taken-2");
        drop(first);
        assert!(!dir.join("taken.sock").exists());
        assert!(names().unwrap().contains(&"taken-1".to_string()));
    }

    #[test]
    fn a_socket_left_behind_is_replaced() {
        let dir = temp_run_dir();
        let stale = UnixListener::bind(dir.join("stale.sock")).unwrap();
        drop(stale);
        let server = Server::bind("stale").unwrap();
        assert_eq!(server.path(), dir.join("stale.sock"));
    }

    #[test]
    fn a_request_gets_progress_and_a_final_reply() {
        temp_run_dir();
        let server = Server::bind("talk").unwrap();
        let monitor = std::thread::spawn(move || {
            let (mut connection, request) = server.accept().unwrap().unwrap();
            connection
                .reply(&Reply::Progress {
                    message: "half".into(),
                })
                .unwrap();
            connection
                .reply(&Reply::Done {
                    message: format!("{request:?}"),
                })
                .unwrap();
        });
        let mut seen = Vec::new();
        let reply = request("talk", &Request::Pause, &mut |m| seen.push(m.to_string())).unwrap();
        monitor.join().unwrap();
        assert_eq!(seen, ["half"]);
        assert_eq!(
            reply,
            Reply::Done {
                message: "Pause".into()
            }
        );
        assert!(matches!(
            request("nobody", &Request::Info, &mut |_| {}),
            Err(ClientError::NotRunning { .. })
        ));
    }

    #[test]
    fn garbage_gets_a_failure_not_a_crash() {
        temp_run_dir();
        let server = Server::bind("garbage").unwrap();
        let client = std::thread::spawn(|| {
            let mut stream = UnixStream::connect(run_dir().join("garbage.sock")).unwrap();
            stream.write_all(b"{\"request\":\"reboot\"}\n").unwrap();
            let mut answer = String::new();
            BufReader::new(stream).read_line(&mut answer).unwrap();
            answer
        });
        assert!(server.accept().unwrap().is_none());
        assert!(client.join().unwrap().contains("failed"));
    }
}
