//! The mailbox through which the control thread hands requests to the vCPU thread: it sets the
//! pending flag (`signal::set_control_pending`) and kicks the vCPU thread with a signal until it
//! has taken the request, which brings it out of `KVM_RUN` or a `Yield`'s sleep at its next exit,
//! where the guest's state is whole. The vCPU thread answers through the channel that came with
//! the request; a freeze ([`Freeze`]) hands the frozen guest over and waits for its [`Verdict`].

use crate::signal;
use fata_control::{GuestState, Reply, Request};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::mpsc;
use std::sync::{Condvar, Mutex};
use std::time::Duration;

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

    /// The guest's state, for `fata ps`.
    pub fn state(&self) -> GuestState {
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
