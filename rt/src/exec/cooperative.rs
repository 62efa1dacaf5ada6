//! The cooperative model: one SCHED_FIFO dispatcher thread per RT core runs every job of
//! the core's tasks to completion, in EDF or fixed-priority order.
//!
//! The dispatcher's state is fixed-capacity and allocated before start: a slot table of
//! [`MAX_TASKS_PER_CORE`] tasks, a ready queue and a timer queue (heapless binary heaps
//! of the same capacity; each task has at most one entry in one of them). New tasks
//! arrive boxed through a lock-free inbox and leave (demoted, or at stop) through an
//! outbox, so even adding and removing tasks allocates nothing on the RT core.
//!
//! When idle, the dispatcher sleeps until its earliest timer, an absolute
//! `CLOCK_MONOTONIC` time. With only periodic tasks on the core it sleeps with
//! `clock_nanosleep(TIMER_ABSTIME)`, exactly as a task thread does. With a sporadic task
//! on the core it must also wake for activations: producers set the task's bit in the
//! core's pending mask and wake the core's futex word, and the dispatcher sleeps on that
//! word with the same absolute timeout (`FUTEX_WAIT_BITSET`, the same hrtimer), so a
//! periodic release and a sporadic activation wake the same sleep. A task added while the
//! dispatcher sleeps on the clock is taken in at the next release.
//!
//! [`Dispatcher`] holds the scheduling decisions and takes `now` as an argument; the
//! thread around it ([`run_dispatcher`]) reads the clock and sleeps.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crossbeam_queue::ArrayQueue;
use heapless::binary_heap::{BinaryHeap, Min};

use super::options::{MAX_TASKS_PER_CORE, StopPolicy};
use super::supervisor::SupervisorLink;
use super::task::{JobEnd, Runnable, Timing};
use super::wake::WakeWord;
use crate::config::Scheduler;
use crate::time::{Clock, Instant, MonotonicClock, sleep_until};

/// A core's wake-up: the futex word the dispatcher sleeps on and the mask of tasks with
/// new activations.
#[derive(Debug, Default)]
pub(crate) struct CoreSignal {
    pub(crate) word: WakeWord,
    pending: AtomicU64,
}

impl CoreSignal {
    /// Marks task slot `slot` as activated and wakes the dispatcher.
    #[inline]
    pub(crate) fn notify(&self, slot: u32) {
        self.pending.fetch_or(1u64 << (slot % 64), Ordering::SeqCst);
        self.word.wake();
    }

    fn take_pending(&self) -> u64 {
        self.pending.swap(0, Ordering::SeqCst)
    }

    fn has_pending(&self) -> bool {
        self.pending.load(Ordering::SeqCst) != 0
    }
}

/// A queue entry, ordered by key, then release, then slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Entry {
    key: u64,
    release: u64,
    slot: u8,
}

struct Slot {
    task: Box<dyn Runnable>,
    /// In the ready or timer queue (or running).
    queued: bool,
}

/// What the dispatcher should do next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Run the job of `slot` released at `release`.
    Run { slot: usize, release: Instant },
    /// Nothing is ready: sleep until woken or until `until`.
    Sleep { until: Option<Instant> },
}

/// The scheduling state of one cooperative core.
pub(crate) struct Dispatcher {
    scheduler: Scheduler,
    slots: Vec<Option<Slot>>,
    /// How many slots hold a sporadic task (the dispatcher then sleeps on its futex).
    sporadic: usize,
    ready: BinaryHeap<Entry, Min, MAX_TASKS_PER_CORE>,
    timers: BinaryHeap<Entry, Min, MAX_TASKS_PER_CORE>,
    /// Boxed tasks to take in, from the control side.
    pub(crate) inbox: Arc<ArrayQueue<(usize, Box<dyn Runnable>)>>,
    pub(crate) signal: Arc<CoreSignal>,
    /// Removed tasks taken out of their slots, to be dropped off the RT core.
    retired: heapless::Vec<Box<dyn Runnable>, MAX_TASKS_PER_CORE>,
}

impl Dispatcher {
    /// An empty dispatcher; everything it will ever need is allocated here.
    pub(crate) fn new(scheduler: Scheduler) -> Dispatcher {
        Dispatcher {
            scheduler,
            slots: (0..MAX_TASKS_PER_CORE).map(|_| None).collect(),
            sporadic: 0,
            ready: BinaryHeap::new(),
            timers: BinaryHeap::new(),
            inbox: Arc::new(ArrayQueue::new(MAX_TASKS_PER_CORE)),
            signal: Arc::new(CoreSignal::default()),
            retired: heapless::Vec::new(),
        }
    }

    /// If slot `slot`'s task is being removed, takes it out: its queue entries go, its
    /// pending activations are cancelled, it is marked retired (so the control side may
    /// reuse the slot) and waits in [`Dispatcher::take_retired`] to be dropped elsewhere.
    /// Returns whether it did.
    fn retire_if_removed(&mut self, slot: usize) -> bool {
        let removing = matches!(
            self.slots.get(slot),
            Some(Some(s)) if s.task.shared().removal_requested()
        );
        if !removing {
            return false;
        }
        let Some(Some(mut s)) = self.slots.get_mut(slot).map(Option::take) else {
            return false;
        };
        if s.task.is_sporadic() {
            self.sporadic = self.sporadic.saturating_sub(1);
        }
        let tag = slot as u8;
        for heap in [&mut self.ready, &mut self.timers] {
            let mut kept: BinaryHeap<Entry, Min, MAX_TASKS_PER_CORE> = BinaryHeap::new();
            while let Some(e) = heap.pop() {
                if e.slot != tag {
                    // At most as many entries as were in `heap`: never full.
                    let _ = kept.push(e);
                }
            }
            *heap = kept;
        }
        s.task.cancel_pending();
        let shared = Arc::clone(s.task.shared());
        // At most one retired task per slot is waiting here, so this is never full.
        let _ = self.retired.push(s.task);
        shared.mark_retired();
        true
    }

    /// The removed tasks taken out since the last call, to be dropped off the RT core.
    pub(crate) fn take_retired(&mut self) -> Option<Box<dyn Runnable>> {
        self.retired.pop()
    }

    /// Asks slot `slot`'s task for its next release and queues it (ready if due by
    /// `now`, else on the timer queue). A sporadic task with nothing queued stays idle.
    fn schedule(&mut self, slot: usize, now: Instant) {
        if self.retire_if_removed(slot) {
            return;
        }
        let scheduler = self.scheduler;
        let Some(Some(s)) = self.slots.get_mut(slot) else {
            return;
        };
        if s.queued {
            return;
        }
        let Some(release) = s.task.next_release() else {
            return;
        };
        s.queued = true;
        // Each task has at most one entry, and there are at most MAX_TASKS_PER_CORE
        // tasks, so neither heap can be full.
        let _ = if release <= now {
            self.ready.push(Entry {
                key: key(scheduler, s.task.as_ref(), release),
                release: release.as_nanos(),
                slot: slot as u8,
            })
        } else {
            self.timers.push(Entry {
                key: release.as_nanos(),
                release: release.as_nanos(),
                slot: slot as u8,
            })
        };
    }

    /// Takes in new tasks, notices activations and due timers, and says what to do.
    pub(crate) fn step(&mut self, now: Instant) -> Step {
        while let Some((slot, task)) = self.inbox.pop() {
            if let Some(place) = self.slots.get_mut(slot) {
                if task.is_sporadic() {
                    self.sporadic += 1;
                }
                *place = Some(Slot {
                    task,
                    queued: false,
                });
                self.schedule(slot, now);
            }
        }
        let mut pending = self.signal.take_pending();
        while pending != 0 {
            let slot = pending.trailing_zeros() as usize;
            pending &= pending - 1;
            self.schedule(slot, now);
        }
        while let Some(t) = self.timers.peek().copied() {
            if t.release > now.as_nanos() {
                break;
            }
            let _ = self.timers.pop();
            let slot = usize::from(t.slot);
            if let Some(Some(s)) = self.slots.get(slot) {
                let key = key(self.scheduler, s.task.as_ref(), Instant(t.release));
                let _ = self.ready.push(Entry { key, ..t });
            }
        }
        match self.ready.pop() {
            Some(e) => Step::Run {
                slot: usize::from(e.slot),
                release: Instant(e.release),
            },
            None => Step::Sleep {
                until: self.timers.peek().map(|t| Instant(t.release)),
            },
        }
    }

    /// Runs the job `step` chose and queues the task's next release.
    pub(crate) fn run(&mut self, slot: usize, release: Instant, timing: Timing) -> JobEnd {
        if self.retire_if_removed(slot) {
            return JobEnd::Continue;
        }
        let Some(Some(s)) = self.slots.get_mut(slot) else {
            return JobEnd::Continue;
        };
        let end = s.task.run(release, timing);
        s.queued = false;
        end
    }

    /// After a job: queue the task's next release, or take a demoted task out of its
    /// slot and hand it back.
    pub(crate) fn finish(
        &mut self,
        slot: usize,
        end: JobEnd,
        now: Instant,
    ) -> Option<Box<dyn Runnable>> {
        match end {
            JobEnd::Continue => {
                self.schedule(slot, now);
                None
            }
            JobEnd::Demote => {
                let task = self.slots.get_mut(slot)?.take()?.task;
                if task.is_sporadic() {
                    self.sporadic = self.sporadic.saturating_sub(1);
                }
                Some(task)
            }
        }
    }

    /// Whether nothing new waits to be looked at (checked after reading the wake word).
    fn quiet(&self) -> bool {
        !self.signal.has_pending() && self.inbox.is_empty()
    }

    /// At stop: drain or cancel what is pending; hands back the tasks.
    fn stop(&mut self, policy: StopPolicy) {
        for slot in 0..self.slots.len() {
            let Some(Some(s)) = self.slots.get_mut(slot) else {
                continue;
            };
            if policy == StopPolicy::Drain && s.task.is_sporadic() {
                while let Some(r) = s.task.next_release() {
                    sleep_until(r);
                    let _ = s.task.run(r, Timing::Wall);
                }
            }
            s.task.cancel_pending();
        }
        while let Some((_, mut t)) = self.inbox.pop() {
            t.cancel_pending();
        }
    }
}

/// The ready-queue key: the absolute deadline under EDF, the rank under fixed priority.
fn key(scheduler: Scheduler, task: &dyn Runnable, release: Instant) -> u64 {
    match scheduler {
        Scheduler::Edf => release.add(task.shared().spec.deadline).as_nanos(),
        Scheduler::Fp => u64::from(task.shared().rank()),
    }
}

/// The dispatcher thread's body: loop until `stop`, then drain or cancel per `policy`.
pub(crate) fn run_dispatcher(
    mut d: Dispatcher,
    stop: &AtomicBool,
    policy: StopPolicy,
    link: &SupervisorLink,
) {
    let clock = MonotonicClock;
    loop {
        let now = clock.now();
        match d.step(now) {
            Step::Run { slot, release } => {
                let end = d.run(slot, release, Timing::Wall);
                if let Some(task) = d.finish(slot, end, clock.now()) {
                    link.hand_over(task);
                }
                while let Some(task) = d.take_retired() {
                    link.retire(task);
                }
            }
            Step::Sleep { until } => {
                while let Some(task) = d.take_retired() {
                    link.retire(task);
                }
                if stop.load(Ordering::Acquire) {
                    break;
                }
                match until {
                    Some(t) if d.sporadic == 0 => sleep_until(t),
                    _ => {
                        let seen = d.signal.word.seq();
                        if d.quiet() && !stop.load(Ordering::Acquire) {
                            d.signal.word.wait(seen, until);
                        }
                    }
                }
            }
        }
        if stop.load(Ordering::Acquire) {
            break;
        }
    }
    d.stop(policy);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::gate::{TaskId, TaskSpec};
    use crate::exec::options::TaskOptions;
    use crate::exec::stats::TaskStats;
    use crate::exec::task::{Periodic, TaskShared};
    use crate::time::Nanos;
    use std::sync::atomic::AtomicU32;

    fn task(
        id: u64,
        period: Nanos,
        deadline: Nanos,
        rank: u32,
        first: Instant,
    ) -> Box<dyn Runnable> {
        let shared = Arc::new(TaskShared {
            id: TaskId(id),
            spec: TaskSpec::periodic(format!("t{id}"), period, Nanos::us(1))
                .with_deadline(deadline),
            options: TaskOptions::default(),
            cpu: 0,
            core: 0,
            stats: Arc::new(TaskStats::new()),
            wake: Arc::new(WakeWord::new()),
            rank: AtomicU32::new(rank),
            removal: std::sync::atomic::AtomicU8::new(crate::exec::task::LIVE),
        });
        Box::new(Periodic::new(shared, first, |_: &crate::exec::Job| {}))
    }

    fn order(scheduler: Scheduler) -> Vec<usize> {
        let mut d = Dispatcher::new(scheduler);
        let t0 = MonotonicClock.now().add(Nanos::ms(50));
        // Slot 0: long deadline, high rank; slot 1: short deadline, low rank.
        d.inbox
            .push((0, task(1, Nanos::ms(10), Nanos::ms(9), 1, t0)))
            .ok();
        d.inbox
            .push((1, task(2, Nanos::ms(10), Nanos::ms(2), 2, t0)))
            .ok();
        let mut ran = Vec::new();
        for _ in 0..2 {
            match d.step(t0) {
                Step::Run { slot, release } => {
                    assert_eq!(release, t0);
                    ran.push(slot);
                    let end = d.run(slot, release, Timing::Wall);
                    // Finished "at t0": the next releases are in the future.
                    assert!(d.finish(slot, end, t0).is_none());
                }
                other => panic!("expected a job, got {other:?}"),
            }
        }
        // Both next releases are t0 + 10 ms: the dispatcher sleeps until then.
        assert_eq!(
            d.step(t0),
            Step::Sleep {
                until: Some(t0.add(Nanos::ms(10)))
            }
        );
        ran
    }

    #[test]
    fn edf_runs_the_earliest_deadline_first() {
        assert_eq!(order(Scheduler::Edf), vec![1, 0]);
    }

    #[test]
    fn fixed_priority_runs_the_best_rank_first() {
        assert_eq!(order(Scheduler::Fp), vec![0, 1]);
    }

    #[test]
    fn a_timer_becomes_ready_when_due() {
        let mut d = Dispatcher::new(Scheduler::Edf);
        let t0 = MonotonicClock.now().add(Nanos::ms(50));
        d.inbox
            .push((
                3,
                task(1, Nanos::ms(1), Nanos::ms(1), 0, t0.add(Nanos::us(300))),
            ))
            .ok();
        assert_eq!(
            d.step(t0),
            Step::Sleep {
                until: Some(t0.add(Nanos::us(300)))
            }
        );
        assert_eq!(
            d.step(t0.add(Nanos::us(300))),
            Step::Run {
                slot: 3,
                release: t0.add(Nanos::us(300))
            }
        );
    }

    #[test]
    fn a_removed_task_leaves_its_slot_and_its_queue_entries() {
        let mut d = Dispatcher::new(Scheduler::Edf);
        let t0 = MonotonicClock.now().add(Nanos::ms(50));
        let a = task(1, Nanos::ms(1), Nanos::ms(1), 0, t0.add(Nanos::us(300)));
        let shared = Arc::clone(a.shared());
        d.inbox.push((3, a)).ok();
        d.inbox
            .push((
                4,
                task(2, Nanos::ms(2), Nanos::ms(2), 0, t0.add(Nanos::us(500))),
            ))
            .ok();
        // Both wait on the timer queue.
        assert_eq!(
            d.step(t0),
            Step::Sleep {
                until: Some(t0.add(Nanos::us(300)))
            }
        );
        shared.request_removal();
        d.signal.notify(3);
        // Slot 3's timer is gone: the next wake-up is slot 4's.
        assert_eq!(
            d.step(t0),
            Step::Sleep {
                until: Some(t0.add(Nanos::us(500)))
            }
        );
        assert!(shared.retired());
        assert!(d.take_retired().is_some());
        assert!(d.take_retired().is_none());
        assert_eq!(
            d.step(t0.add(Nanos::us(500))),
            Step::Run {
                slot: 4,
                release: t0.add(Nanos::us(500))
            }
        );
    }
}
