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

fn read_frame(s: &mut std::net::TcpStream) -> Vec<u8> {
    use std::io::Read;
    let mut len = [0u8; 4];
    s.read_exact(&mut len).unwrap();
    let mut f = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut f).unwrap();
    f
}

fn write_frame(s: &mut std::net::TcpStream, bytes: &[u8]) {
    use std::io::Write;
    s.write_all(&(bytes.len() as u32).to_be_bytes()).unwrap();
    s.write_all(bytes).unwrap();
}

/// The same on a TCP connection (the lone frame is written at once from the handler):
/// each request `[i]` is answered with three frames `[i, 0]`, `[i, 1]`, `[i, 2]`, one
/// request in flight and in bursts; then large replies to a client that does not read
/// fill the socket, so direct writes are cut short and their rest must still precede
/// every later frame.
fn frames_keep_their_order(backend: BackendChoice, layout: Layout) {
    if backend == BackendChoice::IoUring
        && let Err(e) = rtpm_net::probe_io_uring()
    {
        println!("SKIP: io_uring unavailable here: {e}");
        return;
    }
    const BIG: usize = 60_000;
    let mut cfg = SapConfig::new(
        "frames",
        Transport::Tcp {
            bind: Some("127.0.0.1:0".parse().unwrap()),
        },
    );
    cfg.backend = backend;
    cfg.layout = layout;
    cfg.buffer_size = 65536;
    cfg.buffers = 64;
    cfg.send_slots = 32;
    cfg.qos.send_buffer = Some(4096);
    let sap = Sap::builder(cfg)
        .inline(|m, out| {
            if m.bytes[0] >= 200 {
                // A large reply whose bytes say where they belong.
                let big: Vec<u8> = (0..BIG).map(|j| (j + m.bytes[0] as usize) as u8).collect();
                out.reply(&m.source, &big).unwrap();
                out.reply(&m.source, &[m.bytes[0], 9]).unwrap();
                return;
            }
            for k in 0..3u8 {
                out.reply(&m.source, &[m.bytes[0], k]).unwrap();
            }
        })
        .bind()
        .unwrap();
    let to = sap.local_addr().unwrap();
    let mut c = std::net::TcpStream::connect(to).unwrap();
    c.set_nodelay(true).unwrap();
    c.set_read_timeout(Some(LONG)).unwrap();
    for i in 0..100u8 {
        write_frame(&mut c, &[i]);
        for k in 0..3u8 {
            assert_eq!(read_frame(&mut c), [i, k], "request {i}, reply {k}");
        }
    }
    for burst in 0..20u8 {
        let reqs: Vec<u8> = (0..5u8).map(|j| 100 + burst * 5 + j).collect();
        // One write: the requests arrive together (one chunk, several frames).
        let mut all = Vec::new();
        for r in &reqs {
            all.extend_from_slice(&1u32.to_be_bytes());
            all.push(*r);
        }
        std::io::Write::write_all(&mut c, &all).unwrap();
        for r in &reqs {
            for k in 0..3u8 {
                assert_eq!(read_frame(&mut c), [*r, k]);
            }
        }
    }
    // Ten large replies the client does not read until the end.
    for i in 0..10u8 {
        write_frame(&mut c, &[200 + i]);
        std::thread::sleep(Duration::from_millis(5));
    }
    for i in 0..10u8 {
        let f = read_frame(&mut c);
        assert_eq!(f.len(), BIG, "large reply {i}");
        assert!(
            f.iter()
                .enumerate()
                .all(|(j, b)| *b == (j + 200 + i as usize) as u8),
            "large reply {i} is corrupt"
        );
        assert_eq!(read_frame(&mut c), [200 + i, 9], "after large reply {i}");
    }
    assert!(
        wait_until(LONG, || sap.stats().sent == 600 + 20),
        "{:?}",
        sap.stats()
    );
    assert_eq!(sap.stats().send_errors, 0);
}

#[test]
fn frames_keep_their_order_on_io_uring_sharded() {
    frames_keep_their_order(BackendChoice::IoUring, Layout::Sharded);
}

#[test]
fn frames_keep_their_order_on_io_uring_shared() {
    frames_keep_their_order(BackendChoice::IoUring, Layout::Shared);
}

#[test]
fn frames_keep_their_order_on_epoll() {
    frames_keep_their_order(BackendChoice::Epoll, Layout::Sharded);
}
