//! The oracle: tree invariants and discoverability, read off the nodes' state.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::world::Sim;
use crate::proto::discovery::key_of;
use crate::proto::{CellId, PeerId, Role};

/// The shape of a valid tree.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TreeSummary {
    /// Live peers.
    pub peers: usize,
    /// Cells.
    pub cells: usize,
    /// Levels (root alone = 1).
    pub levels: usize,
    /// The root cell.
    pub root: CellId,
}

/// The SAP key simulated peer `i` publishes.
pub fn sap_key(i: usize) -> u128 {
    key_of(&format!("sap-{i}"))
}

/// Check the tree invariants: every live peer is bound to a live super-peer that counts
/// it, every cell's members agree on its view and number exactly k (when at least k peers
/// live), exactly one root, every parent exists and knows the child, no cycles, depths
/// and root ids consistent. Returns the tree's shape or the first violation.
pub fn tree(sim: &Sim) -> Result<TreeSummary, String> {
    let k = sim.cfg.cell_size;
    let mut cells: BTreeMap<CellId, Vec<usize>> = BTreeMap::new();
    let mut by_id: HashMap<PeerId, usize> = HashMap::new();
    let mut live = 0;
    for (i, n) in sim.live() {
        live += 1;
        by_id.insert(n.me().id, i);
        match n.role() {
            Role::SuperPeer => cells.entry(n.view().cell).or_default().push(i),
            Role::Peer => {}
            r => return Err(format!("peer {i} is {r:?}, not bound")),
        }
    }
    for (i, n) in sim.live() {
        if n.role() != Role::Peer {
            continue;
        }
        let Some(sp) = n.super_peer() else {
            return Err(format!("peer {i} has no super-peer"));
        };
        let Some(&j) = by_id.get(&sp.id) else {
            return Err(format!("peer {i} is bound to a dead super-peer"));
        };
        let Some(s) = sim.node(j) else {
            return Err(format!("peer {i}: super-peer {j} vanished"));
        };
        if s.role() != Role::SuperPeer || !s.bound_peers().any(|p| p == n.me().id) {
            return Err(format!(
                "peer {i} thinks it is bound to {j}, which does not count it"
            ));
        }
    }
    let mut roots = Vec::new();
    for (cell, idx) in &cells {
        let first = sim
            .node(idx[0])
            .map(|n| n.view().clone())
            .unwrap_or_default();
        let ids: BTreeSet<PeerId> = idx
            .iter()
            .filter_map(|&i| sim.node(i))
            .map(|n| n.me().id)
            .collect();
        let listed: BTreeSet<PeerId> = first.members.iter().map(|m| m.id).collect();
        if ids != listed {
            let odd: Vec<String> = listed
                .symmetric_difference(&ids)
                .map(|id| match by_id.get(id).and_then(|&i| sim.node(i)) {
                    Some(n) => format!(
                        "{id:?}: {:?} in {:?} v{}",
                        n.role(),
                        n.view().cell,
                        n.view().version
                    ),
                    None => format!("{id:?}: dead"),
                })
                .collect();
            let views: Vec<String> = idx
                .iter()
                .filter_map(|&i| sim.node(i).map(|n| (i, n)))
                .map(|(i, n)| {
                    format!(
                        "n{i}={} v{} {:?}",
                        n.me().id.0 % 1000,
                        n.view().version,
                        n.view()
                            .members
                            .iter()
                            .map(|m| m.id.0 % 1000)
                            .collect::<Vec<_>>()
                    )
                })
                .collect();
            return Err(format!(
                "cell {cell:?} v{}: members and live super-peers differ: {odd:?}; views {views:?}",
                first.version
            ));
        }
        for &i in idx {
            let v = sim.node(i).map(|n| n.view().clone()).unwrap_or_default();
            if v.members != first.members || v.parent != first.parent || v.root != first.root {
                return Err(format!("cell {cell:?}: members disagree on the view"));
            }
        }
        if live >= k && listed.len() != k {
            let bound: Vec<usize> = idx
                .iter()
                .filter_map(|&i| sim.node(i))
                .map(|n| n.bound_peers().count())
                .collect();
            let parent_knows = cells.get(&first.parent).map(|p| {
                p.iter()
                    .filter_map(|&i| sim.node(i))
                    .map(|n| {
                        (
                            n.child_cells().any(|c| c == *cell),
                            n.bound_peers().count(),
                            n.is_coordinator(),
                        )
                    })
                    .collect::<Vec<_>>()
            });
            return Err(format!(
                "cell {cell:?} has {} members, k = {k} (version {}, bound {bound:?}, depth {}, parent knows/bound/coord {parent_knows:?})",
                listed.len(),
                first.version,
                first.depth
            ));
        }
        if first.parent.is_none() {
            roots.push(*cell);
        } else {
            let Some(pidx) = cells.get(&first.parent) else {
                return Err(format!(
                    "cell {cell:?}: parent {:?} does not exist",
                    first.parent
                ));
            };
            let pv = sim
                .node(pidx[0])
                .map(|n| n.view().clone())
                .unwrap_or_default();
            if pv.members != first.parent_members {
                return Err(format!("cell {cell:?}: stale parent members"));
            }
            if !pidx
                .iter()
                .filter_map(|&i| sim.node(i))
                .any(|n| n.child_cells().any(|c| c == *cell))
            {
                return Err(format!("cell {cell:?}: parent does not know it"));
            }
            if first.depth != pv.depth + 1 {
                return Err(format!(
                    "cell {cell:?}: depth {} under parent depth {}",
                    first.depth, pv.depth
                ));
            }
        }
    }
    if roots.len() != 1 {
        return Err(format!("{} roots: {:?}", roots.len(), roots));
    }
    let root = roots[0];
    let mut levels = 0;
    for (cell, idx) in &cells {
        let mut c = *cell;
        let mut steps = 0;
        while c != root {
            let Some(p) = cells
                .get(&c)
                .and_then(|v| sim.node(v[0]))
                .map(|n| n.view().parent)
            else {
                return Err(format!("cell {cell:?}: broken parent chain"));
            };
            c = p;
            steps += 1;
            if steps > cells.len() {
                return Err(format!("cell {cell:?}: cycle"));
            }
        }
        let v = sim
            .node(idx[0])
            .map(|n| n.view().clone())
            .unwrap_or_default();
        if v.root != root {
            return Err(format!(
                "cell {cell:?}: believes root {:?}, is under {:?}",
                v.root, root
            ));
        }
        levels = levels.max(steps + 1);
    }
    Ok(TreeSummary {
        peers: live,
        cells: cells.len(),
        levels,
        root,
    })
}

/// Check that every live peer's SAP is discoverable: each root member holds it with the
/// right owner, and no super-peer anywhere holds a record for it pointing elsewhere (so
/// a lookup from any peer, which stops at the first cell holding the key, is right).
pub fn discoverable(sim: &Sim) -> Result<usize, String> {
    let now = sim.now();
    let mut owner: HashMap<u128, (PeerId, crate::proto::Addr)> = HashMap::new();
    for (i, n) in sim.live() {
        owner.insert(sap_key(i), (n.me().id, n.me().addr));
    }
    let sps: Vec<_> = sim
        .live()
        .filter(|(_, n)| n.role() == Role::SuperPeer)
        .collect();
    let roots: Vec<_> = sps
        .iter()
        .filter(|(_, n)| n.view().parent.is_none())
        .collect();
    if roots.is_empty() {
        return Err("no root".into());
    }
    for (i, _) in sim.live() {
        let key = sap_key(i);
        let want = owner[&key];
        for (r, n) in &roots {
            match n.index_record(key, now) {
                Some(rec) if (rec.owner.id, rec.owner.addr) == want => {}
                Some(_) => {
                    return Err(format!("root member {r} holds a wrong record for peer {i}"));
                }
                None => {
                    let o = sim.node(i);
                    // where along the owner's path up does the record stop?
                    let mut path = Vec::new();
                    let mut cell = o.map(|o| o.view().cell);
                    for _ in 0..32 {
                        let Some(c) = cell else { break };
                        let holders: Vec<(bool, bool)> = sps
                            .iter()
                            .filter(|(_, n)| n.view().cell == c)
                            .map(|(_, n)| (n.is_coordinator(), n.index_record(key, now).is_some()))
                            .collect();
                        path.push(format!("{}:{holders:?}", c.created % 100_000));
                        cell = sps
                            .iter()
                            .find(|(_, n)| n.view().cell == c)
                            .map(|(_, n)| n.view().parent)
                            .filter(|p| !p.is_none());
                    }
                    return Err(format!(
                        "root member {r} lacks peer {i}'s SAP; path (coordinator, holds) {path:?} (owner {:?} in {:?}, sp {:?}; root member believes it down: {}, owner's own record: {})",
                        o.map(|o| o.role()),
                        o.map(|o| o.view().cell.created),
                        o.and_then(|o| o.super_peer()).map(|s| s.id.0 % 1000),
                        n.believes_down(want.0),
                        o.is_some_and(|o| o.index_record(key, now).is_some())
                    ));
                }
            }
        }
    }
    for (s, n) in &sps {
        for (key, rec) in n.index_records() {
            if rec.expires <= now {
                continue;
            }
            if let Some(want) = owner.get(key)
                && (rec.owner.id, rec.owner.addr) != *want
            {
                return Err(format!(
                    "super-peer {s} holds a stale record for {:?}",
                    rec.owner.id
                ));
            }
        }
    }
    Ok(owner.len())
}

/// A one-line-per-cell picture of the tree (depth, cell, peers bound to each member,
/// children), for debugging.
pub fn shape(sim: &Sim) -> String {
    let mut cells: BTreeMap<(u8, CellId), Vec<usize>> = BTreeMap::new();
    for (_, n) in sim.live() {
        if n.role() == Role::SuperPeer {
            cells
                .entry((n.view().depth, n.view().cell))
                .or_default()
                .push(n.bound_peers().count());
        }
    }
    let mut out = String::new();
    for ((depth, cell), bound) in &cells {
        let children = sim
            .live()
            .find(|(_, n)| n.role() == Role::SuperPeer && n.view().cell == *cell)
            .map_or(0, |(_, n)| n.child_cells().count());
        out.push_str(&format!(
            "{}depth {depth} cell {:>6}: bound {bound:?}, {children} children\n",
            "  ".repeat(*depth as usize),
            cell.created / 1_000_000
        ));
    }
    out
}

/// For every child cell's coordinator, how its index compares with each parent
/// member's copy: (child cell, child records, parent member, parent's copy), for
/// debugging the anti-entropy.
pub fn index_copies(sim: &Sim) -> Vec<String> {
    use crate::proto::discovery::Origin;
    let mut out = Vec::new();
    for (i, n) in sim.live() {
        if !n.is_coordinator() || n.view().parent.is_none() {
            continue;
        }
        let d = n.index.digest();
        for pm in &n.view().parent_members {
            let Some((j, p)) = sim.live().find(|(_, p)| p.me().id == pm.id) else {
                continue;
            };
            let c = p.index.digest_of(Origin::Child(n.view().cell));
            if c != d {
                let mine: std::collections::BTreeSet<u128> =
                    n.index.iter().map(|(k, _)| *k).collect();
                let theirs: std::collections::BTreeSet<u128> = p
                    .index
                    .iter()
                    .filter(|(_, r)| r.origin == Origin::Child(n.view().cell))
                    .map(|(k, _)| *k)
                    .collect();
                let only_child: Vec<_> = mine
                    .difference(&theirs)
                    .take(3)
                    .map(|k| {
                        let r = n.index.iter().find(|(kk, _)| *kk == k).map(|(_, r)| *r);
                        let pr = p.index.iter().find(|(kk, _)| *kk == k).map(|(_, r)| *r);
                        format!(
                            "{:x}: child {:?} parent {:?}",
                            k % 0xffff,
                            r.map(|r| (r.version, r.origin)),
                            pr.map(|r| (r.version, r.origin))
                        )
                    })
                    .collect();
                let only_parent: Vec<_> = theirs
                    .difference(&mine)
                    .take(3)
                    .map(|k| format!("{:x}", k % 0xffff))
                    .collect();
                out.push(format!(
                    "child n{i} cell {} ({} records) vs parent member n{j} (knows child {}, down at child {}): {} records; only child {only_child:?}, only parent {only_parent:?}; link {:?} / {:?} / {:?}",
                    n.view().cell.created / 1_000_000,
                    d.len,
                    p.children.contains_key(&n.view().cell),
                    n.believes_down(pm.id),
                    c.len,
                    (n.links.epoch(pm.id), n.links.last_queued(pm.id), n.links.sent_upto(pm.id)),
                    p.links.received(n.me().id),
                    n.links.pending(pm.id),
                ));
            }
        }
    }
    out
}
