//! A deterministic simulator: many [`Node`](crate::proto::Node)s in virtual time over a
//! seeded network model.
//!
//! [`world::Sim`] owns the nodes, a binary-heap event queue (datagram deliveries and node
//! timers, ordered by time then by insertion), the network model ([`net::NetConfig`]:
//! per-link latency, jitter, loss, duplication, reordering, partitions) and one seeded RNG.
//! Nothing reads the wall clock, so the same seed gives the same run bit for bit; the
//! optional trace hash ([`world::Sim::trace_hash`]) proves it. [`check`] verifies the tree
//! invariants and discoverability against the nodes' state, [`scenario`] scripts the
//! standard failure scenarios and measures them.

pub mod check;
pub mod net;
pub mod scenario;
pub mod world;
