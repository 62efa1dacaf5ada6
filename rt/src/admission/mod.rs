//! Admission control: nothing runs on an RT core unless this analysis says every admitted
//! deadline still holds.
//!
//! # Model
//!
//! A task ([`TaskSpec`]) is periodic or sporadic, with a worst-case execution time, a
//! constrained deadline (`wcet ≤ deadline ≤ period`), and optionally an offset, a release
//! jitter, a blocking time and an explicit priority. Every time is an integer number of
//! nanoseconds; sums and products that can grow (busy periods, demand) are `u128`, so
//! nothing overflows. A per-job overhead ([`AdmissionOptions::job_overhead`]: release,
//! dispatch, context switch) is added to each job's cost before any test. A sporadic
//! task may declare a burst `b` (at most `b` jobs in any window of its period): each
//! window is charged `b` jobs, due by the deadline of the first, and the cooperative
//! model's test lets higher-priority jobs in between them.
//!
//! Each RT core ([`CoreSpec`]) runs EDF or fixed priority (RM, DM, Audsley or explicit),
//! preemptively (the `threads` model) or not (the `cooperative` model), under a
//! utilisation cap and, for preemptive EDF, the kernel's SCHED_DEADLINE bandwidth. The
//! test matches the model:
//!
//! | core | test |
//! |---|---|
//! | EDF, preemptive | `U ≤ 1` (exact) for implicit deadlines; otherwise processor demand by QPA (Zhang & Burns 2009) |
//! | EDF, cooperative | non-preemptive demand test (George, Rivierre & Spuri 1996) |
//! | FP, preemptive | response-time analysis with jitter and blocking; Liu & Layland and hyperbolic bounds as fast accepts |
//! | FP, cooperative | non-preemptive response-time analysis over every job of the busy period (Davis et al. 2007) |
//!
//! The preemptive tests are exact for synchronous periodic release without jitter or
//! blocking; all are sufficient (safe) otherwise. Offsets are not relied on: the
//! analysis assumes the worst phasing.
//!
//! # Use
//!
//! [`Admission`] holds the admitted tasks of every core. [`Admission::try_admit`] offers
//! one task, re-analysing only the cores it tries, and returns a [`Placement`] (core,
//! [`TaskId`], and under fixed priority the rank and worst-case response time) or a
//! [`Rejection`] that names the task that would miss (possibly an admitted one), by how
//! much and under which [`Test`]. [`Admission::release`] frees a place.
//! [`Admission::core_tasks`] gives a core's tasks in their current priority order:
//! admitting a task under RM, DM or Audsley can move the ranks of the others.
//! [`Admission::admit_all`] offers a whole set, spread over the cores by first-, best-
//! or worst-fit decreasing ([`Heuristic`]), and returns a [`Report`].
//!
//! ```
//! use rtpm_rt::admission::{Admission, AdmissionOptions, CoreSpec, PriorityAssignment, TaskSpec};
//! use rtpm_rt::time::Nanos;
//!
//! let mut admission = Admission::new(
//!     vec![CoreSpec::fp(PriorityAssignment::Rm)],
//!     AdmissionOptions::exact(),
//! );
//! let ms = Nanos::ms;
//! admission.try_admit(TaskSpec::periodic("a", ms(7), ms(3))).unwrap();
//! admission.try_admit(TaskSpec::periodic("b", ms(12), ms(3))).unwrap();
//! let c = admission.try_admit(TaskSpec::periodic("c", ms(20), ms(5))).unwrap();
//! assert_eq!(c.response_time, Some(ms(20)));
//! // A fourth task ranks above `c` and pushes it past its deadline: refused.
//! let refused = admission.try_admit(TaskSpec::periodic("d", ms(15), ms(1))).unwrap_err();
//! assert_eq!(refused.reason_text(), "fp-rta: task `c` R=28ms > D=20ms by 8ms");
//! assert_eq!(admission.len(), 3);
//! ```
//!
//! # Checking the analysis
//!
//! [`sim`] is a discrete-event simulator of one core under each policy and model. Property
//! tests run thousands of random task sets through both: everything admitted must meet
//! every deadline in simulation, and for preemptive FP and EDF without jitter or
//! blocking, everything refused must miss one, with the analysed worst-case response
//! times equal to the simulated ones.

mod assign;
mod core_spec;
mod core_state;
mod edf;
mod fp;
mod load;
mod np;
mod online;
mod options;
mod partition;
mod rejection;
mod report;
pub mod sim;
mod task;

#[cfg(test)]
mod properties;
#[cfg(test)]
mod published;

pub use core_spec::{CoreSpec, Policy, PriorityAssignment};
pub use online::{Admission, Placement};
pub use options::{AdmissionOptions, DEFAULT_JOB_OVERHEAD, Heuristic};
pub use rejection::{CoreMiss, Miss, RejectReason, Rejection, Shortfall, Test};
pub use report::{CoreReport, Report, TaskReport};
pub use task::{MAX_BURST, SpecError, TaskId, TaskKind, TaskSpec};
