//! Sockets: creation, QoS options, multicast membership, and the batched calls the epoll
//! backend makes (recvmmsg, sendmmsg, writev, read, accept4).

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use crate::error::Error;
use crate::sys::region::{Buffers, Owned};

/// Datagrams per recvmmsg / sendmmsg call.
pub(crate) const BATCH: usize = 32;

/// Socket options derived from a QoS class.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct SockOpts {
    pub so_priority: u8,
    /// The DSCP code point (written as `dscp << 2` to IP_TOS / IPV6_TCLASS).
    pub dscp: u8,
    pub recv_buffer: Option<u32>,
    pub send_buffer: Option<u32>,
    pub busy_poll_us: Option<u32>,
    pub reuseport: bool,
}

/// Converts an address for the kernel.
pub(crate) fn to_sockaddr(addr: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain old data; all-zero is a valid (AF_UNSPEC) value.
    let mut st: libc::sockaddr_storage = unsafe { zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and suitably aligned for sockaddr_in.
            unsafe { std::ptr::write((&mut st as *mut libc::sockaddr_storage).cast(), sin) };
            size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: sockaddr_storage is larger than and suitably aligned for sockaddr_in6.
            unsafe { std::ptr::write((&mut st as *mut libc::sockaddr_storage).cast(), sin6) };
            size_of::<libc::sockaddr_in6>()
        }
    };
    (st, len as libc::socklen_t)
}

/// Parses a socket address the kernel wrote as raw bytes (`sockaddr_in` or
/// `sockaddr_in6`, native layout).
pub(crate) fn from_sockaddr_bytes(b: &[u8]) -> Option<SocketAddr> {
    let family = u16::from_ne_bytes([*b.first()?, *b.get(1)?]) as i32;
    let port = u16::from_be_bytes([*b.get(2)?, *b.get(3)?]);
    match family {
        libc::AF_INET => {
            let ip: [u8; 4] = b.get(4..8)?.try_into().ok()?;
            Some(SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(ip), port)))
        }
        libc::AF_INET6 => {
            let flow = u32::from_ne_bytes(b.get(4..8)?.try_into().ok()?);
            let ip: [u8; 16] = b.get(8..24)?.try_into().ok()?;
            let scope = u32::from_ne_bytes(b.get(24..28)?.try_into().ok()?);
            Some(SocketAddr::V6(SocketAddrV6::new(
                ip.into(),
                port,
                flow,
                scope,
            )))
        }
        _ => None,
    }
}

fn storage_bytes(st: &libc::sockaddr_storage, len: libc::socklen_t) -> &[u8] {
    let len = (len as usize).min(size_of::<libc::sockaddr_storage>());
    // SAFETY: reads `len` (clamped to its size) bytes of a live sockaddr_storage as bytes;
    // any byte pattern is a valid u8.
    unsafe { std::slice::from_raw_parts((st as *const libc::sockaddr_storage).cast(), len) }
}

// Linux socket options the libc crate does not name on every target.
const SOL_UDP: i32 = 17;
/// UDP GSO: the segment size of a send (cmsg) or of every send (socket option).
const UDP_SEGMENT: i32 = 103;
/// UDP GRO: deliver coalesced datagrams of one flow as one buffer, with their size.
const UDP_GRO: i32 = 104;
const SO_MEMINFO: i32 = 55;
const SK_MEMINFO_VARS: usize = 9;
const SK_MEMINFO_DROPS: usize = 8;
#[cfg(feature = "fault-injection")]
const SO_NO_CHECK: i32 = 11;

/// Datagrams one GSO send carries at most (the kernel's `UDP_MAX_SEGMENTS` is 64 before
/// Linux 6.9 and 128 since).
pub(crate) const MAX_SEGMENTS: usize = 64;
/// UDP payload one GSO send carries at most (an IPv4 datagram's limit).
pub(crate) const GSO_MAX_BYTES: usize = 65507;
/// Space for one `int`-sized control message (CMSG_SPACE(4)): the UDP_GRO segment size.
pub(crate) const GRO_CTRL_LEN: usize = 24;
/// Space for the UDP_SEGMENT control message of a GSO send (CMSG_SPACE(2)).
pub(crate) const GSO_CTRL_LEN: usize = 24;

/// The UDP_GRO segment size in a control-message buffer, if present: the received
/// buffer holds datagrams of that size back to back (the last may be shorter).
pub(crate) fn gro_segment(ctrl: &[u8]) -> Option<u16> {
    // struct cmsghdr { size_t len; int level; int type; } then data, 8-byte aligned.
    let hdr = size_of::<usize>() + 8;
    let mut pos = 0;
    while pos + hdr <= ctrl.len() {
        let len = usize::from_ne_bytes(ctrl[pos..pos + size_of::<usize>()].try_into().ok()?);
        let level = i32::from_ne_bytes(ctrl[pos + 8..pos + 12].try_into().ok()?);
        let kind = i32::from_ne_bytes(ctrl[pos + 12..pos + 16].try_into().ok()?);
        if len < hdr {
            return None;
        }
        if level == SOL_UDP && kind == UDP_GRO && pos + hdr + 4 <= ctrl.len() {
            let seg = i32::from_ne_bytes(ctrl[pos + hdr..pos + hdr + 4].try_into().ok()?);
            return u16::try_from(seg).ok().filter(|s| *s > 0);
        }
        pos += len.div_ceil(8) * 8;
    }
    None
}

/// Writes the UDP_SEGMENT control message of a GSO send of `seg`-byte segments into
/// `buf`; returns its length (CMSG_SPACE(2)).
pub(crate) fn gso_cmsg(buf: &mut [u64; 3], seg: u16) -> usize {
    // cmsghdr: cmsg_len = CMSG_LEN(2) = 18, cmsg_level, cmsg_type; then the u16.
    buf[0] = (size_of::<usize>() + 8 + 2) as u64;
    buf[1] = u64::from(SOL_UDP as u32) | (u64::from(UDP_SEGMENT as u32) << 32);
    buf[2] = u64::from(seg);
    GSO_CTRL_LEN
}

/// Whether the kernel offers UDP GSO on this socket (reads `UDP_SEGMENT`, which changes
/// nothing; Linux 4.18+).
pub(crate) fn gso_supported(fd: RawFd) -> bool {
    let mut v: i32 = 0;
    let mut len = size_of::<i32>() as libc::socklen_t;
    // SAFETY: `v` and `len` are live and writable; len holds v's size.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            SOL_UDP,
            UDP_SEGMENT,
            (&mut v as *mut i32).cast(),
            &mut len,
        )
    };
    rc == 0
}

/// Turns UDP GRO on for a socket (Linux 5.0+): received datagrams of one flow may arrive
/// coalesced in one buffer, with a UDP_GRO control message giving their size.
pub(crate) fn enable_gro(fd: RawFd) -> io::Result<()> {
    setopt(fd, SOL_UDP, UDP_GRO, 1i32)
}

/// Datagrams the kernel dropped at this socket (full receive buffer), from SO_MEMINFO.
pub(crate) fn kernel_drops(fd: RawFd) -> Option<u64> {
    let mut v = [0u32; SK_MEMINFO_VARS];
    let mut len = size_of::<[u32; SK_MEMINFO_VARS]>() as libc::socklen_t;
    // SAFETY: `v` and `len` are live and writable; len holds v's size.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            SO_MEMINFO,
            v.as_mut_ptr().cast(),
            &mut len,
        )
    };
    (rc == 0 && len as usize > SK_MEMINFO_DROPS * 4).then(|| u64::from(v[SK_MEMINFO_DROPS]))
}

/// Turns UDP checksums off for a socket's sends (SO_NO_CHECK), under which the kernel
/// refuses every GSO send with EINVAL: the fault that exercises the GSO fallback.
#[cfg(feature = "fault-injection")]
pub(crate) fn refuse_gso(fd: RawFd) -> io::Result<()> {
    setopt(fd, libc::SOL_SOCKET, SO_NO_CHECK, 1i32)
}

fn setopt<T>(fd: RawFd, level: i32, name: i32, v: T) -> io::Result<()> {
    // SAFETY: passes a pointer to a live `T` and its exact size; the kernel copies it.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&v as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn new_socket(domain: i32, kind: i32, what: &str) -> Result<OwnedFd, Error> {
    // SAFETY: socket takes no pointers; a non-negative result is a new descriptor.
    let fd = unsafe { libc::socket(domain, kind | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK, 0) };
    if fd < 0 {
        return Err(Error::os(
            "socket",
            what,
            "raise the open-files limit (ulimit -n)",
        ));
    }
    // SAFETY: `fd` was just created and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Applies the QoS options. Options the kernel refuses for lack of privilege are
/// returned as warnings (they are applied "where permitted"); other failures are errors.
pub(crate) fn apply_opts(
    fd: RawFd,
    v6: bool,
    o: &SockOpts,
    what: &str,
) -> Result<Vec<String>, Error> {
    let mut warnings = Vec::new();
    let mut soft = |r: io::Result<()>, opt: &str, hint: &str| -> Result<(), Error> {
        match r {
            Ok(()) => Ok(()),
            Err(e)
                if e.raw_os_error() == Some(libc::EPERM)
                    || e.raw_os_error() == Some(libc::EACCES) =>
            {
                warnings.push(format!("{opt} on {what} not permitted ({e}); {hint}"));
                Ok(())
            }
            Err(e) => Err(Error::os_from(
                "setsockopt",
                &format!("{opt} on {what}"),
                e,
                "check the QoS values in the SAP config",
            )),
        }
    };
    if o.reuseport {
        setopt(fd, libc::SOL_SOCKET, libc::SO_REUSEPORT, 1i32).map_err(|e| {
            Error::os_from(
                "setsockopt",
                &format!("SO_REUSEPORT on {what}"),
                e,
                "use layout = \"shared\"",
            )
        })?;
    }
    soft(
        setopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_PRIORITY,
            o.so_priority as i32,
        ),
        "SO_PRIORITY",
        "values above 6 need CAP_NET_ADMIN",
    )?;
    let tos = (o.dscp as i32) << 2;
    if v6 {
        soft(
            setopt(fd, libc::IPPROTO_IPV6, libc::IPV6_TCLASS, tos),
            "IPV6_TCLASS",
            "",
        )?;
    } else {
        soft(
            setopt(fd, libc::IPPROTO_IP, libc::IP_TOS, tos),
            "IP_TOS",
            "",
        )?;
    }
    if let Some(b) = o.recv_buffer {
        soft(
            setopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, b as i32),
            "SO_RCVBUF",
            "the kernel caps it at net.core.rmem_max",
        )?;
    }
    if let Some(b) = o.send_buffer {
        soft(
            setopt(fd, libc::SOL_SOCKET, libc::SO_SNDBUF, b as i32),
            "SO_SNDBUF",
            "the kernel caps it at net.core.wmem_max",
        )?;
    }
    if let Some(us) = o.busy_poll_us {
        soft(
            setopt(fd, libc::SOL_SOCKET, libc::SO_BUSY_POLL, us as i32),
            "SO_BUSY_POLL",
            "raising it above net.core.busy_read needs CAP_NET_ADMIN",
        )?;
    }
    Ok(warnings)
}

fn bind(fd: RawFd, addr: &SocketAddr, what: &str) -> Result<(), Error> {
    let (st, len) = to_sockaddr(addr);
    // SAFETY: `st` is a live sockaddr of `len` bytes; bind copies it.
    let rc = unsafe { libc::bind(fd, (&st as *const libc::sockaddr_storage).cast(), len) };
    if rc != 0 {
        return Err(Error::os(
            "bind",
            &format!("{what} at {addr}"),
            "pick a free port (or 0), or an address of this host",
        ));
    }
    Ok(())
}

fn domain(addr: &SocketAddr) -> i32 {
    if addr.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    }
}

/// A bound, non-blocking UDP socket with the QoS options.
pub(crate) fn udp(
    addr: &SocketAddr,
    o: &SockOpts,
    what: &str,
) -> Result<(OwnedFd, Vec<String>), Error> {
    let fd = new_socket(domain(addr), libc::SOCK_DGRAM, what)?;
    let warnings = apply_opts(fd.as_raw_fd(), addr.is_ipv6(), o, what)?;
    bind(fd.as_raw_fd(), addr, what)?;
    Ok((fd, warnings))
}

/// Connects a UDP socket to its one peer: sends without an address go there over the
/// route cached on the socket, and only the peer's datagrams are received.
pub(crate) fn connect_udp(fd: RawFd, peer: &SocketAddr, what: &str) -> Result<(), Error> {
    let (st, len) = to_sockaddr(peer);
    // SAFETY: `st` is a live sockaddr of `len` bytes; connect copies it. A UDP connect
    // does not block.
    let rc = unsafe { libc::connect(fd, (&st as *const libc::sockaddr_storage).cast(), len) };
    if rc != 0 {
        return Err(Error::os(
            "connect",
            &format!("{what} to its peer {peer}"),
            "give `peer` an address this host can route to",
        ));
    }
    Ok(())
}

/// A listening, non-blocking TCP socket.
pub(crate) fn tcp_listener(
    addr: &SocketAddr,
    o: &SockOpts,
    what: &str,
) -> Result<(OwnedFd, Vec<String>), Error> {
    let fd = new_socket(domain(addr), libc::SOCK_STREAM, what)?;
    setopt(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_REUSEADDR, 1i32)
        .map_err(|e| Error::os_from("setsockopt", &format!("SO_REUSEADDR on {what}"), e, ""))?;
    let warnings = apply_opts(fd.as_raw_fd(), addr.is_ipv6(), o, what)?;
    bind(fd.as_raw_fd(), addr, what)?;
    // SAFETY: listen takes no pointers.
    if unsafe { libc::listen(fd.as_raw_fd(), 1024) } != 0 {
        return Err(Error::os("listen", what, "check the bind address"));
    }
    Ok((fd, warnings))
}

/// Prepares an accepted or connected stream: non-blocking, TCP_NODELAY, QoS options.
pub(crate) fn prepare_stream(fd: RawFd, v6: bool, o: &SockOpts) -> Result<(), Error> {
    setopt(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY, 1i32)
        .map_err(|e| Error::os_from("setsockopt", "TCP_NODELAY on a connection", e, ""))?;
    let o = SockOpts {
        reuseport: false,
        ..*o
    };
    apply_opts(fd, v6, &o, "a TCP connection").map(drop)
}

/// Connects (blocking until established), then makes the socket non-blocking.
pub(crate) fn tcp_connect(addr: &SocketAddr, o: &SockOpts) -> Result<OwnedFd, Error> {
    // SAFETY: socket takes no pointers.
    let raw = unsafe { libc::socket(domain(addr), libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(Error::os(
            "socket",
            "a TCP connection",
            "raise the open-files limit",
        ));
    }
    // SAFETY: `raw` is a new descriptor owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let (st, len) = to_sockaddr(addr);
    loop {
        // SAFETY: `st` is a live sockaddr of `len` bytes.
        let rc = unsafe {
            libc::connect(
                fd.as_raw_fd(),
                (&st as *const libc::sockaddr_storage).cast(),
                len,
            )
        };
        if rc == 0 {
            break;
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(Error::os_from(
                "connect",
                &format!("{addr}"),
                e,
                "check that the peer listens there",
            ));
        }
    }
    set_nonblocking(fd.as_raw_fd())?;
    prepare_stream(fd.as_raw_fd(), addr.is_ipv6(), o)?;
    Ok(fd)
}

/// Sets O_NONBLOCK.
pub(crate) fn set_nonblocking(fd: RawFd) -> Result<(), Error> {
    // SAFETY: fcntl F_GETFL/F_SETFL take no pointers.
    let rc = unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK)
    };
    if rc < 0 {
        return Err(Error::os("fcntl(O_NONBLOCK)", "a socket", ""));
    }
    Ok(())
}

/// The address a socket is bound to.
pub(crate) fn local_addr(fd: RawFd) -> Result<SocketAddr, Error> {
    // SAFETY: zeroed sockaddr_storage is valid.
    let mut st: libc::sockaddr_storage = unsafe { zeroed() };
    let mut len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: `st` and `len` are live and writable; len holds st's size.
    let rc = unsafe {
        libc::getsockname(
            fd,
            (&mut st as *mut libc::sockaddr_storage).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(Error::os("getsockname", "a SAP socket", ""));
    }
    from_sockaddr_bytes(storage_bytes(&st, len))
        .ok_or_else(|| Error::Internal("getsockname returned an unknown family".into()))
}

/// The peer of a connected socket.
pub(crate) fn peer_addr(fd: RawFd) -> Option<SocketAddr> {
    // SAFETY: zeroed sockaddr_storage is valid.
    let mut st: libc::sockaddr_storage = unsafe { zeroed() };
    let mut len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: `st` and `len` are live and writable; len holds st's size.
    let rc = unsafe {
        libc::getpeername(
            fd,
            (&mut st as *mut libc::sockaddr_storage).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return None;
    }
    from_sockaddr_bytes(storage_bytes(&st, len))
}

fn mreq(group: Ipv4Addr, iface: Ipv4Addr) -> libc::ip_mreq {
    libc::ip_mreq {
        imr_multiaddr: libc::in_addr {
            s_addr: u32::from_ne_bytes(group.octets()),
        },
        imr_interface: libc::in_addr {
            s_addr: u32::from_ne_bytes(iface.octets()),
        },
    }
}

/// Joins `group` on the interface with address `iface`.
pub(crate) fn join(fd: RawFd, group: Ipv4Addr, iface: Ipv4Addr) -> Result<(), Error> {
    setopt(
        fd,
        libc::IPPROTO_IP,
        libc::IP_ADD_MEMBERSHIP,
        mreq(group, iface),
    )
    .map_err(|e| {
        Error::os_from(
            "setsockopt(IP_ADD_MEMBERSHIP)",
            &format!("group {group} on interface {iface}"),
            e,
            "check that an interface has that address and is up",
        )
    })
}

/// Leaves `group` on the interface with address `iface`.
pub(crate) fn leave(fd: RawFd, group: Ipv4Addr, iface: Ipv4Addr) -> Result<(), Error> {
    setopt(
        fd,
        libc::IPPROTO_IP,
        libc::IP_DROP_MEMBERSHIP,
        mreq(group, iface),
    )
    .map_err(|e| {
        Error::os_from(
            "setsockopt(IP_DROP_MEMBERSHIP)",
            &format!("group {group} on interface {iface}"),
            e,
            "leave only groups that were joined",
        )
    })
}

/// Sends to groups through `iface`, with `ttl`, looping back to local members if asked.
pub(crate) fn multicast_out(
    fd: RawFd,
    iface: Ipv4Addr,
    loopback: bool,
    ttl: u32,
) -> Result<(), Error> {
    let hint = "check the multicast settings of the SAP";
    let what = format!("interface {iface}");
    setopt(
        fd,
        libc::IPPROTO_IP,
        libc::IP_MULTICAST_IF,
        libc::in_addr {
            s_addr: u32::from_ne_bytes(iface.octets()),
        },
    )
    .map_err(|e| Error::os_from("setsockopt(IP_MULTICAST_IF)", &what, e, hint))?;
    setopt(
        fd,
        libc::IPPROTO_IP,
        libc::IP_MULTICAST_LOOP,
        loopback as i32,
    )
    .map_err(|e| Error::os_from("setsockopt(IP_MULTICAST_LOOP)", &what, e, hint))?;
    setopt(fd, libc::IPPROTO_IP, libc::IP_MULTICAST_TTL, ttl as i32)
        .map_err(|e| Error::os_from("setsockopt(IP_MULTICAST_TTL)", &what, e, hint))?;
    // Receive only the groups this socket joined (Linux's default delivers every group any
    // socket of the host joined to a wildcard-bound socket).
    setopt(fd, libc::IPPROTO_IP, libc::IP_MULTICAST_ALL, 0i32)
        .map_err(|e| Error::os_from("setsockopt(IP_MULTICAST_ALL)", &what, e, hint))
}

/// Accepts one connection, if one is pending.
pub(crate) fn accept(fd: RawFd) -> io::Result<Option<(OwnedFd, Option<SocketAddr>)>> {
    // SAFETY: zeroed sockaddr_storage is valid.
    let mut st: libc::sockaddr_storage = unsafe { zeroed() };
    let mut len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: `st`/`len` are live and writable, len holds st's size.
    let rc = unsafe {
        libc::accept4(
            fd,
            (&mut st as *mut libc::sockaddr_storage).cast(),
            &mut len,
            libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
        )
    };
    if rc < 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::EAGAIN) | Some(libc::EINTR) | Some(libc::ECONNABORTED) => Ok(None),
            _ => Err(e),
        };
    }
    // SAFETY: accept4 returned a new descriptor owned by nobody else.
    let conn = unsafe { OwnedFd::from_raw_fd(rc) };
    Ok(Some((conn, from_sockaddr_bytes(storage_bytes(&st, len)))))
}

/// Reads into `buf` (non-blocking). `Ok(0)` is end of stream.
pub(crate) fn read(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is live and writable for its whole length.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Sends one datagram at once (non-blocking): to the socket's connected peer when `to` is
/// `None`, else to `to`. A full socket buffer refuses it (`EAGAIN`) rather than waiting.
pub(crate) fn send_datagram(fd: RawFd, bytes: &[u8], to: Option<&SocketAddr>) -> io::Result<usize> {
    let n = match to {
        // SAFETY: `bytes` is live and readable for its whole length; send only reads it.
        None => unsafe { libc::send(fd, bytes.as_ptr().cast(), bytes.len(), libc::MSG_DONTWAIT) },
        Some(to) => {
            let (st, len) = to_sockaddr(to);
            // SAFETY: `bytes` is live and readable for its whole length, `st` is a live
            // sockaddr of `len` bytes; sendto only reads them.
            unsafe {
                libc::sendto(
                    fd,
                    bytes.as_ptr().cast(),
                    bytes.len(),
                    libc::MSG_DONTWAIT,
                    (&st as *const libc::sockaddr_storage).cast(),
                    len,
                )
            }
        }
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Writes a frame's `head` then `body` on a stream socket with one non-blocking
/// `sendmsg` (`MSG_DONTWAIT | MSG_NOSIGNAL`: a broken connection is an error, not a
/// SIGPIPE); returns bytes written, which may be fewer than both (a full send buffer).
pub(crate) fn send_stream(fd: RawFd, head: &[u8], body: &[u8]) -> io::Result<usize> {
    let mut iov = [
        libc::iovec {
            iov_base: head.as_ptr().cast_mut().cast(),
            iov_len: head.len(),
        },
        libc::iovec {
            iov_base: body.as_ptr().cast_mut().cast(),
            iov_len: body.len(),
        },
    ];
    // SAFETY: msghdr is a plain C struct; all-zero is a valid empty header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov.as_mut_ptr();
    msg.msg_iovlen = iov.len();
    // SAFETY: `msg` names two iovecs over `head` and `body`, live and readable for their
    // lengths until this returns; sendmsg only reads them.
    let n = unsafe { libc::sendmsg(fd, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Writes the `(pointer, length)` pieces in order (non-blocking); returns bytes written.
///
/// The pieces are raw because they are send slots owned by the leader's transmit state
/// for the duration of the call.
pub(crate) fn writev(fd: RawFd, pieces: &[libc::iovec]) -> io::Result<usize> {
    // SAFETY: every iovec points at a live send slot of the stated length (the caller's
    // transmit state owns the slots until this returns); writev only reads them.
    let n = unsafe { libc::writev(fd, pieces.as_ptr(), pieces.len().min(1024) as i32) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Per-thread arrays for one recvmmsg batch (allocated once per pool thread).
pub(crate) struct RecvScratch {
    hdrs: [libc::mmsghdr; BATCH],
    iov: [libc::iovec; BATCH],
    names: [libc::sockaddr_storage; BATCH],
    ctrl: [[u64; GRO_CTRL_LEN / 8]; BATCH],
    /// The buffers of the batch in flight.
    pub taken: Vec<Owned>,
}

// The raw pointers inside are only set and used within one `recv` call on the owning
// thread; between calls they are dangling-but-unused.
// SAFETY: so moving the scratch to the pool thread that owns it is sound.
unsafe impl Send for RecvScratch {}

/// One received datagram (or GRO burst of datagrams) of a batch.
pub(crate) struct Received {
    pub len: usize,
    pub from: Option<SocketAddr>,
    pub truncated: bool,
    /// GRO: the buffer holds datagrams of this size back to back.
    pub seg: Option<u16>,
}

impl RecvScratch {
    /// A scratch area (boxed: it is several KiB).
    pub(crate) fn new() -> Box<RecvScratch> {
        Box::new(RecvScratch {
            // SAFETY: these are plain C structs; all-zero is valid for each.
            hdrs: unsafe { zeroed() },
            // SAFETY: as above.
            iov: unsafe { zeroed() },
            // SAFETY: as above.
            names: unsafe { zeroed() },
            ctrl: [[0; GRO_CTRL_LEN / 8]; BATCH],
            taken: Vec::with_capacity(BATCH),
        })
    }

    /// Receives up to `self.taken.len()` datagrams into the taken buffers, with room for
    /// a UDP_GRO control message when `gro`. Returns how many arrived (0 when none is
    /// pending).
    pub(crate) fn recv(&mut self, fd: RawFd, bufs: &Buffers, gro: bool) -> io::Result<usize> {
        let n = self.taken.len().min(BATCH);
        for i in 0..n {
            self.iov[i] = libc::iovec {
                iov_base: bufs.addr(self.taken[i].bid()).cast(),
                iov_len: bufs.size() as usize,
            };
            // SAFETY: zeroed msghdr is valid; fields are filled below.
            let mut h: libc::msghdr = unsafe { zeroed() };
            h.msg_name = (&mut self.names[i] as *mut libc::sockaddr_storage).cast();
            h.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_iov = &mut self.iov[i];
            h.msg_iovlen = 1;
            if gro {
                h.msg_control = self.ctrl[i].as_mut_ptr().cast();
                h.msg_controllen = GRO_CTRL_LEN;
            }
            self.hdrs[i] = libc::mmsghdr {
                msg_hdr: h,
                msg_len: 0,
            };
        }
        // The taken buffers are this thread's exclusively (`Owned`) until the call returns.
        // SAFETY: the first `n` headers point at live arrays of this scratch and at those
        // buffers; recvmmsg writes only within the stated lengths.
        let rc = unsafe {
            libc::recvmmsg(
                fd,
                self.hdrs.as_mut_ptr(),
                n as u32,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if rc < 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::EAGAIN) | Some(libc::EINTR) => Ok(0),
                _ => Err(e),
            };
        }
        Ok(rc as usize)
    }

    /// Details of datagram `i` of the last batch.
    pub(crate) fn received(&self, i: usize) -> Received {
        let h = &self.hdrs[i].msg_hdr;
        let ctrl_len = if h.msg_control.is_null() {
            0
        } else {
            h.msg_controllen.min(GRO_CTRL_LEN)
        };
        let ctrl = &self.ctrl[i];
        // SAFETY: views the control array of this scratch as bytes, within its size.
        let ctrl_bytes =
            unsafe { std::slice::from_raw_parts(ctrl.as_ptr().cast::<u8>(), ctrl_len) };
        Received {
            len: self.hdrs[i].msg_len as usize,
            from: from_sockaddr_bytes(storage_bytes(&self.names[i], h.msg_namelen)),
            truncated: h.msg_flags & libc::MSG_TRUNC != 0,
            seg: gro_segment(ctrl_bytes),
        }
    }
}

/// What one [`SendScratch::flush`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Flushed {
    /// Datagrams the kernel took.
    pub sent: usize,
    /// Datagrams it refused (e.g. EAGAIN at a full socket buffer): UDP promises no
    /// delivery, so they are counted and dropped.
    pub refused: usize,
    /// System calls made.
    pub calls: usize,
    /// Messages that carried several datagrams (GSO).
    pub coalesced: usize,
    /// GSO sends the kernel refused; their datagrams went out one by one.
    pub gso_refused: usize,
    /// After a refusal: the largest segment size GSO may still be used for (0: none).
    pub gso_limit: Option<u32>,
}

/// What the kernel's refusal of a GSO send of `seg`-byte segments means for later ones:
/// the largest segment size still worth trying (0: GSO is off for this socket), or `None`
/// when the error is not about GSO.
pub(crate) fn gso_refusal(errno: i32, seg: u32) -> Option<u32> {
    match errno {
        // The segment does not fit the path MTU: smaller ones may.
        libc::EMSGSIZE => Some(seg.saturating_sub(1)),
        // No checksum offload on the route's device (EIO), checksums off or a kernel
        // refusing the option (EINVAL, ENOPROTOOPT): no GSO on this socket.
        libc::EIO | libc::EINVAL | libc::ENOPROTOOPT | libc::EOPNOTSUPP => Some(0),
        _ => None,
    }
}

/// Per-leader arrays for one sendmmsg batch. Runs of equal-size datagrams to one
/// destination are coalesced into one message with a UDP_SEGMENT control message (GSO)
/// when the caller allows it; the kernel splits them back into datagrams.
pub(crate) struct SendScratch {
    hdrs: [libc::mmsghdr; BATCH],
    names: [libc::sockaddr_storage; BATCH],
    ctrl: [[u64; 3]; BATCH],
    /// Each message's destination, segment size, and whether a shorter datagram closed it.
    to: [Option<SocketAddr>; BATCH],
    seg: [u32; BATCH],
    closed: [bool; BATCH],
    /// The iovecs of all messages, in order: a message's iovecs are contiguous because
    /// only the last message grows.
    iov: Box<[libc::iovec]>,
    /// Where each message's iovecs start.
    first: [usize; BATCH],
    n: usize,
    niov: usize,
}

// SAFETY: as for `RecvScratch`: the pointers are only meaningful during `flush`.
unsafe impl Send for SendScratch {}

impl SendScratch {
    /// An empty batch (boxed: several KiB).
    pub(crate) fn new() -> Box<SendScratch> {
        Box::new(SendScratch {
            // SAFETY: plain C structs; all-zero is valid.
            hdrs: unsafe { zeroed() },
            // SAFETY: as above.
            names: unsafe { zeroed() },
            ctrl: [[0; 3]; BATCH],
            to: [None; BATCH],
            seg: [0; BATCH],
            closed: [false; BATCH],
            iov: (0..BATCH * MAX_SEGMENTS)
                .map(|_| libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0,
                })
                .collect(),
            first: [0; BATCH],
            n: 0,
            niov: 0,
        })
    }

    /// Datagrams one batch holds at most.
    pub(crate) fn capacity() -> usize {
        BATCH * MAX_SEGMENTS
    }

    /// Whether the batch may not take another datagram.
    pub(crate) fn is_full(&self) -> bool {
        self.n == BATCH || self.niov == self.iov.len()
    }

    /// Adds a datagram: `len` bytes of send slot `slot` to `to`. It joins the last message
    /// (GSO) when that goes to `to` in segments of `len` bytes (or `len` is shorter, which
    /// closes it), `len` is at most `gso_max`, and the limits allow. The caller checks
    /// `is_full` first.
    pub(crate) fn add(
        &mut self,
        bufs: &Buffers,
        slot: &Owned,
        len: usize,
        to: &SocketAddr,
        gso_max: u32,
    ) {
        if self.is_full() {
            return;
        }
        let piece = libc::iovec {
            iov_base: bufs.addr(slot.bid()).cast(),
            iov_len: len,
        };
        if let Some(last) = self.n.checked_sub(1) {
            let count = self.niov - self.first[last];
            let seg = self.seg[last] as usize;
            let joins = self.to[last] == Some(*to)
                && !self.closed[last]
                && len > 0
                && len <= seg
                && seg <= gso_max as usize
                && count < MAX_SEGMENTS
                && seg * count + len <= GSO_MAX_BYTES;
            if joins {
                self.iov[self.niov] = piece;
                self.niov += 1;
                self.closed[last] = len < seg;
                return;
            }
        }
        let i = self.n;
        self.to[i] = Some(*to);
        self.seg[i] = len as u32;
        self.closed[i] = false;
        self.first[i] = self.niov;
        self.iov[self.niov] = piece;
        self.niov += 1;
        self.n += 1;
    }

    /// Builds message `i`'s header (pointers into this scratch). A message to `peer`, the
    /// socket's connected peer, carries no address (the socket's cached route).
    fn header(&mut self, i: usize, peer: Option<&SocketAddr>) {
        let count = self.end(i) - self.first[i];
        let (st, sl) = match self.to[i] {
            Some(to) if peer != Some(&to) => to_sockaddr(&to),
            // SAFETY: zeroed sockaddr_storage is valid; a zero length means no address.
            _ => (unsafe { zeroed() }, 0),
        };
        self.names[i] = st;
        // SAFETY: zeroed msghdr is valid; fields are set below.
        let mut h: libc::msghdr = unsafe { zeroed() };
        h.msg_name = (&mut self.names[i] as *mut libc::sockaddr_storage).cast();
        h.msg_namelen = sl;
        h.msg_iov = &mut self.iov[self.first[i]];
        h.msg_iovlen = count;
        if count > 1 {
            h.msg_controllen = gso_cmsg(&mut self.ctrl[i], self.seg[i] as u16);
            h.msg_control = self.ctrl[i].as_mut_ptr().cast();
        }
        self.hdrs[i] = libc::mmsghdr {
            msg_hdr: h,
            msg_len: 0,
        };
    }

    fn end(&self, i: usize) -> usize {
        if i + 1 < self.n {
            self.first[i + 1]
        } else {
            self.niov
        }
    }

    /// Sends the batch with sendmmsg, retrying the rest after a partial send. A GSO
    /// message the kernel refuses goes out again one datagram per system call; other
    /// refusals drop the message's datagrams (counted). The batch is empty afterwards.
    /// `peer` is the socket's connected peer, if any.
    pub(crate) fn flush(&mut self, fd: RawFd, peer: Option<&SocketAddr>) -> Flushed {
        let mut f = Flushed::default();
        for i in 0..self.n {
            self.header(i, peer);
        }
        let mut done = 0;
        while done < self.n {
            f.calls += 1;
            // SAFETY: headers `done..n` point at this scratch's arrays and at send slots
            // the leader owns until this returns; sendmmsg only reads them.
            let rc = unsafe {
                libc::sendmmsg(
                    fd,
                    self.hdrs.as_mut_ptr().add(done),
                    (self.n - done) as u32,
                    libc::MSG_DONTWAIT,
                )
            };
            if rc > 0 {
                for i in done..done + rc as usize {
                    let count = self.end(i) - self.first[i];
                    f.sent += count;
                    f.coalesced += usize::from(count > 1);
                }
                done += rc as usize;
                continue;
            }
            // The message at `done` failed.
            let errno = io::Error::last_os_error().raw_os_error().unwrap_or(0);
            let count = self.end(done) - self.first[done];
            match gso_refusal(errno, self.seg[done]).filter(|_| count > 1) {
                Some(limit) => {
                    f.gso_refused += 1;
                    f.gso_limit = Some(f.gso_limit.map_or(limit, |l| l.min(limit)));
                    for k in self.first[done]..self.end(done) {
                        f.calls += 1;
                        if self.send_one(fd, done, k) {
                            f.sent += 1;
                        } else {
                            f.refused += 1;
                        }
                    }
                }
                None => f.refused += count,
            }
            done += 1;
        }
        self.n = 0;
        self.niov = 0;
        f
    }

    /// Sends iovec `k` of message `i` alone.
    fn send_one(&mut self, fd: RawFd, i: usize, k: usize) -> bool {
        // SAFETY: zeroed msghdr is valid; fields are set below.
        let mut h: libc::msghdr = unsafe { zeroed() };
        h.msg_name = (&mut self.names[i] as *mut libc::sockaddr_storage).cast();
        h.msg_namelen = self.hdrs[i].msg_hdr.msg_namelen;
        h.msg_iov = &mut self.iov[k];
        h.msg_iovlen = 1;
        // SAFETY: `h` points at this scratch's name and iovec, and the iovec at a send
        // slot the leader owns until this returns; sendmsg only reads them.
        unsafe { libc::sendmsg(fd, &h, libc::MSG_DONTWAIT) >= 0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_round_trip_through_the_kernel_layout() {
        for a in ["127.0.0.1:7000", "[::1]:9", "[fe80::1%2]:80"] {
            let addr: SocketAddr = a.parse().unwrap();
            let (st, len) = to_sockaddr(&addr);
            assert_eq!(from_sockaddr_bytes(storage_bytes(&st, len)), Some(addr));
        }
    }

    #[test]
    fn the_gro_segment_size_is_found_in_a_control_buffer() {
        let mut c = vec![0u8; 24];
        c[..8].copy_from_slice(&20usize.to_ne_bytes());
        c[8..12].copy_from_slice(&SOL_UDP.to_ne_bytes());
        c[12..16].copy_from_slice(&UDP_GRO.to_ne_bytes());
        c[16..20].copy_from_slice(&1200i32.to_ne_bytes());
        assert_eq!(gro_segment(&c), Some(1200));
        assert_eq!(gro_segment(&c[..10]), None);
        c[12..16].copy_from_slice(&libc::SO_RXQ_OVFL.to_ne_bytes());
        assert_eq!(
            gro_segment(&c),
            None,
            "another option is not a segment size"
        );
    }

    #[test]
    fn the_gso_control_message_has_the_kernel_layout() {
        let mut b = [0u64; 3];
        assert_eq!(gso_cmsg(&mut b, 1200), 24);
        // SAFETY: views a live [u64; 3] as its 24 bytes.
        let bytes = unsafe { std::slice::from_raw_parts(b.as_ptr().cast::<u8>(), 24) };
        assert_eq!(usize::from_ne_bytes(bytes[..8].try_into().unwrap()), 18);
        assert_eq!(
            i32::from_ne_bytes(bytes[8..12].try_into().unwrap()),
            SOL_UDP
        );
        assert_eq!(
            i32::from_ne_bytes(bytes[12..16].try_into().unwrap()),
            UDP_SEGMENT
        );
        assert_eq!(u16::from_ne_bytes(bytes[16..18].try_into().unwrap()), 1200);
    }

    fn slots(n: u32) -> (Buffers, Vec<Owned>) {
        let b = Buffers::new(n, 256, "t").unwrap();
        // SAFETY: a fresh region; no slot was given to anyone.
        let v = (0..n)
            .map(|i| unsafe { b.assume_owned(i as u16) })
            .collect();
        (b, v)
    }

    #[test]
    fn runs_of_equal_datagrams_to_one_peer_coalesce() {
        let (b, s) = slots(8);
        let (x, y): (SocketAddr, SocketAddr) = (
            "127.0.0.1:1".parse().unwrap(),
            "127.0.0.1:2".parse().unwrap(),
        );
        let mut sc = SendScratch::new();
        for (slot, (len, to)) in s.iter().zip([
            (100, x),
            (100, x),
            (60, x), // shorter: joins and closes the message
            (100, x),
            (100, y),
            (90, y), // shorter, closes
            (90, y),
            (90, y),
        ]) {
            sc.add(&b, slot, len, &to, u32::MAX);
        }
        assert_eq!(sc.n, 4);
        assert_eq!(
            (0..4).map(|i| sc.end(i) - sc.first[i]).collect::<Vec<_>>(),
            [3, 1, 2, 2]
        );
        // With GSO off (limit 0) nothing coalesces.
        let mut off = SendScratch::new();
        for slot in &s {
            off.add(&b, slot, 100, &x, 0);
        }
        assert_eq!(off.n, 8);
    }

    #[test]
    fn refusals_that_concern_gso_lower_its_limit() {
        assert_eq!(gso_refusal(libc::EMSGSIZE, 1500), Some(1499));
        assert_eq!(gso_refusal(libc::EIO, 1500), Some(0));
        assert_eq!(gso_refusal(libc::EINVAL, 64), Some(0));
        assert_eq!(gso_refusal(libc::EAGAIN, 64), None);
    }
}
