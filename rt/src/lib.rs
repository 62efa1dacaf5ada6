//! # rtpm-rt: the real-time core
//!
//! rtpm is built from the CPU outward, and this crate is the CPU. It knows which cores
//! the process may use and splits them, ARTiS-style, into `rt` cores reserved for
//! real-time work and `general` cores for everything else. Nothing runs on an `rt` core
//! unless the admission controller has proved that every admitted deadline still holds;
//! the executor then releases periodic jobs on absolute `CLOCK_MONOTONIC` times and
//! sporadic jobs from lock-free queues, and records the latency of every job.
//!
//! All times inside are integer nanoseconds ([`time::Nanos`]); config files spell them as
//! unit strings (`"250us"`). Operating-system calls live in `sys`, so `unsafe` is
//! confined there.

pub mod admission;
pub mod time;

mod sys;
