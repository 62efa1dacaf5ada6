//! The tasks admitted to one core, and the incremental analysis that guards it.
//!
//! Offering a task re-analyses this core only, and commits nothing unless every task on
//! it (the new one and the admitted ones) still meets its deadline. A refusal is cheap:
//! nothing is allocated until the caller turns it into a [`Miss`] with names.
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
//!   rate-monotonic implicit-deadline sets; otherwise a per-task linear upper bound, or
//!   one evaluation of the interference at the deadline;
//! - only when none settles it, exact response-time analysis started from the lower
//!   bound, tightest task first.
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

/// A task being offered to a core.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Offer<'a> {
    pub spec: &'a TaskSpec,
    pub load: Load,
    /// Offer order (ties rank the smaller higher).
    pub order: u64,
    /// The id it gets if admitted.
    pub id: TaskId,
}

/// What admitting a task to a core yielded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Admitted {
    pub rank: Option<u32>,
    pub response: Option<Nanos>,
}

/// Which task a refusal is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Victim {
    /// The task offered.
    Offered,
    /// The admitted task at this index of the core.
    Admitted(usize),
}

/// A refusal by one core, before names are attached (see [`CoreState::miss`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Refusal {
    pub test: Test,
    pub victim: Victim,
    pub shortfall: Shortfall,
}

impl Refusal {
    fn late(test: Test, victim: Victim, load: &Load, window: u64) -> Refusal {
        Refusal {
            test,
            victim,
            shortfall: Shortfall::Response {
                response: Nanos(window.saturating_add(load.jitter)),
                deadline: Nanos(load.deadline),
                exact: false,
            },
        }
    }

    fn gave_up(test: Test, victim: Victim) -> Refusal {
        Refusal {
            test,
            victim,
            shortfall: Shortfall::GaveUp { steps: STEP_LIMIT },
        }
    }

    /// From a response-time search that did not find `R ≤ D`.
    fn from_search(test: Test, victim: Victim, load: &Load, found: Fixpoint) -> Refusal {
        match found {
            Fixpoint::Found(r) | Fixpoint::Above(r) => Refusal {
                test,
                victim,
                shortfall: Shortfall::Response {
                    response: Nanos(r),
                    deadline: Nanos(load.deadline),
                    exact: matches!(found, Fixpoint::Found(_)),
                },
            },
            Fixpoint::GaveUp => Refusal::gave_up(test, victim),
        }
    }
}

/// Whether a utilisation is within a limit (1e-9 absorbs float rounding). False when
/// the limit is not a number, so such a cap refuses everything.
fn within(total: f64, limit: f64) -> bool {
    total <= limit + 1e-9
}

/// Which task is at `index` of a candidate list that holds the offered task at
/// `offered_at` and the admitted ones around it, in order.
fn victim_in_candidates(index: usize, offered_at: usize) -> Victim {
    match index.cmp(&offered_at) {
        std::cmp::Ordering::Equal => Victim::Offered,
        std::cmp::Ordering::Less => Victim::Admitted(index),
        std::cmp::Ordering::Greater => Victim::Admitted(index - 1),
    }
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
    /// When `lo[i]` is exact: the largest window up to which no more higher-priority
    /// jobs arrive than in `lo[i]` (so the interference is unchanged). 0 when unknown.
    quiet: Vec<u64>,
    /// When `lo[i]` is exact: the job counts of the tasks above `i` at that window (see
    /// [`fp::window_from`]); empty when unknown.
    warm: Vec<Vec<(u64, u64)>>,
    util: f64,
    product: f64,
    all_simple: bool,
    rm_ordered: bool,
    hp_cost: Vec<u128>,
    hp_lin: Vec<f64>,
    hp_util: Vec<f64>,
    hp_window: Vec<u64>,
    /// Task indices by `deadline − jitter − lo`, smallest first.
    by_slack: Vec<usize>,
    scratch: Vec<(u64, u64)>,
    bounds: Vec<(u64, u64)>,
}

impl CoreState {
    pub(crate) fn new(spec: CoreSpec) -> CoreState {
        let mut core = CoreState {
            spec,
            entries: Vec::new(),
            loads: Vec::new(),
            lo: Vec::new(),
            quiet: Vec::new(),
            warm: Vec::new(),
            util: 0.0,
            product: 1.0,
            all_simple: true,
            rm_ordered: true,
            hp_cost: Vec::new(),
            hp_lin: Vec::new(),
            hp_util: Vec::new(),
            hp_window: Vec::new(),
            by_slack: Vec::new(),
            scratch: Vec::new(),
            bounds: Vec::new(),
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

    /// Names a refusal of `offered` by this core (whose state is unchanged since).
    pub(crate) fn miss(&self, refusal: Refusal, offered: &TaskSpec) -> Miss {
        let task = match refusal.victim {
            Victim::Offered => offered.name.clone(),
            Victim::Admitted(i) => self
                .entries
                .get(i)
                .map_or_else(|| offered.name.clone(), |e| e.spec.name.clone()),
        };
        Miss {
            test: refusal.test,
            task,
            shortfall: refusal.shortfall,
        }
    }

    fn key_of(&self, spec: &TaskSpec) -> u64 {
        self.spec
            .assignment()
            .map_or(0, |a| assign::fixed_key(a, spec))
    }

    fn commit_entry(offer: &Offer<'_>, key: u64) -> Entry {
        Entry {
            id: offer.id,
            spec: offer.spec.clone(),
            order: offer.order,
            key,
        }
    }

    /// Offers a task; on success it is admitted, otherwise nothing changes.
    pub(crate) fn admit(&mut self, offer: &Offer<'_>) -> Result<Admitted, Refusal> {
        let load = &offer.load;
        let alone = u128::from(load.jitter) + u128::from(load.cost);
        if alone > u128::from(load.deadline) {
            return Err(Refusal::late(
                self.main_test(),
                Victim::Offered,
                load,
                load.cost,
            ));
        }
        let total = self.util + load.utilization();
        let cap = self.spec.utilization_cap;
        if !within(total, cap) {
            return Err(Refusal {
                test: Test::UtilizationCap,
                victim: Victim::Offered,
                shortfall: Shortfall::Utilization { total, limit: cap },
            });
        }
        if let Some(bw) = self.spec.applicable_bandwidth()
            && !within(total, bw)
        {
            return Err(Refusal {
                test: Test::DeadlineBandwidth,
                victim: Victim::Offered,
                shortfall: Shortfall::Utilization { total, limit: bw },
            });
        }
        match self.spec.policy {
            Policy::Edf => self.admit_edf(offer),
            Policy::Fp(PriorityAssignment::Audsley) => self.admit_audsley(offer),
            Policy::Fp(_) if self.spec.preemptive => self.admit_fixed(offer),
            Policy::Fp(_) => self.admit_np_fixed(offer),
        }
    }

    fn admit_edf(&mut self, offer: &Offer<'_>) -> Result<Admitted, Refusal> {
        self.loads.push(offer.load);
        let n = self.loads.len();
        match edf_verdict(&self.loads, self.spec.preemptive) {
            Ok(()) => {
                self.entries.push(Self::commit_entry(offer, 0));
                self.lo.push(0);
                self.quiet.push(0);
                self.warm.push(Vec::new());
                self.refresh();
                Ok(Admitted {
                    rank: None,
                    response: None,
                })
            }
            Err((test, index, shortfall)) => {
                self.loads.pop();
                Err(Refusal {
                    test,
                    victim: victim_in_candidates(index, n - 1),
                    shortfall,
                })
            }
        }
    }

    /// Where a task with `key` and `order` goes in the priority order.
    fn insertion_point(&self, key: u64, order: u64) -> usize {
        self.entries
            .partition_point(|e| (e.key, e.order) < (key, order))
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

    fn admit_fixed(&mut self, offer: &Offer<'_>) -> Result<Admitted, Refusal> {
        let load = offer.load;
        let key = self.key_of(offer.spec);
        let n = self.loads.len();
        let r = self.insertion_point(key, offer.order);
        let u_new = load.utilization();
        let total = self.util + u_new;
        if total > 1.0 + 1e-9 {
            return Err(Refusal {
                test: Test::FpRta,
                victim: Victim::Offered,
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
            return Err(Refusal::late(
                Test::FpRta,
                Victim::Offered,
                &load,
                lower_new,
            ));
        }
        let fast = self.rate_monotonic_with(r, &load)
            && (fp::liu_layland_accepts(n + 1, total)
                || fp::hyperbolic_accepts(self.product * (1.0 + u_new)));

        // The lower tasks, tightest first (a refusal usually comes from one of them).
        // Each one's window grows by at least the new task's interference on its old
        // window: w' = f(w') + g(w') ≥ f(w) + g(w) = w + g(w). When the old window was
        // exact and no higher job arrives up to that point, it is the new exact window
        // if the new task adds no job there either (no division beyond the new task's).
        // Otherwise a linear bound, or else the exact search, proves it fits.
        let CoreState {
            loads,
            lo,
            quiet,
            warm,
            scratch,
            hp_lin,
            hp_util,
            by_slack,
            bounds,
            ..
        } = self;
        scratch.clear();
        scratch.resize(n - r, (0, 0));
        let lin_new = load.cost as f64 + load.jitter as f64 * u_new;
        for &k in by_slack.iter() {
            if k < r {
                continue;
            }
            let l = &loads[k];
            let limit = l.deadline - l.jitter;
            let own_k = u128::from(l.cost) + u128::from(l.blocking);
            if !fast && quiet[k] < lo[k] {
                // Make the bound exact for the core as it is; it stays valid (and
                // speeds up every later offer) whatever becomes of this one.
                let mut budget = STEP_LIMIT;
                if let Fixpoint::Found(w) =
                    fp::window(own_k, lo[k], limit, &mut budget, &loads[..k], None, bounds)
                {
                    lo[k] = w;
                    quiet[k] = fp::quiet_until(bounds);
                    warm[k].clear();
                    warm[k].extend_from_slice(bounds);
                }
            }
            let jobs = load.jobs_at(lo[k]);
            let grown = clamp64(u128::from(lo[k]) + u128::from(jobs) * u128::from(load.cost));
            let settled = quiet[k] >= lo[k] && grown <= quiet[k] && load.jobs_at(grown) == jobs;
            scratch[k - r] = if settled {
                (grown, quiet[k].min(load.last_window_with(jobs)))
            } else {
                (grown, 0)
            };
            if fast {
                continue;
            }
            if grown > limit {
                return Err(Refusal::late(Test::FpRta, Victim::Admitted(k), l, grown));
            }
            if settled {
                continue;
            }
            let u_hp = hp_util[k] + u_new;
            if fp::linear_bound_fits(own_k as f64, hp_lin[k] + lin_new, u_hp, limit) {
                continue;
            }
            let mut budget = STEP_LIMIT;
            let found = if quiet[k] >= lo[k] && warm[k].len() == k {
                fp::window_from(
                    lo[k],
                    &warm[k],
                    limit,
                    &mut budget,
                    &loads[..k],
                    &load,
                    bounds,
                )
            } else {
                fp::window(
                    own_k,
                    grown,
                    limit,
                    &mut budget,
                    &loads[..k],
                    Some(&load),
                    bounds,
                )
            };
            match found {
                // Exact, but its job counts are not kept: the next offer re-derives them.
                Fixpoint::Found(w) => scratch[k - r] = (w, 0),
                Fixpoint::Above(w) => {
                    return Err(Refusal::late(Test::FpRta, Victim::Admitted(k), l, w));
                }
                Fixpoint::GaveUp => {
                    return Err(Refusal::gave_up(Test::FpRta, Victim::Admitted(k)));
                }
            }
        }

        // The new task, exactly (its response time is part of the placement).
        let mut budget = STEP_LIMIT;
        let found = fp::window(
            own,
            lower_new,
            window_limit,
            &mut budget,
            &loads[..r],
            None,
            bounds,
        );
        let w_new = match found {
            Fixpoint::Found(w) => w,
            Fixpoint::Above(w) => {
                return Err(Refusal::late(Test::FpRta, Victim::Offered, &load, w));
            }
            Fixpoint::GaveUp => return Err(Refusal::gave_up(Test::FpRta, Victim::Offered)),
        };
        let quiet_new = fp::quiet_until(bounds);
        let warm_new = bounds.clone();

        // Commit.
        self.entries.insert(r, Self::commit_entry(offer, key));
        self.loads.insert(r, load);
        self.lo.insert(r, w_new);
        self.quiet.insert(r, quiet_new);
        self.warm.insert(r, warm_new);
        for (k, &(w, q)) in self.scratch.iter().enumerate() {
            let i = r + 1 + k;
            let warm = &mut self.warm[i];
            if q > 0 && warm.len() == i - 1 {
                // Settled: the old counts still hold; add the new task's at rank r.
                let jobs = load.jobs_at(w);
                warm.insert(r, (load.last_window_with(jobs), jobs));
            } else {
                warm.clear();
            }
            self.lo[i] = w;
            self.quiet[i] = if warm.is_empty() { 0 } else { q };
        }
        self.refresh();
        Ok(Admitted {
            rank: self.rank(r),
            response: Some(Nanos(w_new + load.jitter)),
        })
    }

    fn admit_np_fixed(&mut self, offer: &Offer<'_>) -> Result<Admitted, Refusal> {
        let key = self.key_of(offer.spec);
        let r = self.insertion_point(key, offer.order);
        self.loads.insert(r, offer.load);
        match np::fp_analyse(&self.loads) {
            Ok(responses) => {
                self.entries.insert(r, Self::commit_entry(offer, key));
                self.lo.insert(r, 0);
                self.quiet.insert(r, 0);
                self.warm.insert(r, Vec::new());
                self.refresh();
                Ok(Admitted {
                    rank: self.rank(r),
                    response: Some(Nanos(responses[r])),
                })
            }
            Err((i, found)) => {
                let l = self.loads[i];
                self.loads.remove(r);
                Err(Refusal::from_search(
                    Test::FpNpRta,
                    victim_in_candidates(i, r),
                    &l,
                    found,
                ))
            }
        }
    }

    /// The candidate tasks' offer order, the new task (index `len`) included.
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

    fn admit_audsley(&mut self, offer: &Offer<'_>) -> Result<Admitted, Refusal> {
        let candidates = self.offer_with(offer.order);
        self.loads.push(offer.load);
        let n = self.loads.len();
        let preemptive = self.spec.preemptive;
        let loads = &self.loads;
        let result = assign::audsley(&candidates, |c, above, below| {
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
                    .chain(std::iter::once(Some(Self::commit_entry(offer, 0))))
                    .collect();
                let old_loads = std::mem::take(&mut self.loads);
                let mut rank = 0;
                let mut response = 0;
                self.lo.clear();
                self.quiet.clear();
                self.warm.clear();
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
                    self.quiet.push(0);
                    self.warm.push(Vec::new());
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
                self.loads.pop();
                Err(Refusal {
                    test: Test::FpAudsley,
                    victim: victim_in_candidates(c, n - 1),
                    shortfall,
                })
            }
        }
    }

    /// Re-runs the failed analysis of `offer` on this core, searching past deadlines, so
    /// that a refusal can give exact response times. `None` when there is nothing to
    /// add (EDF's demand figures are already exact) or the search gave up.
    pub(crate) fn explain(&self, offer: &Offer<'_>) -> Option<Miss> {
        let named = |test: Test, victim: Victim, response: u64, deadline: u64| {
            self.miss(
                Refusal {
                    test,
                    victim,
                    shortfall: Shortfall::Response {
                        response: Nanos(response),
                        deadline: Nanos(deadline),
                        exact: true,
                    },
                },
                offer.spec,
            )
        };
        match self.spec.policy {
            Policy::Edf => None,
            Policy::Fp(PriorityAssignment::Audsley) => {
                let candidates = self.offer_with(offer.order);
                let mut loads = self.loads.clone();
                loads.push(offer.load);
                let n = loads.len();
                let preemptive = self.spec.preemptive;
                let fail = assign::audsley(&candidates, |c, above, below| {
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
                Some(named(
                    Test::FpAudsley,
                    victim_in_candidates(c, n - 1),
                    r,
                    loads[c].deadline,
                ))
            }
            Policy::Fp(_) => {
                let r = self.insertion_point(self.key_of(offer.spec), offer.order);
                let mut order = self.loads.clone();
                order.insert(r, offer.load);
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
                            return Some(named(
                                self.main_test(),
                                victim_in_candidates(i, r),
                                resp,
                                task.deadline,
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
                // one lower-priority job blocks (a burst's jobs are separate)
                let lp = self.loads[index + 1..]
                    .iter()
                    .map(|l| l.chunk)
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
        self.quiet.remove(index);
        self.warm.remove(index);
        // The windows below shrank: the old bounds may now be too high.
        if matches!(self.spec.policy, Policy::Fp(_)) && self.spec.preemptive {
            for k in index..self.loads.len() {
                let task = self.loads[k];
                let hp = &self.loads[..k];
                let own = u128::from(task.cost) + u128::from(task.blocking);
                let floor = clamp64(own + hp.iter().map(|l| u128::from(l.cost)).sum::<u128>());
                let limit = task.deadline - task.jitter;
                let mut budget = STEP_LIMIT;
                (self.lo[k], self.quiet[k]) =
                    match fp::window(own, floor, limit, &mut budget, hp, None, &mut self.bounds) {
                        Fixpoint::Found(w) => (w, fp::quiet_until(&self.bounds)),
                        _ => (floor, 0),
                    };
                self.warm[k].clear();
                if self.quiet[k] > 0 {
                    self.warm[k].extend_from_slice(&self.bounds);
                }
            }
        }
        self.refresh();
        Some(entry.spec)
    }

    /// Rebuilds the sums, flags and orders from the task list.
    fn refresh(&mut self) {
        let n = self.loads.len();
        self.util = self.loads.iter().map(Load::utilization).sum();
        if !(matches!(self.spec.policy, Policy::Fp(_)) && self.spec.preemptive) {
            // The rest serves incremental fixed-priority analysis only.
            return;
        }
        self.product = self.loads.iter().map(|l| 1.0 + l.utilization()).product();
        self.all_simple = self.loads.iter().all(Load::is_simple);
        self.rm_ordered = self.loads.windows(2).all(|w| w[0].period <= w[1].period);
        self.hp_cost.clear();
        self.hp_lin.clear();
        self.hp_util.clear();
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
        let (loads, lo) = (&self.loads, &self.lo);
        self.by_slack.clear();
        self.by_slack.extend(0..n);
        self.by_slack.sort_by_key(|&i| {
            let l = &loads[i];
            (l.deadline - l.jitter).saturating_sub(lo[i])
        });
    }
}

/// The EDF verdict on `loads` (the new task last): the failed test, the index of the
/// task that would miss and the shortfall.
fn edf_verdict(loads: &[Load], preemptive: bool) -> Result<(), (Test, usize, Shortfall)> {
    let newcomer = loads.len() - 1;
    let util = utilization_vs_one(loads.iter());
    match util {
        UtilVsOne::Above => {
            let total = loads.iter().map(Load::utilization).sum();
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
        let lp = below.iter().map(|&i| loads[i].chunk).max().unwrap_or(0);
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
