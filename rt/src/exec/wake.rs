//! A wake-up word: a sleeper waits on a futex, a producer on any thread wakes it without
//! blocking, and no wake-up is lost between the sleeper's last check and its sleep.
//!
//! The word is a sequence number. A sleeper reads it ([`WakeWord::seq`]), checks its
//! condition (is the queue empty?), and sleeps only if the word still holds what it read.
//! A producer changes the condition, bumps the word, and makes the `futex_wake` system
//! call only when someone is (about to be) asleep; with everything `SeqCst`, either the
//! producer sees the sleeper counted or the sleeper sees the new sequence number.

use std::sync::atomic::{AtomicU32, Ordering};

use crossbeam_utils::CachePadded;

use crate::sys;
use crate::time::Instant;

/// A futex word with a sleeper count.
#[derive(Debug, Default)]
pub struct WakeWord {
    inner: CachePadded<Inner>,
}

/// Both halves on one cache line: a producer's wake-up touches both (bump, then look for
/// sleepers), and so does the sleeper, so one line moves between their cores, not two.
#[derive(Debug, Default)]
struct Inner {
    seq: AtomicU32,
    sleepers: AtomicU32,
}

impl WakeWord {
    /// A fresh word.
    pub fn new() -> WakeWord {
        WakeWord::default()
    }

    /// The current sequence number, to pass to [`WakeWord::wait`] after checking the
    /// condition.
    pub fn seq(&self) -> u32 {
        self.inner.seq.load(Ordering::SeqCst)
    }

    /// Sleeps until woken after `seen`, or until `deadline` (absolute `CLOCK_MONOTONIC`;
    /// `None`: no timeout). May return early; callers re-check their condition.
    pub fn wait(&self, seen: u32, deadline: Option<Instant>) {
        self.inner.sleepers.fetch_add(1, Ordering::SeqCst);
        if self.inner.seq.load(Ordering::SeqCst) == seen {
            sys::futex::wait(&self.inner.seq, seen, deadline.map(Instant::as_nanos));
        }
        self.inner.sleepers.fetch_sub(1, Ordering::SeqCst);
    }

    /// Wakes the sleeper, if any. Never blocks; makes a system call only when someone
    /// sleeps.
    #[inline]
    pub fn wake(&self) {
        self.inner.seq.fetch_add(1, Ordering::SeqCst);
        if self.inner.sleepers.load(Ordering::SeqCst) > 0 {
            sys::futex::wake(&self.inner.seq, i32::MAX);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::{Clock, MonotonicClock, Nanos};
    use std::sync::Arc;

    #[test]
    fn a_wake_after_seq_is_never_lost() {
        let w = Arc::new(WakeWord::new());
        for _ in 0..200 {
            let seen = w.seq();
            let w2 = Arc::clone(&w);
            let t = std::thread::spawn(move || w2.wake());
            // Without a wake the wait would last 10 s; the test would time out.
            w.wait(seen, Some(MonotonicClock.now().add(Nanos::secs(10))));
            assert_ne!(w.seq(), seen);
            t.join().unwrap();
        }
    }

    #[test]
    fn wait_times_out_at_the_deadline() {
        let w = WakeWord::new();
        let start = MonotonicClock.now();
        let deadline = start.add(Nanos::ms(5));
        w.wait(w.seq(), Some(deadline));
        assert!(MonotonicClock.now() >= deadline);
    }
}
