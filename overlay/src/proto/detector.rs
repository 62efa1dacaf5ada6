//! Failure detection: φ-accrual suspicion confirmed by a direct probe.
//!
//! For each watched peer the detector keeps the last arrival and a running mean of
//! inter-arrival times (initialised to the peer's beat period). Suspicion follows the
//! exponential-arrival φ-accrual model: φ(t) = (t − last) / mean · log10(e), and a peer is
//! suspected when φ reaches `suspect_intervals · log10(e)`, that is, after
//! `suspect_intervals` mean intervals of silence. Loss stretches the mean, so the
//! threshold adapts. A suspected peer is sent a probe; if nothing at all is heard from it
//! within `probe_timeout` it is declared down. With the defaults (2 intervals, probe
//! timeout P/2) a crash is declared within 2.5 periods of the last beat heard, so within
//! 3 periods of the crash when latency is below half a period.

use super::id::{Addr, PeerId};
use super::time::Instant;

const LOG10_E: f64 = std::f64::consts::LOG10_E;

#[derive(Clone, Debug)]
struct Watch {
    addr: Addr,
    last: Instant,
    mean: f64,
    period: u64,
    probe_deadline: Option<Instant>,
}

/// The failure detector of one endpoint.
#[derive(Clone, Debug)]
pub struct Detector {
    /// The watched peers, in the order they were first watched: a super-peer watches a
    /// few dozen at most, so a scan is as fast as a hash and the periodic check walks
    /// contiguous memory.
    watches: Vec<(PeerId, Watch)>,
    /// A lower bound of the next deadline (arrivals only move deadlines later, so a
    /// stale value wakes the owner early, never late); exact after every `check`.
    earliest: Instant,
    suspect_intervals: f64,
    probe_timeout: u64,
}

/// What a check found.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Verdict {
    /// Suspected: probe it.
    Probe(PeerId, Addr),
    /// Declared down, with its φ at the moment.
    Down(PeerId, f64),
}

impl Detector {
    /// A detector suspecting after `suspect_intervals` silent mean intervals and declaring
    /// down `probe_timeout` ns later.
    pub fn new(suspect_intervals: f64, probe_timeout: u64) -> Detector {
        Detector {
            watches: Vec::new(),
            earliest: Instant::NEVER,
            suspect_intervals,
            probe_timeout,
        }
    }

    /// Start watching `id`, expected to be heard every `period` ns (no-op if watched).
    pub fn watch(&mut self, id: PeerId, addr: Addr, period: u64, now: Instant) {
        self.earliest = self
            .earliest
            .min(now.after((period as f64 * self.suspect_intervals) as u64));
        if !self.watches(id) {
            self.watches.push((
                id,
                Watch {
                    addr,
                    last: now,
                    mean: period as f64,
                    period,
                    probe_deadline: None,
                },
            ));
        }
    }

    /// Whether `id` is watched.
    pub fn watches(&self, id: PeerId) -> bool {
        self.watches.iter().any(|(w, _)| *w == id)
    }

    fn get(&self, id: PeerId) -> Option<&Watch> {
        self.watches.iter().find(|(w, _)| *w == id).map(|(_, w)| w)
    }

    /// Stop watching `id`.
    pub fn unwatch(&mut self, id: PeerId) {
        self.watches.retain(|(w, _)| *w != id);
    }

    /// Keep only the watches whose id satisfies `keep`.
    pub fn retain(&mut self, mut keep: impl FnMut(PeerId) -> bool) {
        self.watches.retain(|(id, _)| keep(*id));
    }

    /// Number of watched peers.
    pub fn len(&self) -> usize {
        self.watches.len()
    }

    /// Whether nothing is watched.
    pub fn is_empty(&self) -> bool {
        self.watches.is_empty()
    }

    /// Something arrived from `id`.
    pub fn heard(&mut self, id: PeerId, now: Instant) {
        if let Some((_, w)) = self.watches.iter_mut().find(|(w, _)| *w == id) {
            let gap = now.since(w.last) as f64;
            if gap > 0.0 {
                // Running mean over about 8 intervals, never below half the period so a
                // burst of arrivals does not make the detector trigger-happy.
                w.mean = (w.mean * 7.0 + gap) / 8.0;
                w.mean = w.mean.max(w.period as f64 / 2.0);
            }
            w.last = now;
            w.probe_deadline = None;
        }
    }

    /// How long `id` has been silent (None if not watched).
    pub fn silent_for(&self, id: PeerId, now: Instant) -> Option<u64> {
        self.get(id).map(|w| now.since(w.last))
    }

    /// φ of `id` now (0 if not watched).
    pub fn phi(&self, id: PeerId, now: Instant) -> f64 {
        self.get(id)
            .map_or(0.0, |w| now.since(w.last) as f64 / w.mean * LOG10_E)
    }

    fn suspect_at(&self, w: &Watch) -> Instant {
        match w.probe_deadline {
            Some(d) => d,
            None => w.last.after((w.mean * self.suspect_intervals) as u64),
        }
    }

    /// The earliest time a check could change something (possibly a little early).
    pub fn next_deadline(&self) -> Instant {
        self.earliest
    }

    fn exact_deadline(&self) -> Instant {
        self.watches
            .iter()
            .map(|(_, w)| self.suspect_at(w))
            .min()
            .unwrap_or(Instant::NEVER)
    }

    /// Check every watch at `now`; verdicts are appended to `out`. Peers declared down are
    /// no longer watched.
    pub fn check(&mut self, now: Instant, out: &mut Vec<Verdict>) {
        let probe_timeout = self.probe_timeout;
        let intervals = self.suspect_intervals;
        self.watches.retain_mut(|(id, w)| {
            let id = *id;
            let phi = now.since(w.last) as f64 / w.mean * LOG10_E;
            // φ ≥ intervals·log10(e) ⇔ silence ≥ intervals·mean; compared in integer
            // nanoseconds, exactly as `next_deadline` computes it, so a wake-up at the
            // deadline always acts
            let suspect_at = w.last.after((w.mean * intervals) as u64);
            match w.probe_deadline {
                Some(d) if now >= d => {
                    out.push(Verdict::Down(id, phi));
                    false
                }
                Some(_) => true,
                None if now >= suspect_at => {
                    w.probe_deadline = Some(now.after(probe_timeout));
                    out.push(Verdict::Probe(id, w.addr));
                    true
                }
                None => true,
            }
        });
        self.earliest = self.exact_deadline();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::time::MS;

    fn addr() -> Addr {
        Addr("10.0.0.1:1".parse().unwrap())
    }

    #[test]
    fn silent_peer_is_probed_then_declared_within_two_and_a_half_periods() {
        let p = 25 * MS;
        let mut d = Detector::new(2.0, p / 2);
        d.watch(PeerId(1), addr(), p, Instant(0));
        for i in 1..=10 {
            d.heard(PeerId(1), Instant(i * p));
        }
        let last = Instant(10 * p);
        let mut out = Vec::new();
        d.check(last.after(p), &mut out);
        assert!(out.is_empty(), "one period of silence is not suspicious");
        let at = d.next_deadline();
        assert_eq!(at, last.after(2 * p));
        d.check(at, &mut out);
        assert_eq!(out, vec![Verdict::Probe(PeerId(1), addr())]);
        out.clear();
        let down_at = d.next_deadline();
        assert_eq!(down_at, last.after(2 * p + p / 2));
        d.check(down_at, &mut out);
        assert!(matches!(out[0], Verdict::Down(PeerId(1), phi) if phi > 1.0));
        assert!(d.is_empty());
    }

    #[test]
    fn answer_to_probe_clears_suspicion() {
        let p = 25 * MS;
        let mut d = Detector::new(2.0, p / 2);
        d.watch(PeerId(1), addr(), p, Instant(0));
        let mut out = Vec::new();
        d.check(Instant(2 * p), &mut out);
        assert_eq!(out.len(), 1);
        d.heard(PeerId(1), Instant(2 * p + MS));
        out.clear();
        d.check(Instant(2 * p + p / 2 + MS), &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn lossy_arrivals_stretch_the_timeout() {
        let p = 25 * MS;
        let mut d = Detector::new(2.0, p / 2);
        d.watch(PeerId(1), addr(), p, Instant(0));
        // every other beat lost: mean approaches 2p
        for i in 1..=40 {
            d.heard(PeerId(1), Instant(2 * i * p));
        }
        let mut out = Vec::new();
        d.check(Instant(80 * p + p), &mut out);
        assert!(out.is_empty());
        assert!(d.next_deadline() > Instant(80 * p + 3 * p));
    }
}
