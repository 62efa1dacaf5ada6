//! The network layer's behaviour, as one suite run on each backend (io_uring and epoll,
//! the latter forced by config). io_uring cases skip with the probe's reason where the
//! kernel does not permit it. Traffic stays on loopback.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

#[path = "net/common.rs"]
mod common;

use std::collections::HashSet;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::*;
use rtpm_net::{BackendChoice, DropPolicy, Layout, Sap, Source, Transport};
use rtpm_tests::skip_unless;

const LONG: Duration = Duration::from_secs(20);

fn udp_echo_inline(b: BackendChoice, layout: Layout) {
    skip_unless!(backend_available(b));
    let mut cfg = udp("echo", b);
    cfg.layout = layout;
    cfg.qos.threads = 2;
    let sap = Sap::builder(cfg)
        .inline(|m, out| {
            out.reply(&m.source, m.bytes).unwrap();
        })
        .bind()
        .unwrap();
    assert_eq!(sap.backend(), kind_of(b), "{}", sap.backend_reason());
    let c = client();
    for i in 0..300u32 {
        let msg = format!("ping {i} {}", "x".repeat(i as usize % 200));
        c.send_to(msg.as_bytes(), addr(&sap)).unwrap();
        let mut buf = [0u8; 2048];
        let (n, from) = c.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], msg.as_bytes());
        assert_eq!(from.port(), addr(&sap).port());
    }
    assert_eq!(sap.stats().received, 300);
    // The client may read an echo before the reactor counts its send completion.
    assert!(
        wait_until(LONG, || sap.stats().sent == 300),
        "{:?}",
        sap.stats()
    );
}

fn udp_to_a_consumer(b: BackendChoice) {
    skip_unless!(backend_available(b));
    let sap = Sap::bind(udp("queue", b)).unwrap();
    let consumer = sap.consumer(0).unwrap();
    assert!(sap.consumer(0).is_err(), "a destination has one consumer");
    let c = client();
    for i in 0..100u32 {
        c.send_to(&i.to_be_bytes(), addr(&sap)).unwrap();
    }
    let mut got = Vec::new();
    while got.len() < 100 {
        let d = consumer.wait(LONG).expect("a datagram within 20 s");
        assert_eq!(d.source().unwrap().peer(), c.local_addr().unwrap());
        assert!(matches!(d.source(), Some(Source::Datagram { .. })));
        got.push(u32::from_be_bytes(d.bytes().try_into().unwrap()));
    }
    assert_eq!(got, (0..100).collect::<Vec<_>>());
    assert_eq!(sap.stats().received, 100);
    assert_eq!(consumer.stats().delivered, 100);
}

fn tcp_echo(b: BackendChoice, layout: Layout) {
    skip_unless!(backend_available(b));
    let mut cfg = tcp("tcp-echo", b);
    cfg.layout = layout;
    cfg.qos.threads = 2;
    let sap = Sap::builder(cfg)
        .inline(|m, out| {
            out.reply(&m.source, m.bytes).unwrap();
        })
        .bind()
        .unwrap();
    let max = 2048 - 4;
    let payloads: Vec<Vec<u8>> = (0..600usize)
        .map(|i| {
            let len = match i % 5 {
                0 => 0,
                1 => max,
                _ => (i * 37) % max,
            };
            (0..len).map(|j| (i + j) as u8).collect()
        })
        .collect();
    let mut s = std::net::TcpStream::connect(addr(&sap)).unwrap();
    s.set_read_timeout(Some(LONG)).unwrap();
    let mut reader = s.try_clone().unwrap();
    let expect = payloads.clone();
    let check = std::thread::spawn(move || {
        for p in &expect {
            assert_eq!(&read_frame(&mut reader).unwrap(), p);
        }
    });
    let burst: Vec<u8> = payloads.iter().flat_map(|p| frame(p)).collect();
    s.write_all(&burst).unwrap();
    check.join().unwrap();
    assert_eq!(sap.stats().received, 600);
}

fn tcp_connect_and_send(b: BackendChoice) {
    skip_unless!(backend_available(b));
    let server = Sap::builder(tcp("tcp-server", b))
        .inline(|m, out| out.reply(&m.source, m.bytes).unwrap())
        .bind()
        .unwrap();
    let mut ccfg = tcp("tcp-client", b);
    ccfg.transport = Transport::Tcp { bind: None };
    let client = Sap::bind(ccfg).unwrap();
    let consumer = client.consumer(0).unwrap();
    let conn = client.connect(addr(&server)).unwrap();
    for i in 0..200u32 {
        client.send(conn, &i.to_le_bytes()).unwrap();
    }
    for i in 0..200u32 {
        let d = consumer.wait(LONG).expect("echo within 20 s");
        assert_eq!(d.bytes(), i.to_le_bytes());
        assert!(matches!(d.source(), Some(Source::Stream { conn: c, .. }) if *c == conn));
    }
    client.close(conn).unwrap();
    assert!(wait_until(LONG, || client.stats().closed == 1));
    assert!(
        client.send(conn, b"late").is_err(),
        "a closed connection refuses sends"
    );
    assert!(
        wait_until(LONG, || server.stats().closed == 1),
        "the server sees the close"
    );
}

fn multicast(b: BackendChoice) {
    skip_unless!(backend_available(b));
    let lo = Ipv4Addr::LOCALHOST;
    // A group per backend, so the two instantiations never hear each other.
    let group = Ipv4Addr::new(239, 77, 5, if b == BackendChoice::IoUring { 1 } else { 2 });
    let mc = |name: &str| {
        let mut c = udp(name, b);
        c.transport = Transport::UdpMulticast {
            bind: "0.0.0.0:0".parse().unwrap(),
            group,
            interface: lo,
            loopback: true,
            ttl: 1,
        };
        c
    };
    let rx = Sap::bind(mc("mc-rx")).unwrap();
    let tx = Sap::bind(mc("mc-tx")).unwrap();
    let consumer = rx.consumer(0).unwrap();
    let to = SocketAddr::from((group, addr(&rx).port()));
    for i in 0..20u8 {
        tx.send_to(to, &[i; 16]).unwrap();
    }
    for i in 0..20u8 {
        let d = consumer.wait(LONG).expect("group datagram within 20 s");
        assert_eq!(d.bytes(), [i; 16]);
    }
    rx.leave(group, lo).unwrap();
    tx.send_to(to, b"after leave").unwrap();
    assert!(wait_until(Duration::from_secs(5), || tx.stats().sent == 21));
    assert!(
        consumer.wait(Duration::from_millis(300)).is_none(),
        "no datagram arrives after leaving the group"
    );
    rx.join(group, lo).unwrap();
    tx.send_to(to, b"again").unwrap();
    assert_eq!(
        consumer.wait(LONG).expect("after re-join").bytes(),
        b"again"
    );
}

fn tcp_exhaustion_loses_nothing(b: BackendChoice) {
    skip_unless!(backend_available(b));
    let mut cfg = tcp("tcp-starve", b);
    cfg.buffers = 16;
    cfg.buffer_size = 256;
    let sap = Sap::bind(cfg).unwrap();
    let consumer = sap.consumer(0).unwrap();
    const N: u32 = 3000;
    let to = addr(&sap);
    let sender = std::thread::spawn(move || {
        let mut s = std::net::TcpStream::connect(to).unwrap();
        let mut burst = Vec::new();
        for i in 0..N {
            let mut p = i.to_be_bytes().to_vec();
            p.extend_from_slice(&[i as u8; 96]);
            burst.extend(frame(&p));
        }
        s.write_all(&burst).unwrap();
        s
    });
    // Hold every handle until the reactor has run out of buffers.
    let mut held = Vec::new();
    assert!(
        wait_until(LONG, || {
            while let Some(h) = consumer.pop_handle() {
                held.push(h);
            }
            sap.stats().enobufs > 0
        }),
        "buffers never ran out"
    );
    let mut next = 0u32;
    let check = |bytes: &[u8], next: &mut u32| {
        assert_eq!(u32::from_be_bytes(bytes[..4].try_into().unwrap()), *next);
        assert_eq!(&bytes[4..], &[*next as u8; 96][..]);
        *next += 1;
    };
    for h in held.drain(..) {
        check(consumer.bytes(&h).unwrap(), &mut next);
        consumer.release(h).unwrap();
    }
    while next < N {
        let d = consumer
            .wait(LONG)
            .expect("the stream resumes after exhaustion");
        check(d.bytes(), &mut next);
    }
    let _s = sender.join().unwrap();
    let s = sap.stats();
    assert!(s.enobufs > 0);
    assert_eq!(s.received, u64::from(N));
}

fn udp_exhaustion_counts_drops(b: BackendChoice, layout: Layout) {
    skip_unless!(backend_available(b));
    let mut cfg = udp("udp-starve", b);
    cfg.layout = layout;
    cfg.qos.threads = 2;
    cfg.buffers = 16;
    cfg.qos.recv_buffer = Some(4096);
    let sap = Sap::bind(cfg).unwrap();
    let consumer = sap.consumer(0).unwrap();
    let c = client();
    const N: u32 = 2000;
    let mut held = Vec::new();
    for i in 0..N {
        c.send_to(&i.to_be_bytes(), addr(&sap)).unwrap();
        while let Some(h) = consumer.pop_handle() {
            held.push(h);
        }
    }
    assert!(
        wait_until(LONG, || sap.stats().enobufs > 0),
        "buffers never ran out"
    );
    let mut seen = HashSet::new();
    for h in held.drain(..) {
        seen.insert(u32::from_be_bytes(
            consumer.bytes(&h).unwrap().try_into().unwrap(),
        ));
        consumer.release(h).unwrap();
    }
    // Drain what the socket still holds, then a marker that carries the final drop count.
    let mut idle = 0;
    while idle < 200 {
        match consumer.wait(Duration::from_millis(1)) {
            Some(d) => {
                seen.insert(u32::from_be_bytes(d.bytes().try_into().unwrap()));
                idle = 0;
            }
            None => idle += 1,
        }
    }
    c.send_to(&N.to_be_bytes(), addr(&sap)).unwrap();
    let marker = consumer
        .wait(LONG)
        .expect("the marker arrives after recovery");
    assert_eq!(marker.bytes(), N.to_be_bytes());
    drop(marker);
    let s = sap.stats();
    let dest = consumer.stats();
    assert!(s.enobufs > 0);
    assert!(
        s.kernel_drops > 0,
        "the kernel dropped at the full socket buffer: {s:?}"
    );
    assert_eq!(seen.len() as u64, s.received - 1, "no datagram twice");
    assert_eq!(
        s.received + s.kernel_drops + dest.dropped_newest,
        u64::from(N) + 1,
        "every datagram is received or counted as dropped: {s:?} {dest:?}"
    );
}

fn drop_policy(b: BackendChoice, policy: DropPolicy) {
    skip_unless!(backend_available(b));
    let mut cfg = udp("drops", b);
    cfg.qos.queue_depth = 4;
    cfg.qos.drop_policy = policy;
    let sap = Sap::bind(cfg).unwrap();
    let consumer = sap.consumer(0).unwrap();
    let c = client();
    for i in 0..10u8 {
        c.send_to(&[i], addr(&sap)).unwrap();
    }
    // Every arrival has been pushed, held or dropped (the receive counter runs ahead).
    assert!(wait_until(LONG, || {
        let st = consumer.stats();
        st.delivered + st.dropped_newest == 10
    }));
    let mut got = Vec::new();
    while let Some(d) = consumer.pop() {
        got.push(d.bytes()[0]);
    }
    let st = consumer.stats();
    match policy {
        DropPolicy::DropNewest => {
            assert_eq!(got, [0, 1, 2, 3]);
            assert_eq!(st.dropped_newest, 6);
        }
        DropPolicy::DropOldest => {
            assert_eq!(got, [6, 7, 8, 9]);
            assert_eq!(st.dropped_oldest, 6);
        }
        DropPolicy::Backpressure => {
            assert_eq!(got, (0..10).collect::<Vec<u8>>());
            assert_eq!(st.held, 6);
            assert_eq!(st.dropped_newest + st.dropped_oldest, 0);
        }
    }
}

/// Backpressure on a stream: a tiny queue and a slow consumer pause the connection (the
/// peer is flow-controlled); every frame arrives, in order, none dropped.
fn tcp_backpressure(b: BackendChoice) {
    skip_unless!(backend_available(b));
    let mut cfg = tcp("tcp-bp", b);
    cfg.qos.queue_depth = 4;
    cfg.qos.drop_policy = DropPolicy::Backpressure;
    let sap = Sap::bind(cfg).unwrap();
    let consumer = sap.consumer(0).unwrap();
    const N: u32 = 20_000;
    let to = addr(&sap);
    let sender = std::thread::spawn(move || {
        let mut s = std::net::TcpStream::connect(to).unwrap();
        let burst: Vec<u8> = (0..N).flat_map(|i| frame(&i.to_be_bytes())).collect();
        s.write_all(&burst).unwrap();
        s
    });
    for i in 0..N {
        let d = consumer.wait(LONG).expect("the paused stream resumes");
        assert_eq!(d.bytes(), i.to_be_bytes());
        if i % 1000 == 0 {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    let _s = sender.join().unwrap();
    let st = consumer.stats();
    assert!(st.held > 0, "the queue never filled: {st:?}");
    assert_eq!(st.dropped_newest + st.dropped_oldest, 0);
    assert_eq!(sap.stats().received, u64::from(N));
}

/// Shared layout, 3 threads on one source, 4 TCP streams, 1,000,000 frames: each frame
/// is handled exactly once, and more than one thread led.
fn leader_promotion_under_load(b: BackendChoice) {
    skip_unless!(backend_available(b));
    const STREAMS: usize = 4;
    const PER: usize = 250_000;
    let seen: Arc<Vec<AtomicBool>> =
        Arc::new((0..STREAMS * PER).map(|_| AtomicBool::new(false)).collect());
    let dups = Arc::new(AtomicU64::new(0));
    let mut cfg = tcp("lf", b);
    cfg.layout = Layout::Shared;
    cfg.qos.threads = 3;
    let (s2, d2) = (seen.clone(), dups.clone());
    let sap = Sap::builder(cfg)
        .inline(move |m, _| {
            let k = u32::from_le_bytes(m.bytes[..4].try_into().unwrap()) as usize;
            if s2[k].swap(true, Ordering::Relaxed) {
                d2.fetch_add(1, Ordering::Relaxed);
            }
        })
        .bind()
        .unwrap();
    let to = addr(&sap);
    let senders: Vec<_> = (0..STREAMS)
        .map(|s| {
            std::thread::spawn(move || {
                let mut st = std::net::TcpStream::connect(to).unwrap();
                // 8-byte payloads: the frame's key, then 4 zero bytes.
                let mut burst = Vec::with_capacity(PER * 12);
                for i in 0..PER {
                    burst.extend_from_slice(&8u32.to_be_bytes());
                    burst.extend_from_slice(&(((s * PER) + i) as u32).to_le_bytes());
                    burst.extend_from_slice(&[0; 4]);
                }
                st.write_all(&burst).unwrap();
                st
            })
        })
        .collect();
    let _streams: Vec<_> = senders.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(
        wait_until(Duration::from_secs(60), || sap.stats().received
            == (STREAMS * PER) as u64),
        "only {} of {} frames arrived: {:?}, per thread {:?}",
        sap.stats().received,
        STREAMS * PER,
        sap.stats(),
        sap.thread_events()
    );
    assert_eq!(dups.load(Ordering::Relaxed), 0, "a frame was handled twice");
    let missing = seen.iter().filter(|s| !s.load(Ordering::Relaxed)).count();
    assert_eq!(missing, 0, "frames lost");
    let per_thread = sap.thread_events();
    let leaders = per_thread.iter().filter(|n| **n > 0).count();
    assert!(leaders >= 2, "one thread did everything: {per_thread:?}");
    assert!(sap.stats().promotions > 0);
}

/// Shared layout over UDP: every datagram handled at most once, and every one either
/// handled or counted as dropped by the kernel.
fn leader_promotion_udp_accounting(b: BackendChoice) {
    skip_unless!(backend_available(b));
    const N: usize = 100_000;
    // Key N is the marker sent last, which carries the final drop count.
    let seen: Arc<Vec<AtomicBool>> = Arc::new((0..=N).map(|_| AtomicBool::new(false)).collect());
    let dups = Arc::new(AtomicU64::new(0));
    let mut cfg = udp("lf-udp", b);
    cfg.layout = Layout::Shared;
    cfg.qos.threads = 3;
    let (s2, d2) = (seen.clone(), dups.clone());
    let sap = Sap::builder(cfg)
        .inline(move |m, _| {
            let k = u32::from_le_bytes(m.bytes[..4].try_into().unwrap()) as usize;
            if s2[k].swap(true, Ordering::Relaxed) {
                d2.fetch_add(1, Ordering::Relaxed);
            }
        })
        .bind()
        .unwrap();
    let c = client();
    for i in 0..N as u32 {
        c.send_to(&i.to_le_bytes(), addr(&sap)).unwrap();
        if i % 64 == 63 {
            // Stay near the reactor so the kernel drops little; drops are counted anyway.
            wait_until(Duration::from_millis(50), || {
                sap.stats().received + sap.stats().kernel_drops + 256 > u64::from(i)
            });
        }
    }
    // Let the reactor drain the socket, then send the marker: queued after every drop,
    // it carries the final drop count.
    let mut last = u64::MAX;
    while last != sap.stats().received {
        last = sap.stats().received;
        std::thread::sleep(Duration::from_millis(50));
    }
    c.send_to(&(N as u32).to_le_bytes(), addr(&sap)).unwrap();
    assert!(
        wait_until(LONG, || seen[N].load(Ordering::Relaxed)),
        "the marker arrives"
    );
    let s = sap.stats();
    assert_eq!(
        dups.load(Ordering::Relaxed),
        0,
        "a datagram was handled twice"
    );
    let handled = seen.iter().filter(|s| s.load(Ordering::Relaxed)).count() as u64;
    assert_eq!(handled + s.kernel_drops, N as u64 + 1, "{s:?}");
}

/// `Sap::send_to_now`: a datagram sent from the caller's thread arrives and is counted as
/// sent, and never overtakes one queued before it for the reactor (mixed with `send_to`,
/// every datagram arrives in the order it was sent).
fn direct_sends_arrive_in_order(backend: BackendChoice) {
    skip_unless!(backend_available(backend));
    let mut rx_cfg = udp("now-rx", backend);
    // room for everything sent below, so order is all that is tested
    rx_cfg.qos.queue_depth = 4096;
    let receiver = Sap::bind(rx_cfg).unwrap();
    let to = receiver.local_addr().unwrap();
    let consumer = receiver.consumer(0).unwrap();
    let sender = Sap::bind(udp("now-tx", backend)).unwrap();

    // A lone direct send: it leaves from this thread and is counted as sent.
    sender.send_to_now(to, b"lone").unwrap();
    let d = consumer.wait(LONG).expect("the lone datagram within 20 s");
    assert_eq!(d.bytes(), b"lone");
    drop(d);
    assert_eq!(sender.stats().sent, 1);

    // Queued and direct sends interleaved in rounds (a direct send right behind a queued
    // one finds it still queued, in flight, or gone): every datagram arrives, in order.
    // A reader takes them as they come, so the receiver's buffers never run out.
    let rounds = 3000u32;
    let total: u32 = (0..rounds).map(|r| 2 + r % 3).sum();
    let sent_all = Arc::new(AtomicBool::new(false));
    let done = Arc::clone(&sent_all);
    let reader = std::thread::spawn(move || {
        let mut got = Vec::with_capacity(total as usize);
        let until = std::time::Instant::now() + LONG;
        // until all arrived, or the sender is done and nothing came for a second (the
        // rest was dropped by the kernel), or 20 s
        let mut quiet = 0;
        while got.len() < total as usize && std::time::Instant::now() < until && quiet < 10 {
            match consumer.wait(Duration::from_millis(100)) {
                Some(d) => {
                    got.push(u32::from_be_bytes(d.bytes().try_into().unwrap()));
                    quiet = 0;
                }
                None if done.load(Ordering::SeqCst) => quiet += 1,
                None => {}
            }
        }
        (got, consumer)
    });
    // a full send queue (the reactor behind on a loaded machine) is back-pressure: retry
    let send = |now: bool, v: u32| loop {
        let r = if now {
            sender.send_to_now(to, &v.to_be_bytes())
        } else {
            sender.send_to(to, &v.to_be_bytes())
        };
        match r {
            Ok(()) => break,
            Err(rtpm_net::Error::SendQueueFull { .. }) => {
                std::thread::sleep(Duration::from_micros(100))
            }
            Err(e) => panic!("{e}"),
        }
    };
    let mut seq = 0u32;
    for r in 0..rounds {
        for _ in 0..1 + r % 3 {
            send(false, seq);
            seq += 1;
        }
        send(true, seq);
        seq += 1;
        if r % 20 == 19 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    sent_all.store(true, Ordering::SeqCst);
    let (got, consumer) = reader.join().unwrap();
    drop(consumer);
    let rs = receiver.stats();
    // UDP may lose datagrams when the receiving socket's buffer is full (a loaded
    // machine): those are counted by the kernel, and every other one arrives
    assert_eq!(
        got.len() as u64 + rs.kernel_drops,
        u64::from(seq),
        "{} of {seq} arrived within 20 s; receiver: {rs:?}",
        got.len()
    );
    // the order holds: never a datagram after a later one
    if let Some(i) = got.windows(2).position(|w| w[1] <= w[0]) {
        panic!(
            "out of order at {i} ({backend:?}): {:?}",
            &got[i.saturating_sub(3)..(i + 4).min(got.len())]
        );
    }
    // every datagram was sent once (a parked reactor may count its last completions late)
    let until = std::time::Instant::now() + Duration::from_secs(5);
    while sender.stats().sent < 1 + u64::from(seq) && std::time::Instant::now() < until {
        std::thread::sleep(Duration::from_millis(10));
    }
    let st = sender.stats();
    assert_eq!(st.sent, 1 + u64::from(seq), "{st:?}");
    assert_eq!(st.send_errors, 0, "{st:?}");
    sender.shutdown();
    receiver.shutdown();
}

macro_rules! suite {
    ($m:ident, $b:expr) => {
        mod $m {
            use super::*;
            #[test]
            fn udp_echo_sharded() {
                udp_echo_inline($b, Layout::Sharded)
            }
            #[test]
            fn udp_echo_shared() {
                udp_echo_inline($b, Layout::Shared)
            }
            #[test]
            fn udp_to_a_consumer_in_order() {
                udp_to_a_consumer($b)
            }
            #[test]
            fn tcp_echo_sharded() {
                tcp_echo($b, Layout::Sharded)
            }
            #[test]
            fn tcp_echo_shared() {
                tcp_echo($b, Layout::Shared)
            }
            #[test]
            fn tcp_connect_send_close() {
                tcp_connect_and_send($b)
            }
            #[test]
            fn multicast_between_two_sockets() {
                multicast($b)
            }
            #[test]
            fn tcp_buffer_exhaustion_loses_nothing() {
                tcp_exhaustion_loses_nothing($b)
            }
            #[test]
            fn udp_buffer_exhaustion_counts_drops() {
                udp_exhaustion_counts_drops($b, Layout::Sharded)
            }
            #[test]
            fn udp_buffer_exhaustion_counts_drops_shared() {
                udp_exhaustion_counts_drops($b, Layout::Shared)
            }
            #[test]
            fn drop_newest() {
                drop_policy($b, DropPolicy::DropNewest)
            }
            #[test]
            fn drop_oldest() {
                drop_policy($b, DropPolicy::DropOldest)
            }
            #[test]
            fn backpressure() {
                drop_policy($b, DropPolicy::Backpressure)
            }
            #[test]
            fn tcp_backpressure_pauses_the_stream() {
                tcp_backpressure($b)
            }
            #[test]
            fn leader_promotion_one_million_frames() {
                leader_promotion_under_load($b)
            }
            #[test]
            fn leader_promotion_udp_accounted() {
                leader_promotion_udp_accounting($b)
            }
            #[test]
            fn direct_sends_arrive_in_order() {
                super::direct_sends_arrive_in_order($b)
            }
        }
    };
}

suite!(io_uring, BackendChoice::IoUring);
suite!(epoll, BackendChoice::Epoll);
