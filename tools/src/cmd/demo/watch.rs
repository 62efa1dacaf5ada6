//! Watching the overlay from outside, through each peer's control socket (as `rtpm
//! status` does): who is joined and as what, how many cells, whether the survivors of a
//! kill have rebound, and whether every SAP (and the coordinator's service) can be
//! found again.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::cmd::status::ask;

/// A peer as the watcher knows it.
#[derive(Clone, Debug)]
pub struct Watched {
    /// Its control socket.
    pub socket: PathBuf,
    /// Its node id (from its first status answer).
    pub id: String,
}

/// The first network of a peer's status, when it answers.
pub fn network(socket: &Path) -> Option<Value> {
    ask(socket, &json!({"cmd": "status"}))
        .ok()
        .map(|v| v["networks"][0].clone())
}

/// The node id a peer reports.
pub fn node_id(socket: &Path) -> Option<String> {
    ask(socket, &json!({"cmd": "status"}))
        .ok()
        .and_then(|v| v["node"]["id"].as_str().map(str::to_string))
}

fn joined(n: &Value) -> bool {
    matches!(n["role"].as_str(), Some("peer" | "super-peer"))
}

/// The overlay as the peers see it at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Shape {
    /// Peers that answered.
    pub answering: usize,
    /// Of those, joined (peer or super-peer).
    pub joined: usize,
    /// Super-peers.
    pub super_peers: usize,
    /// Distinct cells.
    pub cells: usize,
    /// Distinct roots (1 when the tree is one).
    pub roots: usize,
    /// Deadline misses of every admitted task of the answering peers, so far.
    pub task_misses: u64,
}

impl Shape {
    /// Whether every one of `n` peers is joined in one tree of at least two cells.
    pub fn formed(&self, n: usize) -> bool {
        self.answering == n && self.joined == n && self.roots == 1 && self.cells >= 2
    }
}

impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{} joined, {} cells, {} super-peers{}",
            self.joined,
            self.answering,
            self.cells,
            self.super_peers,
            if self.roots > 1 {
                ", several roots"
            } else {
                ""
            }
        )
    }
}

/// Asks every peer of `peers` for its place.
pub fn shape(peers: &[&Watched]) -> Shape {
    let mut s = Shape::default();
    let mut cells = BTreeSet::new();
    let mut roots = BTreeSet::new();
    for p in peers {
        let Ok(status) = ask(&p.socket, &json!({"cmd": "status"})) else {
            continue;
        };
        s.answering += 1;
        s.task_misses += status["tasks"].as_array().map_or(0, |t| {
            t.iter()
                .filter_map(|t| t["deadline_misses"].as_u64())
                .sum::<u64>()
        });
        let net = &status["networks"][0];
        if !joined(net) {
            continue;
        }
        s.joined += 1;
        if net["role"] == "super-peer" {
            s.super_peers += 1;
        }
        if let Some(c) = net["cell"]["id"].as_str() {
            cells.insert(c.to_string());
        }
        if let Some(r) = net["root"].as_str() {
            roots.insert(r.to_string());
        }
    }
    s.cells = cells.len();
    s.roots = roots.len();
    s
}

/// Whether `p` is a super-peer now; and how many peers its cell lists as bound.
pub fn super_peer(p: &Watched) -> Option<usize> {
    let net = network(&p.socket)?;
    (net["role"] == "super-peer").then(|| net["cell"]["members"].as_array().map_or(0, Vec::len))
}

/// Every survivor is joined, in one tree, and none names `victim` as its super-peer, a
/// cell mate or a parent-cell member.
pub fn rebound(survivors: &[&Watched], victim: &str) -> bool {
    let mut roots = BTreeSet::new();
    let all = survivors.iter().all(|n| {
        let Some(net) = network(&n.socket) else {
            return false;
        };
        let names = |v: &Value| {
            v.as_array()
                .is_some_and(|a| a.iter().any(|x| x.as_str() == Some(victim)))
        };
        if let Some(r) = net["root"].as_str() {
            roots.insert(r.to_string());
        }
        joined(&net)
            && net["super_peer"].as_str() != Some(victim)
            && !names(&net["cell"]["super_peers"])
            && !names(&net["parent_members"])
    });
    all && roots.len() == 1
}

fn finds(asker: &Watched, request: Value, owner: &str) -> bool {
    ask(&asker.socket, &request).is_ok_and(|v| v["found"].as_str() == Some(owner))
}

/// Every survivor finds every survivor's two SAPs at the right node, and, when
/// `service` is given, that service at its owner.
pub fn discoverable(survivors: &[&Watched], service: Option<(&str, &str)>) -> bool {
    survivors.iter().all(|asker| {
        let saps = survivors.iter().all(|owner| {
            (0..2).all(|class| {
                finds(
                    asker,
                    json!({"cmd": "lookup", "node": owner.id, "class": class, "timeout_ms": 300}),
                    &owner.id,
                )
            })
        });
        saps && service.is_none_or(|(key, owner)| {
            finds(
                asker,
                json!({"cmd": "lookup", "key": key, "timeout_ms": 300}),
                owner,
            )
        })
    })
}
