//! What this machine permits: io_uring (present, enabled, not blocked, new enough) and
//! the memlock budget its rings are charged to.
//!
//! ## Memory accounting of io_uring, by kernel
//!
//! - **before 5.12**: the SQ/CQ rings count against `RLIMIT_MEMLOCK`.
//! - **5.12 to 6.12**: rings are charged to the memory cgroup (`memory.max`), not to
//!   `RLIMIT_MEMLOCK`; only registered buffers are.
//! - **since the 6.13/6.14 memory-region rework**: rings and provided-buffer rings are
//!   memory regions, and a process *without CAP_IPC_LOCK* has them charged to its user's
//!   locked memory (`RLIMIT_MEMLOCK`, summed over all of that user's processes, with
//!   freed rings released a little later). Measured on 6.18: as an unprivileged user,
//!   `io_uring_setup` fails with ENOMEM under `ulimit -l 0` and succeeds with 32 KiB for a
//!   256-entry ring.
//!
//! [`MemlockBudget::check`] applies the rule of the running kernel and says what to change.

use std::io;

use io_uring::IoUring;

/// Why io_uring cannot serve a reactor here.
pub(crate) type Unavailable = String;

/// The running kernel's version, `(major, minor)`.
pub(crate) fn kernel_version() -> (u32, u32) {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut it = release
        .trim()
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|p| p.parse::<u32>().ok());
    (it.next().unwrap_or(0), it.next().unwrap_or(0))
}

fn has_cap_ipc_lock() -> bool {
    const CAP_IPC_LOCK: u32 = 14;
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .is_some_and(|caps| caps & (1 << CAP_IPC_LOCK) != 0)
}

fn memlock_limit() -> Option<u64> {
    // SAFETY: zeroed rlimit is valid; getrlimit writes into it.
    let mut r: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: `r` is a live, writable rlimit.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut r) };
    (rc == 0 && r.rlim_cur != libc::RLIM_INFINITY).then_some(r.rlim_cur)
}

/// Locked memory a reactor's rings need, and what the running kernel charges it to.
#[derive(Clone, Debug)]
pub(crate) struct MemlockBudget {
    /// Bytes charged (rounded to pages): SQ entries, SQ/CQ rings, provided-buffer ring.
    pub needed: u64,
    /// RLIMIT_MEMLOCK, `None` when unlimited.
    pub limit: Option<u64>,
    /// Whether the running kernel charges rings to RLIMIT_MEMLOCK for this process.
    pub charged: bool,
    kernel: (u32, u32),
}

impl MemlockBudget {
    /// The budget of a ring with `sq` submission entries, `cq` completion entries and a
    /// provided-buffer ring of `bufs` entries.
    pub(crate) fn for_ring(sq: u32, cq: u32, bufs: u32) -> MemlockBudget {
        let page = 4096u64;
        let pages = |b: u64| b.div_ceil(page) * page;
        let needed = pages(u64::from(sq) * 64)
            + pages(u64::from(cq) * 16 + u64::from(sq) * 4 + 320)
            + pages(u64::from(bufs) * 16);
        let kernel = kernel_version();
        let memcg_era = ((5, 12)..(6, 13)).contains(&kernel);
        MemlockBudget {
            needed,
            limit: memlock_limit(),
            charged: !memcg_era && !has_cap_ipc_lock(),
            kernel,
        }
    }

    /// `Err` with an explanation when the limit is too low for the ring on this kernel.
    pub(crate) fn check(&self) -> Result<(), String> {
        match self.limit {
            Some(limit) if self.charged && limit < self.needed => Err(self.explain()),
            _ => Ok(()),
        }
    }

    /// What applies on this kernel, and what to change.
    pub(crate) fn explain(&self) -> String {
        let (maj, min) = self.kernel;
        let limit = self
            .limit
            .map_or("unlimited".to_string(), |l| format!("{} KiB", l / 1024));
        let rule = if (maj, min) < (5, 12) {
            "before 5.12, io_uring rings count against RLIMIT_MEMLOCK"
        } else if (maj, min) < (6, 13) {
            "on 5.12..6.12 rings are charged to the memory cgroup, not RLIMIT_MEMLOCK: raise the cgroup's memory.max (RLIMIT_MEMLOCK only matters for registered buffers)"
        } else {
            "since 6.13/6.14, rings and provided-buffer rings are charged to the user's RLIMIT_MEMLOCK (summed over all of the user's processes) unless the process has CAP_IPC_LOCK"
        };
        format!(
            "Linux {maj}.{min}: {rule}. This reactor needs about {} KiB locked; RLIMIT_MEMLOCK is {limit}{}. \
             Raise it (`ulimit -l`, LimitMEMLOCK= in a systemd unit, --ulimit memlock= for containers), \
             grant CAP_IPC_LOCK, lower `buffers`/`ring_entries`, or set backend = \"epoll\"",
            self.needed.div_ceil(1024),
            if self.charged {
                ""
            } else {
                " (not charged for this process)"
            }
        )
    }
}

/// What the running kernel's io_uring offers.
#[derive(Clone, Debug)]
pub(crate) struct UringSupport {
    /// Kernel version.
    pub kernel: (u32, u32),
}

/// Runs `f` on a short-lived thread of its own and returns its result.
///
/// Every io_uring call that is not made by a pool thread goes through here (probing, ring
/// setup, shutdown). When a ring is torn down, the kernel queues work with a signal-like
/// notification (TWA_SIGNAL) to every task that used it; a caller's thread that had made
/// io_uring calls would see a later blocking system call fail with EINTR (any socket call
/// with a timeout does). Keeping those calls on our own threads keeps callers clean.
pub(crate) fn on_own_thread<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| match s.spawn(f).join() {
        Ok(v) => v,
        Err(panic) => std::panic::resume_unwind(panic),
    })
}

/// Probes io_uring (on a thread of its own, see [`on_own_thread`]): enabled by sysctl, creatable (not blocked by seccomp or an LSM), new
/// enough for multishot recvmsg (6.0) and provided-buffer rings (5.19), with every opcode
/// the backend submits.
pub(crate) fn probe_uring() -> Result<UringSupport, Unavailable> {
    on_own_thread(probe_here)
}

fn probe_here() -> Result<UringSupport, Unavailable> {
    let disabled = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .unwrap_or(0);
    if disabled == 2 {
        return Err("kernel.io_uring_disabled = 2: io_uring is disabled for every process".into());
    }
    let kernel = kernel_version();
    if kernel < (6, 0) {
        return Err(format!(
            "Linux {}.{} lacks multishot recvmsg (6.0) or provided-buffer rings (5.19)",
            kernel.0, kernel.1
        ));
    }
    let ring = match IoUring::new(8) {
        Ok(r) => r,
        Err(e) => return Err(explain_setup_error(&e, disabled, 8, 16, 0)),
    };
    let mut probe = io_uring::Probe::new();
    if let Err(e) = ring.submitter().register_probe(&mut probe) {
        return Err(format!("IORING_REGISTER_PROBE failed: {e}"));
    }
    use io_uring::opcode;
    for (code, name) in [
        (opcode::RecvMsg::CODE, "RECVMSG"),
        (opcode::Recv::CODE, "RECV"),
        (opcode::SendMsg::CODE, "SENDMSG"),
        (opcode::Accept::CODE, "ACCEPT"),
        (opcode::Read::CODE, "READ"),
        (opcode::AsyncCancel::CODE, "ASYNC_CANCEL"),
    ] {
        if !probe.is_supported(code) {
            return Err(format!("io_uring lacks IORING_OP_{name}"));
        }
    }
    Ok(UringSupport { kernel })
}

/// Explains an `io_uring_setup` failure.
pub(crate) fn explain_setup_error(
    e: &io::Error,
    disabled: u32,
    sq: u32,
    cq: u32,
    bufs: u32,
) -> String {
    match e.raw_os_error() {
        Some(libc::ENOSYS) => "io_uring_setup returned ENOSYS: the kernel was built without io_uring, or a seccomp filter answers ENOSYS for it".into(),
        Some(libc::EPERM) => format!(
            "io_uring_setup returned EPERM: blocked by a seccomp filter (container default profiles deny it){}, or by an LSM",
            if disabled == 1 { ", or by kernel.io_uring_disabled = 1 (only CAP_SYS_ADMIN or kernel.io_uring_group may use it)" } else { "" }
        ),
        Some(libc::ENOMEM) => format!(
            "io_uring_setup returned ENOMEM: {}",
            MemlockBudget::for_ring(sq, cq, bufs).explain()
        ),
        _ => format!("io_uring_setup failed: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_rounds_each_area_to_pages() {
        let b = MemlockBudget::for_ring(256, 512, 0);
        // 16 KiB of SQEs + 3 pages of rings (measured: 32 KiB suffices on 6.18).
        assert_eq!(b.needed, 16384 + 12288);
        assert!(b.explain().contains("KiB"));
    }

    #[test]
    fn the_kernel_version_is_read() {
        assert!(kernel_version().0 >= 3);
    }
}
