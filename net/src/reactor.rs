//! The reactor contract, and the state a reactor shares with its pool and consumers.
//!
//! Like mio's selector, one documented contract is met by every backend
//! ([`crate::sys::uring`] and [`crate::sys::epoll`]); the pool, the dispatcher and the
//! SAP are written once against it. The contract is completion-shaped, because io_uring
//! is: a backend hands out received bytes already in a buffer. epoll meets it by doing
//! the receive itself when a socket is ready.
//!
//! ## The contract ([`Backend`])
//!
//! 1. **`poll` is for the leader only** (it takes `&Lead`). It first *submits*: it
//!    recycles every buffer in the return queue (io_uring: into the provided-buffer ring;
//!    epoll: onto the free list), re-arms receives that stopped for lack of buffers, and
//!    hands queued sends and re-arms ([`Intent`]s) to the kernel in one batch. Then it
//!    *waits* — spinning within the [`SpinBudget`] when given one, then blocking — until
//!    at least one event, a wake-up through the core's eventfd, or shutdown. It handles
//!    bookkeeping completions itself (sends, accepts, closes) and returns the receive
//!    events in `events`, without processing them.
//! 2. The leader then promotes a follower, and calls **`complete`** for each event: it
//!    turns the event into [`Completion`]s carrying an [`Owned`] buffer (io_uring: the
//!    buffer the kernel picked; epoll: it reads the socket into free buffers). `complete`
//!    may run on several threads at once, but never for two events of one TCP connection
//!    at a time: a connection has at most one receive outstanding, re-armed only after
//!    its completion was processed (**`rearm_stream`**), which is also how a connection
//!    is paused.
//! 3. **Buffers**: a buffer belongs to the kernel from the moment it is published or
//!    named by an operation until a completion names it — also after a cancel. The
//!    backends never touch such a buffer, and `shutdown` waits for the last completion
//!    before the memory can go.
//! 4. **Starvation**: with no free buffer, a receive stops (io_uring: ENOBUFS ends the
//!    multishot receive; epoll: the socket is disarmed). It is counted in `enobufs`, the
//!    core is marked starved, and the next `poll` after buffers came back re-arms it.
//!    A consumer returning a buffer to a starved core wakes a parked leader.
//! 5. **Wake-up**: anyone may push an intent and call [`Core::wake_leader`]; a leader
//!    blocked in the kernel returns within one wake-up.

use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, Ordering};

use crossbeam_queue::ArrayQueue;

use crate::error::Error;
use crate::frame::Framer;
use crate::leader::{Lead, Leadership};
use crate::stats::Counters;
use crate::sys::claim::Claim;
use crate::sys::eventfd::EventFd;
use crate::sys::region::{Buffers, Lease, Owned, OwnedQueue};
use crate::sys::socket::RecvScratch;
use crate::throttle::SpinBudget;

/// Which backend runs a reactor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendKind {
    /// io_uring with multishot receives and a provided-buffer ring.
    IoUring,
    /// epoll with non-blocking sockets and recvmmsg/sendmmsg.
    Epoll,
}

impl std::fmt::Display for BackendKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BackendKind::IoUring => "io_uring",
            BackendKind::Epoll => "epoll",
        })
    }
}

/// A receive event returned by `poll`, processed after promotion by `complete`.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Event {
    /// io_uring: a datagram landed in buffer `bid` (`len` bytes incl. the recvmsg header).
    Datagram { bid: u16, len: u32 },
    /// epoll: the datagram socket is readable.
    Readable,
    /// io_uring: `len` bytes of stream `conn` landed in buffer `bid`.
    Chunk { conn: u32, bid: u16, len: u32 },
    /// epoll: stream `conn` is readable.
    StreamReadable { conn: u32 },
    /// Stream `conn` ended (EOF, or the error `err`).
    StreamEnd { conn: u32, err: i32 },
    /// Stream `conn` was paused for lack of buffers; buffers are back.
    Resume { conn: u32 },
}

/// Received data, owned by user space.
pub(crate) enum Completion {
    /// A datagram: payload `len` bytes at `off` of `buf`. With `seg` > 0 (UDP GRO) the
    /// payload is several datagrams of `seg` bytes back to back, the last maybe shorter.
    Datagram {
        buf: Owned,
        off: usize,
        len: usize,
        from: SocketAddr,
        truncated: bool,
        seg: usize,
    },
    /// `len` bytes of stream `conn`, from the start of `buf`.
    Chunk { conn: u32, buf: Owned, len: usize },
    /// Stream `conn` ended.
    End { conn: u32 },
    /// Stream `conn` may continue where it was paused.
    Resume { conn: u32 },
}

/// Whether `complete` should go on with the event (more datagrams / chunks, re-arm).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Flow {
    /// Go on.
    Continue,
    /// The stream is paused (or closed): do not re-arm it.
    Stop,
}

/// Work handed to the leader by other threads.
pub(crate) enum Intent {
    /// Send `len` bytes of send slot `slot` to `to`.
    SendTo {
        slot: Owned,
        len: u32,
        to: SocketAddr,
    },
    /// Send `len` bytes (already framed) of `slot` on connection `conn` of generation
    /// `generation`.
    SendStream {
        slot: Owned,
        len: u32,
        conn: u32,
        generation: u32,
    },
    /// Re-arm the receive of connection `conn` (io_uring).
    ArmStream { conn: u32 },
    /// Close connection `conn` (asked by a user): stop receiving, then finish.
    Close { conn: u32 },
    /// The dispatcher has processed the end of stream `conn` and dropped its receive
    /// state; the backend closes it once its sends are done.
    Ended { conn: u32 },
    /// Start serving an outgoing connection set up in slot `conn`.
    Adopt { conn: u32, fd: OwnedFd },
}

/// What the leader waits with.
pub(crate) enum Waiting<'a> {
    /// Block until an event.
    Park,
    /// Spin within the budget, then block.
    Spin(&'a mut SpinBudget),
}

/// One backend (see the module docs for the contract).
pub(crate) trait Backend: Send + Sync {
    /// The shared state.
    fn core(&self) -> &Core;
    /// Leader only: submit, then wait for receive events (contract point 1).
    fn poll(&self, lead: &Lead<'_>, events: &mut Vec<Event>, waiting: Waiting<'_>);
    /// After promotion: turn `ev` into completions (contract point 2).
    fn complete(
        &self,
        ev: Event,
        scratch: &mut RecvScratch,
        sink: &mut dyn FnMut(Completion) -> Flow,
    );
    /// Re-arm the receive of stream `conn` after its completion was processed.
    fn rearm_stream(&self, conn: u32);
    /// Leader only, after `poll`: nothing of this reactor's waits to be sent before a new
    /// datagram (so one sent directly cannot overtake it). `false` when unsure.
    fn sends_idle(&self) -> bool {
        false
    }
    /// Called once by each pool thread before its first `poll`.
    fn attach(&self) {}
    /// Called by a pool thread as it exits (after the stop flag was seen).
    fn detach(&self) {}
    /// Stop: cancel every operation and wait for the kernel to give every buffer back.
    /// Called once, after the pool threads exited.
    fn shutdown(&self);
}

/// One TCP connection slot.
pub(crate) struct Conn {
    /// Bumped at every close, so stale [`crate::ConnId`]s are refused.
    pub generation: AtomicU32,
    /// Open for sends.
    pub open: AtomicBool,
    /// io_uring: a send is in flight on this connection, and its completion will wake
    /// the leader, which then takes newly queued frames: a sender need not wake it.
    pub tx_busy: AtomicBool,
    /// io_uring: the connection's socket while it is open, not closing, and served by
    /// this reactor (-1 otherwise): set and cleared by the reactor's leader, and read only
    /// by the pool thread of a single-thread reactor (the same thread) for an inline
    /// handler's direct reply (see [`Core::take_lone_stream`]). epoll leaves it at -1: it
    /// writes queued frames itself in the next poll, without a ring to go through.
    pub direct: AtomicI32,
    /// Receive state; held by the one thread processing this connection's completion.
    pub rx: Claim<Rx>,
}

/// Receive state of one connection.
pub(crate) struct Rx {
    pub framer: Framer,
    pub peer: SocketAddr,
    /// The frame being assembled: its buffer and bytes filled.
    pub asm: Option<(Owned, usize)>,
    /// A chunk whose processing was paused at `pos` (no assembly buffer was free, or
    /// the destination was full).
    pub rest: Option<(Lease, usize)>,
    /// A frame waiting for room in destination `.1` (backpressure).
    pub pending: Option<(crate::handoff::Handle, u16)>,
}

/// State one reactor shares with its pool threads, its senders and its consumers.
pub(crate) struct Core {
    pub name: String,
    pub shard: u16,
    /// Receive buffers.
    pub bufs: Buffers,
    /// Buffers given back by consumers, waiting for the leader to recycle them.
    pub returns: OwnedQueue,
    /// Buffers user space keeps free: io_uring's reserve for TCP reassembly; every free
    /// buffer under epoll.
    pub free: OwnedQueue,
    /// How many buffers io_uring keeps in `free` rather than in the ring.
    pub reserve: usize,
    /// Send slots (payloads waiting for, or in, the kernel).
    pub sendbufs: Buffers,
    pub send_free: OwnedQueue,
    pub intents: ArrayQueue<Intent>,
    /// Work that goes before `intents`: the unsent rest of a frame an inline handler
    /// wrote directly (the socket took only part of it), which must precede every frame
    /// queued for that connection since. Pushed only by the pool thread of a
    /// single-thread reactor, so it holds at most one entry per round.
    pub first: ArrayQueue<Intent>,
    /// Connections paused for lack of buffers.
    pub stalled: ArrayQueue<u32>,
    pub conns: Box<[Conn]>,
    pub conn_free: ArrayQueue<u32>,
    pub bell: EventFd,
    /// A leader is (about to be) blocked in the kernel.
    pub parked: AtomicBool,
    /// io_uring: the parked leader left finished sends in its completion queue (it waits
    /// past them, see `uring::Leader::sq_sends`); a sender out of slots or a stats reader
    /// wakes it to collect them.
    pub lingering: AtomicBool,
    /// Something waits for buffers to come back.
    pub starved: AtomicBool,
    pub stopping: AtomicBool,
    pub stats: Counters,
    pub leadership: Leadership,
    /// Largest TCP frame payload.
    pub max_frame: usize,
    /// Largest datagram payload.
    pub max_datagram: usize,
    /// UDP GSO: the largest datagram size sends may coalesce (0: GSO off). Lowered when
    /// the kernel refuses a GSO send (`Core::narrow_gso`).
    pub gso_max: AtomicU32,
    /// UDP GRO is on for the socket: receives carry room for its control message.
    pub gro: bool,
    /// UDP: the peer the socket is connected to; datagrams to it leave without an
    /// address (the socket's cached route, no lookup per send).
    pub peer: Option<SocketAddr>,
    /// UDP: the socket, for the inline handler's direct reply (used only by the pool
    /// thread, while the reactor runs; see [`Core::take_lone`]).
    pub udp_fd: Option<std::os::fd::RawFd>,
    /// One pool thread serves this reactor.
    pub single: bool,
    /// Set by the (single) pool thread for a round of exactly one event with nothing of
    /// its own still queued to send: the first datagram an inline handler sends in that
    /// round may go out at once (see [`Core::take_lone`]).
    pub lone: AtomicBool,
}

/// Sizes (and fixed settings) of a core.
pub(crate) struct CoreSizes {
    pub buffers: u32,
    pub buffer_size: u32,
    pub send_slots: u32,
    pub max_connections: u32,
    pub reserve: usize,
    pub max_frame: usize,
    pub max_datagram: usize,
    pub gso_max: u32,
    pub gro: bool,
    pub peer: Option<SocketAddr>,
    pub udp_fd: Option<std::os::fd::RawFd>,
    pub single: bool,
}

impl Core {
    /// Allocates everything a reactor needs up front; the hot path allocates nothing.
    pub(crate) fn new(name: &str, shard: u16, s: &CoreSizes) -> Result<Core, Error> {
        let bufs = Buffers::new(s.buffers, s.buffer_size, "receive buffers")?;
        let sendbufs = Buffers::new(s.send_slots, s.buffer_size, "send slots")?;
        let returns = OwnedQueue::for_region(&bufs);
        let free = OwnedQueue::for_region(&bufs);
        let send_free = OwnedQueue::for_region(&sendbufs);
        for i in 0..s.send_slots {
            // SAFETY: a fresh region: no slot was ever given to the kernel or anyone else.
            send_free.push(unsafe { sendbufs.assume_owned(i as u16) });
        }
        let conn_free = ArrayQueue::new(s.max_connections as usize);
        let conns = (0..s.max_connections)
            .map(|i| {
                let _ = conn_free.push(i);
                Conn {
                    generation: AtomicU32::new(0),
                    open: AtomicBool::new(false),
                    tx_busy: AtomicBool::new(false),
                    direct: AtomicI32::new(-1),
                    rx: Claim::new(Rx {
                        framer: Framer::new(s.max_frame),
                        peer: SocketAddr::from(([0, 0, 0, 0], 0)),
                        asm: None,
                        rest: None,
                        pending: None,
                    }),
                }
            })
            .collect();
        Ok(Core {
            name: name.to_string(),
            shard,
            bufs,
            returns,
            free,
            reserve: s.reserve,
            sendbufs,
            send_free,
            intents: ArrayQueue::new((s.send_slots + 2 * s.max_connections) as usize + 64),
            first: ArrayQueue::new(4),
            stalled: ArrayQueue::new(s.max_connections as usize),
            conns,
            conn_free,
            bell: EventFd::new()?,
            parked: AtomicBool::new(false),
            lingering: AtomicBool::new(false),
            starved: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            stats: Counters::default(),
            leadership: Leadership::default(),
            max_frame: s.max_frame,
            max_datagram: s.max_datagram,
            gso_max: AtomicU32::new(s.gso_max),
            gro: s.gro,
            peer: s.peer,
            udp_fd: s.udp_fd,
            single: s.single,
            lone: AtomicBool::new(false),
        })
    }

    /// The kernel refused `refusals` GSO sends: coalesce only datagrams of at most
    /// `limit` bytes from now on (0: none), and say so once per change.
    pub(crate) fn narrow_gso(&self, limit: u32, refusals: u64) {
        let before = self.gso_max.fetch_min(limit, Ordering::Relaxed);
        self.stats
            .gso_refused
            .fetch_add(refusals, Ordering::Relaxed);
        if limit < before {
            tracing::warn!(sap = %self.name, shard = self.shard, limit, "the kernel refused a UDP GSO send; its datagrams went out one by one, and GSO now applies only up to this size (0: off)");
        }
    }

    /// Whether a datagram to `to` goes out on the connected socket without an address.
    pub(crate) fn to_peer(&self, to: &SocketAddr) -> bool {
        self.peer.as_ref() == Some(to)
    }

    /// Takes the permission to send one datagram at once, from an inline handler on the
    /// pool thread: granted for a round of one event (one message in flight: nothing to
    /// batch with) on a single-thread reactor with nothing of ours queued to send, so the
    /// datagram cannot overtake one of ours. A second datagram of the same round queues.
    pub(crate) fn take_lone(&self) -> Option<std::os::fd::RawFd> {
        let fd = self.udp_fd?;
        (self.lone.swap(false, Ordering::Relaxed) && self.intents.is_empty()).then_some(fd)
    }

    /// Takes the permission to write one frame on connection `conn` at once, from an
    /// inline handler on the pool thread: granted, as [`Core::take_lone`], for a round of
    /// one event on a single-thread reactor, when the backend publishes the connection's
    /// socket ([`Conn::direct`]) and nothing of ours is queued or in flight on it — no
    /// intent waits and no send is in flight (io_uring keeps a connection's queue empty
    /// unless a send is in flight) — so the frame cannot overtake one of ours.
    pub(crate) fn take_lone_stream(&self, conn: u32) -> Option<std::os::fd::RawFd> {
        let c = self.conns.get(conn as usize)?;
        if !self.lone.swap(false, Ordering::Relaxed) {
            return None;
        }
        let fd = c.direct.load(Ordering::Relaxed);
        (fd >= 0
            && self.intents.is_empty()
            && self.first.is_empty()
            && !c.tx_busy.load(Ordering::SeqCst))
        .then_some(fd)
    }

    /// Makes a leader blocked in the kernel come back (no-op when none is).
    pub(crate) fn wake_leader(&self) {
        if self.parked.load(Ordering::SeqCst) {
            self.bell.signal();
        }
    }

    /// Has a parked leader collect the finished sends it left in its completion queue
    /// (no-op when it left none).
    pub(crate) fn collect_sends(&self) {
        if self.lingering.load(Ordering::SeqCst) {
            self.wake_leader();
        }
    }

    /// Queues work for the leader and wakes it if it is blocked.
    pub(crate) fn push_intent(&self, i: Intent) -> Result<(), Intent> {
        self.intents.push(i)?;
        self.wake_leader();
        Ok(())
    }

    /// Queues work for the leader without waking it: the caller queues more and then
    /// calls [`Core::wake_leader`] once, so the leader finds the whole batch.
    pub(crate) fn push_intent_quiet(&self, i: Intent) -> Result<(), Intent> {
        self.intents.push(i)
    }

    /// Queues frames for connection `conn`, waking the leader unless a send in flight on
    /// that connection will: a sender streaming into a busy connection costs the reactor
    /// no wake-up (no eventfd write, no context switch) per batch.
    pub(crate) fn push_stream_intent(&self, conn: u32, i: Intent) -> Result<(), Intent> {
        self.intents.push(i)?;
        // SeqCst pairs with the leader's clearing of `tx_busy` before it checks the
        // intents and parks: either it sees this intent or this sees the flag clear.
        let busy = self
            .conns
            .get(conn as usize)
            .is_some_and(|c| c.tx_busy.load(Ordering::SeqCst));
        if !busy {
            self.wake_leader();
        }
        Ok(())
    }

    /// Ends a lease; a buffer with no lease left goes to the return queue.
    pub(crate) fn release(&self, lease: Lease) -> Result<(), Lease> {
        if let Some(owned) = self.bufs.release(lease)? {
            self.give_back(owned);
        }
        Ok(())
    }

    /// Returns an exclusively owned buffer for recycling.
    pub(crate) fn give_back(&self, owned: Owned) {
        self.returns.push(owned);
        if self.starved.load(Ordering::SeqCst) {
            self.wake_leader();
        }
    }

    /// Marks connection slot `idx` closed and free for reuse.
    pub(crate) fn free_conn(&self, idx: u32) {
        if let Some(c) = self.conns.get(idx as usize) {
            c.open.store(false, Ordering::Release);
            c.generation.fetch_add(1, Ordering::AcqRel);
            let _ = self.conn_free.push(idx);
        }
    }

    /// Pauses stream `conn` until buffers come back (a consumer giving one back wakes the
    /// leader, which resumes it).
    pub(crate) fn stall(&self, conn: u32) {
        Counters::inc(&self.stats.enobufs);
        let _ = self.stalled.push(conn);
        self.starved.store(true, Ordering::SeqCst);
    }

    /// Has the leader resume stream `conn` (emit a `Resume` event) at its next poll.
    pub(crate) fn resume_later(&self, conn: u32) {
        let _ = self.stalled.push(conn);
        self.starved.store(true, Ordering::SeqCst);
        self.wake_leader();
    }
}
