//! Service access points: one socket (or a sharded set), one QoS class, its reactors and
//! their pools.
//!
//! [`Sap::bind`] validates the config, resolves placement and policy, creates the
//! sockets with the class's options, picks the backend, and starts the pools. Nothing is
//! half-applied: any failure before the pools run drops everything created so far.
//!
//! **Layouts.** `sharded` (the default) gives each pool thread its own SO_REUSEPORT
//! socket and reactor, so every thread is always its source's leader and its replies ride
//! in its own batched submissions. `shared` is the classic leader/followers pool: one
//! socket, one event source, `threads` threads taking turns as leader. A multicast SAP is
//! always one socket (every SO_REUSEPORT member would receive each group datagram).

use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use rtpm_rt::config::Partition;
use rtpm_rt::cpu::CpuSet;
use rtpm_rt::thread::Policy;

use crate::config::{CoreClass, Cores, Layout, SapConfig, Transport};
use crate::dispatch::{Handler, Router, ToOne};
use crate::error::Error;
use crate::frame;
use crate::handoff::{ConnId, Consumer, DestStats, Destination, Handle, Source};
use crate::pool::{Pool, ThreadPlan};
use crate::reactor::{Backend, BackendKind, Core, CoreSizes, Intent};
use crate::select::{Selection, select};
use crate::stats::SapStats;
use crate::sys::Endpoint;
use crate::sys::epoll::Epoll;
use crate::sys::socket::{self, SockOpts};
use crate::sys::uring::Uring;

/// State shared by a SAP's reactors, pool threads, consumers and senders.
pub(crate) struct Shared {
    /// Shared, so the errors a sender may meet on its hot path (a full send queue) cost
    /// no allocation.
    pub name: Arc<str>,
    pub cores: Box<[Arc<Core>]>,
    pub dests: Box<[Destination]>,
    pub handlers: Box<[Option<Handler>]>,
    pub router: Box<dyn Router>,
    pub stream: bool,
    next_shard: AtomicUsize,
}

impl Shared {
    fn core_of(&self, shard: u16) -> Result<&Core, Error> {
        self.cores
            .get(shard as usize)
            .map(|c| &**c)
            .ok_or(Error::ForeignHandle)
    }

    /// The bytes of a handle.
    pub(crate) fn bytes<'a>(&'a self, h: &'a Handle) -> Result<&'a [u8], Error> {
        self.core_of(h.source.shard())?
            .bufs
            .bytes(&h.lease)
            .ok_or(Error::ForeignHandle)
    }

    /// Gives a handle back to its reactor.
    pub(crate) fn release(&self, h: Handle) -> Result<(), Error> {
        self.core_of(h.source.shard())?
            .release(h.lease)
            .map_err(|_| Error::ForeignHandle)
    }

    fn slot(&self, core: &Core) -> Result<crate::sys::region::Owned, Error> {
        core.send_free.pop().ok_or_else(|| {
            // Finished sends may wait in a parked reactor's completion queue: have it
            // collect them, so a retry finds their slots.
            core.collect_sends();
            Error::SendQueueFull {
                sap: self.name.clone(),
                slots: core.sendbufs.count(),
            }
        })
    }

    /// Queues a datagram on reactor `shard`.
    pub(crate) fn send_to(&self, shard: u16, to: SocketAddr, bytes: &[u8]) -> Result<(), Error> {
        let core = self.datagram_core(shard)?;
        self.queue_datagram(core, to, bytes)?;
        core.wake_leader();
        Ok(())
    }

    /// Queues datagrams on reactor `shard` and wakes its leader once, so it finds them
    /// together (one batch; with GSO, runs of equal size to one peer are one send).
    /// Returns how many were queued: all, or as many as free send slots allowed (at
    /// least one, or the error).
    pub(crate) fn send_many(
        &self,
        shard: u16,
        to: SocketAddr,
        datagrams: &[&[u8]],
    ) -> Result<usize, Error> {
        let core = self.datagram_core(shard)?;
        let mut n = 0;
        for d in datagrams {
            match self.queue_datagram(core, to, d) {
                Ok(()) => n += 1,
                Err(e) if n == 0 => return Err(e),
                Err(_) => break,
            }
        }
        core.wake_leader();
        Ok(n)
    }

    fn datagram_core(&self, shard: u16) -> Result<&Core, Error> {
        if self.stream {
            return Err(Error::Transport {
                sap: self.name.to_string(),
                what: "send_to",
                needs: "UDP",
            });
        }
        self.core_of(shard)
    }

    /// Copies a datagram into a send slot and queues it, without waking the leader.
    fn queue_datagram(&self, core: &Core, to: SocketAddr, bytes: &[u8]) -> Result<(), Error> {
        if bytes.len() > core.max_datagram {
            return Err(Error::TooLarge {
                len: bytes.len(),
                max: core.max_datagram,
            });
        }
        let mut slot = self.slot(core)?;
        core.sendbufs.write(&mut slot)[..bytes.len()].copy_from_slice(bytes);
        core.push_intent_quiet(Intent::SendTo {
            slot,
            len: bytes.len() as u32,
            to,
        })
        .map_err(|_| Error::Internal("intent queue full on send".into()))
    }

    /// Queues a frame on a connection.
    pub(crate) fn send_frame(&self, conn: ConnId, bytes: &[u8]) -> Result<(), Error> {
        let core = self.core_of(conn.shard)?;
        let live = core.conns.get(conn.idx as usize).is_some_and(|c| {
            c.generation.load(Ordering::Acquire) == conn.generation
                && c.open.load(Ordering::Acquire)
        });
        if !live {
            return Err(Error::Closed(conn));
        }
        if bytes.len() > core.max_frame {
            return Err(Error::TooLarge {
                len: bytes.len(),
                max: core.max_frame,
            });
        }
        let mut slot = self.slot(core)?;
        let w = core.sendbufs.write(&mut slot);
        w[..4].copy_from_slice(&frame::prefix(bytes.len()));
        w[4..4 + bytes.len()].copy_from_slice(bytes);
        core.push_stream_intent(
            conn.idx,
            Intent::SendStream {
                slot,
                len: 4 + bytes.len() as u32,
                conn: conn.idx,
                generation: conn.generation,
            },
        )
        .map_err(|_| Error::Internal("intent queue full on send".into()))
    }

    /// Packs as many of `frames` as fit into one send slot and queues it on `conn`;
    /// returns how many were queued (at least one, unless an error is returned).
    pub(crate) fn send_frames(&self, conn: ConnId, frames: &[&[u8]]) -> Result<usize, Error> {
        let core = self.core_of(conn.shard)?;
        let live = core.conns.get(conn.idx as usize).is_some_and(|c| {
            c.generation.load(Ordering::Acquire) == conn.generation
                && c.open.load(Ordering::Acquire)
        });
        if !live {
            return Err(Error::Closed(conn));
        }
        let Some(first) = frames.first() else {
            return Ok(0);
        };
        if first.len() > core.max_frame {
            return Err(Error::TooLarge {
                len: first.len(),
                max: core.max_frame,
            });
        }
        let mut slot = self.slot(core)?;
        let w = core.sendbufs.write(&mut slot);
        let (mut at, mut n) = (0, 0);
        for f in frames {
            if at + 4 + f.len() > w.len() {
                break;
            }
            w[at..at + 4].copy_from_slice(&frame::prefix(f.len()));
            w[at + 4..at + 4 + f.len()].copy_from_slice(f);
            at += 4 + f.len();
            n += 1;
        }
        core.push_stream_intent(
            conn.idx,
            Intent::SendStream {
                slot,
                len: at as u32,
                conn: conn.idx,
                generation: conn.generation,
            },
        )
        .map_err(|_| Error::Internal("intent queue full on send".into()))?;
        Ok(n)
    }

    /// Replies to a message's source.
    pub(crate) fn reply(&self, to: &Source, bytes: &[u8]) -> Result<(), Error> {
        match *to {
            Source::Datagram { from, shard } => self.send_to(shard, from, bytes),
            Source::Stream { conn, .. } => self.send_frame(conn, bytes),
        }
    }
}

/// What a destination is.
enum DestSpec {
    Queue,
    Inline(Handler),
}

/// Builds a SAP with destinations, a router and a placement partition.
pub struct SapBuilder {
    config: SapConfig,
    router: Box<dyn Router>,
    dests: Vec<DestSpec>,
    partition: Option<Partition>,
}

impl SapBuilder {
    /// Adds a queue destination (its [`Consumer`] is taken with [`Sap::consumer`]);
    /// returns its id.
    pub fn queue(mut self) -> Self {
        self.dests.push(DestSpec::Queue);
        self
    }

    /// Adds a destination served by `handler` on the reactor thread.
    pub fn inline(
        mut self,
        handler: impl Fn(&crate::dispatch::Message<'_>, &crate::dispatch::Outbox<'_>)
        + Send
        + Sync
        + 'static,
    ) -> Self {
        self.dests.push(DestSpec::Inline(Box::new(handler)));
        self
    }

    /// Sets the router (default: everything to destination 0).
    pub fn router(mut self, r: impl Router) -> Self {
        self.router = Box::new(r);
        self
    }

    /// The node's partition, for `cores = "rt"` / `"general"` (default: the embedded
    /// default partition of `rtpm_rt::config`).
    pub fn partition(mut self, p: Partition) -> Self {
        self.partition = Some(p);
        self
    }

    /// Binds the SAP and starts its pools.
    pub fn bind(self) -> Result<Sap, Error> {
        Sap::start(self)
    }
}

struct Reactor {
    backend: Arc<dyn Backend>,
    pool: Option<Pool>,
}

/// A service access point (see the module docs).
pub struct Sap {
    shared: Arc<Shared>,
    reactors: Vec<Reactor>,
    selection: Selection,
    local: Option<SocketAddr>,
    udp_fds: Vec<RawFd>,
    opts: SockOpts,
    handled: Arc<[AtomicU64]>,
    warnings: Vec<String>,
}

/// UDP GSO and GRO for one socket, as configured and as far as the kernel offers them:
/// `(largest datagram size sends may coalesce (0: off), GRO on)`. A kernel without them
/// leaves the SAP working one datagram per call, and says so in `warnings`.
fn udp_offloads(cfg: &SapConfig, fd: RawFd, what: &str, warnings: &mut Vec<String>) -> (u32, bool) {
    let gso = if !cfg.udp_gso {
        0
    } else if socket::gso_supported(fd) {
        cfg.max_payload() as u32
    } else {
        warnings.push(format!(
            "UDP GSO is not offered by this kernel on {what} (Linux 4.18+): sending one datagram per call"
        ));
        0
    };
    let gro = cfg.udp_gro
        && match socket::enable_gro(fd) {
            Ok(()) => true,
            Err(e) => {
                warnings.push(format!(
                    "UDP GRO on {what} refused ({e}; Linux 5.0+): receiving one datagram per buffer"
                ));
                false
            }
        };
    (gso, gro)
}

fn placement(cfg: &SapConfig, partition: Option<&Partition>) -> Result<CpuSet, Error> {
    let bad = |reason: String| Error::Config {
        sap: cfg.name.clone(),
        field: "qos.cores",
        reason,
    };
    let allowed =
        CpuSet::allowed().map_err(|e| bad(format!("cannot read the allowed CPUs: {e}")))?;
    let class_set = |class: CoreClass| -> Result<CpuSet, Error> {
        let p = match partition {
            Some(p) => p.clone(),
            None => Partition::embedded_default().map_err(|e| {
                bad(format!(
                    "needs the node partition, and the default failed: {e}"
                ))
            })?,
        };
        let set = match class {
            CoreClass::Any => allowed,
            CoreClass::Rt => p.rt_cores(),
            CoreClass::General => p.general_cores(),
        };
        if set.is_empty() {
            return Err(bad(format!(
                "is \"{class:?}\" but the partition has no such core (allowed: {})",
                allowed.to_list()
            )));
        }
        Ok(set)
    };
    match &cfg.qos.cores {
        Cores::Unset => Ok(allowed),
        Cores::Class(c) => class_set(*c),
        Cores::List(ids) => {
            let set = CpuSet::from_ids(ids.iter().copied());
            if !set.is_subset(&allowed) {
                return Err(bad(format!(
                    "lists CPUs {} but the process may only use {}",
                    set.to_list(),
                    allowed.to_list()
                )));
            }
            Ok(set)
        }
    }
}

impl Sap {
    /// Binds a SAP with one queue destination (id 0) that receives everything.
    pub fn bind(config: SapConfig) -> Result<Sap, Error> {
        Sap::builder(config).queue().bind()
    }

    /// A builder, for destinations, routing and placement.
    pub fn builder(config: SapConfig) -> SapBuilder {
        SapBuilder {
            config,
            router: Box::new(ToOne(0)),
            dests: Vec::new(),
            partition: None,
        }
    }

    fn start(b: SapBuilder) -> Result<Sap, Error> {
        let cfg = &b.config;
        cfg.validate()?;
        if b.dests.is_empty() {
            return Err(Error::Destination {
                sap: cfg.name.clone(),
                dest: 0,
                reason: "is missing: add a queue or inline destination",
            });
        }
        let cpus = placement(cfg, b.partition.as_ref())?;
        let q = &cfg.qos;
        let policy = if q.priority == 0 {
            Policy::Other { nice: 0 }
        } else {
            Policy::Fifo {
                priority: q.priority,
            }
        };
        let multicast = matches!(cfg.transport, Transport::UdpMulticast { .. });
        let sharded = cfg.layout == Layout::Sharded && !multicast;
        let shards = if sharded { q.threads as usize } else { 1 };
        let per_reactor = if sharded { 1 } else { q.threads as usize };
        let stream = matches!(cfg.transport, Transport::Tcp { .. });
        let opts = SockOpts {
            so_priority: q.effective_so_priority(),
            dscp: q.dscp,
            recv_buffer: q.recv_buffer,
            send_buffer: q.send_buffer,
            busy_poll_us: q.socket_busy_poll.map(|n| (n.get() / 1000) as u32),
            reuseport: shards > 1,
        };
        let mut selection = select(cfg.backend)?;
        if selection.kind == BackendKind::IoUring {
            // Ring setup with this SAP's sizes (memlock!) before any socket exists, so
            // `auto` can still fall back cleanly.
            if let Err(why) = Uring::preflight(cfg.ring_entries, cfg.buffers, per_reactor == 1) {
                if cfg.backend == crate::config::BackendChoice::Auto {
                    selection = Selection {
                        kind: BackendKind::Epoll,
                        reason: format!("io_uring ring setup failed: {why}"),
                    };
                } else {
                    return Err(Error::UringUnavailable(why));
                }
            }
        }
        let mut sizes = CoreSizes {
            buffers: cfg.buffers,
            buffer_size: cfg.buffer_size,
            send_slots: cfg.send_slots,
            max_connections: cfg.max_connections,
            reserve: if stream {
                (cfg.buffers as usize / 4)
                    .min(2 * cfg.max_connections as usize)
                    .max(2)
            } else {
                0
            },
            max_frame: cfg.buffer_size as usize - 4,
            max_datagram: cfg.max_payload(),
            gso_max: 0,
            gro: false,
            peer: cfg.peer,
            udp_fd: None,
            single: per_reactor == 1,
        };

        let mut warnings = Vec::new();
        let mut local: Option<SocketAddr> = None;
        let mut udp_fds = Vec::new();
        let mut cores = Vec::with_capacity(shards);
        let mut endpoints = Vec::with_capacity(shards);
        for shard in 0..shards {
            let what = format!("SAP `{}` socket {shard}", cfg.name);
            let endpoint = match &cfg.transport {
                Transport::Udp { bind } => {
                    let addr = local.unwrap_or(*bind);
                    let (fd, w) = socket::udp(&addr, &opts, &what)?;
                    warnings.extend(w);
                    if let Some(peer) = &cfg.peer {
                        socket::connect_udp(fd.as_raw_fd(), peer, &what)?;
                    }
                    udp_fds.push(fd.as_raw_fd());
                    Endpoint::Udp(fd)
                }
                Transport::UdpMulticast {
                    bind,
                    group,
                    interface,
                    loopback,
                    ttl,
                } => {
                    let o = SockOpts {
                        reuseport: true,
                        ..opts
                    };
                    let (fd, w) = socket::udp(bind, &o, &what)?;
                    warnings.extend(w);
                    socket::join(fd.as_raw_fd(), *group, *interface)?;
                    socket::multicast_out(fd.as_raw_fd(), *interface, *loopback, *ttl)?;
                    udp_fds.push(fd.as_raw_fd());
                    Endpoint::Udp(fd)
                }
                Transport::Tcp { bind: Some(bind) } => {
                    let addr = local.unwrap_or(*bind);
                    let (fd, w) = socket::tcp_listener(&addr, &opts, &what)?;
                    warnings.extend(w);
                    Endpoint::Listener(fd)
                }
                Transport::Tcp { bind: None } => Endpoint::None,
            };
            if local.is_none()
                && let Some(fd) = endpoint.fd()
            {
                local = Some(socket::local_addr(fd)?);
            }
            sizes.udp_fd = match &endpoint {
                Endpoint::Udp(fd) => Some(fd.as_raw_fd()),
                _ => None,
            };
            (sizes.gso_max, sizes.gro) = match &endpoint {
                Endpoint::Udp(fd) => udp_offloads(cfg, fd.as_raw_fd(), &what, &mut warnings),
                _ => (0, false),
            };
            cores.push(Arc::new(Core::new(&cfg.name, shard as u16, &sizes)?));
            endpoints.push(endpoint);
        }
        let v6 = local.is_some_and(|a| a.is_ipv6());
        for w in &warnings {
            tracing::warn!(sap = %cfg.name, "{w}");
        }

        // A held datagram holds a buffer; with GRO up to MAX_SEGMENTS of them share one.
        let per_buffer = if cfg.udp_gro { socket::MAX_SEGMENTS } else { 1 };
        let total_buffers = cfg.buffers as usize * shards * per_buffer;
        let handlers: Vec<Option<Handler>> = b
            .dests
            .into_iter()
            .map(|d| match d {
                DestSpec::Queue => None,
                DestSpec::Inline(h) => Some(h),
            })
            .collect();
        let dests: Vec<Destination> = handlers
            .iter()
            .map(|_| {
                Destination::new(
                    q.queue_depth as usize,
                    q.drop_policy,
                    total_buffers,
                    cfg.max_connections as usize * shards,
                )
            })
            .collect();
        let shared = Arc::new(Shared {
            name: Arc::from(cfg.name.as_str()),
            cores: cores.clone().into_boxed_slice(),
            dests: dests.into_boxed_slice(),
            handlers: handlers.into_boxed_slice(),
            router: b.router,
            stream,
            next_shard: AtomicUsize::new(0),
        });

        let mut backends: Vec<Arc<dyn Backend>> = Vec::with_capacity(shards);
        for (core, endpoint) in cores.iter().zip(endpoints) {
            let backend: Arc<dyn Backend> = match selection.kind {
                BackendKind::IoUring => Arc::new(Uring::new(
                    core.clone(),
                    endpoint,
                    opts,
                    v6,
                    cfg.ring_entries,
                    per_reactor == 1,
                )?),
                BackendKind::Epoll => Arc::new(Epoll::new(
                    core.clone(),
                    endpoint,
                    opts,
                    v6,
                    per_reactor > 1,
                )?),
            };
            backends.push(backend);
        }
        tracing::info!(sap = %cfg.name, backend = %selection.kind, reason = %selection.reason, shards, threads_per_reactor = per_reactor, "SAP bound");

        let plan = ThreadPlan {
            policy,
            cpus,
            mode: q.mode,
            spin: q.spin,
            spin_share: q.spin_share,
        };
        let handled: Arc<[AtomicU64]> = (0..shards * per_reactor)
            .map(|_| AtomicU64::new(0))
            .collect();
        let mut sap = Sap {
            shared: shared.clone(),
            reactors: backends
                .into_iter()
                .map(|backend| Reactor {
                    backend,
                    pool: None,
                })
                .collect(),
            selection,
            local,
            udp_fds,
            opts,
            handled: handled.clone(),
            warnings,
        };
        for i in 0..sap.reactors.len() {
            let pool = Pool::start(
                &cfg.name,
                i,
                per_reactor,
                sap.reactors[i].backend.clone(),
                shared.clone(),
                &plan,
                handled.clone(),
                i * per_reactor,
            )?;
            sap.reactors[i].pool = Some(pool);
        }
        Ok(sap)
    }

    /// Takes the consumer of queue destination `dest` (once).
    pub fn consumer(&self, dest: u16) -> Result<Consumer, Error> {
        let bad = |reason| Error::Destination {
            sap: self.shared.name.to_string(),
            dest,
            reason,
        };
        let d = self
            .shared
            .dests
            .get(dest as usize)
            .ok_or(bad("does not exist"))?;
        if self.shared.handlers[dest as usize].is_some() {
            return Err(bad("is served inline and has no queue"));
        }
        if !d.take() {
            return Err(bad("has its consumer taken already"));
        }
        Ok(Consumer::new(self.shared.clone(), dest))
    }

    /// The bound address (of the first socket), if the SAP listens.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local
    }

    /// The backend serving this SAP.
    pub fn backend(&self) -> BackendKind {
        self.selection.kind
    }

    /// Why that backend was chosen.
    pub fn backend_reason(&self) -> &str {
        &self.selection.reason
    }

    /// Socket options the kernel did not permit (applied "where permitted").
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Queues a datagram to `to` (UDP SAPs), through the first reactor; a parked leader
    /// is woken to submit it. Copies `bytes` into a send slot; never blocks.
    pub fn send_to(&self, to: SocketAddr, bytes: &[u8]) -> Result<(), Error> {
        self.shared.send_to(0, to, bytes)
    }

    /// Queues a datagram through reactor `shard` (for spreading sends over a sharded SAP).
    pub fn send_to_via(&self, shard: u16, to: SocketAddr, bytes: &[u8]) -> Result<(), Error> {
        self.shared.send_to(shard, to, bytes)
    }

    /// Queues several datagrams to `to` (UDP SAPs) through the first reactor, waking it
    /// once: the batching API. Copies each into a send slot; never blocks. Returns how
    /// many were queued — all, or as many as free send slots allowed (at least one;
    /// otherwise the error, e.g. [`Error::SendQueueFull`]). With `udp_gso`, runs of equal
    /// size leave as one system call or submission each.
    pub fn send_many(&self, to: SocketAddr, datagrams: &[&[u8]]) -> Result<usize, Error> {
        self.shared.send_many(0, to, datagrams)
    }

    /// Replies to a message's source (a datagram's sender, or a frame's connection).
    pub fn reply(&self, to: &Source, bytes: &[u8]) -> Result<(), Error> {
        self.shared.reply(to, bytes)
    }

    /// Queues a frame on a TCP connection.
    pub fn send(&self, conn: ConnId, bytes: &[u8]) -> Result<(), Error> {
        self.shared.send_frame(conn, bytes)
    }

    /// Queues several frames on a TCP connection in one send slot (batching: one copy
    /// target, one hand-off to the reactor, one iovec). Returns how many of `frames` fit
    /// and were queued; send the rest with another call.
    pub fn send_frames(&self, conn: ConnId, frames: &[&[u8]]) -> Result<usize, Error> {
        self.shared.send_frames(conn, frames)
    }

    /// Opens a TCP connection to `addr` (blocking until established) and serves it.
    pub fn connect(&self, addr: SocketAddr) -> Result<ConnId, Error> {
        if !self.shared.stream {
            return Err(Error::Transport {
                sap: self.shared.name.to_string(),
                what: "connect",
                needs: "TCP",
            });
        }
        let shard =
            self.shared.next_shard.fetch_add(1, Ordering::Relaxed) % self.shared.cores.len();
        let core = &self.shared.cores[shard];
        let idx = core.conn_free.pop().ok_or_else(|| Error::Config {
            sap: self.shared.name.to_string(),
            field: "max_connections",
            reason: format!("is {} and every slot is in use", core.conns.len()),
        })?;
        let fd = match socket::tcp_connect(&addr, &self.opts) {
            Ok(fd) => fd,
            Err(e) => {
                let _ = core.conn_free.push(idx);
                return Err(e);
            }
        };
        let slot = &core.conns[idx as usize];
        match slot.rx.try_claim() {
            Some(mut rx) => {
                rx.framer = frame::Framer::new(core.max_frame);
                rx.peer = addr;
                rx.asm = None;
                rx.rest = None;
                rx.pending = None;
            }
            None => {
                return Err(Error::Internal(format!(
                    "free connection slot {idx} in use"
                )));
            }
        }
        let generation = slot.generation.load(Ordering::Acquire);
        slot.open.store(true, Ordering::Release);
        core.push_intent(Intent::Adopt { conn: idx, fd })
            .map_err(|_| Error::Internal("intent queue full on connect".into()))?;
        Ok(ConnId {
            shard: shard as u16,
            idx,
            generation,
        })
    }

    /// Closes a TCP connection (queued sends still go out first where possible).
    pub fn close(&self, conn: ConnId) -> Result<(), Error> {
        let core = self.shared.core_of(conn.shard)?;
        let live = core
            .conns
            .get(conn.idx as usize)
            .is_some_and(|c| c.generation.load(Ordering::Acquire) == conn.generation);
        if !live {
            return Err(Error::Closed(conn));
        }
        core.push_intent(Intent::Close { conn: conn.idx })
            .map_err(|_| Error::Internal("intent queue full on close".into()))
    }

    /// Joins a multicast group on the interface with address `iface` (UDP SAPs).
    pub fn join(&self, group: Ipv4Addr, iface: Ipv4Addr) -> Result<(), Error> {
        for fd in &self.udp_fds {
            socket::join(*fd, group, iface)?;
        }
        Ok(())
    }

    /// Leaves a multicast group.
    pub fn leave(&self, group: Ipv4Addr, iface: Ipv4Addr) -> Result<(), Error> {
        for fd in &self.udp_fds {
            socket::leave(*fd, group, iface)?;
        }
        Ok(())
    }

    /// Counters summed over the SAP's reactors. `sent` counts the sends whose completion
    /// a reactor has collected: a parked io_uring reactor collects its last sends' at its
    /// next wake-up, which this call prompts.
    pub fn stats(&self) -> SapStats {
        let mut s = SapStats::default();
        for c in self.shared.cores.iter() {
            c.collect_sends();
        }
        for c in self.shared.cores.iter() {
            c.stats.add_to(&mut s);
            s.promotions += c.leadership.promotions();
        }
        s.kernel_drops = self
            .udp_fds
            .iter()
            .filter_map(|fd| socket::kernel_drops(*fd))
            .sum();
        s
    }

    /// The SAP's UDP sockets (fault injection).
    #[cfg(feature = "fault-injection")]
    pub(crate) fn udp_fds(&self) -> &[RawFd] {
        &self.udp_fds
    }

    /// A destination's counters.
    pub fn dest_stats(&self, dest: u16) -> Option<DestStats> {
        self.shared.dests.get(dest as usize).map(|d| d.stats())
    }

    /// Events handled by each pool thread so far (index: reactor × threads + thread).
    pub fn thread_events(&self) -> Vec<u64> {
        self.handled
            .iter()
            .map(|h| h.load(Ordering::Relaxed))
            .collect()
    }

    /// Stops the pools, waits for the kernel to give every buffer back, and drops the
    /// queued handles. Handles still held by consumers stay valid until released.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        for c in self.shared.cores.iter() {
            c.stopping.store(true, Ordering::SeqCst);
            c.bell.signal();
            c.leadership.wake_all();
        }
        for r in &mut self.reactors {
            if let Some(p) = r.pool.take() {
                p.join();
            }
        }
        for r in &self.reactors {
            r.backend.shutdown();
        }
        for d in self.shared.dests.iter() {
            d.drain(|h| {
                let _ = self.shared.release(h);
            });
        }
        self.reactors.clear();
    }
}

impl Drop for Sap {
    fn drop(&mut self) {
        if !self.reactors.is_empty() {
            self.stop();
        }
    }
}
