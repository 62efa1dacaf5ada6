//! # rtpm-net: the network layer
//!
//! Messages enter rtpm here. Each **service access point** ([`Sap`]) is one socket — or a
//! set of SO_REUSEPORT sockets, one per pool thread — with one implicit [`QosClass`]:
//! priority, reliability, queue depth, drop policy, waiting mode, threads and cores.
//! Classes are never multiplexed on one reactor.
//!
//! **Reactors.** Each socket is served by a reactor: io_uring where the kernel permits it
//! (multishot `RECVMSG` into a provided-buffer ring, registered files, batched
//! submissions), epoll otherwise — picked by a probe that logs why, or forced by config.
//! Both meet one contract ([`reactor`]), so everything above them is written once.
//!
//! **Leader/followers.** A pool of threads serves each reactor. Exactly one thread — the
//! leader — waits on the event source; when events arrive it promotes a follower first,
//! then decodes them in place and dispatches. In busy-poll mode threads spin on the
//! source for a bounded time, within a budget that keeps them below the kernel's RT
//! throttling, before they park: on a VM where a wake-up of a halted vCPU costs tens of
//! microseconds, that is how the latency class beats the wake-up.
//!
//! **Zero-copy hand-off.** A received message becomes a [`Handle`] — buffer id, length,
//! source — pushed into its destination's bounded lock-free queue; a full queue applies
//! the drop policy and counts, and never blocks the reactor. The [`Consumer`] reads the
//! bytes in place and gives the handle back; the buffer returns through a queue and only
//! the reactor recycles it to the kernel. A buffer belongs to the kernel until a
//! completion names it, even after a cancel. Destinations may instead be inline
//! handlers that run on the reactor thread and reply through the same reactor.
//!
//! **Sends** (replies, datagrams, frames) go through the reactor too, in batches: one
//! `io_uring_enter` (or one `sendmmsg`/`writev`) carries many, and a reply is submitted in
//! the same enter that waits for the next message. With UDP GSO a run of equal-size
//! datagrams to one peer is one send (`UDP_SEGMENT`); with UDP GRO a coalesced receive is
//! split into one handle per datagram, in place, its buffer reference-counted back to the
//! ring.
//!
//! Nothing on the receive → hand-off → return path allocates or takes a lock after
//! start-up; all system calls and `unsafe` live in `sys`.

pub mod config;
mod dispatch;
pub mod error;
mod frame;
mod handoff;
mod leader;
mod pool;
pub mod reactor;
mod sap;
mod select;
mod stats;
mod sys;
mod throttle;

pub use config::{
    BackendChoice, CoreClass, Cores, DropPolicy, Layout, Mode, QosClass, Reliability, SapConfig,
    Transport,
};
pub use dispatch::{ByHeader, Handler, Message, Outbox, Router, ToOne};
pub use error::Error;
pub use handoff::{ConnId, Consumer, Delivery, DestStats, Handle, Source};
pub use reactor::BackendKind;
pub use sap::{Sap, SapBuilder};
pub use select::{Selection, probe_io_uring, select};
pub use stats::SapStats;
pub use sys::region::Lease;

/// Fault injection for testing the fallback paths (feature `fault-injection`).
#[cfg(feature = "fault-injection")]
pub mod fault {
    /// Installs a seccomp filter on the calling thread (inherited by threads it creates
    /// afterwards) under which `io_uring_setup` fails with EPERM, as under a container's
    /// default profile. Irreversible for the thread: use it in a dedicated process.
    pub fn deny_io_uring_setup() -> Result<(), crate::Error> {
        crate::sys::seccomp::deny_io_uring_setup()
    }

    /// Turns UDP checksums off on the SAP's sockets (SO_NO_CHECK), under which the kernel
    /// refuses every UDP GSO send with EINVAL while single datagrams still go out: the
    /// fault that exercises the GSO fallback.
    pub fn refuse_udp_gso(sap: &crate::Sap) -> Result<(), crate::Error> {
        for fd in sap.udp_fds() {
            crate::sys::socket::refuse_gso(*fd).map_err(|e| {
                crate::Error::os_from("setsockopt", "SO_NO_CHECK on a SAP socket", e, "")
            })?;
        }
        Ok(())
    }
}
