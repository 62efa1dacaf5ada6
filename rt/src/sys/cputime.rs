//! The calling thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`) and its timer slack.

/// CPU time consumed by the calling thread, in nanoseconds. Unlike wall time it does not
/// grow while a higher-priority thread preempts this one, so it measures a job's own
/// execution in the preemptive model.
pub fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call;
    // CLOCK_THREAD_CPUTIME_ID is always supported on Linux.
    unsafe {
        libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts);
    }
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

/// Sets the calling thread's timer slack to 1 ns (`PR_SET_TIMERSLACK`), so futex and
/// sleep timeouts fire when asked, not up to 50 µs later (the default slack of
/// SCHED_OTHER threads; recent kernels ignore slack for RT threads, older ones do not).
pub fn set_min_timer_slack() {
    // SAFETY: PR_SET_TIMERSLACK takes an integer and touches no memory of ours.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0);
    }
}
