//! `SIGXCPU` from `SCHED_FLAG_DL_OVERRUN`: the kernel's notice that a SCHED_DEADLINE
//! thread ran past its runtime.
//!
//! The kernel sends the signal to the thread group, and delivery prefers the thread that
//! overran (it is running and does not block the signal). The handler only bumps a
//! thread-local counter (a `const` thread-local without destructor is a plain TLS slot, so
//! touching it is async-signal-safe) and a process-wide one; the task loop reads and
//! clears its own after each job.

use std::cell::Cell;
use std::sync::Once;
use std::sync::atomic::{AtomicU64, Ordering};

thread_local! {
    static OVERRUNS: Cell<u64> = const { Cell::new(0) };
}

/// Every SIGXCPU seen by the process since the handler was installed.
static TOTAL: AtomicU64 = AtomicU64::new(0);
static INSTALL: Once = Once::new();

extern "C" fn on_sigxcpu(_sig: libc::c_int) {
    OVERRUNS.with(|c| c.set(c.get().wrapping_add(1)));
    TOTAL.fetch_add(1, Ordering::Relaxed);
}

/// Installs the counting `SIGXCPU` handler once for the process. Without it, the first
/// deadline overrun would kill the process (SIGXCPU's default action).
pub fn install_dl_overrun_handler() -> std::io::Result<()> {
    let mut result = Ok(());
    INSTALL.call_once(|| {
        // The handler is an `extern "C" fn(c_int)` that is async-signal-safe (a TLS cell
        // and an atomic).
        // SAFETY: a zeroed sigaction is a valid value to fill in, and
        // `sigemptyset`/`sigaction` get pointers to live locals.
        let rc = unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_sigxcpu as extern "C" fn(libc::c_int) as usize;
            sa.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(libc::SIGXCPU, &sa, std::ptr::null_mut())
        };
        if rc != 0 {
            result = Err(std::io::Error::last_os_error());
        }
    });
    result
}

/// The overruns signalled to the calling thread since the last call, and clears them.
pub fn take_dl_overruns() -> u64 {
    OVERRUNS.with(|c| c.replace(0))
}
