//! The fixed resources a request uses on its way: payload buffers and reply cells, all
//! allocated when the RPC service starts and passed by value through lock-free queues, so
//! a request allocates nothing.
//!
//! A two-way caller takes a [`ReplyCell`] and stamps its request with the cell's
//! generation. The server pushes its reply into the cell and wakes it. If the caller
//! times out, it bumps the generation before returning the cell to the pool, so a reply
//! that arrives late is recognised by its old generation and discarded by whoever holds
//! the cell next.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_queue::ArrayQueue;
use rtpm_rt::exec::WakeWord;
use rtpm_rt::time::{Clock, Instant, MonotonicClock};

use super::request::Status;

/// Preallocated payload buffers of one capacity.
#[derive(Debug)]
pub(crate) struct BufferPool {
    free: ArrayQueue<Vec<u8>>,
    /// Every buffer's capacity; payloads longer than this are refused.
    pub(crate) size: usize,
}

impl BufferPool {
    pub(crate) fn new(count: usize, size: usize) -> BufferPool {
        let free = ArrayQueue::new(count.max(1));
        for _ in 0..count.max(1) {
            let _ = free.push(Vec::with_capacity(size));
        }
        BufferPool { free, size }
    }

    /// An empty buffer, or `None` when all are in use.
    #[inline]
    pub(crate) fn take(&self) -> Option<Vec<u8>> {
        self.free.pop()
    }

    /// Gives a buffer back (cleared). One that grew past the pool's size is dropped, so
    /// the pool never holds more memory than it was made with.
    #[inline]
    pub(crate) fn give(&self, mut buf: Vec<u8>) {
        buf.clear();
        if buf.capacity() <= self.size.saturating_mul(2) {
            let _ = self.free.push(buf);
        }
    }
}

/// A reply as the server pushes it.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) generation: u64,
    pub(crate) status: Status,
    pub(crate) payload: Vec<u8>,
}

/// Where one two-way call's reply lands.
#[derive(Debug)]
pub(crate) struct ReplyCell {
    /// Its place in the pool: a remote reply names its cell by this index.
    pub(crate) index: u32,
    generation: AtomicU64,
    slot: ArrayQueue<Reply>,
    wake: WakeWord,
}

/// The address of a reply: the cell and the generation of the call.
#[derive(Clone, Debug)]
pub(crate) struct ReplyTo {
    pub(crate) cell: Arc<ReplyCell>,
    pub(crate) generation: u64,
}

impl ReplyTo {
    /// Delivers a reply. A stale reply waiting in the cell is evicted (and its buffer
    /// handed back) rather than this one being refused.
    #[inline]
    pub(crate) fn send(&self, status: Status, payload: Vec<u8>, pool: &BufferPool) {
        let r = Reply {
            generation: self.generation,
            status,
            payload,
        };
        if let Some(evicted) = self.cell.slot.force_push(r) {
            pool.give(evicted.payload);
        }
        self.cell.wake.wake();
    }
}

/// How a wait for a reply ended.
pub(crate) enum Waited {
    Reply(Reply),
    TimedOut,
}

impl ReplyCell {
    fn new(index: u32) -> ReplyCell {
        ReplyCell {
            index,
            generation: AtomicU64::new(1),
            slot: ArrayQueue::new(4),
            wake: WakeWord::new(),
        }
    }

    /// Waits for the reply of generation `generation` until `deadline`: spins for up to
    /// `spin_until`, then sleeps on the cell's futex. Stale replies are handed back.
    pub(crate) fn wait(
        &self,
        generation: u64,
        deadline: Instant,
        spin_until: Instant,
        pool: &BufferPool,
    ) -> Waited {
        let clock = MonotonicClock;
        loop {
            let seen = self.wake.seq();
            while let Some(r) = self.slot.pop() {
                if r.generation == generation {
                    return Waited::Reply(r);
                }
                pool.give(r.payload);
            }
            let now = clock.now();
            if now >= deadline {
                return Waited::TimedOut;
            }
            if now < spin_until {
                std::hint::spin_loop();
                continue;
            }
            self.wake.wait(seen, Some(deadline));
        }
    }
}

/// The reply cells of one RPC service.
#[derive(Debug)]
pub(crate) struct ReplyPool {
    free: ArrayQueue<Arc<ReplyCell>>,
    /// Every cell, by index (for replies that come back over a network).
    cells: Box<[Arc<ReplyCell>]>,
}

impl ReplyPool {
    pub(crate) fn new(count: usize) -> ReplyPool {
        let free = ArrayQueue::new(count.max(1));
        let cells: Box<[Arc<ReplyCell>]> = (0..count.max(1))
            .map(|i| Arc::new(ReplyCell::new(u32::try_from(i).unwrap_or(u32::MAX))))
            .collect();
        for c in cells.iter() {
            let _ = free.push(Arc::clone(c));
        }
        ReplyPool { free, cells }
    }

    /// The address of a reply that came back over a network: cell `index` and the
    /// generation the request was stamped with (a stale or unknown one is discarded by
    /// the cell's holder, or here).
    #[inline]
    pub(crate) fn address(&self, index: u32, generation: u64) -> Option<ReplyTo> {
        let cell = self.cells.get(index as usize)?;
        Some(ReplyTo {
            cell: Arc::clone(cell),
            generation,
        })
    }

    /// A cell and the generation to stamp the request with.
    #[inline]
    pub(crate) fn take(&self) -> Option<ReplyTo> {
        let cell = self.free.pop()?;
        let generation = cell.generation.load(Ordering::Acquire);
        Some(ReplyTo { cell, generation })
    }

    /// Gives a cell back after its call ended; the generation moves on so that a late
    /// reply of that call is recognised as stale.
    #[inline]
    pub(crate) fn give(&self, to: ReplyTo) {
        to.cell.generation.fetch_add(1, Ordering::AcqRel);
        let _ = self.free.push(to.cell);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtpm_rt::time::Nanos;

    #[test]
    fn a_late_reply_is_discarded_by_the_next_call() {
        let pool = BufferPool::new(4, 64);
        let replies = ReplyPool::new(1);
        let first = replies.take().unwrap();
        let late = first.clone();
        let now = MonotonicClock.now();
        assert!(matches!(
            first.cell.wait(first.generation, now, now, &pool),
            Waited::TimedOut
        ));
        replies.give(first);
        let second = replies.take().unwrap();
        assert_ne!(second.generation, late.generation);
        // The first call's reply arrives now, then the second's.
        late.send(Status::Ok, pool.take().unwrap(), &pool);
        let mut b = pool.take().unwrap();
        b.push(2);
        second.send(Status::Ok, b, &pool);
        let deadline = MonotonicClock.now().add(Nanos::secs(1));
        match second
            .cell
            .wait(second.generation, deadline, deadline, &pool)
        {
            Waited::Reply(r) => assert_eq!(r.payload, vec![2]),
            Waited::TimedOut => panic!("the second reply was lost"),
        }
    }
}
