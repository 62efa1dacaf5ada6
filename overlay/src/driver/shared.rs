//! What the overlay's tasks, the SAPs' wake hooks, the driver's clock and the
//! application's handle share: the baton holding the node, the command queue, the wake
//! flags of the sporadic tasks, the next protocol deadline, and counters. Nothing here
//! takes a lock on the holder's path: the published [`Place`] is behind a mutex the
//! holder only ever `try_lock`s (it skips a publication rather than wait).

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::Thread;

use crossbeam_queue::ArrayQueue;
use rtpm_rt::exec::Activator;

use super::Sink;
use super::baton::Baton;
use super::command::Commands;
use super::engine::Engine;
use super::notice::Notice;
use super::status::{DriverCounters, Place};
use super::tasks::Work;
use crate::proto::{Instant, Member, Role};

/// Notices queued for the clock thread at most.
const NOTICES: usize = 256;

/// The wake-up of one sporadic task: activated at most once until its job runs.
#[derive(Debug, Default)]
pub(crate) struct Wake {
    armed: AtomicBool,
    activator: OnceLock<Activator<()>>,
}

impl Wake {
    /// Releases a job unless one is already pending. Never blocks or allocates.
    #[inline]
    pub(crate) fn wake(&self) {
        if !self.armed.swap(true, Ordering::AcqRel)
            && let Some(a) = self.activator.get()
        {
            // a full queue means a job is pending anyway
            let _ = a.activate(());
        }
    }

    /// Called by the task's job before it serves: later arrivals wake it again.
    #[inline]
    pub(crate) fn disarm(&self) {
        self.armed.store(false, Ordering::Release);
    }

    /// The heartbeat's safety net: a wake-up still flagged pending a heartbeat later may
    /// have been swallowed (a host that had not armed the task yet). Clears the flag and
    /// says whether it was set, so that the caller releases the task again.
    pub(crate) fn stale(&self) -> bool {
        self.armed.swap(false, Ordering::AcqRel)
    }

    pub(crate) fn set(&self, a: Activator<()>) {
        let _ = self.activator.set(a);
    }

    pub(crate) fn is_sporadic(&self) -> bool {
        self.activator.get().is_some()
    }
}

/// Counters bumped from any thread.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    send_refused: AtomicU64,
    commands_refused: AtomicU64,
    commands_failed: AtomicU64,
    delivered: AtomicU64,
    notices_dropped: AtomicU64,
}

impl Counters {
    pub(crate) fn count_refused(&self, n: u64) {
        self.send_refused.fetch_add(n, Ordering::Relaxed);
    }
    pub(crate) fn count_command_refused(&self) {
        self.commands_refused.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn count_failed(&self) {
        self.commands_failed.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn count_delivered(&self) {
        self.delivered.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn snapshot(&self, handed_over: u64, steps: u64) -> DriverCounters {
        DriverCounters {
            send_refused: self.send_refused.load(Ordering::Relaxed),
            commands_refused: self.commands_refused.load(Ordering::Relaxed),
            commands_failed: self.commands_failed.load(Ordering::Relaxed),
            delivered: self.delivered.load(Ordering::Relaxed),
            notices_dropped: self.notices_dropped.load(Ordering::Relaxed),
            handed_over,
            steps,
        }
    }
}

/// The shared state of one running overlay. See the [module documentation](self).
pub(crate) struct Shared {
    pub(crate) name: String,
    pub(crate) me: Member,
    pub(crate) baton: Baton<Engine>,
    /// What each task serves, by task index (the bit in the baton's masks).
    pub(crate) works: Vec<Work>,
    /// Items per job, by task index.
    pub(crate) batches: Vec<usize>,
    /// Wake-ups, by task index (periodic tasks have no activator).
    pub(crate) wakes: Vec<Arc<Wake>>,
    pub(crate) command_task: usize,
    pub(crate) timer_task: usize,
    pub(crate) commands: Commands,
    pub(crate) sink: Arc<dyn Sink>,
    pub(crate) counters: Counters,
    pub(crate) place: Mutex<Place>,
    notices: ArrayQueue<Notice>,
    deadline: AtomicU64,
    /// Until when the clock thread sleeps (0 while it is awake and will read the
    /// deadline before it sleeps): a new deadline no earlier than that needs no wake-up,
    /// the clock finds it when it wakes.
    clock_until: AtomicU64,
    clock: OnceLock<Thread>,
    role: AtomicU8,
    left: AtomicBool,
    pub(crate) stopping: AtomicBool,
    /// Tasks the heartbeat's job releases: (task index, period ns, next release ns).
    releases: Vec<(usize, u64, AtomicU64)>,
    /// Wake-ups asked for from an RT job, for the clock thread to carry out (bit = task).
    deferred: AtomicU32,
}

impl Shared {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        name: String,
        me: Member,
        works: Vec<Work>,
        batches: Vec<usize>,
        command_task: usize,
        timer_task: usize,
        command_queue: usize,
        sink: Arc<dyn Sink>,
        releases: Vec<(usize, u64)>,
    ) -> Shared {
        let wakes = works.iter().map(|_| Arc::new(Wake::default())).collect();
        Shared {
            name,
            me,
            baton: Baton::new(),
            works,
            batches,
            wakes,
            command_task,
            timer_task,
            commands: Commands::new(command_queue),
            sink,
            counters: Counters::default(),
            place: Mutex::new(Place::default()),
            notices: ArrayQueue::new(NOTICES),
            deadline: AtomicU64::new(u64::MAX),
            clock_until: AtomicU64::new(0),
            clock: OnceLock::new(),
            role: AtomicU8::new(role_code(Role::Idle)),
            left: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            releases: releases
                .into_iter()
                .map(|(i, p)| (i, p, AtomicU64::new(0)))
                .collect(),
            deferred: AtomicU32::new(0),
        }
    }

    /// The body of task `i`'s jobs.
    pub(crate) fn serve(&self, i: usize) {
        if let Some(w) = self.wakes.get(i) {
            w.disarm();
        }
        self.serve_inline(i);
    }

    /// Task `i`'s work done by the calling job (task `i`'s own, or another admitted job),
    /// or — when another job holds the node — left to that holder (the baton's orphan
    /// rule: it serves it before it lets go), without waking task `i`.
    pub(crate) fn serve_inline(&self, i: usize) {
        self.baton.run(i as u32, |e, sources| e.turn(self, sources));
    }

    /// The heartbeat's job: releases the long-period tasks whose period has passed.
    pub(crate) fn release_due(&self, now: u64) {
        for (i, period, next) in &self.releases {
            let at = next.load(Ordering::Relaxed);
            if at == 0 {
                // first heartbeat: the first release is one period away
                next.store(now.saturating_add(*period), Ordering::Relaxed);
            } else if now >= at {
                next.store(at.saturating_add(*period).max(now), Ordering::Relaxed);
                self.wake_from_job(*i);
            }
        }
    }

    /// Wakes sporadic task `i` from an RT job: through the clock thread, on a general core.
    ///
    /// A job must not push into another task's activation queue itself: the queue's `pop`
    /// waits for a `push` it overtook, so if the job were preempted inside the push by
    /// that task's own (higher-priority) runner on the same core — woken by its timer,
    /// say — the runner would spin on it forever (seen in the benchmark). From the general
    /// cores a push always finishes.
    pub(crate) fn wake_from_job(&self, i: usize) {
        if i < 32 {
            self.deferred.fetch_or(1 << i, Ordering::AcqRel);
            self.unpark_clock();
        }
    }

    /// The clock thread: carries out the wake-ups jobs asked for.
    pub(crate) fn run_deferred_wakes(&self) {
        let mut m = self.deferred.swap(0, Ordering::AcqRel);
        while m != 0 {
            let i = m.trailing_zeros() as usize;
            m &= m - 1;
            self.wake(i);
        }
    }

    /// Releases a job of sporadic task `i` unless one is pending.
    pub(crate) fn wake(&self, i: usize) {
        if let Some(w) = self.wakes.get(i) {
            w.wake();
        }
    }

    /// Wakes every receive and command task again (the heartbeat's safety net against a
    /// lost or disarmed wake-up), through the clock thread.
    pub(crate) fn rearm_all(&self) {
        for (i, (w, work)) in self.wakes.iter().zip(&self.works).enumerate() {
            if w.is_sporadic() && matches!(work, Work::Rx(_) | Work::Commands) && w.stale() {
                self.wake_from_job(i);
            }
        }
    }

    /// The protocol's next deadline, for the clock thread (woken when it came closer).
    ///
    /// Wakes the clock only when it sleeps past the new deadline: in a request/response
    /// exchange each send arms a retransmission deadline later than the one the clock
    /// already sleeps until, so the clock's thread is not woken once per message.
    pub(crate) fn set_deadline(&self, t: Option<Instant>) {
        let t = t.map_or(u64::MAX, |t| t.0);
        // SeqCst pairs with the clock's store of `clock_until` and its load of
        // `deadline` before it sleeps: one of the two sees the other
        self.deadline.swap(t, Ordering::SeqCst);
        if t < self.clock_until.load(Ordering::SeqCst)
            && let Some(c) = self.clock.get()
        {
            c.unpark();
        }
    }

    /// The clock is about to sleep until `until`: returns false (do not sleep) if a
    /// deadline before it was set meanwhile.
    pub(crate) fn clock_sleeps_until(&self, until: u64) -> bool {
        self.clock_until.store(until, Ordering::SeqCst);
        if self.deadline.load(Ordering::SeqCst) < until {
            self.clock_until.store(0, Ordering::SeqCst);
            return false;
        }
        true
    }

    /// The clock is awake: a deadline set now needs no wake-up, the clock reads the
    /// deadline before it sleeps again.
    pub(crate) fn clock_awake(&self) {
        self.clock_until.store(0, Ordering::SeqCst);
    }

    /// Takes the deadline if it is due at `now` (the clock then waits for the next).
    pub(crate) fn due(&self, now: u64) -> Result<(), u64> {
        let d = self.deadline.load(Ordering::Acquire);
        if d <= now {
            let _ =
                self.deadline
                    .compare_exchange(d, u64::MAX, Ordering::AcqRel, Ordering::Relaxed);
            Ok(())
        } else {
            Err(d)
        }
    }

    pub(crate) fn set_clock(&self, t: Thread) {
        let _ = self.clock.set(t);
    }

    pub(crate) fn unpark_clock(&self) {
        if let Some(c) = self.clock.get() {
            c.unpark();
        }
    }

    pub(crate) fn notify(&self, n: Notice) {
        if self.notices.push(n).is_err() {
            self.counters
                .notices_dropped
                .fetch_add(1, Ordering::Relaxed);
        }
        self.unpark_clock();
    }

    pub(crate) fn next_notice(&self) -> Option<Notice> {
        self.notices.pop()
    }

    pub(crate) fn set_role(&self, r: Role) {
        self.role.store(role_code(r), Ordering::Release);
    }

    pub(crate) fn role(&self) -> Role {
        match self.role.load(Ordering::Acquire) {
            1 => Role::Joining,
            2 => Role::Peer,
            3 => Role::SuperPeer,
            4 => Role::Left,
            _ => Role::Idle,
        }
    }

    pub(crate) fn mark_left(&self) {
        self.left.store(true, Ordering::Release);
    }

    pub(crate) fn has_left(&self) -> bool {
        self.left.load(Ordering::Acquire)
    }
}

fn role_code(r: Role) -> u8 {
    match r {
        Role::Idle => 0,
        Role::Joining => 1,
        Role::Peer => 2,
        Role::SuperPeer => 3,
        Role::Left => 4,
    }
}
