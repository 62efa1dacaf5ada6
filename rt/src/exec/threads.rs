//! The threads model: one preemptive thread per task, pinned to its RT core.
//!
//! Fixed priority maps to SCHED_FIFO priorities inside the core's band, in the order
//! admission ranks the core's tasks (rank 1 gets the top of the band); when admission
//! re-ranks, the executor re-maps the priorities of the running threads. EDF maps to
//! SCHED_DEADLINE with runtime = the wcet budget (plus the per-job overhead admission
//! charged for it), deadline = D and period = T, with `SCHED_FLAG_DL_OVERRUN` so the
//! kernel's SIGXCPU reports overruns.
//!
//! A periodic thread sleeps until its next absolute release with
//! `clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME)`; a sporadic thread sleeps on its
//! task's futex word until a producer wakes it, and sleeps again (absolute) when an
//! early activation must be deferred.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::context::Context;
use super::options::StopPolicy;
use super::task::{JobEnd, Runnable, TaskShared, Timing};
use crate::time::{Clock, MonotonicClock, sleep_until};

/// The SCHED_FIFO priority for `rank` (1 highest) in `band`, or `None` when the band has
/// no room for it.
pub(crate) fn fifo_priority(band: (u8, u8), rank: u32) -> Option<u8> {
    let (lo, hi) = band;
    let offset = rank.checked_sub(1)?;
    let p = u32::from(hi).checked_sub(offset)?;
    (p >= u32::from(lo)).then_some(p as u8)
}

/// A task thread's body: wait for each release, run the job, until stop or removal (or
/// until the task is demoted, when it is handed to the supervisor and this thread ends).
/// A removed task's pending activations are cancelled and it is marked retired, after
/// which it runs no job.
pub(crate) fn run_loop(mut task: Box<dyn Runnable>, ctx: &Context, timing: Timing) {
    let shared = Arc::clone(task.shared());
    let word = Arc::clone(&shared.wake);
    let clock = MonotonicClock;
    let leave =
        |shared: &TaskShared| ctx.stop.load(Ordering::Acquire) || shared.removal_requested();
    loop {
        if leave(&shared) {
            break;
        }
        let seen = word.seq();
        match task.next_release() {
            Some(release) => {
                if release > clock.now() {
                    sleep_until(release);
                }
                if leave(&shared) {
                    break;
                }
                if task.run(release, timing) == JobEnd::Demote {
                    ctx.link.hand_over(task);
                    return;
                }
            }
            None => word.wait(seen, None),
        }
    }
    let removed = shared.removal_requested();
    if !removed && ctx.stop_policy == StopPolicy::Drain && task.is_sporadic() {
        while let Some(release) = task.next_release() {
            sleep_until(release);
            let _ = task.run(release, timing);
        }
    }
    task.cancel_pending();
    if removed {
        shared.mark_retired();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_fill_the_band_from_the_top() {
        assert_eq!(fifo_priority((50, 89), 1), Some(89));
        assert_eq!(fifo_priority((50, 89), 2), Some(88));
        assert_eq!(fifo_priority((50, 89), 40), Some(50));
        assert_eq!(fifo_priority((50, 89), 41), None);
        assert_eq!(fifo_priority((50, 89), 0), None);
        assert_eq!(fifo_priority((10, 10), 1), Some(10));
    }
}
