//! Bounded spinning that never trips the kernel's RT throttling.
//!
//! A SCHED_FIFO thread that spins forever would use up `sched_rt_runtime_us` of every
//! `sched_rt_period_us`; the kernel then throttles *all* RT tasks of that CPU for the rest
//! of the period — milliseconds of stall for everyone. A [`SpinBudget`] bounds spinning
//! two ways:
//!
//! - one spin lasts at most `spin` (from the QoS class), then the thread parks in the
//!   kernel, where it consumes no runtime;
//! - within each RT period the thread spins at most `share` of it, where `share` is the
//!   configured `spin_share` capped 5 points below `runtime / period` (so processing time
//!   still fits under the throttle). Once spent, it parks until the next period.

use rtpm_rt::time::{Clock, MonotonicClock, Nanos};

/// The kernel's RT throttling settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct RtThrottle {
    /// `sched_rt_period_us`, in nanoseconds.
    pub period: Nanos,
    /// `sched_rt_runtime_us` over `sched_rt_period_us`; 1.0 when throttling is off (-1).
    pub share: f64,
}

impl RtThrottle {
    /// Reads `/proc/sys/kernel/sched_rt_{period,runtime}_us`; the kernel defaults (1 s,
    /// 0.95) when unreadable.
    pub(crate) fn read() -> RtThrottle {
        let read = |f: &str| -> Option<i64> {
            std::fs::read_to_string(format!("/proc/sys/kernel/{f}"))
                .ok()?
                .trim()
                .parse()
                .ok()
        };
        let period_us = read("sched_rt_period_us")
            .filter(|p| *p > 0)
            .unwrap_or(1_000_000);
        let runtime_us = read("sched_rt_runtime_us").unwrap_or(950_000);
        let share = if runtime_us < 0 {
            1.0
        } else {
            runtime_us as f64 / period_us as f64
        };
        RtThrottle {
            period: Nanos::us(period_us as u64),
            share,
        }
    }
}

/// Per-thread accounting of spin time (see the module docs).
#[derive(Debug)]
pub(crate) struct SpinBudget {
    spin: u64,
    period: u64,
    allowance: u64,
    window_start: u64,
    spent: u64,
    clock: MonotonicClock,
}

impl SpinBudget {
    /// A budget of at most `spin` per spin and, for a real-time thread, `spin_share` of
    /// each RT period. RT throttling never applies to SCHED_OTHER threads, so for them
    /// only the per-spin bound applies.
    pub(crate) fn new(spin: Nanos, spin_share: f64, rt: RtThrottle, realtime: bool) -> SpinBudget {
        let share = if realtime {
            spin_share.min(rt.share - 0.05).max(0.0)
        } else {
            1.0
        };
        let period = rt.period.get().max(1);
        SpinBudget {
            spin: spin.get(),
            period,
            allowance: (period as f64 * share) as u64,
            window_start: 0,
            spent: 0,
            clock: MonotonicClock,
        }
    }

    /// The share of each RT period this budget may spin.
    pub(crate) fn share(&self) -> f64 {
        self.allowance as f64 / self.period as f64
    }

    /// Spins until `ready()` holds (returns true) or the budget says park (false).
    pub(crate) fn spin_until(&mut self, mut ready: impl FnMut() -> bool) -> bool {
        let start = self.clock.now().as_nanos();
        if start.saturating_sub(self.window_start) >= self.period {
            self.window_start = start - (start - self.window_start) % self.period;
            self.spent = 0;
        }
        let left = self.allowance.saturating_sub(self.spent);
        let bound = self.spin.min(left);
        if bound == 0 {
            return ready();
        }
        let mut n: u32 = 0;
        loop {
            if ready() {
                self.spent += self.clock.now().as_nanos().saturating_sub(start);
                return true;
            }
            n = n.wrapping_add(1);
            if n.is_multiple_of(32) {
                let el = self.clock.now().as_nanos().saturating_sub(start);
                if el >= bound {
                    self.spent += el;
                    return false;
                }
            }
            std::hint::spin_loop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_share_stays_below_the_rt_throttle() {
        let rt = RtThrottle {
            period: Nanos::ms(1000),
            share: 0.95,
        };
        let b = SpinBudget::new(Nanos::us(50), 1.0, rt, true);
        assert!((b.share() - 0.90).abs() < 1e-9);
        let b = SpinBudget::new(Nanos::us(50), 0.3, rt, true);
        assert!((b.share() - 0.3).abs() < 1e-9);
        let b = SpinBudget::new(Nanos::us(50), 0.3, rt, false);
        assert!(
            (b.share() - 1.0).abs() < 1e-9,
            "no RT throttle for SCHED_OTHER"
        );
    }

    #[test]
    fn a_spin_gives_up_and_the_window_budget_runs_out() {
        let rt = RtThrottle {
            period: Nanos::secs(3600),
            share: 1.0,
        };
        // 2 ms of spinning allowed per (hour-long) window, 1 ms per spin.
        let mut b = SpinBudget::new(Nanos::ms(1), 2e-3 / 3600.0 + 1e-12, rt, true);
        let mut calls = 0u64;
        assert!(!b.spin_until(|| {
            calls += 1;
            false
        }));
        assert!(calls > 1, "it spun");
        assert!(!b.spin_until(|| false));
        // Budget spent: the next spin checks once and gives up.
        let mut once = 0;
        assert!(!b.spin_until(|| {
            once += 1;
            false
        }));
        assert_eq!(once, 1);
        assert!(b.spin_until(|| true));
    }

    #[test]
    fn reading_the_kernel_settings_gives_a_sane_share() {
        let rt = RtThrottle::read();
        assert!(rt.share > 0.0 && rt.share <= 1.0, "{rt:?}");
        assert!(rt.period.get() > 0);
    }
}
