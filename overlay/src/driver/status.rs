//! What a running overlay reports: its place in the overlay (published by the job that
//! holds the node), its SAPs and its counters (read live).

use std::net::SocketAddr;

use rtpm_net::{BackendKind, DestStats, Reliability, SapStats};

use crate::proto::messaging::MessagingStats;
use crate::proto::node::NodeStats;
use crate::proto::security::DropCounters;
use crate::proto::{CellId, Member, PeerId, Role};

/// The node's place in the overlay, as last published by the job holding it (at every
/// membership change and at least every heartbeat).
#[derive(Clone, Debug, PartialEq)]
pub struct Place {
    /// Peer or super-peer (or joining, left).
    pub role: Role,
    /// The cell (a peer's: the cell it is bound to).
    pub cell: CellId,
    /// The cell view's version.
    pub version: u64,
    /// The cell's super-peers.
    pub super_peers: Vec<Member>,
    /// The super-peer this peer is bound to.
    pub super_peer: Option<Member>,
    /// The peers bound to this super-peer.
    pub bound: Vec<PeerId>,
    /// The parent cell (`CellId::NONE` at a root).
    pub parent: CellId,
    /// The parent cell's super-peers.
    pub parent_members: Vec<Member>,
    /// Child cells this super-peer hears from.
    pub children: Vec<CellId>,
    /// The tree's root cell.
    pub root: CellId,
    /// The cell's depth (root = 0).
    pub depth: u8,
    /// Whether this node listens to the bootstrap group (roots do).
    pub listening: bool,
    /// Protocol traffic counters.
    pub traffic: NodeStats,
    /// Datagrams dropped by security, by reason.
    pub security: DropCounters,
    /// Reliable and best-effort messaging counters.
    pub messaging: MessagingStats,
    /// Records in this super-peer's discovery index.
    pub index_len: usize,
    /// When this was published (rt clock, ns).
    pub at_ns: u64,
}

impl Default for Place {
    fn default() -> Place {
        Place {
            role: Role::Idle,
            cell: CellId::NONE,
            version: 0,
            super_peers: Vec::new(),
            super_peer: None,
            bound: Vec::new(),
            parent: CellId::NONE,
            parent_members: Vec::new(),
            children: Vec::new(),
            root: CellId::NONE,
            depth: 0,
            listening: false,
            traffic: NodeStats::default(),
            security: DropCounters::default(),
            messaging: MessagingStats::default(),
            index_len: 0,
            at_ns: 0,
        }
    }
}

/// One SAP of the overlay.
#[derive(Clone, Debug)]
pub struct SapStatus {
    /// QoS class (the group SAP reports the control class, 0).
    pub class: u8,
    /// `"c<N>"`, or `"group"` for the bootstrap group's receiving SAP.
    pub name: String,
    /// The bound address.
    pub address: SocketAddr,
    /// Best-effort or reliable.
    pub reliability: Reliability,
    /// The reactor's priority (0: SCHED_OTHER).
    pub priority: u8,
    /// The receive queue's depth.
    pub queue_depth: u32,
    /// io_uring or epoll.
    pub backend: BackendKind,
    /// Socket and reactor counters.
    pub stats: SapStats,
    /// The receive queue's counters (drops of a full queue).
    pub queue: DestStats,
}

/// The driver's own counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DriverCounters {
    /// Datagrams the SAPs refused to send (send queue full, socket error).
    pub send_refused: u64,
    /// Commands refused because the command queue was full.
    pub commands_refused: u64,
    /// Commands the protocol refused when they were carried out (not joined, a full
    /// stream queue, an unknown class).
    pub commands_failed: u64,
    /// Messages delivered to the application.
    pub delivered: u64,
    /// Notices dropped because the notice queue was full.
    pub notices_dropped: u64,
    /// Jobs that found the node held and left their work to the holder.
    pub handed_over: u64,
    /// Jobs that held the node.
    pub steps: u64,
}

/// Everything [`Driver::status`](super::Driver::status) reports.
#[derive(Clone, Debug)]
pub struct Status {
    /// The overlay's name.
    pub overlay: String,
    /// This peer.
    pub me: Member,
    /// Its place in the overlay.
    pub place: Place,
    /// Its SAPs (class SAPs, then the group SAP).
    pub saps: Vec<SapStatus>,
    /// The bootstrap group.
    pub group: SocketAddr,
    /// The driver's counters.
    pub counters: DriverCounters,
    /// The overlay's tasks: (admission id, name).
    pub tasks: Vec<(u64, String)>,
}
