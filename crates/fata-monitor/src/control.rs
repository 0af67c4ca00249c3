//! The control socket and the thread that serves it.
//!
//! The control thread is started before the seccomp filter, so it is not confined: it only talks
//! to clients on a socket only the monitor's user can open, and never acts on guest data. It
//! answers `Info` itself, writes snapshots and sends migrations (`snapshot`), and hands every
//! other request to the vCPU thread through the [`Mailbox`].

use crate::mailbox::Mailbox;
use crate::snapshot::Saver;
use fata_control::{GuestState, Info, Reply, Request, Server};
use std::os::fd::AsRawFd;
use std::time::Instant;
use vmm_sys_util::eventfd::EventFd;

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
