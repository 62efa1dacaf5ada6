//! Admission control benchmarks (issue 3), and the per-job overhead it charges.
//!
//! - `handoff`: release + dispatch + context switch, measured as a same-core handoff
//!   between two threads pinned to one CPU that wake each other through a futex
//!   (`park`/`unpark`). Baseline in the same run: one `sched_yield` syscall on that CPU
//!   with nothing else to run. The HDR percentiles of single handoffs are printed too;
//!   `DEFAULT_JOB_OVERHEAD` comes from them.
//! - `partition`: a whole set of 1,000 random tasks partitioned onto 64 cores by
//!   first-fit decreasing (target ≤ 5 ms). Baseline: first-fit decreasing by
//!   utilisation alone, no schedulability test.
//! - `online`: one `try_admit` into a core already holding 100 tasks (target ≤ 20 µs
//!   median). Baseline: summing the core's utilisation (the cheapest possible test).
//!
//! Run: `cargo bench -p rtpm-bench --bench admission` (add a filter, e.g. `-- online`).

use std::hint::black_box;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use criterion::Criterion;
use hdrhistogram::Histogram;
use rtpm_rt::admission::{
    Admission, AdmissionOptions, CoreSpec, Heuristic, PriorityAssignment, TaskSpec,
};
use rtpm_rt::time::Nanos;

/// This thread's CPU time: unlike wall time, it leaves out the time other processes on
/// the shared VM take from us (not their effect on the caches).
fn cpu_time() -> Duration {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID)
        .map(Duration::from)
        .unwrap_or_default()
}

/// Percentiles of a histogram of nanoseconds, in microseconds.
fn percentiles_us(h: &Histogram<u64>) -> String {
    format!(
        "p50 {:.1} p99 {:.1} max {:.1}",
        h.value_at_quantile(0.5) as f64 / 1e3,
        h.value_at_quantile(0.99) as f64 / 1e3,
        h.max() as f64 / 1e3
    )
}

/// SplitMix64, so every run benchmarks the same task sets.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// `n` tasks of total utilisation `total` (UUniFast), periods log-uniform in
/// [1 ms, 1 s] (whole microseconds), half with deadlines uniform in [T/2, T].
fn random_tasks(rng: &mut Rng, n: usize, total: f64) -> Vec<TaskSpec> {
    let mut left = total;
    let mut shares = Vec::with_capacity(n);
    for i in 1..n {
        let next = left * rng.unit().powf(1.0 / (n - i) as f64);
        shares.push(left - next);
        left = next;
    }
    shares.push(left);
    shares
        .into_iter()
        .enumerate()
        .map(|(i, u)| {
            let period_us = (1000.0 * 1000f64.powf(rng.unit())).round() as u64;
            let period = Nanos::us(period_us);
            let wcet = Nanos(((u.min(0.9) * period.get() as f64) as u64).max(1_000));
            let deadline = if rng.next().is_multiple_of(2) {
                period
            } else {
                let low = (period.get() / 2).max(wcet.get());
                Nanos(low + (rng.unit() * (period.get() - low) as f64) as u64)
            };
            TaskSpec::sporadic(format!("t{i}"), period, wcet).with_deadline(deadline)
        })
        .collect()
}

fn partition(c: &mut Criterion) {
    let mut rng = Rng(1);
    // 1,000 tasks of 70% average load per core over 64 cores; half have D < T.
    let set = random_tasks(&mut rng, 1000, 0.7 * 64.0);
    let options = AdmissionOptions::exact().with_heuristic(Heuristic::FirstFit);
    let mut group = c.benchmark_group("partition/1000-tasks-64-cores");
    group.sample_size(20);
    // The project's default RT core (rt/src/default-rt-core.toml: fp, threads, cap 0.9),
    // the EDF threads model under the kernel's default SCHED_DEADLINE bandwidth, and both
    // again without a cap, where first fit packs cores to U ≈ 1 and the exact tests work
    // hardest.
    for (name, core) in [
        (
            "fp-dm/cap-0.9",
            CoreSpec::fp(PriorityAssignment::Dm).with_cap(0.9),
        ),
        (
            "edf/cap-0.9/dl-bw-0.95",
            CoreSpec::edf().with_cap(0.9).with_dl_bandwidth(0.95),
        ),
        ("fp-dm/cap-1", CoreSpec::fp(PriorityAssignment::Dm)),
        ("edf/cap-1", CoreSpec::edf()),
    ] {
        let mut check = Admission::new(vec![core; 64], options);
        let report = check.admit_all(set.clone());
        eprintln!(
            "partition {name}: {} admitted, {} refused, {} cores used",
            report.admitted(),
            report.rejected.len(),
            report.cores.iter().filter(|c| !c.tasks.is_empty()).count()
        );
        let run = || {
            let mut a = Admission::new(vec![core; 64], options);
            let specs = set.clone();
            let c0 = cpu_time();
            let t0 = Instant::now();
            let admitted = a.admit_all(specs).admitted();
            let (wall, cpu) = (t0.elapsed(), cpu_time().saturating_sub(c0));
            black_box(admitted);
            (wall, cpu)
        };
        group.bench_function(name, |b| {
            b.iter_custom(|iters| (0..iters).map(|_| run().0).sum())
        });
        let hists = (
            Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3),
            Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3),
        );
        if let (Ok(mut wall), Ok(mut cpu)) = hists {
            for _ in 0..30 {
                let (w, c) = run();
                let _ = wall.record(
                    u64::try_from(w.as_nanos())
                        .unwrap_or(u64::MAX)
                        .clamp(1, 60_000_000_000),
                );
                let _ = cpu.record(
                    u64::try_from(c.as_nanos())
                        .unwrap_or(u64::MAX)
                        .clamp(1, 60_000_000_000),
                );
            }
            eprintln!(
                "partition {name}: 30 runs, us per run: wall {}; thread cpu {}",
                percentiles_us(&wall),
                percentiles_us(&cpu)
            );
        }
    }
    // Baseline: first-fit decreasing by utilisation alone.
    let utils: Vec<f64> = set.iter().map(TaskSpec::density).collect();
    group.bench_function("baseline-utilization-ffd", |b| {
        b.iter(|| {
            let mut order: Vec<usize> = (0..utils.len()).collect();
            order.sort_by(|&x, &y| utils[y].total_cmp(&utils[x]));
            let mut load = [0f64; 64];
            let mut placed = 0;
            for i in order {
                if let Some(core) = load.iter().position(|&l| l + utils[i] <= 1.0) {
                    load[core] += utils[i];
                    placed += 1;
                }
            }
            black_box(placed)
        })
    });
    group.finish();
}

fn online(c: &mut Criterion) {
    let mut group = c.benchmark_group("online/try-admit-into-100");
    for (name, core, constrained) in [
        ("fp-dm", CoreSpec::fp(PriorityAssignment::Dm), true),
        (
            "fp-rm-implicit",
            CoreSpec::fp(PriorityAssignment::Rm),
            false,
        ),
        ("edf-qpa", CoreSpec::edf(), true),
        ("edf-implicit", CoreSpec::edf(), false),
    ] {
        let mut rng = Rng(7);
        let mut make = |n: usize, total: f64| {
            let mut tasks = random_tasks(&mut rng, n, total);
            if !constrained {
                for t in &mut tasks {
                    t.deadline = t.period;
                }
            }
            tasks
        };
        // A core holding 100 tasks at 60% load, and 64 newcomers of about 0.5% each.
        let mut base = Admission::new(vec![core], AdmissionOptions::exact());
        for t in make(100, 0.6) {
            if let Err(r) = base.try_admit(t) {
                panic!("the base set must fit: {r}");
            }
        }
        assert_eq!(base.len(), 100);
        let newcomers = make(64, 0.32);
        let admitted = newcomers
            .iter()
            .filter(|t| base.clone().try_admit((*t).clone()).is_ok())
            .count();
        eprintln!("online {name}: {admitted} of 64 newcomers admitted");
        // Each offer is timed alone on a warm core; an admitted newcomer is released
        // again, untimed, so the core always holds the same 100 tasks.
        let mut core = base.clone();
        let mut next = 0;
        let mut offer = |a: &mut Admission| -> (Duration, Duration) {
            next = (next + 1) % newcomers.len();
            let spec = newcomers[next].clone();
            let c0 = cpu_time();
            let t0 = Instant::now();
            let placed = a.try_admit(spec);
            let (wall, cpu) = (t0.elapsed(), cpu_time().saturating_sub(c0));
            if let Ok(p) = black_box(placed) {
                a.release(p.id);
            }
            (wall, cpu)
        };
        group.bench_function(name, |b| {
            b.iter_custom(|iters| (0..iters).map(|_| offer(&mut core).0).sum())
        });
        let hists = (
            Histogram::<u64>::new_with_bounds(1, 1_000_000_000, 3),
            Histogram::<u64>::new_with_bounds(1, 1_000_000_000, 3),
        );
        if let (Ok(mut wall), Ok(mut cpu)) = hists {
            for _ in 0..20_000 {
                let (w, c) = offer(&mut core);
                let _ = wall.record(
                    u64::try_from(w.as_nanos())
                        .unwrap_or(u64::MAX)
                        .clamp(1, 1_000_000_000),
                );
                let _ = cpu.record(
                    u64::try_from(c.as_nanos())
                        .unwrap_or(u64::MAX)
                        .clamp(1, 1_000_000_000),
                );
            }
            eprintln!(
                "online {name}: 20000 offers, us per try_admit: wall {} (p99.9 {:.1}); thread cpu {}",
                percentiles_us(&wall),
                wall.value_at_quantile(0.999) as f64 / 1e3,
                percentiles_us(&cpu)
            );
        }
    }
    let mut rng = Rng(7);
    let utils: Vec<f64> = random_tasks(&mut rng, 100, 0.6)
        .iter()
        .map(TaskSpec::utilization)
        .collect();
    group.bench_function("baseline-utilization-sum", |b| {
        b.iter(|| black_box(black_box(&utils).iter().sum::<f64>() + 0.005 <= 1.0))
    });
    group.finish();
}

/// The CPU both handoff threads run on: the last one this process may use.
fn handoff_cpu() -> Option<core_affinity::CoreId> {
    core_affinity::get_core_ids()?.pop()
}

/// Puts the calling thread on `cpu` under SCHED_FIFO 50 if permitted; says which.
fn enter(cpu: core_affinity::CoreId, fifo: bool) -> bool {
    core_affinity::set_for_current(cpu);
    if !fifo {
        return false;
    }
    use thread_priority::{
        RealtimeThreadSchedulePolicy, ThreadPriority, ThreadPriorityValue, ThreadSchedulePolicy,
        set_thread_priority_and_policy, thread_native_id,
    };
    let Ok(value) = ThreadPriorityValue::try_from(50u8) else {
        return false;
    };
    set_thread_priority_and_policy(
        thread_native_id(),
        ThreadPriority::Crossplatform(value),
        ThreadSchedulePolicy::Realtime(RealtimeThreadSchedulePolicy::Fifo),
    )
    .is_ok()
}

/// Runs `rounds` round trips between two threads on one CPU; calls `each` with the
/// duration of every round trip (two handoffs). Returns the total.
fn ping_pong(rounds: u64, fifo: bool, mut each: impl FnMut(Duration) + Send) -> (Duration, bool) {
    let Some(cpu) = handoff_cpu() else {
        return (Duration::ZERO, false);
    };
    // 0: the pinger's turn, 1: the ponger's turn, 2: stop.
    let turn = Arc::new(AtomicU32::new(0));
    // The pinger's handle, set before its first ping.
    let pinger: Arc<OnceLock<std::thread::Thread>> = Arc::new(OnceLock::new());
    std::thread::scope(|s| {
        let t = Arc::clone(&turn);
        let p = Arc::clone(&pinger);
        let ponger = s.spawn(move || {
            enter(cpu, fifo);
            loop {
                match t.load(Ordering::Acquire) {
                    1 => {
                        t.store(0, Ordering::Release);
                        if let Some(p) = p.get() {
                            p.unpark();
                        }
                    }
                    2 => return,
                    _ => std::thread::park(),
                }
            }
        });
        let worker = s.spawn(move || {
            let got_fifo = enter(cpu, fifo);
            let _ = pinger.set(std::thread::current());
            let start = Instant::now();
            for _ in 0..rounds {
                let t0 = Instant::now();
                turn.store(1, Ordering::Release);
                ponger.thread().unpark();
                while turn.load(Ordering::Acquire) != 0 {
                    std::thread::park();
                }
                each(t0.elapsed());
            }
            let total = start.elapsed();
            turn.store(2, Ordering::Release);
            ponger.thread().unpark();
            (total, got_fifo)
        });
        worker.join().unwrap_or((Duration::ZERO, false))
    })
}

fn handoff(c: &mut Criterion) {
    let Some(cpu) = handoff_cpu() else {
        eprintln!("handoff: skipped, no CPU affinity available");
        return;
    };
    let mut group = c.benchmark_group("handoff/same-core");
    for fifo in [false, true] {
        let label = if fifo { "sched-fifo" } else { "sched-other" };
        group.bench_function(format!("futex-round-trip/{label}"), |b| {
            b.iter_custom(|iters| ping_pong(iters, fifo, |_| {}).0)
        });
    }
    group.bench_function("baseline-sched-yield", |b| {
        b.iter_custom(|iters| {
            std::thread::scope(|s| {
                s.spawn(|| {
                    enter(cpu, false);
                    let start = Instant::now();
                    for _ in 0..iters {
                        std::thread::yield_now();
                    }
                    start.elapsed()
                })
                .join()
                .unwrap_or(Duration::ZERO)
            })
        })
    });
    group.finish();

    // Percentiles of single handoffs (half a round trip), for DEFAULT_JOB_OVERHEAD.
    for fifo in [false, true] {
        let Ok(mut hist) = Histogram::<u64>::new_with_bounds(1, 1_000_000_000, 3) else {
            return;
        };
        let (_, got_fifo) = ping_pong(20_000, fifo, |d| {
            let ns = u64::try_from(d.as_nanos() / 2).unwrap_or(u64::MAX).max(1);
            let _ = hist.record(ns.min(1_000_000_000));
        });
        let policy = if got_fifo {
            "SCHED_FIFO 50"
        } else {
            "SCHED_OTHER"
        };
        eprintln!(
            "handoff ({policy}, CPU {}), 20000 round trips, ns per handoff: p50 {} p99 {} p99.9 {} max {}",
            cpu.id,
            hist.value_at_quantile(0.5),
            hist.value_at_quantile(0.99),
            hist.value_at_quantile(0.999),
            hist.max()
        );
    }
}

/// Whether the command line's filter (if any) selects a benchmark group named `name`,
/// so the percentile runs beside criterion's are skipped for groups filtered out.
fn wanted(name: &str) -> bool {
    // Criterion's options that take a value; anything else not starting with '-' is
    // the filter.
    const WITH_VALUE: [&str; 14] = [
        "--warm-up-time",
        "--measurement-time",
        "--sample-size",
        "--nresamples",
        "--noise-threshold",
        "--confidence-level",
        "--significance-level",
        "--save-baseline",
        "--baseline",
        "--load-baseline",
        "--profile-time",
        "--color",
        "--output-format",
        "--plotting-backend",
    ];
    let mut filters = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if WITH_VALUE.contains(&a.as_str()) {
            args.next();
        } else if !a.starts_with('-') {
            filters.push(a);
        }
    }
    filters.is_empty()
        || filters
            .iter()
            .any(|f| name.contains(f.as_str()) || f.contains(name))
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    if wanted("partition") {
        partition(&mut c);
    }
    if wanted("online") {
        online(&mut c);
    }
    if wanted("handoff") {
        handoff(&mut c);
    }
    c.final_summary();
}
