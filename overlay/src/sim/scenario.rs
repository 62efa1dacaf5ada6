//! Scripted scenarios and their metrics.
//!
//! Every scenario first forms the overlay: peer 0 founds the root, then the others join
//! one per `join_gap`, each publishing one SAP (`sap-i`). Once the tree is valid and every
//! SAP discoverable ("formed"), the scenario lets it settle for a second, measures the
//! steady control traffic, injects its fault, and measures:
//!
//! - **detect**: from the fault to the failure detector's verdicts on the crashed peers
//!   (`detect_ms`: until every monitor responsible for the repair knows, i.e. the
//!   crashed super-peer's cell mates, or every verdict for a crashed cell;
//!   `detect_all_ms`: the last verdict of any monitor; `detect_first_ms`: the first);
//! - **repair**: from the fault (or the heal, or the end of the lossy period) until the tree invariants hold again and
//!   every live SAP is discoverable ([`super::check`]), checked every 5 ms;
//! - **lookups**: after repair, lookups from random peers for random live SAPs and for
//!   keys nobody published; each must be answered correctly (owner, or a definite
//!   not-found), and the most messages one took is reported.

use std::fmt;
use std::str::FromStr;

use super::check::{self, TreeSummary, sap_key};
use super::net::NetConfig;
use super::world::{Sim, WorldConfig};
use crate::proto::discovery::key_of;
use crate::proto::{Event, Instant, PeerId, Role};

/// A scripted scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    /// Form the overlay; no fault.
    Join,
    /// Crash one super-peer (of a non-root cell with bound peers).
    CrashSuperPeer,
    /// Crash every super-peer of one non-root cell.
    CrashCell,
    /// Crash every super-peer of the root cell.
    CrashRoot,
    /// Split the peers in two halves for three seconds, then heal.
    PartitionHeal,
    /// 10 % loss on every link for ten seconds, then recovery.
    Loss,
}

impl Scenario {
    /// All scenarios.
    pub const ALL: [Scenario; 6] = [
        Scenario::Join,
        Scenario::CrashSuperPeer,
        Scenario::CrashCell,
        Scenario::CrashRoot,
        Scenario::PartitionHeal,
        Scenario::Loss,
    ];
    /// The command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Join => "join",
            Scenario::CrashSuperPeer => "crash-superpeer",
            Scenario::CrashCell => "crash-cell",
            Scenario::CrashRoot => "crash-root",
            Scenario::PartitionHeal => "partition-heal",
            Scenario::Loss => "loss",
        }
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Scenario {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Scenario::ALL
            .into_iter()
            .find(|x| x.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Scenario::ALL.iter().map(|x| x.name()).collect();
                format!("unknown scenario `{s}`; valid: {}", names.join(", "))
            })
    }
}

/// Scenario parameters.
#[derive(Clone, Debug)]
pub struct Params {
    /// Number of peers.
    pub peers: usize,
    /// Scenario.
    pub scenario: Scenario,
    /// Seed.
    pub seed: u64,
    /// Heartbeat period, ns.
    pub heartbeat: u64,
    /// Gap between joins, ns.
    pub join_gap: u64,
    /// Total virtual time to run at least (0: only as long as the scenario needs).
    pub duration: u64,
    /// Loss probability of the `loss` scenario.
    pub loss: f64,
    /// Lookups to check after repair.
    pub lookups: usize,
    /// Hash the trace.
    pub trace: bool,
    /// Encrypt payloads.
    pub encrypt: bool,
}

impl Params {
    /// Defaults for `peers` peers.
    pub fn new(peers: usize, scenario: Scenario, seed: u64) -> Params {
        Params {
            peers,
            scenario,
            seed,
            heartbeat: 25_000_000,
            join_gap: 1_000_000,
            duration: 0,
            loss: 0.10,
            lookups: 200,
            trace: false,
            encrypt: false,
        }
    }
}

/// What a scenario measured. Times in milliseconds of virtual time.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Scenario name.
    pub scenario: String,
    /// Peers.
    pub peers: usize,
    /// Seed.
    pub seed: u64,
    /// Heartbeat, ms.
    pub heartbeat_ms: f64,
    /// Time from the first join until the tree was valid and every SAP discoverable.
    pub formed_ms: f64,
    /// Fault until every monitor responsible for the repair has declared the crashed
    /// peers down: the crashed super-peer's cell mates (crash-superpeer), or every
    /// verdict within a second (crash-cell, crash-root). None for join and loss.
    pub detect_ms: Option<f64>,
    /// Fault to the last verdict by any monitor within a second (child cells watch
    /// their parent's non-coordinator members at a quarter of the rate).
    pub detect_all_ms: Option<f64>,
    /// Fault to the first verdict.
    pub detect_first_ms: Option<f64>,
    /// Fault (or heal) to repaired.
    pub repair_ms: Option<f64>,
    /// Peers orphaned by the fault.
    pub orphans: usize,
    /// Lookups checked.
    pub lookups: usize,
    /// Most messages a lookup took.
    pub lookup_msgs_max: u8,
    /// Tree levels at the end (root alone = 1).
    pub tree_depth: usize,
    /// Cells at the end.
    pub cells: usize,
    /// Steady-state control bytes sent per peer per second.
    pub control_bytes_per_peer_per_s: f64,
    /// The same, split by frame type (frame name, bytes per peer per second).
    pub control_by_type: Vec<(&'static str, f64)>,
    /// Index deltas sent up the tree per second in the same window (all peers).
    pub deltas_up_per_s: f64,
    /// Length of that steady-state window, seconds of virtual time.
    pub window_s: f64,
    /// Virtual seconds simulated.
    pub virtual_s: f64,
    /// Datagrams delivered.
    pub delivered: u64,
    /// Node timer wake-ups.
    pub wakeups: u64,
    /// Of those, the ones with nothing due.
    pub idle_wakeups: u64,
    /// Datagrams dropped by security at receivers.
    pub security_drops: u64,
    /// Index snapshots parents asked of children whose digest disagreed (whole run).
    pub resyncs: u64,
    /// The same drops by reason: forged, truncated, replayed, wrong overlay, oversize,
    /// malformed.
    pub security_by_reason: [u64; 6],
    /// Trace hash (hex), when traced.
    pub trace: String,
}

const MS: u64 = 1_000_000;

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

fn wait_valid(sim: &mut Sim, step: u64, limit: Instant) -> Result<TreeSummary, String> {
    loop {
        let err = match check::tree(sim).and_then(|t| check::discoverable(sim).map(|_| t)) {
            Ok(t) => return Ok(t),
            Err(e) => e,
        };
        if std::env::var_os("RTPM_SIM_DEBUG").is_some() {
            eprintln!("{:.3}s: {err}", sim.now().0 as f64 / 1e9);
        }
        if sim.now() >= limit {
            return Err(err);
        }
        let t = sim.now().after(step);
        sim.run_until(t);
    }
}

/// Form the overlay of a scenario: peer 0 founds the root, the others join one per
/// `join_gap`, each publishing one SAP, until the tree is valid and every SAP
/// discoverable. Returns the world and the tree's shape, or the violated invariant.
pub fn form(p: &Params, progress: &mut dyn FnMut(&str)) -> Result<(Sim, TreeSummary), String> {
    let mut wc = WorldConfig::new(p.seed);
    wc.heartbeat = p.heartbeat;
    wc.trace = p.trace;
    wc.encrypt = p.encrypt;
    if p.scenario == Scenario::Loss {
        // with 10 % loss two beats in a row go missing once in a hundred intervals:
        // suspect only after four silent intervals (probes still confirm)
        wc.suspect_intervals = 4.0;
    }
    let mut sim = Sim::new(wc, p.peers);
    for i in 0..p.peers {
        let at = if i == 0 {
            Instant::ZERO
        } else {
            Instant(300 * MS + i as u64 * p.join_gap)
        };
        sim.run_until(at);
        sim.start(i);
        sim.with_node(i, |n, now| n.publish(sap_key(i), 1, now));
        if i > 0 && i % 1000 == 0 {
            progress(&format!(
                "joined {i}/{} peers at {:.1}s virtual",
                p.peers,
                sim.now().0 as f64 / 1e9
            ));
        }
    }
    let joined = sim.now();
    let limit = joined.after(20_000 * MS + p.peers as u64 * 2 * MS);
    let tree =
        wait_valid(&mut sim, 100 * MS, limit).map_err(|e| format!("overlay did not form: {e}"))?;
    Ok((sim, tree))
}

/// Run a scenario. `progress` receives a line now and then (for long runs). Fails with
/// the violated invariant if the overlay does not form or repair in time, or a lookup
/// answers wrongly.
pub fn run(p: &Params, progress: &mut dyn FnMut(&str)) -> Result<Report, String> {
    let mut r = Report {
        scenario: p.scenario.name().into(),
        peers: p.peers,
        seed: p.seed,
        heartbeat_ms: ms(p.heartbeat),
        ..Report::default()
    };
    let (mut sim, tree) = form(p, progress)?;
    r.formed_ms = ms(sim.now().0);
    if std::env::var_os("RTPM_SIM_DEBUG").is_some() {
        eprintln!("{}", check::shape(&sim));
    }
    progress(&format!(
        "formed: {} cells, {} levels at {:.1}s virtual",
        tree.cells,
        tree.levels,
        sim.now().0 as f64 / 1e9
    ));

    // ---- steady state: control traffic
    let settle = sim.now().after(1_000 * MS);
    sim.run_until(settle);
    // The window is a whole number of lease-refresh periods when the run is long
    // enough (each owner refreshes once per period: a window that is not a multiple
    // counts some owners' refreshes once more than others'), else two seconds.
    let refresh = sim.cfg.node_config(0, 1).lease / 3;
    let room = p.duration.saturating_sub(settle.0).min(60_000 * MS);
    let window = if room >= refresh {
        room / refresh * refresh
    } else {
        2_000 * MS
    };
    let before: u64 = sim.live().map(|(_, n)| n.stats().tx_control_bytes).sum();
    let up_before: u64 = sim.live().map(|(_, n)| n.stats().deltas_up).sum();
    let by_type = |sim: &Sim| {
        let mut v = [0u64; 32];
        for (_, n) in sim.live() {
            for (a, b) in v.iter_mut().zip(n.stats().tx_control_by_type) {
                *a += b;
            }
        }
        v
    };
    let before_by_type = by_type(&sim);
    let mut t = settle;
    while t < settle.after(window) {
        t = t.after(1_000 * MS).min(settle.after(window));
        sim.run_until(t);
        if p.peers >= 1000 {
            progress(&format!("steady state {:.0}s virtual", t.0 as f64 / 1e9));
        }
    }
    let after: u64 = sim.live().map(|(_, n)| n.stats().tx_control_bytes).sum();
    let up_after: u64 = sim.live().map(|(_, n)| n.stats().deltas_up).sum();
    if std::env::var_os("RTPM_SIM_DEBUG").is_some() {
        for l in check::index_copies(&sim) {
            eprintln!("{l}");
        }
    }
    let live = sim.live().count().max(1);
    r.control_bytes_per_peer_per_s = (after - before) as f64 / live as f64 / (window as f64 / 1e9);
    r.deltas_up_per_s = (up_after - up_before) as f64 / (window as f64 / 1e9);
    r.window_s = window as f64 / 1e9;
    let after_by_type = by_type(&sim);
    for (t, (a, b)) in after_by_type.iter().zip(before_by_type).enumerate() {
        if a > &b {
            let name = crate::proto::frame::FrameType::from_u8(t as u8)
                .map_or("?", crate::proto::frame::FrameType::name);
            r.control_by_type
                .push((name, (a - b) as f64 / live as f64 / (window as f64 / 1e9)));
        }
    }
    sim.events.clear();

    // ---- fault
    let fault_at = sim.now();
    let mut crashed: Vec<PeerId> = Vec::new();
    // the live peers responsible for repairing the fault (empty: any monitor)
    let mut responsible: Vec<usize> = Vec::new();
    let sps: Vec<(usize, crate::proto::frame::View, usize)> = sim
        .live()
        .filter(|(_, n)| n.role() == Role::SuperPeer)
        .map(|(i, n)| (i, n.view().clone(), n.bound_peers().count()))
        .collect();
    let pick = |sim: &mut Sim, v: &[usize]| -> Option<usize> {
        if v.is_empty() {
            None
        } else {
            Some(v[(sim.rand() % v.len() as u64) as usize])
        }
    };
    let mut repair_from = fault_at;
    match p.scenario {
        Scenario::Join => {}
        Scenario::Loss => {
            // ten seconds of loss on every link, then the network recovers and the
            // overlay must be whole again
            sim.set_net(NetConfig {
                loss: p.loss,
                ..NetConfig::default()
            });
            let until = sim.now().after(10_000 * MS);
            while sim.now() < until {
                let t = sim.now().after(1_000 * MS).min(until);
                sim.run_until(t);
            }
            sim.set_net(NetConfig::default());
            repair_from = sim.now();
            progress("loss lifted");
        }
        Scenario::CrashSuperPeer => {
            let cands: Vec<usize> = sps
                .iter()
                .filter(|(_, v, b)| !v.parent.is_none() && *b > 0)
                .map(|(i, _, _)| *i)
                .collect();
            let cands = if cands.is_empty() {
                sps.iter()
                    .filter(|(_, _, b)| *b > 0)
                    .map(|(i, _, _)| *i)
                    .collect()
            } else {
                cands
            };
            let victim = pick(&mut sim, &cands).ok_or("no super-peer with peers to crash")?;
            r.orphans = sps.iter().find(|(i, _, _)| *i == victim).map_or(0, |x| x.2);
            if let Some((_, v, _)) = sps.iter().find(|(i, _, _)| *i == victim) {
                responsible = sps
                    .iter()
                    .filter(|(i, w, _)| *i != victim && w.cell == v.cell)
                    .map(|(i, _, _)| *i)
                    .collect();
            }
            crashed.extend(sim.node(victim).map(|n| n.me().id));
            sim.crash(victim);
        }
        Scenario::CrashCell | Scenario::CrashRoot => {
            let root_cell = p.scenario == Scenario::CrashRoot;
            let mut cells: Vec<_> = sps
                .iter()
                .filter(|(_, v, _)| v.parent.is_none() == root_cell)
                .map(|(_, v, _)| v.cell)
                .collect();
            cells.sort();
            cells.dedup();
            let idx: Vec<usize> = (0..cells.len()).collect();
            let c = pick(&mut sim, &idx)
                .map(|k| cells[k])
                .ok_or("no cell to crash")?;
            for (i, v, b) in &sps {
                if v.cell == c {
                    r.orphans += b;
                    crashed.extend(sim.node(*i).map(|n| n.me().id));
                    sim.crash(*i);
                }
            }
        }
        Scenario::PartitionHeal => {
            let sides: Vec<u8> = (0..p.peers).map(|_| (sim.rand() & 1) as u8 + 1).collect();
            sim.partition(|i| sides[i]);
            let heal_at = sim.now().after(3_000 * MS);
            sim.run_until(heal_at);
            sim.heal();
            repair_from = heal_at;
            progress("partition healed");
        }
    }
    progress(&format!("fault injected: {}", p.scenario));

    // ---- detection and repair
    let limit = repair_from.after(20_000 * MS);
    let tree =
        wait_valid(&mut sim, 5 * MS, limit).map_err(|e| format!("overlay did not repair: {e}"))?;
    if p.scenario != Scenario::Join {
        r.repair_ms = Some(ms(sim.now().since(repair_from)));
    }
    if p.scenario == Scenario::PartitionHeal {
        // the detector's first verdict across the partition
        let first = sim
            .events
            .iter()
            .find(|(t, _, e)| *t >= fault_at && matches!(e, Event::PeerDown { .. }))
            .map(|(t, _, _)| t.since(fault_at));
        r.detect_first_ms = first.map(ms);
    }
    let mut first = None;
    let mut last = None;
    let mut last_responsible = None;
    let mut heard_from: Vec<usize> = Vec::new();
    for (t, i, e) in &sim.events {
        if let Event::PeerDown { peer, .. } = e
            && crashed.contains(peer)
            && t.since(fault_at) <= 1_000 * MS
        {
            let d = t.since(fault_at);
            first = Some(first.map_or(d, |f: u64| f.min(d)));
            last = Some(last.map_or(d, |l: u64| l.max(d)));
            if responsible.contains(i) {
                last_responsible = Some(last_responsible.map_or(d, |l: u64| l.max(d)));
                heard_from.push(*i);
            }
        }
    }
    if !crashed.is_empty() {
        r.detect_all_ms = last.map(ms);
        r.detect_first_ms = first.map(ms);
        r.detect_ms = if responsible.is_empty() {
            last.map(ms)
        } else if responsible.iter().all(|m| heard_from.contains(m)) {
            last_responsible.map(ms)
        } else {
            None // a responsible monitor never declared it: reported as missing
        };
    }
    progress("repaired");

    // ---- lookups
    sim.events.clear();
    let live: Vec<usize> = sim.live().map(|(i, _)| i).collect();
    let mut expect = std::collections::HashMap::new();
    for q in 0..p.lookups.min(live.len()) + 10 {
        let from = live[(sim.rand() % live.len() as u64) as usize];
        let (key, want) = if q < p.lookups.min(live.len()) {
            let target = live[(sim.rand() % live.len() as u64) as usize];
            (sap_key(target), sim.node(target).map(|n| n.me().id))
        } else {
            (key_of(&format!("nobody-{q}")), None)
        };
        if let Some(Ok(req)) = sim.with_node(from, |n, now| n.lookup(key, now)) {
            expect.insert(req, want);
        }
        let t = sim.now().after(MS);
        sim.run_until(t);
    }
    let t = sim.now().after(2_000 * MS);
    sim.run_until(t);
    let mut answered = 0;
    for (_, _, e) in &sim.events {
        if let Event::LookupDone {
            req, found, msgs, ..
        } = e
            && let Some(want) = expect.get(req)
        {
            answered += 1;
            if found.map(|f| f.0.id) != *want {
                return Err(format!(
                    "lookup {req} answered {found:?}, expected {want:?}"
                ));
            }
            r.lookup_msgs_max = r.lookup_msgs_max.max(*msgs);
        }
    }
    if answered != expect.len() {
        return Err(format!(
            "{} of {} lookups unanswered",
            expect.len() - answered,
            expect.len()
        ));
    }
    r.lookups = answered;

    if p.duration > 0 && sim.now().0 < p.duration {
        sim.run_until(Instant(p.duration));
    }
    let tree = check::tree(&sim)
        .map_err(|e| format!("invalid at the end: {e}"))
        .unwrap_or(tree);
    r.tree_depth = tree.levels;
    r.cells = tree.cells;
    r.virtual_s = sim.now().0 as f64 / 1e9;
    r.delivered = sim.net_stats().delivered;
    r.wakeups = sim.net_stats().wakeups;
    r.idle_wakeups = sim.net_stats().idle_wakeups;
    r.security_drops = sim.live().map(|(_, n)| n.security().dropped()).sum();
    r.resyncs = sim.live().map(|(_, n)| n.stats().resyncs).sum();
    for (_, n) in sim.live() {
        let c = n.security();
        for (slot, v) in r.security_by_reason.iter_mut().zip([
            c.forged,
            c.truncated,
            c.replayed,
            c.wrong_overlay,
            c.oversize,
            c.malformed,
        ]) {
            *slot += v;
        }
    }
    if p.trace {
        r.trace = sim
            .trace_hash()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_1000(s: Scenario) -> Report {
        let p = Params::new(1000, s, 7);
        match run(&p, &mut |_| {}) {
            Ok(r) => r,
            Err(e) => panic!("{s}: {e}"),
        }
    }

    fn lookups_within_bound(r: &Report) {
        assert!(
            r.lookups >= 200,
            "{}: {} lookups checked",
            r.scenario,
            r.lookups
        );
        assert!(
            (r.lookup_msgs_max as usize) <= 2 * r.tree_depth + 2,
            "{}: lookup took {} messages, depth {}",
            r.scenario,
            r.lookup_msgs_max,
            r.tree_depth
        );
    }

    // Each `run` checks the tree invariants (every peer bound, every cell at k members,
    // one root, parents know their children, consistent depths) and that every live SAP
    // is discoverable, then answers 200 lookups for live SAPs and 10 for unpublished keys
    // (definite not-found); any violation fails the run.

    #[test]
    fn thousand_peers_join_into_a_valid_tree() {
        let r = run_1000(Scenario::Join);
        // at most k super-peers and k * max_bound peers per cell
        assert!(r.cells >= 1000 / (3 * 16 + 3), "{} cells", r.cells);
        lookups_within_bound(&r);
    }

    /// Steady state over two lease-refresh periods: every owner refreshes twice, and
    /// nothing of it climbs above the owner's cell; the control traffic per peer is the
    /// same (within 3 %) at 100 and at 1,000 peers, cells being packed at both sizes.
    #[test]
    fn refreshes_stay_in_the_owners_cell_and_traffic_per_peer_does_not_grow() {
        let steady = |peers| {
            let mut p = Params::new(peers, Scenario::Join, 7);
            p.duration = 25_000 * MS;
            p.lookups = 20;
            match run(&p, &mut |_| {}) {
                Ok(r) => r,
                Err(e) => panic!("{peers} peers: {e}"),
            }
        };
        let (small, large) = (steady(100), steady(1000));
        for r in [&small, &large] {
            assert_eq!(r.window_s, 20.0, "{} peers: window", r.peers);
            assert_eq!(r.deltas_up_per_s, 0.0, "{} peers: deltas went up", r.peers);
            let sync = r.control_by_type.iter().find(|(n, _)| *n == "Sync");
            assert!(
                sync.is_some_and(|(_, b)| *b > 0.0),
                "{} peers: no refresh in the window",
                r.peers
            );
        }
        assert!(large.tree_depth > small.tree_depth);
        let ratio = large.control_bytes_per_peer_per_s / small.control_bytes_per_peer_per_s;
        assert!(
            (0.97..=1.03).contains(&ratio),
            "{:.0} B/peer/s at 100 peers, {:.0} at 1,000",
            small.control_bytes_per_peer_per_s,
            large.control_bytes_per_peer_per_s
        );
    }

    /// A crashed owner's records disappear everywhere within a bound: an ordinary
    /// peer's once its super-peer's detector declares it (suspicion after two silent
    /// beat intervals of `peer_beat_every` periods, then a probe), a super-peer's own
    /// once its cell mates do (three periods); the withdrawals then travel up in
    /// milliseconds. Its orphans' records stay discoverable.
    #[test]
    fn crashed_owners_records_vanish_everywhere_within_a_bound() {
        let p = Params::new(400, Scenario::Join, 5);
        let (mut sim, _) = match form(&p, &mut |_| {}) {
            Ok(x) => x,
            Err(e) => panic!("{e}"),
        };
        let peer = sim
            .live()
            .find(|(_, n)| n.role() == Role::Peer)
            .map(|(i, _)| i)
            .unwrap();
        let sp = sim
            .live()
            .find(|(_, n)| {
                n.role() == Role::SuperPeer
                    && !n.view().parent.is_none()
                    && n.bound_peers().count() > 0
                    && n.bound_peers()
                        .all(|b| Some(b) != sim.node(peer).map(|x| x.me().id))
            })
            .map(|(i, _)| i)
            .unwrap();
        let held = |sim: &Sim, i: usize| {
            sim.live()
                .filter(|(_, n)| n.index_record(sap_key(i), sim.now()).is_some())
                .count()
        };
        assert!(held(&sim, peer) >= 3 && held(&sim, sp) >= 3);
        sim.crash(peer);
        sim.crash(sp);
        let fault = sim.now();
        let hb = sim.cfg.heartbeat;
        // 2 intervals of 8 periods of silence after the last beat (which came at most
        // one interval before the crash), a probe timeout, and propagation
        let bound = fault.after(3 * 8 * hb + hb);
        let mut gone = [None, None];
        while sim.now() < fault.after(10 * bound.since(fault)) && gone.iter().any(Option::is_none) {
            let t = sim.now().after(MS);
            sim.run_until(t);
            for (g, i) in gone.iter_mut().zip([peer, sp]) {
                if g.is_none() && held(&sim, i) == 0 {
                    *g = Some(sim.now());
                }
            }
        }
        for (g, what) in gone.iter().zip(["ordinary peer", "super-peer"]) {
            let at = g.unwrap_or_else(|| panic!("the crashed {what}'s record is still held"));
            assert!(
                at <= bound,
                "the crashed {what}'s record vanished after {} ms",
                at.since(fault) / MS
            );
        }
        let limit = sim.now().after(2_000 * MS);
        if let Err(e) = wait_valid(&mut sim, 5 * MS, limit) {
            panic!("after the crashes: {e}");
        }
    }

    #[test]
    fn super_peer_crash_is_detected_and_repaired() {
        let r = run_1000(Scenario::CrashSuperPeer);
        assert!(
            r.detect_ms.is_some(),
            "nobody declared the crashed super-peer down"
        );
        assert!(r.repair_ms.is_some());
        lookups_within_bound(&r);
    }

    #[test]
    fn whole_cell_crash_is_repaired() {
        let r = run_1000(Scenario::CrashCell);
        assert!(r.detect_ms.is_some());
        lookups_within_bound(&r);
    }

    #[test]
    fn root_cell_crash_elects_a_new_root() {
        let r = run_1000(Scenario::CrashRoot);
        assert!(r.detect_ms.is_some());
        lookups_within_bound(&r);
    }

    #[test]
    fn partition_then_heal_converges_to_one_tree() {
        let r = run_1000(Scenario::PartitionHeal);
        assert!(r.detect_first_ms.is_some(), "the partition went unnoticed");
        lookups_within_bound(&r);
    }

    #[test]
    fn ten_percent_loss_on_every_link() {
        let r = run_1000(Scenario::Loss);
        lookups_within_bound(&r);
    }

    #[test]
    fn same_seed_same_trace_other_seed_other_trace() {
        let trace = |seed| {
            let mut p = Params::new(200, Scenario::CrashSuperPeer, seed);
            p.trace = true;
            p.lookups = 50;
            run(&p, &mut |_| {}).map(|r| r.trace)
        };
        let a = trace(11).unwrap();
        let b = trace(11).unwrap();
        let c = trace(12).unwrap();
        assert_eq!(a.len(), 64);
        assert_eq!(a, b, "same seed, different trace");
        assert_ne!(a, c, "different seeds, same trace");
    }

    #[test]
    fn unknown_scenario_is_refused_with_the_valid_names() {
        let e = "crash".parse::<Scenario>().unwrap_err();
        assert!(
            e.contains("crash-superpeer") && e.contains("partition-heal"),
            "{e}"
        );
        for s in Scenario::ALL {
            assert_eq!(s.name().parse::<Scenario>(), Ok(s));
        }
    }
}
