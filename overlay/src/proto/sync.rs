//! Reliable, ordered delivery of index deltas on one link (peer → super-peer, super-peer →
//! cell mate, child cell → parent super-peer).
//!
//! The sender numbers deltas and keeps them until acknowledged; each heartbeat period it
//! (re)sends the unacknowledged ones in [`Frame::Sync`](super::frame::Frame::Sync) frames.
//! The receiver applies deltas in sequence and reports the highest contiguous sequence it
//! holds; that ack rides on the heartbeat going the other way. Each link carries an epoch
//! chosen by the sender; a link the sender re-creates (after a restart, or after dropping
//! it) has a new epoch and restarts the receiver's side. The outbox is bounded: on overflow the oldest deltas
//! are dropped and counted, and soft-state refresh repairs what they carried.

use super::DetMap;
use std::collections::VecDeque;

use super::frame::{Delta, MAX_DELTAS};
use super::id::PeerId;

/// Most deltas waiting on one link.
pub const OUTBOX: usize = 8192;

#[derive(Clone, Debug, Default)]
struct Link {
    /// This link's identity on the sending side: a link dropped and created again gets a
    /// new one, so the receiver restarts instead of taking new deltas for duplicates.
    epoch: u32,
    next_seq: u64,
    /// Highest sequence sent so far.
    sent_upto: u64,
    out: VecDeque<(u64, Delta)>,
    in_epoch: u32,
    in_upto: u64,
    in_known: bool,
}

/// Every link of one endpoint.
#[derive(Clone, Debug, Default)]
pub struct Links {
    links: DetMap<PeerId, Link>,
    overflow: u64,
    next_epoch: u32,
}

impl Links {
    /// No links. `epoch_seed` should differ between incarnations of the endpoint.
    pub fn new(epoch_seed: u32) -> Links {
        Links {
            next_epoch: epoch_seed,
            ..Links::default()
        }
    }

    /// Queue `d` for `to`.
    pub fn push(&mut self, to: PeerId, d: Delta) {
        let next_epoch = &mut self.next_epoch;
        let l = self.links.entry(to).or_insert_with(|| {
            *next_epoch = next_epoch.wrapping_add(1);
            Link {
                epoch: *next_epoch,
                ..Link::default()
            }
        });
        if l.out.len() >= OUTBOX {
            l.out.pop_front();
            self.overflow += 1;
        }
        l.next_seq += 1;
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

    /// Peers with unacknowledged deltas.
    pub fn pending_peers(&self, out: &mut Vec<PeerId>) {
        out.extend(
            self.links
                .iter()
                .filter(|(_, l)| !l.out.is_empty())
                .map(|(k, _)| *k),
        );
    }

    /// `to` acknowledged everything up to `upto`.
    pub fn ack(&mut self, to: PeerId, upto: u64) {
        if let Some(l) = self.links.get_mut(&to) {
            while l.out.front().is_some_and(|(s, _)| *s <= upto) {
                l.out.pop_front();
            }
        }
    }

    /// Deltas for `to` with a sequence above `after` (at most one frame's worth):
    /// (base, first seq), with the deltas appended to `out`.
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
        for (_, d) in l.out.iter().skip(skip).take(MAX_DELTAS) {
            let _ = out.push(*d);
        }
        Some((base, first))
    }

    /// Highest sequence sent to `to` so far.
    pub fn sent_upto(&self, to: PeerId) -> u64 {
        self.links.get(&to).map_or(0, |l| l.sent_upto)
    }

    /// Record that deltas up to `upto` went to `to`.
    pub fn mark_sent(&mut self, to: PeerId, upto: u64) {
        if let Some(l) = self.links.get_mut(&to) {
            l.sent_upto = l.sent_upto.max(upto);
        }
    }

    /// The sending epoch of the link to `to`.
    pub fn epoch(&self, to: PeerId) -> u32 {
        self.links.get(&to).map_or(0, |l| l.epoch)
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

    /// A sync frame arrived from `from`: returns the index in `deltas` of the first delta
    /// that is new (deltas before it were already applied), or `None` if the batch does
    /// not connect (a gap: wait for the retransmission of the missing ones).
    pub fn receive(
        &mut self,
        from: PeerId,
        epoch: u32,
        base: u64,
        first: u64,
        count: usize,
    ) -> Option<usize> {
        let l = self.links.entry(from).or_default();
        if !l.in_known || epoch != l.in_epoch {
            // A new link, or the sender restarted: start from the sender's oldest delta.
            l.in_known = true;
            l.in_epoch = epoch;
            l.in_upto = base.saturating_sub(1);
        }
        if base > l.in_upto + 1 {
            // The sender dropped deltas on overflow: they will never come; move on.
            l.in_upto = base - 1;
        }
        if first > l.in_upto + 1 {
            return None;
        }
        let skip = (l.in_upto + 1 - first) as usize;
        if skip >= count {
            return Some(count);
        }
        l.in_upto = first + count as u64 - 1;
        Some(skip)
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
    use crate::proto::frame::tests::member;

    fn d(key: u128) -> Delta {
        Delta {
            add: true,
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
        let mut tx = Links::new(7);
        let mut rx = Links::new(9);
        for k in 0..40 {
            tx.push(b, d(k));
        }
        let mut applied = Vec::new();
        for round in 0..3 {
            for chunk in 0.. {
                let mut v = heapless::Vec::new();
                let Some((base, first)) = tx.batch(b, chunk, &mut v) else {
                    break;
                };
                if round == 0 && chunk == 0 {
                    continue; // the first batch is lost: the second must wait for it
                }
                match rx.receive(a, tx.epoch(b), base, first, v.len()) {
                    Some(skip) => applied.extend(v.iter().skip(skip).map(|x| x.key)),
                    None => assert!(round == 0, "gap after the first round"),
                }
            }
            tx.ack(b, rx.acked(a));
        }
        assert_eq!(applied, (0..40).collect::<Vec<_>>());
        assert!(!tx.pending(b));
        // the sender drops the link and starts again: the receiver must not take the new
        // deltas for duplicates of the old ones
        tx.drop_link(b);
        tx.push(b, d(100));
        let mut v = heapless::Vec::new();
        let (base, first) = tx.batch(b, 0, &mut v).unwrap();
        assert_eq!(rx.receive(a, tx.epoch(b), base, first, v.len()), Some(0));
    }
}
