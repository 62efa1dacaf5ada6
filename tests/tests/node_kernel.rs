//! The overlay plugged into the kernel: two runtimes in one process on loopback insert an
//! overlay at run time, exchange port-addressed messages, find each other's services,
//! answer the control socket (status and a probe ping), and remove the overlay with an
//! announced leave. Needs SCHED_FIFO and two CPUs; skips with the reason otherwise.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod exec_common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use exec_common::{exclusive, fifo_allowed, two_cpus};
use rtpm::config::overlay_config;
use rtpm::network::{Inbox, OverlaySpec, PeerRole, Route, sap_service};
use rtpm::rt::config::Partition;
use rtpm::{NodeId, Permissions, QosClass, Runtime, ServiceId};
use rtpm_tests::skip_unless;

fn runtime(name: &str, socket: Option<&std::path::Path>, partition: &Partition) -> Runtime {
    let mut b = Runtime::builder()
        .node_name(name)
        .partition(partition.clone())
        .lock_memory(false)
        .services(&[])
        .user("admin", "admin passphrase", &[("*", Permissions::ALL)]);
    if let Some(s) = socket {
        b = b.control_socket(s);
    }
    b.build().unwrap()
}

fn spec(tag: u8) -> OverlaySpec {
    let pid = std::process::id();
    let text = format!(
        r#"
name = "kern{tag}"
multicast = "239.{a}.{b}.{tag}:{port}"
key = "unused"
heartbeat = "10ms"
[commands]
batch = 8
[[sap]]
address = "127.0.0.1:0"
class = 0
[[sap]]
address = "127.0.0.1:0"
class = 1
reliability = "reliable"
"#,
        a = 100 + pid % 100,
        b = (pid / 100) % 250,
        port = 30000 + (pid % 20000) + tag as u32
    );
    OverlaySpec::new(overlay_config(&text).unwrap(), None)
        .key(rtpm::overlay::proto::security::OverlayKey([5; 32]))
}

#[derive(Default)]
struct Collect(Mutex<Vec<(NodeId, QosClass, Vec<u8>)>>);

impl Inbox for Collect {
    fn deliver(&self, from: NodeId, class: QosClass, bytes: &[u8]) {
        self.0.lock().unwrap().push((from, class, bytes.to_vec()));
    }
}

fn wait(what: &str, mut f: impl FnMut() -> bool) {
    let until = std::time::Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(std::time::Instant::now() < until, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn ask(socket: &std::path::Path, req: &str) -> serde_json::Value {
    let mut s = UnixStream::connect(socket).unwrap();
    writeln!(s, "{req}").unwrap();
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).unwrap();
    serde_json::from_str(&line).unwrap()
}

#[test]
fn an_overlay_inserted_at_run_time_carries_port_messages_discovery_and_leaves() {
    let _g = exclusive();
    skip_unless!(fifo_allowed());
    skip_unless!(two_cpus());
    let sock = std::env::temp_dir().join(format!("rtpm-node-kernel-{}.sock", std::process::id()));
    // computed before the first runtime confines this process's threads off the RT core
    let partition = Partition::embedded_default().unwrap();
    let a = runtime("kernel-a", Some(&sock), &partition);
    let b = runtime("kernel-b", None, &partition);
    let (sa, sb) = (
        a.login("admin", "admin passphrase").unwrap(),
        b.login("admin", "admin passphrase").unwrap(),
    );
    let id = a.insert_network(&sa, spec(1)).unwrap();
    b.insert_network(&sb, spec(1)).unwrap();
    let (na, nb) = (
        a.get_network(&sa, "kern1").unwrap(),
        b.get_network(&sb, "kern1").unwrap(),
    );
    assert_eq!(na.id(), id);
    wait("both join one cell", || {
        matches!(na.membership().role(), PeerRole::Peer | PeerRole::SuperPeer)
            && matches!(nb.membership().role(), PeerRole::Peer | PeerRole::SuperPeer)
            && na.membership().cell().map(|c| c.cell) == nb.membership().cell().map(|c| c.cell)
    });
    let (ida, idb) = (a.node().1, b.node().1);
    assert_eq!(na.membership().me(), ida);

    // ports: what b attaches to port P receives what a sends to P, without the prefix
    let port = ServiceId::from_name("test.port");
    let inbox = Arc::new(Collect::default());
    nb.messaging().attach(port, inbox.clone()).unwrap();
    for i in 0..100u32 {
        na.messaging()
            .send(idb, QosClass::RELIABLE, port, &i.to_be_bytes())
            .unwrap();
    }
    na.messaging()
        .send(
            idb,
            QosClass::RELIABLE,
            ServiceId::from_name("nobody"),
            b"x",
        )
        .unwrap();
    wait("100 messages on the port", || {
        inbox.0.lock().unwrap().len() >= 100
    });
    let got = inbox.0.lock().unwrap().clone();
    for (i, (from, class, bytes)) in got.iter().enumerate() {
        assert_eq!((*from, *class), (ida, QosClass::RELIABLE));
        assert_eq!(bytes.as_slice(), (i as u32).to_be_bytes());
    }
    wait("the unattached port is counted", || {
        nb.report().unwrap().counters.unknown_port >= 1
    });

    // discovery: b publishes a service, a finds it; SAP keys are published by every node
    let svc = ServiceId::from_name("test.service");
    nb.discovery().publish(svc, QosClass::RELIABLE).unwrap();
    assert_eq!(nb.discovery().cached(svc), Some(idb));
    wait(
        "a finds b's service",
        || matches!(na.discovery().lookup(svc, rtpm::Nanos::ms(500)), Ok(Some(n)) if n == idb),
    );
    assert_eq!(na.discovery().cached(svc), Some(idb));
    assert_eq!(
        na.discovery()
            .lookup(sap_service(idb, 1), rtpm::Nanos::secs(1))
            .unwrap(),
        Some(idb)
    );
    assert!(matches!(na.routing().route(idb), Route::Direct(_)));
    let (found_net, found) = a
        .find_uuid(&sa, svc, rtpm::Nanos::ms(500))
        .unwrap()
        .unwrap();
    assert_eq!((found_net.id(), found), (id, idb));
    nb.discovery().unpublish(svc).unwrap();
    wait("the withdrawal reaches a", || {
        matches!(na.discovery().lookup(svc, rtpm::Nanos::ms(500)), Ok(None))
    });
    assert_eq!(na.security().counters().bad_mac, 0);

    // the control socket: status and a probe ping over the overlay
    let st = ask(&sock, r#"{"cmd":"status"}"#);
    assert_eq!(st["ok"], true, "{st}");
    assert_eq!(st["node"]["name"], "kernel-a");
    let net = &st["networks"][0];
    assert_eq!(net["name"], "kern1");
    assert_eq!(net["saps"].as_array().unwrap().len(), 3, "{net}");
    assert!(!net["cell"]["super_peers"].as_array().unwrap().is_empty());
    assert!(
        st["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == "kern1/heartbeat"),
        "{st}"
    );
    let ping = ask(
        &sock,
        &format!(r#"{{"cmd":"ping","to":"{idb}","class":1,"count":50,"size":64}}"#),
    );
    assert_eq!(ping["ok"], true, "{ping}");
    assert_eq!(ping["ping"]["completed"], 50, "{ping}");
    assert!(ping["ping"]["rtt_ns"]["p50_ns"].as_u64().unwrap() > 0);
    // paced: one ping every 5 ms, so 10 take at least 45 ms
    let paced = ask(
        &sock,
        &format!(
            r#"{{"cmd":"ping","to":"{idb}","class":1,"count":10,"size":64,"interval_us":5000}}"#
        ),
    );
    assert_eq!(paced["ping"]["completed"], 10, "{paced}");
    assert!(
        paced["ping"]["elapsed_ns"].as_u64().unwrap() >= 45_000_000,
        "{paced}"
    );
    let bad = ask(&sock, r#"{"cmd":"fly"}"#);
    assert_eq!(bad["ok"], false);

    // removal at run time: b leaves, announced; a drops it from its cell at once
    b.remove_network(&sb, nb.id()).unwrap();
    assert_eq!(nb.membership().role(), PeerRole::Left);
    wait("a sees b leave", || {
        na.membership()
            .cell()
            .is_some_and(|c| !c.super_peers.contains(&idb) && !c.members.contains(&idb))
    });
    assert!(b.get_network(&sb, "kern1").is_err());
    assert!(
        nb.messaging()
            .send(ida, QosClass::BEST_EFFORT, port, b"late")
            .is_err()
    );
    drop(a);
    assert!(!sock.exists(), "the control socket is removed at stop");
}
