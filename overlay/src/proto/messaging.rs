//! QoS-class messaging: best-effort and reliable streams, fragmentation and reassembly.
//!
//! Each QoS class is best-effort or reliable ([`ClassPolicy`]). A reliable class keeps one
//! stream per (peer, class): segments carry a sequence number, the receiver answers every
//! data frame with a cumulative ack plus a 64-bit selective-ack bitmap, the sender
//! retransmits unacked segments after an RTO estimated per RFC 6298 with exponential
//! backoff capped at `max_rto`, the receiver drops duplicates and delivers in order.
//! A message larger than one frame is cut into fragments; reliable fragments are
//! reassembled in order, best-effort ones in a small table bounded in entries and bytes.
//! Memory is bounded everywhere: in-flight segments per stream ([`WINDOW`]), the
//! receiver's reorder buffer (the same window), the number of streams, and reassembly.

use super::DetMap;
use std::collections::{BTreeMap, VecDeque};

use super::frame::Frame;
use super::id::PeerId;
use super::time::Instant;
use super::wire::MAX_PAYLOAD;
use crate::error::Error;

/// Most segments in flight per reliable stream (and the receiver's reorder window).
pub const WINDOW: u64 = 256;
/// Bytes of one fragment: the payload minus the data frame's own fields (18 bytes) and
/// the routed envelope's (55 bytes), so a fragment can always travel indirectly.
pub const FRAGMENT: usize = MAX_PAYLOAD - 18 - 55;
/// Most segments queued (in flight or waiting) per stream.
pub const QUEUE: usize = 4096;

/// A QoS class's delivery policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClassPolicy {
    /// Class number carried in the header.
    pub class: u8,
    /// Reliable (acks, retransmission, order) or best-effort.
    pub reliable: bool,
    /// Priority (higher first; used by drivers to pick the SAP's thread priority).
    pub priority: u8,
}

/// Messaging limits and timers (nanoseconds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MessagingConfig {
    /// Largest message accepted by `send` and by reassembly.
    pub max_message: usize,
    /// RTO before any RTT sample.
    pub initial_rto: u64,
    /// RTO floor.
    pub min_rto: u64,
    /// RTO ceiling (the backoff bound).
    pub max_rto: u64,
    /// Retransmissions of one segment before the stream gives up.
    pub max_retries: u32,
    /// Most concurrent streams (each direction).
    pub max_streams: usize,
    /// Best-effort partial messages kept at once.
    pub max_partials: usize,
    /// Best-effort partial message lifetime.
    pub reassembly_timeout: u64,
}

impl Default for MessagingConfig {
    fn default() -> Self {
        MessagingConfig {
            max_message: 64 * 1024,
            initial_rto: 20_000_000,
            min_rto: 5_000_000,
            max_rto: 1_000_000_000,
            max_retries: 30,
            max_streams: 1024,
            max_partials: 32,
            reassembly_timeout: 2_000_000_000,
        }
    }
}

#[derive(Debug)]
struct Segment {
    seq: u64,
    msg: u32,
    frag: u16,
    frags: u16,
    bytes: Vec<u8>,
    sent: Option<Instant>,
    retries: u32,
    deadline: Instant,
}

#[derive(Debug, Default)]
struct SendStream {
    next_seq: u64,
    /// Unacked segments in sequence order; the first `in_flight` have been sent.
    segs: VecDeque<Segment>,
    /// Sequence numbers to (re)send now.
    due: VecDeque<u64>,
    srtt: Option<u64>,
    rttvar: u64,
    rto: u64,
    deadline: Instant,
}

#[derive(Debug, Default)]
struct RecvStream {
    next: u64,
    buf: BTreeMap<u64, (u32, u16, u16, Vec<u8>)>,
    partial: Vec<u8>,
    ack_due: bool,
}

#[derive(Debug)]
struct Partial {
    from: PeerId,
    class: u8,
    msg: u32,
    frags: u16,
    got: Vec<Option<Vec<u8>>>,
    bytes: usize,
    expires: Instant,
}

/// Counters of messaging outcomes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MessagingStats {
    /// Data frames sent, retransmissions included.
    pub data_sent: u64,
    /// Retransmissions.
    pub retransmits: u64,
    /// Duplicate data frames dropped by receivers.
    pub duplicates: u64,
    /// Data frames dropped for being outside the reorder window or over a bound.
    pub dropped: u64,
    /// Messages delivered.
    pub delivered: u64,
    /// Streams that gave up after `max_retries`.
    pub failed_streams: u64,
}

/// What messaging wants sent.
#[derive(Debug, PartialEq, Eq)]
pub enum Outgoing<'a> {
    /// A frame for `to` in `class`.
    Frame {
        /// Destination.
        to: PeerId,
        /// Class.
        class: u8,
        /// The frame.
        frame: Frame<'a>,
    },
}

/// A delivered message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    /// Sender.
    pub from: PeerId,
    /// Class.
    pub class: u8,
    /// Bytes.
    pub bytes: Vec<u8>,
}

/// A stream that gave up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamFailed {
    /// Peer.
    pub to: PeerId,
    /// Class.
    pub class: u8,
}

/// All messaging state of one endpoint.
#[derive(Debug)]
pub struct Messaging {
    cfg: MessagingConfig,
    policies: Vec<ClassPolicy>,
    send: DetMap<(PeerId, u8), SendStream>,
    recv: DetMap<(PeerId, u8), RecvStream>,
    ready: VecDeque<(PeerId, u8)>,
    acks: VecDeque<(PeerId, u8)>,
    best_effort: VecDeque<(PeerId, u8, u32, u16, u16, Vec<u8>)>,
    partials: Vec<Partial>,
    next_msg: u32,
    failed: VecDeque<StreamFailed>,
    stats: MessagingStats,
    /// Emptied payload buffers, reused for segments, best-effort frames and delivered
    /// messages so that the steady state allocates nothing ([`Messaging::recycle`]).
    spare: Vec<Vec<u8>>,
}

/// Buffers [`Messaging`] keeps for reuse at most.
const SPARE: usize = 256;

/// A buffer holding `bytes`: a spare one when there is one.
fn filled(spare: &mut Vec<Vec<u8>>, bytes: &[u8]) -> Vec<u8> {
    let mut b = spare.pop().unwrap_or_default();
    b.extend_from_slice(bytes);
    b
}

/// Keeps `b` (emptied) for reuse, unless enough are kept or it never held anything.
fn keep(spare: &mut Vec<Vec<u8>>, mut b: Vec<u8>) {
    if spare.len() < SPARE && b.capacity() > 0 {
        b.clear();
        spare.push(b);
    }
}

impl Messaging {
    /// Messaging with these limits and class policies.
    pub fn new(cfg: MessagingConfig, policies: Vec<ClassPolicy>) -> Messaging {
        Messaging {
            cfg,
            policies,
            send: DetMap::default(),
            recv: DetMap::default(),
            ready: VecDeque::new(),
            acks: VecDeque::new(),
            best_effort: VecDeque::new(),
            partials: Vec::new(),
            next_msg: 0,
            failed: VecDeque::new(),
            stats: MessagingStats::default(),
            spare: Vec::new(),
        }
    }

    /// Gives a delivered message's buffer back for reuse (the driver does after its
    /// sink has seen it).
    pub fn recycle(&mut self, bytes: Vec<u8>) {
        keep(&mut self.spare, bytes);
    }

    /// The class policy, if the class is configured.
    pub fn policy(&self, class: u8) -> Option<ClassPolicy> {
        self.policies.iter().copied().find(|p| p.class == class)
    }

    /// The configured classes.
    pub fn policies(&self) -> &[ClassPolicy] {
        &self.policies
    }

    /// Counters.
    pub fn stats(&self) -> MessagingStats {
        self.stats
    }

    /// Queue `bytes` for `to` in `class`. Fails without changing state if the class is
    /// unknown, the message is too large, or the stream's queue is full.
    pub fn send(&mut self, to: PeerId, class: u8, bytes: &[u8], now: Instant) -> Result<(), Error> {
        let Some(policy) = self.policy(class) else {
            return Err(Error::Command {
                what: "send",
                why: "unknown QoS class; configure it in the overlay's class list",
            });
        };
        if bytes.len() > self.cfg.max_message {
            return Err(Error::Oversize {
                len: bytes.len(),
                max: self.cfg.max_message,
            });
        }
        let frags = bytes.len().div_ceil(FRAGMENT).max(1);
        self.next_msg = self.next_msg.wrapping_add(1);
        let msg = self.next_msg;
        let chunks =
            (0..frags).map(|i| &bytes[i * FRAGMENT..((i + 1) * FRAGMENT).min(bytes.len())]);
        if !policy.reliable {
            for (i, c) in chunks.enumerate() {
                let b = filled(&mut self.spare, c);
                self.best_effort
                    .push_back((to, class, msg, i as u16, frags as u16, b));
            }
            return Ok(());
        }
        if !self.send.contains_key(&(to, class)) && self.send.len() >= self.cfg.max_streams {
            return Err(Error::Full {
                what: "reliable stream table",
                cap: self.cfg.max_streams,
            });
        }
        let initial_rto = self.cfg.initial_rto;
        let s = self.send.entry((to, class)).or_insert_with(|| SendStream {
            next_seq: 1,
            rto: initial_rto,
            deadline: Instant::NEVER,
            ..SendStream::default()
        });
        if s.segs.len() + frags > QUEUE {
            return Err(Error::Full {
                what: "reliable stream send queue",
                cap: QUEUE,
            });
        }
        let was_idle = s.due.is_empty();
        for (i, c) in chunks.enumerate() {
            let seq = s.next_seq;
            s.next_seq += 1;
            s.segs.push_back(Segment {
                seq,
                msg,
                frag: i as u16,
                frags: frags as u16,
                bytes: filled(&mut self.spare, c),
                sent: None,
                retries: 0,
                deadline: Instant::NEVER,
            });
            if seq < s.segs.front().map_or(seq, |f| f.seq) + WINDOW {
                s.due.push_back(seq);
            }
        }
        let _ = now;
        if was_idle && !s.due.is_empty() {
            self.ready.push_back((to, class));
        }
        Ok(())
    }

    /// Whether anything is waiting to be emitted.
    pub fn has_output(&self) -> bool {
        !self.ready.is_empty() || !self.acks.is_empty() || !self.best_effort.is_empty()
    }

    /// Emit one pending frame through `emit` (acks first, then data). Returns false when
    /// nothing was pending.
    pub fn emit_one(&mut self, now: Instant, emit: &mut dyn FnMut(Outgoing<'_>)) -> bool {
        if let Some((to, class)) = self.acks.pop_front() {
            if let Some(r) = self.recv.get_mut(&(to, class)) {
                r.ack_due = false;
                let mut sack = 0u64;
                for (&seq, _) in r.buf.range(r.next + 1..r.next + 65) {
                    sack |= 1 << (seq - r.next - 1);
                }
                emit(Outgoing::Frame {
                    to,
                    class,
                    frame: Frame::Ack { next: r.next, sack },
                });
            }
            return true;
        }
        if let Some((to, class, msg, frag, frags, bytes)) = self.best_effort.pop_front() {
            self.stats.data_sent += 1;
            emit(Outgoing::Frame {
                to,
                class,
                frame: Frame::Data {
                    seq: 0,
                    msg,
                    frag,
                    frags,
                    bytes: &bytes,
                },
            });
            keep(&mut self.spare, bytes);
            return true;
        }
        while let Some(&(to, class)) = self.ready.front() {
            let Some(s) = self.send.get_mut(&(to, class)) else {
                self.ready.pop_front();
                continue;
            };
            let Some(seq) = s.due.pop_front() else {
                self.ready.pop_front();
                continue;
            };
            if s.due.is_empty() {
                self.ready.pop_front();
            }
            let Some(first) = s.segs.front().map(|f| f.seq) else {
                continue;
            };
            let Some(seg) = seq
                .checked_sub(first)
                .and_then(|i| s.segs.get_mut(i as usize))
            else {
                continue; // acked meanwhile
            };
            if seg.retries == u32::MAX {
                continue; // selectively acked meanwhile
            }
            if seg.sent.is_some() {
                seg.retries += 1;
                self.stats.retransmits += 1;
            }
            seg.sent = Some(now);
            let backoff = s
                .rto
                .saturating_mul(1u64 << seg.retries.min(16))
                .min(self.cfg.max_rto);
            seg.deadline = now.after(backoff);
            s.deadline = s.deadline.min(seg.deadline);
            self.stats.data_sent += 1;
            emit(Outgoing::Frame {
                to,
                class,
                frame: Frame::Data {
                    seq: seg.seq,
                    msg: seg.msg,
                    frag: seg.frag,
                    frags: seg.frags,
                    bytes: &seg.bytes,
                },
            });
            return true;
        }
        false
    }

    /// The earliest retransmission or reassembly deadline.
    pub fn poll_timeout(&self) -> Instant {
        let s = self
            .send
            .values()
            .map(|s| s.deadline)
            .min()
            .unwrap_or(Instant::NEVER);
        let p = self
            .partials
            .iter()
            .map(|p| p.expires)
            .min()
            .unwrap_or(Instant::NEVER);
        s.min(p)
    }

    /// Timers: mark overdue segments for retransmission, expire partial messages.
    pub fn handle_timeout(&mut self, now: Instant) {
        let max_retries = self.cfg.max_retries;
        let mut dead = Vec::new();
        for (&key, s) in self.send.iter_mut() {
            if s.deadline > now {
                continue;
            }
            let was_idle = s.due.is_empty();
            let mut next = Instant::NEVER;
            let window_end = s.segs.front().map_or(0, |f| f.seq) + WINDOW;
            for seg in s.segs.iter_mut() {
                if seg.seq >= window_end {
                    break;
                }
                match seg.sent {
                    Some(_) if seg.deadline <= now => {
                        if seg.retries >= max_retries {
                            dead.push(key);
                            break;
                        }
                        seg.deadline = Instant::NEVER;
                        s.due.push_back(seg.seq);
                    }
                    Some(_) => next = next.min(seg.deadline),
                    None => {}
                }
            }
            s.deadline = next;
            if was_idle && !s.due.is_empty() {
                self.ready.push_back(key);
            }
        }
        for key in dead {
            self.send.remove(&key);
            self.stats.failed_streams += 1;
            self.failed.push_back(StreamFailed {
                to: key.0,
                class: key.1,
            });
        }
        self.partials.retain(|p| p.expires > now);
    }

    /// A stream that gave up, if any.
    pub fn poll_failed(&mut self) -> Option<StreamFailed> {
        self.failed.pop_front()
    }

    /// An ack arrived from `from` for `class`.
    pub fn on_ack(&mut self, from: PeerId, class: u8, next: u64, sack: u64, now: Instant) {
        let (min_rto, max_rto) = (self.cfg.min_rto, self.cfg.max_rto);
        let Some(s) = self.send.get_mut(&(from, class)) else {
            return;
        };
        let mut sample = None;
        let mut take = |seg: &Segment| {
            if seg.retries == 0
                && let Some(t) = seg.sent
            {
                sample = Some(now.since(t));
            }
        };
        while s.segs.front().is_some_and(|f| f.seq < next) {
            if let Some(seg) = s.segs.pop_front() {
                take(&seg);
                keep(&mut self.spare, seg.bytes);
            }
        }
        if sack != 0 {
            for seg in s.segs.iter_mut() {
                let off = seg.seq.wrapping_sub(next).wrapping_sub(1);
                if off < 64 && sack & (1 << off) != 0 && seg.sent.is_some() {
                    take(seg);
                    seg.sent = None;
                    seg.deadline = Instant::NEVER;
                    keep(&mut self.spare, std::mem::take(&mut seg.bytes));
                    seg.retries = u32::MAX; // marker: selectively acked
                }
            }
        }
        if let Some(r) = sample {
            match s.srtt {
                None => {
                    s.srtt = Some(r);
                    s.rttvar = r / 2;
                }
                Some(srtt) => {
                    s.rttvar = (3 * s.rttvar + srtt.abs_diff(r)) / 4;
                    s.srtt = Some((7 * srtt + r) / 8);
                }
            }
            let srtt = s.srtt.unwrap_or(r);
            s.rto = (srtt + (4 * s.rttvar).max(1_000_000)).clamp(min_rto, max_rto);
        }
        // newly opened window: queue segments that were never sent
        let was_idle = s.due.is_empty();
        let window_end = s.segs.front().map_or(0, |f| f.seq) + WINDOW;
        for seg in s.segs.iter() {
            if seg.seq >= window_end {
                break;
            }
            if seg.sent.is_none() && seg.retries != u32::MAX && !s.due.contains(&seg.seq) {
                s.due.push_back(seg.seq);
            }
        }
        s.deadline = s
            .segs
            .iter()
            .filter(|g| g.sent.is_some())
            .map(|g| g.deadline)
            .min()
            .unwrap_or(Instant::NEVER);
        if was_idle && !s.due.is_empty() {
            self.ready.push_back((from, class));
        }
        // An idle stream is kept: its next sequence number must survive, because the
        // receiver keeps expecting it (a fresh stream restarting at 1 would be taken for
        // duplicates). Streams go with `reset_peer` or when they fail.
    }

    /// A data frame arrived. Delivered messages are appended to `out`.
    #[allow(clippy::too_many_arguments)]
    pub fn on_data(
        &mut self,
        from: PeerId,
        class: u8,
        seq: u64,
        msg: u32,
        frag: u16,
        frags: u16,
        bytes: &[u8],
        now: Instant,
        out: &mut Vec<Delivered>,
    ) {
        let Some(policy) = self.policy(class) else {
            self.stats.dropped += 1;
            return;
        };
        let max_message = self.cfg.max_message;
        if (frags as usize) * FRAGMENT > max_message + FRAGMENT {
            self.stats.dropped += 1;
            return;
        }
        if !policy.reliable {
            self.on_best_effort(from, class, msg, frag, frags, bytes, now, out);
            return;
        }
        if !self.recv.contains_key(&(from, class)) && self.recv.len() >= self.cfg.max_streams {
            self.stats.dropped += 1;
            return;
        }
        let r = self
            .recv
            .entry((from, class))
            .or_insert_with(|| RecvStream {
                next: 1,
                ..RecvStream::default()
            });
        if !r.ack_due {
            r.ack_due = true;
            self.acks.push_back((from, class));
        }
        if seq < r.next || r.buf.contains_key(&seq) {
            self.stats.duplicates += 1;
            return;
        }
        if seq >= r.next + WINDOW {
            self.stats.dropped += 1;
            return;
        }
        let spare = &mut self.spare;
        // the next in order, with nothing buffered after it (the usual case): no copy
        // into the reorder buffer
        let in_order = seq == r.next && r.buf.is_empty();
        if !in_order {
            r.buf.insert(seq, (msg, frag, frags, filled(spare, bytes)));
        }
        let mut next: Option<(u16, u16, Option<Vec<u8>>)> = in_order.then_some((frag, frags, None));
        loop {
            let (f, n, b) = match next.take() {
                Some(x) => x,
                None => match r.buf.remove(&r.next) {
                    Some((_, f, n, b)) => (f, n, Some(b)),
                    None => break,
                },
            };
            r.next += 1;
            if f == 0 {
                r.partial.clear();
            }
            let piece: &[u8] = b.as_deref().unwrap_or(bytes);
            if r.partial.len() + piece.len() <= max_message {
                if r.partial.capacity() == 0 {
                    r.partial = spare.pop().unwrap_or_default();
                }
                r.partial.extend_from_slice(piece);
            }
            if let Some(b) = b {
                keep(spare, b);
            }
            if f + 1 == n {
                self.stats.delivered += 1;
                out.push(Delivered {
                    from,
                    class,
                    bytes: std::mem::take(&mut r.partial),
                });
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn on_best_effort(
        &mut self,
        from: PeerId,
        class: u8,
        msg: u32,
        frag: u16,
        frags: u16,
        bytes: &[u8],
        now: Instant,
        out: &mut Vec<Delivered>,
    ) {
        if frags == 1 {
            self.stats.delivered += 1;
            out.push(Delivered {
                from,
                class,
                bytes: filled(&mut self.spare, bytes),
            });
            return;
        }
        let idx = match self
            .partials
            .iter()
            .position(|p| p.from == from && p.class == class && p.msg == msg)
        {
            Some(i) => i,
            None => {
                if self.partials.len() >= self.cfg.max_partials {
                    // evict the oldest partial message
                    if let Some(i) = self
                        .partials
                        .iter()
                        .enumerate()
                        .min_by_key(|(_, p)| p.expires)
                        .map(|(i, _)| i)
                    {
                        self.partials.swap_remove(i);
                        self.stats.dropped += 1;
                    }
                }
                self.partials.push(Partial {
                    from,
                    class,
                    msg,
                    frags,
                    got: vec![None; frags as usize],
                    bytes: 0,
                    expires: now.after(self.cfg.reassembly_timeout),
                });
                self.partials.len() - 1
            }
        };
        let p = &mut self.partials[idx];
        if p.frags != frags || p.bytes + bytes.len() > self.cfg.max_message {
            self.stats.dropped += 1;
            return;
        }
        let Some(slot) = p.got.get_mut(frag as usize) else {
            self.stats.dropped += 1;
            return;
        };
        if slot.is_some() {
            self.stats.duplicates += 1;
            return;
        }
        *slot = Some(bytes.to_vec());
        p.bytes += bytes.len();
        if p.got.iter().all(Option::is_some) {
            let p = self.partials.swap_remove(idx);
            let bytes = p.got.into_iter().flatten().flatten().collect();
            self.stats.delivered += 1;
            out.push(Delivered { from, class, bytes });
        }
    }

    /// Forget every stream with `peer` (it restarted, left or died).
    pub fn reset_peer(&mut self, peer: PeerId) {
        self.send.retain(|k, _| k.0 != peer);
        self.recv.retain(|k, _| k.0 != peer);
        self.partials.retain(|p| p.from != peer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::{RngCore, SeedableRng};
    use rand_xoshiro::Xoshiro256PlusPlus;

    fn policies() -> Vec<ClassPolicy> {
        vec![
            ClassPolicy {
                class: 0,
                reliable: false,
                priority: 0,
            },
            ClassPolicy {
                class: 1,
                reliable: true,
                priority: 1,
            },
        ]
    }

    /// An owned copy of an emitted frame, for the test's lossy "network".
    #[derive(Clone)]
    enum Wire {
        Data(u64, u32, u16, u16, Vec<u8>),
        Ack(u64, u64),
    }

    fn drain(m: &mut Messaging, now: Instant) -> Vec<(u8, Wire)> {
        let mut v = Vec::new();
        while m.emit_one(now, &mut |o| {
            let Outgoing::Frame { class, frame, .. } = o;
            let w = match frame {
                Frame::Data {
                    seq,
                    msg,
                    frag,
                    frags,
                    bytes,
                } => Wire::Data(seq, msg, frag, frags, bytes.to_vec()),
                Frame::Ack { next, sack } => Wire::Ack(next, sack),
                _ => unreachable!(),
            };
            v.push((class, w));
        }) {}
        v
    }

    #[test]
    fn buffers_are_reused_in_the_steady_state() {
        // a ping-pong on the reliable class: after the first round every payload buffer
        // (segment, delivered message) comes from the spares, and goes back to them
        let (a, b) = (PeerId(1), PeerId(2));
        let mut ma = Messaging::new(MessagingConfig::default(), policies());
        let mut mb = Messaging::new(MessagingConfig::default(), policies());
        let now = Instant(1_000_000);
        let mut spares = Vec::new();
        for round in 0..4u8 {
            ma.send(b, 1, &[round; 100], now).unwrap();
            let mut got = Vec::new();
            for (class, w) in drain(&mut ma, now) {
                if let Wire::Data(seq, msg, frag, frags, bytes) = w {
                    mb.on_data(a, class, seq, msg, frag, frags, &bytes, now, &mut got);
                }
            }
            assert_eq!(got.len(), 1);
            for (_, w) in drain(&mut mb, now) {
                if let Wire::Ack(next, sack) = w {
                    ma.on_ack(b, 1, next, sack, now);
                }
            }
            for d in got {
                assert_eq!(d.bytes, vec![round; 100]);
                mb.recycle(d.bytes);
            }
            spares.push((ma.spare.len(), mb.spare.len()));
        }
        // one segment buffer on the sender, one message buffer on the receiver, reused
        // every round (no new ones: the counts stay at one)
        assert_eq!(spares, vec![(1, 1); 4]);
    }

    #[test]
    fn fragments_reassemble_in_order_reliable_and_best_effort() {
        for class in [0u8, 1] {
            let mut a = Messaging::new(MessagingConfig::default(), policies());
            let mut b = Messaging::new(MessagingConfig::default(), policies());
            let msg: Vec<u8> = (0..5000u32).map(|i| i as u8).collect();
            a.send(PeerId(2), class, &msg, Instant(0)).unwrap();
            let mut frames = drain(&mut a, Instant(0));
            assert_eq!(frames.len(), 4);
            frames.reverse();
            let mut out = Vec::new();
            for (c, w) in frames {
                if let Wire::Data(seq, m, f, n, bytes) = w {
                    b.on_data(PeerId(1), c, seq, m, f, n, &bytes, Instant(0), &mut out);
                }
            }
            assert_eq!(out.len(), 1, "class {class}");
            assert_eq!(out[0].bytes, msg);
        }
    }

    #[test]
    fn a_stream_that_went_idle_keeps_delivering() {
        let mut a = Messaging::new(MessagingConfig::default(), policies());
        let mut b = Messaging::new(MessagingConfig::default(), policies());
        let mut out = Vec::new();
        for round in 0..3u8 {
            a.send(PeerId(2), 1, &[round], Instant(0)).unwrap();
            for (c, w) in drain(&mut a, Instant(0)) {
                if let Wire::Data(seq, m, f, n, bytes) = w {
                    b.on_data(PeerId(1), c, seq, m, f, n, &bytes, Instant(0), &mut out);
                }
            }
            // every segment acknowledged: the stream is idle before the next message
            for (_, w) in drain(&mut b, Instant(0)) {
                if let Wire::Ack(next, sack) = w {
                    a.on_ack(PeerId(2), 1, next, sack, Instant(0));
                }
            }
        }
        let got: Vec<Vec<u8>> = out.into_iter().map(|d| d.bytes).collect();
        assert_eq!(got, vec![vec![0], vec![1], vec![2]]);
        assert_eq!(b.stats().duplicates, 0);
    }

    #[test]
    fn oversize_message_and_unknown_class_are_refused() {
        let mut a = Messaging::new(MessagingConfig::default(), policies());
        assert!(
            a.send(PeerId(2), 1, &vec![0; 64 * 1024 + 1], Instant(0))
                .is_err()
        );
        assert!(a.send(PeerId(2), 9, b"x", Instant(0)).is_err());
        assert!(!a.has_output());
    }

    #[test]
    fn best_effort_reassembly_is_bounded() {
        let cfg = MessagingConfig {
            max_partials: 4,
            ..MessagingConfig::default()
        };
        let mut b = Messaging::new(cfg, policies());
        let mut out = Vec::new();
        for msg in 0..100 {
            b.on_data(PeerId(1), 0, 0, msg, 0, 3, &[1; 100], Instant(0), &mut out);
        }
        assert!(b.partials.len() <= 4);
        assert!(out.is_empty());
        assert_eq!(b.stats().dropped, 96);
    }

    /// Lossy, duplicating, reordering link between two messaging endpoints.
    #[test]
    fn reliable_stream_survives_loss_duplication_reordering() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(3);
        let mut a = Messaging::new(MessagingConfig::default(), policies());
        let mut b = Messaging::new(MessagingConfig::default(), policies());
        let total = 3000u32;
        let mut sent = 0u32;
        let mut got = Vec::new();
        let mut now = Instant(0);
        // (deliver_at, to_b, frame)
        let mut net: Vec<(u64, bool, u8, Wire)> = Vec::new();
        while (got.len() as u32) < total {
            while sent < total && a.send(PeerId(2), 1, &sent.to_be_bytes(), now).is_ok() {
                sent += 1;
            }
            for (c, w) in drain(&mut a, now) {
                for _ in 0..(1 + (rng.next_u32() % 10 == 0) as u32) {
                    if rng.next_u32() % 5 != 0 {
                        net.push((
                            now.0 + 1_000_000 + (rng.next_u64() % 3_000_000),
                            true,
                            c,
                            w.clone(),
                        ));
                    }
                }
            }
            for (c, w) in drain(&mut b, now) {
                if rng.next_u32() % 5 != 0 {
                    net.push((
                        now.0 + 1_000_000 + (rng.next_u64() % 3_000_000),
                        false,
                        c,
                        w,
                    ));
                }
            }
            net.sort_by_key(|x| x.0);
            let next_net = net.first().map_or(u64::MAX, |x| x.0);
            let next_t = a.poll_timeout().0.min(next_net);
            assert!(next_t < u64::MAX, "stalled with {} of {total}", got.len());
            now = Instant(next_t);
            a.handle_timeout(now);
            while net.first().is_some_and(|x| x.0 <= now.0) {
                let (_, to_b, c, w) = net.remove(0);
                match (to_b, w) {
                    (true, Wire::Data(seq, m, f, n, bytes)) => {
                        let mut out = Vec::new();
                        b.on_data(PeerId(1), c, seq, m, f, n, &bytes, now, &mut out);
                        got.extend(
                            out.into_iter()
                                .map(|d| u32::from_be_bytes(d.bytes.try_into().unwrap())),
                        );
                    }
                    (false, Wire::Ack(next, sack)) => a.on_ack(PeerId(2), c, next, sack, now),
                    _ => unreachable!(),
                }
            }
        }
        assert_eq!(got, (0..total).collect::<Vec<_>>());
        assert!(a.stats().retransmits > 0);
        assert!(b.stats().duplicates > 0);
    }
}
