//! Partitioning: the order tasks are offered in, and the order cores are tried in.
//!
//! A whole set is offered in decreasing density `(wcet + overhead) / deadline` (the
//! utilisation, for implicit deadlines), ties in file order, with pinned tasks first:
//! they have only one place to go, so they should not find it taken. Each task then goes
//! to a core chosen by the [`Heuristic`]: the first core that admits it (first fit), the
//! admitting core with the least spare capacity left (best fit) or with the most (worst
//! fit). Spare capacity is the core's limit (its cap, and for preemptive EDF the
//! SCHED_DEADLINE bandwidth) minus its utilisation with the task.

use super::load::Load;
use super::options::Heuristic;

/// Indices of `loads` in offer order. `pinned[i]` says whether task `i` is pinned.
pub(crate) fn offer_order(loads: &[Load], pinned: &[bool]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..loads.len()).collect();
    let density = |i: usize| loads[i].cost as f64 / loads[i].deadline.max(1) as f64;
    // Stable: equal keys keep file order.
    order.sort_by(|&a, &b| {
        pinned[b]
            .cmp(&pinned[a])
            .then_with(|| density(b).total_cmp(&density(a)))
    });
    order
}

/// The order to try cores in for a task of utilisation `u`, given each core's spare
/// capacity before it (`spare[c] = limit − utilisation`).
pub(crate) fn core_order(heuristic: Heuristic, spare: &[f64], u: f64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..spare.len()).collect();
    let left = |c: usize| spare[c] - u;
    match heuristic {
        Heuristic::FirstFit => {}
        // Cores the task cannot fit by utilisation go last (they will refuse anyway).
        Heuristic::BestFit => order.sort_by(|&a, &b| {
            (left(a) < 0.0)
                .cmp(&(left(b) < 0.0))
                .then_with(|| left(a).total_cmp(&left(b)))
        }),
        Heuristic::WorstFit => order.sort_by(|&a, &b| left(b).total_cmp(&left(a))),
    }
    order
}

#[cfg(test)]
mod tests {
    use super::super::load::load;
    use super::*;

    #[test]
    fn offers_pinned_first_then_by_density() {
        let loads = [
            load(1, 10, 10), // 0.1
            load(1, 10, 2),  // density 0.5
            load(3, 10, 10), // 0.3
            load(1, 10, 10), // 0.1, pinned
            load(3, 10, 10), // 0.3, tie with 2
        ];
        let pinned = [false, false, false, true, false];
        assert_eq!(offer_order(&loads, &pinned), vec![3, 1, 2, 4, 0]);
    }

    #[test]
    fn heuristics_order_cores_by_spare_capacity() {
        let spare = [0.5, 0.2, 0.9, 0.1];
        assert_eq!(
            core_order(Heuristic::FirstFit, &spare, 0.15),
            vec![0, 1, 2, 3]
        );
        assert_eq!(
            core_order(Heuristic::BestFit, &spare, 0.15),
            vec![1, 0, 2, 3]
        );
        assert_eq!(
            core_order(Heuristic::WorstFit, &spare, 0.15),
            vec![2, 0, 1, 3]
        );
    }
}
