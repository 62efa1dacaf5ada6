//! What one RT core runs: its scheduling policy, its execution model and its limits.

use std::fmt;

/// How a fixed-priority core orders its tasks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PriorityAssignment {
    /// Rate monotonic: the shorter period ranks higher.
    Rm,
    /// Deadline monotonic: the shorter deadline ranks higher (optimal for constrained
    /// deadlines without jitter or blocking).
    Dm,
    /// Audsley's optimal priority assignment: lowest level first, each level goes to a
    /// task that meets its deadline there. Admitting a task may reorder all the others.
    Audsley,
    /// The tasks' own [`priority`](super::TaskSpec::priority) fields, 1 the highest.
    Explicit,
}

impl fmt::Display for PriorityAssignment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PriorityAssignment::Rm => "rm",
            PriorityAssignment::Dm => "dm",
            PriorityAssignment::Audsley => "audsley",
            PriorityAssignment::Explicit => "explicit",
        })
    }
}

/// The scheduling policy of a core.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Policy {
    /// Earliest deadline first.
    Edf,
    /// Fixed priorities, assigned as given.
    Fp(PriorityAssignment),
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Policy::Edf => f.write_str("edf"),
            Policy::Fp(a) => write!(f, "fp/{a}"),
        }
    }
}

/// One RT core as admission control sees it.
///
/// Ties of every ordering keep offer order: the task offered earlier ranks higher.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CoreSpec {
    /// EDF or fixed priority.
    pub policy: Policy,
    /// `true` for the `threads` model (one preemptible thread per task: SCHED_FIFO for
    /// fixed priority, SCHED_DEADLINE for EDF); `false` for the `cooperative` model
    /// (one dispatcher thread running each job to completion).
    pub preemptive: bool,
    /// Upper bound on the core's total utilisation (with per-job overheads), in (0, 1].
    /// A cap that is not a number refuses every task.
    pub utilization_cap: f64,
    /// The kernel's SCHED_DEADLINE bandwidth (`sched_rt_runtime_us /
    /// sched_rt_period_us`), as read by `rtpm_rt::probe::dl_bandwidth()`. It bounds the
    /// utilisation of a preemptive EDF core, whose tasks run under SCHED_DEADLINE; it is
    /// ignored otherwise. `None` when the caller does not want it checked.
    pub dl_bandwidth: Option<f64>,
}

impl CoreSpec {
    /// A preemptive EDF core with cap 1 and no bandwidth limit.
    pub fn edf() -> CoreSpec {
        CoreSpec {
            policy: Policy::Edf,
            preemptive: true,
            utilization_cap: 1.0,
            dl_bandwidth: None,
        }
    }

    /// A preemptive fixed-priority core with cap 1.
    pub fn fp(assignment: PriorityAssignment) -> CoreSpec {
        CoreSpec {
            policy: Policy::Fp(assignment),
            ..CoreSpec::edf()
        }
    }

    /// The same core under the cooperative (non-preemptive) model.
    pub fn non_preemptive(mut self) -> CoreSpec {
        self.preemptive = false;
        self
    }

    /// The same core with utilisation cap `cap`.
    pub fn with_cap(mut self, cap: f64) -> CoreSpec {
        self.utilization_cap = cap;
        self
    }

    /// The same core with the SCHED_DEADLINE bandwidth `bandwidth` checked.
    pub fn with_dl_bandwidth(mut self, bandwidth: f64) -> CoreSpec {
        self.dl_bandwidth = Some(bandwidth);
        self
    }

    /// The SCHED_DEADLINE bandwidth, when it applies to this core (preemptive EDF).
    pub fn applicable_bandwidth(&self) -> Option<f64> {
        match (self.policy, self.preemptive) {
            (Policy::Edf, true) => self.dl_bandwidth,
            _ => None,
        }
    }

    /// The priority assignment, for a fixed-priority core.
    pub fn assignment(&self) -> Option<PriorityAssignment> {
        match self.policy {
            Policy::Fp(a) => Some(a),
            Policy::Edf => None,
        }
    }
}

impl fmt::Display for CoreSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let model = if self.preemptive {
            "preemptive"
        } else {
            "non-preemptive"
        };
        write!(
            f,
            "{} {model}, cap {:.3}",
            self.policy, self.utilization_cap
        )?;
        if let Some(bw) = self.applicable_bandwidth() {
            write!(f, ", SCHED_DEADLINE bandwidth {bw:.3}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bandwidth_applies_to_preemptive_edf_only() {
        assert_eq!(
            CoreSpec::edf()
                .with_dl_bandwidth(0.95)
                .applicable_bandwidth(),
            Some(0.95)
        );
        assert_eq!(
            CoreSpec::edf()
                .non_preemptive()
                .with_dl_bandwidth(0.95)
                .applicable_bandwidth(),
            None
        );
        assert_eq!(
            CoreSpec::fp(PriorityAssignment::Rm)
                .with_dl_bandwidth(0.95)
                .applicable_bandwidth(),
            None
        );
    }

    #[test]
    fn displays_say_what_runs() {
        let c = CoreSpec::fp(PriorityAssignment::Audsley)
            .non_preemptive()
            .with_cap(0.9);
        assert_eq!(c.to_string(), "fp/audsley non-preemptive, cap 0.900");
        assert_eq!(c.assignment(), Some(PriorityAssignment::Audsley));
        let e = CoreSpec::edf().with_dl_bandwidth(0.95);
        assert_eq!(
            e.to_string(),
            "edf preemptive, cap 1.000, SCHED_DEADLINE bandwidth 0.950"
        );
        assert_eq!(e.assignment(), None);
    }
}
