//! The simulated world: nodes, event queue, network, crashes and restarts.

use std::cmp::Ordering;
use std::collections::{BTreeSet, BinaryHeap};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use rand_core::{RngCore, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

use super::net::NetConfig;
use crate::proto::security::OverlayKey;
use crate::proto::{Addr, Config, Event, Instant, Node, PeerId};

/// The overlay group address used in the simulator.
pub const GROUP: Addr = Addr(SocketAddr::V4(SocketAddrV4::new(
    Ipv4Addr::new(239, 7, 7, 7),
    7000,
)));

/// The address of simulated peer `i`.
pub fn addr_of(i: usize) -> Addr {
    let n = i as u32 + 1;
    Addr(SocketAddr::V4(SocketAddrV4::new(
        Ipv4Addr::new(10, (n >> 16) as u8, (n >> 8) as u8, n as u8),
        7000,
    )))
}

/// The peer index behind a simulated address.
pub fn index_of(a: Addr) -> Option<usize> {
    match a.0 {
        SocketAddr::V4(v4) => {
            let o = v4.ip().octets();
            if o[0] != 10 {
                return None;
            }
            let n = (o[1] as u32) << 16 | (o[2] as u32) << 8 | o[3] as u32;
            (n as usize).checked_sub(1)
        }
        SocketAddr::V6(_) => None,
    }
}

/// The id of simulated peer `i` (spread over the id space, never zero).
pub fn id_of(i: usize, seed: u64) -> PeerId {
    let mut r =
        Xoshiro256PlusPlus::seed_from_u64(seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    PeerId(((r.next_u64() as u128) << 64 | r.next_u64() as u128) | 1)
}

/// What every simulated node is configured with (besides identity).
#[derive(Clone, Debug)]
pub struct WorldConfig {
    /// Seed of the whole run.
    pub seed: u64,
    /// Heartbeat period.
    pub heartbeat: u64,
    /// Cell size k.
    pub cell_size: usize,
    /// Peers per super-peer.
    pub max_bound: usize,
    /// Children per cell.
    pub max_children: usize,
    /// Encrypt payloads.
    pub encrypt: bool,
    /// Network model.
    pub net: NetConfig,
    /// Hash every delivery into the trace.
    pub trace: bool,
    /// Failure-detector suspicion threshold, in mean beat intervals.
    pub suspect_intervals: f64,
}

impl WorldConfig {
    /// Defaults: 25 ms heartbeat, k = 3, a LAN, no trace.
    pub fn new(seed: u64) -> WorldConfig {
        WorldConfig {
            seed,
            heartbeat: 25_000_000,
            cell_size: 3,
            max_bound: 16,
            max_children: 4,
            encrypt: false,
            net: NetConfig::default(),
            trace: false,
            suspect_intervals: 2.0,
        }
    }

    /// The node config of peer `i` in incarnation `inc`.
    pub fn node_config(&self, i: usize, inc: u32) -> Config {
        // The simulator's key is derived from the seed: keys come from configuration.
        let key = OverlayKey(*blake3::hash(&self.seed.to_be_bytes()).as_bytes());
        let mut c = Config::new(id_of(i, self.seed), addr_of(i), GROUP, 0x5250_0001, key)
            .with_heartbeat(self.heartbeat);
        c.incarnation = inc;
        c.seed = self.seed ^ (i as u64).rotate_left(20);
        c.cell_size = self.cell_size;
        c.max_bound = self.max_bound;
        c.max_children = self.max_children;
        c.encrypt = self.encrypt;
        c.suspect_intervals = self.suspect_intervals;
        c
    }
}

/// What happens at an event. Datagrams in flight live in a slab beside the queue, so
/// the queue's entries stay small (sifting them is a good part of the simulator's work).
enum Kind {
    Deliver { to: u32, from: u32, buf: Vec<u8> },
    Timer { node: u32 },
}

/// A queue entry: when, the insertion order (ties), and the event in the slab.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Ev {
    at: u64,
    seq: u64,
    slot: u32,
}

impl PartialOrd for Ev {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Ev {
    fn cmp(&self, o: &Self) -> Ordering {
        // reversed: BinaryHeap is a max-heap, we want the earliest first
        (o.at, o.seq).cmp(&(self.at, self.seq))
    }
}

/// Network-level counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Datagrams handed to the network.
    pub sent: u64,
    /// Delivered to a live node.
    pub delivered: u64,
    /// Lost by the loss model.
    pub lost: u64,
    /// Dropped by a partition.
    pub partitioned: u64,
    /// Addressed to a crashed node.
    pub to_dead: u64,
    /// Duplicated.
    pub duplicated: u64,
    /// Node timer wake-ups processed.
    pub wakeups: u64,
    /// Of those, the ones where the node had nothing due (its deadline had moved).
    pub idle_wakeups: u64,
}

/// The simulated world.
pub struct Sim {
    /// Configuration of every node.
    pub cfg: WorldConfig,
    now: Instant,
    nodes: Vec<Option<Node>>,
    incarnation: Vec<u32>,
    side: Vec<u8>,
    rng: Xoshiro256PlusPlus,
    queue: BinaryHeap<Ev>,
    /// The events of the queue's entries (a free slot holds `None`).
    slab: Vec<Option<Kind>>,
    free: Vec<u32>,
    /// Reused per input: the node's transmits, the group's listeners.
    out: Vec<crate::proto::Transmit>,
    group: Vec<u32>,
    seq: u64,
    timer_at: Vec<Instant>,
    listeners: BTreeSet<u32>,
    trace: Option<blake3::Hasher>,
    /// Events the nodes emitted: (time, node, event).
    pub events: Vec<(Instant, usize, Event)>,
    /// Keep `Event::Message` events (off: they are only counted).
    pub keep_messages: bool,
    /// Messages delivered (counted even when not kept).
    pub messages: u64,
    stats: NetStats,
}

impl Sim {
    /// A world of `n` peer slots, none started.
    pub fn new(cfg: WorldConfig, n: usize) -> Sim {
        let trace = cfg.trace.then(blake3::Hasher::new);
        Sim {
            rng: Xoshiro256PlusPlus::seed_from_u64(cfg.seed),
            cfg,
            now: Instant::ZERO,
            nodes: (0..n).map(|_| None).collect(),
            incarnation: vec![0; n],
            side: vec![0; n],
            queue: BinaryHeap::new(),
            slab: Vec::new(),
            free: Vec::new(),
            out: Vec::new(),
            group: Vec::new(),
            seq: 0,
            timer_at: vec![Instant::NEVER; n],
            listeners: BTreeSet::new(),
            trace,
            events: Vec::new(),
            keep_messages: false,
            messages: 0,
            stats: NetStats::default(),
        }
    }

    /// Virtual now.
    pub fn now(&self) -> Instant {
        self.now
    }
    /// Number of slots.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }
    /// Whether there are no slots.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }
    /// Node `i`, if running.
    pub fn node(&self, i: usize) -> Option<&Node> {
        self.nodes.get(i).and_then(Option::as_ref)
    }
    /// Node `i` mutably, if running.
    pub fn node_mut(&mut self, i: usize) -> Option<&mut Node> {
        self.nodes.get_mut(i).and_then(Option::as_mut)
    }
    /// Running nodes with their index.
    pub fn live(&self) -> impl Iterator<Item = (usize, &Node)> {
        self.nodes
            .iter()
            .enumerate()
            .filter_map(|(i, n)| n.as_ref().map(|n| (i, n)))
    }
    /// Network counters.
    pub fn net_stats(&self) -> NetStats {
        self.stats
    }
    /// Change the network model from now on.
    pub fn set_net(&mut self, net: NetConfig) {
        self.cfg.net = net;
    }
    /// Put each node on a side; datagrams between sides are dropped. All zero = healed.
    pub fn partition(&mut self, side_of: impl Fn(usize) -> u8) {
        for (i, s) in self.side.iter_mut().enumerate() {
            *s = side_of(i);
        }
    }
    /// Heal every partition.
    pub fn heal(&mut self) {
        self.side.fill(0);
    }
    /// The trace hash so far (zero when tracing is off).
    pub fn trace_hash(&self) -> [u8; 32] {
        self.trace
            .as_ref()
            .map_or([0; 32], |h| *h.finalize().as_bytes())
    }
    /// A draw from the world's RNG (for scenario choices).
    pub fn rand(&mut self) -> u64 {
        self.rng.next_u64()
    }

    /// Start peer `i` (a fresh incarnation) and let it join now.
    pub fn start(&mut self, i: usize) {
        self.incarnation[i] += 1;
        let cfg = self.cfg.node_config(i, self.incarnation[i]);
        let Ok(mut node) = Node::new(cfg) else {
            return;
        };
        let _ = node.join(self.now);
        self.nodes[i] = Some(node);
        self.timer_at[i] = Instant::NEVER;
        self.after_input(i);
    }

    /// Crash peer `i`: its state vanishes, datagrams to it are lost.
    pub fn crash(&mut self, i: usize) {
        self.nodes[i] = None;
        self.listeners.remove(&(i as u32));
        self.timer_at[i] = Instant::NEVER;
    }

    /// Run a closure on node `i` at the current time, then process its outputs.
    pub fn with_node<R>(&mut self, i: usize, f: impl FnOnce(&mut Node, Instant) -> R) -> Option<R> {
        let now = self.now;
        let r = f(self.nodes.get_mut(i)?.as_mut()?, now);
        self.after_input(i);
        Some(r)
    }

    fn push(&mut self, at: Instant, kind: Kind) {
        self.seq += 1;
        let slot = match self.free.pop() {
            Some(s) => {
                self.slab[s as usize] = Some(kind);
                s
            }
            None => {
                self.slab.push(Some(kind));
                (self.slab.len() - 1) as u32
            }
        };
        self.queue.push(Ev {
            at: at.0,
            seq: self.seq,
            slot,
        });
    }

    /// Drain node `i`'s transmits and events, and reschedule its timer.
    fn after_input(&mut self, i: usize) {
        let now = self.now;
        let Some(node) = self.nodes[i].as_mut() else {
            return;
        };
        let mut out = std::mem::take(&mut self.out);
        while let Some(t) = node.poll_transmit() {
            out.push(t);
        }
        while let Some(e) = node.poll_event() {
            match e {
                Event::ListenGroup(on) => {
                    if on {
                        self.listeners.insert(i as u32);
                    } else {
                        self.listeners.remove(&(i as u32));
                    }
                }
                Event::Message(_) if !self.keep_messages => self.messages += 1,
                e => {
                    if matches!(e, Event::Message(_)) {
                        self.messages += 1;
                    }
                    self.events.push((now, i, e));
                }
            }
        }
        // a deadline already past fires now (and must be recorded as now, or the slot
        // would look scheduled forever)
        let due = node.poll_timeout().unwrap_or(Instant::NEVER).max(now);
        if due < self.timer_at[i] {
            self.timer_at[i] = due;
            self.push(due, Kind::Timer { node: i as u32 });
        }
        for t in out.drain(..) {
            self.stats.sent += 1;
            if t.dest == GROUP {
                let mut ls = std::mem::take(&mut self.group);
                ls.clear();
                ls.extend(self.listeners.iter().copied().filter(|&l| l != i as u32));
                for &l in ls.iter() {
                    self.route(i as u32, l, t.bytes.clone());
                }
                self.group = ls;
            } else if let Some(j) = index_of(t.dest).filter(|&j| j < self.nodes.len()) {
                self.route(i as u32, j as u32, t.bytes);
            }
        }
        self.out = out;
    }

    fn route(&mut self, from: u32, to: u32, buf: Vec<u8>) {
        let net = self.cfg.net;
        if self.side[from as usize] != self.side[to as usize] {
            self.stats.partitioned += 1;
            return;
        }
        if net.loss > 0.0 && self.unit() < net.loss {
            self.stats.lost += 1;
            return;
        }
        let copies = if net.duplicate > 0.0 && self.unit() < net.duplicate {
            self.stats.duplicated += 1;
            2
        } else {
            1
        };
        let mut buf = Some(buf);
        for c in 0..copies {
            let mut d = net.latency + net.link_extra(from, to);
            if net.jitter > 0 {
                d += self.rng.next_u64() % net.jitter;
            }
            if net.reorder > 0.0 && net.reorder_delay > 0 && self.unit() < net.reorder {
                d += self.rng.next_u64() % net.reorder_delay;
            }
            let at = self.now.after(d);
            let b = if c + 1 == copies {
                buf.take().unwrap_or_default()
            } else {
                buf.clone().unwrap_or_default()
            };
            self.push(at, Kind::Deliver { to, from, buf: b });
        }
    }

    fn unit(&mut self) -> f64 {
        (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Process every event up to and including `until`; now becomes `until`.
    pub fn run_until(&mut self, until: Instant) {
        while let Some(top) = self.queue.peek() {
            if top.at > until.0 {
                break;
            }
            let Some(ev) = self.queue.pop() else {
                break;
            };
            let Some(kind) = self.slab.get_mut(ev.slot as usize).and_then(Option::take) else {
                continue;
            };
            self.free.push(ev.slot);
            let ev_at = Instant(ev.at);
            self.now = ev_at;
            match kind {
                Kind::Deliver { to, from, buf } => {
                    let i = to as usize;
                    if let Some(h) = self.trace.as_mut() {
                        h.update(&ev.at.to_le_bytes());
                        h.update(&to.to_le_bytes());
                        h.update(&from.to_le_bytes());
                        h.update(&buf);
                    }
                    match self.nodes[i].as_mut() {
                        Some(node) => {
                            self.stats.delivered += 1;
                            node.handle_datagram(addr_of(from as usize), &buf, ev_at);
                            node.recycle(buf);
                            self.after_input(i);
                        }
                        None => self.stats.to_dead += 1,
                    }
                }
                Kind::Timer { node } => {
                    let i = node as usize;
                    if self.timer_at[i] == ev_at {
                        self.timer_at[i] = Instant::NEVER;
                    }
                    if let Some(n) = self.nodes[i].as_mut() {
                        self.stats.wakeups += 1;
                        if n.poll_timeout().is_some_and(|t| t <= ev_at) {
                            if let Some(h) = self.trace.as_mut() {
                                h.update(&ev.at.to_le_bytes());
                                h.update(&node.to_le_bytes());
                            }
                            n.handle_timeout(ev_at);
                        } else {
                            self.stats.idle_wakeups += 1;
                        }
                        self.after_input(i);
                    }
                }
            }
        }
        self.now = self.now.max(until);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{Event, Role};

    /// Reliable messaging end to end: two peers, 20 % loss, 10 % duplication and
    /// reordering on the link, 100,000 messages delivered exactly once, in order.
    #[test]
    fn reliable_class_delivers_100k_messages_exactly_once_in_order_under_loss() {
        let mut sim = Sim::new(WorldConfig::new(21), 2);
        sim.keep_messages = true;
        sim.start(0);
        sim.run_until(Instant(300_000_000));
        sim.start(1);
        sim.run_until(Instant(1_000_000_000));
        assert!(
            sim.live().all(|(_, n)| n.role() == Role::SuperPeer),
            "both should be super-peers"
        );
        sim.set_net(NetConfig {
            loss: 0.20,
            duplicate: 0.10,
            reorder: 0.20,
            reorder_delay: 5_000_000,
            ..NetConfig::default()
        });
        let to = sim.node(1).map(|n| n.me().id).unwrap();
        let total = 100_000u32;
        let mut sent = 0u32;
        let mut t = sim.now();
        let mut got: Vec<u32> = Vec::with_capacity(total as usize);
        while got.len() < total as usize {
            while sent < total
                && sim
                    .with_node(0, |n, now| n.send(to, 1, &sent.to_be_bytes(), now))
                    .is_some_and(|r| r.is_ok())
            {
                sent += 1;
            }
            t = t.after(2_000_000);
            sim.run_until(t);
            for (_, i, e) in sim.events.drain(..) {
                if let (1, Event::Message(m)) = (i, e) {
                    got.push(u32::from_be_bytes(m.bytes.try_into().unwrap()));
                }
            }
            assert!(t.0 < 600_000_000_000, "stalled at {} of {total}", got.len());
        }
        assert_eq!(got.len(), total as usize);
        assert!(
            got.iter().copied().eq(0..total),
            "not exactly once in order"
        );
        let st = sim.node(0).unwrap().messaging();
        assert!(st.retransmits > 0, "loss must have forced retransmissions");
        assert!(sim.net_stats().duplicated > 0 && sim.net_stats().lost > 0);
    }

    #[test]
    fn addresses_map_back_to_indices() {
        for i in [0, 1, 255, 256, 70_000] {
            assert_eq!(index_of(addr_of(i)), Some(i));
        }
        assert_eq!(index_of(GROUP), None);
    }
}
