//! Every operating-system call of this crate lives under `sys`, so the `unsafe` is in one
//! place and the rest of the crate is plain Rust.

pub mod cgroup;
pub mod clock;
pub mod cpu;
pub mod cputime;
pub mod futex;
pub mod pm_qos;
pub mod sched;
pub mod signal;
pub mod uring;
