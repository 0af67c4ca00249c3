//! The control socket: the thread that serves it and the mailbox through which it hands requests
//! to the vCPU thread.
//!
//! The control thread is started before the seccomp filter, so it is not confined: it only talks
//! to clients on a socket only the monitor's user can open, and never acts on guest data. It
//! answers `Info` itself. Every other request goes into the [`Mailbox`]: the control thread sets
//! the pending flag (`signal::set_control_pending`) and kicks the vCPU thread with a signal until
//! it has taken the request, which brings it out of `KVM_RUN` or a `Yield`'s sleep at its next
//! exit, where the guest's state is whole. The vCPU thread answers through the channel that
//! came with the request.

use crate::signal;
use crate::snapshot::Saver;
use fata_control::{GuestState, Info, Reply, Request, Server};
use std::collections::VecDeque;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::mpsc;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};
use vmm_sys_util::eventfd::EventFd;

/// How often the control thread kicks the vCPU thread until it takes a request: a kick that
/// lands just before `KVM_RUN` is entered interrupts nothing, the next one does.
const KICK_INTERVAL: Duration = Duration::from_millis(2);

/// A request the vCPU thread carries out, with where to send its replies.
pub struct Order {
    /// What to do.
    pub request: Request,
    /// Progress and the final reply, in order; the control thread forwards them to the client
    /// until the final one.
    pub replies: mpsc::Sender<Reply>,
    /// For a snapshot or the end of a migration: how the vCPU thread hands the frozen guest
    /// over and learns what to do next.
    pub freeze: Option<Freeze>,
}

/// The vCPU thread's half of a freeze: it quiesces the devices, captures the guest, sends it on
/// `frozen`, and waits on `verdict` with the guest stopped, while the control thread saves or
/// sends the guest's memory.
pub struct Freeze {
    /// The frozen guest (its memory extents empty), or why it could not be frozen.
    pub frozen: mpsc::Sender<Result<fata_snapshot::Snapshot, String>>,
    /// What happens to the guest here once its state is out.
    pub verdict: mpsc::Receiver<Verdict>,
}

/// What happens to a frozen guest here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Carry on (as it was: running, or paused).
    CarryOn,
    /// End the run here; the note says where the guest went.
    End(String),
}

/// Requests on their way from the control thread to the vCPU thread.
pub struct Mailbox {
    orders: Mutex<VecDeque<Order>>,
    posted: Condvar,
    /// The vCPU thread, for the kick.
    vcpu_thread: libc::pthread_t,
    /// The guest's state, as `fata ps` shows it (a [`GuestState`] as u8).
    state: AtomicU8,
}

impl Mailbox {
    /// A mailbox for requests to the calling thread, which must be the vCPU thread.
    pub fn for_this_thread() -> Mailbox {
        Mailbox {
            orders: Mutex::new(VecDeque::new()),
            posted: Condvar::new(),
            // SAFETY: pthread_self has no preconditions and cannot fail.
            vcpu_thread: unsafe { libc::pthread_self() },
            state: AtomicU8::new(GuestState::Running as u8),
        }
    }

    /// Posts `request` and kicks the vCPU thread until it takes it; returns its replies.
    pub fn post(&self, request: Request, freeze: Option<Freeze>) -> mpsc::Receiver<Reply> {
        let (replies, answers) = mpsc::channel();
        let mut orders = self.lock();
        orders.push_back(Order {
            request,
            replies,
            freeze,
        });
        signal::set_control_pending(true);
        self.posted.notify_all();
        drop(orders);
        while !self.lock().is_empty() {
            // SAFETY: the vCPU thread lives until the control thread is joined (both run in one
            // scope that joins the control thread first); the kick's handler does nothing.
            unsafe { libc::pthread_kill(self.vcpu_thread, signal::kick_signal()) };
            std::thread::sleep(KICK_INTERVAL);
        }
        answers
    }

    /// The next request, if one waits (vCPU thread).
    pub fn take(&self) -> Option<Order> {
        let mut orders = self.lock();
        let order = orders.pop_front();
        signal::set_control_pending(!orders.is_empty());
        order
    }

    /// Waits for the next request (vCPU thread, while the guest is paused).
    pub fn wait(&self) -> Order {
        let mut orders = self.lock();
        loop {
            if let Some(order) = orders.pop_front() {
                signal::set_control_pending(!orders.is_empty());
                return order;
            }
            orders = self
                .posted
                .wait(orders)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
    }

    /// Notes the guest's state for `fata ps`.
    pub fn set_state(&self, state: GuestState) {
        self.state.store(state as u8, Ordering::Relaxed);
    }

    fn state(&self) -> GuestState {
        match self.state.load(Ordering::Relaxed) {
            s if s == GuestState::Paused as u8 => GuestState::Paused,
            s if s == GuestState::Migrating as u8 => GuestState::Migrating,
            _ => GuestState::Running,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Order>> {
        // A panicking thread cannot leave the queue half-changed: keep using it.
        self.orders
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// What `Info` reports that does not change while the guest runs.
pub struct Facts {
    /// The answer to `Info`, with `rss_bytes`, `uptime_ms` and `state` filled in per request.
    pub info: Info,
    /// When the guest started here.
    pub started: Instant,
}

/// Serves `server` until `done` is signalled, then removes the socket (by dropping `server`).
/// Snapshots are written here, with `saver`.
pub fn serve(server: Server, mailbox: &Mailbox, facts: &Facts, saver: &Saver<'_>, done: &EventFd) {
    let mut polls = [
        libc::pollfd {
            fd: server.listener().as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: done.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    loop {
        // SAFETY: `polls` holds two initialised pollfd structs whose descriptors outlive the call.
        let rc = unsafe { libc::poll(polls.as_mut_ptr(), polls.len() as libc::nfds_t, -1) };
        if rc < 0 {
            continue;
        }
        if polls[1].revents != 0 {
            return;
        }
        if polls[0].revents == 0 {
            continue;
        }
        // A client that fails halfway (went away, sent garbage) is its own problem.
        let Ok(Some((mut connection, request))) = server.accept() else {
            continue;
        };
        let answers = match request {
            Request::Info => {
                let _ = connection.reply(&Reply::Info(info_now(facts, mailbox.state())));
                continue;
            }
            Request::Snapshot { dir, stop, diff } => {
                let reply = saver.save(mailbox, &dir, stop, diff);
                let _ = connection.reply(&reply);
                continue;
            }
            Request::Migrate { to } => {
                let mut progress = |message: String| {
                    let _ = connection.reply(&Reply::Progress { message });
                };
                let reply = saver.migrate(mailbox, &to, &mut progress);
                let _ = connection.reply(&reply);
                continue;
            }
            request => mailbox.post(request, None),
        };
        for reply in answers {
            let last = !matches!(reply, Reply::Progress { .. });
            let _ = connection.reply(&reply);
            if last {
                break;
            }
        }
    }
}

/// `facts.info` as of now.
fn info_now(facts: &Facts, state: GuestState) -> Info {
    Info {
        rss_bytes: resident_bytes().unwrap_or(0),
        uptime_ms: facts.started.elapsed().as_millis() as u64,
        state,
        ..facts.info.clone()
    }
}

/// The process's resident set, from `/proc/self/statm`.
fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page).ok()?)
}
