//! The executor's one call site of admission control ([`crate::admission`]): every task
//! goes through [`Gate::try_admit`], and nothing reaches an RT core any other way.
//!
//! Each RT core is offered to admission as the model it really runs: the threads model
//! is preemptive, the cooperative one is not; fixed priority uses the configured
//! assignment; EDF in the threads model is checked against the kernel's SCHED_DEADLINE
//! bandwidth too, and an EDF core running its `fallback = "fifo"` is analysed as the
//! deadline-monotonic fixed-priority core it then is.

use crate::admission::{self, Admission, AdmissionOptions, CoreSpec, PriorityAssignment};
use crate::config::{CoreConfig, Dispatch, Scheduler};
use crate::time::Nanos;

pub use crate::admission::{MAX_BURST, Placement, Rejection, TaskId, TaskKind, TaskSpec};

/// The per-job overhead admission adds to every wcet, unless configured otherwise
/// (admission's [`admission::DEFAULT_JOB_OVERHEAD`]).
pub fn default_job_overhead() -> Nanos {
    admission::DEFAULT_JOB_OVERHEAD
}

/// One RT core as the executor will run it.
pub(crate) struct GateCore<'a> {
    pub(crate) config: &'a CoreConfig,
    /// EDF in the threads model running under SCHED_FIFO (`fallback = "fifo"`).
    pub(crate) edf_as_fifo: bool,
}

/// Admission control for the executor's RT cores, in RT-core index order.
#[derive(Debug)]
pub(crate) struct Gate {
    admission: Admission,
}

impl Gate {
    /// A controller whose core `i` is `cores[i]`.
    pub(crate) fn new(
        cores: &[GateCore<'_>],
        assignment: PriorityAssignment,
        job_overhead: Nanos,
    ) -> Gate {
        let dl = crate::probe::dl_bandwidth();
        let specs = cores
            .iter()
            .map(|c| {
                let mut spec = match (c.config.scheduler, c.edf_as_fifo) {
                    (Scheduler::Edf, false) => CoreSpec::edf().with_dl_bandwidth(dl),
                    (Scheduler::Edf, true) => CoreSpec::fp(PriorityAssignment::Dm),
                    (Scheduler::Fp, _) => CoreSpec::fp(assignment),
                };
                if c.config.dispatch == Dispatch::Cooperative {
                    spec = spec.non_preemptive();
                }
                spec.with_cap(c.config.utilization_cap)
            })
            .collect();
        let options = AdmissionOptions::default().with_job_overhead(job_overhead);
        Gate {
            admission: Admission::new(specs, options),
        }
    }

    /// Runs the analysis for `spec`; on success the task holds its place until released.
    pub(crate) fn try_admit(&mut self, spec: TaskSpec) -> Result<Placement, Rejection> {
        self.admission.try_admit(spec)
    }

    /// Gives `id`'s capacity back.
    pub(crate) fn release(&mut self, id: TaskId) {
        let _ = self.admission.release(id);
    }

    /// The tasks on RT core `core` with their current fixed-priority ranks (1 highest;
    /// `None` under EDF).
    pub(crate) fn ranks(&self, core: usize) -> Vec<(TaskId, Option<u32>)> {
        self.admission
            .core_tasks(core)
            .map(|(id, _, rank)| (id, rank))
            .collect()
    }
}
