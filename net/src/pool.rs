//! The leader/followers thread pool of one reactor.
//!
//! Each thread loops: become leader ([`Leadership::lead`]), poll the backend, promote a
//! follower, then process the events it got (decode in place, dispatch). The threads are
//! started with the SAP's policy and placement through `rtpm_rt`'s [`ThreadBuilder`].
//! A pool of one thread is the sharded layout's case: the thread is always the leader.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rtpm_rt::cpu::CpuSet;
use rtpm_rt::thread::{Policy, RtThread, ThreadBuilder};

use crate::config::Mode;
use crate::error::Error;
use crate::leader::Leadership;
use crate::reactor::{Backend, Flow, Waiting};
use crate::sap::Shared;
use crate::sys::socket::RecvScratch;
use crate::throttle::{RtThrottle, SpinBudget};

/// Events one leader takes per poll.
pub(crate) const EVENTS: usize = 64;

/// How pool threads run: policy, placement, waiting.
#[derive(Clone, Debug)]
pub(crate) struct ThreadPlan {
    pub policy: Policy,
    pub cpus: CpuSet,
    pub mode: Mode,
    pub spin: rtpm_rt::time::Nanos,
    pub spin_share: f64,
}

/// Threads serving one reactor.
pub(crate) struct Pool {
    threads: Vec<RtThread<()>>,
}

impl Pool {
    /// Starts `n` threads on `backend`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn start(
        name: &str,
        shard: usize,
        n: usize,
        backend: Arc<dyn Backend>,
        shared: Arc<Shared>,
        plan: &ThreadPlan,
        handled: Arc<[AtomicU64]>,
        first_index: usize,
    ) -> Result<Pool, Error> {
        let rt = RtThrottle::read();
        let mut threads = Vec::with_capacity(n);
        for i in 0..n {
            let (backend, shared, handled, plan2) = (
                backend.clone(),
                shared.clone(),
                handled.clone(),
                plan.clone(),
            );
            let index = first_index + i;
            let thread_name = format!("net/{name}/{shard}.{i}");
            let t = ThreadBuilder::new(thread_name.clone())
                .policy(plan.policy)
                .affinity(plan.cpus)
                .prefault_stack(64 * 1024)
                .spawn(move || run(&*backend, &shared, &plan2, rt, &handled[index]))
                .map_err(|e| Error::Thread {
                    sap: name.to_string(),
                    thread: thread_name,
                    reason: e.to_string(),
                })?;
            threads.push(t);
        }
        Ok(Pool { threads })
    }

    /// Waits for every thread (after the core was told to stop).
    pub(crate) fn join(self) {
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// One pool thread's loop.
fn run(
    backend: &dyn Backend,
    shared: &Shared,
    plan: &ThreadPlan,
    rt: RtThrottle,
    handled: &AtomicU64,
) {
    let core = backend.core();
    let mut events = Vec::with_capacity(EVENTS);
    let mut scratch = RecvScratch::new();
    let mut budget = (plan.mode == Mode::BusyPoll).then(|| {
        let realtime = matches!(plan.policy, Policy::Fifo { .. } | Policy::Deadline { .. });
        SpinBudget::new(plan.spin, plan.spin_share, rt, realtime)
    });
    if let Some(b) = &budget {
        tracing::debug!(sap = %core.name, share = b.share(), "busy-poll spin budget per RT period");
    }
    let leadership: &Leadership = &core.leadership;
    backend.attach();
    loop {
        let lead = leadership.lead(budget.as_mut());
        if core.stopping.load(Ordering::Acquire) {
            drop(lead);
            break;
        }
        events.clear();
        let waiting = match budget.as_mut() {
            Some(b) => Waiting::Spin(b),
            None => Waiting::Park,
        };
        backend.poll(&lead, &mut events, waiting);
        if events.is_empty() {
            drop(lead);
            continue;
        }
        lead.promote();
        let n = events.len() as u64;
        if core.single {
            core.lone
                .store(n == 1 && backend.sends_idle(), Ordering::Relaxed);
        }
        for ev in events.drain(..) {
            backend.complete(ev, &mut scratch, &mut |c| -> Flow {
                shared.process(core, c)
            });
        }
        handled.fetch_add(n, Ordering::Relaxed);
    }
    backend.detach();
}
