//! Sporadic activation latency: from the moment a producer on a general core pushes an
//! activation to the moment the job starts on the RT core, against a plain
//! crossbeam-channel handoff to a thread blocked in `recv` on the same core at the same
//! SCHED_FIFO priority, measured in the same run.
//!
//! First the two are measured alternately, one activation of each in turn, into HDR
//! histograms, and their percentiles are printed (target: executor p99 ≤ channel p99); then criterion
//! measures the mean of each. The producer paces one activation every 200 µs, so each
//! one finds the consumer asleep: this is the wake-up path, not a queue backlog.
//!
//! `RTPM_SPORADIC_SAMPLES=N` sets how many activations of each the percentiles come from
//! (10,000 by default; each pair takes 0.4 ms).
//!
//! Needs SCHED_FIFO and two CPUs. The machine is a shared, loaded 2-core VM: read the
//! figures as same-run ratios.

#![allow(clippy::unwrap_used, clippy::expect_used)] // benches: a panic is the failure report

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use hdrhistogram::Histogram;
use rtpm_rt::config::{Dispatch, Partition, Role, Scheduler};
use rtpm_rt::cpu::CpuSet;
use rtpm_rt::exec::{Activator, ExecConfig, Executor, Job, TaskId, TaskOptions, TaskSpec};
use rtpm_rt::hist::{AtomicHistogram, Percentiles};
use rtpm_rt::thread::{Policy, RtThread, ThreadBuilder};
use rtpm_rt::time::{Clock, MonotonicClock, Nanos};

const PACE: Duration = Duration::from_micros(200);

/// Waits until `t`, then returns when the next push is due: `PACE` after `t`, or `PACE`
/// from now if the producer came back late (its core was taken from it). A late producer
/// never catches up with a burst: each push must find its consumer asleep, and the
/// executor defers activations closer than the task's minimum inter-arrival time (as it
/// must), which a catch-up burst would measure instead of the wake-up.
fn pace_until(t: std::time::Instant) -> std::time::Instant {
    while std::time::Instant::now() < t {
        std::thread::sleep(Duration::from_micros(20));
    }
    (t + PACE).max(std::time::Instant::now() + PACE)
}

struct Executor1 {
    exec: Executor,
    id: TaskId,
    act: Activator<u64>,
    done: Arc<AtomicU64>,
}

fn start_executor(model: Dispatch) -> Option<(Executor1, usize, u8)> {
    let mut p = Partition::embedded_default().ok()?;
    let core = p.cores.iter_mut().find(|c| c.role == Role::Rt)?;
    core.dispatch = model;
    core.scheduler = Scheduler::Fp;
    let cpu = core.cpu;
    let mut cfg = ExecConfig::new(p);
    cfg.job_overhead = Nanos::ZERO;
    let mut exec = Executor::start(cfg).ok()?;
    let done = Arc::new(AtomicU64::new(0));
    let d = Arc::clone(&done);
    let (id, act) = exec
        .spawn_sporadic(
            TaskSpec::sporadic("rx", Nanos::us(50), Nanos::us(10)),
            TaskOptions::default().queue_capacity(256),
            move |_: &Job, _: u64| {
                d.fetch_add(1, Ordering::Release);
            },
        )
        .ok()?;
    let prio = exec.fifo_priority(id).unwrap_or(89);
    Some((
        Executor1 {
            exec,
            id,
            act,
            done,
        },
        cpu,
        prio,
    ))
}

/// A thread on `cpu` at `priority` blocked in `recv`, recording send-to-receive latency.
struct Channel {
    tx: crossbeam_channel::Sender<u64>,
    hist: Arc<AtomicHistogram>,
    done: Arc<AtomicU64>,
    thread: Option<RtThread<()>>,
}

fn start_channel(cpu: usize, priority: u8) -> Channel {
    let (tx, rx) = crossbeam_channel::bounded::<u64>(256);
    let hist = Arc::new(AtomicHistogram::new());
    let done = Arc::new(AtomicU64::new(0));
    let (h, d) = (Arc::clone(&hist), Arc::clone(&done));
    let thread = ThreadBuilder::new("chan-rx")
        .policy(Policy::Fifo { priority })
        .affinity(CpuSet::single(cpu))
        .prefault_stack(64 * 1024)
        .spawn(move || {
            let clock = MonotonicClock;
            while let Ok(sent) = rx.recv() {
                h.record(clock.now().as_nanos().saturating_sub(sent));
                d.fetch_add(1, Ordering::Release);
            }
        })
        .unwrap();
    Channel {
        tx,
        hist,
        done,
        thread: Some(thread),
    }
}

fn wait_for(counter: &AtomicU64, target: u64) {
    let t0 = std::time::Instant::now();
    while counter.load(Ordering::Acquire) < target && t0.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_micros(100));
    }
}

fn executor_block(e: &Executor1, n: u64) {
    let target = e.done.load(Ordering::Acquire) + n;
    let mut next = std::time::Instant::now() + PACE;
    for i in 0..n {
        let _ = e.act.activate(i);
        next = pace_until(next);
    }
    wait_for(&e.done, target);
}

fn channel_block(c: &Channel, n: u64) {
    let target = c.done.load(Ordering::Acquire) + n;
    let mut next = std::time::Instant::now() + PACE;
    for _ in 0..n {
        let _ = c.tx.send(MonotonicClock.now().as_nanos());
        next = pace_until(next);
    }
    wait_for(&c.done, target);
}

/// `n` activations of each, alternated one by one (executor, channel, executor, ...),
/// each `PACE` after the one before: both see the same moments of the machine.
fn interleaved_block(e: &Executor1, c: &Channel, n: u64) {
    let (te, tc) = (
        e.done.load(Ordering::Acquire) + n,
        c.done.load(Ordering::Acquire) + n,
    );
    let mut next = std::time::Instant::now() + PACE;
    for i in 0..n {
        let _ = e.act.activate(i);
        next = pace_until(next);
        let _ = c.tx.send(MonotonicClock.now().as_nanos());
        next = pace_until(next);
    }
    wait_for(&e.done, te);
    wait_for(&c.done, tc);
}

fn show(label: &str, p: &Percentiles) {
    eprintln!(
        "  {label:<26} min {:>7.1}  p50 {:>7.1}  p90 {:>7.1}  p99 {:>7.1}  p99.9 {:>7.1}  max {:>8.1} us  ({} samples)",
        p.min_ns as f64 / 1e3,
        p.p50_ns as f64 / 1e3,
        p.p90_ns as f64 / 1e3,
        p.p99_ns as f64 / 1e3,
        p.p999_ns as f64 / 1e3,
        p.max_ns as f64 / 1e3,
        p.samples
    );
}

fn benches(c: &mut Criterion) {
    let fifo = rtpm_rt::probe::sched_fifo();
    if !fifo.ok {
        eprintln!(
            "exec_sporadic: SKIPPED: SCHED_FIFO unavailable: {}",
            fifo.detail
        );
        return;
    }
    if CpuSet::allowed().map(|a| a.len()).unwrap_or(1) < 2 {
        eprintln!("exec_sporadic: SKIPPED: needs two CPUs");
        return;
    }
    let samples = match std::env::var("RTPM_SPORADIC_SAMPLES") {
        Ok(v) => match v.parse::<u64>() {
            Ok(n) if n > 0 => n,
            _ => {
                eprintln!(
                    "exec_sporadic: RTPM_SPORADIC_SAMPLES={v:?} is not a positive whole number"
                );
                return;
            }
        },
        Err(_) => 10_000,
    };
    for (name, model) in [
        ("threads", Dispatch::Threads),
        ("cooperative", Dispatch::Cooperative),
    ] {
        let Some((e, cpu, prio)) = start_executor(model) else {
            eprintln!("exec_sporadic: SKIPPED: the executor did not start");
            return;
        };
        let mut ch = start_channel(cpu, prio);
        // HDR percentiles: 10,000 activations of each (RTPM_SPORADIC_SAMPLES), alternated
        // one by one.
        interleaved_block(&e, &ch, samples);
        let report = e.exec.stats(e.id).unwrap();
        let exec_hist: Histogram<u64> = report.histograms.release_latency;
        let chan_hist = ch.hist.snapshot().unwrap();
        let (pe, pc) = (Percentiles::of(&exec_hist), Percentiles::of(&chan_hist));
        eprintln!(
            "sporadic_activation/{name}: push -> job start on CPU {cpu}, SCHED_FIFO {prio}, one every {PACE:?}"
        );
        show("executor (activator)", &pe);
        if report.deferred > 0 {
            eprintln!(
                "  note: {} activations came closer than the minimum inter-arrival time and were deferred",
                report.deferred
            );
        }
        show("crossbeam-channel handoff", &pc);
        eprintln!(
            "  ratio executor/channel: p50 {:.2}  p99 {:.2}  p99.9 {:.2}",
            pe.p50_ns as f64 / pc.p50_ns.max(1) as f64,
            pe.p99_ns as f64 / pc.p99_ns.max(1) as f64,
            pe.p999_ns as f64 / pc.p999_ns.max(1) as f64
        );
        // Criterion: the mean of each, per activation.
        let mut g = c.benchmark_group(format!("sporadic_activation_{name}"));
        g.sample_size(10).measurement_time(Duration::from_secs(4));
        g.bench_function("executor", |b| {
            b.iter_custom(|iters| {
                let before = e.exec.stats(e.id).unwrap().histograms.release_latency;
                executor_block(&e, iters);
                let after = e.exec.stats(e.id).unwrap().histograms.release_latency;
                let sum = |h: &Histogram<u64>| h.mean() * h.len() as f64;
                Duration::from_nanos((sum(&after) - sum(&before)).max(0.0) as u64)
            })
        });
        g.bench_function("crossbeam_channel", |b| {
            b.iter_custom(|iters| {
                let before = ch.hist.snapshot().unwrap();
                channel_block(&ch, iters);
                let after = ch.hist.snapshot().unwrap();
                let sum = |h: &Histogram<u64>| h.mean() * h.len() as f64;
                Duration::from_nanos((sum(&after) - sum(&before)).max(0.0) as u64)
            })
        });
        g.finish();
        drop(ch.tx);
        if let Some(t) = ch.thread.take() {
            t.join().unwrap();
        }
        e.exec.stop().unwrap();
    }
}

criterion_group!(group, benches);
criterion_main!(group);
