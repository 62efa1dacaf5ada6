//! What a user chooses: per-task options and the executor's configuration.

use crate::admission::PriorityAssignment;
use crate::config::Partition;
use crate::time::Nanos;

/// What happens when a job runs longer than its task's wcet budget.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OverrunPolicy {
    /// Count it and go on.
    #[default]
    Report,
    /// Count it and drop the task's next release (periodic) or next activation (sporadic).
    Skip,
    /// Count it, move the task off its RT core onto the general cores at SCHED_OTHER
    /// (ARTiS-style migration), give its capacity back to admission, and report the event.
    Demote,
}

/// Which activation a sporadic task's full queue drops. The producer never blocks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DropPolicy {
    /// Refuse the new activation (it is handed back to the producer).
    #[default]
    Newest,
    /// Evict the oldest queued activation to make room (it is handed back to the producer).
    Oldest,
}

/// Per-task options beside its [`TaskSpec`](super::TaskSpec).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TaskOptions {
    /// What an overrun does.
    pub overrun: OverrunPolicy,
    /// What a full activation queue drops (sporadic tasks).
    pub drop: DropPolicy,
    /// The activation queue's capacity (sporadic tasks), at least 1; a queue asked for
    /// 1 holds 2 ([`crate::mpmc::Queue`] needs two slots to tell full from free).
    pub queue_capacity: usize,
}

impl Default for TaskOptions {
    fn default() -> TaskOptions {
        TaskOptions {
            overrun: OverrunPolicy::Report,
            drop: DropPolicy::Newest,
            queue_capacity: 64,
        }
    }
}

impl TaskOptions {
    /// With overrun policy `p`.
    pub fn overrun(mut self, p: OverrunPolicy) -> TaskOptions {
        self.overrun = p;
        self
    }
    /// With drop policy `p`.
    pub fn drop_policy(mut self, p: DropPolicy) -> TaskOptions {
        self.drop = p;
        self
    }
    /// With an activation queue of `n` entries (1 is taken as 2, see
    /// [`TaskOptions::queue_capacity`](struct@TaskOptions)).
    pub fn queue_capacity(mut self, n: usize) -> TaskOptions {
        self.queue_capacity = n;
        self
    }
}

/// What [`Executor::stop`](super::Executor::stop) does with activations still queued.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum StopPolicy {
    /// Jobs already running finish; queued activations are discarded and counted as
    /// cancelled; no new release happens.
    #[default]
    Cancel,
    /// Jobs already running finish, and the activations queued when stop was asked run
    /// too (respecting the minimum inter-arrival time); then the task ends.
    Drain,
}

/// Largest number of tasks one cooperative core holds (its fixed queue capacity).
pub const MAX_TASKS_PER_CORE: usize = 64;

/// How the executor starts.
#[derive(Clone, Debug)]
pub struct ExecConfig {
    /// The cores and their roles (from `cores/cpuN.toml` or the embedded default).
    pub partition: Partition,
    /// Lock all memory (`mlockall`) at start.
    pub lock_memory: bool,
    /// Bytes of each RT thread's stack touched before it runs its first job.
    pub prefault_stack: usize,
    /// Each RT thread's stack size.
    pub stack_size: usize,
    /// Move every existing thread of the process off the RT cores at start (and put them
    /// back at stop), so that only admitted RT work runs there.
    pub confine_process: bool,
    /// Best-effort pool threads on the general cores (0 = one per general core).
    pub pool_threads: usize,
    /// The per-job overhead admission adds to every wcet; also added to a SCHED_DEADLINE
    /// runtime, so the executor's own accounting does not count as an overrun.
    pub job_overhead: Nanos,
    /// What stop does with queued activations.
    pub stop: StopPolicy,
    /// How admission orders the tasks of fixed-priority cores (their SCHED_FIFO order in
    /// the threads model, their dispatch order in the cooperative one).
    pub priority_assignment: PriorityAssignment,
    /// The wake-up latency from idle to ask the kernel for while the executor runs
    /// (`/dev/cpu_dma_latency`, rounded down to whole µs; 0 keeps idle CPUs polling, as
    /// cyclictest does). `None` leaves the idle governor alone. Needs root; without it
    /// the executor starts anyway and reports a warning.
    pub idle_latency: Option<Nanos>,
}

impl ExecConfig {
    /// Defaults for `partition`: lock memory, prefault 64 KiB of a 256 KiB stack, confine
    /// the process, one pool thread per general core, admission's default per-job
    /// overhead, deadline-monotonic priorities, idle CPUs kept polling.
    pub fn new(partition: Partition) -> ExecConfig {
        ExecConfig {
            partition,
            lock_memory: true,
            prefault_stack: 64 * 1024,
            stack_size: 256 * 1024,
            confine_process: true,
            pool_threads: 0,
            job_overhead: super::gate::default_job_overhead(),
            stop: StopPolicy::Cancel,
            priority_assignment: PriorityAssignment::Dm,
            idle_latency: Some(Nanos(0)),
        }
    }
}
