//! The task model: what a real-time task declares to admission control.
//!
//! A task releases jobs. A periodic task releases one every `period` from its `offset`; a
//! sporadic task releases one at most every `period` (its minimum inter-arrival time).
//! Each job needs at most `wcet` of processor time and must finish within `deadline` of
//! its arrival. A job may be released up to `jitter` after it arrives, and it may wait up
//! to `blocking` for lower-priority work (a critical section, a non-preemptive region).
//!
//! A sporadic task may declare a `burst`: up to `burst` jobs may arrive together, at most
//! `burst` in any window of length `period` (a sporadic server's budget of
//! `burst × wcet` per period, spent one job at a time). The analysis charges each window
//! the whole burst, due `deadline` after the first of its arrivals, and the cooperative
//! model's analysis lets higher-priority jobs in between the burst's jobs. A burst of 1
//! is the classic sporadic task.
//!
//! Deadlines are constrained: `wcet ≤ deadline ≤ period`. Linux's `SCHED_DEADLINE`
//! refuses a deadline longer than the period, and so does [`TaskSpec::validate`].

use std::fmt;

use crate::time::Nanos;

/// How a task's jobs arrive.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum TaskKind {
    /// One job every `period`, from `offset` on.
    #[default]
    Periodic,
    /// Jobs on demand, at least `period` apart (the minimum inter-arrival time).
    Sporadic,
}

impl fmt::Display for TaskKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TaskKind::Periodic => "periodic",
            TaskKind::Sporadic => "sporadic",
        })
    }
}

/// A real-time task as declared by its owner. All times are integer nanoseconds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskSpec {
    /// A name unique among the tasks offered together; rejections name tasks by it.
    pub name: String,
    /// Periodic or sporadic.
    pub kind: TaskKind,
    /// Period, or for a sporadic task the minimum inter-arrival time. Must be > 0.
    pub period: Nanos,
    /// Worst-case execution time of one job. Must be > 0 and ≤ `deadline`.
    pub wcet: Nanos,
    /// Relative deadline. Must be ≤ `period` (constrained deadlines).
    pub deadline: Nanos,
    /// First release of a periodic task. The analysis does not rely on offsets: it
    /// assumes the worst phasing, so an offset never makes a set admissible.
    pub offset: Nanos,
    /// Release jitter: how long after its arrival a job may be released.
    pub jitter: Nanos,
    /// The longest time one job can be blocked by lower-priority work.
    pub blocking: Nanos,
    /// Explicit fixed priority, used only under [`PriorityAssignment::Explicit`]: 1 is
    /// the highest. Equal priorities keep offer order (the earlier task ranks higher).
    ///
    /// [`PriorityAssignment::Explicit`]: super::PriorityAssignment::Explicit
    pub priority: Option<u32>,
    /// Pins the task to this RT core (0-based index among the RT cores).
    pub core: Option<usize>,
    /// Sporadic tasks: the most jobs that may arrive in any window of `period` (1 to
    /// [`MAX_BURST`]); periodic tasks: 1. See the module documentation.
    pub burst: u32,
}

/// The largest [`TaskSpec::burst`].
pub const MAX_BURST: u32 = 64;

impl TaskSpec {
    /// A periodic task with an implicit deadline (`deadline = period`) and no offset,
    /// jitter, blocking, explicit priority or pin.
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
            burst: 1,
        }
    }

    /// A sporadic task with minimum inter-arrival time `min_interarrival` and an implicit
    /// deadline.
    pub fn sporadic(name: impl Into<String>, min_interarrival: Nanos, wcet: Nanos) -> TaskSpec {
        TaskSpec {
            kind: TaskKind::Sporadic,
            ..TaskSpec::periodic(name, min_interarrival, wcet)
        }
    }

    /// With relative deadline `deadline`.
    pub fn with_deadline(mut self, deadline: Nanos) -> TaskSpec {
        self.deadline = deadline;
        self
    }

    /// With first release at `offset`.
    pub fn with_offset(mut self, offset: Nanos) -> TaskSpec {
        self.offset = offset;
        self
    }

    /// With release jitter `jitter`.
    pub fn with_jitter(mut self, jitter: Nanos) -> TaskSpec {
        self.jitter = jitter;
        self
    }

    /// With blocking `blocking` by lower-priority work.
    pub fn with_blocking(mut self, blocking: Nanos) -> TaskSpec {
        self.blocking = blocking;
        self
    }

    /// With explicit priority `priority` (1 is the highest).
    pub fn with_priority(mut self, priority: u32) -> TaskSpec {
        self.priority = Some(priority);
        self
    }

    /// A sporadic task whose jobs may arrive `burst` at a time (at most `burst` in any
    /// window of `period`).
    pub fn with_burst(mut self, burst: u32) -> TaskSpec {
        self.burst = burst;
        self
    }

    /// The processor time one window of `period` may ask for: `burst × wcet`.
    pub fn window_wcet(&self) -> Nanos {
        Nanos(self.wcet.get().saturating_mul(u64::from(self.burst.max(1))))
    }

    /// Pinned to RT core `core`.
    pub fn pinned(mut self, core: usize) -> TaskSpec {
        self.core = Some(core);
        self
    }

    /// `burst × wcet / period`, the share of one core the task needs.
    pub fn utilization(&self) -> f64 {
        ratio(self.window_wcet(), self.period)
    }

    /// `burst × wcet / deadline`: equal to the utilisation for implicit deadlines, larger
    /// when the deadline is shorter than the period.
    pub fn density(&self) -> f64 {
        ratio(self.window_wcet(), self.deadline)
    }

    /// Checks the declaration on its own (not against other tasks): a non-empty name,
    /// `period > 0`, `wcet > 0`, `burst × wcet ≤ deadline ≤ period`, a burst in
    /// `1..=MAX_BURST` (1 for a periodic task), and an explicit priority of at least 1.
    pub fn validate(&self) -> Result<(), SpecError> {
        let task = || self.name.clone();
        if self.name.trim().is_empty() {
            return Err(SpecError::EmptyName);
        }
        if self.period.is_zero() {
            return Err(SpecError::ZeroPeriod { task: task() });
        }
        if self.wcet.is_zero() {
            return Err(SpecError::ZeroWcet { task: task() });
        }
        if self.deadline > self.period {
            return Err(SpecError::DeadlineExceedsPeriod {
                task: task(),
                deadline: self.deadline,
                period: self.period,
            });
        }
        if self.wcet > self.deadline {
            return Err(SpecError::WcetExceedsDeadline {
                task: task(),
                wcet: self.wcet,
                deadline: self.deadline,
            });
        }
        if !(1..=MAX_BURST).contains(&self.burst)
            || (self.kind == TaskKind::Periodic && self.burst != 1)
        {
            return Err(SpecError::BadBurst {
                task: task(),
                kind: self.kind,
                burst: self.burst,
            });
        }
        if self.window_wcet() > self.deadline {
            return Err(SpecError::BurstExceedsDeadline {
                task: task(),
                burst: self.burst,
                wcet: self.wcet,
                deadline: self.deadline,
            });
        }
        if self.priority == Some(0) {
            return Err(SpecError::ZeroPriority { task: task() });
        }
        Ok(())
    }
}

fn ratio(a: Nanos, b: Nanos) -> f64 {
    if b.is_zero() {
        f64::INFINITY
    } else {
        a.get() as f64 / b.get() as f64
    }
}

/// Identifies an admitted task for as long as the [`Admission`] that admitted it lives.
/// Ids are never reused.
///
/// [`Admission`]: super::Admission
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TaskId(pub(crate) u64);

impl TaskId {
    /// The raw number, for logs and maps.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// Why a task declaration was refused before any analysis ran. Nothing was admitted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// The name is empty.
    #[error("a task has an empty `name`; give every task a unique, non-empty name")]
    EmptyName,
    /// The period is zero.
    #[error("task `{task}`: `period` must be greater than 0")]
    ZeroPeriod {
        /// The task.
        task: String,
    },
    /// The worst-case execution time is zero.
    #[error("task `{task}`: `wcet` must be greater than 0")]
    ZeroWcet {
        /// The task.
        task: String,
    },
    /// The job cannot finish within its deadline even alone on a core.
    #[error(
        "task `{task}`: `wcet` {wcet} exceeds `deadline` {deadline}; no schedule can meet it: shorten the wcet or lengthen the deadline"
    )]
    WcetExceedsDeadline {
        /// The task.
        task: String,
        /// Its worst-case execution time.
        wcet: Nanos,
        /// Its deadline.
        deadline: Nanos,
    },
    /// A burst out of range, or on a periodic task.
    #[error(
        "task `{task}`: `burst` {burst} is not valid for a {kind} task; a sporadic task's burst is 1 to 64 jobs per window of `period`, a periodic task's is 1"
    )]
    BadBurst {
        /// The task.
        task: String,
        /// Its kind.
        kind: TaskKind,
        /// Its burst.
        burst: u32,
    },
    /// A whole burst cannot finish within the deadline even alone on a core.
    #[error(
        "task `{task}`: `burst` {burst} × `wcet` {wcet} exceeds `deadline` {deadline}; a burst must fit before its deadline: lower the burst or the wcet, or lengthen the deadline"
    )]
    BurstExceedsDeadline {
        /// The task.
        task: String,
        /// Its burst.
        burst: u32,
        /// Its worst-case execution time per job.
        wcet: Nanos,
        /// Its deadline.
        deadline: Nanos,
    },
    /// An arbitrary deadline (longer than the period), which is not supported.
    #[error(
        "task `{task}`: `deadline` {deadline} exceeds `period` {period}; only constrained deadlines (deadline ≤ period) are supported, as SCHED_DEADLINE requires: shorten the deadline or lengthen the period"
    )]
    DeadlineExceedsPeriod {
        /// The task.
        task: String,
        /// Its deadline.
        deadline: Nanos,
        /// Its period.
        period: Nanos,
    },
    /// Explicit priority 0.
    #[error(
        "task `{task}`: `priority` 0 is not valid; explicit priorities start at 1 (the highest)"
    )]
    ZeroPriority {
        /// The task.
        task: String,
    },
    /// A core with explicit priorities was offered a task without one.
    #[error(
        "task `{task}`: no `priority`, but core {core} assigns priorities explicitly: give the task a priority (1 is the highest)"
    )]
    MissingPriority {
        /// The task.
        task: String,
        /// The core whose assignment is explicit.
        core: usize,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builders_fill_the_model() {
        let t = TaskSpec::sporadic("rx", Nanos::ms(10), Nanos::ms(2))
            .with_deadline(Nanos::ms(8))
            .with_jitter(Nanos::us(100))
            .with_blocking(Nanos::us(50))
            .with_offset(Nanos::ms(1))
            .with_priority(3)
            .pinned(1);
        assert_eq!(t.kind, TaskKind::Sporadic);
        assert_eq!(t.deadline, Nanos::ms(8));
        assert_eq!(t.jitter, Nanos::us(100));
        assert_eq!(t.blocking, Nanos::us(50));
        assert_eq!(t.offset, Nanos::ms(1));
        assert_eq!(t.priority, Some(3));
        assert_eq!(t.core, Some(1));
        assert!((t.utilization() - 0.2).abs() < 1e-12);
        assert!((t.density() - 0.25).abs() < 1e-12);
        assert_eq!(t.validate(), Ok(()));
        let b = t.with_burst(3);
        assert_eq!(b.window_wcet(), Nanos::ms(6));
        assert!((b.utilization() - 0.6).abs() < 1e-12);
        assert_eq!(b.validate(), Ok(()));
    }

    #[test]
    fn validation_names_task_and_field() {
        let ok = TaskSpec::periodic("brake", Nanos::ms(10), Nanos::ms(2));
        let cases = [
            (
                TaskSpec {
                    name: " ".into(),
                    ..ok.clone()
                },
                "`name`",
            ),
            (
                TaskSpec {
                    period: Nanos::ZERO,
                    ..ok.clone()
                },
                "`period`",
            ),
            (
                TaskSpec {
                    wcet: Nanos::ZERO,
                    ..ok.clone()
                },
                "`wcet` must",
            ),
            (ok.clone().with_deadline(Nanos::ms(1)), "`wcet` 2ms exceeds"),
            (ok.clone().with_deadline(Nanos::ms(11)), "`deadline` 11ms"),
            (ok.clone().with_priority(0), "`priority` 0"),
            (
                ok.clone().with_burst(2),
                "`burst` 2 is not valid for a periodic",
            ),
            (
                TaskSpec::sporadic("brake", Nanos::ms(10), Nanos::ms(2)).with_burst(0),
                "`burst` 0 is not valid",
            ),
            (
                TaskSpec::sporadic("brake", Nanos::ms(10), Nanos::ms(2)).with_burst(65),
                "`burst` 65 is not valid",
            ),
            (
                TaskSpec::sporadic("brake", Nanos::ms(10), Nanos::ms(2)).with_burst(6),
                "`burst` 6 × `wcet` 2ms exceeds `deadline` 10ms",
            ),
        ];
        for (spec, needle) in cases {
            let err = spec.validate().unwrap_err().to_string();
            assert!(err.contains(needle), "{err:?} lacks {needle:?}");
            if !needle.contains("name") {
                assert!(err.contains("task `brake`"), "{err}");
            }
        }
    }

    #[test]
    fn ids_display_and_order() {
        assert_eq!(TaskId(7).to_string(), "#7");
        assert!(TaskId(1) < TaskId(2));
        assert_eq!(TaskId(9).get(), 9);
    }
}
