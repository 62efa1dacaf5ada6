//! The result of analysing a whole task set: what went where, and what was refused.

use super::core_spec::CoreSpec;
use super::rejection::Rejection;
use super::task::TaskId;
use crate::time::Nanos;

/// The admission state after offering a set of tasks.
#[derive(Clone, Debug)]
pub struct Report {
    /// Every RT core, in index order.
    pub cores: Vec<CoreReport>,
    /// The refused tasks, in the order they were given.
    pub rejected: Vec<Rejection>,
}

impl Report {
    /// Whether every task offered was admitted.
    pub fn schedulable(&self) -> bool {
        self.rejected.is_empty()
    }

    /// How many tasks are admitted, over all cores.
    pub fn admitted(&self) -> usize {
        self.cores.iter().map(|c| c.tasks.len()).sum()
    }
}

/// One core's admitted tasks.
#[derive(Clone, Debug)]
pub struct CoreReport {
    /// The core's index among the RT cores.
    pub core: usize,
    /// What it runs.
    pub spec: CoreSpec,
    /// Its total utilisation, per-job overheads included.
    pub utilization: f64,
    /// Its tasks: in priority order (highest first) under fixed priority, in offer
    /// order under EDF.
    pub tasks: Vec<TaskReport>,
}

/// One admitted task.
#[derive(Clone, Debug)]
pub struct TaskReport {
    /// Its id.
    pub id: TaskId,
    /// Its name.
    pub name: String,
    /// Its priority rank under fixed priority (1 is the highest); `None` under EDF.
    pub rank: Option<u32>,
    /// `(wcet + overhead) / period`.
    pub utilization: f64,
    /// Its worst-case execution time as declared (without overhead).
    pub wcet: Nanos,
    /// Its period or minimum inter-arrival time.
    pub period: Nanos,
    /// Its relative deadline.
    pub deadline: Nanos,
    /// Its worst-case response time under fixed priority; `None` under EDF.
    pub response_time: Option<Nanos>,
}
