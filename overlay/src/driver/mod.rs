//! The driver: a protocol [`Node`](crate::proto::Node) on real sockets and real-time tasks.
//!
//! **Sockets.** Each QoS class of the overlay has its own SAP ([`rtpm_net::Sap`]: a
//! socket, a reactor and its QoS policy — priority, queue depth); classes are never
//! multiplexed. The control SAP (class 0) carries the protocol and class-0 data and is the
//! address other peers know this node by; class `c` listens at the control port + `c`.
//! The bootstrap goes to the overlay's UDP multicast group (group and port from the
//! config) and, for networks without multicast, to a unicast seed list; roots listen to
//! the group ([`saps`]).
//!
//! **Tasks.** Every periodic and sporadic activity the protocol declares
//! ([`crate::proto::tasks`]) goes through admission on a [`TaskHost`] — the rt crate's
//! executor, or the kernel — and runs there: the protocol's ticks as periodic tasks,
//! datagram processing as sporadic tasks released from each SAP's wake hook on the
//! reactor thread, timers between ticks as a sporadic task released by the driver's clock
//! at the protocol's next deadline (`CLOCK_MONOTONIC`), application commands through a
//! lock-free queue and their own sporadic task ([`tasks`]) — or, for a command issued
//! inside another admitted job on an RT core (an RPC server's reply), in that job itself
//! (or by the job holding the node, if one does): one hand-off less on a reply's critical
//! path. A turn sends its first few datagrams from its own thread
//! ([`rtpm_net::Sap::send_to_now`]) and queues the rest for the reactors, which batch.
//! If the host does not admit them all, the overlay does not start: the error names the
//! task, its declaration and admission's reason, and no socket was bound.
//!
//! **One owner.** The node is touched by one job at a time, without a lock: it is handed
//! between jobs through one atomic word (a swap takes it, a swap puts it back), and a job
//! that finds it taken leaves its work to the holder instead of waiting ([`baton`]). What
//! one turn does is in [`engine`].
//!
//! **Queues between priorities.** Commands and their buffers go through
//! [`rtpm_rt::mpmc::Queue`]s, whose `pop` never waits for a `push` in progress: jobs of
//! different priorities on one RT core send, and a job that preempted another inside its
//! push sees that command later (the pusher serves it, or wakes the command task, once
//! its push is done) instead of spinning on it. (crossbeam's `ArrayQueue`, used before,
//! waits there — under SCHED_FIFO, forever; `rtpm demo` hung on it once.)
//!
//! **The application** holds a [`Driver`]: `send` (non-blocking, queued), `publish`,
//! `unpublish`, `lookup` (bounded wait), `place`/`status`, and `leave` (announced). Messages
//! arrive at its [`Sink`] on the holder's RT thread; membership changes as [`Notice`]s on
//! the driver's clock thread (which also logs them through `tracing`).
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use rtpm_overlay::driver::{Driver, DriverOptions, OverlayConfig, Sink};
//! # use rtpm_overlay::proto::PeerId;
//! # fn demo(exec: &mut rtpm_rt::exec::Executor, cfg: OverlayConfig) -> Result<(), rtpm_overlay::Error> {
//! struct Print;
//! impl Sink for Print {
//!     fn message(&self, from: PeerId, class: u8, bytes: &[u8]) {
//!         // on an RT core: copy and queue, never block
//!         let _ = (from, class, bytes.len());
//!     }
//! }
//! let d = Driver::start(DriverOptions::new(cfg, PeerId(7)), exec, Arc::new(Print))?;
//! d.wait_joined(rtpm_rt::time::Nanos::secs(1));
//! d.leave(rtpm_rt::time::Nanos::ms(200))?;
//! # Ok(()) }
//! ```

mod baton;
mod clock;
mod command;
mod config;
mod engine;
mod handle;
mod host;
mod notice;
mod saps;
mod shared;
mod status;
mod tasks;

pub use command::Answer;
pub use config::{CommandRate, OverlayConfig, SapEntry, overlay_id};
pub use handle::{Driver, DriverOptions};
pub use host::{Prefixed, TaskHost};
pub use notice::{Notice, cell_name, peer_name};
pub use status::{DriverCounters, Place, SapStatus, Status};

use crate::proto::PeerId;

/// Receives what the overlay delivers to the application.
pub trait Sink: Send + Sync + 'static {
    /// A message from `from` on `class`. Called by the job holding the node, on an RT
    /// core: copy what is needed and return; never block. A reply sent from here
    /// ([`Driver::send`]) leaves in the same turn.
    fn message(&self, from: PeerId, class: u8, bytes: &[u8]);

    /// A membership change, on the driver's clock thread (a general core).
    fn notice(&self, notice: Notice) {
        let _ = notice;
    }
}

/// The discovery key under which peer `peer` publishes its class-`class` SAP (with
/// `publish_saps`): a lookup of it answers with the peer's address.
pub fn sap_key(peer: PeerId, class: u8) -> u128 {
    let mut h = blake3::Hasher::new();
    h.update(b"rtpm sap key v1\0");
    h.update(&peer.0.to_be_bytes());
    h.update(&[class]);
    let b = h.finalize();
    let mut k = [0u8; 16];
    k.copy_from_slice(&b.as_bytes()[..16]);
    u128::from_be_bytes(k)
}
