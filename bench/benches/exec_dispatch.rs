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
    eprintln!(
        "cooperative_dispatch: {} jobs, {} deferred (should be 0), {} dropped",
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

fn job_overhead(c: &mut Criterion) {
    let mut g = c.benchmark_group("job_overhead");
    g.sample_size(10).measurement_time(Duration::from_secs(10));
    for (name, model) in [
        ("threads", Dispatch::Threads),
        ("cooperative", Dispatch::Cooperative),
    ] {
        let Some((p, cpu, band)) = partition(model) else {
            return;
        };
        let period = Nanos::us(100);
        let spinner_prio = band.0.saturating_sub(1).max(1);
        let mut notes = Vec::new();
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let window = Duration::from_nanos(period.get() * iters.max(100));
                let mut exec = Executor::start(config(p.clone())).unwrap();
                let quiet = stolen(cpu, spinner_prio, window);
                let jobs = Arc::new(AtomicU64::new(0));
                let j2 = Arc::clone(&jobs);
                let id = exec
                    .spawn_periodic(
                        TaskSpec::periodic("tick", period, Nanos::us(10)),
                        TaskOptions::default(),
                        move |_: &Job| {
                            j2.fetch_add(1, Ordering::Relaxed);
                        },
                    )
                    .unwrap();
                std::thread::sleep(Duration::from_millis(5));
                let before = jobs.load(Ordering::Relaxed);
                let busy = stolen(cpu, spinner_prio, window);
                let n = jobs.load(Ordering::Relaxed) - before;
                let _ = id;
                exec.stop().unwrap();
                let per_job = busy.saturating_sub(quiet) / n.max(1);
                notes.push((per_job, quiet, busy, n));
                Duration::from_nanos(per_job * iters)
            })
        });
        notes.sort();
        if let Some((med, ..)) = notes.get(notes.len() / 2) {
            let (_, quiet, busy, n) = notes[notes.len() / 2];
            eprintln!(
                "job_overhead/{name}: median {med} ns per job (window: {n} jobs, {busy} ns taken with the task, {quiet} ns without)"
            );
        }
    }
    g.finish();
}

fn benches(c: &mut Criterion) {
    if !runnable() {
        return;
    }
    cooperative_dispatch(c);
    job_overhead(c);
}

criterion_group!(group, benches);
criterion_main!(group);
