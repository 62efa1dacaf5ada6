//! A lossy link: with 10 % loss and 5 ms delay (`tc netem`, both directions) on one
//! host's link, a reliable class still delivers every message exactly once and in order
//! between two `rtpm node` processes in separate network namespaces.
//!
//! Needs root and iproute2 (skips with the reason otherwise); everything it makes is
//! deleted (see `rtpm_tests::netns`). On a kernel built without netem (some VM kernels,
//! this project's reference VM among them) the loss comes from nftables instead and no
//! delay is added; the test says so in its output.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::net::SocketAddrV4;
use std::time::Duration;

use rtpm_tests::netns::{self, Lan};
use rtpm_tests::nodes::{NodeSpec, TempDir, ask, network, sigterm, wait_exit, wait_for};
use rtpm_tests::{bin, probe, skip_unless};

const KEY: &str = "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210";
const COUNT: u64 = 3000;
const RUN: u64 = 7;

#[test]
fn a_reliable_class_delivers_every_message_once_in_order_over_a_lossy_link() {
    skip_unless!(probe::root());
    skip_unless!(netns::available());
    skip_unless!(netns::impairment_available());
    let rtpm = bin::rtpm().unwrap();
    let mut lan = Lan::new(3).unwrap();
    let tmp = TempDir::new("netns-loss");
    let group: SocketAddrV4 = "239.77.0.2:7600".parse().unwrap();
    let mut socks = Vec::new();
    let mut pids = Vec::new();
    let mut ids = Vec::new();
    for i in 0..3 {
        let dir = NodeSpec::new(&format!("l{i}"), lan.addr(i), group, KEY).write(&tmp.0);
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
    }
    wait_for(Duration::from_secs(15), || {
        socks.iter().all(|s| {
            network(s).is_some_and(|n| matches!(n["role"].as_str(), Some("peer" | "super-peer")))
        })
    })
    .expect("the three nodes join");

    // l1's link loses 10 % and delays 5 ms, each way
    let how = lan.impair(1, 10, 5).unwrap();
    if how == netns::Impairment::NftLossOnly {
        eprintln!(
            "this kernel has no sch_netem (CONFIG_NET_SCH_NETEM): 10 % loss each way by nftables, without the 5 ms delay"
        );
    }
    let flood = format!(
        r#"{{"cmd":"flood","to":"{}","class":1,"count":{COUNT},"size":64,"run":{RUN},"timeout_ms":60000}}"#,
        ids[1]
    );
    ask(&socks[0], &flood).unwrap();
    let stream = || {
        let v = ask(&socks[1], r#"{"cmd":"streams"}"#).ok()?;
        v["streams"]
            .as_array()?
            .iter()
            .find(|s| s["run"] == RUN && s["class"] == 1 && s["from"] == ids[0].as_str())
            .cloned()
    };
    let done = wait_for(Duration::from_secs(60), || {
        stream().is_some_and(|s| s["received"].as_u64() >= Some(COUNT))
    });
    let s = stream().expect("the stream arrived");
    assert!(done.is_some(), "not all messages arrived in 60 s: {s}");
    // settle: a late duplicate would show up as `behind`
    std::thread::sleep(Duration::from_millis(300));
    let s = stream().unwrap();
    assert_eq!(s["received"], COUNT, "exactly once: {s}");
    assert_eq!(s["in_order"], COUNT, "in order: {s}");
    assert_eq!(s["behind"], 0, "no duplicate delivered: {s}");
    assert_eq!(s["skipped"], 0, "nothing skipped: {s}");
    let sender = network(&socks[0]).unwrap();
    let retransmits = sender["counters"]["retransmits"].as_u64().unwrap();
    assert!(retransmits > 0, "the link lost nothing? {sender}");
    eprintln!(
        "{COUNT} reliable messages over 10 % loss ({how:?}): all delivered once, in order, in {} ms; {retransmits} retransmissions",
        done.unwrap().as_millis()
    );

    for p in &pids {
        sigterm(*p);
    }
    for p in &pids {
        let st = wait_exit(lan.child(*p).unwrap(), Duration::from_secs(10)).expect("exits");
        assert!(st.success(), "{st}");
    }
}
