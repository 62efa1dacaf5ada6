//! Keeping the RT cores for admitted RT work: every thread of the process leaves them at
//! start and gets its affinity back at stop.

use crate::cpu::CpuSet;
use crate::error::Result;
use crate::sys;
use crate::thread::attr_of;

/// One thread of this process as the kernel sees it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ThreadPlacement {
    /// The kernel thread id.
    pub tid: i32,
    /// Its name (`/proc/self/task/TID/comm`).
    pub name: String,
    /// Its affinity.
    pub affinity: CpuSet,
    /// Its raw `SCHED_*` policy number.
    pub policy: u32,
}

/// Every thread of the process, read from `/proc/self/task`. Threads that end while
/// being read are left out.
pub fn process_threads() -> Result<Vec<ThreadPlacement>> {
    let dir = std::fs::read_dir("/proc/self/task")
        .map_err(|e| crate::Error::file("/proc/self/task", e))?;
    let mut out = Vec::new();
    for entry in dir.flatten() {
        let Some(tid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(attr) = attr_of(tid) else {
            continue;
        };
        let name = std::fs::read_to_string(entry.path().join("comm"))
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        out.push(ThreadPlacement {
            tid,
            name,
            affinity: attr.affinity,
            policy: attr.raw_policy,
        });
    }
    out.sort_by_key(|t| t.tid);
    Ok(out)
}

/// Moves every thread of the process whose affinity touches `rt` onto the rest of its
/// affinity (or onto `general` if nothing is left). Returns what to restore.
pub(crate) fn confine_process(rt: &CpuSet, general: &CpuSet) -> Result<Vec<(i32, CpuSet)>> {
    let mut saved = Vec::new();
    for t in process_threads()? {
        if t.affinity.intersection(rt).is_empty() {
            continue;
        }
        let mut to = t.affinity.difference(rt);
        if to.is_empty() {
            to = *general;
        }
        match sys::cpu::set_affinity(t.tid, &to) {
            Ok(()) => saved.push((t.tid, t.affinity)),
            // The thread ended since it was listed: nothing to move.
            Err(e) if e.errno() == Some(libc::ESRCH) => {}
            Err(e) => {
                restore(&saved);
                return Err(e);
            }
        }
    }
    Ok(saved)
}

/// Gives each thread that still exists its saved affinity back.
pub(crate) fn restore(saved: &[(i32, CpuSet)]) {
    for (tid, cpus) in saved {
        let _ = sys::cpu::set_affinity(*tid, cpus);
    }
}
