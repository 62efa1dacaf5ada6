//! A task as the analysis sees it, and the exact arithmetic every test shares.
//!
//! [`Load`] holds plain `u64` nanoseconds with the per-job overhead already in the cost.
//! Request and demand bounds are summed in `u128`, so no busy period, demand or product
//! of a job count and a cost can overflow: each term is below 2^128 / 2^64 and at most
//! 2^64 tasks are summed. Divisions take a fast `u64` path when the dividend fits.

use super::task::TaskSpec;
use crate::time::Nanos;

/// The most fixed-point or QPA steps one test may take before it gives up (and refuses,
/// which is always safe). Every loop below is bounded by it, so analysis terminates even
/// when a busy period is astronomically long.
pub(crate) const STEP_LIMIT: u64 = 1_000_000;

/// The step limit for explaining a refusal (finding an exact response time past the
/// deadline), which is allowed less work than a decision.
pub(crate) const EXPLAIN_STEP_LIMIT: u64 = 20_000;

/// One task's timing parameters in nanoseconds.
///
/// Invariants (from [`TaskSpec::validate`]): `period > 0`, `cost > 0`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Load {
    /// Processor time charged per window of `period`: the burst's jobs, each its wcet
    /// plus the per-job overhead (one job unless the task declares a burst).
    pub cost: u64,
    /// The longest piece that runs without a scheduling point: one job (wcet plus
    /// overhead). Equal to `cost` for a task without a burst.
    pub chunk: u64,
    /// Period, or minimum inter-arrival time.
    pub period: u64,
    /// Relative deadline.
    pub deadline: u64,
    /// Release jitter.
    pub jitter: u64,
    /// Blocking by lower-priority work.
    pub blocking: u64,
}

impl Load {
    /// The load of `spec` with `overhead` added to each job.
    pub(crate) fn of(spec: &TaskSpec, overhead: Nanos) -> Load {
        let chunk = spec.wcet.saturating_add(overhead).get();
        Load {
            cost: chunk.saturating_mul(u64::from(spec.burst.max(1))),
            chunk,
            period: spec.period.get().max(1),
            deadline: spec.deadline.get(),
            jitter: spec.jitter.get(),
            blocking: spec.blocking.get(),
        }
    }

    /// `cost / period`.
    pub(crate) fn utilization(&self) -> f64 {
        self.cost as f64 / self.period as f64
    }

    /// Whether the deadline equals the period and there is no jitter or blocking: the
    /// case the utilisation bounds are exact or valid for.
    pub(crate) fn is_simple(&self) -> bool {
        self.deadline == self.period && self.jitter == 0 && self.blocking == 0
    }

    /// The most jobs released in any window of length `w`: `⌈(w + J) / T⌉`.
    #[inline]
    pub(crate) fn releases(&self, w: u64) -> u128 {
        ceil_div(u128::from(w) + u128::from(self.jitter), self.period)
    }

    /// [`Load::releases`] in `u64`, for the hot loops (saturating, which only happens
    /// for windows beyond 584 years).
    #[inline]
    pub(crate) fn jobs_at(&self, w: u64) -> u64 {
        match w.checked_add(self.jitter) {
            Some(x) => x.div_ceil(self.period),
            None => clamp64(self.releases(w)),
        }
    }

    /// The largest window in which at most `jobs` jobs are released: `jobs · T − J`.
    #[inline]
    pub(crate) fn last_window_with(&self, jobs: u64) -> u64 {
        jobs.checked_mul(self.period)
            .map_or(u64::MAX, |x| x.saturating_sub(self.jitter))
    }

    /// The most work released in any window of length `w` (request bound).
    #[inline]
    pub(crate) fn rbf(&self, w: u64) -> u128 {
        // saturating: with a jitter near u64::MAX the count reaches 2^65, and a count
        // times a cost near 2^64 would wrap (to a small, unsafe bound)
        self.releases(w).saturating_mul(u128::from(self.cost))
    }

    /// The most jobs released in a window of length `w` that a job starting exactly at
    /// `w` must still wait for: `⌊(w + J) / T⌋ + 1` (a release at the same instant wins).
    #[inline]
    pub(crate) fn releases_through(&self, w: u64) -> u128 {
        floor_div(u128::from(w) + u128::from(self.jitter), self.period) + 1
    }

    /// The first point where the demand bound steps: `D − J`, or `None` when the jitter
    /// leaves no time at all (`J ≥ D`).
    #[inline]
    pub(crate) fn first_deadline(&self) -> Option<u64> {
        self.deadline
            .checked_sub(self.jitter)
            .filter(|&first| first > 0)
    }

    /// The most work that must both be released and be due inside any window of length
    /// `t` (demand bound with jitter): `max(0, ⌊(t + J − D) / T⌋ + 1) · C`.
    #[inline]
    pub(crate) fn dbf(&self, t: u64) -> u128 {
        match self.first_deadline() {
            Some(first) if t >= first => {
                (floor_div(u128::from(t - first), self.period) + 1) * u128::from(self.cost)
            }
            Some(_) => 0,
            // J ≥ D: every released job is already due; count it as the request bound.
            None => self.rbf(t),
        }
    }

    /// The latest point `≤ t` at which the demand bound steps, if any.
    #[inline]
    pub(crate) fn deadline_at_or_before(&self, t: u64) -> Option<u64> {
        let first = self.first_deadline()?;
        if t < first {
            return None;
        }
        let k = (t - first) / self.period;
        Some(first + k * self.period)
    }
}

/// `⌈a / b⌉` for `b > 0`.
#[inline]
pub(crate) fn ceil_div(a: u128, b: u64) -> u128 {
    match u64::try_from(a) {
        Ok(a) => u128::from(a.div_ceil(b)),
        Err(_) => a.div_ceil(u128::from(b)),
    }
}

/// `⌊a / b⌋` for `b > 0`.
#[inline]
pub(crate) fn floor_div(a: u128, b: u64) -> u128 {
    match u64::try_from(a) {
        Ok(a) => u128::from(a / b),
        Err(_) => a / u128::from(b),
    }
}

/// A `u128` clamped into `u64`.
#[inline]
pub(crate) fn clamp64(x: u128) -> u64 {
    u64::try_from(x).unwrap_or(u64::MAX)
}

/// How a total utilisation compares with 1, decided exactly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum UtilVsOne {
    /// Strictly below 1.
    Below,
    /// Exactly 1.
    Equal,
    /// Strictly above 1.
    Above,
    /// Within 1e-9 of 1, and the exact sum of fractions overflows `u128`: cannot tell.
    Unknown,
}

/// Compares `Σ cost / period` with 1. The floating-point sum decides unless it is within
/// 1e-9 of 1 (its error is far smaller); then the fractions are summed exactly.
pub(crate) fn utilization_vs_one<'a>(loads: impl Iterator<Item = &'a Load> + Clone) -> UtilVsOne {
    let approx: f64 = loads.clone().map(Load::utilization).sum();
    if approx < 1.0 - 1e-9 {
        return UtilVsOne::Below;
    }
    if approx > 1.0 + 1e-9 {
        return UtilVsOne::Above;
    }
    // Exact: num / den = Σ cost / period, kept reduced.
    let mut num: u128 = 0;
    let mut den: u128 = 1;
    for l in loads {
        let (c, t) = (u128::from(l.cost), u128::from(l.period));
        let g = gcd(den, t);
        let Some(new_den) = (den / g).checked_mul(t) else {
            return UtilVsOne::Unknown;
        };
        let Some(a) = num.checked_mul(t / g) else {
            return UtilVsOne::Unknown;
        };
        let Some(b) = c.checked_mul(den / g) else {
            return UtilVsOne::Unknown;
        };
        let Some(new_num) = a.checked_add(b) else {
            return UtilVsOne::Unknown;
        };
        let r = gcd(new_num, new_den).max(1);
        num = new_num / r;
        den = new_den / r;
    }
    match num.cmp(&den) {
        std::cmp::Ordering::Less => UtilVsOne::Below,
        std::cmp::Ordering::Equal => UtilVsOne::Equal,
        std::cmp::Ordering::Greater => UtilVsOne::Above,
    }
}

fn gcd(mut a: u128, mut b: u128) -> u128 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

#[cfg(test)]
pub(crate) fn load(cost: u64, period: u64, deadline: u64) -> Load {
    Load {
        cost,
        chunk: cost,
        period,
        deadline,
        jitter: 0,
        blocking: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_and_demand_bounds() {
        let l = Load {
            cost: 2,
            chunk: 2,
            period: 10,
            deadline: 7,
            jitter: 3,
            blocking: 0,
        };
        assert_eq!(l.releases(0), 1);
        assert_eq!(l.releases(7), 1);
        assert_eq!(l.releases(8), 2);
        assert_eq!(l.rbf(8), 4);
        assert_eq!(l.releases_through(6), 1);
        assert_eq!(l.releases_through(7), 2);
        // Deadline points at D − J + kT = 4, 14, 24, …
        assert_eq!(l.first_deadline(), Some(4));
        assert_eq!(l.dbf(3), 0);
        assert_eq!(l.dbf(4), 2);
        assert_eq!(l.dbf(13), 2);
        assert_eq!(l.dbf(14), 4);
        assert_eq!(l.deadline_at_or_before(3), None);
        assert_eq!(l.deadline_at_or_before(13), Some(4));
        assert_eq!(l.deadline_at_or_before(24), Some(24));
    }

    #[test]
    fn huge_windows_do_not_overflow() {
        let l = Load {
            cost: u64::MAX,
            chunk: u64::MAX,
            period: 1,
            deadline: 1,
            jitter: u64::MAX,
            blocking: 0,
        };
        assert_eq!(l.releases(u64::MAX), 2 * u128::from(u64::MAX));
        // 2 (2^64 − 1)^2 exceeds u128: saturated, never wrapped to a small bound
        assert_eq!(l.rbf(u64::MAX), u128::MAX);
        assert_eq!(ceil_div(u128::MAX, 2), u128::MAX / 2 + 1);
        assert_eq!(clamp64(u128::MAX), u64::MAX);
    }

    #[test]
    fn utilization_is_compared_exactly() {
        // 1/2 + 1/3 + 1/6 is exactly 1, though the float sum need not be.
        let a = [load(1, 2, 2), load(1, 3, 3), load(1, 6, 6)];
        assert_eq!(utilization_vs_one(a.iter()), UtilVsOne::Equal);
        let b = [load(1, 2, 2), load(1, 3, 3), load(1, 7, 7)];
        assert_eq!(utilization_vs_one(b.iter()), UtilVsOne::Below);
        let c = [load(1, 2, 2), load(1, 3, 3), load(1, 5, 5)];
        assert_eq!(utilization_vs_one(c.iter()), UtilVsOne::Above);
        // One part in 10^12 above 1, far inside the float tolerance.
        let p = 1_000_000_000_000u64;
        let d = [load(p / 2, p, p), load(p / 2 + 1, p, p)];
        assert_eq!(utilization_vs_one(d.iter()), UtilVsOne::Above);
    }
}
