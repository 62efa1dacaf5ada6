//! One measuring slice of each side, on the same core at the same SCHED_FIFO priority.
//!
//! **Executor slice:** the executor starts, `N` periodic tasks with empty bodies are
//! admitted on the RT core (period = interval, task `i` offset by `i·interval/N`), they
//! run for the slice, the executor stops, and every task's release-latency histogram
//! (job start − release) joins the total.
//!
//! **Baseline:** cyclictest's method, in this process: `N` plain threads, each at the
//! SCHED_FIFO priority its executor task had (the dispatcher's, in the cooperative
//! model), pinned to the same core, with memory locked, sleeping with
//! `clock_nanosleep(TIMER_ABSTIME)` on releases of the same period and recording
//! `now − release` after each wake-up. It runs either in its own slice, after the
//! executor's ([`Interleave::Slices`]), or during the executor's slice, each thread
//! released half a spacing after its executor task ([`Interleave::Releases`]): the
//! core then sees executor, baseline, executor, ... wake-ups, `interval / 2N` apart, as
//! cyclictest's own threads share a core when it runs several.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use hdrhistogram::Histogram;
use rtpm_rt::config::{Dispatch, Partition};
use rtpm_rt::cpu::CpuSet;
use rtpm_rt::exec::{ExecConfig, Executor, Job, TaskOptions, TaskSpec};
use rtpm_rt::hist::AtomicHistogram;
use rtpm_rt::thread::{Policy, ThreadBuilder};
use rtpm_rt::time::{Clock, Instant, MonotonicClock, Nanos, sleep_until};

use super::load;

/// How the baseline alternates with the executor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Interleave {
    /// Both run at once, their wake-ups alternating on the core.
    Releases,
    /// Whole slices alternate: the executor's, then the baseline's.
    Slices,
}

/// What to measure.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The partition, with the measured RT core set to the chosen model.
    pub partition: Partition,
    /// The measured RT CPU.
    pub cpu: usize,
    /// Its model.
    pub model: Dispatch,
    /// Its priority band's top.
    pub band_hi: u8,
    /// How many tasks (and baseline threads).
    pub tasks: usize,
    /// Their period.
    pub interval: Nanos,
    /// Run a SCHED_IDLE spinner on the RT core (builtin load with --share-idle).
    pub idle_hog: bool,
    /// Whether (and how) the baseline runs.
    pub baseline: Option<Interleave>,
}

impl Plan {
    fn offset(&self, i: usize) -> Nanos {
        Nanos(self.interval.get() * i as u64 / self.tasks as u64)
    }
}

/// What both sides have measured so far.
pub struct Totals {
    /// Executor release latencies (ns).
    pub executor: Histogram<u64>,
    /// Baseline wake-up latencies (ns).
    pub baseline: Histogram<u64>,
    /// The SCHED_FIFO priority of each task (from the first executor slice).
    pub priorities: Vec<u8>,
    /// Executor deadline misses.
    pub misses: u64,
    /// Executor events (warnings, demotions).
    pub events: Vec<String>,
}

impl Totals {
    /// Empty totals.
    pub fn new() -> Result<Totals, String> {
        Ok(Totals {
            executor: rtpm_rt::hist::empty().map_err(|e| e.to_string())?,
            baseline: rtpm_rt::hist::empty().map_err(|e| e.to_string())?,
            priorities: Vec::new(),
            misses: 0,
            events: Vec::new(),
        })
    }
}

/// Under [`Interleave::Releases`], how much of each end of a slice neither side counts:
/// the other side's start-up (thread creation, stack prefault, `mlock`) and stop fall
/// there, not among the counted wake-ups.
pub const MARGIN: Duration = Duration::from_millis(20);

/// Runs the executor for `len`, and under [`Interleave::Releases`] the baseline with it,
/// both counting only the wake-ups released between [`MARGIN`] after the start and
/// [`MARGIN`] before the end. Each slice starts both anew, so the phase of their
/// releases against the machine's own periodic events (the host's ticks, its scheduler's
/// slices) changes from slice to slice: a phase that one side kept for a whole run would
/// give that side a whole run of good or bad luck.
pub fn executor_slice(plan: &Plan, len: Duration, t: &mut Totals) -> Result<(), String> {
    let mut exec = Executor::start(ExecConfig::new(plan.partition.clone()))
        .map_err(|e| format!("the executor did not start: {e}"))?;
    let core = exec
        .rt_cpus()
        .iter()
        .position(|c| *c == plan.cpu)
        .ok_or_else(|| format!("CPU {} is not an RT core of the partition", plan.cpu))?;
    let wcet = Nanos::us(20).min(Nanos(plan.interval.get() / 2));
    let mut ids = Vec::new();
    for i in 0..plan.tasks {
        let spec = TaskSpec::periodic(format!("lat{i}"), plan.interval, wcet)
            .with_offset(plan.offset(i))
            .pinned(core);
        let id = exec
            .spawn_periodic(spec, TaskOptions::default(), |_: &Job| {})
            .map_err(|e| format!("task lat{i} was not admitted: {e}"))?;
        ids.push(id);
    }
    if t.priorities.is_empty() {
        t.priorities = ids
            .iter()
            .map(|id| match plan.model {
                Dispatch::Threads => exec.fifo_priority(*id).unwrap_or(plan.band_hi),
                Dispatch::Cooperative => plan.band_hi,
            })
            .collect();
    }
    let stop_idle = Arc::new(AtomicBool::new(false));
    if plan.idle_hog {
        let pool = exec.pool().ok_or("the executor has no pool")?;
        pool.submit_idle(load::spinner(Arc::clone(&stop_idle)))
            .map_err(|e| e.to_string())?;
    }
    let releases = plan.baseline == Some(Interleave::Releases);
    if releases {
        // Half a spacing after each executor task: interval / 2N.
        let shift = Nanos(plan.interval.get() / (2 * plan.tasks as u64));
        let start = MonotonicClock.now();
        let end = start.add(Nanos::from_duration(len));
        let margin = Nanos::from_duration(MARGIN.min(len / 4));
        let (from, until) = (start.add(margin), Instant(end.as_nanos() - margin.get()));
        let priorities = t.priorities.clone();
        let baseline = Baseline::spawn(plan, exec.epoch(), shift, end, (from, until), &priorities)?;
        let snapshot = |exec: &Executor| -> Result<Vec<Histogram<u64>>, String> {
            ids.iter()
                .map(|id| {
                    exec.stats(*id)
                        .map(|r| r.histograms.release_latency)
                        .map_err(|e| e.to_string())
                })
                .collect()
        };
        sleep_until(from);
        let first = snapshot(&exec)?;
        sleep_until(until);
        let last = snapshot(&exec)?;
        for (mut l, f) in last.into_iter().zip(first) {
            l.subtract(&f).map_err(|e| format!("{e:?}"))?;
            t.executor.add(&l).map_err(|e| format!("{e:?}"))?;
        }
        baseline.join(&mut t.baseline)?;
    } else {
        std::thread::sleep(len);
    }
    stop_idle.store(true, std::sync::atomic::Ordering::Relaxed);
    let report = exec.stop().map_err(|e| e.to_string())?;
    for task in &report.tasks {
        if !releases {
            t.executor
                .add(&task.histograms.release_latency)
                .map_err(|e| format!("{e:?}"))?;
        }
        t.misses += task.deadline_misses;
    }
    for e in report.events {
        let line = format!("{e:?}");
        if !t.events.contains(&line) {
            t.events.push(line);
        }
    }
    Ok(())
}

/// Runs the cyclictest-method baseline alone for `len` ([`Interleave::Slices`]).
pub fn baseline_slice(plan: &Plan, len: Duration, t: &mut Totals) -> Result<(), String> {
    let stop_idle = Arc::new(AtomicBool::new(false));
    let idle = if plan.idle_hog {
        Some(load::idle_thread(&stop_idle, plan.cpu)?)
    } else {
        None
    };
    let now = MonotonicClock.now();
    let end = now.add(Nanos::from_duration(len));
    let priorities = t.priorities.clone();
    let r = run_baseline(plan, now, Nanos::ZERO, end, &priorities, &mut t.baseline);
    stop_idle.store(true, std::sync::atomic::Ordering::Relaxed);
    if let Some(th) = idle {
        let _ = th.join();
    }
    r
}

/// Runs the baseline's threads until `end`, thread `i` released at `epoch + shift +
/// offset(i) + k·interval`, and adds what they measured to `into`.
fn run_baseline(
    plan: &Plan,
    epoch: Instant,
    shift: Nanos,
    end: Instant,
    priorities: &[u8],
    into: &mut Histogram<u64>,
) -> Result<(), String> {
    Baseline::spawn(plan, epoch, shift, end, (epoch, end), priorities)?.join(into)
}

/// The baseline's threads while they run.
struct Baseline {
    threads: Vec<rtpm_rt::thread::RtThread<()>>,
    hists: Vec<Arc<AtomicHistogram>>,
    /// Held until the threads are joined.
    _idle_latency: Option<rtpm_rt::thread::IdleLatency>,
}

impl Baseline {
    /// Starts the threads: they run until `end`, thread `i` released at `epoch + shift +
    /// offset(i) + k·interval`, and count the wake-ups released in `window` (from, until).
    fn spawn(
        plan: &Plan,
        epoch: Instant,
        shift: Nanos,
        end: Instant,
        window: (Instant, Instant),
        priorities: &[u8],
    ) -> Result<Baseline, String> {
        rtpm_rt::thread::lock_memory().map_err(|e| e.to_string())?;
        // cyclictest's method includes its idle-latency request (0: idle CPUs poll), which
        // the executor holds too (ExecConfig::idle_latency); without root neither has it.
        let idle_latency = rtpm_rt::thread::hold_idle_latency(Nanos(0)).ok();
        let mut threads = Vec::new();
        let mut hists = Vec::new();
        for i in 0..plan.tasks {
            let priority = priorities.get(i).copied().unwrap_or(plan.band_hi);
            let interval = plan.interval;
            let offset = Nanos(plan.offset(i).get() + shift.get());
            let h = Arc::new(AtomicHistogram::new());
            let into = Arc::clone(&h);
            let th = ThreadBuilder::new(format!("baseline-{i}"))
                .policy(Policy::Fifo { priority })
                .affinity(CpuSet::single(plan.cpu))
                .stack_size(256 * 1024)
                .prefault_stack(64 * 1024)
                .spawn(move || cyclic(epoch, offset, interval, end, window, &into))
                .map_err(|e| format!("baseline thread {i}: {e}"))?;
            threads.push(th);
            hists.push(h);
        }
        Ok(Baseline {
            threads,
            hists,
            _idle_latency: idle_latency,
        })
    }

    /// Waits for the threads to end and adds what they measured to `into`.
    fn join(self, into: &mut Histogram<u64>) -> Result<(), String> {
        for th in self.threads {
            th.join()
                .map_err(|_| "a baseline thread panicked".to_string())?;
        }
        for h in &self.hists {
            let snap = h.snapshot().map_err(|e| e.to_string())?;
            into.add(&snap).map_err(|e| format!("{e:?}"))?;
        }
        Ok(())
    }
}

/// cyclictest's measuring loop: sleep until the next absolute release, read the clock,
/// record the difference. Releases are `epoch + offset + k·interval`, from the first that
/// comes after the thread has started (as the executor's tasks do), so the time it takes
/// to start the thread never counts as latency.
fn cyclic(
    epoch: Instant,
    offset: Nanos,
    interval: Nanos,
    end: Instant,
    (from, until): (Instant, Instant),
    h: &AtomicHistogram,
) {
    let clock = MonotonicClock;
    let earliest = clock.now().add(Nanos::us(200));
    let base = epoch.add(offset);
    let k = earliest.since(base).get().div_ceil(interval.get().max(1));
    let mut next = base.add(Nanos(k * interval.get()));
    while next < end {
        sleep_until(next);
        let now = clock.now();
        if next >= from && next < until {
            h.record(now.since(next).get());
        }
        next = next.add(interval);
    }
}
