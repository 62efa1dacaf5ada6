//! Reliable, ordered delivery of index deltas on one link (peer → super-peer, super-peer →
//! cell mate, child cell → parent super-peer).
//!
//! The sender numbers deltas and keeps them until acknowledged; it sends new ones at once
//! in [`Frame::Sync`](super::frame::Frame::Sync) frames and resends the unacknowledged
//! ones when a retransmission timeout has passed without an ack. The receiver applies
//! deltas in sequence and reports the highest contiguous sequence it holds; that ack
//! rides on the next beat going the other way, or, when no beat is due soon, on an
//! ack-only sync frame (the receiver notes that it owes one).
//!
//! Each link carries an epoch chosen by the sender; a link the sender re-creates (after a
//! restart, or after dropping it) has a new epoch and restarts the receiver's side. The
//! sequence numbers of a new link start above every number this endpoint used before
//! (and above those of earlier incarnations, whose numbers start lower), so a late ack
//! meant for an old link can never acknowledge deltas of a new one. The outbox is
//! bounded: on overflow the oldest deltas are dropped and counted, and the index's
//! anti-entropy (digests on the beats, snapshots on mismatch) repairs what they carried.

use super::DetMap;
use std::collections::VecDeque;

use super::frame::{Delta, MAX_DELTAS};
use super::id::PeerId;
use super::time::Instant;

/// Most deltas waiting on one link.
pub const OUTBOX: usize = 1 << 16;
/// Most deltas in flight (sent, not yet acknowledged) on one link: eight frames.
pub const WINDOW: u64 = 8 * MAX_DELTAS as u64;

#[derive(Clone, Debug, Default)]
struct Link {
    /// This link's identity on the sending side (0: nothing sent yet): a link dropped and
    /// created again gets a new one, so the receiver restarts instead of taking new
    /// deltas for duplicates.
    epoch: u32,
    /// Last sequence number queued.
    next_seq: u64,
    /// Highest sequence sent so far.
    sent_upto: u64,
    /// When deltas were last (re)sent.
    sent_at: Instant,
    out: VecDeque<(u64, Delta)>,
    in_epoch: u32,
    in_upto: u64,
    in_known: bool,
    /// Deltas arrived that no beat has acknowledged yet.
    ack_owed: bool,
    /// The sender started this link afresh (a first link, a restart, or it had dropped
    /// the link: it may have lost what we sent it).
    in_new: bool,
    /// Deltas that arrived ahead of a gap (datagrams reorder), by sequence, at most a
    /// window above `in_upto`.
    ahead: Vec<(u64, Delta)>,
}

/// Every link of one endpoint.
#[derive(Clone, Debug, Default)]
pub struct Links {
    links: DetMap<PeerId, Link>,
    /// Peers that may have unacknowledged deltas (a superset: checked when read), so
    /// the periodic resend does not walk every link.
    busy: Vec<PeerId>,
    /// Peers that may be owed an ack (a superset, likewise).
    owed: Vec<PeerId>,
    overflow: u64,
    next_epoch: u32,
    /// Every sequence number used so far is below this one.
    floor: u64,
}

impl Links {
    /// No links. `epoch_seed` should differ between incarnations of the endpoint;
    /// `seq_base` must grow between incarnations (sequence numbers start there).
    pub fn new(epoch_seed: u32, seq_base: u64) -> Links {
        Links {
            next_epoch: epoch_seed,
            floor: seq_base,
            ..Links::default()
        }
    }

    /// Queue `d` for `to`.
    pub fn push(&mut self, to: PeerId, d: Delta) {
        let l = self.links.entry(to).or_default();
        if l.epoch == 0 {
            self.next_epoch = self.next_epoch.wrapping_add(1).max(1);
            l.epoch = self.next_epoch;
            l.next_seq = self.floor;
            l.sent_upto = self.floor;
        }
        if l.out.is_empty() {
            self.busy.push(to);
        }
        if l.out.len() >= OUTBOX {
            l.out.pop_front();
            self.overflow += 1;
        }
        l.next_seq += 1;
        self.floor = self.floor.max(l.next_seq);
        l.out.push_back((l.next_seq, d));
    }

    /// Deltas dropped on overflow.
    pub fn overflow(&self) -> u64 {
        self.overflow
    }

    /// Whether `to` has unacknowledged deltas.
    pub fn pending(&self, to: PeerId) -> bool {
        self.links.get(&to).is_some_and(|l| !l.out.is_empty())
    }

    /// Peers with unacknowledged deltas last sent at or before `before`.
    pub fn due_for_resend(&mut self, before: Instant, out: &mut Vec<PeerId>) {
        let links = &self.links;
        self.busy.retain(|p| match links.get(p) {
            Some(l) if !l.out.is_empty() => {
                if l.sent_at <= before && !out.contains(p) {
                    out.push(*p);
                }
                true
            }
            _ => false,
        });
        self.busy.sort_unstable();
        self.busy.dedup();
    }

    /// `to` acknowledged everything up to `upto`.
    pub fn ack(&mut self, to: PeerId, upto: u64) {
        if let Some(l) = self.links.get_mut(&to) {
            while l.out.front().is_some_and(|(s, _)| *s <= upto) {
                l.out.pop_front();
            }
        }
    }

    /// Deltas for `to` with a sequence above `after` (at most one frame's worth, and
    /// none beyond the [`WINDOW`] above the oldest unacknowledged one): (base, first
    /// seq), with the deltas appended to `out`.
    pub fn batch_after(
        &self,
        to: PeerId,
        after: u64,
        out: &mut heapless::Vec<Delta, MAX_DELTAS>,
    ) -> Option<(u64, u64)> {
        let l = self.links.get(&to)?;
        let base = l.out.front()?.0;
        let skip = after.saturating_add(1).saturating_sub(base) as usize;
        let first = l.out.get(skip)?.0;
        if first >= base + WINDOW {
            return None;
        }
        for (_, d) in l
            .out
            .iter()
            .skip(skip)
            .take_while(|(s, _)| *s < base + WINDOW)
            .take(MAX_DELTAS)
        {
            let _ = out.push(*d);
        }
        Some((base, first))
    }

    /// Whether `to` has queued deltas that were never sent.
    pub fn unsent(&self, to: PeerId) -> bool {
        self.links
            .get(&to)
            .is_some_and(|l| l.out.back().is_some_and(|(s, _)| *s > l.sent_upto))
    }

    /// Highest sequence sent to `to` so far (0 when there is no link).
    pub fn sent_upto(&self, to: PeerId) -> u64 {
        self.links.get(&to).map_or(0, |l| l.sent_upto)
    }

    /// Record that deltas up to `upto` went to `to` at `now`.
    pub fn mark_sent(&mut self, to: PeerId, upto: u64, now: Instant) {
        if let Some(l) = self.links.get_mut(&to) {
            l.sent_upto = l.sent_upto.max(upto);
            l.sent_at = now;
        }
    }

    /// The sending epoch of the link to `to` (0: nothing was ever queued on it).
    pub fn epoch(&self, to: PeerId) -> u32 {
        self.links.get(&to).map_or(0, |l| l.epoch)
    }

    /// The last sequence queued for `to` (0 when there is no link).
    pub fn last_queued(&self, to: PeerId) -> u64 {
        self.links
            .get(&to)
            .filter(|l| l.epoch != 0)
            .map_or(0, |l| l.next_seq)
    }

    /// The receiving side of the link from `from`: (epoch, highest contiguous sequence
    /// applied), once a sync frame arrived on it.
    pub fn received(&self, from: PeerId) -> Option<(u32, u64)> {
        self.links
            .get(&from)
            .filter(|l| l.in_known)
            .map(|l| (l.in_epoch, l.in_upto))
    }

    /// The `chunk`-th batch of unacknowledged deltas for `to`: (base, first seq), with the
    /// deltas appended to `out`. `base` is the oldest unacknowledged sequence.
    pub fn batch(
        &self,
        to: PeerId,
        chunk: usize,
        out: &mut heapless::Vec<Delta, MAX_DELTAS>,
    ) -> Option<(u64, u64)> {
        let l = self.links.get(&to)?;
        let start = chunk * MAX_DELTAS;
        let base = l.out.front()?.0;
        let first = l.out.get(start)?.0;
        for (_, d) in l.out.iter().skip(start).take(MAX_DELTAS) {
            let _ = out.push(*d);
        }
        Some((base, first))
    }

    /// What we acknowledge to `from` (highest contiguous sequence received).
    pub fn acked(&self, from: PeerId) -> u64 {
        self.links.get(&from).map_or(0, |l| l.in_upto)
    }

    /// The ack for `from`, to be carried by a frame about to be sent to it: the debt of
    /// an ack is paid.
    pub fn ack_for(&mut self, from: PeerId) -> u64 {
        match self.links.get_mut(&from) {
            Some(l) => {
                l.ack_owed = false;
                l.in_upto
            }
            None => 0,
        }
    }

    /// Peers owed an ack that no beat carried yet; the debts are cleared.
    pub fn take_owed(&mut self, out: &mut Vec<PeerId>) {
        for p in self.owed.drain(..) {
            if let Some(l) = self.links.get_mut(&p)
                && l.ack_owed
            {
                l.ack_owed = false;
                out.push(p);
            }
        }
    }

    /// A sync frame with `deltas` numbered from `first` arrived from `from`: the deltas
    /// now in sequence (this frame's new ones, and those held from earlier frames that
    /// it connects) are appended to `out`, in order. Deltas beyond a gap are held (up to
    /// a window ahead) until the missing ones come. Either way an ack is now owed to
    /// `from`.
    pub fn receive(
        &mut self,
        from: PeerId,
        epoch: u32,
        base: u64,
        first: u64,
        deltas: &[Delta],
        out: &mut Vec<Delta>,
    ) {
        let l = self.links.entry(from).or_default();
        if !l.ack_owed {
            l.ack_owed = true;
            self.owed.push(from);
        }
        if !l.in_known || epoch != l.in_epoch {
            // A new link, or the sender restarted: start from the sender's oldest delta.
            l.in_new = true;
            l.in_known = true;
            l.in_epoch = epoch;
            l.in_upto = base.saturating_sub(1);
            l.ahead.clear();
        }
        if base > l.in_upto + 1 {
            // The sender dropped deltas on overflow: they will never come; move on.
            l.in_upto = base - 1;
        }
        let upto = l.in_upto;
        for (i, d) in deltas.iter().enumerate() {
            let seq = first + i as u64;
            if seq <= upto || seq > upto + WINDOW {
                continue;
            }
            if let Err(at) = l.ahead.binary_search_by_key(&seq, |(s, _)| *s) {
                l.ahead.insert(at, (seq, *d));
            }
        }
        l.ahead.retain(|(s, _)| *s > l.in_upto);
        let mut n = 0;
        while l.ahead.get(n).is_some_and(|(s, _)| *s == l.in_upto + 1) {
            out.push(l.ahead[n].1);
            l.in_upto += 1;
            n += 1;
        }
        l.ahead.drain(..n);
    }

    /// Whether the sender started the link from `from` afresh since the last call.
    pub fn take_new_link(&mut self, from: PeerId) -> bool {
        self.links
            .get_mut(&from)
            .is_some_and(|l| std::mem::take(&mut l.in_new))
    }

    /// Drop the link with `peer` entirely.
    pub fn drop_link(&mut self, peer: PeerId) {
        self.links.remove(&peer);
    }

    /// Number of links.
    pub fn len(&self) -> usize {
        self.links.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.links.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::frame::Op;
    use crate::proto::frame::tests::member;

    fn d(key: u128) -> Delta {
        Delta {
            op: Op::Add,
            key,
            owner: member(1),
            class: 0,
            version: 1,
            lease_ms: 1,
        }
    }

    #[test]
    fn deltas_flow_in_order_once_with_retransmission() {
        let (a, b) = (PeerId(1), PeerId(2));
        let mut tx = Links::new(7, 1 << 40);
        let mut rx = Links::new(9, 1 << 40);
        for k in 0..40 {
            tx.push(b, d(k));
        }
        let mut applied = Vec::new();
        for round in 0..3 {
            let pending = tx.pending(b);
            for chunk in 0.. {
                let mut v = heapless::Vec::new();
                let Some((base, first)) = tx.batch(b, chunk, &mut v) else {
                    break;
                };
                if round == 0 && chunk == 0 {
                    continue; // the first batch is lost: the second must wait for it
                }
                let mut out = Vec::new();
                rx.receive(a, tx.epoch(b), base, first, &v, &mut out);
                applied.extend(out.iter().map(|x| x.key));
            }
            let mut owed = Vec::new();
            rx.take_owed(&mut owed);
            let want = if pending { vec![a] } else { vec![] };
            assert_eq!(owed, want, "every sync frame leaves an ack owed");
            tx.ack(b, rx.ack_for(a));
        }
        assert_eq!(applied, (0..40).collect::<Vec<_>>());
        assert!(!tx.pending(b));
        assert_eq!(rx.received(a), Some((tx.epoch(b), tx.last_queued(b))));
        // the sender drops the link and starts again: the receiver must not take the new
        // deltas for duplicates of the old ones, and its old ack must not acknowledge them
        let stale_ack = rx.acked(a);
        tx.drop_link(b);
        tx.push(b, d(100));
        tx.ack(b, stale_ack);
        assert!(
            tx.pending(b),
            "a stale ack acknowledged a delta of a new link"
        );
        let mut v = heapless::Vec::new();
        let (base, first) = tx.batch(b, 0, &mut v).unwrap();
        let mut out = Vec::new();
        rx.receive(a, tx.epoch(b), base, first, &v, &mut out);
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn frames_that_arrive_out_of_order_are_applied_in_order_once() {
        let (a, b) = (PeerId(1), PeerId(2));
        let mut tx = Links::new(7, 1 << 40);
        let mut rx = Links::new(9, 1 << 40);
        for k in 0..64 {
            tx.push(b, d(k));
        }
        let mut frames = Vec::new();
        for chunk in 0.. {
            let mut v = heapless::Vec::new();
            let Some((base, first)) = tx.batch(b, chunk, &mut v) else {
                break;
            };
            frames.push((base, first, v));
        }
        assert_eq!(frames.len(), 4);
        // delivered 3, 1, 0 (duplicated), 2
        let mut applied = Vec::new();
        for i in [3, 1, 0, 0, 2] {
            let (base, first, v) = &frames[i];
            let mut out = Vec::new();
            rx.receive(a, tx.epoch(b), *base, *first, v, &mut out);
            applied.extend(out.iter().map(|x| x.key));
        }
        assert_eq!(applied, (0..64).collect::<Vec<_>>());
        assert_eq!(rx.acked(a), tx.last_queued(b));
    }

    #[test]
    fn a_restarted_sender_numbers_above_its_previous_incarnation() {
        let b = PeerId(2);
        let mut first = Links::new(7, 1 << 40);
        for k in 0..10 {
            first.push(b, d(k));
        }
        let old = first.last_queued(b);
        let mut second = Links::new(8, 2 << 40);
        second.push(b, d(1));
        assert!(second.last_queued(b) > old);
        second.ack(b, old);
        assert!(second.pending(b));
    }
}
