//! Application commands: what an application asks of the overlay, queued lock-free for
//! the job that holds the node.
//!
//! A send copies its bytes into a buffer from a pool of recycled `Vec`s (no allocation
//! once the pool is warm), and the buffer comes back to the pool after the protocol has
//! taken the message. A lookup carries a slot that the holder fills and its waiter reads;
//! the waiter is unparked, never woken through a lock.

use std::sync::{Arc, OnceLock};
use std::thread::Thread;

use rtpm_rt::mpmc::Queue;

use crate::proto::{Member, PeerId};

/// Buffers kept for reuse.
const POOL: usize = 256;

/// One command for the node.
#[derive(Debug)]
pub(crate) enum Command {
    /// Send `buf` to `to` on `class`.
    Send { to: PeerId, class: u8, buf: Vec<u8> },
    /// Publish `key` on `class`.
    Publish { key: u128, class: u8 },
    /// Withdraw `key`.
    Unpublish { key: u128 },
    /// Look `key` up and fill `slot`.
    Lookup { key: u128, slot: Arc<LookupSlot> },
    /// Leave the overlay (announced).
    Leave,
}

/// A lookup's answer, as the protocol gave it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// The owner and the class it serves the key on.
    Found(Member, u8),
    /// A definite "not found" (from the root, or a cell that knows the whole subtree).
    NotFound,
    /// The protocol gave up (its own lookup timeout).
    TimedOut,
    /// The command could not be carried out (the node is not joined or has left).
    Refused,
}

/// Where a lookup's answer goes.
#[derive(Debug)]
pub(crate) struct LookupSlot {
    answer: OnceLock<Answer>,
    waiter: Thread,
}

impl LookupSlot {
    /// A slot whose waiter is the calling thread.
    pub(crate) fn new() -> Arc<LookupSlot> {
        Arc::new(LookupSlot {
            answer: OnceLock::new(),
            waiter: std::thread::current(),
        })
    }

    /// Fills the slot (the first answer wins) and unparks the waiter.
    pub(crate) fn fill(&self, a: Answer) {
        let _ = self.answer.set(a);
        self.waiter.unpark();
    }

    /// The answer, once there is one.
    pub(crate) fn answer(&self) -> Option<Answer> {
        self.answer.get().copied()
    }
}

/// The command queue and its buffer pool.
///
/// Both are [`Queue`]s, whose `pop` never waits for a `push` in progress: a job that
/// takes commands (the command task's, or any admitted job carrying out its own send)
/// may preempt a lower-priority job of the same RT core inside its `push`, and must not
/// spin on it. It sees the queue empty instead; that pusher serves or wakes the command
/// task once its push is done.
#[derive(Debug)]
pub(crate) struct Commands {
    queue: Queue<Command>,
    pool: Queue<Vec<u8>>,
}

impl Commands {
    /// A queue of `cap` commands.
    pub(crate) fn new(cap: usize) -> Commands {
        Commands {
            queue: Queue::new(cap.max(1)),
            pool: Queue::new(POOL),
        }
    }

    /// A buffer holding the concatenation of `parts` (from the pool when it has one).
    pub(crate) fn buffer(&self, parts: &[&[u8]]) -> Vec<u8> {
        let mut b = self.pool.pop().unwrap_or_default();
        b.clear();
        for p in parts {
            b.extend_from_slice(p);
        }
        b
    }

    /// Gives a buffer back to the pool (dropped when the pool is full).
    pub(crate) fn recycle(&self, b: Vec<u8>) {
        let _ = self.pool.push(b);
    }

    /// Queues `c`; hands it back when the queue is full.
    pub(crate) fn push(&self, c: Command) -> Result<(), Command> {
        self.queue.push(c)
    }

    /// The next command.
    pub(crate) fn pop(&self) -> Option<Command> {
        self.queue.pop()
    }

    /// Whether commands wait.
    pub(crate) fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// The queue's capacity.
    pub(crate) fn capacity(&self) -> usize {
        self.queue.capacity()
    }
}
