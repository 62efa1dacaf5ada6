//! The baton: single ownership of the protocol node, handed between jobs without a lock.
//!
//! The node (with everything that touches it: the SAPs' consumers, pending lookups) lives
//! in one atomic word: an `AtomicCell<Option<Box<_>>>`, which is pointer-sized and so a
//! plain atomic swap (checked by a test: no hidden lock, no spinning). A job that wants
//! the node swaps `None` in and gets the box, works, and swaps it back; nobody else can
//! touch it meanwhile, which Rust's ownership makes exact (the job holds a `Box`, not a
//! reference). A queue would not do: crossbeam's `ArrayQueue` makes a `pop` spin
//! (`sched_yield`) while a `push` it overtook is half done, and under SCHED_FIFO a
//! higher-priority job spinning on a preempted lower-priority one on the same core never
//! lets it finish — a livelock the first version of this file had, found by the
//! benchmark. A job that finds the slot empty — another job holds the node
//! — does not wait: it sets its bit in the *orphans* word and returns, and the holder,
//! before it lets go for good, serves every orphaned source too. So no job ever blocks,
//! no work is lost, and a job waits for at most the rest of the holder's turn.
//!
//! **Why this is race-free.** A job orphaning its work does `orphans |= bit`, a SeqCst
//! fence, then tries the slot once more; a holder puts the node back, a SeqCst fence,
//! then reads `orphans`. Whichever comes second in the fences' total order sees the
//! other: either the job finds the node in the slot, or the holder sees the bit and takes
//! the node again to serve it (the store-buffering pattern, closed by the two fences).

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};

use crossbeam_utils::atomic::AtomicCell;

/// The one-slot hand-over. See the [module documentation](self).
pub(crate) struct Baton<T> {
    slot: AtomicCell<Option<Box<T>>>,
    orphans: AtomicU32,
    handed_over: AtomicU64,
    turns: AtomicU64,
}

impl<T> std::fmt::Debug for Baton<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Baton")
            .field("orphans", &self.orphans.load(Ordering::Relaxed))
            .finish()
    }
}

impl<T> Baton<T> {
    /// An empty baton (nobody can run until [`Baton::put`]).
    pub(crate) fn new() -> Baton<T> {
        Baton {
            slot: AtomicCell::new(None),
            orphans: AtomicU32::new(0),
            handed_over: AtomicU64::new(0),
            turns: AtomicU64::new(0),
        }
    }

    /// Puts the value in (start); hands it back if the slot is occupied.
    pub(crate) fn put(&self, v: Box<T>) -> Result<(), Box<T>> {
        let r = match self.slot.swap(Some(v)) {
            None => Ok(()),
            // occupied: put the other back and refuse this one
            Some(other) => match self.slot.swap(Some(other)) {
                Some(mine) => Err(mine),
                None => Ok(()),
            },
        };
        fence(Ordering::SeqCst);
        r
    }

    /// Takes the value out for good (stop): `None` while a job holds it.
    pub(crate) fn take(&self) -> Option<Box<T>> {
        self.slot.take()
    }

    /// Runs `turn(value, sources)` as the holder on behalf of `source` (a bit index
    /// below 32), with `sources` the bitmask of every source served in this turn (its own
    /// and those orphaned meanwhile); repeats while sources are orphaned during a turn.
    /// Returns at once, leaving `source` orphaned for the holder, when another job holds
    /// the value, or when there is none (stopped).
    pub(crate) fn run(&self, source: u32, mut turn: impl FnMut(&mut T, u32)) {
        let mine = 1u32 << (source & 31);
        let mut v = match self.slot.take() {
            Some(v) => v,
            None => {
                self.orphans.fetch_or(mine, Ordering::SeqCst);
                fence(Ordering::SeqCst);
                match self.slot.take() {
                    Some(v) => v,
                    None => {
                        self.handed_over.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                }
            }
        };
        let mut sources = mine;
        loop {
            sources |= self.orphans.swap(0, Ordering::SeqCst);
            self.turns.fetch_add(1, Ordering::Relaxed);
            turn(&mut v, sources);
            // only the holder fills the slot it emptied: it is empty now
            self.slot.store(Some(v));
            fence(Ordering::SeqCst);
            if self.orphans.load(Ordering::SeqCst) == 0 {
                return;
            }
            match self.slot.take() {
                Some(again) => v = again,
                // another job took it in between and will serve the orphans
                None => return,
            }
            sources = 0;
        }
    }

    /// Jobs that left their work to the holder, and turns taken.
    pub(crate) fn counts(&self) -> (u64, u64) {
        (
            self.handed_over.load(Ordering::Relaxed),
            self.turns.load(Ordering::Relaxed),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;

    #[test]
    fn one_holder_at_a_time_and_no_orphan_is_lost() {
        // four threads, each a "source", each asking for 20,000 units of work; the value
        // counts the work done per source and flags any overlap
        let baton: Arc<Baton<([u64; 4], bool)>> = Arc::new(Baton::new());
        baton.put(Box::new(([0; 4], false))).unwrap();
        let inside = Arc::new(AtomicBool::new(false));
        let asked = Arc::new([const { AtomicU64::new(0) }; 4]);
        let threads: Vec<_> = (0..4u32)
            .map(|s| {
                let (baton, inside, asked) = (baton.clone(), inside.clone(), asked.clone());
                std::thread::spawn(move || {
                    for _ in 0..20_000 {
                        asked[s as usize].fetch_add(1, Ordering::SeqCst);
                        baton.run(s, |v, sources| {
                            if inside.swap(true, Ordering::SeqCst) {
                                v.1 = true;
                            }
                            for i in 0..4 {
                                if sources & (1 << i) != 0 {
                                    // serve everything asked so far by source i
                                    v.0[i] = asked[i].load(Ordering::SeqCst);
                                }
                            }
                            inside.store(false, Ordering::SeqCst);
                        });
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let v = baton.take().unwrap();
        assert!(!v.1, "two holders overlapped");
        assert_eq!(v.0, [20_000; 4], "work left behind");
        let (handed, turns) = baton.counts();
        assert!(turns > 0 && turns + handed >= 80_000);
    }

    #[test]
    fn the_slot_is_one_atomic_word() {
        assert!(AtomicCell::<Option<Box<[u64; 64]>>>::is_lock_free());
    }

    #[test]
    fn an_empty_baton_runs_nothing() {
        let b: Baton<u32> = Baton::new();
        let mut ran = false;
        b.run(0, |_, _| ran = true);
        assert!(!ran);
        b.put(Box::new(1)).unwrap();
        assert!(b.put(Box::new(2)).is_err());
        b.run(3, |v, s| {
            *v += 1;
            assert_eq!(s & 8, 8);
        });
        assert_eq!(*b.take().unwrap(), 2);
    }
}
