//! STAND-IN for `rtpm_rt::admission` (issue 3), which is being written on another branch.
//!
//! It mirrors the agreed interface (`Admission::new(cores, options)`, `try_admit`,
//! `release`, the core's tasks with their ranks, `TaskSpec`, `Placement`, `Rejection`) so
//! the executor can be built and tested now. Its "analysis" is only a utilisation sum
//! with deadline-monotonic ranks: it is NOT the admission control the executor ships
//! with. This file is deleted when admission lands on main, and `gate.rs` then imports
//! the real module; nothing else changes.

use std::fmt;

use crate::time::Nanos;

/// Periodic or sporadic.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum TaskKind {
    /// One job every period.
    #[default]
    Periodic,
    /// Jobs on demand, at least a period apart.
    Sporadic,
}

/// A task's declaration (the agreed fields).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskSpec {
    /// Unique name.
    pub name: String,
    /// Periodic or sporadic.
    pub kind: TaskKind,
    /// Period, or minimum inter-arrival time.
    pub period: Nanos,
    /// Worst-case execution time (the budget).
    pub wcet: Nanos,
    /// Relative deadline.
    pub deadline: Nanos,
    /// First release offset.
    pub offset: Nanos,
    /// Release jitter.
    pub jitter: Nanos,
    /// Blocking.
    pub blocking: Nanos,
    /// Explicit priority (1 highest).
    pub priority: Option<u32>,
    /// Pin to RT core index.
    pub core: Option<usize>,
}

impl TaskSpec {
    /// A periodic task with an implicit deadline.
    pub fn periodic(name: impl Into<String>, period: Nanos, wcet: Nanos) -> TaskSpec {
        TaskSpec {
            name: name.into(),
            kind: TaskKind::Periodic,
            period,
            wcet,
            deadline: period,
            offset: Nanos::ZERO,
            jitter: Nanos::ZERO,
            blocking: Nanos::ZERO,
            priority: None,
            core: None,
        }
    }
    /// A sporadic task with an implicit deadline.
    pub fn sporadic(name: impl Into<String>, min_interarrival: Nanos, wcet: Nanos) -> TaskSpec {
        TaskSpec {
            kind: TaskKind::Sporadic,
            ..TaskSpec::periodic(name, min_interarrival, wcet)
        }
    }
    /// With deadline `d`.
    pub fn with_deadline(mut self, d: Nanos) -> TaskSpec {
        self.deadline = d;
        self
    }
    /// With offset `o`.
    pub fn with_offset(mut self, o: Nanos) -> TaskSpec {
        self.offset = o;
        self
    }
    /// Pinned to RT core `core`.
    pub fn pinned(mut self, core: usize) -> TaskSpec {
        self.core = Some(core);
        self
    }
}

/// An admitted task's id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TaskId(pub(crate) u64);

impl TaskId {
    /// The raw number.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// Priority assignment of a fixed-priority core.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PriorityAssignment {
    /// Deadline monotonic.
    Dm,
}

/// A core's policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Policy {
    /// EDF.
    Edf,
    /// Fixed priority.
    Fp(PriorityAssignment),
}

/// One RT core as admission sees it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CoreSpec {
    /// EDF or FP.
    pub policy: Policy,
    /// Threads (true) or cooperative (false).
    pub preemptive: bool,
    /// Utilisation cap.
    pub utilization_cap: f64,
    /// SCHED_DEADLINE bandwidth, for preemptive EDF.
    pub dl_bandwidth: Option<f64>,
}

/// Admission-wide options.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdmissionOptions {
    /// Added to every wcet.
    pub job_overhead: Nanos,
}

/// Where an admitted task goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    /// RT core index.
    pub core: usize,
    /// Its id.
    pub id: TaskId,
    /// Its fixed-priority rank (1 highest), FP cores only.
    pub priority: Option<u32>,
    /// Worst-case response time, where the analysis gives one.
    pub response_time: Option<Nanos>,
}

/// Why a task was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// The task.
    pub task: String,
    /// The reason.
    pub reason: String,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "task `{}` rejected: {}", self.task, self.reason)
    }
}

/// The stand-in controller.
#[derive(Debug)]
pub struct Admission {
    cores: Vec<CoreSpec>,
    options: AdmissionOptions,
    tasks: Vec<Vec<(TaskId, TaskSpec)>>,
    next: u64,
}

impl Admission {
    /// A controller for `cores`.
    pub fn new(cores: Vec<CoreSpec>, options: AdmissionOptions) -> Admission {
        let tasks = cores.iter().map(|_| Vec::new()).collect();
        Admission {
            cores,
            options,
            tasks,
            next: 1,
        }
    }

    fn load(&self, core: usize) -> f64 {
        self.tasks[core].iter().map(|(_, t)| self.u(t)).sum::<f64>()
    }

    fn u(&self, t: &TaskSpec) -> f64 {
        (t.wcet.get() + self.options.job_overhead.get()) as f64 / t.period.get() as f64
    }

    /// Admits `spec` on the first core whose utilisation stays within its cap.
    pub fn try_admit(&mut self, spec: TaskSpec) -> Result<Placement, Rejection> {
        let reject = |reason: String| Rejection {
            task: spec.name.clone(),
            reason,
        };
        if spec.period.is_zero() || spec.wcet.is_zero() || spec.wcet > spec.deadline {
            return Err(reject("invalid wcet/deadline/period".into()));
        }
        if spec.deadline > spec.period {
            return Err(reject("deadline exceeds period".into()));
        }
        let candidates: Vec<usize> = match spec.core {
            Some(c) if c < self.cores.len() => vec![c],
            Some(c) => return Err(reject(format!("no RT core {c}"))),
            None => (0..self.cores.len()).collect(),
        };
        let mut worst = 0.0f64;
        for c in candidates {
            let core = self.cores[c];
            let mut cap = core.utilization_cap;
            if let (Policy::Edf, true, Some(bw)) = (core.policy, core.preemptive, core.dl_bandwidth)
            {
                cap = cap.min(bw);
            }
            let after = self.load(c) + self.u(&spec);
            worst = worst.max(after);
            if after <= cap + 1e-12 {
                let id = TaskId(self.next);
                self.next += 1;
                self.tasks[c].push((id, spec));
                let priority = self.rank_of(c, id);
                return Ok(Placement {
                    core: c,
                    id,
                    priority,
                    response_time: None,
                });
            }
        }
        Err(reject(format!(
            "utilisation would reach {worst:.3}, above the core's cap"
        )))
    }

    /// Frees `id`'s place.
    pub fn release(&mut self, id: TaskId) {
        for core in &mut self.tasks {
            core.retain(|(t, _)| *t != id);
        }
    }

    fn rank_of(&self, core: usize, id: TaskId) -> Option<u32> {
        self.core_tasks(core)
            .into_iter()
            .find(|(t, _)| *t == id)
            .and_then(|(_, r)| r)
    }

    /// The tasks admitted on `core`, with their fixed-priority ranks (1 highest; `None`
    /// under EDF).
    pub fn core_tasks(&self, core: usize) -> Vec<(TaskId, Option<u32>)> {
        let Some(tasks) = self.tasks.get(core) else {
            return Vec::new();
        };
        let mut order: Vec<(Nanos, TaskId)> =
            tasks.iter().map(|(id, t)| (t.deadline, *id)).collect();
        order.sort();
        let fp = matches!(self.cores[core].policy, Policy::Fp(_));
        tasks
            .iter()
            .map(|(id, _)| {
                let rank = order
                    .iter()
                    .position(|(_, o)| o == id)
                    .map(|p| p as u32 + 1);
                (*id, if fp { rank } else { None })
            })
            .collect()
    }
}
