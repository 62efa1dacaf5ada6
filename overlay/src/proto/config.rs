//! An endpoint's configuration: identity, keys, cell shape and timers.

use super::id::{Addr, PeerId};
use super::messaging::{ClassPolicy, MessagingConfig};
use super::security::OverlayKey;
use super::time::MS;
use crate::error::Error;

/// Everything an overlay endpoint is configured with. Times are nanoseconds.
#[derive(Clone, Debug)]
pub struct Config {
    /// This peer's id (never `PeerId::NONE`).
    pub id: PeerId,
    /// Where this peer listens.
    pub addr: Addr,
    /// The overlay's multicast group (join advertisements and root beacons).
    pub group: Addr,
    /// Overlay id carried in every header.
    pub overlay: u32,
    /// Overlay key (from the key file).
    pub key: OverlayKey,
    /// Encrypt payloads (XChaCha20-Poly1305) as well as authenticating them.
    pub encrypt: bool,
    /// Grows at every restart of this peer (keeps its sequence numbers fresh).
    pub incarnation: u32,
    /// Seed of the endpoint's random choices (nonces, timer phase).
    pub seed: u64,
    /// Target number of super-peers per cell (k).
    pub cell_size: usize,
    /// Peers one super-peer serves before its cell counts as full.
    pub max_bound: usize,
    /// Child cells per cell.
    pub max_children: usize,
    /// Heartbeat period.
    pub heartbeat: u64,
    /// A bound peer beats its super-peer every this many periods.
    pub peer_beat_every: u32,
    /// Silence, in expected intervals, after which a peer is suspected (φ threshold in
    /// units of the mean inter-arrival time).
    pub suspect_intervals: f64,
    /// Time a suspected peer has to answer a probe before it is declared down.
    pub probe_timeout: u64,
    /// How long to wait for answers to a join advertisement.
    pub solicit_timeout: u64,
    /// Root beacon period.
    pub beacon_period: u64,
    /// Discovery lease of a published SAP.
    pub lease: u64,
    /// Lifetime of a learnt route.
    pub route_ttl: u64,
    /// Lookup timeout.
    pub lookup_timeout: u64,
    /// QoS classes.
    pub classes: Vec<ClassPolicy>,
    /// Messaging limits.
    pub messaging: MessagingConfig,
    /// Replay-window table bound (senders).
    pub max_senders: usize,
    /// Discovery index bound (entries).
    pub max_index: usize,
    /// Route table bound.
    pub max_routes: usize,
}

impl Config {
    /// Defaults around a 25 ms heartbeat for peer `id` at `addr`.
    pub fn new(id: PeerId, addr: Addr, group: Addr, overlay: u32, key: OverlayKey) -> Config {
        let heartbeat = 25 * MS;
        Config {
            id,
            addr,
            group,
            overlay,
            key,
            encrypt: false,
            incarnation: 1,
            seed: id.0 as u64,
            cell_size: 3,
            max_bound: 16,
            max_children: 4,
            heartbeat,
            peer_beat_every: 8,
            suspect_intervals: 2.0,
            probe_timeout: heartbeat / 2,
            solicit_timeout: 3 * heartbeat,
            beacon_period: 4 * heartbeat,
            lease: 30_000 * MS,
            route_ttl: 60_000 * MS,
            lookup_timeout: 10 * heartbeat,
            classes: vec![
                ClassPolicy {
                    class: 0,
                    reliable: false,
                    priority: 0,
                },
                ClassPolicy {
                    class: 1,
                    reliable: true,
                    priority: 1,
                },
            ],
            messaging: MessagingConfig::default(),
            max_senders: 4096,
            max_index: 1 << 20,
            max_routes: 4096,
        }
    }

    /// Set the heartbeat period and scale the timers derived from it.
    pub fn with_heartbeat(mut self, heartbeat: u64) -> Config {
        self.heartbeat = heartbeat;
        self.probe_timeout = heartbeat / 2;
        self.solicit_timeout = 3 * heartbeat;
        self.beacon_period = 4 * heartbeat;
        self.lookup_timeout = 10 * heartbeat;
        self
    }

    /// Check ranges. Nothing is applied when this fails.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |field, why| Err(Error::Config { field, why });
        if self.id == PeerId::NONE {
            return bad("id", "must not be zero");
        }
        if !(1..=super::frame::MAX_MEMBERS - 2).contains(&self.cell_size) {
            return bad("cell_size", "must be between 1 and 6");
        }
        if !(1..=super::frame::MAX_BOUND).contains(&self.max_bound) {
            return bad("max_bound", "must be between 1 and 32");
        }
        if !(1..=64).contains(&self.max_children) {
            return bad("max_children", "must be between 1 and 64");
        }
        if self.heartbeat < MS / 10 {
            return bad("heartbeat", "must be at least 100us");
        }
        if self.peer_beat_every == 0 {
            return bad("peer_beat_every", "must be at least 1");
        }
        if self.suspect_intervals.is_nan() || self.suspect_intervals < 1.0 {
            return bad("suspect_intervals", "must be at least 1.0");
        }
        if self.lease < 3 * self.heartbeat {
            return bad("lease", "must be at least three heartbeat periods");
        }
        if self.classes.is_empty() || self.classes.len() > super::frame::MAX_SAPS {
            return bad("classes", "must list between 1 and 8 QoS classes");
        }
        Ok(())
    }
}
