//! What this machine permits: probed, then undone.
//!
//! Every probe that changes something does it in a throwaway thread (a policy change) or
//! on a throwaway file descriptor (an io_uring), so nothing of the probe outlives it.

use serde::Serialize;

use crate::cpu::CpuSet;
use crate::sys;
use crate::thread::{DeadlineFlags, Policy, ThreadBuilder, attr_of};
use crate::time::Nanos;

/// The outcome of one probe.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Probe {
    /// Whether the feature works here.
    pub ok: bool,
    /// What was seen: the detail behind `ok`, or the explained reason it failed.
    pub detail: String,
}

impl Probe {
    fn works(detail: impl Into<String>) -> Probe {
        Probe {
            ok: true,
            detail: detail.into(),
        }
    }
    fn fails(detail: impl Into<String>) -> Probe {
        Probe {
            ok: false,
            detail: detail.into(),
        }
    }
}

/// A limit that may be unlimited (`None`).
pub type Limit = Option<u64>;

/// What this machine permits, as `rtpm topology` prints it.
#[derive(Clone, Debug, Serialize)]
pub struct Capabilities {
    /// The effective user id.
    pub euid: u32,
    /// Whether the process holds CAP_SYS_NICE.
    pub cap_sys_nice: bool,
    /// The soft RLIMIT_RTPRIO (`ulimit -r`); `None` = unlimited.
    pub rtprio_limit: Limit,
    /// Whether a thread can take SCHED_FIFO.
    pub sched_fifo: Probe,
    /// Whether a thread can take SCHED_DEADLINE (with affinity = the allowed CPUs).
    pub sched_deadline: Probe,
    /// `sched_rt_runtime_us` (-1 = no cap).
    pub sched_rt_runtime_us: i64,
    /// `sched_rt_period_us`.
    pub sched_rt_period_us: i64,
    /// The real-time and deadline bandwidth cap per CPU (runtime / period).
    pub dl_bandwidth: f64,
    /// Whether an io_uring can be set up.
    pub io_uring: Probe,
    /// `kernel.io_uring_disabled` (0 enabled, 1 restricted to a group, 2 disabled), if present.
    pub io_uring_disabled: Option<u8>,
    /// The soft RLIMIT_MEMLOCK in bytes; `None` = unlimited.
    pub memlock_limit: Limit,
    /// Whether the process holds CAP_IPC_LOCK (which lifts the memlock limit).
    pub cap_ipc_lock: bool,
}

fn read_i64(path: &str) -> Option<i64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The per-CPU bandwidth the kernel grants real-time and deadline tasks:
/// `sched_rt_runtime_us / sched_rt_period_us`. It is 0.95 when the files cannot be read
/// (the kernel's default), and 1.0 when the runtime is -1 (no cap).
pub fn dl_bandwidth() -> f64 {
    match (
        read_i64("/proc/sys/kernel/sched_rt_runtime_us"),
        read_i64("/proc/sys/kernel/sched_rt_period_us"),
    ) {
        (Some(-1), _) => 1.0,
        (Some(rt), Some(p)) if rt >= 0 && p > 0 => rt as f64 / p as f64,
        _ => 0.95,
    }
}

/// Tries SCHED_FIFO at priority 1 in a throwaway thread.
pub fn sched_fifo() -> Probe {
    let spawned = ThreadBuilder::new("rtpm-probe-fifo")
        .policy(Policy::Fifo { priority: 1 })
        .spawn(|| attr_of(0));
    match spawned.map(|t| t.join()) {
        Ok(Ok(Ok(a))) if a.policy == Some(Policy::Fifo { priority: 1 }) => {
            Probe::works("a thread took SCHED_FIFO priority 1 (read back with sched_getattr)")
        }
        Ok(Ok(Ok(a))) => Probe::fails(format!("the policy read back as {:?}", a.policy)),
        Ok(Ok(Err(e))) | Err(e) => Probe::fails(e.to_string()),
        Ok(Err(_)) => Probe::fails("the probe thread panicked"),
    }
}

/// Tries a small SCHED_DEADLINE reservation (100us every 10ms) in a throwaway thread
/// whose affinity is every allowed CPU.
pub fn sched_deadline() -> Probe {
    let policy = Policy::Deadline {
        runtime: Nanos::us(100),
        deadline: Nanos::ms(10),
        period: Nanos::ms(10),
        flags: DeadlineFlags::default(),
    };
    let mut b = ThreadBuilder::new("rtpm-probe-dl").policy(policy);
    if let Ok(all) = CpuSet::allowed() {
        b = b.affinity(all);
    }
    match b.spawn(|| attr_of(0)).map(|t| t.join()) {
        Ok(Ok(Ok(a))) if a.policy == Some(policy) => {
            Probe::works("a thread took SCHED_DEADLINE 100us/10ms (read back with sched_getattr)")
        }
        Ok(Ok(Ok(a))) => Probe::fails(format!("the policy read back as {:?}", a.policy)),
        Ok(Ok(Err(e))) | Err(e) => Probe::fails(e.to_string()),
        Ok(Err(_)) => Probe::fails("the probe thread panicked"),
    }
}

/// Sets up (and at once closes) a two-entry io_uring.
pub fn io_uring() -> Probe {
    let disabled = io_uring_disabled();
    match sys::uring::probe_setup() {
        Ok(()) => Probe::works("io_uring_setup succeeded"),
        Err(e) => {
            let why = match (e.raw_os_error(), disabled) {
                (Some(libc::ENOSYS), _) => {
                    "the kernel has no io_uring (ENOSYS): built without CONFIG_IO_URING, or a seccomp filter answers ENOSYS".to_string()
                }
                (Some(libc::EPERM), Some(2)) => "disabled by sysctl kernel.io_uring_disabled = 2".to_string(),
                (Some(libc::EPERM), Some(1)) => {
                    "restricted by sysctl kernel.io_uring_disabled = 1 to the group in kernel.io_uring_group".to_string()
                }
                (Some(libc::EPERM), _) => {
                    "refused with EPERM while the sysctl allows it: a seccomp filter (container default profiles) blocks io_uring_setup".to_string()
                }
                (Some(libc::ENOMEM), _) => {
                    "ENOMEM: the ring could not be locked in memory; raise the memlock limit (`ulimit -l`) or the cgroup's memory limit".to_string()
                }
                _ => String::new(),
            };
            Probe::fails(if why.is_empty() {
                format!("io_uring_setup: {e}")
            } else {
                format!("io_uring_setup: {e}: {why}")
            })
        }
    }
}

/// `kernel.io_uring_disabled`, if the kernel has the sysctl.
pub fn io_uring_disabled() -> Option<u8> {
    read_i64("/proc/sys/kernel/io_uring_disabled").and_then(|v| u8::try_from(v).ok())
}

/// Runs every probe.
pub fn capabilities() -> Capabilities {
    let soft = |r| sys::sched::rlimit(r).ok().and_then(|(soft, _)| soft);
    Capabilities {
        // SAFETY: geteuid cannot fail and touches no memory.
        euid: unsafe { libc::geteuid() },
        cap_sys_nice: sys::sched::has_capability(sys::sched::CAP_SYS_NICE),
        rtprio_limit: soft(libc::RLIMIT_RTPRIO),
        sched_fifo: sched_fifo(),
        sched_deadline: sched_deadline(),
        sched_rt_runtime_us: read_i64("/proc/sys/kernel/sched_rt_runtime_us").unwrap_or(950_000),
        sched_rt_period_us: read_i64("/proc/sys/kernel/sched_rt_period_us").unwrap_or(1_000_000),
        dl_bandwidth: dl_bandwidth(),
        io_uring: io_uring(),
        io_uring_disabled: io_uring_disabled(),
        memlock_limit: soft(libc::RLIMIT_MEMLOCK),
        cap_ipc_lock: sys::sched::has_capability(sys::sched::CAP_IPC_LOCK),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bandwidth_is_a_fraction() {
        let bw = dl_bandwidth();
        assert!(bw > 0.0 && bw <= 1.0, "{bw}");
    }

    #[test]
    fn fifo_probe_agrees_with_privilege() {
        // With CAP_SYS_NICE (root) FIFO must work; without it and with rtprio 0 it must not.
        let p = sched_fifo();
        let privileged = sys::sched::has_capability(sys::sched::CAP_SYS_NICE);
        let rtprio = sys::sched::rlimit(libc::RLIMIT_RTPRIO).unwrap().0;
        if privileged {
            assert!(p.ok, "{}", p.detail);
        } else if rtprio == Some(0) {
            assert!(!p.ok);
            assert!(p.detail.contains("CAP_SYS_NICE"), "{}", p.detail);
        }
    }

    #[test]
    fn probes_leave_the_caller_untouched() {
        let before = attr_of(0).unwrap();
        let _ = sched_fifo();
        let _ = sched_deadline();
        let _ = io_uring();
        assert_eq!(attr_of(0).unwrap(), before);
    }
}
