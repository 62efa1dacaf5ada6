//! Membership, the peer's side: join by multicast advertisement, bind to a super-peer,
//! beat, rebind when the super-peer fails, leave.
//!
//! A joining peer multicasts a [`Frame::Solicit`] to the overlay group, where the root
//! cell's super-peers listen. The root's coordinator answers with an [`Frame::Offer`]: its
//! own cell (bind as a peer, or as a super-peer when the cell is short of members), or a
//! redirect to its least-loaded child cell, which answers the same way, so placement
//! descends the tree. The peer binds to the first super-peer listed and remembers all of
//! them. If no one answers three advertisements, the peer founds a root cell. When its
//! super-peer is declared down, the peer binds to the next live member of the same cell,
//! then to a member of the parent cell, and only then advertises again; after a rebind
//! it re-publishes its SAPs at once with a new version.

use super::frame::{Frame, Members, OfferKind, View};
use super::id::{CellId, Member, PeerId};
use super::node::{Event, Node, Role};
use super::time::Instant;
use crate::error::Error;

impl Node {
    /// Join the overlay. Fails (state unchanged) unless the node is idle.
    pub fn join(&mut self, now: Instant) -> Result<(), Error> {
        if self.role != Role::Idle {
            return Err(Error::Command {
                what: "join",
                why: "already joined (or left); a node joins once, create a new Node to rejoin",
            });
        }
        self.role = Role::Joining;
        self.next_tick = now.after(self.next_tick.0 % self.cfg.heartbeat);
        self.next_refresh = now.after(self.cfg.lease / 3);
        self.join.rebinding = false;
        self.solicit(now);
        self.flush(now);
        Ok(())
    }

    /// Leave the overlay, announced. Peers unbind; super-peers tell their cell and peers.
    pub fn leave(&mut self, _now: Instant) -> Result<(), Error> {
        match self.role {
            Role::Idle | Role::Left => {
                return Err(Error::Command {
                    what: "leave",
                    why: "not joined",
                });
            }
            Role::Peer => {
                if let Some(sp) = self.sp {
                    let f = Frame::Unbind {
                        cell: self.view.cell,
                        leaving: true,
                    };
                    self.emit_to(sp, &f);
                    self.emit_to(sp, &f);
                }
            }
            Role::SuperPeer => {
                let f = Frame::Leave {
                    cell: self.view.cell,
                };
                let mut to: Vec<Member> = self
                    .view
                    .members
                    .iter()
                    .copied()
                    .filter(|m| m.id != self.me.id)
                    .collect();
                to.extend(self.bound.iter().map(|(&id, &addr)| Member { id, addr }));
                for m in to {
                    self.emit_to(m, &f);
                    self.emit_to(m, &f);
                }
            }
            Role::Joining => {}
        }
        self.set_listening(false);
        self.role = Role::Left;
        self.events.push_back(Event::Left);
        Ok(())
    }

    pub(crate) fn solicit(&mut self, now: Instant) {
        self.join.nonce = self.nonce();
        self.join.attempts += 1;
        self.join.redirects = 0;
        self.join.binding = false;
        self.join.candidates.clear();
        self.join.deadline = Some(now.after(self.cfg.solicit_timeout));
        let f = Frame::Solicit {
            nonce: self.join.nonce,
            attach: CellId::NONE,
            root: CellId::NONE,
        };
        let group = self.cfg.group;
        self.emit(group, PeerId::NONE, 0, &f);
    }

    pub(crate) fn on_join_timeout(&mut self, now: Instant) {
        if self.role != Role::Joining {
            return;
        }
        if let Some(next) = self.join.candidates.first().copied() {
            self.join.candidates.remove(0);
            self.bind_to(next, now);
            return;
        }
        if self.join.attempts < 3 || self.join.heard_offer {
            if self.join.attempts >= 3 {
                // an overlay answered before: keep asking rather than found a second one
                self.join.attempts = 0;
                self.join.heard_offer = false;
            }
            self.solicit(now);
            return;
        }
        // Nobody answers: found a root cell.
        let cell = CellId::new(now.0, self.me.id);
        let mut members = Members::new();
        let _ = members.push(self.me);
        let view = View {
            cell,
            version: 1,
            members,
            parent: CellId::NONE,
            parent_members: Members::new(),
            root: cell,
            depth: 0,
        };
        self.join.deadline = None;
        self.events.push_back(Event::Joined {
            cell,
            super_peer: true,
        });
        self.become_super_peer(view, now);
        self.events.push_back(Event::BecameRoot { cell });
    }

    pub(crate) fn bind_to(&mut self, sp: Member, now: Instant) {
        self.join.deadline = Some(now.after(self.cfg.heartbeat));
        let f = Frame::Bind {
            nonce: self.join.nonce,
            cell: self.view.cell,
        };
        self.emit_to(sp, &f);
    }

    /// Rebind after the super-peer failed: other members of the cell, then the parent.
    pub(crate) fn start_rebind(&mut self, now: Instant) {
        let old = self.sp.take();
        if let Some(o) = old {
            self.detector.unwatch(o.id);
            self.drop_link(o.id);
        }
        self.role = Role::Joining;
        self.join.rebinding = true;
        self.join.nonce = self.nonce();
        self.join.attempts = 0;
        let me = self.me.id.0;
        let mut cands: Vec<Member> = self
            .view
            .members
            .iter()
            .copied()
            .filter(|m| Some(m.id) != old.map(|o| o.id) && !self.down.contains_key(&m.id))
            .collect();
        // spread the orphans over the remaining members
        cands.sort_by_key(|m| spread(me, m.id.0));
        cands.extend(
            self.view
                .parent_members
                .iter()
                .copied()
                .filter(|m| !self.down.contains_key(&m.id)),
        );
        self.join.candidates = cands;
        self.join.binding = true;
        self.join.deadline = Some(now);
        self.on_join_timeout(now);
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn on_offer(
        &mut self,
        sender: Member,
        nonce: u64,
        kind: OfferKind,
        cell: CellId,
        root: CellId,
        depth: u8,
        members: Members,
        now: Instant,
    ) {
        if self.role == Role::SuperPeer {
            self.on_attach_offer(sender, kind, cell, root, depth, members, now);
            return;
        }
        if self.role == Role::Peer
            && kind == OfferKind::Redirect
            && self.sp.map(|s| s.id) == Some(sender.id)
        {
            // our super-peer serves more than its share: join again through that cell
            // (we unbind from the old super-peer, which withdraws our records, once we
            // are bound and have re-published where we land)
            if let Some(old) = self.sp.take() {
                self.join.moved_from = Some(old);
                self.detector.unwatch(old.id);
                self.drop_link(old.id);
            }
            self.role = Role::Joining;
            self.join.rebinding = true;
            self.join.binding = false;
            self.join.nonce = nonce;
            self.join.attempts = 0;
            self.join.redirects = 0;
            self.join.candidates.clear();
            self.join.deadline = Some(now.after(self.cfg.solicit_timeout));
            if let Some(first) = members.first().copied() {
                let f = Frame::Solicit {
                    nonce,
                    attach: CellId::NONE,
                    root: CellId::NONE,
                };
                self.emit_to(first, &f);
            }
            return;
        }
        if self.role == Role::Peer
            && kind == OfferKind::SuperPeer
            && self.sp.map(|s| s.id) == Some(sender.id)
        {
            // recruited by our super-peer for a child cell short of members (we unbind
            // from it once we serve there and have re-published)
            if let Some(old) = self.sp.take() {
                self.join.moved_from = Some(old);
                self.detector.unwatch(old.id);
                self.drop_link(old.id);
            }
            self.role = Role::Joining;
            self.join.rebinding = true;
            self.join.binding = true;
            self.join.nonce = nonce;
            self.join.attempts = 0;
            self.view.cell = cell;
            self.join.candidates = members.iter().copied().skip(1).collect();
            if let Some(first) = members.first().copied() {
                self.bind_to(first, now);
            }
            return;
        }
        if self.role != Role::Joining || nonce != self.join.nonce {
            return;
        }
        let Some(first) = members.first().copied() else {
            return;
        };
        self.join.heard_offer = true;
        match kind {
            OfferKind::Peer | OfferKind::SuperPeer => {
                self.join.binding = true;
                self.view.cell = cell;
                self.join.candidates = members.iter().copied().skip(1).collect();
                self.bind_to(first, now);
            }
            OfferKind::Redirect if self.join.redirects < 32 => {
                self.join.redirects += 1;
                self.join.deadline = Some(now.after(self.cfg.solicit_timeout));
                let f = Frame::Solicit {
                    nonce,
                    attach: CellId::NONE,
                    root: CellId::NONE,
                };
                self.emit_to(first, &f);
            }
            _ => {}
        }
    }

    pub(crate) fn on_bind_ack(&mut self, sender: Member, nonce: u64, view: View, now: Instant) {
        if self.role != Role::Joining || nonce != self.join.nonce {
            if self.sp.map(|s| s.id) != Some(sender.id) {
                // a late answer from a super-peer we no longer want: undo that binding
                let f = Frame::Unbind {
                    cell: view.cell,
                    leaving: false,
                };
                self.emit_to(sender, &f);
            }
            return;
        }
        if view.members.iter().any(|m| m.id == self.me.id) {
            return; // promoted instead: the CellView does the rest
        }
        self.role = Role::Peer;
        self.sp = Some(sender);
        self.view = view;
        self.join.deadline = None;
        self.join.candidates.clear();
        self.down.remove(&sender.id);
        // the super-peer beats every few periods: its cell mates watch it closely
        let period = self.cfg.heartbeat * self.cfg.peer_beat_every as u64;
        self.detector.watch(sender.id, sender.addr, period, now);
        self.detector.heard(sender.id, now);
        if self.join.rebinding {
            self.events.push_back(Event::Rebound {
                cell: self.view.cell,
                super_peer: sender.id,
            });
        } else {
            self.events.push_back(Event::Joined {
                cell: self.view.cell,
                super_peer: false,
            });
        }
        self.republish_bumped(now);
        self.unbind_moved_from();
    }

    /// After a move (make before break): the records are published at the new place, so
    /// the old super-peer may withdraw its copies now.
    pub(crate) fn unbind_moved_from(&mut self) {
        if let Some(old) = self.join.moved_from.take()
            && self.sp.is_none_or(|s| s.id != old.id)
        {
            let f = Frame::Unbind {
                cell: CellId::NONE,
                leaving: false,
            };
            self.emit_to(old, &f);
        }
    }

    pub(crate) fn peer_tick(&mut self, _now: Instant) {
        // peers tick every `peer_beat_every` periods (see `handle_timeout`)
        if let Some(sp) = self.sp {
            self.emit_to(
                sp,
                &Frame::PeerBeat {
                    cell: self.view.cell,
                    version: self.view.version,
                },
            );
        }
    }

    pub(crate) fn on_sp_beat(
        &mut self,
        sender: Member,
        view: Option<View>,
        ack: u64,
        bound: bool,
        now: Instant,
    ) {
        if self.role != Role::Peer || self.sp.map(|s| s.id) != Some(sender.id) {
            return;
        }
        self.on_ack(sender.id, ack);
        self.detector.heard(sender.id, now);
        if !bound {
            // the super-peer lost us (it restarted, or thought us dead): bind again
            self.role = Role::Joining;
            self.join.rebinding = true;
            self.join.nonce = self.nonce();
            self.join.candidates.clear();
            self.bind_to(sender, now);
            return;
        }
        if let Some(view) = view
            && !view.members.iter().any(|m| m.id == self.me.id)
        {
            self.view = view;
        }
    }

    /// A super-peer (cell mate or own super-peer) announced it leaves.
    pub(crate) fn on_leave(&mut self, sender: Member, now: Instant) {
        match self.role {
            Role::Peer if self.sp.map(|s| s.id) == Some(sender.id) => {
                self.down.insert(sender.id, now);
                self.start_rebind(now);
            }
            Role::SuperPeer if self.view.members.iter().any(|m| m.id == sender.id) => {
                self.detector.unwatch(sender.id);
                self.down.insert(sender.id, now);
                self.sp_on_down(sender.id, now);
            }
            _ => {}
        }
    }
}

/// A per-peer order of candidates, so orphans spread over the remaining super-peers.
fn spread(me: u128, other: u128) -> u64 {
    let x = (me ^ other) as u64 ^ ((me ^ other) >> 64) as u64;
    x.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(29)
}
