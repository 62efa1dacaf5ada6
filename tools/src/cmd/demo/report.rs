//! The report: what the peers recorded, cut to the measured window and summarised —
//! per-stream publish-to-delivery latency percentiles, lost samples and DEADLINE
//! notices, the speed-limit round trips and their failures, the tasks' deadline misses,
//! and the repair time — as text for the terminal and `report.txt`, and as
//! `report.json`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::records::{NoticeRecord, Outcome, RpcRecord, Sample};

/// The instants of the run (`CLOCK_MONOTONIC` ns) that the records are cut by.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Window {
    /// The measured run starts (the overlay is formed).
    pub start_ns: u64,
    /// It ends.
    pub end_ns: u64,
    /// The super-peer was killed, if it was.
    pub kill_ns: Option<u64>,
}

impl Window {
    /// Whether `t` falls in the window.
    pub fn holds(&self, t: u64) -> bool {
        t >= self.start_ns && t < self.end_ns
    }
}

/// Percentiles in µs.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Micros {
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest.
    pub max: f64,
}

impl Micros {
    /// Of `h` (ns).
    pub fn of(h: &Histogram<u64>) -> Micros {
        if h.is_empty() {
            return Micros::default();
        }
        let us = |v: u64| v as f64 / 1000.0;
        Micros {
            p50: us(h.value_at_quantile(0.5)),
            p99: us(h.value_at_quantile(0.99)),
            p999: us(h.value_at_quantile(0.999)),
            max: us(h.max()),
        }
    }
}

/// A latency histogram in ns (1 ns .. ~68 s, 3 significant digits).
pub fn histogram() -> Result<Histogram<u64>, String> {
    Histogram::new_with_bounds(1, 1 << 36, 3).map_err(|e| format!("a histogram: {e:?}"))
}

/// One vehicle's position stream, as the coordinator received it.
#[derive(Clone, Debug, Serialize)]
pub struct Stream {
    /// The vehicle.
    pub vehicle: u32,
    /// Samples received that were published in the window.
    pub received: u64,
    /// Samples missing between the first and the last received (by sequence number).
    pub lost: u64,
    /// Publish-to-delivery latency.
    pub latency_us: Micros,
    /// DEADLINE notices for this vehicle in the window (for the killed vehicle, before
    /// the kill: after it, one a period follows until the run ends, by design).
    pub deadline_notices: u64,
    /// For the killed vehicle: kill → the coordinator told its liveliness was lost, ms.
    pub liveliness_lost_after_ms: Option<f64>,
    /// Liveliness-lost notices for this vehicle in the window.
    pub liveliness_lost: u64,
    /// The longest gap between two received samples in the window, ms.
    pub longest_gap_ms: f64,
    /// Whether its peer was the one killed.
    pub killed: bool,
    /// Its histogram (for the plot).
    #[serde(skip)]
    pub hist: Histogram<u64>,
}

/// The speed-limit requests.
#[derive(Clone, Debug, Serialize)]
pub struct Rpcs {
    /// Issued in the window.
    pub issued: u64,
    /// Answered in time.
    pub answered: u64,
    /// Past their deadline.
    pub timeouts: u64,
    /// The coordinator could not be found or reached.
    pub not_found: u64,
    /// Found but could not take the request.
    pub unavailable: u64,
    /// Other failures.
    pub failed: u64,
    /// Round trips of the answered ones.
    pub round_trip_us: Micros,
    /// Their histogram (for the plot).
    #[serde(skip)]
    pub hist: Histogram<u64>,
}

/// The failure and the repair.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Repair {
    /// The killed peer (`p3`), its role and what it hosted.
    pub victim: String,
    /// Seconds into the run.
    pub killed_at_s: f64,
    /// Kill → every survivor joined in one tree, none naming the victim, ms.
    pub rebound_ms: Option<f64>,
    /// Kill → additionally every survivor's SAPs (and the coordinator's service, when it
    /// was discoverable before) found by every survivor, ms: the repair time.
    pub repaired_ms: Option<f64>,
    /// How long the check that saw the repair took, ms (the measurement's resolution).
    pub check_ms: Option<f64>,
    /// What was checked.
    pub criterion: String,
}

/// Everything the demo reports.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Peers started.
    pub peers: usize,
    /// Cells when the run started.
    pub cells: usize,
    /// Super-peers when the run started.
    pub super_peers: usize,
    /// Measured seconds.
    pub duration_s: f64,
    /// Per vehicle.
    pub streams: Vec<Stream>,
    /// All streams together.
    pub all_streams_us: Micros,
    /// Samples received in the window, all streams.
    pub samples: u64,
    /// The speed-limit requests.
    pub rpc: Rpcs,
    /// Deadline misses of the demo's tasks (vehicles' publishing, coordinator's
    /// requests), as the peers' executors count them, over the whole life of the peers
    /// that exited cleanly.
    pub task_misses: u64,
    /// Of the peers' other tasks (overlay, event monitor).
    pub other_task_misses: u64,
    /// The failure and the repair, when a peer was killed.
    pub repair: Option<Repair>,
    /// Anything the reader must know (a peer that did not stop, a missing path).
    pub notes: Vec<String>,
}

/// Cuts the records to `w` and summarises them. `killed_vehicle` is the vehicle on the
/// killed peer, if any.
pub fn streams(
    samples: &[Sample],
    notices: &[NoticeRecord],
    w: &Window,
    killed_vehicle: Option<u32>,
) -> Result<(Vec<Stream>, Histogram<u64>), String> {
    let mut by: BTreeMap<u32, Vec<&Sample>> = BTreeMap::new();
    for s in samples.iter().filter(|s| w.holds(s.sent_ns)) {
        by.entry(s.vehicle).or_default().push(s);
    }
    let mut all = histogram()?;
    let mut out = Vec::new();
    for (vehicle, mut v) in by {
        v.sort_by_key(|s| s.seq);
        let mut hist = histogram()?;
        for s in &v {
            let _ = hist.record(s.recv_ns.saturating_sub(s.sent_ns).max(1));
        }
        let _ = all.add(&hist);
        let span = match (v.first(), v.last()) {
            (Some(a), Some(b)) => b.seq - a.seq + 1,
            _ => 0,
        };
        let mut recv: Vec<u64> = v.iter().map(|s| s.recv_ns).collect();
        recv.sort_unstable();
        let gap = recv.windows(2).map(|p| p[1] - p[0]).max().unwrap_or(0);
        let killed = killed_vehicle == Some(vehicle);
        let until = match (killed, w.kill_ns) {
            (true, Some(k)) => k,
            _ => w.end_ns,
        };
        let count = |kind: &str, until: u64| {
            notices
                .iter()
                .filter(|n| {
                    n.vehicle == Some(vehicle)
                        && n.kind == kind
                        && w.holds(n.at_ns)
                        && n.at_ns < until
                })
                .count() as u64
        };
        let lost_after = match (killed, w.kill_ns) {
            (true, Some(k)) => notices
                .iter()
                .filter(|n| {
                    n.vehicle == Some(vehicle) && n.kind == "liveliness-lost" && n.at_ns >= k
                })
                .map(|n| (n.at_ns - k) as f64 / 1e6)
                .reduce(f64::min),
            _ => None,
        };
        out.push(Stream {
            vehicle,
            received: v.len() as u64,
            lost: span.saturating_sub(v.len() as u64),
            latency_us: Micros::of(&hist),
            deadline_notices: count("deadline-missed", until),
            liveliness_lost_after_ms: lost_after,
            liveliness_lost: count("liveliness-lost", w.end_ns),
            longest_gap_ms: gap as f64 / 1e6,
            killed,
            hist,
        });
    }
    Ok((out, all))
}

/// Cuts the requests to `w` and summarises them.
pub fn rpcs(records: &[RpcRecord], w: &Window) -> Result<Rpcs, String> {
    let mut r = Rpcs {
        issued: 0,
        answered: 0,
        timeouts: 0,
        not_found: 0,
        unavailable: 0,
        failed: 0,
        round_trip_us: Micros::default(),
        hist: histogram()?,
    };
    for x in records.iter().filter(|x| w.holds(x.issued_ns)) {
        r.issued += 1;
        match x.outcome {
            Outcome::Ok => {
                r.answered += 1;
                let _ = r.hist.record(x.rtt_ns.max(1));
            }
            Outcome::Timeout => r.timeouts += 1,
            Outcome::NotFound => r.not_found += 1,
            Outcome::Unavailable => r.unavailable += 1,
            Outcome::Failed => r.failed += 1,
        }
    }
    r.round_trip_us = Micros::of(&r.hist);
    Ok(r)
}

fn ms(v: Option<f64>) -> String {
    v.map_or("not within the run".into(), |v| format!("{v:.0} ms"))
}

impl Report {
    /// The report as text.
    pub fn text(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(
            o,
            "rtpm demo: {} peers on loopback, {} cells ({} super-peers) at the start, {:.1} s measured",
            self.peers, self.cells, self.super_peers, self.duration_s
        );
        let _ = writeln!(o);
        let _ = writeln!(
            o,
            "Positions, 100 Hz per vehicle, publish -> delivery at the coordinator (µs):"
        );
        let _ = writeln!(
            o,
            "  {:<12} {:>8} {:>6} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "stream", "samples", "lost", "p50", "p99", "p99.9", "max", "DEADLINE", "gap ms"
        );
        for s in &self.streams {
            let _ = writeln!(
                o,
                "  {:<12} {:>8} {:>6} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9} {:>9.1}{}",
                format!("vehicle {}", s.vehicle),
                s.received,
                s.lost,
                s.latency_us.p50,
                s.latency_us.p99,
                s.latency_us.p999,
                s.latency_us.max,
                s.deadline_notices,
                s.longest_gap_ms,
                match (s.killed, s.liveliness_lost_after_ms) {
                    (true, Some(t)) => format!("  killed; liveliness lost notice {t:.0} ms after"),
                    (true, None) => "  killed; no liveliness lost notice".to_string(),
                    _ => String::new(),
                }
            );
        }
        let a = &self.all_streams_us;
        let _ = writeln!(
            o,
            "  {:<12} {:>8} {:>6} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9}",
            "all",
            self.samples,
            self.streams.iter().map(|s| s.lost).sum::<u64>(),
            a.p50,
            a.p99,
            a.p999,
            a.max,
            self.streams.iter().map(|s| s.deadline_notices).sum::<u64>()
        );
        if self.streams.is_empty() {
            let _ = writeln!(o, "  (no position reached the coordinator)");
        }
        let _ = writeln!(
            o,
            "  DEADLINE: notices to the coordinator that a vehicle let 15 ms pass without a sample \
             (the killed one's counted until the kill). Gap: the longest between two deliveries.\n  \
             Deadline misses of the tasks: {} (vehicles' publishing, coordinator's requests), {} (overlay and event tasks)",
            self.task_misses, self.other_task_misses
        );
        if self.task_misses + self.other_task_misses > 0 {
            let _ = writeln!(
                o,
                "  (The {} peers share this machine's one RT core, and each peer's admission \
                 counts only its own tasks: a job of one peer can be preempted by another's. \
                 With one runtime per RT core, as on separate machines, admission accounts for every task on it.)",
                self.peers
            );
        }
        let _ = writeln!(o);
        let r = &self.rpc;
        let _ = writeln!(
            o,
            "Speed-limit RPC, two-way with a 20 ms deadline, vehicles -> coordinator:"
        );
        let _ = writeln!(
            o,
            "  {} issued, {} answered, {} timeouts, {} not found, {} unavailable, {} failed",
            r.issued, r.answered, r.timeouts, r.not_found, r.unavailable, r.failed
        );
        let _ = writeln!(
            o,
            "  round trip (µs): p50 {:.1}, p99 {:.1}, p99.9 {:.1}, max {:.1}",
            r.round_trip_us.p50, r.round_trip_us.p99, r.round_trip_us.p999, r.round_trip_us.max
        );
        let _ = writeln!(o);
        match &self.repair {
            Some(x) => {
                let _ = writeln!(o, "Failure and repair:");
                let _ = writeln!(
                    o,
                    "  killed {} (SIGKILL) at {:.2} s",
                    x.victim, x.killed_at_s
                );
                let _ = writeln!(o, "  every survivor rebound: {}", ms(x.rebound_ms));
                let _ = writeln!(
                    o,
                    "  repair time: {} ({}{})",
                    ms(x.repaired_ms),
                    x.criterion,
                    x.check_ms.map_or(String::new(), |c| format!(
                        "; the check that saw it took {c:.0} ms"
                    ))
                );
            }
            None => {
                let _ = writeln!(o, "Failure and repair: no super-peer was killed");
            }
        }
        for n in &self.notes {
            let _ = writeln!(o, "note: {n}");
        }
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(vehicle: u32, seq: u64, sent_ms: u64, latency_us: u64) -> Sample {
        Sample {
            recv_ns: sent_ms * 1_000_000 + latency_us * 1000,
            vehicle,
            seq,
            sent_ns: sent_ms * 1_000_000,
        }
    }

    #[test]
    fn streams_are_cut_to_the_window_and_gaps_and_losses_counted() {
        let w = Window {
            start_ns: 100_000_000,
            end_ns: 200_000_000,
            kill_ns: None,
        };
        let mut s = vec![sample(1, 0, 50, 10)]; // before the window
        for seq in 1..=9 {
            if seq != 5 {
                s.push(sample(1, seq, 100 + seq * 10, 100 * seq));
            }
        }
        s.push(sample(2, 1, 150, 40));
        let notices = vec![
            NoticeRecord {
                at_ns: 160_000_000,
                kind: "deadline-missed".into(),
                vehicle: Some(1),
            },
            NoticeRecord {
                at_ns: 10,
                kind: "deadline-missed".into(),
                vehicle: Some(1),
            },
        ];
        let (streams, all) = streams(&s, &notices, &w, Some(2)).unwrap();
        assert_eq!(streams.len(), 2);
        let v1 = &streams[0];
        assert_eq!((v1.vehicle, v1.received, v1.lost), (1, 8, 1));
        assert_eq!(v1.deadline_notices, 1);
        assert!((v1.latency_us.max - 900.0).abs() < 1.0);
        // seq 4 -> 6: 20 ms apart, plus the latency difference
        assert!(
            (v1.longest_gap_ms - 20.2).abs() < 0.01,
            "{}",
            v1.longest_gap_ms
        );
        assert!(streams[1].killed && !v1.killed);
        assert_eq!(all.len(), 9);
    }

    #[test]
    fn the_killed_vehicle_counts_deadline_notices_until_the_kill_and_when_it_was_lost() {
        let w = Window {
            start_ns: 0,
            end_ns: 10_000_000_000,
            kill_ns: Some(1_000_000_000),
        };
        let s = vec![sample(3, 1, 500, 100), sample(3, 2, 510, 100)];
        let n = |ms: u64, kind: &str| NoticeRecord {
            at_ns: ms * 1_000_000,
            kind: kind.into(),
            vehicle: Some(3),
        };
        let notices = vec![
            n(600, "deadline-missed"),
            n(1015, "deadline-missed"),
            n(1030, "deadline-missed"),
            n(1100, "liveliness-lost"),
        ];
        let (streams, _) = streams(&s, &notices, &w, Some(3)).unwrap();
        assert_eq!(streams[0].deadline_notices, 1);
        assert_eq!(streams[0].liveliness_lost, 1);
        assert!((streams[0].liveliness_lost_after_ms.unwrap() - 100.0).abs() < 1e-6);
        // not killed: every notice in the window counts
        let (streams, _) = streams_of_survivor(&s, &notices, &w);
        assert_eq!(streams[0].deadline_notices, 3);
        assert_eq!(streams[0].liveliness_lost_after_ms, None);
    }

    fn streams_of_survivor(
        s: &[Sample],
        n: &[NoticeRecord],
        w: &Window,
    ) -> (Vec<Stream>, Histogram<u64>) {
        streams(s, n, w, Some(9)).unwrap()
    }

    #[test]
    fn rpcs_count_each_outcome() {
        let w = Window {
            start_ns: 0,
            end_ns: 1000,
            kill_ns: None,
        };
        let rec = |t, outcome, rtt| RpcRecord {
            issued_ns: t,
            vehicle: 1,
            outcome,
            rtt_ns: rtt,
        };
        let r = rpcs(
            &[
                rec(1, Outcome::Ok, 50_000),
                rec(2, Outcome::Timeout, 20_000_000),
                rec(3, Outcome::NotFound, 5),
                rec(2000, Outcome::Ok, 1),
            ],
            &w,
        )
        .unwrap();
        assert_eq!(
            (r.issued, r.answered, r.timeouts, r.not_found),
            (3, 1, 1, 1)
        );
        assert!((r.round_trip_us.p50 - 50.0).abs() < 0.1);
        let text = Report {
            peers: 7,
            cells: 2,
            super_peers: 4,
            duration_s: 1.0,
            streams: Vec::new(),
            all_streams_us: Micros::default(),
            samples: 0,
            rpc: r,
            task_misses: 0,
            other_task_misses: 0,
            repair: None,
            notes: vec![],
        }
        .text();
        assert!(text.contains("3 issued, 1 answered, 1 timeouts, 1 not found"));
        assert!(text.contains("no position reached the coordinator"));
        // no task missed: no explanation of misses
        assert!(!text.contains("share this machine's one RT core"));
    }

    #[test]
    fn task_misses_come_with_why_they_can_happen_here() {
        let text = Report {
            peers: 5,
            cells: 2,
            super_peers: 2,
            duration_s: 1.0,
            streams: Vec::new(),
            all_streams_us: Micros::default(),
            samples: 0,
            rpc: rpcs(
                &[],
                &Window {
                    start_ns: 0,
                    end_ns: 1000,
                    kill_ns: None,
                },
            )
            .unwrap(),
            task_misses: 0,
            other_task_misses: 3,
            repair: None,
            notes: vec![],
        }
        .text();
        assert!(text.contains("0 (vehicles' publishing, coordinator's requests), 3 (overlay"));
        assert!(
            text.contains("The 5 peers share this machine's one RT core"),
            "{text}"
        );
    }
}
