//! A UDP SAP connected to one peer (`SapConfig::peer`), on both backends: datagrams to
//! the peer go out without an address and its replies come in; other senders' datagrams
//! are not received; sends to other addresses still work.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use rtpm_net::{BackendChoice, BackendKind, Sap, SapConfig, Source, Transport};

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

fn connected_peer(backend: BackendChoice) {
    if backend == BackendChoice::IoUring
        && let Err(e) = rtpm_net::probe_io_uring()
    {
        println!("SKIP: io_uring unavailable here: {e}");
        return;
    }
    let server = Sap::builder(udp("peer-srv", backend))
        .inline(|m, out| {
            out.reply(&m.source, m.bytes).unwrap();
        })
        .bind()
        .unwrap();
    let to = server.local_addr().unwrap();
    let mut cfg = udp("peer-cli", backend);
    cfg.peer = Some(to);
    let client = Sap::bind(cfg).unwrap();
    let want = match backend {
        BackendChoice::Epoll => BackendKind::Epoll,
        _ => BackendKind::IoUring,
    };
    assert_eq!(client.backend(), want, "{}", client.backend_reason());
    let consumer = client.consumer(0).unwrap();

    // To the peer (no address on the wire call) and back, in order.
    for i in 0..200u32 {
        client.send_to(to, &i.to_be_bytes()).unwrap();
        let d = consumer.wait(LONG).expect("an echo within 20 s");
        assert!(matches!(d.source(), Some(Source::Datagram { from, .. }) if *from == to));
        assert_eq!(d.bytes(), i.to_be_bytes());
    }

    // A stranger's datagrams do not reach a connected socket.
    let stranger = UdpSocket::bind("127.0.0.1:0").unwrap();
    let me: SocketAddr = client.local_addr().unwrap();
    for _ in 0..10 {
        stranger.send_to(b"not for you", me).unwrap();
    }
    // The peer's still do, after the stranger's: the marker proves those were seen.
    client.send_to(to, b"marker").unwrap();
    let d = consumer.wait(LONG).expect("the marker's echo");
    assert_eq!(d.bytes(), b"marker");
    drop(d);
    assert!(
        consumer.pop().is_none(),
        "a stranger's datagram was received"
    );
    assert_eq!(client.stats().received, 201);

    // Sending elsewhere still works (with an address).
    let other = UdpSocket::bind("127.0.0.1:0").unwrap();
    other.set_read_timeout(Some(LONG)).unwrap();
    client
        .send_to(other.local_addr().unwrap(), b"elsewhere")
        .unwrap();
    let mut buf = [0u8; 64];
    let (n, from) = other.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"elsewhere");
    assert_eq!(from, me);
    assert!(
        wait_until(LONG, || client.stats().sent == 202),
        "{:?}",
        client.stats()
    );
    assert_eq!(client.stats().send_errors, 0);
}

#[test]
fn a_connected_udp_sap_talks_to_its_peer_on_io_uring() {
    connected_peer(BackendChoice::IoUring);
}

#[test]
fn a_connected_udp_sap_talks_to_its_peer_on_epoll() {
    connected_peer(BackendChoice::Epoll);
}
