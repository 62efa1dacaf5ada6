//! Zero allocations per message on receive → hand-off → return, after warm-up, on both
//! backends, for UDP datagrams, TCP frames, and UDP GRO bursts split into handles — the
//! latter also with an rtpm-net GSO sender (send → segment → receive → split → return).
//!
//! A counting global allocator counts every allocation, reallocation and deallocation in
//! the process while a window of messages flows: the reactor threads receive and
//! dispatch, a plain consumer thread pops
//! and gives the handles back, and a sender thread writes with std sockets (which do not
//! allocate per call). Everything these threads need is made before the window opens.
//! One `#[test]` runs the cases in turn so no other test allocates meanwhile.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

#[path = "net/common.rs"]
mod common;

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::*;
use rtpm_net::{BackendChoice, DropPolicy, Sap};
use rtpm_tests::alloc::Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

fn count() {
    ALLOCS.fetch_add(1, Ordering::Relaxed);
}

#[global_allocator]
static GLOBAL: Counting = Counting::new(count);

const WARM: u64 = 2_000;
const WINDOW: u64 = 20_000;

/// Runs a consumer thread that pops and releases until `stop`; returns its count.
fn consume(sap: &Sap) -> (Arc<AtomicU64>, Arc<AtomicBool>, std::thread::JoinHandle<()>) {
    let consumer = sap.consumer(0).unwrap();
    let got = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let (g, s) = (got.clone(), stop.clone());
    let t = std::thread::spawn(move || {
        while !s.load(Ordering::Relaxed) {
            if let Some(d) = consumer.wait(Duration::from_millis(20)) {
                let _ = d.bytes()[0];
                g.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    (got, stop, t)
}

fn wait_for(count: &AtomicU64, n: u64) -> bool {
    let end = std::time::Instant::now() + Duration::from_secs(20);
    while std::time::Instant::now() < end {
        if count.load(Ordering::Relaxed) >= n {
            return true;
        }
        std::thread::yield_now();
    }
    false
}

fn udp_case(b: BackendChoice) -> u64 {
    let sap = Sap::bind(udp("alloc-udp", b)).unwrap();
    let (got, stop, t) = consume(&sap);
    let c = client();
    let to = addr(&sap);
    let msg = [7u8; 64];
    let send = |n: u64, got: &AtomicU64| {
        let base = got.load(Ordering::Relaxed);
        for i in 0..n {
            c.send_to(&msg, to).unwrap();
            // Stay close to the consumer so the kernel drops nothing.
            while got.load(Ordering::Relaxed) + 64 < base + i {
                std::thread::yield_now();
            }
        }
        assert!(wait_for(got, base + n), "messages were lost");
    };
    send(WARM, &got);
    let before = ALLOCS.load(Ordering::SeqCst);
    send(WINDOW, &got);
    let during = ALLOCS.load(Ordering::SeqCst) - before;
    stop.store(true, Ordering::Relaxed);
    t.join().unwrap();
    during
}

/// A GRO receiver fed 64-datagram GSO bursts, by a std socket or by an rtpm-net SAP.
fn gro_case(b: BackendChoice, rtpm_sender: bool) -> u64 {
    let mut cfg = udp_gro("alloc-gro", b, 16);
    cfg.qos.recv_buffer = Some(4 << 20);
    let sap = Sap::bind(cfg).unwrap();
    let (got, stop, t) = consume(&sap);
    let to = addr(&sap);
    let c = client();
    let mut tcfg = udp("alloc-gso", b);
    tcfg.send_slots = 256;
    let tx = Sap::bind(tcfg).unwrap();
    let burst = [3u8; 64 * 64];
    let msgs: Vec<&[u8]> = burst.chunks(64).collect();
    let send = |n: u64, got: &AtomicU64| {
        let base = got.load(Ordering::Relaxed);
        let bursts = n.div_ceil(64);
        for i in 0..bursts {
            if rtpm_sender {
                let mut off = 0;
                while off < msgs.len() {
                    match tx.send_many(to, &msgs[off..]) {
                        Ok(k) => off += k,
                        Err(_) => std::thread::yield_now(),
                    }
                }
            } else {
                send_gso(&c, to, &burst, 64).unwrap();
            }
            while got.load(Ordering::Relaxed) + 512 < base + i * 64 {
                std::thread::yield_now();
            }
        }
        assert!(
            wait_for(got, base + bursts * 64),
            "{b:?}: datagrams were lost: {:?} {:?}",
            sap.stats(),
            tx.stats()
        );
    };
    send(WARM, &got);
    let before = ALLOCS.load(Ordering::SeqCst);
    send(WINDOW, &got);
    let during = ALLOCS.load(Ordering::SeqCst) - before;
    assert!(sap.stats().gro_receives > 0, "{:?}", sap.stats());
    if rtpm_sender {
        assert!(tx.stats().gso_sends > 0, "{:?}", tx.stats());
    }
    stop.store(true, Ordering::Relaxed);
    t.join().unwrap();
    during
}

fn tcp_case(b: BackendChoice) -> u64 {
    // Backpressure: a consumer slower than the reactor must hold the stream, not drop.
    let mut cfg = tcp("alloc-tcp", b);
    cfg.qos.drop_policy = DropPolicy::Backpressure;
    let sap = Sap::bind(cfg).unwrap();
    let (got, stop, t) = consume(&sap);
    let mut s = std::net::TcpStream::connect(addr(&sap)).unwrap();
    let burst: Vec<u8> = (0..100).flat_map(|_| frame(&[9u8; 60])).collect();
    let send = |n: u64, got: &AtomicU64, s: &mut std::net::TcpStream| {
        let base = got.load(Ordering::Relaxed);
        for _ in 0..n / 100 {
            s.write_all(&burst).unwrap();
        }
        assert!(
            wait_for(got, base + n),
            "{b:?}: frames were lost: got {} of {}, {:?} {:?}",
            got.load(Ordering::Relaxed),
            base + n,
            sap.stats(),
            sap.dest_stats(0)
        );
    };
    send(WARM, &got, &mut s);
    let before = ALLOCS.load(Ordering::SeqCst);
    send(WINDOW, &got, &mut s);
    let during = ALLOCS.load(Ordering::SeqCst) - before;
    stop.store(true, Ordering::Relaxed);
    t.join().unwrap();
    during
}

#[test]
fn receive_handoff_return_allocates_nothing_per_message() {
    let mut ran = 0;
    for b in [BackendChoice::IoUring, BackendChoice::Epoll] {
        if let Err(why) = backend_available(b) {
            eprintln!("SKIPPED {b:?}: {why}");
            continue;
        }
        let udp = udp_case(b);
        let tcp = tcp_case(b);
        let gro = gro_case(b, false);
        let gso = gro_case(b, true);
        eprintln!(
            "{b:?}: {udp} allocations over {WINDOW} datagrams, {tcp} over {WINDOW} frames, {gro} over {WINDOW} GRO-received datagrams, {gso} over {WINDOW} GSO-sent and GRO-received"
        );
        assert_eq!(udp, 0, "{b:?}: UDP receive -> hand-off -> return allocated");
        assert_eq!(tcp, 0, "{b:?}: TCP receive -> hand-off -> return allocated");
        assert_eq!(
            gro, 0,
            "{b:?}: GRO receive -> split -> hand-off -> return allocated"
        );
        assert_eq!(
            gso, 0,
            "{b:?}: GSO send -> GRO receive -> split -> return allocated"
        );
        ran += 1;
    }
    assert!(ran > 0, "epoll always runs");
}
