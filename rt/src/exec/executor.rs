//! The executor: starts the RT cores' runners, admits and places tasks, and stops.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU32, Ordering};

use serde::Serialize;

use super::activation::{ActivationQueue, Activator, WakeRoute};
use super::affinity::{self, RtWork};
use super::context::Context;
use super::cooperative::{CoreSignal, Dispatcher, run_dispatcher};
use super::gate::{Gate, GateCore, TaskId, TaskKind, TaskSpec};
use super::job::Job;
use super::options::{ExecConfig, MAX_TASKS_PER_CORE, TaskOptions};
use super::pool::Pool;
use super::stats::{TaskReport, TaskStats};
use super::supervisor::{ExecEvent, MAX_TASKS, run_supervisor};
use super::task::{LIVE, Periodic, Runnable, Sporadic, TaskShared, Timing};
use super::threads::{fifo_priority, run_loop};
use super::wake::WakeWord;
use crate::config::{CoreConfig, Dispatch, Fallback, Role, Scheduler};
use crate::cpu::CpuSet;
use crate::error::{Error, Result};
use crate::sys;
use crate::thread::{DeadlineFlags, Policy, RtThread, ThreadBuilder};
use crate::time::{Clock, Instant, MonotonicClock, Nanos};

/// How an EDF core in the threads model runs its tasks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum EdfThreads {
    /// SCHED_DEADLINE in the shield's root domain.
    Deadline,
    /// SCHED_FIFO in deadline-monotonic order (`fallback = "fifo"`).
    FifoFallback,
}

struct Cooperative {
    inbox: Arc<crossbeam_queue::ArrayQueue<(usize, Box<dyn Runnable>)>>,
    signal: Arc<CoreSignal>,
    thread: Option<RtThread<()>>,
    used: Vec<bool>,
}

struct RtCore {
    config: CoreConfig,
    edf_threads: Option<EdfThreads>,
    cooperative: Option<Cooperative>,
}

struct TaskEntry {
    shared: Arc<TaskShared>,
    thread: Option<RtThread<()>>,
    fifo: Option<u8>,
    slot: Option<usize>,
}

/// What [`Executor::stop`] returns.
#[derive(Clone, Debug, Serialize)]
pub struct ExecReport {
    /// Every task's accounting, in spawn order.
    pub tasks: Vec<TaskReport>,
    /// What happened (demotions, warnings).
    pub events: Vec<ExecEvent>,
    /// From start to stop.
    pub elapsed: Nanos,
}

/// A task admitted but not yet running.
struct Admitted {
    shared: Arc<TaskShared>,
    slot: Option<usize>,
}

/// The real-time executor. See the [module documentation](super).
pub struct Executor {
    ctx: Arc<Context>,
    config: ExecConfig,
    cores: Vec<RtCore>,
    tasks: Vec<TaskEntry>,
    supervisor: Option<RtThread<()>>,
    pool: Option<Pool>,
    restore: Vec<(i32, CpuSet)>,
    epoch: Instant,
    started: Instant,
    stopped: bool,
    /// The PM QoS wake-up latency request, held while the executor runs.
    _idle_latency: Option<crate::thread::IdleLatency>,
}

impl std::fmt::Debug for Executor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executor")
            .field("rt_cores", &self.rt_cpus())
            .field("tasks", &self.tasks.len())
            .finish()
    }
}

impl Executor {
    /// Starts the executor on `config.partition`: checks that every RT core can run its
    /// model, locks memory, moves the process's threads off the RT cores, and starts the
    /// supervisor, the best-effort pool and one dispatcher per cooperative core.
    /// On error nothing stays changed.
    pub fn start(config: ExecConfig) -> Result<Executor> {
        let p = &config.partition;
        let rt: Vec<CoreConfig> = p
            .cores
            .iter()
            .filter(|c| c.role == Role::Rt)
            .cloned()
            .collect();
        if rt.is_empty() {
            return Err(Error::Invalid(
                "the partition has no `rt` core, so there is nowhere to run real-time tasks: \
                 set `role = \"rt\"` in one DIR/cores/cpuN.toml (the embedded default has one \
                 only when the process may use two or more CPUs)"
                    .into(),
            ));
        }
        let general = p.general_cores();
        if general.is_empty() {
            return Err(Error::Invalid(
                "the partition has no `general` core for the supervisor and the best-effort pool; make one core `general`".into(),
            ));
        }
        let mut warnings = Vec::new();
        let mut cores = Vec::new();
        for c in &rt {
            let edf_threads = if c.scheduler == Scheduler::Edf && c.dispatch == Dispatch::Threads {
                Some(edf_mode(c, &mut warnings)?)
            } else {
                None
            };
            cores.push(RtCore {
                config: c.clone(),
                edf_threads,
                cooperative: None,
            });
        }
        if cores
            .iter()
            .any(|c| c.edf_threads == Some(EdfThreads::Deadline))
        {
            sys::signal::install_dl_overrun_handler().map_err(|e| {
                Error::sys(
                    "sigaction(SIGXCPU)",
                    "this process",
                    e,
                    "SCHED_FLAG_DL_OVERRUN reports overruns with SIGXCPU, which would otherwise kill the process",
                )
            })?;
        }
        if config.lock_memory {
            crate::thread::lock_memory()?;
        }
        let restore = if config.confine_process {
            affinity::confine_process(&p.rt_cores(), &general)?
        } else {
            Vec::new()
        };
        let idle_latency = match config.idle_latency {
            Some(max) => match crate::thread::hold_idle_latency(max) {
                Ok(held) => Some(held),
                Err(e) => {
                    warnings.push(format!("idle CPUs may halt: {e}"));
                    None
                }
            },
            None => None,
        };
        let gate_cores: Vec<GateCore<'_>> = cores
            .iter()
            .map(|c| GateCore {
                config: &c.config,
                edf_as_fifo: c.edf_threads == Some(EdfThreads::FifoFallback),
            })
            .collect();
        let gate = Gate::new(&gate_cores, config.priority_assignment, config.job_overhead);
        let ctx = Arc::new(Context::new(gate, general, config.stop));
        for w in warnings {
            ctx.record(ExecEvent::Warning { message: w });
        }
        let now = MonotonicClock.now();
        let mut exec = Executor {
            ctx,
            config,
            cores,
            tasks: Vec::new(),
            supervisor: None,
            pool: None,
            restore,
            epoch: now,
            started: now,
            stopped: false,
            _idle_latency: idle_latency,
        };
        // From here on, an error drops `exec`, which stops what was started.
        let sup_ctx = Arc::clone(&exec.ctx);
        exec.supervisor = Some(
            ThreadBuilder::new("rtpm-supervisor")
                .policy(Policy::Other { nice: 0 })
                .affinity(general)
                .spawn(move || run_supervisor(sup_ctx))?,
        );
        let share_idle = CpuSet::from_ids(
            exec.cores
                .iter()
                .filter(|c| c.config.share_idle)
                .map(|c| c.config.cpu),
        );
        let n = if exec.config.pool_threads == 0 {
            general.len()
        } else {
            exec.config.pool_threads
        };
        exec.pool = Some(Pool::start(n, general, share_idle)?);
        for i in 0..exec.cores.len() {
            let c = exec.cores[i].config.clone();
            if c.dispatch != Dispatch::Cooperative {
                continue;
            }
            let d = Dispatcher::new(c.scheduler);
            let inbox = Arc::clone(&d.inbox);
            let signal = Arc::clone(&d.signal);
            let ctx = Arc::clone(&exec.ctx);
            let thread = ThreadBuilder::new(format!("rtpm-coop-{}", c.cpu))
                .policy(Policy::Fifo {
                    priority: c.priority_band.1,
                })
                .affinity(CpuSet::single(c.cpu))
                .stack_size(exec.config.stack_size)
                .prefault_stack(exec.config.prefault_stack)
                .spawn(move || {
                    let _rt = RtWork::this_thread();
                    sys::cputime::set_min_timer_slack();
                    run_dispatcher(d, &ctx.stop, ctx.stop_policy, &ctx.link);
                })?;
            RtWork::mark(thread.tid());
            exec.cores[i].cooperative = Some(Cooperative {
                inbox,
                signal,
                thread: Some(thread),
                used: vec![false; MAX_TASKS_PER_CORE],
            });
        }
        Ok(exec)
    }

    /// The RT CPUs, in RT-core index order (the index admission's `core` refers to).
    pub fn rt_cpus(&self) -> Vec<usize> {
        self.cores.iter().map(|c| c.config.cpu).collect()
    }

    /// The instant periodic releases are aligned to: a periodic task's releases are
    /// `epoch + offset + k·period` (from the first that comes after its runner starts).
    pub fn epoch(&self) -> Instant {
        self.epoch
    }

    /// The best-effort pool on the general cores.
    pub fn pool(&self) -> Option<&Pool> {
        self.pool.as_ref()
    }

    /// Thread ids of the admitted RT work: task threads (threads model) and dispatchers
    /// (cooperative model).
    pub fn rt_tids(&self) -> Vec<i32> {
        let tasks = self
            .tasks
            .iter()
            .filter_map(|t| t.thread.as_ref().map(RtThread::tid));
        let dispatchers = self.cores.iter().filter_map(|c| {
            c.cooperative
                .as_ref()
                .and_then(|k| k.thread.as_ref().map(RtThread::tid))
        });
        tasks.chain(dispatchers).collect()
    }

    /// The admitted tasks' ids, in spawn order.
    pub fn task_ids(&self) -> Vec<TaskId> {
        self.tasks.iter().map(|t| t.shared.id).collect()
    }

    /// The SCHED_FIFO priority task `id` runs at (threads model), as last mapped from
    /// admission's ranks.
    pub fn fifo_priority(&self, id: TaskId) -> Option<u8> {
        self.tasks.iter().find(|t| t.shared.id == id)?.fifo
    }

    /// Spawns a periodic task: admission first (a refusal changes nothing), then its
    /// thread or its place on the core's dispatcher. Releases are aligned to the
    /// executor's start plus the task's offset, so tasks keep their relative phases; the
    /// first is the first aligned release after the runner has taken the task.
    pub fn spawn_periodic<F>(
        &mut self,
        spec: TaskSpec,
        options: TaskOptions,
        body: F,
    ) -> Result<TaskId>
    where
        F: FnMut(&Job) + Send + 'static,
    {
        if spec.kind != TaskKind::Periodic {
            return Err(Error::Invalid(format!(
                "task `{}` is sporadic; spawn it with `spawn_sporadic`, which returns its activator",
                spec.name
            )));
        }
        let adm = self.admit(spec, options)?;
        let task = Box::new(Periodic::new(Arc::clone(&adm.shared), self.epoch, body));
        let id = adm.shared.id;
        self.launch(adm, task)?;
        Ok(id)
    }

    /// Spawns a sporadic task whose activations carry a `P`, and returns its activator.
    pub fn spawn_sporadic<P, F>(
        &mut self,
        spec: TaskSpec,
        options: TaskOptions,
        body: F,
    ) -> Result<(TaskId, Activator<P>)>
    where
        P: Copy + Send + 'static,
        F: FnMut(&Job, P) + Send + 'static,
    {
        if spec.kind != TaskKind::Sporadic {
            return Err(Error::Invalid(format!(
                "task `{}` is periodic; spawn it with `spawn_periodic`",
                spec.name
            )));
        }
        if options.queue_capacity == 0 {
            return Err(Error::Invalid(format!(
                "task `{}`: the activation queue capacity is 0; give it at least 1",
                spec.name
            )));
        }
        let adm = self.admit(spec, options)?;
        let core_signal = self.cores[adm.shared.core]
            .cooperative
            .as_ref()
            .map(|k| Arc::clone(&k.signal));
        let route = WakeRoute {
            task: Arc::clone(&adm.shared.wake),
            core: core_signal.zip(adm.slot.map(|s| s as u32)),
        };
        let queue = Arc::new(ActivationQueue {
            queue: crate::mpmc::Queue::new(options.queue_capacity),
            drop: options.drop,
            stats: Arc::clone(&adm.shared.stats),
            route,
        });
        let activator = Activator {
            inner: Arc::clone(&queue),
        };
        let task = Box::new(Sporadic::new(Arc::clone(&adm.shared), queue, body));
        let id = adm.shared.id;
        self.launch(adm, task)?;
        Ok((id, activator))
    }

    /// Runs admission and reserves the task's place; on any refusal nothing changed.
    fn admit(&mut self, spec: TaskSpec, options: TaskOptions) -> Result<Admitted> {
        if self.stopped {
            return Err(Error::Invalid("the executor has stopped".into()));
        }
        if self.tasks.len() >= MAX_TASKS {
            return Err(Error::Invalid(format!(
                "task `{}`: the executor already holds {MAX_TASKS} tasks, its limit",
                spec.name
            )));
        }
        if self.tasks.iter().any(|t| t.shared.spec.name == spec.name) {
            return Err(Error::Invalid(format!(
                "task `{}`: a task of that name is already running; names must be unique",
                spec.name
            )));
        }
        let placement = self
            .ctx
            .gate()
            .try_admit(spec.clone())
            .map_err(|r| Error::Refused(Box::new(r)))?;
        let core_index = placement.core;
        let refuse = |exec: &mut Executor, why: String| {
            exec.ctx.release_capacity(placement.id);
            Err(Error::Invalid(why))
        };
        let Some(core) = self.cores.get(core_index) else {
            return refuse(
                self,
                format!(
                    "admission placed task `{}` on RT core {core_index}, which does not exist",
                    spec.name
                ),
            );
        };
        let cpu = core.config.cpu;
        let mut slot = None;
        if let Some(k) = &core.cooperative {
            match k.used.iter().position(|u| !u) {
                Some(s) => slot = Some(s),
                None => {
                    return refuse(
                        self,
                        format!(
                            "task `{}`: cooperative core {cpu} already holds {MAX_TASKS_PER_CORE} tasks, its fixed capacity",
                            spec.name
                        ),
                    );
                }
            }
        }
        if core.cooperative.is_none() && self.priorities(core_index).is_none() {
            let band = core.config.priority_band;
            return refuse(
                self,
                format!(
                    "task `{}`: CPU {cpu}'s priority band {}..={} has no room for another SCHED_FIFO priority; widen `priority_band` in its core file",
                    spec.name, band.0, band.1
                ),
            );
        }
        if let (Some(k), Some(s)) = (self.cores[core_index].cooperative.as_mut(), slot) {
            k.used[s] = true;
        }
        let shared = Arc::new(TaskShared {
            id: placement.id,
            spec,
            options,
            cpu,
            core: core_index,
            stats: Arc::new(TaskStats::new()),
            wake: Arc::new(WakeWord::new()),
            rank: AtomicU32::new(placement.rank.unwrap_or(0)),
            removal: AtomicU8::new(LIVE),
        });
        Ok(Admitted { shared, slot })
    }

    /// The SCHED_FIFO priority of every task admission holds on `core` (threads model),
    /// or `None` if the band is too narrow.
    fn priorities(&self, core: usize) -> Option<Vec<(TaskId, u8)>> {
        let c = self.cores.get(core)?;
        let band = c.config.priority_band;
        let ranks = self.ctx.gate().ranks(core);
        if c.edf_threads == Some(EdfThreads::Deadline) {
            return Some(Vec::new());
        }
        // Fixed priority, and the EDF fallback (analysed as deadline-monotonic), follow
        // admission's ranks.
        ranks
            .iter()
            .map(|(id, rank)| Some((*id, fifo_priority(band, rank.unwrap_or(1))?)))
            .collect()
    }

    /// Starts an admitted task; on failure gives its place back.
    fn launch(&mut self, adm: Admitted, task: Box<dyn Runnable>) -> Result<()> {
        let shared = Arc::clone(&adm.shared);
        let core = shared.core;
        let result = match self.cores[core].cooperative.as_ref() {
            Some(k) => match (adm.slot, k.inbox.push((adm.slot.unwrap_or(0), task))) {
                (Some(_), Ok(())) => {
                    k.signal.word.wake();
                    Ok((None, None))
                }
                _ => Err(Error::Invalid(format!(
                    "task `{}`: cooperative core {} did not take the task",
                    shared.spec.name, shared.cpu
                ))),
            },
            None => self.spawn_thread(&shared, task),
        };
        match result {
            Ok((thread, fifo)) => {
                self.tasks.push(TaskEntry {
                    shared,
                    thread,
                    fifo,
                    slot: adm.slot,
                });
                self.rerank(core);
                Ok(())
            }
            Err(e) => {
                self.ctx.release_capacity(shared.id);
                if let (Some(k), Some(s)) = (self.cores[core].cooperative.as_mut(), adm.slot) {
                    k.used[s] = false;
                }
                Err(e)
            }
        }
    }

    fn spawn_thread(
        &mut self,
        shared: &Arc<TaskShared>,
        task: Box<dyn Runnable>,
    ) -> Result<(Option<RtThread<()>>, Option<u8>)> {
        let c = &self.cores[shared.core];
        let spec = &shared.spec;
        let (policy, fifo) = match c.edf_threads {
            Some(EdfThreads::Deadline) => {
                // a burst's jobs share one budget per period
                let runtime = Nanos(
                    spec.wcet
                        .saturating_add(self.config.job_overhead)
                        .get()
                        .saturating_mul(u64::from(spec.burst.max(1))),
                )
                .min(spec.deadline);
                (
                    Policy::Deadline {
                        runtime,
                        deadline: spec.deadline,
                        period: spec.period,
                        flags: DeadlineFlags {
                            overrun_signal: true,
                            ..DeadlineFlags::default()
                        },
                    },
                    None,
                )
            }
            _ => {
                let prio = self
                    .priorities(shared.core)
                    .and_then(|m| m.into_iter().find(|(id, _)| *id == shared.id))
                    .map(|(_, p)| p)
                    .ok_or_else(|| {
                        Error::Invalid(format!(
                            "task `{}`: no SCHED_FIFO priority left in CPU {}'s band",
                            spec.name, shared.cpu
                        ))
                    })?;
                (Policy::Fifo { priority: prio }, Some(prio))
            }
        };
        let ctx = Arc::clone(&self.ctx);
        let thread = ThreadBuilder::new(format!("rt-{}", spec.name))
            .policy(policy)
            .affinity(CpuSet::single(shared.cpu))
            .shielded(c.edf_threads == Some(EdfThreads::Deadline))
            .stack_size(self.config.stack_size)
            .prefault_stack(self.config.prefault_stack)
            .spawn(move || {
                let _rt = RtWork::this_thread();
                sys::cputime::set_min_timer_slack();
                run_loop(task, &ctx, Timing::ThreadCpu);
            })?;
        RtWork::mark(thread.tid());
        Ok((Some(thread), fifo))
    }

    /// Re-reads admission's ranks for `core`: updates every task's rank, and re-maps the
    /// SCHED_FIFO priorities of running threads that changed.
    fn rerank(&mut self, core: usize) {
        let ranks = self.ctx.gate().ranks(core);
        for (id, rank) in &ranks {
            if let Some(t) = self.tasks.iter().find(|t| t.shared.id == *id) {
                t.shared.set_rank(rank.unwrap_or(0));
            }
        }
        if self.cores[core].cooperative.is_some() {
            return;
        }
        let Some(map) = self.priorities(core) else {
            return;
        };
        for (id, prio) in map {
            let Some(t) = self.tasks.iter_mut().find(|t| t.shared.id == id) else {
                continue;
            };
            if t.fifo == Some(prio) || t.shared.stats.demoted() {
                continue;
            }
            if let Some(th) = &t.thread {
                let attr = sys::sched::SchedAttr {
                    policy: sys::sched::SCHED_FIFO,
                    priority: u32::from(prio),
                    ..sys::sched::SchedAttr::default()
                };
                match sys::sched::setattr(th.tid(), &attr) {
                    Ok(()) => t.fifo = Some(prio),
                    Err(e) => self.ctx.record(ExecEvent::Warning {
                        message: format!(
                            "task `{}`: re-mapping its SCHED_FIFO priority to {prio} failed: {e}",
                            t.shared.spec.name
                        ),
                    }),
                }
            }
        }
    }

    /// Removes task `id` while everything else runs on: its runner lets go of it before
    /// its next job (a job in flight finishes), its queued activations are cancelled, its
    /// thread (threads model, or its best-effort thread after a demotion) is joined or its
    /// dispatcher slot freed, and only then does admission get its capacity back, so a
    /// task admitted afterwards never shares the core with a job of the removed one.
    /// Returns the task's final accounting.
    ///
    /// It can take up to one period of the task to return: a thread sleeping until its
    /// next periodic release (and a cooperative core with only periodic tasks) notices the
    /// removal when it wakes. Removal does not wait past `2·period + deadline + 1 s`;
    /// beyond that it reports an error and the task stays listed (asked to stop, holding
    /// its capacity), which [`Executor::stop`] cleans up.
    pub fn remove(&mut self, id: TaskId) -> Result<TaskReport> {
        let i = self
            .tasks
            .iter()
            .position(|t| t.shared.id == id)
            .ok_or_else(|| Error::Invalid(format!("no task {id} in this executor")))?;
        let shared = Arc::clone(&self.tasks[i].shared);
        shared.request_removal();
        shared.wake.wake();
        let core = shared.core;
        if let (Some(k), Some(slot)) = (self.cores[core].cooperative.as_ref(), self.tasks[i].slot) {
            k.signal.notify(slot as u32);
        }
        if let Some(th) = self.tasks[i].thread.take() {
            let _ = th.join();
        }
        let spec = &shared.spec;
        let limit = MonotonicClock.now().add(
            spec.period
                .saturating_add(spec.period)
                .saturating_add(spec.deadline)
                .saturating_add(Nanos::secs(1)),
        );
        // A demoted task's hand-over may be on its way to the supervisor, which marks it
        // retired when it sees the removal; its best-effort thread marks it on exit.
        while !shared.retired() {
            if MonotonicClock.now() > limit {
                return Err(Error::Invalid(format!(
                    "task `{}` did not let go of its core within 2·period + deadline + 1 s; it is asked to stop and keeps its capacity until the executor stops",
                    spec.name
                )));
            }
            self.ctx.link.wake.wake();
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
        if let Some(th) = self.ctx.take_demoted_thread(id) {
            let _ = th.join();
        }
        self.ctx.release_capacity(id);
        let entry = self.tasks.remove(i);
        if let (Some(k), Some(s)) = (self.cores[core].cooperative.as_mut(), entry.slot)
            && let Some(u) = k.used.get_mut(s)
        {
            *u = false;
        }
        self.rerank(core);
        entry
            .shared
            .stats
            .snapshot(id, &entry.shared.spec.name, entry.shared.cpu)
    }

    /// A snapshot of task `id`'s accounting.
    pub fn stats(&self, id: TaskId) -> Result<TaskReport> {
        let t = self
            .tasks
            .iter()
            .find(|t| t.shared.id == id)
            .ok_or_else(|| Error::Invalid(format!("no task {id} in this executor")))?;
        t.shared
            .stats
            .snapshot(id, &t.shared.spec.name, t.shared.cpu)
    }

    /// Snapshots of every task, in spawn order.
    pub fn report(&self) -> Result<Vec<TaskReport>> {
        self.tasks
            .iter()
            .map(|t| {
                t.shared
                    .stats
                    .snapshot(t.shared.id, &t.shared.spec.name, t.shared.cpu)
            })
            .collect()
    }

    /// The events so far (demotions, warnings).
    pub fn events(&self) -> Vec<ExecEvent> {
        self.ctx.events()
    }

    /// Stops: jobs in flight finish, queued activations are cancelled (or drained, per
    /// [`ExecConfig::stop`](super::ExecConfig)), every thread is joined, admission gets
    /// every place back, the process's threads get their affinity back, and the
    /// statistics are returned.
    pub fn stop(mut self) -> Result<ExecReport> {
        self.shutdown();
        Ok(ExecReport {
            tasks: self.report()?,
            events: self.ctx.events(),
            elapsed: MonotonicClock.now().since(self.started),
        })
    }

    fn wake_all(&self) {
        for t in &self.tasks {
            t.shared.wake.wake();
        }
        for c in &self.cores {
            if let Some(k) = &c.cooperative {
                k.signal.word.wake();
            }
        }
    }

    fn shutdown(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        self.ctx.stop.store(true, Ordering::Release);
        self.wake_all();
        for t in &mut self.tasks {
            if let Some(th) = t.thread.take() {
                let _ = th.join();
            }
        }
        for c in &mut self.cores {
            if let Some(th) = c.cooperative.as_mut().and_then(|k| k.thread.take()) {
                let _ = th.join();
            }
        }
        self.ctx.supervisor_stop.store(true, Ordering::Release);
        self.ctx.link.wake.wake();
        if let Some(s) = self.supervisor.take() {
            let _ = s.join();
        }
        super::supervisor::take_over(&self.ctx);
        self.wake_all();
        for th in self.ctx.take_demoted_threads() {
            let _ = th.join();
        }
        for t in &self.tasks {
            self.ctx.release_capacity(t.shared.id);
        }
        for t in &mut self.tasks {
            t.slot = None;
        }
        if let Some(mut p) = self.pool.take() {
            p.stop();
        }
        affinity::restore(&self.restore);
    }
}

impl Drop for Executor {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Decides how an EDF core of the threads model runs: SCHED_DEADLINE needs the core to
/// be its own root domain (the shield); otherwise the explained refusal, unless the core
/// file allows the SCHED_FIFO fallback.
fn edf_mode(c: &CoreConfig, warnings: &mut Vec<String>) -> Result<EdfThreads> {
    let file = c
        .file
        .as_ref()
        .map_or("the embedded default".to_string(), |f| {
            f.display().to_string()
        });
    let shield = crate::shield::status().ok();
    let active = shield.as_ref().is_some_and(|s| s.active);
    let covers = shield
        .as_ref()
        .and_then(|s| s.rt_cpus.as_deref())
        .and_then(|l| l.parse::<CpuSet>().ok())
        .is_some_and(|set| set.contains(c.cpu));
    if c.shield && active && covers {
        return Ok(EdfThreads::Deadline);
    }
    let why = if !c.shield {
        format!(
            "CPU {} does not ask for the shield (`shield = false` in {file})",
            c.cpu
        )
    } else if !active {
        "no shield is active (run `rtpm shield` as root first)".to_string()
    } else {
        format!("the active shield does not cover CPU {}", c.cpu)
    };
    match c.fallback {
        Some(Fallback::Fifo) => {
            warnings.push(format!(
                "CPU {}: EDF in the threads model runs under SCHED_FIFO in deadline-monotonic order, not SCHED_DEADLINE, because {why}; this is the `fallback = \"fifo\"` of {file}",
                c.cpu
            ));
            Ok(EdfThreads::FifoFallback)
        }
        None => Err(Error::Invalid(format!(
            "CPU {}: scheduler = \"edf\" with dispatch = \"threads\" runs each task under SCHED_DEADLINE, \
             which needs the RT core to be a root domain of its own, and {why}. \
             Set `shield = true` in {file} and run `rtpm shield`, or set `fallback = \"fifo\"` to run \
             the tasks under SCHED_FIFO in deadline-monotonic order, or use dispatch = \"cooperative\"",
            c.cpu
        ))),
    }
}
