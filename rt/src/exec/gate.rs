//! The executor's one call site of admission control: every task goes through
//! [`Gate::try_admit`], and nothing reaches an RT core any other way.

use crate::config::{Dispatch, Partition, Role, Scheduler};
use crate::time::Nanos;

use super::standin as admission;
pub use admission::{Placement, Rejection, TaskId, TaskKind, TaskSpec};

/// The per-job overhead admission adds to every wcet, unless configured otherwise.
pub fn default_job_overhead() -> Nanos {
    Nanos::us(10)
}

/// Admission control for the RT cores of one partition, in RT-core index order.
#[derive(Debug)]
pub(crate) struct Gate {
    admission: admission::Admission,
}

impl Gate {
    /// A controller whose cores are `partition`'s RT cores, in CPU order.
    pub(crate) fn new(partition: &Partition, job_overhead: Nanos) -> Gate {
        let dl = crate::probe::dl_bandwidth();
        let cores = partition
            .cores
            .iter()
            .filter(|c| c.role == Role::Rt)
            .map(|c| admission::CoreSpec {
                policy: match c.scheduler {
                    Scheduler::Edf => admission::Policy::Edf,
                    Scheduler::Fp => admission::Policy::Fp(admission::PriorityAssignment::Dm),
                },
                preemptive: c.dispatch == Dispatch::Threads,
                utilization_cap: c.utilization_cap,
                dl_bandwidth: Some(dl),
            })
            .collect();
        Gate {
            admission: admission::Admission::new(
                cores,
                admission::AdmissionOptions { job_overhead },
            ),
        }
    }

    /// Runs the analysis for `spec`; on success the task holds its place until released.
    pub(crate) fn try_admit(&mut self, spec: TaskSpec) -> Result<Placement, Rejection> {
        self.admission.try_admit(spec)
    }

    /// Gives `id`'s capacity back.
    pub(crate) fn release(&mut self, id: TaskId) {
        self.admission.release(id);
    }

    /// The tasks on RT core `core` with their current fixed-priority ranks (1 highest).
    pub(crate) fn ranks(&self, core: usize) -> Vec<(TaskId, Option<u32>)> {
        self.admission.core_tasks(core)
    }
}
