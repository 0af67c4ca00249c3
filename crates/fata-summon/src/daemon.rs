//! The daemon: one thread answers DNS, one thread per start brings a service up, and a watcher
//! stops the idle ones.
//!
//! A service is stopped, starting, running or stopping. A lookup of a stopped one queues the
//! query and starts it; lookups that come meanwhile queue too, and all are answered together
//! once it accepts a connection on its port, or answered SERVFAIL if it exits or times out
//! first. A lookup during a stop waits for the monitor to end and then starts the service again,
//! so two monitors never read one tap.

use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use crate::config::{self, Config, Service, Source};
use crate::directory::{self, Directory};
use crate::link;
use crate::standby::Standby;

/// Runs the daemon of the configuration at `config`, starting services with the `fata`
/// executable at `fata`, until SIGINT or SIGTERM, which stop every running service first.
pub fn run(config: &Path, fata: &Path) -> Result<(), String> {
    let config = config::load(config)?;
    let directory = Directory::new(&config)
        .map_err(|e| format!("the zone {} cannot be built: {e}", config.zone))?;
    let socket = UdpSocket::bind(config.listen).map_err(|e| {
        format!(
            "cannot answer DNS at {}: {e} (another server may hold the port; ports below 1024 \
             need root)",
            config.listen
        )
    })?;
    let signals = block_stop_signals();
    println!(
        "summon: setting up {} taps for the services of {}",
        config.services.len(),
        config.zone
    );
    let taps = link::open_taps(&config.services, config.host).map_err(|e| e.to_string())?;
    let daemon = Arc::new(Daemon::new(&config, fata, socket, directory, taps));
    daemon.prepare_standby();
    let watcher = Arc::clone(&daemon);
    thread::spawn(move || watcher.watch());
    let stopper = Arc::clone(&daemon);
    thread::spawn(move || stopper.stop_on(signals));
    println!(
        "summon: answering for {} at {}: {} services, none running",
        config.zone,
        config.listen,
        config.services.len()
    );
    daemon.serve()
}

/// Where a service is in its life.
enum Phase {
    Stopped,
    Starting,
    Running(Child),
    /// Its monitor was told to end and has not yet.
    Stopping,
}

/// A service and what the daemon knows of it.
struct Slot {
    service: Service,
    /// The tap, held for the daemon's whole life and handed down to each monitor.
    tap: File,
    state: Mutex<State>,
}

struct State {
    phase: Phase,
    /// Queries waiting for the service to be up, with who asked.
    waiters: Vec<(Vec<u8>, SocketAddr)>,
    /// The last lookup or frame.
    last_used: Instant,
    /// The tap's frame count when last looked at.
    frames: u64,
}

/// A command to start, and where its child goes.
type SpawnRequest = (Command, mpsc::Sender<io::Result<Child>>);

struct Daemon {
    fata: PathBuf,
    /// The configuration's directory, where monitors start.
    base: PathBuf,
    /// Hands commands to the spawner thread.
    spawner: Mutex<mpsc::Sender<SpawnRequest>>,
    /// The `fata` process started ahead for the next summon, if one is ready.
    standby: Mutex<Option<Standby>>,
    /// Whether a thread is starting the next standby: starts that end together start one.
    standby_starting: AtomicBool,
    socket: UdpSocket,
    directory: Mutex<Directory>,
    slots: Vec<Slot>,
}

/// Locks `mutex`, carrying on with its data if a thread panicked holding it (each update leaves
/// the state whole).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The longest a probe waits for one connection before it looks at the monitor again.
const PROBE_WAIT: Duration = Duration::from_millis(100);
/// The pause between probes that were refused (the service runs but does not listen yet).
const PROBE_PAUSE: Duration = Duration::from_millis(1);
/// How many threads close the taps when the daemon stops.
const TAP_CLOSERS: usize = 64;
/// How long a monitor told to end may take before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(5);

impl Daemon {
    fn new(
        config: &Config,
        fata: &Path,
        socket: UdpSocket,
        directory: Directory,
        taps: Vec<File>,
    ) -> Daemon {
        let now = Instant::now();
        let slots = config
            .services
            .iter()
            .cloned()
            .zip(taps)
            .map(|(service, tap)| Slot {
                service,
                tap,
                state: Mutex::new(State {
                    phase: Phase::Stopped,
                    waiters: Vec::new(),
                    last_used: now,
                    frames: 0,
                }),
            })
            .collect();
        let (spawner, requests) = mpsc::channel::<SpawnRequest>();
        thread::spawn(move || {
            for (mut command, reply) in requests {
                let _ = reply.send(command.spawn());
            }
        });
        Daemon {
            fata: fata.to_path_buf(),
            base: config.base.clone(),
            spawner: Mutex::new(spawner),
            standby: Mutex::new(None),
            standby_starting: AtomicBool::new(false),
            socket,
            directory: Mutex::new(directory),
            slots,
        }
    }

    /// Answers queries as they come, forever.
    fn serve(self: &Arc<Self>) -> Result<(), String> {
        let mut buf = vec![0u8; 4096];
        loop {
            let (len, peer) = match self.socket.recv_from(&mut buf) {
                Ok(received) => received,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(format!("the DNS socket failed: {e}")),
            };
            self.query(&buf[..len], peer);
        }
    }

    /// Answers one query now, or once its service is up.
    fn query(self: &Arc<Self>, query: &[u8], peer: SocketAddr) {
        let service = lock(&self.directory).service_of(query);
        let Some(index) = service else {
            self.answer(query, peer);
            return;
        };
        let slot = &self.slots[index];
        let mut state = lock(&slot.state);
        state.last_used = Instant::now();
        match &mut state.phase {
            Phase::Running(child) => match child.try_wait() {
                Ok(None) => {
                    drop(state);
                    self.answer(query, peer);
                    return;
                }
                _ => {
                    println!("summon: {} had ended; starting it again", slot.service.name);
                }
            },
            Phase::Starting | Phase::Stopping => {
                state.waiters.push((query.to_vec(), peer));
                return;
            }
            Phase::Stopped => {}
        }
        state.phase = Phase::Starting;
        state.waiters.push((query.to_vec(), peer));
        drop(state);
        self.start_in_background(index);
    }

    fn start_in_background(self: &Arc<Self>, index: usize) {
        let daemon = Arc::clone(self);
        thread::spawn(move || daemon.start(index));
    }

    /// Sends the zone's answer to `query`.
    fn answer(&self, query: &[u8], peer: SocketAddr) {
        let mut out = Vec::with_capacity(512);
        if lock(&self.directory).answer(query, &mut out) {
            let _ = self.socket.send_to(&out, peer);
        }
    }

    /// Brings service `index` up, then answers the queries waiting for it.
    fn start(&self, index: usize) {
        let slot = &self.slots[index];
        let began = Instant::now();
        let result = self.launch(slot, began);
        let mut state = lock(&slot.state);
        let waiters = std::mem::take(&mut state.waiters);
        let ok = result.is_ok();
        match result {
            Ok(child) => {
                state.phase = Phase::Running(child);
                state.frames = link::frames(&slot.service.tap);
                state.last_used = Instant::now();
                drop(state);
                for (query, peer) in &waiters {
                    self.answer(query, *peer);
                }
            }
            Err(why) => {
                state.phase = Phase::Stopped;
                drop(state);
                println!(
                    "summon: {} did not start: {why}; its lookups are answered SERVFAIL",
                    slot.service.name
                );
                for (query, peer) in &waiters {
                    if let Some(out) = directory::servfail(query) {
                        let _ = self.socket.send_to(&out, *peer);
                    }
                }
            }
        }
        if ok {
            println!(
                "summon: {} ready in {:.1} ms; {}",
                slot.service.name,
                began.elapsed().as_secs_f64() * 1e3,
                self.usage()
            );
        }
        // After the answers and the log line, which it would hold back by a process start.
        self.prepare_standby();
    }

    /// Starts the service's monitor (in the standby process when one is ready) and waits until
    /// the service accepts a connection.
    fn launch(&self, slot: &Slot, began: Instant) -> Result<Child, String> {
        let service = &slot.service;
        let tap = slot.tap.as_raw_fd();
        let args = monitor_args(service, tap);
        let standby = lock(&self.standby).take();
        let handed = standby.and_then(|standby| match standby.hand(&args, tap) {
            Ok(child) => Some(child),
            Err(e) => {
                println!("summon: the standby monitor is gone ({e}); starting one afresh");
                None
            }
        });
        let mut child = match handed {
            Some(child) => child,
            None => {
                let mut command = Command::new(&self.fata);
                command.args(&args);
                self.spawn(command, tap)
                    .map_err(|e| format!("cannot run {}: {e}", self.fata.display()))?
            }
        };
        let target = SocketAddr::from((service.address, service.port));
        let deadline = began + service.start_timeout;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!(
                    "its monitor ended ({status}) before it was ready; its messages are above"
                ));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                end(&mut child);
                return Err(format!(
                    "nothing accepted a connection at {target} within {:?}",
                    service.start_timeout
                ));
            }
            let tried = Instant::now();
            match TcpStream::connect_timeout(&target, left.min(PROBE_WAIT)) {
                Ok(_) => return Ok(child),
                Err(_) if tried.elapsed() < PROBE_PAUSE => thread::sleep(PROBE_PAUSE),
                Err(_) => {}
            }
        }
    }

    /// Starts a standby process for the next summon, unless one is waiting or being started.
    fn prepare_standby(&self) {
        if lock(&self.standby).is_some() || self.standby_starting.swap(true, Ordering::AcqRel) {
            return;
        }
        let started = Standby::command(&self.fata).and_then(|(command, theirs, ours)| {
            let child = self.spawn(command, theirs.as_raw_fd())?;
            Ok(Standby::new(child, ours))
        });
        match started {
            Ok(standby) => *lock(&self.standby) = Some(standby),
            Err(e) => {
                println!("summon: cannot start a standby monitor ({e}); each summon starts its own")
            }
        }
        self.standby_starting.store(false, Ordering::Release);
    }

    /// Starts `command` on the spawner thread, handing down descriptor `inherit`: a child asks
    /// for a signal when the thread that forked it ends, so every monitor is forked by the one
    /// thread that lasts.
    fn spawn(&self, mut command: Command, inherit: RawFd) -> io::Result<Child> {
        command.stdin(Stdio::null()).current_dir(&self.base);
        // SAFETY: between fork and exec the closure makes only async-signal-safe calls on the
        // child's own state: it clears close-on-exec on the descriptor it inherits, unblocks
        // the signals the daemon's threads block (so the monitor hears SIGTERM), and asks for
        // SIGTERM when its parent thread (the daemon's spawner, which lives as long as the
        // daemon) dies, so no monitor outlives a killed daemon.
        unsafe {
            command.pre_exec(move || {
                let mut none: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut none);
                if libc::fcntl(inherit, libc::F_SETFD, 0) < 0
                    || libc::pthread_sigmask(libc::SIG_SETMASK, &none, std::ptr::null_mut()) != 0
                    || libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) < 0
                {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let (reply, answer) = mpsc::channel();
        lock(&self.spawner)
            .send((command, reply))
            .map_err(|_| io::Error::other("the spawner thread is gone"))?;
        answer
            .recv()
            .map_err(|_| io::Error::other("the spawner thread is gone"))?
    }

    /// Stops the services that had no lookup and no frame for their idle timeout, and notices
    /// monitors that ended on their own; looks every quarter of the shortest timeout.
    fn watch(self: Arc<Self>) {
        let shortest = self
            .slots
            .iter()
            .map(|slot| slot.service.idle_timeout)
            .min()
            .unwrap_or(Duration::from_secs(1));
        let tick = (shortest / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
        loop {
            thread::sleep(tick);
            for (index, slot) in self.slots.iter().enumerate() {
                let mut state = lock(&slot.state);
                let now = Instant::now();
                let Phase::Running(child) = &mut state.phase else {
                    continue;
                };
                if let Ok(Some(status)) = child.try_wait() {
                    state.phase = Phase::Stopped;
                    drop(state);
                    println!(
                        "summon: {} ended on its own ({status}); {}",
                        slot.service.name,
                        self.usage()
                    );
                    continue;
                }
                let frames = link::frames(&slot.service.tap);
                if frames != state.frames {
                    state.frames = frames;
                    state.last_used = now;
                }
                let idle = now.duration_since(state.last_used);
                if idle < slot.service.idle_timeout {
                    continue;
                }
                let Phase::Running(mut child) =
                    std::mem::replace(&mut state.phase, Phase::Stopping)
                else {
                    continue;
                };
                drop(state);
                end(&mut child);
                let mut state = lock(&slot.state);
                let again = !state.waiters.is_empty();
                state.phase = if again {
                    Phase::Starting
                } else {
                    Phase::Stopped
                };
                drop(state);
                println!(
                    "summon: {} idle for {:.1} s, stopped; {}",
                    slot.service.name,
                    idle.as_secs_f64(),
                    self.usage()
                );
                if again {
                    self.start_in_background(index);
                }
            }
        }
    }

    /// How many services run and the host memory they take: the proportional set size of
    /// their monitors (shared pages of one snapshot counted once in all) and of the daemon.
    fn usage(&self) -> String {
        let mut running = 0;
        let mut kib = pss_kib("self");
        if let Some(standby) = &*lock(&self.standby) {
            kib += pss_kib(&standby.id().to_string());
        }
        for slot in &self.slots {
            if let Phase::Running(child) = &lock(&slot.state).phase {
                running += 1;
                kib += pss_kib(&child.id().to_string());
            }
        }
        format!(
            "{running} running, {:.1} MiB of host memory in use",
            kib as f64 / 1024.0
        )
    }

    /// Waits for SIGINT or SIGTERM, stops every running service (all told at once, then
    /// waited for), and ends the process.
    fn stop_on(self: Arc<Self>, signals: libc::sigset_t) {
        let mut signal = 0;
        // SAFETY: `signals` is an initialised set and `signal` a valid place for the number.
        unsafe { libc::sigwait(&signals, &mut signal) };
        if let Some(standby) = lock(&self.standby).take() {
            standby.end();
        }
        let mut children = Vec::new();
        for slot in &self.slots {
            let mut state = lock(&slot.state);
            if let Phase::Running(child) = std::mem::replace(&mut state.phase, Phase::Stopping) {
                tell_to_end(&child);
                children.push(child);
            }
        }
        for child in &mut children {
            wait_or_kill(child);
        }
        println!(
            "summon: stopped {} running services; closing {} taps",
            children.len(),
            self.slots.len()
        );
        self.close_taps();
        println!("summon: exiting");
        std::process::exit(0);
    }

    /// Closes every tap, many at once: each close waits for the kernel's network code to let
    /// go of the device (an RCU grace period, about 20 ms here), so a thousand closed one after
    /// another, as the process's exit would, take twenty seconds.
    fn close_taps(&self) {
        let fds: Vec<RawFd> = self.slots.iter().map(|slot| slot.tap.as_raw_fd()).collect();
        let chunk = fds.len().div_ceil(TAP_CLOSERS).max(1);
        thread::scope(|scope| {
            for part in fds.chunks(chunk) {
                scope.spawn(move || {
                    for &fd in part {
                        // SAFETY: the monitors that shared the tap have ended and nothing reads
                        // it any more; the process exits right after, running no destructor, so
                        // the `File` that owned the descriptor never closes it again.
                        unsafe { libc::close(fd) };
                    }
                });
            }
        });
    }
}

/// The command line (after `fata`) that starts `service`'s monitor on the tap at descriptor
/// `tap`.
fn monitor_args(service: &Service, tap: RawFd) -> Vec<OsString> {
    let mut args: Vec<OsString> = Vec::new();
    match &service.source {
        Source::Snapshot(dir) => {
            args.extend(["restore".into(), dir.into()]);
        }
        Source::Image {
            path, mem, kv, mac, ..
        } => {
            let mac = mac.map(|b| format!("{b:02x}")).join(":");
            args.extend(["run".into(), path.into(), "--mac".into(), mac.into()]);
            if let Some(mem) = mem {
                args.extend(["--mem".into(), mem.into()]);
            }
            for kv in kv {
                args.extend(["--kv".into(), kv.into()]);
            }
        }
    }
    args.extend(["--name".into(), service.name.clone().into()]);
    args.extend(["--net".into(), format!("fd:{tap}").into()]);
    for block in &service.block {
        args.extend(["--block".into(), block.into()]);
    }
    if let Source::Image { args: app, .. } = &service.source {
        args.push("--".into());
        args.extend(app.iter().map(OsString::from));
        args.push("--ipv4".into());
        args.push(format!("{}/{}", service.address, service.prefix).into());
    }
    args
}

/// Tells a monitor to end (SIGTERM, as `fata stop` does through its socket) and waits; kills it
/// if it has not ended after [`STOP_GRACE`].
fn end(child: &mut Child) {
    tell_to_end(child);
    wait_or_kill(child);
}

fn tell_to_end(child: &Child) {
    // SAFETY: a plain kill(2) of the child's own process id, which has not been reaped.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
}

fn wait_or_kill(child: &mut Child) {
    let deadline = Instant::now() + STOP_GRACE;
    while Instant::now() < deadline {
        if let Ok(Some(_)) | Err(_) = child.try_wait() {
            return;
        }
        thread::sleep(Duration::from_millis(1));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// The proportional set size of process `pid` ("self" for this one), in KiB; 0 if unknown.
fn pss_kib(pid: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|line| line.strip_prefix("Pss:"))
                .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Blocks SIGINT and SIGTERM in this thread and every thread it starts, so that
/// [`Daemon::stop_on`] takes them; returns the set.
fn block_stop_signals() -> libc::sigset_t {
    // SAFETY: the set is initialised by sigemptyset before use, and pthread_sigmask only
    // changes this thread's mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}
