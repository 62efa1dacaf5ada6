//! `rtpm latency`: a cyclictest-grade measurement of the executor, with a same-run
//! baseline, an HdrHistogram percentile file and an SVG plot.

mod cyclictest;
mod load;
mod measure;
pub mod plot;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};
use hdrhistogram::Histogram;
use rtpm_rt::config::{Dispatch, Role, Scheduler};
use rtpm_rt::hist::{Percentiles, hgrm};
use rtpm_rt::time::Nanos;
use serde::Serialize;

use super::{BAD_INPUT, NO, OK};
use load::Load;
use measure::{Interleave, Plan, Totals};

/// The execution model to measure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Model {
    /// One SCHED_FIFO thread per task.
    Threads,
    /// One SCHED_FIFO dispatcher running every task's jobs.
    Cooperative,
}

/// Measure the executor's wake-up latency on an RT core, cyclictest-style.
///
/// N periodic tasks with empty bodies run on the first RT core (fixed priority, in the
/// chosen model), each released every INTERVAL on absolute CLOCK_MONOTONIC times; the
/// latency of a job is its start minus its release. With --baseline, the same process
/// alternates on the same core with a plain loop using cyclictest's method (SCHED_FIFO
/// at the same priority, absolute clock_nanosleep, mlockall), and prints the ratios
/// executor/baseline at each percentile. By default (--interleave releases) both run at
/// at once and their wake-ups alternate, the baseline's half a spacing after the
/// executor's, so a stall of the machine falls on both alike (both restart every --slice,
/// and count nothing in the first and last 20 ms of a slice, where the other starts and
/// stops); --interleave slices alternates whole --slice periods instead. --compare-cyclictest also runs the real
/// cyclictest (rt-tests) with matching parameters afterwards, as a third column.
///
/// DURATION is measured on each side: with --baseline --interleave slices the run takes
/// about twice as long.
/// Needs SCHED_FIFO (root or CAP_SYS_NICE) and two CPUs (one rt, one general). Files go
/// to --out: executor.hgrm, baseline.hgrm, cyclictest.hgrm (HdrHistogram percentile
/// distributions, µs) and latency.svg. Progress goes to stderr.
///
/// Example: rtpm latency --tasks 2 --interval 1ms --duration 30s --model cooperative --baseline --load stress-ng
#[derive(Args, Debug)]
pub struct LatencyArgs {
    /// A config folder holding cores/cpuN.toml; without it, the embedded default (last
    /// allowed CPU rt). The first RT core is measured.
    #[arg(long, value_name = "DIR")]
    config: Option<PathBuf>,
    /// Periodic tasks (and baseline threads), 1..=32.
    #[arg(long, value_name = "N", default_value_t = 1)]
    tasks: usize,
    /// Their period, e.g. 1ms or 250us (at least 50us).
    #[arg(long, value_name = "DURATION", default_value = "1ms")]
    interval: Nanos,
    /// How long each side measures, e.g. 60s.
    #[arg(long, value_name = "DURATION", default_value = "60s")]
    duration: Nanos,
    /// The execution model of the measured RT core (overrides its file).
    #[arg(long, value_enum, default_value_t = Model::Threads)]
    model: Model,
    /// Load on the general cores while measuring.
    #[arg(long, value_enum, default_value_t = Load::None)]
    load: Load,
    /// Let best-effort work use the RT core's idle time at SCHED_IDLE (share_idle = true);
    /// with --load builtin a spinner runs there, to measure the cost of sharing.
    #[arg(long)]
    share_idle: bool,
    /// Alternate with a cyclictest-method baseline in the same process, same core.
    #[arg(long)]
    baseline: bool,
    /// Also run the real cyclictest (rt-tests) with matching parameters.
    #[arg(long)]
    compare_cyclictest: bool,
    /// How the baseline alternates with the executor: `releases` runs both at once, their
    /// wake-ups alternating on the core; `slices` alternates whole slices.
    #[arg(long, value_enum, default_value_t = Interleave::Releases)]
    interleave: Interleave,
    /// How long each slice lasts: the executor (and the baseline) restart between slices,
    /// so their releases take a new phase; with --interleave slices the baseline runs its
    /// own slice after each.
    #[arg(long, value_name = "DURATION", default_value = "1s")]
    slice: Nanos,
    /// Print one JSON object on stdout instead of the table.
    #[arg(long)]
    json: bool,
    /// Where the .hgrm files and the SVG go.
    #[arg(long, value_name = "DIR", default_value = "rtpm-latency")]
    out: PathBuf,
}

#[derive(Serialize)]
struct Ratios {
    p50: f64,
    p99: f64,
    p999: f64,
}

#[derive(Serialize)]
struct JsonOut {
    executor: Percentiles,
    baseline: Option<Percentiles>,
    ratios: Option<Ratios>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cyclictest: Option<Percentiles>,
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

fn bad(msg: String) -> u8 {
    eprintln!("rtpm latency: {msg}");
    BAD_INPUT
}

/// Runs `rtpm latency`.
pub fn run(a: LatencyArgs) -> u8 {
    if !(1..=32).contains(&a.tasks) {
        return bad(format!("--tasks {} is out of range; use 1..=32", a.tasks));
    }
    if a.interval < Nanos::us(50) {
        return bad(format!(
            "--interval {} is too short; use at least 50us",
            a.interval
        ));
    }
    if a.duration < a.interval {
        return bad(format!(
            "--duration {} is shorter than --interval {}; measure for at least one period",
            a.duration, a.interval
        ));
    }
    if a.slice < Nanos::ms(100) {
        return bad(format!(
            "--slice {} is too short; use at least 100ms",
            a.slice
        ));
    }
    let mut partition = match super::partition(a.config.as_deref()) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let Some(core) = partition.cores.iter_mut().find(|c| c.role == Role::Rt) else {
        return bad(
            "the partition has no RT core to measure: give one core `role = \"rt\"` in --config DIR/cores/cpuN.toml (the embedded default needs two CPUs)".into(),
        );
    };
    core.scheduler = Scheduler::Fp;
    core.dispatch = match a.model {
        Model::Threads => Dispatch::Threads,
        Model::Cooperative => Dispatch::Cooperative,
    };
    core.share_idle = a.share_idle;
    let plan = Plan {
        cpu: core.cpu,
        model: core.dispatch,
        band_hi: core.priority_band.1,
        tasks: a.tasks,
        interval: a.interval,
        idle_hog: a.share_idle && a.load == Load::Builtin,
        baseline: a.baseline.then_some(a.interleave),
        partition: partition.clone(),
    };
    if a.compare_cyclictest && !cyclictest::installed() {
        return bad(
            "--compare-cyclictest: cyclictest is not installed; install rt-tests with bench/scripts/install-load-tools.sh".into(),
        );
    }
    if let Err(e) = std::fs::create_dir_all(&a.out) {
        return bad(format!(
            "--out {}: cannot create the folder: {e}",
            a.out.display()
        ));
    }
    let general = partition.general_cores();
    let running_load = match load::start(a.load, general) {
        Ok(l) => l,
        Err(e) => return bad(e),
    };
    eprintln!(
        "rtpm latency: {} task(s) every {} on CPU {} ({:?} model, SCHED_FIFO band top {}), load: {}{}, {} per side{}",
        a.tasks,
        a.interval,
        plan.cpu,
        a.model,
        plan.band_hi,
        running_load.description,
        if a.share_idle { ", share_idle on" } else { "" },
        a.duration,
        match plan.baseline {
            Some(Interleave::Releases) =>
                ", both at once, the baseline's wake-ups alternating with the executor's"
                    .to_string(),
            Some(Interleave::Slices) => format!(", in alternate slices of {}", a.slice),
            None => format!(", in slices of {}", a.slice),
        }
    );
    let mut totals = match Totals::new() {
        Ok(t) => t,
        Err(e) => return fail(e),
    };
    let total = a.duration.to_duration();
    let slice = a.slice.to_duration();
    let mut done = Duration::ZERO;
    let mut k = 0;
    let show = |done: Duration, e: Percentiles, b: Option<Percentiles>| {
        eprintln!(
            "  [{:>5.1}s/{:.0}s] executor {} samples p99 {:.1}us{}",
            done.as_secs_f64(),
            total.as_secs_f64(),
            e.samples,
            e.p99_ns as f64 / 1e3,
            match b {
                Some(b) => format!(
                    ", baseline {} samples p99 {:.1}us",
                    b.samples,
                    b.p99_ns as f64 / 1e3
                ),
                None => String::new(),
            }
        );
    };
    while done < total {
        let len = slice.min(total - done);
        if let Err(e) = measure::executor_slice(&plan, len, &mut totals) {
            return fail(e);
        }
        if plan.baseline == Some(Interleave::Slices)
            && let Err(e) = measure::baseline_slice(&plan, len, &mut totals)
        {
            return fail(e);
        }
        done += len;
        k += 1;
        if k % 5 == 0 || done >= total {
            let e = Percentiles::of(&totals.executor);
            let b = a.baseline.then(|| Percentiles::of(&totals.baseline));
            show(done, e, b);
        }
    }
    let cyclic = if a.compare_cyclictest {
        let prio = totals.priorities.first().copied().unwrap_or(plan.band_hi);
        eprintln!("  running cyclictest for {} ...", a.duration);
        match cyclictest::run(
            &cyclictest::Params {
                cpu: plan.cpu,
                threads: a.tasks,
                priority: prio,
                interval: a.interval,
                duration: a.duration,
            },
            &a.out.join("cyclictest.hist"),
        ) {
            Ok((h, line)) => {
                eprintln!("  {line}");
                Some(h)
            }
            Err(e) => return fail(e),
        }
    } else {
        None
    };
    drop(running_load);
    if let Err(e) = write_files(&a, &totals, cyclic.as_ref()) {
        return fail(e);
    }
    for e in &totals.events {
        eprintln!("  event: {e}");
    }
    if totals.misses > 0 {
        eprintln!(
            "  note: {} executor jobs missed their deadline",
            totals.misses
        );
    }
    let exec = Percentiles::of(&totals.executor);
    let base = a.baseline.then(|| Percentiles::of(&totals.baseline));
    let cyc = cyclic.as_ref().map(Percentiles::of);
    if a.json {
        let out = JsonOut {
            executor: exec,
            baseline: base,
            ratios: base.map(|b| Ratios {
                p50: ratio(exec.p50_ns, b.p50_ns),
                p99: ratio(exec.p99_ns, b.p99_ns),
                p999: ratio(exec.p999_ns, b.p999_ns),
            }),
            cyclictest: cyc,
        };
        match serde_json::to_string(&out) {
            Ok(s) => println!("{s}"),
            Err(e) => return fail(e.to_string()),
        }
    } else {
        print_table(exec, base, cyc);
        println!(
            "files: {}/executor.hgrm{}{} and {}/latency.svg",
            a.out.display(),
            if a.baseline { ", baseline.hgrm" } else { "" },
            if cyc.is_some() {
                ", cyclictest.hgrm"
            } else {
                ""
            },
            a.out.display()
        );
    }
    OK
}

fn fail(e: String) -> u8 {
    eprintln!("rtpm latency: {e}");
    NO
}

fn write_files(a: &LatencyArgs, t: &Totals, cyclic: Option<&Histogram<u64>>) -> Result<(), String> {
    let write = |name: &str, text: String| {
        let path = a.out.join(name);
        std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
    };
    write("executor.hgrm", hgrm(&t.executor))?;
    let mut series = vec![plot::Series {
        label: "executor",
        colour: "#d62728",
        hist: &t.executor,
    }];
    if a.baseline {
        write("baseline.hgrm", hgrm(&t.baseline))?;
        series.push(plot::Series {
            label: "baseline (cyclictest method, same run)",
            colour: "#1f77b4",
            hist: &t.baseline,
        });
    }
    if let Some(c) = cyclic {
        write("cyclictest.hgrm", hgrm(c))?;
        series.push(plot::Series {
            label: "cyclictest (rt-tests)",
            colour: "#2ca02c",
            hist: c,
        });
    }
    let title = format!(
        "rtpm latency: {} task(s) every {}, {} model, load {}{}",
        a.tasks,
        a.interval,
        format!("{:?}", a.model).to_lowercase(),
        format!("{:?}", a.load).to_lowercase(),
        if a.share_idle { ", share_idle" } else { "" }
    );
    write("latency.svg", plot::svg(&title, &series))
}

fn print_table(e: Percentiles, b: Option<Percentiles>, c: Option<Percentiles>) {
    let us = |v: u64| format!("{:.1}", v as f64 / 1e3);
    type Pick = fn(&Percentiles) -> u64;
    let rows: [(&str, Pick); 6] = [
        ("min", |p| p.min_ns),
        ("p50", |p| p.p50_ns),
        ("p90", |p| p.p90_ns),
        ("p99", |p| p.p99_ns),
        ("p99.9", |p| p.p999_ns),
        ("max", |p| p.max_ns),
    ];
    let mut header = format!("{:<8}{:>14}", "(us)", "executor");
    if b.is_some() {
        header.push_str(&format!("{:>14}{:>10}", "baseline", "ratio"));
    }
    if c.is_some() {
        header.push_str(&format!("{:>14}", "cyclictest"));
    }
    println!("{header}");
    for (name, f) in rows {
        let mut line = format!("{name:<8}{:>14}", us(f(&e)));
        if let Some(b) = &b {
            line.push_str(&format!("{:>14}{:>10.2}", us(f(b)), ratio(f(&e), f(b))));
        }
        if let Some(c) = &c {
            line.push_str(&format!("{:>14}", us(f(c))));
        }
        println!("{line}");
    }
    let mut samples = format!("{:<8}{:>14}", "samples", e.samples);
    if let Some(b) = &b {
        samples.push_str(&format!("{:>14}{:>10}", b.samples, ""));
    }
    if let Some(c) = &c {
        samples.push_str(&format!("{:>14}", c.samples));
    }
    println!("{samples}");
}
