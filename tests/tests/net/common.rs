//! Helpers shared by the network test files.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)] // test helpers: a panic is the failure report

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rtpm_net::{BackendChoice, BackendKind, SapConfig, Transport};

/// `Ok` when `backend` can run here; for io_uring, the probe's reason otherwise.
pub fn backend_available(backend: BackendChoice) -> Result<(), String> {
    match backend {
        BackendChoice::IoUring => {
            rtpm_net::probe_io_uring().map_err(|e| format!("io_uring unavailable here: {e}"))
        }
        _ => Ok(()),
    }
}

/// The kind a forced choice must produce.
pub fn kind_of(backend: BackendChoice) -> BackendKind {
    match backend {
        BackendChoice::IoUring => BackendKind::IoUring,
        _ => BackendKind::Epoll,
    }
}

/// A config on loopback with a free port.
pub fn udp(name: &str, backend: BackendChoice) -> SapConfig {
    let mut c = SapConfig::new(
        name,
        Transport::Udp {
            bind: "127.0.0.1:0".parse().unwrap(),
        },
    );
    c.backend = backend;
    c
}

/// A TCP listener config on loopback with a free port.
pub fn tcp(name: &str, backend: BackendChoice) -> SapConfig {
    let mut c = SapConfig::new(
        name,
        Transport::Tcp {
            bind: Some("127.0.0.1:0".parse().unwrap()),
        },
    );
    c.backend = backend;
    c
}

/// Polls `cond` until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    cond()
}

/// Writes one length-prefixed frame.
pub fn frame(payload: &[u8]) -> Vec<u8> {
    let mut v = (payload.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(payload);
    v
}

/// Reads one length-prefixed frame.
pub fn read_frame(s: &mut impl std::io::Read) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len)?;
    let mut v = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut v)?;
    Ok(v)
}

/// A std UDP socket on loopback.
pub fn client() -> std::net::UdpSocket {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

/// The SAP's address, for a client.
pub fn addr(sap: &rtpm_net::Sap) -> SocketAddr {
    sap.local_addr().expect("bound")
}
