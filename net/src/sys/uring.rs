//! The io_uring backend.
//!
//! - **Receives.** A UDP socket has one multishot `RECVMSG` with buffer selection from a
//!   provided-buffer ring (re-armed whenever a completion arrives without
//!   `IORING_CQE_F_MORE`). A TCP connection has one `RECV` with buffer selection at a time,
//!   re-armed after its chunk was processed: that keeps each stream's chunks in order
//!   across the pool and lets the dispatcher pause a stream; the re-arm rides in the next
//!   batched submission, so it costs no system call. Listeners have a multishot `ACCEPT`.
//! - **Registered files.** The endpoint socket is fixed file 0, connection `i` is fixed
//!   file `1 + i`; every operation names them by index.
//! - **Batched submission.** Sends, re-arms and recycled buffers queue up; the leader
//!   hands them to the kernel in the same `io_uring_enter` that waits for the next
//!   completions (`submit_and_wait`), or in one `submit` before it spins.
//! - **ENOBUFS** ends a multishot receive: the socket is marked starved, counted, and
//!   re-armed by the first `poll` that recycled buffers.
//! - **Ownership.** A buffer is the kernel's from the moment it is published in the ring
//!   (or named by a send) until a completion names it. Shutdown cancels every operation
//!   and waits for each one's last completion before the ring, the buffer ring and the
//!   buffers can go; if the kernel does not answer in time, the memory is leaked rather
//!   than freed under it.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant as StdInstant};

use io_uring::{IoUring, cqueue, opcode, squeue, types};

use crate::error::Error;
use crate::frame::Framer;
use crate::leader::Lead;
use crate::reactor::{Backend, Completion, Core, Event, Flow, Intent, Waiting};
use crate::stats::Counters;
use crate::sys::Endpoint;
use crate::sys::claim::Claim;
use crate::sys::probe::{MemlockBudget, explain_setup_error, on_own_thread};
use crate::sys::region::Owned;
use crate::sys::socket::{
    self, GRO_CTRL_LEN, GSO_MAX_BYTES, MAX_SEGMENTS, RecvScratch, SockOpts, gso_refusal,
};

const K_DGRAM: u64 = 1;
const K_ACCEPT: u64 = 2;
const K_STREAM: u64 = 3;
const K_SEND: u64 = 4;
const K_SEND_STREAM: u64 = 5;
const K_BELL: u64 = 6;
const K_CANCEL: u64 = 7;
const K_GSO: u64 = 8;

fn ud(kind: u64, idx: u32) -> u64 {
    (kind << 32) | u64::from(idx)
}

/// Iovecs per stream send (frames coalesced into one `SENDMSG`).
const TX_IOV: usize = 256;
/// Completions harvested per batch.
const HARVEST: usize = 64;
/// The buffer group of the provided-buffer ring.
const BGID: u16 = 0;
/// Name space reserved in a recvmsg buffer: a sockaddr_in6.
const NAME_LEN: usize = 28;

/// The provided-buffer ring's memory: `entries` `io_uring_buf` slots, page-aligned.
struct BufRing {
    base: NonNull<types::BufRingEntry>,
    map_len: usize,
    mask: u16,
}

impl BufRing {
    fn new(entries: u32) -> Result<BufRing, Error> {
        let bytes = entries as usize * size_of::<types::BufRingEntry>();
        let map_len = bytes.div_ceil(4096) * 4096;
        // SAFETY: an anonymous private mapping; the result is checked.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(Error::os(
                "mmap",
                "the provided-buffer ring",
                "lower `buffers`",
            ));
        }
        let base = NonNull::new(p.cast())
            .ok_or_else(|| Error::Internal("mmap returned null for the buffer ring".into()))?;
        Ok(BufRing {
            base,
            map_len,
            mask: (entries - 1) as u16,
        })
    }

    /// Writes entry `tail` (not yet visible to the kernel).
    fn put(&mut self, tail: u16, addr: *mut u8, len: u32, bid: u16) {
        let idx = usize::from(tail & self.mask);
        // Entries at or after the published tail are not read by the kernel until the
        // next publish, and the ring holds at most `entries` buffers.
        // SAFETY: idx <= mask < entries, so the entry is inside the mapping, and by the
        // above this slot is not in use.
        let e = unsafe { &mut *self.base.as_ptr().add(idx) };
        e.set_addr(addr as u64);
        e.set_len(len);
        e.set_bid(bid);
    }

    /// Makes entries up to `tail` visible to the kernel.
    fn publish(&self, tail: u16) {
        // The Release store orders the entry writes before it.
        // SAFETY: `tail` points at the ring header's tail field inside the mapping, a
        // naturally aligned u16 that the kernel reads atomically.
        unsafe {
            let t = types::BufRingEntry::tail(self.base.as_ptr()) as *mut u16;
            AtomicU16::from_ptr(t).store(tail, Ordering::Release);
        }
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // `Uring` drops it only after the ring (declared before it in `Leader`) was
        // closed, and after `shutdown` unregistered the buffer group.
        // SAFETY: so this unmaps the mapping made in `new`, once, with nobody using it.
        unsafe {
            libc::munmap(self.base.as_ptr().cast(), self.map_len);
        }
    }
}

/// A UDP send of one datagram in flight: the destination the kernel reads (a `SEND`
/// with an address: no msghdr or iovec to copy in).
struct SendMeta {
    name: libc::sockaddr_storage,
    nlen: libc::socklen_t,
}

/// A GSO send: datagrams of equal size (the last maybe shorter) in several send slots,
/// to one destination, in one `SENDMSG` with a UDP_SEGMENT control message. While it is
/// built and until its completion, the kernel-bound slots are named only here.
struct Group {
    msg: libc::msghdr,
    name: libc::sockaddr_storage,
    ctrl: [u64; 3],
    iov: Box<[libc::iovec; MAX_SEGMENTS]>,
    bids: [u16; MAX_SEGMENTS],
    n: usize,
    seg: u32,
    to: SocketAddr,
    /// A shorter datagram ended it.
    closed: bool,
}

/// Transmit state of one connection.
struct Tx {
    queue: std::collections::VecDeque<(Owned, u32)>,
    /// Slots of `queue` named by the send in flight (0: none in flight).
    inflight: usize,
    /// Bytes of the first queued slot already sent.
    sent_off: usize,
    iov: Box<[libc::iovec; TX_IOV]>,
    msg: Box<libc::msghdr>,
}

/// Leader-side state of one connection.
struct ConnL {
    fd: Option<OwnedFd>,
    rx_armed: bool,
    closing: bool,
    ended: bool,
    tx: Tx,
}

/// Everything only the leader touches.
struct Leader {
    // Field order is drop order: the ring closes before the buffer ring's memory goes.
    ring: IoUring,
    bufring: BufRing,
    tail: u16,
    /// Buffers published to the ring minus completions that took one: an upper bound of
    /// what the ring holds (exact once every completion is harvested).
    in_ring: u32,
    sock_armed: bool,
    sock_starved: bool,
    accept_armed: bool,
    bell_armed: bool,
    bell_buf: Box<u64>,
    conns: Box<[ConnL]>,
    sends: Box<[SendMeta]>,
    groups: Box<[Group]>,
    group_free: Vec<u16>,
    /// The group being built from queued datagrams (sent at the end of the batch).
    open: Option<u16>,
    /// A GSO send has succeeded on this socket. Until one has, a GSO send goes alone: the
    /// datagrams after it wait (`deferred`) for its completion, so a refusal — resent one
    /// by one — cannot reorder them.
    gso_confirmed: bool,
    /// An unconfirmed GSO send is in flight.
    gso_probe: bool,
    /// The datagram that waits for the unconfirmed GSO send's completion.
    deferred: Option<(Owned, u32, SocketAddr)>,
    /// Operations awaiting their last completion.
    inflight: u64,
    /// Single-datagram sends queued in the SQ since the last `io_uring_enter`: each posts
    /// its completion inside the enter that submits it (`MSG_DONTWAIT`: a full socket
    /// buffer refuses the datagram at once, as on the epoll backend, rather than parking
    /// the send), so a leader that submits them and then waits must wait for that many
    /// completions plus one, or the enter returns at once with nothing to do and a second
    /// enter does the waiting (one system call more per reply). Nothing waits on these
    /// completions but slot recycling and the counters (a sender out of slots, or a stats
    /// reader, wakes the leader). GSO and stream sends are not counted: a refused GSO send
    /// is resent, and a connection's next frames (or the rest of a partial send) wait for
    /// the previous send, so their completions must end the wait.
    sq_sends: u32,
    /// Completions harvested but not yet handled (when `events` filled up).
    backlog: Vec<(u64, i32, u32)>,
}

/// The io_uring reactor backend (see the module docs).
pub(crate) struct Uring {
    leader: Claim<Leader>,
    core: Arc<Core>,
    endpoint: Endpoint,
    /// Template for multishot recvmsg: only its name and control lengths are read.
    msg: Box<libc::msghdr>,
    opts: SockOpts,
    v6: bool,
    /// One thread serves this ring (single issuer, deferred task work).
    single: bool,
    /// Shutdown ran (by the pool thread for a single-issuer ring).
    finished: std::sync::atomic::AtomicBool,
}

// The raw pointers in `msg`, `Leader::groups` (msghdr, iovecs, control) and `Tx::msg/iov`
// point into heap allocations owned by this value (boxed slices that never move).
// SAFETY: they are written only by the leader (under the `Claim`) and read by the
// kernel; nothing else dereferences them, so the value may move between threads.
unsafe impl Send for Uring {}
// SAFETY: see `Send`; shared access goes through `Claim` (leader state) or atomics (core).
unsafe impl Sync for Uring {}

fn empty_msghdr() -> libc::msghdr {
    // SAFETY: msghdr is a plain C struct; all-zero is a valid empty header.
    unsafe { zeroed() }
}

impl Uring {
    /// Checks that a ring of this size can be set up here (memlock budget, setup,
    /// provided-buffer ring), without keeping it. `Err` explains what failed.
    pub(crate) fn preflight(entries: u32, nbufs: u32, single: bool) -> Result<(), String> {
        on_own_thread(|| Self::preflight_here(entries, nbufs, single))
    }

    fn preflight_here(entries: u32, nbufs: u32, single: bool) -> Result<(), String> {
        let cq = entries * 8;
        MemlockBudget::for_ring(entries, cq, nbufs).check()?;
        let ring: IoUring = Self::builder(cq, single)
            .build(entries)
            .map_err(|e| explain_setup_error(&e, 0, entries, cq, nbufs))?;
        let br = BufRing::new(nbufs).map_err(|e| e.to_string())?;
        // SAFETY: the mapping is valid for `nbufs` entries and outlives the ring, which is
        // dropped at the end of this function before `br` (declared earlier, dropped later).
        unsafe {
            ring.submitter()
                .register_buf_ring_with_flags(br.base.as_ptr() as u64, nbufs as u16, BGID, 0)
        }
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ENOMEM) {
                MemlockBudget::for_ring(entries, cq, nbufs).explain()
            } else {
                format!("IORING_REGISTER_PBUF_RING failed ({e}): the kernel lacks provided-buffer rings (5.19+)")
            }
        })?;
        drop(ring);
        drop(br);
        Ok(())
    }

    /// The ring's setup flags. A ring served by one thread (`single`) is single-issuer
    /// with deferred task work: completion work runs only inside that thread's own
    /// `io_uring_enter`, when the SQ's TASKRUN flag says some is pending, instead of being
    /// pushed to it with an inter-processor interrupt — on a VM an IPI is a VM exit, the
    /// cost busy-polling exists to avoid. It starts disabled, and the pool thread enables
    /// it (becoming its one issuer).
    fn builder(cq: u32, single: bool) -> io_uring::Builder {
        let mut b = IoUring::builder();
        b.setup_cqsize(cq);
        if single {
            b.setup_single_issuer()
                .setup_defer_taskrun()
                .setup_taskrun_flag()
                .setup_r_disabled();
        }
        b
    }

    /// Sets up the ring, the provided-buffer ring, the registered files, and arms the
    /// endpoint. Checks the memlock budget first and explains a shortfall.
    pub(crate) fn new(
        core: Arc<Core>,
        endpoint: Endpoint,
        opts: SockOpts,
        v6: bool,
        entries: u32,
        single: bool,
    ) -> Result<Uring, Error> {
        on_own_thread(move || Self::new_here(core, endpoint, opts, v6, entries, single))
    }

    fn new_here(
        core: Arc<Core>,
        endpoint: Endpoint,
        opts: SockOpts,
        v6: bool,
        entries: u32,
        single: bool,
    ) -> Result<Uring, Error> {
        let nbufs = core.bufs.count();
        let cq = entries * 8;
        MemlockBudget::for_ring(entries, cq, nbufs)
            .check()
            .map_err(Error::UringUnavailable)?;
        let ring: IoUring = Self::builder(cq, single)
            .build(entries)
            .map_err(|e| Error::UringUnavailable(explain_setup_error(&e, 0, entries, cq, nbufs)))?;
        let mut bufring = BufRing::new(nbufs)?;
        // SAFETY: the buffer ring's mapping is valid for `nbufs` entries and lives in
        // `Leader` until after the ring is closed (field order) and the group unregistered.
        unsafe {
            ring.submitter()
                .register_buf_ring_with_flags(bufring.base.as_ptr() as u64, nbufs as u16, BGID, 0)
        }
        .map_err(|e| {
            Error::UringUnavailable(format!(
                "IORING_REGISTER_PBUF_RING failed ({e}): the kernel lacks provided-buffer rings (5.19+){}",
                if e.raw_os_error() == Some(libc::ENOMEM) {
                    format!("; {}", MemlockBudget::for_ring(entries, cq, nbufs).explain())
                } else {
                    String::new()
                }
            ))
        })?;
        let nconn = core.conns.len() as u32;
        ring.submitter()
            .register_files_sparse(1 + nconn)
            .map_err(|e| {
                Error::os_from(
                    "io_uring_register(FILES_SPARSE)",
                    "the reactor ring",
                    e,
                    "raise the open-files limit (ulimit -n)",
                )
            })?;
        if let Some(fd) = endpoint.fd() {
            ring.submitter()
                .register_files_update(0, &[fd])
                .map_err(|e| {
                    Error::os_from("io_uring_register(FILES_UPDATE)", "the SAP socket", e, "")
                })?;
        }
        // Buffers: the reserve stays with user space, the rest goes to the kernel.
        let mut tail: u16 = 0;
        for bid in 0..nbufs {
            // SAFETY: a fresh region; no buffer was given to anyone yet.
            let o = unsafe { core.bufs.assume_owned(bid as u16) };
            if core.free.len() < core.reserve {
                core.free.push(o);
            } else {
                let bid = core.bufs.to_kernel(o);
                bufring.put(tail, core.bufs.addr(bid), core.bufs.size(), bid);
                tail = tail.wrapping_add(1);
            }
        }
        bufring.publish(tail);
        let mut msg = Box::new(empty_msghdr());
        msg.msg_namelen = NAME_LEN as libc::socklen_t;
        msg.msg_controllen = if core.gro { GRO_CTRL_LEN } else { 0 };
        let conns =
            (0..nconn)
                .map(|_| ConnL {
                    fd: None,
                    rx_armed: false,
                    closing: false,
                    ended: false,
                    tx: Tx {
                        queue: std::collections::VecDeque::with_capacity(
                            core.sendbufs.count() as usize
                        ),
                        inflight: 0,
                        sent_off: 0,
                        iov: Box::new(
                            [libc::iovec {
                                iov_base: std::ptr::null_mut(),
                                iov_len: 0,
                            }; TX_IOV],
                        ),
                        msg: Box::new(empty_msghdr()),
                    },
                })
                .collect();
        let sends = (0..core.sendbufs.count())
            .map(|_| SendMeta {
                // SAFETY: zeroed sockaddr_storage is valid.
                name: unsafe { zeroed() },
                nlen: 0,
            })
            .collect();
        let ngroups = core.sendbufs.count().min(64) as u16;
        let groups = (0..ngroups)
            .map(|_| Group {
                msg: empty_msghdr(),
                // SAFETY: zeroed sockaddr_storage is valid.
                name: unsafe { zeroed() },
                ctrl: [0; 3],
                iov: Box::new(
                    [libc::iovec {
                        iov_base: std::ptr::null_mut(),
                        iov_len: 0,
                    }; MAX_SEGMENTS],
                ),
                bids: [0; MAX_SEGMENTS],
                n: 0,
                seg: 0,
                to: SocketAddr::from(([0, 0, 0, 0], 0)),
                closed: false,
            })
            .collect();
        let leader = Leader {
            ring,
            bufring,
            tail,
            in_ring: u32::from(tail),
            sock_armed: false,
            sock_starved: false,
            accept_armed: false,
            bell_armed: false,
            bell_buf: Box::new(0),
            conns,
            sends,
            groups,
            group_free: (0..ngroups).rev().collect(),
            open: None,
            gso_confirmed: false,
            gso_probe: false,
            deferred: None,
            inflight: 0,
            sq_sends: 0,
            backlog: Vec::with_capacity(HARVEST),
        };
        let this = Uring {
            leader: Claim::new(leader),
            core,
            endpoint,
            msg,
            opts,
            v6,
            single,
            finished: std::sync::atomic::AtomicBool::new(false),
        };
        {
            let mut st = this
                .leader
                .try_claim()
                .ok_or_else(|| Error::Internal("fresh ring claimed".into()))?;
            // Queued, not submitted: io_uring runs a request's completion work in the
            // task that submitted it, so only pool threads may submit.
            this.arm_endpoint(&mut st);
            this.arm_bell(&mut st);
        }
        Ok(this)
    }

    /// Queues one SQE, submitting first if the queue is full. Called only on pool threads
    /// (and at set-up, where the queue has room), because the submitting task is the one
    /// that runs a request's completion work.
    fn push(&self, st: &mut Leader, e: squeue::Entry) {
        loop {
            // What entries point at: the msghdr template and bell buffer (boxed, owned by
            // self), send addresses, GSO groups and tx iovecs (boxed in `Leader`, untouched
            // until the completion), buffers owned by the kernel until their completion.
            // SAFETY: so every entry built by this backend points only at memory that
            // lives until its completion.
            let pushed = unsafe { st.ring.submission().push(&e) };
            if pushed.is_ok() {
                return;
            }
            st.sq_sends = 0;
            if let Err(err) = st.ring.submit() {
                tracing::warn!(sap = %self.core.name, "io_uring submit failed: {err}");
                return;
            }
        }
    }

    fn submit(&self, st: &mut Leader) {
        if st.ring.submission().is_empty() {
            return;
        }
        Counters::inc(&self.core.stats.submits);
        st.sq_sends = 0;
        if let Err(e) = st.ring.submit() {
            tracing::warn!(sap = %self.core.name, "io_uring submit failed: {e}");
        }
    }

    fn arm_endpoint(&self, st: &mut Leader) {
        if self.core.stopping.load(Ordering::Acquire) {
            return;
        }
        match self.endpoint {
            Endpoint::Udp(_) if !st.sock_armed => {
                let e = opcode::RecvMsgMulti::new(types::Fixed(0), &*self.msg, BGID)
                    .build()
                    .user_data(ud(K_DGRAM, 0));
                self.push(st, e);
                st.sock_armed = true;
                st.inflight += 1;
            }
            Endpoint::Listener(_) if !st.accept_armed => {
                let e = opcode::AcceptMulti::new(types::Fixed(0))
                    .flags(libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK)
                    .build()
                    .user_data(ud(K_ACCEPT, 0));
                self.push(st, e);
                st.accept_armed = true;
                st.inflight += 1;
            }
            _ => {}
        }
    }

    fn arm_bell(&self, st: &mut Leader) {
        if st.bell_armed {
            return;
        }
        let buf: *mut u64 = &mut *st.bell_buf;
        let e = opcode::Read::new(types::Fd(self.core.bell.raw()), buf.cast(), 8)
            .build()
            .user_data(ud(K_BELL, 0));
        self.push(st, e);
        st.bell_armed = true;
        st.inflight += 1;
    }

    fn arm_stream(&self, st: &mut Leader, conn: u32) {
        let c = &mut st.conns[conn as usize];
        if c.rx_armed || c.fd.is_none() {
            return;
        }
        c.rx_armed = true;
        let e = opcode::Recv::new(
            types::Fixed(1 + conn),
            std::ptr::null_mut(),
            self.core.bufs.size(),
        )
        .buf_group(BGID)
        .build()
        .flags(squeue::Flags::BUFFER_SELECT)
        .user_data(ud(K_STREAM, conn));
        self.push(st, e);
        st.inflight += 1;
    }

    /// Moves returned buffers to the reserve (up to its target) and the ring.
    fn recycle(&self, st: &mut Leader) -> usize {
        let core = &*self.core;
        let mut n = 0;
        let mut to_ring: u32 = 0;
        while let Some(o) = core.returns.pop() {
            n += 1;
            if core.free.len() < core.reserve {
                core.free.push(o);
            } else {
                let bid = core.bufs.to_kernel(o);
                st.bufring
                    .put(st.tail, core.bufs.addr(bid), core.bufs.size(), bid);
                st.tail = st.tail.wrapping_add(1);
                to_ring += 1;
            }
        }
        if to_ring > 0 {
            st.bufring.publish(st.tail);
            st.in_ring += to_ring;
        }
        n
    }

    fn adopt(&self, st: &mut Leader, idx: u32, fd: OwnedFd) {
        let core = &*self.core;
        if let Err(e) = st
            .ring
            .submitter()
            .register_files_update(1 + idx, &[fd.as_raw_fd()])
        {
            tracing::warn!(sap = %core.name, "registering connection {idx}: {e}");
            Counters::inc(&core.stats.rejected);
            core.free_conn(idx);
            return;
        }
        let c = &mut st.conns[idx as usize];
        core.conns[idx as usize]
            .direct
            .store(fd.as_raw_fd(), Ordering::Relaxed);
        c.fd = Some(fd);
        c.closing = false;
        c.ended = false;
        c.tx.inflight = 0;
        c.tx.sent_off = 0;
        Counters::inc(&core.stats.accepted);
        self.arm_stream(st, idx);
    }

    fn accepted(&self, st: &mut Leader, fd: OwnedFd) {
        let core = &*self.core;
        let Some(idx) = core.conn_free.pop() else {
            Counters::inc(&core.stats.rejected);
            return;
        };
        if let Err(e) = socket::prepare_stream(fd.as_raw_fd(), self.v6, &self.opts) {
            tracing::warn!(sap = %core.name, "accepted connection: {e}");
        }
        let peer = socket::peer_addr(fd.as_raw_fd()).unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0)));
        match core.conns[idx as usize].rx.try_claim() {
            Some(mut rx) => {
                rx.framer = Framer::new(core.max_frame);
                rx.peer = peer;
                rx.asm = None;
                rx.rest = None;
                rx.pending = None;
            }
            None => {
                tracing::error!(sap = %core.name, "free connection slot {idx} is in use");
                return;
            }
        }
        core.conns[idx as usize].open.store(true, Ordering::Release);
        self.adopt(st, idx, fd);
    }

    fn tx_kick(&self, st: &mut Leader, conn: u32) {
        let core = &*self.core;
        let c = &mut st.conns[conn as usize];
        if c.tx.inflight > 0 || c.tx.queue.is_empty() || c.fd.is_none() {
            return;
        }
        let n = c.tx.queue.len().min(TX_IOV);
        for (i, (slot, len)) in c.tx.queue.iter().take(n).enumerate() {
            let skip = if i == 0 { c.tx.sent_off } else { 0 };
            // SAFETY: `skip` is below the slot's length (a partly sent slot keeps at
            // least one unsent byte), so the pointer stays inside the slot.
            let base = unsafe { core.sendbufs.addr(slot.bid()).add(skip) };
            c.tx.iov[i] = libc::iovec {
                iov_base: base.cast(),
                iov_len: *len as usize - skip,
            };
        }
        c.tx.msg.msg_iov = c.tx.iov.as_mut_ptr();
        c.tx.msg.msg_iovlen = n;
        c.tx.inflight = n;
        let e = opcode::SendMsg::new(types::Fixed(1 + conn), &*c.tx.msg)
            .flags((libc::MSG_NOSIGNAL | libc::MSG_WAITALL) as u32)
            .build()
            .user_data(ud(K_SEND_STREAM, conn));
        self.push(st, e);
        st.inflight += 1;
        core.conns[conn as usize]
            .tx_busy
            .store(true, Ordering::SeqCst);
    }

    fn tx_done(&self, st: &mut Leader, conn: u32, res: i32) {
        let core = &*self.core;
        // Before anything else: frames queued from now on must wake us if we park.
        core.conns[conn as usize]
            .tx_busy
            .store(false, Ordering::SeqCst);
        let c = &mut st.conns[conn as usize];
        let n = std::mem::take(&mut c.tx.inflight);
        if res < 0 {
            // The connection is broken; its receive side sees the error and closes it.
            for _ in 0..n {
                if let Some((slot, _)) = c.tx.queue.pop_front() {
                    core.send_free.push(slot);
                    Counters::inc(&core.stats.send_errors);
                }
            }
            c.tx.sent_off = 0;
        } else {
            let mut left = res as usize;
            while let Some((_, len)) = c.tx.queue.front() {
                let rest = *len as usize - c.tx.sent_off;
                if left < rest {
                    c.tx.sent_off += left;
                    break;
                }
                left -= rest;
                c.tx.sent_off = 0;
                if let Some((slot, _)) = c.tx.queue.pop_front() {
                    core.send_free.push(slot);
                    Counters::inc(&core.stats.sent);
                }
            }
        }
        self.tx_kick(st, conn);
        self.try_finalize(st, conn);
    }

    fn try_finalize(&self, st: &mut Leader, conn: u32) {
        let core = &*self.core;
        let c = &mut st.conns[conn as usize];
        if !c.ended || c.rx_armed || c.tx.inflight > 0 || c.fd.is_none() {
            return;
        }
        if let Err(e) = st.ring.submitter().register_files_update(1 + conn, &[-1]) {
            tracing::warn!(sap = %core.name, "unregistering connection {conn}: {e}");
        }
        core.conns[conn as usize]
            .direct
            .store(-1, Ordering::Relaxed);
        c.fd = None;
        while let Some((slot, _)) = c.tx.queue.pop_front() {
            core.send_free.push(slot);
            Counters::inc(&core.stats.send_errors);
        }
        c.tx.sent_off = 0;
        c.closing = false;
        c.ended = false;
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
                self.queue_datagram(st, slot, len, to);
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
                c.tx.queue.push_back((slot, len));
                self.tx_kick(st, conn);
            }
            Intent::ArmStream { conn } => {
                let c = &st.conns[conn as usize];
                if c.closing {
                    events.push(Event::StreamEnd { conn, err: 0 });
                } else {
                    self.arm_stream(st, conn);
                }
            }
            Intent::Close { conn } => {
                let c = &mut st.conns[conn as usize];
                if c.fd.is_none() || c.closing {
                    return;
                }
                c.closing = true;
                core.conns[conn as usize]
                    .direct
                    .store(-1, Ordering::Relaxed);
                if c.rx_armed {
                    let e = opcode::AsyncCancel::new(ud(K_STREAM, conn))
                        .build()
                        .user_data(ud(K_CANCEL, conn));
                    self.push(st, e);
                    st.inflight += 1;
                }
            }
            Intent::Ended { conn } => {
                let c = &mut st.conns[conn as usize];
                c.closing = true;
                core.conns[conn as usize]
                    .direct
                    .store(-1, Ordering::Relaxed);
                c.ended = true;
                self.try_finalize(st, conn);
            }
            Intent::Adopt { conn, fd } => self.adopt(st, conn, fd),
        }
    }

    /// Queues a datagram: it joins the open GSO group when that goes to `to` in segments
    /// of at least `len` bytes and the limits allow, or starts one; without GSO (or a free
    /// group) it goes alone.
    fn queue_datagram(&self, st: &mut Leader, slot: Owned, len: u32, to: SocketAddr) {
        let core = &*self.core;
        let gso_max = core.gso_max.load(Ordering::Relaxed);
        let l = len as usize;
        let joins = st.open.is_some_and(|g| {
            let grp = &st.groups[g as usize];
            let seg = grp.seg as usize;
            grp.to == to
                && !grp.closed
                && l > 0
                && l <= seg
                && grp.seg <= gso_max
                && grp.n < MAX_SEGMENTS
                && seg * grp.n + l <= GSO_MAX_BYTES
        });
        if !joins {
            self.flush_group(st);
            if st.gso_probe {
                st.deferred = Some((slot, len, to));
                return;
            }
        }
        let bid = core.bufs_send_to_kernel(slot);
        if let Some(g) = st.open {
            // It joins (a group still open after the flush above is one it joins).
            let grp = &mut st.groups[g as usize];
            grp.iov[grp.n] = libc::iovec {
                iov_base: core.sendbufs.addr(bid).cast(),
                iov_len: l,
            };
            grp.bids[grp.n] = bid;
            grp.n += 1;
            grp.closed = l < grp.seg as usize;
            if grp.closed || grp.n == MAX_SEGMENTS {
                self.flush_group(st);
            }
            return;
        }
        if l > 0
            && len <= gso_max
            && let Some(g) = st.group_free.pop()
        {
            let grp = &mut st.groups[g as usize];
            grp.iov[0] = libc::iovec {
                iov_base: core.sendbufs.addr(bid).cast(),
                iov_len: l,
            };
            grp.bids[0] = bid;
            grp.n = 1;
            grp.seg = len;
            grp.to = to;
            grp.closed = false;
            st.open = Some(g);
            return;
        }
        self.send_single(st, bid, len, &to);
    }

    /// Submits the open group: one `SENDMSG` with UDP_SEGMENT, or a plain send for one.
    fn flush_group(&self, st: &mut Leader) {
        let Some(g) = st.open.take() else {
            return;
        };
        let grp = &mut st.groups[g as usize];
        if grp.n == 1 {
            let (bid, len, to) = (grp.bids[0], grp.iov[0].iov_len as u32, grp.to);
            grp.n = 0;
            st.group_free.push(g);
            self.send_single(st, bid, len, &to);
            return;
        }
        grp.msg = empty_msghdr();
        // To the connected peer: no address (the socket's cached route).
        if !self.core.to_peer(&grp.to) {
            let (name, nlen) = socket::to_sockaddr(&grp.to);
            grp.name = name;
            grp.msg.msg_name = (&mut grp.name as *mut libc::sockaddr_storage).cast();
            grp.msg.msg_namelen = nlen;
        }
        grp.msg.msg_iov = grp.iov.as_mut_ptr();
        grp.msg.msg_iovlen = grp.n;
        grp.msg.msg_controllen = socket::gso_cmsg(&mut grp.ctrl, grp.seg as u16);
        grp.msg.msg_control = grp.ctrl.as_mut_ptr().cast();
        st.gso_probe = !st.gso_confirmed;
        let e = opcode::SendMsg::new(types::Fixed(0), &grp.msg)
            .flags(libc::MSG_DONTWAIT as u32)
            .build()
            .user_data(ud(K_GSO, u32::from(g)));
        self.push(st, e);
        st.inflight += 1;
    }

    /// Submits one datagram (send slot `bid`, `len` bytes) to `to`.
    fn send_single(&self, st: &mut Leader, bid: u16, len: u32, to: &SocketAddr) {
        let core = &*self.core;
        let send = opcode::Send::new(types::Fixed(0), core.sendbufs.addr(bid), len)
            .flags(libc::MSG_DONTWAIT);
        // To the connected peer: no address, so the kernel uses the socket's cached route
        // instead of a lookup per datagram.
        let e = if core.to_peer(to) {
            send.build()
        } else {
            let m = &mut st.sends[bid as usize];
            (m.name, m.nlen) = socket::to_sockaddr(to);
            send.dest_addr((&m.name as *const libc::sockaddr_storage).cast())
                .dest_addr_len(m.nlen)
                .build()
        }
        .user_data(ud(K_SEND, u32::from(bid)));
        self.push(st, e);
        st.sq_sends += 1;
        st.inflight += 1;
    }

    /// Sends a lone datagram with one non-blocking `send(2)` (no address to the connected
    /// peer) instead of an io_uring `SEND`: with one message in flight there is nothing to
    /// batch, and on the measured VM the system call reaches the peer's wake-up about 2 µs
    /// sooner than the submitted operation (bench/RESULTS.md, issue 5). The slot comes
    /// back at once and no completion follows. A full socket buffer refuses the datagram,
    /// as the `MSG_DONTWAIT` operation would (counted in `send_errors`).
    fn send_direct(&self, slot: Owned, len: u32, to: &SocketAddr) {
        let core = &*self.core;
        if let Some(fd) = self.endpoint.fd() {
            let bytes = core.sendbufs.read(&slot);
            let bytes = &bytes[..(len as usize).min(bytes.len())];
            let dest = (!core.to_peer(to)).then_some(to);
            Counters::inc(&core.stats.submits);
            match socket::send_datagram(fd, bytes, dest) {
                Ok(_) => Counters::inc(&core.stats.sent),
                Err(_) => Counters::inc(&core.stats.send_errors),
            }
        }
        core.send_free.push(slot);
    }

    /// A GSO send completed with `res`.
    fn group_done(&self, st: &mut Leader, g: u16, res: i32) {
        let core = &*self.core;
        let grp = &mut st.groups[g as usize];
        let n = std::mem::take(&mut grp.n);
        let (bids, to, seg) = (grp.bids, grp.to, grp.seg);
        let lens: [u32; MAX_SEGMENTS] = std::array::from_fn(|i| grp.iov[i].iov_len as u32);
        st.group_free.push(g);
        st.gso_probe = false;
        if res >= 0 {
            st.gso_confirmed = true;
            Counters::inc(&core.stats.gso_sends);
            core.stats.sent.fetch_add(n as u64, Ordering::Relaxed);
        } else if let Some(limit) = gso_refusal(-res, seg) {
            // Nothing was sent: the same datagrams go out one by one.
            core.narrow_gso(limit, 1);
            for i in 0..n {
                self.send_single(st, bids[i], lens[i], &to);
            }
            return;
        } else {
            core.stats
                .send_errors
                .fetch_add(n as u64, Ordering::Relaxed);
        }
        for bid in &bids[..n] {
            // SAFETY: the send's completion names its group, and the group names these
            // slots: the kernel is done with them.
            let slot = unsafe { core.sendbufs.assume_owned(*bid) };
            core.send_free.push(slot);
        }
    }

    fn cqe(&self, st: &mut Leader, (data, res, flags): (u64, i32, u32), events: &mut Vec<Event>) {
        let core = &*self.core;
        let idx = data as u32;
        if cqueue::buffer_select(flags).is_some() {
            st.in_ring = st.in_ring.saturating_sub(1);
        }
        match data >> 32 {
            K_DGRAM => {
                let more = cqueue::more(flags);
                if res >= 0 {
                    if let Some(bid) = cqueue::buffer_select(flags) {
                        events.push(Event::Datagram {
                            bid,
                            len: res as u32,
                        });
                    }
                } else if res == -libc::ENOBUFS {
                    st.sock_starved = true;
                    core.starved.store(true, Ordering::SeqCst);
                    Counters::inc(&core.stats.enobufs);
                } else if res != -libc::ECANCELED {
                    tracing::warn!(sap = %core.name, "multishot recvmsg ended: {}", io::Error::from_raw_os_error(-res));
                }
                if !more {
                    st.sock_armed = false;
                    st.inflight -= 1;
                    if !st.sock_starved {
                        self.arm_endpoint(st);
                    }
                }
            }
            K_STREAM => {
                st.inflight -= 1;
                let c = &mut st.conns[idx as usize];
                c.rx_armed = false;
                let closing = c.closing;
                if res > 0 {
                    if let Some(bid) = cqueue::buffer_select(flags) {
                        if closing {
                            // SAFETY: the completion names `bid`: the kernel is done with it
                            // and nothing else holds it.
                            core.give_back(unsafe { core.bufs.assume_owned(bid) });
                            events.push(Event::StreamEnd { conn: idx, err: 0 });
                        } else {
                            events.push(Event::Chunk {
                                conn: idx,
                                bid,
                                len: res as u32,
                            });
                        }
                    }
                } else if res == -libc::ENOBUFS && !closing {
                    core.stall(idx);
                } else {
                    events.push(Event::StreamEnd {
                        conn: idx,
                        err: -res,
                    });
                }
                self.try_finalize(st, idx);
            }
            K_ACCEPT => {
                if !cqueue::more(flags) {
                    st.accept_armed = false;
                    st.inflight -= 1;
                    self.arm_endpoint(st);
                }
                if res >= 0 {
                    // SAFETY: a successful accept completion returns a new descriptor that
                    // nothing else owns.
                    let fd = unsafe { OwnedFd::from_raw_fd(res) };
                    self.accepted(st, fd);
                }
            }
            K_SEND => {
                st.inflight -= 1;
                // SAFETY: the send's completion names its slot: the kernel is done with it.
                let slot = unsafe { core.sendbufs.assume_owned(idx as u16) };
                core.send_free.push(slot);
                if res < 0 {
                    Counters::inc(&core.stats.send_errors);
                } else {
                    Counters::inc(&core.stats.sent);
                }
            }
            K_SEND_STREAM => {
                st.inflight -= 1;
                self.tx_done(st, idx, res);
            }
            K_GSO => {
                st.inflight -= 1;
                self.group_done(st, idx as u16, res);
            }
            K_BELL => {
                st.inflight -= 1;
                st.bell_armed = false;
            }
            _ => {
                st.inflight -= 1;
            }
        }
    }

    /// Handles completions until the queue is empty or `events` is full.
    fn harvest(&self, st: &mut Leader, events: &mut Vec<Event>) {
        loop {
            let room = events.capacity().saturating_sub(events.len());
            if room == 0 {
                return;
            }
            if st.backlog.is_empty() {
                let mut cq = st.ring.completion();
                for e in cq.by_ref().take(HARVEST.min(room)) {
                    st.backlog.push((e.user_data(), e.result(), e.flags()));
                }
            }
            if st.backlog.is_empty() {
                return;
            }
            let mut batch = std::mem::take(&mut st.backlog);
            let mut done = 0;
            for c in batch.iter() {
                if events.len() >= events.capacity() {
                    break;
                }
                self.cqe(st, *c, events);
                done += 1;
            }
            batch.drain(..done);
            st.backlog = batch;
        }
    }

    /// Runs deferred completion work (the TASKRUN flag is set) without waiting: the
    /// crate's `submit` enters with GETEVENTS when that flag is up.
    fn run_task_work(st: &mut Leader) {
        st.sq_sends = 0;
        let _ = st.ring.submit();
    }

    fn has_completions(st: &mut Leader) -> bool {
        !st.backlog.is_empty() || !st.ring.completion().is_empty()
    }
}

impl Core {
    /// Gives a send slot to the kernel.
    fn bufs_send_to_kernel(&self, slot: Owned) -> u16 {
        self.sendbufs.to_kernel(slot)
    }
}

impl Backend for Uring {
    fn core(&self) -> &Core {
        &self.core
    }

    fn poll(&self, _lead: &Lead<'_>, events: &mut Vec<Event>, waiting: Waiting<'_>) {
        let core = &*self.core;
        let Some(mut st) = self.leader.try_claim() else {
            tracing::error!(sap = %core.name, "two leaders on one io_uring: leader/followers broken");
            return;
        };
        let st = &mut *st;
        // 1. Recycle, and resume what starved.
        // Resume when buffers exist anywhere user space can hand out: just recycled, still
        // in the ring (a stall may have raced with an earlier recycle), or in the reserve.
        let recycled = self.recycle(st);
        let available = recycled > 0 || st.in_ring > 0 || !core.free.is_empty();
        if available && core.starved.swap(false, Ordering::SeqCst) {
            if st.sock_starved {
                st.sock_starved = false;
                self.arm_endpoint(st);
            }
            while events.len() < events.capacity() {
                match core.stalled.pop() {
                    Some(conn) => events.push(Event::Resume { conn }),
                    None => break,
                }
            }
            if !core.stalled.is_empty() || st.sock_starved {
                core.starved.store(true, Ordering::SeqCst);
            }
        }
        // 2. Work from other threads (a datagram deferred behind an unconfirmed GSO send
        // first, once that completed).
        if !st.gso_probe
            && let Some((slot, len, to)) = st.deferred.take()
        {
            self.queue_datagram(st, slot, len, to);
        }
        while let Some(i) = core.first.pop() {
            self.intent(st, i, events);
        }
        for n in 0..core.intents.capacity() {
            if events.len() >= events.capacity() || st.deferred.is_some() {
                break;
            }
            match core.intents.pop() {
                // A lone datagram (the first intent, none behind it, nothing of ours
                // still to go before it) has nothing to batch with: see `send_direct`.
                Some(Intent::SendTo { slot, len, to })
                    if n == 0
                        && core.intents.is_empty()
                        && st.open.is_none()
                        && !st.gso_probe
                        && matches!(self.endpoint, Endpoint::Udp(_)) =>
                {
                    self.send_direct(slot, len, &to);
                }
                Some(i) => self.intent(st, i, events),
                None => break,
            }
        }
        self.flush_group(st);
        self.arm_bell(st);
        // 3. Completions already there.
        self.harvest(st, events);
        if !events.is_empty() || core.stopping.load(Ordering::Acquire) {
            self.submit(st);
            return;
        }
        // 4. Spin, then park.
        if let Waiting::Spin(budget) = waiting {
            self.submit(st);
            let got = budget.spin_until(|| {
                Self::has_completions(st)
                    || st.ring.submission().taskrun()
                    || !core.intents.is_empty()
            });
            if got {
                if st.ring.submission().taskrun() {
                    Self::run_task_work(st);
                }
                self.harvest(st, events);
                return;
            }
        }
        // The bell's read may have completed in a harvest above: it must be armed before
        // we block, or a wake-up would be lost.
        self.arm_bell(st);
        core.parked.store(true, Ordering::SeqCst);
        let resumable = !core.stalled.is_empty() && (st.in_ring > 0 || !core.free.is_empty());
        // (Completions already in the queue — posted by a submit meanwhile — are taken
        // now: the wait below counts only what its own submission posts.)
        if !core.intents.is_empty()
            || (core.starved.load(Ordering::SeqCst) && (!core.returns.is_empty() || resumable))
            || core.stopping.load(Ordering::SeqCst)
            || Self::has_completions(st)
        {
            core.parked.store(false, Ordering::SeqCst);
            self.submit(st);
            return;
        }
        Counters::inc(&core.stats.parks);
        if !st.ring.submission().is_empty() {
            Counters::inc(&core.stats.submits);
        }
        // Starved with buffers published (the kernel saw an empty ring a moment ago, or
        // disagrees with our count): no completion may come to wake us, so park for at
        // most 1 ms and retry the re-arm then.
        let starved =
            st.sock_starved || (core.starved.load(Ordering::SeqCst) && !core.stalled.is_empty());
        // Submit and wait in one enter: wait past the completions the submitted datagram
        // sends post at once (see `sq_sends`; they never wait in the kernel). If nothing
        // more comes (a one-way sender), their completions stay in the queue until the
        // next wake-up, which running out of send slots or reading the stats prompts.
        let want = st.sq_sends as usize + 1;
        if st.sq_sends > 0 {
            core.lingering.store(true, Ordering::SeqCst);
        }
        st.sq_sends = 0;
        let waited = if starved {
            let ts = types::Timespec::new().nsec(1_000_000);
            let args = types::SubmitArgs::new().timespec(&ts);
            st.ring.submitter().submit_with_args(want, &args)
        } else {
            st.ring.submit_and_wait(want)
        };
        match waited {
            Err(e) if e.raw_os_error() == Some(libc::ETIME) => {}
            Ok(_) => {}
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINTR) | Some(libc::EBUSY)) => {}
            Err(e) => tracing::warn!(sap = %core.name, "io_uring_enter failed: {e}"),
        }
        core.parked.store(false, Ordering::SeqCst);
        core.lingering.store(false, Ordering::SeqCst);
        self.harvest(st, events);
    }

    fn complete(
        &self,
        ev: Event,
        _scratch: &mut RecvScratch,
        sink: &mut dyn FnMut(Completion) -> Flow,
    ) {
        let core = &*self.core;
        match ev {
            Event::Datagram { bid, len } => {
                // SAFETY: the completion named `bid`: the kernel wrote it and gave it up.
                let buf = unsafe { core.bufs.assume_owned(bid) };
                let whole = &core.bufs.read(&buf)[..(len as usize).min(core.bufs.size() as usize)];
                match types::RecvMsgOut::parse(whole, &self.msg) {
                    Ok(out) => {
                        let seg = socket::gro_segment(out.control_data()).map_or(0, usize::from);
                        let from = socket::from_sockaddr_bytes(out.name_data())
                            .unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0)));
                        let off = out.payload_data().as_ptr() as usize - whole.as_ptr() as usize;
                        let plen = out.payload_data().len();
                        let truncated = out.is_payload_truncated();
                        sink(Completion::Datagram {
                            buf,
                            off,
                            len: plen,
                            from,
                            truncated,
                            seg,
                        });
                    }
                    Err(()) => {
                        Counters::inc(&core.stats.truncated);
                        core.give_back(buf);
                    }
                }
            }
            Event::Chunk { conn, bid, len } => {
                // SAFETY: the completion named `bid`: the kernel wrote it and gave it up.
                let buf = unsafe { core.bufs.assume_owned(bid) };
                let flow = sink(Completion::Chunk {
                    conn,
                    buf,
                    len: len as usize,
                });
                if flow == Flow::Continue {
                    self.rearm_stream(conn);
                }
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
            Event::Readable | Event::StreamReadable { .. } => {}
        }
    }

    fn sends_idle(&self) -> bool {
        self.leader
            .try_claim()
            .is_some_and(|st| st.open.is_none() && !st.gso_probe && st.deferred.is_none())
    }

    fn rearm_stream(&self, conn: u32) {
        if self.core.push_intent(Intent::ArmStream { conn }).is_err() {
            tracing::error!(sap = %self.core.name, "intent queue full: connection {conn} not re-armed");
        }
    }

    fn attach(&self) {
        if !self.single {
            return;
        }
        if let Some(st) = self.leader.try_claim()
            && let Err(e) = st.ring.submitter().register_enable_rings()
        {
            tracing::error!(sap = %self.core.name, "enabling the ring: {e}");
        }
    }

    fn detach(&self) {
        if self.single {
            // The one issuer must cancel and drain: nobody else may enter this ring.
            self.shutdown_here();
        }
    }

    fn shutdown(&self) {
        if self.finished.load(Ordering::Acquire) {
            return;
        }
        if self.single {
            // The pool thread exited without detaching (it panicked): its exit cancelled
            // its requests, but nobody saw them finish, so keep the memory.
            tracing::error!(sap = %self.core.name, "io_uring reactor stopped without draining; leaking its buffers");
            std::mem::forget(Arc::clone(&self.core));
            return;
        }
        on_own_thread(|| self.shutdown_here());
    }
}

impl Uring {
    fn shutdown_here(&self) {
        if self.finished.swap(true, Ordering::AcqRel) {
            return;
        }
        let core = &*self.core;
        let Some(mut st) = self.leader.try_claim() else {
            return;
        };
        let st = &mut *st;
        let mut targets = Vec::new();
        if st.sock_armed {
            targets.push(ud(K_DGRAM, 0));
        }
        if st.accept_armed {
            targets.push(ud(K_ACCEPT, 0));
        }
        if st.bell_armed {
            targets.push(ud(K_BELL, 0));
        }
        for (i, c) in st.conns.iter().enumerate() {
            if c.rx_armed {
                targets.push(ud(K_STREAM, i as u32));
            }
        }
        for t in targets {
            let e = opcode::AsyncCancel::new(t)
                .build()
                .user_data(ud(K_CANCEL, 0));
            self.push(st, e);
            st.inflight += 1;
        }
        let deadline = StdInstant::now() + Duration::from_secs(2);
        let mut events = Vec::with_capacity(HARVEST);
        let ts = types::Timespec::new().nsec(20_000_000);
        while st.inflight > 0 && StdInstant::now() < deadline {
            let args = types::SubmitArgs::new().timespec(&ts);
            let _ = st.ring.submitter().submit_with_args(1, &args);
            events.clear();
            self.harvest(st, &mut events);
            for ev in events.drain(..) {
                if let Event::Datagram { bid, .. } | Event::Chunk { bid, .. } = ev {
                    // SAFETY: the completion named `bid`; the kernel gave it up.
                    core.give_back(unsafe { core.bufs.assume_owned(bid) });
                }
            }
        }
        if st.inflight > 0 {
            tracing::error!(
                sap = %core.name,
                "{} io_uring operations did not complete after cancel; leaking their memory rather than freeing it under the kernel",
                st.inflight
            );
            std::mem::forget(Arc::clone(&self.core));
            return;
        }
        if let Err(e) = st.ring.submitter().unregister_buf_ring(BGID) {
            tracing::warn!(sap = %core.name, "unregistering the buffer ring: {e}");
        }
    }
}
