//! Networks: the kernel's view of a peer-to-peer overlay (the seed's `Network`,
//! listing 5), and the manager that holds them at run time (`NetworkMgr`, listing 4).
//!
//! [`Network`] is the contract an overlay implementation meets to be plugged into the
//! kernel: the five P3 modules — [`Routing`], [`Messaging`], [`Membership`],
//! [`Discovery`] and [`NetworkSecurity`] — plus a clean [`Network::leave`]. The kernel
//! defines it, so the dependency points down: the overlay driver (`rtpm_overlay::driver`,
//! issue 7) is wrapped by an adapter in this crate that implements it, and a
//! [`NetworkSpec`] (its configuration) starts it through [`NetworkStart`], which admits
//! the overlay's periodic and sporadic tasks on the runtime's executor like any other.
//!
//! The overlay implementation is [`overlay`]: [`overlay::OverlaySpec`] starts an
//! `rtpm_overlay::driver` and [`overlay::OverlayNetwork`] is its `Network`. The runtime
//! starts one per `[[overlay]]` section of `node.toml`.

mod mgr;
pub mod overlay;

use std::net::SocketAddr;
use std::sync::Arc;

use rtpm_rt::exec::{Activator, Job, TaskId, TaskOptions, TaskSpec};
use rtpm_rt::time::Nanos;

pub(crate) use mgr::NetworkWatch;
pub use mgr::{NetworkMgr, NetworkRef};
pub use overlay::probe::{PingReport, Probe, ProbeRun, StreamStats};
pub use overlay::{OverlayNetwork, OverlaySpec, sap_service};

use crate::error::Result;
use crate::id::{NetworkId, NodeId, ServiceId};
use crate::qos::QosClass;
use crate::service::{KernelHandle, Spawner};

/// How a message reaches a peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// Straight to its address.
    Direct(SocketAddr),
    /// Up the cell tree to the common ancestor and down again.
    Indirect,
    /// The peer is not known.
    Unknown,
}

/// The routing module.
pub trait Routing: Send + Sync {
    /// How a message to `to` would travel now.
    fn route(&self, to: NodeId) -> Route;
}

/// Receives the messages addressed to one port (a service id) on a network. Called on
/// the network's reactor thread: it must not block, and should hand the bytes to a
/// lock-free queue.
pub trait Inbox: Send + Sync {
    /// A message from `from`, on class `class`.
    fn deliver(&self, from: NodeId, class: QosClass, bytes: &[u8]);
}

/// The messaging module: ports are service ids.
pub trait Messaging: Send + Sync {
    /// Sends `bytes` to port `port` of node `to` on QoS class `class`.
    fn send(&self, to: NodeId, class: QosClass, port: ServiceId, bytes: &[u8]) -> Result<()>;
    /// Sends the concatenation of `parts` to port `port` of node `to` on class `class`
    /// (a header and a payload without copying them together first). The default joins
    /// them into one buffer and calls [`Messaging::send`]; an overlay overrides it to
    /// gather without allocating.
    fn send_parts(
        &self,
        to: NodeId,
        class: QosClass,
        port: ServiceId,
        parts: &[&[u8]],
    ) -> Result<()> {
        self.send(to, class, port, &parts.concat())
    }
    /// Delivers what arrives for `port` to `inbox` (replacing any previous one).
    fn attach(&self, port: ServiceId, inbox: Arc<dyn Inbox>) -> Result<()>;
    /// Stops delivering `port`.
    fn detach(&self, port: ServiceId);
}

/// What a node is in its overlay.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PeerRole {
    /// Looking for a cell.
    Joining,
    /// An ordinary peer bound to a super-peer.
    Peer,
    /// A super-peer of a cell.
    SuperPeer,
    /// Left the overlay.
    Left,
}

/// A node's cell as its membership module sees it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct CellView {
    /// The cell's id.
    pub cell: u128,
    /// Its super-peers.
    pub super_peers: Vec<NodeId>,
    /// The peers bound to it (as far as this node knows).
    pub members: Vec<NodeId>,
    /// The parent cell, unless this is the root.
    pub parent: Option<u128>,
}

/// The membership module.
pub trait Membership: Send + Sync {
    /// This node.
    fn me(&self) -> NodeId;
    /// What it is now.
    fn role(&self) -> PeerRole;
    /// Its cell, once joined.
    fn cell(&self) -> Option<CellView>;
}

/// The discovery module: keys are service (or topic) ids.
pub trait Discovery: Send + Sync {
    /// Advertises `key` as served by this node on `class` (leased, refreshed by the
    /// network until [`Discovery::unpublish`]).
    fn publish(&self, key: ServiceId, class: QosClass) -> Result<()>;
    /// Withdraws the advertisement.
    fn unpublish(&self, key: ServiceId) -> Result<()>;
    /// Asks the cell, then up the tree: the owner, or `None` for a definite "not found".
    /// Blocks at most `timeout`; an error when no answer came.
    fn lookup(&self, key: ServiceId, timeout: Nanos) -> Result<Option<NodeId>>;
    /// The owner if this node already knows it, without any traffic.
    fn cached(&self, key: ServiceId) -> Option<NodeId>;
}

/// Counters of the security module.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct SecurityCounters {
    /// Datagrams dropped for a bad MAC (wrong key, tampering).
    pub bad_mac: u64,
    /// Datagrams dropped as replays.
    pub replayed: u64,
    /// Datagrams dropped for other reasons before parsing (malformed header, unknown
    /// overlay).
    pub malformed: u64,
}

/// What the kernel's security policy asks of a network.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetworkPolicy {
    /// Encrypt payloads as well as authenticating them.
    pub encrypt: bool,
    /// Accept requests only from these nodes (`None`: any node holding the overlay key).
    pub trusted_nodes: Option<Vec<NodeId>>,
}

/// The network's security module; it takes its policy from the kernel.
pub trait NetworkSecurity: Send + Sync {
    /// Applies the kernel's policy.
    fn apply(&self, policy: &NetworkPolicy) -> Result<()>;
    /// What it dropped so far.
    fn counters(&self) -> SecurityCounters;
}

/// An overlay as the kernel uses it (listing 5).
pub trait Network: Send + Sync {
    /// Its id (v5 from its name).
    fn id(&self) -> NetworkId;
    /// Its name.
    fn name(&self) -> &str;
    /// The routing module.
    fn routing(&self) -> &dyn Routing;
    /// The messaging module.
    fn messaging(&self) -> &dyn Messaging;
    /// The membership module.
    fn membership(&self) -> &dyn Membership;
    /// The discovery module.
    fn discovery(&self) -> &dyn Discovery;
    /// The security module.
    fn security(&self) -> &dyn NetworkSecurity;
    /// Leaves the overlay cleanly (an announced leave) and releases its sockets. Its
    /// tasks are removed by the manager afterwards.
    fn leave(&self) -> Result<()>;
    /// What `rtpm status` shows about the network (`None`: nothing beyond its name).
    fn report(&self) -> Option<NetworkReport> {
        None
    }
    /// The network's probe port (echo and sequence checks for `rtpm` diagnostics), if
    /// it has one.
    fn probe(&self) -> Option<&Probe> {
        None
    }
}

/// One SAP of a network, as `rtpm status` shows it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct SapReport {
    /// `c<N>` for class N, `group` for the bootstrap group.
    pub name: String,
    /// The QoS class.
    pub class: u8,
    /// The bound address.
    pub address: SocketAddr,
    /// `best-effort` or `reliable`.
    pub reliability: &'static str,
    /// The reactor's priority (0: SCHED_OTHER).
    pub priority: u8,
    /// The receive queue's depth.
    pub queue_depth: u32,
    /// `io_uring` or `epoll`.
    pub backend: String,
    /// Datagrams received.
    pub received: u64,
    /// Datagrams sent.
    pub sent: u64,
    /// Sends the kernel refused.
    pub send_errors: u64,
    /// Arrivals dropped because the receive queue was full.
    pub queue_full: u64,
    /// Datagrams the kernel dropped at a full socket buffer.
    pub kernel_drops: u64,
}

/// Message counters of a network, as `rtpm status` shows them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct MessageCounters {
    /// Datagrams sent.
    pub tx_datagrams: u64,
    /// Datagrams received (before security).
    pub rx_datagrams: u64,
    /// Datagrams that passed authentication and the replay window.
    pub accepted: u64,
    /// Dropped: bad MAC (wrong key, forgery).
    pub bad_mac: u64,
    /// Dropped: replayed.
    pub replayed: u64,
    /// Dropped: another overlay's id.
    pub wrong_overlay: u64,
    /// Dropped: truncated, oversized or malformed.
    pub malformed: u64,
    /// Dropped: a receive queue was full (all SAPs).
    pub rx_queue_full: u64,
    /// Dropped: a send queue was full (or the socket refused).
    pub tx_refused: u64,
    /// Dropped: the command queue was full (sends refused to the caller).
    pub commands_refused: u64,
    /// Messages delivered to ports.
    pub delivered: u64,
    /// Messages for a port nothing is attached to.
    pub unknown_port: u64,
    /// Messages from nodes the policy does not trust.
    pub untrusted: u64,
    /// Reliable retransmissions.
    pub retransmits: u64,
    /// Duplicates suppressed.
    pub duplicates: u64,
    /// Routed frames dropped for lack of a route.
    pub unroutable: u64,
}

/// A cell as `rtpm status` shows it (ids as hex strings: JSON numbers stop at 64 bits).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct CellReport {
    /// The cell's id.
    pub id: String,
    /// Its super-peers.
    pub super_peers: Vec<NodeId>,
    /// The peers bound to it (as far as this node knows).
    pub members: Vec<NodeId>,
    /// The parent cell, unless this is the root.
    pub parent: Option<String>,
}

impl CellReport {
    /// The report of `v`.
    pub fn of(v: &CellView) -> CellReport {
        CellReport {
            id: format!("{:032x}", v.cell),
            super_peers: v.super_peers.clone(),
            members: v.members.clone(),
            parent: v.parent.map(|p| format!("{p:032x}")),
        }
    }
}

/// What `rtpm status` shows about one network.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct NetworkReport {
    /// Its name.
    pub name: String,
    /// Its id.
    pub id: NetworkId,
    /// This node's address in it (its control SAP).
    pub address: SocketAddr,
    /// Peer, super-peer, joining, left.
    pub role: PeerRole,
    /// The cell, once joined.
    pub cell: Option<CellReport>,
    /// The super-peer this peer is bound to.
    pub super_peer: Option<NodeId>,
    /// The parent cell's super-peers.
    pub parent_members: Vec<NodeId>,
    /// Child cells (super-peers only).
    pub children: Vec<String>,
    /// The cell's depth in the tree (root = 0).
    pub depth: u8,
    /// The tree's root cell (hex), once joined.
    pub root: Option<String>,
    /// Whether it listens to the bootstrap group (roots do).
    pub listening: bool,
    /// Records in this super-peer's discovery index.
    pub index_records: usize,
    /// The bootstrap group.
    pub group: SocketAddr,
    /// The SAPs.
    pub saps: Vec<SapReport>,
    /// Message counters, drops by reason.
    pub counters: MessageCounters,
    /// The network's tasks, as the executor names them.
    pub tasks: Vec<String>,
}

/// A network's configuration, which can start it.
pub trait NetworkSpec: Send {
    /// The network's name (its id derives from it).
    fn name(&self) -> &str;
    /// Starts the network: binds its sockets, admits its tasks through `start`, joins.
    /// On error, what it started is undone (the manager removes the admitted tasks).
    fn start(self: Box<Self>, start: &mut NetworkStart<'_>) -> Result<Arc<dyn Network>>;
}

/// What a starting network may use: task admission on the executor (its tasks are
/// removed when it is), the kernel's security policy, and a privileged kernel handle.
pub struct NetworkStart<'a> {
    pub(crate) spawner: Spawner<'a>,
    pub(crate) policy: NetworkPolicy,
}

impl NetworkStart<'_> {
    /// The kernel's policy for the network's security module.
    pub fn policy(&self) -> &NetworkPolicy {
        &self.policy
    }

    /// A privileged handle on the kernel.
    pub fn kernel(&self) -> KernelHandle {
        KernelHandle {
            kernel: Arc::downgrade(self.spawner.kernel),
        }
    }

    /// Spawns a periodic task of the network (heartbeats, lease refresh), after admission.
    pub fn periodic<F>(&mut self, spec: TaskSpec, options: TaskOptions, body: F) -> Result<TaskId>
    where
        F: FnMut(&Job) + Send + 'static,
    {
        self.spawner.periodic(spec, options, body)
    }

    /// Spawns a sporadic task of the network (control messages), after admission.
    pub fn sporadic<P, F>(
        &mut self,
        spec: TaskSpec,
        options: TaskOptions,
        body: F,
    ) -> Result<(TaskId, Activator<P>)>
    where
        P: Copy + Send + 'static,
        F: FnMut(&Job, P) + Send + 'static,
    {
        self.spawner.sporadic(spec, options, body)
    }
}
