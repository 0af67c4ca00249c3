//! Two small pieces of single-threaded async plumbing: a lock that makes file system operations
//! take turns, and a join over any number of futures (many block requests in flight at once).

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};
use core::future::{Future, poll_fn};
use core::pin::Pin;
use core::task::{Poll, Waker};

/// A lock for tasks of one executor: [`Lock::lock`] waits while another task holds it.
#[derive(Default)]
pub(crate) struct Lock {
    held: Cell<bool>,
    waiters: RefCell<Vec<Waker>>,
}

/// Holds a [`Lock`] until dropped.
pub(crate) struct Guard<'a>(&'a Lock);

impl Lock {
    /// Waits until no other task holds the lock, then holds it.
    pub(crate) async fn lock(&self) -> Guard<'_> {
        poll_fn(|cx| {
            if self.held.get() {
                self.waiters.borrow_mut().push(cx.waker().clone());
                Poll::Pending
            } else {
                self.held.set(true);
                Poll::Ready(())
            }
        })
        .await;
        Guard(self)
    }
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        self.0.held.set(false);
        // Wake every waiter: one takes the lock and the others wait again. Waking only the first
        // could wake a task that has since given up, and leave the rest asleep.
        let waiters = core::mem::take(&mut *self.0.waiters.borrow_mut());
        waiters.into_iter().for_each(Waker::wake);
    }
}

/// Runs all `futures` at once and returns their outputs in order.
pub(crate) async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut running: Vec<Option<Pin<Box<F>>>> =
        futures.into_iter().map(|f| Some(Box::pin(f))).collect();
    let mut outputs: Vec<Option<F::Output>> = running.iter().map(|_| None).collect();
    poll_fn(|cx| {
        let mut all_done = true;
        for (slot, output) in running.iter_mut().zip(outputs.iter_mut()) {
            if let Some(future) = slot {
                match future.as_mut().poll(cx) {
                    Poll::Ready(value) => {
                        *output = Some(value);
                        *slot = None;
                    }
                    Poll::Pending => all_done = false,
                }
            }
        }
        if all_done {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}
