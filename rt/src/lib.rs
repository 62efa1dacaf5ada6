//! # rtpm-rt: the real-time core
//!
//! rtpm is built from the CPU outward, and this crate is the CPU.
//!
//! **Partition.** The process's allowed CPUs ([`cpu::CpuSet::allowed`]: its affinity
//! intersected with its cpuset cgroup, never sysfs "online") are split, ARTiS-style, into
//! `rt` cores reserved for admitted real-time work and `general` cores for everything
//! else ([`config::Partition`], from per-core files `cores/cpuN.toml` or the embedded
//! default). Best-effort threads never run on RT cores; the optional [`shield`] moves the
//! rest of the system off them with exclusive cpusets, and can be undone.
//!
//! **Threads.** [`thread::ThreadBuilder`] spawns a thread under `SCHED_OTHER`,
//! `SCHED_FIFO`, `SCHED_DEADLINE` or `SCHED_IDLE` with an affinity and a prefaulted
//! stack, and explains every refusal (privilege, rtprio limit, deadline bandwidth, root
//! domain). [`probe`] tells what this machine permits.
//!
//! **Admission.** [`admission`] is the guard in front of the RT cores: exact EDF (QPA)
//! and fixed-priority (response-time) analysis, preemptive and non-preemptive, with
//! multicore partitioning, online one task at a time with a reason for every refusal.
//!
//! **Time.** All times inside are integer nanoseconds ([`time::Nanos`]); config files
//! spell them as unit strings (`"250us"`). Releases are scheduled on absolute
//! `CLOCK_MONOTONIC` times; code that needs "now" takes a [`time::Clock`], so a simulated
//! clock can replace the real one.
//!
//! **Queues between priorities.** [`mpmc::Queue`] is a bounded MPMC queue whose `pop`
//! never waits for a `push` in progress, for queues that jobs of different priorities on
//! one RT core share (a waiting `pop` would spin forever on a preempted pusher).
//!
//! Operating-system calls live in `sys`, so `unsafe` is confined there (and in
//! [`mpmc`], whose slots are raw memory handed over by sequence numbers).

pub mod admission;
pub mod config;
pub mod cpu;
pub mod error;
pub mod probe;
pub mod shield;
pub mod thread;
pub mod time;

mod sys;

/// `futex(2)` wait and wake on a 32-bit word: where rtpm parks a thread on a word (the
/// executor's [`exec::WakeWord`], the network reactors' leader hand-off). Safe wrappers.
pub use sys::futex;

pub use error::{Error, Result};
pub mod exec;
pub mod hist;
pub mod mpmc;
