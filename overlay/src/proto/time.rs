//! Virtual time for the protocol: the driver (or the simulator) says what time it is.
//!
//! The protocol never reads a clock. Every input carries `now`; `poll_timeout` answers with
//! an [`Instant`] on the same axis. Durations are plain `u64` nanoseconds, like the rest
//! of rtpm (the rt crate's `Nanos` maps one to one).

/// A point in time, in nanoseconds since an arbitrary epoch chosen by the driver.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(pub u64);

impl Instant {
    /// The epoch.
    pub const ZERO: Instant = Instant(0);
    /// Never: later than every real instant.
    pub const NEVER: Instant = Instant(u64::MAX);

    /// Nanoseconds since the epoch.
    pub const fn nanos(self) -> u64 {
        self.0
    }
    /// `self + ns`, saturating at [`Instant::NEVER`].
    pub const fn after(self, ns: u64) -> Instant {
        Instant(self.0.saturating_add(ns))
    }
    /// `self - earlier` in nanoseconds, zero if `earlier` is later.
    pub const fn since(self, earlier: Instant) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

/// One millisecond in nanoseconds.
pub const MS: u64 = 1_000_000;
