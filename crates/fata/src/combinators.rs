//! Waiting on several futures: `select`, `join`, `timeout`, `yield_now`.
//!
//! Written here rather than taken from futures-util: these are a few lines each, take futures by
//! value (futures-util's `select` wants `Unpin` futures), and keep the guest's dependencies small.

use core::fmt;
use core::future::{Future, poll_fn};
use core::pin::pin;
use core::task::Poll;
use core::time::Duration;

use crate::time::sleep;

/// Which of two futures finished first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Either<A, B> {
    /// The first future finished first.
    Left(A),
    /// The second future finished first.
    Right(B),
}

/// Runs both futures and returns the output of the first to finish; the other is dropped
/// (cancelled). When both are ready at once, `a` wins.
pub async fn select<A: Future, B: Future>(a: A, b: B) -> Either<A::Output, B::Output> {
    let mut a = pin!(a);
    let mut b = pin!(b);
    poll_fn(|cx| {
        if let Poll::Ready(output) = a.as_mut().poll(cx) {
            return Poll::Ready(Either::Left(output));
        }
        b.as_mut().poll(cx).map(Either::Right)
    })
    .await
}

/// Runs both futures to completion, concurrently, and returns both outputs.
pub async fn join<A: Future, B: Future>(a: A, b: B) -> (A::Output, B::Output) {
    let mut a = pin!(a);
    let mut b = pin!(b);
    let mut a_out = None;
    let mut b_out = None;
    poll_fn(|cx| {
        if a_out.is_none()
            && let Poll::Ready(output) = a.as_mut().poll(cx)
        {
            a_out = Some(output);
        }
        if b_out.is_none()
            && let Poll::Ready(output) = b.as_mut().poll(cx)
        {
            b_out = Some(output);
        }
        match (a_out.take(), b_out.take()) {
            (Some(a), Some(b)) => Poll::Ready((a, b)),
            (a, b) => {
                a_out = a;
                b_out = b;
                Poll::Pending
            }
        }
    })
    .await
}

/// The error [`timeout`] returns when the time ran out first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed;

impl fmt::Display for Elapsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("timed out")
    }
}

impl core::error::Error for Elapsed {}

/// Runs `future` for at most `duration`; on time-out the future is dropped (cancelled).
pub async fn timeout<F: Future>(duration: Duration, future: F) -> Result<F::Output, Elapsed> {
    match select(future, sleep(duration)).await {
        Either::Left(output) => Ok(output),
        Either::Right(()) => Err(Elapsed),
    }
}

/// Lets every other ready task run once before this one continues.
pub async fn yield_now() {
    let mut yielded = false;
    poll_fn(|cx| {
        if yielded {
            Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Instant, block_on, spawn};

    #[test]
    fn timeout_returns_the_output_when_in_time_and_elapsed_when_not() {
        block_on(async {
            let quick = timeout(Duration::from_millis(200), async {
                sleep(Duration::from_millis(5)).await;
                7
            });
            assert_eq!(quick.await, Ok(7));
            let start = Instant::now();
            let slow = timeout(Duration::from_millis(20), sleep(Duration::from_secs(60)));
            assert_eq!(slow.await, Err(Elapsed));
            let waited = start.elapsed();
            assert!(waited >= Duration::from_millis(20) && waited < Duration::from_secs(2));
        });
    }

    #[test]
    fn select_takes_the_first_and_join_waits_for_both() {
        block_on(async {
            let first = select(sleep(Duration::from_millis(30)), async {
                sleep(Duration::from_millis(1)).await;
                "fast"
            });
            assert_eq!(first.await, Either::Right("fast"));
            let start = Instant::now();
            let both = join(
                async {
                    sleep(Duration::from_millis(20)).await;
                    1
                },
                async {
                    sleep(Duration::from_millis(30)).await;
                    2
                },
            );
            assert_eq!(both.await, (1, 2));
            let waited = start.elapsed();
            assert!(
                waited >= Duration::from_millis(30),
                "join waits for the slower one"
            );
            assert!(
                waited < Duration::from_millis(45 + 500),
                "join runs both at once"
            );
        });
    }

    #[test]
    fn a_timed_out_task_is_cancelled() {
        block_on(async {
            let task = spawn(sleep(Duration::from_secs(60)));
            assert_eq!(timeout(Duration::from_millis(5), task).await, Err(Elapsed));
        });
    }

    #[test]
    fn yield_now_lets_others_run() {
        block_on(async {
            let flag = alloc::rc::Rc::new(core::cell::Cell::new(false));
            let f = flag.clone();
            let other = spawn(async move { f.set(true) });
            yield_now().await;
            assert!(flag.get());
            other.await;
        });
    }
}
