//! Frame bodies: what follows the fixed header, one variant per message type.
//!
//! Lists are bounded (`heapless::Vec`) and byte payloads are borrowed from the datagram,
//! so decoding never allocates. Every decode consumes the whole body or fails.

use heapless::Vec as BVec;

use super::id::{Addr, CellId, Member, PeerId};
use super::wire::{Reader, Writer};
use crate::error::Error;

/// Most members a cell view carries (cell size k is at most this).
pub const MAX_MEMBERS: usize = 8;
/// Most bound peers a super-peer lists in one roster.
pub const MAX_BOUND: usize = 32;
/// Most index deltas in one sync frame.
pub const MAX_DELTAS: usize = 16;
/// Most SAPs a super-peer advertises in an offer.
pub const MAX_SAPS: usize = 8;

/// A bounded member list.
pub type Members = BVec<Member, MAX_MEMBERS>;

/// A list of up to [`MAX_BOUND`] members inside a frame, without copying it: the
/// sender's members when encoding, the datagram's bytes (checked, decoded on demand)
/// when decoding. A roster of 32 members kept inline would make every frame value 1.5 KB
/// to move.
#[derive(Clone, Copy, Debug)]
pub enum MemberList<'a> {
    /// Members to encode.
    Slice(&'a [Member]),
    /// Encoded members: `bytes` holds exactly `bytes.len() / MEMBER_LEN` of them.
    Wire(&'a [u8]),
}

impl<'a> MemberList<'a> {
    /// Number of members.
    pub fn len(&self) -> usize {
        match self {
            MemberList::Slice(m) => m.len(),
            MemberList::Wire(b) => b.len() / MEMBER_LEN,
        }
    }
    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The members, in order.
    pub fn iter(&self) -> impl Iterator<Item = Member> + 'a {
        let (slice, wire): (&'a [Member], &'a [u8]) = match *self {
            MemberList::Slice(m) => (m, &[]),
            MemberList::Wire(b) => (&[], b),
        };
        slice
            .iter()
            .copied()
            .chain(wire.chunks_exact(MEMBER_LEN).map(|c| {
                // a chunk of MEMBER_LEN bytes always holds one member
                let mut r = Reader::new(c);
                get_member(&mut r).unwrap_or_default()
            }))
    }
}

impl PartialEq for MemberList<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}
impl Eq for MemberList<'_> {}

/// Encoded size of one member.
pub const MEMBER_LEN: usize = 16 + Addr::WIRE_LEN;

/// Frame type codes (the header's `msg_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum FrameType {
    /// [`Frame::Solicit`]
    Solicit = 1,
    /// [`Frame::Offer`]
    Offer = 2,
    /// [`Frame::Bind`]
    Bind = 3,
    /// [`Frame::BindAck`]
    BindAck = 4,
    /// [`Frame::Unbind`]
    Unbind = 5,
    /// [`Frame::PeerBeat`]
    PeerBeat = 6,
    /// [`Frame::SpBeat`]
    SpBeat = 7,
    /// [`Frame::CellBeat`]
    CellBeat = 8,
    /// [`Frame::CellView`]
    CellView = 9,
    /// [`Frame::ChildBeat`]
    ChildBeat = 10,
    /// [`Frame::ParentBeat`]
    ParentBeat = 11,
    /// [`Frame::Attach`]
    Attach = 12,
    /// [`Frame::Beacon`]
    Beacon = 13,
    /// [`Frame::Probe`]
    Probe = 14,
    /// [`Frame::ProbeAck`]
    ProbeAck = 15,
    /// [`Frame::Lookup`]
    Lookup = 16,
    /// [`Frame::LookupReply`]
    LookupReply = 17,
    /// [`Frame::Sync`]
    Sync = 18,
    /// [`Frame::Data`]
    Data = 19,
    /// [`Frame::Ack`]
    Ack = 20,
    /// [`Frame::Routed`]
    Routed = 21,
    /// [`Frame::Leave`]
    Leave = 22,
}

impl FrameType {
    /// The type with header code `code`, if any.
    pub fn from_u8(code: u8) -> Option<FrameType> {
        Some(match code {
            1 => FrameType::Solicit,
            2 => FrameType::Offer,
            3 => FrameType::Bind,
            4 => FrameType::BindAck,
            5 => FrameType::Unbind,
            6 => FrameType::PeerBeat,
            7 => FrameType::SpBeat,
            8 => FrameType::CellBeat,
            9 => FrameType::CellView,
            10 => FrameType::ChildBeat,
            11 => FrameType::ParentBeat,
            12 => FrameType::Attach,
            13 => FrameType::Beacon,
            14 => FrameType::Probe,
            15 => FrameType::ProbeAck,
            16 => FrameType::Lookup,
            17 => FrameType::LookupReply,
            18 => FrameType::Sync,
            19 => FrameType::Data,
            20 => FrameType::Ack,
            21 => FrameType::Routed,
            22 => FrameType::Leave,
            _ => return None,
        })
    }

    /// The type's name, as in [`Frame`].
    pub fn name(self) -> &'static str {
        match self {
            FrameType::Solicit => "Solicit",
            FrameType::Offer => "Offer",
            FrameType::Bind => "Bind",
            FrameType::BindAck => "BindAck",
            FrameType::Unbind => "Unbind",
            FrameType::PeerBeat => "PeerBeat",
            FrameType::SpBeat => "SpBeat",
            FrameType::CellBeat => "CellBeat",
            FrameType::CellView => "CellView",
            FrameType::ChildBeat => "ChildBeat",
            FrameType::ParentBeat => "ParentBeat",
            FrameType::Attach => "Attach",
            FrameType::Beacon => "Beacon",
            FrameType::Probe => "Probe",
            FrameType::ProbeAck => "ProbeAck",
            FrameType::Lookup => "Lookup",
            FrameType::LookupReply => "LookupReply",
            FrameType::Sync => "Sync",
            FrameType::Data => "Data",
            FrameType::Ack => "Ack",
            FrameType::Routed => "Routed",
            FrameType::Leave => "Leave",
        }
    }
}

/// What an [`Frame::Offer`] offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OfferKind {
    /// Bind to one of these super-peers as an ordinary peer.
    Peer = 0,
    /// The cell is short of members: join it as a super-peer.
    SuperPeer = 1,
    /// No room here: ask this cell instead.
    Redirect = 2,
    /// (Cell attach) accepted: the asking cell is now a child of this one.
    Attached = 3,
}

/// What a probed peer is to the prober.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Relation {
    /// A member of the prober's cell.
    Mate = 0,
    /// A peer bound to the prober.
    BoundPeer = 1,
    /// The prober's super-peer.
    SuperPeer = 2,
    /// A member of the prober's parent cell.
    Parent = 3,
    /// Nothing known.
    None = 255,
}

/// One SAP a super-peer offers: a QoS class and the address serving it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sap {
    /// QoS class.
    pub class: u8,
    /// Whether the class is reliable.
    pub reliable: bool,
    /// Priority (higher is more urgent).
    pub priority: u8,
    /// Address serving the class.
    pub addr: Addr,
}

/// A cell's view as its coordinator published it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct View {
    /// The cell.
    pub cell: CellId,
    /// Version: raised by the coordinator at every change.
    pub version: u64,
    /// Super-peers (sorted by id).
    pub members: Members,
    /// Parent cell (`CellId::NONE` at the root).
    pub parent: CellId,
    /// Parent cell's super-peers.
    pub parent_members: Members,
    /// The tree's root cell.
    pub root: CellId,
    /// Depth of this cell (root = 0).
    pub depth: u8,
}

/// What a [`Delta`] does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Op {
    /// Withdraw the sender's record for the key (versions up to the delta's).
    Remove = 0,
    /// Add, update or refresh the record.
    Add = 1,
    /// A snapshot of everything the sender holds follows, up to [`Op::End`]: the
    /// receiver then drops the records it learnt from the sender's side that the
    /// snapshot did not repeat. Key, owner and version are unused.
    Begin = 2,
    /// End of a snapshot (see [`Op::Begin`]).
    End = 3,
}

/// One change to the discovery index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delta {
    /// What the delta does.
    pub op: Op,
    /// Service/SAP key.
    pub key: u128,
    /// Owner and its address.
    pub owner: Member,
    /// QoS class of the SAP.
    pub class: u8,
    /// Owner's publication version; a removal removes only versions ≤ this.
    pub version: u64,
    /// Lease left, in milliseconds.
    pub lease_ms: u32,
}

/// A decoded frame body. Byte slices borrow from the datagram.
// Bounded lists live inline so decoding never allocates; a frame is a short-lived stack value.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// Join request (multicast or unicast). `attach` is NONE for a peer, or the asking
    /// cell's id when a whole cell (an orphaned subtree) looks for a parent.
    Solicit {
        /// Echoed in the answer.
        nonce: u64,
        /// The attaching cell, or NONE.
        attach: CellId,
        /// The asking tree's root (a cell must not attach into its own tree).
        root: CellId,
    },
    /// Answer to a solicit, bind or attach.
    Offer {
        /// Echoed nonce.
        nonce: u64,
        /// What is offered.
        kind: OfferKind,
        /// Cell offered (or redirected to).
        cell: CellId,
        /// Its tree's root.
        root: CellId,
        /// Its depth.
        depth: u8,
        /// Its super-peers.
        members: Members,
        /// The answering super-peer's SAPs with their QoS policies.
        saps: BVec<Sap, MAX_SAPS>,
    },
    /// Peer → super-peer: bind me.
    Bind {
        /// Echoed.
        nonce: u64,
        /// The cell the peer believes it binds to.
        cell: CellId,
    },
    /// Super-peer → peer: bound; here is the cell.
    BindAck {
        /// Echoed.
        nonce: u64,
        /// The cell's view.
        view: View,
    },
    /// Peer → super-peer: unbind (leaving, or promoted).
    Unbind {
        /// The cell.
        cell: CellId,
        /// The peer leaves the overlay rather than moving (either way the super-peer
        /// withdraws the records it holds for it).
        leaving: bool,
    },
    /// Peer → its super-peer: alive, and which version of the cell's view it holds (the
    /// super-peer answers with the view when it is stale).
    PeerBeat {
        /// The cell the peer is bound to.
        cell: CellId,
        /// Version of that cell's view the peer holds.
        version: u64,
    },
    /// Super-peer → bound peer: alive, the sync ack, and the cell's view when it changed
    /// (or when the peer's beat showed an older one).
    SpBeat {
        /// Cell view, when sent.
        view: Option<View>,
        /// Highest contiguous index delta received from this peer.
        ack: u64,
        /// Whether the receiver is (still) bound here.
        bound: bool,
    },
    /// Super-peer → cell mate: alive; roster of bound peers (every few beats).
    CellBeat {
        /// The cell.
        cell: CellId,
        /// Sender's view version.
        version: u64,
        /// Highest contiguous delta received from the receiver.
        ack: u64,
        /// Number of peers bound to the sender.
        bound_count: u16,
        /// Whether `bound` lists the roster.
        has_roster: bool,
        /// Bound peers (when `has_roster`), at most [`MAX_BOUND`].
        bound: MemberList<'a>,
        /// Children cells the sender heard from in the last beats.
        children: u8,
    },
    /// Coordinator → members (and promoted peers): the cell's view.
    CellView {
        /// The view.
        view: View,
    },
    /// Child cell coordinator → parent super-peers: alive, subtree summary, which parent
    /// view it holds, and a digest of its index as of its last delta on this link.
    ChildBeat {
        /// The child.
        child: CellId,
        /// Its super-peers.
        members: Members,
        /// Peers in the child's subtree.
        peers: u32,
        /// Peers the child's subtree can still take without founding a new cell.
        free: u32,
        /// Levels below the child at which its subtree could found its shallowest new
        /// cell (1: the child itself may still split).
        open_depth: u8,
        /// The parent cell the child believes it is under.
        parent: CellId,
        /// Version of that parent cell's view the child holds (the parent answers with
        /// its view when it is stale).
        parent_version: u64,
        /// Epoch of the sender's sync link to the receiver (0: none).
        sync_epoch: u32,
        /// Last index delta sequence the sender queued on that link.
        sync_upto: u64,
        /// Records in the sender's index.
        index_len: u32,
        /// Order-independent digest of those records (see `discovery::Digest`).
        index_digest: u64,
    },
    /// Parent super-peer → child coordinator: alive, sync ack, and the parent's view when
    /// the child's beat showed an older one.
    ParentBeat {
        /// Parent's view, when sent.
        view: Option<View>,
        /// The parent chose the receiver's cell to found the tree's next cell (below it,
        /// or on the shallowest level of its subtree): it may split for a while.
        found: bool,
        /// Highest contiguous delta received from the child coordinator.
        ack: u64,
        /// Whether the parent counts the receiver's cell as its child and trusts its
        /// copy of the child's index (false asks for a snapshot).
        known: bool,
    },
    /// Orphaned cell → candidate parent: adopt us.
    Attach {
        /// Echoed.
        nonce: u64,
        /// The orphaned cell.
        cell: CellId,
        /// Its super-peers.
        members: Members,
        /// Its tree root (its own id while orphaned).
        root: CellId,
        /// Peers in its subtree.
        peers: u32,
    },
    /// Root coordinator → overlay group: this tree exists.
    Beacon {
        /// Root cell.
        root: CellId,
        /// Its super-peers.
        members: Members,
        /// Peers in the tree.
        peers: u32,
    },
    /// Are you alive, and still related to me (same cell, bound to me, my child...)?
    Probe {
        /// Echoed.
        nonce: u64,
        /// The prober's cell.
        cell: CellId,
        /// What the receiver is to the prober ([`Relation`] as a byte).
        rel: u8,
    },
    /// I am alive; `related` says whether I still see the relationship (a live peer that
    /// moved elsewhere must still be declared gone by the prober).
    ProbeAck {
        /// Echoed.
        nonce: u64,
        /// Whether the responder still sees the relationship.
        related: bool,
    },
    /// Discovery lookup, travelling up the tree.
    Lookup {
        /// Requester's id for the request.
        req: u64,
        /// Key looked up.
        key: u128,
        /// Where to answer.
        requester: Member,
        /// Messages spent so far (this one included).
        hops: u8,
    },
    /// Lookup answer, sent straight to the requester.
    LookupReply {
        /// Echoed.
        req: u64,
        /// Echoed.
        key: u128,
        /// The owner and the SAP's class, or a definite not-found.
        found: Option<(Member, u8)>,
        /// Messages spent, this reply included.
        hops: u8,
    },
    /// Reliable index sync on one link.
    Sync {
        /// Sender's incarnation (a new one restarts the link).
        epoch: u32,
        /// Oldest sequence the sender still holds (where a fresh receiver starts).
        base: u64,
        /// Sequence of the first delta.
        first: u64,
        /// Highest contiguous delta received from the receiver.
        ack: u64,
        /// The deltas.
        deltas: BVec<Delta, MAX_DELTAS>,
    },
    /// Application data (class in the header).
    Data {
        /// Stream sequence (reliable classes; 0 for best-effort).
        seq: u64,
        /// Message id (fragments of one message share it).
        msg: u32,
        /// Fragment index.
        frag: u16,
        /// Fragment count (≥ 1).
        frags: u16,
        /// Bytes.
        bytes: &'a [u8],
    },
    /// Selective ack for a reliable class (class in the header).
    Ack {
        /// Everything below this was received.
        next: u64,
        /// Bit i: `next + 1 + i` received.
        sack: u64,
    },
    /// A data or ack frame routed along the cell tree toward `dest` (no direct route yet).
    Routed {
        /// Original sender.
        origin: Member,
        /// Final destination.
        dest: PeerId,
        /// Hops left.
        ttl: u8,
        /// QoS class of the inner frame.
        class: u8,
        /// Inner frame type ([`FrameType::Data`] or [`FrameType::Ack`]).
        inner: u8,
        /// Inner frame body.
        body: &'a [u8],
    },
    /// Super-peer → cell mates and bound peers: leaving (announced, not a crash).
    Leave {
        /// The cell.
        cell: CellId,
    },
}

fn put_member(w: &mut Writer, m: &Member) -> Result<(), Error> {
    w.u128(m.id.0)?;
    let (o, p) = m.addr.to_wire();
    w.put(&o)?;
    w.u16(p)
}

fn get_member(r: &mut Reader) -> Result<Member, Error> {
    let id = PeerId(r.u128()?);
    let o = r.bytes16()?;
    let p = r.u16()?;
    Ok(Member {
        id,
        addr: Addr::from_wire(o, p),
    })
}

fn put_list<T, const N: usize>(
    w: &mut Writer,
    v: &BVec<T, N>,
    f: impl Fn(&mut Writer, &T) -> Result<(), Error>,
) -> Result<(), Error> {
    w.u8(v.len() as u8)?;
    for x in v {
        f(w, x)?;
    }
    Ok(())
}

fn get_list<T, const N: usize>(
    r: &mut Reader,
    what: &'static str,
    f: impl Fn(&mut Reader) -> Result<T, Error>,
) -> Result<BVec<T, N>, Error> {
    let n = r.u8()? as usize;
    if n > N {
        return Err(Error::Malformed { what });
    }
    let mut v = BVec::new();
    for _ in 0..n {
        v.push(f(r)?).map_err(|_| Error::Malformed { what })?;
    }
    Ok(v)
}

fn put_cell(w: &mut Writer, c: CellId) -> Result<(), Error> {
    w.u128(c.to_u128())
}

fn get_cell(r: &mut Reader) -> Result<CellId, Error> {
    Ok(CellId::from_u128(r.u128()?))
}

fn get_bool(r: &mut Reader, what: &'static str) -> Result<bool, Error> {
    match r.u8()? {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(Error::Malformed { what }),
    }
}

fn put_view(w: &mut Writer, v: &View) -> Result<(), Error> {
    put_cell(w, v.cell)?;
    w.u64(v.version)?;
    put_list(w, &v.members, put_member)?;
    put_cell(w, v.parent)?;
    put_list(w, &v.parent_members, put_member)?;
    put_cell(w, v.root)?;
    w.u8(v.depth)
}

fn get_view(r: &mut Reader) -> Result<View, Error> {
    Ok(View {
        cell: get_cell(r)?,
        version: r.u64()?,
        members: get_list(r, "view members", get_member)?,
        parent: get_cell(r)?,
        parent_members: get_list(r, "view parent members", get_member)?,
        root: get_cell(r)?,
        depth: r.u8()?,
    })
}

fn put_delta(w: &mut Writer, d: &Delta) -> Result<(), Error> {
    w.u8(d.op as u8)?;
    w.u128(d.key)?;
    put_member(w, &d.owner)?;
    w.u8(d.class)?;
    w.u64(d.version)?;
    w.u32(d.lease_ms)
}

fn get_delta(r: &mut Reader) -> Result<Delta, Error> {
    Ok(Delta {
        op: match r.u8()? {
            0 => Op::Remove,
            1 => Op::Add,
            2 => Op::Begin,
            3 => Op::End,
            _ => return Err(Error::Malformed { what: "delta op" }),
        },
        key: r.u128()?,
        owner: get_member(r)?,
        class: r.u8()?,
        version: r.u64()?,
        lease_ms: r.u32()?,
    })
}

/// Encoded size of one delta.
pub const DELTA_LEN: usize = 1 + 16 + 16 + Addr::WIRE_LEN + 1 + 8 + 4;

fn put_bytes(w: &mut Writer, b: &[u8]) -> Result<(), Error> {
    w.u16(b.len() as u16)?;
    w.put(b)
}

fn get_bytes<'a>(r: &mut Reader<'a>) -> Result<&'a [u8], Error> {
    let n = r.u16()? as usize;
    r.take(n)
}

impl<'a> Frame<'a> {
    /// The type code for the header.
    pub fn frame_type(&self) -> FrameType {
        match self {
            Frame::Solicit { .. } => FrameType::Solicit,
            Frame::Offer { .. } => FrameType::Offer,
            Frame::Bind { .. } => FrameType::Bind,
            Frame::BindAck { .. } => FrameType::BindAck,
            Frame::Unbind { .. } => FrameType::Unbind,
            Frame::PeerBeat { .. } => FrameType::PeerBeat,
            Frame::SpBeat { .. } => FrameType::SpBeat,
            Frame::CellBeat { .. } => FrameType::CellBeat,
            Frame::CellView { .. } => FrameType::CellView,
            Frame::ChildBeat { .. } => FrameType::ChildBeat,
            Frame::ParentBeat { .. } => FrameType::ParentBeat,
            Frame::Attach { .. } => FrameType::Attach,
            Frame::Beacon { .. } => FrameType::Beacon,
            Frame::Probe { .. } => FrameType::Probe,
            Frame::ProbeAck { .. } => FrameType::ProbeAck,
            Frame::Lookup { .. } => FrameType::Lookup,
            Frame::LookupReply { .. } => FrameType::LookupReply,
            Frame::Sync { .. } => FrameType::Sync,
            Frame::Data { .. } => FrameType::Data,
            Frame::Ack { .. } => FrameType::Ack,
            Frame::Routed { .. } => FrameType::Routed,
            Frame::Leave { .. } => FrameType::Leave,
        }
    }

    /// Encode the body into `w`. Fails (writing nothing useful) if it does not fit.
    pub fn encode(&self, w: &mut Writer) -> Result<(), Error> {
        match self {
            Frame::Solicit {
                nonce,
                attach,
                root,
            } => {
                w.u64(*nonce)?;
                put_cell(w, *attach)?;
                put_cell(w, *root)
            }
            Frame::Offer {
                nonce,
                kind,
                cell,
                root,
                depth,
                members,
                saps,
            } => {
                w.u64(*nonce)?;
                w.u8(*kind as u8)?;
                put_cell(w, *cell)?;
                put_cell(w, *root)?;
                w.u8(*depth)?;
                put_list(w, members, put_member)?;
                put_list(w, saps, |w, s| {
                    w.u8(s.class)?;
                    w.u8(s.reliable as u8)?;
                    w.u8(s.priority)?;
                    let (o, p) = s.addr.to_wire();
                    w.put(&o)?;
                    w.u16(p)
                })
            }
            Frame::Bind { nonce, cell } => {
                w.u64(*nonce)?;
                put_cell(w, *cell)
            }
            Frame::BindAck { nonce, view } => {
                w.u64(*nonce)?;
                put_view(w, view)
            }
            Frame::Unbind { cell, leaving } => {
                put_cell(w, *cell)?;
                w.u8(*leaving as u8)
            }
            Frame::PeerBeat { cell, version } => {
                put_cell(w, *cell)?;
                w.u64(*version)
            }
            Frame::Leave { cell } => put_cell(w, *cell),
            Frame::SpBeat { view, ack, bound } => {
                match view {
                    Some(v) => {
                        w.u8(1)?;
                        put_view(w, v)?;
                    }
                    None => w.u8(0)?,
                }
                w.u64(*ack)?;
                w.u8(*bound as u8)
            }
            Frame::CellBeat {
                cell,
                version,
                ack,
                bound_count,
                has_roster,
                bound,
                children,
            } => {
                put_cell(w, *cell)?;
                w.u64(*version)?;
                w.u64(*ack)?;
                w.u16(*bound_count)?;
                w.u8(*has_roster as u8)?;
                if bound.len() > MAX_BOUND {
                    return Err(Error::Oversize {
                        len: bound.len(),
                        max: MAX_BOUND,
                    });
                }
                w.u8(bound.len() as u8)?;
                for m in bound.iter() {
                    put_member(w, &m)?;
                }
                w.u8(*children)
            }
            Frame::CellView { view } => put_view(w, view),
            Frame::ChildBeat {
                child,
                members,
                peers,
                free,
                open_depth,
                parent,
                parent_version,
                sync_epoch,
                sync_upto,
                index_len,
                index_digest,
            } => {
                put_cell(w, *child)?;
                put_list(w, members, put_member)?;
                w.u32(*peers)?;
                w.u32(*free)?;
                w.u8(*open_depth)?;
                put_cell(w, *parent)?;
                w.u64(*parent_version)?;
                w.u32(*sync_epoch)?;
                w.u64(*sync_upto)?;
                w.u32(*index_len)?;
                w.u64(*index_digest)
            }
            Frame::ParentBeat {
                view,
                found,
                ack,
                known,
            } => {
                match view {
                    Some(v) => {
                        w.u8(1)?;
                        put_view(w, v)?;
                    }
                    None => w.u8(0)?,
                }
                w.u8(*found as u8)?;
                w.u64(*ack)?;
                w.u8(*known as u8)
            }
            Frame::Attach {
                nonce,
                cell,
                members,
                root,
                peers,
            } => {
                w.u64(*nonce)?;
                put_cell(w, *cell)?;
                put_list(w, members, put_member)?;
                put_cell(w, *root)?;
                w.u32(*peers)
            }
            Frame::Beacon {
                root,
                members,
                peers,
            } => {
                put_cell(w, *root)?;
                put_list(w, members, put_member)?;
                w.u32(*peers)
            }
            Frame::Probe { nonce, cell, rel } => {
                w.u64(*nonce)?;
                put_cell(w, *cell)?;
                w.u8(*rel)
            }
            Frame::ProbeAck { nonce, related } => {
                w.u64(*nonce)?;
                w.u8(*related as u8)
            }
            Frame::Lookup {
                req,
                key,
                requester,
                hops,
            } => {
                w.u64(*req)?;
                w.u128(*key)?;
                put_member(w, requester)?;
                w.u8(*hops)
            }
            Frame::LookupReply {
                req,
                key,
                found,
                hops,
            } => {
                w.u64(*req)?;
                w.u128(*key)?;
                match found {
                    Some((m, class)) => {
                        w.u8(1)?;
                        put_member(w, m)?;
                        w.u8(*class)?;
                    }
                    None => w.u8(0)?,
                }
                w.u8(*hops)
            }
            Frame::Sync {
                epoch,
                base,
                first,
                ack,
                deltas,
            } => {
                w.u32(*epoch)?;
                w.u64(*base)?;
                w.u64(*first)?;
                w.u64(*ack)?;
                put_list(w, deltas, put_delta)
            }
            Frame::Data {
                seq,
                msg,
                frag,
                frags,
                bytes,
            } => {
                w.u64(*seq)?;
                w.u32(*msg)?;
                w.u16(*frag)?;
                w.u16(*frags)?;
                put_bytes(w, bytes)
            }
            Frame::Ack { next, sack } => {
                w.u64(*next)?;
                w.u64(*sack)
            }
            Frame::Routed {
                origin,
                dest,
                ttl,
                class,
                inner,
                body,
            } => {
                put_member(w, origin)?;
                w.u128(dest.0)?;
                w.u8(*ttl)?;
                w.u8(*class)?;
                w.u8(*inner)?;
                put_bytes(w, body)
            }
        }
    }

    /// Decode a body of type `ty`. Any input decodes or errors; nothing panics or allocates.
    pub fn decode(ty: u8, body: &'a [u8]) -> Result<Frame<'a>, Error> {
        let mut r = Reader::new(body);
        let r = &mut r;
        let f = match ty {
            1 => Frame::Solicit {
                nonce: r.u64()?,
                attach: get_cell(r)?,
                root: get_cell(r)?,
            },
            2 => Frame::Offer {
                nonce: r.u64()?,
                kind: match r.u8()? {
                    0 => OfferKind::Peer,
                    1 => OfferKind::SuperPeer,
                    2 => OfferKind::Redirect,
                    3 => OfferKind::Attached,
                    _ => return Err(Error::Malformed { what: "offer kind" }),
                },
                cell: get_cell(r)?,
                root: get_cell(r)?,
                depth: r.u8()?,
                members: get_list(r, "offer members", get_member)?,
                saps: get_list(r, "offer saps", |r| {
                    Ok(Sap {
                        class: r.u8()?,
                        reliable: get_bool(r, "sap reliable")?,
                        priority: r.u8()?,
                        addr: {
                            let o = r.bytes16()?;
                            Addr::from_wire(o, r.u16()?)
                        },
                    })
                })?,
            },
            3 => Frame::Bind {
                nonce: r.u64()?,
                cell: get_cell(r)?,
            },
            4 => Frame::BindAck {
                nonce: r.u64()?,
                view: get_view(r)?,
            },
            5 => Frame::Unbind {
                cell: get_cell(r)?,
                leaving: get_bool(r, "unbind leaving")?,
            },
            6 => Frame::PeerBeat {
                cell: get_cell(r)?,
                version: r.u64()?,
            },
            7 => Frame::SpBeat {
                view: if get_bool(r, "sp beat view flag")? {
                    Some(get_view(r)?)
                } else {
                    None
                },
                ack: r.u64()?,
                bound: get_bool(r, "sp beat bound")?,
            },
            8 => Frame::CellBeat {
                cell: get_cell(r)?,
                version: r.u64()?,
                ack: r.u64()?,
                bound_count: r.u16()?,
                has_roster: get_bool(r, "cell beat roster flag")?,
                bound: {
                    let n = r.u8()? as usize;
                    if n > MAX_BOUND {
                        return Err(Error::Malformed {
                            what: "cell beat roster",
                        });
                    }
                    // any MEMBER_LEN bytes decode to a member: taking them is the check
                    MemberList::Wire(r.take(n * MEMBER_LEN)?)
                },
                children: r.u8()?,
            },
            9 => Frame::CellView { view: get_view(r)? },
            10 => Frame::ChildBeat {
                child: get_cell(r)?,
                members: get_list(r, "child beat members", get_member)?,
                peers: r.u32()?,
                free: r.u32()?,
                open_depth: r.u8()?,
                parent: get_cell(r)?,
                parent_version: r.u64()?,
                sync_epoch: r.u32()?,
                sync_upto: r.u64()?,
                index_len: r.u32()?,
                index_digest: r.u64()?,
            },
            11 => Frame::ParentBeat {
                view: if get_bool(r, "parent beat view flag")? {
                    Some(get_view(r)?)
                } else {
                    None
                },
                found: get_bool(r, "parent beat found")?,
                ack: r.u64()?,
                known: get_bool(r, "parent beat known")?,
            },
            12 => Frame::Attach {
                nonce: r.u64()?,
                cell: get_cell(r)?,
                members: get_list(r, "attach members", get_member)?,
                root: get_cell(r)?,
                peers: r.u32()?,
            },
            13 => Frame::Beacon {
                root: get_cell(r)?,
                members: get_list(r, "beacon members", get_member)?,
                peers: r.u32()?,
            },
            14 => Frame::Probe {
                nonce: r.u64()?,
                cell: get_cell(r)?,
                rel: r.u8()?,
            },
            15 => Frame::ProbeAck {
                nonce: r.u64()?,
                related: get_bool(r, "probe ack related")?,
            },
            16 => Frame::Lookup {
                req: r.u64()?,
                key: r.u128()?,
                requester: get_member(r)?,
                hops: r.u8()?,
            },
            17 => Frame::LookupReply {
                req: r.u64()?,
                key: r.u128()?,
                found: match r.u8()? {
                    0 => None,
                    1 => Some((get_member(r)?, r.u8()?)),
                    _ => {
                        return Err(Error::Malformed {
                            what: "lookup reply found flag",
                        });
                    }
                },
                hops: r.u8()?,
            },
            18 => Frame::Sync {
                epoch: r.u32()?,
                base: r.u64()?,
                first: r.u64()?,
                ack: r.u64()?,
                deltas: get_list(r, "sync deltas", get_delta)?,
            },
            19 => {
                let f = Frame::Data {
                    seq: r.u64()?,
                    msg: r.u32()?,
                    frag: r.u16()?,
                    frags: r.u16()?,
                    bytes: get_bytes(r)?,
                };
                if let Frame::Data { frag, frags, .. } = f
                    && (frags == 0 || frag >= frags)
                {
                    return Err(Error::Malformed {
                        what: "data fragment index",
                    });
                }
                f
            }
            20 => Frame::Ack {
                next: r.u64()?,
                sack: r.u64()?,
            },
            21 => {
                let f = Frame::Routed {
                    origin: get_member(r)?,
                    dest: PeerId(r.u128()?),
                    ttl: r.u8()?,
                    class: r.u8()?,
                    inner: r.u8()?,
                    body: get_bytes(r)?,
                };
                if let Frame::Routed { inner, .. } = f
                    && inner != FrameType::Data as u8
                    && inner != FrameType::Ack as u8
                {
                    return Err(Error::Malformed {
                        what: "routed inner frame type",
                    });
                }
                f
            }
            22 => Frame::Leave { cell: get_cell(r)? },
            _ => return Err(Error::Malformed { what: "frame type" }),
        };
        r.finish("frame (trailing bytes)")?;
        Ok(f)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::proto::wire::MAX_PAYLOAD;
    use proptest::prelude::*;

    pub(crate) fn member(i: u128) -> Member {
        Member {
            id: PeerId(i),
            addr: Addr(
                format!("10.0.{}.{}:{}", (i >> 8) & 255, i & 255, 7000 + (i % 100))
                    .parse()
                    .unwrap(),
            ),
        }
    }

    fn members(n: usize) -> Members {
        (0..n).map(|i| member(i as u128 + 1)).collect()
    }

    /// One frame of every type, with lists at their bounds where it matters.
    pub(crate) fn samples() -> Vec<Frame<'static>> {
        let view = View {
            cell: CellId::new(5, PeerId(3)),
            version: 9,
            members: members(MAX_MEMBERS),
            parent: CellId::new(1, PeerId(1)),
            parent_members: members(3),
            root: CellId::new(1, PeerId(1)),
            depth: 2,
        };
        let delta = Delta {
            op: Op::Add,
            key: 77,
            owner: member(4),
            class: 1,
            version: 3,
            lease_ms: 30_000,
        };
        vec![
            Frame::Solicit {
                nonce: 1,
                attach: CellId::NONE,
                root: CellId::new(2, PeerId(2)),
            },
            Frame::Offer {
                nonce: 2,
                kind: OfferKind::Redirect,
                cell: view.cell,
                root: view.root,
                depth: 1,
                members: members(3),
                saps: (0..MAX_SAPS as u8)
                    .map(|c| Sap {
                        class: c,
                        reliable: c % 2 == 1,
                        priority: c,
                        addr: member(9).addr,
                    })
                    .collect(),
            },
            Frame::Bind {
                nonce: 3,
                cell: view.cell,
            },
            Frame::BindAck {
                nonce: 4,
                view: view.clone(),
            },
            Frame::Unbind {
                cell: view.cell,
                leaving: true,
            },
            Frame::PeerBeat {
                cell: view.cell,
                version: 4,
            },
            Frame::SpBeat {
                view: Some(view.clone()),
                ack: 5,
                bound: true,
            },
            Frame::SpBeat {
                view: None,
                ack: 6,
                bound: false,
            },
            Frame::CellBeat {
                cell: view.cell,
                version: 3,
                ack: 4,
                bound_count: 32,
                has_roster: true,
                bound: MemberList::Slice(
                    (0..MAX_BOUND)
                        .map(|i| member(i as u128 + 100))
                        .collect::<Vec<_>>()
                        .leak(),
                ),
                children: 2,
            },
            Frame::CellView { view: view.clone() },
            Frame::ChildBeat {
                child: view.cell,
                members: members(3),
                peers: 100,
                free: 12,
                open_depth: 2,
                parent: view.parent,
                parent_version: 6,
                sync_epoch: 3,
                sync_upto: 1 << 40 | 5,
                index_len: 80,
                index_digest: 0xfeed_beef,
            },
            Frame::ParentBeat {
                view: Some(view.clone()),
                found: true,
                ack: 7,
                known: true,
            },
            Frame::ParentBeat {
                view: None,
                found: false,
                ack: 8,
                known: false,
            },
            Frame::Attach {
                nonce: 8,
                cell: view.cell,
                members: members(3),
                root: view.cell,
                peers: 50,
            },
            Frame::Beacon {
                root: view.root,
                members: members(3),
                peers: 1000,
            },
            Frame::Probe {
                nonce: 10,
                cell: view.cell,
                rel: 0,
            },
            Frame::ProbeAck {
                nonce: 11,
                related: true,
            },
            Frame::Lookup {
                req: 12,
                key: 99,
                requester: member(6),
                hops: 1,
            },
            Frame::LookupReply {
                req: 12,
                key: 99,
                found: Some((member(6), 2)),
                hops: 3,
            },
            Frame::LookupReply {
                req: 13,
                key: 98,
                found: None,
                hops: 3,
            },
            Frame::Sync {
                epoch: 1,
                base: 3,
                first: 5,
                ack: 2,
                deltas: core::iter::repeat_n(delta, MAX_DELTAS - 2)
                    .chain([
                        Delta {
                            op: Op::Begin,
                            ..delta
                        },
                        Delta {
                            op: Op::End,
                            ..delta
                        },
                    ])
                    .collect(),
            },
            Frame::Data {
                seq: 1,
                msg: 2,
                frag: 0,
                frags: 1,
                bytes: b"hello",
            },
            Frame::Ack {
                next: 5,
                sack: 0b1011,
            },
            Frame::Routed {
                origin: member(1),
                dest: PeerId(2),
                ttl: 8,
                class: 1,
                inner: 19,
                body: b"routed",
            },
            Frame::Leave { cell: view.cell },
        ]
    }

    pub(crate) fn encode(f: &Frame) -> Vec<u8> {
        let mut buf = [0u8; MAX_PAYLOAD];
        let mut w = Writer::new(&mut buf);
        f.encode(&mut w).unwrap();
        let n = w.len();
        buf[..n].to_vec()
    }

    #[test]
    fn every_frame_round_trips_within_the_payload_bound() {
        for f in samples() {
            let body = encode(&f);
            assert!(
                body.len() <= MAX_PAYLOAD,
                "{:?} is {} bytes",
                f.frame_type(),
                body.len()
            );
            let back = Frame::decode(f.frame_type() as u8, &body).unwrap();
            assert_eq!(back, f);
            // every strict prefix fails cleanly
            for cut in 0..body.len() {
                assert!(Frame::decode(f.frame_type() as u8, &body[..cut]).is_err());
            }
        }
    }

    #[test]
    fn oversized_list_counts_are_rejected() {
        let f = Frame::Beacon {
            root: CellId::NONE,
            members: members(1),
            peers: 1,
        };
        let mut body = encode(&f);
        body[16] = (MAX_MEMBERS + 1) as u8;
        assert!(matches!(
            Frame::decode(13, &body),
            Err(Error::Malformed { .. })
        ));
    }

    proptest! {
        #[test]
        fn any_body_decodes_or_errors(ty in any::<u8>(), body in proptest::collection::vec(any::<u8>(), 0..MAX_PAYLOAD)) {
            let _ = Frame::decode(ty, &body);
        }

        #[test]
        fn data_round_trips(seq in any::<u64>(), msg in any::<u32>(), frags in 1u16..100,
                            bytes in proptest::collection::vec(any::<u8>(), 0..1200)) {
            let f = Frame::Data { seq, msg, frag: frags - 1, frags, bytes: &bytes };
            let body = encode(&f);
            prop_assert_eq!(Frame::decode(19, &body).unwrap(), f);
        }
    }
}
