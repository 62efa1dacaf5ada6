//! A doorbell: how a consumer thread sleeps until the reactor pushes it a handle.
//!
//! The reactor rings after every push; ringing costs one atomic add, plus a futex wake
//! only when a consumer is actually asleep. A consumer reads the bell, re-checks its
//! queue, and only then sleeps on the value it read, so a ring between its check and its
//! sleep is never lost.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::sys::futex;

/// See the module docs.
#[derive(Debug, Default)]
pub(crate) struct Doorbell {
    rings: AtomicU32,
    sleepers: AtomicU32,
}

impl Doorbell {
    /// Rings: wakes a sleeping consumer, if any.
    pub(crate) fn ring(&self) {
        self.rings.fetch_add(1, Ordering::SeqCst);
        if self.sleepers.load(Ordering::SeqCst) > 0 {
            futex::wake(&self.rings, u32::MAX);
        }
    }

    /// The current ring count, to pass to [`Doorbell::sleep`] after re-checking.
    pub(crate) fn seen(&self) -> u32 {
        self.rings.load(Ordering::SeqCst)
    }

    /// Sleeps until a ring after `seen`, or `timeout`.
    pub(crate) fn sleep(&self, seen: u32, timeout: Option<Duration>) {
        self.sleepers.fetch_add(1, Ordering::SeqCst);
        if self.rings.load(Ordering::SeqCst) == seen {
            futex::wait(&self.rings, seen, timeout);
        }
        self.sleepers.fetch_sub(1, Ordering::SeqCst);
    }
}
