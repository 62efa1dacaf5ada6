//! The demo's two SVG figures, drawn with `rtpm latency`'s plotter: the latency
//! distributions (each vehicle's position stream, and the speed-limit round trips), and
//! the timeline around the failure (each stream's worst latency per 100 ms, the round
//! trips, samples delivered and requests failed per 100 ms, and the kill, rebind and
//! repair instants).

use crate::cmd::latency::plot::{self, Counts, Mark, Series, Track};

use super::records::{Outcome, RpcRecord, Sample};
use super::report::Report;

const COLOURS: [&str; 10] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22",
    "#7f7f7f", "#aec7e8",
];

/// The distributions figure.
pub fn distributions(report: &Report) -> String {
    let labels: Vec<String> = report
        .streams
        .iter()
        .map(|s| {
            format!(
                "vehicle {} positions{}",
                s.vehicle,
                if s.killed { " (killed)" } else { "" }
            )
        })
        .collect();
    let mut series: Vec<Series<'_>> = report
        .streams
        .iter()
        .zip(&labels)
        .enumerate()
        .map(|(i, (s, label))| Series {
            label,
            colour: COLOURS[i % COLOURS.len()],
            hist: &s.hist,
        })
        .collect();
    series.push(Series {
        label: "speed-limit RPC round trip",
        colour: "#d62728",
        hist: &report.rpc.hist,
    });
    plot::distributions(
        &format!(
            "rtpm demo: {} peers, {:.0} s: position latency and RPC round trips",
            report.peers, report.duration_s
        ),
        "latency (positions: publish to delivery; RPC: round trip)",
        &series,
    )
}

/// The instants to mark on the timeline, in `CLOCK_MONOTONIC` ns.
#[derive(Clone, Copy, Debug, Default)]
pub struct Instants {
    /// The measured run's start.
    pub start_ns: u64,
    /// Its end.
    pub end_ns: u64,
    /// The kill.
    pub kill_ns: Option<u64>,
    /// Every survivor rebound.
    pub rebound_ns: Option<u64>,
    /// Every SAP discoverable again.
    pub repaired_ns: Option<u64>,
}

const BIN_S: f64 = 0.1;

/// The timeline figure: from 3 s before the kill to 3 s after the repair (the whole run
/// without a kill), in seconds relative to the kill (to the start without one).
pub fn timeline(samples: &[Sample], rpcs: &[RpcRecord], at: &Instants) -> String {
    let zero = at.kill_ns.unwrap_or(at.start_ns);
    let rel = |t: u64| (t as f64 - zero as f64) / 1e9;
    let (x0, x1) = match at.kill_ns {
        Some(k) => {
            let after = at.repaired_ns.or(at.rebound_ns).unwrap_or(k);
            (
                rel(at.start_ns).max(-3.0),
                rel(at.end_ns)
                    .min(rel(after) + 3.0)
                    .max(2.0f64.min(rel(at.end_ns))),
            )
        }
        None => (0.0, rel(at.end_ns)),
    };
    let bins = (((x1 - x0) / BIN_S).ceil().max(1.0)) as usize;
    let bin_of = |t: f64| {
        let b = ((t - x0) / BIN_S).floor();
        (b >= 0.0 && (b as usize) < bins).then_some(b as usize)
    };
    // per vehicle: the worst latency of each bin
    let mut vehicles: Vec<u32> = samples.iter().map(|s| s.vehicle).collect();
    vehicles.sort_unstable();
    vehicles.dedup();
    let mut worst = vec![vec![0.0f64; bins]; vehicles.len()];
    let mut delivered = vec![0u64; bins];
    for s in samples {
        let Some(b) = bin_of(rel(s.sent_ns)) else {
            continue;
        };
        delivered[b] += 1;
        if let Ok(v) = vehicles.binary_search(&s.vehicle) {
            let us = s.recv_ns.saturating_sub(s.sent_ns) as f64 / 1000.0;
            worst[v][b] = worst[v][b].max(us);
        }
    }
    let lines: Vec<Vec<(f64, f64)>> = worst
        .iter()
        .map(|w| {
            w.iter()
                .enumerate()
                .filter(|(_, us)| **us > 0.0)
                .map(|(b, us)| (x0 + (b as f64 + 0.5) * BIN_S, *us))
                .collect()
        })
        .collect();
    let mut failed = vec![0u64; bins];
    let mut round_trips = Vec::new();
    for r in rpcs {
        let t = rel(r.issued_ns);
        if r.outcome == Outcome::Ok {
            round_trips.push((t, r.rtt_ns as f64 / 1000.0));
        } else if let Some(b) = bin_of(t) {
            failed[b] += 1;
        }
    }
    let labels: Vec<String> = vehicles
        .iter()
        .map(|v| format!("vehicle {v}: worst per 100 ms"))
        .collect();
    let mut tracks: Vec<Track<'_>> = lines
        .iter()
        .zip(&labels)
        .enumerate()
        .map(|(i, (points, label))| Track {
            label,
            colour: COLOURS[i % COLOURS.len()],
            points,
            dots: false,
        })
        .collect();
    tracks.push(Track {
        label: "RPC round trip",
        colour: "#d62728",
        points: &round_trips,
        dots: true,
    });
    let mut marks = Vec::new();
    if at.kill_ns.is_some() {
        marks.push(Mark {
            label: "super-peer killed",
            colour: "#d62728",
            at: 0.0,
        });
    }
    if let Some(t) = at.rebound_ns {
        marks.push(Mark {
            label: "every survivor rebound",
            colour: "#ff7f0e",
            at: rel(t),
        });
    }
    if let Some(t) = at.repaired_ns {
        marks.push(Mark {
            label: "every SAP discoverable: repaired",
            colour: "#2ca02c",
            at: rel(t),
        });
    }
    let counts = [
        Counts {
            label: "positions delivered / 100 ms",
            colour: "#555555",
            start: x0,
            bin: BIN_S,
            counts: &delivered,
        },
        Counts {
            label: "RPCs failed / 100 ms",
            colour: "#000000",
            start: x0,
            bin: BIN_S,
            counts: &failed,
        },
    ];
    let title = if at.kill_ns.is_some() {
        "rtpm demo: around the failure (time relative to the kill)"
    } else {
        "rtpm demo: timeline (no failure injected)"
    };
    plot::timeline(title, (x0, x1), &tracks, &marks, &counts)
}
