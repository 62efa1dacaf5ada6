//! Load on the general cores while measuring: nothing, a built-in CPU hog, or stress-ng.
//!
//! The built-in hog runs one spinning SCHED_OTHER thread per general core. With
//! `--share-idle` the RT core also gets a spinner at SCHED_IDLE: during executor slices
//! it is work queued for the executor's idle-time pool worker ([`spinner`] through
//! `Pool::submit_idle`), during baseline slices a SCHED_IDLE thread of the same kind
//! ([`idle_thread`]), so both sides see the same load and the two runs (with and
//! without) measure the latency cost of sharing.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rtpm_rt::cpu::CpuSet;
use rtpm_rt::thread::{Policy, RtThread, ThreadBuilder};

/// Which load.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Load {
    /// No load.
    None,
    /// A spinning thread per general core (and a SCHED_IDLE one on the RT core with
    /// --share-idle).
    Builtin,
    /// `stress-ng --cpu N --taskset GENERAL` (install it with
    /// bench/scripts/install-load-tools.sh).
    StressNg,
}

/// A running load; dropping it stops it.
pub struct Running {
    stop: Arc<AtomicBool>,
    hogs: Vec<RtThread<()>>,
    child: Option<Child>,
    /// What it is, for the report.
    pub description: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for h in self.hogs.drain(..) {
            let _ = h.join();
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A CPU-bound body that spins until `stop`.
pub fn spinner(stop: Arc<AtomicBool>) -> impl FnOnce() + Send + 'static {
    move || {
        let mut x = 0u64;
        while !stop.load(Ordering::Relaxed) {
            for _ in 0..10_000 {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
        }
    }
}

fn hog(
    stop: &Arc<AtomicBool>,
    name: String,
    policy: Policy,
    cpus: CpuSet,
) -> Result<RtThread<()>, String> {
    ThreadBuilder::new(name)
        .policy(policy)
        .affinity(cpus)
        .spawn(spinner(Arc::clone(stop)))
        .map_err(|e| e.to_string())
}

/// A SCHED_IDLE spinner pinned to `rt` until `stop`.
pub fn idle_thread(stop: &Arc<AtomicBool>, rt: usize) -> Result<RtThread<()>, String> {
    hog(
        stop,
        format!("idle-hog-{rt}"),
        Policy::Idle,
        CpuSet::single(rt),
    )
}

/// Starts `load` on `general`.
pub fn start(load: Load, general: CpuSet) -> Result<Running, String> {
    let stop = Arc::new(AtomicBool::new(false));
    let mut running = Running {
        stop: Arc::clone(&stop),
        hogs: Vec::new(),
        child: None,
        description: "none".into(),
    };
    match load {
        Load::None => {}
        Load::Builtin => {
            for cpu in general.iter() {
                running.hogs.push(hog(
                    &stop,
                    format!("hog-{cpu}"),
                    Policy::Other { nice: 0 },
                    CpuSet::single(cpu),
                )?);
            }
            running.description = format!("built-in hog on CPUs {general}");
        }
        Load::StressNg => {
            let args = vec![
                "--cpu".to_string(),
                general.len().to_string(),
                "--taskset".into(),
                general.to_list(),
                "--quiet".into(),
            ];
            let child = Command::new("stress-ng")
                .args(&args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| {
                    format!(
                        "--load stress-ng: cannot run stress-ng ({e}); install it with bench/scripts/install-load-tools.sh (apt-get install stress-ng)"
                    )
                })?;
            running.child = Some(child);
            running.description = format!("stress-ng {}", args.join(" "));
        }
    }
    Ok(running)
}
