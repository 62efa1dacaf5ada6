//! Notices: membership changes the application hears about, off the RT core.
//!
//! The holder turns the protocol's events (other than messages and lookup answers) into
//! small `Copy` notices and queues them; the driver's clock thread, on a general core,
//! logs them through `tracing` and hands them to the [`Sink`](super::Sink).

use crate::proto::{CellId, Event, PeerId};

/// A membership change of this node.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Notice {
    /// Joined: bound in `cell`, or a super-peer of it.
    Joined {
        /// The cell.
        cell: CellId,
        /// Whether as a super-peer.
        super_peer: bool,
    },
    /// Bound again after the super-peer failed or left.
    Rebound {
        /// The cell.
        cell: CellId,
        /// The new super-peer.
        super_peer: PeerId,
    },
    /// Became a super-peer of `cell`.
    Promoted {
        /// The cell.
        cell: CellId,
    },
    /// No longer a super-peer.
    Demoted,
    /// The failure detector declared `peer` down.
    PeerDown {
        /// Who.
        peer: PeerId,
        /// Its φ when declared.
        phi: f64,
    },
    /// This cell became a root.
    BecameRoot {
        /// The cell.
        cell: CellId,
    },
    /// This cell attached under `parent`.
    Attached {
        /// The parent cell.
        parent: CellId,
    },
    /// Start (true) or stop listening to the bootstrap group.
    ListenGroup(bool),
    /// A reliable stream to `to` on `class` gave up.
    Undeliverable {
        /// The peer.
        to: PeerId,
        /// The class.
        class: u8,
    },
    /// Left the overlay.
    Left,
}

impl Notice {
    /// The notice for a protocol event (`None` for messages and lookup answers).
    pub(crate) fn of(e: &Event) -> Option<Notice> {
        Some(match *e {
            Event::Joined { cell, super_peer } => Notice::Joined { cell, super_peer },
            Event::Rebound { cell, super_peer } => Notice::Rebound { cell, super_peer },
            Event::Promoted { cell } => Notice::Promoted { cell },
            Event::Demoted => Notice::Demoted,
            Event::PeerDown { peer, phi } => Notice::PeerDown { peer, phi },
            Event::BecameRoot { cell } => Notice::BecameRoot { cell },
            Event::Attached { parent } => Notice::Attached { parent },
            Event::ListenGroup(on) => Notice::ListenGroup(on),
            Event::Undeliverable { to, class } => Notice::Undeliverable { to, class },
            Event::Left => Notice::Left,
            Event::Message(_) | Event::LookupDone { .. } | Event::LookupTimeout { .. } => {
                return None;
            }
        })
    }

    /// Logs the notice for overlay `overlay`.
    pub(crate) fn log(&self, overlay: &str) {
        match *self {
            Notice::Joined { cell, super_peer } => tracing::info!(
                overlay,
                cell = %cell_name(cell),
                role = if super_peer { "super-peer" } else { "peer" },
                "joined"
            ),
            Notice::Rebound { cell, super_peer } => tracing::info!(
                overlay,
                cell = %cell_name(cell),
                super_peer = %peer_name(super_peer),
                "rebound to a new super-peer"
            ),
            Notice::Promoted { cell } => {
                tracing::info!(overlay, cell = %cell_name(cell), "promoted to super-peer")
            }
            Notice::Demoted => tracing::info!(overlay, "no longer a super-peer"),
            Notice::PeerDown { peer, phi } => {
                tracing::warn!(overlay, peer = %peer_name(peer), phi, "peer declared down")
            }
            Notice::BecameRoot { cell } => {
                tracing::info!(overlay, cell = %cell_name(cell), "this cell is a root")
            }
            Notice::Attached { parent } => {
                tracing::info!(overlay, parent = %cell_name(parent), "cell attached under a parent")
            }
            Notice::ListenGroup(on) => {
                tracing::debug!(overlay, on, "bootstrap group membership")
            }
            Notice::Undeliverable { to, class } => tracing::warn!(
                overlay,
                to = %peer_name(to),
                class,
                "reliable stream gave up"
            ),
            Notice::Left => tracing::info!(overlay, "left the overlay"),
        }
    }
}

/// A peer id as a UUID-style string (how the kernel names nodes).
pub fn peer_name(p: PeerId) -> String {
    let h = format!("{:032x}", p.0);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// A cell id as `created.founder` in hex.
pub fn cell_name(c: CellId) -> String {
    format!("{:x}.{:x}", c.created, c.founder)
}
