//! The shield: exclusive cpusets that make the RT cores a root domain of their own and
//! move the rest of the system onto the general cores.
//!
//! **cgroup v1** (a hierarchy with the `cpuset` controller): two top-level cpusets are
//! made, `rtpm.rt` (the RT cores, `cpu_exclusive`) and `rtpm.general` (the general cores,
//! `cpu_exclusive`); every movable task of the root cpuset moves to `rtpm.general`; other
//! top-level cpusets that overlap the RT cores are narrowed to the general cores; and the
//! root cpuset stops load-balancing, so the scheduler builds one root domain per child.
//! Kernel threads bound to a CPU cannot move and are counted, not fatal.
//!
//! **cgroup v2** (with `cpuset` in `cgroup.controllers`): `rtpm.rt` becomes a partition
//! root (`cpuset.cpus.partition = root`), which takes its CPUs out of every other
//! cgroup's effective set by itself.
//!
//! Every change is journalled in a state file (`/run/rtpm/shield.toml`) before the next
//! one is made, so `--undo` — in this process or another — restores exactly what was
//! there, and a setup that fails halfway rolls back what it did.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::cpu::CpuSet;
use crate::error::{Error, Result};
use crate::sys;
use crate::sys::cgroup::CpusetMount;

/// The name of the RT cpuset.
pub const RT_GROUP: &str = "rtpm.rt";
/// The name of the general cpuset (cgroup v1).
pub const GENERAL_GROUP: &str = "rtpm.general";
/// Where the journal of an active shield is kept.
pub const STATE_FILE: &str = "/run/rtpm/shield.toml";

/// The cgroup hierarchy a shield works on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Version {
    /// cgroup v1 cpuset hierarchy.
    V1,
    /// cgroup v2 unified hierarchy.
    V2,
}

/// Where the cpuset controller lives and where the journal goes.
#[derive(Clone, Debug)]
pub struct Cgroups {
    /// The hierarchy's version.
    pub version: Version,
    /// Its mount point (the root cpuset).
    pub root: PathBuf,
    /// The journal file.
    pub state_file: PathBuf,
    /// Plain folders standing in for cgroupfs (tests): writing a tid to a `tasks` file
    /// appends it there and removes it from the source, as the kernel does.
    pub simulated: bool,
}

impl Cgroups {
    /// The system's cpuset controller; an explained error when there is none.
    pub fn system() -> Result<Cgroups> {
        let (version, root) = match sys::cgroup::cpuset_mount() {
            Some(CpusetMount::V1(p)) => (Version::V1, p),
            Some(CpusetMount::V2(p)) => (Version::V2, p),
            None => {
                return Err(Error::Shield(
                    "no cpuset controller is mounted: mount a cgroup v1 hierarchy with the `cpuset` controller \
                     (`mount -t cgroup -o cpuset cpuset /sys/fs/cgroup/cpuset`) or enable `cpuset` on cgroup v2"
                        .into(),
                ));
            }
        };
        Ok(Cgroups {
            version,
            root,
            state_file: PathBuf::from(STATE_FILE),
            simulated: false,
        })
    }

    fn rt_dir(&self) -> PathBuf {
        self.root.join(RT_GROUP)
    }
    fn general_dir(&self) -> PathBuf {
        self.root.join(GENERAL_GROUP)
    }
}

/// One change the shield made, in the order it made them; undone in reverse.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Change {
    /// A cgroup folder was created.
    Mkdir {
        /// The folder.
        path: PathBuf,
    },
    /// A control file was rewritten; `old` is what it held.
    Write {
        /// The control file.
        path: PathBuf,
        /// Its previous content.
        old: String,
    },
    /// Tasks were moved from one cgroup's `tasks` to another's.
    Moved {
        /// Where they came from.
        from: PathBuf,
        /// Where they went.
        to: PathBuf,
        /// How many moved.
        count: usize,
    },
}

/// The journal of an active shield.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Journal {
    /// The hierarchy used.
    pub version: Option<Version>,
    /// The RT CPUs, in list format.
    pub rt_cpus: String,
    /// The general CPUs, in list format.
    pub general_cpus: String,
    /// Tasks that could not move (kernel threads bound to a CPU).
    pub unmovable: usize,
    /// The changes, in order.
    pub changes: Vec<Change>,
}

/// What the shield looks like now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Status {
    /// Whether a shield is active (a journal exists or the RT cpuset exists).
    pub active: bool,
    /// The hierarchy.
    pub version: Option<Version>,
    /// The RT cpuset's CPUs.
    pub rt_cpus: Option<String>,
    /// The general CPUs (v1: the general cpuset; v2: the root's effective CPUs).
    pub general_cpus: Option<String>,
    /// Tasks in the RT cpuset.
    pub rt_tasks: usize,
    /// Tasks in the general cpuset (v1).
    pub general_tasks: usize,
    /// Tasks left in the root cpuset (v1: the unmovable ones).
    pub root_tasks: usize,
    /// Whether the root cpuset still load-balances (v1); it must not while shielded.
    pub root_load_balance: Option<bool>,
    /// v2: the partition state of the RT cgroup, e.g. `root` or `root invalid (...)`.
    pub partition: Option<String>,
    /// Where the journal is.
    pub state_file: PathBuf,
}

/// What a setup did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// The journal (also written to the state file).
    pub journal: Journal,
    /// Tasks moved to the general cores.
    pub moved: usize,
}

fn read(path: &Path) -> Result<String> {
    fs::read_to_string(path).map_err(|e| Error::file(path, e))
}

fn write(path: &Path, value: &str) -> Result<()> {
    fs::write(path, value).map_err(|e| {
        let hint = match e.raw_os_error() {
            Some(libc::EINVAL) => format!("the kernel refused `{value}`"),
            Some(libc::EBUSY) => {
                "the CPUs are in use by an overlapping exclusive cpuset or a deadline task".into()
            }
            Some(libc::EACCES | libc::EPERM) => "writing cgroup files needs root".into(),
            _ => String::new(),
        };
        Error::File {
            path: path.to_path_buf(),
            source: e,
            hint,
        }
    })
}

/// Applies and journals changes; on failure, undoes what it did.
struct Applier<'a> {
    cg: &'a Cgroups,
    journal: Journal,
    fail_after: Option<usize>,
}

impl Applier<'_> {
    fn step(&mut self) -> Result<()> {
        if self.fail_after == Some(self.journal.changes.len()) {
            return Err(Error::Shield(format!(
                "injected failure after {} changes",
                self.journal.changes.len()
            )));
        }
        Ok(())
    }
    fn save(&self) -> Result<()> {
        save_journal(&self.cg.state_file, &self.journal)
    }
    fn mkdir(&mut self, path: PathBuf) -> Result<()> {
        self.step()?;
        fs::create_dir(&path).map_err(|e| Error::file(&path, e))?;
        self.journal.changes.push(Change::Mkdir { path });
        self.save()
    }
    fn write(&mut self, path: PathBuf, value: &str) -> Result<()> {
        self.step()?;
        let old = read(&path).unwrap_or_default().trim().to_string();
        write(&path, value)?;
        self.journal.changes.push(Change::Write { path, old });
        self.save()
    }
    /// Moves every task listed in `from/tasks` to `to/tasks`, one tid per write; returns
    /// (moved, unmovable).
    fn move_tasks(&mut self, from: PathBuf, to: PathBuf) -> Result<(usize, usize)> {
        self.step()?;
        let (moved, unmovable) = move_all(self.cg, &from, &to)?;
        self.journal.changes.push(Change::Moved {
            from,
            to,
            count: moved,
        });
        self.save()?;
        Ok((moved, unmovable))
    }
}

fn move_all(cg: &Cgroups, from: &Path, to: &Path) -> Result<(usize, usize)> {
    let list = read(&from.join("tasks"))?;
    if cg.simulated {
        let mut dest = fs::read_to_string(to.join("tasks")).unwrap_or_default();
        for tid in list.split_whitespace() {
            dest.push_str(tid);
            dest.push('\n');
        }
        fs::write(to.join("tasks"), dest).map_err(|e| Error::file(to, e))?;
        fs::write(from.join("tasks"), "").map_err(|e| Error::file(from, e))?;
        return Ok((list.split_whitespace().count(), 0));
    }
    let (mut moved, mut unmovable) = (0, 0);
    for tid in list.split_whitespace() {
        match fs::write(to.join("tasks"), tid) {
            Ok(()) => moved += 1,
            // The task ended meanwhile.
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {}
            // Kernel threads bound to CPUs (PF_NO_SETAFFINITY) refuse to move.
            Err(_) => unmovable += 1,
        }
    }
    Ok((moved, unmovable))
}

fn save_journal(path: &Path, j: &Journal) -> Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(|e| Error::file(dir, e))?;
    }
    let text =
        toml::to_string(j).map_err(|e| Error::Shield(format!("cannot encode the journal: {e}")))?;
    fs::write(path, text).map_err(|e| Error::file(path, e))
}

fn load_journal(path: &Path) -> Result<Option<Journal>> {
    match fs::read_to_string(path) {
        Ok(text) => toml::from_str(&text)
            .map(Some)
            .map_err(|e| Error::Shield(format!("{}: unreadable journal: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::file(path, e)),
    }
}

fn require_root() -> Result<()> {
    // SAFETY: geteuid cannot fail and touches no memory.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        return Err(Error::Shield(format!(
            "needs root (effective uid is {euid}): it rewrites the system's cpuset cgroups; run it with sudo"
        )));
    }
    Ok(())
}

/// Sets up the shield on the system's cpuset controller: `rt` CPUs become their own root
/// domain and every other movable task moves to `general`. Needs root.
pub fn setup(rt: CpuSet, general: CpuSet) -> Result<Report> {
    require_root()?;
    setup_on(&Cgroups::system()?, rt, general, None)
}

/// [`setup`] on a given hierarchy. `fail_after` injects a failure after that many changes
/// (tests use it to prove the rollback).
pub fn setup_on(
    cg: &Cgroups,
    rt: CpuSet,
    general: CpuSet,
    fail_after: Option<usize>,
) -> Result<Report> {
    if rt.is_empty() || general.is_empty() {
        return Err(Error::Shield(format!(
            "needs at least one RT core and one general core (RT: {rt}, general: {general}); mark a core `role = \"rt\"` in cores/cpuN.toml"
        )));
    }
    if !rt.intersection(&general).is_empty() {
        return Err(Error::Shield(format!(
            "RT cores {rt} and general cores {general} overlap"
        )));
    }
    if load_journal(&cg.state_file)?.is_some() || cg.rt_dir().exists() {
        return Err(Error::Shield(format!(
            "a shield is already active ({} or {} exists); run `rtpm shield --undo` first",
            cg.state_file.display(),
            cg.rt_dir().display()
        )));
    }
    let mut ap = Applier {
        cg,
        journal: Journal {
            version: Some(cg.version.clone()),
            rt_cpus: rt.to_list(),
            general_cpus: general.to_list(),
            ..Journal::default()
        },
        fail_after,
    };
    let result = match cg.version {
        Version::V1 => setup_v1(&mut ap, rt, general),
        Version::V2 => setup_v2(&mut ap, rt),
    };
    match result {
        Ok(moved) => {
            ap.save()?;
            Ok(Report {
                journal: ap.journal,
                moved,
            })
        }
        Err(e) => {
            let journal = ap.journal.clone();
            let rollback = undo_journal(cg, &journal);
            let _ = fs::remove_file(&cg.state_file);
            match rollback {
                Ok(()) => Err(Error::Shield(format!(
                    "setup failed and was rolled back: {e}"
                ))),
                Err(r) => Err(Error::Shield(format!(
                    "setup failed ({e}) and the rollback failed too ({r}); inspect {}",
                    cg.root.display()
                ))),
            }
        }
    }
}

fn setup_v1(ap: &mut Applier<'_>, rt: CpuSet, general: CpuSet) -> Result<usize> {
    let root = ap.cg.root.clone();
    let root_cpus: CpuSet = read(&root.join("cpuset.cpus"))?.parse()?;
    if !rt.union(&general).is_subset(&root_cpus) {
        return Err(Error::Shield(format!(
            "CPUs {} are not in the root cpuset ({root_cpus})",
            rt.union(&general).difference(&root_cpus)
        )));
    }
    let mems = read(&root.join("cpuset.mems"))?.trim().to_string();
    // Other cpusets that overlap the RT cores are narrowed, leaves first.
    narrow_children(ap, &root, rt)?;
    let general_dir = ap.cg.general_dir();
    ap.mkdir(general_dir.clone())?;
    ap.write(general_dir.join("cpuset.mems"), &mems)?;
    ap.write(general_dir.join("cpuset.cpus"), &general.to_list())?;
    ap.write(general_dir.join("cpuset.cpu_exclusive"), "1")?;
    let rt_dir = ap.cg.rt_dir();
    ap.mkdir(rt_dir.clone())?;
    ap.write(rt_dir.join("cpuset.mems"), &mems)?;
    ap.write(rt_dir.join("cpuset.cpus"), &rt.to_list())?;
    ap.write(rt_dir.join("cpuset.cpu_exclusive"), "1")?;
    let (moved, unmovable) = ap.move_tasks(root.clone(), general_dir)?;
    ap.journal.unmovable = unmovable;
    ap.write(root.join("cpuset.sched_load_balance"), "0")?;
    Ok(moved)
}

fn narrow_children(ap: &mut Applier<'_>, dir: &Path, rt: CpuSet) -> Result<()> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Ok(());
    };
    let mut children: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    children.sort();
    for child in children {
        let name = child.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name == RT_GROUP || name == GENERAL_GROUP {
            continue;
        }
        narrow_children(ap, &child, rt)?;
        let cpus_file = child.join("cpuset.cpus");
        let Ok(text) = fs::read_to_string(&cpus_file) else {
            continue;
        };
        let cpus: CpuSet = text.parse()?;
        if cpus.intersection(&rt).is_empty() {
            continue;
        }
        let narrowed = cpus.difference(&rt);
        if narrowed.is_empty() {
            return Err(Error::Shield(format!(
                "cpuset {} runs only on RT cores ({cpus}); give it a general core first",
                child.display()
            )));
        }
        ap.write(cpus_file, &narrowed.to_list())?;
    }
    Ok(())
}

fn setup_v2(ap: &mut Applier<'_>, rt: CpuSet) -> Result<usize> {
    let root = ap.cg.root.clone();
    let control = read(&root.join("cgroup.subtree_control")).unwrap_or_default();
    if !control.split_whitespace().any(|c| c == "cpuset") {
        ap.write(root.join("cgroup.subtree_control"), "+cpuset")?;
    }
    let rt_dir = ap.cg.rt_dir();
    ap.mkdir(rt_dir.clone())?;
    ap.write(rt_dir.join("cpuset.cpus"), &rt.to_list())?;
    if rt_dir.join("cpuset.cpus.exclusive").exists() {
        ap.write(rt_dir.join("cpuset.cpus.exclusive"), &rt.to_list())?;
    }
    ap.write(rt_dir.join("cpuset.cpus.partition"), "root")?;
    let state = read(&rt_dir.join("cpuset.cpus.partition"))?;
    if state.trim() != "root" {
        return Err(Error::Shield(format!(
            "the kernel did not accept {} as a partition root: {}",
            rt_dir.display(),
            state.trim()
        )));
    }
    Ok(0)
}

/// Undoes the active shield on the system's cpuset controller. Needs root.
pub fn undo() -> Result<Journal> {
    require_root()?;
    undo_on(&Cgroups::system()?)
}

/// [`undo`] on a given hierarchy.
pub fn undo_on(cg: &Cgroups) -> Result<Journal> {
    let journal = match load_journal(&cg.state_file)? {
        Some(j) => j,
        None if cg.rt_dir().exists() || cg.general_dir().exists() => {
            // No journal (e.g. /run was cleared by a reboot of the tool, not the kernel):
            // rebuild the default changes so the cgroups are still removed.
            let mut changes = Vec::new();
            for dir in [cg.general_dir(), cg.rt_dir()] {
                if dir.exists() {
                    changes.push(Change::Mkdir { path: dir.clone() });
                    if cg.version == Version::V1 {
                        changes.push(Change::Moved {
                            from: cg.root.clone(),
                            to: dir,
                            count: 0,
                        });
                    }
                }
            }
            if cg.version == Version::V1 {
                changes.push(Change::Write {
                    path: cg.root.join("cpuset.sched_load_balance"),
                    old: "1".into(),
                });
            }
            Journal {
                version: Some(cg.version.clone()),
                changes,
                ..Journal::default()
            }
        }
        None => {
            return Err(Error::Shield(format!(
                "no shield is active (no {} and no {})",
                cg.state_file.display(),
                cg.rt_dir().display()
            )));
        }
    };
    undo_journal(cg, &journal)?;
    match fs::remove_file(&cg.state_file) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::file(&cg.state_file, e)),
    }
    Ok(journal)
}

/// Runs `op` again while it fails with EBUSY, up to about a second: a deadline thread
/// that is still exiting keeps its cpuset (and its bandwidth) busy for a moment.
fn retry_busy(mut op: impl FnMut() -> Result<()>) -> Result<()> {
    let mut tries = 0;
    loop {
        match op() {
            Err(e) if e.errno() == Some(libc::EBUSY) && tries < 20 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            r => return r,
        }
    }
}

fn undo_journal(cg: &Cgroups, journal: &Journal) -> Result<()> {
    let mut errors = Vec::new();
    for change in journal.changes.iter().rev() {
        let r = retry_busy(|| match change {
            Change::Write { path, old } => {
                // A v2 partition goes back to `member` before the folder can go.
                let value = if path.ends_with("cpuset.cpus.partition") && old.is_empty() {
                    "member"
                } else {
                    old.as_str()
                };
                if value.is_empty() || !path.exists() {
                    Ok(())
                } else {
                    write(path, value)
                }
            }
            // Idempotent, so an undo that stopped halfway can be run again.
            Change::Moved { from, to, .. } if to.join("tasks").exists() => {
                move_all(cg, to, from).map(|_| ())
            }
            Change::Moved { .. } => Ok(()),
            Change::Mkdir { path } => {
                if cg.version == Version::V1 && path.join("tasks").exists() {
                    // Whatever joined later (e.g. RT threads) goes back to the root.
                    let _ = move_all(cg, path, &cg.root);
                }
                if cg.version == Version::V2 && path.join("cgroup.procs").exists() {
                    let procs = fs::read_to_string(path.join("cgroup.procs")).unwrap_or_default();
                    for pid in procs.split_whitespace() {
                        let _ = fs::write(cg.root.join("cgroup.procs"), pid);
                    }
                }
                remove_cgroup_dir(path)
            }
        });
        if let Err(e) = r {
            errors.push(e.to_string());
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Error::Shield(format!(
            "undo left problems: {}",
            errors.join("; ")
        )))
    }
}

/// Removes a cgroup folder. A real cgroup is removed with `rmdir` (its control files go
/// with it); a plain folder (a test's fake hierarchy) needs its files removed first.
fn remove_cgroup_dir(path: &Path) -> Result<()> {
    match fs::remove_dir(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::ENOTEMPTY) => {
            fs::remove_dir_all(path).map_err(|e| Error::file(path, e))
        }
        Err(e) => Err(Error::file(path, e)),
    }
}

/// Reads the shield's state on the system's cpuset controller.
pub fn status() -> Result<Status> {
    status_on(&Cgroups::system()?)
}

fn count_tasks(dir: &Path) -> usize {
    fs::read_to_string(dir.join("tasks"))
        .or_else(|_| fs::read_to_string(dir.join("cgroup.threads")))
        .map(|t| t.split_whitespace().count())
        .unwrap_or(0)
}

/// [`status`] on a given hierarchy.
pub fn status_on(cg: &Cgroups) -> Result<Status> {
    let journal = load_journal(&cg.state_file)?;
    let rt_dir = cg.rt_dir();
    let active = journal.is_some() || rt_dir.exists();
    let trimmed = |p: PathBuf| fs::read_to_string(p).ok().map(|s| s.trim().to_string());
    let v1 = cg.version == Version::V1;
    Ok(Status {
        active,
        version: Some(cg.version.clone()),
        rt_cpus: if active {
            trimmed(rt_dir.join("cpuset.cpus"))
        } else {
            None
        },
        general_cpus: if !active {
            None
        } else if v1 {
            trimmed(cg.general_dir().join("cpuset.cpus"))
        } else {
            trimmed(cg.root.join("cpuset.cpus.effective"))
        },
        rt_tasks: count_tasks(&rt_dir),
        general_tasks: if v1 {
            count_tasks(&cg.general_dir())
        } else {
            0
        },
        root_tasks: count_tasks(&cg.root),
        root_load_balance: if v1 {
            trimmed(cg.root.join("cpuset.sched_load_balance")).map(|s| s == "1")
        } else {
            None
        },
        partition: if v1 {
            None
        } else {
            trimmed(rt_dir.join("cpuset.cpus.partition"))
        },
        state_file: cg.state_file.clone(),
    })
}

/// Moves thread `tid` into the RT cpuset of the active shield (cgroup v1), so that a
/// SCHED_DEADLINE thread's affinity can be exactly the RT cores' root domain.
pub fn attach_thread(tid: i32) -> Result<()> {
    let cg = Cgroups::system()?;
    match cg.version {
        Version::V1 => {
            let tasks = cg.rt_dir().join("tasks");
            if !tasks.exists() {
                return Err(Error::Shield(
                    "no shield is active; run `rtpm shield` first".into(),
                ));
            }
            write(&tasks, &tid.to_string())
        }
        Version::V2 => Err(Error::Shield(
            "moving a single thread into the RT partition needs a threaded cgroup v2 subtree, \
             which rtpm does not set up; on cgroup v2 start the whole process inside the `rtpm.rt` \
             partition, or use cgroup v1"
                .into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake v1 hierarchy in a temporary folder: plain files stand in for the control
    /// files, so the journal and rollback logic can be tested without root.
    struct Fake {
        cg: Cgroups,
    }

    impl Fake {
        fn new(tag: &str) -> Fake {
            let base =
                std::env::temp_dir().join(format!("rtpm-shield-{tag}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&base);
            let root = base.join("cpuset");
            fs::create_dir_all(root.join("docker")).unwrap();
            fs::write(root.join("cpuset.cpus"), "0-3\n").unwrap();
            fs::write(root.join("cpuset.mems"), "0\n").unwrap();
            fs::write(root.join("cpuset.sched_load_balance"), "1\n").unwrap();
            fs::write(root.join("tasks"), "1\n2\n3\n").unwrap();
            fs::write(root.join("docker/cpuset.cpus"), "2-3\n").unwrap();
            Fake {
                cg: Cgroups {
                    version: Version::V1,
                    root,
                    state_file: base.join("run/shield.toml"),
                    simulated: true,
                },
            }
        }
        fn snapshot(&self) -> Vec<(String, String)> {
            let mut out = Vec::new();
            snap(&self.cg.root, &self.cg.root, &mut out);
            out.push(("state".into(), self.cg.state_file.exists().to_string()));
            out
        }
    }

    fn snap(base: &Path, dir: &Path, out: &mut Vec<(String, String)>) {
        let mut entries: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        entries.sort();
        for p in entries {
            let rel = p.strip_prefix(base).unwrap().display().to_string();
            if p.is_dir() {
                out.push((rel, "<dir>".into()));
                snap(base, &p, out);
            } else {
                out.push((rel, fs::read_to_string(&p).unwrap().trim().to_string()));
            }
        }
    }

    impl Drop for Fake {
        fn drop(&mut self) {
            if let Some(base) = self.cg.root.parent() {
                let _ = fs::remove_dir_all(base);
            }
        }
    }

    #[test]
    fn v1_setup_then_undo_restores_everything() {
        let f = Fake::new("roundtrip");
        let before = f.snapshot();
        let report = setup_on(
            &f.cg,
            CpuSet::from_ids([3]),
            CpuSet::from_ids([0, 1, 2]),
            None,
        )
        .unwrap();
        assert_eq!(report.moved, 3);
        let root = &f.cg.root;
        assert_eq!(
            fs::read_to_string(root.join("rtpm.rt/cpuset.cpus")).unwrap(),
            "3"
        );
        assert_eq!(
            fs::read_to_string(root.join("rtpm.rt/cpuset.cpu_exclusive")).unwrap(),
            "1"
        );
        assert_eq!(
            fs::read_to_string(root.join("rtpm.general/cpuset.cpus")).unwrap(),
            "0-2"
        );
        assert_eq!(
            fs::read_to_string(root.join("cpuset.sched_load_balance")).unwrap(),
            "0"
        );
        // The overlapping docker cpuset was narrowed off the RT core.
        assert_eq!(
            fs::read_to_string(root.join("docker/cpuset.cpus")).unwrap(),
            "2"
        );
        let st = status_on(&f.cg).unwrap();
        assert!(st.active);
        assert_eq!(st.rt_cpus.as_deref(), Some("3"));
        assert_eq!(st.root_load_balance, Some(false));
        // A second setup is refused while one is active.
        let again = setup_on(&f.cg, CpuSet::from_ids([3]), CpuSet::from_ids([0]), None);
        assert!(again.unwrap_err().to_string().contains("already active"));

        undo_on(&f.cg).unwrap();
        assert_eq!(f.snapshot(), before);
        assert!(!status_on(&f.cg).unwrap().active);
        // An undo that stopped halfway (the cpusets gone, the journal left) can be run again.
        setup_on(
            &f.cg,
            CpuSet::from_ids([3]),
            CpuSet::from_ids([0, 1, 2]),
            None,
        )
        .unwrap();
        let journal = fs::read_to_string(&f.cg.state_file).unwrap();
        undo_on(&f.cg).unwrap();
        fs::create_dir_all(f.cg.state_file.parent().unwrap()).unwrap();
        fs::write(&f.cg.state_file, journal).unwrap();
        assert!(status_on(&f.cg).unwrap().active);
        undo_on(&f.cg).unwrap();
        assert_eq!(f.snapshot(), before);
        assert!(
            undo_on(&f.cg)
                .unwrap_err()
                .to_string()
                .contains("no shield is active")
        );
    }

    #[test]
    fn v1_failure_at_every_step_rolls_back() {
        let f = Fake::new("faults");
        let before = f.snapshot();
        let steps = setup_on(
            &f.cg,
            CpuSet::from_ids([3]),
            CpuSet::from_ids([0, 1, 2]),
            None,
        )
        .unwrap()
        .journal
        .changes
        .len();
        undo_on(&f.cg).unwrap();
        assert_eq!(f.snapshot(), before);
        for k in 0..steps {
            let err = setup_on(
                &f.cg,
                CpuSet::from_ids([3]),
                CpuSet::from_ids([0, 1, 2]),
                Some(k),
            )
            .unwrap_err();
            assert!(err.to_string().contains("rolled back"), "step {k}: {err}");
            assert_eq!(f.snapshot(), before, "step {k} left changes behind");
        }
    }

    #[test]
    fn bad_plans_are_refused_before_any_change() {
        let f = Fake::new("plans");
        let before = f.snapshot();
        for (rt, general) in [
            (CpuSet::empty(), CpuSet::from_ids([0])),
            (CpuSet::from_ids([1]), CpuSet::empty()),
            (CpuSet::from_ids([1]), CpuSet::from_ids([1, 2])),
            (CpuSet::from_ids([9]), CpuSet::from_ids([0])),
        ] {
            assert!(setup_on(&f.cg, rt, general, None).is_err());
            assert_eq!(f.snapshot(), before);
        }
        // A cpuset that lives only on the RT cores cannot be narrowed.
        fs::write(f.cg.root.join("docker/cpuset.cpus"), "3").unwrap();
        let before = f.snapshot();
        let err = setup_on(&f.cg, CpuSet::from_ids([3]), CpuSet::from_ids([0]), None).unwrap_err();
        assert!(err.to_string().contains("runs only on RT cores"), "{err}");
        assert_eq!(f.snapshot(), before);
    }
}
