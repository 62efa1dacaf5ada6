//! Every periodic and sporadic activity of the protocol, declared as a task spec, so a
//! driver can put the overlay through admission control like any other real-time work.
//!
//! These are plain data (nanoseconds, field names as in the rt crate's task model: period,
//! wcet, deadline); the driver maps them to the rt crate's `admission::TaskSpec`. The budgets
//! are per-activation estimates that scale with the number of peers a super-peer serves;
//! the driver may replace them with measured figures.

use super::config::Config;

/// How a task is released.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Release {
    /// Every `period` ns.
    Periodic {
        /// Period.
        period: u64,
    },
    /// At most once every `min_interarrival` ns.
    Sporadic {
        /// Minimum inter-arrival time.
        min_interarrival: u64,
    },
}

/// One activity of the protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TaskSpec {
    /// Name, for reports.
    pub name: &'static str,
    /// Release pattern.
    pub release: Release,
    /// Budget per activation (worst-case execution time estimate), ns.
    pub wcet: u64,
    /// Relative deadline, ns (≤ period / inter-arrival).
    pub deadline: u64,
}

impl TaskSpec {
    /// Period or minimum inter-arrival.
    pub fn period(&self) -> u64 {
        match self.release {
            Release::Periodic { period } => period,
            Release::Sporadic { min_interarrival } => min_interarrival,
        }
    }
}

/// Per-datagram handling budget used in the estimates (MAC + decode + state update).
pub const PER_DATAGRAM_NS: u64 = 5_000;

/// The task set of one super-peer with this config (a peer's is a subset).
pub fn tasks(cfg: &Config) -> Vec<TaskSpec> {
    let hb = cfg.heartbeat;
    // datagrams a super-peer sends per heartbeat: its peers, its mates, its parent
    let fanout = (cfg.max_bound * 2 + cfg.cell_size + cfg.cell_size) as u64;
    vec![
        TaskSpec {
            name: "heartbeat",
            release: Release::Periodic { period: hb },
            wcet: fanout * PER_DATAGRAM_NS,
            deadline: hb / 2,
        },
        TaskSpec {
            name: "failure-detector",
            release: Release::Periodic { period: hb / 2 },
            wcet: 20_000,
            deadline: hb / 4,
        },
        TaskSpec {
            name: "lease-refresh",
            release: Release::Periodic {
                period: cfg.lease / 3,
            },
            wcet: 8 * PER_DATAGRAM_NS,
            deadline: cfg.lease / 6,
        },
        TaskSpec {
            name: "root-beacon",
            release: Release::Periodic {
                period: cfg.beacon_period,
            },
            wcet: PER_DATAGRAM_NS,
            deadline: cfg.beacon_period,
        },
        TaskSpec {
            name: "control-message",
            // every peer beats its super-peer each peer_beat_every periods; mates and
            // parent each period: the arrival rate bound of control datagrams
            release: Release::Sporadic {
                min_interarrival: hb / fanout.max(1),
            },
            wcet: PER_DATAGRAM_NS,
            deadline: hb / fanout.max(1),
        },
        TaskSpec {
            name: "retransmit",
            release: Release::Sporadic {
                min_interarrival: cfg.messaging.min_rto,
            },
            wcet: 4 * PER_DATAGRAM_NS,
            deadline: cfg.messaging.min_rto,
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::id::{Addr, PeerId};
    use crate::proto::security::OverlayKey;

    #[test]
    fn every_task_has_constrained_deadline_and_fits_its_period() {
        let a = Addr("10.0.0.1:1".parse().unwrap());
        let cfg = Config::new(PeerId(1), a, a, 1, OverlayKey([0; 32]));
        let ts = tasks(&cfg);
        assert!(ts.len() >= 5);
        let mut util = 0.0;
        for t in &ts {
            assert!(t.deadline <= t.period(), "{}", t.name);
            assert!(t.wcet <= t.deadline, "{}", t.name);
            util += t.wcet as f64 / t.period() as f64;
        }
        assert!(
            util < 1.0,
            "the overlay alone would overload a core: {util}"
        );
    }
}
