//! What the executor's integration tests share: probes, a config folder and a workload.

#![allow(dead_code)] // each test binary uses part of it

use std::path::PathBuf;
use std::sync::Mutex;

use rtpm_rt::config::Partition;
use rtpm_rt::cpu::CpuSet;
use rtpm_rt::exec::ExecConfig;
use rtpm_rt::time::{Clock, MonotonicClock, Nanos};

/// The RT core's models the tests run in turn: (tag, the `cores/cpuN.toml` keys).
pub const MODELS: [(&str, &str); 3] = [
    ("threads-fp", "scheduler = \"fp\"\ndispatch = \"threads\""),
    (
        "coop-edf",
        "scheduler = \"edf\"\ndispatch = \"cooperative\"",
    ),
    ("coop-fp", "scheduler = \"fp\"\ndispatch = \"cooperative\""),
];

/// The executor's tests compete for the one RT core: run them one at a time.
pub static RT_CORE: Mutex<()> = Mutex::new(());

/// Takes [`RT_CORE`], whatever a previous (failed) test left, and gives the calling
/// thread the process's own affinity back: the test harness may have spawned it while
/// another test's executor kept new threads off the RT core.
pub fn exclusive() -> std::sync::MutexGuard<'static, ()> {
    let g = RT_CORE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let main: CpuSet = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // SAFETY: a zeroed cpu_set_t is empty; CPU_SET writes inside it; sched_setaffinity
    // reads it for the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for c in main.iter() {
            libc::CPU_SET(c, &mut set);
        }
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
    g
}

/// `Ok` when a thread can take SCHED_FIFO.
pub fn fifo_allowed() -> Result<(), String> {
    let p = rtpm_rt::probe::sched_fifo();
    if p.ok {
        Ok(())
    } else {
        Err(format!("SCHED_FIFO unavailable: {}", p.detail))
    }
}

/// `Ok` when the process may use two CPUs (one RT, one general).
pub fn two_cpus() -> Result<(), String> {
    let n = CpuSet::allowed().map_err(|e| e.to_string())?.len();
    if n >= 2 {
        Ok(())
    } else {
        Err(format!(
            "needs 2 CPUs (one rt, one general), the process may use {n}"
        ))
    }
}

/// A config folder whose last allowed CPU is `rt` with the given keys.
pub struct ConfigDir(pub PathBuf);

impl ConfigDir {
    pub fn new(tag: &str, rt_keys: &str) -> ConfigDir {
        let allowed = CpuSet::allowed().unwrap();
        let rt = allowed.last().unwrap();
        let dir = std::env::temp_dir().join(format!("rtpm-exec-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("cores")).unwrap();
        std::fs::write(
            dir.join("cores").join(format!("cpu{rt}.toml")),
            format!("role = \"rt\"\n{rt_keys}\n"),
        )
        .unwrap();
        ConfigDir(dir)
    }

    pub fn partition(&self) -> Partition {
        Partition::load(&self.0).unwrap()
    }
}

impl Drop for ConfigDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An executor configuration for a one-RT-core partition with `rt_keys`.
pub fn config(tag: &str, rt_keys: &str) -> (ConfigDir, ExecConfig) {
    let dir = ConfigDir::new(tag, rt_keys);
    let cfg = ExecConfig::new(dir.partition());
    (dir, cfg)
}

/// The RT CPU of [`ConfigDir`].
pub fn rt_cpu() -> usize {
    CpuSet::allowed().unwrap().last().unwrap()
}

/// Spins for `d` of wall time: a job body that takes a known time.
pub fn spin(d: Nanos) {
    let end = MonotonicClock.now().add(d);
    while MonotonicClock.now() < end {
        std::hint::spin_loop();
    }
}

/// Spins until the calling thread has used `d` of CPU time (`CLOCK_THREAD_CPUTIME_ID`):
/// a job body that needs a known amount of CPU, however long it is preempted.
pub fn spin_cpu(d: Nanos) {
    let cpu = || {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
        unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
        ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
    };
    let end = cpu() + d.get();
    while cpu() < end {
        std::hint::spin_loop();
    }
}

/// The CPU the calling thread runs on.
pub fn current_cpu() -> usize {
    // SAFETY: sched_getcpu takes no arguments and touches no memory of ours.
    let c = unsafe { libc::sched_getcpu() };
    c.max(0) as usize
}
