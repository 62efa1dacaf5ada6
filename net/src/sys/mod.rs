//! Everything that talks to the kernel, and every `unsafe` block of the crate.
//!
//! The rest of the crate is safe code over these modules: buffer ownership proofs
//! ([`region`]), a never-waiting exclusive cell ([`claim`]), the wake-up
//! eventfd, sockets, the probes, and the two reactor backends.

pub(crate) mod claim;
pub(crate) mod epoll;
pub(crate) mod eventfd;
pub(crate) mod probe;
pub(crate) mod region;
#[cfg(feature = "fault-injection")]
pub(crate) mod seccomp;
pub(crate) mod socket;
pub(crate) mod uring;

use std::os::fd::{AsRawFd, OwnedFd, RawFd};

/// The socket a reactor serves besides its connections.
pub(crate) enum Endpoint {
    /// A UDP socket (unicast or multicast).
    Udp(OwnedFd),
    /// A TCP listener.
    Listener(OwnedFd),
    /// None: a TCP SAP that only connects out.
    None,
}

impl Endpoint {
    /// The descriptor, if any.
    pub(crate) fn fd(&self) -> Option<RawFd> {
        match self {
            Endpoint::Udp(f) | Endpoint::Listener(f) => Some(f.as_raw_fd()),
            Endpoint::None => None,
        }
    }
}
