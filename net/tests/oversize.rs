//! A datagram larger than the SAP's largest payload is dropped and counted (`truncated`),
//! and the datagrams around it arrive whole — on both backends, and on io_uring in park
//! and busy-poll mode (a datagram beyond the buffer, and one that fits the buffer but not
//! the payload limit).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::net::UdpSocket;
use std::time::Duration;

use rtpm_net::{BackendChoice, Mode, Sap, SapConfig, Transport};

const LONG: Duration = Duration::from_secs(20);

fn oversize_is_counted(backend: BackendChoice, mode: Mode) {
    if backend == BackendChoice::IoUring
        && let Err(e) = rtpm_net::probe_io_uring()
    {
        println!("SKIP: io_uring unavailable here: {e}");
        return;
    }
    let mut cfg = SapConfig::new(
        "oversize",
        Transport::Udp {
            bind: "127.0.0.1:0".parse().unwrap(),
        },
    );
    cfg.backend = backend;
    cfg.buffer_size = 512;
    cfg.qos.mode = mode;
    cfg.qos.spin = rtpm_rt::time::Nanos::us(200);
    let max = cfg.max_payload();
    let sap = Sap::bind(cfg).unwrap();
    let consumer = sap.consumer(0).unwrap();
    let to = sap.local_addr().unwrap();
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    for round in 0..3u8 {
        c.send_to(&[round; 16], to).unwrap();
        c.send_to(&vec![round; 1000], to).unwrap(); // beyond the 512 B buffer
        c.send_to(&vec![round; max + 1], to).unwrap(); // fits the buffer, not the payload limit
        c.send_to(&vec![round; max], to).unwrap();
        let d = consumer.wait(LONG).expect("the small datagram");
        assert_eq!(d.bytes(), &[round; 16]);
        drop(d);
        let d = consumer.wait(LONG).expect("the largest payload");
        assert_eq!(d.bytes(), vec![round; max].as_slice());
    }
    assert!(consumer.pop().is_none());
    let s = sap.stats();
    assert_eq!(s.truncated, 6, "{s:?}");
    assert_eq!(s.received, 12, "{s:?}");
}

#[test]
fn oversize_datagrams_are_counted_on_io_uring_park() {
    oversize_is_counted(BackendChoice::IoUring, Mode::Park);
}

#[test]
fn oversize_datagrams_are_counted_on_io_uring_busy_poll() {
    oversize_is_counted(BackendChoice::IoUring, Mode::BusyPoll);
}

#[test]
fn oversize_datagrams_are_counted_on_epoll() {
    oversize_is_counted(BackendChoice::Epoll, Mode::Park);
}
