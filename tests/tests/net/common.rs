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

/// Sends `payload` as datagrams of `seg` bytes (the last maybe shorter) in one `sendmsg`
/// with a UDP_SEGMENT control message (UDP GSO), from a std socket, to an IPv4 `to`.
/// Allocates nothing.
pub fn send_gso(
    sock: &std::net::UdpSocket,
    to: SocketAddr,
    payload: &[u8],
    seg: u16,
) -> std::io::Result<usize> {
    use std::os::fd::AsRawFd;
    let SocketAddr::V4(v4) = to else {
        return Err(std::io::Error::other("send_gso: IPv4 only"));
    };
    let mut name = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: v4.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(v4.ip().octets()),
        },
        sin_zero: [0; 8],
    };
    let mut iov = libc::iovec {
        iov_base: payload.as_ptr() as *mut libc::c_void,
        iov_len: payload.len(),
    };
    // cmsghdr { len: CMSG_LEN(2) = 18, level: SOL_UDP, type: UDP_SEGMENT } then the u16.
    let mut ctrl = [0u64; 3];
    ctrl[0] = 18;
    ctrl[1] = u64::from(libc::SOL_UDP as u32) | (103u64 << 32);
    ctrl[2] = u64::from(seg);
    // SAFETY: msghdr is plain C data; all-zero is a valid empty header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = (&mut name as *mut libc::sockaddr_in).cast();
    msg.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = ctrl.as_mut_ptr().cast();
    msg.msg_controllen = 24;
    // SAFETY: every pointer in `msg` refers to a live local (name, iovec over `payload`,
    // control buffer) for the duration of the call; sendmsg only reads them.
    let n = unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, 0) };
    if n < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// A GRO receiver config: UDP GRO on, buffers big enough for a coalesced burst.
pub fn udp_gro(name: &str, backend: BackendChoice, buffers: u32) -> SapConfig {
    let mut c = udp(name, backend);
    c.udp_gro = true;
    c.buffer_size = SapConfig::GRO_MIN_BUFFER_SIZE;
    c.buffers = buffers;
    c.send_slots = 4;
    c
}
