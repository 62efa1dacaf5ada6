//! What a job's body is told about the job it runs.

use crate::time::Instant;

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
