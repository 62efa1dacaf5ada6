//! What a job's body is told about the job it runs.

use std::cell::Cell;

use crate::time::Instant;

thread_local! {
    /// Set while this thread runs the body of a job admitted on an RT core.
    static ON_RT_CORE: Cell<bool> = const { Cell::new(false) };
}

/// Whether the calling thread is running the body of an admitted job on its RT core
/// right now: inside it, work the job does is charged to that job's budget, runs at the
/// task's priority, and is bounded by the task's admitted rate — so a layer above may do
/// work inline that it would otherwise hand to one of its own tasks (the overlay sends a
/// message in the caller's job instead of waking its command task). False on every other
/// thread, and in a demoted task's best-effort jobs on the general cores.
pub fn in_rt_job() -> bool {
    ON_RT_CORE.with(Cell::get)
}

/// Marks the calling thread as running an admitted job until dropped.
pub(crate) struct InRtJob(());

impl InRtJob {
    pub(crate) fn enter(on_rt_core: bool) -> InRtJob {
        ON_RT_CORE.with(|c| c.set(on_rt_core));
        InRtJob(())
    }
}

impl Drop for InRtJob {
    fn drop(&mut self) {
        ON_RT_CORE.with(|c| c.set(false));
    }
}

/// One job of a task, as its body sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Job {
    /// The job's number within its task, from 0.
    pub seq: u64,
    /// When it was released (absolute `CLOCK_MONOTONIC`).
    pub release: Instant,
    /// When it must finish: release + relative deadline.
    pub deadline: Instant,
    /// When it started (the dispatcher read the clock just before calling the body).
    pub start: Instant,
    /// For a sporadic job, when its activation was pushed (equal to `release` unless it
    /// was deferred); for a periodic job, `release`.
    pub arrival: Instant,
}
