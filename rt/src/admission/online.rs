//! [`Admission`]: the guard in front of the RT cores, online or for a whole set.

use std::collections::HashMap;

use super::core_spec::{CoreSpec, PriorityAssignment};
use super::core_state::{CoreState, Offer};
use super::load::Load;
use super::options::AdmissionOptions;
use super::partition;
use super::rejection::{CoreMiss, RejectReason, Rejection, Shortfall};
use super::report::{CoreReport, Report, TaskReport};
use super::task::{SpecError, TaskId, TaskSpec};
use crate::time::Nanos;

/// Where an admitted task went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    /// The RT core's index.
    pub core: usize,
    /// The task's id, for [`Admission::release`].
    pub id: TaskId,
    /// Its priority rank on that core under fixed priority, 1 the highest; `None` under
    /// EDF. Admitting a task can move the ranks of the others: read them again with
    /// [`Admission::core_tasks`].
    pub rank: Option<u32>,
    /// Its worst-case response time under fixed priority, at the moment of admission;
    /// `None` under EDF.
    pub response_time: Option<Nanos>,
}

/// Admission control over a set of RT cores.
///
/// Tasks are admitted one at a time ([`Admission::try_admit`]) or as a whole set
/// ([`Admission::admit_all`]). Each admission re-analyses only the cores it tries, and
/// changes nothing unless every task on the chosen core still meets its deadline.
#[derive(Clone, Debug)]
pub struct Admission {
    cores: Vec<CoreState>,
    options: AdmissionOptions,
    next_id: u64,
    next_order: u64,
    placed: HashMap<TaskId, usize>,
}

impl Admission {
    /// Admission control over `cores` (index `i` is RT core `i`), with no task admitted.
    pub fn new(cores: Vec<CoreSpec>, options: AdmissionOptions) -> Admission {
        Admission {
            cores: cores.into_iter().map(CoreState::new).collect(),
            options,
            next_id: 0,
            next_order: 0,
            placed: HashMap::new(),
        }
    }

    /// The options in force.
    pub fn options(&self) -> AdmissionOptions {
        self.options
    }

    /// How many RT cores there are.
    pub fn core_count(&self) -> usize {
        self.cores.len()
    }

    /// What core `core` runs.
    pub fn core_spec(&self, core: usize) -> Option<&CoreSpec> {
        self.cores.get(core).map(|c| &c.spec)
    }

    /// Core `core`'s total utilisation, per-job overheads included (0 for no such core).
    pub fn core_utilization(&self, core: usize) -> f64 {
        self.cores.get(core).map_or(0.0, CoreState::utilization)
    }

    /// How many tasks are admitted, over all cores.
    pub fn len(&self) -> usize {
        self.placed.len()
    }

    /// Whether no task is admitted.
    pub fn is_empty(&self) -> bool {
        self.placed.is_empty()
    }

    /// Offers one task. On success it is admitted and its placement returned; on refusal
    /// nothing changes, and the rejection says which task would miss, by how much and
    /// under which test, on each core tried.
    pub fn try_admit(&mut self, spec: TaskSpec) -> Result<Placement, Rejection> {
        let order = self.next_order;
        self.next_order += 1;
        self.admit_in_order(spec, order)
    }

    fn admit_in_order(&mut self, spec: TaskSpec, order: u64) -> Result<Placement, Rejection> {
        let reject = |spec: TaskSpec, reason| {
            Err(Rejection {
                task: spec.name,
                reason,
            })
        };
        if let Err(e) = spec.validate() {
            return reject(spec, RejectReason::Invalid(e));
        }
        if self.cores.is_empty() {
            return reject(spec, RejectReason::NoCores);
        }
        let load = Load::of(&spec, self.options.job_overhead);
        let candidates = match spec.core {
            Some(core) if core >= self.cores.len() => {
                let cores = self.cores.len();
                return reject(spec, RejectReason::NoSuchCore { core, cores });
            }
            Some(core) => vec![core],
            None => {
                let spare: Vec<f64> = self.cores.iter().map(CoreState::spare).collect();
                partition::core_order(self.options.heuristic, &spare, load.utilization())
            }
        };
        if spec.priority.is_none()
            && let Some(&core) = candidates
                .iter()
                .find(|&&c| self.cores[c].spec.assignment() == Some(PriorityAssignment::Explicit))
        {
            let task = spec.name.clone();
            return reject(
                spec,
                RejectReason::Invalid(SpecError::MissingPriority { task, core }),
            );
        }
        let offer = Offer {
            spec: &spec,
            load,
            order,
            id: TaskId(self.next_id),
        };
        let mut refusals = Vec::with_capacity(candidates.len());
        for core in candidates {
            match self.cores[core].admit(&offer) {
                Ok(admitted) => {
                    self.next_id += 1;
                    self.placed.insert(offer.id, core);
                    return Ok(Placement {
                        core,
                        id: offer.id,
                        rank: admitted.rank,
                        response_time: admitted.response,
                    });
                }
                Err(refusal) => refusals.push((core, refusal)),
            }
        }
        // Refused everywhere: name the tasks, and make the reasons exact where the fast
        // path stopped early.
        let misses = refusals
            .into_iter()
            .map(|(core, refusal)| {
                let state = &self.cores[core];
                let inexact = matches!(refusal.shortfall, Shortfall::Response { exact: false, .. });
                let miss = match inexact.then(|| state.explain(&offer)).flatten() {
                    Some(better) => better,
                    None => state.miss(refusal, &spec),
                };
                CoreMiss { core, miss }
            })
            .collect();
        reject(spec, RejectReason::Unschedulable(misses))
    }

    /// Frees task `id`'s place and returns its declaration; `None` if it is not admitted.
    /// The other tasks on its core keep their relative order.
    pub fn release(&mut self, id: TaskId) -> Option<TaskSpec> {
        let core = self.placed.remove(&id)?;
        self.cores.get_mut(core)?.remove(id)
    }

    /// The tasks admitted to `core` with their current priority rank (1 the highest;
    /// `None` under EDF), highest priority first under fixed priority. Empty for no such
    /// core.
    pub fn core_tasks(
        &self,
        core: usize,
    ) -> impl Iterator<Item = (TaskId, &TaskSpec, Option<u32>)> + '_ {
        self.cores.get(core).into_iter().flat_map(|c| {
            c.entries()
                .iter()
                .enumerate()
                .map(move |(i, e)| (e.id, &e.spec, c.rank(i)))
        })
    }

    /// Where task `id` is: its core, its declaration and its current rank.
    pub fn task(&self, id: TaskId) -> Option<(usize, &TaskSpec, Option<u32>)> {
        let core = *self.placed.get(&id)?;
        let state = self.cores.get(core)?;
        let index = state.position(id)?;
        Some((core, &state.entries()[index].spec, state.rank(index)))
    }

    /// Task `id`'s current worst-case response time (fixed priority only).
    pub fn response_time(&self, id: TaskId) -> Option<Nanos> {
        let core = *self.placed.get(&id)?;
        let state = self.cores.get(core)?;
        state.response_time(state.position(id)?)
    }

    /// Offers a whole set: in decreasing density (pinned tasks first), ties in the order
    /// given, each to the core the heuristic picks. A refused task does not stop the
    /// rest. Ties between priorities follow the order given, not the offer order.
    pub fn admit_all(&mut self, specs: Vec<TaskSpec>) -> Report {
        self.admit_all_with(specs, |_, _| {})
    }

    /// [`Admission::admit_all`], calling `progress(done, total)` after each task.
    pub fn admit_all_with(
        &mut self,
        specs: Vec<TaskSpec>,
        mut progress: impl FnMut(usize, usize),
    ) -> Report {
        let overhead = self.options.job_overhead;
        let loads: Vec<Load> = specs.iter().map(|s| Load::of(s, overhead)).collect();
        let pinned: Vec<bool> = specs.iter().map(|s| s.core.is_some()).collect();
        let offer = partition::offer_order(&loads, &pinned);
        let base = self.next_order;
        self.next_order += specs.len() as u64;
        let total = specs.len();
        let mut slots: Vec<Option<TaskSpec>> = specs.into_iter().map(Some).collect();
        let mut rejected: Vec<(usize, Rejection)> = Vec::new();
        for (done, i) in offer.into_iter().enumerate() {
            if let Some(spec) = slots[i].take()
                && let Err(r) = self.admit_in_order(spec, base + i as u64)
            {
                rejected.push((i, r));
            }
            progress(done + 1, total);
        }
        rejected.sort_by_key(|&(i, _)| i);
        let mut report = self.report();
        report.rejected = rejected.into_iter().map(|(_, r)| r).collect();
        report
    }

    /// The current state of every core, with response times; no rejections.
    pub fn report(&self) -> Report {
        let cores = self
            .cores
            .iter()
            .enumerate()
            .map(|(core, state)| {
                let mut tasks: Vec<(u64, TaskReport)> = state
                    .entries()
                    .iter()
                    .zip(state.loads())
                    .enumerate()
                    .map(|(i, (e, l))| {
                        (
                            e.order,
                            TaskReport {
                                id: e.id,
                                name: e.spec.name.clone(),
                                rank: state.rank(i),
                                utilization: l.utilization(),
                                wcet: e.spec.wcet,
                                period: e.spec.period,
                                deadline: e.spec.deadline,
                                response_time: state.response_time(i),
                            },
                        )
                    })
                    .collect();
                if state.spec.assignment().is_none() {
                    tasks.sort_by_key(|&(order, _)| order);
                }
                CoreReport {
                    core,
                    spec: state.spec,
                    utilization: state.utilization(),
                    tasks: tasks.into_iter().map(|(_, t)| t).collect(),
                }
            })
            .collect();
        Report {
            cores,
            rejected: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Heuristic, Policy, Test};
    use super::*;

    fn ms(n: u64) -> Nanos {
        Nanos::ms(n)
    }

    fn fp(a: PriorityAssignment, cores: usize) -> Admission {
        Admission::new(vec![CoreSpec::fp(a); cores], AdmissionOptions::exact())
    }

    fn ranks(a: &Admission, core: usize) -> Vec<(String, Option<u32>)> {
        a.core_tasks(core)
            .map(|(_, s, r)| (s.name.clone(), r))
            .collect()
    }

    #[test]
    fn ranks_move_when_a_higher_priority_task_arrives() {
        let mut a = fp(PriorityAssignment::Rm, 1);
        let slow = a
            .try_admit(TaskSpec::periodic("slow", ms(20), ms(5)))
            .unwrap();
        assert_eq!((slow.core, slow.rank), (0, Some(1)));
        assert_eq!(slow.response_time, Some(ms(5)));
        let fast = a
            .try_admit(TaskSpec::periodic("fast", ms(7), ms(3)))
            .unwrap();
        assert_eq!(fast.rank, Some(1));
        assert_eq!(
            ranks(&a, 0),
            [("fast".into(), Some(1)), ("slow".into(), Some(2))]
        );
        // slow now waits for two jobs of fast: 5 + 2·3.
        assert_eq!(a.response_time(slow.id), Some(ms(11)));
        assert_eq!(
            a.task(slow.id).map(|(c, s, r)| (c, s.name.as_str(), r)),
            Some((0, "slow", Some(2)))
        );
    }

    #[test]
    fn release_frees_the_place_and_recomputes_the_rest() {
        let mut a = fp(PriorityAssignment::Rm, 1);
        let x = a.try_admit(TaskSpec::periodic("x", ms(4), ms(2))).unwrap();
        let y = a.try_admit(TaskSpec::periodic("y", ms(8), ms(3))).unwrap();
        assert_eq!(a.response_time(y.id), Some(ms(7)));
        assert!(a.try_admit(TaskSpec::periodic("z", ms(8), ms(2))).is_err());
        assert_eq!(a.release(x.id).map(|s| s.name), Some("x".to_string()));
        assert_eq!(a.release(x.id), None);
        assert_eq!(a.response_time(y.id), Some(ms(3)));
        assert_eq!(a.len(), 1);
        let z = a.try_admit(TaskSpec::periodic("z", ms(8), ms(2))).unwrap();
        assert_eq!(z.response_time, Some(ms(5)));
        assert!(z.id > y.id, "ids are never reused");
    }

    #[test]
    fn a_refusal_can_name_an_admitted_victim_with_its_exact_response_time() {
        let mut a = fp(PriorityAssignment::Dm, 1);
        a.try_admit(TaskSpec::periodic("brake", ms(50), ms(30)))
            .unwrap();
        // hog (22 every 100ms, due in 25ms) ranks above brake under DM and pushes it
        // to 30 + 22 = 52ms, past its 50ms deadline, though U = 0.82.
        let r = a
            .try_admit(TaskSpec::periodic("hog", ms(100), ms(22)).with_deadline(ms(25)))
            .unwrap_err();
        assert_eq!(r.task, "hog");
        let m = &r.misses()[0];
        assert_eq!(m.miss.test, Test::FpRta);
        assert_eq!(m.miss.task, "brake");
        assert_eq!(m.miss.response_time(), Some(ms(52)));
        assert_eq!(
            r.reason_text(),
            "fp-rta: task `brake` R=52ms > D=50ms by 2ms"
        );
        assert_eq!(r.response_time(), Some(ms(52)));
        assert_eq!(a.len(), 1);
    }

    #[test]
    fn invalid_and_misplaced_tasks_are_refused_without_analysis() {
        let mut a = fp(PriorityAssignment::Explicit, 2);
        let r = a
            .try_admit(TaskSpec::periodic("x", ms(10), ms(11)))
            .unwrap_err();
        assert!(matches!(
            r.reason,
            RejectReason::Invalid(SpecError::WcetExceedsDeadline { .. })
        ));
        let r = a
            .try_admit(
                TaskSpec::periodic("x", ms(10), ms(1))
                    .with_priority(1)
                    .pinned(2),
            )
            .unwrap_err();
        assert_eq!(r.reason, RejectReason::NoSuchCore { core: 2, cores: 2 });
        let r = a
            .try_admit(TaskSpec::periodic("x", ms(10), ms(1)))
            .unwrap_err();
        assert!(matches!(
            r.reason,
            RejectReason::Invalid(SpecError::MissingPriority { core: 0, .. })
        ));
        let mut none = Admission::new(vec![], AdmissionOptions::exact());
        let r = none
            .try_admit(TaskSpec::periodic("x", ms(10), ms(1)))
            .unwrap_err();
        assert_eq!(r.reason, RejectReason::NoCores);
        assert!(a.is_empty());
    }

    #[test]
    fn explicit_priorities_and_pins_are_obeyed() {
        let mut a = fp(PriorityAssignment::Explicit, 2);
        let low = a
            .try_admit(
                TaskSpec::periodic("low", ms(5), ms(1))
                    .with_priority(9)
                    .pinned(1),
            )
            .unwrap();
        assert_eq!(low.core, 1);
        let high = a
            .try_admit(
                TaskSpec::periodic("high", ms(50), ms(2))
                    .with_priority(1)
                    .pinned(1),
            )
            .unwrap();
        assert_eq!(high.rank, Some(1));
        let tie = a
            .try_admit(
                TaskSpec::periodic("tie", ms(50), ms(2))
                    .with_priority(1)
                    .pinned(1),
            )
            .unwrap();
        assert_eq!(
            tie.rank,
            Some(2),
            "equal priority: the earlier ranks higher"
        );
        assert_eq!(a.response_time(low.id), Some(ms(5)));
        assert_eq!(a.core_tasks(0).count(), 0);
    }

    #[test]
    fn caps_and_the_deadline_bandwidth_bound_a_core() {
        let core = CoreSpec::edf().with_cap(0.9).with_dl_bandwidth(0.5);
        let mut a = Admission::new(vec![core], AdmissionOptions::exact());
        a.try_admit(TaskSpec::periodic("a", ms(10), ms(4))).unwrap();
        let r = a
            .try_admit(TaskSpec::periodic("b", ms(10), ms(2)))
            .unwrap_err();
        assert_eq!(r.misses()[0].miss.test, Test::DeadlineBandwidth);
        // The bandwidth does not apply to the cooperative model; the cap does.
        let core = core.non_preemptive();
        let mut a = Admission::new(vec![core], AdmissionOptions::exact());
        a.try_admit(TaskSpec::periodic("a", ms(10), ms(4))).unwrap();
        a.try_admit(TaskSpec::periodic("b", ms(10), ms(4))).unwrap();
        let r = a
            .try_admit(TaskSpec::periodic("c", ms(10), ms(2)))
            .unwrap_err();
        assert_eq!(r.misses()[0].miss.test, Test::UtilizationCap);
        // A cap that is not a number refuses everything.
        let mut a = Admission::new(
            vec![CoreSpec::edf().with_cap(f64::NAN)],
            AdmissionOptions::exact(),
        );
        assert!(a.try_admit(TaskSpec::periodic("a", ms(10), ms(1))).is_err());
    }

    #[test]
    fn overhead_is_charged_per_job() {
        let options = AdmissionOptions::exact().with_job_overhead(ms(1));
        let mut a = Admission::new(vec![CoreSpec::fp(PriorityAssignment::Rm)], options);
        let p = a.try_admit(TaskSpec::periodic("a", ms(4), ms(2))).unwrap();
        assert_eq!(p.response_time, Some(ms(3)));
        assert!((a.core_utilization(0) - 0.75).abs() < 1e-12);
        // 2 + 1 of 4 plus 1 + 1 of 8 is 1.0: admitted; one more nanosecond is not.
        a.try_admit(TaskSpec::periodic("b", ms(8), ms(1))).unwrap();
        assert!(
            a.try_admit(TaskSpec::periodic("c", ms(100), Nanos(1)))
                .is_err()
        );
    }

    #[test]
    fn a_burst_is_charged_as_its_whole_window() {
        // A burst of 3 jobs of 1 ms (plus 1 ms overhead each) per 20 ms is analysed as
        // 6 ms per 20 ms, preemptively and under EDF; under fixed priority a task below
        // it waits for the whole burst.
        let options = AdmissionOptions::exact().with_job_overhead(ms(1));
        for core in [CoreSpec::fp(PriorityAssignment::Dm), CoreSpec::edf()] {
            let mut a = Admission::new(vec![core], options);
            let p = a
                .try_admit(TaskSpec::sporadic("rx", ms(20), ms(1)).with_burst(3))
                .unwrap();
            assert!((a.core_utilization(0) - 0.3).abs() < 1e-12);
            if core.assignment().is_some() {
                assert_eq!(p.response_time, Some(ms(6)));
                let low = a
                    .try_admit(TaskSpec::periodic("low", ms(40), ms(2)))
                    .unwrap();
                assert_eq!(low.response_time, Some(ms(9)));
            }
            // With `low` (0.075 under FP) or not: one more millisecond does not fit.
            let spare = if core.assignment().is_some() { 25 } else { 28 };
            assert!(
                a.try_admit(TaskSpec::periodic("big", ms(40), ms(spare)))
                    .is_err()
            );
            a.try_admit(TaskSpec::periodic("fits", ms(40), ms(spare - 1)))
                .unwrap();
        }
    }

    #[test]
    fn heuristics_choose_cores_by_spare_capacity() {
        let place = |h: Heuristic| {
            let options = AdmissionOptions::exact().with_heuristic(h);
            let mut a = Admission::new(vec![CoreSpec::edf(); 3], options);
            a.try_admit(TaskSpec::periodic("big", ms(10), ms(6)).pinned(0))
                .unwrap();
            a.try_admit(TaskSpec::periodic("mid", ms(10), ms(3)).pinned(1))
                .unwrap();
            a.try_admit(TaskSpec::periodic("new", ms(10), ms(2)))
                .unwrap()
                .core
        };
        assert_eq!(place(Heuristic::FirstFit), 0);
        assert_eq!(place(Heuristic::BestFit), 0);
        assert_eq!(place(Heuristic::WorstFit), 2);
    }

    #[test]
    fn audsley_reorders_the_core_online() {
        let mut a = fp(PriorityAssignment::Audsley, 1);
        // b has the shorter deadline but a has jitter: a must rank first.
        let b = a
            .try_admit(TaskSpec::periodic("b", ms(10), ms(2)).with_deadline(ms(3)))
            .unwrap();
        assert_eq!(b.rank, Some(1));
        let p = a
            .try_admit(
                TaskSpec::periodic("a", ms(10), ms(1))
                    .with_deadline(ms(4))
                    .with_jitter(ms(3)),
            )
            .unwrap();
        assert_eq!(p.rank, Some(1));
        assert_eq!(p.response_time, Some(ms(4)));
        assert_eq!(ranks(&a, 0), [("a".into(), Some(1)), ("b".into(), Some(2))]);
        assert_eq!(a.response_time(b.id), Some(ms(3)));
        // Deadline monotonic refuses the same pair.
        let mut dm = fp(PriorityAssignment::Dm, 1);
        dm.try_admit(TaskSpec::periodic("b", ms(10), ms(2)).with_deadline(ms(3)))
            .unwrap();
        let r = dm
            .try_admit(
                TaskSpec::periodic("a", ms(10), ms(1))
                    .with_deadline(ms(4))
                    .with_jitter(ms(3)),
            )
            .unwrap_err();
        assert_eq!(r.reason_text(), "fp-rta: task `a` R=6ms > D=4ms by 2ms");
    }

    #[test]
    fn the_cooperative_model_counts_non_preemptive_blocking() {
        let offer = |a: &mut Admission| {
            a.try_admit(TaskSpec::periodic("short", ms(4), ms(1)))
                .unwrap();
            a.try_admit(TaskSpec::periodic("long", ms(20), ms(6)))
        };
        let mut pre = fp(PriorityAssignment::Rm, 1);
        assert!(offer(&mut pre).is_ok());
        let mut np = Admission::new(
            vec![CoreSpec::fp(PriorityAssignment::Rm).non_preemptive()],
            AdmissionOptions::exact(),
        );
        let r = offer(&mut np).unwrap_err();
        assert_eq!(
            r.reason_text(),
            "fp-np-rta: task `short` R=7ms > D=4ms by 3ms"
        );
        let mut np_edf = Admission::new(
            vec![CoreSpec::edf().non_preemptive()],
            AdmissionOptions::exact(),
        );
        let r = offer(&mut np_edf).unwrap_err();
        assert_eq!(r.misses()[0].miss.test, Test::EdfNpDemand);
        assert_eq!(
            np.core_spec(0).map(|c| c.policy),
            Some(Policy::Fp(PriorityAssignment::Rm))
        );
    }

    #[test]
    fn admit_all_reports_rejections_in_file_order_and_keeps_going() {
        let mut a = fp(PriorityAssignment::Rm, 1);
        // Offered densest first: dense (0.9), a (0.2, refused), b (0.1, fits exactly).
        let report = a.admit_all(vec![
            TaskSpec::periodic("a", ms(10), ms(2)),
            TaskSpec::periodic("dense", ms(10), ms(9)),
            TaskSpec::periodic("b", ms(20), ms(2)),
            TaskSpec::periodic("bad", ms(10), ms(0)),
        ]);
        let refused: Vec<&str> = report.rejected.iter().map(|r| r.task.as_str()).collect();
        assert_eq!(refused, ["a", "bad"]);
        assert_eq!(report.cores[0].tasks[1].response_time, Some(ms(20)));
        assert_eq!(report.admitted(), 2);
        assert!(!report.schedulable());
        let mut seen = Vec::new();
        let mut a = fp(PriorityAssignment::Rm, 1);
        a.admit_all_with(
            vec![TaskSpec::periodic("x", ms(10), ms(1)); 3],
            |done, total| seen.push((done, total)),
        );
        assert_eq!(seen, [(1, 3), (2, 3), (3, 3)]);
    }

    #[test]
    fn edf_placements_have_no_rank_or_response_time() {
        let mut a = Admission::new(vec![CoreSpec::edf()], AdmissionOptions::exact());
        let p = a.try_admit(TaskSpec::periodic("x", ms(10), ms(1))).unwrap();
        assert_eq!((p.rank, p.response_time), (None, None));
        assert_eq!(a.response_time(p.id), None);
        assert_eq!(ranks(&a, 0), [("x".into(), None)]);
        assert_eq!(a.core_tasks(7).count(), 0);
    }
}
