//! An `eventfd(2)` that interrupts a parked leader.
//!
//! Both backends watch it: io_uring with a read kept armed on it, epoll as one more
//! registered descriptor. Writing it is the only way another thread makes a leader that
//! is blocked in the kernel come back (to submit queued sends, or to recycle buffers
//! after a starvation).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use crate::error::Error;

/// A non-blocking, close-on-exec eventfd.
pub(crate) struct EventFd {
    fd: OwnedFd,
}

impl EventFd {
    /// Creates it, with a zero counter.
    pub(crate) fn new() -> Result<EventFd, Error> {
        // SAFETY: eventfd takes no pointers; a non-negative return is a new descriptor that
        // nothing else owns.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(Error::os(
                "eventfd",
                "the reactor's wake-up descriptor",
                "raise the open-files limit (ulimit -n)",
            ));
        }
        // SAFETY: `fd` was just returned by eventfd and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(EventFd { fd })
    }

    /// Adds one to the counter, waking whoever waits on it.
    pub(crate) fn signal(&self) {
        let one: u64 = 1;
        // The result is ignored on purpose: the only failure (EAGAIN at a saturated
        // counter) means a wake-up is already pending, which is what we want.
        // SAFETY: writes 8 bytes from a live u64 to our own descriptor.
        unsafe {
            libc::write(
                self.fd.as_raw_fd(),
                (&one as *const u64).cast(),
                std::mem::size_of::<u64>(),
            );
        }
    }

    /// Resets the counter (non-blocking; a zero counter is fine).
    pub(crate) fn drain(&self) {
        let mut v: u64 = 0;
        // SAFETY: reads at most 8 bytes into a live u64; EAGAIN (already zero) is fine.
        unsafe {
            libc::read(
                self.fd.as_raw_fd(),
                (&mut v as *mut u64).cast(),
                std::mem::size_of::<u64>(),
            );
        }
    }

    /// The raw descriptor, for registering it with a backend.
    pub(crate) fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}
