//! The real cyclictest (rt-tests), run with parameters matching ours, its histogram file
//! read back into an HdrHistogram (1 µs buckets, as cyclictest records them).

use std::path::Path;
use std::process::Command;

use hdrhistogram::Histogram;
use rtpm_rt::time::Nanos;

/// What to run.
pub struct Params {
    /// The RT CPU.
    pub cpu: usize,
    /// Threads.
    pub threads: usize,
    /// The SCHED_FIFO priority.
    pub priority: u8,
    /// The period.
    pub interval: Nanos,
    /// How long.
    pub duration: Nanos,
}

/// Whether `cyclictest` is on the PATH.
pub fn installed() -> bool {
    Command::new("cyclictest").arg("--help").output().is_ok()
}

/// Runs cyclictest and returns its latencies (ns) and the command line.
pub fn run(p: &Params, histfile: &Path) -> Result<(Histogram<u64>, String), String> {
    let max_us = 100_000u64;
    let secs = p.duration.get().div_ceil(1_000_000_000).max(1);
    let args: Vec<String> = vec![
        "-m".into(),
        "-q".into(),
        format!("-p{}", p.priority),
        format!("-t{}", p.threads),
        format!("-a{}", p.cpu),
        format!("-i{}", (p.interval.get() / 1000).max(1)),
        "-d0".into(),
        format!("-D{secs}"),
        format!("-h{max_us}"),
        format!("--histfile={}", histfile.display()),
    ];
    let line = format!("cyclictest {}", args.join(" "));
    let out = Command::new("cyclictest")
        .args(&args)
        .output()
        .map_err(|e| format!("cannot run `{line}`: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "`{line}` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let text = std::fs::read_to_string(histfile).map_err(|e| {
        format!(
            "cannot read cyclictest's histogram {}: {e}",
            histfile.display()
        )
    })?;
    parse(&text).map(|h| (h, line))
}

/// Parses a cyclictest `--histfile`: lines `USEC COUNT [COUNT…]` (one count column per
/// thread), then `#` comment lines including `# Max Latencies:` and
/// `# Histogram Overflows:`; overflows are recorded at the largest max latency.
pub fn parse(text: &str) -> Result<Histogram<u64>, String> {
    let mut h = rtpm_rt::hist::empty().map_err(|e| e.to_string())?;
    let mut max_us = 0u64;
    let mut overflows = 0u64;
    for line in text.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix('#') {
            let rest = rest.trim();
            let nums = |s: &str| -> Vec<u64> {
                s.split_whitespace()
                    .filter_map(|w| w.parse().ok())
                    .collect()
            };
            if let Some(v) = rest.strip_prefix("Max Latencies:") {
                max_us = nums(v).into_iter().max().unwrap_or(0);
            } else if let Some(v) = rest.strip_prefix("Histogram Overflows:") {
                overflows = nums(v).into_iter().sum();
            }
            continue;
        }
        let mut cols = line.split_whitespace().map(str::parse::<u64>);
        let (Some(Ok(us)), counts) = (cols.next(), cols) else {
            continue;
        };
        let n: u64 = counts.filter_map(Result::ok).sum();
        if n > 0 {
            // A sample in bucket `us` lies in [us, us+1) µs; record the bucket's middle.
            h.saturating_record_n(us * 1000 + 500, n);
        }
    }
    if overflows > 0 {
        h.saturating_record_n(max_us * 1000, overflows);
    }
    if h.is_empty() {
        return Err("cyclictest's histogram holds no sample".into());
    }
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_histfile() {
        let text = "# Histogram\n000000 000000\t000000\n000012 000090\t000005\n000030 000004\t000000\n# Total: 000000099 000000005\n# Min Latencies: 00012 00012\n# Avg Latencies: 00013 00012\n# Max Latencies: 00450 00012\n# Histogram Overflows: 00001 00000\n";
        let h = parse(text).unwrap();
        assert_eq!(h.len(), 100);
        assert!(h.equivalent(h.value_at_quantile(0.5), 12_500));
        assert!(h.equivalent(h.max(), 450_000));
        assert!(parse("# nothing\n").is_err());
    }
}
