//! # rtpm-overlay: the P3 overlay
//!
//! Super-peers form cells, cells form a tree with a root cell, and lower-rank peers
//! attach to a cell. The protocol (`proto`) is a deterministic, sans-IO state machine:
//! it takes datagrams and timeouts with the time they happened, and returns what to send
//! and when to wake it. A simulator drives it in virtual time; a driver binds it to
//! sockets.
//!
//! This crate is being built; see the project's issues for the capability list.
