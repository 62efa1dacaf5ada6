//! The leader/followers hand-off.
//!
//! A pool's threads share one event source. At any moment at most one of them — the
//! leader — waits on it; the others are followers. When the leader gets events it
//! *promotes* a follower before it processes them, so the source is watched again while
//! the old leader decodes and dispatches. This is the pattern of Schmidt et al.: no
//! thread hands events to another (no queue and no extra wake-up between receiving and
//! processing), and the hand-off is one atomic store plus, only when a follower sleeps,
//! one futex wake.
//!
//! [`Leadership::lead`] returns a [`Lead`] token; the backends take `&Lead` for every
//! operation that touches the event source, so "only the leader waits" is a type-level
//! fact. Dropping the token promotes.
//!
//! Followers spin for a bounded time before they sleep when the SAP busy-polls (the
//! spin is accounted by the caller's [`crate::throttle::SpinBudget`]).

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::throttle::SpinBudget;
use rtpm_rt::futex;

const VACANT: u32 = 0;
const TAKEN: u32 = 1;

/// Who leads one event source (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct Leadership {
    state: AtomicU32,
    sleepers: AtomicU32,
    promotions: AtomicU64,
}

/// Proof that the holder is the leader of one event source. Dropping it promotes a
/// follower.
pub(crate) struct Lead<'a> {
    of: &'a Leadership,
}

impl Leadership {
    /// Becomes the leader: at once if the source has none, else after the current leader
    /// promotes. With a `spin` budget, spins (bounded) before sleeping.
    pub(crate) fn lead(&self, mut spin: Option<&mut SpinBudget>) -> Lead<'_> {
        loop {
            if self
                .state
                .compare_exchange(VACANT, TAKEN, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                return Lead { of: self };
            }
            if let Some(budget) = spin.as_deref_mut()
                && budget.spin_until(|| self.state.load(Ordering::Relaxed) == VACANT)
            {
                continue;
            }
            self.sleepers.fetch_add(1, Ordering::SeqCst);
            if self.state.load(Ordering::SeqCst) == TAKEN {
                futex::wait(&self.state, TAKEN, None);
            }
            self.sleepers.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Promotions so far (each leader hand-off with events to process).
    pub(crate) fn promotions(&self) -> u64 {
        self.promotions.load(Ordering::Relaxed)
    }

    /// Wakes every follower (used at shutdown, so each sees the stop flag).
    pub(crate) fn wake_all(&self) {
        futex::wake(&self.state, i32::MAX);
    }
}

impl Lead<'_> {
    /// Promotes a follower and counts it (same as dropping the token, which does not
    /// count: that is used when the leader had nothing to hand on).
    pub(crate) fn promote(self) {
        self.of.promotions.fetch_add(1, Ordering::Relaxed);
    }
}

impl Drop for Lead<'_> {
    fn drop(&mut self) {
        self.of.state.store(VACANT, Ordering::SeqCst);
        if self.of.sleepers.load(Ordering::SeqCst) > 0 {
            futex::wake(&self.of.state, 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn at_most_one_thread_leads_at_a_time() {
        let l = Arc::new(Leadership::default());
        let inside = Arc::new(AtomicUsize::new(0));
        let worst = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (l, inside, worst) = (l.clone(), inside.clone(), worst.clone());
                std::thread::spawn(move || {
                    for _ in 0..20_000 {
                        let lead = l.lead(None);
                        let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                        worst.fetch_max(now, Ordering::SeqCst);
                        inside.fetch_sub(1, Ordering::SeqCst);
                        lead.promote();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(worst.load(Ordering::SeqCst), 1);
        assert_eq!(l.promotions(), 80_000);
    }
}
