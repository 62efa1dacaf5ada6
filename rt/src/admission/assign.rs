//! Priority assignment: the fixed orders (RM, DM, explicit) and Audsley's algorithm.
//!
//! Ties keep offer order everywhere: of two tasks with the same period (RM), deadline
//! (DM) or explicit priority, the one offered first ranks higher.
//!
//! Audsley's optimal priority assignment (Audsley 1991, 2001) fills priority levels from
//! the lowest up. At each level it looks for an unassigned task that meets its deadline
//! there, with every other unassigned task above it, and gives it the level. The tests
//! used here (preemptive RTA with jitter and blocking, non-preemptive RTA) depend only on
//! the *sets* above and below a task, not on their order, so the algorithm finds a
//! feasible order whenever one exists. Among the tasks that fit a level it takes the one
//! offered last, so that earlier tasks keep the higher priorities.

use super::core_spec::PriorityAssignment;
use super::rejection::Shortfall;
use super::task::TaskSpec;

/// The sort key of a fixed assignment (smaller ranks higher). Audsley has none.
pub(crate) fn fixed_key(assignment: PriorityAssignment, spec: &TaskSpec) -> u64 {
    match assignment {
        PriorityAssignment::Rm => spec.period.get(),
        PriorityAssignment::Dm => spec.deadline.get(),
        PriorityAssignment::Explicit => u64::from(spec.priority.unwrap_or(u32::MAX)),
        PriorityAssignment::Audsley => 0,
    }
}

/// Why Audsley's algorithm found no order.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct AudsleyFailure {
    /// The unassigned tasks at the level no task could take.
    pub remaining: Vec<usize>,
    /// The tasks already placed below that level.
    pub below: Vec<usize>,
    /// The remaining task that came closest, and how it missed.
    pub closest: (usize, Shortfall),
}

/// Runs Audsley's algorithm over tasks `0..n`, listed in `offer` order (earliest first).
///
/// `test(candidate, above, below)` says whether `candidate` meets its deadline with the
/// tasks `above` at higher priority and `below` at lower priority, giving its response
/// time, or how it misses. Returns the order (highest priority first) with each task's
/// response time, or the failure.
pub(crate) fn audsley(
    offer: &[usize],
    mut test: impl FnMut(usize, &[usize], &[usize]) -> Result<u64, Shortfall>,
) -> Result<Vec<(usize, u64)>, AudsleyFailure> {
    let mut unassigned: Vec<usize> = offer.to_vec();
    // Filled from the lowest priority up.
    let mut below: Vec<usize> = Vec::with_capacity(offer.len());
    let mut placed: Vec<(usize, u64)> = Vec::with_capacity(offer.len());
    let mut above: Vec<usize> = Vec::with_capacity(offer.len());
    while !unassigned.is_empty() {
        let mut chosen = None;
        let mut closest: Option<(usize, Shortfall)> = None;
        for pos in (0..unassigned.len()).rev() {
            let candidate = unassigned[pos];
            above.clear();
            above.extend(unassigned.iter().copied().filter(|&t| t != candidate));
            match test(candidate, &above, &below) {
                Ok(response) => {
                    chosen = Some((pos, response));
                    break;
                }
                Err(shortfall) => {
                    let worse = closest
                        .as_ref()
                        .is_some_and(|(_, best)| severity(best) <= severity(&shortfall));
                    if !worse {
                        closest = Some((candidate, shortfall));
                    }
                }
            }
        }
        match chosen {
            Some((pos, response)) => {
                let task = unassigned.remove(pos);
                below.push(task);
                placed.push((task, response));
            }
            None => {
                return Err(AudsleyFailure {
                    remaining: unassigned,
                    below,
                    closest: closest.unwrap_or((
                        offer.first().copied().unwrap_or(0),
                        Shortfall::GaveUp { steps: 0 },
                    )),
                });
            }
        }
    }
    placed.reverse();
    Ok(placed)
}

fn severity(s: &Shortfall) -> f64 {
    match *s {
        Shortfall::Response {
            response, deadline, ..
        } => response.get().saturating_sub(deadline.get()) as f64 / deadline.get().max(1) as f64,
        Shortfall::Demand { window, demand } => {
            demand.get().saturating_sub(window.get()) as f64 / window.get().max(1) as f64
        }
        Shortfall::Utilization { total, limit } => total - limit,
        Shortfall::GaveUp { .. } => f64::INFINITY,
    }
}

#[cfg(test)]
mod tests {
    use super::super::fp::{Fixpoint, response_time};
    use super::super::load::{Load, STEP_LIMIT, load};
    use super::*;
    use crate::time::Nanos;

    fn rta_test(set: &[Load]) -> impl FnMut(usize, &[usize], &[usize]) -> Result<u64, Shortfall> {
        move |c, above, _below| {
            let hp: Vec<Load> = above.iter().map(|&i| set[i]).collect();
            let mut budget = STEP_LIMIT;
            match response_time(&set[c], &hp, None, 0, set[c].deadline, &mut budget) {
                Fixpoint::Found(r) => Ok(r),
                Fixpoint::Above(r) => Err(Shortfall::Response {
                    response: Nanos(r),
                    deadline: Nanos(set[c].deadline),
                    exact: false,
                }),
                Fixpoint::GaveUp => Err(Shortfall::GaveUp { steps: STEP_LIMIT }),
            }
        }
    }

    #[test]
    fn finds_an_order_deadline_monotonic_misses() {
        // Jitter breaks DM's optimality. Task a: (C 1, T 10, D 4, J 3); task b:
        // (C 2, T 10, D 3). DM puts b first: R_a = 3 + 1 + 2 = 6 > 4. Audsley puts a
        // first: R_a = 3 + 1 = 4, R_b = 1 + 2 = 3. Both meet their deadlines.
        let a = Load {
            cost: 1,
            chunk: 1,
            period: 10,
            deadline: 4,
            jitter: 3,
            blocking: 0,
        };
        let b = load(2, 10, 3);
        let set = [a, b];
        assert!(super::super::fp::analyse(&[b, a]).is_err());
        let order = audsley(&[0, 1], rta_test(&set)).unwrap();
        assert_eq!(order, vec![(0, 4), (1, 3)]);
    }

    #[test]
    fn ties_keep_offer_order() {
        // Identical tasks: any order works; the earlier one ranks higher.
        let set = [load(1, 10, 10), load(1, 10, 10), load(1, 10, 10)];
        let order = audsley(&[0, 1, 2], rta_test(&set)).unwrap();
        assert_eq!(
            order.iter().map(|&(t, _)| t).collect::<Vec<_>>(),
            vec![0, 1, 2]
        );
        let order = audsley(&[2, 0, 1], rta_test(&set)).unwrap();
        assert_eq!(
            order.iter().map(|&(t, _)| t).collect::<Vec<_>>(),
            vec![2, 0, 1]
        );
    }

    #[test]
    fn reports_the_closest_task_when_no_order_exists() {
        let set = [load(3, 5, 5), load(3, 5, 5)];
        let fail = audsley(&[0, 1], rta_test(&set)).unwrap_err();
        assert_eq!(fail.remaining, vec![0, 1]);
        assert!(fail.below.is_empty());
        assert!(matches!(fail.closest.1, Shortfall::Response { .. }));
    }

    #[test]
    fn fixed_keys() {
        let t = TaskSpec::periodic("x", Nanos::ms(10), Nanos::ms(1))
            .with_deadline(Nanos::ms(7))
            .with_priority(4);
        assert_eq!(fixed_key(PriorityAssignment::Rm, &t), 10_000_000);
        assert_eq!(fixed_key(PriorityAssignment::Dm, &t), 7_000_000);
        assert_eq!(fixed_key(PriorityAssignment::Explicit, &t), 4);
    }
}
