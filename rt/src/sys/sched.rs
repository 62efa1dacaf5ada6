//! `sched_setattr` / `sched_getattr`, which libc does not wrap, plus rlimits and mlockall.

use std::io;

/// `SCHED_OTHER`.
pub const SCHED_OTHER: u32 = 0;
/// `SCHED_FIFO`.
pub const SCHED_FIFO: u32 = 1;
/// `SCHED_IDLE`.
pub const SCHED_IDLE: u32 = 5;
/// `SCHED_DEADLINE`.
pub const SCHED_DEADLINE: u32 = 6;

/// The kernel's `struct sched_attr` (`SCHED_ATTR_SIZE_VER1`, 56 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SchedAttr {
    /// Size of this struct, for the kernel's versioning.
    pub size: u32,
    /// `SCHED_*`.
    pub policy: u32,
    /// `SCHED_FLAG_*`.
    pub flags: u64,
    /// Nice value for SCHED_OTHER/SCHED_BATCH.
    pub nice: i32,
    /// Static priority for SCHED_FIFO/SCHED_RR.
    pub priority: u32,
    /// SCHED_DEADLINE runtime, ns.
    pub runtime: u64,
    /// SCHED_DEADLINE relative deadline, ns.
    pub deadline: u64,
    /// SCHED_DEADLINE period, ns.
    pub period: u64,
    /// Utilisation clamp minimum.
    pub util_min: u32,
    /// Utilisation clamp maximum.
    pub util_max: u32,
}

const ATTR_SIZE_VER0: u32 = 48;

/// Calls `sched_setattr(tid, attr, 0)`.
pub fn setattr(tid: i32, attr: &SchedAttr) -> io::Result<()> {
    let mut a = *attr;
    // VER0 carries everything but the utilisation clamps, which we never set; it is
    // accepted by every kernel since 3.14.
    a.size = ATTR_SIZE_VER0;
    // SAFETY: `a` is a valid, initialised `struct sched_attr` whose `size` field tells the
    // kernel how many bytes to read, and it outlives the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_sched_setattr,
            tid as libc::c_long,
            &a as *const SchedAttr,
            0 as libc::c_uint,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Calls `sched_getattr(tid, attr, sizeof attr, 0)`.
pub fn getattr(tid: i32) -> io::Result<SchedAttr> {
    let mut a = SchedAttr::default();
    // SAFETY: `a` is a writable `struct sched_attr` of exactly the size passed, and it
    // outlives the call; the kernel writes at most that many bytes.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_sched_getattr,
            tid as libc::c_long,
            &mut a as *mut SchedAttr,
            std::mem::size_of::<SchedAttr>() as libc::c_uint,
            0 as libc::c_uint,
        )
    };
    if rc == 0 {
        Ok(a)
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The soft and hard limits of `resource` (`libc::RLIMIT_*`); `None` means unlimited.
pub fn rlimit(resource: libc::__rlimit_resource_t) -> io::Result<(Option<u64>, Option<u64>)> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `r` is a valid, writable rlimit for the duration of the call.
    let rc = unsafe { libc::getrlimit(resource, &mut r) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let lim = |v: libc::rlim_t| (v != libc::RLIM_INFINITY).then_some(v);
    Ok((lim(r.rlim_cur), lim(r.rlim_max)))
}

/// `mlockall(MCL_CURRENT | MCL_FUTURE)`.
pub fn mlockall() -> io::Result<()> {
    // SAFETY: mlockall takes only flags and touches no memory of ours.
    let rc = unsafe { libc::mlockall(libc::MCL_CURRENT | libc::MCL_FUTURE) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Whether the effective capability set holds `cap` (e.g. 23 = CAP_SYS_NICE).
pub fn has_capability(cap: u32) -> bool {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return false;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|mask| mask & (1u64 << cap) != 0)
}

/// `CAP_SYS_NICE`.
pub const CAP_SYS_NICE: u32 = 23;
/// `CAP_IPC_LOCK`.
pub const CAP_IPC_LOCK: u32 = 14;
