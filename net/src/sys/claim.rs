//! `Claim<T>`: state that one thread at a time may hold, taken without waiting.
//!
//! The reactor has state that its protocol already serialises: the ring's submission and
//! completion queues are touched only by the current leader, and a TCP connection's
//! receive state only by the thread handling that connection's one outstanding receive.
//! A `Claim` makes that serialisation checked instead of assumed: taking it is one
//! compare-and-swap that either succeeds or reports that the protocol was broken. It
//! never spins and never parks, so it is not a lock on the hot path.

use std::cell::UnsafeCell;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, Ordering};

/// A value that at most one thread holds at a time (see the module docs).
pub(crate) struct Claim<T> {
    held: AtomicBool,
    value: UnsafeCell<T>,
}

// Access to `value` is only through a `Claimed` guard, and at most one guard exists at a
// time (the `held` flag is taken with an Acquire CAS and released with a Release store).
// SAFETY: so sharing a `Claim` between threads gives each holder exclusive access, exactly
// like a mutex; `T: Send` because the value moves between the threads holding it.
unsafe impl<T: Send> Sync for Claim<T> {}

impl<T> Claim<T> {
    /// Wraps `value`, unclaimed.
    pub(crate) fn new(value: T) -> Claim<T> {
        Claim {
            held: AtomicBool::new(false),
            value: UnsafeCell::new(value),
        }
    }

    /// Takes the value if nobody holds it; `None` means another thread does.
    pub(crate) fn try_claim(&self) -> Option<Claimed<'_, T>> {
        self.held
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .ok()
            .map(|_| Claimed { claim: self })
    }
}

/// Exclusive access to a claimed value; released on drop.
pub(crate) struct Claimed<'a, T> {
    claim: &'a Claim<T>,
}

impl<T> Deref for Claimed<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: this guard exists only while `held` is true and was set by this guard's
        // CAS, so no other reference to the value exists.
        unsafe { &*self.claim.value.get() }
    }
}

impl<T> DerefMut for Claimed<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; `&mut self` makes this the only borrow through the guard.
        unsafe { &mut *self.claim.value.get() }
    }
}

impl<T> Drop for Claimed<'_, T> {
    fn drop(&mut self) {
        self.claim.held.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_claim_fails_until_the_first_is_dropped() {
        let c = Claim::new(5u32);
        let mut a = c.try_claim().expect("free");
        *a += 1;
        assert!(c.try_claim().is_none());
        drop(a);
        assert_eq!(*c.try_claim().expect("free again"), 6);
    }
}
