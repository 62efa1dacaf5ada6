//! # rtpm: the runtime that latency-critical processes embed
//!
//! After the seed paper's `RTPm` and `Kernel` classes: a runtime entered with a user and
//! a passphrase, holding kernel and user services, a security module and a network
//! manager. It re-exports what users need from `rtpm-rt`, `rtpm-net` and `rtpm-overlay`.
//!
//! This crate is being built; see the project's issues for the capability list.

pub use rtpm_rt as rt;
