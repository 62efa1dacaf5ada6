//! The epoll backend: the same contract as io_uring, on readiness.
//!
//! epoll reports readiness, not completions, so this backend does the receive itself:
//! after promotion, `complete` reads a ready socket into free buffers (recvmmsg for
//! datagrams, read for streams) and hands those on exactly as io_uring completions would
//! be. Everything else matches the io_uring backend:
//!
//! - the endpoint is armed level-triggered when one thread serves it, one-shot when a
//!   pool shares it (so two threads never read one socket for one readiness);
//! - a connection is always one-shot, re-armed after its chunk was processed — the same
//!   "one receive outstanding per stream" rule;
//! - no free buffer means ENOBUFS: the socket is disarmed, counted, and re-armed by the
//!   first `poll` that recycled buffers;
//! - sends are batched by the leader: sendmmsg for datagrams, one writev per connection
//!   for frames; EAGAIN on a stream waits for EPOLLOUT on a duplicate descriptor (so write
//!   interest never disturbs the one-shot read registration).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use crate::error::Error;
use crate::frame::Framer;
use crate::leader::Lead;
use crate::reactor::{Backend, Completion, Core, Event, Flow, Intent, Waiting};
use crate::stats::Counters;
use crate::sys::Endpoint;
use crate::sys::claim::Claim;
use crate::sys::region::Owned;
use crate::sys::socket::{self, BATCH, RecvScratch, SendScratch, SockOpts};

const T_BELL: u64 = u64::MAX;
const T_ENDPOINT: u64 = u64::MAX - 1;
const T_WRITE: u64 = 1 << 32;
const WAIT_EVENTS: usize = 64;
const TX_IOV: usize = 256;

struct ConnL {
    fd: Option<OwnedFd>,
    wfd: Option<OwnedFd>,
    closing: bool,
    ended: bool,
    want_out: bool,
    queue: std::collections::VecDeque<(Owned, u32)>,
    sent_off: usize,
}

struct Leader {
    ready: Box<[libc::epoll_event; WAIT_EVENTS]>,
    sends: Box<SendScratch>,
    sending: Vec<Owned>,
    conns: Box<[ConnL]>,
    iov: Box<[libc::iovec; TX_IOV]>,
}

/// The epoll reactor backend (see the module docs).
pub(crate) struct Epoll {
    epfd: OwnedFd,
    core: Arc<Core>,
    endpoint: Endpoint,
    oneshot: bool,
    leader: Claim<Leader>,
    /// Each connection's descriptor, for the thread reading it (-1: none).
    conn_fds: Box<[AtomicI32]>,
    /// Whether a close was asked for (read by `rearm_stream` on any thread).
    closing: Box<[AtomicBool]>,
    sock_starved: AtomicBool,
    opts: SockOpts,
    v6: bool,
}

// SAFETY: the raw pointers in `Leader` (iovecs, send scratch) point into its own boxes and
// are used only by the leader, under the `Claim`, during a system call.
unsafe impl Send for Epoll {}
// SAFETY: see `Send`; shared state is atomics, the `Claim`, or the core's queues.
unsafe impl Sync for Epoll {}

fn ctl(epfd: RawFd, op: i32, fd: RawFd, events: u32, token: u64) -> io::Result<()> {
    let mut ev = libc::epoll_event { events, u64: token };
    // SAFETY: `ev` is a live epoll_event; epoll_ctl copies it.
    let rc = unsafe { libc::epoll_ctl(epfd, op, fd, &mut ev) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

impl Epoll {
    /// Creates the epoll instance and registers the endpoint and the wake-up eventfd.
    /// `shared` says whether several threads lead this source in turn.
    pub(crate) fn new(
        core: Arc<Core>,
        endpoint: Endpoint,
        opts: SockOpts,
        v6: bool,
        shared: bool,
    ) -> Result<Epoll, Error> {
        // SAFETY: epoll_create1 takes no pointers; a non-negative result is a new fd.
        let raw = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if raw < 0 {
            return Err(Error::os(
                "epoll_create1",
                "the reactor",
                "raise the open-files limit",
            ));
        }
        // SAFETY: `raw` is a new descriptor owned by nobody else.
        let epfd = unsafe { OwnedFd::from_raw_fd(raw) };
        // Every buffer starts on the free list: user space owns them all.
        for bid in 0..core.bufs.count() {
            // SAFETY: a fresh region: no buffer was given to anyone.
            core.free
                .push(unsafe { core.bufs.assume_owned(bid as u16) });
        }
        let nconn = core.conns.len();
        let this = Epoll {
            leader: Claim::new(Leader {
                ready: Box::new([libc::epoll_event { events: 0, u64: 0 }; WAIT_EVENTS]),
                sends: SendScratch::new(),
                sending: Vec::with_capacity(SendScratch::capacity()),
                conns: (0..nconn)
                    .map(|_| ConnL {
                        fd: None,
                        wfd: None,
                        closing: false,
                        ended: false,
                        want_out: false,
                        queue: std::collections::VecDeque::with_capacity(
                            core.sendbufs.count() as usize
                        ),
                        sent_off: 0,
                    })
                    .collect(),
                iov: Box::new(
                    [libc::iovec {
                        iov_base: std::ptr::null_mut(),
                        iov_len: 0,
                    }; TX_IOV],
                ),
            }),
            conn_fds: (0..nconn).map(|_| AtomicI32::new(-1)).collect(),
            closing: (0..nconn).map(|_| AtomicBool::new(false)).collect(),
            epfd,
            core,
            endpoint,
            oneshot: shared,
            sock_starved: AtomicBool::new(false),
            opts,
            v6,
        };
        let ep = this.epfd.as_raw_fd();
        ctl(
            ep,
            libc::EPOLL_CTL_ADD,
            this.core.bell.raw(),
            libc::EPOLLIN as u32,
            T_BELL,
        )
        .map_err(|e| Error::os_from("epoll_ctl", "the wake-up eventfd", e, ""))?;
        if let Some(fd) = this.endpoint.fd() {
            let ev = match this.endpoint {
                Endpoint::Udp(_) => this.endpoint_events(),
                _ => libc::EPOLLIN as u32,
            };
            ctl(ep, libc::EPOLL_CTL_ADD, fd, ev, T_ENDPOINT)
                .map_err(|e| Error::os_from("epoll_ctl", "the SAP socket", e, ""))?;
        }
        Ok(this)
    }

    fn endpoint_events(&self) -> u32 {
        let mut ev = libc::EPOLLIN as u32;
        if self.oneshot {
            ev |= libc::EPOLLONESHOT as u32;
        }
        ev
    }

    fn rearm_endpoint(&self) {
        if let Some(fd) = self.endpoint.fd() {
            let _ = ctl(
                self.epfd.as_raw_fd(),
                libc::EPOLL_CTL_MOD,
                fd,
                self.endpoint_events(),
                T_ENDPOINT,
            );
        }
    }

    fn starve_endpoint(&self) {
        let core = &*self.core;
        if !self.sock_starved.swap(true, Ordering::SeqCst) {
            Counters::inc(&core.stats.enobufs);
        }
        core.starved.store(true, Ordering::SeqCst);
        if let Some(fd) = self.endpoint.fd() {
            let _ = ctl(
                self.epfd.as_raw_fd(),
                libc::EPOLL_CTL_MOD,
                fd,
                0,
                T_ENDPOINT,
            );
        }
    }

    fn arm_read(&self, conn: u32, op: i32) {
        let fd = self.conn_fds[conn as usize].load(Ordering::Acquire);
        if fd >= 0 {
            let _ = ctl(
                self.epfd.as_raw_fd(),
                op,
                fd,
                (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLONESHOT) as u32,
                u64::from(conn),
            );
        }
    }

    fn adopt(&self, st: &mut Leader, idx: u32, fd: OwnedFd) {
        let core = &*self.core;
        // SAFETY: dup takes no pointers; the result is checked below.
        let w = unsafe { libc::dup(fd.as_raw_fd()) };
        if w < 0 {
            tracing::warn!(sap = %core.name, "dup for connection {idx}: {}", io::Error::last_os_error());
            Counters::inc(&core.stats.rejected);
            core.free_conn(idx);
            return;
        }
        // SAFETY: `w` is a new descriptor owned by nobody else.
        let wfd = unsafe { OwnedFd::from_raw_fd(w) };
        let c = &mut st.conns[idx as usize];
        self.conn_fds[idx as usize].store(fd.as_raw_fd(), Ordering::Release);
        self.closing[idx as usize].store(false, Ordering::Release);
        c.fd = Some(fd);
        c.wfd = Some(wfd);
        c.closing = false;
        c.ended = false;
        c.want_out = false;
        c.sent_off = 0;
        Counters::inc(&core.stats.accepted);
        self.arm_read(idx, libc::EPOLL_CTL_ADD);
    }

    fn accept_all(&self, st: &mut Leader) {
        let core = &*self.core;
        let Some(lfd) = self.endpoint.fd() else {
            return;
        };
        loop {
            match socket::accept(lfd) {
                Ok(Some((fd, peer))) => {
                    let Some(idx) = core.conn_free.pop() else {
                        Counters::inc(&core.stats.rejected);
                        continue;
                    };
                    if let Err(e) = socket::prepare_stream(fd.as_raw_fd(), self.v6, &self.opts) {
                        tracing::warn!(sap = %core.name, "accepted connection: {e}");
                    }
                    match core.conns[idx as usize].rx.try_claim() {
                        Some(mut rx) => {
                            rx.framer = Framer::new(core.max_frame);
                            rx.peer = peer.unwrap_or(std::net::SocketAddr::from(([0, 0, 0, 0], 0)));
                            rx.asm = None;
                            rx.rest = None;
                            rx.pending = None;
                        }
                        None => {
                            tracing::error!(sap = %core.name, "free connection slot {idx} is in use");
                            continue;
                        }
                    }
                    core.conns[idx as usize].open.store(true, Ordering::Release);
                    self.adopt(st, idx, fd);
                }
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!(sap = %core.name, "accept: {e}");
                    return;
                }
            }
        }
    }

    fn flush_datagrams(&self, st: &mut Leader) {
        let core = &*self.core;
        if st.sending.is_empty() {
            return;
        }
        if let Some(fd) = self.endpoint.fd() {
            let f = st.sends.flush(fd, core.peer.as_ref());
            let s = &core.stats;
            s.sent.fetch_add(f.sent as u64, Ordering::Relaxed);
            s.send_errors.fetch_add(f.refused as u64, Ordering::Relaxed);
            s.submits.fetch_add(f.calls as u64, Ordering::Relaxed);
            s.gso_sends.fetch_add(f.coalesced as u64, Ordering::Relaxed);
            if let Some(limit) = f.gso_limit {
                core.narrow_gso(limit, f.gso_refused as u64);
            }
        }
        for slot in st.sending.drain(..) {
            core.send_free.push(slot);
        }
    }

    fn tx_flush(&self, st: &mut Leader, conn: u32) {
        let core = &*self.core;
        let Leader { conns, iov, .. } = st;
        let c = &mut conns[conn as usize];
        let Some(fd) = c.fd.as_ref().map(|f| f.as_raw_fd()) else {
            return;
        };
        while !c.want_out && !c.queue.is_empty() {
            let n = c.queue.len().min(TX_IOV);
            for (i, (slot, len)) in c.queue.iter().take(n).enumerate() {
                let skip = if i == 0 { c.sent_off } else { 0 };
                // SAFETY: `skip` is below the slot's length, so the pointer stays in the slot.
                let base = unsafe { core.sendbufs.addr(slot.bid()).add(skip) };
                iov[i] = libc::iovec {
                    iov_base: base.cast(),
                    iov_len: *len as usize - skip,
                };
            }
            Counters::inc(&core.stats.submits);
            match socket::writev(fd, &iov[..n]) {
                Ok(mut left) => {
                    while let Some((_, len)) = c.queue.front() {
                        let rest = *len as usize - c.sent_off;
                        if left < rest {
                            c.sent_off += left;
                            break;
                        }
                        left -= rest;
                        c.sent_off = 0;
                        if let Some((slot, _)) = c.queue.pop_front() {
                            core.send_free.push(slot);
                            Counters::inc(&core.stats.sent);
                        }
                    }
                }
                Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => {
                    c.want_out = true;
                    if let Some(w) = &c.wfd {
                        let _ = ctl(
                            self.epfd.as_raw_fd(),
                            libc::EPOLL_CTL_ADD,
                            w.as_raw_fd(),
                            (libc::EPOLLOUT | libc::EPOLLONESHOT) as u32,
                            T_WRITE | u64::from(conn),
                        )
                        .or_else(|_| {
                            ctl(
                                self.epfd.as_raw_fd(),
                                libc::EPOLL_CTL_MOD,
                                w.as_raw_fd(),
                                (libc::EPOLLOUT | libc::EPOLLONESHOT) as u32,
                                T_WRITE | u64::from(conn),
                            )
                        });
                    }
                }
                Err(_) => {
                    while let Some((slot, _)) = c.queue.pop_front() {
                        core.send_free.push(slot);
                        Counters::inc(&core.stats.send_errors);
                    }
                    c.sent_off = 0;
                }
            }
        }
    }

    fn try_finalize(&self, st: &mut Leader, conn: u32) {
        let core = &*self.core;
        let c = &mut st.conns[conn as usize];
        if !c.ended || c.fd.is_none() {
            return;
        }
        let ep = self.epfd.as_raw_fd();
        if let Some(fd) = &c.fd {
            let _ = ctl(ep, libc::EPOLL_CTL_DEL, fd.as_raw_fd(), 0, 0);
        }
        if let Some(w) = &c.wfd {
            let _ = ctl(ep, libc::EPOLL_CTL_DEL, w.as_raw_fd(), 0, 0);
        }
        self.conn_fds[conn as usize].store(-1, Ordering::Release);
        c.fd = None;
        c.wfd = None;
        while let Some((slot, _)) = c.queue.pop_front() {
            core.send_free.push(slot);
            Counters::inc(&core.stats.send_errors);
        }
        c.sent_off = 0;
        c.want_out = false;
        core.free_conn(conn);
        Counters::inc(&core.stats.closed);
    }

    fn intent(&self, st: &mut Leader, i: Intent, events: &mut Vec<Event>) {
        let core = &*self.core;
        match i {
            Intent::SendTo { slot, len, to } => {
                if !matches!(self.endpoint, Endpoint::Udp(_)) {
                    core.send_free.push(slot);
                    Counters::inc(&core.stats.send_errors);
                    return;
                }
                if st.sends.is_full() {
                    self.flush_datagrams(st);
                }
                let gso_max = core.gso_max.load(Ordering::Relaxed);
                st.sends
                    .add(&core.sendbufs, &slot, len as usize, &to, gso_max);
                st.sending.push(slot);
            }
            Intent::SendStream {
                slot,
                len,
                conn,
                generation,
            } => {
                let live = core.conns.get(conn as usize).is_some_and(|c| {
                    c.generation.load(Ordering::Acquire) == generation
                        && c.open.load(Ordering::Acquire)
                });
                let c = &mut st.conns[conn as usize % st.conns.len()];
                if !live || c.fd.is_none() || c.closing {
                    core.send_free.push(slot);
                    Counters::inc(&core.stats.send_errors);
                    return;
                }
                c.queue.push_back((slot, len));
                self.tx_flush(st, conn);
            }
            Intent::ArmStream { conn } => {
                if st.conns[conn as usize].closing {
                    events.push(Event::StreamEnd { conn, err: 0 });
                } else {
                    self.arm_read(conn, libc::EPOLL_CTL_MOD);
                }
            }
            Intent::Close { conn } => {
                let c = &mut st.conns[conn as usize];
                if c.fd.is_none() || c.closing {
                    return;
                }
                c.closing = true;
                self.closing[conn as usize].store(true, Ordering::Release);
                if let Some(fd) = &c.fd {
                    // Ends the read side: the armed read reports EOF, and the stream's end
                    // is processed like a peer's close.
                    // SAFETY: shutdown takes no pointers; `fd` is open.
                    unsafe { libc::shutdown(fd.as_raw_fd(), libc::SHUT_RD) };
                }
            }
            Intent::Ended { conn } => {
                let c = &mut st.conns[conn as usize];
                c.closing = true;
                c.ended = true;
                self.try_finalize(st, conn);
            }
            Intent::Adopt { conn, fd } => self.adopt(st, conn, fd),
        }
    }

    fn wait(&self, st: &mut Leader, timeout: i32) -> usize {
        // SAFETY: `ready` is a live array of WAIT_EVENTS epoll_events; the kernel writes at
        // most that many.
        let n = unsafe {
            libc::epoll_wait(
                self.epfd.as_raw_fd(),
                st.ready.as_mut_ptr(),
                WAIT_EVENTS as i32,
                timeout,
            )
        };
        n.max(0) as usize
    }

    fn ready(&self, st: &mut Leader, n: usize, events: &mut Vec<Event>) {
        let core = &*self.core;
        for i in 0..n {
            let token = st.ready[i].u64;
            match token {
                T_BELL => core.bell.drain(),
                T_ENDPOINT => match self.endpoint {
                    Endpoint::Udp(_) => {
                        if core.free.is_empty() {
                            self.starve_endpoint();
                        } else {
                            events.push(Event::Readable);
                        }
                    }
                    Endpoint::Listener(_) => self.accept_all(st),
                    Endpoint::None => {}
                },
                t if t & T_WRITE != 0 => {
                    let conn = t as u32;
                    st.conns[conn as usize].want_out = false;
                    self.tx_flush(st, conn);
                }
                t => events.push(Event::StreamReadable { conn: t as u32 }),
            }
        }
    }
}

impl Backend for Epoll {
    fn core(&self) -> &Core {
        &self.core
    }

    fn poll(&self, _lead: &Lead<'_>, events: &mut Vec<Event>, waiting: Waiting<'_>) {
        let core = &*self.core;
        let Some(mut st) = self.leader.try_claim() else {
            tracing::error!(sap = %core.name, "two leaders on one epoll: leader/followers broken");
            return;
        };
        let st = &mut *st;
        // 1. Recycle (onto the free list), and resume what starved.
        let mut recycled = 0;
        while let Some(o) = core.returns.pop() {
            core.free.push(o);
            recycled += 1;
        }
        // Resume when buffers are free, whether just recycled or freed earlier (a stall
        // may have raced with an earlier recycle).
        let available = recycled > 0 || !core.free.is_empty();
        if available && core.starved.swap(false, Ordering::SeqCst) {
            if self.sock_starved.swap(false, Ordering::SeqCst) {
                self.rearm_endpoint();
            }
            while events.len() < events.capacity() {
                match core.stalled.pop() {
                    Some(conn) => events.push(Event::Resume { conn }),
                    None => break,
                }
            }
            if !core.stalled.is_empty() || self.sock_starved.load(Ordering::SeqCst) {
                core.starved.store(true, Ordering::SeqCst);
            }
        }
        // 2. Work from other threads, sends batched (`first` is empty here: this backend
        // publishes no connection for direct writes, but the contract drains it first).
        while let Some(i) = core.first.pop() {
            self.intent(st, i, events);
        }
        for _ in 0..core.intents.capacity() {
            if events.len() >= events.capacity() {
                break;
            }
            match core.intents.pop() {
                Some(i) => self.intent(st, i, events),
                None => break,
            }
        }
        self.flush_datagrams(st);
        if !events.is_empty() || core.stopping.load(Ordering::Acquire) {
            return;
        }
        // 3. Wait: spin, then park. (A park goes straight to the blocking wait: a
        // non-blocking look first would cost one system call more per message.)
        if let Waiting::Spin(budget) = waiting {
            let mut got = 0;
            budget.spin_until(|| {
                got = self.wait(st, 0);
                got > 0 || !core.intents.is_empty()
            });
            if got > 0 {
                self.ready(st, got, events);
            }
            if got > 0 || !core.intents.is_empty() {
                return;
            }
        }
        core.parked.store(true, Ordering::SeqCst);
        let resumable = !core.stalled.is_empty() && !core.free.is_empty();
        if !core.intents.is_empty()
            || (core.starved.load(Ordering::SeqCst) && (!core.returns.is_empty() || resumable))
            || core.stopping.load(Ordering::SeqCst)
        {
            core.parked.store(false, Ordering::SeqCst);
            return;
        }
        Counters::inc(&core.stats.parks);
        // Starved: no readiness may come to wake us, so retry the re-arm every 1 ms.
        let starved = self.sock_starved.load(Ordering::SeqCst)
            || (core.starved.load(Ordering::SeqCst) && !core.stalled.is_empty());
        let n = self.wait(st, if starved { 1 } else { -1 });
        core.parked.store(false, Ordering::SeqCst);
        self.ready(st, n, events);
    }

    fn complete(
        &self,
        ev: Event,
        scratch: &mut RecvScratch,
        sink: &mut dyn FnMut(Completion) -> Flow,
    ) {
        let core = &*self.core;
        match ev {
            Event::Readable => {
                let Some(fd) = self.endpoint.fd() else {
                    return;
                };
                for _ in 0..4 {
                    while scratch.taken.len() < BATCH {
                        match core.free.pop() {
                            Some(o) => scratch.taken.push(o),
                            None => break,
                        }
                    }
                    if scratch.taken.is_empty() {
                        self.starve_endpoint();
                        return;
                    }
                    let want = scratch.taken.len();
                    let n = match scratch.recv(fd, &core.bufs, core.gro) {
                        Ok(n) => n,
                        Err(e) => {
                            tracing::warn!(sap = %core.name, "recvmmsg: {e}");
                            0
                        }
                    };
                    let infos: [Option<socket::Received>; BATCH] =
                        std::array::from_fn(|i| (i < n).then(|| scratch.received(i)));
                    let mut bufs = scratch.taken.drain(..);
                    for info in infos.into_iter().take(n).flatten() {
                        let Some(buf) = bufs.next() else { break };
                        sink(Completion::Datagram {
                            buf,
                            off: 0,
                            len: info.len,
                            from: info
                                .from
                                .unwrap_or(std::net::SocketAddr::from(([0, 0, 0, 0], 0))),
                            truncated: info.truncated,
                            seg: info.seg.map_or(0, usize::from),
                        });
                    }
                    // Buffers the batch did not use never left user space.
                    for o in bufs {
                        core.free.push(o);
                    }
                    if n < want {
                        break;
                    }
                }
                if self.oneshot && !self.sock_starved.load(Ordering::SeqCst) {
                    self.rearm_endpoint();
                }
            }
            Event::StreamReadable { conn } => {
                let fd = self.conn_fds[conn as usize].load(Ordering::Acquire);
                if fd < 0 {
                    return;
                }
                for _ in 0..8 {
                    let Some(mut buf) = core.free.pop() else {
                        core.stall(conn);
                        return;
                    };
                    match socket::read(fd, core.bufs.write(&mut buf)) {
                        Ok(0) => {
                            core.free.push(buf);
                            sink(Completion::End { conn });
                            return;
                        }
                        Ok(n) => {
                            if sink(Completion::Chunk { conn, buf, len: n }) == Flow::Stop {
                                return;
                            }
                        }
                        Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => {
                            core.free.push(buf);
                            break;
                        }
                        Err(_) => {
                            core.free.push(buf);
                            sink(Completion::End { conn });
                            return;
                        }
                    }
                }
                self.rearm_stream(conn);
            }
            Event::StreamEnd { conn, err } => {
                if err != 0 {
                    tracing::debug!(sap = %core.name, conn, "stream ended: {}", io::Error::from_raw_os_error(err));
                }
                sink(Completion::End { conn });
            }
            Event::Resume { conn } => {
                if sink(Completion::Resume { conn }) == Flow::Continue {
                    self.rearm_stream(conn);
                }
            }
            Event::Datagram { .. } | Event::Chunk { .. } => {}
        }
    }

    fn rearm_stream(&self, conn: u32) {
        if self.closing[conn as usize].load(Ordering::Acquire) {
            if self.core.push_intent(Intent::ArmStream { conn }).is_err() {
                tracing::error!(sap = %self.core.name, "intent queue full: connection {conn} not closed");
            }
        } else {
            self.arm_read(conn, libc::EPOLL_CTL_MOD);
        }
    }

    fn shutdown(&self) {
        // Every receive here is synchronous: no buffer is ever left with the kernel.
    }
}
