//! The SVG plot of latency distributions: HdrHistogram's percentile plot (latency
//! against percentile, the percentile axis stretched as `1/(1−q)` so the tail is
//! visible), with both axes logarithmic.
//!
//! Written by hand rather than with `plotters`: a few polylines, grid lines and labels
//! are ~150 lines of plain text, while plotters (even SVG-only) would add a dependency
//! tree for one figure, and the hand-written file stays small and diffable.

use std::fmt::Write as _;

use hdrhistogram::Histogram;

/// One distribution to draw.
pub struct Series<'a> {
    /// Legend text.
    pub label: &'a str,
    /// Stroke colour.
    pub colour: &'a str,
    /// The latencies, in nanoseconds.
    pub hist: &'a Histogram<u64>,
}

const W: f64 = 820.0;
const H: f64 = 500.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 30.0;
const TOP: f64 = 50.0;
const BOTTOM: f64 = 60.0;
/// The x axis ends at 99.999 %.
const X_DECADES: f64 = 5.0;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Draws `series` (in µs on the y axis) with `title`.
pub fn svg(title: &str, series: &[Series<'_>]) -> String {
    let pw = W - LEFT - RIGHT;
    let ph = H - TOP - BOTTOM;
    // y range: decades of microseconds covering every series.
    let lo_us = series
        .iter()
        .filter(|s| !s.hist.is_empty())
        .map(|s| (s.hist.min().max(1) as f64 / 1000.0).max(0.1))
        .fold(f64::INFINITY, f64::min);
    let hi_us = series
        .iter()
        .filter(|s| !s.hist.is_empty())
        .map(|s| s.hist.max() as f64 / 1000.0)
        .fold(0.0, f64::max);
    let (y0, y1) = if lo_us.is_finite() && hi_us > 0.0 {
        (
            lo_us.log10().floor(),
            hi_us.log10().ceil().max(lo_us.log10().floor() + 1.0),
        )
    } else {
        (0.0, 3.0)
    };
    let x_of = |q: f64| {
        let t = (1.0 / (1.0 - q.min(0.999_999_9))).log10().min(X_DECADES);
        LEFT + pw * t / X_DECADES
    };
    let y_of = |us: f64| TOP + ph * (1.0 - (us.max(1e-3).log10() - y0) / (y1 - y0));
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(out, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(
        out,
        r#"<text x="{}" y="28" text-anchor="middle" font-size="15">{}</text>"#,
        W / 2.0,
        esc(title)
    );
    // Grid: percentiles on x, decades on y.
    for (d, label) in [
        (0.0, "0%"),
        (1.0, "90%"),
        (2.0, "99%"),
        (3.0, "99.9%"),
        (4.0, "99.99%"),
        (5.0, "99.999%"),
    ] {
        let x = LEFT + pw * d / X_DECADES;
        let _ = writeln!(
            out,
            r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{:.1}" stroke="#ddd"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{label}</text>"##,
            TOP + ph,
            TOP + ph + 18.0
        );
    }
    let mut e = y0;
    while e <= y1 + 1e-9 {
        for m in [1.0, 2.0, 5.0] {
            let us = m * 10f64.powf(e);
            if us.log10() > y1 + 1e-9 {
                continue;
            }
            let y = y_of(us);
            let stroke = if m == 1.0 { "#bbb" } else { "#eee" };
            let _ = writeln!(
                out,
                r#"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="{stroke}"/>"#,
                LEFT + pw
            );
            let label = if us >= 1000.0 {
                format!("{} ms", us / 1000.0)
            } else {
                format!("{us} µs")
            };
            let _ = writeln!(
                out,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{label}</text>"#,
                LEFT - 6.0,
                y + 4.0
            );
        }
        e += 1.0;
    }
    let _ = writeln!(
        out,
        r#"<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="black"/>"#
    );
    let _ = writeln!(
        out,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">percentile</text>"#,
        LEFT + pw / 2.0,
        H - 15.0
    );
    let _ = writeln!(
        out,
        r#"<text transform="translate(18 {:.1}) rotate(-90)" text-anchor="middle">wake-up latency</text>"#,
        TOP + ph / 2.0
    );
    for (i, s) in series.iter().enumerate() {
        if s.hist.is_empty() {
            continue;
        }
        let mut points = String::new();
        for v in s.hist.iter_quantiles(8) {
            let q = v.quantile_iterated_to();
            let us = v.value_iterated_to() as f64 / 1000.0;
            let _ = write!(points, "{:.1},{:.1} ", x_of(q), y_of(us));
        }
        let _ = writeln!(
            out,
            r#"<polyline fill="none" stroke="{}" stroke-width="2" points="{}"/>"#,
            s.colour,
            points.trim_end()
        );
        let ly = TOP + 18.0 + 18.0 * i as f64;
        let p99 = s.hist.value_at_quantile(0.99) as f64 / 1000.0;
        let p999 = s.hist.value_at_quantile(0.999) as f64 / 1000.0;
        let _ = writeln!(
            out,
            r#"<line x1="{:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{}" stroke-width="3"/><text x="{:.1}" y="{:.1}">{} (p99 {p99:.1} µs, p99.9 {p999:.1} µs)</text>"#,
            LEFT + 12.0,
            LEFT + 36.0,
            s.colour,
            LEFT + 42.0,
            ly + 4.0,
            esc(s.label)
        );
    }
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_each_series_with_its_legend() {
        let mut a = Histogram::<u64>::new_with_bounds(1, 1 << 36, 2).unwrap();
        let mut b = a.clone();
        for v in 1..2000u64 {
            a.record(20_000 + v * 10).unwrap();
            b.record(25_000 + v * 10).unwrap();
        }
        let text = svg(
            "t <1>",
            &[
                Series {
                    label: "executor",
                    colour: "#d62728",
                    hist: &a,
                },
                Series {
                    label: "baseline",
                    colour: "#1f77b4",
                    hist: &b,
                },
            ],
        );
        assert!(text.starts_with("<svg"));
        assert!(text.trim_end().ends_with("</svg>"));
        assert_eq!(text.matches("<polyline").count(), 2);
        assert!(text.contains("executor (p99"));
        assert!(text.contains("t &lt;1&gt;"));
        assert!(text.contains("99.9%"));
    }
}
