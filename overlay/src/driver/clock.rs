//! The driver's clock: binds the protocol's timers to the rt clock.
//!
//! The protocol says when it next needs time to pass (`poll_timeout`); the holder
//! publishes that deadline after every turn. One best-effort thread per overlay, on the
//! general cores, sleeps until the deadline (`CLOCK_MONOTONIC`, the clock every job reads)
//! and then releases the `retransmit` task, whose job runs the due timers on the RT core
//! like any other. The periodic tasks (heartbeat, detector) tick on their own releases;
//! the clock covers what falls between them: retransmissions, probe, join and lookup
//! deadlines. It also carries out the wake-ups the jobs ask for (a job never pushes into
//! another task's activation queue itself, see [`Shared::wake_from_job`]), and takes the
//! notices off the holder's hands: it logs them, applies
//! group membership changes (a system call, kept off the RT core) and passes them on to
//! the application.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rtpm_rt::time::{Clock, MonotonicClock};

use super::notice::Notice;
use super::saps::Links;
use super::shared::Shared;

/// Longest sleep between looks at the notice queue and the stop flag.
const MAX_SLEEP: Duration = Duration::from_millis(50);

/// Runs the clock until the driver stops.
pub(crate) fn run(sh: Arc<Shared>, links: Arc<Links>) {
    sh.set_clock(std::thread::current());
    let mut listening = false;
    loop {
        sh.run_deferred_wakes();
        while let Some(n) = sh.next_notice() {
            n.log(&sh.name);
            if let Notice::ListenGroup(on) = n
                && on != listening
            {
                match links.listen(on) {
                    Ok(()) => listening = on,
                    Err(e) => tracing::warn!(
                        overlay = %sh.name,
                        on,
                        error = %e,
                        "cannot change the bootstrap group membership"
                    ),
                }
            }
            sh.sink.notice(n);
        }
        if sh.stopping.load(Ordering::Acquire) {
            return;
        }
        let now = MonotonicClock.now().as_nanos();
        match sh.due(now) {
            Ok(()) => sh.wake(sh.timer_task),
            Err(at) => {
                let left = Duration::from_nanos(at.saturating_sub(now)).min(MAX_SLEEP);
                if sh.clock_sleeps_until(now.saturating_add(left.as_nanos() as u64)) {
                    std::thread::park_timeout(left);
                    sh.clock_awake();
                }
            }
        }
    }
}
