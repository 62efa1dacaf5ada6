//! The executor: periodic and sporadic tasks on the RT cores.
//!
//! **Admission is the only way in.** A task is spawned by handing its [`TaskSpec`] and
//! its body to [`Executor::spawn_periodic`] or [`Executor::spawn_sporadic`]. The
//! executor asks admission control first; a refusal ([`Error::Refused`](crate::Error))
//! carries the reason and leaves the executor as it was.
//!
//! **Two models per RT core**, from its config file:
//! - `threads`: one preemptive thread per task, pinned to the core; fixed priority maps
//!   to SCHED_FIFO inside the core's `priority_band` in admission's order, EDF to
//!   SCHED_DEADLINE (runtime = budget, deadline = D, period = T) inside the shield's root
//!   domain, or to SCHED_FIFO in deadline-monotonic order with `fallback = "fifo"`.
//! - `cooperative`: one SCHED_FIFO dispatcher per core runs jobs to completion in EDF or
//!   fixed-priority order, from fixed-capacity ready and timer queues.
//!
//! **Releases.** Periodic releases are absolute `CLOCK_MONOTONIC` times, `first + k·T`.
//! Sporadic activations are small `Copy` payloads pushed from any thread through an
//! [`Activator`] into the task's lock-free queue; the RT core is woken by a futex. An
//! activation earlier than the minimum inter-arrival time after the previous release (or,
//! for a task with a burst of `b`, after the release `b` jobs back) is deferred to the
//! earliest legal release and counted; a full queue drops per the task's
//! [`DropPolicy`] and counts it; the producer never blocks.
//!
//! **Accounting.** Every job's release latency, response time, execution time, overrun
//! and deadline miss go into per-task counters and HDR histograms ([`crate::hist`]),
//! recorded on the RT core without locks or allocation and read from anywhere
//! ([`Executor::stats`]).
//!
//! **Overruns** follow the task's [`OverrunPolicy`]: report, skip the next release, or
//! demote (the task moves to a SCHED_OTHER thread on the general cores, admission gets
//! its capacity back, and an [`ExecEvent::Demoted`] is recorded).
//!
//! **Removal.** [`Executor::remove`] takes one task out while the others run on: its
//! runner lets go of it before its next job, and only then does admission get its
//! capacity back.
//!
//! **General cores** run the supervisor and a best-effort [`Pool`]. At start every thread
//! of the process leaves the RT cores; with `share_idle = true` a pool worker uses the
//! core's idle time at SCHED_IDLE.
//!
//! **Nothing on the RT path allocates or locks** after start: queues are fixed-capacity,
//! histograms preallocated, hand-overs to the general cores go through lock-free queues.

mod activation;
mod affinity;
mod context;
mod cooperative;
mod executor;
mod gate;
mod job;
mod options;
mod pool;
mod stats;
mod supervisor;
mod task;
mod threads;
mod wake;

pub use activation::{Activator, Dropped};
pub use affinity::{ThreadPlacement, process_threads};
pub use executor::{ExecReport, Executor};
pub use gate::{MAX_BURST, Placement, Rejection, TaskId, TaskKind, TaskSpec, default_job_overhead};
pub use job::{Job, in_rt_job};
pub use options::{
    DropPolicy, ExecConfig, MAX_TASKS_PER_CORE, OverrunPolicy, StopPolicy, TaskOptions,
};
pub use pool::Pool;
pub use stats::{TaskHistograms, TaskReport};
pub use supervisor::{ExecEvent, MAX_TASKS};
pub use wake::WakeWord;
