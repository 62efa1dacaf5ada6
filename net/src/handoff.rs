//! Handing received messages to tasks: handles, destination queues, consumers.
//!
//! The dispatcher never copies a message to a task. It pushes a [`Handle`] — which
//! buffer, which bytes, where from — into the destination's bounded lock-free queue. The
//! consumer borrows the bytes in place and gives the handle back; the buffer then goes
//! through its reactor's return queue, and only the reactor recycles it to the kernel.
//!
//! A full queue applies the QoS class's [`DropPolicy`] and counts it; the reactor never
//! waits for a consumer, and a consumer never waits for the reactor: the queues are
//! [`rtpm_rt::mpmc::Queue`]s, whose pop reports "empty" rather than spin on a push still
//! in progress (crossbeam's `ArrayQueue` spins there — on an RT core, at SCHED_FIFO, for
//! as long as the reactor's thread is kept off its own core). Under drop-oldest, a push
//! that finds the oldest handle being taken at that moment drops the new one instead;
//! a queue holds at least two handles. After every push the destination rings its doorbell, the rt
//! crate's [`WakeWord`] (for a
//! plain consumer thread parked in [`Consumer::wait`]) and calls the wake hook, if one is
//! registered ([`Consumer::set_wake`]) — the place where an executor wires the release
//! of a sporadic job.

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rtpm_rt::exec::WakeWord;
use rtpm_rt::mpmc::Queue;
use rtpm_rt::time::{Clock, Instant, MonotonicClock, Nanos};

use crate::config::DropPolicy;
use crate::error::Error;
use crate::sap::Shared;
use crate::sys::region::Lease;

/// A TCP connection of a SAP. Stale ids (of a closed connection whose slot was reused)
/// are detected and refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConnId {
    pub(crate) shard: u16,
    pub(crate) idx: u32,
    pub(crate) generation: u32,
}

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}.{}.{}", self.shard, self.idx, self.generation)
    }
}

/// Where a message came from, and so where a reply goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// A datagram from `from`, received by the SAP's reactor `shard`.
    Datagram {
        /// The sender.
        from: SocketAddr,
        /// The reactor (socket) that received it; replies leave through it.
        shard: u16,
    },
    /// A frame on a TCP connection.
    Stream {
        /// The connection.
        conn: ConnId,
        /// The peer's address.
        peer: SocketAddr,
    },
}

impl Source {
    /// The peer's address.
    pub fn peer(&self) -> SocketAddr {
        match *self {
            Source::Datagram { from, .. } => from,
            Source::Stream { peer, .. } => peer,
        }
    }
    pub(crate) fn shard(&self) -> u16 {
        match *self {
            Source::Datagram { shard, .. } => shard,
            Source::Stream { conn, .. } => conn.shard,
        }
    }
}

/// One received message: `(buffer id, length, source)` and the bytes' lease.
///
/// Move-only: give it back exactly once with [`Consumer::release`] (a [`Delivery`] does
/// that when dropped). A handle that is never given back keeps its buffer out of the
/// ring until the SAP is dropped.
#[derive(Debug)]
pub struct Handle {
    pub(crate) lease: Lease,
    pub(crate) source: Source,
    pub(crate) received: Instant,
}

impl Handle {
    /// The buffer holding the message.
    pub fn buffer(&self) -> u16 {
        self.lease.buffer()
    }
    /// Payload length in bytes.
    pub fn len(&self) -> usize {
        self.lease.len()
    }
    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.lease.is_empty()
    }
    /// Where it came from.
    pub fn source(&self) -> &Source {
        &self.source
    }
    /// When the reactor took its completion (`CLOCK_MONOTONIC`): the arrival time an
    /// executor measures release latency from.
    pub fn received_at(&self) -> Instant {
        self.received
    }
}

/// What became of a handle given to a destination.
pub(crate) enum Outcome {
    /// Queued (or held, for a datagram under backpressure).
    Queued,
    /// Dropped under the policy: release it (the arrival, or the displaced oldest).
    Dropped(Handle),
    /// Backpressure on a full queue for a stream frame: the caller pauses the connection
    /// with the handle pending, after [`Destination::block`].
    Full(Handle),
}

/// Counters of one destination.
#[derive(Debug, Default)]
pub(crate) struct DestCounters {
    pub delivered: AtomicU64,
    pub dropped_newest: AtomicU64,
    pub dropped_oldest: AtomicU64,
    pub held: AtomicU64,
}

/// A destination's counters, at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DestStats {
    /// Handles pushed to the queue (or held, under backpressure).
    pub delivered: u64,
    /// Arrivals dropped because the queue was full (drop-newest).
    pub dropped_newest: u64,
    /// Queued handles dropped to make room (drop-oldest).
    pub dropped_oldest: u64,
    /// Backpressure: datagrams kept aside (holding their buffers) and connections paused
    /// because the queue was full.
    pub held: u64,
}

/// A bounded queue of handles for one task (or one group of tasks).
pub(crate) struct Destination {
    queue: Queue<Handle>,
    /// Backpressure only: datagrams kept in order while `queue` is full. A datagram holds
    /// a buffer (with UDP GRO, up to 64 share one), and this holds as many datagrams as
    /// the SAP's buffers can, so a push cannot fail.
    held: Option<Queue<Handle>>,
    /// Backpressure only: connections `(shard, conn)` paused on this full queue.
    blocked: Option<Queue<(u16, u32)>>,
    policy: DropPolicy,
    bell: WakeWord,
    hook: OnceLock<Box<dyn Fn() + Send + Sync>>,
    taken: AtomicBool,
    pub(crate) counters: DestCounters,
}

impl Destination {
    /// A destination of `depth` handles; `buffers` and `conns` are the SAP's totals.
    pub(crate) fn new(
        depth: usize,
        policy: DropPolicy,
        buffers: usize,
        conns: usize,
    ) -> Destination {
        let bp = policy == DropPolicy::Backpressure;
        Destination {
            queue: Queue::new(depth.max(1)),
            held: bp.then(|| Queue::new(buffers.max(1))),
            blocked: bp.then(|| Queue::new(conns.max(1))),
            policy,
            bell: WakeWord::new(),
            hook: OnceLock::new(),
            taken: AtomicBool::new(false),
            counters: DestCounters::default(),
        }
    }

    /// Pushes `h` under the drop policy. Never blocks.
    pub(crate) fn deliver(&self, h: Handle) -> Outcome {
        let c = &self.counters;
        let out = match (self.policy, &self.held) {
            (DropPolicy::Backpressure, Some(held)) => {
                let stream = matches!(h.source, Source::Stream { .. });
                // Keep order: once a datagram is held, later ones queue behind it.
                let h = if held.is_empty() {
                    self.queue.push(h).err()
                } else {
                    Some(h)
                };
                match h {
                    None => Outcome::Queued,
                    Some(h) => {
                        c.held.fetch_add(1, Ordering::Relaxed);
                        if stream {
                            return Outcome::Full(h);
                        }
                        match held.push(h) {
                            Ok(()) => Outcome::Queued,
                            Err(h) => Outcome::Dropped(h),
                        }
                    }
                }
            }
            (DropPolicy::DropOldest, _) => match self.queue.force_push(h) {
                Ok(Some(old)) => {
                    c.dropped_oldest.fetch_add(1, Ordering::Relaxed);
                    Outcome::Dropped(old)
                }
                Ok(None) => Outcome::Queued,
                Err(h) => {
                    // the oldest was being taken: drop the new one (module documentation)
                    c.dropped_newest.fetch_add(1, Ordering::Relaxed);
                    return Outcome::Dropped(h);
                }
            },
            _ => match self.queue.push(h) {
                Ok(()) => Outcome::Queued,
                Err(h) => {
                    c.dropped_newest.fetch_add(1, Ordering::Relaxed);
                    return Outcome::Dropped(h);
                }
            },
        };
        c.delivered.fetch_add(1, Ordering::Relaxed);
        self.bell.wake();
        if let Some(hook) = self.hook.get() {
            hook();
        }
        out
    }

    /// Registers connection `conn` of reactor `shard` as paused on this queue. Returns
    /// whether the queue has room again already (the consumer popped meanwhile), in which
    /// case the caller must [`Destination::unblock`].
    pub(crate) fn block(&self, shard: u16, conn: u32) -> bool {
        if let Some(b) = &self.blocked {
            let _ = b.push((shard, conn));
        }
        self.queue.len() < self.queue.capacity()
    }

    /// Hands every paused connection back to its reactor to resume.
    pub(crate) fn unblock(&self, shared: &Shared) {
        if let Some(b) = &self.blocked {
            while let Some((shard, conn)) = b.pop() {
                if let Some(core) = shared.cores.get(shard as usize) {
                    core.resume_later(conn);
                }
            }
        }
    }

    fn has_blocked(&self) -> bool {
        self.blocked.as_ref().is_some_and(|b| !b.is_empty())
    }

    fn pop(&self) -> Option<Handle> {
        // Held datagrams are newer than every queued one: take them only once the queue
        // is empty, pushes in progress included.
        self.queue.pop().or_else(|| {
            self.held
                .as_ref()
                .filter(|_| self.queue.is_empty())
                .and_then(|h| h.pop())
        })
    }

    pub(crate) fn stats(&self) -> DestStats {
        let c = &self.counters;
        DestStats {
            delivered: c.delivered.load(Ordering::Relaxed),
            dropped_newest: c.dropped_newest.load(Ordering::Relaxed),
            dropped_oldest: c.dropped_oldest.load(Ordering::Relaxed),
            held: c.held.load(Ordering::Relaxed),
        }
    }

    /// Marks the consumer taken; false if it already was.
    pub(crate) fn take(&self) -> bool {
        !self.taken.swap(true, Ordering::AcqRel)
    }

    /// Drains every queued handle (shutdown).
    pub(crate) fn drain(&self, mut f: impl FnMut(Handle)) {
        while let Some(h) = self.pop() {
            f(h);
        }
        if let Some(b) = &self.blocked {
            while b.pop().is_some() {}
        }
    }
}

/// The receiving end of one destination: pop handles, read their bytes, give them back.
///
/// One consumer per destination (it may be moved to the task's thread). Popping and
/// releasing take no lock and allocate nothing.
pub struct Consumer {
    shared: Arc<Shared>,
    dest: u16,
}

impl Consumer {
    pub(crate) fn new(shared: Arc<Shared>, dest: u16) -> Consumer {
        Consumer { shared, dest }
    }

    fn destination(&self) -> &Destination {
        &self.shared.dests[self.dest as usize]
    }

    /// The next message, if one is queued. It is given back when the [`Delivery`] drops.
    pub fn pop(&self) -> Option<Delivery<'_>> {
        self.pop_handle().map(|handle| Delivery {
            consumer: self,
            handle: Some(handle),
        })
    }

    /// The next raw handle, if one is queued (give it back with [`Consumer::release`]).
    pub fn pop_handle(&self) -> Option<Handle> {
        let d = self.destination();
        let h = d.pop();
        if h.is_some() && d.has_blocked() {
            d.unblock(&self.shared);
        }
        h
    }

    /// Like [`Consumer::pop`], but sleeps (futex) up to `timeout` for a message.
    pub fn wait(&self, timeout: Duration) -> Option<Delivery<'_>> {
        let deadline = MonotonicClock.now().add(Nanos::from_duration(timeout));
        let d = self.destination();
        loop {
            let seen = d.bell.seq();
            if let Some(h) = self.pop_handle() {
                return Some(Delivery {
                    consumer: self,
                    handle: Some(h),
                });
            }
            if MonotonicClock.now() >= deadline {
                return None;
            }
            d.bell.wait(seen, Some(deadline));
        }
    }

    /// The bytes of a handle popped from this SAP.
    pub fn bytes<'a>(&'a self, h: &'a Handle) -> Result<&'a [u8], Error> {
        self.shared.bytes(h)
    }

    /// Gives a handle back; its buffer returns to its reactor.
    pub fn release(&self, h: Handle) -> Result<(), Error> {
        self.shared.release(h)
    }

    /// Registers a hook called after every push into this destination, on the reactor
    /// thread that pushed. It must be short and must not block (typically: mark a sporadic
    /// job released and wake its core). Set once; a second call returns the hook back.
    #[allow(clippy::type_complexity)]
    pub fn set_wake(
        &self,
        hook: Box<dyn Fn() + Send + Sync>,
    ) -> Result<(), Box<dyn Fn() + Send + Sync>> {
        self.destination().hook.set(hook)
    }

    /// This destination's counters.
    pub fn stats(&self) -> DestStats {
        self.destination().stats()
    }
}

/// A popped message; borrows its bytes in place and gives the buffer back when dropped.
pub struct Delivery<'c> {
    consumer: &'c Consumer,
    handle: Option<Handle>,
}

impl Delivery<'_> {
    /// The payload.
    pub fn bytes(&self) -> &[u8] {
        match &self.handle {
            Some(h) => self.consumer.bytes(h).unwrap_or(&[]),
            None => &[],
        }
    }
    /// Where it came from.
    pub fn source(&self) -> Option<&Source> {
        self.handle.as_ref().map(|h| &h.source)
    }
    /// The underlying handle.
    pub fn handle(&self) -> Option<&Handle> {
        self.handle.as_ref()
    }
    /// Keeps the handle instead of giving it back now (release it later with
    /// [`Consumer::release`]).
    pub fn into_handle(mut self) -> Option<Handle> {
        self.handle.take()
    }
}

impl Drop for Delivery<'_> {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            // A handle popped from this consumer belongs to this SAP; release cannot
            // refuse it.
            let _ = self.consumer.release(h);
        }
    }
}
