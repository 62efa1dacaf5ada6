//! What the kernel's integration tests share: a runtime on the embedded partition with a
//! few users, taken one at a time (runtimes compete for the one RT core).

#![allow(dead_code)] // each test binary uses part of it

use std::sync::Arc;

use rtpm::rt::time::{Clock, SimClock};
use rtpm::{LoginPolicy, Permission, Permissions, Runtime, RuntimeBuilder};

pub use crate::exec_common::{exclusive, fifo_allowed, two_cpus};

/// `admin` may do everything; `alice` may execute and publish/subscribe everywhere;
/// `bob` may only execute `example.ping`; `eve` has no grants.
pub fn users(b: RuntimeBuilder) -> RuntimeBuilder {
    let use_all = Permissions::only(Permission::Execute)
        .with(Permission::Publish)
        .with(Permission::Subscribe);
    b.user("admin", "admin passphrase", &[("*", Permissions::ALL)])
        .user("alice", "alice passphrase", &[("*", use_all)])
        .user(
            "bob",
            "bob passphrase",
            &[("example.ping", Permissions::only(Permission::Execute))],
        )
        .user("eve", "eve passphrase", &[])
}

/// A runtime with [`users`] and a simulated clock (for throttling and the event monitor).
pub fn runtime_with_clock(clock: Arc<SimClock>) -> Runtime {
    let c: Arc<dyn Clock> = clock;
    users(Runtime::builder())
        .clock(c)
        .login_policy(LoginPolicy {
            free_attempts: 3,
            base_delay: rtpm::rt::time::Nanos::secs(1),
            max_delay: rtpm::rt::time::Nanos::secs(60),
            max_tracked: 64,
        })
        .build()
        .unwrap()
}

/// A runtime with [`users`] on the real clock.
pub fn runtime() -> Runtime {
    users(Runtime::builder()).build().unwrap()
}

/// A simulated clock standing at 1000 s.
pub fn sim_clock() -> Arc<SimClock> {
    Arc::new(SimClock::new(rtpm::rt::time::Instant(1_000_000_000_000)))
}

pub mod overlay;
