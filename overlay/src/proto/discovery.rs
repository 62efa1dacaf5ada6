//! The discovery index: soft-state SAP records with leases, aggregated up the cell tree.
//!
//! A record maps a key (a SAP or service name hashed to 128 bits, [`key_of`]) to its owner,
//! the owner's address and the SAP's QoS class. Every record carries the owner's version
//! and a lease; the owner refreshes it every third of the lease and re-publishes at once
//! after a rebind. A cell holds the records of its own peers and, aggregated, of its whole
//! subtree; the root holds them all. An update is accepted when its version is at least
//! the stored one, a removal only removes versions up to its own, so an old removal that
//! arrives late along another path cannot erase a newer record. Expired records vanish
//! silently at each replica. The index is bounded in entries.

use super::DetMap;
use super::frame::{Delta, Frame};
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

/// Where a record came from, so a dead child's records can be dropped at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// A peer or super-peer of this cell.
    Local,
    /// The subtree below this child cell.
    Child(CellId),
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
    /// Lease end (local time).
    pub expires: Instant,
    /// Provenance.
    pub origin: Origin,
}

/// A soft-state index.
#[derive(Clone, Debug)]
pub struct Index {
    map: DetMap<u128, Record>,
    owners: DetMap<PeerId, (Addr, u32)>,
    cap: usize,
    refused: u64,
}

impl Index {
    /// An index of at most `cap` records.
    pub fn new(cap: usize) -> Index {
        Index {
            map: DetMap::default(),
            owners: DetMap::default(),
            cap,
            refused: 0,
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

    fn unref(&mut self, owner: PeerId) {
        if let Some(o) = self.owners.get_mut(&owner) {
            o.1 -= 1;
            if o.1 == 0 {
                self.owners.remove(&owner);
            }
        }
    }

    /// Apply a delta from `origin` at `now`. Returns whether it was accepted (a refresh of
    /// the same version counts: it extends the lease and must travel on).
    pub fn apply(&mut self, d: &Delta, origin: Origin, now: Instant) -> bool {
        if d.add {
            let expires = now.after(d.lease_ms as u64 * 1_000_000);
            let full = self.map.len() >= self.cap;
            match self.map.get_mut(&d.key) {
                Some(r) if r.version > d.version => false,
                Some(r) => {
                    let old_owner = r.owner.id;
                    *r = Record {
                        owner: d.owner,
                        class: d.class,
                        version: d.version,
                        expires,
                        origin,
                    };
                    if old_owner != d.owner.id {
                        self.unref(old_owner);
                        self.owners.entry(d.owner.id).or_insert((d.owner.addr, 0)).1 += 1;
                    } else if let Some(o) = self.owners.get_mut(&d.owner.id) {
                        o.0 = d.owner.addr;
                    }
                    true
                }
                None if full => {
                    self.refused += 1;
                    false
                }
                None => {
                    self.map.insert(
                        d.key,
                        Record {
                            owner: d.owner,
                            class: d.class,
                            version: d.version,
                            expires,
                            origin,
                        },
                    );
                    let o = self.owners.entry(d.owner.id).or_insert((d.owner.addr, 0));
                    o.0 = d.owner.addr;
                    o.1 += 1;
                    true
                }
            }
        } else {
            // A removal only comes from the direction the record was learnt from, so a
            // withdrawal along a dead path cannot erase a record refreshed along a new one.
            match self.map.get(&d.key) {
                Some(r)
                    if r.version <= d.version && r.owner.id == d.owner.id && r.origin == origin =>
                {
                    self.map.remove(&d.key);
                    self.unref(d.owner.id);
                    true
                }
                _ => false,
            }
        }
    }

    /// The live record for `key`.
    pub fn get(&self, key: u128, now: Instant) -> Option<&Record> {
        self.map.get(&key).filter(|r| r.expires > now)
    }

    /// Address of a peer that owns at least one record here.
    pub fn owner_addr(&self, id: PeerId) -> Option<Addr> {
        self.owners.get(&id).map(|o| o.0)
    }

    /// Drop expired records.
    pub fn expire(&mut self, now: Instant) {
        let mut gone = Vec::new();
        self.map.retain(|_, r| {
            let keep = r.expires > now;
            if !keep {
                gone.push(r.owner.id);
            }
            keep
        });
        for o in gone {
            self.unref(o);
        }
    }

    /// Remove every record matching `pred`, returning removal deltas to pass on.
    pub fn remove_where(&mut self, mut pred: impl FnMut(&Record) -> bool, out: &mut Vec<Delta>) {
        let mut gone = Vec::new();
        self.map.retain(|&key, r| {
            if pred(r) {
                gone.push(r.owner.id);
                out.push(Delta {
                    add: false,
                    key,
                    owner: r.owner,
                    class: r.class,
                    version: r.version,
                    lease_ms: 0,
                });
                false
            } else {
                true
            }
        });
        for o in gone {
            self.unref(o);
        }
    }

    /// Every live record as a refresh delta (for a full push to a new parent).
    pub fn snapshot(
        &self,
        now: Instant,
        mut pred: impl FnMut(&Record) -> bool,
        out: &mut Vec<Delta>,
    ) {
        for (&key, r) in &self.map {
            if r.expires > now && pred(r) {
                out.push(Delta {
                    add: true,
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
            add: false,
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
            Role::SuperPeer if self.index.apply(&d, Origin::Local, now) => {
                self.replicate(d);
                self.push_up(d);
            }
            _ => {}
        }
        self.flush(now);
        Ok(())
    }

    fn publish_one(&mut self, sap: MySap, now: Instant) {
        let d = Delta {
            add: true,
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
            Role::SuperPeer if self.index.apply(&d, Origin::Local, now) => {
                self.replicate(d);
                self.push_up(d);
            }
            _ => {}
        }
    }

    /// Refresh every own record (same versions).
    pub(crate) fn republish(&mut self, now: Instant) {
        for sap in self.saps.clone() {
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
        for m in self.view.members.clone() {
            if m.id != self.me.id && !self.down.contains_key(&m.id) {
                self.links.push(m.id, d);
                self.dirty_links.push(m.id);
            }
        }
    }

    /// Send `d` to every parent member (coordinator only).
    fn push_up(&mut self, d: Delta) {
        if !self.is_coordinator() || self.view.parent.is_none() {
            return;
        }
        for m in self.view.parent_members.clone() {
            if !self.down.contains_key(&m.id) {
                self.links.push(m.id, d);
                self.dirty_links.push(m.id);
            }
        }
    }

    /// Send the whole index to a new parent.
    pub(crate) fn push_snapshot_up(&mut self, now: Instant) {
        let mut all = Vec::new();
        self.index.snapshot(now, |_| true, &mut all);
        for d in all {
            self.push_up(d);
        }
    }

    /// Send every record of this cell's own peers to a new cell member.
    pub(crate) fn push_local_records(&mut self, to: PeerId, now: Instant) {
        let mut all = Vec::new();
        self.index
            .snapshot(now, |r| r.origin == Origin::Local, &mut all);
        for d in all {
            self.links.push(to, d);
        }
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
        self.links.ack(sender.id, ack);
        if self.role != Role::SuperPeer {
            return;
        }
        let (origin, replicate) = if self.bound.contains_key(&sender.id) {
            self.bound_seen.insert(sender.id, now);
            self.detector.heard(sender.id, now);
            (Origin::Local, true)
        } else if self.view.members.iter().any(|m| m.id == sender.id) {
            (Origin::Local, false)
        } else if let Some((c, _)) = self
            .children
            .iter()
            .find(|(_, c)| c.members.iter().any(|m| m.id == sender.id))
        {
            (Origin::Child(*c), false)
        } else {
            return;
        };
        let Some(skip) = self
            .links
            .receive(sender.id, epoch, base, first, deltas.len())
        else {
            return;
        };
        for d in deltas.iter().skip(skip) {
            if self.index.apply(d, origin, now) {
                if replicate {
                    self.replicate(*d);
                }
                self.push_up(*d);
            }
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
        if hit.is_none()
            && !self.view.parent.is_none()
            && let Some(up) = self.next_hop_up()
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
            add,
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
        assert!(i.apply(&delta(true, 1, 5, 2), Origin::Local, now));
        assert!(!i.apply(&delta(false, 1, 5, 1), Origin::Local, now));
        assert!(i.get(1, now).is_some());
        assert!(
            !i.apply(&delta(true, 1, 5, 1), Origin::Local, now),
            "older add is refused"
        );
        assert!(i.apply(&delta(false, 1, 5, 2), Origin::Local, now));
        assert!(i.get(1, now).is_none());
        assert_eq!(i.owner_addr(PeerId(5)), None);
    }

    #[test]
    fn leases_expire_and_refresh_extends() {
        let mut i = Index::new(10);
        i.apply(&delta(true, 1, 5, 1), Origin::Local, Instant(0));
        assert!(i.get(1, Instant(999_000_000)).is_some());
        i.apply(&delta(true, 1, 5, 1), Origin::Local, Instant(900_000_000));
        i.expire(Instant(1_500_000_000));
        assert!(i.get(1, Instant(1_500_000_000)).is_some());
        i.expire(Instant(2_000_000_000));
        assert!(i.is_empty());
    }

    #[test]
    fn child_records_go_with_the_child_and_index_is_bounded() {
        let mut i = Index::new(3);
        let c = CellId::new(1, PeerId(1));
        i.apply(&delta(true, 1, 5, 1), Origin::Child(c), Instant(0));
        i.apply(&delta(true, 2, 6, 1), Origin::Local, Instant(0));
        i.apply(&delta(true, 3, 7, 1), Origin::Child(c), Instant(0));
        assert!(!i.apply(&delta(true, 4, 8, 1), Origin::Local, Instant(0)));
        assert_eq!(i.refused(), 1);
        let mut out = Vec::new();
        i.remove_where(|r| r.origin == Origin::Child(c), &mut out);
        assert_eq!(out.len(), 2);
        assert!(out.iter().all(|d| !d.add));
        assert_eq!(i.len(), 1);
        assert_eq!(key_of("a"), key_of("a"));
        assert_ne!(key_of("a"), key_of("b"));
    }
}
