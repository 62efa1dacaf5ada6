//! `Sap::send_to_now` on both backends: a datagram sent from the caller's thread arrives,
//! is counted as sent, and never overtakes one queued before it for the reactor (mixed
//! with `send_to`, every datagram arrives in the order it was sent).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::time::Duration;

use rtpm_net::{BackendChoice, Sap, SapConfig, Transport};

const LONG: Duration = Duration::from_secs(20);

fn udp(name: &str, backend: BackendChoice) -> SapConfig {
    let mut c = SapConfig::new(
        name,
        Transport::Udp {
            bind: "127.0.0.1:0".parse().unwrap(),
        },
    );
    c.backend = backend;
    c
}

fn direct_sends_arrive_in_order(backend: BackendChoice) {
    if backend == BackendChoice::IoUring
        && let Err(e) = rtpm_net::probe_io_uring()
    {
        println!("SKIP: io_uring unavailable here: {e}");
        return;
    }
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
    let reader = std::thread::spawn(move || {
        let mut got = Vec::with_capacity(total as usize);
        while got.len() < total as usize {
            match consumer.wait(LONG) {
                Some(d) => got.push(u32::from_be_bytes(d.bytes().try_into().unwrap())),
                None => break,
            }
        }
        (got, consumer)
    });
    let mut seq = 0u32;
    for r in 0..rounds {
        for _ in 0..1 + r % 3 {
            sender.send_to(to, &seq.to_be_bytes()).unwrap();
            seq += 1;
        }
        sender.send_to_now(to, &seq.to_be_bytes()).unwrap();
        seq += 1;
        if r % 40 == 39 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let (got, consumer) = reader.join().unwrap();
    drop(consumer);
    let rs = receiver.stats();
    assert_eq!(
        got.len(),
        seq as usize,
        "{} of {seq} arrived within 20 s; receiver: {rs:?}",
        got.len()
    );
    if let Some(i) = got.iter().enumerate().position(|(i, v)| *v != i as u32) {
        panic!(
            "out of order at {i} ({backend:?}): {:?}",
            &got[i.saturating_sub(3)..(i + 4).min(got.len())]
        );
    }
    let st = sender.stats();
    assert_eq!(st.sent, 1 + u64::from(seq), "{st:?}");
    assert_eq!(st.send_errors, 0, "{st:?}");
    sender.shutdown();
    receiver.shutdown();
}

#[test]
fn direct_sends_arrive_in_order_on_io_uring() {
    direct_sends_arrive_in_order(BackendChoice::IoUring);
}

#[test]
fn direct_sends_arrive_in_order_on_epoll() {
    direct_sends_arrive_in_order(BackendChoice::Epoll);
}
