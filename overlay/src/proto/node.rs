//! The composed sans-IO endpoint: one peer of one overlay.
//!
//! Inputs: [`Node::handle_datagram`], [`Node::handle_timeout`] and the commands
//! [`Node::join`], [`Node::leave`], [`Node::publish`], [`Node::lookup`], [`Node::send`].
//! Outputs: [`Node::poll_transmit`], [`Node::poll_event`], [`Node::poll_timeout`]. The node
//! never reads a clock, opens a socket or draws from a global RNG: `now` comes with every
//! input and the RNG is seeded from the config.

use super::DetMap;
use std::collections::{BTreeMap, VecDeque};

use rand_core::{RngCore, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

use super::config::Config;
use super::detector::{Detector, Verdict};
use super::discovery::Index;
use super::frame::{Frame, FrameType, Members, Relation, View};
use super::id::{Addr, CellId, Member, PeerId};
use super::messaging::{Delivered, Messaging, Outgoing};
use super::routing::Routes;
use super::security::{DropCounters, Security};
use super::sync::Links;
use super::time::Instant;
use super::wire::{FLAG_ENCRYPTED, HEADER_LEN, Header, MAX_DATAGRAM, MAX_PAYLOAD, Writer};
use crate::error::Error;

/// A datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Destination (a peer, or the overlay's multicast group).
    pub dest: Addr,
    /// The sealed datagram. Hand the buffer back with [`Node::recycle`] to avoid allocation.
    pub bytes: Vec<u8>,
}

/// Something the application (or the simulator) should know.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Joined the overlay: bound to `super_peer` in `cell`, or became a super-peer.
    Joined {
        /// The cell.
        cell: CellId,
        /// Whether this peer is a super-peer of it.
        super_peer: bool,
    },
    /// Bound again after the super-peer failed or left.
    Rebound {
        /// The cell.
        cell: CellId,
        /// The new super-peer.
        super_peer: PeerId,
    },
    /// Became a super-peer of `cell` (promotion, split or founding).
    Promoted {
        /// The cell.
        cell: CellId,
    },
    /// No longer a super-peer (expelled from the cell's view).
    Demoted,
    /// The failure detector declared `peer` down.
    PeerDown {
        /// Who.
        peer: PeerId,
        /// Its φ when declared.
        phi: f64,
    },
    /// This super-peer's cell became the root of a tree (first peer, or orphaned subtree).
    BecameRoot {
        /// The cell.
        cell: CellId,
    },
    /// This cell attached under `parent`.
    Attached {
        /// The new parent.
        parent: CellId,
    },
    /// Start (true) or stop listening to the overlay's multicast group.
    ListenGroup(bool),
    /// A lookup finished: the owner and class, or a definite not-found.
    LookupDone {
        /// Request id returned by [`Node::lookup`].
        req: u64,
        /// Key.
        key: u128,
        /// Result.
        found: Option<(Member, u8)>,
        /// Messages the lookup cost (request hops plus the answer).
        msgs: u8,
    },
    /// A lookup got no answer in time.
    LookupTimeout {
        /// Request id.
        req: u64,
        /// Key.
        key: u128,
    },
    /// A message arrived.
    Message(Delivered),
    /// A reliable stream gave up.
    Undeliverable {
        /// Peer.
        to: PeerId,
        /// Class.
        class: u8,
    },
    /// Left the overlay.
    Left,
}

/// What the node currently is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Not joined.
    Idle,
    /// Looking for a cell.
    Joining,
    /// An ordinary peer bound to a super-peer.
    Peer,
    /// A super-peer of a cell.
    SuperPeer,
    /// Left the overlay.
    Left,
}

/// Traffic counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeStats {
    /// Datagrams sent.
    pub tx_datagrams: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Bytes of control datagrams sent (everything but application data and its acks).
    pub tx_control_bytes: u64,
    /// `tx_control_bytes` split by frame type (indexed by the header's type code).
    pub tx_control_by_type: [u64; 32],
    /// Datagrams received (before security).
    pub rx_datagrams: u64,
    /// Routed frames dropped for lack of a route.
    pub unroutable: u64,
    /// Frames that were not addressed to this peer.
    pub misdirected: u64,
    /// Snapshots this super-peer asked of child cells whose index digest disagreed with
    /// its copy for several seconds.
    pub resyncs: u64,
    /// Index deltas queued for parent cell members (adds and withdrawals going up the
    /// tree, snapshots included).
    pub deltas_up: u64,
}

/// A SAP this peer published.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MySap {
    pub(crate) key: u128,
    pub(crate) class: u8,
    pub(crate) version: u64,
}

/// A cell mate as seen from here.
#[derive(Debug, Clone, Default)]
pub(crate) struct Mate {
    pub(crate) bound: Vec<Member>,
    pub(crate) bound_count: u16,
}

/// A child cell as seen from here.
#[derive(Debug, Clone)]
pub(crate) struct Child {
    pub(crate) members: Members,
    pub(crate) peers: u32,
    /// Peers its subtree can still take: its last report, less the peers sent there since.
    pub(crate) free: u32,
    /// Levels below it at which its subtree could found its shallowest new cell.
    pub(crate) open_depth: u8,
    pub(crate) last: Instant,
    /// When a peer was last sent to fill it up.
    pub(crate) recruited: Instant,
    /// Since when the child's index digest has disagreed with our copy (link quiet).
    pub(crate) mismatch_since: Option<Instant>,
    /// No snapshot is asked of the child before this.
    pub(crate) resync_after: Instant,
    /// Wait before the next snapshot request (doubles up to a minute).
    pub(crate) resync_backoff: u64,
}

impl Child {
    pub(crate) fn new(members: Members, peers: u32, now: Instant) -> Child {
        Child {
            members,
            peers,
            free: 0,
            open_depth: 1,
            last: now,
            recruited: Instant::ZERO,
            mismatch_since: None,
            resync_after: Instant::ZERO,
            resync_backoff: 0,
        }
    }
}

/// Join / rebind progress.
#[derive(Debug, Clone, Default)]
pub(crate) struct Join {
    pub(crate) nonce: u64,
    pub(crate) deadline: Option<Instant>,
    pub(crate) attempts: u32,
    /// Super-peers still to try when rebinding.
    pub(crate) candidates: Vec<Member>,
    /// Redirects followed in this attempt.
    pub(crate) redirects: u32,
    /// Rebinding after a failure (true) or joining afresh.
    pub(crate) rebinding: bool,
    /// Some super-peer answered during this join (so an overlay exists: never found one).
    pub(crate) heard_offer: bool,
    /// An offer was taken: binding to its super-peers (later offers are ignored).
    pub(crate) binding: bool,
    /// The super-peer this peer left to move elsewhere, still to be told once the move
    /// is complete (so its records never lapse in between).
    pub(crate) moved_from: Option<Member>,
}

/// A lookup this node started.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PendingLookup {
    pub(crate) key: u128,
    pub(crate) deadline: Instant,
    pub(crate) retried: bool,
}

/// One overlay endpoint.
pub struct Node {
    pub(crate) cfg: Config,
    pub(crate) me: Member,
    pub(crate) sec: Security,
    pub(crate) rng: Xoshiro256PlusPlus,
    pub(crate) role: Role,
    pub(crate) view: View,
    pub(crate) sp: Option<Member>,
    pub(crate) join: Join,
    pub(crate) bound: BTreeMap<PeerId, Addr>,
    /// When each bound peer last confirmed the binding (bind, beat or sync).
    pub(crate) bound_seen: DetMap<PeerId, Instant>,
    pub(crate) mates: BTreeMap<PeerId, Mate>,
    pub(crate) children: BTreeMap<CellId, Child>,
    pub(crate) down: DetMap<PeerId, Instant>,
    pub(crate) detector: Detector,
    pub(crate) links: Links,
    pub(crate) index: Index,
    pub(crate) saps: Vec<MySap>,
    pub(crate) sap_version: u64,
    pub(crate) routes: Routes,
    pub(crate) msg: Messaging,
    pub(crate) lookups: DetMap<u64, PendingLookup>,
    pub(crate) tx: VecDeque<Transmit>,
    pub(crate) events: VecDeque<Event>,
    pub(crate) pool: Vec<Vec<u8>>,
    /// Messages one data frame delivered, before they become events (kept, not
    /// reallocated).
    pub(crate) delivered: Vec<Delivered>,
    pub(crate) scratch: Box<[u8]>,
    /// Where outgoing frames are encoded ([`MAX_DATAGRAM`] bytes).
    pub(crate) enc: Box<[u8]>,
    pub(crate) next_tick: Instant,
    pub(crate) ticks: u64,
    pub(crate) next_refresh: Instant,
    pub(crate) next_beacon: Instant,
    pub(crate) last_promote: Instant,
    pub(crate) last_split: Instant,
    /// When excess peers were last moved to child cells.
    pub(crate) last_shed: Instant,
    pub(crate) short_since: Option<Instant>,
    /// The view (cell, version) last sent in full to the bound peers.
    pub(crate) beat_version: (CellId, u64),
    pub(crate) attach_deadline: Instant,
    pub(crate) listening: bool,
    pub(crate) dirty_links: Vec<PeerId>,
    pub(crate) stats: NodeStats,
    pub(crate) verdicts: Vec<Verdict>,
    /// Whether this super-peer was its cell's coordinator at its last tick.
    pub(crate) was_coordinator: bool,
    /// The parent cell's view this cell last adopted: (cell, version).
    pub(crate) parent_version: (CellId, u64),
    /// Until when this cell may found a child cell though it is not a root (its parent
    /// chose it to found the tree's next cell).
    pub(crate) found_until: Instant,
    /// Index snapshots recently sent (to parent members or cell mates): (peer, when).
    pub(crate) snapshots: Vec<(PeerId, Instant)>,
    /// Hash of the roster of bound peers last announced to the mates.
    pub(crate) roster_digest: u128,
    /// Beats still to carry the roster after it changed.
    pub(crate) roster_beats: u8,
    /// The view (cell, version) whose members the child beats last announced.
    pub(crate) members_sent: (CellId, u64),
    /// Child beats still to carry the members after they changed.
    pub(crate) members_beats: u8,
    /// Reused buffers (no allocation per tick).
    pub(crate) delta_scratch: Vec<super::frame::Delta>,
    pub(crate) ready_scratch: Vec<super::frame::Delta>,
    pub(crate) member_scratch: Vec<Member>,
    pub(crate) peer_scratch: Vec<PeerId>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("id", &self.me.id)
            .field("role", &self.role)
            .field("cell", &self.view.cell)
            .finish()
    }
}

impl Node {
    /// A node that has not joined yet. Fails if the config is out of range.
    pub fn new(cfg: Config) -> Result<Node, Error> {
        cfg.validate()?;
        let sec = Security::new(
            cfg.overlay,
            &cfg.key,
            cfg.encrypt,
            cfg.incarnation,
            cfg.max_senders,
        );
        let mut rng =
            Xoshiro256PlusPlus::seed_from_u64(cfg.seed ^ (cfg.incarnation as u64).rotate_left(32));
        let phase = rng.next_u64() % cfg.heartbeat;
        Ok(Node {
            me: Member {
                id: cfg.id,
                addr: cfg.addr,
            },
            sec,
            role: Role::Idle,
            view: View::default(),
            sp: None,
            join: Join::default(),
            bound: BTreeMap::new(),
            bound_seen: DetMap::default(),
            mates: BTreeMap::new(),
            children: BTreeMap::new(),
            down: DetMap::default(),
            detector: Detector::new(cfg.suspect_intervals, cfg.probe_timeout),
            links: Links::new(rng.next_u64() as u32, (cfg.incarnation as u64) << 40),
            index: Index::new(cfg.max_index),
            saps: Vec::new(),
            sap_version: (cfg.incarnation as u64) << 40,
            routes: Routes::new(cfg.route_ttl, cfg.max_routes),
            msg: Messaging::new(cfg.messaging, cfg.classes.clone()),
            lookups: DetMap::default(),
            tx: VecDeque::new(),
            events: VecDeque::new(),
            pool: Vec::new(),
            delivered: Vec::new(),
            scratch: vec![0u8; MAX_PAYLOAD].into_boxed_slice(),
            enc: vec![0u8; MAX_DATAGRAM].into_boxed_slice(),
            next_tick: Instant(phase),
            ticks: 0,
            next_refresh: Instant::NEVER,
            next_beacon: Instant::NEVER,
            last_promote: Instant::ZERO,
            last_split: Instant::ZERO,
            last_shed: Instant::ZERO,
            short_since: None,
            beat_version: (CellId::NONE, 0),
            attach_deadline: Instant::ZERO,
            listening: false,
            dirty_links: Vec::new(),
            stats: NodeStats::default(),
            verdicts: Vec::new(),
            was_coordinator: false,
            parent_version: (CellId::NONE, 0),
            found_until: Instant::ZERO,
            snapshots: Vec::new(),
            roster_digest: 0,
            roster_beats: 0,
            members_sent: (CellId::NONE, 0),
            members_beats: 0,
            delta_scratch: Vec::new(),
            ready_scratch: Vec::new(),
            member_scratch: Vec::new(),
            peer_scratch: Vec::new(),
            rng,
            cfg,
        })
    }

    // ---- accessors -------------------------------------------------------------------

    /// This peer.
    pub fn me(&self) -> Member {
        self.me
    }
    /// Current role.
    pub fn role(&self) -> Role {
        self.role
    }
    /// The cell view (a peer's: of the cell it is bound to).
    pub fn view(&self) -> &View {
        &self.view
    }
    /// The super-peer this peer is bound to (peers only).
    pub fn super_peer(&self) -> Option<Member> {
        self.sp
    }
    /// Peers bound to this super-peer.
    pub fn bound_peers(&self) -> impl Iterator<Item = PeerId> + '_ {
        self.bound.keys().copied()
    }
    /// Child cells this super-peer hears from.
    pub fn child_cells(&self) -> impl Iterator<Item = CellId> + '_ {
        self.children.keys().copied()
    }
    /// The live record for `key` in this super-peer's index.
    pub fn index_record(&self, key: u128, now: Instant) -> Option<super::discovery::Record> {
        self.index.get(key, now).copied()
    }
    /// Every record in this super-peer's index (live or not yet expired-swept).
    pub fn index_records(&self) -> impl Iterator<Item = (&u128, &super::discovery::Record)> {
        self.index.iter()
    }
    /// Records in this super-peer's index.
    pub fn index_len(&self) -> usize {
        self.index.len()
    }
    /// When the periodic tick (heartbeats, resends, refresh) is next due. A driver that
    /// runs the tick from a periodic task of its own uses it to keep its timer for
    /// everything else.
    pub fn next_tick(&self) -> Instant {
        self.next_tick
    }
    /// Whether this node wants the overlay group's multicast traffic.
    pub fn listens_to_group(&self) -> bool {
        self.listening
    }
    /// Traffic counters.
    pub fn stats(&self) -> NodeStats {
        self.stats
    }
    /// Security drop counters.
    pub fn security(&self) -> DropCounters {
        self.sec.counters()
    }
    /// Messaging counters.
    pub fn messaging(&self) -> super::messaging::MessagingStats {
        self.msg.stats()
    }
    /// The config.
    pub fn config(&self) -> &Config {
        &self.cfg
    }
    /// How long `id` has been silent, if this node's failure detector watches it.
    pub fn silence(&self, id: PeerId, now: Instant) -> Option<u64> {
        self.detector.silent_for(id, now)
    }
    /// Whether this node declared `id` down within the last ten seconds.
    pub fn believes_down(&self, id: PeerId) -> bool {
        self.down.contains_key(&id)
    }
    /// Whether this super-peer is its cell's coordinator (lowest live id).
    pub fn is_coordinator(&self) -> bool {
        self.role == Role::SuperPeer && self.coordinator() == Some(self.me.id)
    }

    pub(crate) fn coordinator(&self) -> Option<PeerId> {
        self.view
            .members
            .iter()
            .map(|m| m.id)
            .find(|id| !self.down.contains_key(id))
    }

    pub(crate) fn nonce(&mut self) -> u64 {
        self.rng.next_u64()
    }

    // ---- outputs ---------------------------------------------------------------------

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.tx.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Give a delivered message's buffer ([`Event::Message`]) back for reuse, once the
    /// application has seen it: the steady state then allocates nothing per message.
    pub fn recycle_message(&mut self, bytes: Vec<u8>) {
        self.msg.recycle(bytes);
    }

    /// Give a transmitted datagram's buffer back for reuse.
    pub fn recycle(&mut self, buf: Vec<u8>) {
        if self.pool.len() < 64 && buf.capacity() >= MAX_DATAGRAM {
            self.pool.push(buf);
        }
    }

    /// When to call [`Node::handle_timeout`] next (`None` when idle or left).
    pub fn poll_timeout(&self) -> Option<Instant> {
        if matches!(self.role, Role::Idle | Role::Left) {
            return None;
        }
        let mut t = self
            .next_tick
            .min(self.detector.next_deadline())
            .min(self.msg.poll_timeout());
        if let Some(d) = self.join.deadline {
            t = t.min(d);
        }
        for l in self.lookups.values() {
            t = t.min(l.deadline);
        }
        Some(t)
    }

    /// Encode, seal and queue `frame` for `dest` (the peer `dest_id` at `to`).
    pub(crate) fn emit(&mut self, to: Addr, dest_id: PeerId, class: u8, frame: &Frame) {
        let mut buf = self
            .pool
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(MAX_DATAGRAM));
        if seal_frame(
            &mut self.sec,
            &mut self.enc,
            &mut buf,
            self.me.id,
            dest_id,
            class,
            frame,
        )
        .is_ok()
        {
            self.stats.tx_datagrams += 1;
            self.stats.tx_bytes += buf.len() as u64;
            if !matches!(
                frame,
                Frame::Data { .. } | Frame::Ack { .. } | Frame::Routed { .. }
            ) {
                self.stats.tx_control_bytes += buf.len() as u64;
                self.stats.tx_control_by_type[frame.frame_type() as usize] += buf.len() as u64;
            }
            self.tx.push_back(Transmit {
                dest: to,
                bytes: buf,
            });
        } else {
            self.pool.push(buf);
        }
    }

    /// Send to a member.
    pub(crate) fn emit_to(&mut self, m: Member, frame: &Frame) {
        self.emit(m.addr, m.id, 0, frame);
    }

    // ---- inputs ----------------------------------------------------------------------

    /// A datagram arrived from `from`.
    pub fn handle_datagram(&mut self, from: Addr, bytes: &[u8], now: Instant) {
        self.stats.rx_datagrams += 1;
        if matches!(self.role, Role::Idle | Role::Left) {
            return;
        }
        let mut scratch = std::mem::take(&mut self.scratch);
        if let Ok((h, payload)) = self.sec.open(bytes, &mut scratch) {
            if let Some(p) = self.sec.take_restarted() {
                self.msg.reset_peer(p);
            }
            if h.dest != PeerId::NONE && h.dest != self.me.id {
                self.stats.misdirected += 1;
            } else {
                match Frame::decode(h.msg_type, payload) {
                    Ok(frame) => {
                        // routes are learnt from application traffic (and lookup answers);
                        // control peers are known through the cell structure already
                        if matches!(
                            frame,
                            Frame::Data { .. } | Frame::Ack { .. } | Frame::Routed { .. }
                        ) {
                            self.routes.learn(h.sender, from, now);
                        }
                        self.on_frame(h.sender, from, h.class, &frame, now);
                    }
                    Err(_) => self.sec.count_malformed(),
                }
            }
        }
        self.scratch = scratch;
        self.flush(now);
    }

    /// Dispatch a decoded frame. It is borrowed (a frame value is large: it holds views
    /// and member lists inline); handlers copy what they keep.
    fn on_frame(&mut self, from: PeerId, addr: Addr, class: u8, frame: &Frame, now: Instant) {
        let sender = Member { id: from, addr };
        match *frame {
            Frame::Solicit { nonce, .. } => self.on_solicit(sender, nonce, now),
            Frame::Offer {
                nonce,
                kind,
                cell,
                root,
                depth,
                ref members,
                ..
            } => self.on_offer(sender, nonce, kind, cell, root, depth, members.clone(), now),
            Frame::Bind { nonce, .. } => self.on_bind(sender, nonce, now),
            Frame::BindAck { nonce, ref view } => {
                self.on_bind_ack(sender, nonce, view.clone(), now)
            }
            Frame::Unbind { leaving, .. } => self.on_unbind(sender, leaving, now),
            Frame::PeerBeat { cell, version } => self.on_peer_beat(sender, cell, version, now),
            Frame::SpBeat {
                ref view,
                ack,
                bound,
            } => self.on_sp_beat(sender, view.clone(), ack, bound, now),
            Frame::CellBeat {
                cell,
                version,
                ack,
                bound_count,
                has_roster,
                bound,
                ..
            } => self.on_cell_beat(
                sender,
                cell,
                version,
                ack,
                bound_count,
                has_roster.then_some(bound),
                now,
            ),
            Frame::CellView { ref view } => self.on_cell_view(sender, view.clone(), now),
            Frame::ChildBeat {
                child,
                ref members,
                peers,
                free,
                open_depth,
                parent,
                parent_version,
                sync_epoch,
                sync_upto,
                index_len,
                index_digest,
            } => self.on_child_beat(
                sender,
                child,
                members,
                peers,
                free,
                open_depth,
                (parent, parent_version),
                (sync_epoch, sync_upto),
                super::discovery::Digest {
                    len: index_len,
                    sum: index_digest,
                },
                now,
            ),
            Frame::ParentBeat {
                ref view,
                found,
                ack,
                known,
            } => self.on_parent_beat(sender, view.as_ref(), found, ack, known, now),
            Frame::Attach {
                nonce,
                cell,
                ref members,
                root,
                peers,
            } => self.on_attach(sender, nonce, cell, members.clone(), root, peers, now),
            Frame::Beacon {
                root, ref members, ..
            } => self.on_beacon(root, members, now),
            Frame::Probe { nonce, cell, rel } => {
                let related = self.related(from, cell, rel);
                self.emit_to(sender, &Frame::ProbeAck { nonce, related });
            }
            Frame::ProbeAck { related, .. } => {
                if related {
                    self.detector.heard(from, now);
                }
            }
            Frame::Lookup {
                req,
                key,
                requester,
                hops,
            } => self.on_lookup(req, key, requester, hops, now),
            Frame::LookupReply {
                req,
                key,
                found,
                hops,
                ..
            } => self.on_lookup_reply(req, key, found, hops, now),
            Frame::Sync {
                epoch,
                base,
                first,
                ack,
                ref deltas,
            } => self.on_sync(sender, epoch, base, first, ack, deltas, now),
            Frame::Data {
                seq,
                msg,
                frag,
                frags,
                bytes,
            } => {
                let mut out = std::mem::take(&mut self.delivered);
                self.msg
                    .on_data(from, class, seq, msg, frag, frags, bytes, now, &mut out);
                self.events.extend(out.drain(..).map(Event::Message));
                self.delivered = out;
            }
            Frame::Ack { next, sack } => self.msg.on_ack(from, class, next, sack, now),
            Frame::Routed {
                origin,
                dest,
                ttl,
                class,
                inner,
                body,
            } => self.on_routed(origin, dest, ttl, class, inner, body, now),
            Frame::Leave { .. } => self.on_leave(sender, now),
        }
    }

    /// Time passed: run every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if matches!(self.role, Role::Idle | Role::Left) {
            return;
        }
        if now >= self.next_tick {
            // an ordinary peer's duties come every few periods (its beat, resends,
            // refresh); its failure detector wakes it on its own deadlines
            let period = if self.role == Role::Peer {
                self.cfg.heartbeat * self.cfg.peer_beat_every as u64
            } else {
                self.cfg.heartbeat
            };
            while self.next_tick <= now {
                self.next_tick = self.next_tick.after(period);
            }
            self.ticks += 1;
            self.on_tick(now);
        }
        let mut verdicts = std::mem::take(&mut self.verdicts);
        self.detector.check(now, &mut verdicts);
        for v in verdicts.drain(..) {
            match v {
                Verdict::Probe(id, addr) => {
                    let nonce = self.nonce();
                    let m = Member { id, addr };
                    let cell = self.view.cell;
                    let rel = self.relation_of(id) as u8;
                    // three probes at once: under loss, one answer is enough
                    for _ in 0..3 {
                        self.emit_to(m, &Frame::Probe { nonce, cell, rel });
                    }
                }
                Verdict::Down(id, phi) => self.on_down(id, phi, now),
            }
        }
        self.verdicts = verdicts;
        if self.join.deadline.is_some_and(|d| d <= now) {
            self.join.deadline = None;
            self.on_join_timeout(now);
        }
        self.lookup_timeouts(now);
        self.msg.handle_timeout(now);
        while let Some(f) = self.msg.poll_failed() {
            self.events.push_back(Event::Undeliverable {
                to: f.to,
                class: f.class,
            });
        }
        self.flush(now);
    }

    fn on_tick(&mut self, now: Instant) {
        // tombstones expire after ten seconds, except for peers still named in the view
        // (they must stay excluded until the coordinator drops them or they beat again)
        let view = &self.view;
        self.down.retain(|id, t| {
            now.since(*t) < 10_000_000_000
                || view
                    .members
                    .iter()
                    .chain(view.parent_members.iter())
                    .any(|m| m.id == *id)
        });
        match self.role {
            Role::Peer => self.peer_tick(now),
            Role::SuperPeer => self.sp_tick(now),
            _ => {}
        }
        if now >= self.next_refresh {
            self.next_refresh = now.after(self.cfg.lease / 3);
            self.republish(now);
        }
        if self.ticks.is_multiple_of(40) {
            self.routes.age(now);
            self.expire_records(now);
        }
        // resend what stayed unacknowledged for two periods (an ack comes within one:
        // on a beat, or alone), and pay the acks no beat carried
        let mut peers = std::mem::take(&mut self.peer_scratch);
        peers.clear();
        // a bound peer's acks come with its super-peer's beats, every few periods
        let rto = match self.role {
            Role::Peer => (self.cfg.peer_beat_every as u64 + 2) * self.cfg.heartbeat,
            _ => 2 * self.cfg.heartbeat,
        };
        self.links
            .due_for_resend(Instant(now.0.saturating_sub(rto)), &mut peers);
        for &p in peers.iter() {
            self.send_sync(p, true, now);
        }
        peers.clear();
        self.links.take_owed(&mut peers);
        for &p in peers.iter() {
            if self.bound.contains_key(&p) {
                continue; // its next beat from here carries the ack
            }
            if let Some(addr) = self.addr_of(p) {
                let f = Frame::Sync {
                    epoch: 0,
                    base: 0,
                    first: 0,
                    ack: self.links.acked(p),
                    deltas: heapless::Vec::new(),
                };
                self.emit(addr, p, 0, &f);
            }
        }
        self.peer_scratch = peers;
    }

    /// Emit queued messaging frames and immediate syncs.
    pub(crate) fn flush(&mut self, now: Instant) {
        while let Some(p) = self.dirty_links.pop() {
            self.send_sync(p, false, now);
        }
        if !self.msg.has_output() {
            return;
        }
        let mut buf = [0u8; MAX_PAYLOAD];
        loop {
            let mut pending: Option<(PeerId, u8, u8, usize)> = None;
            let more = self.msg.emit_one(now, &mut |o: Outgoing<'_>| {
                let Outgoing::Frame { to, class, frame } = o;
                let mut w = Writer::new(&mut buf);
                if frame.encode(&mut w).is_ok() {
                    pending = Some((to, class, frame.frame_type() as u8, w.len()));
                }
            });
            if !more {
                break;
            }
            if let Some((to, class, ty, len)) = pending {
                self.send_app(to, class, ty, &buf[..len], now);
            }
        }
    }

    /// Send an application frame body (already encoded) directly or along the tree.
    fn send_app(&mut self, to: PeerId, class: u8, ty: u8, body: &[u8], now: Instant) {
        let frame = match Frame::decode(ty, body) {
            Ok(f) => f,
            Err(_) => return,
        };
        if let Some(addr) = self.direct(to, now) {
            self.emit(addr, to, class, &frame);
            return;
        }
        let routed = Frame::Routed {
            origin: self.me,
            dest: to,
            ttl: 32,
            class,
            inner: ty,
            body,
        };
        match self.next_hop_up() {
            Some(hop) => self.emit(hop.addr, hop.id, class, &routed),
            None => self.stats.unroutable += 1,
        }
    }

    /// A direct address for `id`, if known.
    pub(crate) fn direct(&self, id: PeerId, now: Instant) -> Option<Addr> {
        if let Some(a) = self.routes.get(id, now) {
            return Some(a);
        }
        // cell mates, the super-peer, bound peers, parent and child members
        if let Some(a) = self.addr_of(id) {
            return Some(a);
        }
        self.index.owner_addr(id)
    }

    /// Where to send something going up the tree: a peer's super-peer, a super-peer's
    /// live parent member.
    pub(crate) fn next_hop_up(&self) -> Option<Member> {
        match self.role {
            Role::Peer => self.sp,
            Role::SuperPeer => self
                .view
                .parent_members
                .iter()
                .copied()
                .find(|m| !self.down.contains_key(&m.id)),
            _ => None,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn on_routed(
        &mut self,
        origin: Member,
        dest: PeerId,
        ttl: u8,
        class: u8,
        inner: u8,
        body: &[u8],
        now: Instant,
    ) {
        if dest == self.me.id {
            self.routes.learn(origin.id, origin.addr, now);
            if let Ok(f) = Frame::decode(inner, body) {
                match f {
                    Frame::Data {
                        seq,
                        msg,
                        frag,
                        frags,
                        bytes,
                    } => {
                        let mut out = std::mem::take(&mut self.delivered);
                        self.msg.on_data(
                            origin.id, class, seq, msg, frag, frags, bytes, now, &mut out,
                        );
                        self.events.extend(out.drain(..).map(Event::Message));
                        self.delivered = out;
                    }
                    Frame::Ack { next, sack } => self.msg.on_ack(origin.id, class, next, sack, now),
                    _ => self.sec.count_malformed(),
                }
            }
            return;
        }
        if ttl == 0 {
            self.stats.unroutable += 1;
            return;
        }
        let fwd = Frame::Routed {
            origin,
            dest,
            ttl: ttl - 1,
            class,
            inner,
            body,
        };
        if let Some(addr) = self.direct(dest, now) {
            self.emit(addr, PeerId::NONE, class, &fwd);
        } else if let Some(hop) = self.next_hop_up() {
            self.emit(hop.addr, hop.id, class, &fwd);
        } else {
            self.stats.unroutable += 1;
        }
    }

    // ---- commands --------------------------------------------------------------------

    /// Send `bytes` to `to` in QoS class `class`: directly when its address is known,
    /// otherwise along the cell tree. Fails without side effects on an unknown class, an
    /// oversized message or a full queue.
    pub fn send(&mut self, to: PeerId, class: u8, bytes: &[u8], now: Instant) -> Result<(), Error> {
        if !matches!(self.role, Role::Peer | Role::SuperPeer) {
            return Err(Error::Command {
                what: "send",
                why: "not joined; call join() and wait for Event::Joined",
            });
        }
        self.msg.send(to, class, bytes, now)?;
        self.flush(now);
        Ok(())
    }

    /// Learn that `id` is at `addr` (from a lookup answer, say), enabling direct sends.
    pub fn add_route(&mut self, id: PeerId, addr: Addr, now: Instant) {
        self.routes.learn(id, addr, now);
    }

    /// What `id` is to this node.
    fn relation_of(&self, id: PeerId) -> Relation {
        if self.role == Role::SuperPeer && self.view.members.iter().any(|m| m.id == id) {
            Relation::Mate
        } else if self.bound.contains_key(&id) {
            Relation::BoundPeer
        } else if self.sp.is_some_and(|s| s.id == id) {
            Relation::SuperPeer
        } else if self.view.parent_members.iter().any(|m| m.id == id) {
            Relation::Parent
        } else {
            Relation::None
        }
    }

    /// Whether this node still holds the converse of relation `rel` with `prober` of
    /// cell `cell` (a live peer that moved elsewhere must not pass a probe).
    fn related(&self, prober: PeerId, cell: CellId, rel: u8) -> bool {
        let sp = self.role == Role::SuperPeer;
        match rel {
            r if r == Relation::Mate as u8 => {
                sp && cell == self.view.cell && self.view.members.iter().any(|m| m.id == prober)
            }
            r if r == Relation::BoundPeer as u8 => self.sp.is_some_and(|s| s.id == prober),
            r if r == Relation::SuperPeer as u8 => sp && self.bound.contains_key(&prober),
            r if r == Relation::Parent as u8 => sp && self.children.contains_key(&cell),
            _ => false,
        }
    }

    /// Handle a peer declared down by the detector.
    fn on_down(&mut self, id: PeerId, phi: f64, now: Instant) {
        self.events.push_back(Event::PeerDown { peer: id, phi });
        self.down.insert(id, now);
        self.routes.forget(id);
        self.drop_link(id);
        // Application streams survive a verdict (it may be false under loss); they are
        // reset only when the peer is seen to restart, or when they give up by themselves.
        match self.role {
            Role::Peer if self.sp.is_some_and(|s| s.id == id) => self.start_rebind(now),
            Role::SuperPeer => self.sp_on_down(id, now),
            _ => {}
        }
    }

    /// Send `to` its deltas in sync frames, within the link's window: only those not
    /// sent yet, or (`resend`, on a retransmission timeout) every unacknowledged one
    /// from the oldest.
    pub(crate) fn send_sync(&mut self, to: PeerId, resend: bool, now: Instant) {
        let Some(addr) = self.addr_of(to) else {
            return;
        };
        let ack = self.links.ack_for(to);
        let mut after = if resend { 0 } else { self.links.sent_upto(to) };
        let mut last = None;
        for _ in 0..8 {
            let mut deltas = heapless::Vec::new();
            let Some((base, first)) = self.links.batch_after(to, after, &mut deltas) else {
                break;
            };
            after = first + deltas.len() as u64 - 1;
            last = Some(after);
            let f = Frame::Sync {
                epoch: self.links.epoch(to),
                base,
                first,
                ack,
                deltas,
            };
            self.emit(addr, to, 0, &f);
        }
        if let Some(upto) = last {
            self.links.mark_sent(to, upto, now);
        }
    }

    /// The address of a peer this node has a relationship with.
    pub(crate) fn addr_of(&self, id: PeerId) -> Option<Addr> {
        if let Some(s) = self.sp
            && s.id == id
        {
            return Some(s.addr);
        }
        if let Some(a) = self.bound.get(&id) {
            return Some(*a);
        }
        for m in self
            .view
            .members
            .iter()
            .chain(self.view.parent_members.iter())
        {
            if m.id == id {
                return Some(m.addr);
            }
        }
        for c in self.children.values() {
            for m in &c.members {
                if m.id == id {
                    return Some(m.addr);
                }
            }
        }
        self.routes.get(id, Instant::ZERO)
    }
}

/// Encode `frame` behind a header into `buf` and seal it. The frame is encoded in
/// `enc` (at least [`MAX_DATAGRAM`] bytes, kept from call to call) and copied, so a
/// recycled buffer is never zero-filled again.
pub(crate) fn seal_frame(
    sec: &mut Security,
    enc: &mut [u8],
    buf: &mut Vec<u8>,
    me: PeerId,
    dest: PeerId,
    class: u8,
    frame: &Frame,
) -> Result<(), Error> {
    let len = {
        let have = enc.len();
        let body = enc
            .get_mut(HEADER_LEN..MAX_DATAGRAM)
            .ok_or(Error::Oversize {
                len: MAX_DATAGRAM,
                max: have,
            })?;
        let mut w = Writer::new(body);
        frame.encode(&mut w)?;
        w.len()
    };
    buf.clear();
    buf.extend_from_slice(&[0u8; HEADER_LEN]);
    buf.extend_from_slice(&enc[HEADER_LEN..HEADER_LEN + len]);
    let h = Header {
        msg_type: frame.frame_type() as u8,
        flags: if sec.encrypted() { FLAG_ENCRYPTED } else { 0 },
        class,
        len: len as u16,
        overlay: sec.overlay(),
        sender: me,
        dest,
        seq: sec.next_seq(),
    };
    let mut hb = [0u8; HEADER_LEN];
    h.write(&mut hb);
    buf[..HEADER_LEN].copy_from_slice(&hb);
    sec.seal(buf)
}

/// Frame type of a data frame, for the routed envelope.
pub const DATA: u8 = FrameType::Data as u8;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::security::OverlayKey;
    use crate::proto::wire::MAX_PAYLOAD;

    fn node(i: u8, key: u8) -> Node {
        let a = Addr(format!("10.0.0.{i}:7000").parse().unwrap());
        let g = Addr("239.7.7.7:7000".parse().unwrap());
        let mut n = Node::new(Config::new(
            PeerId(i as u128),
            a,
            g,
            9,
            OverlayKey([key; 32]),
        ))
        .unwrap();
        n.join(Instant(0)).unwrap();
        n
    }

    #[test]
    fn node_drops_and_counts_bad_datagrams_before_parsing() {
        let mut a = node(1, 7);
        let mut b = node(2, 7);
        let mut stranger = node(3, 8); // another key
        let from = a.me().addr;
        let good = a.poll_transmit().unwrap().bytes; // a's join advertisement
        let alien = stranger.poll_transmit().unwrap().bytes;
        let now = Instant(1);
        b.handle_datagram(from, &good, now);
        assert_eq!(b.security().accepted, 1);
        b.handle_datagram(from, &good, now); // replay
        b.handle_datagram(from, &good[..good.len() - 1], now); // truncated
        let mut forged = good.clone();
        *forged.last_mut().unwrap() ^= 0x40;
        b.handle_datagram(from, &forged, now); // forged MAC
        b.handle_datagram(from, &alien, now); // wrong key
        let mut oversize = good.clone();
        oversize[6..8].copy_from_slice(&(MAX_PAYLOAD as u16 + 1).to_be_bytes());
        b.handle_datagram(from, &oversize, now);
        let mut other_overlay = good.clone();
        other_overlay[8..12].copy_from_slice(&10u32.to_be_bytes());
        b.handle_datagram(from, &other_overlay, now);
        let c = b.security();
        assert_eq!(
            (
                c.accepted,
                c.replayed,
                c.truncated,
                c.forged,
                c.oversize,
                c.wrong_overlay
            ),
            (1, 1, 1, 2, 1, 1)
        );
        // none of them reached the protocol: b still only saw one advertisement, which
        // it ignores while it is itself joining
        assert_eq!(b.role(), Role::Joining);
        assert_eq!(b.stats().rx_datagrams, 7);
    }

    #[test]
    fn commands_before_join_are_refused_without_side_effects() {
        let a = Addr("10.0.0.1:7000".parse().unwrap());
        let mut n = Node::new(Config::new(PeerId(1), a, a, 9, OverlayKey([1; 32]))).unwrap();
        assert!(n.lookup(1, Instant(0)).is_err());
        assert!(n.send(PeerId(2), 1, b"x", Instant(0)).is_err());
        assert!(n.leave(Instant(0)).is_err());
        assert!(n.poll_transmit().is_none());
        assert_eq!(n.poll_timeout(), None);
        assert!(Node::new(Config::new(PeerId(0), a, a, 9, OverlayKey([1; 32]))).is_err());
    }

    #[test]
    fn a_lone_peer_founds_a_root_and_answers_its_own_lookups() {
        let mut n = node(1, 7);
        let mut now = Instant(0);
        while n.role() != Role::SuperPeer {
            now = n.poll_timeout().unwrap();
            n.handle_timeout(now);
            while n.poll_transmit().is_some() {}
        }
        n.publish(42, 1, now).unwrap();
        let req = n.lookup(42, now).unwrap();
        let miss = n.lookup(43, now).unwrap();
        let mut done = Vec::new();
        while let Some(e) = n.poll_event() {
            if let Event::LookupDone {
                req, found, msgs, ..
            } = e
            {
                done.push((req, found.map(|f| f.0.id), msgs));
            }
        }
        assert!(done.contains(&(req, Some(PeerId(1)), 0)));
        assert!(
            done.contains(&(miss, None, 0)),
            "the root gives a definite not-found"
        );
    }
}
