//! Per-core configuration and the CPU partition.
//!
//! A config directory holds one file per core, `cores/cpu0.toml`, `cores/cpu1.toml`, …:
//!
//! ```toml
//! role = "rt"                # "rt" | "general"
//! scheduler = "fp"           # rt only: "edf" | "fp"
//! dispatch = "threads"       # rt only: "threads" (preemptive) | "cooperative"
//! utilization_cap = 0.9      # rt only: 0 < x <= 1
//! priority_band = [50, 89]   # rt only: SCHED_FIFO priorities, 1 <= lo <= hi <= 99
//! shield = false             # rt only: ask for an exclusive cpuset (`rtpm shield`)
//! share_idle = false         # rt only: best-effort threads may use idle time at SCHED_IDLE
//! fallback = "fifo"          # rt only, edf + threads: use SCHED_FIFO if SCHED_DEADLINE is refused
//! ```
//!
//! An allowed core without a file is `general`. Validation is complete and up front:
//! every problem in every file is collected, each naming the file, the key and what is
//! valid, and an invalid directory yields no [`Partition`] at all, so nothing can be
//! applied from it.
//!
//! Without a directory, [`Partition::embedded_default`] makes the last allowed core `rt`
//! (with the compiled-in settings of `default-rt-core.toml`) and the rest `general`. With
//! one allowed core there is no RT core: everything runs best-effort, with a warning.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::cpu::CpuSet;
use crate::error::Result;
use crate::sys;

/// The compiled-in settings of the default RT core.
pub const DEFAULT_RT_CORE: &str = include_str!("default-rt-core.toml");

/// What a core is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reserved for admitted real-time work.
    Rt,
    /// Everything else: the system, best-effort threads, network reactors by default.
    General,
}

/// The scheduling analysis and policy of an RT core.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheduler {
    /// Earliest deadline first (SCHED_DEADLINE in the threads model).
    Edf,
    /// Fixed priority (SCHED_FIFO priorities).
    Fp,
}

/// How an RT core runs its jobs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Dispatch {
    /// One preemptive thread per task.
    Threads,
    /// One non-preemptive dispatcher thread per core.
    Cooperative,
}

/// What an EDF core in the threads model does when SCHED_DEADLINE cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Fallback {
    /// Run the tasks under SCHED_FIFO (deadline-monotonic order) instead.
    Fifo,
}

/// The validated configuration of one core.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CoreConfig {
    /// The CPU id.
    pub cpu: usize,
    /// What the core is for.
    pub role: Role,
    /// The analysis and policy (meaningful for RT cores).
    pub scheduler: Scheduler,
    /// The execution model (meaningful for RT cores).
    pub dispatch: Dispatch,
    /// The utilisation admission may fill, in (0, 1].
    pub utilization_cap: f64,
    /// The SCHED_FIFO priorities this core's tasks use, `lo..=hi` within 1..=99.
    pub priority_band: (u8, u8),
    /// Whether the core asks for an exclusive cpuset.
    pub shield: bool,
    /// Whether best-effort threads may use the core's idle time at SCHED_IDLE.
    pub share_idle: bool,
    /// What to do when SCHED_DEADLINE is refused (EDF, threads model only).
    pub fallback: Option<Fallback>,
    /// The file it came from; `None` for the embedded default or an unlisted core.
    pub file: Option<PathBuf>,
}

impl CoreConfig {
    /// A general core.
    pub fn general(cpu: usize) -> CoreConfig {
        CoreConfig {
            cpu,
            role: Role::General,
            scheduler: Scheduler::Fp,
            dispatch: Dispatch::Threads,
            utilization_cap: 1.0,
            priority_band: (1, 99),
            shield: false,
            share_idle: false,
            fallback: None,
            file: None,
        }
    }
}

/// One problem found in a config file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The file (or folder) at fault.
    pub file: PathBuf,
    /// The key at fault, when there is one.
    pub key: Option<String>,
    /// What is wrong and what would be valid.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.key {
            Some(k) => write!(f, "{}: key `{k}`: {}", self.file.display(), self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

/// Every problem found in a config directory. Nothing was applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The problems, in file order.
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid configuration (nothing was applied):")?;
        for p in &self.problems {
            write!(f, "\n  - {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Where a partition came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// The compiled-in default.
    Embedded,
    /// A config directory.
    Dir(PathBuf),
}

/// The validated split of the allowed CPUs into RT and general cores.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Partition {
    /// The CPUs the process may use.
    pub allowed: CpuSet,
    /// One entry per allowed CPU, in id order.
    pub cores: Vec<CoreConfig>,
    /// Where it came from.
    pub source: Source,
    /// Things the user should know that are not errors (e.g. no RT core on one CPU).
    pub warnings: Vec<String>,
}

impl Partition {
    /// Loads and validates `dir/cores/*.toml` against the process's allowed CPUs.
    pub fn load(dir: &Path) -> Result<Partition> {
        Partition::load_for(dir, CpuSet::allowed()?)
    }

    /// Loads and validates `dir/cores/*.toml` against `allowed`.
    pub fn load_for(dir: &Path, allowed: CpuSet) -> Result<Partition> {
        Ok(load_dir(dir, allowed)?)
    }

    /// The compiled-in default for the process's allowed CPUs.
    pub fn embedded_default() -> Result<Partition> {
        Partition::embedded_default_for(CpuSet::allowed()?)
    }

    /// The compiled-in default for `allowed`: the last CPU is `rt`, the rest `general`;
    /// with one CPU, no RT core and a warning.
    pub fn embedded_default_for(allowed: CpuSet) -> Result<Partition> {
        let mut cores: Vec<CoreConfig> = allowed.iter().map(CoreConfig::general).collect();
        let mut warnings = Vec::new();
        match (allowed.len(), allowed.last()) {
            (0, _) | (_, None) => {
                return Err(crate::Error::Invalid("the process may use no CPU at all".into()));
            }
            (1, Some(only)) => warnings.push(format!(
                "only CPU {only} is allowed to this process: there is no RT core, and real-time tasks run best-effort"
            )),
            (_, Some(last)) => {
                let file = PathBuf::from("<embedded default-rt-core.toml>");
                let table = parse_table(&file, DEFAULT_RT_CORE).map_err(|p| ConfigError { problems: vec![p] })?;
                let mut problems = Vec::new();
                let rt = core_from_table(last, &file, &table, &mut problems);
                if let (Some(rt), true) = (rt, problems.is_empty()) {
                    if let Some(slot) = cores.iter_mut().find(|c| c.cpu == last) {
                        *slot = CoreConfig { file: None, ..rt };
                    }
                } else {
                    return Err(ConfigError { problems }.into());
                }
            }
        }
        Ok(Partition {
            allowed,
            cores,
            source: Source::Embedded,
            warnings,
        })
    }

    /// The RT cores.
    pub fn rt_cores(&self) -> CpuSet {
        CpuSet::from_ids(
            self.cores
                .iter()
                .filter(|c| c.role == Role::Rt)
                .map(|c| c.cpu),
        )
    }

    /// The general cores.
    pub fn general_cores(&self) -> CpuSet {
        CpuSet::from_ids(
            self.cores
                .iter()
                .filter(|c| c.role == Role::General)
                .map(|c| c.cpu),
        )
    }

    /// The RT cores that asked for a shield.
    pub fn shielded_cores(&self) -> CpuSet {
        CpuSet::from_ids(
            self.cores
                .iter()
                .filter(|c| c.role == Role::Rt && c.shield)
                .map(|c| c.cpu),
        )
    }

    /// The configuration of CPU `cpu`.
    pub fn core(&self, cpu: usize) -> Option<&CoreConfig> {
        self.cores.iter().find(|c| c.cpu == cpu)
    }

    /// Confines the calling thread to the general cores, so that every thread it spawns
    /// from now on (best-effort work) stays off the RT cores. RT threads set their own
    /// affinity when they are spawned.
    pub fn confine_current_thread(&self) -> Result<()> {
        sys::cpu::set_affinity(0, &self.general_cores())
    }
}

/// Reads, validates and applies a config directory to the calling thread in one step:
/// either the whole partition is valid and the thread is confined to its general cores,
/// or an error is returned and nothing changed.
pub fn enter(dir: &Path) -> Result<Partition> {
    let p = Partition::load(dir)?;
    p.confine_current_thread()?;
    Ok(p)
}

const RT_KEYS: [&str; 7] = [
    "scheduler",
    "dispatch",
    "utilization_cap",
    "priority_band",
    "shield",
    "share_idle",
    "fallback",
];

fn parse_table(file: &Path, text: &str) -> std::result::Result<toml::Table, Problem> {
    text.parse::<toml::Table>().map_err(|e| Problem {
        file: file.to_path_buf(),
        key: None,
        message: format!("not valid TOML: {}", e.to_string().trim()),
    })
}

fn load_dir(dir: &Path, allowed: CpuSet) -> std::result::Result<Partition, ConfigError> {
    let mut problems = Vec::new();
    let cores_dir = dir.join("cores");
    let valid_names = || {
        let ids: Vec<String> = allowed.iter().map(|c| format!("cpu{c}.toml")).collect();
        ids.join(", ")
    };
    let entries = match std::fs::read_dir(&cores_dir) {
        Ok(e) => e,
        Err(e) => {
            return Err(ConfigError {
                problems: vec![Problem {
                    file: cores_dir.clone(),
                    key: None,
                    message: format!(
                        "cannot read the per-core config folder ({e}); it should hold one file per core: {}",
                        valid_names()
                    ),
                }],
            });
        }
    };
    let mut files: BTreeMap<usize, Vec<PathBuf>> = BTreeMap::new();
    let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    paths.sort();
    for path in paths {
        let Some(name) = path
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_string)
        else {
            continue;
        };
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let id = name
            .strip_prefix("cpu")
            .and_then(|n| n.strip_suffix(".toml"))
            .and_then(|n| n.parse::<usize>().ok());
        match id {
            None => problems.push(Problem {
                file: path.clone(),
                key: None,
                message: format!("unknown core file; name each file after its CPU: {}", valid_names()),
            }),
            Some(id) if !allowed.contains(id) => problems.push(Problem {
                file: path.clone(),
                key: None,
                message: format!(
                    "CPU {id} is outside the CPUs this process may use ({allowed}); valid files: {}",
                    valid_names()
                ),
            }),
            Some(id) => files.entry(id).or_default().push(path.clone()),
        }
    }
    let mut cores: Vec<CoreConfig> = allowed.iter().map(CoreConfig::general).collect();
    for (id, paths) in &files {
        if paths.len() > 1 {
            problems.push(Problem {
                file: paths[1].clone(),
                key: None,
                message: format!(
                    "CPU {id} is configured twice (also in {}); keep one file per core",
                    paths[0].display()
                ),
            });
            continue;
        }
        let path = &paths[0];
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => {
                problems.push(Problem {
                    file: path.clone(),
                    key: None,
                    message: format!("cannot read: {e}"),
                });
                continue;
            }
        };
        let table = match parse_table(path, &text) {
            Ok(t) => t,
            Err(p) => {
                problems.push(p);
                continue;
            }
        };
        if let Some(core) = core_from_table(*id, path, &table, &mut problems)
            && let Some(slot) = cores.iter_mut().find(|c| c.cpu == *id)
        {
            *slot = core;
        }
    }
    if problems.is_empty() && cores.iter().all(|c| c.role == Role::Rt) {
        problems.push(Problem {
            file: cores_dir.clone(),
            key: Some("role".into()),
            message: format!(
                "every allowed CPU ({allowed}) is `rt`: no general core is left for the system, best-effort threads and the network; make at least one core `general`"
            ),
        });
    }
    if !problems.is_empty() {
        return Err(ConfigError { problems });
    }
    let mut warnings = Vec::new();
    if cores.iter().all(|c| c.role == Role::General) {
        warnings.push(format!(
            "{} declares no `rt` core: real-time tasks run best-effort",
            cores_dir.display()
        ));
    }
    Ok(Partition {
        allowed,
        cores,
        source: Source::Dir(dir.to_path_buf()),
        warnings,
    })
}

/// Validates one core file's table; pushes every problem and returns the core if none.
fn core_from_table(
    cpu: usize,
    file: &Path,
    table: &toml::Table,
    problems: &mut Vec<Problem>,
) -> Option<CoreConfig> {
    let before = problems.len();
    let mut problem = |key: &str, message: String| {
        problems.push(Problem {
            file: file.to_path_buf(),
            key: Some(key.to_string()),
            message,
        })
    };
    let role = match table.get("role") {
        None => {
            problem(
                "role",
                "missing; write role = \"rt\" or role = \"general\"".into(),
            );
            None
        }
        Some(toml::Value::String(s)) if s == "rt" => Some(Role::Rt),
        Some(toml::Value::String(s)) if s == "general" => Some(Role::General),
        Some(v) => {
            problem(
                "role",
                format!("{v} is not a role; valid: \"rt\", \"general\""),
            );
            None
        }
    };
    for key in table.keys() {
        if key == "role" {
            continue;
        }
        if !RT_KEYS.contains(&key.as_str()) {
            problem(
                key,
                format!("unknown key; valid keys: role, {}", RT_KEYS.join(", ")),
            );
        } else if role == Some(Role::General) {
            problem(
                key,
                "only valid for role = \"rt\"; a general core takes no other key".into(),
            );
        }
    }
    let mut core = CoreConfig::general(cpu);
    core.file = Some(file.to_path_buf());
    if role != Some(Role::Rt) {
        return (problems.len() == before && role.is_some()).then_some(core);
    }
    core.role = Role::Rt;
    core.utilization_cap = 0.9;
    core.priority_band = (50, 89);

    let string_choice =
        |key: &str, valid: &[&str]| -> std::result::Result<Option<String>, String> {
            match table.get(key) {
                None => Ok(None),
                Some(toml::Value::String(s)) if valid.contains(&s.as_str()) => Ok(Some(s.clone())),
                Some(v) => Err(format!(
                    "{v} is not valid; valid: {}",
                    valid
                        .iter()
                        .map(|s| format!("\"{s}\""))
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            }
        };
    match string_choice("scheduler", &["edf", "fp"]) {
        Ok(Some(s)) => {
            core.scheduler = if s == "edf" {
                Scheduler::Edf
            } else {
                Scheduler::Fp
            }
        }
        Ok(None) => {}
        Err(m) => problem("scheduler", m),
    }
    match string_choice("dispatch", &["threads", "cooperative"]) {
        Ok(Some(s)) => {
            core.dispatch = if s == "threads" {
                Dispatch::Threads
            } else {
                Dispatch::Cooperative
            }
        }
        Ok(None) => {}
        Err(m) => problem("dispatch", m),
    }
    match string_choice("fallback", &["fifo"]) {
        Ok(Some(_)) => core.fallback = Some(Fallback::Fifo),
        Ok(None) => {}
        Err(m) => problem("fallback", m),
    }
    match table.get("utilization_cap") {
        None => {}
        Some(v) => match v.as_float().or_else(|| v.as_integer().map(|i| i as f64)) {
            Some(x) if x > 0.0 && x <= 1.0 => core.utilization_cap = x,
            _ => problem(
                "utilization_cap",
                format!(
                    "{v} is outside (0, 1]; write a number greater than 0 and at most 1, e.g. 0.9"
                ),
            ),
        },
    }
    match table.get("priority_band") {
        None => {}
        Some(v) => {
            let band = v.as_array().and_then(|a| match a.as_slice() {
                [lo, hi] => Some((lo.as_integer()?, hi.as_integer()?)),
                _ => None,
            });
            match band {
                Some((lo, hi)) if 1 <= lo && lo <= hi && hi <= 99 => {
                    core.priority_band = (lo as u8, hi as u8)
                }
                _ => problem(
                    "priority_band",
                    format!(
                        "{v} is not a SCHED_FIFO range; write [lo, hi] with 1 <= lo <= hi <= 99, e.g. [50, 89]"
                    ),
                ),
            }
        }
    }
    for (key, slot) in [
        ("shield", &mut core.shield),
        ("share_idle", &mut core.share_idle),
    ] {
        match table.get(key) {
            None => {}
            Some(toml::Value::Boolean(b)) => *slot = *b,
            Some(v) => problem(key, format!("{v} is not a boolean; write true or false")),
        }
    }
    if core.fallback.is_some()
        && !(core.scheduler == Scheduler::Edf && core.dispatch == Dispatch::Threads)
    {
        problem(
            "fallback",
            "only meaningful with scheduler = \"edf\" and dispatch = \"threads\" (the SCHED_DEADLINE model)".into(),
        );
    }
    (problems.len() == before).then_some(core)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Dir(PathBuf);
    impl Dir {
        fn new(tag: &str, files: &[(&str, &str)]) -> Dir {
            let d = std::env::temp_dir().join(format!("rtpm-cfg-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&d);
            std::fs::create_dir_all(d.join("cores")).unwrap();
            for (name, text) in files {
                std::fs::write(d.join("cores").join(name), text).unwrap();
            }
            Dir(d)
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn two() -> CpuSet {
        CpuSet::from_ids([0, 1])
    }

    fn problems(files: &[(&str, &str)]) -> Vec<Problem> {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let d = Dir::new(&format!("p{n}"), files);
        match Partition::load_for(&d.0, two()) {
            Err(crate::Error::Config(e)) => e.problems,
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    fn one_problem(files: &[(&str, &str)]) -> (Option<String>, String, String) {
        let ps = problems(files);
        assert_eq!(ps.len(), 1, "{ps:?}");
        let p = &ps[0];
        (
            p.key.clone(),
            p.message.clone(),
            p.file.file_name().unwrap().to_string_lossy().to_string(),
        )
    }

    #[test]
    fn a_full_rt_core_parses() {
        let d = Dir::new(
            "full",
            &[(
                "cpu1.toml",
                "role = \"rt\"\nscheduler = \"edf\"\ndispatch = \"threads\"\nutilization_cap = 0.75\npriority_band = [10, 20]\nshield = true\nshare_idle = true\nfallback = \"fifo\"\n",
            )],
        );
        let p = Partition::load_for(&d.0, two()).unwrap();
        assert_eq!(p.rt_cores(), CpuSet::single(1));
        assert_eq!(p.general_cores(), CpuSet::single(0));
        let c = p.core(1).unwrap();
        assert_eq!(c.scheduler, Scheduler::Edf);
        assert_eq!(c.dispatch, Dispatch::Threads);
        assert_eq!(c.utilization_cap, 0.75);
        assert_eq!(c.priority_band, (10, 20));
        assert!(c.shield && c.share_idle);
        assert_eq!(c.fallback, Some(Fallback::Fifo));
        assert_eq!(p.shielded_cores(), CpuSet::single(1));
        assert!(p.warnings.is_empty());
    }

    #[test]
    fn rt_defaults_and_unlisted_cores_are_general() {
        let d = Dir::new("defaults", &[("cpu0.toml", "role = \"rt\"\n")]);
        let p = Partition::load_for(&d.0, two()).unwrap();
        let c = p.core(0).unwrap();
        assert_eq!(
            (c.scheduler, c.dispatch),
            (Scheduler::Fp, Dispatch::Threads)
        );
        assert_eq!(c.utilization_cap, 0.9);
        assert_eq!(c.priority_band, (50, 89));
        assert_eq!(p.core(1).unwrap().role, Role::General);
    }

    #[test]
    fn unknown_key_is_named() {
        let (key, msg, file) = one_problem(&[("cpu1.toml", "role = \"rt\"\nshed = \"edf\"\n")]);
        assert_eq!(key.as_deref(), Some("shed"));
        assert!(
            msg.contains("unknown key") && msg.contains("scheduler"),
            "{msg}"
        );
        assert_eq!(file, "cpu1.toml");
    }

    #[test]
    fn unknown_core_file_is_refused() {
        let (key, msg, file) = one_problem(&[("core1.toml", "role = \"rt\"\n")]);
        assert_eq!(key, None);
        assert!(msg.contains("cpu0.toml, cpu1.toml"), "{msg}");
        assert_eq!(file, "core1.toml");
    }

    #[test]
    fn core_outside_the_allowed_set_is_refused() {
        let (_, msg, file) = one_problem(&[("cpu7.toml", "role = \"rt\"\n")]);
        assert!(
            msg.contains("CPU 7 is outside") && msg.contains("0-1"),
            "{msg}"
        );
        assert_eq!(file, "cpu7.toml");
    }

    #[test]
    fn a_core_configured_twice_is_refused() {
        let (_, msg, _) = one_problem(&[
            ("cpu1.toml", "role = \"rt\"\n"),
            ("cpu01.toml", "role = \"rt\"\n"),
        ]);
        assert!(msg.contains("configured twice"), "{msg}");
    }

    #[test]
    fn no_general_core_left_is_refused() {
        let (key, msg, _) = one_problem(&[
            ("cpu0.toml", "role = \"rt\"\n"),
            ("cpu1.toml", "role = \"rt\"\n"),
        ]);
        assert_eq!(key.as_deref(), Some("role"));
        assert!(msg.contains("no general core is left"), "{msg}");
    }

    #[test]
    fn cap_outside_zero_one_is_refused() {
        for bad in ["0", "0.0", "1.5", "-0.2", "\"high\""] {
            let (key, msg, _) = one_problem(&[(
                "cpu1.toml",
                &format!("role = \"rt\"\nutilization_cap = {bad}\n"),
            )]);
            assert_eq!(key.as_deref(), Some("utilization_cap"), "{bad}");
            assert!(msg.contains("(0, 1]"), "{msg}");
        }
        // The edges that are valid.
        let d = Dir::new(
            "capok",
            &[("cpu1.toml", "role = \"rt\"\nutilization_cap = 1\n")],
        );
        assert_eq!(
            Partition::load_for(&d.0, two())
                .unwrap()
                .core(1)
                .unwrap()
                .utilization_cap,
            1.0
        );
    }

    #[test]
    fn bad_values_name_what_is_valid() {
        let cases = [
            ("role = \"realtime\"\n", "role", "\"general\""),
            (
                "role = \"rt\"\nscheduler = \"rr\"\n",
                "scheduler",
                "\"edf\", \"fp\"",
            ),
            (
                "role = \"rt\"\ndispatch = \"async\"\n",
                "dispatch",
                "\"threads\", \"cooperative\"",
            ),
            (
                "role = \"rt\"\npriority_band = [90, 10]\n",
                "priority_band",
                "1 <= lo <= hi <= 99",
            ),
            (
                "role = \"rt\"\npriority_band = [0, 10]\n",
                "priority_band",
                "1 <= lo <= hi <= 99",
            ),
            (
                "role = \"rt\"\npriority_band = 5\n",
                "priority_band",
                "[lo, hi]",
            ),
            (
                "role = \"rt\"\nshield = \"yes\"\n",
                "shield",
                "true or false",
            ),
            ("role = \"rt\"\nfallback = \"rr\"\n", "fallback", "\"fifo\""),
            (
                "role = \"rt\"\nfallback = \"fifo\"\n",
                "fallback",
                "scheduler = \"edf\"",
            ),
            ("scheduler = \"fp\"\n", "role", "missing"),
            (
                "role = \"general\"\nshield = true\n",
                "shield",
                "only valid for role = \"rt\"",
            ),
        ];
        for (text, key, hint) in cases {
            let ps = problems(&[("cpu1.toml", text)]);
            assert!(
                ps.iter()
                    .any(|p| p.key.as_deref() == Some(key) && p.message.contains(hint)),
                "{text:?}: expected key {key} mentioning {hint}, got {ps:?}"
            );
        }
    }

    #[test]
    fn invalid_toml_is_reported_with_the_file() {
        let (key, msg, file) = one_problem(&[("cpu1.toml", "role = \n")]);
        assert_eq!(key, None);
        assert!(msg.contains("not valid TOML"), "{msg}");
        assert_eq!(file, "cpu1.toml");
    }

    #[test]
    fn every_problem_in_every_file_is_collected() {
        let ps = problems(&[
            (
                "cpu0.toml",
                "role = \"rt\"\nutilization_cap = 2\nbogus = 1\n",
            ),
            ("cpu1.toml", "role = \"rt\"\nscheduler = \"x\"\n"),
            ("cpu9.toml", "role = \"rt\"\n"),
        ]);
        assert_eq!(ps.len(), 4, "{ps:?}");
        let text = ConfigError { problems: ps }.to_string();
        assert!(text.contains("nothing was applied"));
    }

    #[test]
    fn missing_folder_is_explained() {
        let d = std::env::temp_dir().join("rtpm-cfg-does-not-exist");
        let err = Partition::load_for(&d, two()).unwrap_err().to_string();
        assert!(
            err.contains("cores") && err.contains("cpu0.toml, cpu1.toml"),
            "{err}"
        );
    }

    #[test]
    fn embedded_default_makes_the_last_core_rt() {
        let p = Partition::embedded_default_for(CpuSet::from_ids([0, 2, 3])).unwrap();
        assert_eq!(p.rt_cores(), CpuSet::single(3));
        assert_eq!(p.general_cores(), CpuSet::from_ids([0, 2]));
        assert_eq!(p.source, Source::Embedded);
        assert!(p.warnings.is_empty());
    }

    #[test]
    fn embedded_default_on_one_core_is_best_effort_and_warns() {
        let p = Partition::embedded_default_for(CpuSet::single(5)).unwrap();
        assert!(p.rt_cores().is_empty());
        assert_eq!(p.general_cores(), CpuSet::single(5));
        assert_eq!(p.warnings.len(), 1);
        assert!(p.warnings[0].contains("no RT core"));
    }

    #[test]
    fn an_invalid_config_changes_nothing() {
        let before = sys::cpu::affinity_of(0).unwrap();
        let allowed = CpuSet::allowed().unwrap();
        let last = allowed.last().unwrap();
        // One valid file and one invalid one: nothing may be applied, not even the valid one.
        let d = Dir::new(
            "noapply",
            &[
                (&format!("cpu{last}.toml"), "role = \"rt\"\n"),
                ("cpu4096.toml", "role = \"rt\"\n"),
            ],
        );
        assert!(enter(&d.0).is_err());
        assert_eq!(sys::cpu::affinity_of(0).unwrap(), before);
        if allowed.len() >= 2 {
            // The same folder made valid is applied: this thread leaves the RT core.
            std::fs::remove_file(d.0.join("cores/cpu4096.toml")).unwrap();
            let p = enter(&d.0).unwrap();
            assert_eq!(sys::cpu::affinity_of(0).unwrap(), p.general_cores());
            sys::cpu::set_affinity(0, &before).unwrap();
        }
    }
}
