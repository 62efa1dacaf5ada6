//! The discovery index: SAP records aggregated up the cell tree, soft state at the
//! owner's cell and held per link above it.
//!
//! A record maps a key (a SAP or service name hashed to 128 bits, [`key_of`]) to its owner,
//! the owner's address and the SAP's QoS class, with the owner's version. A cell holds
//! the records of its own peers and, aggregated, of its whole subtree; the root holds
//! them all.
//!
//! **Leases at the owner's cell.** A record of the cell's own peers ([`Origin::Local`])
//! carries a lease: the owner refreshes it every third of the lease at its super-peer,
//! which passes the refresh to its cell mates (each member holds its own copy), and
//! re-publishes with a new version at once after a rebind. A refresh that changes
//! nothing travels no further than the cell.
//!
//! **Held per link above it.** A record learnt from a child cell ([`Origin::Child`])
//! has no lease of its own: it stays valid as long as the child is alive (its beats
//! keep the link up), and it changes only by deltas on the link's reliable, ordered sync
//! channel: an add when a record is new or changed (new version, owner or class), a
//! withdrawal when it goes away below (owner unbound, left or declared down, lease
//! expired at its cell, a child of the child lost). When the child falls silent the
//! parent drops everything it learnt from it and withdraws it further up. So the cost
//! of keeping a subtree's index alive at an ancestor is one beat per link, whatever the
//! number of records and the depth.
//!
//! **Anti-entropy.** A link that starts (a new parent, a new coordinator, a restart)
//! begins with a snapshot between [`Op::Begin`] and [`Op::End`]: the receiver then
//! drops the records of that origin the snapshot did not repeat. Every child beat
//! carries a [`Digest`] of the child's index as of its last delta on the link; a
//! parent whose copy disagrees while the link is quiet, for several seconds, asks for a
//! snapshot (with a growing back-off). Lost deltas, overflowing outboxes and races
//! between coordinators are repaired that way, not by periodic refreshes.
//!
//! **Versions.** An update is accepted when its version is at least the stored one; a
//! removal only removes versions up to its own, and only from the origin that holds the
//! record, so an old removal that arrives late along another path cannot erase a newer
//! record. The index is bounded in entries.

use super::DetMap;
use super::frame::{Delta, Frame, Op};
use super::id::{Addr, CellId, Member, PeerId};
use super::node::{Event, MySap, Node, PendingLookup, Role};
use super::time::Instant;
use crate::error::Error;

/// The 128-bit key of a SAP or service name.
pub fn key_of(name: &str) -> u128 {
    let h = blake3::hash(name.as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&h.as_bytes()[..16]);
    u128::from_be_bytes(b)
}

/// Where a record came from: who holds its lease, or which link it is held by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Origin {
    /// A peer bound to this super-peer, or this super-peer itself: this super-peer holds
    /// the lease and withdraws the record when the peer unbinds, leaves or dies.
    Local,
    /// A peer bound to this cell mate: a leased copy of the mate's record, which the
    /// mate withdraws.
    Mate(PeerId),
    /// The subtree below this child cell (held while the child is alive).
    Child(CellId),
}

/// How close a provenance is to the record's owner: the holder of the lease, then a
/// cell mate's copy, then a child cell's.
fn closeness(o: Origin) -> u8 {
    match o {
        Origin::Local => 2,
        Origin::Mate(_) => 1,
        Origin::Child(_) => 0,
    }
}

/// One record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record {
    /// Owner and address.
    pub owner: Member,
    /// QoS class of the SAP.
    pub class: u8,
    /// Owner's version.
    pub version: u64,
    /// Lease end (local time); [`Instant::NEVER`] for records held per link.
    pub expires: Instant,
    /// Provenance.
    pub origin: Origin,
    /// Snapshot generation of the last add that touched the record.
    generation: u32,
}

/// An order-independent digest of a set of records: their number and the wrapping sum
/// of a 64-bit mix of each record's key, owner, version and class. Two replicas of the
/// same set have the same digest whatever order the deltas came in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Digest {
    /// Records.
    pub len: u32,
    /// Sum of the records' mixes.
    pub sum: u64,
}

impl Digest {
    fn element(key: u128, r: &Record) -> u64 {
        let fold = |x: u128| (x as u64) ^ ((x >> 64) as u64).rotate_left(23);
        let mut h = fold(key)
            ^ fold(r.owner.id.0).rotate_left(17)
            ^ r.version.wrapping_mul(0x9E37_79B9_7F4A_7C15)
            ^ r.class as u64;
        // splitmix64's finaliser
        h = (h ^ (h >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        h = (h ^ (h >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        h ^ (h >> 31)
    }
    fn add(&mut self, e: u64) {
        self.len += 1;
        self.sum = self.sum.wrapping_add(e);
    }
    fn sub(&mut self, e: u64) {
        self.len = self.len.saturating_sub(1);
        self.sum = self.sum.wrapping_sub(e);
    }
}

/// What applying a delta did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// Nothing (older version, unknown record, full index).
    Refused,
    /// The record is unchanged but its lease (or provenance) was renewed: pass it to the
    /// cell mates, not further up.
    Refreshed,
    /// The record was added, changed or removed: pass it on.
    Changed,
}

/// A discovery index.
#[derive(Clone, Debug)]
pub struct Index {
    map: DetMap<u128, Record>,
    owners: DetMap<PeerId, (Addr, u32)>,
    cap: usize,
    refused: u64,
    /// Digest of every record.
    total: Digest,
    /// Digest of the records of each origin (origins with none are absent).
    by_origin: Vec<(Origin, Digest)>,
    /// Current snapshot generation.
    generation: u32,
    /// Snapshots in progress: origin and the generation they started.
    replacing: Vec<(Origin, u32)>,
}

impl Index {
    /// An index of at most `cap` records.
    pub fn new(cap: usize) -> Index {
        Index {
            map: DetMap::default(),
            owners: DetMap::default(),
            cap,
            refused: 0,
            total: Digest::default(),
            by_origin: Vec::new(),
            generation: 0,
            replacing: Vec::new(),
        }
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Records refused because the index was full.
    pub fn refused(&self) -> u64 {
        self.refused
    }

    /// Digest of every record.
    pub fn digest(&self) -> Digest {
        self.total
    }

    /// Digest of the records learnt from `origin`.
    pub fn digest_of(&self, origin: Origin) -> Digest {
        self.by_origin
            .iter()
            .find(|(o, _)| *o == origin)
            .map_or(Digest::default(), |(_, d)| *d)
    }

    fn account(&mut self, key: u128, r: &Record, add: bool) {
        let e = Digest::element(key, r);
        let slot = match self.by_origin.iter().position(|(o, _)| *o == r.origin) {
            Some(i) => i,
            None => {
                self.by_origin.push((r.origin, Digest::default()));
                self.by_origin.len() - 1
            }
        };
        if add {
            self.total.add(e);
            self.by_origin[slot].1.add(e);
        } else {
            self.total.sub(e);
            self.by_origin[slot].1.sub(e);
            if self.by_origin[slot].1.len == 0 {
                self.by_origin.swap_remove(slot);
            }
        }
    }

    fn unref(&mut self, owner: PeerId) {
        if let Some(o) = self.owners.get_mut(&owner) {
            o.1 -= 1;
            if o.1 == 0 {
                self.owners.remove(&owner);
            }
        }
    }

    fn remove_key(&mut self, key: u128) -> Option<Record> {
        let r = self.map.remove(&key)?;
        self.account(key, &r, false);
        self.unref(r.owner.id);
        Some(r)
    }

    /// Apply an add or a removal from `origin` at `now` (snapshot markers are
    /// [`Index::begin_replace`] and [`Index::end_replace`]).
    pub fn apply(&mut self, d: &Delta, origin: Origin, now: Instant) -> Applied {
        match d.op {
            Op::Add => self.add(d, origin, now),
            Op::Remove => match self.map.get(&d.key) {
                // A removal only comes from the direction the record was learnt from, so
                // a withdrawal along a dead path cannot erase a record refreshed along a
                // new one.
                Some(r)
                    if r.version <= d.version && r.owner.id == d.owner.id && r.origin == origin =>
                {
                    self.remove_key(d.key);
                    Applied::Changed
                }
                _ => Applied::Refused,
            },
            Op::Begin | Op::End => Applied::Refused,
        }
    }

    fn add(&mut self, d: &Delta, origin: Origin, now: Instant) -> Applied {
        let expires = match origin {
            Origin::Local | Origin::Mate(_) => now.after(d.lease_ms as u64 * 1_000_000),
            Origin::Child(_) => Instant::NEVER,
        };
        let rec = Record {
            owner: d.owner,
            class: d.class,
            version: d.version,
            expires,
            origin,
            generation: self.generation,
        };
        let full = self.map.len() >= self.cap;
        let old = match self.map.get_mut(&d.key) {
            Some(r) if r.version > d.version => return Applied::Refused,
            Some(r) if r.owner == d.owner && r.class == d.class && r.version == d.version => {
                if r.origin == origin {
                    r.expires = expires;
                    r.generation = self.generation;
                    return Applied::Refreshed;
                }
                if closeness(r.origin) > closeness(origin) {
                    // the same record along a more distant path: the closer one keeps it
                    // (the holder of a lease is never displaced by a copy)
                    return Applied::Refused;
                }
                // the same record, learnt along another path now (the old path may be
                // about to withdraw it: the latest path takes it over)
                Some(*r)
            }
            Some(r) => Some(*r),
            None if full => {
                self.refused += 1;
                return Applied::Refused;
            }
            None => None,
        };
        if let Some(o) = old {
            self.account(d.key, &o, false);
            self.unref(o.owner.id);
        }
        self.map.insert(d.key, rec);
        self.account(d.key, &rec, true);
        let o = self.owners.entry(d.owner.id).or_insert((d.owner.addr, 0));
        o.0 = d.owner.addr;
        o.1 += 1;
        match old {
            Some(o) if o.owner == rec.owner && o.class == rec.class && o.version == rec.version => {
                Applied::Refreshed
            }
            _ => Applied::Changed,
        }
    }

    /// A snapshot from `origin` starts: records of that origin it does not repeat before
    /// [`Index::end_replace`] are stale.
    pub fn begin_replace(&mut self, origin: Origin) {
        self.generation = self.generation.wrapping_add(1);
        let generation = self.generation;
        match self.replacing.iter_mut().find(|(o, _)| *o == origin) {
            Some(slot) => slot.1 = generation,
            None => self.replacing.push((origin, generation)),
        }
    }

    /// The snapshot from `origin` is complete: drop the records of that origin it did not
    /// repeat, returning their removal deltas (to pass on). No-op without a matching
    /// [`Index::begin_replace`].
    pub fn end_replace(&mut self, origin: Origin, out: &mut Vec<Delta>) {
        let Some(i) = self.replacing.iter().position(|(o, _)| *o == origin) else {
            return;
        };
        let (_, start) = self.replacing.swap_remove(i);
        // generations wrap: "older than the snapshot" is a wrapping comparison
        self.remove_where(
            |r| r.origin == origin && (start.wrapping_sub(r.generation) as i32) > 0,
            out,
        );
    }

    /// The live record for `key`.
    pub fn get(&self, key: u128, now: Instant) -> Option<&Record> {
        self.map.get(&key).filter(|r| r.expires > now)
    }

    /// Address of a peer that owns at least one record here.
    pub fn owner_addr(&self, id: PeerId) -> Option<Addr> {
        self.owners.get(&id).map(|o| o.0)
    }

    /// Drop records whose lease expired (only the leased records of the cell's own peers
    /// expire), returning their removal deltas (to pass on).
    pub fn expire(&mut self, now: Instant, out: &mut Vec<Delta>) {
        self.remove_where(|r| r.expires <= now, out);
    }

    /// Let the records matching `pred` expire by `until` at the latest.
    pub fn expire_by(&mut self, until: Instant, mut pred: impl FnMut(&Record) -> bool) {
        for r in self.map.values_mut() {
            if pred(r) {
                r.expires = r.expires.min(until);
            }
        }
    }

    /// Remove every record matching `pred`, returning removal deltas to pass on.
    pub fn remove_where(&mut self, mut pred: impl FnMut(&Record) -> bool, out: &mut Vec<Delta>) {
        let start = out.len();
        for (&key, r) in &self.map {
            if pred(r) {
                out.push(Delta {
                    op: Op::Remove,
                    key,
                    owner: r.owner,
                    class: r.class,
                    version: r.version,
                    lease_ms: 0,
                });
            }
        }
        for d in &out[start..] {
            self.remove_key(d.key);
        }
    }

    /// Every record matching `pred` as an add delta, with what is left of its lease.
    pub fn snapshot(
        &self,
        now: Instant,
        mut pred: impl FnMut(&Record) -> bool,
        out: &mut Vec<Delta>,
    ) {
        for (&key, r) in &self.map {
            if pred(r) {
                out.push(Delta {
                    op: Op::Add,
                    key,
                    owner: r.owner,
                    class: r.class,
                    version: r.version,
                    lease_ms: (r.expires.since(now) / 1_000_000).min(u32::MAX as u64) as u32,
                });
            }
        }
    }

    /// Iterate over (key, record).
    pub fn iter(&self) -> impl Iterator<Item = (&u128, &Record)> {
        self.map.iter()
    }
}

// ---- the discovery protocol of a node ---------------------------------------------------

impl Node {
    /// Publish a SAP (or service) under `key` in QoS class `class`, with the configured
    /// lease; it is refreshed automatically. Before the node is joined the record waits.
    pub fn publish(&mut self, key: u128, class: u8, now: Instant) -> Result<(), Error> {
        if self.msg.policy(class).is_none() {
            return Err(Error::Command {
                what: "publish",
                why: "unknown QoS class; configure it in the overlay's class list",
            });
        }
        self.sap_version += 1;
        let sap = MySap {
            key,
            class,
            version: self.sap_version,
        };
        match self.saps.iter_mut().find(|s| s.key == key) {
            Some(s) => *s = sap,
            None => self.saps.push(sap),
        }
        self.publish_one(sap, now);
        self.flush(now);
        Ok(())
    }

    /// Withdraw the SAP published under `key`: it is no longer refreshed, and a removal
    /// travels the same way the record did (to the super-peer, or to the cell and up the
    /// tree). Fails, state unchanged, when `key` was not published by this node.
    pub fn unpublish(&mut self, key: u128, now: Instant) -> Result<(), Error> {
        let Some(i) = self.saps.iter().position(|s| s.key == key) else {
            return Err(Error::Command {
                what: "unpublish",
                why: "this key was not published by this node",
            });
        };
        let sap = self.saps.remove(i);
        let d = Delta {
            op: Op::Remove,
            key,
            owner: self.me,
            class: sap.class,
            version: sap.version,
            lease_ms: 0,
        };
        match self.role {
            Role::Peer => {
                if let Some(sp) = self.sp {
                    self.links.push(sp.id, d);
                    self.dirty_links.push(sp.id);
                }
            }
            Role::SuperPeer => {
                let applied = self.index.apply(&d, Origin::Local, now);
                self.pass_on(d, applied, true);
            }
            _ => {}
        }
        self.flush(now);
        Ok(())
    }

    fn publish_one(&mut self, sap: MySap, now: Instant) {
        let d = Delta {
            op: Op::Add,
            key: sap.key,
            owner: self.me,
            class: sap.class,
            version: sap.version,
            lease_ms: (self.cfg.lease / 1_000_000).min(u32::MAX as u64) as u32,
        };
        match self.role {
            Role::Peer => {
                if let Some(sp) = self.sp {
                    self.links.push(sp.id, d);
                    self.dirty_links.push(sp.id);
                }
            }
            Role::SuperPeer => {
                let applied = self.index.apply(&d, Origin::Local, now);
                self.pass_on(d, applied, true);
            }
            _ => {}
        }
    }

    /// Pass an applied delta on: a change to the cell mates (when `replicate`) and up
    /// the tree; a refresh only to the cell mates.
    fn pass_on(&mut self, d: Delta, applied: Applied, replicate: bool) {
        match applied {
            Applied::Changed => {
                if replicate {
                    self.replicate(d);
                }
                self.push_up(d);
            }
            Applied::Refreshed if replicate => self.replicate(d),
            _ => {}
        }
    }

    /// Refresh every own record (same versions).
    pub(crate) fn republish(&mut self, now: Instant) {
        for i in 0..self.saps.len() {
            let sap = self.saps[i];
            self.publish_one(sap, now);
        }
    }

    /// Re-publish every own record with a new version (after a rebind or a promotion).
    pub(crate) fn republish_bumped(&mut self, now: Instant) {
        for i in 0..self.saps.len() {
            self.sap_version += 1;
            self.saps[i].version = self.sap_version;
        }
        self.republish(now);
    }

    /// Send `d` to every cell mate.
    fn replicate(&mut self, d: Delta) {
        let me = self.me.id;
        for i in 0..self.view.members.len() {
            let id = self.view.members[i].id;
            if id != me && !self.down.contains_key(&id) {
                self.links.push(id, d);
                self.dirty_links.push(id);
            }
        }
    }

    /// Send `d` to every parent member (coordinator only).
    fn push_up(&mut self, d: Delta) {
        if !self.is_coordinator() || self.view.parent.is_none() {
            return;
        }
        for i in 0..self.view.parent_members.len() {
            let id = self.view.parent_members[i].id;
            if !self.down.contains_key(&id) {
                self.links.push(id, d);
                self.dirty_links.push(id);
                self.stats.deltas_up += 1;
            }
        }
    }

    /// Send the whole index, as a snapshot, to every live parent member.
    pub(crate) fn push_snapshot_up(&mut self, now: Instant) {
        if !self.is_coordinator() {
            return;
        }
        // Beat each parent member too (with this cell's members): the beat leaves at once,
        // before the snapshot's deltas (they leave with the next flush), so a parent
        // member that did not know the child yet does not drop them and hear of the child
        // only from its periodic beat, every few periods. The beat is built after the
        // snapshot is queued, so it announces the snapshot's deltas as in flight.
        self.members_beats = self.members_beats.max(1);
        for m in self.view.parent_members.clone() {
            if !self.down.contains_key(&m.id) {
                self.snapshot_to(m.id, now);
                self.child_beat(m);
            }
        }
    }

    /// Send the whole index to the parent member `to` between snapshot markers, so it
    /// drops what it holds from this cell and the snapshot does not repeat. At most one
    /// snapshot per member every four periods (a new parent asks for one too, and a
    /// duplicated request must not double the work).
    pub(crate) fn snapshot_to(&mut self, to: PeerId, now: Instant) {
        if !self.snapshot_due(to, now) {
            return;
        }
        let mut all = std::mem::take(&mut self.delta_scratch);
        all.clear();
        self.index.snapshot(now, |_| true, &mut all);
        self.stats.deltas_up += all.len() as u64 + 2;
        self.push_snapshot(to, &mut all);
        self.delta_scratch = all;
    }

    /// Send every record this super-peer holds the lease of to a cell mate (new,
    /// revived, or one that started its link to us afresh and may have lost them), as a
    /// snapshot: the mate drops the copies from us it holds that the snapshot does not
    /// repeat. At most one every four periods per mate.
    pub(crate) fn push_local_records(&mut self, to: PeerId, now: Instant) {
        if !self.snapshot_due(to, now) {
            return;
        }
        let mut all = std::mem::take(&mut self.delta_scratch);
        all.clear();
        self.index
            .snapshot(now, |r| r.origin == Origin::Local, &mut all);
        self.push_snapshot(to, &mut all);
        self.delta_scratch = all;
    }

    /// Drop the sync link with `peer` (both directions); a snapshot it is due is no
    /// longer held back by one sent on the old link.
    pub(crate) fn drop_link(&mut self, peer: PeerId) {
        self.links.drop_link(peer);
        self.snapshots.retain(|(p, _)| *p != peer);
    }

    /// Whether a snapshot may go to `to` now (none went in the last four periods); if
    /// so, it is noted as sent.
    fn snapshot_due(&mut self, to: PeerId, now: Instant) -> bool {
        let recent = 4 * self.cfg.heartbeat;
        self.snapshots.retain(|(_, t)| now.since(*t) < recent);
        if self.snapshots.iter().any(|(p, _)| *p == to) {
            return false;
        }
        self.snapshots.push((to, now));
        true
    }

    /// Queue `records` (drained) for `to` between snapshot markers.
    fn push_snapshot(&mut self, to: PeerId, records: &mut Vec<Delta>) {
        let marker = |op| Delta {
            op,
            key: 0,
            owner: self.me,
            class: 0,
            version: 0,
            lease_ms: 0,
        };
        let (begin, end) = (marker(Op::Begin), marker(Op::End));
        self.links.push(to, begin);
        for d in records.drain(..) {
            self.links.push(to, d);
        }
        self.links.push(to, end);
        self.dirty_links.push(to);
    }

    /// Remove records matching `pred` and pass the removals on (to the mates too when
    /// `replicate`, and up when coordinator).
    pub(crate) fn remove_records(
        &mut self,
        pred: impl FnMut(&Record) -> bool,
        replicate: bool,
        _now: Instant,
    ) {
        let mut gone = Vec::new();
        self.index.remove_where(pred, &mut gone);
        for d in gone {
            if replicate {
                self.replicate(d);
            }
            self.push_up(d);
        }
    }

    /// Drop records whose lease ran out; the coordinator withdraws them up the tree (the
    /// other members expire their own copies).
    pub(crate) fn expire_records(&mut self, now: Instant) {
        let mut gone = std::mem::take(&mut self.delta_scratch);
        gone.clear();
        self.index.expire(now, &mut gone);
        for d in gone.drain(..) {
            self.push_up(d);
        }
        self.delta_scratch = gone;
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn on_sync(
        &mut self,
        sender: Member,
        epoch: u32,
        base: u64,
        first: u64,
        ack: u64,
        deltas: &[Delta],
        now: Instant,
    ) {
        self.on_ack(sender.id, ack);
        if deltas.is_empty() || self.role != Role::SuperPeer {
            return; // an ack alone (peers only ever receive those)
        }
        // A peer promoted into a child cell stays bound here until it has re-published
        // there (make before break): what it sends as a child member is the child's.
        let (origin, replicate) = if let Some((c, _)) = self
            .children
            .iter()
            .find(|(_, c)| c.members.iter().any(|m| m.id == sender.id))
        {
            (Origin::Child(*c), false)
        } else if self.bound.contains_key(&sender.id) {
            self.bound_seen.insert(sender.id, now);
            self.detector.heard(sender.id, now);
            (Origin::Local, true)
        } else if self.view.members.iter().any(|m| m.id == sender.id) {
            (Origin::Mate(sender.id), false)
        } else {
            return;
        };
        let mut ready = std::mem::take(&mut self.ready_scratch);
        ready.clear();
        self.links
            .receive(sender.id, epoch, base, first, deltas, &mut ready);
        if let Origin::Mate(m) = origin
            && self.links.take_new_link(m)
        {
            // a mate that starts its link to us afresh may have lost our records (it
            // declared us down, or restarted): send them again
            self.push_local_records(m, now);
        }
        for d in ready.iter() {
            match (d.op, origin) {
                (Op::Begin, Origin::Child(_) | Origin::Mate(_)) => self.index.begin_replace(origin),
                (Op::End, Origin::Child(_) | Origin::Mate(_)) => {
                    let mut gone = Vec::new();
                    self.index.end_replace(origin, &mut gone);
                    for g in gone {
                        self.push_up(g);
                    }
                }
                (Op::Begin | Op::End, _) => {}
                (Op::Add | Op::Remove, _) => {
                    let applied = self.index.apply(d, origin, now);
                    self.pass_on(*d, applied, replicate);
                }
            }
        }
        self.ready_scratch = ready;
    }

    /// `from` acknowledged index deltas up to `upto`: forget them, and send more if the
    /// window held some back.
    pub(crate) fn on_ack(&mut self, from: PeerId, upto: u64) {
        self.links.ack(from, upto);
        if self.links.unsent(from) {
            self.dirty_links.push(from);
        }
    }

    /// Look `key` up: the own cell, then up the tree to the root. The answer arrives as
    /// [`Event::LookupDone`] (found, or a definite not-found) or [`Event::LookupTimeout`].
    /// Returns the request id.
    pub fn lookup(&mut self, key: u128, now: Instant) -> Result<u64, Error> {
        if !matches!(self.role, Role::Peer | Role::SuperPeer) {
            return Err(Error::Command {
                what: "lookup",
                why: "not joined; call join() and wait for Event::Joined",
            });
        }
        let req = self.nonce();
        if self.role == Role::SuperPeer {
            let hit = self.index.get(key, now).map(|r| (r.owner, r.class));
            if hit.is_some() || self.view.parent.is_none() {
                self.events.push_back(Event::LookupDone {
                    req,
                    key,
                    found: hit,
                    msgs: 0,
                });
                return Ok(req);
            }
        }
        self.lookups.insert(
            req,
            PendingLookup {
                key,
                deadline: now.after(self.cfg.lookup_timeout),
                retried: false,
            },
        );
        self.send_lookup(req, key);
        self.flush(now);
        Ok(req)
    }

    fn send_lookup(&mut self, req: u64, key: u128) {
        if let Some(hop) = self.next_hop_up() {
            let f = Frame::Lookup {
                req,
                key,
                requester: self.me,
                hops: 1,
            };
            self.emit_to(hop, &f);
        }
    }

    pub(crate) fn on_lookup(
        &mut self,
        req: u64,
        key: u128,
        requester: Member,
        hops: u8,
        now: Instant,
    ) {
        if self.role != Role::SuperPeer {
            return;
        }
        let hit = self.index.get(key, now).map(|r| (r.owner, r.class));
        // Only the root answers a definite not-found. A cell that believes every parent
        // member down (a belief that can outlive a healed partition in a member that does
        // not beat the parent) still asks one: a dead parent costs the requester a
        // timeout, never a wrong answer.
        if hit.is_none()
            && !self.view.parent.is_none()
            && let Some(up) = self
                .next_hop_up()
                .or_else(|| self.view.parent_members.first().copied())
        {
            let f = Frame::Lookup {
                req,
                key,
                requester,
                hops: hops.saturating_add(1),
            };
            self.emit_to(up, &f);
            return;
        }
        let f = Frame::LookupReply {
            req,
            key,
            found: hit,
            hops: hops.saturating_add(1),
        };
        self.emit_to(requester, &f);
    }

    pub(crate) fn on_lookup_reply(
        &mut self,
        req: u64,
        key: u128,
        found: Option<(Member, u8)>,
        hops: u8,
        now: Instant,
    ) {
        if self.lookups.remove(&req).is_none() {
            return;
        }
        if let Some((m, _)) = found {
            self.routes.learn(m.id, m.addr, now);
        }
        self.events.push_back(Event::LookupDone {
            req,
            key,
            found,
            msgs: hops,
        });
    }

    pub(crate) fn lookup_timeouts(&mut self, now: Instant) {
        let due: Vec<u64> = self
            .lookups
            .iter()
            .filter(|(_, l)| l.deadline <= now)
            .map(|(r, _)| *r)
            .collect();
        for req in due {
            let Some(l) = self.lookups.get_mut(&req) else {
                continue;
            };
            if l.retried {
                let key = l.key;
                self.lookups.remove(&req);
                self.events.push_back(Event::LookupTimeout { req, key });
            } else {
                l.retried = true;
                l.deadline = now.after(self.cfg.lookup_timeout);
                let key = l.key;
                self.send_lookup(req, key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::frame::tests::member;

    fn delta(add: bool, key: u128, owner: u128, version: u64) -> Delta {
        Delta {
            op: if add { Op::Add } else { Op::Remove },
            key,
            owner: member(owner),
            class: 1,
            version,
            lease_ms: 1000,
        }
    }

    #[test]
    fn unpublish_withdraws_the_record_and_refuses_unknown_keys() {
        use crate::proto::config::Config;
        use crate::proto::id::Addr;
        use crate::proto::node::{Event, Node, Role};
        use crate::proto::security::OverlayKey;
        let a = Addr("10.0.0.1:7000".parse().unwrap());
        let g = Addr("239.7.7.7:7000".parse().unwrap());
        let mut n = Node::new(Config::new(PeerId(1), a, g, 9, OverlayKey([7; 32]))).unwrap();
        n.join(Instant(0)).unwrap();
        let mut now = Instant(0);
        while n.role() != Role::SuperPeer {
            now = n.poll_timeout().unwrap();
            n.handle_timeout(now);
            while n.poll_transmit().is_some() {}
        }
        assert!(n.unpublish(42, now).is_err(), "nothing published yet");
        n.publish(42, 1, now).unwrap();
        assert!(n.index_record(42, now).is_some());
        n.unpublish(42, now).unwrap();
        assert!(n.index_record(42, now).is_none());
        assert!(n.unpublish(42, now).is_err(), "already withdrawn");
        let req = n.lookup(42, now).unwrap();
        let mut found = None;
        while let Some(e) = n.poll_event() {
            if let Event::LookupDone {
                req: r, found: f, ..
            } = e
                && r == req
            {
                found = Some(f);
            }
        }
        assert_eq!(found, Some(None), "the root answers a definite not-found");
    }

    #[test]
    fn late_old_removal_does_not_erase_newer_record() {
        let mut i = Index::new(10);
        let now = Instant(0);
        assert_eq!(
            i.apply(&delta(true, 1, 5, 2), Origin::Local, now),
            Applied::Changed
        );
        assert_eq!(
            i.apply(&delta(false, 1, 5, 1), Origin::Local, now),
            Applied::Refused
        );
        assert!(i.get(1, now).is_some());
        assert_eq!(
            i.apply(&delta(true, 1, 5, 1), Origin::Local, now),
            Applied::Refused,
            "older add is refused"
        );
        let c = CellId::new(1, PeerId(1));
        assert_eq!(
            i.apply(&delta(false, 1, 5, 2), Origin::Child(c), now),
            Applied::Refused,
            "a removal from another direction is refused"
        );
        assert_eq!(
            i.apply(&delta(false, 1, 5, 2), Origin::Local, now),
            Applied::Changed
        );
        assert!(i.get(1, now).is_none());
        assert_eq!(i.owner_addr(PeerId(5)), None);
        assert_eq!(i.digest(), Digest::default());
    }

    #[test]
    fn local_leases_expire_into_withdrawals_and_refresh_extends_without_change() {
        let mut i = Index::new(10);
        let mut out = Vec::new();
        assert_eq!(
            i.apply(&delta(true, 1, 5, 1), Origin::Local, Instant(0)),
            Applied::Changed
        );
        assert!(i.get(1, Instant(999_000_000)).is_some());
        assert_eq!(
            i.apply(&delta(true, 1, 5, 1), Origin::Local, Instant(900_000_000)),
            Applied::Refreshed,
            "a refresh changes nothing worth passing up"
        );
        i.expire(Instant(1_500_000_000), &mut out);
        assert!(out.is_empty());
        assert!(i.get(1, Instant(1_500_000_000)).is_some());
        i.expire(Instant(2_000_000_000), &mut out);
        assert!(i.is_empty());
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].op, out[0].key, out[0].version), (Op::Remove, 1, 1));
    }

    #[test]
    fn child_records_are_held_per_link_and_go_with_the_child() {
        let mut i = Index::new(3);
        let c = CellId::new(1, PeerId(1));
        i.apply(&delta(true, 1, 5, 1), Origin::Child(c), Instant(0));
        i.apply(&delta(true, 2, 6, 1), Origin::Local, Instant(0));
        i.apply(&delta(true, 3, 7, 1), Origin::Child(c), Instant(0));
        assert_eq!(
            i.apply(&delta(true, 4, 8, 1), Origin::Local, Instant(0)),
            Applied::Refused
        );
        assert_eq!(i.refused(), 1);
        let mut out = Vec::new();
        // a day later the child's records are still there (no lease); the local one is not
        i.expire(Instant(86_400_000_000_000), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(i.len(), 2);
        assert_eq!(i.digest_of(Origin::Child(c)).len, 2);
        out.clear();
        i.remove_where(|r| r.origin == Origin::Child(c), &mut out);
        assert_eq!(out.len(), 2);
        assert!(out.iter().all(|d| d.op == Op::Remove));
        assert!(i.is_empty());
        assert_eq!(key_of("a"), key_of("a"));
        assert_ne!(key_of("a"), key_of("b"));
    }

    #[test]
    fn a_snapshot_replaces_what_its_origin_held() {
        let mut i = Index::new(100);
        let (c, d) = (CellId::new(1, PeerId(1)), CellId::new(2, PeerId(2)));
        for k in 1..=5 {
            i.apply(&delta(true, k, 10 + k, 1), Origin::Child(c), Instant(0));
        }
        i.apply(&delta(true, 9, 19, 1), Origin::Child(d), Instant(0));
        i.apply(&delta(true, 8, 18, 1), Origin::Local, Instant(0));
        // the child's snapshot repeats 1 and 2 (2 with a new version) and adds 6
        i.begin_replace(Origin::Child(c));
        i.apply(&delta(true, 1, 11, 1), Origin::Child(c), Instant(5));
        i.apply(&delta(true, 2, 12, 2), Origin::Child(c), Instant(5));
        i.apply(&delta(true, 6, 16, 1), Origin::Child(c), Instant(5));
        let mut out = Vec::new();
        i.end_replace(Origin::Child(c), &mut out);
        let mut gone: Vec<u128> = out.iter().map(|d| d.key).collect();
        gone.sort();
        assert_eq!(gone, vec![3, 4, 5]);
        assert!(out.iter().all(|d| d.op == Op::Remove));
        let mut keys: Vec<u128> = i.iter().map(|(k, _)| *k).collect();
        keys.sort();
        assert_eq!(keys, vec![1, 2, 6, 8, 9], "other origins are untouched");
        out.clear();
        i.end_replace(Origin::Child(c), &mut out);
        assert!(out.is_empty(), "an end without a begin does nothing");
    }

    #[test]
    fn digests_agree_whatever_the_order_of_the_deltas() {
        let c = CellId::new(1, PeerId(1));
        let deltas: Vec<Delta> = (0..50u128)
            .map(|k| delta(true, k, 100 + k % 7, 1 + (k % 3) as u64))
            .chain(
                (0..50u128)
                    .step_by(5)
                    .map(|k| delta(false, k, 100 + k % 7, 9)),
            )
            .collect();
        let mut child = Index::new(1000);
        let mut parent = Index::new(1000);
        for d in &deltas {
            child.apply(d, Origin::Local, Instant(0));
        }
        // the parent gets the adds in reverse, then the removals: the same set
        let (adds, removes): (Vec<_>, Vec<_>) = deltas.iter().partition(|d| d.op == Op::Add);
        for d in adds.iter().rev().chain(removes.iter()) {
            parent.apply(d, Origin::Child(c), Instant(0));
        }
        assert_eq!(child.digest(), parent.digest_of(Origin::Child(c)));
        assert_eq!(child.digest().len, 40);
        // one differing version shows
        parent.apply(&delta(true, 1, 101, 7), Origin::Child(c), Instant(0));
        assert_ne!(child.digest(), parent.digest_of(Origin::Child(c)));
    }
}
