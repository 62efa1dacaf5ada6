//! The overlay as a kernel [`Network`]: an `rtpm_overlay::driver::Driver` behind the five
//! P3 modules.
//!
//! **Starting.** [`OverlaySpec`] is a [`NetworkSpec`]: the runtime makes one per
//! `[[overlay]]` section of `node.toml`, and `Runtime::insert_network` takes one at run
//! time. Starting admits every task of the overlay through [`NetworkStart`] (on the
//! runtime's executor, named `NETWORK/TASK`; a refusal names the task and admission's
//! reason, and no socket is bound), binds its SAPs and joins. The kernel's policy applies
//! from the start: `encrypt` turns payload encryption on, `trusted_nodes` filters what
//! reaches the ports.
//!
//! **Ports.** A message on the overlay carries its destination port — a [`ServiceId`] —
//! in its first 16 bytes (the UUID's bytes, big-endian), then the payload.
//! [`Messaging::send`] prefixes it; on arrival the port selects the [`Inbox`] attached to
//! it, which gets the sender, the class and the payload (without the prefix). A message
//! for a port nothing is attached to is dropped and counted (`unknown_port`). The inbox is
//! called by the job holding the overlay's node, on an RT core: it must copy and return,
//! never block. A reply sent from inside `deliver` leaves in the same job. This is the
//! interface remote RPC and remote events build on: a service's id is its port, its
//! requests travel on the request's QoS class, and the reply goes back to the sender's
//! node id on the same class.
//!
//! **Discovery.** Keys are service ids. `publish` leases the key to this node (refreshed
//! by the overlay, re-published after every rebind); `lookup` climbs the tree and waits
//! at most its timeout; answers are cached for [`CACHE_TTL`] for `cached`.
//!
//! **Leaving** is announced (a peer unbinds, a super-peer tells its cell and its peers)
//! and waits at most [`LEAVE_WAIT`] for the datagrams to leave.
//!
//! Every overlay also serves a [`probe`] port: echo and sequence checks, which `rtpm`'s
//! diagnostics and the tests use to measure the path between two nodes.

pub mod probe;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwap;
use rtpm_overlay::driver::{Answer, Driver, DriverOptions, OverlayConfig, Sink, TaskHost, sap_key};
use rtpm_overlay::proto::security::OverlayKey;
use rtpm_overlay::proto::{CellId, PeerId, Role};
use rtpm_rt::config::Partition;
use rtpm_rt::exec::{Activator, Job, TaskId, TaskOptions, TaskSpec};
use rtpm_rt::time::{Clock, MonotonicClock, Nanos};

use super::{
    CellView, Discovery, Inbox, Membership, MessageCounters, Messaging, Network, NetworkPolicy,
    NetworkReport, NetworkSecurity, NetworkSpec, NetworkStart, PeerRole, Route, Routing, SapReport,
    SecurityCounters,
};
use crate::error::{Error, Result};
use crate::id::{NetworkId, NodeId, ServiceId};
use crate::qos::QosClass;
use probe::Probe;

/// How long a lookup answer serves [`Discovery::cached`].
pub const CACHE_TTL: Nanos = Nanos::secs(2);
/// How long [`Network::leave`] waits for the announced leave to go out.
pub const LEAVE_WAIT: Nanos = Nanos::ms(500);
/// Bytes of the port prefix.
pub const PORT_LEN: usize = 16;

/// Starts an overlay: see the [module documentation](self).
#[derive(Clone, Debug)]
pub struct OverlaySpec {
    config: OverlayConfig,
    key: Option<OverlayKey>,
    dir: Option<PathBuf>,
    node: Option<NodeId>,
    partition: Option<Partition>,
}

impl OverlaySpec {
    /// An overlay from its `[[overlay]]` section; the key file is read at start
    /// (relative to `dir`), unless [`OverlaySpec::key`] gives the key.
    pub fn new(config: OverlayConfig, dir: Option<PathBuf>) -> OverlaySpec {
        OverlaySpec {
            config,
            key: None,
            dir,
            node: None,
            partition: None,
        }
    }

    /// Uses `key` instead of reading the key file.
    #[must_use]
    pub fn key(mut self, key: OverlayKey) -> Self {
        self.key = Some(key);
        self
    }

    /// Joins as `node` (default: the runtime's node id).
    #[must_use]
    pub fn node(mut self, node: NodeId) -> Self {
        self.node = Some(node);
        self
    }

    /// Places the reactors on `partition`'s general cores.
    #[must_use]
    pub fn partition(mut self, partition: Partition) -> Self {
        self.partition = Some(partition);
        self
    }
}

/// Admits the driver's tasks through the kernel. Names lose their `OVERLAY/` prefix: the
/// kernel names a network's tasks `NETWORK/TASK` itself.
struct KernelHost<'s, 'a> {
    start: &'s mut NetworkStart<'a>,
    prefix: String,
}

impl KernelHost<'_, '_> {
    fn strip(&self, mut spec: TaskSpec) -> TaskSpec {
        if let Some(rest) = spec.name.strip_prefix(&self.prefix) {
            spec.name = rest.to_string();
        }
        spec
    }
}

impl TaskHost for KernelHost<'_, '_> {
    type Error = Error;

    fn periodic<F>(&mut self, spec: TaskSpec, options: TaskOptions, body: F) -> Result<TaskId>
    where
        F: FnMut(&Job) + Send + 'static,
    {
        let spec = self.strip(spec);
        self.start.periodic(spec, options, body)
    }

    fn sporadic<P, F>(
        &mut self,
        spec: TaskSpec,
        options: TaskOptions,
        body: F,
    ) -> Result<(TaskId, Activator<P>)>
    where
        P: Copy + Send + 'static,
        F: FnMut(&Job, P) + Send + 'static,
    {
        let spec = self.strip(spec);
        self.start.sporadic(spec, options, body)
    }

    // the network manager removes a failed network's tasks itself
    fn remove(&mut self, _id: TaskId) {}
}

/// Ports and the policy, read by the job holding the node without a lock.
struct Ports {
    inboxes: ArcSwap<HashMap<ServiceId, Arc<dyn Inbox>>>,
    trusted: ArcSwap<Option<Vec<NodeId>>>,
    writers: Mutex<()>,
    unknown_port: AtomicU64,
    untrusted: AtomicU64,
}

impl Sink for Ports {
    fn message(&self, from: PeerId, class: u8, bytes: &[u8]) {
        let Some((port, payload)) = bytes.split_first_chunk::<PORT_LEN>() else {
            self.unknown_port.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let from = NodeId(uuid::Uuid::from_u128(from.0));
        if let Some(t) = self.trusted.load().as_ref()
            && !t.contains(&from)
        {
            self.untrusted.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let port = ServiceId(uuid::Uuid::from_bytes(*port));
        match self.inboxes.load().get(&port) {
            Some(inbox) => inbox.deliver(from, QosClass(class), payload),
            None => {
                self.unknown_port.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// A lookup answer kept for [`Discovery::cached`].
#[derive(Clone, Copy, Debug)]
struct Cached {
    node: NodeId,
    addr: SocketAddr,
    at: u64,
}

/// A running overlay as a [`Network`]: see the [module documentation](self).
pub struct OverlayNetwork {
    id: NetworkId,
    name: String,
    driver: Arc<Driver>,
    ports: Arc<Ports>,
    probe: Arc<Probe>,
    encrypt: bool,
    published: Mutex<Vec<ServiceId>>,
    cache: Mutex<HashMap<ServiceId, Cached>>,
}

impl std::fmt::Debug for OverlayNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OverlayNetwork")
            .field("name", &self.name)
            .field("driver", &self.driver)
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn node_of(p: PeerId) -> NodeId {
    NodeId(uuid::Uuid::from_u128(p.0))
}

fn peer_of(n: NodeId) -> PeerId {
    PeerId(n.as_u128())
}

fn cell_of(c: CellId) -> u128 {
    c.to_u128()
}

impl NetworkSpec for OverlaySpec {
    fn name(&self) -> &str {
        &self.config.name
    }

    fn start(self: Box<Self>, start: &mut NetworkStart<'_>) -> Result<Arc<dyn Network>> {
        let policy = start.policy().clone();
        let me = self.node.unwrap_or_else(|| {
            start
                .kernel()
                .kernel
                .upgrade()
                .map_or(NodeId::from_name("rtpm"), |k| k.node.id)
        });
        let mut config = self.config;
        config.encrypt |= policy.encrypt;
        let name = config.name.clone();
        let ports = Arc::new(Ports {
            inboxes: ArcSwap::from_pointee(HashMap::new()),
            trusted: ArcSwap::from_pointee(policy.trusted_nodes.clone()),
            writers: Mutex::new(()),
            unknown_port: AtomicU64::new(0),
            untrusted: AtomicU64::new(0),
        });
        let encrypt = config.encrypt;
        let opts = DriverOptions {
            config,
            dir: self.dir,
            me: peer_of(me),
            partition: self.partition,
            key: self.key,
            incarnation: None,
        };
        let mut host = KernelHost {
            start,
            prefix: format!("{name}/"),
        };
        let sink: Arc<dyn Sink> = ports.clone();
        let driver =
            Arc::new(
                Driver::start(opts, &mut host, sink).map_err(|e| Error::Network {
                    network: name.clone(),
                    message: e.to_string(),
                })?,
            );
        let probe = Arc::new(Probe::new(name.clone(), Arc::downgrade(&driver)));
        let net = OverlayNetwork {
            id: NetworkId::from_name(&name),
            name,
            driver,
            ports,
            probe: Arc::clone(&probe),
            encrypt,
            published: Mutex::new(Vec::new()),
            cache: Mutex::new(HashMap::new()),
        };
        net.attach(probe::port(), probe)?;
        Ok(Arc::new(net))
    }
}

impl OverlayNetwork {
    /// The driver underneath.
    pub fn driver(&self) -> &Driver {
        &self.driver
    }

    fn failed(&self, e: rtpm_overlay::Error) -> Error {
        Error::Network {
            network: self.name.clone(),
            message: e.to_string(),
        }
    }
}

impl Routing for OverlayNetwork {
    fn route(&self, to: NodeId) -> Route {
        let p = self.driver.place();
        let peer = peer_of(to);
        if peer == self.driver.me().id {
            return Route::Direct(self.driver.me().addr.0);
        }
        let known = p
            .super_peers
            .iter()
            .chain(p.parent_members.iter())
            .chain(p.super_peer.iter())
            .find(|m| m.id == peer)
            .map(|m| m.addr.0)
            .or_else(|| {
                lock(&self.cache)
                    .values()
                    .find(|c| c.node == to)
                    .map(|c| c.addr)
            });
        match (known, p.role) {
            (Some(a), _) => Route::Direct(a),
            (None, Role::Peer | Role::SuperPeer) => Route::Indirect,
            (None, _) => Route::Unknown,
        }
    }
}

impl Messaging for OverlayNetwork {
    fn send(&self, to: NodeId, class: QosClass, port: ServiceId, bytes: &[u8]) -> Result<()> {
        self.driver
            .send(peer_of(to), class.0, &[port.0.as_bytes(), bytes])
            .map_err(|e| self.failed(e))
    }

    fn send_parts(
        &self,
        to: NodeId,
        class: QosClass,
        port: ServiceId,
        parts: &[&[u8]],
    ) -> Result<()> {
        const MAX_PARTS: usize = 8;
        if parts.len() >= MAX_PARTS {
            return self.send(to, class, port, &parts.concat());
        }
        let mut all: [&[u8]; MAX_PARTS] = [&[]; MAX_PARTS];
        all[0] = port.0.as_bytes();
        all[1..=parts.len()].copy_from_slice(parts);
        self.driver
            .send(peer_of(to), class.0, &all[..=parts.len()])
            .map_err(|e| self.failed(e))
    }

    fn attach(&self, port: ServiceId, inbox: Arc<dyn Inbox>) -> Result<()> {
        let _w = lock(&self.ports.writers);
        let mut m = HashMap::clone(&self.ports.inboxes.load());
        m.insert(port, inbox);
        self.ports.inboxes.store(Arc::new(m));
        Ok(())
    }

    fn detach(&self, port: ServiceId) {
        let _w = lock(&self.ports.writers);
        let mut m = HashMap::clone(&self.ports.inboxes.load());
        m.remove(&port);
        self.ports.inboxes.store(Arc::new(m));
    }
}

impl Membership for OverlayNetwork {
    fn me(&self) -> NodeId {
        node_of(self.driver.me().id)
    }

    fn role(&self) -> PeerRole {
        match self.driver.role() {
            Role::Idle | Role::Joining => PeerRole::Joining,
            Role::Peer => PeerRole::Peer,
            Role::SuperPeer => PeerRole::SuperPeer,
            Role::Left => PeerRole::Left,
        }
    }

    fn cell(&self) -> Option<CellView> {
        let p = self.driver.place();
        if p.cell.is_none() || !matches!(p.role, Role::Peer | Role::SuperPeer) {
            return None;
        }
        let members = if p.role == Role::SuperPeer {
            p.bound.iter().copied().map(node_of).collect()
        } else {
            vec![node_of(self.driver.me().id)]
        };
        Some(CellView {
            cell: cell_of(p.cell),
            super_peers: p.super_peers.iter().map(|m| node_of(m.id)).collect(),
            members,
            parent: (!p.parent.is_none()).then(|| cell_of(p.parent)),
        })
    }
}

impl Discovery for OverlayNetwork {
    fn publish(&self, key: ServiceId, class: QosClass) -> Result<()> {
        self.driver
            .publish(key.as_u128(), class.0)
            .map_err(|e| self.failed(e))?;
        let mut p = lock(&self.published);
        if !p.contains(&key) {
            p.push(key);
        }
        Ok(())
    }

    fn unpublish(&self, key: ServiceId) -> Result<()> {
        lock(&self.published).retain(|k| *k != key);
        self.driver
            .unpublish(key.as_u128())
            .map_err(|e| self.failed(e))
    }

    fn lookup(&self, key: ServiceId, timeout: Nanos) -> Result<Option<NodeId>> {
        match self
            .driver
            .lookup(key.as_u128(), timeout)
            .map_err(|e| self.failed(e))?
        {
            Answer::Found(m, _) => {
                let node = node_of(m.id);
                lock(&self.cache).insert(
                    key,
                    Cached {
                        node,
                        addr: m.addr.0,
                        at: MonotonicClock.now().as_nanos(),
                    },
                );
                Ok(Some(node))
            }
            _ => {
                lock(&self.cache).remove(&key);
                Ok(None)
            }
        }
    }

    fn cached(&self, key: ServiceId) -> Option<NodeId> {
        if lock(&self.published).contains(&key) {
            return Some(self.me());
        }
        let now = MonotonicClock.now().as_nanos();
        lock(&self.cache)
            .get(&key)
            .filter(|c| now.saturating_sub(c.at) < CACHE_TTL.get())
            .map(|c| c.node)
    }
}

impl NetworkSecurity for OverlayNetwork {
    fn apply(&self, policy: &NetworkPolicy) -> Result<()> {
        if policy.encrypt && !self.encrypt {
            return Err(Error::Network {
                network: self.name.clone(),
                message: "the policy asks for encryption, which an overlay takes at start: set `encrypt = true` in its [[overlay]] section (every peer of the overlay must) and restart it".into(),
            });
        }
        self.ports
            .trusted
            .store(Arc::new(policy.trusted_nodes.clone()));
        Ok(())
    }

    fn counters(&self) -> SecurityCounters {
        let s = self.driver.place().security;
        SecurityCounters {
            bad_mac: s.forged,
            replayed: s.replayed,
            malformed: s.truncated + s.wrong_overlay + s.oversize + s.malformed,
        }
    }
}

impl Network for OverlayNetwork {
    fn id(&self) -> NetworkId {
        self.id
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn routing(&self) -> &dyn Routing {
        self
    }

    fn messaging(&self) -> &dyn Messaging {
        self
    }

    fn membership(&self) -> &dyn Membership {
        self
    }

    fn discovery(&self) -> &dyn Discovery {
        self
    }

    fn security(&self) -> &dyn NetworkSecurity {
        self
    }

    fn leave(&self) -> Result<()> {
        self.driver.leave(LEAVE_WAIT).map_err(|e| self.failed(e))
    }

    fn report(&self) -> Option<NetworkReport> {
        let s = self.driver.status();
        let p = &s.place;
        let saps: Vec<SapReport> = s
            .saps
            .iter()
            .map(|x| SapReport {
                name: x.name.clone(),
                class: x.class,
                address: x.address,
                reliability: match x.reliability {
                    rtpm_net::Reliability::BestEffort => "best-effort",
                    rtpm_net::Reliability::Reliable => "reliable",
                },
                priority: x.priority,
                queue_depth: x.queue_depth,
                backend: x.backend.to_string(),
                received: x.stats.received,
                sent: x.stats.sent,
                send_errors: x.stats.send_errors,
                queue_full: x.queue.dropped_newest + x.queue.dropped_oldest,
                kernel_drops: x.stats.kernel_drops,
            })
            .collect();
        let counters = MessageCounters {
            tx_datagrams: p.traffic.tx_datagrams,
            rx_datagrams: p.traffic.rx_datagrams,
            accepted: p.security.accepted,
            bad_mac: p.security.forged,
            replayed: p.security.replayed,
            wrong_overlay: p.security.wrong_overlay,
            malformed: p.security.truncated + p.security.oversize + p.security.malformed,
            rx_queue_full: saps.iter().map(|x| x.queue_full).sum(),
            tx_refused: s.counters.send_refused,
            commands_refused: s.counters.commands_refused,
            delivered: s.counters.delivered,
            unknown_port: self.ports.unknown_port.load(Ordering::Relaxed),
            untrusted: self.ports.untrusted.load(Ordering::Relaxed),
            retransmits: p.messaging.retransmits,
            duplicates: p.messaging.duplicates,
            unroutable: p.traffic.unroutable,
        };
        Some(NetworkReport {
            name: self.name.clone(),
            id: self.id,
            address: s.me.addr.0,
            role: self.role(),
            cell: self.cell().as_ref().map(super::CellReport::of),
            super_peer: p.super_peer.map(|m| node_of(m.id)),
            parent_members: p.parent_members.iter().map(|m| node_of(m.id)).collect(),
            children: p
                .children
                .iter()
                .map(|c| format!("{:032x}", cell_of(*c)))
                .collect(),
            depth: p.depth,
            root: (!p.root.is_none()).then(|| format!("{:032x}", cell_of(p.root))),
            listening: p.listening,
            index_records: p.index_len,
            group: s.group,
            saps,
            counters,
            tasks: s.tasks.iter().map(|(_, n)| n.clone()).collect(),
        })
    }

    fn probe(&self) -> Option<&Probe> {
        Some(&self.probe)
    }
}

/// The discovery key of node `node`'s class-`class` SAP on an overlay (published by
/// every overlay node with `publish_saps`, the default), as a service id.
pub fn sap_service(node: NodeId, class: u8) -> ServiceId {
    ServiceId(uuid::Uuid::from_u128(sap_key(peer_of(node), class)))
}
