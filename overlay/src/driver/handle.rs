//! `Driver`: starting an overlay (admission, then sockets, then the join), the
//! application's handle on it, and the announced leave.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use rtpm_rt::config::Partition;
use rtpm_rt::exec::{TaskId, TaskOptions, in_rt_job};
use rtpm_rt::time::{Clock, MonotonicClock, Nanos};

use super::command::{Answer, Command, LookupSlot};
use super::config::OverlayConfig;
use super::engine::{Engine, holding};
use super::host::TaskHost;
use super::saps::Links;
use super::shared::Shared;
use super::status::{Place, SapStatus, Status};
use super::tasks::{self, Work};
use super::{Sink, sap_key};
use crate::error::Error;
use crate::proto::messaging::ClassPolicy;
use crate::proto::security::OverlayKey;
use crate::proto::{Instant, Member, Node, PeerId, Role};

/// What [`Driver::start`] needs besides the host and the sink.
#[derive(Clone, Debug)]
pub struct DriverOptions {
    /// The overlay's section of `node.toml`.
    pub config: OverlayConfig,
    /// The config folder (relative key paths resolve against it).
    pub dir: Option<PathBuf>,
    /// This node's id (the kernel's node id).
    pub me: PeerId,
    /// The node's partition: reactors go to its general cores.
    pub partition: Option<Partition>,
    /// The key, if already read (otherwise the key file is read).
    pub key: Option<OverlayKey>,
    /// Must grow at every restart of this node; by default the seconds since 2024-01-01
    /// (the protocol uses its low 24 bits, so it wraps every 194 days).
    pub incarnation: Option<u32>,
}

impl DriverOptions {
    /// Options for `config` as node `me`, everything else by default.
    pub fn new(config: OverlayConfig, me: PeerId) -> DriverOptions {
        DriverOptions {
            config,
            dir: None,
            me,
            partition: None,
            key: None,
            incarnation: None,
        }
    }
}

/// What [`Driver::stop`] releases.
struct Running {
    links: Arc<Links>,
    clock: Option<JoinHandle<()>>,
}

/// A running overlay: see the [module documentation](super).
pub struct Driver {
    shared: Arc<Shared>,
    config: OverlayConfig,
    classes: Vec<ClassPolicy>,
    max_message: usize,
    tasks: Vec<(TaskId, String)>,
    running: Mutex<Option<Running>>,
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver")
            .field("overlay", &self.shared.name)
            .field("me", &self.shared.me)
            .field("role", &self.shared.role())
            .finish()
    }
}

fn incarnation_now() -> u32 {
    // 2024-01-01T00:00:00Z
    const EPOCH: u64 = 1_704_067_200;
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    ((secs.saturating_sub(EPOCH) & 0xff_ffff) as u32).max(1)
}

fn now() -> Instant {
    Instant(MonotonicClock.now().as_nanos())
}

impl Driver {
    /// Starts the overlay: validates `opts.config` and reads its key, admits every task
    /// of the overlay on `host` (a refusal names the task, and nothing is bound), binds
    /// the SAPs (a failure releases what was admitted and bound), then joins by multicast
    /// advertisement (and the seeds). Messages go to `sink`.
    pub fn start<H: TaskHost>(
        opts: DriverOptions,
        host: &mut H,
        sink: Arc<dyn Sink>,
    ) -> Result<Driver, Error> {
        let cfg = opts.config;
        cfg.validate()?;
        let key = match opts.key {
            Some(k) => k,
            None => cfg.load_key(opts.dir.as_deref())?,
        };
        let incarnation = opts.incarnation.unwrap_or_else(incarnation_now);
        let control = cfg
            .control()
            .map(|c| c.address)
            .ok_or_else(|| Error::OverlayConfig {
                overlay: cfg.name.clone(),
                key: "sap".into(),
                message: "has no class 0 SAP".into(),
            })?;
        // the task set does not depend on the bound address: admit before binding
        let provisional = cfg.protocol(opts.me, control, key.clone(), incarnation)?;
        let mut classes: Vec<u8> = cfg.saps.iter().map(|s| s.class).collect();
        classes.sort_unstable();
        let planned = tasks::plan(&cfg, &provisional, &classes);
        let works: Vec<Work> = planned.iter().map(|p| p.work).collect();
        let batches: Vec<usize> = planned.iter().map(|p| p.batch).collect();
        let command_task = works.iter().position(|w| *w == Work::Commands).unwrap_or(0);
        let timer_task = works.iter().position(|w| *w == Work::Timers).unwrap_or(0);
        let releases: Vec<(usize, u64)> = planned
            .iter()
            .enumerate()
            .filter_map(|(i, p)| p.released_by_heartbeat.map(|t| (i, t.get())))
            .collect();
        let shared = Arc::new(Shared::new(
            cfg.name.clone(),
            Member {
                id: opts.me,
                addr: crate::proto::Addr(control),
            },
            works,
            batches,
            command_task,
            timer_task,
            cfg.commands.queue as usize,
            sink,
            releases,
        ));
        let mut admitted: Vec<(TaskId, String)> = Vec::new();
        let undo = |host: &mut H, admitted: &[(TaskId, String)]| {
            for (id, _) in admitted.iter().rev() {
                host.remove(*id);
            }
        };
        for (i, p) in planned.iter().enumerate() {
            let sh = Arc::clone(&shared);
            let name = p.spec.name.clone();
            let heartbeat = p.work == (Work::Tick { heartbeat: true });
            let r = if p.spec.kind == rtpm_rt::exec::TaskKind::Periodic {
                host.periodic(p.spec.clone(), TaskOptions::default(), move |job| {
                    if heartbeat {
                        sh.release_due(job.release.as_nanos());
                    }
                    sh.serve(i)
                })
                .map(|id| (id, None))
            } else {
                let opts = TaskOptions::default().queue_capacity(2);
                host.sporadic(p.spec.clone(), opts, move |_, ()| sh.serve(i))
                    .map(|(id, a)| (id, Some(a)))
            };
            match r {
                Ok((id, act)) => {
                    if let Some(a) = act {
                        shared.wakes[i].set(a);
                    }
                    admitted.push((id, name));
                }
                Err(e) => {
                    undo(host, &admitted);
                    return Err(Error::Admission {
                        overlay: cfg.name.clone(),
                        task: name,
                        spec: p.describe(),
                        reason: e.to_string(),
                    });
                }
            }
        }
        let (links, consumers) = match Links::bind(&cfg, opts.partition.as_ref()) {
            Ok(l) => l,
            Err(e) => {
                undo(host, &admitted);
                return Err(e);
            }
        };
        let links = Arc::new(links);
        // the node starts outside the group: roots listen, it is not one yet
        let _ = links.listen(false);
        let me = Member {
            id: opts.me,
            addr: crate::proto::Addr(links.control_addr()),
        };
        let started = Self::begin(&cfg, &shared, &links, consumers, me, key, incarnation);
        let classes_cfg = match started {
            Ok(c) => c,
            Err(e) => {
                undo(host, &admitted);
                return Err(e);
            }
        };
        let clock = {
            let (sh, l) = (Arc::clone(&shared), Arc::clone(&links));
            std::thread::Builder::new()
                .name(format!("rtpm-ovl/{}", cfg.name))
                .spawn(move || super::clock::run(sh, l))
        };
        let clock = match clock {
            Ok(c) => c,
            Err(e) => {
                let _ = shared.baton.take();
                undo(host, &admitted);
                return Err(Error::Setup {
                    overlay: cfg.name.clone(),
                    what: "the driver's clock thread".into(),
                    message: format!("{e}: raise the process's thread limit"),
                });
            }
        };
        tracing::info!(
            overlay = %cfg.name,
            me = %super::notice::peer_name(opts.me),
            address = %links.control_addr(),
            group = %cfg.multicast,
            tasks = admitted.len(),
            "overlay started, joining"
        );
        let max_message = crate::proto::messaging::MessagingConfig::default().max_message;
        Ok(Driver {
            shared,
            config: cfg,
            classes: classes_cfg,
            max_message,
            tasks: admitted,
            running: Mutex::new(Some(Running {
                links,
                clock: Some(clock),
            })),
        })
    }

    /// Builds the node at its bound address, joins, and hands it to the baton.
    fn begin(
        cfg: &OverlayConfig,
        shared: &Arc<Shared>,
        links: &Arc<Links>,
        consumers: super::saps::Consumers,
        me: Member,
        key: OverlayKey,
        incarnation: u32,
    ) -> Result<Vec<ClassPolicy>, Error> {
        let pcfg = cfg.protocol(me.id, me.addr.0, key, incarnation)?;
        let classes = pcfg.classes.clone();
        let mut node = Node::new(pcfg)?;
        let t = now();
        node.join(t)?;
        if cfg.publish_saps {
            for c in &classes {
                node.publish(sap_key(me.id, c.class), c.class, t)?;
            }
        }
        // the class SAPs' and the group's arrivals wake their receive tasks
        for (k, c) in consumers.classes.iter().enumerate() {
            let task = shared.works.iter().position(|w| *w == Work::Rx(k));
            if let Some(i) = task {
                let w = Arc::clone(&shared.wakes[i]);
                let _ = c.set_wake(Box::new(move || w.wake()));
            }
        }
        if let Some(i) = shared.works.iter().position(|w| *w == Work::Rx(0)) {
            let w = Arc::clone(&shared.wakes[i]);
            let _ = consumers.group.set_wake(Box::new(move || w.wake()));
        }
        let mut engine = Box::new(Engine::new(node, Arc::clone(links), consumers));
        // outside a turn: every datagram queues for the reactors
        engine.transmit(shared);
        shared.set_role(engine.node.role());
        shared.set_deadline(
            engine
                .node
                .poll_timeout()
                .filter(|t| *t != engine.node.next_tick()),
        );
        if shared.baton.put(engine).is_err() {
            return Err(Error::Setup {
                overlay: cfg.name.clone(),
                what: "the node".into(),
                message: "was already running (internal error)".into(),
            });
        }
        Ok(classes)
    }

    /// The overlay's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Its configuration.
    pub fn config(&self) -> &OverlayConfig {
        &self.config
    }

    /// This peer: its id and control address.
    pub fn me(&self) -> Member {
        let addr = self
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map_or(self.shared.me.addr, |r| {
                crate::proto::Addr(r.links.control_addr())
            });
        Member {
            id: self.shared.me.id,
            addr,
        }
    }

    /// What the node is now.
    pub fn role(&self) -> Role {
        self.shared.role()
    }

    /// The overlay's QoS classes.
    pub fn classes(&self) -> &[ClassPolicy] {
        &self.classes
    }

    /// The tasks the overlay runs: (admission id, name).
    pub fn tasks(&self) -> &[(TaskId, String)] {
        &self.tasks
    }

    /// Waits up to `timeout` until the node is a peer or a super-peer.
    pub fn wait_joined(&self, timeout: Nanos) -> bool {
        let until = std::time::Instant::now() + timeout.to_duration();
        loop {
            if matches!(self.role(), Role::Peer | Role::SuperPeer) {
                return true;
            }
            if std::time::Instant::now() >= until {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn stopped(&self) -> Error {
        Error::Stopped {
            overlay: self.shared.name.clone(),
        }
    }

    fn push(&self, c: Command) -> Result<(), Error> {
        if self.shared.stopping.load(Ordering::Acquire) {
            return Err(self.stopped());
        }
        match self.shared.commands.push(c) {
            Ok(()) => {
                if holding() {
                    // the holder's turn carries it out
                } else if in_rt_job() {
                    // an admitted job carries its command out itself (no hand-off to the
                    // command task, a wake-up on the critical path); if another job holds
                    // the node, that holder does before it lets go
                    self.shared.serve_inline(self.shared.command_task);
                } else {
                    self.shared.wake(self.shared.command_task);
                }
                Ok(())
            }
            Err(back) => {
                if let Command::Send { buf, .. } = back {
                    self.shared.commands.recycle(buf);
                }
                self.shared.counters.count_command_refused();
                Err(Error::Full {
                    what: "the overlay's command queue",
                    cap: self.shared.commands.capacity(),
                })
            }
        }
    }

    /// Sends the concatenation of `parts` to `to` on QoS class `class`: queued for the
    /// job holding the node, never blocking (from inside the [`Sink`] the reply leaves in
    /// the same turn). Called from inside an admitted job on an RT core
    /// ([`in_rt_job`](rtpm_rt::exec::in_rt_job)), the job carries the send out itself — or,
    /// when another job holds the node, leaves it to that holder — with no hand-off to the
    /// command task, so that job's budget should cover one overlay turn (about
    /// [`PER_DATAGRAM_NS`](crate::proto::tasks::PER_DATAGRAM_NS) per datagram sent).
    /// Refused at once for an unknown class, an oversized message, a node that has not
    /// joined, or a full command queue; refusals by the protocol later (a full stream)
    /// are counted in [`DriverCounters::commands_failed`](super::DriverCounters).
    pub fn send(&self, to: PeerId, class: u8, parts: &[&[u8]]) -> Result<(), Error> {
        if !self.classes.iter().any(|c| c.class == class) {
            return Err(Error::Command {
                what: "send",
                why: "unknown QoS class: this overlay has no SAP for it",
            });
        }
        let len: usize = parts.iter().map(|p| p.len()).sum();
        if len > self.max_message {
            return Err(Error::Oversize {
                len,
                max: self.max_message,
            });
        }
        if !matches!(self.role(), Role::Peer | Role::SuperPeer) {
            return Err(Error::Command {
                what: "send",
                why: "not joined yet (or left): wait for the node to join",
            });
        }
        let buf = self.shared.commands.buffer(parts);
        self.push(Command::Send { to, class, buf })
    }

    /// Publishes `key` as served by this node on `class` (leased and refreshed by the
    /// protocol, re-published after every rebind).
    pub fn publish(&self, key: u128, class: u8) -> Result<(), Error> {
        if !self.classes.iter().any(|c| c.class == class) {
            return Err(Error::Command {
                what: "publish",
                why: "unknown QoS class: this overlay has no SAP for it",
            });
        }
        self.push(Command::Publish { key, class })
    }

    /// Withdraws `key`.
    pub fn unpublish(&self, key: u128) -> Result<(), Error> {
        self.push(Command::Unpublish { key })
    }

    /// Looks `key` up (own cell, then up the tree), waiting at most `timeout`. `Ok` with
    /// the owner, [`Answer::NotFound`] for a definite "not found"; an error when no answer
    /// came in time.
    pub fn lookup(&self, key: u128, timeout: Nanos) -> Result<Answer, Error> {
        let slot = LookupSlot::new();
        self.push(Command::Lookup {
            key,
            slot: Arc::clone(&slot),
        })?;
        let start = std::time::Instant::now();
        let until = start + timeout.to_duration();
        loop {
            if let Some(a) = slot.answer() {
                return match a {
                    Answer::TimedOut => Err(Error::LookupTimeout {
                        overlay: self.shared.name.clone(),
                        key,
                        waited_ms: start.elapsed().as_millis() as u64,
                    }),
                    Answer::Refused => Err(Error::Command {
                        what: "lookup",
                        why: "not joined yet (or left): wait for the node to join",
                    }),
                    a => Ok(a),
                };
            }
            let now = std::time::Instant::now();
            if now >= until {
                return Err(Error::LookupTimeout {
                    overlay: self.shared.name.clone(),
                    key,
                    waited_ms: start.elapsed().as_millis() as u64,
                });
            }
            std::thread::park_timeout(until - now);
        }
    }

    /// The node's place in the overlay, as last published.
    pub fn place(&self) -> Place {
        self.shared
            .place
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Everything about the running overlay: place, SAPs, counters, tasks.
    pub fn status(&self) -> Status {
        let mut saps = Vec::new();
        let mut group = std::net::SocketAddr::V4(self.config.multicast);
        if let Some(r) = self
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
        {
            for (i, c) in r.links.classes.iter().enumerate() {
                let (stats, queue) = r.links.stats(i).unwrap_or_default();
                saps.push(SapStatus {
                    class: c.entry.class,
                    name: format!("c{}", c.entry.class),
                    address: c.addr,
                    reliability: c.entry.reliability,
                    priority: c.entry.priority,
                    queue_depth: c.entry.queue_depth,
                    backend: c.sap.backend(),
                    stats,
                    queue,
                });
            }
            let g = &r.links.group_sap;
            group = std::net::SocketAddr::V4(r.links.group);
            if let Some(c0) = r.links.classes.first() {
                saps.push(SapStatus {
                    class: 0,
                    name: "group".into(),
                    address: group,
                    reliability: c0.entry.reliability,
                    priority: c0.entry.priority,
                    queue_depth: c0.entry.queue_depth,
                    backend: g.backend(),
                    stats: g.stats(),
                    queue: g.dest_stats(0).unwrap_or_default(),
                });
            }
        }
        let (handed, turns) = self.shared.baton.counts();
        Status {
            overlay: self.shared.name.clone(),
            me: self.me(),
            place: self.place(),
            saps,
            group,
            counters: self.shared.counters.snapshot(handed, turns),
            tasks: self
                .tasks
                .iter()
                .map(|(id, n)| (id.get(), n.clone()))
                .collect(),
        }
    }

    /// Leaves the overlay, announced (a peer unbinds, a super-peer tells its cell and its
    /// peers), waits up to `timeout` for the protocol to do so and for the sockets to
    /// hand the last datagrams to the kernel, then stops. The host removes the tasks.
    pub fn leave(&self, timeout: Nanos) -> Result<(), Error> {
        if self.shared.stopping.load(Ordering::Acquire) {
            return Err(self.stopped());
        }
        let until = std::time::Instant::now() + timeout.to_duration();
        let joined = matches!(self.role(), Role::Peer | Role::SuperPeer | Role::Joining);
        if joined {
            while self.push(Command::Leave).is_err() {
                if std::time::Instant::now() >= until {
                    break;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            while !self.shared.has_left() && std::time::Instant::now() < until {
                std::thread::sleep(Duration::from_micros(200));
            }
            self.drain_sends(until);
        }
        self.stop();
        Ok(())
    }

    /// Waits (until `until`) for the SAPs to stop sending: the announced leave's
    /// datagrams are with the kernel before the sockets close.
    fn drain_sends(&self, until: std::time::Instant) {
        let guard = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(r) = guard.as_ref() else { return };
        let sent = |r: &Running| -> u64 {
            r.links
                .classes
                .iter()
                .map(|c| {
                    let s = c.sap.stats();
                    s.sent + s.send_errors
                })
                .sum()
        };
        let mut last = sent(r);
        let mut quiet = 0;
        while std::time::Instant::now() < until && quiet < 5 {
            std::thread::sleep(Duration::from_millis(1));
            let now = sent(r);
            if now == last {
                quiet += 1;
            } else {
                quiet = 0;
                last = now;
            }
        }
    }

    /// Stops without leaving (the others will detect the silence): the clock stops, the
    /// node is taken from the baton and dropped, the sockets close. Idempotent.
    pub fn stop(&self) {
        self.shared.stopping.store(true, Ordering::Release);
        let running = self
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let Some(mut r) = running else { return };
        self.shared.unpark_clock();
        if let Some(c) = r.clock.take() {
            let _ = c.join();
        }
        // wait for the job holding the node, if any, to finish its turn
        let until = std::time::Instant::now() + Duration::from_secs(2);
        loop {
            if let Some(engine) = self.shared.baton.take() {
                drop(engine);
                break;
            }
            if std::time::Instant::now() >= until {
                tracing::warn!(overlay = %self.shared.name, "a job kept the node for 2 s at stop");
                break;
            }
            std::thread::sleep(Duration::from_micros(100));
        }
        drop(r);
        self.shared.set_role(Role::Left);
        tracing::info!(overlay = %self.shared.name, "overlay stopped");
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        self.stop();
    }
}
