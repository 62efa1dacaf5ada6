//! Why a task was refused: which test failed, which task would miss, and by how much.

use std::fmt;

use super::task::SpecError;
use crate::time::Nanos;

/// The test that refused a task.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Test {
    /// The core's utilisation cap.
    UtilizationCap,
    /// The kernel's SCHED_DEADLINE bandwidth (preemptive EDF cores).
    DeadlineBandwidth,
    /// EDF's exact utilisation test (`U ≤ 1`).
    EdfUtilization,
    /// EDF processor-demand analysis by QPA (preemptive).
    EdfQpa,
    /// Non-preemptive EDF processor-demand analysis (George et al.).
    EdfNpDemand,
    /// Fixed-priority response-time analysis (preemptive).
    FpRta,
    /// Non-preemptive fixed-priority response-time analysis (Davis et al. 2007).
    FpNpRta,
    /// Audsley's assignment found no priority order under which every task meets its
    /// deadline.
    FpAudsley,
}

impl fmt::Display for Test {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Test::UtilizationCap => "utilization-cap",
            Test::DeadlineBandwidth => "sched-deadline-bandwidth",
            Test::EdfUtilization => "edf-utilization",
            Test::EdfQpa => "edf-qpa",
            Test::EdfNpDemand => "edf-np-demand",
            Test::FpRta => "fp-rta",
            Test::FpNpRta => "fp-np-rta",
            Test::FpAudsley => "fp-audsley",
        })
    }
}

/// What fell short.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Shortfall {
    /// The total utilisation (with the offered task) exceeds a limit.
    Utilization {
        /// Total utilisation with the offered task.
        total: f64,
        /// The limit it exceeds.
        limit: f64,
    },
    /// More work is due within a window than the window holds.
    Demand {
        /// The window's length (an absolute deadline under synchronous release).
        window: Nanos,
        /// The work due within it (saturated at [`Nanos::MAX`]).
        demand: Nanos,
    },
    /// A worst-case response time exceeds the deadline.
    Response {
        /// The response time; a lower bound when `exact` is false.
        response: Nanos,
        /// The deadline.
        deadline: Nanos,
        /// Whether `response` is the exact worst case or only a lower bound on it.
        exact: bool,
    },
    /// The analysis reached its step limit without an answer, so it refused (which is
    /// always safe); the set may be schedulable.
    GaveUp {
        /// Steps taken.
        steps: u64,
    },
}

/// One failed test on one core.
#[derive(Clone, Debug, PartialEq)]
pub struct Miss {
    /// The test that failed.
    pub test: Test,
    /// The task that would miss its deadline: the offered one or one already admitted.
    /// For the capacity tests, the offered task.
    pub task: String,
    /// What fell short.
    pub shortfall: Shortfall,
}

impl Miss {
    /// How much too late (or, for utilisation, by how much over) as time: `None` for the
    /// utilisation tests and when the analysis gave up.
    pub fn lateness(&self) -> Option<Nanos> {
        match self.shortfall {
            Shortfall::Demand { window, demand } => Some(demand.saturating_sub(window)),
            Shortfall::Response {
                response, deadline, ..
            } => Some(response.saturating_sub(deadline)),
            Shortfall::Utilization { .. } | Shortfall::GaveUp { .. } => None,
        }
    }

    /// The exact response time of [`Miss::task`], when the test computed one.
    pub fn response_time(&self) -> Option<Nanos> {
        match self.shortfall {
            Shortfall::Response {
                response,
                exact: true,
                ..
            } => Some(response),
            _ => None,
        }
    }

    /// A number for ranking misses: how far off, relative to the limit missed.
    pub(crate) fn severity(&self) -> f64 {
        let rel = |over: Nanos, of: Nanos| over.get() as f64 / of.get().max(1) as f64;
        match self.shortfall {
            Shortfall::Utilization { total, limit } => (total - limit) / limit.max(1e-9),
            Shortfall::Demand { window, demand } => rel(demand.saturating_sub(window), window),
            Shortfall::Response {
                response, deadline, ..
            } => rel(response.saturating_sub(deadline), deadline),
            Shortfall::GaveUp { .. } => f64::INFINITY,
        }
    }
}

impl fmt::Display for Miss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let test = self.test;
        let task = &self.task;
        match self.shortfall {
            Shortfall::Utilization { total, limit } => {
                let what = match test {
                    Test::UtilizationCap => "the core's cap",
                    Test::DeadlineBandwidth => "the SCHED_DEADLINE bandwidth",
                    _ => "1",
                };
                write!(
                    f,
                    "{test}: with task `{task}` U={total:.3} > {limit:.3} ({what})"
                )
            }
            Shortfall::Demand { window, demand } => write!(
                f,
                "{test}: demand {demand} due within {window} exceeds it by {} (deadline of task `{task}`)",
                demand.saturating_sub(window)
            ),
            Shortfall::Response {
                response,
                deadline,
                exact,
            } => {
                let (op, by) = if exact {
                    ("=", "by")
                } else {
                    ("≥", "by ≥")
                };
                write!(
                    f,
                    "{test}: task `{task}` R{op}{response} > D={deadline} {by} {}",
                    response.saturating_sub(deadline)
                )
            }
            Shortfall::GaveUp { steps } => write!(
                f,
                "{test}: gave up after {steps} analysis steps without proving that task `{task}` meets its deadline"
            ),
        }
    }
}

/// A [`Miss`] on a particular core.
#[derive(Clone, Debug, PartialEq)]
pub struct CoreMiss {
    /// The core's index.
    pub core: usize,
    /// What failed there.
    pub miss: Miss,
}

/// Why a task was refused.
#[derive(Clone, Debug, PartialEq)]
pub enum RejectReason {
    /// The declaration itself is invalid.
    Invalid(SpecError),
    /// The task is pinned to a core that does not exist.
    NoSuchCore {
        /// The pin.
        core: usize,
        /// How many RT cores there are.
        cores: usize,
    },
    /// There are no RT cores at all.
    NoCores,
    /// It fits on none of the cores it may use: one miss per core tried, in the order
    /// they were tried.
    Unschedulable(Vec<CoreMiss>),
}

/// A refused task: its name and the reason. Nothing changed in the admission state.
#[derive(Clone, Debug, PartialEq)]
pub struct Rejection {
    /// The offered task's name.
    pub task: String,
    /// Why.
    pub reason: RejectReason,
}

impl Rejection {
    /// The misses, one per core tried (empty unless the reason is
    /// [`RejectReason::Unschedulable`]).
    pub fn misses(&self) -> &[CoreMiss] {
        match &self.reason {
            RejectReason::Unschedulable(m) => m,
            _ => &[],
        }
    }

    /// The core where the task came closest to fitting.
    pub fn closest(&self) -> Option<&CoreMiss> {
        self.misses()
            .iter()
            .min_by(|a, b| a.miss.severity().total_cmp(&b.miss.severity()))
    }

    /// The exact response time the closest miss refers to, when one was computed (fixed
    /// priority); its task is the one the reason names.
    pub fn response_time(&self) -> Option<Nanos> {
        self.closest().and_then(|m| m.miss.response_time())
    }

    /// The reason alone, without the task's name in front.
    pub fn reason_text(&self) -> String {
        match &self.reason {
            RejectReason::Invalid(e) => e.to_string(),
            RejectReason::NoSuchCore { core, cores } => format!(
                "pinned to core {core}, but there are only {cores} RT cores (0..={})",
                cores.saturating_sub(1)
            ),
            RejectReason::NoCores => "there are no RT cores to admit tasks to".to_string(),
            RejectReason::Unschedulable(misses) => {
                if let [only] = misses.as_slice() {
                    return only.miss.to_string();
                }
                const SHOWN: usize = 4;
                let mut text = match self.closest() {
                    Some(best) => format!(
                        "fits none of {} cores; closest core {}: {}",
                        misses.len(),
                        best.core,
                        best.miss
                    ),
                    None => "fits no core".to_string(),
                };
                for m in misses.iter().take(SHOWN) {
                    text.push_str(&format!("; core {}: {}", m.core, m.miss));
                }
                if misses.len() > SHOWN {
                    text.push_str(&format!("; … and {} more cores", misses.len() - SHOWN));
                }
                text
            }
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "task `{}` refused: {}", self.task, self.reason_text())
    }
}

impl std::error::Error for Rejection {}

#[cfg(test)]
mod tests {
    use super::*;

    fn rta_miss(task: &str, r: u64, d: u64, exact: bool) -> Miss {
        Miss {
            test: Test::FpRta,
            task: task.into(),
            shortfall: Shortfall::Response {
                response: Nanos::ms(r),
                deadline: Nanos::ms(d),
                exact,
            },
        }
    }

    #[test]
    fn a_miss_reads_like_the_issue_says() {
        let m = rta_miss("brake", 52, 50, true);
        assert_eq!(m.to_string(), "fp-rta: task `brake` R=52ms > D=50ms by 2ms");
        assert_eq!(m.lateness(), Some(Nanos::ms(2)));
        assert_eq!(m.response_time(), Some(Nanos::ms(52)));
        let lb = rta_miss("brake", 52, 50, false);
        assert_eq!(
            lb.to_string(),
            "fp-rta: task `brake` R≥52ms > D=50ms by ≥ 2ms"
        );
        assert_eq!(lb.response_time(), None);
        let d = Miss {
            test: Test::EdfQpa,
            task: "t2".into(),
            shortfall: Shortfall::Demand {
                window: Nanos::ms(3),
                demand: Nanos::ms(4),
            },
        };
        assert_eq!(
            d.to_string(),
            "edf-qpa: demand 4ms due within 3ms exceeds it by 1ms (deadline of task `t2`)"
        );
        let u = Miss {
            test: Test::UtilizationCap,
            task: "x".into(),
            shortfall: Shortfall::Utilization {
                total: 0.97,
                limit: 0.95,
            },
        };
        assert_eq!(
            u.to_string(),
            "utilization-cap: with task `x` U=0.970 > 0.950 (the core's cap)"
        );
    }

    #[test]
    fn a_rejection_picks_the_closest_core() {
        let r = Rejection {
            task: "t4".into(),
            reason: RejectReason::Unschedulable(vec![
                CoreMiss {
                    core: 0,
                    miss: rta_miss("a", 90, 50, true),
                },
                CoreMiss {
                    core: 1,
                    miss: rta_miss("brake", 52, 50, true),
                },
            ]),
        };
        assert_eq!(r.closest().map(|m| m.core), Some(1));
        assert_eq!(r.response_time(), Some(Nanos::ms(52)));
        let text = r.to_string();
        assert!(text.starts_with("task `t4` refused: fits none of 2 cores; closest core 1: fp-rta: task `brake` R=52ms"), "{text}");
        assert!(text.contains("core 0: fp-rta: task `a` R=90ms"), "{text}");

        let one = Rejection {
            task: "t4".into(),
            reason: RejectReason::Unschedulable(vec![CoreMiss {
                core: 0,
                miss: rta_miss("brake", 52, 50, true),
            }]),
        };
        assert_eq!(
            one.reason_text(),
            "fp-rta: task `brake` R=52ms > D=50ms by 2ms"
        );
        let pin = Rejection {
            task: "x".into(),
            reason: RejectReason::NoSuchCore { core: 3, cores: 2 },
        };
        assert_eq!(
            pin.to_string(),
            "task `x` refused: pinned to core 3, but there are only 2 RT cores (0..=1)"
        );
    }
}
