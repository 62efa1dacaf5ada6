//! Keeping the RT cores for admitted RT work: every thread of the process leaves them at
//! start and gets its affinity back at stop.
//!
//! "Admitted RT work" is process-wide: the task threads and dispatchers of *every*
//! executor in the process are registered here ([`RtWork`]), so an executor starting
//! second (two runtimes in one process, a test with several) leaves the first one's RT
//! threads on their cores.

use std::sync::{Mutex, PoisonError};

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

/// The threads of this process running admitted RT work (control side only: taken
/// when an RT thread starts or ends and when an executor starts, never on a hot path).
static RT_WORK: Mutex<Vec<i32>> = Mutex::new(Vec::new());

/// Registration of one RT thread as admitted RT work, for as long as it lives.
pub(crate) struct RtWork(i32);

impl RtWork {
    /// Registers thread `tid` (from the side that spawned it, as soon as it knows the id).
    pub(crate) fn mark(tid: i32) {
        let mut v = RT_WORK.lock().unwrap_or_else(PoisonError::into_inner);
        if !v.contains(&tid) {
            v.push(tid);
        }
    }

    /// Registers the calling thread; dropping the guard (the thread's end) unregisters it.
    pub(crate) fn this_thread() -> RtWork {
        let tid = sys::cpu::gettid();
        RtWork::mark(tid);
        RtWork(tid)
    }
}

impl Drop for RtWork {
    fn drop(&mut self) {
        let mut v = RT_WORK.lock().unwrap_or_else(PoisonError::into_inner);
        v.retain(|t| *t != self.0);
    }
}

fn is_rt_work(tid: i32) -> bool {
    RT_WORK
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .contains(&tid)
}

/// Moves every thread of the process whose affinity touches `rt` — except admitted RT
/// work of any executor ([`RtWork`]) — onto the rest of its affinity (or onto `general`
/// if nothing is left). Returns what to restore.
pub(crate) fn confine_process(rt: &CpuSet, general: &CpuSet) -> Result<Vec<(i32, CpuSet)>> {
    let mut saved = Vec::new();
    for t in process_threads()? {
        if t.affinity.intersection(rt).is_empty() || is_rt_work(t.tid) {
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
