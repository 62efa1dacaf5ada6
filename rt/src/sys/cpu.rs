//! Affinity calls.
//!
//! `nix` wraps `sched_{get,set}affinity` safely for any CPU mask. The `core_affinity`
//! crate only pins the calling thread to a single core and reports failure as a bare
//! `bool`, which loses the errno that an explained error needs; so it does not fit here.

use nix::sched::{CpuSet as NixCpuSet, sched_getaffinity, sched_setaffinity};
use nix::unistd::Pid;

use crate::cpu::CpuSet;
use crate::error::{Error, Result};

fn to_io(e: nix::Error) -> std::io::Error {
    std::io::Error::from_raw_os_error(e as i32)
}

fn target(tid: i32) -> String {
    if tid == 0 {
        "the calling thread".to_string()
    } else {
        format!("tid {tid}")
    }
}

/// The affinity mask of thread `tid` (0 = the calling thread).
pub fn affinity_of(tid: i32) -> Result<CpuSet> {
    let mask = sched_getaffinity(Pid::from_raw(tid))
        .map_err(|e| Error::sys("sched_getaffinity", target(tid), to_io(e), ""))?;
    Ok(CpuSet::from_ids(
        (0..NixCpuSet::count()).filter(|&c| mask.is_set(c).unwrap_or(false)),
    ))
}

/// Sets the affinity mask of thread `tid` (0 = the calling thread).
pub fn set_affinity(tid: i32, cpus: &CpuSet) -> Result<()> {
    let mut mask = NixCpuSet::new();
    for c in cpus.iter() {
        mask.set(c).map_err(|e| {
            Error::sys(
                "sched_setaffinity",
                target(tid),
                to_io(e),
                format!("CPU {c} is beyond what this platform's cpu_set_t holds"),
            )
        })?;
    }
    sched_setaffinity(Pid::from_raw(tid), &mask).map_err(|e| {
        let hint = match e {
            nix::Error::EINVAL => format!(
                "none of CPUs {cpus} is allowed to this process (its cpuset cgroup or a shield excludes them)"
            ),
            nix::Error::EBUSY => "the thread is SCHED_DEADLINE, whose affinity must span its whole root domain; put it in an exclusive cpuset (`rtpm shield`) instead of narrowing its affinity".to_string(),
            nix::Error::EPERM => "changing another user's thread needs CAP_SYS_NICE".to_string(),
            _ => String::new(),
        };
        Error::sys("sched_setaffinity", format!("{} to CPUs {cpus}", target(tid)), to_io(e), hint)
    })
}

/// The kernel thread id of the calling thread.
pub fn gettid() -> i32 {
    nix::unistd::gettid().as_raw()
}
