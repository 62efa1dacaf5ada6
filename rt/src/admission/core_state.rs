//! The tasks admitted to one core, and the incremental analysis that guards it.
//!
//! Offering a task re-analyses this core only, and commits nothing unless every task on
//! it (the new one and the admitted ones) still meets its deadline.
//!
//! For preemptive fixed priority with a fixed order (RM, DM, explicit) the work is
//! incremental. The tasks are kept in priority order; a new task of rank `r` cannot
//! affect the tasks above it, so only those below are examined. Each task keeps a lower
//! bound on its busy window (exact after a full analysis), and per-rank prefix sums of
//! cost, utilisation and linear interference are kept, so that most decisions need no
//! fixed-point iteration:
//!
//! - refusal without iterating: a lower task's window grows by at least the new task's
//!   interference on its old window; the new task's window is at least the sum of the
//!   costs above it, and at least any higher task's window plus its own cost;
//! - acceptance without iterating: Liu & Layland or the hyperbolic bound for
//!   rate-monotonic implicit-deadline sets; otherwise a per-task linear upper bound;
//! - only when neither settles it, exact response-time analysis started from the lower
//!   bound.
//!
//! EDF, non-preemptive fixed priority and Audsley's assignment re-run their full test
//! over the core's tasks plus the new one.

use super::assign;
use super::core_spec::{CoreSpec, Policy, PriorityAssignment};
use super::edf::{self, DemandFail};
use super::fp::{self, Fixpoint};
use super::load::{EXPLAIN_STEP_LIMIT, Load, STEP_LIMIT, UtilVsOne, clamp64, utilization_vs_one};
use super::np;
use super::rejection::{Miss, Shortfall, Test};
use super::task::{TaskId, TaskSpec};
use crate::time::Nanos;

/// An admitted task.
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    pub id: TaskId,
    pub spec: TaskSpec,
    /// Offer order: breaks ties, the smaller ranking higher.
    pub order: u64,
    /// Sort key of a fixed assignment (smaller ranks higher).
    pub key: u64,
}

/// What admitting a task to a core yielded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Admitted {
    pub rank: Option<u32>,
    pub response: Option<Nanos>,
}

/// One core's admitted tasks and analysis caches.
///
/// Invariants: `entries`, `loads` and `lo` run in parallel; for fixed priority they are
/// in priority order (highest first), for EDF in admission order. `lo[i]` never exceeds
/// task `i`'s busy window (`R − J`). The prefix vectors have `len + 1` entries and hold,
/// at `k`, the sum (or maximum) over the tasks above rank `k`; `hp_window` is the
/// largest `lo` among the tasks above `k` that have no blocking.
#[derive(Clone, Debug)]
pub(crate) struct CoreState {
    pub spec: CoreSpec,
    entries: Vec<Entry>,
    loads: Vec<Load>,
    lo: Vec<u64>,
    util: f64,
    product: f64,
    all_simple: bool,
    rm_ordered: bool,
    hp_cost: Vec<u128>,
    hp_lin: Vec<f64>,
    hp_util: Vec<f64>,
    hp_window: Vec<u64>,
    scratch: Vec<u64>,
}

fn late(test: Test, task: &str, load: &Load, window: u64, exact: bool) -> Miss {
    Miss {
        test,
        task: task.to_string(),
        shortfall: Shortfall::Response {
            response: Nanos(window.saturating_add(load.jitter)),
            deadline: Nanos(load.deadline),
            exact,
        },
    }
}

/// Whether a utilisation is within a limit (1e-9 absorbs float rounding). False when
/// the limit is not a number, so such a cap refuses everything.
fn within(total: f64, limit: f64) -> bool {
    total <= limit + 1e-9
}

fn gave_up(test: Test, task: &str) -> Miss {
    Miss {
        test,
        task: task.to_string(),
        shortfall: Shortfall::GaveUp { steps: STEP_LIMIT },
    }
}

/// A miss from a response-time search that did not find `R ≤ D`.
fn response_miss(test: Test, task: &str, load: &Load, found: Fixpoint) -> Miss {
    match found {
        Fixpoint::Found(r) | Fixpoint::Above(r) => Miss {
            test,
            task: task.to_string(),
            shortfall: Shortfall::Response {
                response: Nanos(r),
                deadline: Nanos(load.deadline),
                exact: matches!(found, Fixpoint::Found(_)),
            },
        },
        Fixpoint::GaveUp => gave_up(test, task),
    }
}

impl CoreState {
    pub(crate) fn new(spec: CoreSpec) -> CoreState {
        let mut core = CoreState {
            spec,
            entries: Vec::new(),
            loads: Vec::new(),
            lo: Vec::new(),
            util: 0.0,
            product: 1.0,
            all_simple: true,
            rm_ordered: true,
            hp_cost: Vec::new(),
            hp_lin: Vec::new(),
            hp_util: Vec::new(),
            hp_window: Vec::new(),
            scratch: Vec::new(),
        };
        core.refresh();
        core
    }

    pub(crate) fn entries(&self) -> &[Entry] {
        &self.entries
    }

    pub(crate) fn loads(&self) -> &[Load] {
        &self.loads
    }

    /// Total utilisation, with overheads.
    pub(crate) fn utilization(&self) -> f64 {
        self.util
    }

    /// Utilisation the core may still take: its cap (and bandwidth) minus what it has.
    pub(crate) fn spare(&self) -> f64 {
        let mut limit = self.spec.utilization_cap;
        if let Some(bw) = self.spec.applicable_bandwidth() {
            limit = limit.min(bw);
        }
        limit - self.util
    }

    /// The 1-based priority rank of the task at `index` (fixed priority only).
    pub(crate) fn rank(&self, index: usize) -> Option<u32> {
        match self.spec.policy {
            Policy::Fp(_) => u32::try_from(index + 1).ok(),
            Policy::Edf => None,
        }
    }

    pub(crate) fn position(&self, id: TaskId) -> Option<usize> {
        self.entries.iter().position(|e| e.id == id)
    }

    /// The test named when a task cannot meet its deadline on this core.
    fn main_test(&self) -> Test {
        match (self.spec.policy, self.spec.preemptive) {
            (Policy::Edf, true) => Test::EdfQpa,
            (Policy::Edf, false) => Test::EdfNpDemand,
            (Policy::Fp(_), true) => Test::FpRta,
            (Policy::Fp(_), false) => Test::FpNpRta,
        }
    }

    /// Offers a task; on success it is admitted with id `id`, otherwise nothing changes.
    pub(crate) fn admit(
        &mut self,
        spec: &TaskSpec,
        load: Load,
        order: u64,
        id: TaskId,
    ) -> Result<Admitted, Miss> {
        let alone = u128::from(load.jitter) + u128::from(load.cost);
        if alone > u128::from(load.deadline) {
            return Err(late(self.main_test(), &spec.name, &load, load.cost, false));
        }
        let total = self.util + load.utilization();
        let cap = self.spec.utilization_cap;
        if !within(total, cap) {
            return Err(Miss {
                test: Test::UtilizationCap,
                task: spec.name.clone(),
                shortfall: Shortfall::Utilization { total, limit: cap },
            });
        }
        if let Some(bw) = self.spec.applicable_bandwidth()
            && !within(total, bw)
        {
            return Err(Miss {
                test: Test::DeadlineBandwidth,
                task: spec.name.clone(),
                shortfall: Shortfall::Utilization { total, limit: bw },
            });
        }
        let entry = Entry {
            id,
            spec: spec.clone(),
            order,
            key: 0,
        };
        match self.spec.policy {
            Policy::Edf => self.admit_edf(entry, load),
            Policy::Fp(PriorityAssignment::Audsley) => self.admit_audsley(entry, load),
            Policy::Fp(a) => {
                let entry = Entry {
                    key: assign::fixed_key(a, spec),
                    ..entry
                };
                if self.spec.preemptive {
                    self.admit_fixed(entry, load)
                } else {
                    self.admit_np_fixed(entry, load)
                }
            }
        }
    }

    /// The name of the task at `index` of a candidate list that has the new task at
    /// `new_at` and the admitted ones around it in order.
    fn name_in_candidates<'a>(&'a self, index: usize, new_at: usize, new: &'a Entry) -> &'a str {
        match index.cmp(&new_at) {
            std::cmp::Ordering::Equal => &new.spec.name,
            std::cmp::Ordering::Less => &self.entries[index].spec.name,
            std::cmp::Ordering::Greater => &self.entries[index - 1].spec.name,
        }
    }

    fn admit_edf(&mut self, entry: Entry, load: Load) -> Result<Admitted, Miss> {
        self.loads.push(load);
        let n = self.loads.len();
        match edf_verdict(&self.loads, self.spec.preemptive) {
            Ok(()) => {
                self.entries.push(entry);
                self.lo.push(0);
                self.refresh();
                Ok(Admitted {
                    rank: None,
                    response: None,
                })
            }
            Err((test, index, shortfall)) => {
                let task = self.name_in_candidates(index, n - 1, &entry).to_string();
                self.loads.pop();
                Err(Miss {
                    test,
                    task,
                    shortfall,
                })
            }
        }
    }

    /// Where a new task with `entry`'s key and order goes in the priority order.
    fn insertion_point(&self, entry: &Entry) -> usize {
        self.entries
            .partition_point(|e| (e.key, e.order) < (entry.key, entry.order))
    }

    /// Whether the core with the new task at rank `r` is a rate-monotonic set with
    /// implicit deadlines and no jitter or blocking (where the utilisation bounds hold).
    fn rate_monotonic_with(&self, r: usize, load: &Load) -> bool {
        self.all_simple
            && self.rm_ordered
            && load.is_simple()
            && (r == 0 || self.loads[r - 1].period <= load.period)
            && (r == self.loads.len() || load.period <= self.loads[r].period)
    }

    fn admit_fixed(&mut self, entry: Entry, load: Load) -> Result<Admitted, Miss> {
        let n = self.loads.len();
        let r = self.insertion_point(&entry);
        let u_new = load.utilization();
        let total = self.util + u_new;
        if total > 1.0 + 1e-9 {
            return Err(Miss {
                test: Test::FpRta,
                task: entry.spec.name,
                shortfall: Shortfall::Utilization { total, limit: 1.0 },
            });
        }
        // The new task's window is at least its own cost and blocking plus every cost
        // above it, and at least the window of any higher task without blocking plus
        // its own cost and blocking (its equation is that task's plus a constant).
        let own = u128::from(load.cost) + u128::from(load.blocking);
        let lower_new = clamp64(own + self.hp_cost[r].max(u128::from(self.hp_window[r])));
        let window_limit = load.deadline - load.jitter;
        if lower_new > window_limit {
            return Err(late(Test::FpRta, &entry.spec.name, &load, lower_new, false));
        }
        let fast = self.rate_monotonic_with(r, &load)
            && (fp::liu_layland_accepts(n + 1, total)
                || fp::hyperbolic_accepts(self.product * (1.0 + u_new)));

        // Each lower task's window grows by at least the new task's interference on its
        // old window: w' = f(w') + g(w') ≥ f(w) + g(w) = w + g(w).
        let CoreState {
            entries,
            loads,
            lo,
            scratch,
            hp_lin,
            hp_util,
            ..
        } = self;
        scratch.clear();
        for k in r..n {
            let l = &loads[k];
            let grown = clamp64(u128::from(lo[k]) + load.rbf(lo[k]));
            if !fast && grown > l.deadline - l.jitter {
                return Err(late(Test::FpRta, &entries[k].spec.name, l, grown, false));
            }
            scratch.push(grown);
        }

        // The new task, exactly (its response time is part of the placement).
        let mut budget = STEP_LIMIT;
        let above = &loads[..r];
        let w_new = match fp::least_fixpoint(own, lower_new, window_limit, &mut budget, |w| {
            fp::interference(above, w)
        }) {
            Fixpoint::Found(w) => w,
            Fixpoint::Above(w) => {
                return Err(late(Test::FpRta, &entry.spec.name, &load, w, false));
            }
            Fixpoint::GaveUp => return Err(gave_up(Test::FpRta, &entry.spec.name)),
        };

        if !fast {
            let lin_new = load.cost as f64 + load.jitter as f64 * u_new;
            for k in r..n {
                let l = &loads[k];
                let limit = l.deadline - l.jitter;
                let own_k = l.cost as f64 + l.blocking as f64;
                if fp::linear_bound_fits(own_k, hp_lin[k] + lin_new, hp_util[k] + u_new, limit) {
                    continue;
                }
                let hp = &loads[..k];
                let mut budget = STEP_LIMIT;
                let found = fp::least_fixpoint(
                    u128::from(l.cost) + u128::from(l.blocking),
                    scratch[k - r],
                    limit,
                    &mut budget,
                    |w| fp::interference(hp, w) + load.rbf(w),
                );
                match found {
                    Fixpoint::Found(w) => scratch[k - r] = w,
                    Fixpoint::Above(w) => {
                        return Err(late(Test::FpRta, &entries[k].spec.name, l, w, false));
                    }
                    Fixpoint::GaveUp => return Err(gave_up(Test::FpRta, &entries[k].spec.name)),
                }
            }
        }

        // Commit.
        entries.insert(r, entry);
        loads.insert(r, load);
        lo.insert(r, w_new);
        for (k, &w) in scratch.iter().enumerate() {
            lo[r + 1 + k] = w;
        }
        self.refresh();
        Ok(Admitted {
            rank: self.rank(r),
            response: Some(Nanos(w_new + load.jitter)),
        })
    }

    fn admit_np_fixed(&mut self, entry: Entry, load: Load) -> Result<Admitted, Miss> {
        let r = self.insertion_point(&entry);
        self.loads.insert(r, load);
        match np::fp_analyse(&self.loads) {
            Ok(responses) => {
                self.entries.insert(r, entry);
                self.lo.insert(r, 0);
                self.refresh();
                Ok(Admitted {
                    rank: self.rank(r),
                    response: Some(Nanos(responses[r])),
                })
            }
            Err((i, found)) => {
                let l = self.loads[i];
                let task = self.name_in_candidates(i, r, &entry).to_string();
                self.loads.remove(r);
                Err(response_miss(Test::FpNpRta, &task, &l, found))
            }
        }
    }

    /// The candidate tasks' offer order, with the new task (last in `loads`) included.
    fn offer_with(&self, new_order: u64) -> Vec<usize> {
        let n = self.entries.len();
        let mut offer: Vec<usize> = (0..=n).collect();
        offer.sort_by_key(|&i| {
            if i == n {
                new_order
            } else {
                self.entries[i].order
            }
        });
        offer
    }

    fn admit_audsley(&mut self, entry: Entry, load: Load) -> Result<Admitted, Miss> {
        let offer = self.offer_with(entry.order);
        self.loads.push(load);
        let n = self.loads.len();
        let preemptive = self.spec.preemptive;
        let loads = &self.loads;
        let result = assign::audsley(&offer, |c, above, below| {
            audsley_test(
                loads,
                c,
                above,
                below,
                preemptive,
                loads[c].deadline,
                STEP_LIMIT,
            )
        });
        match result {
            Ok(placed) => {
                let mut old: Vec<Option<Entry>> = std::mem::take(&mut self.entries)
                    .into_iter()
                    .map(Some)
                    .chain(std::iter::once(Some(entry)))
                    .collect();
                let old_loads = std::mem::take(&mut self.loads);
                let mut rank = 0;
                let mut response = 0;
                self.lo.clear();
                for (pos, &(i, r)) in placed.iter().enumerate() {
                    if let Some(e) = old[i].take() {
                        self.entries.push(e);
                    }
                    self.loads.push(old_loads[i]);
                    let window = if preemptive {
                        r.saturating_sub(old_loads[i].jitter)
                    } else {
                        0
                    };
                    self.lo.push(window);
                    if i == n - 1 {
                        rank = pos;
                        response = r;
                    }
                }
                self.refresh();
                Ok(Admitted {
                    rank: self.rank(rank),
                    response: Some(Nanos(response)),
                })
            }
            Err(fail) => {
                let (c, shortfall) = fail.closest;
                let task = self.name_in_candidates(c, n - 1, &entry).to_string();
                self.loads.pop();
                Err(Miss {
                    test: Test::FpAudsley,
                    task,
                    shortfall,
                })
            }
        }
    }

    /// Re-runs the failed analysis of `spec` on this core, searching past deadlines, so
    /// that a refusal can give exact response times. `None` when there is nothing to
    /// add (EDF's demand figures are already exact) or the search gave up.
    pub(crate) fn explain(&self, spec: &TaskSpec, load: Load, order: u64) -> Option<Miss> {
        let entry = Entry {
            id: TaskId(u64::MAX),
            spec: spec.clone(),
            order,
            key: self
                .spec
                .assignment()
                .map_or(0, |a| assign::fixed_key(a, spec)),
        };
        match self.spec.policy {
            Policy::Edf => None,
            Policy::Fp(PriorityAssignment::Audsley) => {
                let offer = self.offer_with(order);
                let mut loads = self.loads.clone();
                loads.push(load);
                let n = loads.len();
                let preemptive = self.spec.preemptive;
                let fail = assign::audsley(&offer, |c, above, below| {
                    audsley_test(
                        &loads,
                        c,
                        above,
                        below,
                        preemptive,
                        loads[c].deadline,
                        STEP_LIMIT,
                    )
                })
                .err()?;
                // Above full utilisation no response time is finite: keep the first miss.
                let u: f64 = fail.remaining.iter().map(|&i| loads[i].utilization()).sum();
                if u > 1.0 + 1e-9 {
                    return None;
                }
                // Every remaining task misses at this level; find how far each is off.
                let mut best: Option<(f64, usize, u64)> = None;
                for &c in &fail.remaining {
                    let above: Vec<usize> =
                        fail.remaining.iter().copied().filter(|&t| t != c).collect();
                    let r = audsley_test(
                        &loads,
                        c,
                        &above,
                        &fail.below,
                        preemptive,
                        u64::MAX,
                        EXPLAIN_STEP_LIMIT,
                    )
                    .ok()?;
                    let d = loads[c].deadline;
                    let lateness = r.saturating_sub(d) as f64 / d.max(1) as f64;
                    if best.is_none_or(|(b, _, _)| lateness < b) {
                        best = Some((lateness, c, r));
                    }
                }
                let (_, c, r) = best?;
                Some(Miss {
                    test: Test::FpAudsley,
                    task: self.name_in_candidates(c, n - 1, &entry).to_string(),
                    shortfall: Shortfall::Response {
                        response: Nanos(r),
                        deadline: Nanos(loads[c].deadline),
                        exact: true,
                    },
                })
            }
            Policy::Fp(_) => {
                let r = self.insertion_point(&entry);
                let mut order = self.loads.clone();
                order.insert(r, load);
                let lp_costs = np::lower_priority_costs(&order);
                let mut u_hep = 0.0;
                for (i, task) in order.iter().enumerate() {
                    u_hep += task.utilization();
                    if u_hep > 1.0 + 1e-9 {
                        return None;
                    }
                    let mut budget = EXPLAIN_STEP_LIMIT;
                    let found = if self.spec.preemptive {
                        fp::response_time(task, &order[..i], None, 0, u64::MAX, &mut budget)
                    } else {
                        np::fp_response_time(task, &order[..i], lp_costs[i], u64::MAX, &mut budget)
                    };
                    match found {
                        Fixpoint::Found(resp) if resp > task.deadline => {
                            return Some(late(
                                self.main_test(),
                                self.name_in_candidates(i, r, &entry),
                                task,
                                resp - task.jitter,
                                true,
                            ));
                        }
                        Fixpoint::Found(_) => {}
                        Fixpoint::Above(_) | Fixpoint::GaveUp => return None,
                    }
                }
                None
            }
        }
    }

    /// The worst-case response time of the task at `index` (fixed priority only).
    pub(crate) fn response_time(&self, index: usize) -> Option<Nanos> {
        let task = self.loads.get(index)?;
        let mut budget = STEP_LIMIT;
        let found = match (self.spec.policy, self.spec.preemptive) {
            (Policy::Edf, _) => return None,
            (Policy::Fp(_), true) => fp::response_time(
                task,
                &self.loads[..index],
                None,
                self.lo[index],
                task.deadline,
                &mut budget,
            ),
            (Policy::Fp(_), false) => {
                let lp = self.loads[index + 1..]
                    .iter()
                    .map(|l| l.cost)
                    .max()
                    .unwrap_or(0);
                np::fp_response_time(task, &self.loads[..index], lp, task.deadline, &mut budget)
            }
        };
        match found {
            Fixpoint::Found(r) => Some(Nanos(r)),
            _ => None,
        }
    }

    /// Removes task `id`; the others keep their relative order.
    pub(crate) fn remove(&mut self, id: TaskId) -> Option<TaskSpec> {
        let index = self.position(id)?;
        let entry = self.entries.remove(index);
        self.loads.remove(index);
        self.lo.remove(index);
        // The windows below shrank: the old bounds may now be too high.
        if matches!(self.spec.policy, Policy::Fp(_)) && self.spec.preemptive {
            for k in index..self.loads.len() {
                let task = self.loads[k];
                let hp = &self.loads[..k];
                let floor = clamp64(
                    u128::from(task.cost)
                        + u128::from(task.blocking)
                        + hp.iter().map(|l| u128::from(l.cost)).sum::<u128>(),
                );
                let mut budget = STEP_LIMIT;
                self.lo[k] = match fp::response_time(&task, hp, None, 0, task.deadline, &mut budget)
                {
                    Fixpoint::Found(r) => r - task.jitter,
                    _ => floor,
                };
            }
        }
        self.refresh();
        Some(entry.spec)
    }

    /// Rebuilds the sums and flags from the task list.
    fn refresh(&mut self) {
        let n = self.loads.len();
        self.util = self.loads.iter().map(Load::utilization).sum();
        self.product = self.loads.iter().map(|l| 1.0 + l.utilization()).product();
        self.all_simple = self.loads.iter().all(Load::is_simple);
        self.rm_ordered = self.loads.windows(2).all(|w| w[0].period <= w[1].period);
        for v in [&mut self.hp_lin, &mut self.hp_util] {
            v.clear();
            v.reserve(n + 1);
        }
        self.hp_cost.clear();
        self.hp_window.clear();
        let (mut cost, mut lin, mut util, mut window) = (0u128, 0f64, 0f64, 0u64);
        for (l, &w) in self.loads.iter().zip(&self.lo) {
            self.hp_cost.push(cost);
            self.hp_lin.push(lin);
            self.hp_util.push(util);
            self.hp_window.push(window);
            cost += u128::from(l.cost);
            let u = l.utilization();
            lin += l.cost as f64 + l.jitter as f64 * u;
            util += u;
            if l.blocking == 0 {
                window = window.max(w);
            }
        }
        self.hp_cost.push(cost);
        self.hp_lin.push(lin);
        self.hp_util.push(util);
        self.hp_window.push(window);
    }
}

/// The EDF verdict on `loads` (the new task last): the failed test, the index of the
/// task that would miss and the shortfall.
fn edf_verdict(loads: &[Load], preemptive: bool) -> Result<(), (Test, usize, Shortfall)> {
    let newcomer = loads.len() - 1;
    let util = utilization_vs_one(loads.iter());
    let total: f64 = loads.iter().map(Load::utilization).sum();
    match util {
        UtilVsOne::Above => {
            return Err((
                Test::EdfUtilization,
                newcomer,
                Shortfall::Utilization { total, limit: 1.0 },
            ));
        }
        UtilVsOne::Unknown => {
            return Err((
                Test::EdfUtilization,
                newcomer,
                Shortfall::GaveUp { steps: 0 },
            ));
        }
        UtilVsOne::Below | UtilVsOne::Equal => {}
    }
    let (test, result) = if preemptive {
        if loads.iter().all(Load::is_simple) || edf::density_accepts(loads) {
            return Ok(());
        }
        (Test::EdfQpa, edf::demand_test(loads, util))
    } else {
        (Test::EdfNpDemand, np::edf_demand_test(loads, util))
    };
    result.map_err(|fail| match fail {
        DemandFail::Exceeds { at, demand, task } => (
            test,
            task,
            Shortfall::Demand {
                window: Nanos(at),
                demand: Nanos(clamp64(demand)),
            },
        ),
        DemandFail::GaveUp => (test, newcomer, Shortfall::GaveUp { steps: STEP_LIMIT }),
    })
}

/// Audsley's level test: does `c` meet its deadline (or `limit`) below `above` and above
/// `below`?
fn audsley_test(
    loads: &[Load],
    c: usize,
    above: &[usize],
    below: &[usize],
    preemptive: bool,
    limit: u64,
    steps: u64,
) -> Result<u64, Shortfall> {
    let hp: Vec<Load> = above.iter().map(|&i| loads[i]).collect();
    let task = &loads[c];
    let mut budget = steps;
    let found = if preemptive {
        fp::response_time(task, &hp, None, 0, limit, &mut budget)
    } else {
        let lp = below.iter().map(|&i| loads[i].cost).max().unwrap_or(0);
        np::fp_response_time(task, &hp, lp, limit, &mut budget)
    };
    match found {
        Fixpoint::Found(r) if r <= task.deadline || limit == u64::MAX => Ok(r),
        Fixpoint::Found(r) | Fixpoint::Above(r) => Err(Shortfall::Response {
            response: Nanos(r),
            deadline: Nanos(task.deadline),
            exact: false,
        }),
        Fixpoint::GaveUp => Err(Shortfall::GaveUp { steps }),
    }
}
