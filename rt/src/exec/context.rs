//! What the executor's threads share. The RT threads touch only the atomics and the
//! lock-free [`SupervisorLink`]; the mutexes belong to the control side and the
//! supervisor, on the general cores.

use std::sync::atomic::AtomicBool;
use std::sync::{Mutex, MutexGuard};

use super::gate::{Gate, TaskId};
use super::options::StopPolicy;
use super::supervisor::{ExecEvent, SupervisorLink};
use crate::cpu::CpuSet;
use crate::thread::RtThread;

/// Shared state of one executor.
#[derive(Debug)]
pub(crate) struct Context {
    /// Set once by `stop`: runners finish their job in flight and end.
    pub(crate) stop: AtomicBool,
    /// What runners do with queued activations at stop.
    pub(crate) stop_policy: StopPolicy,
    /// Set after every runner has ended: the supervisor takes over what is left and ends.
    pub(crate) supervisor_stop: AtomicBool,
    /// RT threads → supervisor.
    pub(crate) link: SupervisorLink,
    /// The general cores.
    pub(crate) general: CpuSet,
    gate: Mutex<Gate>,
    events: Mutex<Vec<ExecEvent>>,
    demoted_threads: Mutex<Vec<(TaskId, RtThread<()>)>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves plain data behind (a list, the
    // admission state between two calls), which stays usable.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Context {
    pub(crate) fn new(gate: Gate, general: CpuSet, stop_policy: StopPolicy) -> Context {
        Context {
            stop: AtomicBool::new(false),
            stop_policy,
            supervisor_stop: AtomicBool::new(false),
            link: SupervisorLink::new(),
            general,
            gate: Mutex::new(gate),
            events: Mutex::new(Vec::new()),
            demoted_threads: Mutex::new(Vec::new()),
        }
    }

    /// The admission controller (control side only).
    pub(crate) fn gate(&self) -> MutexGuard<'_, Gate> {
        lock(&self.gate)
    }

    /// Gives `id`'s capacity back to admission.
    pub(crate) fn release_capacity(&self, id: TaskId) {
        self.gate().release(id);
    }

    /// Records an event.
    pub(crate) fn record(&self, e: ExecEvent) {
        lock(&self.events).push(e);
    }

    /// The events so far.
    pub(crate) fn events(&self) -> Vec<ExecEvent> {
        lock(&self.events).clone()
    }

    pub(crate) fn keep_demoted_thread(&self, id: TaskId, t: RtThread<()>) {
        lock(&self.demoted_threads).push((id, t));
    }

    pub(crate) fn take_demoted_threads(&self) -> Vec<RtThread<()>> {
        std::mem::take(&mut *lock(&self.demoted_threads))
            .into_iter()
            .map(|(_, t)| t)
            .collect()
    }

    /// The best-effort thread of demoted task `id`, if it has one.
    pub(crate) fn take_demoted_thread(&self, id: TaskId) -> Option<RtThread<()>> {
        let mut threads = lock(&self.demoted_threads);
        let i = threads.iter().position(|(t, _)| *t == id)?;
        Some(threads.swap_remove(i).1)
    }
}
