//! A bounded multi-producer multi-consumer queue whose `pop` never waits for a `push`.
//!
//! crossbeam's `ArrayQueue` makes a `pop` that overtook a half-done `push` spin (then
//! `sched_yield`) until that push completes. Under SCHED_FIFO, when the pusher is a
//! lower-priority thread on the same core, preempted inside its push by the popping
//! thread, the push never completes: the popper spins forever. That is the situation of
//! real-time jobs of different priorities sharing a queue on one RT core.
//!
//! [`Queue`] is D. Vyukov's bounded MPMC queue (a ring of slots, each with a sequence
//! number that says whose turn the slot is): a `pop` that finds the next slot reserved
//! by a push not yet finished reports the queue empty instead of waiting. So a consumer
//! may see "empty" while a producer is inside `push`; the producer must then make sure
//! the item is consumed later (wake the consumer after its push, as every producer of a
//! sporadic task does anyway). Neither side ever waits for the other; both are
//! allocation-free after [`Queue::new`].

use std::cell::UnsafeCell;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicUsize, Ordering};

use crossbeam_utils::CachePadded;

struct Slot<T> {
    /// `pos` when the slot is free for the push at position `pos`; `pos + 1` when it
    /// holds the item pushed at `pos`.
    seq: AtomicUsize,
    value: UnsafeCell<MaybeUninit<T>>,
}

/// What [`Queue::append`] found at an occupied tail: the value back, the tail position
/// and the slot's sequence number there.
struct Full<T> {
    value: T,
    pos: usize,
    seq: usize,
}

/// A bounded MPMC queue that never waits. See the [module documentation](self).
pub struct Queue<T> {
    slots: Box<[Slot<T>]>,
    head: CachePadded<AtomicUsize>,
    tail: CachePadded<AtomicUsize>,
}

// Items move between threads through the queue (hence `T: Send`); a slot's value is
// touched only by the one thread whose compare-and-swap won that slot's position, and the
// slot's sequence number (release on hand-over, acquire before use) orders those accesses.
// SAFETY: by the above, sharing `&Queue` across threads is sound.
unsafe impl<T: Send> Sync for Queue<T> {}
// SAFETY: as above; the queue owns its items.
unsafe impl<T: Send> Send for Queue<T> {}

impl<T> std::fmt::Debug for Queue<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("capacity", &self.capacity())
            .field("len", &self.len())
            .finish()
    }
}

impl<T> Queue<T> {
    /// A queue of `capacity` items, at least two: in a ring of one slot, "holds the item
    /// of this lap" and "free for the next lap" would be the same sequence number.
    pub fn new(capacity: usize) -> Queue<T> {
        let cap = capacity.max(2);
        Queue {
            slots: (0..cap)
                .map(|i| Slot {
                    seq: AtomicUsize::new(i),
                    value: UnsafeCell::new(MaybeUninit::uninit()),
                })
                .collect(),
            head: CachePadded::new(AtomicUsize::new(0)),
            tail: CachePadded::new(AtomicUsize::new(0)),
        }
    }

    /// How many items it holds at most.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Items in it now (a snapshot; pushes in progress count).
    pub fn len(&self) -> usize {
        let tail = self.tail.load(Ordering::SeqCst);
        let head = self.head.load(Ordering::SeqCst);
        tail.wrapping_sub(head).min(self.capacity())
    }

    /// Whether it holds nothing (pushes in progress count as held).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn slot(&self, pos: usize) -> &Slot<T> {
        &self.slots[pos % self.slots.len()]
    }

    /// Appends `value`; hands it back when the queue is full. Never waits.
    pub fn push(&self, value: T) -> Result<(), T> {
        self.append(value).map_err(|full| full.value)
    }

    /// Appends `value` at the tail unless the tail's slot is occupied; then hands it back
    /// with the position and sequence number it found there. Never waits.
    fn append(&self, value: T) -> Result<(), Full<T>> {
        let mut pos = self.tail.load(Ordering::SeqCst);
        loop {
            let slot = self.slot(pos);
            let seq = slot.seq.load(Ordering::Acquire);
            let dif = seq.wrapping_sub(pos) as isize;
            if dif == 0 {
                match self.tail.compare_exchange_weak(
                    pos,
                    pos.wrapping_add(1),
                    Ordering::SeqCst,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        // Winning the CAS for `pos` makes this thread the only one that
                        // touches the slot until it publishes `pos + 1` below.
                        // SAFETY: exclusive access (above); the slot is free, per its sequence.
                        unsafe { (*slot.value.get()).write(value) };
                        slot.seq.store(pos.wrapping_add(1), Ordering::Release);
                        return Ok(());
                    }
                    Err(now) => pos = now,
                }
            } else if dif < 0 {
                // the slot still holds an item of one lap ago (or its push is unfinished)
                return Err(Full { value, pos, seq });
            } else {
                // `tail` moved on since it was read
                pos = self.tail.load(Ordering::SeqCst);
            }
        }
    }

    /// Appends `value`, evicting the oldest item when the queue is full. Never waits.
    ///
    /// `Ok(None)`: appended. `Ok(Some(old))`: appended in the slot of `old`, the oldest
    /// item, which is handed back. `Err(value)`: the queue is full and its oldest slot is
    /// being taken by a pop, or filled by a push or another eviction, that has not
    /// finished; waiting for it could wait forever (that thread may be one this one has
    /// preempted), so `value` is handed back instead, as if the policy were
    /// drop-newest.
    pub fn force_push(&self, value: T) -> Result<Option<T>, T> {
        let cap = self.slots.len();
        let mut value = value;
        loop {
            let Full {
                value: back,
                pos,
                seq,
            } = match self.append(value) {
                Ok(()) => return Ok(None),
                Err(full) => full,
            };
            value = back;
            let slot = self.slot(pos);
            let oldest = pos.wrapping_sub(cap);
            if seq != oldest.wrapping_add(1) {
                // the slot's last push has not finished
                return Err(value);
            }
            // The slot holds the item pushed at `oldest`, finished. If it is also still
            // unpopped (`head == oldest`), claiming it by moving `head` makes the slot
            // ours: no pop can reach it (head is past it), and no push can (its sequence
            // says full) — so `tail` stays at `pos` until we move it.
            if self
                .head
                .compare_exchange(
                    oldest,
                    oldest.wrapping_add(1),
                    Ordering::SeqCst,
                    Ordering::Relaxed,
                )
                .is_err()
            {
                // A pop took it first, or `tail` moved on since it was read. Go on if
                // either left a way forward; give up if the pop has not freed the slot
                // yet.
                if self.tail.load(Ordering::SeqCst) == pos
                    && slot.seq.load(Ordering::Acquire) != pos
                {
                    return Err(value);
                }
                continue;
            }
            // SAFETY: the slot is ours alone (above) and holds an initialised item.
            let old = unsafe { (*slot.value.get()).assume_init_read() };
            // SAFETY: as above; the read left the slot logically empty.
            unsafe { (*slot.value.get()).write(value) };
            self.tail.store(pos.wrapping_add(1), Ordering::SeqCst);
            slot.seq.store(pos.wrapping_add(1), Ordering::Release);
            return Ok(Some(old));
        }
    }

    /// Takes the oldest item; `None` when empty — or when the oldest slot's push has not
    /// finished (never waits for it). Never waits.
    pub fn pop(&self) -> Option<T> {
        let mut pos = self.head.load(Ordering::Relaxed);
        loop {
            let slot = self.slot(pos);
            let seq = slot.seq.load(Ordering::Acquire);
            let dif = seq.wrapping_sub(pos.wrapping_add(1)) as isize;
            if dif == 0 {
                match self.head.compare_exchange_weak(
                    pos,
                    pos.wrapping_add(1),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        // The sequence `pos + 1` (acquired above) says the push at `pos`
                        // finished writing; winning the CAS makes this thread the only
                        // reader, and the slot is freed for the next lap only after this.
                        // SAFETY: initialised and exclusively ours, per the above.
                        let value = unsafe { (*slot.value.get()).assume_init_read() };
                        slot.seq
                            .store(pos.wrapping_add(self.slots.len()), Ordering::Release);
                        return Some(value);
                    }
                    Err(now) => pos = now,
                }
            } else if dif < 0 {
                // empty, or the push that reserved this slot is still writing
                return None;
            } else {
                pos = self.head.load(Ordering::Relaxed);
            }
        }
    }
}

impl<T> Drop for Queue<T> {
    fn drop(&mut self) {
        while self.pop().is_some() {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn fifo_full_and_empty() {
        let q = Queue::new(3);
        assert_eq!(q.pop(), None);
        for i in 0..3 {
            q.push(i).unwrap();
        }
        assert_eq!(q.push(9), Err(9));
        assert_eq!(q.len(), 3);
        assert_eq!(q.pop(), Some(0));
        q.push(3).unwrap();
        assert_eq!(
            (q.pop(), q.pop(), q.pop(), q.pop()),
            (Some(1), Some(2), Some(3), None)
        );
        assert!(q.is_empty());
        // many laps round a ring whose size is not a power of two
        for i in 0..1000 {
            q.push(i).unwrap();
            assert_eq!(q.pop(), Some(i));
        }
    }

    #[test]
    fn a_pop_reports_empty_instead_of_waiting_for_an_unfinished_push() {
        let q: Queue<u32> = Queue::new(4);
        // reserve position 0 as a push does, without writing: the push is "preempted"
        q.tail.store(1, Ordering::SeqCst);
        assert_eq!(q.len(), 1);
        assert_eq!(q.pop(), None, "pop must not wait for the reserved slot");
        // the push finishes: now the item is there
        // SAFETY: this test is the only user of the queue and owns position 0.
        unsafe { (*q.slots[0].value.get()).write(7) };
        q.slots[0].seq.store(1, Ordering::Release);
        assert_eq!(q.pop(), Some(7));
    }

    type Done = Arc<std::sync::atomic::AtomicBool>;

    /// `n` threads popping from `q` until `done` is set and the queue is empty; each hands
    /// back what it took.
    fn consumers(
        q: &Arc<Queue<u64>>,
        done: &Done,
        n: usize,
    ) -> Vec<std::thread::JoinHandle<Vec<u64>>> {
        (0..n)
            .map(|_| {
                let (q, done) = (Arc::clone(q), Arc::clone(done));
                std::thread::spawn(move || {
                    let mut got = Vec::new();
                    loop {
                        // read the flag first: once it is set, an empty queue stays empty
                        let finished = done.load(Ordering::SeqCst);
                        match q.pop() {
                            Some(v) => got.push(v),
                            None if finished => return got,
                            None => std::hint::spin_loop(),
                        }
                    }
                })
            })
            .collect()
    }

    #[test]
    fn every_item_is_taken_once_across_threads() {
        let q = Arc::new(Queue::new(64));
        let per = if cfg!(miri) { 300 } else { 50_000u64 };
        let producers: Vec<_> = (0..3u64)
            .map(|p| {
                let q = Arc::clone(&q);
                std::thread::spawn(move || {
                    for i in 0..per {
                        let mut v = p * per + i;
                        while let Err(back) = q.push(v) {
                            v = back;
                            std::thread::yield_now();
                        }
                    }
                })
            })
            .collect();
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let consumers = consumers(&q, &done, 2);
        for p in producers {
            p.join().unwrap();
        }
        done.store(true, Ordering::SeqCst);
        let mut all: Vec<u64> = consumers
            .into_iter()
            .flat_map(|c| c.join().unwrap())
            .collect();
        all.sort_unstable();
        assert_eq!(all.len() as u64, 3 * per);
        assert!(all.iter().enumerate().all(|(i, v)| *v == i as u64));
    }

    #[test]
    fn force_push_evicts_the_oldest_when_full() {
        let q = Queue::new(3);
        assert_eq!(q.force_push(0), Ok(None));
        assert_eq!(q.force_push(1), Ok(None));
        assert_eq!(q.force_push(2), Ok(None));
        assert_eq!(q.force_push(3), Ok(Some(0)));
        assert_eq!(q.force_push(4), Ok(Some(1)));
        assert_eq!(q.len(), 3);
        assert_eq!((q.pop(), q.pop()), (Some(2), Some(3)));
        assert_eq!(q.force_push(5), Ok(None));
        assert_eq!(q.force_push(6), Ok(None));
        assert_eq!(q.force_push(7), Ok(Some(4)));
        assert_eq!(
            (q.pop(), q.pop(), q.pop(), q.pop()),
            (Some(5), Some(6), Some(7), None)
        );
        // the smallest queue: one asked for holds two
        let small = Queue::new(1);
        assert_eq!(small.capacity(), 2);
        for i in 0..100u32 {
            let evicted = small.force_push(i).unwrap();
            assert_eq!(evicted, i.checked_sub(2));
        }
        assert_eq!(
            (small.pop(), small.pop(), small.pop()),
            (Some(98), Some(99), None)
        );
    }

    #[test]
    fn force_push_hands_the_new_item_back_instead_of_waiting_for_a_pop() {
        let q: Queue<u32> = Queue::new(2);
        q.push(1).unwrap();
        q.push(2).unwrap();
        // a pop claims position 0 (moves head) and is "preempted" before freeing the slot
        q.head.store(1, Ordering::SeqCst);
        assert_eq!(
            q.force_push(3),
            Err(3),
            "force_push must not wait for the pop"
        );
        // the pop finishes
        // SAFETY: this test owns position 0, claimed above.
        let v = unsafe { (*q.slots[0].value.get()).assume_init_read() };
        assert_eq!(v, 1);
        q.slots[0].seq.store(2, Ordering::Release);
        assert_eq!(q.force_push(3), Ok(None));
        assert_eq!(q.force_push(4), Ok(Some(2)));
        assert_eq!((q.pop(), q.pop(), q.pop()), (Some(3), Some(4), None));
    }

    #[test]
    fn force_push_across_threads_loses_nothing_and_takes_nothing_twice() {
        // Three producers force-push into a small queue while two consumers pop: every
        // item ends exactly once — popped, evicted or handed back.
        let q = Arc::new(Queue::new(8));
        let per = if cfg!(miri) { 300 } else { 50_000u64 };
        let producers: Vec<_> = (0..3u64)
            .map(|p| {
                let q = Arc::clone(&q);
                std::thread::spawn(move || {
                    let mut out = Vec::new();
                    for i in 0..per {
                        match q.force_push(p * per + i) {
                            Ok(None) => {}
                            Ok(Some(old)) => out.push(old),
                            Err(back) => out.push(back),
                        }
                    }
                    out
                })
            })
            .collect();
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let consumers = consumers(&q, &done, 2);
        let mut all: Vec<u64> = producers
            .into_iter()
            .flat_map(|p| p.join().unwrap())
            .collect();
        done.store(true, Ordering::SeqCst);
        all.extend(consumers.into_iter().flat_map(|c| c.join().unwrap()));
        all.sort_unstable();
        assert_eq!(all.len() as u64, 3 * per);
        assert!(all.iter().enumerate().all(|(i, v)| *v == i as u64));
    }

    #[test]
    fn items_left_at_drop_are_dropped() {
        let marker = Arc::new(());
        {
            let q = Queue::new(4);
            q.push(Arc::clone(&marker)).unwrap();
            q.push(Arc::clone(&marker)).unwrap();
            assert_eq!(Arc::strong_count(&marker), 3);
        }
        assert_eq!(Arc::strong_count(&marker), 1);
    }
}
