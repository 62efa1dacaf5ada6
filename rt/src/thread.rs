//! Real-time threads: a builder that spawns a thread with a scheduling policy, an
//! affinity and a prefaulted stack, and explains every refusal.
//!
//! The policy and the affinity are applied *inside* the new thread, before its body runs;
//! if either fails, the thread ends without running the body and [`ThreadBuilder::spawn`]
//! returns the explained error. So a body never runs under the wrong policy.
//!
//! Which library does what, and why:
//! - `SCHED_FIFO` and `SCHED_IDLE` go through the `thread-priority` crate
//!   (`pthread_setschedparam`, whose error code it passes on intact).
//! - `SCHED_DEADLINE` and `SCHED_OTHER` with a nice value use the raw `sched_setattr`
//!   syscall (`sys::sched`): thread-priority's deadline path casts the syscall's `-1` into
//!   its error and loses errno, and an EBUSY or EPERM here needs errno to be explained.
//! - Affinity uses `nix` (see `sys::cpu` for why not `core_affinity`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;

use crate::cpu::CpuSet;
use crate::error::{Error, Result};
use crate::sys;
use crate::sys::sched::{SCHED_DEADLINE, SCHED_FIFO, SCHED_IDLE, SCHED_OTHER, SchedAttr};
use crate::time::Nanos;

/// Flags of a `SCHED_DEADLINE` reservation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct DeadlineFlags {
    /// `SCHED_FLAG_RECLAIM`: the thread may use bandwidth other deadline threads leave
    /// unused (GRUB).
    pub reclaim: bool,
    /// `SCHED_FLAG_DL_OVERRUN`: the kernel sends `SIGXCPU` when the thread runs past its
    /// runtime, so overruns can be counted.
    pub overrun_signal: bool,
    /// `SCHED_FLAG_RESET_ON_FORK`: children do not inherit the policy.
    pub reset_on_fork: bool,
}

impl DeadlineFlags {
    fn bits(self) -> u64 {
        u64::from(self.reset_on_fork)
            | u64::from(self.reclaim) << 1
            | u64::from(self.overrun_signal) << 2
    }
    fn from_bits(b: u64) -> DeadlineFlags {
        DeadlineFlags {
            reset_on_fork: b & 1 != 0,
            reclaim: b & 2 != 0,
            overrun_signal: b & 4 != 0,
        }
    }
}

/// A scheduling policy for a thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Policy {
    /// `SCHED_OTHER` (CFS/EEVDF) with a nice value in -20..=19.
    Other {
        /// The nice value; lower runs more.
        nice: i32,
    },
    /// `SCHED_FIFO` at a static priority in 1..=99.
    Fifo {
        /// The priority; higher preempts lower.
        priority: u8,
    },
    /// `SCHED_DEADLINE`: `runtime` every `period`, finished by `deadline` after release.
    /// Invariant checked on use: 1024 ns ≤ runtime ≤ deadline ≤ period.
    Deadline {
        /// The budget per period.
        runtime: Nanos,
        /// The relative deadline.
        deadline: Nanos,
        /// The period.
        period: Nanos,
        /// Reservation flags.
        flags: DeadlineFlags,
    },
    /// `SCHED_IDLE`: runs only when nothing else wants the CPU.
    Idle,
}

impl Policy {
    /// The policy's kernel name.
    pub fn name(&self) -> &'static str {
        match self {
            Policy::Other { .. } => "SCHED_OTHER",
            Policy::Fifo { .. } => "SCHED_FIFO",
            Policy::Deadline { .. } => "SCHED_DEADLINE",
            Policy::Idle => "SCHED_IDLE",
        }
    }

    fn validate(&self) -> Result<()> {
        match *self {
            Policy::Other { nice } if !(-20..=19).contains(&nice) => Err(Error::Invalid(format!(
                "nice {nice} is out of range; SCHED_OTHER takes -20..=19"
            ))),
            Policy::Fifo { priority } if !(1..=99).contains(&priority) => Err(Error::Invalid(
                format!("SCHED_FIFO priority {priority} is out of range; use 1..=99"),
            )),
            Policy::Deadline {
                runtime,
                deadline,
                period,
                ..
            } if !(runtime.get() >= 1024 && runtime <= deadline && deadline <= period) => {
                Err(Error::Invalid(format!(
                    "SCHED_DEADLINE needs 1024ns <= runtime <= deadline <= period; got runtime {runtime}, deadline {deadline}, period {period}"
                )))
            }
            _ => Ok(()),
        }
    }

    /// The bandwidth a deadline reservation takes, in parts per billion of one CPU.
    fn dl_bandwidth_ppb(&self) -> u64 {
        match *self {
            Policy::Deadline {
                runtime, period, ..
            } if period.get() > 0 => {
                (u128::from(runtime.get()) * 1_000_000_000 / u128::from(period.get())) as u64
            }
            _ => 0,
        }
    }
}

/// The scheduling attributes of a thread as the kernel reports them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThreadAttr {
    /// The kernel thread id.
    pub tid: i32,
    /// The policy, with its parameters. `SCHED_RR` and `SCHED_BATCH` are reported as
    /// [`Policy::Fifo`] and [`Policy::Other`] are not: they come back as `None`.
    pub policy: Option<Policy>,
    /// The raw `SCHED_*` number.
    pub raw_policy: u32,
    /// The affinity mask.
    pub affinity: CpuSet,
}

/// Reads the policy and affinity of thread `tid` (0 = the calling thread) back from the
/// kernel (`sched_getattr`, `sched_getaffinity`).
pub fn attr_of(tid: i32) -> Result<ThreadAttr> {
    let tid = if tid == 0 { sys::cpu::gettid() } else { tid };
    let a = sys::sched::getattr(tid)
        .map_err(|e| Error::sys("sched_getattr", format!("tid {tid}"), e, ""))?;
    let policy = match a.policy {
        SCHED_OTHER => Some(Policy::Other { nice: a.nice }),
        SCHED_FIFO => Some(Policy::Fifo {
            priority: a.priority as u8,
        }),
        SCHED_DEADLINE => Some(Policy::Deadline {
            runtime: Nanos(a.runtime),
            deadline: Nanos(a.deadline),
            period: Nanos(a.period),
            flags: DeadlineFlags::from_bits(a.flags),
        }),
        SCHED_IDLE => Some(Policy::Idle),
        _ => None,
    };
    Ok(ThreadAttr {
        tid,
        policy,
        raw_policy: a.policy,
        affinity: sys::cpu::affinity_of(tid)?,
    })
}

/// The kernel thread id of the calling thread.
pub fn current_tid() -> i32 {
    sys::cpu::gettid()
}

/// Deadline bandwidth this process's threads hold now, in parts per billion of one CPU.
/// The kernel does not tell a process how much bandwidth others hold, so an EBUSY
/// explanation reports this and the cap.
static DL_HELD_PPB: AtomicU64 = AtomicU64::new(0);

/// Gives back a deadline thread's bandwidth from [`DL_HELD_PPB`] when it ends.
struct DlHold(u64);

impl Drop for DlHold {
    fn drop(&mut self) {
        DL_HELD_PPB.fetch_sub(self.0, Ordering::Relaxed);
    }
}

/// Applies `policy` (and `affinity`, first, when given) to the calling thread.
///
/// Affinity goes first: a `SCHED_DEADLINE` thread may not narrow its affinity afterwards.
pub fn set_current(policy: &Policy, affinity: Option<&CpuSet>) -> Result<()> {
    policy.validate()?;
    if let Some(cpus) = affinity {
        if cpus.is_empty() {
            return Err(Error::Invalid(
                "the affinity is empty; give at least one CPU".into(),
            ));
        }
        sys::cpu::set_affinity(0, cpus)?;
    }
    let tid = sys::cpu::gettid();
    let result = match *policy {
        Policy::Fifo { priority } => set_with_thread_priority(
            thread_priority::ThreadSchedulePolicy::Realtime(
                thread_priority::RealtimeThreadSchedulePolicy::Fifo,
            ),
            priority,
        ),
        Policy::Idle => set_with_thread_priority(
            thread_priority::ThreadSchedulePolicy::Normal(
                thread_priority::NormalThreadSchedulePolicy::Idle,
            ),
            0,
        ),
        Policy::Other { nice } => sys::sched::setattr(
            tid,
            &SchedAttr {
                policy: SCHED_OTHER,
                nice,
                ..SchedAttr::default()
            },
        ),
        Policy::Deadline {
            runtime,
            deadline,
            period,
            flags,
        } => sys::sched::setattr(
            tid,
            &SchedAttr {
                policy: SCHED_DEADLINE,
                flags: flags.bits(),
                runtime: runtime.get(),
                deadline: deadline.get(),
                period: period.get(),
                ..SchedAttr::default()
            },
        ),
    };
    result.map_err(|e| explain(policy, tid, e))
}

fn set_with_thread_priority(
    policy: thread_priority::ThreadSchedulePolicy,
    priority: u8,
) -> std::io::Result<()> {
    use thread_priority::{Error as TpError, ThreadPriority, ThreadPriorityValue};
    let prio = ThreadPriorityValue::try_from(priority)
        .map(ThreadPriority::Crossplatform)
        .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    let prio = if priority == 0 {
        ThreadPriority::Min
    } else {
        prio
    };
    thread_priority::set_thread_priority_and_policy(
        thread_priority::thread_native_id(),
        prio,
        policy,
    )
    .map_err(|e| match e {
        TpError::OS(errno) => std::io::Error::from_raw_os_error(errno),
        other => std::io::Error::other(other.to_string()),
    })
}

/// Turns a failed policy change into an error that says what to change.
fn explain(policy: &Policy, tid: i32, e: std::io::Error) -> Error {
    let errno = e.raw_os_error().unwrap_or(0);
    let privileged = sys::sched::has_capability(sys::sched::CAP_SYS_NICE);
    let rtprio = sys::sched::rlimit(libc::RLIMIT_RTPRIO)
        .ok()
        .map(|(soft, _)| soft.map_or("unlimited".to_string(), |v| v.to_string()))
        .unwrap_or_else(|| "unknown".to_string());
    let hint = match (errno, policy) {
        (libc::EPERM, Policy::Fifo { priority }) if !privileged => format!(
            "SCHED_FIFO priority {priority} needs CAP_SYS_NICE, or an rtprio limit of at least {priority}: \
             the limit is {rtprio} (`ulimit -r`); raise `rtprio` in /etc/security/limits.conf, \
             or grant the capability with `setcap cap_sys_nice+ep <binary>`"
        ),
        (libc::EPERM, Policy::Fifo { .. }) => {
            "the process has CAP_SYS_NICE, so real-time time is probably disabled for its cpu cgroup \
             (cpu.rt_runtime_us = 0 under CONFIG_RT_GROUP_SCHED); give the group real-time runtime"
                .to_string()
        }
        (libc::EPERM, Policy::Deadline { .. }) if !privileged => {
            "SCHED_DEADLINE needs CAP_SYS_NICE (an rtprio limit does not grant it); run as root \
             or grant the capability with `setcap cap_sys_nice+ep <binary>`"
                .to_string()
        }
        (libc::EPERM, Policy::Deadline { .. }) => {
            let aff = sys::cpu::affinity_of(tid).map(|a| a.to_string()).unwrap_or_default();
            let domain = CpuSet::allowed().map(|a| a.to_string()).unwrap_or_default();
            format!(
                "a SCHED_DEADLINE thread's affinity must span its whole root domain, and CPUs {aff} \
                 are narrower than the root domain (CPUs {domain}); an exclusive cpuset makes the RT \
                 cores a root domain of their own, and `rtpm shield` makes one"
            )
        }
        (libc::EBUSY, Policy::Deadline { .. }) => {
            let asked = policy.dl_bandwidth_ppb() as f64 / 1e9;
            let held = DL_HELD_PPB.load(Ordering::Relaxed) as f64 / 1e9;
            let cap = crate::probe::dl_bandwidth();
            let cpus = CpuSet::allowed().map(|a| a.len()).unwrap_or(1);
            format!(
                "the kernel's SCHED_DEADLINE bandwidth is exhausted: asked {asked:.3} CPU, \
                 the cap is {cap:.2} x {cpus} CPU(s) = {:.3} CPU (sched_rt_runtime_us / sched_rt_period_us), \
                 this process already holds {held:.3} CPU in deadline threads, and other processes (and, since Linux 6.12, the kernel's per-CPU fair-server reservations) may hold the rest; \
                 ask for less runtime per period, end other deadline threads, or raise /proc/sys/kernel/sched_rt_runtime_us",
                cap * cpus as f64
            )
        }
        (libc::EINVAL, Policy::Deadline { .. }) => {
            "the kernel refused the deadline parameters: it needs 1024ns <= runtime <= deadline <= period, \
             and a period no longer than /proc/sys/kernel/sched_deadline_period_max_us"
                .to_string()
        }
        _ => String::new(),
    };
    Error::sys(
        match policy {
            Policy::Fifo { .. } => "pthread_setschedparam(SCHED_FIFO)",
            Policy::Idle => "pthread_setschedparam(SCHED_IDLE)",
            Policy::Other { .. } => "sched_setattr(SCHED_OTHER)",
            Policy::Deadline { .. } => "sched_setattr(SCHED_DEADLINE)",
        },
        format!("tid {tid}"),
        e,
        hint,
    )
}

/// Locks every current and future page of the process in memory
/// (`mlockall(MCL_CURRENT | MCL_FUTURE)`), so no page fault waits for the disk.
pub fn lock_memory() -> Result<()> {
    sys::sched::mlockall().map_err(|e| {
        let limit = sys::sched::rlimit(libc::RLIMIT_MEMLOCK)
            .ok()
            .map(|(soft, _)| soft.map_or("unlimited".to_string(), |v| format!("{} KiB", v / 1024)))
            .unwrap_or_else(|| "unknown".to_string());
        Error::sys(
            "mlockall(MCL_CURRENT|MCL_FUTURE)",
            "this process",
            e,
            format!(
                "the memlock limit is {limit}; raise it (`ulimit -l unlimited`, `memlock` in /etc/security/limits.conf) \
                 or run with CAP_IPC_LOCK"
            ),
        )
    })
}

/// A held request for a bounded wake-up latency from idle (see [`hold_idle_latency`]);
/// dropping it withdraws the request.
#[derive(Debug)]
pub struct IdleLatency {
    _request: sys::pm_qos::LatencyRequest,
}

/// Asks the kernel's PM QoS (`/dev/cpu_dma_latency`) to keep idle CPUs in states they
/// leave within `max` (whole µs; 0 keeps them polling, as cyclictest does), for as long
/// as the returned value lives. Needs root.
pub fn hold_idle_latency(max: Nanos) -> Result<IdleLatency> {
    let us = u32::try_from(max.get() / 1000).unwrap_or(u32::MAX);
    sys::pm_qos::hold(us)
        .map(|r| IdleLatency { _request: r })
        .map_err(|e| {
            Error::sys(
                "write(/dev/cpu_dma_latency)",
                format!("a {us} µs wake-up latency request"),
                e,
                "the PM QoS device is root's; run as root, or do not ask (idle_latency = None)",
            )
        })
}

/// Touches `bytes` of the calling thread's stack, so its pages are mapped (and, after
/// [`lock_memory`], locked) before time-critical work starts.
pub fn prefault_stack(bytes: usize) {
    const CHUNK: usize = 16 * 1024;
    #[inline(never)]
    fn touch(remaining: usize) {
        let mut page = [0u8; CHUNK];
        std::hint::black_box(&mut page);
        if remaining > CHUNK {
            touch(remaining - CHUNK);
        }
        std::hint::black_box(&page);
    }
    if bytes > 0 {
        touch(bytes);
    }
}

/// A running thread spawned by [`ThreadBuilder`].
#[derive(Debug)]
pub struct RtThread<T> {
    handle: JoinHandle<Option<T>>,
    tid: i32,
}

impl<T> RtThread<T> {
    /// The kernel thread id.
    pub fn tid(&self) -> i32 {
        self.tid
    }
    /// The std handle of the thread.
    pub fn thread(&self) -> &std::thread::Thread {
        self.handle.thread()
    }
    /// Whether the thread's body has returned.
    pub fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }
    /// Waits for the body to return. `Err` carries the panic payload if it panicked.
    pub fn join(self) -> std::thread::Result<T> {
        match self.handle.join() {
            Ok(Some(v)) => Ok(v),
            // Unreachable in practice: a thread whose setup failed is never handed out.
            Ok(None) => Err(Box::new("thread setup failed")),
            Err(p) => Err(p),
        }
    }
}

/// Spawns a thread with a policy, an affinity and a prefaulted stack.
#[derive(Clone, Debug)]
pub struct ThreadBuilder {
    name: String,
    policy: Option<Policy>,
    affinity: Option<CpuSet>,
    prefault: usize,
    stack_size: Option<usize>,
    shielded: bool,
}

impl ThreadBuilder {
    /// A builder for a thread called `name` (the kernel keeps the first 15 bytes).
    pub fn new(name: impl Into<String>) -> ThreadBuilder {
        ThreadBuilder {
            name: name.into(),
            policy: None,
            affinity: None,
            prefault: 0,
            stack_size: None,
            shielded: false,
        }
    }
    /// The scheduling policy; without one the thread inherits the spawner's.
    pub fn policy(mut self, p: Policy) -> Self {
        self.policy = Some(p);
        self
    }
    /// The CPUs the thread may run on; without one it inherits the spawner's.
    pub fn affinity(mut self, cpus: CpuSet) -> Self {
        self.affinity = Some(cpus);
        self
    }
    /// Touch this many bytes of stack before the body runs.
    pub fn prefault_stack(mut self, bytes: usize) -> Self {
        self.prefault = bytes;
        self
    }
    /// Move the thread into the active shield's RT cpuset before its policy is set (see
    /// [`crate::shield::attach_thread`]): a SCHED_DEADLINE thread whose affinity is only
    /// the RT cores needs them to be its root domain. A thread whose affinity lies within
    /// the shielded RT cores, spawned from the shield's general cpuset, is moved anyway
    /// (it could not have that affinity where it is).
    pub fn shielded(mut self, yes: bool) -> Self {
        self.shielded = yes;
        self
    }
    /// The stack size (std's default is 2 MiB).
    pub fn stack_size(mut self, bytes: usize) -> Self {
        self.stack_size = Some(bytes);
        self
    }

    /// Starts the thread. The affinity, then the policy, are applied inside it before `f`
    /// runs; if either fails, `f` never runs and the explained error is returned here.
    pub fn spawn<F, T>(self, f: F) -> Result<RtThread<T>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        if let Some(p) = &self.policy {
            p.validate()?;
        }
        if let Some(stack) = self.stack_size
            && self.prefault > stack
        {
            return Err(Error::Invalid(format!(
                "thread \"{}\": prefault of {} bytes exceeds its stack of {stack} bytes",
                self.name, self.prefault
            )));
        }
        let (tx, rx) = std::sync::mpsc::sync_channel::<Result<i32>>(1);
        let mut std_builder = std::thread::Builder::new().name(self.name.clone());
        if let Some(s) = self.stack_size {
            std_builder = std_builder.stack_size(s);
        }
        let ThreadBuilder {
            name,
            policy,
            affinity,
            prefault,
            shielded,
            ..
        } = self;
        // A thread bound to shielded RT cores from the shield's general cpuset cannot get
        // that affinity there: it joins the RT cpuset first, like a SCHED_DEADLINE one.
        let shielded = shielded
            || affinity.as_ref().is_some_and(|a| {
                sys::cgroup::shield_rt_cpus_for_self()
                    .is_some_and(|rt| !a.is_empty() && a.intersection(&rt) == *a)
            });
        let handle = std_builder
            .spawn(move || {
                let tid = sys::cpu::gettid();
                let hold_ppb = policy.as_ref().map_or(0, Policy::dl_bandwidth_ppb);
                let attach = if shielded {
                    crate::shield::attach_thread(tid)
                } else {
                    Ok(())
                };
                let setup = attach.and_then(|()| match &policy {
                    Some(p) => set_current(p, affinity.as_ref()),
                    None => match &affinity {
                        Some(cpus) => sys::cpu::set_affinity(0, cpus),
                        None => Ok(()),
                    },
                });
                let failed = setup.is_err();
                let _hold = (!failed && hold_ppb > 0).then(|| {
                    DL_HELD_PPB.fetch_add(hold_ppb, Ordering::Relaxed);
                    DlHold(hold_ppb)
                });
                if !failed {
                    prefault_stack(prefault);
                }
                // The spawner waits for this; if it is gone there is nobody to run for.
                if tx.send(setup.map(|()| tid)).is_err() || failed {
                    return None;
                }
                Some(f())
            })
            .map_err(|e| Error::sys("pthread_create", format!("thread \"{name}\""), e, ""))?;
        match rx.recv() {
            Ok(Ok(tid)) => Ok(RtThread { handle, tid }),
            Ok(Err(e)) => {
                let _ = handle.join();
                Err(e)
            }
            Err(_) => {
                let _ = handle.join();
                Err(Error::Invalid(format!(
                    "thread \"{name}\" ended before reporting its setup"
                )))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_range_policies_are_refused_before_any_syscall() {
        for p in [
            Policy::Fifo { priority: 0 },
            Policy::Fifo { priority: 100 },
            Policy::Other { nice: 20 },
            Policy::Deadline {
                runtime: Nanos::ms(2),
                deadline: Nanos::ms(1),
                period: Nanos::ms(10),
                flags: DeadlineFlags::default(),
            },
            Policy::Deadline {
                runtime: Nanos(10),
                deadline: Nanos::ms(1),
                period: Nanos::ms(10),
                flags: DeadlineFlags::default(),
            },
        ] {
            let err = ThreadBuilder::new("bad").policy(p).spawn(|| ()).err();
            assert!(matches!(err, Some(Error::Invalid(_))), "{p:?} gave {err:?}");
        }
    }

    #[test]
    fn plain_thread_keeps_inherited_attributes_and_reports_tid() {
        let me = attr_of(0).unwrap();
        let t = ThreadBuilder::new("plain")
            .prefault_stack(64 * 1024)
            .spawn(|| attr_of(0).unwrap())
            .unwrap();
        let tid = t.tid();
        let seen = t.join().unwrap();
        assert_eq!(seen.tid, tid);
        assert_eq!(seen.affinity, me.affinity);
        assert_eq!(seen.raw_policy, me.raw_policy);
    }

    #[test]
    fn other_policy_with_nice_reads_back() {
        let t = ThreadBuilder::new("nice")
            .policy(Policy::Other { nice: 5 })
            .affinity(CpuSet::single(CpuSet::allowed().unwrap().last().unwrap()))
            .spawn(|| attr_of(0).unwrap())
            .unwrap();
        let seen = t.join().unwrap();
        assert_eq!(seen.policy, Some(Policy::Other { nice: 5 }));
        assert_eq!(seen.affinity.len(), 1);
    }

    #[test]
    fn deadline_flags_round_trip() {
        let f = DeadlineFlags {
            reclaim: true,
            overrun_signal: true,
            reset_on_fork: false,
        };
        assert_eq!(DeadlineFlags::from_bits(f.bits()), f);
        assert_eq!(f.bits(), 6);
    }

    #[test]
    fn prefault_larger_than_stack_is_refused() {
        let err = ThreadBuilder::new("x")
            .stack_size(64 * 1024)
            .prefault_stack(1 << 20)
            .spawn(|| ())
            .err();
        assert!(matches!(err, Some(Error::Invalid(_))));
    }
}
