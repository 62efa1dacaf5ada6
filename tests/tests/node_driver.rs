//! The overlay driver on real sockets and a real executor, in one process on loopback:
//! two nodes join by multicast, a reliable class delivers every message once and in
//! order, SAPs are discoverable, an inadmissible task set binds nothing, and a leave is
//! announced. Needs SCHED_FIFO and two CPUs (one RT core); skips with the reason otherwise.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod exec_common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use exec_common::{exclusive, fifo_allowed, two_cpus};
use rtpm_overlay::driver::{Answer, Driver, DriverOptions, OverlayConfig, Prefixed, Sink, sap_key};
use rtpm_overlay::proto::{PeerId, Role};
use rtpm_rt::config::Partition;
use rtpm_rt::exec::{ExecConfig, Executor};
use rtpm_rt::time::Nanos;
use rtpm_tests::skip_unless;

/// A multicast group and port unique to this process and `tag`.
fn group(tag: u8) -> String {
    let pid = std::process::id();
    format!(
        "239.{}.{}.{}:{}",
        100 + (pid % 100),
        (pid / 100) % 250,
        tag,
        20000 + (pid % 20000) as u16 + tag as u16
    )
}

fn config(name: &str, tag: u8, extra: &str) -> OverlayConfig {
    toml::from_str(&format!(
        r#"
name = "{name}"
multicast = "{g}"
key = "unused"
heartbeat = "10ms"
{extra}
[commands]
batch = 8
[[sap]]
address = "127.0.0.1:0"
class = 0
min_interarrival = "1ms"
batch = 16
[[sap]]
address = "127.0.0.1:0"
class = 1
reliability = "reliable"
min_interarrival = "1ms"
batch = 16
"#,
        g = group(tag)
    ))
    .unwrap()
}

#[derive(Default)]
struct Inbox {
    got: Mutex<Vec<(PeerId, u8, Vec<u8>)>>,
    count: AtomicU64,
}

impl Sink for Inbox {
    fn message(&self, from: PeerId, class: u8, bytes: &[u8]) {
        // tests only: a lock here is fine, the test checks behaviour, not latency
        self.got.lock().unwrap().push((from, class, bytes.to_vec()));
        self.count.fetch_add(1, Ordering::SeqCst);
    }
}

fn executor() -> Executor {
    let mut c = ExecConfig::new(Partition::embedded_default().unwrap());
    c.lock_memory = false;
    Executor::start(c).unwrap()
}

fn start(exec: &mut Executor, cfg: OverlayConfig, id: u128, sink: Arc<Inbox>) -> Driver {
    let mut o = DriverOptions::new(cfg, PeerId(id));
    o.key = Some(rtpm_overlay::proto::security::OverlayKey([9; 32]));
    Driver::start(o, &mut Prefixed::new(exec, format!("{id:x}")), sink).unwrap()
}

fn wait(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let until = std::time::Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(std::time::Instant::now() < until, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn two_nodes_join_deliver_in_order_find_each_other_and_leave() {
    let _g = exclusive();
    skip_unless!(fifo_allowed());
    skip_unless!(two_cpus());
    let mut exec = executor();
    let (ia, ib) = (Arc::new(Inbox::default()), Arc::new(Inbox::default()));
    let a = start(&mut exec, config("pair", 1, ""), 0xa, ia.clone());
    wait("a founds a root", 5, || a.role() == Role::SuperPeer);
    let b = start(&mut exec, config("pair", 1, ""), 0xb, ib.clone());
    wait("b joins a's cell", 5, || {
        matches!(b.role(), Role::Peer | Role::SuperPeer) && b.place().cell == a.place().cell
    });
    let (ma, mb) = (a.me(), b.me());
    assert_ne!(ma.addr, mb.addr);

    // reliable class: every message once, in order — more than a stream's send queue
    // holds, sent as fast as the command queue takes them (back-pressure, not loss)
    const N: u64 = rtpm_overlay::proto::messaging::QUEUE as u64 + 2000;
    for i in 0..N {
        loop {
            match a.send(mb.id, 1, &[&i.to_be_bytes(), b"payload"]) {
                Ok(()) => break,
                Err(rtpm_overlay::Error::Full { .. }) => {
                    std::thread::sleep(Duration::from_micros(200))
                }
                Err(e) => panic!("{e}"),
            }
        }
    }
    wait("all reliable messages", 20, || {
        ib.count.load(Ordering::SeqCst) >= N
    });
    std::thread::sleep(Duration::from_millis(50));
    let got = ib.got.lock().unwrap().clone();
    assert_eq!(got.len() as u64, N, "duplicates delivered");
    for (i, (from, class, bytes)) in got.iter().enumerate() {
        assert_eq!((*from, *class), (ma.id, 1));
        assert_eq!(
            &bytes[..8],
            &(i as u64).to_be_bytes(),
            "out of order at {i}"
        );
        assert_eq!(&bytes[8..], b"payload");
    }

    // a message travels back on class 0; best-effort promises no delivery (a datagram
    // may meet a full queue right after the flood), so it is sent again until one lands
    let mut tries = 0;
    wait("best-effort message", 5, || {
        if ia.count.load(Ordering::SeqCst) >= 1 {
            return true;
        }
        if tries % 50 == 0 {
            b.send(ma.id, 0, &[b"hello"]).unwrap();
        }
        tries += 1;
        false
    });
    assert_eq!(ia.got.lock().unwrap()[0].2, b"hello");

    // discovery: each node published its SAPs
    match b.lookup(sap_key(ma.id, 1), Nanos::secs(2)).unwrap() {
        Answer::Found(m, class) => assert_eq!((m.id, m.addr, class), (ma.id, ma.addr, 1)),
        other => panic!("{other:?}"),
    }
    b.publish(0x5eed, 0).unwrap();
    wait(
        "a finds b's key",
        5,
        || matches!(a.lookup(0x5eed, Nanos::ms(500)), Ok(Answer::Found(m, 0)) if m.id == mb.id),
    );
    b.unpublish(0x5eed).unwrap();
    wait("the key is withdrawn", 5, || {
        matches!(a.lookup(0x5eed, Nanos::ms(500)), Ok(Answer::NotFound))
    });

    let s = a.status();
    assert_eq!(s.saps.len(), 3, "two classes and the group");
    assert!(s.place.security.accepted > 0);
    assert_eq!(s.place.security.forged, 0);
    assert!(s.tasks.len() >= 8, "{:?}", s.tasks);

    // an announced leave: b unbinds (or tells its cell); a sees it at once, not by timeout
    b.leave(Nanos::ms(500)).unwrap();
    assert!(b.send(ma.id, 0, &[b"x"]).is_err());
    wait("a notices b's leave", 2, || {
        let p = a.place();
        !p.bound.contains(&mb.id) && !p.super_peers.iter().any(|m| m.id == mb.id)
    });
    a.leave(Nanos::ms(500)).unwrap();
    for (id, _) in a.tasks().iter().chain(b.tasks()) {
        exec.remove(*id).unwrap();
    }
    exec.stop().unwrap();
}

#[test]
fn an_inadmissible_task_set_names_the_task_and_binds_nothing() {
    let _g = exclusive();
    skip_unless!(fifo_allowed());
    skip_unless!(two_cpus());
    let mut exec = executor();
    let port = {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap().port()
    };
    // 200 datagrams of 5 us every 1.1 ms: 0.9 of a core for one SAP, on top of the rest
    let text = format!(
        r#"
name = "greedy"
multicast = "{g}"
key = "unused"
[[sap]]
address = "127.0.0.1:{port}"
class = 0
[[sap]]
address = "127.0.0.1:{p1}"
class = 1
batch = 200
min_interarrival = "1100us"
"#,
        g = group(2),
        p1 = port + 1
    );
    let cfg: OverlayConfig = toml::from_str(&text).unwrap();
    let mut o = DriverOptions::new(cfg, PeerId(3));
    o.key = Some(rtpm_overlay::proto::security::OverlayKey([9; 32]));
    let before = exec.task_ids().len();
    let e = Driver::start(o, &mut exec, Arc::new(Inbox::default()))
        .unwrap_err()
        .to_string();
    // the class-1 budget (1 ms every 1.1 ms) is too much for some task of the overlay:
    // the one that failed is named, with admission's reason
    assert!(e.contains("overlay `greedy`: task `greedy/"), "{e}");
    assert!(e.contains("R=") && e.contains("> D="), "{e}");
    assert!(e.contains("was not admitted"), "{e}");
    assert_eq!(exec.task_ids().len(), before, "admitted tasks were removed");
    std::net::UdpSocket::bind(("127.0.0.1", port)).expect("the control address was bound");
    std::net::UdpSocket::bind(("127.0.0.1", port + 1)).expect("the class-1 address was bound");
    exec.stop().unwrap();
}

#[test]
fn a_send_from_an_admitted_job_leaves_in_that_job() {
    let _g = exclusive();
    skip_unless!(fifo_allowed());
    skip_unless!(two_cpus());
    let mut exec = executor();
    let (ia, ib) = (Arc::new(Inbox::default()), Arc::new(Inbox::default()));
    let a = Arc::new(start(&mut exec, config("inline", 3, ""), 0xa, ia.clone()));
    wait("a founds a root", 5, || a.role() == Role::SuperPeer);
    let b = start(&mut exec, config("inline", 3, ""), 0xb, ib.clone());
    wait("b joins a's cell", 5, || {
        matches!(b.role(), Role::Peer | Role::SuperPeer) && b.place().cell == a.place().cell
    });
    let to = b.me().id;
    let commands = a
        .tasks()
        .iter()
        .find(|(_, n)| n.ends_with("/commands"))
        .map(|(id, _)| *id)
        .expect("a's command task");

    // outside a job (this thread) nothing is an RT job
    assert!(!rtpm_rt::exec::in_rt_job());

    // a sporadic task of the application on the same executor sends from its jobs
    const N: u64 = 200;
    let inside = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let (d, ins, re) = (a.clone(), inside.clone(), refused.clone());
    let (app, act) = exec
        .spawn_sporadic(
            rtpm_rt::exec::TaskSpec::sporadic("app-sender", Nanos::ms(2), Nanos::us(300)),
            rtpm_rt::exec::TaskOptions::default(),
            move |_job, i: u64| {
                if rtpm_rt::exec::in_rt_job() {
                    ins.fetch_add(1, Ordering::SeqCst);
                }
                if d.send(to, 1, &[&i.to_be_bytes()]).is_err() {
                    re.fetch_add(1, Ordering::SeqCst);
                }
            },
        )
        .unwrap();
    let before = exec.stats(commands).unwrap().released;
    for i in 0..N {
        act.activate(i).unwrap();
        std::thread::sleep(Duration::from_millis(4));
    }
    wait("every message from the job", 10, || {
        ib.count.load(Ordering::SeqCst) >= N
    });
    let after = exec.stats(commands).unwrap().released;
    assert_eq!(inside.load(Ordering::SeqCst), N, "in_rt_job() in every job");
    assert_eq!(refused.load(Ordering::SeqCst), 0);
    let got = ib.got.lock().unwrap().clone();
    for (i, (_, class, bytes)) in got.iter().enumerate() {
        assert_eq!((*class, &bytes[..]), (1, &(i as u64).to_be_bytes()[..]));
    }
    // the job carried its sends out itself (or left them to the overlay job holding the
    // node at that instant): the command task was never released for them
    assert_eq!(
        after - before,
        0,
        "the command task ran {} jobs for {N} sends from a job",
        after - before
    );

    // a plain thread's sends go through the command task, as before
    let before = exec.stats(commands).unwrap().released;
    for i in 0..20u64 {
        a.send(to, 1, &[&(N + i).to_be_bytes()]).unwrap();
        std::thread::sleep(Duration::from_millis(4));
    }
    wait("the thread's messages", 10, || {
        ib.count.load(Ordering::SeqCst) >= N + 20
    });
    assert!(exec.stats(commands).unwrap().released - before >= 10);

    exec.remove(app).unwrap();
    b.leave(Nanos::ms(500)).unwrap();
    a.leave(Nanos::ms(500)).unwrap();
    for (id, _) in a.tasks().iter().chain(b.tasks()) {
        exec.remove(*id).unwrap();
    }
    exec.stop().unwrap();
}
