//! # rtpm-net: the network layer
//!
//! Messages enter rtpm here. Each service access point (SAP) is one socket with one
//! implicit QoS class, served by its own reactor, so traffic of different classes is
//! never multiplexed. A leader/followers pool of threads serves each reactor: exactly one
//! thread waits on the event source, and it promotes a follower before it processes the
//! event it took. Received datagrams reach real-time tasks as buffer handles pushed into
//! lock-free queues, never as copies.
//!
//! This crate is being built; see the project's issues for the capability list.
