//! `futex(2)` wait and wake on a 32-bit word, for waking a sleeping RT core.
//!
//! Waits use `FUTEX_WAIT_BITSET`, whose timeout is an *absolute* `CLOCK_MONOTONIC` time
//! (the same clock and the same hrtimer path as `clock_nanosleep(TIMER_ABSTIME)`), so a
//! dispatcher that sleeps until its next release or a wake-up does not drift either.

use std::sync::atomic::AtomicU32;

/// Sleeps while `*word == expected`, until woken or until `CLOCK_MONOTONIC` reaches
/// `deadline_ns` (`None`: no timeout). Returns at once if the word differs. Spurious
/// returns (signals, races) are possible: callers re-check their condition.
pub fn wait(word: &AtomicU32, expected: u32, deadline_ns: Option<u64>) {
    let ts = deadline_ns.map(|ns| libc::timespec {
        tv_sec: (ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (ns % 1_000_000_000) as libc::c_long,
    });
    let ts_ptr = ts
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // The last two arguments are the unused second address and the match-any bitset.
    // SAFETY: `word` is a live, aligned 32-bit atomic for the call (the kernel only reads
    // it); `ts_ptr` is null or points at `ts`, which outlives the call.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT_BITSET | libc::FUTEX_PRIVATE_FLAG,
            expected,
            ts_ptr,
            std::ptr::null::<u32>(),
            libc::FUTEX_BITSET_MATCH_ANY,
        );
    }
}

/// Wakes up to `n` threads sleeping in [`wait`] on `word`. Never blocks.
pub fn wake(word: &AtomicU32, n: i32) {
    // SAFETY: `word` is a live, aligned 32-bit atomic; FUTEX_WAKE only uses its address.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
            n,
        );
    }
}
