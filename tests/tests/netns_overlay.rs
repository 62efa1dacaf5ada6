//! Eight `rtpm node` processes, each in its own network namespace on one bridge, form
//! an overlay of two or more cells; a super-peer is killed with SIGKILL and every peer
//! rebinds and every SAP is discoverable again (the time from kill to repair is printed);
//! then every process exits cleanly on SIGTERM.
//!
//! Needs root and iproute2 (skips with the reason otherwise); the namespaces, veth pairs
//! and the bridge are made here and always deleted (see `rtpm_tests::netns`). The `rtpm`
//! binary is found next to this test and brought up to date (`rtpm_tests::bin`).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddrV4;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rtpm_tests::netns::{self, Lan};
use rtpm_tests::nodes::{NodeSpec, TempDir, ask, network, sigterm, wait_exit, wait_for};
use rtpm_tests::{bin, probe, skip_unless};
use serde_json::Value;

const PEERS: usize = 8;
const KEY: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

struct Node {
    dir: PathBuf,
    pid: u32,
    id: String,
}

impl Node {
    fn socket(&self) -> PathBuf {
        self.dir.join("ctl.sock")
    }
}

fn joined(n: &Value) -> bool {
    matches!(n["role"].as_str(), Some("peer" | "super-peer"))
}

/// Everyone joined, one tree; the cells and the roles, for the report.
fn formed(nodes: &[&Node]) -> Option<(BTreeSet<String>, usize)> {
    let mut cells = BTreeSet::new();
    let mut roots = BTreeSet::new();
    let mut sps = 0;
    for n in nodes {
        let net = network(&n.socket())?;
        if !joined(&net) {
            return None;
        }
        cells.insert(net["cell"]["id"].as_str()?.to_string());
        roots.insert(net["root"].as_str()?.to_string());
        if net["role"] == "super-peer" {
            sps += 1;
        }
    }
    (roots.len() == 1).then_some((cells, sps))
}

/// No survivor names `victim` as its super-peer, a cell mate or a parent member.
fn rebound(nodes: &[&Node], victim: &str) -> bool {
    nodes.iter().all(|n| {
        let Some(net) = network(&n.socket()) else {
            return false;
        };
        let names = |v: &Value| {
            v.as_array()
                .is_some_and(|a| a.iter().any(|x| x.as_str() == Some(victim)))
        };
        joined(&net)
            && net["super_peer"].as_str() != Some(victim)
            && !names(&net["cell"]["super_peers"])
            && !names(&net["parent_members"])
    })
}

/// Every survivor finds every survivor's two SAPs, at the right node.
fn discoverable(nodes: &[&Node]) -> bool {
    nodes.iter().all(|asker| {
        nodes.iter().all(|owner| {
            (0..2).all(|class| {
                let req = format!(
                    r#"{{"cmd":"lookup","node":"{}","class":{class},"timeout_ms":300}}"#,
                    owner.id
                );
                ask(&asker.socket(), &req)
                    .is_ok_and(|v| v["found"].as_str() == Some(owner.id.as_str()))
            })
        })
    })
}

#[test]
fn eight_peers_form_cells_repair_a_killed_super_peer_and_leave_on_sigterm() {
    skip_unless!(probe::root());
    skip_unless!(netns::available());
    let rtpm = bin::rtpm().unwrap();
    let mut lan = Lan::new(PEERS).unwrap();
    let tmp = TempDir::new("netns-overlay");
    let group: SocketAddrV4 = "239.77.0.1:7600".parse().unwrap();
    let mut nodes = Vec::new();
    for i in 0..PEERS {
        let mut spec = NodeSpec::new(&format!("n{i}"), lan.addr(i), group, KEY);
        // two super-peers a cell, two peers each: eight peers need more than one cell
        spec.cell_size = 2;
        spec.peers_per_super_peer = Some(2);
        let dir = spec.write(&tmp.0);
        let cfg = dir.to_str().unwrap().to_string();
        let pid = lan
            .spawn(i, &rtpm, &["node", "--config", &cfg], &dir.join("log"))
            .unwrap();
        let sock = dir.join("ctl.sock");
        wait_for(Duration::from_secs(10), || network(&sock).is_some())
            .unwrap_or_else(|| panic!("n{i} did not start: see {}", dir.join("log").display()));
        let id = ask(&sock, r#"{"cmd":"status"}"#).unwrap()["node"]["id"]
            .as_str()
            .unwrap()
            .to_string();
        if i == 0 {
            wait_for(Duration::from_secs(5), || {
                network(&sock).is_some_and(|n| n["role"] == "super-peer")
            })
            .expect("the first peer founds a root");
        }
        nodes.push(Node { dir, pid, id });
    }

    // formation: everyone joined one tree of two or more cells
    let all: Vec<&Node> = nodes.iter().collect();
    let formation = wait_for(Duration::from_secs(20), || {
        formed(&all).is_some_and(|(cells, _)| cells.len() >= 2)
    });
    let (cells, sps) = formed(&all).unwrap_or_default();
    assert!(
        formation.is_some(),
        "no tree of >= 2 cells within 20 s: {} cells, {sps} super-peers; logs in {}",
        cells.len(),
        tmp.0.display()
    );
    eprintln!(
        "formation: {PEERS} peers, {} cells, {sps} super-peers, {} ms after the last start",
        cells.len(),
        formation.unwrap().as_millis()
    );
    assert!(discoverable(&all), "every SAP is discoverable once formed");

    // crash: SIGKILL a super-peer that has peers bound to it
    let victim = nodes
        .iter()
        .position(|n| {
            network(&n.socket()).is_some_and(|net| {
                net["role"] == "super-peer"
                    && net["cell"]["members"]
                        .as_array()
                        .is_some_and(|m| !m.is_empty())
            })
        })
        .expect("a super-peer with bound peers");
    let victim_id = nodes[victim].id.clone();
    let killed_at = Instant::now();
    lan.child(nodes[victim].pid).unwrap().kill().unwrap();
    let survivors: Vec<&Node> = nodes
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != victim)
        .map(|(_, n)| n)
        .collect();
    let membership = wait_for(Duration::from_secs(10), || rebound(&survivors, &victim_id));
    assert!(
        membership.is_some(),
        "survivors still point at the killed super-peer after 10 s; logs in {}",
        tmp.0.display()
    );
    let repaired = wait_for(Duration::from_secs(15), || discoverable(&survivors));
    assert!(
        repaired.is_some(),
        "some SAP was not discoverable 15 s after the kill; logs in {}",
        tmp.0.display()
    );
    let repair = killed_at.elapsed();
    let mut roles = BTreeMap::new();
    for n in &survivors {
        if let Some(net) = network(&n.socket()) {
            *roles
                .entry(net["role"].as_str().unwrap_or("?").to_string())
                .or_insert(0) += 1;
        }
    }
    eprintln!(
        "kill-to-repair: {} ms (every peer rebound after {} ms; then every SAP found by every peer; \
         polling every 10 ms plus the lookups' own time); roles after: {roles:?}",
        repair.as_millis(),
        (membership.unwrap()).as_millis()
    );

    // clean leave: SIGTERM, exit 0, the control socket gone, the leave announced
    for n in &survivors {
        sigterm(n.pid);
    }
    for n in &survivors {
        let child = lan.child(n.pid).unwrap();
        let status = wait_exit(child, Duration::from_secs(10))
            .unwrap_or_else(|| panic!("{} did not exit within 10 s of SIGTERM", n.dir.display()));
        assert!(status.success(), "{}: {status}", n.dir.display());
        assert!(!n.socket().exists(), "control socket left behind");
        let log = std::fs::read_to_string(n.dir.join("log")).unwrap();
        assert!(log.contains("left the overlay"), "{}", n.dir.display());
    }
}
