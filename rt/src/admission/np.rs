//! Non-preemptive analysis, for the cooperative dispatcher (each job runs to completion).
//!
//! **Fixed priority** (Davis, Burns, Bril & Lukkien 2007, "Controller Area Network (CAN)
//! schedulability analysis: refuted, revisited and revised"). A job can be blocked once,
//! by the longest lower-priority job: `B_i = max(B_i declared, max_{lp(i)} C_k)`. A job
//! that has started cannot be preempted, so a job may also delay the next job of its own
//! task; the test therefore examines every job `q` in the level-`i` busy period
//!
//! ```text
//! t_i   = B_i + Σ_{hep(i)} ⌈(t_i + J_k) / T_k⌉ C_k,   Q_i = ⌈(t_i + J_i) / T_i⌉
//! w(q)  = B_i + q C_i + Σ_{hp(i)} (⌊(w(q) + J_k) / T_k⌋ + 1) C_k
//! R_i   = max_{0 ≤ q < Q_i}  J_i + w(q) − q T_i + C_i
//! ```
//!
//! A task with a burst of `b` jobs per window is `C_i = b · c` split at the jobs'
//! boundaries (fixed preemption points, Bril, Lukkien & Verhaegh 2009): `w(q)` is the
//! start of the window's last job, so its own part is `q C_i + (C_i − c)`, and
//! `R_i = J_i + w(q) − q T_i + c`. Blocking by a lower-priority task is one job `c`.
//!
//! (`⌊x/T⌋ + 1` rather than `⌈x/T⌉`: a higher-priority job released at the very instant
//! job `q` would start goes first; time is counted in whole nanoseconds.)
//!
//! **EDF** (George, Rivierre & Spuri 1996): with `U ≤ 1`, every deadline is met if for
//! every deadline point `t`,
//!
//! ```text
//! h(t) + max{C_j : D_j > t} ≤ t
//! ```
//!
//! the second term being the longest job that may have started just before the window
//! although its deadline is later. Blocked time is counted as the whole `C_j` (not
//! `C_j − 1`), which is safe when the dispatcher's clock is finer than a nanosecond. The
//! blocking term does not grow with `t`, so QPA does not apply below `max D_j`: those
//! points are enumerated; above `max D_j` the term is zero and QPA checks the rest.

use super::edf::{self, DemandFail};
use super::fp::{Fixpoint, least_fixpoint};
use super::load::{Load, STEP_LIMIT, UtilVsOne, clamp64};

/// Non-preemptive fixed-priority response time of `task` below `hp`, blocked by lower
/// priority jobs of at most `lp_cost` each. Returns the worst response time over the
/// jobs of the level-`i` busy period if every one is at most `limit`.
pub(crate) fn fp_response_time(
    task: &Load,
    hp: &[Load],
    lp_cost: u64,
    limit: u64,
    budget: &mut u64,
) -> Fixpoint {
    let blocking = u128::from(task.blocking.max(lp_cost));
    let cost = u128::from(task.cost);
    // A burst's jobs before its last one run first; higher-priority jobs may come in
    // between them, and the last job (`chunk`) runs to completion once started.
    let chunk = u128::from(task.chunk.min(task.cost));
    let before_last = cost - chunk;
    let jitter = u128::from(task.jitter);
    let hp_cost: u128 = hp.iter().map(|l| u128::from(l.cost)).sum();
    let first = jitter + blocking + cost + hp_cost;
    if first > u128::from(limit) {
        return Fixpoint::Above(clamp64(first));
    }
    // A level-i busy period with more work arriving than time passing never ends.
    let u_hep: f64 = hp.iter().map(Load::utilization).sum::<f64>() + task.utilization();
    if u_hep > 1.0 + 1e-9 {
        return Fixpoint::Above(limit.saturating_add(1));
    }
    // The level-i busy period.
    let busy = least_fixpoint(
        blocking,
        clamp64(blocking + cost + hp_cost),
        u64::MAX,
        budget,
        |t| super::fp::interference(hp, t) + task.rbf(t),
    );
    let Fixpoint::Found(busy) = busy else {
        return Fixpoint::GaveUp;
    };
    let jobs = task.releases(busy).max(1);
    let mut worst: u64 = 0;
    let mut w_prev: Option<u64> = None;
    let mut q: u128 = 0;
    while q < jobs {
        let own = blocking + q * cost + before_last;
        let start = match w_prev {
            // w(q) ≥ w(q−1) + C: the same equation with one more own job.
            Some(w) => u128::from(w) + cost,
            None => own + hp_cost,
        };
        // R(q) = J + w − qT + C_last ≤ limit  ⇔  w ≤ limit + qT − J − C_last.
        let release = q * u128::from(task.period);
        let w_limit = (u128::from(limit) + release).checked_sub(jitter + chunk);
        let Some(w_limit) = w_limit else {
            return Fixpoint::Above(clamp64(first));
        };
        let found = least_fixpoint(own, clamp64(start), clamp64(w_limit), budget, |w| {
            hp.iter()
                .map(|l| l.releases_through(w) * u128::from(l.cost))
                .sum()
        });
        let response = |w: u64| clamp64((jitter + u128::from(w) + chunk).saturating_sub(release));
        match found {
            Fixpoint::Found(w) => {
                worst = worst.max(response(w));
                w_prev = Some(w);
            }
            Fixpoint::Above(w) => return Fixpoint::Above(response(w)),
            Fixpoint::GaveUp => return Fixpoint::GaveUp,
        }
        q += 1;
    }
    Fixpoint::Found(worst)
}

/// Non-preemptive fixed-priority analysis of a whole priority order (highest first).
pub(crate) fn fp_analyse(order: &[Load]) -> Result<Vec<u64>, (usize, Fixpoint)> {
    let lp_costs = lower_priority_costs(order);
    let mut out = Vec::with_capacity(order.len());
    for (i, task) in order.iter().enumerate() {
        let mut budget = STEP_LIMIT;
        match fp_response_time(task, &order[..i], lp_costs[i], task.deadline, &mut budget) {
            Fixpoint::Found(r) => out.push(r),
            miss => return Err((i, miss)),
        }
    }
    Ok(out)
}

/// For each position of a priority order, the longest job below it (one job of a
/// burst: the dispatcher chooses again between them).
pub(crate) fn lower_priority_costs(order: &[Load]) -> Vec<u64> {
    let mut out = vec![0; order.len()];
    let mut max = 0;
    for i in (0..order.len()).rev() {
        out[i] = max;
        max = max.max(order[i].chunk);
    }
    out
}

/// Non-preemptive EDF demand analysis (George et al.). The caller has established
/// `U ≤ 1`.
pub(crate) fn edf_demand_test(loads: &[Load], util: UtilVsOne) -> Result<(), DemandFail> {
    let c_max = loads.iter().map(|l| l.chunk).max().unwrap_or(0);
    let b_max = loads.iter().map(|l| l.blocking).max().unwrap_or(0);
    let d_max = loads.iter().map(|l| l.deadline).max().unwrap_or(0);
    let horizon = edf::demand_horizon(loads, c_max.max(b_max), util).ok_or(DemandFail::GaveUp)?;
    let g = |t: u64| {
        let np = loads
            .iter()
            .filter(|l| l.deadline > t)
            .map(|l| l.chunk)
            .max()
            .unwrap_or(0);
        edf::demand(loads, t) + u128::from(np.max(edf::blocking_within(loads, t)))
    };
    // Below max D_j: every deadline point, in increasing order.
    let below = d_max.min(horizon.saturating_add(1));
    let mut points = Vec::new();
    for l in loads {
        let Some(mut p) = l.first_deadline() else {
            continue;
        };
        while p < below {
            if points.len() as u64 >= STEP_LIMIT {
                return Err(DemandFail::GaveUp);
            }
            points.push(p);
            match p.checked_add(l.period) {
                Some(next) => p = next,
                None => break,
            }
        }
    }
    points.sort_unstable();
    points.dedup();
    for &t in &points {
        let h = g(t);
        if h > u128::from(t) {
            let task = loads
                .iter()
                .position(|l| l.deadline_at_or_before(t) == Some(t))
                .unwrap_or(0);
            return Err(DemandFail::Exceeds {
                at: t,
                demand: h,
                task,
            });
        }
    }
    // From max D_j on, no job due later can block and g is non-decreasing.
    if horizon >= d_max {
        edf::qpa(
            loads,
            |t| edf::demand(loads, t) + u128::from(edf::blocking_within(loads, t)),
            d_max,
            horizon,
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::load::{load, utilization_vs_one};
    use super::*;

    #[test]
    fn the_longest_lower_priority_job_blocks() {
        // Preemptively (1, 4) over (6, 12) is fine; non-preemptively the 6-unit job
        // blocks the first task: R = 6 + 1 = 7 > 4.
        let order = [load(1, 4, 4), load(6, 12, 12)];
        assert!(super::super::fp::analyse(&order).is_ok());
        let (i, found) = fp_analyse(&order).unwrap_err();
        assert_eq!(i, 0);
        assert_eq!(found, Fixpoint::Above(7));
        // A 3-unit lower job fits: R_0 = 3 + 1 = 4.
        let order = [load(1, 4, 4), load(3, 12, 12)];
        let r = fp_analyse(&order).unwrap();
        assert_eq!(r[0], 4);
    }

    #[test]
    fn later_jobs_of_the_busy_period_are_examined() {
        // Davis et al. 2007, Table 1 (times doubled to whole numbers): A (C 2, T=D 5),
        // B (2, 7), C (2, 7), priorities A > B > C. C's first job responds in 6, but
        // its second, pushed back by its own first job, in 7 (3.5 in the paper), which
        // the original CAN analysis missed.
        let order = [load(2, 5, 5), load(2, 7, 7), load(2, 7, 7)];
        let r = fp_analyse(&order).unwrap();
        assert_eq!(r, vec![4, 6, 7]);
        let mut budget = STEP_LIMIT;
        // With a deadline of 6 the first job would pass, the second must not.
        assert_eq!(
            fp_response_time(&load(2, 7, 6), &order[..2], 0, 6, &mut budget),
            Fixpoint::Above(7)
        );
        // Above full utilisation the busy period never ends: refused.
        let order = [load(2, 5, 5), load(2, 6, 6), load(3, 7, 7)];
        assert!(fp_analyse(&order).is_err());
    }

    #[test]
    fn np_edf_counts_a_started_later_job() {
        // (1, 2, D 2) and (2, 8, D 8): U = 0.75; preemptive EDF is fine, but the 2-unit
        // job may start just before a (1, D 2) job arrives, which then ends at 3 > 2.
        let set = [load(1, 2, 2), load(2, 8, 8)];
        let util = utilization_vs_one(set.iter());
        assert_eq!(edf::demand_test(&set, util), Ok(()));
        assert!(matches!(
            edf_demand_test(&set, util),
            Err(DemandFail::Exceeds {
                at: 2,
                demand: 3,
                task: 0
            })
        ));
        // With a deadline of 3 for the short job it fits.
        let set = [load(1, 4, 3), load(2, 8, 8)];
        let util = utilization_vs_one(set.iter());
        assert_eq!(edf_demand_test(&set, util), Ok(()));
    }

    #[test]
    fn a_higher_priority_job_may_come_in_between_a_bursts_jobs() {
        // H (C 1, T=D 3) over L, a burst of two 2-unit jobs per window of 20. All arrive
        // at 0: H [0,1), L's first job [1,3); at 3 H arrives again and goes before L's
        // second job: H [3,4), L [4,6). L's response is 6.
        let h = load(1, 3, 3);
        let burst = Load {
            chunk: 2,
            ..load(4, 20, 20)
        };
        let r = fp_analyse(&[h, burst]).unwrap();
        assert_eq!(r, vec![3, 6]);
        // As one 4-unit job it would start at 1 and end at 5: the burst is not that.
        let mut budget = STEP_LIMIT;
        assert_eq!(
            fp_response_time(&load(4, 20, 20), &[h], 0, 20, &mut budget),
            Fixpoint::Found(5)
        );
        // H is blocked by one of L's jobs (2), not by the whole burst (4).
        assert_eq!(lower_priority_costs(&[h, burst]), vec![2, 0]);
    }

    #[test]
    fn lower_priority_costs_are_suffix_maxima() {
        let order = [load(1, 9, 9), load(5, 9, 9), load(2, 9, 9), load(3, 9, 9)];
        assert_eq!(lower_priority_costs(&order), vec![5, 3, 3, 0]);
    }
}
