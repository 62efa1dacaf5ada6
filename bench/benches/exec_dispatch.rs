//! The executor's own cost per job.
//!
//! - `cooperative_dispatch/per_job`: a cooperative core runs a backlog of sporadic jobs
//!   back to back (empty bodies); the time from one job's start to the next is what the
//!   dispatcher spends per job: popping the activation, the inter-arrival check, the
//!   ready queue, the clock reads and the histogram records. Target ≤ 1 µs.
//! - `job_overhead/{threads,cooperative}`: the CPU time one periodic job costs the RT
//!   core beyond its body — timer interrupt, release, dispatch, context switches in and
//!   out, accounting. A SCHED_FIFO spinner at the lowest priority on the RT core
//!   measures the time taken from it (gaps in its clock readings); the same window
//!   without the task is measured alternately in the same run and subtracted, and the
//!   difference is divided by the number of jobs. This is the figure admission's
//!   DEFAULT_JOB_OVERHEAD comes from.
//!
//! Needs SCHED_FIFO and two CPUs; prints why and measures nothing otherwise. The machine
//! is a shared, loaded 2-core VM: read the figures as same-run comparisons.

#![allow(clippy::unwrap_used, clippy::expect_used)] // benches: a panic is the failure report

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use rtpm_rt::config::{Dispatch, Partition, Role, Scheduler};
use rtpm_rt::cpu::CpuSet;
use rtpm_rt::exec::{ExecConfig, Executor, Job, TaskOptions, TaskSpec};
use rtpm_rt::thread::{Policy, ThreadBuilder};
use rtpm_rt::time::{Clock, MonotonicClock, Nanos};

fn partition(model: Dispatch) -> Option<(Partition, usize, (u8, u8))> {
    let mut p = Partition::embedded_default().ok()?;
    let core = p.cores.iter_mut().find(|c| c.role == Role::Rt)?;
    core.dispatch = model;
    core.scheduler = Scheduler::Fp;
    let (cpu, band) = (core.cpu, core.priority_band);
    Some((p, cpu, band))
}

fn runnable() -> bool {
    let fifo = rtpm_rt::probe::sched_fifo();
    if !fifo.ok {
        eprintln!(
            "exec_dispatch: SKIPPED: SCHED_FIFO unavailable: {}",
            fifo.detail
        );
        return false;
    }
    if CpuSet::allowed().map(|a| a.len()).unwrap_or(1) < 2 {
        eprintln!("exec_dispatch: SKIPPED: needs two CPUs");
        return false;
    }
    true
}

fn config(p: Partition) -> ExecConfig {
    let mut cfg = ExecConfig::new(p);
    // These benches measure the overhead; admission should not charge it twice.
    cfg.job_overhead = Nanos::ZERO;
    cfg
}

fn cooperative_dispatch(c: &mut Criterion) {
    let Some((p, _, _)) = partition(Dispatch::Cooperative) else {
        return;
    };
    let mut exec = Executor::start(config(p)).unwrap();
    const BATCH: usize = 4096;
    let done = Arc::new(AtomicU64::new(0));
    let first = Arc::new(AtomicU64::new(0));
    let last = Arc::new(AtomicU64::new(0));
    let (d, f, l) = (Arc::clone(&done), Arc::clone(&first), Arc::clone(&last));
    let (_, act) = exec
        .spawn_sporadic(
            // 100 ns apart at most: a backlog is released back to back, never deferred
            // to a timer (a job costs more than 100 ns).
            TaskSpec::sporadic("backlog", Nanos(100), Nanos(50)),
            TaskOptions::default().queue_capacity(BATCH),
            move |j: &Job, first_of_batch: bool| {
                if first_of_batch {
                    f.store(j.start.as_nanos(), Ordering::Relaxed);
                }
                l.store(j.start.as_nanos(), Ordering::Relaxed);
                d.fetch_add(1, Ordering::Release);
            },
        )
        .unwrap();
    let mut g = c.benchmark_group("cooperative_dispatch");
    g.sample_size(20).measurement_time(Duration::from_secs(5));
    g.bench_function("per_job", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut left = iters as usize;
            while left > 0 {
                let n = left.clamp(2, BATCH);
                let target = done.load(Ordering::Acquire) + n as u64;
                for i in 0..n {
                    while act.push(i == 0).is_err() {
                        std::hint::spin_loop();
                    }
                }
                act.wake();
                while done.load(Ordering::Acquire) < target {
                    std::thread::sleep(Duration::from_micros(50));
                }
                let span = last.load(Ordering::Relaxed) - first.load(Ordering::Relaxed);
                // n jobs have n - 1 gaps; scale to n.
                total += Duration::from_nanos(span * n as u64 / (n as u64 - 1));
                left = left.saturating_sub(n);
            }
            total
        })
    });
    g.finish();
    let report = exec.stop().unwrap();
    let t = &report.tasks[0];
    // A backlog pushed at once arrives "early" for every job but the first: each is
    // released one minimum inter-arrival time (100 ns) after the previous release, which
    // has always passed by then, so none waits on a timer.
    eprintln!(
        "cooperative_dispatch: {} jobs ({} released after the 100 ns minimum inter-arrival, none on a timer), {} dropped",
        t.completed, t.deferred, t.dropped
    );
}

/// Sums the gaps over `gap_ns` a spinner on `cpu` sees during `window`.
fn stolen(cpu: usize, priority: u8, window: Duration) -> u64 {
    let t = ThreadBuilder::new("spinner")
        .policy(Policy::Fifo { priority })
        .affinity(CpuSet::single(cpu))
        .spawn(move || {
            let clock = MonotonicClock;
            let end = clock.now().add(Nanos::from_duration(window));
            let mut prev = clock.now();
            let mut sum = 0u64;
            while prev < end {
                let now = clock.now();
                let gap = now.since(prev).get();
                if gap > 300 {
                    sum += gap;
                }
                prev = now;
            }
            sum
        })
        .unwrap();
    t.join().unwrap()
}

/// What a periodic wake-up at `PERIOD` costs the RT core, per job: (time taken from a
/// lowest-priority spinner with the waker running − without) / jobs, over `ROUNDS`
/// alternating windows. `waker` starts the periodic work and returns a job counter and
/// a stop function.
const PERIOD: Nanos = Nanos::us(100);
const ROUNDS: usize = 8;
const WINDOW: Duration = Duration::from_millis(250);

type Waker = Box<dyn FnOnce() + Send>;

fn per_job_cost(
    cpu: usize,
    spinner_prio: u8,
    start: &dyn Fn() -> (Arc<AtomicU64>, Waker),
) -> Vec<u64> {
    let mut out = Vec::new();
    for _ in 0..ROUNDS {
        let quiet = stolen(cpu, spinner_prio, WINDOW);
        let (jobs, stop) = start();
        std::thread::sleep(Duration::from_millis(5));
        let before = jobs.load(Ordering::Relaxed);
        let busy = stolen(cpu, spinner_prio, WINDOW);
        let n = jobs.load(Ordering::Relaxed) - before;
        stop();
        if let Some(per_job) = busy.saturating_sub(quiet).checked_div(n) {
            out.push(per_job);
        }
    }
    out.sort_unstable();
    out
}

/// The per-job overhead of a plain cyclictest-style thread and of the executor in both
/// models, printed (not a criterion measurement: the quantity is CPU time taken from
/// another thread, which criterion's iteration timing cannot express).
fn job_overhead() {
    let Some((_, cpu, band)) = partition(Dispatch::Threads) else {
        return;
    };
    let spinner_prio = band.0.saturating_sub(1).max(1);
    let show = |name: &str, v: &[u64]| {
        if v.is_empty() {
            eprintln!("job_overhead/{name}: no job ran");
            return;
        }
        eprintln!(
            "job_overhead/{name}: per job median {:.1} us, min {:.1} us, max {:.1} us over {} windows of {:?} at one job per {}",
            v[v.len() / 2] as f64 / 1e3,
            v[0] as f64 / 1e3,
            v[v.len() - 1] as f64 / 1e3,
            v.len(),
            WINDOW,
            PERIOD
        );
    };
    // A plain SCHED_FIFO thread sleeping on absolute clock_nanosleep: the kernel's and
    // the hypervisor's share of any wake-up.
    let plain = per_job_cost(cpu, spinner_prio, &|| {
        let jobs = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (j, s) = (Arc::clone(&jobs), Arc::clone(&stop));
        let t = ThreadBuilder::new("plain")
            .policy(Policy::Fifo { priority: band.1 })
            .affinity(CpuSet::single(cpu))
            .spawn(move || {
                let mut next = MonotonicClock.now();
                while !s.load(Ordering::Relaxed) {
                    next = next.add(PERIOD);
                    rtpm_rt::time::sleep_until(next);
                    j.fetch_add(1, Ordering::Relaxed);
                }
            })
            .unwrap();
        let stop_fn: Waker = Box::new(move || {
            stop.store(true, Ordering::Relaxed);
            t.join().unwrap();
        });
        (jobs, stop_fn)
    });
    show("plain_thread", &plain);
    for (name, model) in [
        ("threads", Dispatch::Threads),
        ("cooperative", Dispatch::Cooperative),
    ] {
        let Some((p, cpu, _)) = partition(model) else {
            return;
        };
        let v = per_job_cost(cpu, spinner_prio, &|| {
            let jobs = Arc::new(AtomicU64::new(0));
            let j = Arc::clone(&jobs);
            let mut e = Executor::start(config(p.clone())).unwrap();
            e.spawn_periodic(
                TaskSpec::periodic("tick", PERIOD, Nanos::us(10)),
                TaskOptions::default(),
                move |_: &Job| {
                    j.fetch_add(1, Ordering::Relaxed);
                },
            )
            .unwrap();
            let stop_fn: Waker = Box::new(move || {
                e.stop().unwrap();
            });
            (jobs, stop_fn)
        });
        show(name, &v);
    }
}

fn benches(c: &mut Criterion) {
    if !runnable() {
        return;
    }
    cooperative_dispatch(c);
    job_overhead();
}

criterion_group!(group, benches);
criterion_main!(group);
