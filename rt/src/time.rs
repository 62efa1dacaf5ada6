//! Time: integer nanoseconds, unit-string durations, and clocks.
//!
//! Every duration inside rtpm is a whole number of nanoseconds ([`Nanos`]). Config files
//! and the command line spell durations as unit strings (`"250us"`, `"10ms"`, `"1s"`),
//! parsed by [`Nanos::from_str`] and printed back by its `Display`, so a value
//! round-trips through a file unchanged.
//!
//! Code that needs "now" takes a [`Clock`]. [`MonotonicClock`] reads `CLOCK_MONOTONIC`,
//! the clock that absolute `clock_nanosleep` releases are measured against; [`SimClock`]
//! is moved by hand, for tests and simulations.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A span of time in whole nanoseconds.
///
/// `u64` nanoseconds cover 584 years, so every period, deadline and budget fits; analysis
/// code that multiplies spans widens to `u128` first.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Nanos(pub u64);

impl Nanos {
    /// Zero.
    pub const ZERO: Nanos = Nanos(0);
    /// The largest representable span.
    pub const MAX: Nanos = Nanos(u64::MAX);

    /// `n` nanoseconds.
    pub const fn ns(n: u64) -> Nanos {
        Nanos(n)
    }
    /// `n` microseconds (saturating).
    pub const fn us(n: u64) -> Nanos {
        Nanos(n.saturating_mul(1_000))
    }
    /// `n` milliseconds (saturating).
    pub const fn ms(n: u64) -> Nanos {
        Nanos(n.saturating_mul(1_000_000))
    }
    /// `n` seconds (saturating).
    pub const fn secs(n: u64) -> Nanos {
        Nanos(n.saturating_mul(1_000_000_000))
    }
    /// The raw count of nanoseconds.
    pub const fn get(self) -> u64 {
        self.0
    }
    /// Whether this span is zero.
    pub const fn is_zero(self) -> bool {
        self.0 == 0
    }
    /// Addition that stops at [`Nanos::MAX`].
    pub const fn saturating_add(self, other: Nanos) -> Nanos {
        Nanos(self.0.saturating_add(other.0))
    }
    /// Subtraction that stops at zero.
    pub const fn saturating_sub(self, other: Nanos) -> Nanos {
        Nanos(self.0.saturating_sub(other.0))
    }
    /// Addition that reports overflow.
    pub const fn checked_add(self, other: Nanos) -> Option<Nanos> {
        match self.0.checked_add(other.0) {
            Some(v) => Some(Nanos(v)),
            None => None,
        }
    }
    /// As a [`std::time::Duration`].
    pub const fn to_duration(self) -> std::time::Duration {
        std::time::Duration::from_nanos(self.0)
    }
    /// From a [`std::time::Duration`], saturating at [`Nanos::MAX`].
    pub fn from_duration(d: std::time::Duration) -> Nanos {
        Nanos(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
    }
    /// This span in (fractional) seconds, for display and ratios.
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / 1e9
    }
}

impl From<std::time::Duration> for Nanos {
    fn from(d: std::time::Duration) -> Nanos {
        Nanos::from_duration(d)
    }
}

/// Why a duration string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Nothing was given.
    #[error("empty duration; write a number and a unit, e.g. \"250us\", \"10ms\" or \"1s\"")]
    Empty,
    /// The number part is missing or not a number.
    #[error(
        "`{0}` is not a duration: expected a whole or decimal number followed by a unit (ns, us, ms, s), e.g. \"250us\""
    )]
    BadNumber(String),
    /// The unit is missing or unknown.
    #[error("`{0}` has no valid unit: use one of ns, us, ms, s (e.g. \"10ms\")")]
    BadUnit(String),
    /// The value does not fit, or is not a whole number of nanoseconds.
    #[error("`{0}` is out of range: durations are whole nanoseconds up to about 584 years")]
    OutOfRange(String),
}

impl FromStr for Nanos {
    type Err = DurationError;

    /// Parses `"<number><unit>"`, where the number may have a decimal part and the unit
    /// is `ns`, `us` (or `µs`), `ms` or `s`. Whitespace around and between is ignored.
    fn from_str(text: &str) -> Result<Nanos, DurationError> {
        let s = text.trim();
        if s.is_empty() {
            return Err(DurationError::Empty);
        }
        let split = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| DurationError::BadUnit(text.to_string()))?;
        let (num, unit) = s.split_at(split);
        let scale: u64 = match unit.trim() {
            "ns" => 1,
            "us" | "µs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            _ => return Err(DurationError::BadUnit(text.to_string())),
        };
        if num.is_empty() || num.starts_with('.') || num.ends_with('.') {
            return Err(DurationError::BadNumber(text.to_string()));
        }
        let (whole, frac) = match num.split_once('.') {
            Some((w, f)) => (w, f),
            None => (num, ""),
        };
        if frac.contains('.') {
            return Err(DurationError::BadNumber(text.to_string()));
        }
        let out_of_range = || DurationError::OutOfRange(text.to_string());
        let whole: u64 = whole
            .parse()
            .map_err(|_| DurationError::BadNumber(text.to_string()))?;
        let mut total = whole.checked_mul(scale).ok_or_else(out_of_range)?;
        // The fractional part must come out as whole nanoseconds.
        let mut place = scale;
        for digit in frac.bytes() {
            let d = u64::from(digit - b'0');
            if !place.is_multiple_of(10) {
                if d != 0 {
                    return Err(out_of_range());
                }
                continue;
            }
            place /= 10;
            total = total.checked_add(d * place).ok_or_else(out_of_range)?;
        }
        Ok(Nanos(total))
    }
}

impl fmt::Display for Nanos {
    /// The largest unit that shows the value exactly: `10ms`, `250us`, `1500ns`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        if n == 0 {
            return f.write_str("0ns");
        }
        for (scale, unit) in [(1_000_000_000, "s"), (1_000_000, "ms"), (1_000, "us")] {
            if n.is_multiple_of(scale) {
                return write!(f, "{}{unit}", n / scale);
            }
        }
        write!(f, "{n}ns")
    }
}

impl Serialize for Nanos {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Nanos {
    /// Only unit strings are accepted: a bare number would leave its unit to guesswork.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Nanos, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Nanos;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration string with a unit, such as \"250us\", \"10ms\" or \"1s\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Nanos, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

/// A point on a monotonic clock, in nanoseconds since that clock's epoch.
///
/// For [`MonotonicClock`] this is the raw `CLOCK_MONOTONIC` reading, so it can be handed
/// to `clock_nanosleep(TIMER_ABSTIME)` as is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(pub u64);

impl Instant {
    /// This instant plus `d`, saturating.
    pub const fn add(self, d: Nanos) -> Instant {
        Instant(self.0.saturating_add(d.0))
    }
    /// The span from `earlier` to `self`, or zero if `earlier` is later.
    pub const fn since(self, earlier: Instant) -> Nanos {
        Nanos(self.0.saturating_sub(earlier.0))
    }
    /// Nanoseconds since the clock's epoch.
    pub const fn as_nanos(self) -> u64 {
        self.0
    }
}

/// A source of monotonic time.
pub trait Clock: Send + Sync {
    /// The current instant. Never goes backwards.
    fn now(&self) -> Instant;
}

/// `CLOCK_MONOTONIC`, the clock real-time releases are scheduled on.
#[derive(Clone, Copy, Debug, Default)]
pub struct MonotonicClock;

impl Clock for MonotonicClock {
    fn now(&self) -> Instant {
        Instant(crate::sys::clock::monotonic_ns())
    }
}

/// Sleeps until `CLOCK_MONOTONIC` reaches `t` (absolute `clock_nanosleep`, retried on
/// signals). Returns at once if `t` has passed.
pub fn sleep_until(t: Instant) {
    crate::sys::clock::sleep_until_ns(t.0);
}

/// A clock that moves only when told to: for tests and simulations.
#[derive(Debug, Default)]
pub struct SimClock {
    now: AtomicU64,
}

impl SimClock {
    /// A clock standing at `start`.
    pub fn new(start: Instant) -> SimClock {
        SimClock {
            now: AtomicU64::new(start.0),
        }
    }
    /// Moves the clock forward by `d`.
    pub fn advance(&self, d: Nanos) {
        self.now.fetch_add(d.0, Ordering::SeqCst);
    }
    /// Sets the clock to `t`; a time earlier than now is ignored, so the clock stays monotonic.
    pub fn set(&self, t: Instant) {
        self.now.fetch_max(t.0, Ordering::SeqCst);
    }
}

impl Clock for SimClock {
    fn now(&self) -> Instant {
        Instant(self.now.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_unit() {
        assert_eq!("250us".parse::<Nanos>(), Ok(Nanos(250_000)));
        assert_eq!("10ms".parse::<Nanos>(), Ok(Nanos(10_000_000)));
        assert_eq!("1s".parse::<Nanos>(), Ok(Nanos(1_000_000_000)));
        assert_eq!("7ns".parse::<Nanos>(), Ok(Nanos(7)));
        assert_eq!("3µs".parse::<Nanos>(), Ok(Nanos(3_000)));
        assert_eq!(" 2 ms ".parse::<Nanos>(), Ok(Nanos(2_000_000)));
        assert_eq!("0ms".parse::<Nanos>(), Ok(Nanos(0)));
    }

    #[test]
    fn parses_decimals_exactly() {
        assert_eq!("1.5ms".parse::<Nanos>(), Ok(Nanos(1_500_000)));
        assert_eq!("0.25s".parse::<Nanos>(), Ok(Nanos(250_000_000)));
        assert_eq!("2.001us".parse::<Nanos>(), Ok(Nanos(2_001)));
        assert_eq!("1.0ns".parse::<Nanos>(), Ok(Nanos(1)));
    }

    #[test]
    fn refuses_bad_strings_with_the_reason() {
        assert_eq!("".parse::<Nanos>(), Err(DurationError::Empty));
        assert!(matches!(
            "10".parse::<Nanos>(),
            Err(DurationError::BadUnit(_))
        ));
        assert!(matches!(
            "10 minutes".parse::<Nanos>(),
            Err(DurationError::BadUnit(_))
        ));
        assert!(matches!(
            "ms".parse::<Nanos>(),
            Err(DurationError::BadNumber(_))
        ));
        assert!(matches!(
            "-1ms".parse::<Nanos>(),
            Err(DurationError::BadUnit(_))
        ));
        assert!(matches!(
            "1.2.3ms".parse::<Nanos>(),
            Err(DurationError::BadNumber(_))
        ));
        assert!(matches!(
            ".5ms".parse::<Nanos>(),
            Err(DurationError::BadNumber(_))
        ));
        assert!(matches!(
            "1.5ns".parse::<Nanos>(),
            Err(DurationError::OutOfRange(_))
        ));
        assert!(matches!(
            "99999999999999999999s".parse::<Nanos>(),
            Err(DurationError::BadNumber(_) | DurationError::OutOfRange(_))
        ));
        assert!(matches!(
            "18446744074s".parse::<Nanos>(),
            Err(DurationError::OutOfRange(_))
        ));
    }

    #[test]
    fn display_round_trips() {
        for n in [
            0,
            1,
            999,
            1_000,
            1_500,
            250_000,
            10_000_000,
            1_000_000_000,
            1_234_567_891,
        ] {
            let text = Nanos(n).to_string();
            assert_eq!(text.parse::<Nanos>(), Ok(Nanos(n)), "{text}");
        }
        assert_eq!(Nanos::ms(10).to_string(), "10ms");
        assert_eq!(Nanos::us(250).to_string(), "250us");
        assert_eq!(Nanos(1_500).to_string(), "1500ns");
    }

    #[test]
    fn serde_takes_unit_strings_only() {
        #[derive(Deserialize)]
        struct T {
            d: Nanos,
        }
        let t: T = toml::from_str("d = \"250us\"").unwrap();
        assert_eq!(t.d, Nanos::us(250));
        let err = toml::from_str::<T>("d = 250").err().unwrap().to_string();
        assert!(err.contains("unit"), "{err}");
    }

    #[test]
    fn monotonic_clock_moves_forward() {
        let c = MonotonicClock;
        let a = c.now();
        let b = c.now();
        assert!(b >= a);
        assert!(a.0 > 0);
    }

    #[test]
    fn sleep_until_wakes_no_earlier_than_asked() {
        let c = MonotonicClock;
        let target = c.now().add(Nanos::ms(2));
        sleep_until(target);
        assert!(c.now() >= target);
        // A time in the past returns at once.
        sleep_until(Instant(1));
    }

    #[test]
    fn sim_clock_only_moves_forward() {
        let c = SimClock::new(Instant(100));
        c.advance(Nanos(50));
        assert_eq!(c.now(), Instant(150));
        c.set(Instant(120));
        assert_eq!(c.now(), Instant(150));
        c.set(Instant(400));
        assert_eq!(c.now(), Instant(400));
    }
}
