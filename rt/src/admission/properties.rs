//! Property tests: the analysis against the reference simulator, on thousands of random
//! task sets of 2–12 tasks with small integer parameters (periods divide 2520, so a
//! hyperperiod is at most 2520 time units and a simulation stays short).
//!
//! - soundness, for every test and model: a set admitted to a core meets every deadline
//!   in simulation, with offsets, release jitter, sporadic arrivals and sporadic bursts
//!   (2 or 3 jobs arriving together) drawn at random;
//! - exactness, for preemptive fixed priority (RTA) and preemptive EDF (QPA) under
//!   synchronous periodic release without jitter or blocking: a refused set misses a
//!   deadline in simulation, and for fixed priority every analysed worst-case response
//!   time equals the simulated one;
//! - the incremental online path agrees with a from-scratch analysis after every offer
//!   and release, and Audsley's assignment is optimal.
//!
//! Each property runs `PROPTEST_CASES` cases (default 2000).

use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::FileFailurePersistence;

use super::fp;
use super::load::Load;
use super::sim::{SimConfig, SimPolicy, SimTask, hyperperiod, simulate};
use super::*;
use crate::time::Nanos;

/// Cases per property: `PROPTEST_CASES`, or 2000. Failing cases are kept beside this
/// file (`properties.proptest-regressions`) and re-run first.
fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    ProptestConfig {
        failure_persistence: Some(Box::new(FileFailurePersistence::SourceParallel(
            "proptest-regressions",
        ))),
        ..ProptestConfig::with_cases(cases)
    }
}

/// The divisors of 2520 from 2 to 140.
const PERIODS: [u64; 34] = [
    2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 14, 15, 18, 20, 21, 24, 28, 30, 35, 36, 40, 42, 45, 56, 60, 63,
    70, 72, 84, 90, 105, 120, 126, 140,
];

#[derive(Clone, Debug)]
struct Raw {
    period: u64,
    weight: u64,
    implicit: bool,
    deadline: u64,
    jitter: u64,
    blocking: u64,
    offset: u64,
    sporadic: bool,
    priority: u32,
}

fn raw_task() -> impl Strategy<Value = Raw> {
    (
        select(PERIODS.to_vec()),
        1u64..=100,
        any::<bool>(),
        0u64..=100,
        0u64..=100,
        0u64..=100,
        0u64..=100,
        any::<bool>(),
        1u32..=4,
    )
        .prop_map(
            |(period, weight, implicit, deadline, jitter, blocking, offset, sporadic, priority)| {
                Raw {
                    period,
                    weight,
                    implicit,
                    deadline,
                    jitter,
                    blocking,
                    offset,
                    sporadic,
                    priority,
                }
            },
        )
}

/// 2–12 tasks and a target utilisation in percent.
fn raw_set() -> impl Strategy<Value = (Vec<Raw>, u64)> {
    (proptest::collection::vec(raw_task(), 2..=12), 30u64..=110)
}

/// Which optional features a generated set uses.
#[derive(Clone, Copy, Debug)]
struct Shape {
    constrained: bool,
    jitter: bool,
    blocking: bool,
    offsets: bool,
    sporadic: bool,
    /// Some sporadic tasks take a burst of 2 or 3 jobs per window.
    bursts: bool,
}

const PLAIN: Shape = Shape {
    constrained: true,
    jitter: false,
    blocking: false,
    offsets: false,
    sporadic: false,
    bursts: false,
};

const EVERYTHING: Shape = Shape {
    constrained: true,
    jitter: true,
    blocking: true,
    offsets: true,
    sporadic: true,
    bursts: true,
};

/// Spreads `u_pct` percent of utilisation over the tasks by weight; one time unit is
/// one nanosecond.
fn build(raw: &[Raw], u_pct: u64, shape: Shape) -> Vec<TaskSpec> {
    let total_weight: u64 = raw.iter().map(|r| r.weight).sum();
    raw.iter()
        .enumerate()
        .map(|(i, r)| {
            let t = r.period;
            let c = ((u_pct * r.weight * t) as f64 / (100 * total_weight) as f64).round() as u64;
            let c = c.clamp(1, t);
            let d = if r.implicit || !shape.constrained {
                t
            } else {
                c + (t - c) * r.deadline / 100
            };
            let mut spec = TaskSpec::periodic(format!("t{i}"), Nanos(t), Nanos(c))
                .with_deadline(Nanos(d))
                .with_priority(r.priority);
            if shape.jitter {
                spec.jitter = Nanos((d - c) * r.jitter / 200);
            }
            if shape.blocking {
                spec.blocking = Nanos((d - c) * r.blocking / 400);
            }
            if shape.offsets {
                spec.offset = Nanos(t * r.offset / 100);
            }
            if shape.sporadic && r.sporadic {
                spec.kind = TaskKind::Sporadic;
                // the window's cost split over a burst of 2 or 3 jobs
                let burst = 1 + r.weight % 3;
                if shape.bursts && burst > 1 && c >= burst {
                    spec.wcet = Nanos(c / burst);
                    spec.burst = burst as u32;
                }
            }
            spec
        })
        .collect()
}

fn sim_task(spec: &TaskSpec, overhead: Nanos, rank: u32) -> SimTask {
    SimTask {
        period: spec.period.get(),
        cost: spec.wcet.get() + overhead.get(),
        deadline: spec.deadline.get(),
        offset: spec.offset.get(),
        jitter: spec.jitter.get(),
        sporadic: spec.kind == TaskKind::Sporadic,
        burst: spec.burst,
        rank,
    }
}

fn sim_policy(core: &CoreSpec) -> SimPolicy {
    match core.policy {
        Policy::Edf => SimPolicy::Edf,
        Policy::Fp(_) => SimPolicy::FixedPriority,
    }
}

/// Synchronous periodic release over one hyperperiod.
fn simulate_synchronous(
    tasks: &[SimTask],
    policy: SimPolicy,
    preemptive: bool,
) -> super::sim::SimOutcome {
    let h = hyperperiod(tasks.iter().map(|t| t.period)).unwrap_or(1);
    simulate(
        tasks,
        &SimConfig {
            policy,
            preemptive,
            horizon: h,
            seed: 0,
        },
    )
}

/// The priority order a fixed assignment gives a whole set (ties in list order).
fn fixed_order(specs: &[TaskSpec], assignment: PriorityAssignment) -> Vec<usize> {
    let mut order: Vec<usize> = (0..specs.len()).collect();
    order.sort_by_key(|&i| super::assign::fixed_key(assignment, &specs[i]));
    order
}

fn policies() -> impl Strategy<Value = CoreSpec> {
    select(vec![
        CoreSpec::edf(),
        CoreSpec::fp(PriorityAssignment::Rm),
        CoreSpec::fp(PriorityAssignment::Dm),
        CoreSpec::fp(PriorityAssignment::Audsley),
        CoreSpec::fp(PriorityAssignment::Explicit),
    ])
}

proptest! {
    #![proptest_config(config())]

    /// Preemptive RTA is exact under synchronous release without jitter or blocking:
    /// refused sets miss in simulation, admitted ones meet every deadline with exactly
    /// the analysed worst-case response times.
    #[test]
    fn fp_rta_is_exact((raw, u) in raw_set(), dm in any::<bool>()) {
        let assignment = if dm { PriorityAssignment::Dm } else { PriorityAssignment::Rm };
        let specs = build(&raw, u, PLAIN);
        let mut a = Admission::new(vec![CoreSpec::fp(assignment)], AdmissionOptions::exact());
        let report = a.admit_all(specs.clone());
        let order = fixed_order(&specs, assignment);
        let tasks: Vec<SimTask> = order.iter().enumerate()
            .map(|(rank, &i)| sim_task(&specs[i], Nanos::ZERO, rank as u32))
            .collect();
        let out = simulate_synchronous(&tasks, SimPolicy::FixedPriority, true);
        prop_assert_eq!(report.schedulable(), out.all_met(), "{:?} {:?}", report.rejected, out.first_miss);
        if report.schedulable() {
            let analysed: Vec<&str> = report.cores[0].tasks.iter().map(|t| t.name.as_str()).collect();
            let expected: Vec<&str> = order.iter().map(|&i| specs[i].name.as_str()).collect();
            prop_assert_eq!(analysed, expected);
            for (rank, t) in report.cores[0].tasks.iter().enumerate() {
                prop_assert_eq!(t.response_time, Some(Nanos(out.worst_response[rank])), "{}", t.name);
            }
        }
    }

    /// Preemptive EDF with QPA is exact under synchronous release without jitter or
    /// blocking.
    #[test]
    fn edf_qpa_is_exact((raw, u) in raw_set(), constrained in any::<bool>()) {
        let shape = Shape { constrained, ..PLAIN };
        let specs = build(&raw, u, shape);
        let mut a = Admission::new(vec![CoreSpec::edf()], AdmissionOptions::exact());
        let report = a.admit_all(specs.clone());
        let tasks: Vec<SimTask> = specs.iter().map(|s| sim_task(s, Nanos::ZERO, 0)).collect();
        let out = simulate_synchronous(&tasks, SimPolicy::Edf, true);
        prop_assert_eq!(report.schedulable(), out.all_met(), "{:?} {:?}", report.rejected, out.first_miss);
    }

    /// Every test, preemptive or not, on 1–3 cores: whatever is admitted to a core
    /// meets every deadline in simulation, with offsets, jitter and sporadic arrivals.
    #[test]
    fn admitted_sets_never_miss_in_simulation(
        (raw, u) in raw_set(),
        core in policies(),
        preemptive in any::<bool>(),
        cores in 1usize..=3,
        heuristic in select(vec![Heuristic::FirstFit, Heuristic::BestFit, Heuristic::WorstFit]),
        overhead in 0u64..=1,
        seed in any::<u64>(),
    ) {
        let core = if preemptive { core } else { core.non_preemptive() };
        // More cores take more load.
        let specs = build(&raw, u * cores as u64, EVERYTHING);
        let options = AdmissionOptions::exact()
            .with_heuristic(heuristic)
            .with_job_overhead(Nanos(overhead));
        let mut a = Admission::new(vec![core; cores], options);
        let report = a.admit_all(specs.clone());
        for c in &report.cores {
            if c.tasks.is_empty() {
                continue;
            }
            let admitted: Vec<SimTask> = c.tasks.iter().enumerate().map(|(rank, t)| {
                let spec = specs.iter().find(|s| s.name == t.name).unwrap();
                sim_task(spec, Nanos(overhead), rank as u32)
            }).collect();
            let h = hyperperiod(admitted.iter().map(|t| t.period)).unwrap();
            let o_max = admitted.iter().map(|t| t.offset).max().unwrap_or(0);
            for (horizon, seed) in [(h, 0), (o_max + 2 * h, seed)] {
                let mut tasks = admitted.clone();
                if seed == 0 {
                    // Synchronous periodic release.
                    for t in &mut tasks {
                        t.offset = 0;
                        t.jitter = 0;
                        t.sporadic = false;
                    }
                }
                let out = simulate(&tasks, &SimConfig {
                    policy: sim_policy(&core),
                    preemptive,
                    horizon,
                    seed,
                });
                prop_assert!(out.all_met(), "core {} ({}): {:?} missed {:?}", c.core, core, tasks, out.first_miss);
            }
            // Fixed priority reports a response time for every task, within its deadline.
            if core.assignment().is_some() {
                for t in &c.tasks {
                    prop_assert!(t.response_time.is_some_and(|r| r <= t.deadline), "{:?}", t);
                }
            }
        }
    }

    /// The online path (incremental, with its caches) agrees with a from-scratch
    /// analysis after every offer and every release.
    #[test]
    fn online_admission_matches_a_fresh_analysis(
        (raw, u) in raw_set(),
        dm in any::<bool>(),
        jitter in any::<bool>(),
        ops in proptest::collection::vec((any::<bool>(), 0usize..12), 4..40),
    ) {
        let assignment = if dm { PriorityAssignment::Dm } else { PriorityAssignment::Rm };
        let shape = Shape { jitter, blocking: jitter, ..PLAIN };
        let specs = build(&raw, u, shape);
        let mut a = Admission::new(vec![CoreSpec::fp(assignment)], AdmissionOptions::exact());
        let mut admitted: Vec<(TaskId, usize)> = Vec::new();
        for (offer, pick) in ops {
            let current: Vec<(TaskId, TaskSpec)> = a.core_tasks(0).map(|(id, s, _)| (id, s.clone())).collect();
            let loads: Vec<Load> = current.iter().map(|(_, s)| Load::of(s, Nanos::ZERO)).collect();
            if offer || admitted.is_empty() {
                let spec = specs[pick % specs.len()].clone();
                let key = super::assign::fixed_key(assignment, &spec);
                let at = current.partition_point(|(_, s)| super::assign::fixed_key(assignment, s) <= key);
                let mut candidate = loads.clone();
                candidate.insert(at, Load::of(&spec, Nanos::ZERO));
                let fresh = fp::analyse(&candidate);
                match a.try_admit(spec) {
                    Ok(p) => {
                        let responses = fresh.map_err(|e| TestCaseError::fail(format!("admitted, but fresh analysis fails: {e:?}")))?;
                        prop_assert_eq!(p.rank, Some(at as u32 + 1));
                        prop_assert_eq!(p.response_time, Some(Nanos(responses[at])));
                        admitted.push((p.id, pick));
                    }
                    Err(r) => prop_assert!(fresh.is_err(), "refused ({}), but fresh analysis passes", r),
                }
            } else {
                let (id, _) = admitted.remove(pick % admitted.len());
                prop_assert!(a.release(id).is_some());
            }
            // Every admitted task's response time matches a fresh analysis.
            let now: Vec<(TaskId, TaskSpec)> = a.core_tasks(0).map(|(id, s, _)| (id, s.clone())).collect();
            let loads: Vec<Load> = now.iter().map(|(_, s)| Load::of(s, Nanos::ZERO)).collect();
            let fresh = fp::analyse(&loads).map_err(|e| TestCaseError::fail(format!("state unschedulable: {e:?}")))?;
            for (k, (id, _)) in now.iter().enumerate() {
                prop_assert_eq!(a.response_time(*id), Some(Nanos(fresh[k])));
            }
        }
    }

    /// Audsley's assignment is optimal: when it refuses, no priority order passes; and
    /// it accepts whatever deadline-monotonic accepts.
    #[test]
    fn audsley_is_optimal(
        (raw, u) in (proptest::collection::vec(raw_task(), 2..=5), 50u64..=110),
        preemptive in any::<bool>(),
    ) {
        let specs = build(&raw, u, Shape { offsets: false, sporadic: false, ..EVERYTHING });
        let core = |a| if preemptive { CoreSpec::fp(a) } else { CoreSpec::fp(a).non_preemptive() };
        let mut audsley = Admission::new(vec![core(PriorityAssignment::Audsley)], AdmissionOptions::exact());
        let by_audsley = audsley.admit_all(specs.clone()).schedulable();
        let mut dm = Admission::new(vec![core(PriorityAssignment::Dm)], AdmissionOptions::exact());
        let by_dm = dm.admit_all(specs.clone()).schedulable();
        prop_assert!(by_audsley || !by_dm, "DM admits what Audsley refuses");
        if !by_audsley {
            let loads: Vec<Load> = specs.iter().map(|s| Load::of(s, Nanos::ZERO)).collect();
            let mut order: Vec<usize> = (0..loads.len()).collect();
            let analyse = |o: &[usize]| {
                let set: Vec<Load> = o.iter().map(|&i| loads[i]).collect();
                if preemptive { fp::analyse(&set).is_ok() } else { super::np::fp_analyse(&set).is_ok() }
            };
            let mut any = analyse(&order);
            while !any && next_permutation(&mut order) {
                any = analyse(&order);
            }
            prop_assert!(!any, "order {:?} passes, Audsley refused", order);
        }
    }
}

fn next_permutation(v: &mut [usize]) -> bool {
    let Some(i) = (1..v.len()).rev().find(|&i| v[i - 1] < v[i]) else {
        return false;
    };
    let j = (i..v.len()).rev().find(|&j| v[j] > v[i - 1]).unwrap_or(i);
    v.swap(i - 1, j);
    v[i..].reverse();
    true
}

/// The generator must produce both verdicts often, or the properties above would hold
/// vacuously.
#[test]
fn generated_sets_cover_both_verdicts() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let samples = 400;
    let (mut fp_ok, mut edf_ok, mut edf_constrained) = (0, 0, 0);
    for _ in 0..samples {
        let (raw, u) = raw_set().new_tree(&mut runner).unwrap().current();
        let specs = build(&raw, u, PLAIN);
        edf_constrained += usize::from(specs.iter().any(|s| s.deadline < s.period));
        let mut a = Admission::new(
            vec![CoreSpec::fp(PriorityAssignment::Dm)],
            AdmissionOptions::exact(),
        );
        fp_ok += usize::from(a.admit_all(specs.clone()).schedulable());
        let mut a = Admission::new(vec![CoreSpec::edf()], AdmissionOptions::exact());
        edf_ok += usize::from(a.admit_all(specs).schedulable());
    }
    eprintln!("of {samples}: fp admits {fp_ok}, edf admits {edf_ok}, {edf_constrained} have D < T");
    for (what, n) in [("fp", fp_ok), ("edf", edf_ok)] {
        assert!(
            n > samples / 5 && n < samples * 4 / 5,
            "{what} admits {n} of {samples}"
        );
    }
    assert!(edf_constrained > samples / 2);
    // The soundness property sees bursts, and admits sets that hold them, under the
    // cooperative model too.
    let (mut with_burst, mut np_admitted_burst) = (0, 0);
    for _ in 0..samples {
        let (raw, u) = raw_set().new_tree(&mut runner).unwrap().current();
        let specs = build(&raw, u, EVERYTHING);
        if specs.iter().any(|s| s.burst > 1) {
            with_burst += 1;
            let mut a = Admission::new(
                vec![CoreSpec::fp(PriorityAssignment::Dm).non_preemptive()],
                AdmissionOptions::exact(),
            );
            let report = a.admit_all(specs.clone());
            let admitted = report.cores.iter().flat_map(|c| &c.tasks);
            np_admitted_burst += usize::from(
                admitted
                    .into_iter()
                    .any(|t| specs.iter().any(|s| s.name == t.name && s.burst > 1)),
            );
        }
    }
    eprintln!(
        "of {samples}: {with_burst} hold a burst, {np_admitted_burst} admitted one non-preemptively"
    );
    assert!(with_burst > samples / 4, "{with_burst}");
    assert!(np_admitted_burst > samples / 20, "{np_admitted_burst}");
}
