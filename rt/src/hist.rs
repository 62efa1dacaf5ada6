//! Latency histograms that an RT core records into without locks or allocation, and that
//! any other thread can snapshot at any time.
//!
//! [`AtomicHistogram`] lays its counters out exactly as an `hdrhistogram::Histogram` with
//! lowest value 1 ns, highest [`HIGHEST_NS`] and [`SIGFIG`] significant digits does: a
//! value's bucket is found with a few shifts and a leading-zero count, and recording is a
//! relaxed load and store on a counter that only the recording thread writes (one writer
//! per histogram), so it is wait-free and allocation-free. A reader on a general core
//! copies the counters into a real `hdrhistogram::Histogram` ([`AtomicHistogram::snapshot`]),
//! where percentiles, merging and the `.hgrm` percentile file come from the library.
//! Because the layouts match, the copy is exact: every count lands in the same bucket.
//!
//! A snapshot taken while the writer records may be a few samples behind, never torn
//! within a counter.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::error::{Error, Result};

/// Significant decimal digits kept: values are exact to 1 % (to 0.4 % in the upper half of
/// each power of two).
pub const SIGFIG: u8 = 2;
/// The largest value tracked exactly, about 68.7 s; larger values count as this.
pub const HIGHEST_NS: u64 = 1 << 36;

/// `2^SUB_BUCKET_BITS` sub-buckets per power of two: the smallest power of two at least
/// `2 * 10^SIGFIG` (hdrhistogram's rule).
const SUB_BUCKET_BITS: u32 = 8;
const SUB_BUCKET_COUNT: u64 = 1 << SUB_BUCKET_BITS;
const SUB_BUCKET_HALF_BITS: u32 = SUB_BUCKET_BITS - 1;
const SUB_BUCKET_HALF: u64 = 1 << SUB_BUCKET_HALF_BITS;
const SUB_BUCKET_MASK: u64 = SUB_BUCKET_COUNT - 1;
const LEADING_ZERO_BASE: u32 = 64 - SUB_BUCKET_HALF_BITS - 1;

const fn bucket_count() -> usize {
    let mut smallest_untrackable = SUB_BUCKET_COUNT;
    let mut buckets = 1;
    while smallest_untrackable <= HIGHEST_NS {
        smallest_untrackable <<= 1;
        buckets += 1;
    }
    buckets
}

/// The number of counters.
const COUNTS_LEN: usize = (bucket_count() + 1) * SUB_BUCKET_HALF as usize;

fn index_of(value: u64) -> usize {
    let bucket = LEADING_ZERO_BASE - (value | SUB_BUCKET_MASK).leading_zeros();
    let sub = value >> bucket;
    (((bucket as u64 + 1) << SUB_BUCKET_HALF_BITS) + sub - SUB_BUCKET_HALF) as usize
}

fn value_of(index: usize) -> u64 {
    let index = index as u64;
    let mut bucket = (index >> SUB_BUCKET_HALF_BITS) as i64 - 1;
    let mut sub = (index & (SUB_BUCKET_HALF - 1)) + SUB_BUCKET_HALF;
    if bucket < 0 {
        sub -= SUB_BUCKET_HALF;
        bucket = 0;
    }
    sub << bucket
}

/// A fixed-layout histogram of nanosecond values with one writer and any number of readers.
#[derive(Debug)]
pub struct AtomicHistogram {
    counts: Box<[AtomicU64]>,
    total: AtomicU64,
    min: AtomicU64,
    max: AtomicU64,
    sum: AtomicU64,
}

impl Default for AtomicHistogram {
    fn default() -> AtomicHistogram {
        AtomicHistogram::new()
    }
}

impl AtomicHistogram {
    /// An empty histogram (allocates its counters now, about 32 KiB, never again).
    pub fn new() -> AtomicHistogram {
        AtomicHistogram {
            counts: (0..COUNTS_LEN).map(|_| AtomicU64::new(0)).collect(),
            total: AtomicU64::new(0),
            min: AtomicU64::new(u64::MAX),
            max: AtomicU64::new(0),
            sum: AtomicU64::new(0),
        }
    }

    /// Records `value_ns`. Wait-free and allocation-free. Must only be called from one
    /// thread at a time (the histogram's owner): counters are bumped with a load and a
    /// store, not a read-modify-write, which is what keeps this cheap.
    #[inline]
    pub fn record(&self, value_ns: u64) {
        let v = value_ns.clamp(1, HIGHEST_NS);
        let i = index_of(v);
        if let Some(c) = self.counts.get(i) {
            c.store(c.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        }
        if value_ns < self.min.load(Ordering::Relaxed) {
            self.min.store(value_ns, Ordering::Relaxed);
        }
        if value_ns > self.max.load(Ordering::Relaxed) {
            self.max.store(value_ns, Ordering::Relaxed);
        }
        self.sum.store(
            self.sum.load(Ordering::Relaxed).wrapping_add(value_ns),
            Ordering::Relaxed,
        );
        self.total
            .store(self.total.load(Ordering::Relaxed) + 1, Ordering::Release);
    }

    /// How many values were recorded.
    pub fn len(&self) -> u64 {
        self.total.load(Ordering::Acquire)
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The largest value recorded, exactly (0 if empty).
    pub fn max(&self) -> u64 {
        self.max.load(Ordering::Relaxed)
    }

    /// Copies the counters into an `hdrhistogram::Histogram` (allocates: call it from a
    /// general core).
    pub fn snapshot(&self) -> Result<Histogram<u64>> {
        let mut h = empty()?;
        for (i, c) in self.counts.iter().enumerate() {
            let n = c.load(Ordering::Relaxed);
            if n > 0 {
                h.saturating_record_n(value_of(i), n);
            }
        }
        Ok(h)
    }
}

/// An empty `hdrhistogram::Histogram` with the same layout as [`AtomicHistogram`].
pub fn empty() -> Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, HIGHEST_NS, SIGFIG)
        .map_err(|e| Error::Invalid(format!("cannot create a latency histogram: {e:?}")))
}

/// The figures a latency report prints, in nanoseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Percentiles {
    /// Smallest value.
    pub min_ns: u64,
    /// Median.
    pub p50_ns: u64,
    /// 90th percentile.
    pub p90_ns: u64,
    /// 99th percentile.
    pub p99_ns: u64,
    /// 99.9th percentile.
    pub p999_ns: u64,
    /// Largest value.
    pub max_ns: u64,
    /// Number of values.
    pub samples: u64,
}

impl Percentiles {
    /// The percentiles of `h` (all zero when it is empty).
    pub fn of(h: &Histogram<u64>) -> Percentiles {
        if h.is_empty() {
            return Percentiles::default();
        }
        Percentiles {
            min_ns: h.min(),
            p50_ns: h.value_at_quantile(0.50),
            p90_ns: h.value_at_quantile(0.90),
            p99_ns: h.value_at_quantile(0.99),
            p999_ns: h.value_at_quantile(0.999),
            max_ns: h.max(),
            samples: h.len(),
        }
    }
}

/// The HdrHistogram percentile distribution text (`.hgrm`), values in microseconds, as
/// `HdrHistogram.outputPercentileDistribution` writes it and its plotter reads it.
pub fn hgrm(h: &Histogram<u64>) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    if !h.is_empty() {
        // TotalCount is cumulative: the values recorded up to this row's value.
        let mut total = 0u64;
        for v in h.iter_quantiles(5) {
            total += v.count_since_last_iteration();
            let q = v.quantile_iterated_to();
            let value = v.value_iterated_to() as f64 / 1000.0;
            if q < 1.0 {
                let _ = writeln!(
                    out,
                    "{value:>12.3} {q:>2.12} {total:>10} {:>14.2}",
                    1.0 / (1.0 - q)
                );
            } else {
                let _ = writeln!(out, "{value:>12.3} {q:>2.12} {total:>10}");
            }
        }
    }
    let _ = writeln!(
        out,
        "#[Mean    = {:>12.3}, StdDeviation   = {:>12.3}]",
        h.mean() / 1000.0,
        h.stdev() / 1000.0
    );
    let _ = writeln!(
        out,
        "#[Max     = {:>12.3}, Total count    = {:>12}]",
        h.max() as f64 / 1000.0,
        h.len()
    );
    let _ = writeln!(
        out,
        "#[Buckets = {:>12}, SubBuckets     = {:>12}]",
        h.buckets(),
        SUB_BUCKET_COUNT
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_hdrhistogram() {
        let reference = empty().unwrap();
        assert_eq!(reference.distinct_values(), COUNTS_LEN);
        // Every value lands in the bucket hdrhistogram would choose.
        let mut v = 1u64;
        while v < HIGHEST_NS {
            for probe in [v, v + 1, v * 3 / 2, (v * 2).saturating_sub(1)] {
                let lo = value_of(index_of(probe));
                assert_eq!(lo, reference.lowest_equivalent(probe), "value {probe}");
            }
            v *= 2;
        }
    }

    #[test]
    fn snapshot_is_exact() {
        let a = AtomicHistogram::new();
        let mut r = empty().unwrap();
        let mut x = 12345u64;
        for _ in 0..20_000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let v = (x >> 33) % 5_000_000 + 1;
            a.record(v);
            r.record(v).unwrap();
        }
        let s = a.snapshot().unwrap();
        assert_eq!(s.len(), 20_000);
        assert_eq!(a.len(), 20_000);
        for q in [0.0, 0.5, 0.9, 0.99, 0.999, 1.0] {
            assert_eq!(s.value_at_quantile(q), r.value_at_quantile(q), "q {q}");
        }
        assert!(r.equivalent(a.max(), r.max()), "{} vs {}", a.max(), r.max());
    }

    #[test]
    fn out_of_range_values_saturate() {
        let a = AtomicHistogram::new();
        a.record(0);
        a.record(u64::MAX);
        let s = a.snapshot().unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(a.max(), u64::MAX);
        assert!(s.max() >= HIGHEST_NS);
    }

    #[test]
    fn percentiles_and_hgrm() {
        let a = AtomicHistogram::new();
        for v in 1..=1000u64 {
            a.record(v * 1000);
        }
        let s = a.snapshot().unwrap();
        let p = Percentiles::of(&s);
        assert_eq!(p.samples, 1000);
        assert!(p.min_ns <= 1000 && p.max_ns >= 1_000_000);
        assert!((495_000..=505_000).contains(&p.p50_ns), "{p:?}");
        assert!((985_000..=995_000).contains(&p.p99_ns), "{p:?}");
        let text = hgrm(&s);
        assert!(text.starts_with("       Value"));
        assert!(text.contains("#[Max     ="));
        assert!(text.contains("Total count    =         1000"));
        // TotalCount is cumulative: it never falls and ends at the number of samples.
        let totals: Vec<u64> = text
            .lines()
            .filter_map(|l| l.split_whitespace().nth(2)?.parse().ok())
            .collect();
        assert!(totals.len() > 10, "{text}");
        assert!(totals.windows(2).all(|w| w[0] <= w[1]), "{totals:?}");
        assert_eq!(totals.last(), Some(&1000));
        assert_eq!(Percentiles::of(&empty().unwrap()), Percentiles::default());
    }
}
