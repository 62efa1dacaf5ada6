//! Parking on a 32-bit word: `futex(FUTEX_WAIT_PRIVATE / FUTEX_WAKE_PRIVATE)`.
//!
//! The leader/followers hand-off and the consumer doorbell park threads here. A wait
//! returns when the word no longer holds `expected`, when woken, on a signal, or at the
//! timeout; callers always re-check their condition, so spurious returns are harmless.

use std::sync::atomic::AtomicU32;
use std::time::Duration;

/// Parks the calling thread while `word == expected`, for at most `timeout` (forever
/// when `None`).
pub(crate) fn wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) {
    let ts = timeout.map(|d| libc::timespec {
        tv_sec: d.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: d.subsec_nanos() as libc::c_long,
    });
    let ts_ptr = ts
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `word` is a live, aligned 32-bit atomic for the duration of the call (the
    // kernel only reads it); `ts_ptr` is null or points at a timespec on this stack frame.
    // FUTEX_WAIT does not retain either pointer after it returns.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
            expected,
            ts_ptr,
        );
    }
}

/// Wakes up to `n` threads parked on `word`.
pub(crate) fn wake(word: &AtomicU32, n: u32) {
    // SAFETY: `word` is a live, aligned 32-bit atomic; FUTEX_WAKE only uses its address as
    // a key and never dereferences it after returning.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
            n.min(i32::MAX as u32) as i32,
        );
    }
}
