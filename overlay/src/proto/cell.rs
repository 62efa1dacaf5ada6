//! Cells and the tree, the super-peer's side.
//!
//! A cell is k super-peers sharing one [`View`]. Its **coordinator** is the member with the
//! lowest id not declared down; only the coordinator changes the view (raising its
//! version) and pushes it to the members. Members beat each other every period, with the
//! roster of their bound peers when it changed (and every 160th beat), so each knows the
//! orphans and the candidates for promotion. A member, or a bound peer, whose beat shows
//! an older view gets the view in answer; views are otherwise sent only when they change.
//!
//! **Repair.** When members are declared down the coordinator drops them from the view.
//! If the survivors are a strict majority of the old view the cell keeps its id; if not
//! (a partition or a mass failure) it takes a fresh id and becomes the root of its own
//! tree, so two halves of a partitioned cell never share an id. A cell short of k members
//! promotes one bound peer (the lowest id) to super-peer.
//!
//! **Packing.** Cells fill to capacity (k · `max_bound` peers) before a new cell is
//! founded, and the tree grows breadth-first: a joining peer goes to its cell's free
//! places, else to the oldest child with free places below it, else a new cell is
//! founded — by the root, or by the cell its parent chose for it (see
//! [`Node::place_below`]). A cell splits (k of its peers found a child cell) only when it
//! holds more peers than places; peers in excess of a cell's capacity move on
//! (`shed_excess`). So all cells but a few are full whatever the overlay's size, and the
//! per-peer share of a cell's beats is the same at 100 peers as at 10,000.
//!
//! **Tree.** A child cell's coordinator beats every member of the parent cell (its
//! coordinator every fourth period, the others every `peer_beat_every` periods) with its
//! subtree's size and free places and a digest of its index, and receives the parent's
//! view (with the root id and depth) when its copy is stale; index deltas flow up on the
//! same links (see [`super::discovery`]). When every parent member is down, the cell
//! becomes a root. Roots listen to the overlay group and beacon there; a root hearing the
//! beacon of an older root (smaller cell id) attaches to it, and is placed (or redirected
//! down) like a joining peer, so the trees merge into one, rooted at the oldest cell.

use super::discovery::{Digest, Origin};
use super::frame::{Frame, MAX_BOUND, MemberList, Members, OfferKind, Sap, View};
use super::id::{CellId, Member, PeerId};
use super::node::{Child, Event, Node, Role};
use super::time::Instant;

/// Where [`Node::place_below`] sends a peer.
// A short-lived stack value: the member list lives inline so placing allocates nothing.
#[allow(clippy::large_enum_variant)]
enum Placement {
    /// To this child cell (it has free places, or it is to found a new cell).
    Child(CellId, Members),
    /// Nowhere: this cell keeps it and splits.
    Here,
    /// To the parent cell, which founds the next cell.
    Up,
}

/// A child's index digest must disagree with the parent's copy this long (while the
/// link is quiet) before the parent asks for a snapshot; the first back-off too.
const RESYNC_AFTER: u64 = 2_000_000_000;
/// How long, in heartbeat periods, the copies of a dead mate's peers' records outlive
/// it (the orphans rebind and re-publish within a few periods).
const ORPHAN_GRACE_PERIODS: u64 = 80;
/// Longest back-off between two snapshot requests to one child.
const RESYNC_MAX: u64 = 60_000_000_000;

impl Node {
    /// Take up a super-peer role in `view`.
    pub(crate) fn become_super_peer(&mut self, view: View, now: Instant) {
        // the old super-peer is told after the records are re-published here
        if let Some(old) = self.sp.take() {
            self.drop_link(old.id);
            self.join.moved_from = Some(old);
        }
        let was_peer = self.role != Role::SuperPeer;
        self.role = Role::SuperPeer;
        // super-peers tick every period (a peer ticked every few)
        self.next_tick = self.next_tick.min(now.after(self.cfg.heartbeat));
        self.join.deadline = None;
        self.join.candidates.clear();
        self.bound.clear();
        self.mates.clear();
        self.children.clear();
        self.index = super::discovery::Index::new(self.cfg.max_index);
        let cell = view.cell;
        self.apply_view(view, now);
        if was_peer {
            self.events.push_back(Event::Promoted { cell });
        }
        self.republish_bumped(now);
        self.unbind_moved_from();
    }

    /// Adopt `view` as this super-peer's view.
    pub(crate) fn apply_view(&mut self, view: View, now: Instant) {
        let parent_changed =
            view.parent != self.view.parent || view.parent_members != self.view.parent_members;
        self.view = view;
        let me = self.me.id;
        self.mates
            .retain(|id, _| self.view.members.iter().any(|m| m.id == *id));
        for m in self.view.members.clone() {
            // a bound peer promoted into the cell is a member now, not a bound peer
            if self.bound.remove(&m.id).is_some() {
                self.detector.unwatch(m.id);
                self.bound_seen.remove(&m.id);
            }
            if m.id != me && !self.down.contains_key(&m.id) {
                if !self.mates.contains_key(&m.id) {
                    // a new member: hand it the cell's own records
                    self.push_local_records(m.id, now);
                }
                self.mates.entry(m.id).or_default();
                self.detector.watch(m.id, m.addr, self.cfg.heartbeat, now);
            }
        }
        self.set_listening(self.view.parent.is_none());
        if parent_changed && self.is_coordinator() {
            self.push_snapshot_up(now);
        }
        self.sync_watches(now);
    }

    /// Watch exactly the peers this super-peer must monitor.
    pub(crate) fn sync_watches(&mut self, now: Instant) {
        let coord = self.is_coordinator();
        let hb = self.cfg.heartbeat;
        if coord {
            // parent members other than its coordinator answer every few periods
            let period = hb * self.cfg.peer_beat_every as u64;
            for m in self.view.parent_members.clone() {
                if !self.down.contains_key(&m.id) {
                    self.detector.watch(m.id, m.addr, period, now);
                }
            }
        }
        let view = &self.view;
        let bound = &self.bound;
        let me = self.me.id;
        self.detector.retain(|id| {
            id != me
                && (view.members.iter().any(|m| m.id == id)
                    || bound.contains_key(&id)
                    || (coord && view.parent_members.iter().any(|m| m.id == id)))
        });
    }

    pub(crate) fn set_listening(&mut self, on: bool) {
        if self.listening != on {
            self.listening = on;
            self.events.push_back(Event::ListenGroup(on));
            if on {
                self.next_beacon = Instant::ZERO;
            }
        }
    }

    /// Push a changed view to every other member and to each child cell's coordinator.
    pub(crate) fn push_view(&mut self) {
        self.push_view_to_members();
        // each child cell's coordinator would otherwise learn the change only from its
        // next parent beat
        let children: Vec<Member> = self
            .children
            .values()
            .filter_map(|c| c.members.first().copied())
            .collect();
        for c in children {
            let f = Frame::ParentBeat {
                view: Some(self.view.clone()),
                found: false,
                ack: self.links.ack_for(c.id),
                known: true,
            };
            self.emit_to(c, &f);
        }
    }

    /// Send the view to every other member.
    pub(crate) fn push_view_to_members(&mut self) {
        let f = Frame::CellView {
            view: self.view.clone(),
        };
        for i in 0..self.view.members.len() {
            let m = self.view.members[i];
            if m.id != self.me.id {
                self.emit_to(m, &f);
            }
        }
    }

    pub(crate) fn bound_total(&self) -> usize {
        self.bound.len()
            + self
                .mates
                .values()
                .map(|m| m.bound_count as usize)
                .sum::<usize>()
    }

    /// Peers in this cell's subtree (super-peers, bound peers, children's subtrees).
    pub(crate) fn subtree_peers(&self) -> u32 {
        (self.view.members.len() + self.bound_total()) as u32
            + self.children.values().map(|c| c.peers).sum::<u32>()
    }

    /// Peers this cell's subtree can still take without founding a new cell: the free
    /// places of its live members, and what its children last reported (less the peers
    /// sent there since).
    pub(crate) fn subtree_free(&self) -> u32 {
        let max = self.cfg.max_bound;
        let own: usize = self
            .view
            .members
            .iter()
            .filter(|m| !self.down.contains_key(&m.id))
            .map(|m| {
                let n = if m.id == self.me.id {
                    self.bound.len()
                } else {
                    self.mates
                        .get(&m.id)
                        .map_or(max, |x| x.bound_count as usize)
                };
                max.saturating_sub(n)
            })
            .sum();
        own as u32 + self.children.values().map(|c| c.free).sum::<u32>()
    }

    fn saps(&self) -> heapless::Vec<Sap, { super::frame::MAX_SAPS }> {
        self.cfg
            .classes
            .iter()
            .map(|c| Sap {
                class: c.class,
                reliable: c.reliable,
                priority: c.priority,
                addr: self.me.addr,
            })
            .collect()
    }

    fn offer(
        &mut self,
        to: Member,
        nonce: u64,
        kind: OfferKind,
        cell: CellId,
        depth: u8,
        members: Members,
    ) {
        let f = Frame::Offer {
            nonce,
            kind,
            cell,
            root: self.view.root,
            depth,
            members,
            saps: self.saps(),
        };
        self.emit_to(to, &f);
    }

    /// Least-loaded child (fewest peers), counting the peer about to be sent there, so
    /// a burst of joins spreads before the children's next beats correct the counts.
    fn lightest_child(&mut self) -> Option<(CellId, Members)> {
        let (id, c) = self
            .children
            .iter_mut()
            .filter(|(_, c)| !c.members.is_empty())
            .min_by_key(|(id, c)| (c.peers, **id))?;
        c.peers += 1;
        Some((*id, c.members.clone()))
    }

    /// How many levels below this cell the shallowest new cell could be founded: 1 when
    /// this cell may still split, else one more than its shallowest child's.
    pub(crate) fn open_depth(&self) -> u8 {
        if self.children.len() < self.cfg.max_children {
            return 1;
        }
        self.children
            .values()
            .map(|c| c.open_depth)
            .min()
            .unwrap_or(0)
            .saturating_add(1)
    }

    /// Whether this cell may found a child cell now: it has room for one, and it is a
    /// root or its parent chose it to found the tree's next cell. Any other cell with
    /// more peers than places hands the excess up: founding is decided from the root
    /// down, so the tree grows breadth-first and one new cell fills at a time.
    fn may_split(&self, now: Instant) -> bool {
        self.children.len() < self.cfg.max_children
            && (self.view.parent.is_none() || now < self.found_until)
    }

    /// Where a peer goes that this full cell cannot take in its own places. Cells are
    /// packed and the tree grows breadth-first: existing free places below come first
    /// (the oldest child's, so one cell fills at a time); then a new cell, founded here
    /// if this cell may split ([`Node::may_split`]), else by the parent when this cell
    /// has room for a child; otherwise below, by the child whose subtree can found one
    /// on the shallowest level, which is told so at once and expected to have a new
    /// cell's places from then on. So every cell but a few fills to capacity whatever
    /// the size of the overlay, and the per-peer cost of a cell's beats does not depend
    /// on that size.
    fn place_below(&mut self, now: Instant) -> Placement {
        if let Some((id, members)) = self.child_with_room() {
            return Placement::Child(id, members);
        }
        if self.children.len() < self.cfg.max_children {
            // (a root may always split)
            return if self.may_split(now) {
                Placement::Here
            } else {
                Placement::Up
            };
        }
        if !self.view.parent.is_none() && now >= self.found_until {
            return Placement::Up;
        }
        let cell_places = (self.cfg.cell_size * self.cfg.max_bound) as u32;
        let Some((id, members)) = self
            .children
            .iter_mut()
            .filter(|(_, c)| !c.members.is_empty())
            .min_by_key(|(id, c)| (c.open_depth, **id))
            .map(|(id, c)| {
                c.free = cell_places.saturating_sub(1);
                c.peers += 1;
                (*id, c.members.clone())
            })
        else {
            return Placement::Here;
        };
        // the chosen child founds the next cell: tell it now, before the peer arrives
        if let Some(&coord) = members.first() {
            let f = Frame::ParentBeat {
                view: None,
                found: true,
                ack: self.links.ack_for(coord.id),
                known: true,
            };
            self.emit_to(coord, &f);
        }
        Placement::Child(id, members)
    }

    /// The oldest child cell whose subtree has free places, counting the peer about to
    /// be sent there.
    fn child_with_room(&mut self) -> Option<(CellId, Members)> {
        let (id, c) = self
            .children
            .iter_mut()
            .filter(|(_, c)| !c.members.is_empty() && c.free > 0)
            .min_by_key(|(id, _)| **id)?;
        c.free -= 1;
        c.peers += 1;
        Some((*id, c.members.clone()))
    }

    /// Send `to` (a joining or moving peer) where [`Node::place_below`] says, or return
    /// `false` when this cell is to keep it.
    fn redirect_below(&mut self, to: Member, nonce: u64, now: Instant) -> bool {
        let depth = self.view.depth;
        match self.place_below(now) {
            Placement::Here => false,
            Placement::Child(cell, members) => {
                self.offer(to, nonce, OfferKind::Redirect, cell, depth + 1, members);
                true
            }
            Placement::Up => {
                // the parent founds the next cell: tell it at once that this one is full,
                // so it does not send the peer straight back
                if self.is_coordinator()
                    && let Some(pm) = self.next_hop_up()
                {
                    self.child_beat(pm);
                }
                let (cell, members) = (self.view.parent, self.view.parent_members.clone());
                self.offer(
                    to,
                    nonce,
                    OfferKind::Redirect,
                    cell,
                    depth.saturating_sub(1),
                    members,
                );
                true
            }
        }
    }

    /// A join advertisement (multicast, or unicast after a redirect): place the peer.
    pub(crate) fn on_solicit(&mut self, sender: Member, nonce: u64, now: Instant) {
        if self.role != Role::SuperPeer || !self.is_coordinator() || sender.id == self.me.id {
            return;
        }
        let (cell, depth) = (self.view.cell, self.view.depth);
        if self.view.members.len() < self.cfg.cell_size {
            let mut m = Members::new();
            let _ = m.push(self.me);
            self.offer(sender, nonce, OfferKind::SuperPeer, cell, depth, m);
            return;
        }
        // members ordered by load, the lightest first
        let mut load: Vec<(usize, Member)> = self
            .view
            .members
            .iter()
            .filter(|m| !self.down.contains_key(&m.id))
            .map(|m| {
                let n = if m.id == self.me.id {
                    self.bound.len()
                } else {
                    self.mates.get(&m.id).map_or(0, |x| x.bound_count as usize)
                };
                (n, *m)
            })
            .collect();
        load.sort_by_key(|(n, m)| (*n, m.id));
        let room = load.first().is_some_and(|(n, _)| *n < self.cfg.max_bound);
        if !room && self.redirect_below(sender, nonce, now) {
            return;
        }
        let members: Members = load.into_iter().map(|(_, m)| m).collect();
        self.offer(sender, nonce, OfferKind::Peer, cell, depth, members);
    }

    pub(crate) fn on_bind(&mut self, sender: Member, nonce: u64, now: Instant) {
        if self.role != Role::SuperPeer || self.view.members.iter().any(|m| m.id == sender.id) {
            return;
        }
        self.down.remove(&sender.id);
        if self.is_coordinator() && self.view.members.len() < self.cfg.cell_size {
            self.promote(sender, now);
            return;
        }
        if self.bound.len() >= self.cfg.max_bound && !self.bound.contains_key(&sender.id) {
            // full here: point at mates with room, else at a child cell with free places,
            // else take the peer anyway up to twice the limit (a peer rebinding after its
            // super-peer failed must not wander: if the cell is over capacity the excess
            // moves on later, see `shed_excess`)
            let max = self.cfg.max_bound;
            let roomy: Members = self
                .view
                .members
                .iter()
                .copied()
                .filter(|m| {
                    m.id != self.me.id
                        && !self.down.contains_key(&m.id)
                        && self
                            .mates
                            .get(&m.id)
                            .is_some_and(|x| (x.bound_count as usize) < max)
                })
                .collect();
            let (cell, depth) = (self.view.cell, self.view.depth);
            if !roomy.is_empty() {
                self.offer(sender, nonce, OfferKind::Peer, cell, depth, roomy);
                return;
            }
            if let Some((child, members)) = self.child_with_room() {
                self.offer(
                    sender,
                    nonce,
                    OfferKind::Redirect,
                    child,
                    depth + 1,
                    members,
                );
                return;
            }
            if self.bound.len() >= 2 * max.min(MAX_BOUND / 2) {
                return;
            }
        }
        // a super-peer of a child cell that dissolved binds here as an ordinary peer now
        for c in self.children.values_mut() {
            c.members.retain(|m| m.id != sender.id);
        }
        self.bound.insert(sender.id, sender.addr);
        self.bound_seen.insert(sender.id, now);
        if self.is_coordinator() {
            self.try_split(now);
        }
        self.detector.watch(
            sender.id,
            sender.addr,
            self.cfg.heartbeat * self.cfg.peer_beat_every as u64,
            now,
        );
        let f = Frame::BindAck {
            nonce,
            view: self.view.clone(),
        };
        self.emit_to(sender, &f);
    }

    /// Whether every other member was heard within one and a half periods. Members are
    /// only added while this holds: a cell that grows while a member is silent could keep
    /// its id on the wrong side of a partition (its majority would be judged against a
    /// view that already contains the newcomer).
    fn mates_fresh(&self, now: Instant) -> bool {
        let limit = self.cfg.heartbeat + self.cfg.heartbeat / 2;
        self.view
            .members
            .iter()
            .filter(|m| m.id != self.me.id)
            .all(|m| {
                self.detector
                    .silent_for(m.id, now)
                    .is_some_and(|s| s <= limit)
            })
    }

    /// Add `m` to the cell as a super-peer (coordinator only).
    fn promote(&mut self, m: Member, now: Instant) {
        if !self.mates_fresh(now) {
            return;
        }
        let mut members: Vec<Member> = self.view.members.iter().copied().collect();
        if members.iter().any(|x| x.id == m.id) {
            return;
        }
        members.push(m);
        members.sort();
        let mut view = self.view.clone();
        view.members = members.into_iter().collect();
        view.version += 1;
        self.last_promote = now;
        self.apply_view(view, now);
        self.push_view();
    }

    /// A bound peer unbinds (it leaves, or it moved and now publishes elsewhere): its
    /// records held here are withdrawn (copies that came from a mate are the mate's to
    /// withdraw, so a peer that moved within the cell keeps its new record).
    pub(crate) fn on_unbind(&mut self, sender: Member, _leaving: bool, now: Instant) {
        if self.bound.remove(&sender.id).is_some() {
            self.bound_seen.remove(&sender.id);
            self.detector.unwatch(sender.id);
            self.drop_link(sender.id);
            self.remove_records(
                |r| r.origin == Origin::Local && r.owner.id == sender.id,
                true,
                now,
            );
        }
    }

    pub(crate) fn on_peer_beat(
        &mut self,
        sender: Member,
        cell: CellId,
        version: u64,
        now: Instant,
    ) {
        if self.role != Role::SuperPeer {
            return;
        }
        if self.bound.contains_key(&sender.id) {
            self.bound_seen.insert(sender.id, now);
            self.detector.heard(sender.id, now);
            if (cell, version) != (self.view.cell, self.view.version) {
                // the peer missed a change of the view
                let f = Frame::SpBeat {
                    view: Some(self.view.clone()),
                    ack: self.links.ack_for(sender.id),
                    bound: true,
                };
                self.emit_to(sender, &f);
            }
            return;
        }
        // Not (or no longer) bound here: say so, the peer will bind again.
        let f = Frame::SpBeat {
            view: None,
            ack: 0,
            bound: false,
        };
        self.emit_to(sender, &f);
    }

    pub(crate) fn sp_tick(&mut self, now: Instant) {
        // Bindings not confirmed by a beat for six beat intervals are stale: the peer
        // bound elsewhere (a late bind answer) or died. Drop them and withdraw the
        // records held for them; a peer that still thinks it is bound here is told on
        // its next beat, binds again and re-publishes.
        if self.ticks.is_multiple_of(4) {
            let limit = 6 * self.cfg.peer_beat_every as u64 * self.cfg.heartbeat;
            let stale: Vec<PeerId> = self
                .bound_seen
                .iter()
                .filter(|(_, t)| now.since(**t) > limit)
                .map(|(id, _)| *id)
                .collect();
            for id in stale {
                self.bound_seen.remove(&id);
                if self.bound.remove(&id).is_some() {
                    self.detector.unwatch(id);
                    self.drop_link(id);
                    self.remove_records(
                        |r| r.origin == Origin::Local && r.owner.id == id,
                        true,
                        now,
                    );
                }
            }
            let bound = &self.bound;
            self.bound_seen.retain(|id, _| bound.contains_key(id));
        }
        // the coordinator of a cell is the one that feeds the parent: a new one starts its
        // links up with a snapshot, a former one closes them
        let coord = self.is_coordinator();
        if coord != self.was_coordinator {
            self.was_coordinator = coord;
            if coord {
                self.push_snapshot_up(now);
            } else {
                for i in 0..self.view.parent_members.len() {
                    let id = self.view.parent_members[i].id;
                    self.drop_link(id);
                }
            }
        }
        // peers, every few periods (a cell mate notices a dead super-peer first and tells
        // its peers): the view only when it changed (a peer whose beat shows an older
        // one gets it in answer)
        let every = self.cfg.peer_beat_every as u64;
        let changed = self.beat_version != (self.view.cell, self.view.version);
        if !self.ticks.is_multiple_of(every) && !changed {
            self.shed_excess(now);
            return self.sp_tick_mates(now);
        }
        self.beat_version = (self.view.cell, self.view.version);
        let view = changed.then(|| self.view.clone());
        let mut peers = std::mem::take(&mut self.member_scratch);
        peers.clear();
        peers.extend(self.bound.iter().map(|(&id, &addr)| Member { id, addr }));
        for p in peers.iter() {
            let f = Frame::SpBeat {
                view: view.clone(),
                ack: self.links.ack_for(p.id),
                bound: true,
            };
            self.emit_to(*p, &f);
        }
        self.member_scratch = peers;
        self.shed_excess(now);
        self.sp_tick_mates(now);
    }

    fn sp_tick_mates(&mut self, now: Instant) {
        // mates, every period; the roster of bound peers for two beats after it changed
        // (once more in case one is lost), and every 160th beat
        let digest = self
            .bound
            .keys()
            .fold(self.bound.len() as u128, |h, id| h.rotate_left(5) ^ id.0);
        if digest != self.roster_digest {
            self.roster_digest = digest;
            self.roster_beats = 2;
        }
        let roster = self.roster_beats > 0 || self.ticks.is_multiple_of(160);
        self.roster_beats = self.roster_beats.saturating_sub(1);
        let mut bound = std::mem::take(&mut self.member_scratch);
        bound.clear();
        if roster {
            bound.extend(
                self.bound
                    .iter()
                    .take(MAX_BOUND)
                    .map(|(&id, &addr)| Member { id, addr }),
            );
        }
        for i in 0..self.view.members.len() {
            let m = self.view.members[i];
            if m.id == self.me.id {
                continue;
            }
            let f = Frame::CellBeat {
                cell: self.view.cell,
                version: self.view.version,
                ack: self.links.ack_for(m.id),
                bound_count: self.bound.len() as u16,
                has_roster: roster,
                bound: MemberList::Slice(&bound),
                children: self.children.len() as u8,
            };
            self.emit_to(m, &f);
        }
        self.member_scratch = bound;
        // children that went silent
        let limit = (2 * self.cfg.peer_beat_every as u64 + 2) * self.cfg.heartbeat;
        let dead: Vec<CellId> = self
            .children
            .iter()
            .filter(|(_, c)| now.since(c.last) > limit)
            .map(|(id, _)| *id)
            .collect();
        for c in dead {
            self.children.remove(&c);
            self.remove_records(|r| r.origin == Origin::Child(c), false, now);
        }
        if self.is_coordinator() {
            self.coordinator_tick(now);
        }
    }

    /// Beat the parent member `pm`: this cell's members and room, the parent view it
    /// holds, and its index digest as of the last delta queued for `pm`.
    pub(crate) fn child_beat(&mut self, pm: Member) {
        let digest = self.index.digest();
        // the members for two beats after the view changed, and every eighth beat (an
        // empty list means "unchanged": a cell always has a member)
        let members = if self.members_beats > 0 || self.ticks.is_multiple_of(32) {
            self.view.members.clone()
        } else {
            Members::new()
        };
        let f = Frame::ChildBeat {
            child: self.view.cell,
            members,
            peers: self.subtree_peers(),
            free: self.subtree_free(),
            open_depth: self.open_depth(),
            parent: self.parent_version.0,
            parent_version: self.parent_version.1,
            sync_epoch: self.links.epoch(pm.id),
            sync_upto: self.links.last_queued(pm.id),
            index_len: digest.len,
            index_digest: digest.sum,
        };
        self.emit_to(pm, &f);
    }

    fn coordinator_tick(&mut self, now: Instant) {
        let hb = self.cfg.heartbeat;

        self.reform_view(now);
        if self.role != Role::SuperPeer {
            return;
        }
        // (no periodic view push: a member whose beat shows an older view gets it in
        // answer)
        // parent link
        if !self.view.parent.is_none() {
            // the parent's coordinator every four periods, its other members every few
            // periods, and even members declared down: their answer is what revives them
            // (a parent member wrongly declared down would otherwise never get our index)
            let every = self.cfg.peer_beat_every as u64;
            let coord = self
                .view
                .parent_members
                .iter()
                .map(|m| m.id)
                .find(|id| !self.down.contains_key(id));
            if self.members_sent != (self.view.cell, self.view.version) {
                self.members_sent = (self.view.cell, self.view.version);
                self.members_beats = 2;
            }
            let mut beat = false;
            for pm in self.view.parent_members.clone() {
                if (Some(pm.id) == coord && self.ticks.is_multiple_of(4))
                    || self.ticks.is_multiple_of(every)
                {
                    self.child_beat(pm);
                    beat |= Some(pm.id) == coord;
                }
            }
            if beat {
                self.members_beats = self.members_beats.saturating_sub(1);
            }
        } else if now >= self.next_beacon {
            self.next_beacon = now.after(self.cfg.beacon_period);
            // the coordinator alone is listed: an attaching root asks it
            let f = Frame::Beacon {
                root: self.view.cell,
                members: [self.me].into_iter().collect(),
                peers: self.subtree_peers(),
            };
            let group = self.cfg.group;
            self.emit(group, PeerId::NONE, 0, &f);
        }
        // promotion
        if self.view.members.len() < self.cfg.cell_size && now.since(self.last_promote) >= 4 * hb {
            let mut cands: Vec<Member> = self
                .bound
                .iter()
                .map(|(&id, &addr)| Member { id, addr })
                .collect();
            cands.sort();
            if cands.is_empty() {
                for mate in self.mates.values() {
                    cands.extend(mate.bound.iter().copied());
                }
                cands.sort();
            }
            if let Some(c) = cands.into_iter().find(|c| !self.down.contains_key(&c.id)) {
                self.promote(c, now);
                let f = Frame::CellView {
                    view: self.view.clone(),
                };
                self.emit_to(c, &f);
            }
        }
        self.recruit_for_children(now);
        self.try_split(now);
        self.maybe_dissolve(now);
    }

    /// A cell short of members with no peer in it to promote cannot heal itself: after
    /// eight periods it dissolves, and its super-peers bind to the parent cell as
    /// ordinary peers (where they can be recruited again). Its child cells find their
    /// parent gone and re-attach as orphaned subtrees do.
    fn maybe_dissolve(&mut self, now: Instant) {
        let short = self.view.members.len() < self.cfg.cell_size
            && self.bound_total() == 0
            && !self.view.parent.is_none();
        if !short {
            self.short_since = None;
            return;
        }
        let since = *self.short_since.get_or_insert(now);
        if now.since(since) < 8 * self.cfg.heartbeat {
            return;
        }
        let mut view = self.view.clone();
        view.members = Members::new();
        view.version += 1;
        let f = Frame::CellView { view: view.clone() };
        for m in self.view.members.clone() {
            if m.id != self.me.id {
                self.emit_to(m, &f);
            }
        }
        self.events.push_back(Event::Demoted);
        self.set_listening(false);
        self.short_since = None;
        self.view = view;
        self.mates.clear();
        self.role = Role::Peer;
        self.start_rebind(now);
    }

    /// Split when the cell holds more peers than places, no child has free places and
    /// this cell may found a child (coordinator only).
    pub(crate) fn try_split(&mut self, now: Instant) {
        let hb = self.cfg.heartbeat;
        let k = self.cfg.cell_size;
        // only a cell with more peers than places splits (the next cell is founded when
        // a peer needs it, not before: no empty cells)
        let max = self.cfg.max_bound;
        let total = self.bound.len()
            + self
                .mates
                .values()
                .map(|m| m.bound_count as usize)
                .sum::<usize>();
        let full = self.view.members.len() >= k && total > k * max;
        // a child with free places takes the next peers: no new cell before they are
        // used; and the tree grows breadth-first (see `may_split`)
        let below_full = self
            .children
            .values()
            .all(|c| c.free == 0 || c.members.is_empty());
        if full && below_full && self.may_split(now) && now.since(self.last_split) >= 2 * hb {
            // only this super-peer's own peers: its roster is exact, a mate's may be stale
            let mut cands: Vec<Member> = self
                .bound
                .iter()
                .map(|(&id, &addr)| Member { id, addr })
                .collect();
            cands.retain(|c| !self.down.contains_key(&c.id));
            cands.sort();
            if cands.len() >= k {
                cands.truncate(k);
                let cell = CellId::new(now.0, cands[0].id);
                let child = View {
                    cell,
                    version: 1,
                    members: cands.iter().copied().collect(),
                    parent: self.view.cell,
                    parent_members: self.view.members.clone(),
                    root: self.view.root,
                    depth: self.view.depth.saturating_add(1),
                };
                let f = Frame::CellView {
                    view: child.clone(),
                };
                for c in &cands {
                    self.emit_to(*c, &f);
                }
                // the new cell's members serve no peers yet: its places are free
                let mut c = Child::new(child.members.clone(), k as u32, now);
                c.free = (k * self.cfg.max_bound) as u32;
                c.recruited = now;
                self.children.insert(cell, c);
                self.last_split = now;
            }
        }
    }

    /// A super-peer serving more peers than its share (a burst of joins arrived faster
    /// than the tree's free places were reported) moves the excess where the tree has
    /// room ([`Node::place_below`]), a round every four periods: the moved peers join
    /// again through that cell and re-publish. Excess the cell itself is to absorb stays
    /// until the coordinator splits.
    fn shed_excess(&mut self, now: Instant) {
        let max = self.cfg.max_bound;
        if self.bound.len() <= max || now.since(self.last_shed) < 4 * self.cfg.heartbeat {
            return;
        }
        // only what the cell as a whole cannot hold (a super-peer that took a failed
        // mate's peers keeps them while the cell has room)
        let cell_excess = self.bound_total().saturating_sub(self.cfg.cell_size * max);
        if cell_excess == 0 {
            return;
        }
        self.last_shed = now;
        let excess = (self.bound.len() - max).min(cell_excess);
        let movers: Vec<Member> = self
            .bound
            .iter()
            .rev()
            .filter(|(id, _)| !self.down.contains_key(*id))
            .take(excess)
            .map(|(&id, &addr)| Member { id, addr })
            .collect();
        for m in movers {
            let nonce = self.nonce();
            if !self.redirect_below(m, nonce, now) {
                return;
            }
        }
    }

    /// Give a child cell that is short of members one of this super-peer's peers.
    fn recruit_for_children(&mut self, now: Instant) {
        let k = self.cfg.cell_size;
        let short: Vec<(CellId, Members)> = self
            .children
            .iter()
            .filter(|(_, c)| {
                c.members.len() < k
                    && !c.members.is_empty()
                    && now.since(c.recruited) >= 4 * self.cfg.heartbeat
            })
            .map(|(id, c)| (*id, c.members.clone()))
            .collect();
        for (cell, members) in short {
            let Some((&id, &addr)) = self
                .bound
                .iter()
                .find(|(id, _)| !self.down.contains_key(*id))
            else {
                return;
            };
            let depth = self.view.depth.saturating_add(1);
            let nonce = self.nonce();
            self.offer(
                Member { id, addr },
                nonce,
                OfferKind::SuperPeer,
                cell,
                depth,
                members,
            );
            if let Some(c) = self.children.get_mut(&cell) {
                c.recruited = now;
            }
        }
    }

    /// Drop members declared down from the view (coordinator only).
    pub(crate) fn reform_view(&mut self, now: Instant) {
        let live: Members = self
            .view
            .members
            .iter()
            .copied()
            .filter(|m| !self.down.contains_key(&m.id))
            .collect();
        if live.len() == self.view.members.len() {
            return;
        }
        let mut view = self.view.clone();
        let majority = live.len() * 2 > view.members.len();
        view.members = live;
        if majority {
            view.version += 1;
        } else {
            // minority survivors: a new cell, root of its own tree until it re-attaches
            view.cell = CellId::new(now.0, self.me.id);
            view.version = 1;
            view.parent = CellId::NONE;
            view.parent_members = Members::new();
            view.root = view.cell;
            view.depth = 0;
            self.events.push_back(Event::BecameRoot { cell: view.cell });
        }
        // the dropped members' peers learn it now, from the new view, instead of
        // waiting for their own (slower) detectors
        let orphans: Vec<Member> = self
            .view
            .members
            .iter()
            .filter(|m| self.down.contains_key(&m.id))
            .filter_map(|m| self.mates.get(&m.id))
            .flat_map(|mate| mate.bound.iter().copied())
            .collect();
        self.apply_view(view, now);
        self.push_view();
        let f = Frame::CellView {
            view: self.view.clone(),
        };
        for o in orphans {
            self.emit_to(o, &f);
        }
    }

    pub(crate) fn sp_on_down(&mut self, id: PeerId, now: Instant) {
        if self.bound.remove(&id).is_some() {
            self.remove_records(|r| r.origin == Origin::Local && r.owner.id == id, true, now);
            return;
        }
        if self.view.members.iter().any(|m| m.id == id) {
            // the dead mate's own records go; those of its peers stay a little: they
            // re-publish here when they rebind to a member of this cell, and if they
            // rebind elsewhere (or died too) the copies lapse
            self.remove_records(
                |r| r.origin == Origin::Mate(id) && r.owner.id == id,
                false,
                now,
            );
            let grace = now.after(ORPHAN_GRACE_PERIODS * self.cfg.heartbeat);
            self.index
                .expire_by(grace, |r| r.origin == Origin::Mate(id));
            if self.is_coordinator() {
                self.reform_view(now);
            }
            return;
        }
        if self.view.parent_members.iter().any(|m| m.id == id)
            && self.is_coordinator()
            && self
                .view
                .parent_members
                .iter()
                .all(|m| self.down.contains_key(&m.id))
        {
            // the whole parent cell is gone: this subtree becomes a tree of its own
            let mut view = self.view.clone();
            view.parent = CellId::NONE;
            view.parent_members = Members::new();
            view.root = view.cell;
            view.depth = 0;
            view.version += 1;
            self.events.push_back(Event::BecameRoot { cell: view.cell });
            self.apply_view(view, now);
            self.push_view();
        }
    }

    pub(crate) fn on_cell_view(&mut self, sender: Member, view: View, now: Instant) {
        let in_view = view.members.iter().any(|m| m.id == self.me.id);
        match self.role {
            Role::SuperPeer => {
                let same_cell = view.cell == self.view.cell;
                let from_mate = self.view.members.iter().any(|m| m.id == sender.id);
                if !in_view {
                    if same_cell && view.version > self.view.version && from_mate {
                        // expelled (declared down by mistake): become an ordinary peer again
                        self.events.push_back(Event::Demoted);
                        self.set_listening(false);
                        self.bound.clear();
                        self.children.clear();
                        self.view = view;
                        self.role = Role::Peer;
                        self.start_rebind(now);
                    }
                    return;
                }
                // Members this node declared down stay down until they beat it again:
                // only first-hand evidence revives a peer.
                if (same_cell && view.version > self.view.version) || (!same_cell && from_mate) {
                    self.apply_view(view, now);
                }
            }
            Role::Peer
                if !in_view
                    && view.cell == self.view.cell
                    && view.version > self.view.version
                    && self
                        .sp
                        .is_some_and(|sp| !view.members.iter().any(|m| m.id == sp.id)) =>
            {
                // our super-peer was dropped from the cell: bind to a remaining member
                if let Some(sp) = self.sp {
                    self.down.insert(sp.id, now);
                }
                self.view = view;
                self.start_rebind(now);
            }
            Role::Peer | Role::Joining if in_view => {
                for m in &view.members {
                    self.down.remove(&m.id);
                }
                let joining = self.role == Role::Joining && !self.join.rebinding;
                self.become_super_peer(view, now);
                if joining {
                    self.events.push_back(Event::Joined {
                        cell: self.view.cell,
                        super_peer: true,
                    });
                }
            }
            _ => {}
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn on_cell_beat(
        &mut self,
        sender: Member,
        cell: CellId,
        version: u64,
        ack: u64,
        bound_count: u16,
        roster: Option<MemberList<'_>>,
        now: Instant,
    ) {
        if self.role != Role::SuperPeer || cell != self.view.cell {
            return;
        }
        if !self.view.members.iter().any(|m| m.id == sender.id) {
            if self.is_coordinator() {
                // it still thinks it is a member: show it the view
                let f = Frame::CellView {
                    view: self.view.clone(),
                };
                self.emit_to(sender, &f);
            }
            return;
        }
        if self.down.remove(&sender.id).is_some() {
            // revived: watch it again and hand it the cell's records it missed
            self.detector
                .watch(sender.id, sender.addr, self.cfg.heartbeat, now);
            self.push_local_records(sender.id, now);
        }
        self.detector.heard(sender.id, now);
        self.on_ack(sender.id, ack);
        let mate = self.mates.entry(sender.id).or_default();
        mate.bound_count = bound_count;
        if let Some(r) = roster {
            mate.bound.clear();
            mate.bound.extend(r.iter());
        }
        if version < self.view.version && self.is_coordinator() {
            let f = Frame::CellView {
                view: self.view.clone(),
            };
            self.emit_to(sender, &f);
        }
    }

    /// A child cell's coordinator beat: note the child, check its index digest against
    /// our copy, and answer with the ack, our view when its copy is stale, and whether we
    /// trust our copy of its index.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn on_child_beat(
        &mut self,
        sender: Member,
        child: CellId,
        members: &Members,
        peers: u32,
        free: u32,
        open_depth: u8,
        pview: (CellId, u64),
        sync: (u32, u64),
        digest: Digest,
        now: Instant,
    ) {
        if self.role != Role::SuperPeer || child == self.view.cell || child == self.view.parent {
            return;
        }
        let known = self.children.contains_key(&child);
        // Compare the child's digest with our copy only when the link is quiet: we have
        // applied exactly the deltas the child had queued when it beat.
        let quiet = match (sync, self.links.received(sender.id)) {
            ((0, _), _) => true,
            ((epoch, upto), Some(got)) => got == (epoch, upto),
            _ => false,
        };
        let agrees = self.index.digest_of(Origin::Child(child)) == digest;
        let c = self
            .children
            .entry(child)
            .or_insert_with(|| Child::new(Members::new(), peers, now));
        if !members.is_empty() {
            c.members = members.clone();
        }
        c.peers = peers;
        c.free = free;
        c.open_depth = open_depth;
        c.last = now;
        let mut resync = false;
        if quiet && agrees {
            c.mismatch_since = None;
            c.resync_backoff = 0;
        } else if quiet {
            // Deltas in flight make copies differ for a moment, and so does a record
            // claimed along two paths while its old path withdraws it: only a lasting
            // disagreement is repaired, with a growing back-off.
            let since = *c.mismatch_since.get_or_insert(now);
            if now.since(since) >= RESYNC_AFTER && now >= c.resync_after {
                c.resync_backoff = (c.resync_backoff * 2).clamp(RESYNC_AFTER, RESYNC_MAX);
                c.resync_after = now.after(c.resync_backoff);
                c.mismatch_since = None;
                resync = true;
            }
        }
        if resync {
            self.stats.resyncs += 1;
        }
        let stale = pview != (self.view.cell, self.view.version)
            || self.view.members.len() < self.cfg.cell_size;
        // `known: false` asks a new (or forgotten and re-found) child, or one whose index
        // we no longer trust, for a snapshot of its whole index
        let f = Frame::ParentBeat {
            view: stale.then(|| self.view.clone()),
            found: false,
            ack: self.links.ack_for(sender.id),
            known: known && !resync,
        };
        self.emit_to(sender, &f);
    }

    pub(crate) fn on_parent_beat(
        &mut self,
        sender: Member,
        pview: Option<&View>,
        found: bool,
        ack: u64,
        known: bool,
        now: Instant,
    ) {
        if self.role != Role::SuperPeer
            || !self.view.parent_members.iter().any(|m| m.id == sender.id)
        {
            return;
        }
        if self.view.members.iter().any(|m| m.id == sender.id) {
            return; // a member of our parent cannot be our mate: our view is stale
        }
        let revived = self.down.remove(&sender.id).is_some();
        if revived && self.is_coordinator() {
            let period = self.cfg.heartbeat * self.cfg.peer_beat_every as u64;
            self.detector.watch(sender.id, sender.addr, period, now);
        }
        if (revived || !known) && self.is_coordinator() {
            // revived, or the parent member does not know us (new, or it forgot us) or
            // distrusts its copy: hand it our whole index
            self.snapshot_to(sender.id, now);
        }
        self.detector.heard(sender.id, now);
        self.on_ack(sender.id, ack);
        if found {
            self.found_until = now.after(8 * self.cfg.heartbeat);
        }
        let Some(pview) = pview else {
            return;
        };
        if pview.parent == self.view.cell
            || pview.root == self.view.cell && pview.cell != self.view.cell
        {
            return; // would close a cycle
        }
        self.parent_version = (pview.cell, pview.version);
        let depth = pview.depth.saturating_add(1);
        if !self.is_coordinator() {
            return;
        }
        if pview.cell == self.view.parent
            && pview.members.len() < self.cfg.cell_size
            && now.since(self.last_promote) >= 4 * self.cfg.heartbeat
            && let Some((&id, &addr)) = self.bound.iter().next()
        {
            // the parent is short of members and has no peer of its own to promote (or
            // it would have): lend it one of ours
            self.last_promote = now;
            let nonce = self.nonce();
            self.offer(
                Member { id, addr },
                nonce,
                OfferKind::SuperPeer,
                pview.cell,
                pview.depth,
                pview.members.clone(),
            );
        }
        if depth > 64 {
            // a depth this large means a cycle formed somewhere: cut loose
            let mut view = self.view.clone();
            view.parent = CellId::NONE;
            view.parent_members = Members::new();
            view.root = view.cell;
            view.depth = 0;
            view.version += 1;
            self.apply_view(view, now);
            self.push_view();
            return;
        }
        if pview.cell != self.view.parent
            || pview.members != self.view.parent_members
            || pview.root != self.view.root
            || depth != self.view.depth
        {
            let mut view = self.view.clone();
            view.parent = pview.cell;
            view.parent_members = pview.members.clone();
            view.root = pview.root;
            view.depth = depth;
            view.version += 1;
            self.apply_view(view, now);
            self.push_view();
        }
    }

    pub(crate) fn on_beacon(&mut self, root: CellId, members: &Members, now: Instant) {
        if self.role != Role::SuperPeer
            || !self.is_coordinator()
            || !self.view.parent.is_none()
            || root >= self.view.cell
            || now < self.attach_deadline
        {
            return;
        }
        let Some(to) = members.first().copied() else {
            return;
        };
        self.attach_deadline = now.after(4 * self.cfg.heartbeat);
        self.send_attach(to);
    }

    fn send_attach(&mut self, to: Member) {
        let nonce = self.nonce();
        let f = Frame::Attach {
            nonce,
            cell: self.view.cell,
            members: self.view.members.clone(),
            root: self.view.cell,
            peers: self.subtree_peers(),
        };
        self.emit_to(to, &f);
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn on_attach(
        &mut self,
        sender: Member,
        nonce: u64,
        cell: CellId,
        members: Members,
        root: CellId,
        peers: u32,
        now: Instant,
    ) {
        if self.role != Role::SuperPeer
            || root == self.view.root
            || cell == self.view.cell
            || cell == self.view.parent
        {
            return;
        }
        if self.children.len() < self.cfg.max_children || self.children.contains_key(&cell) {
            self.children.insert(cell, Child::new(members, peers, now));
            let (c, d, m) = (self.view.cell, self.view.depth, self.view.members.clone());
            self.offer(sender, nonce, OfferKind::Attached, c, d, m);
        } else if let Some((child, m)) = self.lightest_child() {
            let d = self.view.depth + 1;
            self.offer(sender, nonce, OfferKind::Redirect, child, d, m);
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn on_attach_offer(
        &mut self,
        _sender: Member,
        kind: OfferKind,
        cell: CellId,
        root: CellId,
        depth: u8,
        members: Members,
        now: Instant,
    ) {
        if !self.is_coordinator() || !self.view.parent.is_none() || root == self.view.cell {
            return;
        }
        match kind {
            OfferKind::Attached => {
                let mut view = self.view.clone();
                view.parent = cell;
                view.parent_members = members;
                view.root = root;
                view.depth = depth.saturating_add(1);
                view.version += 1;
                self.apply_view(view, now);
                self.push_view();
                self.events.push_back(Event::Attached { parent: cell });
            }
            OfferKind::Redirect => {
                if let Some(to) = members.first().copied() {
                    self.send_attach(to);
                }
            }
            _ => {}
        }
    }
}
