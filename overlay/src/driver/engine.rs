//! The engine: what the job holding the node does in one turn.
//!
//! In a turn the holder serves the sources it was asked for (its own task's and those
//! orphaned meanwhile, see [`baton`](super::baton)): up to a batch of datagrams from a
//! SAP's queue (read in place, the buffer given back at once), up to a batch of commands,
//! and the protocol's timers when due. Then it drains the node's outputs: datagrams go to
//! their SAPs, messages to the application's [`Sink`](super::Sink), lookup answers to
//! their waiters, membership changes to the notice queue (logged off the RT core by the
//! driver's clock). Commands the application queued from inside the sink (a reply) are
//! carried out in the same turn. A send whose reliable stream's queue is full is held
//! (with everything queued behind it) until the stream has room, for at most a second,
//! so the application meets back-pressure — a full command queue — instead of a silent
//! loss. Finally it publishes the next protocol deadline to the
//! clock and, when something changed, the node's [`Place`].

use std::cell::Cell;
use std::sync::Arc;

use rtpm_rt::time::{Clock, MonotonicClock};

use super::command::{Answer, Command, LookupSlot};
use super::notice::Notice;
use super::saps::{Consumers, Links};
use super::shared::Shared;
use super::status::Place;
use super::tasks::Work;
use crate::error::Error;
use crate::proto::{Addr, Event, Instant, Node, PeerId, Role};

thread_local! {
    /// Set while this thread holds the node: a command queued from inside the sink needs
    /// no wake-up, the turn carries it out.
    static HOLDING: Cell<bool> = const { Cell::new(false) };
}

/// Whether the calling thread is the node's holder right now.
pub(crate) fn holding() -> bool {
    HOLDING.with(Cell::get)
}

/// How often the place is published without a change.
const PLACE_EVERY_NS: u64 = 100_000_000;
/// Rounds of "outputs → commands they caused" in one turn.
const ROUNDS: usize = 4;
/// Longest a send waits for its reliable stream's queue to drain before it is refused.
const STALL_LIMIT_NS: u64 = 1_000_000_000;
/// Datagrams a turn sends from the holder's own thread (one system call each) before the
/// rest queue for the reactors: enough for a request or a reply with its ack, few enough
/// that a turn with a burst to send batches it.
const DIRECT_SENDS: usize = 4;

/// A send held back because its reliable stream's queue was full (back-pressure).
struct Stalled {
    to: PeerId,
    class: u8,
    buf: Vec<u8>,
    since: u64,
}

/// The node and everything only its holder touches.
pub(crate) struct Engine {
    pub(crate) node: Node,
    pub(crate) links: Arc<Links>,
    consumers: Consumers,
    lookups: Vec<(u64, Arc<LookupSlot>)>,
    next_place: u64,
    place_dirty: bool,
    /// The send at the head of the command queue, waiting for room in its stream.
    stalled: Option<Stalled>,
    /// Datagrams this turn may still send from the holder's thread.
    direct_left: usize,
}

fn now() -> Instant {
    Instant(MonotonicClock.now().as_nanos())
}

impl Engine {
    pub(crate) fn new(node: Node, links: Arc<Links>, consumers: Consumers) -> Engine {
        Engine {
            node,
            links,
            consumers,
            lookups: Vec::new(),
            next_place: 0,
            place_dirty: true,
            stalled: None,
            direct_left: 0,
        }
    }

    /// One turn, serving the tasks whose bits are set in `sources`.
    pub(crate) fn turn(&mut self, sh: &Shared, sources: u32) {
        HOLDING.with(|h| h.set(true));
        self.direct_left = DIRECT_SENDS;
        let now = now();
        let mut timers = false;
        let mut heartbeat = false;
        for (i, w) in sh.works.iter().enumerate() {
            if sources & (1 << i) == 0 {
                continue;
            }
            match *w {
                Work::Tick { heartbeat: hb } => {
                    timers = true;
                    heartbeat |= hb;
                }
                Work::Timers => timers = true,
                Work::Rx(k) => self.receive(sh, i, k, now),
                Work::Commands => self.commands(sh, i, now),
            }
        }
        if heartbeat {
            // a safety net: any source whose wake-up was lost (or consumed while the host
            // had not armed the tasks yet) is woken again once per heartbeat
            sh.rearm_all();
            self.place_dirty = true;
        }
        if timers || self.node.poll_timeout().is_some_and(|t| t <= now) {
            self.node.handle_timeout(now);
        }
        for _ in 0..ROUNDS {
            self.outputs(sh, now);
            if sh.commands.is_empty() {
                break;
            }
            self.commands(sh, sh.command_task, now);
        }
        if !sh.commands.is_empty() {
            sh.wake_from_job(sh.command_task);
        }
        // the tick belongs to the heartbeat task: the clock takes what falls between
        sh.set_deadline(
            self.node
                .poll_timeout()
                .filter(|t| *t != self.node.next_tick()),
        );
        sh.set_role(self.node.role());
        if self.place_dirty || now.0 >= self.next_place {
            self.publish_place(sh, now);
        }
        HOLDING.with(|h| h.set(false));
    }

    fn receive(&mut self, sh: &Shared, task: usize, k: usize, now: Instant) {
        let batch = sh.batches[task];
        let mut n = 0;
        if let Some(c) = self.consumers.classes.get(k) {
            while n < batch {
                let Some(d) = c.pop() else { break };
                if let Some(src) = d.source() {
                    let from = self.links.normalize(k, src.peer());
                    self.node.handle_datagram(Addr(from), d.bytes(), now);
                }
                n += 1;
            }
        }
        if k == 0 {
            // the bootstrap group's datagrams are control traffic
            let mut g = 0;
            while g < batch {
                let Some(d) = self.consumers.group.pop() else {
                    break;
                };
                if let Some(src) = d.source() {
                    self.node.handle_datagram(Addr(src.peer()), d.bytes(), now);
                }
                g += 1;
            }
            n = n.max(g);
        }
        if n >= batch {
            // more may wait: another job (the task's rate is the throttle)
            sh.wake_from_job(task);
        }
    }

    /// Sends `buf` unless its reliable stream's queue is full: then keeps it as the
    /// stalled send (the queue behind it waits, so order holds and the application's
    /// `send` sees a full command queue) until there is room or [`STALL_LIMIT_NS`] passed.
    fn send(
        &mut self,
        sh: &Shared,
        to: PeerId,
        class: u8,
        buf: Vec<u8>,
        since: u64,
        now: Instant,
    ) -> Option<bool> {
        match self.node.send(to, class, &buf, now) {
            Err(Error::Full { .. }) if now.0.saturating_sub(since) < STALL_LIMIT_NS => {
                self.stalled = Some(Stalled {
                    to,
                    class,
                    buf,
                    since,
                });
                None
            }
            r => {
                sh.commands.recycle(buf);
                Some(r.is_ok())
            }
        }
    }

    fn commands(&mut self, sh: &Shared, task: usize, now: Instant) {
        let batch = sh.batches[task];
        if let Some(st) = self.stalled.take() {
            match self.send(sh, st.to, st.class, st.buf, st.since, now) {
                // still no room: the task comes back (its minimum inter-arrival paces it)
                None => {
                    sh.wake_from_job(task);
                    return;
                }
                Some(false) => sh.counters.count_failed(),
                Some(true) => {}
            }
        }
        for _ in 0..batch {
            let Some(c) = sh.commands.pop() else { break };
            let ok = match c {
                Command::Send { to, class, buf } => {
                    match self.send(sh, to, class, buf, now.0, now) {
                        None => {
                            sh.wake_from_job(task);
                            return;
                        }
                        Some(r) => r,
                    }
                }
                Command::Publish { key, class } => self.node.publish(key, class, now).is_ok(),
                Command::Unpublish { key } => self.node.unpublish(key, now).is_ok(),
                Command::Lookup { key, slot } => match self.node.lookup(key, now) {
                    Ok(req) => {
                        self.lookups.push((req, slot));
                        true
                    }
                    Err(_) => {
                        slot.fill(Answer::Refused);
                        false
                    }
                },
                Command::Leave => {
                    let r = self.node.leave(now).is_ok();
                    if !r {
                        sh.mark_left();
                    }
                    r
                }
            };
            if !ok {
                sh.counters.count_failed();
            }
        }
        if !sh.commands.is_empty() {
            sh.wake_from_job(task);
        }
    }

    fn outputs(&mut self, sh: &Shared, now: Instant) {
        self.transmit(sh);
        while let Some(e) = self.node.poll_event() {
            match e {
                Event::Message(d) => {
                    sh.counters.count_delivered();
                    sh.sink.message(d.from, d.class, &d.bytes);
                    self.node.recycle_message(d.bytes);
                }
                Event::LookupDone { req, found, .. } => {
                    if let Some((m, _)) = found {
                        self.node.add_route(m.id, m.addr, now);
                    }
                    self.answer(
                        req,
                        match found {
                            Some((m, class)) => Answer::Found(m, class),
                            None => Answer::NotFound,
                        },
                    );
                }
                Event::LookupTimeout { req, .. } => self.answer(req, Answer::TimedOut),
                other => {
                    if let Some(n) = Notice::of(&other) {
                        if matches!(n, Notice::Left) {
                            sh.mark_left();
                        }
                        sh.notify(n);
                    }
                    self.place_dirty = true;
                }
            }
        }
        // transmits caused by the events above (sink replies are commands, handled next)
        self.transmit(sh);
    }

    /// Hands the node's datagrams to their SAPs: the turn's first [`DIRECT_SENDS`] leave
    /// from this thread at once (no wake-up of the reactor's thread on a request's or a
    /// reply's critical path), the rest queue for the reactors, which batch them.
    pub(crate) fn transmit(&mut self, sh: &Shared) {
        while let Some(t) = self.node.poll_transmit() {
            let direct = self.direct_left > 0;
            self.direct_left = self.direct_left.saturating_sub(1);
            let refused = self.links.send(&t, direct);
            if refused > 0 {
                sh.counters.count_refused(refused);
            }
            self.node.recycle(t.bytes);
        }
    }

    fn answer(&mut self, req: u64, a: Answer) {
        if let Some(i) = self.lookups.iter().position(|(r, _)| *r == req) {
            let (_, slot) = self.lookups.swap_remove(i);
            slot.fill(a);
        }
    }

    fn publish_place(&mut self, sh: &Shared, now: Instant) {
        // never wait for a reader: if one holds the lock, publish next turn
        let Ok(mut p) = sh.place.try_lock() else {
            return;
        };
        fill_place(&mut p, &self.node, now);
        self.place_dirty = false;
        self.next_place = now.0.saturating_add(PLACE_EVERY_NS);
    }
}

/// Copies the node's place into `p` (reusing its vectors).
fn fill_place(p: &mut Place, n: &Node, now: Instant) {
    let v = n.view();
    p.role = n.role();
    p.cell = v.cell;
    p.version = v.version;
    p.super_peers.clear();
    p.super_peers.extend(v.members.iter().copied());
    p.super_peer = n.super_peer();
    p.bound.clear();
    p.bound.extend(n.bound_peers());
    p.parent = v.parent;
    p.parent_members.clear();
    p.parent_members.extend(v.parent_members.iter().copied());
    p.children.clear();
    p.children.extend(n.child_cells());
    p.root = v.root;
    p.depth = v.depth;
    p.listening = n.listens_to_group();
    p.traffic = n.stats();
    p.security = n.security();
    p.messaging = n.messaging();
    p.index_len = if n.role() == Role::SuperPeer {
        n.index_len()
    } else {
        0
    };
    p.at_ns = now.0;
}
