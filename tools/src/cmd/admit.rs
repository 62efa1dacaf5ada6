//! `rtpm admit FILE`: analyse a task-set file with the admission controller.
//!
//! The file is read and validated completely before any analysis: every problem is
//! reported (naming the file, the task and the field), and then nothing else is printed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use rtpm_rt::admission::{
    Admission, AdmissionOptions, CoreSpec, DEFAULT_JOB_OVERHEAD, Heuristic, Policy,
    PriorityAssignment, Rejection, Report, TaskKind, TaskSpec,
};
use rtpm_rt::probe;
use rtpm_rt::time::Nanos;
use serde::{Deserialize, Serialize};

use super::{BAD_INPUT, NO, OK};

/// The flags of this subcommand (its help text is on the `Command` variant). Each flag
/// overrides the file's `[analysis]` key of the same meaning.
#[derive(Args, Debug)]
pub struct AdmitArgs {
    /// The task-set file (TOML): an optional [analysis] table and one [[task]] table per
    /// task. Run `rtpm admit --help` for the format.
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// Scheduling policy of every RT core (default fp).
    #[arg(long, value_enum)]
    policy: Option<PolicyArg>,
    /// Fixed-priority assignment (default dm); ignored under edf.
    #[arg(long, value_enum)]
    priority: Option<PriorityArg>,
    /// Number of RT cores to partition the tasks over (default 1).
    #[arg(long, value_name = "N")]
    cores: Option<usize>,
    /// Partitioning heuristic: first, best or worst fit decreasing (default ffd).
    #[arg(long, value_enum)]
    heuristic: Option<HeuristicArg>,
    /// Utilisation cap of every core, 0 < X <= 1 (default 1).
    #[arg(long, value_name = "X")]
    cap: Option<f64>,
    /// Cooperative dispatch: every job runs to completion (non-preemptive analysis).
    #[arg(long)]
    non_preemptive: bool,
    /// Per-job overhead added to every wcet, e.g. "10us" (default: the measured
    /// DEFAULT_JOB_OVERHEAD, 25us).
    #[arg(long, value_name = "DURATION")]
    overhead: Option<Nanos>,
    /// SCHED_DEADLINE bandwidth bounding preemptive EDF cores, 0 < X <= 1 (default: this
    /// machine's sched_rt_runtime_us / sched_rt_period_us).
    #[arg(long, value_name = "X")]
    dl_bandwidth: Option<f64>,
    /// Print exactly one JSON object on stdout instead of tables.
    #[arg(long)]
    json: bool,
}

/// `policy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
enum PolicyArg {
    Edf,
    Fp,
}

/// `priority`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
enum PriorityArg {
    Rm,
    Dm,
    Audsley,
    Explicit,
}

/// `heuristic`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
enum HeuristicArg {
    Ffd,
    Bfd,
    Wfd,
}

/// `kind`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum KindArg {
    Periodic,
    Sporadic,
}

/// The file's top level.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTop {
    analysis: Option<toml::Table>,
    task: Option<Vec<toml::Table>>,
}

/// `[analysis]`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct AnalysisFile {
    policy: Option<PolicyArg>,
    priority: Option<PriorityArg>,
    preemptive: Option<bool>,
    cores: Option<usize>,
    heuristic: Option<HeuristicArg>,
    utilization_cap: Option<f64>,
    overhead: Option<Nanos>,
}

/// One `[[task]]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TaskFile {
    name: String,
    kind: Option<KindArg>,
    period: Nanos,
    wcet: Nanos,
    deadline: Option<Nanos>,
    offset: Option<Nanos>,
    jitter: Option<Nanos>,
    blocking: Option<Nanos>,
    priority: Option<u32>,
    core: Option<usize>,
    burst: Option<u32>,
}

/// The analysis settings in force, after flags override the file.
#[derive(Clone, Copy, Debug)]
struct Settings {
    policy: Policy,
    preemptive: bool,
    cores: usize,
    heuristic: Heuristic,
    cap: f64,
    overhead: Nanos,
    dl_bandwidth: f64,
}

/// Runs `rtpm admit`.
pub fn run(args: AdmitArgs) -> u8 {
    let (settings, specs) = match load(&args) {
        Ok(loaded) => loaded,
        Err(problems) => {
            for p in &problems {
                eprintln!("rtpm admit: {p}");
            }
            return BAD_INPUT;
        }
    };
    let mut admission = Admission::new(
        vec![core_spec(&settings); settings.cores],
        AdmissionOptions {
            heuristic: settings.heuristic,
            job_overhead: settings.overhead,
        },
    );
    let started = Instant::now();
    let mut last_note = started;
    let report = admission.admit_all_with(specs, |done, total| {
        let now = Instant::now();
        if now.duration_since(last_note) >= Duration::from_secs(1) {
            eprintln!("rtpm admit: analysing… {done}/{total} tasks offered");
            last_note = now;
        }
    });
    if args.json {
        match serde_json::to_string(&json_view(&settings, &report)) {
            Ok(text) => println!("{text}"),
            Err(e) => {
                eprintln!("rtpm admit: cannot write JSON: {e}");
                return BAD_INPUT;
            }
        }
    } else {
        print!("{}", human_view(&args.file, &settings, &report));
    }
    if report.schedulable() { OK } else { NO }
}

fn core_spec(s: &Settings) -> CoreSpec {
    let core = match s.policy {
        Policy::Edf => CoreSpec::edf(),
        Policy::Fp(a) => CoreSpec::fp(a),
    };
    let core = if s.preemptive {
        core
    } else {
        core.non_preemptive()
    };
    core.with_cap(s.cap).with_dl_bandwidth(s.dl_bandwidth)
}

/// A deserialisation error as "field `x`: what" (toml says "what\nin `x`").
fn field_error(e: toml::de::Error) -> String {
    let text = e.to_string();
    let text = text.trim_end();
    match text.rsplit_once("\nin `") {
        Some((what, field)) => {
            let field = field.trim_end_matches('`');
            format!("field `{field}`: {}", what.trim())
        }
        None => text.replace('\n', " "),
    }
}

/// Reads, parses and validates the file; every problem found, or the settings and tasks.
fn load(args: &AdmitArgs) -> Result<(Settings, Vec<TaskSpec>), Vec<String>> {
    let path = args.file.display().to_string();
    let text = std::fs::read_to_string(&args.file).map_err(|e| {
        vec![format!(
            "cannot read `{path}`: {e}; give the path of a task-set file (see `rtpm admit --help`)"
        )]
    })?;
    let table: toml::Table = toml::from_str(&text).map_err(|e| {
        vec![format!(
            "`{path}` is not valid TOML: {}",
            e.to_string().trim()
        )]
    })?;
    let top: FileTop = toml::Value::Table(table).try_into().map_err(|e| {
        vec![format!(
            "`{path}`: {}; the file holds an optional [analysis] table and [[task]] tables",
            field_error(e)
        )]
    })?;
    let mut problems = Vec::new();
    let analysis: AnalysisFile = match top.analysis {
        Some(t) => toml::Value::Table(t).try_into().unwrap_or_else(|e| {
            problems.push(format!("`{path}`: [analysis]: {}", field_error(e)));
            AnalysisFile::default()
        }),
        None => AnalysisFile::default(),
    };
    let settings = settings(args, &analysis, &path, &mut problems);
    let tasks = top.task.unwrap_or_default();
    if tasks.is_empty() {
        problems.push(format!(
            "`{path}`: no [[task]] tables; declare at least one task (name, period, wcet)"
        ));
    }
    let mut specs = Vec::with_capacity(tasks.len());
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (i, table) in tasks.into_iter().enumerate() {
        let label = match table.get("name").and_then(toml::Value::as_str) {
            Some(name) => format!("task `{name}`"),
            None => format!("task #{} (no name)", i + 1),
        };
        let task: TaskFile = match toml::Value::Table(table).try_into() {
            Ok(t) => t,
            Err(e) => {
                problems.push(format!("`{path}`: {label}: {}", field_error(e)));
                continue;
            }
        };
        if let Some(first) = seen.insert(task.name.clone(), i + 1) {
            problems.push(format!(
                "`{path}`: task `{}`: duplicate `name` (task #{first} has it too); names must be unique",
                task.name
            ));
        }
        let spec = spec_of(task);
        if let Err(e) = spec.validate() {
            problems.push(format!("`{path}`: {e}"));
        }
        task_against_settings(&spec, &settings, &path, &mut problems);
        specs.push(spec);
    }
    if problems.is_empty() {
        Ok((settings, specs))
    } else {
        Err(problems)
    }
}

fn spec_of(t: TaskFile) -> TaskSpec {
    TaskSpec {
        kind: match t.kind {
            Some(KindArg::Sporadic) => TaskKind::Sporadic,
            _ => TaskKind::Periodic,
        },
        deadline: t.deadline.unwrap_or(t.period),
        offset: t.offset.unwrap_or(Nanos::ZERO),
        jitter: t.jitter.unwrap_or(Nanos::ZERO),
        blocking: t.blocking.unwrap_or(Nanos::ZERO),
        priority: t.priority,
        core: t.core,
        burst: t.burst.unwrap_or(1),
        ..TaskSpec::periodic(t.name, t.period, t.wcet)
    }
}

/// Flags over file over defaults, each checked.
fn settings(
    args: &AdmitArgs,
    file: &AnalysisFile,
    path: &str,
    problems: &mut Vec<String>,
) -> Settings {
    let assignment = match args.priority.or(file.priority).unwrap_or(PriorityArg::Dm) {
        PriorityArg::Rm => PriorityAssignment::Rm,
        PriorityArg::Dm => PriorityAssignment::Dm,
        PriorityArg::Audsley => PriorityAssignment::Audsley,
        PriorityArg::Explicit => PriorityAssignment::Explicit,
    };
    let policy = match args.policy.or(file.policy).unwrap_or(PolicyArg::Fp) {
        PolicyArg::Edf => Policy::Edf,
        PolicyArg::Fp => Policy::Fp(assignment),
    };
    let heuristic = match args
        .heuristic
        .or(file.heuristic)
        .unwrap_or(HeuristicArg::Ffd)
    {
        HeuristicArg::Ffd => Heuristic::FirstFit,
        HeuristicArg::Bfd => Heuristic::BestFit,
        HeuristicArg::Wfd => Heuristic::WorstFit,
    };
    let cores = args.cores.or(file.cores).unwrap_or(1);
    if cores == 0 {
        let source = if args.cores.is_some() {
            "--cores".to_string()
        } else {
            format!("`{path}`: [analysis] `cores`")
        };
        problems.push(format!("{source}: 0 cores; give at least 1"));
    }
    let cap = args.cap.or(file.utilization_cap).unwrap_or(1.0);
    if !(cap > 0.0 && cap <= 1.0) {
        let source = if args.cap.is_some() {
            "--cap".to_string()
        } else {
            format!("`{path}`: [analysis] `utilization_cap`")
        };
        problems.push(format!("{source}: {cap} is not in (0, 1]"));
    }
    let dl_bandwidth = args.dl_bandwidth.unwrap_or_else(probe::dl_bandwidth);
    if !(dl_bandwidth > 0.0 && dl_bandwidth <= 1.0) {
        problems.push(format!("--dl-bandwidth: {dl_bandwidth} is not in (0, 1]"));
    }
    Settings {
        policy,
        preemptive: !args.non_preemptive && file.preemptive.unwrap_or(true),
        cores: cores.max(1),
        heuristic,
        cap,
        overhead: args
            .overhead
            .or(file.overhead)
            .unwrap_or(DEFAULT_JOB_OVERHEAD),
        dl_bandwidth,
    }
}

/// The checks that depend on the analysis settings: priorities and pins.
fn task_against_settings(spec: &TaskSpec, s: &Settings, path: &str, problems: &mut Vec<String>) {
    let name = &spec.name;
    let explicit = s.policy == Policy::Fp(PriorityAssignment::Explicit);
    match (spec.priority, explicit) {
        (Some(_), false) => problems.push(format!(
            "`{path}`: task `{name}`: field `priority` is only used with priority = \"explicit\" (the analysis uses {}); remove it or choose explicit priorities",
            match s.policy {
                Policy::Edf => "edf".to_string(),
                Policy::Fp(a) => format!("fp with {a}"),
            }
        )),
        (None, true) => problems.push(format!(
            "`{path}`: task `{name}`: field `priority` is missing; with priority = \"explicit\" every task needs one (1 is the highest)"
        )),
        _ => {}
    }
    if let Some(core) = spec.core
        && core >= s.cores
    {
        problems.push(format!(
            "`{path}`: task `{name}`: field `core` = {core}, but there are only {} RT cores (0..={}); raise `cores` or --cores",
            s.cores,
            s.cores - 1
        ));
    }
}

#[derive(Serialize)]
struct JsonView {
    schedulable: bool,
    policy: &'static str,
    cores: Vec<JsonCore>,
    rejected: Vec<JsonRejected>,
}

#[derive(Serialize)]
struct JsonCore {
    core: usize,
    utilization: f64,
    tasks: Vec<JsonTask>,
}

#[derive(Serialize)]
struct JsonTask {
    name: String,
    priority: Option<u32>,
    response_time_ns: Option<u64>,
    deadline_ns: u64,
}

#[derive(Serialize)]
struct JsonRejected {
    name: String,
    reason: String,
    response_time_ns: Option<u64>,
}

/// Rounded to 6 decimals, so float noise does not show.
fn round6(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

fn json_view(s: &Settings, report: &Report) -> JsonView {
    JsonView {
        schedulable: report.schedulable(),
        policy: match s.policy {
            Policy::Edf => "edf",
            Policy::Fp(_) => "fp",
        },
        cores: report
            .cores
            .iter()
            .map(|c| JsonCore {
                core: c.core,
                utilization: round6(c.utilization),
                tasks: c
                    .tasks
                    .iter()
                    .map(|t| JsonTask {
                        name: t.name.clone(),
                        priority: t.rank,
                        response_time_ns: t.response_time.map(Nanos::get),
                        deadline_ns: t.deadline.get(),
                    })
                    .collect(),
            })
            .collect(),
        rejected: report
            .rejected
            .iter()
            .map(|r: &Rejection| JsonRejected {
                name: r.task.clone(),
                reason: r.reason_text(),
                response_time_ns: r.response_time().map(Nanos::get),
            })
            .collect(),
    }
}

fn human_view(file: &Path, s: &Settings, report: &Report) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let model = if s.preemptive {
        "preemptive (threads)"
    } else {
        "non-preemptive (cooperative)"
    };
    let policy = match s.policy {
        Policy::Edf => "edf".to_string(),
        Policy::Fp(a) => format!("fp/{a}"),
    };
    let _ = writeln!(
        out,
        "{}: {policy}, {model}, {} core(s), {}, cap {:.3}, overhead {} per job{}",
        file.display(),
        s.cores,
        match s.heuristic {
            Heuristic::FirstFit => "first-fit decreasing",
            Heuristic::BestFit => "best-fit decreasing",
            Heuristic::WorstFit => "worst-fit decreasing",
        },
        s.cap,
        s.overhead,
        if s.policy == Policy::Edf && s.preemptive {
            format!(", SCHED_DEADLINE bandwidth {:.3}", s.dl_bandwidth)
        } else {
            String::new()
        }
    );
    for c in &report.cores {
        let _ = writeln!(
            out,
            "\ncore {}  U={:.3}  {} task(s)",
            c.core,
            c.utilization,
            c.tasks.len()
        );
        if c.tasks.is_empty() {
            continue;
        }
        let width = c
            .tasks
            .iter()
            .map(|t| t.name.chars().count())
            .max()
            .unwrap_or(4)
            .max(4);
        let _ = writeln!(
            out,
            "  {:<width$}  {:>4}  {:>6}  {:>10}  {:>10}  verdict",
            "task", "prio", "U", "deadline", "wcrt"
        );
        for t in &c.tasks {
            let prio = t.rank.map_or_else(|| "-".to_string(), |r| r.to_string());
            let wcrt = t
                .response_time
                .map_or_else(|| "-".to_string(), |r| r.to_string());
            let _ = writeln!(
                out,
                "  {:<width$}  {prio:>4}  {:>6.3}  {:>10}  {wcrt:>10}  ok",
                t.name,
                t.utilization,
                t.deadline.to_string(),
            );
        }
    }
    if !report.rejected.is_empty() {
        let _ = writeln!(out, "\nrejected ({}):", report.rejected.len());
        for r in &report.rejected {
            let _ = writeln!(out, "  {}: {}", r.task, r.reason_text());
        }
    }
    let total = report.admitted() + report.rejected.len();
    let _ = writeln!(
        out,
        "\nschedulable: {} ({} of {total} tasks admitted)",
        if report.schedulable() { "yes" } else { "no" },
        report.admitted()
    );
    out
}
