//! Preemptive fixed-priority analysis.
//!
//! Exact response-time analysis with release jitter and blocking (Joseph & Pandya 1986;
//! Audsley, Burns, Richardson, Tindell & Wellings 1993): for task `i` with
//! higher-priority set `hp(i)`, the busy window `w` is the least fixed point of
//!
//! ```text
//! w = C_i + B_i + Σ_{j ∈ hp(i)} ⌈(w + J_j) / T_j⌉ · C_j
//! ```
//!
//! and the worst-case response time is `R_i = J_i + w`. With constrained deadlines and
//! `R_i ≤ D_i ≤ T_i` a job finishes before the next one of its task is released, so one
//! job per busy period suffices and the test is exact.
//!
//! Fast accepts for rate-monotonic sets with implicit deadlines and no jitter or
//! blocking: Liu & Layland's bound `U ≤ n (2^{1/n} − 1)` and the hyperbolic bound
//! `Π (U_i + 1) ≤ 2` (Bini, Buttazzo & Buttazzo 2003). A linear bound on each task's
//! busy window accepts without iterating when it already fits the deadline.

use super::load::{Load, clamp64};

/// The outcome of a fixed-point iteration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fixpoint {
    /// The least fixed point, within the limit.
    Found(u64),
    /// The iteration passed the limit; the value is a lower bound on the fixed point.
    Above(u64),
    /// The step budget ran out.
    GaveUp,
}

/// The least fixed point of `w = own + interference(w)`, iterating from `start`.
///
/// `start` must not exceed the least fixed point (any lower bound will do: below it,
/// the iteration climbs monotonically to it). Stops with [`Fixpoint::Above`] as soon as
/// an iterate exceeds `limit`, and with [`Fixpoint::GaveUp`] when `budget` steps are used
/// up; each step takes one from `budget`.
pub(crate) fn least_fixpoint(
    own: u128,
    start: u64,
    limit: u64,
    budget: &mut u64,
    mut interference: impl FnMut(u64) -> u128,
) -> Fixpoint {
    let mut w = start;
    while *budget > 0 {
        *budget -= 1;
        let next = own + interference(w);
        if next > u128::from(limit) {
            return Fixpoint::Above(clamp64(next));
        }
        let next = clamp64(next);
        if next == w {
            return Fixpoint::Found(w);
        }
        debug_assert!(next > w, "start {start} was above the least fixed point");
        w = next;
    }
    Fixpoint::GaveUp
}

/// [`least_fixpoint`] of `w = own + Σ ⌈(w + J_j) / T_j⌉ C_j` over `hp` (and `extra`),
/// without dividing again for a task until the window passes its next release.
///
/// `bounds` is scratch space: for each task, the largest window with the current job
/// count, and that count.
pub(crate) fn window(
    own: u128,
    start: u64,
    limit: u64,
    budget: &mut u64,
    hp: &[Load],
    extra: Option<&Load>,
    bounds: &mut Vec<(u64, u64)>,
) -> Fixpoint {
    bounds.clear();
    let mut total = own;
    for l in hp.iter().chain(extra) {
        let jobs = l.jobs_at(start);
        total += u128::from(jobs) * u128::from(l.cost);
        bounds.push((l.last_window_with(jobs), jobs));
    }
    climb(total, start, limit, budget, hp, extra, bounds)
}

/// [`window`] for a task whose exact busy window below `hp` is `w`, with `warm` the
/// job counts of `hp` there (as [`window`] leaves them in `bounds`), when `new` joins
/// above it: no division for `hp` until the window passes their next releases.
pub(crate) fn window_from(
    w: u64,
    warm: &[(u64, u64)],
    limit: u64,
    budget: &mut u64,
    hp: &[Load],
    new: &Load,
    bounds: &mut Vec<(u64, u64)>,
) -> Fixpoint {
    bounds.clear();
    bounds.extend_from_slice(warm);
    let jobs = new.jobs_at(w);
    bounds.push((new.last_window_with(jobs), jobs));
    let total = u128::from(w) + u128::from(jobs) * u128::from(new.cost);
    climb(total, w, limit, budget, hp, Some(new), bounds)
}

/// The fixed-point iteration of [`window`] from window `w`, where `total` is the
/// equation's right-hand side at `w` and `bounds` the job counts there.
fn climb(
    mut total: u128,
    start: u64,
    limit: u64,
    budget: &mut u64,
    hp: &[Load],
    extra: Option<&Load>,
    bounds: &mut [(u64, u64)],
) -> Fixpoint {
    let (hp_bounds, extra_bound) = bounds.split_at_mut(hp.len());
    let mut w = start;
    while *budget > 0 {
        *budget -= 1;
        if total > u128::from(limit) {
            return Fixpoint::Above(clamp64(total));
        }
        let next = clamp64(total);
        if next == w {
            return Fixpoint::Found(w);
        }
        debug_assert!(next > w, "start {start} was above the least fixed point");
        w = next;
        for (l, b) in hp.iter().zip(hp_bounds.iter_mut()) {
            if w > b.0 {
                total += advance(l, b, w);
            }
        }
        if let (Some(l), [b]) = (extra, &mut *extra_bound)
            && w > b.0
        {
            total += advance(l, b, w);
        }
    }
    Fixpoint::GaveUp
}

/// Moves one task's job count `b` on to window `w`, returning the work added.
#[inline]
fn advance(l: &Load, b: &mut (u64, u64), w: u64) -> u128 {
    let jobs = l.jobs_at(w);
    let added = u128::from(jobs - b.1) * u128::from(l.cost);
    *b = (l.last_window_with(jobs), jobs);
    added
}

/// After [`window`] found a fixed point: the largest window with the same interference
/// (no further higher-priority job arrives up to it). `u64::MAX` with no such task.
pub(crate) fn quiet_until(bounds: &[(u64, u64)]) -> u64 {
    bounds.iter().map(|b| b.0).min().unwrap_or(u64::MAX)
}

/// The interference of `hp` on a busy window of length `w`.
#[inline]
pub(crate) fn interference(hp: &[Load], w: u64) -> u128 {
    hp.iter().map(|l| l.rbf(w)).sum()
}

/// The response time of `task` below `hp` (and `extra`, one more higher-priority task,
/// when given), if it is at most `limit`.
///
/// `lower` is a known lower bound on the busy window (`R − J`); 0 if none. Returns the
/// response time `R = J + w` as [`Fixpoint::Found`], or a lower bound on it as
/// [`Fixpoint::Above`].
pub(crate) fn response_time(
    task: &Load,
    hp: &[Load],
    extra: Option<&Load>,
    lower: u64,
    limit: u64,
    budget: &mut u64,
) -> Fixpoint {
    let own = u128::from(task.cost) + u128::from(task.blocking);
    let hp_cost: u128 = hp.iter().map(|l| u128::from(l.cost)).sum::<u128>()
        + extra.map_or(0, |l| u128::from(l.cost));
    let start = clamp64(own + hp_cost).max(lower);
    let jitter = task.jitter;
    let Some(window_limit) = limit.checked_sub(jitter) else {
        return Fixpoint::Above(start.saturating_add(jitter));
    };
    if u128::from(start) > u128::from(window_limit) {
        return Fixpoint::Above(start.saturating_add(jitter));
    }
    let found = least_fixpoint(own, start, window_limit, budget, |w| {
        interference(hp, w) + extra.map_or(0, |l| l.rbf(w))
    });
    match found {
        Fixpoint::Found(w) => Fixpoint::Found(w.saturating_add(jitter)),
        Fixpoint::Above(w) => Fixpoint::Above(w.saturating_add(jitter)),
        Fixpoint::GaveUp => Fixpoint::GaveUp,
    }
}

/// Response-time analysis of a whole priority order (highest first). Returns every
/// task's response time, or the index of the first task that misses its deadline and
/// what the analysis found for it.
#[cfg(test)]
pub(crate) fn analyse(order: &[Load]) -> Result<Vec<u64>, (usize, Fixpoint)> {
    let mut out = Vec::with_capacity(order.len());
    for (i, task) in order.iter().enumerate() {
        let mut budget = super::load::STEP_LIMIT;
        match response_time(task, &order[..i], None, 0, task.deadline, &mut budget) {
            Fixpoint::Found(r) => out.push(r),
            miss => return Err((i, miss)),
        }
    }
    Ok(out)
}

/// Liu & Layland's bound for `n` rate-monotonic tasks with implicit deadlines:
/// `U ≤ n (2^{1/n} − 1)`. A margin absorbs floating-point error.
pub(crate) fn liu_layland_accepts(n: usize, total: f64) -> bool {
    if n == 0 {
        return true;
    }
    let n = n as f64;
    total <= n * (2f64.powf(1.0 / n) - 1.0) * (1.0 - 1e-9)
}

/// The hyperbolic bound for rate-monotonic tasks with implicit deadlines, given
/// `product = Π (U_i + 1)`: accepts when `product ≤ 2` (with a margin).
pub(crate) fn hyperbolic_accepts(product: f64) -> bool {
    product <= 2.0 * (1.0 - 1e-9)
}

/// Whether the linear bound proves a busy window fits.
///
/// Since `⌈x⌉ ≤ x + 1`, the interference of `j` on a window `w` is at most
/// `U_j w + (C_j + U_j J_j)`, so the least fixed point is at most
/// `(C_i + B_i + Σ (C_j + U_j J_j)) / (1 − Σ U_j)` when `Σ U_j < 1`. The caller gives
/// `own = C_i + B_i`, `lin = Σ (C_j + U_j J_j)` and `u_hp = Σ U_j` over the
/// higher-priority tasks; a relative margin of 1e-9 and 1 ns absorb rounding.
pub(crate) fn linear_bound_fits(own: f64, lin: f64, u_hp: f64, window_limit: u64) -> bool {
    let converges = u_hp < 1.0 - 1e-9;
    if !converges {
        return false;
    }
    let bound = (own + lin) / (1.0 - u_hp);
    bound * (1.0 + 1e-9) + 1.0 <= window_limit as f64
}

#[cfg(test)]
mod tests {
    use super::super::load::{STEP_LIMIT, load};
    use super::*;

    #[test]
    fn burns_and_wellings_rate_monotonic_example() {
        // Burns & Wellings, "Real-Time Systems and Programming Languages", the
        // response-time analysis example: (C, T) = (3, 7), (3, 12), (5, 20) under RM.
        let set = [load(3, 7, 7), load(3, 12, 12), load(5, 20, 20)];
        assert_eq!(analyse(&set), Ok(vec![3, 6, 20]));
        // It fails Liu & Layland (U = 0.929 > 0.780) yet is schedulable: RTA is exact.
        let u: f64 = set.iter().map(Load::utilization).sum();
        assert!(!liu_layland_accepts(3, u));
    }

    #[test]
    fn a_miss_reports_the_first_late_task() {
        let set = [load(3, 7, 7), load(3, 12, 12), load(6, 20, 20)];
        let (i, found) = analyse(&set).unwrap_err();
        assert_eq!(i, 2);
        assert!(matches!(found, Fixpoint::Above(r) if r > 20));
    }

    #[test]
    fn jitter_and_blocking_enter_the_response_time() {
        let hp = [Load {
            cost: 1,
            chunk: 1,
            period: 4,
            deadline: 4,
            jitter: 2,
            blocking: 0,
        }];
        let task = Load {
            cost: 3,
            chunk: 3,
            period: 20,
            deadline: 20,
            jitter: 1,
            blocking: 2,
        };
        // w = 3 + 2 + ⌈(w + 2)/4⌉: 6 → 7 → 8 → 8; R = 1 + 8.
        let mut budget = STEP_LIMIT;
        assert_eq!(
            response_time(&task, &hp, None, 0, 20, &mut budget),
            Fixpoint::Found(9)
        );
        let mut budget = STEP_LIMIT;
        assert_eq!(
            response_time(&task, &hp, None, 0, 8, &mut budget),
            Fixpoint::Above(9)
        );
    }

    #[test]
    fn the_step_budget_bounds_the_work() {
        let hp = [load(1, 2, 2)];
        let task = load(1_000_000, 10_000_000, 10_000_000);
        let mut budget = 3;
        assert_eq!(
            response_time(&task, &hp, None, 0, u64::MAX, &mut budget),
            Fixpoint::GaveUp
        );
        assert_eq!(budget, 0);
    }

    #[test]
    fn a_warm_start_finds_the_same_window() {
        let hp = [load(1, 4, 4), load(2, 9, 9)];
        let task = load(3, 40, 40);
        let new = Load {
            cost: 2,
            chunk: 2,
            period: 15,
            deadline: 15,
            jitter: 1,
            blocking: 0,
        };
        let mut bounds = Vec::new();
        let mut budget = STEP_LIMIT;
        // Alone below hp: w = 3 + ⌈w/4⌉ + 2⌈w/9⌉ → 6, 7, 7; the next release (of the
        // first task) comes after window 8.
        let Fixpoint::Found(w) = window(3, 3, 40, &mut budget, &hp, None, &mut bounds) else {
            panic!("fits");
        };
        assert_eq!(w, 7);
        assert_eq!(quiet_until(&bounds), 8);
        let warm = bounds.clone();
        let mut cold = Vec::new();
        let mut b1 = STEP_LIMIT;
        let mut b2 = STEP_LIMIT;
        let from_warm = window_from(w, &warm, 40, &mut b1, &hp, &new, &mut bounds);
        let from_cold = window(3, 3, 40, &mut b2, &hp, Some(&new), &mut cold);
        assert_eq!(from_warm, from_cold);
        let mut b3 = STEP_LIMIT;
        assert_eq!(
            from_warm,
            response_time(&task, &[hp[0], hp[1], new], None, 0, 40, &mut b3)
        );
        assert!(b1 > b2, "the warm start takes fewer steps");
    }

    #[test]
    fn utilization_bounds() {
        assert!(liu_layland_accepts(1, 1.0 - 1e-6));
        assert!(!liu_layland_accepts(1, 1.0 + 1e-6));
        assert!(liu_layland_accepts(2, 0.828));
        assert!(!liu_layland_accepts(2, 0.829));
        // (1/3 + 1)(1/2 + 1) = 2: on the hyperbolic bound, which the margin refuses.
        assert!(!hyperbolic_accepts((1.0 / 3.0 + 1.0) * (0.5 + 1.0)));
        assert!(hyperbolic_accepts((0.3 + 1.0) * (0.5 + 1.0)));
    }

    #[test]
    fn linear_bound_is_an_upper_bound() {
        // hp: (1, 4); task (3, 9): exact w = 4 (3 + 1).
        let hp = [load(1, 4, 4)];
        let task = load(3, 9, 9);
        let mut budget = STEP_LIMIT;
        assert_eq!(
            response_time(&task, &hp, None, 0, 9, &mut budget),
            Fixpoint::Found(4)
        );
        // Bound: (3 + 1) / (1 − 0.25) = 5.33: fits 7, not 5.
        assert!(linear_bound_fits(3.0, 1.0, 0.25, 7));
        assert!(!linear_bound_fits(3.0, 1.0, 0.25, 5));
        assert!(!linear_bound_fits(3.0, 1.0, 1.0, u64::MAX));
    }
}
