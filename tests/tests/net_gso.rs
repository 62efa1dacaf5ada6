//! UDP GSO (segmented sends) and GRO (coalesced receives), on both backends.
//!
//! - **Segmenting**: runs of equal datagrams queued together leave as one GSO send and
//!   arrive as ordinary datagrams, intact and in order; `udp_gso = false` sends one by one.
//! - **Fallback**: when the kernel refuses GSO (checksums turned off on the socket, the
//!   kernel's EINVAL), the datagrams go out one by one, none lost, and GSO stays off.
//! - **Splitting**: a coalesced receive becomes one handle per datagram, in place, all on
//!   one buffer; the buffer stays out of the ring until the last handle is given back —
//!   held handles keep their bytes while later bursts cycle through the other buffers
//!   (an early or double return would let the kernel overwrite them), and the buffers all
//!   come back (a leak would starve a 4-buffer SAP).
//!
//! Traffic stays on loopback, where a GSO send reaches a GRO socket as one buffer.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

#[path = "net/common.rs"]
mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::*;
use rtpm_net::{BackendChoice, Handle, Sap, Source};
use rtpm_tests::skip_unless;

const LONG: Duration = Duration::from_secs(20);

/// Datagram `seq` of `len` bytes: the sequence number, then a pattern derived from it.
fn datagram(seq: u32, len: usize) -> Vec<u8> {
    let mut v: Vec<u8> = (0..len).map(|i| (seq as usize * 7 + i) as u8).collect();
    v[..4].copy_from_slice(&seq.to_be_bytes());
    v
}

/// Sends bursts through a SAP with `send_many` and reads them with a std socket.
/// Returns the SAP's stats after every send completed.
fn send_bursts(b: BackendChoice, gso: bool, refuse: bool, bursts: u32) -> rtpm_net::SapStats {
    let mut cfg = udp("gso-tx", b);
    cfg.udp_gso = gso;
    let tx = Sap::bind(cfg).unwrap();
    if refuse {
        rtpm_net::fault::refuse_udp_gso(&tx).unwrap();
    }
    let rx = client();
    let to = rx.local_addr().unwrap();
    let mut seq = 0u32;
    let mut buf = [0u8; 2048];
    for _ in 0..bursts {
        // 30 equal datagrams and two shorter ones: the first shorter one ends a GSO run.
        let lens: Vec<usize> = (0..32).map(|i| if i < 30 { 300 } else { 120 }).collect();
        let msgs: Vec<Vec<u8>> = lens
            .iter()
            .enumerate()
            .map(|(i, l)| datagram(seq + i as u32, *l))
            .collect();
        let refs: Vec<&[u8]> = msgs.iter().map(|m| &m[..]).collect();
        assert_eq!(tx.send_many(to, &refs).unwrap(), 32);
        for m in &msgs {
            let (n, from) = rx.recv_from(&mut buf).expect("every datagram arrives");
            assert_eq!(&buf[..n], &m[..], "datagram {seq}+ intact and in order");
            assert_eq!(from, addr(&tx));
        }
        seq += 32;
    }
    let total = u64::from(bursts) * 32;
    assert!(
        wait_until(LONG, || tx.stats().sent == total),
        "{b:?}: {:?}",
        tx.stats()
    );
    let s = tx.stats();
    assert_eq!(s.send_errors, 0, "{b:?}: {s:?}");
    s
}

fn gso_segments_runs(b: BackendChoice) {
    skip_unless!(backend_available(b));
    let s = send_bursts(b, true, false, 20);
    // A burst queued while the reactor is parked is one batch; even if the reactor caught
    // some datagrams early, 20 bursts of 30 equal ones cannot all go one by one.
    assert!(s.gso_sends > 0, "{b:?}: no send was coalesced: {s:?}");
    assert_eq!(s.gso_refused, 0, "{s:?}");
}

fn gso_off_sends_one_by_one(b: BackendChoice) {
    skip_unless!(backend_available(b));
    let s = send_bursts(b, false, false, 5);
    assert_eq!(s.gso_sends, 0, "{b:?}: {s:?}");
}

fn gso_refused_falls_back(b: BackendChoice) {
    skip_unless!(backend_available(b));
    let s = send_bursts(b, true, true, 10);
    // The first coalesced send is refused (EINVAL under SO_NO_CHECK) and resent one by
    // one; GSO is then off for the socket.
    assert!(s.gso_refused >= 1, "{b:?}: {s:?}");
    assert_eq!(
        s.gso_sends, 0,
        "{b:?}: a refused socket coalesced anyway: {s:?}"
    );
}

/// Pops `n` handles, checking they are datagrams `first..first+n` of `len` bytes from
/// `from`; returns them (not given back).
fn pop_burst(
    consumer: &rtpm_net::Consumer,
    first: u32,
    n: u32,
    len: usize,
    from: SocketAddr,
) -> Vec<Handle> {
    (0..n)
        .map(|i| {
            let d = consumer.wait(LONG).expect("a datagram within 20 s");
            let h = d.into_handle().unwrap();
            assert_eq!(
                consumer.bytes(&h).unwrap(),
                &datagram(first + i, len)[..],
                "datagram {}",
                first + i
            );
            assert_eq!(*h.source(), Source::Datagram { from, shard: 0 });
            h
        })
        .collect()
}

fn burst(first: u32, n: u32, len: usize) -> Vec<u8> {
    (0..n).flat_map(|i| datagram(first + i, len)).collect()
}

fn gro_splits_and_counts_references(b: BackendChoice) {
    skip_unless!(backend_available(b));
    const N: u32 = 64;
    const LEN: usize = 200;
    let rx = Sap::bind(udp_gro("gro-rx", b, 4)).unwrap();
    let consumer = rx.consumer(0).unwrap();
    let tx = client();
    let from = tx.local_addr().unwrap();
    let to = addr(&rx);

    // One GSO send of 64 datagrams arrives as one buffer, split into 64 handles.
    send_gso(&tx, to, &burst(0, N, LEN), LEN as u16).unwrap();
    let held = pop_burst(&consumer, 0, N, LEN, from);
    let bid = held[0].buffer();
    assert!(
        held.iter().all(|h| h.buffer() == bid),
        "one buffer holds the burst"
    );
    let s = rx.stats();
    assert_eq!((s.gro_receives, s.received), (1, u64::from(N)), "{s:?}");

    // Later bursts cycle through the 3 other buffers while the first is held: its bytes
    // must stay as they were.
    let mut seq = N;
    for _ in 0..12 {
        send_gso(&tx, to, &burst(seq, N, LEN), LEN as u16).unwrap();
        for h in pop_burst(&consumer, seq, N, LEN, from) {
            assert_ne!(h.buffer(), bid, "a held buffer went back to the kernel");
            consumer.release(h).unwrap();
        }
        seq += N;
    }
    for (i, h) in held.iter().enumerate() {
        assert_eq!(consumer.bytes(h).unwrap(), &datagram(i as u32, LEN)[..]);
    }

    // Give the handles back in a scrambled order, all but one; the buffer is still out.
    let mut held: Vec<Option<Handle>> = held.into_iter().map(Some).collect();
    for k in 0..N - 1 {
        // 37 is coprime with 64: k -> 37k + 11 visits every index once.
        if let Some(h) = held[((k * 37 + 11) % N) as usize].take() {
            consumer.release(h).unwrap();
        }
    }
    let left: Vec<Handle> = held.into_iter().flatten().collect();
    for _ in 0..4 {
        send_gso(&tx, to, &burst(seq, N, LEN), LEN as u16).unwrap();
        for h in pop_burst(&consumer, seq, N, LEN, from) {
            assert_ne!(
                h.buffer(),
                bid,
                "a partly held buffer went back to the kernel"
            );
            consumer.release(h).unwrap();
        }
        seq += N;
    }
    for h in &left {
        let i = u32::from_be_bytes(consumer.bytes(h).unwrap()[..4].try_into().unwrap());
        assert_eq!(consumer.bytes(h).unwrap(), &datagram(i, LEN)[..]);
    }
    for h in left {
        consumer.release(h).unwrap();
    }

    // Every buffer is back: 4 buffers carry 40 more bursts, with pipelining (a burst is
    // held while the next one lands), without loss or starvation.
    let mut prev: Option<(u32, Vec<Handle>)> = None;
    for _ in 0..40 {
        send_gso(&tx, to, &burst(seq, N, LEN), LEN as u16).unwrap();
        let cur = pop_burst(&consumer, seq, N, LEN, from);
        if let Some((first, hs)) = prev.take() {
            for (i, h) in hs.into_iter().enumerate() {
                assert_eq!(
                    consumer.bytes(&h).unwrap(),
                    &datagram(first + i as u32, LEN)[..]
                );
                consumer.release(h).unwrap();
            }
        }
        prev = Some((seq, cur));
        seq += N;
    }
    for h in prev.map(|p| p.1).unwrap_or_default() {
        consumer.release(h).unwrap();
    }
    let s = rx.stats();
    assert_eq!(s.received, u64::from(seq), "{b:?}: {s:?}");
    assert_eq!(s.gro_receives, u64::from(seq / N), "{b:?}: {s:?}");
    assert_eq!(
        (s.enobufs, s.truncated, s.kernel_drops),
        (0, 0, 0),
        "{b:?}: {s:?}"
    );
}

fn gro_keeps_single_datagrams_whole(b: BackendChoice) {
    skip_unless!(backend_available(b));
    // Without a GSO sender, datagrams arrive one per buffer, as without GRO.
    let rx = Sap::bind(udp_gro("gro-single", b, 8)).unwrap();
    let consumer = rx.consumer(0).unwrap();
    let c = client();
    for i in 0..50u32 {
        c.send_to(&datagram(i, 10 + i as usize * 20), addr(&rx))
            .unwrap();
        let d = consumer.wait(LONG).expect("a datagram");
        assert_eq!(d.bytes(), &datagram(i, 10 + i as usize * 20)[..]);
    }
    let s = rx.stats();
    assert_eq!((s.received, s.gro_receives), (50, 0), "{s:?}");
}

fn gso_to_gro_end_to_end(b: BackendChoice) {
    skip_unless!(backend_available(b));
    // An rtpm-net GSO sender and a GRO receiver with an inline handler: every datagram
    // counted once, in order.
    let got = Arc::new(AtomicU64::new(0));
    let bad = Arc::new(AtomicU64::new(0));
    let (g, x) = (got.clone(), bad.clone());
    let mut rcfg = udp_gro("e2e-rx", b, 16);
    rcfg.qos.recv_buffer = Some(4 << 20);
    let rx = Sap::builder(rcfg)
        .inline(move |m, _| {
            let seq = u32::from_be_bytes(m.bytes[..4].try_into().unwrap());
            let want = g.fetch_add(1, Ordering::Relaxed) as u32;
            if seq != want || m.bytes != &datagram(seq, 1000)[..] {
                x.fetch_add(1, Ordering::Relaxed);
            }
        })
        .bind()
        .unwrap();
    let mut tcfg = udp("e2e-tx", b);
    tcfg.send_slots = 64;
    let tx = Sap::bind(tcfg).unwrap();
    let to = addr(&rx);
    let mut seq = 0u32;
    for _ in 0..30 {
        let msgs: Vec<Vec<u8>> = (0..48).map(|i| datagram(seq + i, 1000)).collect();
        let refs: Vec<&[u8]> = msgs.iter().map(|m| &m[..]).collect();
        let mut off = 0;
        while off < refs.len() {
            match tx.send_many(to, &refs[off..]) {
                Ok(n) => off += n,
                Err(rtpm_net::Error::SendQueueFull { .. }) => std::thread::yield_now(),
                Err(e) => panic!("{e}"),
            }
        }
        seq += 48;
        // Stay within the receiver's buffers (16 x 64 KiB) so the kernel drops nothing.
        assert!(wait_until(LONG, || got.load(Ordering::Relaxed) + 400 >= u64::from(seq)));
    }
    assert!(
        wait_until(LONG, || got.load(Ordering::Relaxed) == u64::from(seq)),
        "{b:?}: got {} of {seq}: rx {:?} tx {:?}",
        got.load(Ordering::Relaxed),
        rx.stats(),
        tx.stats()
    );
    assert_eq!(
        bad.load(Ordering::Relaxed),
        0,
        "datagrams out of order or damaged"
    );
    let (r, t) = (rx.stats(), tx.stats());
    assert!(t.gso_sends > 0, "{b:?}: {t:?}");
    assert!(r.gro_receives > 0, "{b:?}: {r:?}");
    assert_eq!(r.received, u64::from(seq), "{r:?}");
}

fn a_sender_out_of_slots_is_never_stuck(b: BackendChoice) {
    skip_unless!(backend_available(b));
    // Four send slots, a one-way sender queueing four datagrams at a time: the reactor
    // sends a batch, parks, and its completions wait in the queue (nothing else comes to
    // wake it); the sender, out of slots, must get the reactor to collect them. (GSO off,
    // so each datagram is a send of its own; the receiver's socket may drop some: only
    // the sends are counted.)
    let mut cfg = udp("slots", b);
    cfg.send_slots = 4;
    cfg.udp_gso = false;
    let tx = Sap::bind(cfg).unwrap();
    let rx = client();
    let to = rx.local_addr().unwrap();
    let end = std::time::Instant::now() + LONG;
    let (mut full, mut sent) = (0u64, 0u64);
    let four: [&[u8]; 4] = [b"a", b"b", b"c", b"d"];
    while sent < 2000 {
        match tx.send_many(to, &four) {
            Ok(n) => sent += n as u64,
            Err(rtpm_net::Error::SendQueueFull { .. }) => {
                full += 1;
                assert!(
                    std::time::Instant::now() < end,
                    "{b:?}: stuck after {sent}: {:?}",
                    tx.stats()
                );
                std::thread::yield_now();
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert!(
        wait_until(LONG, || tx.stats().sent == sent),
        "{b:?}: {:?} (slots full {full} times)",
        tx.stats()
    );
}

macro_rules! suite {
    ($m:ident, $b:expr) => {
        mod $m {
            use super::*;
            #[test]
            fn gso_coalesces_runs_of_equal_datagrams() {
                gso_segments_runs($b)
            }
            #[test]
            fn gso_off_sends_one_by_one() {
                super::gso_off_sends_one_by_one($b)
            }
            #[test]
            fn gso_refused_by_the_kernel_falls_back() {
                gso_refused_falls_back($b)
            }
            #[test]
            fn gro_splits_a_burst_and_counts_references() {
                gro_splits_and_counts_references($b)
            }
            #[test]
            fn gro_keeps_single_datagrams_whole() {
                super::gro_keeps_single_datagrams_whole($b)
            }
            #[test]
            fn gso_sender_to_gro_receiver() {
                gso_to_gro_end_to_end($b)
            }
            #[test]
            fn a_sender_out_of_slots_is_never_stuck() {
                super::a_sender_out_of_slots_is_never_stuck($b)
            }
        }
    };
}

suite!(io_uring, BackendChoice::IoUring);
suite!(epoll, BackendChoice::Epoll);
