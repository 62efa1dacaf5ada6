//! Authentication between processes: a node with the wrong overlay key cannot join; its
//! datagrams (multicast advertisements and beacons, and unicast solicitations to every
//! other node, its seeds) are dropped and counted as bad MACs by every other node.
//!
//! Needs root and iproute2 (skips with the reason otherwise); everything it makes is
//! deleted (see `rtpm_tests::netns`).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::net::SocketAddrV4;
use std::time::Duration;

use rtpm_tests::netns::{self, Lan};
use rtpm_tests::nodes::{NodeSpec, TempDir, ask, network, sigterm, wait_exit, wait_for};
use rtpm_tests::{bin, probe, skip_unless};

const KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
const WRONG: &str = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100";

#[test]
fn a_node_with_the_wrong_key_cannot_join_and_its_datagrams_are_counted() {
    skip_unless!(probe::root());
    skip_unless!(netns::available());
    let rtpm = bin::rtpm().unwrap();
    let mut lan = Lan::new(4).unwrap();
    let tmp = TempDir::new("netns-auth");
    let group: SocketAddrV4 = "239.77.0.3:7600".parse().unwrap();
    let mut socks = Vec::new();
    let mut pids = Vec::new();
    let mut ids = Vec::new();
    for i in 0..4 {
        let mut spec = NodeSpec::new(
            &format!("k{i}"),
            lan.addr(i),
            group,
            if i == 3 { WRONG } else { KEY },
        );
        if i == 3 {
            spec.seeds = (0..3).map(|j| format!("{}:7000", lan.addr(j))).collect();
        }
        let dir = spec.write(&tmp.0);
        let cfg = dir.to_str().unwrap().to_string();
        pids.push(
            lan.spawn(i, &rtpm, &["node", "--config", &cfg], &dir.join("log"))
                .unwrap(),
        );
        let sock = dir.join("ctl.sock");
        wait_for(Duration::from_secs(10), || network(&sock).is_some()).expect("node started");
        ids.push(
            ask(&sock, r#"{"cmd":"status"}"#).unwrap()["node"]["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
        socks.push(sock);
        if i == 2 {
            wait_for(Duration::from_secs(15), || {
                socks.iter().all(|s| {
                    network(s).is_some_and(|n| n["role"] == "super-peer" || n["role"] == "peer")
                })
            })
            .expect("the three good nodes join");
        }
    }
    let bad = &ids[3];
    // the stranger founds a tree of its own (nobody answers it), and nobody lets it in
    wait_for(Duration::from_secs(5), || {
        network(&socks[3]).is_some_and(|n| n["role"] == "super-peer")
    })
    .expect("the stranger gives up soliciting and founds its own root");
    let counted = wait_for(Duration::from_secs(5), || {
        socks[..3]
            .iter()
            .all(|s| network(s).is_some_and(|n| n["counters"]["bad_mac"].as_u64() > Some(0)))
    });
    let good_root = network(&socks[0]).unwrap()["root"].clone();
    for s in &socks[..3] {
        let n = network(s).unwrap();
        assert_eq!(n["root"], good_root, "the good nodes stay one tree");
        let text = n.to_string();
        assert!(
            !text.contains(bad.as_str()),
            "the stranger appears in {text}"
        );
        assert_eq!(n["counters"]["replayed"], 0);
    }
    let stranger = network(&socks[3]).unwrap();
    assert_ne!(
        stranger["root"], good_root,
        "the stranger joined: {stranger}"
    );
    assert_eq!(
        stranger["cell"]["super_peers"].as_array().unwrap().len(),
        1,
        "alone in its cell: {stranger}"
    );
    assert!(
        counted.is_some(),
        "every good node counts the stranger's datagrams as bad MACs: {:?}",
        socks[..3]
            .iter()
            .map(|s| network(s).map(|n| n["counters"].clone()))
            .collect::<Vec<_>>()
    );
    let drops: Vec<u64> = socks[..3]
        .iter()
        .map(|s| network(s).unwrap()["counters"]["bad_mac"].as_u64().unwrap())
        .collect();
    eprintln!("bad-MAC drops counted by the good nodes: {drops:?}");

    for p in &pids {
        sigterm(*p);
    }
    for p in &pids {
        let st = wait_exit(lan.child(*p).unwrap(), Duration::from_secs(10)).expect("exits");
        assert!(st.success(), "{st}");
    }
}
