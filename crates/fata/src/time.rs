//! Monotonic time and sleeping.

use core::future::Future;
use core::ops::{Add, Sub};
use core::pin::Pin;
use core::task::{Context, Poll};
use core::time::Duration;

use fata_platform::Platform;

use crate::Sys;
use crate::executor::runtime;

/// A point on the monotonic clock, in nanoseconds since the program started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(u64);

impl Instant {
    /// The current time.
    pub fn now() -> Instant {
        Instant(Sys::monotonic_ns())
    }

    /// The instant `nanos` nanoseconds after the program started.
    pub const fn from_nanos(nanos: u64) -> Instant {
        Instant(nanos)
    }

    /// Nanoseconds since the program started.
    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// Time from `earlier` to `self`; zero when `earlier` is later.
    pub fn saturating_duration_since(self, earlier: Instant) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }

    /// Time passed since `self`.
    pub fn elapsed(self) -> Duration {
        Instant::now().saturating_duration_since(self)
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;

    /// Saturates at the end of time (about 584 years) instead of overflowing.
    fn add(self, duration: Duration) -> Instant {
        let nanos = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
        Instant(self.0.saturating_add(nanos))
    }
}

impl Sub for Instant {
    type Output = Duration;

    fn sub(self, earlier: Instant) -> Duration {
        self.saturating_duration_since(earlier)
    }
}

/// Waits until `duration` has passed.
pub fn sleep(duration: Duration) -> Sleep {
    sleep_until(Instant::now() + duration)
}

/// Waits until the monotonic clock reaches `deadline`.
pub fn sleep_until(deadline: Instant) -> Sleep {
    Sleep {
        deadline,
        timer: None,
    }
}

/// The future [`sleep`] and [`sleep_until`] return; dropping it cancels the timer.
#[derive(Debug)]
#[must_use = "a Sleep does nothing unless awaited"]
pub struct Sleep {
    deadline: Instant,
    timer: Option<u64>,
}

impl Sleep {
    /// When this sleep ends.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let runtime = runtime();
        let deadline = self.deadline.0;
        if Sys::monotonic_ns() >= deadline {
            if let Some(id) = self.timer.take() {
                runtime.disarm_timer(deadline, id);
            }
            return Poll::Ready(());
        }
        self.timer = Some(runtime.arm_timer(deadline, self.timer, cx.waker()));
        Poll::Pending
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let Some(id) = self.timer {
            runtime().disarm_timer(self.deadline.0, id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{block_on, spawn};
    use alloc::rc::Rc;
    use alloc::vec::Vec;
    use core::cell::RefCell;
    use rand::{Rng, SeedableRng, rngs::SmallRng};

    #[test]
    fn a_thousand_sleepers_wake_in_deadline_order_and_never_early() {
        let mut rng = SmallRng::seed_from_u64(0x5eed);
        // Deadlines start 30 ms out, so every task is asleep before the first one is due.
        let delays: Vec<u64> = (0..1000)
            .map(|_| rng.random_range(30_000_000..180_000_000))
            .collect();
        let woken = Rc::new(RefCell::new(Vec::new()));
        let log = woken.clone();
        let started = std::time::Instant::now();
        block_on(async move {
            let start = Instant::now();
            let tasks: Vec<_> = delays
                .into_iter()
                .map(|delay| {
                    let log = log.clone();
                    let deadline = start + Duration::from_nanos(delay);
                    spawn(async move {
                        sleep_until(deadline).await;
                        log.borrow_mut().push((deadline, Instant::now()));
                    })
                })
                .collect();
            for task in tasks {
                task.await;
            }
        });
        let woken = woken.borrow();
        assert_eq!(woken.len(), 1000);
        assert!(
            woken.windows(2).all(|w| w[0].0 <= w[1].0),
            "tasks woke out of deadline order"
        );
        assert!(
            woken.iter().all(|(deadline, at)| at >= deadline),
            "a task woke before its deadline"
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn dropped_sleeps_leave_no_timer_behind() {
        block_on(async {
            for _ in 0..100 {
                let early = sleep(Duration::from_secs(3600));
                let mut early = core::pin::pin!(early);
                assert!(futures_poll_once(early.as_mut()).is_pending());
            }
            assert!(crate::executor::runtime().next_deadline().is_none());
        });
    }

    fn futures_poll_once<F: Future>(future: Pin<&mut F>) -> Poll<F::Output> {
        let mut cx = Context::from_waker(core::task::Waker::noop());
        future.poll(&mut cx)
    }
}
