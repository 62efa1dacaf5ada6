//! The embedded default scenario: how many peers, how the overlay is shaped, what the
//! vehicles and the coordinator do and at which rates, and the messages they exchange.

use rtpm::event::TopicQos;
use rtpm::rt::time::Nanos;
use rtpm::{QosClass, ServiceId};
use serde::{Deserialize, Serialize};

/// The scenario's numbers (fixed, except the peer count and the duration).
#[derive(Clone, Copy, Debug)]
pub struct Scenario {
    /// Node processes: one coordinator, the rest one vehicle each.
    pub peers: usize,
    /// Super-peers per cell (k).
    pub cell_size: usize,
    /// Peers one super-peer serves before its cell is full (small, so that a handful of
    /// peers already makes two cells).
    pub peers_per_super_peer: usize,
    /// The overlay's heartbeat period.
    pub heartbeat: Nanos,
    /// The minimum inter-arrival time of the overlay's receive and send tasks.
    pub io_interarrival: Nanos,
    /// Datagrams one job of those tasks handles at most.
    pub io_batch: u32,
    /// A vehicle publishes its position this often (100 Hz).
    pub position_period: Nanos,
    /// The publishing task's declared worst-case execution time.
    pub position_wcet: Nanos,
    /// The DEADLINE a vehicle promises its subscribers (the longest gap between samples).
    pub position_deadline: Nanos,
    /// The liveliness lease a vehicle promises.
    pub position_lease: Nanos,
    /// A vehicle asks the coordinator for its speed limit this often.
    pub rpc_period: Nanos,
    /// The deadline of each speed-limit request.
    pub rpc_deadline: Nanos,
    /// When the super-peer is killed, as a fraction of the measured run.
    pub kill_at: f64,
}

impl Scenario {
    /// The default: 7 peers, cells of 2 super-peers serving 2 peers each (so 7 peers make
    /// at least two cells), 25 ms heartbeats, receive and send jobs every 250 µs at
    /// most (4 datagrams each), positions at 100 Hz with a 15 ms DEADLINE,
    /// speed limits asked at 10 Hz within 20 ms, the kill at 40 % of the run.
    pub fn embedded(peers: usize) -> Scenario {
        Scenario {
            peers,
            cell_size: 2,
            peers_per_super_peer: 2,
            heartbeat: Nanos::ms(25),
            io_interarrival: Nanos::us(250),
            io_batch: 4,
            position_period: Nanos::ms(10),
            position_wcet: Nanos::us(200),
            position_deadline: Nanos::ms(15),
            position_lease: Nanos::ms(100),
            rpc_period: Nanos::ms(100),
            rpc_deadline: Nanos::ms(20),
            kill_at: 0.4,
        }
    }
}

/// The topic vehicle `n` publishes its positions on: one topic per vehicle, so each
/// stream is found at its own node and measured on its own. (With one shared topic,
/// discovery names one publishing node as its owner and subscriptions reach the others
/// through it: killing that node would cut streams that do not come from it.)
pub fn positions_topic(vehicle: u32) -> String {
    format!("demo.positions.v{vehicle}")
}

/// The positions topic's QoS (the same at every publisher and subscriber): best effort
/// (a late position is worth less than the next one), 256 samples queued per subscriber.
pub fn topic_qos() -> TopicQos {
    TopicQos {
        class: QosClass::BEST_EFFORT,
        depth: 256,
    }
}

/// The coordinator's RPC service name.
pub const COORDINATOR: &str = "demo.coordinator";

/// The coordinator's operation: the speed limit at a position.
pub const SPEED_LIMIT_OP: u32 = 1;

/// The coordinator's service id.
pub fn coordinator_id() -> ServiceId {
    ServiceId::from_name(COORDINATOR)
}

/// A vehicle's position sample. `sent_ns` is `CLOCK_MONOTONIC` at publication, which
/// every process on the machine shares: the receiver's latency is its own clock minus it.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Position {
    /// The vehicle's number.
    pub vehicle: u32,
    /// The sample's sequence number at that vehicle.
    pub seq: u64,
    /// When it was published (`CLOCK_MONOTONIC`, ns).
    pub sent_ns: u64,
    /// Metres along the vehicle's line.
    pub along_m: f64,
    /// Speed, m/s.
    pub speed_mps: f64,
}

/// A speed-limit request: which vehicle, where.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct SpeedLimitRequest {
    /// The vehicle's number.
    pub vehicle: u32,
    /// Metres along its line.
    pub along_m: f64,
}

/// The coordinator's rule: the line is cut into 400 m blocks with limits of 50, 30 and
/// 70 km/h in turn (in m/s).
pub fn speed_limit(along_m: f64) -> f64 {
    const LIMITS: [f64; 3] = [50.0 / 3.6, 30.0 / 3.6, 70.0 / 3.6];
    let block = (along_m.max(0.0) / 400.0) as usize;
    LIMITS[block % LIMITS.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speed_limits_change_every_400_m() {
        assert!((speed_limit(0.0) - 50.0 / 3.6).abs() < 1e-9);
        assert!((speed_limit(399.0) - 50.0 / 3.6).abs() < 1e-9);
        assert!((speed_limit(400.0) - 30.0 / 3.6).abs() < 1e-9);
        assert!((speed_limit(1200.0) - 50.0 / 3.6).abs() < 1e-9);
    }

    #[test]
    fn a_position_round_trips_through_serde() {
        let p = Position {
            vehicle: 3,
            seq: 9,
            sent_ns: 123,
            along_m: 1.5,
            speed_mps: 8.0,
        };
        let text = serde_json::to_string(&p).unwrap();
        assert_eq!(serde_json::from_str::<Position>(&text).unwrap(), p);
    }
}
