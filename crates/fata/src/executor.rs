//! The single-threaded executor: a run queue of ready tasks, a timer table ordered by deadline and a
//! table of tasks waiting for device readiness.
//!
//! When no task is ready, the executor fires due timers, then blocks in the platform's
//! `yield_until(interest, earliest deadline)` and wakes the tasks whose devices became ready. Tasks
//! run in the order they were woken; timers fire in deadline order.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::future::Future;
use core::pin::Pin;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use core::task::{Context, Poll, Waker};

use async_task::{Runnable, Task};
use fata_platform::{Platform, ReadySet};
use spin::Mutex;

use crate::Sys;

/// How many tasks run between two looks at the clock.
const RUN_BUDGET: usize = 256;
/// How many busy rounds pass between two non-blocking looks at the devices.
const DEVICE_POLL_EVERY: u32 = 64;

/// Tasks ready to run. Wakers may be called from any thread; only the executor's thread runs tasks.
struct RunQueue {
    tasks: Mutex<VecDeque<Runnable>>,
    closed: AtomicBool,
}

impl RunQueue {
    fn push(&self, runnable: Runnable) {
        let mut tasks = self.tasks.lock();
        if self.closed.load(Ordering::Acquire) {
            // The executor has finished: nobody will run the task again, and it must not be dropped
            // away from the executor's thread, so it is leaked.
            core::mem::forget(runnable);
        } else {
            tasks.push_back(runnable);
        }
    }

    fn pop(&self) -> Option<Runnable> {
        self.tasks.lock().pop_front()
    }

    fn is_empty(&self) -> bool {
        self.tasks.lock().is_empty()
    }

    /// Refuses further tasks and hands back the queued ones, to be dropped on the executor's thread.
    fn close(&self) -> VecDeque<Runnable> {
        let mut tasks = self.tasks.lock();
        self.closed.store(true, Ordering::Release);
        core::mem::take(&mut *tasks)
    }
}

/// A task waiting for one of the devices in `set`.
struct Waiter {
    id: u64,
    set: ReadySet,
    waker: Waker,
}

/// One executor's state.
pub(crate) struct Runtime {
    queue: Arc<RunQueue>,
    /// Sleeping tasks keyed by (deadline in ns, unique id).
    timers: Mutex<BTreeMap<(u64, u64), Waker>>,
    /// Tasks waiting for device readiness, by unique id: one per network stack in practice, so a
    /// vector (and one `BTreeMap` instantiation fewer in every image).
    waiters: Mutex<Vec<Waiter>>,
    next_id: AtomicU64,
}

impl Runtime {
    fn new() -> Runtime {
        Runtime {
            queue: Arc::new(RunQueue {
                tasks: Mutex::new(VecDeque::new()),
                closed: AtomicBool::new(false),
            }),
            timers: Mutex::new(BTreeMap::new()),
            waiters: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(0),
        }
    }

    fn fresh_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Registers (or re-arms with a new waker) the timer `(deadline, id)`.
    pub(crate) fn arm_timer(&self, deadline: u64, id: Option<u64>, waker: &Waker) -> u64 {
        let id = id.unwrap_or_else(|| self.fresh_id());
        self.timers.lock().insert((deadline, id), waker.clone());
        id
    }

    /// Forgets the timer `(deadline, id)` if it has not fired.
    pub(crate) fn disarm_timer(&self, deadline: u64, id: u64) {
        self.timers.lock().remove(&(deadline, id));
    }

    /// Wakes every timer whose deadline is at or before `now`, earliest first.
    fn fire_timers(&self, now: u64) {
        loop {
            let waker = {
                let mut timers = self.timers.lock();
                match timers.first_key_value() {
                    Some((&(deadline, _), _)) if deadline <= now => {
                        timers.pop_first().map(|(_, w)| w)
                    }
                    _ => None,
                }
            };
            match waker {
                Some(waker) => waker.wake(),
                None => break,
            }
        }
    }

    pub(crate) fn next_deadline(&self) -> Option<u64> {
        self.timers
            .lock()
            .first_key_value()
            .map(|(&(deadline, _), _)| deadline)
    }

    /// Registers (or refreshes) a task waiting for `set`; returns its id.
    fn arm_waiter(&self, set: ReadySet, id: Option<u64>, waker: &Waker) -> u64 {
        let mut waiters = self.waiters.lock();
        if let Some(waiter) = id.and_then(|id| waiters.iter_mut().find(|w| w.id == id)) {
            waiter.set = set;
            waiter.waker.clone_from(waker);
            return waiter.id;
        }
        let id = id.unwrap_or_else(|| self.fresh_id());
        waiters.push(Waiter {
            id,
            set,
            waker: waker.clone(),
        });
        id
    }

    fn is_waiting(&self, id: u64) -> bool {
        self.waiters.lock().iter().any(|w| w.id == id)
    }

    fn disarm_waiter(&self, id: u64) {
        self.waiters.lock().retain(|w| w.id != id);
    }

    /// The union of the devices some task waits for.
    fn interest(&self) -> ReadySet {
        self.waiters
            .lock()
            .iter()
            .fold(ReadySet::EMPTY, |all, w| all.union(w.set))
    }

    /// Wakes the tasks waiting for a device in `ready`.
    fn wake_ready(&self, ready: ReadySet) {
        if ready.is_empty() {
            return;
        }
        let mut woken = Vec::new();
        self.waiters.lock().retain(|w| {
            let hit = w.set.intersects(ready);
            if hit {
                woken.push(w.waker.clone());
            }
            !hit
        });
        woken.into_iter().for_each(Waker::wake);
    }

    fn spawn<F>(&self, future: F) -> JoinHandle<F::Output>
    where
        F: Future + 'static,
        F::Output: 'static,
    {
        let queue = self.queue.clone();
        let schedule = move |runnable: Runnable| queue.push(runnable);
        // SAFETY: `spawn_unchecked` allows a future that is not `Send` as long as its `Runnable` is
        // only used and dropped on the thread that spawned it. Runnables live in this runtime's queue,
        // which only `block_on`'s loop on the runtime's own thread pops and runs; `close` hands the
        // leftovers back to that thread to drop, and a push after `close` leaks the runnable instead
        // of dropping it. The future and the schedule function are `'static`, and the schedule
        // function is `Send + Sync` (an `Arc` of a spin-locked queue).
        #[allow(unsafe_code)]
        let (runnable, task) = unsafe { async_task::spawn_unchecked(future, schedule) };
        runnable.schedule();
        JoinHandle { task: Some(task) }
    }

    /// Drops everything the runtime still holds, on its own thread.
    fn shut_down(&self) {
        drop(self.queue.close());
        let timers = core::mem::take(&mut *self.timers.lock());
        drop(timers);
        let waiters = core::mem::take(&mut *self.waiters.lock());
        drop(waiters);
    }
}

#[cfg(not(any(fata_target = "hvt", fata_target = "virtio")))]
mod current {
    //! The runtime of the current thread (tests run several at once, one per thread).
    use super::Runtime;
    use alloc::sync::Arc;
    use core::cell::RefCell;

    std::thread_local! {
        static CURRENT: RefCell<Option<Arc<Runtime>>> = const { RefCell::new(None) };
    }

    pub(super) fn get() -> Option<Arc<Runtime>> {
        CURRENT.with(|c| c.borrow().clone())
    }

    pub(super) fn set(runtime: Option<Arc<Runtime>>) -> Option<Arc<Runtime>> {
        CURRENT.with(|c| core::mem::replace(&mut *c.borrow_mut(), runtime))
    }
}

#[cfg(any(fata_target = "hvt", fata_target = "virtio"))]
mod current {
    //! The runtime of the unikernel, which has one thread.
    use super::Runtime;
    use alloc::sync::Arc;

    static CURRENT: spin::Mutex<Option<Arc<Runtime>>> = spin::Mutex::new(None);

    pub(super) fn get() -> Option<Arc<Runtime>> {
        CURRENT.lock().clone()
    }

    pub(super) fn set(runtime: Option<Arc<Runtime>>) -> Option<Arc<Runtime>> {
        core::mem::replace(&mut *CURRENT.lock(), runtime)
    }
}

/// The running executor; panics outside `block_on` (and so outside `#[fata::main]`).
pub(crate) fn runtime() -> Arc<Runtime> {
    current::get().expect("fata: no executor is running here; call this from a task (inside #[fata::main] or fata::block_on)")
}

/// Clears the current runtime when `block_on` returns or unwinds.
struct Enter(Arc<Runtime>);

impl Drop for Enter {
    fn drop(&mut self) {
        self.0.shut_down();
        current::set(None);
    }
}

/// Starts `future` as a new task on the running executor. Dropping the handle cancels the task;
/// [`JoinHandle::detach`] lets it run on.
pub fn spawn<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + 'static,
    F::Output: 'static,
{
    runtime().spawn(future)
}

/// Runs an executor on this thread until `future` completes, and returns its output.
///
/// `#[fata::main]` calls this once for the app; tests call it directly. Tasks still running when
/// `future` completes are dropped. Panics when called from inside a running executor.
pub fn block_on<F>(future: F) -> F::Output
where
    F: Future + 'static,
    F::Output: 'static,
{
    let runtime = Arc::new(Runtime::new());
    if current::set(Some(runtime.clone())).is_some() {
        panic!("fata::block_on called from inside a running executor");
    }
    let _enter = Enter(runtime.clone());
    let mut main = runtime.spawn(future);
    let mut busy_rounds: u32 = 0;
    loop {
        for _ in 0..RUN_BUDGET {
            match runtime.queue.pop() {
                Some(runnable) => {
                    runnable.run();
                }
                None => break,
            }
        }
        if let Some(output) = main.try_take() {
            return output;
        }
        runtime.fire_timers(Sys::monotonic_ns());
        let interest = runtime.interest();
        if !runtime.queue.is_empty() {
            busy_rounds = busy_rounds.wrapping_add(1);
            if !interest.is_empty() && busy_rounds.is_multiple_of(DEVICE_POLL_EVERY) {
                runtime.wake_ready(Sys::yield_until(interest, Some(0)));
            }
            continue;
        }
        let deadline = runtime.next_deadline();
        if deadline.is_none() && interest.is_empty() {
            panic!("fata: every task is waiting and no timer or device can wake one (deadlock)");
        }
        runtime.wake_ready(Sys::yield_until(interest, deadline));
    }
}

/// A spawned task. Await it for the task's output; drop it to cancel the task.
pub struct JoinHandle<T> {
    task: Option<Task<T>>,
}

impl<T> JoinHandle<T> {
    /// Lets the task run to completion on its own; its output is dropped.
    pub fn detach(mut self) {
        if let Some(task) = self.task.take() {
            task.detach();
        }
    }

    /// Cancels the task now; it does not run again.
    pub fn abort(self) {
        drop(self);
    }

    /// Whether the task has completed (or been cancelled).
    pub fn is_finished(&self) -> bool {
        self.task.as_ref().is_none_or(Task::is_finished)
    }

    /// The output of a finished task, without waiting.
    fn try_take(&mut self) -> Option<T> {
        if !self.is_finished() {
            return None;
        }
        let mut cx = Context::from_waker(Waker::noop());
        match Pin::new(&mut *self).poll(&mut cx) {
            Poll::Ready(output) => Some(output),
            Poll::Pending => None,
        }
    }
}

impl<T> Future for JoinHandle<T> {
    type Output = T;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let task = self
            .task
            .as_mut()
            .expect("JoinHandle polled after it completed");
        let output = core::task::ready!(Pin::new(task).poll(cx));
        self.task = None;
        Poll::Ready(output)
    }
}

/// Waits until the platform reports one of the devices in `set` ready (a frame arrived).
///
/// Device code calls this after a non-blocking receive came back empty.
pub fn wait_ready(set: ReadySet) -> WaitReady {
    WaitReady { set, id: None }
}

/// The future [`wait_ready`] returns.
pub struct WaitReady {
    set: ReadySet,
    id: Option<u64>,
}

impl Future for WaitReady {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let runtime = runtime();
        match self.id {
            Some(id) if !runtime.is_waiting(id) => {
                self.id = None;
                Poll::Ready(())
            }
            id => {
                self.id = Some(runtime.arm_waiter(self.set, id, cx.waker()));
                Poll::Pending
            }
        }
    }
}

impl Drop for WaitReady {
    fn drop(&mut self) {
        if let (Some(id), Some(runtime)) = (self.id, current::get()) {
            runtime.disarm_waiter(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::rc::Rc;
    use core::cell::{Cell, RefCell};

    #[test]
    fn runs_tasks_in_the_order_they_were_spawned_and_returns_main_output() {
        let order = Rc::new(RefCell::new(Vec::new()));
        let seen = order.clone();
        let result = block_on(async move {
            let handles: Vec<_> = (0..5)
                .map(|i| {
                    let order = seen.clone();
                    spawn(async move {
                        order.borrow_mut().push(i);
                        i * 10
                    })
                })
                .collect();
            let mut total = 0;
            for handle in handles {
                total += handle.await;
            }
            total
        });
        assert_eq!(result, 100);
        assert_eq!(*order.borrow(), [0, 1, 2, 3, 4]);
    }

    #[test]
    fn dropping_a_handle_cancels_the_task_and_drops_its_future() {
        struct Flag(Rc<Cell<bool>>);
        impl Drop for Flag {
            fn drop(&mut self) {
                self.0.set(true);
            }
        }
        let dropped = Rc::new(Cell::new(false));
        let ran_to_end = Rc::new(Cell::new(false));
        let (d, r) = (dropped.clone(), ran_to_end.clone());
        block_on(async move {
            let flag = Flag(d);
            let task = spawn(async move {
                let _flag = flag;
                crate::sleep(core::time::Duration::from_millis(50)).await;
                r.set(true);
            });
            crate::yield_now().await;
            assert!(!task.is_finished());
            task.abort();
            crate::sleep(core::time::Duration::from_millis(80)).await;
        });
        assert!(dropped.get(), "the cancelled task's future was dropped");
        assert!(
            !ran_to_end.get(),
            "the cancelled task never ran past its sleep"
        );
    }

    #[test]
    fn detached_tasks_keep_running() {
        let done = Rc::new(Cell::new(false));
        let d = done.clone();
        block_on(async move {
            spawn(async move {
                crate::sleep(core::time::Duration::from_millis(5)).await;
                d.set(true);
            })
            .detach();
            crate::sleep(core::time::Duration::from_millis(20)).await;
        });
        assert!(done.get());
    }

    #[test]
    #[should_panic(expected = "deadlock")]
    fn a_program_that_can_never_wake_is_reported() {
        block_on(core::future::pending::<()>());
    }

    #[test]
    fn the_runtime_is_gone_after_block_on() {
        block_on(async {});
        assert!(current::get().is_none());
    }
}
