//! Time the hypervisor stole from a CPU, read from the `steal` column of `/proc/stat`.
//!
//! A zero-miss claim holds only when the core got the time admission counted on. On a
//! VM the hypervisor can take a vCPU away for tens of milliseconds; the guest kernel
//! accounts that time as `steal`. A test that asserts "no deadline miss" brackets its
//! run with a [`Steal`] and treats a miss in a run with stolen time as the machine's, not
//! the executor's: it runs again, and asserts on a run the hypervisor left alone.

use std::time::Duration;

/// The steal counter of one CPU at the start of a measured run.
#[derive(Debug, Clone, Copy)]
pub struct Steal {
    cpu: usize,
    start_ticks: u64,
}

impl Steal {
    /// Starts measuring the time stolen from `cpu`. `None` when `/proc/stat` has no
    /// steal column for it (then nothing can be said about stolen time).
    pub fn start(cpu: usize) -> Option<Steal> {
        Some(Steal {
            cpu,
            start_ticks: read(cpu)?,
        })
    }

    /// The time stolen from the CPU since [`Steal::start`], at the kernel's accounting
    /// granularity (one clock tick, usually 10 ms: a stall shorter than that may show
    /// as zero or as one tick).
    pub fn stolen(&self) -> Duration {
        let now = read(self.cpu).unwrap_or(self.start_ticks);
        Duration::from_nanos(now.saturating_sub(self.start_ticks) * 1_000_000_000 / USER_HZ)
    }
}

/// The unit of `/proc/stat`: USER_HZ, which the kernel fixes at 100 on every
/// architecture that rtpm runs on, whatever the internal tick rate.
const USER_HZ: u64 = 100;

/// The `steal` column (the 8th number) of `cpuN` in `/proc/stat`, in clock ticks.
fn read(cpu: usize) -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let tag = format!("cpu{cpu}");
    let line = stat
        .lines()
        .find(|l| l.split_whitespace().next() == Some(tag.as_str()))?;
    line.split_whitespace().nth(8)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_counter_for_cpu0_that_never_goes_back() {
        let s = Steal::start(0).expect("/proc/stat has cpu0 with a steal column");
        assert!(read(0).unwrap() >= s.start_ticks);
        assert!(read(9999).is_none());
    }
}
