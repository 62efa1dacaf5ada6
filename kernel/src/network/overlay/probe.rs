//! The probe port of an overlay: echo for round trips, sequence checks for streams.
//!
//! Every overlay network serves port `rtpm.probe` (like ICMP echo on a host). Messages are
//! little-endian words after a kind byte:
//!
//! - `PING seq sent_ns` → answered at once, on the same class, with `PONG seq sent_ns
//!   received_ns` (the receiver's `CLOCK_MONOTONIC` when its job delivered the ping);
//! - `DATA run seq sent_ns` → counted per (sender, class, run): in order, duplicates or
//!   late, gaps, first and last arrival, one-way latency.
//!
//! A [`ProbeRun`] (started by [`Probe::ping`]) keeps one ping in flight: each pong, on
//! the origin's RT job, records the round trip and the one-way time (both ends read the
//! same clock on one machine; across machines only the round trip means something) and
//! sends the next ping from the same job, so the measured path is the overlay's alone:
//! reactor → receive job → port → reply → reactor. [`Probe::flood`] sends sequence-
//! numbered `DATA` as fast as the command queue takes it, and [`Probe::streams`] reports
//! what arrived. Nothing on the delivery path allocates or locks: run state and stream
//! slots are preallocated atomics with one writer (the job holding the node).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::thread::Thread;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use rtpm_overlay::driver::Driver;
use rtpm_overlay::proto::PeerId;
use rtpm_rt::hist::{AtomicHistogram, Percentiles};
use rtpm_rt::time::{Clock, MonotonicClock, Nanos};

use crate::error::{Error, Result};
use crate::id::{NodeId, ServiceId};
use crate::network::Inbox;
use crate::qos::QosClass;

const PING: u8 = 1;
const PONG: u8 = 2;
const DATA: u8 = 3;
/// Streams tracked at once (sender × class × run).
const STREAMS: usize = 64;
/// Largest probe message.
const MAX_SIZE: usize = 60 * 1024;

/// The probe port's id.
pub fn port() -> ServiceId {
    ServiceId::from_name("rtpm.probe")
}

fn now() -> u64 {
    MonotonicClock.now().as_nanos()
}

fn word(b: &[u8], i: usize) -> u64 {
    let mut w = [0u8; 8];
    if let Some(s) = b.get(1 + 8 * i..9 + 8 * i) {
        w.copy_from_slice(s);
    }
    u64::from_le_bytes(w)
}

/// A ping-pong run in progress.
pub struct ProbeRun {
    to: PeerId,
    class: u8,
    count: u64,
    size: usize,
    /// Pings sent so far (the next ping's sequence number).
    sent: AtomicU64,
    /// Pongs received in sequence.
    done: AtomicU64,
    rtt: AtomicHistogram,
    one_way: AtomicHistogram,
    finished: AtomicBool,
    waiter: Thread,
    /// 0: the next ping leaves from the pong's job; otherwise the waiting thread sends one
    /// every `interval` ns (a periodic client, through the command queue).
    interval: u64,
}

impl std::fmt::Debug for ProbeRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProbeRun")
            .field("count", &self.count)
            .field("done", &self.done.load(Ordering::Relaxed))
            .finish()
    }
}

/// What a finished (or timed-out) ping run measured.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PingReport {
    /// Pings asked for.
    pub count: u64,
    /// Round trips completed.
    pub completed: u64,
    /// Pings sent (more than `completed` when some were lost and sent again).
    pub sent: u64,
    /// Message size in bytes (port prefix excluded).
    pub size: usize,
    /// The QoS class.
    pub class: u8,
    /// Round-trip times.
    pub rtt_ns: Percentiles,
    /// One-way times (sender's send → receiver's delivery; same machine only).
    pub one_way_ns: Percentiles,
    /// From the first ping to the last pong.
    pub elapsed_ns: u64,
}

/// One stream's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct StreamStats {
    /// The sender.
    pub from: Option<NodeId>,
    /// The class.
    pub class: u8,
    /// The run (chosen by the sender).
    pub run: u64,
    /// Messages received.
    pub received: u64,
    /// Received with the next expected sequence number.
    pub in_order: u64,
    /// Received with a sequence number already passed (duplicates, late arrivals).
    pub behind: u64,
    /// Sequence numbers skipped (a later one arrived first).
    pub skipped: u64,
    /// The next expected sequence number.
    pub next: u64,
    /// First arrival (rt clock, ns).
    pub first_ns: u64,
    /// Last arrival (rt clock, ns).
    pub last_ns: u64,
    /// One-way latency, sum in ns (for the mean; same machine only).
    pub latency_sum_ns: u64,
}

/// One stream slot: written only by the job holding the node.
#[derive(Default)]
struct Slot {
    used: AtomicBool,
    from: AtomicU64,
    from_lo: AtomicU64,
    class: AtomicU64,
    run: AtomicU64,
    received: AtomicU64,
    in_order: AtomicU64,
    behind: AtomicU64,
    skipped: AtomicU64,
    next: AtomicU64,
    first: AtomicU64,
    last: AtomicU64,
    latency_sum: AtomicU64,
}

fn bump(a: &AtomicU64, by: u64) {
    a.store(a.load(Ordering::Relaxed) + by, Ordering::Relaxed);
}

/// The probe port: see the [module documentation](self).
pub struct Probe {
    network: String,
    driver: Weak<Driver>,
    port: [u8; 16],
    run: ArcSwapOption<ProbeRun>,
    busy: AtomicBool,
    slots: Box<[Slot]>,
    lost_streams: AtomicU64,
}

impl std::fmt::Debug for Probe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Probe")
            .field("network", &self.network)
            .finish()
    }
}

impl Probe {
    pub(crate) fn new(network: String, driver: Weak<Driver>) -> Probe {
        Probe {
            network,
            driver,
            port: *port().0.as_bytes(),
            run: ArcSwapOption::empty(),
            busy: AtomicBool::new(false),
            slots: (0..STREAMS).map(|_| Slot::default()).collect(),
            lost_streams: AtomicU64::new(0),
        }
    }

    fn failed(&self, message: String) -> Error {
        Error::Network {
            network: self.network.clone(),
            message,
        }
    }

    fn send(&self, driver: &Driver, to: PeerId, class: u8, head: &[u8], size: usize) -> bool {
        // the payload is `size` bytes in all: header words, then zero padding
        const PAD: [u8; 1024] = [0; 1024];
        let mut parts: [&[u8]; 66] = [&[]; 66];
        parts[0] = &self.port;
        parts[1] = head;
        let mut left = size.saturating_sub(head.len());
        let mut n = 2;
        while left > 0 && n < parts.len() {
            let k = left.min(PAD.len());
            parts[n] = &PAD[..k];
            left -= k;
            n += 1;
        }
        driver.send(to, class, &parts[..n]).is_ok()
    }

    fn ping_now(&self, driver: &Driver, run: &ProbeRun, seq: u64) -> bool {
        let mut head = [0u8; 17];
        head[0] = PING;
        head[1..9].copy_from_slice(&seq.to_le_bytes());
        head[9..17].copy_from_slice(&now().to_le_bytes());
        self.send(driver, run.to, run.class, &head, run.size)
    }

    /// Runs `count` pings of `size` bytes to `to` on `class`, one in flight, and reports
    /// the round-trip and one-way percentiles. A ping unanswered for `resend` is sent
    /// again; the run ends after `timeout` whatever it got.
    pub fn ping(
        &self,
        to: NodeId,
        class: QosClass,
        count: u64,
        size: usize,
        resend: Nanos,
        timeout: Nanos,
    ) -> Result<PingReport> {
        self.ping_every(to, class, count, size, Nanos::ZERO, resend, timeout)
    }

    /// [`Probe::ping`], paced: with a non-zero `interval` the calling thread sends one
    /// ping every `interval` (once the previous one is answered), as a periodic client
    /// would, instead of the pong's job sending the next at once.
    #[allow(clippy::too_many_arguments)]
    pub fn ping_every(
        &self,
        to: NodeId,
        class: QosClass,
        count: u64,
        size: usize,
        interval: Nanos,
        resend: Nanos,
        timeout: Nanos,
    ) -> Result<PingReport> {
        let driver = self
            .driver
            .upgrade()
            .ok_or_else(|| self.failed("the overlay has stopped".into()))?;
        if count == 0 || !(17..=MAX_SIZE).contains(&size) {
            return Err(Error::Invalid(format!(
                "ping: count must be > 0 and size in 17..={MAX_SIZE} bytes (got {count}, {size})"
            )));
        }
        let run = Arc::new(ProbeRun {
            to: PeerId(to.as_u128()),
            class: class.0,
            count,
            size,
            sent: AtomicU64::new(1),
            done: AtomicU64::new(0),
            rtt: AtomicHistogram::new(),
            one_way: AtomicHistogram::new(),
            finished: AtomicBool::new(false),
            waiter: std::thread::current(),
            interval: interval.get(),
        });
        if self.busy.swap(true, Ordering::AcqRel) {
            return Err(Error::Invalid(
                "ping: another ping run is in progress on this network".into(),
            ));
        }
        let report = self.ping_run(&driver, run, to, class, resend, timeout);
        self.busy.store(false, Ordering::Release);
        report
    }

    fn ping_run(
        &self,
        driver: &Driver,
        run: Arc<ProbeRun>,
        to: NodeId,
        class: QosClass,
        resend: Nanos,
        timeout: Nanos,
    ) -> Result<PingReport> {
        let (count, size) = (run.count, run.size);
        self.run.store(Some(Arc::clone(&run)));
        let start = now();
        let until = start + timeout.get();
        let mut last_done = 0;
        let mut last_progress = start;
        let mut sent_total = 1;
        if !self.ping_now(driver, &run, 0) {
            self.run.store(None);
            return Err(self.failed(format!(
                "ping: the first ping to {to} could not be queued (not joined, or an unknown class {})",
                class.0
            )));
        }
        let mut next_at = start + run.interval;
        while !run.finished.load(Ordering::Acquire) {
            let t = now();
            if t >= until {
                break;
            }
            let done = run.done.load(Ordering::Acquire);
            if run.interval > 0 && done != last_done && t >= next_at {
                // paced: the last ping was answered and its period is over
                if self.ping_now(driver, &run, done) {
                    sent_total += 1;
                }
                last_done = done;
                last_progress = t;
                next_at = t + run.interval;
            } else if run.interval > 0 && done != last_done {
                std::thread::park_timeout(Duration::from_nanos((next_at - t).min(1_000_000)));
                continue;
            } else if done != last_done {
                last_done = done;
                last_progress = t;
            } else if t - last_progress >= resend.get() {
                // lost (best effort) or slow: ask again for the same sequence number
                if self.ping_now(driver, &run, done) {
                    sent_total += 1;
                }
                last_progress = t;
            }
            std::thread::park_timeout(Duration::from_millis(1));
        }
        self.run.store(None);
        let end = now();
        let rtt = run.rtt.snapshot().map_err(Error::Rt)?;
        let one_way = run.one_way.snapshot().map_err(Error::Rt)?;
        Ok(PingReport {
            count,
            completed: run.done.load(Ordering::Acquire),
            sent: sent_total + run.sent.load(Ordering::Acquire) - 1,
            size,
            class: class.0,
            rtt_ns: Percentiles::of(&rtt),
            one_way_ns: Percentiles::of(&one_way),
            elapsed_ns: end - start,
        })
    }

    /// Sends `count` sequence-numbered messages of `size` bytes to `to` on `class` as run
    /// `run`, as fast as the overlay's command queue takes them (a full queue is waited
    /// out; nothing is dropped here). Returns the elapsed time.
    pub fn flood(
        &self,
        to: NodeId,
        class: QosClass,
        run: u64,
        count: u64,
        size: usize,
        timeout: Nanos,
    ) -> Result<Nanos> {
        let driver = self
            .driver
            .upgrade()
            .ok_or_else(|| self.failed("the overlay has stopped".into()))?;
        if !(25..=MAX_SIZE).contains(&size) {
            return Err(Error::Invalid(format!(
                "flood: size must be in 25..={MAX_SIZE} bytes (got {size})"
            )));
        }
        let start = now();
        let until = start + timeout.get();
        let mut head = [0u8; 25];
        head[0] = DATA;
        head[1..9].copy_from_slice(&run.to_le_bytes());
        for seq in 0..count {
            head[9..17].copy_from_slice(&seq.to_le_bytes());
            loop {
                head[17..25].copy_from_slice(&now().to_le_bytes());
                if self.send(&driver, PeerId(to.as_u128()), class.0, &head, size) {
                    break;
                }
                if now() >= until {
                    return Err(self.failed(format!(
                        "flood: only {seq} of {count} messages queued within {timeout}"
                    )));
                }
                std::thread::yield_now();
            }
        }
        Ok(Nanos(now() - start))
    }

    /// What arrived on the probe port, per stream.
    pub fn streams(&self) -> Vec<StreamStats> {
        self.slots
            .iter()
            .filter(|s| s.used.load(Ordering::Acquire))
            .map(|s| {
                let hi = s.from.load(Ordering::Relaxed) as u128;
                let lo = s.from_lo.load(Ordering::Relaxed) as u128;
                StreamStats {
                    from: Some(NodeId(uuid::Uuid::from_u128((hi << 64) | lo))),
                    class: s.class.load(Ordering::Relaxed) as u8,
                    run: s.run.load(Ordering::Relaxed),
                    received: s.received.load(Ordering::Relaxed),
                    in_order: s.in_order.load(Ordering::Relaxed),
                    behind: s.behind.load(Ordering::Relaxed),
                    skipped: s.skipped.load(Ordering::Relaxed),
                    next: s.next.load(Ordering::Relaxed),
                    first_ns: s.first.load(Ordering::Relaxed),
                    last_ns: s.last.load(Ordering::Relaxed),
                    latency_sum_ns: s.latency_sum.load(Ordering::Relaxed),
                }
            })
            .collect()
    }

    fn on_pong(&self, bytes: &[u8]) {
        let guard = self.run.load();
        let Some(run) = guard.as_ref() else { return };
        let seq = word(bytes, 0);
        if seq != run.done.load(Ordering::Relaxed) {
            return; // a duplicate answer to a ping sent again
        }
        let t = now();
        let sent = word(bytes, 1);
        let recv = word(bytes, 2);
        run.rtt.record(t.saturating_sub(sent));
        run.one_way.record(recv.saturating_sub(sent));
        let done = seq + 1;
        run.done.store(done, Ordering::Release);
        if done >= run.count {
            run.finished.store(true, Ordering::Release);
            run.waiter.unpark();
            return;
        }
        if run.interval > 0 {
            // paced: the waiting thread sends the next one when its time comes
            return;
        }
        if let Some(d) = self.driver.upgrade()
            && self.ping_now(&d, run, done)
        {
            bump(&run.sent, 1);
        }
    }

    fn on_data(&self, from: NodeId, class: u8, bytes: &[u8]) {
        let t = now();
        let (run, seq, sent) = (word(bytes, 0), word(bytes, 1), word(bytes, 2));
        let id = from.as_u128();
        let (hi, lo) = ((id >> 64) as u64, id as u64);
        let mut slot = None;
        for s in self.slots.iter() {
            if !s.used.load(Ordering::Relaxed) {
                if slot.is_none() {
                    s.from.store(hi, Ordering::Relaxed);
                    s.from_lo.store(lo, Ordering::Relaxed);
                    s.class.store(class as u64, Ordering::Relaxed);
                    s.run.store(run, Ordering::Relaxed);
                    s.first.store(t, Ordering::Relaxed);
                    s.used.store(true, Ordering::Release);
                    slot = Some(s);
                }
                break;
            }
            if s.from.load(Ordering::Relaxed) == hi
                && s.from_lo.load(Ordering::Relaxed) == lo
                && s.class.load(Ordering::Relaxed) == class as u64
                && s.run.load(Ordering::Relaxed) == run
            {
                slot = Some(s);
                break;
            }
        }
        let Some(s) = slot else {
            bump(&self.lost_streams, 1);
            return;
        };
        bump(&s.received, 1);
        bump(&s.latency_sum, t.saturating_sub(sent));
        s.last.store(t, Ordering::Relaxed);
        let next = s.next.load(Ordering::Relaxed);
        if seq == next {
            bump(&s.in_order, 1);
            s.next.store(next + 1, Ordering::Relaxed);
        } else if seq < next {
            bump(&s.behind, 1);
        } else {
            bump(&s.skipped, seq - next);
            s.next.store(seq + 1, Ordering::Relaxed);
        }
    }
}

impl Inbox for Probe {
    fn deliver(&self, from: NodeId, class: QosClass, bytes: &[u8]) {
        match bytes.first().copied() {
            Some(PING) => {
                let t = now();
                let mut head = [0u8; 25];
                head[0] = PONG;
                head[1..17].copy_from_slice(bytes.get(1..17).unwrap_or(&[0; 16]));
                head[17..25].copy_from_slice(&t.to_le_bytes());
                if let Some(d) = self.driver.upgrade() {
                    self.send(&d, PeerId(from.as_u128()), class.0, &head, bytes.len());
                }
            }
            Some(PONG) => self.on_pong(bytes),
            Some(DATA) => self.on_data(from, class.0, bytes),
            _ => {}
        }
    }
}
