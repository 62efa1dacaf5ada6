//! The best-effort pool: threads on the general cores for non-real-time work (logging,
//! statistics, deferred work).
//!
//! With `share_idle = true` in an RT core's file, the pool also gets one worker pinned
//! to that core at SCHED_IDLE, as in ARTiS: it uses the core's idle time, and any RT
//! thread preempts it at once.

use crossbeam_channel::{Receiver, Sender};

use crate::cpu::CpuSet;
use crate::error::{Error, Result};
use crate::thread::{Policy, RtThread, ThreadBuilder};

type Work = Box<dyn FnOnce() + Send + 'static>;

/// A pool of best-effort worker threads sharing one work queue.
#[derive(Debug)]
pub struct Pool {
    tx: Option<Sender<Work>>,
    idle_tx: Option<Sender<Work>>,
    workers: Vec<RtThread<()>>,
    tids: Vec<i32>,
    idle_tids: Vec<i32>,
}

fn worker(rx: Receiver<Work>) {
    while let Ok(work) = rx.recv() {
        work();
    }
}

/// An idle-time worker takes idle-only work first, and general work too.
fn idle_worker(idle: Receiver<Work>, general: Receiver<Work>) {
    loop {
        let work = crossbeam_channel::select! {
            recv(idle) -> w => w,
            recv(general) -> w => w,
        };
        match work {
            Ok(w) => w(),
            Err(_) => return,
        }
    }
}

impl Pool {
    /// `n` SCHED_OTHER workers on `general`, plus one SCHED_IDLE worker on each CPU of
    /// `share_idle`.
    pub(crate) fn start(n: usize, general: CpuSet, share_idle: CpuSet) -> Result<Pool> {
        let (tx, rx) = crossbeam_channel::unbounded::<Work>();
        let (idle_tx, idle_rx) = crossbeam_channel::unbounded::<Work>();
        let mut pool = Pool {
            tx: Some(tx),
            idle_tx: Some(idle_tx),
            workers: Vec::new(),
            tids: Vec::new(),
            idle_tids: Vec::new(),
        };
        for i in 0..n.max(1) {
            let rx = rx.clone();
            let t = ThreadBuilder::new(format!("rtpm-pool-{i}"))
                .policy(Policy::Other { nice: 0 })
                .affinity(general)
                .spawn(move || worker(rx))?;
            pool.tids.push(t.tid());
            pool.workers.push(t);
        }
        for cpu in share_idle.iter() {
            let (rx, idle_rx) = (rx.clone(), idle_rx.clone());
            let t = ThreadBuilder::new(format!("rtpm-idle-{cpu}"))
                .policy(Policy::Idle)
                .affinity(CpuSet::single(cpu))
                .spawn(move || idle_worker(idle_rx, rx))?;
            pool.idle_tids.push(t.tid());
            pool.workers.push(t);
        }
        Ok(pool)
    }

    /// Queues `work` for the next free worker. Not for RT threads: it allocates.
    pub fn submit(&self, work: impl FnOnce() + Send + 'static) -> Result<()> {
        let tx = self
            .tx
            .as_ref()
            .ok_or_else(|| Error::Invalid("the best-effort pool has stopped".into()))?;
        tx.send(Box::new(work))
            .map_err(|_| Error::Invalid("the best-effort pool has stopped".into()))
    }

    /// Queues `work` for the idle-time workers only (SCHED_IDLE on `share_idle` RT
    /// cores): it runs only when an RT core has nothing to do. Refused when no RT core
    /// shares its idle time.
    pub fn submit_idle(&self, work: impl FnOnce() + Send + 'static) -> Result<()> {
        if self.idle_tids.is_empty() {
            return Err(Error::Invalid(
                "no RT core shares its idle time (`share_idle = true` in its core file)".into(),
            ));
        }
        let tx = self
            .idle_tx
            .as_ref()
            .ok_or_else(|| Error::Invalid("the best-effort pool has stopped".into()))?;
        tx.send(Box::new(work))
            .map_err(|_| Error::Invalid("the best-effort pool has stopped".into()))
    }

    /// How many workers there are (general and idle-time).
    pub fn workers(&self) -> usize {
        self.workers.len()
    }

    /// Thread ids of the SCHED_OTHER workers on the general cores.
    pub fn general_tids(&self) -> &[i32] {
        &self.tids
    }

    /// Thread ids of the SCHED_IDLE workers on `share_idle` RT cores.
    pub fn idle_tids(&self) -> &[i32] {
        &self.idle_tids
    }

    /// Closes the queue and waits for the workers to finish their work.
    pub(crate) fn stop(&mut self) {
        self.tx = None;
        self.idle_tx = None;
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.stop();
    }
}
