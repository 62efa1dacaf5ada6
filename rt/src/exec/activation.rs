//! Sporadic activations: the producer side of a sporadic task.
//!
//! An [`Activator`] is a cheap, cloneable, `Send + Sync` handle. Any thread (a network
//! reactor, a timer, another task) pushes a small `Copy` payload into the task's bounded
//! lock-free queue ([`crate::mpmc::Queue`]) and wakes the task's RT core. The producer
//! never blocks and never allocates: a full queue drops one activation per the task's
//! [`DropPolicy`], counts it, and hands the dropped payload back, so a buffer handle
//! inside it can be recycled.
//!
//! Neither side ever waits for the other. The task's runner may preempt a producer in the
//! middle of its push (a lower-priority task of the same core activating it): its pop
//! then finds nothing rather than spinning until the push completes (which it could not,
//! under SCHED_FIFO — crossbeam's `ArrayQueue`, used before, spins there), and the
//! producer's wake-up after its push makes the runner look again. Under
//! [`DropPolicy::Oldest`], a push that finds the oldest activation being taken at that
//! moment drops the new one instead (it is counted and handed back the same way).
//!
//! Each activation carries its arrival time. The RT side releases it no earlier than
//! the minimum inter-arrival time after the task's previous release (after the release
//! `burst` jobs back, for a task declared with a burst): an early arrival is deferred,
//! never run early, and counted.

use std::sync::Arc;

use super::options::DropPolicy;
use super::stats::TaskStats;
use super::wake::WakeWord;
use crate::mpmc::Queue;
use crate::time::{Clock, Instant, MonotonicClock};

/// An activation waiting in the queue.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Pending<P> {
    pub(crate) payload: P,
    pub(crate) arrival: Instant,
}

/// Where a wake-up goes: the task's own word (threads model, or a demoted task) and, in
/// the cooperative model, its core's dispatcher with the task's bit in the pending mask.
#[derive(Debug)]
pub(crate) struct WakeRoute {
    pub(crate) task: Arc<WakeWord>,
    pub(crate) core: Option<(Arc<super::cooperative::CoreSignal>, u32)>,
}

impl WakeRoute {
    #[inline]
    pub(crate) fn wake(&self) {
        self.task.wake();
        if let Some((core, slot)) = &self.core {
            core.notify(*slot);
        }
    }
}

/// The queue shared by the producers and the task.
#[derive(Debug)]
pub(crate) struct ActivationQueue<P> {
    pub(crate) queue: Queue<Pending<P>>,
    pub(crate) drop: DropPolicy,
    pub(crate) stats: Arc<TaskStats>,
    pub(crate) route: WakeRoute,
}

/// An activation the full queue dropped, handed back to the producer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dropped<P> {
    /// The payload that was dropped: the new one ([`DropPolicy::Newest`]) or the oldest
    /// queued one ([`DropPolicy::Oldest`]; the new one when the oldest was being taken
    /// at that moment, see the [module documentation](self)).
    pub payload: P,
    /// Whether it was the new activation.
    pub newest: bool,
}

/// The producer handle of a sporadic task. Clone it freely; it is `Send + Sync` whenever
/// the payload is `Send`.
#[derive(Debug)]
pub struct Activator<P> {
    pub(crate) inner: Arc<ActivationQueue<P>>,
}

impl<P> Clone for Activator<P> {
    fn clone(&self) -> Activator<P> {
        Activator {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<P: Copy + Send + 'static> Activator<P> {
    /// Pushes an activation and wakes the task's core. Never blocks or allocates.
    /// `Err` hands back the activation the full queue dropped (already counted).
    #[inline]
    pub fn activate(&self, payload: P) -> Result<(), Dropped<P>> {
        let r = self.push(payload);
        self.wake();
        r
    }

    /// Pushes an activation without waking the core: a producer that pushes a batch
    /// (a reactor draining its completions) calls [`Activator::wake`] once after.
    #[inline]
    pub fn push(&self, payload: P) -> Result<(), Dropped<P>> {
        let q = &self.inner;
        q.stats.count_activation();
        // Its arrival is the moment it goes into the queue.
        let item = Pending {
            payload,
            arrival: MonotonicClock.now(),
        };
        match q.drop {
            DropPolicy::Newest => match q.queue.push(item) {
                Ok(()) => Ok(()),
                Err(back) => {
                    q.stats.count_drop();
                    Err(Dropped {
                        payload: back.payload,
                        newest: true,
                    })
                }
            },
            DropPolicy::Oldest => match q.queue.force_push(item) {
                Ok(None) => Ok(()),
                Ok(Some(evicted)) => {
                    q.stats.count_drop();
                    Err(Dropped {
                        payload: evicted.payload,
                        newest: false,
                    })
                }
                Err(back) => {
                    q.stats.count_drop();
                    Err(Dropped {
                        payload: back.payload,
                        newest: true,
                    })
                }
            },
        }
    }

    /// Wakes the task's core (the wake hook). Cheap when the core is awake.
    #[inline]
    pub fn wake(&self) {
        self.inner.route.wake();
    }

    /// Activations waiting now.
    pub fn queued(&self) -> usize {
        self.inner.queue.len()
    }
}
