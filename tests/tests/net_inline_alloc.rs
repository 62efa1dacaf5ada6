//! Zero allocations per message on the inline request/response path, after warm-up, on
//! both backends: receive → inline handler → reply, for UDP datagrams and TCP frames, one
//! request in flight (the path where the reply leaves at once from the handler).
//!
//! A counting global allocator counts every allocation, reallocation and deallocation in the
//! process while a window of
//! round trips runs; the client uses std sockets with fixed buffers (no allocation per
//! call). One `#[test]` runs every case in turn, so no other test allocates meanwhile.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::io::{Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rtpm_net::{BackendChoice, Sap, SapConfig, Transport};
use rtpm_tests::alloc::Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

fn count() {
    ALLOCS.fetch_add(1, Ordering::Relaxed);
}

#[global_allocator]
static GLOBAL: Counting = Counting::new(count);

const WARM: u32 = 2_000;
const WINDOW: u32 = 20_000;
const TIMEOUT: Duration = Duration::from_secs(20);

fn echo(name: &str, transport: Transport, b: BackendChoice) -> Sap {
    let mut cfg = SapConfig::new(name, transport);
    cfg.backend = b;
    Sap::builder(cfg)
        .inline(|m, out| {
            out.reply(&m.source, m.bytes).unwrap();
        })
        .bind()
        .unwrap()
}

/// Allocations over `WINDOW` UDP round trips.
fn udp_case(b: BackendChoice) -> u64 {
    let sap = echo(
        "alloc-inline-udp",
        Transport::Udp {
            bind: "127.0.0.1:0".parse().unwrap(),
        },
        b,
    );
    let c = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    c.connect(sap.local_addr().unwrap()).unwrap();
    c.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut buf = [0u8; 64];
    let mut round = |i: u32| {
        c.send(&i.to_le_bytes()).unwrap();
        let n = c.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], &i.to_le_bytes(), "{b:?}: UDP reply {i}");
    };
    (0..WARM).for_each(&mut round);
    let before = ALLOCS.load(Ordering::SeqCst);
    (WARM..WARM + WINDOW).for_each(&mut round);
    let during = ALLOCS.load(Ordering::SeqCst) - before;
    assert_eq!(sap.stats().send_errors, 0, "{:?}", sap.stats());
    during
}

/// Allocations over `WINDOW` TCP round trips (length-prefixed frames).
fn tcp_case(b: BackendChoice) -> u64 {
    let sap = echo(
        "alloc-inline-tcp",
        Transport::Tcp {
            bind: Some("127.0.0.1:0".parse().unwrap()),
        },
        b,
    );
    let mut s = std::net::TcpStream::connect(sap.local_addr().unwrap()).unwrap();
    s.set_nodelay(true).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut reply = [0u8; 8];
    let mut round = |i: u32| {
        let mut req = [0u8; 8];
        req[..4].copy_from_slice(&4u32.to_be_bytes());
        req[4..].copy_from_slice(&i.to_le_bytes());
        s.write_all(&req).unwrap();
        s.read_exact(&mut reply).unwrap();
        assert_eq!(reply, req, "{b:?}: TCP reply {i}");
    };
    (0..WARM).for_each(&mut round);
    let before = ALLOCS.load(Ordering::SeqCst);
    (WARM..WARM + WINDOW).for_each(&mut round);
    let during = ALLOCS.load(Ordering::SeqCst) - before;
    assert_eq!(sap.stats().send_errors, 0, "{:?}", sap.stats());
    during
}

#[test]
fn inline_request_response_allocates_nothing_per_message() {
    let mut ran = 0;
    for b in [BackendChoice::IoUring, BackendChoice::Epoll] {
        if b == BackendChoice::IoUring
            && let Err(e) = rtpm_net::probe_io_uring()
        {
            println!("SKIP io_uring: unavailable here: {e}");
            continue;
        }
        let udp = udp_case(b);
        let tcp = tcp_case(b);
        eprintln!(
            "{b:?}: {udp} allocations over {WINDOW} UDP round trips, {tcp} over {WINDOW} TCP round trips"
        );
        assert_eq!(udp, 0, "{b:?}: UDP receive -> inline reply allocated");
        assert_eq!(tcp, 0, "{b:?}: TCP receive -> inline reply allocated");
        ran += 1;
    }
    assert!(ran > 0, "epoll always runs");
}
