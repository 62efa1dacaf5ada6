//! A task as its runner holds it: the body, its release state and its accounting.
//!
//! The same [`Runnable`] is driven by a task's own thread (threads model, or after
//! demotion) or by its core's dispatcher (cooperative model). The runner asks for the
//! next release, waits for it however it waits, and calls [`Runnable::run`], which runs
//! the body once and accounts for the job. Releases are absolute times: a periodic
//! task's `k`-th release is `first + k·period`, whatever the previous job did, so there
//! is no drift.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU32, Ordering};

use super::activation::{ActivationQueue, Pending};
use super::gate::{MAX_BURST, TaskId, TaskSpec};
use super::job::{InRtJob, Job};
use super::options::{OverrunPolicy, TaskOptions};
use super::stats::{JobFigures, TaskStats};
use super::wake::WakeWord;
use crate::sys;
use crate::time::{Clock, Instant, MonotonicClock, Nanos};

/// What every holder of a task shares: its identity, spec, accounting and wake word.
#[derive(Debug)]
pub(crate) struct TaskShared {
    pub(crate) id: TaskId,
    pub(crate) spec: TaskSpec,
    pub(crate) options: TaskOptions,
    /// The CPU it was admitted to.
    pub(crate) cpu: usize,
    /// Its RT core's index among the RT cores.
    pub(crate) core: usize,
    pub(crate) stats: Arc<TaskStats>,
    /// Woken by the task's producers; waited on by its own thread.
    pub(crate) wake: Arc<WakeWord>,
    /// Fixed-priority rank on its core (1 highest; 0 under EDF). Set by the control side
    /// whenever admission re-ranks the core; read by the cooperative dispatcher.
    pub(crate) rank: AtomicU32,
    /// Where the task is in its removal ([`Executor::remove`](super::Executor::remove)):
    /// [`LIVE`], [`REMOVING`] (asked by the control side; its runner must let go before
    /// the next job) or [`RETIRED`] (its runner has let go: it runs no job any more).
    pub(crate) removal: AtomicU8,
}

/// [`TaskShared::removal`]: the task runs.
pub(crate) const LIVE: u8 = 0;
/// [`TaskShared::removal`]: removal was asked for.
pub(crate) const REMOVING: u8 = 1;
/// [`TaskShared::removal`]: the runner has let go of the task.
pub(crate) const RETIRED: u8 = 2;

/// How a runner measures a job's execution time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Timing {
    /// Wall time from start to end: what a non-preemptive job holds the core for
    /// (including time a hypervisor steals), at the cost of one clock read.
    Wall,
    /// The thread's CPU time: excludes preemption by higher-priority threads. See
    /// [`run_job`] for how it is read without a system call before the body.
    ThreadCpu,
}

thread_local! {
    /// The calling thread's CPU time (ns) when its last job ended; 0 before its first.
    static CPU_AT_LAST_JOB_END: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// What the runner must do after a job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum JobEnd {
    /// Go on.
    Continue,
    /// The task overran under [`OverrunPolicy::Demote`]: move it off the RT core.
    Demote,
}

/// A task its runner can drive.
pub(crate) trait Runnable: Send {
    /// The shared part.
    fn shared(&self) -> &Arc<TaskShared>;
    /// The next release: always known for a periodic task; for a sporadic one, taken
    /// from its queue (no earlier than the minimum inter-arrival time after the previous
    /// release; an early one is counted as deferred), or `None` when the queue is empty.
    fn next_release(&mut self) -> Option<Instant>;
    /// Runs the job released at `release` (the value [`Runnable::next_release`] gave).
    fn run(&mut self, release: Instant, timing: Timing) -> JobEnd;
    /// Discards what is pending (a staged or queued activation) at stop; returns how many.
    fn cancel_pending(&mut self) -> u64;
    /// Whether jobs come from activations.
    fn is_sporadic(&self) -> bool;
}

/// Runs `body` as one job and accounts for it.
///
/// Under [`Timing::ThreadCpu`] a job's execution time is the smaller of two upper bounds
/// of the CPU time its body used: its wall time (start to end, which also counts any
/// preemption) and the thread's CPU time from the end of the thread's previous job to
/// the end of this one (which also counts the few microseconds the runner spent between
/// the two jobs: waking up, taking the activation, this accounting). When the job was not
/// preempted the wall time is the tighter bound; when it was, the CPU time is. Either way
/// an overrun is never missed, and only the one clock read after the body is a system
/// call (`CLOCK_THREAD_CPUTIME_ID` has no vDSO path): nothing but a vDSO clock read sits
/// between a release and the body's start. A thread's first job reads its CPU time
/// before the body too.
#[inline]
fn run_job(
    shared: &TaskShared,
    seq: u64,
    release: Instant,
    arrival: Instant,
    timing: Timing,
    body: impl FnOnce(&Job),
) -> bool {
    let stats = &shared.stats;
    stats.count_release();
    let cpu0 = match timing {
        Timing::ThreadCpu => match CPU_AT_LAST_JOB_END.with(std::cell::Cell::get) {
            0 => sys::cputime::thread_cpu_ns(),
            mark => mark,
        },
        Timing::Wall => 0,
    };
    let start = MonotonicClock.now();
    let deadline = release.add(shared.spec.deadline);
    {
        let _marked = InRtJob::enter(!stats.demoted());
        body(&Job {
            seq,
            release,
            deadline,
            start,
            arrival,
        });
    }
    let end = MonotonicClock.now();
    let wall = end.since(start).get();
    let execution = match timing {
        Timing::ThreadCpu => {
            let cpu = sys::cputime::thread_cpu_ns();
            CPU_AT_LAST_JOB_END.with(|c| c.set(cpu));
            cpu.saturating_sub(cpu0).min(wall)
        }
        Timing::Wall => wall,
    };
    let dl_overrun_signals = sys::signal::take_dl_overruns();
    let overrun = execution > shared.spec.wcet.get() || dl_overrun_signals > 0;
    stats.count_job(&JobFigures {
        release_latency: start.since(release).get(),
        response: end.since(release).get(),
        execution,
        overrun,
        dl_overrun_signals,
        missed: end > deadline,
    });
    overrun
}

/// Applies the task's overrun policy after a job; `skip_next` is the task's flag.
#[inline]
fn after_job(shared: &TaskShared, overran: bool, skip_next: &mut bool) -> JobEnd {
    if !overran {
        return JobEnd::Continue;
    }
    match shared.options.overrun {
        OverrunPolicy::Report => JobEnd::Continue,
        OverrunPolicy::Skip => {
            *skip_next = true;
            JobEnd::Continue
        }
        OverrunPolicy::Demote if shared.stats.demoted() => JobEnd::Continue,
        OverrunPolicy::Demote => JobEnd::Demote,
    }
}

/// How far ahead of "now" a periodic task's first release is placed, when its runner
/// first asks for it.
const FIRST_RELEASE_LEAD: Nanos = Nanos::us(200);

/// The first release of a task with `period` and `offset` aligned to `epoch` that comes
/// no earlier than `earliest`: `epoch + offset + k·period` for the smallest such `k`.
pub(crate) fn aligned_release(
    epoch: Instant,
    offset: Nanos,
    period: Nanos,
    earliest: Instant,
) -> Instant {
    let base = epoch.add(offset);
    if base >= earliest {
        return base;
    }
    let period = period.get().max(1);
    let k = earliest.since(base).get().div_ceil(period);
    base.add(Nanos(k.saturating_mul(period)))
}

/// A periodic task.
pub(crate) struct Periodic<F> {
    shared: Arc<TaskShared>,
    body: F,
    /// Releases are aligned to this instant plus the task's offset.
    epoch: Instant,
    /// The next release; `None` until the runner first asks, so that the time it takes to
    /// start the runner never makes the first releases late.
    next: Option<Instant>,
    seq: u64,
    skip_next: bool,
}

impl<F: FnMut(&Job) + Send> Periodic<F> {
    /// Its releases are `epoch + offset + k·period`, from the first that comes after its
    /// runner has started.
    pub(crate) fn new(shared: Arc<TaskShared>, epoch: Instant, body: F) -> Periodic<F> {
        Periodic {
            shared,
            body,
            epoch,
            next: None,
            seq: 0,
            skip_next: false,
        }
    }
}

impl<F: FnMut(&Job) + Send> Runnable for Periodic<F> {
    fn shared(&self) -> &Arc<TaskShared> {
        &self.shared
    }

    fn next_release(&mut self) -> Option<Instant> {
        let spec = &self.shared.spec;
        let mut next = match self.next {
            Some(n) => n,
            None => aligned_release(
                self.epoch,
                spec.offset,
                spec.period,
                MonotonicClock.now().add(FIRST_RELEASE_LEAD),
            ),
        };
        if self.skip_next {
            self.skip_next = false;
            self.shared.stats.count_skip();
            next = next.add(spec.period);
        }
        self.next = Some(next);
        Some(next)
    }

    fn run(&mut self, release: Instant, timing: Timing) -> JobEnd {
        let seq = self.seq;
        self.seq += 1;
        self.next = Some(release.add(self.shared.spec.period));
        let body = &mut self.body;
        let overran = run_job(&self.shared, seq, release, release, timing, |j| body(j));
        after_job(&self.shared, overran, &mut self.skip_next)
    }

    fn cancel_pending(&mut self) -> u64 {
        0
    }

    fn is_sporadic(&self) -> bool {
        false
    }
}

/// A sporadic task whose activations carry a `P`.
pub(crate) struct Sporadic<P, F> {
    shared: Arc<TaskShared>,
    body: F,
    queue: Arc<ActivationQueue<P>>,
    staged: Option<(Pending<P>, Instant)>,
    /// The last `burst` releases, oldest at `next_slot` once the ring is full.
    recent: Recent,
    seq: u64,
    skip_next: bool,
}

/// The last `burst` releases of a sporadic task: a new job may be released no earlier
/// than `period` after the release `burst` jobs back (at most `burst` in any window of
/// `period`; with a burst of 1, the minimum inter-arrival time after the last release).
struct Recent {
    slots: [Option<Instant>; MAX_BURST as usize],
    burst: usize,
    next_slot: usize,
}

impl Recent {
    fn new(burst: u32) -> Recent {
        Recent {
            slots: [None; MAX_BURST as usize],
            burst: (burst as usize).clamp(1, MAX_BURST as usize),
            next_slot: 0,
        }
    }

    /// The earliest legal release for an arrival at `arrival`.
    #[inline]
    fn earliest(&self, arrival: Instant, period: Nanos) -> Instant {
        match self.slots[self.next_slot] {
            Some(oldest) => arrival.max(oldest.add(period)),
            None => arrival,
        }
    }

    #[inline]
    fn record(&mut self, release: Instant) {
        self.slots[self.next_slot] = Some(release);
        self.next_slot = (self.next_slot + 1) % self.burst;
    }
}

impl<P: Copy + Send + 'static, F: FnMut(&Job, P) + Send> Sporadic<P, F> {
    pub(crate) fn new(
        shared: Arc<TaskShared>,
        queue: Arc<ActivationQueue<P>>,
        body: F,
    ) -> Sporadic<P, F> {
        let recent = Recent::new(shared.spec.burst);
        Sporadic {
            shared,
            body,
            queue,
            staged: None,
            recent,
            seq: 0,
            skip_next: false,
        }
    }
}

impl<P: Copy + Send + 'static, F: FnMut(&Job, P) + Send> Runnable for Sporadic<P, F> {
    fn shared(&self) -> &Arc<TaskShared> {
        &self.shared
    }

    fn next_release(&mut self) -> Option<Instant> {
        if let Some((_, release)) = self.staged {
            return Some(release);
        }
        let mut next = self.queue.queue.pop()?;
        if self.skip_next {
            self.skip_next = false;
            self.shared.stats.count_skip();
            next = self.queue.queue.pop()?;
        }
        let release = self.recent.earliest(next.arrival, self.shared.spec.period);
        if release > next.arrival {
            self.shared.stats.count_deferred();
        }
        self.staged = Some((next, release));
        Some(release)
    }

    fn run(&mut self, release: Instant, timing: Timing) -> JobEnd {
        let Some((pending, _)) = self.staged.take() else {
            return JobEnd::Continue;
        };
        let seq = self.seq;
        self.seq += 1;
        self.recent.record(release);
        let body = &mut self.body;
        let payload = pending.payload;
        let overran = run_job(&self.shared, seq, release, pending.arrival, timing, |j| {
            body(j, payload)
        });
        after_job(&self.shared, overran, &mut self.skip_next)
    }

    fn cancel_pending(&mut self) -> u64 {
        let mut n = u64::from(self.staged.take().is_some());
        while self.queue.queue.pop().is_some() {
            n += 1;
        }
        if n > 0 {
            self.shared.stats.count_cancelled(n);
        }
        n
    }

    fn is_sporadic(&self) -> bool {
        true
    }
}

impl TaskShared {
    /// Sets the fixed-priority rank (control side).
    pub(crate) fn set_rank(&self, rank: u32) {
        self.rank.store(rank, Ordering::Relaxed);
    }
    /// The fixed-priority rank (1 highest).
    pub(crate) fn rank(&self) -> u32 {
        self.rank.load(Ordering::Relaxed)
    }
    /// Asks the task's runner to let go of it before its next job (control side).
    pub(crate) fn request_removal(&self) {
        let _ = self
            .removal
            .compare_exchange(LIVE, REMOVING, Ordering::SeqCst, Ordering::SeqCst);
    }
    /// Whether removal was asked for (or is done).
    #[inline]
    pub(crate) fn removal_requested(&self) -> bool {
        self.removal.load(Ordering::Acquire) != LIVE
    }
    /// Marks the task as let go by its runner: no job of it runs any more.
    pub(crate) fn mark_retired(&self) {
        self.removal.store(RETIRED, Ordering::Release);
    }
    /// Whether the runner has let go of the task.
    pub(crate) fn retired(&self) -> bool {
        self.removal.load(Ordering::Acquire) == RETIRED
    }
}
