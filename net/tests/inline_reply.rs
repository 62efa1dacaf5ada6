//! Inline handlers' replies: the only message of a round on a single-thread reactor is
//! answered at once (one `send(2)` from the handler), the rest is queued and batched —
//! and a client sees every handler's replies complete and in order, on both backends and
//! both layouts.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use rtpm_net::{BackendChoice, Layout, Sap, SapConfig, Transport};

const LONG: Duration = Duration::from_secs(20);

fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    cond()
}

/// Each request `i` is answered with three datagrams `[i, 0]`, `[i, 1]`, `[i, 2]`.
fn replies_keep_their_order(backend: BackendChoice, layout: Layout) {
    if backend == BackendChoice::IoUring
        && let Err(e) = rtpm_net::probe_io_uring()
    {
        println!("SKIP: io_uring unavailable here: {e}");
        return;
    }
    let mut cfg = SapConfig::new(
        "replies",
        Transport::Udp {
            bind: "127.0.0.1:0".parse().unwrap(),
        },
    );
    cfg.backend = backend;
    cfg.layout = layout;
    let sap = Sap::builder(cfg)
        .inline(|m, out| {
            for k in 0..3u8 {
                out.reply(&m.source, &[m.bytes[0], k]).unwrap();
            }
        })
        .bind()
        .unwrap();
    let to = sap.local_addr().unwrap();
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    c.set_read_timeout(Some(LONG)).unwrap();
    let mut buf = [0u8; 16];
    // One request in flight (the lone-message path for the first reply of each)...
    for i in 0..100u8 {
        c.send_to(&[i], to).unwrap();
        for k in 0..3u8 {
            let (n, _) = c.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..n], &[i, k], "request {i}, reply {k}");
        }
    }
    // ... and bursts of requests (rounds of several messages: everything batched).
    for burst in 0..20u8 {
        for j in 0..5u8 {
            c.send_to(&[100 + burst * 5 + j], to).unwrap();
        }
        for j in 0..5u8 {
            for k in 0..3u8 {
                let (n, _) = c.recv_from(&mut buf).unwrap();
                assert_eq!(&buf[..n], &[100 + burst * 5 + j, k]);
            }
        }
    }
    assert!(
        wait_until(LONG, || sap.stats().sent == 600),
        "{:?}",
        sap.stats()
    );
    assert_eq!(sap.stats().send_errors, 0);
}

#[test]
fn replies_keep_their_order_on_io_uring_sharded() {
    replies_keep_their_order(BackendChoice::IoUring, Layout::Sharded);
}

#[test]
fn replies_keep_their_order_on_io_uring_shared() {
    replies_keep_their_order(BackendChoice::IoUring, Layout::Shared);
}

#[test]
fn replies_keep_their_order_on_epoll() {
    replies_keep_their_order(BackendChoice::Epoll, Layout::Sharded);
}
