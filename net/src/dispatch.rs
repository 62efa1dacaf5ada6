//! Dispatching: from a completion to a destination, decoding in place.
//!
//! Runs on the pool thread that took the event, after it promoted a follower. A
//! datagram's buffer becomes one lease; a TCP chunk is walked by the connection's
//! [`Framer`](crate::frame::Framer), and every frame wholly inside it becomes a lease on
//! the same buffer (no copy), while a frame that straddles chunks is copied into an
//! assembly buffer taken from the reactor's reserve. If no assembly buffer is free, the
//! connection pauses at that byte and resumes when buffers come back.
//!
//! The [`Router`] reads the message where it lies and names a destination. An inline
//! [`Handler`] runs right there (the lowest-latency path: a reply leaves through the
//! same reactor without any thread hand-off); a queue destination gets the handle.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use rtpm_rt::time::{Clock, Instant, MonotonicClock};

use crate::error::Error;
use crate::frame::Step;
use crate::handoff::{ConnId, Handle, Outcome, Source};
use crate::reactor::{Completion, Core, Flow, Intent, Rx};
use crate::sap::Shared;
use crate::stats::Counters;
use crate::sys::region::Lease;

/// Picks the destination of each received message, reading it in place.
pub trait Router: Send + Sync + 'static {
    /// The destination id for `payload` from `source`, or `None` to drop it (counted as
    /// unroutable). Runs on the reactor's hot path: no allocation, no lock, no blocking.
    fn route(&self, payload: &[u8], source: &Source) -> Option<u16>;
}

/// Routes everything to one destination.
#[derive(Clone, Copy, Debug)]
pub struct ToOne(pub u16);

impl Router for ToOne {
    fn route(&self, _: &[u8], _: &Source) -> Option<u16> {
        Some(self.0)
    }
}

/// Routes by a big-endian `u16` destination id at byte `offset` of the message (a fixed
/// header field); shorter messages are unroutable.
#[derive(Clone, Copy, Debug)]
pub struct ByHeader {
    /// Where the destination id sits.
    pub offset: usize,
}

impl Router for ByHeader {
    fn route(&self, p: &[u8], _: &Source) -> Option<u16> {
        let b = p.get(self.offset..self.offset + 2)?;
        Some(u16::from_be_bytes([b[0], b[1]]))
    }
}

/// A message, borrowed in place for an inline handler.
#[derive(Debug)]
pub struct Message<'a> {
    /// The payload.
    pub bytes: &'a [u8],
    /// Where it came from.
    pub source: Source,
    /// When the reactor took its completion.
    pub received: Instant,
}

/// Sends from inside an inline handler (through the SAP's reactors, batched).
pub struct Outbox<'a> {
    pub(crate) shared: &'a Shared,
    /// The reactor running the handler.
    pub(crate) core: &'a Core,
}

impl Outbox<'_> {
    /// Replies to the source of a message (datagram or frame on its connection).
    pub fn reply(&self, to: &Source, bytes: &[u8]) -> Result<(), Error> {
        match *to {
            Source::Datagram { from, shard } if self.send_now(shard, &from, bytes) => Ok(()),
            Source::Stream { conn, .. } if self.write_now(conn, bytes) => Ok(()),
            _ => self.shared.reply(to, bytes),
        }
    }
    /// Sends a datagram to `to` through reactor `shard`'s socket.
    pub fn send_to(&self, shard: u16, to: SocketAddr, bytes: &[u8]) -> Result<(), Error> {
        if self.send_now(shard, &to, bytes) {
            return Ok(());
        }
        self.shared.send_to(shard, to, bytes)
    }

    /// The one-message-in-flight fast path: the datagram answers the only message of this
    /// round on the handler's own single-thread reactor, and nothing of ours waits to be
    /// sent ([`Core::take_lone`]). Then it leaves at once with one non-blocking `send(2)`,
    /// from the handler's bytes: no send slot, no queue, no trip back through the pool
    /// loop before the system call (the reply reaches the wire sooner: it is the critical
    /// path of a request/response). Otherwise it queues as usual and batches.
    fn send_now(&self, shard: u16, to: &SocketAddr, bytes: &[u8]) -> bool {
        let core = self.core;
        if shard != core.shard || bytes.len() > core.max_datagram {
            return false;
        }
        let Some(fd) = core.take_lone() else {
            return false;
        };
        let dest = (!core.to_peer(to)).then_some(to);
        Counters::inc(&core.stats.submits);
        match crate::sys::socket::send_datagram(fd, bytes, dest) {
            Ok(_) => Counters::inc(&core.stats.sent),
            // As a queued datagram refused by a full socket buffer (MSG_DONTWAIT).
            Err(_) => Counters::inc(&core.stats.send_errors),
        }
        true
    }
}

impl Outbox<'_> {
    /// The same fast path for a frame on a connection ([`Core::take_lone_stream`]): it
    /// leaves at once with one non-blocking `sendmsg` (length prefix and payload, no copy)
    /// instead of a send slot, an intent and an io_uring `SENDMSG` — which on the
    /// measured VM cost about as much as a UDP `SEND` did over `send(2)`, and a second
    /// `io_uring_enter` per reply (the send's completion ended the park's wait). A socket
    /// that takes only part of the frame gets the rest through a send slot reserved
    /// before the write, queued in [`Core::first`] so it precedes anything queued on the
    /// connection since: the stream stays whole and in order.
    fn write_now(&self, conn: ConnId, bytes: &[u8]) -> bool {
        let core = self.core;
        if conn.shard != core.shard || bytes.len() > core.max_frame {
            return false;
        }
        let live = core.conns.get(conn.idx as usize).is_some_and(|c| {
            c.generation.load(Ordering::Acquire) == conn.generation
                && c.open.load(Ordering::Acquire)
        });
        if !live {
            return false;
        }
        let Some(fd) = core.take_lone_stream(conn.idx) else {
            return false;
        };
        let Some(mut slot) = core.send_free.pop() else {
            return false;
        };
        let head = crate::frame::prefix(bytes.len());
        let total = head.len() + bytes.len();
        Counters::inc(&core.stats.submits);
        let done = match crate::sys::socket::send_stream(fd, &head, bytes) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => 0,
            Err(_) => {
                // As a queued frame's failed send: the receive side sees the error and
                // closes the connection.
                core.send_free.push(slot);
                Counters::inc(&core.stats.send_errors);
                return true;
            }
        };
        if done >= total {
            core.send_free.push(slot);
            Counters::inc(&core.stats.sent);
            return true;
        }
        let (h, b) = (
            &head[done.min(head.len())..],
            &bytes[done.saturating_sub(head.len())..],
        );
        let w = core.sendbufs.write(&mut slot);
        w[..h.len()].copy_from_slice(h);
        w[h.len()..h.len() + b.len()].copy_from_slice(b);
        let rest = Intent::SendStream {
            slot,
            len: (total - done) as u32,
            conn: conn.idx,
            generation: conn.generation,
        };
        if let Err(i) = core.first.push(rest) {
            // Cannot happen (one entry per round, drained by every poll); were it to, the
            // frame is cut: end the connection rather than send a corrupt stream.
            tracing::error!(sap = %core.name, conn = conn.idx, "no room for the rest of a direct write; closing the connection");
            if let Intent::SendStream { slot, .. } = i {
                core.send_free.push(slot);
            }
            Counters::inc(&core.stats.send_errors);
            let _ = core.push_intent(Intent::Close { conn: conn.idx });
        }
        true
    }
}

/// A message handler run on the reactor thread itself. It must be short and must not
/// block: it delays every message behind it.
pub type Handler = Box<dyn Fn(&Message<'_>, &Outbox<'_>) + Send + Sync>;

fn now() -> Instant {
    MonotonicClock.now()
}

impl Shared {
    /// Processes one completion of reactor `core`.
    pub(crate) fn process(&self, core: &Core, c: Completion) -> Flow {
        match c {
            Completion::Datagram {
                buf,
                off,
                len,
                from,
                truncated,
                seg,
            } => {
                let source = Source::Datagram {
                    from,
                    shard: core.shard,
                };
                if seg > 0 && (len > seg || truncated) {
                    self.coalesced(core, buf, off, len, seg, truncated, source);
                    return Flow::Continue;
                }
                Counters::inc(&core.stats.received);
                if truncated || len > core.max_datagram {
                    Counters::inc(&core.stats.truncated);
                    core.give_back(buf);
                    return Flow::Continue;
                }
                core.stats.bytes.fetch_add(len as u64, Ordering::Relaxed);
                let lease = core.bufs.freeze(buf, off, len);
                // Datagrams are never refused as `Full`: under backpressure they are held.
                if let Some((h, _)) = self.dispatch(
                    core,
                    Handle {
                        lease,
                        source,
                        received: now(),
                    },
                ) {
                    let _ = core.release(h.lease);
                }
                Flow::Continue
            }
            Completion::Chunk { conn, buf, len } => {
                let chunk = core.bufs.freeze(buf, 0, len);
                let Some(mut rx) = core.conns.get(conn as usize).and_then(|c| c.rx.try_claim())
                else {
                    tracing::error!(sap = %core.name, "connection {conn}: two chunks processed at once");
                    let _ = core.release(chunk);
                    return Flow::Stop;
                };
                self.stream(core, conn, &mut rx, chunk, 0)
            }
            Completion::Resume { conn } => {
                let Some(mut rx) = core.conns.get(conn as usize).and_then(|c| c.rx.try_claim())
                else {
                    return Flow::Stop;
                };
                if let Some((h, d)) = rx.pending.take()
                    && let Outcome::Full(h) = self.deliver(core, d, h)
                {
                    return self.block(core, conn, &mut rx, h, d);
                }
                match rx.rest.take() {
                    Some((chunk, pos)) => self.stream(core, conn, &mut rx, chunk, pos),
                    None => Flow::Continue,
                }
            }
            Completion::End { conn } => {
                if let Some(mut rx) = core.conns.get(conn as usize).and_then(|c| c.rx.try_claim()) {
                    Self::drop_rx(core, &mut rx);
                }
                if core.push_intent(Intent::Ended { conn }).is_err() {
                    tracing::error!(sap = %core.name, "intent queue full: connection {conn} not closed");
                }
                Flow::Stop
            }
        }
    }

    /// Splits a GRO buffer — datagrams of `seg` bytes back to back in `len` bytes at `off`
    /// (the last maybe shorter) — into one handle per datagram, in place. Each handle is
    /// a lease on the one buffer; a carrier lease held across the split keeps the buffer
    /// out of the ring until the split is done and every handle was given back. A
    /// truncated burst (a buffer too small for it) keeps its whole datagrams.
    #[allow(clippy::too_many_arguments)]
    fn coalesced(
        &self,
        core: &Core,
        buf: crate::sys::region::Owned,
        off: usize,
        len: usize,
        seg: usize,
        truncated: bool,
        source: Source,
    ) {
        Counters::inc(&core.stats.gro_receives);
        let whole = if truncated { len - len % seg } else { len };
        if truncated {
            Counters::inc(&core.stats.truncated);
        }
        let received = now();
        let carrier = core.bufs.freeze(buf, off, len);
        let mut at = 0;
        while at < whole {
            let n = seg.min(whole - at);
            Counters::inc(&core.stats.received);
            core.stats.bytes.fetch_add(n as u64, Ordering::Relaxed);
            let lease = core.bufs.share(&carrier, off + at, n);
            if let Some((h, _)) = self.dispatch(
                core,
                Handle {
                    lease,
                    source,
                    received,
                },
            ) {
                let _ = core.release(h.lease);
            }
            at += n;
        }
        let _ = core.release(carrier);
    }

    /// Pauses connection `conn` with frame `h` pending for full destination `d`.
    fn block(&self, core: &Core, conn: u32, rx: &mut Rx, h: Handle, d: u16) -> Flow {
        rx.pending = Some((h, d));
        let dest = &self.dests[d as usize];
        if dest.block(core.shard, conn) {
            // The consumer made room between our push and our registration.
            dest.unblock(self);
        }
        Flow::Stop
    }

    fn drop_rx(core: &Core, rx: &mut Rx) {
        if let Some((h, _)) = rx.pending.take() {
            let _ = core.release(h.lease);
        }
        if let Some((a, _)) = rx.asm.take() {
            core.give_back(a);
        }
        if let Some((chunk, _)) = rx.rest.take() {
            let _ = core.release(chunk);
        }
        rx.framer = crate::frame::Framer::new(core.max_frame);
    }

    /// Walks a stream chunk from `pos`, dispatching every complete frame.
    fn stream(&self, core: &Core, conn: u32, rx: &mut Rx, chunk: Lease, mut pos: usize) -> Flow {
        let generation = core.conns[conn as usize].generation.load(Ordering::Acquire);
        let source = Source::Stream {
            conn: ConnId {
                shard: core.shard,
                idx: conn,
                generation,
            },
            peer: rx.peer,
        };
        // The frames of one chunk arrived together: one clock read for all of them.
        let received = now();
        loop {
            let step = {
                let rest = core
                    .bufs
                    .bytes(&chunk)
                    .map_or(&[][..], |b| &b[pos.min(b.len())..]);
                rx.framer.next(rest)
            };
            match step {
                Step::Empty => break,
                Step::TooLarge { len } => {
                    tracing::warn!(sap = %core.name, "connection {conn}: frame of {len} bytes exceeds {}; closing", core.max_frame);
                    Counters::inc(&core.stats.too_large);
                    Self::drop_rx(core, rx);
                    let _ = core.release(chunk);
                    let _ = core.push_intent(Intent::Ended { conn });
                    return Flow::Stop;
                }
                Step::HeaderPart { .. } => {}
                Step::Whole { skip, len } => {
                    let lease = core.bufs.share(&chunk, pos + skip, len);
                    Counters::inc(&core.stats.received);
                    core.stats.bytes.fetch_add(len as u64, Ordering::Relaxed);
                    let full = self.dispatch(
                        core,
                        Handle {
                            lease,
                            source,
                            received,
                        },
                    );
                    if let Some((h, d)) = full {
                        return self.pause_after(core, conn, rx, chunk, pos, step, h, d);
                    }
                }
                Step::Begin { skip, take, .. } => {
                    let Some(mut a) = core.free.pop() else {
                        rx.rest = Some((chunk, pos));
                        core.stall(conn);
                        return Flow::Stop;
                    };
                    let rest = core.bufs.bytes(&chunk).map_or(&[][..], |b| &b[pos..]);
                    core.bufs.write(&mut a)[..take].copy_from_slice(&rest[skip..skip + take]);
                    rx.asm = Some((a, take));
                }
                Step::Append { take, done } => {
                    let rest = core.bufs.bytes(&chunk).map_or(&[][..], |b| &b[pos..]);
                    match rx.asm.as_mut() {
                        Some((a, filled)) => {
                            core.bufs.write(a)[*filled..*filled + take]
                                .copy_from_slice(&rest[..take]);
                            *filled += take;
                        }
                        None => {
                            tracing::error!(sap = %core.name, "connection {conn}: frame continues with no assembly buffer");
                            Self::drop_rx(core, rx);
                            let _ = core.release(chunk);
                            let _ = core.push_intent(Intent::Ended { conn });
                            return Flow::Stop;
                        }
                    }
                    if done && let Some((a, filled)) = rx.asm.take() {
                        let lease = core.bufs.freeze(a, 0, filled);
                        Counters::inc(&core.stats.received);
                        core.stats.bytes.fetch_add(filled as u64, Ordering::Relaxed);
                        let full = self.dispatch(
                            core,
                            Handle {
                                lease,
                                source,
                                received,
                            },
                        );
                        if let Some((h, d)) = full {
                            return self.pause_after(core, conn, rx, chunk, pos, step, h, d);
                        }
                    }
                }
            }
            {
                let rest = core.bufs.bytes(&chunk).map_or(&[][..], |b| &b[pos..]);
                rx.framer.commit(step, rest);
            }
            pos += step.used();
        }
        let _ = core.release(chunk);
        Flow::Continue
    }

    /// Commits `step` (its frame went out as `h`, refused by full destination `d`), keeps
    /// the rest of the chunk, and pauses the connection.
    #[allow(clippy::too_many_arguments)]
    fn pause_after(
        &self,
        core: &Core,
        conn: u32,
        rx: &mut Rx,
        chunk: Lease,
        pos: usize,
        step: Step,
        h: Handle,
        d: u16,
    ) -> Flow {
        {
            let rest = core.bufs.bytes(&chunk).map_or(&[][..], |b| &b[pos..]);
            rx.framer.commit(step, rest);
        }
        rx.rest = Some((chunk, pos + step.used()));
        self.block(core, conn, rx, h, d)
    }

    /// Gives `h` to destination `d`, releasing what the policy drops.
    fn deliver(&self, core: &Core, d: u16, h: Handle) -> Outcome {
        match self.dests[d as usize].deliver(h) {
            Outcome::Dropped(x) => {
                let _ = core.release(x.lease);
                Outcome::Queued
            }
            o => o,
        }
    }

    /// Routes a handle and delivers it (inline handler or queue). Returns the handle and
    /// its destination when backpressure refuses it (a stream frame on a full queue).
    fn dispatch(&self, core: &Core, h: Handle) -> Option<(Handle, u16)> {
        let dest = {
            let bytes = core.bufs.bytes(&h.lease).unwrap_or(&[]);
            self.router.route(bytes, &h.source)
        }
        .filter(|d| (*d as usize) < self.dests.len());
        let Some(d) = dest else {
            Counters::inc(&core.stats.unroutable);
            let _ = core.release(h.lease);
            return None;
        };
        if let Some(handler) = &self.handlers[d as usize] {
            {
                let bytes = core.bufs.bytes(&h.lease).unwrap_or(&[]);
                handler(
                    &Message {
                        bytes,
                        source: h.source,
                        received: h.received,
                    },
                    &Outbox { shared: self, core },
                );
            }
            let _ = core.release(h.lease);
            None
        } else {
            match self.deliver(core, d, h) {
                Outcome::Full(h) => Some((h, d)),
                _ => None,
            }
        }
    }
}
