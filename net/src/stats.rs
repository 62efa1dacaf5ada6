//! Counters of a SAP: what arrived, what was dropped and why, how the pool behaved.

use std::sync::atomic::{AtomicU64, Ordering};

/// Live counters of one reactor (relaxed atomics; read them with [`Counters::snapshot`]).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub received: AtomicU64,
    pub bytes: AtomicU64,
    pub unroutable: AtomicU64,
    pub truncated: AtomicU64,
    pub too_large: AtomicU64,
    pub enobufs: AtomicU64,
    pub sent: AtomicU64,
    pub send_errors: AtomicU64,
    pub submits: AtomicU64,
    pub accepted: AtomicU64,
    pub rejected: AtomicU64,
    pub closed: AtomicU64,
    pub parks: AtomicU64,
    pub gso_sends: AtomicU64,
    pub gso_refused: AtomicU64,
    pub gro_receives: AtomicU64,
}

macro_rules! snapshot_fields {
    ($($(#[doc = $doc:expr])* $f:ident),* $(,)?) => {
        /// A SAP's counters at one moment, summed over its reactors.
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct SapStats {
            $($(#[doc = $doc])* pub $f: u64,)*
            /// Datagrams the kernel dropped at a full socket buffer (SO_MEMINFO, read when
            /// the stats are taken). With UDP GRO, a dropped coalesced burst counts once.
            pub kernel_drops: u64,
            /// Leader hand-offs that preceded processing.
            pub promotions: u64,
        }

        impl Counters {
            /// Adds this reactor's counters into `s`.
            pub(crate) fn add_to(&self, s: &mut SapStats) {
                $(s.$f += self.$f.load(Ordering::Relaxed);)*
            }
        }
    };
}

snapshot_fields!(
    /// Messages (datagrams, frames) received, whatever became of them.
    received,
    /// Payload bytes of those.
    bytes,
    /// Messages the router sent nowhere.
    unroutable,
    /// Datagrams larger than a buffer (dropped).
    truncated,
    /// TCP frames announcing more than a buffer holds (the connection is closed).
    too_large,
    /// Times the reactor ran out of receive buffers (backpressure: receiving pauses until
    /// buffers come back).
    enobufs,
    /// Messages handed to the kernel and completed.
    sent,
    /// Sends the kernel refused.
    send_errors,
    /// System calls made to submit sends (io_uring_enter, sendmmsg, writev).
    submits,
    /// TCP connections accepted or connected.
    accepted,
    /// TCP connections refused because the connection table was full.
    rejected,
    /// TCP connections closed.
    closed,
    /// Times a leader blocked in the kernel.
    parks,
    /// Sends that carried several datagrams in one system call or submission (UDP GSO).
    gso_sends,
    /// GSO sends the kernel refused; their datagrams went out one by one, and GSO was
    /// narrowed or turned off for the socket.
    gso_refused,
    /// Receives that delivered several datagrams coalesced in one buffer (UDP GRO),
    /// split into one handle each.
    gro_receives,
);

impl Counters {
    /// Adds one to a counter.
    pub(crate) fn inc(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }
}
