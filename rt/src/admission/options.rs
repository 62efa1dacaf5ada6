//! Admission-wide options: the partitioning heuristic and the per-job overhead.

use std::fmt;

use crate::time::Nanos;

/// The cost of running one job beyond its own execution: its release, its dispatch and
/// the context switch to it. It is added to every job's wcet before analysis.
///
/// From two measurements recorded in bench/RESULTS.md (2026-11-27, shared 2-core VM):
///
/// - "Issue 3", `cargo bench -p rtpm-bench --bench admission -- handoff`: a same-core
///   handoff between two SCHED_FIFO threads pinned to one CPU, woken through a futex,
///   p50 2.5 µs, p99 4.0 µs; about two handoffs per job (switched to, switched away
///   from) make ≈ 8 µs without any timer;
/// - "Issue 4", the executor's per-job overhead (`exec_dispatch`): a timed periodic
///   release costs the core 21–23 µs median here, 20 µs of it the hypervisor's timer and
///   interrupt path, and the section recommends 25 µs for this class of VM.
///
/// The default is the larger, measured end to end: 25 µs. On bare metal re-run both; the
/// hypervisor's share disappears and the handoff figure is the better guide.
pub const DEFAULT_JOB_OVERHEAD: Nanos = Nanos::us(25);

/// How tasks are spread over the RT cores. Tasks are offered in decreasing density
/// (utilisation for implicit deadlines); each heuristic then picks among the cores on
/// which the task passes the schedulability test.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Heuristic {
    /// First-fit decreasing: the lowest-numbered core that admits the task.
    #[default]
    FirstFit,
    /// Best-fit decreasing: the admitting core left with the least spare capacity.
    BestFit,
    /// Worst-fit decreasing: the admitting core left with the most spare capacity.
    WorstFit,
}

impl fmt::Display for Heuristic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Heuristic::FirstFit => "ffd",
            Heuristic::BestFit => "bfd",
            Heuristic::WorstFit => "wfd",
        })
    }
}

/// Options that apply to every core.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdmissionOptions {
    /// Which core a task goes to.
    pub heuristic: Heuristic,
    /// Added to every job's wcet (release, dispatch, context switch).
    pub job_overhead: Nanos,
}

impl Default for AdmissionOptions {
    fn default() -> AdmissionOptions {
        AdmissionOptions {
            heuristic: Heuristic::FirstFit,
            job_overhead: DEFAULT_JOB_OVERHEAD,
        }
    }
}

impl AdmissionOptions {
    /// First-fit decreasing with no per-job overhead: for exact textbook figures.
    pub fn exact() -> AdmissionOptions {
        AdmissionOptions {
            heuristic: Heuristic::FirstFit,
            job_overhead: Nanos::ZERO,
        }
    }

    /// With heuristic `heuristic`.
    pub fn with_heuristic(mut self, heuristic: Heuristic) -> AdmissionOptions {
        self.heuristic = heuristic;
        self
    }

    /// With per-job overhead `overhead`.
    pub fn with_job_overhead(mut self, overhead: Nanos) -> AdmissionOptions {
        self.job_overhead = overhead;
        self
    }
}
