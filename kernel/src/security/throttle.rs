//! Failed logins are counted per user name and throttled with an exponential back-off.
//!
//! The first [`LoginPolicy::free_attempts`] failures cost nothing. After that, the next
//! attempt is not even checked until `base_delay · 2^(failures − free_attempts)` (capped
//! at `max_delay`) has passed since the last failure. A successful login resets the
//! count. Unknown user names are counted like known ones, so throttling does not tell
//! which names exist.
//!
//! An attempt is counted as a failure when it starts, and the count is reset only if it
//! succeeds: parallel guesses cannot slip through while one argon2 verification runs.
//! Time comes from an injected [`Clock`], so tests drive it with a `SimClock`.

use std::collections::HashMap;

use rtpm_rt::time::{Instant, Nanos};

/// How failed logins are throttled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoginPolicy {
    /// Failures allowed before any delay.
    pub free_attempts: u32,
    /// The first delay; it doubles with every further failure.
    pub base_delay: Nanos,
    /// The longest delay.
    pub max_delay: Nanos,
    /// User names tracked at most; beyond it, names whose delay has passed are forgotten.
    pub max_tracked: usize,
}

impl Default for LoginPolicy {
    /// Three free attempts, then 1 s, 2 s, 4 s, … up to 5 minutes.
    fn default() -> LoginPolicy {
        LoginPolicy {
            free_attempts: 3,
            base_delay: Nanos::secs(1),
            max_delay: Nanos::secs(300),
            max_tracked: 4096,
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Failures {
    count: u32,
    last: Instant,
}

/// Per-user failure counts.
#[derive(Debug)]
pub(crate) struct Throttle {
    policy: LoginPolicy,
    users: HashMap<String, Failures>,
}

/// An attempt refused by the back-off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Wait {
    pub(crate) failures: u32,
    pub(crate) retry_after: Nanos,
}

impl Throttle {
    pub(crate) fn new(policy: LoginPolicy) -> Throttle {
        Throttle {
            policy,
            users: HashMap::new(),
        }
    }

    /// The delay owed after `count` failures.
    fn delay(&self, count: u32) -> Nanos {
        delay(&self.policy, count)
    }

    /// Starts an attempt for `user` at `now`: refused while its back-off runs; otherwise
    /// counted as a failure until [`Throttle::succeeded`] says otherwise.
    pub(crate) fn begin(&mut self, user: &str, now: Instant) -> Result<(), Wait> {
        if let Some(f) = self.users.get(user) {
            let delay = self.delay(f.count);
            let open = f.last.add(delay);
            if now < open {
                return Err(Wait {
                    failures: f.count,
                    retry_after: open.since(now),
                });
            }
        }
        if !self.users.contains_key(user) && self.users.len() >= self.policy.max_tracked {
            self.forget_expired(now);
        }
        let f = self.users.entry(user.to_string()).or_insert(Failures {
            count: 0,
            last: now,
        });
        f.count = f.count.saturating_add(1);
        f.last = now;
        Ok(())
    }

    /// The attempt succeeded: `user`'s count goes back to zero.
    pub(crate) fn succeeded(&mut self, user: &str) {
        self.users.remove(user);
    }

    /// Failures counted for `user`.
    pub(crate) fn failures(&self, user: &str) -> u32 {
        self.users.get(user).map_or(0, |f| f.count)
    }

    fn forget_expired(&mut self, now: Instant) {
        let policy = self.policy;
        self.users
            .retain(|_, f| now < f.last.add(delay(&policy, f.count)));
    }
}

/// The delay `policy` owes after `count` failures.
fn delay(policy: &LoginPolicy, count: u32) -> Nanos {
    if count < policy.free_attempts {
        return Nanos::ZERO;
    }
    let over = count - policy.free_attempts;
    let factor = 1u64.checked_shl(over).unwrap_or(u64::MAX);
    Nanos(policy.base_delay.get().saturating_mul(factor)).min(policy.max_delay)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> LoginPolicy {
        LoginPolicy {
            free_attempts: 2,
            base_delay: Nanos::secs(1),
            max_delay: Nanos::secs(10),
            max_tracked: 2,
        }
    }

    #[test]
    fn the_delay_doubles_after_the_free_attempts_and_is_capped() {
        let t = Throttle::new(policy());
        let d: Vec<u64> = (0..8).map(|c| t.delay(c).get() / 1_000_000_000).collect();
        assert_eq!(d, vec![0, 0, 1, 2, 4, 8, 10, 10]);
    }

    #[test]
    fn attempts_inside_the_back_off_are_refused_until_it_passes() {
        let mut t = Throttle::new(policy());
        let t0 = Instant(1_000_000_000_000);
        assert!(t.begin("u", t0).is_ok());
        assert!(t.begin("u", t0).is_ok());
        // Two failures: the third attempt waits 1 s from the last failure.
        let w = t.begin("u", t0.add(Nanos::ms(400))).unwrap_err();
        assert_eq!(w.failures, 2);
        assert_eq!(w.retry_after, Nanos::ms(600));
        assert!(t.begin("u", t0.add(Nanos::secs(1))).is_ok());
        // Three failures: 2 s.
        let t1 = t0.add(Nanos::secs(1));
        assert_eq!(
            t.begin("u", t1.add(Nanos::ms(1999)))
                .unwrap_err()
                .retry_after,
            Nanos::ms(1)
        );
        assert!(t.begin("u", t1.add(Nanos::secs(2))).is_ok());
        t.succeeded("u");
        assert_eq!(t.failures("u"), 0);
        assert!(t.begin("u", t1.add(Nanos::secs(2))).is_ok());
    }

    #[test]
    fn users_are_throttled_separately_and_the_table_is_bounded() {
        let mut t = Throttle::new(policy());
        let t0 = Instant(5_000_000_000);
        for _ in 0..2 {
            t.begin("a", t0).unwrap();
        }
        assert!(t.begin("a", t0).is_err());
        assert!(t.begin("b", t0).is_ok());
        // The table holds 2 names; "a" is still owed a delay, "b" is not.
        assert!(t.begin("c", t0).is_ok());
        assert_eq!(t.failures("a"), 2);
        assert_eq!(t.failures("b"), 0);
    }
}
