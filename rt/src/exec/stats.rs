//! Per-task accounting: counters and HDR histograms written by the task's runner without
//! locks or allocation, read at any time from a general core.
//!
//! Every job is accounted for: `released = completed + in flight`, and for a sporadic
//! task every activation ends as exactly one of released, dropped (full queue), skipped
//! (overrun policy), cancelled (stop) or still queued.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crossbeam_utils::CachePadded;
use hdrhistogram::Histogram;
use serde::Serialize;

use super::gate::TaskId;
use crate::error::Result;
use crate::hist::{AtomicHistogram, Percentiles};

/// A counter with one writer: a load and a store, no read-modify-write.
#[derive(Debug, Default)]
struct Counter(AtomicU64);

impl Counter {
    #[inline]
    fn bump(&self) {
        self.0
            .store(self.0.load(Ordering::Relaxed) + 1, Ordering::Release);
    }
    #[inline]
    fn add(&self, n: u64) {
        self.0
            .store(self.0.load(Ordering::Relaxed) + n, Ordering::Release);
    }
    fn get(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }
}

/// The live accounting of one task.
#[derive(Debug, Default)]
pub struct TaskStats {
    released: Counter,
    completed: Counter,
    overruns: Counter,
    dl_overrun_signals: Counter,
    deadline_misses: Counter,
    skipped: Counter,
    deferred: Counter,
    cancelled: Counter,
    demoted: AtomicBool,
    /// Written by producers on any thread, read-modify-write: on a cache line of their
    /// own, so that a producer on another core does not take away the line the runner
    /// reads before every job.
    producers: CachePadded<ProducerCounters>,
    release_latency: AtomicHistogram,
    response: AtomicHistogram,
    execution: AtomicHistogram,
}

/// The counters a task's producers write.
#[derive(Debug, Default)]
struct ProducerCounters {
    activations: AtomicU64,
    dropped: AtomicU64,
}

/// One finished job's figures, in nanoseconds.
#[derive(Clone, Copy, Debug)]
pub(crate) struct JobFigures {
    pub(crate) release_latency: u64,
    pub(crate) response: u64,
    pub(crate) execution: u64,
    pub(crate) overrun: bool,
    pub(crate) dl_overrun_signals: u64,
    pub(crate) missed: bool,
}

impl TaskStats {
    pub(crate) fn new() -> TaskStats {
        TaskStats::default()
    }

    #[inline]
    pub(crate) fn count_release(&self) {
        self.released.bump();
    }
    #[inline]
    pub(crate) fn count_job(&self, f: &JobFigures) {
        self.release_latency.record(f.release_latency);
        self.response.record(f.response);
        self.execution.record(f.execution);
        if f.overrun {
            self.overruns.bump();
        }
        if f.dl_overrun_signals > 0 {
            self.dl_overrun_signals.add(f.dl_overrun_signals);
        }
        if f.missed {
            self.deadline_misses.bump();
        }
        self.completed.bump();
    }
    #[inline]
    pub(crate) fn count_skip(&self) {
        self.skipped.bump();
    }
    #[inline]
    pub(crate) fn count_deferred(&self) {
        self.deferred.bump();
    }
    pub(crate) fn count_cancelled(&self, n: u64) {
        self.cancelled.add(n);
    }
    #[inline]
    pub(crate) fn count_activation(&self) {
        self.producers.activations.fetch_add(1, Ordering::Relaxed);
    }
    #[inline]
    pub(crate) fn count_drop(&self) {
        self.producers.dropped.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn set_demoted(&self) {
        self.demoted.store(true, Ordering::Release);
    }

    /// Whether the task has been demoted to the general cores.
    pub fn demoted(&self) -> bool {
        self.demoted.load(Ordering::Acquire)
    }

    /// A snapshot of the counters and histograms (allocates: call from a general core).
    pub fn snapshot(&self, id: TaskId, name: &str, cpu: usize) -> Result<TaskReport> {
        let release_latency = self.release_latency.snapshot()?;
        let response = self.response.snapshot()?;
        let execution = self.execution.snapshot()?;
        Ok(TaskReport {
            id: id.get(),
            name: name.to_string(),
            cpu,
            demoted: self.demoted(),
            released: self.released.get(),
            completed: self.completed.get(),
            overruns: self.overruns.get(),
            dl_overrun_signals: self.dl_overrun_signals.get(),
            deadline_misses: self.deadline_misses.get(),
            skipped: self.skipped.get(),
            deferred: self.deferred.get(),
            cancelled: self.cancelled.get(),
            activations: self.producers.activations.load(Ordering::Relaxed),
            dropped: self.producers.dropped.load(Ordering::Relaxed),
            release_latency_ns: Percentiles::of(&release_latency),
            response_ns: Percentiles::of(&response),
            execution_ns: Percentiles::of(&execution),
            histograms: TaskHistograms {
                release_latency,
                response,
                execution,
            },
        })
    }
}

/// A task's histograms, for merging and percentile files.
#[derive(Clone)]
pub struct TaskHistograms {
    /// Actual job start − release time.
    pub release_latency: Histogram<u64>,
    /// Job end − release time.
    pub response: Histogram<u64>,
    /// The job's own execution: in the threads model the CPU time its thread spent in it
    /// (preemption by higher-priority tasks does not count); in the non-preemptive
    /// cooperative model the wall time from start to end, which is what delays the
    /// core's other jobs (a thread CPU-time read is a system call of about 0.5 µs here,
    /// which would multiply the dispatcher's cost per job by ten).
    pub execution: Histogram<u64>,
}

impl std::fmt::Debug for TaskHistograms {
    /// Counts and maxima only: the buckets would fill a screen.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let short = |h: &Histogram<u64>| format!("{} values, max {} ns", h.len(), h.max());
        f.debug_struct("TaskHistograms")
            .field("release_latency", &short(&self.release_latency))
            .field("response", &short(&self.response))
            .field("execution", &short(&self.execution))
            .finish()
    }
}

/// A snapshot of one task's accounting.
#[derive(Clone, Debug, Serialize)]
pub struct TaskReport {
    /// The admission id.
    pub id: u64,
    /// The task's name.
    pub name: String,
    /// The CPU it was admitted to.
    pub cpu: usize,
    /// Whether it was demoted to the general cores.
    pub demoted: bool,
    /// Jobs released.
    pub released: u64,
    /// Jobs completed.
    pub completed: u64,
    /// Jobs whose execution exceeded the wcet budget.
    pub overruns: u64,
    /// SIGXCPU notices from SCHED_DEADLINE (`SCHED_FLAG_DL_OVERRUN`).
    pub dl_overrun_signals: u64,
    /// Jobs that finished after their absolute deadline.
    pub deadline_misses: u64,
    /// Releases or activations dropped by the `skip` overrun policy.
    pub skipped: u64,
    /// Sporadic activations that arrived early and were deferred to the earliest legal
    /// release.
    pub deferred: u64,
    /// Activations discarded at stop.
    pub cancelled: u64,
    /// Activations pushed (sporadic).
    pub activations: u64,
    /// Activations a full queue dropped.
    pub dropped: u64,
    /// Release latency percentiles.
    pub release_latency_ns: Percentiles,
    /// Response time percentiles.
    pub response_ns: Percentiles,
    /// Execution time percentiles.
    pub execution_ns: Percentiles,
    /// The histograms themselves.
    #[serde(skip)]
    pub histograms: TaskHistograms,
}
