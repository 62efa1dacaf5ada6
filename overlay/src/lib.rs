//! # rtpm-overlay: the P3 overlay
//!
//! **Cells and the tree.** Peers of an overlay are either ordinary peers or
//! super-peers. Super-peers form *cells* of k members (default 3); every ordinary peer
//! is bound to one super-peer of one cell and knows all of that cell's members. Cells
//! form a tree: each cell but the root has a parent cell, and its coordinator beats every
//! member of the parent, receiving the parent's view (root id, depth) in return. No single
//! failure loses the coordination of the peers below it: the other members of the cell
//! hold the same view and the same index.
//!
//! **Coordinator rule.** A cell's coordinator is its member with the lowest id not
//! declared down. Only it changes the cell's view (raising the version) and pushes it to
//! the members; members adopt newer versions. It promotes a bound peer when the cell is
//! short of k, splits a full cell by founding a child cell from k of its peers, lends
//! peers to short child cells, and dissolves a cell that cannot refill.
//!
//! **Repair.** A φ-accrual failure detector with probe confirmation (the probe checks the
//! relationship, not just liveness) watches cell mates and super-peers every period,
//! bound peers every few periods. A peer whose super-peer is declared down binds to the
//! next live member of its cell (then to the parent cell, then advertises again) and
//! re-publishes its SAPs at once. The coordinator drops dead members; the cell keeps its
//! id only if a strict majority survives, otherwise it takes a new id and becomes a root,
//! so two halves of a partitioned cell never share an id. A cell whose whole parent cell
//! died becomes a root too. Roots listen to the overlay's multicast group and beacon on
//! it; a root that hears an older root (smaller cell id) attaches under it, placed like a
//! joining peer, so partitions and a lost root converge back to one tree.
//!
//! **Joining.** A peer multicasts an advertisement; the root cell's coordinator answers
//! with an offer of its own cell, or a redirect to its least-loaded child, so placement
//! descends the tree. A peer that hears nobody after three advertisements founds a root.
//!
//! **Discovery index.** Published SAPs are records (owner, address, QoS class,
//! version) replicated among a cell's members and aggregated up the tree: each cell
//! holds its subtree's records, the root holds all. At the owner's cell they are soft
//! state: owners refresh their lease every third of it and re-publish at once after a
//! rebind, and a lapsed lease is withdrawn. Above it a record is held per link, valid
//! while the child cell it came from is alive: only changes travel up (adds, withdrawals),
//! on per-link reliable, ordered sync channels, so keeping a subtree's index alive costs
//! one beat per link whatever its size; digests on the beats and snapshots repair any
//! divergence. A lookup asks the own cell, then climbs parent by parent to the root; the
//! cell that knows the key (or the root, with a definite not-found) answers the requester
//! directly, so a lookup costs at most depth + 2 messages.
//!
//! **Message flow.** Every datagram has a fixed, authenticated header
//! ([`proto::wire`], [`proto::security`]: keyed BLAKE3 MAC or XChaCha20-Poly1305, a
//! per-sender replay window; bad datagrams are dropped and counted before any parsing).
//! Application messages use QoS classes ([`proto::messaging`]): best-effort, or reliable
//! with sequence numbers, selective acks, bounded-backoff retransmission, duplicate
//! suppression and in-order delivery per (sender, class), fragmented over the MTU. They
//! go directly when the destination's address is known ([`proto::routing`]), otherwise
//! up the tree until a cell knows the destination.
//!
//! **Sans-IO.** [`proto`] is pure: [`proto::Node`] takes `handle_datagram(from, bytes,
//! now)`, `handle_timeout(now)` and commands, and answers through `poll_transmit`,
//! `poll_event` and `poll_timeout`; randomness is seeded from its config, and every
//! protocol activity is declared as a task spec ([`proto::tasks`]) for admission control.
//! [`sim`] drives thousands of nodes in virtual time over a seeded network model,
//! deterministically; [`driver`] binds a node to real sockets (one SAP per QoS class, the
//! bootstrap group) and runs every protocol activity as an admitted real-time task.

#![forbid(unsafe_code)]

pub mod driver;
pub mod error;
pub mod proto;
pub mod sim;

pub use error::Error;
