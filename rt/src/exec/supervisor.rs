//! The supervisor: a best-effort thread on the general cores that takes what RT threads
//! hand over without blocking them.
//!
//! An RT thread never locks, allocates or logs. When a task is demoted, its runner (the
//! task's own thread, or its core's dispatcher) pushes the boxed task into a lock-free
//! queue and bumps the supervisor's wake word. The supervisor then gives the task's
//! capacity back to admission, records the event, and runs the task on a new
//! SCHED_OTHER thread on the general cores (ARTiS-style migration).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crossbeam_queue::ArrayQueue;
use serde::Serialize;

use super::context::Context;
use super::task::{Runnable, Timing};
use super::threads::run_loop;
use super::wake::WakeWord;
use crate::thread::{Policy, ThreadBuilder};
use crate::time::{Clock, MonotonicClock, Nanos};

/// Largest number of tasks one executor holds; the hand-over queue has this capacity, so
/// a hand-over never finds it full.
pub const MAX_TASKS: usize = 256;

/// What happened to the executor's tasks, as reported to the user.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ExecEvent {
    /// A task overran under the `demote` policy: it left its RT core for the general
    /// cores and admission got its capacity back.
    Demoted {
        /// The task.
        task: String,
        /// Its admission id.
        id: u64,
        /// The RT CPU it left.
        from_cpu: usize,
        /// When its runner handed it over (`CLOCK_MONOTONIC` ns).
        at_ns: u64,
    },
    /// Something the user should know that is not an error.
    Warning {
        /// What happened.
        message: String,
    },
}

/// The lock-free side the RT threads use.
pub(crate) struct SupervisorLink {
    demoted: ArrayQueue<(Box<dyn Runnable>, u64)>,
    /// Removed tasks a dispatcher took out of their slots, to be dropped here.
    retired: ArrayQueue<Box<dyn Runnable>>,
    pub(crate) wake: WakeWord,
}

impl std::fmt::Debug for SupervisorLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SupervisorLink")
            .field("demoted", &self.demoted.len())
            .finish()
    }
}

impl SupervisorLink {
    pub(crate) fn new() -> SupervisorLink {
        SupervisorLink {
            demoted: ArrayQueue::new(MAX_TASKS),
            retired: ArrayQueue::new(MAX_TASKS),
            wake: WakeWord::new(),
        }
    }

    /// Hands a demoted task to the supervisor. Lock-free and allocation-free.
    pub(crate) fn hand_over(&self, task: Box<dyn Runnable>) {
        task.shared().stats.set_demoted();
        // The queue holds as many tasks as an executor may have, so it is never full;
        // were it full, the task would be dropped here rather than block the RT core.
        let _ = self.demoted.push((task, MonotonicClock.now().as_nanos()));
        self.wake.wake();
    }

    /// Hands a removed (retired) task to the supervisor, which drops it off the RT core.
    /// Lock-free and allocation-free.
    pub(crate) fn retire(&self, task: Box<dyn Runnable>) {
        // Same capacity argument as `hand_over`.
        let _ = self.retired.push(task);
        self.wake.wake();
    }
}

/// The supervisor thread's body: until the executor stops it, take demoted tasks over.
pub(crate) fn run_supervisor(ctx: Arc<Context>) {
    loop {
        let seen = ctx.link.wake.seq();
        take_over(&ctx);
        if ctx.supervisor_stop.load(Ordering::Acquire) {
            take_over(&ctx);
            return;
        }
        ctx.link
            .wake
            .wait(seen, Some(MonotonicClock.now().add(Nanos::ms(50))));
    }
}

/// Gives back capacity, records the event and restarts each demoted task best-effort.
pub(crate) fn take_over(ctx: &Arc<Context>) {
    while let Some(task) = ctx.link.retired.pop() {
        drop(task);
    }
    while let Some((task, at_ns)) = ctx.link.demoted.pop() {
        let shared = Arc::clone(task.shared());
        ctx.release_capacity(shared.id);
        ctx.record(ExecEvent::Demoted {
            task: shared.spec.name.clone(),
            id: shared.id.get(),
            from_cpu: shared.cpu,
            at_ns,
        });
        if ctx.stop.load(Ordering::Acquire) || shared.removal_requested() {
            let mut task = task;
            task.cancel_pending();
            if shared.removal_requested() {
                shared.mark_retired();
            }
            continue;
        }
        let run_ctx = Arc::clone(ctx);
        let spawned = ThreadBuilder::new(format!("be-{}", shared.spec.name))
            .policy(Policy::Other { nice: 0 })
            .affinity(ctx.general)
            .spawn(move || run_loop(task, &run_ctx, Timing::ThreadCpu));
        match spawned {
            Ok(t) => ctx.keep_demoted_thread(shared.id, t),
            Err(e) => ctx.record(ExecEvent::Warning {
                message: format!(
                    "task `{}` was demoted but its best-effort thread could not start: {e}",
                    shared.spec.name
                ),
            }),
        }
    }
}
